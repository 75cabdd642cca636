/* steps_codex: instructions, normalize_input, merge_tools, resolve_fields,
 * env_context. Table-driven: each case loads one step with its parameters
 * against a hand-built config, applies it to a parsed body, and compares the
 * result (serialised plain, slashes unescaped) or the error message. */
#include "unit.h"

#include <json-c/json.h>

#include "../../common/adapter.h"
#include "../../common/config.h"
#include "../../common/steps.h"

extern const char ccp_builtin_codex_instructions[];
extern const char ccp_builtin_codex_tools[];

#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

/* The small files the table runs against. */
#define TOOLS_FILE_TEXT "[{\"type\":\"function\",\"name\":\"shell\",\"parameters\":{\"type\":\"object\"}},{\"type\":\"web_search\"}]\n"
#define DEFAULT_TOOLS "{\"type\":\"function\",\"name\":\"shell\",\"parameters\":{\"type\":\"object\"}},{\"type\":\"web_search\"}"
#define INSTRUCTIONS_FILE_TEXT "Be brief.\n\n"
#define ENV_MSG "{\"type\":\"message\",\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":\"Current directory: /w\"}]}"
#define RESOLVED_TAIL "\"tool_choice\":\"auto\",\"parallel_tool_calls\":false,\"reasoning\":{\"effort\":\"high\",\"summary\":\"auto\"},\"include\":[\"reasoning.encrypted_content\"],\"store\":false,\"stream\":true"

static char tools_path[64], instructions_path[64];
static ccp_config cfg; /* zeroed; the fields the steps read are set in setup */

static int group_setup(void **state)
{
    (void)state;
    unit_write_tmp(tools_path, TOOLS_FILE_TEXT, strlen(TOOLS_FILE_TEXT));
    unit_write_tmp(instructions_path, INSTRUCTIONS_FILE_TEXT, strlen(INSTRUCTIONS_FILE_TEXT));
    cfg.codex_tools_file = tools_path;
    cfg.codex_instructions_file = instructions_path;
    cfg.codex_env_cwd = "/w";
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    unlink(tools_path);
    unlink(instructions_path);
    return 0;
}

/* ---- harness ------------------------------------------------------------------ */

enum { AGG_ANY = -1 };

typedef struct step_case {
    const char *name;
    const char *step;
    const char *body;
    const char *want;    /* CCP_OK: the body after; NULL: the body is unchanged */
    const char *err;     /* non-NULL: apply fails with a message containing this */
    int aggregate;       /* AGG_ANY, 0 or 1: t->aggregate_stream afterwards */
} step_case;

static void *load_step(const ccp_config *c, const char *step, const char *params, ccp_buf *err)
{
    const ccp_step_type *type = ccp_step_find(step);
    assert_non_null(type);
    json_object *p = json_tokener_parse(params ? params : "{}");
    assert_non_null(p);
    ccp_step_env env = {NULL, c, "test"};
    void *s = type->load(p, &env, err);
    json_object_put(p);
    return s;
}

/* Applies a loaded step to body; returns rc, leaves the result in out (the
 * serialised body) or err. */
static int apply_step(const char *step, const void *state, json_object *body, ccp_transform *t, ccp_buf *err)
{
    static ccp_headers headers; /* no step here touches headers */
    memset(t, 0, sizeof *t);
    t->cfg = &cfg;
    t->client_key = "sk-test";
    t->body = body;
    t->upstream_headers = &headers;
    return ccp_step_find(step)->apply(state, t, err);
}

static bool same_json(const char *name, const char *got, const char *want)
{
    if (strcmp(got, want) == 0) return true;
    print_error("case \"%s\":\n  got:  %s\n  want: %s\n", name, got, want);
    return false;
}

static void run_cases(const step_case *cases, size_t n)
{
    int failures = 0;
    for (size_t i = 0; i < n; i++) {
        const step_case *c = &cases[i];
        ccp_buf err = {0};
        void *state = load_step(&cfg, c->step, NULL, &err);
        if (!state) {
            print_error("case \"%s\": load failed: %s\n", c->name, ccp_buf_cstr(&err));
            fail();
        }
        json_object *body = json_tokener_parse(c->body);
        if (!body) {
            print_error("case \"%s\": the test body is not JSON\n", c->name);
            fail();
        }
        ccp_transform t;
        int rc = apply_step(c->step, state, body, &t, &err);
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
            const char *got = json_object_to_json_string_ext(body, JSON_FLAGS);
            json_object *orig = json_tokener_parse(c->body);
            const char *want = c->want ? c->want : json_object_to_json_string_ext(orig, JSON_FLAGS);
            if (!same_json(c->name, got, want)) failures++;
            if (!c->want && t.body_changed) {
                print_error("case \"%s\": body unchanged but body_changed set\n", c->name);
                failures++;
            }
            if (c->want && !t.body_changed) {
                print_error("case \"%s\": body changed but body_changed not set\n", c->name);
                failures++;
            }
            if (c->aggregate != AGG_ANY && (int)t.aggregate_stream != c->aggregate) {
                print_error("case \"%s\": aggregate_stream %d, want %d\n", c->name, (int)t.aggregate_stream,
                            c->aggregate);
                failures++;
            }
            json_object_put(orig);
        }
        json_object_put(body);
        ccp_step_find(c->step)->free(state);
        ccp_buf_free(&err);
    }
    assert_int_equal(failures, 0);
}

/* ---- instructions ---------------------------------------------------------- */

static const step_case instructions_cases[] = {
    {"added when absent", "instructions", "{\"model\":\"m\"}", "{\"model\":\"m\",\"instructions\":\"Be brief.\"}",
     NULL, 0},
    {"replaces the client's, in place", "instructions", "{\"instructions\":\"old\",\"model\":\"m\"}",
     "{\"instructions\":\"Be brief.\",\"model\":\"m\"}", NULL, 0},
    {"replaces a non-string", "instructions", "{\"instructions\":[1],\"model\":\"m\"}",
     "{\"instructions\":\"Be brief.\",\"model\":\"m\"}", NULL, 0},
};

static void test_instructions_table(void **state)
{
    (void)state;
    run_cases(instructions_cases, UNIT_COUNT(instructions_cases));
}

