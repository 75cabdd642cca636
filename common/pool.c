#include "pool.h"

#include <math.h>
#include <openssl/sha.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "json_fields.h"
#include "json_text.h"
#include "sha256.h"
#include "url.h"

/* Cool-down bounds: 1 s doubling to 60 s without a retry-after; a
 * retry-after is honoured up to an hour (past that it is a misconfigured
 * upstream, and an hour is long enough to notice). */
#define BACKOFF_FIRST_MS 1000LL
#define BACKOFF_MAX_MS 60000LL
#define RETRY_AFTER_MAX_MS 3600000LL

/* The mutable part, per upstream: written with relaxed atomics by any loop
 * thread (see the header: a lost update only blurs which failure counted). */
typedef struct pool_state {
    _Atomic long long cool_until_ms; /* 0: not cooling */
    _Atomic long long failed_at_ms;  /* last failure; 0: never */
    _Atomic int failures;            /* in a row */
} pool_state;

struct ccp_pool {
    ccp_pool_upstream *items;
    pool_state *state;
    size_t count;
    int max_attempts;
    bool maps_models; /* some upstream renames models */
    bool holds_keys;  /* some upstream has a key of its own */
};

/* ---- hashing --------------------------------------------------------------- */

static uint64_t first64(const unsigned char *d)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | d[i];
    return v;
}

uint64_t ccp_pool_key_hash(const char *key, size_t len)
{
    unsigned char d[SHA256_DIGEST_LENGTH];
    ccp_sha256(key, len, d);
    return first64(d);
}

/* MurmurHash3's 64-bit finaliser: a bijection whose every output bit
 * depends on every input bit, so the hashes of (key, a) and (key, b) are
 * as good as independent. */
static uint64_t fmix64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return k;
}

double ccp_pool_score(const ccp_pool_upstream *u, uint64_t key_hash)
{
    uint64_t h = fmix64(key_hash ^ fmix64(u->name_hash + 0x9e3779b97f4a7c15ULL));
    /* The top 53 bits, centred in their interval: strictly inside (0, 1),
     * so the logarithm is finite and negative. */
    double unit = ((double)(h >> 11) + 0.5) / 9007199254740992.0;
    return -(double)u->weight / log(unit);
}

/* ---- loading ----------------------------------------------------------------- */

/* Not empty, and only ASCII letters, digits and the bytes of extra. */
static bool alnum_and(const char *s, const char *extra)
{
    if (!*s) return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              strchr(extra, *s)))
            return false;
    return true;
}

static bool name_ok(const char *s)
{
    return strlen(s) <= 64 && alnum_and(s, "-._");
}

/* An HTTP token (RFC 9110 tchar): what a header name may be. */
static bool token_ok(const char *s)
{
    return alnum_and(s, "!#$%&'*+-.^_`|~");
}

static void upstream_free(ccp_pool_upstream *u)
{
    free(u->name);
    free(u->base_url);
    free(u->api_key);
    free(u->key_env);
    for (size_t i = 0; i < u->model_count; i++) {
        free(u->models[i].from);
        free(u->models[i].to);
    }
    free(u->models);
    ccp_headers_free(&u->headers);
    memset(u, 0, sizeof *u);
}

void ccp_pool_free(ccp_pool *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->count; i++) upstream_free(&p->items[i]);
    free(p->items);
    free(p->state);
    free(p);
}

static void set_base_url(ccp_pool_upstream *u, const char *url)
{
    size_t n = strlen(url);
    while (n > 0 && url[n - 1] == '/') n--;
    u->base_url = ccp_xstrndup(url, n);
}

