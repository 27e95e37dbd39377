// Every bad request gets its status and an OpenAI error body, and disturbs nothing: a stream
// running through the whole table still produces the text it produces alone, and the server is
// healthy afterwards. SERPENT_URL: the text model with --api-key secret --max-model-len 64
// --max-request-mb 1; SERPENT_URL2: the model without a chat template, --max-num-seqs 1
// --max-queue 0, no key.
import assert from 'node:assert/strict';
import test from 'node:test';

const base = process.env.SERPENT_URL, base2 = process.env.SERPENT_URL2;
const auth = { Authorization: 'Bearer secret' };

async function call(method, path, body, headers = auth, url = base) {
  const init = { method, headers: { ...headers } };
  if (body !== undefined) init.body = typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body);
  const r = await fetch(url + path, init);
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* checked below */ }
  return { status: r.status, headers: r.headers, text, json };
}

function checkError(r, status, { param, code } = {}) {
  assert.equal(r.status, status, `status of ${r.text}`);
  assert.ok(r.json, `a JSON body: ${r.text}`);
  assert.deepEqual(Object.keys(r.json), ['error']);
  const e = r.json.error;
  assert.deepEqual(Object.keys(e).sort(), ['code', 'message', 'param', 'type']);
  assert.equal(typeof e.message, 'string');
  assert.ok(e.message.length > 0);
  assert.equal(typeof e.type, 'string');
  const type = status === 401 ? 'authentication_error' : status === 429 ? 'rate_limit_error' : status >= 500 ? 'server_error' : 'invalid_request_error';
  assert.equal(e.type, type, `type of ${r.text}`);
  assert.ok(e.param === null || typeof e.param === 'string');
  assert.ok(e.code === null || typeof e.code === 'string');
  if (param !== undefined) assert.equal(e.param, param, `param of ${r.text}`);
  if (code !== undefined) assert.equal(e.code, code, `code of ${r.text}`);
}

const C = '/v1/completions', CHAT = '/v1/chat/completions';
const ok = { prompt: 'Hello', max_tokens: 2 };
const deep = '['.repeat(5000) + ']'.repeat(5000);
const big = new Uint8Array(2 * 1024 * 1024).fill(32);
const badUtf8 = Buffer.concat([Buffer.from('{"prompt": "ab'), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('", "max_tokens": 2}')]);
const longPrompt = Array.from({ length: 70 }, () => 5);

