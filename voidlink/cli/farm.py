"""`voidlink farm`: removals as render-farm jobs (Open Job Description), and the daemon a farm session owns.

    voidlink remove plate.####.exr --mask roto.####.exr -o clean.####.exr --export-spec sh010.json
    voidlink farm export --format openjd sh010.json -o sh010_job.yaml
    voidlink farm export --format openjd cut.edl --media-root /shows/abc/plates -o cut_job.yaml
    voidlink farm export --format commands cut.edl --media-root /shows/abc/plates -o cut_tasks.json
    openjd run sh010_job.yaml                      # or submit it to Deadline Cloud

Every task of the job is an ordinary `voidlink remove ... --no-start` command line. The job's
environment runs `voidlink farm daemon start` when a session begins on a worker (a private daemon
on a free loopback port, announced to the tasks as VOIDLINK_ADDRESS) and `voidlink farm daemon stop`
when it ends.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
from typing import Optional

from voidlink.cli.common import add_json, parse_pins, print_json, print_table
from voidlink.errors import InvalidInput

# openjd: an Open Job Description template; commands: one `voidlink remove` argv per shot (OpenCue, Tractor, ...).
FORMATS = ("openjd", "commands")
SUFFIXES = {"openjd": (".yaml", ".yml", ".json"), "commands": (".json",)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="farm_command", metavar="{export,finish,daemon}")
    sub.required = True
    export = sub.add_parser("export", help="write a farm job for a JobSpec file or a marked timeline")
    export.add_argument(
        "--format",
        required=True,
        metavar="FORMAT",
        help="openjd: an Open Job Description template (Deadline Cloud, `openjd run`); commands: JSON with one "
        "`voidlink remove` command line per shot, for farms that run a command per task (OpenCue, Tractor)",
    )
    export.add_argument(
        "input",
        metavar="JOBSPEC.json|TIMELINE",
        help="a JobSpec (`voidlink remove ... --export-spec FILE`), or an EDL/OTIO timeline with VOID: markers",
    )
    export.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="JOB.yaml",
        help="the job to write (openjd: .yaml/.yml/.json, commands: .json)",
    )
    export.add_argument("--name", help="the job's name (default: from the shot or the timeline)")
    add_plan_arguments(export)
    add_json(export)
    export.add_argument("--edl", metavar="OUT.edl", help="timelines: the job's last step also writes a CMX3600 EDL")
    finish = sub.add_parser(
        "finish",
        help="after a farm conform: record the clean frames and write the conformed timeline (the job's last step)",
    )
    finish.add_argument("input", metavar="TIMELINE", help="the timeline the farm job was made from")
    finish.add_argument("-o", "--output", required=True, metavar="OUT.otio", help="conformed timeline to write")
    finish.add_argument("--edl", metavar="OUT.edl", help="also write a CMX3600 EDL (one per video track)")
    finish.add_argument(
        "--written-after", type=float, metavar="EPOCH", help="refuse clean frames older than this (the job's making)"
    )
    add_plan_arguments(finish)
    add_json(finish)
    daemon = sub.add_parser("daemon", help="start or stop the voidlink daemon of a farm session (the job runs these)")
    daemon.add_argument("action", choices=["start", "stop"])
    daemon.add_argument("--data-dir", required=True, help="the session's daemon folder (job store, log)")
    daemon.add_argument("--weights", default="", help="VOID weights (empty: $VOIDLINK_WEIGHTS, else the data dir)")
    daemon.add_argument(
        "--address", default="", help="use the daemon already serving here instead of starting one (empty: start one)"
    )


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    """The options a timeline needs to become removals; they mean what they mean to `voidlink conform`."""
    group = parser.add_argument_group("timelines (as for voidlink conform)")
    group.add_argument("--media-root", action="append", default=[], metavar="DIR", help="folder searched for plates")
    group.add_argument("--media", action="append", default=[], metavar="NAME=PATH", help="plate for reel/clip NAME")
    group.add_argument("--handles", type=int, default=0, help="extra frames processed on each side (default 0)")
    group.add_argument("--mattes", metavar="PATTERN", help="object matte per event ({dir} {stem} {reel} {clip})")
    group.add_argument("--affected", metavar="PATTERN", help="affected matte per event")
    group.add_argument("--rate", help="timeline rate for EDLs (default 24, 29.97 with FCM: DROP FRAME)")
    group.add_argument("--backend", default=None, help="auto, classical or void (timelines: default auto)")


def run(args: argparse.Namespace) -> int:
    if args.farm_command == "daemon":
        return _daemon(args)
    if args.farm_command == "finish":
        return finish(args)
    return export(args)


def check_format(name: str) -> str:
    if name.lower() not in FORMATS:
        raise InvalidInput(
            f"unknown farm format '{name}': voidlink writes 'openjd' (Open Job Description, which Deadline Cloud and "
            "`openjd run` take) or 'commands' (one `voidlink remove` command line per shot, which OpenCue, Tractor "
            "and any farm that runs a command per task take; see the README's Farm section)",
            reason="UNKNOWN_FORMAT",
            field="format",
        )
    return name.lower()


def check_output_name(fmt: str, path: str) -> None:
    if not path.lower().endswith(SUFFIXES[fmt]):
        kinds = ", ".join(SUFFIXES[fmt])
        raise InvalidInput(
            f"-o {path}: the {fmt} farm job is written as {kinds}",
            reason="BAD_VALUE",
            field="output",
            file=path,
        )


def export(args: argparse.Namespace) -> int:
    from voidlink.bridge.farm.jobspec import is_otio_document, job_spec_from_json, read_json
    from voidlink.bridge.farm.openjd import FarmShot

    fmt = check_format(args.format)
    check_output_name(fmt, args.output)
    path = args.input
    if path.lower().endswith(".json"):
        value = read_json(path)
        if not is_otio_document(value):
            spec = job_spec_from_json(value, path)
            if args.backend:
                spec.params.backend = args.backend
            label = spec.name or _plate_stem(spec)
            shot = FarmShot(label, spec)
            check_command_line(shot, path)
            job_name = args.name or f"voidlink remove {label}"
            return _write(fmt, [shot], args.output, job_name, args.json, skipped=[], source=path)
    plan = _plan(args)
    return export_plan(plan, fmt, args.output, args.backend or "auto", args.json, name=args.name, options=args)


def _plan(args: argparse.Namespace):
    from voidlink.bridge.conform import build_plan, parse_rate, read_timeline

    if args.handles < 0:
        raise InvalidInput(f"--handles {args.handles} is negative", reason="BAD_VALUE", field="handles")
    timeline_file = read_timeline(args.input, parse_rate(args.rate) if args.rate else None)
    return build_plan(
        timeline_file,
        output_dir=os.path.dirname(os.path.abspath(args.output)),
        media_roots=tuple(args.media_root),
        handles=args.handles,
        mattes=args.mattes,
        affected=args.affected,
        pins=parse_pins(args.media),
    )


def export_plan(
    plan,
    fmt: str,
    output: str,
    backend: str,
    as_json: bool,
    name: str = "",
    options: Optional[argparse.Namespace] = None,
) -> int:
    """One farm job for every runnable event of a conform plan; events with finished frames are left out.

    With `options` (the plan's command-line options) the job ends with `voidlink farm finish`, which
    writes the conformed timeline once every removal has succeeded.
    """
    from voidlink.bridge.conform.plan import job_spec, reusable
    from voidlink.bridge.farm.openjd import FarmShot

    fmt = check_format(fmt)
    check_output_name(fmt, output)
    timeline = plan.timeline_file.path
    shots, skipped = [], []
    for entry in plan.events:
        if not entry.runnable:
            skipped.append({"event": entry.event.label, "status": entry.status, "message": entry.message})
        elif reusable(entry, backend):
            message = "finished frames from an earlier conform"
            skipped.append({"event": entry.event.label, "status": "reused", "message": message})
        else:
            shots.append(FarmShot(entry.event.label, job_spec(entry, backend)))
    if not shots:
        counts = ", ".join(f"{sum(1 for s in skipped if s['status'] == k)} {k}" for k in sorted(_statuses(skipped)))
        raise InvalidInput(
            f"{timeline}: no marked event to put in a farm job ({counts or 'no events marked VOID:'}); "
            f"`voidlink conform {os.path.basename(timeline)} --dry-run` says why for each event",
            reason="NOTHING_TO_RUN",
            file=timeline,
        )
    for shot in shots:
        check_command_line(shot, timeline)
    if not as_json:
        for entry in skipped:
            print(f"voidlink: not in the job: {entry['event']} ({entry['status']}) {entry['message']}", file=sys.stderr)
    job_name = name or f"voidlink conform {plan.timeline_file.stem}"
    finish_arguments = None
    if options is not None:
        finish_arguments = finish_command(plan, options, "{{Param.Backend}}" if fmt == "openjd" else backend)
    return _write(fmt, shots, output, job_name, as_json, skipped, timeline, finish_arguments)


def finish_command(plan, options: argparse.Namespace, backend: str) -> list:
    """`voidlink farm finish` arguments that rebuild this plan on a farm node and write its timeline back."""
    import time

    from voidlink.bridge.pathmap import is_windows_path

    def absolute(path: str) -> str:
        return path if is_windows_path(path) and os.name != "nt" else os.path.abspath(path)

    stem = plan.timeline_file.stem
    arguments = ["farm", "finish", absolute(plan.timeline_file.path)]
    arguments += [f"--media-root={absolute(root)}" for root in options.media_root]
    for pin in options.media:
        reel, _, path = pin.partition("=")
        arguments.append(f"--media={reel.strip()}={absolute(path.strip())}")
    for option in ("handles", "mattes", "affected", "rate"):
        value = getattr(options, option, None)
        if value:
            arguments.append(f"--{option}={value}")
    arguments += [f"--backend={backend}", f"--output={os.path.join(plan.output_dir, stem + '_void.otio')}"]
    if getattr(options, "edl", None):
        arguments.append(f"--edl={absolute(options.edl)}")
    return arguments + [f"--written-after={time.time():.0f}"]


def finish(args: argparse.Namespace) -> int:
    import opentimelineio as otio

    from voidlink.bridge.conform.plan import FINISHED
    from voidlink.bridge.conform.writer import conformed_timeline, edl_outputs, report_rows, write_outputs
    from voidlink.bridge.farm.conform import finish_plan

    plan = finish_plan(_plan(args), args.backend or "auto", args.written_after)
    timeline = conformed_timeline(plan)
    edl_texts = edl_outputs(plan, args.edl, timeline) if args.edl else []
    write_outputs(plan, [(args.output, otio.adapters.write_to_string(timeline, "otio_json")), *edl_texts])
    edls = [path for path, _ in edl_texts]
    if args.json:
        print_json({**plan.to_dict(), "output": os.path.abspath(args.output), "edl": edls})
    else:
        print_table(report_rows(plan))
        print(f"wrote {args.output}" + "".join(f", {path}" for path in edls))
    return 0 if all(entry.status in FINISHED for entry in plan.events if entry.media is not None) else 1


def _statuses(skipped: list) -> set:
    return {entry["status"] for entry in skipped}


def check_command_line(shot, source: str) -> None:
    """Refuse a shot whose `voidlink remove` command line would not submit exactly its JobSpec.

    The line is run through `voidlink remove`'s own parser and spec building (`--export-spec`), so
    what the farm runs is checked against the very code that will run it.
    """
    from voidlink.bridge.farm.jobspec import read_job_spec, spec_differences
    from voidlink.bridge.farm.openjd import remove_line
    from voidlink.cli import build_parser

    arguments = ["remove", *remove_line(shot.spec).arguments(), "--no-start"]
    with tempfile.TemporaryDirectory(prefix="voidlink-farm-") as folder:
        exported = os.path.join(folder, "spec.json")
        try:
            parsed = build_parser().parse_args([*arguments, "--export-spec", exported])
        except SystemExit:
            raise InvalidInput(
                f"{source}: shot {shot.label}: `voidlink remove` does not take {' '.join(arguments[1:])}",
                reason="NOT_A_COMMAND_LINE",
                file=source,
            ) from None
        from voidlink.cli import remove

        with contextlib.redirect_stdout(io.StringIO()):
            remove.run(parsed)
        rebuilt = read_job_spec(exported)
    differences = spec_differences(shot.spec, rebuilt)
    if differences:
        field, wanted, got = differences[0]
        others = f" (and {', '.join(d[0] for d in differences[1:])})" if len(differences) > 1 else ""
        raise InvalidInput(
            f"{source}: shot {shot.label}: field '{field}'{others} is {wanted!r}, which no `voidlink remove` option "
            f"gives (the farm task would run with {got!r}); a farm task is a `voidlink remove` command line",
            reason="NOT_A_COMMAND_LINE",
            field=field,
            file=source,
        )


def _plate_stem(spec) -> str:
    from voidlink.bridge.spec import default_output

    # default_output() names `<folder>/void/<stem>_void.####.exr`: its file name carries the plate's stem.
    from voidlink.protos.clips import clip_media

    name = os.path.basename(default_output(clip_media(spec.source.otio_json).path))
    return name[: -len("_void.####.exr")] or "shot"


def _write(
    fmt: str,
    shots: list,
    output: str,
    name: str,
    as_json: bool,
    skipped: list,
    source: str,
    finish: Optional[list] = None,
) -> int:
    """Write the job; a value the format cannot carry is refused naming `source` (the JobSpec or timeline)."""
    try:
        return _write_job(fmt, shots, output, name, as_json, skipped, finish)
    except InvalidInput as error:
        if error.file:
            raise
        raise InvalidInput(f"{source}: {error.message}", reason=error.reason, field=error.field, file=source) from None


def _write_job(fmt: str, shots: list, output: str, name: str, as_json: bool, skipped: list, finish) -> int:
    if fmt == "commands":
        from voidlink.bridge.farm.commands import write_command_lines

        written = write_command_lines(shots, output, name, finish)
        tasks = {"commands": len(shots)}
    else:
        from voidlink.bridge.farm.openjd import job_template, validate_template, write_template

        template = job_template(shots, name=name[:128], finish=finish)
        validate_template(template)
        written = write_template(template, output)
        tasks = {step["name"]: len(_tasks(step)) for step in template["steps"] if step["name"] != "Conform"}
    if as_json:
        print_json(
            {
                "format": fmt,
                "output": written,
                "steps": tasks,
                "tasks": sum(tasks.values()),
                "shots": [shot.label for shot in shots],
                "skipped": skipped,
            }
        )
        return 0
    count = sum(tasks.values())
    print(f"wrote {written}: {count} task{'s' if count != 1 else ''}")
    if fmt == "openjd":
        print(f"run it here with: openjd run {written} -p Voidlink={_voidlink_command()}")
    return 0


def _tasks(step: dict) -> list:
    space = step.get("parameterSpace")
    if not space:
        return [None]
    return space["taskParameterDefinitions"][0]["range"]


def _voidlink_command() -> str:
    import shlex
    import shutil

    return shlex.quote(shutil.which("voidlink") or "voidlink")


def _daemon(args: argparse.Namespace) -> int:
    from voidlink.bridge.farm.daemon import (
        check_existing_daemon,
        environment_line,
        start_session_daemon,
        stop_session_daemon,
    )

    if args.action == "start":
        if args.address:
            check_existing_daemon(args.address)
            print(f"using the voidlink daemon at {args.address}", flush=True)
            print(environment_line(args.address), flush=True)
            return 0
        address, pid = start_session_daemon(args.data_dir, args.weights or None)
        print(f"voidlink daemon (pid {pid}) serving at {address}, data dir {os.path.abspath(args.data_dir)}")
        print(environment_line(address), flush=True)
        return 0
    pid = stop_session_daemon(args.data_dir)
    print("no session daemon to stop" if pid is None else f"stopped the voidlink daemon (pid {pid})", flush=True)
    return 0
