/* relay, the answer side: what the client gets from a relayed answer,
 * through ccp_relay_serve over a fake io, with the upstream loop's entry
 * points replaced by a scripted upstream (these definitions win over
 * upstream.o, which nothing else in the test pulls in). */
#include "unit.h"

#include <sys/socket.h>

#include "../../common/log.h"
#include "../../common/relay.h"

/* ---- relayed answers: held until complete, or cut off ---------------------- */

#define HOLD_MAX ((size_t)8 << 20) /* MAX_HOLD_BYTES's default, as unit_config_limits sets it */

/* The scripted upstream: a header block, a body fed in pieces, a result. */
typedef struct script {
    int status;
    const char *headers; /* "name: value" lines */
    const char *body;
    size_t body_len;
    size_t piece;      /* bytes per on_data call; 0: all at once */
    size_t filler;     /* then this many 'x' bytes, in 64 KiB pieces */
    ccp_upstream_result result;
    bool no_headers; /* fail before any header block */
    int runs;
} script;

static script up_script;

/* Plays the script through the sink at once: the relay hands the transfer
 * over and never touches the exchange again, so a synchronous loop is a
 * faithful stand-in. */
static ccp_upstream_result play(const ccp_upstream_sink *sink, ccp_upstream_stats *stats, ccp_buf *err)
{
    up_script.runs++;
    stats->ttfb_ms = 1;
    if (up_script.no_headers) {
        ccp_buf_append_str(err, "upstream test is unreachable");
        return up_script.result;
    }
    stats->headers_seen = true;
    ccp_headers h;
    unit_headers_from(&h, up_script.headers);
    int rc = sink->on_headers(sink->ctx, up_script.status, &h);
    ccp_headers_free(&h);
    if (rc != 0) return CCP_UP_CLIENT_GONE;
    size_t piece = up_script.piece ? up_script.piece : up_script.body_len;
    for (size_t at = 0; at < up_script.body_len; at += piece) {
        size_t n = up_script.body_len - at < piece ? up_script.body_len - at : piece;
        if (sink->on_data(sink->ctx, up_script.body + at, n) != 0) return CCP_UP_CLIENT_GONE;
    }
    static char x64k[65536];
    memset(x64k, 'x', sizeof x64k);
    for (size_t left = up_script.filler; left > 0;) {
        size_t n = left < sizeof x64k ? left : sizeof x64k;
        if (sink->on_data(sink->ctx, x64k, n) != 0) return CCP_UP_CLIENT_GONE;
        left -= n;
    }
    if (up_script.result == CCP_UP_TIMEOUT) ccp_buf_append_str(err, "upstream test sent nothing for 1.0 s");
    else if (up_script.result != CCP_UP_OK) ccp_buf_append_str(err, "upstream test failed mid-response");
    return up_script.result;
}

/* The entry point relay.c uses; defined here, upstream.o is not linked
 * in. */
int ccp_upstream_start(ccp_upstream *u, const ccp_upstream_request *req, const ccp_upstream_sink *sink)
{
    (void)u, (void)req;
    ccp_upstream_stats stats = {0};
    ccp_buf err = {0};
    ccp_upstream_result r = play(sink, &stats, &err);
    sink->on_done(sink->ctx, r, &stats, ccp_buf_cstr(&err));
    ccp_buf_free(&err);
    return CCP_OK;
}


static const ccp_route relay_routes[] = {
    {"POST", "/v1/messages", CCP_ROUTE_RELAY,
     CCP_BODY_JSON_OBJECT | CCP_BODY_MODEL | CCP_BODY_MESSAGES_ARRAY | CCP_ADAPT, NULL},
};

static const ccp_service relay_service = {
    .name = "claude-service",
    .program = "ccproxy-claude",
    .adapter_set = "claude",
    .dialect = &ccp_dialect_anthropic,
    .routes = relay_routes,
    .route_count = 1,
};

static const ccp_route codex_routes[] = {
    {"POST", "/v1/responses", CCP_ROUTE_RELAY, CCP_BODY_JSON_OBJECT | CCP_BODY_MODEL | CCP_ADAPT, NULL},
};

