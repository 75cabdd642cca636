/* http: the request view and the response writer, over either a FastCGI
 * request or plain CGI stdio (ccp_io hides which).
 *
 * Request invariants: header names are lower-case with '-' separators (CGI
 * folds '-' and '_' into '_'; see ccp_http_header_name for the way back);
 * path is the routing path, with BASE_PATH removed, always starting '/';
 * query excludes the '?'. The body is read separately, with a size limit,
 * after routing, so a request that is refused early is never buffered.
 *
 * Response invariants: headers go out once; after that only body bytes.
 * Every ccp_response_write is followed by a flush: streams are never held. */
#ifndef CCP_HTTP_H
#define CCP_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

typedef struct ccp_header {
    char *name;
    char *value;
} ccp_header;

typedef struct ccp_headers {
    ccp_header *items;
    size_t count;
} ccp_headers;

void ccp_headers_add(ccp_headers *h, const char *name, const char *value);
void ccp_headers_add_n(ccp_headers *h, const char *name, size_t name_len, const char *value, size_t value_len);
/* Replaces every header of that name (case-insensitive) with one value, at
 * the first one's position and in its spelling. */
void ccp_headers_set(ccp_headers *h, const char *name, const char *value);
/* The same, with names equal up to case and '-'/'_' (CGI folds both into
 * one name), written in the spelling given. */
void ccp_headers_set_spelled(ccp_headers *h, const char *name, const char *value);
/* Adds comma-separated values to a list header, keeping what is there (from
 * every header of that name) and never duplicating a value. */
void ccp_headers_merge_list(ccp_headers *h, const char *name, const char *values);
/* True if a comma-separated list value holds token, case-insensitively;
 * an item "token/version" counts (Upgrade: websocket/13). */
bool ccp_header_list_has_token(const char *list, const char *token);
void ccp_headers_remove(ccp_headers *h, const char *name);
const char *ccp_headers_get(const ccp_headers *h, const char *name);
/* Lookup with '-' and '_' alike. */
const char *ccp_headers_get_folded(const ccp_headers *h, const char *name);
void ccp_headers_free(ccp_headers *h);

/* What a transport tells the transfer carrying its request. */
typedef enum {
    CCP_IO_GONE,     /* the client left (hang-up, abort, failed send) */
    CCP_IO_WRITABLE, /* pending output went down: more may be written */
} ccp_io_event;

/* The transport of one request. read returns bytes read, 0 at end, -1 on
 * error (the body is read before anything goes upstream). write takes the
 * bytes (sending what the socket takes now, keeping the rest pending) and
 * flush sends more of what is pending; neither blocks on a slow client.
 * Both return 0, or -1 once the client is gone. pending (NULL: always 0)
 * tells how much is still to be sent. end (optional) marks the response
 * complete, abort (optional) marks it broken (ccp_response_abort); release
 * (optional) says the exchange is done with io: the transport delivers what
 * is pending and then closes or reuses its connection; io is gone after it.
 * on_client is set by whoever carries the request upstream, and called by
 * the transport with a ccp_io_event. */
typedef struct ccp_io {
    char **envp; /* the CGI parameters */
    int (*read)(struct ccp_io *io, char *buf, int n);
    int (*write)(struct ccp_io *io, const char *p, size_t n);
    int (*flush)(struct ccp_io *io);
    size_t (*pending)(struct ccp_io *io);
    void (*end)(struct ccp_io *io);
    void (*abort)(struct ccp_io *io);
    void (*release)(struct ccp_io *io);
    void (*on_client)(void *ctx, ccp_io_event event);
    void *on_client_ctx;
    /* For a transport without its own watching (plain CGI): polled for
     * hang-up by the loop; -1 when unknown. */
    int hangup_fd;
    /* True when hangup_fd is the connection to the web server (readable at
     * EOF); false for a CGI stdout pipe, which only reports POLLERR. */
    bool hangup_fd_readable;
    /* The transport refused to keep the request's parameters (more than it
     * holds: FastCGI's params_max); envp is then empty, and the request is
     * answered 431 (MAX_HEADER_TOTAL_BYTES). params_seen counts them. */
    bool params_over;
    size_t params_seen;
    void *ctx;
} ccp_io;

/* The exchange is over: end the response and hand io back. */
void ccp_io_finish(ccp_io *io);

typedef struct ccp_request {
    ccp_io *io;
    char *method;
    char *path;
    char *query;
    ccp_headers headers;
    char *content_type; /* NULL: none given */
    long long content_length; /* -1: not given */
    ccp_buf body;
    /* Set when a header value holds CR or LF: the request is refused. */
    const char *bad_header;
    /* Set when another part that is forwarded (method, path, query, content
     * type, a header name) holds CR, LF or NUL: "the query string", ... */
    const char *bad_part;
    /* Set when the headers passed a ccp_header_limits bound: the limit's
     * configuration name, the header (the one too large, or NULL) and what
     * was counted (headers, or bytes). Headers past the bound are not kept. */
    const char *over_limit;
    char *over_header;
    size_t over_amount;
} ccp_request;

