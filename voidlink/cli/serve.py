"""`voidlink serve`: run the inference daemon in the foreground."""

from __future__ import annotations

import argparse
import os

from voidlink.protos import DEFAULT_ADDRESS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen",
        default=None,
        help=f"HOST:PORT or unix:PATH to listen on (default {DEFAULT_ADDRESS}; port 0 picks a free one)",
    )
    parser.add_argument("--data-dir", help="where the job store lives (default: the platform's user data dir)")
    parser.add_argument("--weights", help="folder with the VOID weights (default: $VOIDLINK_WEIGHTS, else data dir)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def run(args: argparse.Namespace) -> int:
    import logging

    from voidlink.inference.server import Daemon

    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    listen = args.listen or os.environ.get("VOIDLINK_LISTEN") or DEFAULT_ADDRESS
    daemon = Daemon(listen=listen, data_dir=args.data_dir, weights=args.weights)
    address = daemon.start()
    # Tests and ensure_daemon() read this line to learn the bound port.
    print(f"voidlink daemon listening on {address} (data dir {daemon.data_dir}, pid {os.getpid()})", flush=True)
    daemon.serve_forever()
    print("voidlink daemon stopped", flush=True)
    return 0
