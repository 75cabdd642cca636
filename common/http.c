#define _GNU_SOURCE
#include "http.h"

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* ---- header lists ------------------------------------------------------ */

void ccp_headers_add_n(ccp_headers *h, const char *name, size_t name_len, const char *value, size_t value_len)
{
    /* Capacity is implied: the next power of two from 8, so a request's
     * headers cost a few reallocations, not one each. */
    if (h->count == 0 || (h->count >= 8 && (h->count & (h->count - 1)) == 0))
        h->items = ccp_xrealloc(h->items, (h->count ? h->count * 2 : 8) * sizeof *h->items);
    h->items[h->count].name = ccp_xstrndup(name, name_len);
    h->items[h->count].value = ccp_xstrndup(value, value_len);
    h->count++;
}

void ccp_headers_add(ccp_headers *h, const char *name, const char *value)
{
    ccp_headers_add_n(h, name, strlen(name), value, strlen(value));
}

/* Names compare case-insensitively; folded also takes '-' and '_' as one
 * (CGI folds both into the same variable, HTTP_SESSION_ID). ASCII only, by
 * hand: header names are tokens, and tolower's locale lookup per byte was
 * the most of a list lookup's cost. */
static inline char name_fold(char c, bool folded)
{
    if (c >= 'A' && c <= 'Z') return (char)(c + ('a' - 'A'));
    return folded && c == '_' ? '-' : c;
}

static bool name_eq(const char *a, const char *b, bool folded)
{
    for (; *a && *b; a++, b++)
        if (name_fold(*a, folded) != name_fold(*b, folded)) return false;
    return *a == *b;
}

static void drop_item(ccp_header *item)
{
    free(item->name);
    free(item->value);
}

void ccp_headers_remove(ccp_headers *h, const char *name)
{
    size_t j = 0;
    for (size_t i = 0; i < h->count; i++) {
        if (name_eq(h->items[i].name, name, false)) drop_item(&h->items[i]);
        else h->items[j++] = h->items[i];
    }
    h->count = j;
}

/* One value for name: the first header of that name keeps its position
 * (header order is part of a client's look, and some upstreams check it),
 * takes the value (and with respell the given spelling); later twins go. */
static void replace(ccp_headers *h, const char *name, const char *value, bool folded, bool respell)
{
    size_t at = 0;
    while (at < h->count && !name_eq(h->items[at].name, name, folded)) at++;
    if (at == h->count) {
        ccp_headers_add(h, name, value);
        return;
    }
    char *v = ccp_xstrdup(value); /* value may point into an item about to go */
    if (respell) {
        free(h->items[at].name);
        h->items[at].name = ccp_xstrdup(name);
    }
    free(h->items[at].value);
    h->items[at].value = v;
    size_t j = at + 1;
    for (size_t i = at + 1; i < h->count; i++) {
        if (name_eq(h->items[i].name, name, folded)) drop_item(&h->items[i]);
        else h->items[j++] = h->items[i];
    }
    h->count = j;
}

void ccp_headers_set(ccp_headers *h, const char *name, const char *value)
{
    replace(h, name, value, false, false);
}

void ccp_headers_set_spelled(ccp_headers *h, const char *name, const char *value)
{
    replace(h, name, value, true, true);
}

const char *ccp_headers_get(const ccp_headers *h, const char *name)
{
    for (size_t i = 0; i < h->count; i++)
        if (name_eq(h->items[i].name, name, false)) return h->items[i].value;
    return NULL;
}

const char *ccp_headers_get_folded(const ccp_headers *h, const char *name)
{
    for (size_t i = 0; i < h->count; i++)
        if (name_eq(h->items[i].name, name, true)) return h->items[i].value;
    return NULL;
}

/* Steps through a comma-separated list: the next item without surrounding
 * spaces, or false at the end. */
static bool list_next(const char **p, const char **item, size_t *len)
{
    const char *s = *p;
    while (*s == ' ' || *s == ',') s++;
    if (!*s) return false;
    const char *e = s;
    while (*e && *e != ',') e++;
    const char *t = e;
    while (t > s && t[-1] == ' ') t--;
    *item = s;
    *len = (size_t)(t - s);
    *p = e;
    return true;
}

static bool list_has(const char *list, const char *v, size_t n)
{
    const char *item;
    size_t len;
    while (list_next(&list, &item, &len))
        if (len == n && strncmp(item, v, n) == 0) return true;
    return false;
}

bool ccp_header_list_has_token(const char *list, const char *token)
{
    const char *item;
    size_t len, n = strlen(token);
    while (list && list_next(&list, &item, &len))
        if (len >= n && strncasecmp(item, token, n) == 0 && (len == n || item[n] == '/')) return true;
    return false;
}

