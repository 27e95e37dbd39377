// The shipped model (models/serpent-tiny: ChatML, <|im_end|> = 4 ends a turn, named only by
// generation_config.json) through three real clients: the official openai client, LangChain's
// @langchain/openai and the Vercel AI SDK. A chat reply must end at the end-of-turn token with
// finish_reason "stop" and hold no special-token text; vLLM's extras, the 400s for what serpent
// does not implement, logprob offsets, streamed echo, CORS and models.retrieve.
// SERPENT_URL: serpent serve --model models/serpent-tiny.
import assert from 'node:assert/strict';
import test from 'node:test';
import OpenAI from 'openai';
import { ChatOpenAI } from '@langchain/openai';
import { generateText, streamText } from 'ai';
import { createOpenAI } from '@ai-sdk/openai';

const base = process.env.SERPENT_URL;
assert.ok(base, 'SERPENT_URL must be set');
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'none', maxRetries: 0 });
const model = (await client.models.list()).data[0].id;

// A conversation the model answers (greedily) in a few dozen tokens and then ends its turn.
const system = 'You are a dictionary. Answer briefly.';
const question = 'Tell me what cynic means.';
const messages = [{ role: 'system', content: system }, { role: 'user', content: question }];
const special = /<\|im_start\|>|<\|im_end\|>|<s>|<\/s>|<unk>/;

async function collect(stream) {
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  return chunks;
}

async function post(path, body, headers = {}) {
  const r = await fetch(base + path, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body: JSON.stringify(body) });
  return { status: r.status, headers: r.headers, json: await r.json() };
}

const reference = await client.chat.completions.create({ model, messages, temperature: 0, max_tokens: 300 });
const answer = reference.choices[0].message.content;

test('openai: the chat reply ends at <|im_end|>, finish_reason stop, no special-token text', async () => {
  const c = reference.choices[0];
  assert.equal(c.finish_reason, 'stop');
  assert.ok(answer.length > 0);
  assert.doesNotMatch(answer, special);
  assert.ok(reference.usage.completion_tokens < 300, 'ended before max_tokens');
  // the end-of-turn token is the last one drawn: it is counted, and it is <|im_end|> (4)
  const ids = await client.chat.completions.create({ model, messages, temperature: 0, max_tokens: 300, return_token_ids: true });
  assert.equal(ids.choices[0].token_ids.at(-1), 4);
  assert.equal(ids.choices[0].token_ids.length, reference.usage.completion_tokens);
  // without max_tokens the reply still ends at the end of the turn
  const open = await client.chat.completions.create({ model, messages, temperature: 0 });
  assert.equal(open.choices[0].message.content, answer);
  assert.equal(open.choices[0].finish_reason, 'stop');
  // streamed: the same text, the same finish
  const chunks = await collect(await client.chat.completions.create({ model, messages, temperature: 0, stream: true, stream_options: { include_usage: true } }));
  const text = chunks.filter((x) => x.choices.length).map((x) => x.choices[0].delta.content ?? '').join('');
  assert.equal(text, answer);
  assert.equal(chunks.filter((x) => x.choices.length).at(-1).choices[0].finish_reason, 'stop');
  assert.deepEqual(chunks.at(-1).usage, reference.usage);
});

test('langchain: invoke and stream end at the end of the turn', async () => {
  const llm = new ChatOpenAI({ model, apiKey: 'none', temperature: 0, maxRetries: 0, configuration: { baseURL: `${base}/v1` } });
  const lcMessages = [['system', system], ['human', question]];
  const r = await llm.invoke(lcMessages);
  assert.equal(r.content, answer);
  assert.equal(r.response_metadata.finish_reason, 'stop');
  assert.doesNotMatch(r.content, special);
  let streamed = '';
  for await (const chunk of await llm.stream(lcMessages)) streamed += chunk.content;
  assert.equal(streamed, answer);
});

test('ai sdk: generateText and streamText end at the end of the turn', async () => {
  const provider = createOpenAI({ baseURL: `${base}/v1`, apiKey: 'none' });
  const r = await generateText({ model: provider.chat(model), system, prompt: question, temperature: 0, maxRetries: 0 });
  assert.equal(r.text, answer);
  assert.equal(r.finishReason, 'stop');
  assert.doesNotMatch(r.text, special);
  assert.equal(r.usage.outputTokens, reference.usage.completion_tokens);
  const s = streamText({ model: provider.chat(model), system, prompt: question, temperature: 0, maxRetries: 0 });
  let streamed = '';
  for await (const t of s.textStream) streamed += t;
  assert.equal(streamed, answer);
  assert.equal(await s.finishReason, 'stop');
});

