"""
tests/test_gguf.py: export.py --gguf (plain python + numpy; sentencepiece for one tokenizer check).

The random Hugging Face checkpoints of tests/test_export.py are written as GGUF files the way llama.cpp's
convert_hf_to_gguf.py writes them (its tensor names; llama's q/k rows permuted into interleaved pairs by
its LlamaModel.permute, qwen2's and qwen3's left in Hugging Face's rotate-half order; norms and biases
F32; Llama 3 rope scaling as the rope_freqs tensor), in each tensor type export.py reads, by the GGUF
writer and quantizers of tests/gguf_writer.py. The checks:

  - F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K and a Q4_K_M-like mix, exported as
    float32: the razor file is byte for byte the one --hf writes from a safetensors folder holding the
    GGUF's values dequantized by tests/gguf_writer.py (value by value from ggml's block layouts), so
    razor's logits are bit for bit those of the safetensors route; and they are within TOL of a float64
    numpy forward pass over those values in Hugging Face's layout; random bytes as blocks of each of
    those types (finite fp16 scales) dequantize in export.py bit for bit as in tests/gguf_writer.py;
  - Q8_0, Q4_0, Q5_0 files (every matrix of the type) become razor q8 by default with the GGUF's int8
    values and scales as they are; razor's logits within TOL of numpy on them, and of razor on the
    float32 file (the same weights: only the order of the sums differs); Q4_K with --dtype q8 is
    re-quantized, within tests/test_export.py's Q8_REL; F16 with --dtype bf16 rounds to nearest even;
  - the tokenizers: a sentencepiece vocabulary (tokenizer.ggml.model "llama") becomes the tokenizer.bin
    export.py writes from the .model; byte-level BPE vocabularies ("gpt2": llama-bpe, qwen2, gpt-2)
    become the RZTK files tokenizer_bbpe.py writes from the tokenizer.json they came from; BOS from
    tokenizer.ggml.add_bos_token (or llama.cpp's default), razor -m tokenize as the tokenizers library;
    the chat template as --hf records it;
  - metadata of every value type is read back as written; Llama 3's rope_freqs give back the config's
    rope scaling; bad, nonsensical or unsupported files are refused with one line naming the problem,
    leaving no output.

    python3 tests/test_gguf.py        # razor binary from $RAZOR, default ./razor
"""
import json
import math
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gguf_writer as gw  # noqa: E402
import test_export as tx  # noqa: E402

ROOT = tx.ROOT
sys.path.insert(0, ROOT)
import export as ex  # noqa: E402
import tokenizer_bbpe  # noqa: E402

IDS = tx.IDS
MATRIX_NAMES = ('attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_gate', 'ffn_up', 'ffn_down')
HF_LAYER = {'attn_norm.weight': 'input_layernorm.weight', 'attn_q.weight': 'self_attn.q_proj.weight',
            'attn_k.weight': 'self_attn.k_proj.weight', 'attn_v.weight': 'self_attn.v_proj.weight',
            'attn_output.weight': 'self_attn.o_proj.weight', 'ffn_norm.weight': 'post_attention_layernorm.weight',
            'ffn_gate.weight': 'mlp.gate_proj.weight', 'ffn_up.weight': 'mlp.up_proj.weight',
            'ffn_down.weight': 'mlp.down_proj.weight', 'attn_q.bias': 'self_attn.q_proj.bias',
            'attn_k.bias': 'self_attn.k_proj.bias', 'attn_v.bias': 'self_attn.v_proj.bias',
            'attn_q_norm.weight': 'self_attn.q_norm.weight', 'attn_k_norm.weight': 'self_attn.k_norm.weight'}
ARCH = {'llama': 'llama', 'mistral': 'llama', 'qwen2': 'qwen2', 'qwen3': 'qwen3'}


def interleaved_to_hf(w, n_heads):
    """Interleaved q/k rows -> Hugging Face's rotate-half order (the inverse of tx.hf_to_interleaved)."""
    return w.reshape(n_heads, w.shape[0] // n_heads // 2, 2, -1).transpose(0, 2, 1, 3).reshape(w.shape)


def gguf_names(cfg):
    """GGUF tensor name -> HF name, for this checkpoint's config."""
    names = {'token_embd.weight': 'model.embed_tokens.weight', 'output_norm.weight': 'model.norm.weight',
             'output.weight': 'lm_head.weight'}
    for i in range(cfg['num_hidden_layers']):
        for g, h in HF_LAYER.items():
            names[f'blk.{i}.{g}'] = f'model.layers.{i}.{h}'
    return names


# ----------------------------------------------------------------------------------------------------
# tokenizer metadata

def tiny_vocab(n):
    """A sentencepiece-style vocabulary of n tokens for the model checks (razor runs them on ids)."""
    tokens = ['<unk>', '<s>', '</s>'] + [f'\u2581w{i}' for i in range(3, n)]
    return {'tokenizer.ggml.model': 'llama', 'tokenizer.ggml.tokens': tokens,
            'tokenizer.ggml.scores': np.arange(n, dtype=np.float32) * -1.0,
            'tokenizer.ggml.token_type': np.array([2, 3, 3] + [1] * (n - 3), dtype=np.int32),
            'tokenizer.ggml.bos_token_id': 1, 'tokenizer.ggml.eos_token_id': 2}


def sentencepiece_vocab(model_path):
    """A sentencepiece .model as llama.cpp's converter lists it: pieces, scores, token types."""
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=model_path)
    n = sp.get_piece_size()
    kinds = [2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 6 if sp.is_byte(i) else 5 if sp.is_unused(i)
             else 1 for i in range(n)]
    return {'tokenizer.ggml.model': 'llama', 'tokenizer.ggml.tokens': [sp.id_to_piece(i) for i in range(n)],
            'tokenizer.ggml.scores': np.array([sp.get_score(i) for i in range(n)], dtype=np.float32),
            'tokenizer.ggml.token_type': np.array(kinds, dtype=np.int32),
            'tokenizer.ggml.bos_token_id': sp.bos_id(), 'tokenizer.ggml.eos_token_id': sp.eos_id()}


