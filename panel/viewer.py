"""The viewer: before/after with a wipe, the quadmask over the plate, and roto drawing, with a frame slider."""

from __future__ import annotations

from typing import Optional

import numpy as np

from voidlink.errors import VoidlinkError

from . import roto
from .frames import ClipReader, build_quadmask, quadmask_overlay, to_display
from .qt import QtCore, QtGui, QtWidgets, Signal

MODES = ("wipe", "quadmask", "roto")
ROLE_COLOURS = {"object": QtGui.QColor(240, 60, 60), "affected": QtGui.QColor(60, 130, 255)}


def to_qimage(rgb: np.ndarray) -> QtGui.QImage:
    rgb = np.ascontiguousarray(rgb)
    h, w, _ = rgb.shape
    # QImage borrows the buffer: copy so the array may go away.
    return QtGui.QImage(rgb.data, w, h, 3 * w, QtGui.QImage.Format.Format_RGB888).copy()


class Canvas(QtWidgets.QWidget):
    """Draws the before image left of the wipe line and the after image right of it; in roto mode the
    mouse draws and moves shapes (keys land on the current frame)."""

    shapes_changed = Signal()

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self.before: Optional[QtGui.QImage] = None
        self.after: Optional[QtGui.QImage] = None
        self.wipe = 0.5
        self.mode = "wipe"
        self.document: Optional[roto.RotoDocument] = None
        self.frame = 0
        self.tool = "rectangle"
        self.role = "object"
        self.feather = 4.0
        self.selected: Optional[roto.Shape] = None
        self._drag_start: Optional[QtCore.QPointF] = None
        self._drag_points: Optional[np.ndarray] = None
        self._drag_vertex: Optional[int] = None
        self._pending: list[tuple[float, float]] = []
        self.setMinimumSize(320, 200)
        self.setMouseTracking(True)
        self.setFocusPolicy(QtCore.Qt.FocusPolicy.StrongFocus)

    # -- geometry: image pixels <-> widget ---------------------------------------------------

    def _image_size(self) -> tuple[int, int]:
        image = self.before or self.after
        if image is not None:
            return image.width(), image.height()
        if self.document is not None:
            return self.document.width, self.document.height
        return 1, 1

    def _transform(self) -> tuple[float, float, float]:
        w, h = self._image_size()
        scale = min(self.width() / w, self.height() / h)
        return scale, (self.width() - w * scale) / 2, (self.height() - h * scale) / 2

    def to_image(self, pos: QtCore.QPointF) -> tuple[float, float]:
        scale, ox, oy = self._transform()
        return (pos.x() - ox) / scale, (pos.y() - oy) / scale

    def to_widget(self, x: float, y: float) -> QtCore.QPointF:
        scale, ox, oy = self._transform()
        return QtCore.QPointF(ox + x * scale, oy + y * scale)

    # -- painting ------------------------------------------------------------------------------

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        painter = QtGui.QPainter(self)
        painter.fillRect(self.rect(), QtGui.QColor(24, 24, 26))
        scale, ox, oy = self._transform()
        w, h = self._image_size()
        target = QtCore.QRectF(ox, oy, w * scale, h * scale)
        if self.before is not None:
            painter.drawImage(target, self.before)
        if self.mode == "wipe" and self.after is not None:
            cut = target.width() * self.wipe
            right = QtCore.QRectF(target.x() + cut, target.y(), target.width() - cut, target.height())
            source = QtCore.QRectF(self.after.width() * self.wipe, 0, self.after.width() * (1 - self.wipe), h)
            painter.drawImage(right, self.after, source)
            painter.setPen(QtGui.QPen(QtGui.QColor(255, 255, 255), 2))
            painter.drawLine(
                QtCore.QPointF(target.x() + cut, target.top()), QtCore.QPointF(target.x() + cut, target.bottom())
            )
            painter.drawText(QtCore.QPointF(target.x() + 6, target.top() + 16), "before")
            painter.drawText(QtCore.QPointF(target.x() + cut + 6, target.top() + 16), "after")
        if self.document is not None and self.mode == "roto":
            self._paint_shapes(painter)
        painter.end()

    def _paint_shapes(self, painter: QtGui.QPainter) -> None:
        assert self.document is not None
        for shape in self.document.shapes:
            if not shape.keys:
                continue
            colour = QtGui.QColor(ROLE_COLOURS[shape.role])
            outline = shape.outline_at(self.frame)
            polygon = QtGui.QPolygonF([self.to_widget(x, y) for x, y in outline])
            fill = QtGui.QColor(colour)
            fill.setAlpha(70)
            width = 3 if shape is self.selected else 1.5
            painter.setPen(QtGui.QPen(colour, width))
            painter.setBrush(fill)
            painter.drawPolygon(polygon)
            if shape is self.selected or self.frame in shape.keys:
                # Handles: filled on a keyed frame, hollow where the shape is interpolated.
                painter.setBrush(colour if self.frame in shape.keys else QtCore.Qt.BrushStyle.NoBrush)
                for x, y in shape.points_at(self.frame):
                    painter.drawEllipse(self.to_widget(x, y), 3.5, 3.5)
        if self._pending:
            painter.setPen(QtGui.QPen(ROLE_COLOURS[self.role], 1.5, QtCore.Qt.PenStyle.DashLine))
            points = [self.to_widget(x, y) for x, y in self._pending]
            painter.drawPolyline(QtGui.QPolygonF(points))

    # -- roto editing --------------------------------------------------------------------------

    def _shape_at(self, x: float, y: float) -> Optional[roto.Shape]:
        if self.document is None:
            return None
        for shape in reversed(self.document.shapes):
            if (
                shape.keys
                and roto.rasterise_shape(shape, self.frame, *self._image_size())[
                    min(max(int(y), 0), self._image_size()[1] - 1), min(max(int(x), 0), self._image_size()[0] - 1)
                ]
                > 0.5
            ):
                return shape
        return None

    def _vertex_at(self, pos: QtCore.QPointF, reach: float = 6.0) -> Optional[int]:
        """Index of the selected shape's point within `reach` widget pixels of `pos`."""
        if self.selected is None or not self.selected.keys:
            return None
        for index, (x, y) in enumerate(self.selected.points_at(self.frame)):
            handle = self.to_widget(x, y)
            if abs(handle.x() - pos.x()) <= reach and abs(handle.y() - pos.y()) <= reach:
                return index
        return None

    def mousePressEvent(self, event) -> None:  # noqa: N802
        if self.mode != "roto" or self.document is None:
            if self.mode == "wipe":
                self._set_wipe(event.position().x())
            return
        x, y = self.to_image(event.position())
        if self.tool == "polygon":
            self._pending.append((x, y))
            self.update()
            return
        vertex = self._vertex_at(event.position())
        if vertex is not None:
            self._drag_start = event.position()
            self._drag_points = self.selected.points_at(self.frame)
            self._drag_vertex = vertex
            return
        hit = self._shape_at(x, y)
        if hit is not None and not (event.modifiers() & QtCore.Qt.KeyboardModifier.ShiftModifier):
            self.selected = hit
            self._drag_start = event.position()
            self._drag_points = hit.points_at(self.frame)
        else:
            self.selected = None
            self._drag_start = event.position()
            self._drag_points = None
        self.update()

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        if self.mode == "wipe" and event.buttons():
            self._set_wipe(event.position().x())

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        if self.mode != "roto" or self.document is None or self._drag_start is None:
            return
        x0, y0 = self.to_image(self._drag_start)
        x1, y1 = self.to_image(event.position())
        if self._drag_points is not None and self.selected is not None:
            # Dragging a shape (or one of its points) keys the new position on the current frame.
            moved = self._drag_points.copy()
            if self._drag_vertex is None:
                moved += (x1 - x0, y1 - y0)
            else:
                moved[self._drag_vertex] += (x1 - x0, y1 - y0)
            self.selected.set_key(self.frame, [tuple(p) for p in moved])
        elif abs(x1 - x0) > 2 and abs(y1 - y0) > 2:
            self.selected = self.add_shape(self.tool, [(x0, y0), (x1, y1)])
        self._drag_start = None
        self._drag_points = None
        self._drag_vertex = None
        self.shapes_changed.emit()
        self.update()

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802
        if self.mode == "roto" and self.tool == "polygon" and len(self._pending) >= 3:
            self.selected = self.add_shape("polygon", self._pending)
            self._pending = []
            self.shapes_changed.emit()
            self.update()

    def keyPressEvent(self, event) -> None:  # noqa: N802
        if event.key() == QtCore.Qt.Key.Key_Escape:
            self._pending = []
            self.update()
        elif event.key() in (QtCore.Qt.Key.Key_Delete, QtCore.Qt.Key.Key_Backspace) and self.selected is not None:
            self.delete_selected()
        else:
            super().keyPressEvent(event)

    def add_shape(self, kind: str, points: list[tuple[float, float]]) -> roto.Shape:
        assert self.document is not None
        count = sum(1 for s in self.document.shapes if s.role == self.role) + 1
        shape = roto.Shape(kind, self.role, self.feather, name=f"{self.role} {count}")
        shape.set_key(self.frame, points)
        self.document.shapes.append(shape)
        return shape

    def key_selected(self) -> None:
        """Key the selected shape where it is now, on the current frame."""
        if self.selected is not None:
            self.selected.set_key(self.frame, [tuple(p) for p in self.selected.points_at(self.frame)])
            self.shapes_changed.emit()
            self.update()

    def delete_selected(self) -> None:
        if self.document is not None and self.selected in self.document.shapes:
            self.document.shapes.remove(self.selected)
        self.selected = None
        self.shapes_changed.emit()
        self.update()

    def _set_wipe(self, x: float) -> None:
        scale, ox, _ = self._transform()
        w, _ = self._image_size()
        self.wipe = min(max((x - ox) / (w * scale), 0.0), 1.0)
        self.update()


