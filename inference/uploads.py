"""The upload state machine: jobs that wait for their frames, `UploadFrames`, and queueing a job
when its last frame arrives.

A client that shares no storage with the daemon may submit a job before its frames are sent
(`SubmitJobRequest.upload_follows`): the job is stored as JOB_STATE_UPLOADING, watched and
cancelled like any job, and never claimed by the scheduler. Frames are content-addressed and any
stream may complete one, so each finished frame is linked into every waiting job that names it,
whoever sent it; when a job's last frame is in, the job is checked as any submitted job and queued
(or failed, named like any refusal). A daemon that restarts follows its waiting jobs again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Optional

from voidlink.inference.events import EventBus
from voidlink.inference.job.kinds import prepare
from voidlink.inference.scheduler import Scheduler
from voidlink.inference.security import format_size
from voidlink.inference.store import UPLOAD_STAGE, JobStore
from voidlink.inference.transfer import CLIP_FIELDS, PARTIAL_DAYS, FrameCache, Transfers, check_sha
from voidlink.protos import pb, status
from voidlink.protos.clips import SequencePattern, clip_media
from voidlink.protos.events import job_event
from voidlink.protos.readahead import read_ahead

from voidlink.errors import Conflict, InvalidInput, LimitExceeded, VoidlinkError

log = logging.getLogger("voidlink.daemon")

_PUBLISH_SECONDS = 0.2  # upload progress events per job at most this often (each whole frame always)

# What a frame's arrival means to one waiting job: (job id, its upload progress, all its frames in).
Update = tuple[str, pb.TransferProgress, bool]


class Uploads:
    """The daemon's uploads: frames into the cache, and the jobs waiting for them through to the queue."""

    def __init__(
        self,
        store: JobStore,
        bus: EventBus,
        cache: FrameCache,
        transfers: Transfers,
        scheduler: Scheduler,
        max_upload_bytes: int,
    ) -> None:
        self.store, self.bus, self.cache, self.transfers, self.scheduler = store, bus, cache, transfers, scheduler
        self.max_upload_bytes = max_upload_bytes
        self.waiting = WaitingJobs(cache)

    # -- frames ----------------------------------------------------------------------------

    def has_frames(self, refs: Iterable[pb.FrameRef]) -> list[pb.FrameStatus]:
        """Which frames the cache holds whole, and how much of the others (where a stream resumes)."""
        out = []
        for ref in refs:
            check_sha(ref.sha256, "frames.sha256")  # it becomes a file name: nothing but a hash may pass
            present, offset = self.cache.status(ref.sha256)
            out.append(pb.FrameStatus(sha256=ref.sha256, present=present, offset=offset))
        return out

    def receive(self, chunks: Iterable[pb.FrameChunk]) -> Iterator[pb.FrameAck]:
        """Store one `UploadFrames` stream's chunks, acknowledging each; waiting jobs hear of their frames."""
        limit = self.max_upload_bytes
        received = 0
        pinned: list[str] = []
        touched: set[str] = set()
        try:
            for chunk in read_ahead(chunks, name="voidlink-upload-receive"):
                if getattr(chunk, "malformed", ""):
                    raise InvalidInput(f"a frame chunk that is not a FrameChunk: {chunk.malformed}", reason="BAD_CHUNK")
                touched.add(chunk.sha256)
                data = chunk.data  # a pb.FrameChunk copies the bytes at each read of the field: once is enough
                received += len(data)
                if received > limit:
                    raise LimitExceeded(
                        f"this upload passed {format_size(limit)}, the most this daemon takes per job (--max-upload); "
                        "split the shot into shorter jobs",
                        reason="UPLOAD_TOO_LARGE",
                    )
                stored, complete = self.cache.write(chunk, data)
                if complete and chunk.sha256 not in pinned:
                    # Keep this stream's frames from being evicted by its own later frames.
                    self.cache.pin([chunk.sha256])
                    pinned.append(chunk.sha256)
                self._publish(self.waiting.arrived(chunk.sha256, stored, complete))
                yield pb.FrameAck(sha256=chunk.sha256, offset=stored, complete=complete)
        finally:
            self.cache.release(touched)
            self.cache.unpin(pinned)

    # -- jobs waiting for frames -----------------------------------------------------------

    def add_uploading(self, spec: pb.JobSpec, owner: str = "") -> Optional[pb.Job]:
        """Store a materialised job whose frames are still to come (JOB_STATE_UPLOADING); None when
        every frame is in the cache already, so it can be queued as any job."""
        if not WaitingJobs(self.cache).register("", spec):  # a trial run: is any frame missing?
            return None
        if spec.HasField("frames"):
            frames_total = spec.frames.last - spec.frames.first + 1
        else:
            frames_total = len(spec.source.uploaded_frames)
        with self.store.holding():  # registered before the first chunk can ask for it
            job = self.store.add_uploading(spec, frames_total, owner)
            self.waiting.register(job.id, spec)
        progress = self.waiting.progress(job.id)
        log.info(
            "job %s waits for %d of %d frames to be uploaded",
            job.id,
            progress.files_total - progress.files_done,
            progress.files_total,
        )
        self._publish(self.waiting.settle(job.id))
        return self.store.get(job.id)

    def forget(self, job: pb.Job) -> None:
        """An uploading job was cancelled: stop waiting for its frames and drop its inputs."""
        self.waiting.drop(job.id)
        self.transfers.discard_inputs(job.spec)

    def follow_uploading_jobs(self) -> None:
        """At start: jobs that waited for frames when the daemon stopped wait again; an upload nobody
        came back to finish within PARTIAL_DAYS fails, and one that completed meanwhile is queued."""
        abandoned = time.time() - PARTIAL_DAYS * 86400
        for job in self.store.list([pb.JOB_STATE_UPLOADING], 0):
            if job.created_at < abandoned:
                self.transfers.discard_inputs(job.spec)
                error = Conflict(
                    f"job {job.id}: its frames were not all uploaded within {PARTIAL_DAYS} days; submit it again",
                    reason="UPLOAD_ABANDONED",
                )
                self.store.finish(job.id, pb.JOB_STATE_FAILED, message=str(error), error=status.detail_of(error))
            elif self.waiting.register(job.id, job.spec):
                self._publish(self.waiting.settle(job.id))
            else:
                self._queue(job.id, self.snapshot(job))

    def snapshot(self, job: pb.Job, message: str = "") -> pb.JobEvent:
        """A job's state as an event, with its upload: how far it is while the job waits for frames,
        all of it once the job is past waiting (or never waited: its frames came before it)."""
        event = job_event(job, outcome=True, message=message or job.message)
        progress = self.waiting.progress(job.id) if job.state == pb.JOB_STATE_UPLOADING else None
        uploaded = [ref for clip in (job.spec.source, job.spec.mask, job.spec.affected) for ref in clip.uploaded_frames]
        if progress is None and uploaded:
            size = sum(ref.size for ref in uploaded)
            progress = pb.TransferProgress(
                direction="upload",
                files_done=len(uploaded),
                files_total=len(uploaded),
                bytes_done=size,
                bytes_total=size,
            )
        if progress is not None:
            event.transfer.CopyFrom(progress)
        return event

    def _publish(self, updates: list[Update]) -> None:
        """Tell watchers how far each job's upload is; queue the jobs whose last frame came in."""
        for job_id, progress, ready in updates:
            event = job_event(job_id=job_id, state=pb.JOB_STATE_UPLOADING, stage=UPLOAD_STAGE, transfer=progress)
            if not ready:
                self.bus.publish(event)
                continue
            self._queue(job_id, event)

    def _queue(self, job_id: str, last: pb.JobEvent) -> None:
        job = self.store.get(job_id)
        if job is None or job.state != pb.JOB_STATE_UPLOADING:
            return  # cancelled meanwhile
        self.bus.publish(last)
        try:
            check_uploaded_sizes(job.spec)
            prepared = prepare(job.spec, guard=self.scheduler.guard)  # as its kind is checked
        except Exception as error:  # the frames are in but the job cannot run: it fails, named like any refusal
            if not isinstance(error, VoidlinkError):
                log.exception("job %s: checking the uploaded frames failed", job_id)
                error = VoidlinkError(f"{type(error).__name__}: {error}", reason="INTERNAL")
            self.transfers.discard_inputs(job.spec)
            final = self.store.finish(job_id, pb.JOB_STATE_FAILED, message=str(error), error=status.detail_of(error))
            self.bus.publish(self.snapshot(final))
            return
        frames = prepared.last - prepared.first + 1
        job = self.scheduler.submit(lambda: self.store.queue_uploaded(job_id, frames), prepared)
        if job is not None:
            log.info("job %s queued: its frames are in", job_id)
            self.bus.publish(self.snapshot(job))


