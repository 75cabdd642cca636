#define _GNU_SOURCE
#include "fcgi_conn.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* The protocol's numbers (FastCGI 1.0 specification, section 8). */
#define FCGI_VERSION_1 1
#define FCGI_BEGIN_REQUEST 1
#define FCGI_ABORT_REQUEST 2
#define FCGI_END_REQUEST 3
#define FCGI_PARAMS 4
#define FCGI_STDIN 5
#define FCGI_STDOUT 6
#define FCGI_GET_VALUES 9
#define FCGI_GET_VALUES_RESULT 10
#define FCGI_UNKNOWN_TYPE 11
#define FCGI_RESPONDER 1
#define FCGI_KEEP_CONN 1
#define FCGI_REQUEST_COMPLETE 0
#define FCGI_CANT_MPX_CONN 1
#define FCGI_UNKNOWN_ROLE 3
#define FCGI_HEADER_LEN 8
#define FCGI_MAX_CONTENT 65535

/* An emptied output buffer keeps at most this much capacity: an idle
 * stream should not hold the memory of its largest event. */
#define OUT_KEEP_CAP 4096
/* WRITABLE is reported to the transfer once pending output is below this. */
#define WRITABLE_MARK (16 * 1024)

typedef enum {
    CONN_READING,    /* collecting a request's records */
    CONN_ANSWERING,  /* the request is with the relay */
    CONN_DRAINING,   /* released: sending what is pending */
} conn_state;

struct ccp_fcgi_conn {
    ccp_io io;
    ccp_fcgi_host *host;
    ccp_fcgi_conn *prev, *next;
    ccp_watch w;
    conn_state state;

    /* input */
    ccp_buf in;
    size_t in_off;
    bool begun, params_done, stdin_done, keep_conn;
    bool params_over; /* more than params_max: counted, not kept */
    int request_id;
    ccp_buf params;
    size_t params_seen;
    ccp_buf body;
    size_t body_seen; /* all of it; past body_max + 1 bytes it is not kept,
                       * and the relay's limit check sees one byte too many */
    size_t body_off;  /* read position for io.read */
    char **envp;

    /* output */
    ccp_buf out;
    size_t out_off;
    size_t stdout_at;  /* where the last record of out starts, when it is */
    bool stdout_open;  /* an unsent FCGI_STDOUT with data, that more may join */
    bool failed;  /* a send failed or the web server hung up */
    bool ended;   /* no record may follow (END_REQUEST or abort queued) */
    bool aborted; /* ended as broken: shut down, never END_REQUEST */
    bool parsing; /* inside parse_input's dispatch */
    bool told_gone; /* CCP_IO_GONE went to this request's transfer */
    bool dirty;   /* on host->dirty: output to send at the end of the round */
    ccp_fcgi_conn *dirty_next;
};

/* ---- parameters ------------------------------------------------------------ */

/* One length of a name-value pair: 1 byte below 128, else 4 (31 bits). */
static bool read_len(const unsigned char *p, size_t n, size_t *at, size_t *len)
{
    if (*at >= n) return false;
    if (!(p[*at] & 0x80)) {
        *len = p[(*at)++];
        return true;
    }
    if (n - *at < 4) return false;
    *len = ((size_t)(p[*at] & 0x7f) << 24) | ((size_t)p[*at + 1] << 16) | ((size_t)p[*at + 2] << 8) | p[*at + 3];
    *at += 4;
    return true;
}

bool ccp_fcgi_parse_params(const unsigned char *p, size_t n, char ***out)
{
    /* Two passes: count and size, then one allocation holding the pointer
     * array and the strings. */
    size_t count = 0, bytes = 0;
    for (int pass = 0; pass < 2; pass++) {
        char **vec = pass ? *out : NULL;
        char *str = pass ? (char *)(vec + count + 1) : NULL;
        size_t at = 0, i = 0;
        while (at < n) {
            size_t nl, vl;
            if (!read_len(p, n, &at, &nl) || !read_len(p, n, &at, &vl)) return false;
            if (nl > n - at || vl > n - at - nl || nl == 0) return false;
            if (memchr(p + at, '\0', nl) || memchr(p + at, '=', nl)) return false;
            if (!pass) {
                count++;
                bytes += nl + vl + 2;
            } else {
                vec[i++] = str;
                memcpy(str, p + at, nl);
                str[nl] = '=';
                memcpy(str + nl + 1, p + at + nl, vl);
                str[nl + 1 + vl] = '\0';
                /* A C string cannot carry a NUL: it becomes a line feed,
                 * which the request view refuses like any line break,
                 * instead of cutting the value short unseen. */
                for (char *z = str + nl + 1; z < str + nl + 1 + vl; z++)
                    if (!*z) *z = '\n';
                str += nl + vl + 2;
            }
            at += nl + vl;
        }
        if (!pass) *out = ccp_xmalloc((count + 1) * sizeof(char *) + bytes);
        else vec[i] = NULL;
    }
    return true;
}

