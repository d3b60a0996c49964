"""The weights-free matte tracker: a prompt's region carried through the range, re-snapped to edges.

On a prompt frame the object is the drawn shape when there is one, else a GrabCut segmentation
seeded by the boxes and points. From each prompt frame the matte is carried forward and backward
one frame at a time. Each step first finds how the object moved as a whole: its own pixels,
silhouette included, are matched (masked SSD, coarse to fine) around three guesses: its last
velocity, the camera's motion (a homography fitted on the background) and the median of the dense
flow inside it where forward and backward flow agree. Matching the whole object holds where
per-pixel flow fails inside it (repetitive or faint texture, motion larger than its detail); when
nothing near the guesses matches (a leap farther than its own size), the whole frame is searched. The
shifted matte is then re-snapped to the image's edges by GrabCut in a band around it, which also
follows moderate changes of shape, so errors do not accumulate into drift or blur. Between two
prompt frames the forward and backward propagations are blended by distance (the nearer prompt
weighs more); a later prompt rules from its own frame on.

Flow, matching and GrabCut run at a reduced scale (longest side at most `FLOW_MAX_SIDE`); the
matte is brought back to the frame's size by a guided filter on the full-resolution luma, which
puts the edge where the image has it. Only the previous frame's small images and matte are held
while tracking; the backward pass between two prompts is kept as PNG-compressed small mattes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np
from voidlink.inference.backends.classical.flow import homography, to_grey
from voidlink.inference.backends.matte.base import Cancelled, FrameReader, MatteRequest, Prompt, Tracker

__all__ = ["ClassicalTracker", "FLOW_MAX_SIDE"]

FLOW_MAX_SIDE = 960
# GrabCut iterations: a prompt is segmented from nothing, a carried matte only re-snapped.
PROMPT_ITERATIONS = 5
REFINE_ITERATIONS = 2
# Mean squared difference (8-bit levels, per channel) above which the object is taken as not found
# near its guesses, and the whole frame is searched (about 14 levels RMS: more than grain and re-lighting).
LOST_MSE = 200.0


@dataclass
class _State:
    """What one propagation step needs of the frame before (at flow resolution)."""

    grey: np.ndarray  # uint8 luma
    colour: np.ndarray  # uint8 RGB
    matte: np.ndarray  # float32 0-1
    velocity: Optional[np.ndarray]  # (dx, dy) the object moved by into this frame; None on a prompt frame


def _kernel(radius: int) -> np.ndarray:
    radius = max(1, int(radius))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _box_of(region: np.ndarray, margin: int) -> Optional[tuple[int, int, int, int]]:
    ys, xs = np.nonzero(region)
    if not len(ys):
        return None
    h, w = region.shape
    return (
        max(0, xs.min() - margin),
        max(0, ys.min() - margin),
        min(w, xs.max() + margin + 1),
        min(h, ys.max() + margin + 1),
    )


def _grabcut(colour: np.ndarray, labels: np.ndarray, iterations: int) -> np.ndarray:
    """GrabCut from a label map (GC_* values) on a crop around the undecided pixels; bool foreground."""
    undecided = (labels == cv2.GC_PR_FGD) | (labels == cv2.GC_PR_BGD) | (labels == cv2.GC_FGD)
    size = int(np.sqrt(max(1, int(undecided.sum()))))
    box = _box_of(undecided, max(8, size // 2))
    if box is None:
        return np.zeros(labels.shape, bool)
    x0, y0, x1, y1 = box
    crop = labels[y0:y1, x0:x1].copy()
    fg = (crop == cv2.GC_FGD) | (crop == cv2.GC_PR_FGD)
    bg = (crop == cv2.GC_BGD) | (crop == cv2.GC_PR_BGD)
    result = np.zeros(labels.shape, bool)
    # GrabCut needs both models seeded; a crop that is all one kind is already decided.
    if fg.sum() < 2 or bg.sum() < 2:
        result[y0:y1, x0:x1] = fg
        return result
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(np.ascontiguousarray(colour[y0:y1, x0:x1]), crop, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        result[y0:y1, x0:x1] = fg
        return result
    result[y0:y1, x0:x1] = (crop == cv2.GC_FGD) | (crop == cv2.GC_PR_FGD)
    return result


def _keep_components(region: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The connected components of `region` that meet `seeds` (all of them when none does)."""
    count, labels = cv2.connectedComponents(region.astype(np.uint8), connectivity=8)
    if count <= 2:
        return region
    hit = np.unique(labels[seeds & region])
    hit = hit[hit > 0]
    if not len(hit):
        return region
    return np.isin(labels, hit)


