/* libFuzzer target: an upstream SSE stream as any bytes, arriving in
 * arbitrary pieces. The first bytes choose the piece sizes (one byte each,
 * until a 0 byte ends the list; sizes repeat cyclically); the rest is the
 * stream. It goes through the framer (ccp_sse_framer_feed, then finish or
 * finish_event) and every emitted chunk through the event parser
 * (ccp_sse_next_event), as the relay does. The framer's bound on an
 * incomplete event (max_event) is 1024 + 8 times the first piece size.
 * Invariants: every chunk fed emits only whole events (it ends at an event
 * boundary); the tail held never passes max_event; a feed refused with
 * CCP_SSE_TOO_LARGE dropped an incomplete event longer than max_event, holds
 * nothing, and every later call is refused too; what goes out is
 * byte-identical to what came in (up to a refusal); the event parser
 * consumes within its region and its events' bytes are the region's own. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/buf.h"
#include "../../common/sse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct sink {
    ccp_buf out;   /* every byte emitted */
    ccp_sse_event ev;
    size_t events;
    bool finishing; /* finish(): the tail may end anywhere */
} sink;

static int emit(void *ctx, const char *p, size_t n)
{
    sink *s = ctx;
    if (n == 0) return 0;
    if (!s->finishing && ccp_sse_last_boundary(p, n) != n) abort();
    ccp_buf_append(&s->out, p, n);
    size_t off = 0;
    while (off < n) {
        size_t used = ccp_sse_next_event(p + off, n - off, &s->ev);
        if (used == 0) break;
        if (used > n - off) abort();
        if (s->ev.raw != p + off || s->ev.raw_len != used) abort();
        if (s->ev.has_data && s->ev.data.len > used) abort();
        s->events++;
        off += used;
    }
    /* A chunk that ends at a boundary is whole events, nothing left over. */
    if (!s->finishing && off != n) abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t sizes[16], nsizes = 0, i = 0;
    while (i < size && nsizes < 16) {
        uint8_t b = data[i++];
        if (b == 0) break;
        sizes[nsizes++] = b;
    }
    if (nsizes == 0) sizes[nsizes++] = 64;
    bool as_events = i < size && (data[i] & 1); /* how the stream ends */
    const char *stream = (const char *)data + i;
    size_t len = size - i;

    ccp_sse_framer f;
    memset(&f, 0, sizeof f);
    f.max_event = 1024 + 8 * sizes[0];
    sink s;
    memset(&s, 0, sizeof s);
    size_t off = 0, k = 0;
    while (off < len) {
        size_t n = sizes[k++ % nsizes];
        if (n > len - off) n = len - off;
        int rc = ccp_sse_framer_feed(&f, stream + off, n, emit, &s);
        off += n;
        if (rc == CCP_SSE_TOO_LARGE) {
            if (ccp_sse_framer_pending(&f) != 0 || off - s.out.len <= f.max_event) abort();
            if (memcmp(s.out.data ? s.out.data : "", stream, s.out.len) != 0 && s.out.len) abort();
            size_t out = s.out.len;
            if (ccp_sse_framer_feed(&f, "\n\n", 2, emit, &s) != CCP_SSE_TOO_LARGE) abort();
            if (ccp_sse_framer_finish_event(&f, emit, &s) != CCP_SSE_TOO_LARGE || s.out.len != out) abort();
            goto done;
        }
        if (rc != 0) abort();
        if (ccp_sse_framer_pending(&f) > f.max_event) abort();
        if (s.out.len + ccp_sse_framer_pending(&f) != off) abort();
    }
    s.finishing = true;
    size_t before = s.out.len, pending = ccp_sse_framer_pending(&f);
    int rc = as_events ? ccp_sse_framer_finish_event(&f, emit, &s) : ccp_sse_framer_finish(&f, emit, &s);
    if (rc != 0) abort();
    if (ccp_sse_framer_pending(&f) != 0) abort();
    /* finish passes the tail as it is; finish_event may add a boundary. */
    if (!as_events && s.out.len != len) abort();
    if (as_events && (s.out.len < before + pending || s.out.len > len + 2)) abort();
    if (memcmp(s.out.data ? s.out.data : "", stream, len) != 0 && len) abort();

done:
    ccp_sse_framer_free(&f);
    ccp_sse_event_free(&s.ev);
    ccp_buf_free(&s.out);
    return 0;
}
