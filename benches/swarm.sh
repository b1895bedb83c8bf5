#!/usr/bin/env bash
# Loopback swarm benchmark: download MIB MiB from two python3-libtorrent seeders with
# bitloop, a python3-libtorrent leecher (TCP only: uTP off, as bitloop has none) and
# aria2c, in one session, the order of the three rotating round by round so that
# machine noise hits all alike. Reports medians of wall time, CPU time (user +
# system, threads included), peak RSS (the kernel's high-water mark), and the peaks
# of its two parts sampled from /proc/PID/status every 20 ms: anonymous memory
# (heap, buffers) and file pages (the binary and libraries, and for libtorrent the
# mmap'd torrent data, which counts in its RSS although the kernel can drop it).
#
# bitloop and libtorrent are given the seeders' addresses; aria2c, which has no
# such option, gets them from a stub tracker that answers every announce with
# those two peers.
#
#   benches/swarm.sh [ROUNDS] [MIB]        defaults: 5 rounds, 256 MiB
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
mib=${2:-256}
tool=tests/interop/libtorrent_tool.py
for need in /usr/bin/python3 aria2c; do
  command -v "$need" >/dev/null ||
    { echo "swarm.sh needs $need (scripts/test-all.sh installs python3-libtorrent and aria2)" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

. benches/lib.sh

cargo build --release -q
bitloop=${CARGO_TARGET_DIR:-target}/release/bitloop
mkdir -p "$work/seed"
head -c $((mib << 20)) /dev/urandom > "$work/seed/data.bin"
"$bitloop" create "$work/seed/data.bin" -o "$work/data.torrent" >/dev/null

ports=()
for i in 1 2; do
  mkfifo "$work/hold$i"
  /usr/bin/python3 "$tool" seed "$work/data.torrent" "$work/seed" < "$work/hold$i" > "$work/seed$i.json" &
  exec {fd}>"$work/hold$i" # keeps the seeder's stdin open until we exit
  wait_until 90 test -s "$work/seed$i.json" || { echo "seeder $i printed nothing within 90 s" >&2; exit 1; }
  ports+=("$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['port'])" "$work/seed$i.json")")
done

# The stub tracker for aria2c: every announce gets the two seeders, compact.
cat > "$work/tracker.py" <<'EOF'
import http.server, socket, struct, sys
peers = b"".join(socket.inet_aton("127.0.0.1") + struct.pack(">H", int(p)) for p in sys.argv[2:])
body = b"d8:intervali1800e5:peers%d:%se" % (len(peers), peers)
class Announce(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Announce)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
__import__("os").rename(sys.argv[1] + ".tmp", sys.argv[1])
server.serve_forever()
EOF
/usr/bin/python3 "$work/tracker.py" "$work/tracker.port" "${ports[@]}" &
wait_until 30 test -s "$work/tracker.port" || { echo "the stub tracker did not start" >&2; exit 1; }
tracker="http://127.0.0.1:$(cat "$work/tracker.port")/announce"


command_of() { # client: sets $cmd
  case $1 in
    bitloop)
      cmd=("$bitloop" download "$work/data.torrent" -o "$work/out"
        --peer "127.0.0.1:${ports[0]}" --peer "127.0.0.1:${ports[1]}" -q) ;;
    libtorrent)
      cmd=(/usr/bin/python3 "$tool" leech "$work/data.torrent" "$work/out"
        --peer "127.0.0.1:${ports[0]}" --peer "127.0.0.1:${ports[1]}") ;;
    aria2c)
      cmd=(aria2c --dir="$work/out" --bt-tracker="$tracker" --seed-time=0 --enable-dht=false
        --enable-dht6=false --bt-enable-lpd=false --enable-peer-exchange=false
        --file-allocation=none --summary-interval=0 --console-log-level=warn -q "$work/data.torrent") ;;
  esac
}

measure() { # client
  rm -rf "$work/out"
  sync
  command_of "$1"
  # timeout bounds a client that stalls: that is a failure, not a hang.
  if ! timeout -k 10 600 /usr/bin/python3 benches/measure.py "$work/m" "${cmd[@]}" >/dev/null; then
    echo "$1: the download failed or did not finish within 600 s" >&2
    exit 1
  fi
  cmp -s "$work/out/data.bin" "$work/seed/data.bin" || { echo "$1: downloaded data differs" >&2; exit 1; }
  echo "$1 $(cat "$work/m")" >> "$work/results"
}

clients=(bitloop libtorrent aria2c)
for round in $(seq 0 $((rounds - 1))); do
  for i in 0 1 2; do
    measure "${clients[$(((round + i) % 3))]}"
  done
done

echo "$mib MiB from two libtorrent seeders on loopback, median of $rounds rounds:"
printf '%-11s %8s %8s %13s %14s %14s\n' client wall_s cpu_s peak_rss_MiB peak_anon_MiB peak_file_MiB
for client in "${clients[@]}"; do
  r=$work/results
  printf '%-11s %8s %8s %13s %14s %14s\n' "$client" "$(column "$r" "$client" $F_WALL 1 2)" \
    "$(column "$r" "$client" $F_CPU 1 2)" "$(column "$r" "$client" $F_RSS 1024 1)" \
    "$(column "$r" "$client" $F_ANON 1024 1)" "$(column "$r" "$client" $F_FILE 1024 1)"
done
