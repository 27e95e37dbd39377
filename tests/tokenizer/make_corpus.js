// Writes the comparison corpus: deterministic (a seeded generator, and text files that every
// Debian machine has), one test case per line, lines separated by "\n" only. Usage:
//   node make_corpus.js OUT [LINES]
'use strict';
const fs = require('fs');
const path = require('path');

const out = process.argv[2];
const target = Number(process.argv[3] || 24000);
if (!out) {
  console.error('usage: node make_corpus.js OUT [LINES]');
  process.exit(2);
}

let seed = 0x5e4e417;
function rnd() { // mulberry32
  seed |= 0; seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const ri = (n) => Math.floor(rnd() * n);
const pick = (a) => a[ri(a.length)];
const cp = (c) => String.fromCodePoint(c);
const range = (a, b) => cp(a + ri(b - a + 1));
const rep = (f, n) => { let s = ''; for (let i = 0; i < n; i++) s += f(); return s; };

const lines = []; // Buffers
const add = (s) => lines.push(Buffer.isBuffer(s) ? s : Buffer.from(s, 'utf8'));

// English prose and code from files every Debian system has, and from the reference packages.
function fileLines(p, max) {
  if (!fs.existsSync(p)) { console.error(`make_corpus: missing ${p}`); process.exit(1); }
  return fs.readFileSync(p, 'utf8').split('\n').filter((l) => l.length > 0).slice(0, max);
}
const lic = '/usr/share/common-licenses/';
for (const f of ['GPL-3', 'Apache-2.0', 'LGPL-2.1', 'MPL-2.0', 'GFDL-1.3', 'Artistic'])
  for (const l of fileLines(lic + f, 800)) add(l);
const nm = path.join(__dirname, 'node_modules');
for (const l of fileLines(path.join(nm, 'tokenizers/index.js'), 700)) add(l);
for (const l of fileLines(path.join(nm, 'gpt-3-encoder/Encoder.js'), 200)) add(l);
for (const l of fileLines(path.join(nm, 'tokenizers/index.d.ts'), 400)) add(l);
const repo = path.join(__dirname, '..', '..');
for (const f of ['engine/forward.c', 'engine/safetensors.c', 'engine/sampler.c', 'server/cli.c'])
  for (const l of fileLines(path.join(repo, f), 600)) add(l);

const words = ('the of and to in is was that for it as with be on not he I by this had at from but ' +
  'have were or an they which you one we all there been their has would when if can more no ' +
  'out some so what up its about into than them only other time new could these two may first ' +
  'then do any like my now over such our man me even most made after also did many before must ' +
  'through back years where much your way well down should because each just those people how ' +
  'too little state good very make world still own see men work long get here between both life ' +
  'being under never day same another know while last might us great old year off come since ' +
  'against go came right used take three tokenizer Mamba state-space serpent GPU naïve café ' +
  'résumé Zürich façade coöperate São Paulo Ångström jalapeño').split(' ');
const contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'VE", "'M",
  "'LL", "'D", "’s", "n't", "N'T"];
const punct = ['.', ',', ';', ':', '!', '?', '...', ' -- ', ' - ', '—', '–', '(', ')', '"', "'",
  '«', '»', '“', '”', '‘', '’', '[', ']', '{', '}', '/', '\\', '&', '%', '$', '#', '@', '*'];
function sentence() {
  let s = '';
  const n = 3 + ri(25);
  for (let i = 0; i < n; i++) {
    let w = pick(words);
    const r = rnd();
    if (r < 0.1) w = w[0].toUpperCase() + w.slice(1);
    else if (r < 0.13) w = w.toUpperCase();
    if (rnd() < 0.08) w += pick(contractions);
    if (rnd() < 0.12) w += pick(punct);
    s += (i ? (rnd() < 0.05 ? '  ' : ' ') : '') + w;
  }
  return s + pick(['.', '!', '?', '', ' ', '.\r', '...']);
}
for (let i = 0; i < 3500; i++) add(sentence());

