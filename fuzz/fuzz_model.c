/* fuzz/fuzz_model.c: load_model on all three header formats. A tiny model that loads (< 4 MB,
 * seq_len >= 8) also runs: full cache, 3 tokens as a block then 1; razor cache (1 sink, window 2,
 * every other KV head a retrieval head), 5 tokens, compression, then 3 single tokens; then again
 * with bf16 weights (-w bf16), 3 tokens then 1. */
#include "common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_path(".bin");
    fuzz_write(path, data, size);
    Model m;
    int loaded = load_model(&m, path) == 0;
    unlink(path); /* the mapping outlives the name */
    if (!loaded) return 0;
    const Config *c = &m.config;
    if (m.map_size < (4u << 20) && c->seq_len >= 8) {
        RunState s;
        int ids[5] = {c->bos_id, c->vocab_size - 1, 0, c->eos_id, c->vocab_size / 2};
        if (build_runstate(&s, &m, 8, 4, NULL) != 0) abort(); /* 8 <= seq_len: must work */
        if (!forward(&m, &s, ids, 3, NULL, NULL) || !forward(&m, &s, ids + 3, 1, NULL, NULL)) abort();
        free_runstate(&s);
        unsigned char retrieval[2 * 1024] = {0};
        for (int i = 0; i < c->n_layers * c->n_kv_heads && i < (int)sizeof retrieval; i += 2) retrieval[i] = 1;
        CacheConfig cache = {POLICY_RAZOR, 1, 2, 2.0f, c->n_layers * c->n_kv_heads <= (int)sizeof retrieval ? retrieval : NULL};
        if (build_runstate(&s, &m, 8, 4, &cache) != 0) abort();
        if (!forward(&m, &s, ids, 5, NULL, NULL)) abort();
        compress_cache(&s, c);
        for (int i = 0; i < 3; i++) if (!forward(&m, &s, ids + i, 1, NULL, NULL)) abort();
        free_runstate(&s);
        if (model_to_bf16(&m) != 0) abort();
        if (build_runstate(&s, &m, 8, 4, NULL) != 0) abort();
        if (!forward(&m, &s, ids, 3, NULL, NULL) || !forward(&m, &s, ids + 3, 1, NULL, NULL)) abort();
        free_runstate(&s);
    }
    free_model(&m);
    return 0;
}
