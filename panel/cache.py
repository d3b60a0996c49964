"""The viewer's frame cache: frames read on one worker thread, the asked-for frame first, the next ones ahead.

The worker keeps what it read as float pixels (the plate, the result, the quadmask) so that a change
of exposure, gamma or channel view redraws without reading the file again, and so that the pixel
read-out reports scene-linear values. While nothing is asked it reads ahead of the last frame shown
(playback and stepping then draw from memory) and drops the frames farthest from it when the cache
is full. Only the newest request is worked on; older ones are dropped, so scrubbing through 4K EXRs
never stalls the event loop.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Optional

import numpy as np

from voidlink.errors import VoidlinkError

from .frames import ClipReader, build_quadmask, quadmask_overlay, to_display
from .qt import QtCore, QtGui, Signal

# Frames wider than this are kept subsampled (every 2nd, 3rd... pixel): a 4K plate is drawn on a
# panel a fraction of its size, and the display transform then costs a quarter or less.
DISPLAY_MAX_WIDTH = 2048
# Frames read ahead of the one shown, and the memory the cache may hold (about 16 1080p frames).
READ_AHEAD = 8
CACHE_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class Source:
    """The clips of one job the viewer shows; a new Source empties the cache."""

    before: Optional[ClipReader] = None
    after: Optional[ClipReader] = None
    mask: Optional[ClipReader] = None
    affected: Optional[ClipReader] = None
    mask_is_quadmask: bool = False
    first: int = 1
    last: int = 1
    mask_channels: str = ""  # the clips' channels option, as the job gives it to the daemon
    affected_channels: str = ""


@dataclass(frozen=True)
class View:
    """How a frame is drawn: what the viewer's mode, exposure, gamma and channel buttons say."""

    mode: str = "wipe"
    exposure: float = 0.0
    gamma: float = 1.0
    channel: str = "rgb"


@dataclass
class RawFrame:
    """A frame as read: float pixels (maybe subsampled by `step`) and what could not be read."""

    frame: int
    rgb: Optional[np.ndarray] = None
    alpha: Optional[np.ndarray] = None
    linear: bool = True
    after: Optional[np.ndarray] = None
    after_linear: bool = True
    quadmask: Optional[np.ndarray] = None
    size: Optional[tuple[int, int]] = None
    step: int = 1
    error: str = ""
    # Drawn under the last view asked for: the display transform costs more than reading a frame from
    # memory, so a frame read ahead is drawn ahead too, and stepping onto it only hands the images over.
    shown: Optional[tuple[View, LoadedFrame]] = None

    @property
    def nbytes(self) -> int:
        arrays = sum(a.nbytes for a in (self.rgb, self.alpha, self.after, self.quadmask) if a is not None)
        if self.shown is not None:
            images = (self.shown[1].before, self.shown[1].after)
            arrays += sum(image.sizeInBytes() for image in images if image is not None)
        return arrays


@dataclass
class LoadedFrame:
    """What the worker hands the canvas: display images, the frame's full size, the linear pixels under them."""

    frame: int
    before: Optional[QtGui.QImage] = None
    after: Optional[QtGui.QImage] = None
    size: Optional[tuple[int, int]] = None
    error: str = ""
    pixels: Optional[np.ndarray] = None  # scene-linear RGB(A) of the plate, subsampled by `step`
    step: int = 1


def to_qimage(rgb: np.ndarray) -> QtGui.QImage:
    rgb = np.ascontiguousarray(rgb)
    h, w, _ = rgb.shape
    # QImage borrows the buffer: copy so the array may go away.
    return QtGui.QImage(rgb.data, w, h, 3 * w, QtGui.QImage.Format.Format_RGB888).copy()


def _failure(frame: int, error: Exception) -> str:
    if isinstance(error, VoidlinkError):
        return str(error)
    # A decoder's own failure: shown, and the next frame is tried afresh.
    return f"frame {frame}: {type(error).__name__}: {error}"


def read_frame(source: Source, frame: int, mode: str) -> RawFrame:
    """Read what `mode` shows of `frame`. A result or matte that cannot be read leaves the plate shown,
    with the reason in `error` (the quadmask view then shows the plate untinted, never black)."""
    if source.before is None:
        return RawFrame(frame)
    try:
        rgb, alpha, linear = source.before.read_view(frame)
    except Exception as error:
        return RawFrame(frame, error=_failure(frame, error))
    height, width = rgb.shape[:2]
    step = max(1, math.ceil(width / DISPLAY_MAX_WIDTH))
    raw = RawFrame(frame, rgb[::step, ::step], None if alpha is None else alpha[::step, ::step], linear)
    raw.size, raw.step = (width, height), step
    problems = []
    if mode == "wipe" and source.after is not None:
        try:
            after, raw.after_linear = source.after.read(frame)
            raw.after = after[::step, ::step]
        except Exception as error:
            problems.append("result: " + _failure(frame, error))
    if mode == "quadmask" and source.mask is not None:
        try:
            raw.quadmask = _quadmask(source, frame, width, height, step)
        except Exception as error:
            problems.append("quadmask not shown: " + _failure(frame, error))
    raw.error = "; ".join(problems)
    return raw


def _quadmask(source: Source, frame: int, width: int, height: int, step: int) -> np.ndarray:
    mask, _ = source.mask.read(frame, matte=True, channels=source.mask_channels)
    affected = None
    if source.affected is not None:
        affected = source.affected.read(frame, matte=True, channels=source.affected_channels)[0]
    if mask.shape[:2] != (height, width) or (affected is not None and affected.shape[:2] != (height, width)):
        raise VoidlinkError(
            f"frame {frame}: the mattes are {mask.shape[1]}x{mask.shape[0]} but the plate is "
            f"{width}x{height}; the daemon resamples them only when the job allows it"
        )
    sub = None if affected is None else affected[::step, ::step]
    return build_quadmask(mask[::step, ::step], sub, source.mask_is_quadmask)


