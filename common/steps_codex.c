/* Steps for the OpenAI Responses body (the Codex service): instructions,
 * normalize_input, merge_tools, resolve_fields, env_context.
 *
 * A typical pipeline runs normalize_input before the other input steps;
 * env_context also accepts a string input by itself (it normalises it the
 * same way), so it does not depend on that order.
 *
 * States are immutable after load and shared by every worker thread. json-c
 * reference counts are not atomic, so no state object is ever handed to a
 * request body: what goes into a body is a deep copy. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_text.h"
#include "steps.h"

/* conf/codex_instructions.md and conf/codex_tools.json, compiled in. */
extern const char ccp_builtin_codex_instructions[];
extern const char ccp_builtin_codex_tools[];

#define ENV_PREFIX "Current directory:"

/* ---- helpers ------------------------------------------------------------- */

static const ccp_config *env_cfg(const ccp_step_env *env)
{
    return env ? env->cfg : NULL;
}

/* Reads a whole file into out; on failure says why in err, naming what. */
static bool read_whole_file(const char *path, const char *what, ccp_buf *out, ccp_buf *err)
{
    ccp_buf why = {0};
    bool ok = ccp_buf_read_file(out, path, &why) == CCP_OK;
    if (!ok) ccp_buf_printf(err, "%s \"%s\" %s", what, path, why.data);
    ccp_buf_free(&why);
    return ok;
}

static bool is_str(json_object *v)
{
    return json_object_is_type(v, json_type_string);
}

static bool str_is(json_object *v, const char *s)
{
    return is_str(v) && strcmp(json_object_get_string(v), s) == 0;
}

static json_object *text_part(const char *type, const char *text)
{
    json_object *b = json_object_new_object();
    json_object_object_add(b, "type", json_object_new_string(type));
    json_object_object_add(b, "text", json_object_new_string(text));
    return b;
}

static json_object *user_message(const char *text)
{
    json_object *m = json_object_new_object();
    json_object_object_add(m, "type", json_object_new_string("message"));
    json_object_object_add(m, "role", json_object_new_string("user"));
    json_object *content = json_object_new_array();
    json_object_array_add(content, text_part("input_text", text));
    json_object_object_add(m, "content", content);
    return m;
}

/* A message item: no "type" (or a null one), or type "message". Any other
 * type (function_call, reasoning, additional_tools, ...) is not a message. */
static bool is_message_item(json_object *item)
{
    json_object *type;
    if (!json_object_is_type(item, json_type_object)) return false;
    if (!json_object_object_get_ex(item, "type", &type) || json_object_is_type(type, json_type_null)) return true;
    return str_is(type, "message");
}

#define INPUT_SHAPE_ERROR "input: must be a string or a list of items"

/* Makes body "input" a list when it is a string. Returns the list, NULL when
 * there is no input (absent or null), or sets err for any other shape. */
static json_object *input_list(json_object *body, bool *bad, ccp_buf *err)
{
    json_object *input;
    *bad = false;
    if (!json_object_object_get_ex(body, "input", &input) || json_object_is_type(input, json_type_null))
        return NULL;
    if (is_str(input)) {
        json_object *list = json_object_new_array();
        json_object_array_add(list, user_message(json_object_get_string(input)));
        json_object_object_add(body, "input", list); /* keeps the key's position */
        return list;
    }
    if (json_object_is_type(input, json_type_array)) return input;
    ccp_buf_append_str(err, INPUT_SHAPE_ERROR);
    *bad = true;
    return NULL;
}

/* Parses text as exactly one JSON value (strict; whitespace around it). */
static json_object *parse_json(const char *text, const char *what, ccp_buf *err)
{
    json_object *v;
    ccp_buf why = {0};
    if (ccp_json_parse(text, strlen(text), &v, NULL, &why) != CCP_JSON_OK)
        ccp_buf_printf(err, "%s is not valid JSON: %s", what, why.data);
    ccp_buf_free(&why);
    return v;
}

/* ---- instructions -------------------------------------------------------- */

