/* log: the request line on stderr (captured through dup2 onto a temp file):
 * one JSON line with the fields, bodies only in test, capped and marked;
 * the console format on one line; level filtering. */
#include "unit.h"

#include <json-c/json.h>
#include <pthread.h>
#include <sys/stat.h>

#include "../../common/log.h"

static void init_log(ccp_environment env, ccp_log_format fmt, ccp_log_level level, size_t body_cap)
{
    ccp_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.environment = env;
    cfg.log_format = fmt;
    cfg.log_level = level;
    cfg.log_body_max_bytes = body_cap;
    ccp_log_init(&cfg, "claude-service");
}

static ccp_request_log sample(void)
{
    ccp_request_log r;
    memset(&r, 0, sizeof r);
    r.adapter = "default";
    r.method = "POST";
    r.path = "/v1/messages";
    r.model = "claude-sonnet-4-5";
    r.stream = 1;
    r.message_count = 3;
    r.user_agent = "claude-cli/1.0 (external, cli)";
    r.status = 200;
    r.duration_ms = 12.5;
    r.ttfb_ms = 3.25;
    r.bytes_out = 1234;
    r.key_fp = "ba7816bf";
    return r;
}

/* Runs ccp_log_request with stderr captured into out. */
static void capture_request(const ccp_request_log *r, ccp_buf *out)
{
    unit_stderr c;
    unit_stderr_begin(&c);
    ccp_log_request(r);
    unit_stderr_end(&c, out);
}

/* Exactly one line, ending in '\n', that parses as one JSON object. */
static json_object *parse_one_line(const ccp_buf *out)
{
    assert_true(out->len > 1);
    assert_int_equal(out->data[out->len - 1], '\n');
    assert_int_equal(unit_count_str(out->data, "\n"), 1);
    json_tokener *tok = json_tokener_new();
    json_object *o = json_tokener_parse_ex(tok, out->data, (int)out->len - 1);
    assert_int_equal(json_tokener_get_error(tok), json_tokener_success);
    assert_int_equal(json_tokener_get_parse_end(tok), out->len - 1);
    json_tokener_free(tok);
    assert_non_null(o);
    assert_true(json_object_is_type(o, json_type_object));
    return o;
}

static json_object *field(json_object *o, const char *k)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, k, &v)) fail_msg("field %s missing", k);
    return v;
}

static bool has(json_object *o, const char *k)
{
    return json_object_object_get_ex(o, k, NULL);
}

static void test_request_json_line_has_the_fields(void **state)
{
    (void)state;
    init_log(CCP_ENV_PRODUCTION, CCP_LOG_JSON, CCP_LOG_INFO, 4096);
    ccp_request_log r = sample();
    r.request_body = "{\"secret\":1}";
    r.request_body_len = 12;
    ccp_buf out = {0};
    capture_request(&r, &out);
    json_object *o = parse_one_line(&out);
    assert_string_equal(json_object_get_string(field(o, "level")), "info");
    assert_string_equal(json_object_get_string(field(o, "event")), "request");
    assert_string_equal(json_object_get_string(field(o, "service")), "claude-service");
    assert_string_equal(json_object_get_string(field(o, "adapter")), "default");
    assert_string_equal(json_object_get_string(field(o, "method")), "POST");
    assert_string_equal(json_object_get_string(field(o, "path")), "/v1/messages");
    assert_string_equal(json_object_get_string(field(o, "model")), "claude-sonnet-4-5");
    assert_true(json_object_is_type(field(o, "stream"), json_type_boolean));
    assert_true(json_object_get_boolean(field(o, "stream")));
    assert_int_equal(json_object_get_int(field(o, "message_count")), 3);
    assert_string_equal(json_object_get_string(field(o, "user_agent")), "claude-cli/1.0 (external, cli)");
    assert_int_equal(json_object_get_int(field(o, "status")), 200);
    assert_true(json_object_get_double(field(o, "duration_ms")) == 12.5);
    assert_true(json_object_get_double(field(o, "upstream_ttfb_ms")) == 3.25);
    assert_int_equal(json_object_get_int(field(o, "bytes_out")), 1234);
    assert_string_equal(json_object_get_string(field(o, "key_fp")), "ba7816bf");
    const char *t = json_object_get_string(field(o, "time"));
    assert_int_equal(strlen(t), strlen("2025-01-01T00:00:00.000Z"));
    assert_int_equal(t[10], 'T');
    assert_int_equal(t[23], 'Z');
    /* Production: no bodies, and nothing absent is invented. */
    assert_false(has(o, "request_body"));
    assert_false(has(o, "response_body"));
    assert_false(has(o, "error"));
    assert_null(strstr(out.data, "secret"));
    json_object_put(o);
    ccp_buf_free(&out);
}

