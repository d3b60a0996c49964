"""The viewer: before/after with a wipe, the quadmask over the plate, and roto drawing, with a frame slider."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from voidlink.errors import VoidlinkError

from . import roto
from .frames import ClipReader, build_quadmask, quadmask_overlay, to_display
from .qt import QtCore, QtGui, QtWidgets, Signal

MODES = ("wipe", "quadmask", "roto")
# Frames wider than this are shown subsampled (every 2nd, 3rd... pixel): a 4K plate is drawn on a
# panel a fraction of its size, and the display transform then costs a quarter or less.
DISPLAY_MAX_WIDTH = 2048
ROLE_COLOURS = {"object": QtGui.QColor(240, 60, 60), "affected": QtGui.QColor(60, 130, 255)}


def to_qimage(rgb: np.ndarray) -> QtGui.QImage:
    rgb = np.ascontiguousarray(rgb)
    h, w, _ = rgb.shape
    # QImage borrows the buffer: copy so the array may go away.
    return QtGui.QImage(rgb.data, w, h, 3 * w, QtGui.QImage.Format.Format_RGB888).copy()


@dataclass
class LoadedFrame:
    """What the loader hands the canvas: display images (maybe subsampled) and the frame's full size."""

    frame: int
    before: Optional[QtGui.QImage] = None
    after: Optional[QtGui.QImage] = None
    size: Optional[tuple[int, int]] = None
    error: str = ""


class FrameLoader(QtCore.QObject):
    """Reads frames on one worker thread; only the newest request is worked on, older ones are dropped,
    so scrubbing through 4K EXRs never stalls the event loop."""

    loaded = Signal(int, object)  # request id, LoadedFrame

    def __init__(self, parent: Optional[QtCore.QObject] = None) -> None:
        super().__init__(parent)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pending: Optional[tuple[int, Callable[[], LoadedFrame]]] = None
        self._thread: Optional[threading.Thread] = None
        self._stopped = False

    def request(self, request_id: int, load: Callable[[], LoadedFrame]) -> None:
        with self._lock:
            if self._stopped:
                return
            self._pending = (request_id, load)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="voidlink-panel-frames", daemon=True)
                self._thread.start()
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Drop what is asked and wait for the frame being read: no signal comes from the thread after
        this (one emitted while Qt and Python tear down can crash the process)."""
        with self._lock:
            self._stopped = True
            self._pending = None
            thread = self._thread
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            with self._lock:
                if self._stopped:
                    return
                pending, self._pending = self._pending, None
                self._wake.clear()
            if pending is None:
                continue
            request_id, load = pending
            try:
                result = load()
            except RuntimeError:  # the viewer was deleted while this frame was read
                return
            with self._lock:
                if self._stopped:
                    return
            try:
                self.loaded.emit(request_id, result)
            except RuntimeError:
                return


class Canvas(QtWidgets.QWidget):
    """Draws the before image left of the wipe line and the after image right of it; in roto mode the
    mouse draws and moves shapes (keys land on the current frame)."""

    shapes_changed = Signal()

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self.before: Optional[QtGui.QImage] = None
        self.after: Optional[QtGui.QImage] = None
        self.image_size: Optional[tuple[int, int]] = None  # full size of the frame shown, in plate pixels
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
        if self.image_size is not None:
            return self.image_size
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

    frame_changed = Signal(int)  # the slider moved: the frame asked for
    frame_shown = Signal(int)  # that frame is drawn (read on the loader thread)

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self.before_reader: Optional[ClipReader] = None
        self.after_reader: Optional[ClipReader] = None
        self.mask_reader: Optional[ClipReader] = None
        self.affected_reader: Optional[ClipReader] = None
        self.mask_is_quadmask = False
        self.first, self.last = 1, 1
        self.canvas = Canvas(self)
        self.loader = FrameLoader(self)
        self._request = 0
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
        self.loader.loaded.connect(self._loaded)

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
        # The old readers are not closed here: the loader thread may still be reading with them.
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
        if self.mode.currentIndex() == MODES.index(mode):
            self.show_frame(self.slider.value())
        else:
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

    def show_frame(self, frame: int) -> None:
        """Show this frame of every clip: read on the loader thread, drawn when it arrives (`frame_shown`).
        Errors go to the status line, naming the file and frame."""
        self.canvas.frame = frame
        self.frame_label.setText(f"frame {frame}  ({self.first}-{self.last})")
        self._request += 1
        readers = (self.before_reader, self.after_reader, self.mask_reader, self.affected_reader)
        load = _frame_job(frame, self.canvas.mode, self.exposure.value(), readers, self.mask_is_quadmask)
        self.loader.request(self._request, load)
        self.canvas.update()
        self.frame_changed.emit(frame)

    def _loaded(self, request_id: int, result: LoadedFrame) -> None:
        if request_id != self._request:
            return  # a newer frame was asked for meanwhile
        self.status.setText(result.error)
        self.canvas.before, self.canvas.after = result.before, result.after
        if result.size is not None:
            self.canvas.image_size = result.size
        self.canvas.update()
        self.frame_shown.emit(result.frame)


def _frame_job(
    frame: int, mode: str, exposure: float, readers: tuple, mask_is_quadmask: bool
) -> Callable[[], LoadedFrame]:
    before_reader, after_reader, mask_reader, affected_reader = readers

    def load() -> LoadedFrame:
        try:
            if before_reader is None:
                return LoadedFrame(frame)
            pixels, linear = before_reader.read(frame)
            height, width = pixels.shape[:2]
            step = max(1, math.ceil(width / DISPLAY_MAX_WIDTH))
            before = to_display(pixels[::step, ::step], linear=linear, exposure=exposure)
            after = None
            if mode == "wipe" and after_reader is not None:
                result, result_linear = after_reader.read(frame)
                after = to_display(result[::step, ::step], linear=result_linear, exposure=exposure)
            if mode == "quadmask" and mask_reader is not None:
                mask, _ = mask_reader.read(frame, matte=True)
                affected = affected_reader.read(frame, matte=True)[0] if affected_reader is not None else None
                if mask.shape[:2] != (height, width) or (
                    affected is not None and affected.shape[:2] != (height, width)
                ):
                    raise VoidlinkError(
                        f"frame {frame}: the mattes are {mask.shape[1]}x{mask.shape[0]} but the plate is "
                        f"{width}x{height}; the daemon resamples them only when the job allows it"
                    )
                quad = build_quadmask(
                    mask[::step, ::step], None if affected is None else affected[::step, ::step], mask_is_quadmask
                )
                before = quadmask_overlay(before, quad)
            return LoadedFrame(
                frame, to_qimage(before), to_qimage(after) if after is not None else None, (width, height)
            )
        except VoidlinkError as error:
            return LoadedFrame(frame, error=str(error))
        except Exception as error:  # a decoder's own failure: shown, and the next frame is tried afresh
            return LoadedFrame(frame, error=f"frame {frame}: {type(error).__name__}: {error}")

    return load
