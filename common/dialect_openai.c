/* The OpenAI Responses API dialect: error shapes, Bearer keys, the /v1
 * joining rule, response.failed as the terminal error event, and turning a
 * forced stream back into one Response object. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "dialect.h"

static void error_object(const ccp_dialect *d, ccp_buf *out, ccp_error_kind kind, const char *message)
{
    ccp_buf_append_str(out, "{\"message\":");
    ccp_buf_append_json_string(out, message);
    ccp_buf_append_str(out, ",\"type\":");
    ccp_buf_append_json_string(out, d->errors[kind].type);
    ccp_buf_append_str(out, ",\"param\":null,\"code\":");
    ccp_buf_append_json_string(out, d->errors[kind].code);
    ccp_buf_append_char(out, '}');
}

static void openai_error_body(const ccp_dialect *d, ccp_buf *out, ccp_error_kind kind, const char *message)
{
    ccp_buf_append_str(out, "{\"error\":");
    error_object(d, out, kind, message);
    ccp_buf_append_char(out, '}');
}

/* response.failed with a Response object, the only terminal error event
 * the Codex CLI acts on. error: {"code","message"} as JSON members. */
static void failed_event(ccp_buf *out, const ccp_stream_state *st, const char *code, const char *message)
{
    long long seq = st && st->last_seq >= 0 ? st->last_seq + 1 : 0;
    const char *id = st && st->response_id[0] ? st->response_id : "resp_ccproxy_failed";
    ccp_buf_printf(out, "event: response.failed\ndata: {\"type\":\"response.failed\",\"sequence_number\":%lld,"
                        "\"response\":{\"id\":",
                   seq);
    ccp_buf_append_json_string(out, id);
    ccp_buf_printf(out, ",\"object\":\"response\",\"created_at\":%lld,\"status\":\"failed\",\"error\":{\"code\":",
                   (long long)time(NULL));
    ccp_buf_append_json_string(out, code);
    ccp_buf_append_str(out, ",\"message\":");
    ccp_buf_append_json_string(out, message);
    ccp_buf_append_str(out, "},\"incomplete_details\":null,\"model\":");
    ccp_buf_append_json_string(out, st && st->model[0] ? st->model : NULL);
    ccp_buf_append_str(out, ",\"output\":[]}}\n\n");
}

static void openai_stream_error(const ccp_dialect *d, ccp_buf *out, ccp_error_kind kind, const char *message,
                                const ccp_stream_state *st)
{
    (void)d;
    failed_event(out, st, kind == CCP_E_TIMEOUT ? "upstream_timeout" : "server_error", message);
}

static void copy_string(json_object *obj, const char *key, char *dst, size_t cap)
{
    json_object *v;
    if (json_object_object_get_ex(obj, key, &v) && json_object_is_type(v, json_type_string))
        snprintf(dst, cap, "%s", json_object_get_string(v));
}

static json_object *parse_data(const ccp_sse_event *ev)
{
    if (!ev->has_data || !ev->data.len) return NULL;
    return json_tokener_parse(ev->data.data);
}

/* The upstream's "error" event data: {"type":"error","code","message"} or
 * {"error":{...}}. Pulls out code and message. */
static void error_fields(json_object *data, const char **code, const char **message)
{
    json_object *src = data, *e, *v;
    if (data && json_object_object_get_ex(data, "error", &e) && json_object_is_type(e, json_type_object)) src = e;
    *code = "server_error";
    *message = "the upstream reported an error";
    if (src && json_object_object_get_ex(src, "code", &v) && json_object_is_type(v, json_type_string))
        *code = json_object_get_string(v);
    else if (src && json_object_object_get_ex(src, "type", &v) && json_object_is_type(v, json_type_string) &&
             strcmp(json_object_get_string(v), "error") != 0)
        *code = json_object_get_string(v);
    if (src && json_object_object_get_ex(src, "message", &v) && json_object_is_type(v, json_type_string))
        *message = json_object_get_string(v);
}

static bool openai_inspect_event(const ccp_dialect *d, ccp_stream_state *st, const ccp_sse_event *ev, ccp_buf *out)
{
    (void)d;
    if (!ev->has_data) return false;
    /* The sequence number is read without a full parse: this runs per event. */
    const char *sq = strstr(ev->data.data, "\"sequence_number\":");
    const char *name = ev->name.data;
    /* The replacement of an error event takes its place in the numbering.
     * Only a number a client reads exactly counts as the stream's position
     * (0 to 2^53 - 1, JSON's safe integers): anything else from upstream is
     * ignored, so the next number (last_seq + 1) can never overflow. */
    if (sq) {
        errno = 0;
        long long n = strtoll(sq + 18, NULL, 10);
        if (errno == 0 && n >= 0 && n <= CCP_SEQ_MAX) st->last_seq = n - (strcmp(name, "error") == 0);
    }
    if (strcmp(name, "response.created") == 0 && !st->response_id[0]) {
        json_object *data = parse_data(ev), *resp;
        if (data && json_object_object_get_ex(data, "response", &resp)) {
            copy_string(resp, "id", st->response_id, sizeof st->response_id);
            copy_string(resp, "model", st->model, sizeof st->model);
        }
        json_object_put(data);
        return false;
    }
    if (strcmp(name, "error") != 0) return false;
    json_object *data = parse_data(ev);
    const char *code, *message;
    error_fields(data, &code, &message);
    failed_event(out, st, code, message);
    json_object_put(data);
    return true;
}