def bpe_vocab(tokenizer_json, n, pre, extra=()):
    """A tokenizer.json as llama.cpp's converter lists it (get_vocab_base): ids 0..n-1, the model's
    byte-level strings as normal tokens (1), added tokens as control (3: special, or looking special,
    <|...|>) or user-defined (4) ones, missing ids as [PAD<id>] unused (5); the merges as "a b"."""
    with open(tokenizer_json, encoding='utf-8') as f:
        tj = json.load(f)
    tokens, kinds = [f'[PAD{i}]' for i in range(n)], [5] * n
    for s, i in tj['model']['vocab'].items():
        tokens[i], kinds[i] = s, 1
    for t in tj['added_tokens'] + list(extra):
        looks = t['content'].startswith('<|') and t['content'].endswith('|>')
        tokens[t['id']], kinds[t['id']] = t['content'], 3 if t['special'] or looks else 4
    merges = [m if isinstance(m, str) else ' '.join(m) for m in tj['model']['merges']]
    return {'tokenizer.ggml.model': 'gpt2', 'tokenizer.ggml.pre': pre, 'tokenizer.ggml.tokens': tokens,
            'tokenizer.ggml.token_type': np.array(kinds, dtype=np.int32), 'tokenizer.ggml.merges': merges}


# ----------------------------------------------------------------------------------------------------
# a checkpoint as llama.cpp's converter writes it

def matrix_type(kind, name):
    """The ggml type of a matrix in a file of `kind` (one type, or 'Q4_K_M': llama-quantize's mix in
    spirit: Q6_K for output, attn_v and ffn_down, Q5_0 for attn_k, Q8_0 for the embedding, else Q4_K)."""
    if kind != 'Q4_K_M':
        return kind
    base = name.split('.')[-2]
    return 'Q6_K' if base in ('output', 'attn_v', 'ffn_down') else 'Q5_0' if base == 'attn_k' else \
        'Q8_0' if base == 'token_embd' else 'Q4_K'


def to_gguf(cfg, w, kind, vocab=None, edit_meta=None, int_types=None):
    """HF config and weights -> (GGUF metadata, tensors name -> (type, raw bytes, shape), HF-named float64
    weights holding the GGUF's values dequantized, in HF's layout). vocab: tokenizer metadata (default
    tiny_vocab). int_types: store the config's integers and floats as these GGUF types (u64, f64 ...)."""
    arch = ARCH[cfg['model_type']]
    heads, kv = cfg['num_attention_heads'], cfg.get('num_key_value_heads') or cfg['num_attention_heads']
    hd = cfg.get('head_dim') or cfg['hidden_size'] // heads
    iv = (lambda v: gw.Typed(int_types[0], v)) if int_types else (lambda v: v)
    fv = (lambda v: gw.Typed(int_types[1], v)) if int_types else float
    meta = {'general.architecture': arch, 'general.name': 'razor test', 'general.file_type': 0,
            f'{arch}.block_count': iv(cfg['num_hidden_layers']),
            f'{arch}.context_length': iv(cfg['max_position_embeddings']),
            f'{arch}.embedding_length': iv(cfg['hidden_size']),
            f'{arch}.feed_forward_length': iv(cfg['intermediate_size']),
            f'{arch}.attention.head_count': iv(heads), f'{arch}.attention.head_count_kv': iv(kv),
            f'{arch}.rope.freq_base': fv(tx.hf_rope(cfg)[0]),
            f'{arch}.attention.layer_norm_rms_epsilon': fv(cfg['rms_norm_eps'])}
    if cfg.get('head_dim'):
        meta.update({f'{arch}.attention.key_length': hd, f'{arch}.attention.value_length': hd})
    if arch == 'llama':
        meta.update({f'{arch}.rope.dimension_count': hd, f'{arch}.vocab_size': cfg['vocab_size']})
    meta.update(vocab or tiny_vocab(cfg['vocab_size']))
    if edit_meta:
        edit_meta(meta)
    tensors, back = {}, {}
    for g, h in gguf_names(cfg).items():
        if h not in w or (h == 'lm_head.weight' and cfg.get('tie_word_embeddings')):
            continue
        a = w[h]
        if arch == 'llama' and ('q_proj' in h or 'k_proj' in h):  # LlamaModel.permute
            a = tx.hf_to_interleaved(a, heads if 'q_proj' in h else kv)
        t = matrix_type(kind, g) if a.ndim == 2 else 'F32'
        raw = gw.quantize(t, a)
        tensors[g] = (t, raw, a.shape)
        v = gw.dequantize(t, raw, a.size).reshape(a.shape).astype(np.float64)
        if arch == 'llama' and ('q_proj' in h or 'k_proj' in h):
            v = interleaved_to_hf(v, heads if 'q_proj' in h else kv)
        back[h] = v
    rs = tx.hf_rope(cfg)[1]
    if rs:  # Llama 3: the converter's rope_freqs
        a = rope_freqs(tx.hf_rope(cfg)[0], hd, rs['factor'], rs['low_freq_factor'], rs['high_freq_factor'])
        tensors['rope_freqs.weight'] = ('F32', a.tobytes(), a.shape)
    return meta, tensors, back


def rope_freqs(theta, hd, factor, lo, hi, old=8192):
    """Llama 3's rope_freqs as llama.cpp's converter computes them (in float32, as torch does; its
    original_max_position_embeddings 8192)."""
    f32 = np.float32
    freqs = f32(1.0) / (f32(theta) ** (np.arange(0, hd, 2, dtype=f32) / f32(hd)))
    factors = []
    for fr in freqs:
        wavelen = f32(2 * math.pi) / fr
        if wavelen < old / hi:
            factors.append(1.0)
        elif wavelen > old / lo:
            factors.append(factor)
        else:
            s = (f32(old) / wavelen - f32(lo)) / f32(hi - lo)
            factors.append(f32(1) / ((f32(1) - s) / f32(factor) + s))
    return np.array(factors, dtype=np.float32)


