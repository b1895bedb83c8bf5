#!/usr/bin/env bash
# Storage end to end through the release binary (issue 18's performance figures),
# all in one session so that machine noise hits every figure alike:
#
#  1. a full check of 1 GiB of warm data (`bitloop download` on complete data
#     without resume data), in GB/s, beside `openssl dgst -sha1` of the same file;
#  2. MIB MiB from two libtorrent seeders: bytes read back (`--json` `read_back`,
#     and the process's own rchar) against `hashed_in_order`; wall, CPU, peak RSS;
#  3. CPU (user + sys) for MIB MiB from one and from three libtorrent seeders
#     against `openssl dgst -sha1` reading and hashing the same cached file;
#  4. peak RSS for MIB MiB from one libtorrent seeder with 256 KiB, 4 MiB and
#     16 MiB pieces.
#
# With BITLOOP_BASE=/path/to/an/older/release/bitloop, that binary downloads from
# the same seeders too, alternating with this one: before/after figures (its rchar
# is its read-back: older builds have no --json). With eatmydata installed, the
# one-seeder download also runs with fsync made a no-op, which shows what the
# durability promise (data fsynced at completion) costs in wall time.
#
#   benches/storage_e2e.sh [ROUNDS] [MIB] [CHECK_MIB]    defaults: 5 rounds, 256 MiB, 1024 MiB
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
mib=${2:-256}
check_mib=${3:-1024}
tool=tests/interop/libtorrent_tool.py
command -v openssl >/dev/null || { echo "storage_e2e.sh needs openssl" >&2; exit 1; }
/usr/bin/python3 -c 'import libtorrent' 2>/dev/null ||
  { echo "storage_e2e.sh needs python3-libtorrent (scripts/test-all.sh installs it)" >&2; exit 1; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; [ -z "${E2E_RESULTS:-}" ] || cp "$work/results" "$E2E_RESULTS"; rm -rf "$work"' EXIT

. benches/lib.sh

cargo build --release -q
bitloop=${CARGO_TARGET_DIR:-target}/release/bitloop
base=${BITLOOP_BASE:-}
measure=(/usr/bin/python3 benches/measure.py "$work/m")

# Runs a measured command (bounded by timeout: a stall is a failure, not a hang)
# and appends "NAME <measure.py's fields> [read_back hashed_in_order]" to results.
run() { # name command...
  local name=$1
  shift
  if ! timeout -k 10 600 "${measure[@]}" "$@" > "$work/out.json"; then
    echo "$name: failed or did not finish within 600 s" >&2
    exit 1
  fi
  local extra=""
  if grep -q read_back "$work/out.json" 2>/dev/null; then
    extra=$(/usr/bin/python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["torrents"][0]
assert t["outcome"] == "completed", t
print(t["read_back"], t["hashed_in_order"])' "$work/out.json")
  fi
  echo "$name $(cat "$work/m") $extra" >> "$work/results"
}

# 1. The check: 1 GiB, warm, no resume data, so every byte is read and hashed.
mkdir -p "$work/check"
head -c $((check_mib << 20)) /dev/urandom > "$work/check/big.bin"
"$bitloop" create "$work/check/big.bin" --piece-length 1048576 -o "$work/big.torrent" >/dev/null
cat "$work/check/big.bin" > /dev/null
for round in $(seq "$rounds"); do
  rm -rf "$work/check/.bitloop"
  run check "$bitloop" download "$work/big.torrent" -o "$work/check" -q --json
  run check_openssl openssl dgst -sha1 "$work/check/big.bin"
done
rm -rf "$work/check" "$work/big.torrent"

# 2-4. One payload, three torrents of it (256 KiB, 4 MiB, 16 MiB pieces).
mkdir -p "$work/seed"
head -c $((mib << 20)) /dev/urandom > "$work/seed/data.bin"
for piece in 262144 4194304 16777216; do
  "$bitloop" create "$work/seed/data.bin" --piece-length $piece -o "$work/p$piece.torrent" >/dev/null
done

# Starts a libtorrent seeder of a torrent in this shell (not a subshell: the FIFO
# holding its stdin open must live as long as the script); sets $port.
seeders=0
seeder() { # piece
  seeders=$((seeders + 1))
  local n=$seeders
  mkfifo "$work/hold$n"
  /usr/bin/python3 "$tool" seed "$work/p$1.torrent" "$work/seed" < "$work/hold$n" > "$work/seed$n.json" &
  exec {fd}>"$work/hold$n" # keeps the seeder's stdin open until we exit
  wait_until 90 test -s "$work/seed$n.json" || { echo "seeder $n printed nothing within 90 s" >&2; exit 1; }
  port=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['port'])" "$work/seed$n.json") ||
    { echo "seeder $n is not ready: $(cat "$work/seed$n.json")" >&2; exit 1; }
}
small=()
for i in 1 2 3; do
  seeder 262144
  small+=("--peer" "127.0.0.1:$port")
done
seeder 4194304
mid=("--peer" "127.0.0.1:$port")
seeder 16777216
large=("--peer" "127.0.0.1:$port")

download() { # name binary torrent-piece peers...
  local name=$1 binary=$2 piece=$3
  shift 3
  rm -rf "$work/out"
  sync
  local json=(--json) wrap=()
  [ "$binary" = "$bitloop" ] || json=()
  [ -z "${nosync:-}" ] || wrap=(eatmydata)
  run "$name" "${wrap[@]}" "$binary" download "$work/p$piece.torrent" -o "$work/out" "$@" -q "${json[@]}"
  cmp -s "$work/out/data.bin" "$work/seed/data.bin" || { echo "$name: downloaded data differs" >&2; exit 1; }
}

cat "$work/seed/data.bin" > /dev/null
cases=(openssl one two three mid large)
[ -z "$base" ] || cases+=(base_one base_two base_three base_mid base_large)
if command -v eatmydata >/dev/null; then
  cases+=(nosync)
else
  echo "(eatmydata is not installed: no figure without fsync; apt-get install eatmydata)" >&2
fi
for round in $(seq 0 $((rounds - 1))); do
  for i in $(seq 0 $((${#cases[@]} - 1))); do
    case ${cases[$(((round + i) % ${#cases[@]}))]} in
      openssl) run openssl openssl dgst -sha1 "$work/seed/data.bin" ;;
      one) download one "$bitloop" 262144 "${small[@]:0:2}" ;;
      nosync) nosync=1 download nosync "$bitloop" 262144 "${small[@]:0:2}" ;;
      two) download two "$bitloop" 262144 "${small[@]:0:4}" ;;
      three) download three "$bitloop" 262144 "${small[@]}" ;;
      mid) download mid "$bitloop" 4194304 "${mid[@]}" ;;
      large) download large "$bitloop" 16777216 "${large[@]}" ;;
      base_one) download base_one "$base" 262144 "${small[@]:0:2}" ;;
      base_two) download base_two "$base" 262144 "${small[@]:0:4}" ;;
      base_three) download base_three "$base" 262144 "${small[@]}" ;;
      base_mid) download base_mid "$base" 4194304 "${mid[@]}" ;;
      base_large) download base_large "$base" 16777216 "${large[@]}" ;;
    esac
  done
