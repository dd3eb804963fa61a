"""
tests/test_export.py: tests for export.py (plain python + numpy; run from anywhere).

It writes small random Hugging Face checkpoints (safetensors written with numpy), exports them with
export.py, and compares razor's logits (`razor OUT.bin -m logits`) with a numpy forward pass that works
on the HF tensors in HF's own layout (rotate-half RoPE, as transformers' modeling_llama does), so the
check does not depend on export.py's row permutation. The exported file is also read back with a tiny
numpy loader and run through the same forward pass in razor's interleaved layout. Bad inputs must
fail with a message naming the problem and leave no output file.

    python3 tests/test_export.py        # razor binary from $RAZOR, default ./razor
"""
import json
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


BASE = dict(dim=32, hidden=48, layers=2, heads=4, kv=4, head_dim=None, vocab=64, seq_len=32, dtype='F32',
            shards=1, tied=False, lm_head=True, theta=10000.0, eps=1e-5, rope=None, rope_params=False,
            arch='LlamaForCausalLM', eos=2, seed=0)


def make_hf(folder, spec, edit_config=None, edit_tensors=None):
    """Writes a random checkpoint; returns (config, HF name -> float64 weights)."""
    s = dict(BASE, **spec)
    rng = np.random.default_rng(s['seed'])
    hd = s['head_dim'] or s['dim'] // s['heads']
    d, q, kv, h = s['dim'], s['heads'] * hd, s['kv'] * hd, s['hidden']
    shapes = {'model.embed_tokens.weight': (s['vocab'], d), 'model.norm.weight': (d,)}
    if s['lm_head'] and not s['tied']:
        shapes['lm_head.weight'] = (s['vocab'], d)
    for i in range(s['layers']):
        p = f'model.layers.{i}.'
        shapes.update({p + 'input_layernorm.weight': (d,), p + 'self_attn.q_proj.weight': (q, d),
                       p + 'self_attn.k_proj.weight': (kv, d), p + 'self_attn.v_proj.weight': (kv, d),
                       p + 'self_attn.o_proj.weight': (d, q), p + 'post_attention_layernorm.weight': (d,),
                       p + 'mlp.gate_proj.weight': (h, d), p + 'mlp.up_proj.weight': (h, d),
                       p + 'mlp.down_proj.weight': (d, h)})
    raw = {}
    for name, shape in shapes.items():
        if len(shape) == 1:
            raw[name] = 1 + 0.2 * rng.standard_normal(shape)
        else:
            raw[name] = rng.standard_normal(shape) * (1.0 if 'embed' in name else 0.3 if 'lm_head' in name
                                                      else 1.5 / np.sqrt(shape[1]))
    cfg = {'architectures': [s['arch']], 'model_type': 'mistral' if 'Mistral' in s['arch'] else 'llama',
           'hidden_size': d, 'intermediate_size': h, 'num_hidden_layers': s['layers'],
           'num_attention_heads': s['heads'], 'num_key_value_heads': s['kv'], 'vocab_size': s['vocab'],
           'max_position_embeddings': s['seq_len'], 'rms_norm_eps': s['eps'], 'hidden_act': 'silu',
           'tie_word_embeddings': s['tied'], 'bos_token_id': 1, 'eos_token_id': s['eos'],
           'attention_bias': False, 'mlp_bias': False, 'torch_dtype': 'float32'}
    if 'Mistral' in s['arch']:
        cfg['sliding_window'] = None
    if s['head_dim']:
        cfg['head_dim'] = s['head_dim']
    rope = s['rope']
    if s['rope_params']:  # newer transformers: theta and scaling inside rope_parameters
        cfg['rope_parameters'] = dict(rope or {'rope_type': 'default'}, rope_theta=s['theta'])
    else:
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


