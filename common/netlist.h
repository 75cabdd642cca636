/* netlist: a list of IPv4 and IPv6 addresses and CIDR blocks, and whether
 * an address (the web server's REMOTE_ADDR) is on it. METRICS_ALLOW.
 *
 * Text: comma- or space-separated items, each an address ("127.0.0.1",
 * "::1") or a block ("10.0.0.0/8", "fd00::/8"). An IPv4-mapped IPv6
 * address (::ffff:a.b.c.d, what a dual-stack socket reports) is matched
 * as the IPv4 address. Parsing never reads past len and never allocates
 * beyond the list itself; at most CCP_NETLIST_MAX items. */
#ifndef CCP_NETLIST_H
#define CCP_NETLIST_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

#define CCP_NETLIST_MAX 64

typedef struct ccp_net {
    unsigned char addr[16]; /* IPv4 as ::ffff:a.b.c.d */
    int prefix;             /* 0..128, over the 16 bytes */
} ccp_net;

typedef struct ccp_netlist {
    ccp_net items[CCP_NETLIST_MAX];
    size_t count;
} ccp_netlist;

/* Parses text[0..len). CCP_ERR with the offending item named in err. */
int ccp_netlist_parse(ccp_netlist *l, const char *text, size_t len, ccp_buf *err);
/* Is addr (a textual IPv4 or IPv6 address, as REMOTE_ADDR) on the list?
 * NULL or unparsable: false. */
bool ccp_netlist_allows(const ccp_netlist *l, const char *addr);

#endif
