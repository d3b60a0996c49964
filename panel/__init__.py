"""The VOID panel: PySide6 (or PySide2) widgets that talk to a daemon through `voidlink.bridge` only.

    from voidlink.panel import open_panel
    window = open_panel()          # inside a host's Qt application, or standalone

Qt is imported when a widget is made, not when this package is, so hosts can import it to check
for it cheaply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from .form import FormValues
    from .window import PanelWindow


def open_panel(address: Optional[str] = None, values: Optional[FormValues] = None) -> PanelWindow:
    """Show the panel (pre-filled with a `form.FormValues` when given) and return its window."""
    from .qt import application
    from .window import PanelWindow

    application()
    window = PanelWindow(address)
    if values is not None:
        window.set_values(values)
    window.show()
    return window
