/* relay: route pattern matching (exact paths, trailing slash, one-segment
 * ids after a trailing slash-star); what route_request answers a WebSocket
 * handshake, driven through ccp_relay_serve on a fake transport. */
#include "unit.h"

#include <json-c/json.h>

#include "../../common/log.h"
#include "../../common/relay.h"

typedef struct route_case {
    const char *pattern;
    const char *path;
    bool match;
} route_case;

static void run_cases(const route_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        bool got = ccp_route_matches(cases[i].pattern, cases[i].path);
        if (got != cases[i].match)
            print_error("pattern %s path %s: got %d want %d\n", cases[i].pattern, cases[i].path, got, cases[i].match);
        assert_int_equal(got, cases[i].match);
    }
}

static void test_id_pattern_matches_one_segment(void **state)
{
    (void)state;
    static const route_case cases[] = {
        {"/v1/models/*", "/v1/models/claude-x", true},
        {"/v1/models/*", "/v1/models/claude-sonnet-4-5-20250929", true},
        {"/v1/models/*", "/v1/models/a.b_c~d:e@f%20+g", true},
        {"/v1/models/*", "/v1/models/x", true},
        {"/v1/models/*", "/v1/models/...", true},
        {"/v1/models/*", "/v1/models/", false},
        {"/v1/models/*", "/v1/models", false},
        {"/v1/models/*", "/v1/models/a/b", false},
        {"/v1/models/*", "/v1/models/a/", false},
        {"/v1/models/*", "/v1/models/..", false},
        {"/v1/models/*", "/v1/models/.", false},
        {"/v1/models/*", "/v1/models/a b", false},
        {"/v1/models/*", "/v1/models/a?b", false},
        {"/v1/models/*", "/v1/models/a#b", false},
        {"/v1/models/*", "/v1/models/a\\b", false},
        {"/v1/models/*", "/v1/modelsX/a", false},
        {"/v1/models/*", "/v2/models/a", false},
        {"/v1/models/*", "", false},
    };
    run_cases(cases, UNIT_COUNT(cases));
}

static void test_exact_pattern_with_and_without_trailing_slash(void **state)
{
    (void)state;
    static const route_case cases[] = {
        {"/v1/messages", "/v1/messages", true},
        {"/v1/messages", "/v1/messages/", true},
        {"/v1/messages", "/v1/messages//", false},
        {"/v1/messages", "/v1/messages/count_tokens", false},
        {"/v1/messages", "/v1/message", false},
        {"/v1/messages", "/v1/messagesX", false},
        {"/v1/messages", "/V1/messages", false},
        {"/v1/messages", "/v1/messages?x", false},
        {"/v1/messages/count_tokens", "/v1/messages/count_tokens", true},
        {"/v1/messages/count_tokens", "/v1/messages/count_tokens/", true},
        {"/v1/messages/count_tokens", "/v1/messages", false},
        {"/health", "/health", true},
        {"/health", "/health/", true},
        {"/health", "/", false},
        {"/", "/", true},
        {"/", "", false},
        {"/", "/x", false},
    };
    run_cases(cases, UNIT_COUNT(cases));
}

/* ---- a WebSocket handshake on a relay path ------------------------------------- */

/* The shape of the services' tables: relay routes and a local one. */
static const ccp_route routes[] = {
    {"POST", "/v1/responses", CCP_ROUTE_RELAY, CCP_BODY_JSON_OBJECT | CCP_BODY_MODEL | CCP_ADAPT, NULL},
    {"GET", "/v1/models", CCP_ROUTE_RELAY, CCP_BODY_NONE, NULL},
    {"GET", "/v1/models/*", CCP_ROUTE_RELAY, CCP_BODY_NONE, NULL},
    {"GET", "/health", CCP_ROUTE_HEALTH, CCP_BODY_NONE, NULL},
};

typedef struct served {
    ccp_buf out; /* what the web server got: CGI-style status, headers, body */
    ccp_buf log; /* the request's log line */
} served;

/* One request (CGI parameters, no body) through ccp_relay_serve. The upstream
 * handle is NULL: a test that reached the upstream would crash. */
