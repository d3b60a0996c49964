"""Submitting a VoidRemove (or VoidMatte) node's job, following it without blocking Nuke, cancelling, re-attaching.

Only Nuke's main thread touches nodes: a `JobWatcher` thread follows the daemon's event stream,
drives a `nuke.ProgressTask`, and hands every node update to `nuke.executeInMainThread`. Nodes
are found again by their `job_id` knob, so a renamed node, or one in a reopened script, still
gets its updates. Closing the script stops the watchers but leaves the jobs running; opening a
script with a VoidRemove whose job had not ended starts a watcher again.
"""

from __future__ import annotations

import queue
import sys
import threading
from typing import Callable, Optional

import nuke
from voidlink.bridge.client import Client, TransferPlan
from voidlink.bridge.result import RemoveResult, result_or_raise
from voidlink.hosts.nuke import matte as matte_node
from voidlink.hosts.nuke import node as void_node
from voidlink.protos import pb
from voidlink.protos.vocabulary import TERMINAL, state_name

from voidlink import errors

RETRY_SECONDS = 1.0  # between attempts to reach a daemon that stopped answering
_watchers: dict = {}  # job id -> JobWatcher
_lock = threading.Lock()


def _gui() -> bool:
    return bool(nuke.env.get("gui"))


def _client(group) -> Client:
    return Client(group["address"].value().strip() or None)


def _tell(text: str) -> None:
    if _gui():
        nuke.message(text)
    else:
        print(f"voidlink: {text}", file=sys.stderr)


def _resolve(group_or_name):
    group = nuke.toNode(group_or_name) if isinstance(group_or_name, str) else group_or_name
    if not void_node.is_void_node(group):
        raise errors.InvalidInput(f"{group_or_name} is not a VoidRemove node", reason="NOT_A_VOID_NODE", field="node")
    return group


def _ensure_daemon(client: Client, ask: bool) -> bool:
    """True when a daemon answers (after starting one if the user agrees, or always in batch)."""
    if client.is_serving(timeout=1.0):
        return True
    if ask and not nuke.ask(
        f"No voidlink daemon answers at {client.address}.\n\nStart one on this machine now? "
        "(It keeps running after Nuke closes; `voidlink serve` starts one by hand.)"
    ):
        return False
    client.ensure_daemon()
    return True


def _prepare_and_submit(group, client: Client, ask: bool) -> Optional[tuple]:
    """Check the node, start the daemon if needed, render inputs, submit (uploading what the daemon cannot
    read): (job, transfer plan), or None when the user declined."""
    if matte_node.is_matte_node(group):
        spec, pending, (first, last) = matte_node.build_spec(group)
    else:
        remove, pending = void_node.build_effect(group)
        first, last = remove.validate()
    if not _ensure_daemon(client, ask):
        group["status"].setValue(f"not submitted: no daemon at {client.address}")
        return None
    if matte_node.is_matte_node(group):
        client.check_mattes()
    else:
        spec = remove.to_job_spec()
    group["status"].setValue("rendering inputs" if pending else "submitting")
    void_node.render_inputs(group, pending, first, last)
    job, plan = client.start(spec)
    group["job_id"].setValue(job.id)
    group["job_state"].setValue(state_name(job.state))
    group["status"].setValue(f"queued: job {job.id}, frames {first}-{last}")
    return job, plan


def submit(group) -> Optional[str]:
    """The Submit button: the job id, or None after telling the user why nothing was submitted."""
    group = _resolve(group)
    previous = group["job_id"].value()
    if previous and group["job_state"].value() not in void_node.TERMINAL_STATES and previous in _watchers:
        _tell(f"{group.name()}: job {previous} is still running; cancel it first or wait for it to end.")
        return None
    client = _client(group)
    try:
        submitted = _prepare_and_submit(group, client, ask=_gui())
    except errors.VoidlinkError as error:
        group["status"].setValue(f"not submitted: {error}")
        _tell(str(error))
        return None
    if submitted is None:
        return None
    job, plan = submitted
    watch(job.id, client.address, plan=plan)
    return job.id


def cancel(group) -> bool:
    """The Cancel button: ask the daemon to cancel; the watcher reports the outcome."""
    group = _resolve(group)
    job_id = group["job_id"].value()
    if not job_id or group["job_state"].value() in void_node.TERMINAL_STATES:
        _tell(f"{group.name()}: no running job to cancel.")
        return False
    try:
        job = _client(group).cancel(job_id)
    except errors.VoidlinkError as error:
        _tell(f"{group.name()}: cannot cancel job {job_id}: {error}")
        return False
    if job.state not in TERMINAL:
        group["status"].setValue(f"cancelling job {job_id}")
    return True


