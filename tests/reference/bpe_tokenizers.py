#!/usr/bin/env python3
"""GPT-NeoX style byte-level BPE tokenizer.json files for the family fixtures, derived from
tests/tokenizer/fixtures/tiny_bpe/tokenizer.json (no torch, no tokenizers: plain JSON).

tiny_bpe has the 256 byte symbols, 14 merges (ids 256-269), nothing at 270-299, and two added
tokens (<|endoftext|> 300, <|user|> 301). The variants fill 270-299 with 30 more merges (so every
id below the added tokens has text) and add special tokens:

  chatml: <|im_start|> 302, <|im_end|> 303; ByteLevel post-processor (adds nothing, as the
          GPT-NeoX tokenizer.json of mamba-*-hf / Falcon-H1 does). 304 ids.
  bos:    the same plus <|bos|> 304 and a TemplateProcessing post-processor that puts <|bos|>
          before every sequence (as Llama-style tokenizer.json files do). 305 ids.

    python3 tests/reference/bpe_tokenizers.py OUTDIR   # writes tokenizer_chatml.json, tokenizer_bos.json
"""
import copy
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TINY_BPE = os.path.join(HERE, "..", "tokenizer", "fixtures", "tiny_bpe", "tokenizer.json")

# Byte-level symbols: "Ġ" is the space byte. Each merge's parts must already be tokens.
EXTRA_MERGES = [
    "Ġ a", "i n", "e r", "o n", "r e", "a t", "e n", "Ġ s", "Ġ c", "i s",
    "Ġ o", "Ġ f", "a n", "Ġ p", "Ġ i", "o u", "i t", "Ġ d", "e s", "Ġ m",
    "Ġo f", "Ġt o", "Ġa n", "Ġan d", "in g", "Ġi s", "Ġi n", "Ġc o", "Ġ l", "Ġ h",
]

SPECIALS = {"<|endoftext|>": 300, "<|user|>": 301, "<|im_start|>": 302, "<|im_end|>": 303,
            "<|bos|>": 304}


def _added(content, tid):
    return {"id": tid, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": False, "special": True}


def derive(variant):
    with open(TINY_BPE, encoding="utf-8") as f:
        tj = json.load(f)
    tj = copy.deepcopy(tj)
    vocab = tj["model"]["vocab"]
    merges = tj["model"]["merges"]
    next_id = max(vocab.values()) + 1
    assert next_id == 270, next_id
    for m in EXTRA_MERGES:
        a, b = m.split(" ")
        assert a in vocab and b in vocab, m
        assert a + b not in vocab, m
        vocab[a + b] = next_id
        next_id += 1
        merges.append(m)
    assert next_id == 300, next_id
    if isinstance(merges[0], list):  # newer tokenizer.json spell merges as pairs
        tj["model"]["merges"] = [m.split(" ") if isinstance(m, str) else m for m in merges]
    names = ["<|im_start|>", "<|im_end|>"] + (["<|bos|>"] if variant == "bos" else [])
    have = {a["content"] for a in tj["added_tokens"]}
    for n in names:
        if n not in have:
            tj["added_tokens"].append(_added(n, SPECIALS[n]))
    if variant == "bos":
        bos = "<|bos|>"
        tj["post_processor"] = {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {bos: {"id": bos, "ids": [SPECIALS[bos]], "tokens": [bos]}},
        }
    n_ids = max(a["id"] for a in tj["added_tokens"]) + 1
    return tj, n_ids


def write(variant, path):
    tj, n_ids = derive(variant)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False, indent=1)
    return n_ids


if __name__ == "__main__":
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for v in ("chatml", "bos"):
        print(v, write(v, os.path.join(out, f"tokenizer_{v}.json")), "ids")
