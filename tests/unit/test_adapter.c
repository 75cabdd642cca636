/* adapter: the table (built-in and ADAPTERS_FILE, "extends": "builtin"),
 * selection (x-client-type, match rules, priority, default), GET /adapters,
 * changes_body, running a whole adapter, and one broken adapters file per
 * validation error (each message names the file, the adapter, the problem).
 *
 * Requests are built by hand: a zeroed ccp_request with lower-case header
 * names, as ccp_request_init leaves them. */
#include "unit.h"

#include "../../common/relay.h"

#include <json-c/json.h>
#include <time.h>

#include "../../common/adapter.h"
#include "../../common/config.h"
#include "../../common/dialect.h"
#include "../../common/session.h"
#include "../../common/steps.h"

#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
#define CCT "You are Claude Code, Anthropic's official CLI for Claude."
#define EPH "{\"type\":\"ephemeral\"}"

/* ---- helpers ------------------------------------------------------------------- */

/* The repository root, from this file's path as the compiler saw it. */
static void repo_path(char *out, size_t n, const char *rel)
{
    const char *me = __FILE__;
    const char *tail = strstr(me, "tests/unit/test_adapter.c");
    snprintf(out, n, "%.*s%s", tail ? (int)(tail - me) : 0, me, rel);
}

/* Loads a table; with text, from a temp ADAPTERS_FILE holding it (its path
 * in path, which must hold 64 bytes, or NULL). */
static int load(ccp_adapters **out, const char *service, const char *text, char *path, ccp_buf *err)
{
    ccp_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.codex_env_cwd = "/workspace"; /* ccp_config_load's default */
    char tmp[64];
    if (text) {
        unit_write_tmp(tmp, text, strlen(text));
        cfg.adapters_file = tmp;
        if (path) memcpy(path, tmp, sizeof tmp);
    }
    int rc = ccp_adapters_load(out, service, &cfg, err);
    if (text) unlink(tmp);
    return rc;
}

static ccp_adapters *load_ok(const char *service, const char *text)
{
    ccp_adapters *a = NULL;
    ccp_buf err = {0};
    int rc = load(&a, service, text, NULL, &err);
    if (rc != CCP_OK) print_error("load failed: %s\n", ccp_buf_cstr(&err));
    assert_int_equal(rc, CCP_OK);
    assert_non_null(a);
    ccp_buf_free(&err);
    return a;
}

/* "name: value\n..." headers into a request. */
static void request_with(ccp_request *r, const char *headers)
{
    memset(r, 0, sizeof *r);
    r->method = ccp_xstrdup("POST");
    const char *text = headers;
    while (text && *text) {
        const char *nl = strchr(text, '\n');
        size_t len = nl ? (size_t)(nl - text) : strlen(text);
        const char *colon = memchr(text, ':', len);
        assert_non_null(colon);
        char name[128], value[512];
        snprintf(name, sizeof name, "%.*s", (int)(colon - text), text);
        const char *v = colon + 1;
        while (*v == ' ') v++;
        snprintf(value, sizeof value, "%.*s", (int)(text + len - v), v);
        ccp_headers_add(&r->headers, name, value);
        text = nl ? nl + 1 : text + len;
    }
}

/* The adapter picked, or "!<err>" for a refusal (in out). */
static void select_name(const ccp_adapters *a, const char *headers, const char *body, ccp_buf *out)
{
    ccp_request r;
    request_with(&r, headers);
    json_object *b = body ? json_tokener_parse(body) : NULL;
    if (body) assert_non_null(b);
    ccp_buf err = {0};
    const ccp_adapter *ad = ccp_adapters_select(a, &r, b, &err);
    ccp_buf_reset(out);
    if (ad) {
        ccp_buf_append_str(out, ccp_adapter_name(ad));
        if (err.len) ccp_buf_printf(out, " (and an error: %s)", err.data);
    } else {
        ccp_buf_printf(out, "!%s", ccp_buf_cstr(&err));
    }
    ccp_buf_free(&err);
    json_object_put(b);
    ccp_request_free(&r);
}

/* The names GET /adapters lists, comma-joined; the parsed description in *desc
 * when desc is not NULL. */
static void described_names(const ccp_adapters *a, ccp_buf *names, json_object **desc)
{
    ccp_buf out = {0};
    ccp_adapters_describe(a, &out);
    json_tokener *tok = json_tokener_new();
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    json_object *j = json_tokener_parse_ex(tok, out.data, (int)out.len);
    bool ok = j && json_tokener_get_error(tok) == json_tokener_success && json_tokener_get_parse_end(tok) == out.len;
    json_tokener_free(tok);
    if (!ok) print_error("GET /adapters is not strict JSON: %s\n", ccp_buf_cstr(&out));
    assert_true(ok);
    json_object *list;
    assert_true(json_object_object_get_ex(j, "adapters", &list));
    assert_true(json_object_is_type(list, json_type_array));
    ccp_buf_reset(names);
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        json_object *name;
        assert_true(json_object_object_get_ex(json_object_array_get_idx(list, i), "name", &name));
        ccp_buf_printf(names, "%s%s", i ? "," : "", json_object_get_string(name));
    }
    if (desc) *desc = j;
    else json_object_put(j);
    ccp_buf_free(&out);
}

static const ccp_adapter *by_name(const ccp_adapters *a, const char *name)
{
    ccp_request r;
    char h[160];
    snprintf(h, sizeof h, "x-client-type: %s", name);
    request_with(&r, h);
    ccp_buf err = {0};
    const ccp_adapter *ad = ccp_adapters_select(a, &r, NULL, &err);
    ccp_buf_free(&err);
    ccp_request_free(&r);
    return ad;
}

/* ---- the built-in table ------------------------------------------------------------ */

