"""Generated counterfactual shots: a plate with a moving object and the same shot without it.

The removal backends have no ground truth on real footage, so tests and benchmarks score them on
procedural shots where the clean plate is known exactly. Every frame is a pure function of
(kind, size, t, frames, seed): a test can ask for frame 17 alone, and a benchmark can stream a
long shot without holding it. The large background canvas of a shot is cached (it is the only
costly part) so that each frame then costs a warp and a few drawing calls.

Kinds:
- static_textured: locked-off camera, textured background.
- pan_textured: the camera pans (with a little vertical drift).
- zoom_textured: the camera zooms in about the frame centre.
- pan_smooth: a pan over a low-contrast, nearly featureless gradient (hard for flow and features).
- parallax: two depth layers moving at different speeds (a homography cannot align both).
- thin_object: a thin pole crosses the frame.
- large_object: an object covering about a quarter of the frame.
- shadow: the object casts a hard shadow that moves with it (the quadmask's affected region).

Harder kinds on real photographs (scikit-image's sample images, `HARD_KINDS`; they need
scikit-image, part of the dev extra):
- depth_layers: three depth layers (far photo, middle cut-outs, near bars) at parallax 1, 1.8, 3.2.
- handheld: a hand-held camera path (drift, jitter, a degree or two of roll, breathing zoom) over a
  photo with a nearer layer in front of it.
- structure_cross: a tall occluder crosses long straight edges (rails, posts) drawn over a photo.
- unrevealed: an object fixed in the scene (it only sways a little), so the background behind its
  core is never revealed by any frame and must be filled spatially; the photo carries stripes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

SHOT_KINDS = (
    "static_textured",
    "pan_textured",
    "zoom_textured",
    "pan_smooth",
    "parallax",
    "thin_object",
    "large_object",
    "shadow",
)


HARD_KINDS = ("depth_layers", "handheld", "structure_cross", "unrevealed")
ALL_KINDS = SHOT_KINDS + HARD_KINDS


@dataclass
class SyntheticFrame:
    plate: np.ndarray  # (H, W, 3) float32 0–1: background + object (+ shadow)
    clean: np.ndarray  # (H, W, 3) float32 0–1: the same frame without object and shadow
    object_matte: np.ndarray  # (H, W) float32 0/1
    affected_matte: np.ndarray  # (H, W) float32 0/1, the shadow; zeros when the kind has none
    quadmask: np.ndarray  # (H, W) uint8: 0 object, 63 overlap, 127 affected, 255 keep


def _value_noise(rng: np.random.Generator, width: int, height: int, cells: list[int], gains: list[float]) -> np.ndarray:
    """Multi-octave value noise: random grids upsampled bicubically, summed with falling gains."""
    out = np.zeros((height, width, 3), np.float32)
    for count, gain in zip(cells, gains):
        gw = max(2, count)
        gh = max(2, int(round(count * height / width)))
        grid = rng.random((gh, gw, 3)).astype(np.float32)
        out += gain * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    total = sum(gains)
    return np.clip(out / total, 0.0, 1.0)


def _draw_shapes(rng: np.random.Generator, canvas: np.ndarray, count: int, scale: float) -> None:
    """Rectangles, discs and lines: hard edges and corners so flow and features have something to lock on."""
    height, width = canvas.shape[:2]
    for _ in range(count):
        colour = tuple(float(c) for c in rng.random(3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(max(3, rng.integers(6, 40) * scale))
        pick = rng.integers(0, 3)
        if pick == 0:
            cv2.rectangle(canvas, (x, y), (x + size, y + int(size * rng.uniform(0.4, 1.6))), colour, -1)
        elif pick == 1:
            cv2.circle(canvas, (x, y), size // 2, colour, -1, lineType=cv2.LINE_AA)
        else:
            end = (x + int(rng.integers(-80, 80) * scale), y + int(rng.integers(-80, 80) * scale))
            cv2.line(canvas, (x, y), end, colour, max(1, int(2 * scale)), lineType=cv2.LINE_AA)


def _scale(width: int) -> float:
    return width / 672.0


def _pan_speed(width: int) -> float:
    return 3.0 * _scale(width)


@lru_cache(maxsize=8)
def _canvases(kind: str, width: int, height: int, frames: int, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The shot's background canvas (and for parallax its foreground layer with alpha in channel 3)."""
    rng = np.random.default_rng([seed, SHOT_KINDS.index(kind) if kind in SHOT_KINDS else 99])
    s = _scale(width)
    # Room for the camera to travel over the whole shot (pan and parallax move; the rest stay inside).
    margin = int(np.ceil(_pan_speed(width) * 3.5 * frames)) + 16
    cw, ch = width + margin, height + margin
    if kind == "pan_smooth":
        canvas = _value_noise(rng, cw, ch, [3, 6], [1.0, 0.35])
        canvas = 0.35 + 0.3 * canvas  # low contrast, few features
    else:
        canvas = _value_noise(rng, cw, ch, [6, 16, 48, 128], [1.0, 0.6, 0.35, 0.2])
        _draw_shapes(rng, canvas, int(90 * cw * ch / (672 * 384 * 2.0)), s)
    front = None
    if kind == "parallax":
        # A foreground layer of tall bars (a fence, trees) that slides faster than the background.
        front = np.zeros((ch, cw, 4), np.float32)
        texture = _value_noise(rng, cw, ch, [20, 80], [1.0, 0.5])
        alpha = np.zeros((ch, cw), np.float32)
        x = 0
        while x < cw:
            bar = int(rng.integers(14, 40) * s)
            gap = int(rng.integers(40, 120) * s)
            top = int(rng.integers(int(0.35 * ch), int(0.6 * ch)))
            alpha[top:, x : x + bar] = 1.0
            x += bar + gap
        front[..., :3] = 0.2 + 0.6 * texture[..., ::-1]
        front[..., 3] = alpha
    return canvas.astype(np.float32), front


