"""The panel's roto: keys, the matte between them, drawing on the viewer, and every edit autosaved."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from support.panel import shown  # noqa: E402
from support.shots import read_pixels, write_shot  # noqa: E402
from voidlink.panel import roto  # noqa: E402
from voidlink.panel.form import FormValues  # noqa: E402
from voidlink.panel.qt import QtCore  # noqa: E402
from voidlink.panel.window import PanelWindow, save_screenshot  # noqa: E402
from voidlink.protos import pb  # noqa: E402

from voidlink import errors  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
JOB_TIMEOUT_MS = 60_000


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
    shown(qtbot, window.viewer, window.preview)
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
    shown(qtbot, viewer, viewer.slider.setValue, shot.last)
    viewer.tool.setCurrentText("select")  # drawing tools always draw: moving is the select tool's
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
    viewer.tool.setCurrentText("rectangle")
    shown(qtbot, viewer, viewer.slider.setValue, shot.first)
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
    np.testing.assert_allclose(polygon.keys[shot.first], [(70, 6), (90, 6), (80, 16)], atol=0.5)  # no stray point
    save_screenshot(window, str(artifacts / "panel-viewer-roto.png"))

    with qtbot.waitSignal(window.job_finished, timeout=JOB_TIMEOUT_MS) as finished:
        assert window.form.submit()
    job = finished.args[0]
    assert job.state == pb.JOB_STATE_SUCCEEDED, job.error.message
    roto_folder = tmp_path / "out" / "roto" / "clean"  # one folder per output: versions never share mattes
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
    # Opened from the queue, the job shows its shapes and keys; an edit then leaves the job's record as it was.
    queued = PanelWindow(window.service.address, refresh_ms=0)
    qtbot.addWidget(queued)
    shown(qtbot, queued.viewer, queued.show_job, job)
    assert queued.viewer.canvas.document.to_dict() == window.form.document.to_dict()
    assert queued.viewer.slider.keys == [shot.first, shot.last]
    recorded = (roto_folder / "roto.json").read_bytes()
    queued.viewer.canvas.document.shapes.pop()
    queued.viewer.canvas.shapes_changed.emit()
    assert queued.autosave.flush() == queued.autosave.scratch and (roto_folder / "roto.json").read_bytes() == recorded
    queued.close()


@pytest.fixture
def panel_data(tmp_path, monkeypatch):
    """The panel's data folder (where shapes drawn before the job has an output are kept), under this test's folder."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return tmp_path / "data" / "voidlink" / "panel"


def test_every_roto_edit_is_autosaved_as_the_jobs_roto_json(qtbot, tmp_path, panel_data):
    shot = write_shot(tmp_path / "src", frames=4)
    values = FormValues(
        plate=shot.plate,
        first=shot.first,
        last=shot.last,
        output=str(tmp_path / "out" / "clean.####.exr"),
        use_roto=True,
    )
    saved = tmp_path / "out" / "roto" / "clean" / "roto.json"  # where submit writes it, beside the roto mattes
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
    shown(qtbot, viewer, viewer.slider.setValue, shot.last)
    viewer.tool.setCurrentText("select")
    qtbot.mousePress(viewer.canvas, QtCore.Qt.MouseButton.LeftButton, pos=at(16, 28))
    qtbot.mouseRelease(viewer.canvas, QtCore.Qt.MouseButton.LeftButton, pos=at(56, 28))
    assert sorted(written()["shapes"][0]["keys"]) == [str(shot.first), str(shot.last)]
    # Keyed where it is, feathered, a second shape added, then deleted.
    shown(qtbot, viewer, viewer.slider.setValue, shot.first + 1)
    qtbot.mouseClick(viewer.key_button, QtCore.Qt.MouseButton.LeftButton)
    assert str(shot.first + 1) in written()["shapes"][0]["keys"]
    viewer.feather.setValue(9.0)
    assert written()["shapes"][0]["feather"] == 9.0
    viewer.tool.setCurrentText("rectangle")
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
    other.save(str(tmp_path / "other" / "roto" / "clean" / "roto.json"))
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
    assert failure.startswith(f"cannot autosave the roto to {blocker / 'out' / 'roto' / 'clean' / 'roto.json'}")
    assert str(unsaved) in failure and panel.form.message.text() == failure
    assert _saved_shapes(unsaved) == drawn

    # An output that can be written: the shapes move there, and the panel's own copy goes.
    output = tmp_path / "out" / "clean.####.exr"
    panel.set_values(FormValues(**{**stuck.__dict__, "output": str(output)}))
    assert panel.autosave.flush() == str(tmp_path / "out" / "roto" / "clean" / "roto.json")
    assert _saved_shapes(tmp_path / "out" / "roto" / "clean" / "roto.json") == drawn and not unsaved.exists()
    assert panel.form.message.text() == ""  # the failure shown earlier is over
    panel.close()
    again = _roto_panel(qtbot, FormValues(**{**stuck.__dict__, "output": str(output)}))
    assert again.form.document.to_dict() == drawn
    again.close()


def _saved_shapes(path: Path) -> dict:
    return roto.RotoDocument.load(str(path)).to_dict()


def _roto_panel(qtbot, values: FormValues) -> PanelWindow:
    panel = PanelWindow("127.0.0.1:9", refresh_ms=0)
    qtbot.addWidget(panel)
    panel.resize(900, 640)
    panel.show()
    panel.set_values(values)
    return panel


def test_each_version_of_a_roto_job_keeps_its_own_mattes(qtbot, tmp_path):
    """A second job on the plate (its output the next version) writes its roto mattes apart from the first's, which
    may still be queued to read them."""
    from voidlink.panel.form import JobForm

    shot = write_shot(tmp_path / "src", frames=2)
    form = JobForm()
    qtbot.addWidget(form)
    values = FormValues(plate=shot.plate, first=shot.first, last=shot.last, use_roto=True)
    first = form.output_template(values)
    first_mattes, first_file = form.roto_patterns(values), form.roto_file(values)
    form.taken.add(first)  # submitted, not written yet
    second = form.output_template(values)
    assert first != second and "_v001." in first and "_v002." in second
    second_mattes = form.roto_patterns(values)
    assert not {os.path.dirname(p) for p in first_mattes} & {os.path.dirname(p) for p in second_mattes}
    assert form.roto_file(values) != first_file
