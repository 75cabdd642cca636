#define _GNU_SOURCE
#include "upstream.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"

/* Above this much output waiting for a slow client, the transfer pauses;
 * below the low mark it resumes. A few events' worth: enough to keep a
 * reading client busy, small enough that a stuck one costs little. */
#define BACKLOG_HIGH (64 * 1024)
#define BACKLOG_LOW (16 * 1024)
/* Idle easy handles kept for reuse: allocation churn off the hot path,
 * without holding memory for a past peak. */
#define EASY_POOL_MAX 32

/* epoll data tags. Client entries carry a pointer (user-space pointers
 * never set the top bits on the platforms we build for); curl sockets and
 * the wake-up descriptor carry their fd under a tag. */
#define TAG_MASK (3ULL << 62)
#define TAG_CURL (1ULL << 62)
#define TAG_WAKE (2ULL << 62)

typedef enum { ENTRY_TRANSFER, ENTRY_DRAIN } entry_kind;

/* One client connection the loop looks after: during its transfer, and
 * after it while pending output drains. Linked into the activity list
 * (oldest first), which is what makes the idle timeout O(1). */
typedef struct entry {
    entry_kind kind;
    struct ccp_upstream *loop;
    struct entry *prev, *next; /* activity list */
    struct entry *job_next;    /* start queue, dead list */
    long long last_activity_ms;
    ccp_io *client;
    uint32_t watched; /* epoll events registered for the client fd; 0: none */
    bool in_epoll;
    bool dead;

    /* ENTRY_TRANSFER */
    CURL *easy;
    struct curl_slist *headers_list;
    ccp_upstream_sink sink;
    ccp_upstream_request req;
    char *url;
    int status;
    ccp_headers headers;
    bool headers_done;
    bool sink_aborted;
    bool paused;
    long long start_ms;
    curl_off_t last_up, last_down;
    ccp_upstream_stats stats;
    char curl_err[CURL_ERROR_SIZE];
} entry;

struct ccp_upstream {
    const ccp_config *cfg;
    int epfd;
    int wakefd;
    CURLM *multi;
    long long curl_deadline_ms; /* when curl wants its timeout action; -1: none */
    pthread_t loop_thread;
    bool loop_running;
    atomic_bool stopping;
    atomic_int open; /* entries started and not yet closed */

    pthread_mutex_t jobs_lock;
    entry *jobs_head, **jobs_tail;

    entry *active_head, *active_tail; /* oldest activity first */
    entry *dead;                      /* freed after each dispatch round */
    CURL *easy_pool[EASY_POOL_MAX];
    int easy_pool_count;
};

/* ---- process-wide --------------------------------------------------------- */

int ccp_upstream_global_init(ccp_buf *err)
{
    CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (rc != CURLE_OK) {
        ccp_buf_printf(err, "libcurl initialisation failed: %s\n", curl_easy_strerror(rc));
        return CCP_ERR;
    }
    return CCP_OK;
}

void ccp_upstream_global_cleanup(void)
{
    curl_global_cleanup();
}

/* ---- the activity list ------------------------------------------------------ */

static void list_unlink(ccp_upstream *u, entry *e)
{
    if (e->prev) e->prev->next = e->next;
    else if (u->active_head == e) u->active_head = e->next;
    if (e->next) e->next->prev = e->prev;
    else if (u->active_tail == e) u->active_tail = e->prev;
    e->prev = e->next = NULL;
}

static void list_append(ccp_upstream *u, entry *e)
{
    e->prev = u->active_tail;
    e->next = NULL;
    if (u->active_tail) u->active_tail->next = e;
    else u->active_head = e;
    u->active_tail = e;
}

/* Moves e to the young end: the head is always the longest silent. */
static void touch(ccp_upstream *u, entry *e)
{
    e->last_activity_ms = ccp_now_ms();
    if (u->active_tail != e) {
        list_unlink(u, e);
        list_append(u, e);
    }
}

/* ---- client watching --------------------------------------------------------- */

static size_t client_pending(const entry *e)
{
    return e->client->pending ? e->client->pending(e->client) : 0;
}

/* Registers what the client fd should wake us for: hang-up always (a
 * readable fd is left alone: only EOF or an error means the client left),
 * writability while output is pending. */
