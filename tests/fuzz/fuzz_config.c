/* libFuzzer target: a .env file as any bytes. First the parser alone
 * (ccp_env_parse on the input), then the whole configuration loader as a
 * responder runs it: the input written to a temp file named by
 * CCPROXY_ENV_FILE, every configuration variable unset first (as
 * tests/unit/unit.h's unit_env_clear does), ccp_config_load for the Claude
 * service's names, then the configuration described and printed as
 * --check-config and --print-config-env do, and freed. Invariants: every
 * pair has a non-empty key without '=' or a line break; a failed parse or
 * load says why; the load's outputs are NUL-free text. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../common/buf.h"
#include "../../common/config.h"
#include "fuzz_file.h"
#include "../../common/relay.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void on_pair(void *ctx, const char *key, const char *value)
{
    size_t *pairs = ctx;
    if (!key || !value || !key[0]) abort();
    if (strpbrk(key, "=\n\r")) abort();
    (*pairs)++;
}

static void env_clear(void)
{
    const ccp_config_names *services[] = {&ccp_service_claude.config_names, &ccp_service_codex.config_names};
    for (size_t s = 0; s < 2; s++)
        for (size_t i = 0; i < ccp_config_var_count(); i++) unsetenv(ccp_config_var_name(i, services[s]));
    unsetenv("CCPROXY_ENV_FILE");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The parser alone. */
    size_t pairs = 0;
    ccp_buf err = {0};
    int rc = ccp_env_parse((const char *)data, size, on_pair, &pairs, &err);
    if (rc != CCP_OK && rc != CCP_ERR) abort();
    if (rc == CCP_ERR && err.len == 0) abort();
    if (pairs > size) abort();
    ccp_buf_free(&err);

    /* The loader, from one temp file reused across runs. */
    const char *tmp_path = fuzz_file_write("env", data, size);
    env_clear();
    if (setenv("CCPROXY_ENV_FILE", tmp_path, 1) != 0) abort();

    ccp_config cfg;
    memset(&cfg, 0, sizeof cfg);
    ccp_buf lerr = {0}, out = {0};
    const ccp_config_names *names = &ccp_service_claude.config_names;
    rc = ccp_config_load(&cfg, names, &lerr);
    if (rc != CCP_OK && rc != CCP_ERR) abort();
    if (rc == CCP_ERR && lerr.len == 0) abort();
    if (lerr.len && strlen(lerr.data) != lerr.len) abort();
    ccp_config_describe(&cfg, names, &out);
    if (out.len && strlen(out.data) != out.len) abort();
    ccp_buf_reset(&out);
    ccp_config_print_env(&cfg, names, &out);
    if (out.len && strlen(out.data) != out.len) abort();
    ccp_config_free(&cfg);
    ccp_buf_free(&lerr);
    ccp_buf_free(&out);
    env_clear();
    return 0;
}
