#include "relay.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "attempt.h"
#include "auth.h"
#include "clock.h"
#include "json_text.h"
#include "log.h"
#include "pool.h"
#include "reqid.h"
#include "sse.h"

/* How the upstream's answer reaches the client, decided by its headers. */
typedef enum {
    ANSWER_PENDING,   /* no upstream headers yet */
    ANSWER_STREAM,    /* SSE, event by event */
    ANSWER_AGGREGATE, /* SSE folded into the one JSON body the client asked for */
    ANSWER_HOLD,      /* a non-stream body held until it is complete */
    ANSWER_PASS,      /* a non-stream body too big to hold: as it arrives */
    ANSWER_RETRY,     /* a failed attempt (5xx, 429) another upstream retries: dropped */
} answer_mode;

/* The request as it goes upstream, kept for every attempt: the headers
 * before the upstream's key and extra headers, and the body. */
typedef struct upstream_call {
    bool has_body;
    ccp_headers headers;
    const char *body; /* the client's bytes, or the adapted ones */
    size_t body_len;
    ccp_buf auth_name, auth_value; /* the key header as placed, replaced per upstream */
} upstream_call;

/* The per-request context: everything one exchange owns, freed in one place. */
typedef struct exchange {
    const ccp_runtime *rt;
    const ccp_dialect *d;
    ccp_upstream *up;
    ccp_io *io;
    ccp_request req;
    ccp_response res;
    ccp_headers cors;
    const ccp_route *route;
    bool body_read;

    ccp_client_key key;
    char key_fp[CCP_FINGERPRINT_LEN + 1];
    const ccp_adapter *adapter;
    json_object *body;  /* the parsed request; freed once it is adapted */
    bool body_parsed;
    ccp_buf upstream_body; /* the adapted body, when the steps changed it */
    char *model;
    int stream;
    int message_count;

    bool want_aggregate;     /* a forced stream answers as one JSON body */
    answer_mode mode;
    ccp_sse_framer framer;
    ccp_sse_event event;     /* scratch for event inspection */
    ccp_stream_state stream_state;
    ccp_headers answer_headers; /* ANSWER_AGGREGATE, ANSWER_HOLD: for the late begin */
    int held_status;
    ccp_buf held;
    ccp_aggregate agg;
    ccp_buf logged_response;
    ccp_upstream_stats stats;
    bool client_left; /* logged as 499, whatever went out before */
    const char *limit_hit; /* the limit that ended the answer (its config name) */
    size_t aggregated;     /* bytes of a forced stream read for the aggregate */
    ccp_buf error;
    long long start_ns;

    /* The pool: the upstreams this request tries, in order, and the one
     * running now. Everything before the commit (the client's first byte)
     * may be thrown away and tried again on the next upstream. */
    upstream_call call;
    size_t order[CCP_POOL_MAX];
    size_t order_n;
    size_t attempts;          /* started so far */
    size_t current;           /* pool index of the running (or last) attempt */
    const char *upstream_name; /* that upstream's name: valid for the exchange */
    long long deadline_ms;    /* no attempt starts after it */
    long long retry_after_ms; /* what the running attempt's answer asked for; -1: nothing */
    bool peeking;             /* a stream held back until its first event */
    bool abandoned;           /* we ended the running attempt: its first event was an error */
    int events_seen;          /* of a forced stream being aggregated */
    ccp_buf peek;
    ccp_headers attempt_headers;
    ccp_buf attempt_url;
    ccp_buf attempt_body;     /* the body with this upstream's model name */
    ccp_buf failover;         /* "a: 529, b: timeout" */
    /* Observability: the id every response carries, the upstream's own id,
     * what the upstream said it used, and what the metrics were told. */
    char request_id[CCP_REQID_MAX + 1];
    char upstream_request_id[129];
    char remote_addr[64];
    ccp_usage usage;
    bool stream_open;        /* counted in ccproxy_active_streams */
    bool error_event_counted; /* the committed stream's first event was an error, counted as the attempt's */
} exchange;

/* ---- observability ------------------------------------------------------ */

/* The upstream label of this exchange's transfer: the pool's upstream of
 * the running (or last) attempt. */
static const char *exchange_upstream_name(const exchange *x)
{
    return x->upstream_name ? x->upstream_name : "default";
}

/* Every upstream failure reaches the metrics through here, one count per
 * call, under the upstream of the attempt that failed: a failed attempt
 * once (note_attempt_failure), a committed answer's failure once (at its
 * end), and an error event inside a committed stream once per exchange. */
static void note_upstream_error(exchange *x, ccp_upstream_error_kind kind)
{
    ccp_metrics *m = x->rt->metrics;
    ccp_metrics_upstream_error(m, ccp_metrics_upstream(m, exchange_upstream_name(x)), kind);
}


/* ---- errors: the one finish path for failures ----------------------- */

/* Whole events on their way to the client. A dialect that inspects events
 * sees each one; unchanged events go out as their original bytes. */
static int emit_to_client(void *ctx, const char *p, size_t n)
{
    exchange *x = ctx;
    if (!x->d->inspect_event) {
        int written = ccp_response_write(&x->res, p, n);
        /* Read after the bytes went out: the client never waits for it. */
        ccp_usage_scan(&x->usage, p, n);
        return written;
    }
    ccp_buf replaced = {0};
    int rc = 0;
    size_t pass_from = 0, at = 0;
    while (at < n && rc == 0) {
        size_t used = ccp_sse_next_event(p + at, n - at, &x->event);
        if (!used) break;
        ccp_buf_reset(&replaced);
        if (x->d->inspect_event(x->d, &x->stream_state, &x->event, &replaced)) {
            rc = ccp_response_write(&x->res, p + pass_from, at - pass_from);
            if (rc == 0) rc = ccp_response_write(&x->res, replaced.data, replaced.len);
            pass_from = at + used;
        }
        at += used;
    }
    if (rc == 0 && pass_from < n) rc = ccp_response_write(&x->res, p + pass_from, n - pass_from);
    ccp_buf_free(&replaced);
    ccp_usage_scan(&x->usage, p, n);
    return rc;
}

static bool may_retry(const exchange *x);

/* An event with a name or data; a comment (a keep-alive) has neither. */
static bool is_event(const ccp_sse_event *ev)
{
    return ev->has_data || ev->name.len;
}

/* The first event of an answer of which nothing reached the client was an
 * error (is_error): that is another upstream's turn while one is left (the
 * overloaded-while-streaming case). True: this attempt is abandoned. */
static bool abandon_on_error_event(exchange *x, bool is_error)
{
    if (!is_error || !may_retry(x)) return false;
    x->abandoned = true;
    return true;
}