// Digits.
for (let i = 0; i < 1500; i++) {
  const k = ri(8);
  const d = () => rep(() => String(ri(10)), 1 + ri(k < 2 ? 80 : 12));
  if (k === 0) add(d());
  else if (k === 1) add(`${pick(words)} ${d()} ${pick(words)}`);
  else if (k === 2) add(`${d()}.${d()}e-${ri(300)} ${d()},${d()}`);
  else if (k === 3) add(`+${ri(100)} (${d()}) ${d()}-${d()}`);
  else if (k === 4) add(`abc${d()}def${d()}${pick(words)}${d()}`);
  else if (k === 5) add(`${d()}%${d()}$ ${d()}€ ¥${d()} ${d()}km²`);
  else if (k === 6) add(rep(() => range(0x660, 0x669) + range(0x966, 0x96f) + range(0xff10, 0xff19), 1 + ri(10)) + ' ' + d());
  else add(rep(() => pick(['½', '²', '³', '¼', 'Ⅻ', '⑦', '𝟙', '٣', '১', '๓']) + d(), 1 + ri(6)));
}

// Whitespace runs and tabs.
const spaces = [' ', ' ', ' ', '\t', '\t', '\r', '\f', '\v', '\u00a0', '\u3000', '\u2003', '\u2009',
  '\u200b', '\u0085', '\u2028', '\u2029', '\u180e', '\ufeff', '\u1680', '\u202f'];
for (let i = 0; i < 1500; i++) {
  const ws = () => rep(() => pick(spaces), 1 + ri(i % 50 === 0 ? 300 : 12));
  const k = ri(5);
  if (k === 0) add(ws());
  else if (k === 1) add(ws() + pick(words) + ws());
  else if (k === 2) add(rep(() => pick(words) + ws(), 1 + ri(8)));
  else if (k === 3) add('\t'.repeat(1 + ri(6)) + `if (x) { return ${ri(99)}; }` + ' '.repeat(ri(9)));
  else add(rep(() => pick([' ', '\t']), 1 + ri(40)) + pick(words) + rep(() => pick([' ', '  ', '\t']), ri(10)));
}

// Scripts: CJK, kana, Hangul, Arabic, Hebrew, Devanagari, Bengali, Thai, Cyrillic, Greek.
const scripts = [[0x4e00, 0x9fa5], [0x3040, 0x309f], [0x30a0, 0x30ff], [0xac00, 0xd7a3],
  [0x0600, 0x06ff], [0x05d0, 0x05ea], [0x0900, 0x097f], [0x0985, 0x09b9], [0x0e00, 0x0e5b],
  [0x0400, 0x04ff], [0x0370, 0x03ff], [0x20000, 0x2a6df], [0x3400, 0x4dbf], [0xff01, 0xff5e]];
for (let i = 0; i < 3500; i++) {
  const [a, b] = scripts[i % scripts.length];
  const w = () => rep(() => range(a, b), 1 + ri(8));
  let s = '';
  const n = 1 + ri(10);
  for (let j = 0; j < n; j++) {
    s += w();
    const r = rnd();
    if (r < 0.3) s += ' ';
    else if (r < 0.4) s += pick(['。', '、', '，', '！', '？', '：', '«', '»', '؟', '،', '।', ' ']);
    else if (r < 0.5) s += ' ' + pick(words) + ' ';
    else if (r < 0.55) s += String(ri(100000));
  }
  add(s);
}
const realText = ['日本語のテキストと English mixed 123 です。', '我爱自然语言处理，也爱吃饺子！',
  '한국어 문장은 띄어쓰기를 합니다.', 'العربية: مرحبا بالعالم، كيف حالك؟ ١٢٣',
  'हिन्दी में लिखा गया वाक्य है। नमस्ते दुनिया', 'Ελληνικά: Γειά σου Κόσμε!',
  'Русский текст: Привет, мир! Ёжик', 'ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ', 'עברית: שלום עולם'];
