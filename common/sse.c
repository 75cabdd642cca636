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
        if (b == '\r' && a == '\r') return i < n && p[i] == '\n' ? i + 1 : i;
    }
    return 0;
}

static size_t max_event(const ccp_sse_framer *f)
{
    return f->max_event ? f->max_event : CCP_SSE_DEFAULT_MAX_EVENT;
}

/* The event being held passed the bound: it is dropped, and so is the rest. */
static int too_large(ccp_sse_framer *f)
{
    f->over = true;
    ccp_buf_free(&f->tail);
    return CCP_SSE_TOO_LARGE;
}

int ccp_sse_framer_feed(ccp_sse_framer *f, const char *p, size_t n, ccp_sse_emit_fn emit, void *ctx)
{
    if (f->over) return CCP_SSE_TOO_LARGE;
    if (f->tail.len == 0) {
        /* Common case: no carry-over, so no copy of the complete part. */
        size_t cut = ccp_sse_last_boundary(p, n);
        if (cut && emit(ctx, p, cut) != 0) return -1;
        if (n - cut > max_event(f)) return too_large(f);
        if (cut < n) ccp_buf_append(&f->tail, p + cut, n - cut);
        return 0;
    }
    /* The tail holds no boundary, and one that ends in the new bytes starts
     * at most three bytes before them ("\n\r\n"): only that is searched. */
    size_t from = f->tail.len > 3 ? f->tail.len - 3 : 0;
    ccp_buf_append(&f->tail, p, n);
    size_t cut = ccp_sse_last_boundary(f->tail.data + from, f->tail.len - from);
    int rc = 0;
    if (cut) {
        cut += from;
        rc = emit(ctx, f->tail.data, cut);
        memmove(f->tail.data, f->tail.data + cut, f->tail.len - cut);
        f->tail.len -= cut;
        f->tail.data[f->tail.len] = '\0';
    }
    if (rc != 0) return rc;
    if (f->tail.len > max_event(f)) return too_large(f);
    return 0;
}

int ccp_sse_framer_finish(ccp_sse_framer *f, ccp_sse_emit_fn emit, void *ctx)
{
    if (f->over) return CCP_SSE_TOO_LARGE;
    int rc = 0;
    if (f->tail.len) rc = emit(ctx, f->tail.data, f->tail.len);
    ccp_buf_reset(&f->tail);
    return rc;
}

int ccp_sse_framer_finish_event(ccp_sse_framer *f, ccp_sse_emit_fn emit, void *ctx)
{
    if (f->tail.len) ccp_buf_append_str(&f->tail, "\n\n");
    return ccp_sse_framer_finish(f, emit, ctx);
}

size_t ccp_sse_framer_pending(const ccp_sse_framer *f)
{
    return f->tail.len;
}

void ccp_sse_framer_free(ccp_sse_framer *f)
{
    ccp_buf_free(&f->tail);
    f->over = false;
}

/* Length of the line end at p (CRLF, LF or CR), 0 if none. */
static size_t line_end_len(const char *p, size_t left)
{
    if (left == 0) return 0;
    if (p[0] == '\n') return 1;
    if (p[0] == '\r') return left > 1 && p[1] == '\n' ? 2 : 1;
    return 0;
}

size_t ccp_sse_next_event(const char *p, size_t n, ccp_sse_event *ev)
{
    ccp_buf_reset(&ev->name);
    ccp_buf_reset(&ev->data);
    ev->has_data = false;
    ev->raw = p;
    ev->raw_len = 0;
    size_t i = 0;
    while (i < n) {
        size_t start = i;
        while (i < n && p[i] != '\n' && p[i] != '\r') i++;
        size_t eol = line_end_len(p + i, n - i);
        if (eol == 0) return 0; /* an unterminated line: no complete event */
        size_t len = i - start;
        i += eol;
        if (len == 0) {
            ev->raw_len = i;
            if (!ev->name.len && ev->has_data) ccp_buf_append_str(&ev->name, "message");
            return i;
        }
        const char *line = p + start;
        if (line[0] == ':') continue;
        const char *colon = memchr(line, ':', len);
        size_t flen = colon ? (size_t)(colon - line) : len;
        const char *v = colon ? colon + 1 : line + len;
        if (colon && v < line + len && *v == ' ') v++;
        size_t vlen = (size_t)(line + len - v);
        if (flen == 5 && memcmp(line, "event", 5) == 0) {
            ccp_buf_reset(&ev->name);
            ccp_buf_append(&ev->name, v, vlen);
        } else if (flen == 4 && memcmp(line, "data", 4) == 0) {
            if (ev->has_data) ccp_buf_append_char(&ev->data, '\n');
            ccp_buf_append(&ev->data, v, vlen);
            ev->has_data = true;
        }
    }
    return 0;
}

void ccp_sse_event_free(ccp_sse_event *ev)
{
    ccp_buf_free(&ev->name);
    ccp_buf_free(&ev->data);
}
