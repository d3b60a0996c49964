"""The pool's worker: a Ray actor that keeps its backends loaded and runs one job (or segment) per call.

It answers the daemon in the messages of `voidlink.inference.pool.messages` only. With shared
storage it reads the sources and writes the outputs at the job's paths, in the job's staging folder,
as the daemon would; with private storage its inputs arrive by hash into a frame cache of its own
and each finished frame's files travel back with the event that reports it.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from voidlink.inference.backends import BACKEND_NAMES, BackendRegistry
from voidlink.inference.backends.base import Cancelled
from voidlink.inference.job.prepare import prepare_job
from voidlink.inference.job.run import run_job
from voidlink.inference.job.staging import staged_files
from voidlink.inference.pool.messages import (
    Availability,
    Event,
    FrameEvent,
    FrameLack,
    FramePiece,
    FrameRef,
    Hello,
    LogEvent,
    Poll,
    RunOutcome,
    RunRequest,
    RunState,
    StageEvent,
    WorkerStats,
)
from voidlink.inference.pool.segments import run_key
from voidlink.inference.scheduler import backend_request
from voidlink.inference.transfer import FrameCache, Transfers
from voidlink.protos import pb, status

from voidlink.errors import JobCancelled, VoidlinkError

# Jobs a worker remembers as finished, so a late poll learns the job is over.
_FINISHED_MEMORY = 256
# Private storage: the disk a worker's frame cache may use.
WORKER_CACHE_BYTES = 50 * 1024**3
_WORKER_FOLDER = "voidlink-worker-"


class _Recorder:
    """A run's progress on a worker, buffered until the daemon polls it, and its cancel flag."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.changed = threading.Condition()
        self.cancel = threading.Event()
        self.frames = 0
        # Private storage: a frame's staged files, read to travel back with the event that reports it.
        self.attach: Optional[Callable[[int], dict[str, bytes]]] = None

    def _add(self, event: Event) -> None:
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    def stage(self, name: str, message: str = "") -> None:
        self._add(StageEvent(name, message))

    def frame_written(self, frame: int, done: int, total: int, preview: Optional[np.ndarray]) -> None:
        self.frames += 1
        files = self.attach(frame) if self.attach is not None else None
        self._add(FrameEvent(frame, done, total, preview, files))

    def log(self, message: str) -> None:
        self._add(LogEvent(message))

    def take(self, wait: float) -> tuple[Event, ...]:
        with self.changed:
            if not self.events and wait > 0:
                self.changed.wait(wait)
            events, self.events = self.events, []
        return tuple(events)


def _worker_folder() -> Path:
    """This worker process's folder in the node's temporary folder; those of workers that died (a
    killed actor cleans nothing up) are removed first."""
    base = Path(tempfile.gettempdir())
    for folder in base.glob(f"{_WORKER_FOLDER}*"):
        pid = folder.name[len(_WORKER_FOLDER) :]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
    root = base / f"{_WORKER_FOLDER}{os.getpid()}"
    root.mkdir(exist_ok=True)
    return root