static bool load_key(json_object *o, ccp_pool_upstream *u, ccp_buf *err)
{
    const char *key;
    if (!ccp_field_string(o, "field", "api_key", false, &key, err)) return false;
    if (!key) return true;
    if (strncmp(key, "env:", 4) == 0) {
        const char *var = key + 4, *v = getenv(var);
        if (!*var) {
            ccp_buf_append_str(err, "field \"api_key\": \"env:\" must name an environment variable");
            return false;
        }
        if (!v || !*v) {
            ccp_buf_printf(err, "field \"api_key\": environment variable %s (named by \"env:%s\") is not set", var,
                           var);
            return false;
        }
        u->key_env = ccp_xstrdup(var);
        key = v;
    }
    /* Never echo the key itself: it may be a real one. */
    if (!*key || !ccp_http_header_value_ok(key)) {
        ccp_buf_append_str(err, "field \"api_key\": must be one line of text, not empty");
        return false;
    }
    u->api_key = ccp_xstrdup(key);
    return true;
}

static bool load_models(json_object *o, ccp_pool_upstream *u, ccp_buf *err)
{
    json_object *m;
    if (!json_object_object_get_ex(o, "models", &m)) return true;
    if (!json_object_is_type(m, json_type_object) || json_object_object_length(m) == 0) {
        ccp_buf_append_str(err, "field \"models\": must be a non-empty object mapping client model names to the "
                                "upstream's (\"*\": \"*\" takes every other model unchanged)");
        return false;
    }
    u->models = ccp_xcalloc((size_t)json_object_object_length(m), sizeof *u->models);
    json_object_object_foreach(m, from, to)
    {
        const char *t = json_object_is_type(to, json_type_string) ? json_object_get_string(to) : NULL;
        if (!*from || !t || !*t || strlen(t) != (size_t)json_object_get_string_len(to) ||
            !ccp_http_header_value_ok(t)) {
            ccp_buf_printf(err, "field \"models\": \"%s\" must map to a non-empty model name", from);
            return false;
        }
        u->models[u->model_count].from = ccp_xstrdup(from);
        u->models[u->model_count].to = ccp_xstrdup(t);
        u->model_count++;
    }
    return true;
}

static bool load_headers(json_object *o, ccp_pool_upstream *u, ccp_buf *err)
{
    static const char *const reserved[] = {"host", "content-length", "transfer-encoding", "connection",
                                           "x-api-key", "authorization", NULL};
    json_object *h;
    if (!json_object_object_get_ex(o, "headers", &h)) return true;
    if (!json_object_is_type(h, json_type_object)) {
        ccp_buf_append_str(err, "field \"headers\": must be an object of header names and values");
        return false;
    }
    json_object_object_foreach(h, name, val)
    {
        const char *v = json_object_is_type(val, json_type_string) ? json_object_get_string(val) : NULL;
        if (!token_ok(name)) {
            ccp_buf_printf(err, "field \"headers\": \"%s\" is not a header name", name);
            return false;
        }
        for (const char *const *r = reserved; *r; r++)
            if (strcasecmp(name, *r) == 0) {
                ccp_buf_printf(err, "field \"headers\": %s is set by the proxy%s", name,
                               r - reserved >= 4 ? "; give the key as \"api_key\" (and \"auth_style\")" : "");
                return false;
            }
        if (!v || strlen(v) != (size_t)json_object_get_string_len(val) || !ccp_http_header_value_ok(v)) {
            ccp_buf_printf(err, "field \"headers\": the value of %s must be one line of text", name);
            return false;
        }
        ccp_headers_add(&u->headers, name, v);
    }
    return true;
}

static bool load_auth_style(json_object *o, ccp_pool_upstream *u, const ccp_config *cfg, ccp_buf *err)
{
    const char *s;
    if (!ccp_field_string(o, "field", "auth_style", false, &s, err)) return false;
    u->auth_style = cfg->upstream_auth_style;
    if (!s) return true;
    if (strcasecmp(s, "auto") == 0) u->auth_style = CCP_AUTH_AUTO;
    else if (strcasecmp(s, "x-api-key") == 0) u->auth_style = CCP_AUTH_X_API_KEY;
    else if (strcasecmp(s, "bearer") == 0) u->auth_style = CCP_AUTH_BEARER;
    else {
        ccp_buf_append_str(err, "field \"auth_style\": expected auto, x-api-key or bearer");
        return false;
    }
    return true;
}