static void watch_client(ccp_upstream *u, entry *e)
{
    int fd = e->client->hangup_fd;
    if (fd < 0 || e->dead) return;
    uint32_t want = (e->client->hangup_fd_readable ? EPOLLRDHUP : 0) | (client_pending(e) ? EPOLLOUT : 0);
    if (e->in_epoll && want == e->watched) return;
    struct epoll_event ev = {.events = want, .data.ptr = e};
    if (!e->in_epoll) {
        /* A regular file as CGI stdout cannot be watched: then no hang-up
         * is noticed, which is all a file could tell anyway. */
        if (epoll_ctl(u->epfd, EPOLL_CTL_ADD, fd, &ev) == 0) e->in_epoll = true;
    } else {
        epoll_ctl(u->epfd, EPOLL_CTL_MOD, fd, &ev);
    }
    e->watched = want;
}

static void unwatch_client(ccp_upstream *u, entry *e)
{
    if (e->in_epoll) epoll_ctl(u->epfd, EPOLL_CTL_DEL, e->client->hangup_fd, NULL);
    e->in_epoll = false;
}

/* ---- ending entries ------------------------------------------------------------ */

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

/* Takes e out of the loop (freed after the current dispatch round); the
 * client connection is left as it is. */
static void retire_entry(ccp_upstream *u, entry *e)
{
    unwatch_client(u, e);
    list_unlink(u, e);
    e->dead = true;
    e->job_next = u->dead;
    u->dead = e;
    atomic_fetch_sub(&u->open, 1);
}

/* The end of a drain: the client connection is closed (delivered, gone,
 * or given up by a stopping loop). */
static void close_entry(ccp_upstream *u, entry *e)
{
    if (e->dead) return;
    ccp_io *client = e->client;
    retire_entry(u, e);
    if (client->close) client->close(client);
}

/* After the exchange: drained already, or wait for the socket. */
static void begin_drain(ccp_upstream *u, entry *e, bool ended)
{
    e->kind = ENTRY_DRAIN;
    if (!ended && e->client->end) e->client->end(e->client);
    if (e->client->flush && e->client->flush(e->client) != 0) {
        close_entry(u, e);
        return;
    }
    if (!client_pending(e) || e->client->hangup_fd < 0) {
        close_entry(u, e);
        return;
    }
    touch(u, e);
    watch_client(u, e);
    if (!e->in_epoll) close_entry(u, e);
}

static void describe_host(ccp_buf *out, const char *url)
{
    const char *h = strstr(url, "://");
    h = h ? h + 3 : url;
    size_t n = strcspn(h, "/?#");
    const char *at = memchr(h, '@', n); /* never echo credentials in a URL */
    if (at) {
        n -= (size_t)(at + 1 - h);
        h = at + 1;
    }
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
        return true;
    default:
        return false;
    }
}

/* Maps how curl ended (finished, with rc) or how we ended it (result
 * already set) to the result and message the sink gets. */
static ccp_upstream_result classify(ccp_upstream *u, entry *e, ccp_upstream_result result, CURLcode rc, ccp_buf *err)
{
    if (result == CCP_UP_TIMEOUT) {
        ccp_buf_append_str(err, "upstream ");
        describe_host(err, e->url);
        ccp_buf_printf(err, " sent nothing for %.1f s (HTTP_TIMEOUT); raise HTTP_TIMEOUT if the model needs longer",
                       u->cfg->http_timeout_ms / 1000.0);
        return result;
    }
    if (result != CCP_UP_OK || rc == CURLE_OK) return result;
    if (e->sink_aborted || rc == CURLE_WRITE_ERROR) return CCP_UP_CLIENT_GONE;
    const char *why = e->curl_err[0] ? e->curl_err : curl_easy_strerror(rc);
    ccp_buf_append_str(err, "upstream ");
    describe_host(err, e->url);
    if (!e->headers_done) {
        ccp_buf_append_str(err, is_unreachable(rc) ? " is unreachable: " : " closed the connection without a response: ");
        ccp_buf_append_str(err, why);
        return CCP_UP_UNREACHABLE;
    }
    ccp_buf_append_str(err, " failed mid-response: ");
    ccp_buf_append_str(err, why);
    return CCP_UP_BROKEN;
}

