"""Following one run on a worker: polling its events, replaying them into the daemon's progress (and,
with private storage, staging the frames they carry), and turning its outcome into the job's result
or error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any, Callable, Optional

from voidlink.inference.job.control import ProgressSink
from voidlink.inference.pool.messages import Event, FrameEvent, LogEvent, Poll, RunOutcome, StageEvent
from voidlink.inference.pool.placement import WorkerRecord
from voidlink.inference.pool.private import PrivateJob
from voidlink.protos import pb, status

from voidlink.errors import JobCancelled

log = logging.getLogger("voidlink.cluster")

# How long one poll of a worker waits for events: the latency of progress and of a cancel.
POLL_SECONDS = 0.1
# A worker that cannot be reached for this long is taken for dead (and killed before its job moves).
UNREACHABLE_SECONDS = 30.0


def replay(events: Iterable[Event], progress: ProgressSink, private: Optional[PrivateJob] = None) -> None:
    """A worker's events told to the daemon's progress, in order; a frame's files staged before it is told."""
    for event in events:
        if isinstance(event, FrameEvent):
            if private is not None and event.files:
                private.receive(event.frame, event.files)
            progress.frame_written(event.frame, event.done, event.total, event.preview)
        elif isinstance(event, StageEvent):
            progress.stage(event.name, event.message)
        elif isinstance(event, LogEvent):
            progress.log(event.message)
        else:
            raise TypeError(f"not an event of the pool: {event!r}")


def follow(
    ray: Any,
    worker: WorkerRecord,
    key: str,
    running: Any,
    progress: ProgressSink,
    cancelled: Callable[[], bool],
    private: Optional[PrivateJob] = None,
) -> RunOutcome:
    """Poll the run `key` (its Ray object ref `running`) until it ends, replaying its events and passing
    the daemon's cancel on; its outcome (whose own events the caller replays).

    Ray's errors pass through: a worker unreachable for longer than UNREACHABLE_SECONDS, or dead."""
    unreachable_since: Optional[float] = None
    while True:
        try:
            poll: Poll = ray.get(worker.handle.poll.remote(key, cancelled(), POLL_SECONDS))
        except ray.exceptions.ActorUnavailableError:
            # Unreachable is not dead: the worker may still be writing, so wait before giving up on it.
            now = time.monotonic()
            unreachable_since = unreachable_since or now
            if now - unreachable_since > UNREACHABLE_SECONDS:
                raise
            time.sleep(POLL_SECONDS)
            continue
        unreachable_since = None
        replay(poll.events, progress, private)
        done, _ = ray.wait([running], timeout=0)
        if done or poll.finished:
            return ray.get(running)


def result_of(outcome: RunOutcome, worker: WorkerRecord, key: str, progress: ProgressSink) -> pb.JobResult:
    """The run's result, or the error it ended with raised as the daemon's own."""
    if outcome.state == "succeeded":
        return pb.JobResult.FromString(outcome.result)
    if outcome.state == "cancelled":
        log.info("job %s: cancelled on %s", key, worker.name)
        raise JobCancelled("cancelled")
    if outcome.state == "failed":
        raise status.error_of(pb.ErrorDetail.FromString(outcome.error))
    progress.log(outcome.trace)
    raise RuntimeError(f"on worker {worker.name}: {outcome.message}")
