"""
tests/gguf_writer.py: a small GGUF writer for the tests, with numpy quantizers and dequantizers for the ggml
block types export.py reads (written from the format's documentation: llama.cpp's ggml/include/gguf.h
and gguf-py/gguf/constants.py for the file, ggml/src/ggml-common.h for the block layouts; no code taken).

    write_gguf(path, meta, tensors)   meta: key -> value; tensors: name -> (type, float array) or
                                      (type, raw block bytes, numpy shape); returns where things lie
    quantize(kind, a) -> raw bytes    a (rows, cols) float array, cols a multiple of the block size
    dequantize(kind, raw, n)          -> float32 values, element by element from the block layouts

The file: "GGUF", uint32 version, uint64 tensor count, uint64 key/value count; each key/value: a string
key, a uint32 value type, the value; each tensor info: a string name, uint32 n_dims, n_dims uint64
sizes (the fastest-varying first: a numpy (rows, cols) array is [cols, rows]), uint32 ggml type, uint64
offset from the data start; then zero padding to general.alignment (32 without it) and the tensor
data, each tensor at a multiple of the alignment. Strings: uint64 length, UTF-8 bytes. Arrays: uint32
element type, uint64 count, the elements. Little-endian throughout.
"""
import struct

import numpy as np

VALUE_TYPES = {'u8': 0, 'i8': 1, 'u16': 2, 'i16': 3, 'u32': 4, 'i32': 5, 'f32': 6, 'bool': 7, 'str': 8, 'arr': 9,
               'u64': 10, 'i64': 11, 'f64': 12}
PACK = {'u8': '<B', 'i8': '<b', 'u16': '<H', 'i16': '<h', 'u32': '<I', 'i32': '<i', 'f32': '<f', 'bool': '<?',
        'u64': '<Q', 'i64': '<q', 'f64': '<d'}
NUMPY_TYPES = {np.dtype('uint8'): 'u8', np.dtype('int8'): 'i8', np.dtype('uint16'): 'u16', np.dtype('int16'): 'i16',
               np.dtype('uint32'): 'u32', np.dtype('int32'): 'i32', np.dtype('float32'): 'f32',
               np.dtype('bool'): 'bool', np.dtype('uint64'): 'u64', np.dtype('int64'): 'i64',
               np.dtype('float64'): 'f64'}
# ggml type -> (id, values per block, bytes per block)
TYPES = {'F32': (0, 1, 4), 'F16': (1, 1, 2), 'Q4_0': (2, 32, 18), 'Q4_1': (3, 32, 20), 'Q5_0': (6, 32, 22),
         'Q5_1': (7, 32, 24), 'Q8_0': (8, 32, 34), 'Q4_K': (12, 256, 144), 'Q5_K': (13, 256, 176),
         'Q6_K': (14, 256, 210), 'BF16': (30, 1, 2)}


class Typed:
    """A metadata value with its GGUF type given: Typed('u64', 5), Typed('arr', [1, 2], 'i16'),
    Typed('arr', [[1], [2, 3]], ('arr', 'u8')) (an array of arrays)."""

    def __init__(self, kind, value, element=None):
        self.kind, self.value, self.element = kind, value, element


def infer(v):
    if isinstance(v, Typed):
        return v
    if isinstance(v, bool):
        return Typed('bool', v)
    if isinstance(v, int):
        return Typed('u32' if 0 <= v < 1 << 32 else 'i64', v)
    if isinstance(v, float):
        return Typed('f32', v)
    if isinstance(v, str):
        return Typed('str', v)
    if isinstance(v, np.ndarray):
        return Typed('arr', v.tolist(), NUMPY_TYPES[v.dtype])
    if isinstance(v, list):
        return Typed('arr', v, infer(v[0]).kind if v else 'u8')
    raise TypeError(f'no GGUF type for {v!r}')


def gguf_string(s):
    b = s.encode('utf-8') if isinstance(s, str) else s
    return struct.pack('<Q', len(b)) + b


def encode_value(kind, value, element=None):
    """The bytes of a value of type kind (without the type), element: an array's element type."""
    if kind == 'str':
        return gguf_string(value)
    if kind != 'arr':
        return struct.pack(PACK[kind], value)
    sub, sub_element = (element if isinstance(element, tuple) else (element, None))
    out = struct.pack('<IQ', VALUE_TYPES[sub], len(value))
    if sub in PACK:
        return out + np.asarray(value, dtype=PACK[sub]).tobytes()
    return out + b''.join(encode_value(sub, x, sub_element) for x in value)


