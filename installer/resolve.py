"""`voidlink install resolve`: the Workspace ▸ Scripts entry, with what it imports, in Resolve's Scripts folder.

Resolve lists every script under the sub-folders of its Scripts folder; scripts under `Utility` show
on every page. Under the Scripts folder (default: the user's, per OS) the install writes:

    Utility/VOID Remove.py      the menu script, its `VOIDLINK_PATHS` block pointing at the two below
    voidlink/lib/voidlink/      the client, the panel and the media layer it reads frames with
    voidlink/python311/ ...     their third-party wheels built for the Python Resolve runs scripts
                                with (pip --target; `skip_dependencies` prints the command instead)

Everything written is recorded in `voidlink/`'s manifest, so `uninstall` removes exactly that and
leaves the user's own scripts (and any folder they share with ours) alone. Resolve scans the
folder at start-up: restart it once after installing.
"""

from __future__ import annotations

import operator
import os
import re
import sys
from pathlib import Path
from typing import Optional

from voidlink.installer import common

MENU_FOLDER = "Utility"  # listed on every page (Edit, Color, Fusion, Deliver...)
OWN_FOLDER = "voidlink"
# What the panel imports beyond the standard library, as pip names.
DEPENDENCIES = (
    "grpcio",
    "grpcio-health-checking",
    "protobuf",
    "numpy",
    "OpenImageIO",
    "opencolorio",
    "opencv-python-headless",
    "opentimelineio",
    "platformdirs",
    "PySide6-Essentials",
)
_PATHS_BLOCK = re.compile(r"(# >>> voidlink paths >>>\n)(.*?)(# <<< voidlink paths <<<\n)", re.S)


def default_path() -> Path:
    """The user's Resolve Scripts folder (as Blackmagic's scripting README gives it per OS)."""
    if sys.platform == "darwin":
        return (
            Path.home()
            / "Library"
            / "Application Support"
            / "Blackmagic Design"
            / "DaVinci Resolve"
            / "Fusion"
            / ("Scripts")
        )
    if sys.platform.startswith("win"):
        appdata = Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
        return appdata / "Blackmagic Design" / "DaVinci Resolve" / "Support" / "Fusion" / "Scripts"
    return Path.home() / ".local" / "share" / "DaVinciResolve" / "Fusion" / "Scripts"


def script_path(path: Path) -> Path:
    from voidlink.hosts.resolve import SCRIPT_NAME

    return Path(path) / MENU_FOLDER / SCRIPT_NAME


def library_folder(path: Path) -> Path:
    return Path(path) / OWN_FOLDER / "lib"


def dependencies_folder(path: Path, python_version: str) -> Path:
    return Path(path) / OWN_FOLDER / ("python" + python_version.replace(".", ""))


def requirements(python_version: Optional[str] = None) -> list:
    """The dependencies with the version bounds this voidlink declares for CPython `python_version` ("3.11",
    default: this Python); bare names when voidlink is not installed.

    Where pyproject.toml gives a dependency one line per Python range (the panel's Qt binding: a release
    that crashes on 3.11 is allowed from 3.12), the line whose marker holds for Resolve's Python is
    taken. pip cannot choose for us: asked for another Python with --python-version it still evaluates
    markers against the Python it runs on."""
    import importlib.metadata

    version = python_version or f"{sys.version_info.major}.{sys.version_info.minor}"
    try:
        declared = importlib.metadata.requires("voidlink") or []
    except importlib.metadata.PackageNotFoundError:
        declared = []
    found = []
    for name in DEPENDENCIES:
        lines = [r for r in declared if re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].strip().lower() == name.lower()]
        match = next((r for r in lines if marker_holds(r.partition(";")[2], version)), name)
        found.append(match.split(";")[0].strip())
    return found


_MARKER_CLAUSE = re.compile(r"""(python_version|extra)\s*(<=|>=|==|!=|<|>)\s*["']([^"']*)["']""")
_COMPARE = {
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">=": operator.ge,
    ">": operator.gt,
}


def marker_holds(marker: str, python_version: str) -> bool:
    """Whether a requirement's environment marker holds on CPython `python_version` ("3.11").

    Only what voidlink's own requirements use is understood: `python_version` comparisons and `extra`
    (every extra counts: Resolve gets the panel's libraries), joined by `and`; anything else is refused
    rather than guessed."""
    if not marker.strip():
        return True
    have = tuple(int(part) for part in python_version.split("."))
    for clause in marker.split(" and "):
        parsed = _MARKER_CLAUSE.fullmatch(clause.strip())
        if parsed is None:
            raise common.InstallError(
                f"cannot evaluate the requirement marker '{marker.strip()}' for Python {python_version}"
            )
        variable, compare, value = parsed.groups()
        if variable == "python_version" and not _COMPARE[compare](have, tuple(int(p) for p in value.split("."))):
            return False
    return True