static void test_instructions_builtin(void **state)
{
    (void)state;
    ccp_config c = {0};
    c.codex_env_cwd = "/w";
    ccp_buf err = {0};
    void *s = load_step(&c, "instructions", NULL, &err);
    assert_non_null(s);
    json_object *body = json_tokener_parse("{}");
    ccp_transform t;
    assert_int_equal(apply_step("instructions", s, body, &t, &err), CCP_OK);
    json_object *v;
    assert_true(json_object_object_get_ex(body, "instructions", &v));
    const char *text = json_object_get_string(v);
    /* the built-in text without its final newline */
    size_t n = strlen(ccp_builtin_codex_instructions);
    while (n && strchr(" \t\r\n", ccp_builtin_codex_instructions[n - 1])) n--;
    assert_true(n > 100);
    assert_int_equal(strlen(text), n);
    assert_memory_equal(text, ccp_builtin_codex_instructions, n);
    assert_true(strstr(text, "apply_patch") != NULL); /* names the built-in tools */
    json_object_put(body);
    ccp_step_find("instructions")->free(s);
    ccp_buf_free(&err);
}

/* ---- normalize_input ----------------------------------------------------- */

#define UMSG(text) "{\"type\":\"message\",\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":\"" text "\"}]}"
#define AMSG(text) "{\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"" text "\"}]}"
#define FCALL "{\"type\":\"function_call\",\"call_id\":\"c1\",\"name\":\"shell\",\"arguments\":\"{\\\"command\\\":[\\\"ls\\\"]}\"}"
#define FOUT "{\"type\":\"function_call_output\",\"call_id\":\"c1\",\"output\":\"a.txt\"}"
#define REASONING "{\"type\":\"reasoning\",\"id\":\"rs_1\",\"summary\":[],\"encrypted_content\":\"xyz\"}"
#define ADDTOOLS "{\"type\":\"additional_tools\",\"id\":\"at_1\",\"role\":\"developer\",\"tools\":[{\"type\":\"namespace\",\"name\":\"functions\",\"tools\":[]}]}"

static const step_case normalize_cases[] = {
    {"string input", "normalize_input", "{\"model\":\"m\",\"input\":\"hi\",\"stream\":true}",
     "{\"model\":\"m\",\"input\":[" UMSG("hi") "],\"stream\":true}", NULL, AGG_ANY},
    {"empty string input", "normalize_input", "{\"input\":\"\"}", "{\"input\":[" UMSG("") "]}", NULL, AGG_ANY},
    {"input a number", "normalize_input", "{\"input\":5}", NULL, "input: must be a string or a list of items",
     AGG_ANY},
    {"input an object", "normalize_input", "{\"input\":{\"role\":\"user\",\"content\":\"hi\"}}", NULL,
     "input: must be a string or a list of items", AGG_ANY},
    {"input a boolean", "normalize_input", "{\"input\":true}", NULL, "input: must be a string or a list", AGG_ANY},
    {"input missing", "normalize_input", "{\"model\":\"m\"}", NULL, NULL, AGG_ANY},
    {"input null", "normalize_input", "{\"model\":\"m\",\"input\":null}", NULL, NULL, AGG_ANY},
    {"empty list", "normalize_input", "{\"input\":[]}", "{\"input\":[]}", NULL, AGG_ANY},
    {"string item", "normalize_input", "{\"input\":[\"hi\"]}", NULL, "input[0]: must be an object", AGG_ANY},
    {"number item after a message", "normalize_input", "{\"input\":[{\"role\":\"user\",\"content\":\"a\"},3]}",
     NULL, "input[1]: must be an object", AGG_ANY},
    {"null item", "normalize_input", "{\"input\":[null]}", NULL, "input[0]: must be an object", AGG_ANY},
    {"no role", "normalize_input", "{\"input\":[{\"content\":\"a\"}]}", "{\"input\":[" UMSG("a") "]}", NULL,
     AGG_ANY},
    {"no content", "normalize_input", "{\"input\":[{\"role\":\"user\"}]}", "{\"input\":[" UMSG("") "]}", NULL,
     AGG_ANY},
    {"neither role nor content", "normalize_input", "{\"input\":[{}]}", "{\"input\":[" UMSG("") "]}", NULL,
     AGG_ANY},
    {"null content", "normalize_input", "{\"input\":[{\"role\":\"user\",\"content\":null}]}",
     "{\"input\":[" UMSG("") "]}", NULL, AGG_ANY},
    {"empty content list", "normalize_input", "{\"input\":[{\"role\":\"user\",\"content\":[]}]}",
     "{\"input\":[" UMSG("") "]}", NULL, AGG_ANY},
    {"empty content string", "normalize_input", "{\"input\":[{\"role\":\"user\",\"content\":\"\"}]}",
     "{\"input\":[" UMSG("") "]}", NULL, AGG_ANY},
    {"developer becomes user", "normalize_input", "{\"input\":[{\"role\":\"developer\",\"content\":\"d\"}]}",
     "{\"input\":[" UMSG("d") "]}", NULL, AGG_ANY},
    {"system becomes user", "normalize_input", "{\"input\":[{\"role\":\"system\",\"content\":\"s\"}]}",
     "{\"input\":[" UMSG("s") "]}", NULL, AGG_ANY},
    {"unknown role becomes user", "normalize_input", "{\"input\":[{\"role\":\"tool\",\"content\":\"t\"}]}",
     "{\"input\":[" UMSG("t") "]}", NULL, AGG_ANY},
    {"non-string role becomes user", "normalize_input", "{\"input\":[{\"role\":42,\"content\":\"t\"}]}",
     "{\"input\":[" UMSG("t") "]}", NULL, AGG_ANY},
    {"assistant string gets output_text", "normalize_input",
     "{\"input\":[{\"role\":\"assistant\",\"content\":\"ok\"}]}", "{\"input\":[" AMSG("ok") "]}", NULL, AGG_ANY},
    {"assistant empty content", "normalize_input", "{\"input\":[{\"role\":\"assistant\"}]}",
     "{\"input\":[" AMSG("") "]}", NULL, AGG_ANY},
    {"content list with strings", "normalize_input",
     "{\"input\":[{\"role\":\"user\",\"content\":[\"a\",{\"type\":\"input_image\",\"image_url\":\"u\"},\"b\"]}]}",
     "{\"input\":[{\"type\":\"message\",\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":\"a\"},"
     "{\"type\":\"input_image\",\"image_url\":\"u\"},{\"type\":\"input_text\",\"text\":\"b\"}]}]}",
     NULL, AGG_ANY},
    {"assistant content list with a string", "normalize_input",
     "{\"input\":[{\"role\":\"assistant\",\"content\":[\"x\",{\"type\":\"refusal\",\"refusal\":\"no\"}]}]}",
     "{\"input\":[{\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"x\"},"
     "{\"type\":\"refusal\",\"refusal\":\"no\"}]}]}",
     NULL, AGG_ANY},
    {"content blocks kept as sent", "normalize_input",
     "{\"input\":[{\"type\":\"message\",\"role\":\"user\",\"content\":[{\"type\":\"input_file\",\"file_id\":\"f\"}]}]}",
     "{\"input\":[{\"type\":\"message\",\"role\":\"user\",\"content\":[{\"type\":\"input_file\",\"file_id\":\"f\"}]}]}",
     NULL, AGG_ANY},
    {"extra fields kept", "normalize_input",
     "{\"input\":[{\"id\":\"msg_1\",\"role\":\"developer\",\"content\":\"x\",\"status\":\"completed\"}]}",
     "{\"input\":[{\"type\":\"message\",\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":\"x\"}],"
     "\"id\":\"msg_1\",\"status\":\"completed\"}]}",
     NULL, AGG_ANY},
    {"null type is a message", "normalize_input", "{\"input\":[{\"type\":null,\"content\":\"a\"}]}",
     "{\"input\":[" UMSG("a") "]}", NULL, AGG_ANY},
    {"content a number", "normalize_input", "{\"input\":[{\"role\":\"user\",\"content\":7}]}", NULL,
     "input[0].content: must be a string or a list of content parts", AGG_ANY},
    {"content an object", "normalize_input",
     "{\"input\":[" UMSG("a") ",{\"role\":\"user\",\"content\":{\"type\":\"input_text\",\"text\":\"b\"}}]}", NULL,
     "input[1].content: must be a string or a list", AGG_ANY},
    {"history with tool calls in place", "normalize_input",
     "{\"input\":[{\"role\":\"user\",\"content\":\"list files\"}," FCALL "," FOUT "," REASONING
     ",{\"role\":\"assistant\",\"content\":\"done\"}]}",
     "{\"input\":[" UMSG("list files") "," FCALL "," FOUT "," REASONING "," AMSG("done") "]}", NULL, AGG_ANY},
    {"additional_tools with a role passes unchanged", "normalize_input",
     "{\"input\":[" ADDTOOLS ",{\"type\":\"message\",\"role\":\"developer\",\"content\":\"d\"}]}",
     "{\"input\":[" ADDTOOLS "," UMSG("d") "]}", NULL, AGG_ANY},
    {"other item types pass unchanged", "normalize_input",
     "{\"input\":[{\"type\":\"item_reference\",\"id\":\"x\"},{\"type\":5,\"content\":\"?\"}]}",
     "{\"input\":[{\"type\":\"item_reference\",\"id\":\"x\"},{\"type\":5,\"content\":\"?\"}]}", NULL, AGG_ANY},
    {"already normal stays the same", "normalize_input", "{\"input\":[" UMSG("a") "," AMSG("b") "]}",
     "{\"input\":[" UMSG("a") "," AMSG("b") "]}", NULL, AGG_ANY},
};

