/* auth: client-key checks that never leak the key.
 *
 * Keys are compared as SHA-256 digests with CRYPTO_memcmp, against every
 * ACCESS_KEYS entry without stopping early, so timing tells nothing about
 * which entry or how many bytes matched. Logs carry only a fingerprint. */
#ifndef CCP_AUTH_H
#define CCP_AUTH_H

#include <stdbool.h>

#include "config.h"

#define CCP_FINGERPRINT_LEN 8

/* First CCP_FINGERPRINT_LEN hex chars of SHA-256(key), NUL-terminated. */
void ccp_auth_fingerprint(const char *key, char out[CCP_FINGERPRINT_LEN + 1]);

/* True if key is one of cfg's ACCESS_KEYS. */
bool ccp_auth_key_allowed(const ccp_config *cfg, const char *key);

#endif
