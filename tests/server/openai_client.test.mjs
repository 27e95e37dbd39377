// The official openai client against serpent serve: completions, chat, streaming, n > 1,
// logprobs, stop strings, echo, seeds. SERPENT_URL is a server of the test text model
// (tests/server/model) with its chat template.
import assert from 'node:assert/strict';
import test from 'node:test';
import OpenAI from 'openai';

const base = process.env.SERPENT_URL;
assert.ok(base, 'SERPENT_URL must be set');
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: process.env.SERPENT_API_KEY || 'none', maxRetries: 0 });
const models = await client.models.list();
const model = models.data[0].id;
const prompt = 'The license says that';

async function greedy(extra = {}) {
  return client.completions.create({ model, prompt, max_tokens: 24, temperature: 0, ignore_eos: true, ...extra });
}

async function collectStream(stream) {
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  return chunks;
}

test('models lists the served model', () => {
  assert.equal(models.data.length, 1);
  assert.equal(models.data[0].object, 'model');
});

test('completion: schema, length finish and usage', async () => {
  const r = await greedy();
  assert.equal(r.object, 'text_completion');
  assert.match(r.id, /^cmpl-/);
  assert.equal(r.model, model);
  assert.equal(r.choices.length, 1);
  const c = r.choices[0];
  assert.equal(c.index, 0);
  assert.equal(typeof c.text, 'string');
  assert.ok(c.text.length > 0, 'some text');
  assert.equal(c.finish_reason, 'length');
  assert.equal(c.logprobs, null);
  assert.equal(r.usage.completion_tokens, 24);
  assert.ok(r.usage.prompt_tokens > 1);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + 24);
  const again = await greedy();
  assert.equal(again.choices[0].text, c.text, 'greedy decoding repeats');
});

test('completion: n > 1 with a seed gives n distinct, repeatable choices', async () => {
  const req = { model, prompt, max_tokens: 16, temperature: 1.0, n: 3, seed: 1234, ignore_eos: true };
  const a = await client.completions.create(req);
  const b = await client.completions.create(req);
  assert.deepEqual(a.choices.map((c) => c.index), [0, 1, 2]);
  assert.deepEqual(a.choices.map((c) => c.text), b.choices.map((c) => c.text));
  assert.ok(new Set(a.choices.map((c) => c.text)).size > 1, 'the choices differ');
  assert.equal(a.usage.completion_tokens, 48);
  const other = await client.completions.create({ ...req, seed: 99 });
  assert.notDeepEqual(other.choices.map((c) => c.text), a.choices.map((c) => c.text));
});

test('completion: several prompts, token-id prompts', async () => {
  const r = await client.completions.create({ model, prompt: ['One', 'Two words'], max_tokens: 4, temperature: 0, n: 2, ignore_eos: true });
  assert.deepEqual(r.choices.map((c) => c.index), [0, 1, 2, 3]);
  assert.equal(r.choices[0].text, r.choices[1].text); // greedy: the n copies agree
  const ids = await fetch(`${base}/tokenize`, { method: 'POST', body: JSON.stringify({ prompt }) }).then((x) => x.json());
  const byIds = await greedy({ prompt: ids.tokens });
  assert.equal(byIds.choices[0].text, (await greedy()).choices[0].text);
});

test('completion: logprobs', async () => {
  const r = await greedy({ logprobs: 2, max_tokens: 8 });
  const lp = r.choices[0].logprobs;
  assert.equal(lp.tokens.length, 8);
  assert.equal(lp.token_logprobs.length, 8);
  assert.equal(lp.top_logprobs.length, 8);
  assert.equal(lp.text_offset.length, 8);
  for (let i = 0; i < 8; i++) {
    assert.ok(lp.token_logprobs[i] <= 0, 'a log-probability');
    const top = Object.values(lp.top_logprobs[i]);
    assert.ok(top.length >= 1 && top.length <= 3);
    // greedy picks the most likely token: its logprob is the top one
    assert.ok(Math.abs(Math.max(...top) - lp.token_logprobs[i]) < 1e-5);
  }
  assert.ok(lp.text_offset.every((o, i) => i === 0 || o >= lp.text_offset[i - 1]));
});

test('completion: echo returns the prompt and its logprobs', async () => {
  const r = await greedy({ echo: true, logprobs: 1, max_tokens: 4 });
  const c = r.choices[0];
  assert.ok(c.text.startsWith(prompt), `echoed text: ${JSON.stringify(c.text)}`);
  const n = r.usage.prompt_tokens;
  assert.equal(c.logprobs.tokens.length, n + 4);
  assert.equal(c.logprobs.token_logprobs[0], null);
  assert.ok(c.logprobs.token_logprobs.slice(1).every((x) => x <= 0));
});

test('completion: stop strings end the text and are not returned', async () => {
  const full = (await greedy()).choices[0].text;
  // a stop string from the middle of the greedy text
  const from = Math.floor(full.length / 2);
  const stop = full.slice(from, from + 2);
  const at = full.indexOf(stop);
  const r = await greedy({ stop: [stop, 'never-appears-xyz'] });
  assert.equal(r.choices[0].text, full.slice(0, at));
  assert.equal(r.choices[0].finish_reason, 'stop');
  const chunks = await collectStream(await client.completions.create({
    model, prompt, max_tokens: 24, temperature: 0, ignore_eos: true, stop, stream: true }));
  assert.equal(chunks.map((c) => c.choices[0]?.text ?? '').join(''), full.slice(0, at), 'no part of the stop string leaks');
  assert.equal(chunks.at(-1).choices[0].finish_reason, 'stop');
});

