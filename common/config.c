#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include <strings.h>

#include "sha256.h"
#include "url.h"

/* ---- .env parsing ---------------------------------------------------- */

typedef struct env_pairs {
    char **keys;
    char **values;
    size_t n;
} env_pairs;

static void pairs_add(void *ctx, const char *key, const char *value)
{
    env_pairs *p = ctx;
    p->keys = ccp_xrealloc(p->keys, (p->n + 1) * sizeof *p->keys);
    p->values = ccp_xrealloc(p->values, (p->n + 1) * sizeof *p->values);
    p->keys[p->n] = ccp_xstrdup(key);
    p->values[p->n] = ccp_xstrdup(value);
    p->n++;
}

static void pairs_free(env_pairs *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->keys[i]);
        free(p->values[i]);
    }
    free(p->keys);
    free(p->values);
    memset(p, 0, sizeof *p);
}

static const char *skip_space(const char *s, const char *end)
{
    while (s < end && (*s == ' ' || *s == '\t')) s++;
    return s;
}

int ccp_env_parse(const char *text, size_t len, ccp_env_pair_fn fn, void *ctx, ccp_buf *err)
{
    const char *p = text, *end = text + len;
    int lineno = 0, rc = CCP_OK;
    ccp_buf key = {0}, val = {0};
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        const char *line_end = eol;
        if (line_end > p && line_end[-1] == '\r') line_end--;
        lineno++;
        const char *s = skip_space(p, line_end);
        p = eol < end ? eol + 1 : end;
        if (s == line_end || *s == '#') continue;
        if ((size_t)(line_end - s) > 7 && strncmp(s, "export ", 7) == 0) s = skip_space(s + 7, line_end);
        const char *k = s;
        while (s < line_end && (isalnum((unsigned char)*s) || *s == '_')) s++;
        const char *k_end = s;
        s = skip_space(s, line_end);
        if (k_end == k || s >= line_end || *s != '=') {
            ccp_buf_printf(err, ".env line %d: expected KEY=VALUE\n", lineno);
            rc = CCP_ERR;
            continue;
        }
        s = skip_space(s + 1, line_end);
        ccp_buf_reset(&key);
        ccp_buf_reset(&val);
        ccp_buf_append(&key, k, (size_t)(k_end - k));
        if (s < line_end && (*s == '"' || *s == '\'')) {
            char q = *s++;
            const char *close = s;
            while (close < line_end && *close != q) {
                if (q == '"' && *close == '\\' && close + 1 < line_end) close++;
                close++;
            }
            if (close >= line_end) {
                ccp_buf_printf(err, ".env line %d: %s: unterminated quote\n", lineno, key.data);
                rc = CCP_ERR;
                continue;
            }
            for (const char *c = s; c < close; c++) {
                if (q == '"' && *c == '\\' && c + 1 < close) {
                    c++;
                    ccp_buf_append_char(&val, *c == 'n' ? '\n' : *c);
                } else {
                    ccp_buf_append_char(&val, *c);
                }
            }
        } else {
            /* Unquoted: an inline comment starts at " #"; trailing space is dropped. */
            const char *v_end = s;
            while (v_end < line_end && !(*v_end == '#' && v_end > s && (v_end[-1] == ' ' || v_end[-1] == '\t')))
                v_end++;
            while (v_end > s && (v_end[-1] == ' ' || v_end[-1] == '\t')) v_end--;
            ccp_buf_append(&val, s, (size_t)(v_end - s));
        }
        fn(ctx, ccp_buf_cstr(&key), ccp_buf_cstr(&val));
    }
    ccp_buf_free(&key);
    ccp_buf_free(&val);
    return rc;
}

/* ---- lookup ------------------------------------------------------------ */

typedef struct source {
    env_pairs file;
    ccp_buf *err;
    int errors;
} source;

/* Returns the value (environment first, then .env), or NULL when unset.
 * An empty value counts as unset, as the seed's settings treated it. */
static const char *get(source *src, const char *name)
{
    const char *v = getenv(name);
    if (v) return *v ? v : NULL;
    for (size_t i = src->file.n; i-- > 0;)
        if (strcmp(src->file.keys[i], name) == 0) return *src->file.values[i] ? src->file.values[i] : NULL;
    return NULL;
}

