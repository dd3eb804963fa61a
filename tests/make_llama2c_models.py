#!/usr/bin/python3
"""Random-weight llama2.c "version 0" files, for comparing razor's speed with llama2.c's and llama.cpp's
on the same files (tests/compare_llama2c.sh, tests/compare_llamacpp.sh).

usage: /usr/bin/python3 tests/make_llama2c_models.py OUTDIR [NAME ...]   (default: m15 m110)

  m15       stories15M's shape: dim 288, 6 layers, 6 heads, context 2048
  m110      stories110M's shape: dim 768, 12 layers, 12 heads, context 2048
  m110_16k  m110 with a context of 16384
  m1b       TinyLlama 1.1B's shape: dim 2048, hidden 5632, 22 layers, 32 query heads on 4 KV heads
            (4.4 GB in float32)

Weights N(0, 0.02), RMSNorm weights 1, the freq_cis tables llama2.c's version 0 carries (theta 1e4),
tied classifier, vocabulary 32000. Each file is written under a temporary name and renamed.
"""
import os, struct, sys
import numpy as np

SHAPES = {  # dim, hidden, layers, heads, kv heads, seq_len, seed
    'm15': (288, 768, 6, 6, 6, 2048, 1234),
    'm110': (768, 2048, 12, 12, 12, 2048, 5678),
    'm110_16k': (768, 2048, 12, 12, 12, 16384, 5678),
    'm1b': (2048, 5632, 22, 32, 4, 2048, 91011),
}


def write(path, dim, hidden, layers, heads, kv_heads, seq_len, seed, vocab=32000):
    rng, hd = np.random.default_rng(seed), dim // heads
    kv_dim = kv_heads * hd
    rand = lambda *shape: (rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02))
    ones = lambda *shape: np.ones(shape, dtype=np.float32)
    angles = np.outer(np.arange(seq_len), 1.0 / 10000.0 ** (np.arange(0, hd, 2) / hd))
    # the order of llama2.c's version 0: one part at a time, so that a 1.1B file never sits whole in memory
    parts = [lambda: rand(vocab, dim), lambda: ones(layers, dim), lambda: rand(layers, dim, dim),
             lambda: rand(layers, kv_dim, dim), lambda: rand(layers, kv_dim, dim), lambda: rand(layers, dim, dim),
             lambda: ones(layers, dim), lambda: rand(layers, hidden, dim), lambda: rand(layers, dim, hidden),
             lambda: rand(layers, hidden, dim), lambda: ones(dim),
             lambda: np.cos(angles).astype(np.float32), lambda: np.sin(angles).astype(np.float32)]
    with open(path + '.tmp', 'wb') as f:
        f.write(struct.pack('<7i', dim, hidden, layers, heads, kv_heads, vocab, seq_len))
        for part in parts:
            f.write(part().tobytes())
    os.replace(path + '.tmp', path)
    print(f'wrote {path} ({os.path.getsize(path)} bytes)')


if __name__ == '__main__':
    if len(sys.argv) < 2 or any(name not in SHAPES for name in sys.argv[2:]):
        sys.exit(f'usage: make_llama2c_models.py OUTDIR [NAME ...], NAME one of {" ".join(SHAPES)}')
    for name in sys.argv[2:] or ['m15', 'm110']:
        write(os.path.join(sys.argv[1], name + '.bin'), *SHAPES[name])
