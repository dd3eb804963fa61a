"""
tests/test_tokenizer_bbpe.py: tests for tokenizer_bbpe.py (plain python 3).

tests/bbpe_tokenizer.json must export to tests/bbpe_tokenizer.bin byte for byte, and its GPT-2 and
Qwen2 variants (made as tests/make_bbpe_vectors.js makes them; the Qwen2 one with Qwen's own added
tokens) to tests/bbpe_tokenizer_gpt2.bin and tests/bbpe_tokenizer_qwen2.bin; every tokenizer.json that
razor could not reproduce exactly must be refused with a BbpeError naming the field, and leave no
output file.

    python3 tests/test_tokenizer_bbpe.py
"""
import copy
import struct
import json
import os
import sys
import tempfile
import unicodedata

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from tokenizer_bbpe import QWEN2, BbpeError, export_bbpe  # noqa: E402

passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print('FAIL', what)


# Qwen3's added tokens (Qwen2.5: the first 22), in id order from 151643; the first 14 special; all normalized: false
# (sources: tests/make_bbpe_vectors.js)
QWEN_SPECIAL, QWEN_ADDED = 14, [
    '<|endoftext|>', '<|im_start|>', '<|im_end|>', '<|object_ref_start|>', '<|object_ref_end|>', '<|box_start|>',
    '<|box_end|>', '<|quad_start|>', '<|quad_end|>', '<|vision_start|>', '<|vision_end|>', '<|vision_pad|>',
    '<|image_pad|>', '<|video_pad|>', '<tool_call>', '</tool_call>', '<|fim_prefix|>', '<|fim_middle|>',
    '<|fim_suffix|>', '<|fim_pad|>', '<|repo_name|>', '<|file_sep|>', '<tool_response>', '</tool_response>',
    '<think>', '</think>']


def variants(tj):
    """The GPT-2 and Qwen2 variants of the Llama 3 style test tokenizer."""
    byte_level = lambda use_regex, trim=True: {'type': 'ByteLevel', 'add_prefix_space': False, 'trim_offsets': trim,
                                               'use_regex': use_regex}
    gpt2, qwen2 = copy.deepcopy(tj), copy.deepcopy(tj)
    for v in (gpt2, qwen2):
        v['model']['ignore_merges'] = False
        v['post_processor'] = byte_level(True)
    gpt2['pre_tokenizer'] = byte_level(True)
    qwen2['pre_tokenizer']['pretokenizers'][0]['pattern']['Regex'] = QWEN2
    qwen2['pre_tokenizer']['pretokenizers'][1] = qwen2['post_processor'] = qwen2['decoder'] = byte_level(False, False)
    qwen2['normalizer'] = {'type': 'NFC'}
    qwen2['model'].update(continuing_subword_prefix='', end_of_word_suffix='')
    first = min(t['id'] for t in tj['added_tokens'])
    qwen2['added_tokens'] = [{'id': first + k, 'content': c, 'single_word': False, 'lstrip': False, 'rstrip': False,
                              'normalized': False, 'special': k < QWEN_SPECIAL} for k, c in enumerate(QWEN_ADDED)]
    return {'bbpe_tokenizer_gpt2.bin': gpt2, 'bbpe_tokenizer_qwen2.bin': qwen2}


def token_kinds(path):
    """An RZTK file's tokens: [(bytes, kind)]."""
    with open(path, 'rb') as f:
        d = f.read()
    out, at = [], 40
    for _ in range(struct.unpack_from('<i', d, 8)[0]):
        n = struct.unpack_from('<i', d, at)[0]
        out.append((d[at + 5:at + 5 + n], d[at + 4]))
        at += 5 + n
    return out


def export(tj, tmp, name='t'):
    src, out = os.path.join(tmp, name + '.json'), os.path.join(tmp, name + '.bin')
    with open(src, 'w', encoding='utf-8') as f:
        json.dump(tj, f)
    if os.path.exists(out):
        os.remove(out)
    return export_bbpe(src, out), out


def refused(tj, field, tmp):
    try:
        export(tj, tmp, 'bad')
    except BbpeError as e:
        check(field in str(e), f'refusal names {field!r}: {e}')
        check(not os.path.exists(os.path.join(tmp, 'bad.bin')), f'{field}: no output file')
        return
    check(False, f'not refused: {field}')


