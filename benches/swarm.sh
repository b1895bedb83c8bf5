#!/usr/bin/env bash
# Loopback swarm benchmark: download 256 MiB from two python3-libtorrent seeders,
# with bitloop and with a python3-libtorrent leecher, alternating run by run in one
# session so that machine noise hits both alike. Reports medians of wall time, CPU
# time (user + system) and peak RSS, measured by /usr/bin/time.
#
#   benches/swarm.sh [RUNS] [MIB]        defaults: 5 runs, 256 MiB
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
mib=${2:-256}
tool=tests/interop/libtorrent_tool.py
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build --release -q
bitloop=target/release/bitloop
mkdir -p "$work/seed"
head -c $((mib << 20)) /dev/urandom > "$work/seed/data.bin"
"$bitloop" create "$work/seed/data.bin" -o "$work/data.torrent" >/dev/null

ports=()
for i in 1 2; do
  mkfifo "$work/hold$i"
  /usr/bin/python3 "$tool" seed "$work/data.torrent" "$work/seed" < "$work/hold$i" > "$work/seed$i.json" &
  exec {fd}>"$work/hold$i"   # keeps the seeder's stdin open until we exit
  for _ in $(seq 200); do [ -s "$work/seed$i.json" ] && break; sleep 0.05; done
  ports+=("$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['port'])" "$work/seed$i.json")")
done
peers=(--peer "127.0.0.1:${ports[0]}" --peer "127.0.0.1:${ports[1]}")

measure() { # label, command...
  local label=$1; shift
  rm -rf "$work/out"
  sync
  /usr/bin/time -f "%e %U %S %M" -o "$work/time" "$@" >/dev/null
  cmp -s "$work/out/data.bin" "$work/seed/data.bin" || { echo "$label: downloaded data differs" >&2; exit 1; }
  read -r wall user sys rss < "$work/time"
  echo "$label $wall $(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }') $rss" >> "$work/results"
}

for run in $(seq "$runs"); do
  measure bitloop "$bitloop" download "$work/data.torrent" -o "$work/out" "${peers[@]}" -q
  measure libtorrent /usr/bin/python3 "$tool" leech "$work/data.torrent" "$work/out" \
    --peer "127.0.0.1:${ports[0]}" --peer "127.0.0.1:${ports[1]}"
done

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
echo "$mib MiB from two libtorrent seeders on loopback, median of $runs runs:"
printf '%-11s %9s %9s %12s\n' client wall_s cpu_s peak_rss_MiB
for client in bitloop libtorrent; do
  wall=$(awk -v c=$client '$1 == c { print $2 }' "$work/results" | median)
  cpu=$(awk -v c=$client '$1 == c { print $3 }' "$work/results" | median)
  rss=$(awk -v c=$client '$1 == c { printf "%.1f\n", $4 / 1024 }' "$work/results" | median)
  printf '%-11s %9s %9s %12s\n' "$client" "$wall" "$cpu" "$rss"
done