static void test_unknown_fields_are_left_out(void **state)
{
    (void)state;
    init_log(CCP_ENV_PRODUCTION, CCP_LOG_JSON, CCP_LOG_INFO, 4096);
    ccp_request_log r;
    memset(&r, 0, sizeof r);
    r.stream = -1;
    r.message_count = -1;
    r.ttfb_ms = -1;
    r.status = 404;
    ccp_buf out = {0};
    capture_request(&r, &out);
    json_object *o = parse_one_line(&out);
    assert_string_equal(json_object_get_string(field(o, "level")), "warning");
    assert_string_equal(json_object_get_string(field(o, "adapter")), "-");
    assert_string_equal(json_object_get_string(field(o, "path")), "-");
    static const char *const absent[] = {"model", "stream", "message_count", "user_agent", "upstream_ttfb_ms",
                                         "key_fp", "error"};
    for (size_t i = 0; i < UNIT_COUNT(absent); i++) assert_false(has(o, absent[i]));
    json_object_put(o);
    ccp_buf_free(&out);
}

static void test_usage_and_ids_in_the_line(void **state)
{
    (void)state;
    init_log(CCP_ENV_PRODUCTION, CCP_LOG_JSON, CCP_LOG_INFO, 4096);
    ccp_usage u;
    ccp_usage_init(&u, CCP_USAGE_MESSAGES);
    u.seen = true;
    u.tokens[CCP_TOKENS_INPUT] = 11;
    u.tokens[CCP_TOKENS_OUTPUT] = 22;
    u.tokens[CCP_TOKENS_CACHE_READ] = 33;
    u.tokens[CCP_TOKENS_CACHE_CREATION] = 44;
    ccp_request_log r = sample();
    r.usage = &u;
    r.request_id = "0123456789abcdef0123456789abcdef";
    r.upstream_request_id = "req_01\"x";
    r.bytes_in = 99;
    ccp_buf out = {0};
    capture_request(&r, &out);
    json_object *o = parse_one_line(&out);
    json_object *usage = field(o, "usage");
    assert_int_equal(json_object_get_int(field(usage, "input")), 11);
    assert_int_equal(json_object_get_int(field(usage, "output")), 22);
    assert_int_equal(json_object_get_int(field(usage, "cache_read")), 33);
    assert_int_equal(json_object_get_int(field(usage, "cache_creation")), 44);
    assert_false(has(usage, "reasoning")); /* only when the upstream named it */
    assert_string_equal(json_object_get_string(field(o, "request_id")), "0123456789abcdef0123456789abcdef");
    assert_string_equal(json_object_get_string(field(o, "upstream_request_id")), "req_01\"x");
    assert_int_equal(json_object_get_int(field(o, "bytes_in")), 99);
    json_object_put(o);

    u.reasoning_seen = true;
    u.tokens[CCP_TOKENS_REASONING] = 5;
    ccp_buf_reset(&out);
    capture_request(&r, &out);
    o = parse_one_line(&out);
    assert_int_equal(json_object_get_int(field(field(o, "usage"), "reasoning")), 5);
    json_object_put(o);

    /* Console: one line still. */
    init_log(CCP_ENV_PRODUCTION, CCP_LOG_CONSOLE, CCP_LOG_INFO, 4096);
    ccp_buf_reset(&out);
    capture_request(&r, &out);
    assert_int_equal(unit_count_str(out.data, "\n"), 1);
    assert_non_null(strstr(out.data, "usage=input:11,output:22,cache_read:33,cache_creation:44,reasoning:5"));
    ccp_buf_free(&out);
}

