"""Where a clip's frames are on disk: image sequences, single images and movies.

A `MediaSource` answers "which frame numbers exist" and "which file (or movie frame) holds frame
N" without reading pixels, so a job can be refused before any work when frames are missing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from voidlink.protos.clips import ClipMedia, SequencePattern, is_movie

from voidlink.errors import InvalidInput, LimitExceeded, NotFound

# Image formats we read as sequences; anything OpenImageIO opens works, these are the ones we test.
IMAGE_SUFFIXES = (".exr", ".dpx", ".tif", ".tiff", ".png", ".jpg", ".jpeg", ".cin", ".hdr", ".sgi", ".tga")
# Where a movie without a frame range in its clip starts counting (Nuke and Resolve show 1).
MOVIE_FIRST_FRAME = 1


@dataclass
class MediaSource:
    """One clip's media: `kind` is "sequence", "image" (one file for every frame) or "movie"."""

    kind: str
    path: str  # as the user gave it: a pattern, an image or a movie
    frames: list[int] = field(default_factory=list)  # frame numbers that exist, sorted
    pattern: Optional[SequencePattern] = None
    movie_start: int = MOVIE_FIRST_FRAME  # frame number of the movie's first picture
    rate: float = 24.0

    def file_for(self, frame: int) -> str:
        if self.kind == "sequence":
            assert self.pattern is not None
            return self.pattern.path(frame)
        return self.path

    def movie_index(self, frame: int) -> int:
        return frame - self.movie_start

    @property
    def first(self) -> int:
        return self.frames[0]

    @property
    def last(self) -> int:
        return self.frames[-1]

    def missing(self, first: int, last: int) -> list[int]:
        """Frame numbers in [first, last] that this media does not have."""
        if self.kind == "image":
            return []
        have = set(self.frames)
        return [f for f in range(first, last + 1) if f not in have]

    def describe(self) -> str:
        if self.kind == "sequence" and self.frames:
            return f"{self.path} ({self.first}-{self.last})"
        return self.path


def gaps(frames: list[int]) -> list[tuple[int, int]]:
    """Runs of missing numbers between the first and last frame: [(first_missing, last_missing), ...]."""
    out = []
    for a, b in zip(frames, frames[1:]):
        if b > a + 1:
            out.append((a + 1, b - 1))
    return out


def format_frames(frames: list[int], limit: int = 12) -> str:
    """`[1003, 1004, 1005, 1010]` → `1003-1005, 1010`, shortened for messages."""
    runs: list[str] = []
    start = prev = None
    for f in frames:
        if start is None:
            start = prev = f
        elif f == prev + 1:
            prev = f
        else:
            runs.append(f"{start}-{prev}" if prev != start else f"{start}")
            start = prev = f
    if start is not None:
        runs.append(f"{start}-{prev}" if prev != start else f"{start}")
    text = ", ".join(runs[:limit])
    return text + (f" and {len(runs) - limit} more runs" if len(runs) > limit else "")


# The most frames one clip or job may span, and the largest frame number: bounds checked before any
# per-frame list is made, so a clip "1e9 frames long" is refused instead of filling memory.
MAX_FRAMES = 100_000
MAX_FRAME_NUMBER = 1_000_000_000


def check_range(first: int, last: int, field_name: str) -> None:
    """Refuse a frame range beyond the bounds: a frame number past +-MAX_FRAME_NUMBER, or more than
    MAX_FRAMES frames (an empty range is the caller's to word)."""
    for frame in (first, last):
        if abs(frame) > MAX_FRAME_NUMBER:
            raise InvalidInput(
                f"{field_name}: frame {frame} is beyond +-{MAX_FRAME_NUMBER:,}; no shot is numbered so",
                reason="FRAME_OUT_OF_RANGE",
                field=field_name,
            )
    if last - first + 1 > MAX_FRAMES:
        raise LimitExceeded(
            f"{field_name}: frames {first}-{last} are {last - first + 1:,} frames; a job takes at most "
            f"{MAX_FRAMES:,}: split the range",
            reason="TOO_MANY_FRAMES",
            field=field_name,
        )


