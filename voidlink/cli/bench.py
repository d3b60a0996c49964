"""`voidlink bench io|classical|matte`: benchmarks that print ratios against a baseline run beside them."""

from __future__ import annotations

import argparse
import importlib

BENCHMARKS = {
    "io": "voidlink.bench.io",
    "classical": "voidlink.bench.classical",
    "matte": "voidlink.bench.matte",
    "transfer": "voidlink.bench.transfer",
    "load": "voidlink.bench.load",
    "void": "voidlink.bench.void",
    "cluster": "voidlink.bench.cluster",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("which", choices=sorted(BENCHMARKS), help="which benchmark")
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="the benchmark's own options (--json, --quick, ...)")


def run(args: argparse.Namespace) -> int:
    return int(importlib.import_module(BENCHMARKS[args.which]).main(args.rest) or 0)