/* Ends the transfer (curl finished it, or we cancel it). The entry leaves
 * the loop first: the sink's on_done finishes the exchange and hands the
 * client connection back through ccp_upstream_finish_client. */
static void end_transfer(ccp_upstream *u, entry *e, ccp_upstream_result result, CURLcode rc)
{
    if (e->dead || e->kind != ENTRY_TRANSFER) return;
    /* Removing an unfinished transfer closes its connection: that is the
     * cancellation the upstream sees. */
    curl_multi_remove_handle(u->multi, e->easy);
    ccp_buf err = {0};
    result = classify(u, e, result, rc, &err);
    curl_slist_free_all(e->headers_list);
    e->headers_list = NULL;
    recycle_easy(u, e->easy);
    e->easy = NULL;
    ccp_headers_free(&e->headers);
    free(e->url);
    e->url = NULL;
    retire_entry(u, e);
    e->sink.on_done(e->sink.ctx, result, &e->stats, ccp_buf_cstr(&err));
    ccp_buf_free(&err);
}

/* ---- curl callbacks ----------------------------------------------------------- */

static void mark_first_byte(ccp_upstream *u, entry *e)
{
    touch(u, e);
    if (e->stats.ttfb_ms < 0) e->stats.ttfb_ms = (double)(e->last_activity_ms - e->start_ms);
}

static size_t on_header(char *p, size_t size, size_t n, void *ctx)
{
    entry *e = ctx;
    size_t len = size * n;
    mark_first_byte(e->loop, e);
    if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) {
        /* A new block (after a 1xx, or the first): start over. */
        ccp_headers_free(&e->headers);
        const char *sp = memchr(p, ' ', len);
        e->status = sp ? atoi(sp + 1) : 0;
        return len;
    }
    size_t end = len;
    while (end > 0 && (p[end - 1] == '\r' || p[end - 1] == '\n')) end--;
    if (end == 0) {
        if (e->status >= 100 && e->status < 200) return len;
        e->headers_done = true;
        e->stats.headers_seen = true;
        if (e->sink.on_headers(e->sink.ctx, e->status, &e->headers) != 0) {
            e->sink_aborted = true;
            return 0;
        }
        return len;
    }
    const char *colon = memchr(p, ':', end);
    if (!colon) return len;
    const char *v = colon + 1;
    while (v < p + end && (*v == ' ' || *v == '\t')) v++;
    ccp_headers_add_n(&e->headers, p, (size_t)(colon - p), v, (size_t)(p + end - v));
    for (char *c = e->headers.items[e->headers.count - 1].name; *c; c++)
        if (*c >= 'A' && *c <= 'Z') *c = (char)(*c - 'A' + 'a');
    return len;
}

static size_t on_body(char *p, size_t size, size_t n, void *ctx)
{
    entry *e = ctx;
    size_t len = size * n;
    /* Refused data is delivered again after the resume: nothing is lost. */
    if (client_pending(e) >= BACKLOG_HIGH) {
        e->paused = true;
        return CURL_WRITEFUNC_PAUSE;
    }
    ccp_upstream *u = e->loop;
    mark_first_byte(u, e);
    e->stats.bytes_in += len;
    if (e->sink.on_data(e->sink.ctx, p, len) != 0) {
        e->sink_aborted = true;
        return 0;
    }
    watch_client(u, e);
    return len;
}

static int on_progress(void *ctx, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    (void)dltotal, (void)ultotal;
    entry *e = ctx;
    /* Upload progress counts as activity: a large body takes time to send. */
    if (ulnow != e->last_up || dlnow != e->last_down) {
        e->last_up = ulnow;
        e->last_down = dlnow;
        touch(e->loop, e);
    }
    return 0;
}

static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)easy;
    ccp_upstream *u = userp;
    struct epoll_event ev = {.data.u64 = TAG_CURL | (uint64_t)(unsigned)s};
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(u->epfd, EPOLL_CTL_DEL, s, NULL);
        curl_multi_assign(u->multi, s, NULL);
        return 0;
    }
    ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
    if (!socketp) {
        if (epoll_ctl(u->epfd, EPOLL_CTL_ADD, s, &ev) != 0 && errno == EEXIST) epoll_ctl(u->epfd, EPOLL_CTL_MOD, s, &ev);
        curl_multi_assign(u->multi, s, u); /* any non-NULL: "registered" */
    } else {
        epoll_ctl(u->epfd, EPOLL_CTL_MOD, s, &ev);
    }
    return 0;
}

