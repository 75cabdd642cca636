#include "dialect.h"

#include <string.h>
#include <strings.h>

static const int status_of[CCP_E_COUNT] = {
    [CCP_E_INVALID_REQUEST] = 400, [CCP_E_AUTH] = 401,     [CCP_E_PERMISSION] = 403,
    [CCP_E_NOT_FOUND] = 404,       [CCP_E_METHOD] = 405,   [CCP_E_TOO_LARGE] = 413, [CCP_E_HEADERS_TOO_LARGE] = 431,
    [CCP_E_UPGRADE] = 426,         [CCP_E_INTERNAL] = 500,        [CCP_E_UPSTREAM] = 502, [CCP_E_UNAVAILABLE] = 503,
    [CCP_E_TIMEOUT] = 504,         [CCP_E_FORBIDDEN] = 403,
};

int ccp_error_status(ccp_error_kind kind)
{
    return kind < CCP_E_COUNT ? status_of[kind] : 500;
}

/* ---- Anthropic --------------------------------------------------------- */

static void anthropic_error_body(const ccp_dialect *d, ccp_buf *out, ccp_error_kind kind, const char *message)
{
    ccp_buf_append_str(out, "{\"type\":\"error\",\"error\":{\"type\":");
    ccp_buf_append_json_string(out, d->errors[kind].type);
    ccp_buf_append_str(out, ",\"message\":");
    ccp_buf_append_json_string(out, message);
    ccp_buf_append_str(out, "}}");
}

static void anthropic_stream_error(const ccp_dialect *d, ccp_buf *out, ccp_error_kind kind, const char *message,
                                   const ccp_stream_state *st)
{
    (void)st;
    ccp_buf_append_str(out, "event: error\ndata: ");
    anthropic_error_body(d, out, kind, message);
    ccp_buf_append_str(out, "\n\n");
}

void ccp_url_join(ccp_buf *out, const char *base, const char *path, const char *query)
{
    ccp_buf_append_str(out, base);
    ccp_buf_append_str(out, path);
    if (query && *query) {
        ccp_buf_append_char(out, '?');
        ccp_buf_append_str(out, query);
    }
}

static const char *const anthropic_defaults[] = {"anthropic-version", "2023-06-01", NULL};
static const char *const anthropic_pass[] = {
    "content-type", "request-id", "retry-after", "retry-after-ms", "x-should-retry", NULL,
};
static const char *const anthropic_pass_prefixes[] = {"anthropic-ratelimit-", NULL};

const ccp_dialect ccp_dialect_anthropic = {
    .name = "anthropic",
    .example_model = "claude-sonnet-4-5",
    .conversation_field = "messages",
    .errors =
        {
            [CCP_E_INVALID_REQUEST] = {"invalid_request_error", NULL},
            [CCP_E_AUTH] = {"authentication_error", NULL},
            [CCP_E_PERMISSION] = {"permission_error", NULL},
            [CCP_E_NOT_FOUND] = {"not_found_error", NULL},
            [CCP_E_METHOD] = {"invalid_request_error", NULL},
            [CCP_E_TOO_LARGE] = {"request_too_large", NULL},
            [CCP_E_HEADERS_TOO_LARGE] = {"invalid_request_error", NULL},
            [CCP_E_UPGRADE] = {"invalid_request_error", NULL},
            [CCP_E_INTERNAL] = {"api_error", NULL},
            [CCP_E_UPSTREAM] = {"api_error", NULL},
            [CCP_E_UNAVAILABLE] = {"overloaded_error", NULL},
            [CCP_E_TIMEOUT] = {"api_error", NULL},
            [CCP_E_FORBIDDEN] = {"permission_error", NULL},
        },
    .default_request_headers = anthropic_defaults,
    .pass_headers = anthropic_pass,
    .usage_api = CCP_USAGE_MESSAGES,
    .pass_header_prefixes = anthropic_pass_prefixes,
    .native_auth_style = CCP_AUTH_X_API_KEY,
    .accepts_x_api_key = true,
    /* No Anthropic client opens a WebSocket today; one that tries learns the
     * transport in one round trip instead of a 405 that says "use POST". */
    .websocket_refusal = "WebSocket upgrade refused: this service speaks the Messages API over HTTPS streaming "
                         "(server-sent events), not WebSockets; send POST /v1/messages, with \"stream\": true "
                         "to stream",
    .error_body = anthropic_error_body,
    .stream_error_event = anthropic_stream_error,
    .upstream_url = ccp_url_join,
};

/* ---- shared ------------------------------------------------------------ */

bool ccp_dialect_client_key(const ccp_dialect *d, const ccp_headers *h, ccp_client_key *out)
{
    out->value = NULL;
    out->source = CCP_KEY_NONE;
    const char *v = d->accepts_x_api_key ? ccp_headers_get(h, "x-api-key") : NULL;
    if (v && *v) {
        out->value = v;
        out->source = CCP_KEY_X_API_KEY;
        return true;
    }
    v = ccp_headers_get(h, "authorization");
    if (!v) return false;
    while (*v == ' ' || *v == '\t') v++;
    if (strncasecmp(v, "Bearer", 6) == 0 && (v[6] == ' ' || v[6] == '\t' || v[6] == '\0')) {
        v += 6;
        while (*v == ' ' || *v == '\t') v++;
        out->source = CCP_KEY_BEARER;
    } else {
        out->source = CCP_KEY_BARE;
    }
    if (!*v) {
        out->source = CCP_KEY_NONE;
        return false;
    }
    out->value = v;
    return true;
}

void ccp_dialect_auth_header(const ccp_dialect *d, ccp_auth_style style, ccp_key_source came_as, const char *key,
                             ccp_buf *name, ccp_buf *value)
{
    if (style == CCP_AUTH_AUTO) {
        if (came_as == CCP_KEY_BEARER) style = CCP_AUTH_BEARER;
        else if (came_as == CCP_KEY_X_API_KEY && d->accepts_x_api_key) style = CCP_AUTH_X_API_KEY;
        else style = d->native_auth_style;
    }
    ccp_buf_reset(name);
    ccp_buf_reset(value);
    if (style == CCP_AUTH_BEARER) {
        ccp_buf_append_str(name, "Authorization");
        ccp_buf_printf(value, "Bearer %s", key);
    } else {
        ccp_buf_append_str(name, "x-api-key");
        ccp_buf_append_str(value, key);
    }
}

bool ccp_dialect_passes_header(const ccp_dialect *d, const char *name)
{
    for (const char *const *p = d->pass_headers; p && *p; p++)
        if (strcasecmp(name, *p) == 0) return true;
    for (const char *const *p = d->pass_header_prefixes; p && *p; p++)
        if (strncasecmp(name, *p, strlen(*p)) == 0) return true;
    return false;
}

int ccp_dialect_message_count(const ccp_dialect *d, json_object *body)
{
    json_object *v;
    if (!d->conversation_field || !json_object_object_get_ex(body, d->conversation_field, &v)) return -1;
    if (json_object_is_type(v, json_type_array)) return (int)json_object_array_length(v);
    return json_object_is_type(v, json_type_string) ? 1 : -1;
}