static const ccp_service codex_service = {
    .name = "codex-service",
    .program = "ccproxy-codex",
    .adapter_set = "codex",
    .dialect = &ccp_dialect_openai,
    .routes = codex_routes,
    .route_count = 1,
};

typedef struct served {
    ccp_buf out;      /* everything written to the web server */
    ccp_buf cut;      /* what the web server's end of the FastCGI socket got */
    ccp_buf log;      /* the request's log line */
    const char *body; /* where the response body starts in out */
} served;

/* What the next serve_as changes (reset after it): the configuration (the
 * limits' defaults otherwise), parameters added to the request's, and
 * whether the upstream is to be reached at all. */
static struct {
    void (*tweak)(ccp_config *cfg);
    const char *env[4];
    bool refused; /* answered before the upstream */
} next;

/* One request through ccp_relay_serve: the service, its path, the body, and
 * a user agent; hangup_fd is a socketpair standing in for the FastCGI
 * connection. */
static void serve_as(const ccp_service *service, const char *path, const char *req_body, const char *user_agent,
                     served *sv)
{
    char cl[48], uri[64], ua[128];
    snprintf(cl, sizeof cl, "CONTENT_LENGTH=%zu", strlen(req_body));
    snprintf(uri, sizeof uri, "REQUEST_URI=%s", path);
    snprintf(ua, sizeof ua, "HTTP_USER_AGENT=%s", user_agent);
    char *envp[] = {"REQUEST_METHOD=POST", uri, "CONTENT_TYPE=application/json", cl, "HTTP_X_API_KEY=sk-ant-unit",
                    "HTTP_AUTHORIZATION=Bearer sk-unit", "HTTP_ANTHROPIC_VERSION=2023-06-01", ua,
                    (char *)next.env[0], (char *)next.env[1], (char *)next.env[2], (char *)next.env[3], NULL};
    ccp_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.upstream_base_url = "http://upstream.test";
    cfg.base_path = "";
    cfg.max_body_bytes = 1 << 20;
    unit_config_limits(&cfg);
    if (next.tweak) next.tweak(&cfg);
    cfg.codex_env_cwd = "/workspace";
    cfg.log_level = CCP_LOG_INFO;
    ccp_log_init(&cfg, service->name);
    ccp_adapters *adapters = NULL;
    ccp_buf err = {0};
    assert_int_equal(ccp_adapters_load(&adapters, service->adapter_set, &cfg, &err), CCP_OK);
    ccp_pool *pool = NULL;
    assert_int_equal(ccp_pool_load(&pool, service->adapter_set, &cfg, &err), CCP_OK);
    ccp_runtime rt = {.service = service, .cfg = &cfg, .adapters = adapters, .pool = pool};

    int fds[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    unit_io u;
    unit_io_init(&u, envp);
    unit_io_input(&u, req_body, strlen(req_body), 0);
    u.io.hangup_fd = fds[0];
    u.io.hangup_fd_readable = true;
    up_script.runs = 0;
    memset(sv, 0, sizeof *sv);
    unit_stderr st;
    unit_stderr_begin(&st);
    ccp_relay_serve(&rt, NULL, &u.io);
    unit_stderr_end(&st, &sv->log);
    assert_int_equal(up_script.runs, next.refused ? 0 : 1);
    memset(&next, 0, sizeof next);

    sv->out = u.out; /* taken over: not freed by unit_io_free */
    memset(&u.out, 0, sizeof u.out);
    shutdown(fds[0], SHUT_WR); /* as the transport closes it */
    char chunk[256];
    ssize_t n;
    while ((n = read(fds[1], chunk, sizeof chunk)) > 0) ccp_buf_append(&sv->cut, chunk, (size_t)n);
    close(fds[0]);
    close(fds[1]);
    unit_io_free(&u);
    ccp_pool_free(pool);
    ccp_adapters_free(adapters);
    ccp_buf_free(&err);
    const char *data = ccp_buf_cstr(&sv->out);
    const char *end = strstr(data, "\r\n\r\n");
    assert_non_null(end);
    sv->body = end + 4;
}

/* One POST /v1/messages to the Claude service, as the default adapter. */
static void serve(served *sv)
{
    serve_as(&relay_service, "/v1/messages",
             "{\"model\":\"claude-sonnet-4-20250514\",\"max_tokens\":10,\"messages\":[{\"role\":\"user\","
             "\"content\":\"hi\"}]}",
             "unit-test/1.0", sv);
}

static void served_free(served *sv)
{
    ccp_buf_free(&sv->out);
    ccp_buf_free(&sv->cut);
    ccp_buf_free(&sv->log);
}

static bool logged_status(const served *sv, int status)
{
    char want[32];
    snprintf(want, sizeof want, "\"status\":%d,", status);
    return strstr(ccp_buf_cstr(&sv->log), want) != NULL;
}

static size_t body_len(const served *sv)
{
    return sv->out.len - (size_t)(sv->body - sv->out.data);
}

static bool was_cut_off(const served *sv)
{
    static const unsigned char record[16] = {1, 11, 0, 0, 0, 8};
    return sv->cut.len == sizeof record && memcmp(sv->cut.data, record, sizeof record) == 0;
}

static const char answer[] = "{\"id\":\"msg_1\",\"type\":\"message\",\"content\":[{\"type\":\"text\",\"text\":\"Hello\"}]}";

static void test_chunked_answer_is_held_and_sent_with_its_length(void **state)
{
    (void)state;
    up_script = (script){.status = 200,
                                        .headers = "content-type: application/json\nrequest-id: req_1",
                                        .body = answer, .body_len = sizeof answer - 1, .piece = 7,
                                        .result = CCP_UP_OK};
    served sv;
    serve(&sv);
    char cl[64];
    snprintf(cl, sizeof cl, "Content-Length: %zu\r\n", sizeof answer - 1);
    assert_true(strncmp(sv.out.data, "Status: 200 OK\r\n", 16) == 0);
    assert_non_null(strstr(sv.out.data, cl));
    assert_int_equal(unit_count_str(sv.out.data, "Content-Length"), 1);
    assert_non_null(strstr(sv.out.data, "request-id: req_1\r\n"));
    assert_string_equal(sv.body, answer);
    assert_int_equal(sv.cut.len, 0);
    served_free(&sv);
}

static void test_upstream_content_length_is_kept_once(void **state)
{
    (void)state;
    char cl[64];
    snprintf(cl, sizeof cl, "content-type: application/json\ncontent-length: %zu", sizeof answer - 1);
    up_script = (script){.status = 200, .headers = cl, .body = answer, .body_len = sizeof answer - 1,
                                        .piece = 10, .result = CCP_UP_OK};
    served sv;
    serve(&sv);
    assert_int_equal(unit_count_str(sv.out.data, "Content-Length"), 1);
    assert_int_equal(unit_count_str(sv.out.data, "content-length"), 0);
    assert_string_equal(sv.body, answer);
    served_free(&sv);
}

static void test_upstream_error_answer_passes_whole(void **state)
{
    (void)state;
    static const char err[] = "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"slow down\"}}";
    up_script = (script){.status = 429, .headers = "content-type: application/json\nretry-after: 7",
                                        .body = err, .body_len = sizeof err - 1, .piece = 5, .result = CCP_UP_OK};
    served sv;
    serve(&sv);
    assert_true(strncmp(sv.out.data, "Status: 429 ", 12) == 0);
    assert_non_null(strstr(sv.out.data, "retry-after: 7\r\n"));
    assert_string_equal(sv.body, err);
    served_free(&sv);
}

/* The upstream fails before the answer is complete: the client gets the
 * dialect's error with its status, and none of the half answer. */
static void test_incomplete_answer_becomes_the_error(void **state)
{
    (void)state;
    static const struct {
        size_t sent;
        ccp_upstream_result result;
        const char *status;
    } cases[] = {
        {0, CCP_UP_TIMEOUT, "Status: 504 "},
        {sizeof answer / 2, CCP_UP_TIMEOUT, "Status: 504 "},
        {0, CCP_UP_BROKEN, "Status: 502 "},
        {sizeof answer / 2, CCP_UP_BROKEN, "Status: 502 "},
    };
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        up_script = (script){.status = 200, .headers = "content-type: application/json",
                                            .body = answer, .body_len = cases[i].sent, .piece = 3,
                                            .result = cases[i].result};
        served sv;
        serve(&sv);
        assert_true(strncmp(sv.out.data, cases[i].status, 12) == 0);
        assert_int_equal(unit_count_str(sv.out.data, "Status: "), 1);
        assert_non_null(strstr(sv.out.data, "Content-Type: application/json\r\n"));
        assert_true(strncmp(sv.body, "{\"type\":\"error\",\"error\":{\"type\":\"api_error\"", 43) == 0);
        assert_null(strstr(sv.out.data, "msg_1"));
        assert_int_equal(sv.cut.len, 0);
        served_free(&sv);
    }
}

