"""What a job may say of the frames it names from the daemon's frame cache: each frame once, with its real
size. The cache is shared by every token holder, so a spec that names frames oddly must never change a
frame the cache holds for someone else."""

from __future__ import annotations

import errno
import hashlib
import os

import grpc
import pytest
from voidlink.inference.transfer import FrameCache, Transfers
from voidlink.protos import pb, rpc
from voidlink.protos.clips import clip_json

from voidlink import errors

ALICE = "alice-0123456789abcdef0123456789"
MALLORY = "mallory-fedcba9876543210fedcba98"


def _cached(cache: FrameCache, data: bytes, frame: int) -> pb.FrameRef:
    sha = hashlib.sha256(data).hexdigest()
    cache.write(pb.FrameChunk(sha256=sha, size=len(data), offset=0, data=data))
    return pb.FrameRef(sha256=sha, size=len(data), frame=frame)


def _spec(*refs: pb.FrameRef) -> pb.JobSpec:
    spec = pb.JobSpec()
    frames = [ref.frame for ref in refs]
    spec.source.otio_json = clip_json("plate.####.exr", min(frames), max(frames))
    spec.source.uploaded_frames.extend(refs)
    return spec


def _holds(cache: FrameCache, sha: str) -> bool:
    """The cache's object for `sha` holds bytes of that hash."""
    return hashlib.sha256(cache._object(sha).read_bytes()).hexdigest() == sha


@pytest.fixture
def cache_and_transfers(tmp_path):
    cache = FrameCache(tmp_path / "cache", 1 << 30)
    return cache, Transfers(tmp_path / "data", cache, 1 << 30)


def test_a_frame_number_named_twice_is_refused_and_the_cached_frames_keep_their_bytes(cache_and_transfers):
    cache, transfers = cache_and_transfers
    victim = _cached(cache, b"the victim's plate, frame 1001" * 100, 1001)
    mine = _cached(cache, b"another user's bytes" * 100, 1001)
    with pytest.raises(errors.InvalidInput) as caught:
        transfers.materialise(_spec(victim, mine))
    assert caught.value.reason == "FRAME_TWICE" and "frame 1001 is named twice" in str(caught.value)
    assert caught.value.field == "spec.source.uploaded_frames"
    assert _holds(cache, victim.sha256) and _holds(cache, mine.sha256)
    assert not any(transfers.inputs.iterdir())  # nothing linked for a refused spec


@pytest.mark.parametrize("hard_links", [True, False], ids=["hard link", "copy"])
def test_a_link_never_writes_through_a_file_already_there(cache_and_transfers, tmp_path, monkeypatch, hard_links):
    cache, _ = cache_and_transfers
    first = _cached(cache, b"first frame" * 100, 1)
    second = _cached(cache, b"second frame" * 100, 2)
    if not hard_links:  # a job folder on another file system: the frames are copied
        def no_link(source, target):
            raise OSError(errno.EXDEV, "Invalid cross-device link")

        monkeypatch.setattr(os, "link", no_link)
    target = tmp_path / "job" / "plate.0001.exr"
    cache.link(first.sha256, target)
    with pytest.raises(errors.Conflict) as caught:
        cache.link(second.sha256, target)
    assert caught.value.reason == "FRAME_TWICE"
    assert _holds(cache, first.sha256) and _holds(cache, second.sha256)
    assert target.read_bytes() == cache._object(first.sha256).read_bytes()


@pytest.mark.parametrize("size", [0, -(10**12), (1 << 30) + 1], ids=["zero", "negative", "over the cache"])
def test_a_size_no_frame_can_have_is_refused_before_the_upload_bound_counts_it(cache_and_transfers, size):
    _, transfers = cache_and_transfers
    transfers.max_upload_bytes = 1000
    # A negative size beside a huge one would sum to less than the bound.
    spec = _spec(pb.FrameRef(sha256="a" * 64, size=10**12, frame=1), pb.FrameRef(sha256="b" * 64, size=size, frame=2))
    spec.source.uploaded_frames[0].size = 500
    with pytest.raises(errors.InvalidInput) as caught:
        transfers.materialise(spec, missing_ok=True)
    assert caught.value.reason == "BAD_SIZE" and caught.value.frame == 2
    assert caught.value.field == "spec.source.uploaded_frames.size"


def test_a_cached_frame_named_with_another_size_is_refused(cache_and_transfers):
    cache, transfers = cache_and_transfers
    ref = _cached(cache, b"frame" * 1000, 7)
    ref.size = 1
    with pytest.raises(errors.InvalidInput) as caught:
        transfers.materialise(_spec(ref))
    assert caught.value.reason == "BAD_SIZE" and "5000 bytes" in str(caught.value)


def test_over_grpc_a_refused_spec_leaves_another_users_cached_frame_whole(tmp_path, start_daemon):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"alice {ALICE}\nmallory {MALLORY}\n")
    tokens.chmod(0o600)
    daemon = start_daemon(tokens_file=tokens)
    stub = rpc.VoidLinkStub(grpc.insecure_channel(daemon.address))
    as_alice, as_mallory = (("authorization", f"Bearer {ALICE}"),), (("authorization", f"Bearer {MALLORY}"),)
    victim, mine = b"alice's plate 1001" * 50, b"mallory" * 50
    refs = []
    for data, who in ((victim, as_alice), (mine, as_mallory)):
        sha = hashlib.sha256(data).hexdigest()
        list(stub.UploadFrames(iter([pb.FrameChunk(sha256=sha, size=len(data), data=data)]), metadata=who))
        refs.append(pb.FrameRef(sha256=sha, size=len(data), frame=1001))
    with pytest.raises(grpc.RpcError) as caught:
        stub.SubmitJob(pb.SubmitJobRequest(spec=_spec(*refs)), metadata=as_mallory)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "named twice" in caught.value.details()
    stored = daemon.data_dir / "cache" / "objects" / refs[0].sha256[:2] / refs[0].sha256
    assert stored.read_bytes() == victim
