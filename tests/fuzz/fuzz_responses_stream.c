/* libFuzzer target: an upstream OpenAI Responses stream as any bytes. The
 * events parsed from it (ccp_sse_next_event, the tail completed as the
 * relay's finish_event does) go through the Responses dialect's
 * inspect_event (the stream state starting at last_seq -1, as the relay
 * starts it) and, separately, aggregate_event into one ccp_aggregate; then
 * stream_error_event writes the event that would end the stream. The same
 * events also go through the Anthropic table's hooks, where it has them.
 * Invariants: last_seq stays within -1..CCP_SEQ_MAX; a replacement is a
 * whole event (ends at a boundary); a finished aggregate has a status and
 * either a result or an error body; the error event is a whole event. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/buf.h"
#include "../../common/dialect.h"
#include "../../common/sse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_whole_event(const ccp_buf *b)
{
    if (b->len == 0 || ccp_sse_last_boundary(b->data, b->len) != b->len) abort();
    if (strlen(b->data) != b->len) abort(); /* no NUL inside */
}

static void run(const ccp_dialect *d, const char *text, size_t len)
{
    ccp_stream_state st;
    memset(&st, 0, sizeof st);
    st.last_seq = -1;
    ccp_aggregate agg;
    memset(&agg, 0, sizeof agg);
    ccp_sse_event ev;
    memset(&ev, 0, sizeof ev);
    ccp_buf out = {0};

    size_t off = 0;
    while (off < len) {
        size_t used = ccp_sse_next_event(text + off, len - off, &ev);
        if (used == 0) break; /* fuzz_sse checks the parser itself */
        if (used > len - off) abort();
        off += used;
        if (d->inspect_event) {
            ccp_buf_reset(&out);
            if (d->inspect_event(d, &st, &ev, &out)) check_whole_event(&out);
            if (st.last_seq < -1 || st.last_seq > CCP_SEQ_MAX) abort();
            if (memchr(st.response_id, '\0', sizeof st.response_id) == NULL) abort();
            if (memchr(st.model, '\0', sizeof st.model) == NULL) abort();
        }
        if (d->aggregate_event) {
            d->aggregate_event(d, &agg, &ev);
            if (agg.done && (agg.status < 100 || agg.status > 599)) abort();
            if (agg.done && !agg.result && !agg.error_body.len) abort();
        }
    }
    static const ccp_error_kind kinds[] = {CCP_E_UPSTREAM, CCP_E_TIMEOUT, CCP_E_INTERNAL};
    ccp_buf_reset(&out);
    d->stream_error_event(d, &out, kinds[len % 3], "upstream stream ended early", &st);
    check_whole_event(&out);

    json_object_put(agg.result);
    ccp_buf_free(&agg.error_body);
    ccp_buf_free(&out);
    ccp_sse_event_free(&ev);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The stream as the framer hands it over at a clean end: complete
     * events, the tail completed with a blank line. */
    ccp_buf text = {0};
    ccp_buf_append(&text, (const char *)data, size);
    if (size && ccp_sse_last_boundary(text.data, text.len) != text.len) ccp_buf_append_str(&text, "\n\n");
    if (text.len) {
        run(&ccp_dialect_openai, text.data, text.len);
        run(&ccp_dialect_anthropic, text.data, text.len);
    }
    ccp_buf_free(&text);
    return 0;
}