static void test_level_follows_status(void **state)
{
    (void)state;
    static const struct {
        int status;
        const char *level;
    } cases[] = {{200, "info"},    {302, "info"},  {400, "warning"}, {426, "info"}, /* a refused WebSocket */
                 {499, "warning"}, {500, "error"}, {504, "error"}};
    init_log(CCP_ENV_PRODUCTION, CCP_LOG_JSON, CCP_LOG_DEBUG, 4096);
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        ccp_request_log r = sample();
        r.status = cases[i].status;
        ccp_buf out = {0};
        capture_request(&r, &out);
        json_object *o = parse_one_line(&out);
        assert_string_equal(json_object_get_string(field(o, "level")), cases[i].level);
        json_object_put(o);
        ccp_buf_free(&out);
    }
}

static void test_level_below_minimum_writes_nothing(void **state)
{
    (void)state;
    init_log(CCP_ENV_PRODUCTION, CCP_LOG_JSON, CCP_LOG_WARNING, 4096);
    assert_false(ccp_log_enabled(CCP_LOG_INFO));
    assert_true(ccp_log_enabled(CCP_LOG_ERROR));
    ccp_request_log r = sample();
    ccp_buf out = {0};
    capture_request(&r, &out);
    assert_int_equal(out.len, 0);
    r.status = 503;
    capture_request(&r, &out);
    assert_int_equal(unit_count_str(ccp_buf_cstr(&out), "\n"), 1);
    ccp_buf_free(&out);
}

static void test_error_text_with_quotes_and_newlines_round_trips(void **state)
{
    (void)state;
    init_log(CCP_ENV_PRODUCTION, CCP_LOG_JSON, CCP_LOG_INFO, 4096);
    ccp_request_log r = sample();
    r.status = 502;
    r.error = "upstream said \"no\"\nline2\\ \x01";
    r.user_agent = "ua\r\nInjected: 1";
    ccp_buf out = {0};
    capture_request(&r, &out);
    json_object *o = parse_one_line(&out);
    assert_string_equal(json_object_get_string(field(o, "error")), r.error);
    assert_string_equal(json_object_get_string(field(o, "user_agent")), r.user_agent);
    json_object_put(o);
    ccp_buf_free(&out);
}

static void test_bodies_logged_in_test_environment(void **state)
{
    (void)state;
    init_log(CCP_ENV_TEST, CCP_LOG_JSON, CCP_LOG_INFO, 4096);
    ccp_request_log r = sample();
    r.request_body = "{\"model\":\"m\",\n\"messages\":[]}";
    r.request_body_len = strlen(r.request_body);
    r.response_body = "event: ping\ndata: {}\n\n";
    r.response_body_len = strlen(r.response_body);
    ccp_buf out = {0};
    capture_request(&r, &out);
    json_object *o = parse_one_line(&out);
    assert_string_equal(json_object_get_string(field(o, "request_body")), r.request_body);
    assert_string_equal(json_object_get_string(field(o, "response_body")), r.response_body);
    assert_false(has(o, "request_body_truncated"));
    assert_false(has(o, "response_body_truncated"));
    json_object_put(o);
    ccp_buf_free(&out);
}

