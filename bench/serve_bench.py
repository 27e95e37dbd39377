#!/usr/bin/env python3
"""Serving benchmark: a streaming client of OpenAI's /v1/completions for any server that speaks
it (serpent serve, llama.cpp's llama-server, vLLM), in the manner of vLLM's benchmark_serving.

Prompts are random token ids (OpenAI's prompt-as-token-ids, so every server sees the same tokens)
or lines of a text / JSONL file; input and output lengths are fixed or drawn uniformly around a
mean; ignore_eos makes every answer exactly its output length. Load is closed-loop (N clients,
each sending its next request when the last one finished) or open-loop (Poisson arrivals at a
rate, optionally capped in flight). Several groups of clients can run at once (--group), e.g.
64 chat-sized streams while a client sends 16K-token prompts, with statistics kept per group.

Reported per run: output tokens/s, requests/s, time to first token, the gaps between streamed
chunks (inter-token latency) and time per output token, each as mean/p50/p90/p99/max, errors.
Results go to one JSON file (the command, commit, device and server settings with them);
bench/plot_serve.py draws one or more of them.

    bench/serve_bench.py --base-url http://127.0.0.1:8000 --vocab-size 128256 \\
        --input-len 512 --output-len 128 --concurrency 1,32,128,256 --prompts-per-client 4 \\
        --label serpent --result-json serve-serpent.json

Needs only the standard library and aiohttp (uvloop when present).
"""
import argparse
import asyncio
import json
import math
import os
import platform
import random
import shlex
import subprocess
import sys
import time

try:
    import aiohttp
except ImportError:  # pragma: no cover
    sys.exit("serve_bench.py needs aiohttp (Debian: python3-aiohttp)")


# --- statistics ---------------------------------------------------------------------------------

def percentile(sorted_values, q):
    """Linear interpolation between closest ranks (numpy's default), on a sorted list."""
    if not sorted_values:
        return None
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summary_ms(values):
    """mean / p50 / p90 / p99 / max of seconds, in milliseconds."""
    v = sorted(values)
    if not v:
        return {"n": 0, "mean": None, "p50": None, "p90": None, "p99": None, "max": None}
    ms = lambda x: round(x * 1e3, 3)
    return {"n": len(v), "mean": ms(sum(v) / len(v)), "p50": ms(percentile(v, 50)),
            "p90": ms(percentile(v, 90)), "p99": ms(percentile(v, 99)), "max": ms(v[-1])}


# --- prompts ------------------------------------------------------------------------------------

def sample_len(rng, mean, ratio):
    if ratio <= 0:
        return mean
    lo = max(1, int(mean * (1 - ratio)))
    hi = max(lo, int(mean * (1 + ratio)))
    return rng.randint(lo, hi)


class PromptSource:
    """Deterministic prompts: the i-th request of a group always gets the same prompt."""

    def __init__(self, args, input_len, output_len, seed):
        self.args = args
        self.input_len = input_len
        self.output_len = output_len
        self.seed = seed
        self.texts = None
        if args.dataset != "random":
            self.texts = load_texts(args.dataset)

    def get(self, i):
        rng = random.Random(self.seed * 1000003 + i)
        out_len = sample_len(rng, self.output_len, self.args.range_ratio)
        if self.texts is not None:
            text = self.texts[rng.randrange(len(self.texts))]
            return text, None, out_len
        n = sample_len(rng, self.input_len, self.args.range_ratio)
        lo, hi = self.args.token_low, self.args.vocab_size - self.args.token_high_margin
        ids = [rng.randrange(lo, hi) for _ in range(n)]
        return ids, n, out_len


def load_texts(path):
    texts = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            if path.endswith(".jsonl"):
                obj = json.loads(line)
                line = obj.get("prompt") or obj.get("text") or ""
            texts.append(line)
    if not texts:
        sys.exit(f"serve_bench.py: no prompts in {path}")
    return texts


# --- one request ------------------------------------------------------------------------------

class Record:
    __slots__ = ("group", "ok", "error", "t_send", "t_first", "t_end", "chunk_times",
                 "n_prompt", "n_output", "n_chunks", "status")

    def __init__(self, group):
        self.group = group
        self.ok = False
        self.error = None
        self.t_send = self.t_first = self.t_end = None
        self.chunk_times = []
        self.n_prompt = None
        self.n_output = None
        self.n_chunks = 0
        self.status = None


