/* test_razor.c: razor's tests, no framework. Run from the repository root:
 *     ./test_razor ./razor-san ./razor-nothreads
 * (the two razor builds are used for the command-line tests). It writes small random models in all
 * three formats to a temporary directory and checks razor against a plain reference written here:
 * a token-by-token forward pass with full score rows, a naive attention loop and a naive (quadratic)
 * BPE encoder, plus sentencepiece's own ids (tests/tokenizer_vectors.h). Ends with "N passed, N failed". */
#include "razor.c" /* the whole program, its main left out (built with -DRAZOR_NO_MAIN): the tests see
                      * every function and struct, the static ones included */
#include <dirent.h>
#include <sys/wait.h>
#include "tests/tokenizer_vectors.h"
#include "tests/bbpe_vectors.h"

static int passed, failed;
static char tmpdir[64];
static const char *razor_bin, *razor_nothreads_bin;

static void check(int ok, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (ok) {
        passed++;
    } else {
        failed++;
        printf("FAIL: ");
        vprintf(fmt, ap);
        printf("\n");
    }
    va_end(ap);
}

static float max_abs_diff(const float *a, const float *b, size_t n) {
    float m = 0;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]);
        if (!(d <= m)) m = d; /* NaN counts as a difference */
    }
    return m;
}

static void *slurp(const char *path, size_t *n);

static char *tmp_path(const char *name) {
    static char buf[8][256];
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, 256, "%s/%s", tmpdir, name);
    return p;
}

/* ---------------------------------------------------------------------------------------------
 * Random models, written in any of the three formats */

typedef struct {
    Config c;
    float *emb, *rms_att, *wq, *wk, *wv, *wo, *rms_ffn, *w1, *w2, *w3, *rms_final, *wcls;
    float *bq, *bk, *bv, *q_norm, *k_norm; /* NULL unless c.qkv_bias / c.qk_norm */
} TestModel;

enum { FORMAT_RAZOR_V1 = 3 }; /* write_model: razor's version 1 file, beside the FORMAT_* ones */

static uint64_t rng = 42;
static float urand(void) { /* uniform in [-1, 1) */
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng >> 40) & 0xFFFFFF) / 8388608.0f - 1.0f;
}

static float *random_tensor(size_t n, float scale, float offset) {
    float *t = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) t[i] = offset + scale * urand();
    return t;
}

static Config small_config(int dim, int hidden, int layers, int heads, int kv_heads, int vocab, int seq_len) {
    return (Config){.dim = dim, .hidden_dim = hidden, .n_layers = layers, .n_heads = heads, .n_kv_heads = kv_heads,
                    .head_dim = dim / heads, .vocab_size = vocab, .seq_len = seq_len, .bos_id = 1, .eos_id = 2,
                    .shared_classifier = 1, .norm_eps = 1e-5f, .rope_theta = 10000.0f, .add_bos = 1};
}

static TestModel make_model(Config c, uint64_t seed) {
    TestModel m = {.c = c};
    rng = seed;
    size_t dim = c.dim, L = c.n_layers, q_dim = (size_t)c.n_heads * c.head_dim,
           kv_dim = (size_t)c.n_kv_heads * c.head_dim;
    m.emb = random_tensor(c.vocab_size * dim, 1.0f, 0);
    m.rms_att = random_tensor(L * dim, 0.3f, 1.0f);
    m.wq = random_tensor(L * q_dim * dim, 0.5f, 0); /* large q/k: peaked attention, so mistakes show */
    m.wk = random_tensor(L * kv_dim * dim, 0.5f, 0);
    m.wv = random_tensor(L * kv_dim * dim, 0.3f, 0);
    m.wo = random_tensor(L * dim * q_dim, 0.3f, 0);
    m.rms_ffn = random_tensor(L * dim, 0.3f, 1.0f);
    m.w1 = random_tensor(L * c.hidden_dim * dim, 0.3f, 0);
    m.w2 = random_tensor(L * dim * c.hidden_dim, 0.3f, 0);
    m.w3 = random_tensor(L * c.hidden_dim * dim, 0.3f, 0);
    m.rms_final = random_tensor(dim, 0.3f, 1.0f);
    m.wcls = c.shared_classifier ? m.emb : random_tensor(c.vocab_size * dim, 0.5f, 0);
    if (c.qkv_bias) {
        m.bq = random_tensor(L * q_dim, 0.5f, 0);
        m.bk = random_tensor(L * kv_dim, 0.5f, 0);
        m.bv = random_tensor(L * kv_dim, 0.5f, 0);
    }
    if (c.qk_norm) {
        m.q_norm = random_tensor(L * c.head_dim, 0.5f, 1.0f);
        m.k_norm = random_tensor(L * c.head_dim, 0.5f, 1.0f);
    }
    return m;
}

static void free_test_model(TestModel *m) {
    float *all[] = {m->emb, m->rms_att, m->wq, m->wk, m->wv, m->wo, m->rms_ffn, m->w1, m->w2, m->w3, m->rms_final,
                    m->bq, m->bk, m->bv, m->q_norm, m->k_norm};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
    if (!m->c.shared_classifier) free(m->wcls);
}

static void put(FILE *f, const float *t, size_t n) { fwrite(t, sizeof(float), n, f); }

/* x rounded to bfloat16's 8 significant bits, nearest, ties to even: frexp and rint, not bit tricks. */
static float ref_bf16(float x) {
    int e;
    double m = frexp(x, &e);
    return (float)ldexp(rint(ldexp(m, 8)), e - 8);
}

/* One tensor of a razor version 2 file (model.h): zero padding up to a multiple of 64 bytes, then the
 * numbers; a matrix in the file's weight type (bfloat16 by ref_bf16; q8: groups of 32 with scale
 * max|w| / 127, values rint(w / scale), written here from model.h's description). */
static void put_v2(FILE *f, const float *t, size_t n, int type) {
    static const char zeros[64];
    fwrite(zeros, 1, (size_t)(-ftell(f) & 63), f);
    if (type == WEIGHT_BF16) {
        for (size_t i = 0; i < n; i++) {
            float r = ref_bf16(t[i]);
            uint32_t u;
            memcpy(&u, &r, 4);
            uint16_t h = (uint16_t)(u >> 16);
            fwrite(&h, 2, 1, f);
        }
    } else if (type == WEIGHT_Q8) {
        float *scales = malloc(n / 32 * sizeof(float));
        for (size_t g = 0; g < n / 32; g++) {
            float max = 0;
            for (int k = 0; k < 32; k++) max = fmaxf(max, fabsf(t[g * 32 + k]));
            scales[g] = max / 127;
            for (int k = 0; k < 32; k++) {
                int8_t q = (int8_t)(max > 0 ? rintf(t[g * 32 + k] / scales[g]) : 0);
                fwrite(&q, 1, 1, f);
            }
        }
        fwrite(zeros, 1, (size_t)(-ftell(f) & 63), f);
        put(f, scales, n / 32);
        free(scales);
    } else {
        put(f, t, n);
    }
}

/* What a weight becomes in a file of the given type (the numbers razor computes with). */
static float *stored_copy(const float *t, size_t n, int type) {
    float *r = malloc(n * sizeof(float));
    for (size_t g = 0; g < n; g += 32) {
        float max = 0;
        for (size_t k = g; k < g + 32 && k < n; k++) max = fmaxf(max, fabsf(t[k]));
        float scale = max / 127;
        for (size_t k = g; k < g + 32 && k < n; k++)
            r[k] = type == WEIGHT_BF16 ? ref_bf16(t[k])
                   : type == WEIGHT_Q8 ? (max > 0 ? rintf(t[k] / scale) : 0) * scale
                                       : t[k];
    }
    return r;
}

/* The model as a file of the given weight type stores it: every matrix as stored_copy makes it. */
static TestModel stored_model(const TestModel *tm, int type) {
    const Config *c = &tm->c;
    TestModel r = *tm;
    size_t dim = c->dim, L = c->n_layers, hid = c->hidden_dim, q_dim = (size_t)c->n_heads * c->head_dim,
           kv_dim = (size_t)c->n_kv_heads * c->head_dim;
    r.emb = stored_copy(tm->emb, (size_t)c->vocab_size * dim, type);
    r.wq = stored_copy(tm->wq, L * q_dim * dim, type);
    r.wk = stored_copy(tm->wk, L * kv_dim * dim, type);
    r.wv = stored_copy(tm->wv, L * kv_dim * dim, type);
    r.wo = stored_copy(tm->wo, L * dim * q_dim, type);
    r.w1 = stored_copy(tm->w1, L * hid * dim, type);
    r.w2 = stored_copy(tm->w2, L * dim * hid, type);
    r.w3 = stored_copy(tm->w3, L * hid * dim, type);
    r.wcls = c->shared_classifier ? r.emb : stored_copy(tm->wcls, (size_t)c->vocab_size * dim, type);
    return r;
}

static void free_stored_model(TestModel *r) {
    float *mine[] = {r->emb, r->wq, r->wk, r->wv, r->wo, r->w1, r->w2, r->w3};
    for (size_t i = 0; i < sizeof mine / sizeof *mine; i++) free(mine[i]);
    if (!r->c.shared_classifier) free(r->wcls);
}

static void write_model(const TestModel *m, const char *path, int format) {
    const Config *c = &m->c;
    size_t dim = c->dim, L = c->n_layers, q_dim = (size_t)c->n_heads * c->head_dim,
           kv_dim = (size_t)c->n_kv_heads * c->head_dim;
    size_t hid = c->hidden_dim;
    FILE *f = fopen(path, "wb");
    unsigned char header[HEADER_BYTES] = {0};
    if (format == FORMAT_RAZOR || format == FORMAT_RAZOR_V1) {
        RazorHeader h = {.magic = RAZOR_MAGIC, .version = format == FORMAT_RAZOR ? RAZOR_VERSION : 1, .dim = c->dim,
                         .hidden_dim = c->hidden_dim, .n_layers = c->n_layers, .n_heads = c->n_heads,
                         .n_kv_heads = c->n_kv_heads, .head_dim = c->head_dim, .vocab_size = c->vocab_size,
                         .seq_len = c->seq_len, .bos_id = c->bos_id, .eos_id = c->eos_id,
                         .shared_classifier = c->shared_classifier, .norm_eps = c->norm_eps,
                         .rope_theta = c->rope_theta, .rope_scaling = c->rope_scaling, .rope_factor = c->rope_factor,
                         .rope_low_freq_factor = c->rope_low_freq_factor,
                         .rope_high_freq_factor = c->rope_high_freq_factor,
                         .rope_original_context = c->rope_original_context};
        if (format == FORMAT_RAZOR) {
            h.weight_type = c->weight_type;
            h.q8_group = c->weight_type == WEIGHT_Q8 ? 32 : 0;
            h.pos_encoding = c->pos_encoding;
            h.qkv_bias = c->qkv_bias;
            h.qk_norm = c->qk_norm;
            h.chat_template = c->chat_template;
            for (int i = 0; i < 4; i++) h.chat_tokens[i] = c->chat_template ? c->chat_tokens[i] : -1;
            h.add_bos = c->add_bos;
        }
        memcpy(header, &h, format == FORMAT_RAZOR ? sizeof h : 80);
        fwrite(header, 1, HEADER_BYTES, f);
    } else {
        int32_t dims[7] = {c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size, c->seq_len};
        if (format == FORMAT_LLAMA2C_V0) {
            if (!c->shared_classifier) dims[5] = -dims[5];
            fwrite(dims, 4, 7, f);
        } else {
            uint32_t magic = LLAMA2C_MAGIC;
            int32_t version = 1;
            memcpy(header, &magic, 4);
            memcpy(header + 4, &version, 4);
            memcpy(header + 8, dims, sizeof dims);
            header[36] = (unsigned char)c->shared_classifier;
            fwrite(header, 1, HEADER_BYTES, f);
        }
    }
    if (format == FORMAT_RAZOR) {
        int wt = c->weight_type;
        put_v2(f, m->emb, c->vocab_size * dim, wt);
        put_v2(f, m->rms_att, L * dim, WEIGHT_F32);
        put_v2(f, m->wq, L * q_dim * dim, wt);
        put_v2(f, m->wk, L * kv_dim * dim, wt);
        put_v2(f, m->wv, L * kv_dim * dim, wt);
        put_v2(f, m->wo, L * dim * q_dim, wt);
        put_v2(f, m->rms_ffn, L * dim, WEIGHT_F32);
        put_v2(f, m->w1, L * hid * dim, wt);
        put_v2(f, m->w2, L * dim * hid, wt);
        put_v2(f, m->w3, L * hid * dim, wt);
        put_v2(f, m->rms_final, dim, WEIGHT_F32);
        if (c->qkv_bias) {
            put_v2(f, m->bq, L * q_dim, WEIGHT_F32);
            put_v2(f, m->bk, L * kv_dim, WEIGHT_F32);
            put_v2(f, m->bv, L * kv_dim, WEIGHT_F32);
        }
        if (c->qk_norm) {
            put_v2(f, m->q_norm, L * c->head_dim, WEIGHT_F32);
            put_v2(f, m->k_norm, L * c->head_dim, WEIGHT_F32);
        }
        if (!c->shared_classifier) put_v2(f, m->wcls, c->vocab_size * dim, wt);
        fclose(f);
        return;
    }
    if (format == FORMAT_LLAMA2C_V1) {
        put(f, m->rms_att, L * dim);
        put(f, m->rms_ffn, L * dim);
        put(f, m->rms_final, dim);
        put(f, m->emb, c->vocab_size * dim);
        put(f, m->wq, L * q_dim * dim);
        put(f, m->wk, L * kv_dim * dim);
        put(f, m->wv, L * kv_dim * dim);
        put(f, m->wo, L * dim * q_dim);
        put(f, m->w1, L * hid * dim); put(f, m->w2, L * dim * hid); put(f, m->w3, L * hid * dim);
    } else {
        put(f, m->emb, c->vocab_size * dim); put(f, m->rms_att, L * dim);
        put(f, m->wq, L * q_dim * dim);
        put(f, m->wk, L * kv_dim * dim);
        put(f, m->wv, L * kv_dim * dim);
        put(f, m->wo, L * dim * q_dim);
        put(f, m->rms_ffn, L * dim);
        put(f, m->w1, L * hid * dim);
        put(f, m->w2, L * dim * hid);
        put(f, m->w3, L * hid * dim);
        put(f, m->rms_final, dim);
        if (format == FORMAT_LLAMA2C_V0) { /* freq_cis tables, which razor must skip: garbage on purpose */
            size_t n = (size_t)c->seq_len * c->head_dim;
            float *junk = random_tensor(n, 100.0f, 0);
            put(f, junk, n);
            free(junk);
        }
    }
    if (!c->shared_classifier) put(f, m->wcls, c->vocab_size * dim);
    fclose(f);
}

/* ---------------------------------------------------------------------------------------------
 * The reference: one token at a time, plain loops in double, full score rows, softmax, weighted sum */

/* With ref_q8_inputs set, every matmul's input is first quantized as razor's does for q8 weights
 * (quantize_q8, appendix F: groups of 32, scale max|x| / 127, rounded to nearest even), in double; with
 * ref_bf16_inputs, rounded to bf16 as razor's are for bf16 weights where the CPU multiplies bf16 pairs
 * (BF16_ROUNDS_INPUTS: model.h's RAZOR_BF16_DOT; appendix F, "bf16 x bf16"). */
static int ref_q8_inputs, ref_bf16_inputs;
#ifdef RAZOR_BF16_DOT
#define BF16_ROUNDS_INPUTS 1
#else
#define BF16_ROUNDS_INPUTS 0
#endif
static void ref_matvec(double *out, const double *x, const float *w, int n, int d) {
    double *xq = malloc(n * sizeof(double));
    for (int g = 0; g < n; g += 32) {
        double max = 0;
        for (int j = g; j < g + 32 && j < n; j++) max = fmax(max, fabs(x[j]));
        for (int j = g; j < g + 32 && j < n; j++)
            xq[j] = ref_bf16_inputs ? bf16_to_f32(f32_to_bf16((float)x[j]))
                    : !ref_q8_inputs ? x[j] : max > 0 ? rint(x[j] / (max / 127)) * (max / 127) : 0;
    }
    for (int i = 0; i < d; i++) {
        double s = 0;
        for (int j = 0; j < n; j++) s += (double)w[(size_t)i * n + j] * xq[j];
        out[i] = s;
    }
    free(xq);
}

static void ref_rmsnorm(double *out, const double *x, const float *w, int n, double eps) {
    double ss = 0;
    for (int j = 0; j < n; j++) ss += x[j] * x[j];
    ss = 1.0 / sqrt(ss / n + eps);
    for (int j = 0; j < n; j++) out[j] = w[j] * ss * x[j];
}

static double ref_freq(const Config *c, int i) { /* Llama 3 scaling as transformers' _compute_llama3_parameters */
    double freq = pow(c->rope_theta, -2.0 * i / c->head_dim);
    if (!c->rope_scaling) return freq;
    double wavelen = 2 * M_PI / freq, lo = c->rope_original_context / c->rope_low_freq_factor;
    double hi = c->rope_original_context / c->rope_high_freq_factor;
    if (wavelen < hi) return freq;
    if (wavelen > lo) return freq / c->rope_factor;
    double smooth = (c->rope_original_context / wavelen - c->rope_low_freq_factor) /
                    (c->rope_high_freq_factor - c->rope_low_freq_factor);
    return (1 - smooth) * freq / c->rope_factor + smooth * freq;
}

static void ref_rope(double *v, int n_heads, int hd, int pos, const Config *c) {
    for (int h = 0; h < n_heads; h++)
        for (int i = 0; i < hd / 2; i++) {
            double a = pos * (double)(float)ref_freq(c, i),
                   *p = v + (size_t)h * hd + 2 * i; /* razor stores freq as float */
            double x0 = p[0], x1 = p[1];
            p[0] = x0 * cos(a) - x1 * sin(a);
            p[1] = x0 * sin(a) + x1 * cos(a);
        }
}

/* ALiBi's slopes as the paper states them: for n heads, a power of two, the geometric sequence that
 * starts at 2^(-8/n) with that ratio; otherwise the first p of the sequence for the largest power of
 * two p below n, then every other one of the sequence for 2p (its 1st, 3rd, ...). */
static double ref_slope(int h, int n) {
    int p = 1;
    while (2 * p <= n) p *= 2;
    if (h < p) return pow(pow(2.0, -8.0 / p), h + 1);
    int k = 2 * (h - p); /* 0-based index into the sequence for 2p */
    return pow(pow(2.0, -8.0 / (2 * p)), k + 1);
}

/* logits (n, vocab) for the ids, token by token; q/k/v biases, each head's q and k RMSNorm (before
 * RoPE) and ALiBi if the config says so */
static float *ref_forward(const TestModel *m, const int *ids, int n) {
    const Config *c = &m->c;
    int dim = c->dim, hd = c->head_dim, q_dim = c->n_heads * hd, kv_dim = c->n_kv_heads * hd, hid = c->hidden_dim;
    double *kc = calloc((size_t)c->n_layers * n * kv_dim, sizeof(double)),
           *vc = calloc((size_t)c->n_layers * n * kv_dim, sizeof(double));
    double *x = calloc(dim, sizeof(double)), *xb = calloc(dim > q_dim ? dim : q_dim, sizeof(double)),
           *q = calloc(q_dim, sizeof(double));
    double *att = calloc(q_dim, sizeof(double)), *h1 = calloc(hid, sizeof(double)), *h3 = calloc(hid, sizeof(double));
    double *tmp = calloc(dim, sizeof(double)), *scores = calloc(n, sizeof(double)),
           *lg = calloc(c->vocab_size, sizeof(double));
    float *logits = malloc((size_t)n * c->vocab_size * sizeof(float));
    for (int pos = 0; pos < n; pos++) {
        for (int j = 0; j < dim; j++) x[j] = m->emb[(size_t)ids[pos] * dim + j];
        for (int l = 0; l < c->n_layers; l++) {
            double *k = kc + ((size_t)l * n + pos) * kv_dim, *v = vc + ((size_t)l * n + pos) * kv_dim;
            ref_rmsnorm(xb, x, m->rms_att + (size_t)l * dim, dim, c->norm_eps);
            ref_matvec(q, xb, m->wq + (size_t)l * q_dim * dim, dim, q_dim);
            ref_matvec(k, xb, m->wk + (size_t)l * kv_dim * dim, dim, kv_dim);
            ref_matvec(v, xb, m->wv + (size_t)l * kv_dim * dim, dim, kv_dim);
            for (int j = 0; m->bq && j < q_dim; j++) q[j] += m->bq[(size_t)l * q_dim + j];
            for (int j = 0; m->bk && j < kv_dim; j++) k[j] += m->bk[(size_t)l * kv_dim + j];
            for (int j = 0; m->bv && j < kv_dim; j++) v[j] += m->bv[(size_t)l * kv_dim + j];
            for (int h = 0; m->q_norm && h < c->n_heads; h++)
                ref_rmsnorm(q + h * hd, q + h * hd, m->q_norm + (size_t)l * hd, hd, c->norm_eps);
            for (int h = 0; m->k_norm && h < c->n_kv_heads; h++)
                ref_rmsnorm(k + h * hd, k + h * hd, m->k_norm + (size_t)l * hd, hd, c->norm_eps);
            if (c->pos_encoding == POS_ROPE) {
                ref_rope(q, c->n_heads, hd, pos, c);
                ref_rope(k, c->n_kv_heads, hd, pos, c);
            }
            for (int h = 0; h < c->n_heads; h++) {
                int g = h / (c->n_heads / c->n_kv_heads);
                double max = -INFINITY, sum = 0;
                for (int j = 0; j <= pos; j++) {
                    double s = 0;
                    for (int d = 0; d < hd; d++) s += q[h * hd + d] * kc[((size_t)l * n + j) * kv_dim + g * hd + d];
                    scores[j] = s / sqrt(hd);
                    if (c->pos_encoding == POS_ALIBI) scores[j] -= ref_slope(h, c->n_heads) * (pos - j);
                    if (scores[j] > max) max = scores[j];
                }
                for (int j = 0; j <= pos; j++) sum += scores[j] = exp(scores[j] - max);
                for (int d = 0; d < hd; d++) {
                    double o = 0;
                    for (int j = 0; j <= pos; j++) o += scores[j] / sum * vc[((size_t)l * n + j) * kv_dim + g * hd + d];
                    att[h * hd + d] = o;
                }
            }
            ref_matvec(tmp, att, m->wo + (size_t)l * dim * q_dim, q_dim, dim);
            for (int j = 0; j < dim; j++) x[j] += tmp[j];
            ref_rmsnorm(xb, x, m->rms_ffn + (size_t)l * dim, dim, c->norm_eps);
            ref_matvec(h1, xb, m->w1 + (size_t)l * hid * dim, dim, hid);
            ref_matvec(h3, xb, m->w3 + (size_t)l * hid * dim, dim, hid);
            for (int j = 0; j < hid; j++) h1[j] = h1[j] / (1 + exp(-h1[j])) * h3[j];
            ref_matvec(tmp, h1, m->w2 + (size_t)l * dim * hid, hid, dim);
            for (int j = 0; j < dim; j++) x[j] += tmp[j];
        }
        ref_rmsnorm(xb, x, m->rms_final, dim, c->norm_eps);
        ref_matvec(lg, xb, m->wcls, dim, c->vocab_size);
        for (int j = 0; j < c->vocab_size; j++) logits[(size_t)pos * c->vocab_size + j] = (float)lg[j];
    }
    free(kc); free(vc); free(x); free(xb); free(q); free(att); free(h1); free(h3); free(tmp); free(scores); free(lg);
    return logits;
}

/* razor's logits for all ids, processed in blocks of max_block, keys and values stored as kv_type */
static float *razor_logits_kv(const Model *model, const int *ids, int n, int max_block, KVType kv_type) {
    RunState s;
    CacheConfig full = {.policy = POLICY_FULL, .kv_type = kv_type};
    if (build_runstate(&s, model, n, max_block, &full) != 0) return NULL;
    size_t V = model->config.vocab_size;
    float *all = malloc((size_t)n * V * sizeof(float));
    for (int i = 0; i < n; i += s.max_block) {
        int T = n - i < s.max_block ? n - i : s.max_block;
        memcpy(all + (size_t)i * V, forward_block(model, &s, ids + i, T, 1, 0), (size_t)T * V * sizeof(float));
    }
    free_runstate(&s);
    return all;
}

static float *razor_logits(const Model *model, const int *ids, int n, int max_block) {
    return razor_logits_kv(model, ids, n, max_block, KV_F32);
}

static int *random_ids(int n, int vocab) {
    int *ids = malloc(n * sizeof(int));
    ids[0] = 1;
    for (int i = 1; i < n; i++) ids[i] = (int)((urand() + 1) * 0.5f * vocab) % vocab;
    return ids;
}

/* ---------------------------------------------------------------------------------------------
 * Tests */

/* The same weights in v0, v1 and razor files load to the same numbers. */
static void test_loaders_agree(void) {
    Config c = small_config(40, 72, 2, 4, 2, 97, 64);
    for (int tied = 0; tied <= 1; tied++) {
        c.shared_classifier = tied;
        TestModel tm = make_model(c, 7 + tied);
        const char *names[4] = {"v0.bin", "v1.bin", "razor.bin", "razor_v1.bin"};
        float *logits[4] = {0};
        int ids[] = {1, 5, 9, 33, 96, 0, 2, 50};
        for (int f = 0; f < 4; f++) {
            write_model(&tm, tmp_path(names[f]), f);
            Model m;
            int ok = load_model(&m, tmp_path(names[f])) == 0;
            check(ok, "load %s (tied=%d): %s", names[f], tied, ok ? "" : razor_error());
            if (!ok) continue;
            check(m.format == (f == FORMAT_RAZOR_V1 ? FORMAT_RAZOR : f) &&
                      m.version == (f == FORMAT_RAZOR ? RAZOR_VERSION : f == FORMAT_RAZOR_V1) &&
                      m.config.shared_classifier == tied && m.config.add_bos == 1 &&
                      m.config.vocab_size == 97 && m.config.head_dim == 10,
                  "%s: format %d, shared %d, vocab %d, head_dim %d", names[f], m.format, m.config.shared_classifier,
                  m.config.vocab_size, m.config.head_dim);
            check(memcmp(m.weights.wq.data, tm.wq, sizeof(float) * 40 * 40) == 0 &&
                      memcmp(m.weights.w2.data, tm.w2, sizeof(float) * 40 * 72) == 0 &&
                      memcmp(m.weights.wcls.data, tm.wcls, sizeof(float) * 97 * 40) == 0 &&
                      memcmp(m.weights.rms_final_weight, tm.rms_final, 40 * 4) == 0,
                  "%s: weights land where the format puts them", names[f]);
            logits[f] = razor_logits(&m, ids, 8, 128);
            free_model(&m);
        }
        if (logits[0] && logits[1] && logits[2] && logits[3])
            check(max_abs_diff(logits[0], logits[1], 8 * 97) == 0 && max_abs_diff(logits[0], logits[2], 8 * 97) == 0 &&
                      max_abs_diff(logits[0], logits[3], 8 * 97) == 0,
                  "llama2.c v0 and v1, razor v2 and v1 files give identical logits (tied=%d)", tied);
        for (int f = 0; f < 4; f++) free(logits[f]);
        free_test_model(&tm);
    }
}

/* razor against the reference forward pass, and batched against token-by-token, over shapes that
 * cover MHA/GQA/MQA, tied/untied, head_dim != dim/n_heads, theta and Llama 3 rope scaling. */
