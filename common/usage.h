/* usage: the token counts an upstream reports, read from its answer as it
 * passes, without changing a byte of it or holding it back.
 *
 * The Messages API reports usage in message_start (message.usage) and in
 * the final message_delta (usage), or in a non-stream body's "usage"; the
 * Responses API in response.completed / response.incomplete (response.usage)
 * or a non-stream body's "usage". Only those events are read: every other
 * event is recognised by its name alone (an SSE "event:" line), so the cost
 * on the stream is a byte search per event; of those, only the usage object
 * is read, in place, without building a JSON tree (the last "usage":{ key,
 * which must be a well-formed object up to its closing brace).
 *
 * Kinds are disjoint, so their sum is the tokens the exchange used:
 * input excludes cache reads and cache writes (the Responses API's
 * input_tokens minus input_tokens_details.cached_tokens), output excludes
 * reasoning (output_tokens minus output_tokens_details.reasoning_tokens).
 * A later report of a count replaces an earlier one (message_delta carries
 * the final output count); a stream cut before its final event keeps what
 * its earlier events said. Counts are clamped to [0, CCP_USAGE_MAX]. */
#ifndef CCP_USAGE_H
#define CCP_USAGE_H

#include <stdbool.h>
#include <stddef.h>

#include "sse.h"

typedef enum {
    CCP_TOKENS_INPUT,
    CCP_TOKENS_OUTPUT,
    CCP_TOKENS_CACHE_READ,
    CCP_TOKENS_CACHE_CREATION,
    CCP_TOKENS_REASONING,
    CCP_TOKEN_KINDS
} ccp_token_kind;

/* "input", "output", "cache_read", "cache_creation", "reasoning". */
const char *ccp_token_kind_name(ccp_token_kind k);

typedef enum {
    CCP_USAGE_MESSAGES,  /* Anthropic Messages API */
    CCP_USAGE_RESPONSES, /* OpenAI Responses API */
} ccp_usage_api;

#define CCP_USAGE_MAX 1000000000000LL

typedef struct ccp_usage {
    ccp_usage_api api;
    long long tokens[CCP_TOKEN_KINDS];
    bool seen;          /* some usage was reported */
    bool reasoning_seen; /* the report named reasoning tokens */
    bool error_event;   /* an error event passed (error, response.failed) */
    ccp_sse_event scratch; /* for the few events that are parsed */
} ccp_usage;

void ccp_usage_init(ccp_usage *u, ccp_usage_api api);
void ccp_usage_free(ccp_usage *u);

/* One parsed event (a reader that has parsed it anyway: the Responses
 * dialect inspects every event). */
void ccp_usage_event(ccp_usage *u, const char *name, size_t name_len, const char *data, size_t data_len);
/* A region of whole events as the framer passes them on (p[0..n) ends at
 * an event boundary, or is the stream's tail at its end). */
void ccp_usage_scan(ccp_usage *u, const char *p, size_t n);
/* A whole non-stream JSON answer. */
void ccp_usage_body(ccp_usage *u, const char *body, size_t n);

#endif
