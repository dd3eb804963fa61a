/* fuzz/common.h: what the harnesses share: all of razor.c (built with -DRAZOR_NO_MAIN), and a file
 * for each input under /dev/shm (the readers take paths), one per harness and process. */
#include "../razor.c"

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
        data += n;
        size -= (size_t)n;
    }
    close(fd);
}
