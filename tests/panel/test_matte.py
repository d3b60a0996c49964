"""Matte tracking from the panel: the points tool, the prompts sent, Track against a real daemon, the tracked
matte in the form and the quadmask tint, the affected proposal labelled as one, Edit as roto, the findings."""

from __future__ import annotations

import json
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from support.panel import pixel, shown  # noqa: E402
from support.shots import read_pixels, write_shot  # noqa: E402
from voidlink.panel import roto  # noqa: E402
from voidlink.panel.form import FormValues  # noqa: E402
from voidlink.panel.matte import PROPOSAL_NOTE, Track, matte_polygon, matte_spec  # noqa: E402
from voidlink.panel.qt import QtCore  # noqa: E402
from voidlink.panel.viewer import Viewer  # noqa: E402
from voidlink.protos import pb  # noqa: E402

Left = QtCore.Qt.MouseButton.LeftButton
Right = QtCore.Qt.MouseButton.RightButton
SHIFT = QtCore.Qt.KeyboardModifier.ShiftModifier
ALT = QtCore.Qt.KeyboardModifier.AltModifier
TRACK_TIMEOUT_MS = 120_000


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a >= 0.5, b >= 0.5
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.fixture
def pointing(qtbot, tmp_path):
    """A viewer in roto mode with the points tool on a 5-frame shot, 4 widget pixels per image pixel."""
    shot = write_shot(tmp_path / "src", frames=5)
    viewer = Viewer()
    qtbot.addWidget(viewer)
    viewer.resize(900, 600)
    viewer.show()
    viewer.set_document(roto.RotoDocument(shot.width, shot.height))
    viewer.set_mode("roto")
    viewer.tool.setCurrentText("points")
    shown(qtbot, viewer, viewer.set_clips, shot.plate, "", shot.first, shot.last)
    viewer.canvas.resize(shot.width * 4, shot.height * 4)
    yield viewer, shot
    viewer.loader.stop()


def _at(viewer, x, y) -> QtCore.QPoint:
    return viewer.canvas.to_widget(x, y).toPoint()


def test_points_tool_clicks_positive_and_negative_points_per_frame_undoable_and_saved(pointing, qtbot, tmp_path):
    viewer, shot = pointing
    canvas, document = viewer.canvas, viewer.canvas.document
    qtbot.mouseClick(canvas, Left, pos=_at(viewer, 20, 30))
    qtbot.mouseClick(canvas, Left, SHIFT, pos=_at(viewer, 60, 10))
    qtbot.mouseClick(canvas, Right, pos=_at(viewer, 70, 50))
    qtbot.mouseClick(canvas, Left, ALT, pos=_at(viewer, 80, 12))  # Alt+click without a drag: no pan
    clicks = document.points[shot.first]
    assert [negative for _, _, negative in clicks] == [False, True, True, True]
    for (x, y, _), (ex, ey) in zip(clicks, [(20, 30), (60, 10), (70, 50), (80, 12)]):
        assert abs(x - ex) <= 0.5 and abs(y - ey) <= 0.5  # image pixels, whatever the zoom
    assert shot.first in viewer.slider.keys  # a frame with points is marked on the time line
    # A click on a point takes it away; Ctrl+Z puts it back.
    qtbot.mouseClick(canvas, Left, pos=_at(viewer, 60, 10))
    assert len(document.points[shot.first]) == 3
    canvas.undo()
    assert len(document.points[shot.first]) == 4
    # Points are kept per frame.
    shown(qtbot, viewer, viewer.show_frame, shot.first + 2)
    qtbot.mouseClick(canvas, Left, pos=_at(viewer, 40, 30))
    assert sorted(document.points) == [shot.first, shot.first + 2]
    canvas.undo()
    assert sorted(document.points) == [shot.first]
    canvas.redo()
    # Saved with the shapes and read back as they were.
    path = tmp_path / "roto.json"
    document.save(str(path))
    again = roto.RotoDocument.load(str(path))
    assert again.points == document.points
    # A roto file from before the points still opens (and saves without them).
    old = tmp_path / "old.json"
    data = document.to_dict()
    data.pop("points")
    old.write_text(json.dumps(data))
    loaded = roto.RotoDocument.load(str(old))
    assert loaded.points == {} and "points" not in loaded.to_dict()


