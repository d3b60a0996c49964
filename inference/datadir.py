"""The daemon's data dir: where it is by default, and the lock that keeps a second daemon off it.

One daemon owns a data dir at a time (its job store, frame cache, transfers and results live
there). `DataDirLock` takes an OS lock on `<data dir>/daemon.lock` and names the daemon that holds
it; a data dir the daemon cannot use at all (a file where the folder should be, a folder it may not
write) is refused by name before anything else is opened.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Optional

from voidlink.errors import Conflict, InvalidInput

LOCK_FILE = "daemon.lock"


def default_data_dir() -> Path:
    """The platform's user data dir for voidlink (e.g. ~/.local/share/voidlink on Linux)."""
    import platformdirs  # only when no --data-dir is given

    return Path(platformdirs.user_data_dir("voidlink", appauthor=False))


class DataDirLock:
    """An OS lock on `<data dir>/daemon.lock`: a second daemon on the same dir is refused."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOCK_FILE
        self._file: Optional[IO[str]] = None

    def acquire(self) -> None:
        """Create the data dir if need be and lock it; `Conflict` when another daemon holds it,
        `InvalidInput` (DATA_DIR_UNUSABLE) when it cannot be used at all."""
        handle = self._open()
        try:
            if os.name == "nt":
                import msvcrt

                msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.seek(0)
            owner = handle.read().strip() or "unknown pid"
            handle.close()
            raise Conflict(
                f"another voidlink daemon ({owner}) is using the data dir {self.path.parent}; "
                "stop it, or start this one with another --data-dir",
                reason="DATA_DIR_LOCKED",
                file=str(self.path),
            ) from exc
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _open(self) -> IO[str]:
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            return open(self.path, "a+")
        except OSError as exc:
            raise InvalidInput(
                f"cannot use the data dir {folder}: {_why(folder, self.path, exc)}; "
                "choose another with --data-dir",
                reason="DATA_DIR_UNUSABLE",
                file=str(folder),
            ) from exc


def _why(folder: Path, lock: Path, exc: OSError) -> str:
    """What is wrong with the data dir, in words (the OS's own as a last resort)."""
    if lock.is_dir():
        return f"{lock} is a folder"
    # The deepest part of the path that exists: a file there is why no folder can be made.
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        return "it is a file, not a folder" if existing == folder else f"{existing} is a file, not a folder"
    return exc.strerror or str(exc)
