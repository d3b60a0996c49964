"""The job form: what to remove from which plate, checked before it goes to the daemon."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Optional

from voidlink.protos import pb
from voidlink.protos.clips import ClipMedia

from voidlink import errors

from . import jobspec, roto
from .jobspec import FormValues
from .qt import QtCore, QtWidgets, Signal
from .validate import FIELD_LABELS, existing_frames, form_field, user_message, validate_spec, versioned_output

PROMPT_HINT = (
    "Describe the scene after removal, not the object: e.g. 'an empty street, wet asphalt', "
    "'a wooden table with nothing on it'."
)
BACKENDS = ("auto", "classical", "void")
QUALITIES = ("draft", "balanced", "best")
ERROR_STYLE = "border: 1px solid #d33"
WARNING_STYLE = "border: 1px solid #c90"
MESSAGE_LINES = 4  # the message area's fixed height: the buttons below it never move
EDIT_SETTLE_MS = 300  # an edit re-checks (and the viewer follows) once typing pauses this long
MEDIA_FILTER = "Images and movies (*.exr *.dpx *.tif *.tiff *.png *.jpg *.mov *.mp4 *.mxf);;All files (*)"


def plate_range(plate: str) -> Optional[tuple[int, int]]:
    """The first and last frame of a plate on disk (a sequence's numbers, a movie's length); None when it has
    none to read yet."""
    from voidlink.media import sequence

    try:
        media = sequence.discover(ClipMedia(path=plate), "spec.source")
    except (errors.VoidlinkError, OSError):
        return None
    if not media.frames:
        return None
    return media.first, media.last


def sequence_pattern_for(path: str) -> str:
    """A file picked from a sequence (`plate.1001.exr`) as its pattern (`plate.####.exr`)."""
    folder, name = os.path.split(path)
    stem, ext = os.path.splitext(name)
    digits = len(stem) - len(stem.rstrip("0123456789"))
    if digits == 0 or ext.lower() in (".mov", ".mp4", ".mxf", ".avi", ".mkv", ".m4v", ".webm"):
        return path
    return os.path.join(folder, stem[: len(stem) - digits] + "#" * digits + ext)


class PathField(QtWidgets.QWidget):
    """A line edit with a Browse button; a picked frame of a sequence becomes the sequence's pattern."""

    changed = Signal(str)

    def __init__(self, placeholder: str, parent: Optional[QtWidgets.QWidget] = None, save: bool = False) -> None:
        super().__init__(parent)
        self.edit = QtWidgets.QLineEdit()
        self.edit.setPlaceholderText(placeholder)
        self.button = QtWidgets.QPushButton("Browse…")
        self.save = save
        row = QtWidgets.QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.edit, 1)
        row.addWidget(self.button)
        self.button.clicked.connect(self._browse)
        self.edit.textChanged.connect(self.changed)

    def _browse(self) -> None:
        start = os.path.dirname(self.text()) or os.getcwd()
        if self.save:
            path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Output", start, "OpenEXR (*.exr)")
        else:
            path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Pick a frame or a movie", start, MEDIA_FILTER)
        if path:
            self.setText(sequence_pattern_for(path) if not self.save else path)

    def text(self) -> str:
        return self.edit.text().strip()

    def setText(self, text: str) -> None:  # noqa: N802 (Qt's naming)
        self.edit.setText(text)


