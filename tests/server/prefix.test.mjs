// The prefix cache over HTTP: SERPENT_URL serves the test text model with the cache,
// SERPENT_URL2 the same model with --no-prefix-cache. Every answer is the same on both (greedy
// and seeded, chat and completions, n > 1, streaming); the cached server reports in
// usage.prompt_tokens_details.cached_tokens what it restored (each chat turn: the previous
// turn's whole prompt), its /metrics count the cache's work, and /reset_prefix_cache gives back
// every snapshot and cached KV block.
import assert from 'node:assert/strict';
import test from 'node:test';
import OpenAI from 'openai';

const cached = process.env.SERPENT_URL, plain = process.env.SERPENT_URL2;
assert.ok(cached && plain, 'SERPENT_URL and SERPENT_URL2 must be set');
const client = (base) => new OpenAI({ baseURL: `${base}/v1`, apiKey: 'none', maxRetries: 0 });
const [c, p] = [client(cached), client(plain)];
const system = 'You are a careful assistant who answers in plain words and keeps to the point. '.repeat(2);

async function metrics(base) {
  const text = await fetch(`${base}/metrics`).then((r) => r.text());
  const get = (name, label = '') => {
    const m = text.match(new RegExp(`^serpent:${name}\\{${label}[^}]*\\} ([0-9.e+]+)$`, 'm'));
    assert.ok(m, `metric ${name} ${label}`);
    return Number(m[1]);
  };
  return {
    queries: get('prefix_cache_queries_total'), hits: get('prefix_cache_hits_total'),
    snapshotsUsed: get('prefix_cache_snapshots_used'), snapshotsTotal: get('prefix_cache_snapshots_total'),
    snapshotBytes: get('prefix_cache_snapshot_bytes'), taken: get('prefix_cache_snapshots_taken_total'),
    evictedSnapshots: get('prefix_cache_evictions_total', 'kind="snapshot",'),
    evictedBlocks: get('prefix_cache_evictions_total', 'kind="kv_block",'),
    blocksCached: get('kv_blocks_cached'), blocksUsed: get('kv_blocks_used'),
  };
}

async function conversation(client, seed) {
  const messages = [{ role: 'system', content: system }, { role: 'user', content: 'Tell me about the river.' }];
  const turns = [];
  for (let t = 0; t < 4; t++) {
    const r = await client.chat.completions.create({ model: 'text', messages, max_tokens: 10, ...(seed ? { temperature: 0.9, seed: seed + t } : { temperature: 0 }) });
    turns.push({ text: r.choices[0].message.content, usage: r.usage });
    messages.push({ role: 'assistant', content: r.choices[0].message.content });
    messages.push({ role: 'user', content: `And what came after part ${t}?` });
  }
  return turns;
}

for (const seed of [0, 31]) {
  test(`chat turns start from the previous turn's prompt (${seed ? 'seeded' : 'greedy'})`, async () => {
    const before = await metrics(cached);
    const [a, b] = [await conversation(c, seed), await conversation(p, seed)];
    for (let t = 0; t < 4; t++) {
      assert.equal(a[t].text, b[t].text, `turn ${t} differs with the cache`);
      assert.equal(a[t].usage.prompt_tokens, b[t].usage.prompt_tokens);
      assert.equal(b[t].usage.prompt_tokens_details.cached_tokens, 0);
    }
    // the first turn of the second conversation finds the first's system prompt; every later
    // turn finds the previous turn's whole prompt
    for (let t = 1; t < 4; t++)
      assert.equal(a[t].usage.prompt_tokens_details.cached_tokens, a[t - 1].usage.prompt_tokens, `turn ${t}`);
    const after = await metrics(cached);
    const hits = a.reduce((s, x) => s + x.usage.prompt_tokens_details.cached_tokens, 0);
    assert.equal(after.hits - before.hits, hits);
    assert.equal(after.queries - before.queries, a.reduce((s, x) => s + x.usage.prompt_tokens, 0));
  });
}

test('completions: a shared document, n > 1 and streaming give the same tokens', async () => {
  const doc = Array.from({ length: 300 }, (_, i) => 5 + ((i * 37) % 300));
  const ask = (q) => [...doc, ...Array.from({ length: 12 }, (_, i) => 5 + ((q * 13 + i * 7) % 300))];
  const req = (prompt, extra = {}) => ({ model: 'text', prompt, max_tokens: 8, return_token_ids: true, ...extra });
  const ids = (r) => r.choices.map((ch) => ch.token_ids ?? ch.text);
  for (let q = 0; q < 4; q++) {
    const extra = q % 2 ? { temperature: 0.8, seed: q, n: 3 } : { temperature: 0 };
    const [a, b] = await Promise.all([c.completions.create(req(ask(q), extra)), p.completions.create(req(ask(q), extra))]);
    assert.deepEqual(ids(a), ids(b), `question ${q}`);
    const k = a.usage.prompt_tokens_details.cached_tokens;
    // question 1 starts from question 0's last periodic snapshot (224: every 112 tokens on
    // this model) and takes one where it parts from question 0, after the document's last full
    // block (288); questions 2 and 3 start there
    assert.equal(k, [0, 224, 288, 288][q], `question ${q}: ${k} cached`);
  }
  const stream = await c.completions.create(req(ask(2), { temperature: 0, stream: true, stream_options: { include_usage: true } }));
  const chunks = [];
  for await (const ch of stream) chunks.push(ch);
  const whole = await p.completions.create(req(ask(2), { temperature: 0 }));
  assert.deepEqual(chunks.flatMap((ch) => ch.choices.flatMap((x) => x.token_ids ?? [])), whole.choices[0].token_ids);
  assert.equal(chunks.at(-1).usage.prompt_tokens_details.cached_tokens, 288);
});

test('the same long prompt at once (n = 4): the others wait for the first and start from it', async () => {
  const prompt = Array.from({ length: 120 }, (_, i) => 7 + ((i * 11) % 290));
  const req = { model: 'text', prompt, max_tokens: 6, temperature: 1, seed: 9, n: 4, return_token_ids: true };
  const before = await fetch(`${cached}/metrics`).then((r) => r.text());
  const [a, b] = await Promise.all([c.completions.create(req), p.completions.create(req)]);
  assert.deepEqual(a.choices.map((x) => x.token_ids), b.choices.map((x) => x.token_ids));
  const deferred = (t) => Number(t.match(/^serpent:prefix_cache_deferred_total\{[^}]*\} (\d+)/m)[1]);
  const after = await fetch(`${cached}/metrics`).then((r) => r.text());
  assert.ok(deferred(after) - deferred(before) >= 1, 'some choices waited for the first');
});

test('metrics, and /reset_prefix_cache gives everything back', async () => {
  const m = await metrics(cached);
  assert.ok(m.snapshotsTotal > 0 && m.snapshotsUsed > 0 && m.snapshotBytes > 0 && m.taken >= m.snapshotsUsed);
  assert.ok(m.blocksCached > 0);
  assert.equal(m.blocksUsed, 0, 'no request holds a block');
  const r = await fetch(`${cached}/reset_prefix_cache`, { method: 'POST' });
  assert.equal(r.status, 200);
  const z = await metrics(cached);
  assert.equal(z.snapshotsUsed, 0);
  assert.equal(z.blocksCached, 0);
  assert.equal((await fetch(`${cached}/reset_prefix_cache`)).status, 405);
  const off = await metrics(plain);
  assert.equal(off.snapshotsTotal, 0);
  assert.equal(off.hits, 0);
});
