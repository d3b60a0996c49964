"""The matte job spec builder: a plate, clicks, boxes and drawn outlines on frames in, a `pb.JobSpec` out.

A matte job asks the daemon to carry an object from a few prompts through a range of frames (SAM 2.1 or
EdgeTAM with their weights, the classical tracker on any machine) and, when asked, to propose the region the
object affects. Coordinates are the plate's pixels: x right, y down from the top-left corner, 0.5, 0.5 the
first pixel's centre (Nuke's and Resolve's viewers count from the bottom-left: hosts convert).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Optional

from voidlink.bridge.spec import Clip, FrameRange, PathLike, client_path, clip_spec, default_output
from voidlink.protos import pb, vocabulary

from voidlink import errors

TRACKERS = ("auto", "classical", "sam2", "edgetam")
# Bounds the daemon holds too: refused here first, with the argument's name, before anything is sent.
MAX_PROMPTS = 1000
MAX_POINTS = 256
MAX_OUTLINE = 10_000
MAX_TEXT = 1000

Point = Sequence[float]  # (frame, x, y)
Box = Sequence[float]  # (frame, x0, y0, x1, y1)
Outline = tuple[int, Sequence[Sequence[float]]]  # (frame, [(x, y), ...])


def default_matte_output(plate: Clip) -> str:
    """`<plate folder>/void/<plate name>_matte.####.exr`: beside the removals' default, never onto the plate."""
    removal = default_output(plate)
    return removal[: -len("_void.####.exr")] + "_matte.####.exr"


def _frame(value: float, field: str) -> int:
    if float(value) != int(value):
        raise errors.InvalidInput(
            f"{field}: frame {value} is not a whole frame number", reason="BAD_VALUE", field=field
        )
    return int(value)


def _number(value: float, field: str) -> float:
    number = float(value)
    if number != number or number in (float("inf"), float("-inf")):
        raise errors.InvalidInput(f"{field}: {value} is not a coordinate", reason="BAD_VALUE", field=field)
    return number


def build_matte_prompts(
    points: Iterable[Point] = (),
    negative: Iterable[Point] = (),
    boxes: Iterable[Box] = (),
    outlines: Iterable[Outline] = (),
) -> list:
    """The prompts, one `pb.MattePrompt` per frame in frame order, from (frame, x, y) points, (frame, x0, y0,
    x1, y1) boxes and (frame, [(x, y), ...]) outlines; refuses malformed ones naming the argument."""
    prompts: dict[int, pb.MattePrompt] = {}

    def on(frame: int) -> pb.MattePrompt:
        return prompts.setdefault(frame, pb.MattePrompt(frame=frame))

    for name, values, is_negative in (("points", points, False), ("negative", negative, True)):
        for index, point in enumerate(values):
            field = f"{name}[{index}]"
            if len(point) != 3:
                raise errors.InvalidInput(
                    f"{field}: a point is (frame, x, y), not {tuple(point)}", reason="BAD_VALUE", field=field
                )
            frame = _frame(point[0], field)
            prompt = on(frame)
            prompt.points.add(x=_number(point[1], field), y=_number(point[2], field), negative=is_negative)
    for index, box in enumerate(boxes):
        field = f"boxes[{index}]"
        if len(box) != 5:
            raise errors.InvalidInput(
                f"{field}: a box is (frame, x0, y0, x1, y1), not {tuple(box)}", reason="BAD_VALUE", field=field
            )
        x0, y0, x1, y1 = (_number(v, field) for v in box[1:])
        if x1 <= x0 or y1 <= y0:
            raise errors.InvalidInput(
                f"{field}: the box {x0:g},{y0:g} - {x1:g},{y1:g} is empty (x1 > x0 and y1 > y0)",
                reason="BAD_VALUE",
                field=field,
            )
        on(_frame(box[0], field)).boxes.add(x0=x0, y0=y0, x1=x1, y1=y1)
    for index, (frame, vertices) in enumerate(outlines):
        field = f"outlines[{index}]"
        vertices = list(vertices)
        if len(vertices) < 3:
            raise errors.InvalidInput(f"{field}: an outline needs 3 points or more", reason="BAD_VALUE", field=field)
        if len(vertices) > MAX_OUTLINE:
            raise errors.LimitExceeded(
                f"{field}: {len(vertices)} points; at most {MAX_OUTLINE}", reason="TOO_MANY_POINTS", field=field
            )
        prompt = on(_frame(frame, field))
        for x, y in vertices:
            prompt.outline.add(x=_number(x, field), y=_number(y, field))
    if not prompts:
        raise errors.InvalidInput(
            "no prompt: give the object as a point, a box or an outline on at least one frame",
            reason="NO_PROMPT",
            field="points",
        )
    if len(prompts) > MAX_PROMPTS:
        raise errors.LimitExceeded(
            f"prompts on {len(prompts)} frames; at most {MAX_PROMPTS}", reason="TOO_MANY_PROMPTS", field="points"
        )
    for prompt in prompts.values():
        count = len(prompt.points) + len(prompt.boxes)
        if count > MAX_POINTS:
            raise errors.LimitExceeded(
                f"frame {prompt.frame}: {count} points and boxes; at most {MAX_POINTS}",
                reason="TOO_MANY_POINTS",
                field="points",
            )
    return [prompts[frame] for frame in sorted(prompts)]


