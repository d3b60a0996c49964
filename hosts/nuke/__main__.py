"""Batch: `python -m voidlink.hosts.nuke render script.nk VoidRemove1` (a Python that can import nuke).

Inside `nuke -t` the same runs as `nuke -t <this file> render script.nk VoidRemove1`. It opens the
script, submits the node's job (starting a local daemon if none answers), prints progress, waits,
and saves the script so the node remembers its job and shows the result when the script is opened.
Exit status: 0 done, 1 the job failed or was cancelled, 2 bad input or no daemon.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m voidlink.hosts.nuke", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    render = sub.add_parser("render", help="submit a VoidRemove node's job and wait for it")
    render.add_argument("script", help="the Nuke script")
    render.add_argument("node", nargs="+", help="VoidRemove node name(s), e.g. VoidRemove1")
    render.add_argument("--no-save", action="store_true", help="do not save the script afterwards")
    return parser


def main(argv: Optional[list] = None) -> int:
    args = build_parser().parse_args(argv)
    import nuke
    from voidlink.hosts.nuke import jobs

    from voidlink import errors

    if not os.path.isfile(args.script):
        print(f"voidlink: error: no Nuke script at {args.script}", file=sys.stderr)
        return 2
    nuke.scriptOpen(args.script)
    status = 0
    for name in args.node:
        try:
            result = jobs.render(name)
        except (errors.JobFailed, errors.JobCancelled) as error:
            print(f"voidlink: {name}: {error}", file=sys.stderr)
            status = max(status, 1)
        except errors.VoidlinkError as error:
            print(f"voidlink: error: {error}", file=sys.stderr)
            status = 2
        else:
            print(f"{name}: wrote {result.hash_pattern} frames {result.first}-{result.last}", flush=True)
    if not args.no_save:
        nuke.scriptSave(args.script)
    return status


if __name__ == "__main__":
    sys.exit(main())
