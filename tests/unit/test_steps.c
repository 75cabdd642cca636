/* steps (Claude family and the common header steps): prepend_system,
 * cache_last_message, merge_beta, set_header, identity, and the header
 * helpers ccp_headers_set_spelled / ccp_headers_merge_list.
 *
 * Table-driven: each body case loads one step with its parameters (JSON),
 * applies it to a parsed body and compares the result serialised plain, or
 * the error message. After every case the whole body is searched (nested
 * blocks too) for cache_control markers: never more than the API's 4. */
#include "unit.h"

#include <json-c/json.h>
#include <strings.h>

#include "../../common/adapter.h"
#include "../../common/config.h"
#include "../../common/steps.h"

extern const char ccp_builtin_adapters_json[];

#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

#define CCT "You are Claude Code, Anthropic's official CLI for Claude."
#define EPH "{\"type\":\"ephemeral\"}"
#define B_CC "{\"type\":\"text\",\"text\":\"" CCT "\",\"cache_control\":" EPH "}"
#define B_PLAIN "{\"type\":\"text\",\"text\":\"" CCT "\"}"
#define P_ON "{\"text\":\"" CCT "\",\"cache_control\":true}"
#define P_OFF "{\"text\":\"" CCT "\",\"cache_control\":false}"
#define P_DEFAULT "{\"text\":\"" CCT "\"}"
/* A marked block / tool, for breakpoint counts. */
#define MB(t) "{\"type\":\"text\",\"text\":\"" t "\",\"cache_control\":" EPH "}"
#define MT(n) "{\"name\":\"" n "\",\"input_schema\":{},\"cache_control\":" EPH "}"
#define USER(c) "{\"role\":\"user\",\"content\":" c "}"

static ccp_config cfg;          /* zeroed: the steps here read nothing from it */
static json_object *profiles;   /* the built-in file's profiles */

static int group_setup(void **state)
{
    (void)state;
    json_object *root = json_tokener_parse(ccp_builtin_adapters_json);
    if (!root) return -1;
    json_object *p;
    if (!json_object_object_get_ex(root, "profiles", &p)) return -1;
    profiles = json_object_get(p);
    json_object_put(root);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    json_object_put(profiles);
    return 0;
}

/* ---- harness ----------------------------------------------------------------- */

static void *load_step(const char *step, const char *params, ccp_buf *err)
{
    const ccp_step_type *type = ccp_step_find(step);
    if (!type) {
        print_error("no step type \"%s\"\n", step);
        fail();
    }
    json_object *p = json_tokener_parse(params ? params : "{}");
    if (!p) {
        print_error("test params are not JSON: %s\n", params);
        fail();
    }
    json_object_object_add(p, "step", json_object_new_string(step));
    ccp_step_env env = {profiles, &cfg, "test"};
    void *s = type->load(p, &env, err);
    json_object_put(p);
    return s;
}

/* cache_control markers anywhere in v (non-null values only). */
static int count_markers_deep(json_object *v)
{
    int n = 0;
    if (json_object_is_type(v, json_type_object)) {
        json_object_object_foreach(v, key, val)
        {
            if (strcmp(key, "cache_control") == 0 && !json_object_is_type(val, json_type_null)) n++;
            else n += count_markers_deep(val);
        }
    } else if (json_object_is_type(v, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(v); i++) n += count_markers_deep(json_object_array_get_idx(v, i));
    }
    return n;
}

typedef struct body_case {
    const char *name;
    const char *step;
    const char *params; /* NULL: {} */
    const char *body;
    const char *want; /* the body after; NULL: unchanged (and body_changed stays false) */
    const char *err;  /* non-NULL: apply fails with a message containing this */
} body_case;

static void run_body_cases(const body_case *cases, size_t n)
{
    int failures = 0;
    for (size_t i = 0; i < n; i++) {
        const body_case *c = &cases[i];
        ccp_buf err = {0};
        void *state = load_step(c->step, c->params, &err);
        if (!state) {
            print_error("case \"%s\": load failed: %s\n", c->name, ccp_buf_cstr(&err));
            fail();
        }
        json_object *body = json_tokener_parse(c->body);
        if (!body) {
            print_error("case \"%s\": the test body is not JSON\n", c->name);
            fail();
        }
        int before = count_markers_deep(body);
        ccp_headers headers = {0};
        ccp_transform t = {.cfg = &cfg, .client_key = "sk-test", .body = body, .upstream_headers = &headers};
        int rc = ccp_step_find(c->step)->apply(state, &t, &err);
        if (c->err) {
            if (rc != CCP_ERR || !strstr(ccp_buf_cstr(&err), c->err)) {
                print_error("case \"%s\": want error containing \"%s\", got rc %d \"%s\"\n", c->name, c->err, rc,
                            ccp_buf_cstr(&err));
                failures++;
            }
        } else if (rc != CCP_OK) {
            print_error("case \"%s\": unexpected error \"%s\"\n", c->name, ccp_buf_cstr(&err));
            failures++;
        } else {
            json_object *orig = json_tokener_parse(c->body);
            const char *want = c->want ? c->want : json_object_to_json_string_ext(orig, JSON_FLAGS);
            const char *got = json_object_to_json_string_ext(body, JSON_FLAGS);
            if (strcmp(got, want) != 0) {
                print_error("case \"%s\":\n  got:  %s\n  want: %s\n", c->name, got, want);
                failures++;
            }
            if (!c->want && t.body_changed) {
                print_error("case \"%s\": body unchanged but body_changed set\n", c->name);
                failures++;
            }
            if (c->want && !t.body_changed) {
                print_error("case \"%s\": body changed but body_changed not set\n", c->name);
                failures++;
            }
            int after = count_markers_deep(body);
            if (after > 4 && after > before) {
                print_error("case \"%s\": %d cache_control breakpoints after the step (API limit 4; %d before)\n",
                            c->name, after, before);
                failures++;
            }
            json_object_put(orig);
        }
        if (headers.count) {
            print_error("case \"%s\": a body step touched the headers\n", c->name);
            failures++;
        }
        ccp_headers_free(&headers);
        json_object_put(body);
        ccp_step_find(c->step)->free(state);
        ccp_buf_free(&err);
    }
    assert_int_equal(failures, 0);
}

