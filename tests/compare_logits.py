"""
tests/compare_logits.py: how far one run's logits are from another's, position by position.

    ./razor model.bin -m logits -f text.txt -K f32 -o a.f32
    ./razor model.bin -m logits -f text.txt -K bf16 -o b.f32
    /usr/bin/python3 tests/compare_logits.py VOCAB a.f32 b.f32 [more pairs: a2.f32 b2.f32 ...]

prints, over all positions of all pairs, the mean and largest KL(a || b) of the next-token distributions
and how often their top-1 tokens agree. numpy only.
"""
import sys

import numpy as np


def log_softmax(x):
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def main(argv):
    if len(argv) < 4 or len(argv) % 2:
        sys.exit(__doc__.strip())
    vocab, kl, agree = int(argv[1]), [], []
    for a_path, b_path in zip(argv[2::2], argv[3::2]):
        a, b = (np.fromfile(p, dtype='<f4').reshape(-1, vocab).astype(np.float64) for p in (a_path, b_path))
        if a.shape != b.shape:
            sys.exit(f'compare_logits.py: {a_path} has {len(a)} positions, {b_path} {len(b)}')
        la, lb = log_softmax(a), log_softmax(b)
        kl.extend((np.exp(la) * (la - lb)).sum(axis=1))
        agree.extend(a.argmax(axis=1) == b.argmax(axis=1))
    print(f'{len(kl)} positions: KL mean {np.mean(kl):.3g}, max {np.max(kl):.3g}; top-1 agreement '
          f'{100 * np.mean(agree):.2f}%')


if __name__ == '__main__':
    main(sys.argv)
