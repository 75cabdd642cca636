/* attempt: the parts of one upstream attempt that do not depend on the
 * exchange: how an attempt failed (the names the log's "failover", the
 * cool-down and metrics use), which answers another upstream may retry,
 * what the upstream asked for (retry-after), whether a stream opens with an
 * error event, and the headers and body an attempt sends to its upstream.
 *
 * The retry loop itself (when an attempt may start, the commit point at the
 * client's first byte) is the relay's: see relay.c, "attempts". Everything
 * here is a pure function of its arguments. */
#ifndef CCP_ATTEMPT_H
#define CCP_ATTEMPT_H

#include <json-c/json.h>
#include <stdbool.h>

#include "buf.h"
#include "dialect.h"
#include "http.h"
#include "metrics.h"
#include "pool.h"
#include "sse.h"

/* How an attempt failed before the client saw a byte: OK, or one of the
 * kinds ccproxy_upstream_errors_total counts, in the same order (one up),
 * so the metrics kind and the name are derived, never kept twice. */
typedef enum {
    CCP_ATTEMPT_OK,
    CCP_ATTEMPT_UNREACHABLE, /* connect, DNS, TLS, or closed without a response */
    CCP_ATTEMPT_TIMEOUT,     /* silent past HTTP_TIMEOUT before the answer began */
    CCP_ATTEMPT_BROKEN,      /* failed mid-answer, before anything went to the client */
    CCP_ATTEMPT_STATUS_5XX,  /* 500-599 (529 overloaded among them) */
    CCP_ATTEMPT_STATUS_429,
    CCP_ATTEMPT_ERROR_EVENT, /* a 2xx stream whose first event is an error */
    CCP_ATTEMPT_KINDS
} ccp_attempt_failure;

/* "ok", then the metrics kind's name: "unreachable", "timeout", "broken",
 * "status_5xx", "status_429", "error_event"; "unknown" out of range. */
const char *ccp_attempt_failure_name(ccp_attempt_failure kind);

/* The metrics kind of a failure (kind is not CCP_ATTEMPT_OK). */
ccp_upstream_error_kind ccp_attempt_error_kind(ccp_attempt_failure kind);

/* A status another upstream may answer instead: 5xx (529 among them), 429. */
bool ccp_attempt_retryable_status(int status);

/* ms the upstream asked to be left alone: retry-after-ms, else retry-after
 * in seconds (an HTTP date is not honoured); -1 when neither is usable. */
long long ccp_attempt_retry_after(const ccp_headers *h);

/* Both dialects' error events: Anthropic's "error", the Responses API's
 * "error" and "response.failed" (by event name, or by the data's type). */
bool ccp_attempt_is_error_event(const ccp_sse_event *ev);

/* An attempt's headers into out (replaced): base as the steps left it, with
 * the key header the relay placed (auth_name: auth_value, the client's key)
 * replaced in place by u's key, or by the client's key in u's auth style,
 * and u's extra headers set. A key header a step changed stays as it is.
 * take_base: the last attempt; base's lines move into out (base is left
 * empty) instead of being copied, since no attempt needs them again. */
void ccp_attempt_headers(ccp_headers *out, ccp_headers *base, bool take_base, const char *auth_name,
                         const char *auth_value, const ccp_dialect *d, const ccp_pool_upstream *u,
                         const ccp_client_key *client);

/* The request body with "model" set to upstream_model, serialised into out
 * (replaced); body itself is left as it was. */
void ccp_attempt_body(ccp_buf *out, json_object *body, const char *client_model, const char *upstream_model);

#endif
