/* dialect (Anthropic): where the client key comes from, how it goes
 * upstream, the exact error bytes, URL joining and the response header pass
 * list. */
#include "unit.h"

#include <json-c/json.h>

#include "../../common/dialect.h"

#define D (&ccp_dialect_anthropic)

/* ---- client key -------------------------------------------------------------- */

typedef struct key_case {
    const char *x_api_key;     /* NULL: absent */
    const char *authorization; /* NULL: absent */
    bool found;
    const char *value;
    ccp_key_source source;
} key_case;

static void test_client_key_table(void **state)
{
    (void)state;
    static const key_case cases[] = {
        {"k", NULL, true, "k", CCP_KEY_X_API_KEY},
        {NULL, "Bearer k", true, "k", CCP_KEY_BEARER},
        {NULL, "bearer   k", true, "k", CCP_KEY_BEARER},
        {NULL, "BEARER\tk", true, "k", CCP_KEY_BEARER},
        {NULL, "  Bearer k", true, "k", CCP_KEY_BEARER},
        {NULL, "k", true, "k", CCP_KEY_BARE},
        {NULL, "sk-ant-api03-xyz", true, "sk-ant-api03-xyz", CCP_KEY_BARE},
        {NULL, "Bearerk", true, "Bearerk", CCP_KEY_BARE},
        {NULL, "Bearer ", false, NULL, CCP_KEY_NONE},
        {NULL, "Bearer", false, NULL, CCP_KEY_NONE},
        {NULL, "bearer \t ", false, NULL, CCP_KEY_NONE},
        {NULL, "", false, NULL, CCP_KEY_NONE},
        {NULL, "   ", false, NULL, CCP_KEY_NONE},
        {NULL, NULL, false, NULL, CCP_KEY_NONE},
        {"", NULL, false, NULL, CCP_KEY_NONE},
        {"xk", "Bearer bk", true, "xk", CCP_KEY_X_API_KEY},
        {"", "Bearer bk", true, "bk", CCP_KEY_BEARER},
    };
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        ccp_headers h = {0};
        ccp_headers_add(&h, "user-agent", "test");
        if (cases[i].x_api_key) ccp_headers_add(&h, "x-api-key", cases[i].x_api_key);
        if (cases[i].authorization) ccp_headers_add(&h, "authorization", cases[i].authorization);
        ccp_client_key key;
        bool found = ccp_dialect_client_key(D, &h, &key);
        if (found != cases[i].found)
            print_error("case %zu (x-api-key %s, authorization %s): found %d\n", i, cases[i].x_api_key,
                        cases[i].authorization, found);
        assert_int_equal(found, cases[i].found);
        assert_int_equal(key.source, cases[i].source);
        if (cases[i].value) assert_string_equal(key.value, cases[i].value);
        else assert_null(key.value);
        ccp_headers_free(&h);
    }
}

/* ---- upstream auth header ------------------------------------------------------- */

static void test_auth_header_table(void **state)
{
    (void)state;
    static const struct {
        ccp_auth_style style;
        ccp_key_source came_as;
        const char *name;
        const char *value;
    } cases[] = {
        {CCP_AUTH_AUTO, CCP_KEY_X_API_KEY, "x-api-key", "k"},
        {CCP_AUTH_AUTO, CCP_KEY_BEARER, "Authorization", "Bearer k"},
        {CCP_AUTH_AUTO, CCP_KEY_BARE, "x-api-key", "k"},  /* native style */
        {CCP_AUTH_AUTO, CCP_KEY_NONE, "x-api-key", "k"},  /* the server's key */
        {CCP_AUTH_X_API_KEY, CCP_KEY_X_API_KEY, "x-api-key", "k"},
        {CCP_AUTH_X_API_KEY, CCP_KEY_BEARER, "x-api-key", "k"},
        {CCP_AUTH_X_API_KEY, CCP_KEY_BARE, "x-api-key", "k"},
        {CCP_AUTH_X_API_KEY, CCP_KEY_NONE, "x-api-key", "k"},
        {CCP_AUTH_BEARER, CCP_KEY_X_API_KEY, "Authorization", "Bearer k"},
        {CCP_AUTH_BEARER, CCP_KEY_BEARER, "Authorization", "Bearer k"},
        {CCP_AUTH_BEARER, CCP_KEY_BARE, "Authorization", "Bearer k"},
        {CCP_AUTH_BEARER, CCP_KEY_NONE, "Authorization", "Bearer k"},
    };
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        ccp_buf name = {0}, value = {0};
        ccp_buf_append_str(&name, "stale-name");
        ccp_buf_append_str(&value, "stale-value");
        ccp_dialect_auth_header(D, cases[i].style, cases[i].came_as, "k", &name, &value);
        assert_string_equal(ccp_buf_cstr(&name), cases[i].name);
        assert_string_equal(ccp_buf_cstr(&value), cases[i].value);
        ccp_buf_free(&name);
        ccp_buf_free(&value);
    }
}