def render(raw: RawFrame, view: View) -> LoadedFrame:
    """The display images of a frame read, under the viewer's exposure, gamma and channel view."""
    if raw.rgb is None:
        return LoadedFrame(raw.frame, error=raw.error)
    before = to_display(raw.rgb, raw.linear, view.exposure, view.gamma, view.channel, raw.alpha)
    after = None
    if view.mode == "wipe" and raw.after is not None:
        after = to_qimage(to_display(raw.after, raw.after_linear, view.exposure, view.gamma, view.channel))
    if view.mode == "quadmask" and raw.quadmask is not None:
        before = quadmask_overlay(before, raw.quadmask)
    pixels = raw.rgb if raw.alpha is None else np.concatenate([raw.rgb, raw.alpha], axis=2)
    return LoadedFrame(raw.frame, to_qimage(before), after, raw.size, raw.error, pixels, raw.step)


class FrameCache(QtCore.QObject):
    """Reads and renders frames on one worker thread: `loaded` answers `request`, `cached` tells of a frame
    read ahead."""

    loaded = Signal(int, object)  # request id, LoadedFrame
    cached = Signal(int)  # a frame read ahead is in memory

    def __init__(self, parent: Optional[QtCore.QObject] = None, read_ahead: int = READ_AHEAD) -> None:
        super().__init__(parent)
        self.read_ahead = read_ahead
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._source = Source()
        self._frames: dict[tuple[str, int], RawFrame] = {}
        self._pending: Optional[tuple[int, int, View]] = None
        self._around: Optional[tuple[int, str]] = None  # the frame last shown, and its mode: read ahead of it
        self._view = View()  # the view last asked for: frames read ahead are drawn under it
        self._thread: Optional[threading.Thread] = None
        self._stopped = False

    def set_source(self, source: Source) -> None:
        with self._lock:
            self._source, self._frames, self._around = source, {}, None

    def has(self, frame: int, mode: str) -> bool:
        with self._lock:
            return (mode, frame) in self._frames

    def request(self, request_id: int, frame: int, view: View) -> None:
        with self._lock:
            if self._stopped:
                return
            self._pending = (request_id, frame, view)
            self._view = view
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="voidlink-panel-frames", daemon=True)
                self._thread.start()
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Drop what is asked and wait for the frame being read: no signal comes from the thread after
        this (one emitted while Qt and Python tear down can crash the process)."""
        with self._lock:
            self._stopped = True
            self._pending = None
            thread = self._thread
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _loop(self) -> None:
        while True:
            with self._lock:
                if self._stopped:
                    return
                pending, self._pending = self._pending, None
                source = self._source
                ahead = None if pending else self._next_ahead()
                view = self._view
                if pending is None and ahead is None:
                    self._wake.clear()
            if pending is None and ahead is None:
                self._wake.wait()
                continue
            try:
                if pending is not None:
                    self._answer(source, *pending)
                else:
                    self._fill(source, *ahead, view)
            except RuntimeError:  # the viewer was deleted while this frame was read
                return

    def _answer(self, source: Source, request_id: int, frame: int, view: View) -> None:
        with self._lock:
            raw = self._frames.get((view.mode, frame))
        if raw is None or raw.error:  # what failed is tried afresh when asked again
            raw = read_frame(source, frame, view.mode)
        result = self._drawn(raw, view)
        with self._lock:
            if self._stopped:
                return
            if source is self._source:
                self._store(view.mode, raw)
                self._around = (frame, view.mode)
        self.loaded.emit(request_id, result)

    def _fill(self, source: Source, frame: int, mode: str, view: View) -> None:
        raw = read_frame(source, frame, mode)
        if view.mode == mode:
            self._drawn(raw, view)
        with self._lock:
            if self._stopped or source is not self._source:
                return
            self._store(mode, raw)
        self.cached.emit(frame)

    @staticmethod
    def _drawn(raw: RawFrame, view: View) -> LoadedFrame:
        """The frame drawn under `view`: as drawn before when the view is the same, else drawn now and kept."""
        if raw.shown is not None and raw.shown[0] == view:
            return raw.shown[1]
        try:
            result = render(raw, view)
        except Exception as error:  # never let one bad frame end the worker: the next request is served
            return LoadedFrame(raw.frame, error=_failure(raw.frame, error))
        raw.shown = (view, result)
        return result

    def _next_ahead(self) -> Optional[tuple[int, str]]:
        """The next frame to read ahead (called with the lock held), or None when all are in."""
        if self._around is None or self._source.before is None:
            return None
        frame, mode = self._around
        span = self._source.last - self._source.first + 1
        for k in range(1, min(self.read_ahead, span - 1) + 1):
            # Playback wraps from the last frame to the first: read ahead across the wrap too.
            ahead = self._source.first + (frame + k - self._source.first) % span
            if (mode, ahead) not in self._frames:
                return ahead, mode
        return None

    def _store(self, mode: str, raw: RawFrame) -> None:
        self._frames[(mode, raw.frame)] = raw
        centre = self._around[0] if self._around else raw.frame
        span = max(self._source.last - self._source.first + 1, 1)
        while len(self._frames) > 1 and sum(f.nbytes for f in self._frames.values()) > CACHE_BYTES:
            # Distance counted forward (as playback runs): frames just behind the one shown go first,
            # the read-ahead last.
            farthest = max(self._frames, key=lambda key: (key[1] - centre) % span)
            del self._frames[farthest]
