// Load: 256 concurrent streaming clients, a quarter of them disconnecting (half of those
// mid-stream, half within milliseconds of sending, mostly mid-prefill), three rounds. Some
// clients share a long prompt prefix, so the prefix cache snapshots, restores, defers requests
// that arrive together and evicts under load. Every request must complete ([DONE] after a
// finish_reason) or be cancelled by its client; after each round no slot or KV block is held by
// a request (read from /metrics), and after the last round /reset_prefix_cache gives back every
// cached block and snapshot; the server's resident memory stays flat from round to round.
// Prints the figures.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import test from 'node:test';

const base = process.env.SERPENT_URL, pid = process.env.SERPENT_URL_PID;
const CLIENTS = 256, ROUNDS = 3;

function rssKiB() {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const get = (k) => Number(s.match(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm'))[1]);
  return { rss: get('VmRSS'), hwm: get('VmHWM') };
}

async function metrics() {
  const text = await fetch(`${base}/metrics`).then((r) => r.text());
  const get = (name, label = '') => {
    const m = text.match(new RegExp(`^serpent:${name}\\{${label}[^}]*\\} ([0-9.e+]+)$`, 'm'));
    assert.ok(m, `metric ${name} ${label}`);
    return Number(m[1]);
  };
  return {
    running: get('num_requests_running'), waiting: get('num_requests_waiting'),
    slotsUsed: get('state_slots_used'), slotsTotal: get('state_slots_total'),
    blocksUsed: get('kv_blocks_used'), blocksTotal: get('kv_blocks_total'),
    blocksCached: get('kv_blocks_cached'), hits: get('prefix_cache_hits_total'),
    snapshotsUsed: get('prefix_cache_snapshots_used'), snapshotsTotal: get('prefix_cache_snapshots_total'),
    aborted: get('request_finished_total', 'finished_reason="abort",'),
    finished: get('request_finished_total', 'finished_reason="length",') + get('request_finished_total', 'finished_reason="stop",'),
  };
}

// About 125 tokens of the test model's tokenizer that begin the prompts of 3 clients in 8 (a
// third of them among those that disconnect early).
const SHARED = 'The rules of the house are these: keep the door shut, feed the cat at noon. '.repeat(2);
const shares = (i) => i % 4 === 1 || i % 8 === 7;

// One client: streams, and when disconnectAfter > 0 drops the connection after that many
// chunks (or, when it is below 1, that many tenths of 20 ms after the response began: the
// request was submitted, and is waiting or in its prefill).
async function client(i, disconnectAfter) {
  const ac = new AbortController();
  const r = await fetch(`${base}/v1/completions`, {
    method: 'POST', signal: ac.signal,
    body: JSON.stringify({ prompt: `${shares(i) ? SHARED : ''}Client ${i} says`, max_tokens: 48, temperature: 0.8, seed: i, stream: true, return_token_ids: true,
      ignore_eos: disconnectAfter > 0 || i % 2 === 0 }),
  });
  assert.equal(r.status, 200);
  if (disconnectAfter > 0 && disconnectAfter < 1) setTimeout(() => ac.abort(), disconnectAfter * 20);
  const dec = new TextDecoder();
  let buf = '', chunks = 0, finish = null, done = false;
  try {
    for await (const part of r.body) {
      buf += dec.decode(part, { stream: true });
      let k;
      while ((k = buf.indexOf('\n\n')) >= 0) {
        const ev = buf.slice(0, k);
        buf = buf.slice(k + 2);
        if (ev === 'data: [DONE]') { done = true; continue; }
        const j = JSON.parse(ev.slice(6));
        assert.ok(!j.error, `stream error: ${ev}`);
        chunks++;
        finish = j.choices[0]?.finish_reason ?? finish;
      }
      if (disconnectAfter && chunks >= disconnectAfter) {
        ac.abort();
        return { cancelled: true };
      }
    }
  } catch (e) {
    if (e.name === 'AbortError' && disconnectAfter) return { cancelled: true };
    throw e;
  }
  assert.ok(done, `client ${i}: no [DONE]`);
  assert.ok(finish === 'length' || finish === 'stop', `client ${i}: finish ${finish}`);
  return { cancelled: false };
}

async function waitIdle() {
  for (let t = 0; t < 600; t++) {
    const m = await metrics();
    if (m.running === 0 && m.waiting === 0) return m;
    await new Promise((r) => setTimeout(r, 50));
  }
  return metrics();
}

test('256 streaming clients, a quarter disconnecting, three rounds', async () => {
  const figures = [];
  for (let round = 0; round < ROUNDS; round++) {
    const before = await metrics();
    let peakRunning = 0, peakRss = 0, sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const m = await metrics().catch(() => null);
        if (m) peakRunning = Math.max(peakRunning, m.running);
        peakRss = Math.max(peakRss, rssKiB().rss);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const results = await Promise.all(Array.from({ length: CLIENTS }, (_, i) =>
      client(round * 1000 + i, i % 4 !== 3 ? 0 : i % 8 === 7 ? (i % 9 + 1) / 10 : 2 + (i % 7))));
    sampling = false;
    await sampler;
    const m = await waitIdle();
    const cancelled = results.filter((r) => r.cancelled).length;
    const completed = results.length - cancelled;
    assert.equal(cancelled, CLIENTS / 4);
    assert.equal(m.running, 0);
    assert.equal(m.waiting, 0);
    assert.equal(m.slotsUsed, 0, 'all state slots free');
    assert.equal(m.blocksUsed, 0, 'no KV block held by a request');
    assert.ok(m.blocksCached <= m.blocksTotal && m.snapshotsUsed <= m.snapshotsTotal);
    // every request is accounted for: finished normally or aborted by its disconnect
    const fin = m.finished - before.finished, ab = m.aborted - before.aborted;
    assert.equal(fin + ab, CLIENTS);
    assert.ok(fin >= completed && ab <= cancelled);
    const mem = rssKiB();
    figures.push({ round: round + 1, requests: CLIENTS, completed, disconnected: cancelled, aborted_in_engine: ab,
      peak_running: peakRunning, slots_free: `${m.slotsTotal - m.slotsUsed}/${m.slotsTotal}`,
      kv_blocks_free: `${m.blocksTotal - m.blocksUsed}/${m.blocksTotal}`, kv_blocks_cached: m.blocksCached,
      snapshots: `${m.snapshotsUsed}/${m.snapshotsTotal}`, prefix_hit_tokens: m.hits - before.hits,
      peak_rss_mib: +(Math.max(peakRss, mem.rss) / 1024).toFixed(1), final_rss_mib: +(mem.rss / 1024).toFixed(1) });
  }
  // the cache gives back everything it holds: nothing leaked to it either
  assert.equal((await fetch(`${base}/reset_prefix_cache`, { method: 'POST' })).status, 200);
  const z = await metrics();
  assert.equal(z.blocksCached, 0, 'no cached KV block after a reset');
  assert.equal(z.snapshotsUsed, 0, 'no snapshot after a reset');
  assert.equal(z.blocksUsed, 0);
  assert.ok(figures.some((f) => f.prefix_hit_tokens > 0), 'the shared prefix was restored from the cache');
  console.log('LOAD FIGURES ' + JSON.stringify(figures));
  for (const f of figures) console.log(`round ${f.round}: ${JSON.stringify(f)}`);
  // flat memory: the last round ends no more than 8 MiB + 5% above the first
  const first = figures[0].final_rss_mib, last = figures.at(-1).final_rss_mib;
  assert.ok(last <= first * 1.05 + 8, `resident memory grew from ${first} MiB to ${last} MiB`);
});
