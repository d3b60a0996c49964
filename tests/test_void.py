"""VOID backend: the reference's rules on edge values, and the whole pipeline on tiny random models (CPU)."""

from __future__ import annotations

import numpy as np
import pytest
from voidlink.inference.backends.void import helpers

# -- quadmask --------------------------------------------------------------------------------------


def test_quadmask_quantisation_edges():
    grey = np.array([0, 31, 32, 63, 95, 96, 127, 191, 192, 255], np.uint8)
    assert helpers.quantize_quadmask(grey).tolist() == [0, 0, 63, 63, 63, 127, 127, 127, 255, 255]
    # Float greys from a resize round like uint8 storage would.
    assert helpers.quantize_quadmask(np.array([31.4, 31.6, 191.4, 191.6])).tolist() == [0, 63, 127, 255]


def test_quadmask_inversion_and_trimask():
    condition = helpers.quadmask_to_condition(np.array([0, 63, 127, 255, 40, 200], np.uint8))
    np.testing.assert_allclose(condition, [1.0, 192 / 255, 128 / 255, 0.0, 192 / 255, 0.0], atol=1e-7)
    tri = helpers.trimask(condition)
    # Object and overlap both read as "remove"; affected is 127/255; keep is 0.
    np.testing.assert_allclose(tri, [1.0, 1.0, 127 / 255, 0.0, 1.0, 0.0], atol=1e-7)
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
        total[span[0]:span[1]] += weights
        covered[span[0]:span[1]] += 1
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
