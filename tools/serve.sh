#!/usr/bin/env bash
# Installs what is missing, builds serpent (with the CUDA backend when nvcc is there), and starts
# the OpenAI-compatible server: on the GPU when there is one, else on the CPU, serving the
# shipped default model unless --model says otherwise. Extra arguments go to `serpent serve`.
#   tools/serve.sh                      # http://127.0.0.1:8000, models/serpent-tiny
#   tools/serve.sh --model /path/to/checkpoint --port 9000
set -euo pipefail
cd "$(dirname "$0")/.."
SERPENT_SKIP_NPM=1 bash tools/install-deps.sh
export PATH=/usr/local/cuda/bin:$PATH
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
cmake --build build -j "$(nproc)" --target serpent
exec build/serpent serve "$@"
