/* url: the parts of a URL the logs and error messages show, never its
 * credentials. */
#ifndef CCP_URL_H
#define CCP_URL_H

#include <stddef.h>

#include "buf.h"

/* The host (with its port) of url's authority: after "scheme://" (from the
 * start without one), up to the first '/', '?' or '#', and after the last
 * '@' in between, so no part of "user:pass@" is in it even when the password
 * holds an '@'. Returns where it starts in url and sets *len; *userinfo
 * (when not NULL) is where the credentials start, or NULL without any. */
const char *ccp_url_host(const char *url, size_t *len, const char **userinfo);
/* Appends url with its credentials, if any, replaced by three stars:
 * https://u:p@host/v1 becomes https:// ***@host/v1 (without the space). */
void ccp_url_append_masked(ccp_buf *out, const char *url);

#endif
