"""Host look and habits: the dark palette standalone (the host's kept), shortcuts, the queue's right-click menu,
double-click to view, the submit time column, failures of Open output folder shown in the panel."""

from __future__ import annotations

import os
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from voidlink.panel import qt  # noqa: E402
from voidlink.panel.form import FormValues  # noqa: E402
from voidlink.panel.qt import QtCore, QtGui, QtWidgets  # noqa: E402
from voidlink.panel.queue import COLUMNS, format_submitted  # noqa: E402
from voidlink.protos import pb  # noqa: E402


def _job(job_id: str, state: int, output: str, created: float) -> pb.Job:
    job = pb.Job(id=job_id, state=state, created_at=created)
    job.spec.name = f"plate_void_{job_id}"
    job.spec.output.path_template = output
    return job


def test_dark_palette_standalone_and_the_hosts_kept(qapp):
    before = QtGui.QPalette(qapp.palette())
    assert qt.application() is qapp and qapp.palette() == before  # a running application keeps its look
    try:
        qt.host_look(qapp)
        window = qapp.palette().color(QtGui.QPalette.ColorRole.Window)
        text = qapp.palette().color(QtGui.QPalette.ColorRole.WindowText)
        assert window.lightness() < 80 and text.lightness() > 160
    finally:
        qapp.setPalette(before)


def test_queue_menu_double_click_shortcuts_and_submit_time(qtbot, window, tmp_path):
    queue = window.queue
    now = time.time()
    running = _job("aaa", pb.JOB_STATE_RUNNING, str(tmp_path / "missing" / "a.####.exr"), now - 5)
    done = _job("bbb", pb.JOB_STATE_SUCCEEDED, str(tmp_path / "b.####.exr"), now - 1)
    window.timer.stop()
    window.show_tab("queue")
    queue.update_jobs([running, done])
    submitted = COLUMNS.index("Submitted")
    assert queue.table.item(queue._order.index("aaa"), submitted).text() == format_submitted(running.created_at)
    assert format_submitted(now, now) == time.strftime("%H:%M:%S", time.localtime(now))
    assert format_submitted(now - 3 * 86400, now).count("-") == 2  # another day: the date too

    viewed, cancelled = [], []
    queue.view_requested.disconnect()
    queue.cancel_requested.disconnect()
    queue.view_requested.connect(viewed.append)
    queue.cancel_requested.connect(cancelled.append)

    row = queue._order.index("bbb")
    rect = queue.table.visualItemRect(queue.table.item(row, 1))
    qtbot.mouseClick(queue.table.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=rect.center())
    assert viewed == []  # one click selects
    qtbot.mouseDClick(queue.table.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=rect.center())
    assert [job.id for job in viewed] == ["bbb"]

    queue.select("aaa")
    actions = {action.text(): action for action in queue.context_actions()}
    assert list(actions) == ["View", "Cancel", "Re-submit", "Open output folder", "Copy job id"]
    assert actions["Cancel"].isEnabled() and not actions["Re-submit"].isEnabled()
    actions["Copy job id"].trigger()
    assert QtWidgets.QApplication.clipboard().text() == "aaa"

    queue.table.setFocus()
    qtbot.keyClick(queue.table, QtCore.Qt.Key.Key_Delete)
    assert cancelled == ["aaa"]
    qtbot.keyClick(queue.table, QtCore.Qt.Key.Key_Return)
    assert [job.id for job in viewed] == ["bbb", "aaa"]

    # Open output folder: a folder not there yet, then no program to open it: both said in the panel.
    queue.open_folder = lambda folder: True
    actions["Open output folder"].trigger()
    assert "does not exist" in queue.detail.text() and "#d33" in queue.detail.styleSheet()
    queue.select("bbb")
    assert "does not exist" not in queue.detail.text()  # a new selection starts clean
    queue.open_folder = lambda folder: False
    qtbot.mouseClick(queue.open_button, QtCore.Qt.MouseButton.LeftButton)
    assert "no program here opens folders" in queue.detail.text() and str(tmp_path) in queue.detail.text()


def test_ctrl_enter_submits_the_form(qtbot, window):
    window.form.set_values(FormValues())  # no plate: the submit is refused, which says it was asked
    window.show_tab("job")
    window.form.prompt.setFocus()
    with qtbot.waitSignal(window.form.validated, timeout=2_000) as refused:
        qtbot.keyClick(window.form.prompt, QtCore.Qt.Key.Key_Return, QtCore.Qt.KeyboardModifier.ControlModifier)
    assert refused.args[0].reason == "BAD_CLIP" and window.form.message.text().startswith("Plate: ")
