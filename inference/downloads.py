"""Results going back to clients: a succeeded job's streamed-back files as `DownloadResult` chunks,
and how far each job's fetch has got (what `WatchJob` reports while the result is fetched).

A job submitted with `OutputSpec.stream_back` writes under the daemon's `results/` folder. A client
fetches those files in chunks, each file's last chunk carrying the file's SHA-256; a broken
download resumes by naming the files it holds whole, which are announced and not sent again. A
result nobody fetches is kept `RESULT_DAYS` (the daemon drops it at a later start).
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Optional, Union

from voidlink.inference.events import EventBus
from voidlink.inference.job.outputs import STAGING_PREFIX
from voidlink.inference.transfer import Transfers
from voidlink.protos import pb, wire
from voidlink.protos.clips import SequencePattern
from voidlink.protos.events import job_event
from voidlink.protos.readahead import read_ahead

from voidlink.errors import Conflict, InvalidInput

RESULT_DAYS = 7  # streamed-back results stay this long on the daemon for clients to fetch
DOWNLOADS_KEPT = 10_000  # jobs whose last fetch is remembered (for a watcher that comes later)
_PUBLISH_SECONDS = 0.2  # download progress events per job at most this often (each whole file always)


class Downloads:
    """Results being fetched now, per job, and how far the last fetch of each got (for `WatchJob`)."""

    def __init__(self, bus: EventBus, transfers: Transfers, chunk_bytes: int = wire.CHUNK_BYTES) -> None:
        """`chunk_bytes`: file bytes per chunk sent, within the daemon's --max-message (`wire.chunk_bytes_within`)."""
        self.bus = bus
        self.transfers = transfers
        self.chunk_bytes = chunk_bytes
        self._lock = threading.Lock()
        self._active: dict[str, int] = {}  # job id -> downloads under way
        # The latest jobs' last fetch, oldest first: a daemon that runs for months keeps only so many.
        self._last: OrderedDict[str, pb.TransferProgress] = OrderedDict()
        self._published: dict[str, float] = {}

    def stream(self, job: pb.Job, have: Iterable[pb.FileDigest] = ()) -> Iterator[Union[pb.FileChunk, bytes]]:
        """The files `job` streamed back, as chunks (a FileChunk or its wire bytes: see `wire_or_message`);
        the files in `have` whose hash still matches are named by one chunk and not sent. The job's
        uploaded inputs are dropped once all is sent."""
        if job.state != pb.JOB_STATE_SUCCEEDED:
            raise Conflict(
                f"job {job.id} has not succeeded (state {pb.JobState.Name(job.state)}); its result can be "
                "downloaded once it has",
                reason="JOB_NOT_DONE",
                field="job_id",
            )
        folder = self.transfers.result_folder(job.spec)
        if folder is None:
            raise InvalidInput(
                f"job {job.id} wrote its frames to {job.result.output_pattern} on shared storage; there is "
                "nothing to download (only jobs submitted with a streamed-back output have)",
                reason="NOT_STREAMED",
                field="job_id",
            )
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not _staged(p, folder))
        # Each sequence by its own pattern: the frame number read as the job wrote it, and a matte job's
        # affected proposal (beside its matte unless named) told apart from the matte.
        patterns = {
            kind: SequencePattern.parse(os.path.basename(template))
            for kind, template in (
                ("output", job.spec.output.path_template),
                ("affected", job.result.affected_pattern),
                ("quadmask", job.result.quadmask_pattern),
                ("raw", job.result.raw_pattern),
            )
            if template
        }
        held = {digest.relative_path: digest.sha256 for digest in have}
        sizes = [path.stat().st_size for path in files]
        progress = pb.TransferProgress(direction="download", files_total=len(files), bytes_total=sum(sizes))
        self.begin(job, progress)
        try:
            for path, size in zip(files, sizes):
                relative = path.relative_to(folder).as_posix()
                kind, match = _kind(relative, path.name, patterns)
                frame = int(match.group(1)) if match else _trailing_number(path.name)
                header = pb.FileChunk(
                    relative_path=relative,
                    kind=kind,
                    frame=frame,
                    size=size,
                    files_total=progress.files_total,
                    bytes_total=progress.bytes_total,
                )
                if relative in held and wire.file_sha256(path) == held[relative]:
                    # The client holds this file whole from a broken download: name it, send nothing.
                    header.offset, header.sha256 = size, held[relative]
                    progress.bytes_reused += size
                    progress.bytes_done += size
                    progress.files_done += 1
                    self.report(job, progress)
                    yield header
                    continue
                # The next chunks are read and hashed while this one is sent.
                chunks = _file_chunks(
                    path, size, header, progress, lambda: self.report(job, progress), self.chunk_bytes
                )
                yield from read_ahead(chunks, name="voidlink-download-read")
                progress.files_done += 1
                self.report(job, progress, force=True)
        finally:
            self.end(job, progress)
        self.transfers.discard_inputs(job.spec)

    def active(self, job_id: str) -> bool:
        with self._lock:
            return self._active.get(job_id, 0) > 0

    def last(self, job_id: str) -> Optional[pb.TransferProgress]:
        with self._lock:
            return self._last.get(job_id)

    def begin(self, job: pb.Job, progress: pb.TransferProgress) -> None:
        with self._lock:
            self._active[job.id] = self._active.get(job.id, 0) + 1
        self.report(job, progress, force=True)

    def end(self, job: pb.Job, progress: pb.TransferProgress) -> None:
        complete = progress.files_done == progress.files_total
        self.report(job, progress, force=True, message="" if complete else "the download stopped before its end")
        with self._lock:
            left = self._active.get(job.id, 0) - 1
            if left > 0:
                self._active[job.id] = left
            else:
                self._active.pop(job.id, None)

    def report(self, job: pb.Job, progress: pb.TransferProgress, force: bool = False, message: str = "") -> None:
        now = time.monotonic()
        with self._lock:
            snapshot = pb.TransferProgress()
            snapshot.CopyFrom(progress)
            self._last[job.id] = snapshot
            self._last.move_to_end(job.id)
            while len(self._last) > DOWNLOADS_KEPT:
                gone, _ = self._last.popitem(last=False)
                self._published.pop(gone, None)
            if not force and now - self._published.get(job.id, 0.0) < _PUBLISH_SECONDS:
                return
            self._published[job.id] = now
        self.bus.publish(job_event(job, stage="download", message=message, transfer=progress))


