"""The job's result as the daemon reports it (a JobResult with its OTIO clip, notes and metrics),
and the provenance its frames record in their headers (`voidlink:<key>`)."""

from __future__ import annotations

import os
from pathlib import Path

from voidlink.inference.backends.base import Backend, BackendRequest
from voidlink.inference.job.prepare import PreparedJob
from voidlink.inference.job.staging import counted, staged_path
from voidlink.media import image
from voidlink.protos import pb
from voidlink.protos.clips import clip_json

from voidlink import __version__
from voidlink.errors import VoidlinkError


def provenance(prepared: PreparedJob, backend: Backend, request: BackendRequest, job_id: str) -> dict[str, str]:
    """What makes this job's frames, as their headers record it (`voidlink:<key>`): the job and the
    settings every backend shares, then what the backend adds as it runs (`request.provenance`)."""
    made_by = {
        "job": job_id,
        "version": __version__,
        "backend": backend.name,
        "prompt": request.prompt,
        "quality": request.quality,
        "crop_mode": prepared.crop_mode,
    }
    if request.negative_prompt:
        made_by["negative_prompt"] = request.negative_prompt
    made_by.update(request.provenance)
    return made_by


def describe_run(
    prepared: PreparedJob,
    backend: Backend,
    request: BackendRequest,
    metrics: dict[str, float],
    notes: list[str],
    job_id: str,
) -> pb.JobResult:
    """The result of a run on `backend`: its notes, the request's and the whole shot's (from every
    frame's counts, those a run before a resume staged included) come before the run's own."""
    shot = backend.shot_notes(counted(prepared.staging(job_id), prepared.frames))
    return describe(prepared, backend.name, [*backend.notes(), *request.notes, *shot, *notes], metrics, job_id)


def describe(
    prepared: PreparedJob, backend_name: str, notes: list[str], metrics: dict[str, float], job_id: str
) -> pb.JobResult:
    """The job's result, read before the commit (its marker holds it): the provenance comes from the
    job's first output frame, staged or already in place."""
    made_by = recorded_provenance(prepared, job_id)
    metadata = {"voidlink": {"provenance": made_by}} if made_by else None
    result = sequence_result(prepared, backend_name, notes, metrics, made_by, metadata)
    if prepared.raw_output is not None:
        result.raw_pattern = prepared.raw_output.hashes()
    return result


def sequence_result(
    prepared, backend_name: str, notes: list[str], metrics: dict[str, float], made_by: dict[str, str], metadata
) -> pb.JobResult:
    """What every job's result holds (a removal's or a matte job's): the written sequence as an OTIO clip, its
    frames, what made it, its notes, the quadmask beside it, and the metrics with frames per second."""
    result = pb.JobResult(
        output_pattern=prepared.output.hashes(),
        frames=pb.FrameRange(first=prepared.first, last=prepared.last),
        otio_json=clip_json(
            prepared.output.hashes(),
            prepared.first,
            prepared.last,
            prepared.source.media.rate,
            name=os.path.basename(prepared.output.prefix).rstrip("._-"),
            metadata=metadata,
        ),
        backend=backend_name,
        notes=notes,
        provenance=made_by,
    )
    if prepared.quadmask_output is not None:
        result.quadmask_pattern = prepared.quadmask_output.hashes()
    for key, value in metrics.items():
        result.metrics[key] = float(value)
    if metrics.get("seconds", 0.0) > 0:
        result.metrics["frames_per_second"] = metrics.get("frames", 0.0) / metrics["seconds"]
    return result


def recorded_provenance(prepared: PreparedJob, job_id: str) -> dict[str, str]:
    """The provenance the job's first output frame carries (its record of what made the result), staged
    or already in place; empty when that frame is not this job's."""
    staged = staged_path(prepared.staging(job_id), "output", prepared.output, prepared.first)
    path = staged if staged.exists() else Path(prepared.output.path(prepared.first))
    try:
        spec = image.read_spec(str(path))
    except VoidlinkError:
        return {}
    if spec.getattribute(image.JOB_ATTRIBUTE) != job_id:
        return {}  # not this job's frame (an earlier result still in place)
    out = {}
    for attr in spec.extra_attribs:
        if attr.name.startswith(image.OWN_PREFIX) and attr.name != image.JOB_ATTRIBUTE:
            out[attr.name[len(image.OWN_PREFIX) :]] = str(attr.value)
    return out
