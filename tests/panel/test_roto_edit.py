"""Roto editing on the viewer as in a host's roto node: separate select and draw tools, the outline while
dragging, undo/redo, key marks with jumps between keys, deleting a key, closing a polygon, the feather handle."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from support.panel import shown  # noqa: E402
from support.shots import write_shot  # noqa: E402
from voidlink.panel import roto  # noqa: E402
from voidlink.panel.qt import QtCore  # noqa: E402
from voidlink.panel.rotoedit import feather_handle  # noqa: E402
from voidlink.panel.viewer import Viewer  # noqa: E402

Key = QtCore.Qt.Key
Left = QtCore.Qt.MouseButton.LeftButton
CTRL = QtCore.Qt.KeyboardModifier.ControlModifier
SHIFT = QtCore.Qt.KeyboardModifier.ShiftModifier


@pytest.fixture
def drawing(qtbot, tmp_path):
    """A viewer in roto mode on a 5-frame shot, 4 widget pixels per image pixel."""
    shot = write_shot(tmp_path / "src", frames=5)
    viewer = Viewer()
    qtbot.addWidget(viewer)
    viewer.resize(900, 600)
    viewer.show()
    viewer.set_document(roto.RotoDocument(shot.width, shot.height))
    viewer.set_mode("roto")
    shown(qtbot, viewer, viewer.set_clips, shot.plate, "", shot.first, shot.last)
    viewer.canvas.resize(shot.width * 4, shot.height * 4)
    yield viewer, shot
    viewer.loader.stop()


def _at(viewer, x, y) -> QtCore.QPoint:
    return viewer.canvas.to_widget(x, y).toPoint()


def _drag(qtbot, viewer, start, end, middle=None) -> None:
    qtbot.mousePress(viewer.canvas, Left, pos=_at(viewer, *start))
    if middle is not None:
        middle()
    qtbot.mouseRelease(viewer.canvas, Left, pos=_at(viewer, *end))


def test_draw_tools_always_draw_and_select_moves_with_an_outline_while_dragging(drawing, qtbot):
    viewer, shot = drawing
    canvas, document = viewer.canvas, viewer.canvas.document
    _drag(qtbot, viewer, (8, 20), (40, 50))
    # A drag that starts inside a shape draws another one with a drawing tool.
    _drag(qtbot, viewer, (16, 28), (30, 40))
    assert [s.kind for s in document.shapes] == ["rectangle", "rectangle"]
    viewer.tool.setCurrentText("ellipse")
    outline = {}
    row = _at(viewer, 60, 10).y()

    def reds(image) -> int:
        """Pixels of the object role's red along the row where the ellipse's top will be."""
        colours = [image.pixelColor(_at(viewer, x, 10).x(), row) for x in range(52, 69)]
        return sum(1 for c in colours if c.red() > 180 and c.green() < 100)

    plain = reds(canvas.grab().toImage())

    def mid_drag():
        qtbot.mouseMove(canvas, _at(viewer, 70, 40))
        outline["drag"] = (canvas._drag.what, canvas.to_image(canvas._drag.now))
        outline["image"] = canvas.grab().toImage()

    _drag(qtbot, viewer, (50, 10), (70, 40), mid_drag)
    assert outline["drag"][0] == "draw" and outline["drag"][1] == pytest.approx((70, 40), abs=0.5)
    assert reds(outline["image"]) > plain  # the dashed outline of the ellipse being dragged is drawn
    assert document.shapes[-1].kind == "ellipse"
    # The select tool moves the shape under the cursor; the moved outline follows while dragging.
    viewer.tool.setCurrentText("select")
    first = document.shapes[0]
    moving = {}

    def follow():
        qtbot.mouseMove(canvas, _at(viewer, 12, 24))
        moving["what"] = canvas._drag.what

    _drag(qtbot, viewer, (10, 22), (14, 26), follow)
    assert moving["what"] == "move" and canvas.selected is first
    np.testing.assert_allclose(first.keys[shot.first], [(12, 24), (44, 54)], atol=0.5)
    assert len(document.shapes) == 3  # nothing drawn by the select tool
    # A click on nothing selects nothing.
    qtbot.mouseClick(canvas, Left, pos=_at(viewer, 90, 60))
    assert canvas.selected is None


def test_undo_and_redo_with_ctrl_z_and_ctrl_shift_z(drawing, qtbot):
    viewer, shot = drawing
    canvas, document = viewer.canvas, viewer.canvas.document
    changes = []
    canvas.shapes_changed.connect(lambda: changes.append(len(document.shapes)))
    _drag(qtbot, viewer, (8, 20), (24, 36))
    viewer.tool.setCurrentText("select")
    shown(qtbot, viewer, viewer.slider.setValue, shot.last)
    _drag(qtbot, viewer, (16, 28), (56, 28))  # moved on the last frame: a second key
    shape = document.shapes[0]
    assert sorted(shape.keys) == [shot.first, shot.last]
    moved = document.to_dict()
    qtbot.keyClick(canvas, Key.Key_Z, CTRL)
    assert sorted(document.shapes[0].keys) == [shot.first] and canvas.selected is document.shapes[0]
    qtbot.keyClick(canvas, Key.Key_Z, CTRL)
    assert document.shapes == []
    assert not canvas.undo()  # nothing left to undo
    qtbot.keyClick(canvas, Key.Key_Z, CTRL | SHIFT)
    qtbot.keyClick(canvas, Key.Key_Z, CTRL | SHIFT)
    assert document.to_dict() == moved
    assert not canvas.redo()
    # A new edit after an undo drops what could be redone.
    qtbot.keyClick(canvas, Key.Key_Z, CTRL)
    canvas.selected = document.shapes[0]
    viewer.feather.setValue(12.0)
    assert document.shapes[0].feather == 12.0 and not canvas.redo()
    qtbot.mouseClick(viewer.undo_button, Left)
    assert document.shapes[0].feather == 4.0
    assert changes and changes[-1] == 1  # every step told the autosave


def test_key_marks_jump_between_keys_and_delete_a_key(drawing, qtbot):
    viewer, shot = drawing
    canvas, document = viewer.canvas, viewer.canvas.document
    _drag(qtbot, viewer, (8, 20), (24, 36))
    shape = document.shapes[0]
    assert viewer.slider.keys == [shot.first]
    for frame in (shot.first + 2, shot.last):
        shown(qtbot, viewer, viewer.slider.setValue, frame)
        qtbot.mouseClick(viewer.key_button, Left)
    assert viewer.slider.keys == [shot.first, shot.first + 2, shot.last] == sorted(shape.keys)
    xs = [viewer.slider.key_x(k) for k in viewer.slider.keys]
    assert xs == sorted(xs) and xs[0] < xs[1] < xs[2]
    # Alt+Left / Alt+Right jump to the previous / next key (the buttons too); plain arrows step a frame.
    shown(qtbot, viewer, qtbot.keyClick, canvas, Key.Key_Left, QtCore.Qt.KeyboardModifier.AltModifier)
    assert canvas.frame == shot.first + 2
    shown(qtbot, viewer, qtbot.keyClick, canvas, Key.Key_Left, QtCore.Qt.KeyboardModifier.AltModifier)
    assert canvas.frame == shot.first
    assert viewer.jump_to_key(forward=False) is None  # none before the first
    shown(qtbot, viewer, qtbot.mouseClick, viewer.next_key_button, Left)
    assert canvas.frame == shot.first + 2
    # Shift+Del deletes the selected shape's key here (the mark goes); its only key stays: Del deletes the shape.
    qtbot.keyClick(canvas, Key.Key_Delete, SHIFT)
    assert sorted(shape.keys) == [shot.first, shot.last] and viewer.slider.keys == [shot.first, shot.last]
    shown(qtbot, viewer, viewer.slider.setValue, shot.last)
    qtbot.mouseClick(viewer.delete_key_button, Left)
    assert sorted(shape.keys) == [shot.first]
    shown(qtbot, viewer, viewer.slider.setValue, shot.first)
    assert not canvas.delete_key() and sorted(shape.keys) == [shot.first]
    qtbot.keyClick(canvas, Key.Key_Z, CTRL)
    assert sorted(document.shapes[0].keys) == [shot.first, shot.last]  # a deleted key is undone like any edit
    qtbot.keyClick(canvas, Key.Key_Delete)
    assert document.shapes == [] and viewer.slider.keys == []


def test_polygon_closes_without_a_stray_point(drawing, qtbot):
    viewer, shot = drawing
    canvas, document = viewer.canvas, viewer.canvas.document
    viewer.tool.setCurrentText("polygon")

    def double_click(x, y):
        """As Qt delivers a double-click: a press (and release), then the double-click event."""
        qtbot.mouseClick(canvas, Left, pos=_at(viewer, x, y))
        qtbot.mouseDClick(canvas, Left, pos=_at(viewer, x, y))

    # A double-click on the point just placed closes: its first press adds no second point there.
    for x, y in ((10, 6), (30, 6), (20, 16)):
        qtbot.mouseClick(canvas, Left, pos=_at(viewer, x, y))
    double_click(20, 16)
    np.testing.assert_allclose(document.shapes[-1].keys[shot.first], [(10, 6), (30, 6), (20, 16)], atol=0.5)
    # A double-click elsewhere places one last point there and closes.
    for x, y in ((40, 30), (60, 30), (60, 50)):
        qtbot.mouseClick(canvas, Left, pos=_at(viewer, x, y))
    double_click(40, 50)
    expected = [(40, 30), (60, 30), (60, 50), (40, 50)]
    np.testing.assert_allclose(document.shapes[-1].keys[shot.first], expected, atol=0.5)
    # A click on the first point closes, as in a host's roto; Escape drops an unfinished one.
    for x, y in ((70, 10), (90, 10), (80, 30), (70, 10)):
        qtbot.mouseClick(canvas, Left, pos=_at(viewer, x, y))
    np.testing.assert_allclose(document.shapes[-1].keys[shot.first], [(70, 10), (90, 10), (80, 30)], atol=0.5)
    qtbot.mouseClick(canvas, Left, pos=_at(viewer, 5, 50))
    qtbot.keyClick(canvas, Key.Key_Escape)
    assert canvas._pending == [] and len(document.shapes) == 3
    assert all(s.kind == "polygon" for s in document.shapes)


def test_the_feather_handle_widens_the_soft_edge(drawing, qtbot):
    viewer, shot = drawing
    canvas, document = viewer.canvas, viewer.canvas.document
    _drag(qtbot, viewer, (20, 20), (40, 40))
    shape = document.shapes[0]
    assert shape.feather == 4.0 and canvas.selected is shape
    viewer.tool.setCurrentText("select")
    hx, hy = feather_handle(shape, shot.first)
    assert (hx, hy) == pytest.approx((44, 30))
    _drag(qtbot, viewer, (hx, hy), (hx + 6, hy))
    assert shape.feather == pytest.approx(10.0) and viewer.feather.value() == pytest.approx(10.0)
    assert sorted(shape.keys) == [shot.first]  # the feather is the shape's, not a key
    _drag(qtbot, viewer, (hx + 6, hy), (20, hy))  # dragged inside the shape: no negative feather
    assert shape.feather == 0.0
    qtbot.keyClick(canvas, Key.Key_Z, CTRL)
    assert shape is not document.shapes[0] and document.shapes[0].feather == pytest.approx(10.0)
