/* model.h: razor's on-disk formats (model files, and the structs they load into), the vector width
 * and tile sizes for the compile target, and the tokenizer and head-profile structs. The KV cache and
 * the method (HeadCache, the policies) live in razor.c itself, section 4; test_razor.c and the fuzz
 * harnesses #include razor.c.
 *
 * razor reads three kinds of model file. All numbers are little-endian; tensors are stored row-major,
 * one after another, right after the header: float32 with no padding in llama2.c files and razor
 * version 1, the layout below in razor versions 2 and 3.
 *
 * 1. llama2.c legacy ("version 0"): a 28-byte header of 7 int32
 *        dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
 *    A negative vocab_size means the classifier is NOT tied to the embedding (wcls follows at the end).
 *    head_dim = dim / n_heads, rope theta 10000, norm eps 1e-5, bos 1, eos 2.
 *    Tensors: token_embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final,
 *             freq_cis_real (seq_len, head_dim/2), freq_cis_imag (seq_len, head_dim/2)  [skipped],
 *             wcls (only if untied).
 *
 * 2. llama2.c "version 1": a 256-byte header
 *        uint32 magic 0x616b3432 ("ak42"), int32 version = 1,
 *        7 int32 as above (vocab_size positive), uint8 shared_classifier, zeros up to byte 256.
 *    Tensors: rms_att, rms_ffn, rms_final, token_embedding, wq, wk, wv, wo, w1, w2, w3,
 *             wcls (only if !shared_classifier).
 *
 * 3. razor's own format: a 256-byte header (RazorHeader below, zeros after it), then the tensors.
 *    It carries what llama2.c's headers lack: head_dim (may differ from dim / n_heads), norm eps,
 *    rope theta, Llama 3 rope scaling, bos/eos ids, (version 2) the weight type, biases, q/k norms,
 *    ALiBi and the chat template, and (version 3) whether a prompt starts with BOS. Versions 3 and 2
 *    differ only in that field; version 2 and version 1 files (the first 80 bytes of the header,
 *    float32, no padding, no optional tensors) still load, and put BOS first, as they always did.
 *    Tensors, in this order:
 *        token_embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final,
 *        bq, bk, bv          (only if qkv_bias)
 *        q_norm, k_norm      (only if qk_norm)
 *        wcls                (only if !shared_classifier)
 *    Version 2: every tensor starts at a multiple of 64 bytes from the start of the file (zero
 *    padding before it). The matrices (token_embedding, wq, wk, wv, wo, w1, w2, w3, wcls) are stored
 *    in the header's weight_type; every other tensor (norm weights, biases) is float32:
 *        WEIGHT_F32   float32
 *        WEIGHT_BF16  bfloat16 (the top 16 bits of a float32, rounded to nearest even), as uint16
 *        WEIGHT_Q8    int8 groups: a (rows, cols) matrix, or a stack of them, is all its int8 values
 *                     q (row-major, like the float32 one), then, at the next multiple of 64 bytes,
 *                     one float32 scale per group of Q8_GROUP consecutive values of a row: weight
 *                     = q * scale (rows * cols / Q8_GROUP scales; cols is a multiple of Q8_GROUP).
 *    pos_encoding: POS_ROPE (below) or POS_ALIBI (no rotation; the score of query i for key j gets
 *    -slope_h * (i - j), slope_h the ALiBi paper's geometric sequence for n_heads, alibi_slopes() in razor.c).
 *    chat_template: CHAT_LLAMA2 ("[INST] ... [/INST]", text; the default, and what files without the
 *    field get), CHAT_LLAMA3 (chat_tokens = <|start_header_id|>, <|end_header_id|>, <|eot_id|>),
 *    CHAT_CHATML (chat_tokens = <|im_start|>, <|im_end|>); unused chat_tokens are -1.
 *    add_bos (version 3): 1 if the tokenizer puts bos_id before a text (sentencepiece Llama 2, Llama 3,
 *    Mistral), 0 if it adds nothing (Qwen2/2.5/3: their tokenizer.json adds no special token); with
 *    add_bos 0, bos_id may be -1 (none). Chat templates add their own BOS, where they have one.
 *
 * Tensor shapes ("layer": n_layers of them; q_dim = n_heads * head_dim, kv_dim = n_kv_heads * head_dim):
 *    token_embedding (vocab_size, dim)     rms_att, rms_ffn (layer, dim)     rms_final (dim)
 *    wq (layer, q_dim, dim)   wk, wv (layer, kv_dim, dim)   wo (layer, dim, q_dim)
 *    w1, w3 (layer, hidden_dim, dim)   w2 (layer, dim, hidden_dim)   wcls (vocab_size, dim)
 *    bq (layer, q_dim)   bk, bv (layer, kv_dim)   q_norm, k_norm (layer, head_dim)
 * A weight matrix W (rows, cols) maps x (cols) to W x (rows), as torch's nn.Linear stores it.
 *
 * RoPE: within each head, dimensions (2i, 2i+1) form a pair rotated by pos * freq_i with
 * freq_i = theta^(-2i / head_dim) (llama2.c's interleaved layout; Hugging Face checkpoints store q/k
 * rows in the "rotate-half" layout, and export.py permutes them into this one, and the q/k biases
 * and q_norm/k_norm weights with them). q_norm and k_norm (Qwen3): an RMSNorm over each head's
 * head_dim, applied to q and k (after the biases) before RoPE.
 * Llama 3 rope scaling (rope_scaling = 1) rescales freq_i before use, as transformers does.
 */