/* Bounds on the request headers (0: none). A header's size is its name and
 * value; CGI's HTTP_ prefix is not counted. */
typedef struct ccp_header_limits {
    size_t count;       /* MAX_HEADER_COUNT */
    size_t one_bytes;   /* MAX_HEADER_BYTES */
    size_t total_bytes; /* MAX_HEADER_TOTAL_BYTES */
} ccp_header_limits;

typedef enum {
    CCP_REQ_OK = 0,
    CCP_REQ_NOT_FOUND,  /* outside BASE_PATH */
    CCP_REQ_TOO_LARGE,  /* body over the limit */
    CCP_REQ_SHORT_BODY, /* fewer bytes than CONTENT_LENGTH */
    CCP_REQ_BAD,        /* unusable request line */
    CCP_REQ_HEADERS_TOO_LARGE, /* over a ccp_header_limits bound (r->over_limit) */
} ccp_request_status;

/* Builds the view from the CGI parameters, copying what it keeps: the
 * request outlives io->envp. lim (NULL: no bounds) is checked as the
 * headers are copied, one comparison each; a request over it, or one
 * whose transport dropped its parameters (io->params_over), comes back
 * CCP_REQ_HEADERS_TOO_LARGE, with method, path and query still filled in
 * where known (for the log line). */
ccp_request_status ccp_request_init(ccp_request *r, ccp_io *io, const char *base_path, const ccp_header_limits *lim);
/* Reads the body, refusing by CONTENT_LENGTH before reading when it is over
 * max; without a length, stops reading once max is passed. */
ccp_request_status ccp_request_read_body(ccp_request *r, size_t max);
/* Reads and discards what is left of the body (bounded), so the web server
 * is not cut off mid-send when we answer early. */
void ccp_request_drain(ccp_request *r);
const char *ccp_request_header(const ccp_request *r, const char *name);
/* True if the request opens a WebSocket (RFC 6455 4.1): Upgrade lists
 * websocket, or the handshake's own Sec-WebSocket-Key is there. The key
 * counts alone because Upgrade is hop-by-hop: lighttpd's mod_cgi drops it
 * (unless cgi.upgrade is on), and so does a proxy in front, while the
 * Sec-WebSocket-* headers pass everywhere. */
bool ccp_request_is_websocket(const ccp_request *r);
void ccp_request_free(ccp_request *r);

/* "HTTP_X_API_KEY" -> "x-api-key". Returns false if env is not a header. */
bool ccp_http_header_name(const char *env_name, size_t len, ccp_buf *out);
/* Finds a CGI parameter in envp ("NAME=value" strings). */
const char *ccp_http_param(char **envp, const char *name);

typedef struct ccp_response {
    ccp_io *io;
    bool headers_sent;
    bool client_gone;
    bool aborted; /* ended as broken by ccp_response_abort (client_gone too) */
    int status;
    size_t bytes_out;
    /* Added to every response (CORS); owned by the caller. */
    const ccp_headers *extra;
} ccp_response;

void ccp_response_init(ccp_response *res, ccp_io *io);
/* Writes status and headers and flushes. Returns 0, or -1 if the client is gone. */
int ccp_response_begin(ccp_response *res, int status, const ccp_headers *headers);
/* Writes body bytes and flushes. Returns 0, or -1 if the client is gone. */
int ccp_response_write(ccp_response *res, const char *p, size_t n);
/* A complete small response: status, content-type, body. */
int ccp_response_send(ccp_response *res, int status, const char *content_type, const char *body, size_t len,
                      const ccp_headers *headers);
/* Non-blocking check whether the client went away. */
bool ccp_response_client_gone(ccp_response *res);
/* Ends a response whose answer failed after its first bytes went out, so
 * that the web server sees it broken and cuts its client off (no final
 * chunk, or fewer bytes than the Content-Length), never a clean end.
 * Nothing is written after it (the response counts as gone). Needs
 * hangup_fd to be the FastCGI connection (hangup_fd_readable); over a CGI
 * pipe there is no such signal and the response simply ends. */
void ccp_response_abort(ccp_response *res);

const char *ccp_http_reason(int status);
/* True if the value can go into a header line: no CR or LF (a header
 * split). NUL cannot be tested here, since a C string ends at it; text that
 * may hold one (a JSON string) must be checked by length where it is read. */
bool ccp_http_header_value_ok(const char *v);

#endif
