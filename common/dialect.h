/* dialect: everything that differs between the Anthropic Messages API and
 * the OpenAI Responses API, as one table per API. Handlers never branch on
 * the API; they call through the table. */
#ifndef CCP_DIALECT_H
#define CCP_DIALECT_H

#include <stdbool.h>
#include <json-c/json.h>
#include <stddef.h>

#include "buf.h"
#include "config.h"
#include "http.h"
#include "sse.h"
#include "usage.h"

/* Errors the proxy itself produces; each dialect names them its own way. */
typedef enum {
    CCP_E_INVALID_REQUEST, /* 400 */
    CCP_E_AUTH,            /* 401 */
    CCP_E_PERMISSION,      /* 403 */
    CCP_E_NOT_FOUND,       /* 404 */
    CCP_E_METHOD,          /* 405 */
    CCP_E_TOO_LARGE,       /* 413 */
    CCP_E_HEADERS_TOO_LARGE, /* 431: MAX_HEADER_COUNT, MAX_HEADER_BYTES, MAX_HEADER_TOTAL_BYTES */
    CCP_E_UPGRADE,         /* 426: a WebSocket handshake on an API path */
    CCP_E_INTERNAL,        /* 500 */
    CCP_E_UPSTREAM,        /* 502 */
    CCP_E_UNAVAILABLE,     /* 503 */
    CCP_E_TIMEOUT,         /* 504 */
    CCP_E_FORBIDDEN,       /* 403: the client's address may not (GET /metrics) */
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

/* What the relay remembers of a stream, so that an error event it writes
 * fits the stream it ends (the Responses API numbers its events). */
/* The largest sequence number taken from upstream (2^53 - 1). */
#define CCP_SEQ_MAX 9007199254740991LL

typedef struct ccp_stream_state {
    long long last_seq; /* -1: none seen; never above CCP_SEQ_MAX */
    char response_id[128];
    char model[128];
} ccp_stream_state;

/* A forced stream being turned into one JSON answer. */
typedef struct ccp_aggregate {
    json_object *result; /* the final object on success */
    int status;          /* the status to answer with */
    ccp_buf error_body;  /* the error JSON when the stream failed */
    bool done;
} ccp_aggregate;

typedef struct ccp_error_names {
    const char *type;
    const char *code; /* OpenAI's "code"; NULL for null */
} ccp_error_names;

typedef struct ccp_dialect {
    const char *name;
    const char *example_model; /* named in "model required" messages */
    ccp_error_names errors[CCP_E_COUNT];
    /* Headers that never come from the client key logic but are defaulted
     * when absent, e.g. anthropic-version. NULL-terminated name/value pairs. */
    const char *const *default_request_headers;
    /* Response headers passed back: exact names, then prefixes. */
    const char *const *pass_headers;
    const char *const *pass_header_prefixes;
    /* Style a key goes upstream in when it came bare or from the server. */
    ccp_auth_style native_auth_style;
    bool accepts_x_api_key;
    /* The message of the 426 a WebSocket handshake on a relay path gets
     * (ccp_request_is_websocket): this API is HTTP with SSE streams here.
     * NULL: the route table answers such a request like any other. */
    const char *websocket_refusal;
    /* The request field that holds the conversation ("messages", "input"):
     * its length is the message count the log line shows. */
    const char *conversation_field;
    /* How the answers of this API report their token usage. */
    ccp_usage_api usage_api;

    void (*error_body)(const struct ccp_dialect *d, ccp_buf *out, ccp_error_kind kind, const char *message);
    /* The SSE event that ends a stream that failed after it started. */
    void (*stream_error_event)(const struct ccp_dialect *d, ccp_buf *out, ccp_error_kind kind, const char *message,
                               const ccp_stream_state *st);
    /* Optional: looks at each upstream event of a stream (remembering what
     * stream_error_event needs) and may replace it, writing the replacement
     * into out and returning true (the Responses API's bare "error" event
     * becomes response.failed, which Codex understands). */
    bool (*inspect_event)(const struct ccp_dialect *d, ccp_stream_state *st, const ccp_sse_event *ev, ccp_buf *out);
    /* Optional: feeds one event of a forced stream into an aggregate. */
    void (*aggregate_event)(const struct ccp_dialect *d, ccp_aggregate *agg, const ccp_sse_event *ev);
    /* base + route path + query, with the dialect's joining rule. */
    void (*upstream_url)(ccp_buf *out, const char *base, const char *path, const char *query);
} ccp_dialect;

extern const ccp_dialect ccp_dialect_anthropic;
extern const ccp_dialect ccp_dialect_openai;

/* Finds the client's key per the dialect (x-api-key first, then
 * Authorization). Returns false if there is none or it is empty. */
bool ccp_dialect_client_key(const ccp_dialect *d, const ccp_headers *h, ccp_client_key *out);

/* The header line that carries key upstream: name and value into the
 * buffers. style AUTO keeps the client's style where the dialect allows it. */
void ccp_dialect_auth_header(const ccp_dialect *d, ccp_auth_style style, ccp_key_source came_as, const char *key,
                             ccp_buf *name, ccp_buf *value);

bool ccp_dialect_passes_header(const ccp_dialect *d, const char *name);

/* Messages in a request body: the conversation field's length (a string
 * counts as one), or -1 without it (or of another type). */
int ccp_dialect_message_count(const ccp_dialect *d, json_object *body);

/* Shared by the dialect tables. */
void ccp_url_join(ccp_buf *out, const char *base, const char *path, const char *query);
/* The status an upstream error code deserves when it reaches a client
 * that did not ask for a stream. */
int ccp_status_for_error_code(const char *code);

#endif
