"""`voidlink stop`: ask the local daemon to shut down (jobs it was running resume when one starts again)."""

from __future__ import annotations

import argparse
import os
import signal
import time

from voidlink.cli.common import add_address, add_json, print_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for it to stop (default 30)")
    add_address(parser)
    add_json(parser)


def run(args: argparse.Namespace) -> int:
    from voidlink.bridge.client import Client, is_local
    from voidlink.errors import Unavailable

    client = Client(args.address)
    if not client.is_serving(timeout=2.0):
        raise Unavailable(
            f"no voidlink daemon answers at {client.address}; nothing to stop", reason="DAEMON_UNREACHABLE"
        )
    if not is_local(client.address):
        # A signal reaches only this machine's processes; a remote daemon is its host's service to stop.
        raise Unavailable(
            f"the daemon at {client.address} runs on another machine: stop its service there",
            reason="DAEMON_NOT_LOCAL",
        )
    info = client.info()
    # SIGTERM is the daemon's graceful shutdown: it stops taking work and keeps unfinished jobs queued.
    os.kill(int(info.pid), signal.SIGTERM)
    deadline = time.monotonic() + args.timeout
    while client.is_serving(timeout=0.5):
        if time.monotonic() > deadline:
            raise Unavailable(
                f"the daemon at {client.address} (pid {info.pid}) did not stop within {args.timeout:.0f} s",
                reason="DAEMON_STOP_TIMEOUT",
            )
        time.sleep(0.2)
    report = {
        "address": client.address,
        "pid": int(info.pid),
        "stopped": True,
        "queued": info.queue.queued,
        "running": info.queue.running,
    }
    if args.json:
        print_json(report)
    else:
        unfinished = info.queue.queued + info.queue.running
        print(
            f"stopped the voidlink daemon at {client.address} (pid {info.pid})"
            + (f"; {unfinished} unfinished job(s) resume when a daemon starts on its data dir" if unfinished else "")
        )
    return 0