int ccp_status_for_error_code(const char *code)
{
    static const struct {
        const char *code;
        int status;
    } map[] = {
        {"rate_limit_exceeded", 429}, {"insufficient_quota", 429},       {"invalid_prompt", 400},
        {"context_length_exceeded", 400}, {"invalid_request_error", 400}, {"invalid_api_key", 401},
        {"authentication_error", 401}, {"permission_error", 403},         {"not_found_error", 404},
        {"overloaded_error", 529},     {"server_error", 500},             {"upstream_timeout", 504},
    };
    for (size_t i = 0; code && i < sizeof map / sizeof map[0]; i++)
        if (strcmp(code, map[i].code) == 0) return map[i].status;
    return 502;
}

static void aggregate_error(ccp_aggregate *agg, const char *code, const char *message)
{
    ccp_buf_reset(&agg->error_body);
    ccp_buf_append_str(&agg->error_body, "{\"error\":{\"message\":");
    ccp_buf_append_json_string(&agg->error_body, message);
    ccp_buf_append_str(&agg->error_body, ",\"type\":");
    ccp_buf_append_json_string(&agg->error_body, ccp_status_for_error_code(code) >= 500 ? "server_error" : "invalid_request_error");
    ccp_buf_append_str(&agg->error_body, ",\"param\":null,\"code\":");
    ccp_buf_append_json_string(&agg->error_body, code);
    ccp_buf_append_str(&agg->error_body, "}}");
    agg->status = ccp_status_for_error_code(code);
    agg->done = true;
}

static void openai_aggregate_event(const ccp_dialect *d, ccp_aggregate *agg, const ccp_sse_event *ev)
{
    (void)d;
    if (agg->done || !ev->has_data) return;
    const char *name = ev->name.data;
    bool completed = strcmp(name, "response.completed") == 0 || strcmp(name, "response.incomplete") == 0;
    bool failed = strcmp(name, "response.failed") == 0;
    if (!completed && !failed && strcmp(name, "error") != 0) return;
    json_object *data = parse_data(ev), *resp = NULL;
    if (data) json_object_object_get_ex(data, "response", &resp);
    if (completed && resp) {
        agg->result = json_object_get(resp);
        agg->status = 200;
        agg->done = true;
    } else {
        json_object *err = NULL;
        if (failed && resp) json_object_object_get_ex(resp, "error", &err);
        const char *code, *message;
        error_fields(err ? err : data, &code, &message);
        aggregate_error(agg, code, message);
    }
    json_object_put(data);
}

static void openai_url(ccp_buf *out, const char *base, const char *path, const char *query)
{
    /* OPENAI_BASE_URL conventionally ends in /v1; never double it. */
    size_t n = strlen(base);
    if (n >= 3 && strcmp(base + n - 3, "/v1") == 0 && strncmp(path, "/v1", 3) == 0 &&
        (path[3] == '/' || path[3] == '\0'))
        path += 3;
    ccp_url_join(out, base, path, query);
}

static const char *const openai_pass[] = {"content-type", "x-request-id", "retry-after", "retry-after-ms", NULL};
static const char *const openai_pass_prefixes[] = {"openai-", "x-ratelimit-", NULL};

const ccp_dialect ccp_dialect_openai = {
    .name = "openai",
    .example_model = "gpt-5-codex",
    .conversation_field = "input",
    .errors =
        {
            [CCP_E_INVALID_REQUEST] = {"invalid_request_error", NULL},
            [CCP_E_AUTH] = {"invalid_request_error", "invalid_api_key"},
            [CCP_E_PERMISSION] = {"invalid_request_error", "origin_not_allowed"},
            [CCP_E_NOT_FOUND] = {"invalid_request_error", "not_found"},
            [CCP_E_METHOD] = {"invalid_request_error", "method_not_allowed"},
            [CCP_E_TOO_LARGE] = {"invalid_request_error", "request_too_large"},
            [CCP_E_HEADERS_TOO_LARGE] = {"invalid_request_error", "request_headers_too_large"},
            [CCP_E_UPGRADE] = {"invalid_request_error", "websocket_not_supported"},
            [CCP_E_INTERNAL] = {"server_error", NULL},
            [CCP_E_UPSTREAM] = {"server_error", "upstream_unreachable"},
            [CCP_E_UNAVAILABLE] = {"server_error", "overloaded"},
            [CCP_E_TIMEOUT] = {"server_error", "upstream_timeout"},
            [CCP_E_FORBIDDEN] = {"invalid_request_error", "address_not_allowed"},
        },
    .default_request_headers = NULL,
    .pass_headers = openai_pass,
    .pass_header_prefixes = openai_pass_prefixes,
    .native_auth_style = CCP_AUTH_BEARER,
    .accepts_x_api_key = false,
    /* The Responses API also has a WebSocket mode (GET /v1/responses), which
     * the Codex CLI's built-in provider tries first: 426 makes it fall back to
     * HTTPS at once, where 404/405/501 cost it about 6.5 s of retries. */
    .websocket_refusal = "WebSocket upgrade refused: this service speaks the Responses API over HTTPS streaming "
                         "(server-sent events), not WebSockets; send POST /v1/responses, with \"stream\": true "
                         "to stream (the Codex CLI falls back to it by itself on this 426)",
    .error_body = openai_error_body,
    .stream_error_event = openai_stream_error,
    .inspect_event = openai_inspect_event,
    .usage_api = CCP_USAGE_RESPONSES,
    .aggregate_event = openai_aggregate_event,
    .upstream_url = openai_url,
};
