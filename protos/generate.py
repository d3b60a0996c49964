"""Regenerate the Python stubs beside the .proto files.

    python -m voidlink.protos.generate          # rewrite the committed stubs
    python -m voidlink.protos.generate --check  # exit 1 if they differ from the .proto

Needs grpcio-tools (the `dev` extra pins the version the committed stubs were made with).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTOS = sorted((HERE / "voidlink" / "v1").glob("*.proto"))
# protoc writes imports for the proto package path (voidlink.v1); ours lives under voidlink.protos.
_IMPORT_FROM = "from voidlink.v1 import"
_IMPORT_TO = "from voidlink.protos.voidlink.v1 import"


def generate(out_dir: Path) -> list[Path]:
    import grpc_tools
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).resolve().parent / "_proto"
    args = [
        "protoc",
        f"-I{HERE}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *[str(p.relative_to(HERE)) for p in PROTOS],
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed on " + ", ".join(str(p) for p in PROTOS))
    written = sorted(p for p in out_dir.rglob("*") if p.suffix in (".py", ".pyi"))
    for path in written:
        text = path.read_text()
        if _IMPORT_FROM in text:
            path.write_text(text.replace(_IMPORT_FROM, _IMPORT_TO))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    ns = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        stale = []
        for fresh in generate(out):
            committed = HERE / fresh.relative_to(out)
            if ns.check:
                if not committed.exists() or committed.read_bytes() != fresh.read_bytes():
                    stale.append(committed)
            else:
                committed.write_bytes(fresh.read_bytes())
        if stale:
            print("stubs out of date (run python -m voidlink.protos.generate):", *stale, sep="\n  ")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