def test_prompts_are_the_points_boxes_and_outlines_of_the_object(tmp_path):
    document = roto.RotoDocument(100, 60, points={1001: [(10, 20, False), (50, 5, True)], 990: [(1, 1, False)]})
    document.shapes.append(roto.Shape("rectangle", keys={1003: [(10, 10), (30, 40)]}))
    document.shapes.append(roto.Shape("polygon", keys={1004: [(0, 0), (20, 0), (20, 20)]}))
    document.shapes.append(roto.Shape("ellipse", role="affected", keys={1004: [(0, 0), (9, 9)]}))
    document.shapes.append(roto.Shape("ellipse", keys={1004: [(40, 10), (50, 20)]}))
    spec = matte_spec("/shots/p.####.exr", 1001, 1005, document, str(tmp_path / "t"), "matte p", True, "its shadow")
    frames = [p.frame for p in spec.matte.prompts]
    assert frames == [1001, 1003, 1004, 1004]  # frame 990 lies outside the range; one outline per prompt
    prompts = {p.frame: p for p in reversed(spec.matte.prompts)}
    assert len(spec.matte.prompts[3].outline) == 96  # the second object shape on 1004: the ellipse
    assert [(p.x, p.y, p.negative) for p in prompts[1001].points] == [(10, 20, False), (50, 5, True)]
    box = prompts[1003].boxes[0]
    assert (box.x0, box.y0, box.x1, box.y1) == (10, 10, 30, 40)
    assert [(p.x, p.y) for p in prompts[1004].outline] == [(0, 0), (20, 0), (20, 20)]  # the affected shape is not
    assert spec.matte.propose_affected and spec.matte.affected_text == "its shadow"
    assert spec.name == "matte p" and spec.HasField("matte")
    assert spec.output.path_template.endswith("t/object.####.exr")
    assert spec.matte.affected_template.endswith("t/affected.####.exr")
    assert (spec.frames.first, spec.frames.last) == (1001, 1005)


def test_matte_polygon_follows_the_matte_with_few_vertices():
    yy, xx = np.mgrid[0:120, 0:160]
    disk = (((xx - 80) / 50.0) ** 2 + ((yy - 60) / 35.0) ** 2 <= 1).astype(np.float32)
    polygon = matte_polygon(disk)
    assert 8 <= len(polygon) <= 48
    shape = roto.Shape("polygon", keys={0: polygon})
    assert iou(roto.rasterise([shape], 0, 160, 120), disk) > 0.95
    assert matte_polygon(np.zeros((10, 10), np.float32)) == []


def _tracked_matte(window, qtbot, shot, affected: str = "", findings=()) -> Track:
    """Hand the panel a finished matte job as the daemon reports one (the shot's own mattes as its result)."""
    tracking = window.matte
    track = Track(shot.plate, shot.first, shot.last, shot.mask, affected, job_id="m1")
    tracking.tracks[track.job_id] = track
    job = pb.Job(id="m1", state=pb.JOB_STATE_SUCCEEDED)
    job.spec.output.path_template = shot.mask
    job.spec.matte.tracker = "classical"
    job.result.output_pattern = shot.mask
    job.result.findings.extend(findings)
    with qtbot.waitSignal(tracking.tracked, timeout=5_000):
        tracking._finished(job)
    return track


