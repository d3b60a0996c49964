"""Whether a file on this machine may be replaced by a result fetched from a daemon: voidlink wrote it
(the `voidlink:job` attribute in its EXR or PNG header, read with the standard library: a host's Python
has no OpenImageIO), and it is none of the job's own sources.

The daemon keeps the same rules for what it writes itself; these are the client's, for a streamed-back
result that lands here.
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Collection, Iterable
from typing import Optional

from voidlink import errors

JOB_ATTRIBUTE = b"voidlink:job"
_HEADER_BYTES = 1 << 20  # a header larger than this is no header voidlink wrote
_EXR_MAGIC = b"\x76\x2f\x31\x01"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def job_of(path: str) -> Optional[str]:
    """The voidlink job that wrote the regular file at `path`, else None (a missing path, a link, another
    program's image, a format whose header holds no such attribute, a damaged header)."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        with open(path, "rb") as handle:
            head = handle.read(_HEADER_BYTES)
    except OSError:
        return None
    try:
        if head.startswith(_EXR_MAGIC):
            return _exr_job(head)
        if head.startswith(_PNG_MAGIC):
            return _png_job(head)
    except (ValueError, IndexError, struct.error, UnicodeDecodeError):
        return None
    return None


def _exr_job(head: bytes) -> Optional[str]:
    """The attribute from an OpenEXR header: after magic and version, `name\\0 type\\0 int32 size value`
    until an empty name (the first part's header, in a multi-part file)."""
    pos = 8
    while True:
        end = head.index(b"\0", pos)
        name = head[pos:end]
        if not name:
            return None
        type_end = head.index(b"\0", end + 1)
        (size,) = struct.unpack_from("<i", head, type_end + 1)
        start = type_end + 5
        if size < 0 or start + size > len(head):
            raise ValueError("attribute runs past the header")
        if name == JOB_ATTRIBUTE:
            return head[start : start + size].decode("utf-8") or None
        pos = start + size


def _png_job(head: bytes) -> Optional[str]:
    """The attribute from a PNG's tEXt chunks before its first image data."""
    pos = 8
    while pos + 8 <= len(head):
        (length,) = struct.unpack_from(">I", head, pos)
        kind = head[pos + 4 : pos + 8]
        data = head[pos + 8 : pos + 8 + length]
        if kind == b"IDAT" or kind == b"IEND":
            return None
        if kind == b"tEXt":
            key, _, text = data.partition(b"\0")
            if key == JOB_ATTRIBUTE:
                return text.decode("latin-1") or None
        pos += 12 + length
    return None


def check_replaceable(
    finals: Iterable[tuple[str, int, str]], sources: Collection[str], overwrite: bool
) -> None:
    """Refuse, before anything is written, to put a fetched result over a source of the job (never), two
    kinds of its files on one path, or over files voidlink did not write (unless `overwrite`). `finals`:
    (label, frame, path) each; `sources`: the real paths of the files the job reads here."""
    foreign: dict[str, list[tuple[int, str]]] = {}
    written: dict[str, str] = {}
    for label, frame, path in finals:
        other = written.setdefault(os.path.normcase(os.path.realpath(path)), label)
        if other != label:  # the second renamed into place would replace the first
            raise errors.InvalidInput(
                f"{label}: {path} (frame {frame}) is named by '{other}' too; give each kind of file the job "
                "writes a name of its own",
                reason="OUTPUTS_COLLIDE",
                field=label,
                file=path,
                frame=frame,
            )
        if os.path.realpath(path) in sources:
            raise errors.PermissionDenied(
                f"{label}: {path} is a source file of this job; sources are never written",
                reason="OUTPUT_OVERWRITES_SOURCE",
                field=label,
                file=path,
                frame=frame,
            )
        if not overwrite and os.path.lexists(path) and job_of(path) is None:
            foreign.setdefault(label, []).append((frame, path))
    for label, found in foreign.items():
        frame, path = found[0]
        more = f", and {len(found) - 1} more" if len(found) > 1 else ""
        raise errors.OutputExists(
            f"{label}: {path} (frame {frame}) exists here and was not written by voidlink{more}; voidlink never "
            "writes over files it did not write. Choose another output, or pass --overwrite (overwrite=True in "
            "Python) to replace them",
            field=label,
            file=path,
            frame=frame,
            frames=[f for f, _ in found],
        )
