#define _GNU_SOURCE
#include "usage.h"

#include <stdio.h>
#include <string.h>

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

/* ---- the usage object, read in place -------------------------------------
 *
 * Only the usage object is read, with a scanner that allocates nothing: a
 * json-c tree of the whole event (a response.completed repeats the whole
 * answer) cost more than the rest of the relaying. An unescaped
 * "usage":{ can only be a key (a quote inside a JSON string is escaped),
 * and the usage object is the last one in every answer shape of both APIs
 * (message_start.message, message_delta, the Message, response), so the
 * last such key is taken. The object must be well formed up to its closing
 * brace; anything else is no report at all. */

/* The counts a usage object names; has: a bit per field present. */
enum { F_INPUT, F_OUTPUT, F_CACHE_READ, F_CACHE_CREATION, F_CACHED, F_REASONING, F_COUNT };

typedef struct report {
    long long v[F_COUNT];
    unsigned has;
} report;

typedef struct cursor {
    const char *p, *end;
} cursor;

#define MAX_DEPTH 16

static void ws(cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static bool eat(cursor *c, char ch)
{
    ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

/* A string at c->p (its opening quote); [*s, *n) its raw contents. */
static bool string(cursor *c, const char **s, size_t *n)
{
    ws(c);
    if (c->p >= c->end || *c->p != '"') return false;
    const char *b = ++c->p;
    while (c->p < c->end && *c->p != '"') {
        if ((unsigned char)*c->p < 0x20) return false;
        c->p += *c->p == '\\' ? 2 : 1;
    }
    if (c->p >= c->end) return false;
    *s = b;
    *n = (size_t)(c->p - b);
    c->p++;
    return true;
}

/* A whole number, clamped; *is_int false for a fraction or exponent
 * (such a value is not a count; it is skipped). */
static bool number(cursor *c, long long *out, bool *is_int)
{
    ws(c);
    bool neg = c->p < c->end && *c->p == '-';
    if (neg) c->p++;
    if (c->p >= c->end || *c->p < '0' || *c->p > '9') return false;
    long long v = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        if (v <= CCP_USAGE_MAX) v = v * 10 + (*c->p - '0');
        c->p++;
    }
    *is_int = true;
    if (c->p < c->end && (*c->p == '.' || *c->p == 'e' || *c->p == 'E')) {
        *is_int = false;
        if (*c->p == '.') {
            c->p++;
            if (c->p >= c->end || *c->p < '0' || *c->p > '9') return false;
            while (c->p < c->end && *c->p >= '0' && *c->p <= '9') c->p++;
        }
        if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
            c->p++;
            if (c->p < c->end && (*c->p == '+' || *c->p == '-')) c->p++;
            if (c->p >= c->end || *c->p < '0' || *c->p > '9') return false;
            while (c->p < c->end && *c->p >= '0' && *c->p <= '9') c->p++;
        }
    }
    *out = neg ? 0 : v > CCP_USAGE_MAX ? CCP_USAGE_MAX : v;
    return true;
}

static bool word(cursor *c, const char *w)
{
    ws(c);
    size_t n = strlen(w);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, w, n) != 0) return false;
    c->p += n;
    return true;
}

static bool object(cursor *c, report *r, int field_base, int depth);

/* Any value, checked and passed over. */
static bool skip_value(cursor *c, int depth)
{
    if (depth > MAX_DEPTH) return false;
    ws(c);
    if (c->p >= c->end) return false;
    const char *s;
    size_t n;
    long long v;
    bool is_int;
    switch (*c->p) {
    case '"': return string(c, &s, &n);
    case '{': return object(c, NULL, -1, depth + 1);
    case '[':
        c->p++;
        if (eat(c, ']')) return true;
        do {
            if (!skip_value(c, depth + 1)) return false;
        } while (eat(c, ','));
        return eat(c, ']');
    case 't': return word(c, "true");
    case 'f': return word(c, "false");
    case 'n': return word(c, "null");
    default: return number(c, &v, &is_int);
    }
}

static bool key_is(const char *s, size_t n, const char *want)
{
    return strlen(want) == n && memcmp(s, want, n) == 0;
}

/* Which report field a key of the usage object (field_base 0) or of one of
 * its details objects (field_base F_CACHED, F_REASONING) fills; -1 none. */
static int field_of(int field_base, const char *s, size_t n)
{
    if (field_base == 0) {
        if (key_is(s, n, "input_tokens")) return F_INPUT;
        if (key_is(s, n, "output_tokens")) return F_OUTPUT;
        if (key_is(s, n, "cache_read_input_tokens")) return F_CACHE_READ;
        if (key_is(s, n, "cache_creation_input_tokens")) return F_CACHE_CREATION;
    } else if (field_base == F_CACHED && key_is(s, n, "cached_tokens")) {
        return F_CACHED;
    } else if (field_base == F_REASONING && key_is(s, n, "reasoning_tokens")) {
        return F_REASONING;
    }
    return -1;
}

/* An object; r NULL: only checked and passed over. A repeated key: the
 * last one counts (as json-c keeps it). */
