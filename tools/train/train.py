#!/usr/bin/env python3
"""Trains serpent's default model: a small Mamba-2-Hybrid in the Nemotron-H layout, built with
transformers' own NemotronHConfig / NemotronHForCausalLM, on the data prepare_data.sh made.

Runs on the GPU machine (torch + transformers, no network, nothing to install):

    python3 tools/train/train.py --data .traindata --out models/serpent-tiny --smoke
    python3 tools/train/train.py --data .traindata --out models/serpent-tiny --minutes 9
    python3 tools/train/train.py --data .traindata --out models/serpent-tiny --minutes 9 \\
        --resume models/serpent-tiny            # continue in a later call

Training: AdamW, bf16 autocast over fp32 master weights, cosine learning rate with warmup,
windows of --seq tokens cut from the packed token stream (documents back to back, each
<s> ... </s>, so a window may span documents), a fixed-seed order that depends only on the
step, so a resumed run sees the data a single run would have. The learning-rate schedule runs
over this call's wall-clock budget (--minutes, minus time kept for the final save) unless
--total-minutes or --total-steps spread it over several calls.

Held-out perplexity is measured in float32 (no autocast, no TF32) with one forward per held-out
document from a fresh state: exp(sum of the documents' next-token NLL / tokens predicted).
At the end the model is saved in bf16 with save_pretrained, reloaded from disk in float32 and
measured again; that number, with per-document NLL sums, goes to training.json and is what
serpent must reproduce (tests/test_default_model.sh).

Resuming (--resume DIR) loads DIR's bf16 weights and its step count, tokens seen and schedule
position from DIR/training.json. Checkpoints hold weights only: the AdamW moments restart from
zero, so the learning rate warms up again over --rewarmup steps.
"""
import time

T_START = time.time()  # the wall-clock budget counts from here, imports included

import argparse
import copy
import json
import math
import os
import shutil
import sys

import numpy as np
import torch
import torch.nn.functional as F
import transformers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import heldout_ids  # noqa: E402  (same folder; standard library only)

# The default model, about 11.8M parameters (23.6 MB in bf16):
#   17 layers "M-M-M-M*-M-M-M-M-": 8 Mamba-2 mixers, 1 attention layer (1 of 9 mixers, ~11%),
#   8 relu2 MLPs, as Nemotron-H interleaves them; hidden 256; Mamba-2 with 8 heads of 64
#   (inner 512), 2 groups, state 64, conv 4, chunk 64 (transformers' reference SSD path, the one
#   this machine runs, materialises [chunk x chunk] decay blocks per head: a small chunk keeps it
#   fast and light); attention 4 query heads / 2 KV heads of 64 (GQA), no positional encoding
#   (Nemotron-H has none); MLP 896; untied 8192-token embeddings and output.
MODEL = dict(hidden_size=256, pattern="M-M-M-M*-M-M-M-M-", num_attention_heads=4,
             num_key_value_heads=2, head_dim=64, intermediate_size=896, mlp_hidden_act="relu2",
             ssm_state_size=64, mamba_num_heads=8, mamba_head_dim=64, n_groups=2, conv_kernel=4,
             chunk_size=64)
# --smoke: the same kinds of layers, tiny, so that every code path runs in well under a minute.
SMOKE_MODEL = dict(hidden_size=64, pattern="M-M*-M-", num_attention_heads=2,
                   num_key_value_heads=1, head_dim=32, intermediate_size=128,
                   mlp_hidden_act="relu2", ssm_state_size=16, mamba_num_heads=4,
                   mamba_head_dim=32, n_groups=2, conv_kernel=4, chunk_size=32)
MAX_BF16_BYTES = 25e6  # the committed model travels to the GPU machine with the repo
# Files come back from the GPU machine only up to 16 MiB each (and 8 files): the ~24 MB of bf16
# weights are saved in two shards (serpent reads sharded safetensors with their index).
SHARD = "15MB"
# What --export copies (everything else in the folder is remade on the CPU machine: the
# tokenizer files come from the data folder, heldout_ids.txt from heldout_ids.py).
EXPORT = ("config.json", "generation_config.json", "training.json")


