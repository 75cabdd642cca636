#define _GNU_SOURCE
#include "reqid.h"

#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static _Thread_local uint64_t state[4];
static _Thread_local bool seeded;

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t next(void)
{
    uint64_t result = rotl(state[1] * 5, 7) * 9, t = state[1] << 17;
    state[2] ^= state[0];
    state[3] ^= state[1];
    state[1] ^= state[2];
    state[0] ^= state[3];
    state[2] ^= t;
    state[3] = rotl(state[3], 45);
    return result;
}

static void seed(void)
{
    size_t got = 0;
    while (got < sizeof state) {
        ssize_t n = getrandom((char *)state + got, sizeof state - got, 0);
        if (n <= 0) break;
        got += (size_t)n;
    }
    if (got < sizeof state) {
        /* No entropy source (an old kernel in a jail): ids must still differ
         * between threads and processes. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        state[0] ^= (uint64_t)ts.tv_nsec << 32 ^ (uint64_t)ts.tv_sec;
        state[1] ^= (uint64_t)getpid() << 32 ^ (uint64_t)(uintptr_t)&state;
    }
    if (!(state[0] | state[1] | state[2] | state[3])) state[0] = 1; /* the one state it never leaves */
    seeded = true;
}

void ccp_reqid_new(char out[CCP_REQID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    if (!seeded) seed();
    uint64_t w[2] = {next(), next()};
    for (int i = 0; i < CCP_REQID_LEN; i++) out[i] = hex[(w[i / 16] >> (4 * (i % 16))) & 0xf];
    out[CCP_REQID_LEN] = 0;
}

bool ccp_reqid_acceptable(const char *v)
{
    if (!v) return false;
    size_t n = 0;
    for (; v[n]; n++) {
        char c = v[n];
        if (n >= CCP_REQID_MAX) return false;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == ':' || c == '-'))
            return false;
    }
    return n > 0;
}
