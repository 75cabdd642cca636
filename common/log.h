/* log: one line per event on stderr, JSON (default) or console.
 *
 * Each line is written with a single write(2) so lines from concurrent
 * threads never interleave; a thread that batches (an event loop) writes
 * its round's lines with one write(2) of at most PIPE_BUF bytes, whole
 * lines only. A line is written by the time ccp_log_flush returns. Keys never reach this module: callers pass a
 * fingerprint. Bodies are only logged when the configuration says test. */
#ifndef CCP_LOG_H
#define CCP_LOG_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "usage.h"

void ccp_log_init(const ccp_config *cfg, const char *service);

/* A free-form event: start-up, shutdown, configuration problems. */
void ccp_log_event(ccp_log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A start-up event whose extra members are JSON members (no braces). */
void ccp_log_event_json(ccp_log_level level, const char *event, const char *json_members);

typedef struct ccp_request_log {
    const char *adapter;
    const char *method;
    const char *path;
    const char *model;      /* NULL when unknown */
    int stream;             /* -1 unknown, 0, 1 */
    int message_count;      /* -1 unknown */
    const char *user_agent;
    int status;
    double duration_ms;
    double ttfb_ms;         /* < 0: no upstream byte */
    size_t bytes_out;
    const char *key_fp;     /* NULL: no key */
    const char *error;      /* NULL: none */
    const char *upstream;   /* the pool's upstream that answered (or failed last); NULL: none tried */
    int attempts;           /* upstreams tried */
    const char *failover;   /* "a: 529, b: timeout": the attempts that failed; NULL: none */
    const char *request_body;   /* only logged when ENVIRONMENT=test */
    size_t request_body_len;
    const char *response_body;  /* only logged when ENVIRONMENT=test */
    size_t response_body_len;
    const char *request_id;          /* x-ccproxy-request-id; NULL: none */
    const char *upstream_request_id; /* the upstream's request-id / x-request-id; NULL: none */
    size_t bytes_in;                 /* body bytes from the upstream */
    const ccp_usage *usage;          /* NULL: the upstream reported none */
} ccp_request_log;

void ccp_log_request(const ccp_request_log *r);

bool ccp_log_enabled(ccp_log_level level);

/* Batching, for the calling thread only: on, its lines wait in a buffer
 * (up to PIPE_BUF) until ccp_log_flush; off flushes, gives back the
 * thread's buffers, and writes each line at once again (the default: the
 * main thread, CGI, tests). A thread that turned it on turns it off before
 * it ends. */
void ccp_log_batch(bool on);
void ccp_log_flush(void);

#endif
