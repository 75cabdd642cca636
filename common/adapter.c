#include "adapter.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "json_fields.h"
#include "json_text.h"
#include "steps.h"

/* The built-in table: conf/adapters.json, compiled in by the Makefile. */
extern const char ccp_builtin_adapters_json[];

typedef enum { RULE_ANY, RULE_ALL, RULE_HEADER_CONTAINS, RULE_HEADER_PREFIX, RULE_HEADER_PRESENT, RULE_BODY_HAS } rule_kind;

typedef struct rule {
    rule_kind kind;
    char *name;  /* header or body field */
    char *value; /* the text a header contains or starts with */
    struct rule *kids;
    size_t nkids;
} rule;

typedef struct step_inst {
    const ccp_step_type *type;
    void *state;
} step_inst;

struct ccp_adapter {
    char *name;
    char *version;
    char *description;
    int priority;
    bool has_rules;
    rule match;
    char *match_json; /* the rules as written, for GET /adapters */
    step_inst *steps;
    size_t nsteps;
    char *step_names_json;
    bool changes_body;
};

struct ccp_adapters {
    json_object *profiles; /* every loaded file's profiles; later files win */
    ccp_adapter *items; /* selection order: priority desc, file order on ties, default last */
    size_t count;
    const ccp_adapter *fallback;
};

/* ---- rules ------------------------------------------------------------- */

static void rule_free(rule *r)
{
    for (size_t i = 0; i < r->nkids; i++) rule_free(&r->kids[i]);
    free(r->kids);
    free(r->name);
    free(r->value);
}

static bool parse_rule(json_object *j, rule *r, int depth, ccp_buf *err)
{
    memset(r, 0, sizeof *r);
    if (depth > 8 || !json_object_is_type(j, json_type_object)) {
        ccp_buf_append_str(err, "each match rule must be an object (nested at most 8 deep)");
        return false;
    }
    json_object *v;
    const char *list_key = json_object_object_get_ex(j, "any", &v) ? "any"
                           : json_object_object_get_ex(j, "all", &v) ? "all"
                                                                      : NULL;
    if (list_key) {
        r->kind = strcmp(list_key, "any") == 0 ? RULE_ANY : RULE_ALL;
        if (json_object_object_length(j) != 1 || !json_object_is_type(v, json_type_array) ||
            json_object_array_length(v) == 0) {
            ccp_buf_printf(err, "\"%s\" must be the rule's only key and hold a non-empty list of rules", list_key);
            return false;
        }
        r->nkids = json_object_array_length(v);
        r->kids = ccp_xcalloc(r->nkids, sizeof *r->kids);
        for (size_t i = 0; i < r->nkids; i++)
            if (!parse_rule(json_object_array_get_idx(v, i), &r->kids[i], depth + 1, err)) return false;
        return true;
    }
    if (json_object_object_get_ex(j, "body_has", &v)) {
        if (json_object_object_length(j) != 1 || !json_object_is_type(v, json_type_string) ||
            !*json_object_get_string(v)) {
            ccp_buf_append_str(err, "\"body_has\" takes a field name and no other key");
            return false;
        }
        r->kind = RULE_BODY_HAS;
        r->name = ccp_xstrdup(json_object_get_string(v));
        return true;
    }
    if (!json_object_object_get_ex(j, "header", &v) || !json_object_is_type(v, json_type_string) ||
        !*json_object_get_string(v)) {
        ccp_buf_append_str(err, "a rule needs \"any\", \"all\", \"body_has\" or \"header\"");
        return false;
    }
    r->name = ccp_xstrdup(json_object_get_string(v));
    json_object *c;
    if (json_object_object_get_ex(j, "contains", &c)) r->kind = RULE_HEADER_CONTAINS;
    else if (json_object_object_get_ex(j, "prefix", &c)) r->kind = RULE_HEADER_PREFIX;
    else if (json_object_object_get_ex(j, "present", &c)) r->kind = RULE_HEADER_PRESENT;
    else {
        ccp_buf_printf(err, "header rule \"%s\" needs \"contains\", \"prefix\" or \"present\"", r->name);
        return false;
    }
    if (json_object_object_length(j) != 2) {
        ccp_buf_printf(err, "header rule \"%s\" takes exactly one test", r->name);
        return false;
    }
    if (r->kind == RULE_HEADER_PRESENT) {
        if (!json_object_is_type(c, json_type_boolean) || !json_object_get_boolean(c)) {
            ccp_buf_printf(err, "header rule \"%s\": \"present\" must be true", r->name);
            return false;
        }
        return true;
    }
    if (!json_object_is_type(c, json_type_string) || !*json_object_get_string(c)) {
        ccp_buf_printf(err, "header rule \"%s\": the text to look for must be a non-empty string", r->name);
        return false;
    }
    r->value = ccp_xstrdup(json_object_get_string(c));
    return true;
}

