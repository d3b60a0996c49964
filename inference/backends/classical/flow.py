"""Motion between neighbouring frames: camera homography, dense flow, and flow completed inside holes.

Frames are analysed on two grids (`Analysis`). Homographies are fitted on the fit grid (`fit_scale`),
FIT_SIDE pixels on its long side, small frames enlarged at most FIT_MAX_ENLARGE times: an enlarged,
blurred grid lets feature tracking resolve the sub-pixel motion that a small frame's drift along a
chain of homographies makes visible.
`camera_model` picks, for the camera chain, the homography that holds around a frame's hole (the
camera's motion is seldom one plane). Dense flow runs on the flow grid, never larger than the frame
nor than FLOW_MAX_SIDE, where its cost grows with the area. `regrid` moves a homography between
grids, and the chains in `propagate.py` scale positions back to full resolution. Flow inside the
object's hole is meaningless (it tracks the object, or nothing), so it is replaced by the camera homography
plus a smooth residual diffused from the valid flow around the hole: the background behind the
object moves like the background around it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

# Dense flow is analysed with the longest side at most this many pixels (large frames are downscaled).
FLOW_MAX_SIDE = 960
# Homographies are fitted with the longest side this many pixels (small frames are enlarged) ...
FIT_SIDE = 960
# ... but no more than this many times: the cost grows with the enlarged area, and what a proxy gains
# from it levels off (the real-footage bench's 176-px clip: +0.53 dB over the homography baseline at 2x,
# +1.38 at its 5.45x; a 128-px proxy's sub-pixel pan is fitted as closely at 2x as at 7.5x).
FIT_MAX_ENLARGE = 6.0

# The camera model between two frames is chosen near the hole (see `camera_model`): features within
# NEAR_FIT fit-grid pixels of the widened hole (the frame's own there, and up to NEAR_CORNERS found in
# that region alone) make the local candidate, and candidates are compared on every BAND_STRIDE-th
# pixel within NEAR_SCORE of it. The fit grid is FIT_SIDE long for all but the smallest frames, so
# these are a near-fixed share of the frame whatever its resolution.
NEAR_FIT = 96
NEAR_SCORE = 24
NEAR_CORNERS = 150
BAND_STRIDE = 2
BAND_ROW = 1024
# Fewer band pixels than this judge no model.
BAND_COUNTED = 50

# Pixels of non-camera motion ignored when completing flow inside a hole (see `complete_flow`).
RESIDUAL_SHRINK = 1.0

_IDENTITY = np.eye(3, dtype=np.float64)


def fit_scale(shape: tuple[int, int]) -> float:
    """The fit grid's size relative to a frame of `shape` (H, W)."""
    return min(FIT_SIDE / max(shape), FIT_MAX_ENLARGE)


def flow_scale(shape: tuple[int, int]) -> float:
    """The flow grid's size relative to a frame of `shape` (H, W): never larger than the frame."""
    return min(1.0, FLOW_MAX_SIDE / max(shape))