static void test_forward_matches_reference(void) {
    struct { const char *name; Config c;
    } cases[] = {
        {"MHA tied", small_config(40, 72, 2, 4, 4, 97, 300)},
        {"GQA 4/2 untied", small_config(48, 80, 2, 4, 2, 97, 300)},
        {"MQA 6/1", small_config(48, 64, 2, 6, 1, 97, 300)},
        {"head_dim 24 != dim/heads, theta 5e5", small_config(40, 72, 2, 4, 2, 97, 300)},
        {"llama3 rope scaling", small_config(64, 96, 1, 4, 2, 97, 300)},
        {"Qwen2-like: q/k/v biases, GQA 4/2, theta 1e6", small_config(48, 80, 2, 4, 2, 97, 300)},
        {"Qwen3-like: q/k RMSNorm per head, head_dim 24 != dim/heads, biases too",
         small_config(40, 72, 2, 4, 2, 97, 300)},
        {"ALiBi, 5 heads (slopes for a count that is not a power of two)", small_config(40, 72, 2, 5, 5, 97, 300)},
        {"ALiBi, GQA 6/2", small_config(48, 80, 2, 6, 2, 97, 300)},
        {"hidden_dim 2100: w2's inputs in two slices (BLOCK_J)", small_config(40, 2100, 1, 4, 4, 97, 300)},
    };
    cases[1].c.shared_classifier = 0;
    cases[3].c.head_dim = 24;
    cases[3].c.rope_theta = 500000.0f;
    cases[4].c.rope_scaling = 1;
    cases[4].c.rope_factor = 8;
    cases[4].c.rope_low_freq_factor = 1;
    cases[4].c.rope_high_freq_factor = 4;
    cases[4].c.rope_original_context = 64;
    cases[4].c.rope_theta = 500000.0f;
    cases[5].c.qkv_bias = 1;
    cases[5].c.rope_theta = 1e6f;
    cases[6].c.qk_norm = cases[6].c.qkv_bias = 1;
    cases[6].c.head_dim = 24;
    cases[7].c.pos_encoding = cases[8].c.pos_encoding = POS_ALIBI;
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        TestModel tm = make_model(cases[k].c, 100 + k);
        write_model(&tm, tmp_path("fwd.bin"), FORMAT_RAZOR);
        Model m;
        if (load_model(&m, tmp_path("fwd.bin")) != 0) {
            check(0, "%s: load: %s", cases[k].name, razor_error());
            continue;
        }
        int n = 150;
        int *ids = random_ids(n, 97);
        float *ref = ref_forward(&tm, ids, n), *batched = razor_logits(&m, ids, n, 128),
              *single = razor_logits(&m, ids, n, 1);
        float *odd = razor_logits(&m, ids, n, 37);
        float d_ref = max_abs_diff(ref, batched, (size_t)n * 97),
              d_single = max_abs_diff(batched, single, (size_t)n * 97);
        float d_odd = max_abs_diff(batched, odd, (size_t)n * 97), scale = max_abs_diff(ref, ref + 97, 97);
        check(d_ref <= 1e-4f, "%s: razor vs reference forward: max abs diff %g", cases[k].name, d_ref);
        check(d_single <= 1e-4f && d_odd <= 1e-4f, "%s: blocks of 128 vs 1 vs 37 tokens: %g, %g", cases[k].name,
              d_single, d_odd);
        check(scale > 0.1f, "%s: logits vary between positions (%g), so the comparison means something", cases[k].name,
              scale);
        /* 16-bit keys and values: close to the reference, not equal; the prompt and one-token paths agree */
        for (KVType kv = KV_BF16; kv <= KV_F16; kv++) {
            float *k16 = razor_logits_kv(&m, ids, n, 128, kv), *k16_single = razor_logits_kv(&m, ids, n, 1, kv);
            float d16 = max_abs_diff(ref, k16, (size_t)n * 97),
                  d16_paths = max_abs_diff(k16, k16_single, (size_t)n * 97);
            /* these random models attend sharply (logits ~ +-30): a key rounded to 8 (bf16) or 11 (f16)
             * significant bits moves a logit by up to ~1% or ~0.1%. The two paths may round a key differently
             * when their fp32 sums differ in the last bit, so they agree to a tenth of that. */
            float bound = kv == KV_F16 ? 0.1f : 1.0f;
            check(d16 > 1e-6f && d16 < bound && d16_paths <= bound / 10,
                  "%s, keys and values in %s: vs the reference %g (close, not equal); blocks of 128 vs 1: %g",
                  cases[k].name, kv == KV_F16 ? "f16" : "bf16", d16, d16_paths);
            free(k16); free(k16_single);
        }
        free(ref); free(batched); free(single); free(odd); free(ids);
        free_model(&m);
        free_test_model(&tm);
    }
}

/* -w bf16: the rounding itself, then razor with bf16 weights against the reference forward pass run
 * on the same weights rounded by ref_bf16 (the embedding lookup and the norms keep fp32, as in razor),
 * for the prompt path (blocks), the one-token path (dot_row) and a few-token block. */
static void test_bf16_weights(void) {
    float vals[] = {1.0f,
                    1.00390625f /* 1 + 2^-8: a tie, to even (down) */,
                    1.01171875f /* 1 + 3 * 2^-8: a tie, up */,
                    1.0039101f /* just above the tie */,
                    -2.5f,
                    3.4028235e38f /* rounds to infinity */,
                    INFINITY,
                    NAN,
                    1e-40f};
    uint16_t want[] = {0x3f80, 0x3f80, 0x3f82, 0x3f81, 0xc020, 0x7f80, 0x7f80, 0, 0x0001};
    int ok = 1;
    for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) {
        uint16_t h = f32_to_bf16(vals[i]);
        ok &= isnan(vals[i]) ? (h & 0x7f80) == 0x7f80 && (h & 0x7f) != 0 : h == want[i];
    }
    check(ok,
          "fp32 -> bf16 rounds to nearest even; overflow to infinity; NaN stays NaN; denormals keep their top bits");

    struct { const char *name; Config c; } cases[] = {
        {"MHA tied", small_config(40, 72, 2, 4, 4, 97, 300)},
        {"GQA 4/2 untied", small_config(48, 80, 2, 4, 2, 97, 300)},
        {"dim 160, hidden 288 (every dot_row loop)", small_config(160, 288, 1, 4, 2, 97, 300)},
        {"GQA 4/2 untied, dim 64", small_config(64, 96, 2, 4, 2, 97, 300)},
    };
    cases[1].c.shared_classifier = 0;
    cases[3].c.shared_classifier = 0;
    const char *how[3] = {"-w bf16 on a float32 file", "a bfloat16 file", "a q8 file"};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        Config c = cases[k].c;
        TestModel tm = make_model(c, 200 + k);
        int n = 150, *ids = random_ids(n, 97), q8_fits = c.dim % 32 == 0 && c.hidden_dim % 32 == 0;
        float *full = ref_forward(&tm, ids, n), *from_f32 = NULL;
        for (int way = 0; way < (q8_fits ? 3 : 2); way++) {
            int type = way == 2 ? WEIGHT_Q8 : WEIGHT_BF16;
            tm.c.weight_type = way == 0 ? WEIGHT_F32 : type;
            write_model(&tm, tmp_path("typed.bin"), FORMAT_RAZOR);
            TestModel r = stored_model(&tm, type); /* the numbers the file (or -w bf16) holds */
            Model m;
            if (load_model(&m, tmp_path("typed.bin")) != 0 || (way == 0 && model_to_bf16(&m) != 0)) {
                check(0, "%s, %s: load: %s", cases[k].name, how[way], razor_error());
                free_stored_model(&r);
                continue;
            }
            /* q8 weights, and bf16 ones where the CPU multiplies bf16 pairs: razor rounds the matmuls'
             * inputs too; the same reference with them so */
            int rounds = way == 2 || BF16_ROUNDS_INPUTS;
            float *ref = ref_forward(&r, ids, n), *quantized = NULL, rounding_effect = 0;
            if (rounds) {
                ref_q8_inputs = way == 2, ref_bf16_inputs = way != 2;
                quantized = ref_forward(&r, ids, n);
                ref_q8_inputs = ref_bf16_inputs = 0;
                rounding_effect = max_abs_diff(ref, quantized, (size_t)n * 97);
            }
            const float *want = rounds ? quantized : ref;
            float *batched = razor_logits(&m, ids, n, 128), *single = razor_logits(&m, ids, n, 1),
                  *odd = razor_logits(&m, ids, n, 7);
            float d_ref = max_abs_diff(want, batched, (size_t)n * 97),
                  d_single = max_abs_diff(want, single, (size_t)n * 97);
            float d_odd = max_abs_diff(want, odd, (size_t)n * 97), d_fp32 = max_abs_diff(ref, full, (size_t)n * 97);
            float big = 0;
            for (size_t i = 0; i < (size_t)n * 97; i++) big = fabsf(ref[i]) > big ? fabsf(ref[i]) : big;
            float tol = 1e-4f * (big > 10 ? big / 10 : 1); /* fp32 sums: the error grows with the logits */
            /* q8: the sums go in another order (q * x over a group, then scales): twice that. And razor's
             * inputs are float32 where the reference's are double: where one lies within their difference
             * of a rounding boundary (x / scale near k + 1/2: about 1 input in 10^4 here), the two round it
             * to neighbours, both half a step off. Then razor's inputs are one more rounding of the same
             * kind, differing from the reference's in a few of the inputs whose roundings, all together,
             * move the logits by rounding_effect (the reference with and without them; these random models
             * attend sharply, so that is 2-6% of their largest logit): a few of hundreds per position move
             * them by a fraction of it, for which rounding_effect / 2 leaves room (measured: 0.11-0.13).
             * bf16 inputs (a CPU with AVX512-BF16) are the same case with bf16's rounding boundaries. */
            float tol_q8_sums = 2 * tol;
            if (rounds) tol = tol_q8_sums + rounding_effect / 2;
            check(d_ref <= tol && d_single <= tol && d_odd <= tol,
                  "%s, %s: razor vs reference on the stored weights%s, blocks of 128 / 1 / 7: %g, %g, %g "
                  "(tolerance %g)",
                  cases[k].name, how[way], rounds ? " and inputs" : "", d_ref, d_single, d_odd, tol);
            if (rounds) { /* -A f32: the weights widened, the inputs not rounded: the reference itself */
                f32_inputs = 1;
                float *wide = razor_logits(&m, ids, n, 128), *wide_single = razor_logits(&m, ids, n, 1);
                f32_inputs = 0;
                float d_wide = fmaxf(max_abs_diff(ref, wide, (size_t)n * 97),
                                     max_abs_diff(ref, wide_single, (size_t)n * 97));
                check(d_wide <= tol_q8_sums, "%s, %s, -A f32: razor vs reference on the stored weights, blocks of "
                      "128 / 1: %g (tolerance %g)", cases[k].name, how[way], d_wide, tol_q8_sums);
                free(wide); free(wide_single);
            }
            if (rounds)
                check(rounding_effect > 4 * d_ref, "%s, %s: rounding the inputs moves the reference's logits by %g, "
                      "well beyond razor's distance from it (%g), so the test sees that razor does it", cases[k].name,
                      how[way], rounding_effect, d_ref);
            check(d_fp32 > 1e-3f, "%s, %s: and rounding does change the logits (by %g vs fp32), so the test sees it",
                  cases[k].name, how[way], d_fp32);
            if (way == 0) from_f32 = batched;
            if (way == 1)
                check(from_f32 && memcmp(from_f32, batched, (size_t)n * 97 * sizeof(float)) == 0,
                      "%s: a bfloat16 file gives bit for bit the logits of -w bf16 on the float32 file", cases[k].name);
            free(ref); free(quantized); free(single); free(odd);
            if (way != 0) free(batched);
            free_stored_model(&r);
            free_model(&m);
        }
        tm.c.weight_type = WEIGHT_F32;
        free(from_f32); free(full); free(ids);
        free_test_model(&tm);
    }
}

/* plan_attention: every job once, on a thread that exists, with its cost (the keys its queries see),
 * and no thread given more than LPT's bound, 4/3 of the best split's lower bound (the largest job, or
 * the total over the threads). The heads are lopsided as after RazorAttention's compression: a few
 * long retrieval heads among short compressed ones, next to one another, as round robin splits badly. */
static void test_attention_plan(void) {
    Config c = {.n_heads = 12, .n_kv_heads = 6, .n_layers = 2};
    HeadCache heads[12] = {{0}};
    for (int i = 0; i < 12; i++) heads[i].n = i == 7 || i == 9 ? 16000 : i == 11 ? 9000 : 3300;
    int ok = 1;
    for (int threads = 2; threads <= 5; threads++)
        for (int T = 1; T <= 3 * ATT_TILE_Q + 5; T += 3 * ATT_TILE_Q + 4) {
            int tiles = (T + ATT_TILE_Q - 1) / ATT_TILE_Q, n_jobs = c.n_heads * tiles, seen[12 * 4] = {0};
            RunState s = {.heads = heads, .att_jobs = calloc((size_t)n_jobs, sizeof(AttentionJob)),
                          .att_load = calloc((size_t)threads, sizeof(long))};
            pool_start(threads);
            int used = pool_threads; /* 1 without pthreads */
            plan_attention(&s, &c, 1, T);
            pool_stop();
            long load[5] = {0}, total = 0, largest = 0;
            for (int k = 0; k < n_jobs; k++) {
                AttentionJob j = s.att_jobs[k];
                int q0 = (j.job % tiles) * ATT_TILE_Q, nq = T - q0 < ATT_TILE_Q ? T - q0 : ATT_TILE_Q;
                const HeadCache *hc = &heads[6 + (j.job / tiles) / 2];
                long cost = (long)nq * (hc->n - T + q0 + nq);
                ok &= j.job >= 0 && j.job < n_jobs && j.thread >= 0 && j.thread < used && j.cost == cost;
                if (!ok) break;
                seen[j.job]++;
                load[j.thread] += cost;
                total += cost;
                largest = cost > largest ? cost : largest;
            }
            for (int k = 0; k < n_jobs && ok; k++) ok &= seen[k] == 1;
            double bound = (double)(largest > total / used ? largest : total / used) * 4 / 3 + n_jobs;
            for (int t = 0; t < used && ok; t++) ok &= load[t] <= bound;
            free(s.att_jobs); free(s.att_load);
        }
    check(ok, "plan_attention: each job once, its cost the keys its queries see, every thread within LPT's 4/3 "
              "bound, for 2 to 5 threads, 1 and %d tokens, two retrieval heads among compressed ones",
          3 * ATT_TILE_Q + 5);
}

/* Threads split rows and heads; the numbers must not change: float32 weights, and -w bf16's (on a CPU
 * with AVX512-BF16, its inputs rounded by all threads and bf16_tile). */
static void test_threads_same_numbers(void) {
    TestModel tm = make_model(small_config(48, 80, 2, 4, 2, 97, 200), 5);
    write_model(&tm, tmp_path("thr.bin"), FORMAT_RAZOR);
    int *ids = random_ids(150, 97);
    for (int bf16 = 0; bf16 <= 1; bf16++) {
        Model m;
        load_model(&m, tmp_path("thr.bin"));
        if (bf16) model_to_bf16(&m);
        float *one = razor_logits(&m, ids, 150, 64);
        pool_start(3);
        float *three = razor_logits(&m, ids, 150, 64);
        pool_stop();
        check(max_abs_diff(one, three, 150 * 97) == 0, "%s weights: 1 thread and 3 threads give identical logits",
              bf16 ? "-w bf16" : "float32");
        free(one); free(three);
        free_model(&m);
    }
    free(ids);
    free_test_model(&tm);
}

/* A head's cache holding keys and values (n, hd) at positions 0 .. n-1, stored as `type`. */
static HeadCache cache_of(const float *k, const float *v, int n, int hd, KVType type) {
    HeadCache h;
    head_init(&h, type, hd, n); /* a RETRIEVAL_HEAD: every token in order */
    for (int j = 0; j < n; j++) put_slot(&h, j, k + (size_t)j * hd, v + (size_t)j * hd, (float)j, hd);
    h.n = n;
    return h;
}

/* The tiled attention loop against scores + softmax + weighted sum in double, for many lengths, with
 * and without ALiBi's bias; then against razor.c's attention_reference with a compensation slot, and
 * with 16-bit keys and values. */
static void test_tiled_attention(void) {
    /* 63: whole passes of ATT_VALUE_V vectors, then a single vector, then single dimensions, with every ISA's
     * VEC and ATT_VALUE_V; 112: one query's passes of 2 x ATT_VALUE_V vectors, then of ATT_VALUE_V (and with
     * AVX-512 a single vector) */
    int head_dims[] = {8, 10, 48, 63, 64, 112};
    int lengths[] = {1, 2, 15, 16, 17, 63, 64, 65, 100, 128, 129, 200, 257};
    float worst = 0;
    int cases = 0;
    for (size_t a = 0; a < sizeof head_dims / sizeof *head_dims; a++)
        for (size_t b = 0; b < sizeof lengths / sizeof *lengths; b++)
            for (int alibi = 0; alibi <= 1; alibi++) {
                int hd = head_dims[a], n_keys = lengths[b];
                float slope = alibi ? 0.3f : 0;
                for (int n_q = 1; n_q <= n_keys;
                     n_q = n_q < 5 ? n_q + 1 : n_q * 3) { /* the last n_q keys are the queries' own */
                    int n_past = n_keys - n_q;
                    float *q = random_tensor((size_t)n_q * hd, 2.0f, 0),
                          *k = random_tensor((size_t)n_keys * hd, 2.0f, 0);
                    float *v = random_tensor((size_t)n_keys * hd, 1.0f, 0),
                          *out = calloc((size_t)n_q * hd, sizeof(float));
                    float *ref = calloc((size_t)n_q * hd, sizeof(float)),
                          *scratch = calloc(ATT_SCRATCH(hd), sizeof(float));
                    HeadCache h = cache_of(k, v, n_keys, hd, KV_F32);
                    attention(out, hd, q, hd, n_q, &h, n_past, hd, slope, (float)n_past, scratch);
                    head_free(&h);
                    for (int i = 0; i < n_q; i++) {
                        int visible = n_past + i + 1;
                        double *s = calloc(visible, sizeof(double)), max = -INFINITY, sum = 0;
                        for (int j = 0; j < visible; j++) {
                            for (int d = 0; d < hd; d++) s[j] += (double)q[i * hd + d] * k[j * hd + d];
                            s[j] = s[j] / sqrt(hd) - (double)slope * (n_past + i - j);
                            if (s[j] > max) max = s[j];
                        }
                        for (int j = 0; j < visible; j++) sum += s[j] = exp(s[j] - max);
                        for (int d = 0; d < hd; d++) {
                            double o = 0;
                            for (int j = 0; j < visible; j++) o += s[j] / sum * v[j * hd + d];
                            ref[i * hd + d] = (float)o;
                        }
                        free(s);
                    }
                    float d = max_abs_diff(out, ref, (size_t)n_q * hd);
                    if (d > worst || d != d) worst = d;
                    cases++;
                    free(q); free(k); free(v); free(out); free(ref); free(scratch);
                }
            }
    check(worst <= 1e-5f,
          "tiled attention vs plain softmax over %d (head_dim, keys, queries, ALiBi or not) cases: max abs diff %g",
          cases, worst);
    /* razor.c's own scalar definition, attention_reference, against the fast loop: with and without a
     * compensation slot (in the first tile, or in a later one), keys and values in each type */
    const char *type_names[3] = {"f32", "bf16", "f16"};
    for (int type = KV_F32; type <= KV_F16; type++) {
        float worst_ref = 0, worst_f32 = 0;
        int ref_cases = 0;
        for (size_t a = 0; a < sizeof head_dims / sizeof *head_dims; a++)
            for (size_t b = 0; b < sizeof lengths / sizeof *lengths; b++)
                for (int comp = -1; comp <= 1; comp++) {
                    /* 7 queries, or (every other length) all of them: several query tiles, whose 16-bit key
                     * tiles are widened once per query tile */
                    int hd = head_dims[a], n_keys = lengths[b], n_q = n_keys < 7 || b % 2 ? n_keys : 7;
                    int n_past = n_keys - n_q;
                    float slope = comp > 0 ? 0.05f : 0;
                    float *q = random_tensor((size_t)n_q * hd, 2.0f, 0),
                          *k = random_tensor((size_t)n_keys * hd, 2.0f, 0);
                    float *v = random_tensor((size_t)n_keys * hd, 1.0f, 0),
                          *out = calloc((size_t)n_q * hd, sizeof(float));
                    float *ref = calloc((size_t)n_q * hd, sizeof(float)),
                          *ref32 = calloc((size_t)n_q * hd, sizeof(float)),
                          *scratch = calloc(ATT_SCRATCH(hd), sizeof(float));
                    HeadCache h = cache_of(k, v, n_keys, hd, (KVType)type), h32 = cache_of(k, v, n_keys, hd, KV_F32);
                    if (comp >= 0) { /* slot n_sink is a compensation slot standing for 3 + n_keys tokens */
                        h.compensate = h32.compensate = 1;
                        h.state = h32.state = COMPRESSED_HEAD;
                        h.n_sink = h32.n_sink = comp == 0 ? 0 : n_keys / 2;
                        h.n_dropped = h32.n_dropped = 3 + n_keys;
                    }
                    attention(out, hd, q, hd, n_q, &h, n_past, hd, slope, (float)n_past, scratch);
                    attention_reference(ref, hd, q, hd, n_q, &h, n_past, hd, slope, (float)n_past);
                    attention_reference(ref32, hd, q, hd, n_q, &h32, n_past, hd, slope, (float)n_past);
                    float d = max_abs_diff(out, ref, (size_t)n_q * hd),
                          d32 = max_abs_diff(out, ref32, (size_t)n_q * hd);
                    if (d > worst_ref || d != d) worst_ref = d;
                    if (d32 > worst_f32 || d32 != d32) worst_f32 = d32;
                    ref_cases++;
                    head_free(&h);
                    head_free(&h32);
                    free(q); free(k); free(v); free(out); free(ref); free(ref32); free(scratch);
                }
        check(worst_ref <= 1e-5f,
              "attention() vs razor.c's attention_reference() over %d cases (compensation slot, ALiBi), keys and "
              "values in %s: max abs diff %g",
              ref_cases, type_names[type], worst_ref, worst_f32);
        float bound = type == KV_F32 ? 1e-5f : type == KV_F16 ? 2e-2f : 1e-1f;
        check(type == KV_F32 ? worst_f32 <= bound : worst_f32 <= bound && worst_f32 > 1e-5f,
              "keys and values in %s move attention's output by at most %g here (%g; and not by nothing)",
              type_names[type], bound, worst_f32);
    }
}

/* attention_online (razor.c section 4) against attention_reference and against the tiled loop, on the
 * same heads: a retrieval head (-c full), and heads compressed by razor, nocomp and streaming (with and
 * without the compensation slot; the window ring slid part way), each also too short to compress; with
 * and without ALiBi; keys and values in each type; one query and a block of three. The three sum in
 * different orders (one score row; a rescale per tile of 64 keys; vectors of keys and queries), so they
 * agree to float rounding, not bit for bit: the outputs are weighted means of values in [-1, 1], sums of
 * at most a few hundred terms each rounded at 2^-24, so 1e-5 is far above their rounding and far below a
 * real error (a rescale left out, or a key missed, moves an output by 1e-2 or more). */
static void test_online_attention(void) {
    const int head_dims[] = {8, 63, 64}, lengths[] = {1, 30, 63, 64, 65, 200};
    float worst_ref = 0, worst_fast = 0;
    int cases = 0;
    for (int type = KV_F32; type <= KV_F16; type++)
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 6; b++)
                for (int policy = POLICY_FULL; policy <= POLICY_NOCOMP; policy++)
                    for (int alibi = 0; alibi <= 1; alibi++) {
                        int hd = head_dims[a], n = lengths[b], extra = 5;
                        float slope = alibi ? 0.05f : 0;
                        float *K = random_tensor((size_t)(n + extra) * hd, 2.0f, 0),
                              *V = random_tensor((size_t)(n + extra) * hd, 1.0f, 0),
                              *Q = random_tensor((size_t)3 * hd, 2.0f, 0);
                        HeadCache h;
                        head_init(&h, (KVType)type, hd, ATT_TILE_K);
                        CacheConfig cache = {.policy = (Policy)policy, .n_sink = 4};
                        choose_head_caches(&h, 1, &cache);
                        for (int t = 0; t < n; t++)
                            head_append(&h, K + (size_t)t * hd, V + (size_t)t * hd, (float)t, hd, 0);
                        head_compress(&h, 16, hd); /* a prompt of n tokens, then a window of 16 */
                        for (int t = n; t < n + extra; t++) /* generation: the window slides */
                            head_append(&h, K + (size_t)t * hd, V + (size_t)t * hd, (float)t, hd, 1);
                        float ref[3 * 64], online[3 * 64], fast[3 * 64];
                        float *scratch = calloc(ATT_SCRATCH(hd), sizeof(float));
                        for (int n_q = 1; n_q <= 3 && n_q <= h.n; n_q += 2) {
                            int n_past = h.n - n_q;
                            float q_position = (float)(n + extra - n_q);
                            attention_reference(ref, hd, Q, hd, n_q, &h, n_past, hd, slope, q_position);
                            attention_online(online, hd, Q, hd, n_q, &h, n_past, hd, slope, q_position);
                            attention(fast, hd, Q, hd, n_q, &h, n_past, hd, slope, q_position, scratch);
                            float d_ref = max_abs_diff(online, ref, (size_t)n_q * hd),
                                  d_fast = max_abs_diff(online, fast, (size_t)n_q * hd);
                            if (d_ref > worst_ref || d_ref != d_ref) worst_ref = d_ref;
                            if (d_fast > worst_fast || d_fast != d_fast) worst_fast = d_fast;
                            cases++;
                        }
                        free(scratch); free(K); free(V); free(Q);
                        head_free(&h);
                    }
    check(worst_ref <= 1e-5f && worst_fast <= 1e-5f,
          "attention_online() vs attention_reference() and vs the tiled attention() over %d cases (every policy, "
          "short and compressed heads, ALiBi, every KV type): max abs diff %g and %g",
          cases, worst_ref, worst_fast);
}

/* matmul (every kernel: dot_row for one token, dot_tile for a few, block_tile for a block, whose
 * inputs go in slices of 2048; q8_tile for q8 weights; bf16_tile where the CPU multiplies bf16 pairs)
 * against razor.c's matmul_reference, for float32, bfloat16 and (-A f32) q8 weights, and
 * matmul_q8_reference for q8 weights with int8 inputs, plain and adding into out; bf16 weights by
 * default (inputs rounded to bf16 where the CPU multiplies bf16 pairs: the reference gets them rounded
 * too) and with -A f32, also for rows of 2093 = 65 x 32 + 13 inputs (bf16_tile's masked end); and
 * swiglu against swiglu_reference. The fast kernels sum in another order (vectors, several partial
 * sums), so they agree to float rounding: over 2080-term dot products, each rounded at 2^-24, within
 * 1e-5 of the largest output (a missed term moves one by ~1e-3; an unrounded input among the rounded,
 * by ~1e-3 of itself). */
static void test_matmul_reference(void) {
    int n = 2080, d = 37, tokens[] = {1, 3, 7, 16, 50};
    float *w32 = random_tensor((size_t)d * 2093, 0.5f, 0);
    float *scale = random_tensor((size_t)d * n / Q8_GROUP, 0.01f, 0.02f);
    uint16_t *w16 = malloc((size_t)d * 2093 * sizeof(uint16_t));
    int8_t *w8 = malloc((size_t)d * n);
    for (size_t i = 0; i < (size_t)d * 2093; i++) w16[i] = f32_to_bf16(w32[i]);
    for (size_t i = 0; i < (size_t)d * n; i++) w8[i] = (int8_t)lroundf(127 * w32[i]);
    Matrix ws[3] = {{w32, NULL, WEIGHT_F32, (size_t)d * n}, {w16, NULL, WEIGHT_BF16, (size_t)d * 2093},
                    {w8, scale, WEIGHT_Q8, (size_t)d * n}};
    float worst = 0;
    for (int k = 0; k < 7; k++) /* k = 3: q8 weights, -A f32; 4: bf16, -A f32; 5, 6: bf16, 2093 inputs */
        for (size_t a = 0; a < sizeof tokens / sizeof *tokens; a++)
            for (int add = 0; add <= 1; add++) {
                int T = tokens[a], m = k >= 5 ? 2093 : n, type = k == 3 ? 2 : k >= 4 ? 1 : k;
                float *x = random_tensor((size_t)T * m, 1.0f, 0), *out = random_tensor((size_t)T * d, 1.0f, 0);
                float *ref = malloc((size_t)T * d * sizeof(float)), *xt = calloc((size_t)m * matmul_padded(T), 4);
                float *before = memcpy(malloc((size_t)T * d * sizeof(float)), out, (size_t)T * d * sizeof(float));
                Product product = {out, ws[type], d, add};
                f32_inputs = k == 3 || k == 4 || k == 6;
                int rounded = BF16_ROUNDS_INPUTS && type == 1 && !f32_inputs;
                matmul(x, xt, T, m, &product, 1);
                f32_inputs = 0;
                for (size_t i = 0; rounded && i < (size_t)T * m; i++) x[i] = bf16_to_f32(f32_to_bf16(x[i]));
                if (k == 2) matmul_q8_reference(ref, x, ws[k], T, n, d); /* its input quantized, as matmul does */
                else matmul_reference(ref, x, ws[type], T, m, d);
                for (int i = 0; i < T * d; i++) ref[i] += add ? before[i] : 0;
                float largest = 1;
                for (int i = 0; i < T * d; i++) largest = fmaxf(largest, fabsf(ref[i]));
                float diff = max_abs_diff(out, ref, (size_t)T * d) / largest;
                if (diff > worst || diff != diff) worst = diff;
                free(x); free(out); free(ref); free(xt); free(before);
            }
    check(worst <= 1e-5f, "matmul vs matmul_reference (f32, bf16 with rounded and -A f32's float32 inputs, 2080 "
                          "and 2093 of them, q8 with int8 and float32 inputs; 1 to 50 tokens; plain and add): "
                          "max diff %g of the largest output", worst);
    float *hb = random_tensor(37, 4.0f, 0), *hb2 = random_tensor(37, 1.0f, 0);
    float *plain = memcpy(malloc(37 * sizeof(float)), hb, 37 * sizeof(float));
    swiglu(hb, hb2, 37);
    swiglu_reference(plain, hb2, 37);
    float swiglu_diff = max_abs_diff(hb, plain, 37);
    check(swiglu_diff <= 1e-6f, "swiglu vs swiglu_reference (37 values: vectors and a tail): max abs diff %g",
          swiglu_diff);
    free(w32); free(scale); free(w16); free(w8); free(hb); free(hb2); free(plain);
}

