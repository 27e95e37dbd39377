#!/usr/bin/env python3
"""Builds the reference fixtures that CI checks serpent's CPU engine against.

Runs on the GPU machine, where transformers and torch are installed (the CPU machine reaches no
PyPI). For each model spec below it builds a random-weight model with transformers' own classes,
rounds the weights to the storage dtype, saves it with save_pretrained, and records transformers'
float32 logits for every position of a few prompts plus its greedy continuations.

    python3 tests/reference/make_fixtures.py OUTDIR [--only NAME ...]

Each fixture folder holds the checkpoint (config.json + safetensors) and reference.json:
  {"transformers": version, "prompts": [{"ids": [...], "logits": "logits_0.f32",
    "greedy": [...], "margins": [...]}]}
logits_K.f32 is float32 little-endian [len(ids) x vocab]. margins[i] is top1 - top2 of the logits
that chose greedy[i], computed by an uncached forward, so a test can stop at the first near-tie.

Weights are drawn with unit-variance scaling (not the 0.02 training init) so that the model is far
from uniform and greedy choices are not near-ties.
"""
import argparse
import json
import math
import os
import shutil
import sys

import torch
import transformers
from safetensors.torch import load_file, save_file

SPECS = [
    # Nemotron-H with the published checkpoints' config spelling (hybrid_override_pattern,
    # mamba_* keys), several SSD chunks per prompt, n_groups > 1, GQA, relu2 MLP, bf16 weights
    # with A_log/D/dt_bias kept in fp32 (mixed dtypes in one file), untied embeddings.
    dict(name="nemotron_h_pattern", arch="nemotron_h", dtype="bfloat16", fp32_ssm_params=True,
         legacy_config=True, shard=False,
         cfg=dict(vocab_size=333, hidden_size=64, pattern="M-M*-MM-*M", num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16, intermediate_size=96, mlp_hidden_act="relu2",
                  ssm_state_size=16, mamba_num_heads=8, mamba_head_dim=16, n_groups=2,
                  conv_kernel=4, chunk_size=16, tie_word_embeddings=False)),
    # Nemotron-H with the layers_block_type list transformers writes, sharded safetensors,
    # fp16 weights, gelu MLP, MQA (1 KV head), conv kernel 3, 4 groups, d_state 32.
    dict(name="nemotron_h_list", arch="nemotron_h", dtype="float16", fp32_ssm_params=False,
         legacy_config=False, shard=True,
         cfg=dict(vocab_size=301, hidden_size=48, pattern="*M-M-M*M", num_attention_heads=3,
                  num_key_value_heads=1, head_dim=16, intermediate_size=80, mlp_hidden_act="gelu",
                  ssm_state_size=32, mamba_num_heads=8, mamba_head_dim=12, n_groups=4,
                  conv_kernel=3, chunk_size=32, tie_word_embeddings=False)),
    # Pure Mamba-2, tied embeddings, fp32 weights, n_groups 2, residual in fp32.
    dict(name="mamba2_tied", arch="mamba2", dtype="float32", fp32_ssm_params=False,
         legacy_config=False, shard=False,
         cfg=dict(vocab_size=280, hidden_size=64, num_hidden_layers=4, state_size=16,
                  expand=2, head_dim=16, n_groups=2, conv_kernel=4, chunk_size=16,
                  tie_word_embeddings=True)),
    # Pure Mamba-2, untied, bf16 weights, one group, chunk 8 (prompts span many chunks).
    dict(name="mamba2_untied", arch="mamba2", dtype="bfloat16", fp32_ssm_params=False,
         legacy_config=False, shard=False,
         cfg=dict(vocab_size=257, hidden_size=32, num_hidden_layers=3, state_size=24,
                  expand=2, head_dim=8, n_groups=1, conv_kernel=4, chunk_size=8,
                  tie_word_embeddings=False)),
    # Nemotron-H with a SentencePiece tokenizer (tests/reference/tokenizer_fx.model, trained with
    # spm_train on licence texts) and a ChatML chat template: text prompts for the server tests.
    dict(name="nemotron_h_spm", arch="nemotron_h", dtype="bfloat16", fp32_ssm_params=False,
         legacy_config=False, shard=False, tokenizer="tests/reference/tokenizer_fx.model",
         cfg=dict(vocab_size=512, hidden_size=64, pattern="M-M*-M-M", num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16, intermediate_size=128, mlp_hidden_act="relu2",
                  ssm_state_size=16, mamba_num_heads=8, mamba_head_dim=16, n_groups=2,
                  conv_kernel=4, chunk_size=16, tie_word_embeddings=False)),
]

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] "
    "+ '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{% endif %}")

