"""The weights-free affected proposal: what changes near the object against the camera-aligned background.

For each frame with the object, its neighbours within a window are aligned onto it by the
camera's homography (chained from neighbouring pairs, fitted off the object), and a per-pixel
temporal median of them is the background; a neighbour only votes where it is free of its own
object and of the object's surroundings (where its shadow or reflection would be). What differs
from that background near the object (hysteresis thresholds above the frame's own noise, within a
radius scaled to the object's size), minus the object itself, is proposed as affected.

It is a proposal, conservative by design: what moves with the object but never leaves a pixel
long enough for the background to be seen there is not found, and neither is anything farther
away than the radius. Analysis runs at a reduced scale and only a window of small frames is held.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np
from voidlink.inference.backends.classical.flow import homography, to_grey
from voidlink.inference.backends.matte.base import AffectedProposer, Cancelled, FrameReader, MatteRequest

__all__ = ["MotionProposer", "grow_to_grid"]

ANALYSIS_MAX_SIDE = 480
# The radius around the object searched for its effects, in units of sqrt(object area).
RADIUS_FACTOR = 0.6
# A pixel needs at least this many neighbours free of the object to have a background.
MIN_VOTES = 3


def grow_to_grid(region: np.ndarray, cell: int) -> np.ndarray:
    """Every cell of `cell` px (from the top-left corner) that `region` touches, filled whole.

    The reference's mask tools grow the affected masks to grid cells the same way.
    """
    if cell <= 0 or not region.any():
        return region
    h, w = region.shape
    rows, cols = -(-h // cell), -(-w // cell)
    padded = np.zeros((rows * cell, cols * cell), bool)
    padded[:h, :w] = region
    touched = padded.reshape(rows, cell, cols, cell).any(axis=(1, 3))
    return np.repeat(np.repeat(touched, cell, axis=0), cell, axis=1)[:h, :w]


def _kernel(radius: float) -> np.ndarray:
    r = max(1, int(round(radius)))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


@dataclass
class _Small:
    colour: np.ndarray  # uint8 RGB at analysis scale (a window of these is held)
    grey: np.ndarray  # uint8
    near: np.ndarray  # bool: the object grown by its radius (where its effects may be)
    obj: np.ndarray  # bool object at analysis scale
    area: int  # object pixels at full resolution


class MotionProposer(AffectedProposer):
    """Proposes the affected region from what changes near the object; no weights, no text."""

    name = "motion"

    def __init__(
        self,
        window: int = 16,
        samples: int = 8,
        grid: int = 0,
        high: float = 0.10,
        low: float = 0.05,
        max_side: int = ANALYSIS_MAX_SIDE,
    ) -> None:
        self.window, self.samples, self.grid = int(window), int(samples), int(grid)
        self.high, self.low, self.max_side = float(high), float(low), int(max_side)

    def _load(self, image: np.ndarray, matte: np.ndarray, scale: float) -> _Small:
        image = np.clip(np.nan_to_num(image[..., :3]), 0.0, 1.0).astype(np.float32)
        grey = to_grey(image, scale)
        h, w = grey.shape
        colour = image if scale == 1.0 else cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        full = np.asarray(matte, np.float32) > 0.5
        obj = cv2.resize(full.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) > 0.0
        area = int(full.sum())
        radius = RADIUS_FACTOR * np.sqrt(area) * scale
        near = cv2.dilate(obj.astype(np.uint8), _kernel(radius)) > 0 if area else obj
        colour = (colour * 255.0 + 0.5).astype(np.uint8)
        return _Small(colour=colour, grey=grey, near=near, obj=obj, area=area)

    def propose(
        self, reader: FrameReader, object_matte: Callable[[int], np.ndarray], text: str, request: MatteRequest
    ) -> Iterator[tuple[int, np.ndarray]]:
        frames = list(reader.frames)
        width, height = reader.size
        scale = min(1.0, self.max_side / float(max(width, height)))
        request.notes.append(
            "affected proposal (motion): regions near the object that differ from the background seen "
            "in neighbouring frames; a conservative proposal to edit, not a final answer"
            + ("" if not text else f"; the words '{text}' are not used by this proposer")
        )
        held: dict[int, _Small] = {}
        step: dict[int, np.ndarray] = {}  # homography of frame i onto frame i+1 (indices)
        thin = 0
        for i, frame in enumerate(frames):
            if request.cancelled():
                raise Cancelled(f"affected proposal cancelled at frame {frame}")
            for j in range(max(0, i - self.window), min(len(frames), i + self.window + 1)):
                if j not in held:
                    held[j] = self._load(reader.read(frames[j]), object_matte(frames[j]), scale)
                    if j - 1 in held and j - 1 not in step:
                        a, b = held[j - 1], held[j]
                        step[j - 1] = homography(a.grey, b.grey, ~(a.near | a.obj), ~(b.near | b.obj))
            for j in [j for j in held if j < i - self.window]:
                del held[j]
                step.pop(j - 1, None)
            here = held[i]
            if not here.area:
                yield frame, np.zeros((height, width), np.float32)
                continue
            region, votes_ok = self._frame(i, held, step)
            if not votes_ok:
                thin += 1
            full = cv2.resize(region.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR) > 0.5
            full &= ~(np.asarray(object_matte(frame), np.float32) > 0.5)
            full = grow_to_grid(full, self.grid)
            if i and i % 10 == 0:
                request.on_message(f"affected proposal: frame {frame}")
            yield frame, full.astype(np.float32)
        if thin:
            request.notes.append(
                f"affected proposal: on {thin} frame(s) the object stayed too long in place for the "
                "background near it to be seen; little or nothing is proposed there"
            )

    def _to(self, i: int, j: int, step: dict[int, np.ndarray]) -> np.ndarray:
        """Homography taking frame index j onto frame index i."""
        model = np.eye(3)
        for k in range(min(i, j), max(i, j)):
            model = step[k] @ model  # step[k] maps k onto k+1
        if j > i:
            model = np.linalg.inv(model)
        return model / model[2, 2]

    def _frame(self, i: int, held: dict[int, _Small], step: dict[int, np.ndarray]) -> tuple[np.ndarray, bool]:
        """The proposal on frame index i at analysis scale, and whether the background was seen."""
        here = held[i]
        h, w = here.grey.shape
        colour = here.colour.astype(np.float32)
        others = sorted((j for j in held if j != i), key=lambda j: -abs(j - i))
        # The farthest neighbours first: there the object is most likely away from here.
        others = [j for j in others if not (held[j].near & here.near).all()][: self.samples]
        stack = np.full((max(1, len(others)), h, w, 3), np.nan, np.float32)
        for n, j in enumerate(others):
            model = self._to(i, j, step)
            warped = cv2.warpPerspective(held[j].colour, model, (w, h), flags=cv2.INTER_LINEAR).astype(np.float32)
            free = (~held[j].near).astype(np.uint8)
            valid = cv2.warpPerspective(free, model, (w, h), flags=cv2.INTER_NEAREST, borderValue=0) > 0
            stack[n][valid] = warped[valid]
        votes = np.isfinite(stack[..., 0]).sum(axis=0)
        seen = votes >= MIN_VOTES
        region = np.zeros((h, w), bool)
        if not (seen & here.near).any():
            return region, False
        background = np.zeros((h, w, 3), np.float32)
        background[seen] = np.nanmedian(stack[:, seen], axis=0)
        background = np.where(seen[..., None], background, colour)
        # The least difference over a pixel's 3x3 neighbourhood of the background: a sub-pixel
        # misalignment at a hard edge is not a change, a shadow or reflection (smooth) still is.
        diff = np.full((h, w), np.inf, np.float32)
        padded = cv2.copyMakeBorder(background, 1, 1, 1, 1, cv2.BORDER_REPLICATE)
        for dy in range(3):
            for dx in range(3):
                shifted = padded[dy : dy + h, dx : dx + w]
                diff = np.minimum(diff, np.abs(colour - shifted).max(axis=-1) / 255.0)
        diff[~seen] = 0.0
        quiet = seen & ~here.near
        noise = float(np.median(diff[quiet])) if quiet.any() else 0.0
        high, low = max(self.high, 6.0 * noise), max(self.low, 3.0 * noise)
        around = here.near & ~(cv2.dilate(here.obj.astype(np.uint8), _kernel(1)) > 0)
        weak = (diff > low) & around
        strong = (diff > high) & around
        count, labels, stats, _ = cv2.connectedComponentsWithStats(weak.astype(np.uint8), connectivity=8)
        keep = np.unique(labels[strong])
        keep = keep[keep > 0]
        # Specks are noise or misalignment, not an effect of the object.
        least = max(4, int(0.02 * here.obj.sum()))
        keep = [k for k in keep if stats[k, cv2.CC_STAT_AREA] >= least]
        if keep:
            region = np.isin(labels, keep)
            region = cv2.morphologyEx(region.astype(np.uint8), cv2.MORPH_CLOSE, _kernel(1)) > 0
        return region & around, bool(seen[here.near].mean() > 0.5)