static void serve(const ccp_dialect *d, char **envp, served *got)
{
    ccp_service service = {
        .name = "test-service", .program = "ccproxy-test", .adapter_set = "codex", .dialect = d,
        .routes = routes, .route_count = UNIT_COUNT(routes),
    };
    ccp_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.base_path = "";
    cfg.log_level = CCP_LOG_DEBUG;
    unit_config_limits(&cfg);
    ccp_pool *pool = NULL;
    ccp_buf perr = {0};
    assert_int_equal(ccp_pool_load(&pool, "codex", &cfg, &perr), CCP_OK);
    ccp_buf_free(&perr);
    ccp_runtime rt = {.service = &service, .cfg = &cfg, .adapters = NULL, .pool = pool};
    ccp_log_init(&cfg, service.name);
    unit_io u;
    unit_io_init(&u, envp);
    unit_stderr err;
    memset(got, 0, sizeof *got);
    unit_stderr_begin(&err);
    ccp_relay_serve(&rt, NULL, &u.io);
    unit_stderr_end(&err, &got->log);
    ccp_buf_append(&got->out, u.out.data, u.out.len);
    unit_io_free(&u);
    ccp_pool_free(pool);
}

static void served_free(served *got)
{
    ccp_buf_free(&got->out);
    ccp_buf_free(&got->log);
}

static json_object *body_json(const served *got)
{
    const char *b = strstr(ccp_buf_cstr(&got->out), "\r\n\r\n");
    assert_non_null(b);
    json_object *o = json_tokener_parse(b + 4);
    assert_non_null(o);
    return o;
}

static const char *member(json_object *o, const char *a, const char *b)
{
    json_object *v = NULL;
    assert_true(json_object_object_get_ex(o, a, &v));
    if (b) assert_true(json_object_object_get_ex(v, b, &v));
    return json_object_is_type(v, json_type_null) ? NULL : json_object_get_string(v);
}

/* The captured Codex CLI handshake (tests/fixtures/codex_cli_builtin_websocket_upgrade.json),
 * as nginx passes it: HTTP_UPGRADE and HTTP_CONNECTION included. */
#define CODEX_HANDSHAKE(uri)                                                                                      \
    "REQUEST_METHOD=GET", "REQUEST_URI=" uri, "HTTP_CONNECTION=Upgrade", "HTTP_UPGRADE=websocket",               \
        "HTTP_SEC_WEBSOCKET_VERSION=13", "HTTP_SEC_WEBSOCKET_KEY=KNwr45FLp3yTDrCvdBpw4A==",                        \
        "HTTP_AUTHORIZATION=Bearer sk-test-capture", "HTTP_ORIGINATOR=codex_exec",                                 \
        "HTTP_OPENAI_BETA=responses_websockets=2026-02-06"

static void test_websocket_on_responses_route_is_426_openai(void **state)
{
    (void)state;
    char *envp[] = {CODEX_HANDSHAKE("/v1/responses"), NULL};
    served got;
    serve(&ccp_dialect_openai, envp, &got);
    const char *out = ccp_buf_cstr(&got.out);
    assert_true(strncmp(out, "Status: 426 Upgrade Required\r\n", 30) == 0);
    assert_non_null(strstr(out, "Content-Type: application/json\r\n"));
    /* Upgrade and Connection are the web server's: nginx and lighttpd each
     * keep only one of the pair, so the responder sends neither. */
    assert_null(strstr(out, "\r\nUpgrade:"));
    assert_null(strstr(out, "\r\nConnection:"));
    json_object *o = body_json(&got);
    assert_int_equal(json_object_object_length(o), 1);
    json_object *e;
    assert_true(json_object_object_get_ex(o, "error", &e));
    assert_int_equal(json_object_object_length(e), 4);
    assert_string_equal(member(o, "error", "type"), "invalid_request_error");
    assert_string_equal(member(o, "error", "code"), "websocket_not_supported");
    assert_null(member(o, "error", "param"));
    const char *msg = member(o, "error", "message");
    assert_non_null(strstr(msg, "HTTPS streaming"));
    assert_non_null(strstr(msg, "not WebSockets"));
    assert_string_equal(msg, ccp_dialect_openai.websocket_refusal);
    json_object_put(o);
    /* The log line: status 426, at info level (routine for Codex), saying why. */
    json_object *line = json_tokener_parse(ccp_buf_cstr(&got.log));
    assert_non_null(line);
    assert_string_equal(member(line, "status", NULL), "426");
    assert_string_equal(member(line, "level", NULL), "info");
    assert_string_equal(member(line, "method", NULL), "GET");
    assert_string_equal(member(line, "path", NULL), "/v1/responses");
    assert_non_null(strstr(member(line, "error", NULL), "WebSocket upgrade refused"));
    assert_null(strstr(ccp_buf_cstr(&got.log), "sk-test-capture"));
    json_object_put(line);
    served_free(&got);
}

