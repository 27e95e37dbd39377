// POST /v1/responses, tool calling and reasoning through real clients: the official openai
// client's responses.create (whole and streamed: the events in OpenAI's order, the final
// text and usage), the AI SDK's default openai(model) route (Responses) with generateText and
// streamText, the reasoning split of a server started with --reasoning-parser, tool-call
// history rendered through the template, and the 400s for what serpent does not do.
// The shipped model writes no think tags and no tool calls, so end to end only what is
// deterministic is checked; tests/test_reply_parsers.c covers the parsers themselves.
// SERPENT_URL: serve models/serpent-tiny; SERPENT_URL_R1: the same with --reasoning-parser
// deepseek_r1 --tool-call-parser hermes; SERPENT_URL_Q3: --reasoning-parser qwen3
// --tool-call-parser qwen3_coder.
import assert from 'node:assert/strict';
import test from 'node:test';
import OpenAI from 'openai';
import { generateText, streamText, tool, jsonSchema } from 'ai';
import { createOpenAI } from '@ai-sdk/openai';

const base = process.env.SERPENT_URL, r1 = process.env.SERPENT_URL_R1, q3 = process.env.SERPENT_URL_Q3;
assert.ok(base && r1 && q3, 'SERPENT_URL, SERPENT_URL_R1 and SERPENT_URL_Q3 must be set');
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'none', maxRetries: 0 });
const r1Client = new OpenAI({ baseURL: `${r1}/v1`, apiKey: 'none', maxRetries: 0 });
const q3Client = new OpenAI({ baseURL: `${q3}/v1`, apiKey: 'none', maxRetries: 0 });
const model = (await client.models.list()).data[0].id;

const system = 'You are a dictionary. Answer briefly.';
const question = 'Tell me what cynic means.';
const messages = [{ role: 'system', content: system }, { role: 'user', content: question }];
const tools = [{ type: 'function', function: { name: 'lookup', description: 'Look a word up', parameters: { type: 'object', properties: { word: { type: 'string' } }, required: ['word'] } } }];

async function post(url, path, body) {
  const r = await fetch(url + path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  return { status: r.status, json: await r.json() };
}

const reference = await client.chat.completions.create({ model, messages, temperature: 0, max_tokens: 300 });
const answer = reference.choices[0].message.content;

test('responses.create: the chat reply as a message item with output_text', async () => {
  const r = await client.responses.create({ model, instructions: system, input: question, temperature: 0, max_output_tokens: 300 });
  assert.match(r.id, /^resp_/);
  assert.equal(r.object, 'response');
  assert.equal(r.status, 'completed');
  assert.equal(r.model, model);
  assert.equal(typeof r.created_at, 'number');
  assert.equal(r.output.length, 1);
  const item = r.output[0];
  assert.equal(item.type, 'message');
  assert.equal(item.role, 'assistant');
  assert.equal(item.status, 'completed');
  assert.deepEqual(item.content[0].annotations, []);
  assert.equal(item.content[0].type, 'output_text');
  assert.equal(r.output_text, answer);
  assert.equal(r.usage.input_tokens, reference.usage.prompt_tokens);
  assert.equal(r.usage.output_tokens, reference.usage.completion_tokens);
  assert.equal(r.usage.total_tokens, reference.usage.total_tokens);
  assert.equal(typeof r.usage.input_tokens_details.cached_tokens, 'number');
  assert.equal(r.usage.output_tokens_details.reasoning_tokens, 0);
  // input as message items with text parts, store false (accepted: serpent stores nothing)
  const items = await client.responses.create({
    model, temperature: 0, max_output_tokens: 300, store: false,
    input: [{ role: 'system', content: system }, { type: 'message', role: 'user', content: [{ type: 'input_text', text: question }] }],
  });
  assert.equal(items.output_text, answer);
});

test('responses.create: max_output_tokens cuts the reply: incomplete', async () => {
  const r = await client.responses.create({ model, instructions: system, input: question, temperature: 0, max_output_tokens: 3 });
  assert.equal(r.status, 'incomplete');
  assert.deepEqual(r.incomplete_details, { reason: 'max_output_tokens' });
  assert.equal(r.usage.output_tokens, 3);
});

test('responses.create stream: the events in order, numbered, and the same text', async () => {
  const stream = await client.responses.create({ model, instructions: system, input: question, temperature: 0, max_output_tokens: 300, stream: true });
  const events = [];
  for await (const e of stream) events.push(e);
  events.forEach((e, i) => assert.equal(e.sequence_number, i));
  const types = events.map((e) => e.type);
  const deltas = types.filter((t) => t === 'response.output_text.delta').length;
  assert.ok(deltas > 1);
  assert.deepEqual(types, [
    'response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added',
    ...Array(deltas).fill('response.output_text.delta'),
    'response.output_text.done', 'response.content_part.done', 'response.output_item.done', 'response.completed',
  ]);
  assert.equal(events[0].response.status, 'in_progress');
  const text = events.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta).join('');
  assert.equal(text, answer);
  assert.equal(events.find((e) => e.type === 'response.output_text.done').text, answer);
  const done = events.at(-1).response;
  assert.equal(done.status, 'completed');
  assert.equal(done.output[0].content[0].text, answer);
  assert.equal(done.usage.output_tokens, reference.usage.completion_tokens);
  // the SDK's helper assembles the same response
  const helper = client.responses.stream({ model, instructions: system, input: question, temperature: 0, max_output_tokens: 300 });
  const final = await helper.finalResponse();
  assert.equal(final.output_text, answer);
});

