"""Reading an editorial timeline: OTIO files through OpenTimelineIO, EDLs through our own reader.

EDLs are read by `edl_read` (every line kept for writing back; the rate from `rate=`, else the
header, else the frame field, else 24). Drop-frame timecodes written with colons under
`FCM: DROP FRAME` (as Avid writes them) count drop-frame; timecodes that cross midnight
(`23:59:59:00` → `00:00:01:00`) count on past 24 hours, the way a tape keeps running.

Errors are `TimelineError`s naming the file and, for EDLs, the line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Optional

from voidlink.bridge.conform.rates import (  # noqa: F401 (the names conform has always offered here)
    RATES,
    TimelineError,
    is_drop_frame_rate,
    nearest_rate,
    parse_rate,
)

EDL_SUFFIXES = (".edl",)


@dataclass
class TimelineFile:
    """A timeline as read: the OTIO object, its rate, and whether its timecode counts drop-frame."""

    path: str
    timeline: object  # opentimelineio.schema.Timeline
    rate: float
    drop_frame: bool = False
    kind: str = "otio"  # "edl" or "otio" (anything OpenTimelineIO reads)
    edl: Optional[object] = None  # the EdlDocument an EDL was read from (its lines, events, notes)

    @property
    def stem(self) -> str:
        return os.path.splitext(os.path.basename(self.path))[0]


def read_timeline(path: str, rate: Optional[float] = None) -> TimelineFile:
    """Read an EDL or anything OpenTimelineIO reads; raises `TimelineError` naming file (and line)."""
    if not os.path.isfile(path):
        raise TimelineError("timeline not found", file=path, reason="FILE_NOT_FOUND")
    if path.lower().endswith(EDL_SUFFIXES):
        return _read_edl(path, rate)
    return _read_otio(path, rate)


# -- OTIO ------------------------------------------------------------------------------------


def _read_otio(path: str, rate: Optional[float]) -> TimelineFile:
    import opentimelineio as otio

    if path.lower().endswith(".otio"):
        # OTIO's own JSON reader names no line: find it with the standard library first.
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            message = f"not valid OTIO JSON: {exc.msg} (column {exc.colno})"
            raise TimelineError(message, file=path, line=exc.lineno) from None
    try:
        result = otio.adapters.read_from_file(path)
    except Exception as exc:  # adapters raise many unrelated types
        raise TimelineError(f"OpenTimelineIO cannot read it: {exc}", file=path) from exc
    if isinstance(result, otio.schema.SerializableCollection):
        timelines = list(result.find_children(descended_from_type=otio.schema.Timeline, shallow_search=True))
        if len(timelines) != 1:
            raise TimelineError(f"holds {len(timelines)} timelines; conform needs exactly one", file=path)
        result = timelines[0]
    if not isinstance(result, otio.schema.Timeline):
        raise TimelineError(f"holds a {type(result).__name__}, not a timeline", file=path)
    found = rate or _otio_rate(result)
    return TimelineFile(path=path, timeline=result, rate=found, drop_frame=is_drop_frame_rate(found), kind="otio")


def _otio_rate(timeline) -> float:
    if timeline.global_start_time is not None and timeline.global_start_time.rate:
        return nearest_rate(timeline.global_start_time.rate)
    import opentimelineio as otio

    for clip in timeline.find_clips():
        rng = clip.source_range
        if rng is not None and rng.duration.rate:
            return nearest_rate(rng.duration.rate)
    duration = timeline.duration()
    if isinstance(timeline, otio.schema.Timeline) and duration.rate:
        return nearest_rate(duration.rate)
    return RATES["24"]


# -- EDL -------------------------------------------------------------------------------------


def _read_edl(path: str, rate: Optional[float]) -> TimelineFile:
    from voidlink.bridge.conform.edl_read import build_timeline, read_edl_document

    document = read_edl_document(path, rate)
    timeline = build_timeline(document, os.path.splitext(os.path.basename(path))[0])
    return TimelineFile(
        path=path,
        timeline=timeline,
        rate=document.rate,
        drop_frame=document.drop_frame,
        kind="edl",
        edl=document,
    )
