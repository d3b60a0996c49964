"""Pure helpers of the VOID backend: quadmask handling, temporal padding, window and segment plans.

Everything here follows the reference inference of VOID (Netflix/void-model) where it defines the
behaviour, and is written so that each rule can be tested on its own edge values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Reference defaults (config/quadmask_cogvideox.py of the reference).
TEMPORAL_WINDOW = 85  # frames per denoising window (22 latent frames)
MULTIDIFFUSION_STRIDE = 16  # frames of overlap between windows (4 latent frames)
MAX_FRAMES = 197  # longest clip the reference denoises at once
VAE_TEMPORAL = 4  # frames per latent frame (after the first)


# -- quadmask ----------------------------------------------------------------------------------------


def quantize_quadmask(mask: np.ndarray) -> np.ndarray:
    """Snap any grey to the four quadmask values, with the reference's thresholds.

    ≤31 → 0 (object), >31–95 → 63 (overlap), >95–191 → 127 (affected), >191 → 255 (keep). The
    reference applies them to the float output of its area resize, unrounded (31.4 is already
    overlap), and so does this: resampled edges land where they land there.
    """
    values = np.asarray(mask)
    if values.dtype.kind not in "fiu":
        values = values.astype(np.float32)
    out = np.full(values.shape, 255, np.uint8)
    out[values <= 191] = 127
    out[values <= 95] = 63
    out[values <= 31] = 0
    return out


def quadmask_to_condition(quadmask: np.ndarray) -> np.ndarray:
    """The mask the reference hands its pipeline: quantised, inverted and scaled to 0–1.

    Object 1.0, overlap 192/255 (0.753), affected 128/255 (0.502), keep 0.0.
    """
    return (255.0 - quantize_quadmask(quadmask).astype(np.float32)) / 255.0


def trimask(condition: np.ndarray) -> np.ndarray:
    """The pipeline's re-quantisation (use_trimask=True): >0.75 → 1, 0.25–0.75 → 127/255, <0.25 → 0.

    Object and overlap both become 1.0 here: the model is trained on three levels.
    """
    values = np.asarray(condition, dtype=np.float32)
    out = np.where(values > 0.75, np.float32(1.0), values)
    out = np.where((out <= 0.75) & (out >= 0.25), np.float32(127.0 / 255.0), out)
    out = np.where(out < 0.25, np.float32(0.0), out)
    return out.astype(np.float32)


# -- temporal padding ----------------------------------------------------------------------------------


def padded_length(length: int, min_length: int = TEMPORAL_WINDOW, max_length: int = MAX_FRAMES) -> int:
    """Frames the reference denoises for a clip of `length` frames.

    The 4k+1 form the causal VAE needs, with k odd so the latent frame count (k+1) is a multiple of
    CogVideoX 1.5's temporal patch of 2; at most `max_length`, at least `min_length`.
    """
    if length < 1:
        raise ValueError(f"a clip needs at least one frame, got {length}")
    target = (length // VAE_TEMPORAL) * VAE_TEMPORAL + 1
    if target < length:
        target += VAE_TEMPORAL
    if (target // VAE_TEMPORAL) % 2 == 0:
        target += VAE_TEMPORAL
    return max(min_length, min(target, max_length))


def padding_indices(length: int, target: int) -> np.ndarray:
    """Source frame of each of `target` frames: the clip, then time-mirrored copies of it.

    Mirrors the reference exactly: it appends the flipped clip (edge frame repeated) and truncates,
    again and again, so [0, 1, 2] padded to 8 reads 0 1 2 2 1 0 0 1. Longer clips are cut to `target`.
    """
    indices = np.arange(length)[:target]
    while indices.size < target:
        indices = np.concatenate([indices, indices[::-1]])[:target]
    return indices


def latent_length(frames: int) -> int:
    return (frames - 1) // VAE_TEMPORAL + 1


# -- temporal multidiffusion ---------------------------------------------------------------------------


def window_spans(latent_frames: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """The latent-frame windows of one denoising step, as the reference walks them.

    Each window starts `overlap` frames before the previous one ends; the last one is cut at the
    clip's end (so it may be shorter than `window`).
    """
    if latent_frames <= window:
        return [(0, latent_frames)]
    if window <= overlap:
        raise ValueError(f"the window ({window} latent frames) must be longer than its overlap ({overlap})")
    spans = []
    start = 0
    while True:
        end = min(start + window, latent_frames)
        spans.append((start, end))
        if end >= latent_frames:
            return spans
        start = end - overlap


def window_weights(span: tuple[int, int], latent_frames: int, overlap: int) -> np.ndarray:
    """Blend weights of one window: linear ramps over the overlap on the inner sides, 1 elsewhere.

    The ramp is linspace(0, 1, overlap + 2)[1:-1] (never exactly 0 or 1), rising on the head of
    every window but the first and falling on the tail of every window but the last.
    """
    start, end = span
    weights = np.ones(end - start, np.float32)
    if overlap > 0:
        ramp = np.linspace(0.0, 1.0, overlap + 2, dtype=np.float32)[1:-1]
        if start > 0:
            weights[:overlap] = ramp
        if end < latent_frames:
            weights[-overlap:] = ramp[::-1]
    return weights


# -- long shots ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """A stretch of a long shot denoised on its own; `blend_in` frames at its head overlap the previous one."""

    start: int
    end: int
    blend_in: int


def segment_spans(length: int, max_frames: int = MAX_FRAMES, overlap: int = MULTIDIFFUSION_STRIDE) -> list[Segment]:
    """Split a shot into overlapping segments of at most `max_frames` frames.

    Segments are balanced (equal lengths up to one frame) so the last one is never a short remnant
    that would be padded with mirrored frames far beyond the shot's content.
    """
    if length <= max_frames:
        return [Segment(0, length, 0)]
    if overlap >= max_frames:
        raise ValueError(f"the segment overlap ({overlap}) must be shorter than a segment ({max_frames})")
    step = max_frames - overlap
    count = -(-(length - overlap) // step)
    # Every segment holds `size` frames (the last maybe fewer); starts are spread evenly.
    size = -(-(length + (count - 1) * overlap) // count)
    segments = []
    for i in range(count):
        start = min(i * (size - overlap), length - size) if i else 0
        end = min(start + size, length)
        blend = 0 if i == 0 else segments[-1].end - start
        segments.append(Segment(start, end, blend))
    return segments


def segment_weights(blend: int) -> np.ndarray:
    """Weights of the incoming segment over `blend` overlapping frames (the outgoing one gets 1 − w)."""
    return np.linspace(0.0, 1.0, blend + 2, dtype=np.float32)[1:-1]
