/* config: defaults, every validation error, ACCESS_KEYS, BASE_PATH, CORS,
 * the base URL, the .env file (parser and precedence), secret masking, and
 * the variable table: README.md's table names the same variables (the path
 * comes from the Makefile as CCP_README_PATH), --check-config describes each,
 * --print-config-env prints each and round-trips.
 *
 * The group runs in a fresh empty directory so a stray ./.env cannot leak in;
 * every test starts from an environment with all config variables unset. */
#include "unit.h"

#include "../../common/sse.h"

#include "../../common/relay.h"

#include <unistd.h>

#include <json-c/json.h>

#include "../../common/config.h"
#include "../../common/dialect.h"

#define NAMES (&ccp_service_claude.config_names)

static char old_cwd[4096];
static char tmp_dir[64];

static int group_setup(void **state)
{
    (void)state;
    if (!getcwd(old_cwd, sizeof old_cwd)) return -1;
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/ccp-unit-cfg-XXXXXX");
    if (!mkdtemp(tmp_dir) || chdir(tmp_dir) != 0) return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    unit_env_clear();
    if (chdir(old_cwd) != 0) return -1;
    return rmdir(tmp_dir);
}

static int test_setup(void **state)
{
    (void)state;
    unit_env_clear();
    return 0;
}

/* Sets each "NAME=value" (NULL-terminated list). */
static void env_set(const char *const *pairs)
{
    for (; pairs && *pairs; pairs++) {
        const char *eq = strchr(*pairs, '=');
        assert_non_null(eq);
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)(eq - *pairs), *pairs);
        assert_int_equal(setenv(name, eq + 1, 1), 0);
    }
}

static size_t line_count(const ccp_buf *b)
{
    size_t n = 0;
    for (size_t i = 0; i < b->len; i++) n += b->data[i] == '\n';
    return n;
}

/* Loads with exactly these variables set; expects rc. */
static void load_expect(ccp_config *cfg, ccp_buf *err, const char *const *pairs, int rc)
{
    unit_env_clear();
    env_set(pairs);
    ccp_buf_reset(err);
    int got = ccp_config_load(cfg, NAMES, err);
    if (got != rc) print_error("config load returned %d, errors: %s\n", got, ccp_buf_cstr(err));
    assert_int_equal(got, rc);
}

/* ---- defaults ------------------------------------------------------------- */

static void test_defaults_with_empty_environment(void **state)
{
    (void)state;
    ccp_config cfg;
    ccp_buf err = {0};
    load_expect(&cfg, &err, NULL, CCP_OK);
    assert_int_equal(err.len, 0);
    assert_int_equal(cfg.environment, CCP_ENV_PRODUCTION);
    assert_string_equal(cfg.upstream_base_url, "https://api.anthropic.com");
    assert_null(cfg.server_api_key);
    assert_int_equal(cfg.access_count, 0);
    assert_int_equal(cfg.upstream_auth_style, CCP_AUTH_AUTO);
    assert_int_equal(cfg.log_level, CCP_LOG_INFO);
    assert_int_equal(cfg.log_format, CCP_LOG_JSON);
    assert_int_equal(cfg.log_body_max_bytes, 4096);
    assert_int_equal(cfg.http_timeout_ms, 600000);
    assert_int_equal(cfg.http_connect_timeout_ms, 10000);
    assert_int_equal(cfg.http_max_keepalive, 256);
    assert_int_equal(cfg.http_max_connections, 8192);
    assert_int_equal(cfg.http_keepalive_expiry_s, 30);
    /* The limits, as unit.h's unit_config_limits fills them for other tests. */
    ccp_config want;
    memset(&want, 0, sizeof want);
    unit_config_limits(&want);
    assert_int_equal(cfg.max_header_count, want.max_header_count);
    assert_int_equal(cfg.max_header_bytes, want.max_header_bytes);
    assert_int_equal(cfg.max_header_total_bytes, want.max_header_total_bytes);
    assert_int_equal(cfg.max_json_depth, want.max_json_depth);
    assert_int_equal(cfg.max_step_outputs, want.max_step_outputs);
    assert_int_equal(cfg.max_sse_event_bytes, want.max_sse_event_bytes);
    assert_int_equal(cfg.max_sse_event_bytes, CCP_SSE_DEFAULT_MAX_EVENT);
    assert_int_equal(cfg.max_aggregate_bytes, want.max_aggregate_bytes);
    assert_int_equal(cfg.max_hold_bytes, want.max_hold_bytes);
    assert_string_equal(cfg.service_host, "127.0.0.1");
    assert_int_equal(cfg.service_port, 8001);
    assert_int_equal(cfg.max_body_bytes, 32u << 20);
    assert_string_equal(cfg.base_path, "");
    assert_int_equal(cfg.cors_count, 0);
    assert_false(cfg.cors_any);
    assert_int_equal(cfg.max_streams, 8192); /* follows HTTP_MAX_CONNECTIONS */
    assert_int_equal(cfg.worker_threads, sysconf(_SC_NPROCESSORS_ONLN)); /* a loop per CPU */
    assert_int_equal(cfg.worker_stack_kb, 256);
    assert_int_equal(cfg.shutdown_grace_s, 30);
    assert_null(cfg.adapters_file);
    assert_null(cfg.session_secret);
    assert_null(cfg.env_file); /* no ./.env in the test directory */
    ccp_config_free(&cfg);
    ccp_buf_free(&err);
}

/* The seed's HTTP_MAX_CONNECTIONS (transfers at once) is MAX_STREAMS'
 * default; MAX_STREAMS itself wins. Threads no longer follow either. */
static void test_max_streams_default_follows_max_connections(void **state)
{
    (void)state;
    ccp_config cfg;
    ccp_buf err = {0};
    const char *const env[] = {"HTTP_MAX_CONNECTIONS=7", NULL};
    load_expect(&cfg, &err, env, CCP_OK);
    assert_int_equal(cfg.max_streams, 7);
    assert_int_equal(cfg.worker_threads, sysconf(_SC_NPROCESSORS_ONLN));
    ccp_config_free(&cfg);
    const char *const both[] = {"HTTP_MAX_CONNECTIONS=7", "MAX_STREAMS=20000", NULL};
    load_expect(&cfg, &err, both, CCP_OK);
    assert_int_equal(cfg.max_streams, 20000);
    ccp_config_free(&cfg);
    ccp_buf_free(&err);
}

/* MAX_STREAMS allows 1..1000000, and so does its default. */
static void test_max_streams_default_stays_within_its_range(void **state)
{
    (void)state;
    ccp_config cfg;
    ccp_buf err = {0};
    const char *const env[] = {"HTTP_MAX_CONNECTIONS=1000000", NULL};
    load_expect(&cfg, &err, env, CCP_OK);
    assert_int_equal(cfg.http_max_connections, 1000000);
    assert_int_equal(cfg.max_streams, 1000000);
    ccp_config_free(&cfg);
    ccp_buf_free(&err);
}

