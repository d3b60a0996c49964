"""The farm job as plain command lines, for farms that take one command per task (OpenCue, Tractor, ...).

Each line is `voidlink remove ...` without `--no-start`: the first task on a render node starts that
node's own daemon (loopback, the node user's data dir) and later tasks there reuse it, backend loaded.
"""

from __future__ import annotations

import json
import os
import shlex
from typing import Optional


def command_lines(shots: list, voidlink: str = "voidlink") -> list:
    """[{"shot", "argv", "command"}] per shot; `command` is `argv` quoted for a POSIX shell."""
    from voidlink.bridge.farm.openjd import remove_line

    out = []
    for shot in shots:
        argv = [voidlink, "remove", f"--name={shot.label}", *remove_line(shot.spec).arguments()]
        out.append({"shot": shot.label, "argv": argv, "command": shlex.join(argv)})
    return out


def write_command_lines(shots: list, path: str, name: str, finish: Optional[list] = None) -> str:
    """Write `{"name", "tasks": [...], "finish"}` as JSON at `path` (a temporary file renamed into place).

    `finish`: voidlink arguments of the command to run once every task has succeeded (or None).
    """
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        document: dict = {"name": name, "tasks": command_lines(shots)}
        if finish:
            argv = ["voidlink", *finish]
            document["finish"] = {"argv": argv, "command": shlex.join(argv)}
        json.dump(document, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
    os.replace(temporary, path)
    return path