static void test_body_capped_and_marked_truncated(void **state)
{
    (void)state;
    init_log(CCP_ENV_TEST, CCP_LOG_JSON, CCP_LOG_INFO, 10);
    ccp_request_log r = sample();
    r.request_body = "0123456789ABCDEF";
    r.request_body_len = 16;
    r.response_body = "short";
    r.response_body_len = 5;
    ccp_buf out = {0};
    capture_request(&r, &out);
    json_object *o = parse_one_line(&out);
    assert_string_equal(json_object_get_string(field(o, "request_body")), "0123456789");
    assert_string_equal(json_object_get_string(field(o, "response_body")), "short");
    assert_true(json_object_get_boolean(field(o, "request_body_truncated")));
    assert_false(has(o, "response_body_truncated"));
    assert_null(strstr(out.data, "ABCDEF"));
    json_object_put(o);
    ccp_buf_free(&out);
}

static void test_body_exactly_at_cap_is_not_truncated(void **state)
{
    (void)state;
    init_log(CCP_ENV_TEST, CCP_LOG_JSON, CCP_LOG_INFO, 10);
    ccp_request_log r = sample();
    r.request_body = "0123456789";
    r.request_body_len = 10;
    ccp_buf out = {0};
    capture_request(&r, &out);
    json_object *o = parse_one_line(&out);
    assert_string_equal(json_object_get_string(field(o, "request_body")), "0123456789");
    assert_false(has(o, "request_body_truncated"));
    assert_false(has(o, "response_body_truncated"));
    json_object_put(o);
    ccp_buf_free(&out);
}

/* Both bodies over the cap: the line must not repeat the body_truncated key
 * (RFC 8259 §4: names SHOULD be unique; json-c, jq and most log pipelines
 * silently keep only the last one). */
static void test_both_bodies_truncated_gives_unique_keys(void **state)
{
    (void)state;
    init_log(CCP_ENV_TEST, CCP_LOG_JSON, CCP_LOG_INFO, 4);
    ccp_request_log r = sample();
    r.request_body = "request-body";
    r.request_body_len = 12;
    r.response_body = "response-body";
    r.response_body_len = 13;
    ccp_buf out = {0};
    capture_request(&r, &out);
    json_object *o = parse_one_line(&out);
    assert_string_equal(json_object_get_string(field(o, "request_body")), "requ");
    assert_string_equal(json_object_get_string(field(o, "response_body")), "resp");
    size_t n = unit_count_str(out.data, "_truncated\"");
    bool both = has(o, "request_body_truncated") && has(o, "response_body_truncated");
    if (n != 2) print_error("expected one marker per body, got %zu: %s", n, out.data);
    json_object_put(o);
    ccp_buf_free(&out);
    assert_int_equal(n, 2);
    assert_true(both);
}

static void test_body_cap_zero_logs_empty_marked_body(void **state)
{
    (void)state;
    init_log(CCP_ENV_TEST, CCP_LOG_JSON, CCP_LOG_INFO, 0);
    ccp_request_log r = sample();
    r.request_body = "abc";
    r.request_body_len = 3;
    ccp_buf out = {0};
    capture_request(&r, &out);
    json_object *o = parse_one_line(&out);
    assert_string_equal(json_object_get_string(field(o, "request_body")), "");
    assert_true(json_object_get_boolean(field(o, "request_body_truncated")));
    json_object_put(o);
    ccp_buf_free(&out);
}

static void test_console_format_is_one_line(void **state)
{
    (void)state;
    init_log(CCP_ENV_TEST, CCP_LOG_CONSOLE, CCP_LOG_INFO, 4096);
    ccp_request_log r = sample();
    r.status = 502;
    r.error = "upstream closed\nmid stream";
    r.request_body = "{\n\"a\": 1\r\n}";
    r.request_body_len = strlen(r.request_body);
    ccp_buf out = {0};
    capture_request(&r, &out);
    assert_true(out.len > 1);
    assert_int_equal(out.data[out.len - 1], '\n');
    assert_int_equal(unit_count_str(out.data, "\n"), 1);
    assert_null(strchr(out.data, '\r'));
    assert_int_not_equal(out.data[0], '{');
    assert_non_null(strstr(out.data, " error "));
    assert_non_null(strstr(out.data, "claude-service"));
    assert_non_null(strstr(out.data, " path=/v1/messages"));
    assert_non_null(strstr(out.data, " status=502"));
    assert_non_null(strstr(out.data, " stream=true"));
    assert_non_null(strstr(out.data, " user_agent=\"claude-cli/1.0 (external, cli)\""));
    assert_non_null(strstr(out.data, " error=\"upstream closed\\nmid stream\""));
    ccp_buf_free(&out);
}

