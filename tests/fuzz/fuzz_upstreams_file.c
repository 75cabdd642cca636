/* libFuzzer target: an UPSTREAMS_FILE as any bytes. The input is written to
 * a temp file named by the configuration's upstreams_file and the pool
 * built from it for both services (ccp_pool_load: parse, the top level,
 * each upstream's fields, env: keys, unique names, the ACCESS_KEYS rule);
 * a pool that loads is ordered for a few keys and models, cooled down,
 * described and freed. Invariants: a load that fails says why and leaves
 * no pool; one that succeeds has 1 to CCP_POOL_MAX upstreams, an order
 * that names each usable one at most once, and descriptions that are
 * NUL-free JSON never showing a key read through env: (unless the input
 * itself holds that text). */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "../../common/buf.h"
#include "../../common/config.h"
#include "../../common/pool.h"
#include "fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char secret[] = "sk-fuzz-env-secret-7f3a";

static void check_json(const ccp_buf *out)
{
    if (!out->len || strlen(out->data) != out->len) abort();
    json_object *j = json_tokener_parse(out->data);
    if (!j) abort();
    json_object_put(j);
}

static void exercise(const ccp_pool *p, const uint8_t *data, size_t size)
{
    size_t n = ccp_pool_count(p);
    if (n < 1 || n > CCP_POOL_MAX) abort();
    static const char *const models[] = {NULL, "claude-sonnet-4-20250514", "gpt-5-codex", "*", ""};
    size_t order[CCP_POOL_MAX];
    for (size_t m = 0; m < sizeof models / sizeof models[0]; m++) {
        for (int k = 0; k < 4; k++) {
            char key[16];
            snprintf(key, sizeof key, "key-%d", k);
            size_t got = ccp_pool_order(p, key, strlen(key), models[m], 1000 + k, order, CCP_POOL_MAX);
            if (got > n) abort();
            unsigned char seen[CCP_POOL_MAX] = {0};
            for (size_t i = 0; i < got; i++) {
                if (order[i] >= n || seen[order[i]]++) abort();
                const char *um;
                if (!ccp_pool_takes(ccp_pool_at(p, order[i]), models[m], &um)) abort();
            }
            if (got) ccp_pool_failed(p, order[0], k == 1 ? 500 : -1, 1000 + k);
        }
    }
    ccp_buf d = {0};
    ccp_pool_describe(p, 1003, &d);
    check_json(&d);
    ccp_buf c = {0};
    ccp_buf_append_char(&c, '{');
    ccp_pool_describe_config(p, &c);
    ccp_buf_append_char(&c, '}');
    check_json(&c);
    bool in_input = memmem(data, size, secret, sizeof secret - 1) != NULL;
    if (!in_input && (strstr(d.data, secret) || strstr(c.data, secret))) abort();
    for (size_t i = 0; i < n; i++) ccp_pool_succeeded(p, i);
    ccp_buf_free(&d);
    ccp_buf_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *tmp_path = fuzz_file_write("upstreams", data, size);
    setenv("FUZZ_POOL_KEY", secret, 1);
    unsetenv("FUZZ_POOL_UNSET");
    static const char *const services[] = {"claude", "codex"};
    for (size_t s = 0; s < 2; s++) {
        ccp_config cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.upstream_base_url = "https://api.example.com";
        cfg.upstreams_file = (char *)tmp_path;
        cfg.access_count = size % 2; /* with and without ACCESS_KEYS */
        ccp_pool *p = NULL;
        ccp_buf err = {0};
        int rc = ccp_pool_load(&p, services[s], &cfg, &err);
        if (rc == CCP_OK) {
            if (!p) abort();
            exercise(p, data, size);
            ccp_pool_free(p);
        } else if (rc != CCP_ERR || err.len == 0 || p) {
            abort();
        }
        ccp_buf_free(&err);
    }
    return 0;
}
