/* libFuzzer target: an ADAPTERS_FILE as any bytes. The input is written to
 * a temp file named by the configuration's adapters_file (as
 * tests/unit/test_adapter.c loads a JSON text) and the adapter table built
 * from it for both service sections, "claude" and "codex"
 * (ccp_adapters_load: parse, "extends": "builtin", match rules, steps and
 * their arguments); a table that loads is described and freed. Invariants:
 * a load that fails says why and leaves no table; one that succeeds gives
 * a table whose description is NUL-free JSON. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "../../common/adapter.h"
#include "../../common/buf.h"
#include "../../common/config.h"
#include "fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *tmp_path = fuzz_file_write("adapters", data, size);

    static const char *const services[] = {"claude", "codex"};
    for (size_t s = 0; s < 2; s++) {
        ccp_config cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.codex_env_cwd = "/workspace"; /* ccp_config_load's default */
        cfg.adapters_file = (char *)tmp_path;
        ccp_adapters *a = NULL;
        ccp_buf err = {0};
        int rc = ccp_adapters_load(&a, services[s], &cfg, &err);
        if (rc == CCP_OK) {
            if (!a) abort();
            ccp_buf out = {0};
            ccp_adapters_describe(a, &out);
            if (!out.len || strlen(out.data) != out.len) abort();
            json_object *j = json_tokener_parse(out.data);
            if (!j) abort();
            json_object_put(j);
            ccp_buf_free(&out);
            ccp_adapters_free(a);
        } else {
            if (rc != CCP_ERR || err.len == 0 || a) abort();
        }
        ccp_buf_free(&err);
    }
    return 0;
}
