"""Dead peers for benches/links.sh and by hand: N silent addresses (listeners whose
one-connection backlog is already full, so a SYN is never answered) and M closed
ports (bound, not listening: a SYN gets a reset), all on 127.0.0.1.

  dead_peers.py N M

Prints one address per line (the silent ones first), then `ready`, and holds them
until stdin closes.
"""
import socket
import sys

silent, closed = int(sys.argv[1]), int(sys.argv[2])
held = []
for _ in range(silent):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    # The backlog takes one connection; this one fills it, so further SYNs are dropped.
    filler = socket.create_connection(listener.getsockname())
    held += [listener, filler]
    print("%s:%d" % listener.getsockname())
for _ in range(closed):
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    held.append(port)
    print("%s:%d" % port.getsockname())
print("ready", flush=True)
sys.stdin.read()
