/* fuzz/fuzz_encode.c: encode arbitrary bytes with tests/sp512/tokenizer.bin (512 pieces, bos 1,
 * eos 2), decode every token, and check that the decoded bytes are the text (up to its first NUL)
 * unless the text contains U+2581, which encode turns into a space. */
#include "common.h"

#ifndef TOKENIZER_PATH
#define TOKENIZER_PATH "../tests/sp512/tokenizer.bin"
#endif

static Tokenizer tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *path = getenv("RAZOR_TOKENIZER") ? getenv("RAZOR_TOKENIZER") : TOKENIZER_PATH;
    if (load_tokenizer(&tok, path, 512, 1, 2) != 0) { fprintf(stderr, "%s\n", razor_error()); exit(1); }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = 0;
    size_t len = strlen(text);
    int *tokens = malloc((len + 3) * sizeof(int));
    int n = encode(&tok, text, 1, tokens);
    if (n < 1 || (size_t)n > len + 3 || tokens[0] != tok.bos_id) abort();
    char *out = malloc(4 * len + 16), buf[2];
    size_t at = 0;
    for (int i = 1; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= tok.vocab_size) abort();
        int n_bytes;
        const char *piece = decode(&tok, tokens[i - 1], tokens[i], &n_bytes, buf);
        if (n_bytes < 0 || at + (size_t)n_bytes > 4 * len + 8) abort();
        memcpy(out + at, piece, (size_t)n_bytes);
        at += (size_t)n_bytes;
    }
    if (!strstr(text, "\xe2\x96\x81") && (at != len || memcmp(out, text, len) != 0)) {
        fprintf(stderr, "round trip mismatch: %zu bytes in, %zu out\n", len, at);
        abort();
    }
    free(out); free(tokens); free(text);
    return 0;
}
