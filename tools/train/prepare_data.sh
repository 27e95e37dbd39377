#!/usr/bin/env bash
# Prepares the training data of serpent's default model on the CPU machine (Debian, root):
# fetches freely licensed English text that Debian ships, cleans it, splits off held-out
# documents, trains a SentencePiece tokenizer and pre-tokenizes both splits, so that the GPU
# machine (which reaches no registry) needs only torch and transformers.
#
#   tools/train/prepare_data.sh OUT [--text-mb 11] [--vocab 8192] [--seed 1] [--keep-scratch]
#
# OUT (e.g. .traindata, which .git/info/exclude keeps out of git) receives:
#   train.txt, heldout.txt     cleaned text; documents separated by a line holding only \f
#   tokenizer.model/.vocab     SentencePiece BPE, byte fallback; <unk>=0 <s>=1 </s>=2,
#                              <|im_start|>=3 <|im_end|>=4
#   tokenizer_config.json      bos/eos, add_bos_token, the ChatML chat template
#   train.bin, heldout.bin     int32 little-endian token ids, one document after another, each
#                              <s> ... </s>
#   data.json                  sources, package versions, licences, sizes, token counts, hashes
#   licenses/                  each package's Debian copyright file
# With the defaults OUT stays under ~25 MB, so it can travel to the GPU machine with the repo.
set -euo pipefail

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 1 ] || usage
OUT=$1
shift
TEXT_MB=11 VOCAB=8192 SEED=1 KEEP=0
while [ $# -gt 0 ]; do
  case $1 in
    --text-mb) TEXT_MB=$2; shift 2 ;;
    --vocab) VOCAB=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --keep-scratch) KEEP=1; shift ;;
    *) usage ;;
  esac
done

HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3  # Debian's python, where python3-sentencepiece installs (not a pyenv one)

# --- tools: spm_train (sentencepiece) and the Python module (python3-sentencepiece) ----------
missing=()
command -v spm_train >/dev/null || missing+=(sentencepiece)
$PY -c 'import sentencepiece' 2>/dev/null || missing+=(python3-sentencepiece)
command -v dpkg-deb >/dev/null || missing+=(dpkg)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  [ "$(id -u)" = 0 ] || { echo "need root to apt-get install ${missing[*]}" >&2; exit 1; }
  apt-get install -y "${missing[@]}" >/dev/null || { apt-get update >/dev/null && apt-get install -y "${missing[@]}" >/dev/null; }
fi

SCRATCH=$(mktemp -d /tmp/serpent-traindata.XXXXXX)
cleanup() { if [ "$KEEP" = 1 ]; then echo "scratch kept in $SCRATCH"; else rm -rf "$SCRATCH"; fi; }
trap cleanup EXIT

# --- fetch and unpack ---------------------------------------------------------------------
# bible-kjv holds the `bible` program that decompresses bible-kjv-text's data file.
PKGS=(bible-kjv bible-kjv-text dict-devil dict-jargon dict-gcide fortunes fortunes-min)
mkdir -p "$SCRATCH/debs"
# apt-get download writes to the current folder; as root it warns that _apt cannot write there.
if ! (cd "$SCRATCH/debs" && apt-get download "${PKGS[@]}" 2>/dev/null); then
  echo "apt-get download failed; updating the package lists and trying again"
  apt-get update >/dev/null
  (cd "$SCRATCH/debs" && apt-get download "${PKGS[@]}" 2>/dev/null)
fi
: >"$SCRATCH/versions.txt"
mkdir -p "$OUT/licenses"
for pkg in "${PKGS[@]}"; do
  deb=$(ls "$SCRATCH/debs/${pkg}_"*.deb)
  dpkg -x "$deb" "$SCRATCH/$pkg"
  echo "$pkg $(dpkg-deb -f "$deb" Version)" >>"$SCRATCH/versions.txt"
  cp "$SCRATCH/$pkg/usr/share/doc/$pkg/copyright" "$OUT/licenses/$pkg.copyright"