static void bad(source *src, const char *name, const char *value, const char *allowed)
{
    ccp_buf_printf(src->err, "%s=%s is invalid: %s\n", name, value, allowed);
    src->errors++;
}

bool ccp_config_base_url_ok(const char *u)
{
    if (strncmp(u, "http://", 7) && strncmp(u, "https://", 8)) return false;
    for (const char *c = u; *c; c++)
        if ((unsigned char)*c <= ' ' || *c == 0x7f || *c == '?' || *c == '#') return false;
    const char *host = strstr(u, "://") + 3;
    return *host && *host != '/';
}

static void split_list(const char *v, char ***items, size_t *count)
{
    *items = NULL;
    *count = 0;
    const char *p = v;
    while (p && *p) {
        const char *comma = strchr(p, ',');
        const char *e = comma ? comma : p + strlen(p);
        const char *s = p;
        while (s < e && isspace((unsigned char)*s)) s++;
        const char *t = e;
        while (t > s && isspace((unsigned char)t[-1])) t--;
        if (t > s) {
            *items = ccp_xrealloc(*items, (*count + 1) * sizeof **items);
            (*items)[(*count)++] = ccp_xstrndup(s, (size_t)(t - s));
        }
        p = comma ? comma + 1 : NULL;
    }
}

static void free_list(char **items, size_t count)
{
    for (size_t i = 0; i < count; i++) free(items[i]);
    free(items);
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* ---- the table ------------------------------------------------------------ */

/* What a variable's text becomes, and so how it is checked, stored, described
 * and printed. Every kind but KEYS and LIST keeps its value in one field. */
typedef enum {
    KIND_CHOICE,       /* one of choices[] (case-insensitive), stored as its int */
    KIND_URL,          /* an http(s) base URL, no trailing slash; credentials masked */
    KIND_STRING,       /* free text (a secret when .secret) */
    KIND_INT,          /* a whole number in [min, max] */
    KIND_SECONDS_MS,   /* seconds, fractions allowed, stored as ms */
    KIND_SECONDS_CEIL, /* seconds, fractions allowed, stored as whole seconds rounded up */
    KIND_PATH,         /* a URL path prefix: "" or "/prefix" */
    KIND_LIST,         /* a comma list (CORS_ALLOW_ORIGINS) */
    KIND_KEYS,         /* the client key list, kept as SHA-256 digests */
    KIND_NETS,         /* addresses and CIDR blocks (netlist), text_default when unset */
} var_kind;

/* The C type of an int variable's field. */
typedef enum { FIELD_INT, FIELD_LONG, FIELD_SIZE } field_type;

typedef struct choice {
    const char *name; /* the first name of a value is its canonical one */
    int value;
} choice;

typedef struct ccp_config_var {
    const char *name;  /* NULL: the service's own, at name_off in ccp_config_names */
    size_t name_off;
    const char *key;   /* the --check-config JSON key, when not the name */
    var_kind kind;
    size_t field;      /* offsetof(ccp_config, ...) */
    field_type type;   /* KIND_INT */
    const char *text_default; /* KIND_STRING, KIND_URL (NULL: the service's), NULL: none */
    double num_default, min, max;
    long (*dynamic_default)(const ccp_config *cfg, const ccp_config_names *names); /* KIND_INT */
    const choice *choices;
    const char *allowed; /* KIND_CHOICE's message */
    bool secret;         /* never described; printed only by --print-config-env */
    const char *doc;
} ccp_config_var;

static const choice environments[] = {{"production", CCP_ENV_PRODUCTION}, {"test", CCP_ENV_TEST}, {NULL, 0}};
static const choice auth_styles[] = {
    {"auto", CCP_AUTH_AUTO}, {"x-api-key", CCP_AUTH_X_API_KEY}, {"bearer", CCP_AUTH_BEARER}, {NULL, 0}};
static const choice log_levels[] = {{"debug", CCP_LOG_DEBUG},   {"info", CCP_LOG_INFO},
                                    {"warning", CCP_LOG_WARNING}, {"error", CCP_LOG_ERROR},
                                    {"warn", CCP_LOG_WARNING},    {"critical", CCP_LOG_ERROR},
                                    {NULL, 0}};
static const choice switches[] = {{"0", 0}, {"1", 1}, {"false", 0}, {"true", 1}, {"off", 0},
                                  {"on", 1},  {"no", 0}, {"yes", 1},   {NULL, 0}};
static const choice log_formats[] = {{"json", CCP_LOG_JSON}, {"console", CCP_LOG_CONSOLE}, {NULL, 0}};

static long port_default(const ccp_config *cfg, const ccp_config_names *names)
{
    (void)cfg;
    return names->port_default;
}

/* Streams run on the event loop; threads only prepare requests, so the
 * stream ceiling is its own number. The seed's HTTP_MAX_CONNECTIONS meant
 * the same (transfers at once) and stays its default. */
static long max_streams_default(const ccp_config *cfg, const ccp_config_names *names)
{
    (void)names;
    return cfg->http_max_connections;
}

/* One event loop per CPU carries any number of streams; more loops than
 * CPUs only add switching. */
static long cpus_default(const ccp_config *cfg, const ccp_config_names *names)
{
    (void)cfg;
    (void)names;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus > 0 ? cpus : 1;
}

#define F(member) offsetof(ccp_config, member)
#define SERVICE(member) .name_off = offsetof(ccp_config_names, member)
#define INT(member, t, def, lo, hi) .kind = KIND_INT, .field = F(member), .type = t, .num_default = def, .min = lo, .max = hi
#define SECONDS(k, member, def, lo, hi) .kind = k, .field = F(member), .num_default = def, .min = lo, .max = hi

/* One row per variable, in the order they are read (a default may follow an
 * earlier row: MAX_STREAMS follows HTTP_MAX_CONNECTIONS). README.md's
 * Configuration table has one line per row (tests/unit/test_config.c checks). */
static const ccp_config_var vars[] = {
    {"ENVIRONMENT", .key = "environment", .kind = KIND_CHOICE, .field = F(environment), .choices = environments,
     .allowed = "expected production or test", .doc = "test also logs request bodies"},
    {NULL, SERVICE(base_url_var), .kind = KIND_URL, .field = F(upstream_base_url),
     .doc = "the upstream base URL; its path is kept"},
    {NULL, SERVICE(api_key_var), .kind = KIND_STRING, .field = F(server_api_key), .secret = true,
     .doc = "a server-held upstream key; requires ACCESS_KEYS"},
    {"ACCESS_KEYS", .kind = KIND_KEYS, .secret = true,
     .doc = "comma list of accepted client keys, plain or sha256:<hex>"},
    {"UPSTREAM_AUTH_STYLE", .kind = KIND_CHOICE, .field = F(upstream_auth_style), .choices = auth_styles,
     .allowed = "expected auto, x-api-key or bearer", .doc = "how the key is presented upstream"},
    {"LOG_LEVEL", .kind = KIND_CHOICE, .field = F(log_level), .choices = log_levels,
     .allowed = "expected debug, info, warning or error", .text_default = "info", .doc = "the least severe level logged"},
    {"LOG_FORMAT", .kind = KIND_CHOICE, .field = F(log_format), .choices = log_formats,
     .allowed = "expected json or console", .doc = "json lines or console text"},
    {"LOG_BODY_MAX_BYTES", INT(log_body_max_bytes, FIELD_SIZE, 4096, 0, 16L << 20),
     .doc = "body bytes logged when ENVIRONMENT=test"},
    {"HTTP_TIMEOUT", SECONDS(KIND_SECONDS_MS, http_timeout_ms, 600, 0.1, 86400),
     .doc = "seconds: the longest upstream silence"},
    {"HTTP_CONNECT_TIMEOUT", SECONDS(KIND_SECONDS_MS, http_connect_timeout_ms, 10, 0.1, 600),
     .doc = "seconds to connect to the upstream"},
    {"HTTP_MAX_KEEPALIVE", INT(http_max_keepalive, FIELD_LONG, 256, 0, 10000),
     .doc = "idle upstream connections kept per event loop"},
    {"HTTP_MAX_CONNECTIONS", INT(http_max_connections, FIELD_LONG, 8192, 1, 1000000),
     .doc = "the seed's name for the stream ceiling (MAX_STREAMS' default)"},
    {"HTTP_KEEPALIVE_EXPIRY", SECONDS(KIND_SECONDS_CEIL, http_keepalive_expiry_s, 30, 1, 86400),
     .doc = "seconds an idle upstream connection may be reused"},
    {NULL, SERVICE(host_var), .kind = KIND_STRING, .field = F(service_host), .text_default = "127.0.0.1",
     .doc = "where the web server listens for the service"},
    {NULL, SERVICE(port_var), INT(service_port, FIELD_INT, 0, 1, 65535), .dynamic_default = port_default,
     .doc = "the port the web server listens on for the service"},
    {"MAX_BODY_BYTES", INT(max_body_bytes, FIELD_SIZE, 32L << 20, 1024, 1L << 30),
     .doc = "largest request body"},
    {"MAX_HEADER_COUNT", INT(max_header_count, FIELD_SIZE, 256, 8, 100000), .doc = "most request headers"},
    {"MAX_HEADER_BYTES", INT(max_header_bytes, FIELD_SIZE, 32L << 10, 256, 16L << 20),
     .doc = "largest request header, name and value"},
    {"MAX_HEADER_TOTAL_BYTES", INT(max_header_total_bytes, FIELD_SIZE, 48L << 10, 1024, 64L << 20),
     .doc = "all request headers together, names and values"},
    {"MAX_JSON_DEPTH", INT(max_json_depth, FIELD_INT, 64, 2, 512), .doc = "deepest nesting of a request body"},
    {"MAX_STEP_OUTPUTS", INT(max_step_outputs, FIELD_SIZE, 200000, 100, 100000000),
     .doc = "JSON values the adapter's steps may make for one request"},
    {"MAX_SSE_EVENT_BYTES", INT(max_sse_event_bytes, FIELD_SIZE, 16L << 20, 4096, 1L << 30),
     .doc = "largest upstream SSE event"},
    {"MAX_AGGREGATE_BYTES", INT(max_aggregate_bytes, FIELD_SIZE, 128L << 20, 4096, 1L << 34),
     .doc = "largest forced stream folded into one JSON answer"},
    {"MAX_HOLD_BYTES", INT(max_hold_bytes, FIELD_SIZE, 8L << 20, 0, 1L << 30),
     .doc = "largest non-stream answer held until complete"},
    {"BASE_PATH", .kind = KIND_PATH, .field = F(base_path), .doc = "mount prefix stripped before routing"},
    {"CORS_ALLOW_ORIGINS", .kind = KIND_LIST, .doc = "comma list of browser origins, or *"},
    {"MAX_STREAMS", INT(max_streams, FIELD_INT, 0, 1, 1000000), .dynamic_default = max_streams_default,
     .doc = "requests answered at once per process"},
    {"WORKER_THREADS", INT(worker_threads, FIELD_INT, 0, 1, 4096), .dynamic_default = cpus_default,
     .doc = "event loops per process"},
    {"WORKER_STACK_KB", INT(worker_stack_kb, FIELD_INT, 256, 64, 65536), .doc = "stack per event-loop thread"},
    {"SHUTDOWN_GRACE", INT(shutdown_grace_s, FIELD_INT, 30, 0, 86400),
     .doc = "seconds SIGTERM waits for running streams"},
    {"ADAPTERS_FILE", .kind = KIND_STRING, .field = F(adapters_file), .doc = "the client adapter table"},
    {"UPSTREAMS_FILE", .kind = KIND_STRING, .field = F(upstreams_file),
     .doc = "the upstream pool: several upstreams per service"},
    {"UPSTREAM_MAX_ATTEMPTS", INT(upstream_max_attempts, FIELD_INT, 0, 0, 16),
     .doc = "upstreams a request tries; 0: the pool size, at most 3"},
    {"SESSION_SECRET", .kind = KIND_STRING, .field = F(session_secret), .secret = true,
     .doc = "mixed into derived session ids"},
    {"CODEX_INSTRUCTIONS_FILE", .kind = KIND_STRING, .field = F(codex_instructions_file),
     .doc = "the instructions the instructions step sets"},
    {"CODEX_TOOLS_FILE", .kind = KIND_STRING, .field = F(codex_tools_file),
     .doc = "default tools the merge_tools step puts first"},
    {"CODEX_ENV_CWD", .kind = KIND_STRING, .field = F(codex_env_cwd), .text_default = "/workspace",
     .doc = "the directory the env_context step names"},
    {"METRICS_ALLOW", .kind = KIND_NETS, .field = F(metrics_allow), .text_default = "127.0.0.0/8,::1",
     .doc = "addresses and CIDR blocks that may GET /metrics"},
    {"METRICS_FILE", .kind = KIND_STRING, .field = F(metrics_file),
     .doc = "the counters file every process of the service maps"},
    {"TRUST_REQUEST_ID", .kind = KIND_CHOICE, .field = F(trust_request_id), .choices = switches,
     .allowed = "expected 0 or 1", .doc = "1: a front's x-request-id becomes the request id"},
};

#undef F
#undef SERVICE
#undef INT
#undef SECONDS

#define VAR_COUNT (sizeof vars / sizeof vars[0])

_Static_assert(sizeof(ccp_environment) == sizeof(int) && sizeof(ccp_auth_style) == sizeof(int) &&
                   sizeof(ccp_log_level) == sizeof(int) && sizeof(ccp_log_format) == sizeof(int),
               "choice fields are stored as int");

size_t ccp_config_var_count(void)
{
    return VAR_COUNT;
}

static const char *var_name(const ccp_config_var *v, const ccp_config_names *names)
{
    return v->name ? v->name : *(const char *const *)((const char *)names + v->name_off);
}

const char *ccp_config_var_name(size_t i, const ccp_config_names *names)
{
    return i < VAR_COUNT ? var_name(&vars[i], names) : NULL;
}

const char *ccp_config_var_doc(size_t i)
{
    return i < VAR_COUNT ? vars[i].doc : NULL;
}

#define FIELD(cfg, v, type) ((type *)((char *)(cfg) + (v)->field))
#define CFIELD(cfg, v, type) ((const type *)((const char *)(cfg) + (v)->field))
#define CCFIELD_NETS(cfg, v) CFIELD(cfg, v, ccp_netlist)

static void set_int(ccp_config *cfg, const ccp_config_var *v, long n)
{
    switch (v->type) {
    case FIELD_INT: *FIELD(cfg, v, int) = (int)n; break;
    case FIELD_LONG: *FIELD(cfg, v, long) = n; break;
    case FIELD_SIZE: *FIELD(cfg, v, size_t) = (size_t)n; break;
    }
}

static long get_int(const ccp_config *cfg, const ccp_config_var *v)
{
    switch (v->type) {
    case FIELD_INT: return *CFIELD(cfg, v, int);
    case FIELD_LONG: return *CFIELD(cfg, v, long);
    case FIELD_SIZE: return (long)*CFIELD(cfg, v, size_t);
    }
    return 0;
}

static const char *choice_name(const ccp_config_var *v, int value)
{
    for (const choice *c = v->choices; c->name; c++)
        if (c->value == value) return c->name;
    return "";
}

/* ---- loading, one function per kind -------------------------------------------- */

static void load_choice(source *src, ccp_config *cfg, const ccp_config_var *v, const char *name, const char *text)
{
    int value = v->choices[0].value;
    if (v->text_default)
        for (const choice *c = v->choices; c->name; c++)
            if (strcmp(c->name, v->text_default) == 0) value = c->value;
    if (text) {
        const choice *c = v->choices;
        while (c->name && strcasecmp(text, c->name) != 0) c++;
        if (c->name) value = c->value;
        else bad(src, name, text, v->allowed);
    }
    *FIELD(cfg, v, int) = value;
}

static void load_url(source *src, ccp_config *cfg, const ccp_config_var *v, const char *name, const char *text,
                     const ccp_config_names *names)
{
    const char *def = v->text_default ? v->text_default : names->base_url_default;
    const char *base = text ? text : def;
    if (!ccp_config_base_url_ok(base)) {
        bad(src, name, base, "expected an http:// or https:// URL with a host, no query");
        base = def;
    }
    size_t blen = strlen(base);
    while (blen > 0 && base[blen - 1] == '/') blen--;
    *FIELD(cfg, v, char *) = ccp_xstrndup(base, blen);
}

static void load_int(source *src, ccp_config *cfg, const ccp_config_var *v, const char *name, const char *text,
                     const ccp_config_names *names)
{
    long def = v->dynamic_default ? v->dynamic_default(cfg, names) : (long)v->num_default;
    long min = (long)v->min, max = (long)v->max, n = def;
    if (text) {
        char *end;
        errno = 0;
        n = strtol(text, &end, 10);
        if (errno || end == text || *end || n < min || n > max) {
            char allowed[96];
            snprintf(allowed, sizeof allowed, "expected a whole number from %ld to %ld", min, max);
            bad(src, name, text, allowed);
            n = def;
        }
    }
    set_int(cfg, v, n);
}

/* Seconds, fractions allowed (the seed used floats). */
static void load_seconds(source *src, ccp_config *cfg, const ccp_config_var *v, const char *name, const char *text)
{
    long ms = (long)(v->num_default * 1000);
    if (text) {
        char *end;
        errno = 0;
        double d = strtod(text, &end);
        if (errno || end == text || *end || !isfinite(d) || d < v->min || d > v->max) {
            char allowed[96];
            snprintf(allowed, sizeof allowed, "expected seconds from %g to %g", v->min, v->max);
            bad(src, name, text, allowed);
        } else {
            ms = (long)(d * 1000 + 0.5);
        }
    }
    *FIELD(cfg, v, long) = v->kind == KIND_SECONDS_CEIL ? (ms + 999) / 1000 : ms;
}

static void load_access_keys(source *src, ccp_config *cfg, const char *v)
{
    char **items;
    size_t n;
    split_list(v, &items, &n);
    cfg->access_digests = n ? ccp_xcalloc(n, sizeof *cfg->access_digests) : NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char *d = cfg->access_digests[cfg->access_count];
        if (strncmp(items[i], "sha256:", 7) == 0) {
            const char *hex = items[i] + 7;
            bool ok = strlen(hex) == 64;
            for (int j = 0; ok && j < 32; j++) {
                int hi = hex_digit(hex[2 * j]), lo = hex_digit(hex[2 * j + 1]);
                if (hi < 0 || lo < 0) ok = false;
                else d[j] = (unsigned char)(hi << 4 | lo);
            }
            if (!ok) {
                /* Never echo a key-list entry: it may be a real key mistyped. */
                char what[64];
                snprintf(what, sizeof what, "entry %zu", i + 1);
                ccp_buf_printf(src->err, "ACCESS_KEYS %s is invalid: sha256: must be followed by 64 hex digits\n", what);
                src->errors++;
                continue;
            }
        } else {
            ccp_sha256(items[i], strlen(items[i]), d);
        }
        cfg->access_count++;
    }
    free_list(items, n);
}

