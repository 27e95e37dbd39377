#!/usr/bin/python3
"""Builds the training corpus from Debian text packages that prepare_data.sh unpacked.

    corpus.py SCRATCH OUT [--text-mb 11] [--heldout-frac 0.015] [--seed 1]

SCRATCH holds one folder per package (dpkg -x output) and kjv.txt (the `bible` program's dump).
Writes OUT/train.txt, OUT/heldout.txt and OUT/corpus.json. A document is a run of lines; documents
are separated by a line holding only a form feed (\\f), so documents may contain blank lines.
Only the Python standard library is used (this runs with Debian's python3).

Sources and how each is cut into documents:
  kjv      one chapter per document (heading line, then one verse per line, verse numbers dropped)
  devil, jargon, gcide
           dictionary entries with markup stripped, consecutive entries grouped into documents of
           about 3000 characters; gcide is subsampled to fit the size budget
  fortunes selected fortune files (lyrics, comic strips, TV quotes, ASCII art and crude files
           left out), fortunes grouped like dictionary entries
  chat     a share of the dictionary entries rendered as ChatML conversations ("What does X
           mean?" -> the definition), so the model learns the chat template's shape and to end
           its turn with <|im_end|>; these entries are not also used as plain text

Not used: dict-foldoc (GFDL). GCIDE is GPL-2.0-or-later and the GFDL and the GPL do not mix;
should the weights count as a work derived from their training text, the other sources here
(public domain, BSD) leave them distributable under the GPL.

The held-out split is by document: in every source a fixed-seed sample of documents (at least 2)
goes to heldout.txt, so held-out perplexity covers every kind of text the model saw.
"""
import argparse
import gzip
import json
import os
import random
import re
import sys
import unicodedata

DOC_SEP = "\f"
GROUP_CHARS = 3000  # target size of a document made of grouped entries
CHAT_FRAC = 0.08  # share of dictionary entries rendered as conversations

# What each source is and its licence, as the packages' Debian copyright files state it
# (prepare_data.sh checks that those files still say so). Recorded in data.json and the card.
SOURCES = {
    "kjv": dict(packages=["bible-kjv-text", "bible-kjv"], title="The King James Version of the Bible",
                licence="public domain (the 1611 translation's copyright has expired)"),
    "devil": dict(packages=["dict-devil"], title="Ambrose Bierce, The Devil's Dictionary (1911)",
                  licence="public domain (copyright expired)"),
    "jargon": dict(packages=["dict-jargon"], title="The Jargon File 4.4.7",
                   licence="public domain (dedicated by its editors)"),
    "gcide": dict(packages=["dict-gcide"], title="GCIDE, the GNU Collaborative International "
                  "Dictionary of English 0.48 (from Webster's 1913 and WordNet)",
                  licence="GPL-2.0-or-later"),
    "fortunes": dict(packages=["fortunes", "fortunes-min"], title="fortune-mod 1.99.1 fortune "
                     "files (a selection)", licence="BSD-3-Clause (fortune-mod, as Debian "
                     "distributes it)"),
    "chat": dict(packages=["dict-devil", "dict-jargon", "dict-gcide"],
                 title="conversations made from a share of the dictionary entries above",
                 licence="that of the entry's dictionary"),
}

# ---------------------------------------------------------------- text clean-up shared by all

# Typographic punctuation to ASCII: fewer distinct symbols for a small vocabulary to learn.
PUNCT = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
                       "\u2013": "-", "\u2014": "--", "\u2026": "...", "\u00a0": " ",
                       "\u00ad": "", "\u2122": "(TM)", "\u00b7": "", "\t": " "})


def clean_line(s):
    s = re.sub(r".\x08", "", s)  # overstrike (x BACKSPACE y) in old fortune files
    s = unicodedata.normalize("NFC", s).translate(PUNCT)
    s = "".join(c for c in s if c == "\n" or unicodedata.category(c)[0] != "C")
    return re.sub(r" {2,}", " ", s).strip()


