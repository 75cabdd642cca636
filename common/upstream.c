#define _GNU_SOURCE
#include "upstream.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>

#include "clock.h"
#include "url.h"

/* Above this much output waiting for a slow client, the transfer pauses;
 * below the low mark it resumes. A few events' worth: enough to keep a
 * reading client busy, small enough that a stuck one costs little. */
#define BACKLOG_HIGH (64 * 1024)
#define BACKLOG_LOW (16 * 1024)
/* Idle easy handles kept for reuse: allocation churn off the hot path,
 * without holding memory for a past peak. */
#define EASY_POOL_MAX 32
/* curl's receive buffer, allocated per handle (16 KiB by default): SSE
 * events are small, and at thousands of open streams it is most of their
 * memory. */
#define RECV_BUFFER 4096

/* One upstream transfer. Linked into the activity list (oldest first),
 * which makes the idle timeout O(1). */
typedef struct transfer {
    struct ccp_upstream *up;
    struct transfer *prev, *next;
    long long last_activity_ms;
    CURL *easy;
    struct curl_slist *headers_list;
    ccp_upstream_sink sink;
    ccp_upstream_request req;
    ccp_watch hangup; /* only for a transport that cannot tell (CGI) */
    char *url;
    int status;
    ccp_headers headers;
    bool headers_done;
    bool sink_aborted;
    bool paused;
    bool ended;
    long long start_ms;
    curl_off_t last_up, last_down;
    ccp_upstream_stats stats;
    char curl_err[CURL_ERROR_SIZE];
} transfer;

/* A socket curl asked us to watch. */
typedef struct curl_sock {
    ccp_watch w;
    struct ccp_upstream *up;
} curl_sock;

struct ccp_upstream {
    const ccp_config *cfg;
    ccp_loop *loop;
    CURLM *multi;
    long long curl_deadline_ms; /* when curl wants its timeout action; -1: none */
    transfer *active_head, *active_tail; /* oldest activity first */
    int running;
    atomic_bool cancel_requested;
    CURL *easy_pool[EASY_POOL_MAX];
    int easy_pool_count;
};

/* ---- process-wide ------------------------------------------------------------ */

static CURLSH *share;
static pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *ctx)
{
    (void)h, (void)access, (void)ctx;
    pthread_mutex_lock(&share_locks[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *ctx)
{
    (void)h, (void)ctx;
    pthread_mutex_unlock(&share_locks[data]);
}

int ccp_upstream_global_init(ccp_buf *err)
{
    CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (rc != CURLE_OK) {
        ccp_buf_printf(err, "libcurl initialisation failed: %s\n", curl_easy_strerror(rc));
        return CCP_ERR;
    }
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++) pthread_mutex_init(&share_locks[i], NULL);
    share = curl_share_init();
    if (!share) {
        ccp_buf_append_str(err, "libcurl share handle could not be created\n");
        return CCP_ERR;
    }
    curl_share_setopt(share, CURLSHOPT_LOCKFUNC, share_lock);
    curl_share_setopt(share, CURLSHOPT_UNLOCKFUNC, share_unlock);
    curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    return CCP_OK;
}

void ccp_upstream_global_cleanup(void)
{
    if (share) curl_share_cleanup(share);
    share = NULL;
    curl_global_cleanup();
}

/* ---- the activity list -------------------------------------------------------- */

static void list_unlink(ccp_upstream *u, transfer *t)
{
    if (t->prev) t->prev->next = t->next;
    else if (u->active_head == t) u->active_head = t->next;
    if (t->next) t->next->prev = t->prev;
    else if (u->active_tail == t) u->active_tail = t->prev;
    t->prev = t->next = NULL;
}

/* Moves t to the young end: the head is always the longest silent. */
static void touch(transfer *t)
{
    ccp_upstream *u = t->up;
    t->last_activity_ms = ccp_now_ms();
    if (u->active_tail == t) return;
    list_unlink(u, t);
    t->prev = u->active_tail;
    if (u->active_tail) u->active_tail->next = t;
    else u->active_head = t;
    u->active_tail = t;
}

static size_t client_pending(const transfer *t)
{
    return t->sink.client->pending ? t->sink.client->pending(t->sink.client) : 0;
}

/* ---- ending ----------------------------------------------------------------------- */

static void recycle_easy(ccp_upstream *u, CURL *easy)
{
    if (!easy) return;
    if (u->easy_pool_count < EASY_POOL_MAX) {
        curl_easy_reset(easy);
        u->easy_pool[u->easy_pool_count++] = easy;
    } else {
        curl_easy_cleanup(easy);
    }
}

/* Never echoes the credentials of a URL. */
static void describe_host(ccp_buf *out, const char *url)
{
    size_t n;
    const char *h = ccp_url_host(url, &n, NULL);
    ccp_buf_append(out, h, n);
}

static bool is_unreachable(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_OPERATION_TIMEDOUT: /* only the connect timeout is set */
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_FAILED_INIT: /* ours: no handle for the transfer */
        return true;
    default:
        return false;
    }
}

