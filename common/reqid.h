/* reqid: the request id every response carries (x-ccproxy-request-id) and
 * its log line names: 128 random bits as 32 lower-case hex digits.
 *
 * Each thread seeds its own generator once from getrandom(2) and then draws
 * without a system call or a lock (xoshiro256**: not for secrets, only
 * for ids that must not collide). */
#ifndef CCP_REQID_H
#define CCP_REQID_H

#include <stdbool.h>
#include <stddef.h>

#define CCP_REQID_LEN 32
/* The longest id taken from a trusted front (TRUST_REQUEST_ID). */
#define CCP_REQID_MAX 64

/* Writes a fresh id and its NUL into out. */
void ccp_reqid_new(char out[CCP_REQID_LEN + 1]);

/* Is v fit to be used as the id (a trusted front's x-request-id): 1 to
 * CCP_REQID_MAX characters of [A-Za-z0-9._:-]? Anything else (spaces,
 * quotes, a header split) is replaced by a fresh id. */
bool ccp_reqid_acceptable(const char *v);

#endif
