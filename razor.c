/* razor.c: Llama-family inference in one C file, the reference implementation of RazorAttention
 * (Tang et al., arXiv 2407.15891): retrieval heads keep their whole KV cache; every other head keeps
 * a few sink tokens (the first of the context, where many heads park their attention), a recent window,
 * and one compensation token standing for all it dropped.
 *
 * The first part of this file is the method, whole and plainly written; read it top to bottom:
 *   1. errors and small helpers
 *   2. the model file
 *   3. the neural-net blocks, plainly (a plain matmul, rmsnorm, RoPE, SwiGLU, softmax)
 *   4. the KV cache and RazorAttention:
 *        THE place where each head's cache is decided (choose_head_caches) and the paper's numbers;
 *        its window's length, once the prompt's is known (compress_cache);
 *        THE compensation token (fold_token and the lines after it);
 *        attention over a head's cache, plainly (attention_reference) and online, tile by tile
 *        (attention_online: the flash-attention idea without the machinery);
 *        what happens when a token leaves a compressed head's window (head_compress, head_append)
 *   5. the forward pass, stage by stage
 *   6. the head profiler: which heads are retrieval heads (the probe; ALiBi's span rule)
 *   7. the sampler
 *   8. the generate loop
 * Then the appendices, which a first reading can skip: the files razor reads and writes, the
 * tokenizers, head profiles on disk and in pictures, the other modes (generate, chat, compare,
 * needle, logits), the command line, the fast kernels (threads, vectors, matmul, THE tiled
 * attention loop, 16-bit numbers), and the baselines razor is measured against that drop tokens by
 * attention (SnapKV, H2O).
 * libc + libm; pthreads unless built with -DRAZOR_NO_THREADS.
 */
#define _DEFAULT_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifndef RAZOR_NO_THREADS
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#endif
#include "model.h"

/* What the method part uses from the appendices, declared here so that it can be read first. */
/* the fast kernels (appendix F): out (T, d) = x (T, n) @ w (d, n)^T for up to 3 products sharing x (the
 * same as matmul_reference, section 3); SwiGLU; the thread pool; THE tiled attention loop */
typedef struct { float *out; Matrix w; int d, add; } Product;
void matmul(const float *x, float *xt, int T, int n, const Product *products, int n_products);
static int matmul_padded(int T); /* rows of the scratch xt that matmul fills for T tokens */
static int f32_inputs; /* -A f32: q8 and bf16 weights widened to float32 and multiplied by float32 inputs, not
                          * by inputs rounded to int8 (q8) or, where the CPU multiplies bf16 pairs, bf16 */
static void swiglu(float *hb, const float *hb2, size_t n);
typedef void (*Task)(void *arg, int thread, int n_threads);
void pool_start(int n_threads); /* a no-op when built without pthreads */
void pool_stop(void);
static void pool_run(Task task, void *arg); /* runs task(arg, i, n) on all n threads */
static void split(size_t n, size_t align, int i, int n_threads, size_t *begin, size_t *end);
static int pool_threads;
/* 16-bit numbers (appendix F): bfloat16 and IEEE half, rounded to nearest even */
static float bf16_to_f32(uint16_t h);
static uint16_t f32_to_bf16(float f);
static float f16_to_f32(uint16_t h);
static uint16_t f32_to_f16(float f);
/* the tokenizers (appendix B), and printing tokens as text (appendix D) */
size_t encode_room(const char *text);
int encode(const Tokenizer *t, const char *text, int bos, int *tokens);
const char *decode(const Tokenizer *t, int prev, int token, int *n_bytes, char byte_buf[2]);
static void print_text(const Tokenizer *tok, const int *tokens, int n, int prev, int json);
static int ordinary_tokens(const Tokenizer *t, int *out);
/* the baselines that drop tokens by attention, -c snapkv and h2o (appendix G): SnapKV's observation window
 * (the prompt's last SNAPKV_WINDOW queries choose what stays) and the max-pool kernel that spreads their
 * votes to neighbouring tokens, as its paper's experiments (its code defaults to kernel 5, average pooling) */
#define SNAPKV_WINDOW 32
#define SNAPKV_POOL   7
#define SCORE_QUERIES 8 /* queries whose attention weights are computed together; their scratch: */
#define SCORE_SCRATCH(width, head_dim) ((size_t)SCORE_QUERIES * (width) + (size_t)(head_dim) * ATT_TILE_K)
struct RunState;
static void drop_tokens(struct RunState *s);
static int open_to_read(const char *path, struct stat *st); /* appendix A */
static void observe_attention(struct RunState *s, int layer, int T, int generating);

/* ------------------------------------------------------------------------------------------------
 * 1. Errors and small helpers
 * Functions that read outside input return -1 and leave one line in error_message; main prints it
 * as "razor: <message>" and exits non-zero. Nothing is half-done when they fail. (Reading and writing
 * files: appendix A.) */

static char error_message[1024];

static int fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_message, sizeof error_message, fmt, ap);
    va_end(ap);
    return -1;
}

const char *razor_error(void) { return error_message; }

/* Prints "razor: MESSAGE" on stderr, the form of razor's errors and warnings; returns status (an exit code). */
static int __attribute__((format(printf, 2, 3))) complain(int status, const char *fmt, ...) {
    char message[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    fprintf(stderr, "razor: %s\n", message); /* one write: lines of runs that share stderr do not mix */
    return status;
}
/* The same for the message a failed call left: "razor: <razor_error()>". */
static int report(int status) { return complain(status, "%s", razor_error()); }

static void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) { complain(1, "out of memory (asked for %zu x %zu bytes)", n, size); exit(1); }
    return p;
}

static char *xstrdup(const char *s) { return memcpy(xcalloc(strlen(s) + 1, 1), s, strlen(s) + 1); }

static int min_int(int a, int b) { return a < b ? a : b; }

/* xorshift*: 24 random bits in [0, 1) (the sampler, the probe's tokens, the needle's keys) */
static float random_f32(uint64_t *state) {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (float)((*state * 0x2545F4914F6CDD1Dull) >> 40) / 16777216.0f;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------------------------------------------
 * 2. The model file (formats in model.h). The weights are mmapped and never copied. */

/* Sane upper bounds: a hostile header gets an error, never a giant allocation. */
#define MAX_DIM        65536
#define MAX_HIDDEN     (1 << 20)
#define MAX_LAYERS     1024
#define MAX_HEADS      1024
#define MAX_HEAD_DIM   1024
#define MAX_VOCAB      (1 << 22)
#define MAX_SEQ_LEN    (1 << 24)

/* A header field razor refuses: "PATH: bad header: WHY". */
static int bad_header(const char *path, const char *fmt, ...) {
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return fail("%s: bad header: %s", path, why);
}

static int check_config(const Config *c, const char *path) {
    if (!(c->dim > 0 && c->dim <= MAX_DIM)) return bad_header(path, "dim = %d (must be 1..%d)", c->dim, MAX_DIM);
    if (!(c->hidden_dim > 0 && c->hidden_dim <= MAX_HIDDEN))
        return bad_header(path, "hidden_dim = %d (must be 1..%d)", c->hidden_dim, MAX_HIDDEN);
    if (!(c->n_layers > 0 && c->n_layers <= MAX_LAYERS))
        return bad_header(path, "n_layers = %d (must be 1..%d)", c->n_layers, MAX_LAYERS);
    if (!(c->n_heads > 0 && c->n_heads <= MAX_HEADS))
        return bad_header(path, "n_heads = %d (must be 1..%d)", c->n_heads, MAX_HEADS);
    if (!(c->n_kv_heads > 0 && c->n_kv_heads <= c->n_heads && c->n_heads % c->n_kv_heads == 0))
        return bad_header(path, "n_kv_heads = %d (must divide n_heads = %d)", c->n_kv_heads, c->n_heads);
    if (!(c->head_dim > 0 && c->head_dim <= MAX_HEAD_DIM && c->head_dim % 2 == 0))
        return bad_header(path, "head_dim = %d (must be even, 2..%d)", c->head_dim, MAX_HEAD_DIM);
    if (!(c->vocab_size > 0 && c->vocab_size <= MAX_VOCAB))
        return bad_header(path, "vocab_size = %d (must be 1..%d)", c->vocab_size, MAX_VOCAB);
    if (!(c->seq_len > 0 && c->seq_len <= MAX_SEQ_LEN))
        return bad_header(path, "seq_len = %d (must be 1..%d)", c->seq_len, MAX_SEQ_LEN);
    if (!(c->add_bos == 0 || c->add_bos == 1)) return bad_header(path, "add_bos = %d (0 or 1)", c->add_bos);
    if (!(c->bos_id >= (c->add_bos ? 0 : -1) && c->bos_id < c->vocab_size))
        return bad_header(path, "bos_id = %d (vocab_size %d, add_bos %d)", c->bos_id, c->vocab_size, c->add_bos);
    if (!(c->eos_id >= 0 && c->eos_id < c->vocab_size))
        return bad_header(path, "eos_id = %d (vocab_size %d)", c->eos_id, c->vocab_size);
    if (!(isfinite(c->norm_eps) && c->norm_eps > 0 && c->norm_eps < 1))
        return bad_header(path, "norm_eps = %g", c->norm_eps);
    if (!(isfinite(c->rope_theta) && c->rope_theta >= 1)) return bad_header(path, "rope_theta = %g", c->rope_theta);
    if (!(c->rope_scaling == 0 || c->rope_scaling == 1))
        return bad_header(path, "rope_scaling = %d (0 none, 1 llama3)", c->rope_scaling);
    if (c->rope_scaling == 1) {
        if (!(isfinite(c->rope_factor) && c->rope_factor >= 1))
            return bad_header(path, "rope_factor = %g", c->rope_factor);
        if (!(isfinite(c->rope_low_freq_factor) && isfinite(c->rope_high_freq_factor) && c->rope_low_freq_factor > 0 &&
              c->rope_high_freq_factor > c->rope_low_freq_factor))
            return bad_header(path, "rope low/high freq factors = %g/%g", c->rope_low_freq_factor,
                              c->rope_high_freq_factor);
        if (!(c->rope_original_context > 0))
            return bad_header(path, "rope_original_context = %d", c->rope_original_context);
    }
    if (!(c->weight_type >= WEIGHT_F32 && c->weight_type <= WEIGHT_Q8))
        return bad_header(path, "weight_type = %d (0 f32, 1 bf16, 2 q8)", c->weight_type);
    if (c->weight_type == WEIGHT_Q8 &&
        (c->dim % Q8_GROUP || c->hidden_dim % Q8_GROUP || (c->n_heads * c->head_dim) % Q8_GROUP))
        return bad_header(path, "q8 weights need dim, hidden_dim and n_heads * head_dim to be multiples of %d",
                          Q8_GROUP);
    if (!(c->pos_encoding == POS_ROPE || c->pos_encoding == POS_ALIBI))
        return bad_header(path, "pos_encoding = %d (0 rope, 1 alibi)", c->pos_encoding);
    if (!(c->qkv_bias == 0 || c->qkv_bias == 1)) return bad_header(path, "qkv_bias = %d (0 or 1)", c->qkv_bias);
    if (!(c->qk_norm == 0 || c->qk_norm == 1)) return bad_header(path, "qk_norm = %d (0 or 1)", c->qk_norm);
    static const int tokens_needed[] = {0, 3, 2}; /* CHAT_LLAMA2, CHAT_LLAMA3, CHAT_CHATML */
    if (!(c->chat_template >= CHAT_LLAMA2 && c->chat_template <= CHAT_CHATML))
        return bad_header(path, "chat_template = %d (0 llama2, 1 llama3, 2 chatml)", c->chat_template);
    for (int i = 0; i < 4; i++) {
        int id = c->chat_tokens[i], needed = i < tokens_needed[c->chat_template];
        if (needed ? !(id >= 0 && id < c->vocab_size) : id != -1)
            return bad_header(path, "chat_tokens[%d] = %d (%s)", i, id,
                              needed ? "the template needs a token id below vocab_size" : "unused: must be -1");
    }
    return 0;
}

/* Walks the tensors of a file in order (model.h), from the first byte after the header: each tensor's
 * offset and size follow from the config, the format and the weight type. With base set it points the
 * weights into the mapped file; with base NULL it only measures (the file's expected size). */
typedef struct {
    char *base;              /* the mapped file, or NULL */
    size_t at;               /* offset of the next tensor */
    size_t align;            /* version 2 and later: TENSOR_ALIGN; older files: 1 (no padding) */
    int weight_type;
} Cursor;

static size_t align_up(size_t n, size_t align) { return (n + align - 1) / align * align; }

/* Bytes per element of a matrix of each WEIGHT_* type (q8: the int8 values; the scales come after). */
static size_t weight_bytes(int type) { return type == WEIGHT_F32 ? sizeof(float) : type == WEIGHT_BF16 ? 2 : 1; }

static float *take_floats(Cursor *c, size_t n) {
    c->at = align_up(c->at, c->align);
    float *p = c->base ? (float *)(c->base + c->at) : NULL;
    c->at += n * sizeof(float);
    return p;
}

static Matrix take_matrix(Cursor *c, size_t n) {
    c->at = align_up(c->at, c->align);
    Matrix m = {c->base ? c->base + c->at : NULL, NULL, c->weight_type, n};
    c->at += n * weight_bytes(c->weight_type);
    if (c->weight_type == WEIGHT_Q8) m.scale = take_floats(c, n / Q8_GROUP);
    return m;
}

/* Points the weights into the mapped file (or, base NULL, measures), in the order each format stores
 * them (model.h). Returns the bytes from the header's end to the last tensor's. */
static size_t map_weights(Model *m, char *base) {
    Config *c = &m->config;
    TransformerWeights *w = &m->weights;
    size_t dim = (size_t)c->dim, layers = (size_t)c->n_layers, hidden = (size_t)c->hidden_dim;
    size_t V = (size_t)c->vocab_size;
    size_t q_dim = (size_t)c->n_heads * c->head_dim, kv_dim = (size_t)c->n_kv_heads * c->head_dim;
    Cursor cur = {base, 0, m->version >= 2 ? TENSOR_ALIGN : 1, c->weight_type};
    memset(w, 0, sizeof *w);
    if (m->format == FORMAT_LLAMA2C_V1) {
        w->rms_att_weight = take_floats(&cur, layers * dim);
        w->rms_ffn_weight = take_floats(&cur, layers * dim);
        w->rms_final_weight = take_floats(&cur, dim);
        w->token_embedding = take_matrix(&cur, V * dim);
    } else {
        w->token_embedding = take_matrix(&cur, V * dim);
        w->rms_att_weight = take_floats(&cur, layers * dim);
    }
    w->wq = take_matrix(&cur, layers * q_dim * dim);
    w->wk = take_matrix(&cur, layers * kv_dim * dim);
    w->wv = take_matrix(&cur, layers * kv_dim * dim);
    w->wo = take_matrix(&cur, layers * dim * q_dim);
    if (m->format != FORMAT_LLAMA2C_V1) w->rms_ffn_weight = take_floats(&cur, layers * dim);
    w->w1 = take_matrix(&cur, layers * hidden * dim);
    w->w2 = take_matrix(&cur, layers * dim * hidden);
    w->w3 = take_matrix(&cur, layers * hidden * dim);
    if (m->format != FORMAT_LLAMA2C_V1) w->rms_final_weight = take_floats(&cur, dim);
    if (m->format == FORMAT_LLAMA2C_V0) take_floats(&cur, (size_t)c->seq_len * c->head_dim); /* freq_cis: skipped */
    if (c->qkv_bias) {
        w->bq = take_floats(&cur, layers * q_dim);
        w->bk = take_floats(&cur, layers * kv_dim);
        w->bv = take_floats(&cur, layers * kv_dim);
    }
    if (c->qk_norm) {
        w->q_norm = take_floats(&cur, layers * c->head_dim);
        w->k_norm = take_floats(&cur, layers * c->head_dim);
    }
    w->wcls = c->shared_classifier ? w->token_embedding : take_matrix(&cur, V * dim);
    return cur.at;
}

/* RoPE frequencies freq_i = theta^(-2i/head_dim), with Llama 3 scaling if the header asks for it. */
static void compute_rope_freq(Model *m) {
    const Config *c = &m->config;
    int half = c->head_dim / 2;
    m->rope_freq = xcalloc((size_t)half, sizeof(float));
    for (int i = 0; i < half; i++) {
        double freq = 1.0 / pow(c->rope_theta, (2.0 * i) / c->head_dim);
        if (c->rope_scaling == 1) {
            double wavelen = 2.0 * M_PI / freq;
            double low_wavelen = c->rope_original_context / c->rope_low_freq_factor;
            double high_wavelen = c->rope_original_context / c->rope_high_freq_factor;
            if (wavelen > low_wavelen) {
                freq /= c->rope_factor;
            } else if (wavelen >= high_wavelen) {
                double smooth = (c->rope_original_context / wavelen - c->rope_low_freq_factor) /
                                (c->rope_high_freq_factor - c->rope_low_freq_factor);
                freq = (1 - smooth) * freq / c->rope_factor + smooth * freq;
            }
        }
        m->rope_freq[i] = (float)freq;
    }
}

/* ALiBi (Press et al., "Train Short, Test Long"): no rotation; the score of a query at position i for
 * the key at position j gets -slope_h * (i - j). The slopes of n heads, for n a power of two, are the
 * geometric sequence 2^(-8/n), 2^(-16/n), ..., 2^-8; for other n, the sequence of the power of two p
 * just below n, then every other slope of the sequence for 2p (the odd powers) until there are n. */
void alibi_slopes(float *slope, int n) {
    int p = 1;
    while (p * 2 <= n) p *= 2;
    for (int h = 0; h < n; h++)
        slope[h] = (float)(h < p ? pow(2.0, -8.0 * (h + 1) / p) : pow(2.0, -8.0 * (2 * (h - p) + 1) / (2 * p)));
}

static int32_t read_i32(const unsigned char *p) { int32_t v; memcpy(&v, p, 4); return v; }

/* Fills the config from a header; defaults are llama2.c's for the fields its headers lack. */
static int parse_header(Model *m, const unsigned char *h, size_t file_size, const char *path) {
    Config *c = &m->config;
    *c = (Config){.norm_eps = 1e-5f, .rope_theta = 10000.0f, .bos_id = 1, .eos_id = 2, .chat_tokens = {-1, -1, -1, -1},
                  .add_bos = 1};
    uint32_t magic = (uint32_t)read_i32(h);
    const unsigned char *dims = h; /* the 7 llama2.c ints */
    if (magic == RAZOR_MAGIC || magic == LLAMA2C_MAGIC) {
        if (file_size < HEADER_BYTES)
            return fail("%s: truncated: %zu bytes, shorter than its %d-byte header", path, file_size, HEADER_BYTES);
        int version = read_i32(h + 4);
        if (magic == RAZOR_MAGIC) {
            if (version < 1 || version > RAZOR_VERSION)
                return fail("%s: razor format version %d, this build reads versions 1 to %d", path, version,
                            RAZOR_VERSION);
            RazorHeader r;
            memcpy(&r, h, sizeof r);
            *c = (Config){r.dim, r.hidden_dim, r.n_layers, r.n_heads, r.n_kv_heads, r.head_dim, r.vocab_size, r.seq_len,
                          r.bos_id, r.eos_id, r.shared_classifier, r.norm_eps, r.rope_theta, r.rope_scaling,
                          r.rope_factor, r.rope_low_freq_factor, r.rope_high_freq_factor, r.rope_original_context,
                          .chat_tokens = {-1, -1, -1, -1}, .add_bos = version >= 3 ? r.add_bos : 1};
            if (r.shared_classifier != 0 && r.shared_classifier != 1)
                return fail("%s: bad header: shared_classifier = %d (must be 0 or 1)", path, r.shared_classifier);
            m->format = FORMAT_RAZOR;
            m->version = version;
            if (version >= 2) {
                c->weight_type = r.weight_type;
                c->pos_encoding = r.pos_encoding;
                c->qkv_bias = r.qkv_bias;
                c->qk_norm = r.qk_norm;
                c->chat_template = r.chat_template;
                memcpy(c->chat_tokens, r.chat_tokens, sizeof c->chat_tokens);
                if (r.q8_group != (r.weight_type == WEIGHT_Q8 ? Q8_GROUP : 0))
                    return bad_header(path, "q8_group = %d (must be %d for q8 weights, else 0)", r.q8_group,
                                      r.weight_type == WEIGHT_Q8 ? Q8_GROUP : 0);
            }
            return check_config(c, path);
        }
        if (version != 1)
            return fail("%s: llama2.c file version %d is not supported (razor reads versions 0 and 1, float32)", path,
                        version);
        dims = h + 8;
        c->shared_classifier = h[36];
        if (c->shared_classifier > 1) return fail("%s: bad header: shared_classifier = %d", path, c->shared_classifier);
        m->format = FORMAT_LLAMA2C_V1;
    } else {
        m->format = FORMAT_LLAMA2C_V0;
    }
    int *fields[7] = {&c->dim, &c->hidden_dim, &c->n_layers, &c->n_heads, &c->n_kv_heads, &c->vocab_size, &c->seq_len};
    for (int i = 0; i < 7; i++) *fields[i] = read_i32(dims + 4 * i);
    if (m->format == FORMAT_LLAMA2C_V0) {
        c->shared_classifier = c->vocab_size > 0; /* negative vocab_size: untied classifier */
        if (c->vocab_size < 0 && c->vocab_size != INT_MIN) c->vocab_size = -c->vocab_size;
    }
    c->head_dim = c->n_heads > 0 && c->dim % c->n_heads == 0 ? c->dim / c->n_heads : 0;
    int status = check_config(c, path);
    if (status == 0 || m->format != FORMAT_LLAMA2C_V0) return status;
    char why[sizeof error_message];
    const char *reason = strstr(error_message, "bad header: ");
    snprintf(why, sizeof why, "%s", reason ? reason + 12 : "");
    return fail("%s: not a model file: no razor or llama2.c magic, and not a valid llama2.c version 0 header (%s)",
                path, why);
}

int load_model(Model *m, const char *path) {
    memset(m, 0, sizeof *m);
    struct stat st;
    int fd = open_to_read(path, &st); /* (appendix A) */
    if (fd < 0) return -1;
    if (!S_ISREG(st.st_mode)) { close(fd); return fail("%s: not a regular file", path); }
    size_t file_size = (size_t)st.st_size;
    if (file_size < 28) { close(fd); return fail("%s: %zu bytes, too small to be a model file", path, file_size); }
    void *map = mmap(NULL, file_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int mmap_errno = errno;
    close(fd);
    if (map == MAP_FAILED) return fail("%s: mmap failed: %s", path, strerror(mmap_errno));
    if (parse_header(m, map, file_size, path) != 0) { munmap(map, file_size); return -1; }
    size_t header = m->format == FORMAT_LLAMA2C_V0 ? 28 : HEADER_BYTES;
    size_t expected = header + map_weights(m, NULL);
    if (file_size != expected) {
        munmap(map, file_size);
        return fail("%s: %s: the header implies %zu bytes, the file has %zu", path,
                    file_size < expected ? "truncated" : "trailing bytes", expected, file_size);
    }
    m->map = map;
    m->map_size = file_size;
    map_weights(m, (char *)map + header);
    if (m->config.pos_encoding == POS_ALIBI) {
        m->alibi_slope = xcalloc((size_t)m->config.n_heads, sizeof(float));
        alibi_slopes(m->alibi_slope, m->config.n_heads);
    } else {
        compute_rope_freq(m);
    }
    return 0;
}

void free_model(Model *m) {
    if (m->map) munmap(m->map, m->map_size);
    free(m->bf16); free(m->rope_freq); free(m->alibi_slope);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------------------------------------------
 * 3. Neural-net blocks, plainly. Each is written here as the definition of what it computes; the
 * forward pass calls the fast versions of matmul and SwiGLU (appendix F), which the tests hold to
 * these. */

/* Element i of a weight matrix, whatever its type (model.h: float32, bfloat16, or int8 times its group's scale). */
static inline float matrix_value(Matrix w, size_t i) {
    if (w.type == WEIGHT_BF16) return bf16_to_f32(((const uint16_t *)w.data)[i]);
    if (w.type == WEIGHT_Q8) return (float)((const int8_t *)w.data)[i] * w.scale[i / Q8_GROUP];
    return ((const float *)w.data)[i];
}

/* The part of a stacked matrix from element `offset` on (one layer's). */
static Matrix matrix_at(Matrix w, size_t offset) {
    w.data = (const char *)w.data + offset * weight_bytes(w.type);
    if (w.type == WEIGHT_Q8) w.scale += offset / Q8_GROUP;
    w.n -= offset;
    return w;
}

/* out (T, d) = x (T, n) @ w (d, n)^T: each token's x times each weight row. matmul() computes the same
 * for a block of tokens, reading each weight once per block (appendix F); for q8 weights, and for bf16
 * ones on CPUs that multiply bf16 pairs, it first rounds x to the weights' type (-A f32: not). */
void matmul_reference(float *out, const float *x, Matrix w, int T, int n, int d) {
    for (int t = 0; t < T; t++)
        for (int i = 0; i < d; i++) {
            float sum = 0;
            for (int j = 0; j < n; j++) sum += matrix_value(w, (size_t)i * n + j) * x[(size_t)t * n + j];
            out[(size_t)t * d + i] = sum;
        }
}

/* out = x / rms(x) * weight, rms(x) = sqrt(mean(x^2) + eps) */
void rmsnorm(float *out, const float *x, const float *weight, int n, float eps) {
    float ss = 0;
    for (int j = 0; j < n; j++) ss += x[j] * x[j];
    ss = 1.0f / sqrtf(ss / n + eps);
    for (int j = 0; j < n; j++) out[j] = weight[j] * (ss * x[j]);
}

/* Rotates the (2i, 2i+1) pairs of each head of vec (n_heads, head_dim) by the angles of one position:
 * cos_row[i], sin_row[i] of pos * freq_i (model.h: RoPE). */
static void rope(float *vec, int n_heads, int head_dim, const float *cos_row, const float *sin_row) {
    for (int h = 0; h < n_heads; h++) {
        float *v = vec + (size_t)h * head_dim;
        for (int i = 0; i < head_dim / 2; i++) {
            float v0 = v[2 * i], v1 = v[2 * i + 1];
            v[2 * i] = v0 * cos_row[i] - v1 * sin_row[i];
            v[2 * i + 1] = v0 * sin_row[i] + v1 * cos_row[i];
        }
    }
}

/* SwiGLU's gate: hb = silu(hb) * hb2, silu(v) = v / (1 + e^-v). swiglu() is the same, VEC at a time. */
void swiglu_reference(float *hb, const float *hb2, size_t n) {
    for (size_t i = 0; i < n; i++) hb[i] = hb[i] / (1.0f + expf(-hb[i])) * hb2[i];
}

int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) if (v[i] > v[best]) best = i;
    return best;
}

/* x = softmax(x) = e^(x - max) / sum e^(x - max): subtracting the max changes nothing but keeps e^ finite */
static void softmax(float *x, int n) {
    float max = x[argmax(x, n)], sum = 0;
    for (int i = 0; i < n; i++) { x[i] = expf(x[i] - max); sum += x[i]; }
    for (int i = 0; i < n; i++) x[i] /= sum;
}

/* ------------------------------------------------------------------------------------------------
 * 4. The KV cache and RazorAttention. The cache belongs to KV heads: one HeadCache per (layer, KV
 * head), shared by the query heads of its group (GQA/MQA). Here: the place where each head's cache
 * is decided, the compensation token, attention over a head's cache (plainly, then online), and what
 * happens to a token that leaves a compressed head's window. */

/* The cache policies (-c): RazorAttention and its baselines (the last two drop tokens by attention:
 * appendix G). */
typedef enum { POLICY_FULL, POLICY_RAZOR, POLICY_STREAMING, POLICY_NOCOMP, POLICY_SNAPKV, POLICY_H2O } Policy;
enum { N_POLICIES = 6 };
static int drops_by_attention(Policy p) { return p == POLICY_SNAPKV || p == POLICY_H2O; }

/* How keys and values are stored (-K): float32, or 16 bits, bfloat16 or IEEE half. */
typedef enum { KV_F32, KV_BF16, KV_F16 } KVType;

typedef struct {
    Policy policy;
    KVType kv_type;
    int n_sink;                 /* N0: the first tokens every compressed head keeps (attention sinks) */
    int window_min;             /* S0 */
    float compression;          /* C */
    const HeadProfile *profile; /* which heads are retrieval heads and, for ALiBi models, each head's span
                                   (the distance beyond which its attention is negligible); NULL: none */
} CacheConfig;

/* A head's cache is in one of four states:
 *   RETRIEVAL_HEAD   a retrieval head's cache: every token, in order (slot i = token i). The profile's
 *                    retrieval heads under -c razor and nocomp; every head under -c full; none under
 *                    -c streaming, snapkv and h2o.
 *   SHORT_HEAD       a head to be compressed that is not compressed yet: while a prompt runs (with full
 *                    attention), and after one of fewer than sinks + window tokens (snapkv, h2o: of at
 *                    most their budget). Every token in order, nothing dropped, so exactly full attention.
 *   COMPRESSED_HEAD  [n_sink sinks | compensation slot (razor only) | window ring of up to `window`
 *                    tokens, the oldest at window_start + ring_start]; every token in between was
 *                    dropped (N_d of them).
 *   SELECTED_HEAD    the baselines' cache (-c snapkv, h2o; appendix G): the tokens their attention scores
 *                    kept, in position order, nothing folded; later tokens append after them.
 * Slots hold keys (post-RoPE) and values in kv_type; the keys transposed tile by tile for the attention
 * loop: slot p, dimension d is key_tiles[p / ATT_TILE_K][d][p % ATT_TILE_K]. Each slot also has the
 * position of its token (ALiBi's distances need it: a ring and the compensation slot are not in
 * position order). */
typedef enum { RETRIEVAL_HEAD, SHORT_HEAD, COMPRESSED_HEAD, SELECTED_HEAD } HeadState;

typedef struct {
    KVType kv_type;
    HeadState state;
    int compensate;             /* a compressed head keeps a compensation slot for the dropped tokens */
    int n_sink;
    int span;                   /* ALiBi: this head's window (its span); 0: L = max(S0, N / C) */
    int window;                 /* the window it keeps once compressed; set by head_compress, 0 until then */
    int n;                      /* slots in use */
    int ring_start;
    int n_dropped;              /* N_d */
    float *key_sum, *value_sum; /* (head_dim) float32 sums of the dropped keys and values */
    double position_sum;        /* and of their positions */
    void *key_tiles;            /* (slots / ATT_TILE_K, head_dim, ATT_TILE_K) of kv_type */
    void *values;               /* (slots, head_dim) of kv_type */
    float *position;            /* (slots) the position of each slot's token; the compensation slot: their mean */
    double *score;              /* -c h2o: (slots) the attention each slot's token has received so far; else NULL */
    int slots;                  /* allocated, a multiple of ATT_TILE_K */
} HeadCache;

/* The paper's numbers (RazorAttention, arXiv 2407.15891, and the authors' code): the defaults of -S,
 * -W, -C, -R, -E, the probe's block length, and the eps of the ALiBi span rule. */
#define SINKS_N0           4     /* sink tokens every compressed head keeps (the authors' code, small models) */
#define WINDOW_S0          64    /* S0: a compressed head keeps the last L = max(S0, N / C) tokens of a prompt of
                                    N; the paper's production value is 4000, scaled down for small contexts */
#define COMPRESSION_C      5.0f  /* C, as the paper */
#define INDUCTION_FRACTION 0.14f /* the top 14% of KV heads by induction score are retrieval heads (the paper) */
#define ECHO_FRACTION      0.01f /* and the top 1% by echo score (the paper) */
#define PROBE_K            2500  /* the probe's random tokens (the paper); fewer for small contexts or
                                    vocabularies, section 6 */
#define SPAN_EPS           1e-3f /* ALiBi: the attention a head's span may leave out. The paper names no value;
                                    razor's, below bfloat16's relative precision (2^-8): less than rounding
                                    the weights moves */

/* THE place where each head's cache is decided, from the policy (-c) and the head profile (section 6):
 *   full       every head keeps every token, as a retrieval head does
 *   razor      the profile's retrieval heads keep every token; every other head is compressed to sinks
 *              + window + a compensation token (with an ALiBi profile, the window is the head's span);
 *              with no profile every head is compressed (the command line always has one: appendix E)
 *   nocomp     the same without the compensation token (the paper's ablation)
 *   streaming  every head is compressed to sinks + window, no compensation token (StreamingLLM)
 *   snapkv, h2o  every head keeps what razor keeps on average per KV head, chosen token by token by
 *              attention (SnapKV: the prompt's last queries; H2O: all queries so far): appendix G
 * Head i is (layer, KV head) = (i / n_kv_heads, i % n_kv_heads), as the profile stores them. How long a
 * compressed head's window is, L = max(S0, N / C), is known once the prompt's N is: compress_cache. */
static void choose_head_caches(HeadCache *heads, int n_caches, const CacheConfig *cache) {
    const HeadProfile *p = cache->profile;
    int uses_profile = (cache->policy == POLICY_RAZOR || cache->policy == POLICY_NOCOMP) && p && p->retrieval;
    for (int i = 0; i < n_caches; i++) {
        HeadCache *h = &heads[i];
        int retrieval = cache->policy == POLICY_FULL || (uses_profile && p->retrieval[i]);
        h->state = retrieval ? RETRIEVAL_HEAD : SHORT_HEAD;
        h->compensate = cache->policy == POLICY_RAZOR && !retrieval;
        h->n_sink = cache->n_sink;
        h->span = uses_profile && p->span ? p->span[i] : 0;
    }
}

/* One key or value number as the cache stores it, and back (the conversions: appendix F). bfloat16
 * keeps float32's range with 8 bits of precision; IEEE half has 11 bits and a range of +-65504. */
static size_t kv_size(KVType type) { return type == KV_F32 ? sizeof(float) : sizeof(uint16_t); }

static float kv_get(const void *p, size_t i, KVType type) {
    if (type == KV_BF16) return bf16_to_f32(((const uint16_t *)p)[i]);
    if (type == KV_F16) return f16_to_f32(((const uint16_t *)p)[i]);
    return ((const float *)p)[i];
}

static void kv_put(void *p, size_t i, float v, KVType type) {
    if (type == KV_BF16) ((uint16_t *)p)[i] = f32_to_bf16(v);
    else if (type == KV_F16) ((uint16_t *)p)[i] = f32_to_f16(v);
    else ((float *)p)[i] = v;
}

static int round_to_tile(int slots) { return (slots + ATT_TILE_K - 1) / ATT_TILE_K * ATT_TILE_K; }

/* Sets the head's storage to `slots` slots (rounded up to whole key tiles); new slots are zero. */
static int reserve_slots(HeadCache *h, int slots, int hd) {
    slots = round_to_tile(slots);
    if (slots == h->slots && h->key_tiles) return 0;
    size_t bytes = (size_t)slots * hd * kv_size(h->kv_type), old = (size_t)h->slots * hd * kv_size(h->kv_type);
    void *k = realloc(h->key_tiles, bytes);
    if (k) h->key_tiles = k;
    void *v = k ? realloc(h->values, bytes) : NULL;
    if (v) h->values = v;
    float *p = v ? realloc(h->position, (size_t)slots * sizeof(float)) : NULL;
    if (p) h->position = p;
    double *score = p && h->score ? realloc(h->score, (size_t)slots * sizeof(double)) : NULL;
    if (score) h->score = score;
    if (!p || (h->score && !score)) return -1;
    if (slots > h->slots) {
        memset((char *)k + old, 0, bytes - old);
        memset((char *)v + old, 0, bytes - old);
        memset(p + h->slots, 0, (size_t)(slots - h->slots) * sizeof(float));
        if (score) memset(score + h->slots, 0, (size_t)(slots - h->slots) * sizeof(double));
    }
    h->slots = slots;
    return 0;
}

static void grow_slots(HeadCache *h, int slots, int hd) {
    if (reserve_slots(h, slots, hd) != 0) {
        complain(1, "out of memory for the KV cache (a head of %d tokens)", slots);
        exit(1);
    }
}

/* An empty head cache with room for `slots` tokens of head_dim numbers, stored as kv_type; its state is
 * set by choose_head_caches. It grows as tokens arrive (head_append), so a run holds what it uses, never
 * what the model's context could hold. Returns -1 if out of memory (head_free still frees what it got). */
int head_init(HeadCache *h, KVType kv_type, int head_dim, int slots) {
    *h = (HeadCache){.kv_type = kv_type, .key_sum = xcalloc((size_t)head_dim, sizeof(float)),
                     .value_sum = xcalloc((size_t)head_dim, sizeof(float))};
    return reserve_slots(h, slots, head_dim);
}

void head_free(HeadCache *h) {
    free(h->key_tiles); free(h->values); free(h->position); free(h->key_sum); free(h->value_sum); free(h->score);
    memset(h, 0, sizeof *h);
}

/* Key dimension d of a slot is element [slot / ATT_TILE_K][d][slot % ATT_TILE_K] of key_tiles. */
static size_t key_index(int slot, int d, int hd) {
    return (size_t)(slot / ATT_TILE_K) * hd * ATT_TILE_K + (size_t)d * ATT_TILE_K + slot % ATT_TILE_K;
}

static void put_slot(HeadCache *h, int slot, const float *key, const float *value, float position, int hd) {
    for (int d = 0; d < hd; d++) {
        kv_put(h->key_tiles, key_index(slot, d, hd), key[d], h->kv_type);
        kv_put(h->values, (size_t)slot * hd + d, value[d], h->kv_type);
    }
    h->position[slot] = position;
}

static void get_key(const HeadCache *h, int slot, float *key, int hd) {
    for (int d = 0; d < hd; d++) key[d] = kv_get(h->key_tiles, key_index(slot, d, hd), h->kv_type);
}

static void get_slot(const HeadCache *h, int slot, float *key, float *value, int hd) {
    get_key(h, slot, key, hd);
    for (int d = 0; d < hd; d++) value[d] = kv_get(h->values, (size_t)slot * hd + d, h->kv_type);
}

/* Where a compressed head's window starts: after the sinks and the compensation slot (razor only). On a
 * short head that is where it will start: head_compress moves the window there, which frees slot n_sink
 * for the compensation token. */
static int window_start(const HeadCache *h) { return h->n_sink + h->compensate; }

/* The compensation token, all in one place. A compressed head drops every token between its sinks and
 * its window; instead of forgetting them it keeps one slot whose key and value are the means of the
 * N_d dropped post-RoPE keys and values (k^, v^). In attention that slot's score, s = q.k^ / sqrt(head_dim),
 * gets + ln(N_d): exp(s + ln N_d) = N_d * exp(s), so the one slot weighs in the softmax as much as N_d
 * copies of the mean would. s is the mean of the dropped tokens' scores, so N_d * exp(s) is at most what
 * they weighed together (Jensen), and as much when their keys are alike.
 *
 * THE lines that fold a dropped token into it: running fp32 sums of the dropped keys and values, and
 * their count N_d. */
static void fold_token(HeadCache *h, int slot, int hd) {
    h->n_dropped++;
    if (!h->compensate) return;
    float key[MAX_HEAD_DIM], value[MAX_HEAD_DIM];
    get_slot(h, slot, key, value, hd);
    for (int d = 0; d < hd; d++) {
        h->key_sum[d] += key[d];
        h->value_sum[d] += value[d];
    }
    h->position_sum += h->position[slot];
}

/* The compensation slot holds k^ = mean of the dropped keys and v^ = mean of their values, at the mean
 * of their positions: with ALiBi its distance to any query is then the mean of theirs. */
static void update_compensation(HeadCache *h, int hd) {
    if (!h->compensate) return;
    float key[MAX_HEAD_DIM] = {0}, value[MAX_HEAD_DIM] = {0}; /* N_d = 0: zeros, and its logit gets -inf */
    for (int d = 0; d < hd && h->n_dropped > 0; d++) {
        key[d] = h->key_sum[d] / h->n_dropped;
        value[d] = h->value_sum[d] / h->n_dropped;
    }
    put_slot(h, h->n_sink, key, value, h->n_dropped ? (float)(h->position_sum / h->n_dropped) : 0, hd);
}

/* Where the compensation slot is in the head's slots (-1: none), and what its score gets: ln(N_d),
 * -inf while nothing was dropped (then the head is exactly full attention). */
static int compensation_slot(const HeadCache *h) {
    return h->compensate && h->state == COMPRESSED_HEAD ? h->n_sink : -1;
}
static float compensation_bias(const HeadCache *h) { return h->n_dropped > 0 ? logf((float)h->n_dropped) : -INFINITY; }

/* The score of query q (head_dim numbers, at position q_pos) for slot j of a head's cache:
 * q . k_j / sqrt(head_dim), - slope * (q_pos - the slot's position) with ALiBi (slope 0 without), and
 * + ln(N_d) for the compensation slot. */
static float slot_score(const float *q, const HeadCache *h, int j, int head_dim, float slope, float q_pos) {
    float dot = 0;
    for (int d = 0; d < head_dim; d++) dot += q[d] * kv_get(h->key_tiles, key_index(j, d, head_dim), h->kv_type);
    float score = dot / sqrtf((float)head_dim) - slope * (q_pos - h->position[j]);
    return j == compensation_slot(h) ? score + compensation_bias(h) : score;
}

/* What attention computes over one head's cache, written plainly: the definition. Query i sits at
 * position q_position + i and may see slots [0, n_past + i + 1): the n_past slots before the first
 * query's own, then one more per query (the causal mask, capped at the h->n slots in use; a generated
 * token sees every slot, so on a slid ring, where its own is not the last, order does not matter);
 * out = softmax(scores) . values, scores as slot_score. The forward pass calls the fast attention()
 * (appendix F); the tests hold it to this and to attention_online. */
void attention_reference(float *out, size_t out_stride, const float *q, size_t q_stride, int n_q, const HeadCache *h,
                         int n_past, int head_dim, float slope, float q_position) {
    float *score = xcalloc((size_t)h->n, sizeof(float));
    for (int i = 0; i < n_q; i++) {
        const float *qi = q + (size_t)i * q_stride;
        float *o = out + (size_t)i * out_stride, max = -INFINITY, sum = 0;
        int visible = min_int(n_past + i + 1, h->n);
        for (int j = 0; j < visible; j++) {
            score[j] = slot_score(qi, h, j, head_dim, slope, q_position + (float)i);
            if (score[j] > max) max = score[j];
        }
        for (int j = 0; j < visible; j++) {
            score[j] = max == -INFINITY ? 0 : expf(score[j] - max);
            sum += score[j];
        }
        for (int d = 0; d < head_dim; d++) {
            float acc = 0;
            for (int j = 0; j < visible; j++) acc += score[j] * kv_get(h->values, (size_t)j * head_dim + d, h->kv_type);
            o[d] = sum > 0 ? acc / sum : 0;
        }
    }
    free(score);
}

/* The same attention computed online, one tile of ATT_TILE_K keys at a time, so that no row of scores
 * as long as the context is ever held: the idea of flash attention, without the machinery. For each
 * query it keeps, over the keys seen so far,
 *     m    the largest score
 *     l    the sum of e^(s_j - m)
 *     acc  the sum of e^(s_j - m) v_j
 * and at the end out = acc / l = sum e^(s_j - m) v_j / sum e^(s_j - m), which is softmax . values for any
 * m (the e^-m cancels). When a tile holds a larger score m' > m, every term summed so far has the wrong
 * scale, and one multiplication mends them all:
 *     e^(s_j - m') = e^(s_j - m) e^(m - m')     so     l *= e^(m - m'),  acc *= e^(m - m'),  m = m'
 * before the tile's own terms are added. At the first tile m = -inf and l = acc = 0: the factor
 * e^(-inf - m') = expf(-INFINITY) = 0 multiplies zeros, so the rescale needs no special case. Only while
 * every score seen is -inf (a compensation slot with N_d = 0 and nothing else visible: a guard, not a
 * case the forward pass meets) does m stay -inf; then e^(s_j - m) would be NaN, and p = 0 instead.
 * The fast loop, attention() (appendix F), does these four steps, several queries and a vector of keys
 * at a time (and the sums in another order, so the two agree to float rounding). */
void attention_online(float *out, size_t out_stride, const float *q, size_t q_stride, int n_q, const HeadCache *h,
                      int n_past, int head_dim, float slope, float q_position) {
    float acc[MAX_HEAD_DIM], score[ATT_TILE_K];
    for (int i = 0; i < n_q; i++) {
        const float *qi = q + (size_t)i * q_stride;
        float m = -INFINITY, l = 0;
        for (int d = 0; d < head_dim; d++) acc[d] = 0;
        int visible = min_int(n_past + i + 1, h->n);
        for (int k0 = 0; k0 < visible; k0 += ATT_TILE_K) {
            int n_tile = min_int(visible - k0, ATT_TILE_K);
            float tile_max = -INFINITY;
            for (int j = 0; j < n_tile; j++) { /* 1. the tile's scores, and their max */
                score[j] = slot_score(qi, h, k0 + j, head_dim, slope, q_position + (float)i);
                if (score[j] > tile_max) tile_max = score[j];
            }
            if (tile_max > m) { /* 2. a larger max: rescale what was summed under the old one */
                float correction = expf(m - tile_max);
                l *= correction;
                for (int d = 0; d < head_dim; d++) acc[d] *= correction;
                m = tile_max;
            }
            for (int j = 0; j < n_tile; j++) { /* 3. the tile's terms, e^(s_j - m) and e^(s_j - m) v_j */
                float p = m == -INFINITY ? 0 : expf(score[j] - m);
                l += p;
                for (int d = 0; d < head_dim; d++)
                    acc[d] += p * kv_get(h->values, (size_t)(k0 + j) * head_dim + d, h->kv_type);
            }
        }
        float *o = out + (size_t)i * out_stride;
        for (int d = 0; d < head_dim; d++) o[d] = l > 0 ? acc[d] / l : 0; /* 4. out = acc / l */
    }
}

/* THE tiled attention loop (appendix F): attention_online's steps, vectorised, several queries sharing
 * each tile of keys. attention() picks the KV type; attention_typed walks tiles of queries and of keys;
 * attend_key_tile takes the queries ATT_QUERIES at a time; attend_tile does, for one key tile,
 * attention_online's four steps. scratch: ATT_SCRATCH(head_dim) floats. */
#define ATT_SCRATCH(head_dim) ((size_t)ATT_TILE_Q * (2 * (size_t)(head_dim) + 2) + 2 * (size_t)ATT_TILE_K * (head_dim))
void attention(float *out, size_t out_stride, const float *q, size_t q_stride, int n_q, const HeadCache *h,
               int n_past, int head_dim, float slope, float q_position, float *scratch);

/* Moves n slots from `from` to `to`. The ranges may overlap (a head's first compression moves its window
 * right by the one compensation slot when nothing is dropped, else left, over the dropped slots), so
 * like memmove it copies in the direction that reads each slot before it is overwritten: front to back
 * when moving left, back to front when moving right. */
static void move_slots(HeadCache *h, int to, int from, int n, int hd) {
    float key[MAX_HEAD_DIM], value[MAX_HEAD_DIM];
    int step = to <= from ? 1 : -1;
    for (int k = 0; k < n; k++) {
        int i = step > 0 ? k : n - 1 - k;
        get_slot(h, from + i, key, value, hd);
        put_slot(h, to + i, key, value, h->position[from + i], hd);
    }
}

/* Puts the window ring back in order (oldest first), so a block of tokens can follow it. */
static void unroll_ring(HeadCache *h, int hd) {
    if (h->ring_start == 0) return;
    int ws = window_start(h), n_window = h->n - ws;
    float *keys = xcalloc((size_t)n_window * hd, sizeof(float)),
          *values = xcalloc((size_t)n_window * hd, sizeof(float)),
          *positions = xcalloc((size_t)n_window, sizeof(float));
    for (int i = 0; i < n_window; i++) {
        int slot = ws + (h->ring_start + i) % n_window;
        get_slot(h, slot, keys + (size_t)i * hd, values + (size_t)i * hd, hd);
        positions[i] = h->position[slot];
    }
    for (int i = 0; i < n_window; i++)
        put_slot(h, ws + i, keys + (size_t)i * hd, values + (size_t)i * hd, positions[i], hd);
    free(keys); free(values); free(positions);
    h->ring_start = 0;
}

/* Compresses a head to sinks + compensation + the last `window` tokens (after a prompt was processed
 * with full attention): every token in between is folded into the compensation token. Works on a
 * short head (all tokens in order) and on a compressed one that a block of tokens has grown. A head
 * of fewer than sinks + window tokens stays a short head (exactly full attention) until it has that many;
 * then it is compressed with N_d = 0 (its compensation slot weighs nothing until a token leaves). */
void head_compress(HeadCache *h, int window, int hd) {
    if (h->state == RETRIEVAL_HEAD) return;
    h->window = window;
    if (h->state == SHORT_HEAD && h->n - h->n_sink < window) return; /* too short to compress yet */
    unroll_ring(h, hd);
    int ws = window_start(h);
    int body = h->state == COMPRESSED_HEAD ? ws : h->n_sink; /* the first slot that may be dropped */
    int n_window = min_int(h->n - body, window);
    int keep_from = h->n - n_window;
    for (int slot = body; slot < keep_from; slot++) fold_token(h, slot, hd);
    if (ws + n_window > h->slots) grow_slots(h, ws + n_window, hd);
    move_slots(h, ws, keep_from, n_window, hd); /* right after the sinks and the compensation slot */
    h->n = ws + n_window;
    h->state = COMPRESSED_HEAD;
    update_compensation(h, hd);
    grow_slots(h, ws + window, hd); /* physically sinks + compensation + window, in whole key tiles */
}

/* Adds one token's key and value. The tokens of a prompt or a chat turn append in order, with full
 * attention (a compressed head's ring is put back in order first), and compress_cache settles the heads
 * after them. While generating (one token at a time) the window slides: a short head whose window is
 * full is compressed, and on a compressed head whose window is full, the lines marked below are THE
 * place where a token leaves the window. */
void head_append(HeadCache *h, const float *key, const float *value, float position, int hd, int generating) {
    if (h->state == SHORT_HEAD && h->window > 0 && generating && h->n - h->n_sink >= h->window)
        head_compress(h, h->window, hd); /* the window is full: from now on it slides */
    if (h->state == COMPRESSED_HEAD && generating && h->n - window_start(h) >= h->window) {
        int slot = window_start(h) + h->ring_start;    /* the window's oldest token */
        fold_token(h, slot, hd);                       /* leaves it: into the compensation token's sums, */
        update_compensation(h, hd);                    /* k^ and v^ become the new means, */
        put_slot(h, slot, key, value, position, hd);   /* and the new token takes its slot */
        h->ring_start = (h->ring_start + 1) % h->window;
        return;
    }
    if (h->state == COMPRESSED_HEAD) unroll_ring(h, hd); /* a block appends in order; head_compress settles it */
    if (h->n == h->slots) grow_slots(h, h->n + h->n / 2 + 1, hd); /* by half again: amortised O(1) a token */
    put_slot(h, h->n++, key, value, position, hd);
}

/* The bytes of keys and values a head holds, in its kv_type (an unused compensation slot not counted). */
size_t head_bytes(const HeadCache *h, int hd) {
    int slots = h->n - (h->compensate && h->state == COMPRESSED_HEAD && h->n_dropped == 0);
    return (size_t)slots * hd * 2 * kv_size(h->kv_type);
}

/* One job of a layer's attention (plan_attention, section 5): a query head's tile of queries (job = head *
 * tiles + tile), its cost (the keys its queries see) and the thread that runs it. */
typedef struct { long cost; int job, thread; } AttentionJob;

/* Activations for a block of up to max_block tokens, and the KV cache. */
typedef struct RunState {
    const Model *model;      /* the model it was built for (appendix G's choices need its shape and slopes) */
    int max_block;
    float *x;                /* (block, dim) residual stream */
    float *xb;               /* (block, max(dim, q_dim)) normed input, then attention output */
    float *hb, *hb2;         /* (block, hidden_dim) */
    float *q;                /* (block, q_dim) */
    float *k, *v;            /* (block, kv_dim) */
    float *rope_cos, *rope_sin; /* (block, head_dim / 2) */
    float *att_scratch;      /* (threads, ATT_SCRATCH(head_dim)) */
    AttentionJob *att_jobs;  /* (n_heads * tiles of a block) this layer's attention jobs and their threads */
    long *att_load;          /* (threads) the attention work given to each thread (plan_attention) */
    float *logits;           /* (block, vocab_size) */
    float *xt;               /* (widest input, matmul_padded(block)) matmul's scratch: the block transposed tile
                                by tile; one token with bf16 or q8 weights: its input reordered */
    HeadCache *heads;        /* (layer, kv_head): the KV cache */
    int n_caches;            /* n_layers * n_kv_heads */
    CacheConfig cache;
    int capacity;            /* positions the cache may reach */
    int n_tokens;            /* positions filled: the next token's position */
    int budget;              /* -c snapkv, h2o: B, the tokens each KV head keeps; 0 until the first compress_cache
                                (so for SnapKV, which chooses once, nonzero means it has chosen) */
    int razor_window;        /* -c snapkv, h2o: the window razor's heads got at the last compress_cache (the
                                budget follows razor's bytes as tokens arrive) */
    float *window_queries;   /* -c snapkv: (layer, SNAPKV_WINDOW, q_dim) the queries of the last SNAPKV_WINDOW
                                positions, position p at row p % SNAPKV_WINDOW (appendix G) */
    float *score_rows;       /* -c snapkv, h2o: (threads, SCORE_SCRATCH(score_width, head_dim)) queries' scores
                                over a head's cache; grown with the heads (appendix G) */
    int score_width;         /* the longest head's slots the score rows have room for */
    /* if set, called after each layer's attention with the block's queries in q (the profiler) */
    void (*probe)(void *arg, const struct RunState *s, int layer, int pos, int T);
    void *probe_arg;
} RunState;

void free_runstate(RunState *s);

/* The activations for blocks of up to max_block tokens, and a KV cache for `capacity` positions under
 * the given policy (NULL: full). */
int build_runstate(RunState *s, const Model *m, int capacity, int max_block, const CacheConfig *cache) {
    const Config *c = &m->config;
    memset(s, 0, sizeof *s);
    if (capacity < 1 || capacity > c->seq_len)
        return fail("context of %d tokens asked for, the model holds %d", capacity, c->seq_len);
    if (max_block > capacity) max_block = capacity;
    size_t B = (size_t)max_block, q_dim = (size_t)c->n_heads * c->head_dim,
           kv_dim = (size_t)c->n_kv_heads * c->head_dim;
    size_t xb_dim = q_dim > (size_t)c->dim ? q_dim : (size_t)c->dim;
    s->model = m;
    s->max_block = max_block;
    s->x = xcalloc(B * c->dim, sizeof(float));
    s->xb = xcalloc(B * xb_dim, sizeof(float));
    s->hb = xcalloc(B * c->hidden_dim, sizeof(float));
    s->hb2 = xcalloc(B * c->hidden_dim, sizeof(float));
    s->q = xcalloc(B * q_dim, sizeof(float));
    s->k = xcalloc(B * kv_dim, sizeof(float));
    s->v = xcalloc(B * kv_dim, sizeof(float));
    s->rope_cos = xcalloc(B * (c->head_dim / 2), sizeof(float));
    s->rope_sin = xcalloc(B * (c->head_dim / 2), sizeof(float));
    s->att_scratch = xcalloc((size_t)pool_threads * ATT_SCRATCH(c->head_dim), sizeof(float));
    s->att_jobs = xcalloc((size_t)c->n_heads * ((B + ATT_TILE_Q - 1) / ATT_TILE_Q), sizeof *s->att_jobs);
    s->att_load = xcalloc((size_t)pool_threads, sizeof(long));
    s->logits = xcalloc(B * c->vocab_size, sizeof(float));
    size_t widest = xb_dim > (size_t)c->hidden_dim ? xb_dim : (size_t)c->hidden_dim;
    s->xt = xcalloc(widest * matmul_padded(max_block), sizeof(float));
    s->capacity = capacity;
    s->cache = cache ? *cache : (CacheConfig){.policy = POLICY_FULL};
    int n_caches = c->n_layers * c->n_kv_heads;
    s->heads = xcalloc((size_t)n_caches, sizeof(HeadCache));
    s->n_caches = n_caches;
    for (int i = 0; i < n_caches; i++) /* a key tile each: the heads grow as tokens arrive */
        if (head_init(&s->heads[i], s->cache.kv_type, c->head_dim, ATT_TILE_K) != 0) {
            free_runstate(s);
            return fail("out of memory for the KV cache");
        }
    choose_head_caches(s->heads, n_caches, &s->cache);
    if (s->cache.policy == POLICY_SNAPKV)
        s->window_queries = xcalloc((size_t)c->n_layers * SNAPKV_WINDOW * q_dim, sizeof(float));
    if (s->cache.policy == POLICY_H2O)
        for (int i = 0; i < n_caches; i++) s->heads[i].score = xcalloc((size_t)s->heads[i].slots, sizeof(double));
    return 0;
}

void free_runstate(RunState *s) {
    free(s->x); free(s->xb); free(s->hb); free(s->hb2); free(s->q); free(s->k); free(s->v); free(s->rope_cos);
    free(s->rope_sin); free(s->att_scratch); free(s->att_jobs); free(s->att_load); free(s->logits); free(s->xt);
    free(s->window_queries); free(s->score_rows);
    for (int i = 0; i < s->n_caches; i++) head_free(&s->heads[i]);
    free(s->heads);
    memset(s, 0, sizeof *s);
}

/* A compressed head's window after a prompt of n tokens: L = max(S0, N / C). */
static int razor_window(const CacheConfig *cache, int n) {
    int window = (int)(n / cache->compression);
    return window < cache->window_min ? cache->window_min : window;
}

/* After a prompt (or a chat turn) of N tokens in all: compresses every head that is not a retrieval
 * head to a window of L = max(S0, N / C) tokens, or, with an ALiBi profile, to its span. (The
 * baselines that drop tokens by attention, -c snapkv and h2o, choose theirs instead: appendix G.) */
void compress_cache(RunState *s, const Config *c) {
    if (s->cache.policy == POLICY_FULL) return;
    if (drops_by_attention(s->cache.policy)) { drop_tokens(s); return; }
    int window = razor_window(&s->cache, s->n_tokens);
    for (int i = 0; i < s->n_caches; i++) {
        HeadCache *h = &s->heads[i];
        head_compress(h, h->span ? h->span : window, c->head_dim);
    }
}

/* kv cache bytes held now, and what the cache would hold if every head kept every token */
void cache_bytes(const RunState *s, const Config *c, size_t *kept, size_t *uncompressed) {
    *kept = 0;
    for (int i = 0; i < s->n_caches; i++) *kept += head_bytes(&s->heads[i], c->head_dim);
    *uncompressed = (size_t)s->n_tokens * s->n_caches * c->head_dim * 2 * kv_size(s->cache.kv_type);
}

/* ------------------------------------------------------------------------------------------------
 * 5. The forward pass. A block of T tokens goes through each layer together: the matmuls read each
 * weight once per block, and attention runs over the block's queries against the cache. */

/* Every step of a block runs on all threads (the thread pool, appendix F): the matmuls and attention,
 * and also the cheap per-token steps between them, which on one thread would leave the others idle.
 * Each task takes its share by thread index; with fewer than BLOCK_MIN_TOKENS tokens (generation)
 * the per-token steps are not worth a trip through the pool and run on the caller. */
typedef struct { const Model *m; RunState *s; int layer, T, generating; } BlockJob;

static void run_block(Task task, void *arg, int T) {
    if (T >= BLOCK_MIN_TOKENS) pool_run(task, arg);
    else task(arg, 0, 1);
}

/* out (T, dim) = rmsnorm of each token's x, its share of the tokens */
typedef struct { float *out; const float *x, *weight; int T, dim; float eps; } NormJob;
static void norm_task(void *arg, int thread, int n_threads) {
    const NormJob *a = arg;
    size_t begin, end, dim = (size_t)a->dim;
    split((size_t)a->T, 1, thread, n_threads, &begin, &end);
    for (size_t t = begin; t < end; t++) rmsnorm(a->out + t * dim, a->x + t * dim, a->weight, a->dim, a->eps);
}
static void norm_block(float *out, const float *x, const float *weight, int T, const Config *c) {
    NormJob job = {out, x, weight, T, c->dim, c->norm_eps};
    run_block(norm_task, &job, T);
}

/* After the q, k, v matmuls, each KV head with its group of query heads (round robin over the
 * threads), token by token: biases (Qwen2), each head's q and k RMSNorm (Qwen3), RoPE on the queries
 * and keys (ALiBi models have none: their bias is in attention), and the key and value join the head's
 * cache, as its policy says (head_append). */
static void heads_task(void *arg, int thread, int n_threads) {
    const BlockJob *a = arg;
    const Config *c = &a->m->config;
    const TransformerWeights *w = &a->m->weights;
    RunState *s = a->s;
    int hd = c->head_dim, half = hd / 2, group = c->n_heads / c->n_kv_heads;
    size_t layer = (size_t)a->layer, q_dim = (size_t)c->n_heads * hd, kv_dim = (size_t)c->n_kv_heads * hd;
    for (int g = thread; g < c->n_kv_heads; g += n_threads) {
        size_t q_at = (size_t)g * group * hd, kv_at = (size_t)g * hd; /* this group's place in q; in k and v */
        HeadCache *head = &s->heads[a->layer * c->n_kv_heads + g];
        for (int t = 0; t < a->T; t++) {
            float *q_t = s->q + t * q_dim + q_at, *k_t = s->k + t * kv_dim + kv_at, *v_t = s->v + t * kv_dim + kv_at;
            for (int i = 0; w->bq && i < group * hd; i++) q_t[i] += w->bq[layer * q_dim + q_at + i];
            for (int i = 0; w->bk && i < hd; i++) k_t[i] += w->bk[layer * kv_dim + kv_at + i];
            for (int i = 0; w->bv && i < hd; i++) v_t[i] += w->bv[layer * kv_dim + kv_at + i];
            for (int h = 0; w->q_norm && h < group; h++)
                rmsnorm(q_t + (size_t)h * hd, q_t + (size_t)h * hd, w->q_norm + layer * hd, hd, c->norm_eps);
            if (w->k_norm) rmsnorm(k_t, k_t, w->k_norm + layer * hd, hd, c->norm_eps);
            if (c->pos_encoding == POS_ROPE) {
                rope(q_t, group, hd, s->rope_cos + (size_t)t * half, s->rope_sin + (size_t)t * half);
                rope(k_t, 1, hd, s->rope_cos + (size_t)t * half, s->rope_sin + (size_t)t * half);
            }
            head_append(head, k_t, v_t, (float)(s->n_tokens + t), hd, a->generating);
        }
    }
}

/* hb = silu(hb) * hb2 (swiglu), its share of the block */
static void swiglu_task(void *arg, int thread, int n_threads) {
    const BlockJob *a = arg;
    size_t begin, end, hidden = (size_t)a->m->config.hidden_dim;
    split((size_t)a->T * hidden, VEC, thread, n_threads, &begin, &end);
    swiglu(a->s->hb + begin, a->s->hb2 + begin, end - begin);
}

/* The block's attention, as jobs: (query head, tile of queries) pairs. Their costs differ: a retrieval
 * head's cache holds every token and a compressed head's a fifth or so, and a causal block's last tiles
 * see the most keys. So each job's cost is the keys its queries see, and the jobs go to the threads
 * longest first, each to the thread with the least work so far (LPT scheduling: within 4/3 of the best
 * split). Which thread computes a head does not change its numbers. */
static int costlier_job(const void *a, const void *b) { /* the larger cost first; ties: the earlier job */
    const AttentionJob *x = a, *y = b;
    if (x->cost != y->cost) return x->cost < y->cost ? 1 : -1;
    return (x->job > y->job) - (x->job < y->job);
}
static void plan_attention(RunState *s, const Config *c, int layer, int T) {
    int tiles = (T + ATT_TILE_Q - 1) / ATT_TILE_Q, n_jobs = c->n_heads * tiles, group = c->n_heads / c->n_kv_heads;
    for (int job = 0; job < n_jobs; job++) {
        const HeadCache *hc = &s->heads[layer * c->n_kv_heads + (job / tiles) / group];
        int q0 = (job % tiles) * ATT_TILE_Q, nq = min_int(T - q0, ATT_TILE_Q);
        s->att_jobs[job] = (AttentionJob){(long)nq * (hc->n - T + q0 + nq), job, 0}; /* q0 + nq <= T */
    }
    qsort(s->att_jobs, (size_t)n_jobs, sizeof *s->att_jobs, costlier_job);
    long *load = s->att_load;
    memset(load, 0, (size_t)pool_threads * sizeof *load);
    for (int k = 0; k < n_jobs; k++) {
        int least = 0;
        for (int t = 1; t < pool_threads; t++) least = load[t] < load[least] ? t : least;
        s->att_jobs[k].thread = least;
        load[least] += s->att_jobs[k].cost + 1;
    }
}

/* A thread's jobs of the plan above. */
static void attention_task(void *arg, int thread, int n_threads) {
    const BlockJob *a = arg;
    const Config *c = &a->m->config;
    RunState *s = a->s;
    size_t q_dim = (size_t)c->n_heads * c->head_dim;
    int tiles = (a->T + ATT_TILE_Q - 1) / ATT_TILE_Q, group = c->n_heads / c->n_kv_heads;
    float *scratch = s->att_scratch + (size_t)thread * ATT_SCRATCH(c->head_dim);
    (void)n_threads;
    for (int k = 0; k < c->n_heads * tiles; k++) {
        if (s->att_jobs[k].thread != thread) continue;
        int job = s->att_jobs[k].job;
        int query_head = job / tiles, q0 = (job % tiles) * ATT_TILE_Q, nq = min_int(a->T - q0, ATT_TILE_Q);
        const HeadCache *hc = &s->heads[a->layer * c->n_kv_heads + query_head / group];
        float slope = a->m->alibi_slope ? a->m->alibi_slope[query_head] : 0;
        size_t at = q0 * q_dim + (size_t)query_head * c->head_dim; /* this tile's queries, and outputs */
        attention(s->xb + at, q_dim, s->q + at, q_dim, nq, hc, hc->n - a->T + q0, c->head_dim, slope,
                  (float)(s->n_tokens + q0), scratch);
    }
}

/* A model whose numbers stop being finite (NaN or Inf weights, or an overflow) would go on to print
 * <unk> or miss every needle; razor stops instead, naming where the first one appeared. */
static int all_finite(const float *x, size_t n) {
    int finite = 1;
    for (size_t i = 0; i < n; i++) finite &= fabsf(x[i]) <= FLT_MAX; /* false for NaN and +-Inf */
    return finite;
}

/* Runs tokens[0..T) (T <= max_block) at positions n_tokens.. n_tokens+T-1. Their keys and values join
 * the cache (head_append; generating: one generated token, for which compressed heads slide their
 * windows). Returns the logits: (T, vocab_size) if all_logits, else the last token's (vocab_size).
 * Activations are row-major, one row per token of the block: x (T, dim), q (T, n_heads * head_dim),
 * k and v (T, n_kv_heads * head_dim), hb and hb2 (T, hidden_dim). */
float *forward_block(const Model *m, RunState *s, const int *tokens, int T, int all_logits, int generating) {
    const Config *c = &m->config;
    const TransformerWeights *w = &m->weights;
    int dim = c->dim, hidden = c->hidden_dim, hd = c->head_dim, half = hd / 2;
    int q_dim = c->n_heads * hd, kv_dim = c->n_kv_heads * hd;
    size_t pos = (size_t)s->n_tokens;

    /* the tokens' embeddings, and the RoPE angles of their positions */
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < dim; i++)
            s->x[(size_t)t * dim + i] = matrix_value(w->token_embedding, (size_t)tokens[t] * dim + i);
        for (int i = 0; i < half && m->rope_freq; i++) {
            float angle = (float)(pos + (size_t)t) * m->rope_freq[i];
            s->rope_cos[(size_t)t * half + i] = cosf(angle);
            s->rope_sin[(size_t)t * half + i] = sinf(angle);
        }
    }
    if (!all_finite(s->x, (size_t)T * dim))
        return fail("the model's numbers are not finite: NaN or Inf in the token embeddings"), NULL;
    for (int l = 0; l < c->n_layers; l++) {
        size_t layer = (size_t)l;
        Matrix wq = matrix_at(w->wq, layer * q_dim * dim), wk = matrix_at(w->wk, layer * kv_dim * dim),
               wv = matrix_at(w->wv, layer * kv_dim * dim), wo = matrix_at(w->wo, layer * dim * q_dim);
        Matrix w1 = matrix_at(w->w1, layer * hidden * dim), w2 = matrix_at(w->w2, layer * dim * hidden),
               w3 = matrix_at(w->w3, layer * hidden * dim);
        BlockJob job = {m, s, l, T, generating};

        /* attention rmsnorm */
        norm_block(s->xb, s->x, w->rms_att_weight + layer * dim, T, c);
        /* q, k, v for every token of the block: one pass over the three weight matrices */
        Product qkv[3] = {{s->q, wq, q_dim, 0}, {s->k, wk, kv_dim, 0}, {s->v, wv, kv_dim, 0}};
        matmul(s->xb, s->xt, T, dim, qkv, 3);
        /* biases, q/k norms, RoPE; the keys and values join the cache (heads_task) */
        run_block(heads_task, &job, T);
        /* attention: every query head against what its KV head's cache holds, output into xb */
        plan_attention(s, c, l, T);
        pool_run(attention_task, &job);
        /* -c snapkv, h2o: what their choice of tokens needs (appendix G) */
        if (drops_by_attention(s->cache.policy)) observe_attention(s, l, T, generating);
        if (s->probe) s->probe(s->probe_arg, s, l, (int)pos, T);
        /* the output projection, added to the residual stream x */
        Product out[1] = {{s->x, wo, dim, 1}};
        matmul(s->xb, s->xt, T, q_dim, out, 1);

        /* ffn rmsnorm */
        norm_block(s->xb, s->x, w->rms_ffn_weight + layer * dim, T, c);
        /* the SwiGLU ffn: w2(silu(w1(x)) * w3(x)), added to the residual stream */
        Product up[2] = {{s->hb, w1, hidden, 0}, {s->hb2, w3, hidden, 0}};
        matmul(s->xb, s->xt, T, dim, up, 2);
        run_block(swiglu_task, &job, T);
        Product down[1] = {{s->x, w2, dim, 1}};
        matmul(s->hb, s->xt, T, hidden, down, 1);
        if (!all_finite(s->x, (size_t)T * dim))
            return fail("the model's numbers are not finite: NaN or Inf first in layer %d (of 0..%d), from its "
                        "weights or an overflow", l, c->n_layers - 1), NULL;
    }
    s->n_tokens += T;

    /* the final rmsnorm and the classifier, for the last token or for all */
    int first = all_logits ? 0 : T - 1;
    norm_block(s->xb, s->x + (size_t)first * dim, w->rms_final_weight, T - first, c);
    Product classifier[1] = {{s->logits, w->wcls, c->vocab_size, 0}};
    matmul(s->xb, s->xt, T - first, dim, classifier, 1);
    if (!all_finite(s->logits, (size_t)(T - first) * c->vocab_size))
        return fail("the model's numbers are not finite: NaN or Inf first in the final norm or the classifier"), NULL;
    return s->logits;
}

/* Receives the logits of a block of tokens (n_tokens, vocab_size); non-zero stops the run. */
typedef int (*LogitsSink)(void *arg, const float *logits, int n_tokens, int vocab_size);

/* Runs n tokens through the model in blocks of max_block; returns the last token's logits. One token
 * is a generation step; more (a prompt, a chat turn) are prefilled in order, whatever the block size,
 * and compress_cache settles the heads after them. If sink is given, it receives the logits of every
 * token, one block at a time. */
float *forward(const Model *m, RunState *s, const int *tokens, int n, LogitsSink sink, void *sink_arg) {
    float *logits = NULL;
    for (int i = 0; i < n; i += s->max_block) {
        int T = min_int(n - i, s->max_block);
        logits = forward_block(m, s, tokens + i, T, sink != NULL, n == 1);
        if (!logits) return NULL;
        if (sink && sink(sink_arg, logits, T, m->config.vocab_size) != 0) return NULL;
        if (sink) logits += (size_t)(T - 1) * m->config.vocab_size;
    }
    return logits;
}

/* ------------------------------------------------------------------------------------------------
 * 6. The head profiler: which heads are retrieval heads. A head profile (model.h: HeadProfile) marks
 * each KV head a retrieval head or not; choose_head_caches (section 4) turns that into its cache. It
 * comes from one forward pass of a probe (RoPE models, the paper's section 3.2), from the span rule
 * (ALiBi models, section 3.3, below), or from a file (a .heads file, hand-edited or not,
 * DuoAttention's .tsv, or the JSON of golden-stick or Retrieval_Head / HeadKV: appendix C).
 *
 * The probe: BOS + K distinct random ordinary tokens, the block repeated 4 times, with exact causal
 * attention. The first token is the attention sink every text has; it is bos_id even for a model whose
 * prompts get none (Qwen's is <|endoftext|>, the separator its training data packed texts with), and
 * eos_id for a model with no bos_id at all. For every query head, the echo score is the attention a
 * token pays to its own earlier copies, the induction score the attention it pays to the tokens that
 * followed them, averaged over the rows of repeats 2..4. A KV head takes the max over its query
 * heads; the top induction_fraction of KV heads by induction plus the top echo_fraction by echo (over
 * the whole model: the paper's 14% and 1%) are the retrieval heads. */

static void init_profile(HeadProfile *profile, const Config *c) {
    *profile = (HeadProfile){.n_layers = c->n_layers, .n_kv_heads = c->n_kv_heads, .n_heads = c->n_heads,
                             .head_dim = c->head_dim, .dim = c->dim};
    size_t n = (size_t)c->n_layers * c->n_kv_heads;
    profile->echo = xcalloc(n, sizeof(float));
    profile->induction = xcalloc(n, sizeof(float));
    profile->retrieval = xcalloc(n, 1);
}

void free_profile(HeadProfile *profile) {
    free(profile->echo); free(profile->induction); free(profile->retrieval); free(profile->span);
    memset(profile, 0, sizeof *profile);
}

typedef struct {
    const Config *c;
    int K;
    double *echo_sum, *induction_sum; /* (layer, query head) */
    float *rows;                      /* (threads, 1 + 4K) one attention row per thread */
    const RunState *s;
    int layer, pos, T;
} Probe;

/* For each query head (spread over threads): the full softmax row of each probe query in repeats
 * 2..4 (the probe runs with the full cache: slot j is token j), summed at the earlier copies of its
 * token (echo) and at the tokens after them (induction). */
static void probe_task(void *arg, int thread, int n_threads) {
    Probe *probe = arg;
    const Config *c = probe->c;
    int hd = c->head_dim, group = c->n_heads / c->n_kv_heads;
    float *row = probe->rows + (size_t)thread * (4 * probe->K + 1), key[MAX_HEAD_DIM];
    for (int query_head = thread; query_head < c->n_heads; query_head += n_threads) {
        const HeadCache *hc = &probe->s->heads[probe->layer * c->n_kv_heads + query_head / group];
        for (int t = 0; t < probe->T; t++) {
            int i = probe->pos + t; /* position; the random block starts at 1 */
            if (i < 1 + probe->K) continue;
            const float *q = probe->s->q + (size_t)t * c->n_heads * hd + (size_t)query_head * hd;
            for (int j = 0; j <= i; j++) { /* the whole attention row of this query: exact, causal */
                get_key(hc, j, key, hd);
                float score = 0;
                for (int d = 0; d < hd; d++) score += q[d] * key[d];
                row[j] = score / sqrtf((float)hd);
            }
            softmax(row, i + 1);
            double echo = 0, induction = 0;
            for (int j = i - probe->K; j >= 1; j -= probe->K) {
                echo += row[j];
                induction += row[j + 1];
            }
            probe->echo_sum[probe->layer * c->n_heads + query_head] += echo;
            probe->induction_sum[probe->layer * c->n_heads + query_head] += induction;
        }
    }
}

static void probe_hook(void *arg, const RunState *s, int layer, int pos, int T) {
    Probe *probe = arg;
    probe->s = s;
    probe->layer = layer;
    probe->pos = pos;
    probe->T = T;
    pool_run(probe_task, probe);
    if (layer == probe->c->n_layers - 1)
        fprintf(stderr, "\rprofiling heads: %d/%d probe tokens", pos + T, 4 * probe->K + 1);
}

/* The top `fraction` of heads (at least one if fraction > 0) by score join the retrieval heads. */
static void mark_top(unsigned char *retrieval, const float *score, int n, float fraction) {
    int want = (int)lroundf(fraction * n);
    if (fraction > 0 && want < 1) want = 1;
    unsigned char *taken = xcalloc((size_t)n, 1);
    for (int k = 0; k < want && k < n; k++) {
        int best = -1;
        for (int i = 0; i < n; i++) if (!taken[i] && (best < 0 || score[i] > score[best])) best = i;
        taken[best] = retrieval[best] = 1;
    }
    free(taken);
}

/* The paper's selection: the top induction_fraction of KV heads by induction score, and the top
 * echo_fraction by echo score, over the whole model (INDUCTION_FRACTION, ECHO_FRACTION; -R, -E). */
void select_retrieval_heads(HeadProfile *profile) {
    int n = profile->n_layers * profile->n_kv_heads;
    memset(profile->retrieval, 0, (size_t)n);
    mark_top(profile->retrieval, profile->induction, n, profile->induction_fraction);
    mark_top(profile->retrieval, profile->echo, n, profile->echo_fraction);
}

int profile_heads(const Model *m, const Tokenizer *tok, HeadProfile *profile, uint64_t seed, float induction_fraction,
                  float echo_fraction) {
    const Config *c = &m->config;
    int *ordinary = xcalloc((size_t)c->vocab_size, sizeof(int));
    int n_ordinary = ordinary_tokens(tok, ordinary), K = (c->seq_len - 1) / 4;
    if (K > PROBE_K) K = PROBE_K;
    if (K > n_ordinary) K = n_ordinary;
    if (K < 2) { free(ordinary); return fail("the model is too small to profile (K = %d)", K); }
    uint64_t rng = seed ? seed : 1;
    for (int i = 0; i < K; i++) { /* K distinct tokens: a partial Fisher-Yates shuffle */
        int j = i + (int)(random_f32(&rng) * (n_ordinary - i));
        int tmp = ordinary[i]; ordinary[i] = ordinary[j]; ordinary[j] = tmp;
    }
    int n = 1 + 4 * K, *probe_tokens = xcalloc((size_t)n, sizeof(int));
    probe_tokens[0] = c->bos_id >= 0 ? c->bos_id : c->eos_id; /* the sink (above) */
    for (int i = 1; i < n; i++) probe_tokens[i] = ordinary[(i - 1) % K];
    free(ordinary);
    RunState s;
    if (build_runstate(&s, m, n, DEFAULT_BLOCK, NULL) != 0) { free(probe_tokens); return -1; }
    Probe probe = {c, K, xcalloc((size_t)c->n_layers * c->n_heads, sizeof(double)),
                   xcalloc((size_t)c->n_layers * c->n_heads, sizeof(double)),
                   xcalloc((size_t)pool_threads * n, sizeof(float)), NULL, 0, 0, 0};
    s.probe = probe_hook;
    s.probe_arg = &probe;
    int finite = forward(m, &s, probe_tokens, n, NULL, NULL) != NULL; /* else razor_error says where */
    fprintf(stderr, "\n");
    if (!finite) {
        free(probe.echo_sum); free(probe.induction_sum); free(probe.rows); free(probe_tokens);
        free_runstate(&s);
        return -1;
    }
    init_profile(profile, c);
    profile->K = K;
    profile->seed = seed;
    profile->induction_fraction = induction_fraction;
    profile->echo_fraction = echo_fraction;
    int group = c->n_heads / c->n_kv_heads, rows = 3 * K; /* the rows of repeats 2..4 */
    for (int l = 0; l < c->n_layers; l++)
        for (int query_head = 0; query_head < c->n_heads; query_head++) {
            int g = l * c->n_kv_heads + query_head / group;
            float echo = (float)(probe.echo_sum[l * c->n_heads + query_head] / rows),
                  induction = (float)(probe.induction_sum[l * c->n_heads + query_head] / rows);
            if (echo > profile->echo[g]) profile->echo[g] = echo; /* a KV head: the max over its query heads */
            if (induction > profile->induction[g]) profile->induction[g] = induction;
        }
    select_retrieval_heads(profile);
    free(probe.echo_sum); free(probe.induction_sum); free(probe.rows); free(probe_tokens);
    free_runstate(&s);
    return 0;
}

/* ALiBi models (the paper's section 3.3): no probe. A head's span is the distance beyond which all of
 * its attention together is below eps, bounded from its weights and its slope:
 *   the layer's RMSNorm output is G u with G = diag(gamma) and |u| <= sqrt(dim) (u = x / rms(x)), so
 *   every score q . k / sqrt(head_dim) = u_i^T G W_Q,h^T W_K,h G u_j / sqrt(head_dim) lies within +-B,
 *   B = ||G W_Q,h^T W_K,h G||_2 dim / sqrt(head_dim) (the spectral norm by power iteration);
 *   the query's own key (distance 0) scores at least -B, a key at distance d at most B - slope d, so its
 *   weight is below e^(2B - slope d), and all keys at distance L or more weigh together less than
 *   e^(2B - slope L) / (1 - e^-slope). That is below eps from
 *       L_h = (2B - ln eps - ln(1 - e^-slope)) / slope
 *   on: the head keeps its last L_h + 1 tokens (distances 0 .. L_h), and drops less than eps of its
 *   attention, so its output moves by less than 2 eps max|v|. A KV head takes the longest span of its
 *   query heads; one whose span covers the context keeps everything: a retrieval head. */

/* ||G A^T B G||_2 for A, B (hd, dim) row-major (a query head's rows of W_Q, its KV head's of W_K) and
 * G = diag(gamma): power iteration on M^T M, M = G A^T B G, to a relative change below 1e-6 (at most
 * 500 rounds). */
static double spectral_norm_qk(Matrix A, Matrix B, const float *gamma, int hd, int dim) {
    double *v = xcalloc((size_t)dim, sizeof(double)), *w = xcalloc((size_t)dim, sizeof(double));
    double *u = xcalloc((size_t)hd, sizeof(double)), sigma = 0;
    for (int j = 0; j < dim; j++) v[j] = 1.0 + 0.01 * (j % 7); /* not orthogonal to the top direction, in practice */
    for (int round = 0; round < 500; round++) {
        double norm = 0;
        for (int j = 0; j < dim; j++) norm += v[j] * v[j];
        norm = sqrt(norm);
        if (norm == 0) break;
        for (int j = 0; j < dim; j++) v[j] /= norm;
        for (int r = 0; r < hd; r++) { /* u = B G v, then w = G A^T u: w = M v */
            u[r] = 0;
            for (int j = 0; j < dim; j++) u[r] += matrix_value(B, (size_t)r * dim + j) * gamma[j] * v[j];
        }
        double len = 0;
        for (int j = 0; j < dim; j++) {
            w[j] = 0;
            for (int r = 0; r < hd; r++) w[j] += matrix_value(A, (size_t)r * dim + j) * u[r];
            w[j] *= gamma[j];
            len += w[j] * w[j];
        }
        double next = sqrt(len); /* |M v|, v a unit vector */
        for (int r = 0; r < hd; r++) { /* v = M^T w = G B^T (A G w) */
            u[r] = 0;
            for (int j = 0; j < dim; j++) u[r] += matrix_value(A, (size_t)r * dim + j) * gamma[j] * w[j];
        }
        for (int j = 0; j < dim; j++) {
            v[j] = 0;
            for (int r = 0; r < hd; r++) v[j] += matrix_value(B, (size_t)r * dim + j) * u[r];
            v[j] *= gamma[j];
        }
        int done = fabs(next - sigma) <= 1e-6 * next;
        sigma = next;
        if (done) break;
    }
    free(v); free(w); free(u);
    return sigma;
}

/* The span rule for every head of an ALiBi model (above). Spans are at least 1 token and at most the
 * context; retrieval marks the heads whose span covers the context. */
int span_rule(const Model *m, HeadProfile *profile, float eps) {
    const Config *c = &m->config;
    if (c->pos_encoding != POS_ALIBI) return fail("the span rule is for ALiBi models");
    if (c->qkv_bias || c->qk_norm) return fail("the span rule is derived for ALiBi models without q/k biases or norms");
    init_profile(profile, c);
    profile->span_eps = eps;
    profile->span = xcalloc((size_t)c->n_layers * c->n_kv_heads, sizeof(int));
    int hd = c->head_dim, dim = c->dim, group = c->n_heads / c->n_kv_heads;
    size_t q_dim = (size_t)c->n_heads * hd, kv_dim = (size_t)c->n_kv_heads * hd;
    for (int l = 0; l < c->n_layers; l++) {
        const float *gamma = m->weights.rms_att_weight + (size_t)l * dim;
        for (int query_head = 0; query_head < c->n_heads; query_head++) {
            int g = query_head / group;
            Matrix A = matrix_at(m->weights.wq, (size_t)l * q_dim * dim + (size_t)query_head * hd * dim),
                   B = matrix_at(m->weights.wk, (size_t)l * kv_dim * dim + (size_t)g * hd * dim);
            double bound = spectral_norm_qk(A, B, gamma, hd, dim) * dim / sqrt((double)hd);
            if (isnan(bound))
                return fail("the model's numbers are not finite: NaN in layer %d's query or key weights or its "
                            "attention norm", l);
            double slope = m->alibi_slope[query_head];
            double L_h = (2 * bound - log(eps) - log(1 - exp(-slope))) / slope;
            int span = !(L_h + 1 < c->seq_len) ? c->seq_len : (int)ceil(L_h) + 1; /* Inf: keep everything */
            if (span < 1) span = 1;
            int *kv = &profile->span[l * c->n_kv_heads + g];
            if (span > *kv) *kv = span;
        }
    }
    for (int i = 0; i < c->n_layers * c->n_kv_heads; i++) profile->retrieval[i] = profile->span[i] >= c->seq_len;
    return 0;
}

/* ------------------------------------------------------------------------------------------------
 * 7. The sampler: greedy at temperature 0, else softmax(logits / temperature), then top-p. */

typedef struct { float prob; int index; } ProbIndex;

typedef struct {
    int vocab_size;
    float temperature, topp;
    uint64_t rng_state;
    ProbIndex *candidates; /* (vocab_size) */
} Sampler;

void build_sampler(Sampler *s, int vocab_size, float temperature, float topp, uint64_t seed) {
    *s = (Sampler){vocab_size, temperature, topp, seed ? seed : 0x9E3779B97F4A7C15ull,
                   xcalloc((size_t)vocab_size, sizeof(ProbIndex))};
}

void free_sampler(Sampler *s) { free(s->candidates); }

static int compare_prob_desc(const void *a, const void *b) {
    float pa = ((const ProbIndex *)a)->prob, pb = ((const ProbIndex *)b)->prob;
    return (pa < pb) - (pa > pb);
}

/* Samples from the smallest set of tokens whose probabilities add up to topp. */
static int sample_topp(const float *probs, int n, float topp, ProbIndex *candidates, float coin) {
    int n0 = 0;
    const float cutoff = (1.0f - topp) / (n - 1 > 0 ? n - 1 : 1); /* tokens below this cannot be in the set */
    for (int i = 0; i < n; i++) if (probs[i] >= cutoff) candidates[n0++] = (ProbIndex){probs[i], i};
    if (n0 == 0) return argmax(probs, n); /* a flat distribution and a tiny topp: nothing passes the cutoff */
    qsort(candidates, (size_t)n0, sizeof(ProbIndex), compare_prob_desc);
    float cumulative = 0;
    int last = n0 - 1;
    for (int i = 0; i < n0; i++) {
        cumulative += candidates[i].prob;
        if (cumulative > topp) { last = i; break; }
    }
    float r = coin * cumulative, cdf = 0;
    for (int i = 0; i <= last; i++) {
        cdf += candidates[i].prob;
        if (r < cdf) return candidates[i].index;
    }
    return candidates[last].index;
}

static int sample(Sampler *s, float *logits) {
    if (s->temperature == 0.0f) return argmax(logits, s->vocab_size);
    float max = logits[argmax(logits, s->vocab_size)]; /* (l - max) / t: no overflow at any t > 0, however small */
    for (int i = 0; i < s->vocab_size; i++) logits[i] = (logits[i] - max) / s->temperature;
    softmax(logits, s->vocab_size);
    float coin = random_f32(&s->rng_state);
    if (s->topp <= 0 || s->topp >= 1) {
        float cdf = 0;
        for (int i = 0; i < s->vocab_size; i++) { cdf += logits[i]; if (coin < cdf) return i; }
        return s->vocab_size - 1;
    }
    return sample_topp(logits, s->vocab_size, s->topp, s->candidates, coin);
}

/* ------------------------------------------------------------------------------------------------
 * 8. The generate loop: a prompt is prefilled with full attention in blocks, the cache compressed
 * (compress_cache), and then tokens are sampled one at a time, each one's key and value joining the
 * cache (where compressed heads slide their windows). The modes that drive it are in appendix D. */

static void print_kv_line(const RunState *s, const Config *c) {
    size_t kept, uncompressed;
    cache_bytes(s, c, &kept, &uncompressed);
    fprintf(stderr, "kv cache: %.2f MB (%.1f%% of %.2f MB full)\n", kept / 1e6,
            uncompressed ? 100.0 * kept / uncompressed : 100.0, uncompressed / 1e6);
}

/* Generation ends at EOS, at BOS, and at the chat template's end of a turn (<|eot_id|>, <|im_end|>). */
static int is_stop_token(const Config *c, int id) {
    return id == c->eos_id || id == c->bos_id || (c->chat_template == CHAT_LLAMA3 && id == c->chat_tokens[2]) ||
           (c->chat_template == CHAT_CHATML && id == c->chat_tokens[1]);
}

/* Generates up to max_new tokens after the cache's current content, starting from `logits`;
 * prints them unless out_tokens is given (then it stores them); stops at a stop token or the end of
 * the cache. Returns the number generated, or -1 (razor_error says why: the model's numbers went wrong, or
 * standard output could not be written). */
static int generate_tokens(const Model *m, RunState *s, const Tokenizer *tok, Sampler *sampler, float *logits,
                           int prev, int max_new, int *out_tokens, double *seconds) {
    double t0 = now_seconds();
    int n = 0;
    while (n < max_new) {
        if (!logits) return -1; /* not finite (forward_block) */
        int next = sample(sampler, logits);
        if (is_stop_token(&m->config, next)) break;
        if (out_tokens) out_tokens[n] = next;
        else {
            print_text(tok, &next, 1, prev, 0);
            if (fflush(stdout) != 0) return fail("standard output: cannot write it all: %s", strerror(errno));
        }
        n++;
        prev = next;
        if (n == max_new || s->n_tokens == s->capacity) break;
        logits = forward(m, s, &next, 1, NULL, NULL);
    }
    if (seconds) *seconds = now_seconds() - t0;
    return n;
}

static void print_speed(int n_prompt, double prompt_s, int n_gen, double gen_s) {
    fprintf(stderr, "prompt: %d tokens, %.1f tok/s; generated: %d tokens, %.1f tok/s\n", n_prompt,
            prompt_s > 0 ? n_prompt / prompt_s : 0.0, n_gen, gen_s > 0 ? n_gen / gen_s : 0.0);
}

/* Encodes a prompt, BOS first if the model adds one; refuses one that leaves no room in the context,
 * or that the tokenizer refuses (the caller exits with 2). */
static int *encode_prompt(const Model *m, const Tokenizer *tok, const char *prompt, int *n) {
    int *tokens = xcalloc(encode_room(prompt), sizeof(int));
    *n = encode(tok, prompt, m->config.add_bos, tokens);
    if (*n <= 0 || *n >= m->config.seq_len) {
        if (*n < 0) report(0);
        else if (*n == 0) complain(0, "the prompt is empty, and this model's tokenizer adds no BOS to start from");
        else complain(0, "the prompt is %d tokens, the model's context is %d", *n, m->config.seq_len);
        free(tokens);
        return NULL;
    }
    return tokens;
}

/* Prefills a prompt with full attention, then compresses the cache (as the paper does). */
static float *prefill(const Model *m, RunState *s, const int *tokens, int n) {
    float *logits = forward(m, s, tokens, n, NULL, NULL);
    if (logits) compress_cache(s, &m->config);
    return logits;
}

/* Appendices ======================================================================================
 * The method is all above. What follows is machinery a first reading can skip, each part on its own:
 *   A. the files razor reads and writes        D. the modes: generate, chat, compare, needle, logits,
 *   B. the tokenizers                             tokenize, profile
 *   C. head profiles on disk and in pictures   E. the command line
 *   F. the fast kernels: threads, vectors, matmul, THE tiled attention loop, 16-bit numbers, bf16 weights
 *   G. the baselines that drop tokens by attention: SnapKV and H2O (-c snapkv, h2o) */

/* ------------------------------------------------------------------------------------------------
 * Appendix A. Files */

/* Opens a file to read without blocking: a FIFO that no one writes to would hang open() forever;
 * opened with O_NONBLOCK it opens at once, and reads then block only while a writer is there. */
static int open_to_read(const char *path, struct stat *st) {
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0) return fail("%s: %s", path, strerror(errno));
    if (fstat(fd, st) != 0 || fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0) {
        int e = errno;
        close(fd);
        return fail("%s: %s", path, strerror(e));
    }
    return fd;
}

/* Reads a whole file into a NUL-terminated buffer (at most max_bytes); "-" is standard input. Pipes
 * and FIFOs work too: the file is read to its end, not sized first (a FIFO with no writer reads as
 * empty, and is refused as that). */
static int read_file(const char *path, size_t max_bytes, char **out, size_t *out_len) {
    int is_stdin = !strcmp(path, "-"), fd = -1;
    struct stat st = {0};
    if (!is_stdin && (fd = open_to_read(path, &st)) < 0) return -1;
    if (!is_stdin && S_ISDIR(st.st_mode)) { close(fd); return fail("%s: is a directory", path); }
    FILE *f = is_stdin ? stdin : fdopen(fd, "rb");
    if (!f) { int e = errno; close(fd); return fail("%s: %s", path, strerror(e)); }
    size_t cap = 1 << 16, len = 0;
    char *buf = xcalloc(cap + 1, 1);
    for (;;) {
        len += fread(buf + len, 1, cap - len, f);
        if (len < cap || cap > max_bytes) break;
        cap *= 2;
        char *bigger = realloc(buf, cap + 1);
        if (!bigger) { free(buf); if (!is_stdin) fclose(f); return fail("%s: out of memory", path); }
        buf = bigger;
    }
    int error = ferror(f);
    if (!is_stdin) fclose(f);
    if (error) { free(buf); return fail("%s: read error", path); }
    if (len > max_bytes) { free(buf); return fail("%s: more than the %zu bytes this reader takes", path, max_bytes); }
    if (len == 0 && S_ISFIFO(st.st_mode)) { free(buf); return fail("%s: a FIFO with nothing written to it", path); }
    buf[len] = 0;
    *out = buf;
    *out_len = len;
    return 0;
}

/* Files being written that are not complete yet: removed if the run ends early, by exit() (out of
 * memory) or by SIGINT, SIGTERM, SIGHUP or SIGPIPE (main's on_signal), so that no run leaves a
 * half-written or empty file behind. */
#define MAX_TEMPORARIES 16
static char *volatile temporaries[MAX_TEMPORARIES];

static void track_temporary(char *path) {
    for (int i = 0; i < MAX_TEMPORARIES; i++) if (!temporaries[i]) { temporaries[i] = path; return; }
}

static void untrack_temporary(const char *path) {
    for (int i = 0; i < MAX_TEMPORARIES; i++) if (temporaries[i] == path) temporaries[i] = NULL;
}

void remove_temporaries(void) { /* async-signal-safe: unlink only */
    for (int i = 0; i < MAX_TEMPORARIES; i++) if (temporaries[i]) unlink(temporaries[i]);
}

/* Blocks the signals on_signal handles; returns the mask to restore (pthread_sigmask(SIG_SETMASK, ..)). */
static sigset_t hold_signals(void) {
    sigset_t quiet, old;
    sigemptyset(&quiet);
    sigaddset(&quiet, SIGINT), sigaddset(&quiet, SIGTERM), sigaddset(&quiet, SIGHUP), sigaddset(&quiet, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &quiet, &old);
    return old;
}

/* Output files: everything razor writes (logits, profiles, pictures, needle results) goes through
 * open_output/close_output, so that the path a user names is never destroyed:
 *  - a regular file, or a name that does not exist yet, is written to a temporary file beside it and
 *    renamed over it when complete: an interrupted or failed write leaves the old content. A replaced
 *    file keeps its permissions and group (and, when razor runs as root, its owner; a group razor
 *    cannot give it loses its group permissions). A symbolic link is followed first, so the temporary
 *    file sits beside its target and the link stays a link. The directory must be writable: a writable
 *    file in a read-only directory is refused, not overwritten in place;
 *  - anything else that opens for writing (a device, a FIFO, a terminal) is written straight into;
 *  - "-" is standard output; a directory is refused.
 * Errors name the user's path, never the temporary one. */
typedef struct {
    FILE *f;
    char *path;   /* as the user gave it */
    char *target; /* the regular file to replace (symlinks resolved); NULL: written in place */
    char *tmp;    /* the temporary file beside target */
} Output;

static int open_output(Output *out, const char *path) {
    struct stat st, lst;
    int exists = 0;
    memset(out, 0, sizeof *out);
    if (!strcmp(path, "-")) { out->f = stdout; return 0; }
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode)) return fail("%s: is a directory", path);
        if (!S_ISREG(st.st_mode)) {
            if (!(out->f = fopen(path, "wb"))) return fail("%s: %s", path, strerror(errno));
            out->path = xstrdup(path);
            return 0;
        }
        if (!(out->target = realpath(path, NULL))) return fail("%s: %s", path, strerror(errno));
        exists = 1;
    } else if (lstat(path, &lst) == 0) {
        return fail("%s: a symbolic link to nothing", path);
    } else {
        out->target = xstrdup(path);
    }
    size_t n = strlen(out->target) + 32;
    out->tmp = xcalloc(n, 1);
    snprintf(out->tmp, n, "%s.tmp%ld", out->target, (long)getpid());
    mode_t first_mode = exists ? st.st_mode & 0600 : 0666;
    sigset_t mask = hold_signals(); /* no signal between creating the file and tracking it */
    int fd = open(out->tmp, O_WRONLY | O_CREAT | O_EXCL, first_mode), e = errno;
    if (fd < 0 && e == EEXIST && unlink(out->tmp) == 0) /* left by a killed run that had this process id */
        fd = open(out->tmp, O_WRONLY | O_CREAT | O_EXCL, first_mode), e = errno;
    if (fd >= 0) track_temporary(out->tmp);
    pthread_sigmask(SIG_SETMASK, &mask, NULL);
    if (fd >= 0 && exists) { /* the owner first (chown clears setuid bits); a group razor cannot give loses its bits */
        mode_t mode = st.st_mode & 07777;
        int root = geteuid() == 0;
        if (fchown(fd, root ? st.st_uid : (uid_t)-1, st.st_gid) != 0) {
            if (root) e = errno, close(fd), fd = -1, remove(out->tmp);
            else mode &= ~(mode_t)02070;
        }
        if (fd >= 0 && fchmod(fd, mode) != 0) e = errno, close(fd), fd = -1, remove(out->tmp);
    }
    if (fd < 0 || !(out->f = fdopen(fd, "wb"))) {
        if (fd >= 0) e = errno, close(fd), remove(out->tmp);
        untrack_temporary(out->tmp);
        const char *why = (e == EACCES || e == EROFS) && exists ? " (its directory: razor writes a new file beside it "
                          "and renames it into place, so a failed run keeps the old one)" : "";
        fail("%s: %s%s", path, strerror(e), why);
        free(out->target); free(out->tmp);
        memset(out, 0, sizeof *out);
        return -1;
    }
    out->path = xstrdup(path);
    return 0;
}

/* Did everything written to f reach the file? Flushes it, checks its error flag and closes it (not
 * stdout); on failure, leaves "NAME: cannot write it all: <reason>" in razor_error. discarded: f is a
 * file removed on failure, so one more byte may be written to it to learn the reason. */
static int finish_stream(FILE *f, const char *name, int discarded) {
    errno = 0;
    int flushed = fflush(f) == 0, e = errno;
    int ok = flushed && !ferror(f);
    if (!ok && !e && discarded) { /* an earlier write failed and its errno is gone: one more byte says why */
        clearerr(f);              /* (only into a temporary file, which is removed anyway) */
        if (fputc(0, f) == EOF || fflush(f) != 0) e = errno;
    }
    if (f != stdout && fclose(f) != 0 && ok) ok = 0, e = errno;
    if (ok) return 0;
    return fail("%s: cannot write it all: %s", name, e ? strerror(e) : "a write failed");
}

/* keep: keep what was written (a temporary file is renamed into place), unless a write or the close
 * failed; else discard it, the caller's own error message standing. Returns -1 if not kept. */
static int close_output(Output *out, int keep) {
    if (!out->f) return -1;
    char saved[sizeof error_message];
    memcpy(saved, error_message, sizeof saved);
    int written = finish_stream(out->f, out->path ? out->path : "standard output", out->tmp != NULL) == 0;
    int status = 0;
    if (!keep) status = -1, memcpy(error_message, saved, sizeof saved); /* the caller's message stands */
    else if (!written) status = -1;
    if (out->tmp) {
        if (status == 0 && rename(out->tmp, out->target) != 0) status = fail("%s: %s", out->path, strerror(errno));
        if (status != 0) remove(out->tmp);
        untrack_temporary(out->tmp);
    }
    free(out->path); free(out->target); free(out->tmp);
    memset(out, 0, sizeof *out);
    return status;
}

/* Outputs named by adding to a prefix (-m profile's PATH.svg, -m needle's PREFIX.jsonl and pictures) need
 * a prefix that names a file: not a directory, a device or standard output, and not ending in '/'. */
static int check_prefix(const char *prefix, const char *what) {
    struct stat st;
    size_t len = strlen(prefix);
    const char *base = strrchr(prefix, '/') ? strrchr(prefix, '/') + 1 : prefix;
    if (!len || !strcmp(prefix, "-") || !*base || !strcmp(base, ".") || !strcmp(base, ".."))
        return fail("-o %s: %s named by adding to it; give a file name", prefix, what);
    if (stat(prefix, &st) == 0 && !S_ISREG(st.st_mode))
        return fail("-o %s: %s named by adding to it, and it is a %s; give a file name", prefix, what,
                    S_ISDIR(st.st_mode) ? "directory" : "device or FIFO");
    return 0;
}

/* ------------------------------------------------------------------------------------------------
 * Appendix B. The tokenizers. Two kinds of file, one merge loop:
 *
 * llama2.c's tokenizer.bin, a sentencepiece BPE: int32 max_token_length, then per id: float32 score,
 * int32 length, the piece's bytes (sentencepiece's U+2581 already turned into ' '). Encoding is
 * sentencepiece's: a dummy-prefix space, one symbol per UTF-8 character, then merge the adjacent
 * pair whose concatenation is the highest-scoring piece (leftmost on ties) until none is left;
 * characters with no piece become byte tokens <0xNN>. Control pieces (<unk>, <s>, </s>) and byte
 * pieces never come out of a merge: literal "<s>" in a prompt is text.
 *
 * razor's RZTK file, the byte-level BPE of a Hugging Face tokenizer.json (GPT-2, Llama 3, Qwen2),
 * written by export.py (all integers int32 little-endian):
 *   header  "RZTK", version 1, vocab_size, bos_id, eos_id (-1: none), regex (1 Llama 3, 2 GPT-2,
 *           3 Qwen2), flags (1 ignore_merges, 2 NFC normalizer, 4 the added tokens match the
 *           normalized text), n_merges, n_classes, n_nfc (int32 words of the nfc section)
 *   tokens  per id: int32 length, uint8 type (1 in the BPE vocabulary, 2 split out of the text
 *           wherever it occurs, 4 special), then its raw bytes
 *   merges  per rank, first applied first: left id, right id, result id
 *   classes per range: first, last code point, class (1 \p{L}, 2 \p{N}, 3 \s; others are 0)
 *   nfc     with flag 2: the NFC tables (see nfc_normalize)
 * Encoding is the tokenizers library's: split out the added tokens (type 2), cut the text between
 * them into pre-tokens with the regex (matched by hand in pretoken_end), then BPE each pre-token from
 * one symbol per byte, applying the lowest-rank merge among adjacent pairs (leftmost on ties) until
 * none applies. With ignore_merges, a pre-token that is itself in the vocabulary is that token.
 * Special tokens never come from text. A tokenizer whose normalizer is NFC normalizes first.
 *
 * Both BPEs run in bpe_merge: a heap of candidate pairs, O(n log n), not llama2.c's O(n^2). */

enum { IN_VOCAB = 1, SPLIT_OUT = 2, SPECIAL = 4 };    /* RZTK token types */
enum { IGNORE_MERGES = 1, NFC = 2, ADDED_NORMALIZED = 4 }; /* RZTK flags */
enum { REGEX_LLAMA3 = 1, REGEX_GPT2 = 2, REGEX_QWEN2 = 3 };
enum { OTHER, LETTER, NUMBER, SPACE };               /* code point classes */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static size_t table_size(int n) {
    size_t size = 16;
    while (size < 2 * (size_t)n) size *= 2;
    return size;
}

static int is_byte_piece(const char *p, int len, int *byte) {
    if (len != 6 || memcmp(p, "<0x", 3) != 0 || p[5] != '>' || !isxdigit((unsigned char)p[3]) ||
        !isxdigit((unsigned char)p[4]))
        return 0;
    char hex[3] = {p[3], p[4], 0};
    *byte = (int)strtol(hex, NULL, 16);
    return 1;
}

/* The slot of the piece spelled s[0..n) in the hash of mergeable pieces, or the empty slot where it would go. */
static size_t piece_slot(const Tokenizer *t, const char *s, size_t n) {
    size_t slot = hash_bytes(s, n) & t->table_mask;
    for (int id; (id = t->table[slot] - 1) >= 0; slot = (slot + 1) & t->table_mask)
        if ((size_t)t->length[id] == n && memcmp(t->piece[id], s, n) == 0) break;
    return slot;
}

static int lookup_piece(const Tokenizer *t, const char *s, size_t n) { return t->table[piece_slot(t, s, n)] - 1; }

static void add_piece(Tokenizer *t, int id) {
    size_t slot = piece_slot(t, t->piece[id], (size_t)t->length[id]);
    if (!t->table[slot]) t->table[slot] = id + 1; /* a repeated spelling keeps its first id */
}

/* The slot of the merge of a and b (RZTK), or the empty slot where it would go. */
static size_t merge_slot(const Tokenizer *t, int a, int b) {
    size_t slot =
        ((uint64_t)(uint32_t)a * 0x9E3779B97F4A7C15ull ^ (uint32_t)b) * 0xBF58476D1CE4E5B9ull >> 20 & t->merge_mask;
    while (t->merges[slot].left >= 0 && (t->merges[slot].left != a || t->merges[slot].right != b))
        slot = (slot + 1) & t->merge_mask;
    return slot;
}

/* Decodes the UTF-8 character at s (n > 0 bytes left) into *c; returns its length. A byte that
 * does not start a valid sequence stands alone, as code point -1. */
static int utf8_char(const unsigned char *s, size_t n, int *c) {
    int len = s[0] < 0x80 ? 1 : s[0] < 0xC2 ? 0 : s[0] < 0xE0 ? 2 : s[0] < 0xF0 ? 3 : s[0] < 0xF5 ? 4 : 0;
    int v = len == 1 ? s[0] : s[0] & (0x7F >> len);
    for (int k = 1; k < len && v >= 0; k++) v = (size_t)k < n && (s[k] & 0xC0) == 0x80 ? v << 6 | (s[k] & 0x3F) : -1;
    if (len == 0 || v < 0 || (len == 3 && (v < 0x800 || (v >= 0xD800 && v < 0xE000))) ||
        (len == 4 && (v < 0x10000 || v > 0x10FFFF))) {
        len = 1;
        v = -1;
    }
    *c = v;
    return len;
}

/* NFC normalization (for byte-level tokenizers whose normalizer is NFC), as the tokenizers library
 * does it: decompose canonically (Hangul by arithmetic, others from the file's table, already applied
 * recursively), sort each run of non-starters by combining class (stable), then compose each starter
 * with the following characters it is not blocked from. Bytes that are not valid UTF-8 pass through
 * unchanged and compose with nothing. The tables (RZTK's nfc section, int32 words):
 *   n_ccc, n_decomp, n_comp, n_pool, then ccc (first, last, class) ranges of the nonzero combining
 *   classes; decomp (code point, pool offset, length 1-4) sorted; comp (first, second, composite)
 *   sorted, composition exclusions removed; pool: the decompositions' code points. */
enum { S_BASE = 0xAC00, L_BASE = 0x1100, V_BASE = 0x1161, T_BASE = 0x11A7, L_COUNT = 19, V_COUNT = 21, T_COUNT = 28,
       N_COUNT = V_COUNT * T_COUNT, S_COUNT = L_COUNT * N_COUNT };

/* Reads the nfc section, n_words int32s at data + *at, and advances *at past it. Returns 0, or -1
 * (fail says why) for a section whose counts, order or values are bad. */
static int load_nfc_tables(NfcTables *t, const char *data, size_t size, size_t *at, int n_words) {
    memset(t, 0, sizeof *t);
    if (n_words < 4 || (size - *at) / 4 < (size_t)n_words)
        return fail("nfc section: %d words, bad or past the end", n_words);
    const unsigned char *p = (const unsigned char *)data + *at;
    int *w = xcalloc((size_t)n_words, sizeof(int)); /* one block: the tables point into it */
    for (int i = 0; i < n_words; i++) w[i] = read_i32(p + 4 * (size_t)i);
    int n_ccc = w[0], n_decomp = w[1], n_comp = w[2], n_pool = w[3];
    if (n_ccc < 0 || n_decomp < 0 || n_comp < 0 || n_pool < 0 ||
        4 + 3 * ((int64_t)n_ccc + n_decomp + n_comp) + n_pool != n_words) {
        free(w);
        return fail("nfc section: bad counts");
    }
    *t = (NfcTables){.n_ccc = n_ccc, .n_decomp = n_decomp, .n_comp = n_comp};
    t->ccc = xcalloc((size_t)n_ccc + 1, sizeof(CodeRange));
    t->decomp = w + 4 + 3 * n_ccc;
    t->comp = t->decomp + 3 * n_decomp;
    t->pool = t->comp + 3 * n_comp;
    for (int i = 0; i < n_ccc; i++) t->ccc[i] = (CodeRange){w[4 + 3 * i], w[5 + 3 * i], w[6 + 3 * i]};
    int ok = 1;
    for (int i = 0; i < n_ccc; i++) {
        CodeRange r = t->ccc[i];
        ok &= r.first >= 0 && r.first <= r.last && r.last <= 0x10FFFF && r.value >= 1 && r.value <= 254 &&
              (i == 0 || r.first > t->ccc[i - 1].last);
    }
    for (int i = 0; i < n_pool; i++) ok &= t->pool[i] >= 0 && t->pool[i] <= 0x10FFFF;
    for (int i = 0; i < n_decomp; i++) {
        int *d = t->decomp + 3 * i;
        ok &= d[0] >= 0 && d[0] <= 0x10FFFF && (i == 0 || d[0] > d[-3]) && d[2] >= 1 && d[2] <= 4 && d[1] >= 0 &&
              d[1] <= n_pool - d[2];
    }
    for (int i = 0; i < n_comp; i++) {
        int *c = t->comp + 3 * i;
        ok &= c[0] >= 0 && c[1] >= 0 && c[2] >= 0 && c[0] <= 0x10FFFF && c[1] <= 0x10FFFF && c[2] <= 0x10FFFF &&
              (i == 0 || c[0] > c[-3] || (c[0] == c[-3] && c[1] > c[-2]));
    }
    if (!ok) {
        free(t->ccc); free(w);
        memset(t, 0, sizeof *t);
        return fail("nfc section: a table is out of order or has a bad value");
    }
    *at += 4 * (size_t)n_words;
    return 0;
}

static void free_nfc_tables(NfcTables *t) {
    if (t->decomp) free(t->decomp - 4 - 3 * t->n_ccc); /* the block load_nfc_tables allocated */
    free(t->ccc);
    memset(t, 0, sizeof *t);
}

/* The value of the range of r[0..n) (sorted, disjoint) that holds code point c, else 0. */
static int range_value(const CodeRange *r, int n, int c) {
    for (int lo = 0, hi = n - 1; lo <= hi;) {
        int mid = (lo + hi) / 2;
        if (c < r[mid].first) hi = mid - 1;
        else if (c > r[mid].last) lo = mid + 1;
        else return r[mid].value;
    }
    return 0;
}

/* The triple of table (n triples, sorted) whose first two values are a, b (b ignored if key2 is 0). */
static const int *nfc_find(const int *table, int n, int a, int b, int key2) {
    for (int lo = 0, hi = n - 1; lo <= hi;) {
        int mid = (lo + hi) / 2;
        const int *e = table + 3 * mid;
        int d = a != e[0] ? (a < e[0] ? -1 : 1) : !key2 || b == e[1] ? 0 : b < e[1] ? -1 : 1;
        if (d == 0) return e;
        if (d < 0) hi = mid - 1; else lo = mid + 1;
    }
    return NULL;
}

/* The composite of a and b, or -1. */
static int nfc_compose(const NfcTables *t, int a, int b) {
    if (a >= L_BASE && a < L_BASE + L_COUNT && b >= V_BASE && b < V_BASE + V_COUNT)
        return S_BASE + ((a - L_BASE) * V_COUNT + b - V_BASE) * T_COUNT;
    if (a >= S_BASE && a < S_BASE + S_COUNT && (a - S_BASE) % T_COUNT == 0 && b > T_BASE && b < T_BASE + T_COUNT)
        return a + b - T_BASE;
    const int *e = a >= 0 && b >= 0 ? nfc_find(t->comp, t->n_comp, a, b, 1) : NULL;
    return e ? e[2] : -1;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* NFC of text[0..n); returns a malloc'd NUL-terminated string of *out_len bytes. Uses utf8_char from
 * razor.c; an invalid byte b is carried through as the code point -1 - b. */
static char *nfc_normalize(const NfcTables *t, const char *text, size_t n, size_t *out_len) {
    int *d = xcalloc(4 * n + 1, sizeof(int)), m = 0, c; /* the canonical decomposition: at most 4 per byte */
    for (size_t i = 0; i < n;) {
        int len = utf8_char((const unsigned char *)text + i, n - i, &c);
        if (c < 0) c = -1 - (unsigned char)text[i];
        i += (size_t)len;
        const int *e = c >= 0 ? nfc_find(t->decomp, t->n_decomp, c, 0, 0) : NULL;
        if (c >= S_BASE && c < S_BASE + S_COUNT) {
            int s = c - S_BASE;
            d[m++] = L_BASE + s / N_COUNT;
            d[m++] = V_BASE + s % N_COUNT / T_COUNT;
            if (s % T_COUNT) d[m++] = T_BASE + s % T_COUNT;
        } else if (e) {
            for (int k = 0; k < e[2]; k++) d[m++] = t->pool[e[1] + k];
        } else {
            d[m++] = c;
        }
    }
    /* canonical order: a stable sort of each run of non-starters by class; keys class << 32 | index */
    uint64_t *key = xcalloc((size_t)m + 1, sizeof(uint64_t));
    unsigned char *cls = xcalloc((size_t)m + 1, 1);
    for (int i = 0; i < m; i++) cls[i] = (unsigned char)(d[i] >= 0 ? range_value(t->ccc, t->n_ccc, d[i]) : 0);
    for (int i = 0, j; i < m; i = j + 1) {
        for (j = i; j < m && cls[j]; j++) key[j - i] = (uint64_t)cls[j] << 32 | (uint32_t)j;
        if (j - i < 2) continue;
        qsort(key, (size_t)(j - i), sizeof(uint64_t), cmp_u64);
        for (int k = 0; k < j - i; k++) key[k] = (uint64_t)(uint32_t)d[(uint32_t)key[k]] << 32 | (key[k] >> 32);
        for (int k = 0; k < j - i; k++) d[i + k] = (int)(uint32_t)(key[k] >> 32), cls[i + k] = (unsigned char)key[k];
    }
    /* compose: each character with the last starter, unless a character between has class 0 or >= its own */
    int out = 0, starter = -1, last_cls = 0;
    for (int i = 0; i < m; i++) {
        int cc = cls[i], comp;
        if (starter >= 0 && (out == starter + 1 || (last_cls != 0 && last_cls < cc)) &&
            (comp = nfc_compose(t, d[starter], d[i])) >= 0) {
            d[starter] = comp;
            continue;
        }
        if (cc == 0) starter = out;
        last_cls = cc;
        d[out] = d[i];
        cls[out++] = (unsigned char)cc;
    }
    /* back to UTF-8 */
    char *s = xcalloc(4 * (size_t)out + 1, 1);
    size_t k = 0;
    for (int i = 0; i < out; i++) {
        unsigned v = (unsigned)d[i];
        if (d[i] < 0) s[k++] = (char)(-1 - d[i]);
        else if (v < 0x80) s[k++] = (char)v;
        else { /* UTF-8: a lead byte that says the length, then 6 bits per continuation byte */
            static const int lead[4] = {0, 0xC0, 0xE0, 0xF0};
            int n_more = v < 0x800 ? 1 : v < 0x10000 ? 2 : 3;
            s[k++] = (char)(lead[n_more] | v >> 6 * n_more);
            for (int shift = 6 * (n_more - 1); shift >= 0; shift -= 6) s[k++] = (char)(0x80 | (v >> shift & 63));
        }
    }
    free(d); free(key); free(cls);
    *out_len = k;
    return s;
}

void free_tokenizer(Tokenizer *t) {
    free(t->data); free(t->piece); free(t->length); free(t->score); free(t->type); free(t->table);
    free(t->merges); free(t->classes); free(t->added);
    free_nfc_tables(&t->nfc);
    memset(t, 0, sizeof *t);
}

static int load_rztk(Tokenizer *t, const char *path, size_t size) {
    const char *d = t->data;
    size_t at = 40;
    int file_vocab = read_i32((const unsigned char *)d + 8), n_merges = read_i32((const unsigned char *)d + 28);
    t->regex = read_i32((const unsigned char *)d + 20);
    t->flags = read_i32((const unsigned char *)d + 24);
    t->n_classes = read_i32((const unsigned char *)d + 32);
    t->n_nfc = read_i32((const unsigned char *)d + 36);
    if (read_i32((const unsigned char *)d + 4) != 1)
        return fail("%s: RZTK version %d, this build reads 1", path, read_i32((const unsigned char *)d + 4));
    if (file_vocab < 256 || file_vocab > t->vocab_size)
        return fail("%s: has %d tokens, the model's vocabulary has %d", path, file_vocab, t->vocab_size);
    if (t->regex < REGEX_LLAMA3 || t->regex > REGEX_QWEN2 || (t->flags & ~7) || n_merges < 0 || t->n_classes < 0 ||
        t->n_nfc < 0 || (!(t->flags & NFC) && t->n_nfc != 0))
        return fail("%s: bad header", path);
    t->type = xcalloc((size_t)t->vocab_size, 1);
    t->added = xcalloc((size_t)t->vocab_size, sizeof(int));
    for (int i = 0; i < file_vocab; i++) { /* ids past the file's vocabulary (a padded model) stay empty */
        int32_t len = size - at >= 5 ? read_i32((const unsigned char *)d + at) : -1;
        t->type[i] = size - at >= 5 ? (unsigned char)d[at + 4] : 0;
        at += 5;
        if (len < 0 || (size_t)len > size - at || t->type[i] > 7 || (len == 0 && (t->type[i] & SPLIT_OUT)))
            return fail("%s: token %d: bad length %d or type %d", path, i, (int)len, t->type[i]);
        t->piece[i] = d + at;
        t->length[i] = len;
        at += (size_t)len;
        if (t->type[i] & SPLIT_OUT) t->added[t->n_added++] = i;
        if (!(t->type[i] & IN_VOCAB)) continue;
        if (len == 1 && t->byte_token[(unsigned char)d[at - 1]] < 0) t->byte_token[(unsigned char)d[at - 1]] = i;
        add_piece(t, i);
    }
    for (int b = 0; b < 256; b++)
        if (t->byte_token[b] < 0) return fail("%s: no token for byte 0x%02x", path, b);
    if (size - at != 12 * ((size_t)n_merges + (size_t)t->n_classes) + 4 * (size_t)t->n_nfc)
        return fail("%s: %zu bytes after the tokens, not %d merges, %d ranges and %d NFC words", path, size - at,
                    n_merges, t->n_classes, t->n_nfc);
    t->merge_mask = table_size(n_merges) - 1;
    t->merges = xcalloc(t->merge_mask + 1, sizeof(Merge));
    for (size_t s = 0; s <= t->merge_mask; s++) t->merges[s].left = -1;
    for (int r = 0; r < n_merges; r++, at += 12) {
        const unsigned char *p = (const unsigned char *)d + at;
        Merge m = {read_i32(p), read_i32(p + 4), r, read_i32(p + 8)};
        if ((unsigned)m.left >= (unsigned)file_vocab || (unsigned)m.right >= (unsigned)file_vocab ||
            (unsigned)m.result >= (unsigned)file_vocab)
            return fail("%s: merge %d has an id outside the vocabulary", path, r);
        t->merges[merge_slot(t, m.left, m.right)] = m; /* a repeated pair keeps its last rank, as in the library */
    }
    t->classes = xcalloc((size_t)t->n_classes + 1, sizeof(CodeRange));
    for (int i = 0; i < t->n_classes; i++, at += 12) {
        const unsigned char *p = (const unsigned char *)d + at;
        CodeRange r = {read_i32(p), read_i32(p + 4), read_i32(p + 8)};
        if (r.first < 0 || r.last < r.first || r.last > 0x10FFFF || (i != 0 && r.first <= t->classes[i - 1].last) ||
            r.value < LETTER || r.value > SPACE)
            return fail("%s: code point range %d is bad, out of order, or of an unknown class", path, i);
        t->classes[i] = r;
    }
    if ((t->flags & NFC) && load_nfc_tables(&t->nfc, d, size, &at, t->n_nfc) != 0) {
        char why[sizeof error_message];
        snprintf(why, sizeof why, "%s", error_message);
        return fail("%s: %s", path, why);
    }
    t->byte_level = 1;
    return 0;
}

static int load_sentencepiece(Tokenizer *t, const char *path, size_t size) {
    const char *d = t->data;
    size_t at = 4;
    t->score = xcalloc((size_t)t->vocab_size, sizeof(float));
    for (int i = 0; i < t->vocab_size; i++) {
        if (at + 8 > size) return fail("%s: has %d pieces, the model's vocabulary has %d", path, i, t->vocab_size);
        memcpy(&t->score[i], d + at, 4);
        int32_t len = read_i32((const unsigned char *)d + at + 4);
        at += 8;
        if (len < 0 || (size_t)len > size - at) return fail("%s: piece %d: bad length %d", path, i, (int)len);
        if (!isfinite(t->score[i])) return fail("%s: piece %d: score is not finite", path, i);
        t->piece[i] = d + at;
        t->length[i] = len;
        at += (size_t)len;
    }
    if (at != size)
        return fail("%s: has more than the model's %d pieces (%zu trailing bytes)", path, t->vocab_size, size - at);
    for (int i = 0; i < t->vocab_size; i++) {
        int byte;
        if (is_byte_piece(t->piece[i], t->length[i], &byte)) {
            if (t->byte_token[byte] < 0) t->byte_token[byte] = i;
        } else if (i != 0 && i != t->bos_id && i != t->eos_id && t->length[i] > 0) { /* not <unk>, <s>, </s> */
            add_piece(t, i);
        }
    }
    return 0;
}

/* Loads tokenizer.bin (llama2.c's) or an RZTK file, for a model of vocab_size tokens; frees all if refused. */
int load_tokenizer(Tokenizer *t, const char *path, int vocab_size, int bos_id, int eos_id) {
    memset(t, 0, sizeof *t);
    char *data;
    size_t size;
    if (read_file(path, (size_t)1 << 30, &data, &size) != 0) return -1;
    if (size < 4) { free(data); return fail("%s: %zu bytes, too small to be a tokenizer file", path, size); }
    *t = (Tokenizer){.data = data, .vocab_size = vocab_size, .bos_id = bos_id, .eos_id = eos_id};
    t->piece = xcalloc((size_t)vocab_size, sizeof(char *));
    t->length = xcalloc((size_t)vocab_size, sizeof(int));
    for (int i = 0; i < vocab_size; i++) t->piece[i] = "";
    for (int b = 0; b < 256; b++) t->byte_token[b] = -1;
    t->table_mask = table_size(vocab_size) - 1;
    t->table = xcalloc(t->table_mask + 1, sizeof(int));
    int status = size >= 40 && memcmp(data, "RZTK", 4) == 0 ? load_rztk(t, path, size)
                                                              : load_sentencepiece(t, path, size);
    if (status != 0) free_tokenizer(t);
    return status;
}

/* The end of the pre-token that starts at code point i of cp[0..n) (classes in cls): the end of the
 * first alternative of the tokenizer's regex that matches there, as a backtracking engine finds it.
 *   Llama 3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}
 *            | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 *   Qwen2:   the same with \p{N} for \p{N}{1,3}
 *   GPT-2:   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static int pretoken_end(int regex, const int *cp, const unsigned char *cls, int i, int n) {
#define IS_NL(k) ((k) < n && (cp[k] == '\r' || cp[k] == '\n'))
    int j = i;
    if (cp[i] == '\'' && i + 1 < n) { /* contractions; case-insensitive (and long s is s) but for GPT-2 */
        int a = cp[i + 1], b = i + 2 < n ? cp[i + 2] : 0;
        if (regex != REGEX_GPT2) { /* Llama 3's (?i:...): any case, and U+017F long s matches 's' */
            a = a == 0x17F ? 's' : a | (a >= 'A' && a <= 'Z' ? 32 : 0);
            b |= b >= 'A' && b <= 'Z' ? 32 : 0;
        }
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    }
    if (regex == REGEX_GPT2) {
        j += cp[i] == ' ' && i + 1 < n && cls[i + 1] != SPACE;
        if (cls[j] != SPACE) {
            int c = cls[j];
            while (j < n && cls[j] == c) j++;
            return j;
        }
    } else {
        if (cls[i] == LETTER || (cls[i] != NUMBER && !IS_NL(i) && i + 1 < n && cls[i + 1] == LETTER)) {
            for (j = i + 1; j < n && cls[j] == LETTER; j++) {}
            return j;
        }
        if (cls[i] == NUMBER) {
            while (j < n && j - i < (regex == REGEX_QWEN2 ? 1 : 3) && cls[j] == NUMBER) j++;
            return j;
        }
        j += cp[i] == ' ' && i + 1 < n && cls[i + 1] == OTHER;
        if (cls[j] == OTHER) {
            while (j < n && cls[j] == OTHER) j++;
            while (IS_NL(j)) j++;
            return j;
        }
    }
    int end = i, last_nl = -1; /* white space: \s*[\r\n]+ (not GPT-2), \s+(?!\S), \s+ */
    for (; end < n && cls[end] == SPACE; end++) if (IS_NL(end)) last_nl = end;
    if (regex != REGEX_GPT2 && last_nl >= 0) return last_nl + 1;
    return end == n || end - i == 1 ? end : end - 1;
#undef IS_NL
}

/* A candidate merge of the symbols at pos and pos + len[pos], making `span` bytes and token `result`;
 * the heap pops the highest priority first, the leftmost on ties. */
typedef struct { float priority; int pos, span, result; } MergeCandidate;
static int candidate_before(MergeCandidate a, MergeCandidate b) {
    return a.priority > b.priority || (a.priority == b.priority && a.pos < b.pos);
}

static void heap_push(MergeCandidate *heap, int *n, MergeCandidate c) {
    int i = (*n)++;
    for (; i > 0 && candidate_before(c, heap[(i - 1) / 2]); i = (i - 1) / 2) heap[i] = heap[(i - 1) / 2];
    heap[i] = c;
}

static MergeCandidate heap_pop(MergeCandidate *heap, int *n) {
    MergeCandidate top = heap[0], last = heap[--*n];
    int i = 0, child;
    while ((child = 2 * i + 1) < *n) {
        if (child + 1 < *n && candidate_before(heap[child + 1], heap[child])) child++;
        if (!candidate_before(heap[child], last)) break;
        heap[i] = heap[child];
        i = child;
    }
    heap[i] = last;
    return top;
}

/* The merge of the symbols a and b, if the tokenizer has one: sentencepiece merges into the piece
 * their bytes spell, by its score; byte-level BPE by the rank of the pair (a lower rank first). */
static int find_merge(const Tokenizer *t, const char *s, const int *id, const int *len, int a, int b,
                      MergeCandidate *c) {
    if (t->byte_level) {
        const Merge *g = &t->merges[merge_slot(t, id[a], id[b])];
        *c = (MergeCandidate){(float)-g->rank, a, len[a] + len[b], g->result};
        return g->left >= 0;
    }
    int piece = lookup_piece(t, s + a, (size_t)len[a] + len[b]);
    *c = (MergeCandidate){piece >= 0 ? t->score[piece] : 0, a, len[a] + len[b], piece};
    return piece >= 0;
}

/* THE BPE merge loop, for both kinds. The symbols are spans of s[0..m): the one at byte k is token
 * id[k] (-1 if no piece spells it) of len[k] bytes (0: merged away), the next one starts at
 * k + len[k], the previous at prev[k]. Merges the best candidate pair until none is left; a
 * candidate is stale once either side has grown (symbols only grow) or gone. heap: room for 3m
 * candidates. */
static void bpe_merge(const Tokenizer *t, const char *s, int m, int *id, int *len, int *prev, MergeCandidate *heap) {
    int n_heap = 0;
    MergeCandidate c;
    for (int k = 0; k < m; k += len[k])
        if (k + len[k] < m && find_merge(t, s, id, len, k, k + len[k], &c)) heap_push(heap, &n_heap, c);
    while (n_heap > 0) {
        c = heap_pop(heap, &n_heap);
        int at = c.pos, right = at + len[at];
        if (len[at] == 0 || right >= m || len[at] + len[right] != c.span) continue;
        len[at] = c.span;
        len[right] = 0;
        id[at] = c.result;
        if (at + c.span < m) prev[at + c.span] = at;
        if (prev[at] >= 0 && find_merge(t, s, id, len, prev[at], at, &c)) heap_push(heap, &n_heap, c);
        if (at + len[at] < m && find_merge(t, s, id, len, at, at + len[at], &c)) heap_push(heap, &n_heap, c);
    }
}

/* sentencepiece: the dummy-prefix space, then the text, in which U+2581 (sentencepiece's space
 * symbol, which tokenizer.bin spells ' ') is a space too; one symbol per UTF-8 character. */
static int encode_sentencepiece(const Tokenizer *t, const char *text, size_t text_len, int *tokens, int n_tokens) {
    int *id = xcalloc(text_len + 2, sizeof(int)), *len = xcalloc(text_len + 2, sizeof(int)),
        *prev = xcalloc(text_len + 2, sizeof(int));
    MergeCandidate *heap = xcalloc(3 * text_len + 6, sizeof(MergeCandidate));
    char *s = xcalloc(text_len + 2, 1);
    int m = 0;
    s[m++] = ' ';
    for (size_t i = 0; i < text_len; i++) {
        if (i + 3 <= text_len && memcmp(text + i, "\xe2\x96\x81", 3) == 0) {
            s[m++] = ' ';
            i += 2;
        } else {
            s[m++] = text[i];
        }
    }
    for (int k = 0, last = -1, c; k < m; last = k, k += len[k]) {
        len[k] = utf8_char((const unsigned char *)s + k, (size_t)(m - k), &c);
        id[k] = lookup_piece(t, s + k, (size_t)len[k]);
        prev[k] = last;
    }
    bpe_merge(t, s, m, id, len, prev, heap);
    for (int k = 0; k < m; k += len[k]) {
        if (id[k] >= 0) { tokens[n_tokens++] = id[k]; continue; }
        for (int b = 0; b < len[k]; b++) { /* byte fallback; <unk> if the vocabulary has no byte pieces */
            int byte_id = t->byte_token[(unsigned char)s[k + b]];
            tokens[n_tokens++] = byte_id >= 0 ? byte_id : 0;
        }
    }
    free(s); free(id); free(len); free(prev); free(heap);
    return n_tokens;
}

/* byte-level BPE of a stretch of text with no added token in it: NFC if the tokenizer asks for it
 * (and has not already normalized the whole text), pre-tokens, then BPE from one symbol per byte. */
static int encode_stretch(const Tokenizer *t, const char *text, size_t n_bytes, int normalize, int *tokens,
                          int n_tokens) {
    char *normalized = NULL;
    if (normalize) text = normalized = nfc_normalize(&t->nfc, text, n_bytes, &n_bytes);
    int *cp = xcalloc(n_bytes + 1, sizeof(int)), *at = xcalloc(n_bytes + 1, sizeof(int)), n = 0;
    int *id = xcalloc(n_bytes + 1, sizeof(int)), *len = xcalloc(n_bytes + 1, sizeof(int)),
        *prev = xcalloc(n_bytes + 1, sizeof(int));
    unsigned char *cls = xcalloc(n_bytes + 1, 1);
    MergeCandidate *heap = xcalloc(3 * n_bytes + 3, sizeof(MergeCandidate));
    for (size_t i = 0; i < n_bytes; n++) { /* code points, their byte offsets and classes */
        at[n] = (int)i;
        i += (size_t)utf8_char((const unsigned char *)text + i, n_bytes - i, &cp[n]);
        cls[n] = (unsigned char)range_value(t->classes, t->n_classes, cp[n]);
    }
    at[n] = (int)n_bytes;
    for (int j = 0, end; j < n; j = end) { /* one pre-token at a time */
        end = pretoken_end(t->regex, cp, cls, j, n);
        if (end <= j) end = j + 1; /* never stall, whatever the file's tables say */
        const char *s = text + at[j];
        int m = at[end] - at[j], whole = t->flags & IGNORE_MERGES ? lookup_piece(t, s, (size_t)m) : -1;
        if (whole >= 0) { tokens[n_tokens++] = whole; continue; }
        for (int k = 0; k < m; k++) id[k] = t->byte_token[(unsigned char)s[k]], len[k] = 1, prev[k] = k - 1;
        bpe_merge(t, s, m, id, len, prev, heap);
        for (int k = 0; k < m; k += len[k]) tokens[n_tokens++] = id[k];
    }
    free(cp); free(at); free(id); free(len); free(prev); free(cls); free(heap); free(normalized);
    return n_tokens;
}

/* byte-level BPE: the added tokens are split out first (from the normalized text if the file says
 * they match it, else from the raw text, as the library does), then each stretch between them. */
static int encode_byte_level(const Tokenizer *t, const char *text, size_t n_bytes, int *tokens, int n_tokens) {
    char *normalized = NULL;
    int nfc_each = (t->flags & NFC) && !(t->flags & ADDED_NORMALIZED);
    if ((t->flags & NFC) && (t->flags & ADDED_NORMALIZED))
        text = normalized = nfc_normalize(&t->nfc, text, n_bytes, &n_bytes);
    size_t start = 0;
    for (size_t i = 0; i <= n_bytes;) {
        int added = -1, c; /* the longest added token at byte i */
        for (int k = 0; k < t->n_added && i < n_bytes; k++) {
            int a = t->added[k], l = t->length[a];
            if ((size_t)l <= n_bytes - i && memcmp(text + i, t->piece[a], (size_t)l) == 0 &&
                (added < 0 || l > t->length[added]))
                added = a;
        }
        if (added < 0 && i < n_bytes) {
            i += (size_t)utf8_char((const unsigned char *)text + i, n_bytes - i, &c);
            continue;
        }
        if (i > start) n_tokens = encode_stretch(t, text + start, i - start, nfc_each, tokens, n_tokens);
        if (added < 0) break;
        tokens[n_tokens++] = added;
        i += (size_t)t->length[added];
        start = i;
    }
    free(normalized);
    return n_tokens;
}

/* Encodes text into tokens (room for encode_room(text): NFC may lengthen it), BOS first if bos and
 * the tokenizer has one (callers pass the model's add_bos for a prompt); returns the count, or -1
 * (razor_error says why) for text too long to encode. */
size_t encode_room(const char *text) { return 3 * strlen(text) + 3; }
int encode(const Tokenizer *t, const char *text, int bos, int *tokens) {
    int n_tokens = 0;
    if (bos && t->bos_id >= 0) tokens[n_tokens++] = t->bos_id;
    size_t text_len = strlen(text);
    if (text_len == 0) return n_tokens;
    if (text_len >= (size_t)1 << 28) return fail("a text of %zu bytes is too long to encode", text_len);
    if (t->byte_level) return encode_byte_level(t, text, text_len, tokens, n_tokens);
    return encode_sentencepiece(t, text, text_len, tokens, n_tokens);
}

/* The bytes token stands for, after prev. sentencepiece: byte pieces become their byte, and the
 * dummy-prefix space of the first piece after BOS is dropped. Byte-level: the raw bytes; special
 * tokens print nothing. */
const char *decode(const Tokenizer *t, int prev, int token, int *n_bytes, char byte_buf[2]) {
    const char *piece = t->piece[token];
    int len = t->length[token], byte;
    if (t->byte_level) { *n_bytes = t->type[token] & SPECIAL ? 0 : len; return piece; }
    if (is_byte_piece(piece, len, &byte)) { byte_buf[0] = (char)byte; *n_bytes = 1; return byte_buf; }
    if (prev == t->bos_id && len > 0 && piece[0] == ' ') piece++, len--;
    *n_bytes = len;
    return piece;
}

/* The probe's candidates: every token but BOS, EOS, unk and byte-fallback pieces. A vocabulary of
 * bytes alone (a byte-level model) has nothing else: then the printable ASCII bytes (! to ~) are its
 * ordinary tokens, the text such a model reads. A byte above 0x7F is never a character on its own and
 * a control byte is not text: a random run of those is nothing a model has learned to read, let alone
 * to copy, and probing with them understates every head's induction. */
static int ordinary_tokens(const Tokenizer *t, int *out) {
    int n = 0, byte;
    for (int bytes_too = 0; bytes_too <= 1 && n == 0; bytes_too++)
        for (int i = 0; i < t->vocab_size; i++) {
            if (i == 0 || i == t->bos_id || i == t->eos_id || t->length[i] == 0) continue;
            int ordinary;
            if (t->byte_level) ordinary = t->type[i] == IN_VOCAB;
            else if (!is_byte_piece(t->piece[i], t->length[i], &byte)) ordinary = 1;
            else ordinary = bytes_too && byte > 0x20 && byte < 0x7F;
            if (ordinary) out[n++] = i;
        }
    return n;
}

/* ------------------------------------------------------------------------------------------------
 * Appendix C. Head profiles on disk (razor's .heads text, DuoAttention's .tsv, and the JSON files of
 * golden-stick and Retrieval_Head / HeadKV) and in pictures (the terminal's heat map, SVG) */

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Writes a profile, in the form its path's suffix names: .tsv, DuoAttention's full_attention_heads.tsv
 * (one row per layer, 1 = retrieval, 0 = not, per KV head); .json, golden-stick's retrieval heads
 * (below, before load_json_profile); else razor's .heads text. */
static void write_profile(const HeadProfile *p, FILE *f, const char *path) {
    if (ends_with(path, ".json")) {
        const char *sep = "{";
        for (int l = 0; l < p->n_layers; l++) {
            const char *item = "[";
            for (int g = 0; g < p->n_kv_heads; g++)
                if (p->retrieval[l * p->n_kv_heads + g]) {
                    if (*item == '[') fprintf(f, "%s\n   \"%d\": ", sep, l), sep = ",";
                    fprintf(f, "%s%d", item, g), item = ", ";
                }
            if (*item != '[') fprintf(f, "]");
        }
        fprintf(f, "%s}\n", *sep == '{' ? "{" : "\n");
    } else if (ends_with(path, ".tsv")) {
        for (int l = 0; l < p->n_layers; l++)
            for (int g = 0; g < p->n_kv_heads; g++)
                fprintf(f, "%d%c", p->retrieval[l * p->n_kv_heads + g], g + 1 < p->n_kv_heads ? '\t' : '\n');
    } else {
        if (p->span)
            fprintf(f, "# razor head profile of an ALiBi model (RazorAttention, arXiv 2407.15891, section 3.3)\n"
                       "# Each layer line: for every KV head, its span in tokens (the distance beyond which all its\n"
                       "# attention together is below eps, from its weights and slope) and its cache: RETRIEVAL\n"
                       "# (the span covers the context: every token) or COMPRESSED (sinks + the last span tokens +\n"
                       "# compensation token).\n");
        else
            fprintf(f, "# razor head profile (RazorAttention, arXiv 2407.15891, section 3.2)\n"
                       "# Each layer line: for every KV head, its echo score, its induction score, and its cache:\n"
                       "# RETRIEVAL (a retrieval head: keeps every token) or COMPRESSED (sinks + window +\n"
                       "# compensation token). Edit RETRIEVAL/COMPRESSED by hand if you like; razor refuses a\n"
                       "# profile whose shape is not the model's. (Older files' FULL and RAZOR read the same.)\n");
        fprintf(f, "shape layers %d kv_heads %d heads %d head_dim %d dim %d\n", p->n_layers, p->n_kv_heads, p->n_heads,
                p->head_dim, p->dim);
        if (p->span) fprintf(f, "alibi span eps %g\n", p->span_eps);
        else fprintf(f, "probe K %d repeats 4 seed %llu induction_fraction %g echo_fraction %g\n", p->K,
                     (unsigned long long)p->seed, p->induction_fraction, p->echo_fraction);
        for (int l = 0; l < p->n_layers; l++) {
            fprintf(f, "%d", l);
            for (int g = 0; g < p->n_kv_heads; g++) {
                int i = l * p->n_kv_heads + g;
                const char *word = p->retrieval[i] ? "RETRIEVAL" : "COMPRESSED";
                if (p->span) fprintf(f, " | span %d %s", p->span[i], word);
                else fprintf(f, " | %.5f %.5f %s", p->echo[i], p->induction[i], word);
            }
            fprintf(f, "\n");
        }
    }
}

int save_profile(const HeadProfile *p, const char *path) {
    Output out;
    if (open_output(&out, path) != 0) return -1;
    write_profile(p, out.f, path);
    return close_output(&out, 1);
}

/* Profiles made by other tools, in JSON. Both are an object of lists of numbers, {"key": [...], ...}:
 *   golden-stick (Huawei's RazorAttention tooling, mindspore_gs razor_attention.py): {"layer": [kv_head,
 *     ...]}, each layer's retrieval heads by KV-head index; a layer left out has none. -o x.json writes it.
 *   Retrieval_Head / HeadKV (retrieval_head_detection.py): {"layer-head": [score, ...]} for every query
 *     head, a score per needle test. A head's score is the mean of its list, a KV head's the max over its
 *     query heads (kept as its induction score), and the top `fraction` of KV heads are retrieval heads.
 * The first key tells them apart ("3" or "3-7"). */
typedef struct {
    HeadProfile *p;
    const Config *c;
    int kind;                 /* 0 not known yet, 1 golden-stick, 2 scores */
    unsigned char *seen;      /* (layer) golden-stick, (layer, query_head) scores */
    double *score;            /* (layer, query_head) */
    char why[200];
} JsonProfile;

/* Reads one member of either form into j; returns NULL, or why it cannot. */
static const char *json_profile_member(const char *key, const double *values, int n, void *arg) {
    JsonProfile *j = arg;
    const Config *c = j->c;
    int kind = strchr(key, '-') ? 2 : 1;
    if (!j->kind) {
        j->kind = kind;
        j->seen = xcalloc((size_t)c->n_layers * (kind == 2 ? c->n_heads : 1), 1);
        if (kind == 2) j->score = xcalloc((size_t)c->n_layers * c->n_heads, sizeof(double));
    }
    char *end = (char *)key;
    long layer = isdigit((unsigned char)*key) ? strtol(key, &end, 10) : -1, head = 0;
    if (kind == 2 && *end == '-' && isdigit((unsigned char)end[1])) head = strtol(end + 1, &end, 10);
    else if (kind == 2) end = (char *)key;
    if (kind != j->kind || layer < 0 || *end || layer >= c->n_layers || head >= c->n_heads) {
        snprintf(j->why, sizeof j->why, "key \"%s\" is not a %s of this model (%d layers, %d query heads)", key,
                 j->kind == 1 ? "layer number" : "\"layer-query_head\" pair", c->n_layers, c->n_heads);
        return j->why;
    }
    size_t at = kind == 2 ? (size_t)layer * c->n_heads + head : (size_t)layer;
    if (j->seen[at]++) return snprintf(j->why, sizeof j->why, "key \"%s\" appears twice", key), j->why;
    if (kind == 2) {
        if (n == 0) return snprintf(j->why, sizeof j->why, "key \"%s\": an empty list of scores", key), j->why;
        double sum = 0;
        for (int i = 0; i < n; i++) sum += values[i];
        j->score[at] = sum / n;
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        if (!(values[i] >= 0 && values[i] < c->n_kv_heads && values[i] == floor(values[i]))) {
            snprintf(j->why, sizeof j->why, "layer %ld: %g is not a KV head (0 to %d)", layer, values[i],
                     c->n_kv_heads - 1);
            return j->why;
        }
        j->p->retrieval[layer * c->n_kv_heads + (int)values[i]] = 1;
    }
    return NULL;
}

/* Walks a JSON object of lists of numbers, handing each member to member(key, values, n, arg). Keys are
 * up to 31 bytes without escapes; numbers are JSON's (finite, no hex). Returns 0, or -1 (razor_error
 * names the line). */
static int read_json_lists(const char *path, const char *text, size_t size,
                           const char *(*member)(const char *, const double *, int, void *), void *arg) {
    double *values = xcalloc(size / 2 + 1, sizeof(double)); /* a number and its comma take 2 bytes or more */
    const char *s = text + strspn(text, " \t\r\n"), *why = NULL, *space = " \t\r\n";
    char key[32];
    if (*s++ != '{') why = "expected a JSON object: {\"key\": [numbers], ...}";
    else if (*(s += strspn(s, space)) == '}') s++;
    else while (!why) {
        size_t len = *s == '"' ? strcspn(s + 1, "\"\\\n") : 0;
        if (len == 0 || len >= sizeof key || s[1 + len] != '"') { why = "expected a key in double quotes"; break; }
        memcpy(key, s + 1, len), key[len] = 0;
        for (size_t i = 0; i < len && !why; i++) if ((unsigned char)key[i] < 0x20) why = "a control byte in a key";
        if (why) break;
        s += len + 2;
        s += strspn(s, space);
        if (*s++ != ':' || *(s += strspn(s, space)) != '[') { why = "expected : and a list of numbers"; break; }
        s += 1 + strspn(s + 1, space);
        int n = 0;
        while (*s != ']' && !why) {
            char *end = (char *)s;
            double x = *s == '-' || isdigit((unsigned char)*s) ? strtod(s, &end) : NAN;
            if (!isfinite(x) || strspn(s, "+-.0123456789eE") < (size_t)(end - s)) { why = "expected a number"; break; }
            values[n++] = x;
            s = end + strspn(end, space);
            if (*s == ',') {
                s += 1 + strspn(s + 1, space);
                if (*s == ']') why = "expected a number after ,";
            } else if (*s != ']') why = "expected , or ] after a number";
        }
        if (why || (why = member(key, values, n, arg))) break;
        s += 1 + strspn(s + 1, space);
        if (*s == ',') s += 1 + strspn(s + 1, space);
        else if (*s++ == '}') break;
        else why = "expected , or } after a list";
    }
    if (!why && s[strspn(s, space)]) why = "more after the closing }";
    free(values);
    if (!why) return 0;
    int line = 1;
    for (const char *t = text; t < s && *t; t++) line += *t == '\n';
    return fail("%s: line %d: %s", path, line, why);
}

static int load_json_profile(HeadProfile *p, const char *path, const Config *c, float fraction, char *text,
                             size_t size) {
    JsonProfile j = {.p = p, .c = c};
    int status = read_json_lists(path, text, size, json_profile_member, &j);
    for (int l = 0; l < c->n_layers && status == 0 && j.kind == 2; l++)
        for (int h = 0; h < c->n_heads && status == 0; h++)
            if (!j.seen[l * c->n_heads + h])
                status = fail("%s: no scores for head \"%d-%d\" (a score file covers all %d x %d query heads)", path,
                              l, h, c->n_layers, c->n_heads);
    if (status == 0 && j.kind == 2) {
        int group = c->n_heads / c->n_kv_heads;
        for (int h = 0; h < c->n_layers * c->n_heads; h++) {
            float *kv = &p->induction[h / group];
            if (h % group == 0 || j.score[h] > *kv) *kv = (float)j.score[h];
        }
        mark_top(p->retrieval, p->induction, c->n_layers * c->n_kv_heads, fraction);
    }
    free(j.seen);
    free(j.score);
    return status;
}

/* Reads a profile written by save_profile (or by hand, or DuoAttention's .tsv: a value >= 0.5 marks
 * a retrieval head; or a .json, above: fraction is for score files) and checks it against the model's
 * shape. */
int load_profile(HeadProfile *p, const char *path, const Config *c, float fraction) {
    char *text;
    size_t size;
    if (read_file(path, (size_t)16 << 20, &text, &size) != 0) return -1;
    init_profile(p, c);
    if (ends_with(path, ".json")) {
        int status = load_json_profile(p, path, c, fraction, text, size);
        free(text);
        if (status != 0) { free_profile(p); return status; }
        goto check_kind; /* a JSON profile has every layer, and no spans */
    }
    int line_no = 0, layers_seen = 0, shape_seen = ends_with(path, ".tsv");
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        line_no++;
        if (line[0] == '#' || line[strspn(line, " \t\r")] == 0) continue;
        if (ends_with(path, ".tsv")) {
            char *p_end = line;
            for (int g = 0; g < c->n_kv_heads; g++) {
                char *end;
                double v = strtod(p_end, &end);
                if (end == p_end || layers_seen >= c->n_layers) goto shape_error;
                p->retrieval[layers_seen * c->n_kv_heads + g] = v >= 0.5;
                p_end = end;
            }
            if (p_end[strspn(p_end, " \t\r")] != 0) goto shape_error;
            layers_seen++;
            continue;
        }
        int a, b, h, hd, d;
        if (sscanf(line, "shape layers %d kv_heads %d heads %d head_dim %d dim %d", &a, &b, &h, &hd, &d) == 5) {
            if (a != c->n_layers || b != c->n_kv_heads || h != c->n_heads || hd != c->head_dim || d != c->dim) {
                free(text); free_profile(p);
                return fail("%s: profile for a model with %d layers x %d KV heads (%d heads, head_dim %d, dim %d), "
                            "this model has %d x %d (%d, %d, %d)",
                            path, a, b, h, hd, d, c->n_layers, c->n_kv_heads, c->n_heads, c->head_dim, c->dim);
            }
            shape_seen = 1;
            continue;
        }
        if (sscanf(line, "alibi span eps %f", &p->span_eps) == 1 && !p->span && layers_seen == 0) {
            p->span = xcalloc((size_t)c->n_layers * c->n_kv_heads, sizeof(int));
            continue;
        }
        unsigned long long seed;
        if (sscanf(line, "probe K %d repeats 4 seed %llu induction_fraction %f echo_fraction %f", &p->K, &seed,
                   &p->induction_fraction, &p->echo_fraction) == 4) {
            p->seed = seed;
            continue;
        }
        int layer, used;
        if (!shape_seen || sscanf(line, "%d%n", &layer, &used) != 1 || layer != layers_seen || layer >= c->n_layers)
            goto syntax_error;
        char *at = line + used;
        for (int g = 0; g < c->n_kv_heads; g++) {
            char flag[16];
            int i = layer * c->n_kv_heads + g;
            if (p->span ? sscanf(at, " | span %d %15s%n", &p->span[i], flag, &used) != 2 || p->span[i] < 1
                        : sscanf(at, " | %f %f %15s%n", &p->echo[i], &p->induction[i], flag, &used) != 3)
                goto syntax_error;
            p->retrieval[i] = !strcmp(flag, "RETRIEVAL") || !strcmp(flag, "FULL"); /* FULL, RAZOR: older files */
            if (!p->retrieval[i] && strcmp(flag, "COMPRESSED") && strcmp(flag, "RAZOR")) goto syntax_error;
            at += used;
        }
        if (at[strspn(at, " \t\r")] != 0) goto syntax_error;
        layers_seen++;
    }
    free(text);
    if (layers_seen != c->n_layers) {
        free_profile(p);
        return fail("%s: %d layer lines, the model has %d layers", path, layers_seen, c->n_layers);
    }
check_kind:
    if ((c->pos_encoding == POS_ALIBI) != (p->span != NULL)) {
        free_profile(p);
        return fail("%s: %s", path,
                    c->pos_encoding == POS_ALIBI ? "this ALiBi model needs a profile of spans (-m profile)"
                                                 : "a profile of ALiBi spans, this model uses RoPE");
    }
    return 0;
syntax_error:
    fail("%s: line %d: expected '<layer> | %s RETRIEVAL|COMPRESSED' for each of %d KV heads", path, line_no,
         p->span ? "span <tokens>" : "<echo> <induction>", c->n_kv_heads);
    free(text); free_profile(p);
    return -1;
shape_error:
    free(text); free_profile(p);
    return fail("%s: line %d: a DuoAttention TSV needs %d rows of %d values for this model", path, line_no, c->n_layers,
                c->n_kv_heads);
}

/* Both scores as a layers x heads map in the terminal: darker = higher, [ ] = retrieval head. An
 * ALiBi model's profile: the spans. */
void print_heatmap(const HeadProfile *p) {
    const char *shades = " .:-=+*#%@", *titles[2] = {"echo", "induction"};
    const float *scores[2] = {p->echo, p->induction};
    for (int k = 0; k < (p->span ? 1 : 2); k++) { /* ALiBi: one map, of the spans */
        float max = 1e-9f;
        for (int i = 0; i < p->n_layers * p->n_kv_heads; i++) if (scores[k][i] > max) max = scores[k][i];
        if (p->span)
            fprintf(stderr, "span of each KV head in tokens (ALiBi; attention beyond it < %g in all; [x] = "
                            "retrieval)\n", p->span_eps);
        else fprintf(stderr, "%s score (max %.3f; [x] = retrieval head)\n", titles[k], max);
        for (int l = 0; l < p->n_layers; l++) {
            fprintf(stderr, "  layer %2d ", l);
            for (int g = 0; g < p->n_kv_heads; g++) {
                int i = l * p->n_kv_heads + g;
                if (p->span) fprintf(stderr, p->retrieval[i] ? "[%6d]" : " %6d ", p->span[i]);
                else fprintf(stderr, p->retrieval[i] ? "[%c]" : " %c ", shades[(int)(scores[k][i] / max * 9 + 0.5f)]);
            }
            fprintf(stderr, "\n");
        }
    }
}

/* A colour for a score on one fixed logarithmic scale from `floor` (what uniform attention gives) to 1:
 * light for noise, dark blue for a head that really looks back. Returns t in [0, 1], the place on it. */
static float log_scale(float score, float floor) {
    float t = logf(fmaxf(score, floor) / floor) / logf(1 / floor);
    return t > 1 ? 1 : t;
}
static void scale_rgb(float t, int rgb[3]) {
    const int light[3] = {247, 251, 255}, dark[3] = {8, 48, 107};
    for (int k = 0; k < 3; k++) rgb[k] = (int)lroundf(light[k] + t * (dark[k] - light[k]));
}

/* An ALiBi model's spans as an SVG picture: one cell per KV head, its span written in it and coloured
 * by the share of the context it covers (retrieval heads outlined). */
static void write_span_svg(const HeadProfile *p, FILE *f) {
    int context = 1, cell_w = 52, cell_h = 24, left = 56, top = 40;
    for (int i = 0; i < p->n_layers * p->n_kv_heads; i++) if (p->span[i] > context) context = p->span[i];
    int width = left + (p->n_kv_heads * cell_w > 600 ? p->n_kv_heads * cell_w : 600) + 24,
        height = top + p->n_layers * cell_h + 60;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" "
               "font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", width, height);
    fprintf(f, "<text x=\"%d\" y=\"22\" font-size=\"14\">ALiBi spans in tokens: %d layers x %d KV heads (columns)"
               "</text>\n", left, p->n_layers, p->n_kv_heads);
    for (int l = 0; l < p->n_layers; l++) {
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">layer %d</text>\n", left - 6, top + l * cell_h + 16, l);
        for (int g = 0; g < p->n_kv_heads; g++) {
            int i = l * p->n_kv_heads + g, rgb[3], x = left + g * cell_w, y = top + l * cell_h;
            float t = (float)p->span[i] / (float)context;
            scale_rgb(t, rgb);
            fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"rgb(%d,%d,%d)\"%s/>\n", x, y,
                    cell_w - 2, cell_h - 2, rgb[0], rgb[1], rgb[2],
                    p->retrieval[i] ? " stroke=\"#d62728\" stroke-width=\"2\"" : "");
            fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" stroke=\"none\" fill=\"%s\">%d</text>\n",
                    x + cell_w / 2 - 1, y + 16, t > 0.5f ? "white" : "black", p->span[i]);
        }
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\">darker: a longer span (of at most %d tokens); outlined: a retrieval "
               "head, the span covers the context</text>\n<text x=\"%d\" y=\"%d\">span: beyond it, all of the "
               "head's attention together is below %g</text>\n</svg>\n",
            left, top + p->n_layers * cell_h + 22, context, left, top + p->n_layers * cell_h + 40, p->span_eps);
}

/* The same two maps as an SVG picture: echo above, induction below, on one logarithmic colour scale
 * from 1/N (N probe tokens: what uniform attention gives) to 1, with a colour bar. Retrieval heads are
 * outlined and lettered: I chosen by induction (solid outline), E by echo (dashed), M marked RETRIEVAL by
 * the profile file but by neither score (dotted). */
void write_profile_svg(const HeadProfile *p, FILE *f) {
    if (p->span) { write_span_svg(p, f); return; }
    int n = p->n_layers * p->n_kv_heads;
    unsigned char *by_induction = xcalloc((size_t)n, 1), *by_echo = xcalloc((size_t)n, 1);
    mark_top(by_induction, p->induction, n, p->induction_fraction);
    mark_top(by_echo, p->echo, n, p->echo_fraction);
    float floor = p->K > 0 ? 1.0f / (4 * p->K + 1) : 1e-3f;
    int cell = 24, left = 56, grid_w = p->n_kv_heads * cell, panel_h = p->n_layers * cell + 44;
    int width = left + (grid_w > 440 ? grid_w : 440) + 24, bar_y = 40 + 2 * panel_h + 10;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" "
               "font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", width, bar_y + 110);
    fprintf(f, "<text x=\"%d\" y=\"22\" font-size=\"14\">Head profile: %d layers x %d KV heads (columns)</text>\n",
            left, p->n_layers, p->n_kv_heads);
    const char *titles[2] = {"echo score: attention to earlier copies of the token itself",
                             "induction score: attention to the token after an earlier copy"};
    const float *scores[2] = {p->echo, p->induction};
    for (int k = 0; k < 2; k++) {
        int y0 = 40 + k * panel_h;
        float max = 0;
        for (int i = 0; i < n; i++) max = fmaxf(max, scores[k][i]);
        fprintf(f, "<text x=\"%d\" y=\"%d\">%s (max %.3f)</text>\n", left, y0 + 12, titles[k], max);
        for (int g = 0; g < p->n_kv_heads && p->n_kv_heads <= 40; g++)
            fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-size=\"10\">%d</text>\n",
                    left + g * cell + cell / 2, y0 + 28, g);
        for (int l = 0; l < p->n_layers; l++) {
            int y = y0 + 32 + l * cell;
            fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">layer %d</text>\n", left - 6, y + cell / 2 + 4, l);
            for (int g = 0; g < p->n_kv_heads; g++) {
                int i = l * p->n_kv_heads + g, rgb[3];
                float t = log_scale(scores[k][i], floor);
                scale_rgb(t, rgb);
                fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"rgb(%d,%d,%d)\"/>\n",
                        left + g * cell, y, cell - 2, cell - 2, rgb[0], rgb[1], rgb[2]);
                if (!p->retrieval[i]) continue;
                const char *letter = by_induction[i] ? "I" : by_echo[i] ? "E" : "M";
                const char *dash = by_induction[i] ? "" : by_echo[i] ? " stroke-dasharray=\"4 2\""
                                                                     : " stroke-dasharray=\"1 2\"";
                fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#d62\" "
                           "stroke-width=\"2.5\"%s/>\n", left + g * cell + 1, y + 1, cell - 4, cell - 4, dash);
                fprintf(f,
                        "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-weight=\"bold\" fill=\"%s\">%s</text>\n",
                        left + g * cell + cell / 2 - 1, y + cell / 2 + 4, t > 0.5f ? "white" : "black",
                        by_induction[i] && by_echo[i] ? "IE" : letter);
            }
        }
    }
    /* the colour bar: 1/N .. 1, logarithmic */
    int bar_w = 400;
    for (int k = 0; k < 50; k++) { /* 50 steps, as plain rectangles (every SVG renderer draws those) */
        int rgb[3];
        scale_rgb((k + 0.5f) / 50, rgb);
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"14\" fill=\"rgb(%d,%d,%d)\"/>\n",
                left + k * bar_w / 50, bar_y, bar_w / 50 + 1, rgb[0], rgb[1], rgb[2]);
    }
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"14\" fill=\"none\" stroke=\"#888\"/>\n", left, bar_y,
            bar_w);
    const float ticks[] = {0, 0.001f, 0.01f, 0.1f, 1};
    for (int k = 0; k < 5; k++) {
        float v = k == 0 ? floor : ticks[k];
        if (k > 0 && v <= floor * 1.5f) continue;
        int x = left + (int)lroundf(log_scale(v, floor) * bar_w);
        fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#444\"/>\n", x, bar_y + 14, x, bar_y + 18);
        if (k == 0) fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">1/%d (uniform)</text>\n", x, bar_y + 30,
                            (int)lroundf(1 / floor));
        else fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%g</text>\n", x, bar_y + 30, v);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\">score (share of a row's attention), logarithmic</text>\n", left, bar_y + 48);
    fprintf(f, "<text x=\"%d\" y=\"%d\">outlined: retrieval head, keeps every token. I: chosen by induction score "
               "(solid),</text>\n<text x=\"%d\" y=\"%d\">E: by echo score (dashed), M: marked RETRIEVAL in the file "
               "(dotted)</text>\n</svg>\n", left, bar_y + 70, left, bar_y + 86);
    free(by_induction); free(by_echo);
}

/* ------------------------------------------------------------------------------------------------
 * Appendix D. The modes (-m): generate, chat, compare, needle, logits, tokenize, profile. Each takes the
 * model, its tokenizer and the options, and returns the exit status. */

#define MAX_PROMPT_BYTES ((size_t)64 << 20)
enum { MAX_NEEDLE_LENGTHS = 8, MAX_NEEDLE_DEPTHS = 11, NEEDLE_ANSWER = 12 };

typedef struct {
    const char *model_path, *tokenizer_path, *prompt, *prompt_file, *ids_file, *out_path, *mode, *system_prompt;
    const char *policy_name, *profile_path, *needle, *question;
    float temperature, topp;
    uint64_t seed;
    int seed_given;          /* -s: else the probe and needle use 42, and sampling a seed from the clock */
    int steps, threads;
    CacheConfig cache;
    float induction_fraction, echo_fraction;
    int bf16;                /* -w bf16 */
    int f32_inputs;          /* -A f32 */
    int block;               /* -B: prompt tokens per forward block */
    int needle_lengths[MAX_NEEDLE_LENGTHS], n_needle_lengths; /* -L; 0: the default grid */
    float needle_depths[MAX_NEEDLE_DEPTHS];                   /* -D */
    int n_needle_depths;
    int window;              /* -l: perplexity's window in tokens; 0: the context */
} Options;

/* -m generate: the prompt, echoed, then up to -n tokens sampled after it. */
int run_generate(const Model *m, const Tokenizer *tok, const Options *o) {
    int n;
    int *tokens = encode_prompt(m, tok, o->prompt ? o->prompt : "", &n);
    if (!tokens) return 2;
    int capacity = o->steps < m->config.seq_len - n ? n + o->steps : m->config.seq_len;
    RunState s;
    if (build_runstate(&s, m, capacity, o->block, &o->cache) != 0) { free(tokens); return report(1); }
    int bos = m->config.add_bos && tok->bos_id >= 0; /* echo the prompt (after its BOS) as llama2.c does */
    print_text(tok, tokens + bos, n - bos, bos ? tokens[0] : -1, 0);
    fflush(stdout);
    double t0 = now_seconds(), gen_s;
    float *logits = prefill(m, &s, tokens, n);
    double prompt_s = now_seconds() - t0;
    if (!logits) { free_runstate(&s); free(tokens); return report(1); } /* numbers that are not finite */
    Sampler sampler;
    build_sampler(&sampler, m->config.vocab_size, o->temperature, o->topp, o->seed);
    int n_gen = generate_tokens(m, &s, tok, &sampler, logits, tokens[n - 1], o->steps, NULL, &gen_s);
    free_sampler(&sampler);
    printf("\n");
    fflush(stdout);
    if (n_gen < 0) { free_runstate(&s); free(tokens); return report(1); }
    if (n_gen < o->steps && s.n_tokens == m->config.seq_len)
        complain(0, "stopped at the model's context of %d tokens: %d of the %d tokens asked for", m->config.seq_len,
                 n_gen, o->steps);
    print_speed(n, prompt_s, n_gen, gen_s);
    print_kv_line(&s, &m->config);
    free_runstate(&s); free(tokens);
    return 0;
}

/* The tokens of one chat turn in the model's template (model.h: chat_template): the end of the reply
 * before it (turn > 0), the system prompt (first turn, if any), the user's message, and the header of
 * the assistant's reply. Special tokens go in by id; only the text between them is encoded, as the
 * tokenizers library encodes the text between the special tokens of a rendered template.
 *   Llama 2   <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST]   later turns: </s><s>[INST] {user} [/INST]
 *   Llama 3   <|begin_of_text|>, then per message <|start_header_id|>{role}<|end_header_id|>\n\n{text}<|eot_id|>,
 *             and <|start_header_id|>assistant<|end_header_id|>\n\n; later turns start with the reply's <|eot_id|>
 *   ChatML    per message <|im_start|>{role}\n{text}<|im_end|>\n, then <|im_start|>assistant\n; later turns
 *             start with the reply's <|im_end|>\n
 * tokens needs room for 2 * encode_room(user) + 2 * encode_room(system) + 64. Returns the count, -1 if
 * the tokenizer refused a text. */
typedef struct { const Tokenizer *tok; int *tokens; int n; } Turn; /* n = -1: the tokenizer refused a text */
static void put_id(Turn *t, int id) { if (t->n >= 0) t->tokens[t->n++] = id; }

/* Encodes the concatenation of the strings given (up to a NULL) and appends its tokens. */
static void put_text(Turn *t, int bos, ...) {
    va_list ap;
    size_t len = 0;
    va_start(ap, bos);
    for (const char *part; (part = va_arg(ap, const char *));) len += strlen(part);
    va_end(ap);
    char *text = xcalloc(len + 1, 1);
    va_start(ap, bos);
    for (const char *part; (part = va_arg(ap, const char *));) strcat(text, part);
    va_end(ap);
    int k = t->n >= 0 ? encode(t->tok, text, bos, t->tokens + t->n) : -1;
    t->n = k < 0 ? -1 : t->n + k;
    free(text);
}

int chat_turn_tokens(const Config *c, const Tokenizer *tok, const char *system, const char *user, int turn,
                     int *tokens) {
    const int *special = c->chat_tokens;
    const char *roles[3] = {"system", "user", "assistant"}, *texts[3] = {system ? system : "", user, ""};
    Turn t = {tok, tokens, 0};
    if (c->chat_template == CHAT_LLAMA2) {
        if (turn > 0) put_id(&t, c->eos_id);
        if (turn == 0 && system) put_text(&t, 1, "[INST] <<SYS>>\n", system, "\n<</SYS>>\n\n", user, " [/INST]", NULL);
        else put_text(&t, 1, "[INST] ", user, " [/INST]", NULL);
    } else if (c->chat_template == CHAT_LLAMA3) {
        if (turn > 0 || c->bos_id >= 0) put_id(&t, turn > 0 ? special[2] : c->bos_id);
        for (int r = turn > 0 || !system ? 1 : 0; r < 3; r++) {
            put_id(&t, special[0]);
            put_text(&t, 0, roles[r], NULL);
            put_id(&t, special[1]);
            put_text(&t, 0, "\n\n", texts[r], NULL);
            if (r < 2) put_id(&t, special[2]);
        }
    } else { /* CHAT_CHATML */
        if (turn > 0) { put_id(&t, special[1]); put_text(&t, 0, "\n", NULL); }
        for (int r = turn > 0 || !system ? 1 : 0; r < 3; r++) {
            put_id(&t, special[0]);
            put_text(&t, 0, roles[r], "\n", texts[r], NULL);
            if (r == 2) break;
            put_id(&t, special[1]);
            put_text(&t, 0, "\n", NULL);
        }
    }
    return t.n;
}

/* Chat in the model's template (chat_turn_tokens): each user turn is appended to the cache (attending
 * to what the cache kept of earlier turns), compressed, and the reply generated after it. A line of
 * input is a turn, of any length; an empty one is skipped. "/reset" starts the conversation over (the
 * system prompt again), "/exit" ends it, as the end of input does. When input is not a terminal, each
 * line is echoed after "User: ", so the transcript reads as a conversation. Exit status 1 if some input
 * was never answered (the context filled up, or the tokenizer refused a line). */
int run_chat(const Model *m, const Tokenizer *tok, const Options *o) {
    RunState s;
    if (build_runstate(&s, m, m->config.seq_len, o->block, &o->cache) != 0) return report(1);
    Sampler sampler;
    build_sampler(&sampler, m->config.vocab_size, o->temperature, o->topp, o->seed);
    char *line = NULL;
    size_t room = 0;
    int status = 0, unanswered = 0, echo = !isatty(STDIN_FILENO), full = 0, prompt_used = 0;
    for (int turn = 0;; turn++) {
        const char *user = turn == 0 && o->prompt && !prompt_used ? o->prompt : NULL; /* -i: the first turn, once */
        prompt_used |= user != NULL;
        if (!user) {
            printf("User: ");
            fflush(stdout);
            ssize_t len = getline(&line, &room, stdin);
            if (len < 0) { printf("\n"); break; } /* end of input: the stats go on their own line */
            line[strcspn(line, "\r\n")] = 0; /* (a NUL inside a line ends it) */
            if (echo) printf("%s\n", line), fflush(stdout);
            if (line[strspn(line, " \t")] == 0) { turn--; continue; } /* an empty line is not a turn */
            if (!strcmp(line, "/exit")) break;
            if (!strcmp(line, "/reset")) {
                free_runstate(&s);
                if (build_runstate(&s, m, m->config.seq_len, o->block, &o->cache) != 0) { status = report(1); break; }
                fprintf(stderr, "razor: the conversation starts over\n");
                turn = -1, full = 0;
                continue;
            }
            if (full) { unanswered++; turn--; continue; } /* only /reset or /exit can go on */
            user = line;
        }
        const char *system = turn == 0 ? o->system_prompt : NULL;
        int *tokens = xcalloc(2 * encode_room(user) + (system ? 2 * encode_room(system) : 0) + 64, sizeof(int));
        int n = chat_turn_tokens(&m->config, tok, system, user, turn, tokens);
        if (n < 0 && user == o->prompt) { free(tokens); status = report(2); break; }
        if (n < 0) { report(0); free(tokens); unanswered++; turn--; continue; }
        if (s.n_tokens + n >= s.capacity) { /* a shorter line may still fit: the conversation goes on */
            free(tokens);
            if (user == o->prompt) { status = complain(2, "the first turn is %d tokens, the model's context is %d", n,
                                                     s.capacity); break; }
            complain(0, "this turn is %d tokens and %d of the model's context (%d tokens) remain; /reset starts over",
                     n, s.capacity - s.n_tokens, s.capacity);
            unanswered++;
            turn--;
            continue;
        }
        double t0 = now_seconds(), gen_s;
        float *logits = prefill(m, &s, tokens, n);
        double prompt_s = now_seconds() - t0;
        if (!logits) { free(tokens); status = report(1); break; } /* numbers that are not finite */
        printf("Assistant: ");
        int n_gen = generate_tokens(m, &s, tok, &sampler, logits, tokens[n - 1], o->steps, NULL, &gen_s);
        printf("\n");
        fflush(stdout);
        free(tokens);
        if (n_gen < 0) { status = report(1); break; }
        print_speed(n, prompt_s, n_gen, gen_s);
        if (n_gen < o->steps && s.n_tokens == s.capacity) {
            complain(0, "the answer was cut: the conversation has filled the model's context (%d tokens); /reset "
                        "starts over", s.capacity);
            full = 1;
        }
    }
    if (status == 0 && unanswered)
        status = complain(1, "%d turn%s of the input went unanswered", unanswered, unanswered == 1 ? "" : "s");
    free(line);
    free_sampler(&sampler);
    print_kv_line(&s, &m->config);
    free_runstate(&s);
    return status;
}

static const char *policy_names[N_POLICIES] = {"full", "razor", "streaming", "nocomp", "snapkv", "h2o"};

static void softmax_into(double *p, const float *logits, int n) {
    double max = logits[argmax(logits, n)], sum = 0;
    for (int i = 0; i < n; i++) sum += p[i] = exp((double)logits[i] - max);
    for (int i = 0; i < n; i++) p[i] /= sum;
}

static double safe_log(double x) { return log(x > 1e-300 ? x : 1e-300); }

/* KL(p || q) = sum_i p_i (ln p_i - ln q_i), of two distributions over n tokens. */
static double kl_divergence(const double *p, const double *q, int n) {
    double kl = 0;
    for (int i = 0; i < n; i++) if (p[i] > 0) kl += p[i] * (log(p[i]) - safe_log(q[i]));
    return kl;
}

/* Prints the text of tokens[0..n) (the first decoded after prev) to stdout: as a JSON string if json,
 * else as it is, but for lone bytes that are control characters (raw byte tokens can be anything). */
static void print_text(const Tokenizer *tok, const int *tokens, int n, int prev, int json) {
    if (json) putchar('"');
    for (int i = 0; i < n; i++) {
        int nb;
        char buf[2];
        const char *piece = decode(tok, i ? tokens[i - 1] : prev, tokens[i], &nb, buf);
        unsigned char c0 = nb ? (unsigned char)piece[0] : 0;
        if (!json && (nb != 1 || isprint(c0) || isspace(c0) || c0 >= 0x80)) fwrite(piece, 1, (size_t)nb, stdout);
        for (int k = 0; json && k < nb; k++) {
            unsigned char ch = (unsigned char)piece[k];
            if (ch == '"' || ch == '\\') printf("\\%c", ch);
            else if (ch < 0x20) printf("\\u%04x", ch);
            else putchar(ch);
        }
    }
    if (json) putchar('"');
}

/* -m compare: two caches side by side, the full one (keys and values in float32) and the chosen policy
 * and -K type, both fed the prompt and then, step by step, the full cache's greedy token (the policy's
 * run is teacher-forced); per step, each one's top-1 and KL(full || policy). (-c full -K f16 measures
 * what 16-bit keys and values alone cost.) */
int run_compare(const Model *m, const Tokenizer *tok, const Options *o) {
    const Config *c = &m->config;
    int n, V = c->vocab_size;
    int *tokens = encode_prompt(m, tok, o->prompt ? o->prompt : "", &n);
    if (!tokens) return 2;
    int steps = min_int(o->steps, c->seq_len - n), capacity = n + steps;
    RunState reference, pol;
    CacheConfig reference_cache = o->cache; /* the reference: the full cache, in float32 */
    reference_cache.policy = POLICY_FULL;
    reference_cache.kv_type = KV_F32;
    if (build_runstate(&reference, m, capacity, o->block, &reference_cache) != 0) { free(tokens); return report(1); }
    if (build_runstate(&pol, m, capacity, o->block, &o->cache) != 0) {
        free_runstate(&reference); free(tokens);
        return report(1);
    }
    int *gen = xcalloc((size_t)steps + 1, sizeof(int)), *pol_gen = xcalloc((size_t)steps + 1, sizeof(int));
    int agree = 0, first_divergence = -1, status = 0;
    double *p = xcalloc((size_t)V, sizeof(double)), *q = xcalloc((size_t)V, sizeof(double)), kl_sum = 0, kl_max = 0;
    printf("%5s  %-16s %-16s %s\n", "step", "full top-1", "policy top-1", "KL(full||policy)");
    /* the two caches side by side, both fed the full cache's greedy tokens */
    float *full_logits = prefill(m, &reference, tokens, n), *logits = full_logits ? prefill(m, &pol, tokens, n) : NULL;
    if (!full_logits || !logits) status = report(1); /* not finite (forward_block), even for -n 0 */
    for (int t = 0; t < steps && status == 0; t++) {
        gen[t] = argmax(full_logits, V);
        softmax_into(p, full_logits, V);
        softmax_into(q, logits, V);
        double kl = kl_divergence(p, q, V);
        pol_gen[t] = argmax(logits, V);
        agree += pol_gen[t] == gen[t];
        if (pol_gen[t] != gen[t] && first_divergence < 0) first_divergence = t;
        kl_sum += kl;
        if (kl > kl_max) kl_max = kl;
        char names[2][20];
        int ids[2] = {gen[t], pol_gen[t]};
        for (int k = 0; k < 2; k++) {
            int nb;
            char buf[2];
            const char *piece = decode(tok, 0, ids[k], &nb, buf);
            snprintf(names[k], sizeof names[k], "%d:'%.*s'", ids[k], nb > 10 ? 10 : nb, piece);
            for (char *ch = names[k]; *ch; ch++) if ((unsigned char)*ch < 0x20) *ch = ' ';
        }
        printf("%5d  %-16s %-16s %.5f\n", t, names[0], names[1], kl);
        if (t + 1 < steps) {
            full_logits = forward(m, &reference, &gen[t], 1, NULL, NULL);
            logits = full_logits ? forward(m, &pol, &gen[t], 1, NULL, NULL) : NULL;
            if (!full_logits || !logits) status = report(1);
        }
    }
    if (status != 0) {
        free(p); free(q); free(gen); free(pol_gen); free(tokens);
        free_runstate(&reference); free_runstate(&pol);
        return status;
    }
    size_t kept_full, kept_pol; /* the full cache's bytes counted in the policy's -K type, as the kv line does */
    cache_bytes(&pol, c, &kept_pol, &kept_full);
    double mean_kl = steps ? kl_sum / steps : 0;
    printf("\npolicy %s vs full, %d prompt tokens, %d steps: top-1 agreement %.1f%%, KL mean %.5f max %.5f, ",
           policy_names[o->cache.policy], n, steps, steps ? 100.0 * agree / steps : 100.0, mean_kl, kl_max);
    if (first_divergence < 0) printf("first divergence: none\n");
    else printf("first divergence: at step %d\n", first_divergence);
    printf("full (greedy):   ");
    print_text(tok, gen, steps, tokens[n - 1], 0);
    printf("\n%-6s (top-1): ", policy_names[o->cache.policy]);
    print_text(tok, pol_gen, steps, tokens[n - 1], 0);
    printf("\nkv bytes: full %zu, %s %zu (%.1f%%)\n", kept_full, policy_names[o->cache.policy], kept_pol,
           kept_full ? 100.0 * kept_pol / kept_full : 100.0);
    printf("{\"policy\": \"%s\", \"prompt_tokens\": %d, \"steps\": %d, \"top1_agreement\": %.4f, \"mean_kl\": %.6f, "
           "\"max_kl\": %.6f, "
           "\"first_divergence\": %d, \"kv_bytes_full\": %zu, \"kv_bytes_policy\": %zu, \"full_text\": ",
           policy_names[o->cache.policy], n, steps, steps ? (double)agree / steps : 1.0, mean_kl, kl_max,
           first_divergence, kept_full, kept_pol);
    print_text(tok, gen, steps, tokens[n - 1], 1);
    printf(", \"policy_text\": ");
    print_text(tok, pol_gen, steps, tokens[n - 1], 1);
    printf("}\n");
    print_kv_line(&pol, c);
    free(p); free(q); free(gen); free(pol_gen); free(tokens);
    free_runstate(&reference); free_runstate(&pol);
    return status;
}

/* -m needle: a pass key planted at several depths in filler text of several lengths, asked for at the
 * end (inside the prompt, or after the rest was compressed); exact match of the digits, under each
 * policy on the same cases. */
static const char *builtin_filler =
    "The morning was grey and quiet, and the road ran on between the fields. A cart went by slowly, and "
    "the driver nodded to the people at the gate. In the village the shops were opening one by one, and "
    "the smell of bread came from the baker's door. Nobody was in a hurry, for the day was long and the "
    "work would wait. ";

static void fill_template(char *out, size_t size, const char *template, long key) {
    size_t n = 0;
    for (const char *t = template; *t && n + 12 < size; t++) {
        if (!strncmp(t, "{key}", 5)) { n += (size_t)snprintf(out + n, size - n, "%ld", key); t += 4; }
        else out[n++] = *t;
    }
    out[n] = 0;
}

/* One case: BOS (if bos), filler tokens with the needle planted at `depth` of them, the question (its
 * last *n_asked tokens); `length` tokens in all. Returns the count, or -1 (razor_error says why). */
static int needle_prompt(const Tokenizer *tok, const Options *o, int bos, const int *filler, int n_filler,
                         int length, float depth, long key, int *prompt, int *n_asked) {
    char text[1024];
    int needle[512], question[512];
    fill_template(text, sizeof text, o->needle, key);
    int n_needle = strlen(text) < 400 ? encode(tok, text, 0, needle) : -1;
    fill_template(text, sizeof text, o->question, key);
    int n_question = strlen(text) < 400 ? encode(tok, text, 0, question) : -1;
    if (n_needle <= 0 || n_question <= 0)
        return fail("the needle and the question must each be 1 to 400 bytes the tokenizer takes");
    bos = bos && tok->bos_id >= 0;
    int body = length - bos - n_needle - n_question;
    if (body < 1) return fail("a prompt of %d tokens is too short for the needle and the question", length);
    int at = (int)(depth * body), n = 0;
    if (bos) prompt[n++] = tok->bos_id;
    for (int i = 0; i <= body; i++) {
        if (i == at) for (int k = 0; k < n_needle; k++) prompt[n++] = needle[k];
        if (i < body) prompt[n++] = filler[i % n_filler];
    }
    for (int k = 0; k < n_question; k++) prompt[n++] = question[k];
    *n_asked = n_question;
    return n;
}

/* The two settings of -m needle: the question inside the prompt, compressed with it; or asked after the
 * rest was prefilled and compressed, appended as a second chat turn appends to a compressed cache. */
enum { NEEDLE_PROMPT, NEEDLE_AFTER, NEEDLE_SETTINGS };
static const char *setting_names[NEEDLE_SETTINGS] = {"prompt", "after"};

/* The greedy answer under this cache policy, the prompt prefilled in one turn, or (n_after > 0) its last
 * n_after tokens in a second: its first number goes to *said (-1: none). Returns 1 if that is the key,
 * 0 if not, -1 on error. kv_bytes: what the cache holds then; kv_ratio: that / full. */
static int needle_found(const Model *m, const Tokenizer *tok, const CacheConfig *cache, int block, const int *prompt,
                        int n, int n_after, long key, long *said, double *kv_ratio, size_t *kv_bytes) {
    RunState s;
    if (build_runstate(&s, m, n + NEEDLE_ANSWER, block, cache) != 0) return -1;
    float *logits = prefill(m, &s, prompt, n - n_after);
    if (n_after > 0 && logits) logits = prefill(m, &s, prompt + n - n_after, n_after);
    Sampler greedy = {.vocab_size = m->config.vocab_size, .temperature = 0};
    int answer[NEEDLE_ANSWER];
    int n_answer = generate_tokens(m, &s, tok, &greedy, logits, prompt[n - 1], NEEDLE_ANSWER, answer, NULL);
    if (n_answer < 0) { free_runstate(&s); return -1; }
    char text[16 * NEEDLE_ANSWER + 1] = {0};
    size_t len = 0;
    for (int i = 0; i < n_answer; i++) {
        int nb;
        char buf[2];
        const char *piece = decode(tok, i ? answer[i - 1] : prompt[n - 1], answer[i], &nb, buf);
        if (len + (size_t)nb >= sizeof text) break;
        memcpy(text + len, piece, (size_t)nb);
        len += (size_t)nb;
    }
    size_t kept, uncompressed;
    cache_bytes(&s, &m->config, &kept, &uncompressed);
    *kv_ratio = (double)kept / uncompressed;
    *kv_bytes = kept;
    free_runstate(&s);
    const char *digits = text + strcspn(text, "0123456789"); /* its first number */
    *said = *digits ? strtol(digits, NULL, 10) : -1;
    return *said == key;
}

/* The length x depth picture of one policy: each cell says what the model answered; found cells are
 * dark blue with the key in bold, missed ones pale orange with a dashed border (not colour alone). */
static int write_needle_svg(const char *path, const char *policy, int setting, int n_lengths, int n_depths,
                            const int *lengths, const float *depths, const int *ok, const long *said, double accuracy,
                            double kv_ratio) {
    Output out;
    if (open_output(&out, path) != 0) return -1;
    FILE *f = out.f;
    int cw = 64, ch = 30, left = 104, top = 62, width = left + n_depths * cw + 12, height = top + n_lengths * ch + 34;
    if (width < 660) width = 660; /* room for the title */
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" "
               "font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", width, height);
    fprintf(f,
            "<text x=\"8\" y=\"18\" font-size=\"14\">%s, question %s: %.0f%% found, KV cache %.0f%% of full "
            "at %d tokens</text>\n", policy, setting == NEEDLE_AFTER ? "asked after compression" : "in the prompt",
            100 * accuracy, 100 * kv_ratio, lengths[n_lengths - 1]);
    fprintf(f, "<text x=\"%d\" y=\"38\">depth of the pass key in the prompt</text>\n", left);
    for (int di = 0; di < n_depths; di++)
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%.0f%%</text>\n", left + di * cw + cw / 2, top - 6,
                depths[di] * 100);
    for (int li = 0; li < n_lengths; li++) {
        int y = top + li * ch;
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%d tokens</text>\n", left - 8, y + ch / 2 + 4,
                lengths[li]);
        for (int di = 0; di < n_depths; di++) {
            int k = li * n_depths + di;
            char answer[32];
            if (said[k] < 0) snprintf(answer, sizeof answer, "none");
            else snprintf(answer, sizeof answer, "%ld", said[k]);
            if (strlen(answer) > 7) memcpy(answer + 5, "..", 3); /* a long run of digits: its start */
            fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"%s\"%s/>\n", left + di * cw + 1,
                    y + 1, cw - 4, ch - 4, ok[k] ? "#2166ac" : "#fddbc7",
                    ok[k] ? "" : " stroke=\"#b2182b\" stroke-width=\"1.5\" stroke-dasharray=\"4 3\"");
            fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" fill=\"%s\"%s>%s</text>\n",
                    left + di * cw + cw / 2 - 1, y + ch / 2 + 3, ok[k] ? "white" : "#67001f",
                    ok[k] ? " font-weight=\"bold\"" : "", answer);
        }
    }
    fprintf(f, "<text x=\"8\" y=\"%d\">dark blue, bold: found (the key); pale, dashed border: missed (what the "
               "model said)</text>\n</svg>\n", top + n_lengths * ch + 20);
    return close_output(&out, 1);
}

/* The cases of -m needle: prompt lengths (-L; default a quarter, half, three quarters and all of the
 * context) times depths of the key (-D; default 0, 0.25, .. 1), and what each policy did in each, in
 * each setting: run r = policy * NEEDLE_SETTINGS + setting. */
enum { NEEDLE_RUNS = N_POLICIES * NEEDLE_SETTINGS };
typedef struct {
    int n_lengths, n_depths, lengths[MAX_NEEDLE_LENGTHS];
    float depths[MAX_NEEDLE_DEPTHS];
    int *ok;                          /* (run, length, depth): found the key */
    long *said;                       /* (run, length, depth): the number it answered, -1: none */
    double kv_ratio[NEEDLE_RUNS];     /* per run, at the longest length (the mean over its depths): kv kept / full */
    double kv_bytes[NEEDLE_RUNS];     /* per run, the same: kv bytes kept */
    double accuracy[NEEDLE_RUNS];     /* per run, over every case: the share found */
} NeedleGrid;

static int needle_grid(NeedleGrid *g, const Config *c, const Options *o) {
    *g = (NeedleGrid){.n_lengths = o->n_needle_lengths, .n_depths = o->n_needle_depths};
    for (int li = 0; li < g->n_lengths; li++) g->lengths[li] = o->needle_lengths[li];
    for (int di = 0; di < g->n_depths; di++) g->depths[di] = o->needle_depths[di];
    if (g->n_lengths == 0) {
        g->n_lengths = 4;
        for (int li = 0; li < 4; li++) g->lengths[li] = (int)((c->seq_len - NEEDLE_ANSWER) * (li + 1) / 4.0f);
    }
    if (g->n_depths == 0) {
        g->n_depths = 5;
        for (int di = 0; di < 5; di++) g->depths[di] = di / 4.0f;
    }
    for (int li = 1; li < g->n_lengths; li++) /* ascending: the last is the longest (its prompt sizes the buffer) */
        for (int lj = li; lj > 0 && g->lengths[lj - 1] > g->lengths[lj]; lj--) {
            int t = g->lengths[lj];
            g->lengths[lj] = g->lengths[lj - 1], g->lengths[lj - 1] = t;
        }
    for (int li = 0; li < g->n_lengths; li++)
        if (g->lengths[li] + NEEDLE_ANSWER > c->seq_len)
            return fail("-L: %d tokens + a %d-token answer do not fit the context (%d)", g->lengths[li],
                        NEEDLE_ANSWER, c->seq_len);
    size_t cases = (size_t)g->n_lengths * g->n_depths;
    g->ok = xcalloc(NEEDLE_RUNS * cases, sizeof(int));
    g->said = xcalloc(NEEDLE_RUNS * cases, sizeof(long));
    return 0;
}

/* After every case: PREFIX.jsonl.partial becomes PREFIX.jsonl; a table per policy and setting to stdout,
 * its picture to PREFIX_POLICY_SETTING.svg; a summary table; a summary line of JSON. Returns 0 or 1. */
static int needle_report(NeedleGrid *g, const char *prefix, const char *path, const char *partial) {
    char *lines = NULL;
    size_t len = 0;
    Output out;
    int status = 0, cases = g->n_lengths * g->n_depths, longest = g->lengths[g->n_lengths - 1];
    if (read_file(partial, MAX_PROMPT_BYTES, &lines, &len) != 0) status = 1;
    else if (open_output(&out, path) != 0) status = 1;
    else {
        fwrite(lines, 1, len, out.f); /* a short write sets the stream's error: close_output reports it */
        if (close_output(&out, 1) != 0) status = 1;
        else remove(partial);
    }
    free(lines);
    if (status != 0) return report(status);
    for (int r = 0; r < NEEDLE_RUNS; r++) {
        const char *policy = policy_names[r / NEEDLE_SETTINGS];
        int hits = 0, setting = r % NEEDLE_SETTINGS;
        printf("%s, question %s: pass key found (rows: prompt tokens; columns: depth)\n%8s", policy,
               setting == NEEDLE_AFTER ? "asked after compression" : "in the prompt", "");
        for (int di = 0; di < g->n_depths; di++) printf(" %4.0f%%", g->depths[di] * 100);
        printf("\n");
        for (int li = 0; li < g->n_lengths; li++) {
            printf("%8d", g->lengths[li]);
            for (int di = 0; di < g->n_depths; di++) {
                int hit = g->ok[r * cases + li * g->n_depths + di];
                printf("  %s", hit ? " ok" : " --");
                hits += hit;
            }
            printf("\n");
        }
        g->accuracy[r] = (double)hits / cases;
        printf("accuracy %.1f%%, kv cache at %d tokens: %.1f%% of full\n\n", 100 * g->accuracy[r], longest,
               100 * g->kv_ratio[r]);
        char svg[4200];
        snprintf(svg, sizeof svg, "%s_%s_%s.svg", prefix, policy, setting_names[setting]);
        if (write_needle_svg(svg, policy, setting, g->n_lengths, g->n_depths, g->lengths, g->depths,
                             g->ok + r * cases, g->said + r * cases, g->accuracy[r], g->kv_ratio[r]) != 0)
            return report(1);
    }
    printf("pass key found, %d cases: the question in the prompt | asked after compression; kv cache at %d "
           "tokens\n%-10s %8s %8s %9s %9s\n", cases, longest, "policy", "prompt", "after", "kv prompt", "kv after");
    for (int pi = 0; pi < N_POLICIES; pi++) {
        const double *a = g->accuracy + pi * NEEDLE_SETTINGS, *kv = g->kv_ratio + pi * NEEDLE_SETTINGS;
        printf("%-10s %7.1f%% %7.1f%% %8.1f%% %8.1f%%\n", policy_names[pi], 100 * a[NEEDLE_PROMPT],
               100 * a[NEEDLE_AFTER], 100 * kv[NEEDLE_PROMPT], 100 * kv[NEEDLE_AFTER]);
    }
    printf("{");
    for (int pi = 0; pi < N_POLICIES; pi++) {
        printf("%s\"%s\": {", pi ? ", " : "", policy_names[pi]);
        for (int st = 0; st < NEEDLE_SETTINGS; st++) {
            int r = pi * NEEDLE_SETTINGS + st;
            printf("%s\"%s\": {\"accuracy\": %.4f, \"kv_ratio\": %.4f, \"kv_bytes\": %.0f}", st ? ", " : "",
                   setting_names[st], g->accuracy[r], g->kv_ratio[r], g->kv_bytes[r]);
        }
        printf("}");
    }
    printf("}\n");
    fprintf(stderr, "wrote %s and %s_POLICY_{prompt,after}.svg for the policies full, razor, streaming, nocomp, "
                    "snapkv and h2o\n", path, prefix);
    return 0;
}
/* -m needle: every (length, depth) case under each policy in both settings, the retrieval heads from
 * the profile in o->cache. Every case's prompt is built first (a bad -L, -e or -q fails before any
 * file exists). Each case's results are appended, as one JSON line, to PREFIX.jsonl.partial as soon as
 * they are known, and flushed: an interrupted run keeps the cases done (an empty .partial is removed,
 * as a temporary file is); then needle_report. Exit status 2 for the command line, 1 for files. */
int run_needle(const Model *m, const Tokenizer *tok, const Options *o) {
    const Config *c = &m->config;
    const char *filler_text = o->prompt ? o->prompt : builtin_filler;
    NeedleGrid g;
    if (needle_grid(&g, c, o) != 0) return report(2);
    char prefix[4096], path[4200], partial[4300];
    if (o->out_path) snprintf(prefix, sizeof prefix, "%s", o->out_path);
    else snprintf(prefix, sizeof prefix, "%s.needle", o->model_path);
    snprintf(path, sizeof path, "%s.jsonl", prefix);
    snprintf(partial, sizeof partial, "%s.partial", path);
    int *filler = xcalloc(encode_room(filler_text), sizeof(int)), n_filler = encode(tok, filler_text, 0, filler);
    int *prompt = xcalloc((size_t)g.lengths[g.n_lengths - 1] + 1, sizeof(int)), status = 0;
    int cases = g.n_lengths * g.n_depths, n_asked, kept = 0, write_failed = 0;
    if (check_prefix(prefix, "the outputs PREFIX.jsonl and PREFIX_POLICY_SETTING.svg are") != 0)
        status = report(2);
    else if (n_filler < 8) status = complain(2, "%s", n_filler < 0 ? razor_error() : "the filler text is too short");
    for (int k = 0; k < cases && status == 0; k++) /* every case's prompt can be made: the key's digits are 5 */
        if (needle_prompt(tok, o, c->add_bos, filler, n_filler, g.lengths[k / g.n_depths], g.depths[k % g.n_depths],
                          99999, prompt, &n_asked) < 0) status = report(2);
    sigset_t mask = hold_signals();
    FILE *log = status == 0 ? fopen(partial, "w") : NULL; /* opened before the work: an unwritable one fails at once */
    if (status == 0 && !log) status = complain(1, "%s: %s", partial, strerror(errno));
    if (log) track_temporary(partial);
    pthread_sigmask(SIG_SETMASK, &mask, NULL);
    uint64_t rng = o->seed_given ? o->seed : 42;
    for (int k = 0; k < cases && status == 0; k++) {
        int li = k / g.n_depths, di = k % g.n_depths;
        long key = 10000 + (long)(random_f32(&rng) * 89999);
        int n = needle_prompt(tok, o, c->add_bos, filler, n_filler, g.lengths[li], g.depths[di], key, prompt, &n_asked);
        if (n < 0) { status = report(2); break; }
        fprintf(stderr, "needle: case %d/%d, %d tokens, depth %.0f%%, key %ld:", k + 1, cases, g.lengths[li],
                100 * g.depths[di], key);
        char line[4096]; /* the case's JSON line (at most ~1500 bytes), written whole once the case is done */
        int used = snprintf(line, sizeof line, "{\"length\": %d, \"depth\": %g, \"key\": %ld", g.lengths[li],
                            g.depths[di], key);
        for (int r = 0; r < NEEDLE_RUNS && status == 0; r++) {
            int pi = r / NEEDLE_SETTINGS, setting = r % NEEDLE_SETTINGS;
            CacheConfig cache = o->cache;
            cache.policy = (Policy)pi;
            double ratio = 0;
            size_t bytes = 0;
            int *hit = &g.ok[r * cases + k];
            *hit = needle_found(m, tok, &cache, o->block, prompt, n, setting == NEEDLE_AFTER ? n_asked : 0, key,
                                &g.said[r * cases + k], &ratio, &bytes);
            if (*hit < 0) { fprintf(stderr, "\n"); status = report(1); break; }
            if (li == g.n_lengths - 1) g.kv_ratio[r] += ratio / g.n_depths, g.kv_bytes[r] += (double)bytes / g.n_depths;
            if (setting == 0) fprintf(stderr, " %s", policy_names[pi]);
            fprintf(stderr, " %s", *hit ? "found" : "missed");
            if (setting == 0)
                used += snprintf(line + used, sizeof line - (size_t)used, ", \"%s\": {", policy_names[pi]);
            used += snprintf(line + used, sizeof line - (size_t)used, "%s\"%s\": {\"found\": %s, \"said\": %ld, "
                             "\"kv_ratio\": %.4f, \"kv_bytes\": %zu}%s", setting ? ", " : "", setting_names[setting],
                             *hit ? "true" : "false", g.said[r * cases + k], ratio, bytes,
                             setting == NEEDLE_SETTINGS - 1 ? "}" : "");
        }
        if (status != 0) break; /* the case is not written: the .partial holds whole cases only */
        fprintf(stderr, "\n");
        fprintf(log, "%s}\n", line);
        errno = 0;
        if (fflush(log) != 0 || ferror(log)) {
            status = complain(1, "%s: cannot write it all: %s", partial, errno ? strerror(errno) : "a write failed");
            write_failed = 1;
            break;
        }
        kept++;
        untrack_temporary(partial); /* it holds a case: worth keeping if the run is cut short */
    }
    if (log && finish_stream(log, partial, 1) != 0 && status == 0) status = report(1), write_failed = 1;
    if (status == 0) status = needle_report(&g, prefix, path, partial);
    else if (log && (write_failed || kept == 0)) remove(partial); /* nothing it could not complete is left */
    untrack_temporary(partial);
    free(g.ok); free(g.said); free(prompt); free(filler);
    return status;
}

/* Reads whitespace-separated token ids; each must be in [0, vocab_size), at most max_ids of them. */
int read_ids(const char *path, int vocab_size, int max_ids, int **ids_out, int *n_out) {
    char *text;
    size_t size;
    if (read_file(path, MAX_PROMPT_BYTES, &text, &size) != 0) return -1;
    int *ids = xcalloc(size / 2 + 1, sizeof(int)), n = 0, status = 0;
    for (char *p = text, *end; status == 0; p = end) {
        while (isspace((unsigned char)*p)) p++;
        if (*p == 0) break;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || (*end && !isspace((unsigned char)*end)))
            status = fail("%s: byte %d: not a token id", path, (int)(p - text));
        else if (v < 0 || v >= vocab_size)
            status = fail("%s: token id %ld is outside the vocabulary (0..%d)", path, v, vocab_size - 1);
        else if (n == max_ids) status = fail("%s: more than %d ids, the model's context", path, max_ids);
        else ids[n++] = (int)v;
    }
    free(text);
    if (status == 0 && n == 0) status = fail("%s: no token ids", path);
    if (status != 0) { free(ids); return -1; }
    *ids_out = ids;
    *n_out = n;
    return 0;
}

static int write_logits(void *f, const float *logits, int T, int vocab_size) { /* a LogitsSink into the FILE f */
    size_t n = (size_t)T * vocab_size;
    return fwrite(logits, sizeof(float), n, f) == n ? 0 : -1;
}

/* Teacher-forces the ids under the full cache (keys and values in -K's type, blocks of -B tokens) and
 * writes float32 logits (n_tokens, vocab_size) to -o (open_output: no half-written file on any error). */
static int logits_file(const Model *m, const int *ids, int n, const Options *o) {
    CacheConfig full_cache = {.policy = POLICY_FULL, .kv_type = o->cache.kv_type};
    Output out;
    if (open_output(&out, o->out_path) != 0) return report(1);
    RunState s;
    if (build_runstate(&s, m, n, o->block, &full_cache) != 0) { report(1); close_output(&out, 0); return 1; }
    double t0 = now_seconds();
    /* a failed write stops it, and close_output says so; else NULL means the numbers went wrong */
    int done = forward(m, &s, ids, n, write_logits, out.f) != NULL || ferror(out.f);
    double secs = now_seconds() - t0;
    free_runstate(&s);
    if (!done) { report(1); close_output(&out, 0); return 1; }
    if (close_output(&out, 1) != 0) return report(1);
    fprintf(stderr, "wrote %d x %d logits to %s (%.1f tok/s)\n", n, m->config.vocab_size, o->out_path,
            secs > 0 ? n / secs : 0.0);
    return 0;
}

/* -m logits: the ids of -I, or the prompt encoded, teacher-forced (logits_file). */
int run_logits(const Model *m, const Tokenizer *tok, const Options *o) {
    const Config *c = &m->config;
    int *ids = NULL, n = 0, status = 0;
    if (o->ids_file) {
        if (read_ids(o->ids_file, c->vocab_size, c->seq_len, &ids, &n) != 0) status = report(1);
    } else {
        ids = xcalloc(encode_room(o->prompt), sizeof(int));
        n = encode(tok, o->prompt, c->add_bos, ids);
        if (n < 0) status = report(2);
        if (n == 0) status = complain(2, "the prompt is empty, and this model's tokenizer adds no BOS");
        if (n > c->seq_len) status = complain(2, "the prompt is %d tokens, the model's context is %d", n, c->seq_len);
    }
    if (status == 0) status = logits_file(m, ids, n, o);
    free(ids);
    return status;
}

/* -m tokenize: the prompt's token ids on one line, BOS first if the model adds one (as the Hugging
 * Face tokenizers library does with add_special_tokens=True). */
int run_tokenize(const Model *m, const Tokenizer *tok, const Options *o) {
    const char *text = o->prompt ? o->prompt : "";
    int *tokens = xcalloc(encode_room(text), sizeof(int));
    double t0 = now_seconds();
    int n = encode(tok, text, m->config.add_bos, tokens);
    double secs = now_seconds() - t0;
    if (n < 0) { free(tokens); return report(2); }
    for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", tokens[i]);
    printf("\n");
    fprintf(stderr, "encoded %zu bytes into %d tokens in %.1f ms\n", strlen(text), n, secs * 1e3);
    free(tokens);
    return 0;
}

/* -m perplexity: how much each policy changes the model's predictions over a long text, as llama.cpp's
 * llama-perplexity --kl-divergence measures it. The text is cut into windows of -l tokens (default:
 * the context), each BOS first if the model adds one; a tail shorter than a window is left out. In each
 * window the first half is prefilled as one block under full attention and compressed (prefill, as a
 * prompt), the other half fed one token at a time (compressed heads slide, as in generation), and
 * the predictions made from the second half's tokens are scored (the next token of each but the last,
 * window / 2 - 1 per window, as llama-perplexity scores each window's second half). The reference is
 * the full cache with float32 keys and values; every policy runs beside it on the same tokens, in
 * the -K type: "full" there is what 16-bit keys and values alone cost. */
typedef struct {
    double nll;              /* sum over the scored tokens of -ln q(the next token) */
    double *kl;              /* (scored) KL(reference || policy) of each scored token */
    long same_top;           /* scored tokens whose top-1 is the reference's */
    size_t kept, full;       /* KV bytes kept and uncompressed at the end of the last window */
} PolicyScore;

/* Runs n_windows windows of ids (window ids each, laid end to end) under the reference and the
 * N_POLICIES policies in step; fills score[] (kl room for n_windows * (window - window / 2 - 1)) and
 * *reference_nll. Returns the number of tokens scored, or -1 (razor_error says why). */
long perplexity_windows(const Model *m, const int *ids, int n_windows, int window, int block,
                        const CacheConfig *cache, PolicyScore *score, double *reference_nll) {
    int V = m->config.vocab_size, half = window / 2;
    long n_scored = 0;
    double *p = xcalloc((size_t)V, sizeof(double)), *q = xcalloc((size_t)V, sizeof(double));
    *reference_nll = 0;
    for (int k = 0; k < N_POLICIES; k++) score[k].nll = 0, score[k].same_top = 0;
    for (int w = 0; w < n_windows && n_scored >= 0; w++) {
        const int *x = ids + (size_t)w * window;
        RunState s[1 + N_POLICIES];  /* s[0] the reference, s[1 + k] policy k */
        float *logits[1 + N_POLICIES];
        int built = 0;
        while (built <= N_POLICIES) {
            CacheConfig cc = *cache;
            cc.policy = built ? (Policy)(built - 1) : POLICY_FULL;
            if (!built) cc.kv_type = KV_F32;
            if (build_runstate(&s[built], m, window, block, &cc) != 0) { n_scored = -1; break; }
            if (!prefill(m, &s[built++], x, half)) { n_scored = -1; break; } /* not finite (forward_block) */
        }
        for (int t = half; t + 1 < window && n_scored >= 0; t++, n_scored++) {
            for (int k = 0; k <= N_POLICIES && n_scored >= 0; k++)
                if (!(logits[k] = forward(m, &s[k], &x[t], 1, NULL, NULL))) n_scored = -1;
            if (n_scored < 0) break;
            softmax_into(p, logits[0], V);
            *reference_nll -= safe_log(p[x[t + 1]]);
            int top = argmax(logits[0], V);
            for (int k = 0; k < N_POLICIES; k++) {
                softmax_into(q, logits[1 + k], V);
                score[k].kl[n_scored] = kl_divergence(p, q, V);
                score[k].nll -= safe_log(q[x[t + 1]]);
                score[k].same_top += argmax(logits[1 + k], V) == top;
            }
        }
        for (int k = 1; k < built; k++) cache_bytes(&s[k], &m->config, &score[k - 1].kept, &score[k - 1].full);
        for (int k = 0; k < built; k++) free_runstate(&s[k]);
        fprintf(stderr, "\rperplexity: window %d/%d", w + 1, n_windows);
    }
    fprintf(stderr, "\n");
    free(p); free(q);
    return n_scored;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The KL statistics llama-perplexity prints: mean, median, 99th percentile (nearest rank), max. Sorts kl. */
void kl_stats(double *kl, long n, double out[4]) {
    qsort(kl, (size_t)n, sizeof *kl, compare_doubles);
    double sum = 0;
    for (long i = 0; i < n; i++) sum += kl[i];
    out[0] = sum / n;
    out[1] = n % 2 ? kl[n / 2] : (kl[n / 2 - 1] + kl[n / 2]) / 2;
    out[2] = kl[(long)ceil(0.99 * n) - 1];
    out[3] = kl[n - 1];
}

int run_perplexity(const Model *m, const Tokenizer *tok, const Options *o) {
    const Config *c = &m->config;
    int bos = c->add_bos && tok->bos_id >= 0;
    const char *text = o->prompt ? o->prompt : "";
    int *text_ids = xcalloc(encode_room(text), sizeof(int)), n_text = encode(tok, text, 0, text_ids);
    if (n_text < 0) { free(text_ids); return report(2); }
    int window = o->window ? o->window : min_int(c->seq_len, n_text + bos), per = window - bos;
    int n_windows = per > 0 ? n_text / per : 0, status = 0;
    if (window > c->seq_len) status = complain(2, "-l %d is longer than the model's context, %d", window, c->seq_len);
    else if (window < 4 || n_windows == 0)
        status = complain(2, "the text is %d tokens: too short for a window of %d (at least 4: half prefilled, half "
                             "scored)", n_text, window < 4 ? 4 : window);
    if (status) { free(text_ids); return status; }
    int *ids = xcalloc((size_t)n_windows * window, sizeof(int));
    for (int w = 0; w < n_windows; w++) {
        if (bos) ids[(size_t)w * window] = tok->bos_id;
        memcpy(ids + (size_t)w * window + bos, text_ids + (size_t)w * per, (size_t)per * sizeof(int));
    }
    long room = (long)n_windows * (window - window / 2 - 1);
    PolicyScore score[N_POLICIES];
    for (int k = 0; k < N_POLICIES; k++) score[k] = (PolicyScore){.kl = xcalloc((size_t)room, sizeof(double))};
    double reference_nll;
    long n = perplexity_windows(m, ids, n_windows, window, o->block, &o->cache, score, &reference_nll);
    const char *kv_names[] = {"f32", "bf16", "f16"};
    if (n < 0) status = report(1);
    else {
        double ppl_ref = exp(reference_nll / n), stats[N_POLICIES][4];
        printf("perplexity: %d windows of %d tokens (%d of %d text tokens), %ld scored; reference: the full cache, "
               "f32 keys and values, perplexity %.4f\n", n_windows, window, n_windows * per, n_text, n, ppl_ref);
        printf("%-10s %6s %10s %9s %10s %10s %10s %10s %9s\n", "policy", "kv %", "perplexity", "ratio", "KL mean",
               "KL median", "KL p99", "KL max", "same top");
        for (int k = 0; k < N_POLICIES; k++) {
            kl_stats(score[k].kl, n, stats[k]);
            double ppl = exp(score[k].nll / n);
            printf("%-10s %6.1f %10.4f %9.5f %10.6f %10.6f %10.6f %10.6f %8.2f%%\n", policy_names[k],
                   100.0 * score[k].kept / score[k].full, ppl, ppl / ppl_ref, stats[k][0], stats[k][1], stats[k][2],
                   stats[k][3], 100.0 * score[k].same_top / n);
        }
        printf("{\"mode\": \"perplexity\", \"window\": %d, \"windows\": %d, \"scored\": %ld, \"kv_type\": \"%s\", "
               "\"perplexity_reference\": %.6f, \"policies\": [", window, n_windows, n, kv_names[o->cache.kv_type],
               ppl_ref);
        for (int k = 0; k < N_POLICIES; k++)
            printf("%s{\"policy\": \"%s\", \"kv_percent\": %.2f, \"perplexity\": %.6f, \"kl_mean\": %.8f, "
                   "\"kl_median\": %.8f, \"kl_p99\": %.8f, \"kl_max\": %.8f, \"same_top\": %.6f}", k ? ", " : "",
                   policy_names[k], 100.0 * score[k].kept / score[k].full, exp(score[k].nll / n), stats[k][0],
                   stats[k][1], stats[k][2], stats[k][3], (double)score[k].same_top / n);
        printf("]}\n");
    }
    for (int k = 0; k < N_POLICIES; k++) free(score[k].kl);
    free(ids); free(text_ids);
    return status;
}

/* Profiles the model and writes PATH and its picture PATH.svg; both are opened before the probe
 * runs, so that a path that cannot be written fails at once, not after the work. Returns 0, -1 (a file
 * failed) or -2 (PATH is not one this model's profile can have: a command-line error). */
static int make_profile(const Model *m, const Tokenizer *tok, const Options *o, HeadProfile *profile,
                        const char *path) {
    int alibi = m->config.pos_encoding == POS_ALIBI, status;
    if (alibi && (ends_with(path, ".tsv") || ends_with(path, ".json")))
        return fail("%s: a %s cannot hold an ALiBi model's spans", path,
                    ends_with(path, ".tsv") ? "DuoAttention .tsv" : ".json profile"), -2;
    if (check_prefix(path, "the picture PATH.svg is") != 0) return -2;
    char svg_path[4400];
    snprintf(svg_path, sizeof svg_path, "%s.svg", path);
    Output heads, svg;
    if (open_output(&heads, path) != 0) return -1;
    if (open_output(&svg, svg_path) != 0) { close_output(&heads, 0); return -1; }
    if (alibi) status = span_rule(m, profile, SPAN_EPS);
    else status = profile_heads(m, tok, profile, o->seed_given ? o->seed : 42, o->induction_fraction, o->echo_fraction);
    if (status != 0) { close_output(&heads, 0); close_output(&svg, 0); return -1; }
    print_heatmap(profile);
    write_profile(profile, heads.f, path);
    write_profile_svg(profile, svg.f);
    status = close_output(&heads, 1);
    if (close_output(&svg, status == 0) != 0) status = -1;
    if (status != 0) { free_profile(profile); return -1; }
    fprintf(stderr, "wrote %s and %s\n", path, svg_path);
    return 0;
}

static const char *default_profile_path(const Options *o, char *buf, size_t size) {
    snprintf(buf, size, "%s.heads", o->model_path);
    return buf;
}

/* -m profile: the head profile, written to -o (default model.bin.heads) and its picture beside it. */
int run_profile(const Model *m, const Tokenizer *tok, const Options *o) {
    char buf[4200];
    HeadProfile profile = {0};
    const char *path = o->out_path ? o->out_path : default_profile_path(o, buf, sizeof buf);
    int status = make_profile(m, tok, o, &profile, path);
    free_profile(&profile);
    return status == 0 ? 0 : report(status == -2 ? 2 : 1);
}

/* ------------------------------------------------------------------------------------------------
 * Appendix E. The command line (left out of the test build, -DRAZOR_NO_MAIN) */
#ifndef RAZOR_NO_MAIN

int model_to_bf16(Model *m); /* -w bf16 (appendix F) */

static void usage(FILE *f) {
    fprintf(f,
            "usage: razor model.bin [options]\n"
            "  -m mode     generate (default) | chat | tokenize | logits | profile | compare | needle |\n"
            "              perplexity (every policy's KL and perplexity against the full cache over a text)\n"
            "  -i text     the prompt                 -f file   read the prompt (needle: the filler;\n"
            "                                                   perplexity: the text) from a file\n"
            "  -l n        perplexity: window in tokens, half prefilled, half scored (default: the context)\n"
            "  -n n        tokens to generate after the prompt (default 256)\n"
            "  -t temp     temperature, 0 = greedy (default 1.0)\n"
            "  -p topp     top-p sampling (default 0.9)\n"
            "  -s seed     random seed, any integer (default: from the clock for sampling, and printed; 42 for\n"
            "              the profile probe and the needle keys)\n"
            "  -z file     tokenizer.bin (default: next to the model, then ./tokenizer.bin)\n"
            "  -T n        threads (default: online cores)\n"
            "  -B n        prompt tokens per forward block (default %d; 1: one at a time)\n"
            "  -w type     weights in memory: f32 (default, as the file has them) | bf16 (rounded copy:\n"
            "              half the bytes to read per token, faster generation)\n"
            "  -A type     what q8 and bf16 weights multiply: rounded (default: the inputs rounded to the\n"
            "              weights' type, int8 dot products for q8, bf16 ones for bf16 where the CPU has\n"
            "              them) | f32 (the weights widened to float32: slower, inputs unrounded)\n"
            "  -y text     system prompt (chat)\n"
            "  -I file     token ids to teacher-force (logits; instead of a prompt)\n"
            "  -o file     output: logits (float32 [n_tokens][vocab_size]); profile (.heads, .tsv or\n"
            "              golden-stick's .json); needle (prefix of its files, default model.bin.needle:\n"
            "              .jsonl, _POLICY_SETTING.svg)\n"
            "KV cache (RazorAttention):\n"
            "  -c policy   razor (default) | full | streaming (sinks + window) | nocomp (razor without\n"
            "              the compensation token) | snapkv | h2o (drop tokens by attention, to razor's bytes)\n"
            "  -S n        N0: sink tokens every compressed head keeps (default %d)\n"
            "  -W n        S0: the window is max(S0, prompt tokens / C) (default %d)\n"
            "  -C ratio    C (default %g)\n"
            "  -K type     keys and values in the cache: bf16 (default) | f16 | f32 (twice the bytes);\n"
            "              capital K, not -k, which is the head profile\n"
            "  -k file     head profile: .heads; DuoAttention's .tsv; .json, golden-stick's retrieval\n"
            "              heads or Retrieval_Head/HeadKV scores (the top -R + -E of KV heads);\n"
            "              default model.bin.heads, computed and saved when missing\n"
            "  -R frac     profile: fraction of KV heads made retrieval heads by induction score (default %g)\n"
            "  -E frac     profile: fraction made retrieval heads by echo score (default %g)\n"
            "  -e text     needle: the planted sentence, {key} is the number\n"
            "  -q text     needle: the question at the end\n"
            "  -L n,n,..   needle: prompt lengths in tokens (default: 1/4, 1/2, 3/4, all of the context)\n"
            "  -D f,f,..   needle: depths of the pass key, 0 to 1 (default 0,0.25,0.5,0.75,1)\n"
            "built for %s: vectors of %d floats, int8 dot products by %s%s%s (model.h chooses from"
            " the compile target)\n",
            DEFAULT_BLOCK, SINKS_N0, WINDOW_S0, COMPRESSION_C, INDUCTION_FRACTION, ECHO_FRACTION, RAZOR_ISA, VEC,
            RAZOR_DOT_I8, RAZOR_AMX_NOTE, RAZOR_BF16_NOTE);
}

/* A number written plainly: decimal digits (an integer), or also a point and an exponent; no spaces,
 * no hex, no inf or nan, which strtod would take. */
static int parse_number(const char *flag, const char *s, double lo, double hi, int integer, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    size_t plain = strspn(s + (*s == '-'), integer ? "0123456789" : "0123456789.eE+-") + (*s == '-');
    if (end == s || *end || errno || plain != strlen(s) || !(v >= lo && v <= hi) || (integer && v != floor(v))) {
        if (integer) fprintf(stderr, "razor: %s %s: expected an integer in [%.0f, %.0f]\n", flag, s, lo, hi);
        else fprintf(stderr, "razor: %s %s: expected a number in [%g, %g]\n", flag, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

/* A comma-separated list of at most `max` numbers in [lo, hi] (integers if `integer`), for -L and -D. */
static int parse_list(const char *flag, const char *s, double lo, double hi, int integer, int max, double *out,
                      int *n) {
    char item[64];
    *n = 0;
    for (const char *p = s;; p++) {
        size_t len = strcspn(p, ",");
        if (*n == max) return complain(2, "%s takes at most %d values", flag, max);
        if (len == 0 || len >= sizeof item) return complain(2, "%s: '%s' is not a list of numbers", flag, s);
        size_t lead = strspn(p, " "), trail = 0; /* "0, 0.5": spaces around an item are fine */
        while (trail < len - lead && p[len - 1 - trail] == ' ') trail++;
        memcpy(item, p + lead, len - lead - trail);
        item[len - lead - trail] = 0;
        if (parse_number(flag, item, lo, hi, integer, &out[(*n)++])) return 2;
        p += len;
        if (!*p) return 0;
    }
}

/* The tokenizer path: -z, else tokenizer.bin next to the model, else in the current directory. */
static const char *tokenizer_path(const Options *o, char *buf, size_t size) {
    if (o->tokenizer_path) return o->tokenizer_path;
    const char *slash = strrchr(o->model_path, '/');
    if (slash) {
        snprintf(buf, size, "%.*s/tokenizer.bin", (int)(slash - o->model_path), o->model_path);
        if (access(buf, R_OK) == 0) return buf;
    }
    return "tokenizer.bin";
}

/* One option and its value into o; returns 0, or 2 (the message printed). */
static int parse_flag(Options *o, const char *flag, const char *val) {
    double v;
    switch (flag[1]) {
    case 't': if (parse_number(flag, val, 0, 100, 0, &v)) return 2; o->temperature = (float)v; break;
    case 'p': if (parse_number(flag, val, 0, 1, 0, &v)) return 2; o->topp = (float)v; break;
    case 's': {
        char *end;
        errno = 0;
        o->seed = strtoull(val, &end, 10);
        if (end == val || *end || errno || val[0] == '-')
            return complain(2, "-s %s: expected an integer in [0, %llu]", val, (unsigned long long)UINT64_MAX);
        o->seed_given = 1;
        break;
    }
    case 'n': if (parse_number(flag, val, 0, INT_MAX, 1, &v)) return 2; o->steps = (int)v; break;
    case 'T': if (parse_number(flag, val, 1, 1024, 1, &v)) return 2; o->threads = (int)v; break;
    case 'S': if (parse_number(flag, val, 0, MAX_SEQ_LEN, 1, &v)) return 2; o->cache.n_sink = (int)v; break;
    case 'W': if (parse_number(flag, val, 1, MAX_SEQ_LEN, 1, &v)) return 2; o->cache.window_min = (int)v; break;
    case 'C': if (parse_number(flag, val, 1, 1e6, 0, &v)) return 2; o->cache.compression = (float)v; break;
    case 'R': if (parse_number(flag, val, 0, 1, 0, &v)) return 2; o->induction_fraction = (float)v; break;
    case 'E': if (parse_number(flag, val, 0, 1, 0, &v)) return 2; o->echo_fraction = (float)v; break;
    case 'B': if (parse_number(flag, val, 1, 1 << 16, 1, &v)) return 2; o->block = (int)v; break;
    case 'l': if (parse_number(flag, val, 4, MAX_SEQ_LEN, 1, &v)) return 2; o->window = (int)v; break;
    case 'i': o->prompt = val; break;
    case 'f': o->prompt_file = val; break;
    case 'z': o->tokenizer_path = val; break;
    case 'm': o->mode = val; break;
    case 'o': o->out_path = val; break;
    case 'I': o->ids_file = val; break;
    case 'y': o->system_prompt = val; break;
    case 'c': o->policy_name = val; break;
    case 'k': o->profile_path = val; break;
    case 'e': o->needle = val; break;
    case 'q': o->question = val; break;
    case 'L': {
        double v_list[MAX_NEEDLE_LENGTHS];
        if (parse_list(flag, val, 16, MAX_SEQ_LEN, 1, MAX_NEEDLE_LENGTHS, v_list, &o->n_needle_lengths)) return 2;
        for (int k = 0; k < o->n_needle_lengths; k++) o->needle_lengths[k] = (int)v_list[k];
        break;
    }
    case 'D': {
        double v_list[MAX_NEEDLE_DEPTHS];
        if (parse_list(flag, val, 0, 1, 0, MAX_NEEDLE_DEPTHS, v_list, &o->n_needle_depths)) return 2;
        for (int k = 0; k < o->n_needle_depths; k++) o->needle_depths[k] = (float)v_list[k];
        break;
    }
    case 'w':
        if (strcmp(val, "f32") && strcmp(val, "bf16")) return complain(2, "-w takes f32 or bf16, not '%s'", val);
        o->bf16 = !strcmp(val, "bf16");
        break;
    case 'A':
        if (strcmp(val, "rounded") && strcmp(val, "f32")) return complain(2, "-A takes rounded or f32, not '%s'", val);
        o->f32_inputs = !strcmp(val, "f32");
        break;
    case 'K': {
        const char *types[] = {"f32", "bf16", "f16"};
        int k = 0;
        while (k < 3 && strcmp(val, types[k])) k++;
        if (k == 3) return complain(2, "-K takes f32, bf16 or f16, not '%s'", val);
        o->cache.kv_type = (KVType)k;
        break;
    }
    }
    return 0;
}

/* The modes (-m): each runs with the model, its tokenizer (NULL for -m logits -I) and the options;
 * uses_cache: it runs under the cache policy (-c), so razor and nocomp need a head profile. */
typedef struct {
    const char *name;
    int (*run)(const Model *m, const Tokenizer *tok, const Options *o);
    int uses_cache;
} Mode;
static const Mode modes[] = {{"generate", run_generate, 1}, {"chat", run_chat, 1},   {"tokenize", run_tokenize, 0},
                             {"logits", run_logits, 0},     {"profile", run_profile, 0}, {"compare", run_compare, 1},
                             {"needle", run_needle, 1},     {"perplexity", run_perplexity, 1}};
enum { N_MODES = sizeof modes / sizeof *modes };

static const Mode *find_mode(const char *name) {
    for (int k = 0; k < N_MODES; k++) if (!strcmp(name, modes[k].name)) return &modes[k];
    return NULL;
}

/* What the options ask for together: a known mode and policy, and the inputs and outputs it takes. */
static int check_args(Options *o) {
    if (!find_mode(o->mode))
        return complain(2, "unknown mode '%s' (generate, chat, tokenize, logits, profile, compare, needle, perplexity)",
                        o->mode);
    int policy = -1;
    for (int k = 0; k < N_POLICIES; k++) if (!strcmp(o->policy_name, policy_names[k])) policy = k;
    if (policy < 0)
        return complain(2, "unknown cache policy '%s' (razor, full, streaming, nocomp, snapkv, h2o)", o->policy_name);
    o->cache.policy = (Policy)policy;
    if (o->prompt && o->prompt_file) return complain(2, "give the prompt with -i or -f, not both");
    if (o->window && strcmp(o->mode, "perplexity")) return complain(2, "-l is for -m perplexity");
    if (!strcmp(o->mode, "perplexity") && !o->prompt && !o->prompt_file)
        return complain(2, "-m perplexity needs a text: -f FILE (or -i TEXT)");
    if (!strcmp(o->mode, "logits")) {
        if (!o->out_path) return complain(2, "-m logits needs -o FILE");
        if (!o->ids_file && !o->prompt && !o->prompt_file) return complain(2, "-m logits needs -I ids_file, -i or -f");
    } else if (o->ids_file) {
        return complain(2, "-I is for -m logits");
    } else if (o->out_path && strcmp(o->mode, "profile") && strcmp(o->mode, "needle")) {
        return complain(2, "-o is for -m logits, profile and needle");
    }
    if (!strcmp(o->mode, "needle") && !strstr(o->needle, "{key}"))
        return complain(2, "-e '%s': the needle must hold {key}, where the pass key goes", o->needle);
    return 0;
}

/* Parses argv into o; returns 0, or the exit code on error (2) or help (1, after printing usage). */
static int parse_args(int argc, char **argv, Options *o) {
    *o = (Options){.temperature = 1.0f, .topp = 0.9f, .steps = 256, .mode = "generate", .policy_name = "razor",
                   .cache = {.policy = POLICY_RAZOR, .kv_type = KV_BF16, .n_sink = SINKS_N0, .window_min = WINDOW_S0,
                             .compression = COMPRESSION_C},
                   .induction_fraction = INDUCTION_FRACTION, .echo_fraction = ECHO_FRACTION,
                   .needle = "The pass key is {key}. Remember it.", /* as train/train.py plants them */
                   .question = "What is the pass key? The pass key is", .block = DEFAULT_BLOCK};
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    o->threads = cores > 0 ? (int)cores : 1;
    for (int i = 1; i < argc; i += i == 1 ? 1 : 2) /* -h where a flag may stand: not as another flag's value */
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); return 1; }
    if (argc < 2 || argv[1][0] == '-') { usage(stderr); return 2; }
    o->model_path = argv[1];
    for (int i = 2; i < argc; i += 2) {
        const char *flag = argv[i];
        if (flag[0] != '-' || strlen(flag) != 2 || !strchr("tpsnifzmToIycSWCkREeqwALDKBl", flag[1])) {
            complain(2, "unknown option '%s'", flag);
            usage(stderr);
            return 2;
        }
        if (i + 1 >= argc) return complain(2, "%s needs a value", flag);
        for (int k = 2; k < i; k += 2)
            if (!strcmp(argv[k], flag))
                return complain(2, "%s is given twice (%s and %s)", flag, argv[k + 1], argv[i + 1]);
        if (parse_flag(o, flag, argv[i + 1]) != 0) return 2;
    }
    return check_args(o);
}

/* The prompt of -f, read whole, or of -i; one final newline (a text file's last line end) is not part
 * of it. *owned: what main frees. Returns -1 (the message printed) if the file cannot be read. */
static int read_prompt(Options *o, char **owned) {
    size_t len;
    *owned = NULL;
    if (o->prompt_file) {
        if (read_file(o->prompt_file, MAX_PROMPT_BYTES, owned, &len) != 0) return report(-1);
        if (strlen(*owned) != len) {
            free(*owned);
            *owned = NULL;
            return complain(-1, "%s: contains a NUL byte", o->prompt_file);
        }
        o->prompt = *owned;
    }
    len = o->prompt ? strlen(o->prompt) : 0;
    if (len && o->prompt[len - 1] == '\n') {
        if (!*owned) *owned = xstrdup(o->prompt);
        (*owned)[--len] = 0;
        if (len && (*owned)[len - 1] == '\r') (*owned)[--len] = 0;
        o->prompt = *owned;
    }
    return 0;
}

/* The retrieval heads for -c razor / nocomp (and the budget of snapkv / h2o), the needle test and
 * perplexity: from -k FILE, else from model.bin.heads, which is computed and saved first if it does
 * not exist. */
static int get_profile(const Model *m, const Tokenizer *tok, const Options *o, HeadProfile *profile) {
    char buf[4200];
    const char *path = o->profile_path ? o->profile_path : default_profile_path(o, buf, sizeof buf);
    if (o->profile_path || access(path, F_OK) == 0)
        return load_profile(profile, path, &m->config, o->induction_fraction + o->echo_fraction);
    complain(0, "no head profile at %s; profiling the model first", path);
    return make_profile(m, tok, o, profile, path);
}

/* Warnings for options that work, but not as a user may expect. */
static void warn_options(const Options *o) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores > 0 && o->threads > cores)
        complain(0, "warning: -T %d is more threads than the %ld online cores; expect it to be much slower", o->threads,
                 cores);
    if (o->cache.policy != POLICY_FULL && o->cache.n_sink >= o->cache.window_min)
        complain(0, "warning: -S %d sinks are not fewer than -W %d: a compressed head's window can be no longer than "
                    "its sinks", o->cache.n_sink, o->cache.window_min);
}

/* SIGINT, SIGTERM, SIGHUP and SIGPIPE (a reader that went away: `./razor ... | head` ends quietly, as
 * other tools do): the files not complete yet are removed (appendix A), then the signal ends razor as it
 * would have. A signal razor was started ignoring (nohup, a shell's background job) stays ignored; an
 * ignored SIGPIPE makes a write to a closed pipe an error like any other. */
static void on_signal(int sig) {
    remove_temporaries();
    signal(sig, SIG_DFL);
    raise(sig); /* delivered when on_signal returns: the exit status still says which signal ended the run */
}

static void catch_signal(int sig) {
    struct sigaction now, catch = {.sa_handler = on_signal};
    sigemptyset(&catch.sa_mask);
    if (sigaction(sig, NULL, &now) == 0 && now.sa_handler != SIG_IGN) sigaction(sig, &catch, NULL);
}

int main(int argc, char **argv) {
    atexit(remove_temporaries); /* an exit() on the way (out of memory) leaves no half-written file */
    catch_signal(SIGINT), catch_signal(SIGTERM), catch_signal(SIGHUP), catch_signal(SIGPIPE);
    Options o;
    int status = parse_args(argc, argv, &o);
    if (status == 1) return finish_stream(stdout, "standard output", 0) != 0 ? report(1) : 0; /* -h */
    if (status) return status;
    const Mode *mode = find_mode(o.mode);
    Model model;
    f32_inputs = o.f32_inputs;
    if (load_model(&model, o.model_path) != 0 || (o.bf16 && model_to_bf16(&model) != 0)) {
        free_model(&model);
        return report(1);
    }
    const Config *c = &model.config;
    char *prompt;
    if (read_prompt(&o, &prompt) != 0) { free_model(&model); return 1; }
    warn_options(&o);
    if (o.threads > 1) pool_start(o.threads);

    Tokenizer tok = {0};
    HeadProfile profile = {0};
    int need_tokenizer = !(o.ids_file && !strcmp(o.mode, "logits"));
    int need_profile = (mode->uses_cache && o.cache.policy != POLICY_FULL && o.cache.policy != POLICY_STREAMING) ||
                       !strcmp(o.mode, "needle") || !strcmp(o.mode, "perplexity");
    char path_buf[4096];
    const char *tok_path = need_tokenizer ? tokenizer_path(&o, path_buf, sizeof path_buf) : NULL;
    if (need_tokenizer && !o.tokenizer_path && access(tok_path, F_OK) != 0) {
        status = complain(1, "no tokenizer: looked for tokenizer.bin next to the model and in the current directory; "
                             "give one with -z FILE");
    } else if ((need_tokenizer && load_tokenizer(&tok, tok_path, c->vocab_size, c->bos_id, c->eos_id) != 0) ||
               (need_profile && get_profile(&model, &tok, &o, &profile) != 0)) {
        status = report(1);
    } else {
        o.cache.profile = &profile; /* which heads are retrieval heads: choose_head_caches (section 4) */
        if (mode->uses_cache && !o.seed_given) { /* the clock to the nanosecond, and the process id */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            o.seed = ((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec) ^ ((uint64_t)getpid() << 40);
            if (o.temperature > 0 && (!strcmp(o.mode, "generate") || !strcmp(o.mode, "chat")))
                complain(0, "seed %llu (from the clock; -s %llu repeats this run)", (unsigned long long)o.seed,
                         (unsigned long long)o.seed);
        }
        status = mode->run(&model, need_tokenizer ? &tok : NULL, &o);
    }
    free_profile(&profile);
    free_tokenizer(&tok);
    pool_stop();
    free(prompt);
    free_model(&model);
    if (finish_stream(stdout, "standard output", 0) != 0) status = status ? status : report(1); /* a full disk */
    return status;
}
#endif

/* ------------------------------------------------------------------------------------------------
 * Appendix F. The fast kernels: threads, vectors, matmul (q8 x q8, bf16 x bf16), THE tiled attention
 * loop, 16-bit numbers, bfloat16 weights. Skippable on a first read: sections 3-5 say what each
 * computes (matmul_reference, swiglu_reference, attention_online); this is how it is made fast. The
 * vector width and tile sizes come from the compile target (model.h). */

/* Threads. One pool for the whole program: pool_run(task, arg) runs task(arg, i, n) on all n
 * threads (the caller is thread 0) and returns when all are done. Workers spin briefly between jobs
 * (a forward pass is a burst of them), then yield the core, then sleep. Each task splits its own
 * work by thread index. */
static int pool_threads = 1; /* the caller included */

#ifdef RAZOR_NO_THREADS
void pool_start(int n) { (void)n; }
void pool_stop(void) {}
static void pool_run(Task task, void *arg) { task(arg, 0, 1); }
#else
static struct {
    int n;                 /* threads, the caller included */
    pthread_t *threads;
    Task task;
    void *arg;
    atomic_int generation; /* bumped once per job */
    int first_generation;  /* generation when the workers started (pool_start may follow a pool_stop) */
    atomic_int busy;       /* workers still on the current job */
    atomic_int stop;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int sleepers;
} pool = {.n = 1, .lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

#define SPINS 2000 /* polls before a waiting thread yields its core; workers sleep after 64 rounds */

static void *pool_worker(void *p) {
    int id = (int)(intptr_t)p, seen = pool.first_generation;
    for (;;) {
        for (int spins = 0; atomic_load(&pool.generation) == seen && !atomic_load(&pool.stop);) {
            if (++spins < SPINS) continue;
            if (spins < 64 * SPINS) { sched_yield(); continue; } /* on a busy machine, let others run */
            pthread_mutex_lock(&pool.lock);
            pool.sleepers++;
            while (atomic_load(&pool.generation) == seen && !atomic_load(&pool.stop))
                pthread_cond_wait(&pool.wake, &pool.lock);
            pool.sleepers--;
            pthread_mutex_unlock(&pool.lock);
        }
        if (atomic_load(&pool.stop)) return NULL;
        seen = atomic_load(&pool.generation);
        pool.task(pool.arg, id, pool.n);
        atomic_fetch_sub(&pool.busy, 1);
    }
}

void pool_start(int n) {
    pool.n = pool_threads = n;
    pool.first_generation = atomic_load(&pool.generation); /* not 0: a restarted pool's workers would rerun the
                                                              last job, its arg long gone */
    pool.threads = xcalloc((size_t)n, sizeof(pthread_t));
    sigset_t old = hold_signals(); /* the workers inherit it: signals go to the main thread (appendix A) */
    pthread_attr_t stack;          /* 4 MB, whatever the C library's default: rounded_part takes 256 KB */
    pthread_attr_init(&stack);
    pthread_attr_setstacksize(&stack, (size_t)4 << 20);
    for (int i = 1; i < n; i++)
        if (pthread_create(&pool.threads[i], &stack, pool_worker, (void *)(intptr_t)i) != 0) {
            pool.n = pool_threads = i; /* run with the threads we got */
            break;
        }
    pthread_attr_destroy(&stack);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

void pool_stop(void) {
    atomic_store(&pool.stop, 1);
    pthread_mutex_lock(&pool.lock);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    for (int i = 1; i < pool.n; i++) pthread_join(pool.threads[i], NULL);
    free(pool.threads);
    pool.threads = NULL;
    pool.n = pool_threads = 1;
    atomic_store(&pool.stop, 0);
}

static void pool_run(Task task, void *arg) {
    if (pool.n == 1) { task(arg, 0, 1); return; }
    pool.task = task;
    pool.arg = arg;
    atomic_store(&pool.busy, pool.n - 1);
    atomic_fetch_add(&pool.generation, 1);
    pthread_mutex_lock(&pool.lock);
    if (pool.sleepers) pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    task(arg, 0, pool.n);
    for (int spins = 0; atomic_load(&pool.busy) > 0;) if (++spins > SPINS) sched_yield();
}
#endif

/* The slice [begin, end) of n items that thread i of n_threads takes, in multiples of `align`. */
static void split(size_t n, size_t align, int i, int n_threads, size_t *begin, size_t *end) {
    size_t units = (n + align - 1) / align;
    *begin = units * i / n_threads * align;
    *end = units * (i + 1) / n_threads * align;
    if (*begin > n) *begin = n;
    if (*end > n) *end = n;
}

/* 16-bit numbers: bfloat16 (the top 16 bits of a float32) and IEEE half (11 bits of precision, a range
 * of +-65504, beyond it inf), both rounded to nearest, ties to even. */
static float bf16_to_f32(uint16_t h) { uint32_t u = (uint32_t)h << 16; float f; memcpy(&f, &u, 4); return f; }

static uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7f800000) == 0x7f800000) return (uint16_t)((u >> 16) | ((u & 0xffff) ? 0x40 : 0)); /* inf, NaN */
    return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

static uint16_t f32_to_f16(float f) {
    uint32_t u, sign, abs;
    memcpy(&u, &f, 4);
    sign = (u >> 16) & 0x8000;
    abs = u & 0x7fffffff;
    if (abs >= 0x7f800000) return (uint16_t)(sign | 0x7c00 | (abs > 0x7f800000 ? 0x200 : 0)); /* inf, NaN */
    if (abs >= 0x477ff000) return (uint16_t)(sign | 0x7c00); /* rounds to 65520 or more: inf */
    if (abs < 0x38800000) { /* below 2^-14: a subnormal half, in units of 2^-24 */
        float a;
        memcpy(&a, &abs, 4);
        return (uint16_t)(sign | (uint32_t)lrintf(a * 0x1p24f));
    }
    uint32_t h = (abs - 0x38000000) >> 13, rest = abs & 0x1fff; /* exponent rebiased from 127 to 15 */
    h += rest > 0x1000 || (rest == 0x1000 && (h & 1));
    return (uint16_t)(sign | h);
}

static float f16_to_f32(uint16_t h) {
    uint32_t magnitude = (uint32_t)(h & 0x7fff) << 13, u;
    float f;
    memcpy(&f, &magnitude, 4);
    f *= 0x1p112f; /* rebias the exponent from 15 to 127; subnormal halves come out right too */
    memcpy(&u, &f, 4);
    if ((h & 0x7c00) == 0x7c00) u |= 0x7f800000; /* inf, NaN */
    u |= (uint32_t)(h & 0x8000) << 16;
    memcpy(&f, &u, 4);
    return f;
}

/* Vectors of VEC floats (GCC/clang vector extension; VEC and the tiles below come from the compile
 * target, see model.h). vload reads unaligned memory. */
typedef float vecf __attribute__((vector_size(VEC * sizeof(float))));
static inline vecf vload(const float *p) { vecf v; memcpy(&v, p, sizeof v); return v; }
static inline float vsum(vecf v) { /* a tree of adds, log2(VEC) deep, not a VEC-long chain */
    float a[VEC];
    memcpy(a, &v, sizeof a);
    for (int width = VEC / 2; width > 0; width /= 2)
        for (int k = 0; k < width; k++) a[k] += a[k + width];
    return a[0];
}

/* Weights as matmul reads them (model.h): float32; bfloat16 (a file's, or -w bf16's rounded copy of a
 * float32 file: half the bytes every generated token must stream through the cores); or q8, int8 in
 * groups with one float32 scale each (a little over a quarter of the bytes), which by default meet int8
 * inputs in kernels of their own (q8 x q8, below), and with -A f32 are widened to float32 here like
 * the others, as bf16 weights are unless the CPU multiplies bf16 pairs (bf16 x bf16, below).
 * bfloat16 is the top half of a float32, so widening is a shift; an int8 widens by conversion, times
 * its group's scale. The kernels below take a constant TYPE, like their tile sizes, and compile once
 * for each. A vector of VEC weights never straddles two q8 groups: VEC divides
 * Q8_GROUP, and vectors start at multiples of VEC within rows whose length is a multiple of Q8_GROUP. */
typedef uint32_t vecu __attribute__((vector_size(VEC * sizeof(uint32_t))));
typedef int8_t vecb __attribute__((vector_size(VEC * sizeof(int8_t))));
typedef int16_t vecs __attribute__((vector_size(VEC * sizeof(int16_t))));
typedef int32_t veci __attribute__((vector_size(VEC * sizeof(int32_t))));
static inline vecf widen_bf16(const uint16_t *p) {
    vecu u = widen_u16(p) << 16;
    vecf f;
    memcpy(&f, &u, sizeof f);
    return f;
}
static inline vecf widen_q8(const int8_t *p) { /* by way of int16: GCC turns int8 -> float into scalar code */
    vecb b;
    memcpy(&b, p, sizeof b);
    return __builtin_convertvector(__builtin_convertvector(__builtin_convertvector(b, vecs), veci), vecf);
}
static inline vecf wload(Matrix w, size_t i, int TYPE) { /* weights i .. i + VEC - 1 */
    if (TYPE == WEIGHT_BF16) return widen_bf16((const uint16_t *)w.data + i);
    if (TYPE == WEIGHT_Q8) return widen_q8((const int8_t *)w.data + i) * w.scale[i / Q8_GROUP];
    return vload((const float *)w.data + i);
}
static inline float wget(Matrix w, size_t i, int TYPE) { /* matrix_value, its type a constant */
    w.type = TYPE;
    return matrix_value(w, i);
}

/* One product of matmul: out (T, d) = x (T, n) @ w (d, n)^T, or out += with add. */
typedef struct {
    float *out;       /* (T, d) */
    const float *x;   /* (T, n) */
    const float *xt;  /* x transposed tile by tile, for block_tile (see transpose_block); one token
                         with bf16 (no xb) or (-A f32) q8 weights: x reordered for dot_row (pair_inputs,
                         quad_inputs) */
    Matrix xq;        /* q8 weights: x (T, n) quantized, in q8's layout (quantize_q8) */
    Matrix xtiles;    /* q8 weights on AMX, 16 tokens or more: xq again, in tdpbssd's layout
                         (amx_pack_task); else data NULL */
    const int8_t *xblocked; /* q8 weights, BLOCK_MIN_TOKENS tokens or more, not on AMX, where matmul
                               chose it: (T, n), xq's values again in q8's blocked layout; else NULL */
    const uint16_t *xb; /* bf16 weights where the CPU multiplies bf16 pairs: x (T, n) rounded to bf16 */
    Matrix w;         /* (d, n) */
    int T, n, d, add;
} Matmul;

/* Three matmul kernels for float32 inputs: dot_row for one token, dot_tile for a few, block_tile for a
 * block (q8 weights have one of their own for int8 inputs, q8_tile, below, and so do bf16 weights for
 * bf16 inputs where the CPU multiplies bf16 pairs, bf16_tile). Weights are row-major (d, n), as the
 * file stores them.
 *
 * dot_tile, for a few tokens (2 to 15: a short chat turn, a prompt's last block): out[t + c][i + r]
 * = dot(w row i + r, x row t + c) for R weight rows and C tokens (R, C <= DOT_TILE), vectorised along
 * n, so that with R, C > 1 every value loaded is used several times. Called with constant R and C, it
 * compiles to an unrolled block of accumulators. */
static inline __attribute__((always_inline)) void dot_tile(const Matmul *a, size_t i, int t, int R, int C, int TYPE) {
    int n = a->n;
    Matrix w = matrix_at(a->w, i * (size_t)n);
    const float *x = a->x + (size_t)t * n;
    float *out = a->out + (size_t)t * a->d + i;
    vecf acc[DOT_TILE][DOT_TILE];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) acc[r][c] = (vecf){0};
    int j = 0;
    for (; j + VEC <= n; j += VEC) {
        vecf xv[DOT_TILE];
        for (int c = 0; c < C; c++) xv[c] = vload(x + (size_t)c * n + j);
        for (int r = 0; r < R; r++) {
            vecf wv = wload(w, (size_t)r * n + j, TYPE);
            for (int c = 0; c < C; c++) acc[r][c] += wv * xv[c];
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            float s = vsum(acc[r][c]);
            for (int k = j; k < n; k++) s += wget(w, (size_t)r * n + k, TYPE) * x[(size_t)c * n + k];
            out[(size_t)c * a->d + r] = a->add ? out[(size_t)c * a->d + r] + s : s;
        }
}

/* dot_row, for one token (generation): one weight row . x, over four independent sums, so that each
 * multiply-add need not wait for the one before it (a single chain of them is latency-bound, well
 * below what the caches deliver). bf16 weights come 2 * VEC at a time as VEC uint32 pairs: the low
 * halves (even inputs, on a little-endian machine, as razor assumes throughout) widen with a shift, the
 * high halves (odd inputs) with a mask, with no shuffles (which would cost more than the bytes saved);
 * x_pairs is x reordered to match (pair_inputs). q8 weights (-A f32) come 4 * VEC at a time as VEC
 * int32 lanes of 4 bytes: shifting each byte to the top of its lane and back down (arithmetic) widens
 * it, again with no shuffles, and x_quads is x reordered to match (quad_inputs); each lane's sum is then
 * multiplied by its group's scale. Each bf16 and q8 round also asks for the weights PREFETCH_AHEAD bytes
 * on (measured: +15-20% for bf16 when it was added, the hardware prefetcher alone falling behind). fp32
 * rounds do not: on a Zen 4 the same request made the stories110M shape's fp32 generation 7-12%
 * slower (AVX-512 and AVX2 builds, 2026-11-30), the hardware prefetcher keeping up with a stream
 * whose every byte is used once. */
static inline vecf pair_dot(const uint16_t *w, const float *x_pairs, vecf acc) {
    vecu pair, lo, hi;
    memcpy(&pair, w, sizeof pair);
    lo = pair << 16;
    hi = pair & 0xffff0000u;
    vecf even, odd;
    memcpy(&even, &lo, sizeof even);
    memcpy(&odd, &hi, sizeof odd);
    return acc + even * vload(x_pairs) + odd * vload(x_pairs + VEC);
}

static inline vecf quad_dot(const int8_t *q, const float *x_quads, const float *scale, vecf acc) {
    vecu u;
    memcpy(&u, q, sizeof u);
    vecf sum = __builtin_convertvector((veci)(u << 24) >> 24, vecf) * vload(x_quads) +
               __builtin_convertvector((veci)(u << 16) >> 24, vecf) * vload(x_quads + VEC) +
               __builtin_convertvector((veci)(u << 8) >> 24, vecf) * vload(x_quads + 2 * VEC) +
               __builtin_convertvector((veci)u >> 24, vecf) * vload(x_quads + 3 * VEC);
    /* lane l holds weights 4l .. 4l + 3, of group 4l / Q8_GROUP: all lanes in one group, or (VEC 16,
     * 64 weights) the first 8 lanes in one and the last 8 in the next */
    vecf lane_scale = scale[0] + (vecf){0};
    if (4 * VEC > Q8_GROUP) {
        static const int32_t lane_id[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
        veci id, in_second;
        memcpy(&id, lane_id, sizeof id);
        in_second = id >= Q8_GROUP / 4;
        lane_scale = (vecf)(((veci)lane_scale & ~in_second) | ((veci)(scale[1] + (vecf){0}) & in_second));
    }
    return acc + sum * lane_scale;
}

#define PREFETCH_AHEAD 2048 /* bytes: the weights are one stream; ask for them this far ahead */
static inline void prefetch_ahead(const void *p) { /* the 4 cache lines PREFETCH_AHEAD bytes past p */
    for (int k = 0; k < 4; k++) __builtin_prefetch((const char *)p + PREFETCH_AHEAD + 64 * k);
}

static inline __attribute__((always_inline)) float dot_row(const float *x, const float *x_reordered, Matrix w, int n,
                                                           int TYPE) {
    const float *x_pairs = x_reordered, *x_quads = x_reordered;
    vecf acc[4] = {{0}, {0}, {0}, {0}};
    int j = 0;
    if (TYPE == WEIGHT_BF16) { /* 256 bytes of weights per round, as below */
        const uint16_t *w16 = w.data;
        for (; j + 8 * VEC <= n; j += 8 * VEC) {
            prefetch_ahead(w16 + j);
            for (int u = 0; u < 4; u++) acc[u] = pair_dot(w16 + j + u * 2 * VEC, x_pairs + j + u * 2 * VEC, acc[u]);
        }
        for (; j + 2 * VEC <= n; j += 2 * VEC) acc[0] = pair_dot(w16 + j, x_pairs + j, acc[0]);
    } else if (TYPE == WEIGHT_Q8) { /* 16 * VEC bytes of weights per round */
        const int8_t *q = w.data;
        for (; j + 16 * VEC <= n; j += 16 * VEC) {
            prefetch_ahead(q + j);
            for (int u = 0; u < 4; u++)
                acc[u] = quad_dot(q + j + u * 4 * VEC, x_quads + j + u * 4 * VEC,
                                  w.scale + (j + u * 4 * VEC) / Q8_GROUP, acc[u]);
        }
        for (; j + 4 * VEC <= n; j += 4 * VEC) acc[0] = quad_dot(q + j, x_quads + j, w.scale + j / Q8_GROUP, acc[0]);
        for (; j + VEC <= n; j += VEC) acc[1] += wload(w, (size_t)j, TYPE) * vload(x + j); /* whole groups: no tail */
    } else {
        for (; j + 4 * VEC <= n; j += 4 * VEC)
            for (int u = 0; u < 4; u++) acc[u] += wload(w, (size_t)j + u * VEC, TYPE) * vload(x + j + u * VEC);
        for (; j + VEC <= n; j += VEC) acc[0] += wload(w, (size_t)j, TYPE) * vload(x + j);
    }
    float s = vsum((acc[0] + acc[1]) + (acc[2] + acc[3]));
    for (; j < n; j++) s += wget(w, (size_t)j, TYPE) * x[j];
    return s;
}

/* x_pairs for dot_row: each run of 2 * VEC inputs as its even ones, then its odd ones:
 * [0 2 .. 30 | 1 3 .. 31 | 32 34 .. 62 | 33 ..]. The tail (n % (2 * VEC)) is not needed. */
static void pair_inputs(float *x_pairs, const float *x, int n) {
    for (int j = 0; j + 2 * VEC <= n; j += 2 * VEC)
        for (int k = 0; k < VEC; k++) { x_pairs[j + k] = x[j + 2 * k]; x_pairs[j + VEC + k] = x[j + 2 * k + 1]; }
}

/* x_quads, the same for q8: each run of 4 * VEC inputs as inputs 4l + k, k = 0..3 in turn, lane l:
 * [0 4 8 .. | 1 5 9 .. | 2 6 10 .. | 3 7 11 ..]. The tail (n % (4 * VEC)) is not needed. */
static void quad_inputs(float *x_quads, const float *x, int n) {
    for (int j = 0; j + 4 * VEC <= n; j += 4 * VEC)
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < VEC; l++) x_quads[j + k * VEC + l] = x[j + 4 * l + k];
}

/* block_tile, for blocks of tokens (the prompt): R weight rows x BLOCK_TILE_T tokens over inputs
 * [j0, j1), vectorised along the tokens, so no horizontal sums at all: each weight is broadcast and
 * multiplied into BLOCK_TILE_T tokens at once (BLOCK_TILE_V vectors x BLOCK_TILE_R rows of
 * accumulators, in registers). The accumulators continue from acc (R x BLOCK_TILE_V vectors) unless
 * j0 = 0, and are stored back there. xt is one token tile of the transposed block, (n, BLOCK_TILE_T). */
#define BLOCK_TILE_T (BLOCK_TILE_V * VEC)
static inline __attribute__((always_inline)) void block_tile(vecf *acc_io, const float *xt, Matrix w, int n, int i0,
                                                             int j0, int j1, int R, int TYPE) {
    vecf acc[BLOCK_TILE_R][BLOCK_TILE_V];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < BLOCK_TILE_V; v++) acc[r][v] = j0 ? acc_io[r * BLOCK_TILE_V + v] : (vecf){0};
    for (int j = j0; j < j1; j += VEC) {
        /* 16-bit and 8-bit weights: with WIDEN_AHEAD (model.h) the next VEC of each row are widened a
         * vector at a time into `wide`, then each is broadcast from there, rather than widened one by one */
        int m = min_int(VEC, j1 - j), ahead = WIDEN_AHEAD && TYPE != WEIGHT_F32 && m == VEC;
        float wide[BLOCK_TILE_R][VEC];
        for (int r = 0; r < R && ahead; r++) {
            vecf v = wload(w, (size_t)(i0 + r) * n + j, TYPE);
            memcpy(wide[r], &v, sizeof v);
        }
        for (int k = 0; k < m; k++) {
            vecf x[BLOCK_TILE_V];
            for (int v = 0; v < BLOCK_TILE_V; v++) x[v] = vload(xt + (size_t)(j + k) * BLOCK_TILE_T + v * VEC);
            for (int r = 0; r < R; r++) {
                float wr = ahead ? wide[r][k] : wget(w, (size_t)(i0 + r) * n + j + k, TYPE);
                for (int v = 0; v < BLOCK_TILE_V; v++) acc[r][v] += wr * x[v];
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int v = 0; v < BLOCK_TILE_V; v++) acc_io[r * BLOCK_TILE_V + v] = acc[r][v];
}

/* A chunk of rows [i0, i1) (at most BLOCK_ROWS) for the token tile starting at t0: the inputs go in
 * slices of BLOCK_J, so that the slice of the tile (BLOCK_J x BLOCK_TILE_T floats, contiguous: 128 KB
 * with AVX2, 512 KB with AVX-512) stays in L2 while every row of the chunk uses it. Slices this long
 * read each weight row as one long run, which the hardware prefetcher follows; slices of 64 inputs
 * (the slice in L1, 256-byte pieces of each row) were slower: on a Zen 4, 2 threads, 256 tokens,
 * 46-47 -> 52-54 G multiply-adds per second per thread (AVX2) for a (2048, 768) matrix not in cache,
 * 19 -> 42 for a (2048, 11008) one (7B-sized, re-read from memory for every token tile). */
#define BLOCK_ROWS (16 * BLOCK_TILE_R)
#define BLOCK_J 2048
static inline __attribute__((always_inline)) void block_rows(const Matmul *a, int i0, int i1, int t0, int TYPE) {
    vecf acc[BLOCK_ROWS * BLOCK_TILE_V];
    const float *tile = a->xt + (size_t)t0 * a->n;
    Matrix w = a->w;
    int n = a->n;
    for (int j0 = 0; j0 < n; j0 += BLOCK_J) {
        int j1 = min_int(j0 + BLOCK_J, n), i = i0;
        for (; i + BLOCK_TILE_R <= i1; i += BLOCK_TILE_R)
            block_tile(acc + (i - i0) * BLOCK_TILE_V, tile, w, n, i, j0, j1, BLOCK_TILE_R, TYPE);
        for (; i < i1; i++) block_tile(acc + (i - i0) * BLOCK_TILE_V, tile, w, n, i, j0, j1, 1, TYPE);
    }
    for (int k = 0; k < BLOCK_TILE_T && t0 + k < a->T; k++) { /* token by token: stores along a row of out */
        float *out = a->out + (size_t)(t0 + k) * a->d;
        for (int i = i0; i < i1; i++) {
            float sum = acc[(i - i0) * BLOCK_TILE_V + k / VEC][k % VEC];
            out[i] = a->add ? out[i] + sum : sum;
        }
    }
}

static inline __attribute__((always_inline)) void matmul_part(const Matmul *a, int thread, int n_threads, int TYPE) {
    size_t begin, end, i, n = (size_t)a->n;
    if (a->T >= BLOCK_MIN_TOKENS) {
        split((size_t)a->d, BLOCK_TILE_R, thread, n_threads, &begin, &end);
        for (int t0 = 0; t0 < a->T; t0 += BLOCK_TILE_T)
            for (i = begin; i < end; i += BLOCK_ROWS)
                block_rows(a, (int)i, (int)(i + BLOCK_ROWS < end ? i + BLOCK_ROWS : end), t0, TYPE);
        return;
    }
    split((size_t)a->d, DOT_TILE, thread, n_threads, &begin, &end);
    if (a->T == 1) { /* generation: one row at a time (one stream of weights is what prefetches best) */
        for (i = begin; i < end; i++) {
            float sum = dot_row(a->x, a->xt, matrix_at(a->w, i * n), a->n, TYPE);
            a->out[i] = a->add ? a->out[i] + sum : sum;
        }
        return;
    }
    for (i = begin; i + DOT_TILE <= end; i += DOT_TILE) { /* a few tokens: DOT_TILE rows x DOT_TILE tokens at a time */
        int t = 0;
        for (; t + DOT_TILE <= a->T; t += DOT_TILE) dot_tile(a, i, t, DOT_TILE, DOT_TILE, TYPE);
        for (; t < a->T; t++) dot_tile(a, i, t, DOT_TILE, 1, TYPE);
    }
    for (; i < end; i++)
        for (int t = 0; t < a->T; t++) dot_tile(a, i, t, 1, 1, TYPE);
}

/* q8 x q8. With q8 weights matmul quantizes its input too, once for all the products that share it, as
 * llama.cpp's Q8_0 x Q8_0 does: int8 in groups of Q8_GROUP with one float32 scale each, symmetric,
 * scale = max|x| / 127 and values round(x / scale) in [-127, 127] (quantize_q8). Then a group of 32
 * weights meets a group of 32 inputs in one int8 dot product (dot_i8, model.h: exact, in int32), which
 * is multiplied by the product of their two scales (-A f32 keeps the inputs in float32 instead, and
 * widens the weights: the kernels above, TYPE WEIGHT_Q8):
 *     out[t][i] = sum over groups g of w.scale[i][g] * x.scale[t][g] * sum_k wq[i][32g + k] * xq[t][32g + k]
 * q8_tile computes it for a few rows and tokens with dot_i8 (a group at a time; two with AVX-512, whose
 * 512-bit vpdpbusd or vpmaddubsw takes 64 bytes), or, for a block of BLOCK_MIN_TOKENS tokens or more,
 * eight groups at a time in the blocked layout (below); on CPUs with AMX, q8_amx computes it for 16 rows
 * and 16 tokens at once, for blocks of BLOCK_MIN_TOKENS tokens or more.
 * Widening every int8 weight to float32 instead (-A f32) costs about 20 instructions and 128 bytes of
 * inputs per 32 weights; vpmaddubsw does the 32 products in one. The activations' rounding (half a
 * step, max|x| / 254, per value) moves the shipped model's next-token distributions by a mean KL of
 * 1.5e-4 against float32 inputs on the same weights (docs/memory.md). */

/* Groups [g0, g1) of x (Q8_GROUP floats each) into q (int8) and scale (a float32 per group): scale =
 * max|x| / 127, q = x / scale rounded to nearest, ties to even (adding and subtracting 1.5 * 2^23 rounds
 * a float below 2^22 in magnitude to an integer, in the current rounding mode: nearest even, C's
 * default), clamped to [-127, 127] against a scale that lost bits (subnormal). x / scale, not
 * x * (1 / scale): below max|x| ~ 1e-36 the reciprocal overflows. An all-zero group gets scale 0 and q
 * 0 (so 0, never NaN, comes out); a group with an infinity or NaN in it gets q 0 and a scale of inf or
 * NaN, so that, as with float32 inputs, what it reaches is not finite either. */
static void quantize_q8(int8_t *q, float *scale, const float *x, size_t g0, size_t g1) {
    typedef int8_t vecb __attribute__((vector_size(VEC)));
    for (size_t g = g0; g < g1; g++) {
        const float *xg = x + g * Q8_GROUP;
        vecf max = {0};
        for (int k = 0; k < Q8_GROUP; k += VEC) { /* |x| > max, or NaN: NaN stays once in */
            vecf a = (vecf)((veci)vload(xg + k) & 0x7fffffff);
            veci take = (a > max) | (a != a);
            max = (vecf)(((veci)a & take) | ((veci)max & ~take));
        }
        float m = 0;
        for (int l = 0; l < VEC; l++) m = max[l] > m || max[l] != max[l] ? max[l] : m;
        float d = m / 127;
        scale[g] = d;
        for (int k = 0; k < Q8_GROUP; k += VEC) {
            vecb b = {0};
            if (d > 0 && d < INFINITY) {
                vecf v = vload(xg + k) / d;
                v = (v + 0x1.8p23f) - 0x1.8p23f;
                veci over = v > 127, under = v < -127;
                v = (vecf)(((veci)v & ~(over | under)) | ((veci)((vecf){0} + 127) & over) |
                           ((veci)((vecf){0} - 127) & under));
                b = __builtin_convertvector(v, vecb);
            }
            memcpy(q + g * Q8_GROUP + k, &b, sizeof b);
        }
    }
}

/* What matmul computes for q8 weights, plainly: x quantized by quantize_q8, then for each token and row
 * the int8 products of each group summed exactly (int32), times the two scales, summed over groups. */
void matmul_q8_reference(float *out, const float *x, Matrix w, int T, int n, int d) {
    int groups = n / Q8_GROUP;
    int8_t *xq = xcalloc((size_t)T * n, 1);
    float *xs = xcalloc((size_t)T * groups, sizeof(float));
    quantize_q8(xq, xs, x, 0, (size_t)T * groups);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < d; i++) {
            float sum = 0;
            for (int g = 0; g < groups; g++) {
                int32_t dot = 0;
                for (int k = g * Q8_GROUP; k < (g + 1) * Q8_GROUP; k++)
                    dot += ((const int8_t *)w.data)[(size_t)i * n + k] * xq[(size_t)t * n + k];
                sum += (float)dot * (w.scale[(size_t)i * groups + g] * xs[(size_t)t * groups + g]);
            }
            out[(size_t)t * d + i] = sum;
        }
    free(xq);
    free(xs);
}

/* q8's blocked layout, for the prompt. Where many tokens meet the same weights, q8_tile takes both in
 * blocks of Q8_BLOCK = 8 groups (256 bytes): byte b of the block's group j at 32 * (b / 4) + 4 * j + b % 4,
 * so that each 32 bytes hold 4 bytes of each of the 8 groups, and dot_i8's lane j (model.h) gathers group
 * j's products alone. A group's 8 pieces are then summed in int32 lane by lane, and only each block, not
 * each group, is converted to float and multiplied by its 8 products of two scales at once (one vector,
 * read from memory): per group and output, the plain layout's convert, broadcast and multiply-add become
 * an integer add. A row's last groups (n / Q8_GROUP % Q8_BLOCK of them) stay as they are, so a row keeps
 * its n bytes. The weights stay in the file's plain layout; each thread copies the rows it is about to
 * use, Q8_ROWS_BYTES at most, into this layout (q8_block_rows, rounded_part), and that copy serves every
 * token of matmul's block. History (a Zen 4, 2 threads, 2026-12-07, 3 alternated pairs, a q8 prompt of 996 tokens):
 * TinyLlama 1.1B's shape 78-84 -> 94-96 tok/s with AVX2, 78-91 -> 93-104 with AVX-512; stories110M's
 * 726-798 -> 796-882 with AVX2; SSE2 (whose pmaddwd sums pairs, not fours) 317-335 -> 341-354. */
#define Q8_ROWS_BYTES (1 << 18) /* bytes of a thread's copy of rows in the blocked layout: on its stack, in L2 */
/* The rows of n values that copy holds, in whole tiles of Q8_TILE_R (0: not one tile). */
static size_t q8_copy_rows(int n) { return Q8_ROWS_BYTES / (size_t)n / Q8_TILE_R * Q8_TILE_R; }

/* rows rows of n int8 values (a row every n bytes), from the plain layout in src to the blocked in dst. */
static void q8_block_rows(int8_t *dst, const int8_t *src, int rows, int n) {
    int in_blocks = n / Q8_GROUP / Q8_BLOCK * Q8_BLOCK; /* the groups in whole blocks */
    for (int r = 0; r < rows; r++) {
        int8_t *to = dst + (size_t)r * n;
        const int8_t *from = src + (size_t)r * n;
        for (int g = 0; g < in_blocks; g++) {
            int8_t *block = to + (size_t)(g - g % Q8_BLOCK) * Q8_GROUP;
            for (int b = 0; b < Q8_GROUP; b += 4) /* bytes b to b + 3 of group g: the block's (b / 4)-th 32 */
                memcpy(block + 8 * b + 4 * (g % Q8_BLOCK), from + (size_t)g * Q8_GROUP + b, 4);
        }
        size_t rest = (size_t)in_blocks * Q8_GROUP; /* the last groups, as they are */
        memcpy(to + rest, from + rest, (size_t)n - rest);
    }
}

/* q8_tile: out[t + c][i + r] for R weight rows and C tokens (R <= Q8_TILE_R, C <= Q8_TILE_C), each
 * output's sum kept as dot_i8's 8 x Q8_STEP lanes of floats. wq: row i's int8 values, the next row n
 * bytes on; xq: token t's, likewise; both in the plain layout, or both in the blocked one (BLOCKED). A
 * unit is Q8_STEP groups of the plain layout, or a block of the blocked one (whose last groups, short of
 * a block, are plain units). A unit's int8 products are summed exactly in int32 (a lane holds a group's
 * 32 at most: below 32 * 128 * 127 < 2^24 in magnitude, so it converts to float exactly), converted,
 * times their groups' two scales (q8_lane_scales, q8_block_scales), and added up; the lanes are summed
 * at the end. One row and one token (generation) keep U = 4 independent sums, a unit each in turn, so
 * that each multiply-add need not wait for the one before it, and ask for the weights PREFETCH_AHEAD
 * bytes on, as dot_row does; 2 or 3 outputs keep 2 or 1 each; a full tile's R x C outputs are
 * independent already. Called with constant R, C and BLOCKED.
 * The products of two scales (a row's times a token's, per group) are made first, Q8_CHUNK groups at a
 * time, into memory: vector multiplies along the groups, outside the loop of int8 products, which loads
 * them (a broadcast per group, or a vector per block). Made in the loop, group by group, they cost it
 * (AVX2, a 2 x 4 tile) two multiplies beside the int8 products' and 17 inserts and shuffles a step, to
 * gather the tokens' scales and broadcast each product. History, TinyLlama 1.1B's shape, a q8 prompt, 2
 * threads: on a Xeon with AVX2, a multiply per output -> a vector multiply per row and group in the
 * loop, 60 -> 68 tok/s; with AVX-512 (no AMX), one group a step -> two, 84-86 -> 91-93; on a Zen 4 with
 * AVX2 (2026-12-07), the products made first: 62 -> 70 tok/s (medians of 4 pairs; the loop alone on
 * data in L1, 6.07 -> 5.33 ns a step of 2 rows x 4 tokens), and with AVX-512 no change (9.47 -> 9.52 ns
 * a step of 4 x 4 x 2 groups). */
#define Q8_CHUNK 64 /* groups whose products of scales q8_tile makes at a time (4 KB at most: in L1) */
_Static_assert(Q8_CHUNK % Q8_BLOCK == 0 && Q8_BLOCK % Q8_STEP == 0, "a chunk holds whole blocks, a block whole steps");
/* One unit: groups [g, g + k) of R rows and C tokens into acc; k = Q8_STEP, or fewer at a row's end,
 * or a block (BLOCKED). scale[r][c][j]: row r's scale times token c's, for group j of the chunk that g
 * is in (q8_tile). */
static inline __attribute__((always_inline)) void q8_unit(f32xstep acc[Q8_TILE_R][Q8_TILE_C], const int8_t *wq,
                                                          const int8_t *xq, size_t stride,
                                                          const float scale[Q8_TILE_R][Q8_TILE_C][Q8_CHUNK],
                                                          int g, int j, int k, int R, int C, int BLOCKED) {
    i32xstep dot[Q8_TILE_R][Q8_TILE_C];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) dot[r][c] = (i32xstep){0};
    for (int step = 0; step < (BLOCKED ? Q8_BLOCK / Q8_STEP : 1); step++) {
        size_t at = (size_t)(g + step * Q8_STEP) * Q8_GROUP; /* a block starts at group g's place, 32 * g */
        for (int r = 0; r < R; r++) {
            Q8Weights row = q8_weights(wq + r * stride + at, BLOCKED ? Q8_STEP : k);
            for (int c = 0; c < C; c++) {
                i32xstep d;
                dot_i8(&d, row, xq + c * stride + at, BLOCKED ? Q8_STEP : k);
                dot[r][c] += d;
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            f32xstep lane_scales;
            if (BLOCKED) q8_block_scales(&lane_scales, &scale[r][c][j]);
            else q8_lane_scales(&lane_scales, &scale[r][c][j], k);
            acc[r][c] += __builtin_convertvector(dot[r][c], f32xstep) * lane_scales;
        }
}
static inline __attribute__((always_inline)) void q8_tile(const Matmul *a, const int8_t *wq, const int8_t *xq,
                                                          size_t i, int t, int R, int C, int BLOCKED) {
    int n = a->n, groups = n / Q8_GROUP, U = R * C >= 4 ? 1 : 4 / (R * C);
    int in_blocks = BLOCKED ? groups / Q8_BLOCK * Q8_BLOCK : 0; /* the groups in whole blocks */
    const float *wscale = a->w.scale + i * groups, *xscale = a->xq.scale + (size_t)t * groups;
    f32xstep acc[4][Q8_TILE_R][Q8_TILE_C];
    float scale[Q8_TILE_R][Q8_TILE_C][Q8_CHUNK]; /* (row, token, group of the chunk) */
    for (int u = 0; u < U; u++)
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++) acc[u][r][c] = (f32xstep){0};
    for (int g0 = 0; g0 < groups; g0 += Q8_CHUNK) {
        int g1 = min_int(g0 + Q8_CHUNK, groups), g = g0;
        for (int r = 0; r < R; r++) /* the chunk's products of two scales, before its int8 products */
            for (int c = 0; c < C; c++)
                for (int j = 0; j < g1 - g0; j++)
                    scale[r][c][j] = wscale[(size_t)r * groups + g0 + j] * xscale[(size_t)c * groups + g0 + j];
        for (; g + Q8_BLOCK <= min_int(g1, in_blocks); g += Q8_BLOCK)
            q8_unit(acc[0], wq, xq, (size_t)n, scale, g, g - g0, Q8_BLOCK, R, C, 1);
        for (; g + U * Q8_STEP <= g1; g += U * Q8_STEP) {
            if (U == 4) prefetch_ahead(wq + (size_t)g * Q8_GROUP);
            for (int u = 0; u < U; u++)
                q8_unit(acc[u], wq, xq, (size_t)n, scale, g + u * Q8_STEP, g - g0 + u * Q8_STEP, Q8_STEP, R, C, 0);
        }
        for (; g < g1; g += Q8_STEP)
            q8_unit(acc[0], wq, xq, (size_t)n, scale, g, g - g0, min_int(Q8_STEP, g1 - g), R, C, 0);
    }
    float *out = a->out + (size_t)t * a->d + i;
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            f32xstep all = acc[0][r][c];
            for (int u = 1; u < U; u++) all += acc[u][r][c];
            float sum[8];
            for (int l = 0; l < 8; l++) sum[l] = all[l];
            for (int l = 8; l < 8 * Q8_STEP; l++) sum[l % 8] += all[l];
            float s = ((sum[0] + sum[4]) + (sum[1] + sum[5])) + ((sum[2] + sum[6]) + (sum[3] + sum[7]));
            out[(size_t)c * a->d + r] = a->add ? out[(size_t)c * a->d + r] + s : s;
        }
}

#ifdef RAZOR_AMX
/* q8 x q8 on AMX. Eight tile registers of up to 16 rows x 64 bytes; tdpbssd C += A B multiplies a tile
 * A of 16 rows x 32 int8 (here: 16 weight rows, one group) by a tile B of 8 rows x 64 int8 (16 tokens'
 * same group, each row holding 4 consecutive bytes of every token in turn) into C, 16 x 16 exact int32
 * sums: 8192 products in one instruction. Each group's sums are stored, converted and multiplied by
 * the two scales, as q8_tile does with dot_i8's. Linux hands the tile registers out only on request,
 * once per process (amx_granted); each thread then states the tiles' shapes (amx_configure). */
#include <immintrin.h>
#include <sys/syscall.h>
_Static_assert(VEC == 16 && BLOCK_TILE_T % 16 == 0, "AMX: a vector holds a row of C, and matmul_padded(T) is T "
               "rounded up to 16 or more, for xt's packed copy");
static int amx_granted(void) { /* ARCH_REQ_XCOMP_PERM (0x1023) for XFEATURE_XTILEDATA (18); process-wide */
    static int granted = -1; /* asked by the thread that calls matmul (one at a time) */
    if (granted < 0) granted = syscall(SYS_arch_prctl, 0x1023UL, 18UL) == 0;
    return granted;
}

static void amx_configure(void) {
    struct { uint8_t palette, start_row, reserved[14]; uint16_t colsb[16]; uint8_t rows[16]; }
        __attribute__((aligned(64))) config = {.palette = 1};
    config.rows[0] = 16, config.colsb[0] = 64; /* C: 16 rows x 16 tokens, int32 */
    config.rows[1] = 16, config.colsb[1] = 32; /* A: 16 weight rows x one group */
    config.rows[2] = 8, config.colsb[2] = 64;  /* B: 16 tokens' group, 4 bytes of each per row */
    _tile_loadconfig(&config);
}

/* xq (T, n) into B's layout: xtiles.data (T / 16 rounded up, groups, 8, 16, 4), byte 4r + j of token
 * 16b + c's group g at [b][g][r][c][j]; xtiles.scale (T / 16 rounded up, groups, 16). Tokens past T
 * are 0, with scale 0. Each thread takes whole blocks of 16 tokens. */
typedef struct { Matrix xtiles, xq; int T, n; } AmxPack;
static void amx_pack_task(void *arg, int thread, int n_threads) {
    const AmxPack *a = arg;
    size_t begin, end, n = (size_t)a->n, groups = n / Q8_GROUP, T = (size_t)a->T;
    const int8_t *xq = a->xq.data;
    int8_t *tiles = (int8_t *)a->xtiles.data;
    float *scales = (float *)a->xtiles.scale;
    split((T + 15) / 16, 1, thread, n_threads, &begin, &end);
    for (size_t b = begin; b < end; b++)
        for (size_t g = 0; g < groups; g++) {
            int8_t *tile = tiles + (b * groups + g) * 512;
            for (size_t c = 0, t = 16 * b; c < 16; c++, t++) {
                scales[(b * groups + g) * 16 + c] = t < T ? a->xq.scale[t * groups + g] : 0;
                for (int k = 0; k < Q8_GROUP; k++)
                    tile[k / 4 * 64 + c * 4 + k % 4] = t < T ? xq[t * n + g * Q8_GROUP + k] : 0;
            }
        }
}

/* out[16b + c][i + r] for the 16 rows from i and the 16 tokens of block b (those below T) */
static void q8_amx(const Matmul *a, size_t i, size_t b) {
    size_t n = (size_t)a->n, groups = n / Q8_GROUP;
    const int8_t *w = (const int8_t *)a->w.data + i * n, *tiles = (const int8_t *)a->xtiles.data + b * groups * 512;
    const float *wscale = a->w.scale + i * groups, *xscale = a->xtiles.scale + b * groups * 16;
    vecf acc[16] = {{0}};
    int32_t dots[16][16] __attribute__((aligned(64)));
    for (size_t g = 0; g < groups; g++) {
        _tile_zero(0);
        _tile_loadd(1, w + g * Q8_GROUP, n);
        _tile_loadd(2, tiles + g * 512, 64);
        _tile_dpbssd(0, 1, 2); /* dots[r][c] = sum over k of w[i + r][32g + k] * xq[16b + c][32g + k] */
        _tile_stored(0, dots, 64);
        vecf xs = vload(xscale + g * 16);
        for (int r = 0; r < 16; r++) {
            veci dot;
            memcpy(&dot, dots[r], sizeof dot);
            acc[r] += __builtin_convertvector(dot, vecf) * (xs * wscale[r * groups + g]);
        }
    }
    float *out = a->out + 16 * b * a->d + i;
    for (size_t c = 0; c < 16 && 16 * b + c < (size_t)a->T; c++)
        for (int r = 0; r < 16; r++) out[c * a->d + r] = a->add ? out[c * a->d + r] + acc[r][c] : acc[r][c];
}

/* A thread's share of a q8 product on AMX: 64 rows at a time (their weights stay in L2) meet each block
 * of 16 tokens in turn; the rows past the last whole 16, if any, go to q8_tile. */
static void q8_amx_part(const Matmul *a, int thread, int n_threads) {
    size_t begin, end, rows = (size_t)a->d / 16 * 16, blocks = ((size_t)a->T + 15) / 16;
    split(rows, 16, thread, n_threads, &begin, &end);
    amx_configure();
    for (size_t i0 = begin; i0 < end; i0 += 64)
        for (size_t b = 0; b < blocks; b++)
            for (size_t i = i0; i < i0 + 64 && i < end; i += 16) q8_amx(a, i, b);
    _tile_release();
    split((size_t)a->d - rows, 1, thread, n_threads, &begin, &end);
    for (int t = 0; t < a->T; t++)
        for (size_t i = rows + begin; i < rows + end; i++)
            q8_tile(a, (const int8_t *)a->w.data + i * a->n, (const int8_t *)a->xq.data + (size_t)t * a->n, i, t,
                    1, 1, 0);
}
#endif

#ifdef RAZOR_BF16_DOT
/* bf16 x bf16. Where the CPU has AVX512-BF16 (model.h), bf16 weights meet inputs rounded to bf16 as
 * well, as llama.cpp's BF16 does: matmul rounds x (T, n) once (round_bf16_task: to nearest, ties to even),
 * and vdpbf16ps multiplies 32 of a row's weights by 32 of a token's inputs, in pairs, each pair's two
 * products (exact in float32) added to a float32 lane:
 *     out[t][i] = sum over j of w[i][j] * bf16(x[t][j])
 * One instruction per 32 weights and token, where widening the weights takes four (a shift or a mask,
 * and a multiply-add per 16). The instruction treats subnormal inputs and results as zero. bf16_tile is
 * q8_tile's shape for it: R rows x C tokens, one zmm sum each, and for one row and one token U = 4 sums
 * in turn. Unlike dot_row and q8_tile it asks for no weights ahead: on a Zen 4 (2 threads, TinyLlama
 * 1.1B's shape, 2026-12-06) generation was faster without (medians 19 against 16.5 tok/s; the host's
 * memory was noisy). What rounding the inputs costs in accuracy: docs/memory.md. */
typedef struct { uint16_t *xb; const float *x; size_t n; } RoundBf16;
static void round_bf16_task(void *arg, int thread, int n_threads) { /* x's n numbers, 32 at a time */
    const RoundBf16 *a = arg;
    size_t begin, end, j;
    split(a->n, 32, thread, n_threads, &begin, &end);
    /* vcvtne2ps2bf16 rounds as f32_to_bf16 does (NaN stays NaN), but subnormals go to 0, as vdpbf16ps
     * reads them anyway */
    for (j = begin; j + 32 <= end; j += 32) {
        __m512bh pair = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(a->x + j + 16), _mm512_loadu_ps(a->x + j));
        _mm512_storeu_si512(a->xb + j, (__m512i)pair);
    }
    for (; j < end; j++) a->xb[j] = f32_to_bf16(a->x[j]);
}

/* 32 bf16 numbers from p, those past a row's end (mask) 0 */
static inline __m512i bf16_load(const uint16_t *p, __mmask32 mask) {
    return mask == 0xffffffffu ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi16(mask, p);
}
/* 32 inputs from j (fewer at a row's end: mask) of R rows and C tokens into acc */
static inline __attribute__((always_inline)) void bf16_step(__m512 acc[BF16_TILE_R][BF16_TILE_C], const uint16_t *w,
                                                            const uint16_t *x, int n, int j, __mmask32 mask, int R,
                                                            int C) {
    __m512i xv[BF16_TILE_C];
    for (int c = 0; c < C; c++) xv[c] = bf16_load(x + (size_t)c * n + j, mask);
    for (int r = 0; r < R; r++) {
        __m512i wv = bf16_load(w + (size_t)r * n + j, mask);
        for (int c = 0; c < C; c++) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], (__m512bh)wv, (__m512bh)xv[c]);
    }
}
/* out[t + c][i + r] for R weight rows and C tokens (R <= BF16_TILE_R, C <= BF16_TILE_C) */
static inline __attribute__((always_inline)) void bf16_tile(const Matmul *a, size_t i, int t, int R, int C) {
    int n = a->n, U = R * C >= 4 ? 1 : 4 / (R * C), j = 0;
    const uint16_t *w = (const uint16_t *)a->w.data + i * (size_t)n, *x = a->xb + (size_t)t * n;
    __m512 acc[4][BF16_TILE_R][BF16_TILE_C];
    for (int u = 0; u < U; u++)
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++) acc[u][r][c] = _mm512_setzero_ps();
    for (; j + 32 * U <= n; j += 32 * U)
        for (int u = 0; u < U; u++) bf16_step(acc[u], w, x, n, j + 32 * u, 0xffffffffu, R, C);
    for (; j < n; j += 32) bf16_step(acc[0], w, x, n, j, n - j >= 32 ? 0xffffffffu : (1u << (n - j)) - 1, R, C);
    float *out = a->out + (size_t)t * a->d + i;
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            __m512 all = acc[0][r][c];
            for (int u = 1; u < U; u++) all = _mm512_add_ps(all, acc[u][r][c]);
            float s = _mm512_reduce_add_ps(all);
            out[(size_t)c * a->d + r] = a->add ? out[(size_t)c * a->d + r] + s : s;
        }
}
#endif

/* A tile of a product whose inputs are rounded to its weights' type: q8 (q8_tile; wq: row i's weights, in
 * the layout BLOCKED says) or bf16 (bf16_tile) */
static inline __attribute__((always_inline)) void rounded_tile(const Matmul *a, const int8_t *wq, size_t i, int t,
                                                               int R, int C, int TYPE, int BLOCKED) {
#ifdef RAZOR_BF16_DOT
    if (TYPE == WEIGHT_BF16) {
        bf16_tile(a, i, t, R, C);
        return;
    }
#endif
    (void)TYPE;
    q8_tile(a, wq, (BLOCKED ? a->xblocked : (const int8_t *)a->xq.data) + (size_t)t * a->n, i, t, R, C, BLOCKED);
}

/* Rows [i0, i1) for the tokens [t, t + C): R rows at a time, then one by one. rows: row i0's q8 weights. */
static inline __attribute__((always_inline)) void rounded_rows(const Matmul *a, const int8_t *rows, size_t i0,
                                                               size_t i1, int t, int R, int C, int TYPE, int BLOCKED) {
    size_t i = i0, n = (size_t)a->n;
    for (; i + (size_t)R <= i1; i += (size_t)R) rounded_tile(a, rows + (i - i0) * n, i, t, R, C, TYPE, BLOCKED);
    for (; i < i1; i++) rounded_tile(a, rows + (i - i0) * n, i, t, 1, C, TYPE, BLOCKED);
}

/* A thread's share of the rows of a product with rounded inputs (q8, or bf16 pairs). One token: a row at
 * a time (one stream of weights, as for dot_row). More: rows BLOCK_ROWS at a time, whose weights
 * (BLOCK_ROWS x n bytes for q8: 192 KB for n = 2048; twice that for bf16) stay in L2 while every tile of
 * C tokens passes them (their inputs: C x n bytes for q8, in L1; 2 x BF16_TILE_C x n for bf16, in L1 or
 * L2). With q8 inputs in the blocked layout (matmul chose it), the rows are first copied into it, fewer
 * at a time where BLOCK_ROWS of them would not fit Q8_ROWS_BYTES. */
static inline __attribute__((always_inline)) void rounded_part(const Matmul *a, int thread, int n_threads, int TYPE) {
    size_t begin, end, n = (size_t)a->n, at_once = BLOCK_ROWS;
    int R = Q8_TILE_R, C = Q8_TILE_C, blocked = TYPE == WEIGHT_Q8 && a->xblocked; /* q8's blocked layout */
#ifdef RAZOR_AMX
    if (TYPE == WEIGHT_Q8 && a->xtiles.data) {
        q8_amx_part(a, thread, n_threads);
        return;
    }
#endif
#ifdef RAZOR_BF16_DOT
    if (TYPE == WEIGHT_BF16) R = BF16_TILE_R, C = BF16_TILE_C;
#endif
    split((size_t)a->d, (size_t)R, thread, n_threads, &begin, &end);
    if (a->T == 1) {
        for (size_t i = begin; i < end; i++) rounded_tile(a, (const int8_t *)a->w.data + i * n, i, 0, 1, 1, TYPE, 0);
        return;
    }
    int8_t copy[blocked ? Q8_ROWS_BYTES : 1] __attribute__((aligned(64))); /* (at_once, n): rows, blocked */
    if (blocked && q8_copy_rows(a->n) < at_once) at_once = q8_copy_rows(a->n); /* >= R: matmul checked */
    for (size_t i0 = begin; i0 < end; i0 += at_once) {
        size_t i1 = i0 + at_once < end ? i0 + at_once : end;
        const int8_t *rows = (const int8_t *)a->w.data + i0 * n; /* q8: row i0's weights */
        if (blocked) {
            q8_block_rows(copy, rows, (int)(i1 - i0), a->n);
            rows = copy;
        }
        int t = 0; /* BLOCKED a constant in each call, for q8_tile */
        for (; t + C <= a->T; t += C)
            blocked ? rounded_rows(a, rows, i0, i1, t, R, C, TYPE, 1) : rounded_rows(a, rows, i0, i1, t, R, C, TYPE, 0);
        for (; t < a->T; t++)
            blocked ? rounded_rows(a, rows, i0, i1, t, R, 1, TYPE, 1) : rounded_rows(a, rows, i0, i1, t, R, 1, TYPE, 0);
    }
}

typedef struct { Matmul mat[3]; int n; } Matmuls;
static void matmul_task(void *arg, int thread, int n_threads) {
    const Matmuls *a = arg;
    for (int k = 0; k < a->n; k++) {
#ifdef RAZOR_BF16_DOT
        if (a->mat[k].xb) rounded_part(&a->mat[k], thread, n_threads, WEIGHT_BF16);
        else
#endif
        if (a->mat[k].w.type == WEIGHT_BF16) matmul_part(&a->mat[k], thread, n_threads, WEIGHT_BF16);
        else if (a->mat[k].w.type == WEIGHT_Q8 && !f32_inputs) rounded_part(&a->mat[k], thread, n_threads, WEIGHT_Q8);
        else if (a->mat[k].w.type == WEIGHT_Q8) matmul_part(&a->mat[k], thread, n_threads, WEIGHT_Q8);
        else matmul_part(&a->mat[k], thread, n_threads, WEIGHT_F32);
    }
}

static int matmul_padded(int T) { return (T + BLOCK_TILE_T - 1) / BLOCK_TILE_T * BLOCK_TILE_T; }

typedef struct { float *xt; const float *x; int T, n; } Transpose;
static void transpose_task(void *arg, int thread, int n_threads) {
    const Transpose *a = arg;
    size_t begin, end, n = (size_t)a->n;
    split((size_t)matmul_padded(a->T) / BLOCK_TILE_T, 1, thread, n_threads, &begin, &end);
    for (size_t tile = begin; tile < end; tile++) {
        float *xt = a->xt + tile * BLOCK_TILE_T * n;
        for (size_t j0 = 0; j0 < n; j0 += 16) /* 16 inputs at a time: whole cache lines in and out */
            for (size_t k = 0; k < BLOCK_TILE_T; k++) {
                size_t t = tile * BLOCK_TILE_T + k;
                for (size_t j = j0; j < j0 + 16 && j < n; j++)
                    xt[j * BLOCK_TILE_T + k] = t < (size_t)a->T ? a->x[t * n + j] : 0;
            }
    }
}

/* Before the matmuls of a block: x (T, n) transposed tile by tile for block_tile, token t, input j at
 * xt[t / BLOCK_TILE_T][j][t % BLOCK_TILE_T], i.e. (matmul_padded(T) / BLOCK_TILE_T, n, BLOCK_TILE_T),
 * the padding tokens zero. Each tile is contiguous, so a slice of it fills L1 without set conflicts.
 * Below BLOCK_MIN_TOKENS tokens matmul reads x itself and this does nothing. */
static void transpose_block(float *xt, const float *x, int T, int n) {
    Transpose a = {xt, x, T, n};
    if (T >= BLOCK_MIN_TOKENS) pool_run(transpose_task, &a);
}

/* Before the matmuls of q8 weights: x (T, n) quantized (quantize_q8), on all threads for a block. */
typedef struct { Matrix xq; const float *x; size_t groups; } Quantize;
static void quantize_task(void *arg, int thread, int n_threads) {
    const Quantize *a = arg;
    size_t begin, end;
    split(a->groups, 1, thread, n_threads, &begin, &end);
    quantize_q8((int8_t *)a->xq.data, (float *)a->xq.scale, a->x, begin, end);
}

/* ... and, for q8's blocked layout, copied into it: xq (T, n) to xblocked (T, n), each thread a share of
 * the tokens (q8_block_rows). */
typedef struct { int8_t *xblocked; const int8_t *xq; int T, n; } BlockQ8;
static void block_q8_task(void *arg, int thread, int n_threads) {
    const BlockQ8 *a = arg;
    size_t begin, end;
    split((size_t)a->T, 1, thread, n_threads, &begin, &end);
    q8_block_rows(a->xblocked + begin * a->n, a->xq + begin * a->n, (int)(end - begin), a->n);
}

/* For each of the n products (at most 3): out (T, d) = x (T, n) @ w (d, n)^T, or out += with add
 * (matmul_reference, section 3; matmul_q8_reference for q8 weights). Every weight row is read once for
 * the whole block of T tokens; the products share x and one trip through the thread pool. xt: scratch
 * of (n, matmul_padded(T)) floats, where x goes transposed tile by tile (transpose_block), or, for one
 * token with bf16 (but for the next case) or (-A f32) q8 weights, reordered as pair_inputs or
 * quad_inputs orders it, or, with bf16 weights where the CPU multiplies bf16 pairs, rounded to bf16
 * (T x n of them), or, with q8 weights (all products share the file's type), quantized: T x n int8
 * values, then T x n / Q8_GROUP scales, then from the next 64-byte boundary on AMX for 16 tokens or
 * more the same in tdpbssd's layout (amx_pack_task, with T rounded up to 16), or elsewhere for
 * BLOCK_MIN_TOKENS or more the values again in q8's blocked layout (T x n), where a row holds a block
 * (n >= 256) and Q8_TILE_R rows fit a thread's copy (q8_copy_rows). */
void matmul(const float *x, float *xt, int T, int n, const Product *products, int n_products) {
    Matmuls a = {.n = n_products};
    Quantize q = {{xt, xt + (size_t)T * n / 4, WEIGHT_Q8, (size_t)T * n}, x, (size_t)T * n / Q8_GROUP};
    Matrix xtiles = {NULL, NULL, WEIGHT_Q8, 0};
    const uint16_t *xb = NULL;
    const int8_t *xblocked = NULL;
#ifdef RAZOR_BF16_DOT
    RoundBf16 rounding = {(uint16_t *)xt, x, (size_t)T * n};
    if (products[0].w.type == WEIGHT_BF16 && !f32_inputs) {
        if (T >= BLOCK_MIN_TOKENS) pool_run(round_bf16_task, &rounding);
        else round_bf16_task(&rounding, 0, 1);
        xb = rounding.xb;
    } else
#endif
    if (products[0].w.type == WEIGHT_Q8 && !f32_inputs) {
        if (T >= BLOCK_MIN_TOKENS) pool_run(quantize_task, &q);
        else quantize_task(&q, 0, 1);
        float *after = (float *)(((uintptr_t)(xt + (size_t)T * n / 4 + q.groups) + 63) & ~(uintptr_t)63);
#ifdef RAZOR_AMX
        size_t padded = ((size_t)T + 15) / 16 * 16;
        AmxPack pack = {{after, after + padded * n / 4, WEIGHT_Q8, padded * n}, q.xq, T, n};
        if (T >= BLOCK_MIN_TOKENS && amx_granted()) {
            pool_run(amx_pack_task, &pack);
            xtiles = pack.xtiles;
        }
#endif
        BlockQ8 blocking = {(int8_t *)after, q.xq.data, T, n};
        int fits = n >= Q8_BLOCK * Q8_GROUP && q8_copy_rows(n) > 0; /* a row holds a block; the copy a tile */
        if (!xtiles.data && T >= BLOCK_MIN_TOKENS && fits) {
            pool_run(block_q8_task, &blocking);
            xblocked = blocking.xblocked;
        }
    } else {
        transpose_block(xt, x, T, n);
    }
    for (int k = 0; k < n_products; k++)
        a.mat[k] = (Matmul){.out = products[k].out, .x = x, .xt = xt, .xq = q.xq, .xtiles = xtiles,
                            .xblocked = xblocked, .xb = xb, .w = products[k].w, .T = T, .n = n,
                            .d = products[k].d, .add = products[k].add};
    if (T == 1 && products[0].w.type == WEIGHT_BF16 && !xb) pair_inputs(xt, x, n);
    if (T == 1 && products[0].w.type == WEIGHT_Q8 && f32_inputs) quad_inputs(xt, x, n);
    pool_run(matmul_task, &a);
}

static inline vecf vmax(vecf a, vecf b) {
    veci a_wins = a > b;
    return (vecf)(((veci)a & a_wins) | ((veci)b & ~a_wins));
}
static inline float hmax(vecf v) { /* the largest lane, by a tree like vsum's */
    float a[VEC];
    memcpy(a, &v, sizeof a);
    for (int width = VEC / 2; width > 0; width /= 2)
        for (int k = 0; k < width; k++) a[k] = a[k] > a[k + width] ? a[k] : a[k + width];
    return a[0];
}

/* exp of each lane: exp(x) = 2^k * e^r with k = round(x / ln 2), a degree-6 polynomial for e^r
 * (Cephes' expf, ~1e-7 relative error). Lanes below -87.3 (e^x under FLT_MIN), -inf included, give 0. */
static inline vecf vexp(vecf x) {
    veci live = x >= -87.3f;
    x = (vecf)(((veci)x & live) | ((veci)((vecf){0} - 87.3f) & ~live));
    vecf k = (x * 1.44269504f + 12582912.0f) - 12582912.0f; /* round to nearest */
    vecf r = x - k * 0.693359375f + k * 2.12194440e-4f;
    vecf p = 1.9875691500e-4f + (vecf){0};
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    vecf y = p * r * r + r + 1.0f;
    veci two_k = (__builtin_convertvector(k, veci) + 127) << 23;
    return (vecf)((veci)(y * (vecf)two_k) & live);
}

/* SwiGLU: hb = silu(hb) * hb2, silu(v) = v / (1 + e^-v), VEC at a time. */
static void swiglu(float *hb, const float *hb2, size_t n) {
    size_t i = 0;
    for (; i + VEC <= n; i += VEC) {
        vecf v = vload(hb + i), e = vexp(-vmax(v, (vecf){0} - 87.0f)); /* e^-v, kept finite */
        vecf out = v / (1.0f + e) * vload(hb2 + i);
        memcpy(hb + i, &out, sizeof out);
    }
    swiglu_reference(hb + i, hb2 + i, n - i); /* the last n % VEC */
}

/* Keys and values as the attention loop reads them: float32, or 16-bit (-K) widened VEC at a time.
 * bfloat16 widens with a shift (widen_bf16); an IEEE half by moving its exponent and mantissa into
 * place and multiplying by 2^112, which rebiases the exponent from 15 to 127 and gets subnormal
 * halves right too; the sign is put back, and inf/NaN get float32's all-ones exponent. */
static inline vecf widen_f16(const uint16_t *p) {
    vecu u = widen_u16(p), magnitude = (u & 0x7fff) << 13, bits;
    vecf f;
    memcpy(&f, &magnitude, sizeof f);
    f *= 0x1p112f;
    memcpy(&bits, &f, sizeof bits);
    bits |= (vecu)((u & 0x7c00) == 0x7c00) & 0x7f800000u;
    bits |= (u & 0x8000) << 16;
    memcpy(&f, &bits, sizeof f);
    return f;
}
static inline vecf kvload(const void *p, size_t i, int KVT) { /* numbers i .. i + VEC - 1 */
    if (KVT == KV_BF16) return widen_bf16((const uint16_t *)p + i);
    if (KVT == KV_F16) return widen_f16((const uint16_t *)p + i);
    return vload((const float *)p + i);
}

/* to[0 .. n) = the numbers from[0 .. n) of a cache in the type KVT, widened to float32 */
static inline void kv_widen(float *to, const void *from, size_t n, int KVT) {
    size_t i = 0;
    for (; i + VEC <= n; i += VEC) { vecf v = kvload(from, i, KVT); memcpy(to + i, &v, sizeof v); }
    for (; i < n; i++) to[i] = kv_get(from, i, (KVType)KVT);
}

/* The weighted sum of a tile's values for NB queries, DV vectors of dimensions from d on (NB x DV
 * accumulators): acc[b][d ..] += sum over keys j < n of p[b][j] * value j. vt: (ATT_TILE_K, head_dim). */
static inline __attribute__((always_inline)) void attend_values(const float (*p)[ATT_TILE_K], int n, float *acc,
                                                                const void *vt, int d, int head_dim, int NB,
                                                                int DV, int KVT) {
    vecf a[ATT_QUERIES][2 * ATT_VALUE_V];
    for (int b = 0; b < NB; b++)
        for (int u = 0; u < DV; u++) a[b][u] = vload(acc + (size_t)b * head_dim + d + u * VEC);
    for (int j = 0; j < n; j++) {
        vecf v[2 * ATT_VALUE_V];
        for (int u = 0; u < DV; u++) v[u] = kvload(vt, (size_t)j * head_dim + d + u * VEC, KVT);
        for (int b = 0; b < NB; b++)
            for (int u = 0; u < DV; u++) a[b][u] += p[b][j] * v[u];
    }
    for (int b = 0; b < NB; b++)
        for (int u = 0; u < DV; u++) memcpy(acc + (size_t)b * head_dim + d + u * VEC, &a[b][u], sizeof a[b][u]);
}

/* A tile of queries, as the attention loop below holds it while it walks the key tiles. */
typedef struct {
    const float *qs;       /* (nq, head_dim) the queries times 1/sqrt(head_dim) */
    float *m, *l, *acc;    /* (nq), (nq), (nq, head_dim): attention_online's m, l and acc for each query */
    int nq, q0, n_past, n_keys, head_dim, comp_slot;
    float q_position, slope, comp_bias;
    const float *position; /* (slots) the cache's positions */
} QueryTile;

/* One step of THE attention loop below: queries i .. i + NB - 1 of the tile t (NB <= ATT_QUERIES; called
 * with a constant, so their arrays live in registers) meet the tile of keys at slot k0 together, so that
 * every key and value loaded serves NB queries. kt, vt: that tile's keys (head_dim, ATT_TILE_K) and
 * values (ATT_TILE_K, head_dim) in the cache's type KVT. The steps are attention_online's (section 4):
 *   1. the scores of the keys any of the NB queries sees, SV vectors of keys at a time: q . k
 *      (the queries are already times 1/sqrt(head_dim)), + slope * (key position - query position)
 *      with ALiBi (slot_score's - slope * (q_pos - pos)), + ln(N_d) at the compensation slot; keys a
 *      query may not see score -inf;
 *   2. per query, the tile's max; if it is larger than m, l and acc are multiplied by e^(m - max) and
 *      m = max (at the first tile, m = -inf: the factor expf(-inf) = 0 multiplies zeros);
 *   3. per query, p_j = e^(s_j - m), VEC at a time (vexp gives 0 for -inf and for NaN, which -inf - -inf
 *      is, so a tile that holds nothing but -inf adds nothing), and l += their sum;
 *   4. acc += p . values, DV vectors of dimensions at a time (attend_values).
 * SV = ATT_SCORE_V and DV = ATT_VALUE_V, the sizes model.h gives the tile's registers. One query alone
 * (generation) takes twice the value vectors, and twice the key vectors where that many still divide a
 * tile (not with AVX-512, whose 4 are the whole tile), so that more of its multiply-adds are in flight
 * at once (a Zen 4, one thread, one query against 48 heads of 1024 bf16 keys: 5.8 -> 5.4 us a head with
 * AVX-512, 9.7 -> 6.1 with AVX2, 21-22 -> 17 with SSE2).
 * The sums run in another order than attention_online's (vectors of keys, a tree per vector), so the
 * two agree to float rounding, not bit for bit. */
static inline __attribute__((always_inline)) void attend_tile(const QueryTile *t, int i, int k0, const void *kt,
                                                              const void *vt, int NB, int KVT) {
    const int SV = NB == 1 && ATT_TILE_K % (2 * ATT_SCORE_V * VEC) == 0 ? 2 * ATT_SCORE_V : ATT_SCORE_V,
              DV = NB == 1 ? 2 * ATT_VALUE_V : ATT_VALUE_V;
    const int head_dim = t->head_dim, comp_at = t->comp_slot - k0; /* outside [0, ATT_TILE_K): not in this tile */
    const float *kpos = t->position + k0;
    float *m = t->m + i, *l = t->l + i, *acc = t->acc + (size_t)i * head_dim;
    const float *q[ATT_QUERIES];
    float qpos[ATT_QUERIES];
    int n_seen[ATT_QUERIES], n_max = 0; /* the keys of the tile that query b sees (0: none); the most */
    for (int b = 0; b < NB; b++) {
        n_seen[b] = min_int(min_int(t->n_past + t->q0 + i + b + 1, t->n_keys) - k0, ATT_TILE_K);
        q[b] = t->qs + (size_t)(i + b) * head_dim;
        qpos[b] = t->q_position + (float)(t->q0 + i + b);
        n_max = n_seen[b] > n_max ? n_seen[b] : n_max;
    }
    float p[ATT_QUERIES][ATT_TILE_K]; /* scores, then e^(score - m) */
    int kv_seen = (n_max + SV * VEC - 1) / (SV * VEC) * SV; /* vectors of the tile that some query sees */
    for (int c0 = 0; c0 < kv_seen; c0 += SV) { /* 1. scores: q . k, SV vectors of keys at a time */
        vecf sv[ATT_QUERIES][2 * ATT_SCORE_V];
        for (int b = 0; b < NB; b++)
            for (int c = 0; c < SV; c++) sv[b][c] = (vecf){0};
        for (int d = 0; d < head_dim; d++) {
            vecf k[2 * ATT_SCORE_V];
            for (int c = 0; c < SV; c++) k[c] = kvload(kt, (size_t)d * ATT_TILE_K + (size_t)(c0 + c) * VEC, KVT);
            for (int b = 0; b < NB; b++)
                for (int c = 0; c < SV; c++) sv[b][c] += q[b][d] * k[c];
        }
        for (int b = 0; b < NB; b++)
            for (int c = 0; c < SV; c++) {
                if (t->slope != 0) sv[b][c] += (vload(kpos + (c0 + c) * VEC) - qpos[b]) * t->slope; /* ALiBi */
                memcpy(p[b] + (c0 + c) * VEC, &sv[b][c], sizeof sv[b][c]);
            }
    }
    for (int b = 0; b < NB; b++) {
        int n = n_seen[b];
        if (n <= 0) { memset(p[b], 0, sizeof p[b]); continue; }
        if (comp_at >= 0 && comp_at < n) p[b][comp_at] += t->comp_bias; /* + ln(N_d) */
        for (int j = n; j < kv_seen * VEC; j++) p[b][j] = -INFINITY;   /* keys it may not see */
        vecf mv = vload(p[b]);
        for (int c = 1; c < kv_seen; c++) mv = vmax(mv, vload(p[b] + c * VEC));
        float tile_max = hmax(mv);
        float *ab = acc + (size_t)b * head_dim;
        if (tile_max > m[b]) { /* 2. rescale what was summed under the old max */
            float correction = expf(m[b] - tile_max);
            l[b] *= correction;
            for (int d = 0; d < head_dim; d++) ab[d] *= correction;
            m[b] = tile_max;
        }
        vecf e_sum = {0};
        for (int c = 0; c < kv_seen; c++) { /* 3. p = e^(s - m), and l += their sum */
            vecf e = vexp(vload(p[b] + c * VEC) - m[b]);
            e_sum += e;
            memcpy(p[b] + c * VEC, &e, sizeof e);
        }
        l[b] += vsum(e_sum);
    }
    /* 4. acc += p @ values: DV vectors of dimensions at a time, each key's value vectors loaded once for
     * the NB queries; then ATT_VALUE_V (for one query, what DV leaves); then whole vectors one at a time;
     * then single dimensions */
    int d = 0;
    for (; d + DV * VEC <= head_dim; d += DV * VEC) attend_values(p, n_max, acc, vt, d, head_dim, NB, DV, KVT);
    for (; d + ATT_VALUE_V * VEC <= head_dim; d += ATT_VALUE_V * VEC)
        attend_values(p, n_max, acc, vt, d, head_dim, NB, ATT_VALUE_V, KVT);
    for (; d + VEC <= head_dim; d += VEC) attend_values(p, n_max, acc, vt, d, head_dim, NB, 1, KVT);
    for (; d < head_dim; d++)
        for (int b = 0; b < NB; b++)
            for (int j = 0; j < n_max; j++)
                acc[(size_t)b * head_dim + d] += p[b][j] * kv_get(vt, (size_t)j * head_dim + d, (KVType)KVT);
}

/* The query tile against the key tile at k0, ATT_QUERIES queries at a time (attend_tile; a last group
 * of fewer, one by one); kt and vt in the type KVT. */
static inline __attribute__((always_inline)) void attend_key_tile(const QueryTile *t, int k0, const void *kt,
                                                                  const void *vt, int KVT) {
    for (int i = 0; i < t->nq; i += ATT_QUERIES) {
        int nb = min_int(t->nq - i, ATT_QUERIES);
        if (min_int(t->n_past + t->q0 + i + nb, t->n_keys) <= k0) continue; /* its last query sees the most */
        if (nb == ATT_QUERIES) attend_tile(t, i, k0, kt, vt, ATT_QUERIES, KVT);
        else
            for (int b = 0; b < nb; b++) attend_tile(t, i + b, k0, kt, vt, 1, KVT);
    }
}

/* THE attention loop: attention_online (section 4), tiled and vectorised. Flash-attention style: for each
 * query, walk the keys in tiles of ATT_TILE_K, keeping a running max m, a running sum l of
 * exp(score - m) and an accumulator of the weighted values, rescaled whenever m grows (attend_tile).
 * No score row of length seq_len ever exists. A tile of ATT_TILE_Q queries shares each tile of keys
 * while it sits in L1, ATT_QUERIES of them at a time. Used for the prompt and for generation alike,
 * compiled once per KV type (KVT); for a tile of several queries, 16-bit keys and values are widened
 * once into float32 scratch, not once per ATT_QUERIES queries.
 *   q          (n_q, q_stride): query i at q + i * q_stride, head_dim floats, at position q_position + i
 *   h          the head's cache: key_tiles (slots / ATT_TILE_K, head_dim, ATT_TILE_K), keys stored
 *              transposed tile by tile, so a query's scores against VEC keys are head_dim vector FMAs;
 *              values (slots, head_dim); position (slots); the compensation slot, if any, whose logit
 *              gets + ln(N_d) (compensation_bias says why)
 *   query i may see slots [0, n_past + i + 1), capped at h->n (the causal mask)
 *   slope      ALiBi's slope of this query head; 0 for RoPE models
 *   out        (n_q, out_stride): like q
 *   scratch    ATT_SCRATCH(head_dim) floats */
static inline __attribute__((always_inline)) void attention_typed(float *out, size_t out_stride, const float *q,
                                                                  size_t q_stride, int n_q, const HeadCache *h,
                                                                  int n_past, int head_dim, float slope,
                                                                  float q_position, float *scratch, int KVT) {
    const float scale = 1.0f / sqrtf((float)head_dim);
    const size_t tile_floats = (size_t)head_dim * ATT_TILE_K, tile_bytes = tile_floats * kv_size((KVType)KVT);
    float *m = scratch, *l = scratch + ATT_TILE_Q, *acc = scratch + 2 * ATT_TILE_Q;
    float *qs = acc + (size_t)ATT_TILE_Q * head_dim, *keys = qs + (size_t)ATT_TILE_Q * head_dim,
          *values = keys + tile_floats; /* a key tile and its values, widened */
    QueryTile t = {qs, m, l, acc, 0, 0, n_past, h->n, head_dim, compensation_slot(h), q_position, slope,
                   compensation_bias(h), h->position};
    for (t.q0 = 0; t.q0 < n_q; t.q0 += ATT_TILE_Q) {
        t.nq = min_int(n_q - t.q0, ATT_TILE_Q);
        for (int i = 0; i < t.nq; i++) {
            m[i] = -INFINITY;
            l[i] = 0;
            for (int d = 0; d < head_dim; d++)
                qs[(size_t)i * head_dim + d] = q[(size_t)(t.q0 + i) * q_stride + d] * scale;
        }
        memset(acc, 0, (size_t)t.nq * head_dim * sizeof(float));
        int last_visible = min_int(n_past + t.q0 + t.nq, h->n);
        for (int k0 = 0; k0 < last_visible; k0 += ATT_TILE_K) {
            const void *kt = (const char *)h->key_tiles + (size_t)(k0 / ATT_TILE_K) * tile_bytes,
                       *vt = (const char *)h->values + (size_t)k0 * head_dim * kv_size((KVType)KVT);
            if (KVT == KV_F32 || t.nq == 1) { attend_key_tile(&t, k0, kt, vt, KVT); continue; }
            kv_widen(keys, kt, tile_floats, KVT);
            kv_widen(values, vt, (size_t)min_int(last_visible - k0, ATT_TILE_K) * head_dim, KVT);
            attend_key_tile(&t, k0, keys, values, KV_F32);
        }
        for (int i = 0; i < t.nq; i++) {
            float *o = out + (size_t)(t.q0 + i) * out_stride, inv = l[i] > 0 ? 1.0f / l[i] : 0.0f;
            for (int d = 0; d < head_dim; d++) o[d] = acc[(size_t)i * head_dim + d] * inv;
        }
    }
}

void attention(float *out, size_t out_stride, const float *q, size_t q_stride, int n_q, const HeadCache *h,
               int n_past, int head_dim, float slope, float q_position, float *scratch) {
    if (h->kv_type == KV_BF16)
        attention_typed(out, out_stride, q, q_stride, n_q, h, n_past, head_dim, slope, q_position, scratch,
                        KV_BF16);
    else if (h->kv_type == KV_F16)
        attention_typed(out, out_stride, q, q_stride, n_q, h, n_past, head_dim, slope, q_position, scratch,
                        KV_F16);
    else
        attention_typed(out, out_stride, q, q_stride, n_q, h, n_past, head_dim, slope, q_position, scratch,
                        KV_F32);
}

/* -w bf16 on a float32 file: the matrices (exactly those a bfloat16 file stores, model.h) rounded to
 * bfloat16 in one allocation, and the weights pointed at it: half the bytes per generated token. */
int model_to_bf16(Model *m) {
    const Config *c = &m->config;
    TransformerWeights *w = &m->weights;
    if (c->weight_type == WEIGHT_BF16) return 0; /* bfloat16 already */
    if (c->weight_type == WEIGHT_Q8) return fail("-w bf16 converts a float32 file; this file's weights are q8");
    Matrix *matrices[] = {&w->token_embedding, &w->wq, &w->wk, &w->wv, &w->wo, &w->w1, &w->w2, &w->w3, &w->wcls};
    int n_matrices = c->shared_classifier ? 8 : 9; /* a shared classifier is the embedding */
    size_t total = 0, at = 0;
    for (int k = 0; k < n_matrices; k++) total += matrices[k]->n;
    size_t huge = 2u << 20, bytes = (total * sizeof(uint16_t) + huge - 1) / huge * huge;
    m->bf16 = aligned_alloc(huge, bytes);
    if (!m->bf16) return fail("no memory for a bfloat16 copy of the weights (%zu MB)", bytes >> 20);
#ifdef MADV_HUGEPAGE
    madvise(m->bf16, bytes, MADV_HUGEPAGE); /* 2 MB pages where Linux allows: far fewer TLB misses while
                                               streaming the copy (generation +15-20% here) */
#endif
    for (int k = 0; k < n_matrices; k++) {
        const float *from = matrices[k]->data;
        size_t n = matrices[k]->n;
        for (size_t i = 0; i < n; i++) m->bf16[at + i] = f32_to_bf16(from[i]);
        *matrices[k] = (Matrix){m->bf16 + at, NULL, WEIGHT_BF16, n};
        at += n;
    }
    if (c->shared_classifier) w->wcls = w->token_embedding;
    return 0;
}

/* ------------------------------------------------------------------------------------------------
 * Appendix G. The baselines that drop tokens by attention: SnapKV (-c snapkv; Li et al. 2024, arXiv
 * 2404.14469) and H2O (-c h2o, "heavy hitters"; Zhang et al. 2023, arXiv 2306.14048). RazorAttention's
 * argument is against methods like these: they keep the tokens that attention has weighed most so far,
 * and what they drop is gone for good, whatever a later question asks; razor decides without looking
 * at any query and keeps every token's information (its retrieval heads whole, the compensation token
 * for the rest). `-m needle` shows the difference: its "after" setting asks the question after the
 * cache is compressed.
 *
 * The budget is razor's: after the prompt each KV head keeps B = floor(T_razor / (n_layers x
 * n_kv_heads)) tokens, T_razor the tokens -c razor keeps over all KV heads for that prompt (with the
 * same -S, -W, -C and profile), so both hold the same bytes to within one token per KV head. A prompt
 * of at most B tokens is kept whole (as SnapKV does). While generating, H2O's B follows razor's
 * (whose retrieval heads grow by a token a step), so the two stay level; SnapKV appends every token,
 * as its paper does, and so holds more than razor after a long generation. A KV head's scores are the
 * sums over its query heads (the original code scores each query head after repeat_kv; one choice per
 * KV head is this file's adaptation to GQA, so that a KV head's cache is still shared by its group).
 * Both keep their
 * tokens in the same slots as every other policy (SELECTED_HEAD, in position order), attend with the
 * same tiled loop and store keys and values in the same -K type; the scores come from the keys in
 * the cache and the queries of the same forward pass, never a second pass over the prompt.
 *   SnapKV  after the prompt, the last w = SNAPKV_WINDOW queries (the observation window) attend again
 *           over the whole prompt (causally inside the window); each earlier token's votes, its
 *           attention summed over those queries, are max-pooled over SNAPKV_POOL neighbours, and the
 *           B - w tokens with the most, with the window itself, are kept. Generation and later turns
 *           append: the selection is made once.
 *   H2O     every query's attention is added to each token's running score, the prompt's and every
 *           generated token's; after the prompt each head keeps the B - B/2 most recent tokens and
 *           the B/2 others with the highest scores (the heavy hitters); while generating, each new
 *           token pushes out the lowest-scoring token outside the recent ones, so the cache stays at
 *           B; after a later turn it is cut back the same way, to the B of all the tokens so far.
 * Ties go to the earlier token. */

/* The tokens -c razor holds over all KV heads once n tokens have arrived and its compressed heads got
 * `window` (razor_window of the last prompt or turn), counted as head_bytes counts them: a retrieval
 * head every token; another one its sinks, its window (the span with an ALiBi profile) and, if anything
 * was dropped, the compensation token; a head still short, all of them. The same decisions as
 * choose_head_caches, head_compress and head_append; the tests hold this to razor's. */
static long razor_tokens(const CacheConfig *cache, int n_caches, int n, int window) {
    const HeadProfile *p = cache->profile;
    int n_sink = cache->n_sink;
    long total = 0;
    for (int i = 0; i < n_caches; i++) {
        int retrieval = p && p->retrieval && p->retrieval[i];
        int span = p && p->retrieval && p->span ? p->span[i] : 0, L = span ? span : window;
        if (retrieval || n - n_sink < L) total += n;
        else total += n_sink + L + (n - n_sink > L);
    }
    return total;
}

/* Adds to weight[j] the attention each of n_q queries pays slot j of a head: the softmax over the slots
 * it sees (attention_reference's causal rule) of slot_score's scores (these heads have no compensation
 * slot). The queries go SCORE_QUERIES at a time, sharing each tile of keys, widened to float32 once:
 * scratch holds their rows of scores, then the tile (SCORE_SCRATCH floats). */
static void attention_weights(const float *q, size_t q_stride, int n_q, const HeadCache *h, int n_past, int hd,
                              float slope, float q_position, float *scratch, int width, double *weight) {
    float *keys = scratch + (size_t)SCORE_QUERIES * width, scale = 1 / sqrtf((float)hd);
    for (int i0 = 0; i0 < n_q; i0 += SCORE_QUERIES) {
        int nq = min_int(n_q - i0, SCORE_QUERIES), seen = min_int(n_past + i0 + nq, h->n);
        for (int k0 = 0; k0 < seen; k0 += ATT_TILE_K) { /* the scores, a tile of keys at a time */
            int n = min_int(seen - k0, ATT_TILE_K);
            kv_widen(keys, (const char *)h->key_tiles + key_index(k0, 0, hd) * kv_size(h->kv_type),
                     (size_t)hd * ATT_TILE_K, h->kv_type); /* keys[d][j]: dimension d of slot k0 + j */
            for (int i = 0; i < nq; i++) {
                const float *qi = q + (size_t)(i0 + i) * q_stride;
                float *row = scratch + (size_t)i * width + k0;
                for (int j = 0; j < n; j++) row[j] = 0;
                for (int d = 0; d < hd; d++)
                    for (int j = 0; j < n; j++) row[j] += qi[d] * keys[d * ATT_TILE_K + j];
                for (int j = 0; j < n; j++)
                    row[j] = row[j] * scale - slope * (q_position + (float)(i0 + i) - h->position[k0 + j]);
            }
        }
        for (int i = 0; i < nq; i++) { /* each query's softmax, over the slots it sees */
            float *row = scratch + (size_t)i * width, max = -INFINITY, sum = 0;
            int visible = min_int(n_past + i0 + i + 1, h->n);
            for (int j = 0; j < visible; j++) if (row[j] > max) max = row[j];
            for (int j = 0; j < visible; j++) sum += row[j] = expf(row[j] - max);
            for (int j = 0; j < visible; j++) weight[j] += row[j] / sum;
        }
    }
}

typedef struct { double value; int slot; } Ranked;

static int rank_before(const void *a, const void *b) { /* the larger value first; ties: the earlier slot */
    const Ranked *x = a, *y = b;
    double u = isnan(x->value) ? -INFINITY : x->value, v = isnan(y->value) ? -INFINITY : y->value; /* NaN: last */
    return u != v ? (u < v ? 1 : -1) : x->slot - y->slot;
}

/* Sets keep[j] for the k slots of [0, n) with the largest value[j]. */
static void keep_largest(const double *value, int n, int k, unsigned char *keep) {
    Ranked *rank = xcalloc((size_t)n, sizeof(Ranked));
    for (int j = 0; j < n; j++) rank[j] = (Ranked){value[j], j};
    qsort(rank, (size_t)n, sizeof(Ranked), rank_before);
    for (int r = 0; r < k && r < n; r++) keep[rank[r].slot] = 1;
    free(rank);
}

/* Keeps the slots marked in keep (in order, moved to the front), drops the rest. */
static void keep_slots(HeadCache *h, const unsigned char *keep, int hd) {
    float key[MAX_HEAD_DIM], value[MAX_HEAD_DIM];
    int n = 0;
    for (int j = 0; j < h->n; j++) {
        if (!keep[j]) continue;
        if (j != n) {
            get_slot(h, j, key, value, hd);
            put_slot(h, n, key, value, h->position[j], hd);
            if (h->score) h->score[n] = h->score[j];
        }
        n++;
    }
    h->n = n;
    h->state = SELECTED_HEAD;
}

/* SnapKV's choice for head i (layer i / n_kv_heads), a short head holding the whole prompt (slot j is
 * token j): the observation window's votes, max-pooled, their top B - w, and the window. */
static void snapkv_choose(struct RunState *s, int i, unsigned char *keep, float *scratch) {
    const Model *m = s->model;
    const Config *c = &m->config;
    const HeadCache *h = &s->heads[i];
    int n = h->n, w = min_int(SNAPKV_WINDOW, s->budget), prefix = n - w, hd = c->head_dim;
    int layer = i / c->n_kv_heads, group = c->n_heads / c->n_kv_heads, half = SNAPKV_POOL / 2;
    size_t q_dim = (size_t)c->n_heads * hd;
    double *votes = xcalloc((size_t)n, sizeof(double)), *pooled = xcalloc((size_t)prefix, sizeof(double));
    float *window = xcalloc((size_t)w * hd, sizeof(float)); /* (w, head_dim) one query head's window queries */
    for (int g = 0; g < group; g++) {
        int query_head = (i % c->n_kv_heads) * group + g;
        for (int p = prefix; p < n; p++) /* out of the ring, in order */
            memcpy(window + (size_t)(p - prefix) * hd, s->window_queries + ((size_t)layer * SNAPKV_WINDOW +
                   p % SNAPKV_WINDOW) * q_dim + (size_t)query_head * hd, (size_t)hd * sizeof(float));
        float slope = m->alibi_slope ? m->alibi_slope[query_head] : 0;
        /* the window's query at position p = prefix + k sees slots 0 .. p */
        attention_weights(window, (size_t)hd, w, h, prefix, hd, slope, (float)prefix, scratch, s->score_width, votes);
    }
    for (int j = 0; j < prefix; j++) { /* max-pool over the neighbours before the window */
        pooled[j] = votes[j];
        for (int k = j - half; k <= j + half; k++)
            if (k >= 0 && k < prefix && votes[k] > pooled[j]) pooled[j] = votes[k];
    }
    keep_largest(pooled, prefix, s->budget - w, keep);
    for (int j = prefix; j < n; j++) keep[j] = 1;
    free(votes); free(pooled); free(window);
}

/* H2O's choice: the B - B/2 most recent slots, and the B/2 others with the highest running scores. */
static int h2o_recent(int budget) { return budget - budget / 2; }
static void h2o_choose(const HeadCache *h, int budget, unsigned char *keep) {
    int recent = h2o_recent(budget);
    keep_largest(h->score, h->n - recent, budget / 2, keep);
    for (int j = h->n - recent; j < h->n; j++) keep[j] = 1;
}

/* B for n tokens: what razor holds then, shared equally among the KV heads. */
static int drop_budget(const struct RunState *s, int n) {
    return (int)(razor_tokens(&s->cache, s->n_caches, n, s->razor_window) / s->n_caches);
}

/* Before the score tasks: room in each thread's score rows for the longest head (by half again). */
static void reserve_score_rows(struct RunState *s) {
    int longest = 0;
    for (int i = 0; i < s->n_caches; i++) longest = s->heads[i].n > longest ? s->heads[i].n : longest;
    if (longest <= s->score_width) return;
    int width = round_to_tile(longest + longest / 2);
    free(s->score_rows);
    s->score_rows = xcalloc((size_t)pool_threads * SCORE_SCRATCH(width, s->model->config.head_dim), sizeof(float));
    s->score_width = width;
}

static void drop_task(void *arg, int thread, int n_threads) {
    RunState *s = arg;
    int hd = s->model->config.head_dim;
    float *scratch = s->score_rows + (size_t)thread * SCORE_SCRATCH(s->score_width, hd);
    for (int i = thread; i < s->n_caches; i += n_threads) {
        HeadCache *h = &s->heads[i];
        if (h->n <= s->budget) continue;
        unsigned char *keep = xcalloc((size_t)h->n, 1);
        if (s->cache.policy == POLICY_SNAPKV) snapkv_choose(s, i, keep, scratch);
        else h2o_choose(h, s->budget, keep);
        keep_slots(h, keep, hd);
        free(keep);
        grow_slots(h, s->budget + 1, hd); /* B, and room for the next token */
    }
}

/* compress_cache for -c snapkv and h2o: after the first prompt the budget is set and every head longer
 * than it chooses its B tokens; after a later turn SnapKV keeps appending, and H2O cuts back to the
 * budget of all the tokens so far. Each thread takes whole KV heads. */
static void drop_tokens(struct RunState *s) {
    if (s->budget && s->cache.policy == POLICY_SNAPKV) return;
    s->razor_window = razor_window(&s->cache, s->n_tokens);
    s->budget = drop_budget(s, s->n_tokens);
    reserve_score_rows(s);
    pool_run(drop_task, s);
}

/* After a layer's attention, what the baselines' choices need. SnapKV, until its choice: the block's
 * queries, kept in a ring of the last SNAPKV_WINDOW positions. H2O: every query's attention added to
 * the running score of each token it saw; while generating, once a head holds more than B tokens (B
 * grows as razor's bytes do), the lowest-ranked token outside the recent ones leaves (keep_largest's
 * order: the lowest score, of equal ones the later). Each thread takes whole KV heads. A one-token turn
 * counts as a generation step, as it does for razor's windows. */
static void observe_task(void *arg, int thread, int n_threads) {
    const BlockJob *a = arg;
    const Config *c = &a->m->config;
    RunState *s = a->s;
    int hd = c->head_dim, group = c->n_heads / c->n_kv_heads;
    size_t q_dim = (size_t)c->n_heads * hd;
    float *scratch = s->score_rows + (size_t)thread * SCORE_SCRATCH(s->score_width, hd);
    for (int kv = thread; kv < c->n_kv_heads; kv += n_threads) {
        HeadCache *h = &s->heads[a->layer * c->n_kv_heads + kv];
        for (int j = h->n - a->T; j < h->n; j++) h->score[j] = 0; /* the block's tokens, new at the end */
        for (int g = 0; g < group; g++) {
            int query_head = kv * group + g;
            float slope = a->m->alibi_slope ? a->m->alibi_slope[query_head] : 0;
            attention_weights(s->q + (size_t)query_head * hd, q_dim, a->T, h, h->n - a->T, hd, slope,
                              (float)s->n_tokens, scratch, s->score_width, h->score);
        }
        if (!a->generating || !s->budget || h->n <= s->budget) continue;
        int leaves = 0;
        for (int j = 1; j < h->n - h2o_recent(s->budget); j++)
            if (rank_before(&(Ranked){h->score[j], j}, &(Ranked){h->score[leaves], leaves}) > 0) leaves = j;
        move_slots(h, leaves, leaves + 1, h->n - leaves - 1, hd);
        memmove(h->score + leaves, h->score + leaves + 1, (size_t)(h->n - leaves - 1) * sizeof(double));
        h->n--;
        h->state = SELECTED_HEAD;
    }
}

static void observe_attention(struct RunState *s, int layer, int T, int generating) {
    const Config *c = &s->model->config;
    if (s->cache.policy == POLICY_H2O) {
        if (generating && s->budget && layer == 0) s->budget = drop_budget(s, s->n_tokens + T); /* once a step */
        BlockJob job = {s->model, s, layer, T, generating};
        reserve_score_rows(s);
        pool_run(observe_task, &job);
        return;
    }
    if (s->budget) return; /* SnapKV has chosen */
    size_t q_dim = (size_t)c->n_heads * c->head_dim;
    for (int t = T > SNAPKV_WINDOW ? T - SNAPKV_WINDOW : 0; t < T; t++) {
        size_t p = (size_t)s->n_tokens + t;
        memcpy(s->window_queries + ((size_t)layer * SNAPKV_WINDOW + p % SNAPKV_WINDOW) * q_dim,
               s->q + (size_t)t * q_dim, q_dim * sizeof(float));
    }
}