def check_nfc_section(path):
    """The Qwen2 file's nfc section: counts that add up to the file's end, sorted tables, and tables
    that give python's NFC for every code point."""
    with open(path, 'rb') as f:
        d = f.read()
    vocab, flags, n_merges, n_classes, n_nfc = struct.unpack_from('<i', d, 8)[0], *struct.unpack_from('<4i', d, 24)
    at = 40
    for _ in range(vocab):
        at += 5 + struct.unpack_from('<i', d, at)[0]
    at += 12 * (n_merges + n_classes)
    check(flags & 2 and len(d) == at + 4 * n_nfc, f'nfc section: {len(d) - at} bytes, n_nfc {n_nfc}')
    w = struct.unpack_from(f'<{n_nfc}i', d, at)
    n_ccc, n_decomp, n_comp, n_pool = w[:4]
    check(4 + 3 * (n_ccc + n_decomp + n_comp) + n_pool == n_nfc, f'nfc counts {w[:4]}')
    rows = [w[4 + 3 * i:7 + 3 * i] for i in range(n_ccc + n_decomp + n_comp)]
    ccc, decomp, comp, pool = rows[:n_ccc], rows[n_ccc:n_ccc + n_decomp], rows[n_ccc + n_decomp:], w[n_nfc - n_pool:]
    check(all(a[1] < b[0] for a, b in zip(ccc, ccc[1:])) and all(a[0] < b[0] for a, b in zip(decomp, decomp[1:]))
          and all(a[:2] < b[:2] for a, b in zip(comp, comp[1:])), 'nfc tables sorted')
    cls = {cp: v for first, last, v in ccc for cp in range(first, last + 1)}
    dec = {cp: ''.join(map(chr, pool[o:o + n])) for cp, o, n in decomp}
    pairs = {(a, b): c for a, b, c in comp}
    wrong = [cp for cp in range(0x110000) if not 0xD800 <= cp < 0xE000 and not 0xAC00 <= cp < 0xD7A4 and (
             cls.get(cp, 0) != unicodedata.combining(chr(cp)) or dec.get(cp, chr(cp)) != unicodedata.normalize('NFD', chr(cp)))]
    check(not wrong, f'nfc tables disagree with unicodedata at {wrong[:5]}')
    check(all(unicodedata.normalize('NFC', chr(a) + chr(b)) == chr(c) for (a, b), c in pairs.items()), 'compositions')
    check(pairs.get((ord('A'), 0x30A)) == 0xC5 and not {0x2126, 0x212B} & set(pairs.values()), 'A + ring; singletons')
    check((ord('क'), 0x93C) not in pairs and (0x3B9, 0x308) in pairs, 'exclusions: U+0958 is not composed')


