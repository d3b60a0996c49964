"""The job checked against the disk before any work: `prepare_job` makes the PreparedJob every
later step is handed.

Cheap (clip parsing, directory listings and file headers, no pixels), so it runs when a job is
submitted and bad input is refused before it is queued; the daemon keeps what it made for the run.
Each check is a small named function below, in the order a refusal is looked for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import OpenImageIO as oiio
from voidlink.inference.job.clips import Clip, resolve_clip
from voidlink.inference.job.outputs import (
    LABELS,
    Finals,
    StagedOutput,
    foreign_files,
    output_exists,
    side_patterns,
)
from voidlink.media import colour, image, sequence
from voidlink.protos import pb, vocabulary
from voidlink.protos.clips import SequencePattern

from voidlink.errors import InvalidInput, PermissionDenied


@dataclass
class PreparedJob(StagedOutput):
    """A job checked against the disk: its clips found, its frames, where and how it writes."""

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
    layers: bool = False  # the change as extra channels in the output EXR
    notes: list[str] = field(default_factory=list)
    guard: Optional[Confinement] = None  # the confinement it was prepared under, checked again where it writes

    def finals(self) -> Finals:
        """(kind, pattern) of every kind of file the job writes: output, then quadmask and raw if asked."""
        kinds = (("output", self.output), ("quadmask", self.quadmask_output), ("raw", self.raw_output))
        return [(kind, pattern) for kind, pattern in kinds if pattern is not None]

    def close(self) -> None:
        for clip in (self.source, self.mask, self.affected):
            if clip is not None:
                clip.close()


@dataclass(frozen=True)
class Confinement:
    """What a daemon confined to roots hands prepare_job: `check` sees every prepared job (every frame
    file, every output folder) and raises PermissionDenied for a path outside; `opened` checks each file
    again as it is opened to be read (see `media.image.open_checked`)."""

    check: Callable[[PreparedJob], None]
    opened: image.OpenedGuard


def prepare_job(spec: pb.JobSpec, *, guard: Optional[Confinement] = None) -> PreparedJob:
    """Validate a job against the disk without reading pixels; raises a VoidlinkError naming the problem.

    `guard`: the daemon's confinement to its roots (None: not confined)."""
    source, mask, affected = _resolve_clips(spec, guard.opened if guard is not None else None)
    first, last = _job_frames(spec, source)
    clips = [clip for clip in (source, mask, affected) if clip is not None]
    for clip in clips:
        sequence.check_frames(clip.media, first, last, clip.field)
    _read_headers(source, [mask, affected], first, resample=spec.params.resample_mattes)
    source_colorspace, output_colorspace = _colorspaces(spec, source)

    template = spec.output.path_template
    output = _output_pattern(template, first)
    _check_not_a_source(output, clips, first, last, LABELS["output"])
    _check_writable(Path(output.directory), LABELS["output"])
    sides = {}
    for kind, pattern in side_patterns(spec, output):
        _check_not_a_source(pattern, clips, first, last, LABELS[kind])
        sides[kind] = pattern
    check_apart({"output": output, **sides}, first, last)

    pixel_type = vocabulary.PIXEL_TYPE.word(spec.output.pixel_type, "spec.output.pixel_type")
    if pixel_type == "uint8":
        raise InvalidInput(
            "spec.output.pixel_type: 8-bit is for mattes; a removal writes the plate's own type, half or float",
            reason="BAD_VALUE",
            field="spec.output.pixel_type",
        )
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
        quadmask_output=sides.get("quadmask"),
        raw_output=sides.get("raw"),
        layers=_layers(spec, template),
    )
    if guard is not None:
        guard.check(prepared)
        prepared.guard = guard
    if not spec.output.overwrite:
        _check_not_foreign(prepared)
    return prepared


# -- the checks, in the order prepare_job makes them ---------------------------------------------


def _resolve_clips(
    spec: pb.JobSpec, confine: Optional[image.OpenedGuard]
) -> tuple[Clip, Clip, Optional[Clip]]:
    """The plate, the mask (required) and the optional affected matte, found on disk."""
    source = resolve_clip(spec.source, "spec.source", matte=False, confine=confine)
    if not spec.mask.otio_json.strip():
        raise InvalidInput(
            "spec.mask: a mask clip is required (object matte or quadmask)", reason="NO_MASK", field="spec.mask"
        )
    mask = resolve_clip(spec.mask, "spec.mask", matte=True, confine=confine)
    affected = None
    if spec.affected.otio_json.strip():
        affected = resolve_clip(spec.affected, "spec.affected", matte=True, confine=confine)
    return source, mask, affected


def _job_frames(spec: pb.JobSpec, source: Clip) -> tuple[int, int]:
    """The frames to render: the spec's range, else the plate clip's own, else all of its media."""
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
    sequence.check_range(first, last, "spec.frames")
    return first, last


def _read_headers(source: Clip, mattes: list[Optional[Clip]], first: int, resample: bool) -> None:
    """Each clip's first header (the plate's colour channels picked), a matte's size checked against the plate's."""
    source.header = source.read_header(first)
    if source.media.kind != "movie":
        rgb, _ = image.select_channels(
            source.header,
            source.channels or "rgb",
            matte=False,
            field="spec.source",
            path=source.media.file_for(first),
            frame=first,
        )
        source.rgb = rgb[:3]
    for clip in mattes:
        if clip is not None:
            clip.header = clip.read_header(first)
            _check_matte_size(source, clip, first, resample)