done

# --- licences -----------------------------------------------------------------------------
# Each package's copyright file must still say what it said when the sources were chosen (a
# later Debian release could change it); data.json records the licence of every source.
check_licence() {  # package, a phrase its copyright file must contain
  grep -qiF "$2" "$OUT/licenses/$1.copyright" ||
    { echo "licence check failed: $1's copyright file no longer says \"$2\"" >&2; exit 1; }
}
check_licence bible-kjv-text "copyright for the King James Version text of the Bible is expired"
check_licence dict-devil "The Devil's Dictionary is in the public domain"
check_licence dict-jargon "The Jargon File is in the public domain"
check_licence dict-gcide "GCIDE is free software"
check_licence dict-gcide "GNU General Public License"
check_licence fortunes "This program falls under the BSD copyright"
check_licence fortunes-min "This program falls under the BSD copyright"

# --- the King James Bible: `bible -l100000` prints every chapter unwrapped ------------------
BIBLE="$SCRATCH/bible-kjv/usr/bin/bible"
if ! "$BIBLE" -l100000 -p "$SCRATCH/bible-kjv-text/usr/lib" Gen1:1 >/dev/null 2>&1; then
  # The unpacked (not installed) program needs its shared libraries, normally libreadline8.
  echo "the bible program does not run; installing its libraries"
  apt-get install -y libreadline8 >/dev/null
fi
"$BIBLE" -l100000 -p "$SCRATCH/bible-kjv-text/usr/lib" "Gen1:1-Rev22:21" >"$SCRATCH/kjv.txt"
[ "$(grep -c . "$SCRATCH/kjv.txt")" -gt 31000 ] || { echo "the Bible dump looks short" >&2; exit 1; }

# --- clean, split ---------------------------------------------------------------------------
echo "cleaning text (about ${TEXT_MB} MB)"
$PY "$HERE/corpus.py" "$SCRATCH" "$OUT" --text-mb "$TEXT_MB" --seed "$SEED"

# --- tokenizer ------------------------------------------------------------------------------
# Trained on the training split's lines only (spm_train reads one sentence per line; the \f
# separators are not text). Settings follow Llama's tokenizer: BPE, identity normalisation
# (text is encoded exactly as written), whitespace kept as is, digits split, byte fallback so
# that nothing is ever <unk>. A newline is not in any piece: it encodes as the byte <0x0A>.
# No dummy prefix: spm_train sees one line at a time, and without a "▁" added in front of each
# line the pieces it learns for line-initial words are the ones that encoding a whole document
# uses after a newline (where no "▁" is added either), and a chat turn starts with
# <|im_start|> rather than a lone "▁".
grep -v -e '^$' -e $'^\f$' "$OUT/train.txt" >"$SCRATCH/spm_input.txt"
echo "training the tokenizer (BPE, vocab $VOCAB)"
spm_train --input="$SCRATCH/spm_input.txt" --model_prefix="$OUT/tokenizer" \
  --model_type=bpe --vocab_size="$VOCAB" --byte_fallback=true \
  --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=-1 \
  --user_defined_symbols='<|im_start|>,<|im_end|>' \
  --normalization_rule_name=identity --remove_extra_whitespaces=false --add_dummy_prefix=false \
  --split_digits=true --allow_whitespace_only_pieces=true \
  --character_coverage=0.9995 --max_sentence_length=32768 --input_sentence_size=0 \
  --num_threads="$(nproc)" --random_seed="$SEED" --minloglevel=2 >"$SCRATCH/spm_train.log" 2>&1 ||
  { tail -20 "$SCRATCH/spm_train.log" >&2; exit 1; }

# --- token ids ------------------------------------------------------------------------------
echo "tokenizing"
$PY "$HERE/tokenize_corpus.py" "$OUT" --versions "$SCRATCH/versions.txt"
du -sh "$OUT"
