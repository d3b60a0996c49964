"""The studio config: one JSON file both the daemon and its clients read (`--config`, `$VOIDLINK_CONFIG`).

    {
      "roots": ["/mnt/shows"],                      the folders a daemon may read and write
      "tokens_file": "/etc/voidlink/tokens",        a daemon's tokens
      "path_map": [{"client": "P:\\\\shows", "daemon": "/mnt/shows", "os": "windows"}]
    }

Read here once, checked field by field with errors naming the file and the field. Standard library
only: every host's Python reads it.
"""

from __future__ import annotations

import json
import os
from typing import Optional

from voidlink.errors import InvalidInput

CONFIG_ENV = "VOIDLINK_CONFIG"


def read_studio_config(path: Optional[str] = None) -> dict:
    """The studio config at `path`, else at $VOIDLINK_CONFIG, else {} (no config)."""
    path = path or os.environ.get(CONFIG_ENV)
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except OSError as exc:
        raise InvalidInput(
            f"cannot read the studio config {path}: {exc.strerror}", reason="BAD_CONFIG", file=str(path)
        ) from None
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"the studio config {path} is not valid JSON (line {exc.lineno}: {exc.msg})",
            reason="BAD_CONFIG",
            file=str(path),
        ) from None
    if not isinstance(config, dict):
        raise InvalidInput(f"the studio config {path} must hold a JSON object", reason="BAD_CONFIG", file=str(path))
    roots = config.get("roots", [])
    if not isinstance(roots, list) or not all(isinstance(r, str) for r in roots):
        raise InvalidInput(
            f'{path}: "roots" must be a list of folders', reason="BAD_CONFIG", file=str(path), field="roots"
        )
    tokens = config.get("tokens_file", "")
    if not isinstance(tokens, str):
        raise InvalidInput(
            f'{path}: "tokens_file" must be a path', reason="BAD_CONFIG", file=str(path), field="tokens_file"
        )
    entries = config.get("path_map", [])
    for index, entry in enumerate(entries if isinstance(entries, list) else [None]):
        if not isinstance(entry, dict) or not entry.get("client") or not entry.get("daemon"):
            raise InvalidInput(
                f'{path}: path_map[{index}] must be {{"client": FOLDER, "daemon": FOLDER}}',
                reason="BAD_PATH_MAP",
                file=str(path),
                field=f"path_map[{index}]",
            )
    return config
