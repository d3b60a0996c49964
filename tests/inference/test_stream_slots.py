"""Streams the daemon holds at once: each takes an RPC thread while it lasts, so they are bounded below the
thread count, and one token may hold at most half of them; the other calls are always answered."""

from __future__ import annotations

import hashlib
import threading

import grpc
import pytest
from support.daemons import wait_for
from voidlink.inference.bounds import UNARY_THREADS, StreamSlots
from voidlink.inference.daemon import Daemon
from voidlink.inference.security import SecurityConfig
from voidlink.protos import pb, rpc

from voidlink import errors

ALICE = "alice-0123456789abcdef0123456789"
MALLORY = "mallory-fedcba9876543210fedcba98"


def test_slots_are_bounded_in_all_and_per_caller_and_come_back_when_a_stream_ends():
    slots = StreamSlots(UNARY_THREADS + 4, shared=True)
    assert (slots.total, slots.per_caller) == (4, 2)
    with slots.hold("mallory", "WatchJob"), slots.hold("mallory", "WatchJob"):
        with pytest.raises(errors.LimitExceeded) as caught:
            with slots.hold("mallory", "UploadFrames"):
                pass
        assert caught.value.reason == "STREAMS_BUSY" and "at most 2 streams at once for one token (mallory)" in str(
            caught.value
        )
        with slots.hold("alice", "WatchJob"), slots.hold("bob", "WatchJob"):
            with pytest.raises(errors.LimitExceeded, match="UploadFrames: .* serves at most 4 streams at once,"):
                with slots.hold("carol", "UploadFrames"):
                    pass
    with slots.hold("mallory", "WatchJob"), slots.hold("mallory", "WatchJob"):
        pass  # each came back, a refused one too
    alone = StreamSlots(UNARY_THREADS + 4, shared=False)  # no tokens: one user, every stream is theirs
    assert alone.per_caller == alone.total == 4
    assert StreamSlots(2, shared=True).total == 1  # a tiny pool still serves one stream


@pytest.fixture
def two_users(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"alice {ALICE}\nmallory {MALLORY}\n")
    tokens.chmod(0o600)
    daemon = Daemon(
        listen="127.0.0.1:0",
        data_dir=tmp_path / "data",
        security=SecurityConfig(tokens_file=tokens),
        max_workers=UNARY_THREADS + 4,  # four streams at once, two per token
    )
    daemon.start()
    yield daemon
    daemon.stop(grace=1.0)


def _held_upload(stub, token: str, index: int, release: threading.Event):
    """An UploadFrames stream that sends one chunk of a frame and then holds on, never finishing it."""
    data = bytes([index]) * 64
    sha = hashlib.sha256(data).hexdigest()

    def chunks():
        yield pb.FrameChunk(sha256=sha, size=len(data) * 2, offset=0, data=data)
        release.wait(60)

    call = stub.UploadFrames(chunks(), metadata=(("authorization", f"Bearer {token}"),) if token else ())
    assert next(call).offset == len(data)  # acknowledged: the daemon holds this stream's slot
    return call


def test_one_token_holding_its_share_of_streams_leaves_the_daemon_to_everyone_else(two_users):
    stub = rpc.VoidLinkStub(grpc.insecure_channel(two_users.address))
    as_alice = (("authorization", f"Bearer {ALICE}"),)
    release = threading.Event()
    held = [_held_upload(stub, MALLORY, i, release) for i in range(2)]
    try:
        with pytest.raises(grpc.RpcError) as caught:
            _held_upload(stub, MALLORY, 2, release)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "at most 2 streams at once for one token (mallory)" in caught.value.details()
        assert stub.GetInfo(pb.GetInfoRequest(), metadata=as_alice, timeout=30).version
        held.append(_held_upload(stub, ALICE, 3, release))  # her own streams are hers to open
    finally:
        release.set()
        for call in held:
            call.cancel()
    # Ended streams give their slots back: mallory may stream again.
    again = threading.Event()
    wait_for(lambda: _try_upload(stub, again), timeout=30)
    again.set()


def _try_upload(stub, release: threading.Event) -> bool:
    try:
        _held_upload(stub, MALLORY, 4, release).cancel()
        return True
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        return False


@pytest.fixture
def one_stream(tmp_path, source_guard):
    from support.shots import write_shot

    shot = write_shot(tmp_path / "ws" / "sh010", frames=3, width=64, height=48)
    source_guard(shot.folder)
    (tmp_path / "studio").mkdir()
    daemon = Daemon(
        listen="127.0.0.1:0",
        data_dir=tmp_path / "data",
        security=SecurityConfig(roots=[str(tmp_path / "studio")]),  # it cannot see the shot: frames are uploaded
        max_workers=UNARY_THREADS + 1,  # one stream at a time
    )
    daemon.start()
    yield daemon, shot
    daemon.stop(grace=1.0)


def test_an_upload_refused_for_want_of_a_stream_waits_for_one_and_goes_on(one_stream, tmp_path, monkeypatch):
    from voidlink.bridge import Client, build_spec
    from voidlink.bridge import upload as client_upload

    daemon, shot = one_stream
    stub = rpc.VoidLinkStub(grpc.insecure_channel(daemon.address))
    release = threading.Event()
    held = _held_upload(stub, "", 9, release)  # someone else's stream takes the only one
    refused, freed = threading.Event(), threading.Event()
    real_sleep = client_upload.time.sleep

    def sleep(seconds):
        if not refused.is_set():
            refused.set()  # the upload was refused and waits: now the stream frees up
            assert freed.wait(60)
        else:
            real_sleep(0.05)

    monkeypatch.setattr(client_upload.time, "sleep", sleep)
    client = Client(daemon.address)
    spec = build_spec(shot.plate, shot.mask, backend="classical", output=tmp_path / "ws" / "o" / "c.####.exr")
    done: list = []
    worker = threading.Thread(target=lambda: done.append(client.start(spec, transfer="stream")))
    worker.start()
    try:
        assert refused.wait(60)
    finally:
        release.set()
        held.cancel()
        freed.set()
    worker.join(120)
    job, _ = done[0]
    assert client.stats.frames_sent == 6 and client.get(job.id).state != pb.JOB_STATE_FAILED


def test_wait_follows_a_job_by_asking_when_no_stream_is_free(one_stream, tmp_path, monkeypatch):
    from voidlink.bridge import Client, build_spec

    daemon, shot = one_stream
    client = Client(daemon.address)
    spec = build_spec(shot.plate, shot.mask, backend="classical", output=tmp_path / "ws" / "o" / "c.####.exr")
    job, plan = client.start(spec, transfer="stream")
    stub = rpc.VoidLinkStub(grpc.insecure_channel(daemon.address))
    release = threading.Event()
    held = _held_upload(stub, "", 9, release)  # the only stream is taken while the job runs
    seen: list[pb.JobEvent] = []
    try:
        final = client.wait(job.id, on_progress=seen.append)
    finally:
        release.set()
        held.cancel()
    assert final.state == pb.JOB_STATE_SUCCEEDED and seen and seen[-1].job_id == job.id
