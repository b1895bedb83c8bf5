#!/usr/bin/env bash
# Real links and many peers, bitloop beside python3-libtorrent (TCP only, uTP off).
#
#   latency  64 MiB from one libtorrent seeder through examples/delay_proxy.rs, which
#            holds every byte D ms each way and buffers without limit (0, 25, 100 ms),
#            bitloop and a libtorrent leecher alternating; median wall and CPU time.
#   idle     N idle peers (1, 100, 1,000; benches/idle_peers.py: they handshake,
#            send a bitfield and never unchoke) connected to a bitloop download that
#            has no seeder: its VmRSS and VmHWM, the RSS per extra peer between the
#            smallest and largest N, and its CPU over 10 s while idle.
#   swarm    256 MiB from two libtorrent seeders that connect to bitloop, with and
#            without 1,000 idle peers connected first; median time from the first
#            bytes on disk to bitloop's exit (libtorrent takes a second or more to
#            act on "connect", which is not bitloop's time), and bitloop's CPU
#            while the 1,000 peers idle.
#   dead     64 MiB from one libtorrent seeder listed after 100 silent peers (SYN
#            never answered) and 100 closed ports, bitloop and libtorrent
#            alternating; median wall and CPU time.
#
#   benches/links.sh [ROUNDS] [PART...]      defaults: 5 rounds, every part
#
# Environment: LINKS_MIB (64), LINKS_SWARM_MIB (256), LINKS_DELAYS ("0 25 100"),
# LINKS_IDLE ("1 100 1000"), LINKS_IDLE_SECONDS (10: how long idle CPU is measured).
# The open-file limit is raised to 4096 (the 1,000 idle peers need it); bitloop gets
# --max-peers and --max-connections to hold them.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
shift || true
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(latency idle swarm dead)
mib=${LINKS_MIB:-64}
swarm_mib=${LINKS_SWARM_MIB:-256}
delays=(${LINKS_DELAYS:-0 25 100})
idle_counts=(${LINKS_IDLE:-1 100 1000})
idle_seconds=${LINKS_IDLE_SECONDS:-10}
tool=tests/interop/libtorrent_tool.py
py=/usr/bin/python3
$py -c "import libtorrent" 2>/dev/null ||
  { echo "links.sh needs python3-libtorrent (scripts/test-all.sh installs it)" >&2; exit 1; }
