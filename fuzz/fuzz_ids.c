/* fuzz/fuzz_ids.c: read_ids with vocab_size 512 and at most 1000 ids. */
#include "common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_path(".ids");
    fuzz_write(path, data, size);
    int *ids = NULL, n = -1;
    int r = read_ids(path, 512, 1000, &ids, &n);
    unlink(path);
    if (r != 0) return 0;
    if (n < 1 || n > 1000) abort();
    for (int i = 0; i < n; i++) if (ids[i] < 0 || ids[i] >= 512) abort();
    free(ids);
    return 0;
}
