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
} ccp_json_status;

/* Parses text[0, len) as exactly one JSON value. On CCP_JSON_OK, *out is
 * the value, never NULL, owned by the caller (json_object_put); a bare
 * top-level null or number counts as truncated (json-c cannot tell where a
 * number ends without a byte after it, and null is no object). Otherwise *out is NULL, *at (when not NULL) is the byte offset of the
 * problem (len when truncated), and err (when not NULL) gets the reason,
 * without a trailing newline: "it ends too early", "<json-c's reason> at
 * byte N", or "unexpected data after the value at byte N". */
ccp_json_status ccp_json_parse(const char *text, size_t len, json_object **out, size_t *at, ccp_buf *err);

#endif
