/* config: the environment (and an optional .env file) read once at start-up
 * into one validated struct that is never modified afterwards, so worker
 * threads read it without locks.
 *
 * Precedence: a variable set in the process environment wins over the same
 * name in the .env file (the file is a default, not an override).
 * Every problem is reported as one line naming the variable, the value and
 * what is allowed; ccp_config_load returns CCP_ERR if there was any. */
#ifndef CCP_CONFIG_H
#define CCP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "netlist.h"
#include "status.h" /* CCP_OK, CCP_ERR: kept here for those that include only config.h */

typedef enum { CCP_ENV_PRODUCTION, CCP_ENV_TEST } ccp_environment;
typedef enum { CCP_LOG_JSON, CCP_LOG_CONSOLE } ccp_log_format;
typedef enum { CCP_LOG_DEBUG, CCP_LOG_INFO, CCP_LOG_WARNING, CCP_LOG_ERROR } ccp_log_level;

/* How the client key is presented upstream. AUTO keeps the client's style. */
typedef enum {
    CCP_AUTH_AUTO,
    CCP_AUTH_X_API_KEY,
    CCP_AUTH_BEARER,
} ccp_auth_style;

/* The variable names that differ between services (the rest are shared). */
typedef struct ccp_config_names {
    const char *base_url_var;     /* ANTHROPIC_BASE_URL */
    const char *base_url_default; /* https://api.anthropic.com */
    const char *api_key_var;      /* ANTHROPIC_API_KEY */
    const char *host_var;         /* CLAUDE_SERVICE_HOST */
    const char *port_var;         /* CLAUDE_SERVICE_PORT */
    int port_default;             /* 8001 */
} ccp_config_names;

typedef struct ccp_config {
    ccp_environment environment;
    char *upstream_base_url; /* no trailing slash; its path is kept */
    char *server_api_key;    /* NULL: the client's key passes through */
    unsigned char (*access_digests)[32]; /* SHA-256 of each ACCESS_KEYS entry */
    size_t access_count;
    ccp_auth_style upstream_auth_style;

    ccp_log_level log_level;
    ccp_log_format log_format;
    size_t log_body_max_bytes;

    long http_timeout_ms;         /* longest upstream silence */
    long http_connect_timeout_ms;
    long http_max_keepalive;      /* idle upstream connections kept per worker */
    long http_max_connections;    /* the seed's name for max_streams' default */
    long http_keepalive_expiry_s; /* an idle connection older than this is not reused */

    char *service_host;
    int service_port;

    size_t max_body_bytes;
    /* What a client (or the upstream) may make a responder hold or work
     * through; each is a comparison where the bytes arrive (README: Limits). */
    size_t max_header_count;       /* request headers */
    size_t max_header_bytes;       /* one header, name and value */
    size_t max_header_total_bytes; /* all headers, names and values */
    int max_json_depth;            /* nesting of a request body */
    size_t max_step_outputs;       /* JSON values an adapter's steps make per request */
    size_t max_sse_event_bytes;    /* one upstream SSE event */
    size_t max_aggregate_bytes;    /* a forced stream folded into one JSON body */
    size_t max_hold_bytes;         /* a non-stream answer held until complete */
    char *base_path; /* "" or "/prefix" without trailing slash */
    char **cors_origins;
    size_t cors_count;
    bool cors_any;

    int max_streams;    /* open streams per process; past it a fast 503 */
    int worker_threads; /* most threads preparing requests (started on demand) */
    int worker_stack_kb;
    int shutdown_grace_s;

    char *adapters_file;  /* NULL: the built-in table */
    char *upstreams_file; /* NULL: the base URL and server key are the pool */
    int upstream_max_attempts; /* 0: the pool size, at most 3 */
    char *codex_instructions_file; /* NULL: the built-in conf/codex_instructions.md */
    char *codex_tools_file;        /* NULL: the built-in conf/codex_tools.json */
    char *codex_env_cwd;           /* directory named in the env_context message */
    char *session_secret; /* NULL: none */
    ccp_netlist metrics_allow; /* who may GET /metrics (REMOTE_ADDR) */
    char *metrics_file;        /* NULL: derived from the listen socket (ccp_metrics_default_path) */
    int trust_request_id;      /* 1: an incoming x-request-id is the request's id */
    char *env_file;       /* the .env actually read, or NULL */
    char **given;         /* per table row: the text given (environment or .env), NULL: unset */
} ccp_config;

/* Reads the environment (and the .env file named by CCPROXY_ENV_FILE, default
 * ./.env if present), driven by the variable table in config.c. On error,
 * err holds one line per problem; cfg is filled either way and is freed
 * with ccp_config_free. */
int ccp_config_load(ccp_config *cfg, const ccp_config_names *names, ccp_buf *err);
void ccp_config_free(ccp_config *cfg);

/* Appends the effective configuration as JSON object members (no braces),
 * secrets masked, for the start-up log line and --check-config: one member
 * per variable (lists and key lists as their counts) and "env_file". */
void ccp_config_describe(const ccp_config *cfg, const ccp_config_names *names, ccp_buf *out);

/* Appends the effective configuration as NAME='value' lines (a ' inside is
 * written '\''), one per variable and CCPROXY_ENV_FILE last, for the
 * scripts (--print-config-env): the text given where one was, otherwise the
 * default ('' for none). Secrets appear as given: the output is the user's
 * own configuration, meant for the files that configure the responders. */
void ccp_config_print_env(const ccp_config *cfg, const ccp_config_names *names, ccp_buf *out);

/* The variable table (config.c), one row per variable in reading order:
 * the row count, and a row's name (the service's own name for the four
 * ccp_config_names rows) or one-line doc; NULL past the end. */
size_t ccp_config_var_count(void);
const char *ccp_config_var_name(size_t i, const ccp_config_names *names);
const char *ccp_config_var_doc(size_t i);

/* An http:// or https:// URL with a host and no query or fragment: what a
 * base URL variable, or an upstream's base_url, may be. */
bool ccp_config_base_url_ok(const char *url);

/* Parses a .env text into the given callback; exposed for tests.
 * Lines: KEY=VALUE, optional "export ", '#' comments, single or double quotes. */
typedef void (*ccp_env_pair_fn)(void *ctx, const char *key, const char *value);
int ccp_env_parse(const char *text, size_t len, ccp_env_pair_fn fn, void *ctx, ccp_buf *err);

#endif
