#!/usr/bin/env node
// tests/make_bbpe_vectors.js: trains a small byte-level BPE tokenizer on train/data/austen.txt and writes
//   tests/bbpe_tokenizer.json         Llama 3 style: Split(Llama 3 regex) + ByteLevel, ignore_merges,
//                                     BOS template, special and non-special added tokens
//   tests/bbpe_tokenizer.bin          that, exported by tokenizer_bbpe.py
//   tests/bbpe_tokenizer_gpt2.bin     the same vocabulary and merges, GPT-2 style (ByteLevel's own regex,
//                                     no ignore_merges)
//   tests/bbpe_tokenizer_qwen2.bin    the same, Qwen2 style (NFC normalizer, Qwen2 regex)
//   tests/bbpe_vectors.h              texts and the ids Hugging Face tokenizers (Rust, through its Node
//                                     bindings) gives for them with each tokenizer (no BOS)
// Special tokens are given spellings no text contains before the reference encodes: razor never
// splits them out of text (the library's encode_special_tokens); their literal text is ordinary text.
// The Qwen2 tokenizer normalizes to NFC: its ids are those of the NFC-normalized text.
//
// usage (the npm package `tokenizers`, e.g. installed with `npm install tokenizers` in /tmp/t):
//   NODE_PATH=/tmp/t/node_modules node tests/make_bbpe_vectors.js
'use strict';
const fs = require('fs'), path = require('path'), { execFileSync } = require('child_process');
let tokenizers;
try { tokenizers = require('tokenizers'); } catch (e) {
  console.error('needs the npm package tokenizers: npm install tokenizers in a scratch folder, then set NODE_PATH');
  process.exit(1);
}
const TOP = path.dirname(__dirname), T = f => path.join(TOP, 'tests', f);
const N_MERGES = 1700, N_WHOLE = 16, CORPUS_BYTES = 300000;

const LLAMA3 = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2 = LLAMA3.replace('\\p{N}{1,3}', '\\p{N}');
const byteLevel = useRegex => ({ type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: useRegex });
const splitThenBytes = re => ({ type: 'Sequence', pretokenizers: [
  { type: 'Split', pattern: { Regex: re }, behavior: 'Isolated', invert: false }, byteLevel(false)] });

// GPT-2's bytes <-> printable characters
const bytesToChars = (() => {
  const keep = b => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const out = []; let n = 0;
  for (let b = 0; b < 256; b++) out.push(String.fromCharCode(keep(b) ? b : 256 + n++));
  return out;
})();

