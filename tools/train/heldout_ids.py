#!/usr/bin/env python3
"""Writes the held-out documents' token ids in the form tests/test_default_model.sh reads.

    heldout_ids.py HELDOUT_BIN OUT_TXT [--docs 0,1,5 | --first N | --training-json FILE]

HELDOUT_BIN is prepare_data.sh's heldout.bin (int32 little-endian ids; every document is
<s> ... </s>). OUT_TXT gets one line per document: "INDEX<TAB>id,id,id,...", INDEX being the
document's position in heldout.bin, the same index training.json's per-document results use.
--training-json takes the documents that train.py measured (its heldout.indices) and checks
that HELDOUT_BIN is the file they were measured on.
The ids are exactly what `serpent score --prompt-ids` takes. Standard library only, so this
runs on the CPU machine; train.py imports it to write the file next to the model.
"""
import argparse
import array
import hashlib
import json
import sys

BOS, EOS = 1, 2


def read_docs(path):
    """The documents of an int32 id file, as lists of ids (each <s> ... </s>)."""
    ids = array.array("i")
    assert ids.itemsize == 4
    with open(path, "rb") as f:
        ids.frombytes(f.read())
    if sys.byteorder != "little":
        ids.byteswap()
    docs, start = [], None
    for i, t in enumerate(ids):
        if t == BOS:
            if start is not None:
                raise ValueError(f"{path}: <s> at {i} inside the document starting at {start}")
            start = i
        elif t == EOS:
            if start is None:
                raise ValueError(f"{path}: </s> at {i} outside a document")
            docs.append(ids[start:i + 1].tolist())
            start = None
    if start is not None:
        raise ValueError(f"{path}: the last document has no </s>")
    return docs


def write_ids(docs, indices, path):
    with open(path, "w") as f:
        for i in indices:
            f.write(f"{i}\t{','.join(map(str, docs[i]))}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("heldout_bin")
    ap.add_argument("out_txt")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--docs", help="comma-separated document indices (default: all)")
    g.add_argument("--first", type=int, help="the first N documents")
    g.add_argument("--training-json", help="the documents a training.json was measured on")
    a = ap.parse_args()
    docs = read_docs(a.heldout_bin)
    if a.training_json:
        with open(a.training_json) as f:
            held = json.load(f)["heldout"]
        with open(a.heldout_bin, "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        if sha != held["data_sha256"]:
            sys.exit(f"{a.heldout_bin} is not the held-out file {a.training_json} was measured on")
        indices = list(range(len(docs))) if held["indices"] == "all" else held["indices"]
    elif a.docs:
        indices = [int(x) for x in a.docs.split(",")]
    elif a.first:
        indices = list(range(min(a.first, len(docs))))
    else:
        indices = list(range(len(docs)))
    bad = [i for i in indices if not 0 <= i < len(docs)]
    if bad:
        sys.exit(f"no such documents: {bad} ({len(docs)} in {a.heldout_bin})")
    write_ids(docs, indices, a.out_txt)
    n = sum(len(docs[i]) for i in indices)
    print(f"{a.out_txt}: {len(indices)} documents, {n} tokens ({n - len(indices)} predicted)")


if __name__ == "__main__":
    sys.exit(main())