static void *instructions_load(json_object *params, const ccp_step_env *env, ccp_buf *err)
{
    static const char *const none[] = {NULL};
    if (!ccp_param_check_keys(params, none, err)) return NULL;
    const ccp_config *cfg = env_cfg(env);
    ccp_buf text = {0};
    if (cfg && cfg->codex_instructions_file) {
        if (!read_whole_file(cfg->codex_instructions_file, "CODEX_INSTRUCTIONS_FILE", &text, err)) {
            ccp_buf_free(&text);
            return NULL;
        }
    } else {
        ccp_buf_append_str(&text, ccp_builtin_codex_instructions);
    }
    /* A file's final newline is not part of the prompt. */
    while (text.len && strchr(" \t\r\n", text.data[text.len - 1])) text.data[--text.len] = '\0';
    if (text.len == 0) {
        if (cfg && cfg->codex_instructions_file)
            ccp_buf_printf(err, "CODEX_INSTRUCTIONS_FILE \"%s\" is empty", cfg->codex_instructions_file);
        else
            ccp_buf_append_str(err, "the built-in instructions (conf/codex_instructions.md) are empty");
        ccp_buf_free(&text);
        return NULL;
    }
    return text.data; /* owned: freed with free() */
}

static int instructions_apply(const void *state, ccp_transform *t, ccp_buf *err)
{
    (void)err;
    if (!t->body) return CCP_OK;
    json_object_object_add(t->body, "instructions", json_object_new_string(state));
    t->body_changed = true;
    return CCP_OK;
}

static const ccp_step_type instructions = {"instructions", true, instructions_load, instructions_apply, free};

/* ---- normalize_input ----------------------------------------------------- */

/* user and assistant are kept; developer, system, unknown or missing: user. */
static const char *normal_role(json_object *msg)
{
    json_object *role;
    if (json_object_object_get_ex(msg, "role", &role) && str_is(role, "assistant")) return "assistant";
    return "user";
}

/* The content list of a message, or NULL with err set. */
static json_object *normal_content(json_object *msg, const char *part_type, size_t index, ccp_buf *err)
{
    json_object *content = NULL, *list = json_object_new_array();
    json_object_object_get_ex(msg, "content", &content);
    if (!content || json_object_is_type(content, json_type_null)) {
        /* nothing: one empty part below */
    } else if (is_str(content)) {
        json_object_array_add(list, text_part(part_type, json_object_get_string(content)));
    } else if (json_object_is_type(content, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(content); i++) {
            json_object *part = json_object_array_get_idx(content, i);
            if (is_str(part)) json_object_array_add(list, text_part(part_type, json_object_get_string(part)));
            else json_object_array_add(list, json_object_get(part));
        }
    } else {
        ccp_buf_printf(err, "input[%zu].content: must be a string or a list of content parts", index);
        json_object_put(list);
        return NULL;
    }
    if (json_object_array_length(list) == 0) json_object_array_add(list, text_part(part_type, ""));
    return list;
}

static void *no_params_load(json_object *params, const ccp_step_env *env, ccp_buf *err, const char *name)
{
    (void)env;
    static const char *const none[] = {NULL};
    if (!ccp_param_check_keys(params, none, err)) return NULL;
    return ccp_xstrdup(name); /* no state; non-NULL means loaded */
}

static void *normalize_load(json_object *params, const ccp_step_env *env, ccp_buf *err)
{
    return no_params_load(params, env, err, "normalize_input");
}

