/* libFuzzer target: the FastCGI name-value pairs of a PARAMS stream, as
 * any bytes a web server (or whatever stands in its place) may send. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/fcgi_conn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char **env = NULL;
    if (ccp_fcgi_parse_params(data, size, &env)) {
        /* Every string is "NAME=value", NUL-terminated, name non-empty. */
        size_t total = 0;
        for (char **e = env; *e; e++) {
            const char *eq = strchr(*e, '=');
            if (!eq || eq == *e) abort();
            total += strlen(*e);
        }
        if (total > size * 2) abort();
        free(env);
    }
    return 0;
}