/* Maps how curl ended (rc) or how we ended it (result already set) to the
 * result and message the sink gets. */
static ccp_upstream_result classify(transfer *t, ccp_upstream_result result, CURLcode rc, ccp_buf *err)
{
    if (result == CCP_UP_TIMEOUT) {
        ccp_buf_append_str(err, "upstream ");
        describe_host(err, t->url);
        ccp_buf_printf(err, " sent nothing for %.1f s (HTTP_TIMEOUT); raise HTTP_TIMEOUT if the model needs longer",
                       t->up->cfg->http_timeout_ms / 1000.0);
        return result;
    }
    if (result != CCP_UP_OK || rc == CURLE_OK) return result;
    if (t->sink_aborted || rc == CURLE_WRITE_ERROR) return CCP_UP_CLIENT_GONE;
    const char *why = t->curl_err[0] ? t->curl_err : curl_easy_strerror(rc);
    ccp_buf_append_str(err, "upstream ");
    describe_host(err, t->url);
    if (!t->headers_done) {
        ccp_buf_append_str(err, is_unreachable(rc) ? " is unreachable: " : " closed the connection without a response: ");
        ccp_buf_append_str(err, why);
        return CCP_UP_UNREACHABLE;
    }
    ccp_buf_append_str(err, " failed mid-response: ");
    ccp_buf_append_str(err, why);
    return CCP_UP_BROKEN;
}

/* Ends the transfer (curl finished it, or we cancel it): it leaves the
 * loop, then the sink hears the outcome. Freed after the current round. */
static void end_transfer(transfer *t, ccp_upstream_result result, CURLcode rc)
{
    if (t->ended) return;
    t->ended = true;
    ccp_upstream *u = t->up;
    /* Removing an unfinished transfer closes its connection: that is the
     * cancellation the upstream sees. */
    if (t->easy) curl_multi_remove_handle(u->multi, t->easy);
    ccp_buf err = {0};
    result = classify(t, result, rc, &err);
    curl_slist_free_all(t->headers_list);
    recycle_easy(u, t->easy);
    t->easy = NULL;
    ccp_headers_free(&t->headers);
    free(t->url);
    t->url = NULL;
    ccp_loop_unwatch(u->loop, &t->hangup);
    list_unlink(u, t);
    u->running--;
    ccp_io *client = t->sink.client;
    client->on_client = NULL;
    client->on_client_ctx = NULL;
    ccp_loop_defer_free(u->loop, t);
    t->sink.on_done(t->sink.ctx, result, &t->stats, ccp_buf_cstr(&err));
    ccp_buf_free(&err);
}

/* What the client's transport tells us. */
static void on_client(void *ctx, ccp_io_event event)
{
    transfer *t = ctx;
    if (t->ended) return;
    if (event == CCP_IO_GONE) {
        end_transfer(t, CCP_UP_CLIENT_GONE, CURLE_OK);
        return;
    }
    touch(t);
    if (t->paused && client_pending(t) < BACKLOG_LOW) {
        t->paused = false;
        /* May deliver the held data at once, through on_body. */
        curl_easy_pause(t->easy, CURLPAUSE_CONT);
    }
}

static void on_hangup(ccp_watch *w, uint32_t events)
{
    if (events & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)) on_client(w->ctx, CCP_IO_GONE);
}

/* ---- curl callbacks ---------------------------------------------------------- */

static void mark_first_byte(transfer *t)
{
    touch(t);
    if (t->stats.ttfb_ms < 0) t->stats.ttfb_ms = (double)(t->last_activity_ms - t->start_ms);
}

static size_t on_header(char *p, size_t size, size_t n, void *ctx)
{
    transfer *t = ctx;
    size_t len = size * n;
    mark_first_byte(t);
    if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) {
        /* A new block (after a 1xx, or the first): start over. */
        ccp_headers_free(&t->headers);
        const char *sp = memchr(p, ' ', len);
        t->status = sp ? atoi(sp + 1) : 0;
        return len;
    }
    size_t end = len;
    while (end > 0 && (p[end - 1] == '\r' || p[end - 1] == '\n')) end--;
    if (end == 0) {
        if (t->status >= 100 && t->status < 200) return len;
        t->headers_done = true;
        t->stats.headers_seen = true;
        if (t->sink.on_headers(t->sink.ctx, t->status, &t->headers) != 0) {
            t->sink_aborted = true;
            return 0;
        }
        return len;
    }
    const char *colon = memchr(p, ':', end);
    if (!colon) return len;
    const char *v = colon + 1;
    while (v < p + end && (*v == ' ' || *v == '\t')) v++;
    ccp_headers_add_n(&t->headers, p, (size_t)(colon - p), v, (size_t)(p + end - v));
    for (char *c = t->headers.items[t->headers.count - 1].name; *c; c++)
        if (*c >= 'A' && *c <= 'Z') *c = (char)(*c - 'A' + 'a');
    return len;
}