static void test_builtin_claude_table(void **state)
{
    (void)state;
    ccp_adapters *a = load_ok("claude", NULL);
    ccp_buf names = {0};
    json_object *desc;
    described_names(a, &names, &desc);
    assert_string_equal(names.data, "claude_code,cherry_studio,default");
    json_object *list = json_object_object_get(desc, "adapters");
    static const struct {
        int priority;
        const char *selected_by;
        const char *steps;
        bool has_match;
    } want[] = {
        {100, "match rules, or x-client-type", "[]", true},
        {50, "match rules, or x-client-type",
         "[\"prepend_system\",\"session\",\"cache_last_message\",\"merge_beta\",\"identity\"]", true},
        {0, "fallback when no other adapter matches, or x-client-type", "[]", false},
    };
    for (size_t i = 0; i < UNIT_COUNT(want); i++) {
        json_object *ad = json_object_array_get_idx(list, i), *v;
        assert_true(json_object_object_get_ex(ad, "version", &v));
        assert_string_equal(json_object_get_string(v), "1.0.0");
        assert_true(json_object_object_get_ex(ad, "priority", &v));
        assert_int_equal(json_object_get_int(v), want[i].priority);
        assert_true(json_object_object_get_ex(ad, "description", &v));
        assert_true(strlen(json_object_get_string(v)) > 10);
        assert_true(json_object_object_get_ex(ad, "selected_by", &v));
        assert_string_equal(json_object_get_string(v), want[i].selected_by);
        assert_true(json_object_object_get_ex(ad, "steps", &v));
        assert_string_equal(json_object_to_json_string_ext(v, JSON_FLAGS), want[i].steps);
        assert_true(json_object_object_get_ex(ad, "match", &v));
        assert_int_equal(v != NULL, want[i].has_match);
    }
    /* the rules as written in conf/adapters.json */
    json_object *m = json_object_object_get(json_object_array_get_idx(list, 0), "match");
    assert_string_equal(json_object_to_json_string_ext(m, JSON_FLAGS),
                        "{\"any\":[{\"header\":\"user-agent\",\"contains\":\"claude-cli\"},{\"header\":\"anthropic-beta\","
                        "\"contains\":\"claude-code-\"}]}");
    m = json_object_object_get(json_object_array_get_idx(list, 1), "match");
    assert_string_equal(json_object_to_json_string_ext(m, JSON_FLAGS),
                        "{\"any\":[{\"header\":\"user-agent\",\"contains\":\"CherryStudio\"},{\"body_has\":\"thinking\"}]}");

    assert_false(ccp_adapter_changes_body(by_name(a, "claude_code")));
    assert_false(ccp_adapter_changes_body(by_name(a, "default")));
    assert_true(ccp_adapter_changes_body(by_name(a, "cherry_studio")));
    json_object_put(desc);
    ccp_buf_free(&names);
    ccp_adapters_free(a);
}

static void test_builtin_codex_table(void **state)
{
    (void)state;
    ccp_adapters *a = load_ok("codex", NULL);
    ccp_buf names = {0};
    described_names(a, &names, NULL);
    assert_string_equal(names.data, "codex_cli,cherry_studio,custom,default");
    assert_false(ccp_adapter_changes_body(by_name(a, "codex_cli")));
    assert_false(ccp_adapter_changes_body(by_name(a, "custom"))); /* identity only: headers */
    assert_false(ccp_adapter_changes_body(by_name(a, "default")));
    assert_true(ccp_adapter_changes_body(by_name(a, "cherry_studio")));
    static const struct {
        const char *headers, *want;
    } cases[] = {
        {"originator: codex_exec", "codex_cli"},
        {"user-agent: codex_exec/0.171.0 (Debian)", "codex_cli"},
        {"user-agent: CODEX_exec/0.1", "codex_cli"}, /* prefix, case-insensitive */
        {"user-agent: my codex_exec", "default"},   /* a prefix, not contains */
        {"user-agent: CherryStudio/1.5", "cherry_studio"},
        {"user-agent: curl/8", "default"},
        {"x-client-type: custom", "custom"},
        {"x-client-type: claude_code", "!x-client-type names no adapter; valid names: codex_cli, cherry_studio, "
                                       "custom, default"},
    };
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        select_name(a, cases[i].headers, "{}", &names);
        if (strcmp(names.data, cases[i].want)) print_error("%s: got %s\n", cases[i].headers, names.data);
        assert_string_equal(names.data, cases[i].want);
    }
    ccp_buf_free(&names);
    ccp_adapters_free(a);
}

/* A service without a section still gets the plain relay. */
static void test_service_without_section(void **state)
{
    (void)state;
    ccp_adapters *a = load_ok("gemini", NULL);
    ccp_buf names = {0};
    described_names(a, &names, NULL);
    assert_string_equal(names.data, "default");
    select_name(a, "user-agent: CherryStudio/1", "{\"thinking\":{}}", &names);
    assert_string_equal(names.data, "default");
    ccp_buf_free(&names);
    ccp_adapters_free(a);
}

/* ---- selection --------------------------------------------------------------------- */

typedef struct select_case {
    const char *name;
    const char *headers;
    const char *body; /* NULL: none parsed */
    const char *want; /* adapter name, or "!" + error text */
} select_case;