def _camera(kind: str, width: int, height: int, t: int, frames: int, speed_factor: float = 1.0) -> np.ndarray:
    """2×3 affine from frame pixel to canvas pixel at time t."""
    margin = int(np.ceil(_pan_speed(width) * 3.5 * frames)) + 16
    ox, oy = margin / 2.0, margin / 2.0
    if kind in ("pan_textured", "pan_smooth", "parallax", "shadow"):
        v = _pan_speed(width) * speed_factor
        tx = v * (t - frames / 2.0)
        ty = 0.15 * v * np.sin(2 * np.pi * t / max(frames, 1)) * 4
        return np.array([[1, 0, ox + tx], [0, 1, oy + ty]], np.float64)
    if kind == "zoom_textured":
        zoom = 1.0 + 0.012 * t  # zooming in: the canvas area seen shrinks
        cx, cy = width / 2.0, height / 2.0
        a = 1.0 / zoom
        return np.array([[a, 0, ox + cx - a * cx], [0, a, oy + cy - a * cy]], np.float64)
    return np.array([[1, 0, ox], [0, 1, oy]], np.float64)


def _object_layer(kind: str, width: int, height: int, t: int, frames: int, seed: int):
    """Object matte and colour (its own stripes) at time t, in frame coordinates."""
    u = t / max(frames - 1, 1)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    matte = np.zeros((height, width), np.float32)
    if kind == "thin_object":
        cx = width * (0.15 + 0.7 * u)
        half = max(1.5, 0.006 * width)
        top, bottom = 0.1 * height, 0.85 * height
        matte[(np.abs(xx - cx) <= half) & (yy >= top) & (yy <= bottom)] = 1.0
        cy = height / 2.0
    else:
        if kind == "large_object":
            rx, ry = 0.2 * width, 0.34 * height
            cx = width * (0.25 + 0.5 * u)
        else:
            rx, ry = 0.1 * width, 0.2 * height
            cx = width * (0.2 + 0.6 * u)
        cy = height * (0.5 + 0.08 * np.sin(np.pi * u))
        cv2.ellipse(matte, (int(round(cx)), int(round(cy))), (int(rx), int(ry)), 0, 0, 360, 1.0, -1)
    return matte, _object_colour(width, height, cx, cy, seed), (cx, cy)


def _object_colour(width: int, height: int, cx: float, cy: float, seed: int) -> np.ndarray:
    """The object's own colour (stripes moving with it), in frame coordinates."""
    rng = np.random.default_rng([seed, 7])
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.random(3).astype(np.float32) * 0.5 + 0.3
    stripes = 0.5 + 0.5 * np.sin((xx - cx) * 0.35 + (yy - cy) * 0.2)
    colour = base[None, None, :] * (0.6 + 0.4 * stripes[..., None])
    colour[..., 0] += 0.15 * np.cos((yy - cy) * 0.15)
    return np.clip(colour, 0, 1).astype(np.float32)


