#!/usr/bin/env bash
# Runs every bitloop test: unit and integration tests (including the interop tests
# against real libtorrent and opentracker), the allocation-counting leak proofs,
# a smoke run of the benchmarks (the swarm benchmark included), the examples and
# the release binary under valgrind, and every fuzz target for FUZZ_SECONDS
# (default 20; FUZZ_SECONDS=0 skips it), failing on a crash.
#
# It installs what the tests need when it is missing (Debian packages; needs root
# or sudo), so it works on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzz_seconds=${FUZZ_SECONDS-20}
# A one-off build gains nothing from incremental state, which took 1.7 GB of disk.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL-0}

# What the build and the tests' data have to work with: a full disk shows up as odd
# failures (SIGBUS in a linker), so say it plainly first.
disk() { # label
  df -h --output=avail "${CARGO_TARGET_DIR:-.}" /tmp 2>/dev/null |
    awk -v label="$1" 'NR > 1 { free = free sep $1; sep = ", " } END { print "== disk free " label ": " free " (build, /tmp)" }'
}
disk "at the start"

# Every external command the tests, benchmarks and scripts run, and the Debian
# package it comes from (coreutils, diffutils, mawk and bash are always there).
need=()
want() { # package check...
  local package=$1
  shift
  "$@" >/dev/null 2>&1 || need+=("$package")
}
want valgrind test -x /usr/bin/valgrind                        # examples, leak-check.sh
want python3-libtorrent /usr/bin/python3 -c 'import libtorrent' # interop tests, seeders, swarm.sh, links.sh
want opentracker test -x /usr/bin/opentracker                  # tracker interop tests
want iproute2 command -v ss                                    # leak-check.sh waits for the connection
want procps test -x /usr/bin/kill                              # shutdown tests send SIGINT with kill
want aria2 command -v aria2c                                   # swarm.sh compares with aria2c
want openssl command -v openssl                                # storage_e2e.sh compares with openssl
want eatmydata command -v eatmydata                            # storage_e2e.sh: the cost of fsync
[ "$fuzz_seconds" = 0 ] || want g++ command -v c++             # cargo-fuzz builds libFuzzer
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${need[@]}"
fi

echo "== cargo test (all targets)"
cargo test --all-targets

echo "== the embedded build: no HTTPS (--no-default-features) still builds"
cargo check -q --all-targets --no-default-features

echo "== examples under valgrind"
cargo build --release --examples -q
failed=0
for example in timer tcp_echo udp_ping_pong; do
  if valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect \
      --error-exitcode=42 "${CARGO_TARGET_DIR:-target}/release/examples/$example" >/dev/null; then
    echo "test valgrind_$example ... ok"
  else
    echo "test valgrind_$example ... FAILED"
    failed=$((failed + 1))
  fi
done
echo "$((3 - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]

echo "== the release binary under valgrind: complete, interrupted and failed downloads"
scripts/leak-check.sh
timeout -k 5 30 "${CARGO_TARGET_DIR:-target}/release/bitloop" demo 2>/dev/null # the README's first command (built by leak-check.sh): must end by itself, exit 0, within 30 s

echo "== swarm benchmark smoke run (1 round, 16 MiB: bitloop, libtorrent, aria2c)"
benches/swarm.sh 1 16

echo "== storage benchmark smoke run (1 round, 16 MiB downloads, a 64 MiB check)"
benches/storage_e2e.sh 1 16 64

echo "== links benchmark smoke run (1 round, small: delays, idle and dead peers)"
LINKS_MIB=8 LINKS_SWARM_MIB=16 LINKS_DELAYS="0 25" LINKS_IDLE="1 100" LINKS_IDLE_SECONDS=1 benches/links.sh 1

# Every fuzz target, one per core at a time: installing cargo-fuzz (once) and the
# sanitizer build cost 3-7 min on a clean 2-core machine, the runs about 2 min for
# eleven targets. A crash fails the run; its input is left in fuzz/artifacts/.
if [ "$fuzz_seconds" != 0 ]; then
  disk "before the fuzz build"
  echo "== every fuzz target for $fuzz_seconds s (FUZZ_SECONDS=0 skips this)"
  scripts/fuzz.sh "$fuzz_seconds"
fi