static bool load_upstream(json_object *o, ccp_pool_upstream *u, const ccp_config *cfg, ccp_buf *err)
{
    static const char *const keys[] = {"name", "base_url", "api_key", "weight", "priority",
                                       "models", "headers", "auth_style", NULL};
    if (!json_object_is_type(o, json_type_object)) {
        ccp_buf_append_str(err, "must be an object with \"name\" and \"base_url\"");
        return false;
    }
    const char *name, *url;
    if (!ccp_field_string(o, "field", "name", true, &name, err)) return false;
    if (!name_ok(name)) {
        ccp_buf_append_str(err, "field \"name\": 1 to 64 letters, digits, '-', '.' or '_'");
        return false;
    }
    u->name = ccp_xstrdup(name);
    u->name_hash = ccp_pool_key_hash(name, strlen(name));
    if (!ccp_fields_check_keys(o, "field", keys, NULL, err)) return false;
    if (!ccp_field_string(o, "field", "base_url", true, &url, err)) return false;
    if (!ccp_config_base_url_ok(url)) {
        ccp_buf_append_str(err, "field \"base_url\": expected an http:// or https:// URL with a host, no query");
        return false;
    }
    set_base_url(u, url);
    return load_key(o, u, err) && ccp_field_int(o, "field", "weight", 1, 1, 1000000, &u->weight, err) &&
           ccp_field_int(o, "field", "priority", 0, -1000000, 1000000, &u->priority, err) &&
           load_models(o, u, err) && load_headers(o, u, err) && load_auth_style(o, u, cfg, err);
}

static ccp_pool *pool_new(size_t count, const ccp_config *cfg)
{
    ccp_pool *p = ccp_xcalloc(1, sizeof *p);
    p->items = ccp_xcalloc(count ? count : 1, sizeof *p->items);
    p->state = ccp_xcalloc(count ? count : 1, sizeof *p->state);
    p->max_attempts = cfg->upstream_max_attempts;
    return p;
}

static void pool_done(ccp_pool *p)
{
    if (p->max_attempts <= 0)
        p->max_attempts = p->count < CCP_POOL_DEFAULT_MAX_ATTEMPTS ? (int)p->count : CCP_POOL_DEFAULT_MAX_ATTEMPTS;
    for (size_t i = 0; i < p->count; i++) {
        if (p->items[i].models) p->maps_models = true;
        if (p->items[i].api_key) p->holds_keys = true;
    }
}

/* The pool of one: today's configuration, unchanged. */
static ccp_pool *pool_of_one(const ccp_config *cfg)
{
    ccp_pool *p = pool_new(1, cfg);
    ccp_pool_upstream *u = &p->items[0];
    u->name = ccp_xstrdup("default");
    u->name_hash = ccp_pool_key_hash(u->name, strlen(u->name));
    set_base_url(u, cfg->upstream_base_url ? cfg->upstream_base_url : "");
    u->api_key = cfg->server_api_key ? ccp_xstrdup(cfg->server_api_key) : NULL;
    u->weight = 1;
    u->auth_style = cfg->upstream_auth_style;
    p->count = 1;
    pool_done(p);
    return p;
}

