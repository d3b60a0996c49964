"""The viewer's canvas: one frame drawn under a zoom and pan, the wipe, the roto shapes, the pixel under the cursor.

The view is fitted to the widget until the user zooms (the wheel, about the cursor) or pans (middle
drag, or Alt with the left button, as in Nuke); `fit()` (F) and `one_to_one()` (1:1) set it again.
Coordinates are image pixels, x right and y down from the top-left corner, whatever the zoom.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .qt import QtCore, QtGui, QtWidgets, Signal
from .rotoedit import RotoEditing

ZOOM_STEP = 1.25  # per wheel notch
ZOOM_RANGE = (1 / 64, 64.0)
BACKGROUND = QtGui.QColor(24, 24, 26)


class Canvas(RotoEditing, QtWidgets.QWidget):
    """Draws the before image left of the wipe line and the after image right of it; in roto mode the
    mouse draws and edits shapes (keys land on the current frame)."""

    shapes_changed = Signal()  # an edit of the roto
    selection_changed = Signal()
    view_changed = Signal()  # zoom or pan
    hovered = Signal(float, float)  # the image pixel under the cursor

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self._init_roto()
        self.before: Optional[QtGui.QImage] = None
        self.after: Optional[QtGui.QImage] = None
        self.image_size: Optional[tuple[int, int]] = None  # full size of the frame shown, in plate pixels
        self.pixels: Optional[np.ndarray] = None  # scene-linear pixels of the plate shown, every `step`th
        self.step = 1
        self.wipe = 0.5
        self.mode = "wipe"
        self.frame = 0
        self.loading = False  # the frame counter is ahead of the picture: say so on it
        self.fitted = True
        self.zoom = 1.0
        self.origin = QtCore.QPointF(0, 0)  # widget position of the image's top-left corner when not fitted
        self._pan_from: Optional[QtCore.QPointF] = None
        self._pan_start = QtCore.QPointF(0, 0)
        self.setMinimumSize(320, 200)
        self.setMouseTracking(True)
        self.setFocusPolicy(QtCore.Qt.FocusPolicy.StrongFocus)

    # -- geometry: image pixels <-> widget ---------------------------------------------------

    def _image_size(self) -> tuple[int, int]:
        if self.image_size is not None:
            return self.image_size
        if self.document is not None:
            return self.document.width, self.document.height
        return 1, 1

    def _transform(self) -> tuple[float, float, float]:
        if not self.fitted:
            return self.zoom, self.origin.x(), self.origin.y()
        w, h = self._image_size()
        scale = min(self.width() / w, self.height() / h)
        return scale, (self.width() - w * scale) / 2, (self.height() - h * scale) / 2

    @property
    def scale(self) -> float:
        """Widget pixels per image pixel (1.0 is 1:1)."""
        return self._transform()[0]

    def to_image(self, pos: QtCore.QPointF) -> tuple[float, float]:
        scale, ox, oy = self._transform()
        return (pos.x() - ox) / scale, (pos.y() - oy) / scale

    def to_widget(self, x: float, y: float) -> QtCore.QPointF:
        scale, ox, oy = self._transform()
        return QtCore.QPointF(ox + x * scale, oy + y * scale)

    # -- the view ------------------------------------------------------------------------------

    def fit(self) -> None:
        """The whole frame in the widget, centred; it stays fitted as the widget resizes."""
        self.fitted = True
        self._view_changed()

    def one_to_one(self) -> None:
        """One image pixel per widget pixel, about the widget's centre."""
        self.set_zoom(1.0, QtCore.QPointF(self.width() / 2, self.height() / 2))

    def set_zoom(self, zoom: float, about: Optional[QtCore.QPointF] = None) -> None:
        """Zoom so that the image point under `about` (widget position; default the centre) stays put."""
        about = about if about is not None else QtCore.QPointF(self.width() / 2, self.height() / 2)
        x, y = self.to_image(about)
        self.zoom = min(max(zoom, ZOOM_RANGE[0]), ZOOM_RANGE[1])
        self.origin = QtCore.QPointF(about.x() - x * self.zoom, about.y() - y * self.zoom)
        self.fitted = False
        self._view_changed()

    def pan_by(self, dx: float, dy: float) -> None:
        scale, ox, oy = self._transform()
        self.zoom, self.origin, self.fitted = scale, QtCore.QPointF(ox + dx, oy + dy), False
        self._view_changed()

    def _view_changed(self) -> None:
        self.view_changed.emit()
        self.update()

    def value_at(self, x: float, y: float) -> Optional[tuple[float, ...]]:
        """The scene-linear values of the plate at image pixel (x, y) (subsampled frames: the nearest kept pixel)."""
        if self.pixels is None:
            return None
        width, height = self._image_size()
        if not (0 <= x < width and 0 <= y < height):
            return None
        row = min(int(y) // self.step, self.pixels.shape[0] - 1)
        col = min(int(x) // self.step, self.pixels.shape[1] - 1)
        return tuple(float(v) for v in self.pixels[row, col])

    # -- painting ------------------------------------------------------------------------------

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        painter = QtGui.QPainter(self)
        painter.fillRect(self.rect(), BACKGROUND)
        scale, ox, oy = self._transform()
        w, h = self._image_size()
        target = QtCore.QRectF(ox, oy, w * scale, h * scale)
        # Zoomed in, pixels are shown as blocks (a host's viewer does not blur them).
        painter.setRenderHint(QtGui.QPainter.RenderHint.SmoothPixmapTransform, scale < 1.0)
        if self.before is not None:
            painter.drawImage(target, self.before)
        if self.mode == "wipe" and self.after is not None:
            self._paint_wipe(painter, target)
        if self.document is not None and self.mode == "roto":
            painter.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing, True)
            self.paint_roto(painter)
        elif self.document is not None and self.mode == "quadmask":
            # The tracker's prompts stay visible over the tracked matte's tint.
            painter.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing, True)
            self.paint_points(painter)
        if self.loading:
            painter.setPen(QtGui.QColor(255, 210, 90))
            painter.drawText(self.rect().adjusted(8, 6, -8, -6), QtCore.Qt.AlignmentFlag.AlignRight, "loading…")
        painter.end()

    def _paint_wipe(self, painter: QtGui.QPainter, target: QtCore.QRectF) -> None:
        cut = target.width() * self.wipe
        right = QtCore.QRectF(target.x() + cut, target.y(), target.width() - cut, target.height())
        source = QtCore.QRectF(
            self.after.width() * self.wipe, 0, self.after.width() * (1 - self.wipe), self.after.height()
        )
        painter.drawImage(right, self.after, source)
        painter.setPen(QtGui.QPen(QtGui.QColor(255, 255, 255), 2))
        painter.drawLine(
            QtCore.QPointF(target.x() + cut, target.top()), QtCore.QPointF(target.x() + cut, target.bottom())
        )
        painter.drawText(QtCore.QPointF(target.x() + 6, target.top() + 16), "before")
        painter.drawText(QtCore.QPointF(target.x() + cut + 6, target.top() + 16), "after")

    # -- mouse and keys ------------------------------------------------------------------------

    def _pans(self, event) -> bool:
        buttons = event.button() | event.buttons()
        alt = event.modifiers() & QtCore.Qt.KeyboardModifier.AltModifier
        return bool(buttons & QtCore.Qt.MouseButton.MiddleButton) or bool(
            alt and buttons & QtCore.Qt.MouseButton.LeftButton
        )

    def wheelEvent(self, event) -> None:  # noqa: N802
        notches = event.angleDelta().y() / 120.0
        if notches:
            self.set_zoom(self.scale * ZOOM_STEP**notches, event.position())

    def mousePressEvent(self, event) -> None:  # noqa: N802
        self.setFocus()
        if self._pans(event):
            self._pan_from = self._pan_start = event.position()
            return
        pointing = self.mode == "roto" and self.document is not None and self.tool == "points"
        if pointing and event.button() == QtCore.Qt.MouseButton.RightButton:
            self.roto_press(event.position(), negative=True)
            return
        if event.button() != QtCore.Qt.MouseButton.LeftButton:
            return
        if self.mode == "roto" and self.document is not None:
            shift = bool(event.modifiers() & QtCore.Qt.KeyboardModifier.ShiftModifier)
            self.roto_press(event.position(), negative=shift)
        elif self.mode == "wipe":
            self._set_wipe(event.position().x())

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        pos = event.position()
        self.hovered.emit(*self.to_image(pos))
        if self._pan_from is not None:
            delta = pos - self._pan_from
            self._pan_from = pos
            self.pan_by(delta.x(), delta.y())
        elif self.mode == "roto":
            self.roto_move(pos)
        elif self.mode == "wipe" and event.buttons() & QtCore.Qt.MouseButton.LeftButton:
            self._set_wipe(pos.x())

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        if self._pan_from is not None:
            self._pan_from = None
            # Alt+click without a drag is no pan: with the points tool it is a negative point, as Shift+click.
            moved = event.position() - self._pan_start
            if (
                self.mode == "roto"
                and self.document is not None
                and self.tool == "points"
                and event.button() == QtCore.Qt.MouseButton.LeftButton
                and abs(moved.x()) + abs(moved.y()) < 3
            ):
                self.roto_press(event.position(), negative=True)
            return
        if self.mode == "roto" and event.button() == QtCore.Qt.MouseButton.LeftButton:
            self.roto_release(event.position())

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802
        if self.mode == "roto" and event.button() == QtCore.Qt.MouseButton.LeftButton:
            self.roto_double_click(event.position())

    def keyPressEvent(self, event) -> None:  # noqa: N802
        key, mods = event.key(), event.modifiers()
        ctrl = bool(mods & QtCore.Qt.KeyboardModifier.ControlModifier)
        shift = bool(mods & QtCore.Qt.KeyboardModifier.ShiftModifier)
        if ctrl and key == QtCore.Qt.Key.Key_Z:
            self.redo() if shift else self.undo()
        elif ctrl and key == QtCore.Qt.Key.Key_Y:
            self.redo()
        elif key == QtCore.Qt.Key.Key_Escape:
            self.cancel_pending()
        elif key in (QtCore.Qt.Key.Key_Delete, QtCore.Qt.Key.Key_Backspace) and self.selected is not None:
            self.delete_key() if shift else self.delete_selected()
        else:
            super().keyPressEvent(event)  # the viewer's keys (frames, play, view) are handled above

    def _set_wipe(self, x: float) -> None:
        scale, ox, _ = self._transform()
        w, _ = self._image_size()
        self.wipe = min(max((x - ox) / (w * scale), 0.0), 1.0)
        self.update()
