"""The removal effect in OpenFX terms: one description and one job builder for every host.

A host adapter (Nuke, Resolve, the CLI) describes what the user picked as `ClipInput`s and
parameter values; `RemoveEffect` checks them the way a host can explain (naming the clip,
parameter and frame) and builds the `pb.JobSpec` through the one spec builder
(`bridge.spec.build_spec`); the finished job comes back as the client's `RemoveResult`.

Frame ranges are inclusive and in each clip's own numbering (a plate numbered 1001-1100 is
rendered as 1001-1100, never 0-99). Handles widen the rendered range on both sides.

Imports on Python 3.9 without torch or Qt.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional

from voidlink.bridge.spec import build_spec
from voidlink.protos import pb, vocabulary
from voidlink.protos.clips import SequencePattern, is_movie

from voidlink import errors

SOURCE = "Source"
MASK = "Mask"
AFFECTED = "Affected"
OUTPUT = "Output"


@dataclass(frozen=True)
class ClipDescriptor:
    """One clip of the effect, as an OpenFX clip descriptor would declare it."""

    name: str
    label: str
    hint: str
    optional: bool = False
    is_mask: bool = False
    is_output: bool = False


@dataclass(frozen=True)
class ParamDescriptor:
    """One parameter: `kind` is string, choice, int, double or bool (the OpenFX param types we use)."""

    name: str
    label: str
    kind: str
    default: Any
    hint: str = ""
    choices: tuple = ()
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    group: str = "removal"


CLIPS = (
    ClipDescriptor(SOURCE, "plate", "the plate to clean"),
    ClipDescriptor(MASK, "object matte", "the object to remove (alpha, else luminance; or a quadmask)", is_mask=True),
    ClipDescriptor(
        AFFECTED, "affected matte", "what the object affects: shadows, reflections", optional=True, is_mask=True
    ),
    ClipDescriptor(OUTPUT, "output", "the clean plate", is_output=True),
)

BACKENDS = ("auto", "classical", "void")
QUALITIES = vocabulary.QUALITY.offered
CROP_MODES = vocabulary.CROP_MODE.offered
PIXEL_TYPES = vocabulary.PIXEL_TYPE.offered
COMPRESSIONS = vocabulary.COMPRESSION.offered

PARAMS = (
    ParamDescriptor("prompt", "prompt", "string", "", "the scene AFTER removal, e.g. 'an empty road'"),
    ParamDescriptor(
        "backend", "backend", "choice", "auto", "auto: VOID with a GPU and weights, else classical", choices=BACKENDS
    ),
    ParamDescriptor(
        "passes", "passes", "int", 0, "VOID: 1, or 2 for the refinement pass; 0: backend default", minimum=0, maximum=2
    ),
    ParamDescriptor("steps", "steps", "int", 0, "denoising steps; 0: backend default", minimum=0, maximum=500),
    ParamDescriptor(
        "guidance", "guidance", "double", 0.0, "prompt guidance; 0: backend default", minimum=0.0, maximum=50.0
    ),
    ParamDescriptor("seed", "seed", "int", -1, "-1: backend default", minimum=-1),
    ParamDescriptor(
        "quality", "quality", "choice", "balanced", "draft is fastest, best crops to the mask", choices=QUALITIES
    ),
    ParamDescriptor(
        "crop_mode", "crop mode", "choice", "auto", "how the frame is cropped for the model", choices=CROP_MODES
    ),
    ParamDescriptor(
        "quadmask", "mask is a quadmask", "bool", False, "the Mask clip already holds 0/63/127/255", group="matte"
    ),
    ParamDescriptor(
        "mask_threshold",
        "matte threshold",
        "double",
        vocabulary.MATTE_THRESHOLD,
        "matte value at which a pixel counts",
        minimum=0.0,
        maximum=1.0,
        group="matte",
    ),
    ParamDescriptor(
        "mask_dilate",
        "matte dilate",
        "int",
        0,
        "grow (+) or shrink (-) the mattes, pixels",
        minimum=-256,
        maximum=256,
        group="matte",
    ),
    ParamDescriptor(
        "mask_feather",
        "matte feather",
        "double",
        0.0,
        "soft edge of the composite, pixels",
        minimum=0.0,
        maximum=256.0,
        group="matte",
    ),
    ParamDescriptor(
        "resample_mattes",
        "resample mattes",
        "bool",
        False,
        "let mattes of another size than the plate be resampled instead of refusing",
        group="matte",
    ),
    ParamDescriptor(
        "handles",
        "handles",
        "int",
        0,
        "extra frames rendered before and after the range",
        minimum=0,
        maximum=1000,
        group="frames",
    ),
    ParamDescriptor(
        "pixel_type", "pixel type", "choice", "auto", "auto: as the plate", choices=PIXEL_TYPES, group="output"
    ),
    ParamDescriptor(
        "compression", "compression", "choice", "zip", "EXR compression", choices=COMPRESSIONS, group="output"
    ),
    ParamDescriptor(
        "layers",
        "write layers",
        "bool",
        False,
        "also write the change in the output EXR: void.delta (result - plate), void.change, void.quadmask",
        group="output",
    ),
    ParamDescriptor("priority", "priority", "int", 0, "higher runs first", group="output"),
)
PARAMS_BY_NAME = {param.name: param for param in PARAMS}
# Each effect parameter build_spec takes, by build_spec's keyword: one table, so a new knob cannot be
# left out of the job.
BUILD_SPEC_KEYWORDS = {
    "quadmask": "quadmask",
    "steps": "steps",
    "guidance": "guidance",
    "seed": "seed",
    "passes": "passes",
    "quality": "quality",
    "crop": "crop_mode",
    "priority": "priority",
    "pixel_type": "pixel_type",
    "compression": "compression",
    "layers": "layers",
    "resample_mattes": "resample_mattes",
    "dilate": "mask_dilate",
    "feather": "mask_feather",
    "threshold": "mask_threshold",
}


def default_params() -> dict:
    return {param.name: param.default for param in PARAMS}


_TRUE_WORDS = ("1", "true", "yes", "on")
_FALSE_WORDS = ("0", "false", "no", "off", "")


def _boolean(value: Any) -> bool:
    # bool("false") is True: hosts and command lines hand strings, so words are read, not their truth.
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS or word in _FALSE_WORDS:
            return word in _TRUE_WORDS
        raise ValueError("use true or false")
    if isinstance(value, (bool, int)) and value in (0, 1):
        return bool(value)
    raise ValueError("use true or false")


def check_param(name: str, value: Any, where: str = "") -> Any:
    """`value` converted to the parameter's type; raises InvalidInput naming the parameter (and `where`)."""
    label = f"{where}: " if where else ""
    param = PARAMS_BY_NAME.get(name)
    if param is None:
        known = ", ".join(PARAMS_BY_NAME)
        raise errors.InvalidInput(f"{label}unknown parameter '{name}' (known: {known})", reason="BAD_VALUE", field=name)
    try:
        if param.kind == "string":
            converted: Any = str(value)
        elif param.kind == "choice":
            converted = str(value)
            if converted not in param.choices:
                raise ValueError(f"choose {', '.join(param.choices)}")
        elif param.kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError("not a whole number")
            converted = int(value)
        elif param.kind == "double":
            converted = float(value)
        else:
            converted = _boolean(value)
    except (TypeError, ValueError) as exc:
        raise errors.InvalidInput(
            f"{label}parameter '{name}' = {value!r} is not a valid {param.kind} ({exc})", reason="BAD_VALUE", field=name
        ) from None
    if param.minimum is not None and converted < param.minimum:
        raise errors.InvalidInput(
            f"{label}parameter '{name}' = {converted} is below its minimum {param.minimum}",
            reason="BAD_VALUE",
            field=name,
        )
    if param.maximum is not None and converted > param.maximum:
        raise errors.InvalidInput(
            f"{label}parameter '{name}' = {converted} is above its maximum {param.maximum}",
            reason="BAD_VALUE",
            field=name,
        )
    return converted