def check_frames(media: MediaSource, first: int, last: int, field_name: str) -> None:
    """Refuse a frame range the clip's media does not hold: outside its frames (InvalidInput,
    FRAME_RANGE_OUTSIDE_SOURCE, on `spec.frames`), or with frames missing inside (NotFound,
    MISSING_FRAMES, on the clip's field). A single image holds every frame.

    The one rule the daemon's `prepare_job` and the panel's checks before submitting share, so both
    word a refusal alike."""
    if media.kind == "image":
        return
    if first < media.first or last > media.last:
        raise InvalidInput(
            f"{field_name}: frames {first}-{last} are outside {media.path} (frames {media.first}-{media.last})",
            reason="FRAME_RANGE_OUTSIDE_SOURCE",
            field="spec.frames",
            file=media.path,
            frames=[f for f in (first, last) if f < media.first or f > media.last],
        )
    missing = media.missing(first, last)
    if missing:
        raise NotFound(
            f"{field_name}: {len(missing)} frame(s) missing from {media.path}: {format_frames(missing)}",
            reason="MISSING_FRAMES",
            field=field_name,
            file=media.path,
            frames=missing,
        )


def discover(clip: ClipMedia, field_name: str = "clip") -> MediaSource:
    """Find the frames of a clip on disk; raises NotFound naming the clip when there are none."""
    path = clip.path
    if is_movie(path):
        return _movie(clip, field_name)
    pattern = SequencePattern.parse(path)
    if pattern is None:
        if not os.path.isfile(path):
            raise NotFound(
                f"{field_name}: file not found: {path}", reason="FILE_NOT_FOUND", field=field_name, file=path
            )
        frames = []
        if clip.first is not None and clip.last is not None:
            check_range(clip.first, clip.last, field_name)
            frames = list(range(clip.first, clip.last + 1))
        return MediaSource(kind="image", path=path, frames=frames, rate=clip.rate)
    folder = Path(pattern.directory)
    if not folder.is_dir():
        raise NotFound(
            f"{field_name}: folder not found: {folder} (for {path})",
            reason="FILE_NOT_FOUND",
            field=field_name,
            file=path,
        )
    regex = pattern.regex()
    found: dict[int, str] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            m = regex.match(entry.name)
            if m is None:
                continue
            digits = m.group(1).lstrip("-")
            if len(digits) > max(pattern.padding, 1) and digits.startswith("0"):
                continue  # name.00100.exr is not frame 100 of name.####.exr
            found[int(m.group(1))] = entry.name
    if not found:
        raise NotFound(
            f"{field_name}: no frames match {path} in {folder}", reason="FILE_NOT_FOUND", field=field_name, file=path
        )
    if pattern.discover_padding:
        # `@` leaves the padding to the disk: name.0008.exr is padded to 4, name.8.exr not at all.
        padded = [len(found[f].removeprefix(_basename(pattern.prefix))) - len(pattern.suffix) for f in found if f >= 0]
        zero_led = any(found[f][len(_basename(pattern.prefix))] == "0" and f != 0 for f in found if f >= 0)
        pattern = pattern.with_padding(min(padded) if zero_led and padded else 0)
    return MediaSource(kind="sequence", path=path, frames=sorted(found), pattern=pattern, rate=clip.rate)


def _basename(prefix: str) -> str:
    return prefix.replace("\\", "/").rsplit("/", 1)[-1]


def _movie(clip: ClipMedia, field_name: str) -> MediaSource:
    path = clip.path
    if not os.path.isfile(path):
        raise NotFound(f"{field_name}: movie not found: {path}", reason="FILE_NOT_FOUND", field=field_name, file=path)
    import cv2

    capture = cv2.VideoCapture(path)
    try:
        if not capture.isOpened():
            raise InvalidInput(
                f"{field_name}: cannot open movie {path} (unsupported codec or damaged file)",
                reason="UNREADABLE_FILE",
                field=field_name,
                file=path,
            )
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        rate = float(capture.get(cv2.CAP_PROP_FPS) or clip.rate)
    finally:
        capture.release()
    if count <= 0:
        raise InvalidInput(
            f"{field_name}: movie {path} has no frames", reason="UNREADABLE_FILE", field=field_name, file=path
        )
    # Movies are numbered from their first picture, as hosts show them; a clip's range selects frames.
    start = MOVIE_FIRST_FRAME
    return MediaSource(kind="movie", path=path, frames=list(range(start, start + count)), movie_start=start, rate=rate)
