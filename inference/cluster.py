"""A Ray pool behind the daemon: `voidlink serve --cluster ray://HOST:PORT | auto`.

The daemon stays the front end (gRPC, job store, events, cancel, resume); `RayExecutor` hands each
job the scheduler claims to a Ray actor (`PoolWorker`), which keeps its backends loaded between
jobs. One CPU actor per `--cluster-workers` slot runs the classical backend; one actor per GPU of
the cluster runs VOID (and classical when no CPU actor is free).

Workers share storage with the daemon: they read the sources and write the outputs at the paths
of the job, in the job's staging folder, exactly as the daemon would. A worker that dies mid-job
leaves its finished frames staged (each written to a temporary name, then renamed); the job goes
to another worker, whose `run_job` renders only the frames not staged yet.

With `--cluster-storage private` the workers see none of the daemon's paths: the daemon hashes the
job's input frames and sends each worker the ones its own frame cache lacks (a re-run or another
segment of the same shot sends nothing twice), the worker renders from its cache into a folder of
its own, and every finished frame comes back with the poll that reports it, staged by the daemon
as it arrives; the daemon then moves the frames into place. A worker that dies mid-job loses only
the frames not polled yet.

A long classical job is split into segments (`plan_segments`) that run on several workers at once;
each stages its own frames, fed the backend's temporal context beyond its ends so every frame comes
out as one uninterrupted run makes it, and the daemon then moves them into place.
VOID jobs are not split: a VOID segment's frames depend on all of its frames (its
`temporal_context` is unbounded), so a split would change the result.

Ray is imported only here, and this module only when the daemon is told to front a cluster.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
from voidlink.inference import pipeline
from voidlink.inference.backends import BACKEND_NAMES, BackendRegistry
from voidlink.inference.backends.base import Cancelled
from voidlink.inference.scheduler import backend_request
from voidlink.inference.transfer import FrameCache, Transfers
from voidlink.protos import pb, status
from voidlink.protos.wire import file_sha256

from voidlink.errors import InvalidInput, JobCancelled, Unavailable, VoidlinkError

log = logging.getLogger("voidlink.cluster")

# How long one poll of a worker waits for events: the latency of progress and of a cancel.
POLL_SECONDS = 0.1
# A worker that cannot be reached for this long is taken for dead (and killed before its job moves).
UNREACHABLE_SECONDS = 30.0
# A job whose workers keep dying is failed after this many of them, rather than tried forever.
MAX_ATTEMPTS = 3
# Jobs a worker remembers as finished, so a late poll learns the job is over.
_FINISHED_MEMORY = 256
# A segment is at least this many times the frames it reads beyond each end: those are computed by
# two workers, so shorter segments would cost more than they gain.
SEGMENT_CONTEXTS = 4
STORAGE_MODES = ("shared", "private")
# Private storage: the disk a worker's frame cache may use, and the bytes sent to a worker per call.
WORKER_CACHE_BYTES = 50 * 1024**3
SEND_BATCH_BYTES = 64 * 1024**2


def parse_cluster(value: str) -> str:
    """`auto` or `ray://HOST:PORT`; raises naming the flag otherwise."""
    value = (value or "").strip()
    if value == "auto":
        return value
    if value.startswith("ray://"):
        host, _, port = value[len("ray://") :].rpartition(":")
        if host and port.isdigit():
            return value
    raise InvalidInput(
        f"--cluster: '{value}' is neither 'auto' (a local Ray started by the daemon) nor ray://HOST:PORT "
        "(the Ray client address of a running cluster, port 10001 by default)",
        reason="BAD_CLUSTER_ADDRESS",
        field="cluster",
    )


def plan_segments(first: int, last: int, workers: int, min_frames: int) -> list[tuple[int, int]]:
    """The job's frames in up to `workers` contiguous segments of at least `min_frames` each, as
    even as frame counts allow; [] when the job is not worth splitting."""
    frames = last - first + 1
    count = min(workers, frames // min_frames) if min_frames > 0 else 0
    if count < 2:
        return []
    edges = [first + (i * frames) // count for i in range(count + 1)]
    return [(edges[i], edges[i + 1] - 1) for i in range(count)]


def run_key(job_id: str, segment: Optional[tuple[int, int]]) -> str:
    """What a worker calls one run: the job, or one segment of it."""
    return job_id if segment is None else f"{job_id}@{segment[0]}-{segment[1]}"


def import_ray():
    try:
        import ray
    except ImportError as error:
        raise Unavailable(
            "--cluster needs Ray, which is not installed here: pip install 'voidlink[cluster]' "
            "(the same voidlink and Ray versions on every node of the cluster)",
            reason="RAY_NOT_INSTALLED",
            field="cluster",
        ) from error
    return ray


# -- the worker: runs inside a Ray actor ---------------------------------------------------------


class _Recorder:
    """A job's progress on a worker, buffered until the daemon polls it, and its cancel flag."""

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.changed = threading.Condition()
        self.cancel = threading.Event()
        self.frames = 0
        # Private storage: a frame's staged files, read to travel back with the event that reports it.
        self.attach: Optional[Callable[[int], dict[str, bytes]]] = None

    def _add(self, event: tuple) -> None:
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    def stage(self, name: str, message: str = "") -> None:
        self._add(("stage", name, message))

    def frame_written(self, frame: int, done: int, total: int, preview: Optional[np.ndarray]) -> None:
        self.frames += 1
        files = self.attach(frame) if self.attach is not None else None
        self._add(("frame", frame, done, total, preview, files))

    def log(self, message: str) -> None:
        self._add(("log", message))

    def take(self, wait: float) -> list[tuple]:
        with self.changed:
            if not self.events and wait > 0:
                self.changed.wait(wait)
            events, self.events = self.events, []
        return events