def write_gguf(path, meta, tensors, version=3):
    """Writes a GGUF file. meta: key -> value (a Typed, or a python/numpy value, typed by infer());
    tensors: name -> (ggml type, float array: quantized here) or (ggml type, raw bytes, numpy shape).
    Returns {'type_at': tensor name -> file offset of its type field, 'data': the data start,
    'tensor_at': name -> file offset of its data, 'size': file size}."""
    align = meta.get('general.alignment', 32)
    align = align.value if isinstance(align, Typed) else align
    head = b'GGUF' + struct.pack('<IQQ', version, len(tensors), len(meta))
    for k, v in meta.items():
        t = infer(v)
        head += gguf_string(k) + struct.pack('<I', VALUE_TYPES[t.kind]) + encode_value(t.kind, t.value, t.element)
    blobs, type_at, offset, infos = [], {}, 0, []
    for name, spec in tensors.items():
        kind = spec[0]
        raw, shape = (quantize(kind, spec[1]), spec[1].shape) if len(spec) == 2 else (bytes(spec[1]), spec[2])
        offset += -offset % align
        infos.append((name, shape, kind, offset))
        blobs.append((offset, raw))
        offset += len(raw)
    for name, shape, kind, off in infos:
        head += gguf_string(name) + struct.pack('<I', len(shape)) + b''.join(struct.pack('<Q', n) for n in shape[::-1])
        type_at[name] = len(head)
        head += struct.pack('<IQ', TYPES[kind][0], off)
    data = len(head) + (-len(head) % align)
    body = bytearray(offset)
    for off, raw in blobs:
        body[off:off + len(raw)] = raw
    with open(path, 'wb') as f:
        f.write(head + bytes(data - len(head)) + bytes(body))
    return {'type_at': type_at, 'data': data, 'tensor_at': {n: data + o for n, _, _, o in infos},
            'size': data + len(body)}


# ----------------------------------------------------------------------------------------------------
# quantizers: any valid blocks will do; these are simple round-to-nearest ones in the spirit of ggml's
# reference quantizers (a scale from each block's largest value, values rounded onto its grid)

def f16(x):
    return np.asarray(x, dtype=np.float64).astype('<f2')


def safe_inverse(d):
    d = np.asarray(d, dtype=np.float64)
    return np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)


def signed_max(g):
    """Each row's value of largest magnitude, with its sign."""
    return np.take_along_axis(g, np.abs(g).argmax(axis=1)[:, None], axis=1)[:, 0]


def pack32(q, five):
    """Q4_0/Q4_1/Q5_0/Q5_1 values (blocks, 32) -> their byte fields: (Q5: qh, bit 4 of value j as bit j of a
    uint32) then qs (value j in the low nibble of byte j, j + 16 in the high one)."""
    q = q.astype(np.uint32)
    qs = ((q[:, :16] & 0xF) | ((q[:, 16:] & 0xF) << 4)).astype(np.uint8)
    if not five:
        return [qs]
    qh = ((q >> 4) << np.arange(32, dtype=np.uint32)).sum(axis=1).astype('<u4')
    return [qh.view(np.uint8).reshape(-1, 4), qs]


