"""The classical backend's input: frames checked and analysed ahead of the propagation, in order.

Analysing a frame (its grids, features, the band around its hole) and the motion from the frame
before it (a homography, DIS flow both ways, completed) is about half of the backend's work, and it
needs nothing the propagation computes. `Analyser` does it on worker threads a few frames ahead,
two frames at a time, while the stream propagates the frames already held; OpenCV and numpy
release the GIL, so that runs on other cores. The stream takes the frames back one by one in stream
order and installs them at the same points as it would without the threads, and every analysis is
a function of its frames alone, so results cannot depend on the threads' timing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np
from voidlink.inference.backends import base
from voidlink.inference.backends.classical.flow import (
    Analysis,
    MotionEstimator,
    PairMotion,
    fit_scale,
    flow_scale,
)
from voidlink.media.quadmask import AFFECTED, KEEP, OBJECT, OVERLAP

from voidlink.errors import InvalidInput

# A frame whose mask covers more than this leaves too little to estimate motion or fill from.
MASK_LIMIT = 0.9
# Flow-resolution pixels of flow distrusted around each hole (DIS drags the object's motion across edges).
FLOW_MARGIN = 14
# Frames analysed at once, and so read ahead of the last one handed over (on 2 cores: one beside
# the propagation in the steady state, both while the first window fills and nothing is propagated).
THREADS = 2


@dataclass
class Frame:
    """One input frame as the propagation uses it."""

    index: int
    image: np.ndarray  # as given: returned untouched outside the filled region
    pixels: np.ndarray  # image with NaNs replaced by 0, used as a source
    quadmask: np.ndarray
    must_fill: np.ndarray  # (H, W) bool: object, overlap and NaN pixels
    may_fill: np.ndarray  # (H, W) bool: affected pixels, filled only where another frame shows them clean
    source: np.ndarray  # (H, W) uint8 1 where this frame may lend pixels to others
    had_nan: bool
    analysis: Analysis  # the frame on the fit and flow grids


@dataclass
class _Pending:
    analysed: Future  # → Frame
    motion: Optional[Future]  # → PairMotion from the frame before; None for the first frame


class Analyser:
    """Reads frames from `source` and hands them back analysed, in order (see the module's docstring).

    Use as a context manager: leaving it (at the end, on an error, a cancel or an abandoned stream)
    stops reading and waits for the analyses under way, at most `THREADS` frames' worth.
    """

    def __init__(self, source: Iterator[base.BackendFrame], preset: int, threads: int = THREADS) -> None:
        self._source = source
        self._preset = preset
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="classical-analysis")
        self._ahead = threads
        self._pending: deque[_Pending] = deque()
        self._read_error: Optional[Exception] = None
        self._ended = False
        self._last: Optional[Future] = None  # the last frame read, for the next one's motion
        self.shape: Optional[tuple[int, int]] = None
        self.estimator: Optional[MotionEstimator] = None

    def __enter__(self) -> Analyser:
        return self

    def __exit__(self, *exc) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def next(self) -> Optional[tuple[Frame, Optional[PairMotion]]]:
        """The next frame and its motion from the one before; None at the end of the shot.

        A frame that is not usable raises its error here, when its turn comes; so does an error
        reading a frame: read ahead, it is held until the frames before it are handed over.
        """
        self._fill()
        if not self._pending:
            if self._read_error is not None:
                raise self._read_error
            return None
        pending = self._pending.popleft()
        frame = pending.analysed.result()
        motion = pending.motion.result() if pending.motion is not None else None
        self._fill()  # keep the threads busy while the caller propagates
        return frame, motion

    def _fill(self) -> None:
        while not self._ended and len(self._pending) < self._ahead:
            try:
                frame = next(self._source)
            except StopIteration:
                self._ended = True
                return
            except Exception as error:
                self._ended = True
                self._read_error = error
                return
            if self.shape is None:
                self._start(frame)
            analysed = self._pool.submit(self._frame, frame)
            motion = None if self._last is None else self._pool.submit(self._motion, self._last, analysed)
            self._last = analysed
            self._pending.append(_Pending(analysed, motion))

    def _start(self, frame: base.BackendFrame) -> None:
        # The first frame sets the shot's size and grids. `_frame` checks the frame itself and raises
        # in its turn; a frame that could not set them (not an image, or empty) fails those checks.
        self.shape = tuple(np.shape(frame.image)[:2])
        if len(self.shape) == 2 and min(self.shape) > 0:
            # Homographies are fitted on the fit grid, enlarged for small frames (sub-pixel fits);
            # dense flow runs on the flow grid, never enlarged.
            self.estimator = MotionEstimator(self._preset, FLOW_MARGIN, fit_scale(self.shape), flow_scale(self.shape))

    def _motion(self, before: Future, after: Future) -> Optional[PairMotion]:
        # Both frames were submitted before this, so their analyses are running or done: waiting on
        # them cannot hold up the thread that would compute them. If either failed, its error is
        # raised when that frame's turn comes, before this motion is asked for.
        try:
            a, b = before.result(), after.result()
        except Exception:
            return None
        return self.estimator.pair(a.analysis, b.analysis)

    def _frame(self, frame: base.BackendFrame) -> Frame:
        """The frame checked against the shot and analysed; on a worker thread."""
        image = np.asarray(frame.image)
        quadmask = np.asarray(frame.quadmask)
        if image.ndim != 3 or image.shape[2] != 3:
            raise InvalidInput(f"frame {frame.index}: expected an (H, W, 3) image, got shape {image.shape}",
                               reason="BAD_FRAME", frame=frame.index)
        if 0 in image.shape[:2]:
            raise InvalidInput(f"frame {frame.index}: the image is empty (shape {image.shape})",
                               reason="BAD_FRAME", frame=frame.index)
        if quadmask.shape != image.shape[:2]:
            raise InvalidInput(
                f"frame {frame.index}: quadmask {quadmask.shape} does not match the image {image.shape[:2]}",
                reason="SIZE_MISMATCH", frame=frame.index)
        if image.shape[:2] != self.shape:
            raise InvalidInput(f"frame {frame.index}: size {image.shape[:2]} differs from the shot's {self.shape}",
                               reason="SIZE_MISMATCH", frame=frame.index)
        covered = float(np.count_nonzero(quadmask != KEEP)) / quadmask.size
        if covered > MASK_LIMIT:
            raise InvalidInput(
                f"frame {frame.index}: the mask covers {covered:.0%} of the frame (the limit is {MASK_LIMIT:.0%}); "
                "too little of the frame is left to fill it from",
                reason="MASK_TOO_LARGE", frame=frame.index)
        image = image.astype(np.float32, copy=False)
        finite = np.isfinite(image).all(axis=2)
        had_nan = not finite.all()
        pixels = np.where(finite[..., None], image, 0.0).astype(np.float32) if had_nan else image
        must = (quadmask == OBJECT) | (quadmask == OVERLAP) | ~finite
        may = (quadmask == AFFECTED) & finite
        hole = must | may | (quadmask != KEEP)
        # Sources stay a pixel clear of the hole so bilinear sampling never mixes in object colour.
        source = (cv2.dilate(hole.astype(np.uint8), np.ones((3, 3), np.uint8)) == 0).astype(np.uint8)
        return Frame(frame.index, image, pixels, quadmask, must, may, source, had_nan,
                     self.estimator.analyse(pixels, hole))