/* ---- prepend_system ------------------------------------------------------------ */

static const body_case prepend_cases[] = {
    {"system absent", "prepend_system", P_ON, "{\"model\":\"m\"}", "{\"model\":\"m\",\"system\":[" B_CC "]}", NULL},
    {"system null, in place", "prepend_system", P_ON, "{\"system\":null,\"model\":\"m\"}",
     "{\"system\":[" B_CC "],\"model\":\"m\"}", NULL},
    {"system a string", "prepend_system", P_ON, "{\"model\":\"m\",\"system\":\"Be kind.\",\"max_tokens\":1}",
     "{\"model\":\"m\",\"system\":[" B_CC ",{\"type\":\"text\",\"text\":\"Be kind.\"}],\"max_tokens\":1}", NULL},
    {"system a string equal to the text", "prepend_system", P_ON, "{\"system\":\"" CCT "\"}",
     "{\"system\":[" B_CC "]}", NULL},
    {"system an empty string", "prepend_system", P_ON, "{\"system\":\"\"}", "{\"system\":[" B_CC "]}", NULL},
    {"system a list", "prepend_system", P_ON,
     "{\"system\":[{\"type\":\"text\",\"text\":\"A\"},{\"type\":\"text\",\"text\":\"B\"}]}",
     "{\"system\":[" B_CC ",{\"type\":\"text\",\"text\":\"A\"},{\"type\":\"text\",\"text\":\"B\"}]}", NULL},
    {"system an empty list", "prepend_system", P_ON, "{\"system\":[]}", "{\"system\":[" B_CC "]}", NULL},
    {"list already prefixed (no marker)", "prepend_system", P_ON,
     "{\"system\":[" B_PLAIN ",{\"type\":\"text\",\"text\":\"A\"}]}", NULL, NULL},
    {"list already prefixed (marked)", "prepend_system", P_ON, "{\"system\":[" B_CC "]}", NULL, NULL},
    {"list already prefixed, step without cache_control", "prepend_system", P_OFF, "{\"system\":[" B_CC "]}", NULL,
     NULL},
    {"first block is the text with another type", "prepend_system", P_ON,
     "{\"system\":[{\"type\":\"input_text\",\"text\":\"" CCT "\"}]}",
     "{\"system\":[" B_CC ",{\"type\":\"input_text\",\"text\":\"" CCT "\"}]}", NULL},
    {"the text second, not first", "prepend_system", P_ON,
     "{\"system\":[{\"type\":\"text\",\"text\":\"A\"}," B_PLAIN "]}",
     "{\"system\":[" B_CC ",{\"type\":\"text\",\"text\":\"A\"}," B_PLAIN "]}", NULL},
    {"first block a prefix of the text only", "prepend_system", P_ON,
     "{\"system\":[{\"type\":\"text\",\"text\":\"You are Claude Code\"}]}",
     "{\"system\":[" B_CC ",{\"type\":\"text\",\"text\":\"You are Claude Code\"}]}", NULL},
    {"system a number", "prepend_system", P_ON, "{\"system\":42}", NULL, "system: must be a string or a list"},
    {"system an object", "prepend_system", P_ON, "{\"system\":{\"type\":\"text\"}}", NULL, "system: must be"},
    {"system a boolean", "prepend_system", P_ON, "{\"system\":true}", NULL, "system: must be"},
    {"cache_control off: string", "prepend_system", P_OFF, "{\"system\":\"S\"}",
     "{\"system\":[" B_PLAIN ",{\"type\":\"text\",\"text\":\"S\"}]}", NULL},
    {"cache_control off: absent", "prepend_system", P_OFF, "{}", "{\"system\":[" B_PLAIN "]}", NULL},
    {"cache_control default is off", "prepend_system", P_DEFAULT, "{}", "{\"system\":[" B_PLAIN "]}", NULL},
    /* breakpoints: the prepended block is marked only while fewer than 4 exist */
    {"0 breakpoints", "prepend_system", P_ON, "{\"system\":[{\"type\":\"text\",\"text\":\"A\"}]}",
     "{\"system\":[" B_CC ",{\"type\":\"text\",\"text\":\"A\"}]}", NULL},
    {"1 breakpoint (system)", "prepend_system", P_ON, "{\"system\":[" MB("A") "]}",
     "{\"system\":[" B_CC "," MB("A") "]}", NULL},
    {"2 breakpoints (system, tools)", "prepend_system", P_ON, "{\"system\":[" MB("A") "],\"tools\":[" MT("t") "]}",
     "{\"system\":[" B_CC "," MB("A") "],\"tools\":[" MT("t") "]}", NULL},
    {"3 breakpoints (system, tools, messages)", "prepend_system", P_ON,
     "{\"system\":[" MB("A") "],\"tools\":[" MT("t") "],\"messages\":[" USER("[" MB("u") "]") "]}",
     "{\"system\":[" B_CC "," MB("A") "],\"tools\":[" MT("t") "],\"messages\":[" USER("[" MB("u") "]") "]}", NULL},
    {"4 breakpoints (system, tools, messages): no marker", "prepend_system", P_ON,
     "{\"system\":[" MB("A") "],\"tools\":[" MT("t") "," MT("v") "],\"messages\":[" USER("[" MB("u") "]") "]}",
     "{\"system\":[" B_PLAIN "," MB("A") "],\"tools\":[" MT("t") "," MT("v") "],\"messages\":[" USER(
         "[" MB("u") "]") "]}",
     NULL},
    {"4 breakpoints all in messages, string system: no marker", "prepend_system", P_ON,
     "{\"system\":\"S\",\"messages\":[" USER("[" MB("a") "," MB("b") "]") "," USER("[" MB("c") "," MB("d") "]") "]}",
     "{\"system\":[" B_PLAIN ",{\"type\":\"text\",\"text\":\"S\"}],\"messages\":[" USER(
         "[" MB("a") "," MB("b") "]") "," USER("[" MB("c") "," MB("d") "]") "]}",
     NULL},
    {"4 breakpoints all in tools: no marker", "prepend_system", P_ON,
     "{\"tools\":[" MT("a") "," MT("b") "," MT("c") "," MT("d") "]}",
     "{\"tools\":[" MT("a") "," MT("b") "," MT("c") "," MT("d") "],\"system\":[" B_PLAIN "]}", NULL},
    {"cache_control null does not count", "prepend_system", P_ON,
     "{\"tools\":[{\"name\":\"a\",\"cache_control\":null},{\"name\":\"b\",\"cache_control\":null},{\"name\":\"c\","
     "\"cache_control\":null},{\"name\":\"d\",\"cache_control\":null}]}",
     "{\"tools\":[{\"name\":\"a\",\"cache_control\":null},{\"name\":\"b\",\"cache_control\":null},{\"name\":\"c\","
     "\"cache_control\":null},{\"name\":\"d\",\"cache_control\":null}],\"system\":[" B_CC "]}",
     NULL},
    /* a marker nested in a tool_result's content is a breakpoint the API counts */
    {"4 breakpoints, one nested in a tool_result: no marker", "prepend_system", P_ON,
     "{\"system\":[" MB("A") "],\"tools\":[" MT("t") "],\"messages\":[" USER(
         "[{\"type\":\"tool_result\",\"tool_use_id\":\"x\",\"content\":[" MB("r") "]}," MB("u") "]") "]}",
     "{\"system\":[" B_PLAIN "," MB("A") "],\"tools\":[" MT("t") "],\"messages\":[" USER(
         "[{\"type\":\"tool_result\",\"tool_use_id\":\"x\",\"content\":[" MB("r") "]}," MB("u") "]") "]}",
     NULL},
};

