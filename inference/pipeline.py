"""One job, end to end: validate, analyse the mattes, plan, run the backend, composite, write.

    read (OpenImageIO) → colour to model space (OCIO) → quadmask → crop/scale plan → backend →
    scale/paste back → colour back → composite over the original → write (temp file, rename)

`prepare_job` is cheap (headers and directory listings, no pixels) and runs when a job is
submitted, so bad input is refused before it is queued. `run_job` streams frames: a bounded
read-ahead feeds the backend, which holds its own sliding window, and each result is composited
and written as it comes.

Nothing is lost: frames are written into a staging folder beside the output
(`.voidlink-<job id>/`) and renamed into place only when every frame is done, so a cancelled or
failed job leaves an earlier result untouched and its staging folder is removed. A job interrupted by
a daemon restart finds its staged frames and computes only the missing ones.

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
import os
import shutil
import threading
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Protocol

import numpy as np
import OpenImageIO as oiio
from voidlink.inference.backends.base import Backend, BackendFrame, BackendRequest, BackendResult
from voidlink.media import colour, composite, image, plan, quadmask, sequence
from voidlink.media.plan import ProcessingPlan
from voidlink.media.quadmask import MatteSettings
from voidlink.media.sequence import MediaSource
from voidlink.protos import pb, vocabulary
from voidlink.protos.clips import SequencePattern, clip_json, clip_media

from voidlink import __version__
from voidlink.errors import InvalidInput, JobCancelled, NotFound, OutputExists, PermissionDenied, VoidlinkError

STAGING_PREFIX = ".voidlink-"
COMMIT_MARKER = "commit.json"
READ_AHEAD = 3


# A daemon confined to roots sets this: it sees every prepared job (every frame file, every output
# folder) at submission and again when the job runs, and raises PermissionDenied for a path outside.
# The files themselves are checked again as they are opened (`image.CONFINE`).
PATH_GUARD: Optional[Callable[[PreparedJob], None]] = None
# One commit at a time in this process: two jobs writing the same output never interleave their renames.
_COMMIT_LOCK = threading.Lock()


class CancelFlag:
    """A job's cancel request and its point of no return, shared by the scheduler and the job.

    Called, it says whether the job should stop (what backends and the pipeline poll). `cancel()`
    asks it to; `begin_commit()` is the job's last look before it starts moving its frames into
    place: a cancel that came first stops the job there, one that comes after is refused (`cancel()`
    returns False) because the move, once begun, is finished."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancelled = False
        self._committing = False

    def __call__(self) -> bool:
        return self._cancelled and not self._committing

    def cancel(self) -> bool:
        with self._lock:
            if self._committing:
                return False
            self._cancelled = True
            return True

    @property
    def committing(self) -> bool:
        return self._committing

    def begin_commit(self, force: bool = False) -> None:
        """Pass the point of no return, or raise JobCancelled when cancelled first (unless `force`:
        a commit begun by an earlier run is finished whatever was asked since)."""
        with self._lock:
            if self._cancelled and not force:
                raise JobCancelled("cancelled")
            self._committing = True


def _begin_commit(cancelled: Callable[[], bool], force: bool = False) -> None:
    if isinstance(cancelled, CancelFlag):
        cancelled.begin_commit(force)
    elif cancelled() and not force:
        raise JobCancelled("cancelled")


class ProgressSink(Protocol):
    def stage(self, name: str, message: str = "") -> None: ...

    def frame_written(self, frame: int, done: int, total: int, preview: Optional[np.ndarray]) -> None: ...

    def log(self, message: str) -> None: ...


class NullProgress:
    def stage(self, name: str, message: str = "") -> None:
        pass

    def frame_written(self, frame: int, done: int, total: int, preview: Optional[np.ndarray]) -> None:
        pass

    def log(self, message: str) -> None:
        pass


# -- clips -----------------------------------------------------------------------------------


@dataclass
class Clip:
    """A clip of the job resolved against the disk."""

    field: str  # "spec.source", "spec.mask", "spec.affected"
    media: MediaSource
    channels: str
    part: str
    matte: bool
    settings: MatteSettings = field(default_factory=MatteSettings)
    header: Optional[oiio.ImageSpec] = None  # of the first frame of the job
    clip_range: tuple[Optional[int], Optional[int]] = (None, None)  # the OTIO clip's own range
    rgb: list[int] = field(default_factory=lambda: [0, 1, 2])  # colour channels among all of a frame's
    _captures: dict = field(default_factory=dict)

    def read(self, frame: int, all_channels: bool = False) -> image.ImageFrame:
        if self.media.kind == "movie":
            return self._read_movie(frame)
        path = self.media.file_for(frame)
        channels = "all" if all_channels else self.channels
        return image.read_image(path, channels, matte=self.matte, part=self.part, field=self.field, frame=frame)

    def _read_movie(self, frame: int) -> image.ImageFrame:
        import cv2

        # One decoder per thread: the read-ahead thread and the composite both read frames.
        key = threading.get_ident()
        if key not in self._captures:
            # Confined: the decoder reads the file that was opened and checked, kept open as long as it.
            with contextlib.ExitStack() as opened:
                capture = cv2.VideoCapture(opened.enter_context(image.open_checked(self.media.path, self.field, frame)))
                self._captures[key] = (capture, opened.pop_all())
        capture = self._captures[key][0]
        rgb = image.read_movie_frame(capture, self.media.path, self.media.movie_index(frame), self.field, frame)
        spec = image.movie_spec(rgb.shape[1], rgb.shape[0], self.media.rate)
        if self.matte:
            how = (self.channels or "luminance").lower()
            pick = {"r": 0, "g": 1, "b": 2}.get(how)
            rgb = (
                rgb[..., pick : pick + 1]
                if pick is not None
                else (rgb @ np.float32([0.2126, 0.7152, 0.0722]))[..., None]
            )
            return image.ImageFrame(np.ascontiguousarray(rgb), spec, ["Y"], self.media.path)
        return image.ImageFrame(rgb, spec, ["R", "G", "B"], self.media.path)

    def close(self) -> None:
        for capture, opened in self._captures.values():
            capture.release()
            opened.close()
        self._captures.clear()


