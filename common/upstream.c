#define _GNU_SOURCE
#include "upstream.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct ccp_upstream {
    CURLM *multi;
    CURL *easy;
    const ccp_config *cfg;
};

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

ccp_upstream *ccp_upstream_new(const ccp_config *cfg)
{
    ccp_upstream *u = ccp_xcalloc(1, sizeof *u);
    u->cfg = cfg;
    u->multi = curl_multi_init();
    u->easy = curl_easy_init();
    if (!u->multi || !u->easy) {
        ccp_upstream_free(u);
        return NULL;
    }
    curl_multi_setopt(u->multi, CURLMOPT_MAXCONNECTS, cfg->http_max_keepalive > 0 ? cfg->http_max_keepalive : 1L);
    return u;
}

void ccp_upstream_free(ccp_upstream *u)
{
    if (!u) return;
    if (u->easy) curl_easy_cleanup(u->easy);
    if (u->multi) curl_multi_cleanup(u->multi);
    free(u);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct transfer {
    const ccp_upstream_sink *sink;
    int status;
    ccp_headers headers;
    bool headers_done;
    bool sink_aborted;
    long long start_ms;
    long long last_activity_ms;
    curl_off_t last_up, last_down;
    ccp_upstream_stats *stats;
} transfer;

static void mark_first_byte(transfer *t)
{
    long long now = now_ms();
    t->last_activity_ms = now;
    if (t->stats->ttfb_ms < 0) t->stats->ttfb_ms = (double)(now - t->start_ms);
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
        t->stats->headers_seen = true;
        if (t->sink->on_headers(t->sink->ctx, t->status, &t->headers) != 0) {
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
    mark_first_byte(t);
    t->stats->bytes_in += len;
    if (t->sink->on_data(t->sink->ctx, p, len) != 0) {
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
        t->last_activity_ms = now_ms();
    }
    return 0;
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

static void prepare(ccp_upstream *u, const ccp_upstream_request *req, transfer *t, struct curl_slist **list,
                    char *curl_err)
{
    CURL *e = u->easy;
    const ccp_config *cfg = u->cfg;
    curl_easy_reset(e);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_SHARE, share);
    curl_easy_setopt(e, CURLOPT_URL, req->url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, cfg->http_connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_MAXAGE_CONN, cfg->http_keepalive_expiry_s);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, curl_err);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(e, CURLOPT_XFERINFODATA, t);

    ccp_buf line = {0};
    for (size_t i = 0; req->headers && i < req->headers->count; i++) {
        ccp_buf_reset(&line);
        ccp_buf_printf(&line, "%s: %s", req->headers->items[i].name, req->headers->items[i].value);
        *list = curl_slist_append(*list, line.data);
    }
    ccp_buf_free(&line);
    /* No "Expect: 100-continue" round trip on large bodies, and no
     * compression: bytes and events pass through exactly as sent. */
    *list = curl_slist_append(*list, "Expect:");
    if (!ccp_headers_get(req->headers, "accept-encoding"))
        *list = curl_slist_append(*list, "Accept-Encoding: identity");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, *list);

    if (strcmp(req->method, "GET") == 0) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(req->method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else {
        if (strcmp(req->method, "POST") != 0) curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body ? req->body : "");
    }
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

ccp_upstream_result ccp_upstream_run(ccp_upstream *u, const ccp_upstream_request *req, const ccp_upstream_sink *sink,
                                     ccp_upstream_stats *stats, ccp_buf *err)
{
    stats->ttfb_ms = -1;
    stats->bytes_in = 0;
    stats->headers_seen = false;
    transfer t = {.sink = sink, .stats = stats, .last_up = -1, .last_down = -1};
    t.start_ms = t.last_activity_ms = now_ms();
    char curl_err[CURL_ERROR_SIZE] = "";
    struct curl_slist *list = NULL;
    prepare(u, req, &t, &list, curl_err);

    ccp_upstream_result result = CCP_UP_OK;
    CURLcode rc = CURLE_OK;
    bool finished = false;
    bool watch_fd = sink->client_fd >= 0;
    curl_multi_add_handle(u->multi, u->easy);
    for (;;) {
        int running = 0;
        if (curl_multi_perform(u->multi, &running) != CURLM_OK) {
            rc = CURLE_FAILED_INIT;
            finished = true;
            break;
        }
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(u->multi, &left)))
            if (m->msg == CURLMSG_DONE) {
                rc = m->data.result;
                finished = true;
            }
        if (finished || !running) break;
        if (t.sink_aborted || sink->client_gone(sink->ctx)) {
            result = CCP_UP_CLIENT_GONE;
            break;
        }
        long long idle = now_ms() - t.last_activity_ms;
        if (idle >= u->cfg->http_timeout_ms) {
            result = CCP_UP_TIMEOUT;
            break;
        }
        long long wait = u->cfg->http_timeout_ms - idle;
        if (wait > 250) wait = 250;
        struct curl_waitfd extra = {.fd = sink->client_fd, .events = CURL_WAIT_POLLIN};
        curl_multi_poll(u->multi, watch_fd ? &extra : NULL, watch_fd ? 1 : 0, (int)wait, NULL);
        if (watch_fd && extra.revents && !sink->client_gone(sink->ctx))
            watch_fd = false; /* readable but still there: stop waking on it */
    }
    /* Removing an unfinished transfer closes its connection: that is the
     * cancellation the upstream sees. */
    curl_multi_remove_handle(u->multi, u->easy);
    curl_slist_free_all(list);
    ccp_headers_free(&t.headers);

    if (result == CCP_UP_OK && finished && rc != CURLE_OK) {
        if (t.sink_aborted || rc == CURLE_WRITE_ERROR) {
            result = CCP_UP_CLIENT_GONE;
        } else if (!t.headers_done) {
            result = CCP_UP_UNREACHABLE;
            ccp_buf_append_str(err, "upstream ");
            describe_host(err, req->url);
            if (is_unreachable(rc)) ccp_buf_append_str(err, " is unreachable: ");
            else ccp_buf_append_str(err, " closed the connection without a response: ");
            ccp_buf_append_str(err, curl_err[0] ? curl_err : curl_easy_strerror(rc));
        } else {
            result = CCP_UP_BROKEN;
            ccp_buf_append_str(err, "upstream ");
            describe_host(err, req->url);
            ccp_buf_append_str(err, " failed mid-response: ");
            ccp_buf_append_str(err, curl_err[0] ? curl_err : curl_easy_strerror(rc));
        }
    } else if (result == CCP_UP_TIMEOUT) {
        ccp_buf_append_str(err, "upstream ");
        describe_host(err, req->url);
        ccp_buf_printf(err, " sent nothing for %.1f s (HTTP_TIMEOUT); raise HTTP_TIMEOUT if the model needs longer",
                       u->cfg->http_timeout_ms / 1000.0);
    }
    return result;
}
