/* fcgi_conn: one FastCGI connection from the web server, on an event loop.
 *
 * The responder side of the FastCGI protocol, non-blocking: records are
 * read as they arrive (BEGIN_REQUEST, PARAMS, STDIN, ABORT_REQUEST; the
 * management records GET_VALUES and unknown types are answered), and once
 * a request's parameters and body are complete it is handed to on_request
 * with conn->io as its transport. The answer is framed into FCGI_STDOUT
 * records and sent without ever blocking, at the end of each round of the
 * loop: a client that stops reading holds up only its own connection. When the web server asked to keep the
 * connection (FCGI_KEEP_CONN, nginx's fastcgi_keep_conn), the next request
 * is read on it after FCGI_END_REQUEST; otherwise it is closed. One request
 * at a time per connection (FCGI_MPXS_CONNS is 0).
 *
 * libfcgi is not used on this path: its reader and writer block, and its
 * writer takes EAGAIN for a dead stream.
 *
 * Invariants: io.envp holds the request's parameters ("NAME=value") from
 * on_request until io.release; io.read serves the body, complete and at
 * most body_max + 1 bytes (more is counted, not kept, so the relay's limit
 * check sees it); parameters beyond params_max are counted, not kept (envp
 * is then empty and io.params_over set); nothing is written before
 * on_request. */
#ifndef CCP_FCGI_CONN_H
#define CCP_FCGI_CONN_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "http.h"
#include "loop.h"

typedef struct ccp_fcgi_conn ccp_fcgi_conn;

/* What a connection needs from the server around it. */
typedef struct ccp_fcgi_host {
    ccp_loop *loop;
    size_t body_max;   /* bytes of body kept (the relay refuses above) */
    size_t params_max; /* bytes of parameters kept; above it they are
                        * counted, not kept, and the request is handed on
                        * with io.params_over (the relay answers 431) */
    /* A complete request; conn->io is its transport until io.release. */
    void (*on_request)(void *ctx, ccp_io *io);
    /* The connection is gone (closed, freed). */
    void (*on_closed)(void *ctx);
    void *ctx;
    /* Kept by this module: the open connections, and how many of them
     * have a request being answered (read by other threads). */
    ccp_fcgi_conn *conns;
    _Atomic int busy;
    int open;
    bool closing; /* ccp_fcgi_close_idle was called */
    ccp_fcgi_conn *dirty; /* written to in this round of the loop */
} ccp_fcgi_host;

/* Call once the fields above the module's are set: hooks the host into
 * its loop (output goes out at the end of each round). */
void ccp_fcgi_host_init(ccp_fcgi_host *host);

/* Takes fd (non-blocking, accepted) and starts reading requests on it.
 * Returns NULL (fd closed) when the loop cannot watch it. */
ccp_fcgi_conn *ccp_fcgi_conn_open(ccp_fcgi_host *host, int fd);

/* Closes every connection of host on which no request is being answered,
 * and from now on closes each once its request is done instead of keeping
 * it: a stopping service lets go of the web server's kept connections. */
void ccp_fcgi_close_idle(ccp_fcgi_host *host);

/* Parses FastCGI name-value pairs (the PARAMS stream) into "NAME=value"
 * strings; exposed for tests and the fuzz target. Returns false on a
 * malformed stream. *out is NULL-terminated; free it with free(). */
bool ccp_fcgi_parse_params(const unsigned char *p, size_t n, char ***out);

#endif
