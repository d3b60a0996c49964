"""Which kind of job a spec asks for (a removal, or a matte job: `JobSpec.matte` set), and the check
against the disk each kind is prepared by. The scheduler's `_run` is where the kind picks the run."""

from __future__ import annotations

from typing import Optional, Union

from voidlink.inference.job.matte.prepare import PreparedMatte, prepare_matte
from voidlink.inference.job.prepare import Confinement, PreparedJob, prepare_job
from voidlink.protos import pb

Prepared = Union[PreparedJob, PreparedMatte]


def is_matte(spec: pb.JobSpec) -> bool:
    return spec.HasField("matte")


def prepare(spec: pb.JobSpec, *, guard: Optional[Confinement] = None) -> Prepared:
    """The job checked against the disk as its kind is (`prepare_matte` or `prepare_job`)."""
    return prepare_matte(spec, guard=guard) if is_matte(spec) else prepare_job(spec, guard=guard)
