"""`voidlink bench load --json`: a real daemon, a few clients for a moment; every figure is in its report."""

from __future__ import annotations

import json

from voidlink.bench import load


def test_json_report_counts_every_job_and_how_soon_the_daemon_served(capsys):
    # Two clients for one second: the run is about the report's figures, not the daemon's speed.
    assert load.main(["--json", "--clients", "2", "--seconds", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["every_job_completed"] and report["failed"] == 0
    assert report["jobs_completed"] >= 2 and report["fewest_jobs_per_client"] >= 1
    assert 0 < report["serving_seconds"] < 60  # measured to SERVING, not to the first line it printed
    assert report["serving_target_seconds"] == load.SERVING_TARGET
    assert report["serving_met"] == (report["serving_seconds"] <= load.SERVING_TARGET)
    assert report["rss_after_warmup_mb"] > 0 and report["rss_peak_mb"] > 0