def build_matte_spec(
    plate: Clip,
    frames: FrameRange = None,
    *,
    points: Iterable[Point] = (),
    negative: Iterable[Point] = (),
    boxes: Iterable[Box] = (),
    outlines: Iterable[Outline] = (),
    text: str = "",
    propose_affected: bool = False,
    tracker: str = "auto",
    output: Optional[PathLike] = None,
    affected_output: Optional[PathLike] = None,
    quadmask_output: Optional[PathLike] = None,
    grid: int = 0,
    pixel_type: str = "uint8",
    priority: int = 0,
    overwrite: bool = False,
    name: str = "",
    labels: Optional[Mapping[str, str]] = None,
) -> pb.JobSpec:
    """A matte job: the object of the prompts tracked over `frames` (default: the plate's range).

    `text` ("its shadow; the reflection") says what the object affects; with it (or `propose_affected`) the
    daemon also writes an affected proposal (`affected_output`, default `<matte>_affected.####.exr`), which is
    for the user to check and edit. `quadmask_output` also writes the quadmask of both, ready for a removal.
    `grid` grows the proposal to cells of that many pixels, as the reference's mask tools do."""
    if tracker not in TRACKERS:
        raise errors.InvalidInput(
            f"tracker '{tracker}' is not one of {', '.join(TRACKERS)}", reason="UNKNOWN_TRACKER", field="tracker"
        )
    if pixel_type not in vocabulary.MATTE_PIXEL_TYPES:
        raise errors.InvalidInput(
            f"pixel type '{pixel_type}' is not one of {', '.join(vocabulary.MATTE_PIXEL_TYPES)}",
            reason="BAD_VALUE",
            field="pixel_type",
        )
    if len(text) > MAX_TEXT:
        raise errors.LimitExceeded(f"text: {len(text)} characters; at most {MAX_TEXT}", reason="TOO_LONG", field="text")
    if grid < 0:
        raise errors.InvalidInput(f"grid: {grid} is not a cell size in pixels", reason="BAD_VALUE", field="grid")
    if frames is not None and (len(frames) != 2 or frames[1] < frames[0]):
        raise errors.InvalidInput(
            f"frame range {tuple(frames)} is not (first, last) with first <= last", reason="EMPTY_RANGE", field="frames"
        )
    prompts = build_matte_prompts(points, negative, boxes, outlines)
    if frames is not None:
        outside = [p.frame for p in prompts if not frames[0] <= p.frame <= frames[1]]
        if outside:
            raise errors.InvalidInput(
                f"prompts on frames {', '.join(map(str, outside))} lie outside the range {frames[0]}-{frames[1]}",
                reason="PROMPT_OUTSIDE_RANGE",
                field="frames",
            )
    matte_output = client_path(output) if output else default_matte_output(plate)
    spec = pb.JobSpec(
        name=name or f"matte {os.path.basename(matte_output).split('.')[0]}",
        source=clip_spec(plate, frames),
        params=pb.JobParams(priority=priority),
        output=pb.OutputSpec(
            path_template=matte_output,
            pixel_type=vocabulary.PIXEL_TYPE.value(pixel_type, "pixel_type"),
            write_quadmask=quadmask_output is not None,
            quadmask_template=client_path(quadmask_output) if quadmask_output else "",
            overwrite=overwrite,
        ),
        matte=pb.MatteParams(
            prompts=prompts,
            affected_text=text,
            propose_affected=propose_affected or bool(text),
            tracker="" if tracker == "auto" else tracker,
            affected_template=client_path(affected_output) if affected_output else "",
            affected_grid=grid,
        ),
    )
    if frames is not None:
        spec.frames.first, spec.frames.last = int(frames[0]), int(frames[1])
    for key, value in (labels or {}).items():
        spec.labels[str(key)] = str(value)
    return spec