// [name, method, path, body, headers, status, {param, code}]
const table = [
  ['no API key', 'POST', C, ok, {}, 401, { code: 'invalid_api_key' }],
  ['wrong API key', 'POST', C, ok, { Authorization: 'Bearer nope' }, 401, { code: 'invalid_api_key' }],
  ['unknown route', 'GET', '/v2/things', undefined, auth, 404, { code: 'not_found' }],
  ['wrong method', 'GET', C, undefined, auth, 405, { code: 'method_not_allowed' }],
  ['wrong method on models', 'POST', '/v1/models', {}, auth, 405, {}],
  ['malformed JSON', 'POST', C, '{"prompt": "a",', auth, 400, { param: null }],
  ['not an object', 'POST', C, '[1, 2]', auth, 400, {}],
  ['empty body', 'POST', C, '', auth, 400, {}],
  ['invalid UTF-8', 'POST', C, badUtf8, auth, 400, {}],
  ['trailing garbage', 'POST', C, '{"prompt": "a"} x', auth, 400, {}],
  ['nesting too deep', 'POST', C, deep, auth, 400, {}],
  ['body too large', 'POST', C, big, auth, 413, { code: 'request_too_large' }],
  ['unknown model', 'POST', C, { ...ok, model: 'gpt-9' }, auth, 404, { param: 'model', code: 'model_not_found' }],
  ['model not a string', 'POST', C, { ...ok, model: 3 }, auth, 400, { param: 'model' }],
  ['prompt missing', 'POST', C, { max_tokens: 2 }, auth, 400, { param: 'prompt' }],
  ['prompt a number', 'POST', C, { prompt: 5 }, auth, 400, { param: 'prompt' }],
  ['prompt empty list', 'POST', C, { prompt: [] }, auth, 400, { param: 'prompt' }],
  ['prompt mixed list', 'POST', C, { prompt: ['a', 1] }, auth, 400, { param: 'prompt' }],
  ['token id past the vocabulary', 'POST', C, { prompt: [1, 99999] }, auth, 400, { param: 'prompt' }],
  ['negative token id', 'POST', C, { prompt: [-1] }, auth, 400, { param: 'prompt' }],
  ['fractional token id', 'POST', C, { prompt: [1.5] }, auth, 400, { param: 'prompt' }],
  ['token id list of lists out of range', 'POST', C, { prompt: [[1, 2], [400]] }, auth, 400, { param: 'prompt' }],
  ['max_tokens a string', 'POST', C, { prompt: 'a', max_tokens: '10' }, auth, 400, { param: 'max_tokens' }],
  ['max_tokens negative', 'POST', C, { prompt: 'a', max_tokens: -1 }, auth, 400, { param: 'max_tokens' }],
  ['max_tokens huge', 'POST', C, { prompt: 'a', max_tokens: 1e300 }, auth, 400, { param: 'max_tokens' }],
  ['prompt + max_tokens over max-model-len', 'POST', C, { prompt: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], max_tokens: 60 }, auth, 400, { param: 'max_tokens' }],
  ['prompt over max-model-len', 'POST', C, { prompt: longPrompt, max_tokens: 1 }, auth, 400, { param: 'prompt' }],
  ['temperature too high', 'POST', C, { prompt: 'a', temperature: 5 }, auth, 400, { param: 'temperature' }],
  ['temperature a string', 'POST', C, { prompt: 'a', temperature: 'hot' }, auth, 400, { param: 'temperature' }],
  ['top_p zero', 'POST', C, { prompt: 'a', top_p: 0 }, auth, 400, { param: 'top_p' }],
  ['top_p above one', 'POST', C, { prompt: 'a', top_p: 1.5 }, auth, 400, { param: 'top_p' }],
  ['top_k below -1', 'POST', C, { prompt: 'a', top_k: -5 }, auth, 400, { param: 'top_k' }],
  ['min_p above one', 'POST', C, { prompt: 'a', min_p: 2 }, auth, 400, { param: 'min_p' }],
  ['n zero', 'POST', C, { prompt: 'a', n: 0 }, auth, 400, { param: 'n' }],
  ['n too large', 'POST', C, { prompt: 'a', n: 1000 }, auth, 400, { param: 'n' }],
  ['logprobs too many', 'POST', C, { prompt: 'a', logprobs: 50 }, auth, 400, { param: 'logprobs' }],
  ['logprobs a bool on completions', 'POST', C, { prompt: 'a', logprobs: true }, auth, 400, { param: 'logprobs' }],
  ['echo not a bool', 'POST', C, { prompt: 'a', echo: 1 }, auth, 400, { param: 'echo' }],
  ['stop a number', 'POST', C, { prompt: 'a', stop: 5 }, auth, 400, { param: 'stop' }],
  ['stop empty string', 'POST', C, { prompt: 'a', stop: [''] }, auth, 400, { param: 'stop' }],
  ['too many stops', 'POST', C, { prompt: 'a', stop: Array.from({ length: 20 }, (_, i) => `s${i}`) }, auth, 400, { param: 'stop' }],
  ['presence_penalty out of range', 'POST', C, { prompt: 'a', presence_penalty: 3 }, auth, 400, { param: 'presence_penalty' }],
  ['frequency_penalty out of range', 'POST', C, { prompt: 'a', frequency_penalty: -3 }, auth, 400, { param: 'frequency_penalty' }],
  ['repetition_penalty zero', 'POST', C, { prompt: 'a', repetition_penalty: 0 }, auth, 400, { param: 'repetition_penalty' }],
  ['logit_bias key not an id', 'POST', C, { prompt: 'a', logit_bias: { abc: 1 } }, auth, 400, { param: 'logit_bias' }],
  ['logit_bias id past the vocabulary', 'POST', C, { prompt: 'a', logit_bias: { 99999: 1 } }, auth, 400, { param: 'logit_bias' }],
  ['logit_bias value out of range', 'POST', C, { prompt: 'a', logit_bias: { 5: 500 } }, auth, 400, { param: 'logit_bias' }],
  ['logit_bias not an object', 'POST', C, { prompt: 'a', logit_bias: [1] }, auth, 400, { param: 'logit_bias' }],
  ['seed not an integer', 'POST', C, { prompt: 'a', seed: 'x' }, auth, 400, { param: 'seed' }],
  ['stream not a bool', 'POST', C, { prompt: 'a', stream: 'yes' }, auth, 400, { param: 'stream' }],
  ['stream_options without stream', 'POST', C, { prompt: 'a', stream_options: { include_usage: true } }, auth, 400, { param: 'stream_options' }],
  ['ignore_eos not a bool', 'POST', C, { prompt: 'a', ignore_eos: 'no' }, auth, 400, { param: 'ignore_eos' }],
  ['user not a string', 'POST', C, { prompt: 'a', user: 5 }, auth, 400, { param: 'user' }],
  ['messages missing', 'POST', CHAT, { max_tokens: 2 }, auth, 400, { param: 'messages' }],
  ['messages empty', 'POST', CHAT, { messages: [] }, auth, 400, { param: 'messages' }],
  ['messages not a list', 'POST', CHAT, { messages: 'hi' }, auth, 400, { param: 'messages' }],
  ['message with unknown role', 'POST', CHAT, { messages: [{ role: 'wizard', content: 'a' }] }, auth, 400, { param: 'messages[0]' }],
  ['message content a number', 'POST', CHAT, { messages: [{ role: 'user', content: 5 }] }, auth, 400, { param: 'messages[0]' }],
  ['message content part not text', 'POST', CHAT, { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }, auth, 400, { param: 'messages[0]' }],
  ['top_logprobs without logprobs', 'POST', CHAT, { messages: [{ role: 'user', content: 'a' }], top_logprobs: 2 }, auth, 400, { param: 'top_logprobs' }],
  ['chat logprobs not a bool', 'POST', CHAT, { messages: [{ role: 'user', content: 'a' }], logprobs: 3 }, auth, 400, { param: 'logprobs' }],
  ['chat max_completion_tokens over the length', 'POST', CHAT, { messages: [{ role: 'user', content: 'a' }], max_completion_tokens: 1000 }, auth, 400, { param: 'max_completion_tokens', code: 'context_length_exceeded' }],
  ['tokenize without prompt', 'POST', '/tokenize', { text: 'a' }, auth, 400, { param: 'prompt' }],
  ['detokenize ids out of range', 'POST', '/detokenize', { tokens: [99999] }, auth, 400, { param: 'tokens' }],
  ['detokenize not ids', 'POST', '/detokenize', { tokens: ['a'] }, auth, 400, { param: 'tokens' }],
];

