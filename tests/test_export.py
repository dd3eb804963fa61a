"""
tests/test_export.py: tests for export.py (plain python + numpy; run from anywhere).

It writes small random Hugging Face checkpoints (safetensors written with numpy) of each family export.py
takes (Llama, Mistral, Qwen2, Qwen3, Baichuan 13B with ALiBi), exports them with export.py, and compares
razor's logits (`razor OUT.bin -m logits`, through the prompt path and one token at a time with -B 1)
with a float64 numpy forward pass that works on the HF tensors in HF's own layout (rotate-half RoPE, as
transformers' modeling code does; W_pack and NormHead as Baichuan's modeling_baichuan.py does), so the
check does not depend on export.py's row permutation. The exported file is also read back with a tiny
numpy loader (razor format versions 1 and 2, llama2.c version 0) and run through the same forward pass
in razor's interleaved layout. --dtype bf16 and q8 files are checked tensor by tensor against the
source, and through razor. Bad inputs must fail with a message naming the problem and leave no output
file.

    python3 tests/test_export.py        # razor binary from $RAZOR, default ./razor
"""
import json
import math
import os
import struct
import shutil
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RAZOR = os.environ.get('RAZOR', './razor')
PY = sys.executable
TOL = 1e-4
IDS = [1, 7, 23, 5, 60, 3, 3, 41, 12, 9, 33, 2, 17]
RAZOR_MAGIC, ALIGN, Q8_GROUP = 0x727A6172, 64, 32  # model.h
WEIGHT_F32, WEIGHT_BF16, WEIGHT_Q8 = 0, 1, 2
POS_ROPE, POS_ALIBI = 0, 1
CHAT_LLAMA2, CHAT_LLAMA3, CHAT_CHATML = 0, 1, 2
BAICHUAN2_VOCAB = 125696  # Baichuan2's vocab_size (Baichuan-13B's is 64000)


# ----------------------------------------------------------------------------------------------------
# writing Hugging Face checkpoints

def write_safetensors(path, tensors):
    """tensors: name -> (numpy array, safetensors dtype). BF16 arrays are given as uint16 bit patterns."""
    header, blobs, offset = {'__metadata__': {'format': 'pt'}}, [], 0
    for name, (a, dtype) in tensors.items():
        b = np.ascontiguousarray(a).tobytes()
        header[name] = {'dtype': dtype, 'shape': list(a.shape), 'data_offsets': [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header).encode()
    h += b' ' * (-len(h) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)) + h + b''.join(blobs))