def _clip(spec: pb.ClipSpec, field_name: str, matte: bool) -> Clip:
    try:
        media = clip_media(spec.otio_json, field_name + ".otio_json")
    except ValueError as error:
        raise InvalidInput(str(error), reason="BAD_CLIP", field=field_name + ".otio_json") from error
    source = sequence.discover(media, field_name)
    settings = MatteSettings.from_options(spec.matte) if matte else MatteSettings()
    return Clip(field_name, source, spec.channels, spec.part, matte, settings, clip_range=(media.first, media.last))


# -- the prepared job ------------------------------------------------------------------------


@dataclass
class PreparedJob:
    spec: pb.JobSpec
    first: int
    last: int
    source: Clip
    mask: Clip
    affected: Optional[Clip]
    output: SequencePattern
    output_template: str
    pixel_type: str  # "half" | "float" | "uint8" | "uint16"
    compression: str
    source_colorspace: str
    output_colorspace: str
    feather: float
    crop_mode: str
    quadmask_output: Optional[SequencePattern] = None
    raw_output: Optional[SequencePattern] = None
    notes: list[str] = field(default_factory=list)

    @property
    def frames(self) -> range:
        return range(self.first, self.last + 1)

    @property
    def output_dir(self) -> Path:
        return Path(self.output.directory)

    def staging(self, job_id: str) -> Path:
        return self.output_dir / f"{STAGING_PREFIX}{job_id}"

    def close(self) -> None:
        for clip in (self.source, self.mask, self.affected):
            if clip is not None:
                clip.close()


def _header(clip: Clip, frame: int) -> oiio.ImageSpec:
    if clip.media.kind == "movie":
        return clip.read(frame).spec
    path = clip.media.file_for(frame)
    spec = image.read_spec(path, clip.part, clip.field, frame)
    image.select_channels(spec, clip.channels, matte=clip.matte, field=clip.field, path=path, frame=frame)
    return spec


def _check_frames(clip: Clip, first: int, last: int) -> None:
    media = clip.media
    if media.kind == "image":
        return
    if first < media.first or last > media.last:
        raise InvalidInput(
            f"{clip.field}: frames {first}-{last} are outside {media.path} (frames {media.first}-{media.last})",
            reason="FRAME_RANGE_OUTSIDE_SOURCE",
            field="spec.frames",
            file=media.path,
            frames=[f for f in (first, last) if f < media.first or f > media.last],
        )
    missing = media.missing(first, last)
    if missing:
        raise NotFound(
            f"{clip.field}: {len(missing)} frame(s) missing from {media.path}: {sequence.format_frames(missing)}",
            reason="MISSING_FRAMES",
            field=clip.field,
            file=media.path,
            frames=missing,
        )


def _default_pixel_type(spec: oiio.ImageSpec, output_path: str) -> str:
    fmt = str(spec.format)
    if not output_path.lower().endswith(".exr"):
        return fmt if fmt in ("uint8", "uint16", "half", "float") else "float"
    if fmt in ("half", "float"):
        return fmt
    return "half" if fmt == "uint8" else "float"


def _side_pattern(output: SequencePattern, template: str, kind: str, suffix: str) -> SequencePattern:
    """Where the quadmask or raw sequence goes: the job's template, else `<out>/<kind>/<stem>_<kind>.####.png`."""
    if template:
        pattern = SequencePattern.parse(template)
        if pattern is None:
            raise InvalidInput(
                f"spec.output.{kind}_template: '{template}' has no frame number (use ####, %04d or @)",
                reason="BAD_PATTERN",
                field=f"spec.output.{kind}_template",
            )
        return pattern if pattern.padding else pattern.with_padding(4)
    folder, stem = os.path.split(output.prefix)
    stem = stem.rstrip("._-") or "frame"
    return SequencePattern(os.path.join(folder, kind, f"{stem}_{kind}."), suffix, max(output.padding, 4))


def _check_output(prepared_out: SequencePattern, clips: list[Clip], first: int, last: int, label: str) -> None:
    sources = set()
    for clip in clips:
        for frame in range(first, last + 1):
            sources.add(os.path.realpath(clip.media.file_for(frame)))
    for frame in range(first, last + 1):
        path = os.path.realpath(prepared_out.path(frame))
        if path in sources:
            raise PermissionDenied(
                f"{label}: {prepared_out.path(frame)} is a source file of this job; sources are never written",
                reason="OUTPUT_OVERWRITES_SOURCE",
                field=label,
                file=prepared_out.path(frame),
                frame=frame,
            )