def _file_chunks(
    path: Path,
    size: int,
    header: pb.FileChunk,
    progress: pb.TransferProgress,
    report: Callable[[], None],
    chunk_bytes: int,
) -> Iterator[bytes]:
    """One file's FileChunks as wire bytes (`wire.file_chunk_bytes`): hashed as they are read, so the
    last one carries the file's SHA-256 without a second pass, and the data copied once on its way out."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        offset = 0
        while True:
            data = handle.read(chunk_bytes)
            digest.update(data)
            last = offset + len(data) >= size
            chunk = pb.FileChunk()
            chunk.CopyFrom(header)
            chunk.offset = offset
            if last:
                chunk.sha256 = digest.hexdigest()
            progress.bytes_done += len(data)
            yield wire.file_chunk_bytes(chunk.SerializeToString(), data)
            report()
            offset += len(data)
            if last:
                return


def _staged(path: Path, folder: Path) -> bool:
    return any(part.startswith(STAGING_PREFIX) for part in path.relative_to(folder).parts)


def _kind(relative: str, name: str, patterns: dict) -> tuple[str, Optional[re.Match]]:
    """What a result file is, and the match of its sequence's pattern (its frame number): in a folder,
    that folder's kind ("quadmask", "raw", "affected"); at the top, "output" or "affected" where it is a
    frame of that sequence, else "other"."""
    if "/" in relative:
        kind = relative.split("/", 1)[0]
        pattern = patterns.get(kind)
        return kind, pattern.regex().match(name) if pattern is not None else None
    for kind in ("output", "affected"):
        pattern = patterns.get(kind)
        match = pattern.regex().match(name) if pattern is not None else None
        if match:
            return kind, match
    return "other", None


def _trailing_number(name: str) -> int:
    digits = re.findall(r"(\d+)", name)
    return int(digits[-1]) if digits else 0


def wire_or_message(chunk: Union[pb.FileChunk, bytes]) -> bytes:
    """DownloadResult's response serialiser: data chunks come as wire bytes already, the rest as messages."""
    return chunk if isinstance(chunk, bytes) else chunk.SerializeToString()