MODELS = {  # widths multiples of 256, as the K-quants need
    'llama': dict(dim=256, hidden=512, heads=4, kv=2, seq_len=64, seed=61),
    'qwen2': dict(family='qwen2', dim=256, hidden=512, heads=4, kv=2, tied=True, theta=1e6, eps=1e-6, seq_len=64,
                  seed=62),
    'qwen3': dict(family='qwen3', dim=256, hidden=512, heads=4, kv=2, head_dim=64, tied=True, theta=1e6, eps=1e-6,
                  seq_len=64, seed=63),
    'llama3_rope': dict(dim=256, hidden=512, heads=4, kv=1, theta=5e5, seq_len=64, seed=64,
                        rope=dict(rope_type='llama3', factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                  original_max_position_embeddings=8192)),
}
CASES = {  # name: (model, file type)
    'llama F32': ('llama', 'F32'), 'llama F16': ('llama', 'F16'), 'llama BF16': ('llama', 'BF16'),
    'llama Q8_0': ('llama', 'Q8_0'), 'llama Q4_0': ('llama', 'Q4_0'), 'llama Q5_0': ('llama', 'Q5_0'),
    'llama Q4_1': ('llama', 'Q4_1'), 'llama Q5_1': ('llama', 'Q5_1'),
    'llama Q4_K': ('llama', 'Q4_K'), 'llama Q5_K': ('llama', 'Q5_K'), 'llama Q6_K': ('llama', 'Q6_K'),
    'llama Q4_K_M': ('llama', 'Q4_K_M'),
    'qwen2 F32': ('qwen2', 'F32'), 'qwen2 Q4_K_M': ('qwen2', 'Q4_K_M'), 'qwen2 Q8_0': ('qwen2', 'Q8_0'),
    'qwen3 BF16': ('qwen3', 'BF16'), 'qwen3 Q6_K': ('qwen3', 'Q6_K'), 'qwen3 Q5_0': ('qwen3', 'Q5_0'),
    'llama3 rope_freqs F16': ('llama3_rope', 'F16'),
}
BUILT = {}
export = tx.export


def build(tmp, name, **kw):
    """The case's HF checkpoint, its GGUF, and the safetensors folder of the GGUF's values -> dict."""
    if name in BUILT and not kw:
        return BUILT[name]
    model, kind = CASES[name]
    key = name.replace(' ', '_') + ('_' + '_'.join(map(str, kw.values())) if kw else '')
    folder = os.path.join(tmp, key + '_hf')
    cfg, w = tx.make_hf(folder, MODELS[model])
    meta, tensors, back = to_gguf(cfg, w, kind, **kw)
    path = os.path.join(tmp, key + '.gguf')
    layout = gw.write_gguf(path, meta, {k: v for k, v in tensors.items()})
    tx.write_safetensors(os.path.join(folder, 'model.safetensors'),
                         {k: (v.astype('<f4'), 'F32') for k, v in back.items()})
    b = dict(cfg=cfg, w=w, back=back, gguf=path, meta=meta, tensors=tensors, layout=layout, folder=folder, key=key,
             kind=kind)
    if not kw:
        BUILT[name] = b
    return b


def exported(tmp, b, *args, tag=''):
    """Exports b's GGUF (with args) into its own folder -> (output path, export.py's result)."""
    d = os.path.join(tmp, b['key'] + tag + '_out')
    os.makedirs(d, exist_ok=True)
    out = os.path.join(d, 'm.bin')
    r = export(out, '--gguf', b['gguf'], *args)
    assert r.returncode == 0, f'export --gguf failed: {r.stderr.strip()[-400:]}'
    return out, r


def read(path):
    with open(path, 'rb') as f:
        return f.read()


# ----------------------------------------------------------------------------------------------------
# checks

def check_exact(tmp, name):
    """--dtype f32: the file --hf writes from the dequantized values, byte for byte; razor's logits the same
    bits (prompt path and -B 1); within TOL of numpy on the dequantized weights."""
    b = build(tmp, name)
    out, _ = exported(tmp, b, '--dtype', 'f32')
    hf_out = os.path.join(tmp, b['key'] + '_hf.bin')
    r = export(hf_out, '--hf', b['folder'])
    assert r.returncode == 0, f'export --hf failed: {r.stderr.strip()[-300:]}'
    if read(out) != read(hf_out):
        c, got = tx.read_export(out)
        c2, want = tx.read_export(hf_out)
        bad = {k: (c[k], c2[k]) for k in c if c[k] != c2[k]}
        diff = [n for n in want if n in got and not np.array_equal(got[n], want[n])]
        raise AssertionError(f'the --gguf file differs from the --hf one: header {bad}, tensors {diff[:4]}')
    notes = []
    for flags in ((), ('-B', '1')):
        a, h = tx.razor_run(out, IDS, tmp, *flags), tx.razor_run(hf_out, IDS, tmp, *flags)
        assert a.tobytes() == h.tobytes(), f'razor {" ".join(flags)}: logits differ by {tx.maxdiff(a, h):.3g}'
    ref = tx.hf_reference(b['cfg'], b['back'], IDS)
    d = tx.maxdiff(a.astype(np.float64), ref)
    assert d <= tx.TOL, f'razor vs numpy on the dequantized weights: max abs diff {d:.3g}'
    src = tx.hf_reference(b['cfg'], b['w'], IDS)  # the weights before quantization
    notes.append(f'same file as --hf, logits bit for bit; vs numpy {d:.2g}; the {b["kind"]} rounding moved the '
                 f'logits by {tx.maxdiff(ref, src):.2g} of {np.abs(src).max():.2g}')
    return '; '.join(notes)


