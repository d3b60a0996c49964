"""Pass 2 of VOID: refine the pass-1 result starting from noise warped along its optical flow.

The reference computes dense flow on the pass-1 video with torchvision's RAFT-large and warps
Gaussian noise along it so that the initial noise moves with the scene. Here the flow comes from
RAFT when torchvision and its RAFT weights are present, else from OpenCV's DIS flow (what the tests
use); the backend says which in the job notes. The noise is warped per latent frame by
nearest-neighbour backward sampling of the previous latent frame's noise along the flow
accumulated over the frames it covers; samples whose source falls outside the frame, or whose flow
disagrees forward/backward (occlusion), draw fresh noise. Nearest sampling copies values, so each
latent pixel stays exactly standard normal, as the sampler expects of its initial noise.

This is not the reference's warp: its pass-2 script runs Go-with-the-Flow's `make_warped_noise.py`
(RAFT flow and that project's density-preserving noise warper) on the pass-1 video, then samples
the result onto the latent grid (frames picked by index, bilinear resize). Both give noise that
moves with the scene; the values differ, so pass-2 results are not comparable number for number.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import cv2
import numpy as np
import torch

# Forward-backward flow error (pixels) above which a pixel is treated as occluded.
OCCLUSION_TOLERANCE = 1.5


def _raft() -> Optional[Any]:
    """torchvision's RAFT-large when both torchvision and its weights are already on disk (never downloads)."""
    try:
        from torchvision.models.optical_flow import Raft_Large_Weights, raft_large
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return None
    weights = Raft_Large_Weights.DEFAULT
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
    if not os.path.isfile(cached):
        return None
    try:
        model = raft_large(weights=weights).eval()
    except Exception:  # noqa: BLE001 - a damaged cache: fall back to OpenCV
        return None
    return model.to("cuda") if torch.cuda.is_available() else model


def _dis_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Flow from frame a to frame b, (H, W, 2) pixels, on grey 8-bit images."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    grey_a = cv2.cvtColor((np.clip(a, 0, 1) * 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)
    grey_b = cv2.cvtColor((np.clip(b, 0, 1) * 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)
    return dis.calc(grey_a, grey_b, None)


def _raft_flow(model: Any, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    device = next(model.parameters()).device

    def to(x: np.ndarray) -> torch.Tensor:
        # RAFT's own preprocessing: RGB in -1…1.
        pixels = torch.from_numpy(np.ascontiguousarray(np.clip(x, 0, 1))).permute(2, 0, 1)[None]
        return pixels.to(device=device, dtype=torch.float32) * 2 - 1

    with torch.no_grad():
        flow = model(to(a), to(b))[-1]
    return flow[0].permute(1, 2, 0).float().cpu().numpy()


def frame_flows(frames: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray], str]:
    """Backward (t → t−1) and forward (t−1 → t) flows of consecutive frames, and the method used."""
    model = _raft()
    compute = (lambda a, b: _raft_flow(model, a, b)) if model is not None else _dis_flow
    backward = [compute(frames[t], frames[t - 1]) for t in range(1, len(frames))]
    forward = [compute(frames[t - 1], frames[t]) for t in range(1, len(frames))]
    return backward, forward, ("RAFT-large" if model is not None else "OpenCV DIS")


def _compose(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Flow a → c from a → b (first) and b → c (second)."""
    h, w = first.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    map_x, map_y = grid_x + first[..., 0], grid_y + first[..., 1]
    return first + cv2.remap(second, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def warped_noise(
    frames: np.ndarray, shape: tuple[int, ...], temporal: int = 4, generator: Optional[torch.Generator] = None
) -> tuple[torch.Tensor, str]:
    """Initial latents (shape (1, F', C, h, w)) whose noise follows the motion of `frames` (F, H, W, 3).

    Latent frame 0 covers frame 0; latent frame k covers frames up to 4k (the causal VAE's grouping).
    """
    _, latent_frames, channels, height, width = shape
    count = len(frames)
    noise = torch.randn(shape, generator=generator, dtype=torch.float32)
    backward, forward, method = frame_flows(frames)
    scale_x = width / frames.shape[2]
    scale_y = height / frames.shape[1]
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    for k in range(1, latent_frames):
        t_now = min(k * temporal, count - 1)
        t_prev = min((k - 1) * temporal, count - 1)
        if t_now == t_prev:
            continue
        # Chains over the frames this latent frame covers: t_now → t_prev and t_prev → t_now.
        back = backward[t_now - 1]
        for t in range(t_now - 1, t_prev, -1):
            back = _compose(back, backward[t - 1])
        fwd = forward[t_prev]
        for t in range(t_prev + 1, t_now):
            fwd = _compose(fwd, forward[t])
        small = cv2.resize(back, (width, height), interpolation=cv2.INTER_AREA)
        small[..., 0] *= scale_x
        small[..., 1] *= scale_y
        src_x = np.rint(grid_x + small[..., 0]).astype(np.int64)
        src_y = np.rint(grid_y + small[..., 1]).astype(np.int64)
        inside = (src_x >= 0) & (src_x < width) & (src_y >= 0) & (src_y < height)
        # Occlusion: going back along `back`, then forward along `fwd`, should return to the start.
        h, w = back.shape[:2]
        full_x, full_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        returned = cv2.remap(
            fwd, full_x + back[..., 0], full_y + back[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        error = np.linalg.norm(back + returned, axis=2)
        occluded = (
            cv2.resize((error > OCCLUSION_TOLERANCE).astype(np.float32), (width, height), interpolation=cv2.INTER_AREA)
            > 0.5
        )
        inside &= ~occluded
        ys = np.clip(src_y, 0, height - 1)
        xs = np.clip(src_x, 0, width - 1)
        previous = noise[0, k - 1][:, torch.from_numpy(ys), torch.from_numpy(xs)]
        keep = torch.from_numpy(inside)[None].expand(channels, -1, -1)
        noise[0, k] = torch.where(keep, previous, noise[0, k])
    return noise, method
