"""The daemon's frame cache: a frame asked about at the moment a stream completes it, the bytes it counts,
what its cap evicts and what it refuses."""

from __future__ import annotations

import hashlib

import pytest
from voidlink.inference.transfer import FrameCache
from voidlink.protos import pb

from voidlink.errors import LimitExceeded


def test_status_of_a_frame_completed_while_it_looks_says_present(tmp_path):
    cache = FrameCache(tmp_path / "cache", 1 << 30)
    data = bytes(range(256)) * 64
    sha = hashlib.sha256(data).hexdigest()
    half = len(data) // 2
    cache.write(pb.FrameChunk(sha256=sha, size=len(data), offset=0, data=data[:half]))
    assert cache.status(sha) == (False, half)
    partial = cache._partial

    def completed_meanwhile(name):
        # Another stream writes the last chunk between status's two looks: the partial file is renamed.
        if name == sha and not completed_meanwhile.done:
            completed_meanwhile.done = True
            assert cache.write(pb.FrameChunk(sha256=sha, size=len(data), offset=half, data=data[half:]))[1]
        return partial(name)

    completed_meanwhile.done = False
    cache._partial = completed_meanwhile
    assert cache.status(sha) == (True, len(data))  # not FileNotFoundError, nor "missing"


def _frame(index: int, size: int) -> tuple[bytes, str]:
    data = bytes([index % 256]) * size
    return data, hashlib.sha256(data).hexdigest()


def _on_disk(cache: FrameCache) -> int:
    return sum(p.stat().st_size for p in cache.objects.glob("*/*") if p.is_file())


def test_the_cache_counts_its_bytes_as_frames_come_are_evicted_and_vanish(tmp_path):
    cache = FrameCache(tmp_path / "cache", 10_000)
    shas = []
    for index in range(5):  # 5 x 3000 bytes into 10 000: the two oldest go
        data, sha = _frame(index, 3000)
        assert cache.write(pb.FrameChunk(sha256=sha, size=len(data), offset=0, data=data)) == (3000, True)
        shas.append(sha)
        assert cache.used_bytes == _on_disk(cache) <= 10_000
    assert [cache.status(sha)[0] for sha in shas] == [False, False, True, True, True]
    assert cache.used_bytes == 9000
    # A frame removed by hand is no longer counted once the cache finds it gone ...
    cache._object(shas[2]).unlink()
    assert cache.status(shas[2]) == (False, 0) and cache.used_bytes == 6000 == _on_disk(cache)
    # ... and a daemon starting over the folder counts what is there.
    assert FrameCache(tmp_path / "cache", 10_000).used_bytes == 6000


def test_a_pinned_frame_is_kept_and_the_cap_still_holds(tmp_path):
    cache = FrameCache(tmp_path / "cache", 5000)
    first, first_sha = _frame(1, 3000)
    cache.write(pb.FrameChunk(sha256=first_sha, size=3000, offset=0, data=first))
    cache.pin([first_sha])
    second, second_sha = _frame(2, 3000)
    # The cap holds: the pinned frame stays, and the frame that cannot fit is refused by name, not
    # dropped for its job to miss later.
    with pytest.raises(LimitExceeded) as caught:
        cache.write(pb.FrameChunk(sha256=second_sha, size=3000, offset=0, data=second))
    assert caught.value.reason == "CACHE_FULL" and "--cache-size" in str(caught.value)
    assert second_sha[:12] in str(caught.value) and "uploads under way" in str(caught.value)
    assert cache.status(first_sha)[0] and cache.status(second_sha) == (False, 0)
    assert cache.used_bytes == 3000 == _on_disk(cache) and not list(cache.partial.iterdir())
    cache.unpin([first_sha])
    cache.write(pb.FrameChunk(sha256=second_sha, size=3000, offset=0, data=second))
    assert not cache.status(first_sha)[0] and cache.status(second_sha)[0]
    assert cache.used_bytes == 3000 == _on_disk(cache)


def test_a_chunk_is_in_the_partial_file_as_soon_as_it_is_stored(tmp_path):
    # What an acknowledgement promises: another look at the disk (a resuming stream's) sees every byte.
    cache = FrameCache(tmp_path / "cache", 1 << 20)
    data, sha = _frame(7, 5000)
    assert cache.write(pb.FrameChunk(sha256=sha, size=5000, offset=0, data=data[:2000])) == (2000, False)
    assert cache._partial(sha).read_bytes() == data[:2000]
    assert cache.write(pb.FrameChunk(sha256=sha, size=5000, offset=2000, data=data[2000:3500])) == (3500, False)
    assert cache._partial(sha).read_bytes() == data[:3500]


def test_unfinished_uploads_are_bounded_by_the_cap_the_idle_ones_dropped_first(tmp_path):
    cap = 1 << 16
    cache = FrameCache(tmp_path / "cache", cap)
    shas = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(3)]  # frames that never complete

    def start(sha: str, size: int) -> None:
        cache.write(pb.FrameChunk(sha256=sha, size=cap, offset=0, data=b"\0" * size))

    def held() -> int:
        return sum(p.stat().st_size for p in (tmp_path / "cache" / "partial").iterdir())

    start(shas[0], cap // 2)
    cache.release([shas[0]])  # its stream broke: an idle partial copy, kept for a resume
    start(shas[1], cap // 2)  # a stream still writing this one
    start(shas[2], cap // 2)  # no room: the idle copy goes, the one being written stays
    assert cache.status(shas[0]) == (False, 0) and cache.status(shas[1]) == (False, cap // 2)
    assert held() == cap
    with pytest.raises(LimitExceeded) as caught:
        cache.write(pb.FrameChunk(sha256=shas[1], size=cap, offset=cap // 2, data=b"\0"))  # both are being written
    assert caught.value.reason == "CACHE_FULL" and "uploads under way hold" in str(caught.value)
    assert held() <= cap
    again = FrameCache(tmp_path / "cache", cap)  # a restart counts what is there: every copy is idle now
    again.write(pb.FrameChunk(sha256="f" * 64, size=cap, offset=0, data=b"\0" * 10))
    assert held() <= cap and again.status("f" * 64) == (False, 10)


def test_a_partial_copy_whose_stream_is_resuming_it_is_never_dropped_for_room(tmp_path):
    import threading

    cap = 1 << 16
    cache = FrameCache(tmp_path / "cache", cap)
    data = bytes(range(256)) * (cap // 512)  # half the cap, one frame of twice that
    whole = data * 2
    sha = hashlib.sha256(whole).hexdigest()
    cache.write(pb.FrameChunk(sha256=sha, size=len(whole), offset=0, data=data))
    cache.release([sha])  # its stream broke: idle, until a new stream resumes it
    resumed, other = threading.Event(), threading.Event()
    stripe = cache._stripes[int(sha[:2], 16) % len(cache._stripes)]
    with stripe:  # the resuming stream holds its frame's stripe from its first look to its write
        def crowd():
            try:  # another frame's chunk needs the room this copy holds
                cache.write(pb.FrameChunk(sha256="e" * 64, size=cap, offset=0, data=b"\0" * (cap // 2 + 1)))
            except LimitExceeded:
                other.set()

        thread = threading.Thread(target=crowd)
        thread.start()
        thread.join(60)
        resumed.set()
    assert other.is_set()  # refused: the only copy that could go was being resumed
    assert cache.write(pb.FrameChunk(sha256=sha, size=len(whole), offset=len(data), data=data)) == (len(whole), True)
    assert hashlib.sha256(cache._object(sha).read_bytes()).hexdigest() == sha