test('ai sdk: openai(model) (the Responses API) with generateText and streamText', async () => {
  const provider = createOpenAI({ baseURL: `${base}/v1`, apiKey: 'none' });
  const r = await generateText({ model: provider(model), system, prompt: question, temperature: 0, maxRetries: 0 });
  assert.equal(r.text, answer);
  assert.equal(r.finishReason, 'stop');
  assert.equal(r.usage.outputTokens, reference.usage.completion_tokens);
  const s = streamText({ model: provider(model), system, prompt: question, temperature: 0, maxRetries: 0 });
  let streamed = '';
  for await (const t of s.textStream) streamed += t;
  assert.equal(streamed, answer);
  assert.equal(await s.finishReason, 'stop');
});

test('responses: function_call and function_call_output items render as a tool conversation', async () => {
  const r = await client.responses.create({
    model, temperature: 0, max_output_tokens: 5, tool_choice: 'none',
    tools: [{ type: 'function', name: 'lookup', description: 'Look a word up', parameters: { type: 'object', properties: { word: { type: 'string' } } } }],
    input: [
      { role: 'user', content: question },
      { type: 'function_call', call_id: 'call_1', name: 'lookup', arguments: '{"word":"cynic"}' },
      { type: 'function_call_output', call_id: 'call_1', output: 'a person who doubts' },
    ],
  });
  assert.equal(r.status, 'incomplete');
  assert.equal(r.output[0].type, 'message');
});

test('chat: assistant tool_calls and tool messages render through the template', async () => {
  const history = [
    { role: 'user', content: question },
    { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'lookup', arguments: '{"word":"cynic"}' } }] },
    { role: 'tool', tool_call_id: 'call_1', content: 'a person who doubts' },
  ];
  const r = await client.chat.completions.create({ model, messages: history, tools, tool_choice: 'none', max_tokens: 3, temperature: 0 });
  assert.equal(r.choices[0].finish_reason, 'length');
  const bad = await post(base, '/v1/chat/completions', { model, max_tokens: 1, messages: [history[0], { role: 'assistant', content: null, tool_calls: [{ id: 'c', type: 'function', function: { name: 'lookup', arguments: '{not json' } }] }] });
  assert.equal(bad.status, 400);
  assert.equal(bad.json.error.param, 'messages[1]');
});

test('reasoning parser: deepseek_r1 takes a reply without </think> as reasoning', async () => {
  const r = await r1Client.chat.completions.create({ model, messages, temperature: 0, max_tokens: 300 });
  const m = r.choices[0].message;
  assert.equal(m.reasoning_content, answer);
  assert.equal(m.reasoning, answer);
  assert.equal(m.content, null);
  assert.equal(r.choices[0].finish_reason, 'stop');
  // streamed as delta.reasoning_content
  const chunks = [];
  for await (const c of await r1Client.chat.completions.create({ model, messages, temperature: 0, max_tokens: 300, stream: true })) chunks.push(c);
  assert.equal(chunks.map((c) => c.choices[0]?.delta?.reasoning_content ?? '').join(''), answer);
  assert.equal(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join(''), '');
  // include_reasoning: false drops it
  const dropped = await r1Client.chat.completions.create({ model, messages, temperature: 0, max_tokens: 300, include_reasoning: false });
  assert.equal(dropped.choices[0].message.reasoning_content, undefined);
  assert.equal(dropped.choices[0].message.content, null);
  // the Responses API: a reasoning item, whole and streamed
  const resp = await r1Client.responses.create({ model, instructions: system, input: question, temperature: 0, max_output_tokens: 300 });
  assert.equal(resp.output[0].type, 'reasoning');
  assert.equal(resp.output[0].content[0].text, answer);
  assert.equal(resp.output_text, '');
  const events = [];
  for await (const e of await r1Client.responses.create({ model, instructions: system, input: question, temperature: 0, max_output_tokens: 300, stream: true })) events.push(e);
  assert.equal(events.filter((e) => e.type === 'response.reasoning_text.delta').map((e) => e.delta).join(''), answer);
  assert.deepEqual(events.at(-1).response.output, resp.output.map((o) => ({ ...o, id: o.id.replace(resp.id.slice(5), events[0].response.id.slice(5)) })));
});