static void test_normalize_table(void **state)
{
    (void)state;
    run_cases(normalize_cases, UNIT_COUNT(normalize_cases));
}

/* ---- merge_tools ------------------------------------------------------------- */

static const step_case tools_cases[] = {
    {"no client tools", "merge_tools", "{\"model\":\"m\"}", "{\"model\":\"m\",\"tools\":[" DEFAULT_TOOLS "]}", NULL,
     AGG_ANY},
    {"null tools, in place", "merge_tools", "{\"tools\":null,\"model\":\"m\"}",
     "{\"tools\":[" DEFAULT_TOOLS "],\"model\":\"m\"}", NULL, AGG_ANY},
    {"empty tools", "merge_tools", "{\"tools\":[]}", "{\"tools\":[" DEFAULT_TOOLS "]}", NULL, AGG_ANY},
    {"client tools after the defaults, as sent", "merge_tools",
     "{\"tools\":[{\"type\":\"function\",\"name\":\"lookup\",\"strict\":true},{\"type\":\"custom\",\"name\":\"x\","
     "\"format\":{\"type\":\"text\"}}]}",
     "{\"tools\":[" DEFAULT_TOOLS ",{\"type\":\"function\",\"name\":\"lookup\",\"strict\":true},{\"type\":\"custom\","
     "\"name\":\"x\",\"format\":{\"type\":\"text\"}}]}",
     NULL, AGG_ANY},
    {"a client tool of a default's name wins", "merge_tools",
     "{\"tools\":[{\"type\":\"function\",\"name\":\"shell\",\"description\":\"mine\"}]}",
     "{\"tools\":[{\"type\":\"web_search\"},{\"type\":\"function\",\"name\":\"shell\",\"description\":\"mine\"}]}",
     NULL, AGG_ANY},
    {"a client tool of a nameless default's type wins", "merge_tools",
     "{\"tools\":[{\"type\":\"web_search\",\"search_context_size\":\"low\"},{\"type\":\"custom\",\"name\":\"web_search\"}]}",
     "{\"tools\":[{\"type\":\"function\",\"name\":\"shell\",\"parameters\":{\"type\":\"object\"}},{\"type\":\"web_search\","
     "\"search_context_size\":\"low\"},{\"type\":\"custom\",\"name\":\"web_search\"}]}",
     NULL, AGG_ANY},
    {"tools a string", "merge_tools", "{\"tools\":\"shell\"}", NULL, "tools: must be a list of tools", AGG_ANY},
    {"tools an object", "merge_tools", "{\"tools\":{\"type\":\"function\"}}", NULL, "tools: must be a list",
     AGG_ANY},
    {"tools a number", "merge_tools", "{\"tools\":1}", NULL, "tools: must be a list", AGG_ANY},
    {"non-dict tool", "merge_tools", "{\"tools\":[\"shell\"]}", NULL, "tools[0]: must be an object", AGG_ANY},
    {"non-dict tool after a good one", "merge_tools", "{\"tools\":[{\"type\":\"function\",\"name\":\"a\"},[1]]}",
     NULL, "tools[1]: must be an object", AGG_ANY},
    {"null tool", "merge_tools", "{\"tools\":[null]}", NULL, "tools[0]: must be an object", AGG_ANY},
};