class Viewer(QtWidgets.QWidget):
    """Plate, result and mattes of one job on a frame slider."""

    frame_changed = Signal(int)

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self.before_reader: Optional[ClipReader] = None
        self.after_reader: Optional[ClipReader] = None
        self.mask_reader: Optional[ClipReader] = None
        self.affected_reader: Optional[ClipReader] = None
        self.mask_is_quadmask = False
        self.first, self.last = 1, 1
        self.canvas = Canvas(self)
        self.mode = QtWidgets.QComboBox()
        self.mode.addItems(["before / after", "quadmask", "roto"])
        self.exposure = QtWidgets.QDoubleSpinBox()
        self.exposure.setRange(-10, 10)
        self.exposure.setSingleStep(0.5)
        self.exposure.setPrefix("exposure ")
        self.slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.frame_label = QtWidgets.QLabel("frame –")
        self.status = QtWidgets.QLabel("")
        self.status.setWordWrap(True)

        self.tool = QtWidgets.QComboBox()
        self.tool.addItems(list(roto.KINDS))
        self.tool.setCurrentText("rectangle")
        self.role = QtWidgets.QComboBox()
        self.role.addItems(list(roto.ROLES))
        self.feather = QtWidgets.QDoubleSpinBox()
        self.feather.setRange(0, 200)
        self.feather.setValue(4.0)
        self.feather.setPrefix("feather ")
        self.key_button = QtWidgets.QPushButton("Key shape here")
        self.delete_button = QtWidgets.QPushButton("Delete shape")
        self.roto_bar = QtWidgets.QWidget()
        roto_row = QtWidgets.QHBoxLayout(self.roto_bar)
        roto_row.setContentsMargins(0, 0, 0, 0)
        for widget in (
            QtWidgets.QLabel("draw"),
            self.role,
            self.tool,
            self.feather,
            self.key_button,
            self.delete_button,
        ):
            roto_row.addWidget(widget)
        roto_row.addStretch(1)
        self.roto_bar.setVisible(False)

        top = QtWidgets.QHBoxLayout()
        top.addWidget(self.mode)
        top.addWidget(self.exposure)
        top.addStretch(1)
        top.addWidget(self.frame_label)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.roto_bar)
        layout.addWidget(self.canvas, 1)
        layout.addWidget(self.slider)
        layout.addWidget(self.status)

        self.mode.currentIndexChanged.connect(self._mode_changed)
        self.exposure.valueChanged.connect(lambda _v: self.show_frame(self.slider.value()))
        self.slider.valueChanged.connect(self.show_frame)
        self.tool.currentTextChanged.connect(lambda t: setattr(self.canvas, "tool", t))
        self.role.currentTextChanged.connect(lambda r: setattr(self.canvas, "role", r))
        self.feather.valueChanged.connect(self._feather_changed)
        self.key_button.clicked.connect(self.canvas.key_selected)
        self.delete_button.clicked.connect(self.canvas.delete_selected)

    # -- what to show -----------------------------------------------------------------------------

    def set_clips(
        self,
        before: str = "",
        after: str = "",
        first: int = 1,
        last: int = 1,
        mask: str = "",
        affected: str = "",
        mask_is_quadmask: bool = False,
    ) -> None:
        for reader in (self.before_reader, self.after_reader, self.mask_reader, self.affected_reader):
            if reader is not None:
                reader.close()
        self.before_reader = ClipReader(before) if before else None
        self.after_reader = ClipReader(after) if after else None
        self.mask_reader = ClipReader(mask) if mask else None
        self.affected_reader = ClipReader(affected) if affected else None
        self.mask_is_quadmask = mask_is_quadmask
        self.first, self.last = first, max(last, first)
        self.slider.blockSignals(True)
        self.slider.setRange(self.first, self.last)
        self.slider.setValue(self.first)
        self.slider.blockSignals(False)
        self.show_frame(self.first)

    def set_document(self, document: Optional[roto.RotoDocument]) -> None:
        self.canvas.document = document
        self.canvas.selected = None
        self.canvas.update()

    def set_mode(self, mode: str) -> None:
        self.mode.setCurrentIndex(MODES.index(mode))

    def _mode_changed(self, index: int) -> None:
        self.canvas.mode = MODES[index]
        self.roto_bar.setVisible(self.canvas.mode == "roto")
        self.show_frame(self.slider.value())

    def _feather_changed(self, value: float) -> None:
        self.canvas.feather = value
        if self.canvas.selected is not None:
            self.canvas.selected.feather = value
            self.canvas.shapes_changed.emit()

    def _read(self, reader: Optional[ClipReader], frame: int, matte: bool = False) -> Optional[np.ndarray]:
        if reader is None:
            return None
        pixels, linear = reader.read(frame, matte=matte)
        if matte:
            return pixels
        return to_display(pixels, linear=linear, exposure=self.exposure.value())

    def show_frame(self, frame: int) -> None:
        """Read this frame of every clip shown (errors go to the status line, naming file and frame)."""
        self.canvas.frame = frame
        self.frame_label.setText(f"frame {frame}  ({self.first}-{self.last})")
        mode = self.canvas.mode
        try:
            before = self._read(self.before_reader, frame)
            after = self._read(self.after_reader, frame) if mode == "wipe" else None
            if mode == "quadmask" and before is not None and self.mask_reader is not None:
                mask = self._read(self.mask_reader, frame, matte=True)
                affected = self._read(self.affected_reader, frame, matte=True)
                quad = build_quadmask(mask, affected, self.mask_is_quadmask)
                if quad.shape == before.shape[:2]:
                    before = quadmask_overlay(before, quad)
                else:
                    raise VoidlinkError(
                        f"the matte is {quad.shape[1]}x{quad.shape[0]} but the plate is "
                        f"{before.shape[1]}x{before.shape[0]} (frame {frame})"
                    )
            self.status.setText("")
        except VoidlinkError as error:
            self.status.setText(str(error))
            before = after = None
        self.canvas.before = to_qimage(before) if before is not None else None
        self.canvas.after = to_qimage(after) if after is not None else None
        self.canvas.update()
        self.frame_changed.emit(frame)
