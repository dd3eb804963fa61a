#!/usr/bin/python3
"""Train a small Llama on the corpus (train/corpus.py) and write a Hugging Face style folder.

usage: /usr/bin/python3 train/train.py --out DIR [--dim 192 --layers 6 --heads 6 --kv-heads 6
           --seq-len 1024 --batch 8 --steps 2000 --lr 1e-3 --seed 1 --device cpu --bf16 --resume --bytes]
then:  /usr/bin/python3 export.py model.bin --hf DIR/hf

The model is a plain Llama: RMSNorm, RoPE in Hugging Face's rotate-half convention (so q/k rows are
in HF order and DIR/hf is a genuine LlamaForCausalLM checkpoint), SwiGLU, optional GQA (head h uses
kv head h // (heads / kv_heads), as HF's repeat_kv), tied embeddings, no biases.

Data. The corpus is tokenized once with tests/sp512/tokenizer.model (or, with --bytes, byte by byte: ids 3..258
are the bytes, as the byte-fallback pieces of a llama2.c tokenizer.bin that train/tokenizer.py --bytes
writes) and cached as uint16 in DATA/train.npy and DATA/val.npy (DATA/bytes-*.npy for bytes; the last
~2% of each text, cut at a paragraph boundary, is held out). Every training
row is BOS followed by seq_len tokens. Rows are drawn from this mix:
  55% plain text: a random window of the training split;
  15% passkey: "The pass key is 48213. Remember it." planted at a random depth in a window of text,
      ending with "What is the pass key? The pass key is 48213.";
  15% key-value facts: 3-8 facts ("Emma's number is 3817." / "The code for the lamp is 5120.")
      planted at random depths, then 1-3 questions about them, each answered;
  15% repeated span: a random span (16-256 tokens) of the window copied again later in it.
Loss is on every token except the planted needle and fact lines themselves: their numbers cannot be
predicted, and we do not want the model to produce such lines spontaneously in plain prose. The
answers are scored, and they are where retrieval is learned.

Determinism: weights come from --seed, and the batch of step s from the RNG (seed, s), so a run
resumed from a checkpoint sees the same data as an uninterrupted one.
Checkpoints (model, optimizer, step) go to DIR/ckpt.pt every --ckpt-every steps and on exit
(Ctrl-C or SIGTERM); --resume continues from it. At the end DIR/hf holds config.json and
model.safetensors (F32, written with numpy). Running --resume on a finished run just rewrites DIR/hf.
"""
import argparse, json, math, os, signal, struct, sys, time
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
BOS, EOS = 1, 2
NL = ord('\n') + 3  # the byte-fallback token for a newline

# ----------------------------------------------------------------------------------------------------
# the model


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


def rope_tables(head_dim, T, theta):
    inv = 1.0 / theta ** (torch.arange(0, head_dim, 2).float() / head_dim)
    f = torch.outer(torch.arange(T).float(), inv)
    f = torch.cat([f, f], dim=-1)  # HF layout: the first half of a head pairs with the second half
    return f.cos(), f.sin()


def rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat([-b, a], dim=-1)


def alibi_slopes(n):
    """ALiBi's slopes (Press et al.): 2^(-8/n), 2^(-16/n), ... for n a power of two; otherwise those of
    the power of two p below n, then every other one of those for 2p."""
    p = 2 ** int(math.log2(n))
    return [2 ** (-8 * (h + 1) / p) for h in range(p)] + [2 ** (-8 * (2 * h + 1) / (2 * p)) for h in range(n - p)]


