/* Steps for the Anthropic Messages body: prepend_system, cache_last_message. */
#include <stdlib.h>
#include <string.h>

#include "steps.h"

/* The API refuses a request with more cache_control breakpoints than this. */
#define CACHE_BREAKPOINT_LIMIT 4

/* Counts marked blocks in a block list, including blocks nested in a
 * block's own "content" list (a tool_result's): the API counts those too. */
static int count_marked_blocks(json_object *list)
{
    int n = 0;
    if (!json_object_is_type(list, json_type_array)) return 0;
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        json_object *b = json_object_array_get_idx(list, i), *cc, *inner;
        if (!json_object_is_type(b, json_type_object)) continue;
        if (json_object_object_get_ex(b, "cache_control", &cc) && !json_object_is_type(cc, json_type_null)) n++;
        if (json_object_object_get_ex(b, "content", &inner)) n += count_marked_blocks(inner);
    }
    return n;
}

/* Breakpoints already in the request: system blocks, tools, message blocks. */
static int count_breakpoints(json_object *body)
{
    json_object *v;
    int n = 0;
    if (json_object_object_get_ex(body, "system", &v)) n += count_marked_blocks(v);
    if (json_object_object_get_ex(body, "tools", &v)) n += count_marked_blocks(v);
    if (json_object_object_get_ex(body, "messages", &v) && json_object_is_type(v, json_type_array))
        for (size_t i = 0; i < json_object_array_length(v); i++) {
            json_object *m = json_object_array_get_idx(v, i), *content;
            if (json_object_is_type(m, json_type_object) && json_object_object_get_ex(m, "content", &content))
                n += count_marked_blocks(content);
        }
    return n;
}

static json_object *ephemeral(void)
{
    json_object *cc = json_object_new_object();
    json_object_object_add(cc, "type", json_object_new_string("ephemeral"));
    return cc;
}

static json_object *text_block(const char *text)
{
    json_object *b = json_object_new_object();
    json_object_object_add(b, "type", json_object_new_string("text"));
    json_object_object_add(b, "text", json_object_new_string(text));
    return b;
}

/* ---- prepend_system ------------------------------------------------------ */

typedef struct prepend_state {
    char *text;
    bool cache_control;
} prepend_state;

static void prepend_free(void *state)
{
    prepend_state *s = state;
    if (!s) return;
    free(s->text);
    free(s);
}

static void *prepend_load(json_object *params, const ccp_step_env *env, ccp_buf *err)
{
    (void)env;
    static const char *const keys[] = {"text", "cache_control", NULL};
    const char *text;
    bool cc;
    if (!ccp_param_check_keys(params, keys, err) || !ccp_param_string(params, "text", true, &text, err) ||
        !ccp_param_bool(params, "cache_control", false, &cc, err))
        return NULL;
    if (!*text) {
        ccp_buf_append_str(err, "parameter \"text\" must not be empty");
        return NULL;
    }
    prepend_state *s = ccp_xcalloc(1, sizeof *s);
    s->text = ccp_xstrdup(text);
    s->cache_control = cc;
    return s;
}

static bool block_is_text(json_object *b, const char *text)
{
    json_object *type, *t;
    return json_object_is_type(b, json_type_object) && json_object_object_get_ex(b, "type", &type) &&
           json_object_is_type(type, json_type_string) && strcmp(json_object_get_string(type), "text") == 0 &&
           json_object_object_get_ex(b, "text", &t) && json_object_is_type(t, json_type_string) &&
           strcmp(json_object_get_string(t), text) == 0;
}

