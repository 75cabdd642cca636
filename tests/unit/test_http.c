/* http: CGI header names, the request view over a fake ccp_io, bounded body
 * reads, header lists, and the exact bytes of the response writer. */
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>

/* ---- header names and params ------------------------------------------------ */

static void test_header_name_table(void **state)
{
    (void)state;
    static const struct {
        const char *env;
        bool ok;
        const char *name;
    } cases[] = {
        {"HTTP_X_API_KEY", true, "x-api-key"},
        {"HTTP_HOST", true, "host"},
        {"HTTP_ANTHROPIC_VERSION", true, "anthropic-version"},
        {"HTTP_AUTHORIZATION", true, "authorization"},
        {"HTTP_X9", true, "x9"},
        {"HTTP_", false, NULL},
        {"HTTP", false, NULL},
        {"", false, NULL},
        {"CONTENT_TYPE", false, NULL},
        {"REQUEST_URI", false, NULL},
        {"http_host", false, NULL},
        {"XHTTP_HOST", false, NULL},
    };
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        ccp_buf out = {0};
        bool ok = ccp_http_header_name(cases[i].env, strlen(cases[i].env), &out);
        assert_int_equal(ok, cases[i].ok);
        if (ok) assert_string_equal(ccp_buf_cstr(&out), cases[i].name);
        ccp_buf_free(&out);
    }
}

static void test_header_name_uses_given_length_and_resets_out(void **state)
{
    (void)state;
    ccp_buf out = {0};
    ccp_buf_append_str(&out, "stale");
    const char *e = "HTTP_USER_AGENT=curl/8";
    assert_true(ccp_http_header_name(e, strlen("HTTP_USER_AGENT"), &out));
    assert_string_equal(out.data, "user-agent");
    ccp_buf_free(&out);
}

static void test_http_param_exact_name(void **state)
{
    (void)state;
    char *envp[] = {"PATH_INFOX=no", "PATH_INFO=/yes", "EMPTY=", NULL};
    assert_string_equal(ccp_http_param(envp, "PATH_INFO"), "/yes");
    assert_string_equal(ccp_http_param(envp, "EMPTY"), "");
    assert_null(ccp_http_param(envp, "PATH"));
    assert_null(ccp_http_param(envp, "MISSING"));
    assert_null(ccp_http_param(NULL, "PATH_INFO"));
}

static void test_header_value_ok(void **state)
{
    (void)state;
    assert_true(ccp_http_header_value_ok(""));
    assert_true(ccp_http_header_value_ok("application/json; charset=utf-8"));
    assert_true(ccp_http_header_value_ok("tab\tis fine"));
    assert_false(ccp_http_header_value_ok("a\rb"));
    assert_false(ccp_http_header_value_ok("a\nb"));
    assert_false(ccp_http_header_value_ok("a\r\nSet-Cookie: x"));
}

/* ---- ccp_request_init ------------------------------------------------------------ */

static ccp_request_status init(ccp_request *r, unit_io *u, char **envp, const char *base)
{
    unit_io_init(u, envp);
    return ccp_request_init(r, &u->io, base, NULL);
}

/* ---- header limits (MAX_HEADER_COUNT, MAX_HEADER_BYTES, MAX_HEADER_TOTAL_BYTES) ---- */

static ccp_request_status init_limited(ccp_request *r, unit_io *u, char **envp, ccp_header_limits lim)
{
    unit_io_init(u, envp);
    return ccp_request_init(r, &u->io, "", &lim);
}

static void test_header_count_limit(void **state)
{
    (void)state;
    char *envp[] = {"REQUEST_METHOD=POST", "REQUEST_URI=/v1/messages", "HTTP_A=1", "HTTP_B=2",
                    "HTTP_C=3",            "CONTENT_TYPE=application/json", NULL};
    ccp_request r;
    unit_io u;
    /* At the limit: accepted; CONTENT_TYPE is no HTTP_ header and not counted. */
    assert_int_equal(init_limited(&r, &u, envp, (ccp_header_limits){.count = 3}), CCP_REQ_OK);
    assert_int_equal(r.headers.count, 3);
    assert_null(r.over_limit);
    ccp_request_free(&r);
    /* One over: refused, and what was past the limit is not kept. */
    assert_int_equal(init_limited(&r, &u, envp, (ccp_header_limits){.count = 2}), CCP_REQ_HEADERS_TOO_LARGE);
    assert_string_equal(r.over_limit, "MAX_HEADER_COUNT");
    assert_int_equal(r.over_amount, 3);
    assert_int_equal(r.headers.count, 2);
    /* The rest of the view is there for the log line. */
    assert_string_equal(r.method, "POST");
    assert_string_equal(r.path, "/v1/messages");
    ccp_request_free(&r);
}

static void test_header_one_size_limit(void **state)
{
    (void)state;
    /* "x-big" + 11 bytes of value = 16 */
    char *envp[] = {"HTTP_SMALL=1", "HTTP_X_BIG=12345678901", NULL};
    ccp_request r;
    unit_io u;
    assert_int_equal(init_limited(&r, &u, envp, (ccp_header_limits){.one_bytes = 16}), CCP_REQ_OK);
    ccp_request_free(&r);
    assert_int_equal(init_limited(&r, &u, envp, (ccp_header_limits){.one_bytes = 15}), CCP_REQ_HEADERS_TOO_LARGE);
    assert_string_equal(r.over_limit, "MAX_HEADER_BYTES");
    assert_string_equal(r.over_header, "x-big");
    assert_int_equal(r.over_amount, 16);
    assert_null(ccp_request_header(&r, "x-big"));
    ccp_request_free(&r);
}