def log(*a):
    print(f"[{time.time() - T_START:7.1f}s]", *a, flush=True)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", default=".traindata", help="prepare_data.sh's output folder")
    ap.add_argument("--out", required=True, help="where to save the model (replaced)")
    ap.add_argument("--resume", help="continue from this saved model folder")
    ap.add_argument("--export", metavar="DIR",
                    help="also copy the files to bring back (config, weights, training.json; at "
                         "most 7, each < 16 MiB) here, e.g. the device machine's $OUT")
    ap.add_argument("--minutes", type=float, default=8.0,
                    help="wall-clock budget of this call, start-up and final save included")
    ap.add_argument("--total-minutes", type=float,
                    help="spread the LR schedule over this many minutes of training loop time, "
                         "summed over resumed calls (default: this call's loop time)")
    ap.add_argument("--total-steps", type=int, help="step-based LR schedule over this many steps")
    ap.add_argument("--batch", type=int, default=32, help="sequences per step")
    ap.add_argument("--seq", type=int, default=512, help="tokens per sequence")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.1, help="final LR / peak LR")
    ap.add_argument("--warmup", type=int, default=200, help="warmup steps")
    ap.add_argument("--rewarmup", type=int, default=50, help="warmup steps after --resume")
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--eval-every", type=float, default=90.0,
                    help="seconds between held-out evaluations")
    ap.add_argument("--heldout-docs", type=int, default=0,
                    help="measure on the first N held-out documents (default: all)")
    ap.add_argument("--no-keep-best", dest="keep_best", action="store_false",
                    help="save the last weights even when an earlier evaluation was better")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--max-steps", type=int, help="stop after this many steps (this call)")
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile the training forward (untried: may fuse the reference "
                         "SSD path's large broadcasts; try it with --smoke first)")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny model, ~20 steps, then a resume of 10 more: checks every path; "
                         "then times a few steps of the real model at --batch x --seq")
    return ap.parse_args(argv)


# ---------------------------------------------------------------- data

def load_tokens(path):
    a = np.fromfile(path, dtype="<i4")
    if a.size == 0:
        sys.exit(f"{path} is empty")
    return torch.from_numpy(a.astype(np.int64))


class Windows:
    """Sequence windows of seq+1 tokens from the packed training stream. Epoch e uses a random
    phase and a random order of the windows, both from (seed, e), so the batch of any step is a
    function of the step alone: a resumed run continues the same data order."""

    def __init__(self, tokens, seq, seed, device):
        self.tokens = tokens.to(device)
        self.seq, self.seed, self.device = seq, seed, device
        self.n = (tokens.numel() - 1 - seq) // seq  # windows per epoch, whatever the phase
        if self.n < 1:
            sys.exit(f"training data ({tokens.numel()} tokens) shorter than two windows")
        self._epoch, self._starts = None, None

    def _epoch_starts(self, e):
        if self._epoch != e:
            g = torch.Generator().manual_seed(self.seed * 1000003 + e)
            phase = int(torch.randint(0, self.seq, (1,), generator=g))
            order = torch.randperm(self.n, generator=g)
            self._starts = (phase + order * self.seq).tolist()
            self._epoch = e
        return self._starts

    def batch(self, step, batch):
        idx = []
        for k in range(step * batch, (step + 1) * batch):
            e, i = divmod(k, self.n)
            idx.append(self._epoch_starts(e)[i])
        starts = torch.tensor(idx, device=self.device)
        offs = torch.arange(self.seq + 1, device=self.device)
        w = self.tokens[starts[:, None] + offs[None, :]]
        return w[:, :-1], w[:, 1:]


# ---------------------------------------------------------------- model

def build_config(spec, vocab):
    c = dict(spec)
    pattern = c.pop("pattern")
    return transformers.NemotronHConfig(
        hybrid_override_pattern=pattern, vocab_size=vocab, use_mamba_kernels=False,
        tie_word_embeddings=False, layer_norm_epsilon=1e-5, residual_in_fp32=False,
        max_position_embeddings=4096, pad_token_id=0, bos_token_id=1, eos_token_id=2, **c)


def pattern_of(config):
    p = getattr(config, "hybrid_override_pattern", None)
    if isinstance(p, str):
        return p
    names = {"mamba": "M", "linear_attention": "M", "attention": "*", "full_attention": "*",
             "mlp": "-", "moe": "E"}
    return "".join(names.get(t, "?") for t in config.layers_block_type)


def count_params(model):
    return sum(p.numel() for p in model.parameters())


