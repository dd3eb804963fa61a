"""
tokenizer_bbpe.py: a Hugging Face tokenizer.json with a byte-level BPE model (GPT-2, Llama 3,
Qwen2 style) -> razor tokenizer format (RZTK), which razor's bbpe code encodes exactly as the
tokenizers library does. Anything this file can't describe exactly is refused, naming the field.

    from tokenizer_bbpe import export_bbpe, BbpeError
    export_bbpe('tokenizer.json', 'tokenizer.bin')      # -> dict: vocab_size, bos_id, eos_id, ...

Plain python 3 (json, struct, unicodedata). The layout, all integers int32 little-endian:

    header   "RZTK", version (1), vocab_size, bos_id, eos_id (-1: none), pretokenizer kind,
             flags, n_merges, n_classes, n_nfc
    tokens   vocab_size times: int32 length, uint8 kind, length raw bytes (GPT-2's byte-to-unicode
             mapping undone). kind bits: 1 = in the BPE model's vocabulary (a merge or, with
             ignore_merges, a whole pre-token can produce it); 2 = an added token that is split out
             of the text wherever it occurs, before pre-tokenization; 4 = special. Special added
             tokens are never split out of text (their spelling is encoded as ordinary text), as
             the tokenizers library does with encode_special_tokens / split_special_tokens.
    merges   n_merges times: left id, right id, result id; in rank order (first = applied first)
    classes  n_classes times: first, last, class: code point ranges, sorted, of the letters (1,
             \\p{L}), numbers (2, \\p{N}) and white space (3, \\s) of the pre-tokenizer regex;
             any other code point is class 0
    nfc      n_nfc int32s, only for an NFC normalizer (else n_nfc = 0), everything razor needs to
             normalize to NFC (Hangul syllables are algorithmic and not in it):
               n_ccc, n_decomp, n_comp, n_pool
               ccc     n_ccc times: first, last, class: code point ranges, sorted, of the nonzero
                       canonical combining classes (1-254); any other code point has class 0
               decomp  n_decomp times: code point, offset, length: sorted by code point, those whose
                       full canonical decomposition (applied recursively) is pool[offset..+length),
                       length 1-4
               comp    n_comp times: first, second, composite: sorted by (first, second), the primary
                       composites (canonical pairs, minus the composition exclusions, singletons and
                       non-starter decompositions)
               pool    n_pool code points
             n_nfc = 4 + 3 * (n_ccc + n_decomp + n_comp) + n_pool, and the file ends there. Code
             points this python's unicodedata does not know are starters that never change.

Pretokenizer kinds: 1 = Llama 3 (cl100k) regex, 2 = GPT-2 regex, 3 = Qwen2 regex (Llama 3's
with single digits). Flags: 1 = ignore_merges (a pre-token that is itself in the vocabulary is
one token), 2 = NFC normalizer, 4 = (with 2) the split-out added tokens are normalized ones: the
library normalizes the whole text, then splits them out of it; without 4 it splits them out of the
raw text first, then normalizes each piece between them on its own. The unicode tables come from
this python's unicodedata, plus the letters and numbers of Unicode 16.0 that it may not know
(UNICODE_16_ADDED).
"""
import json
import os
import struct
import unicodedata

MAGIC = b'RZTK'
VERSION = 1

LLAMA3 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
QWEN2 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
PATTERNS = {LLAMA3: 1, GPT2: 2, QWEN2: 3}

