"""One job run from start to end: `run_job` takes the prepared job through its steps in order,
and `commit_segments` is the last steps alone, for a pool that rendered the segments elsewhere.

    1 prepare   (given: `prepare.prepare_job` ran when the job was submitted)
    2 stage     open the staging folder, or find a commit a crash interrupted and finish it
    3 analyse   one pass over the mattes: the crop/scale plan, empty frames, quadmask files
    4 render    feed the backend, composite, write each frame into the staging folder
    5 describe  the result, read from the staged frames (the commit marker holds it)
    6 commit    move every staged file into place: rolls forward once begun
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Callable, Optional

from voidlink.inference.backends.base import Backend, BackendRequest
from voidlink.inference.job.analyse import analyse
from voidlink.inference.job.control import NullProgress, ProgressSink
from voidlink.inference.job.describe import describe, describe_run
from voidlink.inference.job.prepare import PreparedJob
from voidlink.inference.job.render import render
from voidlink.inference.job.staging import COMMIT_MARKER, check_no_unfinished_commit, commit, is_output_staged
from voidlink.media import sequence
from voidlink.protos import pb

from voidlink.errors import InvalidInput, VoidlinkError


def run_job(
    prepared: PreparedJob,
    backend: Backend,
    *,
    job_id: str,
    progress: Optional[ProgressSink] = None,
    cancelled: Callable[[], bool] = lambda: False,
    request: Optional[BackendRequest] = None,
    segment: Optional[tuple[int, int]] = None,
    done: Collection[int] = (),
) -> pb.JobResult:
    """Render the job's frames into its staging folder, then move them into place.

    `segment`: (first, last), frames of the job to render and stage, nothing else; the move is
    left to `commit_segments` (or to a later run of the whole job, which finds them staged). A pool
    renders the segments of a long shot side by side this way (only for a backend whose frames
    depend on a bounded `temporal_context`: each segment is fed that many frames beyond its ends).
    `done`: frames rendered already elsewhere (a pool worker without shared storage is told which
    frames the daemon holds): they are neither rendered nor expected in the staging folder.
    The prepared job is closed (its movie decoders released) when the run ends, whichever way.
    """
    progress = progress or NullProgress()
    request = request or BackendRequest(first=prepared.first, last=prepared.last, cancelled=cancelled)
    staging = prepared.staging(job_id)
    started = time.monotonic()
    try:
        # 2 stage: a marker on disk means an earlier run began the move; it is finished, nothing rendered.
        if (staging / COMMIT_MARKER).exists():
            if segment is not None:  # the whole job is being moved into place: nothing left to render
                return describe_run(prepared, backend, request, {}, [], job_id)
            progress.stage("commit", "finishing the renames of an interrupted commit")
            result = describe_run(prepared, backend, request, {}, [], job_id)
            return commit(prepared, staging, job_id, result, cancelled)
        prepared.check_confined()
        check_no_unfinished_commit(prepared, job_id)
        staging.mkdir(parents=True, exist_ok=True)
        # 3 analyse
        progress.stage("analyse", "reading the mattes")
        frames = _segment_frames(prepared, segment)
        analysis = analyse(prepared, backend, cancelled, progress, staging, frames, job_id)
        # 4 render
        metrics, notes = render(
            prepared, backend, request, analysis, staging, progress, cancelled, frames, set(done), job_id
        )
        metrics["seconds"] = time.monotonic() - started
        # 5 describe
        result = describe_run(prepared, backend, request, metrics, notes, job_id)
        if segment is not None:
            return result  # a segment's frames wait staged for commit_segments
        # 6 commit
        progress.stage("commit", "moving the frames into place")
        return commit(prepared, staging, job_id, result, cancelled)
    finally:
        prepared.close()


def commit_segments(
    prepared: PreparedJob,
    job_id: str,
    backend_name: str,
    notes: list[str],
    metrics: dict[str, float],
    cancelled: Callable[[], bool] = lambda: False,
) -> pb.JobResult:
    """Steps 5 and 6 for frames that segment runs staged: describe the result and move them into
    place (a pool's last step: no frame is read or rendered). Refuses, naming them, when frames are missing."""
    staging = prepared.staging(job_id)
    if not (staging / COMMIT_MARKER).exists():
        missing = [f for f in prepared.frames if not is_output_staged(prepared, staging, f)]
        if missing:
            raise VoidlinkError(
                f"the segments of job {job_id} left frames {sequence.format_frames(missing)} unrendered",
                reason="INCOMPLETE",
                frames=missing,
            )
    result = describe(prepared, backend_name, list(dict.fromkeys(notes)), metrics, job_id)
    return commit(prepared, staging, job_id, result, cancelled)


def _segment_frames(prepared: PreparedJob, segment: Optional[tuple[int, int]]) -> list[int]:
    """The job's frames to render in this run: all of them, or those of `segment`."""
    if segment is None:
        return list(prepared.frames)
    first, last = segment
    if not prepared.first <= first <= last <= prepared.last:
        raise InvalidInput(
            f"segment {first}-{last} is not inside the job's frames {prepared.first}-{prepared.last}",
            reason="BAD_SEGMENT",
            field="segment",
        )
    return [f for f in prepared.frames if first <= f <= last]