static void test_prepend_system_table(void **state)
{
    (void)state;
    run_body_cases(prepend_cases, UNIT_COUNT(prepend_cases));
}

/* No body (a GET, or a body not parsed): nothing to do, no error. */
static void test_prepend_system_without_body(void **state)
{
    (void)state;
    ccp_buf err = {0};
    void *s = load_step("prepend_system", P_ON, &err);
    assert_non_null(s);
    ccp_headers h = {0};
    ccp_transform t = {.cfg = &cfg, .client_key = "k", .upstream_headers = &h};
    assert_int_equal(ccp_step_find("prepend_system")->apply(s, &t, &err), CCP_OK);
    assert_false(t.body_changed);
    ccp_step_find("prepend_system")->free(s);
    ccp_buf_free(&err);
}

/* The same state applied to many bodies: nothing leaks between requests. */
static void test_prepend_system_state_is_reusable(void **state)
{
    (void)state;
    ccp_buf err = {0};
    void *s = load_step("prepend_system", P_ON, &err);
    assert_non_null(s);
    for (int round = 0; round < 3; round++) {
        json_object *body = json_tokener_parse("{\"system\":\"S\"}");
        ccp_headers h = {0};
        ccp_transform t = {.cfg = &cfg, .client_key = "k", .body = body, .upstream_headers = &h};
        assert_int_equal(ccp_step_find("prepend_system")->apply(s, &t, &err), CCP_OK);
        json_object *sys = json_object_object_get(body, "system");
        /* a change to this request's block must not reach the next request */
        json_object_object_add(json_object_array_get_idx(sys, 0), "text", json_object_new_string("changed"));
        json_object_put(body);
    }
    json_object *body = json_tokener_parse("{}");
    ccp_headers h = {0};
    ccp_transform t = {.cfg = &cfg, .client_key = "k", .body = body, .upstream_headers = &h};
    assert_int_equal(ccp_step_find("prepend_system")->apply(s, &t, &err), CCP_OK);
    assert_string_equal(json_object_to_json_string_ext(body, JSON_FLAGS), "{\"system\":[" B_CC "]}");
    json_object_put(body);
    ccp_step_find("prepend_system")->free(s);
    ccp_buf_free(&err);
}

/* ---- cache_last_message ------------------------------------------------------------ */

#define CLM "cache_last_message"
#define T(x) "{\"type\":\"text\",\"text\":\"" x "\"}"
#define TCC(x) "{\"type\":\"text\",\"text\":\"" x "\",\"cache_control\":" EPH "}"