/* Too big to hold: the first HOLD_MAX bytes wait, then everything streams;
 * a failure after that cuts the response off. */
static void test_answer_over_the_cap_streams_and_is_cut_off_on_failure(void **state)
{
    (void)state;
    static const ccp_upstream_result results[] = {CCP_UP_BROKEN, CCP_UP_TIMEOUT};
    for (size_t i = 0; i < UNIT_COUNT(results); i++) {
        up_script = (script){.status = 200, .headers = "content-type: application/json",
                                            .body = "{\"big\":\"", .body_len = 8,
                                            .filler = HOLD_MAX + 100000, .result = results[i]};
        served sv;
        serve(&sv);
        assert_true(strncmp(sv.out.data, "Status: 200 OK\r\n", 16) == 0);
        assert_null(strstr(sv.out.data, "Content-Length"));
        assert_int_equal(body_len(&sv), 8 + HOLD_MAX + 100000);
        assert_true(was_cut_off(&sv));
        served_free(&sv);
    }
}

static void test_answer_over_the_cap_completes(void **state)
{
    (void)state;
    char hdr[128];
    snprintf(hdr, sizeof hdr, "content-type: application/json\ncontent-length: %zu", 8 + HOLD_MAX + 1);
    up_script = (script){.status = 200, .headers = hdr, .body = "{\"big\":\"", .body_len = 8,
                                        .filler = HOLD_MAX + 1, .result = CCP_UP_OK};
    served sv;
    serve(&sv);
    char cl[64];
    snprintf(cl, sizeof cl, "Content-Length: %zu\r\n", 8 + HOLD_MAX + 1);
    assert_non_null(strstr(sv.out.data, cl));
    assert_int_equal(body_len(&sv), 8 + HOLD_MAX + 1);
    assert_int_equal(sv.cut.len, 0);
    served_free(&sv);
}

