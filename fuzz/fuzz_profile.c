/* fuzz/fuzz_profile.c: load_profile for a model of 3 layers x 2 KV heads (4 heads, head_dim 8,
 * dim 32). The first byte picks the format by its value mod 3: 0 .heads, 1 .tsv, 2 .json; the rest is
 * the file. */
#include "common.h"

#ifdef SKIP_KNOWN_BUGS
/* Skips .heads inputs with a line "3 ...": a 4th layer line makes load_profile write past its
 * (layers x kv_heads) arrays (fuzz/regressions/profile-extra-layer-line). Off by default. */
static int known_bug(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1), *save = NULL;
    memcpy(text, data, size);
    text[size] = 0;
    int layer, hit = 0;
    for (char *line = strtok_r(text, "\n", &save); line && !hit; line = strtok_r(NULL, "\n", &save))
        hit = sscanf(line, "%d", &layer) == 1 && layer >= 3;
    free(text);
    return hit;
}
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    static char heads[256], tsv[256], json[256];
    if (!heads[0]) {
        snprintf(heads, sizeof heads, "%s", fuzz_path(".heads"));
        snprintf(tsv, sizeof tsv, "%.*s.tsv", (int)strlen(heads) - 6, heads);
        snprintf(json, sizeof json, "%.*s.json", (int)strlen(heads) - 6, heads);
    }
    const char *path = data[0] % 3 == 0 ? heads : data[0] % 3 == 1 ? tsv : json;
#ifdef SKIP_KNOWN_BUGS
    if (data[0] % 3 == 0 && known_bug(data + 1, size - 1)) return 0;
#endif
    fuzz_write(path, data + 1, size - 1);
    Config c = {.dim = 32, .hidden_dim = 64, .n_layers = 3, .n_heads = 4, .n_kv_heads = 2, .head_dim = 8,
                .vocab_size = 512, .seq_len = 256, .bos_id = 1, .eos_id = 2, .shared_classifier = 1,
                .norm_eps = 1e-5f, .rope_theta = 10000.0f};
    HeadProfile p;
    int r = load_profile(&p, path, &c, 0.15f);
    unlink(path);
    if (r != 0) return 0;
    if (p.n_layers != 3 || p.n_kv_heads != 2) abort();
    for (int i = 0; i < 6; i++) if (p.retrieval[i] > 1) abort();
    free_profile(&p);
    return 0;
}
