"""Uploading a job's frames into the daemon's frame cache: named by content, resumed after a break.

Each frame is named by its SHA-256 (`bridge.local_files.hash_frames`, or hashed here as it is read:
`upload_paths`), so nothing the daemon already holds is sent again, and a broken stream resumes
where the daemon's copy ends (`upload_frames`).
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Callable, Optional

import grpc
from voidlink.bridge.connection import BROKEN_CONNECTION, BUSY_POLL_SECONDS, BUSY_WAITS, Connection, streams_busy
from voidlink.bridge.transfer import ProgressCallback, TransferStats, report
from voidlink.protos import pb
from voidlink.protos.readahead import offer
from voidlink.protos.wire import CHUNK_BYTES, frame_chunk_bytes, hash_files

from voidlink import errors

_UPLOAD_FRAMES = "/voidlink.v1.VoidLink/UploadFrames"


def upload_frames(
    link: Connection,
    stats: TransferStats,
    files: Sequence,
    on_progress: Optional[ProgressCallback] = None,
    job: Optional[pb.Job] = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> None:
    """Send each (path, FrameRef) the daemon lacks, resuming partial uploads where the daemon's copy ends.
    `job`: the job waiting for these frames, named in the progress events."""
    job_id, state = (job.id, job.state) if job is not None else ("", 0)
    unique = {}
    for path, ref in files:
        unique.setdefault(ref.sha256, (path, ref))
    refs = [ref for _, ref in unique.values()]
    attempt = busy = 0
    while True:
        held = link.call("HasFrames", pb.HasFramesRequest(frames=refs)).frames
        todo = [(unique[s.sha256][0], unique[s.sha256][1], s.offset) for s in held if not s.present]
        progress = pb.TransferProgress(
            direction="upload",
            files_total=len(refs),
            files_done=len(refs) - len(todo),
            bytes_total=sum(ref.size for ref in refs),
            bytes_reused=sum(unique[s.sha256][1].size for s in held if s.present),
        )
        progress.bytes_done = progress.bytes_reused + sum(offset for _, _, offset in todo)
        if attempt == 0:
            stats.bytes_reused += progress.bytes_reused
        report(on_progress, progress, job_id, state)
        if not todo:
            return
        try:
            _send(link, stats, todo, progress, lambda p: report(on_progress, p, job_id, state), chunk_bytes)
            return
        except grpc.RpcError as exc:
            if streams_busy(exc) and busy < BUSY_WAITS:
                busy += 1  # the daemon's streams are all taken: try again in a moment
                time.sleep(BUSY_POLL_SECONDS)
                continue
            if exc.code() not in BROKEN_CONNECTION or attempt == 3:
                raise link.error(exc) from None
            stats.resumes += 1
            attempt += 1
            time.sleep(0.5 * attempt)  # the connection broke: ask what arrived, send the rest


def _send(
    link: Connection,
    stats: TransferStats,
    todo: list,
    progress: pb.TransferProgress,
    on_progress: Callable[[pb.TransferProgress], None],
    chunk_bytes: int,
) -> None:
    """One UploadFrames stream of the (path, ref, offset) still to send."""
    link.ready()
    lock = threading.Lock()
    stopped = [False]

    def chunks():
        for path, ref, offset in todo:
            for data in _file_pieces(path, ref.size, offset, chunk_bytes):
                with lock:
                    # gRPC may pull one more chunk after the call ended: it is not sent, nor counted.
                    if stopped[0]:
                        return
                    stats.bytes_sent += len(data)
                yield frame_chunk_bytes(ref.sha256, ref.size, offset, data)
                offset += len(data)

    acked = {ref.sha256: offset for _, ref, offset in todo}
    upload = link.channel.stream_stream(  # the chunks go as the wire bytes made above
        _UPLOAD_FRAMES, request_serializer=None, response_deserializer=pb.FrameAck.FromString
    )
    stream = upload(chunks(), metadata=link.metadata)
    try:
        _follow_acks(stream, acked, progress, stats, on_progress)
    finally:
        with lock:
            stopped[0] = True
        stream.cancel()


def _file_pieces(path: str, size: int, offset: int, chunk_bytes: int) -> Iterator[bytes]:
    """The file's bytes from `offset` to `size`, in chunks; a file that shrank since it was hashed is named."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        while offset < size:
            data = handle.read(min(chunk_bytes, size - offset))
            if not data:
                raise errors.Conflict(
                    f"{path} shrank while it was uploaded ({offset} of {size} bytes)",
                    reason="SOURCE_CHANGED",
                    file=path,
                )
            yield data
            offset += len(data)


# -- hash, read and send in one pipeline ------------------------------------------------------------

# Frames hashed and held ahead of the ones being sent (a batch takes what is waiting, and the reader refills
# behind it): about twice this many in memory at most, which bounds what 4K float frames cost.
_READ_AHEAD = 2
_END = object()


