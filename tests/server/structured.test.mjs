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
