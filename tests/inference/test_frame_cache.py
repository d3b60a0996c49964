"""The daemon's frame cache asked about a frame at the moment a stream completes it."""

from __future__ import annotations

import hashlib

from voidlink.inference.transfer import FrameCache
from voidlink.protos import pb


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