static const body_case cache_last_cases[] = {
    {"last message a string", CLM, NULL, "{\"messages\":[" USER("\"hi\"") "]}",
     "{\"messages\":[" USER("[" TCC("hi") "]") "]}", NULL},
    {"last message a list", CLM, NULL, "{\"messages\":[" USER("[" T("a") "," T("b") "]") "]}",
     "{\"messages\":[" USER("[" T("a") "," TCC("b") "]") "]}", NULL},
    {"only the last message", CLM, NULL,
     "{\"messages\":[" USER("\"one\"") ",{\"role\":\"assistant\",\"content\":\"two\"}," USER("\"three\"") "]}",
     "{\"messages\":[" USER("\"one\"") ",{\"role\":\"assistant\",\"content\":\"two\"}," USER("[" TCC("three") "]") "]}",
     NULL},
    {"keys of the last block keep their order", CLM, NULL,
     "{\"messages\":[" USER("[{\"text\":\"x\",\"type\":\"text\"}]") "]}",
     "{\"messages\":[" USER("[{\"text\":\"x\",\"type\":\"text\",\"cache_control\":" EPH "}]") "]}", NULL},
    {"already marked", CLM, NULL, "{\"messages\":[" USER("[" T("a") "," TCC("b") "]") "]}", NULL, NULL},
    {"already marked with a ttl", CLM, NULL,
     "{\"messages\":[" USER("[{\"type\":\"text\",\"text\":\"b\",\"cache_control\":{\"type\":\"ephemeral\","
                            "\"ttl\":\"1h\"}}]") "]}",
     NULL, NULL},
    {"empty string", CLM, NULL, "{\"messages\":[" USER("\"\"") "]}", NULL, NULL},
    {"empty text block last", CLM, NULL, "{\"messages\":[" USER("[" T("a") "," T("") "]") "]}", NULL, NULL},
    {"thinking last block", CLM, NULL,
     "{\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"thinking\",\"thinking\":\"hm\","
     "\"signature\":\"s\"}]}]}",
     NULL, NULL},
    {"redacted_thinking last block", CLM, NULL,
     "{\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"redacted_thinking\",\"data\":\"d\"}]}]}", NULL,
     NULL},
    {"tool_result last block", CLM, NULL,
     "{\"messages\":[" USER("[{\"type\":\"tool_result\",\"tool_use_id\":\"t1\",\"content\":\"42\"}]") "]}",
     "{\"messages\":[" USER("[{\"type\":\"tool_result\",\"tool_use_id\":\"t1\",\"content\":\"42\",\"cache_control\":" EPH
                            "}]") "]}",
     NULL},
    {"image last block", CLM, NULL,
     "{\"messages\":[" USER("[{\"type\":\"image\",\"source\":{\"type\":\"url\",\"url\":\"u\"}}]") "]}",
     "{\"messages\":[" USER("[{\"type\":\"image\",\"source\":{\"type\":\"url\",\"url\":\"u\"},\"cache_control\":" EPH
                            "}]") "]}",
     NULL},
    {"empty list", CLM, NULL, "{\"messages\":[" USER("[]") "]}", NULL, NULL},
    {"no messages field", CLM, NULL, "{\"model\":\"m\"}", NULL, NULL},
    {"messages empty", CLM, NULL, "{\"messages\":[]}", NULL, NULL},
    {"messages not a list", CLM, NULL, "{\"messages\":\"hi\"}", NULL, NULL},
    {"last message without content", CLM, NULL, "{\"messages\":[{\"role\":\"user\"}]}", NULL, NULL},
    {"last message not an object", CLM, NULL, "{\"messages\":[\"hi\"]}", NULL, NULL},
    {"content a number", CLM, NULL, "{\"messages\":[" USER("7") "]}", NULL, NULL},
    {"last block not an object", CLM, NULL, "{\"messages\":[" USER("[\"x\"]") "]}", NULL, NULL},
    /* breakpoints across system, tools and messages */
    {"0 breakpoints", CLM, NULL, "{\"system\":[" T("s") "],\"tools\":[{\"name\":\"t\"}],\"messages\":[" USER("\"q\"") "]}",
     "{\"system\":[" T("s") "],\"tools\":[{\"name\":\"t\"}],\"messages\":[" USER("[" TCC("q") "]") "]}", NULL},
    {"1 breakpoint (system)", CLM, NULL, "{\"system\":[" MB("s") "],\"messages\":[" USER("\"q\"") "]}",
     "{\"system\":[" MB("s") "],\"messages\":[" USER("[" TCC("q") "]") "]}", NULL},
    {"2 breakpoints (system, tools)", CLM, NULL,
     "{\"system\":[" MB("s") "],\"tools\":[" MT("t") "],\"messages\":[" USER("\"q\"") "]}",
     "{\"system\":[" MB("s") "],\"tools\":[" MT("t") "],\"messages\":[" USER("[" TCC("q") "]") "]}", NULL},
    {"3 breakpoints (system, tools, an earlier message)", CLM, NULL,
     "{\"system\":[" MB("s") "],\"tools\":[" MT("t") "],\"messages\":[" USER("[" MB("a") "]") "," USER("\"q\"") "]}",
     "{\"system\":[" MB("s") "],\"tools\":[" MT("t") "],\"messages\":[" USER("[" MB("a") "]") "," USER(
         "[" TCC("q") "]") "]}",
     NULL},
    {"4 breakpoints (system 2, tools 1, messages 1): skipped", CLM, NULL,
     "{\"system\":[" MB("s") "," MB("r") "],\"tools\":[" MT("t") "],\"messages\":[" USER("[" MB("a") "]") "," USER(
         "\"q\"") "]}",
     NULL, NULL},
    {"4 breakpoints all in system: skipped (list)", CLM, NULL,
     "{\"system\":[" MB("a") "," MB("b") "," MB("c") "," MB("d") "],\"messages\":[" USER("[" T("q") "]") "]}", NULL,
     NULL},
    {"4 breakpoints all in tools: skipped", CLM, NULL,
     "{\"tools\":[" MT("a") "," MT("b") "," MT("c") "," MT("d") "],\"messages\":[" USER("\"q\"") "]}", NULL, NULL},
    {"4 breakpoints in the last message itself: skipped", CLM, NULL,
     "{\"messages\":[" USER("[" MB("a") "," MB("b") "," MB("c") "," MB("d") "," T("q") "]") "]}", NULL, NULL},
    {"3 breakpoints + one nested in a tool_result: skipped", CLM, NULL,
     "{\"system\":[" MB("s") "],\"tools\":[" MT("t") "],\"messages\":[" USER(
         "[{\"type\":\"tool_result\",\"tool_use_id\":\"x\",\"content\":[" MB("r") "]}]") "," USER("[" MB("a") "]") ","
         USER("[" T("q") "]") "]}",
     NULL, NULL},
};