def use_exact_fp32():
    """No TF32 anywhere: float32 measurements must be float32 (cuDNN convolutions, conv1d here,
    allow TF32 by default). Training loses nothing: its matmuls run in bf16 under autocast.
    torch >= 2.9 has a new switch and warns about (and may refuse mixing with) the old one."""
    m = torch.backends.cuda.matmul
    try:  # (older torch raises AssertionError, not AttributeError, for unknown names here)
        m.fp32_precision = "ieee"
        torch.backends.cudnn.conv.fp32_precision = "ieee"
    except (AssertionError, AttributeError):
        m.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


@torch.no_grad()
def evaluate(model, docs, device):
    """Per-document (tokens, summed next-token NLL) in float32, one forward per document."""
    was_training = model.training
    model.eval()
    out = []
    for d in docs:
        ids = torch.tensor([d], device=device)
        logits = model(input_ids=ids, use_cache=False).logits[0].float()
        # In float64, as serpent score sums its log-probabilities.
        nll = F.cross_entropy(logits[:-1].double(), ids[0, 1:], reduction="sum")
        out.append((len(d), float(nll)))
    model.train(was_training)
    return out


def perplexity(per_doc):
    nll = sum(s for _, s in per_doc)
    n = sum(t - 1 for t, _ in per_doc)
    return math.exp(nll / n), nll / n, n


# ---------------------------------------------------------------- schedule

class Schedule:
    """Linear warmup, then cosine from lr to lr*min_frac. Progress is step-based with
    --total-steps; with --total-minutes it is the training-loop time spent (this call's and the
    earlier calls') over that total; by default it is this call's loop time over the loop time
    it will have in all (time spent + time left before the final save must start), so the
    schedule ends with the wall-clock budget whatever the GPU's speed."""

    def __init__(self, a, start_step, prior_loop_s):
        self.a, self.start_step, self.prior = a, start_step, prior_loop_s

    def progress(self, step, loop_s, left_s):
        a = self.a
        if a.total_steps:
            return min(1.0, step / a.total_steps)
        if a.total_minutes:
            return min(1.0, (self.prior + loop_s) / (a.total_minutes * 60))
        return min(1.0, loop_s / max(1e-9, loop_s + max(0.0, left_s)))

    def lr(self, step, loop_s, left_s):
        a = self.a
        p = self.progress(step, loop_s, left_s)
        lr = a.lr * (a.min_lr_frac + (1 - a.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * p)))
        warm = min(1.0, (step + 1) / max(1, a.warmup))
        if self.start_step > 0:  # resumed: the optimizer's moments start from zero again
            warm = min(warm, (step - self.start_step + 1) / max(1, a.rewarmup))
        return lr * max(0.0, min(1.0, warm))


# ---------------------------------------------------------------- save / measure

def save_model(model, out, data_dir, info, docs, indices):
    """bf16 save_pretrained + tokenizer files + held-out ids; then reload the files in float32
    and measure the held-out perplexity that training.json records."""
    tmp = out.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    m16 = copy.deepcopy(model).to(torch.bfloat16)
    # <|im_end|> ends an assistant turn: generation may stop there as well as at </s>.
    if getattr(m16, "generation_config", None) is not None:
        m16.generation_config.eos_token_id = [2, 4]
        m16.generation_config.bos_token_id = 1
        m16.generation_config.pad_token_id = 0
    m16.save_pretrained(tmp, safe_serialization=True, max_shard_size=SHARD)
    del m16
    for f in ("tokenizer.model", "tokenizer_config.json"):
        shutil.copy(os.path.join(data_dir, f), os.path.join(tmp, f))
    heldout_ids.write_ids(docs, indices, os.path.join(tmp, "heldout_ids.txt"))
    device = next(model.parameters()).device
    t0 = time.time()
    re = transformers.NemotronHForCausalLM.from_pretrained(tmp, torch_dtype=torch.float32).to(device)
    per_doc = evaluate(re, [docs[i] for i in indices], device)
    del re
    ppl, nll, n = perplexity(per_doc)
    info["heldout"].update({
        "perplexity": ppl, "mean_nll": nll, "tokens_predicted": n,
        "per_doc": [{"index": i, "tokens": t, "nll_sum": s} for i, (t, s) in zip(indices, per_doc)],
        "measured": "the saved bf16 checkpoint reloaded in float32 (no autocast, no TF32), one "
                    "forward per document from a fresh state; perplexity = exp(sum of NLL / "
                    "tokens predicted), tokens predicted = document length - 1",
    })
    with open(os.path.join(tmp, "training.json"), "w") as f:
        json.dump(info, f, indent=1)
        f.write("\n")
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.replace(tmp, out)
    log(f"saved {out}: held-out perplexity {ppl:.4f} (reloaded bf16, fp32; {n} tokens, "
        f"{time.time() - t0:.1f} s)")
    return ppl


