"""The one way a `JobEvent` is made: a job's state now, with what the event adds.

The daemon's scheduler, upload and download paths and the client's own transfer progress all
report through `job_event`, so every event carries the same fields filled the same way (`time`
stamped, `eta_seconds` −1 when unknown, a finished job's error or result attached when asked).
"""

from __future__ import annotations

import time
from typing import Optional

from voidlink.protos import pb


def job_event(
    job: Optional[pb.Job] = None,
    *,
    outcome: bool = False,
    transfer: Optional[pb.TransferProgress] = None,
    eta_seconds: float = -1.0,
    **fields,
) -> pb.JobEvent:
    """An event for `job` (its id, state, stage, frame counts and message), `fields` overriding them.

    `outcome`: attach the job's error or result (the final event, or a watcher's first). `transfer`:
    frames moving between client and daemon. Without a job, `fields` say it all (`job_id`, `state` ...).
    """
    event = pb.JobEvent(eta_seconds=eta_seconds, time=time.time())
    if job is not None:
        event.job_id, event.state, event.stage = job.id, job.state, job.stage
        event.frames_done, event.frames_total, event.message = job.frames_done, job.frames_total, job.message
        if outcome and job.HasField("error"):
            event.error.CopyFrom(job.error)
        if outcome and job.HasField("result"):
            event.result.CopyFrom(job.result)
    for name, value in fields.items():
        if isinstance(value, pb.Preview):
            getattr(event, name).CopyFrom(value)
        else:
            setattr(event, name, value)
    if transfer is not None:
        event.transfer.CopyFrom(transfer)
    return event