_LABELS = {
    "output": "spec.output.path_template",
    "quadmask": "spec.output.quadmask_template",
    "raw": "spec.output.raw_template",
}


def _foreign_files(pattern: SequencePattern, frames: Collection[int]) -> list[tuple[int, str]]:
    """(frame, path) of the files at this pattern's paths that voidlink did not write, in frame order.

    One listing of the folder, then a header read for each file of the job's frames that is there:
    the cost is the files on disk, nothing for a new output."""
    try:
        names = set(os.listdir(pattern.directory))
    except OSError:  # no folder yet (or none to list: _check_writable names that)
        return []
    found = []
    for frame in frames:
        path = pattern.path(frame)
        if os.path.basename(path) in names and image.job_of(path) is None:
            found.append((frame, path))
    return found


def _output_exists(found: list[tuple[int, str]], label: str, when: str = "") -> OutputExists:
    frame, path = found[0]
    others = [f for f, _ in found[1:]]
    more = f", and {len(others)} more (frames {sequence.format_frames(others)})" if others else ""
    kinds = "" if path.lower().endswith(image.JOB_FORMATS) else (
        f" ({os.path.splitext(path)[1]} files cannot record the voidlink job that wrote them, so replacing even "
        "an earlier voidlink result in that format needs overwrite)"
    )
    return OutputExists(
        f"{label}: {path} (frame {frame}) exists{when} and was not written by voidlink{more}; voidlink never "
        f"writes over files it did not write{kinds}. Choose another output, or pass --overwrite "
        "(overwrite=True in Python) to replace them",
        field=label,
        file=path,
        frame=frame,
        frames=[f for f, _ in found],
    )


def _check_writable(folder: Path, label: str) -> None:
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise PermissionDenied(
            f"{label}: cannot write into {folder} ({probe} is {'not a folder' if not probe.is_dir() else 'read-only'})",
            reason="OUTPUT_NOT_WRITABLE",
            field=label,
            file=str(folder),
        )


def _crop_mode(spec: pb.JobSpec) -> str:
    mode = vocabulary.CROP_MODE.word(spec.params.crop_mode, "spec.params.crop_mode")
    # One box per temporal window needs the backend's window plan; until a windowed backend asks for it,
    # the shot-wide box is used (it contains every window's box).
    return "shot" if mode == "window" else mode


def prepare_job(spec: pb.JobSpec) -> PreparedJob:
    """Validate a job against the disk without reading pixels; raises a VoidlinkError naming the problem."""
    source = _clip(spec.source, "spec.source", matte=False)
    if not spec.mask.otio_json.strip():
        raise InvalidInput(
            "spec.mask: a mask clip is required (object matte or quadmask)", reason="NO_MASK", field="spec.mask"
        )
    mask = _clip(spec.mask, "spec.mask", matte=True)
    affected = _clip(spec.affected, "spec.affected", matte=True) if spec.affected.otio_json.strip() else None

    if spec.HasField("frames"):
        first, last = int(spec.frames.first), int(spec.frames.last)
    else:
        lo, hi = source.clip_range
        if source.media.kind == "image" and (lo is None or hi is None):
            lo = hi = 1
        first = lo if lo is not None else source.media.first
        last = hi if hi is not None else source.media.last
    if last < first:
        raise InvalidInput(f"spec.frames: the range {first}-{last} is empty", reason="EMPTY_RANGE", field="spec.frames")
    for clip in (source, mask, affected):
        if clip is not None:
            _check_frames(clip, first, last)

    source.header = _header(source, first)
    if source.media.kind != "movie":
        source.rgb, _ = image.select_channels(
            source.header,
            source.channels or "rgb",
            matte=False,
            field="spec.source",
            path=source.media.file_for(first),
            frame=first,
        )
        source.rgb = source.rgb[:3]
    mask.header = _header(mask, first)
    resample = spec.params.resample_mattes
    for clip in (mask, affected):
        if clip is None:
            continue
        if clip is affected:
            clip.header = _header(clip, first)
        src, other = source.header, clip.header
        if (src.full_width, src.full_height) != (other.full_width, other.full_height) and not resample:
            raise InvalidInput(
                f"{clip.field}: {clip.media.file_for(first)} is {other.full_width}x{other.full_height} but the plate "
                f"{source.media.file_for(first)} is {src.full_width}x{src.full_height} (frame {first}); "
                "render the matte at plate size or let the job resample mattes",
                reason="SIZE_MISMATCH",
                field=clip.field,
                file=clip.media.file_for(first),
                frame=first,
            )

    source_colorspace = colour.resolve_colorspace(
        spec.source.colorspace, source.header.getattribute("oiio:ColorSpace") or "", "spec.source.colorspace"
    )
    output_colorspace = (
        colour.resolve_colorspace(spec.output.colorspace, "", "spec.output.colorspace")
        if spec.output.colorspace
        else source_colorspace
    )

    template = spec.output.path_template
    output = SequencePattern.parse(template) if template else None
    if output is None:
        raise InvalidInput(
            f"spec.output.path_template: '{template}' has no frame number (use ####, %04d or @)",
            reason="BAD_PATTERN",
            field="spec.output.path_template",
        )
    if not os.path.isabs(template):
        raise InvalidInput(
            f"spec.output.path_template: '{template}' is relative; the daemon needs an absolute path",
            reason="BAD_PATTERN",
            field="spec.output.path_template",
        )
    if not output.padding:
        output = output.with_padding(4)
    if oiio.ImageOutput.create(output.path(first)) is None:
        raise InvalidInput(
            f"spec.output.path_template: no image writer for '{os.path.splitext(template)[1]}' files",
            reason="BAD_OUTPUT_FORMAT",
            field="spec.output.path_template",
        )
    clips = [c for c in (source, mask, affected) if c is not None]
    _check_output(output, clips, first, last, "spec.output.path_template")
    _check_writable(Path(output.directory), "spec.output.path_template")

    quadmask_out = raw_out = None
    if spec.output.write_quadmask:
        quadmask_out = _side_pattern(output, spec.output.quadmask_template, "quadmask", ".png")
        _check_output(quadmask_out, clips, first, last, "spec.output.quadmask_template")
    if spec.output.write_raw:
        raw_out = _side_pattern(output, spec.output.raw_template, "raw", ".png")
        _check_output(raw_out, clips, first, last, "spec.output.raw_template")

    pixel_type = vocabulary.PIXEL_TYPE.word(spec.output.pixel_type, "spec.output.pixel_type")
    if pixel_type == "auto":
        pixel_type = _default_pixel_type(source.header, template)
    vocabulary.QUALITY.check(spec.params.quality, "spec.params.quality")
    prepared = PreparedJob(
        spec=spec,
        first=first,
        last=last,
        source=source,
        mask=mask,
        affected=affected,
        output=output,
        output_template=template,
        pixel_type=pixel_type,
        compression=vocabulary.COMPRESSION.word(spec.output.compression, "spec.output.compression"),
        source_colorspace=source_colorspace,
        output_colorspace=output_colorspace,
        feather=mask.settings.feather,
        crop_mode=_crop_mode(spec),
        quadmask_output=quadmask_out,
        raw_output=raw_out,
    )
    if PATH_GUARD is not None:
        PATH_GUARD(prepared)
    if not spec.output.overwrite:
        for kind, pattern in _finals(prepared):
            found = _foreign_files(pattern, prepared.frames)
            if found:
                raise _output_exists(found, _LABELS[kind])
    return prepared


