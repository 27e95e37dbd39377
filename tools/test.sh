#!/usr/bin/env bash
# Builds serpent and runs the whole test suite twice: a plain optimised build, then under
# AddressSanitizer + UndefinedBehaviorSanitizer; then the scheduler and server tests under
# ThreadSanitizer. Usage: tools/test.sh [extra cmake args]
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

# ThreadSanitizer: only what runs threads of serpent's own (the scheduler's engine thread, the
# HTTP server's connection threads, matchers sharing a grammar), i.e. the scheduler, server and
# grammar-sharing tests. The CPU backend runs on
# one thread (OMP_NUM_THREADS=1, also OpenBLAS's): TSan does not see libgomp's barriers and would
# report the OpenMP workers' accesses as races. A race makes the process exit 66 (the tests fail);
# the reports go to build-test-tsan/tsan/ and are printed.
dir=build-test-tsan
echo "== tsan build =="
cmake -S . -B "$dir" -DBUILD_TESTING=ON -DSERPENT_CUDA=OFF -DSERPENT_SANITIZE=thread "$@" >/dev/null
cmake --build "$dir" -j "$jobs" --target serpent test_scheduler test_server_text \
  test_reply_parsers test_grammar
echo "== tsan tests =="
rm -rf "$dir/tsan" && mkdir -p "$dir/tsan"
rc=0
(cd "$dir" && OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
  TSAN_OPTIONS="log_path=$PWD/$dir/tsan/report second_deadlock_stack=1" \
  ctest --output-on-failure -j "$jobs" -LE gpu -R 'scheduler|server|matchers_share') || rc=$?
if compgen -G "$dir/tsan/report*" >/dev/null; then
  cat "$dir"/tsan/report*
  rc=1
fi
[ "$rc" -eq 0 ] || { echo "ThreadSanitizer tests failed"; exit 1; }
echo "all tests passed"
