/* test_usage: the usage reader on answers of both APIs (tests/fixtures/answers),
 * fed as the relay feeds it (whole events from the framer, in any chunking),
 * on hand-made streams, and on streams cut before their final event. */
#include "unit.h"

#include "../../common/sse.h"
#include "../../common/usage.h"

/* tests/fixtures/answers/<name>, found beside the README the Makefile names. */
static void read_answer(const char *name, ccp_buf *out)
{
    char path[4096];
    snprintf(path, sizeof path, "%s", CCP_README_PATH);
    char *slash = strrchr(path, '/');
    assert_non_null(slash);
    snprintf(slash + 1, sizeof path - (size_t)(slash + 1 - path), "tests/fixtures/answers/%s", name);
    ccp_buf err = {0};
    if (ccp_buf_read_file(out, path, &err) != CCP_OK) print_error("%s: %s\n", path, err.data);
    assert_int_equal(err.len, 0);
    ccp_buf_free(&err);
}

static int scan_emit(void *ctx, const char *p, size_t n)
{
    ccp_usage_scan(ctx, p, n);
    return 0;
}

/* The stream through the framer in pieces of chunk bytes, then its clean end. */
static void feed(ccp_usage *u, const char *p, size_t n, size_t chunk)
{
    ccp_sse_framer f = {0};
    for (size_t at = 0; at < n; at += chunk)
        ccp_sse_framer_feed(&f, p + at, n - at < chunk ? n - at : chunk, scan_emit, u);
    ccp_sse_framer_finish(&f, scan_emit, u);
    ccp_sse_framer_free(&f);
}

static void expect(const ccp_usage *u, long long in, long long out, long long cr, long long cc, long long reasoning)
{
    assert_true(u->seen);
    assert_int_equal(u->tokens[CCP_TOKENS_INPUT], in);
    assert_int_equal(u->tokens[CCP_TOKENS_OUTPUT], out);
    assert_int_equal(u->tokens[CCP_TOKENS_CACHE_READ], cr);
    assert_int_equal(u->tokens[CCP_TOKENS_CACHE_CREATION], cc);
    assert_int_equal(u->tokens[CCP_TOKENS_REASONING], reasoning);
}

/* A held answer with an empty body hands over no buffer at all: found by
 * the exchange fuzz target (memmem on NULL under UBSan). */
static void test_empty_body_without_buffer(void **state)
{
    (void)state;
    for (int api = 0; api < 2; api++) {
        ccp_usage u;
        ccp_usage_init(&u, api ? CCP_USAGE_RESPONSES : CCP_USAGE_MESSAGES);
        ccp_usage_body(&u, NULL, 0);
        ccp_usage_scan(&u, NULL, 0);
        assert_false(u.seen);
        assert_false(u.error_event);
        ccp_usage_free(&u);
    }
}

static void test_messages_stream_fixture_any_chunking(void **state)
{
    (void)state;
    ccp_buf s = {0};
    read_answer("messages_stream.sse", &s);
    static const size_t chunks[] = {1, 2, 7, 64, 100000};
    for (size_t i = 0; i < UNIT_COUNT(chunks); i++) {
        ccp_usage u;
        ccp_usage_init(&u, CCP_USAGE_MESSAGES);
        feed(&u, s.data, s.len, chunks[i]);
        /* message_delta's output (12) replaces message_start's (1). */
        expect(&u, 28, 12, 2048, 512, 0);
        assert_false(u.reasoning_seen);
        assert_false(u.error_event);
        ccp_usage_free(&u);
    }
    ccp_buf_free(&s);
}

static void test_messages_stream_cut_before_final_event(void **state)
{
    (void)state;
    ccp_buf s = {0};
    read_answer("messages_stream.sse", &s);
    const char *cut = strstr(s.data, "event: message_delta");
    assert_non_null(cut);
    ccp_usage u;
    ccp_usage_init(&u, CCP_USAGE_MESSAGES);
    feed(&u, s.data, (size_t)(cut - s.data), 5);
    /* What message_start said stays: the input was used. */
    expect(&u, 28, 1, 2048, 512, 0);
    ccp_usage_free(&u);

    /* Cut inside message_start itself: nothing whole, nothing counted. */
    ccp_usage_init(&u, CCP_USAGE_MESSAGES);
    const char *start = strstr(s.data, "event: message_start");
    ccp_usage_scan(&u, s.data, (size_t)(start - s.data) + 60);
    assert_false(u.seen);
    ccp_usage_free(&u);
    ccp_buf_free(&s);
}

