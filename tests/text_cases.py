#!/usr/bin/env python3
"""Writes the text prompts of a fixture's reference.json for the CLI tests: OUTDIR/case_K.txt
holds a prompt, OUTDIR/case_K.ids transformers' greedy ids up to the first position whose top two
logits are closer than NEAR_TIE (beyond a near-tie, rounding may rightly pick the other token).

    text_cases.py REFERENCE_JSON OUTDIR NEAR_TIE
"""
import json
import sys

ref, out, near_tie = sys.argv[1], sys.argv[2], float(sys.argv[3])
k = 0
for r in json.load(open(ref))["prompts"]:
    if "messages" in r:
        continue
    # transformers' cached generate() left its own uncached argmax on this prompt (a Zamba2
    # fixture): serpent follows the uncached computation, so the greedy ids prove nothing
    if r.get("uncached_agrees") is False and "logits_stepwise" not in r:
        continue
    n = 0
    while n < len(r["greedy"]) and r["margins"][n] >= near_tie:
        n += 1
    open("%s/case_%d.txt" % (out, k), "w", encoding="utf-8").write(r["text"])
    open("%s/case_%d.ids" % (out, k), "w").write(" ".join(map(str, r["greedy"][:n])))
    k += 1
