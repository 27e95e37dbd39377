// The reference's tokenizer speed, for bench/tokenizer_bench.sh: Hugging Face tokenizers (Rust,
// through its node binding) on one core. Lines go in batches of 1024 through encodeBatch /
// decodeBatch so that the cost of crossing from JS to Rust per call is spread thin; run with
// RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false under `taskset -c 0`. It also times the
// same calls on empty lines, and reports the encode rate with that time taken off, as a bound
// on what the Rust code alone does.
//   node tokenizer_ref.js TOKENIZER_DIR CORPUS [REPEAT]
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require(path.join(__dirname, '../tests/tokenizer/node_modules/tokenizers'));

async function main() {
  const [dir, corpus, rep] = process.argv.slice(2);
  const repeat = Number(rep || 3);
  let t0 = process.hrtime.bigint();
  const tok = Tokenizer.fromFile(path.join(dir, 'tokenizer.json'));
  const loadS = Number(process.hrtime.bigint() - t0) / 1e9;
  const buf = fs.readFileSync(corpus);
  const td = new TextDecoder('utf-8', { ignoreBOM: true });
  const lines = [];
  for (let a = 0; a < buf.length;) {
    let b = buf.indexOf(0x0a, a);
    if (b < 0) b = buf.length;
    lines.push(td.decode(buf.subarray(a, b)));
    a = b + 1;
  }
  const batch = 1024;
  let bestEnc = Infinity, bestDec = Infinity, ids = [], nTokens = 0;
  for (let r = 0; r < repeat; r++) {
    ids = [];
    nTokens = 0;
    t0 = process.hrtime.bigint();
    for (let i = 0; i < lines.length; i += batch) {
      const encs = await tok.encodeBatch(lines.slice(i, i + batch), { addSpecialTokens: false });
      for (const e of encs) { const v = e.getIds(); ids.push(v); nTokens += v.length; }
    }
    bestEnc = Math.min(bestEnc, Number(process.hrtime.bigint() - t0) / 1e9);
  }
  // what crossing between JS and Rust costs: the same number of calls and lines, empty
  const empty = lines.map(() => '');
  let bestEmpty = Infinity;
  for (let r = 0; r < repeat; r++) {
    t0 = process.hrtime.bigint();
    for (let i = 0; i < empty.length; i += batch) {
      const encs = await tok.encodeBatch(empty.slice(i, i + batch), { addSpecialTokens: false });
      for (const e of encs) e.getIds();
    }
    bestEmpty = Math.min(bestEmpty, Number(process.hrtime.bigint() - t0) / 1e9);
  }
  for (let r = 0; r < repeat; r++) {
    t0 = process.hrtime.bigint();
    for (let i = 0; i < ids.length; i += batch)
      await tok.decodeBatch(ids.slice(i, i + batch).map((v) => Array.from(v)), false);
    bestDec = Math.min(bestDec, Number(process.hrtime.bigint() - t0) / 1e9);
  }
  console.log(JSON.stringify({
    impl: 'hf-tokenizers-0.23.2 (node binding)', lines: lines.length, bytes: buf.length,
    tokens: nTokens, load_s: +loadS.toFixed(3), encode_s: +bestEnc.toFixed(4),
    encode_MB_per_s: +(buf.length / bestEnc / 1e6).toFixed(2),
    empty_lines_encode_s: +bestEmpty.toFixed(4),
    encode_MB_per_s_less_empty_lines: +(buf.length / (bestEnc - bestEmpty) / 1e6).toFixed(2),
    decode_s: +bestDec.toFixed(4),
    decode_tokens_per_s: Math.round(nTokens / bestDec),
  }));
}
main().catch((e) => { console.error(e); process.exit(1); });