int ccp_pool_load_text(ccp_pool **out, const char *text, size_t len, const char *origin, const char *service,
                       const ccp_config *cfg, ccp_buf *err)
{
    static const char *const top_keys[] = {"claude", "codex", "description", "$schema", NULL};
    *out = NULL;
    json_object *root = NULL, *section;
    ccp_buf why = {0};
    ccp_pool *p = NULL;
    if (ccp_json_parse(text, len, &root, NULL, &why) != CCP_JSON_OK) {
        ccp_buf_printf(err, "%s: not valid JSON: %s", origin, why.data);
        goto error;
    }
    if (!json_object_is_type(root, json_type_object)) {
        ccp_buf_printf(err, "%s: the top level must be an object with a section per service (\"claude\", \"codex\")",
                       origin);
        goto error;
    }
    if (!ccp_fields_check_keys(root, "key", top_keys, NULL, &why)) {
        ccp_buf_printf(err, "%s: top level: %s", origin, why.data);
        goto error;
    }
    if (!json_object_object_get_ex(root, service, &section)) {
        /* One file may pool one service; the other keeps its base URL. */
        json_object_put(root);
        *out = pool_of_one(cfg);
        return CCP_OK;
    }
    size_t n = json_object_is_type(section, json_type_array) ? json_object_array_length(section) : 0;
    if (n == 0 || n > CCP_POOL_MAX) {
        ccp_buf_printf(err, "%s: \"%s\" must be a list of 1 to %d upstreams", origin, service, CCP_POOL_MAX);
        goto error;
    }
    p = pool_new(n, cfg);
    for (size_t i = 0; i < n; i++) {
        ccp_pool_upstream *u = &p->items[i];
        p->count++;
        ccp_buf_reset(&why);
        if (!load_upstream(json_object_array_get_idx(section, i), u, cfg, &why)) {
            if (u->name) ccp_buf_printf(err, "%s: %s upstream \"%s\": %s", origin, service, u->name, why.data);
            else ccp_buf_printf(err, "%s: %s upstream #%zu: %s", origin, service, i + 1, why.data);
            goto error;
        }
        for (size_t j = 0; j < i; j++)
            if (strcasecmp(p->items[j].name, u->name) == 0) {
                ccp_buf_printf(err, "%s: %s upstream #%zu: the name \"%s\" is taken by upstream #%zu; names must "
                                    "be unique",
                               origin, service, i + 1, u->name, j + 1);
                goto error;
            }
        /* The rule the base URL's server key follows, per upstream. */
        if (u->api_key && cfg->access_count == 0) {
            ccp_buf_printf(err,
                           "%s: %s upstream \"%s\" has an api_key but ACCESS_KEYS is empty: a server-held key would "
                           "be served to anyone; set ACCESS_KEYS to the keys your clients present",
                           origin, service, u->name);
            goto error;
        }
    }
    pool_done(p);
    json_object_put(root);
    ccp_buf_free(&why);
    *out = p;
    return CCP_OK;
error:
    ccp_pool_free(p);
    json_object_put(root);
    ccp_buf_free(&why);
    return CCP_ERR;
}

int ccp_pool_load(ccp_pool **out, const char *service, const ccp_config *cfg, ccp_buf *err)
{
    *out = NULL;
    if (!cfg->upstreams_file) {
        *out = pool_of_one(cfg);
        return CCP_OK;
    }
    ccp_buf text = {0}, why = {0};
    int rc = ccp_buf_read_file(&text, cfg->upstreams_file, &why);
    if (rc != CCP_OK) ccp_buf_printf(err, "UPSTREAMS_FILE=%s %s", cfg->upstreams_file, why.data);
    else rc = ccp_pool_load_text(out, text.data, text.len, cfg->upstreams_file, service, cfg, err);
    ccp_buf_free(&text);
    ccp_buf_free(&why);
    return rc;
}

/* ---- reading ------------------------------------------------------------------ */

size_t ccp_pool_count(const ccp_pool *p)
{
    return p->count;
}

const ccp_pool_upstream *ccp_pool_at(const ccp_pool *p, size_t i)
{
    return i < p->count ? &p->items[i] : NULL;
}

int ccp_pool_max_attempts(const ccp_pool *p)
{
    return p->max_attempts;
}

bool ccp_pool_holds_keys(const ccp_pool *p)
{
    return p->holds_keys;
}

bool ccp_pool_maps_models(const ccp_pool *p)
{
    return p->maps_models;
}

bool ccp_pool_takes(const ccp_pool_upstream *u, const char *model, const char **upstream_model)
{
    *upstream_model = NULL;
    if (!model || !u->models) return true;
    const ccp_pool_model *any = NULL;
    for (size_t i = 0; i < u->model_count; i++) {
        if (strcmp(u->models[i].from, model) == 0) {
            *upstream_model = u->models[i].to;
            return true;
        }
        if (strcmp(u->models[i].from, "*") == 0) any = &u->models[i];
    }
    if (!any) return false;
    if (strcmp(any->to, "*") != 0) *upstream_model = any->to;
    return true;
}