static void test_websocket_on_messages_dialect_is_426_anthropic(void **state)
{
    (void)state;
    char *envp[] = {CODEX_HANDSHAKE("/v1/responses"), NULL};
    served got;
    serve(&ccp_dialect_anthropic, envp, &got);
    assert_true(strncmp(ccp_buf_cstr(&got.out), "Status: 426 ", 12) == 0);
    json_object *o = body_json(&got);
    assert_string_equal(member(o, "type", NULL), "error");
    assert_string_equal(member(o, "error", "type"), "invalid_request_error");
    assert_string_equal(member(o, "error", "message"), ccp_dialect_anthropic.websocket_refusal);
    json_object_put(o);
    served_free(&got);
}

/* Which requests count: any method on any relay path, a handshake whose
 * Upgrade header a CGI host dropped, a trailing slash; not a local route,
 * an unknown path, a plain GET, or another Upgrade (h2c). */
static void test_websocket_decision_table(void **state)
{
    (void)state;
    static const struct {
        const char *uri;
        const char *method;
        const char *upgrade; /* NULL: absent */
        const char *key;     /* HTTP_SEC_WEBSOCKET_KEY; NULL: absent */
        int status;
    } cases[] = {
        {"/v1/responses", "GET", "websocket", "k==", 426},
        {"/v1/responses/", "GET", "websocket", "k==", 426},
        {"/v1/responses", "POST", "websocket", NULL, 426},
        {"/v1/responses", "GET", NULL, "k==", 426}, /* lighttpd mod_cgi drops HTTP_UPGRADE */
        {"/v1/responses?x=1", "GET", "WebSocket", NULL, 426},
        {"/v1/models", "GET", "websocket", NULL, 426},
        {"/v1/models/gpt-5", "GET", "websocket", NULL, 426},
        {"/v1/responses", "GET", NULL, NULL, 405},
        {"/v1/responses", "GET", "h2c", NULL, 405},
        {"/health", "GET", "websocket", "k==", 200},
        {"/v1/nope", "GET", "websocket", "k==", 404},
    };
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        char m[64], uri[128], up[64], key[64];
        snprintf(m, sizeof m, "REQUEST_METHOD=%s", cases[i].method);
        snprintf(uri, sizeof uri, "REQUEST_URI=%s", cases[i].uri);
        char *envp[5] = {m, uri};
        size_t n = 2;
        if (cases[i].upgrade) {
            snprintf(up, sizeof up, "HTTP_UPGRADE=%s", cases[i].upgrade);
            envp[n++] = up;
        }
        if (cases[i].key) {
            snprintf(key, sizeof key, "HTTP_SEC_WEBSOCKET_KEY=%s", cases[i].key);
            envp[n++] = key;
        }
        served got;
        serve(&ccp_dialect_openai, envp, &got);
        char want[32];
        snprintf(want, sizeof want, "Status: %d ", cases[i].status);
        if (strncmp(ccp_buf_cstr(&got.out), want, strlen(want)) != 0)
            print_error("%s %s (upgrade %s, key %s): got %.40s, want %d\n", cases[i].method, cases[i].uri,
                        cases[i].upgrade ? cases[i].upgrade : "-", cases[i].key ? cases[i].key : "-",
                        ccp_buf_cstr(&got.out), cases[i].status);
        assert_true(strncmp(ccp_buf_cstr(&got.out), want, strlen(want)) == 0);
        served_free(&got);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_pattern_matches_one_segment),
        cmocka_unit_test(test_exact_pattern_with_and_without_trailing_slash),
        cmocka_unit_test(test_websocket_on_responses_route_is_426_openai),
        cmocka_unit_test(test_websocket_on_messages_dialect_is_426_anthropic),
        cmocka_unit_test(test_websocket_decision_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
