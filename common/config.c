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

static long get_long(source *src, const char *name, long def, long min, long max)
{
    const char *v = get(src, name);
    if (!v) return def;
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < min || n > max) {
        char allowed[96];
        snprintf(allowed, sizeof allowed, "expected a whole number from %ld to %ld", min, max);
        bad(src, name, v, allowed);
        return def;
    }
    return n;
}

/* Seconds, fractions allowed (the seed used floats); returned in ms. */
static long get_seconds_ms(source *src, const char *name, double def, double min, double max)
{
    const char *v = get(src, name);
    if (!v) return (long)(def * 1000);
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(d) || d < min || d > max) {
        char allowed[96];
        snprintf(allowed, sizeof allowed, "expected seconds from %g to %g", min, max);
        bad(src, name, v, allowed);
        return (long)(def * 1000);
    }
    return (long)(d * 1000 + 0.5);
}

static int get_choice(source *src, const char *name, const char *const *choices, int def, const char *allowed)
{
    const char *v = get(src, name);
    if (!v) return def;
    for (int i = 0; choices[i]; i++)
        if (strcasecmp(v, choices[i]) == 0) return i;
    bad(src, name, v, allowed);
    return def;
}

static char *dup_or_null(const char *s)
{
    return s ? ccp_xstrdup(s) : NULL;
}

static bool valid_base_url(const char *u)
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

static void load_access_keys(source *src, ccp_config *cfg)
{
    const char *v = get(src, "ACCESS_KEYS");
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
            SHA256((const unsigned char *)items[i], strlen(items[i]), d);
        }
        cfg->access_count++;
    }
    free_list(items, n);
}

static void load_base_path(source *src, ccp_config *cfg)
{
    const char *v = get(src, "BASE_PATH");
    if (!v || strcmp(v, "/") == 0) {
        cfg->base_path = ccp_xstrdup("");
        return;
    }
    size_t n = strlen(v);
    while (n > 0 && v[n - 1] == '/') n--;
    if (n == 0 && v[0] == '/') {
        cfg->base_path = ccp_xstrdup("");
        return;
    }
    bool ok = v[0] == '/';
    for (size_t i = 0; ok && i < n; i++)
        if ((unsigned char)v[i] <= ' ' || v[i] == '?' || v[i] == '#' || v[i] == 0x7f) ok = false;
    if (!ok) {
        bad(src, "BASE_PATH", v, "expected a path starting with '/' such as /claude");
        cfg->base_path = ccp_xstrdup("");
        return;
    }
    cfg->base_path = ccp_xstrndup(v, n);
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

    static const char *const envs[] = {"production", "test", NULL};
    cfg->environment = (ccp_environment)get_choice(&src, "ENVIRONMENT", envs, CCP_ENV_PRODUCTION,
                                                   "expected production or test");

    const char *base = get(&src, names->base_url_var);
    if (!base) base = names->base_url_default;
    if (!valid_base_url(base)) {
        bad(&src, names->base_url_var, base, "expected an http:// or https:// URL with a host, no query");
        base = names->base_url_default;
    }
    size_t blen = strlen(base);
    while (blen > 0 && base[blen - 1] == '/') blen--;
    cfg->upstream_base_url = ccp_xstrndup(base, blen);

    cfg->server_api_key = dup_or_null(get(&src, names->api_key_var));
    load_access_keys(&src, cfg);
    if (cfg->server_api_key && cfg->access_count == 0) {
        ccp_buf_printf(err,
                       "%s is set but ACCESS_KEYS is empty: a server-held key would be served to anyone; "
                       "set ACCESS_KEYS to the keys your clients present (plain or sha256:<hex>)\n",
                       names->api_key_var);
        src.errors++;
    }
    static const char *const styles[] = {"auto", "x-api-key", "bearer", NULL};
    cfg->upstream_auth_style = (ccp_auth_style)get_choice(&src, "UPSTREAM_AUTH_STYLE", styles, CCP_AUTH_AUTO,
                                                          "expected auto, x-api-key or bearer");

    const char *lvl = get(&src, "LOG_LEVEL");
    if (lvl && strcasecmp(lvl, "warn") == 0) lvl = "warning";
    if (lvl && strcasecmp(lvl, "critical") == 0) lvl = "error";
    static const char *const levels[] = {"debug", "info", "warning", "error", NULL};
    cfg->log_level = CCP_LOG_INFO;
    if (lvl) {
        int i;
        for (i = 0; levels[i] && strcasecmp(lvl, levels[i]); i++) {}
        if (levels[i]) cfg->log_level = (ccp_log_level)i;
        else bad(&src, "LOG_LEVEL", lvl, "expected debug, info, warning or error");
    }
    static const char *const formats[] = {"json", "console", NULL};
    cfg->log_format = (ccp_log_format)get_choice(&src, "LOG_FORMAT", formats, CCP_LOG_JSON,
                                                 "expected json or console");
    cfg->log_body_max_bytes = (size_t)get_long(&src, "LOG_BODY_MAX_BYTES", 4096, 0, 16L << 20);

    cfg->http_timeout_ms = get_seconds_ms(&src, "HTTP_TIMEOUT", 600, 0.1, 86400);
    cfg->http_connect_timeout_ms = get_seconds_ms(&src, "HTTP_CONNECT_TIMEOUT", 10, 0.1, 600);
    cfg->http_max_keepalive = get_long(&src, "HTTP_MAX_KEEPALIVE", 256, 0, 10000);
    cfg->http_max_connections = get_long(&src, "HTTP_MAX_CONNECTIONS", 8192, 1, 1000000);
    cfg->http_keepalive_expiry_s = (get_seconds_ms(&src, "HTTP_KEEPALIVE_EXPIRY", 30, 1, 86400) + 999) / 1000;

    const char *host = get(&src, names->host_var);
    cfg->service_host = ccp_xstrdup(host ? host : "127.0.0.1");
    cfg->service_port = (int)get_long(&src, names->port_var, names->port_default, 1, 65535);

    cfg->max_body_bytes = (size_t)get_long(&src, "MAX_BODY_BYTES", 32L << 20, 1024, 1L << 30);
    load_base_path(&src, cfg);

    const char *cors = get(&src, "CORS_ALLOW_ORIGINS");
    split_list(cors, &cfg->cors_origins, &cfg->cors_count);
    for (size_t i = 0; i < cfg->cors_count; i++)
        if (strcmp(cfg->cors_origins[i], "*") == 0) cfg->cors_any = true;

    /* Streams run on the event loop; threads only prepare requests, so the
     * stream ceiling is its own number. The seed's HTTP_MAX_CONNECTIONS
     * meant the same (transfers at once) and stays its default. */
    cfg->max_streams = (int)get_long(&src, "MAX_STREAMS", cfg->http_max_connections, 1, 1000000);
    /* One event loop per CPU carries any number of streams; more loops
     * than CPUs only add switching. */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->worker_threads = (int)get_long(&src, "WORKER_THREADS", cpus > 0 ? cpus : 1, 1, 4096);
    cfg->worker_stack_kb = (int)get_long(&src, "WORKER_STACK_KB", 256, 64, 65536);
    cfg->shutdown_grace_s = (int)get_long(&src, "SHUTDOWN_GRACE", 30, 0, 86400);

    cfg->adapters_file = dup_or_null(get(&src, "ADAPTERS_FILE"));
    cfg->session_secret = dup_or_null(get(&src, "SESSION_SECRET"));
    cfg->codex_instructions_file = dup_or_null(get(&src, "CODEX_INSTRUCTIONS_FILE"));
    cfg->codex_tools_file = dup_or_null(get(&src, "CODEX_TOOLS_FILE"));
    const char *cwd = get(&src, "CODEX_ENV_CWD");
    cfg->codex_env_cwd = ccp_xstrdup(cwd ? cwd : "/workspace");

    pairs_free(&src.file);
    return src.errors ? CCP_ERR : CCP_OK;
}