static const select_case builtin_select_cases[] = {
    {"Claude Code -p", "user-agent: claude-cli/2.1.197 (external, sdk-cli)\nx-app: cli", "{\"model\":\"m\"}",
     "claude_code"},
    {"Claude Code by beta only", "user-agent: Bun/1.4.0\nanthropic-beta: context-1m,claude-code-20250219", "{}",
     "claude_code"},
    {"Claude Code with a thinking body", "user-agent: claude-cli/2.1.197 (external, cli)",
     "{\"thinking\":{\"type\":\"adaptive\"}}", "claude_code"},
    {"CherryStudio UA and a claude-code beta: priority", "user-agent: CherryStudio/1.5.3\nanthropic-beta: claude-code-x",
     "{}", "claude_code"},
    {"CherryStudio", "user-agent: Mozilla/5.0 CherryStudio/1.5.3 Chrome/126", "{}", "cherry_studio"},
    {"CherryStudio, other case", "user-agent: cherrystudio/1.0", NULL, "cherry_studio"},
    {"thinking in the body, no CherryStudio UA", "user-agent: python-httpx/0.27",
     "{\"model\":\"m\",\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":1024}}", "cherry_studio"},
    {"thinking null still counts as present", "", "{\"thinking\":null}", "cherry_studio"},
    {"thinking nested is not top-level", "", "{\"metadata\":{\"thinking\":1}}", "default"},
    {"no body parsed: body rules do not hold", "user-agent: curl/8", NULL, "default"},
    {"plain curl", "user-agent: curl/8.5.0\naccept: */*", "{\"model\":\"m\"}", "default"},
    {"no headers", "", "{}", "default"},
    {"x-client-type picks over the rules", "user-agent: curl/8\nx-client-type: cherry_studio", "{}", "cherry_studio"},
    {"x-client-type value case-insensitive", "x-client-type: Cherry_Studio", "{}", "cherry_studio"},
    {"x-client-type header name case-insensitive", "X-Client-Type: cherry_studio", "{}", "cherry_studio"},
    {"x-client-type default over Claude Code rules", "user-agent: claude-cli/2\nx-client-type: default", "{}",
     "default"},
    {"x-client-type claude_code", "x-client-type: claude_code", "{\"thinking\":{}}", "claude_code"},
    {"x-client-type empty: the rules decide", "x-client-type: \nuser-agent: CherryStudio/1", "{}", "cherry_studio"},
    {"x-client-type unknown", "x-client-type: nope\nuser-agent: claude-cli/2", "{}",
     "!x-client-type names no adapter; valid names: claude_code, cherry_studio, default"},
    {"x-client-type a near miss", "x-client-type: cherry-studio", "{}",
     "!x-client-type names no adapter; valid names: claude_code, cherry_studio, default"},
};

static void run_select_cases(const ccp_adapters *a, const select_case *cases, size_t n)
{
    int failures = 0;
    ccp_buf got = {0};
    for (size_t i = 0; i < n; i++) {
        select_name(a, cases[i].headers, cases[i].body, &got);
        if (strcmp(got.data, cases[i].want) != 0) {
            print_error("case \"%s\": got \"%s\", want \"%s\"\n", cases[i].name, got.data, cases[i].want);
            failures++;
        }
    }
    ccp_buf_free(&got);
    assert_int_equal(failures, 0);
}

static void test_builtin_selection(void **state)
{
    (void)state;
    ccp_adapters *a = load_ok("claude", NULL);
    run_select_cases(a, builtin_select_cases, UNIT_COUNT(builtin_select_cases));
    ccp_adapters_free(a);
}

#define RULES_FILE                                                                                                     \
    "{\"claude\":[\n"                                                                                                  \
    " {\"name\":\"tie1\",\"priority\":10,\"match\":{\"header\":\"x-tie\",\"present\":true}},\n"                        \
    " {\"name\":\"contains\",\"priority\":90,\"match\":{\"header\":\"x-tool\",\"contains\":\"FoO\"}},\n"               \
    " {\"name\":\"prefix\",\"priority\":80,\"match\":{\"header\":\"user-agent\",\"prefix\":\"MyApp/\"}},\n"            \
    " {\"name\":\"present\",\"priority\":70,\"match\":{\"header\":\"x-flag\",\"present\":true}},\n"                    \
    " {\"name\":\"folded\",\"priority\":65,\"match\":{\"header\":\"x_under\",\"present\":true}},\n"                    \
    " {\"name\":\"body\",\"priority\":60,\"match\":{\"body_has\":\"special\"}},\n"                                     \
    " {\"name\":\"all\",\"priority\":95,\"match\":{\"all\":[{\"header\":\"x-a\",\"present\":true},{\"any\":[{"         \
    "\"body_has\":\"b\"},{\"header\":\"x-c\",\"contains\":\"yes\"}]}]}},\n"                                            \
    " {\"name\":\"manual\",\"priority\":1000},\n"                                                                     \
    " {\"name\":\"tie2\",\"priority\":10,\"match\":{\"header\":\"x-tie\",\"present\":true}},\n"                        \
    " {\"name\":\"negative\",\"priority\":-5,\"match\":{\"header\":\"x-neg\",\"present\":true}}\n"                     \
    "]}\n"

static const select_case rule_select_cases[] = {
    {"contains, case-insensitive", "x-tool: xxfOOyy", "{}", "contains"},
    {"contains: absent text", "x-tool: bar", "{}", "default"},
    {"prefix, case-insensitive", "user-agent: myapp/2.0 (mac)", "{}", "prefix"},
    {"prefix: not at the start", "user-agent: NotMyApp/2", "{}", "default"},
    {"prefix: whole value shorter", "user-agent: MyApp", "{}", "default"},
    {"present", "x-flag: 1", "{}", "present"},
    {"present with an empty value", "x-flag: ", "{}", "present"},
    {"present: another header", "x-flags: 1", "{}", "default"},
    {"rule names fold _ and -", "x-under: 1", "{}", "folded"},
    {"body_has", "", "{\"special\":null}", "body"},
    {"body_has: no body", "", NULL, "default"},
    {"all: both parts (body)", "x-a: 1", "{\"b\":0}", "all"},
    {"all: both parts (header)", "x-a: 1\nx-c: oh YES", "{}", "all"},
    {"all: first part only", "x-a: 1", "{}", "default"},
    {"all: second part only", "x-c: yes", "{\"b\":0}", "default"},
    {"all: second part only, no body rule", "x-c: yes", "{}", "default"},
    {"highest priority among matches", "x-tool: foo\nx-flag: 1\nuser-agent: MyApp/1", "{\"special\":1}", "contains"},
    {"all outranks contains", "x-tool: foo\nx-a: 1", "{\"b\":1}", "all"},
    {"ties: file order", "x-tie: 1", "{}", "tie1"},
    {"negative priority still matches", "x-neg: 1", "{}", "negative"},
    {"an adapter without rules: x-client-type only", "x-client-type: manual", "{}", "manual"},
    {"an adapter without rules is never matched", "x-tool: nothing", "{}", "default"},
};

