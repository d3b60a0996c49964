"""The Resolve adapter against a fake Resolve that follows Blackmagic's scripting API, with real media on disk."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support" / "fakes"))

import resolve as fake_resolve  # noqa: E402  (tests/fakes/resolve.py)
from support.shots import read_pixels, write_exr, write_shot  # noqa: E402
from voidlink.hosts.resolve import SCRIPT_DIR, SCRIPT_NAME, adapter  # noqa: E402
from voidlink.hosts.resolve.adapter import ResolveError  # noqa: E402

RECORD = 86400 + 48  # two seconds into a 01:00:00:00 timeline


def _timeline(rate: float = 24.0, tracks: int = 1):
    app = fake_resolve.Resolve()
    project = app.fake_project
    timeline = project.fake_timeline("Edit v3", rate=rate, video_tracks=tracks)
    return app, project, timeline


def _sequence_clip(tmp_path, left_offset=2, duration=5, **kwargs):
    shot = write_shot(tmp_path / "plates", frames=10, first=1001)
    app, project, timeline = _timeline(**kwargs)
    media = project.fake_sequence_media(str(shot.folder), "plate.", ".exr", shot.first, shot.last)
    item = project.fake_clip(timeline, media, 1, RECORD, duration, left_offset=left_offset, name="sh010_plate")
    timeline.fake_playhead = RECORD + 1
    return app, project, timeline, item, shot


def _write_result(pattern: str, first: int, last: int) -> None:
    Path(pattern).parent.mkdir(parents=True, exist_ok=True)
    for frame in range(first, last + 1):
        write_exr(Path(pattern.replace("####", f"{frame:04d}")), np.full((8, 8, 3), 0.25, np.float32))


def test_sequence_clip_maps_source_range_and_record_position(tmp_path):
    app, _, _, _, shot = _sequence_clip(tmp_path, left_offset=2, duration=5)
    clip = adapter.describe_item(app)
    assert clip.kind == "sequence"
    assert clip.media_path == str(shot.folder / "plate.####.exr")
    assert (clip.first, clip.last) == (1003, 1007)  # left offset 2 into 1001-1010, 5 frames
    assert (clip.record_frame, clip.duration, clip.track_index, clip.rate) == (RECORD, 5, 1, 24.0)
    form = clip.form()
    assert form["use_roto"] and form["first"] == 1003 and form["last"] == 1007
    assert form["output"].endswith("void/sh010_plate_1003-1007_void.####.exr")
    assert form["labels"]["record_frame"] == str(RECORD)


def test_result_lands_on_the_track_above_at_the_same_record_frame(tmp_path):
    app, project, timeline, original, _ = _sequence_clip(tmp_path, tracks=2)
    clip = adapter.describe_item(app)
    output = str(tmp_path / "out" / "clean.####.exr")
    _write_result(output, clip.first, clip.last)
    placement = adapter.import_result(app, clip, output, clip.first, clip.last)

    assert placement.track_index == 2 and not placement.added_track
    placed = timeline.GetItemListInTrack("video", 2)
    assert len(placed) == 1
    item = placed[0]
    assert item.GetStart() == original.GetStart() == RECORD
    assert item.GetDuration() == original.GetDuration() == 5
    assert item.GetEnd() == original.GetEnd()
    # Source trimmed to the edit: the imported clip holds frames 1003-1007 and all of them are used.
    media = item.GetMediaPoolItem()
    assert media.GetClipProperty("Start") == "1003" and media.GetClipProperty("End") == "1007"
    assert item.GetLeftOffset() == 0 and item.GetRightOffset() == 0
    pool = project.GetMediaPool()
    bins = [f for f in pool.GetRootFolder().GetSubFolderList() if f.GetName() == "VOID"]
    assert len(bins) == 1 and bins[0].GetClipList() == [media]
    assert pool.GetCurrentFolder() is pool.GetRootFolder()  # the user's current bin is left as it was

    # A second result goes into the same bin; the track above is now taken there, so a track is added.
    placement = adapter.import_result(app, clip, output, clip.first, clip.last)
    assert placement.track_index == 3 and placement.added_track
    assert len([f for f in pool.GetRootFolder().GetSubFolderList() if f.GetName() == "VOID"]) == 1


def test_no_free_track_above_adds_one(tmp_path):
    app, project, timeline, _, shot = _sequence_clip(tmp_path, tracks=2)
    blocker = project.fake_sequence_media(str(shot.folder), "plate.", ".exr", shot.first, shot.last)
    project.fake_clip(timeline, blocker, 2, RECORD + 3, 4, name="graphics")  # overlaps the clip's last frames
    timeline.fake_playhead = RECORD  # under the playhead only track 1 holds a clip
    clip = adapter.describe_item(app)
    assert clip.track_index == 1
    output = str(tmp_path / "out" / "clean.####.exr")
    _write_result(output, clip.first, clip.last)
    placement = adapter.import_result(app, clip, output, clip.first, clip.last)
    assert timeline.GetTrackCount("video") == 3
    assert placement.track_index == 3 and placement.added_track
    assert [i.GetStart() for i in timeline.GetItemListInTrack("video", 3)] == [RECORD]
    assert [i.GetName() for i in timeline.GetItemListInTrack("video", 2)] == ["graphics"]  # untouched


def test_movie_source(tmp_path):
    movie = tmp_path / "plates" / "A001_C002.mp4"
    movie.parent.mkdir()
    writer = cv2.VideoWriter(str(movie), cv2.VideoWriter_fourcc(*"mp4v"), 25, (64, 48))
    for i in range(20):
        writer.write(np.full((48, 64, 3), i * 10, np.uint8))
    writer.release()
    app, project, timeline = _timeline(rate=25.0)
    media = project.fake_media_for_file(str(movie))
    project.fake_clip(timeline, media, 1, 90000 + 10, 6, left_offset=7, name="A001_C002")
    timeline.fake_playhead = 90000 + 12
    clip = adapter.describe_item(app)
    assert clip.kind == "movie" and clip.media_path == str(movie)
    assert (clip.first, clip.last) == (8, 13)  # pictures counted from 1, as the daemon numbers a movie
    assert clip.rate == 25.0
    output = str(tmp_path / "out" / "A001_C002_void.####.exr")
    _write_result(output, clip.first, clip.last)
    placement = adapter.import_result(app, clip, output, clip.first, clip.last)
    assert placement.track_index == 2 and placement.added_track
    (item,) = timeline.GetItemListInTrack("video", 2)
    assert (item.GetStart(), item.GetDuration()) == (90010, 6)


def test_incomplete_result_is_not_imported(tmp_path):
    app, project, timeline, _, _ = _sequence_clip(tmp_path, tracks=2)
    clip = adapter.describe_item(app)
    output = str(tmp_path / "out" / "clean.####.exr")
    _write_result(output, clip.first, clip.last - 1)
    with pytest.raises(Exception) as caught:
        adapter.import_result(app, clip, output, clip.first, clip.last)
    assert "1007" in str(caught.value)
    assert timeline.GetItemListInTrack("video", 2) == []
    assert project.GetMediaPool().GetRootFolder().GetSubFolderList() == []


# -- bad input ----------------------------------------------------------------------------------


def test_no_current_clip(tmp_path):
    app, _, timeline = _timeline()
    timeline.fake_playhead = 86400
    with pytest.raises(ResolveError, match="no clip under the playhead") as caught:
        adapter.describe_item(app)
    assert caught.value.reason == "NO_CURRENT_CLIP"


def test_offline_media(tmp_path):
    app, project, timeline = _timeline()
    media = project.fake_sequence_media(str(tmp_path / "gone"), "plate.", ".exr", 1001, 1010)
    project.fake_clip(timeline, media, 1, RECORD, 5, name="sh020_plate")
    timeline.fake_playhead = RECORD
    with pytest.raises(ResolveError, match="'sh020_plate'.*offline") as caught:
        adapter.describe_item(app)
    assert caught.value.reason == "MEDIA_OFFLINE"


def test_offline_frames_of_a_sequence(tmp_path):
    app, _, _, _, shot = _sequence_clip(tmp_path, left_offset=2, duration=5)
    os.unlink(shot.folder / "plate.1007.exr")
    with pytest.raises(ResolveError, match="plate.1007.exr") as caught:
        adapter.describe_item(app)
    assert caught.value.reason == "MEDIA_OFFLINE"


def test_generator_or_title_clip(tmp_path):
    app, project, timeline = _timeline()
    project.fake_clip(timeline, None, 1, RECORD, 24, name="Text+")
    timeline.fake_playhead = RECORD
    with pytest.raises(ResolveError, match="'Text\\+' is a generator or title") as caught:
        adapter.describe_item(app)
    assert caught.value.reason == "NO_MEDIA"


def test_compound_clip(tmp_path):
    app, project, timeline = _timeline()
    compound = fake_resolve.MediaPoolItem("Compound Clip 1", {"Type": "Compound", "File Path": "", "FPS": "24"})
    project.fake_clip(timeline, compound, 1, RECORD, 24, name="Compound Clip 1")
    timeline.fake_playhead = RECORD
    with pytest.raises(ResolveError, match="'Compound Clip 1' is a compound clip") as caught:
        adapter.describe_item(app)
    assert caught.value.reason == "COMPOUND_CLIP"


def test_variable_speed_clip_is_refused_by_name(tmp_path):
    shot = write_shot(tmp_path / "plates", frames=10, first=1001)
    app, project, timeline = _timeline()
    media = project.fake_sequence_media(str(shot.folder), "plate.", ".exr", shot.first, shot.last)
    project.fake_clip(timeline, media, 1, RECORD, 4, name="sh030_retimed", speed=2.0)
    timeline.fake_playhead = RECORD
    with pytest.raises(ResolveError, match="'sh030_retimed' has a speed change") as caught:
        adapter.describe_item(app)
    assert caught.value.reason == "SPEED_CHANGE"


def test_timeline_rate_differs_from_media_rate(tmp_path):
    shot = write_shot(tmp_path / "plates", frames=10, first=1001)
    app, project, timeline = _timeline(rate=25.0)
    media = project.fake_sequence_media(str(shot.folder), "plate.", ".exr", shot.first, shot.last, rate=24.0)
    project.fake_clip(timeline, media, 1, RECORD, 5, name="sh040_plate")
    timeline.fake_playhead = RECORD
    with pytest.raises(ResolveError, match="'sh040_plate' is 24 fps but timeline 'Edit v3' runs at 25 fps") as caught:
        adapter.describe_item(app)
    assert caught.value.reason == "RATE_MISMATCH"


def test_get_resolve_prefers_the_menu_script_global():
    app = fake_resolve.Resolve()
    assert adapter.get_resolve({"resolve": app}) is app

    class Bmd:
        @staticmethod
        def scriptapp(name):
            return fake_resolve.scriptapp(name)

    assert isinstance(adapter.get_resolve({"bmd": Bmd()}), fake_resolve.Resolve)


def test_menu_script_is_shipped_and_parses():
    import ast

    script = SCRIPT_DIR / SCRIPT_NAME
    tree = ast.parse(script.read_text(), feature_version=(3, 9))
    assert any(isinstance(node, ast.Assign) and node.targets[0].id == "VOIDLINK_PATHS" for node in tree.body)


# -- installer ----------------------------------------------------------------------------------


def test_install_is_idempotent_and_uninstall_exact(tmp_path):
    import subprocess

    from voidlink.installer import resolve as installer

    scripts = tmp_path / "Fusion" / "Scripts"
    (scripts / "Utility").mkdir(parents=True)
    theirs = scripts / "Utility" / "Their Tool.py"
    theirs.write_text("print('not ours')\n")

    actions = installer.install(scripts, skip_dependencies=True, python_version="3.10")
    script = scripts / "Utility" / SCRIPT_NAME
    assert script.is_file()
    assert any(
        "skipped the panel's libraries for Resolve's Python 3.10" in a and "--python-version 3.10" in a for a in actions
    )
    library = scripts / "voidlink" / "lib"
    assert (library / "voidlink" / "hosts" / "resolve" / "adapter.py").is_file()
    assert (library / "voidlink" / "panel" / "window.py").is_file()
    assert (library / "voidlink" / "media" / "image.py").is_file()
    assert not (library / "voidlink" / "inference").exists()  # the daemon stays out of Resolve
    text = script.read_text()
    assert f"VOIDLINK_PATHS = [{str(library)!r}, {str(scripts / 'voidlink' / 'python310')!r}]" in text
    assert f"os.environ.setdefault('VOIDLINK_DAEMON', {sys.executable + ' -m voidlink'!r})" in text

    # The installed script's paths win: its copy of voidlink is the one imported.
    code = (
        "import runpy, sys\n"
        f"namespace = runpy.run_path({str(script)!r}, run_name='voidlink_check')\n"
        "import voidlink.hosts.resolve.menu as menu\n"
        "print(menu.__file__)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(str(library))

    again = installer.install(scripts, skip_dependencies=True, python_version="3.10")
    assert all("unchanged" in a or "0 files written" in a or "skipped" in a or "restart" in a for a in again), again

    removed = installer.uninstall(scripts)
    assert not script.exists() and not (scripts / "voidlink").exists()
    assert theirs.read_text() == "print('not ours')\n"  # the user's script and their folder stay
    assert removed
    assert installer.uninstall(scripts) == [
        f"nothing to remove: no voidlink install recorded at {scripts / 'voidlink'}"
    ]


def test_resolve_gets_the_qt_binding_line_that_holds_for_its_own_python(tmp_path):
    """PySide6-Essentials 6.12.0 crashes the panel on Python < 3.12 (issue #15), so pyproject.toml has one Qt line
    per Python range: Resolve's Python picks the line, not the Python running the install."""
    from voidlink.installer import common
    from voidlink.installer import resolve as installer

    def qt(python_version):
        (line,) = [r for r in installer.requirements(python_version) if r.startswith("PySide6-Essentials")]
        assert ";" not in line  # pip would judge a marker by its own Python, not Resolve's
        return line

    for version in ("3.10", "3.11"):
        assert "!=6.12.0" in qt(version) and ">=6.5" in qt(version)
        command = installer.dependency_command(tmp_path, version)
        assert qt(version) in command and command[command.index("--python-version") + 1] == version
    assert qt("3.12") == qt("3.13") == "PySide6-Essentials>=6.5"  # None is immortal there: 6.12.0 is fine
    actions = installer.install(tmp_path / "Scripts", skip_dependencies=True, python_version="3.11")
    assert any("skipped" in a and common.shell_command([qt("3.11")]) in a for a in actions), actions

    assert installer.marker_holds('python_version < "3.12" and extra == "panel"', "3.11")
    assert not installer.marker_holds('python_version < "3.12" and extra == "panel"', "3.12")
    assert installer.marker_holds("python_version >= '3.12'", "3.12") and installer.marker_holds("", "3.9")
    with pytest.raises(common.InstallError, match="cannot evaluate the requirement marker 'sys_platform"):
        installer.marker_holds('sys_platform == "linux"', "3.11")


def test_install_into_a_missing_scripts_folder_takes_it_away_again(tmp_path):
    from voidlink.installer import resolve as installer

    scripts = tmp_path / "DaVinciResolve" / "Fusion" / "Scripts"
    installer.install(scripts, skip_dependencies=True)
    assert (scripts / "Utility" / SCRIPT_NAME).is_file()
    installer.uninstall(scripts)
    assert not (tmp_path / "DaVinciResolve").exists()
    assert str(installer.default_path()).endswith(os.path.join("Fusion", "Scripts"))


def test_menu_opens_the_panel_prefilled_and_places_the_finished_job(daemon, qtbot, tmp_path):
    """The whole flow a Resolve user runs: clip → panel (roto) → daemon job → clean plate on the track above."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from voidlink.hosts.resolve import menu
    from voidlink.panel import roto
    from voidlink.protos import pb

    app, project, timeline, original, shot = _sequence_clip(tmp_path, left_offset=1, duration=4)
    window = menu.open_for_current_clip(app, daemon.address)
    qtbot.addWidget(window)
    values = window.form.values()
    assert (values.plate, values.first, values.last, values.use_roto) == (shot.plate, 1002, 1005, True)
    assert values.labels["host"] == "resolve" and values.labels["record_frame"] == str(RECORD)
    assert window.viewer.canvas.mode == "roto" and window.form.document.width == shot.width
    window.form.backend.setCurrentText("classical")
    square = roto.Shape("rectangle", "object", feather=2)
    for frame in range(1002, 1006):  # the red square of write_shot, keyed where it is on each frame
        matte = np.nonzero(read_pixels(shot.mask.replace("####", str(frame)))[..., 0] > 0.5)
        square.set_key(frame, [(matte[1].min() - 1, matte[0].min() - 1), (matte[1].max() + 2, matte[0].max() + 2)])
    window.form.document.shapes.append(square)

    with qtbot.waitSignal(window.job_finished, timeout=60_000) as finished:
        assert window.form.submit()
    job = finished.args[0]
    assert job.state == pb.JOB_STATE_SUCCEEDED, job.error.message
    assert dict(job.spec.labels)["clip"] == "sh010_plate"
    qtbot.waitUntil(lambda: bool(window.placements), timeout=10_000)
    (placement,) = window.placements
    assert (placement.track_index, placement.record_frame, placement.duration) == (2, RECORD, 4)
    (placed,) = timeline.GetItemListInTrack("video", 2)
    assert (placed.GetStart(), placed.GetEnd()) == (original.GetStart(), original.GetEnd())
    assert placed.GetMediaPoolItem().GetClipProperty("Start") == "1002"
    assert "Placed the clean plate on video track 2" in window.form.message.text()
    window.close()
