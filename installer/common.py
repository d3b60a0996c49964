"""Helpers every host installer shares: marked blocks in start-up files, a manifest for exact uninstall.

Every target module (`voidlink.installer.nuke`, `voidlink.installer.resolve`, ...) installs into
one folder it owns (`root`) and keeps a `Manifest` there. Everything the install creates goes
through the manifest, so `uninstall` removes exactly that, and running either twice changes
nothing the second time. Each function returns (or appends to a list of) short sentences saying
what it did, which the `voidlink install` / `voidlink uninstall` commands print.

API
---
`Manifest.load(root) -> Manifest`
    The record kept in `root/.voidlink-manifest.json` (empty when nothing is installed there).
    `manifest.installed` is True when the file exists. `manifest.save()` writes it (atomically).
    `manifest.extra` is a dict a target may use for its own facts (e.g. dependency versions).

`make_dirs(path, manifest) -> list[str]`
    Create `path` and its missing parents, recording each folder this call created.

`write_file(path, data: bytes | str, manifest) -> str`
    Write a file atomically (temp file + rename) and record it with its SHA-256; "unchanged" when
    the content is already there.

`copy_tree(source, target, manifest, ignore=("__pycache__", "*.pyc")) -> list[str]`
    Copy a folder's files with `write_file`; one summary sentence.

`record_tree(folder, manifest) -> None`
    Record every file and folder under `folder` (for trees another program wrote, e.g. pip).

`write_block(path, name, body, manifest=None, comment="#") -> str`
    Put `body` between `# >>> voidlink NAME >>>` and `# <<< voidlink NAME <<<` lines in `path`
    (created if missing), replacing an earlier block of that name and keeping the rest of the file
    byte for byte. Recorded in the manifest so `uninstall` takes it out again.

`read_block(path, name, comment="#") -> Optional[str]` / `remove_block(path, name, comment="#") -> Optional[str]`
    The block's body / take the block out (None when there is none).

`uninstall(manifest) -> list[str]`
    Undo a manifest: take out its blocks, delete its files (a file changed since the install is
    kept and reported), the manifest itself, then its folders when empty (bytecode caches that
    Python wrote beside installed modules go with them).

`pip_target_command(target, requirements, python_version, platform=None, python=None) -> list[str]`
    The pip command line that installs `requirements` as binary wheels for another Python
    (`--target --python-version --only-binary=:all: --implementation cp`), e.g. a host's.

`run_command(command) -> None`
    Run it; raises `InstallError` with the command's output when it fails.

`InstallError`
    Raised for anything the user has to fix (a message that says what and where).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional, Union

MANIFEST_NAME = ".voidlink-manifest.json"


class InstallError(Exception):
    """An install or uninstall step that cannot go on; the message says what to do."""


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        if path.exists():
            os.chmod(temp, path.stat().st_mode & 0o7777)
        else:
            os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


class Manifest:
    """What one install put under (and around) its root folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.files: dict = {}  # absolute path -> sha256 of what we wrote
        self.dirs: list = []  # folders we created, parents first
        self.blocks: list = []  # {"file": path, "name": block name, "comment": "#", "created_file": bool}
        self.extra: dict = {}
        self.installed = False

    @property
    def path(self) -> Path:
        return self.root / MANIFEST_NAME

    @classmethod
    def load(cls, root: Path) -> Manifest:
        manifest = cls(root)
        if manifest.path.is_file():
            try:
                data = json.loads(manifest.path.read_text())
            except (OSError, ValueError) as exc:
                raise InstallError(f"cannot read the install record {manifest.path}: {exc}") from None
            manifest.files = dict(data.get("files", {}))
            manifest.dirs = list(data.get("dirs", []))
            manifest.blocks = list(data.get("blocks", []))
            manifest.extra = dict(data.get("extra", {}))
            manifest.installed = True
        return manifest

    def save(self) -> None:
        data = {"files": self.files, "dirs": self.dirs, "blocks": self.blocks, "extra": self.extra}
        _atomic_write(self.path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())
        self.installed = True

    def record_dir(self, path: Path) -> None:
        text = str(Path(path).absolute())
        if text not in self.dirs:
            self.dirs.append(text)

    def record_file(self, path: Path, digest: Optional[str] = None) -> None:
        path = Path(path).absolute()
        self.files[str(path)] = digest or _digest(path.read_bytes())

    def record_block(self, path: Path, name: str, comment: str, created_file: bool) -> None:
        text = str(Path(path).absolute())
        for block in self.blocks:
            if block["file"] == text and block["name"] == name:
                return
        self.blocks.append({"file": text, "name": name, "comment": comment, "created_file": created_file})


