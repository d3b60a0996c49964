"""Scheduler: runs queued jobs one at a time per device, by priority then submission order.

Where a job runs is the executor's business: in the daemon's process by default, on a pool of
workers (`voidlink.inference.pool`) when the daemon fronts one.

The job's own state lives in the JobStore; the scheduler only keeps in memory what a job needs
between its submission and its end: the job prepared when it was submitted (`PreparedJobs`: a job is
checked against the disk once) and a running job's cancel flag. Backends stay resident in the
BackendRegistry between jobs.

A cancel removes the job's staging folder, whether it was running or waiting in the queue; a job
that has begun moving its frames into place is not cancelled but finishes the move (see
`job.control.CancelFlag`), and at start-up `recover` finishes the moves a crash interrupted before any
job runs or any call is served.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from typing import Callable, Optional, Protocol

import numpy as np
from voidlink.inference.backends import BackendRegistry
from voidlink.inference.backends.base import BackendRequest, Cancelled
from voidlink.inference.backends.matte import MatteRegistry
from voidlink.inference.events import EventBus
from voidlink.inference.job.control import CancelFlag, ProgressSink
from voidlink.inference.job.kinds import Prepared, prepare
from voidlink.inference.job.matte.prepare import PreparedMatte
from voidlink.inference.job.matte.run import run_with
from voidlink.inference.job.prepare import Confinement, PreparedJob
from voidlink.inference.job.run import run_job
from voidlink.inference.job.staging import (
    commit_begun,
    discard_staging,
    discard_staging_of,
    finish_interrupted_commit,
)
from voidlink.inference.store import TERMINAL_STATES, JobStore
from voidlink.protos import pb, status, vocabulary
from voidlink.protos.events import job_event

from voidlink.errors import JobCancelled, NotFound, VoidlinkError

log = logging.getLogger("voidlink.scheduler")


def backend_request(
    spec: pb.JobSpec, first: int, last: int, cancelled: Callable[[], bool], on_message: Callable[[str], None]
) -> BackendRequest:
    """What a backend is asked for the job's frames `first`-`last`, from its spec's params."""
    params = spec.params
    return BackendRequest(
        prompt=params.prompt,
        negative_prompt=params.negative_prompt,
        steps=params.steps,
        guidance=params.guidance,
        seed=params.seed if params.HasField("seed") else None,
        passes=params.passes,
        quality=vocabulary.QUALITY.word(params.quality, "spec.params.quality"),
        first=first,
        last=last,
        cancelled=cancelled,
        on_message=on_message,
    )


# A frame event carries a preview at most this often per job (the last frame's always): a viewer needs
# a few a second, and encoding one per frame took a third of a pool daemon's time on short frames.
PREVIEW_SECONDS = 0.25


class JobProgress:
    """A running job's ProgressSink: records to the store, publishes to watchers."""

    def __init__(self, store: JobStore, bus: EventBus, job: pb.Job) -> None:
        self.store, self.bus, self.job_id = store, bus, job.id
        self.total = job.frames_total
        self.done = job.frames_done
        self.stage_name = "starting"
        self._t0 = time.monotonic()
        self._done_at_start: Optional[int] = None
        self._preview_at = float("-inf")

    def _event(self, **fields) -> pb.JobEvent:
        return job_event(
            job_id=self.job_id,
            state=pb.JOB_STATE_RUNNING,
            stage=self.stage_name,
            frames_done=self.done,
            frames_total=self.total,
            **fields,
        )

    def stage(self, name: str, message: str = "") -> None:
        self.stage_name = name
        self.store.update(self.job_id, stage=name, message=message)
        self.bus.publish(self._event(message=message, eta_seconds=-1.0))

    def frame_written(self, frame: int, done: int, total: int, preview: Optional[np.ndarray]) -> None:
        if self._done_at_start is None:
            self._done_at_start = done - 1
            self._t0 = time.monotonic()
        self.done, self.total = done, total
        self.store.record_frame(self.job_id, frame, done)
        if total and self.total != total:
            self.store.update(self.job_id, frames_total=total)
        event = self._event(frame=frame, eta_seconds=self._eta(), message=f"frame {frame} written")
        now = time.monotonic()
        if preview is not None and (done >= total or now - self._preview_at >= PREVIEW_SECONDS):
            self._preview_at = now
            event.preview.CopyFrom(_encode_preview(preview, frame))
        self.bus.publish(event)

    def log(self, message: str) -> None:
        self.store.append_log(self.job_id, message)
        self.bus.publish(self._event(message=message, eta_seconds=-1.0))

    def _eta(self) -> float:
        since = self.done - (self._done_at_start or 0)
        elapsed = time.monotonic() - self._t0
        if since <= 0 or elapsed <= 0:
            return -1.0
        return max(0.0, (self.total - self.done) * elapsed / since)