static int normalize_apply(const void *state, ccp_transform *t, ccp_buf *err)
{
    (void)state;
    if (!t->body) return CCP_OK;
    bool bad;
    json_object *list = input_list(t->body, &bad, err);
    if (bad) return CCP_ERR;
    if (!list) return CCP_OK; /* no input: nothing to normalise */
    size_t n = json_object_array_length(list);
    for (size_t i = 0; i < n; i++) {
        json_object *item = json_object_array_get_idx(list, i);
        if (!json_object_is_type(item, json_type_object)) {
            ccp_buf_printf(err, "input[%zu]: must be an object (a message or another input item)", i);
            return CCP_ERR;
        }
        if (!is_message_item(item)) continue; /* function_call & co. pass unchanged */
        json_object *given = NULL;
        json_object_object_get_ex(item, "content", &given);
        size_t parts = json_object_is_type(given, json_type_array) ? json_object_array_length(given) : 1;
        if (!ccp_transform_outputs(t, 1 + (parts ? parts : 1), err)) return CCP_ERR;
        const char *role = normal_role(item);
        json_object *content =
            normal_content(item, strcmp(role, "assistant") == 0 ? "output_text" : "input_text", i, err);
        if (!content) return CCP_ERR;
        json_object *m = json_object_new_object();
        json_object_object_add(m, "type", json_object_new_string("message"));
        json_object_object_add(m, "role", json_object_new_string(role));
        json_object_object_add(m, "content", content);
        json_object_object_foreach(item, key, val)
        {
            if (strcmp(key, "type") && strcmp(key, "role") && strcmp(key, "content"))
                json_object_object_add(m, key, json_object_get(val));
        }
        json_object_array_put_idx(list, i, m); /* releases the old item */
    }
    t->body_changed = true;
    return CCP_OK;
}

static const ccp_step_type normalize_input = {"normalize_input", true, normalize_load, normalize_apply, free};

/* ---- merge_tools --------------------------------------------------------- */

static void tools_free(void *state)
{
    json_object_put(state);
}

static void *tools_load(json_object *params, const ccp_step_env *env, ccp_buf *err)
{
    static const char *const none[] = {NULL};
    if (!ccp_param_check_keys(params, none, err)) return NULL;
    const ccp_config *cfg = env_cfg(env);
    ccp_buf what = {0}, text = {0};
    if (cfg && cfg->codex_tools_file) {
        ccp_buf_printf(&what, "CODEX_TOOLS_FILE \"%s\"", cfg->codex_tools_file);
        if (!read_whole_file(cfg->codex_tools_file, "CODEX_TOOLS_FILE", &text, err)) {
            ccp_buf_free(&what);
            ccp_buf_free(&text);
            return NULL;
        }
    } else {
        ccp_buf_append_str(&what, "the built-in tools (conf/codex_tools.json)");
        ccp_buf_append_str(&text, ccp_builtin_codex_tools);
    }
    json_object *tools = parse_json(ccp_buf_cstr(&text), what.data, err);
    ccp_buf_free(&text);
    bool ok = tools != NULL;
    if (ok && !json_object_is_type(tools, json_type_array)) {
        ccp_buf_printf(err, "%s must be a JSON array of tool objects", what.data);
        ok = false;
    }
    for (size_t i = 0; ok && i < json_object_array_length(tools); i++) {
        json_object *tool = json_object_array_get_idx(tools, i), *type;
        if (!json_object_is_type(tool, json_type_object) || !json_object_object_get_ex(tool, "type", &type) ||
            !is_str(type) || !*json_object_get_string(type)) {
            ccp_buf_printf(err, "%s: item %zu must be a tool object with a \"type\"", what.data, i);
            ok = false;
        }
    }
    ccp_buf_free(&what);
    if (!ok) {
        json_object_put(tools);
        return NULL;
    }
    return tools;
}

static const char *tool_field(json_object *tool, const char *key)
{
    json_object *v;
    if (json_object_is_type(tool, json_type_object) && json_object_object_get_ex(tool, key, &v) && is_str(v))
        return json_object_get_string(v);
    return NULL;
}

/* The same tool for the API: the same name, or, for tools without a name
 * (web_search & co.), the same type. */
static bool same_tool(json_object *a, json_object *b)
{
    const char *na = tool_field(a, "name"), *nb = tool_field(b, "name");
    if (na || nb) return na && nb && strcmp(na, nb) == 0;
    const char *ta = tool_field(a, "type"), *tb = tool_field(b, "type");
    return ta && tb && strcmp(ta, tb) == 0;
}

static bool has_tool(json_object *list, json_object *tool)
{
    for (size_t i = 0; list && i < json_object_array_length(list); i++)
        if (same_tool(json_object_array_get_idx(list, i), tool)) return true;
    return false;
}

