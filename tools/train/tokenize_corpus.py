#!/usr/bin/python3
"""Pre-tokenizes the prepared corpus and writes the tokenizer's config and data.json.

    tokenize_corpus.py OUT [--versions FILE]

Reads OUT/train.txt, OUT/heldout.txt, OUT/corpus.json and OUT/tokenizer.model (from corpus.py
and spm_train) and writes:
  OUT/train.bin, OUT/heldout.bin   int32 little-endian ids; every document is <s> ids </s>,
                                   documents one after another (so a document starts at each <s>)
  OUT/tokenizer_config.json        special tokens, add_bos_token, the ChatML chat template
  OUT/data.json                    everything train.py and the model card need to know
Runs with Debian's python3 and python3-sentencepiece; nothing else.
"""
import argparse
import array
import hashlib
import json
import os
import sys

import sentencepiece as spm

DOC_SEP = "\f"
SPECIAL = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]  # ids 0..4, in this order

# ChatML. The model learned conversations as <s><|im_start|>role\ntext<|im_end|>\n...
# <|im_end|></s>. The template leaves <s> out: tokenize the rendered text with the tokenizer's
# add_bos_token (serpent: add_special), which prepends it. A "<s>" written in the text would not
# become token 1 anyway: SentencePiece does not match control symbols in text (it does match the
# user-defined <|im_start|> and <|im_end|>).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def read_docs(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if text.endswith("\n"):
        text = text[:-1]
    return text.split("\n" + DOC_SEP + "\n") if text else []


def encode(sp, docs, what):
    ids = array.array("i")
    assert ids.itemsize == 4
    lengths = []
    for i, d in enumerate(docs):
        t = sp.encode(d)
        # Identity normalisation plus byte fallback: the ids must give back the text exactly,
        # or the tokenizer and the text disagree somewhere.
        back = sp.decode(t)
        if back != d:
            k = next((j for j, (x, y) in enumerate(zip(back, d)) if x != y), min(len(back), len(d)))
            sys.exit(f"{what} document {i} does not survive encode/decode at character {k}: "
                     f"{d[max(0, k - 40):k + 40]!r} -> {back[max(0, k - 40):k + 40]!r}")
        if 0 in t:
            sys.exit(f"{what} document {i} encodes to <unk>")
        ids.append(1)
        ids.extend(t)
        ids.append(2)
        lengths.append(len(t) + 2)
    if sys.byteorder != "little":
        ids.byteswap()
    return ids, lengths


def write_bin(path, ids):
    with open(path, "wb") as f:
        ids.tofile(f)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def tokenizer_config():
    def tok(s):
        return {"content": s, "lstrip": False, "rstrip": False, "normalized": False,
                "single_word": False, "special": True}
    return {
        "tokenizer_class": "LlamaTokenizer",
        "add_bos_token": True,
        "add_eos_token": False,
        "add_prefix_space": False,  # the model has no dummy prefix; tells Hugging Face's converter
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": None,
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "added_tokens_decoder": {str(i): tok(s) for i, s in enumerate(SPECIAL)},
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "legacy": False,
        "model_max_length": 4096,
        "sp_model_kwargs": {},
        "spaces_between_special_tokens": False,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--versions", help="lines 'package version' (from prepare_data.sh)")
    a = ap.parse_args()
    out = a.out
    sp = spm.SentencePieceProcessor(model_file=os.path.join(out, "tokenizer.model"))
    got = [sp.id_to_piece(i) for i in range(len(SPECIAL))]
    if got != SPECIAL:
        sys.exit(f"unexpected special pieces {got}, want {SPECIAL}")
    if sp.encode("<|im_start|>user\nhi<|im_end|>")[:1] != [3]:  # no dummy prefix in front
        sys.exit("<|im_start|> is not encoded as one token")
    with open(os.path.join(out, "corpus.json")) as f:
        corpus = json.load(f)
    splits = {}
    for name in ("train", "heldout"):
        docs = read_docs(os.path.join(out, name + ".txt"))
        ids, lengths = encode(sp, docs, name)
        sha = write_bin(os.path.join(out, name + ".bin"), ids)
        chars = sum(map(len, docs))
        splits[name] = {"docs": len(docs), "tokens": len(ids), "chars": chars,
                        "chars_per_token": round(chars / max(1, len(ids) - 2 * len(docs)), 3),
                        "max_doc_tokens": max(lengths), "sha256": sha}
        if name == "heldout":
            assert len(corpus["heldout_sources"]) == len(docs)
            by_src = {}
            for src, n in zip(corpus["heldout_sources"], lengths):
                by_src[src] = by_src.get(src, 0) + n
            splits[name]["tokens_by_source"] = by_src
        print(f"  {name:8s} {len(docs):5d} docs {len(ids):9d} tokens "
              f"({splits[name]['chars_per_token']} chars/token, longest document "
              f"{max(lengths)} tokens)")
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(tokenizer_config(), f, indent=2)
        f.write("\n")
    versions = {}
    if a.versions:
        with open(a.versions) as f:
            versions = dict(line.split() for line in f if line.strip())
    for s in corpus["sources"].values():
        s["package_versions"] = {p: versions.get(p, "?") for p in s["packages"]}
    data = {
        "format": "int32 little-endian token ids; each document is <s> ... </s>",
        "splits": splits,
        "tokenizer": {"type": "sentencepiece BPE", "vocab_size": sp.get_piece_size(),
                      "byte_fallback": True, "special": {s: i for i, s in enumerate(SPECIAL)},
                      "normalization": "identity"},
        "corpus": corpus,
    }
    with open(os.path.join(out, "data.json"), "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    sys.exit(main())