def _guided_upsample(matte: np.ndarray, guide: np.ndarray, radius: int, eps: float = 1e-3) -> np.ndarray:
    """The low-resolution matte at the guide's size, its edge moved onto the guide's edges.

    A grey guided filter (He et al.) computed only on a box around the matte's edge: the rest of
    the frame is plainly inside or outside.
    """
    h, w = guide.shape
    up = cv2.resize(matte, (w, h), interpolation=cv2.INTER_LINEAR)
    edge = (up > 0.02) & (up < 0.98)
    box = _box_of(edge, 2 * radius + 2)
    out = (up >= 0.5).astype(np.float32)
    if box is None:
        return out
    x0, y0, x1, y1 = box
    p, i = up[y0:y1, x0:x1], guide[y0:y1, x0:x1]
    size = (2 * radius + 1, 2 * radius + 1)

    def mean(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, -1, size, borderType=cv2.BORDER_REFLECT)

    mi, mp = mean(i), mean(p)
    a = (mean(i * p) - mi * mp) / (mean(i * i) - mi * mi + eps)
    b = mp - a * mi
    q = mean(a) * i + mean(b)
    # Sharpen the filtered matte back to a crisp edge, soft over about a pixel.
    out[y0:y1, x0:x1] = np.clip((q - 0.5) * 4.0 + 0.5, 0.0, 1.0)
    return out


def _match(
    before: np.ndarray, region: np.ndarray, after: np.ndarray, candidates: Sequence[np.ndarray], reach: float
) -> np.ndarray:
    """The object's shift from `before` to `after`: its pixels matched (masked SSD) around the candidates.

    Matching the object's own pixels, silhouette included, holds where flow inside it fails:
    repetitive texture, motion larger than its detail, little texture at all. A coarse search at a
    scale where the object is about 48 px across, then a fine one at full scale. When nothing near the
    candidates matches (an object that moved farther than its reach in one frame), the whole frame is
    searched the same way and the better match kept.
    """
    x0, y0, x1, y1 = _box_of(region, 0)
    h, w = region.shape
    template = before[y0:y1, x0:x1].astype(np.float32)
    weight = region[y0:y1, x0:x1].astype(np.float32)
    size = float(np.sqrt(region.sum()))
    reach = max(8.0, reach)
    cands = np.array(candidates, np.float64).reshape(-1, 2)
    lo = cands.min(axis=0) - reach
    hi = cands.max(axis=0) + reach

    def search(scale: float, lo: np.ndarray, hi: np.ndarray) -> Optional[tuple[np.ndarray, float]]:
        """(shift, mean squared difference per masked channel value) of the best match in the window."""
        sx0, sy0 = int(np.floor(x0 + lo[0])), int(np.floor(y0 + lo[1]))
        sx1, sy1 = int(np.ceil(x1 + hi[0])), int(np.ceil(y1 + hi[1]))
        # Where the window leaves the frame the object cannot be matched whole: clip it.
        cx0, cy0, cx1, cy1 = max(0, sx0), max(0, sy0), min(w, sx1), min(h, sy1)
        if cx1 - cx0 < x1 - x0 or cy1 - cy0 < y1 - y0:
            return None
        window = after[cy0:cy1, cx0:cx1].astype(np.float32)
        t, m = template, weight
        if scale < 1.0:

            def down(x: np.ndarray) -> np.ndarray:
                return cv2.resize(
                    x,
                    (max(1, round(x.shape[1] * scale)), max(1, round(x.shape[0] * scale))),
                    interpolation=cv2.INTER_AREA,
                )

            t, m, window = down(t), down(m), down(window)
            if window.shape[0] < t.shape[0] or window.shape[1] < t.shape[1]:
                return None
        mask = np.repeat(m[..., None], 3, axis=2)
        cost = cv2.matchTemplate(window, t, cv2.TM_SQDIFF, mask=mask)
        cost[~np.isfinite(cost)] = np.inf
        iy, ix = np.unravel_index(int(np.argmin(cost)), cost.shape)
        mse = float(cost[iy, ix]) / max(1e-6, float((mask * mask).sum()))
        return np.array([cx0 + ix / scale - x0, cy0 + iy / scale - y0]), mse

    def coarse_to_fine(lo: np.ndarray, hi: np.ndarray) -> Optional[tuple[np.ndarray, float]]:
        coarse = min(1.0, 48.0 / max(size, 1.0))
        best = search(coarse, lo, hi)
        if best is not None and coarse < 1.0:
            pad = 1.5 / coarse + 1.0
            best = search(1.0, best[0] - pad, best[0] + pad) or best
        return best

    best = coarse_to_fine(lo, hi)
    if best is None:
        return cands[0]
    inside = template[weight > 0.5]
    contrast = float(((inside - inside.mean(axis=0)) ** 2).mean()) if len(inside) else 0.0
    if best[1] > max(LOST_MSE, 0.3 * contrast):  # nothing near the guesses looks like the object
        anywhere = coarse_to_fine(np.array([-x0, -y0], np.float64), np.array([w - x1, h - y1], np.float64))
        if anywhere is not None and anywhere[1] < best[1]:
            best = anywhere
    return best[0]


