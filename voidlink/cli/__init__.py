"""The `voidlink` command: one entry point over the daemon, the client, the demo and the benchmarks.

Each sub-command lives in its own module and is imported only when it runs, so `voidlink jobs`
never loads OpenImageIO and `voidlink serve` never loads Qt.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional

from voidlink.errors import VoidlinkError

# command → (module, help)
COMMANDS = {
    "serve": ("voidlink.cli.serve", "run the inference daemon"),
    "remove": ("voidlink.cli.remove", "remove an object (and its effects) from a shot"),
    "matte": ("voidlink.cli.matte", "track an object from clicks, boxes or an outline into a matte sequence"),
    "stop": ("voidlink.cli.stop", "stop the local daemon (unfinished jobs resume at its next start)"),
    "jobs": ("voidlink.cli.jobs", "list, show, watch or cancel jobs"),
    "doctor": ("voidlink.cli.doctor", "check libraries, daemon, GPU, weights and data dir"),
    "conform": ("voidlink.cli.conform", "run the removals marked in an EDL or OTIO timeline and write it back"),
    "farm": ("voidlink.cli.farm", "write removals as a render-farm job (Open Job Description)"),
    "panel": ("voidlink.cli.panel", "open the VOID panel (form, viewer, queue), or render it to a PNG"),
    "install": ("voidlink.cli.install", "put voidlink into a host (nuke, resolve)"),
    "uninstall": ("voidlink.cli.install", "take voidlink out of a host again (exactly what install put there)"),
    "demo": ("voidlink.cli.demo", "generate a synthetic shot and remove its object end to end"),
    "bench": ("voidlink.cli.bench", "benchmarks (io, classical)"),
    "version": ("voidlink.cli.version", "print the version"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voidlink",
        description="Object and interaction removal (Netflix VOID) for compositing and editorial.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).add_arguments(command)
        command.set_defaults(_module=module)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except VoidlinkError as error:
        print(f"voidlink: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("voidlink: interrupted", file=sys.stderr)
        return 130