static void test_header_total_limit(void **state)
{
    (void)state;
    char *envp[] = {"HTTP_AA=1234", "HTTP_BB=1234", "HTTP_CC=1234", NULL}; /* 6 bytes each */
    ccp_request r;
    unit_io u;
    assert_int_equal(init_limited(&r, &u, envp, (ccp_header_limits){.total_bytes = 18}), CCP_REQ_OK);
    ccp_request_free(&r);
    assert_int_equal(init_limited(&r, &u, envp, (ccp_header_limits){.total_bytes = 17}), CCP_REQ_HEADERS_TOO_LARGE);
    assert_string_equal(r.over_limit, "MAX_HEADER_TOTAL_BYTES");
    assert_int_equal(r.over_amount, 18);
    assert_int_equal(r.headers.count, 2);
    ccp_request_free(&r);
    /* Count checked first when both are passed by the same header. */
    assert_int_equal(init_limited(&r, &u, envp, (ccp_header_limits){.count = 1, .total_bytes = 7}),
                     CCP_REQ_HEADERS_TOO_LARGE);
    assert_string_equal(r.over_limit, "MAX_HEADER_COUNT");
    ccp_request_free(&r);
}

/* A transport that dropped the parameters (FastCGI's params_max): refused
 * as a header total over its limit, whatever else the view holds. */
static void test_params_over_is_headers_too_large(void **state)
{
    (void)state;
    char *envp[] = {NULL};
    ccp_request r;
    unit_io u;
    unit_io_init(&u, envp);
    u.io.params_over = true;
    u.io.params_seen = 123456;
    assert_int_equal(ccp_request_init(&r, &u.io, "", NULL), CCP_REQ_HEADERS_TOO_LARGE);
    assert_string_equal(r.over_limit, "MAX_HEADER_TOTAL_BYTES");
    assert_int_equal(r.over_amount, 123456);
    ccp_request_free(&r);
}

static void test_request_uri_with_query(void **state)
{
    (void)state;
    char *envp[] = {
        "REQUEST_METHOD=POST",   "REQUEST_URI=/v1/messages?beta=true", "CONTENT_TYPE=application/json",
        "CONTENT_LENGTH=17",     "HTTP_X_API_KEY=k-1",                 "HTTP_ANTHROPIC_VERSION=2023-06-01",
        "SERVER_NAME=localhost", NULL,
    };
    ccp_request r;
    unit_io u;
    assert_int_equal(init(&r, &u, envp, ""), CCP_REQ_OK);
    assert_string_equal(r.method, "POST");
    assert_string_equal(r.path, "/v1/messages");
    assert_string_equal(r.query, "beta=true");
    assert_string_equal(r.content_type, "application/json");
    assert_int_equal(r.content_length, 17);
    assert_string_equal(ccp_request_header(&r, "x-api-key"), "k-1");
    assert_string_equal(ccp_request_header(&r, "X-Api-Key"), "k-1");
    assert_string_equal(ccp_request_header(&r, "anthropic-version"), "2023-06-01");
    assert_int_equal(r.headers.count, 2); /* only HTTP_* become headers */
    assert_null(r.bad_header);
    assert_int_equal(u.reads, 0); /* the body is not touched */
    ccp_request_free(&r);
}

static void test_query_string_param_wins_over_uri(void **state)
{
    (void)state;
    char *envp[] = {"REQUEST_URI=/v1/models?from=uri", "QUERY_STRING=from=param", NULL};
    ccp_request r;
    unit_io u;
    assert_int_equal(init(&r, &u, envp, ""), CCP_REQ_OK);
    assert_string_equal(r.query, "from=param");
    ccp_request_free(&r);
}

static void test_defaults_without_method_or_uri(void **state)
{
    (void)state;
    char *envp[] = {NULL};
    ccp_request r;
    unit_io u;
    assert_int_equal(init(&r, &u, envp, ""), CCP_REQ_OK);
    assert_string_equal(r.method, "GET");
    assert_string_equal(r.path, "/");
    assert_string_equal(r.query, "");
    assert_int_equal(r.content_length, -1);
    assert_null(r.content_type);
    ccp_request_free(&r);
}

