/* relay: one request from start to end: route, authenticate, read and check
 * the body, pick and apply the adapter, forward, stream the answer back,
 * and the single finish path that decides what the client sees on failure
 * (a JSON error if no header went out yet, else the dialect's SSE error
 * event, or for a non-stream answer too big to hold a cut-off response). A service is a route table plus a dialect; the binaries only
 * declare theirs. */
#ifndef CCP_RELAY_H
#define CCP_RELAY_H

#include "adapter.h"
#include "config.h"
#include "dialect.h"
#include "http.h"
#include "pool.h"
#include "metrics.h"
#include "upstream.h"

typedef enum {
    CCP_ROUTE_RELAY,    /* forward upstream */
    CCP_ROUTE_HEALTH,   /* {"status":"healthy","service":...} */
    CCP_ROUTE_ADAPTERS, /* the adapter table */
    CCP_ROUTE_UPSTREAMS, /* the upstream pool and its state */
    CCP_ROUTE_STATIC,   /* a fixed JSON body */
    CCP_ROUTE_METRICS,  /* Prometheus text, to METRICS_ALLOW only */
} ccp_route_kind;

/* Body checks a relay route asks for before forwarding. */
enum {
    CCP_BODY_NONE = 0,
    CCP_BODY_JSON_OBJECT = 1 << 0,
    CCP_BODY_MODEL = 1 << 1,          /* "model": non-empty string */
    CCP_BODY_MESSAGES_ARRAY = 1 << 2, /* "messages": array */
    /* The adapter's steps run on this route (the generation endpoint);
     * elsewhere the request is relayed as sent. */
    CCP_ADAPT = 1 << 3,
};

typedef struct ccp_route {
    const char *method;  /* "GET" or "POST" */
    const char *pattern; /* exact path; a trailing slash-star matches one id segment */
    ccp_route_kind kind;
    unsigned body_checks;
    const char *static_body;
} ccp_route;

/* A service's whole identity: its names, its API, its routes and its
 * variables (common/services.c declares both; the binaries only pick one). */
typedef struct ccp_service {
    const char *name;         /* "claude-service" */
    const char *program;      /* "ccproxy-claude" */
    const char *adapter_set;  /* section of the adapters file: "claude" */
    const ccp_dialect *dialect;
    const ccp_route *routes;
    size_t route_count;
    ccp_config_names config_names; /* ANTHROPIC_BASE_URL, CLAUDE_SERVICE_PORT, ... */
} ccp_service;

extern const ccp_service ccp_service_claude;
extern const ccp_service ccp_service_codex;

/* What every worker shares (read-only after start-up). */
typedef struct ccp_runtime {
    const ccp_service *service;
    const ccp_config *cfg;
    const ccp_adapters *adapters;
    const ccp_pool *pool; /* the service's upstreams; never NULL */
    /* NULL, or asked before a request is relayed: the name of the limit
     * the service is at (msg then says so to the client), or NULL. */
    const char *(*over_limit)(void *ctx, char *msg, size_t n);
    void *limit_ctx;
    /* The service's shared counters; NULL records nothing. */
    ccp_metrics *metrics;
} ccp_runtime;

/* Serves one request on io, on the thread of up's loop. Returns once the
 * request is answered or its transfer is running on up; the exchange ends
 * with ccp_io_finish(io), which may come before this returns. */
void ccp_relay_serve(const ccp_runtime *rt, ccp_upstream *up, ccp_io *io);


/* Exposed for tests: does path match pattern? */
bool ccp_route_matches(const char *pattern, const char *path);

#endif