class JobForm(QtWidgets.QWidget):
    """Plate, mattes (or roto), range, prompt, backend, output; Validate and Submit."""

    submit_requested = Signal(object)  # a callable returning the pb.JobSpec (runs on the worker)
    validated = Signal(object)  # None when fine, else the VoidlinkError (after the daemon's answer, when asked)
    clips_changed = Signal()  # plate, mattes or range changed (settled): the viewer follows

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self.document: Optional[roto.RotoDocument] = None
        self.labels: dict = {}
        # Outputs of jobs queued from here or listed by the daemon: a default output never reuses one.
        self.taken: set[str] = set()
        # Asks the daemon to check a spec (the panel sets it to its service's `validate`): called with a
        # callable building the spec and a ticket; the answer comes back through `daemon_answered`.
        self.remote_validate: Optional[Callable[[Callable[[], pb.JobSpec], int], object]] = None
        self._ticket = 0
        self._plate_range: Optional[tuple[int, int]] = None
        self._name = ""
        self.plate = PathField("/shots/sh010/plate.####.exr (or a movie)")
        self.mask = PathField("object matte: /shots/sh010/roto.####.exr")
        self.affected = PathField("optional: shadow/reflection matte")
        self.use_roto = QtWidgets.QCheckBox("Use the roto drawn in the viewer instead of matte clips")
        self.layers = QtWidgets.QCheckBox("Write the change as layers too (void.delta, void.change, void.quadmask)")
        self.first = QtWidgets.QSpinBox()
        self.last = QtWidgets.QSpinBox()
        for box in (self.first, self.last):
            box.setRange(-1_000_000, 10_000_000)
        self.first.setValue(1001)
        self.last.setValue(1001)
        self.prompt = QtWidgets.QPlainTextEdit()
        self.prompt.setPlaceholderText("an empty street, wet asphalt")
        self.prompt.setFixedHeight(64)
        hint = QtWidgets.QLabel(PROMPT_HINT)
        hint.setWordWrap(True)
        hint.setStyleSheet("color: gray")
        self.backend = QtWidgets.QComboBox()
        self.backend.addItems(list(BACKENDS))
        self.quality = QtWidgets.QComboBox()
        self.quality.addItems(list(QUALITIES))
        self.quality.setCurrentText("balanced")
        self.output = PathField(self.DEFAULT_OUTPUT_HINT, save=True)
        self.message = QtWidgets.QLabel("")
        self.message.setWordWrap(True)
        self.message.setAlignment(QtCore.Qt.AlignmentFlag.AlignLeft | QtCore.Qt.AlignmentFlag.AlignTop)
        self.message.setFixedHeight(self.message.fontMetrics().lineSpacing() * MESSAGE_LINES + 4)
        self.message.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.validate_button = QtWidgets.QPushButton("Validate")
        self.submit_button = QtWidgets.QPushButton("Submit")
        self.submit_button.setDefault(True)

        frames = QtWidgets.QHBoxLayout()
        frames.addWidget(self.first)
        frames.addWidget(QtWidgets.QLabel("to"))
        frames.addWidget(self.last)
        frames.addStretch(1)
        engine = QtWidgets.QHBoxLayout()
        engine.addWidget(self.backend)
        engine.addWidget(QtWidgets.QLabel("quality"))
        engine.addWidget(self.quality)
        engine.addStretch(1)
        grid = QtWidgets.QFormLayout()
        grid.addRow(FIELD_LABELS["plate"], self.plate)
        grid.addRow(FIELD_LABELS["mask"], self.mask)
        grid.addRow(FIELD_LABELS["affected"], self.affected)
        grid.addRow("", self.use_roto)
        grid.addRow(FIELD_LABELS["frames"], frames)
        grid.addRow(FIELD_LABELS["prompt"], self.prompt)
        grid.addRow("", hint)
        grid.addRow(FIELD_LABELS["backend"], engine)
        grid.addRow(FIELD_LABELS["output"], self.output)
        grid.addRow("", self.layers)
        self.preview_button = QtWidgets.QPushButton("Preview in viewer")
        buttons = QtWidgets.QHBoxLayout()
        buttons.addWidget(self.preview_button)
        buttons.addStretch(1)
        buttons.addWidget(self.validate_button)
        buttons.addWidget(self.submit_button)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(grid)
        layout.addWidget(self.message)
        layout.addLayout(buttons)
        layout.addStretch(1)
        self._fields = {
            "plate": self.plate.edit,
            "mask": self.mask.edit,
            "affected": self.affected.edit,
            "frames": self.first,
            "output": self.output.edit,
            "backend": self.backend,
            "prompt": self.prompt,
        }
        self.validate_button.clicked.connect(self.validate)
        self.submit_button.clicked.connect(self.submit)
        self.use_roto.toggled.connect(self._roto_toggled)
        self._settle = QtCore.QTimer(self)
        self._settle.setSingleShot(True)
        self._settle.setInterval(EDIT_SETTLE_MS)
        self._settle.timeout.connect(self._settled)
        self.plate.changed.connect(self._plate_changed)
        for signal in (
            self.mask.changed,
            self.affected.changed,
            self.output.changed,
            self.first.valueChanged,
            self.last.valueChanged,
            self.backend.currentTextChanged,
            self.prompt.textChanged,
            self.use_roto.toggled,
        ):
            signal.connect(self._edited)

    DEFAULT_OUTPUT_HINT = "default: <plate folder>/void/<plate>_void_v001.####.exr (next free version)"

    # -- values ------------------------------------------------------------------------------

    def set_values(self, values: FormValues) -> None:
        """Fill the form as given (a range left None is the plate's whole range)."""
        self.plate.blockSignals(True)
        self.plate.setText(values.plate)
        self.plate.blockSignals(False)
        self._plate_range = plate_range(values.plate) if values.plate else None
        self._update_output_hint(values.plate)
        self.mask.setText(values.mask)
        self.affected.setText(values.affected)
        whole = self._plate_range or (1001, 1001)
        self.first.setValue(whole[0] if values.first is None else values.first)
        self.last.setValue(whole[1] if values.last is None else values.last)
        self.prompt.setPlainText(values.prompt)
        self.backend.setCurrentText(values.backend)
        self.quality.setCurrentText(values.quality)
        self.output.setText(values.output)
        self.use_roto.setChecked(values.use_roto)
        self.layers.setChecked(values.layers)
        self.labels = dict(values.labels)
        self._name = values.name

    def values(self) -> FormValues:
        return FormValues(
            plate=self.plate.text(),
            mask=self.mask.text(),
            affected=self.affected.text(),
            first=self.first.value(),
            last=self.last.value(),
            prompt=self.prompt.toPlainText().strip(),
            backend=self.backend.currentText(),
            quality=self.quality.currentText(),
            output=self.output.text(),
            use_roto=self.use_roto.isChecked(),
            layers=self.layers.isChecked(),
            name=self._name,
            labels=dict(self.labels),
        )

    def _roto_toggled(self, on: bool) -> None:
        self.mask.setEnabled(not on)
        self.affected.setEnabled(not on)

    def _plate_changed(self, plate: str) -> None:
        """A new plate: its whole range goes into the form (a sequence's numbers, a movie's length)."""
        self._plate_range = plate_range(plate.strip()) if plate.strip() else None
        if self._plate_range is not None:
            self.first.blockSignals(True)
            self.last.blockSignals(True)
            self.first.setValue(self._plate_range[0])
            self.last.setValue(self._plate_range[1])
            self.first.blockSignals(False)
            self.last.blockSignals(False)
        self._update_output_hint(plate.strip())
        self._edited()

    def _update_output_hint(self, plate: str) -> None:
        hint = f"default: {versioned_output(plate, self.taken)}" if plate else self.DEFAULT_OUTPUT_HINT
        self.output.edit.setPlaceholderText(hint)

    def _edited(self, *_args: object) -> None:
        self._ticket += 1  # a daemon answer for the form as it was no longer holds
        self._settle.start()

    def _settled(self) -> None:
        """Typing paused: a message shown earlier is checked again (cleared once fixed); the viewer follows."""
        if self.message.text() and self.message.property("kind") in ("error", "warning"):
            error = self.check()
            if error is None:
                self._clear_marks()
                self.message.setText("")
                self.message.setProperty("kind", "")
            else:
                self.show_error(error)
        self.clips_changed.emit()

    # -- the spec ------------------------------------------------------------------------------

    def output_template(self, values: FormValues) -> str:
        """The output as typed, else the plate's next free versioned default (`…/void/<stem>_void_v003.####.exr`)."""
        return values.output or (versioned_output(values.plate, self.taken) if values.plate else "")

    def job_name(self, values: FormValues) -> str:
        return jobspec.job_name(values, self.output_template(values))

    def roto_patterns(self, values: FormValues) -> tuple[str, str]:
        return jobspec.roto_patterns(self.output_template(values))

    def roto_file(self, values: Optional[FormValues] = None) -> Optional[str]:
        """The job's roto.json (where submit and the autosave write it); None while the job has no output."""
        return jobspec.roto_file(self.output_template(values or self.values()))

    def build(
        self,
        values: Optional[FormValues] = None,
        write_roto: bool = True,
        document: Optional[roto.RotoDocument] = None,
    ) -> pb.JobSpec:
        """The JobSpec of the form (writing the roto mattes first when the job uses roto)."""
        values = values or self.values()
        return jobspec.build_form_spec(values, self.output_template(values), document or self.document, write_roto)

    def check(self, values: Optional[FormValues] = None) -> Optional[errors.VoidlinkError]:
        """The first problem with the form, worded as the daemon would word it; None when none is seen."""
        values = values or self.values()
        try:
            spec = self.build(values, write_roto=False)
        except errors.VoidlinkError as error:
            return error
        if values.use_roto:  # the mattes do not exist until submit writes them: check plate and output only
            spec.ClearField("mask")
            spec.mask.CopyFrom(spec.source)
            spec.ClearField("affected")
        return validate_spec(spec)

    # -- actions -------------------------------------------------------------------------------

    def _clear_marks(self) -> None:
        for widget in (*self._fields.values(), self.last):
            widget.setStyleSheet("")

    def _set_message(self, text: str, kind: str) -> None:
        colours = {"error": "#d33", "warning": "#c90", "ok": "#3a3"}
        self.message.setStyleSheet(f"color: {colours[kind]}" if kind in colours else "")
        self.message.setProperty("kind", kind)
        self.message.setText(text)
        self.message.setToolTip(text)

    def marked(self) -> list[str]:
        """The form fields marked as the ones to fix (for hosts and tests)."""
        names = [name for name, widget in self._fields.items() if widget.styleSheet() == ERROR_STYLE]
        if self.last.styleSheet() == ERROR_STYLE:
            names.append("last")
        return names

    def _targets(self, error: errors.VoidlinkError) -> list[QtWidgets.QWidget]:
        """The widgets an error points at: a range outside the plate marks the end that lies outside."""
        name = form_field(error.field or "")
        if name != "frames":
            return [self._fields[name]] if name in self._fields else []
        first, last = self.first.value(), self.last.value()
        if last < first:
            return [self.last]
        if self._plate_range is not None:
            outside = [
                box
                for box, bad in ((self.first, first < self._plate_range[0]), (self.last, last > self._plate_range[1]))
                if bad
            ]
            if outside:
                return outside
        return [self.first, self.last]

    def show_error(self, error: Optional[errors.VoidlinkError]) -> None:
        """Show the answer of a check: the error worded with the form's labels and its field marked, or ready."""
        self.submit_button.setEnabled(True)
        self._clear_marks()
        if error is None:
            values = self.values()
            if not values.prompt:
                self.prompt.setStyleSheet(WARNING_STYLE)
                self._set_message(
                    "Ready to submit, but the prompt is empty: VOID fills the hole from a description of the "
                    "scene after removal. " + PROMPT_HINT,
                    "warning",
                )
            else:
                self._set_message("Ready to submit.", "ok")
            return
        self._set_message(user_message(error), "error")
        for target in self._targets(error):
            target.setStyleSheet(ERROR_STYLE)

    def validate(self) -> Optional[errors.VoidlinkError]:
        """Check here (what the panel can see), then ask the daemon (backend, roots, what it sees on its disks).

        Returns the local answer; `validated` carries the final one (the daemon's, when it is asked)."""
        values = self.values()
        error = self.check(values)
        if error is not None or self.remote_validate is None or values.use_roto:
            self.show_error(error)
            self.validated.emit(error)
            return error
        self._ticket += 1
        self._set_message("Asking the daemon…", "")
        values.output = self.output_template(values)
        self.remote_validate(lambda: self.build(values, write_roto=False), self._ticket)
        return None

    def daemon_answered(self, ticket: int, error: Optional[errors.VoidlinkError]) -> None:
        """The daemon's answer to `validate` (dropped when the form changed since it was asked)."""
        if ticket != self._ticket:
            return
        self.show_error(error)
        self.validated.emit(error)

    def confirm_overwrite(self, template: str, present: list[str]) -> bool:
        """Ask before a job replaces files already at its output."""
        box = QtWidgets.QMessageBox(self)
        box.setIcon(QtWidgets.QMessageBox.Icon.Warning)
        box.setWindowTitle("Replace the existing result?")
        box.setText(f"{len(present)} frame(s) already exist at {template}.")
        box.setInformativeText("Replace them with this job's result? (A failed or cancelled job keeps them.)")
        box.setStandardButtons(QtWidgets.QMessageBox.StandardButton.Yes | QtWidgets.QMessageBox.StandardButton.No)
        box.setDefaultButton(QtWidgets.QMessageBox.StandardButton.No)
        box.setObjectName("voidlink-overwrite")
        answer = box.exec()
        box.deleteLater()
        return answer == QtWidgets.QMessageBox.StandardButton.Yes

    def submit(self) -> bool:
        """Check, then hand a spec builder to whoever submits (the worker runs it, roto writing included)."""
        values = self.values()
        error = self.check(values)
        self.show_error(error)
        if error is not None:
            self.validated.emit(error)
            return False
        present = existing_frames(values.output, values.first, values.last) if values.output else []
        if present and not self.confirm_overwrite(values.output, present):
            self._set_message("Not submitted: the existing result stays. Choose another output.", "warning")
            self.output.edit.setStyleSheet(WARNING_STYLE)
            return False
        values.output = self.output_template(values)  # the default's version is fixed now, once
        self.taken.add(values.output)
        self._update_output_hint(values.plate)
        self._set_message("Submitting…", "")
        self.submit_button.setEnabled(False)  # one job per click: enabled again when the daemon has answered
        # The worker rasterises a copy: the user may go on drawing while it writes the mattes.
        document = roto.RotoDocument.from_dict(self.document.to_dict()) if self.document is not None else None
        self.submit_requested.emit(lambda: self.build(values, document=document))
        return True