static void test_path_table(void **state)
{
    (void)state;
    static const struct {
        const char *path_info; /* NULL: not given */
        const char *uri;
        const char *base;
        ccp_request_status st;
        const char *path;
        const char *query;
    } cases[] = {
        {NULL, "/v1/messages", "", CCP_REQ_OK, "/v1/messages", ""},
        {NULL, "/v1/models#frag", "", CCP_REQ_OK, "/v1/models", ""},
        {NULL, "/v1/models?a=1#frag", "", CCP_REQ_OK, "/v1/models", "a=1"},
        {"/v1/messages", "/cgi-bin/ccproxy-claude/v1/messages?x=1", "", CCP_REQ_OK, "/v1/messages", "x=1"},
        {"", "/from/uri", "", CCP_REQ_OK, "/from/uri", ""},
        {NULL, "/claude/v1/messages?q=2", "/claude", CCP_REQ_OK, "/v1/messages", "q=2"},
        {NULL, "/claude", "/claude", CCP_REQ_OK, "/", ""},
        {NULL, "/claude/", "/claude", CCP_REQ_OK, "/", ""},
        {NULL, "/claude?x=1", "/claude", CCP_REQ_OK, "/", "x=1"},
        {NULL, "/a/b/health", "/a/b", CCP_REQ_OK, "/health", ""},
        {NULL, "/claudeX/v1/messages", "/claude", CCP_REQ_NOT_FOUND, NULL, NULL},
        {NULL, "/claudeX", "/claude", CCP_REQ_NOT_FOUND, NULL, NULL},
        {NULL, "/other/v1/messages", "/claude", CCP_REQ_NOT_FOUND, NULL, NULL},
        {NULL, "/cl", "/claude", CCP_REQ_NOT_FOUND, NULL, NULL},
        {NULL, "/v1/messages", "/claude", CCP_REQ_NOT_FOUND, NULL, NULL},
        {NULL, "/Claude/v1", "/claude", CCP_REQ_NOT_FOUND, NULL, NULL},
        {NULL, "v1/messages", "", CCP_REQ_BAD, NULL, NULL},
    };
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        char pi[128], uri[128];
        char *envp[3] = {NULL, NULL, NULL};
        size_t k = 0;
        snprintf(uri, sizeof uri, "REQUEST_URI=%s", cases[i].uri);
        envp[k++] = uri;
        if (cases[i].path_info) {
            snprintf(pi, sizeof pi, "PATH_INFO=%s", cases[i].path_info);
            envp[k++] = pi;
        }
        ccp_request r;
        unit_io u;
        ccp_request_status st = init(&r, &u, envp, cases[i].base);
        if (st != cases[i].st)
            print_error("uri %s base %s: status %d, want %d\n", cases[i].uri, cases[i].base, st, cases[i].st);
        assert_int_equal(st, cases[i].st);
        if (cases[i].path) assert_string_equal(r.path, cases[i].path);
        if (cases[i].query) assert_string_equal(r.query, cases[i].query);
        if (st == CCP_REQ_NOT_FOUND) assert_non_null(r.path); /* named in the 404 message */
        ccp_request_free(&r);
    }
}

static void test_crlf_in_header_value_sets_bad_header(void **state)
{
    (void)state;
    char *envp[] = {"REQUEST_URI=/v1/messages", "HTTP_X_GOOD=fine", "HTTP_X_EVIL=a\r\nInjected: 1",
                    "HTTP_X_ALSO_BAD=b\nc", NULL};
    ccp_request r;
    unit_io u;
    assert_int_equal(init(&r, &u, envp, ""), CCP_REQ_OK);
    assert_non_null(r.bad_header);
    assert_string_equal(r.bad_header, "x-evil"); /* the first one */
    ccp_request_free(&r);

    char *envp_cr[] = {"HTTP_X_CR=a\rb", NULL};
    assert_int_equal(init(&r, &u, envp_cr, ""), CCP_REQ_OK);
    assert_string_equal(r.bad_header, "x-cr");
    ccp_request_free(&r);
}

/* A line break anywhere that is forwarded is found and named, whatever
 * stands in front (issue 13: a query string with a line feed reached the
 * upstream URL, CGI's CONTENT_TYPE the upstream's content-type). */
static void test_line_break_in_any_forwarded_part_is_named(void **state)
{
    (void)state;
    static const struct {
        const char *param;
        const char *part;
    } cases[] = {
        {"REQUEST_URI=/v1/messages?bet\na=true", "the query string"},
        {"QUERY_STRING=a=1\r\nInjected: 1", "the query string"},
        {"CONTENT_TYPE=application/json\r\nX-Injected: 1", "the content type"},
        {"REQUEST_METHOD=PO\nST", "the method"},
        {"PATH_INFO=/v1/mess\rages", "the path"},
        {"HTTP_X_A\nB=v", "a header name"},
    };
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        char param[128];
        snprintf(param, sizeof param, "%s", cases[i].param);
        char *envp[] = {param, "REQUEST_URI_UNUSED=1", NULL};
        if (strncmp(param, "REQUEST_URI=", 12) != 0) envp[1] = "REQUEST_URI=/v1/messages";
        ccp_request r;
        unit_io u;
        init(&r, &u, envp, "");
        if (!r.bad_part || strcmp(r.bad_part, cases[i].part) != 0)
            print_error("%s: got %s\n", cases[i].param, r.bad_part ? r.bad_part : "(none)");
        assert_non_null(r.bad_part);
        assert_string_equal(r.bad_part, cases[i].part);
        ccp_request_free(&r);
    }
    char *clean[] = {"REQUEST_METHOD=POST", "REQUEST_URI=/v1/messages?beta=true", "CONTENT_TYPE=application/json",
                     "HTTP_X_OK=v", NULL};
    ccp_request r;
    unit_io u;
    assert_int_equal(init(&r, &u, clean, ""), CCP_REQ_OK);
    assert_null(r.bad_part);
    ccp_request_free(&r);
}

static void test_http_proxy_header_is_ignored(void **state)
{
    (void)state;
    char *envp[] = {"REQUEST_URI=/", "HTTP_PROXY=http://evil:3128", "HTTP_PROXY_AUTHORIZATION=x", NULL};
    ccp_request r;
    unit_io u;
    assert_int_equal(init(&r, &u, envp, ""), CCP_REQ_OK);
    assert_null(ccp_request_header(&r, "proxy"));
    /* Only the exact httpoxy name is dropped. */
    assert_string_equal(ccp_request_header(&r, "proxy-authorization"), "x");
    ccp_request_free(&r);
}

/* What the web servers pass of a WebSocket handshake (measured with the
 * captured Codex request): nginx (fastcgi) and lighttpd (mod_fastcgi) pass
 * HTTP_UPGRADE and HTTP_CONNECTION; lighttpd's mod_cgi drops HTTP_UPGRADE
 * unless cgi.upgrade is on; a proxy in front drops both. */