static void test_messages_body_fixture(void **state)
{
    (void)state;
    ccp_buf s = {0};
    read_answer("messages.json", &s);
    ccp_usage u;
    ccp_usage_init(&u, CCP_USAGE_MESSAGES);
    ccp_usage_body(&u, s.data, s.len);
    expect(&u, 24, 12, 0, 0, 0);
    ccp_usage_free(&u);
    /* Half a body is no answer. */
    ccp_usage_init(&u, CCP_USAGE_MESSAGES);
    ccp_usage_body(&u, s.data, s.len / 2);
    assert_false(u.seen);
    ccp_usage_free(&u);
    ccp_buf_free(&s);
}

static void test_responses_stream_fixture_splits_cached_and_reasoning(void **state)
{
    (void)state;
    ccp_buf s = {0};
    read_answer("responses_stream.sse", &s);
    static const size_t chunks[] = {1, 3, 333, 100000};
    for (size_t i = 0; i < UNIT_COUNT(chunks); i++) {
        ccp_usage u;
        ccp_usage_init(&u, CCP_USAGE_RESPONSES);
        feed(&u, s.data, s.len, chunks[i]);
        expect(&u, 13, 12, 100, 0, 64);
        assert_true(u.reasoning_seen);
        ccp_usage_free(&u);
    }
    /* Cut before response.completed: no usage was reported. */
    const char *cut = strstr(s.data, "event: response.completed");
    assert_non_null(cut);
    ccp_usage u;
    ccp_usage_init(&u, CCP_USAGE_RESPONSES);
    feed(&u, s.data, (size_t)(cut - s.data), 17);
    assert_false(u.seen);
    ccp_usage_free(&u);
    ccp_buf_free(&s);
}

static void test_responses_incomplete_and_body_fixtures(void **state)
{
    (void)state;
    ccp_buf s = {0};
    read_answer("responses_incomplete.sse", &s);
    ccp_usage u;
    ccp_usage_init(&u, CCP_USAGE_RESPONSES);
    feed(&u, s.data, s.len, 40);
    expect(&u, 11, 12, 0, 0, 0);
    ccp_usage_free(&u);
    ccp_buf_free(&s);

    read_answer("responses.json", &s);
    ccp_usage_init(&u, CCP_USAGE_RESPONSES);
    ccp_usage_body(&u, s.data, s.len);
    expect(&u, 8, 12, 0, 0, 64);
    ccp_usage_free(&u);
    ccp_buf_free(&s);
}

/* A forced stream's events as the aggregating relay sees them: parsed. */
static void test_parsed_events_and_unnamed_ones(void **state)
{
    (void)state;
    ccp_usage u;
    ccp_usage_init(&u, CCP_USAGE_RESPONSES);
    const char *done = "{\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":50,"
                       "\"input_tokens_details\":{\"cached_tokens\":20},\"output_tokens\":9}}}";
    ccp_usage_event(&u, "response.completed", 18, done, strlen(done));
    expect(&u, 30, 9, 20, 0, 0);
    assert_false(u.reasoning_seen);
    ccp_usage_free(&u);

    /* A relay that drops the event: lines: the data's type decides. */
    ccp_usage_init(&u, CCP_USAGE_RESPONSES);
    const char *stream = "data: {\"type\":\"response.created\"}\n\n"
                         "data: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":5,"
                         "\"output_tokens\":4}}}\n\n";
    ccp_sse_event ev = {0};
    size_t at = 0, used;
    while ((used = ccp_sse_next_event(stream + at, strlen(stream) - at, &ev)) > 0) {
        ccp_usage_event(&u, ev.name.data, ev.name.len, ev.data.data, ev.data.len);
        at += used;
    }
    ccp_sse_event_free(&ev);
    expect(&u, 5, 4, 0, 0, 0);
    ccp_usage_free(&u);
}