def quantize(a, dtype):
    """float32 array -> (array to store, the float64 values it represents)."""
    if dtype == 'F32':
        s = a.astype('<f4')
        return s, s.astype(np.float64)
    if dtype == 'F16':
        s = a.astype('<f2')
        return s, s.astype(np.float64)
    s = (a.astype('<f4').view('<u4') >> 16).astype('<u2')  # BF16: the high half of a float32
    return s, (s.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


# family -> (architecture, model_type)
FAMILIES = {'llama': ('LlamaForCausalLM', 'llama'), 'mistral': ('MistralForCausalLM', 'mistral'),
            'qwen2': ('Qwen2ForCausalLM', 'qwen2'), 'qwen3': ('Qwen3ForCausalLM', 'qwen3'),
            'baichuan': ('BaichuanForCausalLM', 'baichuan')}
BASE = dict(family='llama', dim=32, hidden=48, layers=2, heads=4, kv=4, head_dim=None, vocab=64, seq_len=32,
            dtype='F32', shards=1, tied=False, lm_head=True, theta=10000.0, eps=1e-5, rope=None, rope_params=False,
            arch=None, eos=2, seed=0, bias=0.5)


def make_hf(folder, spec, edit_config=None, edit_tensors=None):
    """Writes a random checkpoint; returns (config, HF name -> float64 weights).

    Names and config fields per family, as the published checkpoints have them:
      Llama/Mistral: transformers' modeling_llama.py / modeling_mistral.py.
      Qwen2 (Qwen2ForCausalLM, model_type qwen2): transformers' models/qwen2/modeling_qwen2.py: q_proj,
        k_proj and v_proj with bias=True, o_proj bias=False; the config fields as in Qwen2/Qwen2.5-0.5B's
        config.json (sliding_window a number, use_sliding_window false, max_window_layers, tied embeddings).
      Qwen3 (Qwen3ForCausalLM, model_type qwen3): transformers' models/qwen3/modeling_qwen3.py:
        self_attn.q_norm / k_norm weights of shape (head_dim,); head_dim explicit in config.json;
        attention_bias false.
      Baichuan 13B (BaichuanForCausalLM, model_type baichuan): modeling_baichuan.py of Baichuan-13B-Base
        (as copied in github.com/AlibabaPAI/FlashModels, hf_models/config/baichuan-13b-base/
        modeling_baichuan_origin.py) and of Baichuan2-13B-Chat (public copies of the file found through
        the code index): self_attn.W_pack.weight (3 * hidden, hidden) = the q, k, v rows; no
        num_key_value_heads, no rope fields; model_max_length instead of max_position_embeddings (as in a
        Baichuan2-13B-Chat config.json)."""
    s = dict(BASE, **spec)
    fam = s['family']
    arch, model_type = FAMILIES[fam]
    arch = s['arch'] or arch
    rng = np.random.default_rng(s['seed'])
    hd = s['head_dim'] or s['dim'] // s['heads']
    d, q, kv, h = s['dim'], s['heads'] * hd, s['kv'] * hd, s['hidden']
    shapes = {'model.embed_tokens.weight': (s['vocab'], d), 'model.norm.weight': (d,)}
    if s['lm_head'] and not s['tied']:
        shapes['lm_head.weight'] = (s['vocab'], d)
    for i in range(s['layers']):
        p = f'model.layers.{i}.'
        shapes[p + 'input_layernorm.weight'] = (d,)
        if fam == 'baichuan':
            shapes[p + 'self_attn.W_pack.weight'] = (3 * d, d)
        else:
            shapes.update({p + 'self_attn.q_proj.weight': (q, d), p + 'self_attn.k_proj.weight': (kv, d),
                           p + 'self_attn.v_proj.weight': (kv, d)})
        if fam == 'qwen2':
            shapes.update({p + 'self_attn.q_proj.bias': (q,), p + 'self_attn.k_proj.bias': (kv,),
                           p + 'self_attn.v_proj.bias': (kv,)})
        if fam == 'qwen3':
            shapes.update({p + 'self_attn.q_norm.weight': (hd,), p + 'self_attn.k_norm.weight': (hd,)})
        shapes.update({p + 'self_attn.o_proj.weight': (d, q), p + 'post_attention_layernorm.weight': (d,),
                       p + 'mlp.gate_proj.weight': (h, d), p + 'mlp.up_proj.weight': (h, d),
                       p + 'mlp.down_proj.weight': (d, h)})
    raw = {}
    for name, shape in shapes.items():
        if name.endswith('.bias'):  # non-zero, large enough to move the attention pattern
            raw[name] = s['bias'] * rng.standard_normal(shape)
        elif len(shape) == 1:  # norm weights: not 1
            raw[name] = 1 + (0.3 if 'q_norm' in name or 'k_norm' in name else 0.2) * rng.standard_normal(shape)
        else:
            raw[name] = rng.standard_normal(shape) * (1.0 if 'embed' in name else 0.3 if 'lm_head' in name
                                                      else 1.5 / np.sqrt(shape[1]))
    cfg = {'architectures': [arch], 'model_type': model_type,
           'hidden_size': d, 'intermediate_size': h, 'num_hidden_layers': s['layers'],
           'num_attention_heads': s['heads'], 'vocab_size': s['vocab'], 'rms_norm_eps': s['eps'],
           'hidden_act': 'silu', 'tie_word_embeddings': s['tied'], 'bos_token_id': 1, 'eos_token_id': s['eos'],
           'torch_dtype': 'float32'}
    if fam == 'baichuan':  # the fields of a Baichuan2-13B-Chat config.json, in its order; sizes ours
        cfg = {'architectures': [arch], 'auto_map': {'AutoConfig': 'configuration_baichuan.BaichuanConfig',
                                                     'AutoModelForCausalLM': 'modeling_baichuan.BaichuanForCausalLM'},
               'bos_token_id': 1, 'eos_token_id': s['eos'], 'hidden_act': 'silu', 'hidden_size': d,
               'initializer_range': 0.02, 'intermediate_size': h, 'model_max_length': s['seq_len'],
               'model_type': 'baichuan', 'num_attention_heads': s['heads'], 'num_hidden_layers': s['layers'],
               'pad_token_id': 0, 'rms_norm_eps': s['eps'], 'tie_word_embeddings': s['tied'],
               'torch_dtype': 'float32', 'use_cache': True, 'vocab_size': s['vocab']}
    else:
        cfg.update({'num_key_value_heads': s['kv'], 'max_position_embeddings': s['seq_len']})
    if fam in ('llama', 'mistral'):
        cfg.update({'attention_bias': False, 'mlp_bias': False})
    if fam == 'mistral':
        cfg['sliding_window'] = None
    if fam == 'qwen2':  # Qwen2-0.5B: the window is there but off
        cfg.update({'sliding_window': 4096, 'use_sliding_window': False, 'max_window_layers': s['layers'],
                    'attention_dropout': 0.0, 'use_cache': True})
    if fam == 'qwen3':
        cfg.update({'attention_bias': False, 'sliding_window': None, 'use_sliding_window': False,
                    'max_window_layers': s['layers'], 'attention_dropout': 0.0, 'use_cache': True})
    if s['head_dim']:
        cfg['head_dim'] = s['head_dim']
    rope = s['rope']
    if fam != 'baichuan' and s['rope_params']:  # newer transformers: theta and scaling inside rope_parameters
        cfg['rope_parameters'] = dict(rope or {'rope_type': 'default'}, rope_theta=s['theta'])
    elif fam != 'baichuan':
        cfg['rope_theta'] = s['theta']
        cfg['rope_scaling'] = rope
    if edit_config:
        edit_config(cfg)
    stored, weights = {}, {}
    for name, a in raw.items():
        stored[name] = quantize(a, s['dtype'])[0], s['dtype']
        weights[name] = quantize(a, s['dtype'])[1]
    if edit_tensors:
        edit_tensors(stored)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, 'config.json'), 'w') as f:
        json.dump(cfg, f, indent=1)
    names = list(stored)
    if s['shards'] == 1:
        write_safetensors(os.path.join(folder, 'model.safetensors'), stored)
    else:
        n = s['shards']
        files = [f'model-{k + 1:05d}-of-{n:05d}.safetensors' for k in range(n)]
        weight_map = {name: files[j * n // len(names)] for j, name in enumerate(names)}
        for fname in files:
            write_safetensors(os.path.join(folder, fname),
                              {k: v for k, v in stored.items() if weight_map[k] == fname})
        with open(os.path.join(folder, 'model.safetensors.index.json'), 'w') as f:
            json.dump({'metadata': {}, 'weight_map': weight_map}, f)
    return cfg, weights


# ----------------------------------------------------------------------------------------------------
# numpy reference forward pass (float64)

def inv_freq(head_dim, theta, scaling):
    """RoPE frequencies, with Llama 3 scaling as transformers' _compute_llama3_parameters does it."""
    f = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    if scaling:
        factor, lo, hi, old = (scaling['factor'], scaling['low_freq_factor'], scaling['high_freq_factor'],
                               scaling['original_max_position_embeddings'])
        wavelen = 2 * np.pi / f
        scaled = np.where(wavelen > old / lo, f / factor, f)
        smooth = (old / wavelen - lo) / (hi - lo)
        medium = (wavelen >= old / hi) & (wavelen <= old / lo)
        f = np.where(medium, (1 - smooth) * scaled / factor + smooth * scaled, scaled)
    return f


def alibi_slopes(n):
    """ALiBi's head slopes (Press et al., "Train Short, Test Long", 2021): for n a power of two the
    geometric sequence 2^(-8/n), 2^(-16/n), ..., 2^(-8); otherwise those of the largest power of two
    p < n, followed by every other slope of 2p (its odd-numbered ones), n - p of them. Baichuan's
    _get_interleave (modeling_baichuan.py of Baichuan-13B and Baichuan2-13B) computes the same list."""
    def geometric(p):
        return [2.0 ** (-8.0 * (k + 1) / p) for k in range(p)]
    p = 1 << (n.bit_length() - 1)
    return geometric(p) if p == n else geometric(p) + geometric(2 * p)[0::2][:n - p]


def hf_rope(cfg):
    rp = cfg.get('rope_parameters') or {}
    theta = rp.get('rope_theta', cfg.get('rope_theta', 10000.0))
    rs = cfg.get('rope_scaling') or (rp if rp.get('rope_type') == 'llama3' else None)
    return theta, rs


def forward(w, p, ids, interleaved, probs=None):
    """Decoder forward pass over ids -> logits (len(ids), vocab). w uses HF tensor names, with q_proj,
    k_proj, v_proj separate; the optional q/k/v_proj.bias are added after the projection, and the optional
    q_norm/k_norm (Qwen3) are an RMSNorm over each head's vector, after the bias and before RoPE (as
    modeling_qwen3.py's Qwen3Attention.forward). p['inv_freq'] None: no RoPE; p['alibi']: per-head slopes,
    the score of query i for key j <= i gets -slope * (i - j) (Baichuan adds slope * j, which differs by
    a constant per query row: the same softmax). interleaved: q/k rows are in razor's pair layout (rotate
    (2i, 2i+1)); otherwise HF's rotate-half layout. probs: a list that gets each layer's attention
    weights (T, heads, T)."""
    hd, H, KV = p['head_dim'], p['n_heads'], p['n_kv_heads']
    T = len(ids)
    if p['inv_freq'] is not None:
        ang = np.outer(np.arange(T), p['inv_freq'])
        cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]

    def rope(v):  # (T, heads, hd)
        if p['inv_freq'] is None:
            return v
        a, b = (v[..., 0::2], v[..., 1::2]) if interleaved else (v[..., :hd // 2], v[..., hd // 2:])
        ra, rb = a * cos - b * sin, b * cos + a * sin
        out = np.empty_like(v)
        if interleaved:
            out[..., 0::2], out[..., 1::2] = ra, rb
        else:
            out[..., :hd // 2], out[..., hd // 2:] = ra, rb
        return out

    def norm(x, g):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + p['eps']) * g

    x = w['model.embed_tokens.weight'][ids]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    distance = np.arange(T)[:, None] - np.arange(T)[None, :]  # i - j
    for i in range(p['n_layers']):
        L = lambda n: w[f'model.layers.{i}.{n}.weight']
        B = lambda n: w.get(f'model.layers.{i}.{n}.bias', 0.0)
        h = norm(x, L('input_layernorm'))
        q = (h @ L('self_attn.q_proj').T + B('self_attn.q_proj')).reshape(T, H, hd)
        k = (h @ L('self_attn.k_proj').T + B('self_attn.k_proj')).reshape(T, KV, hd)
        v = (h @ L('self_attn.v_proj').T + B('self_attn.v_proj')).reshape(T, KV, hd)
        if f'model.layers.{i}.self_attn.q_norm.weight' in w:
            q, k = norm(q, L('self_attn.q_norm')), norm(k, L('self_attn.k_norm'))
        q, k = rope(q), rope(k)
        att, layer_probs = np.empty((T, H, hd)), np.empty((T, H, T))
        for j in range(H):
            kvh = j // (H // KV)
            s = q[:, j] @ k[:, kvh].T / np.sqrt(hd) + mask
            if p.get('alibi') is not None:
                s = s - p['alibi'][j] * np.where(distance >= 0, distance, 0)
            s = np.exp(s - s.max(axis=1, keepdims=True))
            layer_probs[:, j] = s / s.sum(axis=1, keepdims=True)
            att[:, j] = layer_probs[:, j] @ v[:, kvh]
        if probs is not None:
            probs.append(layer_probs)
        x = x + att.reshape(T, H * hd) @ L('self_attn.o_proj').T
        h = norm(x, L('post_attention_layernorm'))
        g = h @ L('mlp.gate_proj').T
        x = x + (g / (1 + np.exp(-g)) * (h @ L('mlp.up_proj').T)) @ L('mlp.down_proj').T
    x = norm(x, w['model.norm.weight'])
    return x @ w.get('lm_head.weight', w['model.embed_tokens.weight']).T


def normhead(w):
    """Baichuan2's NormHead in inference: torch.nn.functional.normalize(weight), each row over its L2 norm
    (at least 1e-12)."""
    return w / np.maximum(np.sqrt((w * w).sum(axis=1, keepdims=True)), 1e-12)


def hf_params(cfg, w):
    """The HF checkpoint as forward() takes it -> (weights, params), from config.json's fields as the
    family's modeling code reads them. Baichuan (modeling_baichuan.py): W_pack's output is unflattened
    to (3, hidden): q, k, v are its row blocks [0, d), [d, 2d), [2d, 3d); head_dim = hidden / heads,
    scores / sqrt(head_dim) plus the ALiBi mask, no RoPE; Baichuan2's lm_head is a NormHead (Baichuan-13B's
    a plain Linear; no config field tells them apart, but Baichuan2's configs have vocab_size 125696 and
    Baichuan-13B's 64000)."""
    heads = cfg['num_attention_heads']
    hd = cfg.get('head_dim') or cfg['hidden_size'] // heads
    p = dict(head_dim=hd, n_heads=heads, n_kv_heads=cfg.get('num_key_value_heads') or heads,
             n_layers=cfg['num_hidden_layers'], eps=cfg['rms_norm_eps'], alibi=None)
    w = dict(w)
    if cfg['model_type'] == 'baichuan':
        d = cfg['hidden_size']
        p.update(n_kv_heads=heads, inv_freq=None, alibi=alibi_slopes(heads))
        for i in range(p['n_layers']):
            pack = w.pop(f'model.layers.{i}.self_attn.W_pack.weight')
            for j, n in enumerate(('q_proj', 'k_proj', 'v_proj')):
                w[f'model.layers.{i}.self_attn.{n}.weight'] = pack[j * d:(j + 1) * d]
        if cfg['vocab_size'] == BAICHUAN2_VOCAB:
            w['lm_head.weight'] = normhead(w['lm_head.weight'])
    else:
        theta, rs = hf_rope(cfg)
        p['inv_freq'] = inv_freq(hd, theta, rs)
    if cfg.get('tie_word_embeddings'):
        w.pop('lm_head.weight', None)
    return w, p


def hf_reference(cfg, w, ids):
    return forward(*hf_params(cfg, w), ids, interleaved=False)


def hf_to_interleaved(w, n_heads):
    """HF rotate-half q/k rows (or a bias vector, or one head's norm weights with n_heads 1) -> Meta's
    interleaved order (the inverse of HF's permute)."""
    return w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, -1).transpose(0, 2, 1, 3).reshape(w.shape)


def razor_layout(cfg, w):
    """The HF tensors as razor's file should hold them, under their HF names: Baichuan's W_pack split into
    q, k, v and Baichuan2's lm_head normalised (hf_params); then, for the RoPE families, q/k rows, q/k
    biases and q_norm/k_norm weights in the interleaved pair order."""
    w, p = hf_params(cfg, w)
    if p['inv_freq'] is None:
        return w
    out = {}
    for name, a in w.items():
        if '.q_proj.' in name:
            a = hf_to_interleaved(a, p['n_heads'])
        elif '.k_proj.' in name:
            a = hf_to_interleaved(a, p['n_kv_heads'])
        elif name.endswith(('q_norm.weight', 'k_norm.weight')):
            a = hf_to_interleaved(a, 1)
        out[name] = a
    return out


# ----------------------------------------------------------------------------------------------------
# reading exported files back with numpy

RAZOR_FIELDS = ('magic version dim hidden_dim n_layers n_heads n_kv_heads head_dim vocab_size seq_len bos_id '
                'eos_id shared_classifier norm_eps rope_theta rope_scaling rope_factor rope_low_freq_factor '
                'rope_high_freq_factor rope_original_context').split()
V2_FIELDS = 'weight_type q8_group pos_encoding qkv_bias qk_norm chat_template'.split()
MATRICES = {'model.embed_tokens', 'self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj',
            'mlp.gate_proj', 'mlp.down_proj', 'mlp.up_proj', 'lm_head'}


def bf16_bits(a):
    """float32 values -> bfloat16 bits, rounded to nearest, ties to even (finite values)."""
    u = np.ascontiguousarray(a, dtype='<f4').view('<u4').astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype('<u2')


def read_export(path, raw=None):
    """An exported razor v1/v2/v3 or llama2.c v0 file -> (header dict, HF-named float64 weights in razor's
    layout). Checks the layout: v2 tensors at multiples of 64 bytes, zero padding, the file's end. raw, a
    dict, gets each tensor as stored: HF name -> (kind 'f32'/'bf16'/'q8', values as stored, q8 scales with
    one column per group, or None)."""
    data = np.fromfile(path, dtype=np.uint8)
    assert len(data) >= 28, f'{len(data)}-byte file'
    align = 1
    if struct.unpack('<I', data[:4].tobytes())[0] == RAZOR_MAGIC:
        c = dict(zip(RAZOR_FIELDS, struct.unpack('<I12i2fi3fi', data[:80].tobytes())))
        c.update(dict.fromkeys(V2_FIELDS, 0), chat_tokens=[-1] * 4, add_bos=1)
        if c['version'] in (2, 3):
            v2 = struct.unpack('<11i', data[80:124].tobytes())
            c.update(zip(V2_FIELDS, v2[:6]), chat_tokens=list(v2[6:10]))
            end, align = 120, ALIGN
            if c['version'] == 3:
                c['add_bos'], end = v2[10], 124
                assert c['add_bos'] in (0, 1), f'add_bos {c["add_bos"]}'
            assert c['weight_type'] in (WEIGHT_F32, WEIGHT_BF16, WEIGHT_Q8), f'weight_type {c["weight_type"]}'
            want = Q8_GROUP if c['weight_type'] == WEIGHT_Q8 else 0
            assert c['q8_group'] == want, f'q8_group {c["q8_group"]} with weight_type {c["weight_type"]}'
            assert c['pos_encoding'] in (POS_ROPE, POS_ALIBI), f'pos_encoding {c["pos_encoding"]}'
            assert c['qkv_bias'] in (0, 1) and c['qk_norm'] in (0, 1), f'qkv_bias/qk_norm {c}'
            assert c['chat_template'] in (CHAT_LLAMA2, CHAT_LLAMA3, CHAT_CHATML), f'chat_template {c}'
        else:
            assert c['version'] == 1, f'razor version {c["version"]}'
            end = 80
        assert not data[end:256].any(), 'header padding is not zero'
        at, legacy = 256, False
    else:
        c = dict(zip('dim hidden_dim n_layers n_heads n_kv_heads vocab_size seq_len'.split(),
                     struct.unpack('<7i', data[:28].tobytes())))
        c.update(shared_classifier=int(c['vocab_size'] > 0), vocab_size=abs(c['vocab_size']),
                 head_dim=c['dim'] // c['n_heads'], norm_eps=1e-5, rope_theta=10000.0, rope_scaling=0,
                 **dict.fromkeys(V2_FIELDS, 0), chat_tokens=[-1] * 4, add_bos=1)
        at, legacy = 28, True
    d, h, L, V = c['dim'], c['hidden_dim'], c['n_layers'], c['vocab_size']
    q, kv, hd = c['n_heads'] * c['head_dim'], c['n_kv_heads'] * c['head_dim'], c['head_dim']
    order = [('model.embed_tokens', (V, d)), ('input_layernorm', (L, d)), ('self_attn.q_proj', (L, q, d)),
             ('self_attn.k_proj', (L, kv, d)), ('self_attn.v_proj', (L, kv, d)), ('self_attn.o_proj', (L, d, q)),
             ('post_attention_layernorm', (L, d)), ('mlp.gate_proj', (L, h, d)), ('mlp.down_proj', (L, d, h)),
             ('mlp.up_proj', (L, h, d)), ('model.norm', (d,))]
    if legacy:
        order += [('freq_cis_real', (c['seq_len'], hd // 2)), ('freq_cis_imag', (c['seq_len'], hd // 2))]
    if c['qkv_bias']:
        order += [('self_attn.q_proj.bias', (L, q)), ('self_attn.k_proj.bias', (L, kv)),
                  ('self_attn.v_proj.bias', (L, kv))]
    if c['qk_norm']:
        order += [('self_attn.q_norm', (L, hd)), ('self_attn.k_norm', (L, hd))]
    if not c['shared_classifier']:
        order.append(('lm_head', (V, d)))

    def skip_to(pos, what):  # zero padding up to the next multiple of align
        start = -(-pos // align) * align
        assert start <= len(data), f'the file ends before {what}'
        assert not data[pos:start].any(), f'padding before {what} is not zero (or it is not at a multiple of {align})'
        return start

    def take(pos, nbytes, dtype, what):
        assert pos + nbytes <= len(data), f'the file ends inside {what} ({len(data)} bytes, needs {pos + nbytes})'
        return np.frombuffer(data[pos:pos + nbytes].tobytes(), dtype=dtype), pos + nbytes

    w = {}
    for name, shape in order:
        n = math.prod(shape)
        at = skip_to(at, name)
        wt = c['weight_type'] if name in MATRICES else WEIGHT_F32
        if wt == WEIGHT_F32:
            stored, at = take(at, 4 * n, '<f4', name)
            a, scales = stored.astype(np.float64), None
        elif wt == WEIGHT_BF16:
            stored, at = take(at, 2 * n, '<u2', name)
            a, scales = (stored.astype(np.uint32) << 16).view(np.float32).astype(np.float64), None
        else:
            assert shape[-1] % Q8_GROUP == 0, f'{name}: width {shape[-1]} is not a multiple of {Q8_GROUP}'
            stored, at = take(at, n, np.int8, name)
            at = skip_to(at, name + ' scales')
            scales, at = take(at, 4 * (n // Q8_GROUP), '<f4', name + ' scales')
            a = (stored.reshape(-1, Q8_GROUP).astype(np.float64) * scales[:, None].astype(np.float64)).ravel()
            scales = scales.reshape(*shape[:-1], shape[-1] // Q8_GROUP)
        a, stored = a.reshape(shape), stored.reshape(shape)
        kind = ('f32', 'bf16', 'q8')[wt]
        if name.startswith('freq'):
            continue
        if name.startswith('model.') or name == 'lm_head':
            names = [(name + '.weight', slice(None))]
        else:
            full = name if name.endswith('.bias') else name + '.weight'
            names = [(f'model.layers.{i}.{full}', i) for i in range(L)]
        for hf, index in names:
            w[hf] = a[index]
            if raw is not None:
                raw[hf] = (kind, stored[index], None if scales is None else scales[index])
    rest = data[at:]
    if align == 1:
        assert len(rest) == 0, f'{len(rest)} bytes after the last tensor'
    else:
        assert len(rest) < align and not rest.any(), f'{len(rest)} bytes after the last tensor (not zero padding)'
    return c, w


def readback_params(c):
    scaling = None
    if c['rope_scaling']:
        scaling = dict(factor=c['rope_factor'], low_freq_factor=c['rope_low_freq_factor'],
                       high_freq_factor=c['rope_high_freq_factor'],
                       original_max_position_embeddings=c['rope_original_context'])
    alibi = c['pos_encoding'] == POS_ALIBI
    return dict(head_dim=c['head_dim'], n_heads=c['n_heads'], n_kv_heads=c['n_kv_heads'], n_layers=c['n_layers'],
                eps=float(c['norm_eps']), alibi=alibi_slopes(c['n_heads']) if alibi else None,
                inv_freq=None if alibi else inv_freq(c['head_dim'], float(c['rope_theta']), scaling))


def readback_logits(path, ids):
    """The exported file read back, through forward() in razor's layout -> (header, logits, weights)."""
    c, w = read_export(path)
    return c, forward(w, readback_params(c), ids, interleaved=True), w


# ----------------------------------------------------------------------------------------------------
# running export.py and razor

def export(out, *args):
    r = subprocess.run([PY, os.path.join(ROOT, 'export.py'), out, *args], cwd=ROOT,
                       capture_output=True, text=True)
    return r


def razor_run(model, ids, tmp, *flags):
    """razor -m logits on ids (and flags) -> its float32 logits (len(ids), vocab)."""
    razor = RAZOR if os.path.isabs(RAZOR) else os.path.join(ROOT, RAZOR)
    if not os.path.exists(razor):
        raise AssertionError(f'razor binary {razor} not found (build it with make razor, or set RAZOR)')
    idf, out = os.path.join(tmp, 'ids.txt'), os.path.join(tmp, 'logits.f32')
    with open(idf, 'w') as f:
        f.write(' '.join(map(str, ids)) + '\n')
    if os.path.exists(out):
        os.remove(out)
    r = subprocess.run([razor, model, '-m', 'logits', '-K', 'f32', '-I', idf, '-o', out, *flags], cwd=ROOT,
                       capture_output=True, text=True)  # float32 keys and values: the exact numbers
    what = ' '.join(['razor', os.path.basename(model), *flags])
    lines = r.stderr.strip().splitlines()  # a usage text after the first line is left out
    assert r.returncode == 0, f'{what} exited {r.returncode}: {" / ".join(lines[:1] if len(lines) > 4 else lines)}'
    a = np.fromfile(out, dtype='<f4')
    assert a.size % len(ids) == 0, f'{what} wrote {a.size} floats for {len(ids)} tokens'
    return a.reshape(len(ids), -1)


def razor_logits(model, ids, tmp, *flags):
    return razor_run(model, ids, tmp, *flags).astype(np.float64)


def maxdiff(a, b):
    assert a.shape == b.shape, f'shape {a.shape} vs {b.shape}'
    return float(np.max(np.abs(a - b)))


def compare_tensors(got, want, tol=0.0, what='file'):
    """got, want: HF name -> array. Asserts the same names and every value within tol (relative to the
    tensor's largest |value|, at least 1); returns the largest difference."""
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    assert not missing and not extra, f'{what}: tensors missing {missing[:4]}, unexpected {extra[:4]}'
    worst = 0.0
    for name in want:
        assert got[name].shape == want[name].shape, f'{what}: {name} shape {got[name].shape} vs {want[name].shape}'
        d = maxdiff(got[name], want[name])
        assert d <= tol * max(1.0, float(np.max(np.abs(want[name])))), f'{what}: {name} differs by {d:.3g}'
        worst = max(worst, d)
    return worst


# ----------------------------------------------------------------------------------------------------
# tests: the numpy references on their own (no export.py, no razor)

def check_alibi_slopes():
    """The slopes against the ALiBi paper's values: 8 heads 2^-1 .. 2^-8; 12 heads those, then 2^-0.5,
    2^-1.5, 2^-2.5, 2^-3.5 (every other slope of 16 heads); 5 heads 2^-2, 2^-4, 2^-6, 2^-8, then 2^-1."""
    want = {8: [2.0 ** -k for k in range(1, 9)], 4: [2.0 ** -k for k in (2, 4, 6, 8)],
            12: [2.0 ** -k for k in range(1, 9)] + [2.0 ** -k for k in (0.5, 1.5, 2.5, 3.5)],
            5: [2.0 ** -k for k in (2, 4, 6, 8, 1)], 1: [2.0 ** -8]}
    for n, slopes in want.items():
        got = alibi_slopes(n)
        assert len(got) == n and np.allclose(got, slopes, rtol=1e-14, atol=0), f'{n} heads: {got} vs {slopes}'
    s40 = alibi_slopes(40)  # Baichuan-13B's head count
    assert len(set(s40)) == 40 and max(s40) < 1, f'40 heads: {s40}'
    return 'slopes(5) = ' + ', '.join(f'{s:g}' for s in alibi_slopes(5))


FAMILY_SPECS = {  # small models of each family, for the reference self-checks
    'llama': dict(kv=2, seed=31, rope=dict(rope_type='llama3', factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                           original_max_position_embeddings=32)),
    'qwen2': dict(family='qwen2', dim=32, hidden=64, heads=4, kv=2, tied=True, theta=1e6, eps=1e-6, seed=32),
    'qwen3': dict(family='qwen3', dim=32, hidden=64, heads=4, kv=2, head_dim=16, tied=True, theta=1e6, eps=1e-6,
                  seed=33),
    'baichuan': dict(family='baichuan', dim=40, hidden=64, heads=5, kv=5, eps=1e-6, seed=34),
}


def check_reference_layouts(tmp):
    """forward() in razor's layout, on weights razor_layout() permuted, equals forward() in HF's layout:
    the read-back checks below rest on this."""
    notes = []
    for fam, spec in FAMILY_SPECS.items():
        cfg, w = make_hf(os.path.join(tmp, 'ref_layout_' + fam), spec)
        ref = hf_reference(cfg, w, IDS)
        p = hf_params(cfg, w)[1]
        d = maxdiff(forward(razor_layout(cfg, w), p, IDS, interleaved=True), ref)
        assert d <= 1e-10, f'{fam}: razor layout vs HF layout: max abs diff {d:.3g}'
        if p['inv_freq'] is not None:  # and the permutation matters
            d = maxdiff(forward(hf_params(cfg, w)[0], p, IDS, interleaved=True), ref)
            assert d > 0.05, f'{fam}: unpermuted weights give the same logits (max diff {d:.3g})'
        notes.append(fam)
    return ', '.join(notes)


def check_reference_families(tmp):
    """Qwen2 with zero biases is a Llama; Qwen3 is not one (its q/k norms matter); every family's attention
    is far from uniform, and its special parts move the logits."""
    cfg, w = make_hf(os.path.join(tmp, 'ref_fam_qwen2'), FAMILY_SPECS['qwen2'])
    zero = {k: (0 * v if k.endswith('.bias') else v) for k, v in w.items()}
    llama = dict(cfg, architectures=['LlamaForCausalLM'], model_type='llama')
    d = maxdiff(hf_reference(cfg, zero, IDS),
                hf_reference(llama, {k: v for k, v in w.items() if not k.endswith('.bias')}, IDS))
    assert d <= 1e-12, f'Qwen2 with zero biases vs Llama: max abs diff {d:.3g}'
    moved = {'qwen2 biases': maxdiff(hf_reference(cfg, zero, IDS), hf_reference(cfg, w, IDS))}
    cfg3, w3 = make_hf(os.path.join(tmp, 'ref_fam_qwen3'), FAMILY_SPECS['qwen3'])
    unit = {k: (np.ones_like(v) if k.endswith(('q_norm.weight', 'k_norm.weight')) else v) for k, v in w3.items()}
    moved['qwen3 q/k norm weights'] = maxdiff(hf_reference(cfg3, unit, IDS), hf_reference(cfg3, w3, IDS))
    cfgb, wb = make_hf(os.path.join(tmp, 'ref_fam_baichuan'), FAMILY_SPECS['baichuan'])
    ref = hf_reference(cfgb, wb, IDS)
    wp, p = hf_params(cfgb, wb)
    moved['baichuan slopes 0'] = maxdiff(forward(wp, dict(p, alibi=[0.0] * 5), IDS, False), ref)
    moved['baichuan slopes reversed'] = maxdiff(forward(wp, dict(p, alibi=p['alibi'][::-1]), IDS, False), ref)
    moved['baichuan2 NormHead'] = maxdiff(forward(dict(wp, **{'lm_head.weight': normhead(wp['lm_head.weight'])}),
                                                  p, IDS, False), ref)
    for what, d in moved.items():
        assert d > 0.05, f'{what}: the logits move by only {d:.3g}'
    peaks = []
    for fam, (c, wf) in {'qwen2': (cfg, w), 'qwen3': (cfg3, w3), 'baichuan': (cfgb, wb)}.items():
        probs = []
        forward(*hf_params(c, wf), IDS, False, probs)
        peak = float(np.mean([pr[i].max(axis=-1).mean() * (i + 1) for pr in probs for i in range(4, len(IDS))]))
        assert peak > 2, f'{fam}: attention is nearly uniform (largest weight {peak:.2f} x uniform)'
        peaks.append(f'{fam} {peak:.1f}x')
    return ('moved by ' + ', '.join(f'{k} {v:.2g}' for k, v in moved.items()) + '; largest attention weight vs '
            'uniform: ' + ', '.join(peaks))


# ----------------------------------------------------------------------------------------------------
# tests: export.py and razor

EXPORTS = {}


def ids_for(spec, cfg):
    if spec.get('n_ids'):  # longer than a prompt block, to cover blocks and far positions
        return [1] + [int(i) for i in np.random.default_rng(8).integers(0, cfg['vocab_size'], spec['n_ids'] - 1)]
    return IDS


def exported(tmp, key, spec, *args, tokenizer_config=None):
    """Writes the HF checkpoint `key` and exports it (once, for all the checks that use it) -> (config,
    HF weights, output file, ids)."""
    if key not in EXPORTS:
        folder = os.path.join(tmp, key)
        cfg, w = make_hf(folder, {k: v for k, v in spec.items() if k != 'n_ids'})
        if tokenizer_config is not None:
            with open(os.path.join(folder, 'tokenizer_config.json'), 'w') as f:
                json.dump(tokenizer_config, f, indent=1)
        out = os.path.join(tmp, key + '.bin')
        EXPORTS[key] = cfg, w, out, export(out, '--hf', folder, *args)
    cfg, w, out, r = EXPORTS[key]
    assert r.returncode == 0, f'export failed: {r.stderr.strip()[-500:]}'
    return cfg, w, out, ids_for(spec, cfg)


def check_header(c, cfg, w, weight_type=WEIGHT_F32):
    """The v3 header against config.json (no tokenizer files: add_bos from bos_token_id 1)."""
    baichuan = cfg['model_type'] == 'baichuan'
    heads = cfg['num_attention_heads']
    want = dict(magic=RAZOR_MAGIC, version=3, dim=cfg['hidden_size'], hidden_dim=cfg['intermediate_size'],
                n_layers=cfg['num_hidden_layers'], n_heads=heads,
                n_kv_heads=heads if baichuan else cfg.get('num_key_value_heads') or heads,
                head_dim=cfg.get('head_dim') or cfg['hidden_size'] // heads, vocab_size=cfg['vocab_size'],
                seq_len=cfg.get('max_position_embeddings') or cfg['model_max_length'], bos_id=1,
                eos_id=cfg['eos_token_id'][0] if isinstance(cfg['eos_token_id'], list) else cfg['eos_token_id'],
                shared_classifier=int(bool(cfg['tie_word_embeddings']) or 'lm_head.weight' not in w),
                norm_eps=float(np.float32(cfg['rms_norm_eps'])), weight_type=weight_type,
                pos_encoding=POS_ALIBI if baichuan else POS_ROPE, qkv_bias=int(cfg['model_type'] == 'qwen2'),
                qk_norm=int(cfg['model_type'] == 'qwen3'), add_bos=1)
    if not baichuan:
        want['rope_theta'] = float(np.float32(hf_rope(cfg)[0]))
    bad = {k: (c[k], v) for k, v in want.items() if c[k] != v}
    assert not bad, 'header fields (file, expected): ' + ', '.join(f'{k} {v}' for k, v in bad.items())


def check_readback(tmp, key, spec, *args):
    """Export; header; every tensor equals the source in razor's layout; the file read back through
    forward() in razor's layout gives the HF reference's logits."""
    cfg, w, out, ids = exported(tmp, key, spec, *args)
    c, back, got = readback_logits(out, ids)
    check_header(c, cfg, w)
    worst = compare_tensors(got, razor_layout(cfg, w), tol=1e-6)
    d = maxdiff(back, hf_reference(cfg, w, ids))
    assert d <= TOL, f'read-back file vs HF reference: max abs diff {d:.3g}'
    return f'tensors = source in razor layout (max diff {worst:.2g}); read-back logits max diff {d:.2g}'


def worst_position(a, ref):
    d = np.abs(a - ref).max(axis=1)
    return f'max abs diff {d.max():.3g} at position {int(d.argmax())} of {len(d)}'


def check_razor(tmp, key, spec, *args, flag_sets=((),)):
    """razor's logits (with each set of flags) within TOL of the HF reference at every position."""
    cfg, w, out, ids = exported(tmp, key, spec, *args)
    ref = hf_reference(cfg, w, ids)
    notes = []
    for flags in flag_sets:
        a = razor_logits(out, ids, tmp, *flags)
        assert a.shape == ref.shape, f'razor {" ".join(flags)}: logits shape {a.shape}, expected {ref.shape}'
        assert maxdiff(a, ref) <= TOL, f'razor {" ".join(flags)} vs HF reference: {worst_position(a, ref)}'
        notes.append(f'{" ".join(flags) or "default"}: max diff {maxdiff(a, ref):.2g}')
    return f'{len(ids)} tokens; ' + ', '.join(notes)


def write_v1(path, c, w):
    """A razor version 1 file (model.h: the first 80 header bytes, float32 tensors without padding) of a
    read-back Llama model c, w."""
    L = c['n_layers']
    stack = lambda n: np.stack([w[f'model.layers.{i}.{n}.weight'] for i in range(L)])
    parts = [w['model.embed_tokens.weight'], stack('input_layernorm'), stack('self_attn.q_proj'),
             stack('self_attn.k_proj'), stack('self_attn.v_proj'), stack('self_attn.o_proj'),
             stack('post_attention_layernorm'), stack('mlp.gate_proj'), stack('mlp.down_proj'),
             stack('mlp.up_proj'), w['model.norm.weight']] + ([] if c['shared_classifier'] else [w['lm_head.weight']])
    header = struct.pack('<I12i2fi3fi', *[c[k] if k != 'version' else 1 for k in RAZOR_FIELDS])
    with open(path, 'wb') as f:
        f.write(header + bytes(256 - len(header)) + b''.join(a.astype('<f4').tobytes() for a in parts))


def check_bin(tmp):
    """--bin re-writes a model file: the shipped model.bin (razor v1) and a llama2.c version 0 file become
    bf16 files whose razor logits equal -w bf16 on the original bit for bit, and q8 files near them."""
    shipped = os.path.join(ROOT, 'model.bin')
    spec = GOOD['mha_f32_untied']
    cfg, w, out, ids = exported(tmp, 'good_mha_f32_untied', spec)
    legacy = os.path.join(tmp, 'bin_v0.bin')
    r = export(legacy, '--hf', os.path.join(tmp, 'good_mha_f32_untied'), '--legacy')
    assert r.returncode == 0, r.stderr
    notes = []
    for source, ids_ in ((shipped, IDS), (legacy, ids)):
        bf16, q8 = os.path.join(tmp, 'bin_bf16.bin'), os.path.join(tmp, 'bin_q8.bin')
        q8_fits = source == shipped  # (the llama2.c file's hidden width, 48, is no multiple of 32)
        for path, dtype in ((bf16, 'bf16'), (q8, 'q8'))[:2 if q8_fits else 1]:
            r = export(path, '--bin', source, '--dtype', dtype)
            assert r.returncode == 0, f'--bin {os.path.basename(source)} --dtype {dtype}: {r.stderr.strip()}'
        a, b = razor_run(bf16, ids_, tmp), razor_run(source, ids_, tmp, '-w', 'bf16')
        assert a.tobytes() == b.tobytes(), f'{os.path.basename(source)}: the bf16 file != -w bf16'
        if not q8_fits:
            continue
        f32 = razor_logits(source, ids_, tmp)
        d = maxdiff(razor_logits(q8, ids_, tmp), f32)
        assert d <= 0.06 * float(np.max(np.abs(f32))), f'{os.path.basename(source)}: q8 vs f32 {d:.3g}'
        notes.append(f'{os.path.basename(source)}: q8 vs f32 {d:.2g}')
    r = export(os.path.join(tmp, 'bin_bad.bin'), '--bin', os.path.join(tmp, 'bin_q8.bin'), '--dtype', 'bf16')
    assert r.returncode != 0 and 'float32' in r.stderr, f'a q8 file is not re-written: {r.stderr.strip()}'
    return '; '.join(notes)


def check_v1(tmp):
    """razor still reads version 1 files: one written here from a read-back v2 file (head_dim != dim / heads,
    GQA, untied), and the repository's model.bin (whatever version it is now)."""
    spec = GOOD['head_dim_ne_dim_over_heads_gqa']
    cfg, w, out, ids = exported(tmp, 'good_head_dim_ne_dim_over_heads_gqa', spec)
    c, got = read_export(out)
    v1 = os.path.join(tmp, 'v1.bin')
    write_v1(v1, c, got)
    c1, back, _ = readback_logits(v1, ids)
    assert c1['version'] == 1
    ref = hf_reference(cfg, w, ids)
    d = maxdiff(back, ref)
    assert d <= TOL, f'the v1 file read back vs HF reference: max abs diff {d:.3g}'
    d = maxdiff(razor_logits(v1, ids, tmp), ref)
    assert d <= TOL, f'razor (v1 file) vs HF reference: max abs diff {d:.3g}'
    shipped = os.path.join(ROOT, 'model.bin')
    cm, backm, _ = readback_logits(shipped, IDS)
    dm = maxdiff(razor_logits(shipped, IDS, tmp), backm)
    assert dm <= TOL, f'razor model.bin (version {cm["version"]}) vs its read-back: max abs diff {dm:.3g}'
    return f'v1 file max diff {d:.2g}; model.bin (version {cm["version"]}) max diff {dm:.2g}'


# --dtype: a Llama (untied: wcls too) and a Qwen2 (tied, biases), every width a multiple of 32 (the
# Qwen2's odd vocab_size puts padding after its q8 embedding's values and scales); and, for bf16 alone, a
# Llama whose widths are not (padding after bf16 matrices)
DTYPE_MODELS = {'llama': dict(dim=64, hidden=128, heads=4, kv=2, seed=21),
                'qwen2': dict(family='qwen2', dim=32, hidden=96, heads=4, kv=2, vocab=65, tied=True, theta=1e6,
                              eps=1e-6, seed=22),
                'llama_odd_widths': dict(dim=40, hidden=56, heads=5, kv=5, vocab=65, seed=23)}
# q8 vs f32 logits, relative to the largest |logit|. Rounding to a group's scale (max |w| / 127) leaves
# each weight an error of RMS scale / sqrt(12): about 0.5% of the weights' spread (the max of a Gaussian
# group of 32 is about 2.1 sigma). Some ten quantised matrices lie on each path through these 2-layer
# models, and their sharp attention (scores of several units) amplifies the q/k errors: numpy on the very
# q8 values (no razor) puts the largest difference at 2.9% (Llama) and 3.1% (Qwen2) of the largest logit
# (RMS 2.7% and 1.8%). The bound is about twice that; a wrong scale or group would be off by ~100%. The
# exact check is razor -A f32 on the q8 file against numpy on its dequantised values, within TOL.
Q8_REL = 0.06


def check_dtype_tensors(tmp, model, dtype):
    """The --dtype file's tensors against the source: bf16 bits = the float32 value rounded to nearest
    even; q8 dequantised within scale / 2 (scales no larger than max |w| / 127 of their group); norms and
    biases float32 and exact. Size against the f32 file's."""
    spec = DTYPE_MODELS[model]
    cfg, w, out, ids = exported(tmp, f'dtype_{model}_{dtype}', spec, '--dtype', dtype)
    _, _, out32, _ = exported(tmp, f'dtype_{model}_f32', spec)
    raw = {}
    c, got = read_export(out, raw)
    wt = {'bf16': WEIGHT_BF16, 'q8': WEIGHT_Q8}[dtype]
    check_header(c, cfg, w, wt)
    want = razor_layout(cfg, w)
    assert set(got) == set(want), f'tensors: {sorted(set(got) ^ set(want))[:4]} differ'
    n_matrix = n_other = 0
    worst = 0.0
    for name, a in want.items():
        kind, stored, scales = raw[name]
        base = name.rsplit('.', 1)[0]
        matrix = name.endswith('.weight') and (base in MATRICES or base.split('.', 3)[-1] in MATRICES)
        if not matrix:
            assert kind == 'f32' and np.array_equal(got[name], a.astype(np.float32)), f'{name} ({kind}) differs'
            n_other += a.size
            continue
        n_matrix += a.size
        assert kind == dtype, f'{name} stored as {kind}'
        if dtype == 'bf16':
            bad = np.flatnonzero(stored != bf16_bits(a))
            assert not bad.size, (f'{name}: {bad.size} bf16 values are not the rounded float32 ones, e.g. at '
                                  f'{bad[0]}: {stored.ravel()[bad[0]]:#06x} for {a.ravel()[bad[0]]!r}')
        else:
            groups = a.reshape(-1, Q8_GROUP)
            s = scales.reshape(-1).astype(np.float64)
            err = np.abs(got[name].reshape(-1, Q8_GROUP) - groups).max(axis=1)
            assert np.all(err <= s / 2 * (1 + 1e-6) + 1e-30), \
                f'{name}: a dequantised value is {np.max(err / np.maximum(s, 1e-30)):.3g} scales from the source'
            amax = np.abs(groups).max(axis=1)
            assert np.all(s <= amax / 127 * (1 + 1e-6) + 1e-30), f'{name}: a scale exceeds max |w| / 127'
            worst = max(worst, float(np.max(err / np.maximum(amax, 1e-30))))
    size, size32 = os.path.getsize(out), os.path.getsize(out32)
    per = {'bf16': 2, 'q8': 1 + 4 / Q8_GROUP}[dtype]
    ideal = (per * n_matrix + 4 * n_other) / (4 * (n_matrix + n_other))
    assert abs(size / size32 - ideal) < 0.01, f'size {size} is {size / size32:.3f} of f32 {size32} (ideal {ideal:.3f})'
    note = f'; worst q8 error {worst:.2g} of the group max' if dtype == 'q8' else ''
    return f'{size} bytes = {size / size32:.3f} of f32 (ideal {ideal:.3f}){note}'


def check_dtype_f32(tmp, model):
    """--dtype f32 is the default: the same bytes."""
    spec = DTYPE_MODELS[model]
    out = exported(tmp, f'dtype_{model}_f32_explicit', spec, '--dtype', 'f32')[2]
    out32 = exported(tmp, f'dtype_{model}_f32', spec)[2]
    with open(out, 'rb') as f, open(out32, 'rb') as g:
        assert f.read() == g.read(), 'the --dtype f32 file differs from the default one'
    return f'{os.path.getsize(out)} bytes'


def check_dtype_bf16_razor(tmp, model):
    """razor on the bf16 file: bit for bit razor -w bf16 on the f32 file (prompt path and -B 1), and within
    TOL of numpy on the bf16 values it holds with -A f32 (by default, on a CPU with AVX512-BF16, razor
    rounds the matmuls' inputs to bf16 as well; test_razor.c holds that to its reference)."""
    spec = DTYPE_MODELS[model]
    out16 = exported(tmp, f'dtype_{model}_bf16', spec, '--dtype', 'bf16')[2]
    _, _, out32, ids = exported(tmp, f'dtype_{model}_f32', spec)
    for flags in ((), ('-B', '1')):
        a = razor_run(out16, ids, tmp, *flags)
        b = razor_run(out32, ids, tmp, '-w', 'bf16', *flags)
        assert a.shape == b.shape and a.tobytes() == b.tobytes(), \
            f'razor {" ".join(flags)}: bf16 file vs -w bf16 on the f32 file: max abs diff {maxdiff(a, b):.3g}'
    back = readback_logits(out16, ids)[1]
    d = maxdiff(razor_run(out16, ids, tmp, '-A', 'f32').astype(np.float64), back)
    assert d <= TOL, f'razor (bf16 file) vs numpy on its bf16 values: max abs diff {d:.3g}'
    return f'bit-identical; vs numpy on the bf16 values max diff {d:.2g}'


def check_dtype_q8_razor(tmp, model):
    """razor on the q8 file: within Q8_REL of the largest |logit| of razor on the f32 file, the same top
    token wherever the f32 logits' top two are further apart than twice that difference; within TOL of
    numpy on the dequantised file with -A f32 (through the prompt path and -B 1; by default razor rounds the
    matmuls' inputs to int8 too, which the first two checks include)."""
    spec = DTYPE_MODELS[model]
    cfg, w, out8, ids = exported(tmp, f'dtype_{model}_q8', spec, '--dtype', 'q8')
    out32 = exported(tmp, f'dtype_{model}_f32', spec)[2]
    a, b = razor_logits(out8, ids, tmp), razor_logits(out32, ids, tmp)
    d, top = maxdiff(a, b), float(np.max(np.abs(b)))
    back = readback_logits(out8, ids)[1]
    simulated = maxdiff(back, hf_reference(cfg, w, ids))
    assert d <= Q8_REL * top, (f'razor q8 vs f32 logits: max abs diff {d:.3g} = {d / top:.1%} of the largest '
                               f'|logit| {top:.3g} (numpy on the q8 values: {simulated:.3g})')
    top2 = np.sort(b, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 2 * d
    same = a.argmax(axis=1) == b.argmax(axis=1)
    assert np.all(same[clear]), f'top-1 differs at positions {np.flatnonzero(clear & ~same).tolist()}'
    for flags in (('-A', 'f32'), ('-A', 'f32', '-B', '1')):  # -A f32: the inputs unrounded, the weights alone
        e = maxdiff(razor_logits(out8, ids, tmp, *flags), back)
        assert e <= TOL, f'razor {" ".join(flags)} (q8 file) vs numpy on its dequantised values: max abs diff {e:.3g}'
    return (f'max diff vs f32 {d:.2g} = {d / top:.1%} of the largest logit (numpy: {simulated:.2g}); top-1 same at '
            f'{int(same.sum())}/{len(ids)} positions ({int(clear.sum())} clear-cut); vs numpy on the q8 values {e:.2g}')


# chat templates (written for these tests, in the style of the families' tokenizer_config.json files)
def added(tokens):
    return {str(i): {'content': t, 'lstrip': False, 'normalized': False, 'rstrip': False, 'single_word': False,
                     'special': True} for t, i in tokens.items()}


CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>' + '\\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
LLAMA3_TEMPLATE = ("{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + "
                   "'<|end_header_id|>\\n\\n' + m['content'] | trim + '<|eot_id|>' }}{% endfor %}"
                   "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
                   "{% endif %}")
LLAMA2_TEMPLATE = ("{% for m in messages %}{% if m['role'] == 'user' %}{{ bos_token + '[INST] ' + m['content'] + "
                   "' [/INST]' }}{% else %}{{ ' ' + m['content'] + eos_token }}{% endif %}{% endfor %}")
CHAT_CASES = {  # name: (spec, tokenizer_config.json or None, chat_template, chat_tokens)
    'qwen2_chatml': (dict(family='qwen2', kv=2, tied=True, seed=41),
                     {'added_tokens_decoder': added({'<|endoftext|>': 61, '<|im_start|>': 62, '<|im_end|>': 63}),
                      'chat_template': CHATML, 'eos_token': '<|im_end|>', 'pad_token': '<|endoftext|>'},
                     CHAT_CHATML, [62, 63, -1, -1]),
    'llama3_template': (dict(seed=42),
                        {'added_tokens_decoder': added({'<|begin_of_text|>': 56, '<|end_of_text|>': 57,
                                                        '<|start_header_id|>': 58, '<|end_header_id|>': 59,
                                                        '<|eot_id|>': 60}),
                         'bos_token': '<|begin_of_text|>', 'chat_template': LLAMA3_TEMPLATE, 'eos_token': '<|eot_id|>'},
                        CHAT_LLAMA3, [58, 59, 60, -1]),
    'llama2_inst_template': (dict(seed=43), {'added_tokens_decoder': added({'<unk>': 0, '<s>': 1, '</s>': 2}),
                                             'bos_token': '<s>', 'chat_template': LLAMA2_TEMPLATE, 'eos_token': '</s>'},
                             CHAT_LLAMA2, [-1] * 4),
    'no_template': (dict(seed=44), None, CHAT_LLAMA2, [-1] * 4),
}


def check_chat(tmp, name):
    spec, tok_cfg, kind, tokens = CHAT_CASES[name]
    out = exported(tmp, 'chat_' + name, spec, tokenizer_config=tok_cfg)[2]
    c = read_export(out)[0]
    assert (c['chat_template'], c['chat_tokens']) == (kind, tokens), \
        f'chat_template {c["chat_template"]}, chat_tokens {c["chat_tokens"]}; expected {kind}, {tokens}'
    return f'chat_template {kind}, chat_tokens {tokens}'


# BOS (the add_bos header field): folders with the test tokenizers of tests/make_bbpe_vectors.js, whose
# tests/bbpe_special_ids.json holds what Hugging Face tokenizers gives with add_special_tokens=True.
# name: (spec, tokenizer.json, tokenizer_config.json or None, config.json bos_token_id, (add_bos, bos_id))
QWEN_CONFIG = {'add_bos_token': False, 'bos_token': None, 'eos_token': '<|im_end|>', 'chat_template': CHATML,
               'added_tokens_decoder': added({'<|endoftext|>': 1972, '<|im_start|>': 1973, '<|im_end|>': 1974})}
BOS_CASES = {
    'qwen2_bos_token_id_null': (dict(family='qwen2', kv=2, tied=True, vocab=1998, seq_len=256, seed=45), 'qwen2',
                                QWEN_CONFIG, None, (0, -1)),
    'qwen2_bos_token_id_endoftext': (dict(family='qwen2', kv=2, tied=True, vocab=1998, seq_len=256, seed=46),
                                     'qwen2', QWEN_CONFIG, 1972, (0, 1972)),
    'llama3_template_bos': (dict(vocab=1979, seq_len=256, seed=47), 'llama3', {'bos_token': '<|begin_of_text|>'},
                            1972, (1, 1972)),
}


def check_bos(tmp, name):
    """The exported add_bos/bos_id, then razor -m tokenize == the tokenizers library with
    add_special_tokens=True, and -m logits on the text == on those ids (no BOS slipped in, or one)."""
    spec, kind, tok_cfg, bos, want = BOS_CASES[name]
    folder, out = os.path.join(tmp, 'bos_' + name), os.path.join(tmp, 'bos_' + name + '.bin')
    make_hf(folder, spec, edit_config=lambda cfg: cfg.update(bos_token_id=bos))
    source = 'bbpe_tokenizer.json' if kind == 'llama3' else 'bbpe_tokenizer_qwen2.json'
    shutil.copy(os.path.join(ROOT, 'tests', source), os.path.join(folder, 'tokenizer.json'))
    if tok_cfg is not None:
        with open(os.path.join(folder, 'tokenizer_config.json'), 'w') as f:
            json.dump(tok_cfg, f, indent=1)
    tok = os.path.join(tmp, 'bos_' + name + '.tok')
    r = export(out, '--hf', folder, '--tokenizer', os.path.join(folder, 'tokenizer.json'), '--tokenizer-out', tok)
    assert r.returncode == 0, f'export failed: {r.stderr.strip()[-300:]}'
    c = read_export(out)[0]
    assert (c['version'], c['add_bos'], c['bos_id']) == (3, *want), \
        f'version {c["version"]}, add_bos {c["add_bos"]}, bos_id {c["bos_id"]}; expected 3, {want}'
    with open(os.path.join(ROOT, 'tests', 'bbpe_special_ids.json'), encoding='utf-8') as f:
        cases = json.load(f)[kind]
    razor = RAZOR if os.path.isabs(RAZOR) else os.path.join(ROOT, RAZOR)
    for text, ids in cases:
        r = subprocess.run([razor, out, '-z', tok, '-m', 'tokenize', '-i', text], capture_output=True, text=True)
        assert r.returncode == 0, f'razor -m tokenize exited {r.returncode}: {r.stderr.strip()[:200]}'
        got = [int(x) for x in r.stdout.split()]
        assert got == ids, f'{text[:30]!r}: razor {got[:8]}..., tokenizers {ids[:8]}...'
        if ids:
            by_text = os.path.join(tmp, 'bos_text.f32')
            r = subprocess.run([razor, out, '-z', tok, '-m', 'logits', '-K', 'f32', '-i', text, '-o', by_text],
                               capture_output=True, text=True)
            assert r.returncode == 0, f'razor -m logits -i exited {r.returncode}: {r.stderr.strip()[:200]}'
            d = maxdiff(np.fromfile(by_text, dtype='<f4').reshape(len(ids), -1), razor_run(out, ids, tmp))
            assert d == 0, f'{text[:30]!r}: -m logits -i text vs -I ids: max abs diff {d:.3g}'
    return f'add_bos {want[0]}, bos_id {want[1]}; {len(cases)} texts: tokenize and logits as the library'


GOOD = {
    'mha_f32_untied': dict(),
    'gqa_f16_sharded_tied_theta5e5': dict(kv=2, dtype='F16', shards=3, tied=True, theta=5e5, seed=1),
    'mqa_bf16_llama3_150_tokens': dict(heads=4, kv=1, dtype='BF16', theta=5e5, seed=2, seq_len=256, n_ids=150,
                                       rope=dict(rope_type='llama3', factor=8.0, low_freq_factor=1.0,
                                                 high_freq_factor=4.0, original_max_position_embeddings=256)),
    'head_dim_ne_dim_over_heads_gqa': dict(dim=32, heads=4, kv=2, head_dim=12, seed=3, eps=1e-6),
    'rope_parameters_llama3_mistral_eoslist': dict(family='mistral', eos=[2, 5], rope_params=True,
                                                   theta=5e5, dtype='BF16', shards=2, seed=4, heads=2, kv=1,
                                                   head_dim=16, rope=dict(rope_type='llama3', factor=4.0,
                                                   low_freq_factor=1.0, high_freq_factor=2.0,
                                                   original_max_position_embeddings=64)),
    'untied_but_lm_head_absent': dict(lm_head=False, seed=5, layers=3),
}
FAMILY_CASES = {  # name: (spec, export.py arguments)
    'qwen2_gqa_tied_biases_150_tokens': (dict(family='qwen2', dim=32, hidden=64, heads=4, kv=2, tied=True,
                                              theta=1e6, eps=1e-6, seq_len=256, n_ids=150, seed=11), []),
    'qwen2_bf16_source_untied_mha': (dict(family='qwen2', dtype='BF16', heads=4, kv=4, tied=False, theta=1e6,
                                          eps=1e-6, seed=14), []),
    'qwen3_head_dim16_qk_norm_150_tokens': (dict(family='qwen3', dim=32, hidden=64, heads=4, kv=2, head_dim=16,
                                                 tied=True, theta=1e6, eps=1e-6, seq_len=256, n_ids=150, seed=12),
                                            []),
    'baichuan13b_alibi_5_heads_150_tokens': (dict(family='baichuan', dim=40, hidden=64, heads=5, kv=5, eps=1e-6,
                                                  seq_len=256, n_ids=150, seed=13), ['--alibi']),
    'baichuan2_13b_alibi_normhead': (dict(family='baichuan', dim=40, hidden=64, heads=5, kv=5, eps=1e-6, seq_len=64,
                                          vocab=BAICHUAN2_VOCAB, seed=15), ['--alibi']),
}


def check_legacy(tied, tmp):
    folder = os.path.join(tmp, f'legacy{tied}')
    cfg, w = make_hf(folder, dict(tied=tied, kv=2, seed=6))
    out = os.path.join(tmp, f'legacy{tied}.bin')
    r = export(out, '--hf', folder, '--legacy')
    assert r.returncode == 0, f'export failed: {r.stderr.strip()}'
    with open(out, 'rb') as f:
        vocab = struct.unpack('<7i', f.read(28))[5]
    assert vocab == (64 if tied else -64), f'legacy vocab_size field {vocab}'
    ref = hf_reference(cfg, w, IDS)
    d = maxdiff(readback_logits(out, IDS)[1], ref)
    assert d <= TOL, f'read-back legacy file vs HF reference: max abs diff {d:.3g}'
    d = maxdiff(razor_logits(out, IDS, tmp), ref)
    assert d <= TOL, f'razor (legacy file) vs HF reference: max abs diff {d:.3g}'
    return f'max diff {d:.2g}'


def drop(name):
    return lambda t: t.pop(name)


def reshape_bad(t):
    a, dt = t['model.layers.1.mlp.up_proj.weight']
    t['model.layers.1.mlp.up_proj.weight'] = a[:, :-1].copy(), dt


def add_bias(t):
    t['model.layers.0.self_attn.q_proj.bias'] = np.zeros(32, '<f4'), 'F32'


def add_o_bias(t):
    t['model.layers.1.self_attn.o_proj.bias'] = np.full(32, 0.5, '<f4'), 'F32'


def setter(**kw):
    return lambda c: c.update(kw)


LLAMA3 = dict(rope_type='llama3', factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
              original_max_position_embeddings=32)
QWEN2, QWEN3 = dict(family='qwen2', kv=2, tied=True), dict(family='qwen3', kv=2, head_dim=16, tied=True)
BAICHUAN = dict(family='baichuan', dim=40, heads=5, kv=5)
QWEN3_MOE = dict(architectures=['Qwen3MoeForCausalLM'], model_type='qwen3_moe', num_experts=8, num_experts_per_tok=2,
                 moe_intermediate_size=16, decoder_sparse_step=1, norm_topk_prob=True)
BAD = {  # name: (spec, edit_config, edit_tensors, extra args, words the error must contain (a tuple: one of them))
    'missing_tensor': ({}, None, drop('model.layers.1.self_attn.k_proj.weight'), [],
                       ['missing', 'model.layers.1.self_attn.k_proj.weight']),
    'missing_embedding_sharded': ({'shards': 2}, None, drop('model.embed_tokens.weight'), [],
                                  ['model.embed_tokens.weight']),
    'wrong_shape': ({}, None, reshape_bad, [], ['model.layers.1.mlp.up_proj.weight', 'shape']),
    'unknown_architecture': ({}, setter(architectures=['GPTNeoXForCausalLM'], model_type='gpt_neox'), None, [],
                             ['GPTNeoXForCausalLM']),
    'llama_attention_bias': ({}, setter(attention_bias=True), None, [], ['attention_bias']),
    'llama_mlp_bias': ({}, setter(mlp_bias=True), None, [], ['mlp_bias']),
    'llama_bias_tensor': ({}, None, add_bias, [], ['q_proj.bias']),
    'qwen2_o_proj_bias_tensor': (QWEN2, None, add_o_bias, [], ['o_proj.bias']),
    'mistral_sliding_window': ({'family': 'mistral'}, setter(sliding_window=4096), None, [], ['sliding_window']),
    'qwen2_use_sliding_window': (QWEN2, setter(use_sliding_window=True), None, [], ['use_sliding_window']),
    'moe_num_local_experts': ({}, setter(num_local_experts=8), None, [], ['num_local_experts']),
    'qwen2_moe_num_experts': (QWEN2, setter(num_experts=8, num_experts_per_tok=2), None, [], ['num_experts']),
    'qwen3_moe_architecture': (QWEN3, setter(**QWEN3_MOE), None, [], [('Qwen3MoeForCausalLM', 'num_experts')]),
    'baichuan_without_alibi': (BAICHUAN, None, None, [], ['--alibi']),
    'alibi_on_llama': ({}, None, None, ['--alibi'], ['--alibi']),
    'alibi_on_qwen2': (QWEN2, None, None, ['--alibi'], ['--alibi']),
    'q8_width_not_multiple_of_32': ({}, None, None, ['--dtype', 'q8'], ['q8', '48', '32']),
    'hidden_act': ({}, setter(hidden_act='gelu'), None, [], ['hidden_act']),
    'rope_type_linear': ({}, setter(rope_scaling={'type': 'linear', 'factor': 2.0}), None, [], ['rope', 'linear']),
    'rope_type_yarn_params': ({'rope_params': True}, setter(rope_parameters={'rope_type': 'yarn', 'factor': 2.0}),
                              None, [], ['rope', 'yarn']),
    'legacy_theta': ({'theta': 5e5}, None, None, ['--legacy'], ['rope_theta']),
    'legacy_head_dim': ({'head_dim': 16}, None, None, ['--legacy'], ['head_dim']),
    'legacy_eps': ({'eps': 1e-6}, None, None, ['--legacy'], ['norm_eps']),
    'legacy_rope_scaling': ({'rope': LLAMA3}, None, None, ['--legacy'], ['rope_scaling']),
    'legacy_qwen2_biases': (dict(QWEN2, theta=10000.0), None, None, ['--legacy'], ['--legacy']),
    'legacy_bf16': ({}, None, None, ['--legacy', '--dtype', 'bf16'], ['--legacy']),
}


def check_bad(name, spec, edit_config, edit_tensors, args, words, tmp):
    folder = os.path.join(tmp, 'bad_' + name)
    make_hf(folder, spec, edit_config, edit_tensors)
    return check_refused(folder, name, args, words, tmp)


def check_refused(folder, name, args, words, tmp, source='--hf'):
    out = os.path.join(tmp, 'bad_' + name + '.bin')
    r = export(out, source, folder, *args)
    assert r.returncode != 0, 'export succeeded'
    for word in words:
        assert any(w in r.stderr for w in (word if isinstance(word, tuple) else (word,))), \
            f'error message lacks {word!r}: {r.stderr.strip()}'
    assert 'Traceback' not in r.stderr, f'uncaught exception: {r.stderr.strip()[-300:]}'
    assert not os.path.exists(out) and not os.path.exists(out + '.tmp'), 'output file left behind'
    return r.stderr.strip().splitlines()[-1]


def check_truncated(tmp, keep):
    folder = os.path.join(tmp, f'trunc{keep}')
    make_hf(folder, {})
    path = os.path.join(folder, 'model.safetensors')
    size = os.path.getsize(path)
    with open(path, 'r+b') as f:
        f.truncate(keep if keep > 0 else size + keep)
    return check_refused(folder, f'trunc{keep}', [], ['truncated'], tmp)


def check_tokenizer(tmp):
    import io
    import sentencepiece as spm
    rng = np.random.default_rng(7)
    words = ['the', 'cat', 'sat', 'on', 'mat', 'razor', 'attention', 'héllo', 'naïve', 'cache', 'head', 'key']
    lines = [' '.join(rng.choice(words, 8)) for _ in range(300)]
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=buf, vocab_size=320,
                                   model_type='bpe', byte_fallback=True, hard_vocab_limit=False,
                                   minloglevel=2)
    tok = os.path.join(tmp, 'tok.model')
    with open(tok, 'wb') as f:
        f.write(buf.getvalue())
    sp = spm.SentencePieceProcessor(model_file=tok)
    folder = os.path.join(tmp, 'tokmodel')
    make_hf(folder, {'vocab': 64})
    outdir = os.path.join(tmp, 'tokout')
    os.makedirs(outdir)
    for extra, where in [([], os.path.join(outdir, 'tokenizer.bin')),
                         (['--tokenizer-out', os.path.join(tmp, 'custom.bin')], os.path.join(tmp, 'custom.bin'))]:
        r = export(os.path.join(outdir, 'm.bin'), '--hf', folder, '--tokenizer', tok, *extra)
        assert r.returncode == 0, f'export failed: {r.stderr.strip()}'
        with open(where, 'rb') as f:
            data = f.read()
        maxlen, at, pieces = struct.unpack('<i', data[:4])[0], 4, []
        for i in range(sp.vocab_size()):
            score, n = struct.unpack('<fi', data[at:at + 8])
            pieces.append(data[at + 8:at + 8 + n])
            assert abs(score - sp.get_score(i)) < 1e-6, f'score of id {i}'
            at += 8 + n
        assert at == len(data), 'trailing bytes in tokenizer.bin'
        want = [sp.id_to_piece(i).replace('\u2581', ' ').encode() for i in range(sp.vocab_size())]
        want[sp.bos_id()], want[sp.eos_id()] = b'\n<s>\n', b'\n</s>\n'  # llama2.c's convention
        assert pieces == want, 'pieces differ'
        assert maxlen == max(map(len, want))
    return f'{sp.vocab_size()} tokens'


def check_tokenizer_json(tmp):
    """A Hugging Face byte-level BPE tokenizer.json -> RZTK, which razor then encodes with."""
    folder = os.path.join(tmp, 'bbpemodel')
    make_hf(folder, {'vocab': 2048})
    outdir = os.path.join(tmp, 'bbpeout')
    os.makedirs(outdir)
    r = export(os.path.join(outdir, 'm.bin'), '--hf', folder, '--tokenizer',
               os.path.join(ROOT, 'tests', 'bbpe_tokenizer.json'))
    assert r.returncode == 0, f'export failed: {r.stderr.strip()}'
    with open(os.path.join(outdir, 'tokenizer.bin'), 'rb') as f, \
            open(os.path.join(ROOT, 'tests', 'bbpe_tokenizer.bin'), 'rb') as g:
        assert f.read() == g.read(), 'the RZTK file differs from tests/bbpe_tokenizer.bin (made from the same json)'
    text = 'It is a truth universally acknowledged'
    r = subprocess.run([RAZOR, os.path.join(outdir, 'm.bin'), '-m', 'tokenize', '-i', text], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, f'razor tokenize failed: {r.stderr.strip()}'
    ids = [int(x) for x in r.stdout.split()]
    # BOS is the tokenizer's: its template's <|begin_of_text|> (1972), not config.json's bos_token_id 1
    assert ids[:6] == [1972, 551, 1857, 1953, 281, 1753], \
        f'ids {ids[:6]} (BOS 1972, then tests/bbpe_vectors.h says 551 1857 1953 281 1753 ...)'
    return f'{len(ids)} ids'


def check_no_torch(tmp):
    import importlib.util
    if importlib.util.find_spec('torch'):
        return 'SKIP (torch is installed)'
    pt = os.path.join(tmp, 'x.pt')
    with open(pt, 'wb') as f:
        f.write(b'not really')
    check_refused(pt, 'pt', [], ['PyTorch'], tmp, source='--checkpoint')
    meta = os.path.join(tmp, 'meta')
    os.makedirs(meta)
    with open(os.path.join(meta, 'params.json'), 'w') as f:
        json.dump({'dim': 32, 'n_layers': 1, 'n_heads': 4, 'vocab_size': 64, 'norm_eps': 1e-5}, f)
    open(os.path.join(meta, 'consolidated.00.pth'), 'wb').close()
    return check_refused(meta, 'meta', [], ['PyTorch'], tmp, source='--meta')


def check_meta_and_checkpoint(tmp):
    """One random GQA model as an HF folder, a Meta folder (params.json + consolidated.00.pth) and a
    llama2.c checkpoint (.pt): all three exports must give razor the same logits."""
    import importlib.util
    if not importlib.util.find_spec('torch'):
        return 'SKIP (torch is not installed)'
    import torch
    dim, layers, heads, kv, hidden, vocab, seq_len = 64, 2, 4, 2, 96, 64, 32
    folder = os.path.join(tmp, 'three_hf')
    cfg, w = make_hf(folder, dict(dim=dim, layers=layers, heads=heads, kv=kv, hidden=hidden, vocab=vocab,
                                  seq_len=seq_len, seed=9))
    names = {'tok_embeddings': 'model.embed_tokens', 'norm': 'model.norm', 'output': 'lm_head'}
    for i in range(layers):
        for m, h in [('attention.wq', 'self_attn.q_proj'), ('attention.wk', 'self_attn.k_proj'),
                     ('attention.wv', 'self_attn.v_proj'), ('attention.wo', 'self_attn.o_proj'),
                     ('feed_forward.w1', 'mlp.gate_proj'), ('feed_forward.w2', 'mlp.down_proj'),
                     ('feed_forward.w3', 'mlp.up_proj'), ('attention_norm', 'input_layernorm'),
                     ('ffn_norm', 'post_attention_layernorm')]:
            names[f'layers.{i}.{m}'] = f'model.layers.{i}.{h}'
    sd = {}
    for m, h in names.items():
        a = w[h + '.weight']
        if m.endswith('attention.wq'):
            a = hf_to_interleaved(a, heads)
        elif m.endswith('attention.wk'):
            a = hf_to_interleaved(a, kv)
        sd[m + '.weight'] = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    meta = os.path.join(tmp, 'three_meta')
    os.makedirs(meta)
    with open(os.path.join(meta, 'params.json'), 'w') as f:
        json.dump({'dim': dim, 'n_layers': layers, 'n_heads': heads, 'n_kv_heads': kv, 'vocab_size': vocab,
                   'multiple_of': 32, 'norm_eps': 1e-5, 'rope_theta': 10000.0}, f)
    torch.save(sd, os.path.join(meta, 'consolidated.00.pth'))
    pt = os.path.join(tmp, 'three_ckpt.pt')
    torch.save({'model_args': dict(dim=dim, n_layers=layers, n_heads=heads, n_kv_heads=kv, vocab_size=vocab,
                                   hidden_dim=hidden, multiple_of=32, norm_eps=1e-5, max_seq_len=seq_len,
                                   dropout=0.0),
                'model': {'_orig_mod.' + k: v for k, v in sd.items()}, 'iter_num': 0, 'best_val_loss': 1.0,
                'config': {}}, pt)
    binfolder = os.path.join(tmp, 'three_hf_bin')  # the same HF checkpoint as pytorch_model.bin
    os.makedirs(binfolder)
    shutil.copy(os.path.join(folder, 'config.json'), binfolder)
    torch.save({h: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for h, a in w.items()},
               os.path.join(binfolder, 'pytorch_model.bin'))
    ref = hf_reference(cfg, w, IDS)
    logits = {}
    for src, path in [('--hf', folder), ('--hf', binfolder), ('--meta', meta), ('--checkpoint', pt)]:
        src_name = src if path != binfolder else '--hf pytorch_model.bin'
        out = os.path.join(tmp, 'three' + src[2:] + ('_bin' if path == binfolder else '') + '.bin')
        r = export(out, src, path)
        assert r.returncode == 0, f'export {src_name} failed: {r.stderr.strip()[-500:]}'
        c, back, _ = readback_logits(out, IDS)
        assert c['shared_classifier'] == 0 and c['n_kv_heads'] == kv and c['hidden_dim'] == hidden, \
            f'{src_name}: header {c}'
        d = maxdiff(back, ref)
        assert d <= TOL, f'{src_name}: read-back file vs HF reference: max abs diff {d:.3g}'
        logits[src_name] = razor_logits(out, IDS, tmp)
        d = maxdiff(logits[src_name], ref)
        assert d <= TOL, f'{src_name}: razor vs HF reference: max abs diff {d:.3g}'
    for src in ('--hf pytorch_model.bin', '--meta', '--checkpoint'):
        d = maxdiff(logits[src], logits['--hf'])
        assert d <= 1e-5, f'razor logits {src} vs --hf: max abs diff {d:.3g}'
    d = maxdiff(logits['--hf'], ref)
    return f'hf safetensors/pytorch_model.bin/meta/checkpoint agree; max diff vs reference {d:.2g}'


def run_tests(tests):
    """Runs each (name, check) in turn, a line of ok or FAIL for each, then the counts; returns the exit status."""
    passed = failed = 0
    for name, fn in tests:
        try:
            note = fn()
            print(f'ok    {name}' + (f'  ({note})' if note else ''), flush=True)
            passed += 1
        except Exception as e:
            print(f'FAIL  {name}: {type(e).__name__}: {e}', flush=True)
            failed += 1
    print(f'{passed} passed, {failed} failed')
    return 1 if failed else 0


def main():
    with tempfile.TemporaryDirectory(prefix='razor_export_') as tmp:
        one = (('-B', '1'),)
        prompt = ((), ('-B', '37'))  # the default block, and blocks of 37 tokens
        tests = [('reference: ALiBi slopes', check_alibi_slopes),
                 ('reference: razor layout == HF layout', lambda: check_reference_layouts(tmp)),
                 ('reference: families', lambda: check_reference_families(tmp))]
        for k, v in GOOD.items():
            tests += [(f'good {k}: export, tensors, read-back', lambda k=k, v=v: check_readback(tmp, 'good_' + k, v)),
                      (f'good {k}: razor', lambda k=k, v=v: check_razor(tmp, 'good_' + k, v, flag_sets=prompt)),
                      (f'good {k}: razor -B 1', lambda k=k, v=v: check_razor(tmp, 'good_' + k, v, flag_sets=one))]
        tests += [('legacy tied', lambda: check_legacy(True, tmp)), ('legacy untied', lambda: check_legacy(False, tmp)),
                  ('version 1 files', lambda: check_v1(tmp)),
                  ('--bin: llama2.c and razor files re-written as bf16 and q8', lambda: check_bin(tmp))]
        for k, (v, args) in FAMILY_CASES.items():
            tests += [(f'{k}: export, tensors, read-back', lambda k=k, v=v, a=args: check_readback(tmp, k, v, *a)),
                      (f'{k}: razor', lambda k=k, v=v, a=args: check_razor(tmp, k, v, *a, flag_sets=prompt)),
                      (f'{k}: razor -B 1', lambda k=k, v=v, a=args: check_razor(tmp, k, v, *a, flag_sets=one))]
        for m in DTYPE_MODELS:
            tests += [(f'--dtype f32 {m}: the default file', lambda m=m: check_dtype_f32(tmp, m)),
                      (f'--dtype bf16 {m}: tensors, size', lambda m=m: check_dtype_tensors(tmp, m, 'bf16')),
                      (f'--dtype bf16 {m}: razor == razor -w bf16 on f32', lambda m=m: check_dtype_bf16_razor(tmp, m))]
            if DTYPE_MODELS[m]['dim'] % Q8_GROUP == 0:
                tests += [(f'--dtype q8 {m}: tensors, size', lambda m=m: check_dtype_tensors(tmp, m, 'q8')),
                          (f'--dtype q8 {m}: razor', lambda m=m: check_dtype_q8_razor(tmp, m))]
        tests += [(f'chat {k}', lambda k=k: check_chat(tmp, k)) for k in CHAT_CASES]
        tests += [(f'BOS {k}', lambda k=k: check_bos(tmp, k)) for k in BOS_CASES]
        tests += [(f'refuse {k}', lambda k=k, v=v: check_bad(k, *v, tmp)) for k, v in BAD.items()]
        tests += [('refuse truncated data', lambda: check_truncated(tmp, -10)),
                  ('refuse truncated header', lambda: check_truncated(tmp, 20)),
                  ('tokenizer', lambda: check_tokenizer(tmp)), ('tokenizer.json', lambda: check_tokenizer_json(tmp)),
                  ('torch absent', lambda: check_no_torch(tmp)),
                  ('pytorch_model.bin, meta and llama2.c checkpoint', lambda: check_meta_and_checkpoint(tmp))]
        return run_tests(tests)


if __name__ == '__main__':
    sys.exit(main())