def _read_and_hash(paths: Sequence[str], out: queue.Queue, stop: threading.Event, chunk_bytes: int) -> None:
    """Each file read once, in the chunks it is sent in, and hashed from memory: the bytes that are sent
    are the bytes hashed, and the sender never waits on the disk. Runs in its own thread (hashlib and
    reads let go of the GIL). Chunk-sized reads, not one read of the whole file: the allocator reuses
    blocks of that size, where a fresh frame-sized block costs a page fault per page."""
    try:
        for path in paths:
            digest = hashlib.sha256()
            pieces = []
            with open(path, "rb") as handle:
                for piece in iter(lambda: handle.read(chunk_bytes), b""):
                    digest.update(piece)
                    pieces.append(piece)
            item = (path, pb.FrameRef(sha256=digest.hexdigest(), size=sum(len(p) for p in pieces)), pieces)
            if not offer(out, item, stop):
                return
    except BaseException as error:  # handed to the sender, which raises it where the caller sees it
        offer(out, error, stop)
        return
    offer(out, _END, stop)


def _hash_ahead(
    paths: Sequence[str],
    out: queue.Queue,
    stop: threading.Event,
    when_hashed: Callable[[list], None],
    told: threading.Event,
    failure: list,
) -> None:
    """Each file hashed as fast as the disk and a core allow, its bytes not kept (the sender reads them
    again, from the page cache, behind it); once every file is hashed, `when_hashed` is called with their
    FrameRefs, here, while the sender is still at work, and `told` is set after it (what it raised is in
    `failure`)."""
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    hashed: list[pb.FrameRef] = []
    try:
        for path in paths:
            digest, size = hashlib.sha256(), 0
            with open(path, "rb", buffering=0) as handle:
                while read := handle.readinto(buffer):
                    digest.update(view[:read])
                    size += read
            ref = pb.FrameRef(sha256=digest.hexdigest(), size=size)
            hashed.append(ref)
            if not offer(out, (path, ref, None), stop):
                return
        when_hashed(hashed)
    except BaseException as error:  # raised where the caller sees it
        failure.append(error)
        offer(out, error, stop)
        return
    finally:
        told.set()
    offer(out, _END, stop)


def upload_paths(
    link: Connection,
    stats: TransferStats,
    paths: Sequence[str],
    on_progress: Optional[ProgressCallback] = None,
    job: Optional[pb.Job] = None,
    chunk_bytes: int = CHUNK_BYTES,
    when_hashed: Optional[Callable[[list], None]] = None,
) -> list[pb.FrameRef]:
    """Put these files into the daemon's frame cache and return their FrameRefs (in order): the next
    frame is read and hashed while this one is sent, so hashing costs no time of its own where a core
    is free for it. Frames the daemon holds are not sent (asked in batches as they are hashed); a
    connection that breaks falls back to `upload_frames`, which resumes where the daemon's copies end.

    `when_hashed`: called once with every file's FrameRef as soon as all are hashed, while the rest are
    still being sent (on the hashing thread; what it raises ends the upload and is raised here), and
    before the last frame is sent. The files are then hashed ahead of the sending instead of beside it,
    and read a second time to be sent."""
    job_id, state = (job.id, job.state) if job is not None else ("", 0)
    refs: list[pb.FrameRef] = []
    progress = pb.TransferProgress(
        direction="upload", files_total=len(paths), bytes_total=sum(os.path.getsize(p) for p in paths)
    )
    fired: list[bool] = []

    def hashed_once(every: list) -> None:
        if when_hashed is not None and not fired:
            fired.append(True)
            when_hashed(every)

    try:
        _pipeline(
            link,
            stats,
            paths,
            refs,
            progress,
            lambda p: report(on_progress, p, job_id, state),
            chunk_bytes,
            hashed_once if when_hashed is not None else None,
        )
        return refs
    except grpc.RpcError as exc:
        if exc.code() not in BROKEN_CONNECTION and not streams_busy(exc):
            raise link.error(exc) from None
    stats.resumes += 1  # broken, or refused for now: upload_frames resumes (and waits for a free stream)
    rest = [str(p) for p in paths[len(refs) :]]
    hashes = hash_files(rest)
    refs += [pb.FrameRef(sha256=sha, size=os.path.getsize(p)) for p, sha in zip(rest, hashes)]
    hashed_once(list(refs))
    upload_frames(link, stats, list(zip([str(p) for p in paths], refs)), on_progress, job, chunk_bytes)
    return refs