function tokenizerJson(vocab, merges, added, pre, { normalizer = null, ignoreMerges = false, bos = null } = {}) {
  return {
    version: '1.0', truncation: null, padding: null, added_tokens: added, normalizer, pre_tokenizer: pre,
    post_processor: bos === null ? byteLevel(true) : {
      type: 'TemplateProcessing', single: [{ SpecialToken: { id: bos.content, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: bos.content, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { [bos.content]: { id: bos.content, ids: [bos.id], tokens: [bos.content] } } },
    decoder: byteLevel(true),
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
             fuse_unk: false, byte_fallback: false, ignore_merges: ignoreMerges, vocab, merges },
  };
}

// ---- training corpus: Austen, then a synthetic part with code, numbers, white space and other scripts
function synthetic() {
  let seed = 12345, out = [];
  const rnd = n => { seed = (seed * 1103515245 + 12345) % 2147483648; return Math.floor(seed / 2147483648 * n); };
  const pick = a => a[rnd(a.length)];
  const code = ['def f(x):', 'return x * 2', 'if (a && b) {', '}', 'for (int i = 0; i < n; i++)', 'x = [1, 2, 3]',
    'print("hello")', 'const y = await f();', '// comment', '# comment', 'return 0;', 'else:', '{', '});'];
  const words = ["DON'T", "I'LL", "WE'RE", "THEY'VE", "SHE'D", "I'M", "IT'S", "'Tis", "o'clock", 'Привет', 'мир',
    'Γειά', 'σου', '日本語', 'の', 'テキスト', '中文', '한국어', 'مرحبا', 'नमस्ते', 'café', 'naïve', '😀', '👍',
    "'Some", "'Sure", "'sup", "'ſome", "'ſtill", "'LLama", "'REal", "'Ve", "'DEAR", 'Hi!', 'Yes.', 'No?', '...'];
  for (let k = 0; k < 2500; k++) {
    const r = rnd(6);
    if (r === 0) out.push(pick(['', ' ', '  ', '    ', '        ', '\t', '\t\t']) + pick(code) + pick(['', ' ', '  ']) + pick(['\n', '\r\n', '\n\n', '\n  \n']));
    else if (r === 1) out.push(String(rnd(10 ** (1 + rnd(9)))) + pick([' ', ', ', '.', '\n', '%', ' - ']));
    else if (r === 2) out.push(pick(['1811', '1,000', '3.14', '2024-01-01', '$100', '42', '007']) + pick([' ', '\n']));
    else out.push(pick(words) + pick([' ', '  ', ', ', '. ', '!\n', '?\n\n', ' \n']));
  }
  return out.join('');
}

// ---- training: word counts from all three pre-tokenizers, then plain BPE (ties: the smallest pair)
function train() {
  const corpus = path.join(TOP, 'train', 'data', 'austen.txt');
  if (!fs.existsSync(corpus)) { console.error(`${corpus}: missing; run train/corpus.py first`); process.exit(1); }
  const text = fs.readFileSync(corpus, 'utf8').slice(0, CORPUS_BYTES) + '\n\n' + synthetic();
  const bytesVocab = Object.fromEntries(bytesToChars.map((c, i) => [c, i]));
  const counts = new Map();
  for (const pre of [splitThenBytes(LLAMA3), splitThenBytes(QWEN2), byteLevel(true)]) {
    const p = tokenizers.Tokenizer.fromString(JSON.stringify(tokenizerJson(bytesVocab, [], [], pre))).getPreTokenizer();
    for (const para of text.split('\n\n'))
      for (const [w] of p.preTokenizeString(para + '\n\n')) counts.set(w, (counts.get(w) || 0) + 1);
  }
  const words = [...counts.keys()].sort(), freq = words.map(w => counts.get(w)), syms = words.map(w => [...w]);
  const pairCount = new Map(), pairWords = new Map();
  const addPairs = (k, sign) => {
    const s = syms[k];
    for (let i = 0; i + 1 < s.length; i++) {
      const p = s[i] + ' ' + s[i + 1];
      pairCount.set(p, (pairCount.get(p) || 0) + sign * freq[k]);
      if (sign > 0) { if (!pairWords.has(p)) pairWords.set(p, new Set()); pairWords.get(p).add(k); }
    }
  };
  for (let k = 0; k < words.length; k++) addPairs(k, 1);
  const merges = [];
  while (merges.length < N_MERGES) {
    let best = null, bestCount = 0;
    for (const [p, c] of pairCount) if (c > bestCount || (c === bestCount && c > 0 && p < best)) best = p, bestCount = c;
    if (!best) break;
    merges.push(best);
    const [a, b] = best.split(' ');
    for (const k of pairWords.get(best)) {
      addPairs(k, -1);
      const s = syms[k], out = [];
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) out.push(a + b), i++;
        else out.push(s[i]);
      }
      syms[k] = out;
      addPairs(k, 1);
    }
  }
  // whole words that no merge reaches: only ignore_merges produces them
  const whole = words.map((w, k) => [w, freq[k]]).filter(([w]) => w.length >= 6 && /^Ġ?[a-z]+$/.test(w))
    .sort((x, y) => y[1] - x[1] || (x[0] < y[0] ? -1 : 1)).map(([w]) => w);
  return { merges, whole };
}