def razor_layout_ints(b, hf_name):
    """The int8 values and scales of a Q8_0/Q4_0/Q5_0 GGUF tensor, in razor's row order."""
    g = {h: k for k, h in gguf_names(b['cfg']).items()}[hf_name]
    t, raw, shape = b['tensors'][g]
    q, d = gw.block_ints(t, raw)
    q, d = q.reshape(shape), d.reshape(shape[0], -1)
    arch = ARCH[b['cfg']['model_type']]
    if arch != 'llama' and ('q_proj' in hf_name or 'k_proj' in hf_name):
        n = b['cfg']['num_attention_heads'] if 'q_proj' in hf_name else b['cfg']['num_key_value_heads']
        q, d = tx.hf_to_interleaved(q, n), tx.hf_to_interleaved(d, n)
    return q, d


def check_q8_exact(tmp, name):
    """Q8_0/Q4_0/Q5_0 -> razor q8 by default: the GGUF's int8 values and scales as they are; razor -A f32
    within TOL of numpy on them and of razor on the float32 file."""
    b = build(tmp, name)
    out, r = exported(tmp, b, tag='_q8')
    assert 'writing --dtype q8' in r.stdout, f'no note on the default dtype: {r.stdout.strip()}'
    raw = {}
    c, got = tx.read_export(out, raw)
    assert c['weight_type'] == tx.WEIGHT_Q8, f'weight_type {c["weight_type"]}'
    n = 0
    for h, (kind, stored, scales) in raw.items():
        if kind != 'q8':
            continue
        q, d = razor_layout_ints(b, h)
        assert np.array_equal(stored, q), f'{h}: the int8 values are not the GGUF\'s'
        assert np.array_equal(scales.view('<u4'), d.astype('<f4').view('<u4')), f'{h}: the scales are not the GGUF\'s'
        n += 1
    out32 = os.path.join(tmp, b['key'] + '_out', 'm.bin')
    if not os.path.exists(out32):
        out32 = exported(tmp, b, '--dtype', 'f32')[0]
    worst = []
    for flags in (('-A', 'f32'), ('-A', 'f32', '-B', '1')):  # the inputs unrounded: the weights alone
        a = tx.razor_logits(out, IDS, tmp, *flags)
        e = tx.maxdiff(a, tx.readback_logits(out, IDS)[1])
        f = tx.maxdiff(a, tx.razor_logits(out32, IDS, tmp, *flags))
        assert e <= tx.TOL and f <= tx.TOL, f'razor {" ".join(flags)} q8: vs numpy {e:.3g}, vs the f32 file {f:.3g}'
        worst += [e, f]
    return f'{n} matrices hold the GGUF\'s int8 values and scales; razor vs numpy / f32 file: max {max(worst):.2g}'


def check_default_f32(tmp):
    """A file with K-quants defaults to f32 (exact), saying so."""
    b = build(tmp, 'llama Q4_K_M')
    out, r = exported(tmp, b, tag='_default')
    assert 'writing --dtype f32' in r.stdout, r.stdout
    out32 = exported(tmp, b, '--dtype', 'f32')[0]
    assert read(out) == read(out32), 'the default file differs from --dtype f32'
    return r.stdout.strip().splitlines()[0][:110]


def check_requantized(tmp):
    """Q4_K with --dtype q8: re-quantized to razor's groups (max |w| / 127): within half a scale of the GGUF's
    values, razor within Q8_REL of the largest logit of the f32 file."""
    b = build(tmp, 'llama Q4_K')
    out, _ = exported(tmp, b, '--dtype', 'q8', tag='_requant')
    out32 = exported(tmp, b, '--dtype', 'f32')[0]
    raw = {}
    _, got = tx.read_export(out, raw)
    _, want = tx.read_export(out32)
    for h, (kind, stored, scales) in raw.items():
        if kind == 'q8':
            err = np.abs(got[h] - want[h]).reshape(-1, tx.Q8_GROUP).max(axis=1)
            assert np.all(err <= scales.reshape(-1).astype(np.float64) / 2 * (1 + 1e-6) + 1e-30), h
    a, f = tx.razor_logits(out, IDS, tmp), tx.razor_logits(out32, IDS, tmp)
    d, top = tx.maxdiff(a, f), float(np.abs(f).max())
    assert d <= tx.Q8_REL * top, f'q8 vs f32: {d:.3g} = {d / top:.1%} of the largest logit'
    return f'q8 vs f32 logits {d:.2g} = {d / top:.1%} of the largest (bound {tx.Q8_REL:.0%})'


def check_bf16(tmp):
    """F16 with --dtype bf16: each value rounded to nearest even."""
    b = build(tmp, 'llama F16')
    out, _ = exported(tmp, b, '--dtype', 'bf16', tag='_bf16')
    raw = {}
    c, _ = tx.read_export(out, raw)
    want = tx.razor_layout(b['cfg'], b['back'])
    n = 0
    for h, (kind, stored, _) in raw.items():
        if kind == 'bf16':
            assert np.array_equal(stored, tx.bf16_bits(want[h])), h
            n += 1
    assert c['weight_type'] == tx.WEIGHT_BF16 and n == 2 * 7 + 2, (c['weight_type'], n)
    return f'{n} matrices'