#ifndef RAZOR_MODEL_H
#define RAZOR_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define RAZOR_MAGIC   0x727a6172u   /* "razr" read as a little-endian uint32 */
#define RAZOR_VERSION 3             /* the version export.py writes; razor reads 1 to 3 */
#define LLAMA2C_MAGIC 0x616b3432u   /* "ak42" */
#define HEADER_BYTES  256

/* razor's header, as it lies in the first bytes of the file (124 bytes, zeros up to 256). */
typedef struct {
    uint32_t magic;            /* RAZOR_MAGIC */
    int32_t version;           /* RAZOR_VERSION */
    int32_t dim;               /* width of the residual stream */
    int32_t hidden_dim;        /* width of the SwiGLU MLP */
    int32_t n_layers;
    int32_t n_heads;           /* query heads */
    int32_t n_kv_heads;        /* key/value heads (divides n_heads; < n_heads for GQA/MQA) */
    int32_t head_dim;
    int32_t vocab_size;
    int32_t seq_len;           /* maximum context in tokens */
    int32_t bos_id, eos_id;
    int32_t shared_classifier; /* 1: the classifier is token_embedding; 0: wcls follows */
    float norm_eps;            /* RMSNorm epsilon */
    float rope_theta;
    int32_t rope_scaling;      /* 0: none; 1: Llama 3 (the four fields below) */
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int32_t rope_original_context;
    /* version 2 (zero in a version 1 header) */
    int32_t weight_type;       /* WEIGHT_*: how the matrices are stored */
    int32_t q8_group;          /* WEIGHT_Q8: values per scale (Q8_GROUP); else 0 */
    int32_t pos_encoding;      /* POS_ROPE or POS_ALIBI */
    int32_t qkv_bias;          /* 1: bq, bk, bv follow rms_final */
    int32_t qk_norm;           /* 1: q_norm, k_norm follow (Qwen3) */
    int32_t chat_template;     /* CHAT_* */
    int32_t chat_tokens[4];    /* the template's special token ids, -1 where unused */
    /* version 3 */
    int32_t add_bos;           /* 1: every prompt starts with bos_id; 0: none is added */
} RazorHeader;                 /* 124 bytes */

enum { WEIGHT_F32, WEIGHT_BF16, WEIGHT_Q8 };
enum { POS_ROPE, POS_ALIBI };
enum { CHAT_LLAMA2, CHAT_LLAMA3, CHAT_CHATML };
#define Q8_GROUP 32            /* int8 values per float32 scale, as llama.cpp's Q8_0 */
#define TENSOR_ALIGN 64        /* versions 2 and 3: each tensor starts at a multiple of this many bytes */

