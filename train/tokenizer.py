#!/usr/bin/python3
"""Train a small sentencepiece BPE vocabulary (Llama 2 style) on the corpus
and export it to llama2.c's tokenizer.bin format.

usage: /usr/bin/python3 train/tokenizer.py [--vocab 512] [--coverage 1.0] [--out tests/sp512]
       /usr/bin/python3 train/tokenizer.py --export some.model [--bin out.bin]
       /usr/bin/python3 train/tokenizer.py --bytes [--out .]

--bytes writes the byte-level vocabulary of train.py --bytes instead: <unk>, <s>, </s> and the 256
byte pieces <0x00>..<0xFF> (ids 3..258), no merges, so llama2.c and razor encode text byte by byte
through byte fallback (after the dummy-prefix space). It needs no sentencepiece and writes no .model.

tokenizer.bin layout (little-endian): uint32 max_token_length, then for each
id in order: float32 score, int32 byte length, the piece's UTF-8 bytes (no
NUL). '\u2581' becomes ' ', BOS is written as "\\n<s>\\n" and EOS as
"\\n</s>\\n", byte pieces stay as the text "<0xNN>" (as in the
tokenizer.bin that ships with llama2.c).
"""
import argparse, io, os, sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, TOP)
from export import sentencepiece_to_bin as export, write_tokenizer_bin  # noqa: E402 (the format lives with export.py)

def write_bytes(bin_path):
    pieces = [b'<unk>', b'\n<s>\n', b'\n</s>\n'] + [b'<0x%02X>' % b for b in range(256)]
    return write_tokenizer_bin(bin_path, [(0.0, p) for p in pieces])

def train(files, model_path, vocab, threads, coverage):
    # sentencepiece takes one "sentence" per line; our paragraphs are lines.
    # Feeding an iterator and writing to a buffer keeps file paths out of
    # the .model, so it is reproducible byte for byte.
    import sentencepiece as spm
    lines = (l.rstrip('\n') for fn in files for l in open(fn, encoding='utf-8')
             if l.strip())
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=lines, model_writer=buf, vocab_size=vocab,
        model_type='bpe', byte_fallback=True,
        normalization_rule_name='identity',
        remove_extra_whitespaces=False, add_dummy_prefix=True,
        split_digits=True, allow_whitespace_only_pieces=True,
        character_coverage=coverage, max_sentence_length=1 << 16,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        num_threads=threads, minloglevel=1)
    with open(model_path, 'wb') as f:
        f.write(buf.getvalue())

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--vocab', type=int, default=512)
    ap.add_argument('--data', default=os.path.join(HERE, 'data'))
    ap.add_argument('--out', help='where tokenizer.model/.bin go (default: the top folder with --bytes, for the '
                    'shipped model; else tests/sp512, the 512-piece vocabulary the tests use)')
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--coverage', type=float, default=1.0,
                    help='character_coverage; rarer chars use byte fallback')
    ap.add_argument('--export', metavar='MODEL', help='only export MODEL to .bin')
    ap.add_argument('--bin', help='output .bin for --export')
    ap.add_argument('--bytes', action='store_true', help='write the byte-level tokenizer.bin')
    args = ap.parse_args()
    if args.out is None:
        args.out = TOP if args.bytes else os.path.join(TOP, 'tests', 'sp512')
    if args.bytes:
        out = os.path.join(args.out, 'tokenizer.bin')
        print('%s: %d pieces (bytes)' % (out, write_bytes(out)))
        return
    if args.export:
        out = args.bin or os.path.splitext(args.export)[0] + '.bin'
        print('%s: %d pieces' % (out, export(args.export, out)))
        return
    files = [os.path.join(args.data, f) for f in sorted(os.listdir(args.data))
             if f.endswith('.txt')]
    prefix = os.path.join(args.out, 'tokenizer')
    train(files, prefix + '.model', args.vocab, args.threads, args.coverage)
    n = export(prefix + '.model', prefix + '.bin')
    print('trained on %s: %d pieces -> %s.model, %s.bin' % (
        ', '.join(map(os.path.basename, files)), n, prefix, prefix))

if __name__ == '__main__':
    main()
