"""What every matte tracker and affected-region proposer offers the matte job.

A matte job turns a user's prompts (points, boxes and drawn shapes on one or more frames) into an
object matte on every frame of a range, and optionally proposes the region the object affects
(shadows, reflections, things it moves). The job reads the frames and writes the mattes; a tracker
or proposer sees only arrays:

- frames: RGB float32 (H, W, 3), display-referred 0-1, read on demand through a `FrameReader`
  (random access, so a tracker can run forward and backward from a prompt frame);
- prompts: `Prompt`s in the same pixel coordinates as the frames;
- results: (frame, matte) pairs, matte float32 (H, W) in 0-1, one per frame of the range, in any
  order (the job stages each as it comes, so a cancelled or interrupted job resumes).

Trackers never touch files, colour or the store; they hold at most a bounded number of frames
(the reader caches a few).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol

import numpy as np
from voidlink.inference.backends.base import Availability, Cancelled

__all__ = [
    "AffectedProposer",
    "Availability",
    "Cancelled",
    "FrameReader",
    "MatteRequest",
    "Prompt",
    "Tracker",
]


@dataclass(frozen=True)
class Prompt:
    """What the user said about the object on one frame."""

    frame: int
    # (x, y, positive): x right, y down, in the frame's pixels (0.5, 0.5 = the first pixel's centre)
    points: tuple[tuple[float, float, bool], ...] = ()
    boxes: tuple[tuple[float, float, float, float], ...] = ()  # (x0, y0, x1, y1)
    # A drawn shape on that frame (a filled outline, or a frame of a drawn matte): (H, W) bool.
    shape: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        if not (self.points or self.boxes or self.shape is not None):
            raise ValueError(f"the prompt on frame {self.frame} has no point, box or shape")


class FrameReader(Protocol):
    """The range's frames, read on demand (a small cache behind it)."""

    @property
    def frames(self) -> Sequence[int]:
        """The frame numbers of the range, in order."""

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of every frame."""

    def read(self, frame: int) -> np.ndarray:
        """Frame `frame` as RGB float32 (H, W, 3), 0-1."""


@dataclass
class MatteRequest:
    cancelled: Callable[[], bool] = lambda: False
    # Free-text progress inside a frame ("tracking backward from 1040"); the job counts frames.
    on_message: Callable[[str], None] = lambda message: None
    notes: list[str] = field(default_factory=list)  # filled by the tracker, shown to the user
    provenance: dict[str, str] = field(default_factory=dict)  # model name, weights' SHA-256 ...


class Tracker(ABC):
    """Carries the object from its prompts through every frame of the range."""

    name: str = ""

    def load(self) -> None:
        """Load weights; called once, the tracker then stays resident in the daemon."""
        return None

    @abstractmethod
    def track(
        self, reader: FrameReader, prompts: Sequence[Prompt], request: MatteRequest
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (frame, object matte) once for every frame of `reader.frames`, in any order.

        Propagates forward and backward from the prompts; a prompt on a later frame corrects the
        matte from its frame on. Raises `Cancelled` when `request.cancelled()` turns true.
        """


class AffectedProposer(ABC):
    """Proposes the region the object affects, for the user to edit: never a final answer."""

    name: str = ""

    def load(self) -> None:
        return None

    @abstractmethod
    def propose(
        self,
        reader: FrameReader,
        object_matte: Callable[[int], np.ndarray],
        text: str,
        request: MatteRequest,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (frame, affected matte float32 0-1) once for every frame of `reader.frames`.

        `object_matte(frame)` gives the tracked object's matte on that frame; `text` says what the
        object affects ("its shadow"); empty means: whatever changes with the object.
        """
