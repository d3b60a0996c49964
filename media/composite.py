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


def blend_weight(alpha: np.ndarray, changed: Optional[np.ndarray] = None) -> np.ndarray:
    """How much of the fill each pixel takes (H, W) 0-1: the feathered mask, times the backend's own
    change mask when it gives one."""
    return alpha if changed is None else alpha * np.clip(changed, 0.0, 1.0)


def composite(
    source: np.ndarray, rgb: list[int], filled: np.ndarray, alpha: np.ndarray, changed: Optional[np.ndarray] = None
) -> np.ndarray:
    """source (H, W, C) float32 with every channel; `rgb` the indices of its colour channels;
    `filled` (H, W, 3) in the source's colour space; `alpha` (H, W) 0–1; `changed` (H, W) 0–1 where
    the backend actually changed the frame (None: everywhere it was asked to)."""
    out = source.copy()
    weight = blend_weight(alpha, changed)
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


# The change as layers beside RGB(A), for a compositor to grade or dial back: EXR names with a layer
# prefix, which Nuke's Shuffle and Fusion's loader list as layers of their own.
DELTA_CHANNELS = ("void.delta.R", "void.delta.G", "void.delta.B")
CHANGE_CHANNEL = "void.change"
QUADMASK_CHANNEL = "void.quadmask"
LAYER_CHANNELS = (*DELTA_CHANNELS, CHANGE_CHANNEL, QUADMASK_CHANNEL)
LAYER_PREFIX = "void."


def change_layers(
    plate: np.ndarray, result: np.ndarray, rgb: list[int], weight: np.ndarray, quadmask: np.ndarray
) -> np.ndarray:
    """(H, W, 5) float32 in LAYER_CHANNELS order: result - plate on the colour channels (`rgb`, three
    indices, repeated for a grey plate), the blend weight, and the quadmask's values / 255.

    `result` should hold the values as written (already rounded to the file's pixel type) so that
    plate + delta gives back the file's RGB. The delta is exactly 0 wherever the weight is 0, also on
    a NaN/Inf plate pixel there; inside, a non-finite plate pixel counts as 0 (the fill replaced it)."""
    rgb3 = list(rgb) * 3 if len(rgb) == 1 else list(rgb)
    before = np.nan_to_num(plate[..., rgb3], nan=0.0, posinf=0.0, neginf=0.0)
    with np.errstate(invalid="ignore", over="ignore"):
        delta = result[..., rgb3] - before
    delta[weight <= 0] = 0.0
    layers = np.empty((*weight.shape, len(LAYER_CHANNELS)), np.float32)
    layers[..., :3] = delta
    layers[..., 3] = weight
    layers[..., 4] = quadmask.astype(np.float32) / 255.0
    return layers


def add_back(result: np.ndarray, plate: np.ndarray, rgb: list[int], layers: np.ndarray) -> None:
    """Set `result`'s colour channels, where the change applies, to plate + delta as float32 adds
    them, in place: a Merge (plus) of the two layers then gives the file's RGB bit for bit.

    For a half result this changes nothing (the difference of two halves is exact in float32); for a
    float result `result - plate` rounds, and the value moves by that rounding: a unit or two in the
    last place of the larger of plate and result."""
    inside = layers[..., 3] > 0
    with np.errstate(invalid="ignore", over="ignore"):
        for k, channel in enumerate(rgb):
            # Only the changed pixels: the plate as change_layers read it (a non-finite pixel counts as 0).
            before = np.nan_to_num(plate[..., channel][inside], nan=0.0, posinf=0.0, neginf=0.0)
            result[..., channel][inside] = before + layers[..., k][inside]
