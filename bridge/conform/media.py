"""Where a marked event's pictures and mattes are on disk, and which frame numbers it needs.

Source media, in order:

1. `pins` (`--media NAME=PATH`): a reel or clip name the user tied to a file or sequence;
2. the clip's OTIO media reference, when its files exist (relative paths are taken from the
   timeline's folder);
3. the source file paths editorial wrote (`FROM CLIP:`, `FROM FILE:`, `SOURCE FILE:`; Windows
   paths through the path map), when they exist;
4. a search of the media roots by the best evidence first: the clip name (also without its frame
   number and extension, as Premiere names clips), the file names of those paths, then the reel
   (Avid's trailing `.` padding removed): an image sequence whose name stem
   is that name (`A001C003.####.exr`, `A001C003_####.dpx`), an image sequence inside a folder of
   that name, or a movie of that stem (`A001C003.mov`). Names compare case-insensitively, since
   EDLs upper-case reels. Several different matches are an error asking for a pin.

Frame numbers. An event's source range is timecode at the timeline's rate; it becomes frame numbers
of the media as follows:

* an OTIO `ImageSequenceReference` with an available range maps time to frames itself;
* a sequence that carries timecode (`smpte:TimeCode` in the EXR header of its first frame) is
  numbered from that timecode: frame = first frame + (source timecode - first frame's timecode);
* any other sequence is numbered by timecode: frame number = the source timecode counted in frames
  at the timeline's rate (00:00:41:17 at 24 fps is frame 1001);
* a movie's first picture is frame 1, at the reference's available-range start (else 00:00:00:00).

The frames processed are the event's visible source range (including the frames a dissolve uses)
plus `handles` on each side, cut to the frames that exist (with a warning).

Mattes: `--mattes PATTERN` (and `--affected PATTERN`) with `{dir}` (the plate's folder), `{stem}`
(the plate's name without frame number and extension), `{reel}`, `{clip}`, `{event}`, `{sep}`,
`{frame}` and `{ext}` (the plate's separator, frame token and extension), or a frame token of its
own (`####`, `%04d`). Without it the mattes follow the plate's own naming and padding: for
`A001C003.0086501.exr` the first existing of `A001C003_mask.#######.exr`, `A001C003_matte...`,
`mattes/A001C003.#######.exr` is the object matte, and `A001C003_affected.#######.exr`, when it
exists, the matte of the object's effects (shadows...). Mattes are numbered like the plate.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Optional

from voidlink.protos.clips import MOVIE_SUFFIXES, SequencePattern, is_movie, url_to_path

from voidlink.errors import InvalidInput, NotFound

IMAGE_SUFFIXES = (".exr", ".dpx", ".tif", ".tiff", ".png", ".jpg", ".jpeg")
# Mattes follow the plate's own naming: its separator before the frame number, its padding, its extension
# (then .exr, for DPX or TIFF plates with EXR roto).
DEFAULT_MATTES = (
    "{dir}/{stem}_mask{sep}{frame}{ext}",
    "{dir}/{stem}_mask{sep}{frame}.exr",
    "{dir}/{stem}_matte{sep}{frame}{ext}",
    "{dir}/{stem}_matte{sep}{frame}.exr",
    "{dir}/mattes/{stem}{sep}{frame}{ext}",
    "{dir}/mattes/{stem}{sep}{frame}.exr",
)
DEFAULT_AFFECTED = ("{dir}/{stem}_affected{sep}{frame}{ext}", "{dir}/{stem}_affected{sep}{frame}.exr")
# Sequences with these name endings are mattes or outputs, never a plate.
_NOT_PLATES = ("_mask", "_matte", "_affected", "_void", "_quadmask")
_NUMBERED = re.compile(r"^(.*?)(\d+)(\.[A-Za-z0-9]+)$")


class MediaError(InvalidInput):
    """An event's media cannot be used; `status` is what the report shows for the event."""

    def __init__(self, message: str, status: str, candidates: Optional[list] = None, file: str = "") -> None:
        super().__init__(message, reason=status.upper(), file=file)
        self.status = status
        self.candidates = list(candidates or [])


