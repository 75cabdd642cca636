/* fcgi_conn: the FastCGI responder side, driven over a socketpair on a real
 * loop: the parameters parser on good and malformed pairs, a whole request
 * and its answer, a kept connection's second request, and what the web
 * server's bad input gets (a bad version, an unknown role, a second
 * request id, too many parameters, an abort). */
#include "unit.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "../../common/fcgi_conn.h"

/* ---- records as a web server writes them ------------------------------------ */

static void record(ccp_buf *b, int type, int id, const void *p, size_t n)
{
    unsigned char h[8] = {1, (unsigned char)type, (unsigned char)(id >> 8), (unsigned char)id,
                          (unsigned char)(n >> 8), (unsigned char)n, 0, 0};
    ccp_buf_append(b, h, sizeof h);
    if (n) ccp_buf_append(b, p, n);
}

static void begin(ccp_buf *b, int id, int role, bool keep)
{
    unsigned char body[8] = {(unsigned char)(role >> 8), (unsigned char)role, keep ? 1 : 0};
    record(b, 1, id, body, sizeof body);
}

/* A name-value pair with 1-byte lengths. */
static void pair(ccp_buf *b, const char *name, const char *value)
{
    ccp_buf_append_char(b, (char)strlen(name));
    ccp_buf_append_char(b, (char)strlen(value));
    ccp_buf_append_str(b, name);
    ccp_buf_append_str(b, value);
}

/* A whole request: BEGIN, the parameters, the body, each stream ended. */
static void request(ccp_buf *b, int id, bool keep, const char *body)
{
    begin(b, id, 1, keep);
    ccp_buf params = {0};
    pair(&params, "REQUEST_METHOD", "POST");
    pair(&params, "REQUEST_URI", "/v1/messages");
    record(b, 4, id, params.data, params.len);
    record(b, 4, id, NULL, 0);
    if (*body) record(b, 5, id, body, strlen(body));
    record(b, 5, id, NULL, 0);
    ccp_buf_free(&params);
}

/* ---- the host around the connection ------------------------------------------- */

typedef struct fixture {
    ccp_loop *loop;
    ccp_fcgi_host host;
    int web; /* the web server's end */
    int requests;
    ccp_buf got_body;
    char method[16];
    bool answer;       /* answer each request at once */
    bool pieces;       /* ... in several writes, one of them past a record's size */
    ccp_io *pending;   /* a request left unanswered */
    int gone_events;
} fixture;

static void on_client(void *ctx, ccp_io_event event)
{
    fixture *f = ctx;
    if (event == CCP_IO_GONE) f->gone_events++;
}

static void on_request(void *ctx, ccp_io *io)
{
    fixture *f = ctx;
    f->requests++;
    const char *method = ccp_http_param(io->envp, "REQUEST_METHOD");
    snprintf(f->method, sizeof f->method, "%s", method ? method : "");
    char chunk[4096];
    int n;
    ccp_buf_reset(&f->got_body);
    while ((n = io->read(io, chunk, sizeof chunk)) > 0) ccp_buf_append(&f->got_body, chunk, (size_t)n);
    if (!f->answer) {
        io->on_client = on_client;
        io->on_client_ctx = f;
        f->pending = io;
        return;
    }
    static const char answer[] = "Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nhello";
    assert_int_equal(io->write(io, answer, sizeof answer - 1), 0);
    if (f->pieces) {
        static char big[70000];
        memset(big, 'x', sizeof big);
        assert_int_equal(io->write(io, " a", 2), 0);
        assert_int_equal(io->write(io, " b", 2), 0);
        assert_int_equal(io->write(io, big, sizeof big), 0);
        assert_int_equal(io->write(io, " c", 2), 0);
    }
    ccp_io_finish(io);
}

static void setup(fixture *f, size_t body_max)
{
    memset(f, 0, sizeof *f);
    f->loop = ccp_loop_new();
    assert_non_null(f->loop);
    f->host = (ccp_fcgi_host){.loop = f->loop, .body_max = body_max, .params_max = 4096,
                              .on_request = on_request, .ctx = f};
    ccp_fcgi_host_init(&f->host);
    f->answer = true;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    f->web = sv[0];
    assert_non_null(ccp_fcgi_conn_open(&f->host, sv[1]));
}

static void teardown(fixture *f)
{
    close(f->web);
    ccp_fcgi_close_idle(&f->host);
    ccp_loop_turn(f->loop, 0);
    ccp_loop_free(f->loop);
    ccp_buf_free(&f->got_body);
}