/* q8 x q8 (appendix F). dot_i8, whichever instruction model.h chose for this build, gives exactly the int32
 * sums a plain loop gives, lane by lane (lane 8j + l: bytes 4l to 4l + 3 of group j, which q8's blocked
 * layout relies on), one group or Q8_STEP at a time (lanes of the groups not asked for 0), and so does
 * dot_i8_plain: random groups, weights of -128, and the extremes (32 x 128 x 127 = 520192 in magnitude).
 * quantize_q8: zero groups give scale 0 and q 0; each value within half a step of q * scale, the largest
 * at +-127, for huge, ordinary, tiny and subnormal magnitudes; an inf or NaN makes the scale so. matmul
 * with every scale 1 (inputs integers, each group's largest 127) gives the integer sums exactly (every
 * partial sum stays below 2^24), for row lengths of 1 to 176 groups (one-token rounds of 4 groups: whole,
 * short, none; the blocked layout's blocks of 8 groups: none, one and a group over, a chunk of 64 and one
 * over, 22 in three chunks, whose 83 rows take two copies on one thread), rows and tokens that do and do
 * not fill a tile (AMX: 16 x 16), and threads; all-zero inputs or weight groups of scale 0 give 0, not
 * NaN. Then matmul against matmul_q8_reference with random scales and inputs from 1e-30 to 1e30, in rows
 * of 65 groups (q8_tile makes the products of scales 64 groups at a time: a whole chunk, then one group). */
static const char *amx_state(void) { /* which kernel multiplies q8 weights into blocks of tokens here */
#ifdef RAZOR_AMX
    return amx_granted() ? "AMX tdpbssd" : "dot_i8 (this build has AMX, Linux did not grant it)";
#else
    return "dot_i8 (no AMX in this build)";
#endif
}
static void test_q8_kernels(void) {
    uint64_t rng = 77;
    int dot_ok = 1;
    for (int trial = 0; trial < 2000; trial++) {
        int8_t w[32 * Q8_STEP], x[32 * Q8_STEP];
        int32_t want[Q8_STEP] = {0}, want_lane[8 * Q8_STEP] = {0};
        int steps = 1 + trial % Q8_STEP; /* groups in this dot_i8: 1, or (AVX-512) 2 */
        for (int k = 0; k < 32 * Q8_STEP; k++) {
            int kind = (trial + k / 32) % 4, rw = (int)(random_f32(&rng) * 256) - 128;
            int rx = (int)(random_f32(&rng) * 255) - 127;
            w[k] = (int8_t)(kind == 0 ? rw : kind == 3 ? (rw < 0 ? -128 : 127) : -128);
            x[k] = (int8_t)(kind == 0 ? rx : kind == 1 ? 127 : kind == 2 ? -127 : (rx < 0 ? -127 : 127));
            want[k / 32] += w[k] * x[k];
            want_lane[k / 4] += w[k] * x[k];
        }
        i32xstep a;
        dot_i8(&a, q8_weights(w, steps), x, steps);
        for (int j = 0; j < Q8_STEP; j++) {
            i32x8 b;
            int32_t fast = 0, plain = 0;
            dot_i8_plain(&b, w + 32 * j, x + 32 * j);
            for (int l = 0; l < 8; l++) {
                fast += a[8 * j + l];
                plain += b[l];
                dot_ok &= b[l] == want_lane[8 * j + l] && (j >= steps || a[8 * j + l] == want_lane[8 * j + l]);
            }
            dot_ok &= plain == want[j] && (j >= steps || fast == want[j]);
            for (int l = 0; l < 8 && j >= steps; l++) dot_ok &= a[8 * j + l] == 0; /* a group not asked for */
        }
    }
    check(dot_ok, "dot_i8 (%s; Q8_STEP %d) and dot_i8_plain: the exact int32 sum of 32 int8 products per group, "
                  "and of 4 per lane, 0 past the groups asked for; 2000 steps (random; w = -128 with x = +-127; "
                  "+-127/-128 mixed)",
                  RAZOR_DOT_I8, Q8_STEP);

    enum { G = 8 };
    float xs[G * 32], scale[G];
    int8_t q[G * 32];
    float magnitude[G] = {0, 1, 3e38f, 1e-30f, 1e-40f, 5, 1, 1};
    for (int g = 0; g < G; g++)
        for (int k = 0; k < 32; k++) xs[g * 32 + k] = magnitude[g] * (2 * random_f32(&rng) - 1);
    xs[5 * 32 + 7] = 5; /* the largest exactly at the scale's 127 */
    xs[6 * 32 + 3] = INFINITY;
    xs[7 * 32 + 30] = NAN;
    quantize_q8(q, scale, xs, 0, G);
    int zero_ok = scale[0] == 0, round_ok = 1, max_ok = q[5 * 32 + 7] == 127;
    for (int k = 0; k < 32; k++) zero_ok &= q[k] == 0;
    for (int g = 1; g <= 5; g++) {
        float largest = 0;
        for (int k = 0; k < 32; k++) {
            float v = xs[g * 32 + k], err = fabsf(v - q[g * 32 + k] * scale[g]);
            round_ok &= q[g * 32 + k] >= -127 && err <= scale[g] / 2 * (1 + 1e-6f) + 127 * 0x1p-149f;
            largest = fmaxf(largest, fabsf(v));
        }
        round_ok &= scale[g] > 0 && fabsf(scale[g] * 127 - largest) <= largest * 1e-6f + 127 * 0x1p-149f;
    }
    int bad_ok = isinf(scale[6]) && isnan(scale[7]);
    for (int k = 0; k < 64; k++) bad_ok &= q[6 * 32 + k] == 0;
    check(zero_ok && round_ok && max_ok && bad_ok,
          "quantize_q8: a zero group gives scale 0 and q 0 (%d); values within half a step, for magnitudes 1, 3e38, "
          "1e-30, 1e-40 (%d); the largest at 127 (%d); inf and NaN in a group make its scale so (%d)",
          zero_ok, round_ok, max_ok, bad_ok);

    int lengths[] = {32, 96, 128, 160, 288, 2080, 5632}, tokens[] = {1, 2, 3, 4, 5, 9, 16, 17, 33, 64, 67};
    int d = 83, exact_ok = 1;
    for (size_t a = 0; a < sizeof lengths / sizeof *lengths; a++) {
        int n = lengths[a], groups = n / 32;
        int8_t *w = malloc((size_t)d * n);
        float *ones = malloc((size_t)d * groups * sizeof(float));
        for (int i = 0; i < d * n; i++) w[i] = (int8_t)((int)(random_f32(&rng) * 256) - 128);
        for (int i = 0; i < d * groups; i++) ones[i] = i % 5 == 4 ? 0 : 1; /* some weight groups of scale 0 */
        Matrix m = {w, ones, WEIGHT_Q8, (size_t)d * n};
        for (size_t b = 0; b < sizeof tokens / sizeof *tokens; b++)
            for (int threads = 1; threads <= 3; threads += 2) {
                int T = tokens[b];
                float *x = malloc((size_t)T * n * sizeof(float)), *out = malloc((size_t)T * d * sizeof(float));
                float *xt = calloc((size_t)n * matmul_padded(T), sizeof(float));
                for (int i = 0; i < T * n; i++)
                    x[i] = i / n == 1 ? 0 : i % 32 == 0 ? 127 : (float)((int)(random_f32(&rng) * 101) - 50);
                Product p = {out, m, d, 0};
                if (threads > 1) pool_start(threads);
                matmul(x, xt, T, n, &p, 1);
                if (threads > 1) pool_stop();
                for (int t = 0; t < T; t++)
                    for (int i = 0; i < d; i++) {
                        int64_t want = 0;
                        for (int k = 0; k < n; k++)
                            want += (int64_t)(ones[i * groups + k / 32] != 0) * w[i * n + k] * (int)x[t * n + k];
                        exact_ok &= out[t * d + i] == (float)want;
                    }
                free(x); free(out); free(xt);
            }
        free(w); free(ones);
    }
    check(exact_ok, "matmul, q8 weights, every scale 1 or 0: the exact integer sums, for rows of 1, 3, 4, 5, 9, 65 "
                    "and 176 groups, 83 rows (5 x 16 + 3), 1 to 67 tokens (one all zero; from 16 on, the blocked "
                    "layout where not on AMX), 1 and 3 threads; blocks of 16 tokens or more: %s", amx_state());

    int n = 2080, groups = n / 32;
    float worst = 0;
    int8_t *w = malloc((size_t)d * n);
    float *ws = random_tensor((size_t)d * groups, 0.01f, 0.02f);
    for (int i = 0; i < d * n; i++) w[i] = (int8_t)((int)(random_f32(&rng) * 256) - 128);
    Matrix m = {w, ws, WEIGHT_Q8, (size_t)d * n};
    for (size_t b = 0; b < sizeof tokens / sizeof *tokens; b++) {
        int T = tokens[b];
        float *x = random_tensor((size_t)T * n, 1.0f, 0), *out = malloc((size_t)T * d * sizeof(float));
        float *ref = malloc((size_t)T * d * sizeof(float)), *xt = calloc((size_t)n * matmul_padded(T), sizeof(float));
        for (int t = 0; t < T; t++)
            for (int k = 0; k < n; k++) x[t * n + k] *= t % 3 == 0 ? 1e30f : t % 3 == 1 ? 1e-30f : 1;
        Product p = {out, m, d, 0};
        matmul(x, xt, T, n, &p, 1);
        matmul_q8_reference(ref, x, m, T, n, d);
        for (int t = 0; t < T; t++) { /* each token to 1e-5 of its largest output: the sums in another order */
            float largest = 0;
            for (int i = 0; i < d; i++) largest = fmaxf(largest, fabsf(ref[t * d + i]));
            float diff = max_abs_diff(out + t * d, ref + t * d, (size_t)d) / largest;
            if (diff > worst || diff != diff) worst = diff;
        }
        free(x); free(out); free(ref); free(xt);
    }
    check(worst <= 1e-5f, "matmul vs matmul_q8_reference, q8 weights, inputs of 1e30, 1 and 1e-30, 1 to 67 tokens: max "
                          "diff %g of each token's largest output (%s)", worst, amx_state());
    free(w); free(ws);
}

/* move_slots shifts a window by a slot or two within the same head: overlapping ranges, both ways;
 * each slot's position moves with it. */
static void test_move_slots(void) {
    int hd = 6, n = 40, slots = 10 + n + 3;
    float *K = malloc((size_t)slots * hd * sizeof(float)), *V = malloc((size_t)slots * hd * sizeof(float));
    for (int i = 0; i < slots; i++) /* slot i holds key 1000 i + d and value -(1000 i + d), at position i */
        for (int d = 0; d < hd; d++) {
            K[i * hd + d] = (float)(1000 * i + d);
            V[i * hd + d] = (float)(-1000 * i - d);
        }
    for (int shift = -3; shift <= 3; shift++) {
        HeadCache h = cache_of(K, V, slots, hd, KV_F32);
        int from = 10, to = from + shift, ok = 1;
        move_slots(&h, to, from, n, hd);
        for (int i = 0; i < n; i++) {
            float key[6], value[6];
            get_slot(&h, to + i, key, value, hd);
            ok &= h.position[to + i] == (float)(from + i);
            for (int d = 0; d < hd; d++)
                ok &= key[d] == (float)(1000 * (from + i) + d) && value[d] == (float)(-1000 * (from + i) - d);
        }
        check(ok, "move_slots by %d slots over an overlapping range keeps every key, value and position", shift);
        head_free(&h);
    }
    free(K);
    free(V);
}

/* ---------------------------------------------------------------------------------------------
 * Tokenizer */

/* The naive encoder: llama2.c's loop (merge the best adjacent pair, rescanning the whole list each
 * time), with sentencepiece's rule that only normal pieces are merge results. */
static int naive_encode(const Tokenizer *t, const char *text, int *out) {
    int n = 0, cap = (int)strlen(text) + 2;
    char **sym = malloc(cap * sizeof(char *));
    char *s = malloc(strlen(text) + 2);
    sprintf(s, " %s", text);
    for (size_t i = 0; s[i];) {
        unsigned char c = (unsigned char)s[i];
        size_t want = c >= 0xF0 && c < 0xF8 ? 4 : c >= 0xE0 && c < 0xF0 ? 3 : c >= 0xC0 && c < 0xE0 ? 2 : 1, l = 1;
        while (l < want && s[i + l] && ((unsigned char)s[i + l] & 0xC0) == 0x80) l++;
        sym[n] = strndup(s + i, l);
        n++;
        i += l;
    }
    free(s);
    for (;;) {
        float best = -INFINITY;
        int at = -1;
        for (int i = 0; i + 1 < n; i++) {
            size_t la = strlen(sym[i]), lb = strlen(sym[i + 1]);
            for (int id = 3; id < t->vocab_size; id++) { /* ids 0-2 are control pieces */
                const char *p = t->piece[id];
                if ((size_t)t->length[id] == la + lb && memcmp(p, sym[i], la) == 0 &&
                    memcmp(p + la, sym[i + 1], lb) == 0 &&
                    !(t->length[id] == 6 && p[0] == '<' && p[1] == '0' && p[2] == 'x') && t->score[id] > best) {
                    best = t->score[id];
                    at = i;
                }
            }
        }
        if (at < 0) break;
        char *merged = malloc(strlen(sym[at]) + strlen(sym[at + 1]) + 1);
        sprintf(merged, "%s%s", sym[at], sym[at + 1]);
        free(sym[at]);
        free(sym[at + 1]);
        sym[at] = merged;
        memmove(sym + at + 1, sym + at + 2, (n - at - 2) * sizeof(char *));
        n--;
    }
    int count = 0;
    for (int i = 0; i < n; i++) {
        int id = -1;
        for (int v = 3; v < t->vocab_size && id < 0; v++)
            if ((size_t)t->length[v] == strlen(sym[i]) && memcmp(t->piece[v], sym[i], t->length[v]) == 0) id = v;
        if (id >= 0) out[count++] = id;
        else for (const char *p = sym[i]; *p; p++) out[count++] = 3 + (unsigned char)*p;
        free(sym[i]);
    }
    free(sym);
    return count;
}

static char *decode_all(const Tokenizer *t, const int *ids, int n) {
    size_t cap = 16, len = 0;
    for (int i = 0; i < n; i++) cap += t->length[ids[i]] + 1;
    char *s = calloc(cap, 1);
    for (int i = 1; i < n; i++) {
        int nb;
        char buf[2];
        const char *p = decode(t, ids[i - 1], ids[i], &nb, buf);
        memcpy(s + len, p, nb);
        len += nb;
    }
    return s;
}

static void test_tokenizer(void) {
    Tokenizer t;
    if (load_tokenizer(&t, "tests/sp512/tokenizer.bin", TOKENIZER_VECTORS_VOCAB, 1, 2) != 0) {
        check(0, "load tokenizer.bin: %s", razor_error());
        return;
    }
    int ids[4096];
    int n_vec = sizeof tokenizer_vectors / sizeof *tokenizer_vectors, bad = 0;
    for (int v = 0; v < n_vec; v++) {
        int n = encode(&t, tokenizer_vectors[v].text, 0, ids);
        int same = n == tokenizer_vectors[v].n_ids && memcmp(ids, tokenizer_vectors[v].ids, n * sizeof(int)) == 0;
        if (!same) {
            bad++;
            printf("  sentencepiece mismatch on \"%s\" (%d ids vs %d)\n", tokenizer_vectors[v].text, n,
                   tokenizer_vectors[v].n_ids);
        }
    }
    check(bad == 0, "encode equals sentencepiece on %d fixed strings (%d differ)", n_vec, bad);
    int n = encode(&t, "hi", 1, ids);
    check(n >= 2 && ids[0] == 1, "BOS comes first");

    /* the heap encoder against the naive one, and round trips, on random text with odd bytes */
    const char *alphabet[] = {"the ", "and ",   "e", "t", "a",   " ",        "  ",           "\n",
                              "\t",   ",",      ".", "0", "42",  "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
                              "<s>",  "<0x41>", "Q", "z", "ing", "Mr. ",     "\xff",         "\x80"};
    int mismatches = 0, roundtrip_bad = 0;
    for (int trial = 0; trial < 40; trial++) {
        char text[600] = {0};
        int pieces = 1 + (int)((urand() + 1) * 40);
        for (int p = 0; p < pieces; p++) strcat(text, alphabet[(int)((urand() + 1) * 0.5f * 24) % 24]);
        int a = encode(&t, text, 0, ids);
        int b[4096], nb = naive_encode(&t, text, b);
        if (a != nb || memcmp(ids, b, a * sizeof(int)) != 0) mismatches++;
        int with_bos[4096], nw = encode(&t, text, 1, with_bos);
        char *back = decode_all(&t, with_bos, nw);
        if (strcmp(back, text) != 0) roundtrip_bad++;
        free(back);
    }
    check(mismatches == 0, "heap BPE equals the naive quadratic BPE on 40 random texts (%d differ)", mismatches);
    check(roundtrip_bad == 0, "decode(encode(text)) == text on 40 random texts (%d differ)", roundtrip_bad);

    /* 100 KB of text: encodes (in O(n log n); its speed is in make bench) and round-trips */
    size_t big_len = 100000;
    char *big = malloc(big_len + 1);
    for (size_t i = 0; i < big_len;) {
        const char *v = tokenizer_vectors[i % n_vec].text;
        size_t l = strlen(v);
        if (i + l + 1 > big_len) l = big_len - i - 1;
        memcpy(big + i, v, l);
        big[i + l] = ' ';
        i += l + 1;
    }
    big[big_len] = 0;
    int *big_ids = malloc((big_len + 3) * sizeof(int));
    int nbig = encode(&t, big, 1, big_ids);
    char *back = decode_all(&t, big_ids, nbig);
    check(strcmp(back, big) == 0 && nbig > 10000 && nbig < (int)big_len, "100 KB prompt: %d tokens, round trip exact",
          nbig);
    free(back); free(big); free(big_ids);
    free_tokenizer(&t);

    /* bad tokenizer files */
    char *data;
    FILE *f = fopen("tests/sp512/tokenizer.bin", "rb");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    data = malloc(size);
    fread(data, 1, size, f);
    fclose(f);
    struct { const char *what; long len; int vocab; } bad_cases[] = {
        {"truncated in the middle", size / 2, 512}, {"3 bytes", 3, 512}, {"one byte short", size - 1, 512},
        {"fewer pieces than the model", size, 600}, {"more pieces than the model", size, 300},
    };
    for (size_t k = 0; k < sizeof bad_cases / sizeof *bad_cases; k++) {
        f = fopen(tmp_path("tok.bin"), "wb");
        fwrite(data, 1, bad_cases[k].len, f);
        fclose(f);
        Tokenizer bt;
        check(load_tokenizer(&bt, tmp_path("tok.bin"), bad_cases[k].vocab, 1, 2) != 0 &&
                  strstr(razor_error(), "tok.bin"),
              "tokenizer %s is refused (%s)", bad_cases[k].what, razor_error());
    }
    int32_t neg = -5; /* the first piece's length, negative */
    memcpy(data + 8, &neg, 4);
    f = fopen(tmp_path("tok.bin"), "wb");
    fwrite(data, 1, size, f);
    fclose(f);
    Tokenizer bt;
    check(load_tokenizer(&bt, tmp_path("tok.bin"), 512, 1, 2) != 0,
          "tokenizer with a negative piece length is refused (%s)", razor_error());
    free(data);
}

/* Do the tokens' bytes (byte-level: raw, no BOS rule) spell text exactly? */
static int decodes_to(const Tokenizer *t, const int *ids, int n, const char *text) {
    size_t at = 0, len = strlen(text);
    for (int i = 0; i < n; i++) {
        int nb;
        char buf[2];
        const char *p = decode(t, -1, ids[i], &nb, buf);
        if (at + nb > len || memcmp(text + at, p, nb) != 0) return 0;
        at += nb;
    }
    return at == len;
}

/* Byte-level BPE (RZTK files from Hugging Face tokenizer.json) against the tokenizers library's ids
 * for three pre-tokenizers (tests/bbpe_vectors.h, made by tests/make_bbpe_vectors.js). */
static void test_byte_level_tokenizer(void) {
    const char *files[3] = {"tests/bbpe_tokenizer.bin", "tests/bbpe_tokenizer_gpt2.bin",
                            "tests/bbpe_tokenizer_qwen2.bin"};
    const BbpeVector *vectors[3] = {bbpe_vectors_llama3, bbpe_vectors_gpt2, bbpe_vectors_qwen2};
    for (int f = 0; f < 3; f++) {
        size_t size;
        unsigned char *head = slurp(files[f], &size);
        int32_t vocab, bos;
        memcpy(&vocab, head + 8, 4);
        memcpy(&bos, head + 12, 4);
        free(head);
        Tokenizer t;
        if (load_tokenizer(&t, files[f], vocab + 7, bos >= 0 ? bos : 0, 0) != 0) {
            check(0, "load %s: %s", files[f], razor_error());
            continue;
        }
        int ids[4096], again[4096], bad = 0, roundtrip_bad = 0;
        for (int v = 0; v < BBPE_VECTORS_COUNT; v++) {
            int n = encode(&t, vectors[f][v].text, 0, ids);
            if (n != vectors[f][v].n_ids || (n > 0 && memcmp(ids, vectors[f][v].ids, n * sizeof(int)) != 0)) {
                bad++;
                printf("  %s: mismatch on vector %d (%d ids vs %d)\n", files[f], v, n, vectors[f][v].n_ids);
            }
            if (n > 0 && !t.nfc.decomp) roundtrip_bad += !decodes_to(&t, ids, n, vectors[f][v].text);
            if (n > 0 && t.nfc.decomp) { /* NFC: the pieces spell the normalized text, which encodes to the same ids */
                char *back = calloc(4 * strlen(vectors[f][v].text) + 1, 1);
                size_t at = 0;
                for (int i = 0; i < n; i++) {
                    int nb;
                    char buf[2];
                    const char *p = decode(&t, -1, ids[i], &nb, buf);
                    memcpy(back + at, p, nb);
                    at += nb;
                }
                int m = encode(&t, back, 0, again);
                roundtrip_bad += m != n || memcmp(again, ids, n * sizeof(int)) != 0;
                free(back);
            }
        }
        check(bad == 0, "%s: encode equals Hugging Face tokenizers on %d strings (%d differ)", files[f],
              BBPE_VECTORS_COUNT, bad);
        check(roundtrip_bad == 0, "%s: the pieces decode back to the (normalized) text (%d differ)", files[f],
              roundtrip_bad);
        int n = encode(&t, "It is", 1, ids);
        check(n >= 2 && ids[0] == t.bos_id, "%s: BOS first", files[f]);
        char *big = malloc(100001);
        const char *unit = "The quick brown fox, 1234 jumps!\n  \xc3\xa9t\xc3\xa9 ";
        for (int i = 0; i < 100000; i++) big[i] = unit[i % strlen(unit)];
        big[100000] = 0;
        int *big_ids = malloc(100003 * sizeof(int)), nbig = encode(&t, big, 0, big_ids);
        check(nbig > 0 && decodes_to(&t, big_ids, nbig, big), "%s: 100 KB in %d tokens, decoded back exactly", files[f],
              nbig);
        free(big); free(big_ids);
        free_tokenizer(&t);
    }
    Tokenizer t;
    check(load_tokenizer(&t, files[0], 300, 1, 2) != 0 && strstr(razor_error(), "the model's vocabulary has 300"),
          "an RZTK file larger than the model's vocabulary is refused: %s", razor_error());
}

/* ---------------------------------------------------------------------------------------------
 * Bad model files: one clear error, never a crash */

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    fwrite(data, 1, n, f);
    fclose(f);
}

static void *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) { *n = 0; return NULL; }
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    rewind(f);
    void *d = malloc(*n + 1);
    *n = fread(d, 1, *n, f);
    fclose(f);
    return d;
}

/* A file's text, NUL-terminated ("" if it cannot be read); free it */
static char *slurp_text(const char *path) {
    size_t n;
    char *text = slurp(path, &n);
    if (!text) return calloc(1, 1);
    text[n] = 0;
    return text;
}

static void expect_refused(const char *what, const void *data, size_t n, const char *must_say) {
    write_bytes(tmp_path("bad.bin"), data, n);
    Model m;
    int rc = load_model(&m, tmp_path("bad.bin"));
    check(rc != 0 && strstr(razor_error(), "bad.bin") && strstr(razor_error(), must_say) &&
              !strchr(razor_error(), '\n'),
          "%s: refused, naming '%s' (got: %s)", what, must_say, rc ? razor_error() : "loaded!");
    if (rc == 0) free_model(&m);
}

static void test_bad_model_files(void) {
    TestModel tm = make_model(small_config(32, 48, 2, 4, 2, 97, 64), 3);
    for (int f = 0; f < 3; f++) {
        write_model(&tm, tmp_path("good.bin"), f);
        size_t n;
        unsigned char *d = slurp(tmp_path("good.bin"), &n);
        char what[64];
        snprintf(what, sizeof what, "format %d truncated by one byte", f);
        expect_refused(what, d, n - 1, "truncated");
        snprintf(what, sizeof what, "format %d cut inside its header", f);
        expect_refused(what, d, f == 0 ? 27 : 100, f == 0 ? "too small" : "truncated");
        snprintf(what, sizeof what, "format %d with a trailing byte", f);
        unsigned char *longer = calloc(n + 1, 1);
        memcpy(longer, d, n);
        expect_refused(what, longer, n + 1, "trailing");
        free(longer);
        int32_t v;
        int dims_at = f == 0 ? 0 : 8;
        memcpy(d + dims_at + 12, &(int32_t){3}, 4); /* n_heads 3 does not divide dim 32 / take n_kv 2 */
        snprintf(what, sizeof what, "format %d with n_heads 3, n_kv_heads 2", f);
        expect_refused(what, d, n, f == 0 ? "not a model file" : "n_kv_heads");
        memcpy(d + dims_at + 12, &(int32_t){4}, 4);
        v = 1 << 30; /* a hostile layer count: an error, not a 2^30-layer allocation */
        memcpy(d + dims_at + 8, &v, 4);
        snprintf(what, sizeof what, "format %d with 2^30 layers", f);
        expect_refused(what, d, n, f == 0 ? "not a model file" : "n_layers");
        free(d);
    }
    write_model(&tm, tmp_path("good.bin"), FORMAT_LLAMA2C_V0);
    size_t n;
    unsigned char *d = slurp(tmp_path("good.bin"), &n);
    memcpy(d + 20, &(int32_t){INT32_MIN}, 4);
    expect_refused("v0 with vocab_size INT_MIN", d, n, "not a model file");
    memcpy(d + 20, &(int32_t){97}, 4);
    memcpy(d + 24, &(int32_t){2000000000}, 4);
    expect_refused("v0 with a 2e9-token context", d, n, "seq_len = 2000000000");
    memcpy(d + 24, &(int32_t){64}, 4);
    memcpy(d + 4, &(int32_t){0}, 4);
    expect_refused("v0 with hidden_dim 0 (the reason survives the rewording)", d, n, "header (hidden_dim = 0");
    free(d);

    write_model(&tm, tmp_path("good.bin"), FORMAT_LLAMA2C_V1);
    d = slurp(tmp_path("good.bin"), &n);
    memcpy(d + 4, &(int32_t){2}, 4);
    expect_refused("llama2.c version 2 (int8)", d, n, "version 2");
    free(d);

    write_model(&tm, tmp_path("good.bin"), FORMAT_RAZOR);
    d = slurp(tmp_path("good.bin"), &n);
    RazorHeader h;
    memcpy(&h, d, sizeof h);
    struct { const char *what, *says; RazorHeader h; } bad[20];
    int nb = 0;
    bad[nb] = (typeof(bad[0])){"razor version 9", "version 9", h}; bad[nb++].h.version = 9;
    bad[nb] = (typeof(bad[0])){"razor NaN norm_eps", "norm_eps", h}; bad[nb++].h.norm_eps = NAN;
    bad[nb] = (typeof(bad[0])){"razor infinite rope_theta", "rope_theta", h}; bad[nb++].h.rope_theta = INFINITY;
    bad[nb] = (typeof(bad[0])){"razor eos_id outside the vocabulary", "eos_id", h}; bad[nb++].h.eos_id = 97;
    bad[nb] = (typeof(bad[0])){"razor odd head_dim", "head_dim", h}; bad[nb++].h.head_dim = 7;
    bad[nb] = (typeof(bad[0])){"razor unknown rope_scaling", "rope_scaling", h}; bad[nb++].h.rope_scaling = 5;
    bad[nb] = (typeof(bad[0])){"razor shared_classifier 2", "shared_classifier", h}; bad[nb++].h.shared_classifier = 2;
    bad[nb] = (typeof(bad[0])){"razor negative seq_len", "seq_len", h}; bad[nb++].h.seq_len = -1;
    bad[nb] = (typeof(bad[0])){"razor weight_type 3", "weight_type", h}; bad[nb++].h.weight_type = 3;
    bad[nb] = (typeof(bad[0])){"razor q8 of 97-wide rows", "multiples of 32", h}; bad[nb].h.weight_type = WEIGHT_Q8;
    bad[nb++].h.q8_group = 32;
    bad[nb] = (typeof(bad[0])){"razor q8_group 16", "q8_group", h}; bad[nb++].h.q8_group = 16;
    bad[nb] = (typeof(bad[0])){"razor pos_encoding 2", "pos_encoding", h}; bad[nb++].h.pos_encoding = 2;
    bad[nb] = (typeof(bad[0])){"razor qkv_bias 2", "qkv_bias", h}; bad[nb++].h.qkv_bias = 2;
    bad[nb] = (typeof(bad[0])){"razor chat_template 7", "chat_template", h}; bad[nb++].h.chat_template = 7;
    bad[nb] = (typeof(bad[0])){"razor ChatML without its token ids", "chat_tokens[0]", h};
    bad[nb++].h.chat_template = CHAT_CHATML;
    bad[nb] = (typeof(bad[0])){"razor qk_norm set, its tensors missing", "truncated", h}; bad[nb++].h.qk_norm = 1;
    bad[nb] = (typeof(bad[0])){"razor add_bos 2", "add_bos", h}; bad[nb++].h.add_bos = 2;
    bad[nb] = (typeof(bad[0])){"razor bos_id -1 with add_bos 1", "bos_id = -1", h}; bad[nb++].h.bos_id = -1;
    for (int i = 0; i < nb; i++) {
        memcpy(d, &bad[i].h, sizeof h);
        expect_refused(bad[i].what, d, n, bad[i].says);
    }
    free(d);
    unsigned char junk[1000];
    for (int i = 0; i < 1000; i++) junk[i] = (unsigned char)(i * 7 + 3);
    expect_refused("1000 bytes of junk", junk, sizeof junk, "not a model file");
    Model m;
    check(load_model(&m, tmp_path("no-such-file.bin")) != 0 && strstr(razor_error(), "No such file"),
          "a missing file: %s", razor_error());
    check(load_model(&m, tmpdir) != 0 && strstr(razor_error(), "not a regular file"), "a directory: %s", razor_error());
    free_test_model(&tm);
}