/* Exactly the cap still fits: held, sent with its length. */
static void test_answer_at_the_cap_is_held(void **state)
{
    (void)state;
    up_script = (script){.status = 200, .headers = "content-type: application/json",
                                        .body = "", .body_len = 0, .filler = HOLD_MAX, .result = CCP_UP_BROKEN};
    served sv;
    serve(&sv);
    assert_true(strncmp(sv.out.data, "Status: 502 ", 12) == 0);
    served_free(&sv);
}

/* A stream keeps its way of failing: the events, then the error event, a clean end. */
static void test_stream_failure_still_ends_with_the_error_event(void **state)
{
    (void)state;
    static const char events[] = "event: message_start\ndata: {\"type\":\"message_start\"}\n\nevent: ping\ndata: {";
    up_script = (script){.status = 200, .headers = "content-type: text/event-stream",
                                        .body = events, .body_len = sizeof events - 1, .piece = 9,
                                        .result = CCP_UP_BROKEN};
    served sv;
    serve(&sv);
    assert_true(strncmp(sv.out.data, "Status: 200 OK\r\n", 16) == 0);
    assert_true(strncmp(sv.body, "event: message_start\ndata: {\"type\":\"message_start\"}\n\nevent: error\n", 66) == 0);
    assert_int_equal(sv.cut.len, 0);
    served_free(&sv);
}

/* No header went out yet: whatever the mode, the client gets the dialect's
 * JSON error with its status, and the log says that status. */
static void test_stream_failing_before_its_headers_is_the_json_error(void **state)
{
    (void)state;
    static const struct {
        ccp_upstream_result result;
        const char *status;
        int code;
    } cases[] = {{CCP_UP_UNREACHABLE, "Status: 502 ", 502}, {CCP_UP_TIMEOUT, "Status: 504 ", 504}};
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        up_script = (script){.status = 0, .headers = NULL, .no_headers = true, .result = cases[i].result};
        served sv;
        serve(&sv);
        assert_true(strncmp(sv.out.data, cases[i].status, 12) == 0);
        assert_true(strncmp(sv.body, "{\"type\":\"error\",\"error\":{\"type\":", 30) == 0);
        assert_true(logged_status(&sv, cases[i].code));
        served_free(&sv);
    }
}

