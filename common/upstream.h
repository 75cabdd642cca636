/* upstream: every transfer of a process, driven by one event loop.
 *
 * The transfer's whole life cycle lives behind this interface (start, relay
 * chunks, notice the client leaving, cancel, finish) so handlers and
 * adapters do not know the execution model. As built: one thread runs an
 * epoll loop that drives every upstream transfer through curl's
 * multi_socket interface and watches every client connection for hang-up
 * and writability, so an open stream costs a few kilobytes of heap and two
 * file descriptors, not a thread. One curl multi handle means one connection
 * cache for the whole process.
 *
 * Threads: ccp_upstream_start and ccp_upstream_finish_client may be called
 * from any thread; every sink callback runs on the loop thread. Once a
 * transfer is started its sink context belongs to the loop until on_done.
 *
 * Timeouts: a connect timeout, and an idle timeout between bytes
 * (HTTP_TIMEOUT); never a cap on a live stream's total length. */
#ifndef CCP_UPSTREAM_H
#define CCP_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "http.h"

typedef struct ccp_upstream ccp_upstream;

/* Process-wide set-up (curl_global_init). Call before threads start;
 * returns CCP_OK or CCP_ERR with a message in err. */
int ccp_upstream_global_init(ccp_buf *err);
void ccp_upstream_global_cleanup(void);

/* The loop (epoll, curl multi, wake-up eventfd); no thread yet. NULL when
 * the kernel refuses an epoll or eventfd descriptor. */
ccp_upstream *ccp_upstream_new(const ccp_config *cfg);
/* Runs the loop on the calling thread until ccp_upstream_stop, or, with
 * until_idle, until nothing is left to do (plain CGI: one request). */
void ccp_upstream_loop(ccp_upstream *u, bool until_idle);
/* Thread-safe: the loop returns once its current work is cancelled. */
void ccp_upstream_stop(ccp_upstream *u);
/* Call after the loop has returned. */
void ccp_upstream_free(ccp_upstream *u);

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
    /* The client's connection: watched for hang-up, and its pending output
     * sent as the socket allows; the transfer pauses while much is pending,
     * so a client that stops reading holds up only its own stream. */
    ccp_io *client;
} ccp_upstream_sink;

/* Hands a transfer to the loop; req is copied (its body pointer is not).
 * Returns CCP_OK, or CCP_ERR when the loop is stopping (nothing started). */
int ccp_upstream_start(ccp_upstream *u, const ccp_upstream_request *req, const ccp_upstream_sink *sink);

/* The exchange on client is over: the loop sends what is still pending on
 * it, then calls client->close. Thread-safe; client belongs to the loop
 * from here on. With u NULL, client is ended, flushed and closed at once. */
void ccp_upstream_finish_client(ccp_upstream *u, ccp_io *client);

/* Transfers and connections the loop is carrying now (for the limits). */
int ccp_upstream_open_count(const ccp_upstream *u);

#endif
