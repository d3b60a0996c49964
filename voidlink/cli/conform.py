"""`voidlink conform`: run the removals editorial marked in an EDL or OTIO timeline, and write it back.

    voidlink conform cut.edl --media-root /shows/abc/plates --handles 8 -o cut_void.otio --edl cut_void.edl

Events marked with a `VOID: <prompt>` marker (OTIO marker, Avid locator, Resolve marker) get one
removal job each; the written timeline points those events at the clean EXRs and leaves the rest as
it was. Exit status: 0 when every marked event is done (or reused, or planned with --dry-run), 1
when some could not be (listed in the report), 2 for errors that stop the whole conform.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

from voidlink.cli.common import add_address, add_json, parse_pins, print_json, print_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("timeline", help="the cut: an EDL (.edl), an OTIO file, or anything OpenTimelineIO reads")
    parser.add_argument(
        "--media-root",
        action="append",
        default=[],
        metavar="DIR",
        help="folder searched (recursively) for plates by reel or clip name; repeatable",
    )
    parser.add_argument(
        "--media",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="use PATH (sequence pattern or movie) for reel or clip NAME; settles ambiguous names; repeatable",
    )
    parser.add_argument("--handles", type=int, default=0, help="extra frames processed on each side (default 0)")
    parser.add_argument(
        "--mattes",
        metavar="PATTERN",
        help="object matte per event, e.g. '{dir}/{stem}_roto.####.exr' ({dir} {stem} {reel} {clip} {event}); "
        "default: {dir}/{stem}_mask.####.exr, {dir}/{stem}_matte.####.exr, {dir}/mattes/{stem}.####.exr",
    )
    parser.add_argument(
        "--affected",
        metavar="PATTERN",
        help="matte of the object's effects (shadows, reflections); default {dir}/{stem}_affected.####.exr if present",
    )
    parser.add_argument(
        "--rate",
        help="timeline rate (23.976 24 25 29.97 30 48 50 59.94 60); EDLs: read from the header (a rate in the "
        "TITLE, FCM: DROP FRAME for 29.97) or the frame field, else 24; OTIO: read from the file",
    )
    parser.add_argument("-o", "--output", required=True, metavar="OUT.otio", help="conformed timeline to write")
    parser.add_argument("--edl", metavar="OUT.edl", help="also write a CMX3600 EDL (one per video track)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan; submit and write nothing")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an -o or --edl file there that voidlink did not write"
    )
    parser.add_argument(
        "--farm",
        metavar="FORMAT",
        help="write one farm job (openjd: Open Job Description) for the whole batch to -o instead of submitting; "
        "the clean frames go where a conform writes them",
    )
    parser.add_argument("--parallel", type=int, default=2, help="jobs kept in the daemon's queue at once (default 2)")
    parser.add_argument("--backend", default="auto", help="auto (default), classical or void")
    parser.add_argument("--no-start", action="store_true", help="do not start a local daemon when none answers")
    add_address(parser)
    add_json(parser)


def run(args: argparse.Namespace) -> int:
    from voidlink.bridge.conform import build_plan, parse_rate, read_timeline, run_plan
    from voidlink.bridge.conform.writer import report_rows

    if args.handles < 0:
        from voidlink.errors import InvalidInput

        raise InvalidInput(f"--handles {args.handles} is negative", reason="BAD_VALUE", field="handles")
    rate = parse_rate(args.rate) if args.rate else None
    timeline_file = read_timeline(args.timeline, rate)
    plan = build_plan(
        timeline_file,
        output_dir=os.path.dirname(os.path.abspath(args.output)),
        media_roots=tuple(args.media_root),
        handles=args.handles,
        mattes=args.mattes,
        affected=args.affected,
        pins=parse_pins(args.media),
    )
    if not args.json:
        if timeline_file.edl is not None:
            for note in timeline_file.edl.notes:
                print(f"voidlink: note: {note}", file=sys.stderr)
        for entry in plan.events:
            for warning in entry.warnings:
                print(f"voidlink: warning: {entry.event.label}: {warning}", file=sys.stderr)
    if args.dry_run:
        if args.json:
            print_json({**plan.to_dict(), "dry_run": True})
        else:
            _print_plan(plan)
            _print_markers(plan)
        return 0 if all(entry.status == "planned" for entry in plan.events) and not _skipped(plan) else 1

    if args.farm:
        from voidlink.cli.farm import export_plan

        return export_plan(plan, args.farm, args.output, args.backend, args.json, options=args)
    from voidlink.bridge.conform.edl_writer import EdlError
    from voidlink.bridge.conform.writer import check_target, edl_outputs

    targets = [args.output]
    try:
        targets += [path for path, _ in edl_outputs(plan, args.edl, otio_path=args.output)] if args.edl else []
    except EdlError:
        pass  # no EDL can be made of this cut: said at the end, beside the timeline written
    for target in targets:
        check_target(plan, target, args.overwrite)  # refused now, not after the shots are rendered
    if any(entry.runnable for entry in plan.events):
        from voidlink.bridge.client import Client

        client = Client(args.address)
        if not args.no_start:
            client.ensure_daemon()
        on_progress = None if args.json else _Progress(plan)
        run_plan(plan, client, parallel=args.parallel, backend=args.backend, on_progress=on_progress)
    import opentimelineio as otio

    from voidlink.bridge.conform.writer import conformed_timeline, write_outputs

    timeline = conformed_timeline(plan)
    outputs = [(args.output, otio.adapters.write_to_string(timeline, "otio_json"))]
    edl_error = None
    try:
        edl_texts = edl_outputs(plan, args.edl, timeline, otio_path=args.output) if args.edl else []
    except EdlError as error:
        edl_texts, edl_error = [], error
    write_outputs(plan, outputs + edl_texts, args.overwrite)  # every one checked before any is written
    edls = [path for path, _ in edl_texts]
    if args.json:
        extra = {"edl_error": {"reason": edl_error.reason, "message": str(edl_error)}} if edl_error else {}
        print_json({**plan.to_dict(), "output": os.path.abspath(args.output), "edl": edls, **extra})
    else:
        print_table(report_rows(plan))
        _print_markers(plan)
        print(f"wrote {args.output}" + "".join(f", {path}" for path in edls))
        if edl_error is not None:
            print(f"voidlink: error: no EDL written ({edl_error.reason}): {edl_error}", file=sys.stderr)
    done = all(entry.status in ("done", "reused") for entry in plan.events)
    return 0 if done and edl_error is None and not _skipped(plan) else 1


def _skipped(plan) -> bool:
    return any(marker.skipped and marker.event is None for marker in plan.markers)


def _print_markers(plan) -> None:
    """Every VOID marker seen and what became of it: none is passed over in silence."""
    rows = plan.marker_rows()
    if not rows:
        return
    print(f"{len(rows)} VOID marker{'s' if len(rows) != 1 else ''} seen:")
    for text, where, fate in rows:
        print(f"  {text!r}  {where}  ->  {fate}")


class _Progress:
    """One stderr line per change of an event's state or frame count: `[2/5] V_003_A001 running 4/10`."""

    def __init__(self, plan) -> None:
        self.order = {id(entry): n for n, entry in enumerate(plan.events, start=1)}
        self.total = len(plan.events)
        self.last: dict = {}

    def __call__(self, entry) -> None:
        state = (entry.status, entry.frames_done)
        if self.last.get(id(entry)) == state:
            return
        self.last[id(entry)] = state
        frames = f" {entry.frames_done}/{entry.media.frame_count}" if entry.status == "running" else ""
        print(
            f"[{self.order[id(entry)]}/{self.total}] {entry.event.label} {entry.status}{frames}",
            file=sys.stderr,
            flush=True,
        )