class ClassicalTracker(Tracker):
    """Tracks the prompted object with flow, the camera's homography and GrabCut; no weights."""

    name = "classical"

    def __init__(self, flow_max_side: int = FLOW_MAX_SIDE, preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM) -> None:
        self._max_side = int(flow_max_side)
        self._dis = cv2.DISOpticalFlow_create(preset)

    # -- frames at flow resolution ------------------------------------------------------------

    def _scale(self, size: tuple[int, int]) -> float:
        return min(1.0, self._max_side / float(max(size)))

    def _small(self, image: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
        """(grey uint8, colour uint8) at flow resolution."""
        image = np.nan_to_num(image[..., :3], nan=0.0)
        grey = to_grey(image, scale)
        h, w = grey.shape
        colour = image if scale == 1.0 else cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        return grey, (np.clip(colour, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)

    def _full(self, matte: np.ndarray, image: np.ndarray, scale: float) -> np.ndarray:
        if scale == 1.0:
            return matte.astype(np.float32)
        guide = cv2.cvtColor(np.clip(np.nan_to_num(image[..., :3]), 0.0, 1.0), cv2.COLOR_RGB2GRAY)
        return _guided_upsample(matte.astype(np.float32), guide, max(2, int(round(1.5 / scale))))

    # -- the prompt frame ---------------------------------------------------------------------

    def _prompt_region(self, image: np.ndarray, prompts: Sequence[Prompt], scale: float) -> np.ndarray:
        """The object on a prompt frame at flow resolution, float32 0/1."""
        grey, colour = self._small(image, scale)
        h, w = grey.shape
        shapes = [p.shape for p in prompts if p.shape is not None]
        if shapes:
            union = np.logical_or.reduce([np.asarray(s, bool) for s in shapes]).astype(np.float32)
            return cv2.resize(union, (w, h), interpolation=cv2.INTER_AREA)
        labels = np.full((h, w), cv2.GC_BGD, np.uint8)
        boxes = [b for p in prompts for b in p.boxes]
        positives = [(x, y) for p in prompts for x, y, positive in p.points if positive]
        negatives = [(x, y) for p in prompts for x, y, positive in p.points if not positive]
        for x0, y0, x1, y1 in boxes:
            xa, xb = sorted((x0 * scale, x1 * scale))
            ya, yb = sorted((y0 * scale, y1 * scale))
            labels[max(0, int(ya)) : min(h, int(np.ceil(yb))), max(0, int(xa)) : min(w, int(np.ceil(xb)))] = (
                cv2.GC_PR_FGD
            )
        if not boxes and positives:
            # Points alone: a box grown around them, the rest only probably background.
            pts = np.array(positives) * scale
            spread = np.ptp(pts, axis=0) if len(pts) > 1 else np.zeros(2)
            grow = max(0.12 * min(h, w), 0.6 * float(spread.max()))
            labels[:] = cv2.GC_PR_BGD
            xa, ya = pts.min(axis=0) - grow
            xb, yb = pts.max(axis=0) + grow
            labels[max(0, int(ya)) : min(h, int(yb)), max(0, int(xa)) : min(w, int(xb))] = cv2.GC_PR_FGD
        dab = max(2, int(round(0.012 * min(h, w))))
        seeds = np.zeros((h, w), bool)
        for x, y in positives:
            cv2.circle(labels, (int(x * scale), int(y * scale)), dab, int(cv2.GC_FGD), -1)
            cv2.circle(seeds.view(np.uint8), (int(x * scale), int(y * scale)), dab, 1, -1)
        for x, y in negatives:
            cv2.circle(labels, (int(x * scale), int(y * scale)), dab, int(cv2.GC_BGD), -1)
        region = _grabcut(colour, labels, PROMPT_ITERATIONS)
        if positives:
            region = _keep_components(region, seeds)
        elif boxes:
            # Keep what fills the boxes, not specks GrabCut found in their corners.
            region = _keep_components(region, cv2.erode(region.astype(np.uint8), _kernel(2)) > 0)
        return region.astype(np.float32)

    # -- one propagation step -----------------------------------------------------------------

    def _carry(self, state: _State, grey: np.ndarray, colour: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """The matte of the previous frame carried onto this one and re-snapped; and the shift used."""
        h, w = grey.shape
        obj = state.matte > 0.5
        if not obj.any():
            return state.matte, None
        size = float(np.sqrt(obj.sum()))
        near = cv2.dilate(obj.astype(np.uint8), _kernel(max(3, int(0.15 * size)))) > 0
        ys, xs = np.nonzero(obj)
        centre = np.array([xs.mean(), ys.mean()])
        # Where the object may have gone: on with its last velocity, with the camera (homography
        # fitted off the object), or with the flow inside it where forward and backward agree.
        # Without a velocity yet (the step off a prompt frame) the search reaches farther.
        reach = max(0.6 * size, (0.1 if state.velocity is None else 0.0) * max(h, w))
        candidates = [np.zeros(2) if state.velocity is None else state.velocity]
        model = homography(state.grey, grey, ~near, ~near)
        moved = cv2.perspectiveTransform(centre.reshape(1, 1, 2), model).reshape(2)
        candidates.append(moved - centre)
        # Flow is only wanted inside the object: compute it on a box around it and its reach.
        x0, y0, x1, y1 = _box_of(obj, int(reach) + 8)
        before, after = np.ascontiguousarray(state.grey[y0:y1, x0:x1]), np.ascontiguousarray(grey[y0:y1, x0:x1])
        forward = self._dis.calc(before, after, None)
        backward = self._dis.calc(after, before, None)
        inner = cv2.erode(obj.astype(np.uint8), _kernel(max(1, int(0.1 * size)))) > 0
        iy, ix = np.nonzero((inner if inner.any() else obj)[y0:y1, x0:x1])
        f = forward[iy, ix]
        tx = np.clip(np.rint(ix + f[:, 0]).astype(int), 0, x1 - x0 - 1)
        ty = np.clip(np.rint(iy + f[:, 1]).astype(int), 0, y1 - y0 - 1)
        agree = np.linalg.norm(f + backward[ty, tx], axis=-1) <= 1.0 + 0.1 * np.linalg.norm(f, axis=-1)
        if agree.sum() >= max(8, 0.2 * len(f)):
            candidates.append(np.median(f[agree], axis=0))
        shift = _match(state.colour, obj, colour, candidates, reach)
        carried = (
            cv2.warpAffine(
                state.matte,
                np.float32([[1, 0, shift[0]], [0, 1, shift[1]]]),
                (w, h),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=0.0,
            )
            > 0.5
        )
        if not carried.any():
            return carried.astype(np.float32), shift
        band = max(2, int(round(0.08 * size)))
        labels = np.full((h, w), cv2.GC_BGD, np.uint8)
        grown = cv2.dilate(carried.astype(np.uint8), _kernel(band)) > 0
        labels[grown] = cv2.GC_PR_BGD
        labels[carried] = cv2.GC_PR_FGD
        core = cv2.erode(carried.astype(np.uint8), _kernel(band)) > 0
        labels[core] = cv2.GC_FGD
        region = _grabcut(colour, labels, REFINE_ITERATIONS)
        region = _keep_components(region, core if core.any() else carried)
        # GrabCut that lost or doubled the object is a failure of the colour model, not motion: keep the carry.
        ratio = region.sum() / max(1, carried.sum())
        if not 0.7 <= ratio <= 1.4:
            return carried.astype(np.float32), shift
        return region.astype(np.float32), shift

    # -- the range ----------------------------------------------------------------------------

    def _run(
        self,
        reader: FrameReader,
        order: Sequence[int],
        start: np.ndarray,
        scale: float,
        request: MatteRequest,
        label: str,
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """(frame, low-res matte, full image) along `order`, whose first frame carries `start`."""
        state: Optional[_State] = None
        for step, frame in enumerate(order):
            if request.cancelled():
                raise Cancelled(f"matte tracking cancelled at frame {frame}")
            image = reader.read(frame)
            grey, colour = self._small(image, scale)
            if state is None:
                matte, velocity = start, None
            else:
                matte, velocity = self._carry(state, grey, colour)
            state = _State(grey=grey, colour=colour, matte=matte, velocity=velocity)
            if step and step % 10 == 0:
                request.on_message(f"{label}: frame {frame}")
            yield frame, matte, image

    def track(
        self, reader: FrameReader, prompts: Sequence[Prompt], request: MatteRequest
    ) -> Iterator[tuple[int, np.ndarray]]:
        frames = list(reader.frames)
        if not prompts:
            raise ValueError("the classical tracker needs at least one prompt")
        position = {f: i for i, f in enumerate(frames)}
        groups: dict[int, list[Prompt]] = {}
        for prompt in prompts:
            if prompt.frame not in position:
                raise ValueError(f"the prompt on frame {prompt.frame} is outside the range {frames[0]}-{frames[-1]}")
            groups.setdefault(prompt.frame, []).append(prompt)
        keys = sorted(groups, key=position.__getitem__)
        scale = self._scale(reader.size)
        request.provenance.setdefault("tracker", "classical (DIS flow, homography, GrabCut)")
        request.notes.append(
            "classical tracker: flow and colour segmentation, no learned model; check "
            "thin parts, motion blur and where the object crosses similar colours"
        )

        def prompt_start(frame: int) -> tuple[np.ndarray, np.ndarray]:
            image = reader.read(frame)
            request.on_message(f"segmenting the prompt on frame {frame}")
            small = self._prompt_region(image, groups[frame], scale)
            if not (small > 0.5).any():
                request.notes.append(f"the prompt on frame {frame} found no object there; add a point or a box on it")
            shapes = [np.asarray(p.shape, bool) for p in groups[frame] if p.shape is not None]
            if shapes:  # the user drew it: exactly that, at full resolution
                return small, np.logical_or.reduce(shapes).astype(np.float32)
            return small, self._full(small, image, scale)

        first = keys[0]
        small, full = prompt_start(first)
        yield first, full
        request.on_message(f"tracking backward from frame {first}")
        before = frames[: position[first] + 1][::-1]
        for frame, matte, image in self._run(reader, before, small, scale, request, f"backward from {first}"):
            if frame != first:
                yield frame, self._full(matte, image, scale)
        for here, there in zip(keys, keys[1:] + [None]):
            start = position[here]
            if there is None:
                request.on_message(f"tracking forward from frame {here}")
                after = frames[start:]
                for frame, matte, image in self._run(reader, after, small, scale, request, f"forward from {here}"):
                    if frame != here:
                        yield frame, self._full(matte, image, scale)
                return
            end = position[there]
            next_small, next_full = prompt_start(there)
            request.on_message(f"tracking backward from frame {there} to {here}")
            stored: dict[int, bytes] = {}
            for frame, matte, _ in self._run(
                reader, frames[start + 1 : end + 1][::-1], next_small, scale, request, f"backward from {there}"
            ):
                if frame != there:
                    stored[frame] = cv2.imencode(".png", (matte * 255.0 + 0.5).astype(np.uint8))[1].tobytes()
            request.on_message(f"tracking forward from frame {here} to {there}")
            for frame, matte, image in self._run(
                reader, frames[start:end], small, scale, request, f"forward from {here}"
            ):
                if frame == here:
                    continue
                back = cv2.imdecode(np.frombuffer(stored.pop(frame), np.uint8), cv2.IMREAD_GRAYSCALE)
                weight = (position[frame] - start) / float(end - start)  # 0 at here, 1 at there
                blended = (1.0 - weight) * matte + weight * (back.astype(np.float32) / 255.0)
                yield frame, self._full(blended, image, scale)
            yield there, next_full
            small = next_small