@dataclass
class EventMedia:
    """What a job for one event reads: the plate, its mattes and the frame numbers."""

    plate: str  # a sequence pattern with #### or a movie path
    first: int  # frames to process, handles included
    last: int
    event_first: int  # the event's own first and last source frames (no handles)
    event_last: int
    mask: str
    affected: Optional[str] = None
    origin: str = ""  # "pin", "timeline reference", "source file", "clip name" or "reel"
    warnings: list = field(default_factory=list)
    padding: int = 4  # the plate's frame-number digits (the clean frames are numbered alike)
    reel: str = ""

    @property
    def frame_count(self) -> int:
        return self.last - self.first + 1

    @property
    def handles(self) -> tuple:
        return self.event_first - self.first, self.last - self.event_last


@dataclass(frozen=True)
class FoundMedia:
    """A plate on disk: a sequence (pattern with ####) or a movie."""

    path: str
    kind: str  # "sequence" or "movie"

    @property
    def stem(self) -> str:
        if self.kind == "movie":
            return os.path.splitext(os.path.basename(self.path))[0]
        pattern = SequencePattern.parse(self.path)
        return os.path.basename(pattern.prefix).rstrip("._-") if pattern else ""


class MediaIndex:
    """The plates under the media roots, by lower-case name (sequence stem, folder or movie stem)."""

    def __init__(self, roots: list) -> None:
        self.roots = [os.path.abspath(os.fspath(root)) for root in roots]
        self.by_name: dict = {}
        for root in self.roots:
            if not os.path.isdir(root):
                raise NotFound(f"media root not found: {root}", reason="FILE_NOT_FOUND", file=root)
            for folder, dirs, files in os.walk(root):
                dirs.sort()
                self._add_folder(folder, files)

    def _add_folder(self, folder: str, files: list) -> None:
        sequences: dict = {}
        for name in sorted(files):
            lower = name.lower()
            if lower.endswith(MOVIE_SUFFIXES):
                self._add(os.path.splitext(name)[0], FoundMedia(os.path.join(folder, name), "movie"))
                continue
            match = _NUMBERED.match(name)
            if match and match.group(3).lower() in IMAGE_SUFFIXES:
                prefix, digits, suffix = match.groups()
                sequences.setdefault((prefix, len(digits), suffix), 0)
                sequences[(prefix, len(digits), suffix)] += 1
        plates = []
        for (prefix, padding, suffix), _count in sorted(sequences.items()):
            stem = prefix.rstrip("._-")
            if stem.lower().endswith(_NOT_PLATES):
                continue
            found = FoundMedia(os.path.join(folder, f"{prefix}{'#' * padding}{suffix}"), "sequence")
            plates.append(found)
            if stem:
                self._add(stem, found)
        if len(plates) == 1:  # a folder named after the reel holding one plate: A001C003/plate.####.exr
            self._add(os.path.basename(folder), plates[0])

    def _add(self, name: str, found: FoundMedia) -> None:
        entries = self.by_name.setdefault(name.lower(), [])
        if found not in entries:
            entries.append(found)

    def lookup(self, names: list) -> list:
        """Candidates for the first of `names` that matches anything."""
        return self.lookup_named(names)[1]

    def lookup_named(self, names: list) -> tuple:
        """(the first of `names` that matches anything, its candidates), or ("", [])."""
        for name in names:
            if name and name.lower() in self.by_name:
                return name, list(self.by_name[name.lower()])
        return "", []


def _file_stems(name: str) -> list:
    """`ZZ100_501.take_1.0001.exr` → itself, without extension, without frame number and extension."""
    name = name.strip()
    out = [name, os.path.splitext(name)[0]]
    numbered = re.match(r"^(.*?)[._-]?(?:\[\d+-\d+\]|#+|%0?\d*d|\d+)\.[A-Za-z0-9]+$", name)
    if numbered:
        out.append(numbered.group(1))
    return out


def normal_reel(reel: str) -> str:
    """A reel as the plates are named: Avid pads reels with trailing dots (`Z677_4C.`)."""
    return reel.strip().rstrip(".").strip()


