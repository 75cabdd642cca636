/* fuzz_file: the one temp file a loader target writes each input to (a
 * loader reads a path, not bytes). Created once per process, removed at
 * exit; returns its path. */
#ifndef CCP_FUZZ_FILE_H
#define CCP_FUZZ_FILE_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char fuzz_file_path[64];

static void fuzz_file_remove(void)
{
    if (fuzz_file_path[0]) unlink(fuzz_file_path);
}

static const char *fuzz_file_write(const char *name, const unsigned char *data, size_t size)
{
    if (!fuzz_file_path[0]) {
        snprintf(fuzz_file_path, sizeof fuzz_file_path, "/tmp/ccp-fuzz-%s-XXXXXX", name);
        int fd = mkstemp(fuzz_file_path);
        if (fd < 0) abort();
        close(fd);
        atexit(fuzz_file_remove);
    }
    FILE *fp = fopen(fuzz_file_path, "wb");
    if (!fp) abort();
    if (size && fwrite(data, 1, size, fp) != size) abort();
    fclose(fp);
    return fuzz_file_path;
}

#endif