# -- following a job -------------------------------------------------------------------------------


def _percent(done: int, total: int) -> int:
    return max(0, min(100, int(round(100.0 * done / total)))) if total > 0 else 0


def _status_line(state: str, done: int, total: int, eta: float, message: str) -> str:
    if state == "running":
        text = f"running: {done}/{total} frames ({_percent(done, total)}%)"
        if eta >= 0:
            text += f", about {eta:.0f} s left"
        return text + (f" - {message}" if message else "")
    return state + (f": {message}" if message else "")


def _apply_event(job_id: str, state: str, done: int, total: int, eta: float, message: str) -> None:
    """Main thread: show one event on every node following `job_id`."""
    for group in void_node.find_by_job(job_id):
        group["job_state"].setValue(state)
        group["status"].setValue(_status_line(state, done, total, eta, message))


def _finish(job_id: str, job_bytes: bytes) -> None:
    """Main thread: the job ended; switch the result in, or say why not (keeping any earlier result)."""
    job = pb.Job.FromString(job_bytes)
    for group in void_node.find_by_job(job_id):
        group["job_state"].setValue(state_name(job.state))
        try:
            result = result_or_raise(job)
        except errors.JobCancelled:
            group["status"].setValue(f"cancelled: job {job_id}; any earlier result is kept")
            continue
        except errors.VoidlinkError as error:
            group["status"].setValue(f"failed: {error}")
            continue
        void_node.show_result(group, result.printf_pattern, result.first, result.last)
        notes = f" - {'; '.join(result.notes)}" if result.notes else ""
        group["status"].setValue(
            f"done: {result.last - result.first + 1} frames {result.first}-{result.last} ({result.backend}){notes}"
        )


def _watch_failed(job_id: str, text: str) -> None:
    for group in void_node.find_by_job(job_id):
        group["status"].setValue(f"lost contact with job {job_id}: {text}")


def _daemon_unreachable(job_id: str, text: str) -> None:
    for group in void_node.find_by_job(job_id):
        group["status"].setValue(f"waiting for the daemon (job {job_id} keeps its place; retrying): {text}")


class DaemonUnreachable(Exception):
    """The daemon stopped answering while a job was followed (it may be restarting)."""


