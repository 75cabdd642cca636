#include "buf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(void)
{
    static const char msg[] = "ccproxy: out of memory\n";
    fwrite(msg, 1, sizeof msg - 1, stderr);
    abort();
}

void *ccp_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) oom();
    return p;
}

void *ccp_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) oom();
    return p;
}

void *ccp_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) oom();
    return q;
}

char *ccp_xstrndup(const char *s, size_t n)
{
    char *d = ccp_xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *ccp_xstrdup(const char *s)
{
    return ccp_xstrndup(s, strlen(s));
}

void ccp_buf_reserve(ccp_buf *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap *= 2;
    b->data = ccp_xrealloc(b->data, cap);
    b->cap = cap;
    b->data[b->len] = '\0';
}

void ccp_buf_append(ccp_buf *b, const void *p, size_t n)
{
    ccp_buf_reserve(b, n);
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void ccp_buf_append_str(ccp_buf *b, const char *s)
{
    ccp_buf_append(b, s, strlen(s));
}

void ccp_buf_append_char(ccp_buf *b, char c)
{
    ccp_buf_append(b, &c, 1);
}

void ccp_buf_printf(ccp_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[256];
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap2);
    va_end(ap2);
    if (n < 0) {
        va_end(ap);
        return;
    }
    if ((size_t)n < sizeof tmp) {
        ccp_buf_append(b, tmp, (size_t)n);
    } else {
        ccp_buf_reserve(b, (size_t)n);
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
        b->len += (size_t)n;
    }
    va_end(ap);
}

void ccp_buf_append_json_escaped(ccp_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (n == 0) return;
    ccp_buf_reserve(b, n); /* the usual case: nothing to escape */
    size_t run = 0;        /* start of the bytes that pass as they are */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f) continue;
        ccp_buf_append(b, s + run, i - run);
        run = i + 1;
        switch (c) {
        case '"': ccp_buf_append(b, "\\\"", 2); break;
        case '\\': ccp_buf_append(b, "\\\\", 2); break;
        case '\n': ccp_buf_append(b, "\\n", 2); break;
        case '\r': ccp_buf_append(b, "\\r", 2); break;
        case '\t': ccp_buf_append(b, "\\t", 2); break;
        default: {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            ccp_buf_append(b, esc, 6);
        }
        }
    }
    ccp_buf_append(b, s + run, n - run);
}

void ccp_buf_append_int(ccp_buf *b, long long v)
{
    char tmp[24];
    char *e = tmp + sizeof tmp, *p = e;
    /* Negated as unsigned: LLONG_MIN has no positive long long. */
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) *--p = '-';
    ccp_buf_append(b, p, (size_t)(e - p));
}

void ccp_buf_append_json_string(ccp_buf *b, const char *s)
{
    if (!s) {
        ccp_buf_append_str(b, "null");
        return;
    }
    ccp_buf_append_char(b, '"');
    ccp_buf_append_json_escaped(b, s, strlen(s));
    ccp_buf_append_char(b, '"');
}

void ccp_buf_reset(ccp_buf *b)
{
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

void ccp_buf_free(ccp_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

const char *ccp_buf_cstr(const ccp_buf *b)
{
    return b->data ? b->data : "";
}

int ccp_buf_read_file(ccp_buf *b, const char *path, ccp_buf *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        ccp_buf_printf(err, "cannot be read: %s", strerror(errno));
        return CCP_ERR;
    }
    size_t start = b->len;
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) ccp_buf_append(b, chunk, n);
    int failed = ferror(f), saved = errno;
    fclose(f);
    if (failed) {
        ccp_buf_printf(err, "cannot be read: %s", strerror(saved));
        return CCP_ERR;
    }
    ccp_buf_append(b, "", 0); /* terminate even when empty */
    if (memchr(b->data + start, '\0', b->len - start)) {
        ccp_buf_append_str(err, "contains a NUL byte; it must be text");
        return CCP_ERR;
    }
    return CCP_OK;
}
