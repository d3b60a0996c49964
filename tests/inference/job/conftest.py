"""Fixtures of the job pipeline's tests."""

from __future__ import annotations

import pytest
from support.shots import write_shot


@pytest.fixture
def shot(tmp_path, source_guard):
    files = write_shot(tmp_path / "src", frames=6)
    source_guard(files.folder)
    return files
