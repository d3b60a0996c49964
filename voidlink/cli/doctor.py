"""`voidlink doctor`: what works here, what does not, and what to do about it."""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Callable

from voidlink.cli.common import add_address, add_json, print_json

# PySide6/shiboken6 releases that drop a reference to None on every Qt call returning nothing: on Python < 3.12
# the panel aborts with "Fatal Python error: none_dealloc" minutes after it opens (issue #15). pyproject.toml's
# panel extra excludes the same releases; from Python 3.12 None is immortal (PEP 683) and they do no harm.
LEAKS_NONE = ("6.12.0",)
NONE_IMMORTAL_FROM = (3, 12)
QT_DISTRIBUTIONS = ("PySide6", "PySide6-Essentials", "shiboken6")
# Qt 6.5 and later's xcb platform plugin (the one that opens windows on X11) links against it.
XCB_CURSOR = "libxcb-cursor.so.0"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="data dir to check (default: the platform's user data dir)")
    parser.add_argument("--weights", help="VOID weights folder to check")
    parser.add_argument("--path", action="append", default=[], help="a client path the daemon should see (repeatable)")
    add_address(parser)
    add_json(parser)


def _creatable(folder: Path) -> bool:
    """Writable, or creatable: the daemon makes its data dir (and missing parents) on first start."""
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    return existing.is_dir() and os.access(existing, os.W_OK)


def qt_versions() -> dict[str, str]:
    """The installed releases of the Qt binding's distributions, from their metadata (Qt is not started)."""
    import importlib.metadata

    found = {}
    for name in QT_DISTRIBUTIONS:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def _loadable(library: str) -> bool:
    """Whether the dynamic linker finds `library` (the search Qt's plugin loading goes through)."""
    try:
        ctypes.CDLL(library)
    except OSError:
        return False
    return True


def _release(version: str) -> tuple[int, ...]:
    parts = []
    for part in version.split(".")[:2]:
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def qt_problems(
    versions: Mapping[str, str],
    python: tuple[int, int],
    platform: str,
    qpa_platform: str,
    loadable: Callable[[str], bool] = _loadable,
) -> list[str]:
    """What stops the panel on this machine, one sentence each saying what to do; empty when nothing does.

    `versions`: installed Qt distributions (`qt_versions()`); `python`: (major, minor); `platform`:
    `sys.platform`; `qpa_platform`: $QT_QPA_PLATFORM ("" when unset); `loadable`: whether a shared
    library can be loaded."""
    problems = []
    installed = next((name for name in QT_DISTRIBUTIONS[:2] if name in versions), None)
    if tuple(python) < NONE_IMMORTAL_FROM:
        bad = next((name for name in QT_DISTRIBUTIONS if versions.get(name) in LEAKS_NONE), None)
        if bad is not None:
            release = versions[bad]
            exclude = "".join(f",!={v}" for v in LEAKS_NONE)
            problems.append(
                f"{bad} {release} on Python {python[0]}.{python[1]} drops a reference to None on every Qt call that "
                f"returns nothing: the panel aborts by itself ('Fatal Python error: none_dealloc') minutes after it "
                f"opens, losing what was not saved; install another release: pip install "
                f"'{installed or 'PySide6-Essentials'}>=6.5{exclude}' (or run the panel on Python 3.12 or later)"
            )
    # Only X11 needs it: a platform asked for by name (offscreen, wayland, eglfs...) loads another plugin.
    uses_xcb = not qpa_platform or qpa_platform.split(":")[0] == "xcb"
    qt6_5 = installed is not None and _release(versions[installed]) >= (6, 5)
    if platform.startswith("linux") and uses_xcb and qt6_5 and not loadable(XCB_CURSOR):
        problems.append(
            f"{XCB_CURSOR} is missing: Qt 6.5 and later cannot open a window on X11 without it, so `voidlink panel` "
            "exits before showing anything (offscreen screenshots still work); install it: sudo apt install "
            "libxcb-cursor0 (Fedora, RHEL: sudo dnf install xcb-util-cursor)"
        )
    return problems


