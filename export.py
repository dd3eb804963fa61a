"""
export.py: convert a Llama-family checkpoint into a model file razor can load (see model.h).

    python3 export.py OUT.bin --hf DIR            # Hugging Face folder (config.json + *.safetensors)
    python3 export.py OUT.bin --meta DIR          # Meta's params.json + consolidated.*.pth (needs torch)
    python3 export.py OUT.bin --checkpoint X.pt   # a llama2.c training checkpoint (needs torch)
    python3 export.py OUT.bin --bin MODEL.bin --dtype q8  # a llama2.c .bin or razor float32 file, re-written
options:
    --dtype f32|bf16|q8  how the weight matrices are stored (default f32; norms and biases stay f32).
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

    def missing(kind):
        for name in CHAT_TOKENS[kind]:
            if not isinstance(ids.get(name), int):
                return f'{name}, which is not among the added tokens (tokenizer_config.json, tokenizer.json)'
            if not 0 <= ids[name] < vocab:
                return f'{name}, whose id {ids[name]} is not below vocab_size {vocab}'
        return None

    if template is None:
        kind = CHAT_CHATML if arch in QWEN else CHAT_LLAMA3 if arch == 'LlamaForCausalLM' and vocab == 128256 \
            else CHAT_LLAMA2
        if kind != CHAT_LLAMA2 and missing(kind):
            print(f'note: no chat template in {folder}, and no id for {missing(kind)}')
            kind = CHAT_LLAMA2
        if kind == CHAT_LLAMA2:
            print(f'note: no chat template in {folder}: chat mode will use Llama 2\'s "[INST] ... [/INST]"')
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
    L, d, hd = c['n_layers'], c['dim'], c['head_dim']
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
    """Writes a tensor stacked from parts (functions giving arrays of `shape`) at the first multiple of
    align from file offset at, its matrices as wtype (F32, BF16, Q8: the int8 values, then at the next
    multiple of align the scales). Returns the offset after it."""
    n, cols = math.prod(shape), shape[-1]
    start = -(-at // align) * align
    scales = -(-(start + n * len(parts)) // align) * align
    step = max(1, (1 << 22) // cols)  # rows at a time
    for k, part in enumerate(parts):
        w = np.asarray(part(), dtype=np.float32).reshape(-1, cols)
        for r in range(0, w.shape[0], step):
            i = k * n + r * cols  # element index in the stack
            if wtype == Q8:
                q, s = to_q8(w[r:r + step])
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


def write_tokenizer_bin(path, pieces):
    """llama2.c's tokenizer.bin: uint32 max piece length, then for each id (float32 score, int32 byte
    length, the piece's bytes). pieces: (score, bytes) in id order."""
    with open(path, 'wb') as f:
        f.write(struct.pack('<I', max(len(b) for _, b in pieces)))
        for score, b in pieces:
            f.write(struct.pack('<fi', score, len(b)) + b)
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
    ap.add_argument('--dtype', choices=list(DTYPES), default='f32', help='how the weight matrices are stored')
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
        model = load_hf(a.hf, a.alibi) if a.hf else load_meta(a.meta) if a.meta else \
            load_bin(a.bin) if a.bin else load_checkpoint(a.checkpoint)
        c = model.config
        c['weight_type'] = DTYPES[a.dtype]
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
        write(model, a.out, a.legacy)
        if a.tokenizer:
            tok_out = a.tokenizer_out or os.path.join(os.path.dirname(os.path.abspath(a.out)), 'tokenizer.bin')
            export_tokenizer(a.tokenizer, tok_out)
    except (ExportError, OSError) as e:
        print(f'export.py: error: {e}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
