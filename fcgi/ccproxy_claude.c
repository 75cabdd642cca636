/* ccproxy-claude: the Anthropic Messages API relay. The binary only declares
 * its routes; everything else is the shared core. */
#include "../common/server.h"

static const ccp_route routes[] = {
    {"POST", "/v1/messages", CCP_ROUTE_RELAY,
     CCP_BODY_JSON_OBJECT | CCP_BODY_MODEL | CCP_BODY_MESSAGES_ARRAY | CCP_ADAPT, NULL},
    {"POST", "/v1/messages/count_tokens", CCP_ROUTE_RELAY, CCP_BODY_JSON_OBJECT | CCP_BODY_MODEL, NULL},
    {"GET", "/v1/models", CCP_ROUTE_RELAY, CCP_BODY_NONE, NULL},
    {"GET", "/v1/models/*", CCP_ROUTE_RELAY, CCP_BODY_NONE, NULL},
    {"GET", "/health", CCP_ROUTE_HEALTH, CCP_BODY_NONE, NULL},
    /* Claude Code probes the base URL with HEAD / before its first call. */
    {"HEAD", "/", CCP_ROUTE_HEALTH, CCP_BODY_NONE, NULL},
    {"GET", "/", CCP_ROUTE_HEALTH, CCP_BODY_NONE, NULL},
    {"GET", "/adapters", CCP_ROUTE_ADAPTERS, CCP_BODY_NONE, NULL},
};

static const ccp_service service = {
    .name = "claude-service",
    .program = "ccproxy-claude",
    .adapter_set = "claude",
    .dialect = &ccp_dialect_anthropic,
    .routes = routes,
    .route_count = sizeof routes / sizeof routes[0],
};

int main(int argc, char **argv)
{
    return ccp_server_main(&service, argc, argv);
}
