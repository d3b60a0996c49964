"""The mattes placed on the plate: a matte of another data window or display size put where the
plate's pixels are, and one frame's quadmask built from the job's mattes."""

from __future__ import annotations

import numpy as np
import OpenImageIO as oiio
from voidlink.inference.job.prepare import PreparedJob
from voidlink.media import image, quadmask


def frame_quadmask(prepared: PreparedJob, frame: int, plate: oiio.ImageSpec) -> tuple[np.ndarray, int]:
    """The quadmask of one frame at the plate's data window, before feathering; and pixels snapped."""
    mask = prepared.mask
    settings = mask.settings
    if settings.is_quadmask:
        values = onto_plate(mask.read(frame), plate, fill=1.0, nearest=True)
        return quadmask.snap(values)
    obj = onto_plate(mask.read(frame), plate, fill=0.0, nearest=False)
    aff = None
    affected_settings = None
    if prepared.affected is not None:
        aff = onto_plate(prepared.affected.read(frame), plate, fill=0.0, nearest=False)
        affected_settings = prepared.affected.settings
    return quadmask.from_mattes(obj, aff, settings, affected_settings), 0


def onto_plate(matte: image.ImageFrame, plate: oiio.ImageSpec, fill: float, nearest: bool) -> np.ndarray:
    """A matte's pixels in the plate's data window: other data windows are placed by their display
    coordinates; another display size is resampled (only when the job allowed it)."""
    import cv2

    m = matte.pixels[..., 0]
    ms = matte.spec
    if (ms.full_width, ms.full_height) != (plate.full_width, plate.full_height):
        canvas = np.full((ms.full_height, ms.full_width), fill, np.float32)
        _blit(canvas, m, ms.x - ms.full_x, ms.y - ms.full_y)
        interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
        m = cv2.resize(canvas, (plate.full_width, plate.full_height), interpolation=interp)
        mx, my = plate.full_x, plate.full_y
    else:
        mx, my = ms.x - ms.full_x + plate.full_x, ms.y - ms.full_y + plate.full_y
    if (mx, my, m.shape[1], m.shape[0]) == (plate.x, plate.y, plate.width, plate.height):
        return m
    out = np.full((plate.height, plate.width), fill, np.float32)
    _blit(out, m, mx - plate.x, my - plate.y)
    return out


def _blit(dst: np.ndarray, src: np.ndarray, x: int, y: int) -> None:
    """Copy `src` into `dst` with its corner at (x, y), clipped to `dst`."""
    h, w = dst.shape[:2]
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + src.shape[1], w), min(y + src.shape[0], h)
    if x1 > x0 and y1 > y0:
        dst[y0:y1, x0:x1] = src[y0 - y : y1 - y, x0 - x : x1 - x]