static void test_valid_values_are_taken(void **state)
{
    (void)state;
    ccp_config cfg;
    ccp_buf err = {0};
    const char *const env[] = {
        "ENVIRONMENT=TEST",         "LOG_LEVEL=warn",           "LOG_FORMAT=console",
        "LOG_BODY_MAX_BYTES=0",     "HTTP_TIMEOUT=1.5",         "HTTP_CONNECT_TIMEOUT=0.1",
        "HTTP_MAX_KEEPALIVE=0",     "HTTP_MAX_CONNECTIONS=10000", "HTTP_KEEPALIVE_EXPIRY=1.2",
        "CLAUDE_SERVICE_HOST=0.0.0.0", "CLAUDE_SERVICE_PORT=65535", "MAX_BODY_BYTES=1024",
        "WORKER_THREADS=4096",      "WORKER_STACK_KB=64",       "SHUTDOWN_GRACE=0",
        "UPSTREAM_AUTH_STYLE=Bearer", "ADAPTERS_FILE=/etc/a.json", "SESSION_SECRET=s",
        "MAX_HEADER_COUNT=8",       "MAX_HEADER_BYTES=16777216", "MAX_HEADER_TOTAL_BYTES=1024",
        "MAX_JSON_DEPTH=512",       "MAX_STEP_OUTPUTS=100",     "MAX_SSE_EVENT_BYTES=4096",
        "MAX_AGGREGATE_BYTES=17179869184", "MAX_HOLD_BYTES=0",
        NULL,
    };
    load_expect(&cfg, &err, env, CCP_OK);
    assert_int_equal(cfg.max_header_count, 8);
    assert_int_equal(cfg.max_header_bytes, 16777216);
    assert_int_equal(cfg.max_header_total_bytes, 1024);
    assert_int_equal(cfg.max_json_depth, 512);
    assert_int_equal(cfg.max_step_outputs, 100);
    assert_int_equal(cfg.max_sse_event_bytes, 4096);
    assert_int_equal(cfg.max_aggregate_bytes, 17179869184ULL);
    assert_int_equal(cfg.max_hold_bytes, 0);
    assert_int_equal(cfg.environment, CCP_ENV_TEST);
    assert_int_equal(cfg.log_level, CCP_LOG_WARNING);
    assert_int_equal(cfg.log_format, CCP_LOG_CONSOLE);
    assert_int_equal(cfg.log_body_max_bytes, 0);
    assert_int_equal(cfg.http_timeout_ms, 1500);
    assert_int_equal(cfg.http_connect_timeout_ms, 100);
    assert_int_equal(cfg.http_max_keepalive, 0);
    assert_int_equal(cfg.http_max_connections, 10000);
    assert_int_equal(cfg.http_keepalive_expiry_s, 2); /* rounded up to whole seconds */
    assert_string_equal(cfg.service_host, "0.0.0.0");
    assert_int_equal(cfg.service_port, 65535);
    assert_int_equal(cfg.max_body_bytes, 1024);
    assert_int_equal(cfg.worker_threads, 4096);
    assert_int_equal(cfg.worker_stack_kb, 64);
    assert_int_equal(cfg.shutdown_grace_s, 0);
    assert_int_equal(cfg.upstream_auth_style, CCP_AUTH_BEARER);
    assert_string_equal(cfg.adapters_file, "/etc/a.json");
    assert_string_equal(cfg.session_secret, "s");
    ccp_config_free(&cfg);
    ccp_buf_free(&err);
}

static void test_log_level_aliases(void **state)
{
    (void)state;
    static const struct {
        const char *v;
        ccp_log_level want;
    } cases[] = {
        {"LOG_LEVEL=debug", CCP_LOG_DEBUG},    {"LOG_LEVEL=INFO", CCP_LOG_INFO},
        {"LOG_LEVEL=warning", CCP_LOG_WARNING}, {"LOG_LEVEL=WARN", CCP_LOG_WARNING},
        {"LOG_LEVEL=error", CCP_LOG_ERROR},    {"LOG_LEVEL=critical", CCP_LOG_ERROR},
    };
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        ccp_config cfg;
        ccp_buf err = {0};
        const char *const env[] = {cases[i].v, NULL};
        load_expect(&cfg, &err, env, CCP_OK);
        assert_int_equal(cfg.log_level, cases[i].want);
        ccp_config_free(&cfg);
        ccp_buf_free(&err);
    }
}

/* ---- one error line per bad value ------------------------------------------ */