def english_enough(text, min_alpha=0.72):
    """Rejects ASCII art, tables and code: too few letters and spaces."""
    if not text:
        return False
    good = sum(c.isalpha() or c == " " for c in text)
    return good / len(text) >= min_alpha


# ---------------------------------------------------------------- dictd databases

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def b64num(s):
    v = 0
    for c in s:
        v = v * 64 + B64.index(c)
    return v


def dictd_entries(base):
    """Raw entries of a dictd database (base.index + base.dict.dz), in file order, each once."""
    with gzip.open(base + ".dict.dz") as f:
        data = f.read()
    spans = set()
    with open(base + ".index", encoding="utf-8", errors="replace") as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if len(p) < 3 or p[0].startswith("00") or not p[0].strip():
                continue  # 00-database-* are the database's own info entries
            spans.add((b64num(p[1]), b64num(p[2])))
    for off, n in sorted(spans):
        yield data[off:off + n].decode("utf-8", "replace")


def indent(line):
    return len(line) - len(line.lstrip(" "))


def paragraphs(raw, verse_indent=None):
    """Splits an entry at blank lines and re-flows each paragraph into one line. A paragraph whose
    lines are all indented by verse_indent or more is verse or a quoted block: its line breaks
    are kept."""
    out = []
    for block in re.split(r"\n[ \t]*\n", raw.expandtabs(8)):
        lines = [l.rstrip() for l in block.split("\n") if l.strip()]
        if not lines:
            continue
        if verse_indent is not None and all(indent(l) >= verse_indent for l in lines):
            out.append("\n".join(clean_line(l) for l in lines))
            continue
        text = lines[0].strip()
        for l in lines[1:]:
            l = l.strip()
            # The dict formatter wraps "{proglet}s" as "{proglet}\n s": glue plural endings back.
            if text.endswith("}") and re.match(r"(s|es|ed|ing|'s)\b", l):
                text += l
            else:
                text += " " + l
        out.append(clean_line(text))
    return [p for p in out if p]


def unbrace(s):
    return re.sub(r"\{([^{}]*)\}", r"\1", s)  # {cross reference} -> cross reference


def drop_brackets(s):
    prev = None
    while prev != s:  # innermost first: GCIDE nests [..] inside etymologies
        prev, s = s, re.sub(r"\[[^\[\]]*\]", "", s)
    return s


def tidy(s):
    s = re.sub(r"\(\s*\)", "", s)
    s = re.sub(r" +([,.;:])", r"\1", s)
    return re.sub(r" {2,}", " ", s).strip()


class Entry:
    """A dictionary entry: head ("ROPE, n." or "sanity check") and body paragraphs. inline heads
    are printed on the first body line (Webster and Bierce style), others on their own line."""

    def __init__(self, head, body, inline):
        self.head, self.body, self.inline = head, body, inline

    def text(self):
        if self.inline:
            return "\n".join([self.head + " " + self.body[0]] + self.body[1:])
        return "\n".join([self.head] + self.body)

    def word(self):
        return re.sub(r",.*$", "", self.head).strip()


def devil_entries(base):
    for raw in dictd_entries(base):
        paras = paragraphs(raw, verse_indent=4)
        m = re.match(r"([A-Z][A-Z' .-]*[A-Z.]?), ((?:[a-z]+\.\s?)+)\s+(.*)$", paras[0] if paras else "",
                     re.S)
        if not m:
            continue
        body = [m.group(3)] + paras[1:]
        head = m.group(1).strip() + ", " + m.group(2).strip()
        yield Entry(head, [tidy(p) if "\n" not in p else p for p in body], inline=True)


def jargon_entries(base):
    for raw in dictd_entries(base):
        lines = raw.strip("\n").split("\n")
        head = clean_line(lines[0])
        # Line 2 is the pronunciation and part of speech (" /dev·nuhl/, n."): not prose.
        rest = "\n".join(lines[1:])
        if len(lines) > 1 and (lines[1].startswith(" ") and not lines[1].startswith("    ")):
            rest = "\n".join(lines[2:])
        body = [tidy(unbrace(p)) for p in paragraphs(rest, verse_indent=8)]
        body = [p for p in body if english_enough(p, 0.65)]  # drops box-drawn tables
        if head and body:
            yield Entry(head, body, inline=False)


