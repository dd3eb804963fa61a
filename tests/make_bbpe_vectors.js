#!/usr/bin/env node
// tests/make_bbpe_vectors.js: trains a small byte-level BPE tokenizer on train/data/austen.txt and writes
//   tests/bbpe_tokenizer.json         Llama 3 style: Split(Llama 3 regex) + ByteLevel, ignore_merges,
//                                     BOS template, special and non-special added tokens
//   tests/bbpe_tokenizer.bin          that, exported by tokenizer_bbpe.py
//   tests/bbpe_tokenizer_gpt2.bin     the same vocabulary and merges, GPT-2 style (ByteLevel's own regex,
//                                     no ignore_merges)
//   tests/bbpe_tokenizer_qwen2.bin    the same vocabulary and merges, Qwen2 / Qwen2.5 / Qwen3 style: NFC
//                                     normalizer, Qwen2 regex, and Qwen's own added tokens (QWEN_ADDED)
//   tests/bbpe_vectors.h              texts and the ids Hugging Face tokenizers (Rust, through its Node
//                                     bindings) gives for them with each tokenizer (no BOS)
//   tests/bbpe_tokenizer_qwen2.json   the Qwen2 style tokenizer.json itself (for tests/test_export.py)
//   tests/bbpe_special_ids.json       {"llama3" | "qwen2": [[text, ids], ...]}: a few texts encoded with
//                                     add_special_tokens = true, as a model's prompt is (Llama 3: BOS first;
//                                     Qwen2: nothing added), for tests/test_export.py's BOS checks
// Special tokens are given spellings no text contains before the reference encodes: razor never
// splits them out of text (the library's encode_special_tokens); their literal text is ordinary text.
// The Qwen2 tokenizer normalizes to NFC: its ids are those of the NFC-normalized text; its added tokens are
// not normalized (as Qwen's): they are split out of the raw text, then each piece between them is normalized.
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
const byteLevel = (useRegex, trim = true) => ({ type: 'ByteLevel', add_prefix_space: false, trim_offsets: trim,
                                                 use_regex: useRegex });
const splitThenBytes = (re, trim = true) => ({ type: 'Sequence', pretokenizers: [
  { type: 'Split', pattern: { Regex: re }, behavior: 'Isolated', invert: false }, byteLevel(false, trim)] });

// Qwen's added tokens, as Qwen3's tokenizer.json and tokenizer_config.json declare them (Qwen/Qwen3-4B's, quoted
// in github.com/akougkas/warpio-cli warpio-docs/ai-docs/model_cards/qwen3:4b.md; Qwen2.5's ids as in
// github.com/pytorch/torchtune torchtune/models/qwen2_5/_tokenizer.py and qwen3/_tokenizer.py, from
// huggingface.co/Qwen/Qwen2.5-7B-Instruct's tokenizer_config.json): ids 151643 on, right after the 151643 BPE
// tokens, every one normalized: false, lstrip / rstrip / single_word false. Special: <|endoftext|> ...
// <|video_pad|> (151643-151656); not special: <tool_call> </tool_call> and the <|fim_*|> <|repo_name|>
// <|file_sep|> code tokens (151657-151664). Qwen2 has the first three only, Qwen2.5 these 22, Qwen3 adds
// <tool_response> </tool_response> <think> </think> (151665-151668, not special). Their tokenizer.json: normalizer
// NFC; pre_tokenizer Split(the Qwen2 regex, Isolated) + ByteLevel(add_prefix_space, trim_offsets, use_regex all
// false); post_processor and decoder ByteLevel (no BOS: bos_token null, add_bos_token false); model BPE with
// ignore_merges false, continuing_subword_prefix and end_of_word_suffix "". tokenizer_config.json: eos_token
// <|im_end|> (instruct models; the base models' <|endoftext|>), pad_token <|endoftext|>, split_special_tokens false
// (transformers splits the special tokens out of text; razor never does, see above). Here the ids follow the
// small vocabulary.
const QWEN_SPECIAL = 14, QWEN_ADDED = ['<|endoftext|>', '<|im_start|>', '<|im_end|>', '<|object_ref_start|>',
  '<|object_ref_end|>', '<|box_start|>', '<|box_end|>', '<|quad_start|>', '<|quad_end|>', '<|vision_start|>',
  '<|vision_end|>', '<|vision_pad|>', '<|image_pad|>', '<|video_pad|>', '<tool_call>', '</tool_call>',
  '<|fim_prefix|>', '<|fim_middle|>', '<|fim_suffix|>', '<|fim_pad|>', '<|repo_name|>', '<|file_sep|>',
  '<tool_response>', '</tool_response>', '<think>', '</think>'];

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
const qwenAdded = QWEN_ADDED.map((content, k) => ({ id: next + k, content, single_word: false, lstrip: false,
                                                   rstrip: false, normalized: false, special: k < QWEN_SPECIAL }));
