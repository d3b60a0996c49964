"""The host fakes and adapters against the hosts' published APIs (the typed stubs on the package index).

`types-nuke` is generated from Nuke 13.2's `nuke` module and `fusionscript-stubs` from Resolve's
scripting API. Two promises are held here:

- **fakes**: every public name a fake offers exists in the published API, and every call the fake
  accepts (positional count, keyword names) the real call accepts too, so a test that passes on the
  fake cannot lean on a call real Nuke or Resolve would refuse;
- **adapters**: every `nuke.<name>(...)` an adapter calls, and every Resolve method (`X.GetName()`
  style) it calls, exists in the published API with a signature that takes that call.
"""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAKES = Path(__file__).resolve().parents[1] / "support" / "fakes"
NUKE_ADAPTERS = sorted((ROOT / "hosts" / "nuke").rglob("*.py"))
RESOLVE_ADAPTERS = sorted((ROOT / "hosts" / "resolve").rglob("*.py"))


@dataclass
class Signature:
    positional: list[str]  # names, in order (self dropped)
    required: int
    varargs: bool
    keywords: set[str]  # names that may be passed by keyword
    varkw: bool

    def accepts(self, count: int, names: set[str]) -> bool:
        if count < self.required - len(names & set(self.positional[count:])):
            return False
        if count > len(self.positional) and not self.varargs:
            return False
        return self.varkw or names <= self.keywords

    def within(self, published: list[Signature]) -> bool:
        """Every call this signature takes, one of the published (overloaded) signatures takes too."""
        if self.varargs and not any(p.varargs for p in published):
            return False
        for count in range(self.required, len(self.positional) + 1):
            if not any(p.accepts(count, set()) for p in published):
                return False
        return all(any(p.varkw or name in p.keywords for p in published) for name in self.keywords)


# Where a stub says less than the host's own reference, the reference wins; each entry says why.
# (class or "", name) -> the number of leading arguments that are required.
ERRATA = {
    # Nuke's Python reference: dependencies(what=INPUTS | HIDDEN_INPUTS | EXPRESSIONS); the stub drops the default.
    ("Node", "dependencies"): 0,
}
# Resolve's README: "resolve = app.GetResolve()" in a script Resolve runs, bmd.scriptapp("Resolve") or
# DaVinciResolveScript.scriptapp("Resolve") from outside: entry points the Fusion host or the module gives,
# which fusionscript-stubs (Resolve's classes) do not list.
RESOLVE_ENTRY_POINTS = {"GetResolve", "scriptapp"}


def _optional_in_fusionscript(node: ast.FunctionDef, arg: ast.arg) -> bool:
    """fusionscript-stubs give no defaults: an argument is optional when typed Optional[...] or when the
    docstring (Resolve's README text) calls it optional; `subframe_precision` came in Resolve 19.1 and
    the calls without it are the older API."""
    annotation = arg.annotation
    if isinstance(annotation, ast.Subscript) and isinstance(annotation.value, ast.Name):
        if annotation.value.id == "Optional":
            return True
    doc = ast.get_docstring(node) or ""
    return arg.arg == "subframe_precision" or f"Optional argument {arg.arg}" in doc or f"optional {arg.arg}" in doc


def _signature(node: ast.FunctionDef, method: bool, owner: str = "", fusionscript: bool = False) -> Signature:
    args = node.args
    every = args.posonlyargs + args.args
    if method and every and every[0].arg in ("self", "cls"):
        every = every[1:]
    positional = [a.arg for a in every]
    required = len(positional) - len(args.defaults)
    if fusionscript:
        while required > 0 and _optional_in_fusionscript(node, every[required - 1]):
            required -= 1
    required = ERRATA.get((owner, node.name), required)
    keywords = {a.arg for a in every} | {a.arg for a in args.kwonlyargs}
    return Signature(positional, max(required, 0), args.vararg is not None, keywords, args.kwarg is not None)


