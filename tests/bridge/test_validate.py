"""`Client.validate` against a daemon that predates `validate_only`: the job it queues is cancelled at once and
the user is told, in words, that the daemon is too old to check without submitting."""

from __future__ import annotations

import contextlib
import threading

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


@contextlib.contextmanager
def thread_tracebacks():
    """The exceptions that kill threads started inside the block (gRPC's poll and delivery threads are
    waited for before it ends), instead of tracebacks printed on the console."""
    failures: list = []
    before = set(threading.enumerate())
    previous_hook, threading.excepthook = threading.excepthook, failures.append
    try:
        yield failures
        for thread in set(threading.enumerate()) - before:
            if thread.daemon and "_run" in thread.name:
                thread.join(timeout=10)
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