static char *load_base_path(source *src, const char *name, const char *v)
{
    if (!v || strcmp(v, "/") == 0) return ccp_xstrdup("");
    size_t n = strlen(v);
    while (n > 0 && v[n - 1] == '/') n--;
    if (n == 0 && v[0] == '/') return ccp_xstrdup("");
    bool ok = v[0] == '/';
    for (size_t i = 0; ok && i < n; i++)
        if ((unsigned char)v[i] <= ' ' || v[i] == '?' || v[i] == '#' || v[i] == 0x7f) ok = false;
    if (!ok) {
        bad(src, name, v, "expected a path starting with '/' such as /claude");
        return ccp_xstrdup("");
    }
    return ccp_xstrndup(v, n);
}

/* text: the variable's value, NULL when unset. */
static void load_var(source *src, ccp_config *cfg, const ccp_config_var *v, const ccp_config_names *names,
                     const char *text)
{
    const char *name = var_name(v, names);
    switch (v->kind) {
    case KIND_CHOICE: load_choice(src, cfg, v, name, text); break;
    case KIND_URL: load_url(src, cfg, v, name, text, names); break;
    case KIND_STRING:
        text = text ? text : v->text_default;
        *FIELD(cfg, v, char *) = text ? ccp_xstrdup(text) : NULL;
        break;
    case KIND_INT: load_int(src, cfg, v, name, text, names); break;
    case KIND_SECONDS_MS:
    case KIND_SECONDS_CEIL: load_seconds(src, cfg, v, name, text); break;
    case KIND_PATH: *FIELD(cfg, v, char *) = load_base_path(src, name, text); break;
    case KIND_LIST:
        split_list(text, &cfg->cors_origins, &cfg->cors_count);
        for (size_t i = 0; i < cfg->cors_count; i++)
            if (strcmp(cfg->cors_origins[i], "*") == 0) cfg->cors_any = true;
        break;
    case KIND_KEYS: load_access_keys(src, cfg, text); break;
    case KIND_NETS: {
        ccp_buf why = {0};
        const char *t = text ? text : v->text_default;
        if (ccp_netlist_parse(FIELD(cfg, v, ccp_netlist), t, strlen(t), &why) != CCP_OK) {
            bad(src, name, t, why.data);
            ccp_netlist_parse(FIELD(cfg, v, ccp_netlist), v->text_default, strlen(v->text_default), &why);
        }
        ccp_buf_free(&why);
        break;
    }
    }
}