static void test_cache_last_message_table(void **state)
{
    (void)state;
    run_body_cases(cache_last_cases, UNIT_COUNT(cache_last_cases));
}

/* The Claude Code adapter sequence on a CherryStudio-like body: at most 4
 * breakpoints whatever the client already marked. */
static void test_prepend_then_cache_never_exceed_four(void **state)
{
    (void)state;
    int failures = 0;
    for (int sys = 0; sys <= 4; sys++)
        for (int tools = 0; sys + tools <= 4; tools++)
            for (int msgs = 0; sys + tools + msgs <= 4; msgs++) {
                json_object *body = json_object_new_object();
                json_object *s = json_object_new_array(), *tl = json_object_new_array(), *m = json_object_new_array();
                for (int i = 0; i < 4; i++) {
                    json_object *b = json_tokener_parse(i < sys ? MB("s") : T("s"));
                    json_object_array_add(s, b);
                    json_object_array_add(tl, json_tokener_parse(i < tools ? MT("t") : "{\"name\":\"t\"}"));
                }
                json_object *content = json_object_new_array();
                for (int i = 0; i < msgs; i++) json_object_array_add(content, json_tokener_parse(MB("m")));
                json_object *um = json_object_new_object();
                json_object_object_add(um, "role", json_object_new_string("user"));
                json_object_object_add(um, "content", content);
                json_object_array_add(m, um);
                json_object_array_add(m, json_tokener_parse(USER("\"last\"")));
                json_object_object_add(body, "system", s);
                json_object_object_add(body, "tools", tl);
                json_object_object_add(body, "messages", m);

                ccp_buf err = {0};
                void *ps = load_step("prepend_system", P_ON, &err), *cs = load_step(CLM, NULL, &err);
                assert_non_null(ps);
                assert_non_null(cs);
                ccp_headers h = {0};
                ccp_transform t = {.cfg = &cfg, .client_key = "k", .body = body, .upstream_headers = &h};
                assert_int_equal(ccp_step_find("prepend_system")->apply(ps, &t, &err), CCP_OK);
                assert_int_equal(ccp_step_find(CLM)->apply(cs, &t, &err), CCP_OK);
                int existing = sys + tools + msgs, after = count_markers_deep(body);
                /* both markers go in while there is room, the system one first */
                int want = existing + 2 <= 4 ? existing + 2 : 4;
                if (after != want) {
                    print_error("system %d, tools %d, messages %d: %d breakpoints after, want %d\n", sys, tools,
                                msgs, after, want);
                    failures++;
                }
                json_object *first = json_object_array_get_idx(json_object_object_get(body, "system"), 0);
                bool sys_marked = json_object_object_get_ex(first, "cache_control", NULL);
                if (sys_marked != (existing < 4)) {
                    print_error("system %d, tools %d, messages %d: prepended block marked %d\n", sys, tools, msgs,
                                (int)sys_marked);
                    failures++;
                }
                ccp_step_find("prepend_system")->free(ps);
                ccp_step_find(CLM)->free(cs);
                ccp_buf_free(&err);
                json_object_put(body);
            }
    assert_int_equal(failures, 0);
}

/* ---- loading parameters ---------------------------------------------------------- */

typedef struct load_case {
    const char *name;
    const char *step;
    const char *params;
    const char *err; /* NULL: loads */
} load_case;