# -- mattes onto the plate -------------------------------------------------------------------


def _onto_plate(matte: image.ImageFrame, plate: oiio.ImageSpec, fill: float, nearest: bool) -> np.ndarray:
    """A matte's pixels in the plate's data window: other data windows are placed by their display
    coordinates; another display size is resampled (only when the job allowed it)."""
    import cv2

    m = matte.pixels[..., 0]
    ms = matte.spec
    if (ms.full_width, ms.full_height) != (plate.full_width, plate.full_height):
        canvas = np.full((ms.full_height, ms.full_width), fill, np.float32)
        _blit(canvas, m, ms.x - ms.full_x, ms.y - ms.full_y)
        interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
        m = cv2.resize(canvas, (plate.full_width, plate.full_height), interpolation=interp)
        mx, my = plate.full_x, plate.full_y
    else:
        mx, my = ms.x - ms.full_x + plate.full_x, ms.y - ms.full_y + plate.full_y
    if (mx, my, m.shape[1], m.shape[0]) == (plate.x, plate.y, plate.width, plate.height):
        return m
    out = np.full((plate.height, plate.width), fill, np.float32)
    _blit(out, m, mx - plate.x, my - plate.y)
    return out


def _blit(dst: np.ndarray, src: np.ndarray, x: int, y: int) -> None:
    h, w = dst.shape[:2]
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + src.shape[1], w), min(y + src.shape[0], h)
    if x1 > x0 and y1 > y0:
        dst[y0:y1, x0:x1] = src[y0 - y : y1 - y, x0 - x : x1 - x]


def frame_quadmask(prepared: PreparedJob, frame: int, plate: oiio.ImageSpec) -> tuple[np.ndarray, int]:
    """The quadmask of one frame at the plate's data window, before feathering; and pixels snapped."""
    mask = prepared.mask
    settings = mask.settings
    if settings.is_quadmask:
        values = _onto_plate(mask.read(frame), plate, fill=1.0, nearest=True)
        return quadmask.snap(values)
    obj = _onto_plate(mask.read(frame), plate, fill=0.0, nearest=False)
    aff = None
    if prepared.affected is not None:
        aff = _onto_plate(prepared.affected.read(frame), plate, fill=0.0, nearest=False)
    affected_settings = prepared.affected.settings if prepared.affected is not None else None
    return quadmask.from_mattes(obj, aff, settings, affected_settings), 0


# -- running ---------------------------------------------------------------------------------


@dataclass
class _Analysis:
    plan: ProcessingPlan
    empty: list[int]
    snapped: int
    coverage: float


