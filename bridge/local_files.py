"""The files on this machine that a job names: its clips' frames, and what its result will be written to.

A clip the daemon cannot read is uploaded frame by frame (`bridge.upload`), each frame named by its
content (`hash_frames`); a result streamed back must respect the plates and mattes here and lands
on the paths listed by `local_destinations` (`bridge.download`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Optional

from voidlink.bridge.transfer import TransferPlan, local_pattern
from voidlink.protos import pb
from voidlink.protos.clips import (
    SequencePattern,
    clip_media,
    default_affected_pattern,
    default_side_pattern,
    written_sides,
)
from voidlink.protos.wire import hash_files

from voidlink import errors


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


def _spec_range(spec: pb.JobSpec) -> Optional[tuple[int, int]]:
    return (spec.frames.first, spec.frames.last) if spec.HasField("frames") else None


def local_destinations(spec: pb.JobSpec, sides: dict) -> tuple[set[str], list[tuple[str, int, str]]]:
    """What a streamed-back result must respect here: the real paths of the spec's clip frames on this
    machine (never written over), and (label, frame, path) of each file the result will be written to:
    the output's frames and those of each side sequence the job writes, where the spec names it (`sides`,
    by kind) or where the daemon's default puts it beside the output. Each clip's folder is listed once."""
    sources: set[str] = set()
    source_frames: Optional[list[int]] = None
    for name in ("source", "mask", "affected"):
        if not spec.HasField(name) or not getattr(spec, name).otio_json:
            continue
        try:
            frames = local_frames(getattr(spec, name).otio_json, name, _spec_range(spec))
        except errors.VoidlinkError:  # not (wholly) here: the daemon reads it, nothing of it to guard here
            continue
        sources.update(os.path.realpath(path) for _, path in frames)
        if name == "source":
            source_frames = [frame for frame, _ in frames]
    return sources, _finals(spec, sides, source_frames)


def _finals(spec: pb.JobSpec, sides: dict, source_frames: Optional[list[int]]) -> list[tuple[str, int, str]]:
    span = _spec_range(spec)
    if span is not None:
        frames: Sequence[int] = range(span[0], span[1] + 1)
    elif source_frames is not None:  # the source's own range, as the daemon takes it
        frames = source_frames
    else:
        try:
            media = clip_media(spec.source.otio_json, "spec.source")
        except ValueError:
            return []
        if media.first is None or media.last is None:
            return []
        frames = range(media.first, media.last + 1)
    output = local_pattern(spec.output.path_template)
    if output is None:
        return []  # refused by name where the template is checked
    patterns = {"output": output}
    for kind in written_sides(spec):
        if sides.get(kind):
            pattern = local_pattern(sides[kind])
        else:
            pattern = default_affected_pattern(output) if kind == "affected" else default_side_pattern(output, kind)
        if pattern is not None:
            patterns[kind] = pattern
    return [(f"{kind} here", frame, pattern.path(frame)) for kind, pattern in patterns.items() for frame in frames]


def clip_frames(spec: pb.JobSpec, plan: TransferPlan) -> dict[str, list]:
    """The (frame, file) pairs of each `plan.upload` clip, in the spec's range or the clip's own."""
    span = _spec_range(spec)
    return {name: local_frames(getattr(spec, name).otio_json, f"spec.{name}", span) for name in plan.upload}


def name_frames(
    spec: pb.JobSpec, plan: TransferPlan, clips: dict[str, list], refs: Sequence
) -> tuple[pb.JobSpec, list]:
    """A copy of `spec` whose uploaded clips name their frames by `refs` (one per file of `clips`, in
    order), and the (path, FrameRef) pairs to upload."""
    out = pb.JobSpec()
    out.CopyFrom(spec)
    named = iter(refs)
    files: list = []
    for name, frames in clips.items():
        clip = getattr(out, name)
        del clip.uploaded_frames[:]
        for frame, path in frames:
            made = next(named)
            ref = clip.uploaded_frames.add(sha256=made.sha256, size=made.size, frame=frame)
            files.append((path, ref))
    if plan.stream_back:
        out.output.stream_back = True
    return out, files


def hash_frames(spec: pb.JobSpec, plan: TransferPlan) -> tuple[pb.JobSpec, list]:
    """A copy of `spec` whose `plan.upload` clips name their frames by content, and the (path, FrameRef)
    pairs to upload."""
    clips = clip_frames(spec, plan)
    paths = [path for frames in clips.values() for _, path in frames]
    refs = [pb.FrameRef(sha256=sha, size=os.path.getsize(path)) for path, sha in zip(paths, hash_files(paths))]
    return name_frames(spec, plan, clips, refs)