/* The client left mid-stream: logged 499, and the response is cut (no
 * FCGI_END_REQUEST), never ended as if complete. */
static void test_client_leaving_is_499_and_cut(void **state)
{
    (void)state;
    static const char events[] = "event: message_start\ndata: {\"type\":\"message_start\"}\n\n";
    up_script = (script){.status = 200, .headers = "content-type: text/event-stream", .body = events,
                         .body_len = sizeof events - 1, .result = CCP_UP_CLIENT_GONE};
    served sv;
    serve(&sv);
    assert_true(strncmp(sv.out.data, "Status: 200 OK\r\n", 16) == 0);
    assert_string_equal(sv.body, events);
    assert_true(was_cut_off(&sv));
    assert_true(logged_status(&sv, 499));
    served_free(&sv);
}

static const char codex_body_stream[] = "{\"model\":\"gpt-5-codex\",\"stream\":true,\"input\":\"hi\"}";
static const char codex_body_plain[] = "{\"model\":\"gpt-5-codex\",\"input\":\"hi\"}";

/* A Responses stream that breaks after its headers ends with
 * response.failed, the only terminal error Codex reads. */
static void test_codex_stream_failure_ends_with_response_failed(void **state)
{
    (void)state;
    static const char events[] = "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,"
                                 "\"response\":{\"id\":\"resp_1\"}}\n\n";
    up_script = (script){.status = 200, .headers = "content-type: text/event-stream", .body = events,
                         .body_len = sizeof events - 1, .piece = 11, .result = CCP_UP_BROKEN};
    served sv;
    serve_as(&codex_service, "/v1/responses", codex_body_stream, "unit-test/1.0", &sv);
    assert_true(strncmp(sv.body, events, sizeof events - 1) == 0);
    assert_non_null(strstr(sv.body + sizeof events - 1, "event: response.failed\n"));
    assert_non_null(strstr(sv.body, "\"sequence_number\":1"));
    assert_int_equal(sv.cut.len, 0);
    served_free(&sv);
}

/* inspect_event: the upstream's bare error event reaches Codex as
 * response.failed; the events around it pass as they were sent. */
static void test_codex_bare_error_event_is_replaced(void **state)
{
    (void)state;
    static const char created[] = "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,"
                                  "\"response\":{\"id\":\"resp_1\"}}\n\n";
    static const char events[] = "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,"
                                 "\"response\":{\"id\":\"resp_1\"}}\n\n"
                                 "event: error\ndata: {\"type\":\"error\",\"code\":\"server_is_overloaded\","
                                 "\"message\":\"busy\",\"sequence_number\":1}\n\n";
    up_script = (script){.status = 200, .headers = "content-type: text/event-stream", .body = events,
                         .body_len = sizeof events - 1, .piece = 0, .result = CCP_UP_OK};
    served sv;
    serve_as(&codex_service, "/v1/responses", codex_body_stream, "unit-test/1.0", &sv);
    assert_true(strncmp(sv.body, created, sizeof created - 1) == 0);
    const char *rest = sv.body + sizeof created - 1;
    assert_true(strncmp(rest, "event: response.failed\n", 23) == 0);
    assert_non_null(strstr(rest, "server_is_overloaded"));
    assert_null(strstr(rest, "event: error\n"));
    served_free(&sv);
}

/* CherryStudio asks for no stream; its pipeline forces one upstream and
 * the client gets the one Response object, or, when the stream ends before
 * its final event, the dialect's error: never half an answer. */
