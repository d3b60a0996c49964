"""`voidlink doctor`: what works here, what does not, and what to do about it."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from voidlink.cli.common import add_address, add_json, print_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="data dir to check (default: the platform's user data dir)")
    parser.add_argument("--weights", help="VOID weights folder to check")
    add_address(parser)
    add_json(parser)


def run(args: argparse.Namespace) -> int:
    from voidlink.bridge.client import Client
    from voidlink.errors import VoidlinkError
    from voidlink.inference.backends import BACKEND_NAMES, availability, weights_dir
    from voidlink.inference.server import default_data_dir, library_versions

    report: dict = {"libraries": library_versions()}
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    report["data_dir"] = {
        "path": str(data_dir),
        "exists": data_dir.exists(),
        "writable": os.access(data_dir if data_dir.exists() else data_dir.parent, os.W_OK),
    }
    report["ocio_config"] = os.environ.get("OCIO") or "built-in (set $OCIO to use the studio's config)"
    report["backends"] = {}
    for name in BACKEND_NAMES:
        state = availability(name, args.weights)
        report["backends"][name] = {"available": state.available, "reason": state.reason, "detail": state.detail}
    report["weights_dir"] = str(weights_dir(args.weights))
    client = Client(args.address, connect_timeout=2.0)
    try:
        info = client.info()
        report["daemon"] = {
            "address": client.address,
            "running": True,
            "version": info.version,
            "pid": info.pid,
            "queued": info.queue.queued,
            "running_jobs": info.queue.running,
            "default_backend": info.default_backend,
        }
    except VoidlinkError as error:
        report["daemon"] = {"address": client.address, "running": False, "reason": str(error)}
    finally:
        client.close()
    if args.json:
        print_json(report)
        return 0
    print("libraries:")
    for name, version in report["libraries"].items():
        print(f"  {name:15} {version}")
    print(f"OCIO config:      {report['ocio_config']}")
    dd = report["data_dir"]
    print(f"data dir:         {dd['path']} ({'exists' if dd['exists'] else 'not created yet'}, "
          f"{'writable' if dd['writable'] else 'NOT writable'})")
    daemon = report["daemon"]
    if daemon["running"]:
        print(f"daemon:           running at {daemon['address']} (voidlink {daemon['version']}, pid {daemon['pid']}, "
              f"{daemon['queued']} queued, {daemon['running_jobs']} running, auto → {daemon['default_backend']})")
    else:
        print(f"daemon:           not running ({daemon['reason']})")
    print(f"VOID weights dir: {report['weights_dir']}")
    for name, state in report["backends"].items():
        status = "available" if state["available"] else f"unavailable: {state['reason']}"
        print(f"backend {name:9} {status}")
    return 0