/* The model's shape and constants, whatever file it came from. */
typedef struct {
    int dim, hidden_dim, n_layers, n_heads, n_kv_heads, head_dim, vocab_size, seq_len;
    int bos_id, eos_id;
    int shared_classifier;
    float norm_eps, rope_theta;
    int rope_scaling;
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_original_context;
    int weight_type, pos_encoding, qkv_bias, qk_norm; /* version 2; llama2.c and version 1 files: all 0 */
    int chat_template, chat_tokens[4];
    int add_bos;               /* 1: a prompt starts with bos_id (every file before version 3) */
} Config;


enum { FORMAT_LLAMA2C_V0, FORMAT_LLAMA2C_V1, FORMAT_RAZOR };

/* A weight matrix, or a stack of them (one per layer), as the file stores it (WEIGHT_*). Element i
 * is ((float *)data)[i], or bfloat16 ((uint16_t *)data)[i], or ((int8_t *)data)[i] * scale[i / Q8_GROUP]. */
typedef struct {
    const void *data;
    const float *scale;      /* WEIGHT_Q8 only */
    int type;
    size_t n;                /* elements from data to the end of the stack */
} Matrix;

/* Pointers into the mapped model file. Shapes as above. */
typedef struct {
    Matrix token_embedding;  /* (vocab_size, dim) */
    float *rms_att_weight;   /* (layer, dim) */
    float *rms_ffn_weight;   /* (layer, dim) */
    Matrix wq;               /* (layer, q_dim, dim) */
    Matrix wk, wv;           /* (layer, kv_dim, dim) */
    Matrix wo;               /* (layer, dim, q_dim) */
    Matrix w1, w3;           /* (layer, hidden_dim, dim) */
    Matrix w2;               /* (layer, dim, hidden_dim) */
    float *rms_final_weight; /* (dim) */
    float *bq, *bk, *bv;     /* (layer, q_dim), (layer, kv_dim), (layer, kv_dim); NULL without qkv_bias */
    float *q_norm, *k_norm;  /* (layer, head_dim); NULL without qk_norm */
    Matrix wcls;             /* (vocab_size, dim); token_embedding itself when tied */
} TransformerWeights;

typedef struct {
    Config config;
    TransformerWeights weights;
    int format;              /* FORMAT_* */
    int version;             /* razor format version (1 to 3); 0 for llama2.c files */
    float *rope_freq;        /* (head_dim / 2) rotation frequency of each pair, scaling applied */
    float *alibi_slope;      /* (n_heads) with ALiBi; else NULL */
    void *map;               /* the mmapped file */
    size_t map_size;
    uint16_t *bf16;          /* -w bf16 on a float32 file: the matrices rounded to bfloat16 (model_to_bf16),
                                which weights now points into; else NULL */
} Model;

