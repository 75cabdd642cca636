#include "sha256.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <pthread.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static EVP_MD *sha256; /* kept for the process's life */

static void fetch(void)
{
    sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

void ccp_sha256(const void *p, size_t n, unsigned char out[CCP_SHA256_LEN])
{
    pthread_once(&once, fetch);
    /* Without the fetched algorithm (a broken provider set-up), the
     * one-shot call still gives the same digest. */
    if (!sha256 || !EVP_Digest(p, n, out, NULL, sha256, NULL)) SHA256(p, n, out);
}
