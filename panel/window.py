"""The VOID panel: job form, viewer (wipe, quadmask, roto, matte tracking) and queue around one JobService."""

from __future__ import annotations

import os
from typing import Optional

from voidlink.protos import pb
from voidlink.protos.clips import clip_media
from voidlink.protos.vocabulary import TERMINAL

from voidlink import errors

from . import roto
from .autosave import RotoAutosave
from .form import FormValues, JobForm
from .frames import ClipReader
from .matte import MatteTracking
from .qt import QtCore, QtGui, QtWidgets, Signal
from .queue import QueueView
from .service import JobService
from .viewer import Viewer

TABS = ("job", "viewer", "queue")
QShortcut = getattr(QtGui, "QShortcut", None) or QtWidgets.QShortcut  # QtWidgets' in Qt 5
REFRESH_MS = 1000


def clip_path(clip: pb.ClipSpec) -> str:
    if not clip.otio_json.strip():
        return ""
    try:
        return clip_media(clip.otio_json).path
    except ValueError:
        return ""


class PanelWindow(QtWidgets.QWidget):
    """The whole panel. Hosts pre-fill it with `set_values` and hear about their jobs through `job_finished`."""

    job_submitted = Signal(object)  # pb.Job
    job_finished = Signal(object)  # pb.Job (terminal) of a job submitted from this panel

    def __init__(
        self, address: Optional[str] = None, parent: Optional[QtWidgets.QWidget] = None, refresh_ms: int = REFRESH_MS
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("VOID — object removal")
        self.service = JobService(address, self)
        self.form = JobForm()
        self.viewer = Viewer()
        self.queue = QueueView()
        self.mine: set[str] = set()
        # The form's clips as the viewer last took them (followed, previewed, or left for a job): the viewer
        # follows the form again only once they change.
        self._form_clips: Optional[tuple] = None
        # Every roto edit reaches the disk shortly after: a crash of the host or the panel loses no drawing.
        self.autosave = RotoAutosave(parent=self)
        self._autosave_problem = ""
        self.tabs = QtWidgets.QTabWidget()
        self.tabs.addTab(self.form, "Job")
        self.tabs.addTab(self.viewer, "Viewer")
        self.tabs.addTab(self.queue, "Queue")
        self.connection = QtWidgets.QLabel(f"daemon {self.service.address}")
        self.connection.setStyleSheet("color: gray")
        self.start_button = QtWidgets.QPushButton("Start local daemon")
        self.start_button.setVisible(False)
        status = QtWidgets.QHBoxLayout()
        status.addWidget(self.connection, 1)
        status.addWidget(self.start_button)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.tabs, 1)
        layout.addLayout(status)
        self.resize(980, 680)
        self.matte = MatteTracking(self)

        self.form.remote_validate = self.service.validate
        self.service.checked.connect(self.form.daemon_answered)
        self.form.clips_changed.connect(self.follow_form)
        self.form.submit_requested.connect(self.service.submit)
        self.form.submit_requested.connect(self._submitting)
        self.viewer.canvas.shapes_changed.connect(self.autosave.changed)
        self.autosave.failed.connect(self._autosave_failed)
        self.autosave.saved.connect(self._autosaved)
        self.form.use_roto.toggled.connect(self._roto_toggled)
        self.form.preview_button.clicked.connect(self.preview)
        self.service.submitted.connect(self._submitted)
        self.service.submit_failed.connect(self.form.show_error)
        self.service.submit_failed.connect(self._resave_roto)
        self.service.progress.connect(self.queue.update_event)
        self.service.finished.connect(self._finished)
        self.service.jobs_listed.connect(self._listed)
        self.service.failed.connect(self._service_failed)
        self.service.job_ready.connect(self._job_ready)
        self.service.unreachable.connect(self._unreachable)
        self.service.daemon_ready.connect(self._daemon_ready)
        self.start_button.clicked.connect(self._start_daemon)
        self.queue.cancel_requested.connect(self.service.cancel)
        self.queue.resubmit_requested.connect(self.service.resubmit)
        self.queue.view_requested.connect(self.show_job)
        self._shortcuts()
        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(refresh_ms)
        self.timer.timeout.connect(self.service.refresh)
        if refresh_ms > 0:
            self.timer.start()
            self.service.refresh()

    # -- host API ------------------------------------------------------------------------------

    def set_values(self, values: FormValues) -> None:
        self.form.set_values(values)
        if values.plate:
            self.preview()
        self.show_tab("job")

    def _shortcuts(self) -> None:
        """The hosts' habits: Ctrl+Enter submits the form; in the queue Del cancels and Enter views the job."""
        keys = QtGui.QKeySequence
        for sequence in ("Ctrl+Return", "Ctrl+Enter"):
            shortcut = QShortcut(keys(sequence), self.form)
            shortcut.setContext(QtCore.Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(self.form.submit)
        for sequence, slot in (
            ("Del", self.queue.cancel_selected),
            ("Return", self.queue.view_selected),
            ("Enter", self.queue.view_selected),
        ):
            shortcut = QShortcut(keys(sequence), self.queue.table)
            shortcut.setContext(QtCore.Qt.ShortcutContext.WidgetShortcut)
            shortcut.activated.connect(slot)

    def follow_form(self) -> None:
        """The viewer shows the form's clips as they are now (the tab stays where the user is), when they changed.

        An edit that leaves them as they were (the prompt, the output) keeps the viewer where it is: on the
        frame the user went to, or on the job opened since the edit (its check comes a moment after typing
        stops, and must not take the viewer back from the job)."""
        values = self.form.values()
        if not values.plate or _clips_of(values) == self._form_clips:
            return
        self._show_form_clips(values)

    def _show_form_clips(self, values) -> None:
        """The form's plate and mattes (none while the roto stands for them) in the viewer."""
        self._form_clips = _clips_of(values)
        self.viewer.set_clips(
            before=values.plate,
            first=values.first,
            last=values.last,
            mask="" if values.use_roto else values.mask,
            affected="" if values.use_roto else values.affected,
        )

    def show_tab(self, name: str) -> None:
        self.tabs.setCurrentIndex(TABS.index(name))

    def ensure_document(self) -> roto.RotoDocument:
        """The roto document of this job, kept on disk by the autosave: the one saved for the job's output (by an
        earlier submit or autosave), else the one being drawn (it moves to this job), else a new one sized to the
        plate. Before the job has an output location it is the panel's unsaved roto (`autosave.scratch_path`)."""
        values = self.form.values()
        path = self.form.roto_file(values)
        document, from_scratch = self.form.document, False
        # A job whose roto was saved opens on it; the scratch file is read only when nothing is drawn yet.
        if document is None or (path is not None and path != self.autosave.path):
            saved = path or self.autosave.scratch
            if os.path.isfile(saved):
                try:
                    document, from_scratch = roto.RotoDocument.load(saved), path is None
                except errors.VoidlinkError as error:
                    self.form.show_error(error)
        if document is None:
            width, height = 1920, 1080
            if values.plate:
                try:
                    pixels, _ = ClipReader(values.plate).read(values.first)
                    height, width = pixels.shape[:2]
                except errors.VoidlinkError as error:
                    self.form.show_error(error)
            document = roto.RotoDocument(width, height)
        self.form.document = document
        self.autosave.attach(document, path, from_scratch=from_scratch)
        self.viewer.set_document(document)
        return document

    def preview(self) -> None:
        """Show the form's plate with its quadmask (or its roto) in the viewer."""
        values = self.form.values()
        if values.use_roto:
            self.ensure_document()
        self._show_form_clips(values)
        self.viewer.set_mode("roto" if values.use_roto else ("quadmask" if values.mask else "wipe"))
        self.show_tab("viewer")

    def show_job(self, job: pb.Job) -> None:
        """A job's plate before/after its result (or its quadmask while it has none).

        A job from the queue's list is a summary (no clips): the whole job is fetched first."""
        self._form_clips = _clips_of(self.form.values())  # the viewer leaves the form until its clips change
        if not job.spec.source.otio_json.strip():
            self.open_job(job.id)
            return
        frames = job.result.frames if job.result.output_pattern else job.spec.frames
        first, last = int(frames.first), int(frames.last)
        self.viewer.set_clips(
            before=clip_path(job.spec.source),
            after=job.result.output_pattern,
            first=first,
            last=last,
            mask=clip_path(job.spec.mask),
            affected=clip_path(job.spec.affected),
            mask_is_quadmask=job.spec.mask.matte.is_quadmask,
            mask_channels=job.spec.mask.channels,
            affected_channels=job.spec.affected.channels,
        )
        self._open_job_roto(job)
        self.viewer.set_mode("wipe" if job.result.output_pattern else "quadmask")
        self.show_tab("viewer")

    def _open_job_roto(self, job: pb.Job) -> None:
        """A job whose mattes were drawn in the panel opens with its shapes (the roto.json written beside them).

        That file is the record of what made the job's result: edits made now are kept in the panel's unsaved roto
        (and move to the next job submitted with them), never written back over it."""
        mask = clip_path(job.spec.mask)
        saved = os.path.join(os.path.dirname(mask), "roto.json") if mask else ""
        if not saved or not os.path.isfile(saved):
            return
        try:
            document = roto.RotoDocument.load(saved)
        except errors.VoidlinkError as error:
            self.viewer.status.setText(str(error))
            return
        self.form.document = document
        self.autosave.attach(document, None)
        self.viewer.set_document(document)

    def open_job(self, job_id: str) -> None:
        """Show a job by id (fetched on the worker; the viewer follows when it arrives)."""
        self.service.fetch(job_id)

    # -- service events ------------------------------------------------------------------------

    def _roto_toggled(self, on: bool) -> None:
        if on:
            self.ensure_document()

    def _submitting(self, _build: object) -> None:
        """A roto job writes its roto.json with its mattes: from now on the autosave keeps that file current."""
        values = self.form.values()
        if values.use_roto and self.form.document is not None:
            self.autosave.attach(self.form.document, self.form.roto_file(values))

    def _resave_roto(self, _result: object = None) -> None:
        """The submit's worker wrote the document as it was at the click: write the shapes as they are now."""
        self.autosave.changed()

    def _autosave_failed(self, message: str) -> None:
        self._autosave_problem = message
        self.form.message.setStyleSheet("color: #d33")
        self.form.message.setText(message)
        self.viewer.status.setText(message)

    def _autosaved(self, _path: str) -> None:
        """A save went through: a failure shown earlier no longer holds (other messages stay)."""
        for label in (self.form.message, self.viewer.status):
            if self._autosave_problem and label.text() == self._autosave_problem:
                label.setText("")
        self._autosave_problem = ""

    def _submitted(self, job: pb.Job) -> None:
        self._resave_roto()
        self.mine.add(job.id)
        self.form.taken.add(job.spec.output.path_template)
        self.queue.update_job(job)
        self.queue.select(job.id)
        self.form.message.setStyleSheet("")
        self.form.message.setText(f"Submitted job {job.id}.")
        self.form.submit_button.setEnabled(True)
        self.job_submitted.emit(job)

    def _finished(self, job: pb.Job) -> None:
        self.queue.update_job(job)
        if job.id in self.mine:
            self.job_finished.emit(job)

    def _job_ready(self, job: pb.Job) -> None:
        self.queue.update_job(job)
        self.queue.select(job.id)
        self.show_job(job)
        if job.state not in TERMINAL:
            self.service.watch(job.id)

    def _listed(self, jobs: list) -> None:
        self.start_button.setVisible(False)
        self.connection.setText(f"daemon {self.service.address} · {len(jobs)} job(s)")
        self.queue.update_jobs(jobs)
        self.form.taken.update(job.spec.output.path_template for job in jobs if job.spec.output.path_template)
        for job in jobs:  # follow running jobs started elsewhere too, for live progress
            if job.state not in TERMINAL:
                self.service.watch(job.id)

    def _service_failed(self, message: str) -> None:
        self.connection.setText(message)
        self.start_button.setEnabled(True)

    def _unreachable(self, message: str) -> None:
        self.connection.setText(message)
        self.start_button.setVisible(True)

    def _start_daemon(self) -> None:
        self.start_button.setEnabled(False)
        self.connection.setText(f"starting a daemon at {self.service.address}…")
        self.service.start_daemon()

    def _daemon_ready(self) -> None:
        self.start_button.setVisible(False)
        self.start_button.setEnabled(True)
        self.service.refresh()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        self.autosave.flush()
        self.timer.stop()
        self.service.close()
        self.viewer.loader.stop()
        super().closeEvent(event)


def save_screenshot(widget: QtWidgets.QWidget, path: str) -> str:
    """Render a widget offscreen to a PNG (its folder is made; written to a temporary name, then renamed)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if widget.isWindow():  # a child is drawn as it is laid out in its window; showing it would tear it out
        widget.show()
    QtWidgets.QApplication.processEvents()
    temp = os.path.join(folder, f".{os.path.basename(path)}.tmp.png")
    if not widget.grab().save(temp, "PNG"):
        raise errors.PermissionDenied(f"cannot write the screenshot {path}", reason="OUTPUT_NOT_WRITABLE", file=path)
    os.replace(temp, path)
    return path


def _clips_of(values) -> tuple:
    """What of the form the viewer shows: the plate, its mattes (or the roto standing for them) and the range."""
    return (values.plate, values.mask, values.affected, values.first, values.last, values.use_roto)