static void test_match_rules(void **state)
{
    (void)state;
    ccp_adapters *a = load_ok("claude", RULES_FILE);
    run_select_cases(a, rule_select_cases, UNIT_COUNT(rule_select_cases));
    ccp_buf names = {0};
    json_object *desc;
    described_names(a, &names, &desc);
    /* priority descending, file order on ties, default last */
    assert_string_equal(names.data, "manual,all,contains,prefix,present,folded,body,tie1,tie2,negative,default");
    json_object *manual = json_object_array_get_idx(json_object_object_get(desc, "adapters"), 0);
    assert_string_equal(json_object_get_string(json_object_object_get(manual, "selected_by")), "x-client-type only");
    assert_true(json_object_object_get_ex(manual, "match", NULL));
    assert_null(json_object_object_get(manual, "match"));
    assert_string_equal(json_object_get_string(json_object_object_get(manual, "version")), "1.0.0");
    assert_string_equal(json_object_get_string(json_object_object_get(manual, "description")), "");
    json_object_put(desc);
    select_name(a, "x-client-type: nope", "{}", &names);
    assert_string_equal(names.data, "!x-client-type names no adapter; valid names: manual, all, contains, prefix, "
                                    "present, folded, body, tie1, tie2, negative, default");
    ccp_buf_free(&names);
    ccp_adapters_free(a);
}

/* Descriptions with quotes, backslashes, control characters and non-ASCII
 * text still make valid JSON. */
static void test_describe_escapes(void **state)
{
    (void)state;
    const char *file = "{\"claude\":[{\"name\":\"q\\\"uote\",\"version\":\"2.0.0-rc\\\\1\",\"priority\":3,"
                       "\"description\":\"line\\nbreak \\t tab \\u0001 caf\\u00e9 \\u65e5 </script>\","
                       "\"match\":{\"header\":\"user-agent\",\"contains\":\"a\\\"b\"}}]}";
    ccp_adapters *a = load_ok("claude", file);
    ccp_buf names = {0};
    json_object *desc;
    described_names(a, &names, &desc);
    assert_string_equal(names.data, "q\"uote,default");
    json_object *ad = json_object_array_get_idx(json_object_object_get(desc, "adapters"), 0);
    assert_string_equal(json_object_get_string(json_object_object_get(ad, "version")), "2.0.0-rc\\1");
    assert_string_equal(json_object_get_string(json_object_object_get(ad, "description")),
                        "line\nbreak \t tab \001 caf\xc3\xa9 \xe6\x97\xa5 </script>");
    json_object_put(desc);
    ccp_buf_free(&names);
    ccp_adapters_free(a);
}

/* ---- "extends": "builtin" and user files -------------------------------------------- */

static void test_extends_builtin_adds_and_overrides(void **state)
{
    (void)state;
    const char *file =
        "{\"extends\":\"builtin\",\"claude\":[\n"
        " {\"name\":\"mine\",\"priority\":60,\"match\":{\"header\":\"user-agent\",\"contains\":\"MyChat\"},"
        "\"steps\":[{\"step\":\"identity\",\"profile\":\"claude_code\"}]},\n"
        " {\"name\":\"cherry_studio\",\"version\":\"9.9.9\",\"priority\":200,\"description\":\"overridden\","
        "\"match\":{\"header\":\"user-agent\",\"contains\":\"Cherry\"},\"steps\":[]}\n"
        "]}";
    ccp_adapters *a = load_ok("claude", file);
    ccp_buf names = {0};
    json_object *desc;
    described_names(a, &names, &desc);
    assert_string_equal(names.data, "cherry_studio,claude_code,mine,default");
    json_object *cs = json_object_array_get_idx(json_object_object_get(desc, "adapters"), 0);
    assert_string_equal(json_object_get_string(json_object_object_get(cs, "version")), "9.9.9");
    assert_string_equal(json_object_get_string(json_object_object_get(cs, "description")), "overridden");
    json_object_put(desc);
    /* the override's rules and steps replace the built-in ones */
    assert_false(ccp_adapter_changes_body(by_name(a, "cherry_studio")));
    static const select_case cases[] = {
        {"override outranks claude_code now", "user-agent: CherryStudio claude-cli", "{}", "cherry_studio"},
        {"the built-in thinking rule is gone", "user-agent: curl", "{\"thinking\":{}}", "default"},
        {"added adapter", "user-agent: MyChat/1", "{}", "mine"},
        {"built-in claude_code still there", "user-agent: claude-cli/2", "{}", "claude_code"},
    };
    run_select_cases(a, cases, UNIT_COUNT(cases));
    ccp_buf_free(&names);
    ccp_adapters_free(a);
}

/* A user file that extends the built-ins and updates a profile (a new
 * Claude Code release): "later files win", so the built-in adapters that use
 * the profile send the new values, without a rebuild. */