static void test_websocket_handshake_table(void **state)
{
    (void)state;
    static const struct {
        const char *upgrade;    /* HTTP_UPGRADE; NULL: absent */
        const char *connection; /* HTTP_CONNECTION */
        const char *key;        /* HTTP_SEC_WEBSOCKET_KEY */
        bool websocket;
    } cases[] = {
        {"websocket", "Upgrade", "KNwr45FLp3yTDrCvdBpw4A==", true}, /* the captured Codex CLI request */
        {"websocket", "Upgrade", NULL, true},
        {"WebSocket", NULL, NULL, true},
        {"websocket/13", NULL, NULL, true},
        {"h2c, websocket", "Upgrade, HTTP2-Settings", NULL, true},
        {" websocket ,h2c", NULL, NULL, true},
        {NULL, "Upgrade", "KNwr45FLp3yTDrCvdBpw4A==", true}, /* lighttpd mod_cgi */
        {NULL, NULL, "KNwr45FLp3yTDrCvdBpw4A==", true},      /* behind a proxy that drops hop-by-hop headers */
        {NULL, "Upgrade", "", false},
        {"h2c", "Upgrade, HTTP2-Settings", NULL, false},
        {"websockets", NULL, NULL, false},
        {"notwebsocket", NULL, NULL, false},
        {"", "Upgrade", NULL, false},
        {NULL, "Upgrade", NULL, false},
        {NULL, "keep-alive", NULL, false},
    };
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        char up[64], conn[64], key[64];
        char *envp[5] = {"REQUEST_METHOD=GET"};
        size_t n = 1;
        if (cases[i].upgrade) {
            snprintf(up, sizeof up, "HTTP_UPGRADE=%s", cases[i].upgrade);
            envp[n++] = up;
        }
        if (cases[i].connection) {
            snprintf(conn, sizeof conn, "HTTP_CONNECTION=%s", cases[i].connection);
            envp[n++] = conn;
        }
        if (cases[i].key) {
            snprintf(key, sizeof key, "HTTP_SEC_WEBSOCKET_KEY=%s", cases[i].key);
            envp[n++] = key;
        }
        ccp_request r;
        unit_io u;
        assert_int_equal(init(&r, &u, envp, ""), CCP_REQ_OK);
        if (ccp_request_is_websocket(&r) != cases[i].websocket)
            print_error("case %zu (upgrade %s, key %s): want %d\n", i, cases[i].upgrade ? cases[i].upgrade : "-",
                        cases[i].key ? cases[i].key : "-", cases[i].websocket);
        assert_int_equal(ccp_request_is_websocket(&r), cases[i].websocket);
        ccp_request_free(&r);
    }
}

static void test_header_list_has_token(void **state)
{
    (void)state;
    assert_true(ccp_header_list_has_token("Upgrade", "upgrade"));
    assert_true(ccp_header_list_has_token("keep-alive, Upgrade", "upgrade"));
    assert_true(ccp_header_list_has_token("websocket/13", "websocket"));
    assert_false(ccp_header_list_has_token("websocket13", "websocket"));
    assert_false(ccp_header_list_has_token("web", "websocket"));
    assert_false(ccp_header_list_has_token("", "websocket"));
    assert_false(ccp_header_list_has_token(",,", "websocket"));
    assert_false(ccp_header_list_has_token(NULL, "websocket"));
}

static void test_content_length_table(void **state)
{
    (void)state;
    static const struct {
        const char *cl;
        ccp_request_status st;
        long long n;
    } cases[] = {
        {"0", CCP_REQ_OK, 0},
        {"123", CCP_REQ_OK, 123},
        {"", CCP_REQ_OK, -1},
        {"abc", CCP_REQ_BAD, 0},
        {"-1", CCP_REQ_BAD, 0},
        {"12x", CCP_REQ_BAD, 0},
        {"1.5", CCP_REQ_BAD, 0},
        {"99999999999999999999999", CCP_REQ_BAD, 0},
        {"5 ", CCP_REQ_BAD, 0},
    };
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        char cl[64];
        snprintf(cl, sizeof cl, "CONTENT_LENGTH=%s", cases[i].cl);
        char *envp[] = {"REQUEST_URI=/v1/messages", cl, NULL};
        ccp_request r;
        unit_io u;
        ccp_request_status st = init(&r, &u, envp, "");
        if (st != cases[i].st) print_error("CONTENT_LENGTH=%s gave %d\n", cases[i].cl, st);
        assert_int_equal(st, cases[i].st);
        if (st == CCP_REQ_OK) assert_int_equal(r.content_length, cases[i].n);
        ccp_request_free(&r);
    }
}

/* ---- ccp_request_read_body ---------------------------------------------------------- */

typedef struct body_case {
    const char *cl;   /* NULL: no CONTENT_LENGTH */
    size_t avail;     /* bytes the client sends */
    size_t max;
    size_t piece;
    ccp_request_status st;
} body_case;

static void run_body_case(const body_case *c, ccp_request *r, unit_io *u, char *data)
{
    char cl[64];
    char *envp[] = {"REQUEST_METHOD=POST", "REQUEST_URI=/v1/messages", NULL, NULL};
    if (c->cl) {
        snprintf(cl, sizeof cl, "CONTENT_LENGTH=%s", c->cl);
        envp[2] = cl;
    }
    for (size_t k = 0; k < c->avail; k++) data[k] = (char)('a' + k % 26);
    assert_int_equal(init(r, u, envp, ""), CCP_REQ_OK);
    unit_io_input(u, data, c->avail, c->piece);
    unit_dirty_heap(64);
    assert_int_equal(ccp_request_read_body(r, c->max), c->st);
}