static void test_hand_made_messages_stream(void **state)
{
    (void)state;
    /* CRLF lines, an id: line before event:, a later message_delta with the
     * cumulative counts the current API sends, and event: inside a text. */
    const char *s =
        "id: 1\r\nevent: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":"
        "{\"input_tokens\":10,\"cache_read_input_tokens\":4,\"output_tokens\":1}}}\r\n\r\n"
        "event: content_block_delta\r\ndata: {\"delta\":{\"text\":\"event: message_delta\\nevent: error\"}}\r\n\r\n"
        "event: message_delta\r\ndata: {\"type\":\"message_delta\",\"usage\":{\"input_tokens\":10,"
        "\"cache_creation_input_tokens\":3,\"output_tokens\":77}}\r\n\r\n"
        "event: message_stop\r\ndata: {\"type\":\"message_stop\"}\r\n\r\n";
    ccp_usage u;
    ccp_usage_init(&u, CCP_USAGE_MESSAGES);
    feed(&u, s, strlen(s), 3);
    expect(&u, 10, 77, 4, 3, 0);
    assert_false(u.error_event);
    ccp_usage_free(&u);

    /* The upstream's error event is noticed; the last event without its
     * blank line (a clean end) is read too. */
    const char *e = "event: message_start\ndata: {\"message\":{\"usage\":{\"input_tokens\":2}}}\n\n"
                    "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\"}}\n\n"
                    "event: message_delta\ndata: {\"usage\":{\"output_tokens\":6}}";
    ccp_usage_init(&u, CCP_USAGE_MESSAGES);
    ccp_usage_scan(&u, e, strlen(e));
    expect(&u, 2, 6, 0, 0, 0);
    assert_true(u.error_event);
    ccp_usage_free(&u);
}

static void test_bad_values_are_ignored_or_clamped(void **state)
{
    (void)state;
    ccp_usage u;
    ccp_usage_init(&u, CCP_USAGE_MESSAGES);
    const char *s = "event: message_start\ndata: {\"message\":{\"usage\":{\"input_tokens\":-5,"
                    "\"output_tokens\":\"7\",\"cache_read_input_tokens\":1.5,"
                    "\"cache_creation_input_tokens\":99999999999999999}}}\n\n"
                    "event: message_delta\ndata: {not json\n\n"
                    "event: message_delta\ndata: [1,2]\n\n";
    ccp_usage_scan(&u, s, strlen(s));
    expect(&u, 0, 0, 0, CCP_USAGE_MAX, 0);
    ccp_usage_free(&u);

    /* Responses: cached above input and reasoning above output are cut to them. */
    ccp_usage_init(&u, CCP_USAGE_RESPONSES);
    const char *r = "{\"usage\":{\"input_tokens\":3,\"input_tokens_details\":{\"cached_tokens\":9},"
                    "\"output_tokens\":2,\"output_tokens_details\":{\"reasoning_tokens\":5}}}";
    ccp_usage_body(&u, r, strlen(r));
    expect(&u, 0, 0, 3, 0, 2);
    ccp_usage_free(&u);

    /* The last usage object is the answer's own (a tool's input may hold
     * one before it); strings with escaped quotes and braces, arrays and
     * nested objects inside it are passed over; a repeated key: the last. */
    ccp_usage_init(&u, CCP_USAGE_MESSAGES);
    const char *b = "{\"content\":[{\"type\":\"tool_use\",\"input\":{\"usage\":{\"input_tokens\":999}}}],"
                    "\"usage\" : { \"note\":\"a\\\"}b\", \"list\":[1,{\"x\":[]},\"]\"], \"server_tool_use\":"
                    "{\"web_search_requests\":2}, \"input_tokens\":3, \"output_tokens\":1, \"output_tokens\":8,"
                    " \"cache_read_input_tokens\":null }}";
    ccp_usage_body(&u, b, strlen(b));
    expect(&u, 3, 8, 0, 0, 0);
    ccp_usage_free(&u);
    /* A usage object cut before its closing brace is no report. */
    ccp_usage_init(&u, CCP_USAGE_MESSAGES);
    const char *cut = "{\"usage\":{\"input_tokens\":3,\"output_tokens\":8";
    ccp_usage_body(&u, cut, strlen(cut));
    assert_false(u.seen);
    ccp_usage_free(&u);

    /* Events of the other API are nobody's usage. */
    ccp_usage_init(&u, CCP_USAGE_RESPONSES);
    const char *m = "event: message_start\ndata: {\"message\":{\"usage\":{\"input_tokens\":2}}}\n\n";
    ccp_usage_scan(&u, m, strlen(m));
    assert_false(u.seen);
    ccp_usage_free(&u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_body_without_buffer),
        cmocka_unit_test(test_messages_stream_fixture_any_chunking),
        cmocka_unit_test(test_messages_stream_cut_before_final_event),
        cmocka_unit_test(test_messages_body_fixture),
        cmocka_unit_test(test_responses_stream_fixture_splits_cached_and_reasoning),
        cmocka_unit_test(test_responses_incomplete_and_body_fixtures),
        cmocka_unit_test(test_parsed_events_and_unnamed_ones),
        cmocka_unit_test(test_hand_made_messages_stream),
        cmocka_unit_test(test_bad_values_are_ignored_or_clamped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