/* The vector width and the register tiles of razor.c's kernels, chosen from the compile target: the
 * one place that says which. VEC floats make one vector (GCC/Clang vector extensions, which the
 * compiler maps to the target's registers); each tile is sized so that its accumulators, plus the
 * vectors loaded beside them, fit the register file without spilling:
 *   block_tile  BLOCK_TILE_R x BLOCK_TILE_V accumulators, + BLOCK_TILE_V token vectors, + 1 weight
 *   dot_tile    DOT_TILE x DOT_TILE accumulators, + DOT_TILE token vectors, + 1 weight
 *   attend_tile ATT_QUERIES x ATT_SCORE_V score vectors, + ATT_SCORE_V keys, + 1 query number
 *               (broadcast); then ATT_QUERIES x ATT_VALUE_V sums of values, + ATT_VALUE_V values, + 1
 *               softmax weight (broadcast); one query alone, 2 x ATT_VALUE_V, and 2 x ATT_SCORE_V where
 *               that many vectors still divide a tile of keys (not with AVX-512: 4 are the whole tile)
 *   dot_row     4 sums, + 4 loads
 *   q8_tile     Q8_TILE_R x Q8_TILE_C accumulators (8 x Q8_STEP floats each: a zmm with AVX-512, a ymm
 *               with AVX2; 2 registers with SSE2 or NEON, where the tile does not fit and the compiler
 *               spills), + Q8_TILE_R rows of weights (Q8Weights: 1 zmm with AVX-512, 2 ymm with AVX2,
 *               2 NEON registers, 4 with SSE2), + 1 input, + 1 product, + 1 vector of scales, loaded
 *               from memory (below: q8 weights multiply int8 activations). In the blocked layout (a
 *               prompt's) as many int32 sums again, so that the float accumulators, touched once a
 *               block, may go to memory
 *   bf16_tile   BF16_TILE_R x BF16_TILE_C zmm accumulators, + BF16_TILE_C token vectors, + 1 weight
 *               (AVX512-BF16 only, below)
 * AVX-512 has 32 registers of 16 floats, AVX2 16 of 8, SSE2 16 of 4, ARM NEON 32 of 4.
 * WIDEN_AHEAD: block_tile widens 16-bit and 8-bit weights a vector at a time before its multiply-adds,
 * not one by one among them. With 2 vectors of tokens per weight (16 registers) that pays: bf16 prompts
 * with AVX2 on a Xeon (2 threads, 354 tokens, 2026-12-04), TinyLlama 1.1B's shape 42-56 -> 70-73 tok/s,
 * stories110M's 487-539 -> 585-714; with AVX-512's 4 it cost 7-9% (stories110M: 997-1068 -> 910-974). */
#if defined(__AVX512F__)           /* 32 zmm: block 24 + 4 + 1, dot 16 + 4 + 1, scores 24 + 4 + 1, sums 12 + 2 + 1,
                                      q8 16 + 4 + 2 + 1 */
#define RAZOR_ISA "AVX-512"
#define VEC 16
#define BLOCK_TILE_R 6
#define BLOCK_TILE_V 4
#define DOT_TILE 4
#define ATT_SCORE_V 4
#define ATT_QUERIES 6
#define ATT_VALUE_V 2
#define Q8_TILE_R 4
#define Q8_TILE_C 4
#define WIDEN_AHEAD 0
#elif defined(__aarch64__)         /* 32 NEON q registers: block 24 + 4 + 1, dot 16 + 4 + 1, scores 24 + 4 + 1,
                                      sums 24 + 4 + 1, q8 2 x 16 + 4 + 2 + 2 */
#define RAZOR_ISA "NEON"
#define VEC 4
#define BLOCK_TILE_R 6
#define BLOCK_TILE_V 4
#define DOT_TILE 4
#define ATT_SCORE_V 4
#define ATT_QUERIES 6
#define ATT_VALUE_V 4
#define Q8_TILE_R 4
#define Q8_TILE_C 4
#define WIDEN_AHEAD 0
#else                              /* 16 registers: block 12 + 2 + 1, dot 9 + 3 + 1, scores 12 + 2 + 1,
                                      sums 12 + 2 + 1, q8 8 + 4 + 2 + 1 */
