"""Roto editing on the canvas: the select and draw tools, the outline while dragging, undo/redo and keys.

The tools are separate, as in a host's roto node: *select* picks a shape and moves it, one of its
points, or its feather handle (the diamond right of the shape: drag it out to widen the soft edge);
the draw tools (rectangle, ellipse: drag; polygon: click each point, double-click or click the first
point to close) always draw, also over another shape; *points* clicks the matte tracker's prompts on
the current frame (a click: the object is here; Shift, Alt or the right button: it is not; a click on
a point removes it). Every edit is one step of the history (Ctrl+Z undoes it, Ctrl+Shift+Z redoes
it); edits on a frame key the shape there.

`RotoEditing` is mixed into the canvas: it works in the canvas's coordinates (`to_image`,
`to_widget`) and emits its `shapes_changed` after every edit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from . import roto
from .qt import QtCore, QtGui

TOOLS = ("select", *roto.KINDS, "points")
ROLE_COLOURS = {"object": QtGui.QColor(240, 60, 60), "affected": QtGui.QColor(60, 130, 255)}
POINT_COLOURS = {False: QtGui.QColor(70, 230, 90), True: QtGui.QColor(240, 60, 60)}  # positive, negative
POINT_SIZE = 6.0  # widget pixels from a point's centre to the end of its + or -
REACH = 6.0  # widget pixels within which a click takes a handle
HISTORY_DEPTH = 200


def _snapshot(document: roto.RotoDocument) -> dict:
    return {
        "shapes": [s.to_dict() for s in document.shapes],
        "points": {frame: list(clicks) for frame, clicks in document.points.items()},
    }


class History:
    """Undo and redo as snapshots of the document's shapes and points: a roto is small, and a snapshot cannot
    drift out of step with the edit it undoes the way an inverse operation can."""

    def __init__(self) -> None:
        self.undo_stack: list[dict] = []
        self.redo_stack: list[dict] = []

    def record(self, document: roto.RotoDocument) -> None:
        """Call before an edit: the shapes as they are now become the step Ctrl+Z goes back to."""
        self.undo_stack.append(_snapshot(document))
        del self.undo_stack[:-HISTORY_DEPTH]
        self.redo_stack.clear()

    def clear(self) -> None:
        self.undo_stack.clear()
        self.redo_stack.clear()

    def step(self, document: roto.RotoDocument, back: bool) -> bool:
        """Undo (`back`) or redo one edit in place (the document object stays the one the form holds)."""
        source, target = (self.undo_stack, self.redo_stack) if back else (self.redo_stack, self.undo_stack)
        if not source:
            return False
        target.append(_snapshot(document))
        snapshot = source.pop()
        document.shapes[:] = [roto.Shape.from_dict(d) for d in snapshot["shapes"]]
        document.points.clear()
        document.points.update({frame: list(clicks) for frame, clicks in snapshot["points"].items()})
        return True


@dataclass
class Drag:
    what: str  # "draw", "move", "vertex", "feather"
    start: QtCore.QPointF
    now: QtCore.QPointF
    points: Optional[np.ndarray] = None  # the selected shape's points when the drag began
    vertex: Optional[int] = None


def feather_handle(shape: roto.Shape, frame: int) -> tuple[float, float]:
    """Where the feather handle sits, in image pixels: right of the outline by the feather's width."""
    outline = shape.outline_at(frame)
    return float(outline[:, 0].max() + shape.feather), float(outline[:, 1].mean())


