/* ccproxy-codex: the OpenAI Responses API relay (Codex CLI, OpenAI SDKs,
 * CherryStudio). The binary only declares its routes; everything else is the
 * shared core. */
#include "../common/server.h"

static const ccp_route routes[] = {
    {"POST", "/v1/responses", CCP_ROUTE_RELAY, CCP_BODY_JSON_OBJECT | CCP_BODY_MODEL | CCP_ADAPT, NULL},
    {"GET", "/v1/models", CCP_ROUTE_RELAY, CCP_BODY_NONE, NULL},
    {"GET", "/v1/models/*", CCP_ROUTE_RELAY, CCP_BODY_NONE, NULL},
    {"GET", "/v1", CCP_ROUTE_STATIC, CCP_BODY_NONE, "{\"api\":\"responses\",\"version\":\"v1\",\"supported\":true}"},
    {"GET", "/health", CCP_ROUTE_HEALTH, CCP_BODY_NONE, NULL},
    {"HEAD", "/", CCP_ROUTE_HEALTH, CCP_BODY_NONE, NULL},
    {"GET", "/", CCP_ROUTE_HEALTH, CCP_BODY_NONE, NULL},
    {"GET", "/adapters", CCP_ROUTE_ADAPTERS, CCP_BODY_NONE, NULL},
};

static const ccp_service service = {
    .name = "codex-service",
    .program = "ccproxy-codex",
    .adapter_set = "codex",
    .dialect = &ccp_dialect_openai,
    .routes = routes,
    .route_count = sizeof routes / sizeof routes[0],
};

int main(int argc, char **argv)
{
    return ccp_server_main(&service, argc, argv);
}