static int tools_apply(const void *state, ccp_transform *t, ccp_buf *err)
{
    json_object *defaults = (json_object *)state; /* read only: copied, never shared */
    if (!t->body) return CCP_OK;
    json_object *client = NULL;
    json_object_object_get_ex(t->body, "tools", &client);
    if (client && json_object_is_type(client, json_type_null)) client = NULL;
    if (client && !json_object_is_type(client, json_type_array)) {
        ccp_buf_append_str(err, "tools: must be a list of tools");
        return CCP_ERR;
    }
    size_t nc = client ? json_object_array_length(client) : 0;
    if (!ccp_transform_outputs(t, json_object_array_length(defaults) + nc, err)) return CCP_ERR;
    for (size_t i = 0; i < nc; i++)
        if (!json_object_is_type(json_object_array_get_idx(client, i), json_type_object)) {
            ccp_buf_printf(err, "tools[%zu]: must be an object", i);
            return CCP_ERR;
        }
    json_object *merged = json_object_new_array();
    for (size_t i = 0; i < json_object_array_length(defaults); i++) {
        json_object *tool = json_object_array_get_idx(defaults, i), *copy = NULL;
        /* The client's own tool of that name wins: the API refuses twins. */
        if (has_tool(client, tool)) continue;
        if (json_object_deep_copy(tool, &copy, NULL) != 0) {
            json_object_put(merged);
            ccp_buf_append_str(err, "tools: cannot copy the default tools");
            return CCP_ERR;
        }
        json_object_array_add(merged, copy);
    }
    for (size_t i = 0; i < nc; i++) json_object_array_add(merged, json_object_get(json_object_array_get_idx(client, i)));
    json_object_object_add(t->body, "tools", merged);
    t->body_changed = true;
    return CCP_OK;
}

static const ccp_step_type merge_tools = {"merge_tools", true, tools_load, tools_apply, tools_free};

/* ---- resolve_fields ------------------------------------------------------ */

#define ENCRYPTED_REASONING "reasoning.encrypted_content"

static void *resolve_load(json_object *params, const ccp_step_env *env, ccp_buf *err)
{
    return no_params_load(params, env, err, "resolve_fields");
}

static bool get_field(json_object *body, const char *key, json_object **out)
{
    *out = NULL;
    return json_object_object_get_ex(body, key, out);
}

static json_object *resolved_reasoning(json_object *given)
{
    const char *effort = "high", *summary = "auto";
    json_object *v;
    if (json_object_is_type(given, json_type_object)) {
        if (json_object_object_get_ex(given, "effort", &v) &&
            (str_is(v, "low") || str_is(v, "medium") || str_is(v, "high")))
            effort = json_object_get_string(v);
        if (json_object_object_get_ex(given, "summary", &v) && is_str(v) && *json_object_get_string(v))
            summary = json_object_get_string(v);
    }
    json_object *r = json_object_new_object();
    json_object_object_add(r, "effort", json_object_new_string(effort));
    json_object_object_add(r, "summary", json_object_new_string(summary));
    return r;
}

/* The client's include values after ours, each once. The values seen are
 * keys of a json-c object (a hash table), so a long list costs its length,
 * not its length squared. */
static json_object *resolved_include(json_object *given)
{
    json_object *list = json_object_new_array(), *seen = json_object_new_object();
    json_object_array_add(list, json_object_new_string(ENCRYPTED_REASONING));
    json_object_object_add(seen, ENCRYPTED_REASONING, NULL);
    for (size_t i = 0; json_object_is_type(given, json_type_array) && i < json_object_array_length(given); i++) {
        json_object *v = json_object_array_get_idx(given, i);
        if (!is_str(v) || json_object_object_get_ex(seen, json_object_get_string(v), NULL)) continue;
        json_object_object_add(seen, json_object_get_string(v), NULL);
        json_object_array_add(list, json_object_new_string(json_object_get_string(v)));
    }
    json_object_put(seen);
    return list;
}

