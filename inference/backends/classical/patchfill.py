"""Exemplar (patch-based) spatial fill: what no frame reveals, continued from the image around it.

A multi-scale PatchMatch completion in the manner of Wexler, Shechtman and Irani (2007) with the
nearest-neighbour search of Barnes et al. (2009), vectorised in numpy: every hole pixel holds the
position of a source patch (a patch lying wholly in the known part of the image); the search
improves those positions by propagation from neighbours (jump-flood steps, all pixels at once)
and random search around the current match, and each hole pixel is then voted from the source
pixels that the patches overlapping it map it to. The hole is filled coarse to fine; the coarsest
level starts from a smooth (push-pull) fill, and each finer level starts from the upsampled
matches. Unlike a diffusion fill (Telea), stripes, edges and texture are continued into the hole.
The result is structure plus texture: its low frequencies come from Telea's smooth fill and only
the exemplar fill's detail is added, shrunk where the overlapping patches' votes disagree and
faded with the distance from the hole's edge (far inside a big hole, where a texture is placed is
a guess, and a misplaced copy costs more than a blur).

Everything is deterministic: a fixed seed drives the random search, so the same input gives the
same fill (the backend's resume contract needs it).
"""

from __future__ import annotations

import cv2
import numpy as np
from voidlink.inference.backends.classical.flow import push_pull_fill

PATCH = 7  # patch side in pixels (odd)
# The coarsest level is the first whose hole fits in this many pixels (or the image gets too small).
COARSE_HOLE = 24
MAX_LEVELS = 5
ITERATIONS = 3  # search + vote rounds per level (one more at the coarsest)
SEED = 1234
# How strongly disagreeing votes pull the fill towards the smooth one (see the end of `patch_fill`).
SHRINK = 4
# The fill's structure (below this blur, in pixels) comes from the smooth fill, its detail from patches.
STRUCTURE_SIGMA = 9.0
# Copied detail fades with the distance from the hole's edge: to 1/e at this many pixels.
TEXTURE_REACH = 48.0


def _offsets(patch: int) -> np.ndarray:
    r = patch // 2
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    return np.stack([dy.ravel(), dx.ravel()], axis=1)