static const load_case load_cases[] = {
    {"prepend_system ok", "prepend_system", P_ON, NULL},
    {"prepend_system text missing", "prepend_system", "{}", "parameter \"text\" is required"},
    {"prepend_system text a number", "prepend_system", "{\"text\":1}", "parameter \"text\" must be a string"},
    {"prepend_system text empty", "prepend_system", "{\"text\":\"\"}", "\"text\" must not be empty"},
    {"prepend_system cache_control a string", "prepend_system", "{\"text\":\"x\",\"cache_control\":\"yes\"}",
     "parameter \"cache_control\" must be true or false"},
    {"prepend_system unknown key", "prepend_system", "{\"text\":\"x\",\"cache\":true}", "unknown parameter \"cache\""},
    {"cache_last_message ok", CLM, "{}", NULL},
    {"cache_last_message unknown key", CLM, "{\"limit\":3}", "unknown parameter \"limit\""},
    {"merge_beta ok", "merge_beta", "{\"values\":\"a,b\"}", NULL},
    {"merge_beta other header", "merge_beta", "{\"values\":\"a\",\"header\":\"x-list\"}", NULL},
    {"merge_beta values missing", "merge_beta", "{}", "parameter \"values\" is required"},
    {"merge_beta values empty", "merge_beta", "{\"values\":\"\"}", "non-empty"},
    {"merge_beta values a list", "merge_beta", "{\"values\":[\"a\"]}", "parameter \"values\" must be a string"},
    {"merge_beta values with a line break", "merge_beta", "{\"values\":\"a\\r\\nx-evil: 1\"}", "values must be"},
    {"merge_beta bad header name", "merge_beta", "{\"values\":\"a\",\"header\":\"a b\"}", "header \"a b\""},
    {"set_header ok", "set_header", "{\"name\":\"x-app\",\"value\":\"cli\"}", NULL},
    {"set_header name missing", "set_header", "{\"value\":\"cli\"}", "parameter \"name\" is required"},
    {"set_header value missing", "set_header", "{\"name\":\"x\"}", "parameter \"value\" is required"},
    {"set_header value a number", "set_header", "{\"name\":\"x\",\"value\":1}", "\"value\" must be a string"},
    {"set_header name with a colon", "set_header", "{\"name\":\"x:y\",\"value\":\"v\"}", "not a valid header"},
    {"set_header empty name", "set_header", "{\"name\":\"\",\"value\":\"v\"}", "not a valid header"},
    {"set_header value with LF", "set_header", "{\"name\":\"x\",\"value\":\"a\\nb\"}", "not a valid header"},
    /* A JSON string can hold NUL; the C string would silently end there. */
    {"set_header value with NUL", "set_header", "{\"name\":\"x\",\"value\":\"a\\u0000b\"}",
     "parameter \"value\" must not contain a NUL character"},
    {"set_header unknown key", "set_header", "{\"name\":\"x\",\"value\":\"v\",\"when\":1}", "unknown parameter \"when\""},
    {"identity claude_code", "identity", "{\"profile\":\"claude_code\"}", NULL},
    {"identity codex", "identity", "{\"profile\":\"codex\"}", NULL},
    {"identity profile missing", "identity", "{\"profile\":\"nope\"}", "profile \"nope\" is not defined"},
    {"identity no profile param", "identity", "{}", "parameter \"profile\" is required"},
    {"identity profile a number", "identity", "{\"profile\":3}", "parameter \"profile\" must be a string"},
};

static void test_load_parameters_table(void **state)
{
    (void)state;
    int failures = 0;
    for (size_t i = 0; i < UNIT_COUNT(load_cases); i++) {
        const load_case *c = &load_cases[i];
        ccp_buf err = {0};
        void *s = load_step(c->step, c->params, &err);
        if (c->err) {
            if (s || !strstr(ccp_buf_cstr(&err), c->err)) {
                print_error("case \"%s\": want load error containing \"%s\", got %s \"%s\"\n", c->name, c->err,
                            s ? "a state" : "error", ccp_buf_cstr(&err));
                failures++;
            }
        } else if (!s) {
            print_error("case \"%s\": load failed: %s\n", c->name, ccp_buf_cstr(&err));
            failures++;
        }
        if (s) ccp_step_find(c->step)->free(s);
        ccp_buf_free(&err);
    }
    assert_int_equal(failures, 0);
}

/* Profiles defined in a file: shapes the identity loader refuses. */
static void test_identity_bad_profiles(void **state)
{
    (void)state;
    static const struct {
        const char *profiles;
        const char *err;
    } cases[] = {
        {"{\"p\":\"ua\"}", "profile \"p\" is not defined"},
        {"{\"p\":{\"headers\":[\"ua\"]}}", "profile \"p\": \"headers\" must be an object"},
        {"{\"p\":{\"headers\":{\"user-agent\":1}}}", "profile \"p\": header \"user-agent\" must be"},
        {"{\"p\":{\"headers\":{\"bad name\":\"v\"}}}", "header \"bad name\""},
        {"{\"p\":{\"merge\":{\"anthropic-beta\":\"a\\nb\"}}}", "header \"anthropic-beta\""},
        {"{\"p\":{\"hedaers\":{}}}", "profile \"p\": unknown parameter \"hedaers\""},
    };
    int failures = 0;
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        json_object *prof = json_tokener_parse(cases[i].profiles);
        assert_non_null(prof);
        json_object *params = json_tokener_parse("{\"step\":\"identity\",\"profile\":\"p\"}");
        ccp_step_env env = {prof, &cfg, "a"};
        ccp_buf err = {0};
        void *s = ccp_step_find("identity")->load(params, &env, &err);
        if (s || !strstr(ccp_buf_cstr(&err), cases[i].err)) {
            print_error("profiles %s: want \"%s\", got \"%s\"\n", cases[i].profiles, cases[i].err, ccp_buf_cstr(&err));
            failures++;
        }
        if (s) ccp_step_find("identity")->free(s);
        ccp_buf_free(&err);
        json_object_put(params);
        json_object_put(prof);
    }
    /* no profiles at all */
    json_object *params = json_tokener_parse("{\"step\":\"identity\",\"profile\":\"claude_code\"}");
    ccp_step_env env = {NULL, &cfg, "a"};
    ccp_buf err = {0};
    assert_null(ccp_step_find("identity")->load(params, &env, &err));
    assert_non_null(strstr(ccp_buf_cstr(&err), "profile \"claude_code\" is not defined"));
    ccp_buf_free(&err);
    json_object_put(params);
    assert_int_equal(failures, 0);
}

/* ---- header helpers ---------------------------------------------------------------- */

