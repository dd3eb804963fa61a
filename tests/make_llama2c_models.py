#!/usr/bin/python3
"""Random-weight llama2.c "version 0" files of stories15M's and stories110M's shapes, for comparing
razor's speed with llama2.c's on the same files (tests/compare_llama2c.sh).

usage: /usr/bin/python3 tests/make_llama2c_models.py OUTDIR     (writes OUTDIR/m15.bin, OUTDIR/m110.bin)

Weights N(0, 0.02), RMSNorm weights 1, the freq_cis tables llama2.c's version 0 carries (theta 1e4),
tied classifier, context 2048.
"""
import os, struct, sys
import numpy as np


def write(path, dim, hidden, layers, heads, vocab=32000, seq_len=2048, seed=0):
    rng, hd = np.random.default_rng(seed), dim // heads
    rand = lambda *shape: (rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02))
    ones = lambda *shape: np.ones(shape, dtype=np.float32)
    angles = np.outer(np.arange(seq_len), 1.0 / 10000.0 ** (np.arange(0, hd, 2) / hd))
    parts = [rand(vocab, dim), ones(layers, dim), rand(layers, dim, dim), rand(layers, dim, dim),
             rand(layers, dim, dim), rand(layers, dim, dim), ones(layers, dim), rand(layers, hidden, dim),
             rand(layers, dim, hidden), rand(layers, hidden, dim), ones(dim),
             np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)]
    with open(path + '.tmp', 'wb') as f:
        f.write(struct.pack('<7i', dim, hidden, layers, heads, heads, vocab, seq_len))
        for p in parts:
            f.write(p.tobytes())
    os.replace(path + '.tmp', path)
    print(f'wrote {path} ({os.path.getsize(path)} bytes)')


if __name__ == '__main__':
    out = sys.argv[1]
    write(os.path.join(out, 'm15.bin'), 288, 768, 6, 6, seed=1234)
    write(os.path.join(out, 'm110.bin'), 768, 2048, 12, 12, seed=5678)
