"""`voidlink install nuke`: a plugin folder on Nuke's plugin path, with the client built for Nuke's Python.

The plugin folder (default `~/.nuke/voidlink`) holds:

    init.py, menu.py            what Nuke runs at start-up (from voidlink/hosts/nuke/plugin)
    voidlink_settings.py        how Nuke starts a daemon: this environment's `python -m voidlink`
    lib/voidlink/               the client: voidlink.errors, voidlink.protos, voidlink.bridge and the Nuke
                                adapter voidlink.hosts.nuke (pure Python)
    python39/, python310/, ...  grpcio and protobuf wheels for each Nuke's Python (pip --target)

With `--user` a marked block in `~/.nuke/init.py` adds the folder with `nuke.pluginAddPath`; with
`--path DIR` nothing outside DIR is touched and the command says how to put DIR on `NUKE_PATH`.
Everything written is recorded in the folder's manifest, so `uninstall` removes exactly that.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Optional

from voidlink.installer import common

# Nuke major version -> its Python (Foundry's VFX-reference-platform builds).
NUKE_PYTHONS = {"14": "3.9", "15": "3.10", "16": "3.11"}
CLIENT_DEPENDENCIES = ("grpcio", "grpcio-health-checking", "protobuf")
BLOCK_NAME = "nuke plugin"


def default_path() -> Path:
    return Path.home() / ".nuke" / "voidlink"


def nuke_init_file() -> Path:
    return Path.home() / ".nuke" / "init.py"


def requirements() -> list:
    """The client's dependencies with the version bounds this voidlink was built against."""
    try:
        declared = importlib.metadata.requires("voidlink") or []
    except importlib.metadata.PackageNotFoundError:
        declared = []
    found = []
    for name in CLIENT_DEPENDENCIES:
        spec = next((r for r in declared if r.split(">")[0].split("=")[0].split(";")[0].strip() == name), name)
        found.append(spec.split(";")[0].strip())
    return found


def python_versions(nuke_versions: Optional[list] = None) -> list:
    """The Python versions (\"3.10\") of the given Nuke majors (all supported ones when None)."""
    versions = []
    for version in nuke_versions or sorted(NUKE_PYTHONS, key=int):
        major = str(version).split(".")[0]
        if major not in NUKE_PYTHONS:
            raise common.InstallError(
                f"Nuke {version} is not supported: choose {', '.join(sorted(NUKE_PYTHONS, key=int))}"
            )
        if NUKE_PYTHONS[major] not in versions:
            versions.append(NUKE_PYTHONS[major])
    return versions


def libraries_folder(path: Path, python_version: str) -> Path:
    """Where the plugin's init.py looks for this Python's wheels (python310 for 3.10)."""
    return Path(path) / ("python" + python_version.replace(".", ""))


def dependency_commands(path: Path, python_versions_: list, python: Optional[str] = None) -> list:
    """The pip command lines that install the client's dependencies for each Nuke Python."""
    reqs = requirements()
    return [
        common.pip_target_command(libraries_folder(path, version), reqs, version, python=python)
        for version in python_versions_
    ]


def _client_sources() -> list:
    """(source folder or file, destination relative to lib/voidlink) for the pure-Python client and the adapter."""
    import voidlink.bridge
    import voidlink.hosts
    import voidlink.protos

    import voidlink

    package = Path(voidlink.__file__).parent
    hosts = Path(voidlink.hosts.__file__).parent
    return [
        (package / "__init__.py", Path("__init__.py")),
        (package / "errors.py", Path("errors.py")),
        (package / "config.py", Path("config.py")),
        (Path(voidlink.protos.__file__).parent, Path("protos")),
        (Path(voidlink.bridge.__file__).parent, Path("bridge")),
        (hosts / "__init__.py", Path("hosts") / "__init__.py"),
        (hosts / "nuke", Path("hosts") / "nuke"),
    ]


def _settings_text() -> str:
    command = common.daemon_command_line()
    return (
        "# Written by `voidlink install nuke`: how Nuke starts a local voidlink daemon when none answers.\n"
        "import os\n\n"
        f"os.environ.setdefault('VOIDLINK_DAEMON', {command!r})\n"
    )


def _init_block(path: Path) -> str:
    return f"import nuke\n\nnuke.pluginAddPath({str(path)!r})\n"


def install(
    path: Path,
    user: bool = False,
    nuke_versions: Optional[list] = None,
    skip_dependencies: bool = False,
    python: Optional[str] = None,
    **_other,
) -> list:
    """Install the plugin folder at `path`; with `user`, also register it in ~/.nuke/init.py."""
    path = Path(path).expanduser().absolute()
    versions = python_versions(nuke_versions)
    manifest = common.Manifest.load(path)
    actions: list = []
    try:
        _install_files(path, manifest, actions)
        _install_dependencies(path, versions, skip_dependencies, python, manifest, actions)
        if user:
            actions.append(common.write_block(nuke_init_file(), BLOCK_NAME, _init_block(path), manifest))
        else:
            actions.append(
                f"to load it, put {path} on Nuke's plugin path: export NUKE_PATH={path}${{NUKE_PATH:+:$NUKE_PATH}} "
                f"(Windows: set NUKE_PATH={path};%NUKE_PATH%), or add nuke.pluginAddPath({str(path)!r}) to an init.py"
            )
    except common.InstallError as error:
        raise common.InstallError(
            f"{error}\nNuke was not set up to load {path}; `voidlink uninstall nuke` removes what was written so far"
        ) from None
    finally:
        if path.is_dir():  # even a half-done install is recorded, so uninstall can take it out
            manifest.save()
    return actions


def _install_files(path: Path, manifest: common.Manifest, actions: list) -> None:
    from voidlink.hosts.nuke import PLUGIN_DIR

    actions += common.make_dirs(path, manifest)
    for name in ("init.py", "menu.py"):
        actions.append(common.write_file(path / name, (PLUGIN_DIR / name).read_bytes(), manifest))
    actions.append(common.write_file(path / "voidlink_settings.py", _settings_text(), manifest))
    library = path / "lib" / "voidlink"
    for source, target in _client_sources():
        if source.is_dir():
            actions += common.copy_tree(source, library / target, manifest)
        else:
            actions.append(common.write_file(library / target, source.read_bytes(), manifest))


def _install_dependencies(
    path: Path, versions: list, skip: bool, python: Optional[str], manifest: common.Manifest, actions: list
) -> None:
    reqs = requirements()
    for version, command in zip(versions, dependency_commands(path, versions, python)):
        if skip:
            line = common.shell_command(command)
            actions.append(f"skipped the client's libraries for Python {version}; to add them: {line}")
            continue
        folder = libraries_folder(path, version)
        common.install_libraries(folder, command, reqs, version, f" (Nuke {_nukes(version)})", manifest, actions)


def _nukes(python_version: str) -> str:
    return "/".join(major for major, version in NUKE_PYTHONS.items() if version == python_version)


def uninstall(path: Path) -> list:
    path = Path(path).expanduser().absolute()
    manifest = common.Manifest.load(path)
    if not manifest.installed:
        return [f"nothing to remove: no voidlink install recorded at {path}"]
    return common.uninstall(manifest)
