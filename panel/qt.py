"""The one place the panel imports Qt: PySide6 where the host has it, else PySide2 (Nuke 15, older Resolve).

Everything else in the panel imports `QtCore`, `QtGui`, `QtWidgets`, `Signal` and `Slot` from here,
so the rest of the code never names a binding.
"""

from __future__ import annotations

try:
    from PySide6 import QtCore, QtGui, QtWidgets
    from PySide6.QtCore import Signal, Slot

    BINDING = "PySide6"
except ImportError:  # hosts that ship Qt 5 only
    from PySide2 import QtCore, QtGui, QtWidgets  # type: ignore[no-redef]
    from PySide2.QtCore import Signal, Slot  # type: ignore[no-redef]

    BINDING = "PySide2"

__all__ = ["BINDING", "QtCore", "QtGui", "QtWidgets", "Signal", "Slot", "application"]


def application() -> QtWidgets.QApplication:
    """The running QApplication, or a new one when the panel runs standalone."""
    app = QtWidgets.QApplication.instance()
    if app is None:
        app = QtWidgets.QApplication(["voidlink"])
    return app