class WaitingJobs:
    """Jobs stored before their frames arrived (JOB_STATE_UPLOADING): what each still waits for.

    Each finished frame is linked into every waiting job that names it; a job whose last frame is in
    is handed back by `arrived` to be queued. Progress is kept per job for `WatchJob`.
    """

    def __init__(self, cache: FrameCache) -> None:
        self.cache = cache
        self._lock = threading.Lock()
        self._jobs: dict[str, _Waiting] = {}
        self._by_sha: dict[str, set[str]] = {}

    def register(self, job_id: str, spec: pb.JobSpec) -> bool:
        """Follow the upload of a materialised spec's frames; False when every frame is in already."""
        waiting = _Waiting(job_id)
        for ref, target in uploaded_targets(spec):
            waiting.sizes[ref.sha256] = ref.size
            waiting.targets.setdefault(ref.sha256, []).append(target)
            if target.exists():
                waiting.stored[ref.sha256] = ref.size
            else:
                waiting.missing.add(ref.sha256)
        waiting.reused = sum(waiting.stored.values())
        for sha in waiting.missing:
            _, waiting.stored[sha] = self.cache.status(sha)
        if not waiting.missing:
            return False
        with self._lock:
            self._jobs[job_id] = waiting
            for sha in waiting.missing:
                self._by_sha.setdefault(sha, set()).add(job_id)
        return True

    def settle(self, job_id: str) -> list[Update]:
        """Take in frames that completed while `job_id` was being registered (another stream's)."""
        with self._lock:
            waiting = self._jobs.get(job_id)
            missing = list(waiting.missing) if waiting else []
        done = []
        for sha in missing:
            present, size = self.cache.status(sha)
            if present:
                done += self.arrived(sha, size, True)
        return done

    def progress(self, job_id: str) -> Optional[pb.TransferProgress]:
        with self._lock:
            waiting = self._jobs.get(job_id)
            return waiting.progress() if waiting else None

    def drop(self, job_id: str) -> None:
        with self._lock:
            waiting = self._jobs.pop(job_id, None)
            for sha in waiting.missing if waiting else ():
                jobs = self._by_sha.get(sha, set())
                jobs.discard(job_id)
                if not jobs:
                    self._by_sha.pop(sha, None)

    def arrived(self, sha: str, stored: int, complete: bool) -> list[Update]:
        """Bytes of one frame are in the cache: (job id, its progress, whether all its frames are in)
        for each waiting job to tell, at most every _PUBLISH_SECONDS unless a frame completed."""
        now = time.monotonic()
        out = []
        with self._lock:
            jobs = [self._jobs[job_id] for job_id in self._by_sha.get(sha, ()) if job_id in self._jobs]
            if complete:
                self._by_sha.pop(sha, None)
            for waiting in jobs:
                waiting.stored[sha] = stored
                if complete:
                    waiting.missing.discard(sha)
                    for target in waiting.targets[sha]:
                        if not target.exists():
                            self.cache.link(sha, target)
                ready = not waiting.missing
                if ready:
                    del self._jobs[waiting.job_id]
                if complete or now - waiting.published >= _PUBLISH_SECONDS:
                    waiting.published = now
                    out.append((waiting.job_id, waiting.progress(), ready))
        return out


