"""The viewer: a job's plate, result and mattes on a time line, with the controls a Nuke or Resolve user reaches for.

Modes: before/after with a wipe, the quadmask over the plate, roto drawing. View: zoom (wheel,
about the cursor), pan (middle drag, or Alt+left drag), + and - double and halve the zoom, F fit,
1 for 1:1; channels R, G, B, A, Y (luminance; the same key again: RGB); exposure and gamma; the
scene-linear values under the cursor. Time: the frame entry, Left/Right step a frame, Space plays
(looping), Alt+Left/Right jump to the previous/next roto key. Roto keys: Ctrl+Z undo,
Ctrl+Shift+Z redo, Del deletes the selected shape, Shift+Del its key on this frame. Frames are
read on a worker thread with read-ahead (`cache.FrameCache`); until the frame the counter shows is
drawn, the canvas says "loading…".
"""

from __future__ import annotations

from typing import Optional

from . import roto
from .cache import FrameCache, LoadedFrame, Source, View
from .canvas import Canvas
from .frames import CHANNELS, ClipReader
from .qt import QtCore, QtWidgets, Signal
from .rotoedit import TOOLS
from .timeline import Timeline

MODES = ("wipe", "quadmask", "roto")
CHANNEL_KEYS = {
    QtCore.Qt.Key.Key_R: "r",
    QtCore.Qt.Key.Key_G: "g",
    QtCore.Qt.Key.Key_B: "b",
    QtCore.Qt.Key.Key_A: "a",
    QtCore.Qt.Key.Key_Y: "luminance",
}
PLAY_FPS = 24
TOOL_HINT = (
    "select: move a shape, its points or its feather ◆ · rectangle/ellipse: drag · polygon: click points, "
    "double-click (or click the first) to close · points: click the object, Shift/Alt/right click what is not "
    "it · Ctrl+Z / Ctrl+Shift+Z"
)


