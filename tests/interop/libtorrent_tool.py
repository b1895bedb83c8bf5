"""libtorrent (python3-libtorrent) as a reference client for bitloop's interop tests.

Run with /usr/bin/python3 (Debian's interpreter, which has the libtorrent module).

  create SRC OUT [--tracker URL]... [--piece-length N] [--private] [--hybrid]
  inspect TORRENT          print what libtorrent reads from a torrent, as JSON
  verify TORRENT SAVE_PATH check the data on disk against the torrent, as JSON
  seed TORRENT SAVE_PATH [--connect IP:PORT]...   seed until stdin closes (prints its port first)
  leech TORRENT SAVE_PATH [--peer IP:PORT]... [--trackers] [--plaintext]   download, then exit
"""
import argparse
import json
import os
import sys
import time

import libtorrent as lt


def create(args):
    fs = lt.file_storage()
    lt.add_files(fs, args.src)
    flags = 0 if args.hybrid else lt.create_torrent.v1_only
    t = lt.create_torrent(fs, args.piece_length, flags=flags)
    for tier, url in enumerate(args.tracker):
        t.add_tracker(url, tier)
    if args.private:
        t.set_priv(True)
    t.set_comment("made by libtorrent for bitloop's tests")
    lt.set_piece_hashes(t, os.path.dirname(os.path.abspath(args.src)))
    with open(args.out, "wb") as f:
        f.write(lt.bencode(t.generate()))
    inspect(argparse.Namespace(torrent=args.out))


def inspect(args):
    ti = lt.torrent_info(args.torrent)
    fs = ti.files()
    files = []
    for i in range(fs.num_files()):
        files.append({
            "path": fs.file_path(i).split(os.sep),
            "length": fs.file_size(i),
            "pad": bool(fs.file_flags(i) & lt.file_storage.flag_pad_file),
        })
    tiers = {}
    for entry in ti.trackers():
        tiers.setdefault(entry.tier, []).append(entry.url)
    print(json.dumps({
        "info_hash": str(ti.info_hashes().v1),
        "name": ti.name(),
        "piece_length": ti.piece_length(),
        "piece_count": ti.num_pieces(),
        "total_length": ti.total_size(),
        "private": ti.priv(),
        "files": files,
        "trackers": [tiers[k] for k in sorted(tiers)],
    }))


def verify(args):
    settings = {
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "listen_interfaces": "127.0.0.1:0", "alert_mask": 0,
    }
    session = lt.session(settings)
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(args.torrent)
    params.save_path = args.save_path
    params.flags &= ~lt.torrent_flags.auto_managed
    params.flags &= ~lt.torrent_flags.paused
    params.flags |= lt.torrent_flags.stop_when_ready  # check the data, then stop
    handle = session.add_torrent(params)
    checking = (lt.torrent_status.checking_files, lt.torrent_status.checking_resume_data)
    deadline = time.time() + 60
    while time.time() < deadline:
        status = handle.status()
        if status.state not in checking and status.has_metadata and status.state != 0:
            break
        time.sleep(0.05)
    status = handle.status()
    print(json.dumps({
        "pieces_verified": status.num_pieces,
        "piece_count": params.ti.num_pieces(),
        "seeding": status.is_seeding,
    }))


def session(port, interface="127.0.0.1", extra=None):
    """A libtorrent session for loopback tests: no DHT/LSD/UPnP/NAT-PMP, several
    connections per IP allowed, loopback peers not rate limited."""
    return lt.session({
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "listen_interfaces": f"{interface}:{port}", "allow_multiple_connections_per_ip": True,
        "alert_mask": 0, "announce_to_all_trackers": True, "announce_to_all_tiers": True,
        **(extra or {}),
    })


