"""Which part of the plate a backend sees, and at what size.

From the plate size and the mask's box over the shot, choose a processing region: the box with
context padding around it, fitted to the backend's working aspect when it has one, clamped to the
frame. A backend with a fixed working size gets the region resampled to that size with area
filtering down and bicubic up, and the result comes back the same way; a small object on a 4K plate
is therefore processed at a high effective resolution instead of as a few pixels of a downscaled
frame. A backend with no working size gets the region at native size: the classical backend works
on it as it is, and VOID scales it itself to the reference's pixel area (384×672) with the aspect
kept, padded to multiples of 16.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np
from voidlink.media import quadmask as qm

Box = tuple[int, int, int, int]  # x0, y0, x1, y1; ends exclusive


@dataclass(frozen=True)
class ProcessingPlan:
    crop: Box  # in data-window pixel coordinates
    size: tuple[int, int]  # (width, height) the backend sees
    frame_size: tuple[int, int]  # (width, height) of the data window

    @property
    def crop_size(self) -> tuple[int, int]:
        return self.crop[2] - self.crop[0], self.crop[3] - self.crop[1]

    @property
    def scale(self) -> float:
        """Backend pixels per plate pixel (1 means native, < 1 downscaled)."""
        return self.size[0] / max(self.crop_size[0], 1)

    @property
    def full_frame(self) -> bool:
        return self.crop == (0, 0, *self.frame_size)

    def to_backend(self, image: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = self.crop
        region = image[y0:y1, x0:x1]
        if (x1 - x0, y1 - y0) == self.size:
            return np.ascontiguousarray(region)
        shrinking = self.size[0] < x1 - x0
        return cv2.resize(region, self.size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)

    def quadmask_to_backend(self, quadmask: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = self.crop
        return qm.resize(np.ascontiguousarray(quadmask[y0:y1, x0:x1]), self.size)

    def from_backend(self, image: np.ndarray) -> np.ndarray:
        """A backend result back at crop size (the caller pastes it at `crop`)."""
        w, h = self.crop_size
        if (image.shape[1], image.shape[0]) == (w, h):
            return image
        growing = w > image.shape[1]
        return cv2.resize(image, (w, h), interpolation=cv2.INTER_CUBIC if growing else cv2.INTER_AREA)


def union(boxes: list[Optional[Box]]) -> Optional[Box]:
    real = [b for b in boxes if b is not None]
    if not real:
        return None
    return min(b[0] for b in real), min(b[1] for b in real), max(b[2] for b in real), max(b[3] for b in real)


def _fit_axis(lo: int, hi: int, length: int, limit: int) -> tuple[int, int]:
    """An interval of `length` (at most `limit`) containing [lo, hi) where it can, inside [0, limit)."""
    length = min(max(length, hi - lo), limit)
    centre = (lo + hi) / 2
    start = int(round(centre - length / 2))
    start = min(max(start, 0), limit - length)
    return start, start + length


def plan(
    frame_size: tuple[int, int],
    box: Optional[Box],
    working_size: Optional[tuple[int, int]],
    mode: str = "auto",
    context: float = 0.5,
    min_context: int = 48,
) -> ProcessingPlan:
    """The processing region for a shot.

    `mode`: "full" (the reference's behaviour: the whole frame), "shot" (crop to the padded box),
    "auto" (crop when the padded box is under half the frame, else full frame).
    `context`: padding on each side as a fraction of the box's larger side, at least `min_context`.
    """
    fw, fh = frame_size
    full: Box = (0, 0, fw, fh)
    if box is None or mode == "full":
        region = full
    else:
        x0, y0, x1, y1 = box
        pad = max(min_context, int(context * max(x1 - x0, y1 - y0)))
        x0, y0, x1, y1 = max(0, x0 - pad), max(0, y0 - pad), min(fw, x1 + pad), min(fh, y1 + pad)
        if working_size is not None:
            aspect = working_size[0] / working_size[1]
            w, h = x1 - x0, y1 - y0
            # Never crop below the working size: upscaling a tiny crop invents detail.
            w = max(w, int(round(h * aspect)), min(working_size[0], fw))
            h = max(h, int(round(w / aspect)), min(working_size[1], fh))
            w = max(w, int(round(h * aspect)))
            x0, x1 = _fit_axis(x0, x1, w, fw)
            y0, y1 = _fit_axis(y0, y1, h, fh)
        region = (x0, y0, x1, y1)
        if mode == "auto" and (x1 - x0) * (y1 - y0) > 0.5 * fw * fh:
            region = full
    size = working_size if working_size is not None else (region[2] - region[0], region[3] - region[1])
    return ProcessingPlan(crop=region, size=tuple(size), frame_size=(fw, fh))
