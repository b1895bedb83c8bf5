#!/usr/bin/env bash
# Upload benchmarks on loopback, each printed as medians of ROUNDS runs:
#
#  (a) a python3-libtorrent leecher (TCP only, plaintext) downloads A_MIB MiB from a
#      bitloop seeder and from a python3-libtorrent seeder, alternating round by round:
#      the leecher's wall time, and the seeder's CPU time (user + system, threads
#      included, from /proc/PID/stat) and peak RSS during that download (the
#      kernel's high-water mark, reset before each download through clear_refs,
#      and the sampled peaks of its two parts: anonymous memory and file pages;
#      libtorrent maps the torrent's files, so the data it serves counts in its
#      RSS as file pages);
#  (b) bitloop to bitloop, one seeder and one leecher, B_MIB MiB: the leecher's
#      wall time, CPU time and peak RSS, its --json figures, and (with PERF=1 and
#      perf installed) where the leecher's time goes, from one perf record run;
#  (c) `bitloop demo` at its default size: wall time (every copy verified).
#
#   benches/upload.sh [ROUNDS] [A_MIB] [B_MIB]      defaults: 5 256 1024
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
a_mib=${2:-256}
b_mib=${3:-1024}
tool=tests/interop/libtorrent_tool.py
/usr/bin/python3 -c 'import libtorrent' 2>/dev/null ||
  { echo "upload.sh needs python3-libtorrent (scripts/test-all.sh installs it)" >&2; exit 1; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

. benches/lib.sh

cargo build --release -q
bitloop=${CARGO_TARGET_DIR:-target}/release/bitloop

table() { # file label...
  local file=$1
  shift
  printf '%-12s %8s %8s %13s %14s %14s %11s\n' "" wall_s cpu_s peak_rss_MiB peak_anon_MiB peak_file_MiB own_cpu_s
  for label in "$@"; do
    printf '%-12s %8s %8s %13s %14s %14s %11s\n' "$label" "$(column "$file" "$label" $F_WALL 1 2)" \
      "$(column "$file" "$label" $F_CPU 1 2)" "$(column "$file" "$label" $F_RSS 1024 1)" \
      "$(column "$file" "$label" $F_ANON 1024 1)" "$(column "$file" "$label" $F_FILE 1024 1)" \
      "$(column "$file" "$label" $F_OWN 1 2)"
  done
}

# A torrent of MIB MiB of random data in $work/NAME, made by bitloop.
make_data() { # name mib
  mkdir -p "$work/$1"
  head -c $(($2 << 20)) /dev/urandom > "$work/$1/data.bin"
  "$bitloop" create "$work/$1/data.bin" -o "$work/$1.torrent" >/dev/null
}

# Starts `bitloop seed` on a free port; sets $seed_pid and $seed_port.
start_bitloop_seeder() { # name
  seed_port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("0.0.0.0",0)); print(s.getsockname()[1])')
  "$bitloop" seed "$work/$1.torrent" --data "$work/$1" --port "$seed_port" 2> "$work/$1.seed.err" &
  seed_pid=$!
  wait_until 120 grep -q complete "$work/$1.seed.err" ||
    { echo "bitloop seed did not get ready" >&2; cat "$work/$1.seed.err" >&2; exit 1; }
}

echo "== (a) a libtorrent leecher downloads $a_mib MiB: from bitloop seed, from a libtorrent seeder"
make_data a "$a_mib"
start_bitloop_seeder a
bl_pid=$seed_pid bl_port=$seed_port
mkfifo "$work/hold"
/usr/bin/python3 "$tool" seed "$work/a.torrent" "$work/a" < "$work/hold" > "$work/lt.json" &
lt_pid=$!
exec {hold}>"$work/hold" # keeps the libtorrent seeder's stdin open until we exit
wait_until 120 test -s "$work/lt.json" || { echo "the libtorrent seeder printed nothing" >&2; exit 1; }
lt_port=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['port'])" "$work/lt.json")
leech_from() { # label pid port [leech options]
  rm -rf "$work/out"
  sync
  if ! timeout -k 10 600 /usr/bin/python3 benches/measure.py "$work/m" --watch "$2" \
      /usr/bin/python3 "$tool" leech "$work/a.torrent" "$work/out" --peer "127.0.0.1:$3" "${@:4}" >/dev/null; then
    echo "the leecher failed from $1" >&2
    exit 1
  fi
  cmp -s "$work/out/data.bin" "$work/a/data.bin" || { echo "data from $1 differs" >&2; exit 1; }
  echo "$1 $(cat "$work/m")" >> "$work/a.results"
}
# The leecher connects in plaintext at once (--plaintext): by default libtorrent
# first tries an encrypted handshake (MSE), which bitloop does not speak, and
# reconnects in plaintext a second later; the last row shows that cost.
for round in $(seq 1 "$rounds"); do
  if ((round % 2)); then
    leech_from bitloop "$bl_pid" "$bl_port" --plaintext
    leech_from libtorrent "$lt_pid" "$lt_port" --plaintext
  else
    leech_from libtorrent "$lt_pid" "$lt_port" --plaintext
    leech_from bitloop "$bl_pid" "$bl_port" --plaintext
  fi
  leech_from bitloop+mse "$bl_pid" "$bl_port"
