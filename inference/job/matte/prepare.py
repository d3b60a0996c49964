"""A matte job checked against the disk before any work: `prepare_matte` makes the PreparedMatte every
later step is handed (the plate found, its frames and size, every prompt inside both, where and how the
mattes are written, nothing there that voidlink did not write).

Cheap (clip parsing, directory listings and one header, no pixels), so it runs when the job is
submitted and a bad prompt is refused, naming it, before the job is queued.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from voidlink.inference.backends.matte.base import Prompt
from voidlink.inference.job.clips import Clip, resolve_clip
from voidlink.inference.job.outputs import LABELS, Finals, StagedOutput, side_patterns
from voidlink.inference.job.prepare import (
    Confinement,
    _check_not_a_source,
    _check_not_foreign,
    _check_writable,
    _colorspaces,
    _job_frames,
    _output_pattern,
    check_apart,
)
from voidlink.media import image, sequence
from voidlink.protos import pb, vocabulary
from voidlink.protos.clips import SequencePattern

from voidlink.errors import InvalidInput

PROMPTS = "spec.matte.prompts"
# Half and float need a format that holds them; 8-bit goes into any (an EXR keeps it as half, on 8-bit levels).
DEEP_FORMATS = (".exr",)


@dataclass
class PreparedMatte(StagedOutput):
    """A matte job checked against the disk: its plate, its frames and size, where its mattes go."""

    spec: pb.JobSpec
    first: int
    last: int
    source: Clip
    size: tuple[int, int]  # (width, height) of the plate's data window: the prompts' pixels
    output: SequencePattern
    pixel_type: str  # "uint8" | "half" | "float"
    compression: str
    source_colorspace: str
    affected_output: Optional[SequencePattern] = None
    quadmask_output: Optional[SequencePattern] = None
    notes: list[str] = field(default_factory=list)
    guard: Optional[Confinement] = None  # the confinement it was prepared under, checked again where it writes
    # What the daemon's confinement and the removal's steps look for on a prepared job: a matte job has none.
    mask: None = None
    affected: None = None
    raw_output: None = None

    def finals(self) -> Finals:
        """(kind, pattern) of every kind of file the job writes: the matte, then the affected and quadmask if asked."""
        kinds = (("output", self.output), ("affected", self.affected_output), ("quadmask", self.quadmask_output))
        return [(kind, pattern) for kind, pattern in kinds if pattern is not None]

    def prompts(self) -> list[Prompt]:
        """The spec's prompts as a tracker takes them, in frame order; an outline filled into a shape."""
        return [to_prompt(p, self.size) for p in sorted(self.spec.matte.prompts, key=lambda p: p.frame)]

    def close(self) -> None:
        self.source.close()


def prepare_matte(spec: pb.JobSpec, *, guard: Optional[Confinement] = None) -> PreparedMatte:
    """Validate a matte job against the disk without reading pixels; raises a VoidlinkError naming the problem."""
    confine = guard.opened if guard is not None else None
    if not spec.source.otio_json.strip():
        raise InvalidInput(
            "spec.source: a matte job needs the plate to track the object on", reason="NO_SOURCE", field="spec.source"
        )
    _refuse_removal_fields(spec)
    source = resolve_clip(spec.source, "spec.source", matte=False, confine=confine)
    first, last = _job_frames(spec, source)
    sequence.check_frames(source.media, first, last, source.field)
    source.header = source.read_header(first)
    if source.media.kind != "movie":
        rgb, _ = image.select_channels(
            source.header, source.channels or "rgb", matte=False, field="spec.source",
            path=source.media.file_for(first), frame=first,
        )  # fmt: skip
        source.rgb = rgb[:3]
    size = (int(source.header.width), int(source.header.height))
    check_prompts(spec.matte, first, last, size)
    source_colorspace, _ = _colorspaces(spec, source)

    template = spec.output.path_template
    output = _output_pattern(template, first)
    pixel_type = _pixel_type(spec, template)
    _check_not_a_source(output, [source], first, last, LABELS["output"])
    _check_writable(Path(output.directory), LABELS["output"])
    sides = {}
    for kind, pattern in side_patterns(spec, output):
        _check_not_a_source(pattern, [source], first, last, LABELS[kind])
        _check_writable(Path(pattern.directory), LABELS[kind])
        sides[kind] = pattern
    check_apart({"output": output, **sides}, first, last)
    prepared = PreparedMatte(
        spec=spec,
        first=first,
        last=last,
        source=source,
        size=size,
        output=output,
        pixel_type=pixel_type,
        compression=vocabulary.COMPRESSION.word(spec.output.compression, "spec.output.compression"),
        source_colorspace=source_colorspace,
        affected_output=sides.get("affected"),
        quadmask_output=sides.get("quadmask"),
    )
    if guard is not None:
        guard.check(prepared)
        prepared.guard = guard
    if not spec.output.overwrite:
        _check_not_foreign(prepared)  # type: ignore[arg-type]  # it reads only finals() and frames
    return prepared


def _refuse_removal_fields(spec: pb.JobSpec) -> None:
    """What only a removal does, asked of a matte job: refused rather than silently dropped."""
    for name, asked in (("write_raw", spec.output.write_raw), ("write_layers", spec.output.write_layers)):
        if asked:
            raise InvalidInput(
                f"spec.output.{name}: a matte job writes mattes, not a removal's {name[6:]}; leave it off",
                reason="BAD_VALUE",
                field=f"spec.output.{name}",
            )
    for name in ("mask", "affected"):
        if getattr(spec, name).otio_json.strip():
            raise InvalidInput(
                f"spec.{name}: a matte job reads only its plate and prompts (give a drawn shape as an outline prompt)",
                reason="BAD_VALUE",
                field=f"spec.{name}",
            )