/* ---------------------------------------------------------------------------------------------
 * The command line, through the razor binaries (built with sanitizers) */

typedef struct { int status; char *out, *err; } Run;

static Run run(const char *args) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s >%s 2>%s", args, tmp_path("stdout"), tmp_path("stderr"));
    int rc = system(cmd);
    Run r = {WIFEXITED(rc) ? WEXITSTATUS(rc) : 128, NULL, NULL};
    r.out = slurp_text(tmp_path("stdout"));
    r.err = slurp_text(tmp_path("stderr"));
    return r;
}

static void free_run(Run *r) { free(r->out); free(r->err); }

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* How many times part occurs in s */
static int occurrences(const char *s, const char *part) {
    int n = 0;
    for (const char *q = s; (q = strstr(q, part)); q++) n++;
    return n;
}

static void expect_cli_error(const char *what, const char *args, int status, const char *must_say) {
    Run r = run(args);
    check(r.status == status && strstr(r.err, must_say) && !strstr(r.err, "Sanitizer") &&
              !strstr(r.err, "runtime error"),
          "%s: exit %d (wanted %d), stderr says '%s': %s", what, r.status, status, must_say, r.err);
    free_run(&r);
}

/* -A: what q8 (and bf16) weights multiply. The default rounds the inputs to int8 (-A rounded, the same logits bit
 * for bit); -A f32 does not, and its logits differ; anything else is refused. */
static void test_cli_q8_inputs(void) {
    TestModel tm = make_model(small_config(64, 96, 2, 4, 2, 512, 96), 12);
    tm.c.weight_type = WEIGHT_Q8;
    write_model(&tm, tmp_path("cliq8.bin"), FORMAT_RAZOR);
    const char *how[3] = {"", "-A rounded", "-A f32"};
    char cmd[1024], out[3][256];
    unsigned char *logits[3];
    size_t n[3];
    int ok = 1;
    for (int k = 0; k < 3; k++) {
        const char *name = k == 0 ? "q8_default.f32" : k == 1 ? "q8_rounded.f32" : "q8_f32.f32";
        snprintf(out[k], sizeof out[k], "%s", tmp_path(name));
        snprintf(cmd, sizeof cmd, "%s %s -z tests/sp512/tokenizer.bin -m logits -i 'It is a truth' -o %s %s", razor_bin,
                 tmp_path("cliq8.bin"), out[k], how[k]);
        Run r = run(cmd);
        ok &= r.status == 0;
        free_run(&r);
        logits[k] = slurp(out[k], &n[k]);
    }
    check(ok && n[0] > 0 && n[0] == n[1] && n[0] == n[2] && !memcmp(logits[0], logits[1], n[0]) &&
              memcmp(logits[0], logits[2], n[0]),
          "q8 weights: -A rounded is the default (the same logits bit for bit), -A f32 gives others");
    for (int k = 0; k < 3; k++) free(logits[k]);
    snprintf(cmd, sizeof cmd, "%s %s -A int8", razor_bin, tmp_path("cliq8.bin"));
    expect_cli_error("-A int8", cmd, 2, "-A takes rounded or f32, not 'int8'");
    tm.c.weight_type = WEIGHT_F32;
    free_test_model(&tm);
}

static void test_cli(void) {
    Config c = small_config(48, 80, 2, 4, 2, 512, 96);
    TestModel tm = make_model(c, 11);
    char model[256], cmd[4096];
    snprintf(model, sizeof model, "%s", tmp_path("cli.bin"));
    write_model(&tm, model, FORMAT_RAZOR);
    const char *prompt = "It is a truth universally acknowledged";

    /* greedy generation: deterministic, and the same with 1 thread, 2 threads and no pthreads at all */
    snprintf(cmd, sizeof cmd, "%s %s -z tests/sp512/tokenizer.bin -t 0 -n 30 -i '%s' -T 1", razor_bin, model, prompt);
    Run a = run(cmd), b = run(cmd);
    snprintf(cmd, sizeof cmd, "%s %s -z tests/sp512/tokenizer.bin -t 0 -n 30 -i '%s' -T 2", razor_bin, model, prompt);
    Run t2 = run(cmd);
    snprintf(cmd, sizeof cmd, "%s %s -z tests/sp512/tokenizer.bin -t 0 -n 30 -i '%s'", razor_nothreads_bin, model,
             prompt);
    Run nt = run(cmd);
    check(a.status == 0 && strncmp(a.out, prompt, strlen(prompt)) == 0 && strlen(a.out) > strlen(prompt) + 10,
          "generate prints the prompt, then text (exit %d): %s%s", a.status, a.out, a.err);
    check(!strcmp(a.out, b.out) && !strcmp(a.out, t2.out) && !strcmp(a.out, nt.out),
          "greedy output is the same run to run, with -T 1, -T 2 and without pthreads");
    check(strstr(a.err, "prompt: ") && strstr(a.err, "tok/s; generated: 30 tokens") && strstr(a.err, "kv cache: ") &&
              !strstr(a.out, "tok/s"),
          "speed and kv bytes go to stderr: %s", a.err);
    /* -w bf16: the same kind of output, the same run to run, with and without threads */
    snprintf(cmd, sizeof cmd, "%s %s -z tests/sp512/tokenizer.bin -t 0 -n 30 -i '%s' -T 2 -w bf16", razor_bin, model,
             prompt);
    Run h = run(cmd), h2 = run(cmd);
    snprintf(cmd, sizeof cmd, "%s %s -z tests/sp512/tokenizer.bin -t 0 -n 30 -i '%s' -w bf16", razor_nothreads_bin,
             model, prompt);
    Run hn = run(cmd);
    check(h.status == 0 && strncmp(h.out, prompt, strlen(prompt)) == 0 && strstr(h.err, "generated: 30 tokens") &&
              !strcmp(h.out, h2.out) && !strcmp(h.out, hn.out),
          "-w bf16 generates, deterministically, threads or not (exit %d): %s%s", h.status, h.out, h.err);
    free_run(&a); free_run(&b); free_run(&t2); free_run(&nt); free_run(&h); free_run(&h2); free_run(&hn);

    /* an ALiBi model: -m profile computes spans (no probe) and saves them; -c razor uses them and
     * reports its kv cache line; -K f16 halves what -K f32 keeps */
    Config ac = small_config(64, 96, 2, 4, 4, 512, 96);
    ac.pos_encoding = POS_ALIBI;
    TestModel am = make_model(ac, 12);
    write_model(&am, tmp_path("alibi_cli.bin"), FORMAT_RAZOR);
    snprintf(cmd, sizeof cmd, "%s %s -z tests/sp512/tokenizer.bin -m profile", razor_bin, tmp_path("alibi_cli.bin"));
    Run ap = run(cmd);
    size_t heads_size = 0;
    char *heads = ap.status == 0 ? slurp(tmp_path("alibi_cli.bin.heads"), &heads_size) : NULL;
    if (heads) heads[heads_size] = 0;
    check(ap.status == 0 && strstr(ap.err, "span of each KV head") && heads && strstr(heads, "alibi span eps 0.001") &&
              strstr(heads, "| span "),
          "-m profile on an ALiBi model prints and saves spans (exit %d): %s", ap.status, ap.err);
    free(heads);
    free_run(&ap);
    snprintf(cmd, sizeof cmd, "%s %s -z tests/sp512/tokenizer.bin -m profile -o %s", razor_bin,
             tmp_path("alibi_cli.bin"), tmp_path("alibi_spans.tsv"));
    ap = run(cmd);
    check(ap.status != 0 && strstr(ap.err, "a DuoAttention .tsv cannot hold an ALiBi model's spans") &&
              access(tmp_path("alibi_spans.tsv"), F_OK) != 0 && access(tmp_path("alibi_spans.tsv.svg"), F_OK) != 0,
          "-m profile -o x.tsv on an ALiBi model is refused, saying why, and writes nothing: %s", ap.err);
    Run kv[2];
    for (int k = 0; k < 2; k++) {
        snprintf(cmd, sizeof cmd, "%s %s -z tests/sp512/tokenizer.bin -t 0 -n 10 -i '%s' -c razor -K %s", razor_bin,
                 tmp_path("alibi_cli.bin"), prompt, k ? "f16" : "f32");
        kv[k] = run(cmd);
    }
    const char *line0 = strstr(kv[0].err, "kv cache: "), *line1 = strstr(kv[1].err, "kv cache: ");
    double mb0 = line0 ? atof(line0 + 10) : 0, mb1 = line1 ? atof(line1 + 10) : 0;
    check(kv[0].status == 0 && kv[1].status == 0 && mb0 > 0 && fabs(mb1 * 2 - mb0) < 0.011,
          "-c razor on an ALiBi model reports its kv cache; -K f16 keeps half of -K f32 (%g and %g MB)", mb1, mb0);
    free_run(&ap); free_run(&kv[0]); free_run(&kv[1]);
    free_test_model(&am);
    /* the trained ALiBi model (docs/alibi, its spans as -m profile wrote them): razor keeps the pass key
     * at 500 tokens where a sliding window loses it */
    snprintf(cmd, sizeof cmd, "%s docs/alibi/model.bin -z tokenizer.bin -m needle -L 500 -D 0,0.5 -o %s",
             razor_bin, tmp_path("alibi_needle"));
    Run an = run(cmd);
    check(an.status == 0 && strstr(an.out, "\"razor\": {\"prompt\": {\"accuracy\": 1.0000") &&
              strstr(an.out, "\"streaming\": {\"prompt\": {\"accuracy\": 0.0000"),
          "docs/alibi/model.bin: razor finds the pass key at 500 tokens (depths 0 and 50%%), streaming does not: %s",
          an.out);
    free_run(&an);

    /* greedy generation picks the reference model's argmax, token after token */
    Tokenizer tok;
    load_tokenizer(&tok, "tests/sp512/tokenizer.bin", 512, 1, 2);
    int ids[128];
    int n = encode(&tok, prompt, 1, ids), n_prompt = n;
    for (int step = 0; step < 10; step++) {
        float *ref = ref_forward(&tm, ids, n);
        ids[n] = argmax(ref + (size_t)(n - 1) * 512, 512);
        free(ref);
        if (ids[n] == 1 || ids[n] == 2) break;
        n++;
    }
    char *expected = decode_all(&tok, ids, n);
    snprintf(cmd, sizeof cmd, "%s %s -z tests/sp512/tokenizer.bin -t 0 -n %d -i '%s'", razor_bin, model, n - n_prompt,
             prompt);
    Run g = run(cmd);
    check(strncmp(g.out, expected, strlen(expected)) == 0,
          "greedy text equals the reference's argmax chain:\n  razor: %s  ref:   %s", g.out, expected);
    free(expected);
    free_run(&g);

    /* tokenize mode */
    snprintf(cmd, sizeof cmd, "%s %s -z tests/sp512/tokenizer.bin -m tokenize -i '%s'", razor_bin, model, prompt);
    Run tk = run(cmd);
    char want[1024] = {0};
    for (int i = 0; i < n_prompt; i++) sprintf(want + strlen(want), i ? " %d" : "%d", ids[i]);
    strcat(want, "\n");
    check(tk.status == 0 && !strcmp(tk.out, want), "-m tokenize prints BOS and the ids: %s", tk.out);
    free_run(&tk);

    /* logits mode, from an ids file: equals the reference */
    FILE *f = fopen(tmp_path("ids.txt"), "w");
    int lids[40];
    for (int i = 0; i < 40; i++) {
        lids[i] = i == 0 ? 1 : (i * 37) % 512;
        fprintf(f, "%d%s", lids[i], i % 7 == 6 ? "\n" : " ");
    }
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s %s -m logits -K f32 -I %s -o %s -T 2", razor_bin, model, tmp_path("ids.txt"),
             tmp_path("logits.f32"));
    Run lg = run(cmd);
    size_t bytes;
    float *got = slurp(tmp_path("logits.f32"), &bytes), *ref = ref_forward(&tm, lids, 40);
    check(lg.status == 0 && bytes == 40 * 512 * sizeof(float) && max_abs_diff(got, ref, 40 * 512) <= 1e-4f,
          "-m logits writes [40][512] float32 equal to the reference (%zu bytes, diff %g)", bytes,
          bytes == 40 * 512 * sizeof(float) ? max_abs_diff(got, ref, 40 * 512) : -1.0f);
    free(got); free(ref);
    free_run(&lg);

    /* bad input: one clear line, the right exit code, no output file */
    snprintf(cmd, sizeof cmd, "%s %s -Q 1", razor_bin, model);
    expect_cli_error("unknown flag", cmd, 2, "unknown option '-Q'");
    snprintf(cmd, sizeof cmd, "%s %s -n", razor_bin, model);
    expect_cli_error("missing value", cmd, 2, "-n needs a value");
    snprintf(cmd, sizeof cmd, "%s %s -t hot", razor_bin, model);
    expect_cli_error("bad number", cmd, 2, "expected a number");
    snprintf(cmd, sizeof cmd, "%s %s -n 0x10", razor_bin, model); /* strtod would take these */
    expect_cli_error("a hex count", cmd, 2, "-n 0x10: expected an integer");
    snprintf(cmd, sizeof cmd, "%s %s -n ' 5'", razor_bin, model);
    expect_cli_error("a count with a space", cmd, 2, "expected an integer");
    snprintf(cmd, sizeof cmd, "%s %s -t nan", razor_bin, model);
    expect_cli_error("a NaN temperature", cmd, 2, "-t nan: expected a number");
    snprintf(cmd, sizeof cmd, "%s %s -n 5 -t 0 -n 6", razor_bin, model);
    expect_cli_error("a flag given twice", cmd, 2, "-n is given twice (5 and 6)");
    snprintf(cmd, sizeof cmd, "%s %s -m dance", razor_bin, model);
    expect_cli_error("unknown mode", cmd, 2, "unknown mode");
    snprintf(cmd, sizeof cmd, "%s %s -w f16", razor_bin, model);
    expect_cli_error("unknown weight type", cmd, 2, "-w takes f32 or bf16");
    snprintf(cmd, sizeof cmd, "%s", razor_bin);
    expect_cli_error("no model", cmd, 2, "usage");
    char long_prompt[2048] = {0};
    for (int i = 0; i < 100; i++) strcat(long_prompt, "the end. ");
    snprintf(cmd, sizeof cmd, "%s %s -z tests/sp512/tokenizer.bin -i '%s'", razor_bin, model, long_prompt);
    expect_cli_error("prompt longer than the context", cmd, 2, "the model's context is 96");
    snprintf(cmd, sizeof cmd, "%s %s -z %s -i hi", razor_bin, model, tmp_path("missing-tokenizer.bin"));
    expect_cli_error("missing tokenizer", cmd, 1, "missing-tokenizer.bin");
    snprintf(cmd, sizeof cmd, "%s %s -z tests/sp512/tokenizer.bin -i hi", razor_bin, tmp_path("bad.bin"));
    expect_cli_error("bad model file", cmd, 1, "bad.bin");

    f = fopen(tmp_path("badids.txt"), "w");
    fprintf(f, "1 2 3 600\n");
    fclose(f);
    remove(tmp_path("out.f32"));
    snprintf(cmd, sizeof cmd, "%s %s -m logits -I %s -o %s", razor_bin, model, tmp_path("badids.txt"),
             tmp_path("out.f32"));
    expect_cli_error("an id outside the vocabulary", cmd, 1, "outside the vocabulary");
    f = fopen(tmp_path("badids.txt"), "w");
    fprintf(f, "1 2 x3\n");
    fclose(f);
    expect_cli_error("an id file with junk", cmd, 1, "not a token id");
    struct stat st;
    check(stat(tmp_path("out.f32"), &st) != 0, "no output file is left after a failed -m logits");
    snprintf(cmd, sizeof cmd, "%s %s -m logits -I %s -o %s/no/such/dir/out.f32", razor_bin, model, tmp_path("ids.txt"),
             tmpdir);
    expect_cli_error("an unwritable output", cmd, 1, "No such file");
    snprintf(cmd, sizeof cmd, "%s %s -m logits -I %s", razor_bin, model, tmp_path("ids.txt"));
    expect_cli_error("logits without -o", cmd, 2, "needs -o");
    f = fopen(tmp_path("junk.heads"), "w");
    fprintf(f, "not a profile\n");
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s %s -z tests/sp512/tokenizer.bin -k %s -i hi", razor_bin, model,
             tmp_path("junk.heads"));
    expect_cli_error("a profile that is not one", cmd, 1, "junk.heads: line 1");
    snprintf(cmd, sizeof cmd, "%s %s -z tests/sp512/tokenizer.bin -k %s -i hi", razor_bin, model, tmp_path("no.heads"));
    expect_cli_error("a missing -k profile", cmd, 1, "no.heads: No such file");
    snprintf(cmd, sizeof cmd, "%s %s -z tests/sp512/tokenizer.bin -c most -i hi", razor_bin, model);
    expect_cli_error("an unknown policy", cmd, 2, "unknown cache policy 'most'");
    Run e = run(cmd);
    check(count_lines(e.err) == 1, "an error is one line: %s", e.err);
    free_run(&e);
    /* the measuring modes run end to end and end with their JSON line */
    snprintf(cmd, sizeof cmd, "%s %s -z tests/sp512/tokenizer.bin -m compare -n 12 -W 8 -S 2 -i '%s %s' -T 2",
             razor_bin, model, prompt, prompt);
    Run cmp = run(cmd);
    check(cmp.status == 0 && strstr(cmp.out, "{\"policy\": \"razor\"") && strstr(cmp.out, "\"top1_agreement\": ") &&
              strstr(cmp.err, "kv cache: "),
          "-m compare prints its table and JSON summary: exit %d %s", cmp.status, cmp.err);
    free_run(&cmp);
    TestModel wide =
        make_model(small_config(48, 80, 2, 4, 2, 512, 400), 12); /* room for the needle at a quarter of the context */
    write_model(&wide, tmp_path("needle.bin"), FORMAT_RAZOR);
    free_test_model(&wide);
    snprintf(cmd, sizeof cmd, "%s %s -z tests/sp512/tokenizer.bin -m needle -W 8 -S 2 -o %s/needle -T 2", razor_bin,
             tmp_path("needle.bin"), tmpdir);
    Run nd = run(cmd);
    struct stat svg;
    int pictures = 0;
    for (int p = 0; p < N_POLICIES; p++)
        for (int st = 0; st < NEEDLE_SETTINGS; st++) {
            char name[64];
            snprintf(name, sizeof name, "needle_%s_%s.svg", policy_names[p], setting_names[st]);
            pictures += stat(tmp_path(name), &svg) == 0;
        }
    check(nd.status == 0 && strstr(nd.out, "{\"full\": {\"prompt\": {\"accuracy\": ") &&
              strstr(nd.out, "\"h2o\": {\"prompt\": {\"accuracy\": ") && strstr(nd.out, "}, \"after\": {") &&
              strstr(nd.out, "\nsnapkv ") && pictures == 12,
          "-m needle runs every policy in both settings, writes their %d pictures (of 12), a table and a JSON summary: "
          "exit %d %s", pictures, nd.status, nd.err);
    free_run(&nd);
    /* -m perplexity: every policy, a table and a JSON line; its inputs checked */
    snprintf(cmd, sizeof cmd, "%s %s -z tests/sp512/tokenizer.bin -m perplexity -f tests/llama2c_prompt.txt -l 64",
             razor_bin, model);
    Run pp = run(cmd);
    check(pp.status == 0 && strstr(pp.out, "{\"mode\": \"perplexity\", \"window\": 64") &&
              strstr(pp.out, "{\"policy\": \"nocomp\"") && strstr(pp.out, "\nrazor ") && !strstr(pp.err, "Sanitizer"),
          "-m perplexity prints a table and a JSON line for every policy: exit %d %s%s", pp.status, pp.out, pp.err);
    free_run(&pp);
    snprintf(cmd, sizeof cmd, "%s %s -z tests/sp512/tokenizer.bin -m perplexity", razor_bin, model);
    expect_cli_error("-m perplexity without a text", cmd, 2, "needs a text");
    snprintf(cmd, sizeof cmd, "%s %s -z tests/sp512/tokenizer.bin -m perplexity -i 'a few words' -l 64", razor_bin,
             model);
    expect_cli_error("-m perplexity on a text shorter than a window", cmd, 2, "too short for a window of 64");
    snprintf(cmd, sizeof cmd, "%s %s -z tests/sp512/tokenizer.bin -m perplexity -i hi -l 97", razor_bin, model);
    expect_cli_error("-m perplexity -l beyond the context", cmd, 2, "longer than the model's context, 96");
    snprintf(cmd, sizeof cmd, "%s %s -z tests/sp512/tokenizer.bin -i hi -l 32", razor_bin, model);
    expect_cli_error("-l without -m perplexity", cmd, 2, "-l is for -m perplexity");
    /* found by the fuzzer: top-p on a flat distribution with topp < 1 / vocab_size left no candidate */
    memset(tm.emb, 0, (size_t)512 * 48 * sizeof(float)); /* tied: every logit 0 */
    write_model(&tm, tmp_path("flat.bin"), FORMAT_RAZOR);
    snprintf(cmd, sizeof cmd, "%s %s -z tests/sp512/tokenizer.bin -c full -t 1 -p 0.001 -n 3 -i hi", razor_bin,
             tmp_path("flat.bin"));
    Run flat = run(cmd);
    check(flat.status == 0 && !strstr(flat.err, "Sanitizer") && !strstr(flat.err, "runtime error"),
          "top-p on a flat distribution: exit %d %s", flat.status, flat.err);
    free_run(&flat);
    free_tokenizer(&tok);
    free_test_model(&tm);
}

/* ---------------------------------------------------------------------------------------------
 * What a careful user expects: outputs that never clobber, honest stops, reproducible runs */