static void send_all(fixture *f, const ccp_buf *b)
{
    assert_int_equal(write(f->web, b->data, b->len), (ssize_t)b->len);
    for (int i = 0; i < 4; i++) ccp_loop_turn(f->loop, 10);
}

/* What the responder wrote, until it stops writing; *eof when it closed. */
static void receive(fixture *f, ccp_buf *out, bool *eof)
{
    *eof = false;
    char chunk[4096];
    for (;;) {
        struct timeval tv = {0, 100000};
        setsockopt(f->web, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ssize_t n = read(f->web, chunk, sizeof chunk);
        if (n > 0) {
            ccp_buf_append(out, chunk, (size_t)n);
            continue;
        }
        *eof = n == 0;
        return;
    }
}

/* Walks the records in b: count of each type, the STDOUT content. */
static void records(const ccp_buf *b, int counts[16], ccp_buf *stdout_data, int *end_status)
{
    memset(counts, 0, 16 * sizeof *counts);
    size_t at = 0;
    while (b->len - at >= 8) {
        const unsigned char *h = (const unsigned char *)b->data + at;
        size_t n = ((size_t)h[4] << 8) | h[5], pad = h[6];
        assert_true(at + 8 + n + pad <= b->len);
        if (h[1] < 16) counts[h[1]]++;
        if (h[1] == 6) ccp_buf_append(stdout_data, h + 8, n);
        if (h[1] == 3 && end_status) *end_status = h[8 + 4];
        at += 8 + n + pad;
    }
    assert_int_equal(at, b->len);
}

/* ---- the parameters parser ------------------------------------------------------- */

static void test_params_pairs_both_length_forms(void **state)
{
    (void)state;
    ccp_buf b = {0};
    pair(&b, "A", "1");
    /* a 4-byte value length (high bit set) */
    unsigned char name_len = 4, value_len[4] = {0x80, 0, 0, 200};
    ccp_buf_append(&b, &name_len, 1);
    ccp_buf_append(&b, value_len, 4);
    ccp_buf_append_str(&b, "LONG");
    for (int i = 0; i < 200; i++) ccp_buf_append_char(&b, 'x');
    pair(&b, "EMPTY", "");
    char **env = NULL;
    assert_true(ccp_fcgi_parse_params((const unsigned char *)b.data, b.len, &env));
    assert_string_equal(env[0], "A=1");
    assert_int_equal(strlen(env[1]), 5 + 200);
    assert_true(strncmp(env[1], "LONG=xxx", 8) == 0);
    assert_string_equal(env[2], "EMPTY=");
    assert_null(env[3]);
    free(env);
    ccp_buf_free(&b);
}

static void test_params_malformed_are_refused(void **state)
{
    (void)state;
    static const struct {
        const char *what;
        const char *bytes;
        size_t n;
    } cases[] = {
        {"value longer than the stream", "\x01\x09" "AB", 4},
        {"name length cut", "\x80\x00", 2},
        {"value length missing", "\x01", 1},
        {"empty name", "\x00\x01" "x", 3},
        {"'=' in a name", "\x03\x01" "A=B" "x", 6},
        {"NUL in a name", "\x03\x01" "A\0B" "x", 6},
        {"4-byte length past the end", "\x01\xff\xff\xff\xff" "A", 6},
    };
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        char **env = NULL;
        bool ok = ccp_fcgi_parse_params((const unsigned char *)cases[i].bytes, cases[i].n, &env);
        if (ok) print_error("%s: accepted\n", cases[i].what);
        assert_false(ok);
    }
    /* A NUL in a value becomes a line feed, which the request view refuses,
     * instead of silently cutting the value short. */
    char **nul = NULL;
    assert_true(ccp_fcgi_parse_params((const unsigned char *)"\x01\x03" "Aa\0b", 6, &nul));
    assert_string_equal(nul[0], "A=a\nb");
    free(nul);
    char **env = NULL;
    assert_true(ccp_fcgi_parse_params(NULL, 0, &env)); /* no parameters at all */
    assert_null(env[0]);
    free(env);
}

/* ---- whole requests ------------------------------------------------------------------ */

