#!/usr/bin/env bash
# Runs every bitloop test: unit and integration tests (including the interop tests
# against real libtorrent and opentracker), the allocation-counting leak proofs,
# a smoke run of the benchmarks, and the examples under valgrind.
#
# It installs what the tests need when it is missing (Debian packages; needs root
# or sudo), so it works on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
[ -x /usr/bin/valgrind ] || need+=(valgrind)
/usr/bin/python3 -c 'import libtorrent' 2>/dev/null || need+=(python3-libtorrent)
[ -x /usr/bin/opentracker ] || need+=(opentracker)
command -v ss >/dev/null || need+=(iproute2)
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
      --error-exitcode=42 "target/release/examples/$example" >/dev/null; then
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
