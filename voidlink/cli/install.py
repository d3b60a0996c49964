"""`voidlink install TARGET` and `voidlink uninstall TARGET` (targets: installer.TARGETS)."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from voidlink.installer import TARGETS

    # One module serves both commands; the parser's program name says which one this is.
    installing = parser.prog.split()[-1] == "install"
    parser.add_argument("target", choices=sorted(TARGETS), help="the host to integrate with")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="the user's own setup (the default)")
    where.add_argument("--path", metavar="DIR", help="a plugin folder of your choice (e.g. a studio NUKE_PATH)")
    if installing:
        parser.add_argument(
            "--nuke-version",
            action="append",
            metavar="MAJOR",
            help="Nuke version(s) whose Python gets the client's libraries (repeat; default: 14, 15 and 16)",
        )
        parser.add_argument(
            "--python-version",
            metavar="X.Y",
            help="Resolve: the Python version Resolve runs its scripts with (default: this Python's)",
        )
        parser.add_argument(
            "--skip-dependencies",
            action="store_true",
            help="do not pip-install the client's libraries for the host's Python (print the command instead)",
        )
    parser.set_defaults(installing=installing)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from voidlink.installer import TargetUnavailable, load_target
    from voidlink.installer.common import InstallError

    try:
        target = load_target(args.target)
    except TargetUnavailable as error:
        print(f"voidlink: error: {error}", file=sys.stderr)
        return 2
    path = Path(args.path).expanduser() if args.path else target.default_path()
    try:
        if args.installing:
            options = {"user": not args.path, "skip_dependencies": args.skip_dependencies}
            if args.nuke_version:
                if args.target != "nuke":
                    print("voidlink: error: --nuke-version applies to `install nuke` only", file=sys.stderr)
                    return 2
                options["nuke_versions"] = args.nuke_version
            if args.python_version:
                if args.target != "resolve":
                    print(
                        "voidlink: error: --python-version applies to `install resolve` only "
                        "(Nuke's Pythons follow --nuke-version)",
                        file=sys.stderr,
                    )
                    return 2
                options["python_version"] = args.python_version
            actions = target.install(path, **options)
        else:
            actions = target.uninstall(path)
    except InstallError as error:
        print(f"voidlink: error: {error}", file=sys.stderr)
        return 2
    verb = "install" if args.installing else "uninstall"
    print(f"voidlink {verb} {args.target} ({path}):")
    for action in actions:
        print(f"  {action}")
    return 0
