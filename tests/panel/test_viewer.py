"""The viewer as a host's user drives it: zoom, pan, fit, 1:1, channels, exposure and gamma, the pixel read-out,
frame entry, stepping, play, the frame cache, and the quadmask shown over the plate even when a matte fails."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import OpenImageIO as oiio  # noqa: E402
import pytest  # noqa: E402
from support.panel import pixel, shown  # noqa: E402
from support.shots import read_pixels, write_exr, write_shot  # noqa: E402
from voidlink.panel.frames import QUADMASK_COLOURS, pick_channel, to_display  # noqa: E402
from voidlink.panel.qt import QtCore, QtGui, QtWidgets  # noqa: E402
from voidlink.panel.viewer import Viewer  # noqa: E402

Key = QtCore.Qt.Key


@pytest.fixture
def viewer(qtbot):
    widget = Viewer()
    qtbot.addWidget(widget)
    widget.resize(900, 600)
    widget.show()
    yield widget
    widget.loader.stop()


@pytest.fixture
def shot(tmp_path):
    return write_shot(tmp_path / "src", frames=4)


def _wheel(canvas, at: QtCore.QPointF, notches: int) -> None:
    event = QtGui.QWheelEvent(
        at,
        canvas.mapToGlobal(at),
        QtCore.QPoint(),
        QtCore.QPoint(0, 120 * notches),
        QtCore.Qt.MouseButton.NoButton,
        QtCore.Qt.KeyboardModifier.NoModifier,
        QtCore.Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QtWidgets.QApplication.sendEvent(canvas, event)


def test_zoom_about_the_cursor_pan_fit_and_one_to_one(viewer, shot, qtbot):
    shown(qtbot, viewer, viewer.set_clips, shot.plate, "", shot.first, shot.last)
    canvas = viewer.canvas
    canvas.resize(400, 300)
    assert canvas.fitted and canvas.scale == pytest.approx(min(400 / 96, 300 / 64))
    assert viewer.zoom_label.text() == "fit"
    # The wheel zooms about the cursor: the image pixel under it stays under it.
    cursor = QtCore.QPointF(130, 90)
    under = canvas.to_image(cursor)
    fitted = canvas.scale
    _wheel(canvas, cursor, 2)
    assert not canvas.fitted and canvas.scale == pytest.approx(fitted * 1.25**2)
    assert canvas.to_image(cursor) == pytest.approx(under)
    assert viewer.zoom_label.text() == f"{canvas.scale * 100:.0f}%"
    _wheel(canvas, cursor, -1)
    assert canvas.scale == pytest.approx(fitted * 1.25) and canvas.to_image(cursor) == pytest.approx(under)
    # Middle drag pans by the distance dragged, the zoom unchanged.
    before = canvas.to_widget(10, 10)
    zoom = canvas.scale
    qtbot.mousePress(canvas, QtCore.Qt.MouseButton.MiddleButton, pos=QtCore.QPoint(200, 150))
    qtbot.mouseMove(canvas, QtCore.QPoint(230, 170))
    qtbot.mouseRelease(canvas, QtCore.Qt.MouseButton.MiddleButton, pos=QtCore.QPoint(230, 170))
    after = canvas.to_widget(10, 10)
    assert (after.x() - before.x(), after.y() - before.y()) == pytest.approx((30, 20))
    assert canvas.scale == pytest.approx(zoom)
    # 1 shows one image pixel per screen pixel, about the centre; F fits again (and keeps fitting on resize).
    centre = canvas.to_image(QtCore.QPointF(200, 150))
    qtbot.keyClick(canvas, Key.Key_1)
    assert canvas.scale == 1.0 and canvas.to_image(QtCore.QPointF(200, 150)) == pytest.approx(centre)
    qtbot.keyClick(canvas, Key.Key_F)
    assert canvas.fitted and canvas.scale == pytest.approx(fitted)
    canvas.resize(500, 200)
    assert canvas.scale == pytest.approx(200 / 64) and canvas.to_widget(0, 0).x() == pytest.approx((500 - 300) / 2)
    qtbot.mouseClick(viewer.one_button, QtCore.Qt.MouseButton.LeftButton)
    assert canvas.scale == 1.0
    qtbot.keyClick(canvas, Key.Key_Plus)
    assert canvas.scale == 2.0
    qtbot.keyClick(canvas, Key.Key_Minus)
    qtbot.keyClick(canvas, Key.Key_Minus)
    assert canvas.scale == 0.5
    qtbot.mouseClick(viewer.fit_button, QtCore.Qt.MouseButton.LeftButton)
    assert canvas.fitted


def test_channel_views_exposure_gamma_and_the_pixel_read_out(viewer, shot, qtbot):
    shown(qtbot, viewer, viewer.set_clips, shot.plate, "", shot.first, shot.last)
    canvas = viewer.canvas
    plate = read_pixels(shot.plate.replace("####", str(shot.first)))
    x, y = 20, 9
    assert pixel(canvas.before, x, y) == tuple(int(v) for v in to_display(plate)[y, x])
    # R, G, B, A and Y (luminance) show one channel as grey; the same key again goes back to RGB.
    for key, channel in ((Key.Key_R, "r"), (Key.Key_G, "g"), (Key.Key_B, "b"), (Key.Key_Y, "luminance")):
        shown(qtbot, viewer, qtbot.keyClick, canvas, key)
        assert viewer.view.channel == channel
        grey = to_display(pick_channel(plate, channel))[y, x]
        assert pixel(canvas.before, x, y) == tuple(int(v) for v in grey) and grey[0] == grey[1] == grey[2]
    shown(qtbot, viewer, qtbot.keyClick, canvas, Key.Key_Y)
    assert viewer.view.channel == "rgb"
    shown(qtbot, viewer, qtbot.keyClick, canvas, Key.Key_A)
    assert pixel(canvas.before, x, y) == (0, 0, 0)  # no alpha in the plate: A is black, as in a host's viewer
    shown(qtbot, viewer, viewer.set_channel, "rgb")
    # Exposure (stops) and gamma act before the display encoding.
    shown(qtbot, viewer, viewer.exposure.setValue, 1.0)
    shown(qtbot, viewer, viewer.gamma.setValue, 2.0)
    expected = to_display(plate, exposure=1.0, gamma=2.0)[y, x]
    assert pixel(canvas.before, x, y) == tuple(int(v) for v in expected)
    assert expected[0] > to_display(plate)[y, x][0]
    # The read-out gives the scene-linear values of the plate under the cursor, whatever the view does to them.
    canvas.resize(96 * 4, 64 * 4)
    qtbot.mouseMove(canvas, canvas.to_widget(x + 0.5, y + 0.5).toPoint())
    text = viewer.readout.text()
    assert text.startswith(f"x {x} y {y}") and f"R {plate[y, x, 0]:.4f}" in text and f"B {plate[y, x, 2]:.4f}" in text
    qtbot.mouseMove(canvas, QtCore.QPoint(canvas.width() - 1, canvas.height() - 1))  # outside the image
    assert canvas.value_at(-1, 5) is None


def test_frame_entry_stepping_play_and_the_read_ahead_cache(viewer, shot, qtbot):
    shown(qtbot, viewer, viewer.set_clips, shot.plate, "", shot.first, shot.last)
    # The frames after the one shown are read ahead on the worker: stepping then draws from memory.
    qtbot.waitUntil(lambda: all(viewer.loader.has(f, "wipe") for f in range(shot.first, shot.last + 1)))
    canvas = viewer.canvas
    shown(qtbot, viewer, qtbot.keyClick, canvas, Key.Key_Right)
    assert canvas.frame == shot.first + 1 and viewer.frame_entry.value() == shot.first + 1
    assert viewer.slider.value() == shot.first + 1 and not canvas.loading
    shown(qtbot, viewer, qtbot.keyClick, canvas, Key.Key_Left)
    assert canvas.frame == shot.first
    shown(qtbot, viewer, qtbot.keyClick, canvas, Key.Key_Left)  # held at the first frame
    assert canvas.frame == shot.first
    # Typed frame numbers are asked for when entered; out of range they are held at the range's end.
    with qtbot.waitSignal(viewer.frame_shown, timeout=15_000) as drawn:
        viewer.frame_entry.setValue(shot.last)
    assert drawn.args == [shot.last] and viewer.slider.value() == shot.last
    assert viewer.frame_label.text().startswith(f"frame {shot.last}")
    # The counter moves at once; the loading sign shows until that frame is drawn.
    with qtbot.waitSignal(viewer.frame_shown, timeout=15_000):
        viewer.show_frame(shot.first + 2)
        assert canvas.loading and viewer.frame_entry.value() == shot.first + 2
    assert not canvas.loading
    # Space plays, looping from the last frame to the first; Space again stops.
    qtbot.keyClick(canvas, Key.Key_Space)
    assert viewer.playing and viewer.play_button.text() == "Stop"
    played: list[int] = []
    viewer.frame_shown.connect(played.append)
    qtbot.waitUntil(lambda: len(played) >= 3, timeout=15_000)
    assert played[:3] == [shot.last, shot.first, shot.first + 1]
    qtbot.keyClick(canvas, Key.Key_Space)
    assert not viewer.playing and viewer.play_button.text() == "Play"


def test_quadmask_over_the_plate_with_the_daemons_channel_rule_and_a_matte_that_fails(viewer, shot, qtbot, tmp_path):
    plate = read_pixels(shot.plate.replace("####", str(shot.first)))
    untinted = to_display(plate)
    obj = read_pixels(shot.mask.replace("####", str(shot.first)))[..., 0]
    ys, xs = np.nonzero(obj > 0.5)
    cx, cy = int(xs.mean()), int(ys.mean())
    # A matte with one channel named Y (as the demo's are): the daemon takes that channel, and so does the viewer.
    luma = tmp_path / "luma"
    luma.mkdir()
    for frame in range(shot.first, shot.last + 1):
        matte = read_pixels(shot.mask.replace("####", str(frame)))[..., :1]
        spec = oiio.ImageSpec(shot.width, shot.height, 1, "half")
        spec.channelnames = ("Y",)
        out = oiio.ImageOutput.create(str(luma / f"m.{frame:04d}.exr"))
        out.open(str(luma / f"m.{frame:04d}.exr"), spec)
        out.write_image(np.ascontiguousarray(matte))
        out.close()
    viewer.set_mode("quadmask")
    shown(qtbot, viewer, viewer.set_clips, shot.plate, "", shot.first, shot.last, str(luma / "m.####.exr"))
    assert viewer.status.text() == ""
    red = np.array(QUADMASK_COLOURS[0]) * 255
    tinted = np.array(pixel(viewer.canvas.before, cx, cy))
    assert np.abs(tinted - (untinted[cy, cx] * 0.45 + red * 0.55)).max() <= 2
    assert pixel(viewer.canvas.before, 2, 2) == tuple(int(v) for v in untinted[2, 2])  # keep: the plate as it is
    # The clip's channels option picks the matte's channel as it does for the daemon (here R of an RGBA file whose
    # alpha is empty: by default alpha is taken, and nothing is tinted).
    rgba = tmp_path / "rgba"
    rgba.mkdir()
    for frame in range(shot.first, shot.last + 1):
        matte = read_pixels(shot.mask.replace("####", str(frame)))[..., 0]
        write_exr(rgba / f"m.{frame:04d}.exr", np.stack([matte, matte * 0, matte * 0, matte * 0], axis=2))
    args = (shot.plate, "", shot.first, shot.last, str(rgba / "m.####.exr"))
    shown(qtbot, viewer, viewer.set_clips, *args)
    assert pixel(viewer.canvas.before, cx, cy) == tuple(int(v) for v in untinted[cy, cx])
    shown(qtbot, viewer, viewer.set_clips, *args, "", False, "R")
    assert np.abs(np.array(pixel(viewer.canvas.before, cx, cy)) - tinted).max() <= 2
    # A matte that cannot be used (the wrong size here): the plate stays in view, the reason beside it.
    small = tmp_path / "small"
    small.mkdir()
    for frame in range(shot.first, shot.last + 1):
        write_exr(small / f"m.{frame:04d}.exr", np.ones((16, 24), np.float32))
    shown(qtbot, viewer, viewer.set_clips, shot.plate, "", shot.first, shot.last, str(small / "m.####.exr"))
    canvas = viewer.canvas
    assert canvas.before is not None and pixel(canvas.before, cx, cy) == tuple(int(v) for v in untinted[cy, cx])
    assert "quadmask not shown" in viewer.status.text() and "24x16" in viewer.status.text()
    # A missing matte frame: named, and the plate still shown.
    missing = str(tmp_path / "nowhere" / "m.####.exr")
    shown(qtbot, viewer, viewer.set_clips, shot.plate, "", shot.first, shot.last, missing)
    assert canvas.before is not None and "quadmask not shown" in viewer.status.text()
    assert f"m.{shot.first}.exr" in viewer.status.text() or "nowhere" in viewer.status.text()
