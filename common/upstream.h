/* upstream: the upstream transfers of one event loop (ccp_loop).
 *
 * The transfer's whole life cycle lives behind this interface (start, relay
 * chunks, notice the client leaving, cancel, finish) so handlers and
 * adapters do not know the execution model. As built: curl's multi_socket
 * interface on the loop's epoll drives every transfer, so an open stream
 * costs a few kilobytes of heap and two file descriptors, not a thread. One
 * curl multi handle per loop is one connection cache per loop; DNS and TLS
 * sessions are shared by all loops of the process.
 *
 * Threads: everything runs on the loop's thread, except
 * ccp_upstream_cancel_all, which any thread may call. Once a transfer is
 * started its sink context belongs to it until on_done.
 *
 * Timeouts: a connect timeout, and an idle timeout between bytes
 * (HTTP_TIMEOUT); never a cap on a live stream's total length. */
#ifndef CCP_UPSTREAM_H
#define CCP_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "http.h"
#include "status.h"

#include "loop.h"

typedef struct ccp_upstream ccp_upstream;

/* Process-wide set-up (curl_global_init, the share handle). Call before
 * threads start; returns CCP_OK or CCP_ERR with a message in err. */
int ccp_upstream_global_init(ccp_buf *err);
void ccp_upstream_global_cleanup(void);

/* The transfers of loop l. NULL when curl cannot make a multi handle. */
ccp_upstream *ccp_upstream_new(const ccp_config *cfg, ccp_loop *l);
/* After the loop has stopped. */
void ccp_upstream_free(ccp_upstream *u);
/* Thread-safe: every running transfer ends as CCP_UP_CLIENT_GONE at the
 * loop's next turn (the end of a shutdown grace). */
void ccp_upstream_cancel_all(ccp_upstream *u);
/* Transfers running now. */
int ccp_upstream_running(const ccp_upstream *u);

typedef struct ccp_upstream_request {
    const char *method;
    const char *url;
    const ccp_headers *headers; /* sent as given, in order */
    const char *body;           /* NULL: no body; must live until on_done */
    size_t body_len;
} ccp_upstream_request;

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

/* What the transfer reports to; every callback runs on the loop thread. */
typedef struct ccp_upstream_sink {
    void *ctx;
    /* The final header block arrived. Return 0, or -1 to abort (client gone). */
    int (*on_headers)(void *ctx, int status, const ccp_headers *headers);
    /* A piece of the body, of arbitrary size. Return 0, or -1 to abort. */
    int (*on_data)(void *ctx, const char *p, size_t n);
    /* Called once at the end; err is a message fit for the client (it
     * names the upstream host, never a key), "" on success. The loop never
     * touches ctx afterwards. */
    void (*on_done)(void *ctx, ccp_upstream_result result, const ccp_upstream_stats *stats, const char *err);
    /* The client's transport: the transfer hears through its on_client when
     * the client leaves (it is cancelled) or drains its output; it pauses
     * while much is pending, so a client that stops reading holds up only
     * its own stream. A transport that cannot tell (plain CGI) is watched
     * through its hangup_fd. */
    ccp_io *client;
} ccp_upstream_sink;

/* Starts a transfer (on the loop's thread); req is copied (its body
 * pointer is not). on_done may run before this returns. Returns CCP_OK, or
 * CCP_ERR when the loop is stopping (nothing started, on_done not called). */
int ccp_upstream_start(ccp_upstream *u, const ccp_upstream_request *req, const ccp_upstream_sink *sink);

#endif
