"""The queue: every job of the daemon with its state, progress and ETA; cancel, re-submit, open the output folder."""

from __future__ import annotations

import os
import time
from typing import Callable, Optional

from voidlink.protos import pb
from voidlink.protos.vocabulary import TERMINAL, state_name

from .qt import QtCore, QtGui, QtWidgets, Signal

QAction = getattr(QtGui, "QAction", None) or QtWidgets.QAction  # QtWidgets' in Qt 5

COLUMNS = ("Job", "Name", "State", "Progress", "ETA", "Submitted", "Output")
STATE_COLOURS = {
    "queued": QtGui.QColor(150, 150, 150),
    "running": QtGui.QColor(70, 140, 255),
    "succeeded": QtGui.QColor(60, 170, 80),
    "failed": QtGui.QColor(220, 60, 60),
    "cancelled": QtGui.QColor(200, 150, 40),
}


def format_submitted(created_at: float, now: Optional[float] = None) -> str:
    """When a job was submitted: the time of day today, else the date and time."""
    if created_at <= 0:
        return ""
    now = time.time() if now is None else now
    when = time.localtime(created_at)
    if time.strftime("%Y-%m-%d", when) == time.strftime("%Y-%m-%d", time.localtime(now)):
        return time.strftime("%H:%M:%S", when)
    return time.strftime("%Y-%m-%d %H:%M", when)


def open_folder_with_desktop(folder: str) -> bool:
    """Open a folder in the desktop's file browser; False when none could be started."""
    return bool(QtGui.QDesktopServices.openUrl(QtCore.QUrl.fromLocalFile(folder)))