static void test_each_bad_value_gives_one_line_naming_it(void **state)
{
    (void)state;
    static const char *const cases[] = {
        "LOG_BODY_MAX_BYTES=-1",     "LOG_BODY_MAX_BYTES=16777217", "LOG_BODY_MAX_BYTES=abc",
        "LOG_BODY_MAX_BYTES=12x",    "LOG_BODY_MAX_BYTES=1.5",
        "HTTP_TIMEOUT=0.05",         "HTTP_TIMEOUT=86401",          "HTTP_TIMEOUT=nan",
        "HTTP_TIMEOUT=inf",          "HTTP_TIMEOUT=ten",            "HTTP_TIMEOUT=5s",
        "HTTP_CONNECT_TIMEOUT=0",    "HTTP_CONNECT_TIMEOUT=601",    "HTTP_CONNECT_TIMEOUT=-1",
        "HTTP_MAX_KEEPALIVE=-1",     "HTTP_MAX_KEEPALIVE=10001",    "HTTP_MAX_KEEPALIVE=many",
        "HTTP_MAX_CONNECTIONS=0",    "HTTP_MAX_CONNECTIONS=1000001", "HTTP_MAX_CONNECTIONS=0x10",
        "MAX_STREAMS=0",             "MAX_STREAMS=1000001",         "MAX_STREAMS=lots",
        "MAX_HEADER_COUNT=7",        "MAX_HEADER_COUNT=100001",     "MAX_HEADER_BYTES=255",
        "MAX_HEADER_BYTES=16777217", "MAX_HEADER_TOTAL_BYTES=1023", "MAX_HEADER_TOTAL_BYTES=67108865",
        "MAX_JSON_DEPTH=1",          "MAX_JSON_DEPTH=513",          "MAX_STEP_OUTPUTS=99",
        "MAX_STEP_OUTPUTS=100000001", "MAX_SSE_EVENT_BYTES=4095",   "MAX_SSE_EVENT_BYTES=1073741825",
        "MAX_AGGREGATE_BYTES=4095",  "MAX_AGGREGATE_BYTES=17179869185", "MAX_HOLD_BYTES=-1",
        "MAX_HOLD_BYTES=1073741825", "MAX_JSON_DEPTH=deep",
        "HTTP_KEEPALIVE_EXPIRY=0.5", "HTTP_KEEPALIVE_EXPIRY=86401", "HTTP_KEEPALIVE_EXPIRY=x",
        "CLAUDE_SERVICE_PORT=0",     "CLAUDE_SERVICE_PORT=65536",   "CLAUDE_SERVICE_PORT=80a",
        "CLAUDE_SERVICE_PORT=99999999999999999999999",
        "MAX_BODY_BYTES=1023",       "MAX_BODY_BYTES=1073741825",   "MAX_BODY_BYTES=1MB",
        "WORKER_THREADS=0",          "WORKER_THREADS=4097",         "WORKER_THREADS=four",
        "WORKER_STACK_KB=63",        "WORKER_STACK_KB=65537",       "WORKER_STACK_KB=-64",
        "SHUTDOWN_GRACE=-1",         "SHUTDOWN_GRACE=86401",        "SHUTDOWN_GRACE=1e3",
        "ENVIRONMENT=staging",       "LOG_LEVEL=verbose",           "LOG_FORMAT=xml",
        "UPSTREAM_AUTH_STYLE=basic", "BASE_PATH=claude",            "BASE_PATH=/a b",
        "BASE_PATH=/a?b",            "ANTHROPIC_BASE_URL=ftp://h",  "ANTHROPIC_BASE_URL=api.anthropic.com",
        "ANTHROPIC_BASE_URL=https://", "ANTHROPIC_BASE_URL=https:///path",
        "ANTHROPIC_BASE_URL=https://h/p?x=1", "ANTHROPIC_BASE_URL=https://h/a b",
        "METRICS_ALLOW=10.0.0.0/33", "METRICS_ALLOW=localhost",     "METRICS_ALLOW=127.0.0.1,::1/200",
        "TRUST_REQUEST_ID=maybe",
    };
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        ccp_config cfg;
        ccp_buf err = {0};
        const char *const env[] = {cases[i], NULL};
        load_expect(&cfg, &err, env, CCP_ERR);
        if (line_count(&err) != 1 || !strstr(ccp_buf_cstr(&err), cases[i]))
            print_error("case %s gave: %s\n", cases[i], ccp_buf_cstr(&err));
        assert_int_equal(line_count(&err), 1);
        /* "NAME=value" appears verbatim in the line. */
        assert_non_null(strstr(ccp_buf_cstr(&err), cases[i]));
        ccp_config_free(&cfg);
        ccp_buf_free(&err);
    }
}

static void test_metrics_rows(void **state)
{
    (void)state;
    ccp_config cfg;
    ccp_buf err = {0};
    const char *const none[] = {NULL};
    load_expect(&cfg, &err, none, CCP_OK);
    /* Default: loopback only, no file named, ids not trusted. */
    assert_int_equal(cfg.metrics_allow.count, 2);
    assert_true(ccp_netlist_allows(&cfg.metrics_allow, "127.0.0.1"));
    assert_true(ccp_netlist_allows(&cfg.metrics_allow, "::1"));
    assert_false(ccp_netlist_allows(&cfg.metrics_allow, "10.0.0.5"));
    assert_null(cfg.metrics_file);
    assert_int_equal(cfg.trust_request_id, 0);
    ccp_config_free(&cfg);
    const char *const set[] = {"METRICS_ALLOW=10.0.0.0/8 fd00::/8", "METRICS_FILE=/tmp/x.metrics",
                               "TRUST_REQUEST_ID=1", NULL};
    load_expect(&cfg, &err, set, CCP_OK);
    assert_true(ccp_netlist_allows(&cfg.metrics_allow, "10.0.0.5"));
    assert_true(ccp_netlist_allows(&cfg.metrics_allow, "fd12::1"));
    assert_false(ccp_netlist_allows(&cfg.metrics_allow, "127.0.0.1"));
    assert_string_equal(cfg.metrics_file, "/tmp/x.metrics");
    assert_int_equal(cfg.trust_request_id, 1);
    ccp_config_free(&cfg);
    ccp_buf_free(&err);
}

static void test_several_bad_values_give_several_lines(void **state)
{
    (void)state;
    ccp_config cfg;
    ccp_buf err = {0};
    const char *const env[] = {"HTTP_TIMEOUT=0", "CLAUDE_SERVICE_PORT=0", "LOG_FORMAT=yaml", NULL};
    load_expect(&cfg, &err, env, CCP_ERR);
    assert_int_equal(line_count(&err), 3);
    assert_non_null(strstr(err.data, "HTTP_TIMEOUT=0"));
    assert_non_null(strstr(err.data, "CLAUDE_SERVICE_PORT=0"));
    assert_non_null(strstr(err.data, "LOG_FORMAT=yaml"));
    ccp_config_free(&cfg);
    ccp_buf_free(&err);
}

static void test_empty_value_counts_as_unset(void **state)
{
    (void)state;
    ccp_config cfg;
    ccp_buf err = {0};
    const char *const env[] = {"CLAUDE_SERVICE_PORT=", "ANTHROPIC_API_KEY=", NULL};
    load_expect(&cfg, &err, env, CCP_OK);
    assert_int_equal(cfg.service_port, 8001);
    assert_null(cfg.server_api_key);
    ccp_config_free(&cfg);
    ccp_buf_free(&err);
}

/* ---- keys ------------------------------------------------------------------ */

static void test_server_key_without_access_keys_is_refused(void **state)
{
    (void)state;
    ccp_config cfg;
    ccp_buf err = {0};
    const char *const env[] = {"ANTHROPIC_API_KEY=sk-ant-server-0123456789", NULL};
    load_expect(&cfg, &err, env, CCP_ERR);
    assert_int_equal(line_count(&err), 1);
    assert_non_null(strstr(err.data, "ANTHROPIC_API_KEY"));
    assert_non_null(strstr(err.data, "ACCESS_KEYS"));
    assert_null(strstr(err.data, "sk-ant-server-0123456789"));
    ccp_config_free(&cfg);
    ccp_buf_free(&err);
}

static void test_server_key_with_access_keys_is_accepted(void **state)
{
    (void)state;
    ccp_config cfg;
    ccp_buf err = {0};
    const char *const env[] = {"ANTHROPIC_API_KEY=sk-ant-server", "ACCESS_KEYS=client-one", NULL};
    load_expect(&cfg, &err, env, CCP_OK);
    assert_string_equal(cfg.server_api_key, "sk-ant-server");
    assert_int_equal(cfg.access_count, 1);
    ccp_config_free(&cfg);
    ccp_buf_free(&err);
}