static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    ccp_upstream *u = userp;
    u->curl_deadline_ms = timeout_ms < 0 ? -1 : ccp_now_ms() + timeout_ms;
    return 0;
}

/* ---- the loop ------------------------------------------------------------------ */

ccp_upstream *ccp_upstream_new(const ccp_config *cfg)
{
    ccp_upstream *u = ccp_xcalloc(1, sizeof *u);
    u->cfg = cfg;
    u->curl_deadline_ms = -1;
    u->jobs_tail = &u->jobs_head;
    pthread_mutex_init(&u->jobs_lock, NULL);
    u->epfd = epoll_create1(EPOLL_CLOEXEC);
    u->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    u->multi = curl_multi_init();
    if (u->epfd < 0 || u->wakefd < 0 || !u->multi) {
        ccp_upstream_free(u);
        return NULL;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_WAKE};
    epoll_ctl(u->epfd, EPOLL_CTL_ADD, u->wakefd, &ev);
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETDATA, u);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERDATA, u);
    curl_multi_setopt(u->multi, CURLMOPT_MAXCONNECTS, cfg->http_max_keepalive > 0 ? cfg->http_max_keepalive : 1L);
    return u;
}

void ccp_upstream_free(ccp_upstream *u)
{
    if (!u) return;
    for (int i = 0; i < u->easy_pool_count; i++) curl_easy_cleanup(u->easy_pool[i]);
    if (u->multi) curl_multi_cleanup(u->multi);
    if (u->epfd >= 0) close(u->epfd);
    if (u->wakefd >= 0) close(u->wakefd);
    pthread_mutex_destroy(&u->jobs_lock);
    free(u);
}

int ccp_upstream_open_count(const ccp_upstream *u)
{
    return atomic_load(&((ccp_upstream *)u)->open);
}

static void wake(ccp_upstream *u)
{
    uint64_t one = 1;
    ssize_t w = write(u->wakefd, &one, sizeof one);
    (void)w; /* EAGAIN: the counter is already non-zero, the loop wakes anyway */
}

static void enqueue(ccp_upstream *u, entry *e)
{
    atomic_fetch_add(&u->open, 1);
    pthread_mutex_lock(&u->jobs_lock);
    e->job_next = NULL;
    *u->jobs_tail = e;
    u->jobs_tail = &e->job_next;
    pthread_mutex_unlock(&u->jobs_lock);
    wake(u);
}

int ccp_upstream_start(ccp_upstream *u, const ccp_upstream_request *req, const ccp_upstream_sink *sink)
{
    if (atomic_load(&u->stopping)) return CCP_ERR;
    if (sink->client->input_done) sink->client->input_done(sink->client);
    entry *e = ccp_xcalloc(1, sizeof *e);
    e->kind = ENTRY_TRANSFER;
    e->loop = u;
    e->sink = *sink;
    e->client = sink->client;
    e->req = *req;
    e->url = ccp_xstrdup(req->url);
    e->req.url = e->url;
    e->stats.ttfb_ms = -1;
    e->last_up = e->last_down = -1;
    /* Header lines are built here, on the caller's thread: req->headers
     * need not outlive this call. */
    ccp_buf line = {0};
    for (size_t i = 0; req->headers && i < req->headers->count; i++) {
        ccp_buf_reset(&line);
        ccp_buf_printf(&line, "%s: %s", req->headers->items[i].name, req->headers->items[i].value);
        e->headers_list = curl_slist_append(e->headers_list, line.data);
    }
    ccp_buf_free(&line);
    /* No "Expect: 100-continue" round trip on large bodies, and no
     * compression: bytes and events pass through exactly as sent. */
    e->headers_list = curl_slist_append(e->headers_list, "Expect:");
    if (!req->headers || !ccp_headers_get(req->headers, "accept-encoding"))
        e->headers_list = curl_slist_append(e->headers_list, "Accept-Encoding: identity");
    e->req.headers = NULL;
    enqueue(u, e);
    return CCP_OK;
}