def check_metadata_types(tmp):
    """Every GGUF value type, arrays of numbers and of strings, and config values stored as other integer and
    float types (an array of arrays is refused: see BAD)."""
    values = {'t.u8': gw.Typed('u8', 200), 't.i8': gw.Typed('i8', -100), 't.u16': gw.Typed('u16', 60000),
              't.i16': gw.Typed('i16', -30000), 't.u32': gw.Typed('u32', 4000000000), 't.i32': gw.Typed('i32', -7),
              't.f32': gw.Typed('f32', 0.25), 't.bool': True, 't.str': 'héllo', 't.u64': gw.Typed('u64', 1 << 60),
              't.i64': gw.Typed('i64', -(1 << 60)), 't.f64': gw.Typed('f64', 1e-300),
              't.arr.i16': gw.Typed('arr', [1, -2, 3], 'i16'), 't.arr.str': ['a', '', 'ü'],
              't.arr.bool': gw.Typed('arr', [True, False], 'bool'), 't.arr.empty': gw.Typed('arr', [], 'f64'),
              'general.alignment': gw.Typed('u32', 64)}
    path = os.path.join(tmp, 'types.gguf')
    a = np.arange(64, dtype=np.float32).reshape(2, 32)
    gw.write_gguf(path, values, {'x': ('F32', a), 'y': ('Q8_0', a)})
    g = ex.GGUF(path)
    for k, v in values.items():
        v = v.value if isinstance(v, gw.Typed) else v
        got = g.meta[k].tolist() if isinstance(g.meta[k], np.ndarray) else g.meta[k]
        assert got == v and type(got) is type(v), f'{k}: {got!r} read, {v!r} written'
    y = gw.dequantize('Q8_0', gw.quantize('Q8_0', a), a.size).reshape(a.shape)
    assert all(g.tensors[n][2] % 64 == 0 for n in 'xy'), 'a tensor is not at a multiple of general.alignment 64'
    assert np.array_equal(g.load('x'), a) and np.array_equal(g.load('y'), y), 'tensor values'
    b = build(tmp, 'llama F32')
    other = build(tmp, 'llama F32', int_types=('u64', 'f64'))
    out1 = exported(tmp, b, tag='_plain')[0]
    out2 = exported(tmp, other)[0]
    assert read(out1) == read(out2), 'config values as u64/f64 give another file'
    return f'{len(values)} keys of 13 value types read back; u64/f64 config values give the same file'


SCALES = {'Q8_0': [0], 'Q4_0': [0], 'Q5_0': [0], 'Q4_1': [0, 2], 'Q5_1': [0, 2], 'Q4_K': [0, 2], 'Q5_K': [0, 2],
          'Q6_K': [208]}  # where each block type keeps its fp16 scales (d, and m or dmin)


def check_random_blocks(tmp):
    """Random bytes as 2048 blocks of each type export.py reads, the fp16 scales random finite ones of either
    sign (normal and subnormal): export.py's dequantizer gives the element-by-element one of
    tests/gguf_writer.py bit for bit."""
    rng = np.random.default_rng(90)
    for kind, (per, size) in ex.GGML_BLOCKS.items():
        b = rng.integers(0, 256, (2048, size), dtype=np.uint8)
        for at in SCALES.get(kind, []):
            h = rng.integers(0, 0x7C00, 2048, dtype=np.uint16) | (rng.integers(0, 2, 2048, dtype=np.uint16) << 15)
            b[:, at:at + 2] = h.astype('<u2').view(np.uint8).reshape(-1, 2)
        got, want = ex.dequantize(kind, b.ravel()), gw.dequantize(kind, b.tobytes(), 2048 * per)
        bad = np.flatnonzero(got.view('<u4') != want.view('<u4'))
        assert not bad.size, f'{kind}: {bad.size} values differ, the first {got[bad[0]]!r} vs {want[bad[0]]!r}'
    return f'{", ".join(ex.GGML_BLOCKS)}'


def check_rope_freqs():
    """Llama 3.1's (factor 8, low 1, high 4, head_dim 128) and Llama 3.2's (32, 1, 4, 64) rope_freqs, as the
    converter computes them, give back their fields."""
    for factor, hd in ((8.0, 128), (32.0, 64)):
        got = ex.gguf_rope_freqs('x', rope_freqs(5e5, hd, factor, 1.0, 4.0), hd, 5e5)
        want = {'rope_scaling': 1, 'rope_factor': factor, 'rope_low_freq_factor': 1.0, 'rope_high_freq_factor': 4.0,
                'rope_original_context': 8192}
        assert got == want, f'{factor}, head_dim {hd}: {got}'
    return 'factor, low_freq_factor, high_freq_factor and 8192 recovered'


def check_tokenizer_spm(tmp):
    """tokenizer.ggml.model "llama" -> the tokenizer.bin export.py writes from the sentencepiece .model."""
    model = os.path.join(ROOT, 'tests', 'sp512', 'tokenizer.model')
    vocab = sentencepiece_vocab(model)
    b = tok_model(tmp, 'spm', 512, vocab)
    out, r = exported(tmp, b)
    want = os.path.join(tmp, 'spm_want.bin')
    ex.sentencepiece_to_bin(model, want)
    assert read(os.path.join(os.path.dirname(out), 'tokenizer.bin')) == read(want), 'tokenizer.bin differs'
    c = tx.read_export(out)[0]
    assert (c['add_bos'], c['bos_id'], c['eos_id']) == (1, 1, 2), c
    bos = r.stdout.split('BOS: ')[1].splitlines()[0]
    return f'{len(vocab["tokenizer.ggml.tokens"])} pieces, the same bytes; BOS: {bos}'


def tok_model(tmp, key, vocab_size, vocab, edit_meta=None):
    """A small F32 Llama whose GGUF carries the tokenizer metadata `vocab`."""
    folder = os.path.join(tmp, 'tok_' + key + '_hf')
    cfg, w = tx.make_hf(folder, dict(dim=32, hidden=64, heads=4, kv=2, vocab=vocab_size, seq_len=256, seed=70))
    meta, tensors, back = to_gguf(cfg, w, 'F32', vocab=vocab, edit_meta=edit_meta)
    path = os.path.join(tmp, 'tok_' + key + '.gguf')
    gw.write_gguf(path, meta, tensors)
    return dict(cfg=cfg, gguf=path, key='tok_' + key, meta=meta)


