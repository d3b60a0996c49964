"""VOID pass 2: Go-with-the-Flow's noise warp, its reduction to the latent grid, and the pass-2 job (CPU)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from voidlink.inference.backends.void import pass2


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def smooth_texture(height: int, width: int, seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    texture = rng.random((height, width, 3), dtype=np.float32)
    for _ in range(3):
        texture = (texture + np.roll(texture, 1, 0) + np.roll(texture, 1, 1)) / 3
    return texture


def swirl(height: int, width: int) -> torch.Tensor:
    """A rotation plus a zoom with fractional displacements everywhere (up to a few pixels)."""
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32), indexing="ij"
    )
    cx, cy = (width - 1) / 2, (height - 1) / 2
    dx = -0.02 * (ys - cy) + 0.015 * (xs - cx) + 0.37
    dy = 0.02 * (xs - cx) + 0.015 * (ys - cy) - 0.21
    return torch.stack([dx, dy])


def bilinear_warp(noise: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """The naive warp: each pixel samples the previous noise bilinearly against the flow."""
    _, height, width = noise.shape
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32), indexing="ij"
    )
    grid = torch.stack([(xs - flow[0]) / (width - 1) * 2 - 1, (ys - flow[1]) / (height - 1) * 2 - 1], dim=-1)
    return F.grid_sample(noise[None], grid[None], mode="bilinear", padding_mode="border", align_corners=True)[0]


def neighbour_correlation(noise: torch.Tensor) -> float:
    a, b = noise[:, :, 1:].flatten(), noise[:, :, :-1].flatten()
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


# -- the warp step ---------------------------------------------------------------------------------


def test_zero_flow_is_the_identity():
    noise = torch.randn((4, 40, 56), generator=seeded(1))
    weights = torch.ones(40, 56)
    out, out_weights = pass2.warp_noise(noise, weights, torch.zeros(2, 40, 56), seeded(2))
    assert torch.equal(out, noise)  # every particle stays on its own pixel, alone: its value exactly
    assert torch.allclose(out_weights, torch.ones(40, 56), atol=1e-4)
    # Through the whole chain: a still clip keeps one noise field in every frame, before and after pooling.
    flows = [np.zeros((8, 12, 2), np.float32)] * 6
    frames = pass2.noise_from_flows(flows, (2, 3), 16, seeded(3))
    assert frames.shape == (7, 16, 2, 3)
    for t in range(1, 7):
        assert torch.equal(frames[t], frames[0])


def test_an_integer_translation_moves_the_noise_by_exactly_that_shift():
    noise = torch.randn((16, 48, 64), generator=seeded(4))
    flow = torch.zeros(2, 48, 64)
    flow[0], flow[1] = 3.0, -2.0  # right 3, up 2
    out, _ = pass2.warp_noise(noise, torch.ones(48, 64), flow, seeded(5))
    # Pixel (y, x) went to (y − 2, x + 3), its value unchanged.
    assert torch.equal(out[:, 2:-2, 3:-3], noise[:, 4:, :-6])
    # Where particles left (the top rows, the right columns) a blank merged in with a negligible weight.
    assert (out[:, :2, 3:] - noise[:, 2:4, :-3]).abs().max() < 0.05
    assert (out[:, :-2, -3:] - noise[:, 2:, -6:-3]).abs().max() < 0.05
    # The revealed band (left 3 columns, bottom 2 rows) is fresh noise, unrelated to what was there.
    revealed = torch.cat([out[:, :, :3].flatten(), out[:, -2:, 3:].flatten()])
    before = torch.cat([noise[:, :, :3].flatten(), noise[:, -2:, 3:].flatten()])
    assert abs(float(torch.corrcoef(torch.stack([revealed, before]))[0, 1])) < 0.15
    assert 0.85 < float(revealed.std()) < 1.15


def test_a_latent_pixel_of_motion_per_frame_moves_the_latent_noise_by_one_pixel():
    # 4 px per frame at the flow's resolution (half the working size) is 8 frame px, one latent px.
    flows = [np.tile(np.array([4.0, 0.0], np.float32), (16, 24, 1))] * 8
    frames = pass2.noise_from_flows(flows, (4, 6), 16, seeded(6))
    assert frames.shape == (9, 16, 4, 6)
    for t in range(1, 5):
        # Column c of frame t is column c − t of frame 0 (the last column also merged blanks leaving).
        assert torch.equal(frames[t, :, :, t:5], frames[0, :, :, : 5 - t])
        assert not torch.equal(frames[t, :, :, :t], frames[0, :, :, :t])  # the revealed columns are new


def test_warped_noise_stays_unit_gaussian_where_a_bilinear_warp_does_not():
    flow = swirl(256, 384)
    noise = torch.randn((16, 256, 384), generator=seeded(7))
    weights = torch.ones(256, 384)
    naive = noise.clone()
    generator = seeded(8)
    for _ in range(8):
        noise, weights = pass2.warp_noise(noise, weights, flow, generator)
        naive = bilinear_warp(naive, flow)
    # 1.5 M samples: the mean and spread of a unit Gaussian to well within these tolerances.
    assert abs(float(noise.mean())) < 0.01
    assert abs(float(noise.std()) - 1.0) < 0.01
    assert abs(float((noise.abs() < 1).float().mean()) - 0.6827) < 0.005
    assert abs(neighbour_correlation(noise)) < 0.02  # still white: neighbours independent
    pooled = pass2.pool_noise(noise, 32)
    assert pooled.shape == (16, 8, 12) and abs(float(pooled.std()) - 1.0) < 0.1
    assert (weights > 0).all() and abs(float(weights.mean()) - 1.0) < 0.01
    # The same checks fail for the naive warp: interpolation shrinks the spread and correlates neighbours.
    assert float(naive.std()) < 0.9
    assert neighbour_correlation(naive) > 0.2


def test_pooling_scales_back_to_unit_variance():
    block = torch.ones(1, 64, 64)
    assert torch.equal(pass2.pool_noise(block, 32), torch.full((1, 2, 2), 32.0))  # mean × factor
    noise = torch.randn((16, 256, 256), generator=seeded(9))
    assert abs(float(pass2.pool_noise(noise, 32).std()) - 1.0) < 0.05


def test_flow_upsampling_scales_the_displacements():
    flow = np.zeros((8, 12, 2), np.float32)
    flow[..., 0], flow[..., 1] = 1.5, -0.25
    up = pass2.upsample_flow(flow, (64, 96))
    assert up.shape == (2, 64, 96)
    assert torch.allclose(up[0], torch.full((64, 96), 12.0)) and torch.allclose(up[1], torch.full((64, 96), -2.0))


# -- from a video to the initial latents -----------------------------------------------------------


def panning_clip(frames: int = 13, height: int = 96, width: int = 192, step: int = 8) -> np.ndarray:
    texture = smooth_texture(height, width + step * frames)
    start = step * frames
    return np.stack([texture[:, start - step * i : start - step * i + width] for i in range(frames)])


def test_warped_noise_is_the_flow_noise_of_every_fourth_frame():
    clip = panning_clip()
    shape = (1, 4, 16, 12, 24)
    noise, method = pass2.warped_noise(clip, shape, 4, seeded(10))
    assert method == pass2.DIS  # no torchvision RAFT weights here: OpenCV's DIS flow, and it says so
    assert noise.shape == shape and noise.dtype == torch.float32 and noise.device.type == "cpu"
    # The same steps by hand: frames at half size, flows between them, the warp, frames 0, 4, 8, 12.
    small = np.stack([cv2.resize(f, (96, 48), interpolation=cv2.INTER_AREA) for f in clip])
    flows, _ = pass2.frame_flows(small)
    assert len(flows) == 12 and flows[0].shape == (48, 96, 2)
    assert abs(float(np.median(flows[3][..., 0])) - 4.0) < 0.1  # the pan, 8 px a frame at full size
    every = pass2.noise_from_flows(flows, (12, 24), 16, pass2._device_generator(seeded(10), torch.device("cpu")))
    assert torch.equal(noise[0], every[::4])
    # The picture moved 32 px = 4 latent px between latent frames, and so did the noise.
    for k in range(1, 4):
        interior = (noise[0, k, :, 2:-2, 6:-2] - noise[0, k - 1, :, 2:-2, 2:-6]).abs()
        assert float((interior < 1e-4).float().mean()) > 0.9
    assert abs(float(noise.std()) - 1.0) < 0.1 and abs(float(noise.mean())) < 0.1


def test_a_still_clip_gives_the_same_noise_in_every_latent_frame():
    clip = np.stack([smooth_texture(64, 96)] * 9)
    noise, _ = pass2.warped_noise(clip, (1, 3, 16, 8, 12), 4, seeded(11))
    assert torch.equal(noise[0, 1], noise[0, 0]) and torch.equal(noise[0, 2], noise[0, 0])


def test_seed_determinism():
    clip = panning_clip(frames=5)
    shape = (1, 2, 16, 12, 24)
    a, _ = pass2.warped_noise(clip, shape, 4, seeded(42))
    b, _ = pass2.warped_noise(clip, shape, 4, seeded(42))
    c, _ = pass2.warped_noise(clip, shape, 4, seeded(43))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_frame_count_and_batch_must_fit_the_latents():
    clip = panning_clip(frames=8)
    with pytest.raises(ValueError, match=r"8 frames do not make 2 latent frames"):
        pass2.warped_noise(clip, (1, 2, 16, 12, 24), 4, seeded(0))
    with pytest.raises(ValueError, match="not a batch of 2"):
        pass2.warped_noise(clip[:5], (2, 2, 16, 12, 24), 4, seeded(0))


# -- in the pipeline and the job -------------------------------------------------------------------


def test_the_noise_has_the_shape_the_pipeline_takes():
    from support.tiny_void import TINY, tiny_clip, tiny_pipeline
    from voidlink.inference.backends.void import helpers

    pipe = tiny_pipeline()
    video, quadmask = tiny_clip(frames=9)
    shape = pipe.latent_shape(9, 32, 32, TINY["temporal_window_size"], TINY["max_frames"])
    padded = helpers.padded_length(9, TINY["temporal_window_size"], TINY["max_frames"])
    noise, _ = pass2.warped_noise(
        video[helpers.padding_indices(9, padded)], shape, pipe.vae_scale_factor_temporal, seeded(1)
    )
    assert tuple(noise.shape) == shape and noise.dtype == torch.float32
    embeds = torch.zeros(1, 8, pipe.transformer.config.text_embed_dim)
    out = pipe(
        video,
        quadmask,
        prompt_embeds=embeds,
        num_inference_steps=2,
        latents=noise,
        output_type="latent",
        use_trimask=False,
        **{k: v for k, v in TINY.items() if k != "max_sequence_length"},
    )
    assert out.latents.shape == shape and torch.isfinite(out.latents).all()


def test_the_pass_two_job_starts_from_the_warped_noise_of_its_pass_one_result(tmp_path, monkeypatch):
    from safetensors.torch import save_file
    from support.tiny_void import feed, request, shot, tiny_backend, tiny_transformer
    from voidlink.inference.backends.void import helpers
    from voidlink.inference.backends.void.pipeline import VoidPipeline

    save_file(tiny_transformer(48, seed=9).state_dict(), str(tmp_path / "void_pass2.safetensors"))
    backend = tiny_backend(weights_folder=tmp_path)
    images, masks = shot(9)
    calls: list[tuple[np.ndarray, dict]] = []
    outputs: list[np.ndarray] = []
    original = VoidPipeline.__call__

    def recording(self, video, quadmask, **kwargs):
        calls.append((np.array(video), kwargs))
        out = original(self, video, quadmask, **kwargs)
        outputs.append(out.frames)
        return out

    monkeypatch.setattr(VoidPipeline, "__call__", recording)
    req = request(9, passes=2, seed=7)
    results = list(backend.run(feed(images, masks), req))
    assert len(results) == 9 and all(np.isfinite(r.image).all() for r in results)
    assert len(calls) == 2
    settings = backend.settings
    order = helpers.padding_indices(9, helpers.padded_length(9, settings.temporal_window, settings.max_frames))
    expected, _ = pass2.warped_noise(outputs[0][order], calls[1][1]["latents"].shape, 4, seeded(7))
    assert torch.equal(calls[1][1]["latents"], expected)
    assert "Pass 2 warped its initial noise along OpenCV DIS optical flow of the pass-1 result." in req.notes