test('skip_special_tokens: false shows special tokens; include_stop_str_in_output shows the end', async () => {
  const showReq = { model, messages, temperature: 0, max_tokens: 300, skip_special_tokens: false, include_stop_str_in_output: true };
  const shown = await client.chat.completions.create(showReq);
  // spaces_between_special_tokens (true by default, as vLLM) sets a special token apart
  assert.equal(shown.choices[0].message.content, answer + ' <|im_end|>');
  assert.equal(shown.choices[0].finish_reason, 'stop');
  const tight = await client.chat.completions.create({ ...showReq, spaces_between_special_tokens: false });
  assert.equal(tight.choices[0].message.content, answer + '<|im_end|>');
  // past the end of the turn (ignore_eos) the model goes on with a new turn: hidden by
  // default, shown with skip_special_tokens: false
  const on = { model, messages, temperature: 0, max_tokens: reference.usage.completion_tokens + 6, ignore_eos: true };
  const hidden = await client.chat.completions.create(on);
  assert.doesNotMatch(hidden.choices[0].message.content, special);
  const raw = await client.chat.completions.create({ ...on, skip_special_tokens: false, spaces_between_special_tokens: false });
  assert.ok(raw.choices[0].message.content.startsWith(answer + '<|im_end|>'), raw.choices[0].message.content);
  // /detokenize hides them by default too
  const ids = (await post('/tokenize', { prompt: '<|im_start|>user\nhi<|im_end|>', add_special_tokens: true })).json.tokens;
  assert.deepEqual(ids.slice(0, 2), [1, 3]);
  assert.equal((await post('/detokenize', { tokens: ids })).json.prompt, 'user\nhi');
  assert.equal((await post('/detokenize', { tokens: ids, skip_special_tokens: false, spaces_between_special_tokens: false })).json.prompt, '<s><|im_start|>user\nhi<|im_end|>');
});

test('stop_token_ids, min_tokens and stop strings report what stopped them', async () => {
  const ids = (await client.chat.completions.create({ model, messages, temperature: 0, max_tokens: 300, return_token_ids: true })).choices[0].token_ids;
  const stopId = ids[5];
  const r = await client.chat.completions.create({ model, messages, temperature: 0, max_tokens: 300, stop_token_ids: [stopId], return_token_ids: true });
  const got = r.choices[0].token_ids;
  assert.equal(got.at(-1), stopId);
  assert.ok(got.length <= 6);
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.equal(r.choices[0].stop_reason, stopId);
  assert.equal(r.usage.completion_tokens, got.length);
  // min_tokens holds the end of the turn off
  const long = await client.chat.completions.create({ model, messages, temperature: 0, max_tokens: 400, min_tokens: ids.length + 20, return_token_ids: true });
  assert.ok(long.choices[0].token_ids.length >= ids.length + 20);
  assert.ok(!long.choices[0].token_ids.slice(0, ids.length + 19).includes(4));
  // a stop string: cut before it, or kept with include_stop_str_in_output; usage counts the
  // tokens up to the one that completed it, the same every time
  const stop = answer.slice(10, 13);
  const cut = answer.indexOf(stop);
  const a = await client.chat.completions.create({ model, messages, temperature: 0, stop });
  assert.equal(a.choices[0].message.content, answer.slice(0, cut));
  assert.equal(a.choices[0].stop_reason, stop);
  const b = await client.chat.completions.create({ model, messages, temperature: 0, stop, include_stop_str_in_output: true });
  assert.equal(b.choices[0].message.content, answer.slice(0, cut + stop.length));
  const counts = new Set();
  for (let i = 0; i < 4; i++) counts.add((await client.chat.completions.create({ model, messages, temperature: 0, stop })).usage.completion_tokens);
  assert.equal(counts.size, 1);
  assert.ok([...counts][0] < reference.usage.completion_tokens);
});

test('continue_final_message, add_generation_prompt, chat_template_kwargs, add_special_tokens', async () => {
  const prefix = answer.slice(0, 12);
  const prefilled = [...messages, { role: 'assistant', content: prefix }];
  const tok = async (extra) => (await post('/tokenize', { messages, ...extra })).json;
  // the rendering stops right after the assistant's text: no end of turn, no new turn
  const open = await tok({ messages: prefilled, continue_final_message: true, add_generation_prompt: false });
  const text = (await post('/detokenize', { tokens: open.tokens, skip_special_tokens: false, spaces_between_special_tokens: false })).json.prompt;
  assert.ok(text.endsWith(`<|im_start|>assistant\n${prefix}`), JSON.stringify(text));
  const cont = await client.chat.completions.create({ model, temperature: 0, messages: prefilled, continue_final_message: true, add_generation_prompt: false });
  assert.equal(cont.usage.prompt_tokens, open.count);
  const echoed = await client.chat.completions.create({ model, temperature: 0, echo: true, messages: prefilled, continue_final_message: true });
  assert.equal(echoed.choices[0].message.content, prefix + cont.choices[0].message.content);
  const plain = await tok({});
  const noGen = await tok({ add_generation_prompt: false });
  assert.equal(plain.count, reference.usage.prompt_tokens);
  assert.ok(noGen.count < plain.count);
  const withBos = await tok({ add_special_tokens: true });
  assert.deepEqual(withBos.tokens, [1, ...plain.tokens]);
  const kw = await tok({ chat_template_kwargs: { add_generation_prompt: false } });
  assert.deepEqual(kw.tokens, noGen.tokens);
  const both = await post('/v1/chat/completions', { messages, continue_final_message: true, add_generation_prompt: true });
  assert.equal(both.status, 400);
  assert.equal(both.json.error.param, 'continue_final_message');
});