test('completion: streaming equals the plain response, usage at the end', async () => {
  const full = await greedy();
  const stream = await client.completions.create({
    model, prompt, max_tokens: 24, temperature: 0, ignore_eos: true, stream: true, stream_options: { include_usage: true } });
  const chunks = await collectStream(stream);
  assert.ok(chunks.length > 3, 'more than one chunk');
  const withChoices = chunks.filter((c) => c.choices.length > 0);
  assert.equal(withChoices.map((c) => c.choices[0].text).join(''), full.choices[0].text);
  assert.equal(withChoices.at(-1).choices[0].finish_reason, 'length');
  assert.ok(withChoices.slice(0, -1).every((c) => c.choices[0].finish_reason === null));
  const last = chunks.at(-1);
  assert.equal(last.choices.length, 0);
  assert.deepEqual(last.usage, full.usage);
  assert.ok(chunks.every((c) => c.id === chunks[0].id && c.object === 'text_completion'));
});

test('completion: streaming n > 1 keeps choices apart', async () => {
  const req = { model, prompt, max_tokens: 12, temperature: 0.9, n: 2, seed: 5, ignore_eos: true };
  const plain = await client.completions.create(req);
  const chunks = await collectStream(await client.completions.create({ ...req, stream: true }));
  for (const i of [0, 1]) {
    const text = chunks.flatMap((c) => c.choices).filter((c) => c.index === i).map((c) => c.text).join('');
    assert.equal(text, plain.choices[i].text);
  }
});

test('chat: schema, template and usage', async () => {
  const messages = [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Say something.' }];
  const r = await client.chat.completions.create({ model, messages, max_tokens: 20, temperature: 0, ignore_eos: true });
  assert.equal(r.object, 'chat.completion');
  assert.match(r.id, /^chatcmpl-/);
  const c = r.choices[0];
  assert.equal(c.message.role, 'assistant');
  assert.equal(typeof c.message.content, 'string');
  assert.equal(c.finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 20);
  // the prompt is the rendered template, encoded without extra special tokens
  const rendered = '<s><|system|>\nYou are terse.\n<|user|>\nSay something.\n<|assistant|>\n';
  const ids = await fetch(`${base}/tokenize`, { method: 'POST', body: JSON.stringify({ prompt: rendered, add_special_tokens: false }) }).then((x) => x.json());
  assert.equal(r.usage.prompt_tokens, ids.count);
  const viaCompletion = await client.completions.create({ model, prompt: ids.tokens, max_tokens: 20, temperature: 0, ignore_eos: true });
  assert.equal(c.message.content, viaCompletion.choices[0].text);
  // streaming: role first, then content deltas adding up to the same text
  const chunks = await collectStream(await client.chat.completions.create({
    model, messages, max_tokens: 20, temperature: 0, ignore_eos: true, stream: true, stream_options: { include_usage: true } }));
  assert.equal(chunks[0].choices[0].delta.role, 'assistant');
  assert.ok(chunks.every((x) => x.object === 'chat.completion.chunk'));
  const text = chunks.filter((x) => x.choices.length).map((x) => x.choices[0].delta.content ?? '').join('');
  assert.equal(text, c.message.content);
  assert.equal(chunks.at(-1).usage.completion_tokens, 20);
});

test('chat: logprobs, n, stop', async () => {
  const messages = [{ role: 'user', content: [{ type: 'text', text: 'Hello' }, { type: 'text', text: 'there' }] }];
  const r = await client.chat.completions.create({ model, messages, max_tokens: 6, temperature: 0, ignore_eos: true, logprobs: true, top_logprobs: 2, n: 2 });
  assert.equal(r.choices.length, 2);
  const lp = r.choices[0].logprobs.content;
  assert.equal(lp.length, 6);
  for (const t of lp) {
    assert.ok(t.logprob <= 0);
    assert.equal(t.top_logprobs.length, 2);
    assert.deepEqual(t.bytes, [...Buffer.from(t.token, 'utf8')]);
    assert.ok(Math.abs(t.top_logprobs[0].logprob - t.logprob) < 1e-5);
  }
  const full = r.choices[0].message.content;
  const stop = full.slice(2, 4);
  if (stop.length === 2) {
    const s = await client.chat.completions.create({ model, messages, max_tokens: 6, temperature: 0, ignore_eos: true, stop });
    assert.equal(s.choices[0].message.content, full.slice(0, full.indexOf(stop)));
    assert.equal(s.choices[0].finish_reason, 'stop');
  }
});

test('sampling parameters are accepted and change the output', async () => {
  const base0 = (await greedy({ max_tokens: 12 })).choices[0].text;
  const biased = await greedy({ max_tokens: 12, logit_bias: { 100: 100 } });
  const ids = await fetch(`${base}/tokenize`, { method: 'POST', body: JSON.stringify({ prompt: biased.choices[0].text, add_special_tokens: false }) }).then((x) => x.json());
  assert.notEqual(biased.choices[0].text, base0);
  assert.ok(ids.tokens.length > 0);
  const pen = await greedy({ max_tokens: 12, frequency_penalty: 2.0, presence_penalty: 2.0, repetition_penalty: 1.5 });
  assert.equal(pen.choices[0].finish_reason, 'length');
  const r = await client.completions.create({ model, prompt, max_tokens: 12, temperature: 0.7, top_p: 0.9, top_k: 20, min_p: 0.05, seed: 3, user: 'me' });
  assert.equal(r.choices.length, 1);
});