/* "name: value" pairs joined by "\n", in order. */
static void headers_text(const ccp_headers *h, ccp_buf *out)
{
    for (size_t i = 0; i < h->count; i++) ccp_buf_printf(out, "%s%s: %s", i ? "\n" : "", h->items[i].name, h->items[i].value);
}

/* Builds headers from "name: value\n..." text. */

typedef enum { OP_SET_SPELLED, OP_MERGE_LIST, OP_STEP } header_op;

typedef struct header_case {
    const char *name;
    header_op op;
    const char *arg1; /* header name, or the step name */
    const char *arg2; /* value(s), or the step parameters */
    const char *before;
    const char *after;
} header_case;

static const header_case header_cases[] = {
    /* ccp_headers_set_spelled */
    {"set: added at the end", OP_SET_SPELLED, "x-app", "cli", "accept: */*", "accept: */*\nx-app: cli"},
    {"set: replaced in place, new spelling", OP_SET_SPELLED, "User-Agent", "claude-cli/2",
     "accept: */*\nuser-agent: CherryStudio/1.5\nx-a: 1", "accept: */*\nUser-Agent: claude-cli/2\nx-a: 1"},
    {"set: session-id becomes session_id in place", OP_SET_SPELLED, "session_id", "u-1",
     "a: 1\nsession-id: old\nb: 2", "a: 1\nsession_id: u-1\nb: 2"},
    {"set: folded twins dropped", OP_SET_SPELLED, "session_id", "u-1",
     "session-id: a\nx: 1\nSESSION_ID: b\nSession-Id: c", "session_id: u-1\nx: 1"},
    {"set: a prefix is not the same name", OP_SET_SPELLED, "x-app", "cli", "x-app-version: 1",
     "x-app-version: 1\nx-app: cli"},
    {"set: on empty headers", OP_SET_SPELLED, "x-app", "cli", "", "x-app: cli"},
    /* ccp_headers_merge_list */
    {"merge: no header yet", OP_MERGE_LIST, "anthropic-beta", "a,b", "x: 1", "x: 1\nanthropic-beta: a,b"},
    {"merge: client values first, no duplicates", OP_MERGE_LIST, "anthropic-beta", "b,c",
     "anthropic-beta: a,b\nx: 1", "anthropic-beta: a,b,c\nx: 1"},
    {"merge: client spacing kept, spaces in the values ignored", OP_MERGE_LIST, "anthropic-beta", " b , c ,, d",
     "anthropic-beta: a, b", "anthropic-beta: a, b,c,d"},
    {"merge: all present: unchanged", OP_MERGE_LIST, "anthropic-beta", "a,b", "anthropic-beta: b,a",
     "anthropic-beta: b,a"},
    {"merge: duplicates within the values", OP_MERGE_LIST, "anthropic-beta", "c,c,d,c", "anthropic-beta: a",
     "anthropic-beta: a,c,d"},
    {"merge: a longer value is not a duplicate", OP_MERGE_LIST, "anthropic-beta", "claude-code",
     "anthropic-beta: claude-code-20250219", "anthropic-beta: claude-code-20250219,claude-code"},
    {"merge: client spelling and position kept", OP_MERGE_LIST, "anthropic-beta", "x",
     "a: 1\nAnthropic-Beta: w\nb: 2", "a: 1\nAnthropic-Beta: w,x\nb: 2"},
    {"merge: CGI-folded spelling matches", OP_MERGE_LIST, "anthropic-beta", "x", "anthropic_beta: w",
     "anthropic_beta: w,x"},
    {"merge: empty client value", OP_MERGE_LIST, "anthropic-beta", "x", "anthropic-beta: ", "anthropic-beta: x"},
    {"merge: nothing to add to nothing", OP_MERGE_LIST, "anthropic-beta", " , ", "x: 1", "x: 1"},
    /* the steps */
    {"merge_beta step", OP_STEP, "merge_beta", "{\"values\":\"prompt-caching-2024-07-31\"}",
     "anthropic-beta: a,prompt-caching-2024-07-31\nx: 1", "anthropic-beta: a,prompt-caching-2024-07-31\nx: 1"},
    {"merge_beta step adds", OP_STEP, "merge_beta", "{\"values\":\"prompt-caching-2024-07-31\"}", "x: 1",
     "x: 1\nanthropic-beta: prompt-caching-2024-07-31"},
    {"merge_beta step, other header", OP_STEP, "merge_beta", "{\"values\":\"b\",\"header\":\"x-list\"}",
     "x-list: a\nanthropic-beta: z", "x-list: a,b\nanthropic-beta: z"},
    {"set_header step", OP_STEP, "set_header", "{\"name\":\"X-App\",\"value\":\"cli\"}", "x-app: web\ny: 1",
     "X-App: cli\ny: 1"},
    {"identity claude_code", OP_STEP, "identity", "{\"profile\":\"claude_code\"}",
     "accept: application/json\nuser-agent: CherryStudio/1.5.3\nanthropic-beta: a,interleaved-thinking-2025-05-14\n"
     "anthropic-version: 2023-06-01",
     "accept: application/json\nuser-agent: claude-cli/2.1.197 (external, cli)\n"
     "anthropic-beta: a,interleaved-thinking-2025-05-14,claude-code-20250219\nanthropic-version: 2023-06-01\n"
     "x-app: cli"},
    {"identity claude_code, no client betas", OP_STEP, "identity", "{\"profile\":\"claude_code\"}",
     "x-app: desktop",
     "x-app: cli\nuser-agent: claude-cli/2.1.197 (external, cli)\n"
     "anthropic-beta: claude-code-20250219,interleaved-thinking-2025-05-14"},
    {"identity codex", OP_STEP, "identity", "{\"profile\":\"codex\"}", "User-Agent: x\nAccept: */*",
     "user-agent: codex_exec/0.171.0 (Debian 12.0.0; x86_64) dumb (codex_exec; 0.171.0)\n"
     "accept: text/event-stream\noriginator: codex_exec\nopenai-beta: responses=experimental"},
};