/* ---- output ------------------------------------------------------------------ */

static void record_header(unsigned char h[FCGI_HEADER_LEN], int type, int id, size_t len)
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

/* What one round writes to a request's stdout joins the record still
 * waiting at the end of the queue: the web server parses, buffers and
 * forwards a record at a time (nginx makes each a buffer of its own, and
 * a chunk for the client), so an answer of 25 events costs it one record
 * instead of 25. Only a record not yet begun to be sent may grow. */
static bool join_stdout(ccp_fcgi_conn *c, int id, const void *p, size_t n)
{
    if (!c->stdout_open || c->stdout_at < c->out_off) return false;
    const unsigned char *h = (const unsigned char *)c->out.data + c->stdout_at;
    size_t have = ((size_t)h[4] << 8) | h[5];
    if (((h[2] << 8) | h[3]) != id || have + n > FCGI_MAX_CONTENT) return false;
    ccp_buf_append(&c->out, p, n);
    record_header((unsigned char *)c->out.data + c->stdout_at, FCGI_STDOUT, id, have + n);
    return true;
}

static void queue_record(ccp_fcgi_conn *c, int type, int id, const void *p, size_t n)
{
    if (type == FCGI_STDOUT && n && join_stdout(c, id, p, n)) return;
    unsigned char h[FCGI_HEADER_LEN];
    record_header(h, type, id, n);
    c->stdout_at = c->out.len;
    c->stdout_open = type == FCGI_STDOUT && n > 0;
    ccp_buf_append(&c->out, h, sizeof h);
    if (n) ccp_buf_append(&c->out, p, n);
}

static size_t pending(const ccp_fcgi_conn *c)
{
    return c->out.len - c->out_off;
}

static void set_events(ccp_fcgi_conn *c)
{
    ccp_loop_watch(c->host->loop, &c->w, EPOLLIN | EPOLLRDHUP | (pending(c) ? EPOLLOUT : 0));
}

