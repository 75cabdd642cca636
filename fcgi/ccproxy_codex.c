/* ccproxy-codex: the OpenAI Responses API relay (Codex CLI, OpenAI SDKs,
 * CherryStudio). The service is declared in common/services.c; everything
 * else is the shared core. */
#include "../common/server.h"

int main(int argc, char **argv)
{
    return ccp_server_main(&ccp_service_codex, argc, argv);
}
