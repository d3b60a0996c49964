"""A job's staging folder and its commit: where frames wait (`.voidlink-<job id>/` beside the
output) until every one is done, and the move of all of them into place.

Nothing is lost: a cancelled or failed job leaves an earlier result untouched and its staging folder
is removed; a job interrupted by a daemon restart finds its staged frames and computes only the
missing ones.

The commit rolls forward: once its marker (`commit.json`, holding the job's result) is written the
renames are finished whatever happens, by this run or, after a crash, at the daemon's next start
before anything else (a cancel included) can touch the job; so the earlier result is either wholly
kept or wholly replaced. Before the marker the commit checks again that every file it would replace
was written by voidlink (its header's `voidlink:job`) unless the job says `overwrite`.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Callable, Optional

from voidlink.inference.job.control import begin_commit
from voidlink.inference.job.outputs import (
    COMMIT_MARKER,
    LABELS,
    STAGING_PREFIX,
    Finals,
    StagedOutput,
    output_exists,
    spec_finals,
    staging_folder,
)
from voidlink.inference.job.prepare import PreparedJob
from voidlink.media import image
from voidlink.protos import pb
from voidlink.protos.clips import SequencePattern

from voidlink.errors import Conflict, InvalidInput, PermissionDenied, VoidlinkError

# One commit at a time in this process, whichever daemon or pool worker runs it: two jobs writing the
# same output never interleave their renames. A lock, not state: it guards the file system, which
# every daemon of the process shares. Across processes (pool workers committing on shared storage) the
# output folder itself is locked too (`_committing`).
_COMMIT_LOCK = threading.Lock()


# Staging folders whose move this process is making now: their markers are no stopped commit.
_MOVING: set[str] = set()


log = logging.getLogger("voidlink.daemon")

COMMIT_LOCK_WAIT = 600.0  # seconds a commit waits for another process's commit into the same folder


@contextlib.contextmanager
def _committing(folder: Path) -> Iterator[None]:
    """This process's commit lock, and an exclusive flock on the output folder itself, which every voidlink
    process committing into that folder takes (nothing is added to the folder). Where the folder cannot
    be locked (no fcntl on Windows; NFS, whose flock needs a file open for writing) this process's lock
    is all there is, and the log says so."""
    with _COMMIT_LOCK:
        try:
            import fcntl

            handle = os.open(folder, os.O_RDONLY)
        except (ImportError, OSError):  # Windows (no pool workers there), or no folder to lock
            yield
            return
        try:
            deadline = time.monotonic() + COMMIT_LOCK_WAIT
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise VoidlinkError(
                            f"another voidlink process has been moving frames into {folder} for "
                            f"{COMMIT_LOCK_WAIT:.0f} s; nothing of this job was moved: run it again once that "
                            "move is done",
                            reason="COMMIT_LOCKED",
                            file=str(folder),
                        ) from None
                    time.sleep(0.2)
                except OSError as error:
                    log.warning("commit into %s without a lock on the folder (%s)", folder, error.strerror or error)
                    break
            yield
        finally:
            os.close(handle)  # releases the flock


# -- staged files --------------------------------------------------------------------------------


def staged_path(staging: Path, kind: str, pattern: SequencePattern, frame: int) -> Path:
    """A file's place in the staging folder: its final name, under a folder per kind of output."""
    return staging / kind / os.path.basename(pattern.path(frame))


def is_output_staged(prepared: PreparedJob, staging: Path, frame: int) -> bool:
    """Whether the frame's output is in the staging folder (a frame counts as done once it is)."""
    return staged_path(staging, "output", prepared.output, frame).exists()


# Per-frame tallies a backend reports (`BackendResult.counts`), kept beside the staged frames so a
# resumed job's notes are summed over the whole shot, as an uninterrupted run's are.
COUNTS = "counts"


def write_counts(staging: Path, frame: int, counts: Mapping[str, float]) -> None:
    """Keep a frame's tallies in the staging folder (written whole: a temporary name, then renamed)."""
    folder = staging / COUNTS
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".{frame}.json.tmp"
    temporary.write_text(json.dumps({key: float(value) for key, value in counts.items()}), encoding="utf-8")
    os.replace(temporary, folder / f"{frame}.json")


