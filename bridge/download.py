"""Fetching a streamed-back job's files: each checked by hash, all renamed into place at once.

Each file lands under a temporary name first, and every one is renamed into place only when all
arrived whole, all or none (a rename that fails puts every file back), so a broken download leaves
any earlier result as it was; a retry asks only for what did not arrive whole.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Collection
from typing import Optional

import grpc
from voidlink.bridge.connection import BROKEN_CONNECTION, BUSY_POLL_SECONDS, BUSY_WAITS, Connection, streams_busy
from voidlink.bridge.ownership import check_replaceable
from voidlink.bridge.pathmap import PathMap, is_windows_path
from voidlink.bridge.result import RemoveResult, result_or_raise
from voidlink.bridge.transfer import ProgressCallback, TransferStats, local_pattern, report
from voidlink.protos import pb
from voidlink.protos.clips import SequencePattern
from voidlink.protos.readahead import read_ahead
from voidlink.protos.wire import split_file_chunk

from voidlink import errors

_DOWNLOAD_RESULT = "/voidlink.v1.VoidLink/DownloadResult"


def download_result(
    link: Connection,
    stats: TransferStats,
    job: pb.Job,
    output_template: str,
    result: Optional[RemoveResult] = None,
    on_progress: Optional[ProgressCallback] = None,
    sides: Optional[dict] = None,
    sources: Collection[str] = (),
) -> RemoveResult:
    """Fetch a streamed-back job's files and write them at `output_template`, and the side sequences
    (quadmask, raw, a matte job's affected proposal) at their `sides` templates by kind, else beside it.
    Nothing is put over `sources` (the real paths of the files the job read here) nor, unless the job
    said overwrite, over files voidlink did not write: the download is refused before any is replaced."""
    result = result or result_or_raise(job)
    folder = os.path.dirname(output_template)
    local = {"output": _local_pattern(output_template, "output")}
    local.update({kind: _local_pattern(template, kind) for kind, template in (sides or {}).items()})
    whole: dict = {}  # relative path -> (temporary, final, sha256): arrived whole, kept across a break
    frames: dict = {}  # relative path -> (kind, frame): how a refusal names the file
    made: list = []  # folders this download created, deepest last: removed again if it fails
    placed = False
    progress = pb.TransferProgress(direction="download")
    try:
        attempt = busy = 0
        while True:
            try:
                _receive(link, stats, job, folder, local, whole, frames, made, progress, on_progress)
                break
            except grpc.RpcError as exc:
                if streams_busy(exc) and busy < BUSY_WAITS:
                    busy += 1  # the daemon's streams are all taken: try again in a moment
                    time.sleep(BUSY_POLL_SECONDS)
                    continue
                if exc.code() not in BROKEN_CONNECTION or attempt == 3:
                    raise link.error(exc) from None
                stats.resumes += 1
                attempt += 1
                time.sleep(0.5 * attempt)  # the connection broke: ask again for what did not arrive whole
        if len(whole) < progress.files_total:
            raise errors.VoidlinkError(
                f"the daemon's stream of job {job.id}'s result ended after {len(whole)} of its "
                f"{progress.files_total} files; nothing was replaced here, download again",
                reason="INCOMPLETE",
            )
        finals = [(f"{frames[name][0]} here", frames[name][1], final) for name, (_, final, _) in whole.items()]
        check_replaceable(finals, sources, job.spec.output.overwrite)
        _place_all([(temporary, final) for temporary, final, _ in whole.values()], job.id)
        whole, placed = {}, True
    finally:
        for temporary, _, _ in whole.values():
            try:
                os.remove(temporary)
            except OSError:
                pass
        for made_folder in reversed(made if not placed else []):
            try:
                os.rmdir(made_folder)  # only while empty: nothing of anyone else's is touched
            except OSError:
                pass
    daemon_folder = os.path.dirname(job.spec.output.path_template)
    back = PathMap([(folder, daemon_folder)], client_os="windows" if is_windows_path(folder) else "linux")
    # The daemon's result names its own folder: point it at where the files now are.
    result.output_pattern = local["output"].hashes()
    for kind in ("quadmask", "affected"):  # the affected proposal: a matte job's
        daemon_pattern = getattr(job.result, f"{kind}_pattern")
        if getattr(result, f"{kind}_pattern"):
            where = local[kind].hashes() if kind in local else back.to_client(daemon_pattern)
            setattr(result, f"{kind}_pattern", where)
    result.otio_json = back._otio(job.result.otio_json, False)
    return result


def _receive(
    link: Connection,
    stats: TransferStats,
    job: pb.Job,
    folder: str,
    local: dict,
    whole: dict,
    frames: dict,
    made: list,
    progress: pb.TransferProgress,
    on_progress: Optional[ProgressCallback],
) -> None:
    """One DownloadResult stream into temporary files; `whole` gains each file that arrived whole and
    names, on a retry, the files not to send again."""
    link.ready()
    have = [pb.FileDigest(relative_path=name, sha256=sha) for name, (_, _, sha) in whole.items()]
    progress.bytes_done = sum(os.path.getsize(temporary) for temporary, _, _ in whole.values())
    request = pb.DownloadResultRequest(job_id=job.id, have=have)
    download = link.channel.unary_stream(  # the chunks come as wire bytes, their data read in place
        _DOWNLOAD_RESULT, request_serializer=pb.DownloadResultRequest.SerializeToString, response_deserializer=None
    )
    stream = download(request, metadata=link.metadata)
    handle = None
    temporary = ""
    # The next chunks are received while this one is written and hashed.
    chunks = read_ahead(stream, name="voidlink-download-receive")
    try:
        for raw in chunks:
            try:
                fields, data = split_file_chunk(raw)
                chunk = pb.FileChunk.FromString(fields)
            except Exception as error:  # noqa: BLE001 - protobuf's DecodeError or ours: the daemon sent garbage
                raise errors.VoidlinkError(
                    f"the daemon sent a result chunk of job {job.id} that is not a FileChunk ({error})",
                    reason="BAD_CHUNK",
                ) from None
            if chunk.offset == 0 or (chunk.offset == chunk.size and not data):
                if chunk.kind in local:
                    final = local[chunk.kind].path(chunk.frame)
                else:
                    final = os.path.join(folder, *safe_parts(chunk.relative_path))
                temporary = os.path.join(os.path.dirname(final), f".{os.path.basename(final)}.voidlink-{job.id}.part")
                progress.files_total = chunk.files_total or progress.files_total
                progress.bytes_total = chunk.bytes_total or progress.bytes_total
                if chunk.offset == chunk.size and not data:
                    # The daemon names a file this client already holds whole: nothing to write.
                    if chunk.relative_path not in whole or whole[chunk.relative_path][2] != chunk.sha256:
                        raise errors.VoidlinkError(
                            f"the daemon skipped {chunk.relative_path} of job {job.id}, which did not arrive "
                            "whole here; download again",
                            reason="HASH_MISMATCH",
                            file=final,
                        )
                    continue
                _make_folders(os.path.dirname(final) or ".", made)
                whole.pop(chunk.relative_path, None)
                handle = open(temporary, "wb")
                digest = hashlib.sha256()
            handle.write(data)
            digest.update(data)
            stats.bytes_received += len(data)
            progress.bytes_done += len(data)
            if chunk.offset + len(data) >= chunk.size:
                handle.close()
                handle = None
                if chunk.sha256 != digest.hexdigest():
                    try:
                        os.remove(temporary)  # a damaged copy is no part of any result
                    except OSError:
                        pass
                    raise errors.VoidlinkError(
                        f"{chunk.relative_path} of job {job.id} arrived damaged (hash mismatch); download again",
                        reason="HASH_MISMATCH",
                        file=final,
                    )
                whole[chunk.relative_path] = (temporary, final, chunk.sha256)
                frames[chunk.relative_path] = (chunk.kind or "output", chunk.frame)
                progress.files_done = len(whole)
                report(on_progress, progress, job.id, job.state)
    finally:
        chunks.close()  # its thread stops at its next chunk
        stream.cancel()
        if handle is not None:  # a file cut short: it is fetched again whole
            handle.close()
            try:
                os.remove(temporary)
            except OSError:
                pass


def _place_all(files: list[tuple[str, str]], job_id: str) -> None:
    """Rename each (temporary, final) into place, all or none: each file there is first moved aside, and
    if any rename fails (a frame held open by a host on Windows, a Ctrl-C) every file is put back as it
    was, so an earlier result is never left half replaced."""
    placed: list[tuple[str, Optional[str]]] = []  # (final, where the file there was moved aside)
    try:
        for temporary, final in files:
            aside = None
            if os.path.lexists(final):
                aside = os.path.join(os.path.dirname(final), f".{os.path.basename(final)}.voidlink-{job_id}.old")
            placed.append((final, aside))  # noted first: a Ctrl-C between the two renames is put back too
            if aside is not None:
                os.replace(final, aside)
            os.replace(temporary, final)
    except BaseException:
        for final, aside in reversed(placed):
            try:
                if aside is not None:
                    if os.path.lexists(aside):  # else it was never moved: the earlier file is still there
                        os.replace(aside, final)
                elif os.path.lexists(final):
                    os.remove(final)  # nothing was there before this download
            except OSError:
                pass
        raise
    for _, aside in placed:
        if aside is not None:
            try:
                os.remove(aside)
            except OSError:
                pass


def _make_folders(folder: str, made: list) -> None:
    """`os.makedirs`, noting in `made` each folder it created (outermost first)."""
    missing = []
    while folder and not os.path.isdir(folder):
        missing.append(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    for path in reversed(missing):
        os.makedirs(path, exist_ok=True)
        made.append(path)


def _local_pattern(template: str, kind: str) -> SequencePattern:
    pattern = local_pattern(template)
    if pattern is None:
        raise errors.InvalidInput(f"{kind} '{template}' has no frame number", reason="BAD_PATTERN", field=kind)
    return pattern


def safe_parts(relative: str) -> list:
    """The parts of a path the daemon named under the output folder; nothing may climb out of it."""
    parts = relative.split("/")
    if not relative or any(part in ("", ".", "..") or "\\" in part or ":" in part for part in parts):
        raise errors.InvalidInput(
            f"the daemon sent a result file named '{relative}', which is not a plain path under the output folder",
            reason="BAD_RESULT_PATH",
            file=relative,
        )
    return parts
