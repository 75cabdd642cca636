/* steps: the request transforms adapters are made of, one job each.
 *
 * A step type validates its parameters once, at start-up (load), into an
 * immutable state, and applies it per request (apply). apply may change the
 * parsed body (then it sets t->body_changed) and the upstream headers; it
 * returns CCP_ERR only for a request the step cannot handle, with a message
 * for the client.
 *
 * Steps sit below adapters (an adapter is a list of steps): nothing here
 * knows about adapters. */
#ifndef CCP_STEPS_H
#define CCP_STEPS_H

#include <json-c/json.h>
#include <stdbool.h>

#include "buf.h"
#include "config.h"
#include "http.h"
#include "status.h"

/* What a step may read and change. */
typedef struct ccp_transform {
    const ccp_config *cfg;
    const ccp_request *req;
    const char *client_key;       /* the key the client presented */
    json_object *body;            /* parsed body; NULL when there is none */
    ccp_headers *upstream_headers; /* headers going upstream, in order */
    bool body_changed;            /* a step changed body: re-serialise */
    /* A step forced a stream the client did not ask for: answer the client
     * with one JSON body aggregated from it. The relay also notices this by
     * itself (stream false before the steps, true after). */
    bool aggregate_stream;
    /* The session id a session step derived ("" when none ran): the pool's
     * stable key, so a conversation stays on one upstream. */
    char session_id[40];
    /* What the steps made so far: list entries whose number the client
     * decides (input items, content parts, tools, include values), bounded
     * by cfg->max_step_outputs (MAX_STEP_OUTPUTS); over_limit names the
     * limit when a step refused for it. */
    size_t outputs;
    const char *over_limit;
} ccp_transform;

/* A step is about to make n more outputs: true, or false with err set and
 * t->over_limit = "MAX_STEP_OUTPUTS" when that passes the limit (checked
 * before the work, one comparison; no cfg: no limit). */
bool ccp_transform_outputs(ccp_transform *t, size_t n, ccp_buf *err);

/* What a step may consult while loading: the file's profiles, the config. */
typedef struct ccp_step_env {
    json_object *profiles; /* may be NULL */
    const ccp_config *cfg;
    const char *adapter_name;
} ccp_step_env;

typedef struct ccp_step_type {
    const char *name;
    bool changes_body;
    void *(*load)(json_object *params, const ccp_step_env *env, ccp_buf *err);
    int (*apply)(const void *state, ccp_transform *t, ccp_buf *err);
    void (*free)(void *state);
} ccp_step_type;

const ccp_step_type *ccp_step_find(const char *name);
/* Comma-separated names of every step type, for error messages. */
void ccp_step_names(ccp_buf *out);

/* Parameter helpers for step loaders: json_fields with the keys called
 * "parameter" ("parameter \"name\" is required"). ccp_param_check_keys fails
 * on any key not in allowed (NULL-terminated); "step" itself is always
 * allowed. */
bool ccp_param_check_keys(json_object *params, const char *const *allowed, ccp_buf *err);
bool ccp_param_string(json_object *params, const char *key, bool required, const char **out, ccp_buf *err);
bool ccp_param_bool(json_object *params, const char *key, bool def, bool *out, ccp_buf *err);
bool ccp_param_int(json_object *params, const char *key, long def, long min, long max, long *out, ccp_buf *err);

/* Step tables of each family (steps_claude.c, steps_codex.c). */
extern const ccp_step_type *const ccp_steps_common[];
extern const ccp_step_type *const ccp_steps_claude[];
extern const ccp_step_type *const ccp_steps_codex[];

#endif