def source_file_paths(clip) -> list:
    """Paths editorial wrote for the clip (`FROM CLIP:`, `FROM FILE:`, `SOURCE FILE:`), Windows ones mapped."""
    from voidlink.bridge.pathmap import PathMap, is_windows_path

    paths = list((clip.metadata.get("cmx_3600") or {}).get("source_files") or [])
    out = []
    windows = None
    for path in paths:
        if is_windows_path(path):
            windows = windows or PathMap.from_environment(client_os="windows")
            mapped = windows.to_daemon(path)
            if mapped != path:
                out.append(mapped)
        out.append(path)
    return out


def name_evidence(clip) -> list:
    """(name, what it is) to look a clip's media up by, best evidence first: clip name, file names, reel."""
    reel = (clip.metadata.get("cmx_3600") or {}).get("reel") or ""
    names = [(stem, "clip name") for stem in _file_stems(clip.name or "")]
    for path in source_file_paths(clip):
        base = re.split(r"[\\/]", path)[-1]
        names.extend((stem, "source file") for stem in _file_stems(base))
    ref = clip.media_reference
    url = getattr(ref, "target_url", "") or ""
    if url:
        names.append((os.path.splitext(os.path.basename(url_to_path(url)))[0], "timeline reference"))
    names.extend([(reel.strip(), "reel"), (normal_reel(reel), "reel")])
    out, done = [], set()
    for name, kind in names:
        if name and name.upper() not in ("AX", "BL") and name.lower() not in done:
            done.add(name.lower())
            out.append((name, kind))
    return out


def event_names(clip) -> list:
    """Names to look a clip's media up by, best evidence first."""
    return [name for name, _ in name_evidence(clip)]


def frames_of(time_range, rate: float) -> tuple:
    """(first, last) frame counts of a range at `rate`: timecode in frames."""
    start = int(round(time_range.start_time.rescaled_to(rate).value))
    duration = int(round(time_range.duration.rescaled_to(rate).value))
    return start, start + duration - 1


def source_range_of(clip):
    """The clip's media that the edit shows, including what a neighbouring dissolve uses."""
    try:
        return clip.visible_range()
    except Exception:  # visible_range refuses transitions longer than the clip; the trim is still right
        return clip.trimmed_range()


def resolve_event_media(
    clip,
    rate: float,
    index: Optional[MediaIndex],
    handles: int = 0,
    timeline_dir: str = ".",
    pins: Optional[dict] = None,
    mattes: Optional[str] = None,
    affected: Optional[str] = None,
    label: str = "",
) -> EventMedia:
    """The plate, frames and mattes for one marked clip; raises `MediaError` when they cannot be used."""
    from voidlink.media.sequence import discover
    from voidlink.protos.clips import ClipMedia

    names = event_names(clip)
    found, origin, mapping = _find_plate(clip, rate, index, timeline_dir, pins or {}, names)
    want_first, want_last = frames_of(source_range_of(clip), rate)
    event_first, event_last = mapping(want_first), mapping(want_last)
    try:
        source = discover(ClipMedia(found.path, rate=rate), "plate")
    except (InvalidInput, NotFound) as exc:
        raise MediaError(f"{found.path}: {exc}", "missing_media", file=found.path) from None
    warnings = []
    missing = source.missing(event_first, event_last)
    if missing:
        raise MediaError(
            f"{found.path} lacks {len(missing)} of the event's frames {event_first}-{event_last} "
            f"(first missing: {missing[0]})",
            "missing_media",
            file=found.path,
        )
    first, last = event_first, event_last
    while first > event_first - handles and not source.missing(first - 1, first - 1):
        first -= 1
    while last < event_last + handles and not source.missing(last + 1, last + 1):
        last += 1
    if (event_first - first, last - event_last) != (handles, handles):
        warnings.append(
            f"only {event_first - first}+{last - event_last} of {handles}+{handles} handle frames exist in {found.path}"
        )
    reel = (clip.metadata.get("cmx_3600") or {}).get("reel") or ""
    padding, sep, ext = _numbering(found)
    tokens = {
        "dir": os.path.dirname(found.path),
        "stem": found.stem,
        "reel": normal_reel(reel),
        "clip": clip.name or "",
        "event": label,
        "sep": sep,
        "frame": "#" * padding,
        "ext": ext,
    }
    mask = _find_matte(mattes, DEFAULT_MATTES, tokens, first, last, "matte", required=True)
    affected_path = _find_matte(affected, DEFAULT_AFFECTED, tokens, first, last, "affected matte", required=False)
    return EventMedia(
        plate=found.path,
        first=first,
        last=last,
        event_first=event_first,
        event_last=event_last,
        mask=mask,
        affected=affected_path,
        origin=origin,
        warnings=warnings,
        padding=padding,
        reel=reel.strip(),
    )