def push_pull_fill(values: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Fill where `weight` is 0 by normalized convolution over a pyramid (a fast membrane-like fill).

    values: (H, W, C) float32; weight: (H, W) float32 in 0..1, 1 = known. Known pixels come back
    unchanged; unknown ones get a smooth blend of the nearest known ones at the coarsest scale that
    reaches them. With no known pixel at all the result is zeros.
    """
    values = values.astype(np.float32, copy=False)
    weight = np.clip(weight.astype(np.float32, copy=False), 0.0, 1.0)
    if values.ndim == 2:
        values = values[..., None]
    channels = values.shape[2]
    premult = [values * weight[..., None]]
    weights = [weight]
    while min(weights[-1].shape[:2]) > 4:
        p = cv2.pyrDown(premult[-1])
        if p.ndim == 2:
            p = p[..., None]
        w = cv2.pyrDown(weights[-1])
        premult.append(p)
        weights.append(w)
    w = weights[-1]
    filled = np.where(w[..., None] > 1e-6, premult[-1] / np.maximum(w, 1e-6)[..., None], 0.0).astype(np.float32)
    if not np.any(w > 1e-6):
        # Nothing known at the coarsest level: either nothing is known at all, or too little.
        known = weight > 0
        if not np.any(known):
            return np.zeros_like(values) if channels > 1 else np.zeros(values.shape[:2], np.float32)
        filled[:] = values[known].mean(axis=0)
    for level in range(len(weights) - 2, -1, -1):
        h, wd = weights[level].shape[:2]
        up = cv2.pyrUp(filled, dstsize=(wd, h))
        if up.ndim == 2:
            up = up[..., None]
        w = weights[level]
        # Normalise the weights so that a half-known pixel trusts itself only half.
        alpha = np.clip(w * 2.0, 0.0, 1.0)[..., None]
        own = premult[level] / np.maximum(w, 1e-6)[..., None]
        filled = (alpha * own + (1.0 - alpha) * up).astype(np.float32)
    out = np.where(weight[..., None] >= 1.0, values, filled)
    return out if channels > 1 else out[..., 0]


def to_grey(image: np.ndarray, scale: float) -> np.ndarray:
    """uint8 luma on a grid `scale` times the frame's size; NaNs already replaced by the caller."""
    grey = cv2.cvtColor(np.clip(image, 0.0, 1.0), cv2.COLOR_RGB2GRAY)
    if scale != 1.0:
        h, w = grey.shape
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        if scale < 1.0:
            grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
        else:
            # Any interpolation leaves the source pixel grid in an enlarged image (area's blocks, the
            # kinks of linear and cubic), and feature tracks lock onto it: sub-pixel motion snaps
            # towards whole source pixels. Blurring by half a source pixel removes that grid.
            grey = cv2.GaussianBlur(cv2.resize(grey, size, interpolation=cv2.INTER_CUBIC), (0, 0), 0.5 * scale)
    # Clipped again after resizing: an interpolation that overshoots would wrap round in the cast.
    return (np.clip(grey, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def resize_mask(hole: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A boolean hole at another resolution, conservative (any covered pixel counts)."""
    if hole.shape == shape:
        return hole
    small = cv2.resize(hole.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    return small > 0.0


def corners(grey: np.ndarray, keep: np.ndarray, most: int = 500) -> np.ndarray | None:
    """Features to track outside the hole: (N, 1, 2) float32, or None when there are too few."""
    found = cv2.goodFeaturesToTrack(grey, maxCorners=most, qualityLevel=0.01, minDistance=7,
                                    mask=keep.astype(np.uint8))
    return found if found is not None and len(found) >= 12 else None


def homography(grey_a: np.ndarray, grey_b: np.ndarray, keep_a: np.ndarray, keep_b: np.ndarray) -> np.ndarray:
    """Robust homography mapping points of frame a onto frame b, from features outside the holes.

    Corners are found outside a's hole, tracked into b with pyramidal LK, and only tracks that land
    outside b's hole are used. Returns the identity when the frame has no features (flat frames) or
    RANSAC finds no consistent model: flow alone then carries the motion.
    """
    model = fit_homography(grey_a, grey_b, corners(grey_a, keep_a), keep_b)
    return _IDENTITY.copy() if model is None else model


def fit_homography(grey_a: np.ndarray, grey_b: np.ndarray, points: np.ndarray | None, keep_b: np.ndarray,
                   guess: np.ndarray | None = None, method: int = cv2.RANSAC) -> np.ndarray | None:
    """The homography a → b fitted by RANSAC on `points` of a tracked into b; None if none holds.

    With `guess` (e.g. the chained homographies of the frames between, for frames far apart) the
    tracking starts from where the guess puts each point, so large motions are followed.
    """
    tracks = track(grey_a, grey_b, points, keep_b, guess)
    return None if tracks is None else fit_tracks(tracks.a, tracks.b, method)


@dataclass
class Tracks:
    """Features of frame a followed into frame b, kept where they land clear of b's hole."""

    a: np.ndarray  # (N, 2) float32 positions in a
    b: np.ndarray  # (N, 2) float32 positions in b


def track(grey_a: np.ndarray, grey_b: np.ndarray, points: np.ndarray | None, keep_b: np.ndarray,
          guess: np.ndarray | None = None) -> Tracks | None:
    """`points` of a tracked into b by pyramidal LK (from where `guess` puts them, if given)."""
    if guess is None:
        return _tracked(grey_a, grey_b, [points], None, keep_b, max_level=3)[0]
    return track_sets(grey_a, grey_b, [(points, guess)], keep_b)[0]


def track_sets(grey_a: np.ndarray, grey_b: np.ndarray, sets: list[tuple[np.ndarray | None, np.ndarray]],
               keep_b: np.ndarray) -> list[Tracks | None]:
    """Sets of points of a, each tracked into b from where its own guess puts it, in one LK pass (the
    image pyramids are built once). The guesses are within a few pixels: two pyramid levels and
    every other point are enough."""
    points = [p[::2] if p is not None and len(p) >= 48 else p for p, _ in sets]
    starts = [cv2.perspectiveTransform(p, guess) for p, (_, guess) in zip(points, sets) if p is not None]
    start = np.ascontiguousarray(np.concatenate(starts), np.float32) if starts else None
    return _tracked(grey_a, grey_b, points, start, keep_b, max_level=1)


def _tracked(grey_a: np.ndarray, grey_b: np.ndarray, sets: list[np.ndarray | None], start: np.ndarray | None,
             keep_b: np.ndarray, max_level: int) -> list[Tracks | None]:
    """The sets tracked together by LK, from `start` (all the sets' start positions) if given."""
    given = [p for p in sets if p is not None]
    if not given:
        return [None] * len(sets)
    points = np.ascontiguousarray(np.concatenate(given), np.float32)
    if start is None:
        tracked, status, _ = cv2.calcOpticalFlowPyrLK(grey_a, grey_b, points, None, winSize=(21, 21),
                                                      maxLevel=max_level)
    else:
        tracked, status, _ = cv2.calcOpticalFlowPyrLK(grey_a, grey_b, points, start, winSize=(21, 21),
                                                      maxLevel=max_level, flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
    if tracked is None:
        return [None] * len(sets)
    h, w = grey_b.shape
    pts_a, pts_b = points.reshape(-1, 2), tracked.reshape(-1, 2)
    ok = status.ravel() == 1
    ok &= (pts_b[:, 0] >= 0) & (pts_b[:, 0] <= w - 1) & (pts_b[:, 1] >= 0) & (pts_b[:, 1] <= h - 1)
    ok[ok] = keep_b[pts_b[ok, 1].round().astype(int), pts_b[ok, 0].round().astype(int)]
    out: list[Tracks | None] = []
    start_at = 0
    for p in sets:
        if p is None:
            out.append(None)
            continue
        part = slice(start_at, start_at + len(p))
        start_at += len(p)
        out.append(Tracks(pts_a[part][ok[part]], pts_b[part][ok[part]]))
    return out


def fit_tracks(pts_a: np.ndarray, pts_b: np.ndarray, method: int = cv2.RANSAC) -> np.ndarray | None:
    """The homography a → b that RANSAC finds in the tracks; None if too few or it is degenerate."""
    if len(pts_a) < 12:
        return None
    model, inliers = cv2.findHomography(pts_a, pts_b, method, 2.0, maxIters=1000, confidence=0.995)
    if model is None or inliers is None or inliers.sum() < 10 or not np.all(np.isfinite(model)):
        return None
    model = model / model[2, 2]
    # A wildly distorting model is a RANSAC accident on a degenerate set, not camera motion.
    if abs(np.linalg.det(model[:2, :2]) - 1.0) > 0.5 or np.abs(model[2, :2]).max() > 1e-2:
        return None
    return model


def apply_homography(model: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the grid (gx, gy) under a homography, float32."""
    denominator = model[2, 0] * gx + model[2, 1] * gy + model[2, 2]
    hx = (model[0, 0] * gx + model[0, 1] * gy + model[0, 2]) / denominator
    hy = (model[1, 0] * gx + model[1, 1] * gy + model[1, 2]) / denominator
    return hx.astype(np.float32), hy.astype(np.float32)


def homography_flow(model: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Displacement field (H, W, 2) that `model` gives each pixel."""
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    pts = np.stack([xs, ys], axis=-1).reshape(-1, 1, 2)
    moved = cv2.perspectiveTransform(pts, model).reshape(h, w, 2)
    return (moved - np.stack([xs, ys], axis=-1)).astype(np.float32)


@dataclass
class Band:
    """Fit-grid pixels just outside a frame's widened hole, where camera models are compared: every
    BAND_STRIDE-th pixel each way (the fit grid is smooth; a sparse band judges as well), laid out in
    rows of BAND_ROW (OpenCV remaps nothing 32767 or more pixels wide)."""

    x: np.ndarray  # (rows, BAND_ROW) float32 columns, -1 past the last pixel
    y: np.ndarray  # (rows, BAND_ROW) float32 rows, -1 past the last pixel
    grey: np.ndarray  # (rows, BAND_ROW) float32: the frame's fit-grid luma there

    @classmethod
    def of(cls, grey: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> Band:
        rows = -(-len(ys) // BAND_ROW)

        def laid_out(values: np.ndarray) -> np.ndarray:
            out = np.full(rows * BAND_ROW, -1.0, np.float32)
            out[:len(values)] = values
            return out.reshape(rows, BAND_ROW)

        return cls(laid_out(xs), laid_out(ys), laid_out(grey[ys, xs]))


@dataclass
class Analysis:
    """One frame as the motion estimator sees it: grey images and holes on the fit and flow grids."""

    grey: np.ndarray  # uint8 luma on the fit grid (features, homographies)
    keep: np.ndarray  # fit-grid pixels clear of the hole widened by the margin
    points: np.ndarray | None  # features there, for homographies to other frames
    flow_grey: np.ndarray  # uint8 luma on the flow grid (dense flow)
    flow_keep: np.ndarray  # flow-grid pixels clear of the widened hole
    near_points: np.ndarray | None = None  # features within NEAR_FIT of the hole (see NEAR_FIT)
    band: Band | None = None  # None where the frame has no hole (or too little around it)


def camera_model(first: Analysis, second: Analysis, guess: np.ndarray, prior: np.ndarray | None = None,
                 method: int = cv2.RANSAC) -> np.ndarray:
    """The homography first → second (fit grid) of the surface around `first`'s hole.

    Camera motion is not one plane: a car's interior and the road behind its window, a wall and a
    person before it. The candidates: `guess` (for frames apart, the neighbours' pair models
    chained), the model fitted on all the features tracked from it, `prior` (the model chosen for
    the frame before `second` followed by one pair step) and the one fitted on the features near
    the hole tracked from it: a surface drifting away from the frame's main motion stays within
    the tracking's reach of its own chain. The one whose view of `second` best matches `first` just
    outside the hole is the motion of what the hole lies on (`best_near`). For neighbours `prior`
    is None and `guess` is the pair's own fit: it is not fitted again, and the near features are
    tracked from it.
    """
    if first.band is None:
        if prior is None:
            return guess
        fitted = fit_homography(first.grey, second.grey, first.points, second.keep, guess, method)
        return guess if fitted is None else fitted
    if prior is None:
        sets, candidates = [(first.near_points, guess)], [guess]
    else:
        sets, candidates = [(first.points, guess), (first.near_points, prior)], [guess, prior]
    fits = [None if t is None else fit_tracks(t.a, t.b, method)
            for t in track_sets(first.grey, second.grey, sets, second.keep)]
    if prior is not None and fits[0] is not None:
        candidates.insert(0, fits[0])  # ties go to the fit on all the features, as without a band
    if fits[-1] is not None:
        candidates.append(fits[-1])
    return best_near(first, second, candidates)


def best_near(first: Analysis, second: Analysis, candidates: list[np.ndarray]) -> np.ndarray:
    """The candidate (first → second) under which `second` best matches `first` on its band.

    All are judged on the same pixels: those of the band that every candidate takes clear of
    `second`'s hole (one that sent the band off the frame would otherwise be judged on what is
    left). Fewer than BAND_COUNTED of them judge nothing: the first candidate is kept.
    """
    band = first.band
    if band is None or len(candidates) == 1:
        return candidates[0]
    views, common = [], band.x >= 0
    for model in candidates:
        mx, my = apply_homography(model, band.x, band.y)
        common &= cv2.remap(second.keep.view(np.uint8), mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                            borderValue=0) > 0
        views.append((mx, my))
    if np.count_nonzero(common) < BAND_COUNTED:
        return candidates[0]
    errors = [float(np.abs(cv2.remap(second.grey, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)[common]
                           .astype(np.float32) - band.grey[common]).mean()) for mx, my in views]
    return candidates[int(np.argmin(errors))]


@dataclass
class PairMotion:
    """Motion from frame a to frame a+1 and back, completed inside holes."""

    forward: np.ndarray  # (h, w, 2) on the flow grid: where each pixel of a is in a+1
    backward: np.ndarray  # (h, w, 2) on the flow grid: where each pixel of a+1 is in a
    model: np.ndarray  # 3×3 homography a → a+1 on the fit grid
    inverse: np.ndarray  # 3×3 homography a+1 → a on the fit grid


def regrid(model: np.ndarray, scale: float) -> np.ndarray:
    """A homography between images `scale` times the size of others, expressed on the others' pixels.

    Pixel centres are aligned (x_small = scale * (x + 0.5) - 0.5); regrid(regrid(m, a), b) is
    regrid(m, a * b), so regrid(m, 1 / s) takes a full-size model onto a grid s times the size.
    """
    if scale == 1.0:
        return model
    shift = 0.5 * scale - 0.5
    to_small = np.array([[scale, 0, shift], [0, scale, shift], [0, 0, 1]], np.float64)
    return np.linalg.inv(to_small) @ model @ to_small


def _consistency(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """True where following forward then backward comes back within a pixel (or a few % of the motion)."""
    h, w = forward.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    back = cv2.remap(backward, xs + forward[..., 0], ys + forward[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)
    loop = forward + back
    error = cv2.magnitude(loop[..., 0], loop[..., 1])
    magnitude = cv2.magnitude(forward[..., 0], forward[..., 1])
    return error <= 1.0 + 0.05 * magnitude


def complete_flow(flow: np.ndarray, valid: np.ndarray, model: np.ndarray) -> np.ndarray:
    """Flow with invalid pixels replaced by the homography plus a residual diffused from valid flow."""
    if valid.all():
        return flow
    base = homography_flow(model, flow.shape[:2])
    residual = flow - base
    # Shrink small residuals to zero: around a hole they are mostly flow noise or the object's drag,
    # and a hole should move exactly with the camera unless its surroundings clearly do not.
    size = cv2.magnitude(residual[..., 0], residual[..., 1])[..., None]
    residual = residual * np.clip(1.0 - RESIDUAL_SHRINK / np.maximum(size, 1e-6), 0.0, None)
    residual = push_pull_fill(residual, valid.astype(np.float32))
    return np.where(valid[..., None], flow, base + residual).astype(np.float32)


class MotionEstimator:
    """Analyses frames and computes `PairMotion` for neighbours, with one DIS instance per quality setting.

    Safe to share between threads: each thread computes flow with a DIS instance of its own (an
    instance keeps its working buffers between calls).

    fit_scale / flow_scale: the fit and flow grids' size relative to the frame; margin: pixels (on
    each grid) of the hole's surroundings not trusted, where the object drags the flow.
    """

    def __init__(self, preset: int, margin: int, fit_scale: float, flow_scale: float) -> None:
        self._preset = preset
        self._local = threading.local()
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
        self.fit_scale = fit_scale
        self.flow_scale = flow_scale
        self.method = cv2.RANSAC

    def analyse(self, pixels: np.ndarray, hole: np.ndarray) -> Analysis:
        """pixels: the frame (no NaNs); hole: (H, W) bool, the object, affected and NaN pixels."""
        grey = to_grey(pixels, self.fit_scale)
        keep = self._keep(hole, grey.shape)
        if self.flow_scale == self.fit_scale:
            flow_grey, flow_keep = grey, keep
        else:
            flow_grey = to_grey(pixels, self.flow_scale)
            flow_keep = self._keep(hole, flow_grey.shape)
        points = corners(grey, keep)
        near_points, band = None, None
        if not keep.all():
            distance = cv2.distanceTransform(keep.view(np.uint8), cv2.DIST_L2, 3)
            step = BAND_STRIDE
            ring = keep[::step, ::step] & (distance[::step, ::step] <= NEAR_SCORE)
            if np.count_nonzero(ring) >= BAND_COUNTED:
                ys, xs = np.nonzero(ring)
                band = Band.of(grey, ys * step, xs * step)
                near_points = self._near_points(grey, keep, distance, points)
        return Analysis(grey, keep, points, flow_grey, flow_keep, near_points, band)

    @staticmethod
    def _near_points(grey: np.ndarray, keep: np.ndarray, distance: np.ndarray,
                     points: np.ndarray | None) -> np.ndarray | None:
        """The frame's own features within NEAR_FIT of the hole, and more found in that region alone
        (among the whole frame's strongest, a quiet surface there may have none)."""
        region = keep & (distance <= NEAR_FIT)
        ys, xs = np.nonzero(region)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        found = corners(grey[y0:y1, x0:x1], region[y0:y1, x0:x1], NEAR_CORNERS)
        near = [] if found is None else [found + np.array([x0, y0], np.float32)]
        if points is not None:
            rows = points[:, 0, 1].round().astype(int).clip(0, grey.shape[0] - 1)
            columns = points[:, 0, 0].round().astype(int).clip(0, grey.shape[1] - 1)
            near.insert(0, points[region[rows, columns]])
        near_points = np.concatenate(near) if near else np.zeros((0, 1, 2), np.float32)
        return np.ascontiguousarray(near_points, np.float32) if len(near_points) >= 12 else None

    def _dis(self) -> cv2.DISOpticalFlow:
        dis = getattr(self._local, "dis", None)
        if dis is None:
            dis = self._local.dis = cv2.DISOpticalFlow_create(self._preset)
        return dis

    def _keep(self, hole: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        # Flow right around the object is dragged by it (DIS regularises across edges): widen the hole.
        return cv2.dilate(resize_mask(hole, shape).astype(np.uint8), self._kernel) == 0

    def pair(self, a: Analysis, b: Analysis) -> PairMotion:
        model = fit_homography(a.grey, b.grey, a.points, b.keep, method=self.method)
        model = _IDENTITY.copy() if model is None else model
        inverse = np.linalg.inv(model)
        inverse = inverse / inverse[2, 2]
        dis = self._dis()
        forward = dis.calc(a.flow_grey, b.flow_grey, None)
        backward = dis.calc(b.flow_grey, a.flow_grey, None)
        ok_f = _consistency(forward, backward) & a.flow_keep
        ok_b = _consistency(backward, forward) & b.flow_keep
        to_flow = self.fit_scale / self.flow_scale
        return PairMotion(
            forward=complete_flow(forward, ok_f, regrid(model, to_flow)),
            backward=complete_flow(backward, ok_b, regrid(inverse, to_flow)),
            model=model,
            inverse=inverse,
        )