static int resolve_apply(const void *state, ccp_transform *t, ccp_buf *err)
{
    (void)state;
    if (!t->body) return CCP_OK;
    json_object *body = t->body, *v;

    if (!(get_field(body, "tool_choice", &v) &&
          ((is_str(v) && *json_object_get_string(v)) || json_object_is_type(v, json_type_object))))
        json_object_object_add(body, "tool_choice", json_object_new_string("auto"));

    if (!(get_field(body, "parallel_tool_calls", &v) && json_object_is_type(v, json_type_boolean)))
        json_object_object_add(body, "parallel_tool_calls", json_object_new_boolean(0));

    get_field(body, "reasoning", &v);
    json_object_object_add(body, "reasoning", resolved_reasoning(v));

    get_field(body, "include", &v);
    if (!ccp_transform_outputs(t, 1 + (json_object_is_type(v, json_type_array) ? json_object_array_length(v) : 0),
                               err))
        return CCP_ERR;
    json_object_object_add(body, "include", resolved_include(v));

    if (!(get_field(body, "store", &v) && json_object_is_type(v, json_type_boolean)))
        json_object_object_add(body, "store", json_object_new_boolean(0));

    /* The client's wish is kept: a non-stream client is answered with one
     * JSON body made from the forced stream. */
    if (!(get_field(body, "stream", &v) && json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v)))
        t->aggregate_stream = true;
    json_object_object_add(body, "stream", json_object_new_boolean(1));

    t->body_changed = true;
    return CCP_OK;
}

static const ccp_step_type resolve_fields = {"resolve_fields", true, resolve_load, resolve_apply, free};

/* ---- env_context --------------------------------------------------------- */

static void *env_context_load(json_object *params, const ccp_step_env *env, ccp_buf *err)
{
    static const char *const none[] = {NULL};
    if (!ccp_param_check_keys(params, none, err)) return NULL;
    const ccp_config *cfg = env_cfg(env);
    if (!cfg || !cfg->codex_env_cwd || !*cfg->codex_env_cwd) {
        ccp_buf_append_str(err, "env_context needs CODEX_ENV_CWD (the directory to name)");
        return NULL;
    }
    ccp_buf text = {0};
    ccp_buf_printf(&text, ENV_PREFIX " %s", cfg->codex_env_cwd);
    return text.data;
}

/* The first text of a message item: its string content, or the first part
 * that is a string or carries a string "text". */
static const char *first_text(json_object *msg)
{
    json_object *content, *text;
    if (!json_object_object_get_ex(msg, "content", &content)) return NULL;
    if (is_str(content)) return json_object_get_string(content);
    if (!json_object_is_type(content, json_type_array)) return NULL;
    for (size_t i = 0; i < json_object_array_length(content); i++) {
        json_object *part = json_object_array_get_idx(content, i);
        if (is_str(part)) return json_object_get_string(part);
        if (json_object_is_type(part, json_type_object) && json_object_object_get_ex(part, "text", &text) &&
            is_str(text))
            return json_object_get_string(text);
    }
    return NULL;
}

static int env_context_apply(const void *state, ccp_transform *t, ccp_buf *err)
{
    if (!t->body) return CCP_OK;
    bool bad;
    bool was_string = false;
    json_object *input;
    if (json_object_object_get_ex(t->body, "input", &input)) was_string = is_str(input);
    json_object *list = input_list(t->body, &bad, err);
    if (bad) return CCP_ERR;
    if (!list) return CCP_OK; /* no input to put it in */
    if (was_string) t->body_changed = true;
    size_t n = json_object_array_length(list);
    for (size_t i = 0; i < n; i++) {
        json_object *item = json_object_array_get_idx(list, i);
        if (!is_message_item(item)) continue;
        const char *text = first_text(item);
        if (text && strncmp(text, ENV_PREFIX, strlen(ENV_PREFIX)) == 0) return CCP_OK; /* already there */
        break;
    }
    if (!ccp_transform_outputs(t, n + 1, err)) return CCP_ERR;
    json_object *with = json_object_new_array();
    json_object_array_add(with, user_message(state));
    for (size_t i = 0; i < n; i++) json_object_array_add(with, json_object_get(json_object_array_get_idx(list, i)));
    json_object_object_add(t->body, "input", with);
    t->body_changed = true;
    return CCP_OK;
}

static const ccp_step_type env_context = {"env_context", true, env_context_load, env_context_apply, free};

const ccp_step_type *const ccp_steps_codex[] = {&instructions, &normalize_input, &merge_tools, &resolve_fields,
                                                &env_context, NULL};
