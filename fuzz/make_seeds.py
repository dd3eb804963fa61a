#!/usr/bin/python3
"""Writes the seed corpora under fuzz/corpus/<harness>/ from real files: tiny valid models in the
three formats (model.h), tokenizer.bin and small valid tokenizers, prompt texts, .heads and .tsv
profiles, ids files. Standard library only. Run from anywhere: /usr/bin/python3 fuzz/make_seeds.py"""
import os, random, struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
rng = random.Random(1)


def out(harness, name, data):
    d = os.path.join(HERE, "corpus", harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def floats(n, scale=0.5, offset=0.0):
    return struct.pack("<%df" % n, *(offset + scale * rng.uniform(-1, 1) for _ in range(n)))


def model(fmt, dim, hidden, layers, heads, kv_heads, vocab, seq_len, shared=1, head_dim=None,
          rope_scaling=0, theta=10000.0):
    hd = head_dim or dim // heads
    q, kv, L = heads * hd, kv_heads * hd, layers
    t = dict(emb=floats(vocab * dim, 1.0), rms_att=floats(L * dim, 0.3, 1), wq=floats(L * q * dim),
             wk=floats(L * kv * dim), wv=floats(L * kv * dim, 0.3), wo=floats(L * dim * q, 0.3),
             rms_ffn=floats(L * dim, 0.3, 1), w1=floats(L * hidden * dim, 0.3), w2=floats(L * dim * hidden, 0.3),
             w3=floats(L * hidden * dim, 0.3), rms_final=floats(dim, 0.3, 1), wcls=floats(vocab * dim))
    dims = [dim, hidden, layers, heads, kv_heads, vocab, seq_len]
    if fmt == "razor":
        h = struct.pack("<I12i2fi3fi", 0x727a6172, 1, dim, hidden, layers, heads, kv_heads, hd, vocab, seq_len,
                        1, 2, shared, 1e-5, theta, rope_scaling, 8.0, 1.0, 4.0, 64)
        h = h.ljust(256, b"\0")
    elif fmt == "v1":
        h = (struct.pack("<Ii7iB", 0x616b3432, 1, *dims, shared)).ljust(256, b"\0")
    else:
        dims[5] = vocab if shared else -vocab
        h = struct.pack("<7i", *dims)
    order = (["rms_att", "rms_ffn", "rms_final", "emb", "wq", "wk", "wv", "wo", "w1", "w2", "w3"] if fmt == "v1" else
             ["emb", "rms_att", "wq", "wk", "wv", "wo", "rms_ffn", "w1", "w2", "w3", "rms_final"])
    body = b"".join(t[k] for k in order)
    if fmt == "v0":
        body += floats(seq_len * hd, 100.0)  # freq_cis: skipped by razor
    if not shared:
        body += t["wcls"]
    return h + body


def model_v2(dim, hidden, layers, heads, kv_heads, vocab, seq_len, shared=1, weight_type=0, alibi=0, bias=0,
             qk_norm=0, chat=0, chat_tokens=(-1, -1, -1, -1)):
    """razor version 2 (model.h): a 120-byte header, tensors at multiples of 64 bytes, matrices in
    weight_type (0 f32, 1 bf16, 2 q8 groups of 32 with a float32 scale each)."""
    hd = dim // heads
    q, kv, L = heads * hd, kv_heads * hd, layers
    h = struct.pack("<I12i2fi3fi", 0x727a6172, 2, dim, hidden, layers, heads, kv_heads, hd, vocab, seq_len,
                    1, 2, shared, 1e-5, 10000.0, 0, 0.0, 0.0, 0.0, 0)
    h += struct.pack("<10i", weight_type, 32 if weight_type == 2 else 0, alibi, bias, qk_norm, chat, *chat_tokens)
    body = bytearray(h.ljust(256, b"\0"))

    def put(data):
        body.extend(b"\0" * (-len(body) % 64))
        body.extend(data)

    def matrix(n, scale=0.5):
        if weight_type == 0:
            put(floats(n, scale))
        elif weight_type == 1:
            put(struct.pack("<%dH" % n, *(rng.randrange(0x3c00, 0x3f80) | rng.choice((0, 0x8000)) for _ in range(n))))
        else:
            put(struct.pack("<%db" % n, *(rng.randrange(-127, 128) for _ in range(n))))
            put(floats(n // 32, 0.01, 0.01))
    matrix(vocab * dim, 1.0)
    put(floats(L * dim, 0.3, 1))
    for n in (L * q * dim, L * kv * dim, L * kv * dim, L * dim * q):
        matrix(n)
    put(floats(L * dim, 0.3, 1))
    for n in (L * hidden * dim, L * dim * hidden, L * hidden * dim):
        matrix(n, 0.3)
    put(floats(dim, 0.3, 1))
    if bias:
        for n in (L * q, L * kv, L * kv):
            put(floats(n, 0.5))
    if qk_norm:
        put(floats(L * hd, 0.3, 1))
        put(floats(L * hd, 0.3, 1))
    if not shared:
        matrix(vocab * dim)
    return bytes(body)


# models: each format, tied and untied, MHA/GQA/MQA, razor's own head_dim and Llama 3 rope scaling
out("model", "v0_tied", model("v0", 16, 24, 1, 2, 2, 16, 8))
out("model", "v0_untied_gqa", model("v0", 16, 16, 2, 4, 2, 12, 9, shared=0))
out("model", "v1_shared", model("v1", 16, 24, 1, 2, 1, 16, 8))
out("model", "v1_unshared", model("v1", 8, 16, 2, 2, 2, 10, 12, shared=0))
out("model", "razor_tied", model("razor", 16, 24, 1, 2, 1, 16, 8))
out("model", "razor_headdim_llama3", model("razor", 8, 16, 2, 4, 2, 12, 16, shared=0, head_dim=6, rope_scaling=1,
                                           theta=500000.0))
out("model", "razor_dim32", model("razor", 32, 48, 1, 4, 4, 20, 64))
# razor version 2: weight types, Qwen's biases and q/k norms, ALiBi (5 heads), chat template records
out("model", "v2_f32_bias_qknorm_chatml", model_v2(32, 64, 1, 4, 2, 20, 16, shared=0, bias=1, qk_norm=1, chat=2,
                                                   chat_tokens=(17, 18, -1, -1)))
out("model", "v2_bf16_llama3_chat", model_v2(32, 64, 2, 4, 4, 20, 16, weight_type=1, chat=1,
                                             chat_tokens=(16, 17, 18, -1)))
out("model", "v2_q8_untied", model_v2(32, 64, 1, 2, 1, 12, 16, shared=0, weight_type=2))
out("model", "v2_alibi_5_heads", model_v2(40, 64, 1, 5, 5, 12, 16, alibi=1))

# tokenizers: u16 (vocab_size - 1), then the file
def tokenizer(pieces, max_len=None):
    data = struct.pack("<i", max_len or max(len(p) for p, _ in pieces))
    for p, s in pieces:
        data += struct.pack("<fi", s, len(p)) + p
    return data

shipped = open(os.path.join(ROOT, "tests", "sp512", "tokenizer.bin"), "rb").read()
out("tokenizer", "shipped_512", struct.pack("<H", 511) + shipped)
small = [(b"<unk>", 0.0), (b"<s>", 0.0), (b"</s>", 0.0), (b"<0x41>", 0.0), (b"<0x20>", 0.0), (b" ", -1.0),
         (b"he", -2.0), (b" t", -3.0), (b" the", -4.0), (b"l", -5.0), (b"ll", -6.0), (b"o", -7.0), (b"ll", -8.0), (b"", -9.0)]
out("tokenizer", "small_14", struct.pack("<H", len(small) - 1) + tokenizer(small))
byte_pieces = [(b"<unk>", 0.0), (b"<s>", 0.0), (b"</s>", 0.0)] + [(b"<0x%02X>" % i, 0.0) for i in range(256)] + \
              [(b" w", -1.0), (b"\xc3\xb6", -2.0), (b"rld", -3.0), (b"end", -4.0), (b" e", -5.0)]
out("tokenizer", "bytes_264", struct.pack("<H", len(byte_pieces) - 1) + tokenizer(byte_pieces))
out("tokenizer", "one_piece", struct.pack("<H", 0) + tokenizer([(b"<unk>", 0.0)]))

# byte-level BPE (RZTK, razor.c section 6): the three test files and tiny hand-made ones
for name in ["bbpe_tokenizer.bin", "bbpe_tokenizer_gpt2.bin", "bbpe_tokenizer_qwen2.bin"]:
    data = open(os.path.join(ROOT, "tests", name), "rb").read()
    out("tokenizer", "rztk_" + name[:-4], struct.pack("<H", struct.unpack_from("<i", data, 8)[0] - 1) + data)

def rztk(regex, flags, tokens, merges, classes, nfc, vocab_pad=0):
    data = b"RZTK" + struct.pack("<9i", 1, len(tokens), 256, 257, regex, flags, len(merges), len(classes), len(nfc))
    for piece, kind in tokens:
        data += struct.pack("<iB", len(piece), kind) + piece
    for rows in (merges, classes, nfc):
        for row in rows:
            data += struct.pack("<3i", *row)
    return struct.pack("<H", len(tokens) + vocab_pad - 1) + data

tiny = [(bytes([b]), 1) for b in range(256)] + [(b"th", 1), (b"he", 1), (b"the", 1), (b"<x>", 2), (b"<eos>", 4)]
merges = [(ord("t"), ord("h"), 256), (ord("h"), ord("e"), 257), (256, ord("e"), 258)]
classes = [(9, 13, 3), (32, 32, 3), (48, 57, 2), (65, 90, 1), (97, 122, 1), (0xC0, 0x24F, 1), (0x3000, 0x3000, 3)]
nfc = [(0x300, 0x33F, 230 | 230 << 8 | 1 << 17), (0x340, 0x341, 1 << 16), (0x342, 0x36F, 230 | 230 << 8),
       (0x1100, 0x1112, 1 << 18), (0x1161, 0x1175, 1 << 17)]
out("tokenizer", "rztk_tiny_llama3", rztk(1, 0, tiny, merges, classes, []))
out("tokenizer", "rztk_tiny_gpt2_ignore_merges", rztk(2, 1, tiny, merges, classes, [], vocab_pad=3))
out("tokenizer", "rztk_tiny_qwen2_nfc", rztk(3, 2, tiny, merges, classes, nfc))

# encode: texts
texts = {"english": "It is a truth universally acknowledged, that a single man in possession of a good fortune, "
                    "must be in want of a wife.\n",
         "leading_spaces": "   two  spaces\tand a tab\n\n",
         "utf8": "na\u00efve caf\u00e9 \u65e5\u672c\u8a9e \U0001F600 \u00b5",
         "control_pieces": "<s> </s> <unk> <0x41> \n<s>\n",
         "sp_space": "a\u2581b\u2581\u2581",
         "empty": ""}
for k, v in texts.items():
    out("encode", k, v)
out("encode", "invalid_utf8", b"\xff\xfe\xc3 \xe2\x96 \xf0\x9f\x98 \x80\x80 ok \xc0\xaf")
out("encode", "with_nul", b"before\0after")
out("encode", "prompt", open(os.path.join(ROOT, "tests", "bench_prompt.txt"), "rb").read()[:2000])

# encode_bbpe: the first byte picks the tokenizer (% 3: Llama 3, GPT-2, Qwen2), the rest is the text
bbpe_texts = {"english": texts["english"], "utf8": texts["utf8"], "ws": "a  b\r\n\n  \t c   \n",
              "contractions": "I'm you'RE it's we'll THEY'D \u017ft", "numbers": "1234567 3.14 x2 \u0661\u0662",
              "added": "<think>x</think><tool_call><think> <tool_call", "combining": "e\u0301 \u00e9 \u1100\u1161 \uff21"}
for i, (k, v) in enumerate(bbpe_texts.items()):
    out("encode_bbpe", k, bytes([i % 3]) + v.encode())
out("encode_bbpe", "invalid_utf8", b"\x01" + b"\xff\xfe\xc3 \xed\xa0\x80 \xf4\x90\x80\x80 ok")

# profiles for 3 layers x 2 KV heads (4 heads, head_dim 8, dim 32); first byte: b"0" .heads, b"1" .tsv, b"2" .json
heads = ("# razor head profile\n# comment\n"
         "shape layers 3 kv_heads 2 heads 4 head_dim 8 dim 32\n"
         "probe K 63 repeats 4 seed 42 induction_fraction 0.14 echo_fraction 0.01\n"
         "0 | 0.01000 0.02000 RAZOR | 0.50000 0.10000 FULL\n"
         "1 | 0.00100 0.90000 FULL | 0.00000 0.00000 RAZOR\n"
         "2 | 0.30000 0.20000 RAZOR | 0.10000 0.40000 RAZOR\n")
out("profile", "valid.heads", b"0" + heads.encode())
out("profile", "crlf.heads", b"0" + heads.replace("\n", "\r\n").encode())
out("profile", "wrong_shape.heads", b"0" + heads.replace("layers 3", "layers 4").encode())
out("profile", "valid.tsv", b"1" + b"1\t0\n0\t1\n0\t0\n")
out("profile", "floats.tsv", b"1" + b"# DuoAttention\n0.9\t0.1\n\n0.49 0.5\r\n1e0\t-1\n")
out("profile", "short.tsv", b"1" + b"1\t0\n0\n")
out("profile", "golden_stick.json", b"2" + b'{\n   "0": [\n      1\n   ],\n   "2": [0, 1]\n}\n')
out("profile", "scores.json", b"2" + ('{' + ', '.join(f'"{l}-{h}": [0, 0.{l}{h}, 1e-1]' for l in range(3)
                                                       for h in range(4)) + '}').encode())
out("profile", "empty.json", b"2" + b"{}")

# ids
out("ids", "short", "1 2 3\n")
out("ids", "many", " ".join(str(rng.randrange(512)) for _ in range(300)) + "\n")
out("ids", "edges", "0\t511\n\n  +7 -0 0010\r\n")
out("ids", "bad", "1 2 x 3\n")