static void test_codex_aggregated_answer_and_early_end(void **state)
{
    (void)state;
    static const char complete[] =
        "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"r\"}}\n\n"
        "event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":1,"
        "\"response\":{\"id\":\"resp_9\",\"status\":\"completed\"}}\n\n";
    up_script = (script){.status = 200, .headers = "content-type: text/event-stream", .body = complete,
                         .body_len = sizeof complete - 1, .piece = 13, .result = CCP_UP_OK};
    served sv;
    serve_as(&codex_service, "/v1/responses", codex_body_plain, "CherryStudio/1.5.0", &sv);
    assert_true(strncmp(sv.out.data, "Status: 200 OK\r\n", 16) == 0);
    assert_non_null(strstr(sv.out.data, "Content-Type: application/json\r\n"));
    assert_non_null(strstr(sv.body, "\"id\":\"resp_9\""));
    assert_null(strstr(sv.body, "event:"));
    assert_non_null(strstr(sv.log.data, "\"adapter\":\"cherry_studio\""));
    served_free(&sv);

    /* The same stream without its final event. */
    up_script.body_len = strstr(complete, "event: response.completed") - complete;
    serve_as(&codex_service, "/v1/responses", codex_body_plain, "CherryStudio/1.5.0", &sv);
    assert_true(strncmp(sv.out.data, "Status: 502 ", 12) == 0);
    assert_true(strncmp(sv.body, "{\"error\":{", 10) == 0);
    assert_null(strstr(sv.body, "resp_9"));
    assert_true(logged_status(&sv, 502));
    served_free(&sv);
}

/* ---- the limits ---------------------------------------------------------------- */

static void small_sse_event(ccp_config *cfg)
{
    cfg->max_sse_event_bytes = 4096;
}

static const char started[] = "event: message_start\ndata: {\"type\":\"message_start\"}\n\nevent: content_block_delta\ndata: ";

/* An upstream event that never ends (no blank line) past MAX_SSE_EVENT_BYTES:
 * the client has the whole events before it, then the dialect's error event
 * naming the limit, and a clean end; none of the long event; the log says
 * which limit. */
static void test_sse_event_over_the_limit_ends_the_stream(void **state)
{
    (void)state;
    up_script = (script){.status = 200, .headers = "content-type: text/event-stream", .body = started,
                         .body_len = sizeof started - 1, .filler = 10000, .result = CCP_UP_OK};
    next.tweak = small_sse_event;
    served sv;
    serve(&sv);
    assert_true(strncmp(sv.out.data, "Status: 200 OK\r\n", 16) == 0);
    assert_true(strncmp(sv.body, "event: message_start\ndata: {\"type\":\"message_start\"}\n\nevent: error\ndata: ", 71) == 0);
    assert_non_null(strstr(sv.body, "MAX_SSE_EVENT_BYTES"));
    assert_null(strstr(sv.body, "xxxx"));
    assert_null(strstr(sv.body, "content_block_delta"));
    assert_int_equal(sv.cut.len, 0); /* ended, not cut: the error event is the end */
    assert_non_null(strstr(sv.log.data, "\"event\":\"limit_reached\""));
    assert_non_null(strstr(sv.log.data, "MAX_SSE_EVENT_BYTES (502)"));
    served_free(&sv);

    /* Codex: response.failed, numbered after the last event seen. */
    static const char created[] = "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,"
                                  "\"response\":{\"id\":\"resp_1\"}}\n\nevent: response.output_text.delta\ndata: ";
    up_script = (script){.status = 200, .headers = "content-type: text/event-stream", .body = created,
                         .body_len = sizeof created - 1, .filler = 10000, .result = CCP_UP_OK};
    next.tweak = small_sse_event;
    serve_as(&codex_service, "/v1/responses", codex_body_stream, "unit-test/1.0", &sv);
    const char *failed = strstr(sv.body, "event: response.failed\n");
    assert_non_null(failed);
    assert_non_null(strstr(failed, "\"sequence_number\":1"));
    assert_non_null(strstr(failed, "MAX_SSE_EVENT_BYTES"));
    assert_null(strstr(sv.body, "xxxx"));
    served_free(&sv);
}

static void small_aggregate(ccp_config *cfg)
{
    cfg->max_aggregate_bytes = 4096;
}

/* A forced stream folded into one JSON answer: past MAX_AGGREGATE_BYTES of
 * stream, or an event past MAX_SSE_EVENT_BYTES, the client gets the
 * dialect's JSON 502 naming the limit. */