@dataclass
class ClipInput:
    """Media for one input clip, as the host sees it.

    `path` is a sequence pattern (####, %04d, @), a movie or a single image. `first`/`last` is
    the range that exists (in the clip's own numbering), None when the host does not know it.
    `width`/`height` are the clip's format when the host knows it (used to refuse mismatched
    mattes before anything is sent). `label` names the clip the way the host shows it (a node
    name, an input name) so errors point at it.
    """

    path: str
    first: Optional[int] = None
    last: Optional[int] = None
    width: Optional[int] = None
    height: Optional[int] = None
    channels: str = ""
    colorspace: str = ""
    rate: float = 24.0
    label: str = ""

    def frame_path(self, frame: int) -> str:
        pattern = None if is_movie(self.path) else SequencePattern.parse(self.path)
        if pattern is None:
            return self.path
        return (pattern if pattern.padding else pattern.with_padding(4)).path(frame)


@dataclass
class RemoveEffect:
    """An instance of the removal effect in the "general" context, ready to become a job.

    `frames` is the range the user asked for (None: the Source clip's whole range); the job
    renders `frames` widened by the `handles` parameter. `output` is the output path template.
    """

    source: Optional[ClipInput]
    mask: Optional[ClipInput]
    output: str
    affected: Optional[ClipInput] = None
    frames: Optional[tuple] = None
    params: dict = field(default_factory=default_params)
    name: str = ""
    labels: dict = field(default_factory=dict)
    where: str = ""  # how the host names this instance in messages ("VoidRemove1")
    # Media the job does not read directly but must never write either: the files behind an input
    # the host renders to a temporary sequence first (a graded plate's Read, say).
    protected: list = field(default_factory=list)

    def __post_init__(self) -> None:
        merged = default_params()
        merged.update(self.params)
        self.params = merged

    def _prefix(self) -> str:
        return f"{self.where}: " if self.where else ""

    def checked_params(self) -> dict:
        return {name: check_param(name, value, self.where) for name, value in self.params.items()}

    def render_range(self) -> tuple:
        """Inclusive (first, last) the job renders, handles included.

        Without `frames` the job renders the Source clip's whole range: there is nothing beyond it
        for handles to take, so they widen only an explicit range.
        """
        handles = check_param("handles", self.params["handles"], self.where)
        if self.frames is not None:
            first, last = int(self.frames[0]), int(self.frames[1])
        elif self.source is not None and self.source.first is not None and self.source.last is not None:
            return int(self.source.first), int(self.source.last)
        else:
            raise errors.InvalidInput(
                f"{self._prefix()}no frame range given and the {SOURCE} clip's range is unknown",
                reason="EMPTY_RANGE",
                field="frames",
            )
        if last < first:
            raise errors.InvalidInput(
                f"{self._prefix()}frame range {first}-{last} is empty (last before first)",
                reason="EMPTY_RANGE",
                field="frames",
            )
        return first - handles, last + handles

    def validate(self) -> tuple:
        """Check clips, params, range and output; returns the render range. Raises InvalidInput / PermissionDenied."""
        prefix = self._prefix()
        if self.source is None or not self.source.path:
            raise errors.InvalidInput(f"{prefix}no plate: connect the {SOURCE} clip", reason="NO_SOURCE", field=SOURCE)
        params = self.checked_params()
        if self.mask is None or not self.mask.path:
            raise errors.InvalidInput(f"{prefix}no object matte: connect the {MASK} clip", reason="NO_MASK", field=MASK)
        first, last = self.render_range()
        clips = [(SOURCE, self.source), (MASK, self.mask)]
        if self.affected is not None:
            clips.append((AFFECTED, self.affected))
        for clip_name, clip in clips:
            if clip.first is None or clip.last is None:
                continue
            if first < clip.first or last > clip.last:
                handles = params["handles"]
                with_handles = f" (with {handles} handle frames)" if handles else ""
                raise errors.InvalidInput(
                    f"{prefix}frames {first}-{last}{with_handles} are outside the {clip_name} clip "
                    f"{clip.label or clip.path} (frames {clip.first}-{clip.last})",
                    reason="FRAME_RANGE_OUTSIDE_SOURCE",
                    field="frames",
                    file=clip.path,
                    frames=[f for f in (first, last) if f < clip.first or f > clip.last],
                )
        plate = self.source
        if plate.width and plate.height and not params["resample_mattes"]:
            for clip_name, clip in clips[1:]:
                if clip.width and clip.height and (clip.width, clip.height) != (plate.width, plate.height):
                    raise errors.InvalidInput(
                        f"{prefix}the {clip_name} clip {clip.label or clip.path} is {clip.width}x{clip.height} but "
                        f"the plate {plate.label or plate.path} is {plate.width}x{plate.height}: reformat the matte "
                        "to the plate's format or turn on 'resample mattes'",
                        reason="SIZE_MISMATCH",
                        field=clip_name,
                        file=clip.path,
                    )
        self._check_output(clips, first, last)
        return first, last

    def _check_output(self, clips: list, first: int, last: int) -> None:
        prefix = self._prefix()
        pattern = SequencePattern.parse(self.output) if self.output else None
        if pattern is None:
            raise errors.InvalidInput(
                f"{prefix}output '{self.output}' has no frame number: use a pattern such as clean.####.exr",
                reason="BAD_PATTERN",
                field="output",
            )
        if not pattern.padding:
            pattern = pattern.with_padding(4)
        sources = {}
        for clip_name, clip in [*clips, *(("upstream", clip) for clip in self.protected)]:
            for frame in range(first, last + 1):
                sources[os.path.realpath(clip.frame_path(frame))] = (
                    f"{clip_name} clip" if clip_name != "upstream" else f"input {clip.label or clip.path}"
                )
        for frame in range(first, last + 1):
            target = os.path.realpath(pattern.path(frame))
            if target in sources:
                raise errors.PermissionDenied(
                    f"{prefix}output {self.output} would overwrite frame {frame} of the {sources[target]} "
                    f"({pattern.path(frame)}); sources are never written: choose another output file name or folder",
                    reason="OUTPUT_OVERWRITES_SOURCE",
                    field="output",
                    file=pattern.path(frame),
                    frame=frame,
                )

    def to_job_spec(self) -> pb.JobSpec:
        """The JobSpec every host submits (through the one builder, `bridge.spec.build_spec`); validates first."""
        first, last = self.validate()
        params = self.checked_params()
        assert self.source is not None and self.mask is not None  # validate() refused otherwise
        keywords = {keyword: params[param] for keyword, param in BUILD_SPEC_KEYWORDS.items()}
        return build_spec(
            self.source,
            self.mask,
            self.affected,
            (first, last),
            params["prompt"],
            self.output,
            params["backend"],
            name=self.name,
            labels=self.labels,
            **keywords,
        )
