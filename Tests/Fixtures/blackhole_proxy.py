"""A TCP forwarder whose connections can die silently, for the store tests.

    blackhole_proxy.py --to PORT [--freeze-on TEXT]

Listens on 127.0.0.1, port chosen by the kernel, prints `PORT <n>` on stdout,
and forwards every connection to 127.0.0.1:PORT. On SIGUSR1 every connection
open at that moment stops carrying bytes, both ways, and is never closed:
what a firewall or NAT that forgot a flow looks like to both ends, which
hear nothing, not even a reset. Connections opened afterwards are forwarded
as before. With --freeze-on, the same happens when TEXT first appears in what
the server sends (a NOTICE a test's trigger raises inside a COMMIT, say):
the bytes that carry it, and everything after them, are never delivered. The
text is looked for in each read, so it must be short enough not to be split
between two. Each connection and the freeze are logged on stderr. It exits when its stdin closes, so a test that dies leaves no
forwarder behind.
"""

import argparse
import signal
import socket
import sys
import threading

frozen_before = [0]  # connections numbered below this carry nothing
counter = [0]
lock = threading.Lock()


def pump(source, target, number, marker):
    try:
        while True:
            data = source.recv(65536)
            if marker and marker in data:
                freeze()
            with lock:
                dead = number < frozen_before[0]
            if dead:
                # Held open and silent: the bytes read are dropped, as on a dead path.
                threading.Event().wait()
            if not data:
                target.shutdown(socket.SHUT_WR)
                return
            target.sendall(data)
    except OSError:
        return


def serve(listener, port, marker):
    while True:
        client, _ = listener.accept()
        upstream = socket.create_connection(("127.0.0.1", port))
        with lock:
            number = counter[0]
            counter[0] += 1
        print(f"connection {number} forwarded", file=sys.stderr, flush=True)
        for a, b, m in ((client, upstream, None), (upstream, client, marker)):
            threading.Thread(target=pump, args=(a, b, number, m), daemon=True).start()


def freeze(*_):
    with lock:
        frozen_before[0] = counter[0]
    print(f"connections below {frozen_before[0]} frozen", file=sys.stderr, flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--to", type=int, required=True)
    parser.add_argument("--freeze-on")
    args = parser.parse_args()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    signal.signal(signal.SIGUSR1, freeze)
    # A child inherits its parent's blocked signals: the test runner blocks some.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})
    marker = args.freeze_on.encode() if args.freeze_on else None
    threading.Thread(target=serve, args=(listener, args.to, marker), daemon=True).start()
    print(f"PORT {listener.getsockname()[1]}", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
