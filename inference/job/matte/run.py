"""One matte job run from start to end: `run_matte` takes the prepared job through its steps in order.

    1 prepare   (given: `prepare.prepare_matte` ran when the job was submitted)
    2 stage     open the staging folder, or find a commit a crash interrupted and finish it
    3 track     the tracker over the plate's frames; each object matte staged as it comes (a frame
                staged before a restart is not written again; every frame staged: no tracking at all)
    4 propose   when asked, the affected proposal from the staged object mattes, staged per frame
                (grown to grid cells when the job says so)
    5 check     every frame's quadmask from its mattes (staged when the job writes it) and the quadmask
                checks over the shot: the result's findings
    6 describe  the result: the matte sequence as an OTIO clip, notes, provenance, findings
    7 commit    move every staged file into place: rolls forward once begun (as a removal's)
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from voidlink.inference.backends.matte import MatteRegistry
from voidlink.inference.backends.matte.base import AffectedProposer, MatteRequest, Tracker
from voidlink.inference.job.control import NullProgress, ProgressSink, check_cancelled
from voidlink.inference.job.describe import sequence_result
from voidlink.inference.job.matte.frames import PlateFrames, as_matte, is_staged, read_staged, stage_matte
from voidlink.inference.job.matte.prepare import PreparedMatte
from voidlink.inference.job.staging import COMMIT_MARKER, check_no_unfinished_commit, commit, staged_path
from voidlink.media import image, quadmask, sequence
from voidlink.media.quadmask_checks import Finding, check_sequence
from voidlink.protos import pb

from voidlink import __version__
from voidlink.errors import VoidlinkError


def run_with(
    registry: MatteRegistry,
    prepared: PreparedMatte,
    *,
    job_id: str,
    progress: ProgressSink,
    cancelled: Callable[[], bool],
) -> pb.JobResult:
    """Run a matte job on the registry's resident tracker (and proposer): what the scheduler calls."""
    matte = prepared.spec.matte
    tracker_name = registry.resolve(matte.tracker)
    progress.stage("load", f"loading the {tracker_name} tracker")
    tracker = registry.get(tracker_name)
    proposer, note = None, ""
    if prepared.affected_output is not None:
        name, note = registry.proposer(matte.affected_text)
        proposer = registry.get(name, "proposer")
    notes = [note] if note else []
    return run_matte(prepared, tracker, proposer, job_id=job_id, progress=progress, cancelled=cancelled, notes=notes)


def run_matte(
    prepared: PreparedMatte,
    tracker: Tracker,
    proposer: Optional[AffectedProposer] = None,
    *,
    job_id: str,
    progress: Optional[ProgressSink] = None,
    cancelled: Callable[[], bool] = lambda: False,
    notes: Iterable[str] = (),
) -> pb.JobResult:
    """Track, propose and check the job's mattes into its staging folder, then move them into place.
    The prepared job is closed when the run ends, whichever way."""
    progress = progress or NullProgress()
    staging = prepared.staging(job_id)
    started = time.monotonic()
    try:
        # 2 stage: a marker on disk means an earlier run began the move; it is finished, nothing tracked.
        if (staging / COMMIT_MARKER).exists():
            progress.stage("commit", "finishing the renames of an interrupted commit")
            return commit(prepared, staging, job_id, pb.JobResult(), cancelled)
        prepared.check_confined()
        check_no_unfinished_commit(prepared, job_id)
        staging.mkdir(parents=True, exist_ok=True)
        request = MatteRequest(cancelled=cancelled, on_message=progress.log)
        reader = PlateFrames(prepared, cancelled)
        made_by = {"job": job_id, "version": __version__, "tracker": tracker.name}
        if proposer is not None:
            made_by["proposer"] = proposer.name
            if prepared.spec.matte.affected_text:
                made_by["affected_text"] = prepared.spec.matte.affected_text
        # 3 track
        _track(prepared, tracker, reader, request, staging, progress, cancelled, made_by)
        # 4 propose
        if proposer is not None:
            _propose(prepared, proposer, reader, request, staging, progress, cancelled, made_by)
        # 5 check
        progress.stage("check", "the quadmask checks over every frame")
        findings = check_sequence(_quadmasks(prepared, staging, job_id, cancelled))
        # 6 describe
        metrics = {"frames": float(len(prepared.frames)), "seconds": time.monotonic() - started}
        result = describe(prepared, tracker.name, [*notes, *request.notes], metrics, made_by, findings)
        # 7 commit
        progress.stage("commit", "moving the mattes into place")
        return commit(prepared, staging, job_id, result, cancelled)
    finally:
        prepared.close()


def _track(
    prepared: PreparedMatte,
    tracker: Tracker,
    reader: PlateFrames,
    request: MatteRequest,
    staging: Path,
    progress: ProgressSink,
    cancelled: Callable[[], bool],
    made_by: dict[str, str],
) -> None:
    frames = list(prepared.frames)
    total = len(frames)
    todo = {f for f in frames if not is_staged(prepared, staging, "output", f)}
    done = total - len(todo)
    if done:
        progress.log(f"resuming: {done} of {total} mattes were already tracked")
    if not todo:
        return
    prompts = prepared.prompts()
    on = sequence.format_frames(sorted({p.frame for p in prompts}))
    progress.stage("track", f"{tracker.name}: tracking the object over {total} frames from the prompts on {on}")
    seen: set[int] = set()
    for frame, matte in _checked(tracker.track(reader, prompts, request), frames, f"tracker {tracker.name}"):
        check_cancelled(cancelled)
        seen.add(frame)
        if frame not in todo:
            continue  # tracked and staged before a restart: each frame is written once
        values = as_matte(frame, matte, prepared.size, f"tracker {tracker.name}")
        made_by.update(request.provenance)  # the tracker's own (model, weights' SHA-256), known once it has run
        stage_matte(prepared, staging, "output", frame, values, made_by)
        done += 1
        progress.frame_written(frame, done, total, _preview(values))
    missing = sorted(todo - seen)
    if missing:
        raise VoidlinkError(
            f"tracker {tracker.name} stopped before frames {sequence.format_frames(missing)}",
            reason="INCOMPLETE",
            frames=missing,
        )


