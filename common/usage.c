#define _GNU_SOURCE
#include "usage.h"

#include <json-c/json.h>
#include <string.h>

#include "json_text.h"

static const char *const kind_names[CCP_TOKEN_KINDS] = {"input", "output", "cache_read", "cache_creation",
                                                        "reasoning"};

const char *ccp_token_kind_name(ccp_token_kind k)
{
    return k < CCP_TOKEN_KINDS ? kind_names[k] : "other";
}

void ccp_usage_init(ccp_usage *u, ccp_usage_api api)
{
    memset(u, 0, sizeof *u);
    u->api = api;
}

void ccp_usage_free(ccp_usage *u)
{
    ccp_sse_event_free(&u->scratch);
}

/* A count in obj[key], when it is a whole number; clamped. */
static bool count_of(json_object *obj, const char *key, long long *out)
{
    json_object *v;
    if (!obj || !json_object_object_get_ex(obj, key, &v) || !json_object_is_type(v, json_type_int)) return false;
    long long n = (long long)json_object_get_int64(v);
    *out = n < 0 ? 0 : n > CCP_USAGE_MAX ? CCP_USAGE_MAX : n;
    return true;
}

static json_object *member(json_object *obj, const char *key, json_type type)
{
    json_object *v;
    if (!obj || !json_object_object_get_ex(obj, key, &v) || !json_object_is_type(v, type)) return NULL;
    return v;
}

/* The Messages API's usage object: already disjoint kinds. Each count it
 * names replaces the one seen before. */
static void messages_usage(ccp_usage *u, json_object *usage)
{
    if (!usage) return;
    static const struct {
        const char *key;
        ccp_token_kind kind;
    } fields[] = {
        {"input_tokens", CCP_TOKENS_INPUT},
        {"output_tokens", CCP_TOKENS_OUTPUT},
        {"cache_read_input_tokens", CCP_TOKENS_CACHE_READ},
        {"cache_creation_input_tokens", CCP_TOKENS_CACHE_CREATION},
    };
    long long n;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (count_of(usage, fields[i].key, &n)) {
            u->tokens[fields[i].kind] = n;
            u->seen = true;
        }
}

/* The Responses API's usage object: input counts the cached part and output
 * the reasoning part; both are split out. */
static void responses_usage(ccp_usage *u, json_object *usage)
{
    if (!usage) return;
    long long in = 0, out = 0, cached = 0, reasoning = 0;
    bool has_in = count_of(usage, "input_tokens", &in), has_out = count_of(usage, "output_tokens", &out);
    count_of(member(usage, "input_tokens_details", json_type_object), "cached_tokens", &cached);
    bool has_r = count_of(member(usage, "output_tokens_details", json_type_object), "reasoning_tokens", &reasoning);
    if (!has_in && !has_out) return;
    if (cached > in) cached = in;
    if (reasoning > out) reasoning = out;
    u->tokens[CCP_TOKENS_INPUT] = in - cached;
    u->tokens[CCP_TOKENS_CACHE_READ] = cached;
    u->tokens[CCP_TOKENS_OUTPUT] = out - reasoning;
    u->tokens[CCP_TOKENS_REASONING] = reasoning;
    u->reasoning_seen = u->reasoning_seen || has_r;
    u->seen = true;
}

static json_object *parse(const char *p, size_t n)
{
    json_object *obj = NULL;
    if (ccp_json_parse(p, n, &obj, NULL, NULL) != CCP_JSON_OK) return NULL;
    if (!json_object_is_type(obj, json_type_object)) {
        json_object_put(obj);
        return NULL;
    }
    return obj;
}

static bool name_is(const char *name, size_t len, const char *want)
{
    size_t n = strlen(want);
    return len == n && memcmp(name, want, n) == 0;
}

/* What an event is, by its name alone. */
typedef enum { EV_OTHER, EV_USAGE, EV_ERROR, EV_UNNAMED } event_class;

static event_class classify(const ccp_usage *u, const char *name, size_t len)
{
    if (name_is(name, len, "error")) return EV_ERROR;
    if (u->api == CCP_USAGE_MESSAGES)
        return name_is(name, len, "message_start") || name_is(name, len, "message_delta") ? EV_USAGE
               : name_is(name, len, "message")                                           ? EV_UNNAMED
                                                                                         : EV_OTHER;
    if (name_is(name, len, "response.completed") || name_is(name, len, "response.incomplete")) return EV_USAGE;
    if (name_is(name, len, "response.failed")) return EV_ERROR;
    return name_is(name, len, "message") ? EV_UNNAMED : EV_OTHER;
}