def quantize(kind, a):
    a = np.asarray(a, dtype=np.float64)
    if kind in ('F32', 'F16'):
        return a.astype('<f4' if kind == 'F32' else '<f2').tobytes()
    if kind == 'BF16':  # rounded to nearest even
        u = a.astype('<f4').view('<u4').astype(np.uint64)
        return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype('<u2').tobytes()
    if kind == 'Q8_0':  # d = max |x| / 127; q = round(x / d)
        g = a.reshape(-1, 32)
        d = f16(np.abs(g).max(axis=1) / 127)
        q = np.clip(np.rint(g * safe_inverse(d.astype(np.float64))[:, None]), -127, 127).astype(np.int8)
        return np.concatenate([d.view(np.uint8).reshape(-1, 2), q.view(np.uint8)], axis=1).tobytes()
    if kind in ('Q4_0', 'Q5_0'):  # d = (signed max) / -8 (-16); q = x / d + 8 (16), in 0..15 (31)
        half = 8 if kind == 'Q4_0' else 16
        g = a.reshape(-1, 32)
        d = f16(signed_max(g) / -half)
        q = np.clip(np.floor(g * safe_inverse(d.astype(np.float64))[:, None] + half + 0.5), 0, 2 * half - 1)
        return np.concatenate([d.view(np.uint8).reshape(-1, 2)] + pack32(q, kind == 'Q5_0'), axis=1).tobytes()
    if kind in ('Q4_1', 'Q5_1'):  # m = min, d = (max - min) / 15 (31); q = (x - m) / d, in 0..15 (31)
        top = 15 if kind == 'Q4_1' else 31
        g = a.reshape(-1, 32)
        m = f16(g.min(axis=1))
        d = f16((g.max(axis=1) - m.astype(np.float64)) / top)
        q = np.clip(np.rint((g - m.astype(np.float64)[:, None]) * safe_inverse(d)[:, None]), 0, top)
        return np.concatenate([d.view(np.uint8).reshape(-1, 2), m.view(np.uint8).reshape(-1, 2)]
                              + pack32(q, kind == 'Q5_1'), axis=1).tobytes()
    if kind in ('Q4_K', 'Q5_K'):  # 8 sub-blocks of 32: x ~ d * sc * q - dmin * m, q in 0..15 (31), sc, m 0..63
        top = 15 if kind == 'Q4_K' else 31
        g = a.reshape(-1, 8, 32)
        low = np.minimum(g.min(axis=2), 0)
        scale, mins = (g.max(axis=2) - low) / top, -low
        d, dmin = f16(scale.max(axis=1) / 63), f16(mins.max(axis=1) / 63)
        sc = np.clip(np.rint(scale * safe_inverse(d.astype(np.float64))[:, None]), 0, 63).astype(np.uint8)
        m = np.clip(np.rint(mins * safe_inverse(dmin.astype(np.float64))[:, None]), 0, 63).astype(np.uint8)
        d1 = d.astype(np.float64)[:, None] * sc
        m1 = dmin.astype(np.float64)[:, None] * m
        q = np.clip(np.rint((g + m1[:, :, None]) * safe_inverse(d1)[:, :, None]), 0, top).astype(np.uint8)
        scales = np.zeros((len(g), 12), np.uint8)  # the inverse of ggml's get_scale_min_k4
        scales[:, 0:4] = sc[:, 0:4] | ((sc[:, 4:8] >> 4) << 6)
        scales[:, 4:8] = m[:, 0:4] | ((m[:, 4:8] >> 4) << 6)
        scales[:, 8:12] = (sc[:, 4:8] & 0xF) | ((m[:, 4:8] & 0xF) << 4)
        qs = np.empty((len(g), 4, 32), np.uint8)  # 64 values per 32 bytes: sub-block 2i low, 2i + 1 high nibbles
        qs[:] = (q[:, 0::2] & 0xF) | ((q[:, 1::2] & 0xF) << 4)
        qh = np.zeros((len(g), 32), np.uint8)  # Q5_K: bit 4 of value l of sub-block j is bit j of qh[l]
        for j in range(8):
            qh |= (q[:, j] >> 4) << j
        return np.concatenate([d.view(np.uint8).reshape(-1, 2), dmin.view(np.uint8).reshape(-1, 2), scales]
                              + ([qh] if kind == 'Q5_K' else []) + [qs.reshape(-1, 128)], axis=1).tobytes()
    if kind == 'Q6_K':  # 16 sub-blocks of 16: x ~ d * sc * (q - 32), q in 0..63, sc int8
        g = a.reshape(-1, 16, 16)
        scale = np.stack([signed_max(b) for b in g.transpose(1, 0, 2)], axis=1) / -32
        d = f16(np.abs(scale).max(axis=1) / 127)
        sc = np.clip(np.rint(scale * safe_inverse(d.astype(np.float64))[:, None]), -128, 127).astype(np.int8)
        step = d.astype(np.float64)[:, None] * sc
        q = np.clip(np.rint(g * safe_inverse(step)[:, :, None]) + 32, 0, 63).astype(np.uint8).reshape(-1, 256)
        ql, qh = np.zeros((len(g), 128), np.uint8), np.zeros((len(g), 64), np.uint8)
        for e in range(256):  # value e: half h, quarter k of the half, l within it
            h, k, l = e // 128, e % 128 // 32, e % 32
            byte = h * 64 + l + 32 * (k % 2)
            ql[:, byte] |= (q[:, e] & 0xF) << (4 if k >= 2 else 0)
            qh[:, h * 32 + l] |= (q[:, e] >> 4) << (2 * k)
        return np.concatenate([ql, qh, sc.view(np.uint8), d.view(np.uint8).reshape(-1, 2)], axis=1).tobytes()
    raise ValueError(kind)