# Letters (1), numbers (2) and white space (3) that Unicode 15.0 to 16.0 added: the tokenizers library
# (0.21 on: Oniguruma 6.9.10) matches \p{L} \p{N} \s by Unicode 16.0, python 3.11 knows 14.0. Used only
# where this python's unicodedata says unassigned (Cn), so a newer python changes nothing.
UNICODE_16_ADDED = [
    (0x1C89, 0x1C8A, 1), (0xA7CB, 0xA7CD, 1), (0xA7DA, 0xA7DC, 1), (0x105C0, 0x105F3, 1),
    (0x10D40, 0x10D49, 2), (0x10D4A, 0x10D65, 1), (0x10D6F, 0x10D85, 1), (0x10EC2, 0x10EC4, 1),
    (0x1123F, 0x11240, 1), (0x11380, 0x11389, 1), (0x1138B, 0x1138B, 1), (0x1138E, 0x1138E, 1),
    (0x11390, 0x113B5, 1), (0x113B7, 0x113B7, 1), (0x113D1, 0x113D1, 1), (0x113D3, 0x113D3, 1),
    (0x116D0, 0x116E3, 2), (0x11BC0, 0x11BE0, 1), (0x11BF0, 0x11BF9, 2), (0x11F02, 0x11F02, 1),
    (0x11F04, 0x11F10, 1), (0x11F12, 0x11F33, 1), (0x11F50, 0x11F59, 2), (0x1342F, 0x1342F, 1),
    (0x13441, 0x13446, 1), (0x13460, 0x143FA, 1), (0x16100, 0x1611D, 1), (0x16130, 0x16139, 2),
    (0x16D40, 0x16D6C, 1), (0x16D70, 0x16D79, 2), (0x18CFF, 0x18CFF, 1), (0x1B132, 0x1B132, 1),
    (0x1B155, 0x1B155, 1), (0x1CCF0, 0x1CCF9, 2), (0x1D2C0, 0x1D2D3, 2), (0x1DF25, 0x1DF2A, 1),
    (0x1E030, 0x1E06D, 1), (0x1E4D0, 0x1E4EB, 1), (0x1E4F0, 0x1E4F9, 2), (0x1E5D0, 0x1E5ED, 1),
    (0x1E5F0, 0x1E5F0, 1), (0x1E5F1, 0x1E5FA, 2), (0x2B739, 0x2B739, 1), (0x2EBF0, 0x2EE5D, 1),
    (0x31350, 0x323AF, 1),
]

IN_VOCAB, SPLIT_OUT, SPECIAL = 1, 2, 4
IGNORE_MERGES, NFC, NORMALIZED_ADDED = 1, 2, 4

BOS_NAMES = ['<|begin_of_text|>', '<s>', '<|startoftext|>']
EOS_NAMES = ['<|end_of_text|>', '<|endoftext|>', '</s>', '<|im_end|>']


class BbpeError(ValueError):
    pass


def refuse(path, field, why):
    raise BbpeError(f'{path}: {field}: {why}; razor cannot reproduce this tokenizer exactly')


def byte_decoder():
    """GPT-2's byte-to-unicode table, inverted: the character that stands for each byte -> byte."""
    keep = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars, n = {}, 0
    for b in range(256):
        if b in keep:
            chars[chr(b)] = b
        else:
            chars[chr(256 + n)] = b
            n += 1
    return chars


def regex_kind(path, pre):
    """The pretokenizer kind of a tokenizer.json pre_tokenizer, or refuse."""
    if pre is None:
        refuse(path, 'pre_tokenizer', 'is null (no ByteLevel pre-tokenizer)')
    steps = pre['pretokenizers'] if pre.get('type') == 'Sequence' else [pre]
    if len(steps) == 1 and steps[0].get('type') == 'ByteLevel' and steps[0].get('use_regex', True):
        byte_level, kind = steps[0], 2                                    # GPT-2: regex built in
    elif len(steps) == 2 and steps[0].get('type') == 'Split' and steps[1].get('type') == 'ByteLevel':
        split, byte_level = steps
        pattern = split.get('pattern', {})
        if 'Regex' not in pattern or pattern['Regex'] not in PATTERNS:
            refuse(path, 'pre_tokenizer Split pattern', f'{json.dumps(pattern)} is not one razor knows '
                   '(the Llama 3, Qwen2 or GPT-2 regex)')
        if split.get('behavior') != 'Isolated' or split.get('invert', False):
            refuse(path, 'pre_tokenizer Split', f'behavior {split.get("behavior")!r}, invert '
                   f'{split.get("invert")!r} (need Isolated, false)')
        if byte_level.get('use_regex', True):
            refuse(path, 'pre_tokenizer ByteLevel.use_regex', 'true after a Split (two regexes)')
        kind = PATTERNS[pattern['Regex']]
    else:
        refuse(path, 'pre_tokenizer', 'is ' + ' + '.join(str(s.get('type')) for s in steps) +
               ' (need ByteLevel, or Split(regex) + ByteLevel)')
    if byte_level.get('add_prefix_space', False):
        refuse(path, 'pre_tokenizer ByteLevel.add_prefix_space', 'true')
    return kind