class _Level:
    """One pyramid level: the image (hole holding the current estimate), the hole, the valid sources."""

    def __init__(self, image: np.ndarray, missing: np.ndarray, patch: int) -> None:
        self.r = patch // 2
        self.h, self.w = missing.shape
        self.missing = missing
        self.image = image.astype(np.float32)
        known = (~missing).astype(np.uint8)
        # A source patch lies wholly in the known part and wholly inside the image.
        valid = cv2.erode(known, np.ones((patch, patch), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
        self.valid = valid > 0
        self.ty, self.tx = np.nonzero(missing)
        self.offsets = _offsets(patch)
        # Distances are taken on every other pixel of the patch (a quarter of the work, the same
        # extent); votes use them all.
        self.sparse = (
            self.offsets[(self.offsets[:, 0] % 2 == 1) & (self.offsets[:, 1] % 2 == 1)]
            if patch % 4 == 3
            else self.offsets[(self.offsets[:, 0] % 2 == 0) & (self.offsets[:, 1] % 2 == 0)]
        )

    def planes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The image padded by the patch radius (reflected), one flat array per channel.

        Gathering from three flat channels is several times faster than gathering (N, 3) rows.
        """
        r = self.r
        padded = cv2.copyMakeBorder(self.image, r, r, r, r, cv2.BORDER_REFLECT)
        return tuple(np.ascontiguousarray(padded[..., c]).ravel() for c in range(3))

    def distance(self, planes: tuple[np.ndarray, np.ndarray, np.ndarray], sy: np.ndarray,
                 sx: np.ndarray) -> np.ndarray:
        """Sum of squared differences between the target patches and the patches at (sy, sx)."""
        wp = self.w + 2 * self.r
        target = (self.ty + self.r) * wp + (self.tx + self.r)
        source = (sy + self.r) * wp + (sx + self.r)
        red, green, blue = planes
        total = np.zeros(self.ty.shape, np.float32)
        for dy, dx in self.sparse:
            shift = dy * wp + dx
            t, s = target + shift, source + shift
            dr, dg, db = red[t] - red[s], green[t] - green[s], blue[t] - blue[s]
            total += dr * dr + dg * dg + db * db
        return total

    def is_valid(self, sy: np.ndarray, sx: np.ndarray) -> np.ndarray:
        inside = (sy >= 0) & (sy < self.h) & (sx >= 0) & (sx < self.w)
        ok = np.zeros(sy.shape, bool)
        ok[inside] = self.valid[sy[inside], sx[inside]]
        return ok


def _random_valid(level: _Level, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    vy, vx = np.nonzero(level.valid)
    pick = rng.integers(0, len(vy), count)
    return vy[pick], vx[pick]


def _search(level: _Level, nnf_y: np.ndarray, nnf_x: np.ndarray, rng: np.random.Generator) -> tuple:
    """PatchMatch rounds over the hole pixels: jump-flood propagation, then random search."""
    planes = level.planes()
    best = level.distance(planes, nnf_y, nnf_x)
    # Where each target sits in the (h, w) grid, to read its neighbours' matches.
    index = np.full((level.h, level.w), -1, np.int64)
    index[level.ty, level.tx] = np.arange(len(level.ty))

    def try_candidates(cy: np.ndarray, cx: np.ndarray) -> None:
        nonlocal best
        ok = level.is_valid(cy, cx)
        if not ok.any():
            return
        cy, cx = np.where(ok, cy, nnf_y), np.where(ok, cx, nnf_x)
        d = level.distance(planes, cy, cx)
        better = ok & (d < best)
        nnf_y[better], nnf_x[better], best[better] = cy[better], cx[better], d[better]

    extent = max(level.h, level.w)
    step = 1
    while step * 2 < min(8, extent):
        step *= 2
    steps = []
    while step >= 1:
        steps.append(step)
        step //= 2
    for step in steps:
        for dy, dx in ((step, 0), (-step, 0), (0, step), (0, -step)):
            ny, nx = level.ty + dy, level.tx + dx
            inside = (ny >= 0) & (ny < level.h) & (nx >= 0) & (nx < level.w)
            neighbour = np.full(len(ny), -1, np.int64)
            neighbour[inside] = index[ny[inside], nx[inside]]
            has = neighbour >= 0
            # The neighbour's match, shifted back by the step: continues the neighbour's source region.
            cy = np.where(has, nnf_y[np.maximum(neighbour, 0)] - dy, -1)
            cx = np.where(has, nnf_x[np.maximum(neighbour, 0)] - dx, -1)
            try_candidates(cy, cx)
    radius = float(extent)
    while radius >= 1.0:
        cy = nnf_y + np.round(rng.uniform(-radius, radius, len(nnf_y))).astype(np.int64)
        cx = nnf_x + np.round(rng.uniform(-radius, radius, len(nnf_x))).astype(np.int64)
        try_candidates(cy, cx)
        radius /= 2.0
    return nnf_y, nnf_x, best


def _vote(level: _Level, nnf_y: np.ndarray, nnf_x: np.ndarray, best: np.ndarray, spread: bool = False):
    """Each hole pixel: the weighted mean of what the overlapping patches' matches put there.

    With `spread`, also the weighted variance of those votes (mean over channels), per pixel.
    """
    h, w = level.h, level.w
    # Per channel, on flat arrays: gathering and adding single values is several times faster than
    # (N, 3) rows, and each sum is taken in the same order.
    channels = [np.ascontiguousarray(level.image[..., c]).ravel() for c in range(3)]
    total = [np.zeros(h * w, np.float32) for _ in range(3)]
    squares = [np.zeros(h * w, np.float32) for _ in range(3)] if spread else None
    weight = np.zeros(h * w, np.float32)
    # Similarity weights (Wexler): good matches count more; the scale follows the typical distance.
    scale = float(np.median(best)) + 1e-6
    wt = np.exp(-best / (2.0 * scale)).astype(np.float32)
    # The hole pixels are distinct, so one offset never sends two votes to the same pixel: a plain
    # indexed add is exact here, and many times faster than np.add.at.
    for dy, dx in level.offsets:
        qy, qx = level.ty + dy, level.tx + dx
        sy, sx = nnf_y + dy, nnf_x + dx
        inside = (qy >= 0) & (qy < h) & (qx >= 0) & (qx < w)
        q = qy[inside] * w + qx[inside]
        src = sy[inside] * w + sx[inside]
        ww = wt[inside]
        for c in range(3):
            value = channels[c][src]
            total[c][q] += value * ww
            if spread:
                squares[c][q] += value * value * ww
        weight[q] += ww
    out = level.image.copy()
    hole = level.missing & (weight.reshape(h, w) > 0)
    flat_hole = hole.ravel()
    votes = weight[flat_hole]
    for c in range(3):
        out[..., c][hole] = total[c][flat_hole] / votes
    if not spread:
        return out
    variance = np.zeros((h, w), np.float32)
    mean_sq = np.stack([squares[c][flat_hole] / votes for c in range(3)], axis=1)
    variance[hole] = np.maximum(mean_sq - out[hole] ** 2, 0.0).mean(axis=1)
    return out, variance


def _pyramid(image: np.ndarray, missing: np.ndarray, patch: int) -> list[tuple[np.ndarray, np.ndarray]]:
    levels = [(image, missing)]
    ys, xs = np.nonzero(missing)
    extent = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)
    while len(levels) < MAX_LEVELS and extent > COARSE_HOLE:
        img, hole = levels[-1]
        h, w = hole.shape
        if min(h, w) // 2 < 4 * patch:
            break
        size = (max(1, w // 2), max(1, h // 2))
        known = (~hole).astype(np.float32)
        num = cv2.resize(img * known[..., None], size, interpolation=cv2.INTER_AREA)
        den = cv2.resize(known, size, interpolation=cv2.INTER_AREA)
        small_hole = den < 0.999
        small = num / np.maximum(den, 1e-6)[..., None]
        levels.append((small.astype(np.float32), small_hole))
        extent = (extent + 1) // 2
    return levels


def patch_fill(image: np.ndarray, missing: np.ndarray, patch: int = PATCH, iterations: int = ITERATIONS) -> np.ndarray:
    """Fill `missing` pixels of an (H, W, 3) float image from patches of its known part.

    Known pixels come back unchanged. Falls back to a smooth fill when the known part holds no
    whole patch (tiny or nearly all-missing images).
    """
    image = np.asarray(image, np.float32)
    missing = np.asarray(missing, bool)
    if not missing.any():
        return image.copy()
    smooth = telea(image, missing)
    found = _exemplar(image, missing, patch, iterations)
    if found is None:
        return smooth
    estimate, variance = found
    return _combine(image, missing, smooth, estimate, variance)


def _combine(
    image: np.ndarray, missing: np.ndarray, smooth: np.ndarray, estimate: np.ndarray, variance: np.ndarray
) -> np.ndarray:
    """Structure from the smooth fill, texture from the exemplar fill, damped where it is a guess."""
    # The low frequencies come from the smooth fill: a patch copied from elsewhere brings its own
    # brightness and colour, which costs more than a blur when it is wrong. Only the exemplar fill's
    # detail (what a blur of SIGMA pixels removes: stripes, edges, texture) is added on top.
    low = cv2.GaussianBlur(smooth, (0, 0), STRUCTURE_SIGMA)
    detail = estimate - cv2.GaussianBlur(estimate, (0, 0), STRUCTURE_SIGMA)
    # Where the overlapping patches disagree, the copied detail is a guess: shrink it (a Wiener-like
    # gain d² / (d² + votes' variance)); where they agree (a stripe, an edge continued) it stands.
    power = (detail * detail).mean(axis=2)
    gain = power / (power + SHRINK * variance + 1e-8)
    # Far inside a big hole the texture's placement is a guess too: damp it with the distance from
    # the hole's edge.
    distance = cv2.distanceTransform(missing.astype(np.uint8), cv2.DIST_L2, 3)
    gain *= np.exp(-distance / TEXTURE_REACH)
    out = image.copy()
    filled = low + gain[..., None] * detail
    out[missing] = filled[missing]
    return out


def _exemplar(image: np.ndarray, missing: np.ndarray, patch: int, iterations: int):
    """The PatchMatch completion: (estimate, the finest votes' variance), or None without whole patches."""
    levels = _pyramid(np.where(missing[..., None], 0.0, image).astype(np.float32), missing, patch)
    rng = np.random.default_rng(SEED)
    nnf = None
    estimate = None
    for depth in range(len(levels) - 1, -1, -1):
        img, hole = levels[depth]
        if not hole.any():
            continue
        level = _Level(img, hole, patch)
        if not level.valid.any():
            return None
        if estimate is None:
            level.image = push_pull_fill(img, (~hole).astype(np.float32))
            nnf_y, nnf_x = _random_valid(level, len(level.ty), rng)
            rounds = iterations + 1
        else:
            # Upsample the coarser matches: twice the position, plus the pixel's place in its 2×2 block.
            prev_level, prev_y, prev_x = nnf
            lookup = np.full((prev_level.h, prev_level.w, 2), -1, np.int64)
            lookup[prev_level.ty, prev_level.tx, 0] = prev_y
            lookup[prev_level.ty, prev_level.tx, 1] = prev_x
            cy = np.minimum(level.ty // 2, prev_level.h - 1)
            cx = np.minimum(level.tx // 2, prev_level.w - 1)
            nnf_y = 2 * lookup[cy, cx, 0] + (level.ty % 2)
            nnf_x = 2 * lookup[cy, cx, 1] + (level.tx % 2)
            bad = (lookup[cy, cx, 0] < 0) | ~level.is_valid(nnf_y, nnf_x)
            if bad.any():
                ry, rx = _random_valid(level, int(bad.sum()), rng)
                nnf_y[bad], nnf_x[bad] = ry, rx
            up = cv2.resize(estimate, (level.w, level.h), interpolation=cv2.INTER_LINEAR)
            level.image = np.where(hole[..., None], up, img).astype(np.float32)
            # Start this level from the upsampled matches' vote (sharper than the upsampled image).
            level.image = _vote(level, nnf_y, nnf_x, level.distance(level.planes(), nnf_y, nnf_x))
            rounds = iterations
        for _ in range(rounds):
            nnf_y, nnf_x, best = _search(level, nnf_y, nnf_x, rng)
            if depth == 0:
                level.image, variance = _vote(level, nnf_y, nnf_x, best, spread=True)
            else:
                level.image = _vote(level, nnf_y, nnf_x, best)
        nnf = (level, nnf_y, nnf_x)
        estimate = level.image
    return estimate, variance


def telea(pixels: np.ndarray, missing: np.ndarray, radius: int = 5) -> np.ndarray:
    """cv2.inpaint (Telea) of an RGB float image over `missing`, keeping 16-bit precision.

    Per channel in 16 bits: OpenCV's 8-bit path loses precision and its float path is not usable
    (it returns values far outside the input range). The 16 bits span 0–1, widened to the known
    pixels' range where they leave it (values outside 0–1 are legitimate in model space and must
    not be clipped).
    """
    mask = missing.astype(np.uint8)
    out = pixels.copy()
    known = pixels[~missing]
    low = min(0.0, float(known.min())) if known.size else 0.0
    high = max(1.0, float(known.max())) if known.size else 1.0
    span = high - low
    for c in range(3):
        channel = ((np.clip(pixels[..., c], low, high) - low) * (65535.0 / span) + 0.5).astype(np.uint16)
        filled = cv2.inpaint(channel, mask, radius, cv2.INPAINT_TELEA).astype(np.float32) * (span / 65535.0) + low
        out[..., c] = np.where(missing, filled, pixels[..., c])
    return out
