#!/usr/bin/env bash
# Completes a model folder on the CPU machine from what train.py --export brought back from the
# GPU machine (config, weight shards, training.json), so it can be tested and committed.
#
#   tools/train/install_model.sh FROM_DIR models/NAME [DATA_DIR]
#
# Copies FROM_DIR's model files into models/NAME (replacing its weights), adds the tokenizer
# files from DATA_DIR (default .traindata, the folder the model was trained on), writes
# heldout_ids.txt for the documents training.json was measured on (checking the held-out file
# is the same one), and writes the model card README.md.
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
FROM=$1 DEST=$2 DATA=${3:-.traindata}
HERE=$(cd "$(dirname "$0")" && pwd)

[ -f "$FROM/training.json" ] && [ -f "$FROM/config.json" ] ||
  { echo "$FROM has no training.json / config.json" >&2; exit 1; }
ls "$FROM"/*.safetensors >/dev/null 2>&1 || { echo "$FROM has no .safetensors" >&2; exit 1; }
mkdir -p "$DEST"
rm -f "$DEST"/*.safetensors "$DEST"/*.safetensors.index.json  # a new save may shard differently
for f in "$FROM"/config.json "$FROM"/generation_config.json "$FROM"/training.json \
         "$FROM"/*.safetensors "$FROM"/*.safetensors.index.json; do
  if [ -f "$f" ]; then cp "$f" "$DEST/"; fi
done
cp "$DATA/tokenizer.model" "$DATA/tokenizer_config.json" "$DEST/"
python3 "$HERE/heldout_ids.py" "$DATA/heldout.bin" "$DEST/heldout_ids.txt" \
  --training-json "$DEST/training.json"
python3 "$HERE/write_card.py" "$DEST"
du -sh "$DEST"
