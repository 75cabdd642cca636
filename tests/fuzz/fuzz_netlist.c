/* libFuzzer target: METRICS_ALLOW's parser (common/netlist.c) on any bytes.
 * The input is parsed as a list; whatever it holds is also asked as an
 * address (REMOTE_ADDR comes from the web server, but a CGI host may pass
 * anything), split at its first comma into a list and an address.
 * Invariants: a failed parse says why and names no more than 64 bytes of
 * the entry (JSON-escaped: at most 6 bytes each, so the reason stays
 * bounded); a list holds at most CCP_NETLIST_MAX entries with prefixes in
 * 0..128 and no host bits; every entry admits its own address; an empty
 * list admits nothing. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/netlist.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_list(const ccp_netlist *l)
{
    if (l->count > CCP_NETLIST_MAX) abort();
    for (size_t i = 0; i < l->count; i++) {
        const ccp_net *n = &l->items[i];
        if (n->prefix < 0 || n->prefix > 128) abort();
        for (int bit = n->prefix; bit < 128; bit++)
            if (n->addr[bit / 8] & (0x80u >> (bit % 8))) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    ccp_netlist l;
    ccp_buf err = {0};
    if (ccp_netlist_parse(&l, text, size, &err) == CCP_OK) {
        if (err.len) abort();
        check_list(&l);
    } else if (!err.len || err.len > 64 * 6 + 160) {
        abort();
    }
    ccp_buf_free(&err);

    /* list,address */
    const char *comma = memchr(text, ',', size);
    size_t split = comma ? (size_t)(comma - text) : size;
    ccp_buf addr = {0};
    ccp_buf_append(&addr, comma ? comma + 1 : "", comma ? size - split - 1 : 0);
    if (ccp_netlist_parse(&l, text, split, &err) == CCP_OK) {
        check_list(&l);
        if (l.count == 0 && ccp_netlist_allows(&l, addr.data)) abort();
        if (memchr(text, '/', split) == NULL && split && strlen(addr.data) == addr.len) {
            /* A list of one bare address admits that very text. */
            ccp_buf one = {0};
            ccp_buf_append(&one, text, split);
            if (l.count == 1 && !memchr(one.data, ' ', one.len) && !memchr(one.data, '\t', one.len) &&
                strlen(one.data) == one.len && !ccp_netlist_allows(&l, one.data))
                abort();
            ccp_buf_free(&one);
        }
    }
    ccp_buf_free(&err);
    ccp_buf_free(&addr);
    return 0;
}
