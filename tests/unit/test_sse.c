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

/* MAX_SSE_EVENT_BYTES: an incomplete event is held up to max_event bytes;
 * past it the framer refuses (the relay ends the answer), having emitted the
 * complete events before it, and holds nothing. */
static void test_framer_event_over_limit_is_refused(void **state)
{
    (void)state;
    ccp_sse_framer f = {.max_event = 64};
    sink s = {0};
    char x[40];
    memset(x, 'x', sizeof x);
    assert_int_equal(ccp_sse_framer_feed(&f, "data: a\n\ndata: ", 15, sink_emit, &s), 0);
    assert_int_equal(ccp_sse_framer_feed(&f, x, sizeof x, sink_emit, &s), 0); /* 46 held */
    assert_int_equal(ccp_sse_framer_pending(&f), 46);
    assert_int_equal(ccp_sse_framer_feed(&f, x, 18, sink_emit, &s), 0); /* 64: at the limit */
    assert_int_equal(ccp_sse_framer_feed(&f, x, 1, sink_emit, &s), CCP_SSE_TOO_LARGE);
    assert_int_equal(ccp_sse_framer_pending(&f), 0);
    assert_string_equal(ccp_buf_cstr(&s.all), "data: a\n\n");
    /* Refused for good: nothing more is framed, not even a complete event. */
    assert_int_equal(ccp_sse_framer_feed(&f, "\n\ndata: b\n\n", 11, sink_emit, &s), CCP_SSE_TOO_LARGE);
    assert_int_equal(ccp_sse_framer_finish(&f, sink_emit, &s), CCP_SSE_TOO_LARGE);
    assert_int_equal(s.calls, 1);
    ccp_sse_framer_free(&f);
    sink_free(&s);
}

/* A framer freed after a refusal is as new, its bound kept: a retried
 * attempt's answer starts from it. */
static void test_framer_freed_after_refusal_frames_again(void **state)
{
    (void)state;
    ccp_sse_framer f = {.max_event = 16};
    sink s = {0};
    assert_int_equal(ccp_sse_framer_feed(&f, "data: xxxxxxxxxxxxxxxxxxxx", 26, sink_emit, &s), CCP_SSE_TOO_LARGE);
    ccp_sse_framer_free(&f);
    assert_int_equal(f.max_event, 16);
    assert_int_equal(ccp_sse_framer_feed(&f, "data: b\n\n", 9, sink_emit, &s), 0);
    assert_string_equal(ccp_buf_cstr(&s.all), "data: b\n\n");
    assert_int_equal(ccp_sse_framer_feed(&f, "data: yyyyyyyyyyyyyyyyyyyy", 26, sink_emit, &s), CCP_SSE_TOO_LARGE);
    ccp_sse_framer_free(&f);
    sink_free(&s);
}

/* The same when the long event arrives in one chunk with nothing held: the
 * events before it go out, the rest is never copied. */
static void test_framer_event_over_limit_in_one_chunk(void **state)
{
    (void)state;
    ccp_sse_framer f = {.max_event = 4096};
    sink s = {0};
    size_t big = 4096 + 100;
    char *data = ccp_xmalloc(big);
    memset(data, 'x', big);
    memcpy(data, "data: a\n\ndata: ", 15);
    int rc = ccp_sse_framer_feed(&f, data, big, sink_emit, &s);
    size_t held = ccp_sse_framer_pending(&f);
    free(data);
    assert_int_equal(rc, CCP_SSE_TOO_LARGE);
    assert_int_equal(held, 0);
    assert_string_equal(ccp_buf_cstr(&s.all), "data: a\n\n");
    ccp_sse_framer_free(&f);
    sink_free(&s);
}

/* An event that completes within the limit goes out whole, however it was
 * cut; a zeroed framer has the default bound. */
static void test_framer_event_at_limit_passes(void **state)
{
    (void)state;
    ccp_sse_framer f = {.max_event = 16};
    sink s = {0};
    assert_int_equal(ccp_sse_framer_feed(&f, "data: 0123456789", 16, sink_emit, &s), 0);
    assert_int_equal(ccp_sse_framer_feed(&f, "\n\n", 2, sink_emit, &s), 0);
    assert_string_equal(ccp_buf_cstr(&s.all), "data: 0123456789\n\n");
    assert_int_equal(ccp_sse_framer_pending(&f), 0);
    ccp_sse_framer_free(&f);
    sink_free(&s);
    ccp_sse_framer z = {0};
    sink t = {0};
    size_t big = 1u << 20; /* far past the old 1 MiB pass-on, far below the default */
    char *data = ccp_xmalloc(big);
    memset(data, 'y', big);
    assert_int_equal(ccp_sse_framer_feed(&z, "data: ", 6, sink_emit, &t), 0);
    for (size_t off = 0; off < big; off += 4096) assert_int_equal(ccp_sse_framer_feed(&z, data + off, 4096, sink_emit, &t), 0);
    assert_int_equal(t.calls, 0);
    assert_int_equal(ccp_sse_framer_feed(&z, "\n\n", 2, sink_emit, &t), 0);
    assert_int_equal(t.all.len, 6 + big + 2);
    assert_int_equal(CCP_SSE_DEFAULT_MAX_EVENT, 16u << 20);
    free(data);
    ccp_sse_framer_free(&z);
    sink_free(&t);
}

/* The framer searches only the new bytes and the three before them: every
 * boundary split across two feeds at every place is still found. */
static void test_framer_boundary_split_across_feeds(void **state)
{
    (void)state;
    static const char *const streams[] = {"data: abc\n\n", "data: abc\r\n\r\n", "data: abc\n\r\n", "data: abc\r\r",
                                          "x\n\n"};
    for (size_t k = 0; k < UNIT_COUNT(streams); k++) {
        size_t n = strlen(streams[k]);
        for (size_t a = 1; a < n; a++)
            for (size_t b = a; b < n; b++) {
                ccp_sse_framer f = {0};
                sink s = {0};
                assert_int_equal(ccp_sse_framer_feed(&f, streams[k], a, sink_emit, &s), 0);
                assert_int_equal(ccp_sse_framer_feed(&f, streams[k] + a, b - a, sink_emit, &s), 0);
                assert_int_equal(ccp_sse_framer_feed(&f, streams[k] + b, n - b, sink_emit, &s), 0);
                if (s.all.len != n) print_error("stream %zu cut at %zu, %zu: %zu emitted\n", k, a, b, s.all.len);
                assert_int_equal(s.all.len, n);
                assert_int_equal(ccp_sse_framer_pending(&f), 0);
                ccp_sse_framer_free(&f);
                sink_free(&s);
            }
    }
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
        cmocka_unit_test(test_framer_event_over_limit_is_refused),
        cmocka_unit_test(test_framer_freed_after_refusal_frames_again),
        cmocka_unit_test(test_framer_event_over_limit_in_one_chunk),
        cmocka_unit_test(test_framer_event_at_limit_passes),
        cmocka_unit_test(test_framer_boundary_split_across_feeds),
        cmocka_unit_test(test_framer_emit_failure_propagates),
        cmocka_unit_test(test_next_event_parses_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