# GCIDE writes letters with diacritics as [x] escapes: ['e] is e-acute, [=a] a-macron, [ae] ...
ACCENT = {"'": "\u0301", "`": "\u0300", '"': "\u0308", "~": "\u0303", ",": "\u0327"}
GCIDE_WORDS = {"ae": "ae", "AE": "Ae", "oe": "oe", "OE": "Oe", "eth": "th", "thorn": "th",
               "yogh": "y", "ng": "ng", "th": "th", "imac": "i", "aum": "a", "oo": "oo",
               "add": "", "udd": "", "asl": "", "root": ""}  # the last four: pronunciation signs


def gcide_escape(m):
    x = m.group(1) or m.group(2)
    if x in GCIDE_WORDS:
        return GCIDE_WORDS[x]
    # Acute, grave, diaeresis and cedilla as in loanwords (cafe with e-acute); n-tilde; but a
    # tilde on a vowel is a pronunciation mark.
    if len(x) == 2 and x[0] in ACCENT and x[1].isalpha() and (x[0] != "~" or x[1] in "nN"):
        return unicodedata.normalize("NFC", x[1] + ACCENT[x[0]])
    return re.sub(r"[^A-Za-z]", "", x)  # macron, breve, ...: the bare letter; [2], [add]: nothing


def gcide_entries(base):
    for raw in dictd_entries(base):
        # Escapes touch a letter; tags like [Obs.] and etymologies stand apart and are dropped.
        raw = re.sub(r"(?<=[A-Za-z])\[([^\]\[ ]{1,5})\]|\[([^\]\[ ]{1,5})\](?=[A-Za-z])",
                     gcide_escape, raw)
        out = []
        for p in paragraphs(raw):
            p = re.sub(r"\\[^\\]*\\", "", p)  # \Pro*nun"ci*a`tion\
            p = re.sub(r'\s*\([^() ]*["*`][^() ]*\)|\s*\(\?[^()]*\)', "", p)  # (pro*nun"ci*a`tion)
            # "[1913 Webster] Anthropopathism": the next entry's head word trails the source tag.
            p = re.sub(r"(\[[^\[\]]*\])\s+[A-Za-z'-]+$", r"\1", p)
            p = drop_brackets(unbrace(p))
            # Quotations' sources: "--Milton.", "--Ps. xxxix. 5." (no space after the dashes;
            # " -- Stringently, adv." introduces a derived word and stays).
            p = re.sub(r"\s*--[A-Z][^-]{0,50}$", "", p)
            p = re.sub(r"\s*--[A-Z][A-Za-z.' &]{0,40}\.(?=\s)", "", p)
            p = re.sub(r'(?<=\w)["*`](?=\w)', "", p)  # syllable marks: Strin"gent*ly
            p = tidy(p)
            if len(p) > 1:
                out.append(p)
        if not out:
            continue
        m = re.match(r"([^,]{1,60}?),\s*(.*)$", out[0])
        if not m or not english_enough(" ".join(out), 0.8):
            continue
        # "Age (aj), n." : a pronunciation in parentheses may follow the head word.
        head = re.sub(r"\s*\([^()]{1,30}\)$", "", m.group(1).strip()) + ","
        first = m.group(2).strip()
        # The part of speech ("v. t.", "n.", "a.") belongs to the head, not to the definition.
        pos = re.match(r"((?:[a-z]{1,5}\.\s*){1,3})(?=\S)", first)
        if pos:
            head, first = head + " " + pos.group(1).strip(), first[pos.end():]
        body = ([first] if first else []) + out[1:]
        text = " ".join(body)
        # Bare inflections and cross references ("imp. of Do.") teach nothing.
        if len(text) < 100 or not body:
            continue
        yield Entry(head, body, inline=True)


