#include "adapter.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct ccp_adapter {
    char *name;
    char *version;
    int priority;
    char *description;
};

struct ccp_adapters {
    ccp_adapter *items;
    size_t count;
    const ccp_adapter *fallback;
};

int ccp_adapters_load(ccp_adapters **out, const char *service, const ccp_config *cfg, ccp_buf *err)
{
    (void)service, (void)cfg, (void)err;
    ccp_adapters *a = ccp_xcalloc(1, sizeof *a);
    a->items = ccp_xcalloc(1, sizeof *a->items);
    a->items[0].name = ccp_xstrdup("default");
    a->items[0].version = ccp_xstrdup("1.0.0");
    a->items[0].priority = 0;
    a->items[0].description = ccp_xstrdup("Forwards the request as the client sent it");
    a->count = 1;
    a->fallback = &a->items[0];
    *out = a;
    return CCP_OK;
}

void ccp_adapters_free(ccp_adapters *a)
{
    if (!a) return;
    for (size_t i = 0; i < a->count; i++) {
        free(a->items[i].name);
        free(a->items[i].version);
        free(a->items[i].description);
    }
    free(a->items);
    free(a);
}

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
    (void)body;
    const char *wanted = ccp_request_header(req, "x-client-type");
    if (wanted && *wanted) {
        for (size_t i = 0; i < a->count; i++)
            if (strcasecmp(a->items[i].name, wanted) == 0) return &a->items[i];
        ccp_buf_append_str(err, "x-client-type names no adapter; valid names: ");
        list_names(a, err);
        return NULL;
    }
    return a->fallback;
}

static void json_str(ccp_buf *out, const char *s)
{
    ccp_buf_append_char(out, '"');
    ccp_buf_append_json_escaped(out, s, strlen(s));
    ccp_buf_append_char(out, '"');
}

void ccp_adapters_describe(const ccp_adapters *a, ccp_buf *out)
{
    ccp_buf_append_str(out, "{\"adapters\":[");
    for (size_t i = 0; i < a->count; i++) {
        const ccp_adapter *ad = &a->items[i];
        if (i) ccp_buf_append_char(out, ',');
        ccp_buf_append_str(out, "{\"name\":");
        json_str(out, ad->name);
        ccp_buf_append_str(out, ",\"version\":");
        json_str(out, ad->version);
        ccp_buf_printf(out, ",\"priority\":%d,\"description\":", ad->priority);
        json_str(out, ad->description);
        ccp_buf_append_str(out, ",\"match\":\"fallback\"}");
    }
    ccp_buf_append_str(out, "]}");
}

const char *ccp_adapter_name(const ccp_adapter *ad)
{
    return ad->name;
}

bool ccp_adapter_changes_body(const ccp_adapter *ad)
{
    (void)ad;
    return false;
}

int ccp_adapter_apply(const ccp_adapter *ad, ccp_transform *t, ccp_buf *err)
{
    (void)ad, (void)t, (void)err;
    return CCP_OK;
}
