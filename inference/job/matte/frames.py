"""A matte job's pixels in and out: the plate's frames as a tracker reads them, and each matte staged.

Trackers read frames in any order (forward and backward from a prompt), often the same frame twice
in a row (the tracker, then the proposer beside it): `PlateFrames` keeps the last few in a small LRU
cache, display-referred RGB 0-1 as the removals' models see them. `stage_matte` writes one frame's
single-channel matte (`A`: the channel a matte clip is read by, so voidlink's own removal and Nuke's
Read take it as the object matte) into the staging folder, in the plate's data and display windows.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
from voidlink.inference.job.control import check_cancelled
from voidlink.inference.job.matte.prepare import PreparedMatte
from voidlink.inference.job.staging import staged_path
from voidlink.media import colour, image

from voidlink.errors import InvalidInput

CACHED_FRAMES = 8  # a tracker's forward/backward step and a proposer's neighbours, at 4K about 800 MB
MATTE_CHANNEL = "A"


class PlateFrames:
    """The job's plate as a tracker's `FrameReader`: frames on demand, the last few cached."""

    def __init__(self, prepared: PreparedMatte, cancelled=lambda: False, cached: int = CACHED_FRAMES) -> None:
        self.prepared = prepared
        self.cancelled = cancelled
        self._frames = list(prepared.frames)
        self._wanted = set(self._frames)
        self._transform = colour.ModelTransform(prepared.source_colorspace)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cached = max(1, int(cached))
        self._lock = threading.Lock()
        self.reads = 0  # files read (a test counts them against the frames asked for)

    @property
    def frames(self) -> Sequence[int]:
        return self._frames

    @property
    def size(self) -> tuple[int, int]:
        return self.prepared.size

    def read(self, frame: int) -> np.ndarray:
        """Frame `frame` as RGB float32 (H, W, 3), display-referred 0-1 (NaN and infinities as black)."""
        if frame not in self._wanted:
            raise KeyError(f"frame {frame} is not one of the job's frames {self._frames[0]}-{self._frames[-1]}")
        with self._lock:
            if frame in self._cache:
                self._cache.move_to_end(frame)
                return self._cache[frame]
        check_cancelled(self.cancelled)  # a tracker reading ahead stops at the next frame it asks for
        pixels = self._load(frame)
        with self._lock:
            self._cache[frame] = pixels
            while len(self._cache) > self._cached:
                self._cache.popitem(last=False)
        return pixels

    def _load(self, frame: int) -> np.ndarray:
        source = self.prepared.source
        loaded = source.read(frame)
        width, height = self.prepared.size
        if (loaded.spec.width, loaded.spec.height) != (width, height):
            raise InvalidInput(
                f"spec.source: frame {frame} ({loaded.path}) is {loaded.spec.width}x{loaded.spec.height}, frame "
                f"{self.prepared.first} is {width}x{height}; a shot must keep one size",
                reason="SIZE_MISMATCH",
                field="spec.source",
                file=loaded.path,
                frame=frame,
            )
        rgb = loaded.pixels[..., :3] if loaded.pixels.shape[2] >= 3 else np.repeat(loaded.pixels[..., :1], 3, axis=2)
        rgb = np.nan_to_num(rgb, nan=0.0, posinf=0.0, neginf=0.0)
        self.reads += 1
        model = np.clip(self._transform.to_model(rgb), 0.0, 1.0)
        model.flags.writeable = False  # shared by every caller of the cache: nobody may draw on it
        return model


def as_matte(frame: int, matte: np.ndarray, size: tuple[int, int], who: str) -> np.ndarray:
    """A tracker's or proposer's matte checked: (H, W) of the plate, finite, clipped to 0-1."""
    values = np.asarray(matte, dtype=np.float32)
    if values.ndim == 3 and values.shape[2] == 1:
        values = values[..., 0]
    width, height = size
    if values.shape != (height, width):
        raise RuntimeError(f"{who} returned a {values.shape} matte for frame {frame}; the plate is {width}x{height}")
    return np.clip(np.nan_to_num(values, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)


def stage_matte(
    prepared: PreparedMatte,
    staging: Path,
    kind: str,
    frame: int,
    matte: np.ndarray,
    made_by: Mapping[str, str],
) -> Path:
    """Write one frame's matte of `kind` ("output" or "affected") into the staging folder (temp, then rename)."""
    pattern = prepared.output if kind == "output" else prepared.affected_output
    assert pattern is not None
    target = staged_path(staging, kind, pattern, frame)
    target.parent.mkdir(parents=True, exist_ok=True)
    values = matte
    pixel_type = prepared.pixel_type
    if pixel_type == "uint8":
        values = np.round(values * 255.0) / 255.0  # 8-bit levels: an EXR holds them exactly as half
        if str(target).lower().endswith(".exr"):
            pixel_type = "half"  # OpenEXR has no 8-bit pixels
    assert prepared.source.header is not None
    spec = image.output_spec(
        matte_template(prepared.source.header),
        1,
        [MATTE_CHANNEL],
        pixel_type,
        prepared.compression,
        str(target),
        attributes={f"{image.OWN_PREFIX}{key}": value for key, value in made_by.items()},
    )
    image.write_image(str(target), values[..., None], spec)
    return target


def matte_template(plate: oiio.ImageSpec) -> oiio.ImageSpec:
    """The plate's windows and pixel aspect and nothing else of its header: a matte is data, so the
    plate's colour space (which Nuke's Read would apply) and other metadata are not the matte's."""
    template = oiio.ImageSpec(plate.width, plate.height, 1, "half")
    template.x, template.y = plate.x, plate.y
    template.full_x, template.full_y = plate.full_x, plate.full_y
    template.full_width, template.full_height = plate.full_width, plate.full_height
    aspect = plate.getattribute("PixelAspectRatio")
    if aspect:
        template.attribute("PixelAspectRatio", float(aspect))
    return template


def read_staged(prepared: PreparedMatte, staging: Path, kind: str, frame: int) -> np.ndarray:
    """A matte the job staged (a frame tracked before a restart, or by this run), as float32 (H, W)."""
    pattern = prepared.output if kind == "output" else prepared.affected_output
    assert pattern is not None
    path = staged_path(staging, kind, pattern, frame)
    return image.read_image(str(path), MATTE_CHANNEL, matte=True, field=f"staged {kind}", frame=frame).pixels[..., 0]


def is_staged(prepared: PreparedMatte, staging: Path, kind: str, frame: int) -> bool:
    pattern = prepared.output if kind == "output" else prepared.affected_output
    return pattern is not None and staged_path(staging, kind, pattern, frame).exists()
