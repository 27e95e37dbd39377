#!/usr/bin/env python3
"""tools/convert_megatron.py on synthetic checkpoints in Megatron-LM's exact legacy layout.

    test_convert.py SERPENT_BINARY

For each case the test draws known weights in Hugging Face Nemotron-H form, then
  1. writes them as a Megatron checkpoint with torch.save: Megatron's key names, the pre-norms fused
     into TransformerEngine's linears, QKV fused and interleaved per query group, _extra_state
     entries, a saved argparse.Namespace `args` (holding a Megatron enum this machine cannot
     import), split over the tensor-parallel ranks the way Megatron splits each tensor;
  2. writes the same weights directly as a Nemotron-H folder (HF names, the fixtures' layout of
     tests/reference/make_fixtures.py, its own safetensors writer);
  3. converts (1) with the converter's command line and scores the same ids with `serpent score
     --logits-out` on (2) and on the converted folder: the logits must agree within 1e-5 relative
     (max |difference| / max |logit|);
  4. computes the logits a second way, in float64, straight from the Megatron shards as Megatron
     computes them rank by rank (the mixer's [z, x, B, C, dt] split, the grouped QKV view of
     get_query_key_value_tensors, the row-parallel sums, the vocab-parallel embedding and output
     layer), and holds serpent's logits on the converted folder to those within 5e-5 (float32
     rounding).
Cases: TP = 1 in the released checkpoints' layout (a separate Mamba pre-norm, mid-2024 args with no
mamba_* entries, so the mixer defaults d_state 128 / headdim 64 / 8 groups apply; A_log and D in
fp32) and TP = 2 in the later layout (Mamba pre-norm fused into in_proj, mamba_* args, the pattern
derived from --hybrid-attention-ratio / --hybrid-mlp-ratio, padded vocabulary split over ranks),
plus an all-Mamba checkpoint (the pure mamba2-8b's kind) with the output layer tied to the
embedding.
The negative check converts the TP = 1 weights with their QKV rows fused in plain [q | k | v] order
instead of per group: its logits must differ from the Nemotron-H folder's. The converted folders
must tokenize like Megatron's GPTSentencePieceTokenizer (encode_as_ids, no BOS, eod = eos), and
checkpoints the converter cannot understand must be refused, naming the key or argument.
"""
import argparse
import collections
import enum
import io
import json
import math
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import types

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CONVERTER = os.path.join(ROOT, "tools", "convert_megatron.py")
SPM = os.path.join(ROOT, "tests", "reference", "tokenizer_fx.model")
TOL = 1e-5  # the converted folder vs the same weights written as a Nemotron-H folder
# serpent's float32 CPU engine vs the float64 Megatron computation: ~1e-6..1e-5 of rounding; the
# slips this guards against cost more (measured on these cases: clamping dt at 0.001 as
# Nemotron-H's default time_step_min does ~2e-3, tanh-GELU 2e-4..1e-3, another MLP activation or
# norm epsilon 1e-2..0.6, a wrong QKV or in_proj order ~1)
TOL_F64 = 5e-5

CASES = [
    dict(name="tp1", tp=1, hidden=256, pattern="M*-M-*M-", ratios=None, heads=4, groups=2, kv=32,
         ffn=384, mamba_args=False, d_state=128, head_dim=64, m_groups=8, fused_mamba_norm=False,
         fp32_ssm=True, divisible=128, release=True, tokenizer_flag=True),
    dict(name="tp2", tp=2, hidden=64, pattern=None, ratios=(0.25, 0.25), n_layers=8, heads=4,
         groups=2, kv=16, ffn=96, mamba_args=True, d_state=16, head_dim=16, m_groups=4,
         fused_mamba_norm=True, fp32_ssm=False, divisible=96, release=False, tokenizer_flag=False),
    # the pure Mamba-2 sibling (mamba2-8b-3t-4k's shape of checkpoint): no attention or MLP layer;
    # here with the output layer tied to the embedding, which Megatron then does not save
    dict(name="pure_tied", tp=1, hidden=64, pattern="MMM", ratios=None, heads=4, groups=4, kv=16,
         ffn=64, mamba_args=True, d_state=16, head_dim=16, m_groups=2, fused_mamba_norm=False,
         fp32_ssm=False, divisible=128, release=True, tokenizer_flag=None, tied=True),
]
PROMPTS = [[5, 77, 300], None]  # None: 37 random ids
TEXTS = ["Hello", "The license grants you the right to",
         "Copyright (C) 2007 Free Software Foundation, Inc. Everyone is permitted to copy.",
         "\u00e9t\u00e9 \u2014 caf\u00e9 na\u00efve \u4f60\u597d", "  two  spaces\tand a tab", ""]

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