static void test_tools_table(void **state)
{
    (void)state;
    run_cases(tools_cases, UNIT_COUNT(tools_cases));
}

static void test_tools_builtin(void **state)
{
    (void)state;
    /* the built-in file parses to tool objects, shell and apply_patch first */
    json_object *tools = json_tokener_parse(ccp_builtin_codex_tools);
    assert_non_null(tools);
    assert_true(json_object_is_type(tools, json_type_array));
    assert_true(json_object_array_length(tools) >= 2);
    const char *names[] = {"shell", "apply_patch"};
    for (size_t i = 0; i < UNIT_COUNT(names); i++) {
        json_object *tool = json_object_array_get_idx(tools, i), *v, *params;
        assert_true(json_object_object_get_ex(tool, "type", &v));
        assert_string_equal(json_object_get_string(v), "function");
        assert_true(json_object_object_get_ex(tool, "name", &v));
        assert_string_equal(json_object_get_string(v), names[i]);
        assert_true(json_object_object_get_ex(tool, "parameters", &params));
        assert_true(json_object_object_get_ex(params, "type", &v));
        assert_string_equal(json_object_get_string(v), "object");
    }
    json_object *shell_props;
    assert_true(json_object_object_get_ex(
        json_object_object_get(json_object_array_get_idx(tools, 0), "parameters"), "properties", &shell_props));
    assert_true(json_object_object_get_ex(shell_props, "command", NULL));
    assert_true(json_object_object_get_ex(shell_props, "workdir", NULL));
    assert_true(json_object_object_get_ex(shell_props, "timeout_ms", NULL));

    /* and the step loads it and puts copies in front of the client's tools */
    ccp_config c = {0};
    ccp_buf err = {0};
    void *s = load_step(&c, "merge_tools", NULL, &err);
    assert_non_null(s);
    for (int round = 0; round < 2; round++) { /* the state is not consumed */
        json_object *body = json_tokener_parse("{\"tools\":[{\"type\":\"function\",\"name\":\"mine\"}]}");
        ccp_transform t;
        assert_int_equal(apply_step("merge_tools", s, body, &t, &err), CCP_OK);
        json_object *got = json_object_object_get(body, "tools");
        assert_int_equal(json_object_array_length(got), json_object_array_length(tools) + 1);
        for (size_t i = 0; i < json_object_array_length(tools); i++)
            assert_true(json_object_equal(json_object_array_get_idx(got, i), json_object_array_get_idx(tools, i)));
        /* a change to the request's copy does not reach the state */
        json_object_object_add(json_object_array_get_idx(got, 0), "name", json_object_new_string("changed"));
        json_object_put(body);
    }
    ccp_step_find("merge_tools")->free(s);
    json_object_put(tools);
    ccp_buf_free(&err);
}

/* ---- resolve_fields ---------------------------------------------------------- */

#define REASONING_HIGH "{\"effort\":\"high\",\"summary\":\"auto\"}"
#define AFTER_REASONING "\"include\":[\"reasoning.encrypted_content\"],\"store\":false,\"stream\":true"
#define WITH_REASONING(r) "{\"reasoning\":" r ",\"tool_choice\":\"auto\",\"parallel_tool_calls\":false," AFTER_REASONING "}"

