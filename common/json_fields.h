/* json_fields: reading checked values out of a JSON object, for whatever
 * validates configuration given as JSON (an adapter's fields, a step's
 * parameters). The caller names what the keys are ("field", "parameter"),
 * so a message says "field \"priority\" ..." or "parameter \"name\" ...".
 *
 * Each returns true, or false with one line in err (no trailing newline).
 * Values stay owned by the object. */
#ifndef CCP_JSON_FIELDS_H
#define CCP_JSON_FIELDS_H

#include <json-c/json.h>
#include <stdbool.h>

#include "buf.h"

/* Fails on any key of o that is neither in allowed (NULL-terminated; NULL:
 * none) nor equal to also (NULL: none). */
bool ccp_fields_check_keys(json_object *o, const char *noun, const char *const *allowed, const char *also,
                           ccp_buf *err);
/* *out is NULL when the key is absent (an error only when required). A
 * string holding a NUL (\u0000) fails: the C string would end there. */
bool ccp_field_string(json_object *o, const char *noun, const char *key, bool required, const char **out,
                      ccp_buf *err);
bool ccp_field_bool(json_object *o, const char *noun, const char *key, bool def, bool *out, ccp_buf *err);
/* A whole number in [min, max]; def when the key is absent. */
bool ccp_field_int(json_object *o, const char *noun, const char *key, long def, long min, long max, long *out,
                   ccp_buf *err);

#endif
