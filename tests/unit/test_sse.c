/* sse: the last event boundary, and the framer that passes a stream on in
 * whole events, holding only an incomplete tail. */
#include "unit.h"

#include "../../common/sse.h"

/* ---- boundary ------------------------------------------------------------------ */

static void test_last_boundary_table(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t want;
    } cases[] = {
        {"", 0},
        {"\n", 0},
        {"data: a", 0},
        {"data: a\n", 0},
        {"data: a\r\n", 0},
        {"data: a\r\n\r", 0},
        {"data: a\n\n", 9},
        {"data: a\r\n\r\n", 11},
        {"data: a\n\r\n", 10},
        {"data: a\r\r", 9},
        {"\n\n", 2},
        {"data: a\n\ndata: b", 9},
        {"data: a\n\ndata: b\n", 9},
        {"data: a\n\ndata: b\n\n", 18},
        {"data: a\r\n\r\ndata: b\r\n", 11},
        {"a\n\nb\n\nc", 6},
        {"a\r\rb", 3},
        {"event: x\ndata: {\"a\":\"\\n\\n\"}\n\npartial", 29},
    };
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        size_t got = ccp_sse_last_boundary(cases[i].in, strlen(cases[i].in));
        if (got != cases[i].want) print_error("case %zu: got %zu want %zu\n", i, got, cases[i].want);
        assert_int_equal(got, cases[i].want);
    }
}

static void test_last_boundary_respects_length(void **state)
{
    (void)state;
    assert_int_equal(ccp_sse_last_boundary("data: a\n\n", 8), 0);
    assert_int_equal(ccp_sse_last_boundary("a\n\nb\n\n", 4), 3);
    assert_int_equal(ccp_sse_last_boundary(NULL, 0), 0);
}

/* ---- framer ----------------------------------------------------------------------- */

typedef struct sink {
    ccp_buf all;     /* everything emitted */
    ccp_buf chunks;  /* each emit, followed by "|" */
    int calls;
    int fail_at;     /* 1-based call that returns -1; 0: never */
} sink;

static int sink_emit(void *ctx, const char *p, size_t n)
{
    sink *s = ctx;
    s->calls++;
    if (s->fail_at && s->calls >= s->fail_at) return -1;
    assert_true(n > 0);
    ccp_buf_append(&s->all, p, n);
    ccp_buf_append(&s->chunks, p, n);
    ccp_buf_append_char(&s->chunks, '|');
    return 0;
}

static void sink_free(sink *s)
{
    ccp_buf_free(&s->all);
    ccp_buf_free(&s->chunks);
}

static const char stream[] = "event: message_start\ndata: {\"a\":1}\n\n"
                             "event: ping\r\ndata: {}\r\n\r\n"
                             ": comment\n\n"
                             "data: partial";

static void test_framer_byte_by_byte_emits_whole_events_in_order(void **state)
{
    (void)state;
    ccp_sse_framer f = {0};
    sink s = {0};
    size_t n = strlen(stream);
    for (size_t i = 0; i < n; i++) assert_int_equal(ccp_sse_framer_feed(&f, stream + i, 1, sink_emit, &s), 0);
    assert_string_equal(ccp_buf_cstr(&s.chunks), "event: message_start\ndata: {\"a\":1}\n\n|"
                                                 "event: ping\r\ndata: {}\r\n\r\n|"
                                                 ": comment\n\n|");
    assert_int_equal(ccp_sse_framer_pending(&f), strlen("data: partial"));
    assert_int_equal(ccp_sse_framer_finish(&f, sink_emit, &s), 0);
    assert_int_equal(ccp_sse_framer_pending(&f), 0);
    assert_string_equal(ccp_buf_cstr(&s.all), stream);
    assert_int_equal(s.calls, 4);
    ccp_sse_framer_free(&f);
    sink_free(&s);
}

