"""The VOID panel under Qt's offscreen platform, against a real daemon on loopback with real EXR shots."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from support.daemons import DaemonProcess  # noqa: E402
from support.shots import read_pixels, write_shot  # noqa: E402
from voidlink.panel import roto  # noqa: E402
from voidlink.panel.form import FormValues, sequence_pattern_for  # noqa: E402
from voidlink.panel.frames import QUADMASK_COLOURS, to_display  # noqa: E402
from voidlink.panel.qt import QtCore, QtGui, QtWidgets  # noqa: E402
from voidlink.panel.queue import format_eta  # noqa: E402
from voidlink.panel.window import PanelWindow, save_screenshot  # noqa: E402
from voidlink.protos import pb  # noqa: E402

from voidlink import errors  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
JOB_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    process = DaemonProcess(tmp_path_factory.mktemp("panel-daemon")).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """Screenshots of the main views (kept under pytest's tmp folder for bug reports and docs)."""
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def window(qtbot, served):
    panel = PanelWindow(served.address, refresh_ms=250)
    qtbot.addWidget(panel)
    panel.resize(1100, 720)
    panel.show()
    yield panel
    panel.close()


def _shown(qtbot, viewer, action, *args) -> None:
    """Run `action(*args)` and wait until the viewer has drawn the frame it asked for."""
    with qtbot.waitSignal(viewer.frame_shown, timeout=15_000):
        action(*args)


def _pixel(image: QtGui.QImage, x: int, y: int) -> tuple[int, int, int]:
    colour = image.pixelColor(x, y)
    return colour.red(), colour.green(), colour.blue()


def test_form_checks_with_the_daemons_messages_then_submits(window, served, qtbot, tmp_path, artifacts):
    shot = write_shot(tmp_path / "src", frames=6)
    holes = tmp_path / "holes"
    holes.mkdir()
    for frame in range(shot.first, shot.last + 1):
        if frame != 1003:
            shutil.copy(shot.mask.replace("####", str(frame)), holes / f"mask.{frame}.exr")
    output = str(tmp_path / "out" / "clean.####.exr")
    form = window.form
    client = served.client()
    good = FormValues(
        plate=shot.plate,
        mask=shot.mask,
        affected=shot.affected,
        first=shot.first,
        last=shot.last,
        prompt="a textured wall, nothing in front of it",
        backend="classical",
        output=output,
    )
    bad_inputs = [
        (dict(last=shot.last + 4), "FRAME_RANGE_OUTSIDE_SOURCE"),
        (dict(mask=str(holes / "mask.####.exr")), "MISSING_FRAMES"),
        (dict(output=shot.plate), "OUTPUT_OVERWRITES_SOURCE"),
        (dict(output=str(tmp_path / "out" / "clean.exr")), "BAD_PATTERN"),
    ]
    for change, reason in bad_inputs:
        values = FormValues(**{**good.__dict__, **change})
        form.set_values(values)
        error = form.validate()
        assert error is not None and error.reason == reason, (change, error)
        assert form.message.text() == str(error)
        # What the daemon answers for the very same spec, word for word.
        with pytest.raises(errors.VoidlinkError) as refused:
            client.submit(form.build(values))
        assert refused.value.reason == reason
        assert str(refused.value) == str(error)
    save_screenshot(window, str(artifacts / "panel-job-error.png"))

    form.set_values(FormValues(**{**good.__dict__, "mask": ""}))
    error = form.validate()
    assert error.reason == "NO_MASK" and "mask clip is required" in form.message.text()
    assert "border" in form.mask.edit.styleSheet()  # the field to fix is marked

    form.set_values(good)
    assert form.validate() is None
    with qtbot.waitSignal(window.job_finished, timeout=JOB_TIMEOUT_MS) as finished:
        qtbot.mouseClick(form.submit_button, QtCore.Qt.MouseButton.LeftButton)
    job = finished.args[0]
    assert job.state == pb.JOB_STATE_SUCCEEDED, job.error.message
    assert job.spec.params.prompt == good.prompt and job.spec.params.backend == "classical"
    for frame in range(shot.first, shot.last + 1):
        assert Path(output.replace("####", f"{frame:04d}")).is_file()
    qtbot.waitUntil(lambda: job.id in window.queue.jobs and bool(window.queue.jobs[job.id].result.output_pattern))
    row = window.queue._order.index(job.id)
    assert window.queue.table.item(row, 2).text() == "succeeded"
    assert window.queue.table.cellWidget(row, 3).value() == shot.last - shot.first + 1

    # The viewer: the real plate EXR through the display transform, the result right of the wipe.
    _shown(qtbot, window.viewer, window.show_job, job)
    canvas = window.viewer.canvas
    assert canvas.before is not None and canvas.after is not None
    assert (canvas.before.width(), canvas.before.height()) == (shot.width, shot.height)
    plate = read_pixels(shot.plate.replace("####", str(shot.first)))
    expected = to_display(plate)
    for x, y in ((3, 3), (shot.width - 5, shot.height - 4), (40, 30)):
        assert _pixel(canvas.before, x, y) == tuple(int(v) for v in expected[y, x])
    result = read_pixels(output.replace("####", str(shot.first)))
    assert _pixel(canvas.after, 3, 3) == tuple(int(v) for v in to_display(result)[3, 3])
    obj = read_pixels(shot.mask.replace("####", str(shot.first)))[..., 0] > 0.5
    ys, xs = np.nonzero(obj)
    cx, cy = int(xs.mean()), int(ys.mean())
    assert _pixel(canvas.before, cx, cy) != _pixel(canvas.after, cx, cy)  # the red square is gone
    _shown(qtbot, window.viewer, window.viewer.slider.setValue, shot.last)
    assert window.viewer.frame_label.text().startswith(f"frame {shot.last}")
    # Scrub back and put the wipe through the object: half of it before, the clean half after.
    _shown(qtbot, window.viewer, window.viewer.slider.setValue, shot.first + 2)
    moved = read_pixels(shot.mask.replace("####", str(shot.first + 2)))[..., 0] > 0.5
    canvas.wipe = float(np.nonzero(moved)[1].mean() + 0.5) / shot.width
    save_screenshot(window, str(artifacts / "panel-viewer-wipe.png"))
    # The README's picture: the viewer alone (no port numbers or job counts), so reruns give the same bytes.
    readme_shot = Path(save_screenshot(window.viewer, str(artifacts / "readme-viewer.png")))

    # Quadmask preview: the object's pixels tinted in the object colour, the rest untouched.
    window.viewer.slider.setValue(shot.first)
    _shown(qtbot, window.viewer, window.viewer.set_mode, "quadmask")
    tinted = _pixel(window.viewer.canvas.before, cx, cy)
    untinted = tuple(int(v) for v in expected[cy, cx])
    object_colour = np.array(QUADMASK_COLOURS[0]) * 255
    assert np.abs(np.array(tinted) - object_colour).sum() < np.abs(np.array(untinted) - object_colour).sum()
    assert tinted != untinted
    assert _pixel(window.viewer.canvas.before, 2, 2) == tuple(int(v) for v in expected[2, 2])
    save_screenshot(window, str(artifacts / "panel-viewer-quadmask.png"))
    docs_shot = ROOT / "docs" / "panel.png"
    if not docs_shot.is_file() or docs_shot.read_bytes() != readme_shot.read_bytes():
        docs_shot.parent.mkdir(exist_ok=True)
        shutil.copy(readme_shot, docs_shot)


def test_roto_keyed_on_two_frames_rasterises_the_in_between_matte(tmp_path):
    shape = roto.Shape("rectangle", "object", name="boom")
    shape.set_key(1001, [(10, 8), (30, 24)])
    shape.set_key(1011, [(50, 28), (70, 44)])
    document = roto.RotoDocument(96, 64, [shape])
    pattern = roto.write_mattes(document, "object", str(tmp_path / "roto" / "object.####.exr"), 1001, 1011)
    assert pattern.endswith("object.####.exr")

    def matte(frame):
        return read_pixels(pattern.replace("####", str(frame)))[..., 0]

    expected = np.zeros((64, 96), np.float32)
    expected[18:34, 30:50] = 1.0  # halfway: x 30-50, y 18-34
    np.testing.assert_array_equal(matte(1006), expected)
    at_1003 = np.zeros((64, 96), np.float32)
    at_1003[12:28, 18:38] = 1.0
    np.testing.assert_array_equal(matte(1003), at_1003)  # a fifth of the way: x 18-38, y 12-28
    # Before the first key and after the last the nearest key holds.
    assert roto.rasterise([shape], 990, 96, 64)[8:24, 10:30].min() == 1.0
    assert roto.rasterise([shape], 1020, 96, 64)[28:44, 50:70].min() == 1.0
    # Half-pixel edges are covered by half; a feather softens the edge but keeps the area.
    half = roto.Shape("rectangle", keys={1: [(10.5, 10), (20.5, 20)]})
    np.testing.assert_allclose(roto.rasterise([half], 1, 32, 32)[15, 9:22], [0, 0.5] + [1] * 9 + [0.5, 0])
    soft = roto.Shape("ellipse", feather=6, keys={1: [(20, 16), (60, 48)]})
    covered = roto.rasterise([soft], 1, 96, 64)
    assert 0.05 < covered[32, 20] < 0.95 and covered[32, 40] > 0.99
    assert abs(covered.sum() - np.pi * 20 * 16) / (np.pi * 20 * 16) < 0.01
    # Saved with the mattes, and read back identical.
    saved = roto.RotoDocument.load(str(tmp_path / "roto" / "roto.json"))
    assert saved.to_dict() == document.to_dict()
    assert not [p for p in (tmp_path / "roto").iterdir() if ".tmp" in p.name or p.name.startswith(".")]
    with pytest.raises(errors.InvalidInput, match="same number of points"):
        roto.Shape("polygon", keys={1: [(0, 0), (5, 0), (0, 5)]}).set_key(2, [(0, 0), (5, 0), (5, 5), (0, 5)])


def test_roto_drawn_on_the_viewer_becomes_the_jobs_mattes(window, qtbot, tmp_path, artifacts):
    shot = write_shot(tmp_path / "src", frames=5)
    output = str(tmp_path / "out" / "clean.####.exr")
    window.form.set_values(
        FormValues(
            plate=shot.plate, first=shot.first, last=shot.last, backend="classical", output=output, use_roto=True
        )
    )
    _shown(qtbot, window.viewer, window.preview)
    viewer = window.viewer
    assert viewer.canvas.mode == "roto" and window.form.document.width == shot.width
    nothing_drawn = window.form.check()
    assert nothing_drawn.reason == "NO_MASK" and "draw the object" in str(nothing_drawn)
    viewer.canvas.resize(shot.width * 4, shot.height * 4)  # 4 widget pixels per image pixel

    def at(x, y):
        return viewer.canvas.to_widget(x, y).toPoint()

    qtbot.mousePress(viewer.canvas, QtCore.Qt.MouseButton.LeftButton, pos=at(8, 20))
    qtbot.mouseRelease(viewer.canvas, QtCore.Qt.MouseButton.LeftButton, pos=at(24, 36))
    (shape,) = window.form.document.shapes
    assert shape.kind == "rectangle" and shape.role == "object" and list(shape.keys) == [shot.first]
    _shown(qtbot, viewer, viewer.slider.setValue, shot.last)
    qtbot.mousePress(viewer.canvas, QtCore.Qt.MouseButton.LeftButton, pos=at(16, 28))
    qtbot.mouseRelease(viewer.canvas, QtCore.Qt.MouseButton.LeftButton, pos=at(56, 28))  # moved 40 px right
    assert sorted(shape.keys) == [shot.first, shot.last]
    middle = shape.outline_at((shot.first + shot.last) / 2)
    np.testing.assert_allclose(middle[0], (28, 20), atol=0.5)
    # Dragging a corner handle of the selected shape reshapes it on this frame only.
    qtbot.mousePress(viewer.canvas, QtCore.Qt.MouseButton.LeftButton, pos=at(64, 36))
    qtbot.mouseRelease(viewer.canvas, QtCore.Qt.MouseButton.LeftButton, pos=at(72, 40))
    np.testing.assert_allclose(shape.keys[shot.last], [(48, 20), (72, 40)], atol=0.5)
    np.testing.assert_allclose(shape.keys[shot.first], [(8, 20), (24, 36)], atol=0.5)
    viewer.role.setCurrentText("affected")
    _shown(qtbot, viewer, viewer.slider.setValue, shot.first)
    qtbot.mousePress(viewer.canvas, QtCore.Qt.MouseButton.LeftButton, pos=at(4, 36))
    qtbot.mouseRelease(viewer.canvas, QtCore.Qt.MouseButton.LeftButton, pos=at(90, 44))
    assert [s.role for s in window.form.document.shapes] == ["object", "affected"]
    # A polygon: a click per point, a double-click closes it.
    viewer.tool.setCurrentText("polygon")
    for x, y in ((70, 6), (90, 6), (80, 16)):
        qtbot.mouseClick(viewer.canvas, QtCore.Qt.MouseButton.LeftButton, pos=at(x, y))
    qtbot.mouseDClick(viewer.canvas, QtCore.Qt.MouseButton.LeftButton, pos=at(80, 16))
    polygon = window.form.document.shapes[-1]
    assert polygon.kind == "polygon" and polygon.role == "affected"
    np.testing.assert_allclose(polygon.keys[shot.first][:3], [(70, 6), (90, 6), (80, 16)], atol=0.5)
    save_screenshot(window, str(artifacts / "panel-viewer-roto.png"))

    with qtbot.waitSignal(window.job_finished, timeout=JOB_TIMEOUT_MS) as finished:
        assert window.form.submit()
    job = finished.args[0]
    assert job.state == pb.JOB_STATE_SUCCEEDED, job.error.message
    roto_folder = tmp_path / "out" / "roto"
    assert (roto_folder / "roto.json").is_file()
    assert str(roto_folder) in job.spec.mask.otio_json and "object." in job.spec.mask.otio_json
    last_matte = read_pixels(str(roto_folder / f"object.{shot.last}.exr"))[..., 0]
    assert last_matte[28, 56] > 0.99 and last_matte[30, 66] > 0.99  # the last frame's key: moved right, widened
    assert last_matte[28, 12] == 0.0
    assert read_pixels(str(roto_folder / f"affected.{shot.first}.exr"))[40, 50, 0] > 0.99
    assert read_pixels(str(roto_folder / f"affected.{shot.first}.exr"))[9, 80, 0] > 0.99  # inside the polygon

    # Opening the same job again brings the shapes back from the roto.json saved with the mattes.
    again = PanelWindow(window.service.address, refresh_ms=0)
    qtbot.addWidget(again)
    again.form.set_values(window.form.values())
    assert again.ensure_document().to_dict() == window.form.document.to_dict()
    again.close()


def test_progress_cancel_resubmit_and_open_folder(window, served, qtbot, tmp_path, artifacts):
    shot = write_shot(tmp_path / "long", frames=40, width=320, height=192)
    output = str(tmp_path / "out" / "long.####.exr")
    window.form.set_values(
        FormValues(
            plate=shot.plate, mask=shot.mask, first=shot.first, last=shot.last, backend="classical", output=output
        )
    )
    events = []
    window.service.progress.connect(events.append)
    with qtbot.waitSignal(window.job_submitted, timeout=10_000) as submitted:
        window.form.submit()
        assert not window.form.submit_button.isEnabled()  # no second job from a second click meanwhile
    job_id = submitted.args[0].id
    assert window.form.submit_button.isEnabled()
    qtbot.waitUntil(lambda: any(e.job_id == job_id and e.frames_done >= 1 for e in events), timeout=JOB_TIMEOUT_MS)
    queue = window.queue
    queue.select(job_id)
    row = queue._order.index(job_id)
    bar = queue.table.cellWidget(row, 3)
    assert bar.maximum() == 40 and bar.value() >= 1
    assert queue.table.item(row, 2).text().startswith("running")
    eta = window.queue.jobs[job_id].eta_seconds
    assert queue.table.item(row, 4).text() == (format_eta(eta) if eta >= 0 else "–")
    window.show_tab("queue")
    save_screenshot(window, str(artifacts / "panel-queue-running.png"))
    with qtbot.waitSignal(window.job_finished, timeout=JOB_TIMEOUT_MS) as finished:
        qtbot.mouseClick(queue.cancel_button, QtCore.Qt.MouseButton.LeftButton)
    cancelled = finished.args[0]
    assert cancelled.id == job_id and cancelled.state == pb.JOB_STATE_CANCELLED
    assert cancelled.frames_done < cancelled.frames_total
    qtbot.waitUntil(lambda: queue.table.item(queue._order.index(job_id), 2).text() == "cancelled")
    assert not queue.cancel_button.isEnabled() and queue.resubmit_button.isEnabled()

    opened = []
    queue.open_folder = opened.append
    qtbot.mouseClick(queue.open_button, QtCore.Qt.MouseButton.LeftButton)
    assert opened == [str(tmp_path / "out")]

    with qtbot.waitSignal(window.job_submitted, timeout=10_000) as again:
        qtbot.mouseClick(queue.resubmit_button, QtCore.Qt.MouseButton.LeftButton)
    resubmitted = again.args[0]
    assert resubmitted.id != job_id and resubmitted.spec.source.otio_json == cancelled.spec.source.otio_json
    served.client().cancel(resubmitted.id)
    qtbot.waitUntil(lambda: window.queue.jobs[resubmitted.id].state in (pb.JOB_STATE_CANCELLED,), timeout=20_000)
    save_screenshot(window, str(artifacts / "panel-queue.png"))


def test_no_daemon_is_reported_without_blocking(qtbot, tmp_path):
    shot = write_shot(tmp_path / "src", frames=3)
    panel = PanelWindow("127.0.0.1:9", refresh_ms=0)
    qtbot.addWidget(panel)
    panel.form.set_values(FormValues(plate=shot.plate, mask=shot.mask, first=shot.first, last=shot.last))
    ticks = []
    timer = QtCore.QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(20)
    with qtbot.waitSignal(panel.service.submit_failed, timeout=15_000) as failed:
        assert panel.form.submit()  # returns at once: the connection is tried on the worker
    timer.stop()
    assert failed.args[0].reason == "DAEMON_UNREACHABLE"
    assert len(ticks) >= 10  # the event loop kept turning while the client waited for the daemon
    assert "no voidlink daemon answers at 127.0.0.1:9" in panel.form.message.text()
    panel.close()


def test_cli_screenshot_of_a_job(served, tmp_path):
    shot = write_shot(tmp_path / "src", frames=3)
    result = served.client().remove(
        shot.plate, shot.mask, frames=(shot.first, shot.last), backend="classical", output=tmp_path / "o.####.exr"
    )
    target = tmp_path / "shots" / "job.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run(
        [sys.executable, "-m", "voidlink", "panel", "--address", served.address, "--job", result.job_id]
        + ["--screenshot", str(target), "--size", "900x600"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    image = QtGui.QImage(str(target))
    assert (image.width(), image.height()) == (900, 600)
    colours = {image.pixel(x, y) for x in range(0, 900, 7) for y in range(0, 600, 7)}
    assert len(colours) > 50  # the plate and result are drawn, not an empty window
    missing = subprocess.run(
        [sys.executable, "-m", "voidlink", "panel", "--address", served.address, "--job", "nope"]
        + ["--screenshot", str(tmp_path / "none.png")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert missing.returncode == 2 and "no job with id 'nope'" in missing.stderr


def test_sequence_pattern_from_a_picked_frame_and_nuke_pane_registration(qtbot):
    assert sequence_pattern_for("/s/plate.1001.exr") == "/s/plate.####.exr"
    assert sequence_pattern_for("/s/A001_C002.mov") == "/s/A001_C002.mov"
    assert sequence_pattern_for("/s/still.exr") == "/s/still.exr"

    from voidlink.hosts.nuke import pane as nuke_pane

    calls = []

    class Panels:  # nukescripts.panels.registerWidgetAsPanel(widget, name, id, create=False)
        @staticmethod
        def registerWidgetAsPanel(widget, name, id, create=False):  # noqa: N802, A002
            calls.append((widget, name, id, create))

    class Nukescripts:
        panels = Panels

    nuke_pane.register(Nukescripts)
    ((widget_path, title, pane_id, create),) = calls
    assert (title, create) == ("VOID", False)
    module_name, class_name = widget_path.rsplit(".", 1)
    cls = getattr(__import__(module_name, fromlist=[class_name]), class_name)
    pane = cls()  # Nuke constructs it with no arguments
    qtbot.addWidget(pane)
    assert nuke_pane.current_pane() is pane and pane.tabs.currentWidget() is pane.queue
    pane.close()


def test_viewer_numbers_movie_pictures_from_one(qtbot, tmp_path):
    import cv2

    movie = tmp_path / "A001_C002.avi"
    writer = cv2.VideoWriter(str(movie), cv2.VideoWriter_fourcc(*"MJPG"), 24, (64, 48))
    for i in range(12):
        writer.write(np.full((48, 64, 3), 20 * i, np.uint8))
    writer.release()
    panel = PanelWindow("127.0.0.1:9", refresh_ms=0)
    qtbot.addWidget(panel)
    _shown(qtbot, panel.viewer, panel.viewer.set_clips, str(movie), "", 8, 11)
    assert abs(_pixel(panel.viewer.canvas.before, 30, 20)[0] - 20 * 7) <= 4  # frame 8 is the 8th picture
    _shown(qtbot, panel.viewer, panel.viewer.slider.setValue, 11)
    assert abs(_pixel(panel.viewer.canvas.before, 30, 20)[0] - 20 * 10) <= 4  # display-referred: no transform
    panel.close()


def test_start_a_local_daemon_from_the_panel(qtbot, tmp_path, monkeypatch):
    import json
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # The started daemon keeps its data and log under this test's folder, not the user's.
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("VOIDLINK_DAEMON", f"{sys.executable} -m voidlink")
    panel = PanelWindow(f"127.0.0.1:{port}", refresh_ms=0)
    qtbot.addWidget(panel)
    panel.show()
    panel.service.refresh()
    qtbot.waitUntil(panel.start_button.isVisible, timeout=15_000)
    assert "no voidlink daemon answers" in panel.connection.text()
    state = tmp_path / "data" / "voidlink" / "daemon.json"
    try:
        with qtbot.waitSignal(panel.service.daemon_ready, timeout=40_000):
            qtbot.mouseClick(panel.start_button, QtCore.Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: "job(s)" in panel.connection.text(), timeout=15_000)
        assert not panel.start_button.isVisible()
        assert state.is_file()  # the daemon it started, with its data where the environment says
    finally:
        if state.is_file():
            os.kill(json.loads(state.read_text())["pid"], signal.SIGTERM)
        panel.close()


def test_viewer_names_the_file_and_frame_it_cannot_read(qtbot, tmp_path):
    shot = write_shot(tmp_path / "src", frames=3)
    os.unlink(shot.plate.replace("####", "1002"))
    panel = PanelWindow("127.0.0.1:9", refresh_ms=0)
    qtbot.addWidget(panel)
    _shown(qtbot, panel.viewer, panel.viewer.set_clips, shot.plate, "", shot.first, shot.last)
    assert panel.viewer.canvas.before is not None and panel.viewer.status.text() == ""
    _shown(qtbot, panel.viewer, panel.viewer.slider.setValue, 1002)
    assert panel.viewer.canvas.before is None
    assert "plate.1002.exr" in panel.viewer.status.text() and "1002" in panel.viewer.status.text()
    _shown(qtbot, panel.viewer, panel.viewer.slider.setValue, 1003)
    assert panel.viewer.canvas.before is not None and panel.viewer.status.text() == ""
    panel.close()


def test_wide_frames_are_shown_subsampled_at_their_full_geometry(qtbot, tmp_path, monkeypatch):
    from voidlink.panel import viewer as viewer_module

    monkeypatch.setattr(viewer_module, "DISPLAY_MAX_WIDTH", 40)  # as a 4K plate is against the real limit
    shot = write_shot(tmp_path / "src", frames=2)
    panel = PanelWindow("127.0.0.1:9", refresh_ms=0)
    qtbot.addWidget(panel)
    _shown(qtbot, panel.viewer, panel.viewer.set_clips, shot.plate, "", shot.first, shot.last)
    canvas = panel.viewer.canvas
    assert (canvas.before.width(), canvas.before.height()) == (32, 22)  # every 3rd pixel of 96x64
    assert canvas.image_size == (shot.width, shot.height)  # roto and wipe still work in plate pixels
    expected = to_display(read_pixels(shot.plate.replace("####", str(shot.first))))
    assert _pixel(canvas.before, 5, 7) == tuple(int(v) for v in expected[21, 15])
    canvas.resize(shot.width * 2, shot.height * 2)
    point = canvas.to_widget(48, 32)
    assert canvas.to_image(point) == pytest.approx((48, 32))
    panel.close()


# A binding that drops a reference to None on every Qt call returning nothing (shiboken6 6.12.0 on
# Python < 3.12, issue #15) loses dozens per iteration below, tens of thousands over the run; a sound
# one stays within a few of where it started (transient references on the frame loader's thread).
NONE_REFCOUNT_SLACK = 50
REFCOUNT_ITERATIONS = 1000


def _listed_jobs(tmp_path: Path) -> list:
    """What a daemon lists: finished jobs only, so the panel starts no watcher threads of its own."""
    states = (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED)
    jobs = []
    for i in range(6):
        job = pb.Job(id=f"job{i:04d}-listed", state=states[i % 3], created_at=1000.0 + i, frames_done=i, frames_total=8)
        job.spec.name = f"sh{i:03d}"
        job.spec.output.path_template = str(tmp_path / f"out{i}" / "clean.####.exr")
        if job.state == pb.JOB_STATE_SUCCEEDED:
            job.result.output_pattern = job.spec.output.path_template
        jobs.append(job)
    return jobs


def test_a_thousand_refreshes_edits_and_frames_keep_none_alive(qtbot, tmp_path):
    """The panel's steady work (queue refresh and live progress, viewer frames and modes, form edits, roto
    keys) must not eat references to None: on a binding that does, Python aborts with `none_dealloc`
    minutes after the panel opens. On Python 3.12+ None is immortal and its count never moves."""
    import gc

    from voidlink.panel.viewer import MODES

    shot = write_shot(tmp_path / "src", frames=4)
    panel = PanelWindow("127.0.0.1:9", refresh_ms=0)
    qtbot.addWidget(panel)
    panel.resize(480, 360)  # every iteration paints the viewer with its roto: small keeps the test fast
    panel.show()
    panel.show_tab("viewer")
    panel.form.set_values(FormValues(plate=shot.plate, first=shot.first, last=shot.last, use_roto=True))
    panel.ensure_document()
    viewer = panel.viewer
    shape = viewer.canvas.add_shape("rectangle", [(10, 10), (30, 24)])
    _shown(qtbot, viewer, viewer.set_clips, shot.plate, "", shot.first, shot.last)
    jobs = _listed_jobs(tmp_path)
    forms = [
        FormValues(plate=shot.plate, mask=shot.mask, first=shot.first, last=shot.last, prompt="an empty wall"),
        FormValues(plate=shot.plate, first=shot.first, last=shot.last, backend="classical", use_roto=True),
    ]
    problem = errors.InvalidInput("spec.mask: a mask clip is required", reason="NO_MASK", field="spec.mask")

    def iteration(i: int) -> None:
        panel.service.jobs_listed.emit(jobs)  # the refresh timer's answer, as the worker hands it over
        panel.service.progress.emit(
            pb.JobEvent(
                job_id="live-job",
                state=pb.JOB_STATE_RUNNING,
                stage="backend",
                frames_done=i % 40,
                frames_total=40,
                eta_seconds=float(i % 90),
            )
        )
        panel.queue.select(jobs[i % len(jobs)].id)
        viewer.slider.setValue(shot.first + i % 4)
        viewer.set_mode(MODES[i % len(MODES)])
        viewer.canvas.selected = shape  # ticking "use roto" (the form edit below) shows the document afresh
        viewer.canvas.key_selected()  # a roto edit on this frame
        panel.form.set_values(forms[i % 2])
        panel.form.show_error(problem if i % 2 else None)
        QtWidgets.QApplication.processEvents()  # paint what changed, take in the frames read meanwhile

    def settled() -> int:
        """None's count with the frame loader idle: the last frame asked for is drawn."""
        _shown(qtbot, viewer, viewer.show_frame, shot.first)
        gc.collect()
        return sys.getrefcount(None)

    for i in range(20):  # first use of each path fills caches (slots, style sheets, fonts) before counting
        iteration(i)
    before = settled()
    for i in range(REFCOUNT_ITERATIONS):
        iteration(i)
        now = sys.getrefcount(None)
        if now < before - NONE_REFCOUNT_SLACK:  # fail long before a leaking binding frees None itself
            pytest.fail(
                f"the Qt binding drops references to None: {before - now} lost after {i + 1} panel iterations "
                f"(Qt {QtCore.qVersion()}); Python aborts with none_dealloc when the count reaches 0"
            )
    after = settled()
    assert after >= before - NONE_REFCOUNT_SLACK, (before, after)
    assert sorted(shape.keys) == [0, *range(shot.first, shot.last + 1)]  # the edits did happen
    assert len(panel.queue.jobs) == len(jobs) + 1 and panel.queue.jobs["live-job"].frames_total == 40
    panel.close()


def _saved_shapes(path: Path) -> dict:
    return roto.RotoDocument.load(str(path)).to_dict()


@pytest.fixture
def panel_data(tmp_path, monkeypatch):
    """The panel's data folder (where shapes drawn before the job has an output are kept), under this test's folder."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return tmp_path / "data" / "voidlink" / "panel"


def _roto_panel(qtbot, values: FormValues) -> PanelWindow:
    panel = PanelWindow("127.0.0.1:9", refresh_ms=0)
    qtbot.addWidget(panel)
    panel.resize(900, 640)
    panel.show()
    panel.set_values(values)
    return panel


def test_every_roto_edit_is_autosaved_as_the_jobs_roto_json(qtbot, tmp_path, panel_data):
    shot = write_shot(tmp_path / "src", frames=4)
    values = FormValues(
        plate=shot.plate,
        first=shot.first,
        last=shot.last,
        output=str(tmp_path / "out" / "clean.####.exr"),
        use_roto=True,
    )
    saved = tmp_path / "out" / "roto" / "roto.json"  # where submit writes it, beside the roto mattes
    panel = _roto_panel(qtbot, values)
    viewer, document = panel.viewer, panel.form.document
    assert panel.autosave.path == str(saved) == panel.form.roto_file()
    assert panel.autosave.flush() is None and not saved.exists()  # nothing drawn, nothing written
    viewer.canvas.resize(shot.width * 4, shot.height * 4)

    def at(x, y):
        return viewer.canvas.to_widget(x, y).toPoint()

    def written() -> dict:
        """The file after the pending save (the timer's, or this flush if the timer has not fired yet)."""
        panel.autosave.flush()
        assert not [p.name for p in saved.parent.iterdir() if p.name != "roto.json"]  # no temporary file left
        return _saved_shapes(saved)

    # Drawn: saved by the debounce timer on its own, without a flush.
    with qtbot.waitSignal(panel.autosave.saved, timeout=10_000) as autosaved:
        qtbot.mousePress(viewer.canvas, QtCore.Qt.MouseButton.LeftButton, pos=at(8, 20))
        qtbot.mouseRelease(viewer.canvas, QtCore.Qt.MouseButton.LeftButton, pos=at(24, 36))
    assert autosaved.args == [str(saved)]
    (shape,) = document.shapes
    assert _saved_shapes(saved) == document.to_dict()
    # Moved on another frame: a new key.
    _shown(qtbot, viewer, viewer.slider.setValue, shot.last)
    qtbot.mousePress(viewer.canvas, QtCore.Qt.MouseButton.LeftButton, pos=at(16, 28))
    qtbot.mouseRelease(viewer.canvas, QtCore.Qt.MouseButton.LeftButton, pos=at(56, 28))
    assert sorted(written()["shapes"][0]["keys"]) == [str(shot.first), str(shot.last)]
    # Keyed where it is, feathered, a second shape added, then deleted.
    _shown(qtbot, viewer, viewer.slider.setValue, shot.first + 1)
    qtbot.mouseClick(viewer.key_button, QtCore.Qt.MouseButton.LeftButton)
    assert str(shot.first + 1) in written()["shapes"][0]["keys"]
    viewer.feather.setValue(9.0)
    assert written()["shapes"][0]["feather"] == 9.0
    qtbot.mousePress(viewer.canvas, QtCore.Qt.MouseButton.LeftButton, pos=at(60, 4))
    qtbot.mouseRelease(viewer.canvas, QtCore.Qt.MouseButton.LeftButton, pos=at(90, 14))
    assert len(written()["shapes"]) == 2
    qtbot.keyClick(viewer.canvas, QtCore.Qt.Key.Key_Delete)
    assert written() == document.to_dict() and document.shapes == [shape]

    # A crash now loses nothing: the same job opened in a new panel shows the shapes again.
    again = _roto_panel(qtbot, values)
    assert again.form.document.to_dict() == document.to_dict() and again.viewer.canvas.document is again.form.document

    # Another job with a roto of its own opens on it; the edit not yet written for the first job goes to its file first.
    other = roto.RotoDocument(shot.width, shot.height, [roto.Shape("ellipse", keys={shot.first: [(1, 1), (9, 9)]})])
    other.save(str(tmp_path / "other" / "roto" / "roto.json"))
    viewer.canvas.selected = shape
    viewer.feather.setValue(3.0)  # pending: the event loop has not turned since, so no timer has fired
    panel.set_values(FormValues(**{**values.__dict__, "output": str(tmp_path / "other" / "clean.####.exr")}))
    assert panel.form.document.to_dict() == other.to_dict() and viewer.canvas.document is panel.form.document
    assert _saved_shapes(saved) == document.to_dict() and document.shapes[0].feather == 3.0
    assert not panel_data.exists()  # the job always had a folder: the panel's own file was never needed
    again.close()
    panel.close()


def test_roto_drawn_before_the_job_has_an_output_is_kept_in_the_panels_data_folder(qtbot, tmp_path, panel_data):
    from voidlink.panel.autosave import scratch_path

    unsaved = panel_data / "unsaved-roto.json"
    assert scratch_path() == str(unsaved)
    panel = _roto_panel(qtbot, FormValues(use_roto=True))  # no plate, no output: nowhere beside a job
    canvas = panel.viewer.canvas
    assert panel.autosave.path is None and panel.form.roto_file() is None
    canvas.selected = canvas.add_shape("rectangle", [(100, 100), (300, 240)])
    canvas.shapes_changed.emit()  # as the canvas does after a drawing gesture
    assert panel.autosave.flush() == str(unsaved)
    assert _saved_shapes(unsaved) == panel.form.document.to_dict()
    drawn = panel.form.document.to_dict()
    panel.close()

    # The panel opened again (after a crash, say) with still no job: the unsaved shapes come back.
    panel = _roto_panel(qtbot, FormValues(use_roto=True))
    assert panel.form.document.to_dict() == drawn

    # The job's output cannot be written (a file where its folder must go): the shapes stay in the data folder.
    shot = write_shot(tmp_path / "src", frames=2)
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    failures = []
    panel.autosave.failed.connect(failures.append)
    stuck = FormValues(plate=shot.plate, first=shot.first, last=shot.last, use_roto=True)
    panel.set_values(FormValues(**{**stuck.__dict__, "output": str(blocker / "out" / "clean.####.exr")}))
    assert panel.form.document.to_dict() == drawn  # carried over to the job, not dropped
    assert panel.autosave.flush() == str(unsaved)
    (failure,) = failures
    assert failure.startswith(f"cannot autosave the roto to {blocker / 'out' / 'roto' / 'roto.json'}")
    assert str(unsaved) in failure and panel.form.message.text() == failure
    assert _saved_shapes(unsaved) == drawn

    # An output that can be written: the shapes move there, and the panel's own copy goes.
    output = tmp_path / "out" / "clean.####.exr"
    panel.set_values(FormValues(**{**stuck.__dict__, "output": str(output)}))
    assert panel.autosave.flush() == str(tmp_path / "out" / "roto" / "roto.json")
    assert _saved_shapes(tmp_path / "out" / "roto" / "roto.json") == drawn and not unsaved.exists()
    assert panel.form.message.text() == ""  # the failure shown earlier is over
    panel.close()
    again = _roto_panel(qtbot, FormValues(**{**stuck.__dict__, "output": str(output)}))
    assert again.form.document.to_dict() == drawn
    again.close()
