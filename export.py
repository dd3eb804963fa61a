"""
export.py: convert a Llama-family checkpoint into a model file razor can load (see model.h).

    python3 export.py OUT.bin --hf DIR            # Hugging Face folder (config.json + *.safetensors)
    python3 export.py OUT.bin --meta DIR          # Meta's params.json + consolidated.*.pth (needs torch)
    python3 export.py OUT.bin --checkpoint X.pt   # a llama2.c training checkpoint (needs torch)
    python3 export.py OUT.bin --bin MODEL.bin --dtype q8  # a llama2.c .bin or razor float32 file, re-written
    python3 export.py OUT.bin --gguf MODEL.gguf   # llama.cpp's GGUF (llama, qwen2, qwen3), and its tokenizer
options:
    --dtype f32|bf16|q8  how the weight matrices are stored (default f32, --gguf: see below; norms and
                         biases stay f32).
                         bf16 rounds the float32 value to nearest even, exactly as razor's -w bf16 does;
                         q8 stores int8 with one float32 scale per 32 values of a row (max |w| / 127)
    --alibi              the --hf folder is a Baichuan 13B (ALiBi) checkpoint; see below
    --legacy             write llama2.c's version 0 file instead of razor's format (f32, Llama only)
    --tokenizer T.model  also write a sentencepiece tokenizer as llama2.c's tokenizer.bin
                         (next to OUT, or at --tokenizer-out PATH; see train/tokenizer.py)
    --tokenizer tokenizer.json   or a Hugging Face byte-level BPE (Llama 3, GPT-2, Qwen2) as razor's
                         RZTK tokenizer file (see tokenizer_bbpe.py)
    --seq-len N          override the maximum context written in the header

Hugging Face architectures: LlamaForCausalLM, MistralForCausalLM (no sliding window), Qwen2ForCausalLM
(Qwen2, Qwen2.5: q/k/v biases), Qwen3ForCausalLM (per-head q/k RMSNorm; not the MoE models) and
BaichuanForCausalLM with --alibi. Baichuan's config.json does not say whether a checkpoint uses RoPE
(Baichuan-7B, Baichuan2-7B) or ALiBi (Baichuan-13B, Baichuan2-13B), so a Baichuan folder is refused
unless --alibi says it is an ALiBi one; the RoPE Baichuans are not supported. Baichuan2's lm_head is a
"NormHead" (each row divided by its L2 norm in the forward pass); it is written normalized. Baichuan2
is told from Baichuan-13B by vocab_size 125696, as vLLM's baichuan.py does (Baichuan-13B has 64000).

Chat template (razor's -m chat): from tokenizer_config.json's chat_template (or chat_template.jinja)
in the --hf folder: "<|im_start|>" -> ChatML, "<|start_header_id|>" -> Llama 3, with the special
token ids from its added_tokens_decoder (or tokenizer.json's added_tokens); "[INST]", none, or any
other kind -> Llama 2's [INST] (a note says so where that is a guess). Meta and llama2.c sources: Llama
3 (vocab 128256) -> Llama 3 with ids 128006, 128007, 128009; else [INST].

BOS (the add_bos header field, razor format version 3): whether the tokenizer puts a BOS before a
text, from the first of these in the --hf folder: tokenizer.json's post_processor (a
TemplateProcessing that starts with a special token: that token; ByteLevel or none: no BOS, as Qwen),
tokenizer_config.json's add_bos_token (or a null bos_token), a sentencepiece tokenizer.model (BOS),
config.json's bos_token_id (hf_bos). Meta and llama2.c sources: BOS.

Sentencepiece tokenizers: razor's tokenizer.bin encoder (llama2.c's) always puts a dummy-prefix space
before the text, so a .model without one (add_dummy_prefix false: "a" encodes to a first piece that
lacks "\u2581") is refused; razor can still run its model on token ids (-I). Baichuan-13B's has one.

Safetensors are read with numpy alone (F32, F16, BF16, F64); torch is imported only for .pth/.bin/.pt.
Everything is checked (architecture, config fields, tensor names and shapes, tokenizer) before any
output is written; the file is written to OUT.tmp and renamed, so an error never leaves a half-written OUT.

RoPE layout. razor (like llama2.c and Meta's original code) rotates the pairs (2i, 2i+1) of each head.
Hugging Face's convert_llama_weights_to_hf.py reorders the rows of wq and wk so that transformers can
rotate "halves" instead: within each head, HF row j < head_dim/2 is original row 2j, and HF row
j + head_dim/2 is original row 2j+1. unpermute() below undoes this for HF checkpoints, so that q and k
come out of the matmul in razor's interleaved order; the q/k biases (Qwen2) and the q_norm/k_norm
weights (Qwen3, one head's worth) are permuted the same way. Meta and llama2.c checkpoints are already
interleaved and are written as they are; ALiBi checkpoints have no rotation and are not permuted.

GGUF (--gguf; docs/models.md has the details). The file as llama.cpp's ggml/include/gguf.h documents
it, general.alignment honoured; the config from the {arch}.* keys, refusing (one line naming the key)
what razor cannot run and any {arch}.* key this file does not know; tensors by their GGUF names.
llama.cpp's converter (convert_hf_to_gguf.py) permutes llama's q/k rows into interleaved pairs
(LlamaModel.permute) and leaves qwen2's and qwen3's in the rotate-half order (llama.cpp runs those
with NEOX rope), so those are permuted here as for --hf. Llama 3 rope scaling comes as the tensor
rope_freqs (the converter's per-frequency divisors), turned back into razor's four fields. Tensor
types F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, dequantized as ggml's reference
dequantize_row_* (ggml-quants.c) do it, in float32; a tensor holding an inf or NaN is refused as it is
read (the output being written is removed). Default --dtype: the smallest type that holds the values
exactly: q8 if every matrix is Q8_0, Q4_0 or Q5_0 (int8 times one scale per 32 values of a row: razor's
q8 keeps the GGUF's values and fp16 scales as they are; llama-quantize's Q4_0 and Q5_0 files keep the
classifier as Q6_K, so they get f32), bf16 if all are BF16, else f32.
The tokenizer (tokenizer.ggml.*) is written to --tokenizer-out, default tokenizer.bin next to OUT:
"llama" (sentencepiece) as llama2.c's tokenizer.bin, "gpt2" (byte-level BPE, tokenizer.ggml.pre
llama-bpe, qwen2 or gpt-2) as RZTK, by way of the tokenizer.json it stands for; add_bos from
tokenizer.ggml.add_bos_token (absent: llama.cpp's default); the chat template as for --hf.

Checked against: transformers' models/qwen2 and models/qwen3 (configuration_*, modular_qwen2.py,
modeling_qwen3.py); Baichuan-13B-Base's config.json, modeling_baichuan.py, tokenizer and weight index
as copied in github.com/AlibabaPAI/FlashModels (hf_models/config/baichuan-13b-base); vLLM's
vllm/model_executor/models/baichuan.py (ALiBi vs RoPE, NormHead, the vocab_size rule).
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np

RAZOR_MAGIC, RAZOR_VERSION, HEADER_BYTES = 0x727A6172, 3, 256
ALIGN, Q8_GROUP = 64, 32  # version 2 on: tensor alignment in the file; q8 values per scale
F32, BF16, Q8 = 0, 1, 2   # weight_type
DTYPES = {'f32': F32, 'bf16': BF16, 'q8': Q8}
POS_ROPE, POS_ALIBI = 0, 1
CHAT_LLAMA2, CHAT_LLAMA3, CHAT_CHATML = 0, 1, 2
CHAT_TOKENS = {CHAT_LLAMA2: (), CHAT_LLAMA3: ('<|start_header_id|>', '<|end_header_id|>', '<|eot_id|>'),
               CHAT_CHATML: ('<|im_start|>', '<|im_end|>')}
BIG = 100 * 1024 * 1024  # print progress per tensor above this many bytes of output


class ExportError(Exception):
    pass


def fail(msg):
    raise ExportError(msg)


def read_json(path):
    with open(path, encoding='utf-8') as f:
        try:
            return json.load(f)
        except ValueError as e:
            fail(f'{path}: bad JSON: {e}')


# ----------------------------------------------------------------------------------------------------
# safetensors, read with numpy

ST_DTYPES = {'F32': ('<f4', 4), 'F16': ('<f2', 2), 'BF16': ('<u2', 2), 'F64': ('<f8', 8)}


class SafeTensors:
    """One .safetensors file: an 8-byte little-endian header length, a JSON header, then raw data."""

    def __init__(self, path):
        self.path = path
        size = os.path.getsize(path)
        with open(path, 'rb') as f:
            raw = f.read(8)
            if len(raw) < 8:
                fail(f'{path}: truncated safetensors file (no header)')
            n = struct.unpack('<Q', raw)[0]
            if n > size - 8:
                fail(f'{path}: truncated safetensors file (header says {n} bytes, file has {size})')
            try:
                header = json.loads(f.read(n))
            except ValueError as e:
                fail(f'{path}: bad safetensors header: {e}')
        self.base = 8 + n
        self.info = {}
        for name, t in header.items():
            if name == '__metadata__':
                continue
            dtype, shape, (start, end) = t['dtype'], tuple(t['shape']), t['data_offsets']
            if dtype not in ST_DTYPES:
                fail(f'{path}: tensor {name} has dtype {dtype}; only {", ".join(ST_DTYPES)} are supported')
            if end - start != math.prod(shape) * ST_DTYPES[dtype][1]:
                fail(f'{path}: tensor {name}: data_offsets do not match shape {shape} and dtype {dtype}')
            if self.base + end > size:
                fail(f'{path}: truncated safetensors file (tensor {name} ends at byte '
                     f'{self.base + end}, file has {size})')
            self.info[name] = (dtype, shape, start, end)
        self.data = None

    def shape(self, name):
        return self.info[name][1]

    def load(self, name):
        if self.data is None:
            self.data = np.memmap(self.path, dtype=np.uint8, mode='r')
        dtype, shape, start, end = self.info[name]
        raw = self.data[self.base + start:self.base + end].view(ST_DTYPES[dtype][0]).reshape(shape)
        if dtype == 'BF16':  # bfloat16 is the high half of a float32
            return (raw.astype(np.uint32) << 16).view(np.float32)
        return raw.astype(np.float32)


class TorchTensors:
    """Tensors from torch files (state dicts), converted to numpy on access."""

    def __init__(self, state_dict):
        self.sd = state_dict
        self.info = state_dict

    def shape(self, name):
        return tuple(self.sd[name].shape)

    def load(self, name):
        return self.sd[name].float().numpy()


def need_torch(what):
    try:
        import torch
        return torch
    except ImportError:
        fail(f'{what} needs PyTorch, which is not installed (safetensors folders need only numpy)')


def torch_load(path):
    torch = need_torch(os.path.basename(path))
    try:
        return torch.load(path, map_location='cpu', weights_only=True, mmap=True)
    except TypeError:  # older torch without mmap=
        return torch.load(path, map_location='cpu')


# ----------------------------------------------------------------------------------------------------
# a model to export: a config (the razor header fields) and tensors under Meta's names

LAYER_TENSORS = ['attention_norm', 'attention.wq', 'attention.wk', 'attention.wv', 'attention.wo',
                 'ffn_norm', 'feed_forward.w1', 'feed_forward.w2', 'feed_forward.w3']
BIASES, QK_NORMS = ['attention.bq', 'attention.bk', 'attention.bv'], ['attention.q_norm', 'attention.k_norm']
HF_NAMES = {'tok_embeddings': 'model.embed_tokens.weight', 'norm': 'model.norm.weight',
            'output': 'lm_head.weight', 'attention_norm': 'input_layernorm.weight',
            'attention.wq': 'self_attn.q_proj.weight', 'attention.wk': 'self_attn.k_proj.weight',
            'attention.wv': 'self_attn.v_proj.weight', 'attention.wo': 'self_attn.o_proj.weight',
            'ffn_norm': 'post_attention_layernorm.weight', 'feed_forward.w1': 'mlp.gate_proj.weight',
            'feed_forward.w2': 'mlp.down_proj.weight', 'feed_forward.w3': 'mlp.up_proj.weight',
            'attention.bq': 'self_attn.q_proj.bias', 'attention.bk': 'self_attn.k_proj.bias',
            'attention.bv': 'self_attn.v_proj.bias', 'attention.q_norm': 'self_attn.q_norm.weight',
            'attention.k_norm': 'self_attn.k_norm.weight'}
FAMILIES = {'llama': 'LlamaForCausalLM', 'mistral': 'MistralForCausalLM', 'qwen2': 'Qwen2ForCausalLM',
            'qwen3': 'Qwen3ForCausalLM', 'baichuan': 'BaichuanForCausalLM'}  # model_type -> architecture
QWEN = ('Qwen2ForCausalLM', 'Qwen3ForCausalLM')
BAICHUAN2_VOCAB = 125696  # Baichuan2 (NormHead); Baichuan-13B has 64000 (vLLM's rule, see the docstring)


def layer_tensors(c):
    """The Meta-style names of one layer's tensors in this model."""
    return LAYER_TENSORS + (BIASES if c['qkv_bias'] else []) + (QK_NORMS if c['qk_norm'] else [])


