"""Helpers of the panel's tests: wait for the viewer to draw, read a pixel of a grab."""

from __future__ import annotations

from voidlink.panel.qt import QtGui


def shown(qtbot, viewer, action, *args) -> None:
    """Run `action(*args)` and wait until the viewer has drawn the frame it asked for."""
    with qtbot.waitSignal(viewer.frame_shown, timeout=15_000):
        action(*args)


def pixel(image: QtGui.QImage, x: int, y: int) -> tuple[int, int, int]:
    colour = image.pixelColor(x, y)
    return colour.red(), colour.green(), colour.blue()
