"""The contract's bytes for frames: a file's content address (SHA-256) and the FrameChunk codec.

Frames are most of what a streaming client sends, so neither end lets the generated protobuf code
touch their bytes: building a `pb.FrameChunk` copies them in, serialising copies them out, and
every read of its `data` field copies them again. The client writes a chunk's wire bytes directly
(`frame_chunk_bytes`) and the daemon reads them in place (`parse_frame_chunk`); both are the
`FrameChunk` message of the proto, field for field, and a generated client or server interoperates.

Needs only the standard library: every host's Python imports it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Optional, Union

CHUNK_BYTES = 1024 * 1024  # frame bytes per FrameChunk a client sends (and per FileChunk the daemon sends)
# Room for a chunk's other fields within a message: a FileChunk names its file's relative path.
CHUNK_HEADROOM = 8 * 1024
MIN_CHUNK_BYTES = 4 * 1024

PathLike = Union[str, "os.PathLike[str]"]


def file_sha256(path: PathLike) -> str:
    """The SHA-256 of a file's bytes (hex): how the contract names a frame (`FrameRef.sha256`)."""
    digest = hashlib.sha256()
    buffer = bytearray(1 << 20)  # read into one buffer: no new bytes object per block
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while True:
            read = handle.readinto(buffer)
            if not read:
                return digest.hexdigest()
            digest.update(view[:read])


def hash_files(paths: Sequence[PathLike], workers: Optional[int] = None) -> list:
    """`file_sha256` of each path, several files at once: hashing lets go of the GIL, so on a
    workstation's cores a shot's frames hash in a fraction of the time one core takes."""
    if workers is None:
        workers = min(8, os.cpu_count() or 1)
    if workers <= 1 or len(paths) <= 1:
        return [file_sha256(path) for path in paths]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="voidlink-hash") as pool:
        return list(pool.map(file_sha256, paths))


def chunk_bytes_within(max_message_bytes: int, wanted: int = CHUNK_BYTES) -> int:
    """Frame bytes per chunk for messages of at most `max_message_bytes` (a daemon's --max-message, which
    bounds what it receives and sends); 0, a limit not known, leaves `wanted`."""
    if max_message_bytes <= 0:
        return wanted
    return max(MIN_CHUNK_BYTES, min(wanted, max_message_bytes - CHUNK_HEADROOM))


# -- FrameChunk ------------------------------------------------------------------------------------


def _put_varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1  # int64: two's complement, as protobuf writes negative values
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def frame_chunk_bytes(sha256: str, size: int, offset: int, data: bytes) -> bytes:
    """A `pb.FrameChunk`'s wire bytes (fields 1-4 in order), `data` copied once."""
    sha = sha256.encode("ascii")
    fields = (b"\x0a", _put_varint(len(sha)), sha, b"\x10", _put_varint(size), b"\x18", _put_varint(offset))
    return b"".join((*fields, b"\x22", _put_varint(len(data)), data))


class FrameChunkView:
    """A FrameChunk read straight from its wire bytes, `data` a view into them; `malformed` says why
    the bytes were not a FrameChunk (the RPC refuses them by name)."""

    __slots__ = ("sha256", "size", "offset", "data", "malformed")

    def __init__(self) -> None:
        self.sha256 = ""
        self.size = 0
        self.offset = 0
        self.data: memoryview = memoryview(b"")
        self.malformed = ""


def _get_varint(raw: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = raw[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def parse_frame_chunk(raw: bytes) -> FrameChunkView:
    """FrameChunk fields 1-4 from protobuf wire bytes; unknown fields are skipped, as protobuf does."""
    chunk = FrameChunkView()
    view = memoryview(raw)
    pos, end = 0, len(raw)
    try:
        while pos < end:
            key, pos = _get_varint(raw, pos)
            number, wire = key >> 3, key & 7
            if wire == 0:
                value, pos = _get_varint(raw, pos)
                value = value - (1 << 64) if value >= 1 << 63 else value  # int64: two's complement
                if number == 2:
                    chunk.size = value
                elif number == 3:
                    chunk.offset = value
            elif wire == 2:
                length, pos = _get_varint(raw, pos)
                if pos + length > end:
                    raise ValueError(f"field {number} runs past the end of the message")
                if number == 1:
                    chunk.sha256 = str(view[pos : pos + length], "utf-8")
                elif number == 4:
                    chunk.data = view[pos : pos + length]
                pos += length
            elif wire in (1, 5):
                pos += 8 if wire == 1 else 4
            else:
                raise ValueError(f"wire type {wire} of field {number} is not one protobuf uses here")
        if pos != end:
            raise ValueError("the last field runs past the end of the message")
    except (ValueError, IndexError, UnicodeDecodeError) as error:
        chunk.malformed = str(error) or "truncated message"
    return chunk


# -- FileChunk ---------------------------------------------------------------------------------------

_FILE_CHUNK_DATA = 6  # FileChunk.data's field number


def file_chunk_bytes(header: bytes, data: bytes) -> bytes:
    """A `pb.FileChunk`'s wire bytes: `header` (the other fields, serialised; no data) and then the data
    field, `data` copied once. Protobuf takes fields in any order, so a generated client reads it."""
    return b"".join((header, b"\x32", _put_varint(len(data)), data))


def split_file_chunk(raw: bytes) -> tuple[bytes, memoryview]:
    """A FileChunk's wire bytes as (every field but `data`, as wire bytes to parse; `data`, a view into
    `raw`): the frame bytes are not copied by protobuf on the way in nor at each read of the field.
    Raises ValueError for bytes that are not a protobuf message."""
    view = memoryview(raw)
    fields = []
    data = view[0:0]
    pos, end = 0, len(raw)
    try:
        while pos < end:
            start = pos
            key, pos = _get_varint(raw, pos)
            number, wire = key >> 3, key & 7
            if wire == 0:
                _, pos = _get_varint(raw, pos)
            elif wire == 2:
                length, pos = _get_varint(raw, pos)
                if pos + length > end:
                    raise ValueError(f"field {number} runs past the end of the message")
                if number == _FILE_CHUNK_DATA:
                    data = view[pos : pos + length]
                    pos += length
                    continue
                pos += length
            elif wire in (1, 5):
                pos += 8 if wire == 1 else 4
            else:
                raise ValueError(f"wire type {wire} of field {number} is not one protobuf uses here")
            fields.append(view[start:pos])
    except IndexError:
        raise ValueError("truncated message") from None
    if pos != end:
        raise ValueError("the last field runs past the end of the message")
    return b"".join(fields), data