/* ---- errors ---------------------------------------------------------------------- */

static void test_error_status_table(void **state)
{
    (void)state;
    static const int want[CCP_E_COUNT] = {400, 401, 403, 404, 405, 413, 431, 426, 500, 502, 503, 504, 403};
    for (int k = 0; k < CCP_E_COUNT; k++) assert_int_equal(ccp_error_status((ccp_error_kind)k), want[k]);
    assert_int_equal(ccp_error_status(CCP_E_COUNT), 500);
}

static const char tricky[] = "bad \"model\"\nline two\\ \t\x01 end";
static const char tricky_json[] = "bad \\\"model\\\"\\nline two\\\\ \\t\\u0001 end";

/* Parses the error body and checks the message and the error type. */
static void assert_error_json(const char *text, size_t len, const char *type, const char *message)
{
    json_tokener *tok = json_tokener_new();
    json_object *o = json_tokener_parse_ex(tok, text, (int)len);
    assert_non_null(o);
    assert_int_equal(json_tokener_get_error(tok), json_tokener_success);
    assert_int_equal(json_tokener_get_parse_end(tok), len); /* nothing after the object */
    json_tokener_free(tok);
    json_object *v, *e;
    assert_true(json_object_object_get_ex(o, "type", &v));
    assert_string_equal(json_object_get_string(v), "error");
    assert_true(json_object_object_get_ex(o, "error", &e));
    assert_true(json_object_object_get_ex(e, "type", &v));
    assert_string_equal(json_object_get_string(v), type);
    assert_true(json_object_object_get_ex(e, "message", &v));
    assert_string_equal(json_object_get_string(v), message);
    json_object_put(o);
}

static void test_error_body_exact_bytes(void **state)
{
    (void)state;
    ccp_buf out = {0};
    D->error_body(D, &out, CCP_E_INVALID_REQUEST, tricky);
    ccp_buf want = {0};
    ccp_buf_printf(&want, "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"%s\"}}",
                   tricky_json);
    assert_string_equal(out.data, want.data);
    assert_null(memchr(out.data, '\n', out.len));
    assert_error_json(out.data, out.len, "invalid_request_error", tricky);
    ccp_buf_free(&want);
    ccp_buf_free(&out);
}

static void test_error_body_every_kind_parses(void **state)
{
    (void)state;
    static const char *const types[CCP_E_COUNT] = {
        "invalid_request_error", "authentication_error", "permission_error", "not_found_error",
        "invalid_request_error", "request_too_large",    "invalid_request_error", "invalid_request_error",
        "api_error",             "api_error",            "overloaded_error",      "api_error",
        "permission_error",
    };
    for (int k = 0; k < CCP_E_COUNT; k++) {
        ccp_buf out = {0};
        D->error_body(D, &out, (ccp_error_kind)k, "m");
        assert_error_json(out.data, out.len, types[k], "m");
        ccp_buf_free(&out);
    }
}

static void test_stream_error_event_exact_bytes(void **state)
{
    (void)state;
    ccp_buf out = {0};
    ccp_stream_state st;
    memset(&st, 0, sizeof st);
    st.last_seq = -1;
    D->stream_error_event(D, &out, CCP_E_UPSTREAM, tricky, &st);
    ccp_buf want = {0};
    ccp_buf_printf(&want,
                   "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"%s\"}}\n\n",
                   tricky_json);
    assert_string_equal(out.data, want.data);
    /* One event: a single data line, then exactly one blank line at the end. */
    const char *data = strstr(out.data, "\ndata: ") + 7;
    const char *end = strchr(data, '\n');
    assert_non_null(end);
    assert_string_equal(end, "\n\n");
    assert_error_json(data, (size_t)(end - data), "api_error", tricky);
    ccp_buf_free(&want);
    ccp_buf_free(&out);
}

/* Upstream sequence numbers outside 0..2^53-1 are not taken as the
 * stream's position (issue 13: n - 1 and last_seq + 1 overflowed at the
 * ends of the 64-bit range); the replacement of an error event takes its
 * number, or 0. */