def _pixel_type(spec: pb.JobSpec, template: str) -> str:
    """8-bit by default; half and float only where the format holds them."""
    word = vocabulary.PIXEL_TYPE.word(spec.output.pixel_type, "spec.output.pixel_type")
    word = "uint8" if word == "auto" else word
    if word != "uint8" and not template.lower().endswith(DEEP_FORMATS):
        raise InvalidInput(
            f"spec.output.pixel_type: a {word} matte is written as EXR, and {template} is not one: "
            "write the matte as .exr or ask for 8-bit",
            reason="BAD_VALUE",
            field="spec.output.pixel_type",
        )
    return word


def check_prompts(matte: pb.MatteParams, first: int, last: int, size: tuple[int, int]) -> None:
    """Every prompt on a frame of the job with something on it, every coordinate inside the plate, naming
    the prompt's frame and field (`spec.matte.prompts[2].points[0]`)."""
    if not matte.prompts:
        raise InvalidInput(
            f"{PROMPTS}: a matte job needs a prompt: a point, a box or an outline on one frame at least",
            reason="NO_PROMPT",
            field=PROMPTS,
        )
    for index, prompt in enumerate(matte.prompts):
        where = f"{PROMPTS}[{index}]"
        frame = int(prompt.frame)
        if not first <= frame <= last:
            raise InvalidInput(
                f"{where}.frame: frame {frame} is outside the job's frames {first}-{last}",
                reason="PROMPT_OUTSIDE_RANGE",
                field=f"{where}.frame",
                frame=frame,
            )
        if not (prompt.points or prompt.boxes or prompt.outline):
            raise InvalidInput(
                f"{where}: the prompt on frame {frame} has no point, box or outline",
                reason="EMPTY_PROMPT",
                field=where,
                frame=frame,
            )
        if prompt.outline and len(prompt.outline) < 3:
            raise InvalidInput(
                f"{where}.outline: the outline on frame {frame} has {len(prompt.outline)} points; a shape needs 3",
                reason="BAD_VALUE",
                field=f"{where}.outline",
                frame=frame,
            )
        for name, values in (("points", prompt.points), ("outline", prompt.outline)):
            for i, point in enumerate(values):
                _inside(point.x, point.y, f"{where}.{name}[{i}]", frame, size)
        for i, box in enumerate(prompt.boxes):
            field_name = f"{where}.boxes[{i}]"
            _inside(box.x0, box.y0, field_name, frame, size)
            _inside(box.x1, box.y1, field_name, frame, size)
            if box.x1 <= box.x0 or box.y1 <= box.y0:
                raise InvalidInput(
                    f"{field_name}: the box {box.x0:g},{box.y0:g} - {box.x1:g},{box.y1:g} on frame {frame} is empty "
                    "(x1 > x0 and y1 > y0)",
                    reason="BAD_VALUE",
                    field=field_name,
                    frame=frame,
                )


def _inside(x: float, y: float, field_name: str, frame: int, size: tuple[int, int]) -> None:
    width, height = size
    if not (math.isfinite(x) and math.isfinite(y) and 0.0 <= x <= width and 0.0 <= y <= height):
        raise InvalidInput(
            f"{field_name}: {x:g},{y:g} on frame {frame} is outside the plate (0,0 - {width},{height}, "
            "x right and y down from the top-left corner)",
            reason="PROMPT_OUTSIDE_PLATE",
            field=field_name,
            frame=frame,
        )


def to_prompt(prompt: pb.MattePrompt, size: tuple[int, int]) -> Prompt:
    """One spec prompt as a tracker's `Prompt`: its outline filled at the plate's size."""
    shape = None
    if prompt.outline:
        xs = np.array([p.x for p in prompt.outline], np.float64)
        ys = np.array([p.y for p in prompt.outline], np.float64)
        shape = fill_outline(xs, ys, size)
    return Prompt(
        frame=int(prompt.frame),
        points=tuple((float(p.x), float(p.y), not p.negative) for p in prompt.points),
        boxes=tuple((float(b.x0), float(b.y0), float(b.x1), float(b.y1)) for b in prompt.boxes),
        shape=shape,
    )


def fill_outline(xs: np.ndarray, ys: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The closed polygon filled (even-odd): a pixel is in when its centre is, so a square drawn from 20 to 40
    covers exactly 20 x 20 pixels (OpenCV's fill also takes the pixels its edges cross, one more each way)."""
    width, height = size
    out = np.zeros((height, width), bool)
    x0, y0, x1, y1 = xs, ys, np.roll(xs, -1), np.roll(ys, -1)
    top = max(0, int(math.floor(ys.min() - 0.5)))
    bottom = min(height - 1, int(math.ceil(ys.max())))
    for row in range(top, bottom + 1):
        centre = row + 0.5
        crossing = (y0 <= centre) != (y1 <= centre)  # half-open: a vertex on the line counts once
        if not crossing.any():
            continue
        a, b, c, d = x0[crossing], y0[crossing], x1[crossing], y1[crossing]
        hits = np.sort(a + (centre - b) * (c - a) / (d - b))
        for left, right in zip(hits[0::2], hits[1::2]):
            start, end = max(0, math.ceil(left - 0.5)), min(width, math.ceil(right - 0.5))
            if end > start:
                out[row, start:end] = True
    return out