static void test_access_keys_list_plain_and_sha256(void **state)
{
    (void)state;
    ccp_config cfg;
    ccp_buf err = {0};
    /* sha256("abc"), upper case accepted too; empty entries and spaces skipped. */
    const char *const env[] = {
        "ACCESS_KEYS= one ,, two ,sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad,"
        "sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD,",
        NULL,
    };
    load_expect(&cfg, &err, env, CCP_OK);
    assert_int_equal(cfg.access_count, 4);
    static const unsigned char abc[32] = {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40,
                                          0xde, 0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17,
                                          0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
    assert_memory_equal(cfg.access_digests[2], abc, 32);
    assert_memory_equal(cfg.access_digests[3], abc, 32);
    ccp_config_free(&cfg);
    ccp_buf_free(&err);
}

static void test_bad_sha256_entry_refused_without_echo(void **state)
{
    (void)state;
    static const char *const cases[] = {
        "ACCESS_KEYS=good,sha256:TOPSECRETvalue",
        "ACCESS_KEYS=good,sha256:",
        /* 64 characters, one not hex */
        "ACCESS_KEYS=good,sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015aZ",
        /* 66 hex digits */
        "ACCESS_KEYS=good,sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015adaa",
    };
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        ccp_config cfg;
        ccp_buf err = {0};
        const char *const env[] = {cases[i], NULL};
        load_expect(&cfg, &err, env, CCP_ERR);
        assert_int_equal(line_count(&err), 1);
        assert_non_null(strstr(err.data, "ACCESS_KEYS"));
        assert_non_null(strstr(err.data, "entry 2"));
        const char *entry = strstr(cases[i], "sha256:") + 7;
        if (*entry) assert_null(strstr(err.data, entry));
        assert_null(strstr(err.data, "TOPSECRET"));
        assert_null(strstr(err.data, "good"));
        assert_int_equal(cfg.access_count, 1); /* the good one still counts */
        ccp_config_free(&cfg);
        ccp_buf_free(&err);
    }
}

/* ---- BASE_PATH, CORS, base URL ------------------------------------------------ */

static void test_base_path_normalisation(void **state)
{
    (void)state;
    static const struct {
        const char *env;
        const char *want;
    } cases[] = {
        {"BASE_PATH=/claude/", "/claude"},
        {"BASE_PATH=/claude", "/claude"},
        {"BASE_PATH=/claude///", "/claude"},
        {"BASE_PATH=/a/b/", "/a/b"},
        {"BASE_PATH=/", ""},
        {"BASE_PATH=", ""},
    };
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        ccp_config cfg;
        ccp_buf err = {0};
        const char *const env[] = {cases[i].env, NULL};
        load_expect(&cfg, &err, env, CCP_OK);
        if (strcmp(cfg.base_path, cases[i].want) != 0)
            print_error("%s gave base_path \"%s\", want \"%s\"\n", cases[i].env, cfg.base_path, cases[i].want);
        assert_string_equal(cfg.base_path, cases[i].want);
        ccp_config_free(&cfg);
        ccp_buf_free(&err);
    }
}

/* base_path is documented as "" or "/prefix" without a trailing slash, and
 * "/" means "". "//" is the same root, so it must also give "". */
static void test_base_path_of_only_slashes_is_root(void **state)
{
    (void)state;
    ccp_config cfg;
    ccp_buf err = {0};
    const char *const env[] = {"BASE_PATH=//", NULL};
    load_expect(&cfg, &err, env, CCP_OK);
    char got[16];
    snprintf(got, sizeof got, "%s", cfg.base_path);
    ccp_config_free(&cfg);
    ccp_buf_free(&err);
    assert_string_equal(got, "");
}

static void test_cors_list_trims_and_detects_star(void **state)
{
    (void)state;
    ccp_config cfg;
    ccp_buf err = {0};
    const char *const env1[] = {"CORS_ALLOW_ORIGINS= https://a.example ,https://b.example,, ", NULL};
    load_expect(&cfg, &err, env1, CCP_OK);
    assert_int_equal(cfg.cors_count, 2);
    assert_string_equal(cfg.cors_origins[0], "https://a.example");
    assert_string_equal(cfg.cors_origins[1], "https://b.example");
    assert_false(cfg.cors_any);
    ccp_config_free(&cfg);

    const char *const env2[] = {"CORS_ALLOW_ORIGINS=https://a.example, *", NULL};
    load_expect(&cfg, &err, env2, CCP_OK);
    assert_int_equal(cfg.cors_count, 2);
    assert_true(cfg.cors_any);
    ccp_config_free(&cfg);
    ccp_buf_free(&err);
}

static void test_base_url_trailing_slash_stripped_path_kept(void **state)
{
    (void)state;
    static const struct {
        const char *env;
        const char *want;
    } cases[] = {
        {"ANTHROPIC_BASE_URL=https://api.example.com/", "https://api.example.com"},
        {"ANTHROPIC_BASE_URL=https://api.example.com///", "https://api.example.com"},
        {"ANTHROPIC_BASE_URL=http://127.0.0.1:9000/proxy/anthropic/", "http://127.0.0.1:9000/proxy/anthropic"},
        {"ANTHROPIC_BASE_URL=https://gw.example/v0", "https://gw.example/v0"},
    };
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        ccp_config cfg;
        ccp_buf err = {0};
        const char *const env[] = {cases[i].env, NULL};
        load_expect(&cfg, &err, env, CCP_OK);
        assert_string_equal(cfg.upstream_base_url, cases[i].want);
        ccp_config_free(&cfg);
        ccp_buf_free(&err);
    }
}

static void test_bad_base_url_falls_back_to_default(void **state)
{
    (void)state;
    ccp_config cfg;
    ccp_buf err = {0};
    const char *const env[] = {"ANTHROPIC_BASE_URL=file:///etc/passwd", NULL};
    load_expect(&cfg, &err, env, CCP_ERR);
    assert_string_equal(cfg.upstream_base_url, "https://api.anthropic.com");
    ccp_config_free(&cfg);
    ccp_buf_free(&err);
}

/* ---- ccp_env_parse ------------------------------------------------------------- */

typedef struct collected {
    ccp_buf text; /* "KEY=VALUE\n" per pair, in order */
    int n;
} collected;

static void collect(void *ctx, const char *key, const char *value)
{
    collected *c = ctx;
    ccp_buf_printf(&c->text, "%s=%s\n", key, value);
    c->n++;
}

