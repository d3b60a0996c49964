"""Daemons the tests run and wait on: `voidlink serve` as a subprocess, a bounded wait for a condition,
a digest of a folder (to prove sources are untouched)."""

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

# A small, fixed flow-control window: the daemon cannot run ahead of what the client has read, so a
# download is still under way on the daemon while the client holds its first files (and a stream
# moves a little at a time, for a test to watch or cut it).
NARROW_WINDOWS = (("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 8192))


class DaemonProcess:
    """`voidlink serve` in a subprocess; its stdout is collected so tests can read the log."""

    # Arguments of `voidlink serve` beyond the address and the data dir (a subclass adds its own).
    serve_args: tuple[str, ...] = ()
    start_timeout = 20.0

    def __init__(self, data_dir: Path, listen: str = "127.0.0.1:0", extra_env: dict | None = None) -> None:
        self.data_dir = data_dir
        self.listen = listen
        self.env = {**os.environ, **(extra_env or {})}
        self.env.pop("VOIDLINK_ADDRESS", None)
        self.lines: list[str] = []
        self.address = ""
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float | None = None) -> DaemonProcess:
        self.lines = []
        command = ["serve", "--listen", self.listen, "--data-dir", str(self.data_dir), *self.serve_args]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "voidlink", *command],
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
        if not ready.wait(timeout or self.start_timeout) or not self.address:
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

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM if it still runs, then kill if it does not end within `timeout`."""
        if self.process is not None and self.process.poll() is None:
            try:
                self.signal(signal.SIGTERM, timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def output(self) -> str:
        return "\n".join(self.lines)


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")