static void test_event_json_and_message_escaping(void **state)
{
    (void)state;
    init_log(CCP_ENV_PRODUCTION, CCP_LOG_JSON, CCP_LOG_INFO, 4096);
    ccp_buf out = {0};
    unit_stderr c;
    unit_stderr_begin(&c);
    ccp_log_event(CCP_LOG_WARNING, "config", "bad \"%s\"\n%d", "x", 7);
    ccp_log_event(CCP_LOG_DEBUG, "hidden", "below the level");
    unit_stderr_end(&c, &out);
    json_object *o = parse_one_line(&out);
    assert_string_equal(json_object_get_string(field(o, "event")), "config");
    assert_string_equal(json_object_get_string(field(o, "level")), "warning");
    assert_string_equal(json_object_get_string(field(o, "message")), "bad \"x\"\n7");
    json_object_put(o);

    ccp_buf_reset(&out);
    unit_stderr_begin(&c);
    ccp_log_event_json(CCP_LOG_INFO, "startup", "\"version\":\"1\",\"workers\":4");
    unit_stderr_end(&c, &out);
    o = parse_one_line(&out);
    assert_string_equal(json_object_get_string(field(o, "event")), "startup");
    assert_int_equal(json_object_get_int(field(o, "workers")), 4);
    json_object_put(o);
    ccp_buf_free(&out);
}

/* The two-decimal milliseconds are what "%.2f" printed before: exact text. */
static void test_milliseconds_print_like_printf(void **state)
{
    (void)state;
    init_log(CCP_ENV_PRODUCTION, CCP_LOG_JSON, CCP_LOG_INFO, 4096);
    static const struct {
        double ms;
        const char *text;
    } cases[] = {{0, "0.00"},          {12.5, "12.50"},       {3.25, "3.25"},   {0.994, "0.99"},
                 {0.996, "1.00"},      {1234.567, "1234.57"}, {99999.999, "100000.00"},
                 {600000.25, "600000.25"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ccp_request_log r = sample();
        r.duration_ms = cases[i].ms;
        ccp_buf out = {0};
        capture_request(&r, &out);
        char want[64];
        snprintf(want, sizeof want, "\"duration_ms\":%s,", cases[i].text);
        if (!strstr(out.data, want)) fail_msg("%g: wanted %s in %s", cases[i].ms, want, out.data);
        ccp_buf_free(&out);
    }
}

/* A loop thread's lines wait until the flush, in order; a batch is written
 * before it would pass PIPE_BUF (4096), as whole lines; a line longer than
 * that goes out at once, after what was waiting; batching off flushes. */
static void test_batched_lines_wait_for_the_flush_whole_and_in_order(void **state)
{
    (void)state;
    init_log(CCP_ENV_TEST, CCP_LOG_JSON, CCP_LOG_INFO, 16384);
    unit_stderr c;
    ccp_buf out = {0};
    unit_stderr_begin(&c);
    ccp_log_batch(true);
    ccp_request_log r = sample();
    r.message_count = 0;
    ccp_log_request(&r);
    r.message_count = 1;
    ccp_log_request(&r);
    struct stat st;
    assert_int_equal(fstat(c.fd, &st), 0);
    assert_int_equal(st.st_size, 0); /* both wait */
    ccp_log_flush();
    assert_int_equal(fstat(c.fd, &st), 0);
    assert_true(st.st_size > 0);
    off_t two = st.st_size;

    /* About 600 bytes a line: the seventh does not fit the first batch. */
    char body[301];
    memset(body, 'b', 300);
    body[300] = '\0';
    r.request_body = body;
    r.request_body_len = 300;
    for (int i = 2; i < 12; i++) {
        r.message_count = i;
        ccp_log_request(&r);
    }
    assert_int_equal(fstat(c.fd, &st), 0);
    assert_true(st.st_size > two);             /* one batch went out */
    assert_true(st.st_size - two <= 4096);      /* within PIPE_BUF */
    char last;
    assert_int_equal(pread(c.fd, &last, 1, st.st_size - 1), 1);
    assert_int_equal(last, '\n');               /* whole lines only */

    static char big[6000];
    memset(big, 'g', sizeof big - 1);
    r.request_body = big;
    r.request_body_len = sizeof big - 1;
    r.message_count = 12;
    ccp_log_request(&r); /* alone, at once, after the waiting ones */
    off_t before_off = st.st_size;
    assert_int_equal(fstat(c.fd, &st), 0);
    assert_true(st.st_size - before_off > 6000);
    r.request_body = NULL;
    r.message_count = 13;
    ccp_log_request(&r);
    ccp_log_batch(false); /* flushes the last */
    unit_stderr_end(&c, &out);

    int seen = 0;
    for (const char *p = out.data; *p; seen++) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl);
        json_tokener *tok = json_tokener_new();
        json_object *o = json_tokener_parse_ex(tok, p, (int)(nl - p));
        assert_int_equal(json_tokener_get_error(tok), json_tokener_success);
        json_tokener_free(tok);
        assert_int_equal(json_object_get_int(field(o, "message_count")), seen);
        json_object_put(o);
        p = nl + 1;
    }
    assert_int_equal(seen, 14);
    ccp_buf_free(&out);
}