static void test_env_parse_accepted_forms(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        const char *out;
    } cases[] = {
        {"A=1", "A=1\n"},
        {"A=1\nB=2\n", "A=1\nB=2\n"},
        {"export A=1", "A=1\n"},
        {"export   A=1", "A=1\n"},
        {"  A = spaced value  ", "A=spaced value\n"},
        {"A=", "A=\n"},
        {"# comment\n\n   # indented comment\nA=1", "A=1\n"},
        {"A=value # comment", "A=value\n"},
        {"A=value\t# comment", "A=value\n"},
        {"A=val#ue", "A=val#ue\n"},
        {"A=#notcomment", "A=#notcomment\n"},
        {"A=\"quoted # not a comment\"", "A=quoted # not a comment\n"},
        {"A=\"line\\nbreak \\\"q\\\" back\\\\slash\"", "A=line\nbreak \"q\" back\\slash\n"},
        {"A='single \\n # kept'", "A=single \\n # kept\n"},
        {"A=\"\"", "A=\n"},
        {"A=1\r\nB=2\r\n", "A=1\nB=2\n"},
        {"A=\"q\"\r\n", "A=q\n"},
        {"A=x=y", "A=x=y\n"},
        {"lower_case9=v", "lower_case9=v\n"},
        {"A=1\nA=2", "A=1\nA=2\n"},
        {"", ""},
        {"\n\n\r\n", ""},
    };
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        collected c = {0};
        ccp_buf err = {0};
        int rc = ccp_env_parse(cases[i].in, strlen(cases[i].in), collect, &c, &err);
        if (rc != CCP_OK || strcmp(ccp_buf_cstr(&c.text), cases[i].out) != 0)
            print_error("input [%s] gave rc %d [%s] err [%s]\n", cases[i].in, rc, ccp_buf_cstr(&c.text),
                        ccp_buf_cstr(&err));
        assert_int_equal(rc, CCP_OK);
        assert_int_equal(err.len, 0);
        assert_string_equal(ccp_buf_cstr(&c.text), cases[i].out);
        ccp_buf_free(&c.text);
        ccp_buf_free(&err);
    }
}

static void test_env_parse_respects_length(void **state)
{
    (void)state;
    collected c = {0};
    ccp_buf err = {0};
    const char text[] = "A=1\nB=2";
    assert_int_equal(ccp_env_parse(text, 3, collect, &c, &err), CCP_OK);
    assert_string_equal(ccp_buf_cstr(&c.text), "A=1\n");
    ccp_buf_free(&c.text);
    ccp_buf_free(&err);
}

static void test_env_parse_malformed_lines_report_line_numbers(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        const char *msg;  /* substring of the error */
        const char *good; /* the pairs still delivered */
    } cases[] = {
        {"A=1\nnot a pair\nB=2", "line 2: expected KEY=VALUE", "A=1\nB=2\n"},
        {"=value", "line 1: expected KEY=VALUE", ""},
        {"# c\r\n\r\nexport B\r\n", "line 3: expected KEY=VALUE", ""},
        {"A-B=1", "line 1: expected KEY=VALUE", ""},
        {"A=1\nB=\"open\nC=3", "line 2: B: unterminated quote", "A=1\nC=3\n"},
        {"A='open", "line 1: A: unterminated quote", ""},
    };
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        collected c = {0};
        ccp_buf err = {0};
        int rc = ccp_env_parse(cases[i].in, strlen(cases[i].in), collect, &c, &err);
        assert_int_equal(rc, CCP_ERR);
        if (!strstr(ccp_buf_cstr(&err), cases[i].msg)) print_error("got: %s\n", ccp_buf_cstr(&err));
        assert_non_null(strstr(ccp_buf_cstr(&err), cases[i].msg));
        assert_int_equal(line_count(&err), 1);
        assert_string_equal(ccp_buf_cstr(&c.text), cases[i].good);
        ccp_buf_free(&c.text);
        ccp_buf_free(&err);
    }
}

/* ---- .env file through ccp_config_load ----------------------------------------- */

static void test_env_file_values_are_read(void **state)
{
    (void)state;
    static const char text[] = "# cc-proxy settings\r\n"
                               "export LOG_LEVEL=debug\r\n"
                               "CLAUDE_SERVICE_PORT=9100 # the port\r\n"
                               "BASE_PATH=\"/claude/\"\r\n"
                               "CORS_ALLOW_ORIGINS='https://a.example, https://b.example'\r\n";
    char path[64];
    unit_write_tmp(path, text, sizeof text - 1);
    ccp_config cfg;
    ccp_buf err = {0};
    const char *env[] = {NULL, NULL};
    char var[128];
    snprintf(var, sizeof var, "CCPROXY_ENV_FILE=%s", path);
    env[0] = var;
    load_expect(&cfg, &err, env, CCP_OK);
    assert_int_equal(cfg.log_level, CCP_LOG_DEBUG);
    assert_int_equal(cfg.service_port, 9100);
    assert_string_equal(cfg.base_path, "/claude");
    assert_int_equal(cfg.cors_count, 2);
    assert_string_equal(cfg.cors_origins[1], "https://b.example");
    assert_string_equal(cfg.env_file, path);
    ccp_config_free(&cfg);
    ccp_buf_free(&err);
    unlink(path);
}

static void test_environment_wins_over_env_file(void **state)
{
    (void)state;
    static const char text[] = "LOG_LEVEL=debug\nCLAUDE_SERVICE_PORT=9100\n";
    char path[64];
    unit_write_tmp(path, text, sizeof text - 1);
    char var[128];
    snprintf(var, sizeof var, "CCPROXY_ENV_FILE=%s", path);
    const char *const env[] = {var, "LOG_LEVEL=error", NULL};
    ccp_config cfg;
    ccp_buf err = {0};
    load_expect(&cfg, &err, env, CCP_OK);
    assert_int_equal(cfg.log_level, CCP_LOG_ERROR);
    assert_int_equal(cfg.service_port, 9100);
    ccp_config_free(&cfg);
    ccp_buf_free(&err);
    unlink(path);
}

static void test_env_file_later_line_wins(void **state)
{
    (void)state;
    static const char text[] = "CLAUDE_SERVICE_PORT=9100\nCLAUDE_SERVICE_PORT=9200\n";
    char path[64];
    unit_write_tmp(path, text, sizeof text - 1);
    char var[128];
    snprintf(var, sizeof var, "CCPROXY_ENV_FILE=%s", path);
    const char *const env[] = {var, NULL};
    ccp_config cfg;
    ccp_buf err = {0};
    load_expect(&cfg, &err, env, CCP_OK);
    assert_int_equal(cfg.service_port, 9200);
    ccp_config_free(&cfg);
    ccp_buf_free(&err);
    unlink(path);
}

static void test_default_dot_env_in_working_directory(void **state)
{
    (void)state;
    static const char text[] = "CLAUDE_SERVICE_PORT=9300\n";
    FILE *f = fopen(".env", "wb");
    assert_non_null(f);
    fwrite(text, 1, sizeof text - 1, f);
    fclose(f);
    ccp_config cfg;
    ccp_buf err = {0};
    load_expect(&cfg, &err, NULL, CCP_OK);
    assert_int_equal(cfg.service_port, 9300);
    assert_string_equal(cfg.env_file, ".env");
    ccp_config_free(&cfg);
    ccp_buf_free(&err);
    unlink(".env");
}