@dataclass
class Api:
    functions: dict[str, list[Signature]] = field(default_factory=dict)
    classes: dict[str, dict[str, list[Signature]]] = field(default_factory=dict)
    bases: dict[str, list[str]] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)  # every module-level name (constants too)

    def methods(self, cls: str) -> dict[str, list[Signature]]:
        out: dict[str, list[Signature]] = {}
        for base in reversed(self.mro(cls)):
            for name, sigs in self.classes.get(base, {}).items():
                out[name] = sigs
        return out

    def mro(self, cls: str) -> list[str]:
        order, todo = [], [cls]
        while todo:
            name = todo.pop(0)
            if name in self.classes and name not in order:
                order.append(name)
                todo.extend(self.bases.get(name, []))
        return order


def _read_api(distribution: str) -> Api:
    dist = importlib.metadata.distribution(distribution)
    fusionscript = distribution == "fusionscript-stubs"
    api = Api()
    for file in dist.files or []:
        if not str(file).endswith(".pyi"):
            continue
        tree = ast.parse(Path(dist.locate_file(file)).read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                api.functions.setdefault(node.name, []).append(_signature(node, False, "", fusionscript))
                api.names.add(node.name)
            elif isinstance(node, ast.ClassDef):
                api.names.add(node.name)
                api.bases[node.name] = [b.id for b in node.bases if isinstance(b, ast.Name)]
                members = api.classes.setdefault(node.name, {})
                for item in node.body:
                    if isinstance(item, ast.FunctionDef):
                        members.setdefault(item.name, []).append(_signature(item, True, node.name, fusionscript))
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                api.names.update(t.id for t in targets if isinstance(t, ast.Name))
    return api


@pytest.fixture(scope="module")
def nuke_api() -> Api:
    return _read_api("types-nuke")


@pytest.fixture(scope="module")
def resolve_api() -> Api:
    return _read_api("fusionscript-stubs")


def _public(name: str) -> bool:
    return not name.startswith("_") and not name.startswith("fake_")


def _fake_members(path: Path) -> tuple[dict[str, Signature], dict[str, tuple[list[str], dict[str, Signature]]]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    functions, classes = {}, {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and _public(node.name):
            functions[node.name] = _signature(node, method=False)
        elif isinstance(node, ast.ClassDef) and _public(node.name):
            methods = {
                item.name: _signature(item, method=True)
                for item in node.body
                if isinstance(item, ast.FunctionDef) and (_public(item.name) or item.name == "__init__")
            }
            classes[node.name] = ([b.id for b in node.bases if isinstance(b, ast.Name)], methods)
    return functions, classes


def _stub_class_for(name: str, fake_classes: dict, api: Api) -> str:
    """A fake's Nuke node classes (Read, Write, Dot ...) are `Node`s in the API; walk the fake's bases."""
    while name not in api.classes:
        bases = fake_classes.get(name, ([], {}))[0]
        if not bases:
            return ""
        name = bases[0]
    return name


def _check_fake(path: Path, api: Api) -> list[str]:
    functions, classes = _fake_members(path)
    problems = []
    for name, sig in functions.items():
        if name in RESOLVE_ENTRY_POINTS and path.name == "resolve.py":
            continue
        stubs = api.functions.get(name)
        if stubs is None:
            problems.append(f"{path.name}: {name}() is not in the published API")
        elif not sig.within(stubs):
            problems.append(f"{path.name}: {name}({', '.join(sig.positional)}) accepts calls the published one refuses")
    for name, (_, methods) in classes.items():
        stub_class = _stub_class_for(name, classes, api)
        if not stub_class:
            problems.append(f"{path.name}: class {name} has no counterpart in the published API")
            continue
        published = api.methods(stub_class)
        for method, sig in methods.items():
            if method == "__init__" and (stub_class != name or "__init__" not in published):
                # A node class is built by name (nuke.nodes.Read); objects only the host makes (a Resolve
                # Timeline, a Nuke Menu) have no public constructor: the fake's is the test's own.
                continue
            stubs = published.get(method)
            if stubs is None:
                problems.append(f"{path.name}: {name}.{method}() is not a method of {stub_class} in the published API")
            elif not sig.within(stubs):
                args = ", ".join(sig.positional)
                problems.append(f"{path.name}: {name}.{method}({args}) accepts calls the published one refuses")
    return problems


def test_the_nuke_fake_offers_only_what_nuke_publishes(nuke_api):
    assert "createNode" in nuke_api.functions and "Node" in nuke_api.classes  # the stubs were read
    assert _check_fake(FAKES / "nuke.py", nuke_api) == []


def test_the_resolve_fake_offers_only_what_resolve_publishes(resolve_api):
    assert "GetItemListInTrack" in resolve_api.methods("Timeline")
    assert _check_fake(FAKES / "resolve.py", resolve_api) == []


def _calls(paths: list[Path]):
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                names = {k.arg for k in node.keywords if k.arg}
                starred = any(isinstance(a, ast.Starred) for a in node.args)
                starred = starred or any(k.arg is None for k in node.keywords)
                yield path, node.lineno, node.func, len(node.args), names, starred


def test_every_nuke_call_of_the_adapters_is_in_the_published_api(nuke_api):
    seen, problems = set(), []
    for path, line, func, count, names, starred in _calls(NUKE_ADAPTERS):
        if not (isinstance(func.value, ast.Name) and func.value.id == "nuke"):
            continue
        name = func.attr
        seen.add(name)
        where = f"{path.relative_to(ROOT)}:{line}: nuke.{name}"
        if name in nuke_api.classes:
            sigs = nuke_api.methods(name).get("__init__", [])
        else:
            sigs = nuke_api.functions.get(name, [])
        if not sigs and name not in nuke_api.names:
            problems.append(f"{where} is not in the published API")
        elif sigs and not starred and not any(sig.accepts(count, names) for sig in sigs):
            problems.append(f"{where} with {count} positional and {sorted(names)} keyword arguments fits no signature")
    assert {"toNode", "executeInMainThread", "execute"} <= seen  # the adapters were read
    assert problems == []


def test_every_resolve_method_the_adapters_call_is_in_the_published_api(resolve_api):
    methods: dict[str, list[Signature]] = {}
    for cls in resolve_api.classes:
        for name, sigs in resolve_api.methods(cls).items():
            methods.setdefault(name, []).extend(sigs)
    seen, problems = set(), []
    for path, line, func, count, names, starred in _calls(RESOLVE_ADAPTERS):
        name = func.attr
        if not name[:1].isupper() or (isinstance(func.value, ast.Name) and func.value.id in ("os", "re", "Path")):
            continue
        seen.add(name)
        where = f"{path.relative_to(ROOT)}:{line}: .{name}()"
        if name in RESOLVE_ENTRY_POINTS:
            continue
        sigs = methods.get(name)
        if sigs is None:
            problems.append(f"{where} is not a method of any class in the published API")
        elif not starred and not any(sig.accepts(count, names) for sig in sigs):
            problems.append(f"{where} with {count} positional arguments fits no published signature")
    assert {"GetCurrentProject", "GetItemListInTrack", "AppendToTimeline", "ImportMedia"} <= seen
    assert problems == []


def test_the_check_itself_catches_a_fake_that_is_too_lenient(nuke_api, tmp_path):
    fake = tmp_path / "nuke.py"
    fake.write_text(
        inspect.cleandoc(
            """
            def createNode(node, knobs="", inpanel=True, extra=None):
                pass

            def notInNuke():
                pass

            class Node:
                def setInput(self, i, node, third):
                    pass
            """
        )
    )
    problems = _check_fake(fake, nuke_api)
    assert any("createNode" in p and "refuses" in p for p in problems)
    assert any("notInNuke" in p for p in problems)
    assert any("Node.setInput" in p for p in problems)