def hf_rope(cfg):
    rp = cfg.get('rope_parameters') or {}
    theta = rp.get('rope_theta', cfg.get('rope_theta', 10000.0))
    rs = cfg.get('rope_scaling') or (rp if rp.get('rope_type') == 'llama3' else None)
    return theta, rs


def forward(w, p, ids, interleaved):
    """Llama forward pass over ids -> logits (len(ids), vocab). w uses HF tensor names. interleaved:
    q/k rows are in razor's pair layout (rotate (2i, 2i+1)); otherwise HF's rotate-half layout."""
    hd, H, KV = p['head_dim'], p['n_heads'], p['n_kv_heads']
    T = len(ids)
    ang = np.outer(np.arange(T), p['inv_freq'])
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]

    def rope(v):  # (T, heads, hd)
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
    for i in range(p['n_layers']):
        L = lambda n: w[f'model.layers.{i}.{n}.weight']
        h = norm(x, L('input_layernorm'))
        q = rope((h @ L('self_attn.q_proj').T).reshape(T, H, hd))
        k = rope((h @ L('self_attn.k_proj').T).reshape(T, KV, hd))
        v = (h @ L('self_attn.v_proj').T).reshape(T, KV, hd)
        att = np.empty((T, H, hd))
        for j in range(H):
            kvh = j // (H // KV)
            s = q[:, j] @ k[:, kvh].T / np.sqrt(hd) + mask
            s = np.exp(s - s.max(axis=1, keepdims=True))
            att[:, j] = (s / s.sum(axis=1, keepdims=True)) @ v[:, kvh]
        x = x + att.reshape(T, H * hd) @ L('self_attn.o_proj').T
        h = norm(x, L('post_attention_layernorm'))
        g = h @ L('mlp.gate_proj').T
        x = x + (g / (1 + np.exp(-g)) * (h @ L('mlp.up_proj').T)) @ L('mlp.down_proj').T
    x = norm(x, w['model.norm.weight'])
    return x @ w.get('lm_head.weight', w['model.embed_tokens.weight']).T


def hf_reference(cfg, w, ids):
    theta, rs = hf_rope(cfg)
    heads = cfg['num_attention_heads']
    hd = cfg.get('head_dim') or cfg['hidden_size'] // heads
    p = dict(head_dim=hd, n_heads=heads, n_kv_heads=cfg.get('num_key_value_heads') or heads,
             n_layers=cfg['num_hidden_layers'], eps=cfg['rms_norm_eps'], inv_freq=inv_freq(hd, theta, rs))
    if cfg.get('tie_word_embeddings'):
        w = {k: v for k, v in w.items() if k != 'lm_head.weight'}
    return forward(w, p, ids, interleaved=False)


# ----------------------------------------------------------------------------------------------------
# reading exported files back with numpy

RAZOR_FIELDS = ('magic version dim hidden_dim n_layers n_heads n_kv_heads head_dim vocab_size seq_len bos_id '
                'eos_id shared_classifier norm_eps rope_theta rope_scaling rope_factor rope_low_freq_factor '
                'rope_high_freq_factor rope_original_context').split()