# ----------------------------------------------------------------------------------------------------
# dequantizers: value by value from the block layouts (ggml-common.h) and the arithmetic of ggml's
# dequantize_row_* (float32: the block's fp16 scales widened, then the products in their order)

def dequantize(kind, raw, n):
    """Raw bytes of n values of ggml type kind -> float32 array of n."""
    b = np.frombuffer(bytes(raw), dtype=np.uint8)
    if kind == 'F32':
        return b.view('<f4').copy()
    if kind == 'F16':
        return b.view('<f2').astype(np.float32)
    if kind == 'BF16':
        return (b.view('<u2').astype(np.uint32) << 16).view(np.float32)
    _, per, size = TYPES[kind]
    blocks = b.reshape(-1, size)
    half = lambda at: blocks[:, at:at + 2].copy().view('<f2').astype(np.float32)[:, 0]
    out = np.empty((len(blocks), per), np.float32)
    for e in range(per):
        if kind == 'Q8_0':
            out[:, e] = blocks[:, 2 + e].view(np.int8).astype(np.float32) * half(0)
        elif kind in ('Q4_0', 'Q5_0', 'Q4_1', 'Q5_1'):  # d, (_1: m), (Q5: qh), qs[16]
            qs = blocks[:, size - 16 + e % 16]
            q = ((qs & 0xF) if e < 16 else (qs >> 4)).astype(np.int64)
            if kind.startswith('Q5'):  # as dequantize_row_q5_*: ((qh >> j) << 4) & 0x10, (qh >> (j + 12)) & 0x10
                qh = blocks[:, size - 20:size - 16].copy().view('<u4')[:, 0].astype(np.int64)
                q = q | ((((qh >> e) << 4) & 0x10) if e < 16 else ((qh >> (e - 16 + 12)) & 0x10))
            if kind.endswith('_0'):
                out[:, e] = (q - (8 if kind == 'Q4_0' else 16)).astype(np.float32) * half(0)
            else:
                out[:, e] = q.astype(np.float32) * half(0) + half(2)
        elif kind in ('Q4_K', 'Q5_K'):
            j, s = e // 32, blocks[:, 4:16]
            if j < 4:
                sc, m = s[:, j] & 63, s[:, j + 4] & 63
            else:
                sc = (s[:, j + 4] & 0xF) | ((s[:, j - 4] >> 6) << 4)
                m = (s[:, j + 4] >> 4) | ((s[:, j] >> 6) << 4)
            byte = blocks[:, size - 128 + (e // 64) * 32 + e % 32]
            q = (byte & 0xF) if j % 2 == 0 else (byte >> 4)
            if kind == 'Q5_K':
                q = q | (((blocks[:, 16 + e % 32] >> j) & 1) << 4)
            d1 = half(0) * sc.astype(np.float32)
            m1 = half(2) * m.astype(np.float32)
            out[:, e] = d1 * q.astype(np.float32) - m1
        elif kind == 'Q6_K':
            h, k, l = e // 128, e % 128 // 32, e % 32
            lo = blocks[:, h * 64 + l + 32 * (k % 2)]
            lo = (lo >> 4) if k >= 2 else (lo & 0xF)
            hi = (blocks[:, 128 + h * 32 + l] >> (2 * k)) & 3
            q = (lo | (hi << 4)).astype(np.int32) - 32
            sc = blocks[:, 192 + h * 8 + 2 * k + l // 16].view(np.int8).astype(np.float32)
            out[:, e] = (half(208) * sc) * q.astype(np.float32)
        else:
            raise ValueError(kind)
    return out.ravel()[:n]


def block_ints(kind, raw):
    """Q8_0, Q4_0, Q5_0 raw bytes -> (the int8 value of each element, the float32 d of each block)."""
    _, per, size = TYPES[kind]
    blocks = np.frombuffer(bytes(raw), dtype=np.uint8).reshape(-1, size)
    d = blocks[:, :2].copy().view('<f2').astype(np.float32)[:, 0]
    q = np.rint(dequantize(kind, raw, blocks.shape[0] * per).reshape(-1, per) / np.where(d == 0, 1, d)[:, None])
    return q.astype(np.int8), d
