#!/usr/bin/env python3
"""Plots bench_context results in the form of Waleffe et al.'s Figure 5: the Transformer's time
per generated token over the hybrid's, against context length, at the sweep's batch (and at
batch 1), plus the time per token of each model.

    python3 bench/plot_context.py RESULTS.json OUT.png [--hybrid NAME] [--transformer NAME]
"""
import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def per_token(rows, model, asked):
    """context -> (seconds per token of the batch, batch actually run)"""
    out = {}
    for r in rows:
        if r["kind"] == "sweep" and r["model"] == model and r["asked_batch"] == asked:
            out[r["context"]] = (r["step_seconds"] / r["batch"], r["batch"])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("out")
    ap.add_argument("--hybrid", default="hybrid-8b")
    ap.add_argument("--transformer", default="transformer-8b")
    a = ap.parse_args()
    res = json.load(open(a.results))
    rows, batch = res["rows"], res["batch"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for asked, style in ((batch, "o-"), (1, "s--")):
        h = per_token(rows, a.hybrid, asked)
        t = per_token(rows, a.transformer, asked)
        ctx = sorted(set(h) & set(t))
        speed = [t[c][0] / h[c][0] for c in ctx]
        label = f"batch {asked}"
        ax1.plot(ctx, speed, style, label=label)
        for c, s in zip(ctx, speed):
            if t[c][1] != asked:  # the Transformer ran the largest batch that fit
                ax1.annotate(f"T: batch {t[c][1]}", (c, s), textcoords="offset points",
                             xytext=(0, 6), fontsize=7, ha="center")
        ax2.plot(sorted(h), [h[c][0] * 1e3 for c in sorted(h)], style, label=f"{a.hybrid}, {label}")
        ax2.plot(sorted(t), [t[c][0] * 1e3 for c in sorted(t)], style,
                 label=f"{a.transformer}, {label}")
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("context length (tokens)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    ax1.set_ylabel("Transformer time / hybrid time per token")
    ax1.set_title("Speedup of the hybrid in generating a token")
    ax2.set_yscale("log")
    ax2.set_ylabel("ms per generated token (step time / batch)")
    ax2.set_title("Time per token")
    fig.suptitle(f"serpent, {res.get('commit', '?')}: decode with random weights")
    fig.tight_layout()
    fig.savefig(a.out, dpi=120)


if __name__ == "__main__":
    main()
