// Structured output (issue 17) with the shipped model, whose free text is poor: every
// constrained reply must still parse and validate. The official openai client's
// chat.completions.parse() with a zod schema, LangChain's withStructuredOutput and the AI SDK's
// generateObject; response_format json_object; vLLM's guided_choice, guided_regex,
// guided_grammar, guided_json and structured_outputs; the 400s for what cannot be compiled.
// SERPENT_URL: serpent serve --model models/serpent-tiny.
import assert from 'node:assert/strict';
import test from 'node:test';
import OpenAI from 'openai';
import { zodResponseFormat } from 'openai/helpers/zod';
import { ChatOpenAI } from '@langchain/openai';
import { generateObject, streamObject } from 'ai';
import { createOpenAI } from '@ai-sdk/openai';
import { z } from 'zod';

const base = process.env.SERPENT_URL;
assert.ok(base, 'SERPENT_URL must be set');
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'none', maxRetries: 0 });
const model = (await client.models.list()).data[0].id;

const Person = z.object({
  name: z.string().max(24),
  age: z.number().int().min(0).max(150),
  role: z.enum(['admin', 'user', 'guest']),
  tags: z.array(z.string().max(12)).max(3),
  active: z.boolean(),
});
const messages = [{ role: 'system', content: 'Reply with JSON.' }, { role: 'user', content: 'Describe a person.' }];