TEXT_PROMPTS = [
    "Hello",
    "The license grants you the right to",
    "Copyright (C) 2007 Free Software Foundation, Inc. Everyone is permitted to copy and distribute "
    "verbatim copies of this license document, but changing it is not allowed.",
    "\u00e9t\u00e9 \u2014 caf\u00e9 na\u00efve \u4f60\u597d \U0001F40D",
]

CHATS = [
    [{"role": "user", "content": "What does this license allow?"}],
    [{"role": "system", "content": "You are a helpful assistant."},
     {"role": "user", "content": "Hi!"},
     {"role": "assistant", "content": "Hello. How can I help?"},
     {"role": "user", "content": "Tell me about software."}],
]

PROMPT_LENGTHS = [1, 5, 37, 77]  # 1 token, shorter than the conv window, several chunks
GREEDY_TOKENS = 24


def build_config(spec):
    c = dict(spec["cfg"])
    if spec["arch"] == "nemotron_h":
        pattern = c.pop("pattern")
        cfg = transformers.NemotronHConfig(
            hybrid_override_pattern=pattern, use_mamba_kernels=False, layer_norm_epsilon=1e-5,
            residual_in_fp32=False, pad_token_id=0, bos_token_id=1, eos_token_id=2, **c)
    else:
        c["num_heads"] = c["expand"] * c["hidden_size"] // c["head_dim"]
        cfg = transformers.Mamba2Config(use_bias=False, use_conv_bias=True, layer_norm_epsilon=1e-5,
                                        residual_in_fp32=True, pad_token_id=0, bos_token_id=0,
                                        eos_token_id=0, **c)
    return cfg


def make_model(spec, seed):
    cfg = build_config(spec)
    cls = transformers.NemotronHForCausalLM if spec["arch"] == "nemotron_h" else transformers.Mamba2ForCausalLM
    torch.manual_seed(seed)
    model = cls(cfg).float().eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("A_log"):
                p.copy_(torch.log(torch.rand(p.shape, generator=g) * 15 + 1))
            elif name.endswith("dt_bias"):
                p.copy_(torch.rand(p.shape, generator=g) * 5 - 5.5)
            elif name.endswith(".D"):
                p.copy_(torch.randn(p.shape, generator=g))
            elif name.endswith("norm.weight") or "norm_f" in name:
                p.copy_(1 + 0.3 * torch.randn(p.shape, generator=g))
            elif name.endswith("conv1d.weight"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.6)
            elif p.dim() == 1:  # biases
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif "embed" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            else:  # linear [out, in]
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p.shape[1]))
        # Larger output weights spread the logits so greedy choices are decisive.
        if not cfg.tie_word_embeddings:
            model.lm_head.weight.mul_(3.0)
    dtype = getattr(torch, spec["dtype"])
    # Round to the storage dtype so the fp32 reference uses exactly the saved weights.
    with torch.no_grad():
        for name, p in model.named_parameters():
            keep32 = spec["fp32_ssm_params"] and name.split(".")[-1] in ("A_log", "D", "dt_bias")
            if not keep32:
                p.copy_(p.to(dtype).float())
    return model, cfg


@torch.no_grad()
def full_logits(model, ids):
    out = model(torch.tensor([ids]), use_cache=False)
    return out.logits[0].float()


@torch.no_grad()
def greedy(model, ids, n):
    out = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False, min_new_tokens=n,
                         pad_token_id=0, eos_token_id=None)
    return out[0, len(ids):].tolist()


def rewrite_legacy_config(path, pattern):
    """Rewrites config.json in the spelling of NVIDIA's published Nemotron-H checkpoints."""
    with open(path) as f:
        c = json.load(f)
    c.pop("layers_block_type", None)
    c.pop("layer_types", None)
    c["hybrid_override_pattern"] = pattern
    c["num_hidden_layers"] = len(pattern)
    for new, old in (("n_groups", "mamba_n_groups"), ("conv_kernel", "mamba_d_conv"),
                     ("expand", "mamba_expand"), ("chunk_size", "mamba_chunk_size"),
                     ("use_conv_bias", "mamba_conv_bias")):
        if new in c:
            c[old] = c.pop(new)
    c["time_step_limit"] = [0.0, float("inf")]  # json writes Infinity, as real configs have
    with open(path, "w") as f:
        json.dump(c, f, indent=2)


