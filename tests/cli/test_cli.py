"""The `voidlink` command as a user (or a pipeline script) runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.commands import voidlink
from support.daemons import wait_for
from support.shots import write_shot

from voidlink import __version__ as voidlink_version


@pytest.fixture
def shot(tmp_path, source_guard):
    files = write_shot(tmp_path / "src")
    source_guard(files.folder)
    return files


def test_version():
    out = json.loads(voidlink("version", "--json").stdout)
    assert out["protocol_version"] == 1 and out["version"]


def test_remove_detach_then_jobs_show_and_list(daemon, shot, tmp_path):
    out = tmp_path / "out" / "clean.%04d.exr"
    submitted = json.loads(
        voidlink(
            "remove", shot.plate, "--mask", shot.mask, "--affected", shot.affected, "--frames", "1002-1006",
            "-o", str(out), "--detach", "--json", "--address", daemon.address, "--no-start",
        ).stdout
    )
    assert set(submitted) >= {"id", "state"} and submitted["state"] in ("queued", "running")

    def state():
        shown = json.loads(voidlink("jobs", "show", submitted["id"], "--json", "--address", daemon.address).stdout)
        assert shown["state"] in ("queued", "running", "succeeded", "failed", "cancelled")
        return shown if shown["state"] in ("succeeded", "failed", "cancelled") else None

    shown = wait_for(state, timeout=60, interval=0.3)
    assert shown["state"] == "succeeded", shown
    assert shown["result"]["frames"] == {"first": 1002, "last": 1006}
    assert sorted(p.name for p in out.parent.glob("clean.*.exr")) == [f"clean.{f:04d}.exr" for f in range(1002, 1007)]
    made_by = shown["result"]["provenance"]
    assert made_by["backend"] == "classical" and made_by["version"] == voidlink_version
    assert made_by["quality"] == "balanced" and made_by["window_radius"] == "8"
    printed = voidlink("jobs", "show", submitted["id"], "--address", daemon.address).stdout
    assert "made by:" in printed and "window_radius" in printed and "result.output_pattern" in printed
    listed = json.loads(voidlink("jobs", "list", "--json", "--address", daemon.address).stdout)
    assert [j["id"] for j in listed["jobs"]] == [submitted["id"]]


def test_remove_waits_and_prints_one_json_object(daemon, shot, tmp_path):
    out = tmp_path / "out" / "clean.####.exr"
    result = voidlink(
        "remove", shot.plate.replace("####", "@"), "--mask", shot.mask, "-o", str(out), "--json",
        "--address", daemon.address, "--no-start",
    )
    report = json.loads(result.stdout)
    assert report["state"] == "succeeded"
    assert report["result"]["backend"] == "classical"
    assert any("physical" in note for note in report["result"]["notes"])


def test_bad_frames_and_missing_daemon_are_clear_errors(shot, tmp_path):
    bad = voidlink("remove", shot.plate, "--mask", shot.mask, "--frames", "1005-1001", "--no-start", check=False)
    assert bad.returncode == 2 and "--frames '1005-1001' is empty" in bad.stderr
    started = time.monotonic()
    gone = voidlink(
        "remove", shot.plate, "--mask", shot.mask, "--address", "127.0.0.1:9", "--no-start", check=False
    )
    assert gone.returncode == 2 and "no voidlink daemon answers at 127.0.0.1:9" in gone.stderr
    # A hang, not a slow start beside other work, is what this bound catches.
    assert time.monotonic() - started < 60


def test_serve_on_a_data_dir_it_cannot_use_says_why_without_a_traceback(tmp_path):
    file = tmp_path / "data"
    file.write_text("not a folder")
    for data_dir, why in ((file, "it is a file, not a folder"), (file / "sub", f"{file} is a file, not a folder")):
        result = voidlink("serve", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir), check=False, timeout=60)
        assert result.returncode == 2, result.stderr
        assert f"voidlink: error: cannot use the data dir {data_dir}: {why}" in result.stderr
        assert "Traceback" not in result.stderr + result.stdout


def test_doctor_reports_daemon_and_backends(daemon):
    report = json.loads(voidlink("doctor", "--json", "--address", daemon.address).stdout)
    assert report["daemon"]["running"] is True
    assert report["backends"]["classical"]["available"] is True
    assert report["backends"]["void"]["reason"]
    trackers = report["daemon"]["matte_trackers"]  # what the daemon (not this machine) tracks mattes with
    assert trackers["classical"]["available"] is True and {"sam2", "edgetam"} <= set(trackers)
    text = voidlink("doctor", "--address", daemon.address).stdout
    assert "daemon trackers:  classical" in text


def test_doctor_says_whether_the_data_dir_can_be_made(tmp_path, daemon):
    from voidlink.cli.doctor import _creatable

    assert _creatable(tmp_path / "not" / "yet" / "there")  # the daemon creates it with its parents
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert not _creatable(blocker / "data")  # a file where a folder must go
    report = json.loads(voidlink("doctor", "--json", "--address", daemon.address, "--data-dir", str(blocker)).stdout)
    assert report["data_dir"]["writable"] is False


def test_doctor_names_a_qt_binding_that_crashes_the_panel_and_a_missing_xcb_cursor():
    from voidlink.cli.doctor import XCB_CURSOR, qt_problems

    asked = []

    def missing(library):
        asked.append(library)
        return False

    bad = {"PySide6-Essentials": "6.12.0", "shiboken6": "6.12.0"}
    crash, cursor = qt_problems(bad, (3, 11), "linux", "", missing)
    assert crash.startswith("PySide6-Essentials 6.12.0 on Python 3.11 drops a reference to None")
    assert "none_dealloc" in crash and "pip install 'PySide6-Essentials>=6.5,!=6.12.0'" in crash
    assert cursor.startswith("libxcb-cursor.so.0 is missing") and "sudo apt install libxcb-cursor0" in cursor
    assert asked == [XCB_CURSOR]
    # The full PySide6 is named when that is what is installed.
    (crash,) = qt_problems({"PySide6": "6.12.0", **bad}, (3, 10), "linux", "xcb", lambda library: True)
    assert crash.startswith("PySide6 6.12.0 on Python 3.10") and "pip install 'PySide6>=6.5,!=6.12.0'" in crash
    good = {"PySide6-Essentials": "6.11.3", "shiboken6": "6.11.3"}
    assert qt_problems(good, (3, 11), "linux", "", lambda library: True) == []
    assert qt_problems(bad, (3, 12), "linux", "", lambda library: True) == []  # None is immortal from 3.12
    # No X11 plugin is loaded offscreen, on Wayland asked for by name, or off Linux; no Qt, nothing to load.
    for platform, qpa in (("linux", "offscreen"), ("linux", "wayland"), ("darwin", ""), ("win32", "")):
        assert qt_problems(good, (3, 11), platform, qpa, missing) == []
    assert qt_problems({}, (3, 11), "linux", "", missing) == []
    assert qt_problems({"PySide6-Essentials": "6.4.3"}, (3, 11), "linux", "", missing) == []  # Qt < 6.5 needs none
    assert asked == [XCB_CURSOR]


def test_the_panel_extra_excludes_the_qt_releases_doctor_names():
    import importlib.metadata

    from voidlink.installer.resolve import marker_holds

    from voidlink.cli.doctor import LEAKS_NONE

    lines = [r for r in importlib.metadata.requires("voidlink") if r.startswith("PySide6-Essentials")]
    for minor in (9, 10, 11, 12, 13):
        (line,) = [r for r in lines if marker_holds(r.partition(";")[2], f"3.{minor}")]
        excluded = [v for v in LEAKS_NONE if f"!={v}" in line.partition(";")[0]]
        assert excluded == (list(LEAKS_NONE) if minor < 12 else []), (minor, line)


def test_doctor_says_which_qt_binding_is_installed_and_what_is_wrong_with_it(tmp_path):
    import importlib.metadata

    report = json.loads(voidlink("doctor", "--json", "--address", "127.0.0.1:9").stdout)
    assert report["qt"]["versions"]["shiboken6"] == importlib.metadata.version("shiboken6")
    assert report["qt"]["problems"] == []  # the release this environment was installed with is a sound one
    # The release that crashes, as its metadata says (doctor reads metadata only: Qt itself is never loaded).
    fake = tmp_path / "site" / "shiboken6-6.12.0.dist-info"
    fake.mkdir(parents=True)
    (fake / "METADATA").write_text("Metadata-Version: 2.1\nName: shiboken6\nVersion: 6.12.0\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")])}
    text = subprocess.run(
        [sys.executable, "-m", "voidlink", "doctor", "--address", "127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert text.returncode == 0, text.stderr
    assert "Qt binding:       " in text.stdout and "shiboken6 6.12.0" in text.stdout
    warned = f"  - shiboken6 6.12.0 on Python {sys.version_info[0]}.{sys.version_info[1]} drops a reference to None"
    assert (warned in text.stdout) == (sys.version_info < (3, 12)), text.stdout


def test_stop_shuts_the_local_daemon_down(tmp_path):
    import socket

    from voidlink.bridge import Client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    client = Client(address)
    client.ensure_daemon(data_dir=tmp_path / "data", timeout=30)
    pid = client.info().pid
    report = json.loads(voidlink("stop", "--address", address, "--json").stdout)
    assert report["stopped"] is True and report["pid"] == pid
    assert not client.is_serving(timeout=0.5)
    wait_for(lambda: not _alive(pid), timeout=30)
    again = voidlink("stop", "--address", address, check=False)
    assert again.returncode == 2 and f"no voidlink daemon answers at {address}; nothing to stop" in again.stderr


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its detached parent) counts as stopped.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


def test_ensure_daemon_starts_a_detached_daemon(tmp_path):
    import socket

    from voidlink.bridge import Client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = Client(f"127.0.0.1:{port}")
    assert not client.is_serving(timeout=0.5)
    client.ensure_daemon(data_dir=tmp_path / "data", timeout=30)
    try:
        info = client.info()
        assert info.data_dir == str(tmp_path / "data")
    finally:
        os.kill(info.pid, signal.SIGTERM)
        wait_for(lambda: not client.is_serving(timeout=0.2), timeout=30)


def test_unix_socket_listen(daemon_factory, tmp_path, shot):
    sock = tmp_path / "voidlink.sock"
    daemon = daemon_factory(listen=f"unix:{sock}").start()
    assert daemon.address == f"unix:{sock}"
    result = daemon.client().remove(shot.plate, shot.mask, output=tmp_path / "o" / "c.####.exr")
    assert result.state == "succeeded"


def test_demo_writes_exrs_a_contact_sheet_and_prints_psnr(tmp_path):
    out = tmp_path / "demo"
    result = voidlink("demo", "--out", str(out), "--frames", "8", "--size", "160x96", "--address", "127.0.0.1:9")
    assert "PSNR in mask against the ground truth:" in result.stdout
    psnr = float(result.stdout.split("PSNR in mask against the ground truth:")[1].split("dB")[0])
    assert psnr > 20.0
    assert len(list((out / "result").glob("clean.*.exr"))) == 8
    sheet = Path(out / "contact_sheet.png")
    assert sheet.stat().st_size > 1000