def make_dirs(path: Path, manifest: Manifest) -> list:
    """Create `path` with its parents; records (and reports) only the folders this call made."""
    path = Path(path).absolute()
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise InstallError(f"{probe} is a file where a folder is needed for {path}")
    actions = []
    for folder in reversed(missing):
        folder.mkdir()
        manifest.record_dir(folder)
        actions.append(f"created folder {folder}")
    return actions


def write_file(path: Path, data: Union[bytes, str], manifest: Manifest) -> str:
    path = Path(path).absolute()
    payload = data.encode() if isinstance(data, str) else data
    digest = _digest(payload)
    if path.is_file() and _digest(path.read_bytes()) == digest:
        manifest.record_file(path, digest)
        return f"{path} unchanged"
    existed = path.exists()
    make_dirs(path.parent, manifest)
    _atomic_write(path, payload)
    manifest.record_file(path, digest)
    return f"{'updated' if existed else 'wrote'} {path}"


def _ignored(name: str, ignore: tuple) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in ignore)


def copy_tree(source: Path, target: Path, manifest: Manifest, ignore: tuple = ("__pycache__", "*.pyc")) -> list:
    source, target = Path(source), Path(target).absolute()
    if not source.is_dir():
        raise InstallError(f"cannot copy {source}: not a folder")
    actions = make_dirs(target, manifest)
    written = unchanged = 0
    for folder, subfolders, files in os.walk(source):
        subfolders[:] = sorted(name for name in subfolders if not _ignored(name, ignore))
        relative = Path(folder).relative_to(source)
        actions += make_dirs(target / relative, manifest)
        for name in sorted(files):
            if _ignored(name, ignore):
                continue
            result = write_file(target / relative / name, (Path(folder) / name).read_bytes(), manifest)
            if result.endswith("unchanged"):
                unchanged += 1
            else:
                written += 1
    created_dirs = [a for a in actions if a.startswith("created folder")]
    summary = f"copied {source} to {target} ({written} files written, {unchanged} unchanged"
    summary += f", {len(created_dirs)} folders created)" if created_dirs else ")"
    return [summary]


def record_tree(folder: Path, manifest: Manifest) -> None:
    folder = Path(folder).absolute()
    manifest.record_dir(folder)
    for parent, subfolders, files in os.walk(folder):
        subfolders.sort()
        for name in subfolders:
            manifest.record_dir(Path(parent) / name)
        for name in files:
            manifest.record_file(Path(parent) / name)


def _marks(name: str, comment: str) -> tuple:
    return f"{comment} >>> voidlink {name} >>>", f"{comment} <<< voidlink {name} <<<"


def _split_block(text: str, name: str, comment: str) -> Optional[tuple]:
    """(before, body, after) around the named block, or None. Raises for a block with no end mark."""
    begin, end = _marks(name, comment)
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.rstrip("\r\n") == begin]
    if not starts:
        return None
    start = starts[0]
    for stop in range(start + 1, len(lines)):
        if lines[stop].rstrip("\r\n") == end:
            return "".join(lines[:start]), "".join(lines[start + 1 : stop]), "".join(lines[stop + 1 :])
    raise InstallError(f"the voidlink block '{name}' opened at line {start + 1} has no end line ({end})")


def read_block(path: Path, name: str, comment: str = "#") -> Optional[str]:
    path = Path(path)
    if not path.is_file():
        return None
    parts = _split_block(path.read_text(), name, comment)
    return parts[1] if parts else None


def write_block(path: Path, name: str, body: str, manifest: Optional[Manifest] = None, comment: str = "#") -> str:
    path = Path(path).absolute()
    begin, end = _marks(name, comment)
    body = body if body.endswith("\n") else body + "\n"
    block = f"{begin}\n{body}{end}\n"
    existed = path.is_file()
    text = path.read_text() if existed else ""
    parts = _split_block(text, name, comment)
    if parts is not None:
        before, old_body, after = parts
        if old_body == body:
            action = f"{path}: voidlink block '{name}' unchanged"
            new_text = text
        else:
            action = f"{path}: updated the voidlink block '{name}'"
            new_text = before + block + after
    else:
        separator = "" if not text or text.endswith("\n") else "\n"
        new_text = text + separator + block
        action = f"{path}: added the voidlink block '{name}'" if existed else f"created {path} with a voidlink block"
    if manifest is not None:
        make_dirs(path.parent, manifest)
        previous = next((b for b in manifest.blocks if b["file"] == str(path) and b["name"] == name), None)
        created = previous["created_file"] if previous else not existed
        manifest.record_block(path, name, comment, created)
    if new_text != text or not existed:
        _atomic_write(path, new_text.encode())
    return action