static void test_aggregate_over_its_limits_is_the_json_502(void **state)
{
    (void)state;
    ccp_buf events = {0};
    for (int i = 0; i < 100; i++)
        ccp_buf_printf(&events, "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\","
                                "\"sequence_number\":%d,\"delta\":\"word \"}\n\n", i);
    up_script = (script){.status = 200, .headers = "content-type: text/event-stream", .body = events.data,
                         .body_len = events.len, .piece = 100, .result = CCP_UP_OK};
    next.tweak = small_aggregate;
    served sv;
    serve_as(&codex_service, "/v1/responses", codex_body_plain, "CherryStudio/1.5.0", &sv);
    assert_true(strncmp(sv.out.data, "Status: 502 ", 12) == 0);
    assert_true(strncmp(sv.body, "{\"error\":{\"message\":", 20) == 0);
    assert_non_null(strstr(sv.body, "MAX_AGGREGATE_BYTES"));
    assert_non_null(strstr(sv.log.data, "MAX_AGGREGATE_BYTES (502)"));
    assert_true(logged_status(&sv, 502));
    served_free(&sv);

    /* Within the limit the same stream is no refusal (it just has no final event). */
    serve_as(&codex_service, "/v1/responses", codex_body_plain, "CherryStudio/1.5.0", &sv);
    assert_null(strstr(sv.body, "MAX_AGGREGATE_BYTES"));
    served_free(&sv);
    ccp_buf_free(&events);

    static const char created[] = "event: response.completed\ndata: {";
    up_script = (script){.status = 200, .headers = "content-type: text/event-stream", .body = created,
                         .body_len = sizeof created - 1, .filler = 10000, .result = CCP_UP_OK};
    next.tweak = small_sse_event;
    serve_as(&codex_service, "/v1/responses", codex_body_plain, "CherryStudio/1.5.0", &sv);
    assert_true(strncmp(sv.out.data, "Status: 502 ", 12) == 0);
    assert_non_null(strstr(sv.body, "MAX_SSE_EVENT_BYTES"));
    served_free(&sv);
}

static void no_hold(ccp_config *cfg)
{
    cfg->max_hold_bytes = 0;
}

/* MAX_HOLD_BYTES=0: a non-stream answer goes out as it arrives (and is
 * cut off when it fails), never held. */
static void test_hold_limit_is_the_configured_one(void **state)
{
    (void)state;
    up_script = (script){.status = 200, .headers = "content-type: application/json", .body = answer,
                         .body_len = sizeof answer - 1, .piece = 7, .result = CCP_UP_BROKEN};
    next.tweak = no_hold;
    served sv;
    serve(&sv);
    assert_true(strncmp(sv.out.data, "Status: 200 OK\r\n", 16) == 0);
    assert_null(strstr(sv.out.data, "Content-Length"));
    assert_string_equal(sv.body, answer);
    assert_true(was_cut_off(&sv));
    served_free(&sv);
}

static void few_headers(ccp_config *cfg)
{
    cfg->max_header_count = 3; /* the request has 4 HTTP_ headers */
}

static void small_header(ccp_config *cfg)
{
    cfg->max_header_bytes = 40;
}

static void small_headers_total(ccp_config *cfg)
{
    cfg->max_header_total_bytes = 100;
}

/* Headers over a limit: 431 in the client's dialect, naming the limit,
 * before anything goes upstream; the log has a limit_reached line. */