static void test_request_answered_and_connection_kept(void **state)
{
    (void)state;
    fixture f;
    setup(&f, 1 << 20);
    ccp_buf in = {0};
    request(&in, 1, true, "{\"a\":1}");
    send_all(&f, &in);
    assert_int_equal(f.requests, 1);
    assert_string_equal(f.method, "POST");
    assert_string_equal(ccp_buf_cstr(&f.got_body), "{\"a\":1}");
    ccp_buf out = {0}, data = {0};
    bool eof;
    receive(&f, &out, &eof);
    assert_false(eof); /* kept */
    int counts[16], status = -1;
    records(&out, counts, &data, &status);
    assert_int_equal(counts[3], 1); /* FCGI_END_REQUEST */
    assert_int_equal(status, 0);    /* FCGI_REQUEST_COMPLETE */
    assert_non_null(strstr(ccp_buf_cstr(&data), "\r\n\r\nhello"));

    /* The next request on the same connection, with another id. */
    ccp_buf_reset(&in);
    ccp_buf_reset(&out);
    ccp_buf_reset(&data);
    request(&in, 2, false, "");
    send_all(&f, &in);
    assert_int_equal(f.requests, 2);
    receive(&f, &out, &eof);
    assert_true(eof); /* not kept this time */
    records(&out, counts, &data, &status);
    assert_int_equal(counts[3], 1);
    assert_int_equal(f.host.open, 0);
    ccp_buf_free(&in);
    ccp_buf_free(&out);
    ccp_buf_free(&data);
    teardown(&f);
}

/* What one round writes joins the record still waiting to be sent: the
 * header and two small writes are one record; a write past a record's
 * 65,535 bytes starts new ones and the small write after it joins the
 * last; the bytes are the same, in order, and the stream still ends with
 * an empty record and FCGI_END_REQUEST. */
static void test_writes_of_one_round_join_one_record(void **state)
{
    (void)state;
    fixture f;
    setup(&f, 1 << 20);
    f.pieces = true;
    ccp_buf in = {0};
    request(&in, 1, true, "");
    send_all(&f, &in);
    ccp_buf out = {0}, data = {0};
    bool eof;
    receive(&f, &out, &eof);
    int counts[16], status = -1;
    records(&out, counts, &data, &status);
    /* header+" a"+" b" | 65,535 x | 4,465 x+" c" | the empty end record */
    assert_int_equal(counts[6], 4);
    assert_int_equal(counts[3], 1);
    size_t head = strlen("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nhello");
    assert_int_equal(data.len, head + 2 + 2 + 70000 + 2);
    assert_memory_equal(data.data + head, " a b", 4);
    assert_int_equal(data.data[head + 4], 'x');
    assert_int_equal(data.data[head + 4 + 69999], 'x');
    assert_memory_equal(data.data + data.len - 2, " c", 2);
    ccp_buf_free(&in);
    ccp_buf_free(&out);
    ccp_buf_free(&data);
    teardown(&f);
}

/* A body over the limit is kept up to one byte past it: the relay's check
 * sees it is too large, and no more than that is held. */
static void test_body_over_the_limit_is_kept_to_one_byte_past(void **state)
{
    (void)state;
    fixture f;
    setup(&f, 10);
    ccp_buf in = {0};
    request(&in, 1, false, "0123456789ABCDEFGHIJ");
    send_all(&f, &in);
    assert_int_equal(f.requests, 1);
    assert_int_equal(f.got_body.len, 11);
    ccp_buf_free(&in);
    teardown(&f);
}

