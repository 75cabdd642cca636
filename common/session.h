/* session: stateless rotating session ids.
 *
 * An id is derived, never stored: HMAC-SHA256 keyed by the client key's
 * SHA-256 (followed by SESSION_SECRET when set) over "<purpose>\n<window>",
 * where window = floor(unix_seconds / window_seconds). Windows are aligned to
 * the Unix epoch, i.e. to UTC midnight, so 12-hour windows change at 00:00
 * and 12:00 UTC. Every thread, process and host computes the same id for the
 * same key and window, with nothing shared but the secret. */
#ifndef CCP_SESSION_H
#define CCP_SESSION_H

#include <stddef.h>
#include <time.h>

#define CCP_SESSION_UUID_LEN 36
#define CCP_SESSION_HEX_LEN 64

typedef struct ccp_session_ids {
    char session_uuid[CCP_SESSION_UUID_LEN + 1]; /* rotates per window */
    char device_hex[CCP_SESSION_HEX_LEN + 1];    /* stable per key */
} ccp_session_ids;

/* Derives both ids. secret may be NULL. window_seconds > 0. */
void ccp_session_derive(const char *client_key, const char *secret, const char *purpose, long window_seconds,
                        time_t now, ccp_session_ids *out);

/* The window index for a time: exposed so tests can check boundaries. */
long long ccp_session_window(time_t now, long window_seconds);

#endif
