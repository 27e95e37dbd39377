// Greedy decoding through the server equals transformers' continuation (the fixtures'
// reference.json, token ids) and `serpent generate` (text), and 64 requests sent at once give
// the texts they give one at a time. SERPENT_FIXTURE_URLS: "name=url,..." servers of the
// token-id fixtures; SERPENT_URL: the text model (at most 16 running, so the 64 queue).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import test from 'node:test';

const fixtures = process.env.SERPENT_FIXTURES;
const base = process.env.SERPENT_URL;

async function post(url, body) {
  const r = await fetch(`${url}/v1/completions`, { method: 'POST', body: JSON.stringify(body) });
  const j = await r.json();
  assert.equal(r.status, 200, JSON.stringify(j));
  return j;
}

// Every fixture with a reference.json: prompts as token ids ("ids") or text ("text" or "prompt",
// for a fixture with a tokenizer); "greedy" holds transformers' greedy token ids, and a string
// "greedy_text", when present, its text. A fixture with a tokenizer is also asked with its text
// prompts (through its tokenizer.json) and its chats (through its chat template). Where
// transformers' cached generate() left its own uncached argmax (uncached_agrees false, without
// the stepwise logits of a dynamic-RoPE fixture), serpent follows the uncached computation, so
// only the tokens before the first difference are compared.
async function chat(url, body) {
  const r = await fetch(`${url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify(body) });
  const j = await r.json();
  assert.equal(r.status, 200, JSON.stringify(j));
  return j;
}

function checkGreedy(got, p, what) {
  if (p.uncached_agrees !== false || p.logits_stepwise) {
    assert.deepEqual(got, p.greedy, what);
    return;
  }
  let n = 0;
  while (n < p.greedy.length && got[n] === p.greedy[n]) n++;
  assert.ok(n >= 1, `${what}: not even the first token agrees`);
}

for (const entry of process.env.SERPENT_FIXTURE_URLS.split(',')) {
  const [name, url] = entry.split('=');
  test(`${name}: greedy continuations equal transformers'`, async () => {
    const ref = JSON.parse(readFileSync(`${fixtures}/${name}/reference.json`));
    const cases = ref.prompts.filter((p) => Array.isArray(p.greedy) && p.greedy.length > 0);
    assert.ok(cases.length > 0, 'reference.json has prompts with greedy continuations');
    const promptOf = (p) => (Array.isArray(p.ids) ? p.ids : p.text ?? p.prompt);
    const body = (prompt, p) => ({
      prompt, max_tokens: p.greedy.length, temperature: 0, ignore_eos: true, return_token_ids: true });
    // all prompts at once: batched, chunked prefill for the long ones
    const outs = await Promise.all(cases.map((p) => post(url, body(promptOf(p), p))));
    cases.forEach((p, i) => {
      checkGreedy(outs[i].choices[0].token_ids, p, `prompt ${i}`);
      if (typeof p.greedy_text === 'string' && p.uncached_agrees !== false)
        assert.equal(outs[i].choices[0].text, p.greedy_text, `prompt ${i} text`);
    });
    // text prompts through the fixture's tokenizer, chats through its chat template
    const texts = cases.filter((p) => typeof p.text === 'string' && !p.messages && Array.isArray(p.ids));
    const tout = await Promise.all(texts.map((p) => post(url, body(p.text, p))));
    texts.forEach((p, i) => {
      checkGreedy(tout[i].choices[0].token_ids, p, `text prompt ${JSON.stringify(p.text)}`);
      assert.equal(tout[i].usage.prompt_tokens, p.ids.length, `text prompt ${i}: prompt tokens`);
    });
    // (the families' fixtures encode chats as the chat endpoint does, the template alone without
    // special tokens; make_fixtures.py's nemotron_h_spm prepends BOS to them)
    for (const p of cases.filter((q) => Array.isArray(q.messages) && ref.family)) {
      const r = await chat(url, { messages: p.messages, max_tokens: p.greedy.length, temperature: 0,
        ignore_eos: true, return_token_ids: true });
      checkGreedy(r.choices[0].token_ids, p, `chat ${JSON.stringify(p.messages)}`);
      assert.equal(r.usage.prompt_tokens, p.ids.length, 'chat prompt tokens');
      if (typeof p.greedy_text === 'string' && p.uncached_agrees !== false)
        assert.equal(r.choices[0].message.content, p.greedy_text, 'chat text');
    }
    // and streamed
    const p = cases.at(-1);
    const r = await fetch(`${url}/v1/completions`, { method: 'POST', body: JSON.stringify({
      prompt: promptOf(p), max_tokens: p.greedy.length, temperature: 0, ignore_eos: true, stream: true, return_token_ids: true }) });
    const ids = (await r.text()).split('\n\n').filter((e) => e.startsWith('data: {'))
      .flatMap((e) => JSON.parse(e.slice(6)).choices.flatMap((c) => c.token_ids ?? []));
    checkGreedy(ids, p, 'streamed');
  });
}

const prompts = Array.from({ length: 64 }, (_, i) =>
  ['The license', 'Permission is granted', 'You may', 'Café', 'serpent 🐍', 'Copyright', 'The work', 'Section'][i % 8] + ` ${i}`);

test('text: the server equals serpent generate', async () => {
  for (const prompt of prompts.slice(0, 6)) {
    const r = await post(base, { prompt, max_tokens: 20, temperature: 0, ignore_eos: true });
    const gen = execFileSync(process.env.SERPENT_BIN, ['generate', '--model', process.env.SERPENT_TEXT_MODEL,
      '--prompt', prompt, '--max-tokens', '20', '--temperature', '0', '--ignore-eos', '--backend', 'cpu', '--threads', '1'],
    { stdio: ['ignore', 'pipe', 'ignore'] });
    // generate ends its output with a newline of its own
    assert.deepEqual(Buffer.from(r.choices[0].text), gen.subarray(0, gen.length - 1), `prompt ${JSON.stringify(prompt)}`);
  }
});

test('64 concurrent requests give the texts they give one at a time', async () => {
  const body = (prompt) => ({ prompt, max_tokens: 16, temperature: 0, ignore_eos: true, return_token_ids: true });
  const seq = [];
  for (const p of prompts) seq.push((await post(base, body(p))).choices[0]);
  const conc = (await Promise.all(prompts.map((p) => post(base, body(p))))).map((r) => r.choices[0]);
  for (let i = 0; i < 64; i++) {
    assert.deepEqual(conc[i].token_ids, seq[i].token_ids, `prompt ${i}`);
    assert.equal(conc[i].text, seq[i].text);
  }
  // seeded sampling does not depend on the batch either
  const sb = (prompt) => ({ prompt, max_tokens: 16, temperature: 1, seed: 11, ignore_eos: true });
  const one = (await post(base, sb(prompts[3]))).choices[0].text;
  const all = await Promise.all(prompts.map((p) => post(base, sb(p))));
  assert.equal(all[3].choices[0].text, one);
});
