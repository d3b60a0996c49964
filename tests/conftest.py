"""Shared test fixtures: the suite's own user folders, a real daemon subprocess on an ephemeral
loopback port, source guards."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.daemons import DaemonProcess, tree_digest, wait_for  # noqa: F401 - the tests' helpers

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

# Where voidlink keeps a user's data, logs and caches when nothing names a folder (platformdirs reads
# these): the suite's own folders, so a run never reads or writes the user's, and two runs side by
# side never share one. Daemons the tests start inherit them.
USER_FOLDERS = ("XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME")


@pytest.fixture(scope="session", autouse=True)
def user_folders(tmp_path_factory):
    """The user's data, state, cache and config folders, under the session's temporary folder."""
    root = tmp_path_factory.mktemp("user")
    with pytest.MonkeyPatch.context() as patch:  # the function-scoped `monkeypatch`, for the session
        for name in USER_FOLDERS:
            patch.setenv(name, str(root / name.lower()))
        yield root


@pytest.fixture
def daemon(tmp_path):
    """A running daemon with its own data dir; stopped (SIGTERM, then kill) after the test."""
    process = DaemonProcess(tmp_path / "daemon-data").start()
    yield process
    process.stop()


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


@pytest.fixture
def start_daemon(tmp_path):
    """Start in-process daemons with a security config (`start(listen=..., roots=..., tokens_file=...)`);
    all are stopped after the test."""
    from voidlink.inference.daemon import Daemon
    from voidlink.inference.security import SecurityConfig

    started: list = []

    def start(listen: str = "127.0.0.1:0", **security):
        daemon = Daemon(listen=listen, data_dir=tmp_path / f"data-{len(started)}", security=SecurityConfig(**security))
        daemon.start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop(grace=1.0)
