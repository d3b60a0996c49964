"""Starting a daemon on this machine for a host that finds none: the command, the log, the wait.

Inside Nuke or Resolve `sys.executable` is the host application, so the command is found
($VOIDLINK_DAEMON, a Python, or the `voidlink` script), and the daemon is detached so it outlives
the application that started it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Union

from voidlink.bridge.connection import Connection, is_local

from voidlink import errors

PathLike = Union[str, "os.PathLike[str]"]


def split_command(line: str) -> list:
    """A command line as its arguments, quoted the way this platform's shell quotes them.

    An unquoted path with spaces (`C:\\Program Files\\voidlink\\voidlink.exe`) is taken whole when
    it names an existing file, since that is what a user pasting a path means.
    """
    if os.path.isfile(line):
        return [line]
    if os.name == "nt":
        # posix=False keeps backslashes but also the quotes around each argument.
        args = shlex.split(line, posix=False)
        return [arg[1:-1] if len(arg) > 1 and arg[0] == arg[-1] == '"' else arg for arg in args]
    return shlex.split(line)


def daemon_command() -> list:
    """How to start the daemon from here: $VOIDLINK_DAEMON, this Python, or the `voidlink` script."""
    explicit = os.environ.get("VOIDLINK_DAEMON")
    if explicit:
        return split_command(explicit)
    # Inside Nuke or Resolve sys.executable is the host application, not a Python.
    if os.path.basename(sys.executable).lower().startswith("python"):
        return [sys.executable, "-m", "voidlink"]
    script = shutil.which("voidlink")
    if script:
        return [script]
    raise errors.Unavailable(
        "cannot start a voidlink daemon from this application: set VOIDLINK_DAEMON to the command that runs "
        "`voidlink` (e.g. /opt/voidlink/bin/voidlink), or start `voidlink serve` yourself",
        reason="DAEMON_START_FAILED",
    )


def ensure_daemon(link: Connection, data_dir: Optional[PathLike] = None, timeout: float = 30.0) -> None:
    """Start a detached local daemon when none answers at `link`, and wait until it is SERVING."""
    if link.is_serving(timeout=1.0):
        return
    if not is_local(link.address):
        raise errors.Unavailable(
            f"no voidlink daemon answers at {link.address}, and it is not a local address to start one on",
            reason="DAEMON_UNREACHABLE",
        )
    command = daemon_command() + ["serve", "--listen", link.address]
    if data_dir is not None:
        command += ["--data-dir", os.fspath(data_dir)]
    log_dir = Path(os.fspath(data_dir)) if data_dir else _log_dir()
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / "daemon.log", "ab") as log_file:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives the host application that started it
            close_fds=True,
            # Not the caller's folder: `-m voidlink` from a checkout would import the unmapped source tree.
            cwd=os.fspath(log_dir),
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if link.is_serving(timeout=0.5):
            return
        if process.poll() is not None:
            raise errors.Unavailable(
                f"the voidlink daemon exited at start (code {process.returncode}); see {log_dir / 'daemon.log'}",
                reason="DAEMON_START_FAILED",
                file=str(log_dir / "daemon.log"),
            )
        time.sleep(0.2)
    raise errors.Unavailable(
        f"the voidlink daemon did not become ready within {timeout:.0f} s; see {log_dir / 'daemon.log'}",
        reason="DAEMON_START_FAILED",
    )


def _log_dir() -> Path:
    try:
        import platformdirs
    except ImportError:  # a host Python with only grpcio and protobuf
        return Path.home() / ".voidlink"
    return Path(platformdirs.user_log_dir("voidlink", appauthor=False))
