/* libFuzzer target: a whole exchange through the relay (ccp_relay_serve,
 * the Claude and Codex services of common/services.c), with the upstream's
 * answer and the client's failures taken from the input.
 *
 * Input: byte 0 picks the service (bit 0: claude or codex), how the
 * transfer ends (bits 1..3, modulo 6: complete, unreachable before any
 * header, timeout, broken mid-body, client gone, or the loop refusing to
 * start it) and the client's user agent (bits 4..5: Claude Code, Codex CLI,
 * CherryStudio, an SDK); byte 1 is the client write that fails (1-based; 0
 * never), byte 2 the size of the body pieces (0: all at once; larger for
 * a body over 256 pieces), bytes 3..4
 * the upstream status (100 + n modulo 500). Then the request body up to a
 * NUL, the upstream header block ("name: value" lines) up to a NUL, and the
 * rest is the upstream body, handed to the relay in pieces.
 *
 * The upstream is played synchronously from this file's ccp_upstream_start
 * (upstream.o is then not pulled from the library): the relay hands the
 * transfer over and never touches the exchange again, so this is faithful.
 *
 * Invariants: nothing crashes or leaks; the exchange reaches ccp_io_finish
 * (io->end and io->release) exactly once, before ccp_relay_serve returns,
 * and the transport is never used after its release; the transfer starts at
 * most once and, when it does, its on_done comes exactly once. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/adapter.h"
#include "../../common/config.h"
#include "../../common/log.h"
#include "../../common/relay.h"
#include "../../common/upstream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- the scripted upstream ------------------------------------------------- */

typedef struct script {
    int status;
    const char *headers;
    size_t headers_len;
    const char *body;
    size_t body_len;
    size_t piece;
    int ending; /* 0..5, as in the header comment */
    int starts;
} script;

static script sc;

int ccp_upstream_start(ccp_upstream *u, const ccp_upstream_request *req, const ccp_upstream_sink *sink)
{
    (void)u;
    sc.starts++;
    if (sc.starts > 1) abort();
    if (!req->url || !req->method) abort();
    for (size_t i = 0; req->headers && i < req->headers->count; i++)
        if (!ccp_http_header_value_ok(req->headers->items[i].name) ||
            !ccp_http_header_value_ok(req->headers->items[i].value))
            abort();
    if (strpbrk(req->url, "\r\n")) abort();
    if (sc.ending == 5) return CCP_ERR; /* the loop is stopping */

    ccp_upstream_stats stats = {.ttfb_ms = -1};
    ccp_upstream_result r = CCP_UP_OK;
    const char *err = "";
    if (sc.ending == 1) {
        r = CCP_UP_UNREACHABLE;
        err = "upstream fuzz is unreachable";
        goto done;
    }
    stats.ttfb_ms = 1;
    stats.headers_seen = true;
    ccp_headers h = {0};
    for (const char *p = sc.headers, *end = sc.headers + sc.headers_len; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *colon = memchr(p, ':', (size_t)(le - p));
        if (colon && colon > p) {
            const char *v = colon + 1;
            while (v < le && *v == ' ') v++;
            const char *ve = le;
            if (ve > v && ve[-1] == '\r') ve--;
            if (!memchr(p, '\r', (size_t)(ve - p))) ccp_headers_add_n(&h, p, (size_t)(colon - p), v, (size_t)(ve - v));
        }
        p = nl ? nl + 1 : end;
    }
    int rc = sink->on_headers(sink->ctx, sc.status, &h);
    ccp_headers_free(&h);
    if (rc != 0) {
        r = CCP_UP_CLIENT_GONE;
        goto done;
    }
    size_t piece = sc.piece ? sc.piece : (sc.body_len ? sc.body_len : 1);
    /* At most about 256 pieces: small ones where they matter (a short
     * stream cut anywhere), without a big body taking a call per byte. */
    if (piece < sc.body_len / 256) piece = sc.body_len / 256 + 1;
    for (size_t at = 0; at < sc.body_len; at += piece) {
        size_t n = sc.body_len - at < piece ? sc.body_len - at : piece;
        stats.bytes_in += n;
        if (sink->on_data(sink->ctx, sc.body + at, n) != 0) {
            r = CCP_UP_CLIENT_GONE;
            goto done;
        }
    }
    if (sc.ending == 2) r = CCP_UP_TIMEOUT, err = "upstream fuzz sent nothing for 1.0 s";
    else if (sc.ending == 3) r = CCP_UP_BROKEN, err = "upstream fuzz failed mid-response";
    else if (sc.ending == 4) r = CCP_UP_CLIENT_GONE;
done:
    sink->on_done(sink->ctx, r, &stats, err);
    return CCP_OK;
}

/* ---- the client -------------------------------------------------------------- */

typedef struct client {
    ccp_io io;
    const char *in;
    size_t in_len, in_pos;
    int writes, fail_write_at;
    int ends, releases, aborts;
    size_t out_bytes;
} client;

static void check_live(client *c)
{
    if (c->releases) abort(); /* used after its release */
}

static int c_read(ccp_io *io, char *buf, int n)
{
    client *c = io->ctx;
    check_live(c);
    size_t left = c->in_len - c->in_pos;
    size_t k = (size_t)n < left ? (size_t)n : left;
    memcpy(buf, c->in + c->in_pos, k);
    c->in_pos += k;
    return (int)k;
}

