/* fuzz/fuzz_model.c: load_model on all three header formats, razor's versions 1 and 2 (every weight
 * type, biases, q/k norms, ALiBi, chat records). A tiny model that loads (< 4 MB, seq_len >= 8) also
 * runs: full cache, 3 tokens as a block then 1; razor cache (or, by the input's size, snapkv or h2o at
 * razor's budget) with f16 keys and values (1 sink, window 2, every other KV head a retrieval head; an
 * ALiBi model: its spans), 5 tokens, compression, then 3 single tokens; then again with bf16 weights
 * (-w bf16; not for q8 files), 3 tokens then 1. */
#include "common.h"

/* forward may refuse a run (NULL) only because the random weights' numbers are not finite */
static int refused(const float *logits) {
    if (logits) return 0;
    if (!strstr(razor_error(), "not finite")) abort();
    return 1;
}

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
        if (!refused(forward(&m, &s, ids, 3, NULL, NULL))) refused(forward(&m, &s, ids + 3, 1, NULL, NULL));
        free_runstate(&s);
        unsigned char retrieval[2 * 1024] = {0};
        for (int i = 0; i < c->n_layers * c->n_kv_heads && i < (int)sizeof retrieval; i += 2) retrieval[i] = 1;
        Policy policies[3] = {POLICY_RAZOR, POLICY_SNAPKV, POLICY_H2O};
        CacheConfig cache = {.policy = policies[size % 3],
                             .kv_type = KV_F16,
                             .n_sink = 1,
                             .window_min = 2,
                             .compression = 2.0f,
                             .profile = NULL};
        HeadProfile marked = {.retrieval = retrieval}, spans = {0};
        if (c->n_layers * c->n_kv_heads <= (int)sizeof retrieval) cache.profile = &marked;
        if (c->pos_encoding == POS_ALIBI && c->dim <= 64 && span_rule(&m, &spans, 1e-3f) == 0) cache.profile = &spans;
        if (build_runstate(&s, &m, 8, 4, &cache) != 0) abort();
        if (!refused(forward(&m, &s, ids, 5, NULL, NULL))) {
            compress_cache(&s, c);
            for (int i = 0; i < 3; i++) if (refused(forward(&m, &s, ids + i, 1, NULL, NULL))) break;
        }
        free_runstate(&s);
        free_profile(&spans);
        if (model_to_bf16(&m) != 0) { /* q8 weights have no -w bf16 */
            if (c->weight_type != WEIGHT_Q8) abort();
            free_model(&m);
            return 0;
        }
        if (build_runstate(&s, &m, 8, 4, NULL) != 0) abort();
        if (!refused(forward(&m, &s, ids, 3, NULL, NULL))) refused(forward(&m, &s, ids + 3, 1, NULL, NULL));
        free_runstate(&s);
    }
    free_model(&m);
    return 0;
}