static int prepend_apply(const void *state, ccp_transform *t, ccp_buf *err)
{
    const prepend_state *s = state;
    if (!t->body) return CCP_OK;
    json_object *system = NULL;
    json_object_object_get_ex(t->body, "system", &system);
    json_object *list;
    if (!system || json_object_is_type(system, json_type_null)) {
        list = json_object_new_array();
    } else if (json_object_is_type(system, json_type_string)) {
        list = json_object_new_array();
        const char *old = json_object_get_string(system);
        /* A string equal to the text is the same prompt: no duplicate. */
        if (*old && strcmp(old, s->text) != 0) json_object_array_add(list, text_block(old));
    } else if (json_object_is_type(system, json_type_array)) {
        if (json_object_array_length(system) > 0 && block_is_text(json_object_array_get_idx(system, 0), s->text))
            return CCP_OK;
        /* Every block moves one place down. */
        if (!ccp_transform_outputs(t, json_object_array_length(system) + 1, err)) return CCP_ERR;
        list = json_object_get(system);
    } else {
        ccp_buf_append_str(err, "system: must be a string or a list of text blocks");
        return CCP_ERR;
    }
    json_object *block = text_block(s->text);
    /* Counted before the block goes in, so the limit is never passed. */
    if (s->cache_control && count_breakpoints(t->body) < CACHE_BREAKPOINT_LIMIT)
        json_object_object_add(block, "cache_control", ephemeral());
    json_object_array_put_idx(list, json_object_array_length(list), NULL); /* grow by one */
    for (size_t i = json_object_array_length(list) - 1; i > 0; i--)
        json_object_array_put_idx(list, i, json_object_get(json_object_array_get_idx(list, i - 1)));
    json_object_array_put_idx(list, 0, block);
    json_object_object_add(t->body, "system", list);
    t->body_changed = true;
    return CCP_OK;
}

static const ccp_step_type prepend_system = {"prepend_system", true, prepend_load, prepend_apply, prepend_free};

/* ---- cache_last_message -------------------------------------------------- */

static void *cache_last_load(json_object *params, const ccp_step_env *env, ccp_buf *err)
{
    (void)env;
    static const char *const none[] = {NULL};
    if (!ccp_param_check_keys(params, none, err)) return NULL;
    return ccp_xstrdup("cache_last_message"); /* no state; non-NULL means loaded */
}

static bool markable(json_object *block)
{
    json_object *type, *cc, *text;
    if (!json_object_is_type(block, json_type_object)) return false;
    if (json_object_object_get_ex(block, "cache_control", &cc)) return false; /* already marked */
    if (!json_object_object_get_ex(block, "type", &type) || !json_object_is_type(type, json_type_string)) return false;
    const char *ty = json_object_get_string(type);
    /* The API refuses markers on thinking blocks and on empty text. */
    if (strcmp(ty, "thinking") == 0 || strcmp(ty, "redacted_thinking") == 0) return false;
    if (strcmp(ty, "text") == 0 && (!json_object_object_get_ex(block, "text", &text) ||
                                    !json_object_is_type(text, json_type_string) || !*json_object_get_string(text)))
        return false;
    return true;
}

static int cache_last_apply(const void *state, ccp_transform *t, ccp_buf *err)
{
    (void)state, (void)err;
    json_object *msgs, *last, *content;
    if (!t->body || !json_object_object_get_ex(t->body, "messages", &msgs) ||
        !json_object_is_type(msgs, json_type_array) || json_object_array_length(msgs) == 0)
        return CCP_OK;
    last = json_object_array_get_idx(msgs, json_object_array_length(msgs) - 1);
    if (!json_object_is_type(last, json_type_object) || !json_object_object_get_ex(last, "content", &content))
        return CCP_OK;
    if (count_breakpoints(t->body) >= CACHE_BREAKPOINT_LIMIT) return CCP_OK;
    if (json_object_is_type(content, json_type_string)) {
        const char *text = json_object_get_string(content);
        if (!*text) return CCP_OK;
        json_object *list = json_object_new_array();
        json_object *block = text_block(text);
        json_object_object_add(block, "cache_control", ephemeral());
        json_object_array_add(list, block);
        json_object_object_add(last, "content", list);
        t->body_changed = true;
        return CCP_OK;
    }
    if (!json_object_is_type(content, json_type_array) || json_object_array_length(content) == 0) return CCP_OK;
    json_object *block = json_object_array_get_idx(content, json_object_array_length(content) - 1);
    if (!markable(block)) return CCP_OK;
    json_object_object_add(block, "cache_control", ephemeral());
    t->body_changed = true;
    return CCP_OK;
}

static const ccp_step_type cache_last_message = {"cache_last_message", true, cache_last_load, cache_last_apply, free};

const ccp_step_type *const ccp_steps_claude[] = {&prepend_system, &cache_last_message, NULL};