void ccp_upstream_finish_client(ccp_upstream *u, ccp_io *client)
{
    if (client->input_done) client->input_done(client);
    if (u && u->loop_running && pthread_equal(pthread_self(), u->loop_thread)) {
        entry *e = ccp_xcalloc(1, sizeof *e);
        e->client = client;
        e->loop = u;
        atomic_fetch_add(&u->open, 1);
        begin_drain(u, e, false);
        return;
    }
    /* The common case on a preparing thread: everything went out at once. */
    if (client->end) client->end(client);
    /* Without a loop (a unit test's transport) nothing can wait. */
    if (!u || !client->flush || client->flush(client) != 0 || !client->pending || !client->pending(client)) {
        if (client->close) client->close(client);
        return;
    }
    entry *e = ccp_xcalloc(1, sizeof *e);
    e->kind = ENTRY_DRAIN;
    e->loop = u;
    e->client = client;
    enqueue(u, e);
}

static CURL *take_easy(ccp_upstream *u)
{
    if (u->easy_pool_count) return u->easy_pool[--u->easy_pool_count];
    return curl_easy_init();
}

static void fail_start(ccp_upstream *u, entry *e, const char *why)
{
    ccp_buf err = {0};
    ccp_buf_append_str(&err, "upstream ");
    describe_host(&err, e->url);
    ccp_buf_printf(&err, " could not be contacted: %s", why);
    curl_slist_free_all(e->headers_list);
    e->headers_list = NULL;
    free(e->url);
    e->url = NULL;
    /* Never linked or watched; counted, so retired like the others. */
    retire_entry(u, e);
    e->sink.on_done(e->sink.ctx, CCP_UP_UNREACHABLE, &e->stats, err.data);
    ccp_buf_free(&err);
}

static void setup_easy(ccp_upstream *u, entry *e)
{
    CURL *h = e->easy;
    const ccp_config *cfg = u->cfg;
    const ccp_upstream_request *req = &e->req;
    curl_easy_setopt(h, CURLOPT_PRIVATE, (char *)e);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_URL, req->url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, cfg->http_connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_MAXAGE_CONN, cfg->http_keepalive_expiry_s);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, e->curl_err);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, e);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, e);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, e);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, e->headers_list);
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

static void begin_transfer(ccp_upstream *u, entry *e)
{
    e->start_ms = ccp_now_ms();
    touch(u, e);
    if (e->kind == ENTRY_DRAIN) {
        begin_drain(u, e, true); /* ended by the thread that queued it */
        return;
    }
    e->easy = take_easy(u);
    if (!e->easy) {
        fail_start(u, e, "out of memory for a transfer handle");
        return;
    }
    setup_easy(u, e);
    if (curl_multi_add_handle(u->multi, e->easy) != CURLM_OK) {
        recycle_easy(u, e->easy);
        e->easy = NULL;
        fail_start(u, e, "the transfer could not be started");
        return;
    }
    watch_client(u, e);
}

static void take_jobs(ccp_upstream *u)
{
    uint64_t n;
    while (read(u->wakefd, &n, sizeof n) > 0) {
    }
    pthread_mutex_lock(&u->jobs_lock);
    entry *e = u->jobs_head;
    u->jobs_head = NULL;
    u->jobs_tail = &u->jobs_head;
    pthread_mutex_unlock(&u->jobs_lock);
    while (e) {
        entry *next = e->job_next;
        e->job_next = NULL;
        if (atomic_load(&u->stopping) && e->kind == ENTRY_TRANSFER) {
            e->start_ms = ccp_now_ms();
            fail_start(u, e, "the service is shutting down");
        } else {
            begin_transfer(u, e);
        }
        e = next;
    }
}

static void read_done(ccp_upstream *u)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(u->multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        entry *e = NULL;
        CURLcode rc = m->data.result;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&e);
        if (e) end_transfer(u, e, CCP_UP_OK, rc);
    }
}

