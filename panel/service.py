"""The panel's only road to the daemon: every gRPC call runs on a worker thread, results come back as signals.

Qt delivers a signal emitted on a worker thread to receivers on the GUI thread as a queued call,
so the event loop never waits on the network: a slow or absent daemon shows up as a late or an
error signal, never as a frozen host.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Optional, Union

from voidlink.bridge.client import Client, TransferPlan
from voidlink.bridge.connection import BUSY_POLL_SECONDS, STREAMS_BUSY
from voidlink.protos import pb
from voidlink.protos.events import job_event
from voidlink.protos.vocabulary import TERMINAL

from voidlink import errors

from .qt import QtCore, Signal

# Jobs the panel follows by a stream at once: the rest are asked about every few seconds, so a long queue
# leaves the daemon's streams to this user's uploads and downloads and to everyone else.
WATCH_STREAMS = 8


class JobService(QtCore.QObject):
    """Submit, watch, cancel and list jobs of one daemon without blocking the caller."""

    submitted = Signal(object)  # pb.Job
    submit_failed = Signal(object)  # errors.VoidlinkError
    progress = Signal(object)  # pb.JobEvent
    finished = Signal(object)  # pb.Job, in a terminal state
    jobs_listed = Signal(list)  # [pb.Job]
    failed = Signal(str)  # a call other than submit went wrong: the message to show
    job_ready = Signal(object)  # pb.Job asked for with `fetch`
    unreachable = Signal(str)  # no daemon answers: the message (a local one can be started)
    daemon_ready = Signal()  # `start_daemon` has a daemon serving
    checked = Signal(int, object)  # `validate`'s ticket and None (the daemon would take it) or the VoidlinkError

    def __init__(self, address: Optional[str] = None, parent: Optional[QtCore.QObject] = None) -> None:
        super().__init__(parent)
        self.client = Client(address, connect_timeout=3.0)
        self._watched: set[str] = set()
        self._streams = 0  # watches streaming now; the rest of the jobs followed are asked about
        self._lock = threading.Lock()
        self._listing = False
        self._closed = threading.Event()

    @property
    def address(self) -> str:
        return self.client.address

    def _run(self, work: Callable[[], None], name: str) -> threading.Thread:
        def guarded() -> None:
            try:
                work()
            except (ValueError, RuntimeError):
                # grpc refuses calls on a channel closed under a running worker, and Qt on a deleted
                # receiver: both only once the panel is closing, when nobody waits for the answer.
                if not self._closed.is_set():
                    raise

        thread = threading.Thread(target=guarded, name=f"voidlink-panel-{name}", daemon=True)
        thread.start()
        return thread

    def submit(self, spec: Union[pb.JobSpec, Callable[[], pb.JobSpec]]) -> threading.Thread:
        """Submit a spec; or a callable, run first on the worker (it writes roto mattes), whose spec is submitted."""

        def work() -> None:
            try:
                # The job's upload (a daemon that cannot read the clips) shows in the queue as it goes.
                job, plan = self.client.start(spec() if callable(spec) else spec, on_progress=self._transfer)
            except errors.VoidlinkError as error:
                self.submit_failed.emit(error)
                return
            except OSError as error:  # writing roto mattes: a full disk, a read-only folder
                self.submit_failed.emit(
                    errors.PermissionDenied(f"cannot write {error.filename or 'the mattes'}: {error.strerror or error}")
                )
                return
            self.submitted.emit(job)
            self.watch(job.id, plan)

        return self._run(work, "submit")

    def validate(self, spec: Union[pb.JobSpec, Callable[[], pb.JobSpec]], ticket: int = 0) -> threading.Thread:
        """Have the daemon check a spec as it would a submit, queueing nothing; `checked` carries (ticket, None
        or the error)."""

        def work() -> None:
            try:
                self.client.validate(spec() if callable(spec) else spec)
            except errors.VoidlinkError as error:
                self.checked.emit(ticket, error)
                return
            self.checked.emit(ticket, None)

        return self._run(work, "validate")

    def _transfer(self, event: pb.JobEvent) -> None:
        if event.job_id:  # an older daemon takes frames before the job exists: nothing to show them on
            self.progress.emit(event)

    def watch(self, job_id: str, plan: Optional[TransferPlan] = None) -> Optional[threading.Thread]:
        """Follow one job's events until it ends (once per job, however often it is asked).

        `plan`: how the job was submitted (`Client.start`); a result the daemon streams back is
        fetched and written here before `finished` is emitted."""
        with self._lock:
            if job_id in self._watched:
                return None
            self._watched.add(job_id)

        def work() -> None:
            try:
                while not self._closed.is_set():
                    streaming = self._take_stream()
                    busy = not streaming  # past the panel's own share: look now and then instead
                    try:
                        for event in self.client.watch(job_id) if streaming else ():
                            if self._closed.is_set():
                                return
                            self.progress.emit(event)
                            if event.state in TERMINAL:
                                break
                    except errors.LimitExceeded as error:
                        if error.reason != STREAMS_BUSY:
                            raise
                        busy = True  # the daemon's streams are all taken: look now and then instead
                    finally:
                        if streaming:
                            self._give_stream()
                    # Ended, or the stream closed before the job did (daemon restarting): look, then watch again.
                    job = self.client.get(job_id)
                    if job.state in TERMINAL:
                        if plan is not None:
                            job = self.client.finish(job, plan, on_progress=self.progress.emit)
                        self.finished.emit(job)
                        return
                    if busy:
                        self.progress.emit(job_event(job))
                    time.sleep(BUSY_POLL_SECONDS if busy else 0.5)
            except errors.VoidlinkError as error:
                self.failed.emit(f"watching job {job_id}: {error}")
            except OSError as error:  # writing a streamed-back result: a full disk, a read-only folder
                self.failed.emit(f"writing the result of job {job_id}: {error.strerror or error}")
            finally:
                with self._lock:
                    self._watched.discard(job_id)

        return self._run(work, f"watch-{job_id}")

    def _take_stream(self) -> bool:
        with self._lock:
            if self._streams >= WATCH_STREAMS:
                return False
            self._streams += 1
            return True

    def _give_stream(self) -> None:
        with self._lock:
            self._streams -= 1

    def cancel(self, job_id: str) -> threading.Thread:
        def work() -> None:
            try:
                self.client.cancel(job_id)
            except errors.VoidlinkError as error:
                self.failed.emit(f"cancelling job {job_id}: {error}")

        return self._run(work, "cancel")

    def resubmit(self, job: pb.Job) -> threading.Thread:
        """The same spec again, as a new job (the old one and its result stay as they are).

        The job list holds summaries (no clips): the whole spec is asked of the daemon first."""
        job_id = job.id
        return self.submit(lambda: self.client.get(job_id).spec)

    def refresh(self, limit: int = 200) -> Optional[threading.Thread]:
        """List jobs; a refresh asked for while one is under way is dropped, not queued."""
        with self._lock:
            if self._listing:
                return None
            self._listing = True

        def work() -> None:
            try:
                self.jobs_listed.emit(self.client.jobs(limit=limit))
            except errors.VoidlinkError as error:
                if error.reason == "DAEMON_UNREACHABLE":
                    self.unreachable.emit(str(error))
                else:
                    self.failed.emit(str(error))
            finally:
                with self._lock:
                    self._listing = False

        return self._run(work, "list")

    def fetch(self, job_id: str) -> threading.Thread:
        def work() -> None:
            try:
                self.job_ready.emit(self.client.get(job_id))
            except errors.VoidlinkError as error:
                self.failed.emit(str(error))

        return self._run(work, "get")

    def start_daemon(self) -> threading.Thread:
        """Start a local daemon when none answers (detached: it outlives the panel and the host)."""

        def work() -> None:
            try:
                self.client.ensure_daemon()
            except errors.VoidlinkError as error:
                self.failed.emit(str(error))
                return
            self.daemon_ready.emit()

        return self._run(work, "start-daemon")

    def close(self) -> None:
        """Stop following jobs. The channel is left to the garbage collector: closing it under grpc's own
        connectivity poller (still waiting on an absent daemon) makes that thread fail."""
        self._closed.set()