#if defined(__AVX2__) && defined(__FMA__)
#define RAZOR_ISA "AVX2+FMA"
#define VEC 8
#elif defined(__AVX__)
#define RAZOR_ISA "AVX"
#define VEC 8
#elif defined(__SSE2__)
#define RAZOR_ISA "SSE2"
#define VEC 4
#else
#define RAZOR_ISA "generic (no known SIMD)"
#define VEC 4
#endif
#define BLOCK_TILE_R 6
#define BLOCK_TILE_V 2
#define DOT_TILE 3
#define ATT_SCORE_V 2
#define ATT_QUERIES 6
#define ATT_VALUE_V 2
#define Q8_TILE_R 2
#define Q8_TILE_C 4
#define WIDEN_AHEAD 1
#endif
/* q8 weights multiply int8 activations (razor.c appendix F, "q8 x q8"): the matmul's input is quantized
 * to int8 in groups of Q8_GROUP, one float32 scale each, symmetric: scale = max|x| / 127, values in
 * [-127, 127]. A weight row's next k groups (1 <= k <= Q8_STEP) are loaded once, q8_weights(w, k), for
 * all the tokens they meet; dot_i8(&sum, weights, x, k) multiplies them by k groups of a token's inputs,
 * exactly, in int32: lane 8j + l of sum holds the products of bytes 4l to 4l + 3 of the j-th 32 bytes,
 * the lanes past k groups zero. So in q8's plain layout lanes [8j, 8j + 8) sum to group j's dot product,
 * and in the blocked one (razor.c, appendix F: 32 bytes hold 4 of each of 8 groups) lane 8j + l belongs
 * to group l wholly. q8_lane_scales(&lanes, s, k) gives each lane of the plain layout the scale its group's
 * sum is to be multiplied by, s[j] for group j, read from memory (q8_tile makes the products ahead; a
 * broadcast load, or with AVX-512 one load and one vpermps); q8_block_scales(&lanes, s) gives those of
 * the blocked layout, s[l % 8] for lane l. Q8_STEP is 2 where AVX-512 multiplies 64 bytes in one
 * instruction, 1 elsewhere. dot_i8_plain is the definition, for one group, and the version for targets
 * with none of the instructions below (ARM without dotprod, non-x86, non-ARM). SSE2 (and AVX without
 * AVX2) widens the bytes to int16 itself, even and odd bytes apart so that a lane gets 4 bytes in a row,
 * and multiplies with pmaddwd, int16 x int16 summed in pairs to int32. x86's vpmaddubsw and vpdpbusd
 * multiply UNSIGNED by signed bytes, so they get |w| and x with w's sign (ggml's trick): |w| <= 128 fits
 * an unsigned byte and x * sign(w) stays in [-127, 127], so a weight of -128 (a GGUF's Q8_0 may hold
 * one) is exact too; vpmaddubsw's int16 sums of two products, at most 2 * 128 * 127 = 32512, never
 * saturate. */