def causal_attention(q, k, v, chunk, window=None, slopes=None):
    """softmax(q k^T) v with a causal mask, q already scaled; (B, H, T, hd). Queries go in chunks, and
    chunk i only looks at keys up to its own end, so the masked upper half is (mostly) never computed.
    window = (sinks, recent), for evaluation only: every head sees just the first `sinks` tokens and the
    last `recent` ones, as a sliding-window cache (razor's streaming policy) would. slopes (H,): ALiBi,
    the score of query i for key j gets -slope * (i - j)."""
    T = q.shape[2]

    def alibi(s, i0, i1, j1):
        if slopes is None:
            return s
        dist = torch.arange(i0, i1, device=q.device).view(-1, 1) - torch.arange(j1, device=q.device).view(1, -1)
        return s - slopes.view(-1, 1, 1) * dist
    if window is not None:
        i, j = torch.arange(T).view(-1, 1), torch.arange(T).view(1, -1)
        hidden = (j > i) | ((j >= window[0]) & (j <= i - window[1]))
        s = alibi(q @ k.transpose(-1, -2), 0, T, T).masked_fill(hidden, float('-inf'))
        return torch.softmax(s.float(), dim=-1).type_as(v) @ v
    above = torch.ones(chunk, chunk, dtype=torch.bool, device=q.device).triu(1)
    out = []
    for i in range(0, T, chunk):
        j = min(i + chunk, T)
        s = alibi(q[:, :, i:j] @ k[:, :, :j].transpose(-1, -2), i, j, j)
        s[..., i:j].masked_fill_(above[:j - i, :j - i], float('-inf'))  # only the diagonal block needs a mask
        out.append(torch.softmax(s.float(), dim=-1).type_as(v) @ v[:, :, :j])
    return torch.cat(out, dim=2)


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.heads, self.kv_heads, self.hd = c['heads'], c['kv_heads'], c['dim'] // c['heads']
        d, hd = c['dim'], self.hd
        self.q_proj = nn.Linear(d, self.heads * hd, bias=False)
        self.k_proj = nn.Linear(d, self.kv_heads * hd, bias=False)
        self.v_proj = nn.Linear(d, self.kv_heads * hd, bias=False)
        self.o_proj = nn.Linear(self.heads * hd, d, bias=False)
        self.gate_proj = nn.Linear(d, c['hidden'], bias=False)
        self.up_proj = nn.Linear(d, c['hidden'], bias=False)
        self.down_proj = nn.Linear(c['hidden'], d, bias=False)
        self.input_layernorm = RMSNorm(d, c['norm_eps'])
        self.post_attention_layernorm = RMSNorm(d, c['norm_eps'])
        self.alibi = c.get('alibi', False)
        self.register_buffer('slopes', torch.tensor(alibi_slopes(self.heads)), persistent=False)

    def forward(self, x, cos, sin, chunk, window=None):
        B, T, _ = x.shape
        h = self.input_layernorm(x)
        q = self.q_proj(h).view(B, T, self.heads, self.hd).transpose(1, 2)
        k = self.k_proj(h).view(B, T, self.kv_heads, self.hd).transpose(1, 2)
        v = self.v_proj(h).view(B, T, self.kv_heads, self.hd).transpose(1, 2)
        if not self.alibi:
            q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        q = q * self.hd ** -0.5
        if self.kv_heads != self.heads:
            rep = self.heads // self.kv_heads
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        a = causal_attention(q.type_as(v), k.type_as(v), v, chunk, window, self.slopes if self.alibi else None)
        x = x + self.o_proj(a.transpose(1, 2).reshape(B, T, -1))
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Llama(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Embedding(c['vocab'], c['dim'])
        self.layers = nn.ModuleList(Block(c) for _ in range(c['layers']))
        self.norm = RMSNorm(c['dim'], c['norm_eps'])
        cos, sin = rope_tables(c['dim'] // c['heads'], c['seq_len'], c['rope_theta'])
        self.register_buffer('cos', cos, persistent=False)
        self.register_buffer('sin', sin, persistent=False)
        for name, p in self.named_parameters():  # GPT-2 style init, as llama2.c
            if p.dim() == 2:
                residual = name.endswith(('o_proj.weight', 'down_proj.weight'))
                std = 0.02 / math.sqrt(2 * c['layers']) if residual else 0.02
                nn.init.normal_(p, mean=0.0, std=std)

    def forward(self, idx, chunk=256, window=None):
        T = idx.shape[1]
        x = self.embed_tokens(idx)
        cos, sin = self.cos[:T], self.sin[:T]
        for layer in self.layers:
            x = layer(x, cos, sin, chunk, window)
        return self.norm(x) @ self.embed_tokens.weight.t().type_as(x)  # tied classifier

    def hf_tensors(self):
        """Name -> float32 numpy array, under Hugging Face's names (lm_head is tied, so absent). An ALiBi
        model in Baichuan's layout: q, k and v stacked in one W_pack, and lm_head written out."""
        out = {}
        for name, p in self.state_dict().items():
            if name.startswith('layers.'):
                i, rest = name.split('.', 2)[1:]
                part = 'self_attn' if rest.split('.')[0] in ('q_proj', 'k_proj', 'v_proj', 'o_proj') else \
                    'mlp' if rest.split('.')[0] in ('gate_proj', 'up_proj', 'down_proj') else None
                name = f'layers.{i}.{part}.{rest}' if part else f'layers.{i}.{rest}'
            out['model.' + name] = p.detach().float().cpu().numpy()
        if self.c.get('alibi'):
            for i in range(self.c['layers']):
                a = f'model.layers.{i}.self_attn.'
                out[a + 'W_pack.weight'] = np.concatenate([out.pop(a + f'{x}_proj.weight') for x in 'qkv'])
            out['lm_head.weight'] = out['model.embed_tokens.weight']
        return out


def hf_config(c):
    if c.get('alibi'):  # Baichuan-13B's config: export.py --alibi
        return {'architectures': ['BaichuanForCausalLM'], 'model_type': 'baichuan', 'hidden_act': 'silu',
                'hidden_size': c['dim'], 'intermediate_size': c['hidden'], 'num_hidden_layers': c['layers'],
                'num_attention_heads': c['heads'], 'vocab_size': c['vocab'], 'rms_norm_eps': c['norm_eps'],
                'model_max_length': c['seq_len'], 'tie_word_embeddings': False, 'bos_token_id': BOS,
                'eos_token_id': EOS, 'torch_dtype': 'float32'}
    return {'architectures': ['LlamaForCausalLM'], 'model_type': 'llama', 'hidden_act': 'silu',
            'hidden_size': c['dim'], 'intermediate_size': c['hidden'], 'num_hidden_layers': c['layers'],
            'num_attention_heads': c['heads'], 'num_key_value_heads': c['kv_heads'],
            'head_dim': c['dim'] // c['heads'], 'vocab_size': c['vocab'], 'rms_norm_eps': c['norm_eps'],
            'rope_theta': c['rope_theta'], 'max_position_embeddings': c['seq_len'],
            'tie_word_embeddings': True, 'bos_token_id': BOS, 'eos_token_id': EOS,
            'attention_bias': False, 'mlp_bias': False, 'torch_dtype': 'float32'}


def write_safetensors(path, tensors):
    header, offset = {}, 0
    for name, a in tensors.items():
        header[name] = {'dtype': 'F32', 'shape': list(a.shape), 'data_offsets': [offset, offset + a.size * 4]}
        offset += a.size * 4
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * (-len(h) % 8)
    with open(path + '.tmp', 'wb') as f:
        f.write(struct.pack('<Q', len(h)) + h)
        for a in tensors.values():
            f.write(np.ascontiguousarray(a, dtype='<f4').tobytes())
    os.replace(path + '.tmp', path)


def write_hf(model, folder):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, 'config.json'), 'w') as f:
        json.dump(hf_config(model.c), f, indent=2)
    write_safetensors(os.path.join(folder, 'model.safetensors'), model.hf_tensors())