class Viewer(QtWidgets.QWidget):
    """Plate, result and mattes of one job on a time line."""

    frame_changed = Signal(int)  # the frame asked for (slider, entry, keys)
    frame_shown = Signal(int)  # that frame is drawn (read on the cache's thread)

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self.source = Source()
        self.first, self.last = 1, 1
        self.canvas = Canvas(self)
        self.loader = FrameCache(self)
        self._request = 0
        self._shown_request = 0
        self.mode = QtWidgets.QComboBox()
        self.mode.addItems(["before / after", "quadmask", "roto"])
        self.channel = QtWidgets.QComboBox()
        self.channel.addItems(["RGB", "R", "G", "B", "A", "luminance"])
        self.exposure = QtWidgets.QDoubleSpinBox()
        self.exposure.setRange(-10, 10)
        self.exposure.setSingleStep(0.5)
        self.exposure.setPrefix("exposure ")
        self.gamma = QtWidgets.QDoubleSpinBox()
        self.gamma.setRange(0.1, 5.0)
        self.gamma.setSingleStep(0.1)
        self.gamma.setValue(1.0)
        self.gamma.setPrefix("gamma ")
        self.fit_button = QtWidgets.QPushButton("Fit")
        self.one_button = QtWidgets.QPushButton("1:1")
        self.zoom_label = QtWidgets.QLabel("fit")
        self.slider = Timeline()
        self.frame_entry = QtWidgets.QSpinBox()
        self.frame_entry.setKeyboardTracking(False)  # typing 1042 asks for 1042, not 1, 10, 104 on the way
        self.frame_entry.setPrefix("frame ")
        self.frame_label = QtWidgets.QLabel("frame –")
        self.play_button = QtWidgets.QPushButton("Play")
        self.play_button.setCheckable(True)
        self.readout = QtWidgets.QLabel("")
        self.status = QtWidgets.QLabel("")
        self.status.setWordWrap(True)
        self.notice = ""  # what the status says besides a frame's read errors (e.g. that a matte is a proposal)
        self._play = QtCore.QTimer(self)
        self._play.setInterval(1000 // PLAY_FPS)
        self._build_roto_bar()
        self._lay_out()
        self._connect()

    def _build_roto_bar(self) -> None:
        self.tool = QtWidgets.QComboBox()
        self.tool.addItems(list(TOOLS))
        self.tool.setCurrentText("rectangle")
        self.role = QtWidgets.QComboBox()
        self.role.addItems(list(roto.ROLES))
        self.feather = QtWidgets.QDoubleSpinBox()
        self.feather.setRange(0, 200)
        self.feather.setValue(4.0)
        self.feather.setPrefix("feather ")
        self.key_button = QtWidgets.QPushButton("Key shape here")
        self.delete_key_button = QtWidgets.QPushButton("Delete key")
        self.delete_button = QtWidgets.QPushButton("Delete shape")
        self.previous_key_button = QtWidgets.QPushButton("◀ key")
        self.next_key_button = QtWidgets.QPushButton("key ▶")
        self.undo_button = QtWidgets.QPushButton("Undo")
        self.redo_button = QtWidgets.QPushButton("Redo")
        self.tool_hint = QtWidgets.QLabel(TOOL_HINT)
        self.tool_hint.setWordWrap(True)
        self.roto_bar = QtWidgets.QWidget()
        # Two rows, so the viewer stays as narrow as a docked host pane.
        rows = QtWidgets.QVBoxLayout(self.roto_bar)
        rows.setContentsMargins(0, 0, 0, 0)
        for widgets in (
            (QtWidgets.QLabel("roto"), self.tool, self.role, self.feather, self.key_button, self.delete_key_button),
            (self.delete_button, self.previous_key_button, self.next_key_button, self.undo_button, self.redo_button),
        ):
            row = QtWidgets.QHBoxLayout()
            for widget in widgets:
                row.addWidget(widget)
            row.addStretch(1)
            rows.addLayout(row)
        rows.addWidget(self.tool_hint)
        self.roto_bar.setVisible(False)

    def _lay_out(self) -> None:
        top = QtWidgets.QHBoxLayout()
        for widget in (self.mode, self.channel, self.exposure, self.gamma, self.fit_button, self.one_button):
            top.addWidget(widget)
        top.addWidget(self.zoom_label)
        top.addStretch(1)
        time = QtWidgets.QHBoxLayout()
        time.addWidget(self.play_button)
        time.addWidget(self.slider, 1)
        time.addWidget(self.frame_entry)
        time.addWidget(self.frame_label)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.roto_bar)
        layout.addWidget(self.canvas, 1)
        layout.addLayout(time)
        bottom = QtWidgets.QHBoxLayout()
        bottom.addWidget(self.status, 1)
        bottom.addWidget(self.readout)
        layout.addLayout(bottom)

    def _connect(self) -> None:
        redraw = self._redraw
        self.mode.currentIndexChanged.connect(self._mode_changed)
        self.channel.currentIndexChanged.connect(redraw)
        self.exposure.valueChanged.connect(redraw)
        self.gamma.valueChanged.connect(redraw)
        self.slider.valueChanged.connect(self.show_frame)
        self.frame_entry.valueChanged.connect(self.slider.setValue)
        self.fit_button.clicked.connect(self.canvas.fit)
        self.one_button.clicked.connect(self.canvas.one_to_one)
        self.play_button.toggled.connect(self._play_toggled)
        self._play.timeout.connect(self._play_tick)
        self.canvas.view_changed.connect(self._view_changed)
        self.canvas.hovered.connect(self._hovered)
        self.canvas.shapes_changed.connect(self._keys_changed)
        self.canvas.selection_changed.connect(self._keys_changed)
        self.tool.currentTextChanged.connect(self._tool_changed)
        self.role.currentTextChanged.connect(lambda r: setattr(self.canvas, "role", r))
        self.feather.valueChanged.connect(self._feather_changed)
        self.key_button.clicked.connect(self.canvas.key_selected)
        self.delete_key_button.clicked.connect(self.canvas.delete_key)
        self.delete_button.clicked.connect(self.canvas.delete_selected)
        self.previous_key_button.clicked.connect(lambda: self.jump_to_key(forward=False))
        self.next_key_button.clicked.connect(lambda: self.jump_to_key(forward=True))
        self.undo_button.clicked.connect(self.canvas.undo)
        self.redo_button.clicked.connect(self.canvas.redo)
        self.loader.loaded.connect(self._loaded)

    # -- what to show -----------------------------------------------------------------------------

    def set_clips(
        self,
        before: str = "",
        after: str = "",
        first: int = 1,
        last: int = 1,
        mask: str = "",
        affected: str = "",
        mask_is_quadmask: bool = False,
        mask_channels: str = "",
        affected_channels: str = "",
    ) -> None:
        """Show these clips from `first`; the mattes' channels are picked by the daemon's rule from the clips'
        channels option (empty: alpha, else the single channel, else luminance).
        """
        # The old readers are not closed here: the cache's thread may still be reading with them.
        self.first, self.last = first, max(last, first)
        self.source = Source(
            ClipReader(before) if before else None,
            ClipReader(after) if after else None,
            ClipReader(mask) if mask else None,
            ClipReader(affected) if affected else None,
            mask_is_quadmask,
            self.first,
            self.last,
            mask_channels,
            affected_channels,
        )
        self.loader.set_source(self.source)
        for widget in (self.slider, self.frame_entry):
            widget.blockSignals(True)
            widget.setRange(self.first, self.last)
            widget.setValue(self.first)
            widget.blockSignals(False)
        self.show_frame(self.first)

    def set_document(self, document: Optional[roto.RotoDocument]) -> None:
        self.canvas.document = document
        self.canvas.selected = None
        self.canvas.history.clear()  # another job's shapes: its edits are not this one's to undo
        self._keys_changed()
        self.canvas.update()

    def set_mode(self, mode: str) -> None:
        if self.mode.currentIndex() == MODES.index(mode):
            self._redraw()
        else:
            self.mode.setCurrentIndex(MODES.index(mode))

    @property
    def view(self) -> View:
        return View(self.canvas.mode, self.exposure.value(), self.gamma.value(), CHANNELS[self.channel.currentIndex()])

    def set_channel(self, channel: str) -> None:
        self.channel.setCurrentIndex(CHANNELS.index(channel))

    def _mode_changed(self, index: int) -> None:
        self.canvas.mode = MODES[index]
        self.roto_bar.setVisible(self.canvas.mode == "roto")
        self._redraw()

    def _tool_changed(self, tool: str) -> None:
        self.canvas.cancel_pending()
        self.canvas.tool = tool

    def _feather_changed(self, value: float) -> None:
        self.canvas.feather = value
        self.canvas.set_selected_feather(value)

    def _keys_changed(self) -> None:
        self.slider.set_keys(self.canvas.key_frames())
        selected = self.canvas.selected
        if selected is not None and selected.feather != self.feather.value():
            self.feather.blockSignals(True)  # showing the shape's feather is no edit of it
            self.feather.setValue(selected.feather)
            self.feather.blockSignals(False)

    def _redraw(self, *_args) -> None:
        self.show_frame(self.slider.value())

    def show_frame(self, frame: int) -> None:
        """Show this frame of every clip: read (or taken from the cache) on the worker thread, drawn when it
        arrives (`frame_shown`). Errors go to the status line, naming the file and frame."""
        frame = min(max(frame, self.first), self.last) if self.source.before is not None else frame
        self.canvas.frame = frame
        self.frame_label.setText(f"frame {frame}  ({self.first}-{self.last})")
        for widget in (self.slider, self.frame_entry):
            if widget.value() != frame:
                widget.blockSignals(True)
                widget.setValue(frame)
                widget.blockSignals(False)
        self._request += 1
        self.loader.request(self._request, frame, self.view)
        self.canvas.loading = self.source.before is not None
        self.canvas.update()
        self.frame_changed.emit(frame)

    def _loaded(self, request_id: int, result: LoadedFrame) -> None:
        if request_id != self._request:
            return  # a newer frame was asked for meanwhile
        self._shown_request = request_id
        self.status.setText(" · ".join(text for text in (self.notice, result.error) if text))
        canvas = self.canvas
        canvas.before, canvas.after, canvas.loading = result.before, result.after, False
        canvas.pixels, canvas.step = result.pixels, result.step
        if result.size is not None:
            canvas.image_size = result.size
        canvas.update()
        self.frame_shown.emit(result.frame)

    # -- time ----------------------------------------------------------------------------------

    def step(self, frames: int) -> None:
        self.show_frame(min(max(self.canvas.frame + frames, self.first), self.last))

    def jump_to_key(self, forward: bool) -> Optional[int]:
        key = self.canvas.neighbour_key(forward)
        if key is not None:
            self.show_frame(key)
        return key

    @property
    def playing(self) -> bool:
        return self._play.isActive()

    def play(self, on: bool = True) -> None:
        self.play_button.setChecked(on)

    def _play_toggled(self, on: bool) -> None:
        self.play_button.setText("Stop" if on else "Play")
        self._play.start() if on else self._play.stop()

    def _play_tick(self) -> None:
        if self._shown_request != self._request:
            return  # the frame asked for is not drawn yet: playback waits for it rather than skip ahead
        self.show_frame(self.canvas.frame + 1 if self.canvas.frame < self.last else self.first)

    # -- view ----------------------------------------------------------------------------------

    def _view_changed(self) -> None:
        self.zoom_label.setText("fit" if self.canvas.fitted else f"{self.canvas.scale * 100:.0f}%")

    def _hovered(self, x: float, y: float) -> None:
        values = self.canvas.value_at(x, y)
        if values is None:
            self.readout.setText("")
            return
        names = "RGBA"[: len(values)]
        text = "  ".join(f"{n} {v:.4f}" for n, v in zip(names, values))
        self.readout.setText(f"x {int(x)} y {int(y)}  {text}")

    def keyPressEvent(self, event) -> None:  # noqa: N802 (Qt's name; keys the canvas leaves come here)
        key = event.key()
        alt = bool(event.modifiers() & QtCore.Qt.KeyboardModifier.AltModifier)
        plain = not event.modifiers() & ~QtCore.Qt.KeyboardModifier.KeypadModifier
        if key in (QtCore.Qt.Key.Key_Left, QtCore.Qt.Key.Key_Right):
            forward = key == QtCore.Qt.Key.Key_Right
            self.jump_to_key(forward) if alt else self.step(1 if forward else -1)
        elif key == QtCore.Qt.Key.Key_Space:
            self.play(not self.playing)
        elif plain and key == QtCore.Qt.Key.Key_F:
            self.canvas.fit()
        elif plain and key == QtCore.Qt.Key.Key_1:
            self.canvas.one_to_one()
        elif key in (QtCore.Qt.Key.Key_Plus, QtCore.Qt.Key.Key_Equal, QtCore.Qt.Key.Key_Minus):
            zoom_in = key != QtCore.Qt.Key.Key_Minus
            self.canvas.set_zoom(self.canvas.scale * (2.0 if zoom_in else 0.5))  # as Nuke's + and -
        elif plain and key in CHANNEL_KEYS:
            channel = CHANNEL_KEYS[key]
            self.set_channel("rgb" if self.view.channel == channel else channel)
        else:
            super().keyPressEvent(event)
