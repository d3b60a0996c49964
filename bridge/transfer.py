"""Which of a job's clips travel as frames and whether its output comes back as a stream.

A clip the daemon can read stays a path; one only this machine holds is uploaded (`bridge.upload`);
an output the daemon cannot write here is fetched back (`bridge.download`). The plan is made by
asking the daemon what it makes of each path (`ProbePaths`).
"""

from __future__ import annotations

import ntpath
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Callable, Optional

from voidlink.bridge.connection import Connection
from voidlink.bridge.pathmap import is_windows_path
from voidlink.protos import pb
from voidlink.protos.clips import SequencePattern, clip_media
from voidlink.protos.events import job_event

from voidlink import errors

TRANSFER_MODES = ("auto", "shared", "stream")

ProgressCallback = Callable[[pb.JobEvent], None]


@dataclass
class TransferStats:
    """Bytes this client moved: frame bytes handed to the daemon, reused from its cache, fetched back."""

    bytes_sent: int = 0
    bytes_reused: int = 0
    frames_sent: int = 0
    bytes_received: int = 0
    resumes: int = 0


@dataclass
class TransferPlan:
    """How one job's media travels: which clips are uploaded, whether the output is streamed back."""

    mode: str = "shared"  # "shared", "stream" or "mixed"
    upload: list = field(default_factory=list)  # clip fields whose frames are uploaded
    stream_back: bool = False
    reasons: list = field(default_factory=list)
    output_template: str = ""  # where a streamed-back output is written on this machine
    # Where the streamed-back side sequences the spec named go here, by kind ("quadmask", "raw", "affected").
    side_templates: dict = field(default_factory=dict)
    source_files: set = field(default_factory=set)  # real paths of the frames the job reads on this machine

    @property
    def streamed(self) -> bool:
        return bool(self.upload) or self.stream_back


def probe_paths(link: Connection, paths: Sequence[str], write: bool = False) -> list:
    """What the daemon makes of these client paths (mapped first): a `pb.PathProbe` each.
    Raises `errors.Conflict` (reason PROBE_UNSUPPORTED) for a daemon too old to say."""
    mapped = [link.path_map.to_daemon(p) for p in paths]
    try:
        reply = link.call("ProbePaths", pb.ProbePathsRequest(paths=mapped, write=write))
    except errors.VoidlinkError as error:
        if error.reason == "UNIMPLEMENTED":
            raise errors.Conflict(
                f"the daemon at {link.address} cannot probe paths (an older voidlink)", reason="PROBE_UNSUPPORTED"
            ) from None
        raise
    return list(reply.paths)


def plan_transfer(link: Connection, spec: pb.JobSpec, transfer: str = "auto") -> TransferPlan:
    """Which clips to upload and whether the output comes back as a stream."""
    if transfer not in TRANSFER_MODES:
        raise errors.InvalidInput(
            f"unknown transfer mode '{transfer}' (choose {', '.join(TRANSFER_MODES)})",
            reason="BAD_VALUE",
            field="transfer",
        )
    clips = [name for name in ("source", "mask", "affected") if getattr(spec, name).otio_json.strip()]
    if transfer == "shared":
        return TransferPlan(mode="shared")
    if transfer == "stream":
        return TransferPlan(mode="stream", upload=clips, stream_back=True, reasons=["streaming was asked for"])
    paths = [clip_media(getattr(spec, name).otio_json, f"spec.{name}").path for name in clips]
    try:
        reads = probe_paths(link, paths)
        written = probe_paths(link, [spec.output.path_template], write=True)[0]
    except errors.Conflict:
        return TransferPlan(mode="shared", reasons=["the daemon cannot tell which paths it sees"])
    plan = TransferPlan(mode="shared")
    # Stream only what this machine has and the daemon lacks: a path neither side sees stays a
    # path, so the daemon's error names it as it always has.
    for name, path, probe in zip(clips, paths, reads):
        if not probe.usable and os.path.isdir(_folder(path)):
            plan.upload.append(name)
            plan.reasons.append(f"spec.{name}: {probe.path}: {probe.reason}")
    if not written.usable and _writable_here(spec.output.path_template):
        plan.stream_back = True
        plan.reasons.append(f"spec.output: {written.path}: {written.reason}")
    if plan.streamed:
        plan.mode = "stream" if len(plan.upload) == len(clips) and plan.stream_back else "mixed"
    return plan


def report(on_progress: Optional[ProgressCallback], progress: pb.TransferProgress, job_id: str = "", state: int = 0):
    """Hand a transfer's progress to the caller as the job's event (stage "upload" or "download")."""
    if on_progress is None:
        return
    on_progress(job_event(job_id=job_id, state=state, stage=progress.direction, transfer=progress))


def _folder(path: str) -> str:
    return (ntpath if is_windows_path(path) else os.path).dirname(path) or "."


def _writable_here(path: str) -> bool:
    folder = _folder(path)
    while not os.path.exists(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    return os.path.isdir(folder) and os.access(folder, os.W_OK | os.X_OK)


def local_pattern(template: str) -> Optional[SequencePattern]:
    """A frame-numbered template on this machine as a pattern (four digits where it names none); None
    for a template with no frame number."""
    pattern = SequencePattern.parse(os.path.basename(template))
    if pattern is None:
        return None
    prefix = os.path.join(os.path.dirname(template), pattern.prefix)
    return SequencePattern(prefix, pattern.suffix, pattern.padding or 4)