static char ascii_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c + ('a' - 'A')) : c;
}

/* Rules run on every request, a User-Agent is long and most positions do
 * not even start the needle: the first byte is checked before the call. */
static bool contains_nocase(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    char first = ascii_lower(needle[0]);
    for (; *hay; hay++)
        if (ascii_lower(*hay) == first && strncasecmp(hay, needle, n) == 0) return true;
    return false;
}

/* Header names compare with '-' and '_' alike: CGI folds them. */
static const char *find_header(const ccp_request *req, const char *name)
{
    return ccp_headers_get_folded(&req->headers, name);
}

static bool rule_holds(const rule *r, const ccp_request *req, json_object *body)
{
    const char *h;
    switch (r->kind) {
    case RULE_ANY:
        for (size_t i = 0; i < r->nkids; i++)
            if (rule_holds(&r->kids[i], req, body)) return true;
        return false;
    case RULE_ALL:
        for (size_t i = 0; i < r->nkids; i++)
            if (!rule_holds(&r->kids[i], req, body)) return false;
        return true;
    case RULE_BODY_HAS:
        return body && json_object_object_get_ex(body, r->name, NULL);
    case RULE_HEADER_PRESENT:
        return find_header(req, r->name) != NULL;
    case RULE_HEADER_CONTAINS:
        h = find_header(req, r->name);
        return h && contains_nocase(h, r->value);
    case RULE_HEADER_PREFIX:
        h = find_header(req, r->name);
        return h && strncasecmp(h, r->value, strlen(r->value)) == 0;
    }
    return false;
}

/* ---- loading ------------------------------------------------------------- */

static void adapter_free(ccp_adapter *a)
{
    free(a->name);
    free(a->version);
    free(a->description);
    if (a->has_rules) rule_free(&a->match);
    free(a->match_json);
    for (size_t i = 0; i < a->nsteps; i++)
        if (a->steps[i].state) a->steps[i].type->free(a->steps[i].state);
    free(a->steps);
    free(a->step_names_json);
    memset(a, 0, sizeof *a);
}

/* An adapter's own keys are "fields" in messages (a step's are "parameters"). */
#define FIELD "field"

static bool adapter_string(json_object *j, const char *key, bool required, const char *def, char **out,
                           ccp_buf *err)
{
    const char *v;
    if (!ccp_field_string(j, FIELD, key, required, &v, err)) return false;
    *out = ccp_xstrdup(v ? v : def);
    return true;
}

/* An adapter's steps, in order; a->step_names_json lists them. Fails (false,
 * err says which step and why) on anything but a list of known, valid
 * steps; what was loaded stays in a, freed with it. */
static bool load_steps(json_object *steps, const ccp_step_env *base_env, ccp_adapter *a, ccp_buf *err)
{
    ccp_buf names = {0};
    ccp_buf_append_char(&names, '[');
    if (steps && !json_object_is_type(steps, json_type_array)) {
        ccp_buf_append_str(err, "field \"steps\" must be a list");
        goto fail;
    }
    a->nsteps = steps ? json_object_array_length(steps) : 0;
    if (a->nsteps) a->steps = ccp_xcalloc(a->nsteps, sizeof *a->steps);
    ccp_step_env env = *base_env;
    env.adapter_name = a->name;
    for (size_t i = 0; i < a->nsteps; i++) {
        json_object *s = json_object_array_get_idx(steps, i), *sn;
        if (!json_object_is_type(s, json_type_object) || !json_object_object_get_ex(s, "step", &sn) ||
            !json_object_is_type(sn, json_type_string)) {
            ccp_buf_printf(err, "step %zu must be an object with a \"step\" name", i + 1);
            goto fail;
        }
        const char *sname = json_object_get_string(sn);
        a->steps[i].type = ccp_step_find(sname);
        if (!a->steps[i].type) {
            ccp_buf known = {0};
            ccp_step_names(&known);
            ccp_buf_printf(err, "step %zu: unknown step \"%s\" (known: %s)", i + 1, sname, known.data);
            ccp_buf_free(&known);
            goto fail;
        }
        ccp_buf serr = {0};
        a->steps[i].state = a->steps[i].type->load(s, &env, &serr);
        bool loaded = a->steps[i].state != NULL;
        if (!loaded) ccp_buf_printf(err, "step %zu (%s): %s", i + 1, sname, serr.len ? serr.data : "invalid parameters");
        ccp_buf_free(&serr);
        if (!loaded) goto fail;
        a->changes_body |= a->steps[i].type->changes_body;
        ccp_buf_printf(&names, "%s\"%s\"", i ? "," : "", sname);
    }
    ccp_buf_append_char(&names, ']');
    a->step_names_json = ccp_xstrdup(names.data);
    ccp_buf_free(&names);
    return true;
fail:
    ccp_buf_free(&names);
    return false;
}

