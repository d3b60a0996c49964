"""VOID backend: the reference's rules on edge values, and the whole pipeline on tiny random models (CPU)."""

from __future__ import annotations

import numpy as np
import pytest
from support.tiny_void import TINY, tiny_clip, tiny_components, tiny_pipeline
from voidlink.inference.backends.void import helpers

# -- quadmask --------------------------------------------------------------------------------------


def test_quadmask_quantisation_edges():
    grey = np.array([0, 31, 32, 63, 95, 96, 127, 191, 192, 255], np.uint8)
    assert helpers.quantize_quadmask(grey).tolist() == [0, 0, 63, 63, 63, 127, 127, 127, 255, 255]
    # Float greys from an area resize are compared unrounded, as the reference does.
    floats = np.array([30.9, 31.0, 31.01, 95.0, 95.2, 191.0, 191.2, -3.0, 300.0])
    assert helpers.quantize_quadmask(floats).tolist() == [0, 0, 63, 63, 127, 127, 255, 0, 255]


def test_quadmask_inversion_and_trimask():
    condition = helpers.quadmask_to_condition(np.array([0, 63, 127, 255, 40, 200], np.uint8))
    np.testing.assert_allclose(condition, [1.0, 192 / 255, 128 / 255, 0.0, 192 / 255, 0.0], atol=1e-7)
    tri = helpers.trimask(condition)
    # Object and overlap both read as "remove"; affected is 127/255; keep is 0.
    np.testing.assert_allclose(tri, [1.0, 1.0, 127 / 255, 0.0, 1.0, 0.0], atol=1e-7)
    from voidlink.inference.backends.void.pipeline import condition_from_quadmask

    quad = np.array([0, 63, 127, 255, 40, 200], np.uint8)
    np.testing.assert_allclose(condition_from_quadmask(quad), tri, atol=1e-7)
    # The reference's pass 2 binarises at 0.5 instead: affected (128/255) is "remove" there.
    assert condition_from_quadmask(quad, use_trimask=False).tolist() == [1.0, 1.0, 1.0, 0.0, 1.0, 0.0]
    edges = helpers.trimask(np.array([0.2499, 0.25, 0.75, 0.7501], np.float32))
    np.testing.assert_allclose(edges, [0.0, 127 / 255, 127 / 255, 1.0], atol=1e-7)


# -- temporal padding ------------------------------------------------------------------------------