static void test_responses_sequence_numbers_are_bounded(void **state)
{
    (void)state;
    const ccp_dialect *O = &ccp_dialect_openai;
    static const struct {
        const char *name;
        const char *seq;
        long long want;
    } cases[] = {
        {"response.output_text.delta", "5", 5},
        {"error", "5", 4},
        {"error", "0", -1},
        {"response.output_text.delta", "9007199254740991", CCP_SEQ_MAX},
        {"response.output_text.delta", "9007199254740992", 7},
        {"response.output_text.delta", "-9223372036854775808", 7},
        {"error", "-9223372036854775808", 7},
        {"response.output_text.delta", "9223372036854775807", 7},
        {"response.output_text.delta", "99999999999999999999999", 7},
        {"response.output_text.delta", "-1", 7},
    };
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        ccp_stream_state st;
        memset(&st, 0, sizeof st);
        st.last_seq = 7;
        char text[256];
        snprintf(text, sizeof text, "event: %s\ndata: {\"type\":\"%s\",\"sequence_number\":%s}\n\n", cases[i].name,
                 cases[i].name, cases[i].seq);
        ccp_sse_event ev = {0};
        assert_true(ccp_sse_next_event(text, strlen(text), &ev) > 0);
        ccp_buf out = {0};
        O->inspect_event(O, &st, &ev, &out);
        if (st.last_seq != cases[i].want)
            print_error("%s %s: last_seq %lld, want %lld\n", cases[i].name, cases[i].seq, st.last_seq, cases[i].want);
        assert_true(st.last_seq == cases[i].want);
        ccp_buf_free(&out);
        ccp_sse_event_free(&ev);
    }
    /* At the top of the range the next number is still exact. */
    ccp_stream_state st;
    memset(&st, 0, sizeof st);
    st.last_seq = CCP_SEQ_MAX - 1;
    ccp_buf out = {0};
    O->stream_error_event(O, &out, CCP_E_UPSTREAM, "m", &st);
    assert_non_null(strstr(out.data, "\"sequence_number\":9007199254740991,"));
    ccp_buf_free(&out);
}

static void test_error_body_appends(void **state)
{
    (void)state;
    ccp_buf out = {0};
    ccp_buf_append_str(&out, "pre:");
    D->error_body(D, &out, CCP_E_AUTH, "");
    assert_string_equal(out.data, "pre:{\"type\":\"error\",\"error\":{\"type\":\"authentication_error\",\"message\":\"\"}}");
    ccp_buf_free(&out);
}

/* ---- URL ------------------------------------------------------------------------- */

static void test_upstream_url_table(void **state)
{
    (void)state;
    static const struct {
        const char *base, *path, *query, *want;
    } cases[] = {
        {"https://api.anthropic.com", "/v1/messages", NULL, "https://api.anthropic.com/v1/messages"},
        {"https://api.anthropic.com", "/v1/messages", "", "https://api.anthropic.com/v1/messages"},
        {"https://api.anthropic.com", "/v1/messages", "beta=true", "https://api.anthropic.com/v1/messages?beta=true"},
        {"http://127.0.0.1:9000/proxy/anthropic", "/v1/models/claude-x", "a=1&b=2",
         "http://127.0.0.1:9000/proxy/anthropic/v1/models/claude-x?a=1&b=2"},
    };
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        ccp_buf out = {0};
        D->upstream_url(&out, cases[i].base, cases[i].path, cases[i].query);
        assert_string_equal(ccp_buf_cstr(&out), cases[i].want);
        ccp_buf_free(&out);
    }
}

/* ---- response headers passed back --------------------------------------------------- */

static void test_passes_header_table(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        bool pass;
    } cases[] = {
        {"anthropic-ratelimit-requests-limit", true},
        {"Anthropic-RateLimit-Tokens-Remaining", true},
        {"anthropic-ratelimit-", true},
        {"anthropic-ratelimit", false},
        {"anthropic-organization-id", false},
        {"request-id", true},
        {"Request-Id", true},
        {"retry-after", true},
        {"retry-after-ms", true},
        {"x-should-retry", true},
        {"content-type", true},
        {"set-cookie", false},
        {"Set-Cookie", false},
        {"content-length", false},
        {"transfer-encoding", false},
        {"connection", false},
        {"request-idx", false},
        {"", false},
    };
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        bool got = ccp_dialect_passes_header(D, cases[i].name);
        if (got != cases[i].pass) print_error("%s: %d\n", cases[i].name, got);
        assert_int_equal(got, cases[i].pass);
    }
}

static void test_default_request_headers_are_pairs(void **state)
{
    (void)state;
    const char *const *p = D->default_request_headers;
    assert_non_null(p);
    assert_string_equal(p[0], "anthropic-version");
    assert_string_equal(p[1], "2023-06-01");
    size_t n = 0;
    while (p[n]) n++;
    assert_int_equal(n % 2, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_key_table),
        cmocka_unit_test(test_auth_header_table),
        cmocka_unit_test(test_error_status_table),
        cmocka_unit_test(test_error_body_exact_bytes),
        cmocka_unit_test(test_error_body_every_kind_parses),
        cmocka_unit_test(test_stream_error_event_exact_bytes),
        cmocka_unit_test(test_error_body_appends),
        cmocka_unit_test(test_responses_sequence_numbers_are_bounded),
        cmocka_unit_test(test_upstream_url_table),
        cmocka_unit_test(test_passes_header_table),
        cmocka_unit_test(test_default_request_headers_are_pairs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
