/* upstream: one libcurl transfer at a time per worker, streamed into a sink.
 *
 * The transfer's whole life cycle lives behind this interface (start, relay
 * chunks, notice the client leaving, cancel, finish) so the execution model
 * can change without touching handlers. Each worker owns one ccp_upstream
 * (a curl multi + easy pair, reused so connections stay alive); DNS and TLS
 * sessions are shared process-wide. Timeouts: a connect timeout, and an idle
 * timeout between bytes; never a cap on a live stream's total length. */
#ifndef CCP_UPSTREAM_H
#define CCP_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "http.h"

typedef struct ccp_upstream ccp_upstream;

/* Process-wide set-up (curl_global_init, the share handle). Call before
 * threads start; returns CCP_OK or CCP_ERR with a message in err. */
int ccp_upstream_global_init(ccp_buf *err);
void ccp_upstream_global_cleanup(void);

ccp_upstream *ccp_upstream_new(const ccp_config *cfg);
void ccp_upstream_free(ccp_upstream *u);

typedef struct ccp_upstream_request {
    const char *method;
    const char *url;
    const ccp_headers *headers; /* sent as given, in order */
    const char *body;           /* NULL: no body */
    size_t body_len;
} ccp_upstream_request;

/* What the transfer reports to; all callbacks run on the calling thread. */
typedef struct ccp_upstream_sink {
    void *ctx;
    /* The final header block arrived. Return 0, or -1 to abort (client gone). */
    int (*on_headers)(void *ctx, int status, const ccp_headers *headers);
    /* A piece of the body, of arbitrary size. Return 0, or -1 to abort. */
    int (*on_data)(void *ctx, const char *p, size_t n);
    /* Polled during upstream silence; true aborts the transfer. */
    bool (*client_gone)(void *ctx);
    /* Woken on readability (EOF) to notice a hang-up at once; -1: none. */
    int client_fd;
} ccp_upstream_sink;

typedef enum {
    CCP_UP_OK,          /* complete */
    CCP_UP_UNREACHABLE, /* no response: connect, DNS, TLS, or closed before headers */
    CCP_UP_TIMEOUT,     /* silent longer than HTTP_TIMEOUT */
    CCP_UP_BROKEN,      /* failed after the response started */
    CCP_UP_CLIENT_GONE, /* the client left; the transfer was cancelled */
} ccp_upstream_result;

typedef struct ccp_upstream_stats {
    double ttfb_ms; /* < 0: nothing received */
    size_t bytes_in;
    bool headers_seen;
} ccp_upstream_stats;

/* Runs the transfer to its end. err gets a message fit for the client
 * (it names the upstream host, never a key). */
ccp_upstream_result ccp_upstream_run(ccp_upstream *u, const ccp_upstream_request *req, const ccp_upstream_sink *sink,
                                     ccp_upstream_stats *stats, ccp_buf *err);

#endif