static void test_bad_input_from_the_web_server(void **state)
{
    (void)state;
    /* A record of another protocol version: the connection is dropped. */
    fixture f;
    setup(&f, 1024);
    ccp_buf in = {0}, out = {0}, data = {0};
    static const unsigned char bad_version[8] = {2, 1, 0, 1, 0, 0, 0, 0};
    ccp_buf_append(&in, bad_version, sizeof bad_version);
    send_all(&f, &in);
    bool eof;
    receive(&f, &out, &eof);
    assert_true(eof);
    assert_int_equal(f.requests, 0);
    teardown(&f);

    /* An authorizer: refused with FCGI_UNKNOWN_ROLE, nothing dispatched. */
    setup(&f, 1024);
    ccp_buf_reset(&in);
    ccp_buf_reset(&out);
    begin(&in, 1, 2, true);
    send_all(&f, &in);
    receive(&f, &out, &eof);
    int counts[16], status = -1;
    records(&out, counts, &data, &status);
    assert_int_equal(counts[3], 1);
    assert_int_equal(status, 3);
    assert_int_equal(f.requests, 0);
    teardown(&f);

    /* Parameters over params_max: counted, not kept, and the request is
     * still handed on (to be answered 431) with none of them and
     * params_over set; the body is read as usual. */
    setup(&f, 1024);
    ccp_buf_reset(&in);
    ccp_buf_reset(&out);
    begin(&in, 1, 1, false);
    char big[1000];
    memset(big, 'p', sizeof big);
    for (int i = 0; i < 6; i++) record(&in, 4, 1, big, sizeof big);
    record(&in, 4, 1, NULL, 0);
    record(&in, 5, 1, "body", 4);
    record(&in, 5, 1, NULL, 0);
    f.answer = false;
    send_all(&f, &in);
    assert_int_equal(f.requests, 1);
    assert_non_null(f.pending);
    assert_true(f.pending->params_over);
    assert_int_equal(f.pending->params_seen, 6000);
    assert_null(f.pending->envp[0]);
    assert_string_equal(ccp_buf_cstr(&f.got_body), "body");
    static const char answer431[] = "Status: 431 Request Header Fields Too Large\r\n\r\n";
    assert_int_equal(f.pending->write(f.pending, answer431, sizeof answer431 - 1), 0);
    ccp_io_finish(f.pending);
    for (int i = 0; i < 4; i++) ccp_loop_turn(f.loop, 10);
    receive(&f, &out, &eof);
    int counts431[16], status431 = -1;
    ccp_buf data431 = {0};
    records(&out, counts431, &data431, &status431);
    assert_int_equal(counts431[3], 1); /* FCGI_END_REQUEST: answered, not cut */
    assert_int_equal(status431, 0);
    assert_non_null(strstr(ccp_buf_cstr(&data431), "431"));
    ccp_buf_free(&data431);
    teardown(&f);

    /* A second BEGIN_REQUEST while one is open: FCGI_CANT_MPX_CONN for it,
     * and the first goes on. GET_VALUES is answered: no multiplexing. */
    setup(&f, 1024);
    ccp_buf_reset(&in);
    ccp_buf_reset(&out);
    ccp_buf_reset(&data);
    begin(&in, 1, 1, false);
    begin(&in, 2, 1, false);
    ccp_buf values = {0};
    pair(&values, "FCGI_MPXS_CONNS", "");
    record(&in, 9, 0, values.data, values.len);
    record(&in, 4, 1, NULL, 0);
    record(&in, 5, 1, NULL, 0);
    send_all(&f, &in);
    receive(&f, &out, &eof);
    records(&out, counts, &data, &status);
    assert_int_equal(counts[10], 1); /* FCGI_GET_VALUES_RESULT */
    assert_int_equal(counts[3], 2);  /* one refusal, one answer */
    assert_int_equal(f.requests, 1);
    ccp_buf_free(&values);
    teardown(&f);

    ccp_buf_free(&in);
    ccp_buf_free(&out);
    ccp_buf_free(&data);
}

/* The web server aborts, or hangs up, while a request is answered: the
 * transfer hears CCP_IO_GONE. */
static void test_abort_and_hang_up_while_answering(void **state)
{
    (void)state;
    for (int how = 0; how < 2; how++) {
        fixture f;
        setup(&f, 1024);
        f.answer = false;
        ccp_buf in = {0};
        request(&in, 1, true, "x");
        send_all(&f, &in);
        assert_int_equal(f.requests, 1);
        assert_non_null(f.pending);
        ccp_buf_reset(&in);
        if (how == 0) {
            record(&in, 2, 1, NULL, 0); /* FCGI_ABORT_REQUEST */
            send_all(&f, &in);
        } else {
            shutdown(f.web, SHUT_WR);
            for (int i = 0; i < 4; i++) ccp_loop_turn(f.loop, 10);
        }
        assert_int_equal(f.gone_events, 1);
        assert_int_equal(f.pending->write(f.pending, "x", 1), -1); /* nothing more goes out */
        ccp_io_finish(f.pending); /* the relay's end: the connection closes */
        for (int i = 0; i < 2; i++) ccp_loop_turn(f.loop, 10);
        assert_int_equal(f.host.open, 0);
        ccp_buf_free(&in);
        teardown(&f);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params_pairs_both_length_forms),
        cmocka_unit_test(test_params_malformed_are_refused),
        cmocka_unit_test(test_request_answered_and_connection_kept),
        cmocka_unit_test(test_writes_of_one_round_join_one_record),
        cmocka_unit_test(test_body_over_the_limit_is_kept_to_one_byte_past),
        cmocka_unit_test(test_bad_input_from_the_web_server),
        cmocka_unit_test(test_abort_and_hang_up_while_answering),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