# ----------------------------------------------------------------------------------------------------
# data


def load_sp():
    import sentencepiece as spm
    return spm.SentencePieceProcessor(model_file=os.path.join(TOP, 'tests', 'sp512', 'tokenizer.model'))


class Bytes:
    """The byte-level vocabulary, with sentencepiece's interface: <unk> <s> </s>, then byte b is id 3 + b.
    Like sentencepiece (and razor, reading the matching tokenizer.bin), it adds a dummy-prefix space."""

    def encode(self, text):
        return [3 + b for b in (' ' + text).encode('utf-8')]

    def get_piece_size(self):
        return 259


def prepare(data_dir, sp):
    """Tokenize austen.txt and web.txt once; returns (train, val, meta) from the cache."""
    prefix = 'bytes-' if isinstance(sp, Bytes) else ''
    paths = [os.path.join(data_dir, prefix + n) for n in ('train.npy', 'val.npy', 'meta.json')]
    if not all(os.path.exists(p) for p in paths):
        train, val, val_bytes = [], [], 0
        for name in ('austen.txt', 'web.txt'):
            text = open(os.path.join(data_dir, name), encoding='utf-8').read()
            cut = text.find('\n', int(len(text) * 0.98)) + 1  # hold out the last ~2%, from a line start
            train.append(sp.encode(text[:cut]) + [NL])
            val.append(sp.encode(text[cut:]) + [NL])
            val_bytes += len(text[cut:].encode('utf-8')) + 1
            print(f'{name}: {len(train[-1])} train tokens, {len(val[-1])} val tokens', flush=True)
        np.save(paths[0], np.array(sum(train, []), dtype=np.uint16))
        np.save(paths[1], np.array(sum(val, []), dtype=np.uint16))
        with open(paths[2], 'w') as f:
            json.dump({'val_bytes': val_bytes, 'vocab': sp.get_piece_size()}, f)
    return np.load(paths[0]), np.load(paths[1]), json.load(open(paths[2]))