async def send_request(session, url, body, rec, timeout):
    """Streams one completion; fills rec with the arrival time of every chunk that carries
    text and with the token counts of the final usage chunk (when the server sends one)."""
    rec.t_send = time.perf_counter()
    try:
        async with session.post(url, json=body, timeout=timeout) as resp:
            rec.status = resp.status
            if resp.status != 200:
                text = (await resp.text())[:300]
                rec.error = f"HTTP {resp.status}: {text}"
                rec.t_end = time.perf_counter()
                return
            if not body.get("stream"):
                obj = await resp.json(content_type=None)
                rec.t_end = time.perf_counter()
                rec.t_first = rec.t_end
                usage = obj.get("usage") or {}
                rec.n_output = usage.get("completion_tokens")
                rec.n_prompt = usage.get("prompt_tokens", rec.n_prompt)
                rec.ok = True
                return
            times = rec.chunk_times
            finished = False
            buf = b""
            async for piece in resp.content.iter_any():
                now = time.perf_counter()
                buf += piece
                while True:
                    nl = buf.find(b"\n")
                    if nl < 0:
                        break
                    line, buf = buf[:nl].strip(), buf[nl + 1:]
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        finished = True
                        continue
                    obj = json.loads(data)
                    if "error" in obj and not obj.get("choices"):
                        rec.error = f"stream error: {json.dumps(obj['error'])[:300]}"
                        continue
                    usage = obj.get("usage")
                    if usage:
                        rec.n_output = usage.get("completion_tokens", rec.n_output)
                        rec.n_prompt = usage.get("prompt_tokens", rec.n_prompt)
                    for ch in obj.get("choices") or ():
                        # a chunk with text, or with ids (serpent's return_token_ids: a
                        # server without a tokenizer streams ids, no text)
                        if (ch.get("text") or ch.get("token_ids")
                                or (ch.get("delta") or {}).get("content")):
                            times.append(now)
                            break
            rec.t_end = time.perf_counter()
            rec.n_chunks = len(times)
            if times:
                rec.t_first = times[0]
            if rec.error is None and not finished:
                rec.error = "the stream ended without [DONE]"
            if rec.n_output is None:
                rec.n_output = len(times)
            rec.ok = rec.error is None
    except asyncio.CancelledError:
        raise
    except Exception as ex:  # connection refused / reset, timeouts, bad JSON
        rec.t_end = time.perf_counter()
        rec.error = f"{type(ex).__name__}: {ex}"[:300]


def make_body(args, model, prompt, out_len, extra):
    body = {"model": model, "prompt": prompt, "max_tokens": out_len, "stream": not args.no_stream,
            "temperature": args.temperature, "ignore_eos": not args.no_ignore_eos}
    if not args.no_stream:
        body["stream_options"] = {"include_usage": True}
    if args.top_p is not None:
        body["top_p"] = args.top_p
    body.update(extra)
    return body


# --- load generators ----------------------------------------------------------------------------

class Group:
    def __init__(self, name, clients, input_len, output_len, num_prompts, rate, seed):
        self.name = name
        self.clients = clients
        self.input_len = input_len
        self.output_len = output_len
        self.num_prompts = num_prompts
        self.rate = rate  # None: closed loop
        self.seed = seed


async def run_group(g, args, session, url, model, extra, deadline, records):
    src = PromptSource(args, g.input_len, g.output_len, g.seed)
    timeout = aiohttp.ClientTimeout(total=args.request_timeout)
    next_index = [0]

    def take():
        i = next_index[0]
        if i >= g.num_prompts or (deadline is not None and time.perf_counter() >= deadline):
            return None
        next_index[0] += 1
        return i

    async def one(i):
        prompt, n_prompt, out_len = src.get(i)
        rec = Record(g.name)
        rec.n_prompt = n_prompt
        records.append(rec)
        await send_request(session, url, make_body(args, model, prompt, out_len, extra), rec,
                           timeout)

    if g.rate is None:  # closed loop: each client sends its next request when one finishes
        async def client():
            while True:
                i = take()
                if i is None:
                    return
                await one(i)
        await asyncio.gather(*(client() for _ in range(g.clients)))
        return
    # open loop: Poisson arrivals (exponential gaps), at most g.clients in flight when set
    rng = random.Random(g.seed * 7919 + 1)
    sem = asyncio.Semaphore(g.clients) if g.clients else None
    tasks = []

    async def limited(i):
        if sem is None:
            await one(i)
            return
        async with sem:
            await one(i)

    t_next = time.perf_counter()
    while True:
        i = take()
        if i is None:
            break
        tasks.append(asyncio.ensure_future(limited(i)))
        if math.isinf(g.rate):
            continue
        t_next += rng.expovariate(g.rate)
        delay = t_next - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    await asyncio.gather(*tasks)