void ccp_headers_merge_list(ccp_headers *h, const char *name, const char *values)
{
    /* A list header sent twice is one list (RFC 9110 5.3): keep every value. */
    ccp_buf merged = {0};
    for (size_t i = 0; i < h->count; i++)
        if (name_eq(h->items[i].name, name, true) && *h->items[i].value) {
            if (merged.len) ccp_buf_append_char(&merged, ',');
            ccp_buf_append_str(&merged, h->items[i].value);
        }
    const char *item;
    size_t len;
    while (list_next(&values, &item, &len))
        if (!list_has(ccp_buf_cstr(&merged), item, len)) {
            if (merged.len) ccp_buf_append_char(&merged, ',');
            ccp_buf_append(&merged, item, len);
        }
    /* The client's spelling of the name stays when it sent one. */
    if (merged.len) replace(h, name, merged.data, true, false);
    ccp_buf_free(&merged);
}

void ccp_headers_free(ccp_headers *h)
{
    for (size_t i = 0; i < h->count; i++) {
        free(h->items[i].name);
        free(h->items[i].value);
    }
    free(h->items);
    h->items = NULL;
    h->count = 0;
}

/* ---- request ----------------------------------------------------------- */

const char *ccp_http_param(char **envp, const char *name)
{
    size_t n = strlen(name);
    for (char **e = envp; e && *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=') return *e + n + 1;
    return NULL;
}

bool ccp_http_header_name(const char *env_name, size_t len, ccp_buf *out)
{
    if (len <= 5 || strncmp(env_name, "HTTP_", 5) != 0) return false;
    ccp_buf_reset(out);
    for (size_t i = 5; i < len; i++) {
        char c = env_name[i];
        ccp_buf_append_char(out, c == '_' ? '-' : (char)tolower((unsigned char)c));
    }
    return true;
}

bool ccp_http_header_value_ok(const char *v)
{
    for (; *v; v++)
        if (*v == '\r' || *v == '\n') return false;
    return true;
}

/* Copies one header unless it passes a bound; the first bound passed is
 * remembered and nothing more is kept. */
static void add_bounded(ccp_request *r, const ccp_header_limits *lim, const char *name, size_t nl, const char *value,
                        size_t *total)
{
    if (r->over_limit) return;
    size_t vl = strlen(value), one = nl + vl;
    *total += one;
    if (lim && lim->count && r->headers.count >= lim->count) {
        r->over_limit = "MAX_HEADER_COUNT";
        r->over_amount = r->headers.count + 1;
    } else if (lim && lim->one_bytes && one > lim->one_bytes) {
        r->over_limit = "MAX_HEADER_BYTES";
        r->over_header = ccp_xstrndup(name, nl);
        r->over_amount = one;
    } else if (lim && lim->total_bytes && *total > lim->total_bytes) {
        r->over_limit = "MAX_HEADER_TOTAL_BYTES";
        r->over_amount = *total;
    } else {
        ccp_headers_add_n(&r->headers, name, nl, value, vl);
    }
}

static ccp_request_status request_view(ccp_request *r, ccp_io *io, const char *base_path, const ccp_header_limits *lim);

ccp_request_status ccp_request_init(ccp_request *r, ccp_io *io, const char *base_path, const ccp_header_limits *lim)
{
    ccp_request_status st = request_view(r, io, base_path, lim);
    if (io->params_over && !r->over_limit) {
        r->over_limit = "MAX_HEADER_TOTAL_BYTES";
        r->over_amount = io->params_seen;
    }
    return r->over_limit ? CCP_REQ_HEADERS_TOO_LARGE : st;
}

static ccp_request_status request_view(ccp_request *r, ccp_io *io, const char *base_path, const ccp_header_limits *lim)
{
    memset(r, 0, sizeof *r);
    r->io = io;
    r->content_length = -1;
    const char *method = ccp_http_param(io->envp, "REQUEST_METHOD");
    r->method = ccp_xstrdup(method && *method ? method : "GET");
    /* Nothing with a line break goes upstream, whatever stands in front:
     * the web server usually refuses such requests, the responder must not
     * depend on it. The first offending part is named. */
    if (!ccp_http_header_value_ok(r->method)) r->bad_part = "the method";

    ccp_buf name = {0};
    size_t total = 0;
    for (char **e = io->envp; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        if (!eq || !ccp_http_header_name(*e, (size_t)(eq - *e), &name)) continue;
        /* HTTP_PROXY is the httpoxy vector, never a real client header. */
        if (strcmp(name.data, "proxy") == 0) continue;
        if (!ccp_http_header_value_ok(eq + 1) && !r->bad_header) r->bad_header = ccp_xstrdup(name.data);
        if (!ccp_http_header_value_ok(name.data) && !r->bad_part) r->bad_part = "a header name";
        add_bounded(r, lim, name.data, name.len, eq + 1, &total);
    }
    ccp_buf_free(&name);
    const char *ct = ccp_http_param(io->envp, "CONTENT_TYPE");
    r->content_type = ct ? ccp_xstrdup(ct) : NULL;
    if (ct && !ccp_http_header_value_ok(ct) && !r->bad_part) r->bad_part = "the content type";
    const char *cl = ccp_http_param(io->envp, "CONTENT_LENGTH");
    if (cl && *cl) {
        if (strspn(cl, "0123456789") != strlen(cl)) return CCP_REQ_BAD;
        char *end;
        errno = 0;
        long long n = strtoll(cl, &end, 10);
        if (errno || *end || n < 0) return CCP_REQ_BAD;
        r->content_length = n;
    }

    /* Route by PATH_INFO when the server split one off (a CGI mount such as
     * /cgi-bin/ccproxy-claude/v1/messages), else by the request URI's path. */
    const char *path_info = ccp_http_param(io->envp, "PATH_INFO");
    const char *uri = ccp_http_param(io->envp, "REQUEST_URI");
    const char *path;
    size_t plen;
    if (path_info && *path_info) {
        path = path_info;
        plen = strlen(path);
    } else if (uri && *uri) {
        path = uri;
        plen = strcspn(uri, "?#");
    } else {
        path = "/";
        plen = 1;
    }
    const char *q = ccp_http_param(io->envp, "QUERY_STRING");
    if ((!q || !*q) && uri && strchr(uri, '?')) q = strchr(uri, '?') + 1;
    r->query = ccp_xstrdup(q ? q : "");
    size_t qlen = strcspn(r->query, "#");
    r->query[qlen] = '\0';
    if (!ccp_http_header_value_ok(r->query) && !r->bad_part) r->bad_part = "the query string";

    size_t blen = strlen(base_path);
    if (blen > 0) {
        if (plen < blen || strncmp(path, base_path, blen) != 0 || (plen > blen && path[blen] != '/')) {
            r->path = ccp_xstrndup(path, plen);
            return CCP_REQ_NOT_FOUND;
        }
        path += blen;
        plen -= blen;
    }
    r->path = plen ? ccp_xstrndup(path, plen) : ccp_xstrdup("/");
    if (!ccp_http_header_value_ok(r->path) && !r->bad_part) r->bad_part = "the path";
    if (r->path[0] != '/') return CCP_REQ_BAD;
    return CCP_REQ_OK;
}

ccp_request_status ccp_request_read_body(ccp_request *r, size_t max)
{
    if (r->content_length > (long long)max) return CCP_REQ_TOO_LARGE;
    size_t want = r->content_length >= 0 ? (size_t)r->content_length : max + 1;
    if (r->content_length >= 0) ccp_buf_reserve(&r->body, want);
    char chunk[16384];
    while (r->body.len < want) {
        size_t left = want - r->body.len;
        int n = r->io->read(r->io, chunk, (int)(left < sizeof chunk ? left : sizeof chunk));
        if (n <= 0) break;
        ccp_buf_append(&r->body, chunk, (size_t)n);
    }
    if (r->body.len > max) return CCP_REQ_TOO_LARGE;
    if (r->content_length >= 0 && r->body.len < (size_t)r->content_length) return CCP_REQ_SHORT_BODY;
    return CCP_REQ_OK;
}

void ccp_request_drain(ccp_request *r)
{
    /* Bounded: the web server caps bodies itself; this only covers the
     * window between its limit and ours. */
    enum { DRAIN_MAX_BYTES = 256 << 20 }; /* a count of discarded bytes, not a buffer */
    char chunk[16384];
    size_t total = 0;
    while (total < DRAIN_MAX_BYTES) {
        int n = r->io->read(r->io, chunk, (int)sizeof chunk);
        if (n <= 0) break;
        total += (size_t)n;
    }
}

const char *ccp_request_header(const ccp_request *r, const char *name)
{
    return ccp_headers_get(&r->headers, name);
}

bool ccp_request_is_websocket(const ccp_request *r)
{
    const char *key = ccp_headers_get(&r->headers, "sec-websocket-key");
    return ccp_header_list_has_token(ccp_headers_get(&r->headers, "upgrade"), "websocket") || (key && *key);
}

void ccp_request_free(ccp_request *r)
{
    free(r->method);
    free(r->content_type);
    free(r->path);
    free(r->query);
    free((char *)r->bad_header);
    free(r->over_header);
    ccp_headers_free(&r->headers);
    ccp_buf_free(&r->body);
    memset(r, 0, sizeof *r);
}

/* ---- response ---------------------------------------------------------- */

void ccp_io_finish(ccp_io *io)
{
    if (io->end) io->end(io);
    if (io->release) io->release(io);
}

const char *ccp_http_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 422: return "Unprocessable Entity";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 529: return "Overloaded";
    default: return status >= 500 ? "Error" : status >= 400 ? "Client Error" : "OK";
    }
}

