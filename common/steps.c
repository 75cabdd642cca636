/* The step registry, the parameter helpers, and the steps both services use:
 * set_header, merge_beta, identity, session. */
#include "steps.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "json_fields.h"
#include "session.h"

/* ---- registry ------------------------------------------------------------ */

static const ccp_step_type *const *const families[] = {ccp_steps_common, ccp_steps_claude, ccp_steps_codex};

bool ccp_transform_outputs(ccp_transform *t, size_t n, ccp_buf *err)
{
    size_t max = t->cfg ? t->cfg->max_step_outputs : 0;
    if (!max || n <= max - t->outputs) {
        t->outputs += n;
        return true;
    }
    t->over_limit = "MAX_STEP_OUTPUTS";
    ccp_buf_printf(err,
                   "the request has more parts than this service rewrites for one request: the adapter's steps "
                   "would make more than %zu input items, content parts, tools or include values "
                   "(MAX_STEP_OUTPUTS)",
                   max);
    return false;
}

const ccp_step_type *ccp_step_find(const char *name)
{
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++)
        for (const ccp_step_type *const *s = families[f]; *s; s++)
            if (strcmp((*s)->name, name) == 0) return *s;
    return NULL;
}

void ccp_step_names(ccp_buf *out)
{
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++)
        for (const ccp_step_type *const *s = families[f]; *s; s++) {
            if (out->len) ccp_buf_append_str(out, ", ");
            ccp_buf_append_str(out, (*s)->name);
        }
}

/* ---- parameters ---------------------------------------------------------- */

/* A step's parameters are its object's fields beside "step" (its name). */
bool ccp_param_check_keys(json_object *params, const char *const *allowed, ccp_buf *err)
{
    return ccp_fields_check_keys(params, "parameter", allowed, "step", err);
}

bool ccp_param_string(json_object *params, const char *key, bool required, const char **out, ccp_buf *err)
{
    return ccp_field_string(params, "parameter", key, required, out, err);
}

bool ccp_param_bool(json_object *params, const char *key, bool def, bool *out, ccp_buf *err)
{
    return ccp_field_bool(params, "parameter", key, def, out, err);
}

bool ccp_param_int(json_object *params, const char *key, long def, long min, long max, long *out, ccp_buf *err)
{
    return ccp_field_int(params, "parameter", key, def, min, max, out, err);
}

/* ---- header checks ------------------------------------------------------- */

static bool header_name_ok(const char *s)
{
    if (!*s) return false;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '-' || *s == '_')) return false;
    return true;
}

/* ---- set_header ---------------------------------------------------------- */

typedef struct header_state {
    char *name;
    char *value;
} header_state;

static void *header_state_new(const char *name, const char *value)
{
    header_state *s = ccp_xcalloc(1, sizeof *s);
    s->name = ccp_xstrdup(name);
    s->value = ccp_xstrdup(value);
    return s;
}

static void *set_header_load(json_object *params, const ccp_step_env *env, ccp_buf *err)
{
    (void)env;
    static const char *const keys[] = {"name", "value", NULL};
    const char *name, *value;
    if (!ccp_param_check_keys(params, keys, err) || !ccp_param_string(params, "name", true, &name, err) ||
        !ccp_param_string(params, "value", true, &value, err))
        return NULL;
    if (!header_name_ok(name) || !ccp_http_header_value_ok(value)) {
        ccp_buf_printf(err, "header \"%s\" is not a valid header name/value", name);
        return NULL;
    }
    return header_state_new(name, value);
}

static int set_header_apply(const void *state, ccp_transform *t, ccp_buf *err)
{
    (void)err;
    const header_state *s = state;
    ccp_headers_set_spelled(t->upstream_headers, s->name, s->value);
    return CCP_OK;
}

static void header_state_free(void *state)
{
    header_state *s = state;
    if (!s) return;
    free(s->name);
    free(s->value);
    free(s);
}

static const ccp_step_type set_header = {"set_header", false, set_header_load, set_header_apply, header_state_free};

/* ---- merge_beta ---------------------------------------------------------- */

static void *merge_beta_load(json_object *params, const ccp_step_env *env, ccp_buf *err)
{
    (void)env;
    static const char *const keys[] = {"values", "header", NULL};
    const char *values, *name;
    if (!ccp_param_check_keys(params, keys, err) || !ccp_param_string(params, "values", true, &values, err) ||
        !ccp_param_string(params, "header", false, &name, err))
        return NULL;
    if (!name) name = "anthropic-beta";
    if (!header_name_ok(name) || !ccp_http_header_value_ok(values) || !*values) {
        ccp_buf_printf(err, "values must be a non-empty comma-separated list for header \"%s\"", name);
        return NULL;
    }
    return header_state_new(name, values);
}

