/* buf: a growable byte buffer.
 *
 * Invariants: data is NUL-terminated whenever len > 0 or after any append
 * (the terminator is not counted in len), so text can be used as a C string;
 * binary content may contain NULs. A zeroed ccp_buf is a valid empty buffer.
 * Allocation failure aborts the process: a relay that cannot allocate a few
 * bytes cannot serve anyone, and checking every append hides real errors. */
#ifndef CCP_BUF_H
#define CCP_BUF_H

#include <stddef.h>

#include "status.h"

typedef struct ccp_buf {
    char *data;
    size_t len;
    size_t cap;
} ccp_buf;

void ccp_buf_reserve(ccp_buf *b, size_t extra);
void ccp_buf_append(ccp_buf *b, const void *p, size_t n);
void ccp_buf_append_str(ccp_buf *b, const char *s);
void ccp_buf_append_char(ccp_buf *b, char c);
void ccp_buf_printf(ccp_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends s as the body of a JSON string literal (no quotes added). */
void ccp_buf_append_json_escaped(ccp_buf *b, const char *s, size_t n);
/* Appends v in decimal, as printf's %lld would. */
void ccp_buf_append_int(ccp_buf *b, long long v);
/* Appends s as a quoted JSON string, or null when s is NULL. */
void ccp_buf_append_json_string(ccp_buf *b, const char *s);
void ccp_buf_reset(ccp_buf *b);
void ccp_buf_free(ccp_buf *b);
/* Returns the data as a C string ("" for an empty buffer); never NULL. */
const char *ccp_buf_cstr(const ccp_buf *b);

/* Appends the whole file at path to b, terminated even when it is empty.
 * Fails (CCP_ERR) when the file cannot be opened or read, or when it holds a
 * NUL byte (it must be text), with the reason in err: "cannot be read:
 * <strerror>" or "contains a NUL byte; it must be text" (the caller names
 * the file). b may then hold part of the file; the caller frees b either way. */
int ccp_buf_read_file(ccp_buf *b, const char *path, ccp_buf *err);

/* Allocation helpers with the same abort-on-failure policy. */
void *ccp_xmalloc(size_t n);
void *ccp_xcalloc(size_t n, size_t size);
void *ccp_xrealloc(void *p, size_t n);
char *ccp_xstrdup(const char *s);
char *ccp_xstrndup(const char *s, size_t n);

#endif
