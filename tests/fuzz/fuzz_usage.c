/* libFuzzer target: the usage reader (common/usage.c) on any bytes. The
 * first byte picks the API (bit 0: Messages or Responses) and the piece
 * size the framer is fed in (the rest of the byte, 1..128); the rest is
 * the upstream's answer. It goes through the SSE framer as the relay feeds
 * ccp_usage_scan (whole events, the tail at the clean end), once in those
 * pieces and once whole; then, as a non-stream answer, ccp_usage_body; and
 * its events, parsed, through ccp_usage_event (the aggregating path).
 * Invariants: every count is within [0, CCP_USAGE_MAX]; the reading does not
 * depend on how the stream was cut into pieces (the same counts, the same
 * flags); reasoning is only seen on the Responses API. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/sse.h"
#include "../../common/usage.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int scan(void *ctx, const char *p, size_t n)
{
    ccp_usage_scan(ctx, p, n);
    return 0;
}

static void feed(ccp_usage *u, const char *p, size_t n, size_t piece)
{
    ccp_sse_framer f = {0};
    for (size_t at = 0; at < n; at += piece) ccp_sse_framer_feed(&f, p + at, n - at < piece ? n - at : piece, scan, u);
    ccp_sse_framer_finish(&f, scan, u);
    ccp_sse_framer_free(&f);
}

static void check_bounds(const ccp_usage *u)
{
    for (int k = 0; k < CCP_TOKEN_KINDS; k++)
        if (u->tokens[k] < 0 || u->tokens[k] > CCP_USAGE_MAX) abort();
    if (!u->seen)
        for (int k = 0; k < CCP_TOKEN_KINDS; k++)
            if (u->tokens[k]) abort();
    if (u->api == CCP_USAGE_MESSAGES && (u->reasoning_seen || u->tokens[CCP_TOKENS_REASONING])) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    ccp_usage_api api = data[0] & 1 ? CCP_USAGE_RESPONSES : CCP_USAGE_MESSAGES;
    size_t piece = (size_t)(data[0] >> 1) + 1;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;

    ccp_usage a, b;
    ccp_usage_init(&a, api);
    ccp_usage_init(&b, api);
    feed(&a, text, len, piece);
    feed(&b, text, len, len ? len : 1);
    check_bounds(&a);
    check_bounds(&b);
    /* Below the framer's bound on one event, the cut must not matter. */
    if (len < CCP_SSE_DEFAULT_MAX_EVENT &&
        (memcmp(a.tokens, b.tokens, sizeof a.tokens) || a.seen != b.seen || a.error_event != b.error_event ||
         a.reasoning_seen != b.reasoning_seen))
        abort();
    ccp_usage_free(&a);
    ccp_usage_free(&b);

    ccp_usage_init(&a, api);
    ccp_usage_body(&a, text, len);
    check_bounds(&a);
    ccp_sse_event ev = {0};
    size_t off = 0, used;
    while (off < len && (used = ccp_sse_next_event(text + off, len - off, &ev)) > 0) {
        if (ev.has_data) ccp_usage_event(&a, ev.name.data ? ev.name.data : "", ev.name.len, ev.data.data, ev.data.len);
        off += used;
    }
    check_bounds(&a);
    ccp_sse_event_free(&ev);
    ccp_usage_free(&a);
    return 0;
}
