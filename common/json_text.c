#include "json_text.h"

#include <stdbool.h>

static bool is_json_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

ccp_json_status ccp_json_parse(const char *text, size_t len, json_object **out, size_t *at, ccp_buf *err)
{
    return ccp_json_parse_depth(text, len, CCP_JSON_DEFAULT_DEPTH, out, at, err);
}

ccp_json_status ccp_json_parse_depth(const char *text, size_t len, int depth, json_object **out, size_t *at,
                                     ccp_buf *err)
{
    json_tokener *tok = json_tokener_new_ex(depth);
    /* Trailing bytes are ours to report: as such, not as a syntax error. */
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS);
    json_object *v = json_tokener_parse_ex(tok, text ? text : "", (int)len);
    enum json_tokener_error e = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    ccp_json_status st = CCP_JSON_OK;
    if (e == json_tokener_success)
        while (end < len && is_json_space(text[end])) end++;
    if (e == json_tokener_success && end < len) {
        st = CCP_JSON_TRAILING;
        if (err) ccp_buf_printf(err, "unexpected data after the value at byte %zu", end);
    } else if (e == json_tokener_continue || (e == json_tokener_success && !v)) {
        /* A bare null is a success without a value: it ends too early too. */
        st = CCP_JSON_TRUNCATED;
        end = len;
        if (err) ccp_buf_append_str(err, "it ends too early");
    } else if (e == json_tokener_error_depth) {
        st = CCP_JSON_TOO_DEEP;
        if (err) ccp_buf_printf(err, "nesting deeper than %d levels at byte %zu", depth, end);
    } else if (e != json_tokener_success) {
        st = CCP_JSON_INVALID;
        if (err) ccp_buf_printf(err, "%s at byte %zu", json_tokener_error_desc(e), end);
    }
    if (st != CCP_JSON_OK) {
        json_object_put(v);
        v = NULL;
        if (at) *at = end;
    }
    *out = v;
    return st;
}