async function post(path, body) {
  const r = await fetch(base + path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  return { status: r.status, json: await r.json() };
}

test('openai: chat.completions.parse() with a zod schema, greedy and sampled, whole and streamed', async () => {
  for (const [temperature, seed] of [[0, 1], [1.0, 2], [1.3, 3]]) {
    const r = await client.chat.completions.parse({ model, messages, temperature, seed, max_tokens: 400, response_format: zodResponseFormat(Person, 'person') });
    const c = r.choices[0];
    assert.equal(c.finish_reason, 'stop', `T ${temperature}: ${c.message.content}`);
    assert.deepEqual(Person.parse(JSON.parse(c.message.content)), c.message.parsed);
  }
  const stream = await client.chat.completions.create({ model, messages, temperature: 0.8, seed: 9, max_tokens: 400, stream: true, response_format: zodResponseFormat(Person, 'person') });
  let text = '';
  for await (const ch of stream) text += ch.choices[0]?.delta?.content ?? '';
  Person.parse(JSON.parse(text));
});

test('n choices: each is its own parse of the schema', async () => {
  const r = await client.chat.completions.create({ model, messages, n: 4, temperature: 1.2, seed: 5, max_tokens: 400, response_format: zodResponseFormat(Person, 'person') });
  assert.equal(r.choices.length, 4);
  for (const c of r.choices) Person.parse(JSON.parse(c.message.content));
});

test('response_format json_object gives a JSON object', async () => {
  const r = await client.chat.completions.create({ model, messages, temperature: 0.7, seed: 4, max_tokens: 300, response_format: { type: 'json_object' } });
  const c = r.choices[0];
  if (c.finish_reason === 'stop') {
    const v = JSON.parse(c.message.content);
    assert.equal(typeof v, 'object');
    assert.ok(v !== null && !Array.isArray(v));
  } else {
    assert.equal(c.finish_reason, 'length'); // an object may be longer than max_tokens
    assert.match(c.message.content, /^\s*\{/);
  }
});

test("LangChain: withStructuredOutput(zod, { method: 'jsonSchema' })", async () => {
  const llm = new ChatOpenAI({ model, apiKey: 'none', temperature: 0, maxTokens: 400, configuration: { baseURL: `${base}/v1` } });
  const out = await llm.withStructuredOutput(Person, { method: 'jsonSchema', name: 'person' }).invoke(messages);
  Person.parse(out);
});

test('AI SDK: generateObject and streamObject through the chat API', async () => {
  const openai = createOpenAI({ baseURL: `${base}/v1`, apiKey: 'none' });
  const { object } = await generateObject({ model: openai.chat(model), schema: Person, messages, temperature: 0, maxOutputTokens: 400 });
  Person.parse(object);
  const s = streamObject({ model: openai.chat(model), schema: Person, messages, temperature: 0.5, seed: 3, maxOutputTokens: 400 });
  let partials = 0;
  for await (const _ of s.partialObjectStream) partials++; // the object settles once the stream is read
  assert.ok(partials > 1);
  Person.parse(await s.object);
});

test("vLLM's guided_choice, guided_regex, guided_grammar, guided_json and structured_outputs", async () => {
  const prompt = 'The answer is';
  const choice = await post('/v1/completions', { model, prompt, max_tokens: 20, temperature: 1, seed: 1, guided_choice: ['yes', 'no', 'maybe so'] });
  assert.equal(choice.status, 200, JSON.stringify(choice.json));
  assert.ok(['yes', 'no', 'maybe so'].includes(choice.json.choices[0].text), choice.json.choices[0].text);
  assert.equal(choice.json.choices[0].finish_reason, 'stop');
  const re = await post('/v1/completions', { model, prompt, max_tokens: 30, temperature: 1, seed: 2, guided_regex: '[0-9]{3}-[a-z]{2,4}' });
  assert.match(re.json.choices[0].text, /^[0-9]{3}-[a-z]{2,4}$/);
  const gbnf = await post('/v1/chat/completions', { model, messages, max_tokens: 40, temperature: 1, seed: 3, guided_grammar: 'root ::= "(" item ("," item){0,3} ")"\nitem ::= [a-c]+' });
  assert.match(gbnf.json.choices[0].message.content, /^\([a-c]+(,[a-c]+){0,3}\)$/);
  const schema = { type: 'object', properties: { n: { type: 'integer', minimum: 0 }, ok: { type: 'boolean' } }, required: ['n', 'ok'], additionalProperties: false };
  for (const body of [{ guided_json: schema }, { guided_json: JSON.stringify(schema) }, { structured_outputs: { json: schema } }]) {
    const r = await post('/v1/chat/completions', { model, messages, max_tokens: 60, temperature: 0.9, seed: 7, ...body });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    const v = JSON.parse(r.json.choices[0].message.content);
    assert.deepEqual(Object.keys(v).sort(), ['n', 'ok']);
    assert.ok(Number.isInteger(v.n) && v.n >= 0 && typeof v.ok === 'boolean');
  }
  // an empty choice is a choice too, last in the list as well
  const empty = await post('/v1/completions', { model, prompt, max_tokens: 5, guided_choice: [''] });
  assert.equal(empty.status, 200, JSON.stringify(empty.json));
  assert.equal(empty.json.choices[0].text, '');
  const so = await post('/v1/completions', { model, prompt, max_tokens: 20, structured_outputs: { choice: ['left', 'right'] } });
  assert.ok(['left', 'right'].includes(so.json.choices[0].text));
});

test('what cannot be compiled is a 400 naming the field and the construct', async () => {
  const bad = [
    [{ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'integer', multipleOf: 3 } } } }, 'response_format.json_schema.schema', /multipleOf/],
    [{ guided_regex: '(a)\\1' }, 'guided_regex', /./],
    [{ guided_grammar: 'root ::= undefined_rule' }, 'guided_grammar', /undefined_rule/],
    [{ guided_choice: [] }, 'guided_choice', /list/],
    [{ guided_json: { type: 'object' }, guided_regex: 'a' }, null, /only one/],
    [{ guided_whitespace_pattern: ' ' }, 'guided_whitespace_pattern', /not supported/],
    [{ response_format: { type: 'structural_tag' } }, 'response_format.type', /json_schema/],
  ];
  for (const [extra, param, msg] of bad) {
    const r = await post('/v1/chat/completions', { model, messages, max_tokens: 5, ...extra });
    assert.equal(r.status, 400, JSON.stringify(extra));
    assert.equal(r.json.error.type, 'invalid_request_error');
    if (param) assert.equal(r.json.error.param, param, JSON.stringify(r.json));
    assert.match(r.json.error.message, msg);
  }
  // the server is fine afterwards
  const ok = await post('/v1/completions', { model, prompt: 'x', max_tokens: 3, guided_choice: ['a'] });
  assert.equal(ok.json.choices[0].text, 'a');
});

