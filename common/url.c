#include "url.h"

#include <string.h>

const char *ccp_url_host(const char *url, size_t *len, const char **userinfo)
{
    const char *h = strstr(url, "://");
    h = h ? h + 3 : url;
    size_t n = strcspn(h, "/?#");
    const char *at = NULL;
    for (size_t i = 0; i < n; i++)
        if (h[i] == '@') at = h + i;
    if (userinfo) *userinfo = at ? h : NULL;
    if (at) {
        n -= (size_t)(at + 1 - h);
        h = at + 1;
    }
    *len = n;
    return h;
}

void ccp_url_append_masked(ccp_buf *out, const char *url)
{
    size_t n;
    const char *user;
    const char *host = ccp_url_host(url, &n, &user);
    if (!user) {
        ccp_buf_append_str(out, url);
        return;
    }
    ccp_buf_append(out, url, (size_t)(user - url));
    ccp_buf_append_str(out, "***@");
    ccp_buf_append_str(out, host);
}
