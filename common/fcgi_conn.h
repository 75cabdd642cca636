/* fcgi_conn: one FastCGI request connection as a ccp_io.
 *
 * libfcgi accepts the connection and reads the parameters and the body
 * (blocking, on a preparing thread); the answer is framed into FCGI_STDOUT
 * records here and sent without ever blocking, so one event loop can carry
 * thousands of connections and a client that stops reading holds up only
 * its own. libfcgi's writer is never used: it blocks, and it marks a
 * stream dead on EAGAIN.
 *
 * Life cycle: ccp_fcgi_conn_accept, then the relay reads and answers
 * through conn->io; io.end queues the empty FCGI_STDOUT and FCGI_END_REQUEST
 * records; io.close closes the socket and frees the connection. Input
 * (params, body, libfcgi's buffers) is released by ccp_fcgi_conn_input_done,
 * after which io.envp and io.read are gone. */
#ifndef CCP_FCGI_CONN_H
#define CCP_FCGI_CONN_H

#include <fcgiapp.h>

#include "buf.h"
#include "http.h"

typedef struct ccp_fcgi_conn {
    ccp_io io;
    FCGX_Request req;
    int fd;
    int request_id;
    ccp_buf out;    /* framed records not yet sent */
    size_t out_off; /* sent bytes at the front of out */
    bool failed;    /* a send failed: the client is gone */
    bool ended;
    bool input_released;
} ccp_fcgi_conn;

/* Accepts the next request on listen_fd (blocking). Returns NULL with
 * *rc set to libfcgi's negative code when accept fails. */
ccp_fcgi_conn *ccp_fcgi_conn_accept(int listen_fd, int *rc);

/* Reads what is left of the request's input and frees libfcgi's state for
 * it; the connection stays open for the answer. Idempotent. */
void ccp_fcgi_conn_input_done(ccp_fcgi_conn *c);

#endif
