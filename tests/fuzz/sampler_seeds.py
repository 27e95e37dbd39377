#!/usr/bin/env python3
"""Writes the starting corpus of fuzz_sampler into DIR (default tests/fuzz/seeds_sampler), in the
byte layout tests/fuzz/fuzz_sampler.c reads: rows with ordinary logits under ordinary sampling
settings, each extra on, and the reported crash of issue 11 (repetition_penalty 1e-40, min_p 0.5)."""
import random
import struct
import sys
from pathlib import Path


def small(v):
    """A multiple of 1/8 in [-16, 15.875]: selector >= 128, then int8(v * 8)."""
    return bytes([200, int(round(v * 8)) & 0xFF])


def raw(v):
    """Any float, as its bits: selector < 48."""
    return bytes([0]) + struct.pack("<f", v)


def small_int(v):
    """An int in [-4, 35]: selector >= 160."""
    return bytes([200, (v + 4) % 40])


def seed(n, logits, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, rng_seed=1, step=0,
         presence=None, frequency=None, repetition=None, bias=None, forced=None, top_n=None,
         counts=None, mask=None):
    flags = ((presence is not None) | (frequency is not None) << 1 | (repetition is not None) << 2
             | (bias is not None) << 3 | (forced is not None) << 4 | (top_n is not None) << 5
             | (counts is not None) << 6 | (mask is not None) << 7)
    b = bytearray(struct.pack("<H", n))
    b += raw(temperature) + small_int(top_k) + raw(top_p) + raw(min_p)
    b += struct.pack("<QQ", rng_seed, step) + bytes([flags])
    for v in (presence, frequency, repetition):
        if v is not None:
            b += raw(v)
    if bias is not None:
        b += bytes([len(bias)])
        for tok, v in bias:
            b += small_int(tok) + raw(v)
    if forced is not None:
        b += small_int(forced)
    if top_n is not None:
        b += bytes([top_n + 2])
    for i in range(n):
        b += raw(logits[i])
        if counts is not None:
            b += bytes([counts[i] % 4])
        if mask is not None:
            b += bytes([mask[i]])
    return bytes(b)


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "seeds_sampler")
    out.mkdir(parents=True, exist_ok=True)
    rnd = random.Random(11)
    row = [rnd.gauss(0, 2) for _ in range(32)]
    seeds = {
        "greedy": seed(32, row, temperature=0.0),
        "plain": seed(32, row),
        "top_k": seed(32, row, temperature=0.7, top_k=5),
        "top_p": seed(32, row, temperature=1.3, top_p=0.9),
        "min_p": seed(32, row, min_p=0.1),
        "all": seed(32, row, temperature=0.8, top_k=20, top_p=0.95, min_p=0.05, rng_seed=7, step=3),
        "penalties": seed(32, row, presence=0.5, frequency=0.3, repetition=1.2,
                          counts=[i % 3 for i in range(32)], mask=[i % 2 for i in range(32)]),
        "bias": seed(32, row, bias=[(3, 100.0), (5, -100.0), (40, 5.0)]),
        "forced": seed(32, row, forced=7, top_n=5),
        "logprobs": seed(32, row, temperature=0.0, top_n=20),
        "ties": seed(16, [1.0] * 16, temperature=1.0, top_k=3),
        "one": seed(1, [0.5], temperature=1.0, top_p=0.5),
    }
    for name, data in seeds.items():
        (out / f"seed-{name}").write_bytes(data)
    # issue 11's crash: prompt tokens with positive logits divided by 1e-40 became +inf
    crash = seed(8, [1.5, -2.0, 3.0, 0.25, 2.0, -0.5, 4.0, 0.0], min_p=0.5,
                 repetition=1e-40, mask=[1, 1, 0, 1, 0, 1, 0, 0])
    regressions = Path(__file__).parent / "regressions"
    (regressions / "sampler-repetition-1e-40-min-p-0.5.bin").write_bytes(crash)
    print(f"{len(seeds)} seeds in {out}, 1 regression input in {regressions}")


if __name__ == "__main__":
    main()