static int merge_beta_apply(const void *state, ccp_transform *t, ccp_buf *err)
{
    (void)err;
    const header_state *s = state;
    ccp_headers_merge_list(t->upstream_headers, s->name, s->value);
    return CCP_OK;
}

static const ccp_step_type merge_beta = {"merge_beta", false, merge_beta_load, merge_beta_apply, header_state_free};

/* ---- identity -------------------------------------------------------------- */

/* A profile: {"headers": {name: value}, "merge": {name: "a,b"}}. Headers are
 * set in the profile's spelling; merged ones keep the client's values. */
typedef struct identity_state {
    ccp_headers set;
    ccp_headers merge;
} identity_state;

static void identity_free(void *state)
{
    identity_state *s = state;
    if (!s) return;
    ccp_headers_free(&s->set);
    ccp_headers_free(&s->merge);
    free(s);
}

static bool load_header_map(json_object *profile, const char *key, const char *profile_name, ccp_headers *out,
                            ccp_buf *err)
{
    json_object *map;
    if (!json_object_object_get_ex(profile, key, &map)) return true;
    if (!json_object_is_type(map, json_type_object)) {
        ccp_buf_printf(err, "profile \"%s\": \"%s\" must be an object of header names to strings", profile_name, key);
        return false;
    }
    json_object_object_foreach(map, name, val)
    {
        if (!json_object_is_type(val, json_type_string) || !header_name_ok(name) ||
            !ccp_http_header_value_ok(json_object_get_string(val))) {
            ccp_buf_printf(err, "profile \"%s\": header \"%s\" must be a valid name with a one-line string value",
                           profile_name, name);
            return false;
        }
        ccp_headers_add(out, name, json_object_get_string(val));
    }
    return true;
}

static void *identity_load(json_object *params, const ccp_step_env *env, ccp_buf *err)
{
    static const char *const keys[] = {"profile", NULL};
    const char *name;
    if (!ccp_param_check_keys(params, keys, err) || !ccp_param_string(params, "profile", true, &name, err))
        return NULL;
    json_object *profile;
    if (!env->profiles || !json_object_object_get_ex(env->profiles, name, &profile) ||
        !json_object_is_type(profile, json_type_object)) {
        ccp_buf_printf(err, "profile \"%s\" is not defined in \"profiles\"", name);
        return NULL;
    }
    static const char *const profile_keys[] = {"headers", "merge", "description", NULL};
    ccp_buf kerr = {0};
    if (!ccp_param_check_keys(profile, profile_keys, &kerr)) {
        ccp_buf_printf(err, "profile \"%s\": %s", name, kerr.data);
        ccp_buf_free(&kerr);
        return NULL;
    }
    ccp_buf_free(&kerr);
    identity_state *s = ccp_xcalloc(1, sizeof *s);
    if (!load_header_map(profile, "headers", name, &s->set, err) ||
        !load_header_map(profile, "merge", name, &s->merge, err)) {
        identity_free(s);
        return NULL;
    }
    return s;
}

static int identity_apply(const void *state, ccp_transform *t, ccp_buf *err)
{
    (void)err;
    const identity_state *s = state;
    for (size_t i = 0; i < s->set.count; i++)
        ccp_headers_set_spelled(t->upstream_headers, s->set.items[i].name, s->set.items[i].value);
    for (size_t i = 0; i < s->merge.count; i++)
        ccp_headers_merge_list(t->upstream_headers, s->merge.items[i].name, s->merge.items[i].value);
    return CCP_OK;
}

static const ccp_step_type identity = {"identity", false, identity_load, identity_apply, identity_free};

/* ---- session --------------------------------------------------------------- */

typedef enum { SHAPE_CLASSIC, SHAPE_JSON, SHAPE_UUID } session_shape;

typedef struct session_state {
    char *purpose;
    long window_seconds;
    session_shape shape;
    char *body_field;  /* "metadata.user_id", "prompt_cache_key", or NULL */
    ccp_headers headers; /* names that carry the session uuid upstream */
} session_state;

static void session_free(void *state)
{
    session_state *s = state;
    if (!s) return;
    free(s->purpose);
    free(s->body_field);
    ccp_headers_free(&s->headers);
    free(s);
}

