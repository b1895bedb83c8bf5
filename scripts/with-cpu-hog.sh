#!/usr/bin/env bash
# Runs a command with CPU hogs beside it: one busy loop per core (HOGS=N for
# another count), at normal priority, as a neighbour's job would. For checking
# that the suite's timing assertions hold on a loaded machine:
#
#   scripts/with-cpu-hog.sh scripts/test-all.sh
#
# The hogs are killed when the command ends, however it ends; the exit status is
# the command's.
set -uo pipefail
(($#)) || { echo "usage: $0 COMMAND [ARG...]" >&2; exit 2; }
hogs=${HOGS:-$(nproc)}
pids=()
stop_hogs() {
  ((${#pids[@]})) || return 0
  kill "${pids[@]}" 2>/dev/null
  wait "${pids[@]}" 2>/dev/null
  pids=()
}
trap stop_hogs EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
for _ in $(seq "$hogs"); do
  (while :; do :; done) &
  pids+=($!)
done
echo "with-cpu-hog: $hogs busy loops beside: $*" >&2
"$@"
