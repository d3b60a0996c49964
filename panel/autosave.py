"""Roto autosave: the roto document being drawn is written to disk shortly after every edit.

The file is the job's `roto.json`, the one a submit writes beside the roto mattes (`roto/` in the
output's folder, `JobForm.roto_file`), so a crash or a killed host loses at most the last moment of
drawing and opening the same job brings the shapes back. Until the job has an output location (no
output and no plate to default it from) the shapes go to the panel's own `unsaved-roto.json` in its
data folder (`scratch_path`); they move to the job's `roto.json` at the first save after it has one.
Saves are atomic (a temporary file in the same folder, then a rename: `RotoDocument.save`).
"""

from __future__ import annotations

import os
from typing import Optional

from . import roto
from .qt import QtCore, Signal

# Edits arrive in bursts (a drag is one edit, a session of keying many): one write per pause in them.
AUTOSAVE_MS = 500
SCRATCH_NAME = "unsaved-roto.json"


def scratch_path() -> str:
    """Where shapes drawn before the job has an output location are kept: `unsaved-roto.json` under the
    user's data folder (`~/.local/share/voidlink/panel/` on Linux, as platformdirs places it per OS)."""
    import platformdirs

    return os.path.join(platformdirs.user_data_dir("voidlink", appauthor=False), "panel", SCRATCH_NAME)


class RotoAutosave(QtCore.QObject):
    """Keeps one document on disk: `changed()` after each edit schedules a write, `flush()` writes now."""

    saved = Signal(str)  # the file written
    failed = Signal(str)  # what could not be written, and where the shapes were kept instead

    def __init__(
        self, scratch: Optional[str] = None, delay_ms: int = AUTOSAVE_MS, parent: Optional[QtCore.QObject] = None
    ) -> None:
        super().__init__(parent)
        self.scratch = scratch or scratch_path()
        self.document: Optional[roto.RotoDocument] = None
        self.path: Optional[str] = None  # the job's roto.json; None: the scratch file
        self._dirty = False
        self._in_scratch = False  # the scratch file holds this document: removed once it is saved to its job
        self._timer = QtCore.QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(delay_ms)
        self._timer.timeout.connect(self.flush)

    @property
    def target(self) -> str:
        """The file the next save writes."""
        return self.path or self.scratch

    def attach(self, document: roto.RotoDocument, path: Optional[str], from_scratch: bool = False) -> None:
        """From now on save `document` to `path` (None: the scratch file); `from_scratch`: it was loaded from there.

        What was pending for the previous document or file is written there first. A document with shapes
        that is given a new file is written to it (this is how shapes drawn before the output was chosen
        move to the job)."""
        if document is self.document and path == self.path:
            return
        self.flush()
        moved = document is self.document
        self.document, self.path = document, path
        if not moved:
            self._in_scratch = from_scratch
        if moved and document.shapes:
            self.changed()

    def changed(self) -> None:
        """The document was edited: write it once the edits pause."""
        if self.document is not None:
            self._dirty = True
            self._timer.start()

    def flush(self) -> Optional[str]:
        """Write the document now if it changed since it was last written; returns the file written, else None."""
        self._timer.stop()
        if self.document is None or not self._dirty:
            return None
        target = self.target
        try:
            self.document.save(target)
        except OSError as error:
            return self._keep_in_scratch(target, error)
        self._dirty = False
        if self.path is None:
            self._in_scratch = True
        elif self._in_scratch:
            self._in_scratch = False
            try:
                os.unlink(self.scratch)
            except FileNotFoundError:
                pass
        self.saved.emit(target)
        return target

    def _keep_in_scratch(self, target: str, error: OSError) -> Optional[str]:
        """The job's folder cannot be written (read-only, full, a file in the way): keep the shapes in the scratch
        file; the document stays marked changed, so the next save tries the job's file again."""
        message = f"cannot autosave the roto to {target}: {error.strerror or error}"
        kept: Optional[str] = None
        if target != self.scratch:
            try:
                self.document.save(self.scratch)
            except OSError:
                pass
            else:
                kept, self._in_scratch = self.scratch, True
                message += f"; the shapes are kept in {self.scratch} until it can"
        self.failed.emit(message)
        return kept
