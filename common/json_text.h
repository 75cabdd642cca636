/* json_text: JSON text into json-c objects, one way for every caller (the
 * request body, the adapters file, the Codex tools file).
 *
 * Strict RFC 8259: no comments, trailing commas, single quotes or bare
 * words; whitespace may surround the one value, nothing else may. */
#ifndef CCP_JSON_TEXT_H
#define CCP_JSON_TEXT_H

#include <json-c/json.h>
#include <stddef.h>

#include "buf.h"

typedef enum {
    CCP_JSON_OK,
    CCP_JSON_TRUNCATED, /* the text ends inside the value, or holds none */
    CCP_JSON_INVALID,   /* a syntax error */
    CCP_JSON_TRAILING,  /* something after the value (a NUL, for one) */
    CCP_JSON_TOO_DEEP,  /* arrays and objects nested deeper than allowed */
} ccp_json_status;

/* The nesting ccp_json_parse allows (files; a request body has its own,
 * MAX_JSON_DEPTH). */
#define CCP_JSON_DEFAULT_DEPTH 64

/* Parses text[0, len) as exactly one JSON value. On CCP_JSON_OK, *out is
 * the value, never NULL, owned by the caller (json_object_put); a bare
 * top-level null or number counts as truncated (json-c cannot tell where a
 * number ends without a byte after it, and null is no object). Otherwise *out is NULL, *at (when not NULL) is the byte offset of the
 * problem (len when truncated), and err (when not NULL) gets the reason,
 * without a trailing newline: "it ends too early", "<json-c's reason> at
 * byte N", or "unexpected data after the value at byte N". */
ccp_json_status ccp_json_parse(const char *text, size_t len, json_object **out, size_t *at, ccp_buf *err);
/* The same with at most depth levels of arrays and objects (json-c's
 * tokener stops at the first level too deep, before it builds more):
 * CCP_JSON_TOO_DEEP, err "nesting deeper than N levels at byte M". */
ccp_json_status ccp_json_parse_depth(const char *text, size_t len, int depth, json_object **out, size_t *at,
                                     ccp_buf *err);

#endif
