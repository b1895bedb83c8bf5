#!/usr/bin/env bash
# The release binary under valgrind: a complete download, Ctrl+C in the middle of
# one, and a failed one. Each must end with its usual exit code and no definite or
# indirect loss (valgrind's own error exit code, 99, fails the case).
#
# Every wait is bounded and fails when its bound passes: a seeder that does not
# start, a connection that never comes up, a run that does not end.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in valgrind ss /usr/bin/python3; do
  command -v "$tool" >/dev/null || {
    echo "leak-check.sh needs $tool (scripts/test-all.sh installs valgrind, iproute2, python3-libtorrent)" >&2
    exit 1
  }
done
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# wait_until: the benchmarks' bounded poll (every 50 ms until it succeeds or the
# seconds pass).
. benches/lib.sh

cargo build --release -q
bitloop=${CARGO_TARGET_DIR:-target}/release/bitloop
tool=tests/interop/libtorrent_tool.py
mkdir -p "$work/seed"
head -c 3000000 /dev/urandom > "$work/seed/data.bin"
"$bitloop" create "$work/seed/data.bin" --piece-length 32768 -o "$work/data.torrent" >/dev/null

# Starts a seeder in this shell (not a subshell: the FIFO holding its stdin open
# must live as long as the script); sets $port.
seeder() { # name [seed options]
  local name=$1
  shift
  mkfifo "$work/$name.hold"
  /usr/bin/python3 "$tool" seed "$work/data.torrent" "$work/seed" "$@" < "$work/$name.hold" > "$work/$name.json" &
  exec {hold}>"$work/$name.hold"
  # The tool gives up (and says so) after 60 s of checking the data.
  wait_until 90 test -s "$work/$name.json" || { echo "seeder $name printed nothing within 90 s" >&2; exit 1; }
  port=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['port'])" "$work/$name.json") ||
    { echo "seeder $name is not ready: $(cat "$work/$name.json")" >&2; exit 1; }
}
seeder good
good=$port
seeder stall --never-unchoke --allowed-fast 0
stall=$port

# Each run is bounded: timeout sends SIGTERM after 300 s (exit 124), SIGKILL 10 s
# later. It passes SIGINT on to valgrind, which passes it to bitloop.
vg=(timeout -k 10 300 valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=99)
passed=0
failed=0
check() { # name expected actual
  if [ "$3" -eq "$2" ]; then
    echo "test valgrind_$1 ... ok"
    passed=$((passed + 1))
  else
    local why="exit $3, expected $2"
    [ "$3" -eq 124 ] && why="did not end within 300 s"
    echo "test valgrind_$1 ... FAILED ($why)"
    failed=$((failed + 1))
  fi
}

set +e
"${vg[@]}" "$bitloop" download "$work/data.torrent" -o "$work/complete" --peer "127.0.0.1:$good" --timeout 60 -q
check complete_download 0 $?
cmp -s "$work/complete/data.bin" "$work/seed/data.bin" || { echo "complete download differs"; failed=$((failed + 1)); }

# Interrupted: the stalling seeder never unchokes, so the download is still running
# when SIGINT arrives. SIGINT is sent only once bitloop's connection to that seeder
# is up, so that it finds a peer session to tear down; no connection is a failure.
"${vg[@]}" "$bitloop" download "$work/data.torrent" -o "$work/interrupted" --peer "127.0.0.1:$stall" --timeout 60 -q &
pid=$!
connected() { ss -Htn state established "( dport = :$stall )" | grep -q .; }
if wait_until 60 connected; then
  kill -INT "$pid"
  wait "$pid"
  check interrupted_download 130 $?
else
  echo "test valgrind_interrupted_download ... FAILED (no connection to the stalling seeder within 60 s)"
  failed=$((failed + 1))
  kill -TERM "$pid" # timeout passes it on; its own bound still holds
  wait "$pid"
fi

"${vg[@]}" "$bitloop" download "$work/data.torrent" -o "$work/failed" --timeout 1 -q 2>/dev/null
check failed_download 1 $?
set -e

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
