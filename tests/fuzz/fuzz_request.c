/* libFuzzer target: the request view, as the CGI/FastCGI parameters and
 * body a web server (or whatever stands in its place) may hand over.
 *
 * Input: byte 0 is the body limit (times 8, so 0..2040); byte 1 the read
 * size (low 4 bits + 1 bytes per read; bit 4: the read fails at the end
 * instead of a clean end of input; bits 5-7, k: the header limits, none
 * for 0, else at most 2k headers, 16k bytes each and 40k in all). Then NUL-separated parts: the first is
 * BASE_PATH, each next one a parameter "NAME=value" (REQUEST_METHOD,
 * REQUEST_URI, PATH_INFO, QUERY_STRING, CONTENT_TYPE, CONTENT_LENGTH,
 * HTTP_*: any bytes but NUL, line breaks included) until an empty part;
 * whatever follows that is the body. A part without '=' or with an empty
 * name is left out, as no web server sends one.
 *
 * Invariants: a request that is OK has a path starting '/', header names
 * in lower case with '-' (never "proxy"), and bad_part or bad_header set
 * whenever anything forwarded (method, path, query, content type, header
 * name or value) holds CR or LF; the body read is OK only within the limit
 * and, with a CONTENT_LENGTH, exactly that long; with header limits, an OK
 * request's headers keep within them, and one over them is
 * CCP_REQ_HEADERS_TOO_LARGE naming the limit (never without limits). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct fuzz_io {
    ccp_io io;
    const uint8_t *in;
    size_t len, pos, piece;
    int read_error;
    int reads;
} fuzz_io;

static int fuzz_read(ccp_io *io, char *buf, int n)
{
    fuzz_io *f = io->ctx;
    f->reads++;
    if (n <= 0) abort();
    size_t left = f->len - f->pos;
    if (left == 0) return f->read_error ? -1 : 0;
    size_t k = (size_t)n < left ? (size_t)n : left;
    if (k > f->piece) k = f->piece;
    memcpy(buf, f->in + f->pos, k);
    f->pos += k;
    return (int)k;
}

static int fuzz_write(ccp_io *io, const char *p, size_t n)
{
    (void)io, (void)p, (void)n;
    abort(); /* the request view never writes */
}

static int fuzz_flush(ccp_io *io)
{
    (void)io;
    abort();
}

static int has_break(const char *s)
{
    return s && strpbrk(s, "\r\n") != NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    size_t limit = (size_t)data[0] * 8;
    size_t piece = (size_t)(data[1] & 0x0f) + 1;
    int read_error = (data[1] & 0x10) != 0;
    size_t k = (size_t)(data[1] >> 5);
    ccp_header_limits lim = {2 * k, 16 * k, 40 * k};
    data += 2;
    size_t left = size - 2;

    /* Parts up to the first empty one (or the end). */
    char *base_path = NULL;
    char **envp = calloc(left + 2, sizeof *envp);
    size_t nenv = 0, at = 0;
    int first = 1;
    while (at < left) {
        const uint8_t *nul = memchr(data + at, 0, left - at);
        size_t len = nul ? (size_t)(nul - (data + at)) : left - at;
        if (!first && len == 0) {
            at += 1; /* the empty part: the body follows */
            break;
        }
        char *s = malloc(len + 1);
        memcpy(s, data + at, len);
        s[len] = '\0';
        at += len + (nul ? 1 : 0);
        if (first) {
            base_path = s;
            first = 0;
        } else if (len > 0 && s[0] != '=' && strchr(s, '=')) {
            envp[nenv++] = s;
        } else {
            free(s);
        }
        if (!nul) break;
    }
    if (at > left) at = left;
    if (!base_path) base_path = calloc(1, 1);

    fuzz_io f;
    memset(&f, 0, sizeof f);
    f.io.envp = envp;
    f.io.read = fuzz_read;
    f.io.write = fuzz_write;
    f.io.flush = fuzz_flush;
    f.io.hangup_fd = -1;
    f.io.ctx = &f;
    f.in = data + at;
    f.len = left - at;
    f.piece = piece;
    f.read_error = read_error;

    ccp_request r;
    ccp_request_status st = ccp_request_init(&r, &f.io, base_path, k ? &lim : NULL);
    if (!r.method) abort();
    if (st == CCP_REQ_HEADERS_TOO_LARGE) {
        if (!k || !r.over_limit) abort();
        if (strcmp(r.over_limit, "MAX_HEADER_COUNT") && strcmp(r.over_limit, "MAX_HEADER_BYTES") &&
            strcmp(r.over_limit, "MAX_HEADER_TOTAL_BYTES"))
            abort();
        if (!strcmp(r.over_limit, "MAX_HEADER_BYTES") && (!r.over_header || r.over_amount <= lim.one_bytes)) abort();
        if (r.headers.count > lim.count) abort();
    }
    if (st != CCP_REQ_HEADERS_TOO_LARGE && r.over_limit) abort();
    if (st == CCP_REQ_OK && k) {
        size_t total = 0;
        if (r.headers.count > lim.count) abort();
        for (size_t i = 0; i < r.headers.count; i++) {
            size_t one = strlen(r.headers.items[i].name) + strlen(r.headers.items[i].value);
            if (one > lim.one_bytes) abort();
            total += one;
        }
        if (total > lim.total_bytes) abort();
    }
    if (st == CCP_REQ_OK) {
        if (!r.path || r.path[0] != '/' || !r.query) abort();
        if (!r.bad_part && (has_break(r.method) || has_break(r.path) || has_break(r.query) ||
                            has_break(r.content_type)))
            abort();
        for (size_t i = 0; i < r.headers.count; i++) {
            const ccp_header *h = &r.headers.items[i];
            if (!h->name[0] || strcmp(h->name, "proxy") == 0) abort();
            for (const char *c = h->name; *c; c++)
                if (*c == '_' || (*c >= 'A' && *c <= 'Z')) abort();
            if (has_break(h->name) && !r.bad_part) abort();
            if (has_break(h->value) && !r.bad_header) abort();
        }
        if (r.bad_header && !ccp_request_header(&r, r.bad_header)) abort();
        (void)ccp_request_is_websocket(&r);

        ccp_request_status b = ccp_request_read_body(&r, limit);
        if (b == CCP_REQ_OK) {
            if (r.body.len > limit) abort();
            if (r.content_length >= 0 && r.body.len != (size_t)r.content_length) abort();
            if (r.content_length < 0 && r.body.len != f.len) abort();
        } else if (b == CCP_REQ_TOO_LARGE) {
            if (r.content_length <= (long long)limit && r.body.len <= limit) abort();
        } else if (b == CCP_REQ_SHORT_BODY) {
            if (r.content_length < 0 || r.body.len >= (size_t)r.content_length) abort();
        } else {
            abort();
        }
        if (r.body.len > f.len) abort();
        ccp_request_drain(&r);
        if (f.pos != f.len) abort();
    }
    ccp_request_free(&r);

    for (size_t i = 0; i < nenv; i++) free(envp[i]);
    free(envp);
    free(base_path);
    return 0;
}