static void test_headers_over_their_limits_are_431(void **state)
{
    (void)state;
    served sv;
    next.tweak = few_headers;
    next.refused = true;
    serve(&sv);
    assert_true(strncmp(sv.out.data, "Status: 431 Request Header Fields Too Large\r\n", 45) == 0);
    assert_true(strncmp(sv.body, "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":", 66) == 0);
    assert_non_null(strstr(sv.body, "(3, MAX_HEADER_COUNT)"));
    assert_non_null(strstr(sv.log.data, "\"event\":\"limit_reached\""));
    assert_true(logged_status(&sv, 431));
    served_free(&sv);

    next.tweak = small_header;
    next.refused = true;
    next.env[0] = "HTTP_X_LONG=0123456789012345678901234567890123456789";
    serve(&sv);
    assert_true(strncmp(sv.out.data, "Status: 431 ", 12) == 0);
    assert_non_null(strstr(sv.body, "header x-long is larger"));
    assert_non_null(strstr(sv.body, "MAX_HEADER_BYTES"));
    served_free(&sv);

    next.tweak = small_headers_total;
    next.refused = true;
    serve_as(&codex_service, "/v1/responses", codex_body_stream, "unit-test/1.0 with a long user agent string", &sv);
    assert_true(strncmp(sv.out.data, "Status: 431 ", 12) == 0);
    assert_non_null(strstr(sv.body, "\"code\":\"request_headers_too_large\""));
    assert_non_null(strstr(sv.body, "MAX_HEADER_TOTAL_BYTES"));
    served_free(&sv);

    /* At the defaults the same requests pass. */
    up_script = (script){.status = 200, .headers = "content-type: application/json", .body = answer,
                         .body_len = sizeof answer - 1, .result = CCP_UP_OK};
    next.env[0] = "HTTP_X_LONG=0123456789012345678901234567890123456789";
    serve(&sv);
    assert_true(strncmp(sv.out.data, "Status: 200 ", 12) == 0);
    served_free(&sv);
}

static void shallow_json(ccp_config *cfg)
{
    cfg->max_json_depth = 4;
}

static void few_outputs(ccp_config *cfg)
{
    cfg->max_step_outputs = 5;
}

/* A body nested past MAX_JSON_DEPTH is 400; a body whose adapter steps
 * would make more than MAX_STEP_OUTPUTS values is 413; each names its
 * limit, and nothing goes upstream. */
static void test_json_depth_and_step_outputs(void **state)
{
    (void)state;
    served sv;
    static const char deep[] = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"a\":1}]}]}"; /* 5 */
    next.tweak = shallow_json;
    next.refused = true;
    serve_as(&relay_service, "/v1/messages", deep, "unit-test/1.0", &sv);
    assert_true(strncmp(sv.out.data, "Status: 400 ", 12) == 0);
    assert_non_null(strstr(sv.body, "(4 levels, MAX_JSON_DEPTH)"));
    assert_non_null(strstr(sv.log.data, "MAX_JSON_DEPTH (400)"));
    served_free(&sv);

    static const char many[] = "{\"model\":\"gpt-5-codex\",\"stream\":true,\"input\":[{\"role\":\"user\",\"content\":\"1\"},"
                               "{\"role\":\"user\",\"content\":\"2\"},{\"role\":\"user\",\"content\":\"3\"}]}";
    next.tweak = few_outputs;
    next.refused = true;
    serve_as(&codex_service, "/v1/responses", many, "CherryStudio/1.5.0", &sv);
    assert_true(strncmp(sv.out.data, "Status: 413 ", 12) == 0);
    assert_non_null(strstr(sv.body, "\"code\":\"request_too_large\""));
    assert_non_null(strstr(sv.body, "(MAX_STEP_OUTPUTS)"));
    assert_non_null(strstr(sv.log.data, "MAX_STEP_OUTPUTS (413)"));
    served_free(&sv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chunked_answer_is_held_and_sent_with_its_length),
        cmocka_unit_test(test_upstream_content_length_is_kept_once),
        cmocka_unit_test(test_upstream_error_answer_passes_whole),
        cmocka_unit_test(test_incomplete_answer_becomes_the_error),
        cmocka_unit_test(test_answer_over_the_cap_streams_and_is_cut_off_on_failure),
        cmocka_unit_test(test_answer_over_the_cap_completes),
        cmocka_unit_test(test_answer_at_the_cap_is_held),
        cmocka_unit_test(test_stream_failure_still_ends_with_the_error_event),
        cmocka_unit_test(test_stream_failing_before_its_headers_is_the_json_error),
        cmocka_unit_test(test_client_leaving_is_499_and_cut),
        cmocka_unit_test(test_codex_stream_failure_ends_with_response_failed),
        cmocka_unit_test(test_codex_bare_error_event_is_replaced),
        cmocka_unit_test(test_codex_aggregated_answer_and_early_end),
        cmocka_unit_test(test_sse_event_over_the_limit_ends_the_stream),
        cmocka_unit_test(test_aggregate_over_its_limits_is_the_json_502),
        cmocka_unit_test(test_hold_limit_is_the_configured_one),
        cmocka_unit_test(test_headers_over_their_limits_are_431),
        cmocka_unit_test(test_json_depth_and_step_outputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