def _pipeline(
    link: Connection,
    stats: TransferStats,
    paths: Sequence[str],
    refs: list,
    progress: pb.TransferProgress,
    on_progress: Callable[[pb.TransferProgress], None],
    chunk_bytes: int,
    when_hashed: Optional[Callable[[list], None]] = None,
) -> None:
    """One UploadFrames stream fed as frames come out of `_read_and_hash` (or, given `when_hashed`, of
    `_hash_ahead`, the last frame held back until `when_hashed` has returned: a job submitted there
    always exists before its upload ends); `refs` gains each frame as it is taken to be sent."""
    link.ready()
    stop = threading.Event()
    failure: list[BaseException] = []
    told = threading.Event()
    if when_hashed is None:
        hashed: queue.Queue = queue.Queue(maxsize=_READ_AHEAD)
        work, args = _read_and_hash, (hashed, stop, chunk_bytes)
    else:  # frames hashed ahead hold no bytes: the queue needs no bound
        hashed = queue.Queue()
        work, args = _hash_ahead, (hashed, stop, when_hashed, told, failure)
    files = [str(p) for p in paths]
    reader = threading.Thread(target=work, args=(files, *args), name="voidlink-upload-hash", daemon=True)

    def last_may_go() -> bool:
        """Whether the last frame may be sent: once `when_hashed` has returned, and not if it raised."""
        while not told.wait(0.1):
            if stop.is_set():
                return False
        return not failure

    lock = threading.Lock()
    seen: set[str] = set()
    acked: dict[str, int] = {}

    def next_batch() -> list:
        """The next hashed frame and any others already waiting: asked about in one HasFrames."""
        items = [hashed.get()]
        while not isinstance(items[-1], BaseException) and items[-1] is not _END:
            try:
                items.append(hashed.get_nowait())
            except queue.Empty:
                break
        return items

    def chunks() -> Iterator[bytes]:
        try:
            yield from frame_chunks()
        except GeneratorExit:  # gRPC closed the stream: nothing to report
            raise
        except BaseException as error:  # raised where the caller sees it, not logged by gRPC's thread
            failure.append(error)

    def frame_chunks() -> Iterator[bytes]:
        while True:
            items = next_batch()
            frames = [item for item in items if isinstance(item, tuple)]
            with lock:
                if stop.is_set():  # the call ended: the caller has counted what was hashed
                    return
                refs.extend(ref for _, ref, _ in frames)
            fresh = {ref.sha256: ref for _, ref, _ in frames if ref.sha256 not in seen}
            held = {}
            if fresh:
                reply = link.call("HasFrames", pb.HasFramesRequest(frames=list(fresh.values())))
                held = {s.sha256: s for s in reply.frames}
            for path, ref, data in frames:
                if ref.sha256 in seen:  # the same content as an earlier frame: sent (or held) once
                    progress.files_done += 1
                    continue
                seen.add(ref.sha256)
                status = held[ref.sha256]
                if status.present:
                    stats.bytes_reused += ref.size
                    progress.bytes_reused += ref.size
                    progress.bytes_done += ref.size
                    progress.files_done += 1
                    continue
                offset = status.offset  # a partial copy from an earlier stream: the rest only
                acked[ref.sha256] = offset
                progress.bytes_done += offset
                if when_hashed is not None and len(refs) == len(files) and ref is refs[-1] and not last_may_go():
                    return
                if data is None:  # hashed ahead: read again, from where the daemon's copy ends
                    pieces = _file_pieces(path, ref.size, offset, chunk_bytes)
                else:
                    pieces = _pieces_from(data, offset)
                for piece in pieces:
                    with lock:
                        if stop.is_set():  # gRPC may pull one more chunk after the call ended: not sent, nor counted
                            return
                        stats.bytes_sent += len(piece)
                    yield frame_chunk_bytes(ref.sha256, ref.size, offset, piece)
                    offset += len(piece)
            last = items[-1]
            if isinstance(last, BaseException):
                failure.append(last)
                return
            if last is _END:
                return

    upload = link.channel.stream_stream(
        _UPLOAD_FRAMES, request_serializer=None, response_deserializer=pb.FrameAck.FromString
    )
    reader.start()
    try:
        stream = upload(chunks(), metadata=link.metadata)
        try:
            _follow_acks(stream, acked, progress, stats, on_progress)
        finally:
            with lock:
                stop.set()
            stream.cancel()
    finally:
        stop.set()
        reader.join()
    if failure:
        raise failure[0]
    on_progress(progress)


def _pieces_from(data: list, offset: int) -> Iterator[memoryview]:
    """The pieces of a frame held in memory from byte `offset` on (a partial copy's rest)."""
    start = 0
    for whole in data:
        start += len(whole)
        if start > offset:
            yield memoryview(whole)[len(whole) - (start - offset) :]


def _follow_acks(
    stream, acked: dict, progress: pb.TransferProgress, stats: TransferStats, on_progress: Callable
) -> None:
    """Count each acknowledgement into the progress (bytes the daemon holds, frames it holds whole)."""
    for ack in stream:
        progress.bytes_done += ack.offset - acked.get(ack.sha256, 0)
        acked[ack.sha256] = ack.offset
        if ack.complete:
            progress.files_done += 1
            stats.frames_sent += 1
        on_progress(progress)