static void test_framer_whole_chunk_emits_once_and_holds_tail(void **state)
{
    (void)state;
    ccp_sse_framer f = {0};
    sink s = {0};
    assert_int_equal(ccp_sse_framer_feed(&f, stream, strlen(stream), sink_emit, &s), 0);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.all.len, strlen(stream) - strlen("data: partial"));
    assert_int_equal(ccp_sse_framer_pending(&f), strlen("data: partial"));
    /* The rest of the event arrives: it goes out, nothing is held. */
    assert_int_equal(ccp_sse_framer_feed(&f, "\n\n", 2, sink_emit, &s), 0);
    assert_int_equal(ccp_sse_framer_pending(&f), 0);
    assert_int_equal(s.calls, 2);
    ccp_buf want = {0};
    ccp_buf_printf(&want, "%s\n\n", stream);
    assert_string_equal(s.all.data, want.data);
    ccp_buf_free(&want);
    ccp_sse_framer_free(&f);
    sink_free(&s);
}

/* Every split of the stream into two chunks gives the same bytes out, and
 * never splits an event. */
static void test_framer_every_two_chunk_split(void **state)
{
    (void)state;
    size_t n = strlen(stream);
    for (size_t cut = 0; cut <= n; cut++) {
        ccp_sse_framer f = {0};
        sink s = {0};
        assert_int_equal(ccp_sse_framer_feed(&f, stream, cut, sink_emit, &s), 0);
        assert_int_equal(ccp_sse_framer_feed(&f, stream + cut, n - cut, sink_emit, &s), 0);
        /* Each emitted chunk ends on a boundary. */
        assert_int_equal(ccp_sse_last_boundary(ccp_buf_cstr(&s.all), s.all.len), s.all.len);
        assert_int_equal(s.all.len, n - strlen("data: partial"));
        assert_int_equal(ccp_sse_framer_finish(&f, sink_emit, &s), 0);
        assert_string_equal(s.all.data, stream);
        ccp_sse_framer_free(&f);
        sink_free(&s);
    }
}

static void test_framer_finish_with_nothing_held_emits_nothing(void **state)
{
    (void)state;
    ccp_sse_framer f = {0};
    sink s = {0};
    assert_int_equal(ccp_sse_framer_feed(&f, "data: a\n\n", 9, sink_emit, &s), 0);
    assert_int_equal(ccp_sse_framer_finish(&f, sink_emit, &s), 0);
    assert_int_equal(s.calls, 1);
    assert_int_equal(ccp_sse_framer_feed(&f, "", 0, sink_emit, &s), 0);
    assert_int_equal(s.calls, 1);
    ccp_sse_framer_free(&f);
    sink_free(&s);
}

static void test_framer_giant_event_is_passed_on(void **state)
{
    (void)state;
    ccp_sse_framer f = {0};
    sink s = {0};
    size_t big = CCP_SSE_MAX_HELD;
    char *data = ccp_xmalloc(big);
    memset(data, 'x', big);
    assert_int_equal(ccp_sse_framer_feed(&f, "data: ", 6, sink_emit, &s), 0);
    assert_int_equal(s.calls, 0);
    assert_int_equal(ccp_sse_framer_feed(&f, data, big, sink_emit, &s), 0);
    /* Over the limit without a boundary: passed on, nothing held. */
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.all.len, 6 + big);
    assert_int_equal(ccp_sse_framer_pending(&f), 0);
    /* The stream goes on normally afterwards. */
    assert_int_equal(ccp_sse_framer_feed(&f, "\n\ndata: b\n\n", 11, sink_emit, &s), 0);
    assert_int_equal(ccp_sse_framer_pending(&f), 0);
    assert_int_equal(s.all.len, 6 + big + 11);
    free(data);
    ccp_sse_framer_free(&f);
    sink_free(&s);
}

/* sse.h: "An incomplete event larger than this is passed on anyway." That
 * must hold when the giant event arrives in one chunk with nothing held. */
static void test_framer_giant_first_chunk_is_passed_on(void **state)
{
    (void)state;
    ccp_sse_framer f = {0};
    sink s = {0};
    size_t big = CCP_SSE_MAX_HELD + 100;
    char *data = ccp_xmalloc(big);
    memset(data, 'x', big);
    memcpy(data, "data: a\n\ndata: ", 15);
    int rc = ccp_sse_framer_feed(&f, data, big, sink_emit, &s);
    size_t held = ccp_sse_framer_pending(&f);
    free(data);
    ccp_sse_framer_free(&f);
    sink_free(&s);
    assert_int_equal(rc, 0);
    if (held > CCP_SSE_MAX_HELD) print_error("framer holds %zu bytes (limit %u)\n", held, CCP_SSE_MAX_HELD);
    assert_true(held <= CCP_SSE_MAX_HELD);
}

