#!/usr/bin/env bash
# ctest entry chat_template.reference: renders every case with the reference renderer, then has
# serpent's renderer render the same and compares byte for byte.
#   run_reference.sh CHAT_TEMPLATE_REF_BINARY OUTPUT_DIR
set -euo pipefail
bin=$1
outdir=$2
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -f "$here/node_modules/@huggingface/jinja/package.json" ]; then
  echo "FAIL: $here/node_modules is missing; run tests/chat_template/setup.sh first" >&2
  exit 1
fi
if ! command -v node >/dev/null; then
  echo "FAIL: node is not installed" >&2
  exit 1
fi
# strftime_now renders local time and month names in the default locale: fix both sides.
export TZ=UTC LC_ALL=C
node "$here/render_reference.js" "$outdir/chat_template_reference.json"
exec "$bin" "$outdir/chat_template_reference.json"