def read_export(path):
    """An exported razor v1 or llama2.c v0 file -> (header dict, HF-named float64 weights, interleaved)."""
    data = np.fromfile(path, dtype=np.uint8)
    if struct.unpack('<I', data[:4].tobytes())[0] == 0x727A6172:
        c = dict(zip(RAZOR_FIELDS, struct.unpack('<I12i2fi3fi', data[:80].tobytes())))
        assert not data[80:256].any(), 'header padding is not zero'
        pos, legacy = 256, False
    else:
        c = dict(zip('dim hidden_dim n_layers n_heads n_kv_heads vocab_size seq_len'.split(),
                     struct.unpack('<7i', data[:28].tobytes())))
        c.update(shared_classifier=int(c['vocab_size'] > 0), vocab_size=abs(c['vocab_size']),
                 head_dim=c['dim'] // c['n_heads'], norm_eps=1e-5, rope_theta=10000.0, rope_scaling=0)
        pos, legacy = 28, True
    f = np.frombuffer(data[pos:].tobytes(), dtype='<f4').astype(np.float64)
    d, h, L, V = c['dim'], c['hidden_dim'], c['n_layers'], c['vocab_size']
    q, kv = c['n_heads'] * c['head_dim'], c['n_kv_heads'] * c['head_dim']
    order = [('model.embed_tokens', (V, d)), ('input_layernorm', (L, d)), ('self_attn.q_proj', (L, q, d)),
             ('self_attn.k_proj', (L, kv, d)), ('self_attn.v_proj', (L, kv, d)), ('self_attn.o_proj', (L, d, q)),
             ('post_attention_layernorm', (L, d)), ('mlp.gate_proj', (L, h, d)), ('mlp.down_proj', (L, d, h)),
             ('mlp.up_proj', (L, h, d)), ('model.norm', (d,))]
    if legacy:
        order += [('freq_cis_real', (c['seq_len'], c['head_dim'] // 2)),
                  ('freq_cis_imag', (c['seq_len'], c['head_dim'] // 2))]
    if not c['shared_classifier']:
        order.append(('lm_head', (V, d)))
    w, at = {}, 0
    for name, shape in order:
        n = int(np.prod(shape))
        a = f[at:at + n].reshape(shape)
        at += n
        if name.startswith('model.') or name == 'lm_head':
            w[name + '.weight'] = a
        elif not name.startswith('freq'):
            for i in range(L):
                w[f'model.layers.{i}.{name}.weight'] = a[i]
    assert at == len(f), f'file has {len(f) - at} floats too many'
    return c, w


def readback_logits(path, ids):
    c, w = read_export(path)
    scaling = None
    if c['rope_scaling']:
        scaling = dict(factor=c['rope_factor'], low_freq_factor=c['rope_low_freq_factor'],
                       high_freq_factor=c['rope_high_freq_factor'],
                       original_max_position_embeddings=c['rope_original_context'])
    p = dict(head_dim=c['head_dim'], n_heads=c['n_heads'], n_kv_heads=c['n_kv_heads'], n_layers=c['n_layers'],
             eps=float(c['norm_eps']), inv_freq=inv_freq(c['head_dim'], float(c['rope_theta']), scaling))
    return c, forward(w, p, ids, interleaved=True)


# ----------------------------------------------------------------------------------------------------
# running export.py and razor

def export(out, *args):
    r = subprocess.run([PY, os.path.join(ROOT, 'export.py'), out, *args], cwd=ROOT,
                       capture_output=True, text=True)
    return r


def razor_logits(model, ids, tmp):
    razor = RAZOR if os.path.isabs(RAZOR) else os.path.join(ROOT, RAZOR)
    if not os.path.exists(razor):
        raise AssertionError(f'razor binary {razor} not found (build it with make razor, or set RAZOR)')
    idf, out = os.path.join(tmp, 'ids.txt'), os.path.join(tmp, 'logits.f32')
    with open(idf, 'w') as f:
        f.write(' '.join(map(str, ids)) + '\n')
    if os.path.exists(out):
        os.remove(out)
    r = subprocess.run([razor, model, '-m', 'logits', '-I', idf, '-o', out], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, f'razor exited {r.returncode}: {r.stderr.strip()[-500:]}'
    a = np.fromfile(out, dtype='<f4')
    assert a.size % len(ids) == 0, f'razor wrote {a.size} floats for {len(ids)} tokens'
    return a.reshape(len(ids), -1)


def maxdiff(a, b):
    assert a.shape == b.shape, f'shape {a.shape} vs {b.shape}'
    return float(np.max(np.abs(a - b)))


# ----------------------------------------------------------------------------------------------------
# tests

GOOD = {
    'mha_f32_untied': dict(),
    'gqa_f16_sharded_tied_theta5e5': dict(kv=2, dtype='F16', shards=3, tied=True, theta=5e5, seed=1),
    'mqa_bf16_llama3_150_tokens': dict(heads=4, kv=1, dtype='BF16', theta=5e5, seed=2, seq_len=256, n_ids=150,
                                       rope=dict(rope_type='llama3', factor=8.0, low_freq_factor=1.0,
                                                 high_freq_factor=4.0, original_max_position_embeddings=256)),
    'head_dim_ne_dim_over_heads_gqa': dict(dim=32, heads=4, kv=2, head_dim=12, seed=3, eps=1e-6),
    'rope_parameters_llama3_mistral_eoslist': dict(arch='MistralForCausalLM', eos=[2, 5], rope_params=True,
                                                   theta=5e5, dtype='BF16', shards=2, seed=4, heads=2, kv=1,
                                                   head_dim=16, rope=dict(rope_type='llama3', factor=4.0,
                                                   low_freq_factor=1.0, high_freq_factor=2.0,
                                                   original_max_position_embeddings=64)),
    'untied_but_lm_head_absent': dict(lm_head=False, seed=5, layers=3),
}


def check_good(name, spec, tmp):
    folder = os.path.join(tmp, name)
    cfg, w = make_hf(folder, spec)
    out = os.path.join(tmp, name + '.bin')
    r = export(out, '--hf', folder)
    assert r.returncode == 0, f'export failed: {r.stderr.strip()}'
    ids = IDS
    if spec.get('n_ids'):  # longer than razor's prompt block (128), to cover blocks and far positions
        ids = [1] + [int(i) for i in np.random.default_rng(8).integers(0, cfg['vocab_size'], spec['n_ids'] - 1)]
    ref = hf_reference(cfg, w, ids)
    c, back = readback_logits(out, ids)
    assert c['magic'] == 0x727A6172 and c['version'] == 1
    eos = cfg['eos_token_id']
    assert c['eos_id'] == (eos[0] if isinstance(eos, list) else eos) and c['bos_id'] == 1
    assert c['seq_len'] == cfg['max_position_embeddings']
    tied = cfg['tie_word_embeddings'] or 'lm_head.weight' not in w
    assert c['shared_classifier'] == int(tied), f'shared_classifier {c["shared_classifier"]}'
    d = maxdiff(back, ref)
    assert d <= TOL, f'read-back file vs HF reference: max abs diff {d:.3g}'
    d = maxdiff(razor_logits(out, ids, tmp), ref)
    assert d <= TOL, f'razor vs HF reference: max abs diff {d:.3g}'
    return f'max diff {d:.2g}'


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


def setter(**kw):
    return lambda c: c.update(kw)


LLAMA3 = dict(rope_type='llama3', factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
              original_max_position_embeddings=32)
BAD = {  # name: (spec, edit_config, edit_tensors, extra args, words the error must contain)
    'missing_tensor': ({}, None, drop('model.layers.1.self_attn.k_proj.weight'), [],
                       ['missing', 'model.layers.1.self_attn.k_proj.weight']),
    'missing_embedding_sharded': ({'shards': 2}, None, drop('model.embed_tokens.weight'), [],
                                  ['model.embed_tokens.weight']),
    'wrong_shape': ({}, None, reshape_bad, [], ['model.layers.1.mlp.up_proj.weight', 'shape']),
    'architecture': ({}, setter(architectures=['Qwen2ForCausalLM']), None, [], ['architectures']),
    'attention_bias': ({}, setter(attention_bias=True), None, [], ['attention_bias']),
    'mlp_bias': ({}, setter(mlp_bias=True), None, [], ['mlp_bias']),
    'bias_tensor': ({}, None, add_bias, [], ['q_proj.bias']),
    'sliding_window': ({'arch': 'MistralForCausalLM'}, setter(sliding_window=4096), None, [], ['sliding_window']),
    'moe': ({}, setter(num_local_experts=8), None, [], ['num_local_experts']),
    'hidden_act': ({}, setter(hidden_act='gelu'), None, [], ['hidden_act']),
    'rope_type_linear': ({}, setter(rope_scaling={'type': 'linear', 'factor': 2.0}), None, [], ['rope', 'linear']),
    'rope_type_yarn_params': ({'rope_params': True}, setter(rope_parameters={'rope_type': 'yarn', 'factor': 2.0}),
                              None, [], ['rope', 'yarn']),
    'legacy_theta': ({'theta': 5e5}, None, None, ['--legacy'], ['rope_theta']),
    'legacy_head_dim': ({'head_dim': 16}, None, None, ['--legacy'], ['head_dim']),
    'legacy_eps': ({'eps': 1e-6}, None, None, ['--legacy'], ['norm_eps']),
    'legacy_rope_scaling': ({'rope': LLAMA3}, None, None, ['--legacy'], ['rope_scaling']),
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
        assert word in r.stderr, f'error message lacks {word!r}: {r.stderr.strip()}'
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
    r = export(os.path.join(outdir, 'm.bin'), '--hf', folder, '--tokenizer', os.path.join(ROOT, 'tests', 'bbpe_tokenizer.json'))
    assert r.returncode == 0, f'export failed: {r.stderr.strip()}'
    with open(os.path.join(outdir, 'tokenizer.bin'), 'rb') as f, open(os.path.join(ROOT, 'tests', 'bbpe_tokenizer.bin'), 'rb') as g:
        assert f.read() == g.read(), 'the RZTK file differs from tests/bbpe_tokenizer.bin (made from the same json)'
    text = 'It is a truth universally acknowledged'
    r = subprocess.run([RAZOR, os.path.join(outdir, 'm.bin'), '-m', 'tokenize', '-i', text], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, f'razor tokenize failed: {r.stderr.strip()}'
    ids = [int(x) for x in r.stdout.split()]
    assert ids[:6] == [1, 551, 1857, 1953, 281, 1753], f'ids {ids[:6]} (tests/bbpe_vectors.h says 551 1857 1953 281 1753 ...)'
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


def hf_to_interleaved(w, n_heads):
    """HF rotate-half q/k rows -> Meta's interleaved order (the inverse of HF's permute)."""
    rows, cols = w.shape
    return w.reshape(n_heads, 2, rows // n_heads // 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols)


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
        c, back = readback_logits(out, IDS)
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
    return f'hf safetensors/pytorch_model.bin/meta/checkpoint agree; max diff vs reference {maxdiff(logits["--hf"], ref):.2g}'


def main():
    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix='razor_export_') as tmp:
        tests = [(f'good {k}', lambda k=k, v=v: check_good(k, v, tmp)) for k, v in GOOD.items()]
        tests += [('legacy tied', lambda: check_legacy(True, tmp)), ('legacy untied', lambda: check_legacy(False, tmp))]
        tests += [(f'refuse {k}', lambda k=k, v=v: check_bad(k, *v, tmp)) for k, v in BAD.items()]
        tests += [('refuse truncated data', lambda: check_truncated(tmp, -10)),
                  ('refuse truncated header', lambda: check_truncated(tmp, 20)),
                  ('tokenizer', lambda: check_tokenizer(tmp)), ('tokenizer.json', lambda: check_tokenizer_json(tmp)),
                  ('torch absent', lambda: check_no_torch(tmp)),
                  ('pytorch_model.bin, meta and llama2.c checkpoint', lambda: check_meta_and_checkpoint(tmp))]
        for name, fn in tests:
            try:
                note = fn()
                print(f'ok    {name}' + (f'  ({note})' if note else ''))
                passed += 1
            except Exception as e:
                print(f'FAIL  {name}: {type(e).__name__}: {e}')
                failed += 1
    print(f'{passed} passed, {failed} failed')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
