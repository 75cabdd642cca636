#include "netlist.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

/* IPv4 lives in the IPv4-mapped block, so one match covers both spellings. */
static const unsigned char v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* An address into 16 bytes; *v4 tells which family it was written in. */
static bool parse_addr(const char *s, unsigned char out[16], bool *v4)
{
    unsigned char a4[4];
    if (inet_pton(AF_INET, s, a4) == 1) {
        memcpy(out, v4_mapped, 12);
        memcpy(out + 12, a4, 4);
        *v4 = true;
        return true;
    }
    if (inet_pton(AF_INET6, s, out) == 1) {
        *v4 = false; /* a prefix on it counts over 128 bits, mapped or not */
        return true;
    }
    return false;
}

static bool parse_item(const char *item, ccp_net *n)
{
    char addr[64];
    const char *slash = strchr(item, '/');
    size_t alen = slash ? (size_t)(slash - item) : strlen(item);
    if (alen == 0 || alen >= sizeof addr) return false;
    memcpy(addr, item, alen);
    addr[alen] = 0;
    bool v4;
    if (!parse_addr(addr, n->addr, &v4)) return false;
    int max = v4 ? 32 : 128, prefix = max;
    if (slash) {
        const char *d = slash + 1;
        size_t dl = strlen(d);
        if (dl == 0 || dl > 3) return false;
        prefix = 0;
        for (size_t i = 0; i < dl; i++) {
            if (d[i] < '0' || d[i] > '9') return false;
            prefix = prefix * 10 + (d[i] - '0');
        }
        if (prefix > max) return false;
    }
    n->prefix = v4 ? prefix + 96 : prefix;
    /* Host bits are cleared so that 10.1.2.3/8 means 10.0.0.0/8. */
    for (int bit = n->prefix; bit < 128; bit++) n->addr[bit / 8] &= (unsigned char)~(0x80u >> (bit % 8));
    return true;
}

int ccp_netlist_parse(ccp_netlist *l, const char *text, size_t len, ccp_buf *err)
{
    memset(l, 0, sizeof *l);
    size_t i = 0;
    while (i < len) {
        while (i < len && (text[i] == ',' || text[i] == ' ' || text[i] == '\t')) i++;
        size_t s = i;
        while (i < len && text[i] != ',' && text[i] != ' ' && text[i] != '\t') i++;
        if (i == s) continue;
        char item[80];
        size_t n = i - s;
        bool ok = n < sizeof item && memchr(text + s, 0, n) == NULL;
        if (ok) {
            memcpy(item, text + s, n);
            item[n] = 0;
        }
        if (ok && l->count == CCP_NETLIST_MAX) {
            ccp_buf_printf(err, "more than %d entries", CCP_NETLIST_MAX);
            return CCP_ERR;
        }
        if (!ok || !parse_item(item, &l->items[l->count])) {
            ccp_buf_append_str(err, "entry \"");
            ccp_buf_append_json_escaped(err, text + s, n > 64 ? 64 : n);
            ccp_buf_append_str(err, "\" is not an IPv4 or IPv6 address or CIDR block (e.g. 127.0.0.1, ::1, 10.0.0.0/8)");
            return CCP_ERR;
        }
        l->count++;
    }
    return CCP_OK;
}

static bool in_net(const ccp_net *n, const unsigned char a[16])
{
    int full = n->prefix / 8, rest = n->prefix % 8;
    if (memcmp(n->addr, a, (size_t)full) != 0) return false;
    if (!rest) return true;
    unsigned char mask = (unsigned char)(0xff00u >> rest);
    return (n->addr[full] & mask) == (a[full] & mask);
}

bool ccp_netlist_allows(const ccp_netlist *l, const char *addr)
{
    unsigned char a[16];
    bool v4;
    if (!addr || strlen(addr) >= 64 || !parse_addr(addr, a, &v4)) return false;
    for (size_t i = 0; i < l->count; i++)
        if (in_net(&l->items[i], a)) return true;
    return false;
}
