"""
export.py: convert a Llama-family checkpoint into a model file razor can load (see model.h).

    python3 export.py OUT.bin --hf DIR            # Hugging Face folder (config.json + *.safetensors)
    python3 export.py OUT.bin --meta DIR          # Meta's params.json + consolidated.*.pth (needs torch)
    python3 export.py OUT.bin --checkpoint X.pt   # a llama2.c training checkpoint (needs torch)
options:
    --legacy             write llama2.c's version 0 file instead of razor's format
    --tokenizer T.model  also write a sentencepiece tokenizer as llama2.c's tokenizer.bin
                         (next to OUT, or at --tokenizer-out PATH; see train/tokenizer.py)
    --tokenizer tokenizer.json   or a Hugging Face byte-level BPE (Llama 3, GPT-2, Qwen2) as razor's
                         RZTK tokenizer file (see tokenizer_bbpe.py)
    --seq-len N          override the maximum context written in the header

Safetensors are read with numpy alone (F32, F16, BF16, F64); torch is imported only for .pth/.bin/.pt.
Everything is checked (architecture, config fields, tensor names and shapes) before any output is
written; the file is written to OUT.tmp and renamed, so an error never leaves a half-written OUT.

RoPE layout. razor (like llama2.c and Meta's original code) rotates the pairs (2i, 2i+1) of each head.
Hugging Face's convert_llama_weights_to_hf.py reorders the rows of wq and wk so that transformers can
rotate "halves" instead: within each head, HF row j < head_dim/2 is original row 2j, and HF row
j + head_dim/2 is original row 2j+1. unpermute() below undoes this for HF checkpoints, so that q and k
come out of the matmul in razor's interleaved order. Meta and llama2.c checkpoints are already
interleaved and are written as they are.
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np

RAZOR_MAGIC, RAZOR_VERSION, HEADER_BYTES = 0x727A6172, 1, 256
BIG = 100 * 1024 * 1024  # print progress per tensor above this many bytes of output


class ExportError(Exception):
    pass


def fail(msg):
    raise ExportError(msg)


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
HF_NAMES = {'tok_embeddings': 'model.embed_tokens.weight', 'norm': 'model.norm.weight',
            'output': 'lm_head.weight', 'attention_norm': 'input_layernorm.weight',
            'attention.wq': 'self_attn.q_proj.weight', 'attention.wk': 'self_attn.k_proj.weight',
            'attention.wv': 'self_attn.v_proj.weight', 'attention.wo': 'self_attn.o_proj.weight',
            'ffn_norm': 'post_attention_layernorm.weight', 'feed_forward.w1': 'mlp.gate_proj.weight',
            'feed_forward.w2': 'mlp.down_proj.weight', 'feed_forward.w3': 'mlp.up_proj.weight'}


def expected_shapes(c):
    """Meta-style tensor name -> shape razor needs."""
    d, h, q, kv = c['dim'], c['hidden_dim'], c['n_heads'] * c['head_dim'], c['n_kv_heads'] * c['head_dim']
    per_layer = {'attention_norm': (d,), 'attention.wq': (q, d), 'attention.wk': (kv, d),
                 'attention.wv': (kv, d), 'attention.wo': (d, q), 'ffn_norm': (d,),
                 'feed_forward.w1': (h, d), 'feed_forward.w2': (d, h), 'feed_forward.w3': (h, d)}
    shapes = {'tok_embeddings': (c['vocab_size'], d), 'norm': (d,)}
    if not c['shared_classifier']:
        shapes['output'] = (c['vocab_size'], d)
    for i in range(c['n_layers']):
        for k, s in per_layer.items():
            shapes[f'layers.{i}.{k}'] = s
    return shapes


def unpermute(w, n_heads):
    """HF rotate-half row order -> interleaved pairs (the inverse of HF's permute)."""
    rows, cols = w.shape
    hd = rows // n_heads
    return w.reshape(n_heads, 2, hd // 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols)


class Model:
    def __init__(self, config, shapes, load, source_names=None):
        self.config = config  # razor header fields
        self.shapes = shapes  # Meta-style name -> shape as found
        self.load = load      # Meta-style name -> float32 array in razor's layout
        self.source_names = source_names or {}  # Meta-style name -> name in the checkpoint, for messages

    def check(self):
        c = self.config
        for k in ('dim', 'hidden_dim', 'n_layers', 'n_heads', 'n_kv_heads', 'head_dim', 'vocab_size', 'seq_len'):
            if not isinstance(c[k], int) or c[k] <= 0:
                fail(f'config: {k} = {c[k]!r} is not a positive integer')
        if c['n_heads'] % c['n_kv_heads']:
            fail(f'config: n_kv_heads ({c["n_kv_heads"]}) does not divide n_heads ({c["n_heads"]})')
        if c['head_dim'] % 2:
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
             rope_low_freq_factor=0.0, rope_high_freq_factor=0.0, rope_original_context=0)
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


def load_hf(folder):
    path = os.path.join(folder, 'config.json')
    if not os.path.exists(path):
        fail(f'{folder}: no config.json')
    with open(path) as f:
        try:
            cfg = json.load(f)
        except ValueError as e:
            fail(f'{path}: bad JSON: {e}')
    # refuse what razor cannot run
    archs = cfg.get('architectures') or [{'llama': 'LlamaForCausalLM', 'mistral': 'MistralForCausalLM'}
                                         .get(cfg.get('model_type'), repr(cfg.get('model_type')))]
    if len(archs) != 1 or archs[0] not in ('LlamaForCausalLM', 'MistralForCausalLM'):
        fail(f'config: architectures {archs} not supported (only LlamaForCausalLM, MistralForCausalLM)')
    if cfg.get('sliding_window') is not None:
        fail(f'config: sliding_window = {cfg["sliding_window"]} is not supported (must be null)')
    for k in ('attention_bias', 'mlp_bias'):
        if cfg.get(k):
            fail(f'config: {k} = true is not supported')
    for k in ('num_local_experts', 'num_experts', 'n_routed_experts', 'num_experts_per_tok'):
        if cfg.get(k):
            fail(f'config: {k} = {cfg[k]} (mixture of experts) is not supported')
    act = cfg.get('hidden_act', 'silu')
    if act != 'silu':
        fail(f'config: hidden_act = {act!r} is not supported (only "silu")')
    if cfg.get('partial_rotary_factor', 1.0) != 1.0:
        fail(f'config: partial_rotary_factor = {cfg["partial_rotary_factor"]} is not supported')

    rp = cfg.get('rope_parameters') or {}  # newer transformers keep theta and scaling here
    theta = rp.get('rope_theta', cfg.get('rope_theta', 10000.0))
    scaling = rope_scaling_fields(cfg['rope_scaling'], 'config: rope_scaling') if cfg.get('rope_scaling') \
        else rope_scaling_fields(rp, 'config: rope_parameters')
    try:
        dim, heads = cfg['hidden_size'], cfg['num_attention_heads']
        c = base_config(dim=dim, hidden_dim=cfg['intermediate_size'], n_layers=cfg['num_hidden_layers'],
                        n_heads=heads, n_kv_heads=cfg.get('num_key_value_heads') or heads,
                        head_dim=cfg.get('head_dim') or dim // heads, vocab_size=cfg['vocab_size'],
                        seq_len=cfg.get('max_position_embeddings', 2048),
                        bos_id=special_id(cfg, 'bos_token_id', 1), eos_id=special_id(cfg, 'eos_token_id', 2),
                        norm_eps=float(cfg.get('rms_norm_eps', 1e-6)), rope_theta=float(theta), **scaling)
    except KeyError as e:
        fail(f'config: missing field {e.args[0]}')

    # find the tensors: one file, or shards listed in an index
    files = {}
    for kind in ('model.safetensors', 'pytorch_model.bin'):
        index = os.path.join(folder, kind + '.index.json')
        if os.path.exists(index):
            with open(index) as f:
                names = sorted(set(json.load(f)['weight_map'].values()))
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

    for t in where:
        if t.endswith('.bias'):
            fail(f'tensor {t}: biases are not supported')
    to_meta = {HF_NAMES[k]: k for k in ('tok_embeddings', 'norm', 'output')}
    for i in range(c['n_layers']):
        for k in LAYER_TENSORS:
            to_meta[f'model.layers.{i}.{HF_NAMES[k]}'] = f'layers.{i}.{k}'
    for t in where:
        if t not in to_meta and not t.endswith('rotary_emb.inv_freq'):
            fail(f'unexpected tensor {t} (not a Llama tensor, or more layers than num_hidden_layers)')
    from_meta = {m: h for h, m in to_meta.items() if h in where}

    tied = cfg.get('tie_word_embeddings', False)
    if not tied and 'output' not in from_meta:
        print('note: lm_head.weight is absent; the classifier is tied to the embedding')
        tied = True
    c['shared_classifier'] = int(bool(tied))

    def load(name):
        w = where[from_meta[name]].load(from_meta[name])
        if name.endswith('attention.wq'):
            w = unpermute(w, c['n_heads'])
        elif name.endswith('attention.wk'):
            w = unpermute(w, c['n_kv_heads'])
        return w
    return Model(c, {m: where[h].shape(h) for m, h in from_meta.items()}, load,
                 {m: h for h, m in to_meta.items()})


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
    c = base_config(dim=dim, hidden_dim=sd['layers.0.feed_forward.w1'].shape[0], n_layers=args['n_layers'],
                    n_heads=heads, n_kv_heads=args.get('n_kv_heads') or heads, head_dim=dim // heads,
                    vocab_size=vocab, seq_len=args.get('max_seq_len') or (131072 if scaling else 4096),
                    bos_id=128000 if llama3 else 1, eos_id=128001 if llama3 else 2,
                    norm_eps=float(args.get('norm_eps', 1e-5)),
                    rope_theta=float(args.get('rope_theta', 10000.0)), shared_classifier=int(shared), **scaling)
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


# ----------------------------------------------------------------------------------------------------
# writing

def legacy_check(c):
    if c['head_dim'] != c['dim'] // c['n_heads'] or c['dim'] % c['n_heads']:
        fail(f'--legacy: head_dim = {c["head_dim"]} is not dim / n_heads = {c["dim"]} / {c["n_heads"]}')
    if c['rope_theta'] != 10000.0:
        fail(f'--legacy: rope_theta = {c["rope_theta"]:g}; version 0 files assume 10000')
    if c['rope_scaling']:
        fail('--legacy: rope_scaling (llama3) cannot be expressed in a version 0 file')
    if np.float32(c['norm_eps']) != np.float32(1e-5):
        fail(f'--legacy: norm_eps = {c["norm_eps"]:g}; version 0 files assume 1e-5')
    if (c['bos_id'], c['eos_id']) != (1, 2):
        print(f'warning: bos/eos ids {c["bos_id"]}/{c["eos_id"]} are not stored in a version 0 file (1/2 assumed)')


def razor_header(c):
    h = struct.pack('<I12i2fi3fi', RAZOR_MAGIC, RAZOR_VERSION, c['dim'], c['hidden_dim'], c['n_layers'],
                    c['n_heads'], c['n_kv_heads'], c['head_dim'], c['vocab_size'], c['seq_len'], c['bos_id'],
                    c['eos_id'], c['shared_classifier'], c['norm_eps'], c['rope_theta'], c['rope_scaling'],
                    c['rope_factor'], c['rope_low_freq_factor'], c['rope_high_freq_factor'],
                    c['rope_original_context'])
    return h + bytes(HEADER_BYTES - len(h))


def legacy_header(c):
    vocab = c['vocab_size'] if c['shared_classifier'] else -c['vocab_size']
    return struct.pack('<7i', c['dim'], c['hidden_dim'], c['n_layers'], c['n_heads'], c['n_kv_heads'],
                       vocab, c['seq_len'])


def write(model, out, legacy=False):
    c = model.config
    layers = lambda k: [f'layers.{i}.{k}' for i in range(c['n_layers'])]
    names = ['tok_embeddings', *layers('attention_norm'), *layers('attention.wq'), *layers('attention.wk'),
             *layers('attention.wv'), *layers('attention.wo'), *layers('ffn_norm'), *layers('feed_forward.w1'),
             *layers('feed_forward.w2'), *layers('feed_forward.w3'), 'norm']
    extra = []
    if legacy:  # version 0 stores the RoPE table (razor and run.c skip it)
        hd = c['head_dim']
        freqs = np.outer(np.arange(c['seq_len']), 1.0 / 10000.0 ** (np.arange(0, hd, 2) / hd))
        extra = [np.cos(freqs), np.sin(freqs)]
    shapes = expected_shapes(c)
    total = 4 * (sum(math.prod(s) for s in shapes.values()) + sum(e.size for e in extra))
    tmp = out + '.tmp'
    try:
        with open(tmp, 'wb') as f:
            f.write(legacy_header(c) if legacy else razor_header(c))
            for name in names:
                if total > BIG:
                    print(f'writing {name} {shapes[name]}', flush=True)
                f.write(np.ascontiguousarray(model.load(name), dtype='<f4').tobytes())
            for e in extra:
                f.write(e.astype('<f4').tobytes())
            if not c['shared_classifier']:
                f.write(np.ascontiguousarray(model.load('output'), dtype='<f4').tobytes())
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    print(f'wrote {out} ({"llama2.c version 0" if legacy else "razor v1"}, {os.path.getsize(out) / 1e6:.1f} MB): '
          + ', '.join(f'{k}={c[k]}' for k in ('dim', 'hidden_dim', 'n_layers', 'n_heads', 'n_kv_heads',
                                              'head_dim', 'vocab_size', 'seq_len', 'shared_classifier')))


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
    ap.add_argument('--legacy', action='store_true', help='write llama2.c version 0 instead')
    ap.add_argument('--seq-len', type=int, help='override the maximum context')
    ap.add_argument('--tokenizer', metavar='FILE', help='tokenizer.model (sentencepiece) or tokenizer.json (byte-level BPE) to export too')
    ap.add_argument('--tokenizer-out', metavar='PATH', help='where to write it (default: tokenizer.bin next to OUT)')
    a = ap.parse_args(argv)
    try:
        if a.tokenizer and not os.path.exists(a.tokenizer):
            fail(f'{a.tokenizer}: no such tokenizer file')
        model = load_hf(a.hf) if a.hf else load_meta(a.meta) if a.meta else load_checkpoint(a.checkpoint)
        if a.seq_len:
            model.config['seq_len'] = a.seq_len
        model.check()
        if a.legacy:
            legacy_check(model.config)
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
