"""Matte trackers and proposers the tests can predict, and the daemon's tables with them in.

`ShiftTracker` gives, on every frame, the first prompt's box (or outline shape, or a square around its
first point) moved by `step` pixels right per frame from the prompt's frame, and records what it was
handed; it can stop at a known frame until the test lets it go (`hold_at`), which is how the cancel
and restart tests reach the middle of a job without sleeping. `RingProposer` proposes the object's
matte moved down by `drop` pixels (a shadow)."""

from __future__ import annotations

import threading
from types import MappingProxyType

import numpy as np
from voidlink.inference.backends import matte as mattes
from voidlink.inference.backends.base import Availability, Cancelled
from voidlink.inference.backends.matte.base import AffectedProposer, Tracker


def shifted_region(prompt, frame: int, size: tuple[int, int], step: int) -> np.ndarray:
    """What ShiftTracker returns for `frame` from `prompt`: its box/shape/point square moved right."""
    width, height = size
    out = np.zeros((height, width), np.float32)
    shift = (frame - prompt.frame) * step
    if prompt.shape is not None:
        region = prompt.shape.astype(np.float32)
    else:
        if prompt.boxes:
            x0, y0, x1, y1 = prompt.boxes[0]
        else:
            x, y, _ = prompt.points[0]
            x0, y0, x1, y1 = x - 4, y - 4, x + 4, y + 4
        region = np.zeros_like(out)
        region[int(round(y0)) : int(round(y1)), int(round(x0)) : int(round(x1))] = 1.0
    if abs(shift) >= width:
        return out  # moved out of the frame
    if shift > 0:
        out[:, shift:] = region[:, : width - shift]
    elif shift < 0:
        out[:, :shift] = region[:, -shift:]
    else:
        out = region
    return out


class ShiftTracker(Tracker):
    name = "shift"

    def __init__(self, step: int = 2, order: str = "backward-first") -> None:
        self.step = step
        self.order = order
        self.calls: list[dict] = []  # one per track(): the prompts and the frames it read, in order
        self.loads = 0
        self.hold_at: int | None = None  # a frame it stops before yielding, until `release` is set
        self.reached = threading.Event()
        self.release = threading.Event()

    def load(self) -> None:
        self.loads += 1

    def track(self, reader, prompts, request):
        call = {"prompts": list(prompts), "frames": list(reader.frames), "read": [], "size": reader.size}
        self.calls.append(call)
        request.provenance["model"] = "shift-test"
        first = prompts[0]
        frames = list(reader.frames)
        start = frames.index(first.frame)
        # Out of frame order on purpose: the prompt's frame, forward to the end, then back to the start.
        order = frames[start:] + frames[:start][::-1]
        for frame in order:
            image = reader.read(frame)
            assert image.dtype == np.float32 and image.shape == (reader.size[1], reader.size[0], 3)
            assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
            call["read"].append(frame)
            if frame == self.hold_at:
                self.reached.set()
                while not self.release.wait(0.01):
                    if request.cancelled():
                        raise Cancelled()
            yield frame, shifted_region(first, frame, reader.size, self.step)


class RingProposer(AffectedProposer):
    name = "ring"

    def __init__(self, drop: int = 6) -> None:
        self.drop = drop
        self.texts: list[str] = []

    def propose(self, reader, object_matte, text, request):
        self.texts.append(text)
        for frame in reader.frames:
            obj = object_matte(frame) > 0.5
            shadow = np.zeros_like(obj)
            shadow[self.drop :] = obj[: -self.drop]
            yield frame, shadow.astype(np.float32)


def install(monkeypatch, tracker: Tracker, proposer: AffectedProposer | None = None, sam3: bool = False) -> None:
    """Put `tracker` in the daemon's table as `classical` (what a client may name), `proposer` as `motion`
    (and as `sam3` when `sam3`); sam2 and edgetam unavailable. For daemons started in this process."""
    proposer = proposer or RingProposer()
    here = mattes.MatteEntry(lambda weights: tracker, lambda weights: Availability(True, detail="test tracker"))
    absent = mattes.MatteEntry(lambda weights: None, lambda weights: Availability(False, "sam2: not in the test"))
    made = mattes.MatteEntry(lambda weights: proposer, lambda weights: Availability(True, detail="test proposer"))
    text = (
        made
        if sam3
        else mattes.MatteEntry(
            lambda weights: None, lambda weights: Availability(False, "sam3: no weights in the test")
        )
    )
    monkeypatch.setattr(mattes, "TRACKERS", MappingProxyType({"classical": here, "sam2": absent, "edgetam": absent}))
    monkeypatch.setattr(mattes, "PROPOSERS", MappingProxyType({"motion": made, "sam3": text}))
