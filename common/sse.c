#include "sse.h"

#include <string.h>

size_t ccp_sse_last_boundary(const char *p, size_t n)
{
    /* A boundary is a line end followed by an empty line: "\n\n", "\n\r\n",
     * "\r\r" (SSE allows CR alone as a line end). */
    for (size_t i = n; i >= 2; i--) {
        char a = p[i - 2], b = p[i - 1];
        if (b == '\n' && a == '\n') return i;
        if (b == '\n' && a == '\r' && i >= 3 && p[i - 3] == '\n') return i;
        if (b == '\r' && a == '\r' && (i == n || p[i] != '\n')) return i;
    }
    return 0;
}

int ccp_sse_framer_feed(ccp_sse_framer *f, const char *p, size_t n, ccp_sse_emit_fn emit, void *ctx)
{
    if (f->tail.len == 0) {
        /* Common case: no carry-over, so no copy of the complete part. */
        size_t cut = ccp_sse_last_boundary(p, n);
        if (cut && emit(ctx, p, cut) != 0) return -1;
        if (cut < n) ccp_buf_append(&f->tail, p + cut, n - cut);
        return 0;
    }
    ccp_buf_append(&f->tail, p, n);
    size_t cut = ccp_sse_last_boundary(f->tail.data, f->tail.len);
    /* Not SSE after all, or one giant event: stop holding it back. */
    if (!cut && f->tail.len > CCP_SSE_MAX_HELD) cut = f->tail.len;
    if (!cut) return 0;
    int rc = emit(ctx, f->tail.data, cut);
    memmove(f->tail.data, f->tail.data + cut, f->tail.len - cut);
    f->tail.len -= cut;
    f->tail.data[f->tail.len] = '\0';
    return rc;
}

int ccp_sse_framer_finish(ccp_sse_framer *f, ccp_sse_emit_fn emit, void *ctx)
{
    int rc = 0;
    if (f->tail.len) rc = emit(ctx, f->tail.data, f->tail.len);
    ccp_buf_reset(&f->tail);
    return rc;
}

size_t ccp_sse_framer_pending(const ccp_sse_framer *f)
{
    return f->tail.len;
}

void ccp_sse_framer_free(ccp_sse_framer *f)
{
    ccp_buf_free(&f->tail);
}