typedef int32_t i32x8 __attribute__((vector_size(8 * sizeof(int32_t))));
static inline void dot_i8_plain(i32x8 *sum, const int8_t *w, const int8_t *x) {
    *sum = (i32x8){0};
    for (int l = 0; l < 8; l++)
        for (int b = 4 * l; b < 4 * l + 4; b++) (*sum)[l] += w[b] * x[b];
}
#define Q8_BLOCK 8 /* groups in a block of q8's blocked layout (razor.c, appendix F) */
#if defined(__AVX512BW__)          /* two groups in a zmm; AVX-512 has no vpsignb: w's sign moves by a mask */
#include <immintrin.h>
#define Q8_STEP 2
#if defined(__AVX512VNNI__)
#define RAZOR_DOT_I8 "vpdpbusd, 2 groups at a time"
#else
#define RAZOR_DOT_I8 "vpmaddubsw, 2 groups at a time"
#endif
typedef int32_t i32xstep __attribute__((vector_size(8 * Q8_STEP * sizeof(int32_t))));
typedef float f32xstep __attribute__((vector_size(8 * Q8_STEP * sizeof(float))));
typedef struct { __m512i abs; __mmask64 negative; } Q8Weights;
static inline Q8Weights q8_weights(const int8_t *w, int k) { /* k = 1: 32 bytes read, the rest 0 */
    __m512i wv = k == 2 ? _mm512_loadu_si512(w) : _mm512_maskz_loadu_epi8(0xffffffffULL, w);
    return (Q8Weights){_mm512_abs_epi8(wv), _mm512_movepi8_mask(wv)};
}
static inline void dot_i8(i32xstep *sum, Q8Weights w, const int8_t *x, int k) {
    __m512i xv = k == 2 ? _mm512_loadu_si512(x) : _mm512_maskz_loadu_epi8(0xffffffffULL, x);
    __m512i xs = _mm512_mask_sub_epi8(xv, w.negative, _mm512_setzero_si512(), xv);
#if defined(__AVX512VNNI__)
    *sum = (i32xstep)_mm512_dpbusd_epi32(_mm512_setzero_si512(), w.abs, xs);
#else
    *sum = (i32xstep)_mm512_madd_epi16(_mm512_maddubs_epi16(w.abs, xs), _mm512_set1_epi16(1));
#endif
}
static inline void q8_lane_scales(f32xstep *lanes, const float *s, int k) { /* 0-7: s[0], 8-15: s[1] (k = 2) */
    __m128 two = k == 2 ? _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)s)) : _mm_load_ss(s); /* any alignment */
    *lanes = (f32xstep)_mm512_permutexvar_ps(_mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0),
                                             _mm512_castps128_ps512(two));
}
static inline void q8_block_scales(f32xstep *lanes, const float *s) { /* 0-7 and 8-15: s[0..8) */
    __m512 eight = _mm512_castps256_ps512(_mm256_loadu_ps(s));
    *lanes = (f32xstep)_mm512_shuffle_f32x4(eight, eight, 0x44); /* 128-bit quarters 0, 1, 0, 1 */
}
#else
#define Q8_STEP 1
typedef i32x8 i32xstep;
typedef float f32xstep __attribute__((vector_size(8 * sizeof(float))));
static inline void q8_lane_scales(f32xstep *lanes, const float *s, int k) { /* all 8: s[0] */
    (void)k;
    float v = *s;
    *lanes = (f32xstep){v, v, v, v, v, v, v, v};
}
static inline void q8_block_scales(f32xstep *lanes, const float *s) { memcpy(lanes, s, sizeof *lanes); }
#if defined(__AVX2__)
#include <immintrin.h>
#define RAZOR_DOT_I8 "vpmaddubsw"
typedef struct { __m256i w, abs; } Q8Weights;
static inline Q8Weights q8_weights(const int8_t *w, int k) {
    (void)k;
    __m256i wv = _mm256_loadu_si256((const __m256i *)w);
    return (Q8Weights){wv, _mm256_sign_epi8(wv, wv)};
}
static inline void dot_i8(i32x8 *sum, Q8Weights w, const int8_t *x, int k) { /* to int16 pairs, to int32 */
    (void)k;
    __m256i pairs = _mm256_maddubs_epi16(w.abs, _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)x), w.w));
    *sum = (i32x8)_mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
}
#elif defined(__aarch64__) && defined(__ARM_FEATURE_DOTPROD)
#include <arm_neon.h>
#define RAZOR_DOT_I8 "sdot"
typedef struct { int8x16_t lo, hi; } Q8Weights;
static inline Q8Weights q8_weights(const int8_t *w, int k) {
    (void)k;
    return (Q8Weights){vld1q_s8(w), vld1q_s8(w + 16)};
}
static inline void dot_i8(i32x8 *sum, Q8Weights w, const int8_t *x, int k) { /* signed x signed */
    (void)k;
    int32x4_t lo = vdotq_s32(vdupq_n_s32(0), w.lo, vld1q_s8(x));
    int32x4_t hi = vdotq_s32(vdupq_n_s32(0), w.hi, vld1q_s8(x + 16));
    memcpy(sum, &lo, sizeof lo);
    memcpy((char *)sum + sizeof lo, &hi, sizeof hi);
}
#elif defined(__SSE2__)             /* every x86-64 CPU: no byte multiply, but pmaddwd multiplies int16 pairs */
#include <emmintrin.h>
#define RAZOR_DOT_I8 "pmaddwd"
typedef struct { __m128i even[2], odd[2]; } Q8Weights; /* the 32 weights sign-extended to int16 */
static inline __m128i even_bytes(__m128i v) { return _mm_srai_epi16(_mm_slli_epi16(v, 8), 8); } /* 0, 2, ..., 14 */
static inline __m128i odd_bytes(__m128i v) { return _mm_srai_epi16(v, 8); }                       /* 1, 3, ..., 15 */
static inline Q8Weights q8_weights(const int8_t *w, int k) {
    (void)k;
    Q8Weights q;
    for (int h = 0; h < 2; h++) {
        __m128i wv = _mm_loadu_si128((const __m128i *)(w + 16 * h));
        q.even[h] = even_bytes(wv);
        q.odd[h] = odd_bytes(wv);
    }
    return q;
}
static inline void dot_i8(i32x8 *sum, Q8Weights w, const int8_t *x, int k) { /* bytes sign-extended */
    (void)k;
    __m128i half[2];
    for (int h = 0; h < 2; h++) { /* lane l: bytes 4l and 4l + 2 (even), 4l + 1 and 4l + 3 (odd) */
        __m128i xv = _mm_loadu_si128((const __m128i *)(x + 16 * h));
        half[h] = _mm_add_epi32(_mm_madd_epi16(w.even[h], even_bytes(xv)), _mm_madd_epi16(w.odd[h], odd_bytes(xv)));
    }
    memcpy(sum, half, sizeof half);
}
#else
#define RAZOR_DOT_I8 "plain C"
typedef struct { const int8_t *w; } Q8Weights;
static inline Q8Weights q8_weights(const int8_t *w, int k) { (void)k; return (Q8Weights){w}; }
static inline void dot_i8(i32x8 *sum, Q8Weights w, const int8_t *x, int k) { (void)k; dot_i8_plain(sum, w.w, x); }
#endif
#endif
/* widen_u16: VEC 16-bit numbers (bfloat16 or IEEE half bits) zero-extended to 32-bit lanes, for razor.c's
 * widen_bf16 and widen_f16 (16-bit keys, values and weights). Plainly, __builtin_convertvector: the
 * fallback below. GCC 12 lowers that a half at a time (with AVX-512: two vpmovzxwd of ymm halves, an
 * extract and an insert, not one vpmovzxwd; on 64-bit ARM, lane by lane in scalar code), so SSE2, AVX2,
 * AVX-512 and 64-bit ARM get the instruction that does it (AVX without AVX2 and 32-bit ARM keep the
 * fallback). On a Zen 4 (one thread, one query against 48 heads of 1024 bf16 keys and values, in L3)
 * attention took 8.2 -> 5.8 us a head with AVX-512, 16.3 -> 9.7-11.0 with AVX2 (two runs). */
