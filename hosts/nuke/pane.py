"""The panel as a Nuke pane (Window ▸ Custom ▸ VOID), registered the way Nuke registers Python panels.

    import voidlink.hosts.nuke.pane as pane
    pane.register()                       # in menu.py: adds the pane to Nuke's Custom windows
    pane.show_job(job_id)                 # e.g. when a VoidRemove node is selected

Nuke creates the widget itself from the class path given to `registerWidgetAsPanel`, so the class
takes no arguments; the last one made is kept to route `show_job` to.
"""

from __future__ import annotations

from typing import Any, Optional

from voidlink.panel.qt import QtWidgets
from voidlink.panel.window import PanelWindow

PANE_ID = "uk.voidlink.VoidPanel"
PANE_TITLE = "VOID"
WIDGET_PATH = "voidlink.hosts.nuke.pane.VoidPane"

_current: Optional[VoidPane] = None


class VoidPane(PanelWindow):
    """The panel, opened on its queue (the viewer follows the job a host asks for)."""

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        global _current
        super().__init__(None, parent)
        self.show_tab("queue")
        _current = self


def register(nukescripts_module: Any = None) -> Any:
    """Register the pane with Nuke; returns what `registerWidgetAsPanel` returns (None unless create=True)."""
    if nukescripts_module is None:
        import nukescripts as nukescripts_module  # type: ignore[import-not-found]
    return nukescripts_module.panels.registerWidgetAsPanel(WIDGET_PATH, PANE_TITLE, PANE_ID, False)


def current_pane() -> Optional[VoidPane]:
    return _current


def show_job(job_id: str) -> bool:
    """Show this job in the open pane; False when no pane is open."""
    if _current is None:
        return False
    _current.open_job(job_id)
    return True
