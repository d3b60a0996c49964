"""Splitting a long job into segments that run side by side, and seeing them as one job again.

`plan_segments` cuts the frames; `SegmentProgress` tells the segments' progress as the job's (frames
counted across them, each stage told once); `commit_parts` moves every segment's staged frames into
place under one result.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional

import numpy as np
from voidlink.inference.job.control import ProgressSink
from voidlink.inference.job.prepare import PreparedJob
from voidlink.inference.job.run import commit_segments
from voidlink.protos import pb

# A segment is at least this many times the frames it reads beyond each end: those are computed by
# two workers, so shorter segments would cost more than they gain.
SEGMENT_CONTEXTS = 4

Segment = tuple[int, int]


def plan_segments(first: int, last: int, workers: int, min_frames: int) -> list[Segment]:
    """The job's frames in up to `workers` contiguous segments of at least `min_frames` each, as
    even as frame counts allow; [] when the job is not worth splitting."""
    frames = last - first + 1
    count = min(workers, frames // min_frames) if min_frames > 0 else 0
    if count < 2:
        return []
    edges = [first + (i * frames) // count for i in range(count + 1)]
    return [(edges[i], edges[i + 1] - 1) for i in range(count)]


def run_key(job_id: str, segment: Optional[Segment]) -> str:
    """What a worker calls one run: the job, or one segment of it."""
    return job_id if segment is None else f"{job_id}@{segment[0]}-{segment[1]}"


class SegmentProgress:
    """The progress of a job's segments as the job's: frames counted across them, each stage told once."""

    def __init__(self, progress: ProgressSink, segments: list[Segment]) -> None:
        self.progress = progress
        self.segments = segments
        self.total = sum(last - first + 1 for first, last in segments)
        self.done = [0] * len(segments)
        self.stages: set[str] = set()
        self.lock = threading.Lock()

    def part(self, index: int) -> SegmentPart:
        return SegmentPart(self, index)


class SegmentPart:
    """One segment's ProgressSink."""

    def __init__(self, owner: SegmentProgress, index: int) -> None:
        self.owner = owner
        self.index = index
        first, last = owner.segments[index]
        self.label = f"frames {first}-{last}"

    def stage(self, name: str, message: str = "") -> None:
        owner = self.owner
        with owner.lock:
            if name in owner.stages:
                return
            owner.stages.add(name)
            owner.progress.stage(name, f"{message} ({len(owner.segments)} segments)" if message else message)

    def frame_written(self, frame: int, done: int, total: int, preview: Optional[np.ndarray]) -> None:
        owner = self.owner
        with owner.lock:  # held while telling, so the job's count only grows
            owner.done[self.index] = done
            owner.progress.frame_written(frame, sum(owner.done), owner.total, preview)

    def log(self, message: str) -> None:
        self.owner.progress.log(f"{self.label}: {message}")


def commit_parts(
    prepared: PreparedJob,
    job_id: str,
    parts: list[pb.JobResult],
    backend_name: str,
    progress: ProgressSink,
    started: float,
    cancelled: Callable[[], bool],
) -> pb.JobResult:
    """Every frame is staged in the daemon's staging folder: move them into place from here (a cancel
    that came first stops the job there; one that comes once the move has begun does not)."""
    progress.stage("commit", "moving the frames into place")
    metrics = dict(parts[0].metrics)  # the shot's analysis (coverage, crop) is the same in every segment
    metrics.update(
        frames=float(prepared.last - prepared.first + 1),
        seconds=time.monotonic() - started,
        nonfinite_frames=sum(part.metrics.get("nonfinite_frames", 0.0) for part in parts),
    )
    if len(parts) > 1:
        metrics["segments"] = float(len(parts))
    notes = [note for part in parts for note in part.notes]
    return commit_segments(prepared, job_id, parts[0].backend or backend_name, notes, metrics, cancelled)