class RotoEditing:
    """The canvas's roto state and gestures (a mixin: the canvas calls `_init_roto` and routes its mouse events)."""

    def _init_roto(self) -> None:
        self.document: Optional[roto.RotoDocument] = None
        self.tool = "rectangle"
        self.role = "object"
        self.feather = 4.0
        self.selected: Optional[roto.Shape] = None
        self.history = History()
        self._drag: Optional[Drag] = None
        self._pending: list[tuple[float, float]] = []

    # -- edits (each one a history step) -------------------------------------------------------

    def add_shape(self, kind: str, points: list[tuple[float, float]]) -> roto.Shape:
        assert self.document is not None
        self.history.record(self.document)
        count = sum(1 for s in self.document.shapes if s.role == self.role) + 1
        shape = roto.Shape(kind, self.role, self.feather, name=f"{self.role} {count}")
        shape.set_key(self.frame, points)
        self.document.shapes.append(shape)
        return shape

    def add_point(self, x: float, y: float, negative: bool = False) -> None:
        """A prompt on the current frame; a click on a point there removes that point instead."""
        assert self.document is not None
        self.history.record(self.document)
        clicks = self.document.points.setdefault(self.frame, [])
        pos = self.to_widget(x, y)
        near = [i for i, (px, py, _) in enumerate(clicks) if self._near(pos, px, py)]
        if near:
            del clicks[near[-1]]
        else:
            clicks.append((float(x), float(y), bool(negative)))
        if not clicks:
            del self.document.points[self.frame]
        self._edited()

    def key_selected(self) -> None:
        """Key the selected shape where it is now, on the current frame."""
        if self.selected is not None and self.document is not None:
            self.history.record(self.document)
            self.selected.set_key(self.frame, [tuple(p) for p in self.selected.points_at(self.frame)])
            self._edited()

    def delete_selected(self) -> None:
        if self.document is not None and self.selected in self.document.shapes:
            self.history.record(self.document)
            self.document.shapes.remove(self.selected)
        self.selected = None
        self._edited()

    def delete_key(self) -> bool:
        """Remove the selected shape's key on this frame (its only key stays: delete the shape instead)."""
        shape = self.selected
        if shape is None or self.document is None or self.frame not in shape.keys or len(shape.keys) < 2:
            return False
        self.history.record(self.document)
        del shape.keys[self.frame]
        self._edited()
        return True

    def set_selected_feather(self, value: float) -> None:
        if self.selected is not None and self.document is not None and self.selected.feather != value:
            self.history.record(self.document)
            self.selected.feather = float(value)
            self._edited()

    def undo(self) -> bool:
        return self._history_step(back=True)

    def redo(self) -> bool:
        return self._history_step(back=False)

    def _history_step(self, back: bool) -> bool:
        # The shapes become new objects: the selection stays on the same place in the list.
        index = self._selected_index
        if self.document is None or not self.history.step(self.document, back):
            return False
        self.selected = self.document.shapes[index] if index is not None and index < len(self.document.shapes) else None
        self._edited()
        return True

    @property
    def _selected_index(self) -> Optional[int]:
        if self.document is None or self.selected is None:
            return None
        for index, shape in enumerate(self.document.shapes):
            if shape is self.selected:
                return index
        return None

    def _edited(self) -> None:
        self.shapes_changed.emit()
        self.update()

    # -- keys ----------------------------------------------------------------------------------

    def key_frames(self) -> list[int]:
        """The frames keyed: the selected shape's, else every shape's (what the time line marks)."""
        if self.document is None:
            return []
        if self.selected is not None:
            return sorted(self.selected.keys)
        keyed = {frame for shape in self.document.shapes for frame in shape.keys}
        return sorted(keyed | set(self.document.points))

    def neighbour_key(self, forward: bool) -> Optional[int]:
        keys = self.key_frames()
        later = [k for k in keys if (k > self.frame if forward else k < self.frame)]
        if not later:
            return None
        return min(later) if forward else max(later)

    # -- hit tests -----------------------------------------------------------------------------

    def _shape_at(self, x: float, y: float) -> Optional[roto.Shape]:
        if self.document is None:
            return None
        width, height = self._image_size()
        col, row = min(max(int(x), 0), width - 1), min(max(int(y), 0), height - 1)
        for shape in reversed(self.document.shapes):
            if shape.keys and roto.rasterise_shape(shape, self.frame, width, height)[row, col] > 0.5:
                return shape
        return None

    def _near(self, pos: QtCore.QPointF, x: float, y: float) -> bool:
        handle = self.to_widget(x, y)
        return abs(handle.x() - pos.x()) <= REACH and abs(handle.y() - pos.y()) <= REACH

    def _vertex_at(self, pos: QtCore.QPointF) -> Optional[int]:
        if self.selected is None or not self.selected.keys:
            return None
        for index, (x, y) in enumerate(self.selected.points_at(self.frame)):
            if self._near(pos, x, y):
                return index
        return None

    # -- gestures ------------------------------------------------------------------------------

    def roto_press(self, pos: QtCore.QPointF, negative: bool = False) -> None:
        x, y = self.to_image(pos)
        if self.tool == "points":
            self.add_point(x, y, negative)
            return
        if self.tool == "polygon":
            if len(self._pending) >= 3 and self._near(pos, *self._pending[0]):
                self._close_polygon()  # a click on the first point closes, as in a host's roto
            else:
                self._pending.append((x, y))
                self.update()
            return
        if self.tool != "select":
            self._drag = Drag("draw", pos, pos)
            return
        shape = self.selected
        if shape is not None and shape.keys and self._near(pos, *feather_handle(shape, self.frame)):
            self._drag = Drag("feather", pos, pos)
            return
        vertex = self._vertex_at(pos)
        if vertex is not None:
            self._drag = Drag("vertex", pos, pos, shape.points_at(self.frame), vertex)
            return
        self.selected = self._shape_at(x, y)
        if self.selected is not None:
            self._drag = Drag("move", pos, pos, self.selected.points_at(self.frame))
        self._edited_selection()

    def roto_move(self, pos: QtCore.QPointF) -> None:
        if self._drag is not None:
            self._drag.now = pos
            self.update()

    def roto_release(self, pos: QtCore.QPointF) -> None:
        drag, self._drag = self._drag, None
        if drag is None or self.document is None:
            return
        drag.now = pos
        x0, y0 = self.to_image(drag.start)
        x1, y1 = self.to_image(pos)
        if drag.what == "draw":
            if abs(x1 - x0) > 2 and abs(y1 - y0) > 2:
                self.selected = self.add_shape(self.tool, [(x0, y0), (x1, y1)])
                self._edited()
            else:
                self.update()
            return
        if self.selected is None or (x1, y1) == (x0, y0):
            self.update()
            return
        self.history.record(self.document)
        if drag.what == "feather":
            self.selected.feather = max(0.0, self.selected.feather + (x1 - x0))
        else:
            self.selected.set_key(self.frame, [tuple(p) for p in self._dragged(drag)])
        self._edited()

    def roto_double_click(self, pos: QtCore.QPointF) -> None:
        if self.tool != "polygon":
            return
        # The double-click's own first press has already placed a point where it was made: when that
        # lands on the point before it (the user double-clicked the last point), it is a duplicate.
        if len(self._pending) >= 2 and self._near(self.to_widget(*self._pending[-2]), *self._pending[-1]):
            self._pending.pop()
        if len(self._pending) >= 3:
            self._close_polygon()

    def cancel_pending(self) -> None:
        self._pending, self._drag = [], None
        self.update()

    def _close_polygon(self) -> None:
        self.selected = self.add_shape("polygon", self._pending)
        self._pending = []
        self._edited()

    def _edited_selection(self) -> None:
        """The selection changed (no edit): the time line's key marks follow it."""
        self.selection_changed.emit()
        self.update()

    def _dragged(self, drag: Drag) -> np.ndarray:
        x0, y0 = self.to_image(drag.start)
        x1, y1 = self.to_image(drag.now)
        moved = drag.points.copy()
        if drag.vertex is None:
            moved += (x1 - x0, y1 - y0)
        else:
            moved[drag.vertex] += (x1 - x0, y1 - y0)
        return moved

    # -- painting ------------------------------------------------------------------------------

    def paint_roto(self, painter: QtGui.QPainter) -> None:
        assert self.document is not None
        for shape in self.document.shapes:
            if shape.keys:
                self._paint_shape(painter, shape)
        self.paint_points(painter)
        drag = self._drag
        dashed = QtGui.QPen(QtGui.QColor(255, 255, 255), 1.5, QtCore.Qt.PenStyle.DashLine)
        painter.setBrush(QtCore.Qt.BrushStyle.NoBrush)
        if drag is not None and drag.what == "draw":
            # The outline of the shape being drawn follows the cursor.
            painter.setPen(QtGui.QPen(ROLE_COLOURS[self.role], 1.5, QtCore.Qt.PenStyle.DashLine))
            box = QtCore.QRectF(drag.start, drag.now).normalized()
            painter.drawEllipse(box) if self.tool == "ellipse" else painter.drawRect(box)
        elif drag is not None and drag.what in ("move", "vertex") and self.selected is not None:
            preview = roto.Shape(self.selected.kind, keys={0: [tuple(p) for p in self._dragged(drag)]})
            painter.setPen(dashed)
            painter.drawPolygon(QtGui.QPolygonF([self.to_widget(x, y) for x, y in preview.outline_at(0)]))
        if self._pending:
            painter.setPen(QtGui.QPen(ROLE_COLOURS[self.role], 1.5, QtCore.Qt.PenStyle.DashLine))
            painter.drawPolyline(QtGui.QPolygonF([self.to_widget(x, y) for x, y in self._pending]))
            for x, y in self._pending:
                painter.drawEllipse(self.to_widget(x, y), 3.0, 3.0)

    def paint_points(self, painter: QtGui.QPainter) -> None:
        """The tracker's prompts on this frame: a green + where the object is, a red - where it is not."""
        if self.document is None:
            return
        for x, y, negative in self.document.points.get(self.frame, []):
            centre = self.to_widget(x, y)
            # A dark outline under the mark keeps it readable on a bright plate and in the tint.
            for colour, width in ((QtGui.QColor(0, 0, 0, 180), 4.5), (POINT_COLOURS[negative], 2.0)):
                painter.setPen(QtGui.QPen(colour, width))
                painter.drawLine(centre + QtCore.QPointF(-POINT_SIZE, 0), centre + QtCore.QPointF(POINT_SIZE, 0))
                if not negative:
                    painter.drawLine(centre + QtCore.QPointF(0, -POINT_SIZE), centre + QtCore.QPointF(0, POINT_SIZE))

    def _paint_shape(self, painter: QtGui.QPainter, shape: roto.Shape) -> None:
        colour = QtGui.QColor(ROLE_COLOURS[shape.role])
        polygon = QtGui.QPolygonF([self.to_widget(x, y) for x, y in shape.outline_at(self.frame)])
        fill = QtGui.QColor(colour)
        fill.setAlpha(70)
        painter.setPen(QtGui.QPen(colour, 3 if shape is self.selected else 1.5))
        painter.setBrush(fill)
        painter.drawPolygon(polygon)
        keyed = self.frame in shape.keys
        if shape is self.selected or keyed:
            # Handles: filled on a keyed frame, hollow where the shape is interpolated.
            painter.setBrush(colour if keyed else QtCore.Qt.BrushStyle.NoBrush)
            for x, y in shape.points_at(self.frame):
                painter.drawEllipse(self.to_widget(x, y), 3.5, 3.5)
        if shape is self.selected:
            hx, hy = feather_handle(shape, self.frame)
            edge, handle = self.to_widget(hx - shape.feather, hy), self.to_widget(hx, hy)
            if self._drag is not None and self._drag.what == "feather":
                handle = QtCore.QPointF(max(self._drag.now.x(), edge.x()), handle.y())
            painter.setPen(QtGui.QPen(colour, 1, QtCore.Qt.PenStyle.DotLine))
            painter.drawLine(edge, handle)
            painter.setBrush(colour)
            corners = ((0, -5), (5, 0), (0, 5), (-5, 0))
            diamond = [QtCore.QPointF(handle.x() + dx, handle.y() + dy) for dx, dy in corners]
            painter.drawPolygon(QtGui.QPolygonF(diamond))