test('reasoning parser: qwen3 leaves a reply without <think> as content; auto tool choice parses none', async () => {
  const r = await q3Client.chat.completions.create({ model, messages, tools, temperature: 0, max_tokens: 300 });
  const m = r.choices[0].message;
  assert.equal(m.content, answer);
  assert.equal(m.reasoning_content, null);
  assert.equal(m.tool_calls, undefined);
  assert.equal(r.choices[0].finish_reason, 'stop');
  const chunks = [];
  for await (const c of await q3Client.chat.completions.create({ model, messages, tools, tool_choice: 'auto', temperature: 0, max_tokens: 300, stream: true })) chunks.push(c);
  assert.equal(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join(''), answer);
  assert.equal(chunks.at(-1).choices[0].finish_reason, 'stop');
  // the AI SDK with a tool over the Responses API: a text reply
  const provider = createOpenAI({ baseURL: `${q3}/v1`, apiKey: 'none' });
  const g = await generateText({
    model: provider(model), system, prompt: question, temperature: 0, maxRetries: 0,
    tools: { lookup: tool({ description: 'Look a word up', inputSchema: jsonSchema({ type: 'object', properties: { word: { type: 'string' } } }) }) },
  });
  assert.equal(g.text, answer);
  assert.equal(g.toolCalls.length, 0);
});

test('400s: stored state, background, built-in tools, auto tool choice without a parser, a schema that cannot be compiled', async () => {
  const cases = [
    ['/v1/responses', { model, input: 'hi', previous_response_id: 'resp_1' }, 'previous_response_id'],
    ['/v1/responses', { model, input: 'hi', background: true }, 'background'],
    ['/v1/responses', { model, input: 'hi', store: true }, 'store'],
    ['/v1/responses', { model, input: 'hi', tools: [{ type: 'web_search' }] }, 'tools[0]'],
    ['/v1/responses', { model, input: 'hi', tools: [{ type: 'file_search', vector_store_ids: [] }] }, 'tools[0]'],
    ['/v1/responses', { model, input: 'hi', tools: [{ type: 'function', name: 'f', parameters: {} }] }, 'tools'],
    ['/v1/responses', { model, input: 'hi', text: { format: { type: 'json_schema', name: 'x', schema: { type: 'integer', multipleOf: 2 } } } }, 'text.format.schema'],
    ['/v1/responses', { model, input: [{ role: 'user', content: [{ type: 'input_image', image_url: 'x' }] }] }, 'input[0].content'],
    ['/v1/responses', { model }, 'input'],
    ['/v1/chat/completions', { model, messages, tools }, 'tools'],
    ['/v1/chat/completions', { model, messages, tools, tool_choice: 'auto' }, 'tool_choice'],
  ];
  for (const [path, body, param] of cases) {
    const r = await post(base, path, body);
    assert.equal(r.status, 400, `${param}: ${JSON.stringify(r.json)}`);
    assert.equal(r.json.error.param, param, JSON.stringify(r.json));
  }
  const auto = await post(base, '/v1/chat/completions', { model, messages, tools });
  assert.match(auto.json.error.message, /--tool-call-parser/);
  // forced calls are constrained decoding's, with a parser or without (structured.test.mjs)
  const bounded = [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object', properties: { word: { type: 'string', maxLength: 16 } }, required: ['word'] } } }];
  for (const url of [base, r1]) {
    const forced = await post(url, '/v1/chat/completions', { model, messages, tools: bounded, tool_choice: { type: 'function', function: { name: 'lookup' } }, max_tokens: 200 });
    assert.equal(forced.status, 200, JSON.stringify(forced.json));
    assert.equal(forced.json.choices[0].message.tool_calls?.[0]?.function.name, 'lookup', JSON.stringify(forced.json));
  }
  // text.format text and background false are fine
  const ok = await post(base, '/v1/responses', { model, input: 'hi', max_output_tokens: 2, background: false, text: { format: { type: 'text' } } });
  assert.equal(ok.status, 200);
});