/* Sends what the socket takes now. 0, or -1 once the client is gone. */
static int send_pending(ccp_fcgi_conn *c)
{
    if (c->failed) return -1;
    while (c->out_off < c->out.len) {
        ssize_t w = send(c->w.fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0) {
            c->out_off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        c->failed = true;
        return -1;
    }
    if (c->out_off == c->out.len) {
        c->out_off = 0;
        c->out.len = 0;
        c->stdout_open = false;
        if (c->out.cap > OUT_KEEP_CAP) ccp_buf_free(&c->out);
    }
    return 0;
}

/* ---- the io of the request being answered --------------------------------------- */

static void mark_dirty(ccp_fcgi_conn *c)
{
    if (c->dirty) return;
    c->dirty = true;
    c->dirty_next = c->host->dirty;
    c->host->dirty = c;
}

/* Writes are queued and go out when the loop's current round of events is
 * done (ccp_fcgi_host_flush), before it waits again: everything one round
 * wrote to a connection (the events of one upstream read, a stream's last
 * event and FCGI_END_REQUEST) takes one send and wakes the web server once,
 * and nothing waits longer than that round. */
static int io_write(ccp_io *io, const char *p, size_t n)
{
    ccp_fcgi_conn *c = io->ctx;
    if (c->failed || c->ended) return -1;
    while (n > 0) {
        size_t chunk = n > FCGI_MAX_CONTENT ? FCGI_MAX_CONTENT : n;
        queue_record(c, FCGI_STDOUT, c->request_id, p, chunk);
        p += chunk;
        n -= chunk;
    }
    mark_dirty(c);
    return 0;
}

static int io_flush(ccp_io *io)
{
    ccp_fcgi_conn *c = io->ctx;
    if (c->failed) return -1;
    if (pending(c)) mark_dirty(c);
    return 0;
}

static size_t io_pending(ccp_io *io)
{
    return pending(io->ctx);
}

static int io_read(ccp_io *io, char *buf, int n)
{
    ccp_fcgi_conn *c = io->ctx;
    if (n <= 0) return 0;
    size_t left = c->body.len - c->body_off;
    size_t take = left < (size_t)n ? left : (size_t)n;
    memcpy(buf, c->body.data + c->body_off, take);
    c->body_off += take;
    return (int)take;
}

static void io_end(ccp_io *io)
{
    ccp_fcgi_conn *c = io->ctx;
    if (c->ended) return;
    c->ended = true;
    /* The empty FCGI_STDOUT closes the stream; FCGI_END_REQUEST with
     * appStatus 0 and FCGI_REQUEST_COMPLETE ends the request. */
    queue_record(c, FCGI_STDOUT, c->request_id, NULL, 0);
    static const unsigned char end_body[8] = {0, 0, 0, 0, FCGI_REQUEST_COMPLETE, 0, 0, 0};
    queue_record(c, FCGI_END_REQUEST, c->request_id, end_body, sizeof end_body);
}

/* See ccp_response_abort for why: a record no request stream may carry
 * (nginx cuts its client off), then no FCGI_END_REQUEST and a shut-down
 * socket (lighttpd takes it for a dead backend). It queues behind what is
 * pending, so it starts on a record boundary. */
static void io_abort(ccp_io *io)
{
    ccp_fcgi_conn *c = io->ctx;
    if (c->ended) return;
    c->ended = c->aborted = true;
    static const unsigned char body[8] = {0};
    queue_record(c, FCGI_UNKNOWN_TYPE, c->request_id, body, sizeof body);
    io_flush(io);
}

static void conn_close(ccp_fcgi_conn *c);
static void finish_request(ccp_fcgi_conn *c);

/* After a send: a transfer paused for this client may go on. */
static void notify_writable(ccp_fcgi_conn *c)
{
    if (c->state == CONN_ANSWERING && pending(c) < WRITABLE_MARK && c->io.on_client)
        c->io.on_client(c->io.on_client_ctx, CCP_IO_WRITABLE);
}

static void io_release(ccp_io *io)
{
    ccp_fcgi_conn *c = io->ctx;
    atomic_fetch_sub(&c->host->busy, 1);
    c->state = CONN_DRAINING;
    c->io.on_client = NULL;
    /* The end goes out with the round's other writes (flush_tick), after
     * the round's log lines are written: a client that has its whole answer
     * finds its line in the log. */
    mark_dirty(c);
}

/* ---- input ---------------------------------------------------------------------- */

static void reset_request(ccp_fcgi_conn *c)
{
    free(c->envp);
    c->envp = NULL;
    ccp_buf_free(&c->params);
    ccp_buf_free(&c->body);
    c->body_seen = c->body_off = c->params_seen = 0;
    c->begun = c->params_done = c->stdin_done = c->keep_conn = c->params_over = false;
    c->ended = c->aborted = c->told_gone = false;
    c->request_id = 0;
    c->state = CONN_READING;
    c->io = (ccp_io){
        .read = io_read,
        .write = io_write,
        .flush = io_flush,
        .pending = io_pending,
        .end = io_end,
        .abort = io_abort,
        .release = io_release,
        .hangup_fd = -1,
        .ctx = c,
    };
}

/* Tells the transfer once; the relay then finishes and io.release closes. */
static void tell_gone(ccp_fcgi_conn *c)
{
    c->failed = true;
    if (c->told_gone || !c->io.on_client) return;
    c->told_gone = true;
    c->io.on_client(c->io.on_client_ctx, CCP_IO_GONE);
}

static void client_gone(ccp_fcgi_conn *c)
{
    if (c->state == CONN_ANSWERING) tell_gone(c);
    else conn_close(c);
}

static void dispatch(ccp_fcgi_conn *c)
{
    if (c->params_over) {
        c->envp = ccp_xcalloc(1, sizeof *c->envp); /* none kept: an empty list */
        c->io.params_over = true;
        c->io.params_seen = c->params_seen;
    } else if (!ccp_fcgi_parse_params((const unsigned char *)c->params.data, c->params.len, &c->envp)) {
        conn_close(c); /* a web server that sends this is not one */
        return;
    }
    ccp_buf_free(&c->params);
    c->io.envp = c->envp;
    c->state = CONN_ANSWERING;
    atomic_fetch_add(&c->host->busy, 1);
    c->host->on_request(c->host->ctx, &c->io);
}

/* Handles one complete record; false when the connection must close. */
static bool handle_record(ccp_fcgi_conn *c, int type, int id, const unsigned char *p, size_t n)
{
    if (id == 0) { /* management records */
        if (type == FCGI_GET_VALUES) {
            static const unsigned char mpxs[] = {15, 1, 'F', 'C', 'G', 'I', '_', 'M', 'P', 'X', 'S', '_',
                                                 'C', 'O', 'N', 'N', 'S', '0'};
            queue_record(c, FCGI_GET_VALUES_RESULT, 0, mpxs, sizeof mpxs);
        } else {
            unsigned char body[8] = {(unsigned char)type};
            queue_record(c, FCGI_UNKNOWN_TYPE, 0, body, sizeof body);
        }
        return send_pending(c) == 0;
    }
    if (type == FCGI_BEGIN_REQUEST) {
        if (n < 8) return false;
        if (c->begun) {
            static const unsigned char busy[8] = {0, 0, 0, 0, FCGI_CANT_MPX_CONN, 0, 0, 0};
            queue_record(c, FCGI_END_REQUEST, id, busy, sizeof busy);
            return send_pending(c) == 0;
        }
        int role = (p[0] << 8) | p[1];
        if (role != FCGI_RESPONDER) {
            static const unsigned char unknown_role[8] = {0, 0, 0, 0, FCGI_UNKNOWN_ROLE, 0, 0, 0};
            queue_record(c, FCGI_END_REQUEST, id, unknown_role, sizeof unknown_role);
            return send_pending(c) == 0;
        }
        c->begun = true;
        c->request_id = id;
        c->keep_conn = p[2] & FCGI_KEEP_CONN;
        return true;
    }
    if (!c->begun || id != c->request_id) return true; /* not ours: ignored, as the spec says */
    switch (type) {
    case FCGI_ABORT_REQUEST:
        if (c->state == CONN_ANSWERING) {
            client_gone(c);
            return true;
        }
        return false;
    case FCGI_PARAMS:
        if (c->params_done) return false;
        if (n == 0) c->params_done = true;
        /* Past params_max the parameters are counted, not kept: the request
         * is still read to its end and answered (431, in the client's
         * dialect), rather than a closed connection the web server turns
         * into its own 502. */
        c->params_seen += n;
        if (!c->params_over && c->params.len + n > c->host->params_max) {
            c->params_over = true;
            ccp_buf_free(&c->params);
        }
        if (!c->params_over) ccp_buf_append(&c->params, p, n);
        return true;
    case FCGI_STDIN:
        if (c->stdin_done) return false;
        if (n == 0) c->stdin_done = true;
        c->body_seen += n;
        if (c->body.len < c->host->body_max + 1) {
            size_t room = c->host->body_max + 1 - c->body.len;
            ccp_buf_append(&c->body, p, n < room ? n : room);
        }
        return true;
    default:
        return true;
    }
}

/* Works through the complete records read so far. */
static void parse_input(ccp_fcgi_conn *c)
{
    while (c->state == CONN_READING || c->state == CONN_ANSWERING) {
        size_t avail = c->in.len - c->in_off;
        if (avail < FCGI_HEADER_LEN) break;
        const unsigned char *h = (const unsigned char *)c->in.data + c->in_off;
        if (h[0] != FCGI_VERSION_1) {
            conn_close(c);
            return;
        }
        int type = h[1], id = (h[2] << 8) | h[3];
        size_t clen = ((size_t)h[4] << 8) | h[5], plen = h[6];
        if (avail < FCGI_HEADER_LEN + clen + plen) break;
        /* While a request is answered only its abort is looked at; the rest
         * (a kept connection's next request) waits its turn. */
        if (c->state == CONN_ANSWERING && !(type == FCGI_ABORT_REQUEST && id == c->request_id)) break;
        c->in_off += FCGI_HEADER_LEN + clen + plen;
        if (!handle_record(c, type, id, h + FCGI_HEADER_LEN, clen)) {
            conn_close(c);
            return;
        }
        if (c->state == CONN_READING && c->begun && c->params_done && c->stdin_done) {
            c->parsing = true;
            dispatch(c);
            c->parsing = false;
            if (c->w.fd < 0) return;
        }
    }
    if (c->in_off == c->in.len) {
        /* All consumed: an open stream keeps no input buffer. */
        ccp_buf_free(&c->in);
        c->in_off = 0;
    }
}

static void read_input(ccp_fcgi_conn *c, uint32_t events)
{
    /* Read into the loop thread's scratch and keep only what arrived: a
     * connection's buffer is the size of its request, not of a read. */
    static _Thread_local char scratch[65536];
    for (;;) {
        ssize_t n = recv(c->w.fd, scratch, sizeof scratch, MSG_DONTWAIT);
        if (n > 0) {
            ccp_buf_append(&c->in, scratch, (size_t)n);
            if ((size_t)n < sizeof scratch) break;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && !(events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
            break;
        /* End of input or an error: the web server hung up. What was read
         * is still worth parsing (a request and its abort, say). */
        parse_input(c);
        if (c->state != CONN_DRAINING || c->failed) client_gone(c);
        else conn_close(c);
        return;
    }
    parse_input(c);
}

/* ---- the connection --------------------------------------------------------------- */

static void finish_request(ccp_fcgi_conn *c)
{
    if (!c->keep_conn || c->failed || c->aborted || c->host->closing) {
        conn_close(c);
        return;
    }
    reset_request(c);
    set_events(c);
    /* A next request may be here already (the outer parse takes it when
     * this request was answered from inside it). */
    if (!c->parsing) parse_input(c);
}

static void on_event(ccp_watch *w, uint32_t events)
{
    ccp_fcgi_conn *c = w->ctx;
    if (c->w.fd < 0) return; /* closed earlier in this round */
    if (events & EPOLLOUT) {
        if (send_pending(c) != 0) {
            client_gone(c);
            return;
        }
        if (c->state == CONN_DRAINING && !pending(c)) {
            finish_request(c);
            if (c->w.fd < 0) return;
        } else {
            set_events(c);
            notify_writable(c);
        }
        if (c->w.fd < 0) return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) read_input(c, events);
}

static void conn_close(ccp_fcgi_conn *c)
{
    if (c->w.fd < 0) return;
    ccp_fcgi_host *host = c->host;
    if (c->state == CONN_ANSWERING) {
        /* Still with the relay: it will release io; close then. */
        tell_gone(c);
        return;
    }
    ccp_loop_unwatch(host->loop, &c->w);
    if (c->aborted) shutdown(c->w.fd, SHUT_RDWR);
    close(c->w.fd);
    c->w.fd = -1;
    if (c->prev) c->prev->next = c->next;
    else host->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    host->open--;
    free(c->envp);
    ccp_buf_free(&c->params);
    ccp_buf_free(&c->body);
    ccp_buf_free(&c->in);
    ccp_buf_free(&c->out);
    ccp_loop_defer_free(host->loop, c); /* an event of this round may name it */
    if (host->on_closed) host->on_closed(host->ctx);
}

/* The end of a round: every connection written to sends what it can. */
static long flush_tick(void *ctx)
{
    ccp_fcgi_host *host = ctx;
    while (host->dirty) {
        ccp_fcgi_conn *c = host->dirty;
        host->dirty = c->dirty_next;
        c->dirty = false;
        if (c->w.fd < 0) continue; /* closed in that round, freed after this */
        if (send_pending(c) != 0) {
            client_gone(c);
            continue;
        }
        if (c->state == CONN_DRAINING && !pending(c)) {
            finish_request(c); /* may take the next request, and mark c again */
            continue;
        }
        set_events(c);
        notify_writable(c);
    }
    return -1;
}

void ccp_fcgi_host_init(ccp_fcgi_host *host)
{
    ccp_loop_on_tick(host->loop, flush_tick, host);
}

ccp_fcgi_conn *ccp_fcgi_conn_open(ccp_fcgi_host *host, int fd)
{
    ccp_fcgi_conn *c = ccp_xcalloc(1, sizeof *c);
    c->host = host;
    c->w.fd = fd;
    c->w.fn = on_event;
    c->w.ctx = c;
    reset_request(c);
    if (ccp_loop_watch(host->loop, &c->w, EPOLLIN | EPOLLRDHUP) != 0) {
        close(fd);
        free(c);
        return NULL;
    }
    c->next = host->conns;
    if (host->conns) host->conns->prev = c;
    host->conns = c;
    host->open++;
    return c;
}

void ccp_fcgi_close_idle(ccp_fcgi_host *host)
{
    host->closing = true;
    for (ccp_fcgi_conn *c = host->conns, *next; c; c = next) {
        next = c->next;
        if (c->state == CONN_READING && c->in.len == c->in_off && !c->begun) conn_close(c);
    }
}