/* A loop thread batches, logs and ends: its line is written by the time it
 * turns batching off, and its buffers go with it (under SANITIZE=1, a
 * thread's buffers left behind are a leak report at exit). */
static void *batching_thread(void *arg)
{
    (void)arg;
    ccp_log_batch(true);
    ccp_request_log r = sample();
    r.message_count = 42;
    ccp_log_request(&r);
    ccp_log_batch(false);
    return NULL;
}

static void test_a_batching_thread_ends_with_its_line_written(void **state)
{
    (void)state;
    init_log(CCP_ENV_PRODUCTION, CCP_LOG_JSON, CCP_LOG_INFO, 4096);
    unit_stderr c;
    ccp_buf out = {0};
    unit_stderr_begin(&c);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, batching_thread, NULL), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    unit_stderr_end(&c, &out);
    json_object *o = parse_one_line(&out);
    assert_int_equal(json_object_get_int(field(o, "message_count")), 42);
    json_object_put(o);
    ccp_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_json_line_has_the_fields),
        cmocka_unit_test(test_unknown_fields_are_left_out),
        cmocka_unit_test(test_level_follows_status),
        cmocka_unit_test(test_level_below_minimum_writes_nothing),
        cmocka_unit_test(test_error_text_with_quotes_and_newlines_round_trips),
        cmocka_unit_test(test_bodies_logged_in_test_environment),
        cmocka_unit_test(test_body_capped_and_marked_truncated),
        cmocka_unit_test(test_body_exactly_at_cap_is_not_truncated),
        cmocka_unit_test(test_both_bodies_truncated_gives_unique_keys),
        cmocka_unit_test(test_body_cap_zero_logs_empty_marked_body),
        cmocka_unit_test(test_console_format_is_one_line),
        cmocka_unit_test(test_event_json_and_message_escaping),
        cmocka_unit_test(test_usage_and_ids_in_the_line),
        cmocka_unit_test(test_milliseconds_print_like_printf),
        cmocka_unit_test(test_batched_lines_wait_for_the_flush_whole_and_in_order),
        cmocka_unit_test(test_a_batching_thread_ends_with_its_line_written),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
