"""
tests/make_random_model.py: a razor model file (format version 2, model.h) with random weights, of any
shape, written straight in float32, bfloat16 or q8, for benchmarks at sizes no test needs to keep.

    /usr/bin/python3 tests/make_random_model.py OUT --dim 2048 --hidden 5632 --layers 22 --heads 32 \
        --kv-heads 4 --vocab 32000 --seq-len 4352 --dtype q8

It writes a matrix a block of rows at a time (never the whole model in memory), refuses to start if the
disk holds less than the file's size plus 1 GB, and writes OUT.tmp, renamed when complete. Weights are
Gaussian with std 1/sqrt(width), so activations keep their scale through the layers; the output is
noise, which is all a speed measurement needs.
"""
import argparse
import os
import shutil
import struct
import sys

import numpy as np

ALIGN, GROUP = 64, 32


def bf16_bits(a):
    u = a.astype('<f4').view('<u4')
    return ((u + 0x7fff + ((u >> 16) & 1)) >> 16).astype('<u2')


def q8(a):
    g = a.reshape(-1, GROUP)
    scale = np.abs(g).max(axis=1) / 127
    q = np.where(scale[:, None] > 0, np.rint(g / np.where(scale > 0, scale, 1)[:, None]), 0)
    return q.astype(np.int8).reshape(a.shape), scale.astype('<f4')


class Writer:
    def __init__(self, f):
        self.f = f

    def pad(self):
        self.f.write(b'\0' * (-self.f.tell() % ALIGN))

    def floats(self, a):
        self.pad()
        self.f.write(np.ascontiguousarray(a, dtype='<f4').tobytes())

    def matrix(self, rows, cols, dtype, rng, rows_per_block=4096):
        """rows x cols Gaussian weights with std 1/sqrt(cols), in dtype."""
        self.pad()
        scales = []
        for r in range(0, rows, rows_per_block):
            a = rng.standard_normal((min(rows_per_block, rows - r), cols), dtype=np.float32) / np.sqrt(cols)
            if dtype == 'f32':
                self.f.write(a.astype('<f4').tobytes())
            elif dtype == 'bf16':
                self.f.write(bf16_bits(a).tobytes())
            else:
                q, s = q8(a)
                self.f.write(q.tobytes())
                scales.append(s)
        if dtype == 'q8':
            self.pad()
            for s in scales:
                self.f.write(s.tobytes())


def size_of(c, dtype):
    """The file's size in bytes (the same walk as razor.c's map_weights)."""
    per = {'f32': 4, 'bf16': 2, 'q8': 1}[dtype]
    at = 256

    def add(n, matrix):
        nonlocal at
        at += -at % ALIGN
        at += n * (per if matrix else 4)
        if matrix and dtype == 'q8':
            at += -at % ALIGN
            at += n // GROUP * 4
    d, h, L, V = c.dim, c.hidden, c.layers, c.vocab
    q, kv = c.heads * (d // c.heads), c.kv_heads * (d // c.heads)
    add(V * d, True)
    add(L * d, False)
    for n in (L * q * d, L * kv * d, L * kv * d, L * d * q):
        add(n, True)
    add(L * d, False)
    for n in (L * h * d, L * d * h, L * h * d):
        add(n, True)
    add(d, False)
    return at


def main():
    ap = argparse.ArgumentParser(description='A random razor v2 model of any shape, for benchmarks.')
    ap.add_argument('out')
    for k in ('dim', 'hidden', 'layers', 'heads', 'kv-heads', 'vocab', 'seq-len'):
        ap.add_argument('--' + k, type=int, required=True)
    ap.add_argument('--dtype', choices=('f32', 'bf16', 'q8'), default='f32')
    ap.add_argument('--seed', type=int, default=1)
    c = ap.parse_args()
    if c.dtype == 'q8' and (c.dim % GROUP or c.hidden % GROUP):
        sys.exit(f'make_random_model.py: q8 needs dim and hidden to be multiples of {GROUP}')
    need = size_of(c, c.dtype)
    free = shutil.disk_usage(os.path.dirname(os.path.abspath(c.out))).free
    if free < need + (1 << 30):
        sys.exit(f'make_random_model.py: {c.out}: {need / 1e9:.2f} GB to write, {free / 1e9:.2f} GB free on that disk')
    hd = c.dim // c.heads
    q, kv, L = c.heads * hd, c.kv_heads * hd, c.layers
    rng = np.random.default_rng(c.seed)
    header = struct.pack('<I12i2fi3fi', 0x727A6172, 2, c.dim, c.hidden, L, c.heads, c.kv_heads, hd, c.vocab,
                         c.seq_len, 1, 2, 1, 1e-5, 10000.0, 0, 0.0, 0.0, 0.0, 0)
    header += struct.pack('<10i', {'f32': 0, 'bf16': 1, 'q8': 2}[c.dtype], GROUP if c.dtype == 'q8' else 0,
                          0, 0, 0, 0, -1, -1, -1, -1)
    tmp = c.out + '.tmp'
    try:
        with open(tmp, 'wb') as f:
            f.write(header.ljust(256, b'\0'))
            w = Writer(f)
            w.matrix(c.vocab, c.dim, c.dtype, rng)
            w.floats(np.ones(L * c.dim))
            for rows, cols in ((q, c.dim), (kv, c.dim), (kv, c.dim), (c.dim, q)):
                w.matrix(L * rows, cols, c.dtype, rng)
            w.floats(np.ones(L * c.dim))
            for rows, cols in ((c.hidden, c.dim), (c.dim, c.hidden), (c.hidden, c.dim)):
                w.matrix(L * rows, cols, c.dtype, rng)
            w.floats(np.ones(c.dim))
        if os.path.getsize(tmp) != need:
            raise RuntimeError(f'wrote {os.path.getsize(tmp)} bytes, expected {need}')
        os.replace(tmp, c.out)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    print(f'wrote {c.out}: {need / 1e6:.1f} MB, {c.dtype}')


if __name__ == '__main__':
    main()
