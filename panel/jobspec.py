"""A filled-in job form as the JobSpec it submits: the form's own checks, where its roto mattes go, its name.

Plain values in, a spec out, no widgets: a host, a test or the form itself turns `FormValues` into the job the
daemon gets, and the roto a job was drawn with is written beside its output, one folder per output.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

from voidlink.bridge.spec import build_spec
from voidlink.protos import pb

from voidlink import errors

from . import roto


@dataclass
class FormValues:
    """The form's content as plain values (what a host pre-fills and what a test reads back)."""

    plate: str = ""
    mask: str = ""
    affected: str = ""
    first: Optional[int] = None  # None: the plate's first frame (1001 without a plate to read)
    last: Optional[int] = None
    prompt: str = ""
    backend: str = "auto"
    quality: str = "balanced"
    output: str = ""
    use_roto: bool = False
    layers: bool = False  # the change as layers in the output EXR (void.delta, void.change, void.quadmask)
    name: str = ""
    labels: dict = field(default_factory=dict)


def job_name(values: FormValues, output: str) -> str:
    """A name that tells jobs apart: the output's versioned stem and the range (`plate_void_v002 1001-1096`)."""
    if values.name:
        return values.name
    stem = os.path.basename(output).split(".")[0] or os.path.basename(values.plate)
    return f"{stem} {values.first}-{values.last}"


def roto_patterns(output: str) -> tuple[str, str]:
    """Where the roto mattes of a job are written: `roto/<output's name>/` beside the output, one folder per
    output, so a second version's mattes never replace those a queued first version is still to read."""
    output = os.path.abspath(output)
    folder = os.path.join(os.path.dirname(output), "roto", os.path.basename(output).split(".")[0] or "shot")
    return os.path.join(folder, "object.####.exr"), os.path.join(folder, "affected.####.exr")


def roto_file(output: str) -> Optional[str]:
    """The job's roto.json, beside its roto mattes; None while the job has no output location."""
    if not output:
        return None
    return os.path.join(os.path.dirname(roto_patterns(output)[0]), "roto.json")


def check_fields(values: FormValues, document: Optional[roto.RotoDocument]) -> None:
    """What the form can tell before building anything: a plate, an object (matte or drawn), a range."""
    if not values.plate:
        raise errors.InvalidInput("spec.source.otio_json: no clip given", reason="BAD_CLIP", field="spec.source")
    if values.use_roto:
        if document is None or not document.of_role("object"):
            raise errors.InvalidInput(
                "spec.mask: draw the object in the viewer's roto mode first (no object shape yet)",
                reason="NO_MASK",
                field="spec.mask",
            )
    elif not values.mask:
        raise errors.InvalidInput(
            "spec.mask: a mask clip is required (object matte or quadmask)", reason="NO_MASK", field="spec.mask"
        )
    if values.last < values.first:
        raise errors.InvalidInput(
            f"spec.frames: the range {values.first}-{values.last} is empty", reason="EMPTY_RANGE", field="spec.frames"
        )


def build_form_spec(
    values: FormValues, output: str, document: Optional[roto.RotoDocument] = None, write_roto: bool = True
) -> pb.JobSpec:
    """The JobSpec of the form's values with `output` (the typed or versioned one); a job drawn in roto writes its
    mattes and roto.json first (unless `write_roto` is false, for checks)."""
    check_fields(values, document)
    mask, affected = values.mask, values.affected or None
    if values.use_roto:
        assert document is not None
        object_pattern, affected_pattern = roto_patterns(output)
        mask = object_pattern
        affected = affected_pattern if document.of_role("affected") else None
        if write_roto:
            saved = roto_file(output)
            roto.write_mattes(document, "object", object_pattern, values.first, values.last, saved)
            if affected:
                roto.write_mattes(document, "affected", affected_pattern, values.first, values.last, saved)
    spec = build_spec(
        values.plate,
        mask,
        affected,
        (values.first, values.last),
        values.prompt,
        output,
        values.backend,
        quality=values.quality,
        name=job_name(values, output),
        layers=values.layers,
    )
    for key, value in values.labels.items():
        spec.labels[key] = str(value)
    return spec
