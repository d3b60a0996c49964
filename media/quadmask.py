"""The quadmask: per pixel 0 object, 63 object∩affected, 127 affected, 255 keep.

Built either from a quadmask sequence (greys snapped to the nearest of the four values, counted
so the job log can say how many were off) or from an object matte plus an optional affected matte
(threshold, invert, dilate). The feather is not part of the quadmask: it widens the region handed
to the backend and softens the composite, so a quadmask written out and read back as input gives
the same job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np
from voidlink.protos.vocabulary import MATTE_THRESHOLD

# The quadmask's four values, per pixel: the model's interface, shared by every floor that draws or reads one.
OBJECT = 0  # the object to remove
OVERLAP = 63  # object and affected region at once
AFFECTED = 127  # what the object's interactions touched (shadows, reflections, things it moved)
KEEP = 255  # everything else, kept
VALUES = np.array([OBJECT, OVERLAP, AFFECTED, KEEP], dtype=np.uint8)
DEFAULT_THRESHOLD = MATTE_THRESHOLD
DEFAULT_FEATHER = 3.0


@dataclass(frozen=True)
class MatteSettings:
    """How one matte becomes a region (the daemon's view of `MatteOptions`)."""

    is_quadmask: bool = False
    threshold: float = DEFAULT_THRESHOLD
    dilate: int = 0
    feather: float = DEFAULT_FEATHER
    invert: bool = False

    @classmethod
    def from_options(cls, options) -> MatteSettings:
        feather = options.feather
        return cls(
            is_quadmask=options.is_quadmask,
            threshold=options.threshold if options.threshold > 0 else DEFAULT_THRESHOLD,
            dilate=int(options.dilate),
            feather=0.0 if feather < 0 else (feather if feather > 0 else DEFAULT_FEATHER),
            invert=options.invert,
        )


def snap(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Quadmask values from a matte read as float 0–1 (or uint8); returns (quadmask, pixels snapped).

    Edge greys from resampling or compression land on the nearest of 0, 63, 127, 255.
    """
    v = np.asarray(values)
    if v.ndim == 3:
        v = v[..., 0]
    if v.dtype != np.uint8:
        v = np.clip(np.nan_to_num(v.astype(np.float32), nan=1.0) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    # The reference VOID's boundaries (its `get_video_mask_input`): ≤31 object, 32–95 overlap,
    # 96–191 affected, above keep. 95 is overlap there, though nearer to 127 than to 63.
    out = np.full(v.shape, KEEP, np.uint8)
    out[v <= 191] = AFFECTED
    out[v <= 95] = OVERLAP
    out[v <= 31] = OBJECT
    return out, int(np.count_nonzero(out != v))


def _grow(region: np.ndarray, pixels: int) -> np.ndarray:
    if pixels == 0 or not region.any():
        return region
    size = 2 * abs(pixels) + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    op = cv2.dilate if pixels > 0 else cv2.erode
    return op(region.astype(np.uint8), kernel).astype(bool)


def region(matte: np.ndarray, settings: MatteSettings) -> np.ndarray:
    """Boolean region of a matte: thresholded, optionally inverted, grown or shrunk."""
    m = np.asarray(matte, dtype=np.float32)
    if m.ndim == 3:
        m = m[..., 0]
    inside = np.nan_to_num(m, nan=0.0) >= settings.threshold
    if settings.invert:
        inside = ~inside
    return _grow(inside, settings.dilate)


def from_regions(obj: np.ndarray, affected: Optional[np.ndarray] = None) -> np.ndarray:
    out = np.full(obj.shape, KEEP, np.uint8)
    if affected is not None:
        out[affected] = AFFECTED
        out[obj & affected] = OVERLAP
        out[obj & ~affected] = OBJECT
    else:
        out[obj] = OBJECT
    return out


def from_mattes(
    obj: np.ndarray,
    affected: Optional[np.ndarray],
    settings: MatteSettings,
    affected_settings: Optional[MatteSettings] = None,
) -> np.ndarray:
    aff = region(affected, affected_settings or settings) if affected is not None else None
    return from_regions(region(obj, settings), aff)


def grow_for_feather(quadmask: np.ndarray, feather: float) -> np.ndarray:
    """The quadmask handed to the backend: every region widened by the feather, so the soft edge
    of the composite blends filled pixels, not the object's own edge."""
    pixels = int(np.ceil(feather))
    if pixels <= 0:
        return quadmask
    out = quadmask.copy()
    obj = _grow(quadmask <= OVERLAP, pixels)
    aff = _grow((quadmask == OVERLAP) | (quadmask == AFFECTED), pixels)
    out[(out == KEEP) & obj] = OBJECT
    out[(out == KEEP) & aff] = AFFECTED
    return out


def composite_alpha(quadmask: np.ndarray, feather: float) -> np.ndarray:
    """1 inside the (un-feathered) region, falling linearly to 0 over `feather` pixels outside it."""
    inside = quadmask != KEEP
    if feather <= 0 or not inside.any():
        return inside.astype(np.float32)
    distance = cv2.distanceTransform((~inside).astype(np.uint8), cv2.DIST_L2, 5)
    alpha = np.clip(1.0 - distance / np.float32(feather + 1.0), 0.0, 1.0).astype(np.float32)
    # Only where the backend was asked to fill (its region is grown by the same feather).
    alpha[grow_for_feather(quadmask, feather) == KEEP] = 0.0
    return alpha


def bbox(quadmask: np.ndarray) -> Optional[tuple[int, int, int, int]]:
    """(x0, y0, x1, y1), exclusive ends, of the pixels that are not KEEP; None when there are none."""
    inside = quadmask != KEEP
    rows = np.flatnonzero(inside.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(inside.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def resize(quadmask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resample to (width, height) keeping thin regions: a target pixel touched by a class has it."""
    w, h = size
    if quadmask.shape[1] == w and quadmask.shape[0] == h:
        return quadmask
    shrinking = w < quadmask.shape[1] or h < quadmask.shape[0]
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR

    def cover(mask: np.ndarray) -> np.ndarray:
        return cv2.resize(mask.astype(np.float32), (w, h), interpolation=interp) > (0.01 if shrinking else 0.5)

    obj = cover(quadmask <= OVERLAP)
    aff = cover((quadmask == OVERLAP) | (quadmask == AFFECTED))
    return from_regions(obj, aff)


def coverage(quadmask: np.ndarray) -> float:
    return float(np.count_nonzero(quadmask != KEEP)) / max(quadmask.size, 1)
