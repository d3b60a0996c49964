"""The end of a conform that ran on a farm: record the clean frames the farm wrote and write the timeline back.

`voidlink conform --farm` writes a job whose last step runs `voidlink farm finish` once every removal
task has succeeded. It rebuilds the same plan, checks that each event's clean frames are all there
and were written by this job (not left by an earlier conform with other inputs), writes the
`conform.json` beside them as a conform that ran them itself would (so a later conform reuses them),
and writes the conformed OTIO (and EDLs).
"""

from __future__ import annotations

import os
from typing import Optional

from voidlink.bridge.conform.plan import ConformPlan, reusable, write_manifest

# Farm nodes and the file server keep clocks in step to within this: a frame written by the job
# can carry a modification time this much before the job was exported.
CLOCK_SLACK_S = 120.0


def finish_plan(plan: ConformPlan, backend: str, written_after: Optional[float] = None) -> ConformPlan:
    """Mark each runnable event done (frames all there), reused or failed; write manifests for the done ones."""
    from voidlink.protos.clips import SequencePattern

    for entry in plan.events:
        if not entry.runnable:
            continue
        if reusable(entry, backend):
            entry.status, entry.message = "reused", "finished frames from an earlier conform"
            continue
        pattern = SequencePattern.parse(entry.output)
        frames = range(entry.media.first, entry.media.last + 1)
        missing = [frame for frame in frames if not os.path.isfile(pattern.path(frame))]
        if missing:
            entry.status = "failed"
            entry.message = (
                f"{len(missing)} of {len(frames)} clean frames are missing (first {pattern.path(missing[0])}): "
                "the farm task for this event has not finished"
            )
            continue
        if written_after is not None:
            old = [frame for frame in frames if os.path.getmtime(pattern.path(frame)) < written_after - CLOCK_SLACK_S]
            if old:
                entry.status = "failed"
                entry.message = (
                    f"{pattern.path(old[0])} was written before this farm job was made: it is an earlier result, "
                    "not this job's; run the event's farm task again"
                )
                continue
        entry.provenance = frame_provenance(pattern.path(entry.media.first))
        entry.job_id = entry.provenance.pop("job", "") or entry.job_id
        write_manifest(entry, backend, job_id=entry.job_id or "farm")
        entry.status, entry.message = "done", f"frames {entry.media.first}-{entry.media.last}"
    return plan


def frame_provenance(path: str) -> dict:
    """The `voidlink:*` attributes a clean frame's header carries (what made it), without the prefix."""
    import OpenImageIO as oiio

    source = oiio.ImageInput.open(path)
    if source is None:
        oiio.geterror()
        return {}
    try:
        spec = source.spec()
        return {a.name.split(":", 1)[1]: str(a.value) for a in spec.extra_attribs if a.name.startswith("voidlink:")}
    finally:
        source.close()
