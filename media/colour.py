"""Colour: from a clip's colour space into the backends' model space and exactly back.

Model space is what every backend sees: Linear Rec.709 primaries, sRGB-encoded, with values kept
in 0–1 by an invertible highlight roll-off:

    encoded e = sRGB OETF(linear), extended linearly below zero (out-of-gamut negatives survive)
    model   m = e                                    for e <= KNEE
            m = KNEE + (1 - KNEE) t / (1 + t),  t = (e - KNEE) / (1 - KNEE)   above it

The roll-off is smooth (same slope at the knee), slow (linear 16.0 still lands below 0.996), maps
[KNEE, ∞) onto [KNEE, 1), and its inverse is closed-form, so scene-linear highlights above 1.0
inside the mask are compressed, not clipped, and come back out as the values the backend left them
at. The conversion from the clip's space to
Linear Rec.709 is OpenColorIO's; the config is `$OCIO` when set, else OCIO's built-in CG config.
Pixels outside the mask are never converted at all: the composite takes them from the source.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Optional

import numpy as np
import PyOpenColorIO as ocio

from voidlink.errors import InvalidInput

KNEE = 0.9
MODEL_LINEAR = ("lin_rec709", "Linear Rec.709 (sRGB)", "lin_rec709_scene")
BUILTIN_CONFIG = "ocio://default"
# Largest model value handed back to the inverse; 1.0 itself would map to infinity.
_MODEL_MAX = 1.0 - 1e-6
# The brightest value a result is given back at: a half EXR's largest finite number. The roll-off's
# inverse maps its cap to about 3.6e9, which a half output would store as infinity.
LARGEST = 65504.0

_lock = threading.Lock()
_configs: dict[str, ocio.Config] = {}


def config() -> ocio.Config:
    """The OCIO config in use: `$OCIO`, else the built-in one. Loaded once per path."""
    key = os.environ.get("OCIO") or BUILTIN_CONFIG
    with _lock:
        if key not in _configs:
            try:
                _configs[key] = ocio.Config.CreateFromFile(key)
            except Exception as error:
                raise InvalidInput(
                    f"cannot load the OCIO config {key}: {error}", reason="BAD_OCIO_CONFIG", field="OCIO", file=key
                ) from error
        return _configs[key]


def config_name() -> str:
    return os.environ.get("OCIO") or BUILTIN_CONFIG


def _known(cfg: ocio.Config, name: str) -> Optional[str]:
    if not name:
        return None
    cs = cfg.getColorSpace(name)
    return cs.getName() if cs is not None else None


def resolve_colorspace(requested: str, metadata: str = "", field: str = "clip.colorspace") -> str:
    """The OCIO colour space of a clip: the job's choice, else the file's metadata, else scene_linear.

    An unknown name the job asked for is an error; an unknown name in metadata falls back quietly
    (files carry names from other configs, e.g. OpenImageIO's "lin_rec709_scene").
    """
    cfg = config()
    if requested:
        name = _known(cfg, requested)
        if name is None:
            raise InvalidInput(
                f"{field}: colour space '{requested}' is not in the OCIO config {config_name()}",
                reason="UNKNOWN_COLORSPACE",
                field=field,
            )
        return name
    return _known(cfg, metadata) or _known(cfg, ocio.ROLE_SCENE_LINEAR) or "scene_linear"


def model_linear_space() -> str:
    """The linear space the model encoding starts from: Linear Rec.709, else the scene_linear role."""
    cfg = config()
    for name in MODEL_LINEAR:
        found = _known(cfg, name)
        if found:
            return found
    return _known(cfg, ocio.ROLE_SCENE_LINEAR) or "scene_linear"


# -- the analytic part: sRGB encoding with an invertible roll-off ------------------------------


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    x = np.asarray(linear, dtype=np.float32)
    out = np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(np.maximum(x, 0.0031308), 1 / 2.4) - 0.055)
    return out.astype(np.float32)


def srgb_decode(encoded: np.ndarray) -> np.ndarray:
    e = np.asarray(encoded, dtype=np.float32)
    out = np.where(e <= 0.04045, e / 12.92, np.power((np.maximum(e, 0.04045) + 0.055) / 1.055, 2.4))
    return out.astype(np.float32)


def roll_off(encoded: np.ndarray) -> np.ndarray:
    e = np.asarray(encoded, dtype=np.float32)
    width = 1.0 - KNEE
    t = (np.maximum(e, KNEE) - KNEE) / width
    above = KNEE + width * t / (1.0 + t)
    return np.where(e <= KNEE, e, above).astype(np.float32)


def roll_on(model: np.ndarray) -> np.ndarray:
    m = np.minimum(np.asarray(model, dtype=np.float32), _MODEL_MAX)
    width = 1.0 - KNEE
    u = (np.maximum(m, KNEE) - KNEE) / width
    above = KNEE + width * u / (1.0 - u)
    return np.where(m <= KNEE, m, above).astype(np.float32)


def linear_to_model(linear: np.ndarray) -> np.ndarray:
    return roll_off(srgb_encode(linear))


def model_to_linear(model: np.ndarray) -> np.ndarray:
    return srgb_decode(roll_on(model))


# Plain sRGB helpers for generated footage and previews (no roll-off).
srgb_to_linear = srgb_decode
linear_to_srgb = srgb_encode


@dataclass
class ModelTransform:
    """Converts one clip's RGB between its colour space and model space, both ways."""

    colorspace: str

    def __post_init__(self) -> None:
        cfg = config()
        linear = model_linear_space()
        self.identity = self.colorspace == linear
        if not self.identity:
            self._to_linear = cfg.getProcessor(self.colorspace, linear).getDefaultCPUProcessor()
            self._from_linear = cfg.getProcessor(linear, self.colorspace).getDefaultCPUProcessor()

    def _apply(self, processor, rgb: np.ndarray) -> np.ndarray:
        out = np.ascontiguousarray(rgb, dtype=np.float32).copy()
        processor.applyRGB(out)
        return out

    def to_model(self, rgb: np.ndarray) -> np.ndarray:
        linear = rgb if self.identity else self._apply(self._to_linear, rgb)
        return linear_to_model(linear)

    def from_model(self, model: np.ndarray) -> np.ndarray:
        """Model values back in the clip's colour space, finite and within a half EXR's range."""
        linear = np.clip(model_to_linear(model), -LARGEST, LARGEST)
        out = linear if self.identity else self._apply(self._from_linear, linear)
        return np.clip(np.nan_to_num(out, nan=0.0, posinf=LARGEST, neginf=-LARGEST), -LARGEST, LARGEST)
