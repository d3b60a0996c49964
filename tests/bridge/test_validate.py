"""`Client.validate` against a daemon that predates `validate_only`: the job it queues is cancelled at once and
the user is told, in words, that the daemon is too old to check without submitting."""

from __future__ import annotations

from concurrent import futures

import grpc
import pytest
from support.shots import write_shot
from voidlink.bridge import Client, build_spec
from voidlink.protos import SERVICE_NAME, pb
from voidlink.protos.vocabulary import TERMINAL

from voidlink import errors


class OldDaemon:
    """A real gRPC server in front of a real daemon that reads SubmitJob as a daemon from before field 3 did: the
    field is unknown to it, so `validate_only` never reaches the daemon and the job is queued. Every other call is
    passed through as it is."""

    def __init__(self, daemon_address: str) -> None:
        self.channel = grpc.insecure_channel(daemon_address)
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.submitted: list[str] = []
        handlers = {
            name: grpc.unary_unary_rpc_method_handler(self._forward(name))
            for name in ("SubmitJob", "CancelJob", "GetJob", "GetInfo")
        }
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
        self.address = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        self.server.start()

    def _forward(self, name: str):
        call = self.channel.unary_unary(
            f"/{SERVICE_NAME}/{name}",
            request_serializer=lambda raw: raw,
            response_deserializer=lambda raw: raw,
        )

        def handle(raw: bytes, context) -> bytes:
            if name == "SubmitJob":
                request = pb.SubmitJobRequest.FromString(raw)
                request.ClearField("validate_only")  # what an older contract's parser leaves out
                raw = request.SerializeToString()
            try:
                answer = call(raw, metadata=context.invocation_metadata())
            except grpc.RpcError as error:
                context.abort(error.code(), error.details())
            if name == "SubmitJob":
                self.submitted.append(pb.SubmitJobResponse.FromString(answer).job.id)
            return answer

        return handle

    def stop(self) -> None:
        self.server.stop(0).wait()
        self.channel.close()


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


def test_a_short_lived_client_leaves_no_traceback_behind(start_daemon):
    """A script that asks a few things and closes at once (`with Client() as c: ...`) must not have gRPC's
    connectivity thread die on the closed channel and print a traceback in the host's console."""
    import threading

    daemon = start_daemon()
    failures: list = []
    before = set(threading.enumerate())
    previous_hook, threading.excepthook = threading.excepthook, failures.append
    try:
        for _ in range(5):
            with Client(daemon.address) as client:
                for _ in range(3):
                    client.info()
                    client.jobs()
        for thread in set(threading.enumerate()) - before:
            if thread.daemon and "_run" in thread.name:  # gRPC's poll and delivery threads
                thread.join(timeout=10)
    finally:
        threading.excepthook = previous_hook
    assert [str(failure.exc_value) for failure in failures] == []