def test_a_tracked_matte_becomes_the_forms_mask_in_the_tint_and_edits_as_roto(window, qtbot, tmp_path):
    shot = write_shot(tmp_path / "src", frames=5, width=120, height=72)
    window.set_values(FormValues(plate=shot.plate, use_roto=True))
    finding = pb.MatteFinding(check="edge", severity="warning", message="frame 1002: the object touches the edge")
    finding.frame = shot.first + 1
    with qtbot.waitSignal(window.viewer.frame_shown, timeout=15_000):
        _tracked_matte(window, qtbot, shot, affected=shot.affected, findings=[finding])
    values = window.form.values()
    assert values.mask == shot.mask and values.affected == shot.affected and not values.use_roto
    assert window.viewer.canvas.mode == "quadmask"
    assert PROPOSAL_NOTE in window.viewer.status.text()
    # The clicked points stay drawn over the tint: a green + where the object was clicked.
    window.form.document.points[shot.first] = [(10.5, 10.5, False)]
    window.viewer.canvas.repaint()
    centre = window.viewer.canvas.to_widget(10.5, 10.5).toPoint()
    red, green, blue = pixel(window.viewer.canvas.grab().toImage(), centre.x(), centre.y())
    assert green > 150 and red < 150 and blue < 150
    listed = window.matte.controls.findings
    assert listed.isVisible() and "frame 1002" in listed.item(0).text() and "edge" in listed.item(0).text()
    # Edit as roto: the matte of the frame shown becomes a polygon keyed there, close to the matte.
    frame = shot.first + 2
    shown(qtbot, window.viewer, window.viewer.show_frame, frame)
    shape = window.matte.edit_as_roto()
    assert shape is not None and shape.kind == "polygon" and list(shape.keys) == [frame]
    assert window.viewer.canvas.mode == "roto" and window.viewer.canvas.selected is shape
    window.viewer.canvas.undo()  # one edit of the history, as a drawn shape
    assert shape.name not in [s.name for s in window.form.document.shapes]
    window.viewer.canvas.redo()
    shape = window.form.document.shapes[-1]
    truth = read_pixels(shot.mask.replace("####", f"{frame:04d}"))[..., 0]
    assert iou(roto.rasterise([shape], frame, shot.width, shot.height), truth) > 0.85
    # It is an outline prompt for the next track.
    spec = matte_spec(shot.plate, shot.first, shot.last, window.form.document, str(tmp_path / "t"), "m")
    assert any(p.frame == frame and len(p.outline) == len(shape.keys[frame]) for p in spec.matte.prompts)


def test_track_without_prompts_says_what_to_do(window, qtbot, tmp_path):
    shot = write_shot(tmp_path / "src", frames=3)
    window.set_values(FormValues(plate=shot.plate))
    assert window.matte.track() is None
    assert "click points on the object" in window.matte.controls.state.text()


def test_track_on_a_daemon_without_matte_jobs_says_so_and_submits_nothing(served, qtbot, tmp_path):
    from support.old_daemon import OldDaemon
    from voidlink.panel.window import PanelWindow

    front = OldDaemon(served.address)
    panel = PanelWindow(front.address, refresh_ms=0)
    qtbot.addWidget(panel)
    try:
        shot = write_shot(tmp_path / "src", frames=3)
        panel.set_values(FormValues(plate=shot.plate))
        panel.ensure_document().points[shot.first] = [(20.0, 25.0, False)]
        with qtbot.waitSignal(panel.service.submit_failed, timeout=15_000):
            assert panel.matte.track() is not None
            assert not panel.matte.controls.track_button.isEnabled()  # one track per click, off the GUI thread
        assert "too old for matte jobs" in panel.matte.controls.state.text()
        assert panel.matte.controls.track_button.isEnabled()
        assert front.submitted == []  # never taken for a removal
    finally:
        panel.close()
        front.stop()


def test_track_end_to_end_on_the_daemon(window, served, qtbot, tmp_path):
    shot = write_shot(tmp_path / "src", frames=6, width=96, height=64)
    window.set_values(FormValues(plate=shot.plate, output=str(tmp_path / "out" / "sh_void_v001.####.exr")))
    document = window.ensure_document()
    size = max(6, shot.height // 5)
    document.points[shot.first] = [(8 + size / 2, shot.height // 3 + size / 2, False), (80, 8, True)]
    window.matte.controls.propose.setChecked(True)
    with qtbot.waitSignal(window.matte.tracked, timeout=TRACK_TIMEOUT_MS) as tracked:
        track = window.matte.track()
        assert track is not None
    assert tracked.args[0] is track
    rows = [window.queue.jobs[job_id].spec.name for job_id in window.queue.jobs]
    assert any(name.startswith("matte ") for name in rows)
    pattern = window.form.values().mask
    assert pattern.endswith("object.####.exr") and not window.form.values().use_roto
    scores = []
    for frame in range(shot.first, shot.last + 1):
        matte = read_pixels(pattern.replace("####", f"{frame:04d}"))[..., 0]
        truth = read_pixels(shot.mask.replace("####", f"{frame:04d}"))[..., 0]
        scores.append(iou(matte, truth))
    assert min(scores) > 0.5, scores
    assert window.viewer.canvas.mode == "quadmask"
    values = window.form.values()
    assert values.affected.endswith("affected.####.exr") and os.path.exists(values.affected.replace("####", "1001"))
    qtbot.waitUntil(lambda: PROPOSAL_NOTE in window.viewer.status.text(), timeout=15_000)
    job = window.queue.jobs[track.job_id]
    findings = window.matte.controls.findings
    assert findings.count() == len(job.result.findings)  # each of the quadmask checks' findings is listed