static void test_extends_builtin_profile_update_applies(void **state)
{
    (void)state;
    const char *file = "{\"extends\":\"builtin\",\"profiles\":{\"claude_code\":{\"headers\":{\"user-agent\":"
                       "\"claude-cli/9.9.9 (external, cli)\",\"x-app\":\"cli\"},\"merge\":{\"anthropic-beta\":"
                       "\"claude-code-20991231\"}}}}";
    ccp_adapters *a = load_ok("claude", file);
    const ccp_adapter *ad = by_name(a, "cherry_studio");
    assert_non_null(ad);
    json_object *body = json_tokener_parse("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
    ccp_headers up = {0};
    ccp_config cfg;
    memset(&cfg, 0, sizeof cfg);
    ccp_transform t = {.cfg = &cfg, .client_key = "k", .body = body, .upstream_headers = &up};
    ccp_buf err = {0};
    assert_int_equal(ccp_adapter_apply(ad, &t, &err), CCP_OK);
    const char *ua = ccp_headers_get(&up, "user-agent"), *beta = ccp_headers_get(&up, "anthropic-beta");
    bool ok = ua && strcmp(ua, "claude-cli/9.9.9 (external, cli)") == 0 && beta && strstr(beta, "claude-code-20991231");
    if (!ok)
        print_error("built-in cherry_studio with the updated claude_code profile sent user-agent \"%s\", "
                    "anthropic-beta \"%s\"\n", ua ? ua : "(none)", beta ? beta : "(none)");
    json_object_put(body);
    ccp_headers_free(&up);
    ccp_buf_free(&err);
    ccp_adapters_free(a);
    assert_true(ok);
}

static void test_user_file_replaces_builtin(void **state)
{
    (void)state;
    const char *file = "{\"profiles\":{\"p\":{\"headers\":{\"x-app\":\"mine\"}}},\"claude\":[{\"name\":\"only\","
                       "\"match\":{\"body_has\":\"x\"},\"steps\":[{\"step\":\"identity\",\"profile\":\"p\"}]}],"
                       "\"codex\":[{\"name\":\"other\"}]}";
    ccp_adapters *a = load_ok("claude", file);
    ccp_buf names = {0};
    described_names(a, &names, NULL);
    assert_string_equal(names.data, "only,default");
    select_name(a, "user-agent: claude-cli/2", "{}", &names);
    assert_string_equal(names.data, "default");
    ccp_adapters_free(a);
    a = load_ok("codex", file);
    described_names(a, &names, NULL);
    assert_string_equal(names.data, "other,default");
    ccp_adapters_free(a);
    /* a file's own "default" stays last whatever its priority */
    a = load_ok("claude", "{\"claude\":[{\"name\":\"default\",\"priority\":500,\"description\":\"mine\"},"
                          "{\"name\":\"x\",\"priority\":1}]}");
    described_names(a, &names, NULL);
    assert_string_equal(names.data, "x,default");
    select_name(a, "", "{}", &names);
    assert_string_equal(names.data, "default");
    ccp_adapters_free(a);
    ccp_buf_free(&names);
}

/* Every example in conf/adapters.d/ loads for both services, and adds its
 * client in selection order. */
static void test_adapters_d_examples_load(void **state)
{
    (void)state;
    static const struct {
        const char *file, *names, *headers, *want;
    } cases[] = {
        {"conf/adapters.d/opencat.json", "claude_code,cherry_studio,opencat,default", "user-agent: OpenCat/2.3 (iOS)",
         "opencat"},
        {"conf/adapters.d/lobe-chat.json", "claude_code,cherry_studio,lobe_chat,default",
         "user-agent: LobeHub/1.0", "lobe_chat"},
        {"conf/adapters.d/lobe-chat.json", "claude_code,cherry_studio,lobe_chat,default", "x-client-type: lobe_chat",
         "lobe_chat"},
    };
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        char path[4096];
        repo_path(path, sizeof path, cases[i].file);
        ccp_config cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.codex_env_cwd = "/workspace";
        cfg.adapters_file = path;
        ccp_adapters *a = NULL;
        ccp_buf err = {0}, names = {0};
        if (ccp_adapters_load(&a, "claude", &cfg, &err) != CCP_OK) {
            print_error("%s: %s\n", path, ccp_buf_cstr(&err));
            fail();
        }
        described_names(a, &names, NULL);
        assert_string_equal(names.data, cases[i].names);
        select_name(a, cases[i].headers, "{}", &names);
        assert_string_equal(names.data, cases[i].want);
        assert_true(ccp_adapter_changes_body(by_name(a, cases[i].want)));
        ccp_adapters_free(a);
        assert_int_equal(ccp_adapters_load(&a, "codex", &cfg, &err), CCP_OK);
        described_names(a, &names, NULL);
        assert_string_equal(names.data, "codex_cli,cherry_studio,custom,default");
        ccp_adapters_free(a);
        ccp_buf_free(&names);
        ccp_buf_free(&err);
    }
}

/* ADAPTERS_FILE through ccp_config_load, as the responders read it. */
static void test_adapters_file_from_environment(void **state)
{
    (void)state;
    char old[4096], dir[64];
    assert_non_null(getcwd(old, sizeof old));
    snprintf(dir, sizeof dir, "/tmp/ccp-unit-adp-XXXXXX");
    assert_non_null(mkdtemp(dir));
    assert_int_equal(chdir(dir), 0); /* no stray ./.env */
    char path[4096];
    repo_path(path, sizeof path, "conf/adapters.d/opencat.json");
    char abs_path[8200];
    if (path[0] == '/') snprintf(abs_path, sizeof abs_path, "%s", path);
    else snprintf(abs_path, sizeof abs_path, "%s/%s", old, path);

    unit_env_clear();
    assert_int_equal(setenv("ADAPTERS_FILE", abs_path, 1), 0);
    ccp_config cfg;
    ccp_buf err = {0}, names = {0};
    assert_int_equal(ccp_config_load(&cfg, &ccp_service_claude.config_names, &err), CCP_OK);
    assert_string_equal(cfg.adapters_file, abs_path);
    ccp_adapters *a = NULL;
    assert_int_equal(ccp_adapters_load(&a, "claude", &cfg, &err), CCP_OK);
    described_names(a, &names, NULL);
    assert_string_equal(names.data, "claude_code,cherry_studio,opencat,default");
    ccp_adapters_free(a);
    ccp_config_free(&cfg);

    /* a file that is not there stops the load, naming it */
    assert_int_equal(setenv("ADAPTERS_FILE", "/nonexistent/adapters.json", 1), 0);
    ccp_buf_reset(&err);
    assert_int_equal(ccp_config_load(&cfg, &ccp_service_claude.config_names, &err), CCP_OK);
    assert_int_equal(ccp_adapters_load(&a, "claude", &cfg, &err), CCP_ERR);
    assert_null(a);
    assert_non_null(strstr(ccp_buf_cstr(&err), "/nonexistent/adapters.json"));
    ccp_config_free(&cfg);

    unit_env_clear();
    ccp_buf_free(&err);
    ccp_buf_free(&names);
    assert_int_equal(chdir(old), 0);
    assert_int_equal(rmdir(dir), 0);
}

/* ---- broken adapters files ------------------------------------------------------------ */

typedef struct broken_case {
    const char *name;
    const char *text;
    const char *want[3]; /* substrings of the message, besides the file's path */
} broken_case;

#define ADP(body) "{\"claude\":[" body "]}"
#define NAMED(steps) ADP("{\"name\":\"bad\",\"steps\":[" steps "]}")
#define RULE(r) ADP("{\"name\":\"bad\",\"match\":" r "}")

