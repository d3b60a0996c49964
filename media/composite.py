"""Putting the backend's result back into the plate.

Outside the feathered mask the output *is* the source: the same float32 values read from the
file, written back at the source's pixel type, so a half plate comes back bit for bit (any data
window, any extra channels). Inside, the backend result, scaled back and converted back to the
plate's colour space, replaces the plate's colour channels, blended across the feather.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from voidlink.media.plan import ProcessingPlan


def paste(plan: ProcessingPlan, result: np.ndarray, frame_shape: tuple[int, int]) -> np.ndarray:
    """A frame-sized RGB array holding `result` (already at crop size) at the plan's crop; zeros elsewhere."""
    h, w = frame_shape
    out = np.zeros((h, w, result.shape[2]), np.float32)
    x0, y0, x1, y1 = plan.crop
    out[y0:y1, x0:x1] = result
    return out


def composite(
    source: np.ndarray, rgb: list[int], filled: np.ndarray, alpha: np.ndarray, changed: Optional[np.ndarray] = None
) -> np.ndarray:
    """source (H, W, C) float32 with every channel; `rgb` the indices of its colour channels;
    `filled` (H, W, 3) in the source's colour space; `alpha` (H, W) 0–1; `changed` (H, W) 0–1 where
    the backend actually changed the frame (None: everywhere it was asked to)."""
    out = source.copy()
    weight = alpha if changed is None else alpha * np.clip(changed, 0.0, 1.0)
    inside = weight > 0
    if not inside.any():
        return out
    a = weight[inside][:, None]
    channels = out[..., rgb]
    plate = channels[inside]
    fill = filled[inside]
    with np.errstate(invalid="ignore", over="ignore"):
        blended = plate * (1.0 - a) + fill * a
    # Full weight, or a NaN/Inf plate pixel under any weight, takes the fill as is: a broken pixel
    # inside the mask is what the user asked us to replace.
    full = (a[:, 0] >= 1.0) | ~np.isfinite(plate).all(axis=1)
    blended[full] = fill[full]
    channels[inside] = blended
    out[..., rgb] = channels
    return out