void ccp_response_init(ccp_response *res, ccp_io *io)
{
    memset(res, 0, sizeof *res);
    res->io = io;
}

static int raw_write(ccp_response *res, const char *p, size_t n)
{
    if (res->client_gone) return -1;
    if (n && res->io->write(res->io, p, n) != 0) {
        res->client_gone = true;
        return -1;
    }
    return 0;
}

static int raw_flush(ccp_response *res)
{
    if (res->client_gone) return -1;
    if (res->io->flush(res->io) != 0) {
        res->client_gone = true;
        return -1;
    }
    return 0;
}

static void append_headers(ccp_buf *b, const ccp_headers *h)
{
    for (size_t i = 0; h && i < h->count; i++) {
        if (!ccp_http_header_value_ok(h->items[i].value) || !ccp_http_header_value_ok(h->items[i].name)) continue;
        ccp_buf_printf(b, "%s: %s\r\n", h->items[i].name, h->items[i].value);
    }
}

int ccp_response_begin(ccp_response *res, int status, const ccp_headers *headers)
{
    if (res->headers_sent) return res->client_gone ? -1 : 0;
    res->headers_sent = true;
    res->status = status;
    ccp_buf b = {0};
    ccp_buf_printf(&b, "Status: %d %s\r\n", status, ccp_http_reason(status));
    append_headers(&b, headers);
    append_headers(&b, res->extra);
    ccp_buf_append_str(&b, "\r\n");
    int rc = raw_write(res, b.data, b.len);
    ccp_buf_free(&b);
    if (rc == 0) rc = raw_flush(res);
    return rc;
}

