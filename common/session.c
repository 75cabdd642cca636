#include "session.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "sha256.h"

long long ccp_session_window(time_t now, long window_seconds)
{
    long long t = (long long)now;
    /* Floor division, so times before the epoch would still be aligned. */
    return t >= 0 ? t / window_seconds : -((-t + window_seconds - 1) / window_seconds);
}

static void hmac(const unsigned char *key, size_t key_len, const char *msg, unsigned char out[32])
{
    unsigned int len = 32;
    HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)msg, strlen(msg), out, &len);
}

static void to_hex(const unsigned char *d, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[2 * n] = '\0';
}

void ccp_session_derive(const char *client_key, const char *secret, const char *purpose, long window_seconds,
                        time_t now, ccp_session_ids *out)
{
    /* The HMAC key is the key's fingerprint, not the key: the secret part
     * of an API key never enters another construction. */
    unsigned char key[SHA256_DIGEST_LENGTH + 256];
    size_t key_len = SHA256_DIGEST_LENGTH;
    ccp_sha256(client_key, strlen(client_key), key);
    if (secret && *secret) {
        size_t n = strlen(secret);
        if (n > 256) {
            /* A long secret is folded to its digest; still deterministic. */
            ccp_sha256(secret, n, key + key_len);
            n = SHA256_DIGEST_LENGTH;
        } else {
            memcpy(key + key_len, secret, n);
        }
        key_len += n;
    }

    /* One client sends many requests per window: a per-thread memo of the
     * last derivation saves two HMACs per request (libcrypto was 5% of the
     * responder's CPU under load). It compares the HMAC key material (the
     * API key's digest and SESSION_SECRET, which the configuration holds
     * anyway), never the API key itself. */
    static _Thread_local struct {
        bool valid;
        unsigned char key[SHA256_DIGEST_LENGTH + 256];
        size_t key_len;
        char purpose[64];
        long long window;
        ccp_session_ids ids;
    } memo;
    long long window = ccp_session_window(now, window_seconds);
    if (memo.valid && memo.window == window && memo.key_len == key_len && strcmp(memo.purpose, purpose) == 0 &&
        CRYPTO_memcmp(memo.key, key, key_len) == 0) {
        *out = memo.ids;
        OPENSSL_cleanse(key, sizeof key);
        return;
    }

    char msg[256];
    unsigned char d[32];
    snprintf(msg, sizeof msg, "%s\n%lld", purpose, window);
    hmac(key, key_len, msg, d);
    /* Format as an RFC 4122 version-4 UUID: clients validate the shape. */
    d[6] = (unsigned char)((d[6] & 0x0f) | 0x40);
    d[8] = (unsigned char)((d[8] & 0x3f) | 0x80);
    char hex[33];
    to_hex(d, 16, hex);
    snprintf(out->session_uuid, sizeof out->session_uuid, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12,
             hex + 16, hex + 20);

    snprintf(msg, sizeof msg, "%s\ndevice", purpose);
    hmac(key, key_len, msg, d);
    to_hex(d, 32, out->device_hex);
    if (strlen(purpose) < sizeof memo.purpose) {
        memcpy(memo.key, key, key_len);
        memo.key_len = key_len;
        strcpy(memo.purpose, purpose);
        memo.window = window;
        memo.ids = *out;
        memo.valid = true;
    }
    OPENSSL_cleanse(key, sizeof key);
}
