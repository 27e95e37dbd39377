#!/usr/bin/env bash
# Builds serpent and runs the whole test suite twice: a plain optimised build, then under
# AddressSanitizer + UndefinedBehaviorSanitizer. Usage: tools/test.sh [extra cmake args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
jobs=$(nproc)
for variant in plain sanitize; do
  dir=build-test-$variant
  flags=(-DBUILD_TESTING=ON)
  [ "$variant" = sanitize ] && flags+=(-DSERPENT_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug)
  echo "== $variant build =="
  cmake -S . -B "$dir" "${flags[@]}" "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
  echo "== $variant tests =="
  # ASan's leak checker is on; UBSan stops at the first report (-fno-sanitize-recover).
  (cd "$dir" && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j "$jobs" -LE gpu)
done
echo "all tests passed"