def _alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would end the process there: keep every folder
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class PoolWorker:
    """One worker of the pool (a Ray actor): a backend registry kept loaded, and `run_job`.

    Its methods run on threads of their own (the actor is created with max_concurrency > 1), so
    the daemon polls progress and sets the cancel flag while `run` works."""

    def __init__(self, name: str, weights: Optional[str], cpus: int, storage: str = "shared") -> None:
        self.name = name
        self._transfers: Optional[Transfers] = None
        if storage == "private":  # frames arrive from the daemon into a cache of this worker's own
            root = _worker_folder()
            self._transfers = Transfers(root, FrameCache(root / "cache", WORKER_CACHE_BYTES), 1 << 62)
        self.registry = BackendRegistry(weights)
        self._lock = threading.Lock()
        self._jobs: dict[str, _Recorder] = {}
        self._finished: dict[str, None] = {}
        self._counts = {"jobs": 0, "frames": 0, "cancelled": 0, "failed": 0}
        if cpus > 0:
            # A CPU slot is one share of the node: the libraries' own thread pools keep to it, so
            # actors side by side do not fight over the same cores.
            import cv2
            import OpenImageIO as oiio

            cv2.setNumThreads(cpus)
            oiio.attribute("threads", cpus)

    def hello(self) -> Hello:
        return Hello(self.name, os.getpid(), socket.gethostname(), self.loaded())

    def loaded(self) -> tuple[str, ...]:
        return tuple(name for name in BACKEND_NAMES if self.registry.is_loaded(name))

    def availability(self, backend: str) -> Availability:
        state = self.registry.availability(backend)
        return Availability(state.available, state.reason)

    def stats(self) -> WorkerStats:
        with self._lock:
            return WorkerStats(self.name, os.getpid(), self.loaded(), **self._counts)

    def missing(self, refs: list[FrameRef]) -> list[FrameLack]:
        """Of these frames, those this worker's cache lacks, with the bytes of each it holds already."""
        assert self._transfers is not None, "missing() is for private storage"
        out = []
        for ref in refs:
            present, stored = self._transfers.cache.status(ref.sha256)
            if not present:
                out.append(FrameLack(ref.sha256, ref.size, stored))
        return out

    def store(self, pieces: list[FramePiece]) -> int:
        """Write the pieces into this worker's cache; each frame is verified when whole."""
        assert self._transfers is not None, "store() is for private storage"
        for piece in pieces:
            chunk = pb.FrameChunk(sha256=piece.sha256, size=piece.size, offset=piece.offset)
            self._transfers.cache.write(chunk, piece.data)
        return len(pieces)

    def _recorder(self, key: str) -> Optional[_Recorder]:
        with self._lock:
            if key in self._finished:
                return None
            return self._jobs.setdefault(key, _Recorder())

    def poll(self, key: str, cancel: bool, wait: float) -> Poll:
        """Events of the run `key` since the last poll (waiting up to `wait` for one), and whether it is over."""
        recorder = self._recorder(key)
        if recorder is None:
            return Poll(finished=True)
        if cancel:
            recorder.cancel.set()
        return Poll(recorder.take(wait))

    def run(self, request: RunRequest) -> RunOutcome:
        """Run the job, or stage only the frames of `request.segment` (polled as `run_key(job_id, segment)`).

        Private storage: the spec names its inputs by hash (`uploaded_frames`, in this worker's cache)
        and `done` the frames the daemon holds; the frames are rendered in a folder of this worker's
        own, sent back with the events, and the folder is removed at the end."""
        job_id, backend_name, segment = request.job_id, request.backend, request.segment
        key = run_key(job_id, segment)
        with self._lock:
            self._finished.pop(key, None)
        recorder = self._recorder(key)
        assert recorder is not None
        state: RunState
        result_bytes = error_bytes = b""
        message = trace = ""
        started = time.monotonic()
        local: Optional[pb.JobSpec] = None
        try:
            spec = pb.JobSpec.FromString(request.spec)
            if self._transfers is not None:
                local = spec = self._transfers.materialise(spec)
            prepared = prepare_job(spec)
            if local is not None:
                segment = segment or (prepared.first, prepared.last)  # the daemon moves the frames into place
                recorder.attach = lambda frame: {
                    kind: path.read_bytes() for kind, path in staged_files(prepared, job_id, frame).items()
                }
            was_loaded = self.registry.is_loaded(backend_name)
            recorder.stage("load", f"loading the {backend_name} backend" + (" (resident)" if was_loaded else ""))
            backend = self.registry.get(backend_name)
            cancelled = recorder.cancel.is_set
            backend_call = backend_request(spec, prepared.first, prepared.last, cancelled, recorder.log)
            result = run_job(
                prepared,
                backend,
                job_id=job_id,
                progress=recorder,
                cancelled=cancelled,
                request=backend_call,
                segment=tuple(segment) if segment is not None else None,
                done=request.done,
            )
            state, result_bytes, counted = "succeeded", result.SerializeToString(), "jobs"
        except (JobCancelled, Cancelled):
            state, counted = "cancelled", "cancelled"
        except VoidlinkError as error:
            state, error_bytes, counted = "failed", status.detail_of(error).SerializeToString(), "failed"
        except Exception as error:  # reported to the daemon like a local job's unexpected error
            state, counted = "internal", "failed"
            message, trace = f"{type(error).__name__}: {error}", traceback.format_exc()
        finally:
            if local is not None and self._transfers is not None:
                self._transfers.discard_inputs(local)
                folder = self._transfers.result_folder(local)
                if folder is not None:
                    shutil.rmtree(folder, ignore_errors=True)
        seconds = time.monotonic() - started
        loaded = self.loaded()
        with self._lock, recorder.changed:
            # Events not polled yet go back with the outcome: the daemon replays them before it.
            events, recorder.events = tuple(recorder.events), []
            recorder.changed.notify_all()  # a poll waiting for events learns at once that the job is over
            self._jobs.pop(key, None)
            self._finished[key] = None
            while len(self._finished) > _FINISHED_MEMORY:
                self._finished.pop(next(iter(self._finished)))
            self._counts[counted] += 1
            self._counts["frames"] += recorder.frames
        return RunOutcome(
            self.name, os.getpid(), state, seconds, loaded, events, result_bytes, error_bytes, message, trace
        )
