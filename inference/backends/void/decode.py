"""Decoding VOID's latents in the reference's frame order, so output frame k is input frame k.

CogVideoX's causal VAE turns N latent frames into 1 + 4(N−1) frames: the first latent frame stands
for the clip's first frame alone, every later one for the next four. The reference (videox_fun's
`cogvideox_vae.py`, `_decode` and `tiled_decode` with `auto_split_process=False`) decodes that way:
the first latent frame alone with no upsampling in time, then the rest two at a time, carrying the
causal convolutions' cache from one chunk to the next; every later chunk is upsampled 4× in time,
including a last chunk of one frame.

diffusers' `AutoencoderKLCogVideoX.decode` only does this for odd latent counts. VOID always has an
even count (the clip is padded to 4k+1 frames with k odd, for CogVideoX 1.5's temporal patch of 2),
and for an even count diffusers upsamples every latent frame 4× in time: 4N frames, the first
latent frame stretched over four of them, so every output frame lands three frames late.

This module drives diffusers' decoder modules chunk by chunk instead of calling its `decode`. The
one behaviour diffusers' `CogVideoXUpsample3D` lacks is upsampling a one-frame chunk in time
(it treats a single frame as the clip's first), which the reference's "rest" mode does; that is
supplied here for the duration of the call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Optional

import torch
import torch.nn.functional as F
from diffusers.models.upsampling import CogVideoXUpsample3D


def decoded_length(latent_frames: int) -> int:
    """Frames the causal VAE gives for `latent_frames` latent frames, decoded in the reference's order."""
    return 1 + 4 * (latent_frames - 1) if latent_frames > 0 else 0


def chunks(latent_frames: int) -> list[tuple[int, int]]:
    """The reference's decode chunks: the first latent frame alone, then pairs (the last may be one)."""
    if latent_frames <= 0:
        return []
    return [(0, 1)] + [(start, min(start + 2, latent_frames)) for start in range(1, latent_frames, 2)]


@torch.no_grad()
def decode(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    """Decode (B, C, N, h, w) latents (already divided by the scaling factor) to (B, 3, 1+4(N−1), H, W).

    Tiled like the reference when the VAE has tiling on and the latents are larger than one tile.
    """
    _before_forward(vae)
    height, width = latents.shape[-2:]
    tiled = getattr(vae, "use_tiling", False) and (
        width > vae.tile_latent_min_width or height > vae.tile_latent_min_height
    )
    out = []
    for item in latents.split(1):  # one clip at a time, as the VAE's slicing does
        out.append(_decode_tiled(vae, item) if tiled else _decode_chunks(vae, item))
    return torch.cat(out, dim=0)


def _before_forward(vae: Any) -> None:
    # What diffusers' `@apply_forward_hook` does for `decode`: with model CPU offload the VAE's hook
    # moves it onto the GPU before it runs. The decoder is called directly here, so do the same.
    hook = getattr(vae, "_hf_hook", None)
    if hook is not None and hasattr(hook, "pre_forward"):
        hook.pre_forward(vae)


def _decode_chunks(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    cache: Optional[dict] = None
    frames = []
    for number, (start, end) in enumerate(chunks(latents.shape[2])):
        chunk = latents[:, :, start:end]
        if vae.post_quant_conv is not None:
            chunk = vae.post_quant_conv(chunk)
        with _time_upsampling(vae, enabled=number > 0):
            decoded, cache = vae.decoder(chunk, conv_cache=cache)
        frames.append(decoded)
    return torch.cat(frames, dim=2)


def _decode_tiled(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    """The reference's (and diffusers') spatial tiling, each tile decoded in the reference's frame order."""
    height, width = latents.shape[-2:]
    tile_h, tile_w = vae.tile_latent_min_height, vae.tile_latent_min_width
    step_h = int(tile_h * (1 - vae.tile_overlap_factor_height))
    step_w = int(tile_w * (1 - vae.tile_overlap_factor_width))
    blend_h = int(vae.tile_sample_min_height * vae.tile_overlap_factor_height)
    blend_w = int(vae.tile_sample_min_width * vae.tile_overlap_factor_width)
    limit_h = vae.tile_sample_min_height - blend_h
    limit_w = vae.tile_sample_min_width - blend_w
    rows = []
    for i in range(0, height, step_h):
        rows.append(
            [_decode_chunks(vae, latents[:, :, :, i : i + tile_h, j : j + tile_w]) for j in range(0, width, step_w)]
        )
    result_rows = []
    for i, row in enumerate(rows):
        result_row = []
        for j, tile in enumerate(row):
            if i > 0:
                tile = vae.blend_v(rows[i - 1][j], tile, blend_h)
            if j > 0:
                tile = vae.blend_h(row[j - 1], tile, blend_w)
            result_row.append(tile[:, :, :, :limit_h, :limit_w])
        result_rows.append(torch.cat(result_row, dim=4))
    return torch.cat(result_rows, dim=3)


def _upsamplers(vae: Any) -> Iterator[CogVideoXUpsample3D]:
    for module in vae.decoder.modules():
        if isinstance(module, CogVideoXUpsample3D) and module.compress_time:
            yield module


@contextmanager
def _time_upsampling(vae: Any, enabled: bool) -> Iterator[None]:
    """While on, the decoder's time-compressing upsamplers double every chunk in time and space."""
    if not enabled:
        yield
        return
    modules = list(_upsamplers(vae))
    saved = [module.__dict__.get("forward") for module in modules]
    for module in modules:
        module.forward = _TimeAndSpaceUpsample(module)
    try:
        yield
    finally:
        for module, forward in zip(modules, saved):
            if forward is None:
                del module.forward
            else:
                module.forward = forward


class _TimeAndSpaceUpsample:
    """The reference's "rest frame" upsampling: nearest ×2 in time, height and width, then the 2-D conv."""

    def __init__(self, module: CogVideoXUpsample3D) -> None:
        self.module = module

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(inputs, scale_factor=2.0)
        b, c, t, h, w = x.shape
        x = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        x = self.module.conv(x)
        return x.reshape(b, t, *x.shape[1:]).permute(0, 2, 1, 3, 4)