def _clean(kind: str, width: int, height: int, t: int, frames: int, seed: int) -> np.ndarray:
    canvas, front = _canvases(kind, width, height, frames, seed)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    clean = cv2.warpAffine(canvas, _camera(kind, width, height, t, frames), (width, height), flags=flags,
                           borderMode=cv2.BORDER_REFLECT)
    if front is not None:
        layer = cv2.warpAffine(front, _camera(kind, width, height, t, frames, 3.0), (width, height), flags=flags,
                               borderMode=cv2.BORDER_REFLECT)
        alpha = layer[..., 3:4]
        clean = clean * (1 - alpha) + layer[..., :3] * alpha
    return np.clip(clean, 0, 1).astype(np.float32)


# -- harder kinds on photographs -------------------------------------------------------------------

PHOTOS = ("coffee", "astronaut", "rocket", "chelsea", "immunohistochemistry")


@lru_cache(maxsize=8)
def _photo(name: str, width: int, height: int) -> np.ndarray:
    """A scikit-image sample photograph, cropped to the aspect ratio and resized, float32 RGB 0–1."""
    try:
        from skimage import data
    except ImportError as error:  # pragma: no cover - the dev extra installs it
        raise RuntimeError("the photographic synthetic shots need scikit-image (the dev extra)") from error
    image = getattr(data, name)().astype(np.float32) / 255.0
    ih, iw = image.shape[:2]
    aspect = width / height
    if iw / ih > aspect:
        cw = int(round(ih * aspect))
        image = image[:, (iw - cw) // 2 : (iw - cw) // 2 + cw]
    else:
        crop = int(round(iw / aspect))
        image = image[(ih - crop) // 2 : (ih - crop) // 2 + crop]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if image.shape[1] > width else
                      cv2.INTER_CUBIC).clip(0, 1).astype(np.float32)


def _rgba(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    return np.dstack([rgb, alpha.astype(np.float32)]).astype(np.float32)


@lru_cache(maxsize=8)
def _hard_layers(kind: str, width: int, height: int, frames: int, seed: int) -> tuple[tuple[np.ndarray, float], ...]:
    """The layers of a hard kind, far to near: (RGBA canvas, parallax factor)."""
    rng = np.random.default_rng([seed, 100 + HARD_KINDS.index(kind)])
    s = _scale(width)
    margin = int(np.ceil(_pan_speed(width) * 3.5 * frames)) + 16
    cw, ch = width + margin, height + margin
    ones = np.ones((ch, cw), np.float32)
    if kind == "depth_layers":
        far = _photo("coffee", cw, ch)
        middle_rgb = _photo("chelsea", cw, ch)[::-1].copy()
        middle_alpha = np.zeros((ch, cw), np.float32)
        for _ in range(int(14 * cw * ch / (672 * 384 * 2.0))):
            x, y = int(rng.integers(0, cw)), int(rng.integers(0, ch))
            size = int(rng.integers(30, 70) * s)
            if rng.random() < 0.5:
                cv2.circle(middle_alpha, (x, y), size, 1.0, -1, lineType=cv2.LINE_AA)
            else:
                cv2.rectangle(middle_alpha, (x, y), (x + size, y + int(size * rng.uniform(0.6, 1.8))), 1.0, -1)
        near_rgb = 0.15 + 0.7 * _photo("rocket", cw, ch)[:, ::-1]
        near_alpha = np.zeros((ch, cw), np.float32)
        x = 0
        while x < cw:
            bar = int(rng.integers(12, 30) * s)
            top = int(rng.integers(int(0.45 * ch), int(0.7 * ch)))
            near_alpha[top:, x : x + bar] = 1.0
            x += bar + int(rng.integers(70, 160) * s)
        return ((_rgba(far, ones), 1.0), (_rgba(middle_rgb, middle_alpha), 1.8), (_rgba(near_rgb, near_alpha), 3.2))
    if kind == "handheld":
        far = _photo("astronaut", cw, ch)
        near_rgb = _photo("immunohistochemistry", cw, ch)
        near_alpha = np.zeros((ch, cw), np.float32)
        for _ in range(int(6 * cw * ch / (672 * 384 * 2.0))):
            x, y = int(rng.integers(0, cw)), int(rng.integers(int(0.5 * ch), ch))
            axes = (int(rng.integers(30, 80) * s), int(rng.integers(20, 50) * s))
            cv2.ellipse(near_alpha, (x, y), axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1, lineType=cv2.LINE_AA)
        return ((_rgba(far, ones), 1.0), (_rgba(near_rgb, near_alpha), 1.6))
    if kind == "structure_cross":
        canvas = _photo("rocket", cw, ch).copy()
        # Rails across the whole canvas (some slanted) and a few posts: long straight edges.
        for _ in range(7):
            y = int(rng.integers(int(0.1 * ch), int(0.9 * ch)))
            slope = float(rng.uniform(-0.15, 0.15))
            colour = tuple(float(c) for c in rng.random(3))
            thickness = int(max(2, rng.integers(3, 9) * s))
            cv2.line(canvas, (0, y), (cw - 1, int(y + slope * cw)), colour, thickness, lineType=cv2.LINE_AA)
        for _ in range(int(10 * cw / 1344.0) + 3):
            x = int(rng.integers(0, cw))
            colour = tuple(float(c) for c in rng.random(3))
            cv2.line(canvas, (x, 0), (x + int(rng.integers(-40, 40)), ch - 1), colour, int(max(2, 5 * s)),
                     lineType=cv2.LINE_AA)
        return ((_rgba(canvas, ones), 1.0),)
    # unrevealed: a photo under diagonal stripes (structure to continue behind the fixed object)
    photo = _photo("chelsea", cw, ch)
    yy, xx = np.mgrid[0:ch, 0:cw].astype(np.float32)
    period = 22.0 * s
    stripes = (np.sin(2 * np.pi * (xx * 0.8 + yy * 0.6) / period) > 0).astype(np.float32)
    stripes = cv2.GaussianBlur(stripes, (0, 0), 0.8)[..., None]
    tint = np.array([0.9, 0.75, 0.3], np.float32)
    canvas = photo * (1 - 0.45 * stripes) + 0.45 * stripes * tint
    return ((_rgba(np.clip(canvas, 0, 1), ones), 1.0),)


def _hard_camera(kind: str, width: int, height: int, t: int, frames: int, factor: float, seed: int) -> np.ndarray:
    """2×3 affine from frame pixel to canvas pixel for one layer (translation scaled by its parallax)."""
    margin = int(np.ceil(_pan_speed(width) * 3.5 * frames)) + 16
    ox, oy = margin / 2.0, margin / 2.0
    v = _pan_speed(width)
    s = _scale(width)
    rng = np.random.default_rng([seed, 200 + HARD_KINDS.index(kind)])
    phases = rng.uniform(0, 2 * np.pi, 8)
    angle, zoom = 0.0, 1.0
    if kind == "depth_layers":
        tx, ty = 0.6 * v * (t - frames / 2.0), 0.1 * v * np.sin(2 * np.pi * t / max(frames, 1))
    elif kind == "handheld":
        # Drift, then jitter from a few incommensurate sinusoids (smooth, deterministic), roll and breathing.
        tx = 0.4 * v * (t - frames / 2.0) + 2.5 * s * (np.sin(1.9 * t + phases[0]) + 0.6 * np.sin(3.7 * t + phases[1]))
        ty = 2.0 * s * (np.sin(2.3 * t + phases[2]) + 0.5 * np.sin(4.1 * t + phases[3]))
        angle = np.deg2rad(1.5 * np.sin(0.45 * t + phases[4]) + 0.3 * np.sin(1.7 * t + phases[5]))
        zoom = 1.0 + 0.015 * np.sin(0.3 * t + phases[6])
    elif kind == "structure_cross":
        tx = 0.5 * v * (t - frames / 2.0) + 1.0 * s * np.sin(1.3 * t + phases[0])
        ty = 0.8 * s * np.sin(1.7 * t + phases[1])
    else:  # unrevealed
        tx = 0.5 * v * (t - frames / 2.0)
        ty = 1.0 * s * np.sin(1.1 * t + phases[0])
        angle = np.deg2rad(0.5 * np.sin(0.5 * t + phases[1]))
    cx, cy = width / 2.0, height / 2.0
    c, sn = np.cos(angle) / zoom, np.sin(angle) / zoom
    linear = np.array([[c, -sn], [sn, c]])
    offset = np.array([ox + cx + factor * tx, oy + cy + factor * ty]) - linear @ np.array([cx, cy])
    return np.hstack([linear, offset[:, None]])


def _hard_object(kind: str, width: int, height: int, t: int, frames: int, seed: int) -> tuple[np.ndarray, float, float]:
    """The object matte of a hard kind at time t and its centre (frame coordinates)."""
    u = t / max(frames - 1, 1)
    matte = np.zeros((height, width), np.float32)
    if kind == "structure_cross":
        cx = width * (0.2 + 0.6 * u)
        cy = height * 0.5
        half = 0.035 * width
        cv2.rectangle(matte, (int(round(cx - half)), int(0.05 * height)), (int(round(cx + half)), int(0.9 * height)),
                      1.0, -1)
        return matte, cx, cy
    if kind == "unrevealed":
        # Fixed in the scene: its canvas position maps back into the frame through the camera.
        camera = _hard_camera(kind, width, height, t, frames, 1.0, seed)
        anchor = _hard_camera(kind, width, height, frames // 2, frames, 1.0, seed) @ np.array([0.5 * width,
                                                                                                 0.5 * height, 1.0])
        full = np.vstack([camera, [0.0, 0.0, 1.0]])
        cx, cy, _ = np.linalg.inv(full) @ np.array([anchor[0], anchor[1], 1.0])
        cx += 0.02 * width * np.sin(2 * np.pi * u)
        cv2.ellipse(matte, (int(round(cx)), int(round(cy))), (int(0.09 * width), int(0.2 * height)), 0, 0, 360, 1.0, -1)
        return matte, float(cx), float(cy)
    cx = width * (0.2 + 0.6 * u)
    cy = height * (0.5 + 0.08 * np.sin(np.pi * u))
    cv2.ellipse(matte, (int(round(cx)), int(round(cy))), (int(0.1 * width), int(0.2 * height)), 0, 0, 360, 1.0, -1)
    return matte, cx, cy


def _hard_clean(kind: str, width: int, height: int, t: int, frames: int, seed: int) -> np.ndarray:
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    clean = np.zeros((height, width, 3), np.float32)
    for layer, factor in _hard_layers(kind, width, height, frames, seed):
        warped = cv2.warpAffine(layer, _hard_camera(kind, width, height, t, frames, factor, seed), (width, height),
                                flags=flags, borderMode=cv2.BORDER_REFLECT)
        alpha = warped[..., 3:4]
        clean = clean * (1 - alpha) + warped[..., :3] * alpha
    return np.clip(clean, 0, 1).astype(np.float32)


def make_frame(kind: str, width: int, height: int, t: int, frames: int = 24, seed: int = 0) -> SyntheticFrame:
    """Frame t of a generated shot of `kind`; deterministic from its arguments alone."""
    if kind not in ALL_KINDS:
        raise ValueError(f"unknown synthetic shot kind '{kind}' (choose from {', '.join(ALL_KINDS)})")
    if kind in HARD_KINDS:
        clean = _hard_clean(kind, width, height, t, frames, seed)
        matte, cx, cy = _hard_object(kind, width, height, t, frames, seed)
        colour = _object_colour(width, height, cx, cy, seed)
    else:
        clean = _clean(kind, width, height, t, frames, seed)
        matte, colour, (cx, cy) = _object_layer(kind, width, height, t, frames, seed)
    affected = np.zeros((height, width), np.float32)
    plate = clean.copy()
    if kind == "shadow":
        shadow = np.zeros((height, width), np.uint8)
        centre = (int(round(cx + 0.06 * width)), int(round(cy + 0.22 * height)))
        cv2.ellipse(shadow, centre, (int(0.12 * width), int(0.07 * height)), 0, 0, 360, 1, -1)
        affected = shadow.astype(np.float32)
        plate = plate * (1.0 - 0.55 * affected[..., None])
    plate = plate * (1 - matte[..., None]) + colour * matte[..., None]
    plate = np.clip(plate, 0, 1).astype(np.float32)

    grown = cv2.dilate(matte, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))) > 0.5
    hit = affected > 0.5
    quadmask = np.full((height, width), 255, np.uint8)
    quadmask[hit] = 127
    quadmask[grown] = 0
    quadmask[grown & hit] = 63
    return SyntheticFrame(plate=plate, clean=clean, object_matte=matte, affected_matte=affected, quadmask=quadmask)


def make_shot(kind: str, width: int, height: int, frames: int, seed: int = 0) -> Iterator[SyntheticFrame]:
    """The frames of a shot in order, generated one at a time."""
    for t in range(frames):
        yield make_frame(kind, width, height, t, frames=frames, seed=seed)