typedef uint16_t u16xvec __attribute__((vector_size(VEC * sizeof(uint16_t))));
typedef uint32_t u32xvec __attribute__((vector_size(VEC * sizeof(uint32_t))));
#if defined(__SSE2__)
#include <immintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#endif
static inline u32xvec widen_u16(const uint16_t *p) {
#if defined(__AVX512F__)
    return (u32xvec)_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
#elif defined(__AVX2__)
    return (u32xvec)_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
#elif defined(__SSE2__) && VEC == 4
    return (u32xvec)_mm_unpacklo_epi16(_mm_loadl_epi64((const __m128i *)p), _mm_setzero_si128());
#elif defined(__aarch64__)
    return (u32xvec)vmovl_u16(vld1_u16(p));
#else
    u16xvec h;
    memcpy(&h, p, sizeof h);
    return __builtin_convertvector(h, u32xvec);
#endif
}
/* Intel's AMX (Sapphire Rapids on) multiplies whole tiles of int8 at once: with it, q8 weights meet blocks
 * of 16 or more tokens in tdpbssd, 16 rows x 16 tokens x one group per instruction (razor.c appendix F,
 * q8_amx), where Linux grants the tile registers; the rest, and every machine without AMX, uses dot_i8. */
#if defined(__AMX_INT8__) && defined(__AVX512F__) && defined(__linux__)
#define RAZOR_AMX 1
#define RAZOR_AMX_NOTE ", blocks of tokens by AMX tiles (tdpbssd) where Linux grants them"
#else
#define RAZOR_AMX_NOTE ""
#endif
/* AVX512-BF16 (Zen 4, Cooper Lake and Sapphire Rapids on) multiplies bfloat16 pairs: vdpbf16ps adds
 * a[2l] * b[2l] + a[2l + 1] * b[2l + 1] to float32 lane l, 32 products per instruction, twice what a
 * float32 multiply-add does. With it bf16 weights meet inputs rounded to bf16 (razor.c appendix F, "bf16
 * x bf16"; -A f32 keeps them float32); elsewhere the weights are widened to float32 (wload). */