static void test_missing_explicit_env_file_is_an_error(void **state)
{
    (void)state;
    const char *const env[] = {"CCPROXY_ENV_FILE=/nonexistent/ccp-unit.env", NULL};
    ccp_config cfg;
    ccp_buf err = {0};
    load_expect(&cfg, &err, env, CCP_ERR);
    assert_int_equal(line_count(&err), 1);
    assert_non_null(strstr(err.data, "CCPROXY_ENV_FILE=/nonexistent/ccp-unit.env"));
    ccp_config_free(&cfg);
    ccp_buf_free(&err);
}

static void test_malformed_env_file_reports_file_and_line(void **state)
{
    (void)state;
    static const char text[] = "A=1\n# fine\nthis is wrong\nB=2\n";
    char path[64];
    unit_write_tmp(path, text, sizeof text - 1);
    char var[128];
    snprintf(var, sizeof var, "CCPROXY_ENV_FILE=%s", path);
    const char *const env[] = {var, NULL};
    ccp_config cfg;
    ccp_buf err = {0};
    load_expect(&cfg, &err, env, CCP_ERR);
    assert_int_equal(line_count(&err), 1);
    assert_non_null(strstr(err.data, path));
    assert_non_null(strstr(err.data, "line 3"));
    ccp_config_free(&cfg);
    ccp_buf_free(&err);
    unlink(path);
}

static void test_bad_value_from_env_file_is_reported(void **state)
{
    (void)state;
    static const char text[] = "WORKER_THREADS=0\n";
    char path[64];
    unit_write_tmp(path, text, sizeof text - 1);
    char var[128];
    snprintf(var, sizeof var, "CCPROXY_ENV_FILE=%s", path);
    const char *const env[] = {var, NULL};
    ccp_config cfg;
    ccp_buf err = {0};
    load_expect(&cfg, &err, env, CCP_ERR);
    assert_non_null(strstr(err.data, "WORKER_THREADS=0"));
    ccp_config_free(&cfg);
    ccp_buf_free(&err);
    unlink(path);
}

/* ---- describe ------------------------------------------------------------------- */

static void test_describe_masks_secrets_and_is_json(void **state)
{
    (void)state;
    const char *const env[] = {
        "ANTHROPIC_API_KEY=sk-ant-SERVERSECRET",
        "ACCESS_KEYS=CLIENTSECRET1,sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "SESSION_SECRET=SESSIONSECRET",
        "BASE_PATH=/claude/",
        NULL,
    };
    ccp_config cfg;
    ccp_buf err = {0};
    load_expect(&cfg, &err, env, CCP_OK);
    ccp_buf out = {0};
    ccp_buf_append_char(&out, '{');
    ccp_config_describe(&cfg, NAMES, &out);
    ccp_buf_append_char(&out, '}');
    assert_null(strstr(out.data, "SERVERSECRET"));
    assert_null(strstr(out.data, "CLIENTSECRET"));
    assert_null(strstr(out.data, "SESSIONSECRET"));
    assert_null(strstr(out.data, "ba7816bf"));

    json_object *o = json_tokener_parse(out.data);
    assert_non_null(o);
    json_object *v;
    assert_true(json_object_object_get_ex(o, "ANTHROPIC_API_KEY", &v));
    assert_string_equal(json_object_get_string(v), "***");
    assert_true(json_object_object_get_ex(o, "SESSION_SECRET", &v));
    assert_string_equal(json_object_get_string(v), "***");
    assert_true(json_object_object_get_ex(o, "ACCESS_KEYS", &v));
    assert_int_equal(json_object_get_int(v), 2);
    assert_true(json_object_object_get_ex(o, "BASE_PATH", &v));
    assert_string_equal(json_object_get_string(v), "/claude");
    assert_true(json_object_object_get_ex(o, "ANTHROPIC_BASE_URL", &v));
    assert_string_equal(json_object_get_string(v), "https://api.anthropic.com");
    json_object_put(o);
    ccp_buf_free(&out);
    ccp_config_free(&cfg);
    ccp_buf_free(&err);
}

static void test_describe_unset_secrets_are_null(void **state)
{
    (void)state;
    ccp_config cfg;
    ccp_buf err = {0};
    load_expect(&cfg, &err, NULL, CCP_OK);
    ccp_buf out = {0};
    ccp_buf_append_char(&out, '{');
    ccp_config_describe(&cfg, NAMES, &out);
    ccp_buf_append_char(&out, '}');
    json_object *o = json_tokener_parse(out.data);
    assert_non_null(o);
    json_object *v = NULL;
    assert_true(json_object_object_get_ex(o, "ANTHROPIC_API_KEY", &v));
    assert_null(v);
    json_object_put(o);
    ccp_buf_free(&out);
    ccp_config_free(&cfg);
    ccp_buf_free(&err);
}

/* ---- the table: its names, the README, --print-config-env ---------------------------- */

static const ccp_config_names *const SERVICES[] = {&ccp_service_claude.config_names,
                                                   &ccp_service_codex.config_names};

static bool is_table_name(const char *name)
{
    for (size_t s = 0; s < UNIT_COUNT(SERVICES); s++)
        for (size_t i = 0; i < ccp_config_var_count(); i++)
            if (strcmp(ccp_config_var_name(i, SERVICES[s]), name) == 0) return true;
    return false;
}

/* The names in backquotes in the first cell of each row of README.md's
 * Configuration table, one per line into names. */
static void readme_table_names(ccp_buf *names)
{
    FILE *f = fopen(CCP_README_PATH, "r");
    if (!f) print_error("cannot open %s\n", CCP_README_PATH);
    assert_non_null(f);
    char line[4096];
    bool in_section = false;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "## ", 3) == 0) in_section = strncmp(line, "## Configuration", 16) == 0;
        if (!in_section || strncmp(line, "| `", 3) != 0) continue;
        char *end = strchr(line + 1, '|');
        assert_non_null(end);
        *end = '\0';
        for (char *p = line; (p = strchr(p, '`')) != NULL;) {
            char *q = strchr(p + 1, '`');
            assert_non_null(q);
            ccp_buf_append(names, p + 1, (size_t)(q - p - 1));
            ccp_buf_append_char(names, '\n');
            p = q + 1;
        }
    }
    fclose(f);
}