static const broken_case broken_cases[] = {
    {"JSON syntax error", "{\n  \"claude\": [\n    {\"name\": \"a\",}\n  ]\n}\n", {"not valid JSON", "line 3"}},
    {"JSON syntax error later", "{\n\"claude\": [\n{\"name\": \"a\"},\n\n\n{\"name\" \"b\"}\n]}\n",
     {"not valid JSON", "line 6"}},
    {"JSON cut short", "{\"claude\": [\n", {"not valid JSON", "unexpected end of file"}},
    {"empty file", "", {"not valid JSON"}},
    {"trailing garbage", "{\"claude\":[]} x", {"not valid JSON"}},
    {"top level a list", "[{\"name\":\"a\"}]", {"the top level must be an object"}},
    {"top level a string", "\"claude\"", {"the top level must be an object"}},
    {"unknown top-level key", "{\"claud\":[]}", {"top level", "\"claud\""}},
    {"section not a list", "{\"claude\":{\"name\":\"a\"}}", {"\"claude\" must be a list of adapters"}},
    {"profiles not an object", "{\"profiles\":[],\"claude\":[]}", {"\"profiles\" must be an object"}},
    {"extends something else", "{\"extends\":\"defaults\",\"claude\":[]}", {"\"extends\" may only be \"builtin\""}},
    {"adapter not an object", ADP("{\"name\":\"ok\"},3"), {"adapter #2", "each adapter must be an object"}},
    {"missing name", ADP("{\"priority\":1}"), {"adapter #1", "field \"name\" is required"}},
    {"name not a string", ADP("{\"name\":5}"), {"adapter #1", "field \"name\" must be a string"}},
    {"name empty", ADP("{\"name\":\"\"}"), {"field \"name\" must not be empty"}},
    {"unknown adapter field", ADP("{\"name\":\"bad\",\"prio\":1}"), {"adapter \"bad\"", "unknown", "\"prio\""}},
    {"priority a string", ADP("{\"name\":\"bad\",\"priority\":\"high\"}"), {"adapter \"bad\"", "\"priority\""}},
    {"priority out of range", ADP("{\"name\":\"bad\",\"priority\":10000000}"), {"adapter \"bad\"", "\"priority\""}},
    /* An adapter's keys are fields, not step parameters (and "step" is not one). */
    {"priority named a field", ADP("{\"name\":\"bad\",\"priority\":1.5}"),
     {"field \"priority\" must be a whole number from -1000000 to 1000000"}},
    {"unknown key named a field", ADP("{\"name\":\"bad\",\"step\":\"x\"}"), {"unknown field \"step\""}},
    {"top-level key named a key", "{\"claud\":[]}", {"top level: unknown key \"claud\""}},
    {"version a number", ADP("{\"name\":\"bad\",\"version\":1}"), {"adapter \"bad\"", "field \"version\" must be a string"}},
    {"description a list", ADP("{\"name\":\"bad\",\"description\":[]}"), {"adapter \"bad\"", "\"description\""}},
    {"steps not a list", ADP("{\"name\":\"bad\",\"steps\":{}}"), {"adapter \"bad\"", "field \"steps\" must be a list"}},
    {"step not an object", NAMED("\"identity\""), {"adapter \"bad\"", "step 1 must be an object"}},
    {"step without a name", NAMED("{\"text\":\"x\"}"), {"adapter \"bad\"", "step 1 must be an object with a \"step\""}},
    {"unknown step", NAMED("{\"step\":\"cache_last_message\"},{\"step\":\"prepend\"}"),
     {"adapter \"bad\"", "step 2: unknown step \"prepend\"", "known: set_header"}},
    {"bad step param: type", NAMED("{\"step\":\"prepend_system\",\"text\":1}"),
     {"adapter \"bad\"", "step 1 (prepend_system)", "parameter \"text\" must be a string"}},
    {"bad step param: bool type", NAMED("{\"step\":\"prepend_system\",\"text\":\"x\",\"cache_control\":1}"),
     {"adapter \"bad\"", "step 1 (prepend_system)", "\"cache_control\" must be true or false"}},
    {"bad step param: range", NAMED("{\"step\":\"session\",\"window_hours\":0,\"field\":\"metadata.user_id\"}"),
     {"adapter \"bad\"", "step 1 (session)", "\"window_hours\" must be a whole number from 1 to"}},
    {"bad step param: value", NAMED("{\"step\":\"session\",\"shape\":\"xml\",\"field\":\"metadata.user_id\"}"),
     {"adapter \"bad\"", "step 1 (session)", "\"shape\""}},
    {"bad step param: unknown key", NAMED("{\"step\":\"cache_last_message\",\"max\":4}"),
     {"adapter \"bad\"", "step 1 (cache_last_message)", "unknown parameter \"max\""}},
    {"bad step param: missing", NAMED("{\"step\":\"merge_beta\"}"),
     {"adapter \"bad\"", "step 1 (merge_beta)", "parameter \"values\" is required"}},
    {"identity profile missing", NAMED("{\"step\":\"identity\",\"profile\":\"claude_code\"}"),
     {"adapter \"bad\"", "step 1 (identity)", "profile \"claude_code\" is not defined"}},
    {"identity profile misspelled with extends",
     "{\"extends\":\"builtin\",\"claude\":[{\"name\":\"bad\",\"steps\":[{\"step\":\"identity\",\"profile\":"
     "\"claude-code\"}]}]}",
     {"adapter \"bad\"", "profile \"claude-code\" is not defined"}},
    {"bad match rule: header without a test", RULE("{\"header\":\"user-agent\"}"),
     {"adapter \"bad\"", "header rule \"user-agent\" needs \"contains\", \"prefix\" or \"present\""}},
    {"bad match rule: two tests", RULE("{\"header\":\"user-agent\",\"contains\":\"a\",\"prefix\":\"b\"}"),
     {"adapter \"bad\"", "takes exactly one test"}},
    {"bad match rule: unknown key beside the test", RULE("{\"header\":\"user-agent\",\"contains\":\"a\",\"x\":1}"),
     {"adapter \"bad\"", "takes exactly one test"}},
    {"bad match rule: empty text", RULE("{\"header\":\"user-agent\",\"contains\":\"\"}"),
     {"adapter \"bad\"", "must be a non-empty string"}},
    {"bad match rule: text a number", RULE("{\"header\":\"user-agent\",\"prefix\":5}"),
     {"adapter \"bad\"", "must be a non-empty string"}},
    {"bad match rule: present false", RULE("{\"header\":\"x\",\"present\":false}"),
     {"adapter \"bad\"", "\"present\" must be true"}},
    {"bad match rule: header a number", RULE("{\"header\":1,\"contains\":\"a\"}"),
     {"adapter \"bad\"", "a rule needs \"any\", \"all\", \"body_has\" or \"header\""}},
    {"bad match rule: unknown kind", RULE("{\"header_contains\":\"a\"}"),
     {"adapter \"bad\"", "a rule needs \"any\", \"all\", \"body_has\" or \"header\""}},
    {"bad match rule: any empty", RULE("{\"any\":[]}"), {"adapter \"bad\"", "\"any\"", "non-empty list"}},
    {"bad match rule: all not a list", RULE("{\"all\":{\"header\":\"x\",\"present\":true}}"),
     {"adapter \"bad\"", "\"all\"", "non-empty list"}},
    {"bad match rule: any with a sibling", RULE("{\"any\":[{\"body_has\":\"x\"}],\"all\":[{\"body_has\":\"y\"}]}"),
     {"adapter \"bad\"", "must be the rule's only key"}},
    {"bad match rule: nested bad", RULE("{\"any\":[{\"body_has\":\"x\"},{\"all\":[{\"header\":\"y\"}]}]}"),
     {"adapter \"bad\"", "header rule \"y\""}},
    {"bad match rule: nested not an object", RULE("{\"any\":[\"user-agent\"]}"),
     {"adapter \"bad\"", "each match rule must be an object"}},
    {"bad match rule: body_has empty", RULE("{\"body_has\":\"\"}"), {"adapter \"bad\"", "\"body_has\""}},
    {"bad match rule: body_has with a sibling", RULE("{\"body_has\":\"a\",\"header\":\"b\"}"),
     {"adapter \"bad\"", "\"body_has\" takes a field name and no other key"}},
    {"bad match rule: a string", RULE("\"CherryStudio\""), {"adapter \"bad\"", "each match rule must be an object"}},
    {"bad match rule: too deep",
     RULE("{\"any\":[{\"any\":[{\"any\":[{\"any\":[{\"any\":[{\"any\":[{\"any\":[{\"any\":[{\"any\":[{\"body_has\":"
          "\"x\"}]}]}]}]}]}]}]}]}]}"),
     {"adapter \"bad\"", "nested at most 8 deep"}},
    {"error in a later adapter names it", ADP("{\"name\":\"good\"},{\"name\":\"worse\",\"steps\":[{\"step\":\"nope\"}]}"),
     {"adapter \"worse\"", "unknown step \"nope\""}},
};

