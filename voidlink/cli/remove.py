"""`voidlink remove`: submit a removal and follow it to the end with a progress bar."""

from __future__ import annotations

import argparse
import sys

from voidlink.cli.common import add_address, add_json, job_to_dict, parse_frames, print_json
from voidlink.protos import vocabulary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plate", help="plate: name.####.exr, name.%%04d.exr, name.@.exr, a movie or an image")
    parser.add_argument("--mask", required=True, help="object matte (or a quadmask with --quadmask)")
    parser.add_argument("--affected", help="matte of the regions the object affects (shadows, reflections, ...)")
    parser.add_argument("--quadmask", action="store_true", help="--mask already holds quadmask values 0/63/127/255")
    parser.add_argument("--frames", help="FIRST-LAST in the plate's own numbering (default: the whole plate)")
    parser.add_argument("--prompt", default="", help="the scene AFTER removal, e.g. 'an empty road'")
    parser.add_argument("--backend", default="auto", help="auto (default), classical or void")
    parser.add_argument("-o", "--output", help="output pattern (default: <plate folder>/void/<name>_void.####.exr)")
    parser.add_argument("--quality", default="balanced", choices=vocabulary.QUALITY.offered)
    parser.add_argument(
        "--crop",
        default="auto",
        choices=vocabulary.CROP_MODE.offered,
        help="auto (default): work in a box around the mask over the shot when that gains resolution; "
        "full: the whole frame scaled to the model's working size (the reference's way); shot: always the box",
    )
    parser.add_argument(
        "--passes",
        type=int,
        default=0,
        choices=[0, 1, 2],
        help="VOID passes: 1, or 2 to refine "
        "along the optical flow of the first (needs void_pass2.safetensors; 0: backend default)",
    )
    parser.add_argument("--steps", type=int, default=0, help="denoising steps (VOID; 0: backend default)")
    parser.add_argument(
        "--guidance", type=float, default=0.0, help="classifier-free guidance scale (VOID; 0: backend default)"
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--priority", type=int, default=0, help="higher runs first")
    parser.add_argument("--dilate", type=int, default=0, help="grow the mattes by N pixels")
    parser.add_argument("--feather", type=float, default=0.0, help="soft edge of the composite, pixels")
    parser.add_argument("--pixel-type", default="auto", choices=vocabulary.PIXEL_TYPE.offered)
    parser.add_argument("--compression", default="zip", choices=vocabulary.COMPRESSION.offered)
    parser.add_argument("--resample-mattes", action="store_true", help="resample mattes of another size to the plate")
    parser.add_argument(
        "--layers",
        action="store_true",
        help="also write the change in the output EXR: void.delta.R/G/B (result - plate), void.change, void.quadmask",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace files at the output that voidlink did not write (refused without it; earlier voidlink "
        "results are replaced either way, the job's own plates and mattes never)",
    )
    parser.add_argument("--name", default="", help="a name shown in the queue")
    parser.add_argument(
        "--transfer",
        default="auto",
        choices=["auto", "shared", "stream"],
        help="auto (default): upload only what the daemon cannot read and fetch the result back when it cannot "
        "write the output; shared: send paths only; stream: upload every clip and fetch the result back",
    )
    parser.add_argument("--detach", action="store_true", help="submit and return at once with the job id")
    parser.add_argument("--no-start", action="store_true", help="do not start a local daemon when none answers")
    add_address(parser)
    add_json(parser)
    parser.add_argument(
        "--export-spec",
        metavar="FILE.json",
        help="write the job this command would submit (a JobSpec as JSON) to FILE and exit without submitting; "
        "`voidlink farm export` turns such a file into a farm job",
    )


def run(args: argparse.Namespace) -> int:
    from voidlink.bridge.client import Client, build_spec
    from voidlink.errors import InvalidInput

    spec = build_spec(
        args.plate,
        args.mask,
        args.affected,
        parse_frames(args.frames),
        args.prompt,
        args.output,
        args.backend,
        quadmask=args.quadmask,
        steps=args.steps,
        seed=args.seed,
        quality=args.quality,
        crop=args.crop,
        passes=args.passes,
        guidance=args.guidance,
        priority=args.priority,
        pixel_type=args.pixel_type,
        compression=args.compression,
        layers=args.layers,
        resample_mattes=args.resample_mattes,
        name=args.name,
        dilate=args.dilate,
        feather=args.feather,
        overwrite=args.overwrite,
    )
    if args.export_spec:
        from voidlink.bridge.farm.jobspec import write_job_spec

        written = write_job_spec(spec, args.export_spec)
        if args.json:
            print_json({"spec": written})
        else:
            print(f"wrote {written}")
        return 0
    client = Client(args.address)
    if not args.no_start:
        client.ensure_daemon()
    plan = client.plan_transfer(spec, args.transfer)
    if args.detach and plan.stream_back:
        raise InvalidInput(
            f"--detach: the daemon at {client.address} cannot write {spec.output.path_template} "
            f"({'; '.join(plan.reasons) or 'streaming was asked for'}), so the result must come back over this "
            "connection, which needs this command to stay until the job ends. Run without --detach, or give an "
            "--output on storage the daemon writes (see --path-map) with --transfer auto or shared.",
            reason="DETACH_NEEDS_SHARED_OUTPUT",
            field="detach",
        )
    with _Transfers(quiet=args.json) as shown:
        job, plan = client.start(spec, on_progress=shown.update, plan=plan)
    if args.detach:
        print_detached(job, args.json)
        return 0
    job = follow_to_end(client, job.id, args.json)
    if job is None:
        return 130
    try:
        with _Transfers(quiet=args.json) as shown:
            job = client.finish(job, plan, on_progress=shown.update)
    except KeyboardInterrupt:
        # The files are renamed into place only once all arrived: an interrupted fetch leaves what was there.
        print(
            f"voidlink: fetching the result of job {job.id} was interrupted; nothing at {plan.output_template} "
            "was changed; run the command again to render and fetch it (no frame is uploaded twice)",
            file=sys.stderr,
        )
        return 130
    return print_outcome(job, args.json)


class _Transfers:
    """Frames going up to the daemon or a result coming back: a bar on a terminal, else a line per file."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar = None
        self.task = None
        self.direction = ""
        self.files_shown = -1

    def __enter__(self) -> _Transfers:
        if not self.quiet and sys.stderr.isatty():
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

            self.bar = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn()
            )
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()

    def update(self, event) -> None:
        if self.quiet or not event.HasField("transfer"):
            return
        transfer = event.transfer
        label = "uploading frames" if transfer.direction == "upload" else "fetching the result"
        if self.bar is not None:
            if transfer.direction != self.direction:
                self.direction = transfer.direction
                self.task = self.bar.add_task(label, total=transfer.bytes_total or None)
            self.bar.update(self.task, completed=transfer.bytes_done, total=transfer.bytes_total or None)
            return
        if transfer.direction != self.direction or transfer.files_done != self.files_shown:
            self.direction, self.files_shown = transfer.direction, transfer.files_done
            total = f"/{transfer.files_total}" if transfer.files_total else ""
            reused = f", {transfer.bytes_reused / 1e6:.1f} MB already on the daemon" if transfer.bytes_reused else ""
            print(
                f"{label}: {transfer.files_done}{total} files, {transfer.bytes_done / 1e6:.1f} MB{reused}",
                file=sys.stderr,
                flush=True,
            )


def print_detached(job, as_json: bool) -> None:
    """A job submitted with --detach: its id and state, for a script to follow it later."""
    from voidlink.protos.vocabulary import state_name

    if as_json:
        print_json({"id": job.id, "state": state_name(job.state)})
    else:
        print(f"{job.id} {state_name(job.state)}")


def print_outcome(job, as_json: bool, what: str = "frames") -> int:
    """A finished job as the command's last word: its JSON, or a line naming where its frames are with
    its notes and (a matte job's) quadmask findings; the error on stderr when it failed or was cancelled.
    Returns the command's exit status: 0 when it succeeded, 1 when not."""
    from voidlink.bridge.result import result_or_raise
    from voidlink.errors import JobCancelled, JobFailed

    if as_json:
        print_json(job_to_dict(job))
    try:
        result = result_or_raise(job)
    except (JobFailed, JobCancelled) as error:
        if not as_json:
            print(f"voidlink: {error}", file=sys.stderr)
        return 1
    if not as_json:
        print(f"{job.id} succeeded: {what} {result.first}-{result.last} in {result.output_pattern}")
        for note in result.notes:
            print(f"  note: {note}")
        for finding in result.findings:
            where = f"frame {finding['frame']}: " if finding["frame"] is not None else ""
            print(f"  {finding['severity']}: {where}{finding['message']}")
    return 0


def follow_to_end(client, job_id: str, as_json: bool):
    """Follow a job with a progress bar to its end; None after Ctrl-C, which cancels it (and says so)."""
    try:
        return _follow(client, job_id, quiet=as_json)
    except KeyboardInterrupt:
        # Ctrl-C means "stop this job", not "leave it running unattended".
        client.cancel(job_id)
        job = client.wait(job_id)
        print(f"voidlink: job {job.id} cancelled", file=sys.stderr)
        if as_json:
            print_json(job_to_dict(job))
        return None


def _follow(client, job_id: str, quiet: bool):
    if quiet or not sys.stderr.isatty():
        return client.wait(job_id, on_progress=None if quiet else _plain_progress)
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("[bold]{task.fields[job]}"),
        TextColumn("{task.fields[stage]}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} frames"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task("remove", total=None, job=job_id, stage="queued")

        def update(event):
            bar.update(
                task, completed=event.frames_done, total=event.frames_total or None, stage=event.stage or "queued"
            )

        return client.wait(job_id, on_progress=update)


def _plain_progress(event) -> None:
    from voidlink.protos.vocabulary import state_name

    if event.frame or event.state != 2:
        print(
            f"{event.job_id} {state_name(event.state)} {event.stage} {event.frames_done}/{event.frames_total}",
            file=sys.stderr,
            flush=True,
        )
