"""Matte jobs from the panel: the roto document's clicks and shapes become a tracker's prompts, the tracked matte
becomes the form's object matte (shown in the quadmask tint), and a tracked frame can be edited back as roto.

The job goes through the panel's one `JobService` (its worker thread, its queue rows): Track never blocks the
host. What the daemon proposes for the affected region is only a proposal: the viewer says so until the user
edits or replaces it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from voidlink.bridge.matte import build_matte_prompts, build_matte_spec
from voidlink.protos import pb
from voidlink.protos.vocabulary import TERMINAL

from voidlink import errors

from . import roto
from .frames import ClipReader
from .qt import QtCore, QtWidgets, Signal

PROPOSAL_NOTE = "affected: proposed — edit before removing"
AFFECTED_HINT = "what it affects, e.g. its shadow"
MAX_VERTICES = 48  # an editable outline: enough to follow a person, few enough to drag by hand
MATTE_THRESHOLD = 0.5


@dataclass
class Prompts:
    """The document's prompts on a range as `build_matte_spec` takes them: (frame, x, y) clicks, (frame, x0, y0,
    x1, y1) boxes and (frame, [(x, y), ...]) outlines."""

    points: list[tuple[int, float, float]] = field(default_factory=list)
    negative: list[tuple[int, float, float]] = field(default_factory=list)
    boxes: list[tuple[int, float, float, float, float]] = field(default_factory=list)
    outlines: list[tuple[int, list[tuple[float, float]]]] = field(default_factory=list)
    # Outlines on a frame that has one already: the builder merges a frame's outlines into one polygon, so
    # each of these goes as a prompt of its own on that frame.
    more_outlines: list[tuple[int, list[tuple[float, float]]]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.points or self.negative or self.boxes or self.outlines)


def prompts(document: roto.RotoDocument, first: int, last: int) -> Prompts:
    """What the user said on frames first..last: the clicked points, the object's rectangles keyed there as
    boxes and its other shapes keyed there as outlines (affected shapes are not the object and say nothing to
    the tracker)."""
    found = Prompts()
    for frame, clicks in sorted(document.points.items()):
        if first <= frame <= last:
            for x, y, negative in clicks:
                (found.negative if negative else found.points).append((frame, x, y))
    outlined: set[int] = set()
    for shape in document.of_role("object"):
        for frame in sorted(shape.keys):
            if not first <= frame <= last:
                continue
            outline = shape.outline_at(frame)
            if shape.kind == "rectangle":
                (x0, y0), (x1, y1) = outline.min(axis=0), outline.max(axis=0)
                found.boxes.append((frame, float(x0), float(y0), float(x1), float(y1)))
                continue
            vertices = [(float(x), float(y)) for x, y in outline]
            (found.more_outlines if frame in outlined else found.outlines).append((frame, vertices))
            outlined.add(frame)
    return found


def next_track_folder(output: str, taken: set[str]) -> str:
    """`<output folder>/matte/<output's name>/track_v001`, the next version no file or earlier track uses: a
    removal still reading an earlier matte never sees it change under it."""
    base = os.path.join(os.path.dirname(os.path.abspath(output)), "matte", os.path.basename(output).split(".")[0])
    version = 1
    while True:
        folder = os.path.join(base or "matte", f"track_v{version:03d}")
        if folder not in taken and not os.path.exists(folder):
            return folder
        version += 1


def matte_spec(
    plate: str,
    first: int,
    last: int,
    document: roto.RotoDocument,
    folder: str,
    name: str,
    propose_affected: bool = False,
    affected_text: str = "",
    tracker: str = "auto",
) -> pb.JobSpec:
    """The matte job: track the object from the document's prompts over first..last, writing
    `<folder>/object.####.exr` (and `<folder>/affected.####.exr` when proposing)."""
    found = prompts(document, first, last)
    if not found:
        raise errors.InvalidInput(
            f"matte: nothing to track from on frames {first}-{last}: click points on the object, or draw a "
            "rectangle or a shape around it, in the viewer's roto mode",
            reason="NO_PROMPT",
            field="spec.matte.prompts",
        )
    spec = build_matte_spec(
        plate,
        (first, last),
        points=found.points,
        negative=found.negative,
        boxes=found.boxes,
        outlines=found.outlines,
        text=affected_text if propose_affected else "",
        propose_affected=propose_affected,
        tracker=tracker,
        output=os.path.join(folder, "object.####.exr"),
        affected_output=os.path.join(folder, "affected.####.exr") if propose_affected else None,
        name=name,
    )
    if found.more_outlines:
        for extra in build_matte_prompts(outlines=found.more_outlines):
            spec.matte.prompts.append(extra)
        ordered = sorted(spec.matte.prompts, key=lambda p: p.frame)
        del spec.matte.prompts[:]
        spec.matte.prompts.extend(ordered)
    return spec


def matte_polygon(matte: np.ndarray, max_vertices: int = MAX_VERTICES) -> list[tuple[float, float]]:
    """The outline of a matte's largest region as a polygon of at most `max_vertices` points (image pixels);
    empty when the matte holds nothing above the threshold."""
    import cv2

    inside = (np.asarray(matte, np.float32) >= MATTE_THRESHOLD).astype(np.uint8)
    contours, _ = cv2.findContours(inside, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return []
    contour = max(contours, key=cv2.contourArea)
    # Loosen the fit until the polygon is small enough to edit by hand.
    epsilon = 0.5
    polygon = cv2.approxPolyDP(contour, epsilon, True)
    while len(polygon) > max_vertices:
        epsilon *= 1.5
        polygon = cv2.approxPolyDP(contour, epsilon, True)
    if len(polygon) < 3:
        return []
    # Contour points are pixel indices; a pixel's outline edge lies half a pixel out from its centre.
    centre = contour.reshape(-1, 2).mean(axis=0)
    points = polygon.reshape(-1, 2).astype(np.float64) + 0.5
    points += np.sign(points - 0.5 - centre) * 0.5
    return [(float(x), float(y)) for x, y in points]


def finding_text(finding: pb.MatteFinding) -> str:
    where = f"frame {finding.frame}" if finding.HasField("frame") else "whole shot"
    return f"{where} · {finding.severity or 'warning'} · {finding.check}: {finding.message}"


@dataclass
class Track:
    """A matte job submitted from here: what the form should take when it ends."""

    plate: str
    first: int
    last: int
    object_pattern: str
    affected_pattern: str = ""
    job_id: str = ""
    findings: list[str] = field(default_factory=list)


class MatteControls(QtWidgets.QWidget):
    """Track, Propose affected (with what it affects, in words), Edit as roto, and the quadmask checks' findings."""

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self.track_button = QtWidgets.QPushButton("Track")
        self.track_button.setToolTip("Track the object from the points and shapes over the form's range")
        self.propose = QtWidgets.QCheckBox("Propose affected")
        self.affected_text = QtWidgets.QLineEdit()
        self.affected_text.setPlaceholderText(AFFECTED_HINT)
        self.edit_button = QtWidgets.QPushButton("Edit as roto")
        self.edit_button.setToolTip("The tracked matte on this frame as a polygon to fix (then Track again)")
        self.state = QtWidgets.QLabel("")
        self.state.setWordWrap(True)
        self.findings = QtWidgets.QListWidget()
        self.findings.setMaximumHeight(72)
        self.findings.setVisible(False)
        row = QtWidgets.QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        for widget in (QtWidgets.QLabel("matte"), self.track_button, self.propose):
            row.addWidget(widget)
        row.addWidget(self.affected_text, 1)
        row.addWidget(self.edit_button)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.state)
        layout.addWidget(self.findings)
        self.propose.toggled.connect(self.affected_text.setEnabled)
        self.affected_text.setEnabled(False)

    def show_findings(self, lines: list[str]) -> None:
        self.findings.clear()
        self.findings.addItems(lines)
        self.findings.setVisible(bool(lines))


