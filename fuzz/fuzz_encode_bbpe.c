/* fuzz/fuzz_encode_bbpe.c: encode arbitrary bytes with the byte-level BPE (RZTK) tokenizers of
 * tests/: the first byte picks Llama 3 / GPT-2 / Qwen2 (NFC), the rest is the text. Unless encode
 * normalizes it (NFC), decoding every token must give back the (normalized) text up to its first NUL. */
#include "common.h"

#ifndef TESTS_DIR
#define TESTS_DIR "../tests"
#endif

static Tokenizer tok[3];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *names[3] = {"bbpe_tokenizer.bin", "bbpe_tokenizer_gpt2.bin", "bbpe_tokenizer_qwen2.bin"};
    for (int i = 0; i < 3; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", TESTS_DIR, names[i]);
        if (load_tokenizer(&tok[i], path, 1998, 1972, 1973) != 0 || !tok[i].byte_level) { fprintf(stderr, "%s\n", razor_error()); exit(1); }
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const Tokenizer *t = &tok[data[0] % 3];
    char *text = malloc(size);
    memcpy(text, data + 1, size - 1);
    text[size - 1] = 0;
    size_t len = strlen(text);
    int *tokens = malloc(encode_room(text) * sizeof(int));
    int n = encode(t, text, 1, tokens);
    if (n < 1 || (size_t)n > encode_room(text) || tokens[0] != t->bos_id) abort();
    char *out = malloc(4 * len + 16), buf[2];
    size_t at = 0;
    for (int i = 1; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= t->vocab_size) abort();
        int n_bytes;
        const char *piece = decode(t, tokens[i - 1], tokens[i], &n_bytes, buf);
        if (n_bytes < 0 || at + (size_t)n_bytes > 4 * len) abort();
        memcpy(out + at, piece, (size_t)n_bytes);
        at += (size_t)n_bytes;
    }
    out[at] = 0;
    if (!t->nfc.decomp && (at != len || memcmp(out, text, len) != 0)) { fprintf(stderr, "round trip mismatch: %zu bytes in, %zu out\n", len, at); abort(); }
    if (t->nfc.decomp && strlen(out) == at) { /* NFC: the pieces spell the normalized text, which encodes to the same ids */
        int *again = malloc(encode_room(out) * sizeof(int)), m = encode(t, out, 1, again);
        if (m != n || memcmp(again, tokens, (size_t)n * sizeof(int)) != 0) { fprintf(stderr, "NFC text does not re-encode to its ids\n"); abort(); }
        free(again);
    }
    free(out); free(tokens); free(text);
    return 0;
}
