"""Private storage (`--cluster-storage private`): a job for workers that see none of the daemon's paths.

The daemon hashes the job's input frames (`FrameHashes`, remembered by path, size and mtime) and
names them by hash in the spec the workers get (`private_job`); `send_frames` gives a worker's cache
the frames it lacks, so a re-run or another segment of the same shot sends nothing twice. Each
finished frame comes back with the poll that reports it and is staged by the daemon as it arrives
(`PrivateJob.receive`); a worker that dies mid-job loses only the frames not polled yet.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Optional

from voidlink.inference.job.control import ProgressSink
from voidlink.inference.job.prepare import PreparedJob
from voidlink.inference.job.staging import stage_file, staged_files
from voidlink.inference.pool.messages import FrameLack, FramePiece, FrameRef
from voidlink.inference.pool.placement import WorkerRecord
from voidlink.inference.pool.segments import Segment
from voidlink.protos import pb
from voidlink.protos.wire import file_sha256

from voidlink.errors import InvalidInput, JobCancelled

log = logging.getLogger("voidlink.cluster")

# The bytes sent to a worker per call.
SEND_BATCH_BYTES = 64 * 1024**2
# Hashes remembered: enough for many long shots, bounded so a daemon that runs for months stays small.
_HASHES_KEPT = 100_000


@dataclass
class PrivateJob:
    """A job run by workers that see none of the daemon's storage."""

    spec: pb.JobSpec  # as the workers get it: inputs named by hash, the output written in their own folder
    prepared: PreparedJob  # the daemon's own, whose staging folder the frames come back to
    job_id: str
    frames: dict[str, tuple[int, str]]  # sha256 → (size, the daemon's path), each input frame once

    def done(self, segment: Optional[Segment]) -> tuple[int, ...]:
        """Frames of the run whose output the daemon holds already: the worker skips them."""
        first, last = segment or (self.prepared.first, self.prepared.last)
        return tuple(f for f in range(first, last + 1) if "output" in staged_files(self.prepared, self.job_id, f))

    def receive(self, frame: int, files: dict[str, bytes]) -> None:
        # The output last: a frame counts as done once its output is staged, so it must come with the rest.
        for kind in sorted(files, key=lambda kind: kind == "output"):
            stage_file(self.prepared, self.job_id, kind, frame, files[kind])


class FrameHashes:
    """Input frames' sha256, each file hashed once while its size and mtime stay the same."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) → sha256

    def of(self, path: str) -> tuple[str, int]:
        """The file's (sha256, size)."""
        stat = os.stat(path)
        key = (path, stat.st_size, stat.st_mtime_ns)
        sha = self._known.get(key)
        if sha is None:
            sha = self._known[key] = file_sha256(path)
            while len(self._known) > _HASHES_KEPT:
                self._known.pop(next(iter(self._known)))
        return sha, stat.st_size


def private_job(job: pb.Job, prepared: PreparedJob, hashes: FrameHashes) -> PrivateJob:
    """The job as a worker without the daemon's storage gets it: inputs named by hash."""
    spec = pb.JobSpec()
    spec.CopyFrom(job.spec)
    frames: dict[str, tuple[int, str]] = {}
    for name in ("source", "mask", "affected"):
        clip = getattr(prepared, name)
        if clip is None:
            continue
        if clip.media.kind != "sequence":
            raise InvalidInput(
                f"spec.{name}: {clip.media.path} is not an image sequence; this daemon's pool has no shared "
                "storage (--cluster-storage private) and sends its workers image sequences only: render the "
                "clip as one",
                reason="NOT_A_SEQUENCE",
                field=f"spec.{name}",
                file=clip.media.path,
            )
        target = getattr(spec, name)
        del target.uploaded_frames[:]
        for frame in prepared.frames:
            path = clip.media.file_for(frame)
            sha, size = hashes.of(path)
            target.uploaded_frames.add(sha256=sha, size=size, frame=frame)
            frames.setdefault(sha, (size, path))
    spec.output.stream_back = True
    return PrivateJob(spec, prepared, job.id, frames)


def send_frames(
    ray: Any, worker: WorkerRecord, private: PrivateJob, progress: ProgressSink, cancelled: Callable[[], bool]
) -> None:
    """Give the worker's cache the job's frames it lacks, in batches."""
    refs = [FrameRef(sha, size) for sha, (size, _) in private.frames.items()]
    lacking: list[FrameLack] = ray.get(worker.handle.missing.remote(refs))
    sent = 0
    batch: list[FramePiece] = []
    batch_bytes = 0
    for lack in lacking:
        if cancelled():
            raise JobCancelled("cancelled")
        with open(private.frames[lack.sha256][1], "rb") as handle:
            handle.seek(lack.held)
            data = handle.read()
        batch.append(FramePiece(lack.sha256, lack.size, lack.held, data))
        batch_bytes += len(data)
        sent += len(data)
        if batch_bytes >= SEND_BATCH_BYTES:
            ray.get(worker.handle.store.remote(batch))
            batch, batch_bytes = [], 0
    if batch:
        ray.get(worker.handle.store.remote(batch))
    message = (
        f"sent {len(lacking)} frames ({sent / 1e6:.1f} MB) to {worker.name}; "
        f"{len(refs) - len(lacking)} were in its cache"
    )
    log.info("job %s: %s", private.job_id, message)
    progress.log(message)