static void test_body_exact_length_in_small_pieces(void **state)
{
    (void)state;
    char data[100];
    body_case c = {"100", 100, 1000, 3, CCP_REQ_OK};
    ccp_request r;
    unit_io u;
    run_body_case(&c, &r, &u, data);
    assert_int_equal(r.body.len, 100);
    assert_memory_equal(r.body.data, data, 100);
    assert_int_equal(r.body.data[100], '\0');
    ccp_request_free(&r);
}

static void test_body_reads_no_more_than_content_length(void **state)
{
    (void)state;
    char data[50];
    body_case c = {"20", 50, 1000, 7, CCP_REQ_OK};
    ccp_request r;
    unit_io u;
    run_body_case(&c, &r, &u, data);
    assert_int_equal(r.body.len, 20);
    assert_int_equal(u.in_pos, 20);
    ccp_request_free(&r);
}

static void test_body_too_large_by_length_reads_nothing(void **state)
{
    (void)state;
    char data[64];
    body_case c = {"2049", 64, 2048, 0, CCP_REQ_TOO_LARGE};
    ccp_request r;
    unit_io u;
    run_body_case(&c, &r, &u, data);
    assert_int_equal(u.reads, 0);
    assert_int_equal(r.body.len, 0);
    ccp_request_free(&r);
}

static void test_body_huge_length_refused_without_allocating(void **state)
{
    (void)state;
    char data[1];
    body_case c = {"9223372036854775807", 0, 1024, 0, CCP_REQ_TOO_LARGE};
    ccp_request r;
    unit_io u;
    run_body_case(&c, &r, &u, data);
    assert_int_equal(u.reads, 0);
    assert_true(r.body.cap == 0);
    ccp_request_free(&r);
}

static void test_body_at_limit_by_length_is_ok(void **state)
{
    (void)state;
    char data[2048];
    body_case c = {"2048", 2048, 2048, 100, CCP_REQ_OK};
    ccp_request r;
    unit_io u;
    run_body_case(&c, &r, &u, data);
    assert_int_equal(r.body.len, 2048);
    ccp_request_free(&r);
}

static void test_body_too_large_without_length_stops_early(void **state)
{
    (void)state;
    static char data[100000];
    body_case c = {NULL, sizeof data, 1000, 0, CCP_REQ_TOO_LARGE};
    ccp_request r;
    unit_io u;
    run_body_case(&c, &r, &u, data);
    /* It stops once the limit is passed, not at the end of the input. */
    assert_true(u.in_pos <= 1001);
    assert_true(r.body.len <= 1001);
    ccp_request_free(&r);
}

static void test_body_without_length_up_to_limit_is_ok(void **state)
{
    (void)state;
    char data[1000];
    body_case c = {NULL, 1000, 1000, 33, CCP_REQ_OK};
    ccp_request r;
    unit_io u;
    run_body_case(&c, &r, &u, data);
    assert_int_equal(r.body.len, 1000);
    assert_memory_equal(r.body.data, data, 1000);
    ccp_request_free(&r);
}

static void test_body_short_of_content_length(void **state)
{
    (void)state;
    char data[6];
    body_case c = {"10", 6, 1000, 4, CCP_REQ_SHORT_BODY};
    ccp_request r;
    unit_io u;
    run_body_case(&c, &r, &u, data);
    assert_int_equal(r.body.len, 6);
    ccp_request_free(&r);
}

static void test_body_read_error_is_short(void **state)
{
    (void)state;
    char data[4];
    char *envp[] = {"REQUEST_URI=/", "CONTENT_LENGTH=10", NULL};
    ccp_request r;
    unit_io u;
    memcpy(data, "abcd", 4);
    assert_int_equal(init(&r, &u, envp, ""), CCP_REQ_OK);
    unit_io_input(&u, data, 4, 0);
    u.read_error = 1;
    assert_int_equal(ccp_request_read_body(&r, 1000), CCP_REQ_SHORT_BODY);
    ccp_request_free(&r);
}

static void test_body_zero_length_reads_nothing(void **state)
{
    (void)state;
    char data[10];
    body_case c = {"0", 10, 1000, 0, CCP_REQ_OK};
    ccp_request r;
    unit_io u;
    run_body_case(&c, &r, &u, data);
    assert_int_equal(r.body.len, 0);
    assert_int_equal(u.in_pos, 0);
    /* The body is "" (buf.h: cstr of an empty buffer). Only byte 0 is read,
     * which lies inside whatever was allocated. */
    char first = ccp_buf_cstr(&r.body)[0];
    ccp_request_free(&r);
    assert_int_equal(first, '\0');
}

static void test_drain_consumes_the_rest(void **state)
{
    (void)state;
    static char data[40000];
    char *envp[] = {"REQUEST_URI=/", NULL};
    ccp_request r;
    unit_io u;
    assert_int_equal(init(&r, &u, envp, ""), CCP_REQ_OK);
    unit_io_input(&u, data, sizeof data, 1000);
    ccp_request_drain(&r);
    assert_int_equal(u.in_pos, sizeof data);
    ccp_request_free(&r);
}

/* ---- header lists ---------------------------------------------------------------- */