static void *session_load(json_object *params, const ccp_step_env *env, ccp_buf *err)
{
    static const char *const keys[] = {"purpose", "window_hours", "shape", "field", "headers", NULL};
    const char *purpose, *shape, *field;
    long hours;
    if (!ccp_param_check_keys(params, keys, err) || !ccp_param_string(params, "purpose", false, &purpose, err) ||
        !ccp_param_int(params, "window_hours", 12, 1, 24 * 366, &hours, err) ||
        !ccp_param_string(params, "shape", false, &shape, err) ||
        !ccp_param_string(params, "field", false, &field, err))
        return NULL;
    session_state *s = ccp_xcalloc(1, sizeof *s);
    s->purpose = ccp_xstrdup(purpose ? purpose : env->adapter_name);
    s->window_seconds = hours * 3600;
    if (!shape || strcmp(shape, "classic") == 0) s->shape = SHAPE_CLASSIC;
    else if (strcmp(shape, "json") == 0) s->shape = SHAPE_JSON;
    else if (strcmp(shape, "uuid") == 0) s->shape = SHAPE_UUID;
    else {
        ccp_buf_printf(err, "parameter \"shape\" must be \"classic\", \"json\" or \"uuid\", not \"%s\"", shape);
        session_free(s);
        return NULL;
    }
    if (field && strcmp(field, "metadata.user_id") && strcmp(field, "prompt_cache_key")) {
        ccp_buf_printf(err, "parameter \"field\" must be \"metadata.user_id\" or \"prompt_cache_key\", not \"%s\"",
                       field);
        session_free(s);
        return NULL;
    }
    s->body_field = field ? ccp_xstrdup(field) : NULL;
    json_object *hs;
    if (json_object_object_get_ex(params, "headers", &hs)) {
        bool ok = json_object_is_type(hs, json_type_array);
        for (size_t i = 0; ok && i < json_object_array_length(hs); i++) {
            json_object *h = json_object_array_get_idx(hs, i);
            ok = json_object_is_type(h, json_type_string) && header_name_ok(json_object_get_string(h));
            if (ok) ccp_headers_add(&s->headers, json_object_get_string(h), "");
        }
        if (!ok) {
            ccp_buf_append_str(err, "parameter \"headers\" must be an array of header names");
            session_free(s);
            return NULL;
        }
    }
    if (!s->body_field && s->headers.count == 0) {
        ccp_buf_append_str(err, "session needs a \"field\" or \"headers\" to write the id to");
        session_free(s);
        return NULL;
    }
    return s;
}

static int session_apply(const void *state, ccp_transform *t, ccp_buf *err)
{
    const session_state *s = state;
    ccp_session_ids ids;
    ccp_session_derive(t->client_key, t->cfg->session_secret, s->purpose, s->window_seconds, time(NULL), &ids);
    snprintf(t->session_id, sizeof t->session_id, "%s", ids.session_uuid);
    for (size_t i = 0; i < s->headers.count; i++)
        ccp_headers_set_spelled(t->upstream_headers, s->headers.items[i].name, ids.session_uuid);
    if (!s->body_field || !t->body) return CCP_OK;

    ccp_buf v = {0};
    switch (s->shape) {
    case SHAPE_CLASSIC:
        ccp_buf_printf(&v, "user_%s_account__session_%s", ids.device_hex, ids.session_uuid);
        break;
    case SHAPE_JSON:
        ccp_buf_printf(&v, "{\"device_id\":\"%s\",\"account_uuid\":\"\",\"session_id\":\"%s\"}", ids.device_hex,
                       ids.session_uuid);
        break;
    case SHAPE_UUID:
        ccp_buf_append_str(&v, ids.session_uuid);
        break;
    }
    if (strcmp(s->body_field, "metadata.user_id") == 0) {
        json_object *meta;
        if (!json_object_object_get_ex(t->body, "metadata", &meta) || json_object_is_type(meta, json_type_null)) {
            meta = json_object_new_object();
            json_object_object_add(t->body, "metadata", meta);
        } else if (!json_object_is_type(meta, json_type_object)) {
            ccp_buf_free(&v);
            ccp_buf_append_str(err, "metadata: must be an object");
            return CCP_ERR;
        }
        json_object_object_add(meta, "user_id", json_object_new_string(v.data));
    } else {
        json_object_object_add(t->body, s->body_field, json_object_new_string(v.data));
    }
    ccp_buf_free(&v);
    t->body_changed = true;
    return CCP_OK;
}

static const ccp_step_type session = {"session", true, session_load, session_apply, session_free};

const ccp_step_type *const ccp_steps_common[] = {&set_header, &merge_beta, &identity, &session, NULL};
