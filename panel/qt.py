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

__all__ = ["BINDING", "QtCore", "QtGui", "QtWidgets", "Signal", "Slot", "application", "dark_palette", "host_look"]

# Greys of Nuke's and Resolve's interfaces: mid-dark panels, darker fields, an orange-free blue highlight.
DARK = {
    "Window": (50, 50, 50),
    "WindowText": (208, 208, 208),
    "Base": (35, 35, 35),
    "AlternateBase": (44, 44, 44),
    "ToolTipBase": (30, 30, 30),
    "ToolTipText": (220, 220, 220),
    "Text": (208, 208, 208),
    "Button": (58, 58, 58),
    "ButtonText": (208, 208, 208),
    "BrightText": (255, 90, 90),
    "Highlight": (64, 120, 190),
    "HighlightedText": (255, 255, 255),
    "Link": (110, 160, 230),
    "PlaceholderText": (120, 120, 120),
}
DISABLED = {"WindowText": (120, 120, 120), "Text": (120, 120, 120), "ButtonText": (120, 120, 120)}


def dark_palette() -> QtGui.QPalette:
    """A dark palette like the hosts' (for the panel standalone; inside a host the host's palette is kept)."""
    palette = QtGui.QPalette()
    role = QtGui.QPalette.ColorRole
    for name, rgb in DARK.items():
        palette.setColor(getattr(role, name), QtGui.QColor(*rgb))
    for name, rgb in DISABLED.items():
        palette.setColor(QtGui.QPalette.ColorGroup.Disabled, getattr(role, name), QtGui.QColor(*rgb))
    return palette


def host_look(app: QtWidgets.QApplication) -> None:
    """Dress an application the panel made itself like the hosts: Fusion style, the dark palette."""
    app.setStyle("Fusion")
    app.setPalette(dark_palette())


def application() -> QtWidgets.QApplication:
    """The running QApplication (a host's: its look is kept), or a new one dressed like the hosts when the
    panel runs standalone."""
    app = QtWidgets.QApplication.instance()
    if app is None:
        app = QtWidgets.QApplication(["voidlink"])
        host_look(app)
    return app
