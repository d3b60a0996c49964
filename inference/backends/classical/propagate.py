"""Propagation: where each hole pixel lands in the other frames of the window, and the colour found there.

Two chains run each way from a frame (see `Propagation._propagate`): the camera chain, one
homography per pair of frames fitted directly between them, and the flow chain along the completed
flow. This module holds the part of the backend's stream that follows them; the stream (backend.py)
holds the frames, the pair motions and the key frames.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple, Optional

import cv2
import numpy as np
from voidlink.inference.backends import base
from voidlink.inference.backends.classical.flow import apply_homography, camera_model, push_pull_fill, regrid

# Weight of a hit at d frames: 1 / d ** DISTANCE_POWER (nearer frames have moved less since t).
DISTANCE_POWER = 1.0
# Colour sampling of the source frames (cubic was tried: sharper on zooms, ringing at hard edges).
SAMPLING = cv2.INTER_LINEAR
# Where the flow chain lands within this many pixels of the camera (homography) chain, the camera
# chain is taken: it is exact for background moving with the camera and does not drift over steps.
SNAP_TOLERANCE = 1.0
# Half-size of the window over which forward and backward colours are compared (see `_propagate`).
AGREE_WINDOW = 2
# The camera chain is kept wherever its forward and backward colours differ by less than this
# (summed over the channels, averaged over that window), even if the flow chain's agree better:
# along a lone edge (a post, a rail) a flow chain slid along or across it can agree with itself
# as well, and the camera chain is then the one that is right.
CAMERA_AGREES = 0.2
# Elsewhere, where both chains reach a pixel from both sides, the four hits (each chain forward and
# backward) are blended, each weighted by exp(-e / RING_SOFTNESS) · exp(-a / AGREE_SOFTNESS) / distance.
# e is the hit's colour error on the known ring around the hole (spread inward, counted from the best
# hit's): the mean of the chain's error there at the frames that first show the ring clean and at
# the frame the hit came from. a is its chain's forward/backward disagreement there (counted from the
# better chain's). A chain that lands wrong beside the hole likely lands wrong inside it too; one
# direction is often right where the two disagree (the other met a passing object or a nearer
# layer's edge), which choosing one chain with both its directions blended cannot take; and soft
# weights keep near ties steady.
RING_SOFTNESS = 0.02
AGREE_SOFTNESS = 0.1
# Fewer ring pixels than this seen clean do not judge a chain.
RING_SEEN = 16


class Hits(NamedTuple):
    """One chain's first clean hits one way, per pixel of the box."""

    colour: np.ndarray  # (h, w, 3) the colour found
    distance: np.ndarray  # (h, w) int32: frames away; 0 where nothing was found
    ring_error: np.ndarray  # (h, w) the chain's error on the ring at the hit's frame (NaN: not judged)


