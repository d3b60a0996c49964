"""Frames that travel over gRPC: the daemon's content-addressed frame cache and per-job folders.

A client that shares no storage with the daemon uploads each source and matte frame once, named by
the SHA-256 of its bytes. The cache keeps whole frames under `objects/` and unfinished uploads under
`partial/` (so a broken stream resumes where the daemon's copy ends), evicts the least recently
used frames past its size cap, and hard-links a job's frames into `transfers/<key>/` where the
pipeline reads them like any sequence. Streamed-back results are written under `results/<key>/`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Optional

from voidlink.inference.security import format_size
from voidlink.protos import pb
from voidlink.protos.clips import SequencePattern, clip_json, clip_media

from voidlink.errors import Conflict, InvalidInput, LimitExceeded, NotFound

log = logging.getLogger("voidlink.transfer")

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
CLIP_FIELDS = ("source", "mask", "affected")
PARTIAL_DAYS = 2  # unfinished uploads older than this are dropped when the daemon starts


def check_sha(sha: str, field: str) -> str:
    if not _SHA256.match(sha or ""):
        raise InvalidInput(f"{field}: '{sha}' is not a SHA-256 in lower-case hex", reason="BAD_HASH", field=field)
    return sha


class FrameCache:
    """Frames by content hash, capped at `max_bytes`, least recently used evicted first."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.objects = self.root / "objects"
        self.partial = self.root / "partial"
        self.objects.mkdir(parents=True, exist_ok=True)
        self.partial.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._sizes: OrderedDict[str, int] = OrderedDict()  # oldest use first
        self._used = 0  # the sum of `_sizes`, kept as frames come and go: a frame's arrival costs no walk over all
        # Uploads in progress: sha -> (bytes written, running hash, open file), so a stream's next chunk
        # appends without looking at the disk again.
        self._open: dict[str, tuple[int, object, object]] = {}
        self._stripes = [threading.Lock() for _ in range(64)]
        self._pins: dict[str, int] = {}
        stale = time.time() - PARTIAL_DAYS * 86400
        for partial in self.partial.iterdir():
            if partial.stat().st_mtime < stale:  # an upload nobody came back to finish
                partial.unlink(missing_ok=True)
        found = [(p.stat().st_mtime, p.name, p.stat().st_size) for p in self.objects.glob("*/*") if p.is_file()]
        for _, name, size in sorted(found):
            self._sizes[name] = size
        self._used = sum(self._sizes.values())
        # Bytes of unfinished uploads under `partial/`: bounded to as much as the cap again, so streams that
        # never finish their frames cannot fill the disk.
        self._partial_bytes = sum(p.stat().st_size for p in self.partial.iterdir() if p.is_file())

    def _object(self, sha: str) -> Path:
        return self.objects / sha[:2] / sha

    def _partial(self, sha: str) -> Path:
        return self.partial / sha

    @property
    def used_bytes(self) -> int:
        with self._lock:
            return self._used

    def status(self, sha: str) -> tuple[bool, int]:
        """(present, bytes of a partial upload kept); a present frame counts as just used."""
        with self._lock:
            if sha in self._sizes and self._object(sha).is_file():
                self._touch(sha)
                return True, self._sizes[sha]
            self._used -= self._sizes.pop(sha, 0)  # its file is gone (removed by hand): not counted any more
        try:
            return False, self._partial(sha).stat().st_size
        except FileNotFoundError:
            # No partial copy, or a stream completing the frame renamed it into place just now (a job
            # registering its frames asks while its own upload goes on): a second look says which.
            pass
        with self._lock:
            if sha in self._sizes and self._object(sha).is_file():
                return True, self._sizes[sha]
        return False, 0

    def _touch(self, sha: str) -> None:
        self._sizes.move_to_end(sha)
        try:
            os.utime(self._object(sha))
        except OSError:
            pass

    def pin(self, shas: Iterable[str]) -> None:
        with self._lock:
            for sha in shas:
                self._pins[sha] = self._pins.get(sha, 0) + 1

    def unpin(self, shas: Iterable[str]) -> None:
        with self._lock:
            for sha in shas:
                left = self._pins.get(sha, 0) - 1
                if left > 0:
                    self._pins[sha] = left
                else:
                    self._pins.pop(sha, None)

    def write(self, chunk: pb.FrameChunk, data: Optional[bytes] = None) -> tuple[int, bool]:
        """Store one chunk at its offset; returns (bytes stored, complete). Verifies the hash at the end.

        `data`: the chunk's bytes when the caller holds them already (each read of `chunk.data` copies them)."""
        if data is None:
            data = chunk.data
        sha = check_sha(chunk.sha256, "chunk.sha256")
        if chunk.size <= 0:
            raise InvalidInput(f"frame {sha[:12]}: size {chunk.size} is not positive", reason="BAD_SIZE", field="size")
        if chunk.size > self.max_bytes:
            raise LimitExceeded(
                f"frame {sha[:12]} is {format_size(chunk.size)}, more than this daemon's whole frame cache "
                f"({format_size(self.max_bytes)}); start the daemon with a larger --cache-size",
                reason="CACHE_TOO_SMALL",
            )
        with self._stripes[int(sha[:2], 16) % len(self._stripes)]:
            current = self._open.get(sha)
            if current is not None and current[0] == chunk.offset:
                return self._append(sha, chunk, data, current[1], current[2])
            self._close(sha)
            present, stored = self.status(sha)
            if present:
                return chunk.size, True
            if chunk.offset != stored:
                raise InvalidInput(
                    f"frame {sha[:12]}: a chunk at byte {chunk.offset} but the daemon holds {stored} bytes; "
                    f"resume from {stored}",
                    reason="OFFSET_MISMATCH",
                    field="offset",
                )
            partial = self._partial(sha)
            hasher = hashlib.sha256()
            if stored:  # resuming: the hash must cover what an earlier stream wrote
                with open(partial, "rb") as existing:
                    for block in iter(lambda: existing.read(1 << 20), b""):
                        hasher.update(block)
            # Unbuffered: each chunk goes to the OS as it is written, so an acknowledged byte is in the
            # file whatever happens to this process next, without a flush per chunk.
            return self._append(sha, chunk, data, hasher, open(partial, "ab", buffering=0))

    def _close(self, sha: str) -> None:
        current = self._open.pop(sha, None)
        if current is not None:
            current[2].close()

    def release(self, shas: Iterable[str]) -> None:
        """Close the files of a stream's unfinished frames (what they hold stays for a resume)."""
        for sha in shas:
            if not _SHA256.match(sha):
                continue  # refused when it arrived; nothing was opened for it
            with self._stripes[int(sha[:2], 16) % len(self._stripes)]:
                self._close(sha)

    def _append(self, sha: str, chunk: pb.FrameChunk, data: bytes, hasher, handle) -> tuple[int, bool]:
        end = chunk.offset + len(data)
        if end > chunk.size:
            self._open.pop(sha, None)
            handle.close()
            raise InvalidInput(
                f"frame {sha[:12]}: chunk ends at byte {end}, past the frame's size {chunk.size}",
                reason="BAD_SIZE",
                field="data",
            )
        try:
            self._reserve_partial(sha, len(data))
        except LimitExceeded:
            self._open.pop(sha, None)
            handle.close()
            raise
        try:
            _write_all(handle, data)
        except BaseException:  # a full disk mid-chunk: the stream fails, its file stays for a resume
            self._open.pop(sha, None)
            handle.close()
            with self._lock:
                self._partial_bytes -= len(data)
            raise
        hasher.update(data)
        if end < chunk.size:
            self._open[sha] = (end, hasher, handle)
            return end, False
        self._open.pop(sha, None)
        handle.close()
        partial = self._partial(sha)
        with self._lock:
            self._partial_bytes -= chunk.size  # whole now: a frame of the cache, or discarded
        if hasher.hexdigest() != sha:
            partial.unlink(missing_ok=True)
            raise InvalidInput(
                f"frame {sha[:12]}: the {chunk.size} bytes received hash to {hasher.hexdigest()[:12]}; "
                "the upload was corrupted and is discarded, send it again",
                reason="HASH_MISMATCH",
                field="sha256",
            )
        target = self._object(sha)
        target.parent.mkdir(exist_ok=True)
        os.replace(partial, target)
        with self._lock:
            self._used += chunk.size - self._sizes.get(sha, 0)
            self._sizes[sha] = chunk.size
            self._sizes.move_to_end(sha)
            self._evict()
            if sha not in self._sizes:  # nothing older could go: frames of uploads under way fill the cache
                pinned = sum(self._sizes.get(s, 0) for s in self._pins)
                raise LimitExceeded(
                    f"frame {sha[:12]} ({format_size(chunk.size)}) does not fit in the daemon's frame cache "
                    f"({format_size(self.max_bytes)}, --cache-size): {format_size(pinned)} of it hold frames "
                    "that uploads under way still need; start the daemon with a larger --cache-size or send "
                    "a shorter shot",
                    reason="CACHE_FULL",
                )
        return chunk.size, True

    def _reserve_partial(self, sha: str, size: int) -> None:
        """Room for `size` more bytes of unfinished uploads: the oldest partial copies no stream is writing
        are dropped to make it (their uploads start again from the beginning), else the chunk is refused.
        A copy counts as being written while its frame's stripe is held (a stream between two chunks, or
        resuming it), so only one no stream touches can go."""
        own = self._stripes[int(sha[:2], 16) % len(self._stripes)]
        with self._lock:
            if self._partial_bytes + size > self.max_bytes:
                for path in sorted(self._idle_partials(sha), key=_mtime):
                    if self._partial_bytes + size <= self.max_bytes:
                        break
                    stripe = self._stripes[int(path.name[:2], 16) % len(self._stripes)]
                    if stripe is own or not stripe.acquire(blocking=False):
                        continue  # a stream is at work on a frame of that stripe: it may be this one
                    try:
                        if path.name in self._open:
                            continue
                        dropped = path.stat().st_size
                        path.unlink()
                    except FileNotFoundError:
                        continue
                    finally:
                        stripe.release()
                    self._partial_bytes -= dropped
                    log.info("frame cache: dropped the unfinished upload %s to make room", path.name[:12])
            if self._partial_bytes + size > self.max_bytes:
                raise LimitExceeded(
                    f"frame {sha[:12]}: uploads under way hold {format_size(self._partial_bytes)} of unfinished "
                    f"frames, as much as this daemon's frame cache ({format_size(self.max_bytes)}, --cache-size); "
                    "finish or stop other uploads, or start the daemon with a larger --cache-size",
                    reason="CACHE_FULL",
                )
            self._partial_bytes += size

    def _idle_partials(self, sha: str) -> list[Path]:
        names = (p for p in self.partial.iterdir() if p.name != sha and p.name not in self._open)
        return [p for p in names if _SHA256.match(p.name)]

    def _evict(self) -> None:
        if self._used <= self.max_bytes:
            return
        for sha in list(self._sizes):
            if self._used <= self.max_bytes:
                break
            if self._pins.get(sha):
                continue
            self._used -= self._sizes.pop(sha)
            self._object(sha).unlink(missing_ok=True)
            log.info("frame cache: evicted %s (least recently used)", sha[:12])

    def link(self, sha: str, target: Path) -> None:
        """Give `target` the frame's bytes (a hard link when it can): evicting the frame later keeps them."""
        with self._lock:
            source = self._object(sha)
            if sha not in self._sizes or not source.is_file():
                raise NotFound(f"frame {sha[:12]} is not in the daemon's frame cache", reason="FRAMES_NOT_UPLOADED")
            self._touch(sha)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source, target)
                return
            except FileExistsError:
                # Never written through: the file there may be a link to another frame of the cache.
                raise Conflict(
                    f"{target.name}: the job's folder holds this frame already", reason="FRAME_TWICE", file=str(target)
                ) from None
            except OSError:
                pass  # no hard links here (another file system): a copy of its own
            try:
                with open(source, "rb") as reading, open(target, "xb") as writing:
                    shutil.copyfileobj(reading, writing, 1 << 20)
            except FileExistsError:
                raise Conflict(
                    f"{target.name}: the job's folder holds this frame already", reason="FRAME_TWICE", file=str(target)
                ) from None
            except BaseException:
                target.unlink(missing_ok=True)
                raise


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _write_all(handle, data) -> None:
    """All of `data` into an unbuffered file: the OS may take less than asked in one write (a signal, a
    full disk it then names on the next)."""
    view = memoryview(data)
    while view:
        view = view[handle.write(view) :]


