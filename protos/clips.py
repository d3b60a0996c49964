"""Clips as the contract carries them: OTIO JSON on the wire, sequence patterns on disk.

Both sides of the protocol use this module: the client builds `ClipSpec.otio_json` from a path
the user typed, the daemon reads the media back out of it. Only strings here, no disk access.

Sequence patterns: `name.####.exr` (one `#` per digit), `name.%04d.exr`, `name.@.exr` (`@`
alone: any padding, found on disk; `@@@@`: four digits), and a literal frame number as in
`name.1001.exr` when the caller asks for it.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from typing import Optional
from urllib.parse import unquote, urlparse

MOVIE_SUFFIXES = (".mov", ".mp4", ".m4v", ".mxf", ".avi", ".mkv", ".webm")

_PRINTF = re.compile(r"%(0?)(\d*)d")
_HASHES = re.compile(r"#+")
_ATS = re.compile(r"@+")


@dataclass(frozen=True)
class SequencePattern:
    """A frame-numbered file name: `prefix` + number padded to `padding` digits + `suffix`.

    `padding == 0` means unpadded numbers (`name.7.exr`) or, from a single `@`, "as on disk".
    """

    prefix: str
    suffix: str
    padding: int
    discover_padding: bool = False

    @classmethod
    def parse(cls, text: str) -> Optional[SequencePattern]:
        """The pattern in `text`, or None when it names a single file."""
        head, tail = _split_dir(text)
        for regex, kind in ((_PRINTF, "printf"), (_HASHES, "hash"), (_ATS, "at")):
            matches = list(regex.finditer(tail))
            if not matches:
                continue
            m = matches[-1]  # the frame number is the last token: shot_v003.####.exr
            if kind == "printf":
                padding = int(m.group(2) or 0)
                discover = False
            elif kind == "hash":
                padding = len(m.group(0))
                discover = False
            else:
                padding = len(m.group(0)) if len(m.group(0)) > 1 else 0
                discover = len(m.group(0)) == 1
            return cls(head + tail[: m.start()], tail[m.end() :], padding, discover)
        return None

    def path(self, frame: int) -> str:
        sign = "-" if frame < 0 else ""
        return f"{self.prefix}{sign}{abs(frame):0{self.padding}d}{self.suffix}"

    def printf(self) -> str:
        """The pattern as `%04d` (what Nuke's Read and most tools accept)."""
        token = f"%0{self.padding}d" if self.padding else "%d"
        return f"{self.prefix}{token}{self.suffix}"

    def hashes(self) -> str:
        return f"{self.prefix}{'#' * max(self.padding, 1)}{self.suffix}"

    def with_padding(self, padding: int) -> SequencePattern:
        return SequencePattern(self.prefix, self.suffix, padding, False)

    def regex(self) -> re.Pattern:
        """Matches file names (no folder) of this sequence; group 1 is the frame number."""
        _, prefix = _split_dir(self.prefix)
        if self.discover_padding or self.padding == 0:
            digits = r"(-?\d+)"
        else:
            digits = rf"(-?\d{{{self.padding},}})"
        return re.compile("^" + re.escape(prefix) + digits + re.escape(self.suffix) + "$")

    @property
    def directory(self) -> str:
        return _split_dir(self.prefix)[0].rstrip("/\\") or "."


def _split_dir(text: str) -> tuple[str, str]:
    cut = max(text.rfind("/"), text.rfind("\\")) + 1
    return text[:cut], text[cut:]


def is_movie(path: str) -> bool:
    return path.lower().endswith(MOVIE_SUFFIXES)


def url_to_path(url: str) -> str:
    """`file:///shows/a.exr` → `/shows/a.exr`; plain paths pass through."""
    if url.startswith("file:"):
        parsed = urlparse(url)
        path = unquote(parsed.path)
        if re.match(r"^/[A-Za-z]:", path):  # file:///C:/shows → C:/shows
            path = path[1:]
        return path
    return url


@dataclass(frozen=True)
class ClipMedia:
    """What the daemon needs from a clip: where its frames are and which ones."""

    path: str  # a sequence pattern, a movie or a single image
    first: Optional[int] = None  # inclusive frame range, None when the media decides
    last: Optional[int] = None
    rate: float = 24.0
    name: str = ""

    @property
    def pattern(self) -> Optional[SequencePattern]:
        return None if is_movie(self.path) else SequencePattern.parse(self.path)


def clip_json(
    path: str,
    first: Optional[int] = None,
    last: Optional[int] = None,
    rate: float = 24.0,
    name: str = "",
    metadata: Optional[dict] = None,
) -> str:
    """An OTIO Clip (as JSON) for a sequence pattern, movie or image, with an optional frame range.

    `metadata` goes into the clip's metadata as it is (e.g. `{"voidlink": {"provenance": {...}}}`).
    """
    import opentimelineio as otio

    pattern = None if is_movie(path) else SequencePattern.parse(path)
    available = None
    if first is not None and last is not None:
        if last < first:
            raise ValueError(f"frame range {first}-{last} of {path} is empty (last before first)")
        available = otio.opentime.TimeRange(
            otio.opentime.RationalTime(first, rate), otio.opentime.RationalTime(last - first + 1, rate)
        )
    if pattern is not None and first is not None:
        directory, prefix = _split_dir(pattern.prefix)
        ref = otio.schema.ImageSequenceReference(
            target_url_base=directory,
            name_prefix=prefix,
            name_suffix=pattern.suffix,
            start_frame=first,
            frame_step=1,
            rate=rate,
            frame_zero_padding=pattern.padding,
            available_range=available,
        )
    else:
        ref = otio.schema.ExternalReference(target_url=path, available_range=available)
    clip = otio.schema.Clip(name=name or _split_dir(path)[1], media_reference=ref, source_range=available)
    if metadata:
        clip.metadata.update(metadata)
    return otio.adapters.write_to_string(clip, "otio_json")


def _why_not_otio(text: str, exc: Exception) -> str:
    """What is wrong with a clip's JSON, in a client's words: where strict JSON breaks, else which OTIO
    rule it misses (with a minimal example), never only a C++ type name."""
    try:
        json.loads(text)
    except json.JSONDecodeError as error:
        return f"not valid JSON at line {error.lineno} column {error.colno}: {error.msg}"
    message = str(exc)
    missing = re.search(r"of type '\w*?(\d?[A-Za-z]+)E'\): (\w+)", message)
    if missing:
        kind = re.sub(r"^\d+", "", missing.group(1))
        return f"not an OTIO clip: its {kind} has no '{missing.group(2)}' field (OpenTimelineIO needs it)"
    if "OTIO_SCHEMA" in message or "schema" in message.lower():
        return (
            f"not an OTIO clip ({message}): every object needs its OTIO_SCHEMA, e.g. "
            '{"OTIO_SCHEMA": "Clip.2", "media_references": {"DEFAULT_MEDIA": {"OTIO_SCHEMA": '
            '"ImageSequenceReference.1", ...}}, "active_media_reference_key": "DEFAULT_MEDIA"}'
        )
    return f"not valid OTIO JSON ({message})"


def clip_media(otio_json: str, field: str = "clip") -> ClipMedia:
    """Read a `ClipSpec.otio_json` back; raises ValueError naming `field` when it is not a usable clip."""
    import opentimelineio as otio

    if not otio_json.strip():
        raise ValueError(f"{field}: no clip given")
    try:
        # OpenTimelineIO first: it reads what strict JSON does not (Inf, NaN in otio_big_int files).
        clip = otio.adapters.read_from_string(otio_json, "otio_json")
    except Exception as exc:  # otio raises several unrelated types for bad JSON
        raise ValueError(f"{field}: {_why_not_otio(otio_json, exc)}") from exc
    if not isinstance(clip, otio.schema.Clip):
        got = "a plain object with no OTIO_SCHEMA" if type(clip).__name__ == "AnyDictionary" else type(clip).__name__
        raise ValueError(f'{field}: expected an OTIO Clip (an object with "OTIO_SCHEMA": "Clip.2"), got {got}')
    ref = clip.media_reference
    rate = 24.0
    rng = clip.source_range
    if rng is None and ref is not None and getattr(ref, "available_range", None) is not None:
        rng = ref.available_range
    first = last = None
    if rng is not None:
        numbers = (rng.start_time.value, rng.duration.value, rng.start_time.rate)
        if not all(math.isfinite(n) for n in numbers):
            raise ValueError(f"{field}: clip '{clip.name}' has a source range that is not finite ({rng})")
        rate = rng.start_time.rate or rate
        first = int(round(rng.start_time.value))
        last = first + int(round(rng.duration.value)) - 1
    if isinstance(ref, otio.schema.ImageSequenceReference):
        base = url_to_path(ref.target_url_base)
        if base and not base.endswith(("/", "\\")):
            base += "/"
        padding = ref.frame_zero_padding
        path = f"{base}{ref.name_prefix}{'#' * padding if padding else '@'}{ref.name_suffix}"
        rate = ref.rate or rate
    elif isinstance(ref, otio.schema.ExternalReference):
        path = url_to_path(ref.target_url)
    else:
        raise ValueError(f"{field}: clip '{clip.name}' has no file media reference ({type(ref).__name__})")
    if not path:
        raise ValueError(f"{field}: clip '{clip.name}' has an empty media path")
    return ClipMedia(path=path, first=first, last=last, rate=float(rate), name=clip.name)


def default_side_pattern(output: SequencePattern, kind: str, suffix: str = ".png") -> SequencePattern:
    """Where a job's quadmask or raw sequence goes when its spec names none: `<out>/<kind>/<stem>_<kind>.####.png`
    (the daemon writes there; a client fetching a streamed result puts it at the same place beside its output)."""
    folder, stem = os.path.split(output.prefix)
    stem = stem.rstrip("._-") or "frame"
    return SequencePattern(os.path.join(folder, kind, f"{stem}_{kind}."), suffix, max(output.padding, 4))


def default_affected_pattern(output: SequencePattern) -> SequencePattern:
    """Where a matte job's affected proposal goes when its spec names none: beside the matte, as
    `<matte stem>_affected.####<matte's extension>`."""
    folder, stem = os.path.split(output.prefix)
    stem = stem.rstrip("._-") or "matte"
    return SequencePattern(os.path.join(folder, f"{stem}_affected."), output.suffix, max(output.padding, 4))


def wants_affected(spec) -> bool:
    """Whether a matte job writes an affected proposal (asked for, or implied by words of what it affects)."""
    return spec.HasField("matte") and (spec.matte.propose_affected or bool(spec.matte.affected_text.strip()))


def side_templates(spec) -> dict[str, str]:
    """The side sequences' templates the spec names, by kind ("quadmask", "raw", a matte job's "affected")."""
    named = {"quadmask": spec.output.quadmask_template, "raw": spec.output.raw_template}
    if spec.HasField("matte"):
        named["affected"] = spec.matte.affected_template
    return {kind: template for kind, template in named.items() if template}


def written_sides(spec) -> list[str]:
    """The kinds of side sequence the job writes, in the order they are checked: a matte job's affected
    proposal, then the quadmask, then the raw sequence."""
    writes = {"affected": wants_affected(spec), "quadmask": spec.output.write_quadmask, "raw": spec.output.write_raw}
    return [kind for kind, written in writes.items() if written]