static void test_broken_files(void **state)
{
    (void)state;
    int failures = 0;
    for (size_t i = 0; i < UNIT_COUNT(broken_cases); i++) {
        const broken_case *c = &broken_cases[i];
        ccp_adapters *a = (ccp_adapters *)&failures; /* must be reset to NULL */
        ccp_buf err = {0};
        char path[64];
        int rc = load(&a, "claude", c->text, path, &err);
        const char *msg = ccp_buf_cstr(&err);
        bool ok = rc == CCP_ERR && a == NULL && strstr(msg, path) != NULL && strchr(msg, '\n') == NULL;
        for (size_t k = 0; ok && k < UNIT_COUNT(c->want) && c->want[k]; k++) ok = strstr(msg, c->want[k]) != NULL;
        if (!ok) {
            print_error("case \"%s\": rc %d, message \"%s\" (want the path %s and", c->name, rc, msg, path);
            for (size_t k = 0; k < UNIT_COUNT(c->want) && c->want[k]; k++) print_error(" \"%s\"", c->want[k]);
            print_error(")\n");
            failures++;
        }
        if (rc == CCP_OK && a) ccp_adapters_free(a);
        ccp_buf_free(&err);
    }
    assert_int_equal(failures, 0);
}

/* The claude binary validates only its own section: a broken codex section
 * is the codex binary's to report (and it does). */
static void test_broken_section_reported_by_its_service(void **state)
{
    (void)state;
    const char *file = "{\"claude\":[{\"name\":\"fine\"}],\"codex\":[{\"name\":\"bad\",\"steps\":[{\"step\":\"x\"}]}]}";
    ccp_adapters *a = NULL;
    ccp_buf err = {0};
    char path[64];
    assert_int_equal(load(&a, "codex", file, path, &err), CCP_ERR);
    assert_non_null(strstr(err.data, path));
    assert_non_null(strstr(err.data, "codex adapter \"bad\""));
    assert_non_null(strstr(err.data, "unknown step \"x\""));
    ccp_buf_free(&err);
}

/* ---- a whole adapter on a request ---------------------------------------------------------- */

