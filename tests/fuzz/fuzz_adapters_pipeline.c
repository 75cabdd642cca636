/* libFuzzer target: each built-in adapter pipeline of both services, as a
 * client's headers and JSON body reach it: selection, the steps, the
 * re-serialisation the relay does after them.
 *
 * Input: byte 0 picks the service (bit 0: claude or codex) and how the
 * adapter is chosen (bits 1..3: 0 by the rules alone, k the k-th adapter
 * named in x-client-type, the last value a name no adapter has). Then
 * header lines "name: value" up to an empty line (names folded as the
 * request view folds them; a value with CR is dropped, as the relay refuses
 * that request before any adapter runs); the rest is the body, parsed
 * strictly as the relay does (ccp_json_parse). A body that is no JSON
 * object is selected on as absent, and no steps run (the relay refuses it).
 *
 * Invariants: with a known or no x-client-type an adapter is selected; an
 * unknown name selects none and says why; after the steps the body is
 * still one JSON object that re-serialises and parses back strictly, and no
 * header going upstream holds CR or LF. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>

#include "../../common/adapter.h"
#include "../../common/config.h"
#include "../../common/json_text.h"
#include "../../common/steps.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const claude_names[] = {"claude_code", "cherry_studio", "default", "nonesuch"};
static const char *const codex_names[] = {"codex_cli", "cherry_studio", "custom", "default", "nonesuch"};

static ccp_config cfg;
static ccp_adapters *tables[2];

static void load_tables(void)
{
    if (tables[0]) return;
    memset(&cfg, 0, sizeof cfg);
    cfg.codex_env_cwd = "/workspace"; /* ccp_config_load's default */
    ccp_buf err = {0};
    if (ccp_adapters_load(&tables[0], "claude", &cfg, &err) != CCP_OK) abort();
    if (ccp_adapters_load(&tables[1], "codex", &cfg, &err) != CCP_OK) abort();
    ccp_buf_free(&err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    load_tables();
    if (size < 1) return 0;
    int codex = data[0] & 1;
    size_t pick = (size_t)(data[0] >> 1) & 7;
    const char *const *names = codex ? codex_names : claude_names;
    size_t nnames = codex ? sizeof codex_names / sizeof *codex_names : sizeof claude_names / sizeof *claude_names;
    if (pick > nnames) pick = nnames; /* the last: unknown */
    const char *p = (const char *)data + 1, *end = (const char *)data + size;

    ccp_request req;
    memset(&req, 0, sizeof req);
    req.method = "POST";
    req.path = codex ? "/v1/responses" : "/v1/messages";
    req.query = "";
    req.content_type = "application/json";
    req.content_length = -1;
    ccp_buf name = {0};
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = nl ? nl : end;
        const char *next = nl ? nl + 1 : end;
        if (line_end == p) {
            p = next;
            break;
        }
        const char *colon = memchr(p, ':', (size_t)(line_end - p));
        if (colon && colon > p && !memchr(p, '\0', (size_t)(line_end - p)) && !memchr(p, '\r', (size_t)(line_end - p))) {
            ccp_buf_reset(&name);
            for (const char *c = p; c < colon; c++)
                ccp_buf_append_char(&name, *c == '_' ? '-' : (*c >= 'A' && *c <= 'Z') ? (char)(*c + 32) : *c);
            const char *v = colon + 1;
            while (v < line_end && *v == ' ') v++;
            if (strcmp(name.data, "x-client-type") != 0 || pick == 0)
                ccp_headers_add_n(&req.headers, name.data, name.len, v, (size_t)(line_end - v));
        }
        p = next;
    }
    ccp_buf_free(&name);
    if (pick > 0) {
        ccp_headers_remove(&req.headers, "x-client-type");
        ccp_headers_add(&req.headers, "x-client-type", names[pick - 1]);
    }

    json_object *body = NULL;
    if (ccp_json_parse(p, (size_t)(end - p), &body, NULL, NULL) == CCP_JSON_OK &&
        !json_object_is_type(body, json_type_object)) {
        json_object_put(body);
        body = NULL;
    }

    ccp_buf err = {0};
    const ccp_adapter *ad = ccp_adapters_select(tables[codex], &req, body, &err);
    const char *xct = ccp_headers_get(&req.headers, "x-client-type");
    int known = !xct || !*xct;
    for (size_t i = 0; xct && i + 1 < nnames; i++)
        if (strcasecmp(xct, names[i]) == 0) known = 1;
    if (pick == nnames) known = 0;
    if (known && !ad) abort();
    if (!known && (ad || !err.len)) abort();
    if (ad && pick > 0 && pick < nnames && strcmp(ccp_adapter_name(ad), names[pick - 1]) != 0) abort();

    if (ad && body) {
        ccp_headers up = {0};
        for (size_t i = 0; i < req.headers.count; i++)
            ccp_headers_add(&up, req.headers.items[i].name, req.headers.items[i].value);
        ccp_transform t = {.cfg = &cfg, .req = &req, .client_key = "sk-fuzz", .body = body, .upstream_headers = &up};
        ccp_buf_reset(&err);
        if (ccp_adapter_apply(ad, &t, &err) == CCP_OK) {
            if (!json_object_is_type(body, json_type_object)) abort();
            size_t n;
            const char *text =
                json_object_to_json_string_length(body, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
            json_object *back = NULL;
            if (!text || ccp_json_parse(text, n, &back, NULL, NULL) != CCP_JSON_OK) abort();
            if (!json_object_is_type(back, json_type_object)) abort();
            json_object_put(back);
            for (size_t i = 0; i < up.count; i++)
                if (!ccp_http_header_value_ok(up.items[i].name) || !ccp_http_header_value_ok(up.items[i].value))
                    abort();
        } else if (!err.len) {
            abort(); /* a refusal always says why */
        }
        ccp_headers_free(&up);
    }
    ccp_buf_free(&err);
    json_object_put(body);
    ccp_headers_free(&req.headers);
    return 0;
}
