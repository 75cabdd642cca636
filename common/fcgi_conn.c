#define _GNU_SOURCE
#include "fcgi_conn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define FCGI_VERSION_1 1
#define FCGI_END_REQUEST 3
#define FCGI_STDOUT 6
#define FCGI_MAX_CONTENT 65535
/* An emptied output buffer keeps at most this much capacity: an idle
 * stream should not hold the memory of its largest event. */
#define OUT_KEEP_CAP 4096

static void record_header(unsigned char h[8], int type, int id, size_t len)
{
    h[0] = FCGI_VERSION_1;
    h[1] = (unsigned char)type;
    h[2] = (unsigned char)(id >> 8);
    h[3] = (unsigned char)id;
    h[4] = (unsigned char)(len >> 8);
    h[5] = (unsigned char)len;
    h[6] = 0; /* no padding */
    h[7] = 0;
}

static void queue_record(ccp_fcgi_conn *c, int type, const char *p, size_t n)
{
    unsigned char h[8];
    record_header(h, type, c->request_id, n);
    ccp_buf_append(&c->out, h, sizeof h);
    if (n) ccp_buf_append(&c->out, p, n);
}

static size_t conn_pending(ccp_io *io)
{
    ccp_fcgi_conn *c = io->ctx;
    return c->out.len - c->out_off;
}

static int conn_flush(ccp_io *io)
{
    ccp_fcgi_conn *c = io->ctx;
    if (c->failed) return -1;
    while (c->out_off < c->out.len) {
        ssize_t w = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0) {
            c->out_off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        c->failed = true;
        return -1;
    }
    c->out_off = 0;
    c->out.len = 0;
    if (c->out.cap > OUT_KEEP_CAP) ccp_buf_free(&c->out);
    return 0;
}

/* The common case, nothing queued: header and data go out in one call
 * straight from the caller's memory, and only what the socket did not take
 * is copied. */
static int send_direct(ccp_fcgi_conn *c, const char *p, size_t n, size_t *sent)
{
    unsigned char h[8];
    record_header(h, FCGI_STDOUT, c->request_id, n);
    struct iovec iov[2] = {{h, sizeof h}, {(void *)p, n}};
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
    ssize_t w;
    do w = sendmsg(c->fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (w < 0 && errno == EINTR);
    if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        c->failed = true;
        return -1;
    }
    size_t done = w > 0 ? (size_t)w : 0;
    if (done < sizeof h) {
        ccp_buf_append(&c->out, h + done, sizeof h - done);
        ccp_buf_append(&c->out, p, n);
    } else if (done - sizeof h < n) {
        ccp_buf_append(&c->out, p + (done - sizeof h), n - (done - sizeof h));
    }
    *sent = n;
    return 0;
}

static int conn_write(ccp_io *io, const char *p, size_t n)
{
    ccp_fcgi_conn *c = io->ctx;
    if (c->failed) return -1;
    while (n > 0) {
        size_t chunk = n > FCGI_MAX_CONTENT ? FCGI_MAX_CONTENT : n;
        if (c->out_off == c->out.len) {
            size_t sent;
            if (send_direct(c, p, chunk, &sent) != 0) return -1;
        } else {
            queue_record(c, FCGI_STDOUT, p, chunk);
        }
        p += chunk;
        n -= chunk;
    }
    return conn_flush(io);
}

static void conn_end(ccp_io *io)
{
    ccp_fcgi_conn *c = io->ctx;
    if (c->ended) return;
    c->ended = true;
    /* The empty FCGI_STDOUT closes the stream; FCGI_END_REQUEST with
     * appStatus 0 and FCGI_REQUEST_COMPLETE ends the request. */
    queue_record(c, FCGI_STDOUT, NULL, 0);
    static const char end_body[8] = {0};
    queue_record(c, FCGI_END_REQUEST, end_body, sizeof end_body);
}

static int conn_read(ccp_io *io, char *buf, int n)
{
    ccp_fcgi_conn *c = io->ctx;
    if (c->input_released) return 0;
    return FCGX_GetStr(buf, n, c->req.in);
}

void ccp_fcgi_conn_input_done(ccp_fcgi_conn *c)
{
    if (c->input_released) return;
    /* Read the input to its end (the web server sends it whole, ending
     * with an empty FCGI_STDIN), so closing later never resets a
     * connection with unread bytes in it. Bounded like a body drain. */
    char chunk[4096];
    size_t total = 0;
    int n;
    while (total < (256u << 20) && (n = FCGX_GetStr(chunk, (int)sizeof chunk, c->req.in)) > 0) total += (size_t)n;
    /* Frees the streams and parameters, keeps the socket: it is ours now. */
    FCGX_Free(&c->req, 0);
    c->req.ipcFd = -1;
    c->io.envp = NULL;
    c->input_released = true;
}

static void conn_input_done(ccp_io *io)
{
    ccp_fcgi_conn_input_done(io->ctx);
}

static void conn_close(ccp_io *io)
{
    ccp_fcgi_conn *c = io->ctx;
    ccp_fcgi_conn_input_done(c);
    close(c->fd);
    ccp_buf_free(&c->out);
    free(c);
}

ccp_fcgi_conn *ccp_fcgi_conn_accept(int listen_fd, int *rc)
{
    ccp_fcgi_conn *c = ccp_xcalloc(1, sizeof *c);
    FCGX_InitRequest(&c->req, listen_fd, FCGI_FAIL_ACCEPT_ON_INTR);
    *rc = FCGX_Accept_r(&c->req);
    if (*rc < 0) {
        FCGX_Free(&c->req, 1);
        free(c);
        return NULL;
    }
    c->fd = c->req.ipcFd;
    c->request_id = c->req.requestId;
    c->io = (ccp_io){
        .envp = c->req.envp,
        .read = conn_read,
        .write = conn_write,
        .flush = conn_flush,
        .pending = conn_pending,
        .input_done = conn_input_done,
        .end = conn_end,
        .close = conn_close,
        .hangup_fd = c->fd,
        .hangup_fd_readable = true,
        .ctx = c,
    };
    return c;
}
