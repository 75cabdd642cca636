/* pool: the upstreams of one service (UPSTREAMS_FILE, or the base URL and
 * server key as a pool of one), the order a request tries them in, and
 * their cool-down state.
 *
 * Invariants:
 * - The configuration part of the pool is built once at start-up and never
 *   changes; workers read it without locks. Names are unique, weights >= 1.
 * - The order is a pure function of (stable key, model, cool-down state):
 *   rendezvous (highest random weight) hashing, so every thread, process and
 *   host sends the same key to the same upstream without shared state, and
 *   an upstream that leaves or returns moves only the keys it wins.
 * - The cool-down state is per process and the only mutable part: a few
 *   atomics per upstream, written by whichever loop thread saw the failure
 *   or the success. Races between threads only blur which failure counted;
 *   no reader ever sees a torn value.
 * - No key ever leaves this module in a description: server-held keys show
 *   as "***" (or the env: variable's name), URLs with their credentials
 *   masked, extra headers by name only. */
#ifndef CCP_POOL_H
#define CCP_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"
#include "http.h"
#include "status.h"

/* Upstreams per service: far more than any real pool, small enough for a
 * per-request order on the stack. */
#define CCP_POOL_MAX 64
/* Attempts when UPSTREAM_MAX_ATTEMPTS is 0 (the default): the pool size,
 * at most this. */
#define CCP_POOL_DEFAULT_MAX_ATTEMPTS 3

typedef struct ccp_pool ccp_pool;

/* One client model and what the upstream calls it ("*" as from: any other
 * model; "*" as to: the client's name unchanged). */
typedef struct ccp_pool_model {
    char *from;
    char *to;
} ccp_pool_model;

/* One upstream, read-only after loading. */
typedef struct ccp_pool_upstream {
    char *name;
    char *base_url; /* no trailing slash; its path is kept */
    char *api_key;  /* NULL: the client's key goes upstream */
    char *key_env;  /* the NAME of "env:NAME", for descriptions; NULL otherwise */
    long weight;    /* >= 1 */
    long priority;  /* higher first */
    ccp_pool_model *models; /* NULL (no "models"): takes every model */
    size_t model_count;
    ccp_headers headers;    /* extra headers sent to this upstream */
    ccp_auth_style auth_style;
    uint64_t name_hash;
} ccp_pool_upstream;

/* Builds the pool of a service ("claude" or "codex") from cfg: its
 * UPSTREAMS_FILE section, or (no file, or a file without that section)
 * the pool of one named "default" from the base URL, the server key and
 * UPSTREAM_AUTH_STYLE. On error err holds one line naming the file, the
 * upstream and the problem, and *out is NULL. */
int ccp_pool_load(ccp_pool **out, const char *service, const ccp_config *cfg, ccp_buf *err);
/* The same from a JSON text; origin names it in messages. */
int ccp_pool_load_text(ccp_pool **out, const char *text, size_t len, const char *origin, const char *service,
                       const ccp_config *cfg, ccp_buf *err);
void ccp_pool_free(ccp_pool *p);

size_t ccp_pool_count(const ccp_pool *p);
const ccp_pool_upstream *ccp_pool_at(const ccp_pool *p, size_t i);
/* Attempts a request may make: UPSTREAM_MAX_ATTEMPTS, or by default the
 * pool size, at most CCP_POOL_DEFAULT_MAX_ATTEMPTS. */
int ccp_pool_max_attempts(const ccp_pool *p);
/* True when some upstream holds a server key: clients must then present
 * one of ACCESS_KEYS. */
bool ccp_pool_holds_keys(const ccp_pool *p);
/* True when some upstream has a "models" object (a request's body may then
 * be rewritten per upstream). */
bool ccp_pool_maps_models(const ccp_pool *p);

/* Does u take model (NULL: a request without one, taken by every upstream)?
 * *upstream_model is the name to send (NULL: leave the body as it is). */
bool ccp_pool_takes(const ccp_pool_upstream *u, const char *model, const char **upstream_model);

/* The upstreams a request tries, best first, as indexes into order (at most
 * max; returns how many): those that take model and are not cooling down at
 * now_ms, by priority (higher first) and then by rendezvous score of key;
 * when every one that takes the model is cooling down, all of them, least
 * recently failed first. */
size_t ccp_pool_order(const ccp_pool *p, const char *key, size_t key_len, const char *model, long long now_ms,
                      size_t *order, size_t max);

/* The rendezvous score of key for upstream u: -weight / ln(h), h the
 * 64-bit hash of (key, name) mapped into (0, 1). Exposed for tests. */
double ccp_pool_score(const ccp_pool_upstream *u, uint64_t key_hash);
uint64_t ccp_pool_key_hash(const char *key, size_t len);

/* Cool-down: a failure cools the upstream down for retry_after_ms when the
 * upstream said (>= 0), else 1 s doubling per failure in a row up to 60 s;
 * a success ends it. Thread-safe. */
void ccp_pool_failed(const ccp_pool *p, size_t i, long long retry_after_ms, long long now_ms);
void ccp_pool_succeeded(const ccp_pool *p, size_t i);
/* ms of cool-down left at now_ms (0: usable). */
long long ccp_pool_cooling_ms(const ccp_pool *p, size_t i, long long now_ms);

/* {"upstreams":[...],"max_attempts":N} for GET /upstreams: name, base URL
 * without credentials, weight, priority, models, key ("server" or
 * "client"), extra header names, state ("ready" or "cooling"), cool-down
 * left, failures in a row. */
void ccp_pool_describe(const ccp_pool *p, long long now_ms, ccp_buf *out);
/* "upstreams":[...] as one JSON member, for --check-config and the start-up
 * line: the configuration, keys masked. */
void ccp_pool_describe_config(const ccp_pool *p, ccp_buf *out);

#endif
