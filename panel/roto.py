"""Roto for hosts that hand us no matte: keyframed shapes rasterised to matte sequences.

A shape is a polygon, an ellipse or a rectangle with a role (the *object* to remove, or the
*affected* region its shadow or reflection touches). Its geometry is keyed on frames: a polygon by
its vertices, an ellipse or rectangle by two opposite corners of its box. Between keys every
coordinate is interpolated linearly; before the first key and after the last the nearest key holds.
Rasterising fills each shape's outline anti-aliased, softens it by its feather (the width of the
soft edge in pixels) and takes the union of the shapes of one role.

No Qt here: the panel draws shapes, this module owns them, and a farm task or a test can rasterise
the same document without a display.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from voidlink.errors import InvalidInput

KINDS = ("polygon", "ellipse", "rectangle")
ROLES = ("object", "affected")
FORMAT_VERSION = 1
# Vertices of the polygon an ellipse is filled as: the outline stays within 0.05 px of the true
# ellipse up to ~2K-wide shapes, which anti-aliasing hides.
_ELLIPSE_SEGMENTS = 96
# Scanlines per pixel row when measuring coverage.
_SUPERSAMPLE = 4

Point = tuple[float, float]
# A click prompt of the matte tracker: image position and whether it says "not the object here".
PromptPoint = tuple[float, float, bool]


@dataclass
class Shape:
    kind: str
    role: str = "object"
    feather: float = 0.0
    keys: dict[int, list[Point]] = field(default_factory=dict)
    name: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InvalidInput(
                f"roto shape '{self.name}': unknown kind '{self.kind}' (choose {', '.join(KINDS)})",
                reason="BAD_VALUE",
                field="roto.kind",
            )
        if self.role not in ROLES:
            raise InvalidInput(
                f"roto shape '{self.name}': unknown role '{self.role}' (choose {', '.join(ROLES)})",
                reason="BAD_VALUE",
                field="roto.role",
            )
        self.keys = {int(frame): [(float(x), float(y)) for x, y in points] for frame, points in self.keys.items()}

    def set_key(self, frame: int, points: Iterable[Point]) -> None:
        points = [(float(x), float(y)) for x, y in points]
        needed = 3 if self.kind == "polygon" else 2
        if len(points) < needed:
            raise InvalidInput(
                f"roto shape '{self.name}' at frame {frame}: a {self.kind} needs {needed} points, got {len(points)}",
                reason="BAD_SHAPE",
                field="roto.keys",
                frame=frame,
            )
        if self.kind != "polygon":
            points = points[:2]
        for other_frame, other in self.keys.items():
            if len(other) != len(points):
                raise InvalidInput(
                    f"roto shape '{self.name}': frame {frame} has {len(points)} points but frame {other_frame} has "
                    f"{len(other)}; every key of a shape needs the same number of points to interpolate",
                    reason="BAD_SHAPE",
                    field="roto.keys",
                    frame=frame,
                )
        self.keys[int(frame)] = points

    def points_at(self, frame: float) -> np.ndarray:
        """The keyed points at `frame`: interpolated between keys, held outside them."""
        if not self.keys:
            raise InvalidInput(f"roto shape '{self.name}' has no keyframes", reason="BAD_SHAPE", field="roto.keys")
        frames = sorted(self.keys)
        if frame <= frames[0]:
            return np.array(self.keys[frames[0]], np.float64)
        if frame >= frames[-1]:
            return np.array(self.keys[frames[-1]], np.float64)
        after = next(f for f in frames if f >= frame)
        before = max(f for f in frames if f <= frame)
        a = np.array(self.keys[before], np.float64)
        if after == before:
            return a
        t = (frame - before) / (after - before)
        return a + (np.array(self.keys[after], np.float64) - a) * t

    def outline_at(self, frame: float) -> np.ndarray:
        """The closed outline (N, 2) in pixel coordinates (x right, y down from the top-left corner)."""
        points = self.points_at(frame)
        if self.kind == "polygon":
            return points
        (x0, y0), (x1, y1) = points[0], points[1]
        left, right, top, bottom = min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)
        if self.kind == "rectangle":
            return np.array([(left, top), (right, top), (right, bottom), (left, bottom)], np.float64)
        cx, cy, rx, ry = (left + right) / 2, (top + bottom) / 2, (right - left) / 2, (bottom - top) / 2
        angles = np.linspace(0, 2 * math.pi, _ELLIPSE_SEGMENTS, endpoint=False)
        return np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], axis=1)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "role": self.role,
            "feather": self.feather,
            "name": self.name,
            "keys": {str(frame): [list(p) for p in points] for frame, points in sorted(self.keys.items())},
        }

    @classmethod
    def from_dict(cls, data: dict) -> Shape:
        return cls(
            kind=data["kind"],
            role=data.get("role", "object"),
            feather=float(data.get("feather", 0.0)),
            name=data.get("name", ""),
            keys={int(frame): [tuple(p) for p in points] for frame, points in data.get("keys", {}).items()},
        )


@dataclass
class RotoDocument:
    """All shapes of one job, with the plate size they were drawn on, and the tracker's click prompts per frame."""

    width: int
    height: int
    shapes: list[Shape] = field(default_factory=list)
    points: dict[int, list[PromptPoint]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.points = {
            int(frame): [(float(x), float(y), bool(negative)) for x, y, negative in clicks]
            for frame, clicks in self.points.items()
            if clicks
        }

    def of_role(self, role: str) -> list[Shape]:
        return [s for s in self.shapes if s.role == role]

    def to_dict(self) -> dict:
        data = {
            "voidlink_roto": FORMAT_VERSION,
            "width": self.width,
            "height": self.height,
            "shapes": [s.to_dict() for s in self.shapes],
        }
        if self.points:
            # An optional key, not a new version: a panel from before the points still opens the file.
            data["points"] = {
                str(frame): [[x, y, negative] for x, y, negative in clicks]
                for frame, clicks in sorted(self.points.items())
                if clicks
            }
        return data

    @classmethod
    def from_dict(cls, data: dict, source: str = "roto") -> RotoDocument:
        if data.get("voidlink_roto") != FORMAT_VERSION:
            raise InvalidInput(
                f"{source}: not a voidlink roto file (version {data.get('voidlink_roto')!r})",
                reason="BAD_ROTO",
                file=source,
            )
        points = {int(frame): [tuple(p) for p in clicks] for frame, clicks in data.get("points", {}).items()}
        return cls(
            int(data["width"]), int(data["height"]), [Shape.from_dict(s) for s in data.get("shapes", [])], points
        )

    def save(self, path: str) -> None:
        """Write the document as JSON beside the job's mattes (temporary file, then rename)."""
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        handle, temp = tempfile.mkstemp(prefix=".roto.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(handle, "w") as out:
                json.dump(self.to_dict(), out, indent=1)
            os.replace(temp, path)
        finally:
            if os.path.exists(temp):
                os.unlink(temp)

    @classmethod
    def load(cls, path: str) -> RotoDocument:
        try:
            with open(path) as handle:
                data = json.load(handle)
        except (OSError, ValueError) as error:
            raise InvalidInput(f"cannot read roto file {path}: {error}", reason="BAD_ROTO", file=path) from error
        return cls.from_dict(data, path)


def rasterise_shape(shape: Shape, frame: float, width: int, height: int) -> np.ndarray:
    """One shape's coverage (H, W) float32 in 0–1, with its feather.

    Coverage is exact across each scanline and sampled by _SUPERSAMPLE scanlines per pixel row,
    over the shape's box only (a small shape on a 4K frame stays cheap).
    """
    import cv2

    coverage = np.zeros((height, width), np.float32)
    outline = shape.outline_at(frame)
    pad = int(math.ceil(shape.feather)) + 2
    x0 = max(int(math.floor(outline[:, 0].min())) - pad, 0)
    y0 = max(int(math.floor(outline[:, 1].min())) - pad, 0)
    x1 = min(int(math.ceil(outline[:, 0].max())) + pad, width)
    y1 = min(int(math.ceil(outline[:, 1].max())) + pad, height)
    if x1 <= x0 or y1 <= y0:
        return coverage
    box = _coverage(outline - (x0, y0), x1 - x0, y1 - y0, _SUPERSAMPLE)
    coverage[y0:y1, x0:x1] = box
    if shape.feather > 0:
        # The feather is the soft edge's full width; a Gaussian's ±1.5 sigma carries most of its ramp.
        sigma = shape.feather / 3.0
        coverage = cv2.GaussianBlur(coverage, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_CONSTANT)
    return coverage


def _coverage(outline: np.ndarray, width: int, height: int, rows_per_pixel: int) -> np.ndarray:
    """Area coverage (H, W) of a closed outline, even-odd rule.

    Each pixel row is sampled by `rows_per_pixel` scanlines; along a scanline the covered length of
    every pixel is exact (a span [a, b) adds 1 per whole pixel and the fractions at its ends), so
    vertical edges anti-alias exactly and horizontal ones to 1/rows_per_pixel.
    """
    s = rows_per_pixel
    ys = (np.arange(height * s) + 0.5) / s
    xa, ya = outline[:, 0], outline[:, 1]
    xb, yb = np.roll(xa, -1), np.roll(ya, -1)
    y = ys[:, None]
    crosses = ((ya <= y) & (y < yb)) | ((yb <= y) & (y < ya))
    with np.errstate(divide="ignore", invalid="ignore"):
        x = xa + (y - ya) * (xb - xa) / (yb - ya)
    x = np.sort(np.where(crosses, x, np.inf), axis=1)
    counts = crosses.sum(axis=1)
    # Differences of "covered length left of x" ramps; a cumulative sum turns them into coverage.
    ramps = np.zeros((height * s, width + 2), np.float32)
    rows = np.arange(height * s)

    def add_ramp(where: np.ndarray, at: np.ndarray, sign: float) -> None:
        at = np.clip(at, 0.0, float(width))
        whole = np.floor(at).astype(np.int64)
        part = (at - whole).astype(np.float32)
        np.add.at(ramps, (rows[where], np.zeros_like(whole)), sign)
        np.add.at(ramps, (rows[where], whole), sign * (part - 1.0))
        np.add.at(ramps, (rows[where], whole + 1), -sign * part)

    for k in range(0, int(counts.max(initial=0)) - 1, 2):
        valid = counts >= k + 2
        add_ramp(valid, x[valid, k + 1], 1.0)
        add_ramp(valid, x[valid, k], -1.0)
    lengths = np.cumsum(ramps, axis=1)[:, :width]
    return lengths.reshape(height, s, width).mean(axis=1, dtype=np.float32)


def rasterise(shapes: Iterable[Shape], frame: float, width: int, height: int) -> np.ndarray:
    """The union (max) of the shapes' coverages at `frame`: an (H, W) float32 matte."""
    matte = np.zeros((height, width), np.float32)
    for shape in shapes:
        np.maximum(matte, rasterise_shape(shape, frame, width, height), out=matte)
    return matte


def write_mattes(
    document: RotoDocument, role: str, pattern: str, first: int, last: int, roto_path: Optional[str] = None
) -> str:
    """Rasterise the shapes of `role` for frames first..last into a single-channel EXR sequence.

    Each frame is written atomically by the media layer; the document is saved beside the mattes
    (or at `roto_path`) so the job can be re-opened and edited. Returns the pattern written.
    """
    from voidlink.media.image import write_image
    from voidlink.protos.clips import SequencePattern

    parsed = SequencePattern.parse(pattern)
    if parsed is None:
        raise InvalidInput(
            f"roto matte pattern '{pattern}' has no frame number (use ####, %04d or @)",
            reason="BAD_PATTERN",
            field="roto.output",
        )
    shapes = document.of_role(role)
    if not shapes:
        raise InvalidInput(f"no roto shapes drawn for the {role} matte", reason="NO_MASK", field=f"roto.{role}")
    if last < first:
        raise InvalidInput(f"roto: the range {first}-{last} is empty", reason="EMPTY_RANGE", field="roto.frames")
    parsed = parsed if parsed.padding else parsed.with_padding(4)
    for frame in range(first, last + 1):
        matte = rasterise(shapes, frame, document.width, document.height)
        write_image(parsed.path(frame), matte[..., None], pixel_type="half", channel_names=["A"])
    document.save(roto_path or os.path.join(parsed.directory, "roto.json"))
    return parsed.hashes()
