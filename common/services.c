/* services: the two services the binaries serve, each named once: its
 * names, its API's dialect, its routes and its configuration variables. */
#include "relay.h"

/* The routes a service answers itself, the same on both (each is added
 * once, here). Claude Code probes the base URL with HEAD / before its
 * first call. */
#define LOCAL_ROUTES                                                   \
    {"GET", "/health", CCP_ROUTE_HEALTH, CCP_BODY_NONE, NULL},         \
    {"HEAD", "/", CCP_ROUTE_HEALTH, CCP_BODY_NONE, NULL},              \
    {"GET", "/", CCP_ROUTE_HEALTH, CCP_BODY_NONE, NULL},               \
    {"GET", "/adapters", CCP_ROUTE_ADAPTERS, CCP_BODY_NONE, NULL},     \
    {"GET", "/upstreams", CCP_ROUTE_UPSTREAMS, CCP_BODY_NONE, NULL},   \
    {"GET", "/metrics", CCP_ROUTE_METRICS, CCP_BODY_NONE, NULL}

static const ccp_route claude_routes[] = {
    {"POST", "/v1/messages", CCP_ROUTE_RELAY,
     CCP_BODY_JSON_OBJECT | CCP_BODY_MODEL | CCP_BODY_MESSAGES_ARRAY | CCP_ADAPT, NULL},
    {"POST", "/v1/messages/count_tokens", CCP_ROUTE_RELAY, CCP_BODY_JSON_OBJECT | CCP_BODY_MODEL, NULL},
    {"GET", "/v1/models", CCP_ROUTE_RELAY, CCP_BODY_NONE, NULL},
    {"GET", "/v1/models/*", CCP_ROUTE_RELAY, CCP_BODY_NONE, NULL},
    LOCAL_ROUTES,
};

const ccp_service ccp_service_claude = {
    .name = "claude-service",
    .program = "ccproxy-claude",
    .adapter_set = "claude",
    .dialect = &ccp_dialect_anthropic,
    .routes = claude_routes,
    .route_count = sizeof claude_routes / sizeof claude_routes[0],
    .config_names =
        {
            .base_url_var = "ANTHROPIC_BASE_URL",
            .base_url_default = "https://api.anthropic.com",
            .api_key_var = "ANTHROPIC_API_KEY",
            .host_var = "CLAUDE_SERVICE_HOST",
            .port_var = "CLAUDE_SERVICE_PORT",
            .port_default = 8001,
        },
};

/* The Responses API (Codex CLI, OpenAI SDKs, CherryStudio). */
static const ccp_route codex_routes[] = {
    {"POST", "/v1/responses", CCP_ROUTE_RELAY, CCP_BODY_JSON_OBJECT | CCP_BODY_MODEL | CCP_ADAPT, NULL},
    {"GET", "/v1/models", CCP_ROUTE_RELAY, CCP_BODY_NONE, NULL},
    {"GET", "/v1/models/*", CCP_ROUTE_RELAY, CCP_BODY_NONE, NULL},
    {"GET", "/v1", CCP_ROUTE_STATIC, CCP_BODY_NONE, "{\"api\":\"responses\",\"version\":\"v1\",\"supported\":true}"},
    LOCAL_ROUTES,
};

const ccp_service ccp_service_codex = {
    .name = "codex-service",
    .program = "ccproxy-codex",
    .adapter_set = "codex",
    .dialect = &ccp_dialect_openai,
    .routes = codex_routes,
    .route_count = sizeof codex_routes / sizeof codex_routes[0],
    .config_names =
        {
            .base_url_var = "OPENAI_BASE_URL",
            .base_url_default = "https://api.openai.com/v1",
            .api_key_var = "OPENAI_API_KEY",
            .host_var = "CODEX_SERVICE_HOST",
            .port_var = "CODEX_SERVICE_PORT",
            .port_default = 8002,
        },
};