class MatteTracking(QtCore.QObject):
    """Ties the controls to the panel: submits the track, follows it, hands its matte to the form and viewer."""

    tracked = Signal(object)  # the Track, once its matte is the form's
    track_failed = Signal(str)

    def __init__(self, window: QtWidgets.QWidget) -> None:
        super().__init__(window)
        self.window = window
        self.controls = MatteControls()
        self.tracks: dict[str, Track] = {}  # by job id
        # The track submitted and not yet answered (Track is disabled meanwhile: one at a time). Matched by
        # being a matte job, not by its output: a daemon streaming results back names its own.
        self._pending: Optional[Track] = None
        self._taken: set[str] = set()
        # Under the roto tools, and shown in the quadmask view too: the tracked matte is looked at there.
        layout = window.viewer.layout()
        layout.insertWidget(layout.indexOf(window.viewer.roto_bar) + 1, self.controls)
        self.controls.setVisible(window.viewer.canvas.mode in ("roto", "quadmask"))
        self.controls.track_button.clicked.connect(self.track)
        self.controls.edit_button.clicked.connect(self.edit_as_roto)
        window.viewer.mode.currentIndexChanged.connect(self._mode_changed)
        window.service.submitted.connect(self._submitted)
        window.service.submit_failed.connect(self._submit_failed)
        window.service.finished.connect(self._finished)

    # -- Track ---------------------------------------------------------------------------------

    def _mode_changed(self, _index: int) -> None:
        mode = self.window.viewer.canvas.mode
        self.controls.setVisible(mode in ("roto", "quadmask"))
        # Points can be clicked in roto mode before any shape was drawn or the form asked for roto.
        if mode == "roto" and self.window.viewer.canvas.document is None:
            self.window.ensure_document()

    def track(self) -> Optional[Track]:
        """Submit a matte job from the document's prompts over the form's range (checked here first, sent from
        the service's worker)."""
        form = self.window.form
        values = form.values()
        controls = self.controls
        if not values.plate:
            self._say("Track: choose a plate in the Job tab first.", error=True)
            return None
        # The document drawn on stays (with its undo history); only a panel without one makes one.
        document = form.document or self.window.ensure_document()
        snapshot = roto.RotoDocument.from_dict(document.to_dict())  # the user may go on clicking meanwhile
        folder = next_track_folder(form.output_template(values), self._taken)
        stem = os.path.basename(values.plate).split(".")[0]
        name = f"matte {stem} {values.first}-{values.last}"
        propose, text = controls.propose.isChecked(), controls.affected_text.text().strip()
        try:
            spec = matte_spec(values.plate, values.first, values.last, snapshot, folder, name, propose, text)
        except errors.VoidlinkError as error:
            self._say(str(error), error=True)
            return None
        self._taken.add(folder)
        track = Track(
            values.plate,
            values.first,
            values.last,
            spec.output.path_template,
            spec.matte.affected_template,
        )
        self._pending = track
        client = self.window.service.client

        def checked() -> pb.JobSpec:
            # A daemon from before matte jobs would take this spec for a removal: ask what it can do first.
            client.check_mattes()
            return spec

        controls.track_button.setEnabled(False)
        self._say(f"Tracking {name}…")
        self.window.service.submit(checked)
        return track

    def _submitted(self, job: pb.Job) -> None:
        track = self._pending
        if track is None or not job.spec.HasField("matte"):
            return
        self._pending = None
        track.job_id = job.id
        self.tracks[job.id] = track
        self.controls.track_button.setEnabled(True)
        self._say(f"Tracking in job {job.id} (progress in the queue)…")

    def _submit_failed(self, error: object) -> None:
        if self._pending is not None:
            self._pending = None
            self.controls.track_button.setEnabled(True)
            self._say(f"Track not submitted: {error}", error=True)

    def _finished(self, job: pb.Job) -> None:
        track = self.tracks.get(job.id)
        if track is None or job.state not in TERMINAL:
            return
        track.findings = [finding_text(f) for f in job.result.findings]
        self.controls.show_findings(track.findings)
        if job.state != pb.JOB_STATE_SUCCEEDED:
            message = job.error.message or pb.JobState.Name(job.state).lower()
            self._say(f"Track {job.id} did not finish: {message}", error=True)
            self.track_failed.emit(message)
            return
        if track.affected_pattern and job.result.affected_pattern:
            track.affected_pattern = job.result.affected_pattern  # where it landed (a streamed-back result)
        self.apply(track, job.result.output_pattern or track.object_pattern)

    def apply(self, track: Track, pattern: str, proposed: bool = True) -> None:
        """The tracked matte becomes the job's object matte (the proposal its affected one) in the form, and the
        viewer shows both in the quadmask tint; `proposed`: the affected matte is labelled as a proposal."""
        form, viewer = self.window.form, self.window.viewer
        form.use_roto.setChecked(False)
        form.mask.setText(pattern)
        if track.affected_pattern:
            form.affected.setText(track.affected_pattern)
        viewer.notice = PROPOSAL_NOTE if track.affected_pattern and proposed else ""
        frame = viewer.canvas.frame
        viewer.set_clips(
            before=track.plate, first=track.first, last=track.last, mask=pattern, affected=track.affected_pattern
        )
        viewer.set_mode("quadmask")
        self.window.show_tab("viewer")
        if track.first <= frame <= track.last:
            viewer.show_frame(frame)
        found = f"; {len(track.findings)} finding(s) below" if track.findings else ""
        self._say(f"Tracked: {os.path.basename(pattern)} is the object matte{found}.")
        self.tracked.emit(track)

    # -- Edit as roto --------------------------------------------------------------------------

    def edit_as_roto(self) -> Optional[roto.Shape]:
        """The form's object matte on the current frame as a polygon keyed there, selected, in roto mode."""
        form, viewer = self.window.form, self.window.viewer
        pattern = form.values().mask
        frame = viewer.canvas.frame
        if not pattern:
            self._say("Edit as roto: no object matte yet (Track first).", error=True)
            return None
        try:
            matte, _ = ClipReader(pattern).read(frame, matte=True)
        except errors.VoidlinkError as error:
            self._say(f"Edit as roto: {error}", error=True)
            return None
        polygon = matte_polygon(matte[..., 0] if matte.ndim == 3 else matte)
        if not polygon:
            self._say(f"Edit as roto: the matte is empty on frame {frame}.", error=True)
            return None
        if form.document is None:
            self.window.ensure_document()
        viewer.set_mode("roto")
        canvas = viewer.canvas
        canvas.role = "object"
        viewer.role.setCurrentText("object")
        shape = canvas.add_shape("polygon", polygon)
        shape.name = f"tracked {frame}"
        canvas.selected = shape
        viewer.tool.setCurrentText("select")
        canvas.shapes_changed.emit()
        canvas.update()
        self._say(f"Frame {frame}'s matte is shape '{shape.name}': fix it, then Track again (it is an outline prompt).")
        return shape

    def _say(self, text: str, error: bool = False) -> None:
        self.controls.state.setStyleSheet("color: #d33" if error else "")
        self.controls.state.setText(text)