def _numbering(found: FoundMedia) -> tuple:
    """(padding, separator before the frame number, extension) of a plate; a movie's mattes: 4, '.', '.exr'."""
    pattern = SequencePattern.parse(found.path) if found.kind == "sequence" else None
    if pattern is None:
        return 4, ".", ".exr"
    base = os.path.basename(pattern.prefix)
    stem = base.rstrip("._-")
    return max(pattern.padding, 1), base[len(stem) :] or ".", pattern.suffix or ".exr"


def _find_plate(clip, rate: float, index, timeline_dir: str, pins: dict, names: list):
    """(FoundMedia, origin, source frame count → frame number)."""
    import opentimelineio as otio

    for name in names:
        for key, path in pins.items():
            if key.lower() == name.lower():
                found = _as_found(os.path.abspath(path))
                return found, "pin", _mapping_for_disk(found, rate)
    ref = clip.media_reference
    if isinstance(ref, otio.schema.ImageSequenceReference):
        base = url_to_path(ref.target_url_base)
        if not os.path.isabs(base):
            base = os.path.join(timeline_dir, base)
        padding = ref.frame_zero_padding
        pattern = os.path.join(base, f"{ref.name_prefix}{'#' * max(padding, 1)}{ref.name_suffix}")
        found = FoundMedia(os.path.normpath(pattern), "sequence")
        if _exists(found):
            available = ref.available_range
            if available is not None:
                start = int(round(available.start_time.rescaled_to(rate).value))
                step = ref.frame_step or 1
                return found, "timeline reference", lambda frame: ref.start_frame + (frame - start) * step
            return found, "timeline reference", _mapping_for_disk(found, rate)
    elif isinstance(ref, otio.schema.ExternalReference) and ref.target_url:
        path = url_to_path(ref.target_url)
        if not os.path.isabs(path):
            path = os.path.join(timeline_dir, path)
        found = _as_found(os.path.normpath(path))
        if _exists(found):
            if found.kind == "movie" and ref.available_range is not None:
                start = int(round(ref.available_range.start_time.rescaled_to(rate).value))
                return found, "timeline reference", lambda frame: 1 + frame - start
            return found, "timeline reference", _mapping_for_disk(found, rate)
    for path in source_file_paths(clip):
        if not os.path.isabs(path) and not re.match(r"^[A-Za-z]:[\\/]", path):
            path = os.path.join(timeline_dir, path)
        found = _as_found(os.path.normpath(path))
        if _exists(found):
            return found, "source file", _mapping_for_disk(found, rate)
    if index is None:
        raise MediaError(f"no media for '{clip.name}' (no media reference and no --media-root)", "missing_media")
    evidence = dict(name_evidence(clip))
    hit, candidates = index.lookup_named(names)
    if not candidates:
        raise MediaError(
            f"no media named {' or '.join(repr(n) for n in names) or 'after the event'} under "
            + ", ".join(index.roots),
            "missing_media",
        )
    if len(candidates) > 1:
        listed = "; ".join(c.path for c in candidates)
        raise MediaError(
            f"'{names[0]}' matches {len(candidates)} media: {listed} (pick one with --media {names[0]}=PATH)",
            "ambiguous_media",
            candidates=[c.path for c in candidates],
        )
    return candidates[0], evidence.get(hit, "media root"), _mapping_for_disk(candidates[0], rate)