static size_t on_body(char *p, size_t size, size_t n, void *ctx)
{
    transfer *t = ctx;
    size_t len = size * n;
    /* Refused data is delivered again after the resume: nothing is lost. */
    if (client_pending(t) >= BACKLOG_HIGH) {
        t->paused = true;
        return CURL_WRITEFUNC_PAUSE;
    }
    mark_first_byte(t);
    t->stats.bytes_in += len;
    if (t->sink.on_data(t->sink.ctx, p, len) != 0) {
        t->sink_aborted = true;
        return 0;
    }
    return len;
}

static int on_progress(void *ctx, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    (void)dltotal, (void)ultotal;
    transfer *t = ctx;
    /* Upload progress counts as activity: a large body takes time to send. */
    if (ulnow != t->last_up || dlnow != t->last_down) {
        t->last_up = ulnow;
        t->last_down = dlnow;
        touch(t);
    }
    return 0;
}

static void read_done(ccp_upstream *u)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(u->multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        transfer *t = NULL;
        CURLcode rc = m->data.result;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&t);
        if (t) end_transfer(t, CCP_UP_OK, rc);
    }
}

static void on_curl_socket(ccp_watch *w, uint32_t events)
{
    curl_sock *cs = w->ctx;
    ccp_upstream *u = cs->up;
    int mask = (events & EPOLLIN ? CURL_CSELECT_IN : 0) | (events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
               (events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
    int running;
    curl_multi_socket_action(u->multi, w->fd, mask, &running);
    read_done(u);
}

static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)easy;
    ccp_upstream *u = userp;
    curl_sock *cs = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (cs) {
            ccp_loop_unwatch(u->loop, &cs->w);
            curl_multi_assign(u->multi, s, NULL);
            ccp_loop_defer_free(u->loop, cs); /* an event of this round may name it */
        }
        return 0;
    }
    if (!cs) {
        cs = ccp_xcalloc(1, sizeof *cs);
        cs->up = u;
        cs->w.fd = s;
        cs->w.fn = on_curl_socket;
        cs->w.ctx = cs;
        curl_multi_assign(u->multi, s, cs);
    }
    ccp_loop_watch(u->loop, &cs->w, (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0));
    return 0;
}

static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    ccp_upstream *u = userp;
    u->curl_deadline_ms = timeout_ms < 0 ? -1 : ccp_now_ms() + timeout_ms;
    return 0;
}

/* Ends every transfer silent for HTTP_TIMEOUT; the list is oldest first,
 * so only its head needs looking at. Returns ms until the next deadline. */
static long expire_idle(ccp_upstream *u)
{
    long long now = ccp_now_ms();
    while (u->active_head) {
        transfer *t = u->active_head;
        long long idle = now - t->last_activity_ms;
        if (idle < u->cfg->http_timeout_ms) return (long)(u->cfg->http_timeout_ms - idle);
        /* A paused transfer waits for its client, not for the upstream:
         * a client that reads nothing for that long has gone. */
        end_transfer(t, t->paused ? CCP_UP_CLIENT_GONE : CCP_UP_TIMEOUT, CURLE_OK);
    }
    return -1;
}

/* The loop's timer: curl's timeout action, the idle limit, cancellation. */
static long tick(void *ctx)
{
    ccp_upstream *u = ctx;
    if (atomic_load(&u->cancel_requested)) {
        atomic_store(&u->cancel_requested, false);
        while (u->active_head) end_transfer(u->active_head, CCP_UP_CLIENT_GONE, CURLE_OK);
    }
    if (u->curl_deadline_ms >= 0 && ccp_now_ms() >= u->curl_deadline_ms) {
        u->curl_deadline_ms = -1;
        int running;
        curl_multi_socket_action(u->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        read_done(u);
    }
    long wait = expire_idle(u);
    if (u->curl_deadline_ms >= 0) {
        long long left = u->curl_deadline_ms - ccp_now_ms();
        if (left < 0) left = 0;
        if (wait < 0 || left < wait) wait = (long)left;
    }
    return wait;
}

/* ---- the upstream of a loop ------------------------------------------------------- */

ccp_upstream *ccp_upstream_new(const ccp_config *cfg, ccp_loop *l)
{
    ccp_upstream *u = ccp_xcalloc(1, sizeof *u);
    u->cfg = cfg;
    u->loop = l;
    u->curl_deadline_ms = -1;
    u->multi = curl_multi_init();
    if (!u->multi) {
        free(u);
        return NULL;
    }
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETDATA, u);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERDATA, u);
    curl_multi_setopt(u->multi, CURLMOPT_MAXCONNECTS, cfg->http_max_keepalive > 0 ? cfg->http_max_keepalive : 1L);
    ccp_loop_on_tick(l, tick, u);
    return u;
}

