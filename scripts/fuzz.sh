#!/usr/bin/env bash
# Runs every cargo-fuzz target (each file in fuzz/src/bin/) for SECONDS, one per
# core at a time (FUZZ_JOBS=N for another count), starting from the committed
# inputs (fuzz/seeds/<target>, fuzz/regressions/<target>) and the corpus earlier
# runs grew (fuzz/corpus/<target>, not committed). Prints the runs
# and the crash, if any, of each target; exits 1 if any target crashed. A crashing
# input is kept in fuzz/artifacts/<target>/; fuzz/README.md says what to do with it.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     defaults: 60 seconds, every target
#
# Builds with debug assertions (-a), so an integer overflow is a crash too.
# Installs cargo-fuzz when it is missing. RUSTC_BOOTSTRAP=1 lets the stable
# toolchain build with the sanitizer flags cargo-fuzz needs.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
  for file in fuzz/src/bin/*.rs; do targets+=("$(basename "$file" .rs)"); done
fi
command -v c++ >/dev/null || { echo "fuzz.sh needs a C++ compiler for libFuzzer (Debian: apt-get install g++)" >&2; exit 1; }
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1

nice cargo fuzz build -O -a >/dev/null

# Targets run side by side, FUZZ_JOBS at a time (default: one per core): each
# libFuzzer process uses one core, so on two cores eleven 20 s runs take two minutes.
jobs=${FUZZ_JOBS:-$(nproc)}
logs=$(mktemp -d)
trap 'jobs -p | xargs -r kill 2>/dev/null || true; rm -rf "$logs"' EXIT

# Runs one target; leaves its log, result and time in $logs.
run_one() { # target
  local target=$1 started
  local corpora=("fuzz/corpus/$target")
  mkdir -p "${corpora[0]}"
  for dir in "fuzz/seeds/$target" "fuzz/regressions/$target"; do
    [ -d "$dir" ] && corpora+=("$dir")
  done
  started=$(date +%s)
  if nice cargo fuzz run -O -a "$target" "${corpora[@]}" -- \
      -max_total_time="$seconds" -print_final_stats=1 >"$logs/$target.log" 2>&1; then
    echo ok >"$logs/$target.result"
  else
    echo crash >"$logs/$target.result"
  fi
  echo $(($(date +%s) - started)) >"$logs/$target.seconds"
}

running=0
for target in "${targets[@]}"; do
  if ((running >= jobs)); then
    wait -n
    running=$((running - 1))
  fi
  run_one "$target" &
  running=$((running + 1))
done
wait

crashed=0
printf '%-12s %12s %9s  %s\n' target runs seconds result
for target in "${targets[@]}"; do
  log="$logs/$target.log"
  if [ "$(cat "$logs/$target.result")" = ok ]; then
    result=ok
  else
    result="CRASH: $(grep -o 'Test unit written to [^ ]*' "$log" | sed 's/.* //' | head -1)"
    crashed=$((crashed + 1))
  fi
  runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  printf '%-12s %12s %9s  %s\n' "$target" "$runs" "$(cat "$logs/$target.seconds")" "$result"
  if [ "$result" != ok ]; then
    grep -m1 -A3 'panicked at' "$log" | sed 's/^/    /' || tail -20 "$log" | sed 's/^/    /'
  fi
done
[ "$crashed" -eq 0 ]
