"""What a client asks of the daemon's jobs: submit, watch, cancel, get, list, and fetch the result.

`Jobs` is the daemon's core as the service sees it: each RPC about a job is one call here. A job
is checked (backend, roots, its frames and output) and written to the store before it is
acknowledged; a streamed job whose frames follow waits in `Uploads`; a watcher gets the job's state
now, then every event until the job ends (and until its result is fetched, when it is being
fetched); a cancel of a job that waits for frames also stops the wait.

Every call names its `Caller`: a job belongs to the caller that submitted it, and another caller
(not an admin) is told there is no such job, exactly as for one that does not exist.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator

from voidlink.inference.bounds import MAX_PAGE, check_page, check_spec
from voidlink.inference.downloads import Downloads
from voidlink.inference.events import EventBus
from voidlink.inference.job.kinds import is_matte, prepare
from voidlink.inference.job.staging import check_no_unfinished_commit
from voidlink.inference.probe import check_client_paths
from voidlink.inference.scheduler import Scheduler
from voidlink.inference.security import ANYONE, Caller, Roots
from voidlink.inference.store import DEFAULT_PAGE, TERMINAL_STATES, JobStore
from voidlink.inference.transfer import Transfers
from voidlink.inference.uploads import Uploads
from voidlink.protos import pb

from voidlink.errors import InvalidInput, NotFound

log = logging.getLogger("voidlink.daemon")

_POLL_SECONDS = 0.25  # how often a watcher with no event looks whether its client or the daemon left


class Jobs:
    """The daemon's jobs, as clients ask for them."""

    def __init__(
        self,
        store: JobStore,
        bus: EventBus,
        scheduler: Scheduler,
        transfers: Transfers,
        roots: Roots,
        uploads: Uploads,
        downloads: Downloads,
        stopping: threading.Event,
    ) -> None:
        self.store, self.bus, self.scheduler, self.transfers = store, bus, scheduler, transfers
        self.roots, self.uploads, self.downloads = roots, uploads, downloads
        self.stopping = stopping  # set when the daemon shuts down: watchers are told and let go

    def get(self, job_id: str, caller: Caller = ANYONE) -> pb.Job:
        if not job_id:
            raise InvalidInput("no job id given", reason="MISSING_FIELD", field="job_id")
        job = self.store.get(job_id)
        if job is None or not caller.may_see(job.owner):
            raise NotFound(f"no job with id '{job_id[:64]}'", reason="JOB_NOT_FOUND", field="job_id")
        return job

    def list(
        self,
        states: Iterable[int] = (),
        limit: int = 0,
        caller: Caller = ANYONE,
        page_size: int = 0,
        page_token: str = "",
    ) -> tuple[list[pb.Job], str]:
        """One page of the caller's job summaries, newest first, and the next page's token ("" at the end).
        `limit` (older clients) caps the page when no page size is given."""
        size = page_size or (min(limit, MAX_PAGE) if limit > 0 else DEFAULT_PAGE)
        check_page(size)
        return self.store.page(states, size, page_token, caller.owner_filter)

    def submit(
        self, spec: pb.JobSpec, upload_follows: bool = False, caller: Caller = ANYONE, validate_only: bool = False
    ) -> pb.Job:
        """Check `spec` and store it as a queued job (or as one waiting for its frames, when they follow).

        `validate_only`: check it exactly so and answer with the job it would queue, stored nowhere (its id
        empty, its message "valid"); a spec that would be refused raises the same error."""
        check_spec(spec)  # bounded before anything else looks at it
        if is_matte(spec):
            self.scheduler.mattes.resolve(spec.matte.tracker)  # unknown or unavailable tracker: refuse now
        else:
            self.scheduler.executor.resolve(spec.params.backend)  # unknown or unavailable backend: refuse now
        check_client_paths(self.roots, spec)
        if self.transfers.streamed(spec):
            spec = self.transfers.materialise(spec, missing_ok=upload_follows and not validate_only)
            if upload_follows and not validate_only:
                job = self.uploads.add_uploading(spec, caller.name)
                if job is not None:
                    return job
        prepared = None
        try:
            prepared = prepare(spec, guard=self.scheduler.guard)
            check_no_unfinished_commit(prepared)  # refused now, not once it has waited and run
        except BaseException:
            if prepared is not None:
                prepared.close()
            self.transfers.discard_inputs(spec)
            raise
        frames = prepared.last - prepared.first + 1
        if validate_only:
            prepared.close()
            self.transfers.discard_inputs(spec)
            return pb.Job(
                spec=spec, state=pb.JOB_STATE_QUEUED, frames_total=frames, owner=caller.name, message="valid"
            )
        job = self.scheduler.submit(lambda: self.store.add(spec, frames_total=frames, owner=caller.name), prepared)
        log.info("job %s queued: %s", job.id, spec.name or spec.output.path_template)
        return job

    def watch(
        self, job_id: str, previews: bool, active: Callable[[], bool], caller: Caller = ANYONE
    ) -> Iterator[pb.JobEvent]:
        """The job's state now, then its events until it ends, while `active()` (the client is there)."""
        job = self.get(job_id, caller)
        events = self.bus.subscribe(job.id)
        try:
            job = self.get(job_id, caller)  # re-read after subscribing: no event can slip between
            downloads = self.downloads
            yield self.snapshot(job)
            # An ended job whose result is being fetched is followed until the download ends (its last
            # event is published before the download counts as ended, so it is never missed).
            ended = job.state in TERMINAL_STATES
            if ended and not downloads.active(job.id):
                return
            while active() and not self.stopping.is_set():
                try:
                    event = events.get(timeout=_POLL_SECONDS)
                except queue.Empty:
                    if ended and not downloads.active(job.id) and events.empty():
                        return
                    continue
                if not previews and event.HasField("preview"):
                    event = _without_preview(event)
                yield event
                ended = ended or event.state in TERMINAL_STATES
                if ended and not downloads.active(job.id) and events.empty():
                    return
            if self.stopping.is_set():
                yield self.snapshot(
                    self.get(job.id), message="the daemon is shutting down; watch again after it restarts"
                )
        finally:
            self.bus.unsubscribe(job.id, events)

    def cancel(self, job_id: str, caller: Caller = ANYONE) -> pb.Job:
        before = self.get(job_id, caller)
        job = self.scheduler.cancel(job_id)
        if before.state == pb.JOB_STATE_UPLOADING:
            self.uploads.forget(job)
        return job

    def download(
        self, job_id: str, have: Iterable[pb.FileDigest] = (), caller: Caller = ANYONE
    ) -> Iterator[pb.FileChunk]:
        """A succeeded job's streamed-back files, as chunks (see `Downloads.stream`)."""
        yield from self.downloads.stream(self.get(job_id, caller), have)

    def snapshot(self, job: pb.Job, message: str = "") -> pb.JobEvent:
        """A job's current state as an event, with how far its upload (or the fetch of its result) is."""
        event = self.uploads.snapshot(job, message)
        progress = self.downloads.last(job.id) if job.state in TERMINAL_STATES else None
        if progress is not None:
            event.transfer.CopyFrom(progress)
        return event


def _without_preview(event: pb.JobEvent) -> pb.JobEvent:
    copy = pb.JobEvent()
    copy.CopyFrom(event)
    copy.ClearField("preview")
    return copy
