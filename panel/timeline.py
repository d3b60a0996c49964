"""The viewer's time line: a frame slider with the roto's keyed frames marked on it, as a host's time bar shows them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Optional

from .qt import QtCore, QtGui, QtWidgets

KEY_COLOUR = QtGui.QColor(90, 200, 255)


class Timeline(QtWidgets.QSlider):
    """A horizontal QSlider over the frame range that also draws a tick for every key in `keys`."""

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(QtCore.Qt.Orientation.Horizontal, parent)
        self.keys: list[int] = []
        self.setMinimumHeight(22)

    def set_keys(self, keys: Iterable[int]) -> None:
        self.keys = sorted(set(keys))
        self.update()

    def key_x(self, frame: int) -> float:
        """The widget x of a frame's mark (where the slider's handle centre sits on that frame)."""
        option = QtWidgets.QStyleOptionSlider()
        self.initStyleOption(option)
        handle = self.style().subControlRect(
            QtWidgets.QStyle.ComplexControl.CC_Slider, option, QtWidgets.QStyle.SubControl.SC_SliderHandle, self
        )
        span = max(self.width() - handle.width(), 1)
        position = QtWidgets.QStyle.sliderPositionFromValue(self.minimum(), self.maximum(), frame, span)
        return position + handle.width() / 2

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().paintEvent(event)
        if not self.keys:
            return
        painter = QtGui.QPainter(self)
        painter.setPen(QtGui.QPen(KEY_COLOUR, 2))
        for frame in self.keys:
            if self.minimum() <= frame <= self.maximum():
                x = self.key_x(frame)
                painter.drawLine(QtCore.QPointF(x, 1), QtCore.QPointF(x, 6))
                painter.drawLine(QtCore.QPointF(x, self.height() - 6), QtCore.QPointF(x, self.height() - 1))
        painter.end()