typedef struct ranked {
    size_t index;
    long priority;
    double score;
    long long failed_at;
} ranked;

static int by_rank(const void *pa, const void *pb)
{
    const ranked *a = pa, *b = pb;
    if (a->priority != b->priority) return a->priority > b->priority ? -1 : 1;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    return (a->index > b->index) - (a->index < b->index);
}

static int by_failed_at(const void *pa, const void *pb)
{
    const ranked *a = pa, *b = pb;
    if (a->failed_at != b->failed_at) return a->failed_at < b->failed_at ? -1 : 1;
    return by_rank(pa, pb);
}

/* The key's hash and the scores matter only where there is a choice: a
 * pool of one (every configuration without UPSTREAMS_FILE) hashes nothing
 * per request. */
static void score(const ccp_pool *p, ranked *r, size_t n, const char *key, size_t key_len)
{
    uint64_t kh = ccp_pool_key_hash(key ? key : "", key ? key_len : 0);
    for (size_t i = 0; i < n; i++) r[i].score = ccp_pool_score(&p->items[r[i].index], kh);
}

size_t ccp_pool_order(const ccp_pool *p, const char *key, size_t key_len, const char *model, long long now_ms,
                      size_t *order, size_t max)
{
    ranked r[CCP_POOL_MAX];
    size_t usable = 0, cooling = 0;
    /* Usable ones fill r from the front, cooling ones from the back. */
    for (size_t i = 0; i < p->count; i++) {
        const char *um;
        if (!ccp_pool_takes(&p->items[i], model, &um)) continue;
        bool cools = ccp_pool_cooling_ms(p, i, now_ms) > 0;
        ranked *slot = cools ? &r[p->count - 1 - cooling++] : &r[usable++];
        *slot = (ranked){i, p->items[i].priority, 0,
                         atomic_load_explicit(&p->state[i].failed_at_ms, memory_order_relaxed)};
    }
    ranked *from = r;
    size_t n = usable;
    if (usable) {
        if (usable > 1) {
            score(p, r, usable, key, key_len);
            qsort(r, usable, sizeof *r, by_rank);
        }
    } else if (cooling) {
        from = &r[p->count - cooling];
        n = cooling;
        if (n > 1) {
            score(p, from, n, key, key_len);
            qsort(from, n, sizeof *from, by_failed_at);
        }
    }
    if (n > max) n = max;
    for (size_t i = 0; i < n; i++) order[i] = from[i].index;
    return n;
}

/* ---- cool-down ---------------------------------------------------------------- */

void ccp_pool_failed(const ccp_pool *p, size_t i, long long retry_after_ms, long long now_ms)
{
    if (i >= p->count) return;
    pool_state *s = &p->state[i];
    int n = atomic_fetch_add_explicit(&s->failures, 1, memory_order_relaxed) + 1;
    long long wait;
    if (retry_after_ms >= 0) {
        wait = retry_after_ms < RETRY_AFTER_MAX_MS ? retry_after_ms : RETRY_AFTER_MAX_MS;
    } else {
        wait = BACKOFF_FIRST_MS;
        for (int k = 1; k < n && wait < BACKOFF_MAX_MS; k++) wait *= 2;
        if (wait > BACKOFF_MAX_MS) wait = BACKOFF_MAX_MS;
    }
    /* now_ms is monotonic and > 0, so 0 keeps meaning "never". */
    atomic_store_explicit(&s->failed_at_ms, now_ms > 0 ? now_ms : 1, memory_order_relaxed);
    atomic_store_explicit(&s->cool_until_ms, now_ms + wait, memory_order_relaxed);
}