def group_stats(recs, wall):
    ok = [r for r in recs if r.ok]
    errors = [r for r in recs if not r.ok]
    out_tokens = sum(r.n_output or 0 for r in ok)
    in_tokens = sum(r.n_prompt or 0 for r in ok)
    ttft = [r.t_first - r.t_send for r in ok if r.t_first is not None]
    itl, tpot = [], []
    chunks = 0
    for r in ok:
        t = r.chunk_times
        chunks += len(t)
        itl.extend(t[i] - t[i - 1] for i in range(1, len(t)))
        if r.n_output and r.n_output > 1 and r.t_first is not None:
            tpot.append((r.t_end - r.t_first) / (r.n_output - 1))
    e2e = [r.t_end - r.t_send for r in ok]
    messages = {}
    for r in errors:
        messages[r.error] = messages.get(r.error, 0) + 1
    return {
        "requests": len(recs),
        "completed": len(ok),
        "errors": len(errors),
        "error_messages": dict(sorted(messages.items(), key=lambda kv: -kv[1])[:5]),
        "input_tokens": in_tokens,
        "output_tokens": out_tokens,
        "chunks_per_output_token": round(chunks / out_tokens, 4) if out_tokens else None,
        "request_throughput": round(len(ok) / wall, 4) if wall > 0 else None,
        "output_throughput": round(out_tokens / wall, 2) if wall > 0 else None,
        "total_token_throughput": round((in_tokens + out_tokens) / wall, 2) if wall > 0 else None,
        # for long-prompt groups: prompt tokens over the time to their first token
        "prefill_throughput": (round(sum(r.n_prompt or 0 for r in ok if r.t_first) /
                                     sum(r.t_first - r.t_send for r in ok if r.t_first), 1)
                               if ttft and sum(ttft) > 0 else None),
        "ttft_ms": summary_ms(ttft),
        "itl_ms": summary_ms(itl),
        "tpot_ms": summary_ms(tpot),
        "e2e_ms": summary_ms(e2e),
    }


async def run_once(args, groups, model, label):
    """One measured run of all groups at once (after an optional warm-up)."""
    url = args.base_url.rstrip("/") + args.endpoint
    extra = json.loads(args.extra_body) if args.extra_body else {}
    total_clients = sum(g.clients for g in groups) if all(g.clients for g in groups) else None
    conn = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=conn) as session:
        if args.warmup:
            # every client at once with short requests: the server sees the batch sizes of the
            # run (CUDA graphs captured, buffers grown) before the clock starts
            warm = Group("warmup", max(g.clients or 1 for g in groups), args.warmup_input_len,
                         args.warmup_output_len, max(g.clients or 1 for g in groups), None,
                         seed=12345)
            wrecs = []
            await run_group(warm, args, session, url, model, extra, None, wrecs)
            bad = [r for r in wrecs if not r.ok]
            if bad:
                print(f"  warm-up: {len(bad)} of {len(wrecs)} requests failed: {bad[0].error}",
                      file=sys.stderr)
        records = []
        cpu0, t0 = time.process_time(), time.perf_counter()
        deadline = t0 + args.duration if args.duration else None
        await asyncio.gather(*(run_group(g, args, session, url, model, extra, deadline, records)
                               for g in groups))
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
    res = {"wall_s": round(wall, 3), "client_cpu_share": round(cpu / wall, 3) if wall else None,
           "clients": total_clients}
    if len(groups) == 1:
        res.update(group_stats(records, wall))
    else:
        res["groups"] = {g.name: dict(group_stats([r for r in records if r.group == g.name], wall),
                                      clients=g.clients, input_len=g.input_len,
                                      output_len=g.output_len)
                         for g in groups}
        res.update(group_stats(records, wall))
    return res


# --- the run's context: commit, device, server ------------------------------------------------

def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except Exception:
        return ""


def detect_device():
    gpu = sh("nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader")
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    desc = f"{cpu}, {os.cpu_count()} CPUs"
    return f"{gpu.splitlines()[0]}; {desc}" if gpu else desc


def detect_commit():
    here = os.path.dirname(os.path.abspath(__file__))
    c = sh(f"git -C {shlex.quote(here)} rev-parse --short HEAD")
    dirty = sh(f"git -C {shlex.quote(here)} status --porcelain --untracked-files=no")
    return (c + ("-dirty" if dirty else "")) if c else "unknown"


