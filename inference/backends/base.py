"""What every removal backend offers the pipeline.

A backend sees frames already cropped, scaled and converted to model space: RGB float32 in 0–1,
display-referred, shape (H, W, 3), with the quadmask of the same frame as uint8 (H, W) holding
0 object, 63 object∩affected, 127 affected, 255 keep (`voidlink.media.quadmask` names them). It
never touches files or colour.

Frames stream: `run` takes an iterator of `BackendFrame`s in frame order and yields one result
per input frame, in the same order, holding at most a bounded number of frames (its temporal
window) in memory. The pipeline may start the stream `temporal_context` frames before the first
frame it needs (when resuming a job) and drops the results it already has.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np


class Cancelled(Exception):
    """Raised inside a backend when the request's `cancelled()` turns true."""


@dataclass
class BackendFrame:
    index: int  # the frame number in the clip's own numbering
    image: np.ndarray  # (H, W, 3) float32, model space 0–1
    quadmask: np.ndarray  # (H, W) uint8, values in {0, 63, 127, 255}


@dataclass
class BackendResult:
    index: int
    image: np.ndarray  # (H, W, 3) float32, model space 0–1; pixels marked KEEP are ignored
    # Where the backend changed the frame (1) or left it (0), (H, W) float32; None means
    # "wherever the quadmask is not KEEP". Lets a backend keep affected pixels it cannot fix.
    changed: Optional[np.ndarray] = None
    # This frame's tallies (pixels filled, pixels never revealed ...), summed over the whole shot for
    # `Backend.shot_notes`; kept with the staged frame, so a resumed job sums them as a whole run does.
    counts: dict[str, float] = field(default_factory=dict)


@dataclass
class BackendRequest:
    prompt: str = ""
    negative_prompt: str = ""
    steps: int = 0  # 0: backend default
    guidance: float = 0.0
    seed: Optional[int] = None
    passes: int = 0
    quality: str = "balanced"  # "draft" | "balanced" | "best"
    first: int = 0  # frame range of the whole shot, for backends that plan over it
    last: int = 0
    cancelled: Callable[[], bool] = lambda: False
    # Free-text progress inside a frame or step ("denoising 12/50"); the pipeline counts frames.
    on_message: Callable[[str], None] = lambda message: None
    notes: list[str] = field(default_factory=list)  # filled by the backend, shown to the user
    # What made the result (seed, steps, memory mode, the weights' SHA-256 ...), filled by the backend
    # before its first result: written into every output frame's header and the job's result.
    provenance: dict[str, str] = field(default_factory=dict)
    # For tests and research, handed to a model backend as they are (torch tensors for VOID): T5
    # prompt embeddings instead of the prompt's, and the initial latents of a one-segment shot.
    prompt_embeds: Optional[Any] = None
    negative_prompt_embeds: Optional[Any] = None
    latents: Optional[Any] = None


class Backend(ABC):
    """Base class: subclasses set `name` and implement `run`."""

    name: str = ""
    # Frames before the first needed one that must be fed for results to match an uninterrupted run.
    temporal_context: int = 0
    # Preferred (width, height) of the processing region; None means any size (no rescale).
    working_size: Optional[tuple[int, int]] = None

    def load(self) -> None:
        """Load weights or warm caches; called once, the backend then stays resident."""
        return None

    @abstractmethod
    def run(self, frames: Iterator[BackendFrame], request: BackendRequest) -> Iterator[BackendResult]:
        """Yield one result per input frame, in order, with bounded memory."""

    def notes(self) -> list[str]:
        """Plain-words limits of this backend, shown in every job result."""
        return []

    def shot_notes(self, totals: dict[str, float]) -> list[str]:
        """Notes about the whole shot from its frames' `BackendResult.counts`, summed."""
        return []


@dataclass
class Availability:
    available: bool
    reason: str = ""  # why not, in words a user can act on
    detail: str = ""
    licences: list[str] = field(default_factory=list)  # of the weights it uses, one line each
