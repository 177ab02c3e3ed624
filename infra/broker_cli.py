"""`mindstream broker`: run the embedded broker in the foreground until interrupted."""

from __future__ import annotations

import argparse
import os
import signal
import threading

from infra.broker import EmbeddedBroker


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=os.environ.get("MINDSTREAM_BROKER_HOST", "127.0.0.1"),
                   help="address to listen on (env MINDSTREAM_BROKER_HOST; default %(default)s)")
    p.add_argument("--port", type=int, default=int(os.environ.get("MINDSTREAM_BROKER_PORT", "9092")),
                   help="port, 0 for a free one (env MINDSTREAM_BROKER_PORT; default %(default)s)")


def run(args: argparse.Namespace) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with EmbeddedBroker(host=args.host, port=args.port) as broker:
        print(f"broker ready: KAFKA_BOOTSTRAP={broker.bootstrap} (memory storage; Ctrl-C stops it)", flush=True)
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
    print("broker stopped", flush=True)
    return 0
