#!/usr/bin/env python3
"""Writes a trained model's card, MODEL_DIR/README.md, from MODEL_CARD.md.in and the folder's
training.json (which train.py wrote and which carries data.json's sources and licences).

    write_card.py MODEL_DIR [--name NAME]

Every @KEY@ of the template must be filled; nothing is guessed. Standard library only.
"""
import argparse
import json
import math
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ORDER = ["kjv", "gcide", "fortunes", "jargon", "chat", "devil"]  # table order: largest first


def n(x):
    return f"{x:,}"


def data_table(data):
    rows = ["| source | Debian packages | licence | training | held out |",
            "| --- | --- | --- | --- | --- |"]
    srcs = data["corpus"]["sources"]
    for k in sorted(srcs, key=lambda k: ORDER.index(k) if k in ORDER else len(ORDER)):
        s = srcs[k]
        pk = ", ".join(f"{p} {v}" for p, v in s.get("package_versions", {}).items()) or \
            ", ".join(s["packages"])
        rows.append(f"| {s['title']} | {pk} | {s['licence']} | {s['train_docs']} documents, "
                    f"{s['train_chars'] / 1e6:.2f} MB | {s['heldout_docs']} documents |")
    return "\n".join(rows)


def source_ppl(tj):
    src_of = tj["data"]["corpus"]["heldout_sources"]
    acc = {}
    for d in tj["heldout"]["per_doc"]:
        a = acc.setdefault(src_of[d["index"]], [0.0, 0, 0])
        a[0] += d["nll_sum"]
        a[1] += d["tokens"] - 1
        a[2] += 1
    rows = ["| held-out source | documents | predicted tokens | perplexity |",
            "| --- | --- | --- | --- |"]
    for k in sorted(acc, key=lambda k: ORDER.index(k) if k in ORDER else len(ORDER)):
        s, t, c = acc[k]
        rows.append(f"| {k} | {c} | {n(t)} | {math.exp(s / t):.2f} |")
    return "\n".join(rows)


def training_text(tj):
    h = tj["hyper"]
    sched = (f"over {h['total_steps']} steps" if h.get("total_steps") else
             f"over {h['total_minutes']} minutes of training" if h.get("total_minutes") else
             "over each call's wall-clock budget")
    resumed = tj.get("resumed_at_steps") or []
    lines = [
        f"- {n(tj['steps'])} steps, {n(tj['tokens_seen'])} tokens seen ({tj['epochs']:.1f} epochs "
        f"of the training split), {tj['loop_seconds'] / 60:.1f} minutes on {tj['device']}"
        + (f", in {len(resumed) + 1} calls (resumed at steps "
           f"{', '.join(map(str, resumed))}; the optimizer state restarts at each resume)"
           if resumed else "") + ".",
        f"- Batches of {h['batch']} windows of {h['seq']} tokens cut from the packed token "
        f"stream (documents back to back, each `<s> ... </s>`).",
        f"- {tj['optimizer']}; gradient clipping {h['grad_clip']}; peak learning rate {h['lr']} "
        f"after {h['warmup']} warmup steps, cosine decay to {h['min_lr_frac']:g} of it "
        f"{sched}; bf16 autocast over float32 weights; seed {h['seed']}.",
        f"- Transformers' reference PyTorch path (no mamba_ssm / causal_conv1d kernels); "
        f"transformers {tj['versions']['transformers']}, torch {tj['versions']['torch']}.",
    ]
    if tj.get("selected") == "best":
        lines.append(f"- The saved weights are those of step {tj['steps']}, the best of the "
                     f"periodic held-out evaluations (training ran to step {tj['steps_run']}).")
    if tj.get("final_train_loss") is not None:
        lines.append(f"- Training loss at the end (moving average): {tj['final_train_loss']:.3f}.")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model_dir")
    ap.add_argument("--name", help="default: the folder's name")
    a = ap.parse_args()
    with open(os.path.join(a.model_dir, "training.json")) as f:
        tj = json.load(f)
    if tj.get("smoke"):
        sys.exit("this is a --smoke run's model; train the real one first")
    m, data, held = tj["model"], tj["data"], tj["heldout"]
    pattern = m["pattern"]
    mb, at, mlp = m["mamba"], m["attention"], m["mlp"]
    vals = {
        "NAME": a.name or os.path.basename(os.path.normpath(a.model_dir)),
        "PARAMS": n(m["parameters"]), "MEGABYTES": f"{m['bf16_megabytes']:.1f}",
        "N_LAYERS": str(len(pattern)), "PATTERN": pattern,
        "N_MAMBA": str(pattern.count("M")), "N_ATTN": str(pattern.count("*")),
        "N_MLP": str(pattern.count("-")), "HIDDEN": str(m["hidden_size"]),
        "MAMBA": f"{mb['heads']} heads of {mb['head_dim']} (inner size "
                 f"{mb['heads'] * mb['head_dim']}), {mb['groups']} groups, state {mb['state']}, "
                 f"conv kernel {mb['conv']}, SSD chunk {mb['chunk']}",
        "ATTN": f"{at['heads']} query heads, {at['kv_heads']} key/value heads (GQA), head size "
                f"{at['head_dim']}",
        "MLP": f"intermediate size {mlp['intermediate']}, {mlp['act']}",
        "VOCAB": n(m["vocab_size"]),
        "DATA_TABLE": data_table(data),
        "TRAIN_TOKENS": n(data["splits"]["train"]["tokens"]),
        "TRAIN_DOCS": n(data["splits"]["train"]["docs"]),
        "HELD_DOCS_ALL": n(data["splits"]["heldout"]["docs"]),
        "HELD_TOKENS_ALL": n(data["splits"]["heldout"]["tokens"]),
        "TRAINING": training_text(tj),
        "PPL": f"{held['perplexity']:.3f}", "MEAN_NLL": f"{held['mean_nll']:.4f}",
        "HELD_PREDICTED": n(held["tokens_predicted"]), "HELD_DOCS": n(held["docs"]),
        "SOURCE_PPL": source_ppl(tj),
        "TRANSFORMERS": tj["versions"]["transformers"], "TORCH": tj["versions"]["torch"],
    }
    with open(os.path.join(HERE, "MODEL_CARD.md.in")) as f:
        text = f.read()
    used = set(re.findall(r"@([A-Z_]+)@", text))
    missing = used - set(vals)
    if missing:
        sys.exit(f"no value for {sorted(missing)}")
    text = re.sub(r"@([A-Z_]+)@", lambda mm: vals[mm.group(1)], text)
    out = os.path.join(a.model_dir, "README.md")
    with open(out, "w") as f:
        f.write(text)
    print(f"wrote {out} (held-out perplexity {held['perplexity']:.3f})")


if __name__ == "__main__":
    sys.exit(main())