def _propose(
    prepared: PreparedMatte,
    proposer: AffectedProposer,
    reader: PlateFrames,
    request: MatteRequest,
    staging: Path,
    progress: ProgressSink,
    cancelled: Callable[[], bool],
    made_by: dict[str, str],
) -> None:
    frames = list(prepared.frames)
    todo = {f for f in frames if not is_staged(prepared, staging, "affected", f)}
    if not todo:
        return
    grid = int(prepared.spec.matte.affected_grid)
    text = prepared.spec.matte.affected_text
    progress.stage("propose", f"{proposer.name}: proposing the affected region over {len(frames)} frames")

    def object_matte(frame: int) -> np.ndarray:
        return read_staged(prepared, staging, "output", frame)

    seen: set[int] = set()
    stream = proposer.propose(reader, object_matte, text, request)
    for frame, matte in _checked(stream, frames, f"proposer {proposer.name}"):
        check_cancelled(cancelled)
        seen.add(frame)
        if frame not in todo:
            continue
        values = as_matte(frame, matte, prepared.size, f"proposer {proposer.name}")
        if grid:
            values = _grow_to_grid(values > quadmask.DEFAULT_THRESHOLD, grid).astype(np.float32)
        made_by.update(request.provenance)
        stage_matte(prepared, staging, "affected", frame, values, made_by)
        progress.stage("propose", f"{proposer.name}: affected proposal of frame {frame} ({len(seen)}/{len(frames)})")
    missing = sorted(todo - seen)
    if missing:
        raise VoidlinkError(
            f"proposer {proposer.name} stopped before frames {sequence.format_frames(missing)}",
            reason="INCOMPLETE",
            frames=missing,
        )


def _checked(stream: Iterator[tuple[int, np.ndarray]], frames: list[int], who: str) -> Iterator[tuple[int, np.ndarray]]:
    """A tracker's or proposer's results, each frame one of the job's and given once (in any order)."""
    wanted, given = set(frames), set()
    for frame, matte in stream:
        frame = int(frame)
        if frame not in wanted:
            raise RuntimeError(f"{who} returned frame {frame}, which is not one of the job's")
        if frame in given:
            raise RuntimeError(f"{who} returned frame {frame} twice")
        given.add(frame)
        yield frame, matte


def _grow_to_grid(region: np.ndarray, cell: int) -> np.ndarray:
    from voidlink.inference.backends.matte.motion import grow_to_grid

    return grow_to_grid(region, cell)


def _quadmasks(
    prepared: PreparedMatte, staging: Path, job_id: str, cancelled: Callable[[], bool]
) -> Iterator[tuple[int, np.ndarray]]:
    """Every frame's quadmask from its staged mattes, in frame order; staged too when the job writes it."""
    settings = quadmask.MatteSettings(feather=0.0)
    for frame in prepared.frames:
        check_cancelled(cancelled)
        obj = read_staged(prepared, staging, "output", frame)
        affected = read_staged(prepared, staging, "affected", frame) if prepared.affected_output is not None else None
        qm = quadmask.from_mattes(obj, affected, settings)
        if prepared.quadmask_output is not None:
            target = staged_path(staging, "quadmask", prepared.quadmask_output, frame)
            if not target.exists():
                image.write_image(
                    str(target),
                    qm.astype(np.float32) / 255.0,
                    pixel_type="uint8",
                    channel_names=["Y"],
                    attributes={image.JOB_ATTRIBUTE: job_id},
                )
        yield frame, qm


def describe(
    prepared: PreparedMatte,
    tracker_name: str,
    notes: list[str],
    metrics: dict[str, float],
    made_by: dict[str, str],
    findings: list[Finding],
) -> pb.JobResult:
    """The job's result, read before the commit (its marker holds it): an OTIO clip of the matte sequence."""
    metadata = {"voidlink": {"provenance": made_by, "kind": "matte"}}
    result = sequence_result(prepared, tracker_name, list(dict.fromkeys(notes)), metrics, made_by, metadata)
    if prepared.affected_output is not None:
        result.affected_pattern = prepared.affected_output.hashes()
    for finding in findings:
        found = result.findings.add(check=finding.check, severity=finding.severity, message=finding.message)
        if finding.frame is not None:
            found.frame = int(finding.frame)
    result.metrics["findings_errors"] = float(sum(f.severity == "error" for f in findings))
    return result


def _preview(matte: np.ndarray, width: int = 256) -> np.ndarray:
    """A small grey picture of the matte for the watchers' preview."""
    import cv2

    h, w = matte.shape
    if w > width:
        matte = cv2.resize(matte, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    return np.repeat(matte[..., None], 3, axis=2)
