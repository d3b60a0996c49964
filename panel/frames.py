"""Frames for the viewer: read through the media layer, shown through a display transform.

Plates are scene-linear EXRs more often than not; drawn as they are they look dark and clip. The
display transform is the model space's own sRGB encoding with its highlight roll-off, so what the
viewer shows is what the backends see. Movies are already display-referred and pass through.
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np
from voidlink.protos.clips import SequencePattern, is_movie

# Movies are numbered from their first picture as 1, as the daemon and the hosts number them.
MOVIE_FIRST_FRAME = 1

# Quadmask values and the colours the preview paints them in (RGB 0–1): red what goes, amber where
# the object meets its effect, blue what the effect touches; keep (255) shows the plate untouched.
QUADMASK_COLOURS = {
    0: (0.95, 0.15, 0.15),
    63: (1.0, 0.65, 0.0),
    127: (0.2, 0.45, 1.0),
}


# The viewer's channel views, as Nuke's and Resolve's viewers name them.
CHANNELS = ("rgb", "r", "g", "b", "a", "luminance")
_REC709 = np.array([0.2126, 0.7152, 0.0722], np.float32)


def pick_channel(rgb: np.ndarray, channel: str, alpha: Optional[np.ndarray] = None) -> np.ndarray:
    """The (H, W, 3) float image a channel view shows: one channel repeated as grey, or RGB as it is.
    A frame with no alpha shows A as black, as a host's viewer does."""
    if channel == "rgb":
        return rgb
    if channel == "a":
        grey = alpha[..., 0] if alpha is not None else np.zeros(rgb.shape[:2], np.float32)
    elif channel == "luminance":
        grey = rgb @ _REC709
    else:
        grey = rgb[..., "rgb".index(channel)]
    return np.repeat(grey[..., None], 3, axis=2)


def to_display(
    pixels: np.ndarray,
    linear: bool = True,
    exposure: float = 0.0,
    gamma: float = 1.0,
    channel: str = "rgb",
    alpha: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Float RGB (scene-linear unless `linear` is False) → display sRGB uint8, highlights rolled off.

    Exposure (stops) and gamma act on the values before the display encoding, as a host viewer's
    f-stop and gamma knobs do, so a gamma of 1 and exposure of 0 show the plate as the backends see it."""
    from voidlink.media.colour import roll_off, srgb_encode

    rgb = np.asarray(pixels, np.float32)
    if rgb.ndim == 2:
        rgb = rgb[..., None]
    if rgb.shape[2] == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    rgb = pick_channel(rgb[..., :3], channel, alpha)
    if exposure:
        rgb = rgb * np.float32(2.0**exposure)
    if gamma != 1.0 and gamma > 0:
        rgb = np.power(np.maximum(rgb, 0.0), np.float32(1.0 / gamma))
    if linear:
        rgb = roll_off(srgb_encode(rgb))
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


class ClipReader:
    """Frames of one sequence pattern, single image or movie, by frame number."""

    def __init__(self, path: str, movie_first_frame: int = MOVIE_FIRST_FRAME) -> None:
        self.path = path
        self.movie = is_movie(path)
        self.pattern = None if self.movie else SequencePattern.parse(path)
        self.movie_first_frame = movie_first_frame
        self._capture = None

    def file_for(self, frame: int) -> str:
        if self.pattern is None:
            return self.path
        if self.pattern.discover_padding or not self.pattern.padding:
            from voidlink.media.sequence import discover
            from voidlink.protos.clips import ClipMedia

            self.pattern = discover(ClipMedia(self.path)).pattern or self.pattern
        return self.pattern.path(frame)

    def exists(self, frame: int) -> bool:
        try:
            return os.path.isfile(self.file_for(frame))
        except Exception:  # a pattern whose folder is gone
            return False

    def read(self, frame: int, matte: bool = False, channels: str = "") -> tuple[np.ndarray, bool]:
        """(pixels float32 (H, W, C), scene_linear) for `frame`; raises the media layer's errors.

        A matte's channel is the one the daemon takes for the same clip options (`channels`, empty:
        alpha, else a single channel, else luminance): read_image applies the media layer's
        select_channels, the rule both ends share, so the viewer never refuses a matte the daemon takes."""
        if self.movie:
            import cv2
            from voidlink.media.image import read_movie_frame

            if self._capture is None:
                self._capture = cv2.VideoCapture(self.path)
            pixels = read_movie_frame(self._capture, self.path, frame - self.movie_first_frame, "viewer", frame)
            return (pixels.mean(axis=2, keepdims=True) if matte else pixels), False
        from voidlink.media.image import read_image

        path = self.file_for(frame)
        image = read_image(path, channels if matte else (channels or "rgb"), matte=matte, field="viewer", frame=frame)
        return image.pixels, _linear(path)

    def read_view(self, frame: int) -> tuple[np.ndarray, Optional[np.ndarray], bool]:
        """(RGB (H, W, 3), alpha (H, W, 1) or None, scene_linear): what the viewer shows of a plate or result.
        The channels are found by the shared rule (select_channels) in one read of the file."""
        if self.movie:
            return self.read(frame)[0], None, False
        from voidlink.media.image import read_image, select_channels

        from voidlink.errors import InvalidInput

        path = self.file_for(frame)
        image = read_image(path, "all", field="viewer", frame=frame)
        rgb_index, _ = select_channels(image.spec, "rgb", matte=False, field="viewer", path=path, frame=frame)
        try:
            alpha_index, _ = select_channels(image.spec, "alpha", matte=True, field="viewer", path=path, frame=frame)
        except InvalidInput:
            alpha_index = None
        rgb = np.take(image.pixels, rgb_index, axis=2)
        alpha = np.take(image.pixels, alpha_index, axis=2) if alpha_index else None
        return rgb, alpha, _linear(path)

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


def _linear(path: str) -> bool:
    """Display-referred file types are shown as they are; everything else (EXR) is scene-linear."""
    return not path.lower().endswith((".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dpx"))


def quadmask_overlay(plate_rgb: np.ndarray, quadmask: np.ndarray, opacity: float = 0.55) -> np.ndarray:
    """The plate (display uint8) with each non-keep quadmask value tinted in its colour."""
    out = plate_rgb.astype(np.float32) / 255.0
    for value, colour in QUADMASK_COLOURS.items():
        where = quadmask == value
        out[where] = out[where] * (1 - opacity) + np.array(colour, np.float32) * opacity
    return (out * 255.0 + 0.5).astype(np.uint8)


def build_quadmask(
    mask: np.ndarray,
    affected: Optional[np.ndarray],
    is_quadmask: bool = False,
    threshold: float = 0.0,
    dilate: int = 0,
) -> np.ndarray:
    """The quadmask the daemon would build from these mattes (its own code: the media layer's)."""
    from voidlink.media import quadmask
    from voidlink.media.quadmask import MatteSettings
    from voidlink.protos import pb

    m = mask[..., 0] if mask.ndim == 3 else mask
    if is_quadmask:
        return quadmask.snap(m)[0]
    settings = MatteSettings.from_options(pb.MatteOptions(threshold=threshold, dilate=dilate))
    a = None
    if affected is not None:
        a = affected[..., 0] if affected.ndim == 3 else affected
    return quadmask.from_mattes(m, a, settings)