static void on_client_event(ccp_upstream *u, entry *e, uint32_t events)
{
    if (e->dead) return;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        if (e->kind == ENTRY_TRANSFER) end_transfer(u, e, CCP_UP_CLIENT_GONE, CURLE_OK);
        else close_entry(u, e);
        return;
    }
    if (events & EPOLLOUT) {
        if (e->client->flush && e->client->flush(e->client) != 0) {
            if (e->kind == ENTRY_TRANSFER) end_transfer(u, e, CCP_UP_CLIENT_GONE, CURLE_OK);
            else close_entry(u, e);
            return;
        }
        touch(u, e);
        if (e->kind == ENTRY_DRAIN && !client_pending(e)) {
            close_entry(u, e);
            return;
        }
        if (e->kind == ENTRY_TRANSFER && e->paused && client_pending(e) < BACKLOG_LOW) {
            e->paused = false;
            /* May deliver the held data at once, through on_body. */
            curl_easy_pause(e->easy, CURLPAUSE_CONT);
        }
        if (!e->dead) watch_client(u, e);
    }
}

/* Ends every transfer silent for HTTP_TIMEOUT; the list is oldest first,
 * so only its head needs looking at. Returns ms until the next deadline. */
static long expire_idle(ccp_upstream *u)
{
    long long now = ccp_now_ms();
    while (u->active_head) {
        entry *e = u->active_head;
        long long idle = now - e->last_activity_ms;
        if (idle < u->cfg->http_timeout_ms) return (long)(u->cfg->http_timeout_ms - idle);
        /* A paused transfer waits for its client, not for the upstream:
         * a client that reads nothing for that long has gone. */
        if (e->kind == ENTRY_TRANSFER) end_transfer(u, e, e->paused ? CCP_UP_CLIENT_GONE : CCP_UP_TIMEOUT, CURLE_OK);
        else close_entry(u, e); /* a client that never read its answer */
    }
    return -1;
}

static void free_dead(ccp_upstream *u)
{
    while (u->dead) {
        entry *e = u->dead;
        u->dead = e->job_next;
        free(e);
    }
}

static void cancel_all(ccp_upstream *u)
{
    while (u->active_head) {
        entry *e = u->active_head;
        if (e->kind == ENTRY_TRANSFER) end_transfer(u, e, CCP_UP_CLIENT_GONE, CURLE_OK);
        else close_entry(u, e);
    }
    free_dead(u);
}

void ccp_upstream_loop(ccp_upstream *u, bool until_idle)
{
    u->loop_thread = pthread_self();
    u->loop_running = true;
    struct epoll_event events[256];
    int running = 0;
    for (;;) {
        take_jobs(u);
        long wait = expire_idle(u);
        free_dead(u);
        if (atomic_load(&u->stopping)) break;
        if (until_idle && !u->active_head && !u->jobs_head) break;
        if (u->curl_deadline_ms >= 0) {
            long long left = u->curl_deadline_ms - ccp_now_ms();
            if (left < 0) left = 0;
            if (wait < 0 || left < wait) wait = (long)left;
        }
        int n = epoll_wait(u->epfd, events, (int)(sizeof events / sizeof events[0]), (int)wait);
        if (n < 0 && errno != EINTR) break;
        for (int i = 0; i < n; i++) {
            uint64_t tag = events[i].data.u64 & TAG_MASK;
            if (tag == TAG_WAKE) continue; /* jobs are taken at the top */
            if (tag == TAG_CURL) {
                int fd = (int)(events[i].data.u64 & 0xffffffffu);
                int mask = (events[i].events & EPOLLIN ? CURL_CSELECT_IN : 0) |
                           (events[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                           (events[i].events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
                curl_multi_socket_action(u->multi, fd, mask, &running);
                continue;
            }
            on_client_event(u, events[i].data.ptr, events[i].events);
        }
        if (u->curl_deadline_ms >= 0 && ccp_now_ms() >= u->curl_deadline_ms) {
            u->curl_deadline_ms = -1;
            curl_multi_socket_action(u->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        }
        /* Cheap when nothing finished; a resumed transfer may have. */
        read_done(u);
        free_dead(u);
    }
    cancel_all(u);
    u->loop_running = false;
}

void ccp_upstream_stop(ccp_upstream *u)
{
    atomic_store(&u->stopping, true);
    wake(u);
}
