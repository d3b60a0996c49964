"""A voidlink daemon owned by one farm session: started when the session enters, stopped when it ends.

A farm worker must not depend on an artist's workstation, nor on whatever daemon happens to run on
the worker. The job's environment starts a private daemon on a free loopback port with its data dir
in the session's working directory, and tells the session's later actions where it listens by
printing `openjd_env: VOIDLINK_ADDRESS=...` (Open Job Description's way for an environment to set a
variable for the rest of the session). The backend, and so the VOID weights, stay loaded from one
task to the next of the session.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from typing import Optional

from voidlink.protos import ADDRESS_ENV

from voidlink import errors

STATE_FILE = "daemon.json"  # written by the daemon once it serves: {"pid", "address", "version"}
LOG_FILE = "daemon.log"


def start_session_daemon(data_dir: str, weights: Optional[str] = None, timeout: float = 120.0) -> tuple:
    """Start `voidlink serve` on 127.0.0.1 (a free port) over `data_dir`; returns (address, pid) once it serves."""
    from voidlink.bridge.client import Client, daemon_command

    data_dir = os.path.abspath(data_dir)
    os.makedirs(data_dir, exist_ok=True)
    state_path = os.path.join(data_dir, STATE_FILE)
    if os.path.exists(state_path):
        os.remove(state_path)  # a state file left by a daemon that is gone would name the wrong port
    command = daemon_command() + ["serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir]
    if weights:
        command += ["--weights", weights]
    log_path = os.path.join(data_dir, LOG_FILE)
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            # Not the action's stdout: the session reads that pipe until it closes, and the daemon outlives the action.
            stdout=log_file,
            stderr=subprocess.STDOUT,
            close_fds=True,
            start_new_session=True,
            cwd=data_dir,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = _read_state(data_dir)
        if state is not None and state.get("pid") == process.pid:
            address = str(state["address"])
            if Client(address).is_serving(timeout=1.0):
                return address, process.pid
        if process.poll() is not None:
            raise errors.Unavailable(
                f"the session's voidlink daemon exited at start (code {process.returncode}): "
                f"{_tail(log_path) or 'no output'} (log: {log_path})",
                reason="DAEMON_START_FAILED",
                file=log_path,
            )
        time.sleep(0.1)
    _terminate(process.pid, grace=5.0)
    raise errors.Unavailable(
        f"the session's voidlink daemon did not serve within {timeout:.0f} s (log: {log_path})",
        reason="DAEMON_START_FAILED",
        file=log_path,
    )


def check_existing_daemon(address: str) -> None:
    """Refuse an address where no daemon serves, before any task of the session is tried against it."""
    from voidlink.bridge.client import Client

    if not Client(address).is_serving(timeout=5.0):
        raise errors.Unavailable(
            f"no voidlink daemon answers at {address} on this worker (DaemonAddress); start one there "
            "(`voidlink serve`), or leave DaemonAddress empty to let each session start its own",
            reason="DAEMON_UNREACHABLE",
            field="DaemonAddress",
        )


def stop_session_daemon(data_dir: str, grace: float = 60.0) -> Optional[int]:
    """Stop the daemon `start_session_daemon` started over `data_dir`; returns its pid, None when none ran.

    SIGTERM lets it finish writing the frame in hand and close its job store; after `grace` seconds
    it is killed.
    """
    state = _read_state(os.path.abspath(data_dir))
    if state is None or not isinstance(state.get("pid"), int):
        return None
    pid = int(state["pid"])
    _terminate(pid, grace, os.path.abspath(data_dir))
    return pid


def environment_line(address: str) -> str:
    """The line that sets VOIDLINK_ADDRESS for the rest of an Open Job Description session."""
    return f"openjd_env: {ADDRESS_ENV}={address}"


def _read_state(data_dir: str) -> Optional[dict]:
    try:
        with open(os.path.join(data_dir, STATE_FILE), encoding="utf-8") as handle:
            state = json.load(handle)
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _alive(pid: int) -> bool:
    if os.name == "nt":
        import ctypes

        synchronize, still_active = 0x00100000, 259
        handle = ctypes.windll.kernel32.OpenProcess(synchronize | 0x1000, False, pid)
        if not handle:
            return False
        code = ctypes.c_ulong()
        ctypes.windll.kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        ctypes.windll.kernel32.CloseHandle(handle)
        return code.value == still_active
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lock_released(data_dir: Optional[str]) -> bool:
    """True once no process holds the data dir's daemon lock (the daemon drops it when it has shut down).

    An orphaned daemon that exited can linger as a zombie where nothing reaps it, so the process
    table alone cannot say it stopped.
    """
    if data_dir is None or os.name == "nt":
        return False
    import fcntl

    try:
        with open(os.path.join(data_dir, "daemon.lock"), "a+") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    except OSError:
        return False
    return True


def _terminate(pid: int, grace: float, data_dir: Optional[str] = None) -> None:
    try:
        os.kill(pid, signal.SIGTERM)  # on Windows this is TerminateProcess
    except (ProcessLookupError, OSError):
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _alive(pid) or _lock_released(data_dir):
            return
        time.sleep(0.1)
    if os.name != "nt":
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _tail(path: str, lines: int = 5) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return " | ".join(line.strip() for line in handle.read().splitlines()[-lines:] if line.strip())
    except OSError:
        return ""
