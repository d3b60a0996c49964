"""The result of a removal as a host reads it: where the clean plate is, which frames, what made it.

`result_or_raise` is the one way an ended job becomes a result or the error that says why it is not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from voidlink.protos import pb
from voidlink.protos.clips import SequencePattern
from voidlink.protos.vocabulary import state_name

from voidlink import errors


@dataclass
class RemoveResult:
    """What a finished removal gives a host: where the clean plate is and which frames."""

    job_id: str
    state: str
    output_pattern: str = ""  # with #### as the daemon wrote it
    first: int = 0
    last: int = 0
    otio_json: str = ""
    quadmask_pattern: str = ""
    backend: str = ""
    notes: list = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    # What made the frames (backend, version, seed, steps, weights' SHA-256 ...), as their headers say.
    provenance: dict = field(default_factory=dict)
    # The quadmask checks of a matte job, per frame: {"check", "severity", "message", "frame" (None: the shot)}.
    findings: list = field(default_factory=list)
    affected_pattern: str = ""  # a matte job's affected proposal, when it wrote one

    @classmethod
    def from_job(cls, job: pb.Job) -> RemoveResult:
        """The job's result as it stands (see `result_or_raise` for one that must have succeeded)."""
        r = job.result
        return cls(
            job_id=job.id,
            state=state_name(job.state),
            output_pattern=r.output_pattern,
            first=int(r.frames.first),
            last=int(r.frames.last),
            otio_json=r.otio_json,
            quadmask_pattern=r.quadmask_pattern,
            affected_pattern=r.affected_pattern,
            backend=r.backend,
            notes=list(r.notes),
            metrics=dict(r.metrics),
            provenance=dict(r.provenance),
            findings=[
                {
                    "check": f.check,
                    "severity": f.severity,
                    "message": f.message,
                    "frame": int(f.frame) if f.HasField("frame") else None,
                }
                for f in r.findings
            ],
        )

    @property
    def printf_pattern(self) -> str:
        """The pattern with %04d, as Nuke's Read and most tools take it."""
        pattern = SequencePattern.parse(self.output_pattern)
        return pattern.printf() if pattern else self.output_pattern

    @property
    def hash_pattern(self) -> str:
        pattern = SequencePattern.parse(self.output_pattern)
        return pattern.hashes() if pattern else self.output_pattern

    def frame_paths(self) -> list:
        """Each output frame's file, first to last."""
        pattern = SequencePattern.parse(self.output_pattern)
        if pattern is None:
            return [self.output_pattern]
        return [pattern.path(frame) for frame in range(self.first, self.last + 1)]

    def otio_clip(self):
        """The result as an `opentimelineio.schema.Clip` (imports OTIO on first use)."""
        import opentimelineio as otio

        return otio.adapters.read_from_string(self.otio_json, "otio_json")


def result_or_raise(job: pb.Job) -> RemoveResult:
    """A succeeded job's result; raises `errors.JobCancelled` or `errors.JobFailed` (naming the job,
    and the file/frame/field the daemon named) for one that did not succeed."""
    if job.state == pb.JOB_STATE_SUCCEEDED:
        return RemoveResult.from_job(job)
    detail = job.error
    frame = detail.frame if detail.HasField("frame") else None
    if job.state == pb.JOB_STATE_CANCELLED:
        raise errors.JobCancelled(f"job {job.id} was cancelled", reason="CANCELLED")
    cls = errors.VoidlinkError if not detail.reason else errors.JobFailed
    raise cls(
        f"job {job.id} failed: {detail.message or job.message}",
        reason=detail.reason or "JOB_FAILED",
        field=detail.field,
        file=detail.file,
        frame=frame,
        frames=list(detail.frames),
    )