static const step_case resolve_cases[] = {
    {"empty body", "resolve_fields", "{}", "{" RESOLVED_TAIL "}", NULL, 1},
    {"all given and valid", "resolve_fields",
     "{\"model\":\"m\",\"stream\":true,\"tool_choice\":\"required\",\"parallel_tool_calls\":true,\"reasoning\":{"
     "\"effort\":\"low\",\"summary\":\"detailed\"},\"include\":[\"file_search_call.results\"],\"store\":true}",
     "{\"model\":\"m\",\"stream\":true,\"tool_choice\":\"required\",\"parallel_tool_calls\":true,\"reasoning\":{"
     "\"effort\":\"low\",\"summary\":\"detailed\"},\"include\":[\"reasoning.encrypted_content\",\"file_search_call."
     "results\"],\"store\":true}",
     NULL, 0},
    {"keys keep their position", "resolve_fields", "{\"stream\":false,\"model\":\"m\",\"store\":true}",
     "{\"stream\":true,\"model\":\"m\",\"store\":true,\"tool_choice\":\"auto\",\"parallel_tool_calls\":false,"
     "\"reasoning\":" REASONING_HIGH ",\"include\":[\"reasoning.encrypted_content\"]}",
     NULL, 1},
    {"tool_choice empty string", "resolve_fields", "{\"tool_choice\":\"\"}",
     "{\"tool_choice\":\"auto\",\"parallel_tool_calls\":false,\"reasoning\":" REASONING_HIGH "," AFTER_REASONING "}",
     NULL, 1},
    {"tool_choice a number", "resolve_fields", "{\"tool_choice\":3}",
     "{\"tool_choice\":\"auto\",\"parallel_tool_calls\":false,\"reasoning\":" REASONING_HIGH "," AFTER_REASONING "}",
     NULL, 1},
    {"tool_choice null", "resolve_fields", "{\"tool_choice\":null}",
     "{\"tool_choice\":\"auto\",\"parallel_tool_calls\":false,\"reasoning\":" REASONING_HIGH "," AFTER_REASONING "}",
     NULL, 1},
    {"tool_choice an object is kept", "resolve_fields",
     "{\"tool_choice\":{\"type\":\"function\",\"name\":\"shell\"}}",
     "{\"tool_choice\":{\"type\":\"function\",\"name\":\"shell\"},\"parallel_tool_calls\":false,\"reasoning\":"
     REASONING_HIGH "," AFTER_REASONING "}",
     NULL, 1},
    {"tool_choice a list", "resolve_fields", "{\"tool_choice\":[\"auto\"]}",
     "{\"tool_choice\":\"auto\",\"parallel_tool_calls\":false,\"reasoning\":" REASONING_HIGH "," AFTER_REASONING "}",
     NULL, 1},
    {"parallel_tool_calls a string", "resolve_fields", "{\"parallel_tool_calls\":\"true\"}",
     "{\"parallel_tool_calls\":false,\"tool_choice\":\"auto\",\"reasoning\":" REASONING_HIGH "," AFTER_REASONING "}",
     NULL, 1},
    {"parallel_tool_calls a number", "resolve_fields", "{\"parallel_tool_calls\":1}",
     "{\"parallel_tool_calls\":false,\"tool_choice\":\"auto\",\"reasoning\":" REASONING_HIGH "," AFTER_REASONING "}",
     NULL, 1},
    {"reasoning a string", "resolve_fields", "{\"reasoning\":\"low\"}", WITH_REASONING(REASONING_HIGH), NULL, 1},
    {"reasoning a number", "resolve_fields", "{\"reasoning\":2}", WITH_REASONING(REASONING_HIGH), NULL, 1},
    {"reasoning null", "resolve_fields", "{\"reasoning\":null}", WITH_REASONING(REASONING_HIGH), NULL, 1},
    {"reasoning a list", "resolve_fields", "{\"reasoning\":[\"low\"]}", WITH_REASONING(REASONING_HIGH), NULL, 1},
    {"reasoning bad effort", "resolve_fields", "{\"reasoning\":{\"effort\":\"extreme\"}}",
     WITH_REASONING(REASONING_HIGH), NULL, 1},
    {"reasoning minimal effort", "resolve_fields", "{\"reasoning\":{\"effort\":\"minimal\"}}",
     WITH_REASONING(REASONING_HIGH), NULL, 1},
    {"reasoning effort a number", "resolve_fields", "{\"reasoning\":{\"effort\":7,\"summary\":\"concise\"}}",
     WITH_REASONING("{\"effort\":\"high\",\"summary\":\"concise\"}"), NULL, 1},
    {"reasoning summary a number", "resolve_fields", "{\"reasoning\":{\"effort\":\"medium\",\"summary\":5}}",
     WITH_REASONING("{\"effort\":\"medium\",\"summary\":\"auto\"}"), NULL, 1},
    {"reasoning summary empty", "resolve_fields", "{\"reasoning\":{\"summary\":\"\"}}",
     WITH_REASONING(REASONING_HIGH), NULL, 1},
    {"reasoning extra keys dropped", "resolve_fields",
     "{\"reasoning\":{\"effort\":\"low\",\"context\":\"all_turns\",\"summary\":null}}",
     WITH_REASONING("{\"effort\":\"low\",\"summary\":\"auto\"}"), NULL, 1},
    {"include with duplicates and non-strings", "resolve_fields",
     "{\"include\":[\"a\",1,\"reasoning.encrypted_content\",\"a\",null,{\"x\":1},\"b\",true]}",
     "{\"include\":[\"reasoning.encrypted_content\",\"a\",\"b\"],\"tool_choice\":\"auto\",\"parallel_tool_calls\":"
     "false,\"reasoning\":" REASONING_HIGH ",\"store\":false,\"stream\":true}",
     NULL, 1},
    {"include a string", "resolve_fields", "{\"include\":\"a\"}",
     "{\"include\":[\"reasoning.encrypted_content\"],\"tool_choice\":\"auto\",\"parallel_tool_calls\":false,"
     "\"reasoning\":" REASONING_HIGH ",\"store\":false,\"stream\":true}",
     NULL, 1},
    {"store a string", "resolve_fields", "{\"store\":\"yes\"}",
     "{\"store\":false,\"tool_choice\":\"auto\",\"parallel_tool_calls\":false,\"reasoning\":" REASONING_HIGH
     ",\"include\":[\"reasoning.encrypted_content\"],\"stream\":true}",
     NULL, 1},
    {"stream true: no aggregation", "resolve_fields", "{\"stream\":true}",
     "{\"stream\":true,\"tool_choice\":\"auto\",\"parallel_tool_calls\":false,\"reasoning\":" REASONING_HIGH
     ",\"include\":[\"reasoning.encrypted_content\"],\"store\":false}",
     NULL, 0},
    {"stream false: aggregated", "resolve_fields", "{\"stream\":false}",
     "{\"stream\":true,\"tool_choice\":\"auto\",\"parallel_tool_calls\":false,\"reasoning\":" REASONING_HIGH
     ",\"include\":[\"reasoning.encrypted_content\"],\"store\":false}",
     NULL, 1},
    {"stream a string: aggregated", "resolve_fields", "{\"stream\":\"true\"}",
     "{\"stream\":true,\"tool_choice\":\"auto\",\"parallel_tool_calls\":false,\"reasoning\":" REASONING_HIGH
     ",\"include\":[\"reasoning.encrypted_content\"],\"store\":false}",
     NULL, 1},
    {"stream 1: aggregated", "resolve_fields", "{\"stream\":1}",
     "{\"stream\":true,\"tool_choice\":\"auto\",\"parallel_tool_calls\":false,\"reasoning\":" REASONING_HIGH
     ",\"include\":[\"reasoning.encrypted_content\"],\"store\":false}",
     NULL, 1},
};

static void test_resolve_table(void **state)
{
    (void)state;
    run_cases(resolve_cases, UNIT_COUNT(resolve_cases));
}

/* ---- env_context ------------------------------------------------------------- */

