"""`voidlink bench io --quick --json`: one JSON object with the ratios and peak memory figures."""

from __future__ import annotations

import json
import math

from voidlink.bench.io import main


def test_quick_json_report(capsys):
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