# ---------------------------------------------------------------------------------------------
# Known weights, Hugging Face Nemotron-H names

def pattern_of(case):
    if case["pattern"]:
        return case["pattern"]
    # Megatron's allocation for 8 layers, attention 0.25, MLP 0.25 (allocate_layers): checked
    # against the converter's own derivation by the conversion succeeding with these keys.
    return "MM*-M*M-"


def make_weights(case, vocab, seed):
    g = torch.Generator().manual_seed(seed)
    d, pat = case["hidden"], pattern_of(case)
    di = 2 * d
    H, G, N = di // case["head_dim"], case["m_groups"], case["d_state"]
    conv_dim = di + 2 * G * N
    qd, kvd = case["heads"] * case["kv"], case["groups"] * case["kv"]

    def lin(o, i):
        return torch.randn(o, i, generator=g) / math.sqrt(i)

    def normw(n):
        return 1 + 0.3 * torch.randn(n, generator=g)

    w = {"backbone.embeddings.weight": torch.randn(vocab, d, generator=g)}
    for i, kind in enumerate(pat):
        p = f"backbone.layers.{i}."
        w[p + "norm.weight"] = normw(d)
        m = p + "mixer."
        if kind == "M":
            w[m + "in_proj.weight"] = lin(2 * di + 2 * G * N + H, d)
            w[m + "conv1d.weight"] = 0.6 * torch.randn(conv_dim, 1, 4, generator=g)
            w[m + "conv1d.bias"] = 0.1 * torch.randn(conv_dim, generator=g)
            w[m + "dt_bias"] = torch.rand(H, generator=g) * 5 - 5.5
            w[m + "A_log"] = torch.log(torch.rand(H, generator=g) * 15 + 1)
            w[m + "D"] = torch.randn(H, generator=g)
            w[m + "norm.weight"] = normw(di)
            w[m + "out_proj.weight"] = lin(d, di)
        elif kind == "*":
            w[m + "q_proj.weight"] = lin(qd, d)
            w[m + "k_proj.weight"] = lin(kvd, d)
            w[m + "v_proj.weight"] = lin(kvd, d)
            w[m + "o_proj.weight"] = lin(d, qd)
        else:
            w[m + "up_proj.weight"] = lin(case["ffn"], d)
            w[m + "down_proj.weight"] = lin(d, case["ffn"])
    w["backbone.norm_f.weight"] = normw(d)
    w["lm_head.weight"] = w["backbone.embeddings.weight"] if case.get("tied") else 3 * lin(vocab, d)
    for k in w:  # storage dtypes: bf16, the SSM parameters fp32 where the case says
        keep32 = case["fp32_ssm"] and k.rsplit(".", 1)[-1] in ("A_log", "D")
        w[k] = w[k].float() if keep32 else w[k].to(torch.bfloat16)
    return w


