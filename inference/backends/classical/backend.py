"""The classical backend: fill the object from what neighbouring frames reveal, then by patches.

For every output frame t, each pixel of the hole follows two chains frame by frame forward (t+1,
t+2, ...) and backward (t-1, ...) inside a window of `radius` frames (near the shot's ends the
window slides inward: up to 2 × radius frames to the one side there is) until it lands on a pixel
some frame shows free of the object:
- the camera chain: a homography fitted directly between t and each other frame (its feature
  tracking seeded by the neighbours' chained homographies), exact for background that moves with
  the camera, with no drift piling up along the chain; of the fit on all the features, the chained
  guess and a fit on the features near t's hole, the one that holds best just outside the hole is
  taken (`flow.camera_model`), so it is the motion of the surface the hole lies on;
- the flow chain: the completed flow (homography + a smooth local residual, flow.py), snapped
  onto the camera chain where they agree within a pixel, which carries what one homography does
  not explain (parallax, several depth layers).
The nearest hit of each direction is taken. A thin ring of known pixels around the hole is tracked
too. Where both chains reach a pixel from both sides, the camera chain is kept if its forward and
backward colours agree; otherwise the four hits are blended, each weighted by its chain's colour
error on the ring (where the ring is first seen clean and at the frame the hit came from), its
chain's forward/backward agreement and its distance (a chain misled at an occlusion
boundary or along a lone edge lands on different colours each way, and often only one direction is
wrong: it met a passing object or a nearer layer). Elsewhere the camera chain is preferred, its two
directions blended by distance. The median difference between the frame and its propagated version
on the ring is removed from the fill, which hides seams from exposure or colour drift between frames.

What no frame reveals gets an exemplar fill (patchfill.py: PatchMatch completion, continuing
stripes, edges and texture from around the hole). For temporal consistency that fill is made on
key frames (one every `radius` frames, by frame index), and the frames up to the next key take it
from the key frame's result along the flow chain, so it moves with the scene instead of being
re-invented each frame.

Each output depends only on the raw frames inside its window (the key frame it follows is inside
it too; no state is carried from results outside it), so a run started `temporal_context` frames
early gives the same results as an uninterrupted one, and memory is bounded by the window.

The work is spread over the cores without letting timing into the results: frames are analysed
ahead on two threads (analysis.py) and installed in order, and each frame's forward chains run on
a thread of their own beside its backward ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Optional, Union

import cv2
import numpy as np
from voidlink.inference.backends import base
from voidlink.inference.backends.classical.analysis import Analyser, Frame
from voidlink.inference.backends.classical.flow import MotionEstimator, PairMotion
from voidlink.inference.backends.classical.patchfill import patch_fill, telea
from voidlink.inference.backends.classical.propagate import SAMPLING, Propagation

# quality → (window radius in frames, DIS preset)
QUALITY = {
    "draft": (4, cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST),
    "balanced": (8, cv2.DISOPTICAL_FLOW_PRESET_FAST),
    "best": (12, cv2.DISOPTICAL_FLOW_PRESET_MEDIUM),
}
MAX_RADIUS = max(radius for radius, _ in QUALITY.values())
# Pixels around the hole tracked for the seam blend.
SEAM_RING = 4
# Largest correction the seam blend may apply (a bigger mismatch is misalignment, not exposure).
SEAM_CLIP = 0.15
# The exemplar fill's crop reaches this many times the unrevealed part's extent around it (at least
# PATCH_MARGIN pixels): nearby texture is the likeliest continuation, and a small crop keeps it fast.
CONTEXT = 0.75
PATCH_MARGIN = 24

# Kept importable from here (the bench and tests use it as the spatial baseline).
__all__ = ["ClassicalBackend", "remove", "remove_stream", "telea"]

PHYSICAL_NOTE = (
    "The classical backend fills the object from what other frames reveal; it cannot re-simulate "
    "physical interactions (falling, collisions, stopped motion)."
)


def _settings(quality: str) -> tuple[int, int]:
    return QUALITY.get((quality or "balanced").strip().lower(), QUALITY["balanced"])


class ClassicalBackend(base.Backend):
    """Optical-flow propagation with camera compensation and spatial fill; CPU only, no weights."""

    name = "classical"
    # The last frames of a shot look up to 2 × radius frames back (see `_Stream._reach`), and a
    # frame's spatial fill follows a key frame up to radius - 1 frames back, itself exact only with
    # its own 2 × radius frames before it.
    temporal_context = 3 * MAX_RADIUS
    working_size = None

    def notes(self) -> list[str]:
        return [PHYSICAL_NOTE]

    def shot_notes(self, totals: dict[str, float]) -> list[str]:
        filled, unrevealed = totals.get("filled", 0.0), totals.get("unrevealed", 0.0)
        if not filled or unrevealed / filled <= 0.02:
            return []
        share = 100.0 * unrevealed / filled
        return [f"{share:.0f}% of the removed area was never revealed by nearby frames and was filled spatially."]

    def run(self, frames: Iterator[base.BackendFrame], request: base.BackendRequest) -> Iterator[base.BackendResult]:
        radius, preset = _settings(request.quality)
        request.provenance["window_radius"] = str(radius)
        return _Stream(radius, preset, request).run(frames)


class _Stream(Propagation):
    """One run: the sliding window of frames and the motion between neighbours."""

    def __init__(self, radius: int, preset: int, request: base.BackendRequest) -> None:
        self.radius = radius
        self.request = request
        self.preset = preset
        self.estimator: Optional[MotionEstimator] = None
        self.frames: dict[int, Frame] = {}  # stream position → frame
        self.motions: dict[int, PairMotion] = {}  # position a → motion between a and a+1
        self.shape: Optional[tuple[int, int]] = None
        self.fit_scale = self.flow_scale = 1.0
        self.noted_nan = False
        self.unrevealed = 0
        self.filled = 0
        self.keys: dict[int, tuple[int, np.ndarray]] = {}  # key frame index → (position, result)
        self.direct: dict[tuple[int, int], np.ndarray] = {}  # (a, b) → homography a → b, fit grid
        self.chain_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="classical-chains")

    def run(self, frames: Iterator[base.BackendFrame]) -> Iterator[base.BackendResult]:
        position = emitted = 0
        # Frames come analysed from worker threads, read a little ahead (analysis.py); each is
        # installed here at the point it would be without them.
        with Analyser(iter(frames), self.preset) as analyser, self.chain_pool:
            while True:
                analysed = analyser.next()
                if analysed is None:
                    break
                self._check_cancel()
                if self.estimator is None:
                    self.shape, self.estimator = analyser.shape, analyser.estimator
                    self.fit_scale, self.flow_scale = self.estimator.fit_scale, self.estimator.flow_scale
                self._install(position, *analysed)
                position += 1
                # A frame is emitted once `radius` frames follow it, and the first ones once 2 × radius
                # do: at the shot's start the window slides forward instead of shrinking (see `_reach`).
                while emitted <= position - 1 - self.radius and position - 1 >= 2 * self.radius:
                    yield self._emit(emitted)
                    emitted += 1
            while emitted < position:
                yield self._emit(emitted)
                emitted += 1

    # -- input -------------------------------------------------------------------------------------

    def _install(self, position: int, record: Frame, motion: Optional[PairMotion]) -> None:
        """The analysed frame joins the window (and its motion from the frame before), old ones leave."""
        if record.had_nan and not self.noted_nan:
            self.noted_nan = True
            self.request.notes.append(
                f"frame {record.index} has NaN pixels; they were treated as part of the hole and filled."
            )
        # The window ends 2 × radius frames back: a frame `radius` back is emitted next and looks
        # `radius` further back, and if the shot ends here the last frame looks 2 × radius back.
        for old in [p for p in self.frames if p < position - 2 * self.radius]:
            del self.frames[old]
        for old in [p for p in self.motions if p < position - 2 * self.radius]:
            del self.motions[old]
        for pair in [p for p in self.direct if min(p) < position - 2 * self.radius]:
            del self.direct[pair]
        self.frames[position] = record
        if motion is not None:
            self.motions[position - 1] = motion

    # -- output ------------------------------------------------------------------------------------

    def _emit(self, position: int) -> base.BackendResult:
        self._check_cancel()
        frame = self.frames[position]
        filled, unrevealed = self.filled, self.unrevealed
        image, changed = self._fill(position)
        if frame.index % self.radius == 0:
            # A key frame: the frames after it take their spatially filled part from it (see `_spatial`).
            self.keys = {i: k for i, k in self.keys.items() if i > frame.index - 2 * self.radius}
            self.keys[frame.index] = (position, image)
        if position and position % 25 == 0:
            self.request.on_message(f"classical: propagated {position} frames")
        counts = {"filled": float(self.filled - filled), "unrevealed": float(self.unrevealed - unrevealed)}
        return base.BackendResult(index=frame.index, image=image, changed=changed, counts=counts)

    def _fill(self, position: int) -> tuple[np.ndarray, np.ndarray]:
        frame = self.frames[position]
        height, width = frame.image.shape[:2]
        hole = frame.must_fill | frame.may_fill
        changed = np.zeros((height, width), np.float32)
        if not hole.any():
            return frame.image.copy(), changed
        ys, xs = np.nonzero(hole)
        pad = SEAM_RING + 2
        x0, x1 = max(0, xs.min() - pad), min(width, xs.max() + pad + 1)
        y0, y1 = max(0, ys.min() - pad), min(height, ys.max() + pad + 1)
        box_hole = hole[y0:y1, x0:x1]
        ring_kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * SEAM_RING + 1, 2 * SEAM_RING + 1))
        tracked = cv2.dilate(box_hole.astype(np.uint8), ring_kernel) > 0
        ring = tracked & ~box_hole & (frame.source[y0:y1, x0:x1] > 0)

        key = self._key_for(position)
        colour, have, key_where = self._propagate(position, (x0, y0, x1, y1), tracked,
                                                  position - key[0] if key else None, ring)
        box_pixels = frame.pixels[y0:y1, x0:x1]
        if have.any():
            # Seam blend: the median frame-vs-propagated difference on the ring (an exposure or
            # colour drift between frames) is removed from the fill. A per-pixel diffused offset was
            # tried and flickered from frame to frame; one offset per channel stays stable.
            seam = ring & have
            if seam.sum() >= 16:
                offset = np.median(box_pixels[seam] - colour[seam], axis=0)
                colour = colour + np.clip(offset, -SEAM_CLIP, SEAM_CLIP).astype(np.float32)
        must = frame.must_fill[y0:y1, x0:x1]
        may = frame.may_fill[y0:y1, x0:x1]
        take = box_hole & have & (must | may)
        result = box_pixels.copy()
        # Clipped to the frame's own range, not to 0–1: model space may hold values outside it
        # (out-of-gamut colours come in negative), and clipping those would leave dark or tinted marks.
        low, high = min(0.0, float(frame.pixels.min())), max(1.0, float(frame.pixels.max()))
        result[take] = np.clip(colour[take], low, high)
        missing = must & ~have
        self.filled += int(must.sum())
        if missing.any():
            self.unrevealed += int(missing.sum())
            result = self._spatial(position, (x0, y0, x1, y1), result, missing, key, key_where)
        done = take | missing
        image = frame.image.copy()
        region = image[y0:y1, x0:x1]
        region[done] = result[done]
        changed[y0:y1, x0:x1] = done.astype(np.float32)
        return image, changed

    def _key_for(self, position: int) -> Optional[tuple[int, np.ndarray]]:
        """The result of the key frame this frame's spatial fill follows, if there is one."""
        index = self.frames[position].index
        key = self.keys.get(index - index % self.radius)
        if key is None or key[0] == position or key[0] not in self.frames:
            return None
        return key

    def _spatial(self, position: int, box: tuple[int, int, int, int], result: np.ndarray, missing: np.ndarray,
                 key: Optional[tuple[int, np.ndarray]], key_where) -> np.ndarray:
        """Fill what no frame revealed: from the key frame's result along the flow chain, else by patches.

        Temporal consistency: one key frame every `radius` frames (by frame index) gets its own
        exemplar fill, and the frames up to the next key sample that result where the chain back
        to it lands, so the invented texture moves with the scene instead of being re-invented
        (and flickering) every frame. The key frame is inside each frame's window, so outputs
        still depend only on raw frames within `temporal_context` of them.
        """
        x0, y0, x1, y1 = box
        height, width = self.shape
        rest = missing
        if key is not None and key_where is not None:
            kx, ky = key_where
            inside = missing & np.isfinite(kx) & (kx >= 0) & (kx <= width - 1) & (ky >= 0) & (ky <= height - 1)
            if inside.any():
                sample = cv2.remap(key[1].astype(np.float32, copy=False), np.nan_to_num(kx), np.nan_to_num(ky),
                                   SAMPLING, borderMode=cv2.BORDER_REPLICATE)
                result = result.copy()
                result[inside] = sample[inside]
                rest = missing & ~inside
        if not rest.any():
            return result
        # The exemplar fill needs context around the hole: a crop of the frame (the propagated
        # fill pasted in) reaching CONTEXT × the hole's extent beyond it.
        canvas = self.frames[position].pixels.copy()
        canvas[y0:y1, x0:x1] = result
        full = np.zeros((height, width), bool)
        full[y0:y1, x0:x1] = rest
        ys, xs = np.nonzero(full)
        margin = int(max(PATCH_MARGIN, CONTEXT * max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)))
        cy0, cy1 = max(0, ys.min() - margin), min(height, ys.max() + margin + 1)
        cx0, cx1 = max(0, xs.min() - margin), min(width, xs.max() + margin + 1)
        filled = patch_fill(canvas[cy0:cy1, cx0:cx1], full[cy0:cy1, cx0:cx1])
        canvas[cy0:cy1, cx0:cx1] = filled
        return canvas[y0:y1, x0:x1]


