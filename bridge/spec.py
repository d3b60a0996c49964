"""The job spec builder: paths (or a host's clips) and plain values in, a checked `pb.JobSpec` out.

The one builder every side uses (the CLI, conform, the panel's form and the Nuke effect), so a job
means the same thing whoever submits it, with one set of defaults.
"""

from __future__ import annotations

import ntpath
import os
from collections.abc import Mapping, Sequence
from typing import Optional, Protocol, Union

from voidlink.bridge.pathmap import is_windows_path
from voidlink.protos import pb, vocabulary
from voidlink.protos.clips import SequencePattern, clip_json

from voidlink import errors

PathLike = Union[str, "os.PathLike[str]"]
FrameRange = Optional[Sequence[int]]


class HostClip(Protocol):
    """A clip as a host knows it (`voidlink.bridge.effect.ClipInput`): its media and how it is read."""

    path: str
    channels: str
    colorspace: str
    rate: float
    label: str


Clip = Union[PathLike, HostClip]


def client_path(path: Optional[PathLike]) -> str:
    """An absolute path as this machine names it; a Windows path stays as it is (a daemon maps it)."""
    if path is None:
        return ""
    text = os.fspath(path)
    # A Windows path handed to a POSIX client is for a daemon that maps it; it is absolute already.
    return text if is_windows_path(text) and os.name != "nt" else os.path.abspath(text)


def clip_spec(
    clip: Clip,
    frames: FrameRange = None,
    channels: str = "",
    colorspace: str = "",
    matte: Optional[pb.MatteOptions] = None,
) -> pb.ClipSpec:
    """A ClipSpec for a path or a host's clip, over `frames` (None: the clip's own range)."""
    first, last = (frames[0], frames[1]) if frames else (None, None)
    if isinstance(clip, (str, os.PathLike)):
        otio_json = clip_json(client_path(clip), first, last)
        spec = pb.ClipSpec(otio_json=otio_json, channels=channels, colorspace=colorspace)
    else:
        spec = pb.ClipSpec(
            otio_json=clip_json(client_path(clip.path), first, last, rate=clip.rate, name=clip.label),
            channels=clip.channels or channels,
            colorspace=clip.colorspace or colorspace,
        )
    if matte is not None:
        spec.matte.CopyFrom(matte)
    return spec


def default_output(plate: Clip) -> str:
    """`<plate folder>/void/<plate name>_void.####.exr`: next to the plate, never onto it."""
    plate = client_path(plate if isinstance(plate, (str, os.PathLike)) else plate.path)
    paths = ntpath if is_windows_path(plate) else os.path  # a Windows client's path, seen from anywhere
    folder, name = paths.split(plate)
    pattern = SequencePattern.parse(name)
    stem = pattern.prefix.rstrip("._-") if pattern else paths.splitext(name)[0]
    return paths.join(folder, "void", f"{stem}_void.####.exr")


def build_spec(
    plate: Clip,
    mask: Clip,
    affected: Optional[Clip] = None,
    frames: FrameRange = None,
    prompt: str = "",
    output: Optional[PathLike] = None,
    backend: str = "auto",
    *,
    quadmask: bool = False,
    steps: int = 0,
    guidance: float = 0.0,
    seed: Optional[int] = None,
    passes: int = 0,
    quality: str = "balanced",
    crop: str = "auto",
    priority: int = 0,
    pixel_type: str = "auto",
    compression: str = "zip",
    write_quadmask: bool = True,
    layers: bool = False,
    resample_mattes: bool = False,
    name: str = "",
    dilate: int = 0,
    feather: float = 0.0,
    threshold: float = vocabulary.MATTE_THRESHOLD,
    overwrite: bool = False,
    labels: Optional[Mapping[str, str]] = None,
) -> pb.JobSpec:
    """A JobSpec from paths (or a host's clips) and plain values; raises `errors.InvalidInput` naming
    a bad argument.

    `seed`: None or -1 for the backend's default. `overwrite=True` lets the job replace files at its
    output that voidlink did not write (without it the daemon refuses them: `errors.OutputExists`);
    earlier voidlink results are replaced either way, and a job's own sources never. `layers=True`
    also writes the change as layers in the output EXR (void.delta.R/G/B, void.change, void.quadmask)."""
    quality_value = vocabulary.QUALITY.value(quality, "quality")
    crop_value = vocabulary.CROP_MODE.value(crop, "crop")
    pixel_value = vocabulary.PIXEL_TYPE.value(pixel_type, "pixel_type")
    compression_value = vocabulary.COMPRESSION.value(compression, "compression")
    if passes not in (0, 1, 2):
        raise errors.InvalidInput(
            f"passes must be 1 or 2 (0: the backend's default), not {passes}", reason="BAD_VALUE", field="passes"
        )
    if guidance < 0:
        raise errors.InvalidInput(
            f"guidance must be 0 (the backend's default) or positive, not {guidance}",
            reason="BAD_VALUE",
            field="guidance",
        )
    if frames is not None and (len(frames) != 2 or frames[1] < frames[0]):
        raise errors.InvalidInput(
            f"frame range {tuple(frames)} is not (first, last) with first <= last", reason="EMPTY_RANGE", field="frames"
        )
    matte = pb.MatteOptions(is_quadmask=quadmask, dilate=dilate, feather=feather, threshold=threshold)
    spec = pb.JobSpec(
        name=name,
        source=clip_spec(plate, frames),
        mask=clip_spec(mask, frames, matte=matte),
        params=pb.JobParams(
            prompt=prompt,
            backend=backend,
            steps=steps,
            guidance=guidance,
            passes=passes,
            quality=quality_value,
            crop_mode=crop_value,
            priority=priority,
            resample_mattes=resample_mattes,
        ),
        output=pb.OutputSpec(
            path_template=client_path(output) if output else default_output(plate),
            pixel_type=pixel_value,
            compression=compression_value,
            write_quadmask=write_quadmask,
            write_layers=layers,
            overwrite=overwrite,
        ),
    )
    if affected is not None:
        spec.affected.CopyFrom(clip_spec(affected, frames, matte=pb.MatteOptions(dilate=dilate, threshold=threshold)))
    if seed is not None and seed != -1:
        spec.params.seed = seed
    if frames is not None:
        spec.frames.first, spec.frames.last = int(frames[0]), int(frames[1])
    for key, value in (labels or {}).items():
        spec.labels[str(key)] = str(value)
    return spec
