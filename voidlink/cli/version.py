"""voidlink version."""

from __future__ import annotations

import argparse

from voidlink.cli.common import add_json, print_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_json(parser)


def run(args: argparse.Namespace) -> int:
    import voidlink
    from voidlink.protos import PROTOCOL_VERSION

    if args.json:
        print_json({"version": voidlink.__version__, "protocol_version": PROTOCOL_VERSION})
    else:
        print(f"voidlink {voidlink.__version__} (protocol {PROTOCOL_VERSION})")
    return 0