done

col() { # name field
  awk -v c="$1" -v f="$2" '$1 == c { print $f }' "$work/results" | median
}
# Fields after measure.py's: what --json says was read back and hashed in order.
F_READ_BACK=10 F_IN_ORDER=11
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
gbs() { awk -v s="$1" -v b=$((check_mib << 20)) 'BEGIN { printf "%.2f", b / s / 1e9 }'; }
echo "$check_mib MiB full check of warm data, median of $rounds:"
echo "  bitloop download (no resume data): $(col check 2) s wall = $(gbs "$(col check 2)") GB/s;" \
  "$(col check 3) s CPU = $(gbs "$(col check 3)") GB/s; rchar $(col check $F_RCHAR) B"
echo "  openssl dgst -sha1 of the same file: $(col check_openssl 2) s wall = $(gbs "$(col check_openssl 2)") GB/s;" \
  "$(col check_openssl 3) s CPU = $(gbs "$(col check_openssl 3)") GB/s"
echo
echo "$mib MiB from libtorrent seeders on loopback, medians of $rounds (wall s, cpu s, peak RSS MiB, rchar B):"
printf '  %-34s %7s %7s %9s %12s %12s %12s\n' case wall cpu rss_MiB rchar read_back in_order
for c in one nosync two three mid large base_one base_two base_three base_mid base_large openssl; do
  grep -q "^$c " "$work/results" || continue
  label=$c
  case $c in
    one) label="bitloop, 1 seeder, 256 KiB pieces" ;;
    nosync) label="the same, fsync a no-op (eatmydata)" ;;
    two) label="bitloop, 2 seeders, 256 KiB pieces" ;;
    three) label="bitloop, 3 seeders, 256 KiB pieces" ;;
    mid) label="bitloop, 1 seeder, 4 MiB pieces" ;;
    large) label="bitloop, 1 seeder, 16 MiB pieces" ;;
    base_one) label="BITLOOP_BASE, 1 seeder, 256 KiB" ;;
    base_two) label="BITLOOP_BASE, 2 seeders, 256 KiB" ;;
    base_three) label="BITLOOP_BASE, 3 seeders, 256 KiB" ;;
    base_mid) label="BITLOOP_BASE, 1 seeder, 4 MiB" ;;
    base_large) label="BITLOOP_BASE, 1 seeder, 16 MiB" ;;
    openssl) label="openssl dgst -sha1 (cached file)" ;;
  esac
  printf '  %-34s %7s %7s %9s %12s %12s %12s\n' "$label" "$(col "$c" 2)" "$(col "$c" 3)" \
    "$(awk -v k="$(col "$c" 4)" 'BEGIN { printf "%.1f", k / 1024 }')" "$(col "$c" $F_RCHAR)" \
    "$(col "$c" $F_READ_BACK)" "$(col "$c" $F_IN_ORDER)"
done
echo
ssl=$(col openssl 3)
echo "CPU against openssl (target <= 1.8): 1 seeder $(ratio "$(col one 3)" "$ssl")x, 3 seeders $(ratio "$(col three 3)" "$ssl")x"
[ -z "$base" ] || echo "  BITLOOP_BASE: 1 seeder $(ratio "$(col base_one 3)" "$ssl")x, 3 seeders $(ratio "$(col base_three 3)" "$ssl")x"
echo "peak RSS spread over 256 KiB / 4 MiB / 16 MiB pieces (target <= 1 MiB):" \
  "$(printf '%s\n' "$(col one 4)" "$(col mid 4)" "$(col large 4)" | sort -n | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.2f MiB", (hi - lo) / 1024 }')"