static void assert_headers(const ccp_headers *h, const char *const *nv, size_t n)
{
    assert_int_equal(h->count, n);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(h->items[i].name, nv[2 * i]);
        assert_string_equal(h->items[i].value, nv[2 * i + 1]);
    }
}

static void test_headers_set_keeps_first_position_and_drops_duplicates(void **state)
{
    (void)state;
    ccp_headers h = {0};
    ccp_headers_add(&h, "a", "1");
    ccp_headers_add(&h, "B", "2");
    ccp_headers_add(&h, "A", "3");
    ccp_headers_add(&h, "c", "4");
    ccp_headers_add(&h, "a", "5");
    ccp_headers_set(&h, "a", "x");
    static const char *const want[] = {"a", "x", "B", "2", "c", "4"};
    assert_headers(&h, want, 3);
    ccp_headers_free(&h);
    assert_int_equal(h.count, 0);
    assert_null(h.items);
}

static void test_headers_set_adjacent_duplicates(void **state)
{
    (void)state;
    ccp_headers h = {0};
    ccp_headers_add(&h, "x", "1");
    ccp_headers_add(&h, "X", "2");
    ccp_headers_add(&h, "x", "3");
    ccp_headers_add(&h, "y", "4");
    ccp_headers_set(&h, "X", "z");
    static const char *const want[] = {"x", "z", "y", "4"};
    assert_headers(&h, want, 2);
    ccp_headers_free(&h);
}

static void test_headers_set_appends_when_absent(void **state)
{
    (void)state;
    ccp_headers h = {0};
    ccp_headers_add(&h, "a", "1");
    ccp_headers_set(&h, "b", "2");
    static const char *const want[] = {"a", "1", "b", "2"};
    assert_headers(&h, want, 2);
    ccp_headers_free(&h);
}

static void test_headers_remove_and_get(void **state)
{
    (void)state;
    ccp_headers h = {0};
    assert_null(ccp_headers_get(&h, "a"));
    ccp_headers_remove(&h, "a"); /* empty list is fine */
    ccp_headers_add(&h, "a", "1");
    ccp_headers_add(&h, "b", "2");
    ccp_headers_add(&h, "A", "3");
    assert_string_equal(ccp_headers_get(&h, "A"), "1"); /* first wins */
    ccp_headers_remove(&h, "a");
    static const char *const want[] = {"b", "2"};
    assert_headers(&h, want, 1);
    ccp_headers_free(&h);
}

/* ---- response writer --------------------------------------------------------------- */

static void test_response_begin_then_write_exact_bytes(void **state)
{
    (void)state;
    unit_io u;
    unit_io_init(&u, NULL);
    ccp_response res;
    ccp_response_init(&res, &u.io);
    ccp_headers h = {0};
    ccp_headers_add(&h, "Content-Type", "text/event-stream");
    ccp_headers_add(&h, "Cache-Control", "no-cache");
    assert_int_equal(ccp_response_begin(&res, 200, &h), 0);
    assert_int_equal(u.flushes, 1);
    assert_int_equal(ccp_response_write(&res, "data: 1\n\n", 9), 0);
    assert_int_equal(u.flushes, 2); /* every write is flushed */
    assert_string_equal(u.out.data, "Status: 200 OK\r\n"
                                    "Content-Type: text/event-stream\r\n"
                                    "Cache-Control: no-cache\r\n"
                                    "\r\n"
                                    "data: 1\n\n");
    assert_true(res.headers_sent);
    assert_int_equal(res.status, 200);
    assert_int_equal(res.bytes_out, 9);
    assert_false(res.client_gone);
    ccp_headers_free(&h);
    unit_io_free(&u);
}

static void test_response_send_exact_bytes_with_extra(void **state)
{
    (void)state;
    unit_io u;
    unit_io_init(&u, NULL);
    ccp_response res;
    ccp_response_init(&res, &u.io);
    ccp_headers extra = {0};
    ccp_headers_add(&extra, "Vary", "Origin");
    res.extra = &extra;
    ccp_headers h = {0};
    ccp_headers_add(&h, "request-id", "req_1");
    assert_int_equal(ccp_response_send(&res, 200, "application/json", "{\"ok\":1}", 8, &h), 0);
    assert_string_equal(u.out.data, "Status: 200 OK\r\n"
                                    "Content-Type: application/json\r\n"
                                    "Content-Length: 8\r\n"
                                    "request-id: req_1\r\n"
                                    "Vary: Origin\r\n"
                                    "\r\n"
                                    "{\"ok\":1}");
    assert_int_equal(res.bytes_out, 8);
    /* A second complete response on the same exchange is refused. */
    assert_int_equal(ccp_response_send(&res, 500, "text/plain", "x", 1, NULL), -1);
    assert_int_equal(u.out.len, strlen(u.out.data));
    assert_null(strstr(u.out.data, "500"));
    ccp_headers_free(&h);
    ccp_headers_free(&extra);
    unit_io_free(&u);
}

static void test_response_send_empty_body(void **state)
{
    (void)state;
    unit_io u;
    unit_io_init(&u, NULL);
    ccp_response res;
    ccp_response_init(&res, &u.io);
    assert_int_equal(ccp_response_send(&res, 204, NULL, NULL, 0, NULL), 0);
    assert_string_equal(u.out.data, "Status: 204 No Content\r\nContent-Length: 0\r\n\r\n");
    unit_io_free(&u);
}