def counted(staging: Path, frames: Iterable[int]) -> dict[str, float]:
    """The tallies of `frames` summed, as kept by `write_counts` (a frame without them adds nothing)."""
    totals: dict[str, float] = {}
    for frame in frames:
        try:
            counts = json.loads((staging / COUNTS / f"{frame}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for key, value in counts.items():
            totals[key] = totals.get(key, 0.0) + float(value)
    return totals


def staged_files(prepared: PreparedJob, job_id: str, frame: int) -> dict[str, Path]:
    """The files the job has staged for this frame, by kind (output, quadmask, raw)."""
    staging = prepared.staging(job_id)
    found = {kind: staged_path(staging, kind, pattern, frame) for kind, pattern in prepared.finals()}
    return {kind: path for kind, path in found.items() if path.exists()}


def stage_file(prepared: PreparedJob, job_id: str, kind: str, frame: int, data: bytes) -> Path:
    """Put a frame's file rendered elsewhere into the job's staging folder (written, then renamed)."""
    patterns = dict(prepared.finals())
    if kind not in patterns:
        raise InvalidInput(f"job {job_id} writes no '{kind}' files", reason="BAD_KIND", field="kind")
    target = staged_path(prepared.staging(job_id), kind, patterns[kind], frame)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = image.temporary_path(str(target))
    Path(temp).write_bytes(data)
    os.replace(temp, target)
    return target


def staging_of(spec: pb.JobSpec, job_id: str) -> Optional[Path]:
    """The job's staging folder (whether or not it exists), from its spec alone."""
    finals = spec_finals(spec)
    return staging_folder(finals[0][1].directory, job_id) if finals else None


# -- the commit ----------------------------------------------------------------------------------


def commit(
    prepared: PreparedJob, staging: Path, job_id: str, result: pb.JobResult, cancelled: Callable[[], bool]
) -> pb.JobResult:
    """Move every staged file onto its final name, then drop the staging folder; returns the result.

    Before the marker: files at the final names must be voidlink's (unless the job says overwrite),
    the folders are made and checked against the daemon's roots once more, and a cancel that came
    first stops the job (its staging folder is then removed by the caller). Writing the marker is
    the point of no return; a marker found already (a commit interrupted by a crash) is finished
    whatever was asked since, with the result it holds."""
    finals = prepared.finals()
    marker = staging / COMMIT_MARKER
    with _committing(staging.parent), _moving(staging):
        if marker.exists():
            begin_commit(cancelled, force=True)
            result = _marker_result(marker) or result
        else:
            moves = _moves(staging, finals)
            if not prepared.spec.output.overwrite:
                _check_still_ours(moves, finals)
            prepared.check_confined()  # before a folder is made through a link swapped in
            check_no_unfinished_commit(prepared, job_id)
            _make_folders(moves)
            begin_commit(cancelled)
            _write_marker(marker, job_id, prepared, result)
        _roll_forward(staging, finals)
    return result


@contextlib.contextmanager
def _moving(staging: Path) -> Iterator[None]:
    _MOVING.add(str(staging))
    try:
        yield
    finally:
        _MOVING.discard(str(staging))


def check_no_unfinished_commit(prepared: StagedOutput, job_id: str = "") -> None:
    """No other job's move onto any of these files stopped half-way (its marker is still on disk; the
    daemon's next start finishes it): finished later, it would put its frames over this job's. A move
    this process is making now is not one; another process's (a pool worker's) waits behind the
    folder's lock at the commit, where this is checked again."""
    try:
        entries = list(os.scandir(prepared.output_dir))
    except OSError:
        return  # no folder yet: nothing staged in it
    mine: dict[str, str] = {}  # final path -> kind, made only once a stopped move is found
    for entry in entries:
        if not entry.name.startswith(STAGING_PREFIX) or entry.name == f"{STAGING_PREFIX}{job_id}":
            continue
        staging = Path(entry.path)
        marker = staging / COMMIT_MARKER
        if str(staging) in _MOVING or not entry.is_dir(follow_symlinks=False) or not marker.is_file():
            continue
        if not mine:
            for kind, pattern in prepared.finals():
                folder = os.path.realpath(pattern.directory or ".")
                for frame in prepared.frames:
                    mine[os.path.normcase(os.path.join(folder, os.path.basename(pattern.path(frame))))] = kind
        result = _marker_result(marker)
        theirs = {"output": result.output_pattern, "quadmask": result.quadmask_pattern, "raw": result.raw_pattern,
                  "affected": result.affected_pattern} if result is not None else {}  # fmt: skip
        waiting = []
        for kind in staging.iterdir():
            if not kind.is_dir() or kind.name == COUNTS:
                continue
            where = os.path.dirname(theirs.get(kind.name) or "") or str(staging.parent)
            for staged in kind.iterdir():
                final = os.path.normcase(os.path.join(os.path.realpath(where), staged.name))
                if final in mine:
                    waiting.append((mine[final], final))
        if waiting:
            label, final = LABELS[waiting[0][0]], waiting[0][1]
            raise Conflict(
                f"{label}: job {entry.name[len(STAGING_PREFIX):]} began moving its frames onto {final} and "
                f"{len(waiting) - 1} more of this job's files, and stopped half-way (unless another voidlink process "
                f"is moving them now). Restart the daemon (voidlink stop, then voidlink serve) to finish that move, "
                f"then run this job again; or remove {staging} to give the rest of that move up",
                reason="COMMIT_PENDING",
                field=label,
                file=final,
            )


def commit_begun(spec: pb.JobSpec, job_id: str) -> bool:
    """Whether the job's commit marker is on disk: its move has begun and must be finished."""
    staging = staging_of(spec, job_id)
    return staging is not None and (staging / COMMIT_MARKER).is_file()


def finish_interrupted_commit(spec: pb.JobSpec, job_id: str) -> Optional[pb.JobResult]:
    """Finish the renames of a commit a crash interrupted, from the spec alone (no source is read), and
    return the result its marker holds. None, with nothing moved, when there is no marker, or one
    without a result (an older daemon's; the job's next run finishes that one). Raises VoidlinkError
    (COMMIT_INCOMPLETE) when a rename fails."""
    try:
        finals = spec_finals(spec)
    except VoidlinkError:
        return None
    if not finals:
        return None
    staging = staging_folder(finals[0][1].directory, job_id)
    marker = staging / COMMIT_MARKER
    if staging.is_symlink() or not marker.is_file():
        return None
    result = _marker_result(marker)
    if result is None:
        return None
    with _committing(staging.parent), _moving(staging):
        _roll_forward(staging, finals)
    return result


_Move = tuple[str, int, Path, str]  # (kind, frame, staged file, final path)


def _moves(staging: Path, finals: Finals) -> list[_Move]:
    """Every file in the staging folder with its final path, by kind then frame.

    Read from the folder, not from any list written in it: only names of the job's own patterns move,
    each into its pattern's folder (a temporary file of an interrupted write stays and goes with the folder)."""
    moves = []
    for kind, pattern in finals:
        folder = staging / kind
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        regex = pattern.regex()
        found = []
        for name in names:
            match = regex.match(name)
            if match is not None:
                found.append((int(match.group(1)), name))
        for frame, name in sorted(found):
            moves.append((kind, frame, folder / name, os.path.join(pattern.directory, name)))
    return moves


def _check_still_ours(moves: list[_Move], finals: Finals) -> None:
    """A file voidlink did not write that appeared at a final name since the job was submitted stops it."""
    for kind, _ in finals:
        found = [(f, final) for k, f, _, final in moves if k == kind and os.path.lexists(final)]
        found = [(f, final) for f, final in found if image.job_of(final) is None]
        if found:
            raise output_exists(found, LABELS[kind], " (it appeared after the job was submitted)")


def _make_folders(moves: list[_Move]) -> None:
    for folder in sorted({os.path.dirname(final) for _, _, _, final in moves}):
        try:
            os.makedirs(folder or ".", exist_ok=True)
        except OSError as exc:
            raise PermissionDenied(
                f"cannot create {folder} to move the frames into: {exc.strerror or exc}",
                reason="OUTPUT_NOT_WRITABLE",
                file=folder,
            ) from exc


def _move(staged: Path, final: str) -> None:
    os.makedirs(os.path.dirname(final) or ".", exist_ok=True)
    try:
        os.replace(staged, final)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        # A side output on another file system than the output: copied beside its final name, then renamed.
        temp = image.temporary_path(final)
        try:
            shutil.copyfile(staged, temp)
            os.replace(temp, final)
        finally:
            if os.path.exists(temp):
                os.unlink(temp)
        os.unlink(staged)


def _write_marker(marker: Path, job_id: str, prepared: PreparedJob, result: pb.JobResult) -> None:
    temp = marker.with_suffix(".tmp")
    record = {
        "job": job_id,
        "frames": [prepared.first, prepared.last],
        "result": base64.b64encode(result.SerializeToString()).decode("ascii"),
    }
    with open(temp, "w", encoding="utf-8") as handle:
        json.dump(record, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, marker)


def _marker_result(marker: Path) -> Optional[pb.JobResult]:
    """The result a commit marker holds; None for a marker without one (written by an older voidlink)."""
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
        return pb.JobResult.FromString(base64.b64decode(record["result"]))
    except Exception:
        return None


def _roll_forward(staging: Path, finals: Finals) -> None:
    """Move every staged file onto its final name, then drop the staging folder (after the marker)."""
    moves = _moves(staging, finals)
    for done, (_kind, frame, staged, final) in enumerate(moves):
        try:
            _move(staged, final)
        except OSError as exc:
            raise VoidlinkError(
                f"moving the frames into place stopped at {final} (frame {frame}): {exc.strerror or exc}; "
                f"{done} of {len(moves)} files were moved, the rest wait in {staging}. Fix the cause and restart "
                "the daemon (voidlink stop, then voidlink serve): it finishes the move before anything else",
                reason="COMMIT_INCOMPLETE",
                file=final,
                frame=frame,
            ) from exc
    shutil.rmtree(staging, ignore_errors=True)


# -- discarding ----------------------------------------------------------------------------------


def discard_staging(prepared: PreparedJob, job_id: str) -> None:
    """Forget a cancelled or failed job's frames; earlier results in the output folder stay as they were.
    A staging folder whose commit has begun is kept: that move is finished, never undone."""
    prepared.close()
    _discard_folder(prepared.staging(job_id))


def discard_staging_of(spec: pb.JobSpec, job_id: str) -> bool:
    """discard_staging for a job that was not prepared (cancelled in the queue, refused when it ran)."""
    try:
        return _discard_folder(staging_of(spec, job_id))
    except VoidlinkError:  # a spec whose patterns do not parse staged nothing
        return False


def _discard_folder(staging: Optional[Path]) -> bool:
    if staging is None or staging.is_symlink() or not staging.is_dir() or (staging / COMMIT_MARKER).exists():
        return False
    shutil.rmtree(staging)
    return True