BPE_CASES = {  # name: (tokenizer.json, tokenizer.ggml.pre, bos id or None, eos, add_bos_token, RZTK file, ids key)
    'llama-bpe': ('bbpe_tokenizer.json', 'llama-bpe', 1972, 1973, None, 'bbpe_tokenizer.bin', 'llama3', (1, 1972)),
    'qwen2': ('bbpe_tokenizer_qwen2.json', 'qwen2', None, 1972, None, 'bbpe_tokenizer_qwen2.bin', 'qwen2', (0, -1)),
    'qwen2 add_bos_token false': ('bbpe_tokenizer_qwen2.json', 'qwen2', 1972, 1972, False, None, 'qwen2', (0, 1972)),
    'gpt-2': ('bbpe_tokenizer.json', 'gpt-2', 1972, 1973, True, 'bbpe_tokenizer_gpt2.bin', None, (1, 1972)),
}


def check_tokenizer_bpe(tmp, name):
    """tokenizer.ggml.model "gpt2" -> the RZTK file tokenizer_bbpe.py writes from the tokenizer.json; the
    header's add_bos and bos_id; razor -m tokenize as the tokenizers library (add_special_tokens=True)."""
    src, pre, bos, eos, add, rztk, ids_key, want = BPE_CASES[name]
    vocab = bpe_vocab(os.path.join(ROOT, 'tests', src), 1998, pre)
    vocab['tokenizer.ggml.eos_token_id'] = eos
    if bos is not None:
        vocab['tokenizer.ggml.bos_token_id'] = bos
    if add is not None:
        vocab['tokenizer.ggml.add_bos_token'] = add
    b = tok_model(tmp, name.replace(' ', '_'), 1998, vocab)
    out, _ = exported(tmp, b)
    tok = os.path.join(os.path.dirname(out), 'tokenizer.bin')
    notes = []
    if rztk:
        expect = os.path.join(ROOT, 'tests', rztk)
        if pre == 'qwen2':  # a GGUF cannot tell Qwen's non-special <|fim_prefix|> ... from special ones: the
            # converter makes both control tokens, which export.py writes as special (see docs/models.md)
            with open(os.path.join(ROOT, 'tests', src), encoding='utf-8') as f:
                tj = json.load(f)
            looks = [t for t in tj['added_tokens'] if not t['special'] and t['content'].startswith('<|')]
            for t in looks:
                t['special'] = True
            d = os.path.join(tmp, 'flipped_' + name.replace(' ', '_'))
            os.makedirs(d)
            with open(os.path.join(d, 'tokenizer.json'), 'w', encoding='utf-8') as f:
                json.dump(tj, f)
            expect = os.path.join(d, 'want.bin')
            tokenizer_bbpe.export_bbpe(os.path.join(d, 'tokenizer.json'), expect)
            notes.append(f'= tokenizer_bbpe.py on tests/{src} with its {len(looks)} <|...|> tokens special')
        else:
            notes.append(f'= tests/{rztk}')
        assert read(tok) == read(expect), f'the RZTK file differs from {expect}'
    c = tx.read_export(out)[0]
    assert (c['add_bos'], c['bos_id']) == want, f'add_bos {c["add_bos"]}, bos_id {c["bos_id"]}; expected {want}'
    notes.append(f'add_bos {c["add_bos"]}, bos_id {c["bos_id"]}')
    if ids_key:
        with open(os.path.join(ROOT, 'tests', 'bbpe_special_ids.json'), encoding='utf-8') as f:
            cases = json.load(f)[ids_key]
        razor = tx.RAZOR if os.path.isabs(tx.RAZOR) else os.path.join(ROOT, tx.RAZOR)
        for text, ids in cases:
            r = subprocess.run([razor, out, '-m', 'tokenize', '-i', text], capture_output=True, text=True)
            assert r.returncode == 0, f'razor -m tokenize exited {r.returncode}: {r.stderr.strip()[:200]}'
            got = [int(x) for x in r.stdout.split()]
            assert got == ids, f'{text[:30]!r}: razor {got[:8]}..., tokenizers {ids[:8]}...'
        notes.append(f'{len(cases)} texts tokenize as the library')
    return '; '.join(notes)


LLAMA3_EXTRA = [{'id': 1979 + k, 'content': t, 'special': True} for k, t in
                enumerate(['<|start_header_id|>', '<|end_header_id|>'])]
CHAT_CASES = {  # name: (tokenizer.json, pre, extra tokens, template, (chat_template, chat_tokens))
    'chatml': ('bbpe_tokenizer_qwen2.json', 'qwen2', [], tx.CHATML, (tx.CHAT_CHATML, [1973, 1974, -1, -1])),
    'llama3': ('bbpe_tokenizer.json', 'llama-bpe', LLAMA3_EXTRA, tx.LLAMA3_TEMPLATE,
               (tx.CHAT_LLAMA3, [1979, 1980, 1974, -1])),
    'inst': ('bbpe_tokenizer.json', 'llama-bpe', [], tx.LLAMA2_TEMPLATE, (tx.CHAT_LLAMA2, [-1] * 4)),
    'qwen without a template': ('bbpe_tokenizer_qwen2.json', 'qwen2', [], None, (tx.CHAT_CHATML, [1973, 1974, -1, -1])),
}


def check_chat(tmp, name):
    src, pre, extra, template, want = CHAT_CASES[name]
    vocab = bpe_vocab(os.path.join(ROOT, 'tests', src), 1998, pre, extra)
    vocab['tokenizer.ggml.bos_token_id'] = 1972
    if template is not None:
        vocab['tokenizer.chat_template'] = template
    model = 'qwen2' if pre == 'qwen2' else 'llama'
    folder = os.path.join(tmp, 'chat_' + name.replace(' ', '_'))
    cfg, w = tx.make_hf(folder, dict(MODELS[model], dim=32, hidden=64, head_dim=None, vocab=1998))
    meta, tensors, _ = to_gguf(cfg, w, 'F32', vocab=vocab)
    b = dict(gguf=folder + '.gguf', key='chat_' + name.replace(' ', '_'))
    gw.write_gguf(b['gguf'], meta, tensors)
    out, _ = exported(tmp, b)
    c = tx.read_export(out)[0]
    assert (c['chat_template'], c['chat_tokens']) == want, f'{c["chat_template"]}, {c["chat_tokens"]}; expected {want}'
    return f'chat_template {want[0]}, chat_tokens {want[1]}'


