"""One pass over the job's mattes before any frame is rendered: the crop/scale plan (from the
whole shot's mask boxes), the frames whose mask is empty, and the quadmask files of the frames
to render (written into the staging folder)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from voidlink.inference.backends.base import Backend
from voidlink.inference.job.control import ProgressSink, check_cancelled
from voidlink.inference.job.mattes import frame_quadmask
from voidlink.inference.job.prepare import PreparedJob
from voidlink.inference.job.staging import staged_path
from voidlink.media import image, plan, quadmask
from voidlink.media.plan import ProcessingPlan

from voidlink.errors import InvalidInput


@dataclass
class Analysis:
    """What the mattes say about the shot, for the render and the result's metrics and notes."""

    plan: ProcessingPlan
    empty: list[int]  # frames whose mask is empty: they pass through unchanged
    snapped: int  # quadmask pixels that were none of the four values
    coverage: float  # the mask's mean share of the frame


def analyse(
    prepared: PreparedJob,
    backend: Backend,
    cancelled: Callable[[], bool],
    progress: ProgressSink,
    staging: Path,
    rendered: list[int],
    job_id: str,
) -> Analysis:
    """One pass over the mattes: boxes for the plan (always the whole shot's, so a segment is cropped
    as the whole job is), empty frames, and the quadmask files of the frames to render (`rendered`)."""
    writes = set(rendered)
    boxes: list[Optional[tuple[int, int, int, int]]] = []
    empty: list[int] = []
    snapped, coverage = 0, 0.0
    plate = prepared.source.header
    assert plate is not None
    for frame in prepared.frames:
        check_cancelled(cancelled)
        qm, snapped_here = frame_quadmask(prepared, frame, plate)
        snapped += snapped_here
        box = quadmask.bbox(quadmask.grow_for_feather(qm, prepared.feather))
        if box is None:
            empty.append(frame)
        boxes.append(box)
        coverage += quadmask.coverage(qm)
        if prepared.quadmask_output is not None and frame in writes:
            _stage_quadmask(prepared, staging, frame, qm, job_id)
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
    return Analysis(work_plan, empty, snapped, coverage / max(count, 1))


def _stage_quadmask(prepared: PreparedJob, staging: Path, frame: int, qm: np.ndarray, job_id: str) -> None:
    """The frame's quadmask file, written once (a resumed job keeps the one it staged)."""
    assert prepared.quadmask_output is not None
    target = staged_path(staging, "quadmask", prepared.quadmask_output, frame)
    if target.exists():
        return
    image.write_image(
        str(target),
        qm.astype(np.float32) / 255.0,
        pixel_type="uint8",
        channel_names=["Y"],
        attributes={image.JOB_ATTRIBUTE: job_id},
    )
