"""`voidlink serve`: run the inference daemon in the foreground."""

from __future__ import annotations

import argparse
import os
import sys

from voidlink.protos import DEFAULT_ADDRESS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen",
        default=None,
        help=f"HOST:PORT or unix:PATH to listen on (default {DEFAULT_ADDRESS}; port 0 picks a free one)",
    )
    parser.add_argument("--data-dir", help="where the job store lives (default: the platform's user data dir)")
    parser.add_argument("--weights", help="folder with the VOID weights (default: $VOIDLINK_WEIGHTS, else data dir)")
    parser.add_argument(
        "--preload",
        action="append",
        default=[],
        metavar="BACKEND",
        help="load a backend (e.g. void) or a matte tracker or proposer (sam2, edgetam, sam3) in the background "
        "as the daemon starts, so the first job does not wait for it (repeatable); GetInfo says when it is loaded",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    security = parser.add_argument_group("network and security (required beyond loopback)")
    security.add_argument("--tls-cert", help="PEM certificate chain the daemon presents")
    security.add_argument("--tls-key", help="PEM private key of --tls-cert")
    security.add_argument(
        "--tokens-file", help="file of 'NAME TOKEN [EXPIRES]' lines; clients send 'authorization: Bearer TOKEN'"
    )
    security.add_argument(
        "--insecure",
        action="store_true",
        help="listen beyond loopback without TLS or tokens (a warning is printed at every start)",
    )
    security.add_argument(
        "--root",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder the daemon may read and write under (repeatable); paths outside are refused",
    )
    security.add_argument(
        "--config", help="studio config (JSON with roots, tokens_file, path_map; default: $VOIDLINK_CONFIG)"
    )
    cluster = parser.add_argument_group("Ray pool (pip install 'voidlink[cluster]')")
    cluster.add_argument(
        "--cluster",
        metavar="ray://HOST:PORT|auto",
        help="run jobs on Ray actors that keep their backend loaded: a running cluster's client address, "
        "or auto for a local Ray started with the daemon",
    )
    cluster.add_argument(
        "--cluster-workers",
        type=int,
        default=None,
        metavar="N",
        help="CPU workers for the classical backend (default: the CPU count, capped at 8); "
        "one VOID worker is added per GPU of the cluster",
    )
    cluster.add_argument(
        "--cluster-segment",
        type=int,
        default=None,
        metavar="FRAMES",
        help="split a classical job into segments of at least FRAMES frames that run on several workers at "
        "once (default: 4 times the frames of context each segment reads beyond its ends, 96; 0: never split)",
    )
    cluster.add_argument(
        "--cluster-storage",
        choices=["shared", "private"],
        default=None,
        help="shared (default): the workers see the job's paths as the daemon does; private: they do not, and "
        "the daemon sends them the frames (each worker keeps a cache of them) and stages what they render",
    )
    limits = parser.add_argument_group("limits")
    limits.add_argument(
        "--max-message",
        default="16M",
        help="largest gRPC message taken or sent (default 16M); frames travel both ways in chunks that fit it",
    )
    limits.add_argument("--max-upload", default="64G", help="most frame bytes uploaded per job (default 64G)")
    limits.add_argument("--cache-size", default="100G", help="disk the uploaded-frame cache may use (default 100G)")
    limits.add_argument(
        "--keep-jobs",
        default="90d,10000",
        help="ended jobs the store keeps: days (30d), a count (5000), both (30d,5000) or 'all' (default 90d,10000); "
        "their output files are never touched",
    )


def security_config(args: argparse.Namespace):
    from pathlib import Path

    from voidlink.config import read_studio_config
    from voidlink.inference.security import SecurityConfig, parse_size

    config = read_studio_config(args.config)
    tokens = args.tokens_file or config.get("tokens_file")
    return SecurityConfig(
        tls_cert=Path(args.tls_cert) if args.tls_cert else None,
        tls_key=Path(args.tls_key) if args.tls_key else None,
        tokens_file=Path(tokens) if tokens else None,
        insecure=args.insecure,
        roots=[*config.get("roots", []), *args.root],
        max_message_bytes=parse_size(args.max_message, "max_message"),
        max_upload_bytes=parse_size(args.max_upload, "max_upload"),
        cache_max_bytes=parse_size(args.cache_size, "cache_size"),
    )


def cluster_executor(args: argparse.Namespace):
    """The Ray pool's executor, started (every worker ready), when --cluster is given; else None.

    Ray is imported only here, so a daemon without --cluster starts without it installed."""
    if not args.cluster:
        flags = (
            ("--cluster-workers", args.cluster_workers),
            ("--cluster-segment", args.cluster_segment),
            ("--cluster-storage", args.cluster_storage),
        )
        for flag, value in flags:
            if value is not None:
                print(f"voidlink serve: {flag} needs --cluster", file=sys.stderr)
                raise SystemExit(2)
        return None
    from voidlink.inference.pool.executor import RayExecutor

    workers = args.cluster_workers if args.cluster_workers is not None else min(os.cpu_count() or 1, 8)
    executor = RayExecutor(
        args.cluster,
        cpu_workers=workers,
        weights=args.weights,
        segment_frames=args.cluster_segment,
        storage=args.cluster_storage or "shared",
    )
    try:
        pool = executor.start()
    except BaseException:
        executor.close()
        raise
    for worker in pool:
        kind = "GPU" if worker["gpu"] else "CPU"
        print(f"voidlink: {kind} worker {worker['name']} ready (pid {worker['pid']} on {worker['host']})", flush=True)
    return executor


def run(args: argparse.Namespace) -> int:
    import logging

    from voidlink.inference.daemon import Daemon

    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    listen = args.listen or os.environ.get("VOIDLINK_LISTEN") or DEFAULT_ADDRESS
    executor = cluster_executor(args)
    from voidlink.inference.store import Retention

    retention = Retention.parse(args.keep_jobs)
    daemon = Daemon(
        listen=listen,
        data_dir=args.data_dir,
        weights=args.weights,
        security=security_config(args),
        executor=executor,
        retention=retention,
        preload=args.preload,
    )
    try:
        address = daemon.start()
    except BaseException:
        if executor is not None:
            executor.close()
        raise
    for warning in daemon.warnings:
        print(f"voidlink: WARNING: {warning}", file=sys.stderr, flush=True)
    # Tests and ensure_daemon() read this line to learn the bound port.
    print(f"voidlink daemon listening on {address} (data dir {daemon.data_dir}, pid {os.getpid()})", flush=True)
    daemon.serve_forever()
    print("voidlink daemon stopped", flush=True)
    return 0