def _check_matte_size(source: Clip, clip: Clip, first: int, resample: bool) -> None:
    src, other = source.header, clip.header
    assert src is not None and other is not None
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


def _colorspaces(spec: pb.JobSpec, source: Clip) -> tuple[str, str]:
    """(the plate's colour space, the output's): the spec's words, else the file's, else the config's."""
    assert source.header is not None
    source_colorspace = colour.resolve_colorspace(
        spec.source.colorspace, source.header.getattribute("oiio:ColorSpace") or "", "spec.source.colorspace"
    )
    if not spec.output.colorspace:
        return source_colorspace, source_colorspace
    return source_colorspace, colour.resolve_colorspace(spec.output.colorspace, "", "spec.output.colorspace")


def _output_pattern(template: str, first: int) -> SequencePattern:
    """The output template as a pattern: numbered, absolute, in a format there is a writer for."""
    label = LABELS["output"]
    output = SequencePattern.parse(template) if template else None
    if output is None:
        raise InvalidInput(
            f"{label}: '{template}' has no frame number (use ####, %04d or @)", reason="BAD_PATTERN", field=label
        )
    if not os.path.isabs(template):
        raise InvalidInput(
            f"{label}: '{template}' is relative; the daemon needs an absolute path", reason="BAD_PATTERN", field=label
        )
    if not output.padding:
        output = output.with_padding(4)
    if oiio.ImageOutput.create(output.path(first)) is None:
        raise InvalidInput(
            f"{label}: no image writer for '{os.path.splitext(template)[1]}' files",
            reason="BAD_OUTPUT_FORMAT",
            field=label,
        )
    return output


def _check_not_a_source(pattern: SequencePattern, clips: list[Clip], first: int, last: int, label: str) -> None:
    """Sources are never written: no path of `pattern` may be (the real path of) a frame the job reads."""
    sources = {os.path.realpath(clip.media.file_for(frame)) for clip in clips for frame in range(first, last + 1)}
    for frame in range(first, last + 1):
        if os.path.realpath(pattern.path(frame)) in sources:
            raise PermissionDenied(
                f"{label}: {pattern.path(frame)} is a source file of this job; sources are never written",
                reason="OUTPUT_OVERWRITES_SOURCE",
                field=label,
                file=pattern.path(frame),
                frame=frame,
            )


def check_apart(patterns: dict[str, SequencePattern], first: int, last: int) -> None:
    """No two kinds of file the job writes (output, quadmask, raw, a matte's affected) name one file: the
    second renamed into place would replace the first, and the job would end with one kind of frame.
    Each folder's real path is found once; names are compared only between patterns in one folder."""
    placed = []
    for kind, pattern in patterns.items():
        folder = os.path.normcase(os.path.realpath(pattern.directory or "."))
        for other, other_folder, other_pattern in placed:
            if other_folder != folder:
                continue
            for frame in range(first, last + 1):
                name = os.path.normcase(os.path.basename(pattern.path(frame)))
                if name == os.path.normcase(os.path.basename(other_pattern.path(frame))):
                    raise InvalidInput(
                        f"{LABELS[kind]}: {pattern.path(frame)} is also the job's {other} ({LABELS[other]}); "
                        "give each kind of file a name of its own",
                        reason="OUTPUTS_COLLIDE",
                        field=LABELS[kind],
                        file=pattern.path(frame),
                        frame=frame,
                    )
        placed.append((kind, folder, pattern))


def _check_writable(folder: Path, label: str) -> None:
    """The output folder, or the nearest folder above it that exists, can be written into."""
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


def _layers(spec: pb.JobSpec, template: str) -> bool:
    """Whether the job writes the change as layers; only an EXR holds named extra channels."""
    if not spec.output.write_layers:
        return False
    if not template.lower().endswith(".exr"):
        raise InvalidInput(
            f"spec.output: layers are written into an EXR output, and {template} is not one: "
            "write the result as .exr or leave layers off",
            reason="BAD_VALUE",
            field="spec.output.write_layers",
        )
    return True


def _default_pixel_type(spec: Optional[oiio.ImageSpec], output_path: str) -> str:
    """`auto`: the plate's own type where the output format holds it; EXR gets half or float."""
    assert spec is not None
    fmt = str(spec.format)
    if not output_path.lower().endswith(".exr"):
        return fmt if fmt in ("uint8", "uint16", "half", "float") else "float"
    if fmt in ("half", "float"):
        return fmt
    return "half" if fmt == "uint8" else "float"


def _crop_mode(spec: pb.JobSpec) -> str:
    mode = vocabulary.CROP_MODE.word(spec.params.crop_mode, "spec.params.crop_mode")
    # One box per temporal window needs the backend's window plan; until a windowed backend asks for it,
    # the shot-wide box is used (it contains every window's box).
    return "shot" if mode == "window" else mode


def _check_not_foreign(prepared: PreparedJob) -> None:
    """voidlink never writes over files it did not write (unless the job says overwrite)."""
    for kind, pattern in prepared.finals():
        found = foreign_files(pattern, prepared.frames)
        if found:
            raise output_exists(found, LABELS[kind])
