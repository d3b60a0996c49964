"""What the Workspace ▸ Scripts entry runs: the panel pre-filled from the current clip, the result laid back.

The script runs in its own process beside Resolve (free edition included), so the panel's Qt
event loop here never holds up Resolve's; the job runs in the daemon and is watched on a worker
thread, and Resolve is only called on this script's main thread, before the job and after it.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Optional

from voidlink.errors import VoidlinkError

from . import adapter

if TYPE_CHECKING:
    from voidlink.panel.window import PanelWindow


def open_for_current_clip(resolve: Any, address: Optional[str] = None) -> PanelWindow:
    """The panel for the current clip (raises ResolveError naming what is wrong); the result is placed when
    the job succeeds. Returns the panel window."""
    from voidlink.panel.form import FormValues
    from voidlink.panel.qt import application
    from voidlink.panel.window import PanelWindow

    clip = adapter.describe_item(resolve)
    application()
    window = PanelWindow(address)
    window.setWindowTitle(f"VOID — {clip.name} ({clip.timeline_name})")
    window.set_values(FormValues(**clip.form()))
    window.resolve_clip = clip
    window.placements = []

    def finished(job) -> None:
        if not job.result.output_pattern:
            return  # failed or cancelled: nothing to place, and the timeline stays as it was
        try:
            placement = adapter.import_result(
                resolve, clip, job.result.output_pattern, int(job.result.frames.first), int(job.result.frames.last)
            )
        except VoidlinkError as error:
            window.form.show_error(error)
            return
        window.placements.append(placement)
        window.form.message.setText(
            f"Placed the clean plate on video track {placement.track_index} at frame {placement.record_frame}."
        )

    window.job_finished.connect(finished)
    window.show()
    return window


def main(namespace: Optional[dict] = None, address: Optional[str] = None) -> int:
    """Entry point of the menu script: `namespace` is the script's globals (where Resolve puts `resolve`)."""
    from voidlink.panel.qt import QtWidgets, application

    app = application()
    try:
        resolve = adapter.get_resolve(namespace)
        window = open_for_current_clip(resolve, address)
    except VoidlinkError as error:
        QtWidgets.QMessageBox.warning(None, "VOID", str(error))
        print(f"VOID: {error}", file=sys.stderr)
        return 2
    window.raise_()
    return int(app.exec())