static const step_case env_cases[] = {
    {"inserted first", "env_context", "{\"input\":[" UMSG("hi") "]}", "{\"input\":[" ENV_MSG "," UMSG("hi") "]}",
     NULL, AGG_ANY},
    {"into an empty list", "env_context", "{\"input\":[]}", "{\"input\":[" ENV_MSG "]}", NULL, AGG_ANY},
    {"string input", "env_context", "{\"input\":\"hi\",\"model\":\"m\"}",
     "{\"input\":[" ENV_MSG "," UMSG("hi") "],\"model\":\"m\"}", NULL, AGG_ANY},
    {"string input that starts that way", "env_context", "{\"input\":\"Current directory: /x\"}",
     "{\"input\":[" UMSG("Current directory: /x") "]}", NULL, AGG_ANY},
    {"already there", "env_context", "{\"input\":[" ENV_MSG "," UMSG("hi") "]}", NULL, NULL, AGG_ANY},
    {"another directory already there", "env_context",
     "{\"input\":[" UMSG("Current directory: /elsewhere") "," UMSG("hi") "]}", NULL, NULL, AGG_ANY},
    {"string content already there", "env_context",
     "{\"input\":[{\"role\":\"user\",\"content\":\"Current directory: /w\"}]}", NULL, NULL, AGG_ANY},
    {"string part already there", "env_context",
     "{\"input\":[{\"role\":\"user\",\"content\":[\"Current directory: /w\"]}]}", NULL, NULL, AGG_ANY},
    {"first message after non-message items", "env_context",
     "{\"input\":[" ADDTOOLS "," FOUT "," ENV_MSG "]}", NULL, NULL, AGG_ANY},
    {"only the first message counts", "env_context", "{\"input\":[" UMSG("hi") "," ENV_MSG "]}",
     "{\"input\":[" ENV_MSG "," UMSG("hi") "," ENV_MSG "]}", NULL, AGG_ANY},
    {"case matters", "env_context", "{\"input\":[" UMSG("current directory: /w") "]}",
     "{\"input\":[" ENV_MSG "," UMSG("current directory: /w") "]}", NULL, AGG_ANY},
    {"a message without text", "env_context",
     "{\"input\":[{\"type\":\"message\",\"role\":\"user\",\"content\":[{\"type\":\"input_image\",\"image_url\":\"u\"}]}]}",
     "{\"input\":[" ENV_MSG ",{\"type\":\"message\",\"role\":\"user\",\"content\":[{\"type\":\"input_image\","
     "\"image_url\":\"u\"}]}]}",
     NULL, AGG_ANY},
    {"history kept in order", "env_context", "{\"input\":[" UMSG("go") "," FCALL "," FOUT "]}",
     "{\"input\":[" ENV_MSG "," UMSG("go") "," FCALL "," FOUT "]}", NULL, AGG_ANY},
    {"input missing", "env_context", "{\"model\":\"m\"}", NULL, NULL, AGG_ANY},
    {"input null", "env_context", "{\"input\":null}", NULL, NULL, AGG_ANY},
    {"input a number", "env_context", "{\"input\":1}", NULL, "input: must be a string or a list of items", AGG_ANY},
    {"input an object", "env_context", "{\"input\":{}}", NULL, "input: must be a string or a list", AGG_ANY},
};

static void test_env_table(void **state)
{
    (void)state;
    run_cases(env_cases, UNIT_COUNT(env_cases));
}

static void test_env_idempotent(void **state)
{
    (void)state;
    ccp_buf err = {0};
    void *s = load_step(&cfg, "env_context", NULL, &err);
    assert_non_null(s);
    json_object *body = json_tokener_parse("{\"input\":\"hi\"}");
    ccp_transform t;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(apply_step("env_context", s, body, &t, &err), CCP_OK);
        assert_true(i == 0 ? t.body_changed : !t.body_changed);
    }
    assert_string_equal(json_object_to_json_string_ext(body, JSON_FLAGS), "{\"input\":[" ENV_MSG "," UMSG("hi") "]}");
    json_object_put(body);
    ccp_step_find("env_context")->free(s);
    ccp_buf_free(&err);
}

/* ---- no body ------------------------------------------------------------------ */

static void test_no_body_is_left_alone(void **state)
{
    (void)state;
    const char *steps[] = {"instructions", "normalize_input", "merge_tools", "resolve_fields", "env_context"};
    for (size_t i = 0; i < UNIT_COUNT(steps); i++) {
        ccp_buf err = {0};
        void *s = load_step(&cfg, steps[i], NULL, &err);
        assert_non_null(s);
        ccp_transform t;
        assert_int_equal(apply_step(steps[i], s, NULL, &t, &err), CCP_OK);
        assert_false(t.body_changed);
        assert_false(t.aggregate_stream);
        ccp_step_find(steps[i])->free(s);
        ccp_buf_free(&err);
    }
}

/* ---- a CherryStudio request through the whole pipeline ----------------------- */

static void test_pipeline(void **state)
{
    (void)state;
    const char *steps[] = {"instructions", "normalize_input", "merge_tools", "resolve_fields", "env_context"};
    void *states[UNIT_COUNT(steps)];
    ccp_buf err = {0};
    for (size_t i = 0; i < UNIT_COUNT(steps); i++) {
        states[i] = load_step(&cfg, steps[i], NULL, &err);
        assert_non_null(states[i]);
    }
    json_object *body = json_tokener_parse(
        "{\"model\":\"gpt-5\",\"input\":[{\"role\":\"system\",\"content\":\"Be nice.\"},"
        "{\"role\":\"user\",\"content\":\"list files\"}," FCALL "," FOUT
        ",{\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"a.txt\"}]},"
        "{\"role\":\"user\",\"content\":[\"thanks\"]}],"
        "\"tools\":[{\"type\":\"function\",\"name\":\"lookup\",\"parameters\":{}}],"
        "\"reasoning\":{\"effort\":\"medium\"},\"stream\":false,\"include\":[\"message.output_text.logprobs\"]}");
    assert_non_null(body);
    ccp_headers headers = {0};
    ccp_transform t = {.cfg = &cfg, .client_key = "sk-test", .body = body, .upstream_headers = &headers};
    for (size_t i = 0; i < UNIT_COUNT(steps); i++)
        assert_int_equal(ccp_step_find(steps[i])->apply(states[i], &t, &err), CCP_OK);
    assert_true(t.body_changed);
    assert_true(t.aggregate_stream);
    assert_int_equal(headers.count, 0);
    const char *want =
        "{\"model\":\"gpt-5\",\"input\":[" ENV_MSG "," UMSG("Be nice.") "," UMSG("list files") "," FCALL "," FOUT
        "," AMSG("a.txt") "," UMSG("thanks") "],"
        "\"tools\":[" DEFAULT_TOOLS ",{\"type\":\"function\",\"name\":\"lookup\",\"parameters\":{}}],"
        "\"reasoning\":{\"effort\":\"medium\",\"summary\":\"auto\"},\"stream\":true,"
        "\"include\":[\"reasoning.encrypted_content\",\"message.output_text.logprobs\"],"
        "\"instructions\":\"Be brief.\",\"tool_choice\":\"auto\",\"parallel_tool_calls\":false,\"store\":false}";
    assert_true(same_json("pipeline", json_object_to_json_string_ext(body, JSON_FLAGS), want));

    /* running the pipeline again changes nothing more */
    json_object *once = NULL;
    assert_int_equal(json_object_deep_copy(body, &once, NULL), 0);
    for (size_t i = 0; i < UNIT_COUNT(steps); i++)
        assert_int_equal(ccp_step_find(steps[i])->apply(states[i], &t, &err), CCP_OK);
    assert_true(same_json("pipeline twice", json_object_to_json_string_ext(body, JSON_FLAGS),
                          json_object_to_json_string_ext(once, JSON_FLAGS)));
    json_object_put(once);
    json_object_put(body);
    for (size_t i = 0; i < UNIT_COUNT(steps); i++) ccp_step_find(steps[i])->free(states[i]);
    ccp_buf_free(&err);
}