@pytest.mark.parametrize("length", range(1, 201))
def test_padded_length(length):
    target = helpers.padded_length(length)
    assert target % 4 == 1 and ((target - 1) // 4) % 2 == 1, target  # 4k+1, k odd
    assert 85 <= target <= 197
    if length <= 197:
        assert target >= length
        # The smallest valid length: the previous valid one (8 frames less) would not hold the clip.
        assert target == 85 or target - 8 < length
    else:
        assert target == 197
    indices = helpers.padding_indices(length, target)
    assert indices.shape == (target,)
    assert indices[: min(length, target)].tolist() == list(range(min(length, target)))
    assert indices.min() >= 0 and indices.max() < length


def test_padding_mirrors_like_the_reference():
    assert helpers.padding_indices(3, 8).tolist() == [0, 1, 2, 2, 1, 0, 0, 1]
    assert helpers.padding_indices(1, 5).tolist() == [0] * 5
    assert helpers.padded_length(86) == 93 and helpers.padded_length(197) == 197


# -- windows and segments --------------------------------------------------------------------------


@pytest.mark.parametrize("latent_frames", [2, 22, 24, 40, 50, 51, 100])
def test_window_weights_partition_of_unity(latent_frames):
    spans = helpers.window_spans(latent_frames, 22, 4)
    total = np.zeros(latent_frames, np.float32)
    covered = np.zeros(latent_frames, int)
    for span in spans:
        weights = helpers.window_weights(span, latent_frames, 4)
        assert weights.shape == (span[1] - span[0],)
        assert (weights > 0).all() and (weights <= 1).all()
        total[span[0] : span[1]] += weights
        covered[span[0] : span[1]] += 1
    assert spans[0][0] == 0 and spans[-1][1] == latent_frames
    assert (covered >= 1).all()
    # Ramps of adjacent windows are mirror images: the summed weight is 1 on every frame.
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    if latent_frames == 50:
        assert spans == [(0, 22), (18, 40), (36, 50)]
        np.testing.assert_allclose(helpers.window_weights((18, 40), 50, 4)[:4], [0.2, 0.4, 0.6, 0.8], atol=1e-6)


@pytest.mark.parametrize("length", [1, 85, 197, 198, 250, 400, 1000])
def test_segments_cover_long_shots(length):
    segments = helpers.segment_spans(length)
    assert segments[0].start == 0 and segments[-1].end == length
    for previous, segment in zip(segments, segments[1:]):
        assert segment.start < previous.end
        assert segment.blend_in == previous.end - segment.start >= 16
    assert all(segment.end - segment.start <= 197 for segment in segments)
    for segment in segments[1:]:
        weights = helpers.segment_weights(segment.blend_in)
        assert np.all(np.diff(weights) > 0) and 0 < weights[0] and weights[-1] < 1
        np.testing.assert_allclose(weights + weights[::-1], 1.0, atol=1e-6)


# -- the pipeline on tiny random models ------------------------------------------------------------

import torch  # noqa: E402  (the model stack is a test dependency)


def test_conditioning_shapes_and_noise():
    from voidlink.inference.backends.void.pipeline import condition_from_quadmask, prepare_inpaint_latents

    vae, _, _ = tiny_components()
    video, quadmask = tiny_clip(frames=5)
    video_t = torch.from_numpy(video).permute(3, 0, 1, 2)[None]
    mask_t = torch.from_numpy(condition_from_quadmask(quadmask))[None, None]
    plain = prepare_inpaint_latents(vae, video_t, mask_t)
    assert plain.mask_latents.shape == (1, 2, 16, 4, 4)
    assert plain.inpaint_latents.shape == (1, 2, 32, 4, 4)
    torch.testing.assert_close(plain.inpaint_latents[:, :, :16], plain.mask_latents)
    torch.testing.assert_close(plain.inpaint_latents[:, :, 16:], plain.video_latents)
    # The mask latents are the VAE's encoding of 1 − mask in 0–1, tiled to RGB.
    expected = vae.encode(1 - torch.tile(mask_t, (1, 3, 1, 1, 1))).latent_dist.mode() * vae.config.scaling_factor
    torch.testing.assert_close(plain.mask_latents, expected.permute(0, 2, 1, 3, 4))
    # Noise augmentation changes only the video latents, and an explicit draw reproduces a seeded one.
    noise = torch.randn(video_t.shape, generator=torch.Generator().manual_seed(5))
    noisy = prepare_inpaint_latents(vae, video_t, mask_t, add_noise=True, video_noise=noise)
    seeded = prepare_inpaint_latents(vae, video_t, mask_t, add_noise=True, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(noisy.mask_latents, plain.mask_latents)
    assert not torch.allclose(noisy.video_latents, plain.video_latents)
    torch.testing.assert_close(noisy.video_latents, seeded.video_latents)


def test_pipeline_shapes_windows_and_explicit_latents():
    pipe = tiny_pipeline()
    video, quadmask = tiny_clip(frames=9)
    embeds = torch.randn(1, 8, 16, generator=torch.Generator().manual_seed(0))
    shape = pipe.latent_shape(9, 32, 32, 5, 13)
    assert shape == (1, 4, 16, 4, 4)  # 9 frames pad to 13 (4k+1, k odd) → 4 latent frames
    calls = []
    latents = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    out = pipe(
        video,
        quadmask,
        prompt_embeds=embeds,
        num_inference_steps=2,
        latents=latents,
        callback=lambda *a: calls.append(a),
        **TINY,
    )
    assert out.frames.shape == (9, 32, 32, 3) and out.frames.dtype == np.float32
    assert 0.0 <= out.frames.min() and out.frames.max() <= 1.0
    assert out.latents.shape == shape
    # 4 latent frames, windows of 2 with an overlap of 1: three windows at each of the two steps.
    assert calls == [(s, 2, k, 3) for s in range(2) for k in range(3)]
    again = pipe(
        video,
        quadmask,
        prompt_embeds=embeds,
        num_inference_steps=2,
        latents=latents.clone(),
        output_type="latent",
        **TINY,
    )
    torch.testing.assert_close(again.latents, out.latents)
    with pytest.raises(ValueError, match="latents must have shape"):
        pipe(video, quadmask, prompt_embeds=embeds, num_inference_steps=1, latents=latents[:, :2], **TINY)
    with pytest.raises(ValueError, match="larger than the transformer's positional grid allows"):
        big = np.zeros((9, 144, 144, 3), np.float32)
        pipe(big, np.zeros((9, 144, 144), np.uint8), prompt_embeds=embeds, num_inference_steps=1, **TINY)
    with pytest.raises(ValueError, match="multiples of 16"):
        pipe(video[:, :24], quadmask[:, :24], prompt_embeds=embeds, **TINY)


def test_pipeline_seed_determinism_and_guidance_with_text_encoder():
    pipe = tiny_pipeline(with_text=True)
    video, quadmask = tiny_clip(frames=5)
    run = dict(prompt="an empty street", num_inference_steps=2, output_type="latent", **TINY)
    first = pipe(video, quadmask, generator=torch.Generator().manual_seed(7), **run).latents
    second = pipe(video, quadmask, generator=torch.Generator().manual_seed(7), **run).latents
    other = pipe(video, quadmask, generator=torch.Generator().manual_seed(8), **run).latents
    torch.testing.assert_close(first, second)
    assert not torch.allclose(first, other)
    guided = pipe(video, quadmask, generator=torch.Generator().manual_seed(7), guidance_scale=6.0, **run).latents
    assert guided.shape == first.shape and not torch.allclose(guided, first)
    # A prompt longer than T5 reads is truncated, with a note saying so.
    long = pipe(video, quadmask, generator=torch.Generator().manual_seed(7), **{**run, "prompt": "word " * 40})
    assert any("dropped" in note for note in long.notes)


def test_pipeline_cancel_between_steps():
    from voidlink.inference.backends import base

    pipe = tiny_pipeline()
    video, quadmask = tiny_clip(frames=9)
    steps = []

    def cancelled():
        return len(steps) >= 2

    with pytest.raises(base.Cancelled):
        pipe(
            video,
            quadmask,
            prompt_embeds=torch.zeros(1, 8, 16),
            num_inference_steps=5,
            cancelled=cancelled,
            callback=lambda *a: steps.append(a),
            **TINY,
        )
    assert len(steps) == 2  # stopped after the second window of the first step, not at the end