static bool load_adapter(json_object *j, const ccp_step_env *base_env, ccp_adapter *a, ccp_buf *err)
{
    static const char *const keys[] = {"name", "version", "priority", "description", "match", "steps", NULL};
    if (!json_object_is_type(j, json_type_object)) {
        ccp_buf_append_str(err, "each adapter must be an object");
        return false;
    }
    if (!adapter_string(j, "name", true, NULL, &a->name, err)) return false;
    if (!*a->name) {
        ccp_buf_append_str(err, "field \"name\" must not be empty");
        return false;
    }
    if (!ccp_fields_check_keys(j, FIELD, keys, NULL, err) ||
        !adapter_string(j, "version", false, "1.0.0", &a->version, err) ||
        !adapter_string(j, "description", false, "", &a->description, err))
        return false;
    long prio;
    if (!ccp_field_int(j, FIELD, "priority", 0, -1000000, 1000000, &prio, err)) return false;
    a->priority = (int)prio;

    json_object *m;
    if (json_object_object_get_ex(j, "match", &m) && !json_object_is_type(m, json_type_null)) {
        if (!parse_rule(m, &a->match, 0, err)) {
            a->has_rules = true;
            return false;
        }
        a->has_rules = true;
        a->match_json = ccp_xstrdup(json_object_to_json_string_ext(m, JSON_C_TO_STRING_PLAIN));
    }

    json_object *steps = NULL;
    json_object_object_get_ex(j, "steps", &steps);
    return load_steps(steps, base_env, a, err);
}

/* The line of a byte offset, for JSON error messages. */
static int line_of(const char *text, size_t offset)
{
    int line = 1;
    for (size_t i = 0; i < offset && text[i]; i++)
        if (text[i] == '\n') line++;
    return line;
}

static json_object *parse_json_text(const char *text, size_t len, const char *origin, ccp_buf *err)
{
    json_object *j;
    size_t at;
    ccp_buf why = {0};
    ccp_json_status st = ccp_json_parse(text, len, &j, &at, &why);
    if (st != CCP_JSON_OK) {
        /* The line is what an editor shows. */
        ccp_buf_printf(err, "%s: not valid JSON: %s near line %d", origin,
                       st == CCP_JSON_TRUNCATED ? "unexpected end of file" : why.data, line_of(text, at));
        ccp_buf_free(&why);
        return NULL;
    }
    ccp_buf_free(&why);
    if (!json_object_is_type(j, json_type_object)) {
        ccp_buf_printf(err, "%s: the top level must be an object with a section per service", origin);
        json_object_put(j);
        return NULL;
    }
    return j;
}

static int find_adapter(const ccp_adapters *t, const char *name)
{
    for (size_t i = 0; i < t->count; i++)
        if (strcasecmp(t->items[i].name, name) == 0) return (int)i;
    return -1;
}

/* Checks a file's top level and adds its profiles to the table's; a profile
 * of a later file replaces a same-named earlier one. */