# refusals: name -> (an edit: ('meta', f(meta, tensors)) before writing, ('file', f(path, layout)) after,
# or None; export.py's extra arguments; words the one-line message must hold; the model)
def drop_key(k):
    return 'meta', lambda meta, tensors: meta.pop(k)


def set_key(k, v):
    return 'meta', lambda meta, tensors: meta.update({k: v})


def set_keys(**kw):
    return 'meta', lambda meta, tensors: meta.update({k.replace('_', '.', 2): v for k, v in kw.items()})


def drop_tensor(k):
    return 'meta', lambda meta, tensors: tensors.pop(k)


def add_tensor(k, shape, value=0.0):
    a = np.full(shape, value, np.float32)
    return 'meta', lambda meta, tensors: tensors.update({k: ('F32', a.tobytes(), shape)})


def fewer_tokens(k):
    def edit(meta, tensors):
        for key in ('tokenizer.ggml.tokens', 'tokenizer.ggml.scores', 'tokenizer.ggml.token_type'):
            meta[key] = meta[key][:-k]
    return 'meta', edit


def bad_scale(k, half):
    """Tensor k as Q8_0, the first block's fp16 scale bits set to half."""
    def edit(meta, tensors):
        _, raw, shape = tensors[k]
        q = bytearray(gw.quantize('Q8_0', np.frombuffer(raw, '<f4').reshape(shape)))
        q[0:2] = struct.pack('<H', half)
        tensors[k] = ('Q8_0', bytes(q), shape)
    return 'meta', edit