def write_st(path, tensors):
    """A plain safetensors writer (this machine has no safetensors package)."""
    names = {torch.bfloat16: "BF16", torch.float16: "F16", torch.float32: "F32"}
    header, blobs, off = {}, [], 0
    for k in sorted(tensors):
        t = tensors[k].contiguous()
        raw = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()
        header[k] = {"dtype": names[t.dtype], "shape": list(t.shape),
                     "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def st_dtypes(folder):
    """{tensor name: safetensors dtype} over a folder's safetensors files."""
    out = {}
    for fn in os.listdir(folder):
        if fn.endswith(".safetensors"):
            with open(os.path.join(folder, fn), "rb") as f:
                n = struct.unpack("<Q", f.read(8))[0]
                h = json.loads(f.read(n))
            out.update({k: v["dtype"] for k, v in h.items() if k != "__metadata__"})
    return out


def write_reference_folder(out, case, w, vocab):
    """The weights as a Nemotron-H folder, config in the spelling of NVIDIA's published configs
    (hybrid_override_pattern, mamba_* keys), as the nemotron_h_pattern fixture has it."""
    os.makedirs(out)
    d = case["hidden"]
    cfg = {"architectures": ["NemotronHForCausalLM"], "model_type": "nemotron_h",
           "vocab_size": vocab, "hidden_size": d, "hybrid_override_pattern": pattern_of(case),
           "num_hidden_layers": len(pattern_of(case)), "num_attention_heads": case["heads"],
           "num_key_value_heads": case["groups"], "attention_head_dim": case["kv"],
           "intermediate_size": case["ffn"], "mlp_hidden_act": "gelu", "mlp_bias": False,
           "attention_bias": False, "mamba_num_heads": 2 * d // case["head_dim"],
           "mamba_head_dim": case["head_dim"], "ssm_state_size": case["d_state"],
           "mamba_n_groups": case["m_groups"], "mamba_d_conv": 4, "mamba_expand": 2,
           "mamba_chunk_size": 128, "mamba_conv_bias": True, "use_bias": False,
           "mamba_hidden_act": "silu", "mamba_dt_min": 0.0, "layer_norm_epsilon": 1e-5,
           "residual_in_fp32": False, "tie_word_embeddings": False, "bos_token_id": 1,
           "eos_token_id": 2, "pad_token_id": 0}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    write_st(os.path.join(out, "model.safetensors"), w)


# ---------------------------------------------------------------------------------------------
# The same weights in Megatron's layout

class _FakeMegatron:
    """megatron.core.enums.ModelType, so that the saved args hold what Megatron's hold (training.py
    sets args.model_type); the converter's process cannot import it."""

    @staticmethod
    def install():
        if "megatron.core.enums" in sys.modules:
            return sys.modules["megatron.core.enums"].ModelType
        names = ["megatron", "megatron.core", "megatron.core.enums"]
        mods = [types.ModuleType(n) for n in names]
        for n, m in zip(names, mods):
            sys.modules[n] = m

        class ModelType(enum.Enum):
            encoder_or_decoder = 1
            encoder_and_decoder = 2
        ModelType.__module__ = "megatron.core.enums"
        ModelType.__qualname__ = "ModelType"
        mods[2].ModelType = ModelType
        return ModelType


def te_extra_state(kind):
    """TransformerEngine modules save their FP8 metadata: io.BytesIO in the 2024 releases, a uint8
    tensor in newer ones; Megatron's own parallel linears save None."""
    if kind == "bytes":
        b = io.BytesIO()
        torch.save(None, b)
        b.seek(0)
        return b
    if kind == "tensor":
        return torch.tensor(list(b"\x80\x04N."), dtype=torch.uint8)
    return None


def interleave_qkv(q, k, v, heads, groups, kv):
    """Megatron's fused QKV rows: for each query group, its query heads, then its key, then its
    value (the order get_query_key_value_tensors views them in)."""
    per = heads // groups
    rows = []
    for gi in range(groups):
        rows += [q[gi * per * kv:(gi + 1) * per * kv], k[gi * kv:(gi + 1) * kv],
                 v[gi * kv:(gi + 1) * kv]]
    return torch.cat(rows, 0)


def chunk(t, tp, r, dim=0):
    return torch.chunk(t, tp, dim=dim)[r].clone()


def megatron_state_dicts(case, w, wrong_qkv=False):
    tp, d, pat = case["tp"], case["hidden"], pattern_of(case)
    di = 2 * d
    H, G, N = di // case["head_dim"], case["m_groups"], case["d_state"]
    new_te = case["fused_mamba_norm"]  # the later TE layout also for the mixer's linears
    sds = []
    for r in range(tp):
        sd = collections.OrderedDict()
        sd["embedding.word_embeddings.weight"] = chunk(w["backbone.embeddings.weight"], tp, r)
        for i, kind in enumerate(pat):
            p, o = f"decoder.layers.{i}.", f"backbone.layers.{i}."
            if kind == "M":
                m, om = p + "mixer.", o + "mixer."
                if not case["fused_mamba_norm"]:
                    sd[p + "norm.weight"] = w[o + "norm.weight"].clone()
                else:
                    sd[m + "in_proj.layer_norm_weight"] = w[o + "norm.weight"].clone()
                z, x, B, C, dt = torch.split(w[om + "in_proj.weight"], [di, di, G * N, G * N, H])
                sd[m + "in_proj.weight"] = torch.cat(
                    [chunk(z, tp, r), chunk(x, tp, r), chunk(B, tp, r), chunk(C, tp, r),
                     chunk(dt, tp, r)])
                sd[m + "in_proj._extra_state"] = te_extra_state("bytes" if new_te else None)
                for s in ("conv1d.weight", "conv1d.bias"):
                    cx, cB, cC = torch.split(w[om + s], [di, G * N, G * N])
                    sd[m + s] = torch.cat([chunk(cx, tp, r), chunk(cB, tp, r), chunk(cC, tp, r)])
                for s in ("dt_bias", "A_log", "D", "norm.weight"):
                    sd[m + s] = chunk(w[om + s], tp, r)
                sd[m + "out_proj.weight"] = chunk(w[om + "out_proj.weight"], tp, r, dim=1)
                sd[m + "out_proj._extra_state"] = te_extra_state("tensor" if new_te else None)
            elif kind == "*":
                a, om = p + "self_attention.", o + "mixer."
                q, k, v = (w[om + s + "_proj.weight"] for s in "qkv")
                if wrong_qkv:
                    fused = torch.cat([q, k, v], 0)
                else:
                    fused = interleave_qkv(q, k, v, case["heads"], case["groups"], case["kv"])
                sd[a + "linear_qkv.layer_norm_weight"] = w[o + "norm.weight"].clone()
                sd[a + "linear_qkv.weight"] = chunk(fused, tp, r)
                sd[a + "linear_qkv._extra_state"] = te_extra_state("bytes")
                sd[a + "core_attention._extra_state"] = te_extra_state("bytes")
                sd[a + "linear_proj.weight"] = chunk(w[om + "o_proj.weight"], tp, r, dim=1)
                sd[a + "linear_proj._extra_state"] = te_extra_state("bytes")
            else:
                f, om = p + "mlp.", o + "mixer."
                sd[f + "linear_fc1.layer_norm_weight"] = w[o + "norm.weight"].clone()
                sd[f + "linear_fc1.weight"] = chunk(w[om + "up_proj.weight"], tp, r)
                sd[f + "linear_fc1._extra_state"] = te_extra_state("bytes")
                sd[f + "linear_fc2.weight"] = chunk(w[om + "down_proj.weight"], tp, r, dim=1)
                sd[f + "linear_fc2._extra_state"] = te_extra_state("bytes")
        sd["decoder.final_norm.weight"] = w["backbone.norm_f.weight"].clone()
        if not case.get("tied"):
            sd["output_layer.weight"] = chunk(w["lm_head.weight"], tp, r)
        sd["output_layer._extra_state"] = None
        sds.append(sd)
    return sds


def megatron_args(case, vocab):
    ModelType = _FakeMegatron.install()
    a = argparse.Namespace(
        num_layers=len(pattern_of(case)), hidden_size=case["hidden"], ffn_hidden_size=case["ffn"],
        num_attention_heads=case["heads"], group_query_attention=True,
        num_query_groups=case["groups"], kv_channels=case["kv"], position_embedding_type="none",
        normalization="RMSNorm", norm_epsilon=1e-5, add_bias_linear=False, swiglu=False,
        squared_relu=False, apply_layernorm_1p=False,
        tensor_model_parallel_size=case["tp"], pipeline_model_parallel_size=1,
        virtual_pipeline_model_parallel_size=None, num_experts=None,
        make_vocab_size_divisible_by=case["divisible"], padded_vocab_size=vocab,
        tokenizer_type="GPTSentencePieceTokenizer",
        tokenizer_model="/lustre/fsw/mt_nlg_plus_multilingual_ja_zh_the_stack_frac_015_256k.model",
        seq_length=4096, max_position_embeddings=4096, bf16=True, fp16=False,
        params_dtype=torch.bfloat16, model_type=ModelType.encoder_or_decoder,
        untie_embeddings_and_output_weights=not case.get("tied"),
        spec=["megatron.core.models.mamba.mamba_layer_specs", "mamba_stack_spec"],
        use_mcore_models=True, iteration=0 if case["release"] else 1000,
        hybrid_override_pattern=case["pattern"],
        hybrid_attention_ratio=case["ratios"][0] if case["ratios"] else 0.0,
        hybrid_mlp_ratio=case["ratios"][1] if case["ratios"] else 0.0)
    if case["mamba_args"]:
        a.mamba_state_dim, a.mamba_head_dim = case["d_state"], case["head_dim"]
        a.mamba_num_groups = case["m_groups"]
    return a


def save_megatron(ckpt, case, sds, args):
    """Megatron's legacy layout (megatron/training/checkpointing.py get_checkpoint_name)."""
    os.makedirs(ckpt)
    sub = "release" if case["release"] else "iter_{:07d}".format(args.iteration)
    with open(os.path.join(ckpt, "latest_checkpointed_iteration.txt"), "w") as f:
        f.write("release" if case["release"] else str(args.iteration))
    for r, sd in enumerate(sds):
        d = os.path.join(ckpt, sub, "mp_rank_{:02d}".format(r))
        os.makedirs(d)
        state = {"args": args, "checkpoint_version": 3.0, "iteration": args.iteration,
                 "model": sd, "num_floating_point_operations_so_far": 0,
                 "rng_state": [{"random_rng_state": random.getstate(),
                                "np_rng_state": np.random.get_state(),
                                "torch_rng_state": torch.get_rng_state(),
                                "rng_tracker_states": {}}]}
        torch.save(state, os.path.join(d, "model_optim_rng.pt"))


# ---------------------------------------------------------------------------------------------
# Megatron's computation, rank by rank, in float64

def rms(x, w, eps=1e-5):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def mamba_rank(sd, m, x, tp, case):
    f = lambda k: sd[m + k].double()
    H = sd[m + "A_log"].shape[0]
    di = sd[m + "norm.weight"].shape[0]
    G = case["m_groups"] // tp
    N = case["d_state"]
    P = di // H
    T = x.shape[0]
    z, xBC, dt = torch.split(x @ f("in_proj.weight").T, [di, di + 2 * G * N, H], dim=-1)
    cw = f("conv1d.weight")
    K = cw.shape[-1]
    xBC = F.silu(F.conv1d(xBC.T[None], cw, f("conv1d.bias"), padding=K - 1,
                          groups=cw.shape[0])[0, :, :T].T)
    xs, B, C = torch.split(xBC, [di, G * N, G * N], dim=-1)
    A = -torch.exp(f("A_log"))
    dt = F.softplus(dt + f("dt_bias"))  # Megatron applies no dt limit
    grp = torch.arange(H) // (H // G)
    state = torch.zeros(H, P, N, dtype=torch.float64)
    ys = []
    for t in range(T):
        xt = xs[t].view(H, P)
        Bt, Ct = B[t].view(G, N)[grp], C[t].view(G, N)[grp]
        state = torch.exp(dt[t] * A)[:, None, None] * state \
            + dt[t][:, None, None] * xt[:, :, None] * Bt[:, None, :]
        ys.append(((state * Ct[:, None, :]).sum(-1) + f("D")[:, None] * xt).reshape(di))
    y = torch.stack(ys) * F.silu(z)  # norm_before_gate=False: gate, then the grouped RMSNorm
    y = rms(y.view(T, G, di // G), 1.0).reshape(T, di) * f("norm.weight")
    return y @ f("out_proj.weight").T


def attention_rank(sd, a, x, tp, case):
    T = x.shape[0]
    np_, ng, hn = case["heads"] // tp, case["groups"] // tp, case["kv"]
    mixed = (x @ sd[a + "linear_qkv.weight"].double().T).view(T, ng, (np_ // ng + 2) * hn)
    q, k, v = torch.split(mixed, [np_ // ng * hn, hn, hn], dim=-1)
    q = q.reshape(T, np_, hn)
    k = k.repeat_interleave(np_ // ng, dim=1)
    v = v.repeat_interleave(np_ // ng, dim=1)
    s = torch.einsum("thd,shd->hts", q, k) / math.sqrt(hn)
    s = s.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
    ctx = torch.einsum("hts,shd->thd", torch.softmax(s, -1), v).reshape(T, np_ * hn)
    return ctx @ sd[a + "linear_proj.weight"].double().T


def megatron_logits(sds, case, ids):
    tp = len(sds)
    vl = sds[0]["embedding.word_embeddings.weight"].shape[0]
    h = torch.zeros(len(ids), case["hidden"], dtype=torch.float64)
    for r, sd in enumerate(sds):  # vocab-parallel embedding: each rank looks up its rows, summed
        emb = sd["embedding.word_embeddings.weight"].double()
        for t, i in enumerate(ids):
            if r * vl <= i < (r + 1) * vl:
                h[t] += emb[i - r * vl]
    for i, kind in enumerate(pattern_of(case)):
        p = f"decoder.layers.{i}."
        if kind == "M":
            nk = p + ("mixer.in_proj.layer_norm_weight" if case["fused_mamba_norm"] else
                      "norm.weight")
            x = rms(h, sds[0][nk].double())
            h = h + sum(mamba_rank(sd, p + "mixer.", x, tp, case) for sd in sds)
        elif kind == "*":
            a = p + "self_attention."
            x = rms(h, sds[0][a + "linear_qkv.layer_norm_weight"].double())
            h = h + sum(attention_rank(sd, a, x, tp, case) for sd in sds)
        else:
            f = p + "mlp."
            x = rms(h, sds[0][f + "linear_fc1.layer_norm_weight"].double())
            h = h + sum(F.gelu(x @ sd[f + "linear_fc1.weight"].double().T)
                        @ sd[f + "linear_fc2.weight"].double().T for sd in sds)
    h = rms(h, sds[0]["decoder.final_norm.weight"].double())
    out = "embedding.word_embeddings.weight" if case.get("tied") else "output_layer.weight"
    return torch.cat([h @ sd[out].double().T for sd in sds], dim=1)


# ---------------------------------------------------------------------------------------------

def serpent_logits(serpent, model, ids, tmp):
    out = os.path.join(tmp, "logits.f32")
    r = subprocess.run([serpent, "score", "--model", model, "--prompt-ids",
                        ",".join(map(str, ids)), "--logits-out", out, "--backend", "cpu",
                        "--threads", "2"], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"serpent score --model {model} failed: {r.stderr.strip()}")
    with open(os.path.join(model, "config.json")) as f:
        vocab = json.load(f)["vocab_size"]
    return torch.from_numpy(np.fromfile(out, dtype="<f4").reshape(len(ids), vocab).copy())


def rel_err(a, b):
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


def run_converter(ckpt, out, extra=()):
    r = subprocess.run([sys.executable, CONVERTER, ckpt, out, *extra], capture_output=True,
                       text=True)
    return r.returncode, r.stderr


def spm_ids(lines_file, extra=()):
    """What GPTSentencePieceTokenizer.tokenize returns (encode_as_ids) for each line: through the
    sentencepiece module where it is installed, as Megatron calls it, else its spm_encode."""
    try:
        import sentencepiece
    except ImportError:
        r = subprocess.run(["spm_encode", "--model=" + SPM, "--output_format=id", *extra],
                           stdin=open(lines_file), capture_output=True, text=True, check=True)
        return r.stdout
    sp = sentencepiece.SentencePieceProcessor(model_file=SPM)
    with open(lines_file, encoding="utf-8") as f:
        lines = f.read().split("\n")[:-1]
    eos = [sp.eos_id()] if extra else []
    return "".join(" ".join(map(str, sp.encode_as_ids(t) + eos)) + "\n" for t in lines)


def check_tokenizer(serpent, out, tmp, name):
    lines = os.path.join(tmp, "lines.txt")
    with open(lines, "w", encoding="utf-8") as f:
        f.write("\n".join(TEXTS) + "\n")
    ref = spm_ids(lines)
    got = subprocess.run([serpent, "tokenize", "--model", out, "--add-special-tokens", "--file",
                          lines], capture_output=True, text=True)
    check(got.returncode == 0 and got.stdout == ref,
          f"{name}: the converted folder tokenizes {len(TEXTS)} lines like "
          "GPTSentencePieceTokenizer (encode_as_ids, no BOS added)")
    empty = os.path.join(tmp, "empty.txt")
    with open(empty, "w") as f:
        f.write("\n")
    eos = int(spm_ids(empty, ["--extra_options=eos"]).split()[-1])
    with open(os.path.join(out, "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(out, "tokenizer_config.json")) as f:
        tc = json.load(f)
    with open(os.path.join(out, "generation_config.json")) as f:
        gen = json.load(f)
    check(cfg.get("eos_token_id") == eos == gen.get("eos_token_id")
          and tc.get("add_bos_token") is False and tc.get("eos_token") == "</s>",
          f"{name}: eod is the model's eos ({eos}) in config.json, generation_config.json and "
          "tokenizer_config.json; add_bos_token false")


def check_refusals(case, w, vocab, tmp):
    sys.path.insert(0, os.path.dirname(CONVERTER))
    import convert_megatron as cm

    def attempt(label, mutate_sd=None, mutate_args=None, want=(), accept=False):
        sds = megatron_state_dicts(case, w)
        args = megatron_args(case, vocab)
        if mutate_sd:
            mutate_sd(sds[0])
        if mutate_args:
            mutate_args(args)
        ckpt = os.path.join(tmp, "refuse_" + label)
        save_megatron(ckpt, case, sds, args)
        try:
            hp = cm.convert(ckpt, os.path.join(tmp, "refuse_out_" + label), log=lambda m: None)
            msg = None
        except cm.ConversionError as e:
            msg = str(e)
        if accept:
            check(msg is None and hp["pattern"] == pattern_of(case),
                  f"accepted ({label}): pattern {hp['pattern'] if msg is None else msg}")
            return
        check(msg is not None and all(s in msg for s in want),
              f"refused ({label}), naming {', '.join(want)}" + ("" if msg else ": not refused"))

    def extra_keys(sd):
        sd["decoder.layers.0.mixer.x_proj.weight"] = torch.zeros(4, 4)
        sd["embedding.position_embeddings.weight"] = torch.zeros(8, case["hidden"])

    attempt("unexpected keys", mutate_sd=extra_keys,
            want=("unexpected key decoder.layers.0.mixer.x_proj.weight",
                  "unexpected key embedding.position_embeddings.weight"))
    attempt("missing key",
            mutate_sd=lambda sd: sd.pop("decoder.layers.1.self_attention.linear_proj.weight"),
            want=("missing key decoder.layers.1.self_attention.linear_proj.weight",))
    attempt("bad shape", mutate_sd=lambda sd: sd.__setitem__(
        "decoder.layers.0.mixer.in_proj.weight", sd["decoder.layers.0.mixer.in_proj.weight"][:-1]),
        want=("decoder.layers.0.mixer.in_proj.weight has shape",))
    attempt("squared relu", mutate_args=lambda a: setattr(a, "squared_relu", True),
            want=("args.squared_relu",))
    attempt("rope", mutate_args=lambda a: setattr(a, "position_embedding_type", "rope"),
            want=("args.position_embedding_type",))
    attempt("pattern", mutate_args=lambda a: setattr(a, "hybrid_override_pattern", "M*-M-*ME"),
            want=("args.hybrid_override_pattern", "'E'"))
    attempt("pattern against keys",
            mutate_args=lambda a: setattr(a, "hybrid_override_pattern", "M-*M-*M-"),
            want=("args.hybrid_override_pattern gives the layer pattern 'M-*M-*M-'",
                  "keys hold 'M*-M-*M-'"))

    def drop_hybrid_args(a):
        for k in ("hybrid_override_pattern", "hybrid_attention_ratio", "hybrid_mlp_ratio"):
            delattr(a, k)
    attempt("no hybrid args: the pattern from the keys", mutate_args=drop_hybrid_args,
            accept=True)


def run_case(case, serpent, tmp, seed):
    name = case["name"]
    vocab_spm = 512
    mult = case["divisible"] * case["tp"]
    vocab = -(-vocab_spm // mult) * mult  # Megatron's _vocab_size_with_padding
    w = make_weights(case, vocab, seed)
    sds = megatron_state_dicts(case, w)
    args = megatron_args(case, vocab)
    ckpt, out, ref = (os.path.join(tmp, name + s) for s in ("_megatron", "_converted", "_hf"))
    save_megatron(ckpt, case, sds, args)
    extra = ["--tokenizer", SPM] if case["tokenizer_flag"] else []
    if case["tokenizer_flag"] is False:  # the hub repositories keep the .model beside the weights
        shutil.copy(SPM, os.path.join(ckpt, "mt_nlg_like_tokenizer.model"))
    if case["tp"] > 1:
        extra += ["--max-shard-size", "200KB"]  # several shards and the index
    rc, err = run_converter(ckpt, out, extra)
    check(rc == 0, f"{name}: converted ({err.strip().splitlines()[-1] if err.strip() else ''})")
    if rc:
        print(err)
        return
    check("stood in for classes" in err and "megatron.core.enums.ModelType" in err,
          f"{name}: the saved args' Megatron enum unpickled without Megatron")
    with open(os.path.join(out, "config.json")) as f:
        cfg = json.load(f)
    check(cfg["hybrid_override_pattern"] == pattern_of(case) and cfg["vocab_size"] == vocab
          and cfg["mlp_hidden_act"] == "gelu"
          and cfg["tie_word_embeddings"] is bool(case.get("tied")),
          f"{name}: config.json: pattern {cfg['hybrid_override_pattern']}, padded vocab "
          f"{cfg['vocab_size']}, gelu MLP, {'tied' if case.get('tied') else 'untied'} head")
    if case["tp"] > 1:
        check(os.path.exists(os.path.join(out, "model.safetensors.index.json")),
              f"{name}: sharded safetensors with an index")
    dtypes = st_dtypes(out)
    want = {k: "F32" if case["fp32_ssm"] and k.rsplit(".", 1)[-1] in ("A_log", "D") else "BF16"
            for k in w if not (case.get("tied") and k == "lm_head.weight")}
    check(dtypes == want, f"{name}: the converted folder holds exactly the HF names, each in its "
          f"stored dtype (A_log and D {'F32' if case['fp32_ssm'] else 'BF16'})")
    write_reference_folder(ref, case, w, vocab)
    g = torch.Generator().manual_seed(seed + 7)
    for pr in PROMPTS:
        ids = pr if pr else torch.randint(0, vocab_spm, (37,), generator=g).tolist()
        a = serpent_logits(serpent, out, ids, tmp)
        b = serpent_logits(serpent, ref, ids, tmp)
        e = rel_err(a, b)
        check(e <= TOL, f"{name}: {len(ids)} ids: converted vs Nemotron-H folder, relative "
              f"error {e:.2e} (<= {TOL:g})")
        m = megatron_logits(sds, case, ids)
        e2 = rel_err(a, m)
        check(e2 <= TOL_F64, f"{name}: {len(ids)} ids: converted vs Megatron's computation over "
              f"the {case['tp']} shard(s) in float64, relative error {e2:.2e} (<= {TOL_F64:g})")
    if case["tokenizer_flag"] is not None:
        check_tokenizer(serpent, out, tmp, name)
    return w, vocab


def negative_check(case, w, vocab, serpent, tmp):
    sds = megatron_state_dicts(case, w, wrong_qkv=True)
    ckpt, out = os.path.join(tmp, "wrong_megatron"), os.path.join(tmp, "wrong_converted")
    save_megatron(ckpt, case, sds, megatron_args(case, vocab))
    rc, err = run_converter(ckpt, out)
    check(rc == 0, "negative: the [q | k | v]-ordered checkpoint converts (shapes are the same)")
    ref = os.path.join(tmp, case["name"] + "_hf")
    ids = torch.randint(0, 512, (37,), generator=torch.Generator().manual_seed(3)).tolist()
    e = rel_err(serpent_logits(serpent, out, ids, tmp), serpent_logits(serpent, ref, ids, tmp))
    check(e > 100 * TOL, f"negative: QKV not interleaved per group: converted vs Nemotron-H folder "
          f"relative error {e:.2e} fails the {TOL:g} comparison")


def main():
    serpent = os.path.abspath(sys.argv[1])
    print(f"torch {torch.__version__}, python {sys.version.split()[0]}")
    sys.path.insert(0, os.path.dirname(CONVERTER))
    import convert_megatron as cm
    check(cm.allocate_layers(56, 0.08, 0.5) == "M-M-M--M-M*-M-M-M-M--M*-M-M-M-M-M*--M-M-M-M-M*-"
          "M--M-M-M-", "Megatron's layer allocation for 56 layers, ratios 0.08 / 0.5, is the "
          "published mamba2-hybrid-8b pattern")
    check(cm.allocate_layers(8, 0.25, 0.25) == pattern_of(CASES[1]),
          "the tp2 case's pattern is Megatron's allocation for 8 layers, 0.25 / 0.25")
    tmp = tempfile.mkdtemp(prefix="serpent_megatron_")
    try:
        kept = None
        for k, case in enumerate(CASES):
            r = run_case(case, serpent, tmp, 1000 + k)
            if k == 0:
                kept = r
        if kept:
            negative_check(CASES[0], *kept, serpent, tmp)
            check_refusals(CASES[0], *kept, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
