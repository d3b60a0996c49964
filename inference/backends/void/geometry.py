"""Where a region's frames meet the model's: scaled to the working area keeping their aspect, padded
to the model's unit with their own edge (marked keep), and back.

The reference squashes every shot to 384x672; here the aspect is kept and the padding carries no
content the model could paint into.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from voidlink.inference.backends.void import helpers
from voidlink.media.quadmask import KEEP

# (width, height) the reference samples at; the working area keeps this many pixels per frame.
REFERENCE_SIZE = (672, 384)
SIZE_UNIT = 16  # 8× VAE × 2× patch


@dataclass(frozen=True)
class Geometry:
    """How a region of `size` maps onto the model's frame: scaled to `scaled`, padded to `padded`."""

    size: tuple[int, int]  # (width, height) of the frames given
    scaled: tuple[int, int]
    padded: tuple[int, int]

    @staticmethod
    def for_size(size: tuple[int, int], area: int, unit: int = SIZE_UNIT) -> Geometry:
        width, height = size
        scale = math.sqrt(area / float(width * height))
        scaled = (max(unit, int(round(width * scale))), max(unit, int(round(height * scale))))
        padded = (-(-scaled[0] // unit) * unit, -(-scaled[1] // unit) * unit)
        return Geometry(size, scaled, padded)

    def to_model(self, image: np.ndarray, quadmask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Frame and quadmask at the model's padded size; padding repeats the edge and is marked keep.

        Resampling: the reference squashes video and mask with torch's area filter
        (`F.interpolate(mode="area")`, an average over whole source pixels, which OpenCV's area
        filter is not at non-integer factors); so do the mask, always, and the frame when it shrinks,
        then the reference's quantisation of the mask's greys. A frame that grows (a crop smaller
        than the working area, which the reference never makes) is scaled with a bicubic filter
        instead: the area filter would only repeat its pixels.
        """
        if self.scaled != self.size:
            shrinking = self.scaled[0] < self.size[0]
            if shrinking:
                image = area_resize(image, self.scaled)
            else:
                image = cv2.resize(image, self.scaled, interpolation=cv2.INTER_CUBIC)
            quadmask = helpers.quantize_quadmask(area_resize(quadmask.astype(np.float32), self.scaled))
        pad_x, pad_y = self.padded[0] - self.scaled[0], self.padded[1] - self.scaled[1]
        if pad_x or pad_y:
            image = cv2.copyMakeBorder(image, 0, pad_y, 0, pad_x, cv2.BORDER_REPLICATE)
            quadmask = cv2.copyMakeBorder(quadmask, 0, pad_y, 0, pad_x, cv2.BORDER_CONSTANT, value=KEEP)
        return np.clip(image, 0.0, 1.0).astype(np.float32), quadmask.astype(np.uint8)

    def from_model(self, image: np.ndarray) -> np.ndarray:
        """The model's frame back at the region's size: OpenCV's filters (the reference scales nothing back)."""
        image = image[: self.scaled[1], : self.scaled[0]]
        if self.scaled == self.size:
            return np.ascontiguousarray(image, dtype=np.float32)
        growing = self.size[0] > self.scaled[0]
        return cv2.resize(image, self.size, interpolation=cv2.INTER_CUBIC if growing else cv2.INTER_AREA).astype(
            np.float32
        )


def area_resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W[, C]) float → (height, width[, C]) at `size` = (width, height), with torch's area filter.

    The reference's `F.interpolate(mode="area")`: each output pixel is the mean of the source pixels
    its footprint touches (adaptive average pooling), in float32.
    """
    pixels = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    flat = pixels.ndim == 2
    planes = pixels[None, None] if flat else pixels.permute(2, 0, 1)[None]
    out = torch.nn.functional.interpolate(planes, size=(size[1], size[0]), mode="area")[0]
    return (out[0] if flat else out.permute(1, 2, 0)).numpy()
