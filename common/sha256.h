/* sha256: the SHA-256 digest the request path takes several times per
 * request (the key's fingerprint and access check, the session key, the
 * pool's order).
 *
 * OpenSSL 3's one-shot SHA256() looks the algorithm up in its provider
 * store on every call, which costs more than hashing an API key; the
 * algorithm is fetched once here and shared by every thread (an EVP_MD is
 * immutable once fetched). Thread-safe. */
#ifndef CCP_SHA256_H
#define CCP_SHA256_H

#include <stddef.h>

#define CCP_SHA256_LEN 32

void ccp_sha256(const void *p, size_t n, unsigned char out[CCP_SHA256_LEN]);

#endif
