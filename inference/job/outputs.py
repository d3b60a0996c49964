"""Where one job's files go: its final sequence patterns by kind (output, quadmask, raw; a matte job's
output, affected and quadmask), the name
of its staging folder, and the refusal to write over files voidlink did not write.

Read from the spec alone (no disk) where the job need not be prepared: a job cancelled in the
queue, or one whose commit a crash interrupted, still knows where its files are.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Union

from voidlink.media import image, sequence
from voidlink.protos import pb
from voidlink.protos.clips import (
    SequencePattern,
    default_affected_pattern,
    default_side_pattern,
    side_templates,
    written_sides,
)

from voidlink.errors import InvalidInput, OutputExists

STAGING_PREFIX = ".voidlink-"
COMMIT_MARKER = "commit.json"  # in a staging folder: its move into place has begun (see `staging.commit`)

# The spec field each kind of final file comes from, for naming it in a refusal.
LABELS = {
    "output": "spec.output.path_template",
    "quadmask": "spec.output.quadmask_template",
    "raw": "spec.output.raw_template",
    "affected": "spec.matte.affected_template",
}

Finals = list[tuple[str, SequencePattern]]  # (kind, pattern) of every kind of file the job writes


def staging_folder(directory: Union[str, Path], job_id: str) -> Path:
    """The job's staging folder beside its output: `.voidlink-<job id>/`."""
    return Path(directory) / f"{STAGING_PREFIX}{job_id}"


class StagedOutput:
    """What every prepared job (a removal's, a matte job's) derives from its `output`, `first` and `last`: its
    frames and the folder its files are staged in before they are renamed into place."""

    output: SequencePattern
    first: int
    last: int

    @property
    def frames(self) -> range:
        return range(self.first, self.last + 1)

    @property
    def output_dir(self) -> Path:
        return Path(self.output.directory)

    def staging(self, job_id: str) -> Path:
        """The job's staging folder (whether or not it exists)."""
        return staging_folder(self.output_dir, job_id)

    def check_confined(self) -> None:
        """The daemon's confinement to its roots (the `guard` the job was prepared with, if any) checked
        again: a folder the job writes into that was swapped for a link since it was prepared (it may have
        waited in the queue) is refused before anything is staged there, and again before the commit."""
        guard = getattr(self, "guard", None)
        if guard is not None:
            guard.check(self)


def side_pattern(output: SequencePattern, template: str, kind: str, suffix: str) -> SequencePattern:
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
    return default_side_pattern(output, kind, suffix)


def affected_pattern(output: SequencePattern, template: str) -> SequencePattern:
    """Where a matte job's affected proposal goes: its template, else beside the matte as
    `<matte stem>_affected.####<matte's extension>`."""
    if template:
        pattern = SequencePattern.parse(template)
        if pattern is None:
            raise InvalidInput(
                f"{LABELS['affected']}: '{template}' has no frame number (use ####, %04d or @)",
                reason="BAD_PATTERN",
                field=LABELS["affected"],
            )
        return pattern if pattern.padding else pattern.with_padding(4)
    return default_affected_pattern(output)


def side_patterns(spec: pb.JobSpec, output: SequencePattern) -> Iterator[tuple[str, SequencePattern]]:
    """The side patterns the job asks for: a matte job's affected proposal, then the quadmask and raw
    patterns (none, one or both), quadmask first; each parsed as it is reached, so a caller checking
    each in turn refuses in the order the spec reads."""
    named = side_templates(spec)
    for kind in written_sides(spec):
        if kind == "affected":
            yield kind, affected_pattern(output, named.get(kind, ""))
        else:
            yield kind, side_pattern(output, named.get(kind, ""), kind, ".png")


def spec_finals(spec: pb.JobSpec) -> Finals:
    """The job's final patterns by kind, from its spec alone (what prepare_job makes of it, no disk);
    empty when its output template has no frame number (such a job was never accepted)."""
    output = SequencePattern.parse(spec.output.path_template)
    if output is None:
        return []
    output = output if output.padding else output.with_padding(4)
    return [("output", output), *side_patterns(spec, output)]


def foreign_files(pattern: SequencePattern, frames: Collection[int]) -> list[tuple[int, str]]:
    """(frame, path) of the files at this pattern's paths that voidlink did not write, in frame order.

    One listing of the folder, then a header read for each file of the job's frames that is there:
    the cost is the files on disk, nothing for a new output."""
    try:
        names = set(os.listdir(pattern.directory))
    except OSError:  # no folder yet (or none to list: prepare's writable check names that)
        return []
    found = []
    for frame in frames:
        path = pattern.path(frame)
        if os.path.basename(path) in names and image.job_of(path) is None:
            found.append((frame, path))
    return found


def output_exists(found: list[tuple[int, str]], label: str, when: str = "") -> OutputExists:
    """The refusal for files voidlink did not write at the job's final names (`found`, in frame order)."""
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
