"""`voidlink matte` as a user runs it, against a real `voidlink serve` with the classical tracker (no weights)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from support.commands import voidlink
from support.shots import frame_files, read_pixels, write_shot

from voidlink.cli import build_parser


@pytest.fixture
def shot(tmp_path, source_guard):
    files = write_shot(tmp_path / "src", width=192, height=128)  # a dark red square crossing a textured pan
    source_guard(files.folder)
    return files


def _square_centre(shot, frame: int) -> tuple[int, int]:
    """Where tests/support/shots.py puts the square's centre on `frame`."""
    size = max(6, shot.height // 5)
    frames = shot.last - shot.first + 1
    x0 = 8 + (frame - shot.first) * (shot.width - size - 16) // max(frames - 1, 1)
    return x0 + size // 2, shot.height // 3 + size // 2


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum()) / max(1, int((a | b).sum()))


def test_the_options_become_the_matte_spec():
    args = build_parser().parse_args(
        ["matte", "p.####.exr", "--point", "1001:420,300", "--negative", "1001:10,10", "--box", "1002:1,2,3,4"]
        + ["--text", "its shadow", "--tracker", "classical", "--frames", "1001-1040", "--half", "-o", "m.####.exr"]
    )
    assert (args.point, args.negative, args.box) == (["1001:420,300"], ["1001:10,10"], ["1002:1,2,3,4"])
    assert (args.text, args.tracker, args.frames, args.pixel_type) == ("its shadow", "classical", "1001-1040", "half")
    assert build_parser().parse_args(["matte", "p.####.exr"]).pixel_type == "uint8"


def test_matte_tracks_the_square_with_the_classical_tracker(daemon, shot, tmp_path):
    out = tmp_path / "out" / "square_matte.####.exr"
    y0 = shot.height // 3
    size = max(6, shot.height // 5)
    report = json.loads(
        voidlink(
            "matte", shot.plate, "--box", f"1001:6,{y0 - 2},{8 + size + 2},{y0 + size + 2}",
            "-o", str(out), "--json", "--address", daemon.address, "--no-start",
        ).stdout
    )  # fmt: skip
    assert report["state"] == "succeeded", report
    result = report["result"]
    assert result["backend"] == "classical" and result["frames"] == {"first": shot.first, "last": shot.last}
    assert result["provenance"]["tracker"].startswith("classical")
    truths = frame_files(shot.mask, shot.first, shot.last)
    for matte, truth in zip(frame_files(str(out), shot.first, shot.last), truths):
        tracked = read_pixels(str(matte))[..., 0] > 0.5
        assert _iou(tracked, read_pixels(str(truth))[..., 0] > 0.5) > 0.8, matte.name


def test_matte_with_an_affected_proposal_and_a_quadmask_prints_progress_and_findings(daemon, shot, tmp_path):
    out = tmp_path / "out" / "m.####.exr"
    quad = tmp_path / "out" / "q" / "q.####.png"
    done = voidlink(
        "matte", shot.plate, "--point", "1003:{},{}".format(*_square_centre(shot, 1003)), "--propose-affected",
        "--quadmask", str(quad), "--half", "-o", str(out), "--address", daemon.address, "--no-start",
    )  # fmt: skip
    assert f"succeeded: matte frames {shot.first}-{shot.last} in {out}" in done.stdout, done.stdout
    assert "frame" in done.stderr or "frame" in done.stdout  # progress as the frames come
    assert all(p.exists() for p in frame_files(str(out).replace("m.", "m_affected."), shot.first, shot.last))
    assert all(p.exists() for p in frame_files(str(quad), shot.first, shot.last))


def test_matte_detach_returns_the_job_id(daemon, shot, tmp_path):
    submitted = json.loads(
        voidlink(
            "matte", shot.plate, "--point", "1001:{},{}".format(*_square_centre(shot, 1001)), "--frames", "1001-1002",
            "-o", str(tmp_path / "m.####.exr"),
            "--detach", "--json", "--address", daemon.address, "--no-start",
        ).stdout
    )  # fmt: skip
    assert submitted["id"] and submitted["state"] in ("queued", "running", "succeeded")


def test_a_prompt_outside_the_plate_is_refused_in_the_users_words(daemon, shot, tmp_path):
    refused = voidlink(
        "matte", shot.plate, "--point", "1001:500,20", "-o", str(tmp_path / "m.####.exr"),
        "--address", daemon.address, "--no-start", check=False,
    )  # fmt: skip
    assert refused.returncode != 0 and "outside the plate" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
