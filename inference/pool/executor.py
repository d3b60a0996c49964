"""`RayExecutor`: the scheduler's executor for a Ray pool: a job (or its segments) on workers, retried
on another worker when one dies.

The scheduler hands it each job it claims; `execute` splits a long classical job into segments that
run side by side, runs each on a worker of the pool (`lifecycle.WorkerPool`), follows it
(`relay.follow`) and, when the frames are in the daemon's staging folder, moves them into place.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Optional

from voidlink.inference.backends import BACKEND_NAMES
from voidlink.inference.job.control import ProgressSink
from voidlink.inference.job.prepare import PreparedJob
from voidlink.inference.pool.lifecycle import WorkerPool
from voidlink.inference.pool.messages import RunOutcome, RunRequest, WorkerStats
from voidlink.inference.pool.options import import_ray, pool_options
from voidlink.inference.pool.placement import WorkerLost, WorkerRecord
from voidlink.inference.pool.private import FrameHashes, PrivateJob, private_job, send_frames
from voidlink.inference.pool.relay import follow, replay, result_of
from voidlink.inference.pool.segments import Segment, SegmentProgress, commit_parts, plan_segments, run_key
from voidlink.protos import pb

from voidlink.errors import InvalidInput, JobCancelled, Unavailable, VoidlinkError

log = logging.getLogger("voidlink.cluster")

# A job whose workers keep dying is failed after this many of them, rather than tried forever.
MAX_ATTEMPTS = 3


class RayExecutor:
    """The scheduler's executor for a Ray pool: places jobs on actors (see `placement.place`), relays
    their progress to the daemon and the daemon's cancel to them, and moves the job of a worker that died."""

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
        self.options = pool_options(address, cpu_workers, weights, segment_frames, storage)
        self.ray = import_ray()
        self.pool = WorkerPool(self.ray, self.options)
        self._hashes = FrameHashes()

    # -- the pool ----------------------------------------------------------------------------

    @property
    def slots(self) -> int:
        return self.pool.slots

    def start(self, timeout: float = 120.0) -> list[dict]:
        """Connect to (or start) Ray and wait for every worker to be ready; returns each one's description."""
        return self.pool.start(timeout)

    def workers(self) -> list[dict]:
        """Each worker's name, pid, host, state and resident backends, as the daemon last saw them."""
        return self.pool.workers()

    def worker_stats(self) -> list[WorkerStats]:
        """What each live worker says it did: jobs, frames, cancelled and failed jobs."""
        return self.pool.stats()

    def close(self) -> None:
        self.pool.close()

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
        void = self.pool.void_availability()
        if void.available:
            return "void"
        if requested == "void":
            raise Unavailable(void.reason, reason="BACKEND_UNAVAILABLE", field="spec.params.backend")
        return "classical"

    # -- running a job ---------------------------------------------------------------------

    def private_job(self, job: pb.Job, prepared: PreparedJob) -> PrivateJob:
        """The job as workers without the daemon's storage get it (see `private.private_job`)."""
        return private_job(job, prepared, self._hashes)

    def segments(self, first: int, last: int, backend_name: str) -> list[Segment]:
        """How a job on `backend_name` is split over the pool's workers ([]: it runs whole)."""
        if backend_name == "void":
            return []
        return plan_segments(first, last, self.pool.segment_workers(), self.options.segment_frames)

    def execute(
        self,
        job: pb.Job,
        prepared: PreparedJob,
        backend_name: str,
        progress: ProgressSink,
        cancelled: Callable[[], bool],
    ) -> pb.JobResult:
        # The daemon's own prepared job checked the paths (and the roots); the worker prepares its own.
        prepared.close()
        started = time.monotonic()
        private = self.private_job(job, prepared) if self.options.storage == "private" else None
        spec_bytes = (private.spec if private is not None else job.spec).SerializeToString()
        segments = self.segments(prepared.first, prepared.last, backend_name)
        if not segments:
            part = self._run(job.id, spec_bytes, backend_name, progress, cancelled, None, private)
            if private is None:
                return part  # the worker moved the frames into place itself
            return commit_parts(prepared, job.id, [part], backend_name, progress, started, cancelled)
        progress.log(
            f"{len(segments)} segments run side by side: " + ", ".join(f"{first}-{last}" for first, last in segments)
        )
        parts = self._run_segments(job.id, spec_bytes, backend_name, segments, progress, cancelled, private)
        return commit_parts(prepared, job.id, parts, backend_name, progress, started, cancelled)

    def _run_segments(
        self,
        job_id: str,
        spec_bytes: bytes,
        backend_name: str,
        segments: list[Segment],
        progress: ProgressSink,
        cancelled: Callable[[], bool],
        private: Optional[PrivateJob] = None,
    ) -> list[pb.JobResult]:
        """Run every segment on a worker of its own, at once; the first failure stops the others."""
        relay = SegmentProgress(progress, segments)
        stop = threading.Event()
        failures: list[BaseException] = []
        results: list[Optional[pb.JobResult]] = [None] * len(segments)

        def one(index: int, segment: Segment) -> None:
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
        progress: ProgressSink,
        cancelled: Callable[[], bool],
        segment: Optional[Segment],
        private: Optional[PrivateJob] = None,
    ) -> pb.JobResult:
        """The job (or one segment) on a worker; on another when that one dies, up to MAX_ATTEMPTS."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            worker = self.pool.acquire(backend_name, cancelled)
            try:
                request = RunRequest(job_id, spec_bytes, backend_name, segment)
                return self._run_on(worker, request, progress, cancelled, private)
            except WorkerLost as lost:
                message = f"worker {worker.name} was lost ({lost}); its unfinished frames go to another worker"
                log.warning("job %s: %s", run_key(job_id, segment), message)
                progress.log(message)
                self.pool.replace(worker)
                if attempt == MAX_ATTEMPTS:
                    raise VoidlinkError(
                        f"{MAX_ATTEMPTS} workers of the pool died in turn running this job (the last: "
                        f"{worker.name} on {worker.host or 'an unknown host'}); see the Ray logs of those workers",
                        reason="WORKERS_LOST",
                    ) from lost
            finally:
                self.pool.release(worker)
        raise AssertionError("unreachable")

    def _run_on(
        self,
        worker: WorkerRecord,
        request: RunRequest,
        progress: ProgressSink,
        cancelled: Callable[[], bool],
        private: Optional[PrivateJob] = None,
    ) -> pb.JobResult:
        ray = self.ray
        job_id, segment = request.job_id, request.segment
        worker.job_id = job_id
        running = None
        key = run_key(job_id, segment)
        if segment is None:
            log.info("job %s runs on %s (pid %d on %s)", job_id, worker.name, worker.pid, worker.host)
        else:
            log.info("job %s frames %d-%d run on %s (pid %d on %s)", job_id, *segment, worker.name, worker.pid,
                     worker.host)  # fmt: skip
        try:
            if private is not None:
                send_frames(ray, worker, private, progress, cancelled)
                request = RunRequest(job_id, request.spec, request.backend, segment, private.done(segment))
            running = worker.handle.run.remote(request)
            outcome: RunOutcome = follow(ray, worker, key, running, progress, cancelled, private)
        except ray.exceptions.RayActorError as error:
            raise WorkerLost(type(error).__name__) from error
        except BaseException:
            # The relay broke, not the worker: its run must end before it is given another job.
            self._stop_run(worker, key, running)
            raise
        replay(outcome.events, progress, private)
        self.pool.note_loaded(worker, outcome.loaded)
        return result_of(outcome, worker, key, progress)

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
        self.pool.replace(worker)
