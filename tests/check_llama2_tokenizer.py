#!/usr/bin/python3
"""Local check (not run by CI): razor's tokenizer against sentencepiece, using
Llama 2's vocabulary from ../shared/llama2-tokenizer.

For each test string (every paragraph of train/data/austen.txt, a sample of
train/data/web.txt, the strings of tests/make_tokenizer_vectors.py and some
odd ones) it writes the string to a prompt file (no trailing newline added),
runs `RAZOR MODEL -m tokenize -z TOKENIZER.bin -f PROMPT` and compares the
printed ids with [1] + sentencepiece's encode(text).

usage: /usr/bin/python3 tests/check_llama2_tokenizer.py ./razor --model M.bin
       [--tokenizer DIR] [--max N] [--web N]
MODEL only supplies vocab_size, so it must have vocab_size 32000.
"""
import argparse, os, random, subprocess, sys, tempfile
import sentencepiece as spm

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, 'tests'))
sys.dont_write_bytecode = True  # no __pycache__ in tests/
from make_tokenizer_vectors import TEXTS

ODD = [
    '<0x41>', '<0x0A>', ' <0x41>', 'x<0x41>y', '<s>', '</s>', '<unk>',
    '<s>Hello</s>', '\u2581', '\u2581\u2581\u2581x', 'a  b   c    d     e',
    ' ' * 17, '\t\t', '\n\n\n', 'end.\n', '0123456789', '3.14159',
    '\u00bd \u00bc \u2153', '\u03b1\u03b2\u03b3 \u0416\u0437 \u05e9\u05dc\u05d5\u05dd',
    '\u0627\u0644\u0639\u0631\u0628\u064a\u0629', '\ud55c\uad6d\uc5b4',
    '\U0001F468\u200d\U0001F469\u200d\U0001F467', '\ufeffBOM', 'zero\u200bwidth',
    'https://example.com/a?b=c&d=e#f', 'x' * 300, 'don\'t won\'t shan\'t',
]

def razor_ids(razor, model, tok_bin, text, tmpdir):
    path = os.path.join(tmpdir, 'prompt.txt')
    with open(path, 'wb') as f:
        f.write(text.encode('utf-8'))
    r = subprocess.run([razor, model, '-m', 'tokenize', '-z', tok_bin, '-f', path],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return 'exit %d: %s' % (r.returncode, r.stderr.strip()[-200:])
    for line in reversed(r.stdout.splitlines()):
        try:
            return [int(x) for x in line.split()]
        except ValueError:
            continue
    return 'no ids in output: %r' % r.stdout[-200:]

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('razor')
    ap.add_argument('--model', required=True, help='checkpoint with vocab_size 32000')
    ap.add_argument('--tokenizer', default=os.path.join(TOP, '..', 'shared', 'llama2-tokenizer'),
                    help='folder with tokenizer.model and tokenizer.bin')
    ap.add_argument('--max', type=int, default=0, help='at most N Austen paragraphs (0: all)')
    ap.add_argument('--web', type=int, default=500, help='random WEB lines to add')
    args = ap.parse_args()
    sp = spm.SentencePieceProcessor(model_file=os.path.join(args.tokenizer, 'tokenizer.model'))
    tok_bin = os.path.join(args.tokenizer, 'tokenizer.bin')

    texts = list(TEXTS) + ODD
    data = os.path.join(TOP, 'train', 'data')
    if os.path.exists(os.path.join(data, 'austen.txt')):
        paras = [p for p in open(os.path.join(data, 'austen.txt'), encoding='utf-8').read().split('\n\n') if p]
        texts += paras[:args.max] if args.max else paras
        lines = [l for l in open(os.path.join(data, 'web.txt'), encoding='utf-8').read().split('\n') if l]
        random.seed(1)
        texts += random.sample(lines, min(args.web, len(lines)))
    else:
        print('no corpus: run train/corpus.py for the Austen/WEB strings')

    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, t in enumerate(texts):
            want = [1] + sp.encode(t)
            got = razor_ids(args.razor, args.model, tok_bin, t, tmp)
            if got != want:
                bad += 1
                if bad <= 20:
                    print('MISMATCH %r\n  sentencepiece %s\n  razor         %s' % (
                        t[:80], want[:40], got if isinstance(got, str) else got[:40]))
            if (i + 1) % 1000 == 0:
                print('%d/%d strings, %d mismatches' % (i + 1, len(texts), bad))
    print('%d strings, %d mismatches' % (len(texts), bad))
    sys.exit(1 if bad else 0)

if __name__ == '__main__':
    main()
