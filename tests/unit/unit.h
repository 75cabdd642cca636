/* unit.h: tiny helpers shared by the cmocka unit tests (tests/unit/test_*.c).
 *
 * Everything here is static inline so a test file that uses only part of it
 * still builds with -Wall -Werror. Helpers:
 *   - a fake ccp_io: feeds a request body in small pieces, captures what is
 *     written, and can fail the Nth write or flush;
 *   - temp files (mkstemp) and stderr capture (dup2 onto a temp file);
 *   - a clean slate for the configuration variables (unsetenv).
 * Nothing touches the network or sleeps. */
#ifndef CCP_UNIT_H
#define CCP_UNIT_H

/* cmocka needs these before its header. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../common/buf.h"
#include "../../common/config.h"
#include "../../common/dialect.h"
#include "../../common/http.h"
#include "../../common/relay.h"

#define UNIT_COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ---- configuration ------------------------------------------------------ */

/* The limits' defaults (config.c's table; test_config checks they agree),
 * for a test that fills a ccp_config by hand. */
static inline void unit_config_limits(ccp_config *cfg)
{
    cfg->max_header_count = 256;
    cfg->max_header_bytes = 32 << 10;
    cfg->max_header_total_bytes = 48 << 10;
    cfg->max_json_depth = 64;
    cfg->max_step_outputs = 200000;
    cfg->max_sse_event_bytes = 16 << 20;
    cfg->max_aggregate_bytes = 128 << 20;
    cfg->max_hold_bytes = 8 << 20;
}

/* ---- strings ---------------------------------------------------------- */

/* Number of non-overlapping occurrences of needle in hay. */
static inline size_t unit_count_str(const char *hay, const char *needle)
{
    size_t n = 0, nl = strlen(needle);
    for (const char *p = hay; nl && (p = strstr(p, needle)) != NULL; p += nl) n++;
    return n;
}

/* ---- heap ---------------------------------------------------------------- */

/* Leaves freed blocks of this size filled with non-zero bytes, so a test that
 * reads memory nobody initialised sees garbage rather than lucky zeros. */
static inline void unit_dirty_heap(size_t size)
{
    void *blocks[8];
    for (size_t i = 0; i < UNIT_COUNT(blocks); i++) {
        blocks[i] = malloc(size);
        assert_non_null(blocks[i]);
        memset(blocks[i], 0x5a, size);
    }
    for (size_t i = UNIT_COUNT(blocks); i-- > 0;) free(blocks[i]);
}

/* ---- fake transport ----------------------------------------------------- */

typedef struct unit_io {
    ccp_io io;
    /* input: what read() delivers, at most piece bytes per call */
    const char *in;
    size_t in_len, in_pos, piece;
    int read_error; /* read returns -1 once the input is used up */
    int reads;
    /* output */
    ccp_buf out;
    int writes, flushes;
    int fail_write_at; /* 1-based write call that fails; 0: never */
    int fail_flush_at; /* 1-based flush call that fails; 0: never */
} unit_io;

static inline int unit_io_read(ccp_io *io, char *buf, int n)
{
    unit_io *u = io->ctx;
    u->reads++;
    size_t left = u->in_len - u->in_pos;
    if (left == 0) return u->read_error ? -1 : 0;
    size_t k = (size_t)n;
    if (k > left) k = left;
    if (u->piece && k > u->piece) k = u->piece;
    memcpy(buf, u->in + u->in_pos, k);
    u->in_pos += k;
    return (int)k;
}

static inline int unit_io_write(ccp_io *io, const char *p, size_t n)
{
    unit_io *u = io->ctx;
    u->writes++;
    if (u->fail_write_at && u->writes >= u->fail_write_at) return -1;
    ccp_buf_append(&u->out, p, n);
    return 0;
}

static inline int unit_io_flush(ccp_io *io)
{
    unit_io *u = io->ctx;
    u->flushes++;
    if (u->fail_flush_at && u->flushes >= u->fail_flush_at) return -1;
    return 0;
}

