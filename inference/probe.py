"""What the daemon may and can do with a client's paths: `ProbePaths`, and the roots check of a spec.

A client that shares storage with the daemon names files by path. Before it submits, it asks
`probe_paths` whether the daemon sees them (readable, with frames of the sequence; or, for an
output, a folder it may write); at submit, `check_client_paths` refuses any path outside the
daemon's roots before anything looks at the disk there. Neither holds state: both read `Roots`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from voidlink.inference.security import Roots
from voidlink.inference.transfer import CLIP_FIELDS
from voidlink.protos import pb
from voidlink.protos.clips import SequencePattern, clip_media

from voidlink.errors import InvalidInput, LimitExceeded


def check_client_paths(roots: Roots, spec: pb.JobSpec) -> None:
    """Refuse a path of `spec` outside the roots (PermissionDenied naming the field), before anything
    looks at the disk there; uploaded clips and streamed-back outputs name no client path."""
    if not roots.confined:
        return
    for name in CLIP_FIELDS:
        clip = getattr(spec, name)
        if clip.uploaded_frames or not clip.otio_json.strip():
            continue
        try:
            media = clip_media(clip.otio_json, f"spec.{name}.otio_json")
        except ValueError:
            continue  # prepare_job names the problem
        roots.check(media.path, f"spec.{name}")
    if spec.output.stream_back:
        return
    output = spec.output
    for path, label in (
        (output.path_template, "spec.output.path_template"),
        (output.quadmask_template, "spec.output.quadmask_template"),
        (output.raw_template, "spec.output.raw_template"),
        (spec.matte.affected_template, "spec.matte.affected_template"),
    ):
        if path:
            roots.check(path, label)


MAX_PROBES = 64


def probe_paths(roots: Roots, paths: Sequence[str], write: bool) -> list[pb.PathProbe]:
    """What the daemon sees of each path (a file, or a sequence pattern), for reading or for writing."""
    if len(paths) > MAX_PROBES:
        raise LimitExceeded(
            f"{len(paths)} paths to probe; ask about at most {MAX_PROBES} at once",
            reason="TOO_MANY_PATHS",
            field="paths",
        )
    for index, path in enumerate(paths):
        if "\x00" in path or len(path) > 4096:
            raise InvalidInput(
                f"paths[{index}] is not a path (a NUL character, or over 4096 characters)",
                reason="BAD_PATH",
                field=f"paths[{index}]",
            )
    return [probe_path(roots, path, write) for path in paths]


def probe_path(roots: Roots, path: str, write: bool) -> pb.PathProbe:
    probe = pb.PathProbe(path=path)
    if not roots.allows(path):
        probe.reason = "outside the folders this daemon may use"
        return probe
    probe.allowed = True
    pattern = SequencePattern.parse(os.path.basename(path))
    target = Path(path)
    if write or pattern is not None:
        target = target.parent
    if write:
        # The folder is made when the job writes: what counts is the nearest one that exists.
        while not target.exists() and target.parent != target:
            target = target.parent
        probe.exists = Path(path).parent.exists()
        probe.usable = target.is_dir() and os.access(target, os.W_OK | os.X_OK)
        probe.reason = "" if probe.usable else f"{target} is not writable by the daemon"
        return probe
    probe.exists = target.exists()
    if not probe.exists:
        probe.reason = f"the daemon sees no {target}"
    elif pattern is not None:
        regex = pattern.regex()
        probe.usable = os.access(target, os.R_OK | os.X_OK) and any(regex.match(n) for n in os.listdir(target))
        probe.reason = "" if probe.usable else f"the daemon sees no frame of {os.path.basename(path)} in {target}"
    else:
        probe.usable = os.access(target, os.R_OK)
        probe.reason = "" if probe.usable else f"the daemon may not read {target}"
    return probe