def export(src, dst):
    os.makedirs(dst, exist_ok=True)
    names = [f for f in sorted(os.listdir(src))
             if f in EXPORT or f.endswith(".safetensors") or f.endswith(".safetensors.index.json")]
    for f in names:
        size = os.path.getsize(os.path.join(src, f))
        if size >= 16 * 2**20:
            log(f"warning: {f} is {size / 2**20:.1f} MiB: too large to come back from the device")
        shutil.copy(os.path.join(src, f), os.path.join(dst, f))
    log(f"exported {len(names)} files to {dst}: {' '.join(names)}")


# ---------------------------------------------------------------- training

def run(a):
    device = torch.device(a.device)
    use_exact_fp32()
    if device.type != "cuda":
        log(f"warning: training on {device} (no GPU): expect it to be slow")
    torch.manual_seed(a.seed)
    with open(os.path.join(a.data, "data.json")) as f:
        data_info = json.load(f)
    vocab = data_info["tokenizer"]["vocab_size"]
    train_tokens = load_tokens(os.path.join(a.data, "train.bin"))
    held_docs = heldout_ids.read_docs(os.path.join(a.data, "heldout.bin"))
    n_eval = a.heldout_docs or len(held_docs)
    indices = list(range(min(n_eval, len(held_docs))))
    eval_docs = [held_docs[i] for i in indices]
    log(f"data: {train_tokens.numel():,} training tokens, {len(held_docs)} held-out documents "
        f"({len(indices)} measured, {sum(map(len, eval_docs)):,} tokens), vocab {vocab}")

    history, resumed = [], []
    start_step, tokens_seen, prior_loop_s = 0, 0, 0.0
    if a.resume:
        with open(os.path.join(a.resume, "training.json")) as f:
            prev = json.load(f)
        model = transformers.NemotronHForCausalLM.from_pretrained(a.resume, torch_dtype=torch.float32)
        start_step, tokens_seen = prev["steps"], prev["tokens_seen"]
        prior_loop_s = prev.get("loop_seconds", 0.0)
        # Evaluations after the saved step belong to weights that were not kept (--keep-best).
        history = [h for h in prev.get("history", []) if h["step"] <= start_step]
        resumed = prev.get("resumed_at_steps", []) + [start_step]
        if prev.get("data_sha256") != data_info["splits"]["train"]["sha256"]:
            log("warning: the training data differ from those the checkpoint was trained on")
        log(f"resumed from {a.resume} at step {start_step} ({tokens_seen:,} tokens seen); "
            f"AdamW state restarts (weights-only checkpoint), re-warmup {a.rewarmup} steps")
    else:
        cfg = build_config(SMOKE_MODEL if a.smoke else MODEL, vocab)
        model = transformers.NemotronHForCausalLM(cfg)
    model = model.float().to(device).train()
    cfg = model.config
    if cfg.vocab_size != vocab:
        sys.exit(f"model vocab {cfg.vocab_size} != tokenizer vocab {vocab}")
    n_params = count_params(model)
    log(f"model: {n_params:,} parameters ({n_params * 2 / 1e6:.1f} MB bf16), pattern "
        f"{pattern_of(cfg)}, hidden {cfg.hidden_size}; transformers {transformers.__version__}, "
        f"torch {torch.__version__}")
    if n_params * 2 > MAX_BF16_BYTES and not a.smoke:
        log(f"warning: over {MAX_BF16_BYTES / 1e6:.0f} MB in bf16; the repo may not travel")

    # AdamW; no weight decay on vectors (norms, A_log, D, dt_bias, conv biases).
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    fused = {"fused": True} if device.type == "cuda" else {}  # one kernel for all parameters
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8, **fused)
    windows = Windows(train_tokens, a.seq, a.seed, device)
    # Measurements always use the plain module (float32, documents of every length).
    fwd = torch.compile(model) if a.compile else model

    deadline = T_START + a.minutes * 60
    loop_t0 = time.time()
    sched = Schedule(a, start_step, prior_loop_s)
    how = (f"over {a.total_steps} steps" if a.total_steps else
           f"over {a.total_minutes} min of loop time" if a.total_minutes else "over this call")
    log(f"training: batch {a.batch} x {a.seq} tokens, peak LR {a.lr}, cosine schedule {how}, "
        f"budget {a.minutes} min")

    best = None  # (ppl, step, tokens_seen, state_dict on CPU)
    step, last_eval, loss_ema, eval_cost = start_step, time.time(), None, 10.0
    tok_t0, tok_n = time.time(), 0

    def left_s():
        # Kept back for the end: an in-memory evaluation, the save, the reload and its evaluation.
        return deadline - time.time() - max(30.0, 2 * eval_cost + 15)

    def periodic_eval():
        nonlocal best, eval_cost
        t0 = time.time()
        ppl, _, _ = perplexity(evaluate(model, eval_docs, device))
        eval_cost = time.time() - t0
        loop_s = time.time() - loop_t0
        history.append({"step": step, "tokens_seen": tokens_seen, "train_loss": loss_ema,
                        "heldout_ppl": ppl, "lr": sched.lr(step, loop_s, left_s()),
                        "loop_seconds": prior_loop_s + loop_s})
        mark = ""
        if best is None or ppl < best[0]:
            best = (ppl, step, tokens_seen,
                    {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()})
            mark = " (best)"
        log(f"step {step}: held-out perplexity {ppl:.3f}{mark} [{eval_cost:.1f} s]")
        return ppl

    while True:
        loop_s, left = time.time() - loop_t0, left_s()
        if left <= 0:
            log("wall-clock budget reached")
            break
        if sched.progress(step, loop_s, left) >= 1.0 and (a.total_steps or a.total_minutes):
            log("schedule finished")
            break
        if a.max_steps is not None and step - start_step >= a.max_steps:
            break
        lr = sched.lr(step, loop_s, left)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = windows.batch(step, a.batch)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            logits = fwd(input_ids=x, use_cache=False).logits
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), a.grad_clip)
        opt.step()
        step += 1
        tokens_seen += x.numel()
        tok_n += x.numel()
        if step % 10 == 0 or step == start_step + 1:
            lv = loss.item()  # syncs the GPU; only every few steps
            if not math.isfinite(lv):
                sys.exit(f"step {step}: loss is {lv}; lower --lr")
            loss_ema = lv if loss_ema is None else 0.9 * loss_ema + 0.1 * lv
        if step % 50 == 0 or step == start_step + 1:
            dt = time.time() - tok_t0
            mem = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0
            log(f"step {step}: loss {loss_ema:.4f} lr {lr:.2e} |g| {float(gnorm):.2f} "
                f"{tok_n / max(dt, 1e-9):,.0f} tok/s, epoch {tokens_seen / train_tokens.numel():.2f}"
                f", max mem {mem:.1f} GiB")
            tok_t0, tok_n = time.time(), 0
        if time.time() - last_eval >= a.eval_every:
            periodic_eval()
            last_eval = tok_t0 = time.time()  # tokens/s counts training time only
            tok_n = 0

    loop_s = time.time() - loop_t0
    final_ppl = periodic_eval()
    saved_step, saved_tokens, selected = step, tokens_seen, "last"
    if a.keep_best and best is not None and best[0] < final_ppl:
        model.load_state_dict(best[3])
        saved_step, saved_tokens, selected = best[1], best[2], "best"
        log(f"keeping the weights of step {saved_step} (held-out perplexity {best[0]:.3f} < "
            f"{final_ppl:.3f} at step {step})")

    info = {
        "model": {"architecture": "NemotronHForCausalLM", "parameters": n_params,
                  "bf16_megabytes": round(n_params * 2 / 1e6, 2), "pattern": pattern_of(cfg),
                  "hidden_size": cfg.hidden_size, "vocab_size": cfg.vocab_size,
                  "mamba": {"heads": cfg.mamba_num_heads, "head_dim": cfg.mamba_head_dim,
                            "groups": cfg.n_groups, "state": cfg.ssm_state_size,
                            "conv": cfg.conv_kernel, "chunk": cfg.chunk_size},
                  "attention": {"heads": cfg.num_attention_heads,
                                "kv_heads": cfg.num_key_value_heads, "head_dim": cfg.head_dim},
                  "mlp": {"intermediate": cfg.intermediate_size, "act": cfg.mlp_hidden_act}},
        "steps": saved_step,
        "tokens_seen": saved_tokens,
        "epochs": round(saved_tokens / train_tokens.numel(), 3),
        "steps_run": step,
        "selected": selected,
        "loop_seconds": prior_loop_s + loop_s,
        "resumed_at_steps": resumed,
        "optimizer": "AdamW (0.9, 0.95), weight decay %g on matrices; weights-only checkpoints: "
                     "the optimizer state restarts at each resume" % a.weight_decay,
        "hyper": {k: getattr(a, k) for k in ("batch", "seq", "lr", "min_lr_frac", "warmup",
                                              "rewarmup", "weight_decay", "grad_clip", "seed",
                                              "minutes", "total_minutes", "total_steps")},
        "final_train_loss": loss_ema,
        "history": history,
        "heldout": {"docs": len(indices), "of_docs": len(held_docs),
                    "indices": "all" if len(indices) == len(held_docs) else indices,
                    "data_sha256": data_info["splits"]["heldout"]["sha256"]},
        "data_sha256": data_info["splits"]["train"]["sha256"],
        "data": data_info,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "python": sys.version.split()[0]},
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
        "smoke": bool(a.smoke),
    }
    ppl = save_model(model, a.out, a.data, info, held_docs, indices)
    if a.export:
        export(a.out, a.export)
    if abs(ppl - (best[0] if selected == "best" else final_ppl)) > 0.02 * ppl:
        log("warning: the reloaded bf16 model's perplexity differs from the fp32 weights' by "
            "more than 2%")
    return ppl


