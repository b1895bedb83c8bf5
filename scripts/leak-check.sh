#!/usr/bin/env bash
# The release binary under valgrind: a complete download, Ctrl+C in the middle of
# one, and a failed one. Each must end with its usual exit code and no definite or
# indirect loss (valgrind's own error exit code, 99, fails the case).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build --release -q
bitloop=target/release/bitloop
tool=tests/interop/libtorrent_tool.py
mkdir -p "$work/seed"
head -c 3000000 /dev/urandom > "$work/seed/data.bin"
"$bitloop" create "$work/seed/data.bin" --piece-length 32768 -o "$work/data.torrent" >/dev/null

# Starts a seeder in this shell (not a subshell: the FIFO holding its stdin open
# must live as long as the script); sets $port.
seeder() { # name [seed options]
  local name=$1; shift
  mkfifo "$work/$name.hold"
  /usr/bin/python3 "$tool" seed "$work/data.torrent" "$work/seed" "$@" < "$work/$name.hold" > "$work/$name.json" &
  exec {hold}>"$work/$name.hold"
  for _ in $(seq 400); do [ -s "$work/$name.json" ] && break; sleep 0.05; done
  port=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['port'])" "$work/$name.json")
}
seeder good
good=$port
seeder stall --never-unchoke --allowed-fast 0
stall=$port

vg=(valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=99)
passed=0
failed=0
check() { # name expected actual
  if [ "$3" -eq "$2" ]; then
    echo "test valgrind_$1 ... ok"; passed=$((passed + 1))
  else
    echo "test valgrind_$1 ... FAILED (exit $3, expected $2)"; failed=$((failed + 1))
  fi
}

set +e
"${vg[@]}" "$bitloop" download "$work/data.torrent" -o "$work/complete" --peer "127.0.0.1:$good" --timeout 60 -q
check complete_download 0 $?
cmp -s "$work/complete/data.bin" "$work/seed/data.bin" || { echo "complete download differs"; failed=$((failed + 1)); }

# Interrupted: the stalling seeder never unchokes, so the download is still running
# when SIGINT arrives.
"${vg[@]}" "$bitloop" download "$work/data.torrent" -o "$work/interrupted" --peer "127.0.0.1:$stall" --timeout 60 -q &
pid=$!
# Wait (bounded) until bitloop's connection to the stalling seeder is up, so that
# SIGINT finds a peer session to tear down.
for _ in $(seq 600); do
  ss -Htn state established "( dport = :$stall )" | grep -q . && break
  sleep 0.05
done
kill -INT "$pid"
wait "$pid"
check interrupted_download 130 $?

"${vg[@]}" "$bitloop" download "$work/data.torrent" -o "$work/failed" --timeout 1 -q 2>/dev/null
check failed_download 1 $?
set -e

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