static bool object(cursor *c, report *r, int field_base, int depth)
{
    if (depth > MAX_DEPTH || !eat(c, '{')) return false;
    if (eat(c, '}')) return true;
    do {
        const char *k;
        size_t kn;
        if (!string(c, &k, &kn) || !eat(c, ':')) return false;
        int f = r ? field_of(field_base, k, kn) : -1;
        int sub = !r || field_base ? -1
                  : key_is(k, kn, "input_tokens_details") ? F_CACHED
                  : key_is(k, kn, "output_tokens_details") ? F_REASONING
                                                            : -1;
        ws(c);
        if (f >= 0 && c->p < c->end && (*c->p == '-' || (*c->p >= '0' && *c->p <= '9'))) {
            long long v;
            bool is_int;
            if (!number(c, &v, &is_int)) return false;
            if (is_int) {
                r->v[f] = v;
                r->has |= 1u << f;
            } else {
                r->has &= ~(1u << f);
            }
        } else if (sub >= 0 && c->p < c->end && *c->p == '{') {
            if (!object(c, r, sub, depth + 1)) return false;
        } else {
            if (f >= 0) r->has &= ~(1u << f);
            if (!skip_value(c, depth)) return false;
        }
    } while (eat(c, ','));
    return eat(c, '}');
}

/* The last "usage": { ... } of p[0..n), read into r. */
static bool find_usage(const char *p, size_t n, report *r)
{
    static const char key[] = "\"usage\"";
    const char *last = NULL;
    if (!n) return false; /* an empty held body has no buffer at all (p is NULL) */
    for (const char *at = p, *hit; (hit = memmem(at, (size_t)(p + n - at), key, sizeof key - 1)) != NULL;
         at = hit + 1) {
        cursor c = {hit + sizeof key - 1, p + n};
        if (eat(&c, ':') && eat(&c, '{')) last = c.p - 1;
    }
    if (!last) return false;
    cursor c = {last, p + n};
    memset(r, 0, sizeof *r);
    return object(&c, r, 0, 0);
}

#define HAS(r, f) ((r)->has & (1u << (f)))

/* The Messages API's usage object: already disjoint kinds. Each count it
 * names replaces the one seen before. */
static void messages_usage(ccp_usage *u, const report *r)
{
    static const struct {
        int field;
        ccp_token_kind kind;
    } fields[] = {
        {F_INPUT, CCP_TOKENS_INPUT},
        {F_OUTPUT, CCP_TOKENS_OUTPUT},
        {F_CACHE_READ, CCP_TOKENS_CACHE_READ},
        {F_CACHE_CREATION, CCP_TOKENS_CACHE_CREATION},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (HAS(r, fields[i].field)) {
            u->tokens[fields[i].kind] = r->v[fields[i].field];
            u->seen = true;
        }
}

/* The Responses API's usage object: input counts the cached part and output
 * the reasoning part; both are split out. */
static void responses_usage(ccp_usage *u, const report *r)
{
    if (!HAS(r, F_INPUT) && !HAS(r, F_OUTPUT)) return;
    long long in = HAS(r, F_INPUT) ? r->v[F_INPUT] : 0, out = HAS(r, F_OUTPUT) ? r->v[F_OUTPUT] : 0;
    long long cached = HAS(r, F_CACHED) ? r->v[F_CACHED] : 0, reasoning = HAS(r, F_REASONING) ? r->v[F_REASONING] : 0;
    if (cached > in) cached = in;
    if (reasoning > out) reasoning = out;
    u->tokens[CCP_TOKENS_INPUT] = in - cached;
    u->tokens[CCP_TOKENS_CACHE_READ] = cached;
    u->tokens[CCP_TOKENS_OUTPUT] = out - reasoning;
    u->tokens[CCP_TOKENS_REASONING] = reasoning;
    u->reasoning_seen = u->reasoning_seen || HAS(r, F_REASONING);
    u->seen = true;
}

static void read_usage(ccp_usage *u, const char *p, size_t n)
{
    report r;
    if (!find_usage(p, n, &r)) return;
    if (u->api == CCP_USAGE_MESSAGES) messages_usage(u, &r);
    else responses_usage(u, &r);
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

/* An event without an "event:" line (some relays send data lines only):
 * its "type" member, found as "type":"<name>" (the APIs' compact JSON), is
 * its name. */
static event_class classify_unnamed(const ccp_usage *u, const char *data, size_t n)
{
    static const char *const messages[] = {"message_start", "message_delta", "error", NULL};
    static const char *const responses[] = {"response.completed", "response.incomplete", "response.failed", "error",
                                            NULL};
    char want[48];
    for (const char *const *w = u->api == CCP_USAGE_MESSAGES ? messages : responses; *w; w++) {
        int len = snprintf(want, sizeof want, "\"type\":\"%s\"", *w);
        if (memmem(data, n, want, (size_t)len)) return classify(u, *w, strlen(*w));
    }
    return EV_OTHER;
}

void ccp_usage_event(ccp_usage *u, const char *name, size_t name_len, const char *data, size_t data_len)
{
    event_class c = classify(u, name, name_len);
    if (c == EV_UNNAMED) c = classify_unnamed(u, data, data_len);
    if (c == EV_ERROR) u->error_event = true;
    if (c == EV_USAGE) read_usage(u, data, data_len);
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
    read_usage(u, body, n);
}