for (let i = 0; i < 300; i++) add(pick(realText) + (rnd() < 0.5 ? ' ' + pick(realText) : ''));

// Emoji: skin tones, ZWJ sequences, flags, keycaps, variation selectors.
const emoji = ['😀', '👍', '👍🏻', '👍🏿', '👩‍💻', '👨‍👩‍👧‍👦', '🏳️‍🌈', '🇫🇷', '🇯🇵', '1️⃣', '#️⃣', '❤️', '❤',
  '🧑🏽‍🚀', '🫠', '🤌🏼', '👁️‍🗨️', '🐍', '✨', '☺︎', '🏴󠁧󠁢󠁳󠁣󠁴󠁿', '💁‍♀️'];
for (let i = 0; i < 1500; i++) {
  let s = '';
  const n = 1 + ri(12);
  for (let j = 0; j < n; j++) {
    s += rnd() < 0.7 ? pick(emoji) : range(0x1f300, 0x1f5ff);
    if (rnd() < 0.3) s += pick([' ', '', '', pick(words), ' ' + pick(words) + ' ', '\u200d', '\ufe0f', range(0x1f3fb, 0x1f3ff)]);
  }
  add(s);
}

// Combining marks, normalization forms, compatibility characters.
// Marks of Unicode 12 or older: the reference's normalization tables predate Unicode 13, so for
// marks assigned later its canonical ordering differs from utf8proc's (see README.md).
const marks = [[0x300, 0x36f], [0x1ab0, 0x1abe], [0x20d0, 0x20f0], [0x0951, 0x0954]];
for (let i = 0; i < 1500; i++) {
  const k = ri(5);
  if (k === 0) add(rep(() => pick(['e', 'a', 'o', 'n', 'A', ' ', 'ı', 'i']) + rep(() => range(...pick(marks)), ri(5)), 1 + ri(20)));
  else if (k === 1) add(pick(['cafe\u0301', 'café', 'n\u0303', 'ñ', 'A\u030a', 'Å', '\u212b', 'ḳ́', 'q̣̇']) + ' ' + pick(words));
  else if (k === 2) add(rep(() => pick(['ﬁ', 'ﬂ', '①', 'Ａ', 'ｶ', '㌀', '㎏', 'ℌ', 'ſ', 'K', 'Ω', 'µ', '…', '™', '¼', 'ǅ', 'ﷺ', '𝐀']) + pick(['', ' ', pick(words)]), 1 + ri(10)));
  else if (k === 3) add(rep(() => range(0x1100, 0x1112) + range(0x1161, 0x1175) + (rnd() < 0.5 ? range(0x11a8, 0x11c2) : ''), 1 + ri(6)));
  else add('Z' + rep(() => range(0x300, 0x36f), 5 + ri(60)) + 'algo ' + pick(words));
}

// Text that looks like special tokens, or is one, of any of the tokenizers under test.
const specials = ['<|begin_of_text|>', '<|end_of_text|>', '<|eot_id|>', '<|start_header_id|>',
  '<|im_start|>', '<|im_end|>', '<|endoftext|>', '<s>', '</s>', '<unk>', '<pad>', '<bos>', '<eos>',
  '<start_of_turn>', '<end_of_turn>', '<｜begin▁of▁sentence｜>', '<｜end▁of▁sentence｜>', '<think>',
  '</think>', '<|fim_prefix|>', '<tool_call>', '<|endofprompt|>', '<mask>', '[WORD]', '   ', '\t\t',
  '<0x41>', '<0xE4>', '▁', 'Ġ', 'Ċ', '<|reserved_special_token_5|>', '<|end|>',
  'A\u030angstro\u0308m', 'Ångström', '[WORD]x', 'x[WORD]', ' <mask> '];
const near = ['<|begin_of_text|', '|begin_of_text|>', '<|BEGIN_OF_TEXT|>', '< s>', '<s >', '<<s>>',
  '<|im_start', 'im_start|>', '<|im_end|><', '<|endoftext|', '<ｓ>', '<\u200bs>', '<|im_sta rt|>'];
