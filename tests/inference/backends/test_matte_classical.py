"""The classical matte tracker on small generated shots: it follows the object, both ways, and obeys prompts."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from voidlink.inference.backends.matte.base import Cancelled, MatteRequest, Prompt
from voidlink.inference.backends.matte.classical import ClassicalTracker
from voidlink.inference.synthetic import make_frame

W, H, N = 160, 96, 12


class Reader:
    """A generated shot read on demand, counting the reads."""

    def __init__(self, kind: str = "pan_textured", frames: int = N) -> None:
        self.shot = [make_frame(kind, W, H, t, frames=frames) for t in range(frames)]
        self.reads: dict[int, int] = {}

    @property
    def frames(self) -> list[int]:
        return [1001 + t for t in range(len(self.shot))]

    @property
    def size(self) -> tuple[int, int]:
        return W, H

    def read(self, frame: int) -> np.ndarray:
        self.reads[frame] = self.reads.get(frame, 0) + 1
        return self.shot[frame - 1001].plate

    def truth(self, frame: int) -> np.ndarray:
        return self.shot[frame - 1001].object_matte > 0.5


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum()) / max(1, int((a | b).sum()))


def box_of(region: np.ndarray, frame: int) -> Prompt:
    ys, xs = np.nonzero(region)
    return Prompt(frame=frame, boxes=((xs.min() - 3.0, ys.min() - 3.0, xs.max() + 4.0, ys.max() + 4.0),))


def track(reader: Reader, prompts: list[Prompt], tracker: ClassicalTracker | None = None, request=None):
    out: dict[int, np.ndarray] = {}
    for frame, matte in (tracker or ClassicalTracker()).track(reader, prompts, request or MatteRequest()):
        assert frame not in out, f"frame {frame} came twice"
        out[frame] = matte
    assert sorted(out) == reader.frames
    return out


def test_a_box_on_the_first_frame_is_followed_through_a_pan():
    reader = Reader("pan_textured")
    mattes = track(reader, [box_of(reader.truth(1001), 1001)])
    scores = [iou(mattes[f] >= 0.5, reader.truth(f)) for f in reader.frames]
    assert min(scores) > 0.9, scores
    for matte in mattes.values():
        assert matte.dtype == np.float32 and matte.shape == (H, W)
        assert matte.min() >= 0.0 and matte.max() <= 1.0
    # Bounded: each frame is read a couple of times at most (the prompt frame and the step onto it).
    assert max(reader.reads.values()) <= 3


def test_a_point_on_the_object_segments_it():
    reader = Reader("shadow")
    ys, xs = np.nonzero(reader.truth(1001))
    mattes = track(reader, [Prompt(frame=1001, points=((float(xs.mean()), float(ys.mean()), True),))])
    assert iou(mattes[1001] >= 0.5, reader.truth(1001)) > 0.85
    assert min(iou(mattes[f] >= 0.5, reader.truth(f)) for f in reader.frames) > 0.8


def test_a_prompt_in_the_middle_is_carried_backward_and_forward():
    reader = Reader("static_textured")
    mattes = track(reader, [Prompt(frame=1006, shape=reader.truth(1006))])
    assert np.array_equal(mattes[1006] >= 0.5, reader.truth(1006))  # a drawn shape is kept as drawn
    before = [iou(mattes[f] >= 0.5, reader.truth(f)) for f in reader.frames[:5]]
    after = [iou(mattes[f] >= 0.5, reader.truth(f)) for f in reader.frames[6:]]
    assert min(before) > 0.9, before
    assert min(after) > 0.9, after


def test_a_later_prompt_corrects_the_matte_from_its_frame_on():
    reader = Reader("pan_textured")
    wrong = np.zeros((H, W), bool)
    wrong[8:30, 120:150] = True  # a patch of background the user first clicked by mistake
    mattes = track(reader, [Prompt(frame=1001, shape=wrong), Prompt(frame=1007, shape=reader.truth(1007))])
    assert iou(mattes[1001] >= 0.5, reader.truth(1001)) < 0.1  # the first prompt rules its own frame
    scores = [iou(mattes[f] >= 0.5, reader.truth(f)) for f in reader.frames[6:]]
    assert min(scores) > 0.9, scores
    # Just before the correction its backward propagation weighs more than the mistaken start.
    assert iou(mattes[1006] >= 0.5, reader.truth(1006)) > 0.8


def test_the_reduced_scale_path_upsamples_onto_the_edges():
    reader = Reader("pan_textured")
    mattes = track(reader, [box_of(reader.truth(1001), 1001)], ClassicalTracker(flow_max_side=96))
    scores = [iou(mattes[f] >= 0.5, reader.truth(f)) for f in reader.frames]
    assert min(scores) > 0.85, scores


def test_cancel_raises_cancelled_and_progress_is_reported():
    reader = Reader("pan_textured")
    calls = {"n": 0}

    def cancelled() -> bool:
        calls["n"] += 1
        return calls["n"] > 4

    messages: list[str] = []
    request = MatteRequest(cancelled=cancelled, on_message=messages.append)
    seen = []
    with pytest.raises(Cancelled):
        for frame, _ in ClassicalTracker().track(reader, [box_of(reader.truth(1001), 1001)], request):
            seen.append(frame)
    assert 0 < len(seen) < N
    assert any("1001" in m for m in messages)
    assert request.notes and "classical" in request.notes[0]


def test_a_prompt_outside_the_range_is_refused():
    reader = Reader("pan_textured")
    with pytest.raises(ValueError, match="frame 2000"):
        list(ClassicalTracker().track(reader, [Prompt(frame=2000, boxes=((1, 1, 9, 9),))], MatteRequest()))


def test_a_prompt_that_finds_nothing_says_so():
    reader = Reader("pan_textured")
    request = MatteRequest()
    nothing = np.zeros((H, W), bool)
    mattes = track(reader, [Prompt(frame=1001, shape=nothing)], request=request)
    assert not any(m.any() for m in mattes.values())
    assert any("frame 1001 found no object" in note for note in request.notes)


class FastReader(Reader):
    """A 12 px square leaping 22 px a frame across a still textured background: farther than its own
    size, so a search around its last place and velocity finds only background on the first step."""

    def __init__(self, frames: int = 6) -> None:
        rng = np.random.default_rng(5)
        background = np.clip(rng.random((H, W, 3), np.float32) * 0.5 + 0.25, 0, 1)
        background = cv2.GaussianBlur(background, (0, 0), 1.2)
        self.mattes, self.plates, self.reads = [], [], {}
        for t in range(frames):
            matte = np.zeros((H, W), bool)
            x = 10 + 22 * t
            matte[40:52, x : x + 12] = True
            plate = background.copy()
            plate[matte] = (0.8, 0.1, 0.1)
            self.mattes.append(matte)
            self.plates.append(plate)
        self.shot = self.plates

    def read(self, frame: int) -> np.ndarray:
        self.reads[frame] = self.reads.get(frame, 0) + 1
        return self.plates[frame - 1001]

    def truth(self, frame: int) -> np.ndarray:
        return self.mattes[frame - 1001]


def test_an_object_leaping_farther_than_its_size_each_frame_is_found_again():
    reader = FastReader()
    mattes = track(reader, [box_of(reader.truth(1001), 1001)])
    scores = [iou(mattes[f] >= 0.5, reader.truth(f)) for f in reader.frames]
    assert min(scores) > 0.8, scores
