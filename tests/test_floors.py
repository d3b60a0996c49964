"""The floors of the house (DESIGN.md): who may import whom, read from every module's imports with `ast`.

Function-local imports count as much as the ones at the top: a floor broken inside a function is
broken when that function runs. The rules:

1. `voidlink` (version, errors) and `voidlink.protos` (the contract) at the bottom;
2. `voidlink.media`, the shared media floor;
3. `voidlink.inference` (the daemon) and `voidlink.bridge` (the host side), never each other;
4. `voidlink.panel`, above bridge and media;
5. `voidlink.hosts` (Nuke, Resolve), above the panel; the host side never reaches the daemon;
6. `voidlink.cli`, `voidlink.installer`, `voidlink.bench` on top.

No circles: neither between packages nor between modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]

# Each floor's packages, and what each may import besides itself.
MAY_IMPORT = {
    "root": set(),
    "protos": {"root"},
    "media": {"root", "protos"},
    "inference": {"root", "protos", "media"},
    "bridge": {"root", "protos", "media"},
    "panel": {"root", "protos", "media", "bridge"},
    "hosts": {"root", "protos", "media", "bridge", "panel"},
    "cli": {"root", "protos", "media", "inference", "bridge", "panel", "hosts", "installer", "bench"},
    "installer": {"root", "protos", "media", "bridge", "panel", "hosts"},
    "bench": {"root", "protos", "media", "inference", "bridge"},
}


def _package_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "voidlink":
        return ""
    if len(parts) == 1 or parts[1] in ("errors", "__main__", "py"):
        return "cli" if parts[1:2] == ["__main__"] else "root"
    return parts[1] if parts[1] in MAY_IMPORT else "root"


def modules() -> dict[str, Path]:
    """Every module of the package by import name, from the folders pyproject maps onto import names."""
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    found = {}
    for name, folder in mapping.items():
        base = ROOT / folder
        for path in base.rglob("*.py"):
            rel = path.relative_to(base).with_suffix("")
            if "_pb2" in path.name or any(part.startswith(".") for part in rel.parts):
                continue
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found.setdefault(".".join([name, *parts]), path)
    return found


def imports(path: Path, module: str) -> set[str]:
    """Every voidlink module `path` imports, at any depth of the file (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names if alias.name.startswith("voidlink"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if not base.startswith("voidlink"):
                continue
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return out


def test_every_module_imports_only_from_its_floor_or_below():
    table = modules()
    assert "voidlink.media.quadmask" in table and "voidlink.hosts.nuke.jobs" in table  # the tree was read
    wrong = []
    for module, path in sorted(table.items()):
        own = _package_of(module)
        for target in sorted(imports(path, module)):
            theirs = _package_of(target)
            if theirs and theirs != own and theirs not in MAY_IMPORT[own]:
                wrong.append(f"{path.relative_to(ROOT)}: {module} ({own}) imports {target} ({theirs})")
    assert wrong == []


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One circle of the graph, or []."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def test_no_circles_between_packages_or_modules():
    table = modules()
    packages: dict[str, set[str]] = {}
    files: dict[str, set[str]] = {}
    for module, path in table.items():
        targets = {t for t in imports(path, module) if t in table and t != module}
        # `from voidlink.x import y` names the package x too: an edge to a package's face (__init__) only
        # counts when the face is the module itself, not the folder the import passes through.
        targets = {t for t in targets if not (table[t].name == "__init__.py" and module.startswith(t + "."))}
        files[module] = targets
        own = _package_of(module)
        packages.setdefault(own, set()).update(_package_of(t) for t in targets if _package_of(t) != own)
    assert _cycle(packages) == []
    assert _cycle(files) == []


def test_the_check_sees_a_function_local_import_across_floors(tmp_path):
    module = tmp_path / "probe.py"
    module.write_text("def f():\n    from voidlink.inference import pipeline\n    from . import sibling\n")
    found = imports(module, "voidlink.panel.probe")
    assert "voidlink.inference.pipeline" in found and "voidlink.panel.sibling" in found
    assert _package_of("voidlink.inference.pipeline") not in MAY_IMPORT["panel"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