test('every parameter serpent does not implement is a 400 naming it', async () => {
  const cases = [
    ['completions', { prompt: 'a', suffix: 'b' }, 'suffix'],
    ['completions', { prompt: 'a', best_of: 3 }, 'best_of'],
    ['chat', { messages, best_of: 2, n: 1 }, 'best_of'],
    ['chat', { messages, response_format: { type: 'yaml' } }, 'response_format.type'],
    ['completions', { prompt: 'a', response_format: { type: 'structural_tag' } }, 'response_format.type'],
    ['chat', { messages, response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object', patternProperties: {} } } } }, 'response_format.json_schema.schema'],
    ['chat', { messages, tools: [{ type: 'function', function: { name: 'f', parameters: {} } }] }, 'tools'],
    ['chat', { messages, tools: [{ type: 'function', function: { name: 'f' } }], tool_choice: { type: 'function', function: { name: 'g' } } }, 'tool_choice'],
    ['chat', { messages, use_beam_search: true }, 'use_beam_search'],
    ['chat', { messages, guided_json: { type: 'string', format: 'hostname-of-mars' } }, 'guided_json'],
    ['chat', { messages, structural_tag: '{}' }, 'structural_tag'],
    ['chat', { messages, chat_template: '{{ 1 }}' }, 'chat_template'],
    ['chat', { messages, modalities: ['text', 'audio'] }, 'modalities'],
    ['completions', { prompt: 'a', prompt_logprobs: 1 }, 'prompt_logprobs'],
    ['completions', { prompt: 'a', priority: 5 }, 'priority'],
  ];
  for (const [api, body, param] of cases) {
    const create = api === 'chat' ? (b) => client.chat.completions.create(b) : (b) => client.completions.create(b);
    await assert.rejects(create({ model, max_tokens: 2, ...body }), (err) => {
      assert.ok(err instanceof OpenAI.BadRequestError, `${param}: ${err}`);
      assert.equal(err.status, 400);
      assert.equal(err.param, param, JSON.stringify(err.error));
      assert.equal(err.type, 'invalid_request_error');
      return true;
    }, param);
  }
  // the "off" values of the same parameters are accepted
  const ok = await client.chat.completions.create({
    model, messages, max_tokens: 2, best_of: 1, response_format: { type: 'text' }, tool_choice: 'none',
    tools: [{ type: 'function', function: { name: 'f', parameters: {} } }], use_beam_search: false, priority: 0 });
  assert.equal(ok.choices.length, 1);
  await client.completions.create({ model, prompt: 'a', max_tokens: 2, suffix: '', best_of: 2, n: 2 });
  // ignored as vLLM ignores them, and unknown fields
  await client.chat.completions.create({ model, messages, max_tokens: 2, user: 'u', store: false, metadata: { a: 'b' }, parallel_tool_calls: false, service_tier: 'auto', no_such_field: 1 });
});

test('errors: context_length_exceeded with the right param; duplicate keys, the last wins', async () => {
  const long = 'word '.repeat(5000);
  await assert.rejects(client.chat.completions.create({ model, messages: [{ role: 'user', content: long }] }), (err) => {
    assert.equal(err.status, 400);
    assert.equal(err.code, 'context_length_exceeded');
    assert.equal(err.param, 'messages');
    return true;
  });
  await assert.rejects(client.chat.completions.create({ model, messages, max_completion_tokens: 100000 }), (err) => {
    assert.equal(err.code, 'context_length_exceeded');
    assert.equal(err.param, 'max_completion_tokens');
    return true;
  });
  await assert.rejects(client.completions.create({ model, prompt: 'a', max_tokens: 100000 }), (err) => {
    assert.equal(err.param, 'max_tokens');
    return true;
  });
  await assert.rejects(client.chat.completions.create({ model: 'gpt-9', messages }), (err) => {
    assert.ok(err instanceof OpenAI.NotFoundError);
    assert.equal(err.type, 'invalid_request_error');
    assert.equal(err.code, 'model_not_found');
    return true;
  });
  const r = await fetch(`${base}/v1/completions`, { method: 'POST', body: '{"prompt": "a", "max_tokens": 1, "max_tokens": 3, "ignore_eos": true}' }).then((x) => x.json());
  assert.equal(r.usage.completion_tokens, 3);
});

test('completions: text_offset counts characters of non-ASCII text; streamed echo logprobs', async () => {
  const prompt = 'Caf\u00e9 \u00e0 la cr\u00e8me \u2014 d\u00e9j\u00e0 vu';
  const req = { model, prompt, max_tokens: 12, temperature: 0, ignore_eos: true, logprobs: 1, echo: true };
  const r = await client.completions.create(req);
  const c = r.choices[0];
  const lp = c.logprobs;
  assert.ok(c.text.startsWith(prompt));
  assert.equal(lp.tokens.length, r.usage.prompt_tokens + 12);
  for (let i = 1; i < lp.text_offset.length; i++) assert.ok(lp.text_offset[i] >= lp.text_offset[i - 1]);
  // every generated token's offset is where its text starts in the returned string
  const n = r.usage.prompt_tokens;
  let expect = prompt.length;
  for (let i = n; i < lp.tokens.length; i++) {
    assert.equal(lp.text_offset[i], expect, `token ${i}`);
    expect += lp.tokens[i].length;
  }
  assert.ok(lp.text_offset.at(-1) <= c.text.length);
  // streamed: the same prompt logprobs and offsets in the first chunk, then the rest
  const chunks = await collect(await client.completions.create({ ...req, stream: true }));
  const merged = { tokens: [], token_logprobs: [], text_offset: [] };
  for (const ch of chunks) {
    const l = ch.choices[0]?.logprobs;
    if (!l) continue;
    merged.tokens.push(...l.tokens);
    merged.token_logprobs.push(...l.token_logprobs);
    merged.text_offset.push(...l.text_offset);
  }
  assert.deepEqual(merged.tokens, lp.tokens);
  assert.deepEqual(merged.token_logprobs, lp.token_logprobs);
  assert.deepEqual(merged.text_offset, lp.text_offset);
  assert.equal(chunks[0].choices[0].logprobs.tokens.length >= n, true, 'the prompt comes in the first chunk');
});

test('streamed logprobs: none for text a stop string removes', async () => {
  const full = await client.completions.create({ model, prompt: 'The', max_tokens: 30, temperature: 0, ignore_eos: true, logprobs: 0 });
  const text = full.choices[0].text;
  const stop = text.slice(12, 15);
  const at = text.indexOf(stop);
  const req = { model, prompt: 'The', max_tokens: 30, temperature: 0, ignore_eos: true, logprobs: 0, stop };
  const plain = (await client.completions.create(req)).choices[0].logprobs;
  const chunks = await collect(await client.completions.create({ ...req, stream: true }));
  const tokens = chunks.flatMap((c) => c.choices[0]?.logprobs?.tokens ?? []);
  assert.deepEqual(tokens, plain.tokens);
  assert.ok(plain.text_offset.every((o) => o < at), 'no logprob of a token after the cut');
  const chat = await collect(await client.chat.completions.create({ model, messages, temperature: 0, logprobs: true, stream: true, stop: answer.slice(10, 13) }));
  const chatPlain = await client.chat.completions.create({ model, messages, temperature: 0, logprobs: true, stop: answer.slice(10, 13) });
  assert.deepEqual(chat.flatMap((c) => c.choices[0]?.logprobs?.content ?? []).map((t) => t.token), chatPlain.choices[0].logprobs.content.map((t) => t.token));
});

test('models.retrieve, CORS preflight, x-request-id', async () => {
  const m = await client.models.retrieve(model);
  assert.equal(m.id, model);
  assert.equal(m.object, 'model');
  await assert.rejects(client.models.retrieve('nope'), (err) => err instanceof OpenAI.NotFoundError && err.code === 'model_not_found');
  const pre = await fetch(`${base}/v1/chat/completions`, {
    method: 'OPTIONS', headers: { Origin: 'http://example.test', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization, content-type' } });
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get('access-control-allow-origin'), '*');
  assert.match(pre.headers.get('access-control-allow-methods'), /POST/);
  assert.match(pre.headers.get('access-control-allow-headers'), /authorization/);
  const withOrigin = await fetch(`${base}/v1/models`, { headers: { Origin: 'http://example.test', 'X-Request-Id': 'abc-123' } });
  assert.equal(withOrigin.headers.get('access-control-allow-origin'), '*');
  assert.equal(withOrigin.headers.get('x-request-id'), 'abc-123');
  const made = await fetch(`${base}/health`);
  assert.match(made.headers.get('x-request-id'), /^srp-/);
  const err = await fetch(`${base}/nope`);
  assert.ok(err.headers.get('x-request-id'));
});
