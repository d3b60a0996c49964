"""Fixtures of the host side's tests: a daemon that does not see the workstation's folders."""

from __future__ import annotations

import pytest
from support.shots import write_shot


@pytest.fixture
def studio(tmp_path, start_daemon, source_guard):
    """A daemon whose only root is `studio/`, and a shot on a workstation folder it cannot see."""
    root = tmp_path / "studio"
    root.mkdir()
    shot = write_shot(tmp_path / "workstation" / "sh010", frames=5)
    source_guard(shot.folder)
    return start_daemon(roots=[str(root)]), root, shot
