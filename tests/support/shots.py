"""Small real EXR shots on disk for daemon and CLI tests (plate, object matte, shadow matte)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import OpenImageIO as oiio


@dataclass
class ShotFiles:
    folder: Path
    plate: str  # patterns with ####
    mask: str
    affected: str
    first: int
    last: int
    width: int
    height: int


def write_exr(path: Path, pixels: np.ndarray, pixel_type: str = "half") -> None:
    pixels = np.ascontiguousarray(pixels, dtype=np.float32)
    if pixels.ndim == 2:  # OpenImageIO reads a 2-D array's memory wrongly: give it a channel axis
        pixels = pixels[..., None]
    channels = pixels.shape[2]
    spec = oiio.ImageSpec(pixels.shape[1], pixels.shape[0], channels, pixel_type)
    if channels == 1:
        spec.channelnames = ("A",)
    spec.attribute("compression", "zip")
    out = oiio.ImageOutput.create(str(path))
    assert out is not None, oiio.geterror()
    assert out.open(str(path), spec), out.geterror()
    assert out.write_image(pixels), out.geterror()
    out.close()


def write_shot(folder: Path, frames: int = 8, width: int = 96, height: int = 64, first: int = 1001) -> ShotFiles:
    """A textured background panning right, a dark square crossing it and a soft shadow below it."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    texture = rng.random((height, width + frames * 2, 3), dtype=np.float32)
    for _ in range(2):  # soften the noise so flow has structure to follow
        texture = (texture + np.roll(texture, 1, 0) + np.roll(texture, 1, 1)) / 3
    yy, xx = np.mgrid[0:height, 0:width]
    size = max(6, height // 5)
    for i in range(frames):
        frame = first + i
        background = texture[:, i * 2 : i * 2 + width] * 0.8
        x0 = 8 + i * (width - size - 16) // max(frames - 1, 1)
        y0 = height // 3
        obj = ((xx >= x0) & (xx < x0 + size) & (yy >= y0) & (yy < y0 + size)).astype(np.float32)
        shadow = ((xx >= x0 + 2) & (xx < x0 + size + 4) & (yy >= y0 + size) & (yy < y0 + size + 5)).astype(np.float32)
        plate = background * (1 - 0.4 * shadow[..., None])
        plate = plate * (1 - obj[..., None]) + obj[..., None] * np.array([0.9, 0.1, 0.1], np.float32)
        write_exr(folder / f"plate.{frame:04d}.exr", plate)
        write_exr(folder / f"mask.{frame:04d}.exr", obj)
        write_exr(folder / f"shadow.{frame:04d}.exr", shadow)
    return ShotFiles(
        folder=folder,
        plate=str(folder / "plate.####.exr"),
        mask=str(folder / "mask.####.exr"),
        affected=str(folder / "shadow.####.exr"),
        first=first,
        last=first + frames - 1,
        width=width,
        height=height,
    )


def read_pixels(path: str) -> np.ndarray:
    buf = oiio.ImageBuf(path)
    return buf.get_pixels(oiio.FLOAT)


def frame_files(pattern: str, first: int, last: int) -> list[Path]:
    """The files of a `####` sequence pattern, first to last."""
    return [Path(pattern.replace("####", f"{f:04d}")) for f in range(first, last + 1)]
