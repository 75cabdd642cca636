/* sse: Server-Sent Events helpers.
 *
 * The framer passes a stream through in whole events: bytes up to the last
 * event boundary (a blank line) go out at once, an incomplete tail waits for
 * the bytes that complete it. A client therefore never holds half an event,
 * and when the upstream dies mid-event the relay can end the stream with a
 * well-formed error event. Complete events are never delayed.
 *
 * The tail is bounded: an incomplete event is held up to max_event bytes
 * (MAX_SSE_EVENT_BYTES); one that grows past it is dropped and feed says
 * CCP_SSE_TOO_LARGE, then and on every later feed, so an upstream that
 * never ends an event cannot grow a buffer without bound. Each feed looks
 * for a boundary in the new bytes only (and the three before them), so a
 * long event costs time in its length, not in its length squared. */
#ifndef CCP_SSE_H
#define CCP_SSE_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

/* max_event when a framer is left zeroed: MAX_SSE_EVENT_BYTES' default. */
#define CCP_SSE_DEFAULT_MAX_EVENT ((size_t)16 << 20)
/* ccp_sse_framer_feed: an incomplete event passed max_event bytes. */
#define CCP_SSE_TOO_LARGE (-2)

typedef int (*ccp_sse_emit_fn)(void *ctx, const char *p, size_t n);

typedef struct ccp_sse_framer {
    ccp_buf tail;     /* bytes after the last boundary seen */
    size_t max_event; /* most bytes held as an incomplete event; 0: the default */
    bool over;        /* an event passed max_event: nothing more is framed */
} ccp_sse_framer;

/* Feeds a chunk; emits every complete event. Returns what emit returned
 * (0, or -1 when the client is gone), else CCP_SSE_TOO_LARGE once the
 * incomplete event passed max_event (the complete events before it were
 * emitted; its bytes are dropped). */
int ccp_sse_framer_feed(ccp_sse_framer *f, const char *p, size_t n, ccp_sse_emit_fn emit, void *ctx);
/* At a clean end of stream: emits the tail as it is. */
int ccp_sse_framer_finish(ccp_sse_framer *f, ccp_sse_emit_fn emit, void *ctx);
/* At a clean end of stream, for a reader of events rather than bytes: a
 * tail is the last event without its blank line; it is completed and
 * emitted as an event. */
int ccp_sse_framer_finish_event(ccp_sse_framer *f, ccp_sse_emit_fn emit, void *ctx);
/* Bytes held back (an incomplete event). */
size_t ccp_sse_framer_pending(const ccp_sse_framer *f);
/* Drops what is held; the framer is as new (its max_event kept) and may be
 * fed again: a retried attempt's answer starts from it. */
void ccp_sse_framer_free(ccp_sse_framer *f);

/* Offset just past the last event boundary in p[0..n), or 0 if none. */
size_t ccp_sse_last_boundary(const char *p, size_t n);


/* One parsed event of a region that ends at an event boundary. */
typedef struct ccp_sse_event {
    const char *raw; /* the event's bytes, boundary included */
    size_t raw_len;
    ccp_buf name;    /* "message" when the event has no "event:" line */
    ccp_buf data;    /* data lines joined with '\n' */
    bool has_data;
} ccp_sse_event;

/* Parses the next complete event from p[0..n). Returns the bytes consumed
 * (0 when p holds no complete event). Comment-only blocks come back with
 * has_data false and an empty name. ev's buffers are reused across calls;
 * free them with ccp_sse_event_free. */
size_t ccp_sse_next_event(const char *p, size_t n, ccp_sse_event *ev);
void ccp_sse_event_free(ccp_sse_event *ev);

#endif