# -- library calls ------------------------------------------------------------------------------

ArrayFrames = Union[Sequence[np.ndarray], Iterable[np.ndarray]]


def remove_stream(frames: ArrayFrames, quadmasks: ArrayFrames, quality: str = "balanced",
                  request: Optional[base.BackendRequest] = None) -> Iterator[np.ndarray]:
    """Remove the masked object from in-memory frames, yielding results one by one (bounded memory).

    frames: (H, W, 3) float 0–1 RGB; quadmasks: (H, W) uint8 with 0 object, 63 overlap, 127
    affected, 255 keep. Both may be generators; they are consumed in step.
    """
    request = request or base.BackendRequest(quality=quality)
    request.quality = quality

    def paired() -> Iterator[base.BackendFrame]:
        for index, (image, quadmask) in enumerate(zip(frames, quadmasks)):
            yield base.BackendFrame(index=index, image=np.asarray(image, np.float32),
                                    quadmask=np.asarray(quadmask, np.uint8))

    for result in ClassicalBackend().run(paired(), request):
        yield result.image


def remove(frames: ArrayFrames, quadmasks: ArrayFrames, quality: str = "balanced") -> list[np.ndarray]:
    """Remove the masked object from in-memory frames; returns the filled frames in order."""
    return list(remove_stream(frames, quadmasks, quality))