const { merges, whole } = train();
// ids: bytes in GPT-2's order, then merged tokens in reverse rank order (ranks are not ids), then whole words
const vocab = {};
bytesToChars.forEach((c, i) => { vocab[c] = i; });
merges.forEach((m, r) => { vocab[m.replace(' ', '')] = 256 + merges.length - 1 - r; });
let next = 256 + merges.length;
const wholeAdded = whole.filter(w => !(w in vocab)).slice(0, N_WHOLE);
for (const w of wholeAdded) vocab[w] = next++;
let mergeList = merges; // later: one pair repeated at the end, which the library gives its last rank
const added = [['<|begin_of_text|>', true], ['<|end_of_text|>', true], ['<|eot_id|>', true],
               ['<think>', false], ['</think>', false], ['<tool_call>', false], ['</tool_call>', false]]
  .map(([content, special], k) => ({ id: next + k, content, single_word: false, lstrip: false, rstrip: false,
                                     normalized: false, special }));
const variants = {
  llama3: ['bbpe_tokenizer', tokenizerJson(vocab, mergeList, added, splitThenBytes(LLAMA3), { ignoreMerges: true, bos: added[0] })],
  gpt2: ['bbpe_tokenizer_gpt2', tokenizerJson(vocab, mergeList, added, byteLevel(true))],
  qwen2: ['bbpe_tokenizer_qwen2', tokenizerJson(vocab, mergeList, added, splitThenBytes(QWEN2), { normalizer: { type: 'NFC' } })],
};

const PARAGRAPH = fs.readFileSync(path.join(TOP, 'train', 'data', 'austen.txt'), 'utf8').split('\n\n')
  .find(p => p.length > 500 && p.length < 700);
const TEXTS = [
  'It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.',
  '', ' ', '   ', 'a', '\n', '\n\n\n', ' \n ', '\tTabs\tand  two  spaces', 'x\u00a0y\u3000z\u2028w\u0085v\u000b\u000c\u001cu',
  '\r\nWindows lines\r\n', '    indented', 'trailing   ', 'x\n\n\ny  \n  z',
  "I'm sure you're right; we'll see, they've said it's John's, I'd think.", "DON'T SHOUT, I'LL GO, HE'S 'ſ 'x",
  '1 12 123 1234 12345 1234567890123', '3.14159 and 1,000,000 and v1.2.3-rc4', '٣٤٥ ४५ ²³ ½ Ⅻ ① 𝟘𝟙',
  'Café, naïve, résumé, Zoë, Ångström', 'e\u0301 combining acute', '\u212b Angstrom sign',
  '日本語のテキスト、中文分词。', '한국어 텍스트', '😀 👍🏽 👨‍👩‍👧 ❤️ 🇫🇷', 'Привет, мир! Γειά σου', 'مرحبا بالعالم', 'नमस्ते दुनिया',
  'def foo(x):\n    return x * 2\n', 'int main(void) {\n\treturn 0;\n}\n', 'if (a && b || !c) { x += 1; }  // done',
  '<|begin_of_text|>Hello<|eot_id|>', '<think>hmm</think> ok', 'a<tool_call>{}</tool_call>b', '<th<think><think',
  '!!!???... --- \u201cquoted\u201d \u2018single\u2019', "'ſome x'Some y'sure z'tis a'REal b'LLama c'dear d'Meet e'Ve f'ſtill",
  'In 1811, 1,000 and 3.14 and 2024-01-01 and 007 and 42% and 123456789', 'a\n  b\n    c  \n\n  d \r\n e',
  '    return x\n\n  \n}\n', 'x  \n', '\n\n  \n', "Hi!\nYes.\n\nNo?\r\n...\nx'Sure y'ſtill z'sup w'DEAR", 'She was' + wholeAdded.slice(0, 6).join('').replace(/Ġ/g, ' ') + ' indeed.',
  PARAGRAPH,
];

async function encodeAll(tj, texts) {
  const ref = JSON.parse(JSON.stringify(tj));
  for (const t of ref.added_tokens) if (t.special) t.content = '\uE000never' + t.id + '\uE001';
  const tok = tokenizers.Tokenizer.fromString(JSON.stringify(ref)), out = [];
  for (const text of texts) out.push((await tok.encode(text, null, { addSpecialTokens: false })).getIds().join(' '));
  return out;
}

