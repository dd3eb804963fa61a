/* fuzz/common.h: what the harnesses share. Each input is written to a file under /dev/shm (the
 * readers take paths), one file per harness and process. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "../model.h"

static const char *fuzz_path(const char *suffix) {
    static char path[256];
    if (!path[0]) snprintf(path, sizeof path, "/dev/shm/razor_fuzz_%ld%s", (long)getpid(), suffix);
    return path;
}

static void fuzz_write(const char *path, const uint8_t *data, size_t size) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) { perror(path); abort(); }
    while (size > 0) {
        ssize_t n = write(fd, data, size);
        if (n <= 0) { perror(path); abort(); }
        data += n, size -= (size_t)n;
    }
    close(fd);
}
