"""The job pipeline's old face: `voidlink.inference.pipeline` as the pool and the tests knew it, kept
importable while the pool's split merges. The work is in `voidlink.inference.job` (one module per step;
`job.run` reads top to bottom); new code imports from there.
"""

from __future__ import annotations

from voidlink.inference.job.clips import Clip
from voidlink.inference.job.control import CancelFlag, NullProgress, ProgressSink
from voidlink.inference.job.describe import provenance
from voidlink.inference.job.mattes import frame_quadmask
from voidlink.inference.job.outputs import STAGING_PREFIX
from voidlink.inference.job.prepare import Confinement, PreparedJob, prepare_job
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

__all__ = [
    "COMMIT_MARKER",
    "READ_AHEAD",
    "STAGING_PREFIX",
    "CancelFlag",
    "Clip",
    "NullProgress",
    "Confinement",
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