/* ---- load errors ---------------------------------------------------------------- */

static void test_registered(void **state)
{
    (void)state;
    const char *steps[] = {"instructions", "normalize_input", "merge_tools", "resolve_fields", "env_context"};
    ccp_buf names = {0};
    ccp_step_names(&names);
    for (size_t i = 0; i < UNIT_COUNT(steps); i++) {
        const ccp_step_type *type = ccp_step_find(steps[i]);
        assert_non_null(type);
        assert_string_equal(type->name, steps[i]);
        assert_true(type->changes_body);
        assert_non_null(strstr(names.data, steps[i]));
    }
    ccp_buf_free(&names);
}

static void expect_load_error(const ccp_config *c, const char *step, const char *params, const char *want)
{
    ccp_buf err = {0};
    void *s = load_step(c, step, params, &err);
    if (s || !strstr(ccp_buf_cstr(&err), want)) {
        print_error("load %s %s: want error containing \"%s\", got %s \"%s\"\n", step, params ? params : "{}", want,
                    s ? "a state" : "error", ccp_buf_cstr(&err));
        if (s) ccp_step_find(step)->free(s);
        ccp_buf_free(&err);
        fail();
    }
    ccp_buf_free(&err);
}

static void test_load_unknown_param(void **state)
{
    (void)state;
    const char *steps[] = {"instructions", "normalize_input", "merge_tools", "resolve_fields", "env_context"};
    for (size_t i = 0; i < UNIT_COUNT(steps); i++) {
        char params[128];
        snprintf(params, sizeof params, "{\"step\":\"%s\",\"bogus\":1}", steps[i]);
        expect_load_error(&cfg, steps[i], params, "unknown parameter \"bogus\"");
        /* "step" itself is fine */
        snprintf(params, sizeof params, "{\"step\":\"%s\"}", steps[i]);
        ccp_buf err = {0};
        void *s = load_step(&cfg, steps[i], params, &err);
        assert_non_null(s);
        ccp_step_find(steps[i])->free(s);
        ccp_buf_free(&err);
    }
}

typedef struct file_case {
    const char *text;
    size_t len; /* 0: strlen(text) */
    const char *want;
} file_case;

static void test_load_bad_tools_file(void **state)
{
    (void)state;
    static const file_case cases[] = {
        {"not json", 0, "is not valid JSON"},
        {"", 0, "is not valid JSON: it ends too early"},
        {"[{\"type\":\"function\"", 0, "is not valid JSON: it ends too early"},
        {"[] []", 0, "unexpected data after the value at byte 3"},
        {"{\"type\":\"function\"}", 0, "must be a JSON array of tool objects"},
        {"\"shell\"", 0, "must be a JSON array of tool objects"},
        {"[1]", 0, "item 0 must be a tool object with a \"type\""},
        {"[{\"type\":\"function\",\"name\":\"a\"},\"b\"]", 0, "item 1 must be a tool object"},
        {"[{\"name\":\"shell\"}]", 0, "item 0 must be a tool object with a \"type\""},
        {"[{\"type\":3}]", 0, "item 0 must be a tool object"},
        {"[{\"type\":\"\"}]", 0, "item 0 must be a tool object"},
        {"[]\0[1]", 6, "contains a NUL byte"},
    };
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        char path[64];
        unit_write_tmp(path, cases[i].text, cases[i].len ? cases[i].len : strlen(cases[i].text));
        ccp_config c = {0};
        c.codex_tools_file = path;
        char want_name[128];
        snprintf(want_name, sizeof want_name, "CODEX_TOOLS_FILE \"%s\"", path);
        expect_load_error(&c, "merge_tools", NULL, want_name); /* names the file */
        expect_load_error(&c, "merge_tools", NULL, cases[i].want);
        unlink(path);
    }
    ccp_config c = {0};
    c.codex_tools_file = "/nonexistent/ccp-unit-tools.json";
    expect_load_error(&c, "merge_tools", NULL,
                      "CODEX_TOOLS_FILE \"/nonexistent/ccp-unit-tools.json\" cannot be read: No such file or directory");
    /* an empty array is a valid (empty) default set */
    char path[64];
    unit_write_tmp(path, " [ ]\n", 5);
    c.codex_tools_file = path;
    ccp_buf err = {0};
    void *s = load_step(&c, "merge_tools", NULL, &err);
    assert_non_null(s);
    json_object *body = json_tokener_parse("{\"tools\":[{\"type\":\"web_search\"}]}");
    ccp_transform t;
    assert_int_equal(apply_step("merge_tools", s, body, &t, &err), CCP_OK);
    assert_string_equal(json_object_to_json_string_ext(body, JSON_FLAGS), "{\"tools\":[{\"type\":\"web_search\"}]}");
    json_object_put(body);
    ccp_step_find("merge_tools")->free(s);
    ccp_buf_free(&err);
    unlink(path);
}

