"""The contract: committed stubs match the .proto; packages map onto the folders; hosts' imports stay light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]


def test_committed_stubs_match_the_proto():
    from voidlink.protos import generate

    assert generate.main(["--check"]) == 0


def test_every_package_folder_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    roots = {folder: name for name, folder in config["package-dir"].items()}
    found = set()
    for folder, name in roots.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([name, *rel.parts]) if rel.parts else name)
    assert found == listed


def test_bridge_and_protos_import_without_torch_qt_or_media_libraries():
    code = (
        "import sys, voidlink.bridge, voidlink.protos, voidlink.errors\n"
        "heavy = {'torch', 'PySide6', 'PySide2', 'OpenImageIO', 'PyOpenColorIO', 'cv2', 'numpy'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_bridge_source_stays_python39_compatible():
    # Hosts embed Python 3.9 (Nuke 14): no match statements, no PEP 604 unions evaluated at runtime.
    import ast

    sources = [*(ROOT / "bridge").rglob("*.py"), *(ROOT / "hosts").rglob("*.py"), *(ROOT / "protos").glob("*.py")]
    for path in [*sources, ROOT / "voidlink" / "errors.py", ROOT / "voidlink" / "config.py"]:
        tree = ast.parse(path.read_text(), feature_version=(3, 9))
        text = path.read_text()
        assert "from __future__ import annotations" in text or not any(
            isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr) for node in ast.walk(tree)
        ), path


def test_frame_chunks_fit_the_daemons_largest_message():
    from voidlink.protos.wire import CHUNK_BYTES, CHUNK_HEADROOM, MIN_CHUNK_BYTES, chunk_bytes_within

    assert chunk_bytes_within(0) == CHUNK_BYTES  # a limit not known: the default
    assert chunk_bytes_within(16 * 1024 * 1024) == CHUNK_BYTES  # the default limit leaves the default
    assert chunk_bytes_within(64 * 1024) == 64 * 1024 - CHUNK_HEADROOM  # room left for the other fields
    assert chunk_bytes_within(64 * 1024, wanted=16 * 1024) == 16 * 1024
    assert chunk_bytes_within(1024) == MIN_CHUNK_BYTES  # never nothing: the daemon then names its limit
