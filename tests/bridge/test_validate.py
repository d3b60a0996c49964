"""`Client.validate` against a daemon that predates `validate_only`: the job it queues is cancelled at once and
the user is told, in words, that the daemon is too old to check without submitting."""

from __future__ import annotations

import contextlib
import gc
import re
import socket
import subprocess
import sys
import threading
import time

import grpc
import pytest
from support.old_daemon import OldDaemon
from support.shots import write_shot
from voidlink.bridge import Client, build_spec
from voidlink.protos import pb
from voidlink.protos.vocabulary import TERMINAL

from voidlink import errors


@pytest.fixture
def old_daemon(start_daemon):
    daemon = start_daemon()
    front = OldDaemon(daemon.address)
    yield daemon, front
    front.stop()


def test_validate_on_a_daemon_too_old_cancels_what_it_queued_and_says_so(old_daemon, tmp_path):
    daemon, front = old_daemon
    shot = write_shot(tmp_path / "sh010", frames=3)
    output = tmp_path / "out" / "clean.####.exr"
    output.parent.mkdir()
    spec = build_spec(shot.plate, shot.mask, frames=(shot.first, shot.last), output=output, backend="classical")
    with Client(daemon.address) as current:
        answer = current.validate(spec)  # the daemon of today checks and stores nothing
        assert answer.id == "" and current.jobs() == []
    with Client(front.address) as client:
        with pytest.raises(errors.ProtocolMismatch) as refused:
            client.validate(spec)
    assert refused.value.reason == "DAEMON_TOO_OLD" and "too old to validate" in str(refused.value)
    (queued,) = front.submitted
    assert queued and queued in str(refused.value)
    with Client(daemon.address) as current:
        job = current.get(queued)
        assert job.state in TERMINAL and job.state != pb.JOB_STATE_SUCCEEDED  # cancelled, never run to the end
    assert not list(output.parent.glob("clean.*.exr"))


def _join_poll_threads(before: set) -> list[threading.Thread]:
    """Wait up to ten seconds in all for gRPC's poll and delivery threads ("Thread-N (_run)") started since
    `before` to end; those still running."""
    started = [t for t in set(threading.enumerate()) - before if t.daemon and "_run" in t.name]
    deadline = time.monotonic() + 10.0
    for thread in started:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    return [t for t in started if t.is_alive()]


@contextlib.contextmanager
def thread_tracebacks():
    """The exceptions that kill threads started inside the block (gRPC's poll and delivery threads are
    waited for before it ends), instead of tracebacks printed on the console."""
    failures: list = []
    before = set(threading.enumerate())
    previous_hook, threading.excepthook = threading.excepthook, failures.append
    try:
        yield failures
        _join_poll_threads(before)
    finally:
        threading.excepthook = previous_hook


def test_a_short_lived_client_leaves_no_traceback_behind(start_daemon):
    """A script that asks a few things and closes at once (`with Client() as c: ...`) must not have gRPC's
    connectivity thread die on the closed channel and print a traceback in the host's console."""
    daemon = start_daemon()
    with thread_tracebacks() as failures:
        for _ in range(5):
            with Client(daemon.address) as client:
                for _ in range(3):
                    client.info()
                    client.jobs()
    assert [str(failure.exc_value) for failure in failures] == []


def test_a_client_closed_right_after_a_health_check_leaves_no_traceback_behind(start_daemon):
    """`is_serving` (what `ensure_daemon` and `doctor` ask) waits with gRPC's ready future, which leaves a
    request to connect pending for the connectivity thread's next turn; a close before that turn must not
    have the thread ask the closed channel and die."""
    daemon = start_daemon()
    with thread_tracebacks() as failures:
        for _ in range(5):
            client = Client(daemon.address)
            assert client.is_serving()
            assert client.is_serving()  # on a channel already connected
            client.close()
    assert [str(failure.exc_value) for failure in failures] == []


def _poll_threads_started_by(work) -> list[threading.Thread]:
    """gRPC connectivity poll threads that `work` started and that are still running once they have had
    ten seconds to see they have nothing left to watch (each looks every 0.2 s)."""
    before = set(threading.enumerate())
    work()
    gc.collect()
    return _join_poll_threads(before)


def test_a_client_let_go_of_without_a_close_leaves_no_thread_behind(start_daemon):
    """A host script's `Client().info()` with no close, over and over in a long Nuke session: nothing of
    those clients may run on (each kept a poll thread waking five times a second, for good)."""
    daemon = start_daemon()

    def ask_and_drop() -> None:
        for _ in range(5):
            Client(daemon.address).info()
            assert Client(daemon.address).is_serving()

    # A connected client asks gRPC's core for the channel's state (grpcio's private channel: if a release
    # drops it, every call waits for ready instead, correct but slower, and this says so).
    with Client(daemon.address) as client:
        client.info()
        assert client.link._check_connectivity() is grpc.ChannelConnectivity.READY

    assert _poll_threads_started_by(ask_and_drop) == []


def test_a_client_that_finds_no_daemon_leaves_no_thread_behind(tmp_path):
    """A wait for a daemon that never answers gives up and stops watching the address, closed or not."""
    with socket.socket() as free:  # an address nobody listens on
        free.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{free.getsockname()[1]}"

    def try_in_vain() -> None:
        client = Client(address, connect_timeout=0.3)
        with pytest.raises(errors.Unavailable, match=re.escape(address)):
            client.info()
        assert not client.is_serving(timeout=0.3)

    assert _poll_threads_started_by(try_in_vain) == []


def test_a_script_that_never_closes_its_client_exits_at_once(start_daemon, tmp_path):
    """A module-level `client = Client()` that is never closed: the interpreter's exit must not hang on
    gRPC's threads (a channel finalised while a poll thread is frozen deadlocks)."""
    daemon = start_daemon()
    script = tmp_path / "script.py"
    script.write_text(
        "from voidlink.bridge import Client\n"
        f"client = Client({daemon.address!r})\n"
        "print(client.info().version)\n"
        f"other = Client({daemon.address!r})\n"
        "assert other.is_serving()\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() and "Traceback" not in done.stderr, done.stderr