static void test_response_begin_twice_sends_headers_once(void **state)
{
    (void)state;
    unit_io u;
    unit_io_init(&u, NULL);
    ccp_response res;
    ccp_response_init(&res, &u.io);
    assert_int_equal(ccp_response_begin(&res, 200, NULL), 0);
    assert_int_equal(ccp_response_begin(&res, 500, NULL), 0);
    assert_string_equal(u.out.data, "Status: 200 OK\r\n\r\n");
    assert_int_equal(res.status, 200);
    unit_io_free(&u);
}

static void test_status_lines(void **state)
{
    (void)state;
    static const struct {
        int status;
        const char *line;
    } cases[] = {
        {200, "Status: 200 OK\r\n\r\n"},
        {400, "Status: 400 Bad Request\r\n\r\n"},
        {401, "Status: 401 Unauthorized\r\n\r\n"},
        {404, "Status: 404 Not Found\r\n\r\n"},
        {413, "Status: 413 Payload Too Large\r\n\r\n"},
        {426, "Status: 426 Upgrade Required\r\n\r\n"},
        {429, "Status: 429 Too Many Requests\r\n\r\n"},
        {502, "Status: 502 Bad Gateway\r\n\r\n"},
        {529, "Status: 529 Overloaded\r\n\r\n"},
        {418, "Status: 418 Client Error\r\n\r\n"},
        {599, "Status: 599 Error\r\n\r\n"},
    };
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        unit_io u;
        unit_io_init(&u, NULL);
        ccp_response res;
        ccp_response_init(&res, &u.io);
        assert_int_equal(ccp_response_begin(&res, cases[i].status, NULL), 0);
        assert_string_equal(u.out.data, cases[i].line);
        unit_io_free(&u);
    }
}

static void test_failing_write_marks_client_gone(void **state)
{
    (void)state;
    unit_io u;
    unit_io_init(&u, NULL);
    u.fail_write_at = 2; /* headers go out, the first body write fails */
    ccp_response res;
    ccp_response_init(&res, &u.io);
    assert_int_equal(ccp_response_begin(&res, 200, NULL), 0);
    assert_int_equal(ccp_response_write(&res, "abc", 3), -1);
    assert_true(res.client_gone);
    assert_true(ccp_response_client_gone(&res));
    int writes = u.writes, flushes = u.flushes;
    assert_int_equal(ccp_response_write(&res, "def", 3), -1);
    assert_int_equal(u.writes, writes);   /* the io is not touched again */
    assert_int_equal(u.flushes, flushes);
    assert_int_equal(res.bytes_out, 0);
    unit_io_free(&u);
}

static void test_failing_header_write_fails_begin_and_later_writes(void **state)
{
    (void)state;
    unit_io u;
    unit_io_init(&u, NULL);
    u.fail_write_at = 1;
    ccp_response res;
    ccp_response_init(&res, &u.io);
    assert_int_equal(ccp_response_begin(&res, 200, NULL), -1);
    assert_true(res.client_gone);
    assert_int_equal(u.flushes, 0);
    assert_int_equal(ccp_response_write(&res, "x", 1), -1);
    assert_int_equal(ccp_response_begin(&res, 200, NULL), -1);
    assert_int_equal(u.writes, 1);
    unit_io_free(&u);
}

static void test_failing_flush_marks_client_gone(void **state)
{
    (void)state;
    unit_io u;
    unit_io_init(&u, NULL);
    u.fail_flush_at = 2;
    ccp_response res;
    ccp_response_init(&res, &u.io);
    assert_int_equal(ccp_response_send(&res, 200, "text/plain", "hi", 2, NULL), -1);
    assert_true(res.client_gone);
    assert_int_equal(ccp_response_write(&res, "x", 1), -1);
    unit_io_free(&u);
}

static void test_headers_with_crlf_are_never_emitted(void **state)
{
    (void)state;
    unit_io u;
    unit_io_init(&u, NULL);
    ccp_response res;
    ccp_response_init(&res, &u.io);
    ccp_headers extra = {0};
    ccp_headers_add(&extra, "Access-Control-Allow-Origin", "https://a\r\nSet-Cookie: extra=1");
    res.extra = &extra;
    ccp_headers h = {0};
    ccp_headers_add(&h, "X-Ok", "fine");
    ccp_headers_add(&h, "X-Evil", "a\r\nSet-Cookie: s=1");
    ccp_headers_add(&h, "X-Lf", "a\nb");
    ccp_headers_add(&h, "X-Cr", "a\rb");
    ccp_headers_add(&h, "X-Name\r\nSet-Cookie", "n=1");
    assert_int_equal(ccp_response_begin(&res, 200, &h), 0);
    assert_string_equal(u.out.data, "Status: 200 OK\r\nX-Ok: fine\r\n\r\n");
    ccp_headers_free(&h);
    ccp_headers_free(&extra);
    unit_io_free(&u);
}

static void test_client_gone_unknown_without_fd(void **state)
{
    (void)state;
    unit_io u;
    unit_io_init(&u, NULL);
    ccp_response res;
    ccp_response_init(&res, &u.io);
    assert_false(ccp_response_client_gone(&res));
    unit_io_free(&u);
}

/* ---- abort: a broken end the web server cannot take for a clean one ------------- */

/* What the web server's side of the connection receives from here on, up to EOF. */
static size_t read_to_eof(int fd, unsigned char *buf, size_t cap)
{
    size_t got = 0;
    for (;;) {
        ssize_t n = read(fd, buf + got, cap - got);
        if (n <= 0) break;
        got += (size_t)n;
        if (got == cap) break;
    }
    return got;
}

