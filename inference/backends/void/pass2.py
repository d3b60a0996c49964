"""Pass 2 of VOID: the initial noise for the refinement, warped along the pass-1 result's optical flow.

What the reference does (Netflix/void-model, `inference_with_pass1_warped_noise.py`, which runs its
`make_warped_noise.py`, which is Go-with-the-Flow's noise warper from Ryan Burgert's CommonSource
`noise_warp.py`; ComfyUI's native VOID support ports the same code):

1. the pass-1 video is resampled to 72 frames (nearest) and to 480×720 (scaled to cover, centre
   crop), then shrunk ×1/2 with area filtering (`FRAME = 2**-1`);
2. dense flow from each frame to the next with torchvision's RAFT-large on those half-size frames;
3. a 16-channel Gaussian noise field is kept at 8× the flow's resolution (`FLOW = 2**3`) and
   advected by each flow with the particle warp (`warp_xyωc`): pixels are scattered forward along
   the flow and merged with weighted, variance-preserving sums; pixels that nothing lands on pull
   the noise behind them; duplicated or blank values are "regaussianized" so every pixel stays a
   unit Gaussian and independent of its neighbours;
4. every frame's noise is area-pooled by 32 (= FRAME × FLOW × 8) and multiplied by 32 — the mean
   of 32×32 unit Gaussians times √(32·32) is again a unit Gaussian — giving 1/8 of the frame;
5. the pass-2 script picks latent frames by index (`linspace(0, 71, 22)`, floor) and resizes the
   60×90 noise bilinearly to the 48×84 latent grid; no mixing with fresh noise (the training-only
   `warped_noise_degradation`); the result is the pipeline's `latents`, scaled by the scheduler's
   `init_noise_sigma` (1).

Here steps 2–4 are the same algorithm on the working frames' own geometry: frames are shrunk to half
the working size (4 pixels per latent pixel), the noise is warped at 8× that and pooled by 32, so
the pooled noise is exactly the latent grid; latent frame k takes the noise of frame 4k. That is
how the reference's training script reduces pixel-space warped noise (`train_warped_noise.py`:
8×8 mean-pool ×8, `linspace(0, f-1, (f-1)//4+1)`), and within a frame of what its inference pick
gives for an 85-frame clip (frames 0, 4, 7, 12, 15, … after the 72-frame resampling). Flow is
RAFT-large when torchvision and its weights are on disk, else OpenCV's DIS.

Differences from the reference, on purpose: no 480×720 crop and stretch (the reference's noise
covers the centre 576 of the 672 columns and is stretched over all of them) and no bilinear resize
to the latent grid (which lowers the noise's standard deviation to about 0.66 at 384×672); the
noise is drawn from the job's seed on the compute device, where the reference draws it unseeded and
caches it per clip; copies are told apart by where they came from rather than by equal float
values (see `_regaussianize`). The xy sub-pixel offsets of the reference's state are left out:
with its default `xy_mode='none'` they are zero at every step.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Union

import cv2
import numpy as np
import torch
import torch.nn.functional as F

FRAME_SCALE = 0.5  # make_warped_noise.py FRAME: frames are shrunk by this before flow
FLOW_SCALE = 8  # make_warped_noise.py FLOW: the noise is warped at this multiple of the flow's size
LATENT_SCALE = 8  # one latent pixel per 8×8 frame pixels
POOL = round(FRAME_SCALE * FLOW_SCALE) * LATENT_SCALE  # make_warped_noise.py downscale_factor (32)
WEIGHT_EPSILON = 1e-5  # warp_xyωc: keeps every particle weight above zero
WEIGHT_DECAY = 0.9999  # warp_xyωc: weights are raised to this power, drifting back towards 1

RAFT = "RAFT-large"
DIS = "OpenCV DIS"


# -- optical flow ------------------------------------------------------------------------------------


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
        # The reference's RAFT wrapper: RGB in −1…1, the last of RAFT's refinements.
        pixels = torch.from_numpy(np.ascontiguousarray(np.clip(x, 0, 1))).permute(2, 0, 1)[None]
        return pixels.to(device=device, dtype=torch.float32) * 2 - 1

    with torch.no_grad():
        flow = model(to(a), to(b))[-1]
    return flow[0].permute(1, 2, 0).float().cpu().numpy()


def frame_flows(frames: np.ndarray) -> tuple[list[np.ndarray], str]:
    """Forward flows (frame t−1 → t, (H, W, 2) pixels) of consecutive frames, and the method used.

    As the reference, the flow of each frame to the next, which carries the noise forward.
    """
    model = _raft()
    if model is not None:
        try:
            return [_raft_flow(model, frames[t - 1], frames[t]) for t in range(1, len(frames))], RAFT
        except RuntimeError:
            pass  # frames too small for RAFT's correlation pyramid: OpenCV's flow still works
    return [_dis_flow(frames[t - 1], frames[t]) for t in range(1, len(frames))], DIS


# -- the noise warp ------------------------------------------------------------------------------------


def _regaussianize(
    noise: torch.Tensor,
    weights: torch.Tensor,
    groups: torch.Tensor,
    generator: Optional[torch.Generator],
    unseen_blanks: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """noise_warp.py `regaussianize`: make every group of copies of one value independent unit Gaussians again.

    noise: (C, N); weights: (N,); groups: (N,) which value each pixel holds a copy of, −1 for blank.
    A group of n (one particle and the copies pulled from it, or all the blank pixels) has each
    member divided by √n and given zero-sum fresh noise (a fresh draw minus the group's mean of it),
    so its values are independent unit Gaussians whose sum is still the original one. A group's
    weight is split evenly among its members. `unseen_blanks` are blank pixels the caller discards
    afterwards: they count in the blank group, and their share of its fresh draws is drawn as one
    sum (a Gaussian of variance `unseen_blanks`), which has the same distribution.

    The reference finds the groups as equal values of the first noise channel. That also groups
    unrelated pixels whose float32 values happen to be equal (with torch's CPU generator, 0.4% of
    pixels per step at 384×768 and 7% at the reference's 1920×2880), which then lose part of their
    value to fresh noise; grouping by where the value came from is the same grouping without them.
    """
    channels = noise.shape[0]
    slot = groups + 1  # blank is slot 0
    counts = torch.bincount(slot, minlength=int(slot.max()) + 1).to(noise.dtype)
    counts[0] += unseen_blanks
    per_pixel = counts[slot]
    # A pixel alone in its group keeps its value exactly (n/1 + f − f): draw only for shared ones.
    shared = torch.nonzero(per_pixel > 1).squeeze(1)
    shared_slot = slot[shared]
    foreign = torch.randn((channels, shared.shape[0]), generator=generator, device=noise.device, dtype=noise.dtype)
    group_sum = torch.zeros((channels, counts.shape[0]), device=noise.device, dtype=noise.dtype)
    group_sum.index_add_(1, shared_slot, foreign)
    if unseen_blanks:
        unseen = torch.randn((channels,), generator=generator, device=noise.device, dtype=noise.dtype)
        group_sum[:, 0] += unseen * unseen_blanks**0.5
    noise = noise.clone()
    noise[:, shared] = (
        noise[:, shared] / per_pixel[shared].sqrt() + foreign - group_sum[:, shared_slot] / per_pixel[shared]
    )
    return noise, weights / per_pixel


def warp_noise(
    noise: torch.Tensor, weights: torch.Tensor, flow: torch.Tensor, generator: Optional[torch.Generator] = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of Go-with-the-Flow's particle warp (noise_warp.py `warp_xyωc`, xy_mode 'none').

    noise: (C, H, W) unit Gaussian; weights: (H, W) > 0, each pixel's particle weight; flow:
    (2, H, W) (dx, dy) in pixels of this grid, from this frame to the next. Returns the next
    frame's noise and weights.

    Shrink: every pixel is a particle moved to round(position + flow); particles landing on one
    pixel merge as Σ wᵢ·nᵢ / √Σ wᵢ² (a unit Gaussian for independent unit nᵢ), their weight the sum.
    Particles leaving the frame are replaced by blank ones (value 0, weight 1) at their own pixel.
    Expand: pixels no particle reaches (holes) take the value at round(position − flow) (nearest),
    or a blank one outside the frame; the reference's other expand pixels are blanks that are
    discarded, so only their count is kept. Both are regaussianized together, so a value that is
    both moved and pulled, and the blanks, become independent unit Gaussians; the weights are then
    renormalised to mean 1 and drift towards 1.
    """
    channels, height, width = noise.shape
    pixels = height * width
    device, dtype = noise.device, noise.dtype
    ys, xs = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype), torch.arange(width, device=device, dtype=dtype), indexing="ij"
    )
    flat_noise = noise.reshape(channels, pixels)
    flat_weights = weights.reshape(pixels)
    own = torch.arange(pixels, device=device)
    zero = torch.zeros((), device=device, dtype=dtype)
    one = torch.ones((), device=device, dtype=dtype)

    # Shrink branch: each particle's target pixel; a particle leaving the frame becomes blank in place.
    dst_x, dst_y = torch.round(xs + flow[0]), torch.round(ys + flow[1])
    stays = ((dst_x >= 0) & (dst_x < width) & (dst_y >= 0) & (dst_y < height)).reshape(pixels)
    target = torch.where(stays, (dst_y * width + dst_x).long().reshape(pixels), own)
    shrink_noise = torch.where(stays, flat_noise, zero)
    shrink_weights = torch.where(stays, flat_weights, one)
    arrivals = torch.bincount(target, minlength=pixels)

    # Expand branch, at the holes only: nearest sample against the flow; outside the frame is blank.
    holes = torch.nonzero(arrivals == 0).squeeze(1)
    src_x = torch.round(xs.reshape(pixels)[holes] - flow[0].reshape(pixels)[holes])
    src_y = torch.round(ys.reshape(pixels)[holes] - flow[1].reshape(pixels)[holes])
    inside = (src_x >= 0) & (src_x < width) & (src_y >= 0) & (src_y < height)
    source = (src_y.clamp(0, height - 1) * width + src_x.clamp(0, width - 1)).long()
    hole_noise = torch.where(inside, flat_noise[:, source], zero)
    hole_weights = torch.where(inside, flat_weights[source], one)

    # Which value each pixel holds: its own particle, the one it pulled, or blank (−1).
    groups = torch.cat([torch.where(stays, own, -1), torch.where(inside, source, -1)])
    both_noise, both_weights = _regaussianize(
        torch.cat([shrink_noise, hole_noise], dim=1),
        torch.cat([shrink_weights, hole_weights]),
        groups,
        generator,
        unseen_blanks=pixels - holes.shape[0],
    )
    shrink_noise, hole_noise = both_noise[:, :pixels], both_noise[:, pixels:]
    shrink_weights, hole_weights = both_weights[:pixels], both_weights[pixels:]

    out_weights = torch.zeros(pixels, device=device, dtype=dtype).index_add_(0, target, shrink_weights)
    squared = torch.zeros(pixels, device=device, dtype=dtype).index_add_(0, target, shrink_weights**2)
    merged = torch.zeros_like(flat_noise).index_add_(1, target, shrink_noise * shrink_weights)
    # A lone particle's sum is its own value (w·n/√w² = n): kept exactly, not up to rounding.
    lone = torch.zeros_like(flat_noise).index_add_(1, target, shrink_noise)
    out_noise = torch.where(arrivals == 1, lone, merged / squared.sqrt().clamp_min(torch.finfo(dtype).tiny))
    out_noise[:, holes] = hole_noise
    out_weights[holes] = hole_weights
    out_weights = (out_weights / out_weights.mean() + WEIGHT_EPSILON) ** WEIGHT_DECAY
    return out_noise.reshape(channels, height, width), out_weights.reshape(height, width)