static void test_framer_emit_failure_propagates(void **state)
{
    (void)state;
    /* Nothing held: the complete part is emitted straight from the input. */
    ccp_sse_framer f = {0};
    sink s = {.fail_at = 1};
    assert_int_equal(ccp_sse_framer_feed(&f, "data: a\n\n", 9, sink_emit, &s), -1);
    ccp_sse_framer_free(&f);
    sink_free(&s);

    /* Something held: the event completed by the new bytes fails. */
    ccp_sse_framer g = {0};
    sink t = {.fail_at = 1};
    assert_int_equal(ccp_sse_framer_feed(&g, "data: a\n", 8, sink_emit, &t), 0);
    assert_int_equal(ccp_sse_framer_feed(&g, "\n", 1, sink_emit, &t), -1);
    ccp_sse_framer_free(&g);
    sink_free(&t);

    /* finish reports the failure too. */
    ccp_sse_framer h = {0};
    sink u = {.fail_at = 1};
    assert_int_equal(ccp_sse_framer_feed(&h, "data: tail", 10, sink_emit, &u), 0);
    assert_int_equal(ccp_sse_framer_finish(&h, sink_emit, &u), -1);
    ccp_sse_framer_free(&h);
    sink_free(&u);
}

/* ---- event parser ------------------------------------------------------------------ */

static void test_next_event_parses_fields(void **state)
{
    (void)state;
    static const char region[] = "event: content_block_delta\r\ndata: {\"a\":1}\r\ndata:second\r\nid: 7\r\n\r\n"
                                 "data: plain\n\n"
                                 ": keep-alive\n\n"
                                 "event: ping\n\n"
                                 "data: tail-without-end\n";
    ccp_sse_event ev;
    memset(&ev, 0, sizeof ev);
    size_t off = 0, n = sizeof region - 1;

    size_t used = ccp_sse_next_event(region + off, n - off, &ev);
    assert_int_equal(used, strlen("event: content_block_delta\r\ndata: {\"a\":1}\r\ndata:second\r\nid: 7\r\n\r\n"));
    assert_ptr_equal(ev.raw, region);
    assert_int_equal(ev.raw_len, used);
    assert_string_equal(ccp_buf_cstr(&ev.name), "content_block_delta");
    assert_true(ev.has_data);
    assert_string_equal(ccp_buf_cstr(&ev.data), "{\"a\":1}\nsecond");
    off += used;

    used = ccp_sse_next_event(region + off, n - off, &ev);
    assert_int_equal(used, strlen("data: plain\n\n"));
    assert_string_equal(ccp_buf_cstr(&ev.name), "message"); /* the default name */
    assert_string_equal(ccp_buf_cstr(&ev.data), "plain");
    off += used;

    used = ccp_sse_next_event(region + off, n - off, &ev);
    assert_int_equal(used, strlen(": keep-alive\n\n"));
    assert_false(ev.has_data);
    assert_string_equal(ccp_buf_cstr(&ev.name), "");
    off += used;

    used = ccp_sse_next_event(region + off, n - off, &ev);
    assert_int_equal(used, strlen("event: ping\n\n"));
    assert_false(ev.has_data);
    assert_string_equal(ccp_buf_cstr(&ev.name), "ping");
    off += used;

    /* An incomplete event is not returned. */
    assert_int_equal(ccp_sse_next_event(region + off, n - off, &ev), 0);
    assert_int_equal(ccp_sse_next_event("", 0, &ev), 0);
    assert_int_equal(ccp_sse_next_event("data: x", 7, &ev), 0);
    ccp_sse_event_free(&ev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_last_boundary_table),
        cmocka_unit_test(test_last_boundary_respects_length),
        cmocka_unit_test(test_framer_byte_by_byte_emits_whole_events_in_order),
        cmocka_unit_test(test_framer_whole_chunk_emits_once_and_holds_tail),
        cmocka_unit_test(test_framer_every_two_chunk_split),
        cmocka_unit_test(test_framer_finish_with_nothing_held_emits_nothing),
        cmocka_unit_test(test_framer_giant_event_is_passed_on),
        cmocka_unit_test(test_framer_giant_first_chunk_is_passed_on),
        cmocka_unit_test(test_framer_emit_failure_propagates),
        cmocka_unit_test(test_next_event_parses_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
