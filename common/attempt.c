#include "attempt.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "json_text.h"

_Static_assert(CCP_ATTEMPT_UNREACHABLE == CCP_UPERR_UNREACHABLE + 1 && CCP_ATTEMPT_TIMEOUT == CCP_UPERR_TIMEOUT + 1 &&
                   CCP_ATTEMPT_BROKEN == CCP_UPERR_BROKEN + 1 && CCP_ATTEMPT_STATUS_5XX == CCP_UPERR_STATUS_5XX + 1 &&
                   CCP_ATTEMPT_STATUS_429 == CCP_UPERR_STATUS_429 + 1 &&
                   CCP_ATTEMPT_ERROR_EVENT == CCP_UPERR_ERROR_EVENT + 1 && CCP_ATTEMPT_KINDS == CCP_UPERR_KINDS + 1,
               "an attempt's failure kinds are the metrics' kinds, one up");

ccp_upstream_error_kind ccp_attempt_error_kind(ccp_attempt_failure kind)
{
    return kind > CCP_ATTEMPT_OK && kind < CCP_ATTEMPT_KINDS ? (ccp_upstream_error_kind)(kind - 1)
                                                              : CCP_UPERR_UNREACHABLE;
}

const char *ccp_attempt_failure_name(ccp_attempt_failure kind)
{
    if (kind == CCP_ATTEMPT_OK) return "ok";
    return kind > CCP_ATTEMPT_OK && kind < CCP_ATTEMPT_KINDS ? ccp_upstream_error_name(ccp_attempt_error_kind(kind))
                                                              : "unknown";
}

bool ccp_attempt_retryable_status(int status)
{
    return status >= 500 || status == 429;
}

long long ccp_attempt_retry_after(const ccp_headers *h)
{
    const char *v;
    char *end;
    if ((v = ccp_headers_get(h, "retry-after-ms"))) {
        double ms = strtod(v, &end);
        if (end != v && !*end && ms >= 0 && ms < 1e12) return (long long)ms;
    }
    if ((v = ccp_headers_get(h, "retry-after"))) {
        double sec = strtod(v, &end);
        if (end != v && !*end && sec >= 0 && sec < 1e9) return (long long)(sec * 1000);
    }
    return -1;
}

static bool error_type(const char *t)
{
    return strcmp(t, "error") == 0 || strcmp(t, "response.failed") == 0;
}

bool ccp_attempt_is_error_event(const ccp_sse_event *ev)
{
    const char *name = ccp_buf_cstr(&ev->name);
    if (error_type(name)) return true;
    /* An event without a name line: its data says what it is. */
    if (!ev->has_data || strcmp(name, "message") != 0) return false;
    json_object *j = NULL, *t;
    bool err = false;
    if (ccp_json_parse(ev->data.data, ev->data.len, &j, NULL, NULL) == CCP_JSON_OK &&
        json_object_is_type(j, json_type_object) && json_object_object_get_ex(j, "type", &t) &&
        json_object_is_type(t, json_type_string))
        err = error_type(json_object_get_string(t));
    json_object_put(j);
    return err;
}

void ccp_attempt_headers(ccp_headers *out, ccp_headers *base, bool take_base, const char *auth_name,
                         const char *auth_value, const ccp_dialect *d, const ccp_pool_upstream *u,
                         const ccp_client_key *client)
{
    ccp_buf name = {0}, value = {0};
    const char *key = u->api_key ? u->api_key : client->value;
    ccp_key_source came_as = u->api_key ? CCP_KEY_NONE : client->source;
    ccp_dialect_auth_header(d, u->auth_style, came_as, key, &name, &value);
    ccp_headers_free(out);
    if (take_base) {
        *out = *base;
        *base = (ccp_headers){0};
    } else {
        for (size_t i = 0; i < base->count; i++) ccp_headers_add(out, base->items[i].name, base->items[i].value);
    }
    for (size_t i = 0; i < out->count; i++) {
        ccp_header *h = &out->items[i];
        if (strcasecmp(h->name, auth_name) == 0 && strcmp(h->value, auth_value) == 0) {
            free(h->name);
            free(h->value);
            h->name = ccp_xstrdup(name.data);
            h->value = ccp_xstrdup(value.data);
            break;
        }
    }
    for (size_t i = 0; i < u->headers.count; i++)
        ccp_headers_set(out, u->headers.items[i].name, u->headers.items[i].value);
    ccp_buf_free(&name);
    ccp_buf_free(&value);
}

void ccp_attempt_body(ccp_buf *out, json_object *body, const char *client_model, const char *upstream_model)
{
    json_object_object_add(body, "model", json_object_new_string(upstream_model));
    size_t n;
    const char *text =
        json_object_to_json_string_length(body, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
    ccp_buf_reset(out);
    ccp_buf_append(out, text, n);
    json_object_object_add(body, "model", json_object_new_string(client_model));
}
