// The reference side of the comparison: Hugging Face `tokenizers` (the Rust crate, through its
// official node binding). Usage:
//   node reference.js TOKENIZER_DIR CORPUS OUT_PREFIX [--add-special-tokens]
// Writes OUT_PREFIX.ids (the ids of each corpus line, space-separated) and OUT_PREFIX.dec (the
// decode of those ids, skip_special_tokens=false). Corpus lines are split at "\n" and decoded
// from UTF-8 the lossy way (invalid bytes -> U+FFFD), as Python's errors="replace" would.
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require('tokenizers');

async function main() {
  const [dir, corpus, prefix, flag] = process.argv.slice(2);
  if (!prefix) {
    console.error('usage: node reference.js TOKENIZER_DIR CORPUS OUT_PREFIX [--add-special-tokens]');
    process.exit(2);
  }
  const addSpecial = flag === '--add-special-tokens';
  const tok = Tokenizer.fromFile(path.join(dir, 'tokenizer.json'));
  // transformers' Llama/Gemma-style fast tokenizers rebuild the post-processor from
  // tokenizer_config.json's add_bos_token / add_eos_token when it sets them
  let cfg = {};
  const cfgPath = path.join(dir, 'tokenizer_config.json');
  if (fs.existsSync(cfgPath)) cfg = JSON.parse(fs.readFileSync(cfgPath, 'utf8'));
  const flagSet = (k) => cfg[k] === true || cfg[k] === false;
  const fromConfig = flagSet('add_bos_token') || flagSet('add_eos_token');
  const tokText = (t) => (t && typeof t === 'object' ? t.content : t);
  const bos = cfg.add_bos_token && cfg.bos_token ? tok.tokenToId(tokText(cfg.bos_token)) : null;
  const eos = cfg.add_eos_token && cfg.eos_token ? tok.tokenToId(tokText(cfg.eos_token)) : null;

  const buf = fs.readFileSync(corpus);
  const td = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });
  const lines = [];
  for (let a = 0; a < buf.length;) {
    let b = buf.indexOf(0x0a, a);
    if (b < 0) b = buf.length;
    lines.push(td.decode(buf.subarray(a, b)));
    a = b + 1;
  }
  const ids = [], dec = [];
  const batch = 512;
  for (let i = 0; i < lines.length; i += batch) {
    const encs = await tok.encodeBatch(lines.slice(i, i + batch),
                                       { addSpecialTokens: addSpecial && !fromConfig });
    for (const enc of encs) {
      let v = Array.from(enc.getIds());
      if (addSpecial && fromConfig) {
        if (bos !== null && bos !== undefined) v = [bos, ...v];
        if (eos !== null && eos !== undefined) v = [...v, eos];
      }
      ids.push(v);
    }
  }
  for (const v of ids) dec.push(await tok.decode(v, false));
  fs.writeFileSync(prefix + '.ids', ids.map((v) => v.join(' ') + '\n').join(''));
  fs.writeFileSync(prefix + '.dec', dec.map((s) => s + '\n').join(''));
  console.error(`reference: ${lines.length} lines -> ${prefix}.ids, ${prefix}.dec`);
}

main().catch((err) => {
  console.error(`reference.js: ${err && err.stack ? err.stack : err}`);
  process.exit(1);
});