/* The data's "type", for an event without an "event:" line (some relays
 * send data lines only): a byte search first, the parse only on a hit. */
static bool unnamed_may_matter(const ccp_usage *u, const char *data, size_t n)
{
    static const char *const messages[] = {"\"message_start\"", "\"message_delta\"", "\"error\"", NULL};
    static const char *const responses[] = {"\"response.completed\"", "\"response.incomplete\"",
                                            "\"response.failed\"", "\"error\"", NULL};
    for (const char *const *w = u->api == CCP_USAGE_MESSAGES ? messages : responses; *w; w++)
        if (memmem(data, n, *w, strlen(*w))) return true;
    return false;
}

static void usage_of(ccp_usage *u, json_object *data)
{
    if (u->api == CCP_USAGE_MESSAGES) {
        messages_usage(u, member(data, "usage", json_type_object));
        messages_usage(u, member(member(data, "message", json_type_object), "usage", json_type_object));
    } else {
        json_object *resp = member(data, "response", json_type_object);
        responses_usage(u, member(resp ? resp : data, "usage", json_type_object));
    }
}

void ccp_usage_event(ccp_usage *u, const char *name, size_t name_len, const char *data, size_t data_len)
{
    event_class c = classify(u, name, name_len);
    if (c == EV_OTHER || (c == EV_UNNAMED && !unnamed_may_matter(u, data, data_len))) return;
    if (c == EV_ERROR) {
        u->error_event = true;
        return;
    }
    json_object *obj = parse(data, data_len);
    if (!obj) return;
    if (c == EV_UNNAMED) {
        /* Classified by its "type" instead of its name. */
        json_object *t = member(obj, "type", json_type_string);
        const char *type = t ? json_object_get_string(t) : "";
        c = classify(u, type, strlen(type));
        if (c == EV_ERROR) u->error_event = true;
    }
    if (c == EV_USAGE) usage_of(u, obj);
    json_object_put(obj);
}

/* Start of the line holding p[at] within p[0..n). */
static size_t line_start(const char *p, size_t at)
{
    while (at > 0 && p[at - 1] != '\n' && p[at - 1] != '\r') at--;
    return at;
}

/* Start of the event holding the line at p[at]: just past the blank line
 * before it, or the region's start (the framer passes whole events). */
static size_t event_start(const char *p, size_t at)
{
    while (at > 0) {
        size_t prev_end = at; /* the previous line ends at prev_end - line end */
        size_t e = prev_end;
        if (e > 0 && p[e - 1] == '\n') e--;
        if (e > 0 && p[e - 1] == '\r') e--;
        size_t s = line_start(p, e);
        if (s == e) return at; /* an empty line: the event starts here */
        at = s;
    }
    return 0;
}

void ccp_usage_scan(ccp_usage *u, const char *p, size_t n)
{
    size_t at = 0;
    while (at < n) {
        const char *hit = memmem(p + at, n - at, "event:", 6);
        if (!hit) break;
        size_t h = (size_t)(hit - p);
        at = h + 6;
        /* Only a field at the start of a line names an event; inside a data
         * line it is text (JSON escapes every line break in a string). */
        if (h > 0 && p[h - 1] != '\n' && p[h - 1] != '\r') continue;
        size_t v = h + 6;
        if (v < n && p[v] == ' ') v++;
        size_t e = v;
        while (e < n && p[e] != '\n' && p[e] != '\r') e++;
        event_class c = classify(u, p + v, e - v);
        if (c == EV_OTHER) continue;
        if (c == EV_ERROR) {
            u->error_event = true;
            continue;
        }
        size_t s = event_start(p, h);
        size_t used = ccp_sse_next_event(p + s, n - s, &u->scratch);
        if (!used) {
            /* The stream's last event without its blank line (at a clean end). */
            ccp_buf tail = {0};
            ccp_buf_append(&tail, p + s, n - s);
            ccp_buf_append_str(&tail, "\n\n");
            used = ccp_sse_next_event(tail.data, tail.len, &u->scratch);
            ccp_buf_free(&tail);
            if (!used) break;
            used = n - s;
        }
        if (u->scratch.has_data)
            ccp_usage_event(u, u->scratch.name.data, u->scratch.name.len, u->scratch.data.data, u->scratch.data.len);
        if (s + used > at) at = s + used;
    }
}

void ccp_usage_body(ccp_usage *u, const char *body, size_t n)
{
    json_object *obj = parse(body, n);
    if (!obj) return;
    if (u->api == CCP_USAGE_MESSAGES) messages_usage(u, member(obj, "usage", json_type_object));
    else responses_usage(u, member(obj, "usage", json_type_object));
    json_object_put(obj);
}