NAMES = ('Emma Anne Jane Harriet Fanny Marianne Elinor Lydia Kitty Mary Catherine Isabella Henry Edmund '
         'Frederick Charles William Edward Robert John Thomas George Lucy Sarah Martha Ruth Esther Miriam '
         'Aaron David Samuel Daniel Peter Philip Simon Andrew Hannah Rachel Leah Naomi').split()
THINGS = ('lamp door chest box gate cellar garden window trunk desk cabinet library stable carriage '
          'tower bridge well cottage barn study').split()


ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'

# The row kinds and their shares: the default mix, and the curriculum's phases (--curriculum). A phase
# runs until its share of --steps is done, on rows of its fraction of --seq-len; the batch grows as the
# rows shrink, so every step sees the same number of tokens. Short rows of copy tasks come first (an
# induction head forms fastest there), full-length rows with more prose last (a pass key at the full
# length is only learned on rows that long).
MIX = {'plain': 0.55, 'passkey': 0.15, 'facts': 0.15, 'copy': 0.15}
CURRICULUM = [  # (end of the phase as a fraction of --steps, row length as a fraction of --seq-len, mix)
    (0.4, 0.25, {'plain': 0.15, 'passkey': 0.25, 'facts': 0.20, 'copy': 0.40}),
    (0.7, 0.5, {'plain': 0.30, 'passkey': 0.25, 'facts': 0.15, 'copy': 0.30}),
    (1.0, 1.0, {'plain': 0.40, 'passkey': 0.20, 'facts': 0.15, 'copy': 0.25}),
]


def phase(step, args):
    """(row length, batch, mix) for this step."""
    if not args.curriculum:
        return args.seq_len, args.batch, MIX
    for end, frac, mix in CURRICULUM:
        if step < end * args.steps:
            break
    T = max(16, int(args.seq_len * frac))
    return T, args.batch * args.seq_len // T, mix