(async () => {
  // repeat the first early merge whose move to the last rank changes some text's ids in every variant
  for (let k = 0; k < 200 && mergeList === merges; k++) {
    const moved = merges.concat([merges[k]]);
    let changes = true;
    for (const name of Object.keys(variants)) {
      const a = await encodeAll(variants[name][1], TEXTS), tj = JSON.parse(JSON.stringify(variants[name][1]));
      tj.model.merges = moved;
      const b = await encodeAll(tj, TEXTS);
      changes = changes && a.some((ids, i) => ids !== b[i]);
    }
    if (changes) mergeList = moved;
  }
  if (mergeList === merges) throw new Error('no merge to repeat changes the vectors');
  for (const [, tj] of Object.values(variants)) tj.model.merges = mergeList;
  const results = {};
  for (const [name, [file, tj]] of Object.entries(variants)) {
    const jsonPath = name === 'llama3' ? T('bbpe_tokenizer.json') : `/tmp/make_bbpe_vectors_${name}.json`;
    fs.writeFileSync(jsonPath, JSON.stringify(tj));
    execFileSync('python3', [path.join(TOP, 'tokenizer_bbpe.py'), jsonPath, T(file + '.bin')], { stdio: 'inherit' });
    if (name !== 'llama3') fs.unlinkSync(jsonPath);
    results[name] = (await encodeAll(tj, TEXTS)).map(ids => ids ? ids.split(' ').map(Number) : []);
  }
  const cstr = s => { // a C string literal; "" after a \x escape that a hex digit follows
    let out = '"', escaped = false;
    for (const b of Buffer.from(s, 'utf8')) {
      const c = String.fromCharCode(b), plain = b >= 0x20 && b < 0x7f && c !== '"' && c !== '\\' && c !== '?';
      if (plain && escaped && /[0-9a-fA-F]/.test(c)) out += '""';
      out += plain ? c : '\\x' + b.toString(16).padStart(2, '0');
      escaped = !plain;
    }
    return out + '"';
  };
  const maxIds = Math.max(1, ...Object.values(results).flat().map(ids => ids ? ids.length : 0));
  const out = [
    '/* Generated by tests/make_bbpe_vectors.js: do not edit.',
    ` * Ids from Hugging Face tokenizers ${require('tokenizers/package.json').version} (Node bindings) for tests/bbpe_tokenizer*.bin,`,
    ' * encode(text, addSpecialTokens = false) with special tokens never split out of the text.',
    ' * Qwen2: the library normalizes the text to NFC first (razor must do the same). */',
    '#ifndef BBPE_VECTORS_H', '#define BBPE_VECTORS_H', '',
    `#define BBPE_VECTORS_MAX_IDS ${maxIds}`, `#define BBPE_VECTORS_COUNT ${TEXTS.length}`, '',
    'typedef struct {', '    const char *text;', '    int n_ids;', '    int ids[BBPE_VECTORS_MAX_IDS];', '} BbpeVector;', ''];
  for (const [name, [file]] of Object.entries(variants)) {
    out.push(`/* tests/${file}.bin */`, `static const BbpeVector bbpe_vectors_${name}[BBPE_VECTORS_COUNT] = {`);
    TEXTS.forEach((text, k) => {
      const ids = results[name][k];
      out.push(`    {${cstr(text)},`,
               `     ${ids ? ids.length : -1}, {${ids && ids.length ? ids.join(', ') : '0'}}},`);
    });
    out.push('};', '');
  }
  out.push('#endif');
  fs.writeFileSync(T('bbpe_vectors.h'), out.join('\n') + '\n');
  console.log(`wrote tests/bbpe_vectors.h: ${TEXTS.length} texts x ${Object.keys(variants).length} tokenizers; vocabulary ${next + added.length}`);
})();