def _encode_preview(image: np.ndarray, frame: int) -> pb.Preview:
    import cv2

    rgb = np.ascontiguousarray(image[..., :3])
    if rgb.dtype != np.uint8:
        rgb = (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    ok, png = cv2.imencode(".png", rgb[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1])  # fast: it is small
    return pb.Preview(width=rgb.shape[1], height=rgb.shape[0], png=png.tobytes() if ok else b"", frame=frame)


class Executor(Protocol):
    """Where the scheduler's jobs run: in this process (`LocalExecutor`) or on a pool of workers.

    The scheduler keeps the job's state, its events and its cancel flag; an executor only turns a
    prepared job into a result. `slots` is how many jobs it runs at once."""

    slots: int

    def resolve(self, requested: str) -> str: ...

    def execute(
        self,
        job: pb.Job,
        prepared: PreparedJob,
        backend_name: str,
        progress: ProgressSink,
        cancelled: Callable[[], bool],
    ) -> pb.JobResult: ...

    def close(self) -> None: ...


class LocalExecutor:
    """Runs jobs in the daemon's own process, one per device, on backends kept in the registry."""

    def __init__(self, registry: BackendRegistry, devices: int = 1) -> None:
        self.registry = registry
        self.slots = devices

    def resolve(self, requested: str) -> str:
        return self.registry.resolve(requested)

    def execute(
        self,
        job: pb.Job,
        prepared: PreparedJob,
        backend_name: str,
        progress: ProgressSink,
        cancelled: Callable[[], bool],
    ) -> pb.JobResult:
        progress.stage("load", f"loading the {backend_name} backend")
        backend = self.registry.get(backend_name)
        request = backend_request(job.spec, prepared.first, prepared.last, cancelled, progress.log)
        return run_job(prepared, backend, job_id=job.id, progress=progress, cancelled=cancelled, request=request)

    def close(self) -> None:
        pass


class PreparedJobs:
    """The jobs prepared when they were submitted, by job id, until they run: a job is checked against
    the disk once, not again when a worker takes it.

    Handed in when the job is queued (`Scheduler.submit`), taken when it runs, dropped when it ends
    before that (cancelled in the queue, the daemon stopping). Memory only: after a daemon restart a
    job is prepared again when it runs, as the disk may have changed meanwhile."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, Prepared] = {}

    def hand_in(self, job_id: str, prepared: Prepared) -> None:
        # A queued job holds no open file: a movie's decoder, opened to read its header, is reopened
        # by the run (closing a prepared job releases its decoders and keeps everything else).
        prepared.close()
        with self._lock:
            earlier = self._jobs.pop(job_id, None)
            self._jobs[job_id] = prepared
        if earlier is not None and earlier is not prepared:
            earlier.close()

    def take(self, job_id: str) -> Optional[Prepared]:
        """The job's prepared job, no longer held here (the run closes it); None when none was handed in."""
        with self._lock:
            return self._jobs.pop(job_id, None)

    def drop(self, job_id: str) -> None:
        prepared = self.take(job_id)
        if prepared is not None:
            prepared.close()

    def clear(self) -> None:
        with self._lock:
            held, self._jobs = list(self._jobs.values()), {}
        for prepared in held:
            prepared.close()

    def __contains__(self, job_id: object) -> bool:
        with self._lock:
            return job_id in self._jobs

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)