int ccp_response_write(ccp_response *res, const char *p, size_t n)
{
    if (raw_write(res, p, n) != 0) return -1;
    res->bytes_out += n;
    return raw_flush(res);
}

int ccp_response_send(ccp_response *res, int status, const char *content_type, const char *body, size_t len,
                      const ccp_headers *headers)
{
    if (res->headers_sent) return -1;
    ccp_headers h = {0};
    if (content_type) ccp_headers_add(&h, "Content-Type", content_type);
    char cl[32];
    snprintf(cl, sizeof cl, "%zu", len);
    ccp_headers_add(&h, "Content-Length", cl);
    for (size_t i = 0; headers && i < headers->count; i++)
        ccp_headers_add(&h, headers->items[i].name, headers->items[i].value);
    int rc = ccp_response_begin(res, status, &h);
    ccp_headers_free(&h);
    if (rc == 0 && len) rc = ccp_response_write(res, body, len);
    return rc;
}

bool ccp_response_client_gone(ccp_response *res)
{
    if (res->client_gone) return true;
    int fd = res->io->hangup_fd;
    if (fd < 0) return false;
    struct pollfd p = {.fd = fd, .events = res->io->hangup_fd_readable ? (POLLIN | POLLRDHUP) : 0};
    if (poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) {
        res->client_gone = true;
    } else if (p.revents & POLLIN) {
        /* Readable without RDHUP: only an orderly EOF counts as leaving. */
        char c;
        ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOTSOCK))
            res->client_gone = true;
    }
    return res->client_gone;
}

void ccp_response_abort(ccp_response *res)
{
    /* Measured with nginx 1.22 (fastcgi_buffering off) and lighttpd 1.4.69
     * (stream-response-body 2): a FastCGI connection that merely closes
     * without FCGI_END_REQUEST is a clean end to nginx (it sends the final
     * chunk; after a Content-Length it leaves the client waiting), and
     * lighttpd skips a record of a type it does not know. So: a record no
     * request stream may carry (FCGI_UNKNOWN_TYPE), which nginx refuses at
     * once and cuts its client off, then the connection shut down before
     * libfcgi's FCGI_END_REQUEST, which lighttpd takes for a dead backend
     * and cuts its client off. Every earlier write was flushed, so the
     * record starts on a record boundary. */
    res->client_gone = true;
    res->aborted = true;
    if (res->io->abort) {
        res->io->abort(res->io); /* a transport with a queue puts it in line */
        return;
    }
    static const unsigned char unknown_type[16] = {1, 11, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    int fd = res->io->hangup_fd;
    if (fd < 0 || !res->io->hangup_fd_readable) return;
    (void)send(fd, unknown_type, sizeof unknown_type, MSG_NOSIGNAL); /* fails only if already gone */
    shutdown(fd, SHUT_RDWR);
}