static void test_cherry_studio_pipeline(void **state)
{
    (void)state;
    ccp_adapters *a = load_ok("claude", NULL);
    ccp_request r;
    request_with(&r, "user-agent: CherryStudio/1.5.3");
    const char *in = "{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":1024,\"system\":\"Be brief.\","
                     "\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}],\"thinking\":{\"type\":\"enabled\","
                     "\"budget_tokens\":2048},\"stream\":true}";
    json_object *body = json_tokener_parse(in);
    ccp_buf err = {0};
    const ccp_adapter *ad = ccp_adapters_select(a, &r, body, &err);
    assert_non_null(ad);
    assert_string_equal(ccp_adapter_name(ad), "cherry_studio");
    ccp_headers up = {0};
    ccp_headers_add(&up, "anthropic-version", "2023-06-01");
    ccp_headers_add(&up, "user-agent", "CherryStudio/1.5.3");
    ccp_headers_add(&up, "anthropic-beta", "output-128k-2025-02-19,interleaved-thinking-2025-05-14");
    ccp_headers_add(&up, "x-api-key", "sk-pipe");
    ccp_config cfg;
    memset(&cfg, 0, sizeof cfg);
    ccp_transform t = {.cfg = &cfg, .req = &r, .client_key = "sk-pipe", .body = body, .upstream_headers = &up};
    ccp_session_ids before, after;
    ccp_session_derive("sk-pipe", NULL, "claude-session", 12 * 3600, time(NULL), &before);
    assert_int_equal(ccp_adapter_apply(ad, &t, &err), CCP_OK);
    ccp_session_derive("sk-pipe", NULL, "claude-session", 12 * 3600, time(NULL), &after);
    assert_true(t.body_changed);
    assert_false(t.aggregate_stream);

    char want[2][2048];
    const ccp_session_ids *ids[] = {&before, &after};
    for (int k = 0; k < 2; k++)
        snprintf(want[k], sizeof want[k],
                 "{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":1024,\"system\":[{\"type\":\"text\",\"text\":\"" CCT
                 "\",\"cache_control\":" EPH "},{\"type\":\"text\",\"text\":\"Be brief.\"}],\"messages\":[{\"role\":"
                 "\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Hello\",\"cache_control\":" EPH "}]}],"
                 "\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":2048},\"stream\":true,\"metadata\":{\"user_id\":"
                 "\"user_%s_account__session_%s\"}}",
                 ids[k]->device_hex, ids[k]->session_uuid);
    const char *got = json_object_to_json_string_ext(body, JSON_FLAGS);
    if (strcmp(got, want[0]) && strcmp(got, want[1])) print_error("got:  %s\nwant: %s\n", got, want[0]);
    assert_true(strcmp(got, want[0]) == 0 || strcmp(got, want[1]) == 0);

    ccp_buf h = {0};
    for (size_t i = 0; i < up.count; i++) ccp_buf_printf(&h, "%s: %s\n", up.items[i].name, up.items[i].value);
    assert_string_equal(h.data, "anthropic-version: 2023-06-01\n"
                                "user-agent: claude-cli/2.1.197 (external, cli)\n"
                                "anthropic-beta: output-128k-2025-02-19,interleaved-thinking-2025-05-14,"
                                "prompt-caching-2024-07-31,claude-code-20250219\n"
                                "x-api-key: sk-pipe\n"
                                "x-app: cli\n");
    ccp_buf_free(&h);
    ccp_headers_free(&up);
    json_object_put(body);
    ccp_buf_free(&err);
    ccp_request_free(&r);
    ccp_adapters_free(a);
}

/* An adapter without steps changes nothing at all. */
static void test_claude_code_adapter_touches_nothing(void **state)
{
    (void)state;
    ccp_adapters *a = load_ok("claude", NULL);
    const ccp_adapter *ad = by_name(a, "claude_code");
    const char *in = "{\"model\":\"m\",\"system\":[{\"type\":\"text\",\"text\":\"x-anthropic-billing-header: cc\"}],"
                     "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"metadata\":{\"user_id\":\"u\"}}";
    json_object *body = json_tokener_parse(in);
    ccp_headers up = {0};
    ccp_headers_add(&up, "user-agent", "claude-cli/2.1.197 (external, sdk-cli)");
    ccp_headers_add(&up, "anthropic-beta", "claude-code-20250219");
    ccp_config cfg;
    memset(&cfg, 0, sizeof cfg);
    ccp_transform t = {.cfg = &cfg, .client_key = "k", .body = body, .upstream_headers = &up};
    ccp_buf err = {0};
    assert_int_equal(ccp_adapter_apply(ad, &t, &err), CCP_OK);
    assert_false(t.body_changed);
    json_object *orig = json_tokener_parse(in);
    assert_true(json_object_equal(orig, body));
    assert_int_equal(up.count, 2);
    assert_string_equal(up.items[0].value, "claude-cli/2.1.197 (external, sdk-cli)");
    assert_string_equal(up.items[1].value, "claude-code-20250219");
    json_object_put(orig);
    json_object_put(body);
    ccp_headers_free(&up);
    ccp_buf_free(&err);
    ccp_adapters_free(a);
}

/* A step's refusal stops the adapter with the step's message. */
static void test_apply_error_stops(void **state)
{
    (void)state;
    ccp_adapters *a = load_ok("claude", NULL);
    const ccp_adapter *ad = by_name(a, "cherry_studio");
    json_object *body = json_tokener_parse("{\"system\":5,\"messages\":[]}");
    ccp_headers up = {0};
    ccp_config cfg;
    memset(&cfg, 0, sizeof cfg);
    ccp_transform t = {.cfg = &cfg, .client_key = "k", .body = body, .upstream_headers = &up};
    ccp_buf err = {0};
    assert_int_equal(ccp_adapter_apply(ad, &t, &err), CCP_ERR);
    assert_non_null(strstr(err.data, "system: must be a string or a list"));
    assert_int_equal(up.count, 0); /* the header steps after it did not run */
    json_object_put(body);
    ccp_headers_free(&up);
    ccp_buf_free(&err);
    ccp_adapters_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builtin_claude_table),
        cmocka_unit_test(test_builtin_codex_table),
        cmocka_unit_test(test_service_without_section),
        cmocka_unit_test(test_builtin_selection),
        cmocka_unit_test(test_match_rules),
        cmocka_unit_test(test_describe_escapes),
        cmocka_unit_test(test_extends_builtin_adds_and_overrides),
        cmocka_unit_test(test_extends_builtin_profile_update_applies),
        cmocka_unit_test(test_user_file_replaces_builtin),
        cmocka_unit_test(test_adapters_d_examples_load),
        cmocka_unit_test(test_adapters_file_from_environment),
        cmocka_unit_test(test_broken_files),
        cmocka_unit_test(test_broken_section_reported_by_its_service),
        cmocka_unit_test(test_cherry_studio_pipeline),
        cmocka_unit_test(test_claude_code_adapter_touches_nothing),
        cmocka_unit_test(test_apply_error_stops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