static bool merge_profiles(ccp_adapters *t, json_object *root, const char *origin, ccp_buf *err)
{
    static const char *const top_keys[] = {"claude", "codex", "profiles", "extends", "description", "$schema", NULL};
    ccp_buf kerr = {0};
    if (!ccp_fields_check_keys(root, "key", top_keys, NULL, &kerr)) {
        ccp_buf_printf(err, "%s: top level: %s", origin, kerr.data);
        ccp_buf_free(&kerr);
        return false;
    }
    ccp_buf_free(&kerr);
    json_object *profiles = NULL;
    json_object_object_get_ex(root, "profiles", &profiles);
    if (profiles && !json_object_is_type(profiles, json_type_object)) {
        ccp_buf_printf(err, "%s: \"profiles\" must be an object of profile names", origin);
        return false;
    }
    if (!t->profiles) t->profiles = json_object_new_object();
    if (profiles) {
        json_object_object_foreach(profiles, pname, pval)
            json_object_object_add(t->profiles, pname, json_object_get(pval));
    }
    return true;
}

/* Adds one file's section to the table; a same-named adapter is replaced.
 * Profiles must be merged first: steps resolve them as they load. */
static bool load_section(ccp_adapters *t, json_object *root, const char *service, const char *origin,
                         const ccp_config *cfg, ccp_buf *err)
{
    json_object *section;
    if (!json_object_object_get_ex(root, service, &section)) return true;
    if (!json_object_is_type(section, json_type_array)) {
        ccp_buf_printf(err, "%s: \"%s\" must be a list of adapters", origin, service);
        return false;
    }
    ccp_step_env env = {.profiles = t->profiles, .cfg = cfg};
    for (size_t i = 0; i < json_object_array_length(section); i++) {
        ccp_adapter a = {0};
        ccp_buf aerr = {0};
        if (!load_adapter(json_object_array_get_idx(section, i), &env, &a, &aerr)) {
            if (a.name) ccp_buf_printf(err, "%s: %s adapter \"%s\": %s", origin, service, a.name, aerr.data);
            else ccp_buf_printf(err, "%s: %s adapter #%zu: %s", origin, service, i + 1, aerr.data);
            ccp_buf_free(&aerr);
            adapter_free(&a);
            return false;
        }
        ccp_buf_free(&aerr);
        int at = find_adapter(t, a.name);
        if (at >= 0) {
            adapter_free(&t->items[at]);
            t->items[at] = a;
        } else {
            t->items = ccp_xrealloc(t->items, (t->count + 1) * sizeof *t->items);
            t->items[t->count++] = a;
        }
    }
    return true;
}

static const char builtin_origin[] = "built-in conf/adapters.json";

static bool load_text(ccp_adapters *t, const char *text, size_t len, const char *service, const char *origin,
                      const ccp_config *cfg, ccp_buf *err)
{
    json_object *root = parse_json_text(text, len, origin, err), *base = NULL, *e;
    if (!root) return false;
    bool ok = true;
    if (json_object_object_get_ex(root, "extends", &e)) {
        /* A user file may build on the built-ins instead of replacing them;
         * its profiles then also apply to the built-in adapters. */
        if (!json_object_is_type(e, json_type_string) || strcmp(json_object_get_string(e), "builtin") != 0) {
            ccp_buf_printf(err, "%s: \"extends\" may only be \"builtin\"", origin);
            ok = false;
        } else {
            const char *b = ccp_builtin_adapters_json;
            base = parse_json_text(b, strlen(b), builtin_origin, err);
            ok = base && merge_profiles(t, base, builtin_origin, err);
        }
    }
    ok = ok && merge_profiles(t, root, origin, err);
    if (ok && base) ok = load_section(t, base, service, builtin_origin, cfg, err);
    ok = ok && load_section(t, root, service, origin, cfg, err);
    json_object_put(base);
    json_object_put(root);
    return ok;
}

static int by_priority(const void *pa, const void *pb)
{
    const ccp_adapter *a = pa, *b = pb;
    bool da = strcasecmp(a->name, "default") == 0, db = strcasecmp(b->name, "default") == 0;
    if (da != db) return da ? 1 : -1;
    return (a->priority < b->priority) - (a->priority > b->priority);
}