static void test_load_bad_instructions_file(void **state)
{
    (void)state;
    ccp_config c = {0};
    c.codex_instructions_file = "/nonexistent/ccp-unit-instructions.md";
    expect_load_error(&c, "instructions", NULL,
                      "CODEX_INSTRUCTIONS_FILE \"/nonexistent/ccp-unit-instructions.md\" cannot be read: No such file "
                      "or directory");
    c.codex_instructions_file = "/tmp";
    expect_load_error(&c, "instructions", NULL, "CODEX_INSTRUCTIONS_FILE \"/tmp\" cannot be read: Is a directory");

    static const file_case cases[] = {
        {"", 0, "is empty"},
        {" \n\r\n\t", 0, "is empty"},
        {"abc\0def", 7, "contains a NUL byte"},
    };
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        char path[64], want[128];
        unit_write_tmp(path, cases[i].text, cases[i].len ? cases[i].len : strlen(cases[i].text));
        c.codex_instructions_file = path;
        snprintf(want, sizeof want, "CODEX_INSTRUCTIONS_FILE \"%s\" %s", path, cases[i].want);
        expect_load_error(&c, "instructions", NULL, want);
        unlink(path);
    }
}

static void test_load_env_without_cwd(void **state)
{
    (void)state;
    ccp_config c = {0};
    expect_load_error(&c, "env_context", NULL, "CODEX_ENV_CWD");
    c.codex_env_cwd = "";
    expect_load_error(&c, "env_context", NULL, "CODEX_ENV_CWD");
}

/* ---- MAX_STEP_OUTPUTS -------------------------------------------------------------- */

/* Applies step to body under a limit of max outputs: the rc, and (on a
 * refusal) that it names the limit in the message and in t->over_limit. */
static int apply_limited(const char *step, const char *body_text, size_t max, size_t *outputs)
{
    ccp_buf err = {0};
    void *state = load_step(&cfg, step, NULL, &err);
    assert_non_null(state);
    json_object *body = json_tokener_parse(body_text);
    assert_non_null(body);
    ccp_transform t;
    cfg.max_step_outputs = max;
    int rc = apply_step(step, state, body, &t, &err);
    cfg.max_step_outputs = 0;
    if (rc != CCP_OK) {
        assert_string_equal(t.over_limit, "MAX_STEP_OUTPUTS");
        assert_non_null(strstr(ccp_buf_cstr(&err), "(MAX_STEP_OUTPUTS)"));
    } else {
        assert_null(t.over_limit);
    }
    *outputs = t.outputs;
    json_object_put(body);
    ccp_step_find(step)->free(state);
    ccp_buf_free(&err);
    return rc;
}

/* Each step that makes a list the client sizes counts what it makes, and
 * refuses before the work when that would pass the limit; at the limit it
 * passes. */
static void test_step_outputs_are_bounded(void **state)
{
    (void)state;
    static const struct {
        const char *step, *body;
        size_t outputs; /* what the step makes */
    } cases[] = {
        /* a message and its parts, each */
        {"normalize_input", "{\"input\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\",\"content\":[\"b\",\"c\"]},"
                            "{\"type\":\"function_call\"}]}", 5},
        /* the defaults (2) and the client's tools */
        {"merge_tools", "{\"tools\":[{\"type\":\"function\",\"name\":\"a\"},{\"type\":\"x\"},{\"type\":\"y\"}]}", 5},
        /* ours and the client's include values */
        {"resolve_fields", "{\"include\":[\"a\",\"b\",\"a\"]}", 4},
        /* the context message and every item moved after it */
        {"env_context", "{\"input\":[{\"role\":\"user\",\"content\":\"a\"},{\"type\":\"function_call\"}]}", 3},
    };
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        size_t n = 0;
        if (apply_limited(cases[i].step, cases[i].body, cases[i].outputs, &n) != CCP_OK || n != cases[i].outputs) {
            print_error("%s at its limit: outputs %zu, want %zu\n", cases[i].step, n, cases[i].outputs);
            fail();
        }
        if (apply_limited(cases[i].step, cases[i].body, cases[i].outputs - 1, &n) == CCP_OK) {
            print_error("%s passed a limit of %zu\n", cases[i].step, cases[i].outputs - 1);
            fail();
        }
        assert_int_equal(apply_limited(cases[i].step, cases[i].body, 0, &n), CCP_OK); /* no limit */
    }
}

/* A long include list keeps its first occurrences in order, once each
 * (the seen-set replaced a scan of the list per value). */
static void test_long_include_list_is_deduplicated_in_order(void **state)
{
    (void)state;
    ccp_buf body = {0};
    ccp_buf_append_str(&body, "{\"include\":[");
    for (int i = 0; i < 20000; i++) ccp_buf_printf(&body, "%s\"v%d\"", i ? "," : "", i % 5000);
    ccp_buf_append_str(&body, "]}");
    ccp_buf err = {0};
    void *st = load_step(&cfg, "resolve_fields", NULL, &err);
    json_object *b = json_tokener_parse(body.data);
    assert_non_null(b);
    ccp_transform t;
    assert_int_equal(apply_step("resolve_fields", st, b, &t, &err), CCP_OK);
    json_object *inc;
    assert_true(json_object_object_get_ex(b, "include", &inc));
    assert_int_equal(json_object_array_length(inc), 5001);
    assert_string_equal(json_object_get_string(json_object_array_get_idx(inc, 0)), "reasoning.encrypted_content");
    assert_string_equal(json_object_get_string(json_object_array_get_idx(inc, 1)), "v0");
    assert_string_equal(json_object_get_string(json_object_array_get_idx(inc, 5000)), "v4999");
    json_object_put(b);
    ccp_step_find("resolve_fields")->free(st);
    ccp_buf_free(&body);
    ccp_buf_free(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registered),
        cmocka_unit_test(test_instructions_table),
        cmocka_unit_test(test_instructions_builtin),
        cmocka_unit_test(test_normalize_table),
        cmocka_unit_test(test_tools_table),
        cmocka_unit_test(test_tools_builtin),
        cmocka_unit_test(test_resolve_table),
        cmocka_unit_test(test_env_table),
        cmocka_unit_test(test_env_idempotent),
        cmocka_unit_test(test_no_body_is_left_alone),
        cmocka_unit_test(test_pipeline),
        cmocka_unit_test(test_load_unknown_param),
        cmocka_unit_test(test_load_bad_tools_file),
        cmocka_unit_test(test_load_bad_instructions_file),
        cmocka_unit_test(test_load_env_without_cwd),
        cmocka_unit_test(test_step_outputs_are_bounded),
        cmocka_unit_test(test_long_include_list_is_deduplicated_in_order),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
