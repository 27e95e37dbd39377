#!/usr/bin/env python3
"""Writes a Hugging Face checkpoint with random weights of a config's shape (default the 8B
Mamba-2-Hybrid, bench/configs/hybrid-8b), so that serpent and other servers (llama.cpp through
its GGUF converter) serve the *same* weights in a side-by-side benchmark. Run on the GPU machine
(transformers + torch; ~7.6 B parameters are built on the GPU in bf16 in seconds):

    python3 bench/make_random_checkpoint.py OUT_DIR --tokenizer-dir DIR [--vocab-size 128256]

The model is transformers' NemotronHForCausalLM; every weight is then drawn again so that
activations stay in a normal range (as serpent's --random-weights does): matrices uniform with
variance 1/fan_in, norms near 1, A = -exp(A_log) from -1 to -16, dt = softplus(dt_bias) from
0.001 to 0.1, D near 1. Saved in 4 GB safetensors shards. --tokenizer-dir gives tokenizer.json
(+ tokenizer_config.json); its vocabulary sets vocab_size (128256 for Llama 3's, 2% fewer head
bytes than Nemotron-H's 131072). config.json is then rewritten in the legacy form
(hybrid_override_pattern, num_hidden_layers, rms_norm_eps, no MoE keys) that both serpent and
llama.cpp's converter read.
"""
import argparse
import json
import math
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# keys transformers 5.x writes for NemotronH's MoE variant; a dense checkpoint has none
MOE_KEYS = ("n_routed_experts", "num_experts_per_tok", "n_shared_experts", "n_group",
            "topk_group", "norm_topk_prob", "routed_scaling_factor", "num_nextn_predict_layers",
            "mtp_layers_block_type", "layers_block_type")


def redraw(model, torch, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)

    def uniform_(p, lo, hi):
        p.copy_(torch.rand(p.shape, generator=g, device=p.device, dtype=torch.float32)
                .mul_(hi - lo).add_(lo).to(p.dtype))

    n = 0
    for name, p in model.named_parameters():
        with torch.no_grad():
            if name.endswith("A_log"):
                uniform_(p, 0.0, math.log(16.0))
            elif name.endswith("dt_bias"):
                dt = torch.exp(torch.rand(p.shape, generator=g, device=p.device) *
                               (math.log(0.1) - math.log(0.001)) + math.log(0.001))
                p.copy_((dt + torch.log(-torch.expm1(-dt))).to(p.dtype))  # softplus^-1
            elif name.endswith(".D"):
                uniform_(p, 0.5, 1.5)
            elif "conv1d" in name:
                uniform_(p, -0.5, 0.5) if name.endswith("weight") else uniform_(p, -0.1, 0.1)
            elif "norm" in name and p.dim() == 1:
                uniform_(p, 0.9, 1.1)
            elif "embed" in name:
                uniform_(p, -1.0, 1.0)
            elif p.dim() == 2:
                a = math.sqrt(3.0 / p.shape[1])
                uniform_(p, -a, a)
            elif p.dim() == 1:
                p.zero_()  # biases
            else:
                sys.exit(f"make_random_checkpoint.py: no rule for {name} {tuple(p.shape)}")
        n += p.numel()
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--config", default=os.path.join(HERE, "configs", "hybrid-8b"),
                    help="folder with config.json (default bench/configs/hybrid-8b)")
    ap.add_argument("--tokenizer-dir", required=True,
                    help="folder with tokenizer.json (and tokenizer_config.json)")
    ap.add_argument("--vocab-size", type=int, default=0,
                    help="default: the tokenizer's (added tokens included), rounded up to 128")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    import torch
    import transformers
    from transformers import NemotronHConfig, NemotronHForCausalLM

    t0 = time.time()
    with open(os.path.join(args.config, "config.json")) as f:
        legacy = {k: v for k, v in json.load(f).items() if not k.startswith("_")}
    with open(os.path.join(args.tokenizer_dir, "tokenizer.json")) as f:
        tj = json.load(f)
    ids = list(tj["model"]["vocab"].values()) + [t["id"] for t in tj.get("added_tokens", [])]
    vocab = args.vocab_size or (max(ids) + 1 + 127) // 128 * 128
    legacy["vocab_size"] = vocab
    tcfg = {}
    tcfg_path = os.path.join(args.tokenizer_dir, "tokenizer_config.json")
    if os.path.exists(tcfg_path):
        with open(tcfg_path) as f:
            tcfg = json.load(f)
    by_text = {t["content"]: t["id"] for t in tj.get("added_tokens", [])}
    for key, cfg_key in (("bos_token", "bos_token_id"), ("eos_token", "eos_token_id")):
        tok = tcfg.get(key)
        tok = tok.get("content") if isinstance(tok, dict) else tok
        if tok in by_text:
            legacy[cfg_key] = by_text[tok]
    legacy.pop("pad_token_id", None)

    config = NemotronHConfig(**{k: v for k, v in legacy.items()
                                if k not in ("model_type", "architectures")})
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = NemotronHForCausalLM(config)
    model.eval()
    n = redraw(model, torch, args.seed)
    t1 = time.time()
    print(f"built {n / 1e9:.2f} B parameters in {t1 - t0:.1f} s (transformers "
          f"{transformers.__version__}, torch {torch.__version__})", flush=True)
    os.makedirs(args.out, exist_ok=True)
    model.save_pretrained(args.out, max_shard_size="4GB", safe_serialization=True)
    t2 = time.time()
    print(f"saved to {args.out} in {t2 - t1:.1f} s", flush=True)

    # the legacy config form, with what the saved one says about the weights it holds
    with open(os.path.join(args.out, "config.json")) as f:
        saved = json.load(f)
    out = {k: v for k, v in saved.items() if k not in MOE_KEYS and not k.startswith("moe_")}
    out.update(legacy)
    out["num_hidden_layers"] = len(legacy["hybrid_override_pattern"])
    out["rms_norm_eps"] = out.get("layer_norm_epsilon", 1e-5)
    out["architectures"] = ["NemotronHForCausalLM"]
    out["_comment"] = (f"random weights (bench/make_random_checkpoint.py, seed {args.seed}) of "
                       f"{os.path.basename(os.path.abspath(args.config))}'s shape")
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(out, f, indent=2)
    shutil.copy(os.path.join(args.tokenizer_dir, "tokenizer.json"), args.out)
    if os.path.exists(tcfg_path):
        shutil.copy(tcfg_path, args.out)
    print(f"config.json (legacy form, vocab {vocab}) and the tokenizer written; "
          f"{time.time() - t0:.1f} s in all")


if __name__ == "__main__":
    main()