def nfc_flag(path, norm):
    if norm is None:
        return 0
    steps = norm['normalizers'] if norm.get('type') == 'Sequence' else [norm]
    if [s.get('type') for s in steps] == ['NFC']:
        return NFC
    if steps:
        refuse(path, 'normalizer', ' + '.join(str(s.get('type')) for s in steps) + ' (only NFC is implemented)')
    return 0


def check_post_processor(path, post):
    """Returns the id a TemplateProcessing puts first (its BOS), or None; refuses other templates."""
    steps = post['processors'] if post and post.get('type') == 'Sequence' else [post] if post else []
    bos = None
    for p in steps:
        if p.get('type') == 'ByteLevel':
            continue
        if p.get('type') != 'TemplateProcessing':
            refuse(path, 'post_processor', f'type {p.get("type")!r}')
        single = p.get('single', [])
        if not (single and 'Sequence' in single[-1] and all('SpecialToken' in s for s in single[:-1])
                and len(single) <= 2):
            refuse(path, 'post_processor.single', f'{json.dumps(single)} (razor adds at most a BOS before the text)')
        if len(single) == 2:
            name = single[0]['SpecialToken']['id']
            ids = p.get('special_tokens', {}).get(name, {}).get('ids', [])
            if len(ids) != 1:
                refuse(path, f'post_processor.special_tokens[{name!r}]', f'ids {ids}')
            bos = ids[0]
            if type(bos) is not int:
                refuse(path, f'post_processor.special_tokens[{name!r}]', f'id {bos!r}')
    return bos


def config_token(path, key):
    """tokenizer_config.json next to tokenizer.json: (has the key, its bos_token or eos_token content)."""
    cfg = os.path.join(os.path.dirname(os.path.abspath(path)), 'tokenizer_config.json')
    if not os.path.exists(cfg):
        return False, None
    with open(cfg, encoding='utf-8') as f:
        c = json.load(f)
    t = c.get(key)
    return key in c, t.get('content') if isinstance(t, dict) else t


def ranges(values):
    """{code point: value != 0} -> sorted [first, last, value] runs of equal values."""
    out = []
    for cp in sorted(values):
        v = values[cp]
        if out and out[-1][1] == cp - 1 and out[-1][2] == v:
            out[-1][1] = cp
        else:
            out.append([cp, cp, v])
    return out


def class_table():
    white = {9, 10, 11, 12, 13, 0x85}
    values = {}
    for cp in range(0x110000):
        cat = unicodedata.category(chr(cp))
        v = 1 if cat[0] == 'L' else 2 if cat[0] == 'N' else 3 if cp in white or cat in ('Zs', 'Zl', 'Zp') else 0
        if v:
            values[cp] = v
    for first, last, v in UNICODE_16_ADDED:
        for cp in range(first, last + 1):
            if unicodedata.category(chr(cp)) == 'Cn':
                values[cp] = v
    return ranges(values)


def nfc_table():
    """The NFC section: [n_ccc, n_decomp, n_comp, n_pool], then the ccc ranges, the decompositions,
    the compositions and the pool, flattened to int32s (see the layout above)."""
    ccc, decomp, comp, pool = {}, [], [], []
    for cp in range(0x110000):
        if 0xD800 <= cp < 0xE000 or 0xAC00 <= cp < 0xD7A4:            # surrogates; Hangul is algorithmic
            continue
        c = chr(cp)
        if unicodedata.combining(c):
            ccc[cp] = unicodedata.combining(c)
        nfd = unicodedata.normalize('NFD', c)
        if nfd != c:
            decomp.append([cp, len(pool), len(nfd)])
            pool += [ord(x) for x in nfd]
        d = unicodedata.decomposition(c).split()
        if len(d) == 2 and not d[0].startswith('<'):
            a, b = int(d[0], 16), int(d[1], 16)
            if unicodedata.normalize('NFC', chr(a) + chr(b)) == c:      # a primary composite, not excluded
                comp.append([a, b, cp])
    ccc = ranges(ccc)
    comp.sort()
    out = [len(ccc), len(decomp), len(comp), len(pool)]
    for rows in (ccc, decomp, comp):
        for r in rows:
            out += r
    return out + pool