def expected_shapes(c):
    """Meta-style tensor name -> shape razor needs."""
    d, h, hd = c['dim'], c['hidden_dim'], c['head_dim']
    q, kv = c['n_heads'] * hd, c['n_kv_heads'] * hd
    per_layer = {'attention_norm': (d,), 'attention.wq': (q, d), 'attention.wk': (kv, d),
                 'attention.wv': (kv, d), 'attention.wo': (d, q), 'ffn_norm': (d,),
                 'feed_forward.w1': (h, d), 'feed_forward.w2': (d, h), 'feed_forward.w3': (h, d),
                 'attention.bq': (q,), 'attention.bk': (kv,), 'attention.bv': (kv,),
                 'attention.q_norm': (hd,), 'attention.k_norm': (hd,)}
    shapes = {'tok_embeddings': (c['vocab_size'], d), 'norm': (d,)}
    if not c['shared_classifier']:
        shapes['output'] = (c['vocab_size'], d)
    for i in range(c['n_layers']):
        for k in layer_tensors(c):
            shapes[f'layers.{i}.{k}'] = per_layer[k]
    return shapes


def unpermute(w, n_heads):
    """HF rotate-half row order -> interleaved pairs (the inverse of HF's permute); w: rows or a vector."""
    hd = w.shape[0] // n_heads
    return w.reshape(n_heads, 2, hd // 2, -1).transpose(0, 2, 1, 3).reshape(w.shape)


class Model:
    def __init__(self, config, shapes, load, source_names=None, family='Llama'):
        self.config = config  # razor header fields
        self.shapes = shapes  # Meta-style name -> shape as found
        self.load = load      # Meta-style name -> float32 array in razor's layout
        self.source_names = source_names or {}  # Meta-style name -> name in the checkpoint, for messages
        self.family = family  # the HF architecture, or 'Llama' for Meta and llama2.c sources

    def check(self):
        c = self.config
        for k in ('dim', 'hidden_dim', 'n_layers', 'n_heads', 'n_kv_heads', 'head_dim', 'vocab_size', 'seq_len'):
            if not isinstance(c[k], int) or c[k] <= 0:
                fail(f'config: {k} = {c[k]!r} is not a positive integer')
        if c['n_heads'] % c['n_kv_heads']:
            fail(f'config: n_kv_heads ({c["n_kv_heads"]}) does not divide n_heads ({c["n_heads"]})')
        if c['head_dim'] % 2 and c['pos_encoding'] == POS_ROPE:
            fail(f'config: head_dim ({c["head_dim"]}) must be even for RoPE')
        for name, shape in expected_shapes(c).items():
            src = self.source_names.get(name, name)
            if name not in self.shapes:
                fail(f'missing tensor {src}')
            if tuple(self.shapes[name]) != shape:
                fail(f'tensor {src} has shape {tuple(self.shapes[name])}, expected {shape}')


def rope_scaling_fields(rs, where):
    """A llama3 rope_scaling dict -> razor's fields; refuse any other kind."""
    kind = rs.get('rope_type', rs.get('type', 'default'))
    if kind == 'default':
        return {}
    if kind != 'llama3':
        fail(f'{where}: rope type {kind!r} is not supported (only none or "llama3")')
    try:
        return {'rope_scaling': 1, 'rope_factor': float(rs['factor']),
                'rope_low_freq_factor': float(rs['low_freq_factor']),
                'rope_high_freq_factor': float(rs['high_freq_factor']),
                'rope_original_context': int(rs['original_max_position_embeddings'])}
    except KeyError as e:
        fail(f'{where}: llama3 rope scaling lacks {e.args[0]}')


def base_config(**kw):
    c = dict(bos_id=1, eos_id=2, rope_theta=10000.0, norm_eps=1e-5, rope_scaling=0, rope_factor=0.0,
             rope_low_freq_factor=0.0, rope_high_freq_factor=0.0, rope_original_context=0, weight_type=F32,
             pos_encoding=POS_ROPE, qkv_bias=0, qk_norm=0, chat_template=CHAT_LLAMA2, chat_tokens=[-1] * 4,
             add_bos=1)
    c.update(kw)
    return c


def special_id(cfg, key, default):
    v = cfg.get(key, default)
    if isinstance(v, list):
        print(f'note: config {key} is a list {v}; using the first, {v[0]}')
        v = v[0]
    if v is None:
        print(f'note: config {key} is null; writing -1')
        v = -1
    return int(v)


def check_hf_config(cfg, arch, alibi):
    """Refuses what razor cannot run; arch is the config's one architecture."""
    if arch not in FAMILIES.values():
        fail(f'config: architectures [{arch!r}] not supported (only {", ".join(FAMILIES.values())})')
    if arch == 'BaichuanForCausalLM' and not alibi:
        fail('config: Baichuan checkpoints come with RoPE (Baichuan-7B, Baichuan2-7B) or ALiBi (Baichuan-13B, '
             'Baichuan2-13B), and config.json does not say which: pass --alibi for an ALiBi (13B) one; '
             'the RoPE Baichuans are not supported')
    if alibi and arch != 'BaichuanForCausalLM':
        fail(f'--alibi is only for Baichuan (13B) checkpoints; config.json says {arch}')
    if arch in QWEN:  # sliding_window is a number here, used only with use_sliding_window
        if cfg.get('use_sliding_window'):
            fail('config: use_sliding_window = true is not supported (razor attends to the whole context)')
    elif cfg.get('sliding_window') is not None:
        fail(f'config: sliding_window = {cfg["sliding_window"]} is not supported (must be null)')
    kinds = sorted(set(cfg.get('layer_types') or ['full_attention']))
    if kinds != ['full_attention']:
        fail(f'config: layer_types {kinds} is not supported (only full_attention)')
    if cfg.get('attention_bias') and arch != 'Qwen2ForCausalLM':  # Qwen2 has q/k/v biases whatever it says
        why = " (Qwen3's puts one on o_proj too, and razor's format has none there)" if arch in QWEN else ''
        fail(f'config: attention_bias = true is not supported{why}')
    if cfg.get('mlp_bias'):
        fail('config: mlp_bias = true is not supported')
    for k in ('num_local_experts', 'num_experts', 'n_routed_experts', 'num_experts_per_tok'):
        if cfg.get(k):
            fail(f'config: {k} = {cfg[k]} (mixture of experts) is not supported')
    act = cfg.get('hidden_act', 'silu')
    if act != 'silu':
        fail(f'config: hidden_act = {act!r} is not supported (only "silu")')
    if cfg.get('partial_rotary_factor', 1.0) != 1.0:
        fail(f'config: partial_rotary_factor = {cfg["partial_rotary_factor"]} is not supported')


def load_hf(folder, alibi=False):
    path = os.path.join(folder, 'config.json')
    if not os.path.exists(path):
        fail(f'{folder}: no config.json')
    cfg = read_json(path)
    archs = cfg.get('architectures') or [FAMILIES.get(cfg.get('model_type'), repr(cfg.get('model_type')))]
    if len(archs) != 1:
        fail(f'config: architectures {archs} not supported (only one of {", ".join(FAMILIES.values())})')
    arch = archs[0]
    check_hf_config(cfg, arch, alibi)
    baichuan = arch == 'BaichuanForCausalLM'

    scaling, theta = {}, 10000.0
    if not baichuan:
        rp = cfg.get('rope_parameters') or {}  # newer transformers keep theta and scaling here
        theta = rp.get('rope_theta', cfg.get('rope_theta', 10000.0))
        scaling = rope_scaling_fields(cfg['rope_scaling'], 'config: rope_scaling') if cfg.get('rope_scaling') \
            else rope_scaling_fields(rp, 'config: rope_parameters')
    try:
        dim, heads = cfg['hidden_size'], cfg['num_attention_heads']
        if baichuan and dim % heads:
            fail(f'config: hidden_size {dim} is not a multiple of num_attention_heads {heads}')
        if baichuan and dim == 4096:  # vLLM's rule too
            fail('--alibi: hidden_size 4096 is a Baichuan 7B, and those use RoPE, not ALiBi (not supported)')
        head_dim = dim // heads if baichuan else cfg.get('head_dim') or (128 if arch == 'Qwen3ForCausalLM' else
                                                                          dim // heads)  # Qwen3Config's default
        c = base_config(dim=dim, hidden_dim=cfg['intermediate_size'], n_layers=cfg['num_hidden_layers'],
                        n_heads=heads, n_kv_heads=heads if baichuan else cfg.get('num_key_value_heads') or heads,
                        head_dim=head_dim, vocab_size=cfg['vocab_size'],
                        seq_len=cfg.get('max_position_embeddings') or cfg.get('model_max_length') or 2048,
                        bos_id=special_id(cfg, 'bos_token_id', 1), eos_id=special_id(cfg, 'eos_token_id', 2),
                        norm_eps=float(cfg.get('rms_norm_eps', 1e-6)), rope_theta=float(theta),
                        pos_encoding=POS_ALIBI if baichuan else POS_ROPE, qkv_bias=int(arch == 'Qwen2ForCausalLM'),
                        qk_norm=int(arch == 'Qwen3ForCausalLM'), **scaling)
    except KeyError as e:
        fail(f'config: missing field {e.args[0]}')

    # find the tensors: one file, or shards listed in an index
    files = {}
    for kind in ('model.safetensors', 'pytorch_model.bin'):
        index = os.path.join(folder, kind + '.index.json')
        if os.path.exists(index):
            names = sorted(set(read_json(index)['weight_map'].values()))
            break
        if os.path.exists(os.path.join(folder, kind)):
            names = [kind]
            break
    else:
        fail(f'{folder}: no model.safetensors, model.safetensors.index.json or pytorch_model.bin')
    for name in names:
        p = os.path.join(folder, name)
        if not os.path.exists(p):
            fail(f'{folder}: shard {name} is missing')
        files[name] = SafeTensors(p) if name.endswith('.safetensors') else TorchTensors(torch_load(p))
    where = {t: f for f in files.values() for t in f.info}  # HF tensor name -> file

    qkv = ('attention.wq', 'attention.wk', 'attention.wv')
    to_meta = {HF_NAMES[k]: k for k in ('tok_embeddings', 'norm', 'output')}
    for i in range(c['n_layers']):
        for k in layer_tensors(c):
            if not (baichuan and k in qkv):
                to_meta[f'model.layers.{i}.{HF_NAMES[k]}'] = f'layers.{i}.{k}'
        if baichuan:  # one fused (3 * dim, dim) matrix: q, k, v rows
            to_meta[f'model.layers.{i}.self_attn.W_pack.weight'] = f'layers.{i}.attention.wqkv'
    for t in where:
        if t not in to_meta and not t.endswith('rotary_emb.inv_freq'):
            if t.endswith('.bias'):
                fail(f'tensor {t}: biases are not supported' + (' (only q/k/v_proj.bias, Qwen2)' if c['qkv_bias']
                                                                 else ''))
            fail(f'unexpected tensor {t} (not a {arch} tensor, or more layers than num_hidden_layers)')
    from_meta = {m: h for h, m in to_meta.items() if h in where}
    shapes = {m: where[h].shape(h) for m, h in from_meta.items()}
    source_names = {m: h for h, m in to_meta.items()}
    if baichuan:  # present W_pack as wq, wk, wv
        for i in range(c['n_layers']):
            packed = f'layers.{i}.attention.wqkv'
            for k in qkv:
                source_names[f'layers.{i}.{k}'] = source_names[packed]
                if packed in shapes:
                    shapes[f'layers.{i}.{k}'] = (shapes[packed][0] // 3, *shapes[packed][1:])
            if packed in shapes and tuple(shapes[packed]) != (3 * dim, dim):
                fail(f'tensor {source_names[packed]} has shape {tuple(shapes[packed])}, expected {(3 * dim, dim)}')

    tied = cfg.get('tie_word_embeddings', False)
    if not tied and 'output' not in from_meta:
        print('note: lm_head.weight is absent; the classifier is tied to the embedding')
        tied = True
    c['shared_classifier'] = int(bool(tied))
    normhead = baichuan and c['vocab_size'] == BAICHUAN2_VOCAB
    if normhead:
        if tied:
            fail('Baichuan2 (vocab_size 125696) normalizes lm_head.weight (NormHead); a tied one is not supported')
        print('note: Baichuan2 (vocab_size 125696): writing lm_head rows divided by their L2 norm (NormHead)')

    last = {}  # the last W_pack read, for its three parts

    def load(name):
        kind = name.split('.', 2)[2] if name.startswith('layers.') else name
        if baichuan and kind in qkv:
            packed = name.rsplit('.', 1)[0] + '.wqkv'
            if packed not in last:
                last.clear()
                last[packed] = where[from_meta[packed]].load(from_meta[packed])
            return last[packed][qkv.index(kind) * dim:(qkv.index(kind) + 1) * dim]
        w = where[from_meta[name]].load(from_meta[name])
        if kind == 'output' and normhead:  # torch.nn.functional.normalize: row / max(||row||, 1e-12)
            norm = np.sqrt(np.square(w, dtype=np.float64).sum(axis=1, keepdims=True))
            w = (w / np.maximum(norm, 1e-12)).astype(np.float32)
        if c['pos_encoding'] == POS_ROPE:
            if kind in ('attention.wq', 'attention.bq'):
                w = unpermute(w, c['n_heads'])
            elif kind in ('attention.wk', 'attention.bk'):
                w = unpermute(w, c['n_kv_heads'])
            elif kind in QK_NORMS:  # one head's weights
                w = unpermute(w, 1)
        return w
    return Model(c, shapes, load, source_names, arch)


def hf_chat(folder, arch, vocab, tokenizer=None):
    """The chat_template and chat_tokens header fields, from the tokenizer files in the folder (and a
    --tokenizer tokenizer.json): see the module docstring."""
    path = os.path.join(folder, 'tokenizer_config.json')
    tc = read_json(path) if os.path.exists(path) else {}
    template = tc.get('chat_template')
    if isinstance(template, list):  # named templates
        template = next((t.get('template') for t in template if isinstance(t, dict) and t.get('name') == 'default'),
                        None)
    if template is None and os.path.exists(os.path.join(folder, 'chat_template.jinja')):
        with open(os.path.join(folder, 'chat_template.jinja'), encoding='utf-8') as f:
            template = f.read()
    if template is not None and not isinstance(template, str):
        fail(f'{path}: chat_template is neither a string nor a list with a "default" template')
    ids = {}
    for p in (os.path.join(folder, 'tokenizer.json'), tokenizer):
        if p and p.endswith('.json') and os.path.exists(p):
            for t in read_json(p).get('added_tokens') or []:
                ids.setdefault(t.get('content'), t.get('id'))
    for i, t in (tc.get('added_tokens_decoder') or {}).items():
        ids[t.get('content')] = int(i)
    return chat_fields(template, ids, arch, vocab, folder, 'the added tokens (tokenizer_config.json, tokenizer.json)')


def chat_fields(template, ids, arch, vocab, where, among):
    """A chat template (or None) and token text -> id -> the chat_template and chat_tokens header fields
    (see the module docstring); where: the template's source, among: where the ids come from, for messages."""
    def missing(kind):
        for name in CHAT_TOKENS[kind]:
            if not isinstance(ids.get(name), int):
                return f'{name}, which is not among {among}'
            if not 0 <= ids[name] < vocab:
                return f'{name}, whose id {ids[name]} is not below vocab_size {vocab}'
        return None

    if template is None:
        kind = CHAT_CHATML if arch in QWEN else CHAT_LLAMA3 if arch == 'LlamaForCausalLM' and vocab == 128256 \
            else CHAT_LLAMA2
        if kind != CHAT_LLAMA2 and missing(kind):
            print(f'note: no chat template in {where}, and no id for {missing(kind)}')
            kind = CHAT_LLAMA2
        if kind == CHAT_LLAMA2:
            print(f'note: no chat template in {where}: chat mode will use Llama 2\'s "[INST] ... [/INST]"')
    else:
        kind = CHAT_CHATML if '<|im_start|>' in template else CHAT_LLAMA3 if '<|start_header_id|>' in template \
            else CHAT_LLAMA2
        if missing(kind):
            fail(f'the chat template needs {missing(kind)}')
        if kind == CHAT_LLAMA2 and '[INST]' not in template:
            print('note: the chat template is neither ChatML, Llama 3 nor [INST]: chat mode will use Llama 2\'s '
                  '"[INST] ... [/INST]"')
    tokens = [ids[name] for name in CHAT_TOKENS[kind]]
    return {'chat_template': kind, 'chat_tokens': tokens + [-1] * (4 - len(tokens))}


def hf_bos(folder, bos_id, vocab, tokenizer=None):
    """The add_bos and bos_id header fields: whether the tokenizer puts a BOS before a text, as the
    tokenizers library does with add_special_tokens=True, and which id. The first of these that exists
    decides: tokenizer.json (in the folder, else a --tokenizer one): its post_processor adds a BOS if it
    is a TemplateProcessing whose single template starts with a special token (Llama 3, Mistral), and
    nothing if it is ByteLevel or absent (Qwen); tokenizer_config.json's add_bos_token (a null
    bos_token: none); a sentencepiece tokenizer.model: a BOS (Llama 2's LlamaTokenizer adds one);
    else config.json's bos_token_id (null: none)."""
    tj = next((p for p in (os.path.join(folder, 'tokenizer.json'), tokenizer)
               if p and p.endswith('.json') and os.path.exists(p)), None)
    path = os.path.join(folder, 'tokenizer_config.json')
    tc = read_json(path) if os.path.exists(path) else {}
    if tj:
        from tokenizer_bbpe import BbpeError, check_post_processor
        try:
            first = check_post_processor(tj, read_json(tj).get('post_processor'))
        except BbpeError as e:
            fail(str(e))
        add, why = first is not None, f"{tj}'s post_processor"
        if first is not None:
            bos_id = first
        if 'add_bos_token' in tc and bool(tc['add_bos_token']) != add:
            print(f'note: tokenizer_config.json says add_bos_token = {tc["add_bos_token"]}; following {why}, '
                  'as the tokenizers library does')
    elif 'add_bos_token' in tc or ('bos_token' in tc and tc['bos_token'] is None):
        add, why = bool(tc.get('add_bos_token', True)) and tc.get('bos_token', '') is not None, path
    elif os.path.exists(os.path.join(folder, 'tokenizer.model')) or (tokenizer and not tokenizer.endswith('.json')):
        add, why = True, 'a sentencepiece tokenizer (LlamaTokenizer adds BOS)'
    else:
        add, why = bos_id >= 0, 'config.json\'s bos_token_id (no tokenizer files)'
    if add and not 0 <= bos_id < vocab:
        fail(f'{why} adds a BOS, but its id {bos_id} is not a token (vocab_size {vocab})')
    print(f'BOS: {f"id {bos_id} put before every prompt" if add else "none added"} (from {why})')
    return {'add_bos': int(add), 'bos_id': bos_id}


def meta_style_model(args, sd, what):
    """A Meta-style state dict (Meta's or llama2.c's; already interleaved) and its arguments."""
    sd = {k.removeprefix('_orig_mod.').removesuffix('.weight'): v for k, v in sd.items()
          if not k.endswith(('freqs_cos', 'freqs_sin', 'rope.freqs'))}
    for k in sd:
        if k.endswith('.bias'):
            fail(f'{what}: tensor {k}: biases are not supported')
    if 'tok_embeddings' not in sd or 'layers.0.feed_forward.w1' not in sd:
        fail(f'{what}: missing tensor tok_embeddings or layers.0.feed_forward.w1')
    vocab, dim = sd['tok_embeddings'].shape
    heads = args['n_heads']
    out = sd.get('output')
    shared = out is None or (tuple(out.shape) == tuple(sd['tok_embeddings'].shape)
                             and bool((out == sd['tok_embeddings']).all()))
    if shared:
        sd.pop('output', None)
    scaling = {}
    if args.get('use_scaled_rope'):
        scaling = rope_scaling_fields({'rope_type': 'llama3', 'factor': args.get('rope_scaling_factor', 8.0),
                                       'low_freq_factor': 1.0, 'high_freq_factor': 4.0,
                                       'original_max_position_embeddings': 8192}, what)
    llama3 = vocab == 128256
    chat = dict(chat_template=CHAT_LLAMA3, chat_tokens=[128006, 128007, 128009, -1]) if llama3 else {}
    c = base_config(dim=dim, hidden_dim=sd['layers.0.feed_forward.w1'].shape[0], n_layers=args['n_layers'],
                    n_heads=heads, n_kv_heads=args.get('n_kv_heads') or heads, head_dim=dim // heads,
                    vocab_size=vocab, seq_len=args.get('max_seq_len') or (131072 if scaling else 4096),
                    bos_id=128000 if llama3 else 1, eos_id=128001 if llama3 else 2,
                    norm_eps=float(args.get('norm_eps', 1e-5)),
                    rope_theta=float(args.get('rope_theta', 10000.0)), shared_classifier=int(shared), **scaling,
                    **chat)
    if dim != args.get('dim', dim):
        fail(f'{what}: dim is {args["dim"]} but tok_embeddings has width {dim}')
    return Model(c, {k: tuple(v.shape) for k, v in sd.items()}, lambda k: sd[k].float().numpy())


def load_meta(folder):
    import glob
    with open(os.path.join(folder, 'params.json')) as f:
        params = json.load(f)
    paths = sorted(glob.glob(os.path.join(folder, 'consolidated.*.pth')))
    if not paths:
        fail(f'{folder}: no consolidated.*.pth')
    torch = need_torch('--meta')
    shards = [torch_load(p) for p in paths]
    sd = {}
    for k in shards[0]:  # tensor-parallel shards: concatenate along the split axis
        ts = [s[k] for s in shards]
        if len(ts) == 1 or ts[0].dim() == 1:
            sd[k] = ts[0]
        else:
            axis = 1 if k.endswith(('attention.wo.weight', 'feed_forward.w2.weight')) or \
                (k.startswith('tok_embeddings') and ts[0].shape[1] != params['dim']) else 0
            sd[k] = torch.cat(ts, dim=axis)
    return meta_style_model(params, sd, '--meta')


def load_checkpoint(path):
    need_torch('--checkpoint')
    ck = torch_load(path)
    if not isinstance(ck, dict) or 'model_args' not in ck or 'model' not in ck:
        fail(f'{path}: not a llama2.c checkpoint (a dict with model_args and model)')
    return meta_style_model(ck['model_args'], ck['model'], path)


def load_bin(path):
    """A llama2.c file (version 0 or 1) or a razor float32 file (version 1, or 2 without q/k/v biases, q/k
    norms or ALiBi): already in razor's layout, read with numpy. For re-writing one as bf16 or q8."""
    size = os.path.getsize(path)
    raw = np.memmap(path, dtype=np.uint8, mode='r')
    if size < 28:
        fail(f'{path}: {size} bytes, too small to be a model file')
    magic, version = struct.unpack('<Ii', raw[:8].tobytes())
    c = base_config()
    if magic == RAZOR_MAGIC:
        f = struct.unpack('<I12i2fi3fi', raw[:80].tobytes())
        c.update(zip(('dim', 'hidden_dim', 'n_layers', 'n_heads', 'n_kv_heads', 'head_dim', 'vocab_size', 'seq_len',
                      'bos_id', 'eos_id', 'shared_classifier', 'norm_eps', 'rope_theta', 'rope_scaling', 'rope_factor',
                      'rope_low_freq_factor', 'rope_high_freq_factor', 'rope_original_context'), f[2:]))
        extra = struct.unpack('<11i', raw[80:124].tobytes()) if version >= 2 else (0,) * 6 + (-1,) * 4 + (1,)
        if version not in (1, 2, 3) or any(extra[:5]):
            fail(f'{path}: only razor version 1 files and float32 version 2 and 3 files without biases, q/k norms '
                 'or ALiBi can be re-written')
        c.update(chat_template=extra[5], chat_tokens=list(extra[6:10]), add_bos=extra[10] if version == 3 else 1)
        kind, at, align = 'razor', HEADER_BYTES, 64 if version >= 2 else 1
    else:
        if magic == 0x616B3432:
            if version != 1:
                fail(f'{path}: llama2.c version {version} is not a float32 file')
            dims, at, kind = struct.unpack('<7i', raw[8:36].tobytes()), HEADER_BYTES, 'v1'
            shared = int(raw[36])
        else:
            dims, at, kind = struct.unpack('<7i', raw[:28].tobytes()), 28, 'v0'
            shared = int(dims[5] > 0)
        c.update(zip(('dim', 'hidden_dim', 'n_layers', 'n_heads', 'n_kv_heads', 'vocab_size', 'seq_len'), dims))
        c.update(vocab_size=abs(c['vocab_size']), shared_classifier=shared, head_dim=c['dim'] // max(c['n_heads'], 1))
        align = 1
    L, hd = c['n_layers'], c['head_dim']
    shapes = expected_shapes(c)
    order = ['tok_embeddings', *LAYER_TENSORS, 'norm']  # each per-layer tensor stacked over the layers
    if kind == 'v1':
        order = ['attention_norm', 'ffn_norm', 'norm', 'tok_embeddings',
                 *[k for k in LAYER_TENSORS if k not in ('attention_norm', 'ffn_norm')]]
    stacks = {}
    for name in order + (['freq_cis'] if kind == 'v0' else []) + ([] if c['shared_classifier'] else ['output']):
        at += -at % align
        shape = (c['seq_len'] * hd,) if name == 'freq_cis' else \
            (L, *shapes[f'layers.0.{name}']) if name in LAYER_TENSORS else shapes[name]
        n = math.prod(shape)
        if at + 4 * n > size:
            fail(f'{path}: truncated: {name} ends past the end of the file')
        stacks[name] = raw[at:at + 4 * n].view('<f4').reshape(shape)
        at += 4 * n
    if at != size:
        fail(f'{path}: {size - at} bytes after the last tensor')

    def load(name):
        if name.startswith('layers.'):
            i, rest = name.split('.', 2)[1:]
            return np.array(stacks[rest][int(i)], dtype=np.float32)
        return np.array(stacks[name], dtype=np.float32)
    found = {k: v for k, v in shapes.items() if k.split('.', 2)[-1] in stacks or k in stacks}
    return Model(c, found, load)


# ----------------------------------------------------------------------------------------------------
# GGUF (llama.cpp's format), read with numpy: see the GGUF section of the docstring

GGUF_SCALARS = {0: '<u1', 1: '<i1', 2: '<u2', 3: '<i2', 4: '<u4', 5: '<i4', 6: '<f4', 7: '<u1', 10: '<u8',
                11: '<i8', 12: '<f8'}  # value type -> numpy type (7: bool, one byte)
GGUF_BOOL, GGUF_STRING, GGUF_ARRAY = 7, 8, 9
GGUF_ALIGNMENT = 32  # without general.alignment
# ggml's tensor types (ggml.h), id -> name; the ones export.py reads: name -> (values per block, bytes per block)
GGML_NAMES = {0: 'F32', 1: 'F16', 2: 'Q4_0', 3: 'Q4_1', 6: 'Q5_0', 7: 'Q5_1', 8: 'Q8_0', 9: 'Q8_1', 10: 'Q2_K',
              11: 'Q3_K', 12: 'Q4_K', 13: 'Q5_K', 14: 'Q6_K', 15: 'Q8_K', 16: 'IQ2_XXS', 17: 'IQ2_XS', 18: 'IQ3_XXS',
              19: 'IQ1_S', 20: 'IQ4_NL', 21: 'IQ3_S', 22: 'IQ2_S', 23: 'IQ4_XS', 24: 'I8', 25: 'I16', 26: 'I32',
              27: 'I64', 28: 'F64', 29: 'IQ1_M', 30: 'BF16', 34: 'TQ1_0', 35: 'TQ2_0'}
GGML_BLOCKS = {'F32': (1, 4), 'F16': (1, 2), 'BF16': (1, 2), 'Q8_0': (32, 34), 'Q4_0': (32, 18), 'Q4_1': (32, 20),
               'Q5_0': (32, 22), 'Q5_1': (32, 24), 'Q4_K': (256, 144), 'Q5_K': (256, 176), 'Q6_K': (256, 210)}
Q8_EXACT = ('Q8_0', 'Q4_0', 'Q5_0')  # int8 values times one scale per 32: razor's q8 holds them as they are
CHUNK = 1 << 22  # values dequantized at a time
GGUF_ARCHS = {'llama': 'LlamaForCausalLM', 'qwen2': 'Qwen2ForCausalLM', 'qwen3': 'Qwen3ForCausalLM'}
GGUF_NAMES = {'attn_norm.weight': 'attention_norm', 'attn_q.weight': 'attention.wq', 'attn_k.weight': 'attention.wk',
              'attn_v.weight': 'attention.wv', 'attn_output.weight': 'attention.wo', 'ffn_norm.weight': 'ffn_norm',
              'ffn_gate.weight': 'feed_forward.w1', 'ffn_down.weight': 'feed_forward.w2',
              'ffn_up.weight': 'feed_forward.w3', 'attn_q.bias': 'attention.bq', 'attn_k.bias': 'attention.bk',
              'attn_v.bias': 'attention.bv', 'attn_q_norm.weight': 'attention.q_norm',
              'attn_k_norm.weight': 'attention.k_norm'}
QK_PERMUTED = ('attention.wq', 'attention.wk', 'attention.bq', 'attention.bk', 'attention.q_norm', 'attention.k_norm')
GGUF_MATRICES = ('tok_embeddings', 'output', 'attention.wq', 'attention.wk', 'attention.wv', 'attention.wo',
                 'feed_forward.w1', 'feed_forward.w2', 'feed_forward.w3')
# {arch}.* keys export.py knows; any other one is refused (it may describe something razor does not do)
GGUF_KEYS = ('context_length', 'embedding_length', 'block_count', 'feed_forward_length', 'attention.head_count',
             'attention.head_count_kv', 'attention.layer_norm_rms_epsilon', 'attention.key_length',
             'attention.value_length', 'rope.freq_base', 'rope.dimension_count', 'rope.scaling.type',
             'rope.scaling.factor', 'rope.scaling.original_context_length', 'rope.scaling.finetuned',
             'rope.scaling.attn_factor', 'vocab_size', 'expert_count', 'expert_used_count', 'attention.causal',
             'tensor_data_layout', 'pooling_type')
# tokenizer.ggml.pre -> (pre-tokenizer regex, or None for GPT-2's built into ByteLevel; NFC; ignore_merges;
# a BOS when tokenizer.ggml.add_bos_token is absent): what the families' tokenizer.json files say, and
# llama.cpp's llama-vocab.cpp for the BOS
GGUF_PRE = {'llama-bpe': ('LLAMA3', False, True, True), 'llama3': ('LLAMA3', False, True, True),
            'llama-v3': ('LLAMA3', False, True, True), 'qwen2': ('QWEN2', True, False, False),
            'gpt-2': (None, False, False, False)}
TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_USER, TOKEN_UNUSED = 1, 3, 4, 5  # tokenizer.ggml.token_type values


class GGUF:
    """One GGUF file: "GGUF", uint32 version (2 or 3), uint64 tensor and key/value counts, the key/values
    (a string key, a uint32 value type, the value), the tensor infos (a string name, uint32 n_dims,
    n_dims uint64 sizes, fastest-varying first, uint32 ggml type, uint64 offset), then, at the next
    multiple of the alignment, the data (each tensor at its offset from there). Strings are a uint64
    length and UTF-8 bytes; arrays a uint32 element type, a uint64 count and the elements (numbers or
    strings: llama.cpp refuses arrays of arrays, and so does this); all little-endian."""

    def __init__(self, path):
        self.path, self.size = path, os.path.getsize(path)
        self.raw = np.memmap(path, dtype=np.uint8, mode='r') if self.size else np.zeros(0, np.uint8)
        self.buf, self.at = memoryview(self.raw), 0
        magic = bytes(self.take(4, 'the magic'))
        if magic != b'GGUF':
            fail(f'{path}: not a GGUF file (it starts with {magic!r}, not b"GGUF")')
        version = self.number('<u4', 'the version')
        if version not in (2, 3):
            fail(f'{path}: GGUF version {version}' + (' (a big-endian file)' if version >= 1 << 16 else '') +
                 ' is not supported (only little-endian versions 2 and 3)')
        n_tensors, n_kv = self.number('<u8', 'the tensor count'), self.number('<u8', 'the key/value count')
        if n_tensors > self.size // 24 or n_kv > self.size // 12:  # each takes at least that many bytes
            fail(f'{path}: truncated or corrupt GGUF file ({n_tensors} tensors, {n_kv} keys in {self.size} bytes)')
        self.meta = {}
        for _ in range(n_kv):
            key = self.string('a metadata key')
            if key in self.meta:
                fail(f'{path}: metadata key {key} appears twice')
            self.meta[key] = self.value(self.number('<u4', f'the type of {key}'), key)
        align = self.meta.get('general.alignment', GGUF_ALIGNMENT)
        if type(align) is not int or align <= 0 or align & (align - 1):
            fail(f'{path}: general.alignment = {align!r} is not a power of two')
        infos = []
        for _ in range(n_tensors):
            name = self.string('a tensor name')
            n_dims = self.number('<u4', f'the dimensions of tensor {name}')
            if not 1 <= n_dims <= 4:
                fail(f'{path}: tensor {name} has {n_dims} dimensions (1 to 4)')
            ne = [self.number('<u8', f'the shape of tensor {name}') for _ in range(n_dims)]
            infos.append((name, ne, self.number('<u4', f'the type of tensor {name}'),
                          self.number('<u8', f'the offset of tensor {name}')))
        self.data = -(-self.at // align) * align
        self.tensors = {}  # name -> (type name, numpy shape, file offset, bytes)
        for name, ne, kind, offset in infos:
            if name in self.tensors:
                fail(f'{path}: tensor {name} appears twice')
            tname = GGML_NAMES.get(kind)
            if tname not in GGML_BLOCKS:
                fail(f'{path}: tensor {name} has ' + (f'type {tname}' if tname else f'unknown type {kind}') +
                     '; export.py reads ' + ', '.join(GGML_BLOCKS))
            block, nbytes = GGML_BLOCKS[tname]
            if ne[0] % block:
                fail(f'{path}: tensor {name} ({tname}) has rows of {ne[0]} values, not a multiple of {block}')
            if offset % align:
                fail(f'{path}: tensor {name} is at offset {offset}, not a multiple of the alignment {align}')
            n = math.prod(ne) // block * nbytes
            if self.data + offset + n > self.size:
                fail(f'{path}: truncated GGUF file (tensor {name} ends at byte {self.data + offset + n}, '
                     f'the file has {self.size})')
            self.tensors[name] = (tname, tuple(reversed(ne)), self.data + offset, n)
        spans = sorted((at, n, name) for name, (_, _, at, n) in self.tensors.items())
        for (at, n, name), (next_at, _, next_name) in zip(spans, spans[1:]):
            if at + n > next_at:
                fail(f'{path}: tensors {name} and {next_name} overlap (bytes {at} to {at + n} and {next_at} on)')

    def take(self, n, what):
        if self.at + n > self.size:
            fail(f'{self.path}: truncated GGUF file ({what} at byte {self.at} runs past its end, byte {self.size})')
        self.at += n
        return self.buf[self.at - n:self.at]

    def number(self, dtype, what):
        return np.frombuffer(self.take(int(dtype[2]), what), dtype=dtype)[0].item()

    def string(self, what):
        raw = bytes(self.take(self.number('<u8', what), what))
        try:
            return raw.decode('utf-8')
        except UnicodeDecodeError:
            fail(f'{self.path}: {what} is not UTF-8 ({raw[:40]!r})')

    def value(self, kind, key):
        if kind in GGUF_SCALARS:
            v = self.number(GGUF_SCALARS[kind], key)
            return bool(v) if kind == GGUF_BOOL else v
        if kind == GGUF_STRING:
            return self.string(key)
        if kind != GGUF_ARRAY:
            fail(f'{self.path}: metadata {key} has unknown value type {kind}')
        kind, n = self.number('<u4', key), self.number('<u8', key)
        if kind in GGUF_SCALARS:  # numbers as a numpy array (bools as bools)
            dtype = np.dtype(GGUF_SCALARS[kind])
            if n * dtype.itemsize > self.size:
                fail(f'{self.path}: truncated GGUF file (array {key} of {n} values)')
            a = np.frombuffer(self.take(n * dtype.itemsize, key), dtype=dtype).copy()
            return a.astype(bool) if kind == GGUF_BOOL else a
        if kind == GGUF_ARRAY:
            fail(f'{self.path}: metadata {key} is an array of arrays, which llama.cpp does not read either')
        if kind != GGUF_STRING:
            fail(f'{self.path}: metadata {key} is an array of unknown value type {kind}')
        if n > self.size // 8:
            fail(f'{self.path}: truncated GGUF file (array {key} of {n} values)')
        return [self.string(key) for _ in range(n)]

    def load(self, name):
        """A tensor as float32, in numpy's shape (the GGUF sizes reversed), dequantized as ggml's
        reference dequantize_row_* functions do (float32 arithmetic, in their order), CHUNK values at a
        time; refused if a value is inf or NaN."""
        tname, shape, at, n = self.tensors[name]
        block, nbytes = GGML_BLOCKS[tname]
        out = np.empty(math.prod(shape), np.float32)
        step = max(1, CHUNK // block) * nbytes  # bytes at a time
        for i in range(0, n, step):
            y = dequantize(tname, self.raw[at + i:at + min(i + step, n)])
            if not np.isfinite(y).all():
                fail(f'{self.path}: tensor {name} ({tname}) holds inf or NaN values')
            out[i // nbytes * block:i // nbytes * block + y.size] = y
        return out.reshape(shape)

    def load_q8(self, name):
        """A Q8_0, Q4_0 or Q5_0 tensor as razor's q8 holds it: (int8 values in numpy's shape, float32
        scales, one per 32 values of a row); value = int8 * scale exactly, as ggml's dequantizer gives it."""
        tname, shape, at, n = self.tensors[name]
        q, d = block_ints(tname, self.raw[at:at + n])
        if not np.isfinite(d).all():
            fail(f'{self.path}: tensor {name} ({tname}) has an inf or NaN scale')
        return q.reshape(shape), d.reshape(*shape[:-1], shape[-1] // Q8_GROUP)


def fp16(blocks, at):
    """The float16 at byte `at` of each block (rows of uint8), as float32 (exact, as GGML_FP16_TO_FP32)."""
    return np.ascontiguousarray(blocks[:, at:at + 2]).view('<f2').astype(np.float32).reshape(-1, 1)


def quants32(tname, b):
    """Q4_0, Q4_1, Q5_0, Q5_1 blocks (rows of bytes) -> their 32 unsigned 4- or 5-bit values each. qs, the
    last 16 bytes, has value j in the low nibble of byte j and j + 16 in the high one; Q5's qh, the uint32
    before it, has the fifth bit of value j as bit j."""
    qs = b[:, -16:]
    q = np.concatenate([qs & 0xF, qs >> 4], axis=1)
    if tname.startswith('Q5'):
        qh = np.ascontiguousarray(b[:, -20:-16]).view('<u4')
        q |= ((qh >> np.arange(32, dtype=np.uint32)) & 1).astype(np.uint8) << 4
    return q


def block_ints(tname, raw):
    """Q8_0, Q4_0, Q5_0 blocks of 32 -> (int8 values (blocks, 32), float32 scales d (blocks, 1)): y = q * d,
    d the block's first two bytes; Q8_0's q the int8s after it, Q4_0's the nibble - 8, Q5_0's the five bits - 16."""
    b = np.asarray(raw).reshape(-1, GGML_BLOCKS[tname][1])
    if tname == 'Q8_0':
        return b[:, 2:].view(np.int8), fp16(b, 0)
    return quants32(tname, b).astype(np.int8) - (8 if tname == 'Q4_0' else 16), fp16(b, 0)


def k_scales(s):
    """Q4_K's 12 bytes of 6-bit scales and mins per block -> (scales, mins), (blocks, 8) each: ggml's
    get_scale_min_k4: sub-block j < 4 in the low 6 bits of bytes j and j + 4; j >= 4 in the low and high
    nibbles of byte j + 4, their top two bits in the top bits of bytes j - 4 and j."""
    sc, m = np.empty((len(s), 8), np.uint8), np.empty((len(s), 8), np.uint8)
    sc[:, :4], m[:, :4] = s[:, 0:4] & 63, s[:, 4:8] & 63
    sc[:, 4:] = (s[:, 8:12] & 0xF) | ((s[:, 0:4] >> 6) << 4)
    m[:, 4:] = (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)
    return sc, m


def dequantize(tname, raw):
    """Bytes of one tensor of ggml type tname -> its float32 values, in order."""
    raw = np.asarray(raw)
    if tname == 'F32':
        return raw.view('<f4').astype(np.float32)
    if tname == 'F16':
        return raw.view('<f2').astype(np.float32)
    if tname == 'BF16':
        return (raw.view('<u2').astype(np.uint32) << 16).view(np.float32)
    if tname in Q8_EXACT:
        q, d = block_ints(tname, raw)
        return (q.astype(np.float32) * d).ravel()
    b = raw.reshape(-1, GGML_BLOCKS[tname][1])
    if tname in ('Q4_1', 'Q5_1'):  # d, m, (Q5_1: qh), qs: y = q * d + m (q * d exact: one rounding)
        return (quants32(tname, b).astype(np.float32) * fp16(b, 0) + fp16(b, 2)).ravel()
    if tname in ('Q4_K', 'Q5_K'):  # d, dmin, scales[12], (Q5_K: qh[32]), qs[128]; sub-block j of 32 values:
        sc, m = k_scales(b[:, 4:16])  # y = (d * sc_j) * q - dmin * m_j
        d1, m1 = fp16(b, 0) * sc.astype(np.float32), fp16(b, 2) * m.astype(np.float32)  # exact products
        qs = b[:, -128:].reshape(-1, 4, 1, 32)  # 32 bytes per 64 values: sub-block 2i low nibbles, 2i + 1 high
        q = np.concatenate([qs & 0xF, qs >> 4], axis=2).reshape(-1, 8, 32)
        if tname == 'Q5_K':  # the fifth bit of value l of sub-block j: bit j of qh[l]
            q = q | (((b[:, 16:48].reshape(-1, 1, 32) >> np.arange(8, dtype=np.uint8).reshape(1, 8, 1)) & 1) << 4)
        return (d1[:, :, None] * q.astype(np.float32) - m1[:, :, None]).ravel()  # d1 * q exact: one rounding
    if tname == 'Q6_K':  # ql[128], qh[64], scales[16] (int8), d; 16 values per scale: y = (d * sc) * (q - 32)
        ql, qh = b[:, :128].reshape(-1, 2, 1, 64), b[:, 128:192].reshape(-1, 2, 1, 32)
        low = np.concatenate([ql & 0xF, ql >> 4], axis=2).reshape(-1, 2, 4, 32)  # value 32k + l of each half
        high = (qh >> np.array([0, 2, 4, 6], np.uint8).reshape(1, 1, 4, 1)) & 3
        q = (low | (high << 4)).astype(np.float32) - 32
        scale = fp16(b, 208) * b[:, 192:208].view(np.int8).astype(np.float32)  # exact
        return (np.repeat(scale, 16, axis=1).reshape(q.shape) * q).ravel()
    raise AssertionError(tname)


def gguf_config_value(g, key, kind, default=None):
    """A metadata value of a kind (int, float, str or bool), or default if absent (None: refused)."""
    if key not in g.meta:
        if default is None:
            fail(f'{g.path}: missing metadata key {key}')
        return default
    v = g.meta[key]
    ok = {int: type(v) is int, float: type(v) in (int, float), str: type(v) is str, bool: type(v) is bool}[kind]
    if not ok:
        what = 'an array (one value per layer?)' if isinstance(v, (list, np.ndarray)) else f'{v!r}'
        fail(f'{g.path}: metadata {key} is {what}, not a single {kind.__name__}')
    return kind(v)


def gguf_rope_freqs(path, factors, head_dim, theta):
    """Llama 3's rope scaling, which llama.cpp's converter stores as the tensor rope_freqs (one factor per
    frequency, which divides it) -> razor's rope_scaling fields. The converter computes them with
    original_max_position_embeddings 8192 (its default) and the config's factor, low_freq_factor and
    high_freq_factor: factor is the largest, and two factors of the smooth band between fix the other
    two (only their ratios to 8192 matter); with fewer, the usual 1 and 4. Refused unless the fields
    give back every factor."""
    f = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    r = np.asarray(factors, dtype=np.float64).ravel()
    if r.shape != f.shape or not np.all(np.isfinite(r)) or r.min() <= 0:
        fail(f'{path}: tensor rope_freqs.weight has {r.size} values, not {f.size} positive ones (head_dim / 2)')
    factor, old, wavelen = float(np.float32(r.max())), 8192, 2 * np.pi / f
    lo, hi = 1.0, 4.0
    smooth = (r > 1 + 1e-6) & (r < factor * (1 - 1e-6))
    if smooth.sum() >= 2 and factor > 1:
        s = (1 / r[smooth] - 1 / factor) / (1 - 1 / factor)  # r = 1 / ((1 - s) / factor + s)
        # s = (old / wavelen - lo) / (hi - lo): s * hi + (1 - s) * lo = old / wavelen
        (hi, lo), *_ = np.linalg.lstsq(np.stack([s, 1 - s], axis=1), old / wavelen[smooth], rcond=None)
        lo, hi = float(f'{lo:.6g}'), float(f'{hi:.6g}')
    want = np.ones_like(f)
    if hi > lo > 0:
        want = np.where(wavelen > old / lo, factor, want)
        band = (wavelen >= old / hi) & (wavelen <= old / lo)
        s = (old / wavelen - lo) / (hi - lo)
        want = np.where(band, 1 / ((1 - s) / factor + s), want)
    if not (hi > lo > 0) or np.max(np.abs(want - r) / r) > 1e-5:
        fail(f'{path}: tensor rope_freqs.weight is not Llama 3 rope scaling that razor can express '
             f'(factors {r.min():.4g} to {r.max():.4g})')
    return {'rope_scaling': 1, 'rope_factor': factor, 'rope_low_freq_factor': lo, 'rope_high_freq_factor': hi,
            'rope_original_context': old}


def gguf_check_keys(g, arch):
    """Refuses the {arch}.* keys that describe what razor does not do, and any it does not know."""
    key = lambda k: f'{arch}.{k}'
    for k in g.meta:
        if k.startswith(arch + '.') and k[len(arch) + 1:] not in GGUF_KEYS:
            fail(f'{g.path}: metadata key {k} is not one export.py knows for {arch} (it may describe something '
                 'razor does not do)')
    for k in ('expert_count', 'expert_used_count', 'pooling_type'):
        if g.meta.get(key(k)):
            fail(f'{g.path}: {key(k)} = {g.meta[key(k)]} is not supported' +
                 (' (mixture of experts)' if k.startswith('expert') else ''))
    if not g.meta.get(key('attention.causal'), True):
        fail(f'{g.path}: {key("attention.causal")} = false is not supported')
    kind = g.meta.get(key('rope.scaling.type'), 'none')
    if kind != 'none':
        fail(f'{g.path}: {key("rope.scaling.type")} = {kind!r} is not supported (only none, or Llama 3\'s '
             'rope_freqs tensor)')
    for k in ('rope.scaling.factor', 'rope.scaling.attn_factor'):
        if g.meta.get(key(k), 1.0) not in (0.0, 1.0):
            fail(f'{g.path}: {key(k)} = {g.meta[key(k)]} is not supported')



def load_gguf(path):
    """A GGUF file -> (Model, tokenizer file bytes, a description of them, the default --dtype, why)."""
    g = GGUF(path)
    arch = gguf_config_value(g, 'general.architecture', str)
    if arch not in GGUF_ARCHS:
        fail(f'{path}: general.architecture = {arch!r} is not supported (only {", ".join(GGUF_ARCHS)})')
    gguf_check_keys(g, arch)
    c = gguf_config(g, arch)
    to_meta = gguf_tensor_names(g, c, arch)
    from_meta = {m: t for t, m in to_meta.items() if t in g.tensors}
    shapes = {m: g.tensors[t][1] for m, t in from_meta.items()}
    neox = arch != 'llama'  # llama.cpp's converter permutes llama's q/k rows to interleaved pairs, not these

    def load(name):
        kind = name.split('.', 2)[2] if name.startswith('layers.') else name
        t = from_meta[name]
        exact = c['weight_type'] == Q8 and g.tensors[t][0] in Q8_EXACT and kind in GGUF_MATRICES
        w = g.load_q8(t) if exact else g.load(t)
        if neox and kind in QK_PERMUTED:  # rows (and their q8 scales) into razor's interleaved pairs
            n = 1 if kind in QK_NORMS else c['n_heads'] if kind in ('attention.wq', 'attention.bq') else c['n_kv_heads']
            w = tuple(unpermute(a, n) for a in w) if exact else unpermute(w, n)
        return w
    model = Model(c, shapes, load, {m: t for t, m in to_meta.items()}, GGUF_ARCHS[arch])
    model.check()
    dtype, why = gguf_dtype({g.tensors[t][0] for m, t in from_meta.items() if m.split('.', 2)[-1] in GGUF_MATRICES})
    tok, what = gguf_tokenizer(g, c)
    c.update(gguf_chat(g, model.family, c['vocab_size']))
    return model, tok, what, dtype, why


def gguf_config(g, arch):
    """The razor config from the {arch}.* keys, token_embd's rows and rope_freqs, each value checked."""
    path = g.path
    get = lambda k, kind=int, default=None: gguf_config_value(g, f'{arch}.{k}', kind, default)

    def positive(k, kind=int, default=None):  # and within the header's int32 or float32 field
        v = get(k, kind, default)
        if not 0 < v < (2 ** 31 if kind is int else float(np.finfo(np.float32).max)):  # NaN: refused too
            fail(f'{path}: {arch}.{k} = {v} is not a positive {"int32" if kind is int else "finite float32"}')
        return v
    dim, heads, n_layers = positive('embedding_length'), positive('attention.head_count'), positive('block_count')
    if n_layers > len(g.tensors):
        fail(f'{path}: {arch}.block_count = {n_layers} is more layers than the file\'s {len(g.tensors)} tensors hold')
    head_dim = get('attention.key_length', int, dim // heads)
    if get('attention.value_length', int, head_dim) != head_dim:
        fail(f'{path}: {arch}.attention.value_length {get("attention.value_length")} differs from the key length '
             f'{head_dim}')
    if get('rope.dimension_count', int, head_dim) != head_dim:
        fail(f'{path}: {arch}.rope.dimension_count = {get("rope.dimension_count")} is not head_dim {head_dim} '
             '(partial rotary is not supported)')
    if 'token_embd.weight' not in g.tensors:
        fail(f'{path}: missing tensor token_embd.weight')
    vocab = g.tensors['token_embd.weight'][1][0]
    if get('vocab_size', int, vocab) != vocab:
        fail(f'{path}: {arch}.vocab_size = {get("vocab_size")}, but token_embd.weight has {vocab} rows')
    theta = positive('rope.freq_base', float, 10000.0)
    scaling = {}
    if 'rope_freqs.weight' in g.tensors:
        if arch != 'llama':
            fail(f'{path}: tensor rope_freqs.weight (rope scaling) in a {arch} file is not supported')
        scaling = gguf_rope_freqs(path, g.load('rope_freqs.weight'), head_dim, theta)
    return base_config(dim=dim, hidden_dim=positive('feed_forward_length'), n_layers=n_layers, n_heads=heads,
                       n_kv_heads=positive('attention.head_count_kv', int, heads), head_dim=head_dim,
                       vocab_size=vocab, seq_len=positive('context_length'),
                       norm_eps=positive('attention.layer_norm_rms_epsilon', float), rope_theta=theta,
                       qkv_bias=int(arch == 'qwen2'), qk_norm=int(arch == 'qwen3'),
                       shared_classifier=int('output.weight' not in g.tensors), **scaling)


def gguf_tensor_names(g, c, arch):
    """GGUF tensor name -> Meta-style name, for each tensor the config has; refuses a tensor not among them."""
    to_meta = {'token_embd.weight': 'tok_embeddings', 'output_norm.weight': 'norm', 'output.weight': 'output'}
    per_layer = [(k, m) for k, m in GGUF_NAMES.items() if m in layer_tensors(c)]
    for i in range(c['n_layers']):
        to_meta.update((f'blk.{i}.{k}', f'layers.{i}.{m}') for k, m in per_layer)
    for t in g.tensors:
        if t not in to_meta and t != 'rope_freqs.weight' and not t.endswith('.attn_rot_embd'):
            fail(f'{g.path}: unexpected tensor {t} (not a {arch} tensor razor runs, or more layers than '
                 f'{arch}.block_count)')
    return to_meta


def gguf_dtype(types):
    """The default --dtype for matrices of these ggml types, the smallest that holds their values exactly,
    and why."""
    names = '/'.join(sorted(types))
    if types <= set(Q8_EXACT):
        return 'q8', f'the matrices are {names}: razor\'s q8 holds their values exactly'
    if types == {'BF16'}:
        return 'bf16', 'the matrices are BF16'
    return 'f32', (f'the matrices are {names}: float32 holds their values exactly; --dtype q8 or bf16 for a '
                   'smaller file, rounded')


def gguf_tokenizer(g, c):
    """The GGUF's tokenizer -> (the tokenizer file's bytes, a description); sets c's bos_id, eos_id and
    add_bos. "llama": a sentencepiece vocabulary (pieces, scores), written as llama2.c's tokenizer.bin as
    sentencepiece_to_bin does; "gpt2": a byte-level BPE (gguf_bpe)."""
    kind = gguf_config_value(g, 'tokenizer.ggml.model', str)
    tokens = g.meta.get('tokenizer.ggml.tokens')
    if not isinstance(tokens, list) or not tokens or not all(type(t) is str for t in tokens):
        fail(f'{g.path}: missing metadata key tokenizer.ggml.tokens (an array of strings)')
    n = len(tokens)
    if n != c['vocab_size']:
        fail(f'{g.path}: tokenizer.ggml.tokens has {n} tokens, but token_embd.weight has {c["vocab_size"]} rows')
    arrays = {}
    for key, default, kinds, what in (('token_type', TOKEN_NORMAL, 'iu', 'integers'), ('scores', 0.0, 'f', 'floats')):
        a = g.meta.get(f'tokenizer.ggml.{key}', np.full(n, default))
        if not isinstance(a, np.ndarray) or a.shape != (n,) or a.dtype.kind not in kinds:
            fail(f'{g.path}: tokenizer.ggml.{key} is not an array of {n} {what}')
        arrays[key] = a
    ids = {k: gguf_config_value(g, f'tokenizer.ggml.{k}_token_id', int, -1) for k in ('bos', 'eos')}
    for k, i in ids.items():
        if not -1 <= i < n:
            fail(f'{g.path}: tokenizer.ggml.{k}_token_id = {i} is not a token (there are {n})')
    bos, eos = ids['bos'], ids['eos']
    if kind == 'llama':
        if not gguf_config_value(g, 'tokenizer.ggml.add_space_prefix', bool, True):
            fail(f'{g.path}: tokenizer.ggml.add_space_prefix is false, and razor\'s tokenizer.bin encoder always '
                 'adds a dummy-prefix space, so razor would tokenize differently: not exported')
        pieces = [(float(s), ('\n<s>\n' if i == bos else '\n</s>\n' if i == eos else t.replace('\u2581', ' '))
                   .encode('utf-8')) for i, (t, s) in enumerate(zip(tokens, arrays['scores']))]
        data, what, add, family = tokenizer_bin_bytes(pieces), f'sentencepiece, {n} tokens', True, 'llama'
    elif kind == 'gpt2':
        pre = gguf_config_value(g, 'tokenizer.ggml.pre', str)
        data, what, add = gguf_bpe(g, pre, tokens, arrays['token_type'], bos, eos)
        family = f'gpt2 {pre}'
    else:
        fail(f'{g.path}: tokenizer.ggml.model = {kind!r} is not supported (only "llama", sentencepiece, and '
             '"gpt2", byte-level BPE)')
    add = gguf_config_value(g, 'tokenizer.ggml.add_bos_token', bool, add)
    why = 'tokenizer.ggml.add_bos_token' if 'tokenizer.ggml.add_bos_token' in g.meta else \
        f'llama.cpp\'s default for a {family} tokenizer'
    if add and bos < 0:
        fail(f'{g.path}: the tokenizer adds a BOS ({why}), but there is no tokenizer.ggml.bos_token_id')
    print(f'BOS: {f"id {bos} put before every prompt" if add else "none added"} (from {why})')
    c.update(bos_id=bos, eos_id=eos, add_bos=int(add))
    return data, what


def gguf_bpe(g, pre, tokens, types, bos, eos):
    """A "gpt2" vocabulary -> (RZTK file bytes, a description, whether llama.cpp adds a BOS by default), by
    way of the tokenizer.json it stands for, given to tokenizer_bbpe.py: llama.cpp's converter writes the
    vocabulary's byte-level strings as normal tokens, the added tokens as control (special) or user-defined
    ones, and [PAD] ids as unused; tokenizer.ggml.pre names the pre-tokenizer (GGUF_PRE)."""
    if pre not in GGUF_PRE:
        fail(f'{g.path}: tokenizer.ggml.pre = {pre!r} is not supported (only {", ".join(GGUF_PRE)})')
    merges = g.meta.get('tokenizer.ggml.merges')
    if not isinstance(merges, list) or not all(type(m) is str for m in merges):
        fail(f'{g.path}: missing metadata key tokenizer.ggml.merges (an array of strings)')
    regex, nfc, ignore_merges, add = GGUF_PRE[pre]
    vocab, added = {}, []
    for i, (t, kind) in enumerate(zip(tokens, types.tolist())):
        if kind == TOKEN_NORMAL:
            vocab.setdefault(t, i)
        elif kind in (TOKEN_CONTROL, TOKEN_USER):
            added.append({'id': i, 'content': t, 'special': kind == TOKEN_CONTROL, 'normalized': False})
        elif kind != TOKEN_UNUSED:
            fail(f'{g.path}: tokenizer.ggml.token_type[{i}] = {kind} in a gpt2 (byte-level BPE) vocabulary '
                 '(only normal, control, user-defined and unused tokens)')
    import tempfile
    import tokenizer_bbpe
    byte_level = {'type': 'ByteLevel', 'add_prefix_space': False, 'use_regex': regex is None}
    split = {'type': 'Split', 'pattern': {'Regex': getattr(tokenizer_bbpe, regex or 'GPT2')},
             'behavior': 'Isolated', 'invert': False}
    tj = {'normalizer': {'type': 'NFC'} if nfc else None, 'added_tokens': added,
          'pre_tokenizer': {'type': 'Sequence', 'pretokenizers': [split, byte_level]} if regex else byte_level,
          'model': {'type': 'BPE', 'vocab': vocab, 'merges': merges, 'ignore_merges': ignore_merges}}
    with tempfile.TemporaryDirectory() as tmp:
        src, out = os.path.join(tmp, 'tokenizer.json'), os.path.join(tmp, 'tokenizer.bin')
        with open(src, 'w', encoding='utf-8') as f:
            json.dump(tj, f)
        try:
            info = tokenizer_bbpe.export_bbpe(src, out, bos=bos, eos=eos)
        except tokenizer_bbpe.BbpeError as e:
            fail(str(e).replace(src, f'{g.path}: its tokenizer ({pre})'))
        with open(out, 'rb') as f:
            return f.read(), f'byte-level BPE ({pre}), {info["vocab_size"]} tokens', add


def gguf_chat(g, arch, vocab):
    """The chat_template and chat_tokens header fields, from tokenizer.chat_template, as hf_chat."""
    template = g.meta.get('tokenizer.chat_template')
    if template is not None and type(template) is not str:
        fail(f'{g.path}: tokenizer.chat_template is not a string')
    ids = {}
    for i, t in enumerate(g.meta['tokenizer.ggml.tokens']):
        ids.setdefault(t, i)
    return chat_fields(template, ids, arch, vocab, g.path, 'the tokens (tokenizer.ggml.tokens)')


# ----------------------------------------------------------------------------------------------------
# writing

def legacy_check(c):
    if c['weight_type'] != F32:
        fail('--legacy: version 0 files hold float32 only (--dtype f32)')
    for k, what in (('qkv_bias', 'q/k/v biases (Qwen2)'), ('qk_norm', 'q/k norms (Qwen3)')):
        if c[k]:
            fail(f'--legacy: {what} cannot be expressed in a version 0 file')
    if c['pos_encoding'] != POS_ROPE:
        fail('--legacy: ALiBi cannot be expressed in a version 0 file')
    if c['head_dim'] != c['dim'] // c['n_heads'] or c['dim'] % c['n_heads']:
        fail(f'--legacy: head_dim = {c["head_dim"]} is not dim / n_heads = {c["dim"]} / {c["n_heads"]}')
    if c['rope_theta'] != 10000.0:
        fail(f'--legacy: rope_theta = {c["rope_theta"]:g}; version 0 files assume 10000')
    if c['rope_scaling']:
        fail('--legacy: rope_scaling (llama3) cannot be expressed in a version 0 file')
    if np.float32(c['norm_eps']) != np.float32(1e-5):
        fail(f'--legacy: norm_eps = {c["norm_eps"]:g}; version 0 files assume 1e-5')
    if not c['add_bos']:
        fail('--legacy: this tokenizer adds no BOS, and a version 0 file cannot say so (BOS is always put first)')
    if (c['bos_id'], c['eos_id']) != (1, 2):
        print(f'warning: bos/eos ids {c["bos_id"]}/{c["eos_id"]} are not stored in a version 0 file (1/2 assumed)')


def q8_check(c):
    """q8 groups Q8_GROUP values of a row: every matrix's width must be a multiple of it."""
    for what, width in (('token_embedding, wq, wk, wv, w1, w3 and wcls', c['dim']),
                        ('wo', c['n_heads'] * c['head_dim']), ('w2', c['hidden_dim'])):
        if width % Q8_GROUP:
            fail(f'--dtype q8: the rows of {what} have width {width}, not a multiple of {Q8_GROUP}')


def razor_header(c):
    h = struct.pack('<I12i2fi3fi', RAZOR_MAGIC, RAZOR_VERSION, c['dim'], c['hidden_dim'], c['n_layers'],
                    c['n_heads'], c['n_kv_heads'], c['head_dim'], c['vocab_size'], c['seq_len'], c['bos_id'],
                    c['eos_id'], c['shared_classifier'], c['norm_eps'], c['rope_theta'], c['rope_scaling'],
                    c['rope_factor'], c['rope_low_freq_factor'], c['rope_high_freq_factor'],
                    c['rope_original_context'])
    h += struct.pack('<11i', c['weight_type'], Q8_GROUP if c['weight_type'] == Q8 else 0, c['pos_encoding'],
                     c['qkv_bias'], c['qk_norm'], c['chat_template'], *c['chat_tokens'], c['add_bos'])
    return h + bytes(HEADER_BYTES - len(h))


def legacy_header(c):
    vocab = c['vocab_size'] if c['shared_classifier'] else -c['vocab_size']
    return struct.pack('<7i', c['dim'], c['hidden_dim'], c['n_layers'], c['n_heads'], c['n_kv_heads'],
                       vocab, c['seq_len'])


def to_bf16(w):
    """float32 -> bfloat16 bits, rounded to nearest even; inf and NaN stay so (as razor's -w bf16)."""
    u = np.ascontiguousarray(w, dtype='<f4').view('<u4')
    special = (u & 0x7F800000) == 0x7F800000
    rounded = (u + np.uint32(0x7FFF) + ((u >> 16) & 1)) >> 16  # wraps only for NaN, replaced below
    kept = (u >> 16) | np.where(u & 0xFFFF, 0x40, 0).astype('<u4')
    return np.where(special, kept, rounded).astype('<u2')


def to_q8(w):
    """(rows, cols) float32 -> int8 (rows, cols), float32 scales (rows, cols / Q8_GROUP): w ~= q * scale."""
    g = w.reshape(-1, Q8_GROUP).astype(np.float64)
    scale = (np.abs(g).max(axis=1) / 127).astype('<f4')
    if not np.isfinite(scale).all():
        fail('--dtype q8: a weight is inf or NaN')
    q = np.rint(g / np.where(scale == 0, 1, scale)[:, None].astype(np.float64))
    return np.clip(q, -127, 127).astype(np.int8), scale


def write_tensor(f, at, parts, shape, wtype, align):
    """Writes a tensor stacked from parts (functions giving arrays of `shape`, or, for wtype Q8, q8 as it is: a
    pair of int8 values and float32 scales, one per Q8_GROUP of a row) at the first multiple of align from file
    offset at, its matrices as wtype (F32, BF16, Q8: the int8 values, then at the next multiple of align
    the scales). Returns the offset after it."""
    n, cols = math.prod(shape), shape[-1]
    start = -(-at // align) * align
    scales = -(-(start + n * len(parts)) // align) * align
    step = max(1, (1 << 22) // cols)  # rows at a time
    for k, part in enumerate(parts):
        w = part()
        if isinstance(w, tuple):  # q8 values and scales, written as they are (wtype is Q8)
            q8 = w[0].reshape(-1, cols), np.asarray(w[1], dtype='<f4').reshape(-1, cols // Q8_GROUP)
            w = q8[0]
        else:
            q8, w = None, np.asarray(w, dtype=np.float32).reshape(-1, cols)
        for r in range(0, w.shape[0], step):
            i = k * n + r * cols  # element index in the stack
            if wtype == Q8:
                q, s = (q8[0][r:r + step], q8[1][r:r + step]) if q8 else to_q8(w[r:r + step])
                f.seek(start + i)
                f.write(q.tobytes())
                f.seek(scales + i // Q8_GROUP * 4)
                f.write(s.tobytes())
            else:
                b = to_bf16(w[r:r + step]) if wtype == BF16 else w[r:r + step].astype('<f4')
                f.seek(start + i * b.itemsize)
                f.write(b.tobytes())
    return scales + n * len(parts) // Q8_GROUP * 4 if wtype == Q8 else start + n * len(parts) * (2 if wtype else 4)


def write(model, out, legacy=False):
    c = model.config
    layers = lambda k: [f'layers.{i}.{k}' for i in range(c['n_layers'])]
    order = [('token_embedding', ['tok_embeddings']), ('rms_att', layers('attention_norm')),
             ('wq', layers('attention.wq')), ('wk', layers('attention.wk')), ('wv', layers('attention.wv')),
             ('wo', layers('attention.wo')), ('rms_ffn', layers('ffn_norm')), ('w1', layers('feed_forward.w1')),
             ('w2', layers('feed_forward.w2')), ('w3', layers('feed_forward.w3')), ('rms_final', ['norm'])]
    if c['qkv_bias']:
        order += [('bq', layers('attention.bq')), ('bk', layers('attention.bk')), ('bv', layers('attention.bv'))]
    if c['qk_norm']:
        order += [('q_norm', layers('attention.q_norm')), ('k_norm', layers('attention.k_norm'))]
    if not c['shared_classifier']:
        order.append(('wcls', ['output']))
    shapes = expected_shapes(c)
    tensors = [(label, [lambda n=n: model.load(n) for n in names], shapes[names[0]]) for label, names in order]
    if legacy:  # version 0 stores the RoPE table (razor and run.c skip it), before wcls
        hd = c['head_dim']
        freqs = np.outer(np.arange(c['seq_len']), 1.0 / 10000.0 ** (np.arange(0, hd, 2) / hd))
        at = 11
        tensors[at:at] = [('freq_cis_real', [lambda: np.cos(freqs)], freqs.shape),
                          ('freq_cis_imag', [lambda: np.sin(freqs)], freqs.shape)]
    matrices = ('token_embedding', 'wq', 'wk', 'wv', 'wo', 'w1', 'w2', 'w3', 'wcls')
    wtype = F32 if legacy else c['weight_type']
    total = 4 * sum(len(parts) * math.prod(shape) for _, parts, shape in tensors)
    tmp = out + '.tmp'
    try:
        with open(tmp, 'wb') as f:
            header = legacy_header(c) if legacy else razor_header(c)
            f.write(header)
            at = len(header)
            for label, parts, shape in tensors:
                if total > BIG:
                    print(f'writing {label} {(len(parts), *shape) if len(parts) > 1 else shape}', flush=True)
                at = write_tensor(f, at, parts, shape, wtype if label in matrices else F32, 1 if legacy else ALIGN)
            f.truncate(at)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    dtype = [k for k, v in DTYPES.items() if v == wtype][0]
    kind = 'llama2.c version 0' if legacy else f'razor v{RAZOR_VERSION}, {dtype}'
    extras = [x for x, on in (('alibi', c['pos_encoding'] == POS_ALIBI), ('qkv_bias', c['qkv_bias']),
                              ('qk_norm', c['qk_norm'])) if on]
    if not legacy:
        extras.append(f'chat={("llama2", "llama3", "chatml")[c["chat_template"]]}')
    print(f'wrote {out} ({kind}, {os.path.getsize(out) / 1e6:.1f} MB): '
          + ', '.join([f'{k}={c[k]}' for k in ('dim', 'hidden_dim', 'n_layers', 'n_heads', 'n_kv_heads',
                                               'head_dim', 'vocab_size', 'seq_len', 'shared_classifier')] + extras))


def tokenizer_bin_bytes(pieces):
    """llama2.c's tokenizer.bin: uint32 max piece length, then for each id (float32 score, int32 byte
    length, the piece's bytes). pieces: (score, bytes) in id order."""
    return struct.pack('<I', max(len(b) for _, b in pieces)) + \
        b''.join(struct.pack('<fi', score, len(b)) + b for score, b in pieces)


def write_tokenizer_bin(path, pieces):
    with open(path, 'wb') as f:
        f.write(tokenizer_bin_bytes(pieces))
    return len(pieces)


def sentencepiece_to_bin(model_path, bin_path):
    """A sentencepiece .model -> tokenizer.bin as llama2.c writes it: '\u2581' becomes ' ', BOS is
    "\n<s>\n" and EOS "\n</s>\n", byte pieces stay as the text "<0xNN>"."""
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=model_path)
    pieces = []
    for i in range(sp.get_piece_size()):
        t = sp.id_to_piece(i)
        if i == sp.bos_id():
            t = '\n<s>\n'
        elif i == sp.eos_id():
            t = '\n</s>\n'
        pieces.append((sp.get_score(i), t.replace('\u2581', ' ').encode('utf-8')))
    return write_tokenizer_bin(bin_path, pieces)


def check_sentencepiece(path):
    """Refuses a sentencepiece model that adds no dummy-prefix space (razor's encoder always adds one)."""
    try:
        import sentencepiece as spm
    except ImportError:
        fail(f'{path}: exporting a sentencepiece tokenizer needs the sentencepiece package')
    try:
        sp = spm.SentencePieceProcessor(model_file=path)
    except (OSError, RuntimeError) as e:
        fail(f'{path}: not a sentencepiece model ({e})')
    pieces = sp.encode('a', out_type=str)
    if not pieces or not pieces[0].startswith('\u2581'):
        fail(f'{path}: this sentencepiece model adds no dummy-prefix space ("a" -> {pieces}), which razor\'s '
             'tokenizer.bin encoder always adds, so razor would tokenize differently: not exported (razor can '
             'still run the model on token ids, -I)')


def export_tokenizer(path, out):
    """A sentencepiece .model -> llama2.c's tokenizer.bin, or a Hugging Face tokenizer.json with a
    byte-level BPE -> razor's RZTK file (tokenizer_bbpe.py)."""
    if path.endswith('.json'):
        from tokenizer_bbpe import BbpeError, export_bbpe
        try:
            info = export_bbpe(path, out)
        except BbpeError as e:
            raise ExportError(str(e))
        print(f'wrote {out} (byte-level BPE, {info["vocab_size"]} tokens)')
    else:
        print(f'wrote {out} ({sentencepiece_to_bin(path, out)} tokens)')


def main(argv=None):
    ap = argparse.ArgumentParser(description='Export a Llama-family model to razor\'s format.')
    ap.add_argument('out', help='output model file')
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument('--hf', metavar='DIR', help='Hugging Face folder (config.json + safetensors)')
    src.add_argument('--meta', metavar='DIR', help='Meta folder (params.json + consolidated.*.pth)')
    src.add_argument('--checkpoint', metavar='FILE', help='llama2.c training checkpoint (.pt)')
    src.add_argument('--bin', metavar='FILE', help='a llama2.c .bin or razor float32 file, to re-write (--dtype)')
    src.add_argument('--gguf', metavar='FILE', help='a GGUF file (llama.cpp): llama, qwen2, qwen3, and its tokenizer')
    ap.add_argument('--dtype', choices=list(DTYPES),
                    help='how the weight matrices are stored (default f32; --gguf: the smallest that is exact)')
    ap.add_argument('--alibi', action='store_true', help='the --hf folder is a Baichuan 13B (ALiBi) checkpoint')
    ap.add_argument('--legacy', action='store_true', help='write llama2.c version 0 instead')
    ap.add_argument('--seq-len', type=int, help='override the maximum context')
    ap.add_argument('--tokenizer', metavar='FILE',
                    help='tokenizer.model (sentencepiece) or tokenizer.json (byte-level BPE) to export too')
    ap.add_argument('--tokenizer-out', metavar='PATH', help='where to write it (default: tokenizer.bin next to OUT)')
    a = ap.parse_args(argv)
    try:
        if a.tokenizer and not os.path.exists(a.tokenizer):
            fail(f'{a.tokenizer}: no such tokenizer file')
        if a.alibi and not a.hf:
            fail('--alibi is only for Baichuan (13B) checkpoints, given with --hf')
        if a.gguf and a.tokenizer:
            fail('--tokenizer: a GGUF file carries its own tokenizer (written to --tokenizer-out, default '
                 'tokenizer.bin next to OUT)')
        dtype = a.dtype or 'f32'
        if a.gguf:
            model, tok, tok_what, auto, why = load_gguf(a.gguf)
            if not a.dtype and not a.legacy:
                dtype = auto
                print(f'note: writing --dtype {dtype} ({why})')
        else:
            model = load_hf(a.hf, a.alibi) if a.hf else load_meta(a.meta) if a.meta else \
                load_bin(a.bin) if a.bin else load_checkpoint(a.checkpoint)
        c = model.config
        c['weight_type'] = DTYPES[dtype]
        if a.seq_len:
            c['seq_len'] = a.seq_len
        model.check()
        if a.hf:
            c.update(hf_bos(a.hf, c['bos_id'], c['vocab_size'], a.tokenizer))
        if a.legacy:
            legacy_check(c)
        else:
            if c['weight_type'] == Q8:
                q8_check(c)
            if a.hf:
                c.update(hf_chat(a.hf, model.family, c['vocab_size'], a.tokenizer))
        if a.tokenizer and not a.tokenizer.endswith('.json'):
            check_sentencepiece(a.tokenizer)
        tok_out = a.tokenizer_out or os.path.join(os.path.dirname(os.path.abspath(a.out)), 'tokenizer.bin')
        if a.gguf:  # the tokenizer first (a bad --tokenizer-out fails before the model is written), renamed last
            try:
                with open(tok_out + '.tmp', 'wb') as f:
                    f.write(tok)
                write(model, a.out, a.legacy)
                os.replace(tok_out + '.tmp', tok_out)
            finally:
                if os.path.exists(tok_out + '.tmp'):
                    os.remove(tok_out + '.tmp')
            print(f'wrote {tok_out} ({tok_what})')
        else:
            write(model, a.out, a.legacy)
        if a.tokenizer:
            export_tokenizer(a.tokenizer, tok_out)
    except (ExportError, OSError) as e:
        print(f'export.py: error: {e}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