static int file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (int)st.st_size : -1;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void test_outputs_and_stops(void) {
    Config c = small_config(48, 80, 2, 4, 2, 512, 96);
    TestModel tm = make_model(c, 21);
    char model[256], cmd[8192], ids[256];
    snprintf(model, sizeof model, "%s", tmp_path("careful.bin"));
    write_model(&tm, model, FORMAT_RAZOR);
    free_test_model(&tm);
    snprintf(ids, sizeof ids, "%s", tmp_path("careful_ids.txt"));
    write_text(ids, "1 5 9 200 7\n");
    int want = 5 * 512 * 4; /* 5 tokens x 512 logits x float32 */
    const char *tok = "-z tests/sp512/tokenizer.bin";

    /* a symlink stays a link; its target gets the logits */
    write_text(tmp_path("target.f32"), "old");
    remove(tmp_path("link.f32"));
    check(symlink(tmp_path("target.f32"), tmp_path("link.f32")) == 0, "symlink");
    snprintf(cmd, sizeof cmd, "%s %s -m logits -I %s -o %s", razor_bin, model, ids, tmp_path("link.f32"));
    Run r = run(cmd);
    struct stat st;
    check(r.status == 0 && lstat(tmp_path("link.f32"), &st) == 0 && S_ISLNK(st.st_mode) &&
              file_size(tmp_path("target.f32")) == want,
          "-o through a symlink writes its target and keeps the link: exit %d, target %d bytes %s", r.status,
          file_size(tmp_path("target.f32")), r.err);
    free_run(&r);
    /* a FIFO with a reader is written into, and stays a FIFO */
    remove(tmp_path("fifo"));
    check(mkfifo(tmp_path("fifo"), 0600) == 0, "mkfifo");
    snprintf(cmd, sizeof cmd, "{ (timeout 30 cat %s > %s &) ; %s %s -m logits -I %s -o %s; }",
             tmp_path("fifo"), tmp_path("fifo.out"), razor_bin, model, ids, tmp_path("fifo"));
    r = run(cmd);
    for (int i = 0; i < 50 && file_size(tmp_path("fifo.out")) < want; i++) usleep(100000);
    check(r.status == 0 && stat(tmp_path("fifo"), &st) == 0 && S_ISFIFO(st.st_mode) &&
              file_size(tmp_path("fifo.out")) == want,
          "-o to a FIFO writes into it and leaves it a FIFO: exit %d, read %d bytes %s", r.status,
          file_size(tmp_path("fifo.out")), r.err);
    free_run(&r);
    /* a path whose parent is a regular file; a directory; a failed run keeps the old content */
    write_text(tmp_path("plain"), "x");
    snprintf(cmd, sizeof cmd, "%s %s -m logits -I %s -o %s/plain/x.f32", razor_bin, model, ids, tmpdir);
    expect_cli_error("-o under a regular file", cmd, 1, "plain/x.f32: Not a directory");
    r = run(cmd);
    check(!strstr(r.err, ".tmp"), "errors name the user's path, not a temporary one: %s", r.err);
    free_run(&r);
    snprintf(cmd, sizeof cmd, "%s %s -m logits -I %s -o %s", razor_bin, model, ids, tmpdir);
    expect_cli_error("-o a directory", cmd, 1, "is a directory");
    write_text(tmp_path("keep.f32"), "old");
    write_text(tmp_path("bad_ids.txt"), "1 2 999999\n");
    snprintf(cmd, sizeof cmd, "%s %s -m logits -I %s -o %s", razor_bin, model, tmp_path("bad_ids.txt"),
             tmp_path("keep.f32"));
    r = run(cmd);
    size_t n;
    char *kept = slurp(tmp_path("keep.f32"), &n);
    check(r.status != 0 && n == 3 && !memcmp(kept, "old", 3), "a failed run leaves the old file as it was");
    free(kept);
    free_run(&r);
    /* the profile fails before the probe runs if its output cannot be written */
    snprintf(cmd, sizeof cmd, "%s %s %s -m profile -o %s/plain/p.heads", razor_bin, model, tok, tmpdir);
    r = run(cmd);
    check(r.status != 0 && strstr(r.err, "p.heads: Not a directory") && !strstr(r.err, "profiling heads"),
          "-m profile checks its output before the work: %s", r.err);
    free_run(&r);
    /* ... and its picture beside it: the reason is the picture's, not a discarded p.heads' */
    snprintf(cmd, sizeof cmd, "mkdir -p %s/svgdir/p.heads.svg && %s %s %s -m profile -o %s/svgdir/p.heads", tmpdir,
             razor_bin, model, tok, tmpdir);
    r = run(cmd);
    check(r.status != 0 && strstr(r.err, "p.heads.svg: is a directory") && !strstr(r.err, "cannot write it all") &&
              !strstr(r.err, "profiling heads"),
          "-m profile whose picture cannot be written says why: %s", r.err);
    free_run(&r);

    /* generation that reaches the context says so */
    snprintf(cmd, sizeof cmd, "%s %s %s -t 0 -n 300 -c full -i 'Once upon a time'", razor_bin, model, tok);
    r = run(cmd);
    check(r.status == 0 && strstr(r.err, "stopped at the model's context of 96 tokens"),
          "generation stops at the context, and says so: %s", r.err);
    free_run(&r);
    /* seeds: -s 0 repeats itself; a clock seed is printed and -s with it repeats the run */
    snprintf(cmd, sizeof cmd, "%s %s %s -t 1 -n 20 -s 0 -c full -i 'It was'", razor_bin, model, tok);
    Run a = run(cmd), b = run(cmd);
    check(a.status == 0 && !strcmp(a.out, b.out), "-s 0 is a seed like any other: the same text twice");
    free_run(&a);
    free_run(&b);
    snprintf(cmd, sizeof cmd, "%s %s %s -t 1 -n 20 -c full -i 'It was'", razor_bin, model, tok);
    a = run(cmd);
    const char *seen = strstr(a.err, "razor: seed ");
    unsigned long long seed = seen ? strtoull(seen + 12, NULL, 10) : 0;
    snprintf(cmd, sizeof cmd, "%s %s %s -t 1 -n 20 -s %llu -c full -i 'It was'", razor_bin, model, tok, seed);
    b = run(cmd);
    check(seen && b.status == 0 && !strcmp(a.out, b.out),
          "a seed from the clock is printed, and -s with it repeats the text: %s", a.err);
    free_run(&a);
    free_run(&b);
    /* -f - is standard input; one final newline is not part of the prompt, for -f and -i alike */
    snprintf(cmd, sizeof cmd, "%s %s %s -m tokenize -i 'hello there'", razor_bin, model, tok);
    a = run(cmd);
    snprintf(cmd, sizeof cmd, "printf 'hello there\\n' | %s %s %s -m tokenize -f -", razor_bin, model, tok);
    b = run(cmd);
    snprintf(cmd, sizeof cmd, "%s %s %s -m tokenize -i 'hello there\n'", razor_bin, model, tok);
    Run d = run(cmd);
    check(a.status == 0 && b.status == 0 && !strcmp(a.out, b.out) && !strcmp(a.out, d.out),
          "-f - reads standard input; a final newline is dropped from -f and -i alike: '%s' '%s' '%s'", a.out, b.out,
          d.out);
    free_run(&a);
    free_run(&b);
    free_run(&d);
    snprintf(cmd, sizeof cmd, "%s %s %s -f %s", razor_bin, model, tok, tmpdir);
    expect_cli_error("a directory as -f", cmd, 1, "is a directory");
    snprintf(cmd, sizeof cmd, "%s %s -h", razor_bin, model);
    r = run(cmd);
    check(r.status == 0 && strstr(r.out, "usage: razor") && strstr(r.out, "built for "),
          "razor model.bin -h prints the usage, exit 0");
    free_run(&r);
    snprintf(cmd, sizeof cmd, "%s %s %s -i -h -n 2 -t 0", razor_bin, model, tok);
    r = run(cmd);
    check(r.status == 0 && !strstr(r.out, "usage:") && !strncmp(r.out, "-h", 2),
          "-i -h: -h as a flag's value is the prompt, not a request for help: exit %d, '%.20s'", r.status, r.out);
    free_run(&r);
    snprintf(cmd, sizeof cmd, "%s %s -n 2.5", razor_bin, model);
    expect_cli_error("range errors as integers", cmd, 2, "expected an integer in [0, 2147483647]");
    /* where razor looked for a missing tokenizer */
    char cwd[4096], bin[4400];
    if (getcwd(cwd, sizeof cwd)) {
        snprintf(bin, sizeof bin, "%s%s%s", razor_bin[0] == '.' ? cwd : "", razor_bin[0] == '.' ? "/" : "", razor_bin);
        snprintf(cmd, sizeof cmd, "cd %s && %s %s -i hi", tmpdir, bin, model);
        expect_cli_error("no tokenizer anywhere", cmd, 1,
                         "looked for tokenizer.bin next to the model and in the current directory");
        r = run(cmd);
        check(strstr(r.err, "-z FILE") != NULL, "the missing-tokenizer error mentions -z");
        free_run(&r);
    }
    snprintf(cmd, sizeof cmd, "%s %s %s -n 1 -T 1024 -c full -i hi", razor_bin, model, tok);
    r = run(cmd);
    check(r.status == 0 && strstr(r.err, "more threads than"), "-T above the online cores warns: %s", r.err);
    free_run(&r);
    snprintf(cmd, sizeof cmd, "%s %s %s -n 1 -S 70 -W 64 -c streaming -i hi", razor_bin, model, tok);
    r = run(cmd);
    check(r.status == 0 && strstr(r.err, "-S 70 sinks are not fewer than -W 64"), "-S >= the window warns: %s", r.err);
    free_run(&r);
    /* chat: empty lines are not turns; a newline before the stats at the end of input; a first turn
     * longer than the context fails */
    snprintf(cmd, sizeof cmd, "printf 'hello\\n\\n   \\n' | %s %s %s -m chat -t 0 -n 3 -c full", razor_bin, model, tok);
    r = run(cmd);
    int answers = occurrences(r.out, "Assistant: ");
    size_t len = strlen(r.out);
    check(r.status == 0 && answers == 1 && len > 0 && r.out[len - 1] == '\n',
          "chat skips empty lines and ends its output with a newline");
    free_run(&r);
    char long_turn[1024] = {0};
    for (int i = 0; i < 40; i++) strcat(long_turn, "more words ");
    snprintf(cmd, sizeof cmd, "%s %s %s -m chat -t 0 -n 3 -c full -i '%s' < /dev/null", razor_bin, model, tok,
             long_turn);
    expect_cli_error("a first chat turn longer than the context", cmd, 2, "the first turn is");
    /* needle: a smaller grid, per-case progress, results as JSON lines; compare's summary */
    snprintf(cmd, sizeof cmd, "%s %s %s -m needle -L 80 -D 0,1 -W 8 -S 2 -o %s/grid", razor_bin, tmp_path("needle.bin"),
             tok, tmpdir);
    r = run(cmd);
    char *lines = slurp_text(tmp_path("grid.jsonl"));
    /* SnapKV appends the question asked after compression: more bytes than with the question inside the prompt */
    const char *snap = strstr(lines, "\"snapkv\": {\"prompt\": {"), *bytes_prompt = snap ? strstr(snap, "kv_bytes") : 0;
    const char *bytes_after = bytes_prompt ? strstr(bytes_prompt + 1, "kv_bytes") : 0;
    long snap_prompt = bytes_prompt ? atol(bytes_prompt + 11) : 0;
    long snap_after = bytes_after ? atol(bytes_after + 11) : 0;
    check(r.status == 0 && count_lines(lines) == 2 && strstr(lines, "\"depth\": 1,") &&
              strstr(r.err, "needle: case 2/2") && file_size(tmp_path("grid.jsonl.partial")) < 0 &&
              file_size(tmp_path("grid_nocomp_after.svg")) > 0 && snap_prompt > 0 && snap_after > snap_prompt,
          "-m needle -L -D: a 1 x 2 grid, progress per case, a JSON line per case (snapkv's kv bytes: %ld with the "
          "question in the prompt, %ld asked after): %s %s", snap_prompt, snap_after, r.err, lines);
    free(lines);
    free_run(&r);
    for (int p = POLICY_SNAPKV; p <= POLICY_H2O; p++) {
        char want[32];
        snprintf(cmd, sizeof cmd, "%s %s %s -m compare -n 6 -c %s -W 8 -S 2 -i 'It was a long day, and'", razor_bin,
                 tmp_path("needle.bin"), tok, policy_names[p]);
        snprintf(want, sizeof want, "policy %s vs full", policy_names[p]);
        r = run(cmd);
        check(r.status == 0 && strstr(r.out, want) && strstr(r.err, "kv cache: "), "-m compare -c %s: %s %s",
              policy_names[p], r.out, r.err);
        free_run(&r);
    }
    snprintf(cmd, sizeof cmd, "%s %s %s -m compare -n 6 -c full -i 'It was a'", razor_bin, model, tok);
    r = run(cmd);
    check(r.status == 0 && strstr(r.out, "first divergence: none") && strstr(r.out, "full (greedy): "),
          "compare's summary: both texts, 'first divergence: none': %s", r.out);
    free_run(&r);
}

/* ---------------------------------------------------------------------------------------------
 * A careful user's second pass (#26): memory that follows the run, checked writes, kept modes,
 * signals, FIFOs, numbers that are not finite, chat from a file */

/* The names in dir that contain part */
static int files_named(const char *dir, const char *part) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += strstr(e->d_name, part) != NULL;
    if (d) closedir(d);
    return n;
}

/* Starts razor (sh -c cmd), waits until a file whose name contains `part` appears in dir, then sends
 * sig; returns the exit status (128 + signal), or -1 if the file never appeared (razor ended first, or
 * 60 s passed). */