static void read_env_file(source *src, ccp_config *cfg)
{
    const char *explicit_path = getenv("CCPROXY_ENV_FILE");
    const char *path = explicit_path && *explicit_path ? explicit_path : ".env";
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (explicit_path && *explicit_path) {
            ccp_buf_printf(src->err, "CCPROXY_ENV_FILE=%s cannot be read: %s\n", path, strerror(errno));
            src->errors++;
        }
        return;
    }
    ccp_buf text = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) ccp_buf_append(&text, chunk, n);
    fclose(f);
    ccp_buf perr = {0};
    if (ccp_env_parse(ccp_buf_cstr(&text), text.len, pairs_add, &src->file, &perr) != CCP_OK) {
        /* Prefix each line with the file name so the user knows which file. */
        const char *line = ccp_buf_cstr(&perr);
        while (*line) {
            const char *nl = strchr(line, '\n');
            size_t len = nl ? (size_t)(nl - line) : strlen(line);
            ccp_buf_printf(src->err, "%s: %.*s\n", path, (int)len, line);
            line += len + (nl ? 1 : 0);
        }
        src->errors++;
    }
    ccp_buf_free(&perr);
    ccp_buf_free(&text);
    cfg->env_file = ccp_xstrdup(path);
}

int ccp_config_load(ccp_config *cfg, const ccp_config_names *names, ccp_buf *err)
{
    memset(cfg, 0, sizeof *cfg);
    source src = {.err = err};
    read_env_file(&src, cfg);
    cfg->given = ccp_xcalloc(VAR_COUNT, sizeof *cfg->given);
    for (size_t i = 0; i < VAR_COUNT; i++) {
        const char *text = get(&src, var_name(&vars[i], names));
        cfg->given[i] = text ? ccp_xstrdup(text) : NULL;
        load_var(&src, cfg, &vars[i], names, text);
    }
    /* The one rule across variables. */
    if (cfg->server_api_key && cfg->access_count == 0) {
        ccp_buf_printf(err,
                       "%s is set but ACCESS_KEYS is empty: a server-held key would be served to anyone; "
                       "set ACCESS_KEYS to the keys your clients present (plain or sha256:<hex>)\n",
                       names->api_key_var);
        src.errors++;
    }
    pairs_free(&src.file);
    return src.errors ? CCP_ERR : CCP_OK;
}