def bench_full(a, steps=6):
    """A few training steps of the real model at the real batch: time and memory to expect."""
    device = torch.device(a.device)
    with open(os.path.join(a.data, "data.json")) as f:
        vocab = json.load(f)["tokenizer"]["vocab_size"]
    model = transformers.NemotronHForCausalLM(build_config(MODEL, vocab)).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4,
                            **({"fused": True} if device.type == "cuda" else {}))
    windows = Windows(load_tokens(os.path.join(a.data, "train.bin")), a.seq, a.seed, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = None
    for step in range(steps):
        if step == 1:  # the first step pays for allocation and kernel selection
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.time()
        x, y = windows.batch(step, a.batch)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            logits = model(input_ids=x, use_cache=False).logits
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = (time.time() - t0) / (steps - 1)
    mem = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0.0
    tps = a.batch * a.seq / dt
    log(f"full model ({count_params(model):,} parameters), batch {a.batch} x {a.seq}: "
        f"{dt:.3f} s/step, {tps:,.0f} tokens/s, peak memory {mem:.1f} GiB; about "
        f"{tps * 8 * 60 / 1e6:.0f}M tokens in 8 minutes of training")


def main():
    a = parse_args()
    if a.smoke:
        # Phase 1: ~20 steps of a tiny model, saved; phase 2: resume from it for 10 more steps.
        # Exercises data, schedule, evaluation, save, reload and resume in well under a minute.
        a.batch, a.seq, a.heldout_docs, a.eval_every = 4, 128, a.heldout_docs or 4, 5.0
        a.warmup, a.rewarmup, a.max_steps, a.total_steps = 5, 3, 20, 30
        run(a)
        with open(os.path.join(a.out, "training.json")) as f:
            first = json.load(f)["steps"]  # 20, or an earlier step whose evaluation was better
        b = copy.copy(a)
        b.resume, b.max_steps = a.out, 10
        run(b)
        with open(os.path.join(a.out, "training.json")) as f:
            info = json.load(f)
        assert info["resumed_at_steps"] == [first], info["resumed_at_steps"]
        assert info["steps_run"] == min(30, first + 10), (first, info["steps_run"])
        # Phase 3: time the real model at the real batch (defaults unless given).
        full = parse_args()
        try:
            bench_full(full)
        except RuntimeError as e:  # torch.cuda.OutOfMemoryError is a RuntimeError
            if "out of memory" not in str(e):
                raise
            log(f"full model at batch {full.batch} x {full.seq}: out of memory; use a smaller "
                f"--batch for the real run")
            return 1
        log("smoke test passed")
        return 0
    run(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