def _analyse(
    prepared: PreparedJob,
    backend: Backend,
    cancelled: Callable[[], bool],
    progress: ProgressSink,
    staging: Path,
    rendered: list[int],
    job_id: str,
) -> _Analysis:
    """One pass over the mattes: boxes for the plan (always the whole shot's, so a segment is cropped
    as the whole job is), empty frames, and the quadmask files of the frames to render."""
    writes = set(rendered)
    boxes, empty, snapped, coverage = [], [], 0, 0.0
    plate = prepared.source.header
    assert plate is not None
    for frame in prepared.frames:
        if cancelled():
            raise JobCancelled("cancelled")
        qm, snapped_here = frame_quadmask(prepared, frame, plate)
        snapped += snapped_here
        grown = quadmask.grow_for_feather(qm, prepared.feather)
        box = quadmask.bbox(grown)
        if box is None:
            empty.append(frame)
        boxes.append(box)
        coverage += quadmask.coverage(qm)
        if prepared.quadmask_output is not None and frame in writes:
            target = _staged(staging, "quadmask", prepared.quadmask_output, frame)
            if not target.exists():
                image.write_image(
                    str(target),
                    qm.astype(np.float32) / 255.0,
                    pixel_type="uint8",
                    channel_names=["Y"],
                    attributes={image.JOB_ATTRIBUTE: job_id},
                )
    count = len(prepared.frames)
    if len(empty) == count:
        raise InvalidInput(
            f"spec.mask: the mask is empty on every frame ({prepared.first}-{prepared.last}) of "
            f"{prepared.mask.media.path}; check the matte's channel, threshold and invert options",
            reason="EMPTY_MASK",
            field="spec.mask",
            file=prepared.mask.media.path,
        )
    if snapped:
        progress.log(f"quadmask: {snapped} pixels were not 0, 63, 127 or 255 and were snapped to the nearest")
    work_plan = plan.plan((plate.width, plate.height), plan.union(boxes), backend.working_size, prepared.crop_mode)
    return _Analysis(work_plan, empty, snapped, coverage / max(count, 1))


def _staged(staging: Path, kind: str, pattern: SequencePattern, frame: int) -> Path:
    """A file's place in the staging folder: its final name, under a folder per kind of output."""
    return staging / kind / os.path.basename(pattern.path(frame))


def _output_staged(prepared: PreparedJob, staging: Path, frame: int) -> bool:
    return _staged(staging, "output", prepared.output, frame).exists()


def staged_files(prepared: PreparedJob, job_id: str, frame: int) -> dict[str, Path]:
    """The files the job has staged for this frame, by kind (output, quadmask, raw)."""
    staging = prepared.staging(job_id)
    found = {kind: _staged(staging, kind, pattern, frame) for kind, pattern in _finals(prepared)}
    return {kind: path for kind, path in found.items() if path.exists()}


def stage_file(prepared: PreparedJob, job_id: str, kind: str, frame: int, data: bytes) -> Path:
    """Put a frame's file rendered elsewhere into the job's staging folder (written, then renamed)."""
    patterns = dict(_finals(prepared))
    if kind not in patterns:
        raise InvalidInput(f"job {job_id} writes no '{kind}' files", reason="BAD_KIND", field="kind")
    target = _staged(prepared.staging(job_id), kind, patterns[kind], frame)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = image.temporary_path(str(target))
    Path(temp).write_bytes(data)
    os.replace(temp, target)
    return target


def _finals(prepared: PreparedJob) -> list[tuple[str, SequencePattern]]:
    kinds = (("output", prepared.output), ("quadmask", prepared.quadmask_output), ("raw", prepared.raw_output))
    return [(kind, pattern) for kind, pattern in kinds if pattern is not None]


def _spec_finals(spec: pb.JobSpec) -> list[tuple[str, SequencePattern]]:
    """The job's final patterns by kind, from its spec alone (what prepare_job makes of it, no disk)."""
    output = SequencePattern.parse(spec.output.path_template)
    if output is None:
        return []
    output = output if output.padding else output.with_padding(4)
    finals = [("output", output)]
    if spec.output.write_quadmask:
        finals.append(("quadmask", _side_pattern(output, spec.output.quadmask_template, "quadmask", ".png")))
    if spec.output.write_raw:
        finals.append(("raw", _side_pattern(output, spec.output.raw_template, "raw", ".png")))
    return finals


def staging_of(spec: pb.JobSpec, job_id: str) -> Optional[Path]:
    """The job's staging folder (whether or not it exists), from its spec alone."""
    finals = _spec_finals(spec)
    return Path(finals[0][1].directory) / f"{STAGING_PREFIX}{job_id}" if finals else None


