"""The quadmask checks a matte job reports: what the VOID reference's mask tools would flag, per frame.

Each finding names its frame in the user's words. The checks follow what the reference's mask
pipeline (VLM-MASK-REASONER, stages 3a and 4) produces, so that a quadmask authored elsewhere is
held to the same conventions:

- stray greys: stage 4 writes only 0, 63, 127 and 255; anything else came from compression or
  resampling (the reference itself clamps codec drift around 127 on frame 0);
- empty: a frame with neither object nor affected pixels removes nothing;
- edge: an object touching the frame's border is usually cut off by the frame, and the model has
  no background beyond it to borrow from;
- overlap: stage 4 writes 63 exactly where the black (object) mask and the grey (affected) mask
  are both set (black 0 & grey 127 -> 63), and stage 3a never cuts the object out of the grey
  mask (it keeps any affected cell near the object, grown to a grid). So where the affected region
  meets the object, a reference-made quadmask has 63 along the seam; object pixels bordering
  affected ones with no 63 anywhere on that frame mean the affected matte was cut around the object;
- affected without object: an affected region on a frame where the object is absent;
- area jump (shot level): the object's area changing abruptly between neighbouring frames, most
  often a tracking slip or a missing matte frame.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np
from voidlink.media.quadmask import AFFECTED, KEEP, OBJECT, OVERLAP

__all__ = ["Finding", "check_quadmask", "check_sequence"]

# Above this share of stray pixels a frame is not a quadmask with a few codec greys but a soft matte.
STRAY_ERROR_SHARE = 0.05
# Neighbouring frames whose object areas differ by more than this factor (either way) are reported.
AREA_JUMP_FACTOR = 1.6
# Areas below this many pixels are too small for a ratio to mean anything.
AREA_JUMP_MIN_PIXELS = 64


@dataclass(frozen=True)
class Finding:
    """One thing the checks found, on one frame (frame None: on the whole shot)."""

    check: str  # "stray_grey", "empty", "edge", "overlap", "affected_without_object", "area_jump"
    severity: str  # "warning" or "error"
    message: str
    frame: Optional[int] = None


def _as_quadmask(quadmask: np.ndarray) -> np.ndarray:
    values = np.asarray(quadmask)
    if values.ndim == 3:
        values = values[..., 0]
    if values.dtype != np.uint8:
        values = np.clip(np.nan_to_num(values.astype(np.float32), nan=1.0) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return values


def _touches_border(region: np.ndarray) -> bool:
    return bool(region[0].any() or region[-1].any() or region[:, 0].any() or region[:, -1].any())


def check_quadmask(quadmask: np.ndarray, frame: int) -> list[Finding]:
    """The per-frame checks on one quadmask: uint8 (H, W) values, or a float 0-1 matte of them."""
    q = _as_quadmask(quadmask)
    findings: list[Finding] = []
    stray = ~np.isin(q, (OBJECT, OVERLAP, AFFECTED, KEEP))
    strays = int(stray.sum())
    if strays:
        share = strays / q.size
        severity = "error" if share > STRAY_ERROR_SHARE else "warning"
        findings.append(
            Finding(
                "stray_grey",
                severity,
                f"frame {frame}: {strays} pixels ({100 * share:.2g}%) are not one of 0, 63, 127, 255 "
                "(compression or resampling); they will be snapped to the nearest value",
                frame,
            )
        )
    # Judge the regions on snapped values so stray greys are not counted twice.
    snapped = np.asarray((OBJECT, OVERLAP, AFFECTED, KEEP), np.uint8)[
        np.argmin(np.abs(q[..., None].astype(np.int16) - np.array([0, 63, 127, 255], np.int16)), axis=-1)
    ]
    obj = (snapped == OBJECT) | (snapped == OVERLAP)
    affected = (snapped == AFFECTED) | (snapped == OVERLAP)
    if not obj.any() and not affected.any():
        findings.append(
            Finding(
                "empty",
                "warning",
                f"frame {frame}: no object and no affected region: nothing is removed on this frame",
                frame,
            )
        )
        return findings
    if not obj.any():
        findings.append(
            Finding(
                "affected_without_object",
                "warning",
                f"frame {frame}: an affected region but no object; the affected area is "
                "removed although the object is not on this frame",
                frame,
            )
        )
    elif _touches_border(obj):
        findings.append(
            Finding(
                "edge",
                "warning",
                f"frame {frame}: the object touches the frame's edge; "
                "it may continue outside the frame, where nothing can be reconstructed",
                frame,
            )
        )
    if obj.any() and not (snapped == OVERLAP).any():
        only_object = (snapped == OBJECT).astype(np.uint8)
        grown = cv2.dilate(only_object, np.ones((3, 3), np.uint8)) > 0
        seam = int((grown & (snapped == AFFECTED)).sum())
        if seam:
            findings.append(
                Finding(
                    "overlap",
                    "warning",
                    f"frame {frame}: the affected region meets the object along {seam} pixels but no pixel is "
                    "marked 63 (object and affected); the affected matte looks cut around the object, "
                    "where the reference marks their overlap 63",
                    frame,
                )
            )
    return findings


def check_sequence(quadmasks: Iterable[tuple[int, np.ndarray]]) -> list[Finding]:
    """Every frame's checks, then the shot-level ones, in frame order (frames given in order)."""
    findings: list[Finding] = []
    previous: Optional[tuple[int, int]] = None
    jumps: list[int] = []
    for frame, quadmask in quadmasks:
        findings.extend(check_quadmask(quadmask, frame))
        q = _as_quadmask(quadmask)
        area = int((q <= (OVERLAP + AFFECTED) // 2).sum())  # snapped to object or overlap
        if previous is not None:
            last_frame, last_area = previous
            small, large = sorted((last_area, area))
            if large >= AREA_JUMP_MIN_PIXELS and (small == 0 or large / small > AREA_JUMP_FACTOR):
                jumps.append(frame)
                findings.append(
                    Finding(
                        "area_jump",
                        "warning",
                        f"frame {frame}: the object's area jumps from {last_area} pixels on frame {last_frame} "
                        f"to {area}; check the matte there",
                        frame,
                    )
                )
        previous = (frame, area)
    if jumps:
        listed = ", ".join(str(f) for f in jumps[:8]) + (" ..." if len(jumps) > 8 else "")
        findings.append(
            Finding("area_jump", "warning", f"the object's area jumps on {len(jumps)} frame(s) of the shot: {listed}")
        )
    return findings