async def get_model(base_url):
    async with aiohttp.ClientSession() as s:
        async with s.get(base_url.rstrip("/") + "/v1/models",
                         timeout=aiohttp.ClientTimeout(total=30)) as r:
            obj = await r.json(content_type=None)
            return obj["data"][0]["id"]


async def wait_ready(base_url, seconds):
    """Polls /health until it answers 200 (serpent and llama-server both have it)."""
    end = time.monotonic() + seconds
    last = None
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < end:
            try:
                async with s.get(base_url.rstrip("/") + "/health",
                                 timeout=aiohttp.ClientTimeout(total=5)) as r:
                    if r.status == 200:
                        return True
                    last = f"HTTP {r.status}"
            except Exception as ex:
                last = str(ex)
            await asyncio.sleep(0.5)
    print(f"serve_bench.py: {base_url} not ready after {seconds} s ({last})", file=sys.stderr)
    return False


def parse_group(spec, args, index):
    """name=long,clients=1,input=16384,output=1[,rate=R][,prompts=N]"""
    kv = dict(part.split("=", 1) for part in spec.split(","))
    unknown = set(kv) - {"name", "clients", "input", "output", "rate", "prompts"}
    if unknown:
        sys.exit(f"serve_bench.py: --group {spec}: unknown keys {sorted(unknown)}")
    clients = int(kv.get("clients", 1))
    rate = float(kv["rate"]) if "rate" in kv else None
    prompts = int(kv.get("prompts", 10 ** 9 if args.duration else clients * args.prompts_per_client))
    return Group(kv.get("name", f"g{index}"), clients, int(kv.get("input", args.input_len)),
                 int(kv.get("output", args.output_len)), prompts, rate, args.seed + 101 * index)


