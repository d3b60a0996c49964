"""What the daemon and a pool worker say to each other through Ray: one frozen dataclass per message.

Every value crossing the link is one of these (or bytes of a protobuf message the contract owns:
the job's spec, its result, an error's detail), so both ends name the fields they read and a
change of shape breaks at the definition, not in a tuple index on the other side of the link.
The daemon and its workers run the same voidlink (see `voidlink serve --cluster`), so these
pickle by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Union

import numpy as np

# -- a run's progress: what a worker's recorder buffers and a poll hands back ---------------------


@dataclass(frozen=True)
class StageEvent:
    """The run entered a stage (`ProgressSink.stage`)."""

    name: str
    message: str = ""


@dataclass(frozen=True, eq=False)
class FrameEvent:
    """A frame was written (`ProgressSink.frame_written`).

    `files`: with private storage, the frame's staged files by kind ("output", "quadmask", ...),
    travelling back with the event that reports them; None when the worker wrote them in place."""

    frame: int
    done: int
    total: int
    preview: Optional[np.ndarray] = None
    files: Optional[dict[str, bytes]] = None


@dataclass(frozen=True)
class LogEvent:
    """A line for the job's log (`ProgressSink.log`)."""

    message: str


Event = Union[StageEvent, FrameEvent, LogEvent]


@dataclass(frozen=True)
class Poll:
    """The answer to a poll: the events since the last one, and whether the run is over."""

    events: tuple[Event, ...] = ()
    finished: bool = False


# -- a run: what the daemon asks for, and what comes back ----------------------------------------


@dataclass(frozen=True)
class RunRequest:
    """One run on a worker: the whole job, or the frames of `segment` only.

    `spec` is a serialised `pb.JobSpec`; with private storage it names its inputs by hash, and `done`
    lists the frames whose output the daemon holds already, which the worker skips."""

    job_id: str
    spec: bytes
    backend: str
    segment: Optional[tuple[int, int]] = None
    done: tuple[int, ...] = ()


RunState = Literal["succeeded", "cancelled", "failed", "internal"]


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended.

    succeeded: `result` is the serialised `pb.JobResult`; failed: `error` the serialised
    `pb.ErrorDetail` of the `VoidlinkError` it raised; internal: any other exception, as `message`
    and `trace`. `events` are those no poll took yet: the daemon replays them before the outcome."""

    worker: str
    pid: int
    state: RunState
    seconds: float
    loaded: tuple[str, ...]
    events: tuple[Event, ...] = ()
    result: bytes = b""
    error: bytes = b""
    message: str = ""
    trace: str = ""


# -- the worker itself -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Hello:
    """A worker's answer once it is up: who and where it is, and the backends it holds loaded."""

    name: str
    pid: int
    host: str
    loaded: tuple[str, ...] = ()


@dataclass(frozen=True)
class Availability:
    """Whether a backend can run on the worker, and why not."""

    available: bool
    reason: str = ""


@dataclass(frozen=True)
class WorkerStats:
    """What a worker says it did since it started."""

    name: str
    pid: int
    loaded: tuple[str, ...] = ()
    jobs: int = 0
    frames: int = 0
    cancelled: int = 0
    failed: int = 0


# -- private storage: input frames sent to a worker's cache ---------------------------------------


@dataclass(frozen=True)
class FrameRef:
    """An input frame by content: what the daemon asks a worker's cache about."""

    sha256: str
    size: int


@dataclass(frozen=True)
class FrameLack:
    """A frame the worker's cache lacks, and how many of its bytes it holds already (where sending resumes)."""

    sha256: str
    size: int
    held: int = 0


@dataclass(frozen=True)
class FramePiece:
    """Bytes of one input frame from `offset` on, for the worker's cache (checked when the frame is whole)."""

    sha256: str
    size: int
    offset: int
    data: bytes = field(repr=False)