static void test_header_table(void **state)
{
    (void)state;
    int failures = 0;
    for (size_t i = 0; i < UNIT_COUNT(header_cases); i++) {
        const header_case *c = &header_cases[i];
        ccp_headers h;
        unit_headers_from(&h, c->before);
        ccp_buf err = {0};
        switch (c->op) {
        case OP_SET_SPELLED:
            ccp_headers_set_spelled(&h, c->arg1, c->arg2);
            break;
        case OP_MERGE_LIST:
            ccp_headers_merge_list(&h, c->arg1, c->arg2);
            break;
        case OP_STEP: {
            void *s = load_step(c->arg1, c->arg2, &err);
            if (!s) {
                print_error("case \"%s\": load failed: %s\n", c->name, ccp_buf_cstr(&err));
                fail();
            }
            json_object *body = json_tokener_parse("{\"model\":\"m\"}");
            ccp_transform t = {.cfg = &cfg, .client_key = "k", .body = body, .upstream_headers = &h};
            if (ccp_step_find(c->arg1)->apply(s, &t, &err) != CCP_OK) {
                print_error("case \"%s\": apply failed: %s\n", c->name, ccp_buf_cstr(&err));
                failures++;
            }
            if (t.body_changed || strcmp(json_object_to_json_string_ext(body, JSON_FLAGS), "{\"model\":\"m\"}")) {
                print_error("case \"%s\": a header step changed the body\n", c->name);
                failures++;
            }
            json_object_put(body);
            ccp_step_find(c->arg1)->free(s);
            break;
        }
        }
        ccp_buf got = {0};
        headers_text(&h, &got);
        if (strcmp(ccp_buf_cstr(&got), c->after) != 0) {
            print_error("case \"%s\":\n  got:\n%s\n  want:\n%s\n", c->name, ccp_buf_cstr(&got), c->after);
            failures++;
        }
        ccp_buf_free(&got);
        ccp_buf_free(&err);
        ccp_headers_free(&h);
    }
    assert_int_equal(failures, 0);
}

/* Two anthropic-beta headers in the list (a client, or an earlier step, sent
 * two): merging keeps every client value, each once, and adds the new one. */
static void test_merge_list_keeps_values_of_every_header(void **state)
{
    (void)state;
    ccp_headers h;
    unit_headers_from(&h, "anthropic-beta: a\nx: 1\nanthropic-beta: b");
    ccp_headers_merge_list(&h, "anthropic-beta", "c");
    ccp_buf all = {0};
    for (size_t i = 0; i < h.count; i++)
        if (strcasecmp(h.items[i].name, "anthropic-beta") == 0) ccp_buf_printf(&all, ",%s,", h.items[i].value);
    ccp_buf got = {0};
    headers_text(&h, &got);
    int failures = 0;
    for (const char *v = "abc"; *v; v++) {
        char item[4] = {',', *v, ',', 0};
        size_t n = unit_count_str(ccp_buf_cstr(&all), item);
        if (n != 1) {
            print_error("value \"%c\" appears %zu times in the merged headers:\n%s\n", *v, n, ccp_buf_cstr(&got));
            failures++;
        }
    }
    ccp_buf_free(&all);
    ccp_buf_free(&got);
    ccp_headers_free(&h);
    assert_int_equal(failures, 0);
}

/* The step registry: every step an adapter file may name, and the list the
 * "unknown step" message shows. */
static void test_step_registry(void **state)
{
    (void)state;
    static const char *const names[] = {"set_header",     "merge_beta",      "identity",      "session",
                                        "prepend_system", CLM,               "instructions",  "normalize_input",
                                        "merge_tools",    "resolve_fields",  "env_context"};
    ccp_buf all = {0};
    ccp_step_names(&all);
    for (size_t i = 0; i < UNIT_COUNT(names); i++) {
        const ccp_step_type *t = ccp_step_find(names[i]);
        assert_non_null(t);
        assert_string_equal(t->name, names[i]);
        assert_non_null(strstr(ccp_buf_cstr(&all), names[i]));
    }
    assert_null(ccp_step_find("Prepend_System"));
    assert_null(ccp_step_find(""));
    assert_false(ccp_step_find("merge_beta")->changes_body);
    assert_false(ccp_step_find("set_header")->changes_body);
    assert_false(ccp_step_find("identity")->changes_body);
    assert_true(ccp_step_find("prepend_system")->changes_body);
    assert_true(ccp_step_find(CLM)->changes_body);
    assert_true(ccp_step_find("session")->changes_body);
    ccp_buf_free(&all);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prepend_system_table),
        cmocka_unit_test(test_prepend_system_without_body),
        cmocka_unit_test(test_prepend_system_state_is_reusable),
        cmocka_unit_test(test_cache_last_message_table),
        cmocka_unit_test(test_prepend_then_cache_never_exceed_four),
        cmocka_unit_test(test_load_parameters_table),
        cmocka_unit_test(test_identity_bad_profiles),
        cmocka_unit_test(test_header_table),
        cmocka_unit_test(test_merge_list_keeps_values_of_every_header),
        cmocka_unit_test(test_step_registry),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
