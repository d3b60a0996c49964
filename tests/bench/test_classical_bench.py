"""`voidlink bench classical`: the pairwise-homography baseline, and a shot's scores against the baselines."""

from __future__ import annotations

import numpy as np
from voidlink.bench import classical
from voidlink.inference.synthetic import make_frame
from voidlink.media.quadmask import KEEP


def _psnr(result: np.ndarray, clean: np.ndarray, mask: np.ndarray) -> float:
    error = float(np.mean((result[mask] - clean[mask]) ** 2))
    return 10.0 * np.log10(1.0 / max(error, 1e-12))


def test_homography_baseline_recovers_a_pan_and_misses_parallax():
    # One homography per pair is exact for a flat pan and wrong on layers moving at other depths:
    # the baseline is fair (it gets what its model can) and the bench's hard cases are hard for it.
    scores = {}
    for kind in ("pan_textured", "depth_layers"):
        shot = [make_frame(kind, 160, 96, t, frames=8) for t in range(8)]
        results = list(classical.homography_baseline(shot, radius=4))
        assert len(results) == 8
        psnr = []
        for frame, result in zip(shot, results):
            keep = frame.quadmask == KEEP
            assert np.array_equal(result[keep], frame.plate[keep])
            psnr.append(_psnr(result, frame.clean, ~keep))
        scores[kind] = float(np.mean(psnr))
    assert scores["pan_textured"] > 33.0
    assert scores["depth_layers"] < scores["pan_textured"] - 5.0


def test_a_shot_is_scored_against_every_baseline():
    row = classical._score_shot("shadow", 160, 96, 8, radius=4, quality="draft")
    for method in classical.METHODS:
        assert set(row[method]) == {"psnr", "ssim", "warp_error"}
        assert 0.0 < row[method]["ssim"] <= 1.0
    for method in classical.METHODS[1:]:
        expected = classical._capped(row["ours"]["psnr"]) - classical._capped(row[method]["psnr"])
        assert abs(row[f"psnr_gain_vs_{method}_db"] - expected) < 1e-9
    assert row["psnr_gain_vs_telea_db"] > 10.0  # far better than a spatial fill alone