#if defined(__AVX512BF16__) && defined(__AVX512F__)
#define RAZOR_BF16_DOT 1
#define RAZOR_BF16_NOTE ", bf16 pairs by vdpbf16ps"
#define BF16_TILE_R 6  /* bf16_tile: 6 x 4 accumulators (zmm), + 4 token vectors, + 1 weight */
#define BF16_TILE_C 4
#else
#define RAZOR_BF16_NOTE ""
#endif
#define BLOCK_MIN_TOKENS 16  /* from this many tokens on, matmul uses block_tile (for float32 inputs), and the
                                per-token steps of the forward pass run on all threads */
#define ATT_TILE_K 64        /* keys per tile of the attention loop (and of the cache's transposed keys): one
                                online-softmax step per query for each; their scores are computed ATT_SCORE_V
                                vectors at a time (a divisor of ATT_TILE_K / VEC; for one query alone twice
                                as many where that still divides it) */
#define ATT_TILE_Q 48        /* queries that share a tile of keys in the attention loop; ATT_QUERIES of them
                                (a divisor) meet a tile together in attend_tile */
_Static_assert(ATT_TILE_K % (ATT_SCORE_V * VEC) == 0 && ATT_TILE_Q % ATT_QUERIES == 0,
               "attention tiles: ATT_SCORE_V vectors must divide ATT_TILE_K keys, ATT_QUERIES divide ATT_TILE_Q");

typedef struct { int first, last, value; } CodeRange;

/* NFC normalization tables of a byte-level tokenizer (razor.c appendix B). */
typedef struct {
    int n_ccc, n_decomp, n_comp;
    CodeRange *ccc;          /* nonzero canonical combining classes, sorted ranges */
    int *decomp;             /* n_decomp triples: code point, offset into pool, length 1-4 */
    int *comp;               /* n_comp triples: first, second, composite; sorted by the pair */
    int *pool;               /* the decompositions' code points */
} NfcTables;
typedef struct { int left, right, rank, result; } Merge; /* left = -1: an empty slot */

/* A tokenizer (razor.c appendix B), loaded whole: token i is piece[i][0 .. length[i]). */
typedef struct {
    char *data;              /* the file */
    const char **piece;      /* (vocab_size) */
    int *length;             /* (vocab_size) */
    int vocab_size, bos_id, eos_id;
    int byte_token[256];     /* the token of each byte: <0xNN> (sentencepiece), the byte itself (byte-level) */
    int *table;              /* hash of the pieces merges may make: id + 1, 0 = empty */
    size_t table_mask;
    float *score;            /* sentencepiece: (vocab_size) merge priority */
    int byte_level;          /* 1: an RZTK file (byte-level BPE) */
    unsigned char *type;     /* byte-level: (vocab_size) IN_VOCAB | SPLIT_OUT | SPECIAL */
    int regex, flags, n_classes, n_nfc, n_added;
    Merge *merges;           /* byte-level: hash of (left, right) -> rank, result */
    size_t merge_mask;
    CodeRange *classes;      /* byte-level: the regex's letter, number and space ranges */
    NfcTables nfc;           /* byte-level, if its normalizer is NFC */
    int *added;              /* byte-level: the SPLIT_OUT ids */
} Tokenizer;

#define DEFAULT_BLOCK 256    /* prompt tokens per forward block */

/* A head profile (razor.c section 6): echo and induction score of every KV head, and which are
 * retrieval heads (they keep every token; the others are compressed). */
typedef struct {
    int n_layers, n_kv_heads, n_heads, head_dim, dim;
    int K;                    /* the probe's block length; 0 if the profile came from a file without it */
    uint64_t seed;
    float induction_fraction, echo_fraction;
    float *echo, *induction;  /* (layer, kv_head) */
    unsigned char *retrieval; /* (layer, kv_head): 1 for a retrieval head */
    float span_eps;           /* ALiBi models: the attention mass a span may leave out; 0 for RoPE profiles */
    int *span;                /* (layer, kv_head) ALiBi models: the span in tokens (razor.c, span_rule) */
} HeadProfile;

#endif