def format_eta(seconds: float) -> str:
    if seconds < 0:
        return "–"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class QueueView(QtWidgets.QWidget):
    """A table of jobs fed by `update_jobs` (the daemon's list) and `update_event` (live progress)."""

    cancel_requested = Signal(str)
    resubmit_requested = Signal(object)  # pb.Job
    view_requested = Signal(object)  # pb.Job: show it in the viewer
    selection_changed = Signal(object)  # Optional[pb.Job]

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self.jobs: dict[str, pb.Job] = {}
        self._order: list[str] = []
        # How "open output folder" opens it (False: it could not); a host or a test may replace it.
        self.open_folder: Callable[[str], Optional[bool]] = open_folder_with_desktop
        self.problem = ""  # the last action's failure, shown under the table until the selection changes
        self.table = QtWidgets.QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.resubmit_button = QtWidgets.QPushButton("Re-submit")
        self.open_button = QtWidgets.QPushButton("Open output folder")
        self.view_button = QtWidgets.QPushButton("View")
        self.detail = QtWidgets.QLabel("")
        self.detail.setWordWrap(True)
        self.detail.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons = QtWidgets.QHBoxLayout()
        for button in (self.cancel_button, self.resubmit_button, self.open_button, self.view_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)
        layout.addWidget(self.detail)
        self.cancel_button.clicked.connect(self._cancel)
        self.resubmit_button.clicked.connect(self._resubmit)
        self.open_button.clicked.connect(self._open)
        self.view_button.clicked.connect(self._view)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.table.setContextMenuPolicy(QtCore.Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._context_menu)
        self.table.cellDoubleClicked.connect(self._double_clicked)
        self._update_buttons()

    # -- data ----------------------------------------------------------------------------------

    def update_jobs(self, jobs: list) -> None:
        """The daemon's list (newest first); jobs it no longer lists stay until the next list."""
        for job in jobs:
            self.jobs[job.id] = job
        ordered = sorted(self.jobs.values(), key=lambda j: j.created_at, reverse=True)
        self._order = [j.id for j in ordered]
        self._render()

    def update_job(self, job: pb.Job) -> None:
        self.update_jobs([job])

    def update_event(self, event: pb.JobEvent) -> None:
        """A progress event from a watcher: state, frames done, ETA of one job."""
        job = self.jobs.get(event.job_id)
        if job is None:
            job = pb.Job(id=event.job_id, created_at=time.time())
        job.state = event.state
        job.stage = event.stage or job.stage
        if event.frames_total:
            job.frames_done, job.frames_total = event.frames_done, event.frames_total
        job.eta_seconds = event.eta_seconds
        if event.message:
            job.message = event.message
        self.update_jobs([job])

    def selected(self) -> Optional[pb.Job]:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        return self.jobs.get(self._order[rows[0].row()])

    def select(self, job_id: str) -> None:
        if job_id in self._order:
            self.table.selectRow(self._order.index(job_id))

    # -- drawing -------------------------------------------------------------------------------

    def _render(self) -> None:
        selected = self.selected()
        self.table.setRowCount(len(self._order))
        for row, job_id in enumerate(self._order):
            job = self.jobs[job_id]
            state = state_name(job.state)
            total = max(job.frames_total, 0)
            done = min(job.frames_done, total) if total else 0
            values = (
                job.id[:8],
                job.spec.name or os.path.basename(job.spec.output.path_template),
                state + (f" · {job.stage}" if state == "running" and job.stage else ""),
                None,
                format_eta(job.eta_seconds) if state == "running" else "",
                format_submitted(job.created_at),
                job.result.output_pattern or job.spec.output.path_template,
            )
            for column, text in enumerate(values):
                if text is None:
                    continue
                item = self.table.item(row, column)
                if item is None:
                    item = QtWidgets.QTableWidgetItem()
                    self.table.setItem(row, column, item)
                item.setText(text)
                if column == 2:
                    item.setForeground(STATE_COLOURS.get(state, QtGui.QColor(200, 200, 200)))
            bar = self.table.cellWidget(row, 3)
            if not isinstance(bar, QtWidgets.QProgressBar):
                bar = QtWidgets.QProgressBar()
                bar.setTextVisible(True)
                self.table.setCellWidget(row, 3, bar)
            bar.setRange(0, max(total, 1))
            bar.setValue(total if job.state == pb.JOB_STATE_SUCCEEDED else done)
            bar.setFormat(f"{done}/{total}" if total else "–")
        if selected is not None and selected.id in self._order:
            self.table.blockSignals(True)
            self.table.selectRow(self._order.index(selected.id))
            self.table.blockSignals(False)
        self._update_buttons()

    def _update_buttons(self) -> None:
        job = self.selected()
        self.cancel_button.setEnabled(job is not None and job.state not in TERMINAL)
        self.resubmit_button.setEnabled(job is not None and job.state in TERMINAL and job.HasField("spec"))
        self.open_button.setEnabled(job is not None and bool(self._output_folder(job)))
        self.view_button.setEnabled(job is not None)
        if job is None:
            self.detail.setText("")
            return
        lines = [f"{job.id}  {state_name(job.state)}"]
        if self.problem:
            lines.insert(0, self.problem)
        if job.error.message:
            lines.append(job.error.message)
        elif job.message:
            lines.append(job.message)
        lines.extend(job.result.notes)
        self.detail.setText("\n".join(lines))

    def _output_folder(self, job: pb.Job) -> str:
        pattern = job.result.output_pattern or job.spec.output.path_template
        return os.path.dirname(pattern) if pattern else ""

    # -- actions -------------------------------------------------------------------------------

    def _selection_changed(self) -> None:
        self.problem = ""
        self.detail.setStyleSheet("")
        self._update_buttons()
        self.selection_changed.emit(self.selected())

    def _cancel(self) -> None:
        job = self.selected()
        if job is not None:
            self.cancel_requested.emit(job.id)

    def _resubmit(self) -> None:
        job = self.selected()
        if job is not None:
            self.resubmit_requested.emit(job)

    def _open(self) -> None:
        job = self.selected()
        if job is None or not self._output_folder(job):
            return
        folder = self._output_folder(job)
        if not os.path.isdir(folder):
            self.show_problem(f"Open output folder: {folder} does not exist (yet): the job has written nothing there")
            return
        try:
            opened = self.open_folder(folder)
        except OSError as error:
            self.show_problem(f"Open output folder: {folder}: {error.strerror or error}")
            return
        if opened is False:
            self.show_problem(
                f"Open output folder: no program here opens folders (no desktop file browser); the folder is {folder}"
            )

    def show_problem(self, message: str) -> None:
        """A failed action, shown in the panel (red, above the selected job's details)."""
        self.problem = message
        self._update_buttons()
        self.detail.setStyleSheet("color: #d33")
        if self.selected() is None:
            self.detail.setText(message)

    def cancel_selected(self) -> None:
        """Del: cancel the selected job (when it has not ended)."""
        job = self.selected()
        if job is not None and job.state not in TERMINAL:
            self.cancel_requested.emit(job.id)

    def _double_clicked(self, row: int, _column: int) -> None:
        self.table.selectRow(row)
        self._view()

    def view_selected(self) -> None:
        """Enter: show the selected job in the viewer."""
        self._view()

    def context_actions(self) -> list[QtGui.QAction]:
        """The right-click menu's actions for the selected job (enabled as the buttons are)."""
        job = self.selected()
        entries = (
            ("View", self._view, self.view_button.isEnabled()),
            ("Cancel", self._cancel, self.cancel_button.isEnabled()),
            ("Re-submit", self._resubmit, self.resubmit_button.isEnabled()),
            ("Open output folder", self._open, self.open_button.isEnabled()),
            ("Copy job id", lambda: QtWidgets.QApplication.clipboard().setText(job.id if job else ""), job is not None),
        )
        actions = []
        for text, slot, enabled in entries:
            action = QAction(text, self)
            action.setEnabled(enabled)
            action.triggered.connect(slot)
            actions.append(action)
        return actions

    def _context_menu(self, point: QtCore.QPoint) -> None:
        row = self.table.rowAt(point.y())
        if row >= 0:
            self.table.selectRow(row)
        menu = QtWidgets.QMenu(self)
        for action in self.context_actions():
            menu.addAction(action)
        menu.exec(self.table.viewport().mapToGlobal(point))
        menu.deleteLater()

    def _view(self) -> None:
        job = self.selected()
        if job is not None:
            self.view_requested.emit(job)