def print_run(label, res):
    def f(x, w=8, d=1):
        return f"{x:{w}.{d}f}" if isinstance(x, (int, float)) else f"{'-':>{w}}"
    rows = [("all", res)] if "groups" not in res else list(res["groups"].items())
    for name, s in rows:
        print(f"  {label:<10} {name:<7} {s['completed']:5d} ok {s['errors']:3d} err "
              f"{f(s['output_throughput'], 9)} out tok/s {f(s['request_throughput'], 7, 2)} req/s  "
              f"TTFT p50 {f(s['ttft_ms']['p50'])} p99 {f(s['ttft_ms']['p99'])} ms  "
              f"ITL p50 {f(s['itl_ms']['p50'], 7, 2)} p99 {f(s['itl_ms']['p99'], 7, 2)} ms"
              + (f"  prefill {f(s['prefill_throughput'], 8, 0)} tok/s"
                 if name != "all" and s.get("prefill_throughput") else ""))
        for msg, n in s["error_messages"].items():
            print(f"    {n} x {msg}")
    if res.get("client_cpu_share", 0) > 0.8 and res["wall_s"] > 2:
        print(f"  warning: the client used {res['client_cpu_share']:.0%} of a core: it may be "
              "the bottleneck (fewer clients per process)", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", default="http://127.0.0.1:8000")
    ap.add_argument("--endpoint", default="/v1/completions")
    ap.add_argument("--model", help="model name in requests (default: the first of /v1/models)")
    ap.add_argument("--label", help="server name in results and plots (default: the model name)")
    ap.add_argument("--dataset", default="random",
                    help="'random' (token ids) or a text file (a prompt a line) or .jsonl "
                         "({\"prompt\": ...} a line)")
    ap.add_argument("--vocab-size", type=int, default=8192,
                    help="random ids are drawn from [--token-low, vocab - --token-high-margin)")
    ap.add_argument("--token-low", type=int, default=10)
    ap.add_argument("--token-high-margin", type=int, default=10)
    ap.add_argument("--input-len", type=int, default=512)
    ap.add_argument("--output-len", type=int, default=128)
    ap.add_argument("--range-ratio", type=float, default=0.0,
                    help="lengths uniform in [L(1-r), L(1+r)] (default 0: fixed)")
    ap.add_argument("--concurrency", default="1",
                    help="closed-loop clients; a comma list sweeps them, one run each")
    ap.add_argument("--request-rate", default=None,
                    help="open loop: Poisson arrivals per second ('inf': all at once); a comma "
                         "list sweeps; --max-concurrency caps requests in flight")
    ap.add_argument("--max-concurrency", type=int, default=0)
    ap.add_argument("--num-prompts", type=int, default=0,
                    help="requests per run (default: --prompts-per-client x clients)")
    ap.add_argument("--prompts-per-client", type=int, default=4)
    ap.add_argument("--group", action="append", default=[],
                    help="run groups of clients at once: name=N,clients=C,input=I,output=O"
                         "[,rate=R][,prompts=P] (repeat); with --duration, each runs that long")
    ap.add_argument("--duration", type=float, default=0,
                    help="stop sending new requests after this many seconds (0: no limit); "
                         "requests in flight then finish. --group runs without prompts= send "
                         "until then")
    ap.add_argument("--no-warmup", dest="warmup", action="store_false")
    ap.add_argument("--warmup-input-len", type=int, default=16)
    ap.add_argument("--warmup-output-len", type=int, default=16)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--top-p", type=float, default=None)
    ap.add_argument("--no-ignore-eos", action="store_true")
    ap.add_argument("--no-stream", action="store_true")
    ap.add_argument("--extra-body", help="JSON object merged into every request")
    ap.add_argument("--request-timeout", type=float, default=1800)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--wait-ready", type=float, default=0,
                    help="first wait up to this many seconds for GET /health to answer 200")
    ap.add_argument("--result-json", help="write the results here")
    ap.add_argument("--server-settings", default="",
                    help="how the server was started (recorded with the results)")
    ap.add_argument("--commit", help="default: git rev-parse of this script's checkout")
    ap.add_argument("--device", help="default: nvidia-smi's GPU, else the CPU")
    ap.add_argument("--note", default="", help="free text recorded with the results")
    args = ap.parse_args()

    try:
        import uvloop  # the GPU machine has it; fewer client microseconds per chunk
        uvloop.install()
    except ImportError:
        pass
    if args.wait_ready and not asyncio.run(wait_ready(args.base_url, args.wait_ready)):
        sys.exit(1)
    model = args.model or asyncio.run(get_model(args.base_url))
    label = args.label or model

    plans = []  # (description, groups)
    if args.group:
        groups = [parse_group(s, args, i) for i, s in enumerate(args.group)]
        plans.append(({"mode": "mixed", "concurrency": sum(g.clients for g in groups),
                       "request_rate": None}, groups))
    elif args.request_rate:
        for rate in args.request_rate.split(","):
            r = float(rate)
            n = args.num_prompts or 100
            plans.append(({"mode": "open", "concurrency": args.max_concurrency or None,
                           "request_rate": r},
                          [Group("all", args.max_concurrency, args.input_len, args.output_len,
                                 n, r, args.seed)]))
    else:
        for c in args.concurrency.split(","):
            c = int(c)
            n = max(args.num_prompts, c * args.prompts_per_client)
            plans.append(({"mode": "closed", "concurrency": c, "request_rate": None},
                          [Group("all", c, args.input_len, args.output_len, n, None, args.seed)]))

    runs = []
    for desc, groups in plans:
        print(f"{label}: {desc['mode']} run, concurrency {desc['concurrency']}, rate "
              f"{desc['request_rate']}, " + "; ".join(
                  f"{g.name}: {g.clients} x {g.input_len} in / {g.output_len} out" for g in groups),
              flush=True)
        res = asyncio.run(run_once(args, groups, model, label))
        res = dict(desc, input_len=groups[0].input_len, output_len=groups[0].output_len, **res)
        runs.append(res)
        print_run(label, res)
        sys.stdout.flush()

    if args.result_json:
        doc = {
            "benchmark": "serve",
            "tool": "bench/serve_bench.py",
            "command": " ".join(shlex.quote(a) for a in sys.argv),
            "commit": args.commit or detect_commit(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "device": args.device or detect_device(),
            "server": {"label": label, "base_url": args.base_url, "model": model,
                       "settings": args.server_settings},
            "client": {"python": platform.python_version(), "aiohttp": aiohttp.__version__,
                       "dataset": args.dataset, "vocab_size": args.vocab_size,
                       "temperature": args.temperature, "ignore_eos": not args.no_ignore_eos,
                       "stream": not args.no_stream, "range_ratio": args.range_ratio,
                       "seed": args.seed, "warmup": args.warmup},
            "note": args.note,
            "runs": runs,
        }
        os.makedirs(os.path.dirname(os.path.abspath(args.result_json)), exist_ok=True)
        with open(args.result_json, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        print(f"results: {args.result_json}")
    failed = sum(r["errors"] for r in runs)
    return 1 if failed and all(r["completed"] == 0 for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