static void test_every_variable_is_in_the_readme_table_and_back(void **state)
{
    (void)state;
    ccp_buf names = {0};
    readme_table_names(&names);
    assert_true(names.len > 0);
    /* README -> table */
    for (const char *p = ccp_buf_cstr(&names); *p;) {
        const char *nl = strchr(p, '\n');
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)(nl - p), p);
        if (!is_table_name(name)) print_error("README.md's Configuration table names %s, config.c has no row\n", name);
        assert_true(is_table_name(name));
        p = nl + 1;
    }
    /* table -> README, under both services' names */
    for (size_t s = 0; s < UNIT_COUNT(SERVICES); s++)
        for (size_t i = 0; i < ccp_config_var_count(); i++) {
            char want[160];
            snprintf(want, sizeof want, "\n%s\n", ccp_config_var_name(i, SERVICES[s]));
            ccp_buf all = {0};
            ccp_buf_append_char(&all, '\n');
            ccp_buf_append_str(&all, ccp_buf_cstr(&names));
            if (!strstr(ccp_buf_cstr(&all), want))
                print_error("%s (config.c) is not in README.md's Configuration table\n", ccp_config_var_name(i, SERVICES[s]));
            assert_non_null(strstr(ccp_buf_cstr(&all), want));
            ccp_buf_free(&all);
            assert_non_null(ccp_config_var_doc(i));
            assert_true(strlen(ccp_config_var_doc(i)) > 0);
        }
    assert_null(ccp_config_var_name(ccp_config_var_count(), SERVICES[0]));
    ccp_buf_free(&names);
}

static void test_describe_has_a_member_per_variable(void **state)
{
    (void)state;
    for (size_t s = 0; s < UNIT_COUNT(SERVICES); s++) {
        ccp_config cfg;
        ccp_buf err = {0};
        unit_env_clear();
        assert_int_equal(ccp_config_load(&cfg, SERVICES[s], &err), CCP_OK);
        ccp_buf out = {0};
        ccp_buf_append_char(&out, '{');
        ccp_config_describe(&cfg, SERVICES[s], &out);
        ccp_buf_append_char(&out, '}');
        json_object *o = json_tokener_parse(out.data);
        assert_non_null(o);
        /* every row (ENVIRONMENT as "environment", as before), and env_file */
        assert_int_equal(json_object_object_length(o), (int)ccp_config_var_count() + 1);
        for (size_t i = 1; i < ccp_config_var_count(); i++)
            assert_true(json_object_object_get_ex(o, ccp_config_var_name(i, SERVICES[s]), NULL));
        assert_true(json_object_object_get_ex(o, "environment", NULL));
        assert_true(json_object_object_get_ex(o, "env_file", NULL));
        json_object_put(o);
        ccp_buf_free(&out);
        ccp_config_free(&cfg);
        ccp_buf_free(&err);
    }
}

/* The value of NAME in --print-config-env's text, unquoted (NULL: absent). */
static char *printed_value(const char *text, const char *name)
{
    char start[160];
    snprintf(start, sizeof start, "\n%s='", name);
    ccp_buf all = {0};
    ccp_buf_append_char(&all, '\n');
    ccp_buf_append_str(&all, text);
    const char *p = strstr(ccp_buf_cstr(&all), start);
    if (!p) {
        ccp_buf_free(&all);
        return NULL;
    }
    p += strlen(start);
    ccp_buf v = {0};
    for (;;) {
        if (*p == '\'' && strncmp(p, "'\\''", 4) == 0) {
            ccp_buf_append_char(&v, '\'');
            p += 4;
        } else if (*p == '\'') {
            assert_int_equal(p[1], '\n');
            break;
        } else {
            assert_int_not_equal(*p, '\0');
            ccp_buf_append_char(&v, *p++);
        }
    }
    ccp_buf_free(&all);
    char *s = ccp_xstrdup(ccp_buf_cstr(&v));
    ccp_buf_free(&v);
    return s;
}

/* The backquoted tokens of a table cell, when the cell is nothing else
 * (tokens joined by " / "); false for a cell with words such as "(none)". */
static bool cell_tokens(const char *cell, char tokens[][128], size_t *n)
{
    *n = 0;
    const char *p = cell;
    while (*p == ' ') p++;
    while (*p) {
        if (*p != '`' || *n == 4) return false;
        const char *q = strchr(p + 1, '`');
        if (!q) return false;
        snprintf(tokens[(*n)++], 128, "%.*s", (int)(q - p - 1), p + 1);
        p = q + 1;
        while (*p == ' ') p++;
        if (*p == '/') {
            p++;
            while (*p == ' ') p++;
        }
    }
    return *n > 0;
}

/* A default the README shows as a plain value is the one the table gives. */
static void test_readme_defaults_are_the_tables(void **state)
{
    (void)state;
    ccp_buf printed[2] = {{0}, {0}};
    for (size_t s = 0; s < UNIT_COUNT(SERVICES); s++) {
        ccp_config cfg;
        ccp_buf err = {0};
        unit_env_clear();
        assert_int_equal(ccp_config_load(&cfg, SERVICES[s], &err), CCP_OK);
        ccp_config_print_env(&cfg, SERVICES[s], &printed[s]);
        ccp_config_free(&cfg);
        ccp_buf_free(&err);
    }
    FILE *f = fopen(CCP_README_PATH, "r");
    assert_non_null(f);
    char line[4096];
    bool in_section = false;
    int compared = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "## ", 3) == 0) in_section = strncmp(line, "## Configuration", 16) == 0;
        if (!in_section || strncmp(line, "| `", 3) != 0) continue;
        char *c1 = line + 1, *c2 = strchr(c1, '|');
        assert_non_null(c2);
        *c2++ = '\0';
        char *c3 = strchr(c2, '|');
        assert_non_null(c3);
        *c3 = '\0';
        char names[4][128], defaults[4][128];
        size_t nn, nd;
        if (!cell_tokens(c1, names, &nn) || !cell_tokens(c2, defaults, &nd) || nn != nd) continue;
        for (size_t i = 0; i < nn; i++) {
            if (is_table_name(defaults[i])) continue; /* "defaults to that variable" */
            char *got = printed_value(ccp_buf_cstr(&printed[0]), names[i]);
            if (!got) got = printed_value(ccp_buf_cstr(&printed[1]), names[i]);
            assert_non_null(got);
            if (strcmp(got, defaults[i]))
                print_error("README.md gives %s the default %s, config.c %s\n", names[i], defaults[i], got);
            assert_string_equal(got, defaults[i]);
            free(got);
            compared++;
        }
    }
    fclose(f);
    assert_true(compared >= 10);
    ccp_buf_free(&printed[0]);
    ccp_buf_free(&printed[1]);
}