void ccp_config_free(ccp_config *cfg)
{
    for (size_t i = 0; i < VAR_COUNT; i++) {
        const ccp_config_var *v = &vars[i];
        if (v->kind == KIND_URL || v->kind == KIND_STRING || v->kind == KIND_PATH) free(*FIELD(cfg, v, char *));
        if (cfg->given) free(cfg->given[i]);
    }
    free(cfg->given);
    free(cfg->access_digests);
    free_list(cfg->cors_origins, cfg->cors_count);
    free(cfg->env_file);
    memset(cfg, 0, sizeof *cfg);
}

/* ---- describing and printing ------------------------------------------------------ */

static void kv_str(ccp_buf *out, bool first, const char *k, const char *v)
{
    ccp_buf_printf(out, "%s\"%s\":", first ? "" : ",", k);
    ccp_buf_append_json_string(out, v);
}

void ccp_config_describe(const ccp_config *cfg, const ccp_config_names *names, ccp_buf *out)
{
    ccp_buf url = {0};
    for (size_t i = 0; i < VAR_COUNT; i++) {
        const ccp_config_var *v = &vars[i];
        const char *key = v->key ? v->key : var_name(v, names);
        bool first = i == 0;
        switch (v->kind) {
        case KIND_CHOICE: kv_str(out, first, key, choice_name(v, *CFIELD(cfg, v, int))); break;
        case KIND_URL:
            ccp_buf_reset(&url);
            ccp_url_append_masked(&url, *CFIELD(cfg, v, char *));
            kv_str(out, first, key, ccp_buf_cstr(&url));
            break;
        case KIND_STRING:
        case KIND_PATH: {
            const char *s = *CFIELD(cfg, v, char *);
            kv_str(out, first, key, v->secret && s ? "***" : s);
            break;
        }
        case KIND_INT: ccp_buf_printf(out, "%s\"%s\":%ld", first ? "" : ",", key, get_int(cfg, v)); break;
        case KIND_SECONDS_MS:
            ccp_buf_printf(out, "%s\"%s\":%.3f", first ? "" : ",", key, *CFIELD(cfg, v, long) / 1000.0);
            break;
        case KIND_SECONDS_CEIL: ccp_buf_printf(out, "%s\"%s\":%ld", first ? "" : ",", key, *CFIELD(cfg, v, long)); break;
        case KIND_LIST: ccp_buf_printf(out, "%s\"%s\":%zu", first ? "" : ",", key, cfg->cors_count); break;
        case KIND_KEYS: ccp_buf_printf(out, "%s\"%s\":%zu", first ? "" : ",", key, cfg->access_count); break;
        case KIND_NETS:
            ccp_buf_printf(out, "%s\"%s\":%zu", first ? "" : ",", key, CCFIELD_NETS(cfg, v)->count);
            break;
        }
    }
    ccp_buf_free(&url);
    kv_str(out, false, "env_file", cfg->env_file);
}