class _Waiting:
    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.sizes: dict[str, int] = {}  # sha -> size, each frame once
        self.targets: dict[str, list[Path]] = {}  # sha -> where the job's pipeline reads it
        self.stored: dict[str, int] = {}  # sha -> bytes the cache holds
        self.missing: set[str] = set()
        self.reused = 0
        self.published = 0.0

    def progress(self) -> pb.TransferProgress:
        return pb.TransferProgress(
            direction="upload",
            files_total=len(self.sizes),
            files_done=len(self.sizes) - len(self.missing),
            bytes_total=sum(self.sizes.values()),
            bytes_done=sum(self.stored.values()),
            bytes_reused=self.reused,
        )


def uploaded_targets(spec: pb.JobSpec) -> list[tuple[pb.FrameRef, Path]]:
    """(frame, the file the pipeline reads it from) for every uploaded frame of a materialised spec."""
    out = []
    for name in CLIP_FIELDS:
        clip = getattr(spec, name)
        if not clip.uploaded_frames:
            continue
        pattern = SequencePattern.parse(clip_media(clip.otio_json).path)
        out += [(ref, Path(pattern.path(ref.frame))) for ref in clip.uploaded_frames]
    return out


def check_uploaded_sizes(spec: pb.JobSpec) -> None:
    """Each uploaded frame of a materialised spec has the size the job named it with (what its
    --max-upload bound was counted from); a frame whose bytes differ fails the job, named."""
    for ref, target in uploaded_targets(spec):
        size = target.stat().st_size
        if size != ref.size:
            raise InvalidInput(
                f"uploaded frame {ref.frame} ({ref.sha256[:12]}) was named as {ref.size} bytes, but the frame "
                f"of that hash is {size} bytes; submit the job again with the frames' real sizes",
                reason="BAD_SIZE",
                frame=ref.frame,
            )