def dependency_command(path: Path, python_version: str, python: Optional[str] = None) -> list:
    return common.pip_target_command(
        dependencies_folder(path, python_version), requirements(python_version), python_version, python=python
    )


def _package_sources() -> list:
    """(source, destination under lib/voidlink) for the floors the menu script stands on: the package's root
    (version, errors, studio config), the contract, the media floor, the client side, the panel and the host adapters;
    nothing of the daemon."""
    import voidlink.bridge
    import voidlink.hosts
    import voidlink.media
    import voidlink.panel
    import voidlink.protos

    import voidlink

    package = Path(voidlink.__file__).parent
    floors = {
        "protos": voidlink.protos,
        "media": voidlink.media,
        "bridge": voidlink.bridge,
        "panel": voidlink.panel,
        "hosts": voidlink.hosts,
    }
    return [
        (package / "__init__.py", Path("__init__.py")),
        (package / "errors.py", Path("errors.py")),
        (package / "config.py", Path("config.py")),
        *[(Path(module.__file__).parent, Path(name)) for name, module in floors.items()],
    ]


def script_text(path: Path, python_version: str) -> str:
    """The menu script with its paths block pointing at this install."""
    from voidlink.hosts.resolve import SCRIPT_DIR, SCRIPT_NAME

    template = (SCRIPT_DIR / SCRIPT_NAME).read_text()
    paths = [str(library_folder(path).absolute()), str(dependencies_folder(path, python_version).absolute())]
    # Inside Resolve sys.executable is not a Python: say how to start a daemon (this environment's voidlink).
    daemon = common.daemon_command_line()
    body = f"VOIDLINK_PATHS = {paths!r}\nos.environ.setdefault('VOIDLINK_DAEMON', {daemon!r})\n"
    text, count = _PATHS_BLOCK.subn(lambda m: m.group(1) + body + m.group(3), template)
    if count != 1:
        raise common.InstallError(f"{SCRIPT_DIR / SCRIPT_NAME} has no voidlink paths block to fill in")
    return text


def install(
    path: Path,
    user: bool = False,
    skip_dependencies: bool = False,
    python: Optional[str] = None,
    python_version: Optional[str] = None,
    **_other,
) -> list:
    """Install into the Resolve Scripts folder `path`; returns what was done, one sentence each."""
    path = Path(path).expanduser().absolute()
    version = python_version or f"{sys.version_info.major}.{sys.version_info.minor}"
    if not re.fullmatch(r"3\.\d+", version):
        raise common.InstallError(f"Python version '{version}' is not MAJOR.MINOR of a Python 3 (e.g. 3.11)")
    own = path / OWN_FOLDER
    manifest = common.Manifest.load(own)
    actions: list = []
    try:
        # Records every folder it makes, the Scripts folder too when Resolve has not made it yet.
        actions += common.make_dirs(own, manifest)
        library = library_folder(path) / "voidlink"
        for source, target in _package_sources():
            if source.is_dir():
                actions += common.copy_tree(source, library / target, manifest)
            else:
                actions.append(common.write_file(library / target, source.read_bytes(), manifest))
        _install_dependencies(path, version, skip_dependencies, python, manifest, actions)
        actions.append(common.write_file(script_path(path), script_text(path, version), manifest))
        actions.append("restart Resolve, then run Workspace ▸ Scripts ▸ VOID Remove with the playhead on a clip")
    except common.InstallError as error:
        raise common.InstallError(
            f"{error}\nResolve was not set up; `voidlink uninstall resolve` removes what was written so far"
        ) from None
    finally:
        if own.is_dir():  # even a half-done install is recorded, so uninstall can take it out
            manifest.save()
    return actions


def _install_dependencies(
    path: Path, version: str, skip: bool, python: Optional[str], manifest: common.Manifest, actions: list
) -> None:
    command = dependency_command(path, version, python)
    folder = dependencies_folder(path, version)
    if skip:
        line = common.shell_command(command)
        actions.append(f"skipped the panel's libraries for Resolve's Python {version}; to add them: {line}")
        return
    common.install_libraries(folder, command, requirements(version), version, "", manifest, actions)


def uninstall(path: Path) -> list:
    """Remove exactly what `install` put under (and into) the Scripts folder `path`."""
    path = Path(path).expanduser().absolute()
    manifest = common.Manifest.load(path / OWN_FOLDER)
    if not manifest.installed:
        return [f"nothing to remove: no voidlink install recorded at {path / OWN_FOLDER}"]
    return common.uninstall(manifest)
