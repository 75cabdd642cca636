/* metrics: the service's counters, shared by every process of the service
 * on this host, and their Prometheus text exposition (format 0.0.4).
 *
 * The counters live in one file-backed shared segment (METRICS_FILE, by
 * default /dev/shm/<program>-<hash of the listen socket>.metrics)
 * that each process of the service maps at start-up. The segment holds the
 * label tables (models, adapters, upstreams, request series), each bounded
 * (a value past the bound counts as "other"), and one slot of counters per
 * process. A process claims a slot once (under flock(2), start-up only) and
 * from then on only adds to its own slot with relaxed atomic adds: no lock
 * on the hot path, and a scrape (any process) sums every slot. A process
 * that dies keeps its slot and its counts, so counters never go backwards
 * while the service runs; a restarted process takes over a dead one's slot
 * and adds to the counts that are there. Gauges (active streams) count only
 * the slots of live processes.
 *
 * Label values: only names that are short (< CCP_METRICS_NAME_MAX) and made
 * of [A-Za-z0-9._:/@+-]; anything else counts as "other", so no value
 * needs escaping and no key can become a label.
 *
 * Threads: every function may be called from any thread; a NULL handle
 * records nothing (a test runtime without metrics). */
#ifndef CCP_METRICS_H
#define CCP_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "usage.h"

#define CCP_METRICS_MODELS 100
#define CCP_METRICS_ADAPTERS 32
#define CCP_METRICS_UPSTREAMS 16
#define CCP_METRICS_ROUTES 32
#define CCP_METRICS_SERIES 512
#define CCP_METRICS_SLOTS 64
#define CCP_METRICS_NAME_MAX 64

typedef struct ccp_metrics ccp_metrics;

/* Upstream failures, as ccproxy_upstream_errors_total's kind label. */
typedef enum {
    CCP_UPERR_UNREACHABLE,
    CCP_UPERR_TIMEOUT,
    CCP_UPERR_BROKEN,
    CCP_UPERR_STATUS_5XX,
    CCP_UPERR_STATUS_429,
    CCP_UPERR_ERROR_EVENT,
    CCP_UPERR_KINDS
} ccp_upstream_error_kind;

const char *ccp_upstream_error_name(ccp_upstream_error_kind k);

/* Maps (creating it if needed) the segment at path, or a private one when
 * path is NULL (plain CGI: one process, one request). service is the
 * service label; routes the route patterns of the service (the route label
 * is routes[i], merged by equal text; at most CCP_METRICS_ROUTES).
 * CCP_ERR with the reason in err; *out is NULL then. */
int ccp_metrics_open(ccp_metrics **out, const char *path, const char *service, const char *version,
                     const char *const *routes, size_t route_count, ccp_buf *err);
/* The process is done with its slot (its counts stay). The last live
 * process of the service removes the file. */
void ccp_metrics_close(ccp_metrics *m);

/* Label ids, each bounded by its table (past it: the table's "other"). */
int ccp_metrics_model(ccp_metrics *m, const char *name);
int ccp_metrics_adapter(ccp_metrics *m, const char *name); /* NULL: "none" */
int ccp_metrics_upstream(ccp_metrics *m, const char *name);

/* One finished exchange. route: an index into the routes given to open,
 * or -1 for none. */
void ccp_metrics_request(ccp_metrics *m, int route, int adapter, int status, long long duration_ns);
void ccp_metrics_ttfb(ccp_metrics *m, int upstream, long long ttfb_ns);
void ccp_metrics_tokens(ccp_metrics *m, int model, const ccp_usage *u);
void ccp_metrics_upstream_error(ccp_metrics *m, int upstream, ccp_upstream_error_kind kind);
void ccp_metrics_client_disconnect(ccp_metrics *m);
/* delta +1 when a stream opens, -1 when it ends. */
void ccp_metrics_active(ccp_metrics *m, int delta);

/* The whole service's metrics as Prometheus text into out. */
void ccp_metrics_render(ccp_metrics *m, ccp_buf *out);

/* The default segment path for a service whose FastCGI listen socket is
 * fd: /dev/shm/<program>-<hash>.metrics, the hash over the socket's
 * address (a unix path without lighttpd's "-<n>" per-process suffix, or
 * the TCP address and port), so that all processes on one socket, and all
 * that lighttpd spawns for one socket name, share it. CCP_ERR when fd is
 * not a socket. */
int ccp_metrics_default_path(int fd, const char *program, ccp_buf *out);

#endif