def seed(args):
    """Seeds TORRENT from SAVE_PATH until stdin closes; prints its port, then stays."""
    # --never-unchoke: no unchoke slots, so peers can only fetch allowed-fast pieces.
    extra = {"unchoke_slots_limit": 0, "allowed_fast_set_size": args.allowed_fast} if args.never_unchoke else {}
    if args.upload_limit:
        extra["upload_rate_limit"] = args.upload_limit
    ses = session(args.port, args.interface, extra)
    if args.never_unchoke or args.upload_limit:
        # Loopback peers are in libtorrent's local class, which ignores unchoke
        # slots and rate limits; put them in the global class so limits apply.
        loopback = lt.ip_filter()
        loopback.add_rule("127.0.0.0", "127.255.255.255", 1 << lt.session.global_peer_class_id)
        ses.set_peer_class_filter(loopback)
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(args.torrent)
    params.save_path = args.save_path
    params.flags |= lt.torrent_flags.seed_mode if args.seed_mode else 0
    handle = ses.add_torrent(params)
    deadline = time.time() + 60
    while not handle.status().is_seeding:
        if time.time() > deadline:
            print(json.dumps({"error": "not seeding"}), flush=True)
            return 1
        time.sleep(0.02)
    # --connect: dial these peers once seeding (the way a peer that learnt our
    # address from a tracker or the DHT would), after the port is printed.
    for peer in args.connect:
        host, port = peer.rsplit(":", 1)
        handle.connect_peer((host.strip("[]"), int(port)))
    print(json.dumps({"port": ses.listen_port(), "seeding": True}), flush=True)
    sys.stdin.read()  # until the test closes our stdin


def leech(args):
    """Downloads TORRENT into SAVE_PATH from the given peers (and, with --trackers,
    from the peers the torrent's trackers give); exits when complete.
    Over TCP only (uTP off both ways), so that it compares with bitloop like with like."""
    extra = {"enable_outgoing_utp": False, "enable_incoming_utp": False}
    if args.plaintext:
        # No encryption attempt first (BEP-less MSE/PE): peers without it, such as
        # bitloop, would otherwise see a failed attempt and a reconnect.
        extra["out_enc_policy"] = int(lt.enc_policy.disabled)
    ses = session(0, args.interface, extra)
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(args.torrent)
    params.save_path = args.save_path
    if not args.trackers:
        params.trackers = []
    handle = ses.add_torrent(params)
    for peer in args.peer:
        host, port = peer.rsplit(":", 1)  # IP:PORT or [IPv6]:PORT
        handle.connect_peer((host.strip("[]"), int(port)))
    deadline = time.time() + args.timeout
    while not handle.status().is_seeding:
        if time.time() > deadline:
            print(json.dumps({"complete": False}), flush=True)
            return 1
        time.sleep(0.005)
    print(json.dumps({"complete": True}), flush=True)


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("create")
    p.add_argument("src")
    p.add_argument("out")
    p.add_argument("--tracker", action="append", default=[])
    p.add_argument("--piece-length", type=int, default=16384)
    p.add_argument("--private", action="store_true")
    p.add_argument("--hybrid", action="store_true")
    p.set_defaults(run=create)
    p = sub.add_parser("inspect")
    p.add_argument("torrent")
    p.set_defaults(run=inspect)
    p = sub.add_parser("verify")
    p.add_argument("torrent")
    p.add_argument("save_path")
    p.set_defaults(run=verify)
    p = sub.add_parser("seed")
    p.add_argument("torrent")
    p.add_argument("save_path")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--interface", default="127.0.0.1", help="listen address, [::1] for IPv6")
    p.add_argument("--seed-mode", action="store_true")
    p.add_argument("--never-unchoke", action="store_true")
    p.add_argument("--allowed-fast", type=int, default=5)
    p.add_argument("--upload-limit", type=int, default=0, help="bytes per second; 0 = unlimited")
    p.add_argument("--connect", action="append", default=[], metavar="IP:PORT",
                   help="a peer to connect to once seeding (repeatable)")
    p.set_defaults(run=seed)
    p = sub.add_parser("leech")
    p.add_argument("torrent")
    p.add_argument("save_path")
    p.add_argument("--peer", action="append", default=[])
    p.add_argument("--interface", default="127.0.0.1", help="listen address, [::1] for IPv6")
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--trackers", action="store_true", help="also announce to the torrent's trackers")
    p.add_argument("--plaintext", action="store_true", help="connect without trying encryption first")
    p.set_defaults(run=leech)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    sys.exit(main())