void ccp_config_free(ccp_config *cfg)
{
    free(cfg->upstream_base_url);
    free(cfg->server_api_key);
    free(cfg->access_digests);
    free(cfg->service_host);
    free(cfg->base_path);
    free_list(cfg->cors_origins, cfg->cors_count);
    free(cfg->adapters_file);
    free(cfg->session_secret);
    free(cfg->codex_instructions_file);
    free(cfg->codex_tools_file);
    free(cfg->codex_env_cwd);
    free(cfg->env_file);
    memset(cfg, 0, sizeof *cfg);
}

static void kv_str(ccp_buf *out, const char *k, const char *v)
{
    ccp_buf_printf(out, ",\"%s\":", k);
    ccp_buf_append_json_string(out, v);
}

void ccp_config_describe(const ccp_config *cfg, const ccp_config_names *names, ccp_buf *out)
{
    static const char *const auth_styles[] = {"auto", "x-api-key", "bearer"};
    ccp_buf_printf(out, "\"environment\":\"%s\"", cfg->environment == CCP_ENV_TEST ? "test" : "production");
    /* A base URL may carry credentials (https://user:pass@host): mask them. */
    ccp_buf url = {0};
    ccp_url_append_masked(&url, cfg->upstream_base_url);
    kv_str(out, names->base_url_var, url.data);
    ccp_buf_free(&url);
    kv_str(out, names->api_key_var, cfg->server_api_key ? "***" : NULL);
    ccp_buf_printf(out, ",\"ACCESS_KEYS\":%zu", cfg->access_count);
    kv_str(out, "UPSTREAM_AUTH_STYLE", auth_styles[cfg->upstream_auth_style]);
    ccp_buf_printf(out, ",\"HTTP_TIMEOUT\":%.3f,\"HTTP_CONNECT_TIMEOUT\":%.3f", cfg->http_timeout_ms / 1000.0,
                   cfg->http_connect_timeout_ms / 1000.0);
    ccp_buf_printf(out, ",\"HTTP_MAX_KEEPALIVE\":%ld,\"HTTP_MAX_CONNECTIONS\":%ld,\"HTTP_KEEPALIVE_EXPIRY\":%ld",
                   cfg->http_max_keepalive, cfg->http_max_connections, cfg->http_keepalive_expiry_s);
    ccp_buf_printf(out, ",\"MAX_BODY_BYTES\":%zu", cfg->max_body_bytes);
    kv_str(out, "BASE_PATH", cfg->base_path);
    ccp_buf_printf(out, ",\"CORS_ALLOW_ORIGINS\":%zu", cfg->cors_count);
    ccp_buf_printf(out, ",\"MAX_STREAMS\":%d,\"WORKER_THREADS\":%d,\"SHUTDOWN_GRACE\":%d", cfg->max_streams,
                   cfg->worker_threads, cfg->shutdown_grace_s);
    kv_str(out, "ADAPTERS_FILE", cfg->adapters_file);
    kv_str(out, "SESSION_SECRET", cfg->session_secret ? "***" : NULL);
    kv_str(out, "CODEX_INSTRUCTIONS_FILE", cfg->codex_instructions_file);
    kv_str(out, "CODEX_TOOLS_FILE", cfg->codex_tools_file);
    kv_str(out, "CODEX_ENV_CWD", cfg->codex_env_cwd);
    kv_str(out, "env_file", cfg->env_file);
}
