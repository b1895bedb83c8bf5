"""A python3-libtorrent seeder for benches/links.sh that connects to peers when told.

  connecting_seeder.py TORRENT SAVE_PATH

Prints {"port": N} once seeding; then reads lines from stdin: `connect HOST:PORT`
makes it connect to that peer. Exits when stdin closes. Run with /usr/bin/python3.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "interop"))
import libtorrent as lt  # noqa: E402
import libtorrent_tool  # noqa: E402

# Plaintext only: with encryption enabled libtorrent tries an encrypted handshake
# first, which bitloop (no MSE) refuses, and retries in the clear seconds later.
ses = libtorrent_tool.session(0, extra={"out_enc_policy": int(lt.enc_policy.disabled)})
params = lt.add_torrent_params()
params.ti = lt.torrent_info(sys.argv[1])
params.save_path = sys.argv[2]
handle = ses.add_torrent(params)
deadline = time.time() + 60
while not handle.status().is_seeding:
    if time.time() > deadline:
        print(json.dumps({"error": "not seeding"}), flush=True)
        sys.exit(1)
    time.sleep(0.02)
print(json.dumps({"port": ses.listen_port()}), flush=True)
for line in sys.stdin:
    command, _, addr = line.strip().partition(" ")
    if command == "connect":
        host, port = addr.rsplit(":", 1)
        handle.connect_peer((host, int(port)))