def _moves(staging: Path, finals: list[tuple[str, SequencePattern]]) -> list[tuple[str, int, Path, str]]:
    """(kind, frame, staged file, final path) of every file in the staging folder, by kind then frame.

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


def _roll_forward(staging: Path, finals: list[tuple[str, SequencePattern]]) -> None:
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


def _commit(
    prepared: PreparedJob, staging: Path, job_id: str, result: pb.JobResult, cancelled: Callable[[], bool]
) -> pb.JobResult:
    """Move every staged file onto its final name, then drop the staging folder; returns the result.

    Before the marker: files at the final names must be voidlink's (unless the job says overwrite),
    the folders are made, and a cancel that came first stops the job (its staging folder is then
    removed by the caller). Writing the marker is the point of no return; a marker found already (a
    commit interrupted by a crash) is finished whatever was asked since, with the result it holds."""
    finals = _finals(prepared)
    marker = staging / COMMIT_MARKER
    with _COMMIT_LOCK:
        if marker.exists():
            _begin_commit(cancelled, force=True)
            result = _marker_result(marker) or result
        else:
            moves = _moves(staging, finals)
            if not prepared.spec.output.overwrite:
                for kind, _ in finals:
                    found = [(f, final) for k, f, _, final in moves if k == kind and os.path.lexists(final)]
                    found = [(f, final) for f, final in found if image.job_of(final) is None]
                    if found:
                        raise _output_exists(found, _LABELS[kind], " (it appeared after the job was submitted)")
            for folder in sorted({os.path.dirname(final) for _, _, _, final in moves}):
                try:
                    os.makedirs(folder or ".", exist_ok=True)
                except OSError as exc:
                    raise PermissionDenied(
                        f"cannot create {folder} to move the frames into: {exc.strerror or exc}",
                        reason="OUTPUT_NOT_WRITABLE",
                        file=folder,
                    ) from exc
            _begin_commit(cancelled)
            _write_marker(marker, job_id, prepared, result)
        _roll_forward(staging, finals)
    return result


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
        finals = _spec_finals(spec)
    except VoidlinkError:
        return None
    if not finals:
        return None
    staging = Path(finals[0][1].directory) / f"{STAGING_PREFIX}{job_id}"
    marker = staging / COMMIT_MARKER
    if staging.is_symlink() or not marker.is_file():
        return None
    result = _marker_result(marker)
    if result is None:
        return None
    with _COMMIT_LOCK:
        _roll_forward(staging, finals)
    return result


def _discard_folder(staging: Optional[Path]) -> bool:
    if staging is None or staging.is_symlink() or not staging.is_dir() or (staging / COMMIT_MARKER).exists():
        return False
    shutil.rmtree(staging)
    return True


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


@dataclass
class _Pending:
    source: image.ImageFrame
    quadmask: np.ndarray  # full frame, before feathering


def run_job(
    prepared: PreparedJob,
    backend: Backend,
    *,
    job_id: str,
    progress: Optional[ProgressSink] = None,
    cancelled: Callable[[], bool] = lambda: False,
    request: Optional[BackendRequest] = None,
    segment: Optional[tuple[int, int]] = None,
    done: Collection[int] = (),
) -> pb.JobResult:
    """Render the job's frames into its staging folder, then move them into place.

    `segment`: (first, last), frames of the job to render and stage, nothing else; the move is
    left to `commit_segments` (or to a later run of the whole job, which finds them staged). A pool
    renders the segments of a long shot side by side this way (only for a backend whose frames
    depend on a bounded `temporal_context`: each segment is fed that many frames beyond its ends).
    `done`: frames rendered already elsewhere (a pool worker without shared storage is told which
    frames the daemon holds): they are neither rendered nor expected in the staging folder.
    """
    progress = progress or NullProgress()
    request = request or BackendRequest(first=prepared.first, last=prepared.last, cancelled=cancelled)
    staging = prepared.staging(job_id)
    started = time.monotonic()
    try:
        if (staging / COMMIT_MARKER).exists():
            if segment is not None:  # the whole job is being moved into place: nothing left to render
                return _result(prepared, backend, request, {}, [], job_id)
            progress.stage("commit", "finishing the renames of an interrupted commit")
            return _commit(prepared, staging, job_id, _result(prepared, backend, request, {}, [], job_id), cancelled)
        staging.mkdir(parents=True, exist_ok=True)
        progress.stage("analyse", "reading the mattes")
        frames = _segment_frames(prepared, segment)
        analysis = _analyse(prepared, backend, cancelled, progress, staging, frames, job_id)
        metrics, notes = _render(
            prepared, backend, request, analysis, staging, progress, cancelled, frames, set(done), job_id
        )
        metrics["seconds"] = time.monotonic() - started
        result = _result(prepared, backend, request, metrics, notes, job_id)
        if segment is None:
            progress.stage("commit", "moving the frames into place")
            result = _commit(prepared, staging, job_id, result, cancelled)
    finally:
        prepared.close()
    return result


def _segment_frames(prepared: PreparedJob, segment: Optional[tuple[int, int]]) -> list[int]:
    if segment is None:
        return list(prepared.frames)
    first, last = segment
    if not prepared.first <= first <= last <= prepared.last:
        raise InvalidInput(
            f"segment {first}-{last} is not inside the job's frames {prepared.first}-{prepared.last}",
            reason="BAD_SEGMENT",
            field="segment",
        )
    return [f for f in prepared.frames if first <= f <= last]


def _render(
    prepared: PreparedJob,
    backend: Backend,
    request: BackendRequest,
    analysis: _Analysis,
    staging: Path,
    progress: ProgressSink,
    cancelled: Callable[[], bool],
    frames: list[int],
    done_elsewhere: set[int],
    job_id: str,
) -> tuple[dict[str, float], list[str]]:
    work = analysis.plan
    transform = colour.ModelTransform(prepared.source_colorspace)
    to_output = None
    if prepared.output_colorspace != prepared.source_colorspace:
        cfg = colour.config()
        to_output = cfg.getProcessor(prepared.source_colorspace, prepared.output_colorspace).getDefaultCPUProcessor()
    total = len(frames)

    def rendered(frame: int) -> bool:
        return frame in done_elsewhere or _output_staged(prepared, staging, frame)

    todo = [f for f in frames if not rendered(f)]
    done = total - len(todo)
    if done:
        progress.log(f"resuming: {done} of {total} frames were already rendered")
    metrics = {
        "frames": float(total),
        "mask_coverage": analysis.coverage,
        "snapped_pixels": float(analysis.snapped),
        "scale": float(work.scale),
        "crop_width": float(work.crop_size[0]),
        "crop_height": float(work.crop_size[1]),
    }
    if not todo:
        return metrics, []
    todo_set = set(todo)
    made_by = provenance(prepared, backend, request, job_id)
    start = max(prepared.first, todo[0] - backend.temporal_context)
    # A segment's last frames need the frames after them as an uninterrupted run has them.
    end = prepared.last if frames[-1] == prepared.last else min(prepared.last, frames[-1] + backend.temporal_context)
    region = "the whole frame" if work.full_frame else f"a {work.crop_size[0]}x{work.crop_size[1]} region"
    progress.stage("render", f"{backend.name}: {len(todo)} frames, {region} at {work.size[0]}x{work.size[1]}")
    # Frames fed and not yet returned, with whether their plate had NaN/Inf pixels. Their pixels are
    # read again for the composite rather than kept: a backend's window (85 frames for VOID) of
    # full-resolution plates would not fit in memory at 4K.
    pending: dict[int, bool] = {}
    nonfinite: list[int] = []
    plate = prepared.source.header
    assert plate is not None

    def load(frame: int) -> tuple[int, image.ImageFrame, np.ndarray]:
        source = prepared.source.read(frame, all_channels=True)
        if (source.spec.width, source.spec.height) != (plate.width, plate.height):
            raise InvalidInput(
                f"spec.source: frame {frame} ({source.path}) is {source.spec.width}x{source.spec.height}, "
                f"frame {prepared.first} is {plate.width}x{plate.height}; a shot must keep one size",
                reason="SIZE_MISMATCH",
                field="spec.source",
                file=source.path,
                frame=frame,
            )
        qm, _ = frame_quadmask(prepared, frame, source.spec)
        return frame, source, qm

    def feed() -> Iterator[BackendFrame]:
        for frame, source, qm in image.read_ahead(range(start, end + 1), load, READ_AHEAD):
            if cancelled():
                raise JobCancelled("cancelled")
            rgb = source.pixels[..., prepared.source.rgb]
            bad = not np.isfinite(rgb).all()
            if bad:
                rgb = np.nan_to_num(rgb, nan=0.0, posinf=0.0, neginf=0.0)
            pending[frame] = bad
            model = transform.to_model(work.to_backend(rgb))
            grown = quadmask.grow_for_feather(qm, prepared.feather)
            yield BackendFrame(frame, np.ascontiguousarray(model, dtype=np.float32), work.quadmask_to_backend(grown))

    results: Iterator[BackendResult] = backend.run(feed(), request)
    for result in results:
        made_by.update(request.provenance)  # the backend's own, known once it has run
        bad = pending.pop(result.index, None)
        if bad is None:
            raise RuntimeError(f"backend {backend.name} returned frame {result.index}, which was not fed")
        for old in [f for f in pending if f < result.index]:
            pending.pop(old)
        if result.index not in todo_set:
            continue
        if cancelled():
            raise JobCancelled("cancelled")
        if bad:
            nonfinite.append(result.index)
        _, source, qm = load(result.index)
        item = _Pending(source, qm)
        out = _composite_frame(prepared, work, transform, item, result)
        if to_output is not None:
            rgb_index = prepared.source.rgb
            converted = np.ascontiguousarray(out[..., rgb_index])
            to_output.applyRGB(converted)
            out[..., rgb_index] = converted
        target = _staged(staging, "output", prepared.output, result.index)
        spec = image.output_spec(
            item.source.spec,
            out.shape[2],
            item.source.channels,
            prepared.pixel_type,
            prepared.compression,
            str(target),
            attributes={f"{image.OWN_PREFIX}{key}": value for key, value in made_by.items()},
        )
        image.write_image(str(target), out, spec)
        if prepared.raw_output is not None:
            raw = np.clip(result.image, 0.0, 1.0)
            image.write_image(
                str(_staged(staging, "raw", prepared.raw_output, result.index)),
                raw,
                pixel_type="uint8",
                attributes={image.JOB_ATTRIBUTE: job_id},
            )
        done += 1
        progress.frame_written(result.index, done, total, _preview(result.image))
    missing = [f for f in frames if not rendered(f)]
    if missing:
        raise VoidlinkError(
            f"backend {backend.name} stopped before frames {sequence.format_frames(missing)}",
            reason="INCOMPLETE",
            frames=missing,
        )
    notes = []
    if nonfinite:
        notes.append(
            f"Frames {sequence.format_frames(nonfinite)} have NaN or infinite pixels; inside the mask they were "
            "treated as black for the fill, outside it they are left exactly as they were."
        )
        progress.log(notes[-1])
    if analysis.empty:
        notes.append(
            f"The mask is empty on frames {sequence.format_frames(analysis.empty)}; they pass through unchanged."
        )
    metrics["nonfinite_frames"] = float(len(nonfinite))
    return metrics, notes


def _composite_frame(
    prepared: PreparedJob, work: ProcessingPlan, transform: colour.ModelTransform, item: _Pending, result: BackendResult
) -> np.ndarray:
    source = item.source
    frame_shape = source.pixels.shape[:2]
    filled = transform.from_model(work.from_backend(np.asarray(result.image, np.float32)))
    filled = composite.paste(work, filled, frame_shape)
    alpha = quadmask.composite_alpha(item.quadmask, prepared.feather)
    changed = None
    if result.changed is not None:
        changed = composite.paste(
            work, work.from_backend(np.asarray(result.changed, np.float32))[..., None], frame_shape
        )[..., 0]
    rgb = prepared.source.rgb
    if len(set(rgb)) == 1:  # a grey plate read as R=G=B: write back one channel
        rgb, filled = rgb[:1], filled.mean(axis=2, keepdims=True)
    return composite.composite(source.pixels, rgb, filled, alpha, changed)


def _preview(model: np.ndarray, width: int = 256) -> np.ndarray:
    import cv2

    h, w = model.shape[:2]
    if w > width:
        model = cv2.resize(model, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    return np.clip(model, 0.0, 1.0)


def commit_segments(
    prepared: PreparedJob,
    job_id: str,
    backend_name: str,
    notes: list[str],
    metrics: dict[str, float],
    cancelled: Callable[[], bool] = lambda: False,
) -> pb.JobResult:
    """Move the frames that segment runs staged into place, and describe the result (a pool's last
    step: no frame is read or rendered). Refuses, naming them, when frames are missing."""
    staging = prepared.staging(job_id)
    if not (staging / COMMIT_MARKER).exists():
        missing = [f for f in prepared.frames if not _output_staged(prepared, staging, f)]
        if missing:
            raise VoidlinkError(
                f"the segments of job {job_id} left frames {sequence.format_frames(missing)} unrendered",
                reason="INCOMPLETE",
                frames=missing,
            )
    result = _describe(prepared, backend_name, list(dict.fromkeys(notes)), metrics, job_id)
    return _commit(prepared, staging, job_id, result, cancelled)


def provenance(prepared: PreparedJob, backend: Backend, request: BackendRequest, job_id: str) -> dict[str, str]:
    """What makes this job's frames, as their headers record it (`voidlink:<key>`): the job and the
    settings every backend shares, then what the backend adds as it runs (`request.provenance`)."""
    made_by = {
        "job": job_id,
        "version": __version__,
        "backend": backend.name,
        "prompt": request.prompt,
        "quality": request.quality,
        "crop_mode": prepared.crop_mode,
    }
    if request.negative_prompt:
        made_by["negative_prompt"] = request.negative_prompt
    made_by.update(request.provenance)
    return made_by


def _recorded_provenance(prepared: PreparedJob, job_id: str) -> dict[str, str]:
    """The provenance the job's first output frame carries (its record of what made the result), staged
    or already in place."""
    staged = _staged(prepared.staging(job_id), "output", prepared.output, prepared.first)
    path = staged if staged.exists() else Path(prepared.output.path(prepared.first))
    try:
        spec = image.read_spec(str(path))
    except VoidlinkError:
        return {}
    if spec.getattribute(image.JOB_ATTRIBUTE) != job_id:
        return {}  # not this job's frame (an earlier result still in place)
    out = {}
    for attr in spec.extra_attribs:
        if attr.name.startswith(image.OWN_PREFIX) and attr.name != image.JOB_ATTRIBUTE:
            out[attr.name[len(image.OWN_PREFIX) :]] = str(attr.value)
    return out


def _result(
    prepared: PreparedJob,
    backend: Backend,
    request: BackendRequest,
    metrics: dict[str, float],
    notes: list[str],
    job_id: str,
) -> pb.JobResult:
    return _describe(prepared, backend.name, [*backend.notes(), *request.notes, *notes], metrics, job_id)


def _describe(
    prepared: PreparedJob, backend_name: str, notes: list[str], metrics: dict[str, float], job_id: str
) -> pb.JobResult:
    rate = prepared.source.media.rate
    made_by = _recorded_provenance(prepared, job_id)
    result = pb.JobResult(
        output_pattern=prepared.output.hashes(),
        frames=pb.FrameRange(first=prepared.first, last=prepared.last),
        otio_json=clip_json(
            prepared.output.hashes(),
            prepared.first,
            prepared.last,
            rate,
            name=os.path.basename(prepared.output.prefix).rstrip("._-"),
            metadata={"voidlink": {"provenance": made_by}} if made_by else None,
        ),
        backend=backend_name,
        notes=notes,
        provenance=made_by,
    )
    if prepared.quadmask_output is not None:
        result.quadmask_pattern = prepared.quadmask_output.hashes()
    if prepared.raw_output is not None:
        result.raw_pattern = prepared.raw_output.hashes()
    for key, value in metrics.items():
        result.metrics[key] = float(value)
    if "seconds" in metrics and metrics["seconds"] > 0:
        result.metrics["frames_per_second"] = metrics.get("frames", 0.0) / metrics["seconds"]
    return result
