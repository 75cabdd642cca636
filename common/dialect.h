/* dialect: everything that differs between the Anthropic Messages API and
 * the OpenAI Responses API, as one table per API. Handlers never branch on
 * the API; they call through the table. */
#ifndef CCP_DIALECT_H
#define CCP_DIALECT_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "config.h"
#include "http.h"

/* Errors the proxy itself produces; each dialect names them its own way. */
typedef enum {
    CCP_E_INVALID_REQUEST, /* 400 */
    CCP_E_AUTH,            /* 401 */
    CCP_E_PERMISSION,      /* 403 */
    CCP_E_NOT_FOUND,       /* 404 */
    CCP_E_METHOD,          /* 405 */
    CCP_E_TOO_LARGE,       /* 413 */
    CCP_E_INTERNAL,        /* 500 */
    CCP_E_UPSTREAM,        /* 502 */
    CCP_E_UNAVAILABLE,     /* 503 */
    CCP_E_TIMEOUT,         /* 504 */
    CCP_E_COUNT
} ccp_error_kind;

int ccp_error_status(ccp_error_kind kind);

/* Where the client's key came from; decides how it is sent upstream. */
typedef enum {
    CCP_KEY_NONE,
    CCP_KEY_X_API_KEY, /* x-api-key: k */
    CCP_KEY_BEARER,    /* Authorization: Bearer k */
    CCP_KEY_BARE,      /* Authorization: k */
} ccp_key_source;

typedef struct ccp_client_key {
    const char *value; /* points into the request's headers */
    ccp_key_source source;
} ccp_client_key;

typedef struct ccp_error_names {
    const char *type;
    const char *code; /* OpenAI's "code"; NULL for null */
} ccp_error_names;

typedef struct ccp_dialect {
    const char *name;
    const char *example_model; /* named in "model required" messages */
    ccp_config_names config_names;
    ccp_error_names errors[CCP_E_COUNT];
    /* The upstream error type used in mid-stream failures. */
    ccp_error_kind stream_error_kind;
    /* Headers that never come from the client key logic but are defaulted
     * when absent, e.g. anthropic-version. NULL-terminated name/value pairs. */
    const char *const *default_request_headers;
    /* Response headers passed back: exact names, then prefixes. */
    const char *const *pass_headers;
    const char *const *pass_header_prefixes;
    /* Style a key goes upstream in when it came bare or from the server. */
    ccp_auth_style native_auth_style;
    bool accepts_x_api_key;

    void (*error_body)(const struct ccp_dialect *d, ccp_buf *out, ccp_error_kind kind, const char *message);
    /* The SSE event that ends a stream that failed after it started. */
    void (*stream_error_event)(const struct ccp_dialect *d, ccp_buf *out, ccp_error_kind kind, const char *message);
    /* base + route path + query, with the dialect's joining rule. */
    void (*upstream_url)(ccp_buf *out, const char *base, const char *path, const char *query);
} ccp_dialect;

extern const ccp_dialect ccp_dialect_anthropic;

/* Finds the client's key per the dialect (x-api-key first, then
 * Authorization). Returns false if there is none or it is empty. */
bool ccp_dialect_client_key(const ccp_dialect *d, const ccp_headers *h, ccp_client_key *out);

/* The header line that carries key upstream: name and value into the
 * buffers. style AUTO keeps the client's style where the dialect allows it. */
void ccp_dialect_auth_header(const ccp_dialect *d, ccp_auth_style style, ccp_key_source came_as, const char *key,
                             ccp_buf *name, ccp_buf *value);

bool ccp_dialect_passes_header(const ccp_dialect *d, const char *name);

#endif