class Scheduler:
    """Runs the store's queued jobs on the executor's slots, one worker thread per slot.

    `guard`: the daemon's confinement to its roots, for a job prepared here (one queued before a
    restart); None: the daemon is not confined. `mattes`: the resident matte trackers; matte jobs run
    in this process whatever the executor (a pool's workers keep removal backends)."""

    def __init__(
        self,
        store: JobStore,
        bus: EventBus,
        registry: BackendRegistry,
        devices: int = 1,
        executor: Optional[Executor] = None,
        guard: Optional[Confinement] = None,
        mattes: Optional[MatteRegistry] = None,
    ) -> None:
        self.store, self.bus, self.registry = store, bus, registry
        self.mattes = mattes or MatteRegistry(registry.weights)
        self.executor: Executor = executor or LocalExecutor(registry, devices)
        self.guard = guard
        self.prepared = PreparedJobs()
        devices = self.executor.slots
        self._wake = threading.Condition()
        self._stopping = False
        self._cancel: dict[str, CancelFlag] = {}
        # Ends of jobs the store could not record yet (job id -> (state, finish's fields)).
        self._pending_ends: dict[str, tuple[int, dict]] = {}
        self._threads = [
            threading.Thread(target=self._loop, name=f"voidlink-worker-{i}", daemon=True) for i in range(devices)
        ]

    # -- control -------------------------------------------------------------------------

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def wake(self) -> None:
        with self._wake:
            self._wake.notify_all()

    def submit(self, add: Callable[[], Optional[pb.Job]], prepared: Prepared) -> Optional[pb.Job]:
        """Queue a job with the job prepared for it, and wake a worker. `add` puts the job in the store's
        queue (`store.add`, or `store.queue_uploaded` once its frames are in) and returns it, or None
        when it was not queued; it runs under the lock the workers claim jobs under, so no worker starts
        the job before its prepared job is handed in."""
        with self._wake:
            job = add()
            if job is not None:
                self.prepared.hand_in(job.id, prepared)
            self._wake.notify_all()
        if job is None:
            prepared.close()
        return job

    def stop(self, timeout: float = 30.0) -> None:
        """Interrupt running jobs at their next frame; they go back to the queue, not cancelled."""
        with self._wake:
            self._stopping = True
            for flag in self._cancel.values():
                flag.cancel()  # a job moving its frames into place finishes that first
            self._wake.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))
        self.prepared.clear()
        self.executor.close()

    def running(self) -> int:
        return len(self._cancel)

    def cancel(self, job_id: str) -> pb.Job:
        """Cancel a job: a running one stops at its next frame, a queued one ends now; either way its
        staging folder goes. A job past its commit point is returned as it stands and finishes."""
        with self._wake:  # the worker threads claim jobs under this lock: the state read here holds
            job = self.store.get(job_id)
            if job is None:
                raise NotFound(f"no job with id '{job_id}'", reason="JOB_NOT_FOUND", field="job_id")
            if job.state in TERMINAL_STATES:
                return job
            flag = self._cancel.get(job_id)
            if flag is not None:
                if flag.cancel():  # the worker finishes the job as cancelled at its next frame
                    return job
                return self._too_late(job)
            if commit_begun(job.spec, job_id):  # an interrupted commit its next run finishes
                return self._too_late(job)
            job = self.store.finish(job_id, pb.JOB_STATE_CANCELLED, message="cancelled before it started")
        self.prepared.drop(job_id)
        self._discard_spec(job)
        self._publish_final(job)
        return job

    def _too_late(self, job: pb.Job) -> pb.Job:
        message = "too late to cancel: the job is moving its frames into place and finishes that move"
        self._log(job.id, message)
        log.info("job %s: %s", job.id, message)
        job.message = message
        return job

    def recover(self) -> list[str]:
        """At start-up, before any job runs or any call is served: finish the commits a crash
        interrupted (a job whose marker is on disk ends succeeded with the result it holds, whatever
        was asked of it since). Returns the ids of the jobs finished."""
        finished = []
        jobs = self.store.list([pb.JOB_STATE_QUEUED, pb.JOB_STATE_RUNNING], 0)
        # A job whose move failed half-way (disk full, permissions) gets another try at each start.
        jobs += [j for j in self.store.list([pb.JOB_STATE_FAILED], 0) if j.error.reason == "COMMIT_INCOMPLETE"]
        for job in jobs:
            try:
                result = finish_interrupted_commit(job.spec, job.id)
            except VoidlinkError as error:
                log.error("job %s: %s", job.id, error)
                self.store.append_log(job.id, f"finishing the interrupted commit failed: {error}")
                if job.state != pb.JOB_STATE_FAILED:
                    self.store.finish(job.id, pb.JOB_STATE_FAILED, message=str(error), error=status.detail_of(error))
                continue
            except OSError as error:
                log.error("job %s: finishing its interrupted commit failed: %s", job.id, error)
                continue
            if result is None:
                continue
            message = f"{result.frames.last - result.frames.first + 1} frames written to {result.output_pattern}"
            self.store.append_log(job.id, "finished moving its frames into place after the daemon restarted")
            self.store.finish(job.id, pb.JOB_STATE_SUCCEEDED, message=message, result=result)
            log.info("job %s: finished the commit a restart interrupted", job.id)
            finished.append(job.id)
        return finished

    # -- work ----------------------------------------------------------------------------

    def _loop(self) -> None:
        """One worker: claim, run, record; a store that cannot be written (disk full, locked) fails the
        job at hand, never the worker, which keeps trying to record what it could not and takes the next."""
        while True:
            with self._wake:
                if self._stopping:
                    return
                self._record_pending_ends()
                try:
                    job = self.store.claim_next()
                except VoidlinkError as error:
                    log.error("cannot claim the next job: %s", error)
                    self._wake.wait(timeout=1.0)
                    continue
                if job is None:
                    self._wake.wait(timeout=1.0)
                    continue
                flag = CancelFlag()
                self._cancel[job.id] = flag
            try:
                self._run(job, flag)
            except Exception:  # noqa: BLE001 - the worker outlives any one job
                log.exception("job %s: the worker could not finish it", job.id)
            finally:
                with self._wake:
                    self._cancel.pop(job.id, None)

    def _log(self, job_id: str, line: str) -> None:
        """A line in the job's log; when the store cannot take it, in the daemon's log instead."""
        try:
            self.store.append_log(job_id, line)
        except VoidlinkError as error:
            log.warning("job %s: %s (not in the job's log: %s)", job_id, line, error)

    def _record_end(self, job: pb.Job, state: int, **fields) -> pb.Job:
        """Store how a job ended and tell its watchers. When the store cannot be written the end is
        kept and stored again at each turn of the workers, and watchers are told from memory."""
        try:
            final = self.store.finish(job.id, state, **fields)
        except VoidlinkError as error:
            log.error("job %s ended but the store cannot record it (%s): retrying", job.id, error)
            self._pending_ends[job.id] = (state, fields)
            final = pb.Job()
            final.CopyFrom(job)
            final.state = state
            final.message = fields.get("message", "")
            if fields.get("error") is not None:
                final.error.CopyFrom(fields["error"])
            if fields.get("result") is not None:
                final.result.CopyFrom(fields["result"])
        self._publish_final(final)
        return final

    def _record_pending_ends(self) -> None:
        for job_id, (state, fields) in list(self._pending_ends.items()):
            try:
                self.store.finish(job_id, state, **fields)
            except VoidlinkError:
                return  # still not writable: try again at the next turn
            del self._pending_ends[job_id]
            log.info("job %s: its end is recorded now", job_id)

    def _run(self, job: pb.Job, flag: CancelFlag) -> None:
        progress = JobProgress(self.store, self.bus, job)
        prepared = None
        try:
            progress.stage("validate")
            prepared = self.prepared.take(job.id) or self._prepare(job.spec)
            if isinstance(prepared, PreparedMatte):  # the one place a job's kind picks its run
                result = run_with(self.mattes, prepared, job_id=job.id, progress=progress, cancelled=flag)
            else:
                backend_name = self.executor.resolve(job.spec.params.backend)
                result = self.executor.execute(job, prepared, backend_name, progress, flag)
        except (JobCancelled, Cancelled):
            if self._stopping:
                try:
                    self.store.requeue(job.id, "interrupted by daemon shutdown; resumes at the next start")
                except VoidlinkError:
                    pass  # left running in the store: the next start requeues it all the same
                log.info("job %s interrupted by shutdown, left queued", job.id)
                return
            self._discard(prepared, job)
            self._record_end(job, pb.JOB_STATE_CANCELLED, message="cancelled")
        except VoidlinkError as error:
            self._discard(prepared, job)
            self._log(job.id, f"failed: {error}")
            self._record_end(job, pb.JOB_STATE_FAILED, message=str(error), error=status.detail_of(error))
        except Exception as error:  # a bug or an unexpected library error: keep serving
            log.exception("job %s failed", job.id)
            self._discard(prepared, job)
            self._log(job.id, traceback.format_exc())
            detail = pb.ErrorDetail(reason="INTERNAL", message=f"{type(error).__name__}: {error}")
            self._record_end(job, pb.JOB_STATE_FAILED, message=detail.message, error=detail)
        else:
            message = f"{result.frames.last - result.frames.first + 1} frames written to {result.output_pattern}"
            self._record_end(job, pb.JOB_STATE_SUCCEEDED, message=message, result=result)

    def _prepare(self, spec: pb.JobSpec) -> Prepared:
        """A job not prepared at submission in this daemon's life (queued before a restart)."""
        return prepare(spec, guard=self.guard)

    def _discard(self, prepared: Optional[Prepared], job: pb.Job) -> None:
        if prepared is None:  # refused when it ran: a staging folder of an earlier attempt may be there
            self._discard_spec(job)
            return
        try:
            discard_staging(prepared, job.id)
        except OSError:
            log.warning("could not remove the staging folder of job %s", job.id, exc_info=True)

    def _discard_spec(self, job: pb.Job) -> None:
        try:
            discard_staging_of(job.spec, job.id)
        except OSError:
            log.warning("could not remove the staging folder of job %s", job.id, exc_info=True)

    def _publish_final(self, job: pb.Job) -> None:
        event = job_event(job, outcome=True, eta_seconds=0.0)
        self.bus.publish(event)