static int emit_to_aggregate(void *ctx, const char *p, size_t n)
{
    exchange *x = ctx;
    size_t at = 0, used;
    while (at < n && (used = ccp_sse_next_event(p + at, n - at, &x->event)) > 0) {
        /* Nothing went to the client yet (see peek_first_event). */
        if (is_event(&x->event) && x->events_seen++ == 0 &&
            abandon_on_error_event(x, ccp_attempt_is_error_event(&x->event)))
            return -1;
        x->d->aggregate_event(x->d, &x->agg, &x->event);
        if (x->event.has_data)
            ccp_usage_event(&x->usage, x->event.name.data ? x->event.name.data : "", x->event.name.len,
                            x->event.data.data, x->event.data.len);
        at += used;
    }
    return 0;
}

/* Tells the client what went wrong, in its dialect: a JSON error when no
 * header went out yet, else the SSE error event that ends the stream; a
 * non-stream answer already on its way is cut off, so that it never ends
 * as if it were complete. */
static void fail(exchange *x, ccp_error_kind kind, const ccp_headers *extra, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail_msg(exchange *x, ccp_error_kind kind, const ccp_headers *extra, const char *msg);
static void fail(exchange *x, ccp_error_kind kind, const ccp_headers *extra, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fail_msg(x, kind, extra, msg);
}

static void fail_msg(exchange *x, ccp_error_kind kind, const ccp_headers *extra, const char *msg)
{
    ccp_buf_reset(&x->error);
    ccp_buf_append_str(&x->error, msg);

    if (!x->body_read) ccp_request_drain(&x->req);
    x->body_read = true;
    ccp_buf out = {0};
    if (!x->res.headers_sent) {
        x->d->error_body(x->d, &out, kind, msg);
        ccp_response_send(&x->res, ccp_error_status(kind), "application/json", out.data, out.len, extra);
    } else if (x->mode == ANSWER_STREAM) {
        /* Whatever half event was held back is dropped: the client gets
         * whole events, then the error, then the end. */
        ccp_sse_framer_free(&x->framer);
        x->d->stream_error_event(x->d, &out, kind, msg, &x->stream_state);
        ccp_response_write(&x->res, out.data, out.len);
    } else {
        ccp_response_abort(&x->res);
    }
    ccp_buf_free(&out);
}

/* A limit was passed: the log says which (a limit_reached line, beside
 * the exchange's own), the client hears it in its dialect (fail). */
static void refuse_limit(exchange *x, ccp_error_kind kind, const char *limit, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void refuse_limit(exchange *x, ccp_error_kind kind, const char *limit, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    x->limit_hit = limit;
    fail_msg(x, kind, NULL, msg);
    ccp_log_event(CCP_LOG_WARNING, "limit_reached", "%s %s: %s (%d): %s", x->req.method, x->req.path, limit,
                  ccp_error_status(kind), msg);
}

/* ---- routing ------------------------------------------------------------ */

static bool id_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("-._~:@%+", c);
}

bool ccp_route_matches(const char *pattern, const char *path)
{
    size_t plen = strlen(pattern);
    if (plen >= 2 && strcmp(pattern + plen - 2, "/*") == 0) {
        size_t stem = plen - 1; /* keeps the '/' */
        if (strncmp(pattern, path, stem) != 0 || !path[stem]) return false;
        for (const char *c = path + stem; *c; c++)
            if (!id_char(*c)) return false;
        return strcmp(path + stem, ".") && strcmp(path + stem, "..");
    }
    /* A trailing slash is the same route: clients differ on it. */
    size_t n = strlen(path);
    if (n > 1 && path[n - 1] == '/') n--;
    return n == plen && strncmp(pattern, path, n) == 0;
}

/* Finds the route; *path_known tells 405 from 404 when none fits. */
static const ccp_route *find_route(const ccp_service *s, const char *method, const char *path, ccp_buf *allow)
{
    const ccp_route *hit = NULL;
    for (size_t i = 0; i < s->route_count; i++) {
        const ccp_route *r = &s->routes[i];
        if (!ccp_route_matches(r->pattern, path)) continue;
        if (allow->len) ccp_buf_append_str(allow, ", ");
        ccp_buf_append_str(allow, r->method);
        if (!hit && strcmp(r->method, method) == 0) hit = r;
    }
    if (allow->len) ccp_buf_append_str(allow, ", OPTIONS");
    return hit;
}

/* Any route that relays to the upstream, whatever its method. */
static bool relay_path(const ccp_service *s, const char *path)
{
    for (size_t i = 0; i < s->route_count; i++)
        if (s->routes[i].kind == CCP_ROUTE_RELAY && ccp_route_matches(s->routes[i].pattern, path)) return true;
    return false;
}

/* ---- CORS ---------------------------------------------------------------- */

static bool origin_allowed(const ccp_config *cfg, const char *origin)
{
    if (!origin || !*origin || !ccp_http_header_value_ok(origin)) return false;
    if (cfg->cors_any) return true;
    for (size_t i = 0; i < cfg->cors_count; i++)
        if (strcasecmp(cfg->cors_origins[i], origin) == 0) return true;
    return false;
}

static void cors_headers(exchange *x)
{
    const char *origin = ccp_request_header(&x->req, "origin");
    if (!origin_allowed(x->rt->cfg, origin)) return;
    ccp_headers_add(&x->cors, "Access-Control-Allow-Origin", origin);
    ccp_headers_add(&x->cors, "Vary", "Origin");
    ccp_headers_add(&x->cors, "Access-Control-Expose-Headers",
                    "request-id, x-request-id, x-ccproxy-request-id, retry-after, retry-after-ms, x-should-retry");
    x->res.extra = &x->cors;
}

static bool token_list_ok(const char *v)
{
    for (; *v; v++)
        if (!id_char(*v) && *v != ',' && *v != ' ' && *v != '*') return false;
    return true;
}

static void preflight(exchange *x, const char *allow)
{
    const char *origin = ccp_request_header(&x->req, "origin");
    ccp_headers h = {0};
    ccp_headers_add(&h, "Allow", allow);
    if (origin && !origin_allowed(x->rt->cfg, origin)) {
        fail(x, CCP_E_PERMISSION, &h,
             "origin %s is not allowed; add it to CORS_ALLOW_ORIGINS (comma-separated, or *) to call this "
             "service from a browser",
             ccp_http_header_value_ok(origin) ? origin : "(invalid)");
        ccp_headers_free(&h);
        return;
    }
    if (origin) {
        const char *want = ccp_request_header(&x->req, "access-control-request-headers");
        ccp_headers_add(&h, "Access-Control-Allow-Methods", allow);
        ccp_headers_add(&h, "Access-Control-Allow-Headers",
                        want && *want && token_list_ok(want)
                            ? want
                            : "authorization, content-type, x-api-key, anthropic-version, anthropic-beta, x-client-type");
        ccp_headers_add(&h, "Access-Control-Max-Age", "86400");
    }
    ccp_response_send(&x->res, 204, NULL, NULL, 0, &h);
    ccp_headers_free(&h);
}

/* ---- the body ------------------------------------------------------------ */

static bool parse_body(exchange *x)
{
    json_object *obj;
    size_t at;
    ccp_buf why = {0};
    int depth = x->rt->cfg->max_json_depth;
    ccp_json_status st = ccp_json_parse_depth(x->req.body.data, x->req.body.len, depth, &obj, &at, &why);
    if (st == CCP_JSON_TOO_DEEP)
        refuse_limit(x, CCP_E_INVALID_REQUEST, "MAX_JSON_DEPTH",
                     "request body nests arrays and objects deeper than this service accepts (%d levels, "
                     "MAX_JSON_DEPTH) at byte %zu",
                     depth, at);
    else if (st == CCP_JSON_TRUNCATED)
        fail(x, CCP_E_INVALID_REQUEST, NULL,
             "request body is not valid JSON: it ends too early (%zu bytes); send one complete JSON object",
             x->req.body.len);
    else if (st == CCP_JSON_TRAILING)
        fail(x, CCP_E_INVALID_REQUEST, NULL,
             "request body is not valid JSON: unexpected data after the object at byte %zu", at);
    else if (st != CCP_JSON_OK)
        fail(x, CCP_E_INVALID_REQUEST, NULL, "request body is not valid JSON: %s; send one JSON object", why.data);
    ccp_buf_free(&why);
    if (st != CCP_JSON_OK) return false;
    if (!json_object_is_type(obj, json_type_object)) {
        json_object_put(obj);
        fail(x, CCP_E_INVALID_REQUEST, NULL, "request body must be a JSON object, not %s",
             json_type_to_name(json_object_get_type(obj)));
        return false;
    }
    x->body = obj;
    x->body_parsed = true;
    return true;
}

static bool check_body(exchange *x)
{
    unsigned checks = x->route->body_checks;
    json_object *v;
    if (json_object_object_get_ex(x->body, "model", &v) && json_object_is_type(v, json_type_string))
        x->model = ccp_xstrdup(json_object_get_string(v));
    if (json_object_object_get_ex(x->body, "stream", &v))
        x->stream = json_object_is_type(v, json_type_boolean) ? json_object_get_boolean(v) : -1;
    else
        x->stream = 0;
    x->message_count = ccp_dialect_message_count(x->d, x->body);
    json_object *msgs = NULL;
    json_object_object_get_ex(x->body, "messages", &msgs); /* CCP_BODY_MESSAGES_ARRAY names it */

    if ((checks & CCP_BODY_MODEL) && (!x->model || !*x->model)) {
        fail(x, CCP_E_INVALID_REQUEST, NULL, "model: field required; name the model, e.g. \"model\": \"%s\"",
             x->d->example_model);
        return false;
    }
    if ((checks & CCP_BODY_MESSAGES_ARRAY) && !(msgs && json_object_is_type(msgs, json_type_array))) {
        fail(x, CCP_E_INVALID_REQUEST, NULL,
             msgs ? "messages: must be an array of {\"role\",\"content\"} objects"
                  : "messages: field required; send an array of {\"role\",\"content\"} objects");
        return false;
    }
    return true;
}

/* ---- upstream headers ------------------------------------------------- */

static bool dropped_request_header(const char *name)
{
    static const char *const exact[] = {
        "host", "content-length", "content-type", "connection", "keep-alive", "proxy-connection",
        "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization", "proxy-authenticate",
        "cookie", "cookie2", "forwarded", "x-real-ip", "accept-encoding", "expect", "http2-settings",
        "x-client-type", "x-api-key", "authorization", "via", NULL,
    };
    for (const char *const *p = exact; *p; p++)
        if (strcasecmp(name, *p) == 0) return true;
    return strncasecmp(name, "x-forwarded-", 12) == 0 || strncasecmp(name, "x-ccproxy-", 10) == 0;
}

/* The headers every attempt starts from. The key header placed here is the
 * client's; each attempt puts its upstream's in its place (ccp_attempt_headers),
 * unless a step changed it. */
static void build_upstream_headers(exchange *x, ccp_headers *out, bool has_body)
{
    const ccp_config *cfg = x->rt->cfg;
    ccp_buf *name = &x->call.auth_name, *value = &x->call.auth_value;
    ccp_dialect_auth_header(x->d, cfg->upstream_auth_style, x->key.source, x->key.value, name, value);
    bool auth_placed = false;
    for (size_t i = 0; i < x->req.headers.count; i++) {
        const ccp_header *h = &x->req.headers.items[i];
        /* The key goes where the client put its own: header order is part
         * of what a client looks like upstream. */
        if (!auth_placed && (strcasecmp(h->name, "x-api-key") == 0 || strcasecmp(h->name, "authorization") == 0)) {
            ccp_headers_add(out, name->data, value->data);
            auth_placed = true;
        }
        if (!dropped_request_header(h->name)) ccp_headers_add(out, h->name, h->value);
    }
    if (!auth_placed) ccp_headers_add(out, name->data, value->data);
    if (has_body)
        ccp_headers_add(out, "content-type",
                        x->req.content_type && *x->req.content_type ? x->req.content_type : "application/json");
    for (const char *const *p = x->d->default_request_headers; p && *p; p += 2)
        if (!ccp_headers_get(out, p[0])) ccp_headers_add(out, p[0], p[1]);
}

/* ---- the upstream sink ------------------------------------------------ */

/* A non-stream answer (anything but SSE) is held until the upstream has sent
 * all of it and then goes out whole, with its Content-Length, so an upstream
 * that goes silent or dies halfway becomes the dialect's 504/502 instead of
 * a 200 that ends cleanly with half a body. Such answers are small next to a
 * stream; one larger than MAX_HOLD_BYTES goes out as it arrives (with the
 * upstream's Content-Length when it gave one) and is cut off if it fails. */

/* Sends the held status, headers and body; from here on the answer streams.
 * complete: the held body is the whole answer, whose usage is read once it
 * went out. */
static int release_held(exchange *x, bool complete)
{
    x->mode = ANSWER_PASS;
    int rc = ccp_response_begin(&x->res, x->held_status, &x->answer_headers);
    if (rc == 0 && x->held.len) rc = ccp_response_write(&x->res, x->held.data, x->held.len);
    if (complete && x->held_status >= 200 && x->held_status < 300) ccp_usage_body(&x->usage, x->held.data, x->held.len);
    ccp_buf_free(&x->held);
    return rc;
}

/* ---- attempts: failover before the first byte ------------------------- */

/* Another attempt may start: one is left, within the overall deadline. */
static bool may_retry(const exchange *x)
{
    return x->attempts < x->order_n && ccp_now_ms() < x->deadline_ms;
}

/* Every failed attempt passes here once: the log's "failover", the
 * upstream's cool-down and its error count. */
static void note_attempt_failure(exchange *x, const char *upstream_name, ccp_attempt_failure kind)
{
    bool by_status = kind == CCP_ATTEMPT_STATUS_5XX || kind == CCP_ATTEMPT_STATUS_429;
    if (x->failover.len) ccp_buf_append_str(&x->failover, ", ");
    if (by_status) ccp_buf_printf(&x->failover, "%s: %d", upstream_name, x->held_status);
    else ccp_buf_printf(&x->failover, "%s: %s", upstream_name, ccp_attempt_failure_name(kind));
    ccp_pool_failed(x->rt->pool, x->current, by_status ? x->retry_after_ms : -1, ccp_now_ms());
    note_upstream_error(x, ccp_attempt_error_kind(kind));
}

static int sse_refused(exchange *x, int rc);

/* The stream goes to the client from here on: its status and headers, then
 * what was held back (the first event), through the framer as usual. */
static int commit_stream(exchange *x)
{
    x->peeking = false;
    int rc = ccp_response_begin(&x->res, x->held_status, &x->answer_headers);
    ccp_headers_free(&x->answer_headers);
    /* The tree was kept for another upstream's model name; no more attempts. */
    json_object_put(x->body);
    x->body = NULL;
    if (rc == 0 && x->peek.len)
        rc = sse_refused(x, ccp_sse_framer_feed(&x->framer, x->peek.data, x->peek.len, emit_to_client, x));
    ccp_buf_free(&x->peek);
    return rc;
}

/* A 200 stream is held until its first event is complete (never longer):
 * an error there is another upstream's turn (the overloaded-while-
 * streaming case); anything else commits at once, so a healthy stream's
 * first event is not delayed. */
static int peek_first_event(exchange *x, const char *p, size_t n)
{
    ccp_buf_append(&x->peek, p, n);
    size_t at = 0, used;
    while ((used = ccp_sse_next_event(x->peek.data + at, x->peek.len - at, &x->event)) > 0) {
        at += used;
        if (!is_event(&x->event)) continue; /* a comment: keep looking */
        bool is_error = ccp_attempt_is_error_event(&x->event);
        if (abandon_on_error_event(x, is_error)) return -1; /* on_upstream_done starts the next */
        if (is_error) {
            /* The last attempt: the client gets the error, the upstream cools
             * down; counted here, not again when the event passes. */
            note_attempt_failure(x, x->upstream_name, CCP_ATTEMPT_ERROR_EVENT);
            x->error_event_counted = true;
        }
        return commit_stream(x);
    }
    /* No first event within the framer's bound: the framer refuses it. */
    return x->peek.len > x->framer.max_event ? commit_stream(x) : 0;
}

static int on_upstream_headers(void *ctx, int status, const ccp_headers *up)
{
    exchange *x = ctx;
    /* The transfer copied its URL and header lines when it started: an open
     * stream keeps only what it still needs. */
    ccp_headers_free(&x->attempt_headers);
    ccp_buf_free(&x->attempt_url);
    const char *uid = ccp_headers_get(up, "request-id");
    if (!uid) uid = ccp_headers_get(up, "x-request-id");
    if (uid) snprintf(x->upstream_request_id, sizeof x->upstream_request_id, "%s", uid);
    x->retry_after_ms = ccp_attempt_retry_after(up);
    x->held_status = status;
    if (ccp_attempt_retryable_status(status) && may_retry(x)) {
        x->mode = ANSWER_RETRY;
        return 0;
    }
    ccp_headers h = {0};
    for (size_t i = 0; i < up->count; i++)
        if (ccp_dialect_passes_header(x->d, up->items[i].name))
            ccp_headers_add(&h, up->items[i].name, up->items[i].value);
    const char *ct = ccp_headers_get(up, "content-type"), *cl;
    bool sse = ct && strncasecmp(ct, "text/event-stream", 17) == 0;
    if (x->want_aggregate && sse && status == 200) {
        /* The client gets one JSON body when the stream is done (with the
         * upstream's headers but its content-type); an error answer (not a
         * stream) passes through as it is. */
        x->mode = ANSWER_AGGREGATE;
        ccp_headers_remove(&h, "content-type");
        x->answer_headers = h;
        return 0;
    }
    if (!sse) {
        /* The body passes unchanged, so its length holds (it matters only
         * when the answer is too big to hold: a web server then notices an
         * upstream that dies mid-body by the missing bytes). */
        if ((cl = ccp_headers_get(up, "content-length"))) ccp_headers_add(&h, "Content-Length", cl);
        x->mode = ANSWER_HOLD;
        x->held_status = status ? status : 502;
        x->answer_headers = h;
        return 0;
    }
    x->mode = ANSWER_STREAM;
    ccp_headers_add(&h, "Cache-Control", "no-cache");
    ccp_headers_add(&h, "X-Accel-Buffering", "no");
    if (status >= 200 && status < 300 && may_retry(x)) {
        x->peeking = true;
        x->answer_headers = h;
        return 0;
    }
    int rc = ccp_response_begin(&x->res, status ? status : 502, &h);
    ccp_headers_free(&h);
    return rc;
}

/* The framer refused an event over MAX_SSE_EVENT_BYTES: the answer ends
 * here (the stream with the dialect's error event, an aggregate with its
 * 502), and the transfer is cancelled. */
static int sse_refused(exchange *x, int rc)
{
    if (rc != CCP_SSE_TOO_LARGE) return rc;
    refuse_limit(x, CCP_E_UPSTREAM, "MAX_SSE_EVENT_BYTES",
                 "the upstream sent an event larger than this service relays (%zu bytes, MAX_SSE_EVENT_BYTES) "
                 "without ending it; the response is incomplete",
                 x->rt->cfg->max_sse_event_bytes);
    return -1;
}

static int on_upstream_data(void *ctx, const char *p, size_t n)
{
    exchange *x = ctx;
    size_t max;
    switch (x->mode) {
    case ANSWER_STREAM:
        if (x->peeking) return peek_first_event(x, p, n);
        return sse_refused(x, ccp_sse_framer_feed(&x->framer, p, n, emit_to_client, x));
    case ANSWER_RETRY:
        return 0; /* the next upstream answers instead */
    case ANSWER_AGGREGATE:
        max = x->rt->cfg->max_aggregate_bytes;
        if (n > max - x->aggregated) {
            refuse_limit(x, CCP_E_UPSTREAM, "MAX_AGGREGATE_BYTES",
                         "the upstream stream is longer than this service folds into one JSON answer (%zu bytes, "
                         "MAX_AGGREGATE_BYTES); ask for \"stream\": true to receive it as a stream",
                         max);
            return -1;
        }
        x->aggregated += n;
        return sse_refused(x, ccp_sse_framer_feed(&x->framer, p, n, emit_to_aggregate, x));
    case ANSWER_HOLD:
        if (x->rt->cfg->environment == CCP_ENV_TEST && x->logged_response.len < x->rt->cfg->log_body_max_bytes)
            ccp_buf_append(&x->logged_response, p, n);
        if (n <= x->rt->cfg->max_hold_bytes - x->held.len) {
            ccp_buf_append(&x->held, p, n);
            return 0;
        }
        if (release_held(x, false) != 0) return -1;
        return ccp_response_write(&x->res, p, n);
    case ANSWER_PASS:
        return ccp_response_write(&x->res, p, n);
    case ANSWER_PENDING:
        break;
    }
    return 0; /* a body before headers: curl does not do that */
}

/* The held answer is complete: it goes out with its own length. */
static void answer_held(exchange *x)
{
    char cl[32];
    snprintf(cl, sizeof cl, "%zu", x->held.len);
    ccp_headers_set(&x->answer_headers, "Content-Length", cl);
    release_held(x, true);
}

/* The forced stream has ended: the client gets the one JSON body it asked for. */
static void answer_aggregate(exchange *x)
{
    ccp_sse_framer_finish_event(&x->framer, emit_to_aggregate, x);
    if (x->agg.done && x->agg.result) {
        size_t n;
        const char *body = json_object_to_json_string_length(
            x->agg.result, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
        ccp_response_send(&x->res, 200, "application/json", body, n, &x->answer_headers);
    } else if (x->agg.done) {
        ccp_buf_reset(&x->error);
        ccp_buf_append(&x->error, x->agg.error_body.data, x->agg.error_body.len);
        ccp_response_send(&x->res, x->agg.status, "application/json", x->agg.error_body.data, x->agg.error_body.len,
                          &x->answer_headers);
    } else {
        fail(x, CCP_E_UPSTREAM, NULL, "%s",
             "the upstream stream ended before its final event; the response is incomplete");
    }
}

/* ---- the request -------------------------------------------------------- */

static void finish(exchange *x);
static bool start_attempt(exchange *x);

/* How the running attempt failed, if it did before the client saw a byte;
 * after that, failures end the stream as they always did. */
static ccp_attempt_failure attempt_outcome(const exchange *x, ccp_upstream_result r)
{
    if (r == CCP_UP_CLIENT_GONE) return x->abandoned ? CCP_ATTEMPT_ERROR_EVENT : CCP_ATTEMPT_OK;
    if (x->res.headers_sent) return CCP_ATTEMPT_OK;
    switch (r) {
    case CCP_UP_UNREACHABLE: return CCP_ATTEMPT_UNREACHABLE;
    case CCP_UP_TIMEOUT: return CCP_ATTEMPT_TIMEOUT;
    case CCP_UP_BROKEN: return CCP_ATTEMPT_BROKEN;
    default: break;
    }
    if ((x->mode == ANSWER_RETRY || x->mode == ANSWER_HOLD) && ccp_attempt_retryable_status(x->held_status))
        return x->held_status == 429 ? CCP_ATTEMPT_STATUS_429 : CCP_ATTEMPT_STATUS_5XX;
    return CCP_ATTEMPT_OK;
}

/* Forgets the failed attempt's answer; the exchange is as before its start. */
static void reset_answer(exchange *x)
{
    x->mode = ANSWER_PENDING;
    x->peeking = x->abandoned = false;
    x->events_seen = 0;
    x->held_status = 0;
    x->retry_after_ms = -1;
    ccp_headers_free(&x->answer_headers);
    ccp_buf_free(&x->held);
    ccp_buf_free(&x->peek);
    ccp_buf_reset(&x->logged_response);
    ccp_sse_framer_free(&x->framer);
    x->stream_state = (ccp_stream_state){.last_seq = -1};
    json_object_put(x->agg.result);
    ccp_buf_free(&x->agg.error_body);
    memset(&x->agg, 0, sizeof x->agg);
    /* A forced stream that broke before the client saw it had its usage
     * read already; only the answer the client gets is counted. */
    ccp_usage_free(&x->usage);
    ccp_usage_init(&x->usage, x->d->usage_api);
}

/* The loop's word on the transfer: a failure before the first byte moves
 * to the next upstream; otherwise the client hears how it ended. */
static void on_upstream_done(void *ctx, ccp_upstream_result r, const ccp_upstream_stats *stats, const char *err)
{
    exchange *x = ctx;
    x->stats = *stats;
    ccp_attempt_failure failed = attempt_outcome(x, r);
    bool counted = failed != CCP_ATTEMPT_OK; /* by note_attempt_failure */
    if (failed != CCP_ATTEMPT_OK) {
        note_attempt_failure(x, x->upstream_name, failed);
        /* A dropped answer or an abandoned stream was decided on with an
         * attempt left: it must be retried, whatever the clock says now. */
        bool decided = x->mode == ANSWER_RETRY || x->abandoned;
        if (!x->res.client_gone && (decided || may_retry(x))) {
            reset_answer(x);
            if (!start_attempt(x)) finish(x);
            return;
        }
    } else if (r == CCP_UP_OK) {
        ccp_pool_succeeded(x->rt->pool, x->current);
    }
    if (r == CCP_UP_CLIENT_GONE || x->mode == ANSWER_RETRY) r = CCP_UP_CLIENT_GONE; /* nothing to tell anyone */
    switch (r) {
    case CCP_UP_OK:
        if (x->mode == ANSWER_AGGREGATE) answer_aggregate(x);
        else if (x->mode == ANSWER_STREAM && (!x->peeking || commit_stream(x) == 0))
            ccp_sse_framer_finish(&x->framer, emit_to_client, x);
        else if (x->mode == ANSWER_HOLD) answer_held(x);
        if (x->res.client_gone && !x->res.aborted) x->client_left = true;
        break;
    case CCP_UP_CLIENT_GONE:
        if (x->limit_hit) break; /* the relay cancelled it, and answered already */
        ccp_buf_reset(&x->error);
        ccp_buf_append_str(&x->error, "client disconnected; upstream transfer cancelled");
        x->client_left = true;
        /* Cut, never ended: a client still there (one that read nothing for
         * HTTP_TIMEOUT) must not see half an answer as a complete one. */
        if (x->res.headers_sent) ccp_response_abort(&x->res);
        break;
    case CCP_UP_UNREACHABLE:
        if (!counted) note_upstream_error(x, CCP_UPERR_UNREACHABLE);
        fail(x, CCP_E_UPSTREAM, NULL, "%s", err);
        break;
    case CCP_UP_TIMEOUT:
        if (!counted) note_upstream_error(x, CCP_UPERR_TIMEOUT);
        fail(x, CCP_E_TIMEOUT, NULL, "%s", err);
        break;
    case CCP_UP_BROKEN:
        if (!counted) note_upstream_error(x, CCP_UPERR_BROKEN);
        fail(x, CCP_E_UPSTREAM, NULL, "%s", err);
        break;
    }
    finish(x);
}

/* Each step of relay() either does its part and returns true, or answers
 * the client (fail) and returns false. */

static bool authenticate(exchange *x)
{
    const ccp_config *cfg = x->rt->cfg;
    if (!ccp_dialect_client_key(x->d, &x->req.headers, &x->key)) {
        fail(x, CCP_E_AUTH, NULL, "%s",
             x->d->accepts_x_api_key
                 ? "no API key: send it in the x-api-key header or as Authorization: Bearer <key>"
                 : "no API key: send it as Authorization: Bearer <key>");
        return false;
    }
    ccp_auth_fingerprint(x->key.value, x->key_fp);
    if (ccp_pool_holds_keys(x->rt->pool) && !ccp_auth_key_allowed(cfg, x->key.value)) {
        fail(x, CCP_E_AUTH, NULL, "invalid API key: this service only accepts the keys listed in its ACCESS_KEYS");
        return false;
    }
    return true;
}

static bool read_body(exchange *x, upstream_call *call)
{
    size_t max = x->rt->cfg->max_body_bytes;
    call->has_body = strcmp(x->req.method, "GET") != 0 && strcmp(x->req.method, "HEAD") != 0;
    if (!call->has_body) {
        x->body_read = true;
        return true;
    }
    ccp_request_status st = ccp_request_read_body(&x->req, max);
    x->body_read = st != CCP_REQ_TOO_LARGE; /* a refused body is drained by fail */
    if (st == CCP_REQ_TOO_LARGE) {
        fail(x, CCP_E_TOO_LARGE, NULL, "request body is larger than this service accepts (%zu bytes, MAX_BODY_BYTES)",
             max);
        return false;
    }
    if (st == CCP_REQ_SHORT_BODY) {
        fail(x, CCP_E_INVALID_REQUEST, NULL, "request body is shorter than its Content-Length (%zu of %lld bytes)",
             x->req.body.len, x->req.content_length);
        return false;
    }
    call->body = x->req.body.data;
    call->body_len = x->req.body.len;
    if (!(x->route->body_checks & CCP_BODY_JSON_OBJECT)) return true;
    return parse_body(x) && check_body(x);
}

static bool select_adapter(exchange *x)
{
    ccp_buf err = {0};
    x->adapter = ccp_adapters_select(x->rt->adapters, &x->req, x->body, &err);
    if (!x->adapter) fail(x, CCP_E_INVALID_REQUEST, NULL, "%s", err.data);
    ccp_buf_free(&err);
    return x->adapter != NULL;
}

/* The upstream headers, the adapter's steps, and the decision to answer a
 * forced stream as one JSON body. */
static bool transform(exchange *x, upstream_call *call, char *session_id)
{
    const ccp_config *cfg = x->rt->cfg;
    build_upstream_headers(x, &call->headers, call->has_body);
    if (!(x->route->body_checks & CCP_ADAPT)) return true;
    ccp_transform t = {
        .cfg = cfg,
        .req = &x->req,
        .client_key = x->key.value,
        .body = x->body,
        .upstream_headers = &call->headers,
    };
    ccp_buf err = {0};
    bool ok = ccp_adapter_apply(x->adapter, &t, &err) == CCP_OK;
    memcpy(session_id, t.session_id, sizeof t.session_id);
    if (!ok && t.over_limit) refuse_limit(x, CCP_E_TOO_LARGE, t.over_limit, "%s", err.data);
    else if (!ok) fail(x, CCP_E_INVALID_REQUEST, NULL, "%s", err.data);
    ccp_buf_free(&err);
    if (!ok) return false;
    if (x->d->aggregate_event && x->body) {
        json_object *st;
        bool now_streams = json_object_object_get_ex(x->body, "stream", &st) &&
                           json_object_is_type(st, json_type_boolean) && json_object_get_boolean(st);
        x->want_aggregate = now_streams && (t.aggregate_stream || x->stream != 1);
    }
    if (t.body_changed && x->body) {
        size_t n;
        const char *adapted = json_object_to_json_string_length(
            x->body, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
        ccp_buf_append(&x->upstream_body, adapted, n);
        call->body = x->upstream_body.data;
        call->body_len = n;
        ccp_headers_set(&call->headers, "content-type", "application/json");
        /* Test logs show what the client sent; nothing else reads it now. */
        if (cfg->environment != CCP_ENV_TEST) ccp_buf_free(&x->req.body);
    }
    return true;
}

/* The upstreams this request tries, in its rendezvous order: keyed by the
 * adapter's session id when it derived one, else by the client key's
 * fingerprint, so a conversation stays where its prompt cache is. */
static bool choose_upstreams(exchange *x, const char *session_id)
{
    const ccp_pool *pool = x->rt->pool;
    const char *key = session_id && *session_id ? session_id : x->key_fp;
    x->order_n = ccp_pool_order(pool, key, strlen(key), x->model, ccp_now_ms(), x->order, CCP_POOL_MAX);
    size_t max = (size_t)ccp_pool_max_attempts(pool);
    if (x->order_n > max) x->order_n = max;
    /* Each attempt may be silent for HTTP_TIMEOUT: the budget of all. */
    x->deadline_ms = ccp_now_ms() + (long long)(max ? max : 1) * x->rt->cfg->http_timeout_ms;
    if (x->order_n) return true;
    fail(x, CCP_E_NOT_FOUND, NULL,
         "model %s is not offered here: no upstream of this service takes it (see GET /upstreams)",
         x->model ? x->model : "(none)");
    return false;
}

/* Starts the next attempt on its upstream: URL, key and extra headers,
 * and the body with the upstream's model name. From a true return on the
 * loop owns x (and may already have finished it); false: x is answered. */
static bool start_attempt(exchange *x)
{
    x->current = x->order[x->attempts++];
    const ccp_pool_upstream *u = ccp_pool_at(x->rt->pool, x->current);
    x->upstream_name = u->name;
    /* The last attempt (the only one, for a pool of one) takes the headers
     * every attempt starts from: nothing needs them again. */
    bool last = x->attempts == x->order_n;
    ccp_attempt_headers(&x->attempt_headers, &x->call.headers, last, ccp_buf_cstr(&x->call.auth_name),
                        ccp_buf_cstr(&x->call.auth_value), x->d, u, &x->key);
    ccp_buf_reset(&x->attempt_url);
    x->d->upstream_url(&x->attempt_url, u->base_url, x->req.path, x->req.query);
    if (last) {
        ccp_buf_free(&x->call.auth_name);
        ccp_buf_free(&x->call.auth_value);
    }
    const char *body = x->call.body, *model;
    size_t body_len = x->call.body_len;
    ccp_pool_takes(u, x->model, &model);
    if (model && x->body && strcmp(model, x->model) != 0) {
        ccp_attempt_body(&x->attempt_body, x->body, x->model, model);
        body = x->attempt_body.data;
        body_len = x->attempt_body.len;
    }
    ccp_upstream_request ureq = {
        .method = x->req.method,
        .url = x->attempt_url.data,
        .headers = &x->attempt_headers,
        .body = x->call.has_body ? body : NULL,
        .body_len = x->call.has_body ? body_len : 0,
    };
    ccp_upstream_sink sink = {
        .ctx = x,
        .on_headers = on_upstream_headers,
        .on_data = on_upstream_data,
        .on_done = on_upstream_done,
        .client = x->io,
    };
    /* Counted before the start: on_done (and finish) may run inside it. */
    x->stream_open = true;
    ccp_metrics_active(x->rt->metrics, 1);
    if (ccp_upstream_start(x->up, &ureq, &sink) == CCP_OK) return true;
    x->stream_open = false;
    ccp_metrics_active(x->rt->metrics, -1);
    fail(x, CCP_E_UNAVAILABLE, NULL, "%s", "the service is shutting down; retry on another instance");
    return false;
}

/* Hands the request to the pool's first upstream; from a true return on,
 * the loop owns x (and may already have finished it). */
static bool start_transfer(exchange *x, const char *session_id)
{
    if (!choose_upstreams(x, session_id)) return false;
    /* An open stream keeps only the bytes it sends: the tree is most of a
     * request's memory, and thousands of streams may be open. Only a pool
     * that renames models keeps it until the stream commits. */
    if (!ccp_pool_maps_models(x->rt->pool)) {
        json_object_put(x->body);
        x->body = NULL;
    }
    return start_attempt(x);
}

/* A relayed request, as the list of its steps. True when the transfer went
 * to the loop (which then owns x), false when x is answered already. */
static bool relay(exchange *x)
{
    char session_id[sizeof ((ccp_transform *)0)->session_id] = "";
    return authenticate(x) && read_body(x, &x->call) && select_adapter(x) && transform(x, &x->call, session_id) &&
           start_transfer(x, session_id);
}

/* GET /metrics: the whole service's counters, to METRICS_ALLOW only (they
 * name models and clients). */
static void serve_metrics(exchange *x)
{
    if (!x->body_read) ccp_request_drain(&x->req);
    x->body_read = true;
    if (!ccp_netlist_allows(&x->rt->cfg->metrics_allow, x->remote_addr)) {
        fail(x, CCP_E_FORBIDDEN, NULL,
             "GET /metrics is served only to the addresses in METRICS_ALLOW; %s is not one of them",
             x->remote_addr[0] ? x->remote_addr : "this client (no REMOTE_ADDR)");
        return;
    }
    ccp_buf out = {0};
    ccp_metrics_render(x->rt->metrics, &out);
    ccp_response_send(&x->res, 200, "text/plain; version=0.0.4", out.data, out.len, NULL);
    ccp_buf_free(&out);
}

static void serve_local(exchange *x)
{
    if (x->route->kind == CCP_ROUTE_METRICS) {
        serve_metrics(x);
        return;
    }
    ccp_buf out = {0};
    switch (x->route->kind) {
    case CCP_ROUTE_HEALTH:
        ccp_buf_printf(&out, "{\"status\":\"healthy\",\"service\":\"%s\"}", x->rt->service->name);
        break;
    case CCP_ROUTE_ADAPTERS:
        ccp_adapters_describe(x->rt->adapters, &out);
        break;
    case CCP_ROUTE_UPSTREAMS:
        ccp_pool_describe(x->rt->pool, ccp_now_ms(), &out);
        break;
    default:
        ccp_buf_append_str(&out, x->route->static_body ? x->route->static_body : "{}");
        break;
    }
    if (!x->body_read) ccp_request_drain(&x->req);
    x->body_read = true;
    if (strcmp(x->req.method, "HEAD") == 0) {
        /* Headers only, with the length a GET would have. */
        char cl[32];
        snprintf(cl, sizeof cl, "%zu", out.len);
        ccp_headers h = {0};
        ccp_headers_add(&h, "Content-Type", "application/json");
        ccp_headers_add(&h, "Content-Length", cl);
        ccp_response_begin(&x->res, 200, &h);
        ccp_headers_free(&h);
    } else {
        ccp_response_send(&x->res, 200, "application/json", out.data, out.len, NULL);
    }
    ccp_buf_free(&out);
}

/* Past the service's ceiling of requests at once, a relayed request gets a
 * fast 503 with Retry-After, never a silent wait; the log names the limit. */
static bool refuse_over_limit(exchange *x)
{
    const ccp_runtime *rt = x->rt;
    char msg[256];
    const char *limit = rt->over_limit ? rt->over_limit(rt->limit_ctx, msg, sizeof msg) : NULL;
    if (!limit) return false;
    ccp_headers h = {0};
    ccp_headers_add(&h, "Retry-After", "1");
    fail(x, CCP_E_UNAVAILABLE, &h, "%s", msg);
    ccp_headers_free(&h);
    ccp_log_event(CCP_LOG_WARNING, "limit_reached", "refused %s %s with 503: %s", x->req.method, x->req.path, limit);
    return true;
}

/* True when the request went to the loop (which then owns x). */
static bool route_request(exchange *x)
{
    const ccp_service *s = x->rt->service;
    ccp_buf allow = {0};
    x->route = find_route(s, x->req.method, x->req.path, &allow);
    if (strcmp(x->req.method, "OPTIONS") == 0) {
        if (allow.len) preflight(x, allow.data);
        else fail(x, CCP_E_NOT_FOUND, NULL, "no route for %s; see GET /health and the README for the routes",
                  x->req.path);
    } else if (x->d->websocket_refusal && ccp_request_is_websocket(&x->req) && relay_path(s, x->req.path)) {
        /* A WebSocket handshake on an API path (the Responses API's is GET on
         * the POST route): 426, never relayed, whatever the method. */
        fail(x, CCP_E_UPGRADE, NULL, "%s", x->d->websocket_refusal);
    } else if (!x->route && allow.len) {
        ccp_headers h = {0};
        ccp_headers_add(&h, "Allow", allow.data);
        fail(x, CCP_E_METHOD, &h, "method %s is not allowed on %s; use %s", x->req.method, x->req.path, allow.data);
        ccp_headers_free(&h);
    } else if (!x->route) {
        fail(x, CCP_E_NOT_FOUND, NULL, "no route for %s %s; this service serves /v1/... API paths%s%s",
             x->req.method, x->req.path, *x->rt->cfg->base_path ? " under " : "", x->rt->cfg->base_path);
    } else if (x->req.bad_part) {
        fail(x, CCP_E_INVALID_REQUEST, NULL, "%s has a line break (CR or LF) or a NUL byte; nothing was forwarded",
             x->req.bad_part);
    } else if (x->req.bad_header) {
        fail(x, CCP_E_INVALID_REQUEST, NULL, "header %s has a line break in its value; header values must be one line",
             x->req.bad_header);
    } else if (x->route->kind == CCP_ROUTE_RELAY && refuse_over_limit(x)) {
        /* answered: local routes (health, adapters) stay served at the limit */
    } else if (x->route->kind == CCP_ROUTE_RELAY) {
        ccp_buf_free(&allow);
        return relay(x);
    } else {
        serve_local(x);
    }
    ccp_buf_free(&allow);
    return false;
}

/* The exchange into the service's counters, once, at its end. */
static void count_exchange(exchange *x, long long duration_ns, int status)
{
    ccp_metrics *m = x->rt->metrics;
    if (!m) return;
    const ccp_service *s = x->rt->service;
    int route = x->route ? (int)(x->route - s->routes) : -1;
    ccp_metrics_request(m, route, ccp_metrics_adapter(m, x->adapter ? ccp_adapter_name(x->adapter) : NULL), status,
                        duration_ns);
    int upstream = ccp_metrics_upstream(m, exchange_upstream_name(x));
    if (x->stats.ttfb_ms >= 0) ccp_metrics_ttfb(m, upstream, (long long)(x->stats.ttfb_ms * 1e6));
    if (x->usage.seen) ccp_metrics_tokens(m, ccp_metrics_model(m, x->model), &x->usage);
    if (x->usage.error_event && !x->error_event_counted) note_upstream_error(x, CCP_UPERR_ERROR_EVENT);
    if (x->client_left) ccp_metrics_client_disconnect(m);
    if (x->stream_open) ccp_metrics_active(m, -1);
}

static void log_exchange(exchange *x)
{
    long long duration_ns = ccp_now_ns() - x->start_ns;
    double ms = (double)duration_ns / 1e6;
    count_exchange(x, duration_ns, x->client_left ? 499 : x->res.status);
    ccp_request_log l = {
        .adapter = x->adapter ? ccp_adapter_name(x->adapter) : NULL,
        .method = x->req.method,
        .path = x->req.path,
        .model = x->model,
        .stream = x->body_parsed ? x->stream : -1,
        .message_count = x->message_count,
        .user_agent = ccp_request_header(&x->req, "user-agent"),
        .status = x->client_left ? 499 : x->res.status,
        .duration_ms = ms,
        .ttfb_ms = x->stats.ttfb_ms,
        .bytes_out = x->res.bytes_out,
        .key_fp = x->key_fp[0] ? x->key_fp : NULL,
        .error = x->error.len ? x->error.data : NULL,
        .upstream = x->upstream_name,
        .attempts = (int)x->attempts,
        .failover = x->failover.len ? x->failover.data : NULL,
        .request_body = x->req.body.data,
        .request_body_len = x->req.body.len,
        .response_body = x->logged_response.data,
        .response_body_len = x->logged_response.len,
        .request_id = x->request_id,
        .upstream_request_id = x->upstream_request_id[0] ? x->upstream_request_id : NULL,
        .bytes_in = x->stats.bytes_in,
        .usage = x->usage.seen ? &x->usage : NULL,
    };
    ccp_log_request(&l);
}

/* The one end of every exchange: log it, free it, and hand the transport
 * back (it delivers what the client has not taken yet). */
static void finish(exchange *x)
{
    log_exchange(x);
    ccp_io *io = x->io;
    json_object_put(x->body);
    ccp_buf_free(&x->upstream_body);
    free(x->model);
    ccp_sse_framer_free(&x->framer);
    ccp_sse_event_free(&x->event);
    json_object_put(x->agg.result);
    ccp_headers_free(&x->answer_headers);
    ccp_buf_free(&x->held);
    ccp_buf_free(&x->agg.error_body);
    ccp_buf_free(&x->logged_response);
    ccp_buf_free(&x->error);
    ccp_headers_free(&x->cors);
    ccp_headers_free(&x->call.headers);
    ccp_buf_free(&x->call.auth_name);
    ccp_buf_free(&x->call.auth_value);
    ccp_headers_free(&x->attempt_headers);
    ccp_buf_free(&x->attempt_url);
    ccp_buf_free(&x->attempt_body);
    ccp_buf_free(&x->peek);
    ccp_buf_free(&x->failover);
    ccp_usage_free(&x->usage);
    ccp_request_free(&x->req);
    free(x);
    ccp_io_finish(io);
}

/* The id every response of the exchange carries: a trusted front's own
 * (TRUST_REQUEST_ID) when it is a sane token, else a fresh one. */
static void assign_request_id(exchange *x)
{
    const char *given = x->rt->cfg->trust_request_id ? ccp_request_header(&x->req, "x-request-id") : NULL;
    if (given && ccp_reqid_acceptable(given)) snprintf(x->request_id, sizeof x->request_id, "%s", given);
    else ccp_reqid_new(x->request_id);
    ccp_headers_add(&x->cors, "x-ccproxy-request-id", x->request_id);
    x->res.extra = &x->cors;
}

static exchange *exchange_new(const ccp_runtime *rt, ccp_upstream *up, ccp_io *io, ccp_request_status *st)
{
    exchange *x = ccp_xcalloc(1, sizeof *x);
    x->rt = rt;
    x->d = rt->service->dialect;
    x->up = up;
    x->io = io;
    x->message_count = -1;
    x->stream = -1;
    x->stream_state.last_seq = -1;
    x->stats.ttfb_ms = -1;
    x->retry_after_ms = -1;
    x->start_ns = ccp_now_ns();
    ccp_usage_init(&x->usage, x->d->usage_api);
    ccp_response_init(&x->res, io);
    const char *addr = io->envp ? ccp_http_param(io->envp, "REMOTE_ADDR") : NULL;
    if (addr) snprintf(x->remote_addr, sizeof x->remote_addr, "%s", addr);
    ccp_header_limits lim = {rt->cfg->max_header_count, rt->cfg->max_header_bytes, rt->cfg->max_header_total_bytes};
    *st = ccp_request_init(&x->req, io, rt->cfg->base_path, &lim);
    x->framer.max_event = rt->cfg->max_sse_event_bytes;
    assign_request_id(x);
    cors_headers(x);
    return x;
}

/* Headers over a limit: 431, before anything else is looked at. */
static void refuse_headers(exchange *x)
{
    const ccp_request *r = &x->req;
    const ccp_config *cfg = x->rt->cfg;
    const char *limit = r->over_limit;
    if (strcmp(limit, "MAX_HEADER_COUNT") == 0)
        refuse_limit(x, CCP_E_HEADERS_TOO_LARGE, limit,
                     "the request has more headers than this service accepts (%zu, MAX_HEADER_COUNT)",
                     cfg->max_header_count);
    else if (strcmp(limit, "MAX_HEADER_BYTES") == 0)
        refuse_limit(x, CCP_E_HEADERS_TOO_LARGE, limit,
                     "header %.64s is larger than this service accepts (%zu bytes with its name; at most %zu, "
                     "MAX_HEADER_BYTES)",
                     r->over_header, r->over_amount, cfg->max_header_bytes);
    else
        refuse_limit(x, CCP_E_HEADERS_TOO_LARGE, limit,
                     "the request's headers are larger together than this service accepts (over %zu bytes, "
                     "MAX_HEADER_TOTAL_BYTES)",
                     cfg->max_header_total_bytes);
}

void ccp_relay_serve(const ccp_runtime *rt, ccp_upstream *up, ccp_io *io)
{
    ccp_request_status st;
    exchange *x = exchange_new(rt, up, io, &st);
    if (st == CCP_REQ_HEADERS_TOO_LARGE)
        refuse_headers(x);
    else if (st == CCP_REQ_NOT_FOUND)
        fail(x, CCP_E_NOT_FOUND, NULL, "no route for %s; this service is mounted under %s", x->req.path,
             rt->cfg->base_path);
    else if (st != CCP_REQ_OK)
        fail(x, CCP_E_INVALID_REQUEST, NULL, "%s", "the request line or Content-Length is malformed");
    else if (route_request(x))
        return;
    finish(x);
}