done
echo "the leecher's wall time; the seeder's CPU and memory during the download (median of $rounds):"
table "$work/a.results" bitloop libtorrent bitloop+mse
# The seeder saves its resume data as it stops: wait for it before removing its folder.
kill "$bl_pid" "$lt_pid" 2>/dev/null || true
wait "$bl_pid" "$lt_pid" 2>/dev/null || true
rm -rf "$work/a" "$work/out"

echo "== (b) bitloop seed to bitloop download, $b_mib MiB"
make_data b "$b_mib"
start_bitloop_seeder b
download_b() { # label [--watch pid] (without: the leecher itself)
  rm -rf "$work/out"
  sync
  timeout -k 10 600 /usr/bin/python3 benches/measure.py "$work/m" "${@:2}" \
    "$bitloop" download "$work/b.torrent" -o "$work/out" --peer "127.0.0.1:$seed_port" -q --json > "$work/b.json" ||
    { echo "bitloop download failed" >&2; exit 1; }
  cmp -s "$work/out/data.bin" "$work/b/data.bin" || { echo "downloaded data differs" >&2; exit 1; }
  echo "$1 $(cat "$work/m")" >> "$work/b.results"
}
for round in $(seq 1 "$rounds"); do
  download_b leecher
  download_b seeder --watch "$seed_pid"
done
echo "rows: the leecher's own figures; the seeder's during a download (wall is the leecher's; median of $rounds):"
table "$work/b.results" leecher seeder
# Every row is one download, timed the same way, so the leecher's wall over all of
# them is the steadiest figure (the two row kinds alternate; their medians differ
# only by noise).
echo "the leecher's wall over all $((2 * rounds)) downloads: median $(awk -v f=$F_WALL '{ print $f }' "$work/b.results" | median) s," \
  "fastest $(awk -v f=$F_WALL '{ print $f }' "$work/b.results" | sort -n | head -1) s," \
  "slowest $(awk -v f=$F_WALL '{ print $f }' "$work/b.results" | sort -n | tail -1) s"
echo "its --json figures (last run): $(cat "$work/b.json")"
if [ "${PERF:-0}" = 1 ] && command -v perf >/dev/null; then
  rm -rf "$work/out"
  sync
  perf record -q -g -o "$work/perf.data" \
    "$bitloop" download "$work/b.torrent" -o "$work/out" --peer "127.0.0.1:$seed_port" -q 2>/dev/null
  echo "where the leecher's time goes (perf, one run, share of its samples):"
  perf report -i "$work/perf.data" --no-children --sort dso,symbol --stdio 2>/dev/null |
    grep -E '^ +[0-9.]+%' | cut -c1-110 | head -25 || true
fi
kill "$seed_pid" 2>/dev/null || true
wait "$seed_pid" 2>/dev/null || true
rm -rf "$work/b" "$work/out"

echo "== (c) bitloop demo, default size"
for round in $(seq 1 "$rounds"); do
  /usr/bin/python3 benches/measure.py "$work/m" "$bitloop" demo > "$work/demo.out" 2>/dev/null ||
    { echo "the demo failed:" >&2; cat "$work/demo.out" >&2; exit 1; }
  [ "$(grep -c 'copy verified, byte for byte' "$work/demo.out")" = 3 ] ||
    { echo "the demo did not verify every copy:" >&2; cat "$work/demo.out" >&2; exit 1; }
  echo "demo $(cat "$work/m")" >> "$work/c.results"
done
echo "bitloop demo (median of $rounds):"
table "$work/c.results" demo