_WORKER_FOLDER = "voidlink-worker-"


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

    def hello(self) -> dict:
        return {"name": self.name, "pid": os.getpid(), "host": socket.gethostname(), "loaded": self.loaded()}

    def loaded(self) -> list[str]:
        return [name for name in BACKEND_NAMES if self.registry.is_loaded(name)]

    def availability(self, backend: str) -> tuple[bool, str]:
        state = self.registry.availability(backend)
        return state.available, state.reason

    def stats(self) -> dict:
        with self._lock:
            return {**self._counts, "name": self.name, "pid": os.getpid(), "loaded": self.loaded()}

    def missing(self, refs: list[tuple[str, int]]) -> list[tuple[str, int, int]]:
        """Of these (sha256, size) frames, those this worker's cache lacks: (sha256, size, bytes it holds)."""
        assert self._transfers is not None, "missing() is for private storage"
        out = []
        for sha, size in refs:
            present, stored = self._transfers.cache.status(sha)
            if not present:
                out.append((sha, size, stored))
        return out

    def store(self, frames: list[tuple[str, int, int, bytes]]) -> int:
        """Write (sha256, size, offset, bytes) into this worker's cache; each frame is verified when whole."""
        assert self._transfers is not None, "store() is for private storage"
        for sha, size, offset, data in frames:
            self._transfers.cache.write(pb.FrameChunk(sha256=sha, size=size, offset=offset), data)
        return len(frames)

    def _recorder(self, job_id: str) -> Optional[_Recorder]:
        with self._lock:
            if job_id in self._finished:
                return None
            return self._jobs.setdefault(job_id, _Recorder())

    def poll(self, job_id: str, cancel: bool, wait: float) -> tuple[list[tuple], bool]:
        """Events since the last poll (waiting up to `wait` for one), and whether the job is over."""
        recorder = self._recorder(job_id)
        if recorder is None:
            return [], True
        if cancel:
            recorder.cancel.set()
        return recorder.take(wait), False

    def run(
        self,
        job_id: str,
        spec_bytes: bytes,
        backend_name: str,
        segment: Optional[tuple[int, int]] = None,
        done: Optional[list[int]] = None,
    ) -> dict:
        """Run the job, or stage only the frames of `segment` (polled as `run_key(job_id, segment)`).

        Private storage: the spec names its inputs by hash (`uploaded_frames`, in this worker's cache)
        and `done` the frames the daemon holds; the frames are rendered in a folder of this worker's
        own, sent back with the events, and the folder is removed at the end."""
        key = run_key(job_id, segment)
        with self._lock:
            self._finished.pop(key, None)
        recorder = self._recorder(key)
        assert recorder is not None
        outcome: dict[str, Any] = {"worker": self.name, "pid": os.getpid()}
        started = time.monotonic()
        local: Optional[pb.JobSpec] = None
        try:
            spec = pb.JobSpec.FromString(spec_bytes)
            if self._transfers is not None:
                local = spec = self._transfers.materialise(spec)
            prepared = pipeline.prepare_job(spec)
            if local is not None:
                segment = segment or (prepared.first, prepared.last)  # the daemon moves the frames into place
                recorder.attach = lambda frame: {
                    kind: path.read_bytes() for kind, path in pipeline.staged_files(prepared, job_id, frame).items()
                }
            was_loaded = self.registry.is_loaded(backend_name)
            recorder.stage("load", f"loading the {backend_name} backend" + (" (resident)" if was_loaded else ""))
            backend = self.registry.get(backend_name)
            cancelled = recorder.cancel.is_set
            request = backend_request(spec, prepared.first, prepared.last, cancelled, recorder.log)
            result = pipeline.run_job(
                prepared,
                backend,
                job_id=job_id,
                progress=recorder,
                cancelled=cancelled,
                request=request,
                segment=tuple(segment) if segment is not None else None,
                done=done or (),
            )
            outcome.update(state="succeeded", result=result.SerializeToString())
            counted = "jobs"
        except (JobCancelled, Cancelled):
            outcome["state"] = "cancelled"
            counted = "cancelled"
        except VoidlinkError as error:
            outcome.update(state="failed", error=status.detail_of(error).SerializeToString())
            counted = "failed"
        except Exception as error:  # reported to the daemon like a local job's unexpected error
            outcome.update(state="internal", message=f"{type(error).__name__}: {error}", trace=traceback.format_exc())
            counted = "failed"
        finally:
            if local is not None and self._transfers is not None:
                self._transfers.discard_inputs(local)
                folder = self._transfers.result_folder(local)
                if folder is not None:
                    shutil.rmtree(folder, ignore_errors=True)
        outcome["seconds"] = time.monotonic() - started
        outcome["loaded"] = self.loaded()
        with self._lock, recorder.changed:
            # Events not polled yet go back with the outcome: the daemon replays them before it.
            outcome["events"], recorder.events = recorder.events, []
            recorder.changed.notify_all()  # a poll waiting for events learns at once that the job is over
            self._jobs.pop(key, None)
            self._finished[key] = None
            while len(self._finished) > _FINISHED_MEMORY:
                self._finished.pop(next(iter(self._finished)))
            self._counts[counted] += 1
            self._counts["frames"] += recorder.frames
        return outcome