for (let i = 0; i < 2500; i++) {
  let s = '';
  const n = 1 + ri(6);
  for (let j = 0; j < n; j++) {
    const r = rnd();
    const glue = pick(['', ' ', '  ', '\n'.slice(1), '\t', 'x', pick(words)]);
    s += (r < 0.6 ? pick(specials) : pick(near)) + glue;
    if (rnd() < 0.3) s += ' ' + sentence().slice(0, 30);
  }
  add(s);
}

// Random code points from blocks whose assignments predate Unicode 14 (the character tables of
// the reference and of PCRE2 / utf8proc come from different Unicode versions; see README.md).
const blocks = [[0x01, 0x09], [0x0b, 0x7f], [0x80, 0x24f], [0x370, 0x3ff], [0x400, 0x4ff],
  [0x5d0, 0x5ea], [0x600, 0x6ff], [0x900, 0x97f], [0xe00, 0xe7f], [0x1e00, 0x1eff],
  [0x2000, 0x2064], [0x20a0, 0x20bf], [0x2100, 0x27bf], [0x3000, 0x30ff], [0x4e00, 0x9fa5],
  [0xac00, 0xd7a3], [0xe000, 0xe0ff], [0xfe30, 0xfe4f], [0xff00, 0xffef], [0x1d400, 0x1d7ff],
  [0x1f300, 0x1f5ff]];
for (let i = 0; i < 800; i++) add(rep(() => range(...pick(blocks)), 1 + ri(30)));

// Invalid UTF-8 (the reference sees what a lossy decoder makes of it).
const bad = [[0x80], [0xbf], [0xc0, 0xaf], [0xc1, 0x81], [0xe0, 0x80, 0x80], [0xed, 0xa0, 0x80],
  [0xed, 0xbf, 0xbf], [0xf0, 0x8f, 0xbf, 0xbf], [0xf4, 0x90, 0x80, 0x80], [0xf5], [0xff], [0xfe],
  [0xe4, 0xbd], [0xf0, 0x9f, 0x98], [0xc3], [0xe2, 0x82], [0xf0, 0x9f], [0x00]];
for (let i = 0; i < 1200; i++) {
  const parts = [];
  const n = 1 + ri(8);
  for (let j = 0; j < n; j++) {
    if (rnd() < 0.5) parts.push(Buffer.from(pick([pick(words), ' ', '你好', '😀', 'é', sentence().slice(0, 20)]), 'utf8'));
    else parts.push(Buffer.from(rnd() < 0.8 ? pick(bad) : [0x80 + ri(0x80)]));
  }
  add(Buffer.concat(parts));
}

// A few long lines: long words, long digit runs, long whitespace, long mixed text.
for (let i = 0; i < 40; i++) {
  const k = i % 5;
  if (k === 0) add('a'.repeat(2000 + ri(8000)));
  else if (k === 1) add(rep(() => String(ri(10)), 3000 + ri(5000)));
  else if (k === 2) add(' '.repeat(1000 + ri(5000)) + 'x' + '\t'.repeat(ri(3000)));
  else if (k === 3) add(rep(sentence, 50 + ri(100)));
  else add(rep(() => range(0x4e00, 0x9fa5), 1000 + ri(4000)));
}

// Fill up to the target with mixtures of everything above.
const pool = lines.slice();
while (lines.length < target) {
  const n = 2 + ri(3);
  const parts = [];
  for (let j = 0; j < n; j++) {
    const l = pick(pool);
    const a = ri(l.length), b = Math.min(l.length, a + 1 + ri(60));
    parts.push(l.subarray(a, b), Buffer.from(pick(['', ' ', '  ', '\t'])));
  }
  add(Buffer.concat(parts));
}

const body = Buffer.concat(lines.flatMap((l) => [l, Buffer.from('\n')]));
fs.writeFileSync(out, body);
console.error(`make_corpus: ${lines.length} lines, ${body.length} bytes -> ${out}`);