def fewer_rows(k):
    def edit(meta, tensors):
        t, raw, shape = tensors[k]
        tensors[k] = (t, raw[:len(raw) // shape[0] * (shape[0] - 1)], (shape[0] - 1, shape[1]))
    return 'meta', edit


def patch(at, value, fmt='<I'):
    """A byte edit: at(layout, data) -> offset; writes value there."""
    def edit(path, layout):
        with open(path, 'r+b') as f:
            data = f.read()
            f.seek(at(layout, data))
            f.write(struct.pack(fmt, value))
    return 'file', edit


def same_offset(k, other):
    """Tensor k's offset set to tensor other's: the two share bytes."""
    def edit(path, layout):
        with open(path, 'r+b') as f:
            f.seek(layout['type_at'][k] + 4)
            f.write(struct.pack('<Q', layout['tensor_at'][other] - layout['data']))
    return 'file', edit


def truncate(keep):
    def edit(path, layout):
        with open(path, 'r+b') as f:
            f.truncate(keep(layout))
    return 'file', edit


def key_type_at(key):
    return lambda layout, data: data.index(gw.gguf_string(key)) + len(gw.gguf_string(key))


BAD = {
    'bad magic': (patch(lambda l, d: 0, b'GGML', '4s'), [], ['not a GGUF file']),
    'version 1': (patch(lambda l, d: 4, 1), [], ['version 1']),
    'big-endian': (patch(lambda l, d: 4, 3, '>I'), [], ['big-endian']),
    'truncated metadata': (truncate(lambda l: 300), [], ['truncated']),
    'tensor past the end': (truncate(lambda l: l['size'] - 10), [],
                            ['truncated', 'blk.1.ffn_down.weight', 'ends at']),
    'unknown tensor type': (patch(lambda l, d: l['type_at']['blk.0.attn_q.weight'], 99), [],
                            ['blk.0.attn_q.weight', 'unknown type 99']),
    'unsupported tensor type Q2_K': (patch(lambda l, d: l['type_at']['blk.1.ffn_up.weight'], 10), [],
                                     ['blk.1.ffn_up.weight', 'Q2_K']),
    'misaligned tensor': (patch(lambda l, d: l['type_at']['blk.1.ffn_up.weight'] + 4, 16, '<Q'), [],
                          ['blk.1.ffn_up.weight', 'alignment']),
    'unknown value type': (patch(key_type_at('general.name'), 13), [], ['general.name', 'unknown value type 13']),
    'array of arrays': (set_key('general.nested', gw.Typed('arr', [[1, 2], [3]], ('arr', 'u8'))), [],
                        ['general.nested', 'array of arrays']),
    'overlapping tensors': (same_offset('blk.0.attn_v.weight', 'blk.0.attn_k.weight'), [],
                            ['blk.0.attn_k.weight', 'blk.0.attn_v.weight', 'overlap']),
    'missing key': (drop_key('llama.block_count'), [], ['missing', 'llama.block_count']),
    'block_count beyond the tensors': (set_key('llama.block_count', gw.Typed('u64', 100000)), [],
                                       ['llama.block_count = 100000']),
    'head_count 0': (set_key('llama.attention.head_count', 0), [], ['llama.attention.head_count = 0']),
    'rms epsilon NaN': (set_key('llama.attention.layer_norm_rms_epsilon', float('nan')), [],
                        ['llama.attention.layer_norm_rms_epsilon = nan']),
    'rope.freq_base 0': (set_key('llama.rope.freq_base', 0.0), [], ['llama.rope.freq_base = 0']),
    'rope.freq_base inf': (set_key('llama.rope.freq_base', gw.Typed('f64', float('inf'))), [],
                           ['llama.rope.freq_base = inf']),
    'NaN fp16 scale': (bad_scale('blk.0.attn_q.weight', 0x7E00), [], ['blk.0.attn_q.weight', 'inf or NaN']),
    'inf fp16 scale, --dtype q8': (bad_scale('blk.1.attn_k.weight', 0x7C00), ['--dtype', 'q8'],
                                   ['blk.1.attn_k.weight', 'inf or NaN']),
    'missing tokenizer': (drop_key('tokenizer.ggml.model'), [], ['tokenizer.ggml.model']),
    'architecture gpt2': (set_key('general.architecture', 'gpt2'), [], ['general.architecture', 'gpt2']),
    'alignment 48': (set_key('general.alignment', 48), [], ['general.alignment']),
    'mixture of experts': (set_key('llama.expert_count', 8), [], ['llama.expert_count']),
    'sliding window': (set_key('llama.attention.sliding_window', 4096), [], ['llama.attention.sliding_window']),
    'rope scaling yarn': (set_key('llama.rope.scaling.type', 'yarn'), [], ['llama.rope.scaling.type', 'yarn']),
    'rope scaling linear factor': (set_key('llama.rope.scaling.factor', 2.0), [], ['llama.rope.scaling.factor']),
    'partial rotary': (set_key('llama.rope.dimension_count', 32), [], ['llama.rope.dimension_count']),
    'head_count per layer': (set_key('llama.attention.head_count', np.array([4, 4], np.int32)), [],
                             ['llama.attention.head_count', 'array']),
    'vocab_size': (set_key('llama.vocab_size', 65), [], ['llama.vocab_size']),
    'missing tensor': (drop_tensor('blk.1.ffn_up.weight'), [], ['missing', 'blk.1.ffn_up.weight']),
    'unexpected tensor': (add_tensor('blk.0.attn_output.bias', (256,)), [], ['blk.0.attn_output.bias']),
    'more layers than block_count': (add_tensor('blk.2.attn_norm.weight', (256,)), [], ['blk.2.attn_norm.weight']),
    'wrong shape': (fewer_rows('blk.1.ffn_up.weight'), [], ['blk.1.ffn_up.weight', 'shape']),
    'rope_freqs zero': (add_tensor('rope_freqs.weight', (32,)), [], ['rope_freqs', 'positive']),
    'rope_freqs not llama3': (add_tensor('rope_freqs.weight', (32,), 2.0), [], ['rope_freqs', 'not Llama 3']),
    'pre-tokenizer': (set_keys(tokenizer_ggml_model='gpt2', tokenizer_ggml_pre='deepseek-llm'), [],
                      ['tokenizer.ggml.pre', 'deepseek-llm']),
    'tokenizer kind': (set_key('tokenizer.ggml.model', 't5'), [], ['tokenizer.ggml.model', 't5']),
    'no dummy prefix': (set_key('tokenizer.ggml.add_space_prefix', False), [], ['add_space_prefix']),
    'bos id': (set_key('tokenizer.ggml.bos_token_id', 70), [], ['tokenizer.ggml.bos_token_id']),
    'fewer tokens than embedding rows': (fewer_tokens(4), [], ['60 tokens', '64 rows']),
    '--tokenizer-out in a missing folder': (None, ['--tokenizer-out', os.path.join(os.sep, 'no-such-dir', 't.bin')],
                                            ['no-such-dir']),
    '--tokenizer too': (None, ['--tokenizer', os.path.join(ROOT, 'tests', 'sp512', 'tokenizer.model')],
                        ['--tokenizer']),
    '--legacy with q/k norms': (None, ['--legacy'], ['--legacy'], 'qwen3'),
}


def check_bad(tmp, name):
    edit, args, words, model = (BAD[name] + ('llama',))[:4]
    folder = os.path.join(tmp, 'bad_' + name.replace(' ', '_'))
    cfg, w = tx.make_hf(folder, dict(MODELS[model], seed=80))
    meta, tensors, _ = to_gguf(cfg, w, 'F32')
    if edit and edit[0] == 'meta':
        edit[1](meta, tensors)
    path = folder + '.gguf'
    layout = gw.write_gguf(path, meta, tensors)
    if edit and edit[0] == 'file':
        edit[1](path, layout)
    d = folder + '_out'
    os.makedirs(d)
    out = os.path.join(d, 'm.bin')
    r = export(out, '--gguf', path, *args)
    assert r.returncode != 0, 'export succeeded'
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, f'{len(lines)} lines: {r.stderr.strip()[-300:]}'
    for word in words:
        assert word in lines[0], f'error message lacks {word!r}: {lines[0]}'
    assert not os.listdir(d), f'left behind: {os.listdir(d)}'
    return lines[0].replace(path, 'X.gguf')[:150]


def main():
    with tempfile.TemporaryDirectory(prefix='razor_gguf_') as tmp:
        tests = [(f'{k}: --dtype f32 == --hf on the dequantized values', lambda k=k: check_exact(tmp, k))
                 for k in CASES]
        tests += [(f'{k}: q8 by default, the GGUF\'s int8 values and scales', lambda k=k: check_q8_exact(tmp, k))
                  for k in ('llama Q8_0', 'llama Q4_0', 'llama Q5_0', 'qwen2 Q8_0', 'qwen3 Q5_0')]
        tests += [('Q4_K_M: f32 by default', lambda: check_default_f32(tmp)),
                  ('Q4_K --dtype q8: re-quantized', lambda: check_requantized(tmp)),
                  ('F16 --dtype bf16', lambda: check_bf16(tmp)),
                  ('metadata: every value type', lambda: check_metadata_types(tmp)),
                  ('random blocks: export.py\'s dequantizer == the element-by-element one',
                   lambda: check_random_blocks(tmp)),
                  ('rope_freqs: Llama 3.1 and 3.2 recovered', check_rope_freqs),
                  ('tokenizer: sentencepiece', lambda: check_tokenizer_spm(tmp))]
        tests += [(f'tokenizer: {k}', lambda k=k: check_tokenizer_bpe(tmp, k)) for k in BPE_CASES]
        tests += [(f'chat: {k}', lambda k=k: check_chat(tmp, k)) for k in CHAT_CASES]
        tests += [(f'refuse {k}', lambda k=k: check_bad(tmp, k)) for k in BAD]
        return tx.run_tests(tests)


if __name__ == '__main__':
    sys.exit(main())