def main():
    with open(os.path.join(ROOT, 'tests', 'bbpe_tokenizer.json'), encoding='utf-8') as f:
        tj = json.load(f)
    exact = unicodedata.unidata_version == '14.0.0'  # the committed files were written with Unicode 14.0's tables
    with tempfile.TemporaryDirectory() as tmp:
        for name, t in [('bbpe_tokenizer.bin', tj)] + list(variants(tj).items()):
            info, out = export(t, tmp)
            with open(out, 'rb') as a, open(os.path.join(ROOT, 'tests', name), 'rb') as b:
                same = a.read() == b.read()
            check(same or not exact, f'{name}: the export differs from the committed file')
        # Qwen: no BOS, <|endoftext|> the EOS by its name, NFC with unnormalized added tokens (no flag 4); the
        # special ones (type 4) are never split out of text, the others (type 2) always
        check((info['vocab_size'], info['bos_id'], info['eos_id'], info['kind'], info['flags']) ==
              (1998, -1, 1972, 3, 2), f'qwen2: {info}')
        kinds = token_kinds(out)[1972:]
        check([(p.decode(), k) for p, k in kinds] ==
              [(c, 4 if k < QWEN_SPECIAL else 2) for k, c in enumerate(QWEN_ADDED)], f'qwen2 added tokens: {kinds}')
        check_nfc_section(out)
        qwen2 = variants(tj)['bbpe_tokenizer_qwen2.bin']
        os.makedirs(os.path.join(tmp, 'qwen'))
        with open(os.path.join(tmp, 'qwen', 'tokenizer_config.json'), 'w', encoding='utf-8') as f:
            json.dump({'bos_token': None, 'eos_token': '<|im_end|>', 'add_bos_token': False}, f)  # Qwen instruct's
        info, _ = export(qwen2, os.path.join(tmp, 'qwen'))
        check((info['bos_id'], info['eos_id']) == (-1, 1974), f'qwen2 with its tokenizer_config.json: {info}')
        info, _ = export(tj, tmp)
        check((info['kind'], info['flags'], info['bos_id']) == (1, 1, 1972), f'llama3 style: {info}')
        info = export_bbpe(os.path.join(tmp, 't.json'), os.path.join(tmp, 't.bin'), bos='<|end_of_text|>', eos=1974)
        check((info['bos_id'], info['eos_id']) == (1973, 1974), f'bos/eos overrides: {info}')

        def bad(change, field, base=tj):
            t = copy.deepcopy(base)
            change(t)
            refused(t, field, tmp)
        bad(lambda t: t['model'].update(type='WordPiece'), 'model.type')
        bad(lambda t: t['model'].update(dropout=0.1), 'model.dropout')
        bad(lambda t: t['model'].update(continuing_subword_prefix='##'), 'model.continuing_subword_prefix')
        bad(lambda t: t['model'].update(end_of_word_suffix='</w>'), 'model.end_of_word_suffix')
        bad(lambda t: t.update(pre_tokenizer=None), 'pre_tokenizer')
        bad(lambda t: t.update(pre_tokenizer={'type': 'Metaspace', 'replacement': '\u2581'}), 'pre_tokenizer')
        bad(lambda t: t['pre_tokenizer']['pretokenizers'][0]['pattern'].update(Regex=r'\w+|\s+'), 'pre_tokenizer Split pattern')
        bad(lambda t: t['pre_tokenizer']['pretokenizers'][0].update(behavior='Removed'), 'pre_tokenizer Split')
        bad(lambda t: t['pre_tokenizer']['pretokenizers'][1].update(use_regex=True), 'use_regex')
        bad(lambda t: t.update(pre_tokenizer={'type': 'ByteLevel', 'add_prefix_space': True, 'use_regex': True}), 'add_prefix_space')
        bad(lambda t: t.update(normalizer={'type': 'Lowercase'}), 'normalizer')
        bad(lambda t: t.update(normalizer={'type': 'Sequence', 'normalizers': [{'type': 'NFC'}, {'type': 'NFKC'}]}), 'normalizer')
        bad(lambda t: t.update(decoder={'type': 'WordPiece', 'prefix': '##'}), 'decoder')
        bad(lambda t: t['post_processor']['single'].append({'SpecialToken': {'id': '<|end_of_text|>', 'type_id': 0}}), 'post_processor.single')
        bad(lambda t: t.update(post_processor={'type': 'BertProcessing'}), 'post_processor')
        bad(lambda t: t['added_tokens'][4].update(lstrip=True), 'lstrip')
        bad(lambda t: t['added_tokens'][4].update(single_word=True), 'single_word')
        bad(lambda t: t['added_tokens'][QWEN_ADDED.index('<think>')].update(normalized=True),
            'both normalized and unnormalized', qwen2)
        bad(lambda t: t['added_tokens'].append({'id': 1998, 'content': 'e\u0301', 'special': False}), 'NFC changes it',
            qwen2)
        bad(lambda t: t['model'].update(continuing_subword_prefix='##'), 'model.continuing_subword_prefix', qwen2)
        bad(lambda t: t['model']['vocab'].update({'\u2581the': 3000}), 'model.vocab')
        bad(lambda t: t['model']['merges'].append('Ġ zzzzz'), 'model.merges')
        bad(lambda t: t['model']['vocab'].pop('Ā'), 'byte 0x00')
        bad(lambda t: t['model']['vocab'].update({'zzzq': 10 ** 6}), 'model.vocab')
        bad(lambda t: t['added_tokens'].append({'id': 7, 'content': '<x>', 'special': True}), 'added_tokens')
    print(f'{passed} passed, {failed} failed')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
