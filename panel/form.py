"""The job form: what to remove from which plate, checked before it goes to the daemon."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

from voidlink.bridge.spec import build_spec, default_output
from voidlink.protos import pb

from voidlink import errors

from . import roto
from .qt import QtCore, QtWidgets, Signal
from .validate import form_field, validate_spec

PROMPT_HINT = (
    "Describe the scene after removal, not the object: e.g. 'an empty street, wet asphalt', "
    "'a wooden table with nothing on it'."
)
BACKENDS = ("auto", "classical", "void")
QUALITIES = ("draft", "balanced", "best")
MEDIA_FILTER = "Images and movies (*.exr *.dpx *.tif *.tiff *.png *.jpg *.mov *.mp4 *.mxf);;All files (*)"


@dataclass
class FormValues:
    """The form's content as plain values (what a host pre-fills and what a test reads back)."""

    plate: str = ""
    mask: str = ""
    affected: str = ""
    first: int = 1001
    last: int = 1001
    prompt: str = ""
    backend: str = "auto"
    quality: str = "balanced"
    output: str = ""
    use_roto: bool = False
    name: str = ""
    labels: dict = field(default_factory=dict)


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
    validated = Signal(object)  # None when fine, else the VoidlinkError

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self.document: Optional[roto.RotoDocument] = None
        self.labels: dict = {}
        self.plate = PathField("/shots/sh010/plate.####.exr (or a movie)")
        self.mask = PathField("object matte: /shots/sh010/roto.####.exr")
        self.affected = PathField("optional: shadow/reflection matte")
        self.use_roto = QtWidgets.QCheckBox("Use the roto drawn in the viewer instead of matte clips")
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
        self.output = PathField("default: <plate folder>/void/<plate>_void.####.exr", save=True)
        self.message = QtWidgets.QLabel("")
        self.message.setWordWrap(True)
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
        grid.addRow("Plate", self.plate)
        grid.addRow("Object matte", self.mask)
        grid.addRow("Affected matte", self.affected)
        grid.addRow("", self.use_roto)
        grid.addRow("Frames", frames)
        grid.addRow("Prompt", self.prompt)
        grid.addRow("", hint)
        grid.addRow("Backend", engine)
        grid.addRow("Output", self.output)
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

    # -- values ------------------------------------------------------------------------------

    def set_values(self, values: FormValues) -> None:
        self.plate.setText(values.plate)
        self.mask.setText(values.mask)
        self.affected.setText(values.affected)
        self.first.setValue(values.first)
        self.last.setValue(values.last)
        self.prompt.setPlainText(values.prompt)
        self.backend.setCurrentText(values.backend)
        self.quality.setCurrentText(values.quality)
        self.output.setText(values.output)
        self.use_roto.setChecked(values.use_roto)
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
            name=getattr(self, "_name", ""),
            labels=dict(self.labels),
        )

    def _roto_toggled(self, on: bool) -> None:
        self.mask.setEnabled(not on)
        self.affected.setEnabled(not on)

    # -- the spec ------------------------------------------------------------------------------

    def output_template(self, values: FormValues) -> str:
        return values.output or (default_output(values.plate) if values.plate else "")

    def roto_patterns(self, values: FormValues) -> tuple[str, str]:
        """Where the roto mattes of this job are written: a `roto` folder beside the output."""
        folder = os.path.join(os.path.dirname(os.path.abspath(self.output_template(values))), "roto")
        return os.path.join(folder, "object.####.exr"), os.path.join(folder, "affected.####.exr")

    def roto_file(self, values: Optional[FormValues] = None) -> Optional[str]:
        """The job's roto.json, beside its roto mattes (where submit and the autosave write it); None while the job
        has no output location (no output, and no plate to default it from)."""
        values = values or self.values()
        if not self.output_template(values):
            return None
        return os.path.join(os.path.dirname(self.roto_patterns(values)[0]), "roto.json")

    def _check_fields(self, values: FormValues, document: Optional[roto.RotoDocument]) -> None:
        if not values.plate:
            raise errors.InvalidInput("spec.source.otio_json: no clip given", reason="BAD_CLIP", field="spec.source")
        if values.use_roto:
            if document is None or not document.of_role("object"):
                raise errors.InvalidInput(
                    "spec.mask: draw the object in the viewer's roto mode first (no object shape yet)",
                    reason="NO_MASK",
                    field="spec.mask",
                )
        elif not values.mask:
            raise errors.InvalidInput(
                "spec.mask: a mask clip is required (object matte or quadmask)", reason="NO_MASK", field="spec.mask"
            )
        if values.last < values.first:
            raise errors.InvalidInput(
                f"spec.frames: the range {values.first}-{values.last} is empty",
                reason="EMPTY_RANGE",
                field="spec.frames",
            )

    def build(
        self,
        values: Optional[FormValues] = None,
        write_roto: bool = True,
        document: Optional[roto.RotoDocument] = None,
    ) -> pb.JobSpec:
        """The JobSpec of the form (writing the roto mattes first when the job uses roto)."""
        values = values or self.values()
        document = document or self.document
        self._check_fields(values, document)
        mask, affected = values.mask, values.affected or None
        if values.use_roto:
            assert document is not None
            object_pattern, affected_pattern = self.roto_patterns(values)
            mask = object_pattern
            affected = affected_pattern if document.of_role("affected") else None
            if write_roto:
                roto_file = self.roto_file(values)
                roto.write_mattes(document, "object", object_pattern, values.first, values.last, roto_file)
                if affected:
                    roto.write_mattes(document, "affected", affected_pattern, values.first, values.last, roto_file)
        spec = build_spec(
            values.plate,
            mask,
            affected,
            (values.first, values.last),
            values.prompt,
            self.output_template(values),
            values.backend,
            quality=values.quality,
            name=values.name or os.path.basename(values.plate),
        )
        for key, value in values.labels.items():
            spec.labels[key] = str(value)
        return spec

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

    def show_error(self, error: Optional[errors.VoidlinkError]) -> None:
        self.submit_button.setEnabled(True)
        for widget in self._fields.values():
            widget.setStyleSheet("")
        if error is None:
            self.message.setStyleSheet("color: #3a3")
            self.message.setText("Ready to submit.")
            return
        self.message.setStyleSheet("color: #d33")
        self.message.setText(str(error))
        target = self._fields.get(form_field(error.field))
        if target is not None:
            target.setStyleSheet("border: 1px solid #d33")

    def validate(self) -> Optional[errors.VoidlinkError]:
        error = self.check()
        self.show_error(error)
        self.validated.emit(error)
        return error

    def submit(self) -> bool:
        """Check, then hand a spec builder to whoever submits (the worker runs it, roto writing included)."""
        values = self.values()
        error = self.check(values)
        self.show_error(error)
        if error is not None:
            self.validated.emit(error)
            return False
        self.message.setStyleSheet("")
        self.message.setText("Submitting…")
        self.submit_button.setEnabled(False)  # one job per click: enabled again when the daemon has answered
        # The worker rasterises a copy: the user may go on drawing while it writes the mattes.
        document = roto.RotoDocument.from_dict(self.document.to_dict()) if self.document is not None else None
        self.submit_requested.emit(lambda: self.build(values, document=document))
        return True