def _as_found(path: str) -> FoundMedia:
    if is_movie(path):
        return FoundMedia(path, "movie")
    pattern = SequencePattern.parse(path)
    if pattern is not None:
        return FoundMedia(path, "sequence")
    bracketed = re.match(r"^(.*?)\[(\d+)-(\d+)\](.*)$", path)  # EDL style: plate.[1001-1020].exr
    if bracketed:
        return FoundMedia(f"{bracketed.group(1)}{'#' * len(bracketed.group(2))}{bracketed.group(4)}", "sequence")
    match = _NUMBERED.match(os.path.basename(path))  # one frame of a sequence named
    if match:
        prefix, digits, suffix = match.groups()
        return FoundMedia(os.path.join(os.path.dirname(path), f"{prefix}{'#' * len(digits)}{suffix}"), "sequence")
    return FoundMedia(path, "movie")


def _exists(found: FoundMedia) -> bool:
    if found.kind == "movie":
        return os.path.isfile(found.path)
    pattern = SequencePattern.parse(found.path)
    if pattern is None or not os.path.isdir(pattern.directory):
        return False
    regex = pattern.regex()
    return any(regex.match(name) for name in os.listdir(pattern.directory))


def _mapping_for_disk(found: FoundMedia, rate: float):
    if found.kind == "movie":
        return lambda frame: 1 + frame
    first_frame, timecode = _sequence_timecode(found, rate)
    if timecode is None:
        return lambda frame: frame
    return lambda frame: first_frame + (frame - timecode)


def _sequence_timecode(found: FoundMedia, rate: float) -> tuple:
    """(first frame number, its timecode in frames) from the EXR header, or (0, None) without one."""
    pattern = SequencePattern.parse(found.path)
    if pattern is None:
        return 0, None
    regex = pattern.regex()
    numbers = sorted(int(m.group(1)) for m in map(regex.match, os.listdir(pattern.directory)) if m)
    if not numbers:
        return 0, None
    try:
        import OpenImageIO as oiio
    except ImportError:  # a host Python without OpenImageIO: number by timecode
        return numbers[0], None
    files = [name for name in os.listdir(pattern.directory) if regex.match(name)]
    first_file = next(name for name in files if int(regex.match(name).group(1)) == numbers[0])
    image = oiio.ImageInput.open(os.path.join(pattern.directory, first_file))
    if image is None:
        return numbers[0], None
    try:
        value = image.spec().getattribute("smpte:TimeCode")
    finally:
        image.close()
    if not value:
        return numbers[0], None
    from opentimelineio import opentime

    try:
        words = list(value) if not isinstance(value, int) else [value]
        text = _bcd_timecode(int(words[0]))
        return numbers[0], int(round(opentime.from_timecode(text, rate).value))
    except (ValueError, TypeError, IndexError):
        return numbers[0], None


def _bcd_timecode(word: int) -> str:
    """SMPTE 12M time-and-flags word (BCD hh:mm:ss:ff, as OpenEXR stores it) → `HH:MM:SS:FF`."""

    def bcd(value: int) -> int:
        return (value >> 4) * 10 + (value & 0xF)

    frames = bcd(word & 0x3F)
    seconds = bcd((word >> 8) & 0x7F)
    minutes = bcd((word >> 16) & 0x7F)
    hours = bcd((word >> 24) & 0x3F)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}:{frames:02d}"


def _find_matte(
    pattern: Optional[str], defaults: tuple, tokens: dict, first: int, last: int, what: str, required: bool
) -> Optional[str]:
    from voidlink.media.sequence import discover
    from voidlink.protos.clips import ClipMedia

    templates = (pattern,) if pattern else defaults
    tried = []
    for template in templates:
        try:
            path = os.path.normpath(template.format(**tokens))
            if path in tried:
                continue
        except (KeyError, IndexError) as exc:
            raise InvalidInput(
                f"--mattes pattern '{template}' uses an unknown token {exc} (use {{dir}} {{stem}} {{reel}} "
                "{clip} {event})",
                reason="BAD_VALUE",
                field="mattes",
            ) from None
        tried.append(path)
        try:
            source = discover(ClipMedia(path), what)
        except (InvalidInput, NotFound):
            continue
        missing = source.missing(first, last)
        if missing:
            raise MediaError(
                f"{what} {path} lacks {len(missing)} of frames {first}-{last} (first missing: {missing[0]})",
                "missing_mattes",
                file=path,
            )
        return path
    if required:
        raise MediaError(f"no {what}: tried {', '.join(tried)}", "missing_mattes", file=tried[0] if tried else "")
    return None
