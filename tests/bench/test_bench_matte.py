"""`voidlink bench matte --json --quick`: runs, and its report holds sane figures."""

from __future__ import annotations

import json

from voidlink.bench import matte

from voidlink.cli.bench import BENCHMARKS


def test_quick_json_report_has_sane_figures(capsys):
    assert matte.main(["--json", "--quick", "--size", "160x96", "--large-size", "320x180"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["quick"] is True
    assert set(report["iou_mean"]) == {"box", "outline"}
    for prompt in ("box", "outline"):
        assert 0.8 < report["iou_mean"][prompt] <= 1.0
        assert 0.0 <= report["iou_min"][prompt] <= report["iou_mean"][prompt]
    assert report["fps_160x96"] > 0 and report["fps_320x180"] > 0
    assert 0.0 <= report["iou_mean_320x180"] <= 1.0
    assert 0.5 < report["proposal_iou_mean"] <= 1.0
    shots = report["shots"]
    assert len(shots) == 2 * len(matte.QUICK_KINDS) + 1
    for shot in shots:
        assert len(shot["iou"]) == shot["frames"] and shot["seconds"] > 0
    assert report["proposal"]["notes"]


def test_the_command_lists_it():
    assert BENCHMARKS["matte"] == "voidlink.bench.matte"