void ccp_pool_succeeded(const ccp_pool *p, size_t i)
{
    if (i >= p->count) return;
    pool_state *s = &p->state[i];
    /* The common case writes nothing: no cache line bouncing between loops. */
    if (atomic_load_explicit(&s->failures, memory_order_relaxed) == 0 &&
        atomic_load_explicit(&s->cool_until_ms, memory_order_relaxed) == 0)
        return;
    atomic_store_explicit(&s->failures, 0, memory_order_relaxed);
    atomic_store_explicit(&s->cool_until_ms, 0, memory_order_relaxed);
}

long long ccp_pool_cooling_ms(const ccp_pool *p, size_t i, long long now_ms)
{
    if (i >= p->count) return 0;
    long long until = atomic_load_explicit(&p->state[i].cool_until_ms, memory_order_relaxed);
    return until > now_ms ? until - now_ms : 0;
}

/* ---- describing ----------------------------------------------------------------- */

static void describe_common(const ccp_pool_upstream *u, ccp_buf *out)
{
    ccp_buf url = {0};
    ccp_url_append_masked(&url, u->base_url);
    ccp_buf_append_str(out, "{\"name\":");
    ccp_buf_append_json_string(out, u->name);
    ccp_buf_append_str(out, ",\"base_url\":");
    ccp_buf_append_json_string(out, ccp_buf_cstr(&url));
    ccp_buf_printf(out, ",\"weight\":%ld,\"priority\":%ld,\"models\":", u->weight, u->priority);
    if (!u->models) {
        ccp_buf_append_str(out, "null");
    } else {
        ccp_buf_append_char(out, '{');
        for (size_t i = 0; i < u->model_count; i++) {
            if (i) ccp_buf_append_char(out, ',');
            ccp_buf_append_json_string(out, u->models[i].from);
            ccp_buf_append_char(out, ':');
            ccp_buf_append_json_string(out, u->models[i].to);
        }
        ccp_buf_append_char(out, '}');
    }
    static const char *const styles[] = {"auto", "x-api-key", "bearer"};
    ccp_buf_printf(out, ",\"auth_style\":\"%s\",\"headers\":[", styles[u->auth_style]);
    for (size_t i = 0; i < u->headers.count; i++) {
        if (i) ccp_buf_append_char(out, ',');
        ccp_buf_append_json_string(out, u->headers.items[i].name);
    }
    ccp_buf_append_char(out, ']');
    ccp_buf_free(&url);
}

void ccp_pool_describe(const ccp_pool *p, long long now_ms, ccp_buf *out)
{
    ccp_buf_append_str(out, "{\"upstreams\":[");
    for (size_t i = 0; i < p->count; i++) {
        if (i) ccp_buf_append_char(out, ',');
        describe_common(&p->items[i], out);
        long long left = ccp_pool_cooling_ms(p, i, now_ms);
        ccp_buf_printf(out, ",\"key\":\"%s\",\"state\":\"%s\",\"cool_down_s\":%.3f,\"failures\":%d}",
                       p->items[i].api_key ? "server" : "client", left > 0 ? "cooling" : "ready", left / 1000.0,
                       atomic_load_explicit(&p->state[i].failures, memory_order_relaxed));
    }
    ccp_buf_printf(out, "],\"max_attempts\":%d}", p->max_attempts);
}

void ccp_pool_describe_config(const ccp_pool *p, ccp_buf *out)
{
    ccp_buf_append_str(out, "\"upstreams\":[");
    for (size_t i = 0; i < p->count; i++) {
        const ccp_pool_upstream *u = &p->items[i];
        if (i) ccp_buf_append_char(out, ',');
        describe_common(u, out);
        ccp_buf_append_str(out, ",\"api_key\":");
        if (u->key_env) {
            ccp_buf_append_str(out, "\"env:");
            ccp_buf_append_json_escaped(out, u->key_env, strlen(u->key_env));
            ccp_buf_append_str(out, " (***)\"");
        } else {
            ccp_buf_append_str(out, u->api_key ? "\"***\"" : "null");
        }
        ccp_buf_append_char(out, '}');
    }
    ccp_buf_printf(out, "],\"upstream_max_attempts_effective\":%d", p->max_attempts);
}
