"""The job pipeline's old face: `voidlink.inference.pipeline` as the server, the pool and the tests
knew it, kept importable while the other splits of #14 merge. The work is in `voidlink.inference.job`
(one module per step; `job.run` reads top to bottom); new code imports from there.

What is left here besides the names: `PATH_GUARD`, the module global a confined daemon sets, which
`prepare_job` below honours when no `guard` is handed in. It goes once the server passes its guard
(`prepare_job(spec, guard=...)`, `Scheduler(..., guard=...)`); two daemons in one process share it.
"""

from __future__ import annotations

from typing import Optional

from voidlink.inference.job.clips import Clip
from voidlink.inference.job.control import CancelFlag, NullProgress, ProgressSink
from voidlink.inference.job.describe import provenance
from voidlink.inference.job.mattes import frame_quadmask
from voidlink.inference.job.outputs import STAGING_PREFIX
from voidlink.inference.job.prepare import PathGuard, PreparedJob
from voidlink.inference.job.prepare import prepare_job as _prepare_job
from voidlink.inference.job.render import READ_AHEAD
from voidlink.inference.job.run import commit_segments, run_job
from voidlink.inference.job.staging import (
    COMMIT_MARKER,
    commit_begun,
    discard_staging,
    discard_staging_of,
    finish_interrupted_commit,
    stage_file,
    staged_files,
    staging_of,
)
from voidlink.protos import pb

__all__ = [
    "COMMIT_MARKER",
    "PATH_GUARD",
    "READ_AHEAD",
    "STAGING_PREFIX",
    "CancelFlag",
    "Clip",
    "NullProgress",
    "PathGuard",
    "PreparedJob",
    "ProgressSink",
    "commit_begun",
    "commit_segments",
    "discard_staging",
    "discard_staging_of",
    "finish_interrupted_commit",
    "frame_quadmask",
    "prepare_job",
    "provenance",
    "run_job",
    "stage_file",
    "staged_files",
    "staging_of",
]

# Set by a daemon confined to roots (inference/server.py) until it hands its guard in instead.
PATH_GUARD: Optional[PathGuard] = None


def prepare_job(spec: pb.JobSpec, *, guard: Optional[PathGuard] = None) -> PreparedJob:
    """`job.prepare.prepare_job`, with this module's `PATH_GUARD` when no `guard` is handed in."""
    return _prepare_job(spec, guard=guard if guard is not None else PATH_GUARD)
