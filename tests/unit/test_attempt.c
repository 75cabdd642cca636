/* attempt: which answers fail over, what retry-after asks for, which first
 * events are errors, and an attempt's key header, extra headers and body. */
#include "unit.h"

#include <strings.h>

#include "../../common/attempt.h"
#include "../../common/sse.h"

static void test_names_and_statuses(void **state)
{
    (void)state;
    static const char *const want[] = {"ok", "unreachable", "timeout", "broken",
                                       "status_5xx", "status_429", "error_event"};
    for (int k = 0; k < CCP_ATTEMPT_KINDS; k++) assert_string_equal(ccp_attempt_failure_name(k), want[k]);
    assert_string_equal(ccp_attempt_failure_name(CCP_ATTEMPT_KINDS), "unknown");
    static const int yes[] = {500, 502, 503, 504, 529, 599, 429};
    static const int no[] = {200, 201, 400, 401, 403, 404, 408, 413, 422, 428, 499};
    for (size_t i = 0; i < UNIT_COUNT(yes); i++) assert_true(ccp_attempt_retryable_status(yes[i]));
    for (size_t i = 0; i < UNIT_COUNT(no); i++) assert_false(ccp_attempt_retryable_status(no[i]));
}

static void test_retry_after(void **state)
{
    (void)state;
    static const struct {
        const char *name, *value;
        long long ms;
    } cases[] = {
        {"retry-after", "7", 7000},        {"retry-after", "0", 0},
        {"retry-after", "1.5", 1500},      {"retry-after-ms", "250", 250},
        {"retry-after", "-3", -1},         {"retry-after", "soon", -1},
        {"retry-after", "", -1},           {"retry-after", "Wed, 21 Oct 2015 07:28:00 GMT", -1},
        {"x-other", "5", -1},              {"retry-after-ms", "1e20", -1},
    };
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        ccp_headers h = {0};
        ccp_headers_add(&h, cases[i].name, cases[i].value);
        if (ccp_attempt_retry_after(&h) != cases[i].ms)
            fail_msg("%s: %s gave %lld", cases[i].name, cases[i].value, ccp_attempt_retry_after(&h));
        ccp_headers_free(&h);
    }
    /* retry-after-ms wins over retry-after */
    ccp_headers h = {0};
    ccp_headers_add(&h, "retry-after", "9");
    ccp_headers_add(&h, "retry-after-ms", "120");
    assert_int_equal(ccp_attempt_retry_after(&h), 120);
    ccp_headers_free(&h);
}

static bool first_is_error(const char *text)
{
    ccp_sse_event ev = {0};
    size_t used = ccp_sse_next_event(text, strlen(text), &ev);
    assert_true(used > 0);
    bool e = ccp_attempt_is_error_event(&ev);
    ccp_sse_event_free(&ev);
    return e;
}

static void test_error_events(void **state)
{
    (void)state;
    assert_true(first_is_error("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\"}}\n\n"));
    assert_true(first_is_error("event: response.failed\ndata: {\"type\":\"response.failed\"}\n\n"));
    assert_true(first_is_error("data: {\"type\":\"error\",\"code\":\"rate_limit_exceeded\"}\n\n"));
    assert_true(first_is_error("data: {\"type\":\"response.failed\"}\n\n"));
    assert_false(first_is_error("event: message_start\ndata: {\"type\":\"message_start\"}\n\n"));
    assert_false(first_is_error("event: response.created\ndata: {\"type\":\"response.created\"}\n\n"));
    assert_false(first_is_error("data: {\"type\":\"message_start\"}\n\n"));
    assert_false(first_is_error("data: not json\n\n"));
    assert_false(first_is_error("data: [\"error\"]\n\n"));
    /* the name decides when there is one: an error type inside another event is its content */
    assert_false(first_is_error("event: content_block_delta\ndata: {\"type\":\"error\"}\n\n"));
}

static void test_headers_and_body(void **state)
{
    (void)state;
    ccp_pool_upstream server = {.name = "s", .api_key = "sk-server", .auth_style = CCP_AUTH_AUTO};
    ccp_headers_add(&server.headers, "x-tenant", "t1");
    ccp_headers_add(&server.headers, "anthropic-beta", "b2");
    ccp_pool_upstream client = {.name = "c", .auth_style = CCP_AUTH_BEARER};
    ccp_headers base = {0};
    ccp_headers_add(&base, "anthropic-version", "2023-06-01");
    ccp_headers_add(&base, "x-api-key", "sk-client");
    ccp_headers_add(&base, "anthropic-beta", "b1");
    ccp_client_key key = {.value = "sk-client", .source = CCP_KEY_X_API_KEY};
    ccp_headers out = {0};

    ccp_attempt_headers(&out, &base, false, "x-api-key", "sk-client", &ccp_dialect_anthropic, &server, &key);
    assert_int_equal(out.count, 4);
    assert_string_equal(out.items[1].name, "x-api-key"); /* in the client's key's place */
    assert_string_equal(out.items[1].value, "sk-server");
    assert_string_equal(ccp_headers_get(&out, "anthropic-beta"), "b2");
    assert_string_equal(ccp_headers_get(&out, "x-tenant"), "t1");

    ccp_attempt_headers(&out, &base, false, "x-api-key", "sk-client", &ccp_dialect_anthropic, &client, &key);
    assert_null(ccp_headers_get(&out, "x-api-key"));
    assert_string_equal(ccp_headers_get(&out, "authorization"), "Bearer sk-client");
    assert_true(strcasecmp(out.items[1].name, "authorization") == 0);

    /* a key header a step changed is the step's */
    ccp_attempt_headers(&out, &base, false, "x-api-key", "sk-other", &ccp_dialect_anthropic, &server, &key);
    assert_string_equal(ccp_headers_get(&out, "x-api-key"), "sk-client");

    /* the last attempt takes base's lines: the same list, base left empty */
    ccp_headers copied = {0}, taken = {0};
    ccp_attempt_headers(&copied, &base, false, "x-api-key", "sk-client", &ccp_dialect_anthropic, &server, &key);
    ccp_headers moved = {0};
    for (size_t i = 0; i < base.count; i++) ccp_headers_add(&moved, base.items[i].name, base.items[i].value);
    ccp_attempt_headers(&taken, &moved, true, "x-api-key", "sk-client", &ccp_dialect_anthropic, &server, &key);
    assert_int_equal(moved.count, 0);
    assert_null(moved.items);
    assert_int_equal(taken.count, copied.count);
    for (size_t i = 0; i < copied.count; i++) {
        assert_string_equal(taken.items[i].name, copied.items[i].name);
        assert_string_equal(taken.items[i].value, copied.items[i].value);
    }
    ccp_headers_free(&copied);
    ccp_headers_free(&taken);

    json_object *body = json_tokener_parse("{\"model\":\"claude-x\",\"stream\":true}");
    ccp_buf b = {0};
    ccp_attempt_body(&b, body, "claude-x", "up-x");
    assert_string_equal(ccp_buf_cstr(&b), "{\"model\":\"up-x\",\"stream\":true}");
    assert_string_equal(json_object_get_string(json_object_object_get(body, "model")), "claude-x");
    ccp_buf_free(&b);
    json_object_put(body);
    ccp_headers_free(&out);
    ccp_headers_free(&base);
    ccp_headers_free(&server.headers);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_and_statuses),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_error_events),
        cmocka_unit_test(test_headers_and_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