static void test_abort_sends_unknown_record_then_shuts_the_connection(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    unit_io u;
    unit_io_init(&u, NULL);
    u.io.hangup_fd = sv[0];
    u.io.hangup_fd_readable = true;
    ccp_response res;
    ccp_response_init(&res, &u.io);
    assert_int_equal(ccp_response_begin(&res, 200, NULL), 0);
    assert_int_equal(ccp_response_write(&res, "{\"half\":", 8), 0);
    size_t before = u.out.len;

    ccp_response_abort(&res);
    /* FCGI_UNKNOWN_TYPE (version 1, type 11, request id 0, 8 bytes of body),
     * then EOF: no FCGI_END_REQUEST can follow. */
    static const unsigned char want[16] = {1, 11, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    unsigned char got[64];
    size_t n = read_to_eof(sv[1], got, sizeof got);
    assert_int_equal(n, sizeof want);
    assert_memory_equal(got, want, sizeof want);
    assert_true(res.client_gone);
    assert_int_equal(ccp_response_write(&res, "more", 4), -1);
    assert_int_equal(u.out.len, before);
    /* Our side is shut for writing too: libfcgi's END_REQUEST would fail. */
    assert_true(send(sv[0], "x", 1, MSG_NOSIGNAL) < 0);
    close(sv[0]);
    close(sv[1]);
    unit_io_free(&u);
}

static void test_abort_over_a_cgi_pipe_writes_nothing(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    unit_io u;
    unit_io_init(&u, NULL);
    u.io.hangup_fd = p[1];
    u.io.hangup_fd_readable = false; /* a CGI stdout pipe */
    ccp_response res;
    ccp_response_init(&res, &u.io);
    assert_int_equal(ccp_response_begin(&res, 200, NULL), 0);
    ccp_response_abort(&res);
    assert_true(res.client_gone);
    assert_int_equal(ccp_response_write(&res, "more", 4), -1);
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    char c;
    assert_true(read(p[0], &c, 1) < 0 && errno == EAGAIN);
    close(p[0]);
    close(p[1]);
    unit_io_free(&u);
}

static void test_abort_without_fd_only_ends_the_response(void **state)
{
    (void)state;
    unit_io u;
    unit_io_init(&u, NULL);
    ccp_response res;
    ccp_response_init(&res, &u.io);
    ccp_response_abort(&res);
    assert_true(res.client_gone);
    assert_int_equal(ccp_response_begin(&res, 200, NULL), -1);
    assert_int_equal(u.writes, 0);
    unit_io_free(&u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_name_table),
        cmocka_unit_test(test_header_name_uses_given_length_and_resets_out),
        cmocka_unit_test(test_http_param_exact_name),
        cmocka_unit_test(test_header_value_ok),
        cmocka_unit_test(test_request_uri_with_query),
        cmocka_unit_test(test_query_string_param_wins_over_uri),
        cmocka_unit_test(test_defaults_without_method_or_uri),
        cmocka_unit_test(test_path_table),
        cmocka_unit_test(test_crlf_in_header_value_sets_bad_header),
        cmocka_unit_test(test_line_break_in_any_forwarded_part_is_named),
        cmocka_unit_test(test_http_proxy_header_is_ignored),
        cmocka_unit_test(test_websocket_handshake_table),
        cmocka_unit_test(test_header_list_has_token),
        cmocka_unit_test(test_content_length_table),
        cmocka_unit_test(test_body_exact_length_in_small_pieces),
        cmocka_unit_test(test_body_reads_no_more_than_content_length),
        cmocka_unit_test(test_body_too_large_by_length_reads_nothing),
        cmocka_unit_test(test_body_huge_length_refused_without_allocating),
        cmocka_unit_test(test_body_at_limit_by_length_is_ok),
        cmocka_unit_test(test_body_too_large_without_length_stops_early),
        cmocka_unit_test(test_body_without_length_up_to_limit_is_ok),
        cmocka_unit_test(test_body_short_of_content_length),
        cmocka_unit_test(test_body_read_error_is_short),
        cmocka_unit_test(test_body_zero_length_reads_nothing),
        cmocka_unit_test(test_drain_consumes_the_rest),
        cmocka_unit_test(test_headers_set_keeps_first_position_and_drops_duplicates),
        cmocka_unit_test(test_headers_set_adjacent_duplicates),
        cmocka_unit_test(test_headers_set_appends_when_absent),
        cmocka_unit_test(test_headers_remove_and_get),
        cmocka_unit_test(test_response_begin_then_write_exact_bytes),
        cmocka_unit_test(test_response_send_exact_bytes_with_extra),
        cmocka_unit_test(test_response_send_empty_body),
        cmocka_unit_test(test_response_begin_twice_sends_headers_once),
        cmocka_unit_test(test_status_lines),
        cmocka_unit_test(test_failing_write_marks_client_gone),
        cmocka_unit_test(test_failing_header_write_fails_begin_and_later_writes),
        cmocka_unit_test(test_failing_flush_marks_client_gone),
        cmocka_unit_test(test_headers_with_crlf_are_never_emitted),
        cmocka_unit_test(test_client_gone_unknown_without_fd),
        cmocka_unit_test(test_abort_sends_unknown_record_then_shuts_the_connection),
        cmocka_unit_test(test_abort_over_a_cgi_pipe_writes_nothing),
        cmocka_unit_test(test_abort_without_fd_only_ends_the_response),
        cmocka_unit_test(test_header_count_limit),
        cmocka_unit_test(test_header_one_size_limit),
        cmocka_unit_test(test_header_total_limit),
        cmocka_unit_test(test_params_over_is_headers_too_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
