"""A job pipeline the tests can predict: `MeanFill`, a backend that fills every masked pixel with the mean
of the frame's kept ones and records what it saw, and the calls that run a spec through it."""

from __future__ import annotations

import numpy as np
from voidlink.inference.backends.base import Backend, BackendResult
from voidlink.inference.job.prepare import prepare_job
from voidlink.inference.job.run import run_job
from voidlink.inference.job.staging import discard_staging
from voidlink.media.quadmask import KEEP
from voidlink.protos import pb


class MeanFill(Backend):
    """Fills every non-KEEP pixel with the mean of the frame's KEEP pixels; records what it saw."""

    name = "meanfill"
    temporal_context = 2

    def __init__(self, working_size=None, fail_after: int | None = None):
        self.working_size = working_size
        self.fail_after = fail_after
        self.seen: list[int] = []
        self.shapes: set[tuple[int, ...]] = set()

    def run(self, frames, request):
        for frame in frames:
            if self.fail_after is not None and len(self.seen) >= self.fail_after:
                raise RuntimeError("simulated crash")
            self.seen.append(frame.index)
            self.shapes.add(frame.image.shape)
            assert frame.image.dtype == np.float32 and frame.quadmask.dtype == np.uint8
            assert set(np.unique(frame.quadmask)) <= {0, 63, 127, 255}
            out = frame.image.copy()
            hole = frame.quadmask != KEEP
            out[hole] = frame.image[~hole].mean(axis=0) if (~hole).any() else 0.5
            yield BackendResult(frame.index, out)

    def notes(self):
        return ["test backend"]


def frame_paths(pattern: str, first: int, last: int) -> list[str]:
    return [pattern.replace("####", f"{f:04d}") for f in range(first, last + 1)]


def run_spec(spec: pb.JobSpec, backend: Backend | None = None, job_id: str = "job1", **kw) -> pb.JobResult:
    prepared = prepare_job(spec)
    try:
        return run_job(prepared, backend or MeanFill(), job_id=job_id, **kw)
    except BaseException:
        discard_staging(prepared, job_id)
        raise
