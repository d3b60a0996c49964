"""Reading an editorial timeline: OTIO files through OpenTimelineIO, EDLs through its cmx_3600 adapter.

EDLs do not carry their rate, so it comes from the caller (`rate=`), else from the EDL itself:
`FCM: DROP FRAME` means 29.97 drop-frame, anything else 24. Before the adapter sees an EDL, two
things it cannot parse are normalised, without changing what the EDL means:

* drop-frame timecodes written with colons under `FCM: DROP FRAME` (Avid writes `01:00:00:00`,
  OpenTimelineIO only treats `01:00:00;00` as drop-frame) get their last separator turned into `;`;
* timecodes that cross midnight (`23:59:59:00` → `00:00:01:00`) are counted on past 24 hours
  (`24:00:01:00`), the way a tape keeps running; written EDLs wrap them back.

Errors are `TimelineError`s naming the file and, for EDLs, the line.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Optional

from voidlink.errors import InvalidInput

# Rates an editorial timeline uses; the NTSC ones are exact fractions so timecode maths is exact.
RATES = {
    "23.976": 24000 / 1001,
    "24": 24.0,
    "25": 25.0,
    "29.97": 30000 / 1001,
    "30": 30.0,
    "48": 48.0,
    "50": 50.0,
    "59.94": 60000 / 1001,
    "60": 60.0,
}
EDL_SUFFIXES = (".edl",)

_TIMECODE = re.compile(r"^(\d{1,2}):(\d\d):(\d\d)([:;.,])(\d\d)$")
_EVENT = re.compile(r"^\d+\s")
_FCM = re.compile(r"^FCM:\s*(.*)$", re.IGNORECASE)
_LOCATOR = re.compile(r"^(\*\s*LOC:\s*)(\S+)(.*)$")


class TimelineError(InvalidInput):
    """A timeline that cannot be read; `file` names it and `line` (EDLs) the offending line."""

    def __init__(self, message: str, *, file: str = "", line: Optional[int] = None, reason: str = "BAD_TIMELINE"):
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {message}" if where else message, reason=reason, file=file)
        self.line = line


@dataclass
class TimelineFile:
    """A timeline as read: the OTIO object, its rate, and whether its timecode counts drop-frame."""

    path: str
    timeline: object  # opentimelineio.schema.Timeline
    rate: float
    drop_frame: bool = False
    kind: str = "otio"  # "edl" or "otio" (anything OpenTimelineIO reads)

    @property
    def stem(self) -> str:
        return os.path.splitext(os.path.basename(self.path))[0]


def parse_rate(text: str) -> float:
    """`23.976`, `24`, `29.97`, ... (or `30000/1001`) → the exact rate."""
    key = text.strip().rstrip("0").rstrip(".") if "." in text else text.strip()
    if key in RATES:
        return RATES[key]
    if key == "23.98":
        return RATES["23.976"]
    try:
        value = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        value = 0.0
    for rate in RATES.values():
        if value and abs(value - rate) < 0.01:
            return rate
    raise InvalidInput(f"unsupported rate '{text}' (choose {', '.join(RATES)})", reason="BAD_VALUE", field="rate")


def nearest_rate(value: float) -> float:
    """The editorial rate closest to `value` (OTIO files store 23.976 as 23.976023976...)."""
    return min(RATES.values(), key=lambda rate: abs(rate - value))


def is_drop_frame_rate(rate: float) -> bool:
    return abs(rate - RATES["29.97"]) < 1e-3 or abs(rate - RATES["59.94"]) < 1e-3


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
    import opentimelineio as otio

    with open(path, encoding="utf-8", errors="replace") as handle:
        lines = handle.read().splitlines()
    drop_frame = any((_FCM.match(line.strip()) or [None, ""])[1].upper().startswith("DROP") for line in lines)
    if rate is None:
        rate = RATES["29.97"] if drop_frame else RATES["24"]
    elif not is_drop_frame_rate(rate):
        drop_frame = False
    numbered = normalise_edl(lines, rate, path)
    text = "\n".join(line for _, line in numbered) + "\n"
    try:
        timeline = otio.adapters.read_from_string(text, "cmx_3600", rate=rate)
    except Exception as exc:  # the adapter raises EDLParseError, ValueError, IndexError...
        line = _failing_line(numbered, rate)
        raise TimelineError(f"cannot parse EDL: {exc}", file=path, line=line) from exc
    if not timeline.name:
        timeline.name = os.path.splitext(os.path.basename(path))[0]
    return TimelineFile(path=path, timeline=timeline, rate=rate, drop_frame=drop_frame, kind="edl")


def _timecode_frames(tc: str, rate: float, line_number: int, path: str) -> int:
    from opentimelineio import opentime

    try:
        return int(round(opentime.from_timecode(tc, rate).value))
    except ValueError as exc:
        raise TimelineError(f"bad timecode '{tc}': {exc}", file=path, line=line_number) from exc


def normalise_edl(lines: list, rate: float, path: str = "") -> list:
    """(line number, text) pairs the adapter can parse: drop-frame separators and midnight as described above.

    Checks each event line's shape and timecodes on the way, so the common mistakes name their line.
    """
    day = int(round(rate * 86400))  # only to tell a wrap from an out-of-order event, so inexact is fine
    out = []
    drop = False
    last_record = None
    record_day = 0
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        fcm = _FCM.match(line)
        if fcm:
            drop = fcm.group(1).strip().upper().startswith("DROP") and is_drop_frame_rate(rate)
            out.append((number, line))
            continue
        if _EVENT.match(line):
            fields = line.split()
            if len(fields) not in (8, 9):
                raise TimelineError(
                    f"event line has {len(fields)} fields, expected 8 (cut) or 9 (transition): {line}",
                    file=path,
                    line=number,
                )
            timecodes = fields[-4:]
            for i, tc in enumerate(timecodes):
                if ":" not in tc and tc.isdigit():
                    continue  # plain frame counts are allowed
                if not _TIMECODE.match(tc):
                    raise TimelineError(f"'{tc}' is not a timecode (HH:MM:SS:FF)", file=path, line=number)
                timecodes[i] = _drop_separator(tc, drop)
            frames = [_timecode_frames(tc, rate, number, path) for tc in timecodes]
            # Source and record each count on past midnight when their out is before their in.
            src_in, src_out, rec_in, rec_out = frames
            if src_out < src_in:
                timecodes[1] = _plus_days(timecodes[1], 1)
            if last_record is not None and rec_in + record_day * day < last_record - day // 2:
                record_day += 1
            if record_day:
                timecodes[2] = _plus_days(timecodes[2], record_day)
            if rec_out < rec_in or record_day:
                timecodes[3] = _plus_days(timecodes[3], record_day + (1 if rec_out < rec_in else 0))
            last_record = _timecode_frames(timecodes[3], rate, number, path)
            out.append((number, " ".join(fields[:-4] + timecodes)))
            continue
        locator = _LOCATOR.match(line)
        if locator and _TIMECODE.match(locator.group(2)):
            out.append((number, locator.group(1) + _drop_separator(locator.group(2), drop) + locator.group(3)))
            continue
        out.append((number, line))
    return out


def _drop_separator(tc: str, drop: bool) -> str:
    if not drop:
        return tc
    return tc[:-3] + ";" + tc[-2:]


def _plus_days(tc: str, days: int) -> str:
    if not days:
        return tc
    hours, rest = tc.split(":", 1)
    return f"{int(hours) + 24 * days:02d}:{rest}"


def _failing_line(numbered: list, rate: float) -> Optional[int]:
    """The line of the first event the adapter refuses: the shortest failing prefix, by bisection."""
    import opentimelineio as otio

    starts = [i for i, (_, line) in enumerate(numbered) if _EVENT.match(line)]
    if not starts:
        return numbered[0][0] if numbered else None
    # A prefix ends before an event start; event k is in prefixes ending at starts[k+1] (or the end).
    ends = starts[1:] + [len(numbered)]

    def fails(k: int) -> bool:
        text = "\n".join(line for _, line in numbered[: ends[k]]) + "\n"
        try:
            otio.adapters.read_from_string(text, "cmx_3600", rate=rate)
        except Exception:
            return True
        return False

    low, high = 0, len(ends) - 1
    if not fails(high):
        return None
    while low < high:
        mid = (low + high) // 2
        if fails(mid):
            high = mid
        else:
            low = mid + 1
    return numbered[starts[low]][0]