class Mixer:
    """Builds training rows: BOS + T tokens, with a mask of the targets that are scored."""

    def __init__(self, sp, tokens):
        self.sp, self.tokens = sp, tokens
        self.cache = {}

    def enc(self, s):
        if s not in self.cache:
            if len(self.cache) > 100000:
                self.cache.clear()
            self.cache[s] = self.sp.encode(s)
        return self.cache[s]

    def text(self, rng, n):
        o = int(rng.integers(0, len(self.tokens) - n))
        return self.tokens[o:o + n].astype(np.int64)

    def plant(self, rng, T, needles, tail, score_needle=lambda i: False):
        """Text with needles (token lists; the i-th in the row scored if score_needle(i)) at random
        depths, then the tail (strings, scored)."""
        if not tail:
            tail = []
        elif rng.random() < 0.5:  # the questions follow the text, or start a new line
            tail = self.enc(' '.join(tail))
        else:
            tail = self.enc('\n' + ' '.join(tail))
            tail = tail[tail.index(NL):]  # drop the dummy-prefix space before the newline
        n = T - sum(map(len, needles)) - len(tail)
        if n < 1:  # (only with a tiny --seq-len) no room: plain text instead
            return self.plain(rng, T)
        filler = list(self.text(rng, n))
        depths = sorted(rng.integers(0, n + 1, size=len(needles)))
        row, scored, prev = [BOS], [], 0
        for i, (d, nd) in enumerate(zip(depths, rng.permutation(len(needles)))):
            row += filler[prev:d] + needles[nd]
            scored += [True] * (d - prev) + [score_needle(i)] * len(needles[nd])
            prev = d
        row += filler[prev:] + tail
        scored += [True] * (n - prev + len(tail))
        return np.array(row), np.array(scored)  # scored[t]: is row[t + 1], the target at t, scored

    def passkey(self, rng, T):
        key = int(rng.integers(10 ** int(rng.integers(2, 6)), 10 ** 6))
        needle = self.enc(f'The pass key is {key}. Remember it.')
        return self.plant(rng, T, [needle], ['What is the pass key?', f'The pass key is {key}.'])

    def facts(self, rng, T):
        n = int(rng.integers(3, 9))
        if rng.random() < 0.5:
            keys = rng.choice(NAMES, n, replace=False)
            fact, ask = "{0}'s number is {1}.", "What is {0}'s number?"
        else:
            keys = rng.choice(THINGS, n, replace=False)
            fact, ask = 'The code for the {0} is {1}.', 'What is the code for the {0}?'
        vals = [int(rng.integers(100, 10000)) for _ in keys]
        needles = [self.enc(fact.format(k, v)) for k, v in zip(keys, vals)]
        tail = []
        for i in rng.choice(n, int(rng.integers(1, 4)), replace=False):
            tail += [ask.format(keys[i]), fact.format(keys[i], vals[i])]
        return self.plant(rng, T, needles, tail)

    def copy(self, rng, T):
        """A quarter of the time a span of the text copied again later in it; else a random
        alphanumeric string (8-40 characters) planted three times in prose, the first unscored (it
        cannot be predicted), the later two scored: only looking back can predict them."""
        if rng.random() < 0.25:
            row = np.concatenate([[BOS], self.text(rng, T)])
            L = int(rng.integers(min(16, T // 4), min(256, T // 4) + 1))
            a = int(rng.integers(1, T + 1 - 2 * L))
            b = int(rng.integers(a + L, T + 2 - L))
            row[b:b + L] = row[a:a + L].copy()
            return row, np.ones(T, dtype=bool)
        s = ''.join(rng.choice(list(ALNUM), int(rng.integers(8, 41))))
        return self.plant(rng, T, [self.enc(s)] * 3, [], score_needle=lambda i: i > 0)

    def plain(self, rng, T):
        return np.concatenate([[BOS], self.text(rng, T)]), np.ones(T, dtype=bool)

    def row(self, rng, T, mix):
        u, acc = rng.random(), 0.0
        for kind, share in mix.items():
            acc += share
            if u < acc:
                break
        return getattr(self, kind)(rng, T)

    def batch(self, seed, step, B, T, mix):
        rng = np.random.default_rng([seed, step])
        rows, masks = zip(*(self.row(rng, T, mix) for _ in range(B)))
        rows, masks = np.stack(rows), np.stack(masks)
        y = np.where(masks, rows[:, 1:], -1)
        return torch.from_numpy(rows[:, :-1].copy()), torch.from_numpy(y)

# ----------------------------------------------------------------------------------------------------
# evaluation


@torch.no_grad()
def evaluate(model, val, T, B, dev, amp, chunk):
    """Summed loss (nats) and count over every val token: windows of BOS + T-1 tokens, each token once."""
    model.eval()
    total, count = 0.0, 0
    starts = list(range(0, len(val), T - 1))
    for i in range(0, len(starts), B):
        xs, ys = [], []
        for s in starts[i:i + B]:
            w = val[s:s + T - 1].astype(np.int64)
            x = np.concatenate([[BOS], w[:-1]])
            xs.append(np.pad(x, (0, T - 1 - len(x)))), ys.append(np.pad(w, (0, T - 1 - len(w)), constant_values=-1))
        x, y = torch.from_numpy(np.stack(xs)).to(dev), torch.from_numpy(np.stack(ys)).to(dev)
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=amp):
            logits = model(x, chunk)
        total += F.cross_entropy(logits.float().view(-1, logits.shape[-1]), y.view(-1), ignore_index=-1,
                                 reduction='sum').item()
        count += int((y >= 0).sum())
    model.train()
    return total, count


def streaming_window(T):
    """razor's defaults for a compressed head at T tokens: 4 sinks, a window of max(64, T / 5)."""
    return 4, max(64, T // 5)


@torch.no_grad()
def passkey_accuracy(model, mixer, T, n, dev, amp, chunk, window=None):
    """Greedy, teacher-forced: the share of passkey rows of T tokens (from val text) whose answer digits
    all come out right. (Rows too short for the task, which the mixer fills with plain text, do not
    count.) window: see causal_attention."""
    model.eval()
    rng, right, rows = np.random.default_rng(12345), 0, 0
    ans = mixer.enc('The pass key is')
    for _ in range(n):
        row, _ = mixer.passkey(rng, T)
        k = len(row) - 2  # the answer's digits sit between "The pass key is" (last one) and the final "."
        while k >= len(ans) and list(row[k - len(ans):k]) != ans:
            k -= 1
        if k < len(ans):
            continue
        x = torch.from_numpy(row[:-1].copy()).unsqueeze(0).to(dev)
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=amp):
            pred = model(x, chunk, window).argmax(-1)[0].cpu().numpy()
        right += bool((pred[k - 1:len(row) - 2] == row[k:len(row) - 1]).all())
        rows += 1
    model.train()
    return right / max(rows, 1)


@torch.no_grad()
def copy_accuracy(model, sp, n, dev, amp, chunk, length=100):
    """Greedy, teacher-forced: the share of characters predicted right in the second showing of a random
    alphanumeric string of `length` characters shown twice (BOS s s). Its first character is not
    counted (nothing tells where the copy starts)."""
    model.eval()
    rng, right, count = np.random.default_rng(54321), 0, 0
    for _ in range(n):
        s = sp.encode(''.join(rng.choice(list(ALNUM), min(length, model.c['seq_len'] // 2 - 2))))
        row = np.array([BOS] + s + s)
        x = torch.from_numpy(row[:-1].copy()).unsqueeze(0).to(dev)
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=amp):
            pred = model(x, chunk).argmax(-1)[0].cpu().numpy()
        start = 1 + len(s)  # row[start] is the copy's first token; pred[t] predicts row[t + 1]
        right += int((pred[start:len(row) - 1] == row[start + 1:]).sum())
        count += len(row) - 1 - start
    model.train()
    return right / max(count, 1)

# ----------------------------------------------------------------------------------------------------
# training


def cpu_has(flag):
    try:
        return any(line.startswith('flags') and flag in line.split() for line in open('/proc/cpuinfo'))
    except OSError:
        return False


def lr_at(step, args):
    warm = max(1, min(100, args.steps // 10))
    if step < warm:
        return args.lr * (step + 1) / warm
    p = min(1.0, (step - warm) / max(1, args.steps - warm))
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))  # cosine down to lr / 10


def save(path, model, opt, step, config):
    torch.save({'model': model.state_dict(), 'opt': opt.state_dict(), 'step': step, 'config': config}, path + '.tmp')
    os.replace(path + '.tmp', path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--dim', type=int, default=192)
    ap.add_argument('--layers', type=int, default=6)
    ap.add_argument('--heads', type=int, default=6)
    ap.add_argument('--kv-heads', type=int, default=0, help='default: --heads')
    ap.add_argument('--hidden', type=int, default=0, help='SwiGLU width; default 8/3 dim rounded up to 32')
    ap.add_argument('--seq-len', type=int, default=1024)
    ap.add_argument('--batch', type=int, default=8)
    ap.add_argument('--steps', type=int, default=2000)
    ap.add_argument('--lr', type=float, default=1e-3)
    ap.add_argument('--weight-decay', type=float, default=0.1)
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--out', required=True)
    ap.add_argument('--resume', action='store_true')
    ap.add_argument('--stop-at', type=int, default=-1, help='checkpoint and stop at this step (resume later)')
    ap.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu', choices=('cpu', 'cuda'))
    ap.add_argument('--bf16', default='auto', choices=('auto', 'on', 'off'),
                    help='bfloat16 autocast; auto: on a GPU, or on a CPU with AMX or AVX512-BF16 '
                         '(elsewhere it is slower than fp32)')
    ap.add_argument('--curriculum', action='store_true', help='short rows of copy tasks first (see CURRICULUM)')
    ap.add_argument('--alibi', action='store_true', help='ALiBi instead of RoPE (no KV groups); exported as Baichuan')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--chunk', type=int, default=256, help='attention query chunk')
    ap.add_argument('--data', default=os.path.join(HERE, 'data'), help='corpus and token cache folder')
    ap.add_argument('--bytes', action='store_true', help='byte-level vocabulary (259 ids) instead of tokenizer.model')
    ap.add_argument('--log-every', type=int, default=10)
    ap.add_argument('--eval-every', type=int, default=200)
    ap.add_argument('--ckpt-every', type=int, default=100)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    dev = args.device
    bf16_cpu = cpu_has('amx_bf16') or cpu_has('avx512_bf16')
    amp = args.bf16 == 'on' or (args.bf16 == 'auto' and (dev == 'cuda' or bf16_cpu))
    os.makedirs(args.out, exist_ok=True)
    ckpt_path = os.path.join(args.out, 'ckpt.pt')
    sp = Bytes() if args.bytes else load_sp()
    train, val, meta = prepare(args.data, sp)
    config = dict(dim=args.dim, layers=args.layers, heads=args.heads, kv_heads=args.kv_heads or args.heads,
                  hidden=args.hidden or -(-8 * args.dim // 3 // 32) * 32, vocab=sp.get_piece_size(),
                  seq_len=args.seq_len, norm_eps=1e-5, rope_theta=10000.0, alibi=args.alibi)
    ck = None
    if args.resume:
        ck = torch.load(ckpt_path, map_location='cpu')
        if ck['config'] != config:
            print(f'note: using the checkpoint\'s model config {ck["config"]}')
        config = ck['config']
    assert config['dim'] % config['heads'] == 0 and config['heads'] % config['kv_heads'] == 0
    model = Llama(config).to(dev)
    decay = [p for p in model.parameters() if p.dim() == 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{'params': decay, 'weight_decay': args.weight_decay},
                             {'params': other, 'weight_decay': 0.0}], lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    step = 0
    if ck:
        model.load_state_dict(ck['model'])
        opt.load_state_dict(ck['opt'])
        step = ck['step']
        print(f'resumed at step {step}')
    n_params = sum(p.numel() for p in model.parameters())
    print(f'config {config}, {n_params / 1e6:.2f}M parameters; {len(train)} train / {len(val)} val tokens; '
          f'{dev}{" bf16" if amp else " fp32"}', flush=True)

    T = config['seq_len']
    mixer, val_mixer = Mixer(sp, train), Mixer(sp, val)

    def report_eval():
        total, count = evaluate(model, val, T, args.batch, dev, amp, args.chunk)
        full = passkey_accuracy(model, val_mixer, T, 16, dev, amp, args.chunk)
        streaming = passkey_accuracy(model, val_mixer, T, 16, dev, amp, args.chunk, streaming_window(T))
        copy = copy_accuracy(model, sp, 8, dev, amp, args.chunk)
        per_byte = total / meta['val_bytes']
        print(f'step {step}: val loss {total / count:.4f} (perplexity {math.exp(total / count):.2f} per token, '
              f'{math.exp(per_byte):.3f} per byte = {per_byte / math.log(2):.4f} bits/byte), '
              f'passkey at {T}: {full:.2f} (sinks+window: {streaming:.2f}), copy {copy:.2f}', flush=True)

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    t0, tokens_seen, start = time.time(), 0, time.time()
    try:
        while step < args.steps:
            if step == args.stop_at:
                save(ckpt_path, model, opt, step, config)
                print(f'stopped at step {step}; continue with --resume')
                return
            rows, batch, mix = phase(step, args)
            x, y = mixer.batch(args.seed, step, batch, rows, mix)
            x, y = x.to(dev), y.to(dev)
            for g in opt.param_groups:
                g['lr'] = lr_at(step, args)
            with torch.autocast(dev, dtype=torch.bfloat16, enabled=amp):
                logits = model(x, args.chunk)
            loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), y.view(-1), ignore_index=-1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            tokens_seen += x.numel()
            if step % args.log_every == 0 or step == args.steps:
                dt = time.time() - t0
                print(f'step {step}/{args.steps} loss {loss.item():.4f} lr {lr_at(step - 1, args):.2e} rows {rows} '
                      f'{tokens_seen / dt:.0f} tok/s, {(time.time() - start) / 60:.1f} min', flush=True)
                t0, tokens_seen = time.time(), 0
            if step % args.ckpt_every == 0:
                save(ckpt_path, model, opt, step, config)
            if step % args.eval_every == 0 or step == args.steps:
                report_eval()
                t0, tokens_seen = time.time(), 0
    except KeyboardInterrupt:
        save(ckpt_path, model, opt, step, config)
        print(f'interrupted: saved step {step} to {ckpt_path}; continue with --resume')
        sys.exit(130)
    save(ckpt_path, model, opt, step, config)
    if ck and ck['step'] >= args.steps:
        report_eval()
    write_hf(model, os.path.join(args.out, 'hf'))
    print(f'wrote {os.path.join(args.out, "hf")}; export with: /usr/bin/python3 export.py model.bin '
          f'--hf {os.path.join(args.out, "hf")}')


if __name__ == '__main__':
    main()
