"""Checks a job form runs before it submits, worded as the daemon words them.

The daemon is the authority (it may see other disks than the panel does, and it checks more, such
as image sizes and colour spaces); these checks catch on the spot what a user most often gets
wrong, with the same field names and the same messages the daemon would send back a moment later.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Optional

from voidlink.bridge.spec import default_output
from voidlink.protos import pb
from voidlink.protos.clips import SequencePattern, clip_media

from voidlink.errors import InvalidInput, PermissionDenied, VoidlinkError

# Which form field each part of a spec comes from, for pointing at the widget to fix.
FORM_FIELDS = {
    "spec.source": "plate",
    "spec.mask": "mask",
    "spec.affected": "affected",
    "spec.frames": "frames",
    "spec.output": "output",
    "spec.params.backend": "backend",
    "spec.params.prompt": "prompt",
}


# What the user sees each form field called (the form's own labels).
FIELD_LABELS = {
    "plate": "Plate",
    "mask": "Object matte",
    "affected": "Affected matte",
    "frames": "Frames",
    "output": "Output",
    "backend": "Backend",
    "prompt": "Prompt",
}


def user_message(error: VoidlinkError) -> str:
    """The error worded with the form's labels: "spec.source.otio_json: no clip" reads "Plate: no clip"."""
    text = str(error)
    name = form_field(error.field or "")
    head, sep, rest = text.partition(": ")
    if sep and head.startswith("spec.") and (name or form_field(head)):
        return f"{FIELD_LABELS[name or form_field(head)]}: {rest}"
    if name:  # a message that names no field ("void: no CUDA device …"): say which one it is about
        return f"{FIELD_LABELS[name]}: {text}"
    return text


def versioned_output(plate: str, taken: Iterable[str] = ()) -> str:
    """`<plate folder>/void/<stem>_void_v001.####.exr` at the first version with no file on disk (a frame, a
    staging folder's frame) and not in `taken` (outputs of jobs queued but not written yet)."""
    base = default_output(plate)  # <folder>/void/<stem>_void.####.exr
    folder, name = os.path.split(base)
    stem = name[: -len(".####.exr")]
    try:
        present = os.listdir(folder)
    except OSError:
        present = []
    claimed = {os.path.normpath(t) for t in taken}
    version = 1
    while True:
        head = f"{stem}_v{version:03d}."
        template = os.path.join(folder, f"{head}####.exr")
        if os.path.normpath(template) not in claimed and not any(n.startswith(head) for n in present):
            return template
        version += 1


def existing_frames(template: str, first: int, last: int) -> list[str]:
    """Files of the frames first..last already at an output template (what a submit would replace)."""
    pattern = SequencePattern.parse(template)
    if pattern is None:
        return [template] if os.path.exists(template) else []
    pattern = pattern if pattern.padding else pattern.with_padding(4)
    return [pattern.path(f) for f in range(first, last + 1) if os.path.exists(pattern.path(f))]


def form_field(spec_field: str) -> str:
    """The form field a daemon error's `field` points at ("spec.mask.otio_json" → "mask")."""
    for prefix, name in FORM_FIELDS.items():
        if spec_field.startswith(prefix):
            return name
    return ""


def _frames_of(clip: pb.ClipSpec, field_name: str):
    from voidlink.media import sequence

    try:
        media = clip_media(clip.otio_json, field_name + ".otio_json")
    except ValueError as error:
        raise InvalidInput(str(error), reason="BAD_CLIP", field=field_name + ".otio_json") from error
    return sequence.discover(media, field_name)


def validate_spec(spec: pb.JobSpec) -> Optional[VoidlinkError]:
    """The first problem the daemon would refuse this spec for, as the daemon's error; None when none is seen."""
    try:
        _validate(spec)
    except VoidlinkError as error:
        return error
    return None


def _validate(spec: pb.JobSpec) -> None:
    source = _frames_of(spec.source, "spec.source")
    if not spec.mask.otio_json.strip():
        raise InvalidInput(
            "spec.mask: a mask clip is required (object matte or quadmask)", reason="NO_MASK", field="spec.mask"
        )
    clips = [("spec.source", source), ("spec.mask", _frames_of(spec.mask, "spec.mask"))]
    if spec.affected.otio_json.strip():
        clips.append(("spec.affected", _frames_of(spec.affected, "spec.affected")))
    first, last = int(spec.frames.first), int(spec.frames.last)
    if last < first:
        raise InvalidInput(f"spec.frames: the range {first}-{last} is empty", reason="EMPTY_RANGE", field="spec.frames")
    from voidlink.media import sequence

    for name, clip in clips:
        sequence.check_frames(clip, first, last, name)

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
    output = output if output.padding else output.with_padding(4)
    sources = {os.path.realpath(clip.file_for(f)) for _, clip in clips for f in range(first, last + 1)}
    for frame in range(first, last + 1):
        if os.path.realpath(output.path(frame)) in sources:
            raise PermissionDenied(
                f"spec.output.path_template: {output.path(frame)} is a source file of this job; "
                "sources are never written",
                reason="OUTPUT_OVERWRITES_SOURCE",
                field="spec.output.path_template",
                file=output.path(frame),
                frame=frame,
            )