# ---------------------------------------------------------------- other sources

FORTUNE_FILES = {
    "fortunes-min": ["fortunes", "literature", "riddles"],
    # Left out: ascii-art (pictures), songs-poems (song lyrics), zippy (a comic strip), startrek
    # (TV quotes), knghtbrd / men-women / ethnic / drugs (IRC logs and crude jokes), perl (code),
    # pratchett and translate-me (one or two entries).
    "fortunes": ["art", "computers", "cookie", "debian", "definitions", "disclaimer", "education",
                 "food", "goedel", "humorists", "kids", "law", "linux", "linuxcookie", "love",
                 "magic", "medicine", "miscellaneous", "news", "paradoxum", "people", "pets",
                 "platitudes", "politics", "science", "sports", "tao", "wisdom", "work"],
}


def fortunes(scratch):
    for pkg, names in FORTUNE_FILES.items():
        for name in names:
            path = os.path.join(scratch, pkg, "usr/share/games/fortunes", name)
            with open(path, encoding="utf-8", errors="replace") as f:
                raw = f.read()
            for item in re.split(r"\n%\n", raw):
                lines = [clean_line(l) for l in item.expandtabs(8).split("\n")]
                text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
                # IRC logs ("<nick> text") read badly and teach chat-room noise.
                if re.search(r"^<[^>\s]+>|^\* \S+ |-- Seen on #", text, re.M):
                    continue
                if 20 <= len(text) <= 1500 and english_enough(text):
                    yield text


def kjv_chapters(path):
    """`bible -l100000` output: "Genesis 1" heading lines, then "  N verse text" lines."""
    chapters, cur = [], None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            m = re.match(r"\s+(\d+) (.*)$", line)
            if m and cur is not None:
                cur.append(clean_line(m.group(2)))
            elif line.strip():
                cur = [clean_line(line)]
                chapters.append(cur)
    return ["\n".join(c) for c in chapters if len(c) > 1]


# ---------------------------------------------------------------- documents

QUESTIONS = ['What does "{w}" mean?', "Define {w}.", 'What is the meaning of "{w}"?',
             "Explain the word {w}.", "What is {w}?", "Tell me what {w} means."]
SYSTEMS = ["You are a helpful assistant.", "You are a dictionary. Answer briefly.",
           "You explain words and terms."]


def chat(turns, system=None):
    """ChatML, exactly as the chat template in tokenizer_config.json renders it, ending after
    the assistant's <|im_end|> (the tokenizer's EOS follows the document)."""
    msgs = ([("system", system)] if system else []) + turns
    s = "".join(f"<|im_start|>{r}\n{c}<|im_end|>\n" for r, c in msgs)
    return s[:-1]


def word_case(e):
    w = e.word()
    return w.lower() if w.isupper() and len(w) > 1 else w  # Bierce's heads are capitals


def group(texts, target=GROUP_CHARS):
    docs, cur, n = [], [], 0
    for t in texts:
        cur.append(t)
        n += len(t)
        if n >= target:
            docs.append("\n\n".join(cur))
            cur, n = [], 0
    if cur:
        docs.append("\n\n".join(cur))
    return docs


def sample_to_budget(items, budget, rng):
    """A fixed-seed sample of items whose text adds up to about budget characters, kept in the
    original (alphabetical) order so that grouped documents read like dictionary pages."""
    idx = list(range(len(items)))
    rng.shuffle(idx)
    keep, n = [], 0
    for i in idx:
        if n >= budget:
            break
        keep.append(i)
        n += len(items[i].text() if isinstance(items[i], Entry) else items[i])
    return [items[i] for i in sorted(keep)]