const qwen2 = tokenizerJson(vocab, mergeList, qwenAdded, splitThenBytes(QWEN2, false), { normalizer: { type: 'NFC' } });
qwen2.post_processor = qwen2.decoder = byteLevel(false, false);
Object.assign(qwen2.model, { continuing_subword_prefix: '', end_of_word_suffix: '' });
const variants = {
  llama3: ['bbpe_tokenizer', tokenizerJson(vocab, mergeList, added, splitThenBytes(LLAMA3), { ignoreMerges: true, bos: added[0] })],
  gpt2: ['bbpe_tokenizer_gpt2', tokenizerJson(vocab, mergeList, added, byteLevel(true))],
  qwen2: ['bbpe_tokenizer_qwen2', qwen2],
};

const PARAGRAPH = fs.readFileSync(path.join(TOP, 'train', 'data', 'austen.txt'), 'utf8').split('\n\n')
  .find(p => p.length > 500 && p.length < 700);
const BASE_TEXTS = [
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
// Qwen's chat, tool, code and vision markup (special ones are text here), its added tokens next to each other,
// cut short and nested, NFC next to them (U+0338 after '>' or '=' composes: Qwen splits them out before it
// normalizes), CJK compatibility ideographs and Hangul jamo that NFC changes, Chinese with digits
const QWEN_TEXTS = [
  '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n你好，请介绍一下你自己。<|im_end|>\n' +
    '<|im_start|>assistant\n<think>\n用户在打招呼，我应该礼貌地回答。\n</think>\n\n你好！我是通义千问。<|im_end|>\n<|endoftext|>',
  '<tool_call>\n{"name": "get_weather", "arguments": {"city": "北京", "unit": "celsius"}}\n</tool_call><|im_end|>\n' +
    '<|im_start|>user\n<tool_response>\n{"temperature": 21.5}\n</tool_response><|im_end|>',
  '<|fim_prefix|>def add(a, b):\n    <|fim_suffix|>\n    return c\n<|fim_middle|>c = a + b<|fim_pad|><|fim_pad|>',
  '<|repo_name|>razor\n<|file_sep|>razor.c\nint main(void) { return 0; }\n<|file_sep|>README.md\n# razor',
  '<|vision_start|><|image_pad|><|image_pad|><|vision_end|>描述这张图片：<|object_ref_start|>一只猫<|object_ref_end|>' +
    '<|box_start|>(10,20),(300,400)<|box_end|><|quad_start|><|quad_end|><|video_pad|><|vision_pad|>',
  '<think></think><tool_call></tool_call><tool_response></tool_response><think><think></think>',
  ' <think> x </think> \n\n<tool_call> \t</tool_call>\n',
  '<think</think>><<think>>think> </think</think>\n<tool_call<tool_call>><tool_response</tool_response>>',
  '<|im_start|<|im_end|>|> <|endoftext|<|fim_prefix|<|fim_prefix|>> <||> <|> |> <|endoftext|><|endoftext|>',
  'a</think>\u0338b <tool_call>\u0338 =\u0338 <\u0338think> e<think>\u0301 \u0338<think> <think>Cafe\u0301 \u212b</think>',
  '\uf900\uf901\ufa10 \u1112\u1161\u11ab\u1100\u1173\u11af 한글 ＡＢＣ１２３ ｶﾀｶﾅ',
  '价格是123.45元，约合１７美元（2024年12月31日）。“引号”与《书名号》……',
  '我用Python写了一个tokenizer，速度很快！It works 很好。\n\n第二段\t缩进',
];
const TEXTS = BASE_TEXTS.concat(QWEN_TEXTS);

async function encodeAll(tj, texts, addSpecialTokens = false) {
  const ref = JSON.parse(JSON.stringify(tj));
  for (const t of ref.added_tokens) if (t.special) t.content = '\uE000never' + t.id + '\uE001';
  const tok = tokenizers.Tokenizer.fromString(JSON.stringify(ref)), out = [];
  for (const text of texts) out.push((await tok.encode(text, null, { addSpecialTokens })).getIds().join(' '));
  return out;
}
const SPECIAL_TEXTS = [BASE_TEXTS[0], '', 'a', 'Café, naïve', '  two leading spaces', QWEN_TEXTS[0]];

(async () => {
  // repeat the first early merge whose move to the last rank changes some text's ids in every variant (looking
  // at BASE_TEXTS only: texts added later leave tests/bbpe_tokenizer.json and its ids as they were)
  for (let k = 0; k < 200 && mergeList === merges; k++) {
    const moved = merges.concat([merges[k]]);
    let changes = true;
    for (const name of Object.keys(variants)) {
      const a = await encodeAll(variants[name][1], BASE_TEXTS), tj = JSON.parse(JSON.stringify(variants[name][1]));
      tj.model.merges = moved;
      const b = await encodeAll(tj, BASE_TEXTS);
      changes = changes && a.some((ids, i) => ids !== b[i]);
    }
    if (changes) mergeList = moved;
  }
  if (mergeList === merges) throw new Error('no merge to repeat changes the vectors');
  for (const [, tj] of Object.values(variants)) tj.model.merges = mergeList;
  const results = {};
  for (const [name, [file, tj]] of Object.entries(variants)) {
    const kept = name === 'llama3' || name === 'qwen2';
    const jsonPath = kept ? T(file + '.json') : `/tmp/make_bbpe_vectors_${name}.json`;
    fs.writeFileSync(jsonPath, JSON.stringify(tj));
    execFileSync('python3', [path.join(TOP, 'tokenizer_bbpe.py'), jsonPath, T(file + '.bin')], { stdio: 'inherit' });
    if (!kept) fs.unlinkSync(jsonPath);
    results[name] = (await encodeAll(tj, TEXTS)).map(ids => ids ? ids.split(' ').map(Number) : []);
  }
  const special = {};
  for (const name of ['llama3', 'qwen2']) {
    const ids = await encodeAll(variants[name][1], SPECIAL_TEXTS, true);
    special[name] = SPECIAL_TEXTS.map((text, k) => [text, ids[k] ? ids[k].split(' ').map(Number) : []]);
  }
  fs.writeFileSync(T('bbpe_special_ids.json'), JSON.stringify(special, null, 1) + '\n');
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
    ' * Qwen2: the library normalizes the text to NFC first (razor must do the same), but not Qwen\'s added tokens:',
    ' * they are split out of the raw text, then each piece between them is normalized. */',
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
  console.log(`wrote tests/bbpe_vectors.h: ${TEXTS.length} texts x ${Object.keys(variants).length} tokenizers; ` +
              `vocabulary ${next + added.length}, Qwen2 ${next + qwenAdded.length}`);
})();
