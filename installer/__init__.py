"""Host integrations: `voidlink install TARGET` / `voidlink uninstall TARGET`.

Each target is a module exposing:

    default_path() -> Path                        where `--user` installs
    install(path: Path, **options) -> list[str]   what it did, one sentence each
    uninstall(path: Path) -> list[str]            what it removed (exactly what install put there)

`installer.common` holds what they share (marked blocks in start-up files, the install manifest).
"""

from __future__ import annotations

import importlib
from types import ModuleType

TARGETS = {"nuke": "voidlink.installer.nuke", "resolve": "voidlink.installer.resolve"}


class TargetUnavailable(Exception):
    """A target whose module cannot be imported here."""


def load_target(name: str) -> ModuleType:
    """The module for `name`; raises TargetUnavailable (unknown target, or its module does not import)."""
    module_name = TARGETS.get(name)
    if module_name is None:
        raise TargetUnavailable(f"unknown target '{name}': choose {', '.join(sorted(TARGETS))}")
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise TargetUnavailable(f"the {name} installer is not available in this voidlink ({exc})") from None
