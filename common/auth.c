#include "auth.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <string.h>

#include "sha256.h"

void ccp_auth_fingerprint(const char *key, char out[CCP_FINGERPRINT_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char d[SHA256_DIGEST_LENGTH];
    ccp_sha256(key, strlen(key), d);
    for (int i = 0; i < CCP_FINGERPRINT_LEN / 2; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[CCP_FINGERPRINT_LEN] = '\0';
}

bool ccp_auth_key_allowed(const ccp_config *cfg, const char *key)
{
    unsigned char d[SHA256_DIGEST_LENGTH];
    ccp_sha256(key, strlen(key), d);
    int found = 0;
    for (size_t i = 0; i < cfg->access_count; i++)
        found |= CRYPTO_memcmp(d, cfg->access_digests[i], sizeof d) == 0;
    return found != 0;
}