def export_bbpe(tokenizer_json_path, out_path, bos=None, eos=None):
    """Writes out_path; returns a summary dict. bos / eos (strings or ids) override the defaults:
    the post-processor's leading special token, tokenizer_config.json's, then well-known names.
    Raises BbpeError for a tokenizer it cannot reproduce exactly or a malformed file."""
    try:
        return _export(tokenizer_json_path, out_path, bos, eos)
    except (LookupError, TypeError, AttributeError, ValueError, struct.error) as e:
        if isinstance(e, BbpeError):
            raise
        raise BbpeError(f'{tokenizer_json_path}: malformed tokenizer.json ({type(e).__name__}: {e})') from e


def _export(path, out_path, bos, eos):
    with open(path, encoding='utf-8') as f:
        tj = json.load(f)
    model = tj.get('model') or {}
    if model.get('type') != 'BPE':
        refuse(path, 'model.type', f'{model.get("type")!r}, not BPE')
    if model.get('dropout') not in (None, 0, 0.0):
        refuse(path, 'model.dropout', f'{model["dropout"]} (random merges)')
    for key in ('continuing_subword_prefix', 'end_of_word_suffix'):
        if model.get(key):
            refuse(path, f'model.{key}', f'{model[key]!r}')
    kind = regex_kind(path, tj.get('pre_tokenizer'))
    flags = nfc_flag(path, tj.get('normalizer')) | (IGNORE_MERGES if model.get('ignore_merges') else 0)
    dec = tj.get('decoder')
    if dec is not None and dec.get('type') != 'ByteLevel':
        refuse(path, 'decoder', f'type {dec.get("type")!r} (razor decodes to the raw bytes, as ByteLevel does)')
    template_bos = check_post_processor(path, tj.get('post_processor'))

    # tokens: the model's vocabulary (byte-level strings), then the added tokens (plain text)
    to_byte = byte_decoder()
    vocab = model.get('vocab')
    if not isinstance(vocab, dict):
        refuse(path, 'model.vocab', 'is not a string -> id map')
    pieces, kinds, ids = {}, {}, {}
    for s, i in vocab.items():
        if type(i) is not int or i < 0 or i in pieces:
            refuse(path, f'model.vocab[{s!r}]', f'id {i!r} is not a new non-negative integer')
        if any(c not in to_byte for c in s):
            refuse(path, f'model.vocab[{s!r}]', 'is not a byte-level string (ByteLevel pre-tokenizer needed)')
        pieces[i], kinds[i], ids[s] = bytes(to_byte[c] for c in s), IN_VOCAB, i
    for b in range(256):
        if bytes([b]) not in pieces.values():
            refuse(path, 'model.vocab', f'has no token for byte 0x{b:02x}')
    split_normalized = set()
    for t in tj.get('added_tokens') or []:
        i, content = t['id'], t['content']
        if type(i) is not int or i < 0 or not isinstance(content, str):
            refuse(path, f'added_tokens[{content!r}]', f'id {i!r} or content is not valid')
        if i in pieces and (kinds[i] != IN_VOCAB or pieces[i] != content.encode('utf-8')):
            refuse(path, f'added_tokens[{content!r}]', f'id {i} is already {pieces[i]!r}')
        pieces[i] = content.encode('utf-8')
        if t.get('special'):
            kinds[i] = kinds.get(i, 0) | SPECIAL
            continue
        for opt in ('lstrip', 'rstrip', 'single_word'):
            if t.get(opt):
                refuse(path, f'added_tokens[{content!r}].{opt}', 'true')
        if not content:
            refuse(path, 'added_tokens', 'an empty non-special token')
        if flags & NFC and t.get('normalized', True) and unicodedata.normalize('NFC', content) != content:
            refuse(path, f'added_tokens[{content!r}].normalized', 'true, and NFC changes it')
        split_normalized.add(bool(t.get('normalized', True)) and bool(flags & NFC))
        kinds[i] = kinds.get(i, 0) | SPLIT_OUT
    if len(split_normalized) > 1:
        refuse(path, 'added_tokens', 'both normalized and unnormalized non-special tokens (two passes)')
    vocab_size = max(pieces) + 1
    if vocab_size > 2 * len(pieces) + 1024:
        refuse(path, 'model.vocab', f'ids up to {vocab_size - 1} for {len(pieces)} tokens')

    # merges: later duplicates win, as in the tokenizers library's merge map
    merges = {}
    for rank, m in enumerate(model.get('merges') or []):
        a, b = m.split(' ') if isinstance(m, str) and m.count(' ') == 1 else m if isinstance(m, list) and len(m) == 2 else (None, None)
        if a is None:
            refuse(path, f'model.merges[{rank}]', f'{m!r} is not a pair')
        for s in (a, b, a + b):
            if s not in ids:
                refuse(path, f'model.merges[{rank}]', f'{s!r} is not in model.vocab')
        merges[(ids[a], ids[b])] = (rank, ids[a + b])
    merge_list = sorted((rank, l, r, res) for (l, r), (rank, res) in merges.items())

    def token_id(t, where):
        if t is None or isinstance(t, int):
            return t
        matches = [i for i, p in pieces.items() if p == t.encode('utf-8') and kinds[i] & SPECIAL]
        if not matches:
            refuse(path, where, f'{t!r} is not a special token')
        return matches[0]
    special = {pieces[i].decode('utf-8', 'replace'): i for i in pieces if kinds[i] & SPECIAL}

    def default(given, key, names, first=None):
        if given is not None:
            return token_id(given, key)
        if first is not None:
            return first
        has, t = config_token(path, key + '_token')
        if has:
            return -1 if t is None else token_id(t, f'tokenizer_config.json {key}_token')
        return next((special[n] for n in names if n in special), -1)
    bos_id = default(bos, 'bos', BOS_NAMES, template_bos)
    eos_id = default(eos, 'eos', EOS_NAMES)
    for name, i in (('bos', bos_id), ('eos', eos_id)):
        if not -1 <= i < vocab_size:
            refuse(path, name, f'id {i} outside the vocabulary')

    classes = class_table()
    nfc = nfc_table() if flags & NFC else []
    if split_normalized == {True}:
        flags |= NORMALIZED_ADDED
    out = [MAGIC, struct.pack('<9i', VERSION, vocab_size, bos_id, eos_id, kind, flags, len(merge_list),
                              len(classes), len(nfc))]
    for i in range(vocab_size):
        p = pieces.get(i, b'')
        out.append(struct.pack('<iB', len(p), kinds.get(i, 0)) + p)
    out += [struct.pack('<3i', l, r, res) for _, l, r, res in merge_list]
    out += [struct.pack('<3i', *r) for r in classes]
    out.append(struct.pack(f'<{len(nfc)}i', *nfc))
    tmp = out_path + '.tmp'
    with open(tmp, 'wb') as f:
        f.write(b''.join(out))
    os.replace(tmp, out_path)
    return dict(vocab_size=vocab_size, bos_id=bos_id, eos_id=eos_id, kind=kind, flags=flags,
                merges=len(merge_list), classes=len(classes), nfc=len(nfc), nfc_counts=nfc[:4])


if __name__ == '__main__':
    import sys
    if len(sys.argv) != 3:
        sys.exit('usage: python3 tokenizer_bbpe.py tokenizer.json out.bin')
    try:
        print(export_bbpe(sys.argv[1], sys.argv[2]))
    except (BbpeError, OSError) as e:
        sys.exit(f'error: {e}')