ulimit -n 4096 2>/dev/null || ulimit -n "$(ulimit -Hn)"
work=$(mktemp -d)
cleanup() {
  # Closing the holding descriptors ends every helper that waits on its stdin.
  for fd in ${holds[@]+"${holds[@]}"}; do eval "exec $fd>&-" 2>/dev/null || true; done
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
holds=()
trap cleanup EXIT

. benches/lib.sh
free_port() { $py -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
json_field() { $py -c "import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }

cargo build --release -q --bin bitloop --example delay_proxy
bitloop=${CARGO_TARGET_DIR:-target}/release/bitloop
proxy=${CARGO_TARGET_DIR:-target}/release/examples/delay_proxy

# Starts a helper whose stdin is a FIFO we hold open; its stdout goes to FILE.
# Sets $helper_pid. Closing the FIFO (at exit, or `release NAME`) ends the helper.
start_helper() { # name out_file command...
  local name=$1 out=$2
  shift 2
  mkfifo "$work/$name.in"
  "$@" < "$work/$name.in" > "$out" &
  helper_pid=$!
  exec {fd}>"$work/$name.in"
  holds+=("$fd")
  eval "hold_$name=$fd"
}
release() { # name
  local var="hold_$1"
  eval "exec ${!var}>&-"
}


make_content() { # name mib
  mkdir -p "$work/$1"
  head -c $(($2 << 20)) /dev/urandom > "$work/$1/data.bin"
  "$bitloop" create "$work/$1/data.bin" -o "$work/$1.torrent" >/dev/null
}

start_seeder() { # name content: sets $seeder_port
  start_helper "$1" "$work/$1.json" $py "$tool" seed "$work/$2.torrent" "$work/$2"
  wait_until 90 test -s "$work/$1.json" || { echo "seeder $1 printed nothing within 90 s" >&2; exit 1; }
  seeder_port=$(json_field "$work/$1.json" port)
}

# One measured download into $work/out; appends "LABEL wall cpu rss" to RESULTS.
measure() { # results label content command...
  local results=$1 label=$2 content=$3
  shift 3
  rm -rf "$work/out"
  sync
  if ! timeout -k 10 600 $py benches/measure.py "$work/m" "$@" >/dev/null; then
    echo "$label: the download failed or did not finish within 600 s" >&2
    exit 1
  fi
  cmp -s "$work/out/data.bin" "$work/$content/data.bin" || { echo "$label: downloaded data differs" >&2; exit 1; }
  echo "$label $(cat "$work/m")" >> "$results"
}

run_latency() {
  make_content lat "$mib"
  start_seeder lat_seed lat
  local target=127.0.0.1:$seeder_port results=$work/latency.results
  : > "$results"
  for delay in "${delays[@]}"; do
    "$proxy" --target "$target" --delay-ms "$delay" > "$work/proxy$delay.out" 2> "$work/proxy$delay.err" &
    local proxy_pid=$! via
    wait_until 30 grep -q listening "$work/proxy$delay.out" || { echo "the delay proxy did not start" >&2; exit 1; }
    via=$(awk '/listening/ { print $3 }' "$work/proxy$delay.out")
    for round in $(seq 0 $((rounds - 1))); do
      local order=(bitloop libtorrent)
      [ $((round % 2)) -eq 0 ] || order=(libtorrent bitloop)
      for client in "${order[@]}"; do
        if [ "$client" = bitloop ]; then
          measure "$results" "bitloop/$delay" lat "$bitloop" download "$work/lat.torrent" -o "$work/out" --peer "$via" -q
        else
          measure "$results" "libtorrent/$delay" lat $py "$tool" leech "$work/lat.torrent" "$work/out" --peer "$via" --timeout 500
        fi
      done
    done
    kill -TERM "$proxy_pid" # it closes every connection and proves its loop empty
    wait "$proxy_pid"
  done
  echo
  echo "latency: $mib MiB from one libtorrent seeder through the delay proxy, median of $rounds rounds"
  printf '%-14s %10s %9s %13s %9s %11s\n' "delay each way" bitloop_s cpu_s libtorrent_s cpu_s ratio
  for delay in "${delays[@]}"; do
    local b l
    b=$(column "$results" "bitloop/$delay" 2)
    l=$(column "$results" "libtorrent/$delay" 2)
    printf '%-14s %10s %9s %13s %9s %11s\n' "$delay ms" "$b" "$(column "$results" "bitloop/$delay" 3)" \
      "$l" "$(column "$results" "libtorrent/$delay" 3)" "$(awk -v b="$b" -v l="$l" 'BEGIN { printf "%.2f", b / l }')"
  done
}

# Fields of /proc/PID: VmRSS and VmHWM in KiB; CPU ticks (user + system).
rss_of() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
hwm_of() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
ticks_of() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# Runs a command (bitloop) and, when it exits, writes to FILE how long it ran after
# the first bytes reached WATCHED (the download's file): a download's own duration,
# whatever the seeders took to connect. Prints the command's pid first.
cat > "$work/watch.py" <<'EOF'
import os, subprocess, sys, time
out, watched, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
child = subprocess.Popen(cmd)
print(child.pid, flush=True)
first = None
while child.poll() is None:
    if first is None:
        try:
            if os.stat(watched).st_blocks > 0:
                first = time.monotonic()
        except OSError:
            pass
    time.sleep(0.005)
end = time.monotonic()
with open(out, "w") as f:
    f.write(f"{end - (first or end):.2f}\n")
sys.exit(child.returncode)
EOF

# Starts bitloop on CONTENT with no peers given, listening on a fresh port, under
# watch.py; sets $bitloop_pid, $watch_pid and $bitloop_port.
start_idle_bitloop() { # content max_peers
  bitloop_port=$(free_port)
  rm -rf "$work/out" "$work/watch.pid"
  $py "$work/watch.py" "$work/watch.out" "$work/out/data.bin" "$bitloop" download "$work/$1.torrent" \
    -o "$work/out" --port "$bitloop_port" --max-peers "$2" --max-connections $(($2 + 100)) --timeout 600 -q \
    > "$work/watch.pid" &
  watch_pid=$!
  wait_until 30 test -s "$work/watch.pid" || { echo "bitloop did not start" >&2; exit 1; }
  bitloop_pid=$(cat "$work/watch.pid")
  wait_until 30 $py -c "import socket, sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1).close()" \
    "$bitloop_port" || { echo "bitloop did not listen" >&2; exit 1; }
}

connect_idle() { # name content count: waits until all are handshaken
  local info pieces
  info=$("$bitloop" info --json "$work/$2.torrent")
  pieces=$($py -c "import json, sys; print(json.loads(sys.argv[1])['piece_count'])" "$info")
  start_helper "$1" "$work/$1.out" $py benches/idle_peers.py "127.0.0.1:$bitloop_port" \
    "$($py -c "import json, sys; print(json.loads(sys.argv[1])['info_hash'])" "$info")" "$pieces" "$3"
  wait_until 130 grep -q ready "$work/$1.out" || { echo "idle peers: $(cat "$work/$1.out")" >&2; exit 1; }
}

run_idle() {
  [ -e "$work/lat.torrent" ] || make_content lat "$mib"
  local hz first_n="" first_rss="" last_n="" last_rss=""
  hz=$(getconf CLK_TCK)
  echo
  echo "idle: N idle peers connected to a bitloop download with no seeder"
  printf '%-7s %11s %11s %16s\n' peers VmRSS_KiB VmHWM_KiB "cpu_idle_${idle_seconds}s_%"
  for n in "${idle_counts[@]}"; do
    start_idle_bitloop lat $((n + 10))
    connect_idle "idle$n" lat "$n"
    sleep 1 # let the last handshakes' replies settle before sampling
    local rss hwm t0 t1
    rss=$(rss_of "$bitloop_pid")
    hwm=$(hwm_of "$bitloop_pid")
    t0=$(ticks_of "$bitloop_pid")
    sleep "$idle_seconds"
    t1=$(ticks_of "$bitloop_pid")
    printf '%-7s %11s %11s %16s\n' "$n" "$rss" "$hwm" \
      "$(awk -v d=$((t1 - t0)) -v hz="$hz" -v s="$idle_seconds" 'BEGIN { printf "%.2f", 100 * d / hz / s }')"
    release "idle$n"
    kill "$bitloop_pid"
    wait "$watch_pid" || true
    [ -n "$first_n" ] || { first_n=$n; first_rss=$rss; }
    last_n=$n
    last_rss=$rss
  done
  if [ "$last_n" != "$first_n" ]; then
    awk -v a="$first_rss" -v b="$last_rss" -v na="$first_n" -v nb="$last_n" \
      'BEGIN { printf "RSS per extra idle peer between %d and %d: %.2f KiB\n", na, nb, (b - a) / (nb - na) }'
  fi
}

run_swarm() {
  make_content swarm "$swarm_mib"
  local results=$work/swarm.results hz n_idle=${idle_counts[${#idle_counts[@]}-1]}
  hz=$(getconf CLK_TCK)
  : > "$results"
  for i in 1 2; do
    start_helper "cseed$i" "$work/cseed$i.json" $py benches/connecting_seeder.py "$work/swarm.torrent" "$work/swarm"
    wait_until 90 test -s "$work/cseed$i.json" || { echo "seeder $i printed nothing within 90 s" >&2; exit 1; }
  done
  for round in $(seq 0 $((rounds - 1))); do
    local order=(alone crowd)
    [ $((round % 2)) -eq 0 ] || order=(crowd alone)
    for kind in "${order[@]}"; do
      start_idle_bitloop swarm $((n_idle + 10))
      if [ "$kind" = crowd ]; then
        connect_idle "crowd$round" swarm "$n_idle"
        local t0
        t0=$(ticks_of "$bitloop_pid")
        sleep "$idle_seconds"
        echo "idle_cpu $(awk -v d=$(($(ticks_of "$bitloop_pid") - t0)) -v hz="$hz" -v s="$idle_seconds" \
          'BEGIN { printf "%.2f", 100 * d / hz / s }')" >> "$results"
      fi
      for i in 1 2; do
        local var="hold_cseed$i"
        echo "connect 127.0.0.1:$bitloop_port" >&"${!var}"
      done
      # bitloop exits 0 once every piece is verified (bounded by its own timeout).
      wait "$watch_pid" || { echo "bitloop failed ($kind)" >&2; exit 1; }
      echo "$kind $(cat "$work/watch.out")" >> "$results"
      cmp -s "$work/out/data.bin" "$work/swarm/data.bin" || { echo "swarm: downloaded data differs" >&2; exit 1; }
      [ "$kind" = alone ] || release "crowd$round"
    done
  done
  local alone crowd
  alone=$(column "$results" alone 2)
  crowd=$(column "$results" crowd 2)
  echo
  echo "swarm: $swarm_mib MiB from two libtorrent seeders connecting to bitloop, median of $rounds rounds"
  echo "  seeders alone: $alone s; beside $n_idle idle peers: $crowd s ($(awk -v a="$alone" -v c="$crowd" 'BEGIN { printf "%.2f", c / a }')x);" \
    "CPU while the $n_idle peers idle: $(column "$results" idle_cpu 2) % of a core"
}

run_dead() {
  [ -e "$work/lat.torrent" ] || make_content lat "$mib"
  start_seeder dead_seed lat
  local live=127.0.0.1:$seeder_port results=$work/dead.results
  : > "$results"
  start_helper dead "$work/dead.txt" $py benches/dead_peers.py 100 100
  wait_until 30 grep -q ready "$work/dead.txt" || { echo "dead peers did not start" >&2; exit 1; }
  local peers=()
  while read -r addr; do
    [ "$addr" = ready ] || peers+=(--peer "$addr")
  done < "$work/dead.txt"
  peers+=(--peer "$live")
  for round in $(seq 0 $((rounds - 1))); do
    local order=(bitloop libtorrent)
    [ $((round % 2)) -eq 0 ] || order=(libtorrent bitloop)
    for client in "${order[@]}"; do
      if [ "$client" = bitloop ]; then
        measure "$results" bitloop lat "$bitloop" download "$work/lat.torrent" -o "$work/out" "${peers[@]}" -q
      else
        measure "$results" libtorrent lat $py "$tool" leech "$work/lat.torrent" "$work/out" "${peers[@]}" --timeout 500
      fi
    done
  done
  echo
  echo "dead: $mib MiB from one libtorrent seeder listed after 100 silent peers and 100 closed ports, median of $rounds rounds"
  printf '%-11s %8s %8s\n' client wall_s cpu_s
  for client in bitloop libtorrent; do
    printf '%-11s %8s %8s\n' "$client" "$(column "$results" "$client" 2)" "$(column "$results" "$client" 3)"
  done
}

for part in "${parts[@]}"; do
  case $part in
    latency | idle | swarm | dead) "run_$part" ;;
    *) echo "unknown part $part (latency, idle, swarm, dead)" >&2; exit 2 ;;
  esac
done