// A stream that runs through the whole table.
async function streamText(signal) {
  const r = await fetch(base + C, {
    method: 'POST', headers: auth, signal,
    body: JSON.stringify({ prompt: 'The license says that', max_tokens: 40, temperature: 0, ignore_eos: true, stream: true }),
  });
  assert.equal(r.status, 200);
  let text = '', buf = '', done = false;
  const dec = new TextDecoder();
  for await (const part of r.body) {
    buf += dec.decode(part, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, i);
      buf = buf.slice(i + 2);
      assert.ok(ev.startsWith('data: '), ev);
      if (ev === 'data: [DONE]') { done = true; continue; }
      text += JSON.parse(ev.slice(6)).choices[0]?.text ?? '';
    }
  }
  assert.ok(done, 'the stream ends with [DONE]');
  return text;
}

test('the bad-input table, with a stream running alongside', async () => {
  const alone = await streamText();
  const running = streamText();
  for (const [name, method, path, body, headers, status, want] of table) {
    const r = await call(method, path, body, headers);
    try {
      checkError(r, status, want);
    } catch (err) {
      err.message = `${name}: ${err.message}`;
      throw err;
    }
    if (status === 405) assert.ok(r.headers.get('allow'), `${name}: an Allow header`);
  }
  assert.equal(await running, alone, 'the concurrent stream is undisturbed');
});

test('unknown fields are ignored, and the server is healthy afterwards', async () => {
  const r = await call('POST', C, { prompt: 'Hello', max_tokens: 2, frobnicate: { x: 1 } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.choices[0].finish_reason.length > 0, true);
  const h = await call('GET', '/health', undefined, {});
  assert.equal(h.status, 200);
  const m = await call('GET', '/v1/models');
  assert.equal(m.status, 200);
  const metrics = await fetch(base + '/metrics').then((x) => x.text());
  assert.match(metrics, /serpent:num_requests_running\{model_name="[^"]*"\} 0\n/);
  assert.match(metrics, /serpent:state_slots_used\{model_name="[^"]*"\} 0\n/);
  assert.match(metrics, /serpent:kv_blocks_used\{model_name="[^"]*"\} 0\n/);
});

test('no chat template: a clear 400', async () => {
  const r = await call('POST', CHAT, { messages: [{ role: 'user', content: 'a' }] }, {}, base2);
  checkError(r, 400, {});
  assert.match(r.json.error.message, /chat template/);
});

test('queue full: 429 with Retry-After; the cancelled holder frees its slot', async () => {
  const ac = new AbortController();
  const holder = await fetch(base2 + C, {
    method: 'POST', signal: ac.signal,
    body: JSON.stringify({ prompt: 'Hello', max_tokens: 3000, ignore_eos: true, stream: true }),
  });
  const reader = holder.body.getReader();
  await reader.read(); // the first chunk: the request holds the only slot
  const r = await call('POST', C, { prompt: 'Hi', max_tokens: 2 }, {}, base2);
  checkError(r, 429, { code: 'rate_limit_exceeded' });
  assert.ok(r.headers.get('retry-after'));
  ac.abort();
  await reader.cancel().catch(() => {});
  // the slot comes back: a later request gets through
  let status = 0;
  for (let i = 0; i < 200 && status !== 200; i++) {
    status = (await call('POST', C, { prompt: 'Hi', max_tokens: 2 }, {}, base2)).status;
    if (status !== 200) await new Promise((res) => setTimeout(res, 50));
  }
  assert.equal(status, 200);
  const metrics = await fetch(base2 + '/metrics').then((x) => x.text());
  assert.match(metrics, /serpent:state_slots_used\{model_name="[^"]*"\} 0\n/);
  assert.match(metrics, /serpent:request_finished_total\{finished_reason="abort",model_name="[^"]*"\} 1\n/);
});
