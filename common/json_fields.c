#include "json_fields.h"

#include <string.h>

bool ccp_fields_check_keys(json_object *o, const char *noun, const char *const *allowed, const char *also,
                           ccp_buf *err)
{
    json_object_object_foreach(o, key, val)
    {
        (void)val;
        bool ok = also && strcmp(key, also) == 0;
        for (const char *const *a = allowed; !ok && a && *a; a++) ok = strcmp(key, *a) == 0;
        if (!ok) {
            ccp_buf_printf(err, "unknown %s \"%s\"", noun, key);
            return false;
        }
    }
    return true;
}

bool ccp_field_string(json_object *o, const char *noun, const char *key, bool required, const char **out,
                      ccp_buf *err)
{
    json_object *v;
    *out = NULL;
    if (!json_object_object_get_ex(o, key, &v)) {
        if (required) ccp_buf_printf(err, "%s \"%s\" is required", noun, key);
        return !required;
    }
    if (!json_object_is_type(v, json_type_string)) {
        ccp_buf_printf(err, "%s \"%s\" must be a string", noun, key);
        return false;
    }
    const char *s = json_object_get_string(v);
    if (strlen(s) != (size_t)json_object_get_string_len(v)) {
        ccp_buf_printf(err, "%s \"%s\" must not contain a NUL character", noun, key);
        return false;
    }
    *out = s;
    return true;
}

bool ccp_field_bool(json_object *o, const char *noun, const char *key, bool def, bool *out, ccp_buf *err)
{
    json_object *v;
    *out = def;
    if (!json_object_object_get_ex(o, key, &v)) return true;
    if (!json_object_is_type(v, json_type_boolean)) {
        ccp_buf_printf(err, "%s \"%s\" must be true or false", noun, key);
        return false;
    }
    *out = json_object_get_boolean(v);
    return true;
}

bool ccp_field_int(json_object *o, const char *noun, const char *key, long def, long min, long max, long *out,
                   ccp_buf *err)
{
    json_object *v;
    *out = def;
    if (!json_object_object_get_ex(o, key, &v)) return true;
    long n = json_object_is_type(v, json_type_int) ? (long)json_object_get_int64(v) : min - 1;
    if (n < min || n > max) {
        ccp_buf_printf(err, "%s \"%s\" must be a whole number from %ld to %ld", noun, key, min, max);
        return false;
    }
    *out = n;
    return true;
}
