"""The `voidlink` command run as a user runs it: its own process, no daemon address from the test's
environment, and a failure shown with everything it printed."""

from __future__ import annotations

import os
import subprocess
import sys


def voidlink(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "VOIDLINK_ADDRESS"}
    result = subprocess.run(
        [sys.executable, "-m", "voidlink", *args], capture_output=True, text=True, timeout=timeout, env=env
    )
    if check and result.returncode != 0:
        raise AssertionError(f"voidlink {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result