static void expect_printed(const char *text, const char *name, const char *want)
{
    char *got = printed_value(text, name);
    if (!got || strcmp(got, want)) print_error("%s: printed %s, want %s\n", name, got ? got : "(none)", want);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static void test_print_env_gives_the_given_text_else_the_default(void **state)
{
    (void)state;
    const char *const env[] = {
        "ANTHROPIC_API_KEY=sk-ant-it's",
        "ACCESS_KEYS=k1, k2",
        "BASE_PATH=/claude/",
        "LOG_LEVEL=warn",
        "HTTP_TIMEOUT=0.5",
        "HTTP_MAX_CONNECTIONS=7",
        NULL,
    };
    ccp_config cfg;
    ccp_buf err = {0};
    load_expect(&cfg, &err, env, CCP_OK);
    ccp_buf out = {0};
    ccp_config_print_env(&cfg, NAMES, &out);
    const char *t = ccp_buf_cstr(&out);
    /* one line per variable, and CCPROXY_ENV_FILE */
    assert_int_equal(line_count(&out), ccp_config_var_count() + 1);
    for (size_t i = 0; i < ccp_config_var_count(); i++) {
        char *v = printed_value(t, ccp_config_var_name(i, NAMES));
        assert_non_null(v);
        free(v);
    }
    /* given: verbatim, secrets included (the scripts forward them) */
    expect_printed(t, "ANTHROPIC_API_KEY", "sk-ant-it's");
    assert_non_null(strstr(t, "ANTHROPIC_API_KEY='sk-ant-it'\\''s'\n"));
    expect_printed(t, "ACCESS_KEYS", "k1, k2");
    expect_printed(t, "BASE_PATH", "/claude/");
    expect_printed(t, "LOG_LEVEL", "warn");
    expect_printed(t, "HTTP_TIMEOUT", "0.5");
    /* not given: the default, as a value the loader takes */
    expect_printed(t, "ANTHROPIC_BASE_URL", "https://api.anthropic.com");
    expect_printed(t, "HTTP_CONNECT_TIMEOUT", "10");
    expect_printed(t, "HTTP_KEEPALIVE_EXPIRY", "30");
    expect_printed(t, "CLAUDE_SERVICE_PORT", "8001");
    expect_printed(t, "MAX_STREAMS", "7");
    expect_printed(t, "UPSTREAM_AUTH_STYLE", "auto");
    expect_printed(t, "SESSION_SECRET", "");
    expect_printed(t, "CODEX_ENV_CWD", "/workspace");
    expect_printed(t, "CCPROXY_ENV_FILE", "");
    ccp_buf_free(&out);
    ccp_config_free(&cfg);
    ccp_buf_free(&err);
}

/* Loading what --print-config-env printed gives the same configuration. */
static void test_print_env_round_trips(void **state)
{
    (void)state;
    const char *const env[] = {"CLAUDE_SERVICE_PORT=9001", "CORS_ALLOW_ORIGINS=https://a.example,*",
                               "ENVIRONMENT=TEST", "MAX_BODY_BYTES=4096", NULL};
    ccp_config a, b;
    ccp_buf err = {0}, first = {0}, second = {0}, desc_a = {0}, desc_b = {0};
    load_expect(&a, &err, env, CCP_OK);
    ccp_config_print_env(&a, NAMES, &first);
    ccp_config_describe(&a, NAMES, &desc_a);
    unit_env_clear();
    for (size_t i = 0; i < ccp_config_var_count(); i++) {
        const char *name = ccp_config_var_name(i, NAMES);
        char *v = printed_value(ccp_buf_cstr(&first), name);
        assert_non_null(v);
        if (*v) assert_int_equal(setenv(name, v, 1), 0);
        free(v);
    }
    assert_int_equal(ccp_config_load(&b, NAMES, &err), CCP_OK);
    ccp_config_print_env(&b, NAMES, &second);
    ccp_config_describe(&b, NAMES, &desc_b);
    assert_string_equal(ccp_buf_cstr(&desc_a), ccp_buf_cstr(&desc_b));
    assert_string_equal(ccp_buf_cstr(&first), ccp_buf_cstr(&second));
    ccp_buf_free(&first);
    ccp_buf_free(&second);
    ccp_buf_free(&desc_a);
    ccp_buf_free(&desc_b);
    ccp_config_free(&a);
    ccp_config_free(&b);
    ccp_buf_free(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults_with_empty_environment, test_setup),
        cmocka_unit_test_setup(test_max_streams_default_follows_max_connections, test_setup),
        cmocka_unit_test_setup(test_max_streams_default_stays_within_its_range, test_setup),
        cmocka_unit_test_setup(test_valid_values_are_taken, test_setup),
        cmocka_unit_test_setup(test_log_level_aliases, test_setup),
        cmocka_unit_test_setup(test_each_bad_value_gives_one_line_naming_it, test_setup),
        cmocka_unit_test_setup(test_several_bad_values_give_several_lines, test_setup),
        cmocka_unit_test_setup(test_metrics_rows, test_setup),
        cmocka_unit_test_setup(test_empty_value_counts_as_unset, test_setup),
        cmocka_unit_test_setup(test_server_key_without_access_keys_is_refused, test_setup),
        cmocka_unit_test_setup(test_server_key_with_access_keys_is_accepted, test_setup),
        cmocka_unit_test_setup(test_access_keys_list_plain_and_sha256, test_setup),
        cmocka_unit_test_setup(test_bad_sha256_entry_refused_without_echo, test_setup),
        cmocka_unit_test_setup(test_base_path_normalisation, test_setup),
        cmocka_unit_test_setup(test_base_path_of_only_slashes_is_root, test_setup),
        cmocka_unit_test_setup(test_cors_list_trims_and_detects_star, test_setup),
        cmocka_unit_test_setup(test_base_url_trailing_slash_stripped_path_kept, test_setup),
        cmocka_unit_test_setup(test_bad_base_url_falls_back_to_default, test_setup),
        cmocka_unit_test(test_env_parse_accepted_forms),
        cmocka_unit_test(test_env_parse_respects_length),
        cmocka_unit_test(test_env_parse_malformed_lines_report_line_numbers),
        cmocka_unit_test_setup(test_env_file_values_are_read, test_setup),
        cmocka_unit_test_setup(test_environment_wins_over_env_file, test_setup),
        cmocka_unit_test_setup(test_env_file_later_line_wins, test_setup),
        cmocka_unit_test_setup(test_default_dot_env_in_working_directory, test_setup),
        cmocka_unit_test_setup(test_missing_explicit_env_file_is_an_error, test_setup),
        cmocka_unit_test_setup(test_malformed_env_file_reports_file_and_line, test_setup),
        cmocka_unit_test_setup(test_bad_value_from_env_file_is_reported, test_setup),
        cmocka_unit_test_setup(test_describe_masks_secrets_and_is_json, test_setup),
        cmocka_unit_test_setup(test_describe_unset_secrets_are_null, test_setup),
        cmocka_unit_test_setup(test_every_variable_is_in_the_readme_table_and_back, test_setup),
        cmocka_unit_test_setup(test_readme_defaults_are_the_tables, test_setup),
        cmocka_unit_test_setup(test_describe_has_a_member_per_variable, test_setup),
        cmocka_unit_test_setup(test_print_env_gives_the_given_text_else_the_default, test_setup),
        cmocka_unit_test_setup(test_print_env_round_trips, test_setup),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