class JobWatcher(threading.Thread):
    """Follows one job on a worker thread; every node update goes through nuke.executeInMainThread."""

    def __init__(self, job_id: str, address: str, title: str, plan: Optional[TransferPlan] = None) -> None:
        super().__init__(name=f"voidlink-watch-{job_id}", daemon=True)
        self.job_id = job_id
        self.client = Client(address)
        self.plan = plan  # how the job was submitted: a streamed-back result is fetched when it ends
        self.title = title
        self._stop_requested = threading.Event()
        self._events: queue.Queue = queue.Queue()
        self.cancel_requested = False

    def stop(self) -> None:
        """Stop following (the job itself goes on)."""
        # The stream reader notices at its next event and ends; closing the channel under it instead
        # would break gRPC's own connectivity thread.
        self._stop_requested.set()

    def _read_events(self) -> None:
        while not self._stop_requested.is_set():
            try:
                for event in self.client.watch(self.job_id):
                    if self._stop_requested.is_set():
                        return
                    self._events.put(event)
                    if event.state in TERMINAL:
                        return
                if self.client.get(self.job_id).state in TERMINAL:  # stream closed early: look, then retry
                    self._events.put(None)
                    return
            except errors.Unavailable as error:
                if self._stop_requested.is_set():
                    return
                # A daemon that restarts resumes its jobs where they were: keep following, and say so.
                self._events.put(DaemonUnreachable(str(error)))
            except Exception as error:  # noqa: BLE001 - anything else the stream raises ends up on the node
                if not self._stop_requested.is_set():
                    self._events.put(error)
                return
            self._stop_requested.wait(RETRY_SECONDS)

    def run(self) -> None:
        task = nuke.ProgressTask(self.title)
        reader = threading.Thread(target=self._read_events, name=f"{self.name}-stream", daemon=True)
        reader.start()
        try:
            while not self._stop_requested.is_set():
                if task.isCancelled() and not self.cancel_requested:
                    self.cancel_requested = True
                    task.setMessage("cancelling")
                    try:
                        self.client.cancel(self.job_id)
                    except errors.VoidlinkError as error:
                        nuke.executeInMainThread(_watch_failed, (self.job_id, f"cannot cancel: {error}"))
                try:
                    item = self._events.get(timeout=0.1)
                except queue.Empty:
                    continue
                if isinstance(item, DaemonUnreachable):
                    task.setMessage("waiting for the daemon")
                    nuke.executeInMainThread(_daemon_unreachable, (self.job_id, str(item)))
                    continue
                if isinstance(item, Exception):
                    nuke.executeInMainThread(_watch_failed, (self.job_id, str(item)))
                    return
                if item is not None:
                    state = state_name(item.state)
                    task.setProgress(_percent(item.frames_done, item.frames_total))
                    task.setMessage(_status_line(state, item.frames_done, item.frames_total, item.eta_seconds, ""))
                    args = (self.job_id, state, item.frames_done, item.frames_total, item.eta_seconds, item.message)
                    nuke.executeInMainThread(_apply_event, args)
                if item is None or item.state in TERMINAL:
                    job = self.client.get(self.job_id)
                    if self.plan is not None and self.plan.stream_back and job.state == pb.JOB_STATE_SUCCEEDED:
                        task.setMessage("fetching the result")
                        job = self.client.finish(job, self.plan)
                    if job.state == pb.JOB_STATE_SUCCEEDED:
                        task.setProgress(100)
                    nuke.executeInMainThread(_finish, (self.job_id, job.SerializeToString()))
                    return
        except (errors.VoidlinkError, OSError) as error:  # OSError: writing a streamed-back result here
            nuke.executeInMainThread(_watch_failed, (self.job_id, str(error)))
        finally:
            del task  # Nuke removes the progress bar when the task object goes away
            with _lock:
                if _watchers.get(self.job_id) is self:
                    del _watchers[self.job_id]


def watch(job_id: str, address: str, title: Optional[str] = None, plan: Optional[TransferPlan] = None) -> JobWatcher:
    """Follow `job_id` on a worker thread (one watcher per job); `plan` from `Client.start`."""
    with _lock:
        existing = _watchers.get(job_id)
        if existing is not None and existing.is_alive():
            return existing
        watcher = JobWatcher(job_id, address, title or f"VOID remove: job {job_id}", plan)
        _watchers[job_id] = watcher
    watcher.start()
    return watcher


def watchers() -> dict:
    with _lock:
        return dict(_watchers)


def reattach_all() -> list:
    """Follow again every VoidRemove job of the open script that had not ended (on script load)."""
    attached = []
    for group in void_node.void_nodes():
        job_id = group["job_id"].value()
        if not job_id or group["job_state"].value() in void_node.TERMINAL_STATES:
            continue
        address = _client(group).address
        group["status"].setValue(f"re-attaching to job {job_id}")
        watch(job_id, address, f"VOID remove: {group.name()}")
        attached.append(job_id)
    return attached


def detach_all() -> None:
    """Stop following jobs (on script close); the daemon keeps running them."""
    for watcher in list(watchers().values()):
        watcher.stop()


# -- batch -----------------------------------------------------------------------------------------


def render(group_or_name, on_progress: Optional[Callable[[str], None]] = None) -> RemoveResult:
    """Submit the node's job and wait for it (batch, `nuke -t`, farm). Raises voidlink errors."""
    group = _resolve(group_or_name)
    report = on_progress or (lambda line: print(line, flush=True))
    client = _client(group)
    try:
        submitted = _prepare_and_submit(group, client, ask=False)
    except errors.VoidlinkError as error:
        group["status"].setValue(f"not submitted: {error}")
        raise
    assert submitted is not None  # batch starts the daemon rather than asking
    job, plan = submitted
    name = group.name()
    report(f"{name}: submitted job {job.id}")
    last_percent = [-1]

    def progress(event: pb.JobEvent) -> None:
        percent = _percent(event.frames_done, event.frames_total)
        if percent != last_percent[0] or event.state in TERMINAL:
            last_percent[0] = percent
            state = state_name(event.state)
            report(f"{name}: {_status_line(state, event.frames_done, event.frames_total, -1, event.message)}")

    final = client.finish(client.wait(job.id, on_progress=progress), plan)
    _finish(job.id, final.SerializeToString())
    return result_or_raise(final)