// --- tool calls forced by constrained decoding: tool_choice "required" and a named function ---

const weather = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'The weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 30 }, unit: { type: 'string', enum: ['celsius', 'fahrenheit'] }, days: { type: 'integer', minimum: 1, maximum: 7 } }, required: ['city', 'unit', 'days'], additionalProperties: false },
  },
};
const lookup = {
  type: 'function',
  function: { name: 'lookup', description: 'Look a word up', parameters: { type: 'object', properties: { word: { type: 'string', maxLength: 20 } }, required: ['word'] } },
};
const WeatherArgs = z.object({ city: z.string().max(30), unit: z.enum(['celsius', 'fahrenheit']), days: z.number().int().min(1).max(7) }).strict();
const LookupArgs = z.object({ word: z.string().max(20) });
const toolMessages = [{ role: 'user', content: 'What is the weather in Paris?' }];

function checkCall(call) {
  assert.equal(call.type, 'function');
  assert.match(call.id, /^call_/);
  const args = JSON.parse(call.function.arguments);
  if (call.function.name === 'get_weather') WeatherArgs.parse(args);
  else { assert.equal(call.function.name, 'lookup'); LookupArgs.parse(args); }
}

test('openai: tool_choice required and named give calls whose arguments validate, whole and streamed', async () => {
  for (const [tool_choice, seed, parallel] of [['required', 1, true], ['required', 2, false], [{ type: 'function', function: { name: 'lookup' } }, 3, true]]) {
    const r = await client.chat.completions.create({ model, messages: toolMessages, tools: [weather, lookup], tool_choice, parallel_tool_calls: parallel, temperature: 1, seed, max_tokens: 400 });
    const c = r.choices[0];
    assert.equal(c.finish_reason, 'tool_calls', JSON.stringify(c));
    assert.ok(c.message.tool_calls.length >= 1);
    assert.equal(c.message.content, null);
    c.message.tool_calls.forEach(checkCall);
    if (typeof tool_choice === 'object') {
      assert.equal(c.message.tool_calls.length, 1);
      assert.equal(c.message.tool_calls[0].function.name, 'lookup');
    }
  }
  const one = await client.chat.completions.create({ model, messages: toolMessages, tools: [weather, lookup], tool_choice: 'required', parallel_tool_calls: false, temperature: 1, seed: 4, max_tokens: 300 });
  assert.equal(one.choices[0].message.tool_calls.length, 1);
  const stream = await client.chat.completions.create({ model, messages: toolMessages, tools: [weather], tool_choice: 'required', parallel_tool_calls: false, temperature: 0.8, seed: 5, max_tokens: 300, stream: true });
  const calls = [];
  let finish = null;
  for await (const ch of stream) {
    const d = ch.choices[0]?.delta;
    for (const tc of d?.tool_calls ?? []) {
      calls[tc.index] ??= { id: '', type: 'function', function: { name: '', arguments: '' } };
      if (tc.id) calls[tc.index].id = tc.id;
      if (tc.function?.name) calls[tc.index].function.name += tc.function.name;
      if (tc.function?.arguments) calls[tc.index].function.arguments += tc.function.arguments;
    }
    finish = ch.choices[0]?.finish_reason ?? finish;
  }
  assert.equal(finish, 'tool_calls');
  assert.ok(calls.length >= 1);
  calls.forEach(checkCall);
  // a named function that is not among the tools, and tool parameters that cannot be compiled
  const bad = await post('/v1/chat/completions', { model, messages: toolMessages, tools: [weather], tool_choice: { type: 'function', function: { name: 'nope' } } });
  assert.equal(bad.status, 400);
  assert.equal(bad.json.error.param, 'tool_choice');
  const badp = await post('/v1/chat/completions', { model, messages: toolMessages, tool_choice: 'required', tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', patternProperties: { x: {} } } } }] });
  assert.equal(badp.status, 400);
  assert.match(badp.json.error.message, /patternProperties/);
});

test('LangChain: bindTools with tool_choice any/named, and withStructuredOutput by function calling', async () => {
  const llm = new ChatOpenAI({ model, apiKey: 'none', temperature: 0, maxTokens: 300, configuration: { baseURL: `${base}/v1` } });
  for (const choice of ['any', 'lookup']) {
    const msg = await llm.bindTools([weather, lookup], { tool_choice: choice, parallel_tool_calls: false }).invoke(toolMessages);
    assert.ok(msg.tool_calls.length >= 1, JSON.stringify(msg));
    for (const call of msg.tool_calls) (call.name === 'lookup' ? LookupArgs : WeatherArgs).parse(call.args);
    if (choice === 'lookup') assert.equal(msg.tool_calls[0].name, 'lookup');
  }
  const out = await llm.withStructuredOutput(Person, { method: 'functionCalling', name: 'person' }).invoke(messages);
  Person.parse(out);
  const dflt = await llm.withStructuredOutput(Person).invoke(messages); // LangChain's default method
  Person.parse(dflt);
});

test('AI SDK: generateText with a required and a named tool, chat and Responses routes', async () => {
  const { tool } = await import('ai');
  const openai = createOpenAI({ baseURL: `${base}/v1`, apiKey: 'none' });
  const tools = {
    get_weather: tool({ description: 'The weather in a city', inputSchema: WeatherArgs }),
    lookup: tool({ description: 'Look a word up', inputSchema: LookupArgs }),
  };
  const { generateText } = await import('ai');
  for (const m of [openai.chat(model), openai(model)]) {
    for (const toolChoice of ['required', { type: 'tool', toolName: 'lookup' }]) {
      const r = await generateText({ model: m, tools, toolChoice, prompt: 'What is the weather in Paris?', temperature: 0, maxOutputTokens: 300, providerOptions: { openai: { parallelToolCalls: false } } });
      assert.ok(r.toolCalls.length >= 1, `${m.provider} ${JSON.stringify(toolChoice)}: ${r.text}`);
      for (const c of r.toolCalls) (c.toolName === 'lookup' ? LookupArgs : WeatherArgs).parse(c.input);
      if (typeof toolChoice === 'object') assert.equal(r.toolCalls[0].toolName, 'lookup');
    }
  }
  const { object } = await generateObject({ model: openai(model), schema: Person, prompt: 'Describe a person.', temperature: 0, maxOutputTokens: 400 });
  Person.parse(object);
});

test('responses.create with text.format json_schema, whole and streamed, and a required tool', async () => {
  const format = { type: 'json_schema', name: 'person', schema: zodResponseFormat(Person, 'person').json_schema.schema, strict: true };
  const r = await client.responses.create({ model, input: 'Describe a person.', instructions: 'Reply with JSON.', text: { format }, temperature: 0, max_output_tokens: 400 });
  assert.equal(r.status, 'completed');
  assert.equal(r.text.format.type, 'json_schema'); // the response repeats the request's settings
  assert.equal(r.instructions, 'Reply with JSON.');
  Person.parse(JSON.parse(r.output_text));
  const s = await client.responses.create({ model, input: 'Describe a person.', text: { format: { type: 'json_object' } }, temperature: 0.6, max_output_tokens: 400, stream: true });
  let text = '', done = null;
  for await (const ev of s) {
    if (ev.type === 'response.output_text.delta') text += ev.delta;
    if (ev.type === 'response.completed' || ev.type === 'response.incomplete') done = ev.response;
  }
  assert.ok(done);
  if (done.status === 'completed') assert.equal(typeof JSON.parse(text), 'object');
  else assert.equal(done.incomplete_details.reason, 'max_output_tokens');
  const t = await client.responses.create({ model, input: 'Weather in Paris?', tools: [{ type: 'function', ...weather.function }], tool_choice: 'required', parallel_tool_calls: false, temperature: 0, max_output_tokens: 300 });
  const calls = t.output.filter((o) => o.type === 'function_call');
  assert.ok(calls.length >= 1, JSON.stringify(t.output));
  for (const c of calls) WeatherArgs.parse(JSON.parse(c.arguments));
  const bad = await post('/v1/responses', { model, input: 'x', text: { format: { type: 'json_schema', name: 'x', schema: { type: 'integer', multipleOf: 2 } } } });
  assert.equal(bad.status, 400);
  assert.match(bad.json.error.param, /^text\.format/);
});
