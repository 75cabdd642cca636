/* server: the process around the relay. Reads the configuration, then
 * either serves one request as plain CGI (no FastCGI socket on fd 0) or runs
 * a pool of worker threads on the FastCGI listen socket. SIGTERM/SIGINT
 * stop accepting and let running streams finish (SHUTDOWN_GRACE bounded). */
#ifndef CCP_SERVER_H
#define CCP_SERVER_H

#include "relay.h"

/* The whole program: returns the process exit status. */
int ccp_server_main(const ccp_service *service, int argc, char **argv);

#endif