class Transfers:
    """Per-job folders of uploaded inputs and streamed-back outputs, under the daemon's data dir."""

    def __init__(self, data_dir: Path, cache: FrameCache, max_upload_bytes: int) -> None:
        self.inputs = Path(data_dir) / "transfers"
        self.results = Path(data_dir) / "results"
        self.inputs.mkdir(parents=True, exist_ok=True)
        self.results.mkdir(parents=True, exist_ok=True)
        self.cache = cache
        self.max_upload_bytes = max_upload_bytes

    def streamed(self, spec: pb.JobSpec) -> bool:
        return spec.output.stream_back or any(getattr(spec, name).uploaded_frames for name in CLIP_FIELDS)

    def materialise(self, spec: pb.JobSpec, missing_ok: bool = False) -> pb.JobSpec:
        """A copy of `spec` that reads uploaded frames from a job folder and writes into a result folder.

        `missing_ok`: frames not in the cache yet are linked in as they arrive (`voidlink.inference.uploads`),
        not refused."""
        out = pb.JobSpec()
        out.CopyFrom(spec)
        key = uuid.uuid4().hex
        for name in CLIP_FIELDS:
            self._check_refs(getattr(spec, name), f"spec.{name}")
        total = sum(ref.size for name in CLIP_FIELDS for ref in getattr(spec, name).uploaded_frames)
        if total > self.max_upload_bytes:
            raise LimitExceeded(
                f"this job uploads {format_size(total)} of frames; the daemon takes at most "
                f"{format_size(self.max_upload_bytes)} per job (--max-upload): split the shot into shorter jobs",
                reason="UPLOAD_TOO_LARGE",
                field="spec.source.uploaded_frames",
            )
        try:
            for name in CLIP_FIELDS:
                clip = getattr(out, name)
                if clip.uploaded_frames:
                    self._link_clip(clip, f"spec.{name}", self.inputs / key / name, missing_ok)
        except BaseException:
            shutil.rmtree(self.inputs / key, ignore_errors=True)  # no job will own these links
            raise
        if spec.output.stream_back:
            template = spec.output.path_template
            base = re.split(r"[\\/]", template)[-1]
            if not template or SequencePattern.parse(base) is None:
                raise InvalidInput(
                    f"spec.output.path_template: '{template}' has no frame number (use ####, %04d or @)",
                    reason="BAD_PATTERN",
                    field="spec.output.path_template",
                )
            out.output.path_template = str(self.results / key / base)
            # The side sequences the client named keep their names, each in a folder of its kind (two
            # kinds may share a name in different folders on the client); the client puts them back
            # where it asked. Unnamed ones take the daemon's default beside the output.
            sides = [(out.output, "quadmask_template", "quadmask"), (out.output, "raw_template", "raw")]
            if out.HasField("matte"):
                sides.append((out.matte, "affected_template", "affected"))
            for holder, name, kind in sides:
                named = getattr(holder, name)
                side = re.split(r"[\\/]", named)[-1]
                setattr(holder, name, str(self.results / key / kind / side) if named else "")
        return out

    def _check_refs(self, clip: pb.ClipSpec, field: str) -> None:
        """Each uploaded frame named once, by a hash, with a size a frame of this cache can have; a frame
        the cache holds must have the size it holds (the job's --max-upload bound counts the sizes named
        here; a frame still to come is checked when the job's last frame is in)."""
        field = field + ".uploaded_frames"
        seen: set[int] = set()
        for ref in clip.uploaded_frames:
            check_sha(ref.sha256, field + ".sha256")
            if ref.frame in seen:
                raise InvalidInput(
                    f"{field}: frame {ref.frame} is named twice; name each frame of the clip once",
                    reason="FRAME_TWICE",
                    field=field,
                    frame=ref.frame,
                )
            seen.add(ref.frame)
            if not 0 < ref.size <= self.cache.max_bytes:
                raise InvalidInput(
                    f"{field}: frame {ref.frame} is said to be {ref.size} bytes; a frame is more than 0 bytes and "
                    f"at most the daemon's frame cache ({format_size(self.cache.max_bytes)}, --cache-size)",
                    reason="BAD_SIZE",
                    field=field + ".size",
                    frame=ref.frame,
                )
            present, held = self.cache.status(ref.sha256)
            if present and held != ref.size:
                raise InvalidInput(
                    f"{field}: frame {ref.frame} is said to be {ref.size} bytes, but the frame of that hash is "
                    f"{held} bytes",
                    reason="BAD_SIZE",
                    field=field + ".size",
                    frame=ref.frame,
                )

    def _link_clip(self, clip: pb.ClipSpec, field: str, folder: Path, missing_ok: bool = False) -> None:
        try:
            media = clip_media(clip.otio_json, field + ".otio_json")
        except ValueError as error:
            raise InvalidInput(str(error), reason="BAD_CLIP", field=field + ".otio_json") from error
        base = re.split(r"[\\/]", media.path)[-1]
        pattern = SequencePattern.parse(base)
        if pattern is None:
            raise InvalidInput(
                f"{field}: only image sequences can be uploaded ({media.path} is not one); "
                "render the clip to an EXR sequence or put it where the daemon can read it",
                reason="NOT_A_SEQUENCE",
                field=field,
            )
        if not pattern.padding:
            pattern = pattern.with_padding(4)
        missing = []
        for ref in clip.uploaded_frames:
            present, _ = self.cache.status(ref.sha256)
            if not present:
                missing.append(ref.frame)
        if missing and not missing_ok:
            raise NotFound(
                f"{field}: {len(missing)} uploaded frame(s) are not in the daemon's frame cache "
                f"(evicted or never sent): {', '.join(str(f) for f in missing[:10])}; upload them again",
                reason="FRAMES_NOT_UPLOADED",
                field=field,
                frames=missing,
            )
        local = SequencePattern(str(folder / pattern.prefix), pattern.suffix, pattern.padding)
        folder.mkdir(parents=True, exist_ok=True)
        for ref in clip.uploaded_frames:
            if ref.frame not in missing:
                self.cache.link(ref.sha256, Path(local.path(ref.frame)))
        frames = [ref.frame for ref in clip.uploaded_frames]
        # The clip spans what was uploaded: the job's range is checked against it like any sequence.
        clip.otio_json = clip_json(local.hashes(), min(frames), max(frames), media.rate, media.name)

    def job_key(self, spec: pb.JobSpec) -> Optional[str]:
        """The key of a job's result folder, when its output is streamed back."""
        template = Path(spec.output.path_template)
        if template.parent.parent == self.results:
            return template.parent.name
        return None

    def result_folder(self, spec: pb.JobSpec) -> Optional[Path]:
        key = self.job_key(spec)
        return self.results / key if key else None

    def discard_inputs(self, spec: pb.JobSpec) -> None:
        for name in CLIP_FIELDS:
            clip = getattr(spec, name)
            if not clip.uploaded_frames:
                continue
            try:
                path = Path(clip_media(clip.otio_json).path)
            except ValueError:
                continue
            folder = path.parent.parent
            if folder.parent == self.inputs:
                shutil.rmtree(folder, ignore_errors=True)
