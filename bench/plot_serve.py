#!/usr/bin/env python3
"""Draws serve_bench.py results: output tokens/s, time to first token and inter-token latency
against the number of clients, one line per results file (a server, or a server setting), and
prints the same figures as a Markdown table (mixed-load runs too, group by group).

    bench/plot_serve.py serve-serpent.json serve-llama.json -o serve.png [--title TEXT]
    bench/plot_serve.py serve-*.json --table-only
    bench/plot_serve.py --mixed mixed-X-decode.json mixed-X-long.json mixed-X.json

--mixed checks issue 15's goals for latency under mixed load: the streams' inter-token p99
while 16K-token prompts prefill, against the decode-only step at that batch (the p50 gap of the
same clients alone), at most 3x; and the long prompts' prefill rate, against theirs alone, at
least 80%.
"""
import argparse
import json
import sys


def load(paths):
    docs = []
    for p in paths:
        with open(p) as f:
            d = json.load(f)
        if d.get("benchmark") != "serve":
            sys.exit(f"plot_serve.py: {p} is not a serve_bench.py result")
        d["_path"] = p
        docs.append(d)
    return docs


def fmt(x, digits=1):
    if x is None:
        return "-"
    return f"{x:,.{digits}f}"


def table(docs):
    lines = ["| server | load | clients | in / out | output tok/s | req/s | TTFT p50 / p99 ms | "
             "ITL p50 / p99 ms | TPOT p50 ms | prefill tok/s | errors |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for d in docs:
        label = d["server"]["label"]
        for r in d["runs"]:
            rows = [(r["mode"], r)]
            if "groups" in r:
                rows = [(f"mixed: {name}", g) for name, g in r["groups"].items()]
            for mode, s in rows:
                clients = s.get("clients", r.get("concurrency"))
                if r["mode"] == "open":
                    clients = f"rate {r['request_rate']}"
                lines.append(
                    f"| {label} | {mode} | {clients} | {s.get('input_len', r['input_len'])} / "
                    f"{s.get('output_len', r['output_len'])} | {fmt(s['output_throughput'])} | "
                    f"{fmt(s['request_throughput'], 2)} | {fmt(s['ttft_ms']['p50'])} / "
                    f"{fmt(s['ttft_ms']['p99'])} | {fmt(s['itl_ms']['p50'], 2)} / "
                    f"{fmt(s['itl_ms']['p99'], 2)} | {fmt(s['tpot_ms']['p50'], 2)} | "
                    f"{fmt(s.get('prefill_throughput'), 0) if mode.startswith('mixed') else '-'} | "
                    f"{s['errors']} |")
    return "\n".join(lines)


def plot(docs, out, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    panels = [("output_throughput", None, "output tokens/s"),
              ("ttft_ms", "time to first token (ms)", None),
              ("itl_ms", "inter-token latency (ms)", None)]
    drawn = 0
    for d in docs:
        runs = [r for r in d["runs"] if r["mode"] == "closed" and r["completed"]]
        runs.sort(key=lambda r: r["concurrency"])
        if not runs:
            continue
        drawn += 1
        x = [r["concurrency"] for r in runs]
        label = d["server"]["label"]
        ax = axes[0]
        line, = ax.plot(x, [r["output_throughput"] for r in runs], "o-", label=label)
        color = line.get_color()
        for ax, (key, _, _) in zip(axes[1:], panels[1:]):
            ax.plot(x, [r[key]["p50"] for r in runs], "o-", color=color, label=f"{label} p50")
            ax.plot(x, [r[key]["p99"] for r in runs], "s--", color=color, alpha=0.7,
                    label=f"{label} p99")
    if not drawn:
        sys.exit("plot_serve.py: no closed-loop runs to draw")
    io = {(r["input_len"], r["output_len"]) for d in docs for r in d["runs"] if r["mode"] == "closed"}
    sub = ", ".join(f"{i} in / {o} out" for i, o in sorted(io))
    for ax, (key, ylabel, ylabel0) in zip(axes, panels):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel(ylabel or ylabel0)
        if key != "output_throughput":
            ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        xs = sorted({r["concurrency"] for d in docs for r in d["runs"] if r["mode"] == "closed"})
        ax.set_xticks(xs)
        ax.set_xticklabels([str(v) for v in xs])
    axes[0].set_ylim(bottom=0)
    fig.suptitle(title or f"serving, {sub} tokens, streamed ({docs[0]['device']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"plot: {out}")


def mixed_check(decode_path, long_path, mixed_path):
    dec, lng, mix = load([decode_path, long_path, mixed_path])
    step = dec["runs"][0]["itl_ms"]["p50"]
    alone = lng["runs"][0]["prefill_throughput"]
    groups = mix["runs"][0]["groups"]
    short, long_ = groups["short"], groups["long"]
    p99, loaded = short["itl_ms"]["p99"], long_["prefill_throughput"]
    ok_itl = p99 is not None and step and p99 <= 3 * step
    ok_pf = loaded is not None and alone and loaded >= 0.8 * alone
    label = mix["server"]["label"]
    print(f"{label}: decode-only step at {short['clients']} clients {step:.2f} ms; under 16K "
          f"prefill: inter-token p50 {short['itl_ms']['p50']:.2f} / p90 {short['itl_ms']['p90']:.2f}"
          f" / p99 {p99:.2f} ms = {p99 / step:.2f}x the step ({'met' if ok_itl else 'NOT met'}: "
          f"<= 3x); prefill {loaded:,.0f} tok/s against {alone:,.0f} alone = "
          f"{loaded / alone:.0%} ({'met' if ok_pf else 'NOT met'}: >= 80%); "
          f"{mix['server']['settings']}")
    return ok_itl and ok_pf


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="*", help="serve_bench.py --result-json files")
    ap.add_argument("--mixed", nargs=3, metavar=("DECODE", "LONG", "MIXED"),
                    help="check the mixed-load goals on these three results")
    ap.add_argument("-o", "--output", default="serve.png")
    ap.add_argument("--title")
    ap.add_argument("--table-only", action="store_true")
    args = ap.parse_args()
    if args.mixed:
        sys.exit(0 if mixed_check(*args.mixed) else 1)
    docs = load(args.results)
    print(table(docs))
    if not args.table_only:
        plot(docs, args.output, args.title)


if __name__ == "__main__":
    main()
