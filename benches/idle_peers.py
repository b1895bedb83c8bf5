"""Idle peers for benches/links.sh: N BitTorrent peers in one asyncio process that
connect to a client, handshake, send a bitfield (every other piece), and then never
unchoke and never request: they only read (and drop) what the client sends.

  idle_peers.py HOST:PORT INFO_HASH_HEX PIECE_COUNT N

Prints `ready N` once the client has answered all N handshakes (each connection got
the client's 68-byte handshake for our info hash), then holds the connections until
stdin closes. A connection the client closes is opened again (the client's queue of
connections waiting for a handshake is bounded, so a burst may be refused). Exits 1
with a message if not all N are up within 120 s.
"""
import asyncio
import sys
import time

CONCURRENT_OPENS = 32
DEADLINE = 120.0


def handshake(info_hash, n):
    peer_id = b"-IP0001-" + b"%012d" % n
    return b"\x13BitTorrent protocol" + bytes(8) + info_hash + peer_id


def bitfield(pieces):
    bits = bytearray((pieces + 7) // 8)
    for piece in range(0, pieces, 2):
        bits[piece // 8] |= 0x80 >> (piece % 8)
    return (len(bits) + 1).to_bytes(4, "big") + b"\x05" + bytes(bits)


async def peer(n, host, port, info_hash, bits, gate, up, done):
    while time.monotonic() < DEADLINE_AT:
        try:
            async with gate:
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(handshake(info_hash, n) + bits)
                theirs = await reader.readexactly(68)
        except (OSError, asyncio.IncompleteReadError):
            await asyncio.sleep(0.05)
            continue
        if theirs[28:48] != info_hash:
            print(f"peer {n}: the client answered for another torrent", file=sys.stderr)
            sys.exit(1)
        up.add(n)
        if len(up) == done.total:
            done.set()
        try:
            while await reader.read(65536):
                pass
        except OSError:
            pass
        up.discard(n)
        writer.close()
    return


class Done(asyncio.Event):
    total = 0


async def main():
    host, port = sys.argv[1].rsplit(":", 1)
    info_hash = bytes.fromhex(sys.argv[2])
    bits = bitfield(int(sys.argv[3]))
    count = int(sys.argv[4])
    gate = asyncio.Semaphore(CONCURRENT_OPENS)
    up = set()
    done = Done()
    done.total = count
    tasks = [asyncio.create_task(peer(n, host, int(port), info_hash, bits, gate, up, done)) for n in range(count)]
    try:
        await asyncio.wait_for(done.wait(), DEADLINE)
    except asyncio.TimeoutError:
        print(f"idle_peers: only {len(up)} of {count} peers were taken within {DEADLINE:.0f} s", file=sys.stderr)
        sys.exit(1)
    print(f"ready {count}", flush=True)
    # Hold the connections until our stdin closes.
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    for task in tasks:
        task.cancel()


DEADLINE_AT = time.monotonic() + DEADLINE
asyncio.run(main())