/* name='value' with ' written as '\'' : safe for sh's eval and Python's shlex. */
static void print_assignment(ccp_buf *out, const char *name, const char *value)
{
    ccp_buf_printf(out, "%s='", name);
    for (const char *c = value ? value : ""; *c; c++) {
        if (*c == '\'') ccp_buf_append_str(out, "'\\''");
        else ccp_buf_append_char(out, *c);
    }
    ccp_buf_append_str(out, "'\n");
}

void ccp_config_print_env(const ccp_config *cfg, const ccp_config_names *names, ccp_buf *out)
{
    char num[64];
    for (size_t i = 0; i < VAR_COUNT; i++) {
        const ccp_config_var *v = &vars[i];
        const char *name = var_name(v, names);
        /* What was given, verbatim: it loaded without error, and another
         * responder reading it again gets exactly this configuration. */
        if (cfg->given && cfg->given[i]) {
            print_assignment(out, name, cfg->given[i]);
            continue;
        }
        const char *value = NULL;
        switch (v->kind) {
        case KIND_CHOICE: value = choice_name(v, *CFIELD(cfg, v, int)); break;
        case KIND_URL:
        case KIND_STRING:
        case KIND_PATH: value = *CFIELD(cfg, v, char *); break;
        case KIND_INT:
            snprintf(num, sizeof num, "%ld", get_int(cfg, v));
            value = num;
            break;
        case KIND_SECONDS_MS:
            snprintf(num, sizeof num, "%g", *CFIELD(cfg, v, long) / 1000.0);
            value = num;
            break;
        case KIND_SECONDS_CEIL:
            snprintf(num, sizeof num, "%ld", *CFIELD(cfg, v, long));
            value = num;
            break;
        case KIND_LIST:
        case KIND_KEYS: value = NULL; break; /* unset: empty */
        case KIND_NETS: value = v->text_default; break;
        }
        print_assignment(out, name, value);
    }
    print_assignment(out, "CCPROXY_ENV_FILE", cfg->env_file);
}