def _print_plan(plan) -> None:
    if not plan.events:
        print("no marked events (markers starting with 'VOID:')")
    rate = f"{plan.timeline_file.rate:.3f}".rstrip("0").rstrip(".")
    print(f"timeline {plan.timeline_file.path}: {rate} fps{' drop-frame' if plan.timeline_file.drop_frame else ''}")
    for entry in plan.events:
        data = entry.to_dict()
        print(f"{data['event']}  [{data['status']}]")
        print(f"  record  {data['record_range']['in']} - {data['record_range']['out']}")
        print(f"  source  {data['source_range']['in']} - {data['source_range']['out']}")
        print(f"  prompt  {data['prompt']!r}")
        if data["media"]:
            frames = data["frames"]
            print(f"  media   {data['media']} frames {frames['first']}-{frames['last']} ({frames['count']})")
            print(
                f"  mattes  {data['mattes']['mask']}"
                + (f" + {data['mattes']['affected']}" if data["mattes"]["affected"] else "")
            )
            print(f"  output  {data['output']}")
        if data["message"]:
            print(f"  reason  {data['message']}")


def main(argv: Optional[list] = None) -> int:
    """Run `conform` on its own (as `voidlink conform` does), returning the exit status."""
    from voidlink.errors import VoidlinkError

    parser = argparse.ArgumentParser(prog="voidlink conform", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except VoidlinkError as error:
        print(f"voidlink: error: {error}", file=sys.stderr)
        return 2