def remove_block(path: Path, name: str, comment: str = "#") -> Optional[str]:
    path = Path(path).absolute()
    if not path.is_file():
        return None
    text = path.read_text()
    parts = _split_block(text, name, comment)
    if parts is None:
        return None
    before, _, after = parts
    _atomic_write(path, (before + after).encode())
    return f"{path}: removed the voidlink block '{name}'"


def uninstall(manifest: Manifest) -> list:
    """Remove what `manifest` records; returns what was done (nothing when nothing was installed)."""
    actions: list = []
    for block in reversed(manifest.blocks):
        path = Path(block["file"])
        removed = remove_block(path, block["name"], block.get("comment", "#"))
        if removed:
            actions.append(removed)
        if block.get("created_file") and path.is_file() and not path.read_text().strip():
            path.unlink()
            actions.append(f"deleted {path} (voidlink created it and nothing else is in it)")
    removed_files = 0
    for name, digest in sorted(manifest.files.items()):
        path = Path(name)
        if not path.is_file():
            continue
        if _digest(path.read_bytes()) != digest:
            actions.append(f"kept {path}: it changed since voidlink installed it")
            continue
        path.unlink()
        removed_files += 1
    if removed_files:
        actions.append(f"deleted {removed_files} files under {manifest.root}")
    if manifest.path.is_file():
        manifest.path.unlink()
    removed_dirs = 0
    for name in sorted(manifest.dirs, key=lambda d: d.count(os.sep), reverse=True):
        folder = Path(name)
        if not folder.is_dir():
            continue
        _remove_bytecode(folder)
        try:
            folder.rmdir()
        except OSError:
            actions.append(f"kept folder {folder}: it holds files voidlink did not install")
        else:
            removed_dirs += 1
    if removed_dirs:
        actions.append(f"deleted {removed_dirs} folders voidlink had created (under {manifest.root.parent})")
    return actions


def _remove_bytecode(folder: Path) -> None:
    # Python writes __pycache__ beside the modules we installed when the host imports them: ours too.
    cache = folder / "__pycache__"
    if not cache.is_dir():
        return
    for item in cache.iterdir():
        if item.is_file() and item.suffix == ".pyc":
            item.unlink()
    try:
        cache.rmdir()
    except OSError:
        pass


def pip_target_command(
    target: Path,
    requirements: list,
    python_version: str,
    platform: Optional[list] = None,
    python: Optional[str] = None,
) -> list:
    """pip installing `requirements` into `target` as binary wheels for CPython `python_version` ("3.10")."""
    command = [python or sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
    command += ["--target", str(target), "--python-version", python_version, "--implementation", "cp"]
    command += ["--only-binary=:all:", "--upgrade"]
    for tag in platform or []:
        command += ["--platform", tag]
    return command + list(requirements)


def shell_command(command: list) -> str:
    """`command` as a line a user can paste into this platform's shell (`>=` in a requirement is a redirect)."""
    return subprocess.list2cmdline(command) if os.name == "nt" else shlex.join(command)


def daemon_command_line() -> str:
    """How a host starts a local daemon from this environment, as the VOIDLINK_DAEMON value the client splits."""
    return shell_command([sys.executable, "-m", "voidlink"])


def run_command(command: list) -> None:
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as exc:
        raise InstallError(f"cannot run {command[0]}: {exc}") from None
    if done.returncode != 0:
        tail = "\n".join(done.stdout.strip().splitlines()[-15:])
        raise InstallError(f"`{shell_command(command)}` failed (exit {done.returncode}):\n{tail}")


def install_libraries(
    folder: Path, command: list, reqs: list, version: str, label: str, manifest: Manifest, actions: list
) -> None:
    """pip-install `reqs` for a host's Python `version` into `folder` (with `command`), unless the
    manifest says they are there already; what pip wrote is recorded for uninstall either way."""
    installed = manifest.extra.setdefault("dependencies", {})
    if installed.get(version) == reqs and folder.is_dir():
        actions.append(f"{folder}: {', '.join(reqs)} for Python {version} already installed")
        return
    actions += make_dirs(folder, manifest)
    try:
        run_command(command)
    finally:
        record_tree(folder, manifest)  # whatever pip wrote, even when it failed half way
    installed[version] = reqs
    actions.append(f"installed {', '.join(reqs)} for Python {version}{label} into {folder}")