def pool_noise(noise: torch.Tensor, factor: int) -> torch.Tensor:
    """make_warped_noise.py `downscale_noise`: area-pool by `factor` and multiply by `factor`.

    The mean of factor² independent unit Gaussians has standard deviation 1/factor, so the product
    is a unit Gaussian again, one per factor×factor block.
    """
    return F.avg_pool2d(noise[None], factor)[0] * factor


def upsample_flow(flow: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """NoiseWarper.__call__: the (H, W, 2) flow resized bilinearly to `size` (h, w), in pixels of that grid.

    The reference scales dx by the height ratio and dy by the width ratio; the two are equal here
    (the noise grid is the flow's grid times FLOW_SCALE on both axes), so it is the same.
    """
    height, width = size
    field = torch.from_numpy(np.ascontiguousarray(flow.transpose(2, 0, 1), dtype=np.float32))
    up = F.interpolate(field[None], size=(height, width), mode="bilinear", align_corners=False)[0]
    up[0] *= width / flow.shape[1]
    up[1] *= height / flow.shape[0]
    return up


def noise_from_flows(
    flows: list[np.ndarray],
    latent_size: tuple[int, int],
    channels: int,
    generator: Optional[torch.Generator] = None,
    device: Union[str, torch.device] = "cpu",
) -> torch.Tensor:
    """make_warped_noise.py `get_noise_from_video` from given flows: (len(flows)+1, C, h, w) noise.

    flows: frame t−1 → t flows at FRAME_SCALE of the working size (4 pixels per latent pixel);
    latent_size: (h, w) of the latent grid. The noise is warped at POOL × the latent grid and each
    frame's noise is pooled back to it.
    """
    device = torch.device(device)
    height, width = latent_size[0] * POOL, latent_size[1] * POOL
    noise = torch.randn((channels, height, width), generator=generator, device=device, dtype=torch.float32)
    weights = torch.ones((height, width), device=device, dtype=torch.float32)
    out = [pool_noise(noise, POOL)]
    for flow in flows:
        noise, weights = warp_noise(noise, weights, upsample_flow(flow, (height, width)).to(device), generator)
        out.append(pool_noise(noise, POOL))
    return torch.stack(out)


def _device_generator(generator: Optional[torch.Generator], device: torch.device) -> torch.Generator:
    """A generator on the device the noise is drawn on, seeded from the caller's (CPU) generator."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.Generator(device=device).manual_seed(seed)


def warped_noise(
    frames: np.ndarray,
    shape: tuple[int, ...],
    temporal: int = 4,
    generator: Optional[torch.Generator] = None,
    device: Union[str, torch.device, None] = None,
) -> tuple[torch.Tensor, str]:
    """Initial latents (`shape` = (1, F', C, h, w), float32 on the CPU) whose noise follows the motion of `frames`.

    frames: (F, H, W, 3) float 0–1, the pass-1 result of the padded clip, F = temporal·(F'−1)+1.
    Latent frame k takes the warped noise of frame temporal·k. `generator` (CPU) seeds the draws;
    `device` is where the warp runs (the noise field is 16× the frame's pixels). Returns the noise
    and the flow method used (RAFT or DIS).
    """
    batch, latent_frames, channels, height, width = shape
    if batch != 1:
        raise ValueError(f"warped noise is made for one clip, not a batch of {batch}")
    count = len(frames)
    if count != temporal * (latent_frames - 1) + 1:
        raise ValueError(
            f"{count} frames do not make {latent_frames} latent frames ({temporal}·(F'−1)+1 frames are needed)"
        )
    device = torch.device(device) if device is not None else torch.device("cpu")
    # FRAME: frames shrunk with area filtering to 4 pixels per latent pixel (half the working size).
    small_size = (width * POOL // FLOW_SCALE, height * POOL // FLOW_SCALE)
    small = np.stack([cv2.resize(np.asarray(f, np.float32), small_size, interpolation=cv2.INTER_AREA) for f in frames])
    flows, method = frame_flows(small)
    with torch.no_grad():
        noise = noise_from_flows(flows, (height, width), channels, _device_generator(generator, device), device)
    # The latent frames: every temporal-th frame's noise (frame 0, 4, 8, … for the causal VAE).
    picked = noise[::temporal]
    return picked[None].float().cpu().contiguous(), method


__all__ = ["DIS", "RAFT", "frame_flows", "noise_from_flows", "pool_noise", "warp_noise", "warped_noise"]
