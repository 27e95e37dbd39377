#!/usr/bin/env bash
# The Megatron converter's test (test_convert.py): run.sh SERPENT_BINARY.
# It needs a python3 with PyTorch to write and read torch checkpoints (Debian: python3-torch, which
# tools/install-deps.sh installs); where there is none it says so and exits 77, which ctest
# reports as skipped.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
for py in python3 /usr/bin/python3; do
  if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import torch, numpy' >/dev/null 2>&1; then
    exec "$py" "$here/test_convert.py" "$1"
  fi
done
echo "SKIP megatron.convert: no python3 with PyTorch here (Debian: apt-get install python3-torch)"
exit 77