static int kill_when_file_appears(const char *cmd, const char *dir, const char *part, int sig) {
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        signal(SIGINT, SIG_DFL), signal(SIGTERM, SIG_DFL), signal(SIGHUP, SIG_DFL); /* even if make ran under nohup */
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    int seen = 0, status = 0, ended = 0;
    for (int i = 0; i < 60000 && !seen && !ended; i++) {
        seen = files_named(dir, part) > 0;
        if (!seen) ended = waitpid(pid, &status, WNOHANG) == pid, usleep(1000);
    }
    if (!ended) kill(-pid, sig), waitpid(pid, &status, 0); /* the group: sh and razor */
    if (!seen) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void test_careful_user(void) {
    Config c = small_config(48, 80, 2, 4, 2, 512, 96);
    TestModel tm = make_model(c, 26);
    char model[256], cmd[16384], dir[256];
    const char *tok = "-z tests/sp512/tokenizer.bin";
    snprintf(model, sizeof model, "%s", tmp_path("second.bin"));
    write_model(&tm, model, FORMAT_RAZOR);
    snprintf(dir, sizeof dir, "%s", tmp_path("second"));
    mkdir(dir, 0755);
    Run r;

    /* 1. memory follows what the run holds: a header's seq_len of 2^22 allocates nothing of its size */
    tm.c.seq_len = 1 << 22;
    write_model(&tm, tmp_path("huge_context.bin"), FORMAT_RAZOR);
    tm.c.seq_len = 96;
    /* (the build without sanitizers, whose shadow memory a limit on address space would refuse) */
    snprintf(cmd, sizeof cmd, "ulimit -v 300000 && printf 'hello there\\nand again\\n' | %s %s %s -m chat -t 0 -n 20 "
             "-W 8 -S 2 -c streaming", razor_nothreads_bin, tmp_path("huge_context.bin"), tok);
    r = run(cmd);
    check(r.status == 0 && strstr(r.out, "Assistant: ") && strstr(r.err, "kv cache: "),
          "chat on a header of seq_len 2^22 in 300 MB of address space (a cache sized by the header would take "
          "800 MB): exit %d, %s", r.status, r.err);
    free_run(&r);
    Model m;
    if (load_model(&m, tmp_path("huge_context.bin")) == 0) {
        int *ids = random_ids(60, 512);
        for (int p = 0; p < N_POLICIES; p++) {
            CacheConfig cache = {.policy = (Policy)p, .kv_type = KV_BF16, .n_sink = 2, .window_min = 8,
                                 .compression = 5.0f};
            HeadProfile profile;
            init_profile(&profile, &m.config);
            profile.retrieval[1] = 1;
            cache.profile = &profile;
            RunState s;
            int ok = build_runstate(&s, &m, 1 << 22, 64, &cache) == 0, bounded = 1;
            for (int i = 0; ok && i < s.n_caches; i++) bounded &= s.heads[i].slots <= ATT_TILE_K;
            if (ok) forward(&m, &s, ids, 60, NULL, NULL);
            for (int i = 0; ok && i < s.n_caches; i++) bounded &= s.heads[i].slots <= 2 * 60 + ATT_TILE_K;
            if (ok) compress_cache(&s, &m.config);
            for (int i = 0; ok && i < s.n_caches; i++) {
                const HeadCache *h = &s.heads[i];
                if (h->state == COMPRESSED_HEAD) bounded &= h->slots == round_to_tile(window_start(h) + h->window);
                if (h->state == SELECTED_HEAD) bounded &= h->slots == round_to_tile(s.budget + 1);
            }
            check(ok && bounded && s.score_width <= 2 * 60 + ATT_TILE_K,
                  "-c %s, a context of 2^22: the heads start at one key tile, hold at most 1.5 x what they were given, "
                  "and compressed ones sinks + compensation + window (score rows %d wide)", policy_names[p],
                  ok ? s.score_width : -1);
            if (ok) free_runstate(&s);
            free_profile(&profile);
        }
        free(ids);
        free_model(&m);
    } else check(0, "load %s: %s", tmp_path("huge_context.bin"), razor_error());

    /* 2 and 3, as root: a 64 KB tmpfs, full; a read-only one. Else they are skipped, saying so. */
    char full[300], ro[300];
    snprintf(full, sizeof full, "%s/full", dir);
    snprintf(ro, sizeof ro, "%s/ro", dir);
    mkdir(full, 0755);
    mkdir(ro, 0755);
    char mount_full[400], mount_ro[400];
    snprintf(mount_full, sizeof mount_full, "mount -t tmpfs -o size=64k tmpfs %s 2>/dev/null", full);
    snprintf(mount_ro, sizeof mount_ro, "mount -t tmpfs -o size=64k tmpfs %s 2>/dev/null", ro);
    int full_mounted = geteuid() == 0 && system(mount_full) == 0;
    int ro_mounted = full_mounted && system(mount_ro) == 0;
    if (ro_mounted) {
        write_text(tmp_path("second_ids.txt"), "1 5 9 200 7\n");
        snprintf(cmd, sizeof cmd, "echo old > %s/keep.f32; dd if=/dev/zero of=%s/fill bs=1k 2>/dev/null; "
                 "{ echo x >> %s/fill; } 2>/dev/null", full, full, full);
        check(system(cmd) != 0, "the tmpfs is full");
        snprintf(cmd, sizeof cmd, "%s %s %s -m needle -L 60 -D 0,1 -W 8 -S 2 -o %s/n", razor_bin, model, tok, full);
        r = run(cmd);
        check(r.status == 1 && strstr(r.err, "n.jsonl.partial: cannot write it all: No space left on device") &&
                  files_named(full, "n.jsonl") == 0 && files_named(full, "n_") == 0,
              "-m needle on a full disk: exit 1, why, and no .jsonl or .partial left: exit %d, %s", r.status, r.err);
        free_run(&r);
        snprintf(cmd, sizeof cmd, "%s %s -m logits -I %s -o %s/keep.f32", razor_bin, model, tmp_path("second_ids.txt"),
                 full);
        r = run(cmd);
        char path[400];
        snprintf(path, sizeof path, "%s/keep.f32", full);
        check(r.status == 1 && strstr(r.err, "keep.f32: cannot write it all: No space left on device") &&
                  file_size(path) == 4 && files_named(full, ".tmp") == 0,
              "-m logits on a full disk: exit 1 with errno, the old file kept, no temporary left: %s", r.err);
        free_run(&r);
        snprintf(cmd, sizeof cmd, "{ %s %s %s -m tokenize -i 'hello there' > %s/ids.txt; }", razor_bin, model, tok,
                 full);
        expect_cli_error("-m tokenize into a full disk", cmd, 1, "standard output: cannot write it all: No space");
        /* 3. a writable file in a directory razor cannot write to: refused, the file as it was */
        snprintf(cmd, sizeof cmd, "echo old > %s/p.f32 && mount -o remount,ro %s", ro, ro);
        check(system(cmd) == 0, "remount read-only");
        snprintf(cmd, sizeof cmd, "%s %s -m logits -I %s -o %s/p.f32", razor_bin, model, tmp_path("second_ids.txt"),
                 ro);
        expect_cli_error("-o in a read-only directory", cmd, 1, "(its directory: razor writes a new file beside it");
    } else {
        printf("SKIPPED: the full-disk and read-only-directory checks need root (a 64 KB tmpfs)\n");
    }
    const char *mounted[2] = {full_mounted ? full : NULL, ro_mounted ? ro : NULL};
    for (int i = 0; i < 2; i++) {
        snprintf(cmd, sizeof cmd, "umount %s", mounted[i]);
        if (mounted[i] && system(cmd) != 0) check(0, "unmount %s", mounted[i]);
    }
    snprintf(cmd, sizeof cmd, "{ %s %s %s -n 4 -t 0 -c full -i 'hello' > /dev/full; }", razor_bin, model, tok);
    expect_cli_error("generate into /dev/full", cmd, 1, "standard output: cannot write it all: No space");
    snprintf(cmd, sizeof cmd, "{ %s %s %s -m compare -n 4 -c streaming -i 'hello' > /dev/full; }", razor_bin, model,
             tok);
    expect_cli_error("compare into /dev/full", cmd, 1, "standard output: cannot write it all: No space");
    /* 3. a replaced file keeps its mode (0604: not what a umask of 077 would give), and as root its owner */
    char out[400];
    snprintf(out, sizeof out, "%s/private.f32", dir);
    write_text(out, "old");
    chmod(out, 0604);
    int owner_changed = geteuid() == 0 && chown(out, 65534, 65534) == 0;
    snprintf(cmd, sizeof cmd, "%s %s -m logits -i 'hello' %s -o %s", razor_bin, model, tok, out);
    r = run(cmd);
    struct stat st;
    int stated = stat(out, &st) == 0; /* before check(): its arguments are read before it runs */
    check(r.status == 0 && stated && (st.st_mode & 07777) == 0604 && file_size(out) > 3 &&
              (!owner_changed || (st.st_uid == 65534 && st.st_gid == 65534)),
          "a replaced file keeps mode 0604%s: mode %o, owner %d: %s", owner_changed ? " and its owner" : "",
          st.st_mode & 07777, (int)st.st_uid, r.err);
    free_run(&r);

    /* 3. as a user who is not root (as root: nobody, by setpriv, with root's group as a supplementary one):
     * a group the user is in is kept, one it is not in loses its permissions; a directory the user cannot
     * write to is refused, the file as it was */
    char user_dir[] = "/tmp/razor-user-XXXXXX", as_user[256] = "";
    int root = geteuid() == 0;
    if (root) snprintf(as_user, sizeof as_user, "setpriv --reuid=65534 --regid=65534 --groups=0 ");
    const char *exe = strrchr(razor_bin, ' ') ? strrchr(razor_bin, ' ') + 1 : razor_bin; /* after "qemu-aarch64 " */
    if (mkdtemp(user_dir) && (!root || chown(user_dir, 65534, 65534) == 0) && chmod(user_dir, 0755) == 0) {
        snprintf(cmd, sizeof cmd, "cp %s %s/razor && cp %s %s/m.bin && cp tests/sp512/tokenizer.bin %s/t.bin && "
                 "mkdir %s/locked && echo old > %s/locked/p.f32 && chmod 0555 %s/locked && chmod -R a+r %s",
                 exe, user_dir, model, user_dir, user_dir, user_dir, user_dir, user_dir, user_dir);
        check(system(cmd) == 0, "set up %s", user_dir);
        snprintf(as_user + strlen(as_user), sizeof as_user - strlen(as_user), "%.*s", (int)(exe - razor_bin),
                 razor_bin); /* the runner, if any */
        snprintf(cmd, sizeof cmd, "%s%s/razor %s/m.bin -z %s/t.bin -m logits -i hello -o %s/locked/p.f32", as_user,
                 user_dir, user_dir, user_dir, user_dir);
        expect_cli_error("-o in a directory the user cannot write to", cmd, 1, "(its directory: razor writes a new");
        snprintf(out, sizeof out, "%s/locked/p.f32", user_dir);
        check(file_size(out) == 4, "the file in the locked directory as it was");
        if (root) {
            const char *names[2] = {"in_group.f32", "other_group.f32"};
            int gids[2] = {0, 100}, modes[2] = {0640, 0664}, want_gid[2] = {0, 65534}, want_mode[2] = {0640, 0604};
            for (int i = 0; i < 2; i++) {
                snprintf(out, sizeof out, "%s/%s", user_dir, names[i]);
                write_text(out, "old");
                check(chown(out, 65534, gids[i]) == 0 && chmod(out, modes[i]) == 0, "chown %s", out);
                snprintf(cmd, sizeof cmd, "%s%s/razor %s/m.bin -z %s/t.bin -m logits -i hello -o %s", as_user,
                         user_dir, user_dir, user_dir, out);
                r = run(cmd);
                stated = stat(out, &st) == 0;
                check(r.status == 0 && stated && (int)st.st_gid == want_gid[i] &&
                          (int)(st.st_mode & 07777) == want_mode[i] && file_size(out) > 3,
                      "as nobody, a file of group %d, mode %o: group %d and mode %o (want %d, %o): %s", gids[i],
                      modes[i], (int)st.st_gid, st.st_mode & 07777, want_gid[i], want_mode[i], r.err);
                free_run(&r);
            }
        } else {
            printf("SKIPPED: the group checks need root (to run razor as nobody)\n");
        }
        snprintf(cmd, sizeof cmd, "chmod -R u+w %s; rm -rf %s", user_dir, user_dir);
        check(system(cmd) == 0, "remove %s", user_dir);
    } else check(0, "make %s", user_dir);
    /* a temporary file left by a killed run with the same process id is replaced */
    snprintf(out, sizeof out, "%s/stale.f32", dir);
    snprintf(cmd, sizeof cmd, "sh -c 'echo stale > %s.tmp$$ && exec %s %s %s -m logits -i hello -o %s'", out,
             razor_bin, model, tok, out);
    r = run(cmd);
    check(r.status == 0 && file_size(out) > 6 && files_named(dir, "stale.f32.tmp") == 0,
          "a stale temporary with razor's process id: replaced, not an error: %s", r.err);
    free_run(&r);

    /* 4. and 11. chat: a line of any length is one turn; input from a file is echoed; /reset, /exit */
    char *long_line = xcalloc(20001, 1);
    for (int i = 0; i < 20000; i++) long_line[i] = i % 3 == 2 ? ' ' : 'a' + i % 7;
    snprintf(out, sizeof out, "%s/chat_in.txt", dir);
    FILE *f = fopen(out, "w");
    fprintf(f, "hi\n%s\nhello\n", long_line);
    fclose(f);
    int long_tokens = -1; /* what the turn is in the model's template, by the same functions in this process */
    Tokenizer t;
    if (load_model(&m, model) == 0 && load_tokenizer(&t, "tests/sp512/tokenizer.bin", 512, 1, 2) == 0) {
        int *turn_ids = xcalloc(2 * encode_room(long_line) + 64, sizeof(int));
        long_tokens = chat_turn_tokens(&m.config, &t, NULL, long_line, 1, turn_ids); /* the second turn */
        free(turn_ids);
        free_tokenizer(&t);
        free_model(&m);
    }
    free(long_line);
    snprintf(cmd, sizeof cmd, "%s %s %s -m chat -t 0 -n 3 -c full < %s", razor_bin, model, tok, out);
    r = run(cmd);
    const char *said = strstr(r.err, "this turn is ");
    int n_said = said ? atoi(said + 13) : 0, turns = occurrences(r.err, "this turn is ");
    int replies = occurrences(r.out, "Assistant: ");
    check(r.status == 1 && turns == 1 && n_said == long_tokens && replies == 2 && strstr(r.err, " remain; ") &&
              strstr(r.err, "1 turn of the input went unanswered"),
          "a 20000-byte chat line after a first turn is one turn (%d tokens; %d in the template), refused once, "
          "saying what remains; the next line is answered; exit 1 for the unanswered one: exit %d, %s", n_said,
          long_tokens, r.status, r.err);
    free_run(&r);
    snprintf(out, sizeof out, "%s/chat2.txt", dir);
    write_text(out, "hello there\n/reset\nhi\n/exit\nnever answered\n");
    snprintf(cmd, sizeof cmd, "%s %s %s -m chat -t 0 -n 3 -c full < %s", razor_bin, model, tok, out);
    r = run(cmd);
    int answers = occurrences(r.out, "Assistant: ");
    size_t len = strlen(r.out);
    check(r.status == 0 && answers == 2 && !strncmp(r.out, "User: hello there\nAssistant: ", 29) &&
              strstr(r.out, "User: /reset\nUser: hi\nAssistant: ") && strstr(r.err, "starts over") &&
              !strstr(r.out, "never") && len && r.out[len - 1] == '\n',
          "chat from a file: the user's lines echoed, /reset starts over, /exit leaves, a final newline: %s", r.out);
    free_run(&r);
    snprintf(out, sizeof out, "%s/chat_reset.txt", dir);
    write_text(out, "/reset\nhi\n");
    snprintf(cmd, sizeof cmd, "%s %s %s -m chat -t 0 -n 3 -c full -i 'hello there' < %s", razor_bin, model, tok, out);
    r = run(cmd);
    replies = occurrences(r.out, "Assistant: ");
    check(r.status == 0 && replies == 2 && strstr(r.out, "User: /reset\nUser: hi\nAssistant: "),
          "/reset after -i: the conversation starts over without -i's turn again: %s", r.out);
    free_run(&r);
    snprintf(out, sizeof out, "%s/chat3.txt", dir);
    write_text(out, "tell me a long story\nand then\nand more\n");
    snprintf(cmd, sizeof cmd, "%s %s %s -m chat -t 0 -n 200 -c full < %s", razor_bin, model, tok, out);
    r = run(cmd);
    check(r.status == 1 && (strstr(r.err, "filled the model's context") || strstr(r.err, " remain; ")) &&
              strstr(r.err, "2 turns of the input went unanswered"),
          "chat that fills the context: exit 1, and how many lines went unanswered: exit %d, %s", r.status, r.err);
    free_run(&r);

    /* 6. prefixes that name no file; 7. errors before any file exists; 8. exit 1 for files */
    snprintf(cmd, sizeof cmd, "%s %s %s -m needle -L 60 -o %s/", razor_bin, model, tok, dir);
    expect_cli_error("-m needle -o DIR/", cmd, 2, "named by adding to it; give a file name");
    snprintf(cmd, sizeof cmd, "%s %s %s -m needle -L 60 -o %s", razor_bin, model, tok, dir);
    expect_cli_error("-m needle -o DIR", cmd, 2, "and it is a directory");
    snprintf(cmd, sizeof cmd, "%s %s %s -m profile -o /dev/null", razor_bin, model, tok);
    expect_cli_error("-m profile -o /dev/null", cmd, 2, "and it is a device or FIFO");
    snprintf(out, sizeof out, "%s/out_fifo", dir);
    mkfifo(out, 0600);
    snprintf(cmd, sizeof cmd, "%s %s %s -m needle -L 60 -o %s", razor_bin, model, tok, out);
    expect_cli_error("-m needle -o FIFO", cmd, 2, "and it is a device or FIFO");
    check(files_named(dir, "out_fifo") == 1, "nothing written beside a FIFO given as the prefix");
    snprintf(cmd, sizeof cmd, "%s %s %s -m needle -L 80,60 -D 0 -W 8 -S 2 -o %s", razor_bin, model, tok,
             tmp_path("descending"));
    r = run(cmd);
    const char *row60 = strstr(r.out, "\n      60  "), *row80 = strstr(r.out, "\n      80  ");
    check(r.status == 0 && row60 && row80 && row60 < row80 && strstr(r.out, "kv cache at 80 tokens"),
          "-m needle -L 80,60: lengths sorted, the longest sizing the prompt and the kv figures: exit %d, %s", r.status,
          r.err);
    free_run(&r);
    check(files_named(dir, ".jsonl") == 0, "no hidden DIR/.jsonl");
    snprintf(cmd, sizeof cmd, "%s %s %s -m needle -L 20 -o %s/short", razor_bin, model, tok, dir);
    expect_cli_error("-m needle -L too short for the needle", cmd, 2, "too short for the needle and the question");
    check(files_named(dir, "short") == 0, "a needle run refused for its -L leaves no file");
    snprintf(cmd, sizeof cmd, "%s %s %s -m needle -L 60 -e 'a sentence with no key' -o %s/nokey", razor_bin, model, tok,
             dir);
    expect_cli_error("-m needle -e without {key}", cmd, 2, "the needle must hold {key}");
    check(files_named(dir, "nokey") == 0, "a needle run refused for its -e leaves no file");
    write_text(tmp_path("a_file"), "x");
    snprintf(cmd, sizeof cmd, "%s %s %s -m needle -L 60 -o %s/x", razor_bin, model, tok, tmp_path("a_file"));
    expect_cli_error("-m needle -o under a regular file", cmd, 1, "a_file/x.jsonl.partial: Not a directory");
    /* 7. a signal: temporaries removed; a needle .partial with no case in it removed */
    Config wide = small_config(48, 80, 2, 4, 2, 512, 4096);
    TestModel big = make_model(wide, 27);
    write_model(&big, tmp_path("long_probe.bin"), FORMAT_RAZOR);
    free_test_model(&big);
    snprintf(cmd, sizeof cmd, "exec %s %s %s -m profile -o %s/p.heads 2>/dev/null", razor_bin,
             tmp_path("long_probe.bin"), tok, dir);
    int rc = kill_when_file_appears(cmd, dir, "p.heads.tmp", SIGTERM);
    check(rc == 128 + SIGTERM && files_named(dir, "p.heads") == 0,
          "SIGTERM during -m profile: killed by it (%d), and no p.heads, p.heads.svg or temporary left", rc);
    snprintf(cmd, sizeof cmd, "trap '' TERM; exec %s %s %s -m profile -o %s/ignored.heads 2>/dev/null", razor_bin,
             tmp_path("long_probe.bin"), tok, dir);
    rc = kill_when_file_appears(cmd, dir, "ignored.heads.tmp", SIGTERM);
    snprintf(out, sizeof out, "%s/ignored.heads", dir);
    check(rc == 0 && file_size(out) > 0, "SIGTERM ignored when razor starts (nohup): the profile completes (%d)", rc);
    for (int ignored = 0; ignored < 2; ignored++) { /* a reader that goes away: SIGPIPE, or with it ignored, EPIPE */
        snprintf(cmd, sizeof cmd, "%s{ %s %s %s -n 3000 -t 0 -c full -i hello 2>%s/pipe_err; echo $? >%s/pipe_rc; } | "
                 "true", ignored ? "trap '' PIPE; " : "", razor_bin, tmp_path("long_probe.bin"), tok, dir, dir);
        check(system(cmd) == 0, "%s", cmd);
        snprintf(out, sizeof out, "%s/pipe_rc", dir);
        char *said_rc = slurp_text(out);
        snprintf(out, sizeof out, "%s/pipe_err", dir);
        char *said_err = slurp_text(out);
        if (ignored)
            check(atoi(said_rc) == 1 && strstr(said_err, "standard output: cannot write it all: Broken pipe"),
                  "SIGPIPE ignored, the reader gone: one line, exit 1: %s %s", said_rc, said_err);
        else check(atoi(said_rc) == 128 + SIGPIPE, "the reader gone: SIGPIPE ends razor quietly: %s %s", said_rc,
                   said_err);
        free(said_rc);
        free(said_err);
    }
    write_text(tmp_path("two_by_two.tsv"), "1\t0\n0\t0\n"); /* a profile: layer 0's KV head 0 a retrieval head */
    snprintf(cmd, sizeof cmd, "exec %s %s %s -k %s -m needle -L 4000 -o %s/sig 2>/dev/null", razor_bin,
             tmp_path("long_probe.bin"), tok, tmp_path("two_by_two.tsv"), dir);
    rc = kill_when_file_appears(cmd, dir, "sig.jsonl.partial", SIGINT);
    check(rc == 128 + SIGINT && files_named(dir, "sig") == 0,
          "SIGINT before the first needle case is done: no empty .partial left (exit %d)", rc);

    /* 9. a FIFO as the model, -z or -k: refused at once, no hang */
    snprintf(out, sizeof out, "%s/fifo", dir);
    mkfifo(out, 0600);
    snprintf(cmd, sizeof cmd, "timeout 20 %s %s -i hi", razor_bin, out);
    expect_cli_error("a FIFO as the model", cmd, 1, "fifo: not a regular file");
    snprintf(cmd, sizeof cmd, "timeout 20 %s %s -z %s -i hi", razor_bin, model, out);
    expect_cli_error("a FIFO with no writer as -z", cmd, 1, "fifo: a FIFO with nothing written to it");
    snprintf(cmd, sizeof cmd, "timeout 20 %s %s %s -k %s -i hi", razor_bin, model, tok, out);
    expect_cli_error("a FIFO with no writer as -k", cmd, 1, "fifo: a FIFO with nothing written to it");
    snprintf(cmd, sizeof cmd, "timeout 20 %s %s -z /dev/stdin -m tokenize -i hi < tests/sp512/tokenizer.bin", razor_bin,
             model);
    r = run(cmd);
    check(r.status == 0, "a tokenizer through a pipe still reads: %s", r.err);
    free_run(&r);

    /* 10. a tiny temperature is greedy, not <unk>; NaN weights are an error naming the layer */
    snprintf(cmd, sizeof cmd, "%s %s %s -n 12 -t 1e-38 -s 3 -c full -i 'It was'", razor_bin, model, tok);
    Run a = run(cmd);
    snprintf(cmd, sizeof cmd, "%s %s %s -n 12 -t 0 -c full -i 'It was'", razor_bin, model, tok);
    Run b = run(cmd);
    check(a.status == 0 && !strcmp(a.out, b.out) && !strstr(a.out, "<unk>"), "-t 1e-38 samples as greedy: '%s' '%s'",
          a.out, b.out);
    free_run(&a);
    free_run(&b);
    Config ac = c; /* an ALiBi model: its span rule sees NaN query weights, with no forward pass */
    ac.pos_encoding = POS_ALIBI;
    TestModel alibi = make_model(ac, 28);
    alibi.wq[(size_t)1 * c.dim * c.dim + 3] = NAN; /* layer 1 */
    write_model(&alibi, tmp_path("nan_alibi.bin"), FORMAT_RAZOR);
    free_test_model(&alibi);
    snprintf(cmd, sizeof cmd, "%s %s %s -m profile -o %s/nan_alibi.heads", razor_bin, tmp_path("nan_alibi.bin"), tok,
             dir);
    expect_cli_error("NaN query weights, the span rule", cmd, 1, "NaN in layer 1's query or key weights");
    check(files_named(dir, "nan_") == 0, "no profile from NaN weights");
    tm.w1[(size_t)1 * c.hidden_dim * c.dim + 7] = NAN; /* layer 1's ffn */
    write_model(&tm, tmp_path("nan.bin"), FORMAT_RAZOR);
    const char *modes[] = {"-n 4 -i hello", "-m compare -n 4 -i hello", "-m needle -L 60 -D 0 -o ", "-m profile -o ",
                           "-m logits -i hello -o ", "-m perplexity -i 'hello there, how are you today, and then'"};
    for (int i = 0; i < 6; i++) {
        char outs[300] = "";
        if (strstr(modes[i], "-o ")) snprintf(outs, sizeof outs, "%s/nan_%d", dir, i);
        snprintf(cmd, sizeof cmd, "%s %s %s -k %s %s%s", razor_bin, tmp_path("nan.bin"), tok,
                 tmp_path("two_by_two.tsv"), modes[i], outs);
        if (i == 3) snprintf(cmd, sizeof cmd, "%s %s %s %s%s", razor_bin, tmp_path("nan.bin"), tok, modes[i], outs);
        r = run(cmd);
        check(r.status == 1 && strstr(r.err, "not finite: NaN or Inf first in layer 1 (of 0..1)") &&
                  !strstr(r.out, "<unk>") && files_named(dir, "nan_") == 0,
              "NaN weights in layer 1, %s: exit 1 naming the layer, no output file: exit %d, %s", modes[i], r.status,
              r.err);
        free_run(&r);
    }
    free_test_model(&tm);
}

/* ---------------------------------------------------------------------------------------------
 * The RazorAttention cache */

/* a head to be compressed (a SHORT_HEAD until it is), as razor's choose_head_caches makes it */
static HeadCache new_head(int hd, int n_sink, int compensate) {
    HeadCache h;
    head_init(&h, KV_F32, hd, ATT_TILE_K);
    CacheConfig cache = {.policy = compensate ? POLICY_RAZOR : POLICY_STREAMING, .n_sink = n_sink};
    choose_head_caches(&h, 1, &cache);
    return h;
}

/* one query against a head, through the tiled loop */
static void head_attend(const HeadCache *h, const float *q, int hd, float *out) {
    float *scratch = calloc(ATT_SCRATCH(hd), sizeof(float));
    attention(out, hd, q, hd, 1, h, h->n - 1, hd, 0, 0, scratch);
    free(scratch);
}

/* softmax attention over an explicit list of keys, in double */
static void plain_attend(const float *q, const float *const *keys, const float *const *values, int n, int hd,
                         float *out) {
    double *s = calloc(n, sizeof(double)), max = -INFINITY, sum = 0;
    for (int j = 0; j < n; j++) {
        for (int d = 0; d < hd; d++) s[j] += (double)q[d] * keys[j][d];
        s[j] /= sqrt(hd);
        if (s[j] > max) max = s[j];
    }
    for (int j = 0; j < n; j++) sum += s[j] = exp(s[j] - max);
    for (int d = 0; d < hd; d++) {
        double o = 0;
        for (int j = 0; j < n; j++) o += s[j] / sum * values[j][d];
        out[d] = (float)o;
    }
    free(s);
}

/* The compensation token equals N_d explicit copies of the mean dropped key and value; with N_d = 0
 * a head is exactly full attention; the sliding window equals compressing from scratch each step. */
static void test_compensation(void) {
    int hd = 24, n_sink = 4, window = 32;
    float worst_formula = 0, worst_full = 0, worst_slide = 0;
    int cases = 0;
    for (int n = 5; n <= 300; n += 13) {
        float *K = random_tensor((size_t)n * hd, 1.5f, 0), *V = random_tensor((size_t)n * hd, 1.0f, 0),
              *q = random_tensor(hd, 1.5f, 0);
        HeadCache h = new_head(hd, n_sink, 1);
        for (int t = 0; t < n; t++) head_append(&h, K + t * hd, V + t * hd, (float)t, hd, n == 1);
        head_compress(&h, window, hd);
        float out[64], ref[64], mean_k[64] = {0}, mean_v[64] = {0};
        int n_dropped = n - n_sink - window > 0 ? n - n_sink - window : 0;
        const float **keys = malloc((n + n_dropped) * sizeof(float *)),
                    **values = malloc((n + n_dropped) * sizeof(float *));
        int m = 0;
        for (int t = 0; t < n; t++)
            if (t < n_sink || t >= n - window || n_dropped == 0) keys[m] = K + t * hd, values[m++] = V + t * hd;
        for (int t = n_sink; t < n - window && n_dropped > 0; t++)
            for (int d = 0; d < hd; d++) mean_k[d] += K[t * hd + d] / n_dropped, mean_v[d] += V[t * hd + d] / n_dropped;
        for (int k = 0; k < n_dropped; k++) keys[m] = mean_k, values[m++] = mean_v; /* N_d copies, spelled out */
        head_attend(&h, q, hd, out);
        plain_attend(q, keys, values, m, hd, ref);
        float d = max_abs_diff(out, ref, hd);
        if (n_dropped > 0) worst_formula = d > worst_formula ? d : worst_formula;
        else worst_full = d > worst_full ? d : worst_full;
        check(h.n_dropped == n_dropped && head_bytes(&h, hd) == (size_t)(n_dropped ? n_sink + 1 + window : n) * hd * 8,
              "n=%d: N_d %d (want %d), %zu bytes kept", n, h.n_dropped, n_dropped, head_bytes(&h, hd));
        free(keys); free(values); free(K); free(V); free(q);
        head_free(&h);
        cases++;
    }
    check(worst_formula <= 1e-5f,
          "compensation slot with + ln(N_d) equals N_d explicit copies of the means: max diff %g", worst_formula);
    check(worst_full <= 1e-5f, "N_d = 0: the head is exactly full attention: max diff %g", worst_full);

    /* a window that slides token by token against compressing all tokens from scratch at every step */
    int n = 260;
    float *K = random_tensor((size_t)n * hd, 1.5f, 0), *V = random_tensor((size_t)n * hd, 1.0f, 0),
          *q = random_tensor(hd, 1.5f, 0);
    HeadCache sliding = new_head(hd, n_sink, 1);
    for (int t = 0; t < 20; t++)
        head_append(&sliding, K + t * hd, V + t * hd, (float)t, hd, 0); /* a 20-token prompt */
    head_compress(&sliding, window, hd);
    for (int t = 20; t < n; t++) {
        head_append(&sliding, K + t * hd, V + t * hd, (float)t, hd, 1);
        HeadCache scratch = new_head(hd, n_sink, 1);
        for (int u = 0; u <= t; u++) head_append(&scratch, K + u * hd, V + u * hd, (float)u, hd, t == 0);
        head_compress(&scratch, window, hd);
        float a[64], b[64];
        head_attend(&sliding, q, hd, a);
        head_attend(&scratch, q, hd, b);
        float d = max_abs_diff(a, b, hd);
        worst_slide = d > worst_slide ? d : worst_slide;
        if (sliding.n_dropped != scratch.n_dropped || head_bytes(&sliding, hd) != head_bytes(&scratch, hd))
            worst_slide = INFINITY;
        head_free(&scratch);
    }
    check(worst_slide <= 1e-5f && sliding.slots <= 128,
          "sliding the window step by step equals compressing from scratch (240 steps): max diff %g, %d slots",
          worst_slide, sliding.slots);
    head_free(&sliding);
    free(K); free(V); free(q);

    /* a chat turn: 7 new tokens as one block on a compressed head; each of the 7 queries (they go
     * through the tiled loop in groups, the compensation slot inside the group's first tile) sees the
     * sinks, N_d copies of the means, the window and the new tokens up to itself */
    int prompt = 150, turn = 7, n_dropped = prompt - n_sink - window;
    K = random_tensor((size_t)(prompt + turn) * hd, 1.5f, 0), V = random_tensor((size_t)(prompt + turn) * hd, 1.0f, 0);
    float *Q = random_tensor((size_t)turn * hd, 1.5f, 0), mean_k[64] = {0}, mean_v[64] = {0}, out[7 * 64], ref[64],
          worst_turn = 0;
    HeadCache h = new_head(hd, n_sink, 1);
    for (int t = 0; t < prompt; t++) head_append(&h, K + t * hd, V + t * hd, (float)t, hd, 0);
    head_compress(&h, window, hd);
    for (int t = prompt; t < prompt + turn; t++) head_append(&h, K + t * hd, V + t * hd, (float)t, hd, 0);
    float *scratch = calloc(ATT_SCRATCH(hd), sizeof(float));
    attention(out, hd, Q, hd, turn, &h, h.n - turn, hd, 0, 0, scratch);
    for (int t = n_sink; t < prompt - window; t++)
        for (int d = 0; d < hd; d++) mean_k[d] += K[t * hd + d] / n_dropped, mean_v[d] += V[t * hd + d] / n_dropped;
    const float **keys = malloc((prompt + turn) * sizeof(float *)),
                **values = malloc((prompt + turn) * sizeof(float *));
    for (int i = 0; i < turn; i++) {
        int m = 0;
        for (int t = 0; t < n_sink; t++) keys[m] = K + t * hd, values[m++] = V + t * hd;
        for (int k = 0; k < n_dropped; k++) keys[m] = mean_k, values[m++] = mean_v;
        for (int t = prompt - window; t <= prompt + i; t++) keys[m] = K + t * hd, values[m++] = V + t * hd;
        plain_attend(Q + i * hd, keys, values, m, hd, ref);
        float d = max_abs_diff(out + i * hd, ref, hd);
        worst_turn = d > worst_turn || d != d ? d : worst_turn;
    }
    check(worst_turn <= 1e-5f,
          "a 7-token turn on a compressed head: every query equals its explicit reference, max diff %g", worst_turn);
    free(keys); free(values); free(scratch); free(K); free(V); free(Q);
    head_free(&h);
}

/* Policies in a real forward pass: bytes kept, and what must equal the full cache. */
static void test_cache_policies(void) {
    Config c = small_config(48, 80, 2, 4, 2, 97, 400);
    TestModel tm = make_model(c, 21);
    write_model(&tm, tmp_path("pol.bin"), FORMAT_RAZOR);
    Model m;
    load_model(&m, tmp_path("pol.bin"));
    int n = 200, steps = 30, hd = c.head_dim;
    int *ids = random_ids(n + steps, 97);
    unsigned char retrieval[4] = {0, 1, 0, 0}; /* (layer 0, kv head 1) keeps everything */
    HeadProfile profile = {.retrieval = retrieval};
    float *full_logits = NULL;
    for (int p = 0; p < 4; p++) {
        CacheConfig cache = {
            .policy = (Policy)p, .n_sink = 4, .window_min = 16, .compression = 5.0f, .profile = &profile};
        RunState s;
        build_runstate(&s, &m, n + steps, 64, &cache);
        forward(&m, &s, ids, n, NULL, NULL);
        compress_cache(&s, &m.config);
        size_t kept, full, window = 40; /* max(16, 200 / 5) */
        cache_bytes(&s, &m.config, &kept, &full);
        size_t per_tok = (size_t)hd * 2 * sizeof(float), want_full = (size_t)n * 4 * per_tok;
        size_t compressed = (4 + (p == POLICY_RAZOR) + window) * per_tok;
        size_t want = p == POLICY_FULL        ? want_full
                      : p == POLICY_STREAMING ? 4 * compressed
                                              : 3 * compressed + n * per_tok;
        check(kept == want && full == want_full,
              "policy %d after a %d-token prompt: %zu bytes kept (want %zu), %zu full (want %zu)", p, n, kept, want,
              full, want_full);
        int tiles_ok = 1;
        for (int i = 0; i < 4; i++)
            if (s.heads[i].state != RETRIEVAL_HEAD)
                tiles_ok &= s.heads[i].slots ==
                            (int)((4 + (p == POLICY_RAZOR) + window + ATT_TILE_K - 1) / ATT_TILE_K * ATT_TILE_K);
        check(tiles_ok, "policy %d: compressed heads physically hold sinks + compensation + window (whole tiles)", p);
        float *logits = NULL;
        for (int t = n; t < n + steps; t++) logits = forward(&m, &s, ids + t, 1, NULL, NULL);
        if (p == POLICY_FULL) full_logits = memcpy(malloc(97 * sizeof(float)), logits, 97 * sizeof(float));
        else
            check(max_abs_diff(full_logits, logits, 97) > 1e-4f, "policy %d changes the logits after dropping tokens",
                  p);
        free_runstate(&s);
    }
    /* razor whose window holds the whole prompt and generation: nothing dropped, exactly full */
    CacheConfig wide = {
        .policy = POLICY_RAZOR, .n_sink = 4, .window_min = n + steps, .compression = 5.0f, .profile = &profile};
    RunState s;
    build_runstate(&s, &m, n + steps, 64, &wide);
    forward(&m, &s, ids, n, NULL, NULL);
    compress_cache(&s, &m.config);
    float *logits = NULL;
    for (int t = n; t < n + steps; t++) logits = forward(&m, &s, ids + t, 1, NULL, NULL);
    check(max_abs_diff(full_logits, logits, 97) <= 1e-5f, "razor with N_d = 0 gives the full cache's logits: %g",
          max_abs_diff(full_logits, logits, 97));
    free_runstate(&s);
    /* a second turn whose last block is one token (129 = 64 + 64 + 1) is a turn, not a generation step:
     * in blocks of 64 it leaves the cache a single block of 256 leaves (the short heads of a 10-token first
     * turn are compressed once, to max(16, 139 / 5) = 27 tokens, not early to the first turn's 16) */
    size_t kept_blocks[2];
    float *turn_logits[2];
    for (int b = 0; b < 2; b++) {
        CacheConfig turns = {.policy = POLICY_RAZOR, .n_sink = 4, .window_min = 16, .compression = 5.0f,
                             .profile = &profile};
        size_t uncompressed;
        build_runstate(&s, &m, 200, b == 0 ? 64 : 256, &turns);
        forward(&m, &s, ids, 10, NULL, NULL);
        compress_cache(&s, &m.config);
        forward(&m, &s, ids + 10, 129, NULL, NULL);
        compress_cache(&s, &m.config);
        float *next = forward(&m, &s, ids + 139, 1, NULL, NULL);
        turn_logits[b] = memcpy(malloc(97 * sizeof(float)), next, 97 * sizeof(float));
        cache_bytes(&s, &m.config, &kept_blocks[b], &uncompressed);
        free_runstate(&s);
    }
    check(kept_blocks[0] == kept_blocks[1] && max_abs_diff(turn_logits[0], turn_logits[1], 97) <= 1e-5f,
          "a 129-token turn in blocks of 64 (the last of one token) keeps what one block keeps: %zu and %zu bytes, "
          "logits within %g", kept_blocks[0], kept_blocks[1], max_abs_diff(turn_logits[0], turn_logits[1], 97));
    free(turn_logits[0]); free(turn_logits[1]);
    free(full_logits); free(ids);
    free_model(&m);
    free_test_model(&tm);
}

/* The profiler finds a planted induction head and a planted echo head, and picks their KV heads
 * under GQA; profiles round-trip through both file formats. The heads are set by hand:
 *   embedding: a random unit vector per token in dims 0..15, and a constant 1 in dim 16;
 *   layer 0, query head 0 (KV head 0): a previous-token head. Its q and k read only the constant,
 *     into the fast RoPE pairs 0..3, with k's phase advanced by one position, so the score peaks
 *     at distance 1; its value (the token vector) goes to dims 32..47 of the residual stream;
 *   layer 1, query head 0 (KV head 0): the induction head. q reads the token (dims 0..15), k reads
 *     the previous token (dims 32..47), both into the slow RoPE pairs 8..15, so a token attends to
 *     the tokens that followed its earlier copies;
 *   layer 1, query head 3 (KV head 1): the echo head. q and k both read the token: it attends to
 *     its own earlier copies.
 * Everything else is zero. */
static void test_profiler(void) {
    Config c = small_config(128, 32, 2, 4, 2, 512, 129);
    c.rope_theta = 1e6f; /* pairs 8..15 of a 32-dim head turn by < 0.13 rad over the probe: position-blind */
    TestModel tm = make_model(c, 5);
    size_t dim = 128, hd = 32, q_rows = 128, kv_rows = 64;
    float *all[] = {tm.wq, tm.wk, tm.wv, tm.wo, tm.w1, tm.w2, tm.w3};
    size_t sizes[] = {2 * 128 * dim, 2 * 64 * dim, 2 * 64 * dim, 2 * dim * 128,
                      2 * 32 * dim,  2 * dim * 32, 2 * 32 * dim};
    for (int i = 0; i < 7; i++) memset(all[i], 0, sizes[i] * sizeof(float));
    for (size_t i = 0; i < 2 * dim; i++) tm.rms_att[i] = tm.rms_ffn[i] = 1;
    for (int v = 0; v < 512; v++) {
        float norm = 0, *e = tm.emb + v * dim;
        memset(e, 0, dim * sizeof(float));
        for (int d = 0; d < 16; d++) { e[d] = urand(); norm += e[d] * e[d]; }
        for (int d = 0; d < 16; d++) e[d] /= sqrtf(norm);
        e[16] = 1;
    }
    float *wq0 = tm.wq, *wk0 = tm.wk, *wv0 = tm.wv, *wo0 = tm.wo; /* layer 0: RMSNorm scales x by 8 */
    for (int p = 0; p < 4; p++) {
        float theta = powf(1e6f, -2.0f * p / hd), beta = 11.0f / 8;
        wq0[(0 * hd + 2 * p) * dim + 16] = beta;
        wk0[(0 * hd + 2 * p) * dim + 16] = beta * cosf(theta);
        wk0[(0 * hd + 2 * p + 1) * dim + 16] = beta * sinf(theta);
    }
    for (int d = 0; d < 16; d++) {
        wv0[(0 * hd + d) * dim + d] = 1.0f / 8;
        wo0[(32 + d) * q_rows + 0 * hd + d] = 1;
    }
    float *wq1 = tm.wq + q_rows * dim, *wk1 = tm.wk + kv_rows * dim, a = 2.3f; /* layer 1: x scaled by ~6.5 */
    for (int d = 0; d < 16; d++) {
        wq1[(0 * hd + 16 + d) * dim + d] = a;      /* induction: current token ... */
        wk1[(0 * hd + 16 + d) * dim + 32 + d] = a; /* ... against the previous token */
        wq1[(3 * hd + 16 + d) * dim + d] = a;      /* echo: current token ... */
        wk1[(1 * hd + 16 + d) * dim + d] = a;      /* ... against the token itself */
    }
    write_model(&tm, tmp_path("echo.bin"), FORMAT_RAZOR);
    Model m;
    Tokenizer tok;
    load_model(&m, tmp_path("echo.bin"));
    load_tokenizer(&tok, "tests/sp512/tokenizer.bin", 512, 1, 2);
    HeadProfile p;
    int rc = profile_heads(&m, &tok, &p, 7, 0.25f, 0.25f);
    check(rc == 0 && p.K == 32, "profile a 2-layer GQA model (K = %d)", rc == 0 ? p.K : -1);
    if (rc == 0) { /* KV heads in order: (0,0) (0,1) (1,0) (1,1) */
        check(p.induction[2] > 0.5f && p.induction[0] < 0.2f && p.induction[1] < 0.2f && p.induction[3] < 0.2f,
              "the planted induction head stands out: induction %.3f %.3f %.3f %.3f", p.induction[0], p.induction[1],
              p.induction[2], p.induction[3]);
        check(p.echo[3] > 0.5f && p.echo[0] < 0.2f && p.echo[1] < 0.2f && p.echo[2] < 0.2f,
              "the planted echo head stands out: echo %.3f %.3f %.3f %.3f", p.echo[0], p.echo[1], p.echo[2], p.echo[3]);
        check(p.retrieval[2] && p.retrieval[3] && !p.retrieval[0] && !p.retrieval[1],
              "their KV heads (layer 1, KV heads 0 and 1) are the retrieval heads, the previous-token head is not");
        p.retrieval[0] = 1; /* edited by hand */
        int ok = save_profile(&p, tmp_path("echo.heads")) == 0 && save_profile(&p, tmp_path("echo.tsv")) == 0;
        HeadProfile back, back_tsv;
        ok = ok && load_profile(&back, tmp_path("echo.heads"), &m.config, 0.15f) == 0;
        check(ok && !memcmp(back.retrieval, p.retrieval, 4) && fabsf(back.echo[3] - p.echo[3]) < 1e-4f &&
              fabsf(back.induction[2] - p.induction[2]) < 1e-4f && back.K == 32,
              ".heads round trip: %s", ok ? "" : razor_error());
        if (ok) free_profile(&back);
        ok = load_profile(&back_tsv, tmp_path("echo.tsv"), &m.config, 0.15f) == 0;
        check(ok && !memcmp(back_tsv.retrieval, p.retrieval, 4), "DuoAttention .tsv round trip: %s",
              ok ? "" : razor_error());
        if (ok) free_profile(&back_tsv);
        /* the words: a retrieval head is RETRIEVAL, any other COMPRESSED; older files' FULL and RAZOR read the same */
        char *text = NULL;
        size_t text_len = 0;
        ok = read_file(tmp_path("echo.heads"), 1 << 20, &text, &text_len) == 0;
        int retrieval_words = 0, compressed_words = 0;
        const char *layers = ok ? strstr(text, "\n0 |") : NULL; /* the layer lines, after the comments */
        for (const char *at = layers; at && (at = strstr(at, " RETRIEVAL")); at++) retrieval_words++;
        for (const char *at = layers; at && (at = strstr(at, " COMPRESSED")); at++) compressed_words++;
        check(layers && retrieval_words == 3 && compressed_words == 1 && !strstr(layers, "FULL") &&
                  !strstr(layers, "RAZOR"),
              ".heads writes RETRIEVAL for the 3 retrieval heads and COMPRESSED for the other (%d, %d)",
              retrieval_words, compressed_words);
        FILE *old = fopen(tmp_path("old_words.heads"), "w");
        for (const char *at = text; ok && *at; at++) { /* the same file in the older words */
            if (!strncmp(at, " RETRIEVAL", 10)) { fputs(" FULL", old); at += 9; }
            else if (!strncmp(at, " COMPRESSED", 11)) { fputs(" RAZOR", old); at += 10; }
            else fputc(*at, old);
        }
        fclose(old);
        free(text);
        ok = load_profile(&back, tmp_path("old_words.heads"), &m.config, 0.15f) == 0;
        check(ok && !memcmp(back.retrieval, p.retrieval, 4),
              "a .heads file in the older words (FULL/RAZOR) loads the same: %s", ok ? "" : razor_error());
        if (ok) free_profile(&back);
        Config other = m.config;
        other.n_layers = 3;
        check(load_profile(&back, tmp_path("echo.heads"), &other, 0.15f) != 0 &&
                  strstr(razor_error(), "profile for a model with 2 layers"),
              "a profile for another shape is refused: %s", razor_error());
        check(load_profile(&back, tmp_path("echo.tsv"), &other, 0.15f) != 0 &&
                  strstr(razor_error(), "the model has 3 layers"),
              "a .tsv of another shape is refused: %s", razor_error());
        FILE *f = fopen(tmp_path("bad.heads"), "w");
        fprintf(f, "shape layers 2 kv_heads 2 heads 4 head_dim 32 dim 128\n0 | 0.1 0.2 FULL | 0.1 0.2 MAYBE\n");
        fclose(f);
        check(load_profile(&back, tmp_path("bad.heads"), &m.config, 0.15f) != 0 && strstr(razor_error(), "line 2"),
              "a bad flag is refused: %s", razor_error());
        f = fopen(tmp_path("bad.heads"), "w"); /* found by the fuzzer: a layer line past the model's layers */
        fprintf(f, "shape layers 2 kv_heads 2 heads 4 head_dim 32 dim 128\n");
        for (int l = 0; l < 3; l++) fprintf(f, "%d | 0 0 FULL | 0 0 FULL\n", l);
        fclose(f);
        check(load_profile(&back, tmp_path("bad.heads"), &m.config, 0.15f) != 0 && strstr(razor_error(), "line 4"),
              "an extra layer line is refused: %s", razor_error());
        free_profile(&back); /* harmless after a refusal */
        free_profile(&p);
    }
    free_tokenizer(&tok);
    free_model(&m);
    free_test_model(&tm);

    /* a byte-level vocabulary (<unk> <s> </s> and the 256 byte pieces, as train/tokenizer.py --bytes
     * writes it) has no other pieces: its printable ASCII bytes, ! to ~, are the probe's tokens */
    FILE *f = fopen(tmp_path("bytes.bin"), "wb");
    int32_t max_len = 6, len;
    float score = 0;
    fwrite(&max_len, 4, 1, f);
    for (int i = 0; i < 259; i++) {
        char piece[16];
        if (i < 3) snprintf(piece, sizeof piece, "%s", i == 0 ? "<unk>" : i == 1 ? "\n<s>\n" : "\n</s>\n");
        else snprintf(piece, sizeof piece, "<0x%02X>", i - 3);
        len = (int32_t)strlen(piece);
        fwrite(&score, 4, 1, f), fwrite(&len, 4, 1, f), fwrite(piece, 1, (size_t)len, f);
    }
    fclose(f);
    TestModel bm = make_model(small_config(16, 32, 1, 2, 2, 259, 1100), 9);
    write_model(&bm, tmp_path("bytes_model.bin"), FORMAT_RAZOR);
    int ok =
        load_model(&m, tmp_path("bytes_model.bin")) == 0 && load_tokenizer(&tok, tmp_path("bytes.bin"), 259, 1, 2) == 0;
    ok = ok && profile_heads(&m, &tok, &p, 3, 0.14f, 0.01f) == 0;
    check(ok && p.K == 94, "a byte-level vocabulary profiles with its 94 printable ASCII bytes (K = %d) %s",
          ok ? p.K : -1, ok ? "" : razor_error());
    if (ok) free_profile(&p);
    free_tokenizer(&tok);
    free_model(&m);
    free_test_model(&bm);
}

/* ---------------------------------------------------------------------------------------------
 * Every input the fuzzers ever crashed razor with (fuzz/regressions/<harness>-<name>, read as that
 * harness reads its input) must now be refused or handled cleanly: under the sanitizers, a relapse
 * aborts this test. */
static void test_fuzz_regressions(void) {
    DIR *dir = opendir("fuzz/regressions");
    int n = 0;
    for (struct dirent *e; dir && (e = readdir(dir));) {
        char path[512];
        size_t size;
        snprintf(path, sizeof path, "fuzz/regressions/%s", e->d_name);
        if (e->d_name[0] == '.' || strstr(e->d_name, ".sh")) continue;
        unsigned char *d = slurp(path, &size);
        if (!d) continue;
        if (!strncmp(e->d_name, "tokenizer-", 10) && size >= 2) { /* 2 bytes of vocab_size, then the file */
            write_bytes(tmp_path("regression.tok"), d + 2, size - 2);
            Tokenizer t;
            if (load_tokenizer(&t, tmp_path("regression.tok"), 1 + (d[0] | d[1] << 8) % 4096, 1, 2) == 0) {
                int ids[64];
                encode(&t, "Hello, world 12345!", 1, ids);
                free_tokenizer(&t);
            }
            n++;
        } else if (!strncmp(e->d_name, "profile-", 8) && size >= 1) { /* even first byte: .heads, odd: .tsv */
            const char *file = tmp_path(d[0] & 1 ? "regression.tsv" : "regression.heads");
            write_bytes(file, d + 1, size - 1);
            Config c = {.dim = 32,
                        .hidden_dim = 64,
                        .n_layers = 3,
                        .n_heads = 4,
                        .n_kv_heads = 2,
                        .head_dim = 8,
                        .vocab_size = 64,
                        .seq_len = 64};
            HeadProfile p;
            if (load_profile(&p, file, &c, 0.15f) == 0) free_profile(&p);
            n++;
        } else if (!strncmp(e->d_name, "model-", 6)) {
            write_bytes(tmp_path("regression.bin"), d, size);
            Model m;
            if (load_model(&m, tmp_path("regression.bin")) == 0) free_model(&m);
            n++;
        } else if (!strncmp(e->d_name, "ids-", 4)) {
            write_bytes(tmp_path("regression.ids"), d, size);
            int *ids, count;
            if (read_ids(tmp_path("regression.ids"), 512, 1000, &ids, &count) == 0) free(ids);
            n++;
        }
        free(d);
    }
    if (dir) closedir(dir);
    check(n >= 3, "%d inputs that once crashed razor (fuzz/regressions) are handled cleanly", n);
}

/* ---------------------------------------------------------------------------------------------
 * 16-bit keys and values, ALiBi, chat templates */

/* x rounded to IEEE half: 11 significant bits, nearest, ties to even; below 2^-14 in steps of 2^-24;
 * from 65520 on, infinity (frexp and rint, not bit tricks). */
static double ref_f16(float x) {
    if (fabsf(x) >= 65520.0f) return x > 0 ? INFINITY : -INFINITY;
    int e;
    double m = frexp(x, &e);
    if (e - 1 < -14) return ldexp(rint(ldexp(x, 24)), -24);
    return ldexp(rint(ldexp(m, 11)), e - 11);
}

static void test_kv_types(void) {
    /* every half widens to the float it stands for, and back; scalar and vector widening agree, for halves
     * and for bfloat16 */
    int ok = 1, back = 1, vec = 1, vec_bf16 = 1;
    for (uint32_t u = 0; u < 65536; u++) {
        uint16_t h = (uint16_t)u;
        int e = (h >> 10) & 31, frac = h & 1023;
        double want = e == 31 ? (frac ? NAN : INFINITY) : e == 0 ? ldexp(frac, -24) : ldexp(1024 + frac, e - 25);
        if (h & 0x8000) want = -want;
        float got = f16_to_f32(h);
        ok &= isnan(want) ? isnan(got) : got == (float)want;
        back &= isnan(got) || f32_to_f16(got) == h;
        uint16_t lanes[VEC];
        for (int k = 0; k < VEC; k++) lanes[k] = (uint16_t)(u + (uint32_t)k * 4099u);
        vecf w = widen_f16(lanes);
        float wide[VEC];
        memcpy(wide, &w, sizeof wide);
        for (int k = 0; k < VEC; k++) {
            float one = f16_to_f32(lanes[k]);
            vec &= isnan(one) ? isnan(wide[k]) : wide[k] == one;
        }
        w = widen_bf16(lanes);
        memcpy(wide, &w, sizeof wide);
        for (int k = 0; k < VEC; k++) {
            float one = bf16_to_f32(lanes[k]);
            vec_bf16 &= memcmp(&wide[k], &one, sizeof one) == 0; /* bit for bit: NaNs keep their payload */
        }
    }
    check(ok, "f16 -> f32: all 65536 halves, subnormals, infinities and NaN included");
    check(back, "f32 -> f16 -> f32 gives every half back");
    check(vec, "the vector widening (widen_f16) equals the scalar one for every half");
    check(vec_bf16, "the vector widening (widen_bf16) equals the scalar one for every bfloat16, bit for bit");
    int rounding = 1;
    for (int i = 0; i < 200000; i++) { /* random floats over the whole range of halves */
        float x = ldexpf(urand(), (int)(urand() * 20));
        double want = ref_f16(x);
        rounding &= f16_to_f32(f32_to_f16(x)) == (float)want;
    }
    float ties[] = {1.0f + 0x1p-11f /* tie, to even: down */, 1.0f + 3 * 0x1p-11f /* tie: up */, 65504.0f, 65519.0f,
                    65520.0f, 0x1p-24f, 0x1p-25f /* tie to zero */, 3 * 0x1p-25f /* tie: up to 2^-23 */};
    for (size_t i = 0; i < sizeof ties / sizeof *ties; i++)
        rounding &= f16_to_f32(f32_to_f16(ties[i])) == (float)ref_f16(ties[i]);
    check(rounding, "f32 -> f16 rounds to nearest even (200000 random floats, ties, overflow, subnormals)");

    /* the KV bytes under every policy are exactly half with 16-bit keys and values */
    Config c = small_config(48, 80, 2, 4, 2, 97, 400);
    TestModel tm = make_model(c, 31);
    write_model(&tm, tmp_path("kv.bin"), FORMAT_RAZOR);
    Model m;
    load_model(&m, tmp_path("kv.bin"));
    int n = 200, *ids = random_ids(n + 20, 97);
    unsigned char retrieval[4] = {0, 1, 0, 0};
    HeadProfile profile = {.retrieval = retrieval};
    for (int p = 0; p < 4; p++) {
        size_t kept[3], full[3];
        for (int kv = KV_F32; kv <= KV_F16; kv++) {
            CacheConfig cache = {.policy = (Policy)p, .kv_type = (KVType)kv, .n_sink = 4, .window_min = 16,
                                 .compression = 5.0f, .profile = &profile};
            RunState s;
            build_runstate(&s, &m, n + 20, 64, &cache);
            forward(&m, &s, ids, n, NULL, NULL);
            compress_cache(&s, &m.config);
            for (int t = n; t < n + 20; t++) forward(&m, &s, ids + t, 1, NULL, NULL);
            cache_bytes(&s, &m.config, &kept[kv], &full[kv]);
            free_runstate(&s);
        }
        check(2 * kept[KV_BF16] == kept[KV_F32] && 2 * kept[KV_F16] == kept[KV_F32] && 2 * full[KV_F16] == full[KV_F32],
              "policy %s: 16-bit keys and values hold exactly half the bytes (%zu, %zu of %zu; full %zu of %zu)",
              policy_names[p], kept[KV_BF16], kept[KV_F16], kept[KV_F32], full[KV_F16], full[KV_F32]);
    }
    free(ids);
    free_model(&m);
    free_test_model(&tm);
}

/* ALiBi's slopes against the paper's numbers; the span rule on a model whose answer is worked out by
 * hand; a head cut to its span moves its output by no more than the rule promises. */
static void test_alibi(void) {
    int counts[] = {8, 12, 40}, ok = 1;
    for (size_t k = 0; k < 3; k++) {
        float slope[40];
        alibi_slopes(slope, counts[k]);
        for (int h = 0; h < counts[k]; h++)
            ok &= fabs(slope[h] - ref_slope(h, counts[k])) <= 1e-7 * ref_slope(h, counts[k]);
    }
    float s8[8], s12[12];
    alibi_slopes(s8, 8);
    alibi_slopes(s12, 12);
    /* 8 heads: 1/2, 1/4, ..., 1/256; 12: those 8, then 2^-0.5, 2^-1.5, 2^-2.5, 2^-3.5 */
    ok &= s8[0] == 0.5f && s8[7] == 0x1p-8f && s12[7] == 0x1p-8f && fabsf(s12[8] - 0.70710678f) < 1e-7f &&
          fabsf(s12[11] - 0.08838835f) < 1e-7f;
    check(ok, "ALiBi slopes for 8, 12 and 40 heads: the paper's sequences (12: 1/2..1/256, then 2^-0.5..2^-3.5)");

    /* dim 8, 2 heads of 4, one layer: W_Q = W_K = the first 4 inputs times sqrt(1/2) (so W_Q^T W_K = diag(1/2, ..
     * 1/2, 0 ..) and its spectral norm is 1/2), every norm weight 1/2: B = 0.5 * 0.25 * 8 / 2 = 0.5. Slopes
     * 2^-4 and 2^-8. With eps = 1e-3:
     *   head 0: L = (1 + 6.907755 - ln(1 - e^-0.0625)) / 0.0625 = (7.907755 + 2.803638) / 0.0625 = 171.38 -> 173
     *   head 1: L = (7.907755 + 5.547076) / 0.00390625 = 3444.4 -> beyond the context of 1000: FULL */
    Config c = small_config(8, 32, 1, 2, 2, 16, 1000);
    c.pos_encoding = POS_ALIBI;
    TestModel tm = make_model(c, 3);
    memset(tm.wq, 0, 8 * 8 * sizeof(float));
    memset(tm.wk, 0, 8 * 8 * sizeof(float));
    for (int h = 0; h < 2; h++)
        for (int r = 0; r < 4; r++) {
            tm.wq[(h * 4 + r) * 8 + r] = sqrtf(0.5f);
            tm.wk[(h * 4 + r) * 8 + r] = sqrtf(0.5f);
        }
    for (int j = 0; j < 8; j++) tm.rms_att[j] = 0.5f;
    write_model(&tm, tmp_path("alibi.bin"), FORMAT_RAZOR);
    Model m;
    load_model(&m, tmp_path("alibi.bin"));
    HeadProfile p;
    int rc = span_rule(&m, &p, 1e-3f);
    check(rc == 0 && p.span[0] == 173 && p.span[1] == 1000 && !p.retrieval[0] && p.retrieval[1],
          "span rule on a hand-built model: spans %d and %d (want 173 and 1000 = the context: a retrieval head)",
          rc == 0 ? p.span[0] : -1, rc == 0 ? p.span[1] : -1);
    if (rc == 0) { /* under razor, head 0 keeps 4 sinks + the compensation slot + its last 173 tokens */
        CacheConfig cache = {.policy = POLICY_RAZOR, .kv_type = KV_F32, .n_sink = 4, .window_min = 16,
                             .compression = 5.0f, .profile = &p};
        RunState s;
        int n_prompt = 600, *ids = random_ids(n_prompt + 10, 16);
        build_runstate(&s, &m, n_prompt + 10, 64, &cache);
        forward(&m, &s, ids, n_prompt, NULL, NULL);
        compress_cache(&s, &m.config);
        for (int t = n_prompt; t < n_prompt + 10; t++) forward(&m, &s, ids + t, 1, NULL, NULL);
        size_t kept, full, per_token = 4 * 2 * sizeof(float);
        cache_bytes(&s, &m.config, &kept, &full);
        check(kept == (4 + 1 + 173 + (size_t)n_prompt + 10) * per_token &&
                  full == 2 * (size_t)(n_prompt + 10) * per_token,
              "razor on the ALiBi model: head 0 keeps sinks + compensation + its span of 173, head 1 everything "
              "(%zu of %zu bytes)",
              kept, full);
        free_runstate(&s);
        free(ids);
        HeadProfile back;
        int ok_io = save_profile(&p, tmp_path("alibi.heads")) == 0 &&
                    load_profile(&back, tmp_path("alibi.heads"), &m.config, 0.15f) == 0;
        check(ok_io && back.span && back.span[0] == 173 && back.span[1] == 1000 && back.retrieval[1] &&
                  back.span_eps == 1e-3f,
              "an ALiBi profile (spans) round-trips through its .heads file");
        if (ok_io) free_profile(&back);
        Config rope = small_config(8, 32, 1, 2, 2, 16, 1000);
        check(load_profile(&back, tmp_path("alibi.heads"), &rope, 0.15f) != 0 &&
                  strstr(razor_error(), "uses RoPE"),
              "a span profile is refused for a RoPE model: %s", razor_error());
        free_profile(&p);
    }
    /* the norm weights weigh each input: gamma = (0.5, 0.9, 0.3, 0.2, 5, 5, 5, 5) leaves W_Q^T W_K's
     * diagonal 1/2 on the first 4 inputs, so ||G W_Q^T W_K G|| = 0.5 * 0.9^2 = 0.405 (the 5s meet only
     * zeros), B = 0.405 * 8 / 2 = 1.62, L = (3.24 + 6.907755 + 2.803638) / 0.0625 = 207.2 -> 209 */
    float gammas[8] = {0.5f, 0.9f, 0.3f, 0.2f, 5, 5, 5, 5};
    memcpy(tm.rms_att, gammas, sizeof gammas);
    write_model(&tm, tmp_path("alibi_gamma.bin"), FORMAT_RAZOR);
    Model mg;
    HeadProfile pg;
    rc = load_model(&mg, tmp_path("alibi_gamma.bin")) == 0 ? span_rule(&mg, &pg, 1e-3f) : -1;
    check(rc == 0 && pg.span[0] == 209 && pg.span[1] == 1000,
          "span rule with uneven norm weights: %d (want 209: only the weights on the head's inputs count)",
          rc == 0 ? pg.span[0] : -1);
    if (rc == 0) free_profile(&pg);
    free_model(&mg);
    /* the promise: keys whose scores stay within +-B, the query's own among them; cut head 0 to its last
     * 173 tokens; the output moves by less than 2 eps max|v| */
    int n = 900, hd = 4;
    float *K = random_tensor((size_t)n * hd, 0.5f, 0), *V = random_tensor((size_t)n * hd, 1.0f, 0), q[4], full[4],
          cut[4];
    for (int d = 0; d < hd; d++) q[d] = K[(size_t)(n - 1) * hd + d];
    HeadCache all = cache_of(K, V, n, hd, KV_F32), last = cache_of(K + (size_t)(n - 173) * hd,
                                                                   V + (size_t)(n - 173) * hd, 173, hd, KV_F32);
    for (int j = 0; j < 173; j++) last.position[j] = (float)(n - 173 + j);
    attention_reference(full, hd, q, hd, 1, &all, n - 1, hd, m.alibi_slope[0], (float)(n - 1));
    attention_reference(cut, hd, q, hd, 1, &last, 172, hd, m.alibi_slope[0], (float)(n - 1));
    float moved = max_abs_diff(full, cut, hd), max_v = 0;
    for (int i = 0; i < n * hd; i++) max_v = fmaxf(max_v, fabsf(V[i]));
    check(moved < 2 * 1e-3f * max_v && moved > 0,
          "a head cut to its span moves its output by %g, under the rule's 2 eps max|v| = %g", moved, 2e-3f * max_v);
    head_free(&all);
    head_free(&last);
    free(K); free(V);
    free_model(&m);
    free_test_model(&tm);
}

/* A two-turn conversation, system prompt included, in each template: the expected pieces written out
 * from the templates' documentation (Llama 2's [INST] and <<SYS>>; Llama 3's header tokens; ChatML),
 * special tokens by id, the text between them through the encoder (id 0: end of the list). */
typedef struct { int id; const char *text; } Piece;

static int expected_ids(const Tokenizer *tok, const Piece *pieces, int bos, int *ids) {
    int n = 0;
    for (int i = 0; pieces[i].id || pieces[i].text; i++) {
        if (pieces[i].text) n += encode(tok, pieces[i].text, bos, ids + n);
        else ids[n++] = pieces[i].id;
        if (pieces[i].text) bos = 0; /* Llama 2: <s> before the first text of a turn */
    }
    return n;
}

static void test_chat_templates(void) {
    size_t size;
    unsigned char *head = slurp("tests/bbpe_tokenizer.bin", &size);
    int32_t vocab;
    memcpy(&vocab, head + 8, 4);
    free(head);
    Tokenizer tok;
    if (load_tokenizer(&tok, "tests/bbpe_tokenizer.bin", vocab, vocab - 4, vocab - 3) != 0) {
        check(0, "load tests/bbpe_tokenizer.bin: %s", razor_error());
        return;
    }
    Config c = small_config(32, 32, 1, 2, 2, vocab, 64);
    c.bos_id = vocab - 4; /* <|begin_of_text|> */
    c.eos_id = vocab - 3;
    int A = vocab - 2, B = vocab - 1, E = 7; /* stand-ins for the template's special tokens */
    const Piece llama2_1[] = {{0, "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi there [/INST]"}, {0, NULL}},
                llama2_2[] = {{c.eos_id, NULL}, {0, "[INST] And then? [/INST]"}, {0, NULL}},
                llama3_1[] = {{c.bos_id, NULL}, {A, NULL}, {0, "system"}, {B, NULL}, {0, "\n\nBe brief."}, {E, NULL},
                              {A, NULL}, {0, "user"}, {B, NULL}, {0, "\n\nHi there"}, {E, NULL},
                              {A, NULL}, {0, "assistant"}, {B, NULL}, {0, "\n\n"}, {0, NULL}},
                llama3_2[] = {{E, NULL}, {A, NULL}, {0, "user"}, {B, NULL}, {0, "\n\nAnd then?"}, {E, NULL},
                              {A, NULL}, {0, "assistant"}, {B, NULL}, {0, "\n\n"}, {0, NULL}},
                chatml_1[] = {{A, NULL}, {0, "system\nBe brief."}, {B, NULL}, {0, "\n"},
                              {A, NULL}, {0, "user\nHi there"}, {B, NULL}, {0, "\n"},
                              {A, NULL}, {0, "assistant\n"}, {0, NULL}},
                chatml_2[] = {{B, NULL}, {0, "\n"}, {A, NULL}, {0, "user\nAnd then?"}, {B, NULL}, {0, "\n"},
                              {A, NULL}, {0, "assistant\n"}, {0, NULL}};
    struct { const char *name; int template; const Piece *turn[2]; } cases[] = {
        {"Llama 2", CHAT_LLAMA2, {llama2_1, llama2_2}},
        {"Llama 3", CHAT_LLAMA3, {llama3_1, llama3_2}},
        {"ChatML", CHAT_CHATML, {chatml_1, chatml_2}},
    };
    for (int k = 0; k < 3; k++) {
        c.chat_template = cases[k].template;
        c.chat_tokens[0] = A;
        c.chat_tokens[1] = B;
        c.chat_tokens[2] = k == 1 ? E : -1;
        for (int turn = 0; turn < 2; turn++) {
            int want[512], got[512];
            int n_want = expected_ids(&tok, cases[k].turn[turn], k == 0, want);
            int n = chat_turn_tokens(&c, &tok, turn ? NULL : "Be brief.", turn ? "And then?" : "Hi there", turn, got);
            check(n == n_want && memcmp(got, want, (size_t)n * sizeof(int)) == 0,
                  "%s template, turn %d: the %d ids its documentation gives (got %d)", cases[k].name, turn + 1,
                  n_want, n);
        }
        int end = k == 1 ? E : k == 2 ? B : -1;
        check(k == 0 || (is_stop_token(&c, end) && !is_stop_token(&c, A)),
              "%s: generation stops at the end of a turn, and not at its other special tokens", cases[k].name);
    }
    free_tokenizer(&tok);
}

/* -m perplexity's scoring (perplexity_windows, kl_stats) against plain references: the full cache's
 * perplexity against the double-precision forward pass; each policy's per-token KL and perplexity
 * against a plain loop (the window's first half prefilled and compressed, the rest one token at a
 * time) with its own softmax in long double; the statistics against a count of the sorted values;
 * full vs the float32 reference: 0. */
static void test_perplexity(void) {
    Config c = small_config(48, 80, 2, 4, 2, 97, 64);
    TestModel tm = make_model(c, 31);
    write_model(&tm, tmp_path("ppl.bin"), FORMAT_RAZOR);
    Model m;
    load_model(&m, tmp_path("ppl.bin"));
    enum { WINDOW = 40, HALF = 20, WINDOWS = 3, SCORED = WINDOWS * (WINDOW - HALF - 1) };
    int *ids = random_ids(WINDOWS * WINDOW, 97);
    for (int w = 0; w < WINDOWS; w++) ids[w * WINDOW] = 1; /* BOS first in each window */
    unsigned char retrieval[4] = {0, 0, 1, 0};
    HeadProfile profile = {.retrieval = retrieval};
    for (int kv = 0; kv < 2; kv++) { /* KV_F32, KV_BF16 */
        CacheConfig cache = {.kv_type = (KVType)kv, .n_sink = 2, .window_min = 6, .compression = 5.0f,
                             .profile = &profile};
        PolicyScore score[N_POLICIES];
        for (int k = 0; k < N_POLICIES; k++) score[k] = (PolicyScore){.kl = calloc(SCORED, sizeof(double))};
        double ref_nll;
        long n = perplexity_windows(&m, ids, WINDOWS, WINDOW, 7, &cache, score, &ref_nll);
        check(n == SCORED, "perplexity: %d windows of %d score %d tokens (got %ld)", WINDOWS, WINDOW, SCORED, n);
        if (n != SCORED) continue;
        double want_nll = 0; /* the double-precision forward pass: full attention within each window */
        for (int w = 0; w < WINDOWS && kv == 0; w++) {
            float *logits = ref_forward(&tm, ids + w * WINDOW, WINDOW);
            for (int t = HALF; t + 1 < WINDOW; t++) {
                long double sum = 0;
                float *l = logits + t * 97, max = l[argmax(l, 97)];
                for (int i = 0; i < 97; i++) sum += expl((long double)l[i] - max);
                want_nll -= (double)((long double)l[ids[w * WINDOW + t + 1]] - max - logl(sum));
            }
            free(logits);
        }
        if (kv == 0)
            check(fabs(exp(ref_nll / n) - exp(want_nll / n)) < 1e-4 * exp(want_nll / n),
                  "the reference's perplexity %.6f is the double-precision forward pass's %.6f", exp(ref_nll / n),
                  exp(want_nll / n));
        long double worst_kl = 0, nll[N_POLICIES] = {0};
        long same[N_POLICIES] = {0}, at = 0;
        for (int w = 0; w < WINDOWS; w++) {
            const int *x = ids + w * WINDOW;
            RunState st[1 + N_POLICIES];
            for (int k = 0; k <= N_POLICIES; k++) {
                CacheConfig cc = cache;
                cc.policy = k ? (Policy)(k - 1) : POLICY_FULL;
                if (!k) cc.kv_type = KV_F32;
                build_runstate(&st[k], &m, WINDOW, 7, &cc);
                forward(&m, &st[k], x, HALF, NULL, NULL);
                compress_cache(&st[k], &m.config);
            }
            for (int t = HALF; t + 1 < WINDOW; t++, at++) {
                long double p[97], q[97], zp = 0, zq;
                float *ref = forward(&m, &st[0], x + t, 1, NULL, NULL);
                for (int i = 0; i < 97; i++) zp += p[i] = expl((long double)ref[i]);
                for (int k = 0; k < N_POLICIES; k++) {
                    float *l = forward(&m, &st[1 + k], x + t, 1, NULL, NULL);
                    long double kl = 0;
                    zq = 0;
                    for (int i = 0; i < 97; i++) zq += q[i] = expl((long double)l[i]);
                    for (int i = 0; i < 97; i++) kl += p[i] / zp * (logl(p[i] / zp) - logl(q[i] / zq));
                    nll[k] -= logl(q[x[t + 1]] / zq);
                    same[k] += argmax(l, 97) == argmax(ref, 97);
                    long double d = fabsl(kl - score[k].kl[at]);
                    if (d > worst_kl) worst_kl = d;
                }
            }
            for (int k = 0; k <= N_POLICIES; k++) free_runstate(&st[k]);
        }
        int nll_ok = 1, same_ok = 1;
        for (int k = 0; k < N_POLICIES; k++) {
            nll_ok &= fabsl(nll[k] - score[k].nll) < 1e-9L * fabsl(nll[k]);
            same_ok &= same[k] == score[k].same_top;
        }
        check(worst_kl < 1e-12L && nll_ok && same_ok, "-K %s: every policy's per-token KL (off by %Lg), perplexity and "
              "top-1 agreement are the plain loop's", kv ? "bf16" : "f32", worst_kl);
        double zero = 0, stats[4];
        for (int i = 0; i < SCORED; i++) zero = fmax(zero, fabs(score[POLICY_FULL].kl[i]));
        if (kv == 0)
            check(zero == 0 && score[POLICY_FULL].nll == ref_nll && score[POLICY_FULL].same_top == SCORED,
                  "full vs full (f32 keys and values): KL exactly 0, the same perplexity, every top-1 the same");
        else check(zero > 0 && zero < 1e-2, "full with bf16 keys and values: KL small but not 0 (max %g)", zero);
        double kl[SCORED], mean = 0;
        memcpy(kl, score[POLICY_RAZOR].kl, sizeof kl);
        for (int i = 0; i < SCORED; i++) mean += kl[i] / SCORED;
        kl_stats(score[POLICY_RAZOR].kl, SCORED, stats);
        /* 57 values: the median is the 29th smallest; the 99th percentile (nearest rank: ceil(0.99 x 57) = 57)
         * and the max, the largest */
        int below_median = 0, upto_median = 0, upto_max = 0;
        for (int i = 0; i < SCORED; i++) {
            below_median += kl[i] < stats[1];
            upto_median += kl[i] <= stats[1];
            upto_max += kl[i] <= stats[3];
        }
        check(fabs(stats[0] - mean) < 1e-12 && below_median <= 28 && upto_median >= 29 && stats[2] == stats[3] &&
                  upto_max == SCORED && stats[0] > 0,
              "KL statistics: mean %g, median %g (%d below, %d at most), p99 %g = max %g", stats[0], stats[1],
              below_median, upto_median, stats[2], stats[3]);
        for (int k = 0; k < N_POLICIES; k++) free(score[k].kl);
    }
    free(ids);
    free_model(&m);
    free_test_model(&tm);
}

/* The baselines that drop tokens by attention (razor.c, appendix G), each against a plain reference in
 * double precision that keeps its own list of kept positions, keys and scores: SnapKV's selection
 * (the window's softmax, summed over the group's query heads, max-pooled, top B - w, and the window),
 * H2O's running scores and evictions over a prompt, a generation and a second turn, and the budget B
 * (razor's kept tokens per KV head, counted on a razor run). GQA (4 query heads on 2 KV heads), every
 * -K type, and ALiBi. */
enum { DROP_POSITIONS = 512, DROP_HEADS = 4, DROP_HD = 12 };
typedef struct {
    const Model *m;
    int n[DROP_HEADS], pos[DROP_HEADS][DROP_POSITIONS];  /* the positions each head keeps, in order */
    double score[DROP_HEADS][DROP_POSITIONS];           /* H2O: by position */
    float key[DROP_HEADS][DROP_POSITIONS][DROP_HD];     /* by position, as the cache stores them */
    float value[DROP_HEADS][DROP_POSITIONS][DROP_HD];
    int window;                                         /* H2O: razor's window after the prompt, for B */
    float *queries;                                     /* (layer, position, q_dim), every query seen */
    int mismatches, compared;
    double worst_score;
} DropRef;

static double ref_score(const DropRef *r, int i, const float *q, int qh, int q_pos, int key_pos) {
    int hd = r->m->config.head_dim;
    double dot = 0;
    for (int d = 0; d < hd; d++) dot += (double)q[d] * r->key[i][key_pos][d];
    double slope = r->m->alibi_slope ? r->m->alibi_slope[qh] : 0;
    return dot / sqrt((double)hd) - slope * (q_pos - key_pos);
}

/* Adds to weight[position] the attention query q (query head qh, at q_pos) pays each kept position <= q_pos. */
static void ref_attention_weights(const DropRef *r, int i, const float *q, int qh, int q_pos, double *weight) {
    double sc[DROP_POSITIONS], max = -INFINITY, sum = 0;
    for (int k = 0; k < r->n[i]; k++) {
        sc[k] = r->pos[i][k] <= q_pos ? ref_score(r, i, q, qh, q_pos, r->pos[i][k]) : -INFINITY;
        if (sc[k] > max) max = sc[k];
    }
    for (int k = 0; k < r->n[i]; k++) sum += sc[k] = exp(sc[k] - max);
    for (int k = 0; k < r->n[i]; k++) weight[r->pos[i][k]] += sc[k] / sum;
}

/* Keeps, of head i's list, the `top` positions with the largest value (ties: the earlier) among all but
 * the last `tail`, and the last `tail`. */
static void ref_keep_top(DropRef *r, int i, const double *value, int top, int tail) {
    int n = r->n[i], cand = n - tail, chosen[DROP_POSITIONS] = {0};
    for (int t = 0; t < top && t < cand; t++) {
        int best = -1;
        for (int k = 0; k < cand; k++)
            if (!chosen[k] && (best < 0 || value[k] > value[best])) best = k; /* strict: the earlier wins ties */
        chosen[best] = 1;
    }
    int kept = 0;
    for (int k = 0; k < n; k++)
        if (k >= cand || chosen[k]) r->pos[i][kept++] = r->pos[i][k];
    r->n[i] = kept;
}

static void ref_compare(DropRef *r, const RunState *s, int layer) {
    const Config *c = &r->m->config;
    for (int kv = 0; kv < c->n_kv_heads; kv++) {
        int i = layer * c->n_kv_heads + kv, same = s->heads[i].n == r->n[i];
        for (int k = 0; same && k < r->n[i]; k++) {
            float key[DROP_HD], value[DROP_HD];
            get_slot(&s->heads[i], k, key, value, c->head_dim); /* the slot holds its token's key and value */
            same &= (int)s->heads[i].position[k] == r->pos[i][k] &&
                    !memcmp(key, r->key[i][r->pos[i][k]], c->head_dim * sizeof(float)) &&
                    !memcmp(value, r->value[i][r->pos[i][k]], c->head_dim * sizeof(float));
            if (s->heads[i].score) {
                double want = r->score[i][r->pos[i][k]], got = s->heads[i].score[k];
                double d = fabs(got - want) / (fabs(want) > 1e-3 ? fabs(want) : 1e-3);
                if (d > r->worst_score) r->worst_score = d;
            }
        }
        r->mismatches += !same;
        r->compared++;
    }
}

/* The probe hook, after each layer: the block's queries are kept; under H2O, the reference adds the new
 * positions (their keys read from the cache), their attention, and evicts as H2O does while generating. */
static void drop_probe(void *arg, const RunState *s, int layer, int pos, int T) {
    DropRef *r = arg;
    const Config *c = &r->m->config;
    int hd = c->head_dim, group = c->n_heads / c->n_kv_heads, q_dim = c->n_heads * hd;
    memcpy(r->queries + ((size_t)layer * DROP_POSITIONS + pos) * q_dim, s->q, (size_t)T * q_dim * sizeof(float));
    if (s->cache.policy != POLICY_H2O) return;
    for (int kv = 0; kv < c->n_kv_heads; kv++) {
        int i = layer * c->n_kv_heads + kv;
        const HeadCache *h = &s->heads[i];
        for (int t = 0; t < T; t++) {
            for (int j = 0; j < h->n; j++) /* a new token's key and value, as they first arrive */
                if ((int)h->position[j] == pos + t) get_slot(h, j, r->key[i][pos + t], r->value[i][pos + t], hd);
            r->pos[i][r->n[i]++] = pos + t;
        }
        for (int t = 0; t < T; t++)
            for (int g = 0; g < group; g++) {
                int qh = kv * group + g;
                ref_attention_weights(r, i, s->q + (size_t)t * q_dim + qh * hd, qh, pos + t, r->score[i]);
            }
        /* while generating, B is what razor holds for pos + 1 tokens (its window set after the prompt) */
        int budget = (int)(razor_tokens(&s->cache, 4, pos + 1, r->window) / 4);
        if (T == 1 && s->budget && r->n[i] > budget) {
            double by_slot[DROP_POSITIONS];
            for (int k = 0; k < r->n[i]; k++) by_slot[k] = r->score[i][r->pos[i][k]];
            ref_keep_top(r, i, by_slot, budget / 2, budget - budget / 2);
        }
    }
    if (T == 1) ref_compare(r, s, layer);
}

/* razor's kept tokens after a prompt of n under `cache` and then `generated` tokens one at a time, counted on
 * a razor run as head_bytes counts them */
static long razor_kept_tokens(const Model *m, const int *ids, int n, int generated, CacheConfig cache) {
    cache.policy = POLICY_RAZOR;
    RunState s;
    build_runstate(&s, m, n + generated, 64, &cache);
    forward(m, &s, ids, n, NULL, NULL);
    compress_cache(&s, &m->config);
    for (int t = n; t < n + generated; t++) forward(m, &s, ids + t, 1, NULL, NULL);
    size_t kept, full;
    cache_bytes(&s, &m->config, &kept, &full);
    free_runstate(&s);
    return (long)(kept / ((size_t)m->config.head_dim * 2 * kv_size(cache.kv_type)));
}

static void test_token_dropping(void) {
    const char *kv_names[] = {"f32", "bf16", "f16"};
    for (int variant = 0; variant < 4; variant++) { /* -K f32, bf16, f16 with RoPE; f32 with ALiBi */
        Config c = small_config(48, 80, 2, 4, 2, 97, 400);
        KVType kv_type = variant < 3 ? (KVType)variant : KV_F32;
        if (variant == 3) c.pos_encoding = POS_ALIBI;
        TestModel tm = make_model(c, 41);
        write_model(&tm, tmp_path("drop.bin"), FORMAT_RAZOR);
        Model m;
        load_model(&m, tmp_path("drop.bin"));
        const char *what = variant < 3 ? kv_names[variant] : "f32, ALiBi";
        int n = 150, steps = 30, turn = 40, hd = c.head_dim, group = 2, q_dim = c.n_heads * hd;
        int *ids = random_ids(n + steps + turn, 97);
        unsigned char retrieval[4] = {0, 1, 0, 0};
        HeadProfile profile = {.retrieval = retrieval};
        CacheConfig cache = {.kv_type = kv_type, .n_sink = 4, .window_min = 16, .compression = 5.0f,
                             .profile = &profile};
        /* the budget: razor keeps 150 + 3 x (4 + 30 + 1) = 255 tokens, B = floor(255 / 4) = 63 */
        int budget_ok = 1, spans[4] = {0, 0, 12, 100};
        HeadProfile with_spans = {.retrieval = retrieval, .span = spans};
        for (int k = 0; k < 8; k++) { /* and with ALiBi-style spans: heads 2 and 3 cut to 12 and 100 tokens */
            int lengths[4] = {10, 20, 21, n};
            CacheConfig cc = cache;
            if (k >= 4) cc.profile = &with_spans;
            long want = razor_kept_tokens(&m, ids, lengths[k % 4], 0, cc);
            budget_ok &= razor_tokens(&cc, 4, lengths[k % 4], razor_window(&cc, lengths[k % 4])) == want;
        }
        /* and while generating: 150 prompt tokens, then 30 one at a time */
        budget_ok &= razor_tokens(&cache, 4, n + steps, razor_window(&cache, n)) ==
                     razor_kept_tokens(&m, ids, n, steps, cache);
        long t_razor = razor_kept_tokens(&m, ids, n, 0, cache);
        int B = (int)(t_razor / 4);
        check(budget_ok && t_razor == 255 && B == 63, "-K %s: razor_tokens is what razor keeps (prompts of 10, 20, 21 "
              "and 150 tokens, with and without spans, and 30 tokens after; 150: %ld tokens, B = %d)", what,
              t_razor, B);

        /* SnapKV: the selection after the prompt, against the reference's */
        DropRef *r = calloc(1, sizeof(DropRef));
        r->m = &m;
        r->queries = calloc((size_t)c.n_layers * DROP_POSITIONS * q_dim, sizeof(float));
        CacheConfig snap = cache;
        snap.policy = POLICY_SNAPKV;
        RunState s;
        build_runstate(&s, &m, n + steps + turn, 50, &snap);
        s.probe = drop_probe;
        s.probe_arg = r;
        forward(&m, &s, ids, n, NULL, NULL); /* blocks of 50: the window (118 .. 149) spans two, unaligned */
        RunState full;
        CacheConfig full_cache = {.policy = POLICY_FULL, .kv_type = kv_type};
        build_runstate(&full, &m, n, 50, &full_cache);
        forward(&m, &full, ids, n, NULL, NULL);
        for (int i = 0; i < 4; i++) {
            for (int j = 0; j < n; j++) get_slot(&full.heads[i], j, r->key[i][j], r->value[i][j], hd);
            r->n[i] = n;
            for (int j = 0; j < n; j++) r->pos[i][j] = j;
        }
        compress_cache(&s, &m.config);
        int w = 32, prefix = n - w;
        for (int i = 0; i < 4; i++) {
            double votes[DROP_POSITIONS] = {0}, pooled[DROP_POSITIONS];
            int layer = i / 2, kv = i % 2;
            for (int g = 0; g < group; g++)
                for (int p = prefix; p < n; p++)
                    ref_attention_weights(r, i, r->queries + ((size_t)layer * DROP_POSITIONS + p) * q_dim +
                                          (kv * group + g) * hd, kv * group + g, p, votes);
            for (int j = 0; j < prefix; j++) {
                pooled[j] = -INFINITY;
                for (int k = j - 3; k <= j + 3; k++) if (k >= 0 && k < prefix) pooled[j] = fmax(pooled[j], votes[k]);
            }
            ref_keep_top(r, i, pooled, B - w, w);
        }
        for (int layer = 0; layer < 2; layer++) ref_compare(r, &s, layer);
        check(r->mismatches == 0 && r->compared == 4 && s.heads[1].state == SELECTED_HEAD && s.heads[1].n == B,
              "-K %s: SnapKV keeps the reference's %d tokens, keys and values in every KV head (%d of %d differ)", what,
              B,
              r->mismatches, r->compared);
        /* generation and a second turn append; nothing is chosen again */
        for (int t = n; t < n + steps; t++) forward(&m, &s, ids + t, 1, NULL, NULL);
        forward(&m, &s, ids + n + steps, turn, NULL, NULL);
        compress_cache(&s, &m.config);
        int appended = 1;
        for (int i = 0; i < 4; i++) {
            appended &= s.heads[i].n == B + steps + turn;
            for (int k = 0; k < steps + turn && appended; k++)
                appended &= (int)s.heads[i].position[B + k] == n + k;
        }
        check(appended, "-K %s: SnapKV keeps its selection, generated tokens and a second turn append", what);
        free_runstate(&s);

        /* H2O: running scores and evictions, step by step */
        memset(r->n, 0, sizeof r->n);
        memset(r->score, 0, sizeof r->score);
        r->mismatches = r->compared = 0;
        r->worst_score = 0;
        r->window = razor_window(&cache, n);
        CacheConfig h2o = cache;
        h2o.policy = POLICY_H2O;
        build_runstate(&s, &m, n + steps + turn, 64, &h2o);
        s.probe = drop_probe;
        s.probe_arg = r;
        forward(&m, &s, ids, n, NULL, NULL);
        compress_cache(&s, &m.config);
        for (int i = 0; i < 4; i++) {
            double by_slot[DROP_POSITIONS];
            for (int k = 0; k < r->n[i]; k++) by_slot[k] = r->score[i][r->pos[i][k]];
            ref_keep_top(r, i, by_slot, B / 2, B - B / 2);
        }
        for (int layer = 0; layer < 2; layer++) ref_compare(r, &s, layer);
        int after_prompt = r->mismatches;
        for (int t = n; t < n + steps; t++) forward(&m, &s, ids + t, 1, NULL, NULL); /* compared at every layer */
        int at_b = 1, B_end = (int)(razor_tokens(&cache, 4, n + steps, r->window) / 4); /* 285 / 4 = 71 */
        for (int i = 0; i < 4; i++) at_b &= s.heads[i].n == B_end && B_end == 71;
        forward(&m, &s, ids + n + steps, turn, NULL, NULL);
        compress_cache(&s, &m.config);
        int B2 = (int)(razor_kept_tokens(&m, ids, n + steps + turn, 0, cache) / 4); /* 220 tokens: 91 (of 111 held) */
        for (int i = 0; i < 4; i++) {
            double by_slot[DROP_POSITIONS];
            for (int k = 0; k < r->n[i]; k++) by_slot[k] = r->score[i][r->pos[i][k]];
            ref_keep_top(r, i, by_slot, B2 / 2, B2 - B2 / 2);
        }
        for (int layer = 0; layer < 2; layer++) ref_compare(r, &s, layer);
        check(after_prompt == 0 && r->mismatches == 0 && r->compared == 4 * (steps + 2) && at_b && B2 == 91 &&
                  s.heads[0].n == B2 && r->worst_score < 1e-4,
              "-K %s: H2O keeps the reference's tokens, keys and values after the prompt, at each of %d steps (B "
              "= %d, growing with razor's bytes to %d) and after a second turn (B = %d; %d of %d head checks "
              "differ; scores within %.1e)", what, steps, B, B_end, B2, r->mismatches, r->compared, r->worst_score);
        size_t kept[3], full_bytes;
        cache_bytes(&s, &m.config, &kept[0], &full_bytes);
        free_runstate(&s);
        free_runstate(&full);
        free(r->queries);
        free(r);

        /* bytes after the prompt: within one token per KV head of razor's */
        Policy policies[3] = {POLICY_RAZOR, POLICY_SNAPKV, POLICY_H2O};
        for (int k = 0; k < 3; k++) {
            CacheConfig cc = cache;
            cc.policy = policies[k];
            build_runstate(&s, &m, n, 64, &cc);
            forward(&m, &s, ids, n, NULL, NULL);
            compress_cache(&s, &m.config);
            cache_bytes(&s, &m.config, &kept[k], &full_bytes);
            free_runstate(&s);
        }
        size_t per_token = (size_t)hd * 2 * kv_size(kv_type);
        check(kept[1] == kept[2] && kept[1] <= kept[0] && kept[0] - kept[1] < 4 * per_token,
              "-K %s: the kv line after the prompt: razor %zu, snapkv %zu, h2o %zu bytes (within 4 tokens)", what,
              kept[0], kept[1], kept[2]);

        /* a budget under SnapKV's window: 40 tokens, razor keeps 40 + 3 x (4 + 16 + 1) = 103, B = 25 < 32:
         * the window is the last 25 tokens, and nothing else is kept */
        build_runstate(&s, &m, 40, 64, &snap);
        forward(&m, &s, ids, 40, NULL, NULL);
        compress_cache(&s, &m.config);
        int last = s.budget == 25;
        for (int i = 0; i < 4; i++)
            for (int k = 0; k < 25 && last; k++) last &= s.heads[i].n == 25 && (int)s.heads[i].position[k] == 15 + k;
        check(last, "-K %s: SnapKV with a budget (%d) under its window of 32 keeps the last B tokens", what,
              s.budget);
        free_runstate(&s);

        /* a prompt razor keeps whole (its window longer than the prompt and the generation) is not
         * compressed, and H2O's budget grows with it: both are the full cache, bit for bit */
        CacheConfig wide[2] = {snap, h2o};
        wide[0].window_min = wide[1].window_min = n + steps;
        float *logits[3];
        for (int k = 0; k < 3; k++) {
            CacheConfig cc = k ? wide[k - 1] : full_cache;
            build_runstate(&s, &m, n + steps, 64, &cc);
            forward(&m, &s, ids, n, NULL, NULL);
            compress_cache(&s, &m.config);
            float *l = NULL;
            for (int t = n; t < n + steps; t++) l = forward(&m, &s, ids + t, 1, NULL, NULL);
            logits[k] = memcpy(malloc(97 * sizeof(float)), l, 97 * sizeof(float));
            free_runstate(&s);
        }
        check(!memcmp(logits[0], logits[1], 97 * sizeof(float)) && !memcmp(logits[0], logits[2], 97 * sizeof(float)),
              "-K %s: SnapKV and H2O on a prompt no longer than their budget are the full cache, bit for bit", what);
        free(logits[0]); free(logits[1]); free(logits[2]);
        free(ids);
        free_model(&m);
        free_test_model(&tm);
    }
}

/* The JSON profiles of other tools, written by hand from their formats (razor.c, appendix C):
 * golden-stick's {"layer": [kv_head, ...]} (json.dump(indent=3) of int keys), Retrieval_Head's
 * {"layer-head": [score per needle test, ...]} (json.dump on one line, ints and floats); bad files. */
static void test_json_profiles(void) {
    Config c = small_config(32, 32, 3, 4, 2, 512, 64); /* 3 layers x 2 KV heads, 2 query heads each */
    HeadProfile p;
    const char *golden = "{\n   \"0\": [\n      1\n   ],\n   \"2\": [\n      1,\n      0\n   ]\n}";
    write_text(tmp_path("golden.json"), golden);
    int ok = load_profile(&p, tmp_path("golden.json"), &c, 0.15f) == 0;
    const unsigned char want_golden[6] = {0, 1, 0, 0, 1, 1};
    check(ok && !memcmp(p.retrieval, want_golden, 6), "golden-stick JSON: layer 0 head 1, layer 2 heads 0 and 1, "
          "layer 1 (left out) none: %s", ok ? "" : razor_error());
    if (ok) {
        ok = save_profile(&p, tmp_path("again.json")) == 0;
        size_t n;
        char *text = ok ? slurp(tmp_path("again.json"), &n) : NULL;
        if (text) text[n] = 0;
        const char *want = "{\n   \"0\": [1],\n   \"2\": [0, 1]\n}\n";
        check(text && !strcmp(text, want), "-o x.json writes golden-stick's form: %s", text ? text : razor_error());
        free(text);
        HeadProfile back;
        ok = load_profile(&back, tmp_path("again.json"), &c, 0.15f) == 0;
        check(ok && !memcmp(back.retrieval, want_golden, 6), "and reads it back the same");
        if (ok) free_profile(&back);
        memset(p.retrieval, 0, 6);
        save_profile(&p, tmp_path("none.json"));
        text = slurp_text(tmp_path("none.json"));
        check(!strcmp(text, "{}\n"), "no retrieval heads: {} (%s)", text);
        free(text);
        free_profile(&p);
    }
    /* scores: KV head (l, g) takes the max of its query heads' means. Means: (0,0) 0.25, 0.2; (0,1) 0.45,
     * 0.45 (the largest sum, not the largest max); (1,0) 0.9, 0; (1,1) 0.1, 0.3; (2,0) 0, 0.05; (2,1) 0.5, 0.6 */
    const char *scores = "{\"0-0\": [1, 0, 0, 0], \"0-1\": [0.2, 0.2, 0.2, 0.2], \"0-2\": [0.45, 0.45, 0.45, 0.45], "
                         "\"0-3\": [0.9, 0, 0.9, 0], \"1-0\": [0.9, 0.9, 0.9, 0.9], \"1-1\": [0, 0, 0, 0], \"1-2\": "
                         "[0.1, 0.1, 0.1, 0.1], \"1-3\": [0.3, 0.3, 0.3, 0.3], \"2-0\": [0, 0, 0, 0], \"2-1\": [0.2, "
                         "0, 0, 0], \"2-2\": [0.5, 0.5, 0.5, 0.5], \"2-3\": [0.6, 0.6, 0.6, 0.6]}";
    write_text(tmp_path("scores.json"), scores);
    ok = load_profile(&p, tmp_path("scores.json"), &c, 0.34f) == 0; /* lround(0.34 x 6) = 2 retrieval heads */
    const unsigned char want_scores[6] = {0, 0, 1, 0, 0, 1};
    const float kv_scores[6] = {0.25f, 0.45f, 0.9f, 0.3f, 0.05f, 0.6f};
    float worst = 0;
    for (int i = 0; ok && i < 6; i++) worst = fmaxf(worst, fabsf(p.induction[i] - kv_scores[i]));
    check(ok && !memcmp(p.retrieval, want_scores, 6) && worst < 1e-6f,
          "Retrieval_Head scores: KV scores are the max of the query heads' means (off by %g); the top 2 of 6 "
          "are retrieval heads: %s", worst, ok ? "" : razor_error());
    if (ok) free_profile(&p);
    ok = load_profile(&p, tmp_path("scores.json"), &c, 0.15f) == 0; /* razor's 14% + 1%: lround(0.9) = 1 */
    int others = ok ? p.retrieval[0] + p.retrieval[1] + p.retrieval[3] + p.retrieval[4] + p.retrieval[5] : -1;
    check(ok && p.retrieval[2] && others == 0,
          "with razor's 15%%, the one best KV head");
    if (ok) free_profile(&p);
    struct { const char *text, *says; } bad[] = {
        {"[1, 2]", "expected a JSON object"}, {"{\"0\": [2]}", "2 is not a KV head"},
        {"{\"0\": [0.5]}", "0.5 is not a KV head"}, {"{\"3\": [0]}", "key \"3\" is not a layer number"},
        {"{\"0\": [0], \"0\": [1]}", "appears twice"}, {"{\"0\": [1,]}", "expected a number after ,"},
        {"{\"0\": [0x1]}", "expected a number"}, {"{\"0\": [1]} x", "more after the closing }"},
        {"{\"0\": [0], \"0-1\": [1]}", "key \"0-1\" is not a layer number"}, {"{\"0\": [1", "expected , or ]"},
        {"{\"0-0\": [1]}", "no scores for head \"0-1\""}, {"{\"0-4\": [1]}", "\"layer-query_head\" pair"},
        {"{\"0-0\": []}", "an empty list of scores"}, {"{\n\n\"0\": [nan]}", "line 3: expected a number"},
        {"{0: [1]}", "expected a key in double quotes"}, {"{\"0\" [1]}", "expected : and a list"}, {"", "JSON object"},
        {"{\"0\": [1, ]}", "expected a number after ,"}, {"{\"0\x1b[2J\": [1]}", "a control byte in a key"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        write_text(tmp_path("bad.json"), bad[i].text);
        int refused = load_profile(&p, tmp_path("bad.json"), &c, 0.15f) != 0;
        check(refused && strstr(razor_error(), bad[i].says) && !strchr(razor_error(), '\n'),
              "a bad JSON profile '%s' is refused in one line saying '%s': %s", bad[i].text, bad[i].says,
              refused ? razor_error() : "accepted");
        if (!refused) free_profile(&p);
    }
}

/* A model whose tokenizer adds no BOS (Qwen: add_bos 0, bos_id -1): no mode puts one anywhere; version 2
 * files, which cannot say so, keep putting BOS first; the probe starts with eos_id instead. */
static void test_no_bos(void) {
    Config c = small_config(32, 32, 1, 2, 2, 1998, 160); /* tests/bbpe_tokenizer_qwen2.bin's vocabulary */
    c.add_bos = 0, c.bos_id = -1, c.eos_id = 1972;
    TestModel tm = make_model(c, 11);
    write_model(&tm, tmp_path("nobos.bin"), FORMAT_RAZOR);
    size_t n;
    unsigned char *d = slurp(tmp_path("nobos.bin"), &n);
    Model m;
    Tokenizer tok;
    int ok = load_model(&m, tmp_path("nobos.bin")) == 0;
    check(ok && m.config.add_bos == 0 && m.config.bos_id == -1, "a version 3 file with add_bos 0, bos_id -1 loads: %s",
          ok ? "" : razor_error());
    m.config.bos_id = 1971; /* as a Qwen config.json's bos_token_id: an id the tokenizer never adds */
    if (!ok || load_tokenizer(&tok, "tests/bbpe_tokenizer_qwen2.bin", 1998, 1971, 1972) != 0) {
        check(0, "load the no-BOS model and tests/bbpe_tokenizer_qwen2.bin: %s", razor_error());
        free(d);
        free_test_model(&tm);
        return;
    }
    int plain[64], n_plain = encode(&tok, "It is a truth", 0, plain), count = 0;
    int *prompt = encode_prompt(&m, &tok, "It is a truth", &count);
    check(prompt && count == n_plain && !memcmp(prompt, plain, (size_t)count * sizeof(int)),
          "generate, compare and logits: the prompt is the text's %d tokens alone (got %d)", n_plain, count);
    free(prompt);
    prompt = encode_prompt(&m, &tok, "", &count);
    check(!prompt && count == 0, "an empty prompt without a BOS is refused, not run on no tokens");
    free(prompt);
    Options o = {.needle = "The key is {key}.", .question = "The key is"};
    int filler[40], ids[160];
    for (int i = 0; i < 40; i++) filler[i] = plain[i % n_plain];
    int asked = 0, k = needle_prompt(&tok, &o, m.config.add_bos, filler, 40, 100, 0.5f, 12345, ids, &asked);
    int question[16], n_question = encode(&tok, "The key is", 0, question);
    check(k == 100 && ids[0] == filler[0] && asked == n_question && !memcmp(ids + k - asked, question, sizeof(int) *
          (size_t)asked), "needle: a 100-token case starts with the filler and ends with the %d-token question (%d "
          "tokens, first %d)", asked, k, k > 0 ? ids[0] : -1);
    m.config.bos_id = tok.bos_id = -1;
    m.config.chat_template = CHAT_LLAMA3, m.config.chat_tokens[0] = 1973, m.config.chat_tokens[1] = 1974;
    m.config.chat_tokens[2] = 1975;
    k = chat_turn_tokens(&m.config, &tok, NULL, "Hi", 0, ids);
    check(k > 0 && ids[0] == 1973, "chat, Llama 3 template without a BOS id: the turn starts at <|start_header_id|>");
    m.config.chat_template = CHAT_LLAMA2;
    k = chat_turn_tokens(&m.config, &tok, NULL, "Hi", 0, ids);
    int inst[64], n_inst = encode(&tok, "[INST] Hi [/INST]", 0, inst);
    check(k == n_inst && !memcmp(ids, inst, (size_t)k * sizeof(int)), "chat, [INST] template: no BOS before it");
    HeadProfile p;
    check(profile_heads(&m, &tok, &p, 3, 0.14f, 0.01f) == 0, "the probe runs, its sink eos_id: %s", razor_error());
    free_profile(&p);
    free_tokenizer(&tok);
    free_model(&m);
    memcpy(d + 4, &(int32_t){2}, 4); /* the same file as version 2: the add_bos field is not read */
    memcpy(d + offsetof(RazorHeader, bos_id), &(int32_t){5}, 4);
    FILE *f = fopen(tmp_path("nobos_v2.bin"), "wb");
    fwrite(d, 1, n, f);
    fclose(f);
    ok = load_model(&m, tmp_path("nobos_v2.bin")) == 0;
    check(ok && m.config.add_bos == 1 && m.config.bos_id == 5, "a version 2 file puts BOS first, as it always did");
    if (ok) free_model(&m);
    free(d);
    free_test_model(&tm);
}

int main(int argc, char **argv) {
    if (argc == 10 && !strcmp(argv[1], "--random-model")) { /* for make bench: a random razor-format model */
        int v[7];
        for (int i = 0; i < 7; i++) v[i] = atoi(argv[3 + i]);
        TestModel tm = make_model(small_config(v[0], v[1], v[2], v[3], v[4], v[5], v[6]), 1);
        memset(tm.emb + v[0], 0, 2 * v[0] * sizeof(float)); /* BOS and EOS (tied): logit 0, never the argmax */
        write_model(&tm, argv[2], FORMAT_RAZOR);
        free_test_model(&tm);
        return 0;
    }
    if (argc != 3) {
        fprintf(stderr, "usage: test_razor RAZOR RAZOR_NOTHREADS (run from the repository root)\n"
                        "       test_razor --random-model OUT dim hidden_dim layers heads kv_heads vocab seq_len\n");
        return 2;
    }
    razor_bin = argv[1];
    razor_nothreads_bin = argv[2];
    snprintf(tmpdir, sizeof tmpdir, "/tmp/razor_test_XXXXXX");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
    test_loaders_agree();
    test_forward_matches_reference();
    test_threads_same_numbers();
    test_attention_plan();
    test_bf16_weights();
    test_tiled_attention();
    test_online_attention();
    test_matmul_reference();
    test_q8_kernels();
    test_move_slots();
    test_compensation();
    test_cache_policies();
    test_kv_types();
    test_alibi();
    test_chat_templates();
    test_no_bos();
    test_json_profiles();
    test_perplexity();
    test_token_dropping();
    test_profiler();
    test_tokenizer();
    test_byte_level_tokenizer();
    test_bad_model_files();
    test_cli();
    test_cli_q8_inputs();
    test_outputs_and_stops();
    test_careful_user();
    test_fuzz_regressions();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