int ccp_adapters_load(ccp_adapters **out, const char *service, const ccp_config *cfg, ccp_buf *err)
{
    ccp_adapters *t = ccp_xcalloc(1, sizeof *t);
    *out = NULL;
    bool ok;
    if (cfg->adapters_file) {
        ccp_buf text = {0}, why = {0};
        ok = ccp_buf_read_file(&text, cfg->adapters_file, &why) == CCP_OK;
        if (!ok) ccp_buf_printf(err, "ADAPTERS_FILE=%s %s", cfg->adapters_file, why.data);
        ok = ok && load_text(t, text.data, text.len, service, cfg->adapters_file, cfg, err);
        ccp_buf_free(&text);
        ccp_buf_free(&why);
    } else {
        const char *b = ccp_builtin_adapters_json;
        ok = load_text(t, b, strlen(b), service, builtin_origin, cfg, err);
    }
    if (!ok) {
        ccp_adapters_free(t);
        return CCP_ERR;
    }
    if (find_adapter(t, "default") < 0) {
        /* Every table ends in a plain relay, so selection always succeeds. */
        t->items = ccp_xrealloc(t->items, (t->count + 1) * sizeof *t->items);
        ccp_adapter *d = &t->items[t->count++];
        memset(d, 0, sizeof *d);
        d->name = ccp_xstrdup("default");
        d->version = ccp_xstrdup("1.0.0");
        d->description = ccp_xstrdup("Forwards the request as the client sent it");
        d->step_names_json = ccp_xstrdup("[]");
    }
    /* Stable on ties: qsort is not, so sort by (priority, file position). */
    for (size_t i = 1; i < t->count; i++) {
        ccp_adapter cur = t->items[i];
        size_t j = i;
        while (j > 0 && by_priority(&t->items[j - 1], &cur) > 0) {
            t->items[j] = t->items[j - 1];
            j--;
        }
        t->items[j] = cur;
    }
    t->fallback = &t->items[t->count - 1];
    *out = t;
    return CCP_OK;
}

void ccp_adapters_free(ccp_adapters *a)
{
    if (!a) return;
    for (size_t i = 0; i < a->count; i++) adapter_free(&a->items[i]);
    free(a->items);
    json_object_put(a->profiles);
    free(a);
}

/* ---- selection ------------------------------------------------------------ */

static void list_names(const ccp_adapters *a, ccp_buf *out)
{
    for (size_t i = 0; i < a->count; i++) {
        if (i) ccp_buf_append_str(out, ", ");
        ccp_buf_append_str(out, a->items[i].name);
    }
}

const ccp_adapter *ccp_adapters_select(const ccp_adapters *a, const ccp_request *req, json_object *body,
                                       ccp_buf *err)
{
    const char *wanted = ccp_request_header(req, "x-client-type");
    if (wanted && *wanted) {
        int at = find_adapter(a, wanted);
        if (at >= 0) return &a->items[at];
        ccp_buf_append_str(err, "x-client-type names no adapter; valid names: ");
        list_names(a, err);
        return NULL;
    }
    for (size_t i = 0; i < a->count; i++)
        if (a->items[i].has_rules && rule_holds(&a->items[i].match, req, body)) return &a->items[i];
    return a->fallback;
}

void ccp_adapters_describe(const ccp_adapters *a, ccp_buf *out)
{
    ccp_buf_append_str(out, "{\"adapters\":[");
    for (size_t i = 0; i < a->count; i++) {
        const ccp_adapter *ad = &a->items[i];
        if (i) ccp_buf_append_char(out, ',');
        ccp_buf_append_str(out, "{\"name\":");
        ccp_buf_append_json_string(out, ad->name);
        ccp_buf_append_str(out, ",\"version\":");
        ccp_buf_append_json_string(out, ad->version);
        ccp_buf_printf(out, ",\"priority\":%d,\"description\":", ad->priority);
        ccp_buf_append_json_string(out, ad->description);
        ccp_buf_append_str(out, ",\"selected_by\":");
        ccp_buf_append_json_string(out, ad == a->fallback ? "fallback when no other adapter matches, or x-client-type"
                      : ad->has_rules  ? "match rules, or x-client-type"
                                       : "x-client-type only");
        ccp_buf_printf(out, ",\"match\":%s,\"steps\":%s}", ad->match_json ? ad->match_json : "null",
                       ad->step_names_json);
    }
    ccp_buf_append_str(out, "]}");
}

const char *ccp_adapter_name(const ccp_adapter *ad)
{
    return ad->name;
}

bool ccp_adapter_changes_body(const ccp_adapter *ad)
{
    return ad->changes_body;
}

int ccp_adapter_apply(const ccp_adapter *ad, ccp_transform *t, ccp_buf *err)
{
    for (size_t i = 0; i < ad->nsteps; i++)
        if (ad->steps[i].type->apply(ad->steps[i].state, t, err) != CCP_OK) return CCP_ERR;
    return CCP_OK;
}
