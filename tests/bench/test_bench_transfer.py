"""`voidlink bench transfer --quick --json`: the upload against a copy, the transport's own ceiling, and a
re-submit that sends nothing."""

from __future__ import annotations

import json
import math

from voidlink.bench.transfer import main


def test_quick_json_report(capsys):
    assert main(["--quick", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frames"] == 8 and report["frame_size"] == [1920, 1080] and report["bytes"] > 8 * 1_000_000
    for key in ("copy_seconds", "hash_seconds", "upload_seconds", "null_mb_per_s", "ratio_ceiling"):
        assert math.isfinite(report[key]) and report[key] > 0, (key, report[key])
    # The pipelined upload's seconds hold its hashing: the ratio is against them alone.
    assert math.isclose(report["transfer_ratio"], report["copy_seconds"] / report["upload_seconds"], rel_tol=1e-9)
    low, high = report["upload_of_ceiling_spread"]
    assert 0 < low <= report["upload_of_ceiling"] <= high
    assert report["sequential_of_ceiling"] > 0 and report["download_of_ceiling"] > 0
    assert report["upload_of_ceiling_met"] == (report["upload_of_ceiling"] >= report["upload_of_ceiling_target"])
    assert report["transfer_ratio_met"] == (report["transfer_ratio"] >= report["transfer_ratio_target"])
    assert report["resubmit_bytes"] == 0 and report["resubmit_bytes_met"]
    low, high = report["start_of_ceiling_spread"]
    assert 0 < low <= report["start_of_ceiling"] <= high and report["start_sequential_of_ceiling"] > 0
    assert report["start_of_ceiling_met"] == (report["start_of_ceiling"] >= report["upload_of_ceiling_target"])
    assert report["start_seconds"] > 0 and report["start_sequential_seconds"] > 0
    low, high = report["upload_of_store_ceiling_spread"]
    assert 0 < low <= report["upload_of_store_ceiling"] <= high and report["store_ceiling_mb_per_s"] > 0
    # The CPU both processes spent, and the best share of the ceiling that work allows on these cores.
    for side in ("upload", "download"):
        assert (
            report[f"{side}_cpu_seconds"] > 0
            and report[f"null{'_download' if side == 'download' else ''}_cpu_seconds"] > 0
        )
        assert 0 < report[f"{side}_of_ceiling_cores_bound"] <= 1
    assert report["cores"] >= 1
    assert report["upload_of_ceiling_cores_bound_met"] == (report["upload_of_ceiling_cores_bound"] >= 0.9)


def test_the_cores_bound_is_the_transport_seconds_over_the_work_spread_on_every_core():
    from voidlink.bench.transport import cores_bound

    # 1 s of transport; 4 CPU-s of work on 2 cores takes at least 2 s: at best half the ceiling.
    assert cores_bound([1.0], [4.0], 2) == 0.5
    assert cores_bound([1.0, 1.0, 1.0], [4.0, 8.0, 1.0], 2) == 0.5  # the median, each capped at 1
    assert cores_bound([1.0], [1.0], 4) == 1.0
    assert math.isnan(cores_bound([1.0], [float("nan")], 2))  # no /proc to read a process's CPU from