/* envp: NULL-terminated "NAME=value" array (may be NULL). */
static inline void unit_io_init(unit_io *u, char **envp)
{
    memset(u, 0, sizeof *u);
    u->io.envp = envp;
    u->io.read = unit_io_read;
    u->io.write = unit_io_write;
    u->io.flush = unit_io_flush;
    u->io.hangup_fd = -1;
    u->io.ctx = u;
}

static inline void unit_io_input(unit_io *u, const char *in, size_t len, size_t piece)
{
    u->in = in;
    u->in_len = len;
    u->in_pos = 0;
    u->piece = piece;
}

static inline void unit_io_free(unit_io *u)
{
    ccp_buf_free(&u->out);
}

/* ---- files ---------------------------------------------------------------- */

/* Writes text to a new temp file; path must hold 64 bytes. Unlink when done. */
static inline void unit_write_tmp(char path[64], const char *text, size_t len)
{
    snprintf(path, 64, "/tmp/ccp-unit-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, text + off, len - off);
        assert_true(n > 0);
        off += (size_t)n;
    }
    close(fd);
}

/* Reads a whole file (by descriptor, from offset 0) into out. */
static inline void unit_read_fd(int fd, ccp_buf *out)
{
    char chunk[4096];
    ssize_t n;
    assert_true(lseek(fd, 0, SEEK_SET) == 0);
    while ((n = read(fd, chunk, sizeof chunk)) > 0) ccp_buf_append(out, chunk, (size_t)n);
}

/* ---- stderr capture --------------------------------------------------------- */

typedef struct unit_stderr {
    int saved;
    int fd;
    char path[64];
} unit_stderr;

static inline void unit_stderr_begin(unit_stderr *c)
{
    fflush(stderr);
    snprintf(c->path, sizeof c->path, "/tmp/ccp-unit-err-XXXXXX");
    c->fd = mkstemp(c->path);
    assert_true(c->fd >= 0);
    c->saved = dup(STDERR_FILENO);
    assert_true(c->saved >= 0);
    assert_true(dup2(c->fd, STDERR_FILENO) == STDERR_FILENO);
}

/* Restores stderr and appends what was written to out. */
static inline void unit_stderr_end(unit_stderr *c, ccp_buf *out)
{
    fflush(stderr);
    dup2(c->saved, STDERR_FILENO);
    close(c->saved);
    unit_read_fd(c->fd, out);
    close(c->fd);
    unlink(c->path);
}

/* ---- environment ---------------------------------------------------------- */

/* Unsets every variable ccp_config_load reads for the Claude service. */
static inline void unit_env_clear(void)
{
    /* Every variable of config.c's table, under both services' names, so a
     * variable added there can never leak from one test into the next. */
    const ccp_config_names *services[] = {&ccp_service_claude.config_names, &ccp_service_codex.config_names};
    for (size_t s = 0; s < UNIT_COUNT(services); s++)
        for (size_t i = 0; i < ccp_config_var_count(); i++) unsetenv(ccp_config_var_name(i, services[s]));
    unsetenv("CCPROXY_ENV_FILE");
}

/* Builds a header list from "name: value" lines. */
static inline void unit_headers_from(ccp_headers *h, const char *text)
{
    memset(h, 0, sizeof *h);
    while (text && *text) {
        const char *nl = strchr(text, '\n');
        size_t len = nl ? (size_t)(nl - text) : strlen(text);
        const char *colon = memchr(text, ':', len);
        assert_non_null(colon);
        char name[128], value[512];
        snprintf(name, sizeof name, "%.*s", (int)(colon - text), text);
        const char *v = colon + 1;
        while (*v == ' ') v++;
        snprintf(value, sizeof value, "%.*s", (int)(text + len - v), v);
        ccp_headers_add(h, name, value);
        text = nl ? nl + 1 : text + len;
    }
}

#endif