# -- the daemon's side ---------------------------------------------------------------------------


class WorkerLost(Exception):
    """The worker running a job died (its process, or its node)."""


@dataclass
class WorkerRecord:
    """The daemon's view of one worker of the pool."""

    name: str
    handle: Any
    gpu: bool
    state: str = "starting"  # starting | idle | busy | lost
    pid: int = 0
    host: str = ""
    loaded: set = field(default_factory=set)
    job_id: str = ""


def place(workers: list[WorkerRecord], backend_name: str) -> Optional[WorkerRecord]:
    """The idle worker a job on `backend_name` goes to, None when none is idle.

    For classical, a CPU worker before a GPU one, so the GPUs stay free for VOID jobs; then a worker
    with the backend already loaded (VOID takes minutes to load) before one that would load it."""
    idle = [w for w in workers if w.state == "idle" and (w.gpu or backend_name != "void")]
    if not idle:
        return None
    return min(idle, key=lambda w: (w.gpu and backend_name != "void", backend_name not in w.loaded))


class RayExecutor:
    """The scheduler's executor for a Ray pool: places jobs on actors (see `place`), relays their
    progress to the daemon and the daemon's cancel to them, and moves the job of a worker that died."""

    def __init__(
        self,
        address: str,
        cpu_workers: int = 2,
        weights: Optional[str] = None,
        segment_frames: Optional[int] = None,
        storage: str = "shared",
    ) -> None:
        """`segment_frames`: the shortest segment a classical job is split into (None: SEGMENT_CONTEXTS
        times the backend's temporal context; 0: jobs are never split). `storage`: "shared" when the
        workers see the job's paths, "private" when frames travel to and from them through Ray."""
        self.address = parse_cluster(address)
        if storage not in STORAGE_MODES:
            raise InvalidInput(
                f"--cluster-storage: '{storage}' is neither 'shared' nor 'private'",
                reason="BAD_STORAGE_MODE",
                field="cluster_storage",
            )
        self.storage = storage
        self._hashes: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) → sha256, for private storage
        if cpu_workers < 0:
            raise InvalidInput(
                f"--cluster-workers: {cpu_workers} is negative", reason="BAD_WORKER_COUNT", field="cluster_workers"
            )
        if segment_frames is not None and segment_frames < 0:
            raise InvalidInput(
                f"--cluster-segment: {segment_frames} is negative (0 turns splitting off)",
                reason="BAD_SEGMENT_FRAMES",
                field="cluster_segment",
            )
        if segment_frames is None:
            from voidlink.inference.backends.classical.backend import ClassicalBackend

            segment_frames = SEGMENT_CONTEXTS * ClassicalBackend.temporal_context
        self.segment_frames = segment_frames
        self.cpu_workers = cpu_workers
        self.weights = weights
        self.ray = import_ray()
        self._started_ray = False
        self._cond = threading.Condition()
        self._workers: list[WorkerRecord] = []
        self._prefix = f"voidlink-{uuid.uuid4().hex[:6]}"
        self._count = 0
        self._closed = False
        self._void: Optional[tuple[bool, str]] = None
        self.slots = 0

    # -- pool ------------------------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> list[dict]:
        """Connect to (or start) Ray and wait for every worker to be ready; returns their hello."""
        ray = self.ray
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if self.address == "auto":
                options["num_cpus"] = max(self.cpu_workers, 1)
                self._started_ray = True
                # "local": a Ray of this daemon's own, never a cluster that happens to run on this machine.
                ray.init(address="local", **options)
            else:
                try:
                    ray.init(address=self.address, **options)
                except Exception as error:
                    raise Unavailable(
                        f"--cluster: cannot connect to the Ray cluster at {self.address}: {error}",
                        reason="CLUSTER_UNREACHABLE",
                        field="cluster",
                    ) from error
        gpus = int(ray.cluster_resources().get("GPU", 0))
        for _ in range(self.cpu_workers):
            self._spawn(gpu=False)
        for _ in range(gpus):
            self._spawn(gpu=True)
        if not self._workers:
            raise Unavailable(
                "--cluster: the pool has no worker (--cluster-workers 0 and no GPU in the cluster)",
                reason="EMPTY_POOL",
                field="cluster_workers",
            )
        self.slots = len(self._workers)
        deadline = time.monotonic() + timeout
        for worker in list(self._workers):
            self._await_ready(worker, max(1.0, deadline - time.monotonic()))
            if worker.state != "idle":
                cpus = int(ray.cluster_resources().get("CPU", 0))
                raise Unavailable(
                    f"--cluster: worker {worker.name} did not start within {timeout:.0f} s; is voidlink installed "
                    f"on the cluster's nodes (the same version as this daemon), and does the cluster have the "
                    f"CPUs asked for ({self.cpu_workers} CPU workers, {cpus} CPUs in the cluster)?",
                    reason="WORKER_DID_NOT_START",
                    field="cluster",
                )
        return [self._describe(w) for w in self._workers]

    def _spawn(self, gpu: bool) -> WorkerRecord:
        actor_class = self.ray.remote(PoolWorker)
        name = f"{self._prefix}-{'gpu' if gpu else 'cpu'}-{self._count}"
        self._count += 1
        resources = {"num_cpus": 0, "num_gpus": 1} if gpu else {"num_cpus": 1}
        handle = actor_class.options(name=name, max_concurrency=4, **resources).remote(
            name, self.weights, 0 if gpu else 1, self.storage
        )
        worker = WorkerRecord(name, handle, gpu)
        with self._cond:
            self._workers.append(worker)
        return worker

    def _await_ready(self, worker: WorkerRecord, timeout: float) -> None:
        try:
            hello = self.ray.get(worker.handle.hello.remote(), timeout=timeout)
        except Exception:
            log.exception("worker %s did not start", worker.name)
            with self._cond:
                worker.state = "lost"
            return
        with self._cond:
            worker.pid, worker.host, worker.loaded = hello["pid"], hello["host"], set(hello["loaded"])
            if worker.state == "starting":
                worker.state = "idle"
            self._cond.notify_all()
        log.info("worker %s ready: pid %d on %s", worker.name, worker.pid, worker.host)

    def _replace(self, lost: WorkerRecord) -> None:
        """Drop a dead worker and start another in its place, so the pool keeps its size."""
        with self._cond:
            lost.state = "lost"
            if lost in self._workers:
                self._workers.remove(lost)
            if self._closed:
                return
        try:
            self.ray.kill(lost.handle, no_restart=True)
        except Exception:  # already gone with its node
            pass
        worker = self._spawn(lost.gpu)
        threading.Thread(
            target=self._await_ready, args=(worker, 120.0), name=f"voidlink-start-{worker.name}", daemon=True
        ).start()

    def workers(self) -> list[dict]:
        """Each worker's name, pid, host, state and resident backends, as the daemon last saw them."""
        with self._cond:
            return [self._describe(w) for w in self._workers]

    def worker_stats(self) -> list[dict]:
        """What each live worker says it did: jobs, frames, cancelled and failed jobs."""
        with self._cond:
            handles = [w.handle for w in self._workers if w.state in ("idle", "busy")]
        return self.ray.get([h.stats.remote() for h in handles], timeout=30)

    @staticmethod
    def _describe(worker: WorkerRecord) -> dict:
        return {
            "name": worker.name,
            "pid": worker.pid,
            "host": worker.host,
            "gpu": worker.gpu,
            "state": worker.state,
            "loaded": sorted(worker.loaded),
            "job_id": worker.job_id,
        }

    def close(self) -> None:
        with self._cond:
            self._closed = True
            workers, self._workers = self._workers, []
            self._cond.notify_all()
        for worker in workers:
            try:
                self.ray.kill(worker.handle, no_restart=True)
            except Exception:
                pass
        if self._started_ray and self.ray.is_initialized():
            self.ray.shutdown()

    # -- placement ---------------------------------------------------------------------------

    def resolve(self, requested: str) -> str:
        requested = (requested or "auto").strip().lower()
        if requested not in ("auto", *BACKEND_NAMES):
            raise InvalidInput(
                f"unknown backend '{requested}' (choose auto, {', '.join(BACKEND_NAMES)})",
                reason="UNKNOWN_BACKEND",
                field="spec.params.backend",
            )
        if requested == "classical":
            return requested
        available, reason = self._void_availability()
        if available:
            return "void"
        if requested == "void":
            raise Unavailable(reason, reason="BACKEND_UNAVAILABLE", field="spec.params.backend")
        return "classical"

    def _void_availability(self) -> tuple[bool, str]:
        """Whether the pool's GPU workers can run VOID (asked once: libraries, CUDA and weights on a worker)."""
        if self._void is None:
            with self._cond:
                gpu_workers = [w for w in self._workers if w.gpu]
            if gpu_workers:
                self._void = tuple(self.ray.get(gpu_workers[0].handle.availability.remote("void"), timeout=60))
            else:
                self._void = (False, "void: the pool has no GPU worker")
        return self._void

    def _acquire(self, backend_name: str, cancelled: Callable[[], bool]) -> WorkerRecord:
        with self._cond:
            while True:
                if cancelled():
                    raise JobCancelled("cancelled while waiting for a worker")
                if self._closed:
                    raise JobCancelled("the pool is closing")
                able = [w for w in self._workers if w.gpu or backend_name != "void"]
                if not able:
                    raise Unavailable(
                        f"no worker of the pool can run the {backend_name} backend",
                        reason="BACKEND_UNAVAILABLE",
                        field="spec.params.backend",
                    )
                worker = place(able, backend_name)
                if worker is not None:
                    worker.state = "busy"
                    return worker
                self._cond.wait(POLL_SECONDS)

    def _release(self, worker: WorkerRecord) -> None:
        with self._cond:
            worker.job_id = ""
            if worker.state == "busy":
                worker.state = "idle"
            self._cond.notify_all()

    # -- running a job ---------------------------------------------------------------------

    def execute(
        self,
        job: pb.Job,
        prepared: pipeline.PreparedJob,
        backend_name: str,
        progress: pipeline.ProgressSink,
        cancelled: Callable[[], bool],
    ) -> pb.JobResult:
        # The daemon's own prepared job checked the paths (and the roots); the worker prepares its own.
        prepared.close()
        started = time.monotonic()
        private = self._private(job, prepared) if self.storage == "private" else None
        spec_bytes = (private.spec if private is not None else job.spec).SerializeToString()
        segments = self.segments(prepared.first, prepared.last, backend_name)
        if not segments:
            part = self._run(job.id, spec_bytes, backend_name, progress, cancelled, None, private)
            if private is None:
                return part  # the worker moved the frames into place itself
            return self._commit(prepared, job.id, [part], backend_name, progress, started, cancelled)
        progress.log(
            f"{len(segments)} segments run side by side: " + ", ".join(f"{first}-{last}" for first, last in segments)
        )
        parts = self._run_segments(job.id, spec_bytes, backend_name, segments, progress, cancelled, private)
        return self._commit(prepared, job.id, parts, backend_name, progress, started, cancelled)

    def _commit(
        self,
        prepared: pipeline.PreparedJob,
        job_id: str,
        parts: list[pb.JobResult],
        backend_name: str,
        progress: pipeline.ProgressSink,
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
        return pipeline.commit_segments(prepared, job_id, parts[0].backend or backend_name, notes, metrics, cancelled)

    # -- private storage ---------------------------------------------------------------------

    def _private(self, job: pb.Job, prepared: pipeline.PreparedJob) -> _Private:
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
                sha, size = self._hash(path)
                target.uploaded_frames.add(sha256=sha, size=size, frame=frame)
                frames.setdefault(sha, (size, path))
        spec.output.stream_back = True
        return _Private(spec, prepared, job.id, frames)

    def _hash(self, path: str) -> tuple[str, int]:
        stat = os.stat(path)
        key = (path, stat.st_size, stat.st_mtime_ns)
        sha = self._hashes.get(key)
        if sha is None:
            sha = self._hashes[key] = file_sha256(path)
            while len(self._hashes) > 100_000:
                self._hashes.pop(next(iter(self._hashes)))
        return sha, stat.st_size

    def _send(
        self, worker: WorkerRecord, private: _Private, progress: pipeline.ProgressSink, cancelled: Callable[[], bool]
    ) -> None:
        """Give the worker's cache the job's frames it lacks, in batches."""
        ray = self.ray
        refs = [(sha, size) for sha, (size, _) in private.frames.items()]
        lacking = ray.get(worker.handle.missing.remote(refs))
        sent = 0
        batch: list[tuple[str, int, int, bytes]] = []
        batch_bytes = 0
        for sha, size, offset in lacking:
            if cancelled():
                raise JobCancelled("cancelled")
            with open(private.frames[sha][1], "rb") as handle:
                handle.seek(offset)
                data = handle.read()
            batch.append((sha, size, offset, data))
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

    def segments(self, first: int, last: int, backend_name: str) -> list[tuple[int, int]]:
        """How a job on `backend_name` is split over the pool's workers ([]: it runs whole)."""
        if backend_name == "void":
            return []
        with self._cond:
            able = sum(1 for w in self._workers if not w.gpu) or len(self._workers)
        return plan_segments(first, last, able, self.segment_frames)

    def _run_segments(
        self,
        job_id: str,
        spec_bytes: bytes,
        backend_name: str,
        segments: list[tuple[int, int]],
        progress: pipeline.ProgressSink,
        cancelled: Callable[[], bool],
        private: Optional[_Private] = None,
    ) -> list[pb.JobResult]:
        """Run every segment on a worker of its own, at once; the first failure stops the others."""
        relay = _SegmentProgress(progress, segments)
        stop = threading.Event()
        failures: list[BaseException] = []
        results: list[Optional[pb.JobResult]] = [None] * len(segments)

        def one(index: int, segment: tuple[int, int]) -> None:
            try:
                results[index] = self._run(
                    job_id,
                    spec_bytes,
                    backend_name,
                    relay.part(index),
                    lambda: cancelled() or stop.is_set(),
                    segment,
                    private,
                )
            except BaseException as error:
                failures.append(error)
                stop.set()

        threads = [
            threading.Thread(target=one, args=(i, s), name=f"voidlink-{run_key(job_id, s)}", daemon=True)
            for i, s in enumerate(segments)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            # The segments stopped because another failed end as cancelled: the failure is the job's.
            raise next((f for f in failures if not isinstance(f, JobCancelled)), failures[0])
        return [result for result in results if result is not None]

    def _run(
        self,
        job_id: str,
        spec_bytes: bytes,
        backend_name: str,
        progress: pipeline.ProgressSink,
        cancelled: Callable[[], bool],
        segment: Optional[tuple[int, int]],
        private: Optional[_Private] = None,
    ) -> pb.JobResult:
        """The job (or one segment) on a worker; on another when that one dies, up to MAX_ATTEMPTS."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            worker = self._acquire(backend_name, cancelled)
            try:
                return self._run_on(worker, job_id, spec_bytes, backend_name, progress, cancelled, segment, private)
            except WorkerLost as lost:
                message = f"worker {worker.name} was lost ({lost}); its unfinished frames go to another worker"
                log.warning("job %s: %s", run_key(job_id, segment), message)
                progress.log(message)
                self._replace(worker)
                if attempt == MAX_ATTEMPTS:
                    raise VoidlinkError(
                        f"{MAX_ATTEMPTS} workers of the pool died in turn running this job (the last: "
                        f"{worker.name} on {worker.host or 'an unknown host'}); see the Ray logs of those workers",
                        reason="WORKERS_LOST",
                    ) from lost
            finally:
                self._release(worker)
        raise AssertionError("unreachable")

    def _run_on(
        self,
        worker: WorkerRecord,
        job_id: str,
        spec_bytes: bytes,
        backend_name: str,
        progress: pipeline.ProgressSink,
        cancelled: Callable[[], bool],
        segment: Optional[tuple[int, int]] = None,
        private: Optional[_Private] = None,
    ) -> pb.JobResult:
        ray = self.ray
        worker.job_id = job_id
        running = None
        key = run_key(job_id, segment)
        if segment is None:
            log.info("job %s runs on %s (pid %d on %s)", job_id, worker.name, worker.pid, worker.host)
        else:
            log.info("job %s frames %d-%d run on %s (pid %d on %s)", job_id, *segment, worker.name, worker.pid,
                     worker.host)  # fmt: skip
        try:
            if private is None:
                running = worker.handle.run.remote(job_id, spec_bytes, backend_name, segment)
            else:
                self._send(worker, private, progress, cancelled)
                running = worker.handle.run.remote(job_id, spec_bytes, backend_name, segment, private.done(segment))
            unreachable_since: Optional[float] = None
            while True:
                try:
                    events, finished = ray.get(worker.handle.poll.remote(key, cancelled(), POLL_SECONDS))
                except ray.exceptions.ActorUnavailableError:
                    # Unreachable is not dead: the worker may still be writing, so wait before giving up on it.
                    now = time.monotonic()
                    unreachable_since = unreachable_since or now
                    if now - unreachable_since > UNREACHABLE_SECONDS:
                        raise
                    time.sleep(POLL_SECONDS)
                    continue
                unreachable_since = None
                _replay(events, progress, private)
                done, _ = ray.wait([running], timeout=0)
                if done or finished:
                    outcome = ray.get(running)
                    break
        except ray.exceptions.RayActorError as error:
            raise WorkerLost(type(error).__name__) from error
        except BaseException:
            # The relay broke, not the worker: its run must end before it is given another job.
            self._stop_run(worker, key, running)
            raise
        _replay(outcome["events"], progress, private)
        with self._cond:
            worker.loaded = set(outcome["loaded"])
        state = outcome["state"]
        if state == "succeeded":
            return pb.JobResult.FromString(outcome["result"])
        if state == "cancelled":
            log.info("job %s: cancelled on %s", key, worker.name)
            raise JobCancelled("cancelled")
        if state == "failed":
            raise status.error_of(pb.ErrorDetail.FromString(outcome["error"]))
        progress.log(outcome["trace"])
        raise RuntimeError(f"on worker {worker.name}: {outcome['message']}")

    def _stop_run(self, worker: WorkerRecord, key: str, running: Any) -> None:
        """Cancel a run the daemon stopped following; a worker that does not stop is replaced."""
        if running is None:
            return
        try:
            self.ray.get(worker.handle.poll.remote(key, True, 0), timeout=10)
            done, _ = self.ray.wait([running], timeout=30)
            if done:
                return
        except Exception:
            log.warning("worker %s did not answer a cancel", worker.name, exc_info=True)
        self._replace(worker)


class _SegmentProgress:
    """The progress of a job's segments as the job's: frames counted across them, each stage told once."""

    def __init__(self, progress: pipeline.ProgressSink, segments: list[tuple[int, int]]) -> None:
        self.progress = progress
        self.segments = segments
        self.total = sum(last - first + 1 for first, last in segments)
        self.done = [0] * len(segments)
        self.stages: set[str] = set()
        self.lock = threading.Lock()

    def part(self, index: int) -> _SegmentPart:
        return _SegmentPart(self, index)


class _SegmentPart:
    """One segment's ProgressSink."""

    def __init__(self, owner: _SegmentProgress, index: int) -> None:
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


@dataclass
class _Private:
    """A job run by workers that see none of the daemon's storage."""

    spec: pb.JobSpec  # as the workers get it: inputs named by hash, the output written in their own folder
    prepared: pipeline.PreparedJob  # the daemon's own, whose staging folder the frames come back to
    job_id: str
    frames: dict[str, tuple[int, str]]  # sha256 → (size, the daemon's path), each input frame once

    def done(self, segment: Optional[tuple[int, int]]) -> list[int]:
        """Frames of the run whose output the daemon holds already: the worker skips them."""
        first, last = segment or (self.prepared.first, self.prepared.last)
        return [f for f in range(first, last + 1) if "output" in pipeline.staged_files(self.prepared, self.job_id, f)]

    def receive(self, frame: int, files: dict[str, bytes]) -> None:
        # The output last: a frame counts as done once its output is staged, so it must come with the rest.
        for kind in sorted(files, key=lambda kind: kind == "output"):
            pipeline.stage_file(self.prepared, self.job_id, kind, frame, files[kind])


def _replay(events: list[tuple], progress: pipeline.ProgressSink, private: Optional[_Private] = None) -> None:
    for event in events:
        kind = event[0]
        if kind == "frame":
            if private is not None and event[5]:
                private.receive(event[1], event[5])
            progress.frame_written(*event[1:5])
        elif kind == "stage":
            progress.stage(event[1], event[2])
        else:
            progress.log(event[1])
