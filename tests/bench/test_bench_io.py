"""`voidlink bench io --quick --json`: one JSON object with the ratios and peak memory figures."""

from __future__ import annotations

import json
import math

from voidlink.bench.io import main


def test_quick_json_report(capsys, monkeypatch):
    from dataclasses import replace

    from voidlink.bench import io

    # The quick run's shapes at a tenth of the area: the report's shape is what is tested here.
    monkeypatch.setattr(io, "QUICK", replace(io.QUICK, throughput=((640, 360, 4), (1280, 720, 1))))
    assert main(["--quick", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("read_ratio", "write_ratio", "rss_50_mb", "rss_200_mb"):
        value = report[key]
        assert isinstance(value, float) and math.isfinite(value) and value > 0, (key, value)
    assert math.isfinite(report["rss_growth"])
    for shot in report["shots"]:
        for op in ("read", "write"):
            for key in ("bare_fps", "ours_fps", "bare_mbps", "ours_mbps", "ratio"):
                assert math.isfinite(shot[op][key]) and shot[op][key] > 0, (shot["size"], op, key)
    assert report["read_ratio_spread"][0] <= report["read_ratio_spread"][1]
    assert isinstance(report["read_settled"], bool) and isinstance(report["write_settled"], bool)


def test_repetitions_go_on_until_the_ratio_settles_and_no_further_than_the_cap():
    from itertools import count

    from voidlink.bench.io import QUICK, settle

    steady = settle(lambda: 1.0, lambda: 1.25, QUICK, first=3)
    assert steady[2] and len(steady[0]) == 7  # the first two pairs added left the median where it was

    slower = count(1)  # ours takes longer each time: the ratio never holds still
    drifting = settle(lambda: 1.0, lambda: float(next(slower)), QUICK, first=3)
    assert not drifting[2] and len(drifting[0]) == QUICK.most
