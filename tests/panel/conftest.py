"""Fixtures of the panel's tests: a real daemon on loopback for the module, the panel window, a folder for
screenshots."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402
from support.daemons import DaemonProcess  # noqa: E402
from voidlink.panel.window import PanelWindow  # noqa: E402


@pytest.fixture(autouse=True)
def panel_data_home(tmp_path, monkeypatch):
    """The panel's data folder (its unsaved roto) under the test's folder, never the user's own."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    process = DaemonProcess(tmp_path_factory.mktemp("panel-daemon")).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """Screenshots of the main views (kept under pytest's tmp folder for bug reports and docs)."""
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def window(qtbot, served):
    panel = PanelWindow(served.address, refresh_ms=250)
    qtbot.addWidget(panel)
    panel.resize(1100, 720)
    panel.show()
    yield panel
    panel.close()
