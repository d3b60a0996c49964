"""Shared test fixtures: a real daemon subprocess on an ephemeral loopback port, source guards."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


class DaemonProcess:
    """`voidlink serve` in a subprocess; its stdout is collected so tests can read the log."""

    def __init__(self, data_dir: Path, listen: str = "127.0.0.1:0", extra_env: dict | None = None) -> None:
        self.data_dir = data_dir
        self.listen = listen
        self.env = {**os.environ, **(extra_env or {})}
        self.env.pop("VOIDLINK_ADDRESS", None)
        self.lines: list[str] = []
        self.address = ""
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> DaemonProcess:
        self.lines = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "voidlink", "serve", "--listen", self.listen, "--data-dir", str(self.data_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
        )
        ready = threading.Event()

        def pump(stream):
            for line in stream:
                self.lines.append(line.rstrip("\n"))
                match = re.search(r"listening on (\S+)", line)
                if match:
                    self.address = match.group(1)
                    ready.set()
            ready.set()

        threading.Thread(target=pump, args=(self.process.stdout,), daemon=True).start()
        if not ready.wait(timeout) or not self.address:
            self.kill()
            raise RuntimeError("daemon did not start:\n" + "\n".join(self.lines))
        return self

    def client(self):
        from voidlink.bridge import Client

        return Client(self.address)

    def signal(self, sig: int, timeout: float = 40.0) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def output(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def daemon(tmp_path):
    """A running daemon with its own data dir; stopped (SIGTERM, then kill) after the test."""
    process = DaemonProcess(tmp_path / "daemon-data").start()
    yield process
    if process.process is not None and process.process.poll() is None:
        try:
            process.signal(signal.SIGTERM, timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def daemon_factory(tmp_path):
    made: list[DaemonProcess] = []

    def make(data_dir: Path | None = None, listen: str = "127.0.0.1:0", **env) -> DaemonProcess:
        process = DaemonProcess(data_dir or tmp_path / f"daemon-data-{len(made)}", listen, env)
        made.append(process)
        return process

    yield make
    for process in made:
        process.kill()


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def source_guard():
    """Call with a folder of sources; at teardown asserts every file there is byte-identical."""
    guarded: list[tuple[Path, dict[str, str]]] = []

    def guard(root: Path) -> Path:
        guarded.append((root, tree_digest(root)))
        return root

    yield guard
    for root, before in guarded:
        assert tree_digest(root) == before, f"source files under {root} changed"


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")