def save_checkpoint(model, spec, out):
    dtype = getattr(torch, spec["dtype"])
    fp32_params = {n: p.detach().clone() for n, p in model.named_parameters()}
    m = model.to(dtype)
    kw = {"max_shard_size": "40KB"} if spec["shard"] else {}
    m.save_pretrained(out, safe_serialization=True, **kw)
    model.float()
    if spec["fp32_ssm_params"]:
        sd = load_file(os.path.join(out, "model.safetensors"))
        sd2 = {}
        named = fp32_params
        for k, v in sd.items():
            if k.split(".")[-1] in ("A_log", "D", "dt_bias"):
                # find the parameter with the same suffix in the fp32 model
                cand = [n for n in named if n.split(".", 1)[1] == k.split(".", 1)[1]]
                assert len(cand) == 1, (k, cand)
                sd2[k] = named[cand[0]].float().contiguous()
            else:
                sd2[k] = v
        save_file(sd2, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    if spec["legacy_config"]:
        rewrite_legacy_config(os.path.join(out, "config.json"), spec["cfg"]["pattern"])


def make_fixture(spec, outdir, seed):
    out = os.path.join(outdir, spec["name"])
    shutil.rmtree(out, ignore_errors=True)
    model, cfg = make_model(spec, seed)
    save_checkpoint(model, spec, out)
    # Reload what was written, so the reference is computed from the files serpent reads.
    cls = type(model)
    model = cls.from_pretrained(out, torch_dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(seed + 1)
    ref = {"transformers": transformers.__version__, "torch": torch.__version__,
           "arch": spec["arch"], "storage_dtype": spec["dtype"], "prompts": []}
    cases = [(None, None, torch.randint(0, cfg.vocab_size, (n,), generator=g).tolist())
             for n in PROMPT_LENGTHS]
    sp = None
    if spec.get("tokenizer"):
        sp, cases = tokenizer_cases(spec, out)
    for k, (text, messages, ids) in enumerate(cases):
        n = len(ids)
        logits = full_logits(model, ids)
        fname = f"logits_{k}.f32"
        logits.numpy().astype("<f4").tofile(os.path.join(out, fname))
        gen = greedy(model, ids, GREEDY_TOKENS)
        # Margins from an uncached forward over prompt + continuation.
        all_logits = full_logits(model, ids + gen)
        margins = []
        uncached_agrees = True
        for i, t in enumerate(gen):
            row = all_logits[len(ids) - 1 + i]
            top2 = torch.topk(row, 2)
            margins.append(float(top2.values[0] - top2.values[1]))
            if int(top2.indices[0]) != t:
                uncached_agrees = False
        entry = {"ids": ids, "logits": fname, "greedy": gen, "margins": margins,
                 "uncached_agrees": uncached_agrees}
        if text is not None:
            entry["text"] = text
            entry["greedy_text"] = sp.decode(gen)
        if messages is not None:
            entry["messages"] = messages
        ref["prompts"].append(entry)
        print(f"{spec['name']}: prompt {n}: greedy {gen[:8]}... min margin {min(margins):.3f} "
              f"uncached agrees {uncached_agrees}", flush=True)
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(ref, f)


def tokenizer_cases(spec, out):
    """Copies the SentencePiece model, writes tokenizer_config.json, and returns the prompts:
    plain texts (BOS + pieces, as add_bos_token says) and chats rendered with the template."""
    import jinja2
    import sentencepiece
    shutil.copy(spec["tokenizer"], os.path.join(out, "tokenizer.model"))
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>",
                   "eos_token": "</s>", "unk_token": "<unk>", "chat_template": CHAT_TEMPLATE,
                   "model_max_length": 4096}, f, indent=2)
    sp = sentencepiece.SentencePieceProcessor(model_file=spec["tokenizer"])
    cases = [(t, None, [sp.bos_id()] + sp.encode(t)) for t in TEXT_PROMPTS]
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    for msgs in CHATS:
        text = env.from_string(CHAT_TEMPLATE).render(messages=msgs, add_generation_prompt=True)
        cases.append((text, msgs, [sp.bos_id()] + sp.encode(text)))
    return sp, cases


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()
    os.makedirs(a.outdir, exist_ok=True)
    torch.set_grad_enabled(False)
    print("transformers", transformers.__version__, "torch", torch.__version__, flush=True)
    for i, spec in enumerate(SPECS):
        if a.only and spec["name"] not in a.only:
            continue
        make_fixture(spec, a.outdir, a.seed + 100 * i)


if __name__ == "__main__":
    sys.exit(main())
