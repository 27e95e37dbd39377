#!/usr/bin/env bash
# Writes one file per real chat template and construct template (from the reference test's
# sources) into DIR, as a starting corpus for fuzz_chat_template.
set -euo pipefail
dir=$1
here=$(cd "$(dirname "$0")/../chat_template" && pwd)
mkdir -p "$dir"
tmp=$(mktemp)
node "$here/render_reference.js" "$tmp" >/dev/null
node -e '
const fs = require("fs");
const r = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
r.templates.forEach((t, i) => fs.writeFileSync(`${process.argv[2]}/seed-${i}`, t.template));
console.log(`${r.templates.length} seeds`);
' "$tmp" "$dir"
rm -f "$tmp"