void ccp_upstream_free(ccp_upstream *u)
{
    if (!u) return;
    while (u->active_head) end_transfer(u->active_head, CCP_UP_CLIENT_GONE, CURLE_OK);
    for (int i = 0; i < u->easy_pool_count; i++) curl_easy_cleanup(u->easy_pool[i]);
    curl_multi_cleanup(u->multi);
    free(u);
}

void ccp_upstream_cancel_all(ccp_upstream *u)
{
    atomic_store(&u->cancel_requested, true);
    ccp_loop_stop(u->loop); /* wakes it */
}

int ccp_upstream_running(const ccp_upstream *u)
{
    return u->running;
}

static void setup_easy(transfer *t)
{
    CURL *h = t->easy;
    const ccp_config *cfg = t->up->cfg;
    const ccp_upstream_request *req = &t->req;
    curl_easy_setopt(h, CURLOPT_PRIVATE, (char *)t);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_SHARE, share);
    curl_easy_setopt(h, CURLOPT_BUFFERSIZE, (long)RECV_BUFFER);
    curl_easy_setopt(h, CURLOPT_URL, req->url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, cfg->http_connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_MAXAGE_CONN, cfg->http_keepalive_expiry_s);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, t->curl_err);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, t);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, t->headers_list);
    if (strcmp(req->method, "GET") == 0) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(req->method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else {
        if (strcmp(req->method, "POST") != 0) curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body ? req->body : "");
    }
}

int ccp_upstream_start(ccp_upstream *u, const ccp_upstream_request *req, const ccp_upstream_sink *sink)
{
    if (ccp_loop_stopping(u->loop)) return CCP_ERR;
    transfer *t = ccp_xcalloc(1, sizeof *t);
    t->up = u;
    t->sink = *sink;
    t->req = *req;
    t->url = ccp_xstrdup(req->url);
    t->req.url = t->url;
    t->req.headers = NULL;
    t->stats.ttfb_ms = -1;
    t->last_up = t->last_down = -1;
    t->hangup.fd = -1;
    ccp_buf line = {0};
    for (size_t i = 0; req->headers && i < req->headers->count; i++) {
        ccp_buf_reset(&line);
        ccp_buf_printf(&line, "%s: %s", req->headers->items[i].name, req->headers->items[i].value);
        t->headers_list = curl_slist_append(t->headers_list, line.data);
    }
    ccp_buf_free(&line);
    /* No "Expect: 100-continue" round trip on large bodies, and no
     * compression: bytes and events pass through exactly as sent. */
    t->headers_list = curl_slist_append(t->headers_list, "Expect:");
    if (!req->headers || !ccp_headers_get(req->headers, "accept-encoding"))
        t->headers_list = curl_slist_append(t->headers_list, "Accept-Encoding: identity");

    t->start_ms = ccp_now_ms();
    touch(t);
    u->running++;
    ccp_io *client = sink->client;
    client->on_client = on_client;
    client->on_client_ctx = t;
    if (client->hangup_fd >= 0) {
        /* A transport that cannot tell us itself: watch its fd (a regular
         * file as CGI stdout cannot be watched, and cannot hang up). */
        t->hangup.fd = client->hangup_fd;
        t->hangup.fn = on_hangup;
        t->hangup.ctx = t;
        ccp_loop_watch(u->loop, &t->hangup, client->hangup_fd_readable ? EPOLLRDHUP : 0);
    }
    t->easy = u->easy_pool_count ? u->easy_pool[--u->easy_pool_count] : curl_easy_init();
    if (t->easy) {
        setup_easy(t);
        if (curl_multi_add_handle(u->multi, t->easy) == CURLM_OK) return CCP_OK;
        recycle_easy(u, t->easy);
        t->easy = NULL;
    }
    snprintf(t->curl_err, sizeof t->curl_err, "%s", "the transfer could not be started (out of memory)");
    end_transfer(t, CCP_UP_OK, CURLE_FAILED_INIT);
    return CCP_OK;
}