static int c_write(ccp_io *io, const char *p, size_t n)
{
    client *c = io->ctx;
    check_live(c);
    (void)p;
    c->writes++;
    if (c->fail_write_at && c->writes >= c->fail_write_at) return -1;
    c->out_bytes += n;
    return 0;
}

static int c_flush(ccp_io *io)
{
    client *c = io->ctx;
    check_live(c);
    return c->fail_write_at && c->writes >= c->fail_write_at ? -1 : 0;
}

static void c_end(ccp_io *io)
{
    client *c = io->ctx;
    check_live(c);
    c->ends++;
}

static void c_abort(ccp_io *io)
{
    client *c = io->ctx;
    check_live(c);
    c->aborts++;
}

static void c_release(ccp_io *io)
{
    client *c = io->ctx;
    check_live(c);
    c->releases++;
}

/* ---- the services ---------------------------------------------------------------- */

static ccp_config cfg;
static ccp_adapters *tables[2];
static ccp_pool *pools[2];

static void setup(void)
{
    if (tables[0]) return;
    memset(&cfg, 0, sizeof cfg);
    cfg.upstream_base_url = "http://upstream.test";
    cfg.base_path = "";
    cfg.max_body_bytes = 1 << 20;
    cfg.codex_env_cwd = "/workspace";
    /* Small limits, so that inputs of a fuzzer's size reach each of them. */
    cfg.max_header_count = 64;
    cfg.max_header_bytes = 4096;
    cfg.max_header_total_bytes = 16384;
    cfg.max_json_depth = 16;
    cfg.max_step_outputs = 1000;
    cfg.max_sse_event_bytes = 4096;
    cfg.max_aggregate_bytes = 65536;
    cfg.max_hold_bytes = 8192;
    cfg.log_level = CCP_LOG_ERROR + 1; /* no log lines: they would only slow it down */
    ccp_log_init(&cfg, "fuzz");
    ccp_buf err = {0};
    if (ccp_adapters_load(&tables[0], ccp_service_claude.adapter_set, &cfg, &err) != CCP_OK) abort();
    if (ccp_adapters_load(&tables[1], ccp_service_codex.adapter_set, &cfg, &err) != CCP_OK) abort();
    if (ccp_pool_load(&pools[0], ccp_service_claude.adapter_set, &cfg, &err) != CCP_OK) abort();
    if (ccp_pool_load(&pools[1], ccp_service_codex.adapter_set, &cfg, &err) != CCP_OK) abort();
    ccp_buf_free(&err);
}

static const char *const agents[] = {
    "HTTP_USER_AGENT=claude-cli/2.1.197 (external, sdk-cli)",
    "HTTP_USER_AGENT=codex_exec/0.171.0 (Debian 13.0.0; x86_64) xterm-256color",
    "HTTP_USER_AGENT=CherryStudio/1.5.0",
    "HTTP_USER_AGENT=Anthropic/JS 0.94.0",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    if (size < 5) return 0;
    int codex = data[0] & 1;
    memset(&sc, 0, sizeof sc);
    sc.ending = ((data[0] >> 1) & 7) % 6;
    const char *agent = agents[(data[0] >> 4) & 3];
    int fail_write_at = data[1];
    sc.piece = data[2];
    sc.status = 100 + (((int)data[3] << 8) | data[4]) % 500;
    const char *p = (const char *)data + 5, *end = (const char *)data + size;

    const char *nul = memchr(p, 0, (size_t)(end - p));
    const char *req_body = p;
    size_t req_len = nul ? (size_t)(nul - p) : (size_t)(end - p);
    p = nul ? nul + 1 : end;
    nul = memchr(p, 0, (size_t)(end - p));
    sc.headers = p;
    sc.headers_len = nul ? (size_t)(nul - p) : (size_t)(end - p);
    p = nul ? nul + 1 : end;
    sc.body = p;
    sc.body_len = (size_t)(end - p);

    const ccp_service *service = codex ? &ccp_service_codex : &ccp_service_claude;
    char cl[48];
    snprintf(cl, sizeof cl, "CONTENT_LENGTH=%zu", req_len);
    char *envp[] = {"REQUEST_METHOD=POST",
                    codex ? "REQUEST_URI=/v1/responses" : "REQUEST_URI=/v1/messages?beta=true",
                    "CONTENT_TYPE=application/json",
                    cl,
                    "HTTP_X_API_KEY=sk-ant-fuzz",
                    "HTTP_AUTHORIZATION=Bearer sk-fuzz",
                    "HTTP_ANTHROPIC_VERSION=2023-06-01",
                    (char *)agent,
                    NULL};
    client c;
    memset(&c, 0, sizeof c);
    c.io.envp = envp;
    c.io.read = c_read;
    c.io.write = c_write;
    c.io.flush = c_flush;
    c.io.end = c_end;
    c.io.abort = c_abort;
    c.io.release = c_release;
    c.io.hangup_fd = -1;
    c.io.ctx = &c;
    c.in = req_body;
    c.in_len = req_len;
    c.fail_write_at = fail_write_at;

    ccp_runtime rt = {.service = service, .cfg = &cfg, .adapters = tables[codex], .pool = pools[codex]};
    ccp_relay_serve(&rt, NULL, &c.io);

    if (c.releases != 1 || c.ends != 1) abort();
    if (c.aborts > 1) abort();
    return 0;
}
