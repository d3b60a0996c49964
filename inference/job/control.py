"""What the scheduler and a running job share: the cancel flag (with its point of no return) and
the progress sink the job reports to."""

from __future__ import annotations

import threading
from typing import Callable, Optional, Protocol

import numpy as np

from voidlink.errors import JobCancelled


class CancelFlag:
    """A job's cancel request and its point of no return, shared by the scheduler and the job.

    Called, it says whether the job should stop (what backends and the pipeline poll). `cancel()`
    asks it to; `begin_commit()` is the job's last look before it starts moving its frames into
    place: a cancel that came first stops the job there, one that comes after is refused (`cancel()`
    returns False) because the move, once begun, is finished."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancelled = False
        self._committing = False

    def __call__(self) -> bool:
        return self._cancelled and not self._committing

    def cancel(self) -> bool:
        with self._lock:
            if self._committing:
                return False
            self._cancelled = True
            return True

    @property
    def committing(self) -> bool:
        return self._committing

    def begin_commit(self, force: bool = False) -> None:
        """Pass the point of no return, or raise JobCancelled when cancelled first (unless `force`:
        a commit begun by an earlier run is finished whatever was asked since)."""
        with self._lock:
            if self._cancelled and not force:
                raise JobCancelled("cancelled")
            self._committing = True


def begin_commit(cancelled: Callable[[], bool], force: bool = False) -> None:
    """`CancelFlag.begin_commit` for any cancel callable (a plain one has no point of no return to pass)."""
    if isinstance(cancelled, CancelFlag):
        cancelled.begin_commit(force)
    elif cancelled() and not force:
        raise JobCancelled("cancelled")


def check_cancelled(cancelled: Callable[[], bool]) -> None:
    """Stop the job here when it was asked to (polled once per frame)."""
    if cancelled():
        raise JobCancelled("cancelled")


class ProgressSink(Protocol):
    """Where a running job reports: the stage it is in, each frame it has written, its log lines."""

    def stage(self, name: str, message: str = "") -> None: ...

    def frame_written(self, frame: int, done: int, total: int, preview: Optional[np.ndarray]) -> None: ...

    def log(self, message: str) -> None: ...


class NullProgress:
    """A ProgressSink that keeps nothing (a job run from a test or a script)."""

    def stage(self, name: str, message: str = "") -> None:
        pass

    def frame_written(self, frame: int, done: int, total: int, preview: Optional[np.ndarray]) -> None:
        pass

    def log(self, message: str) -> None:
        pass