def run(args: argparse.Namespace) -> int:
    from voidlink.bridge.client import Client
    from voidlink.errors import VoidlinkError
    from voidlink.inference.backends import BACKENDS, weights_dir
    from voidlink.inference.daemon import library_versions
    from voidlink.inference.datadir import default_data_dir

    report: dict = {"libraries": library_versions()}
    versions = qt_versions()
    report["qt"] = {
        "versions": versions,
        "problems": qt_problems(versions, sys.version_info[:2], sys.platform, os.environ.get("QT_QPA_PLATFORM", "")),
    }
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    report["data_dir"] = {
        "path": str(data_dir),
        "exists": data_dir.exists(),
        "writable": _creatable(data_dir),
    }
    report["ocio_config"] = os.environ.get("OCIO") or "built-in (set $OCIO to use the studio's config)"
    report["backends"] = {}
    for name, backend in BACKENDS.items():
        state = backend.availability(args.weights)
        report["backends"][name] = {
            "available": state.available,
            "reason": state.reason,
            "detail": state.detail,
            "licences": state.licences,
        }
    report["weights_dir"] = str(weights_dir(args.weights))
    from voidlink.inference.backends.void.weights import check_weights, download_commands

    weights = check_weights(weights_dir(args.weights))
    report["void_weights"] = {
        "folder": str(weights.folder),
        "complete": weights.ok,
        "pass2": weights.pass2,
        "problems": weights.problems,
        # What a user runs on a machine with internet, then copies into the folder above.
        "download_commands": download_commands(weights.folder) if not (weights.ok and weights.pass2) else [],
    }
    report["matte_models"] = _matte_section(weights_dir(args.weights))
    client = Client(args.address, connect_timeout=2.0)
    try:
        info = client.info()
        report["daemon"] = {
            "address": client.address,
            "running": True,
            "version": info.version,
            "pid": info.pid,
            "queued": info.queue.queued,
            "running_jobs": info.queue.running,
            "default_backend": info.default_backend,
            # What the daemon tracks mattes with (empty: a daemon from before matte jobs).
            "matte_trackers": {
                tracker.name: {"available": tracker.available, "reason": tracker.reason, "loaded": tracker.loaded}
                for tracker in info.matte_trackers
            },
        }
        report["daemon"].update(_paths_section(client, info, args.path or [os.getcwd()]))
    except VoidlinkError as error:
        report["daemon"] = {"address": client.address, "running": False, "reason": str(error)}
    finally:
        client.close()
    if args.json:
        print_json(report)
        return 0
    print("libraries:")
    for name, version in report["libraries"].items():
        print(f"  {name:15} {version}")
    qt = report["qt"]
    if qt["versions"]:
        print("Qt binding:       " + ", ".join(f"{name} {version}" for name, version in qt["versions"].items()))
    else:
        print("Qt binding:       none (the panel needs PySide6: pip install 'voidlink[panel]')")
    for problem in qt["problems"]:
        print(f"  - {problem}")
    print(f"OCIO config:      {report['ocio_config']}")
    dd = report["data_dir"]
    print(f"data dir:         {dd['path']} ({'exists' if dd['exists'] else 'not created yet'}, "
          f"{'writable' if dd['writable'] else 'NOT writable'})")
    daemon = report["daemon"]
    if daemon["running"]:
        print(f"daemon:           running at {daemon['address']} (voidlink {daemon['version']}, pid {daemon['pid']}, "
              f"{daemon['queued']} queued, {daemon['running_jobs']} running, auto → {daemon['default_backend']})")
        print(f"daemon security:  {daemon['security']}")
        for probe in daemon["paths"]:
            seen = "seen" if probe["usable"] else f"NOT seen ({probe['reason']})"
            print(f"daemon path:      {probe['client']} -> {probe['daemon']}: {seen}")
        print(f"transfer mode:    {daemon['transfer_mode']}")
        trackers = daemon["matte_trackers"]
        listed = ", ".join(
            name + ("" if state["available"] else f" (unavailable: {state['reason']})")
            for name, state in trackers.items()
        )
        older = "none: this daemon is older than matte jobs (upgrade it for voidlink matte)"
        print(f"daemon trackers:  {listed or older}")
    else:
        print(f"daemon:           not running ({daemon['reason']})")
    print(f"VOID weights dir: {report['weights_dir']}")
    vw = report["void_weights"]
    if vw["problems"]:
        print("VOID weights missing or damaged:")
        for problem in vw["problems"]:
            print(f"  - {problem}")
    elif not vw["pass2"]:
        print("VOID weights:     complete for pass 1; void_pass2.safetensors is not there (pass 2 unavailable)")
    else:
        print("VOID weights:     complete (pass 1 and pass 2)")
    if vw["download_commands"]:
        print("  to get them, run on a machine with internet (then copy the folder here if needed):")
        for command in vw["download_commands"]:
            print(f"    {command}")
    for name, state in report["backends"].items():
        status = "available" if state["available"] else f"unavailable: {state['reason']}"
        print(f"backend {name:9} {status}")
        for line in state["licences"]:
            print(f"  licence: {line}")
    _print_matte(report["matte_models"])
    return 0


def _matte_section(folder: Path) -> dict:
    """The matte models (trackers and the affected-region proposer): whether each runs here, and the
    commands that fetch the weights that are not whole."""
    from voidlink.inference.backends.matte import weights as matte

    checks = {"sam2": matte.sam2_availability, "edgetam": matte.edgetam_availability, "sam3": matte.sam3_availability}
    section: dict = {"models": {}, "download_commands": []}
    for name, check in checks.items():
        state = check(str(folder))
        section["models"][name] = {"available": state.available, "reason": state.reason, "licences": state.licences}
    missing = matte.incomplete(folder)
    if missing:
        section["download_commands"] = matte.download_commands(folder, missing)
    return section


def _print_matte(section: dict) -> None:
    for name, state in section["models"].items():
        status = "available" if state["available"] else f"unavailable: {state['reason']}"
        print(f"matte {name:11} {status}")
        for line in state["licences"]:
            print(f"  licence: {line}")
    if section["download_commands"]:
        commands = section["download_commands"]
        gated = " (SAM 3: accept its terms on its page first)" if "hf auth login" in commands else ""
        print(f"matte weights: to get them, run on a machine with internet{gated}:")
        for command in section["download_commands"]:
            print(f"    {command}")


def _paths_section(client, info, paths: list) -> dict:
    """Whether the daemon sees this client's paths, and so whether jobs send paths or stream frames."""
    from voidlink.errors import VoidlinkError

    roots = f"roots: {', '.join(info.roots)}" if info.roots else "no roots"
    if info.confined and not info.roots:
        roots += " (streamed frames only)"
    tls = "TLS" if info.tls else "plain text"
    security = f"{tls}, {'tokens required' if info.tokens_required else 'no tokens'}, {roots}"
    try:
        probes = client.probe(paths)
    except VoidlinkError as error:
        return {"security": security, "paths": [], "transfer_mode": f"shared paths (cannot probe: {error})"}
    found = [
        {"client": path, "daemon": probe.path, "usable": probe.usable, "reason": probe.reason}
        for path, probe in zip(paths, probes)
    ]
    mode = "shared paths" if all(p["usable"] for p in found) else "frames streamed over gRPC"
    return {"security": security, "paths": found, "transfer_mode": mode}
