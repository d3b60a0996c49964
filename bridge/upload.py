"""Uploading a job's frames into the daemon's frame cache: named by content, resumed after a break.

Each frame is named by its SHA-256 (`hash_frames`), so nothing the daemon already holds is sent
again, and a broken stream resumes where the daemon's copy ends (`upload_frames`).
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
from voidlink.bridge.connection import BROKEN_CONNECTION, Connection
from voidlink.bridge.transfer import ProgressCallback, TransferPlan, TransferStats, report
from voidlink.protos import pb
from voidlink.protos.clips import SequencePattern, clip_media
from voidlink.protos.wire import CHUNK_BYTES, frame_chunk_bytes, hash_files

from voidlink import errors

_UPLOAD_FRAMES = "/voidlink.v1.VoidLink/UploadFrames"


def local_frames(otio_json: str, field: str, frames: Optional[tuple] = None) -> list:
    """(frame, file) for each frame of a clip on this machine, in `frames` or the clip's own range."""
    try:
        media = clip_media(otio_json, field)
    except ValueError as error:
        raise errors.InvalidInput(str(error), reason="BAD_CLIP", field=field) from None
    pattern = SequencePattern.parse(os.path.basename(media.path))
    if pattern is None:
        raise errors.InvalidInput(
            f"{field}: only image sequences can be uploaded to the daemon ({media.path} is not one); render it "
            "to an EXR sequence or put it where the daemon can read it",
            reason="NOT_A_SEQUENCE",
            field=field,
            file=media.path,
        )
    folder = os.path.dirname(media.path)
    first, last = frames if frames else (media.first, media.last)
    on_disk = {}
    if os.path.isdir(folder):
        regex = pattern.regex()
        for name in os.listdir(folder):
            match = regex.match(name)
            if match:
                on_disk[int(match.group(1))] = os.path.join(folder, name)
    if first is None or last is None:
        if not on_disk:
            raise errors.NotFound(
                f"{field}: no frame of {media.path} on disk", reason="MISSING_FRAMES", file=media.path
            )
        first, last = min(on_disk), max(on_disk)
    missing = [f for f in range(first, last + 1) if f not in on_disk]
    if missing:
        shown = ", ".join(str(f) for f in missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise errors.NotFound(
            f"{field}: {len(missing)} frame(s) of {media.path} missing: {shown}",
            reason="MISSING_FRAMES",
            field=field,
            file=media.path,
            frames=missing,
        )
    return [(f, on_disk[f]) for f in range(first, last + 1)]


def hash_frames(spec: pb.JobSpec, plan: TransferPlan) -> tuple[pb.JobSpec, list]:
    """A copy of `spec` whose `plan.upload` clips name their frames by content, and the (path, FrameRef)
    pairs to upload."""
    out = pb.JobSpec()
    out.CopyFrom(spec)
    first_last = (spec.frames.first, spec.frames.last) if spec.HasField("frames") else None
    clips = {name: local_frames(getattr(out, name).otio_json, f"spec.{name}", first_last) for name in plan.upload}
    hashes = iter(hash_files([path for frames in clips.values() for _, path in frames]))
    files: list = []
    for name, frames in clips.items():
        clip = getattr(out, name)
        del clip.uploaded_frames[:]
        for frame, path in frames:
            ref = clip.uploaded_frames.add(sha256=next(hashes), size=os.path.getsize(path), frame=frame)
            files.append((path, ref))
    if plan.stream_back:
        out.output.stream_back = True
    return out, files


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
    for attempt in range(4):
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
            if exc.code() not in BROKEN_CONNECTION or attempt == 3:
                raise link.error(exc) from None
            stats.resumes += 1
            time.sleep(0.5 * (attempt + 1))  # the connection broke: ask what arrived, send the rest


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
            with open(path, "rb") as handle:
                handle.seek(offset)
                while offset < ref.size:
                    data = handle.read(chunk_bytes)
                    if not data:
                        raise errors.Conflict(
                            f"{path} shrank while it was uploaded ({offset} of {ref.size} bytes)",
                            reason="SOURCE_CHANGED",
                            file=path,
                        )
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
            if not _offer(out, item, stop):
                return
    except BaseException as error:  # handed to the sender, which raises it where the caller sees it
        _offer(out, error, stop)
        return
    _offer(out, _END, stop)


def _offer(out: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Queue `item` unless the sender has stopped (then nobody would take it, and a put would never end)."""
    while not stop.is_set():
        try:
            out.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def upload_paths(
    link: Connection,
    stats: TransferStats,
    paths: Sequence[str],
    on_progress: Optional[ProgressCallback] = None,
    job: Optional[pb.Job] = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> list[pb.FrameRef]:
    """Put these files into the daemon's frame cache and return their FrameRefs (in order): the next
    frame is read and hashed while this one is sent, so hashing costs no time of its own where a core
    is free for it. Frames the daemon holds are not sent (asked in batches as they are hashed); a
    connection that breaks falls back to `upload_frames`, which resumes where the daemon's copies end."""
    job_id, state = (job.id, job.state) if job is not None else ("", 0)
    refs: list[pb.FrameRef] = []
    progress = pb.TransferProgress(
        direction="upload", files_total=len(paths), bytes_total=sum(os.path.getsize(p) for p in paths)
    )
    try:
        _pipeline(link, stats, paths, refs, progress, lambda p: report(on_progress, p, job_id, state), chunk_bytes)
        return refs
    except grpc.RpcError as exc:
        if exc.code() not in BROKEN_CONNECTION:
            raise link.error(exc) from None
    stats.resumes += 1
    rest = [str(p) for p in paths[len(refs) :]]
    hashes = hash_files(rest)
    refs += [pb.FrameRef(sha256=sha, size=os.path.getsize(p)) for p, sha in zip(rest, hashes)]
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
) -> None:
    """One UploadFrames stream fed as frames come out of `_read_and_hash`; `refs` gains each hashed frame."""
    link.ready()
    hashed: queue.Queue = queue.Queue(maxsize=_READ_AHEAD)
    stop = threading.Event()
    reader = threading.Thread(
        target=_read_and_hash,
        args=([str(p) for p in paths], hashed, stop, chunk_bytes),
        name="voidlink-upload-hash",
        daemon=True,
    )
    failure: list[BaseException] = []
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
            for _, ref, data in frames:
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
                start = 0
                for whole in data:
                    start += len(whole)
                    if start <= offset:
                        continue
                    piece = memoryview(whole)[len(whole) - (start - offset) :]
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