def build(scratch, text_mb, seed):
    rng = random.Random(seed)
    budget = int(text_mb * 1e6)
    docs = {}  # source -> list of document strings
    docs["kjv"] = kjv_chapters(os.path.join(scratch, "kjv.txt"))
    fort = list(fortunes(scratch))
    dd = lambda pkg, name: os.path.join(scratch, pkg, "usr/share/dictd", name)
    dicts = {"devil": list(devil_entries(dd("dict-devil", "devil"))),
             "jargon": list(jargon_entries(dd("dict-jargon", "jargon"))),
             "gcide": list(gcide_entries(dd("dict-gcide", "gcide")))}
    # Budget: the Bible, Bierce, the Jargon File and the fortunes whole (small, and the best
    # prose); GCIDE, 40 MB of it, fills what is left.
    used = sum(map(len, docs["kjv"])) + sum(map(len, fort)) + sum(
        len(e.text()) for k in ("devil", "jargon") for e in dicts[k])
    dicts["gcide"] = sample_to_budget(dicts["gcide"], max(0, budget - used),
                                      random.Random(f"{seed}-gcide"))
    docs["fortunes"] = group(fort)
    chats = []
    for k, entries in dicts.items():
        plain = []
        for e in entries:
            if rng.random() < CHAT_FRAC:
                chats.append(e)
            else:
                plain.append(e.text())
        docs[k] = group(plain)
    # Conversations of one to three questions about consecutive entries.
    rng.shuffle(chats)
    docs["chat"] = []
    i = 0
    while i < len(chats):
        k = rng.choice((1, 1, 2, 3))
        turns = []
        for e in chats[i:i + k]:
            q = rng.choice(QUESTIONS).format(w=word_case(e))
            turns += [("user", q), ("assistant", "\n".join(e.body))]
        docs["chat"].append(chat(turns, rng.choice(SYSTEMS) if rng.random() < 0.5 else None))
        i += k
    return docs


def split(docs, frac, seed):
    train, held = [], []
    for src in sorted(docs):
        d = [x for x in docs[src] if x.strip()]
        n = max(2, round(frac * len(d)))
        pick = set(random.Random(f"{seed}-heldout-{src}").sample(range(len(d)), n))
        for i, x in enumerate(d):
            (held if i in pick else train).append((src, x))
    # Interleave sources so that any stretch of train.txt mixes them.
    random.Random(f"{seed}-order").shuffle(train)
    return train, held


def write_docs(path, items):
    with open(path, "w", encoding="utf-8") as f:
        for i, (_, x) in enumerate(items):
            assert DOC_SEP not in x
            f.write(x + "\n" + (DOC_SEP + "\n" if i + 1 < len(items) else ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("scratch")
    ap.add_argument("out")
    ap.add_argument("--text-mb", type=float, default=11.0, help="about this much text in all")
    ap.add_argument("--heldout-frac", type=float, default=0.015)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    docs = build(a.scratch, a.text_mb, a.seed)
    train, held = split(docs, a.heldout_frac, a.seed)
    os.makedirs(a.out, exist_ok=True)
    write_docs(os.path.join(a.out, "train.txt"), train)
    write_docs(os.path.join(a.out, "heldout.txt"), held)
    stats = {}
    for name, items in (("train", train), ("heldout", held)):
        for src, x in items:
            s = stats.setdefault(src, {"train_docs": 0, "train_chars": 0, "heldout_docs": 0,
                                       "heldout_chars": 0})
            s[name + "_docs"] += 1
            s[name + "_chars"] += len(x)
    # The held-out documents' sources, in heldout.txt order (for per-source perplexity).
    for src, s in stats.items():
        s.update(SOURCES[src])
    meta = {"seed": a.seed, "text_mb": a.text_mb, "heldout_frac": a.heldout_frac, "sources": stats,
            "heldout_sources": [src for src, _ in held]}
    with open(os.path.join(a.out, "corpus.json"), "w") as f:
        json.dump(meta, f, indent=1)
    for src, s in sorted(stats.items()):
        print(f"  {src:9s} train {s['train_docs']:5d} docs {s['train_chars'] / 1e6:6.2f} MB   "
              f"held-out {s['heldout_docs']:3d} docs {s['heldout_chars'] / 1e3:7.1f} kB")


if __name__ == "__main__":
    sys.exit(main())
