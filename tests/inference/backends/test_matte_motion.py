"""The motion-based affected proposal finds a moving shadow, and proposes nothing where nothing changes."""

from __future__ import annotations

import numpy as np
import pytest
from voidlink.inference.backends.matte.base import Cancelled, MatteRequest
from voidlink.inference.backends.matte.motion import MotionProposer, grow_to_grid
from voidlink.inference.synthetic import make_frame
from voidlink.media.quadmask import AFFECTED

W, H, N = 160, 96, 12


class Reader:
    def __init__(self, kind: str) -> None:
        self.shot = [make_frame(kind, W, H, t, frames=N) for t in range(N)]

    @property
    def frames(self) -> list[int]:
        return list(range(N))

    @property
    def size(self) -> tuple[int, int]:
        return W, H

    def read(self, frame: int) -> np.ndarray:
        return self.shot[frame].plate

    def matte(self, frame: int) -> np.ndarray:
        return self.shot[frame].object_matte


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum()) / max(1, int((a | b).sum()))


def propose(reader: Reader, proposer: MotionProposer | None = None, request=None, matte=None):
    request = request or MatteRequest()
    out = dict((proposer or MotionProposer()).propose(reader, matte or reader.matte, "", request))
    assert sorted(out) == reader.frames
    return out, request


def test_the_shadow_is_proposed_and_the_object_left_out():
    reader = Reader("shadow")
    proposed, request = propose(reader)
    scores = [iou(proposed[f] >= 0.5, reader.shot[f].quadmask == AFFECTED) for f in reader.frames]
    assert np.mean(scores) > 0.8 and min(scores) > 0.6, scores
    for f in reader.frames:
        assert not ((proposed[f] >= 0.5) & (reader.matte(f) > 0.5)).any()
        assert proposed[f].dtype == np.float32 and proposed[f].shape == (H, W)
    assert any("proposal" in note and "conservative" in note for note in request.notes)


def test_nothing_is_proposed_where_only_the_object_moves():
    reader = Reader("pan_textured")
    proposed, _ = propose(reader)
    for f in reader.frames:
        assert int((proposed[f] >= 0.5).sum()) <= 20, f


def test_a_frame_without_the_object_gets_no_proposal():
    reader = Reader("shadow")

    def matte(frame: int) -> np.ndarray:
        return np.zeros((H, W), np.float32) if frame == 5 else reader.matte(frame)

    proposed, _ = propose(reader, matte=matte)
    assert not proposed[5].any()
    assert proposed[6].any()


def test_grid_growth_fills_whole_cells():
    region = np.zeros((20, 30), bool)
    region[3, 4] = region[12, 25] = True
    grown = grow_to_grid(region, 8)
    assert grown[0:8, 0:8].all() and grown[8:16, 24:30].all()
    assert int(grown.sum()) == 64 + 8 * 6
    assert grow_to_grid(region, 0) is region

    reader = Reader("shadow")
    plain, _ = propose(reader)
    gridded, _ = propose(reader, MotionProposer(grid=8))
    for f in reader.frames:
        assert ((plain[f] >= 0.5) <= (gridded[f] >= 0.5)).all()
        assert np.array_equal(grow_to_grid(gridded[f] >= 0.5, 8), gridded[f] >= 0.5)


def test_cancel_raises_cancelled():
    reader = Reader("shadow")
    request = MatteRequest(cancelled=lambda: True)
    with pytest.raises(Cancelled):
        list(MotionProposer().propose(reader, reader.matte, "", request))