class Propagation:
    """Mixed into the backend's stream.

    Needs `frames`, `motions`, `direct`, `shape`, `fit_scale`, `flow_scale`, `radius`, `estimator` and
    `chain_pool` (a thread for one direction's chains; the stream never changes the window while a
    frame is propagated).
    """

    frames: dict
    motions: dict
    direct: dict
    shape: Optional[tuple[int, int]]
    fit_scale: float
    flow_scale: float
    radius: int
    request: base.BackendRequest
    chain_pool: ThreadPoolExecutor

    def _check_cancel(self) -> None:
        if self.request.cancelled():
            raise base.Cancelled()

    def _propagate(
        self,
        position: int,
        box: tuple[int, int, int, int],
        tracked: np.ndarray,
        record: Optional[int] = None,
        ring: Optional[np.ndarray] = None,
    ):
        """Colour each tracked pixel from the nearest frame each way that shows it free of the object.

        Two chains run each way: the flow chain (snapped onto the camera chain where they agree) and
        the camera (homography) chain alone. Where both chains reach a pixel from both directions,
        the camera chain is taken wherever its forward and backward colours agree within
        CAMERA_AGREES (over a small window). At the other pixels both reach that way, the four hits
        are blended by how well each matches the frame on `ring` (known pixels around the hole,
        tracked too) and how well its chain's directions agree (see RING_SOFTNESS): a flow chain
        misled at an edge or an occlusion boundary lands on different colours forward and backward,
        while on a layer the camera model does not explain (parallax) the camera chain does. Without
        `ring`, the chain whose directions agree better is taken there. Where they cannot be
        compared, the camera chain is taken if it got there. Hits are weighted by 1 / distance in
        frames. With `record`, also where the backward flow chain is `record` frames back (NaN where
        it did not get there).
        """
        x0, y0, x1, y1 = box
        gy, gx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        pixels = self.frames[position].pixels[y0:y1, x0:x1]
        own = None if ring is None else pixels[ring]
        self._check_cancel()
        # The two directions share nothing they write (each its own entries of `direct`): the
        # forward one runs on the chain thread, beside this one.
        forward = self.chain_pool.submit(self._chains, position, 1, gx, gy, tracked, None, ring, own)
        try:
            b_flow, b_cam, where = self._chains(position, -1, gx, gy, tracked, record, ring, own)
        finally:
            # Always waited for (nothing may run on once this returns); an error forward wins, as
            # when the forward chains ran first.
            f_flow, f_cam, _ = forward.result()

        def mix(a: Hits, b: Hits) -> tuple[np.ndarray, np.ndarray]:
            wa = np.where(a.distance > 0, 1.0 / np.maximum(a.distance, 1) ** DISTANCE_POWER, 0.0).astype(np.float32)
            wb = np.where(b.distance > 0, 1.0 / np.maximum(b.distance, 1) ** DISTANCE_POWER, 0.0).astype(np.float32)
            total = wa + wb
            have = total > 0
            colour = np.zeros(a.colour.shape, np.float32)
            colour[have] = (wa[have, None] * a.colour[have] + wb[have, None] * b.colour[have]) / total[have, None]
            return colour, have

        colour, have = mix(f_flow, b_flow)
        cam_colour, cam_have = mix(f_cam, b_cam)
        both = (f_flow.distance > 0) & (b_flow.distance > 0) & (f_cam.distance > 0) & (b_cam.distance > 0)
        camera = np.zeros_like(both)
        blend = None
        if both.any():
            window = (2 * AGREE_WINDOW + 1, 2 * AGREE_WINDOW + 1)
            d_flow = cv2.blur(np.abs(f_flow.colour - b_flow.colour).sum(axis=2) * both, window)
            d_cam = cv2.blur(np.abs(f_cam.colour - b_cam.colour).sum(axis=2) * both, window)
            settled = both & (d_cam < CAMERA_AGREES)
            camera = both & ((d_cam < d_flow) | settled)
            if ring is not None:
                # Where neither chain has settled it, the four hits are blended (see RING_SOFTNESS).
                counted = np.maximum(cv2.blur(both.astype(np.float32), window), 1e-6)
                agree_flow, agree_cam = d_flow / counted, d_cam / counted
                best = np.minimum(agree_flow, agree_cam)
                agreement = [np.exp(-(a - best) / AGREE_SOFTNESS)
                             for a in (agree_flow, agree_flow, agree_cam, agree_cam)]
                blended, made = _ring_blend([f_flow, b_flow, f_cam, b_cam], agreement, pixels, ring)
                blend = (blended, made & both & ~settled)
        # Where the directions cannot be compared, the camera chain (if it got there) is the safer
        # guess: it has few parameters and does not follow the flow's guesses along lone edges.
        camera |= ~both & cam_have
        colour[camera] = cam_colour[camera]
        if blend is not None:
            colour[blend[1]] = blend[0][blend[1]]
        return colour, have | cam_have, where

    def _chains(
        self,
        position: int,
        direction: int,
        gx: np.ndarray,
        gy: np.ndarray,
        tracked: np.ndarray,
        record: Optional[int] = None,
        ring: Optional[np.ndarray] = None,
        own: Optional[np.ndarray] = None,
    ) -> tuple[Hits, Hits, Optional[tuple[np.ndarray, np.ndarray]]]:
        """The flow chain's and the camera chain's first clean hits one way, and where the flow chain is
        after `record` steps (None unless asked; NaN if it stopped).

        With `ring` (pixels of the box outside the hole, in `tracked`) and `own` (this frame's colours
        there), each hit also gets its chain's colour error on the ring at the frame it came from,
        spread inward from the ring pixels that frame shows clean (too few of them: NaN).
        """
        height, width = self.shape
        px, py = gx.copy(), gy.copy()
        guess = chosen = np.eye(3)
        out = [np.zeros(gx.shape + (3,), np.float32) for _ in range(2)]
        distance = [np.zeros(gx.shape, np.int32) for _ in range(2)]
        ring_error = [np.full(gx.shape, np.nan, np.float32) for _ in range(2)]
        alive = [tracked.copy(), tracked.copy()]
        where = None
        if record is not None:
            where = (np.full(gx.shape, np.nan, np.float32), np.full(gx.shape, np.nan, np.float32))
        reach = self._reach(position, direction)
        for step in range(1, max(reach, record or 0) + 1):
            target = position + direction * step
            if target not in self.frames:
                break
            if direction > 0:
                flow = self.motions[target - 1].forward
            else:
                flow = self.motions[target].backward
            fx, fy = self._sample_flow(flow, px, py)
            px += fx
            py += fy
            # The camera chain: exact for background that moves with the camera. Each frame's model
            # is fitted directly between the pair (starting from the chained neighbours' models), so
            # errors do not pile up along the chain.
            step_model = self.motions[target - 1].model if direction > 0 else self.motions[target].inverse
            guess = step_model @ guess
            chosen = self._direct(position, target, guess, None if step == 1 else step_model @ chosen)
            hx, hy = apply_homography(self._full_model(chosen), gx, gy)
            agree = np.hypot(px - hx, py - hy) <= SNAP_TOLERANCE
            px[agree] = hx[agree]
            py[agree] = hy[agree]
            if step == record:
                where = (px.copy(), py.copy())
            if step > reach:
                continue
            source = self.frames[target]
            for k, (qx, qy) in enumerate(((px, py), (hx, hy))):
                alive[k] &= (qx >= 0) & (qx <= width - 1) & (qy >= 0) & (qy <= height - 1)
                if not alive[k].any():
                    continue
                usable = (
                    cv2.remap(source.source, qx, qy, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
                    > 0
                )
                hit = alive[k] & usable
                if hit.any():
                    sample = cv2.remap(source.pixels, qx, qy, SAMPLING, borderMode=cv2.BORDER_REPLICATE)
                    out[k][hit] = sample[hit]
                    distance[k][hit] = step
                    if own is not None:
                        seen = usable & ring & (qx >= 0) & (qx <= width - 1) & (qy >= 0) & (qy <= height - 1)
                        if seen.sum() >= RING_SEEN:
                            error = np.zeros(gx.shape, np.float32)
                            error[ring] = np.abs(sample[ring] - own).sum(axis=1)
                            weight = seen.astype(np.float32)
                            ring_error[k][hit] = push_pull_fill(error * weight, weight)[hit]
                    alive[k] &= ~hit
            if not (alive[0].any() or alive[1].any()) and (record is None or step >= record):
                break
        return Hits(out[0], distance[0], ring_error[0]), Hits(out[1], distance[1], ring_error[1]), where

    def _direct(self, a: int, b: int, guess: np.ndarray, prior: Optional[np.ndarray]) -> np.ndarray:
        """Homography frame a → frame b (fit grid) for the camera chain from a (see `camera_model`).

        `guess`: the neighbours' pair models chained; `prior`: the model chosen for the frame before
        b, followed by the last pair step (None for neighbours, whose guess is their pair's fit).
        """
        model = self.direct.get((a, b))
        if model is None:
            model = camera_model(self.frames[a].analysis, self.frames[b].analysis, guess, prior,
                                 self.estimator.method)
            self.direct[(a, b)] = model
        return model

    def _reach(self, position: int, direction: int) -> int:
        """How many frames the chains go in `direction`: radius, plus what the other side lacks.

        Frames near the shot's ends have neighbours on one side only. With a window of radius frames
        each way they would see half as many frames as the others, and a region the object or its
        shadow covers for longer than that (the far edge of a shadow trailing the object) would stay
        unrevealed: kept as it is (affected) or spatially filled (object). The window keeps its size
        instead and slides inward, so these frames look up to 2 × radius frames to the one side.
        """
        other = position - min(self.frames) if direction > 0 else max(self.frames) - position
        return 2 * self.radius - min(other, self.radius)

    def _full_model(self, model: np.ndarray) -> np.ndarray:
        """A fit-grid homography expressed in full-resolution pixels."""
        return regrid(model, self.fit_scale)

    def _sample_flow(self, flow: np.ndarray, px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flow (full-resolution pixels) at full-resolution positions, from the flow-resolution field."""
        s = self.flow_scale
        if s == 1.0:
            value = cv2.remap(flow, px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            return value[..., 0], value[..., 1]
        value = cv2.remap(
            flow, (px + 0.5) * s - 0.5, (py + 0.5) * s - 0.5, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        return value[..., 0] / s, value[..., 1] / s


def _ring_blend(hits: list[Hits], agreement: list[np.ndarray], pixels: np.ndarray,
                ring: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The hits blended by their colour error on the ring and their chain's agreement (see RING_SOFTNESS).

    agreement: per hit, its chain's weight from how well that chain's directions agree; pixels: the
    frame over the box; ring: known pixels around the hole that the chains followed too. Returns the
    blend and where it was made (nowhere when a hit reached too little of the ring to be judged).
    """
    errors = []
    for hit in hits:
        seen = (ring & (hit.distance > 0)).astype(np.float32)
        if seen.sum() < RING_SEEN:
            return np.zeros_like(pixels), np.zeros(ring.shape, bool)
        nearest = push_pull_fill(np.abs(hit.colour - pixels).sum(axis=2) * seen, seen)
        judged = np.isfinite(hit.ring_error)
        errors.append(np.where(judged, 0.5 * (nearest + np.where(judged, hit.ring_error, 0.0)), nearest))
    best = np.min(errors, axis=0)
    total = np.zeros(ring.shape, np.float32)
    blended = np.zeros_like(pixels)
    for hit, error, agrees in zip(hits, errors, agreement):
        weight = np.exp(-(error - best) / RING_SOFTNESS) / np.maximum(hit.distance, 1)
        weight = np.where(hit.distance > 0, weight * agrees, 0.0).astype(np.float32)
        blended += weight[..., None] * hit.colour
        total += weight
    made = total > 0
    blended[made] /= total[made, None]
    return blended, made

