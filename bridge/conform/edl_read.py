"""Reading a CMX3600 EDL ourselves: every line kept, every event parsed, an OTIO track built from them.

The EDL is read into an `EdlDocument` that keeps each line as written (so it can be written back
line for line) and, per event, what its lines say: number, reel, channels, cut or transition (`D`,
`W001`...) with its duration, the four timecodes, the `FROM`/`TO CLIP NAME` notes, source file
paths (`FROM CLIP:`/`FROM FILE:`/`SOURCE FILE:`), `M2` speed lines, locators and every other note.
`build_timeline` turns it into the OTIO model conform works on (clips carry `metadata["cmx_3600"]`
with `reel`, `comments` and `source_files`, and `metadata["voidlink_edl"]` with the lines naming them).

Written by hand rather than through the `otio-cmx3600-adapter`, whose reader drops notes before the
first event, fails on a transition as first event, gives `FROM`/`TO CLIP NAME` of a dissolve to the
wrong clips, reads locators only with two-digit hours and places them in record or source time
depending on the path taken, and does not parse bracketed `FROM CLIP` ranges.

Rates: `--rate` when given; else the header's `FCM: DROP FRAME` (29.97), a rate in the `TITLE`
(`25 FPS`, `25p`), or the frame field (frames up to 24 can only be 25 fps); else 24. A frame field
beyond the rate in use is an error that says to pass `--rate`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

from voidlink.bridge.conform.rates import RATES, TimelineError, is_drop_frame_rate, parse_rate

_EVENT = re.compile(r"^\s*(\d+)\s+(\S+)\s+(\S+)\s+(C|D|W\d+|K[BO]?)\s+(?:(\d+)\s+)?(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*$")
_LOOKS_LIKE_EVENT = re.compile(r"^\s*\d+\s")
_TC = re.compile(r"^(?:(\d{1,2})[:;.,])?(\d{1,2})[:;.,](\d\d)([:;.,])(\d\d)$")
_FCM = re.compile(r"^\s*FCM:\s*(.*)$", re.IGNORECASE)
_TITLE = re.compile(r"^\s*TITLE:\s*(.*)$", re.IGNORECASE)
_TITLE_RATE = re.compile(r"(\d+(?:\.\d+)?)\s*(?:FPS|P)\b", re.IGNORECASE)
_LOC = re.compile(r"^\s*\*\s*LOC:\s*(\S+)\s*(.*)$", re.IGNORECASE)
_NOTE = re.compile(r"^\s*\*\s?(.*)$")
_M2 = re.compile(r"^\s*M2\s+(\S+)\s+(-?[\d.]+)\s+(\S+)\s*$", re.IGNORECASE)
_CLIP_NAME = re.compile(r"^(FROM|TO) CLIP NAME:\s*(.*?)\s*$", re.IGNORECASE)
_SOURCE_PATH = re.compile(
    r"^(FROM CLIP|FROM FILE|TO CLIP|TO FILE|SOURCE FILE|TO SOURCE FILE):\s*(.*?)\s*$", re.IGNORECASE
)
COLOURS = ("RED", "GREEN", "BLUE", "CYAN", "MAGENTA", "YELLOW", "BLACK", "WHITE", "ORANGE", "PURPLE", "PINK")
BLACK_REELS = ("BL", "BLK", "BLACK")


class EdlRateError(TimelineError):
    """A timecode's frame field beyond the rate in use: the EDL was made at another rate."""


@dataclass
class Locator:
    line: int  # index into EdlDocument.lines
    timecode: str  # as written
    colour: str
    text: str
    frames: Optional[int] = None  # record or source frames, once placed
    where: str = ""  # "record", "source" or why it could not be placed


@dataclass
class EdlEvent:
    number: str  # as written ("009")
    lines: list  # indices into EdlDocument.lines: the event line(s) and the notes under them
    event_line: int  # the line of the event's own picture (the D/W line of a transition)
    reel: str
    channels: str
    kind: str  # "C", "D", "W001", ...
    duration: int  # transition frames (0 for a cut)
    src_in: int
    src_out: int
    rec_in: int
    rec_out: int
    from_line: Optional[int] = None  # the zero-length outgoing line of a transition
    from_reel: str = ""
    from_src: int = 0
    clip_name: str = ""
    to_clip_name: str = ""
    from_clip_name: str = ""
    source_files: list = field(default_factory=list)  # (key, path) pairs as written
    speed: Optional[tuple] = None  # (reel, fps, source timecode) of an M2 line
    locators: list = field(default_factory=list)
    comments: list = field(default_factory=list)  # every other note, as the adapter keeps them

    @property
    def is_video(self) -> bool:
        return "V" in self.channels.upper() or self.channels.upper() == "B"

    @property
    def is_transition(self) -> bool:
        return self.kind != "C"


@dataclass
class EdlDocument:
    path: str
    lines: list  # the EDL's lines as written, without line ends
    events: list
    rate: float
    drop_frame: bool
    title: str = ""
    header: list = field(default_factory=list)  # indices of the lines before the first event
    notes: list = field(default_factory=list)  # how the rate was chosen, locators that could not be placed

    def line_number(self, index: int) -> int:
        return index + 1


# -- timecode --------------------------------------------------------------------------------


def nominal(rate: float) -> int:
    return int(round(rate))


def timecode_frames(tc: str, rate: float, drop: bool, hours: Optional[int] = None) -> Optional[int]:
    """Frames of `tc` (1- or 2-digit hours, no hours when `hours` is given, `;` drop-frame); None if not one."""
    from opentimelineio import opentime

    match = _TC.match(tc.strip())
    if match is None:
        return None
    hh, mm, ss, sep, ff = match.groups()
    h = int(hh) if hh is not None else (hours or 0)
    drop = drop or sep in ";,"
    text = f"{h % 24:02d}:{int(mm):02d}:{ss}{';' if drop else ':'}{ff}"
    try:
        value = int(round(opentime.from_timecode(text, rate).value))
    except ValueError:
        return None
    return value + (h // 24) * nominal(rate) * 86400


def frame_field(tc: str) -> int:
    match = _TC.match(tc.strip())
    return int(match.group(5)) if match else 0


# -- reading ---------------------------------------------------------------------------------


def read_edl_document(path: str, rate: Optional[float] = None) -> EdlDocument:
    with open(path, encoding="utf-8", errors="replace") as handle:
        lines = handle.read().splitlines()
    return parse_edl(lines, path, rate)


def parse_edl(lines: list, path: str = "", rate: Optional[float] = None) -> EdlDocument:
    rate, drop, notes = choose_rate(lines, path, rate)
    doc = EdlDocument(path=path, lines=list(lines), events=[], rate=rate, drop_frame=drop, notes=notes)
    current: Optional[EdlEvent] = None
    day = nominal(rate) * 86400
    last_record = None
    record_day = 0
    for index, raw in enumerate(lines):
        line = raw.strip()
        title = _TITLE.match(line)
        if title and current is None:
            doc.title = title.group(1).strip()
        fcm = _FCM.match(line)
        if fcm:
            drop = fcm.group(1).strip().upper().startswith("DROP") and is_drop_frame_rate(rate)
        event = _EVENT.match(line) if line else None
        if event is None and line and _LOOKS_LIKE_EVENT.match(line):
            fields = line.split()
            raise TimelineError(
                f"event line has {len(fields)} fields, expected 8 (cut) or 9 (transition): {line}",
                file=path,
                line=index + 1,
            )
        if event is None:
            if current is None:
                doc.header.append(index)
            else:
                current.lines.append(index)
                _note(current, index, line)
            continue
        number, reel, channels, kind, duration, *tcs = event.groups()
        frames = []
        for tc in tcs:
            value = int(tc) if tc.isdigit() else timecode_frames(tc, rate, drop)
            if value is None:
                raise TimelineError(f"'{tc}' is not a timecode (HH:MM:SS:FF)", file=path, line=index + 1)
            frames.append(value)
        src_in, src_out, rec_in, rec_out = frames
        if src_out < src_in:  # the source crosses midnight
            src_out += day
        if last_record is not None and rec_in + record_day * day < last_record - day // 2:
            record_day += 1
        rec_in += record_day * day
        rec_out += record_day * day
        if rec_out < rec_in:
            rec_out += day
        last_record = rec_out
        transition_start = (
            kind != "C"
            and current is not None
            and current.number == number
            and current.kind == "C"
            and current.from_line is None
            and current.src_in == current.src_out
            and current.rec_in == rec_in
        )
        if transition_start:
            # The zero-length line before it was this transition's outgoing side.
            current.from_line, current.from_reel, current.from_src = current.event_line, current.reel, current.src_in
            current.event_line = index
            current.lines.append(index)
            current.reel, current.channels, current.kind = reel, channels, kind
            current.duration = int(duration or 0)
            current.src_in, current.src_out, current.rec_in, current.rec_out = src_in, src_out, rec_in, rec_out
            current.from_clip_name, current.clip_name = current.clip_name, ""
            continue
        current = EdlEvent(
            number, [index], index, reel, channels, kind, int(duration or 0), src_in, src_out, rec_in, rec_out
        )
        doc.events.append(current)
    for event in doc.events:
        _place_locators(doc, event)
    return doc


def _note(event: EdlEvent, index: int, line: str) -> None:
    speed = _M2.match(line)
    if speed:
        event.speed = (speed.group(1), float(speed.group(2)), speed.group(3))
        return
    loc = _LOC.match(line)
    if loc:
        words = loc.group(2).split(None, 1)
        colour = words[0].upper() if words and words[0].upper() in COLOURS else ""
        text = (words[1] if len(words) > 1 else "") if colour else loc.group(2)
        event.locators.append(Locator(index, loc.group(1), colour, text.strip()))
        return
    note = _NOTE.match(line)
    if note is None:
        event.comments.append(line)  # Resolve's ` |C:... |M:... |D:1` and other unstarred notes
        return
    text = note.group(1).strip()
    name = _CLIP_NAME.match(text)
    if name:
        side, value = name.group(1).upper(), name.group(2)
        if side == "TO":
            event.to_clip_name = value
        elif event.from_line is not None:
            event.from_clip_name = value  # in a transition FROM names the outgoing clip
        else:
            event.clip_name = value
        return
    source = _SOURCE_PATH.match(text)
    if source:
        event.source_files.append((source.group(1).upper(), source.group(2)))
    event.comments.append(text)


def _place_locators(doc: EdlDocument, event: EdlEvent) -> None:
    """Each locator's frames: in the event's record range, else its source range; hour-less ones too."""
    for loc in event.locators:
        candidates = []
        for hours in dict.fromkeys(_hours(f, doc.rate) for f in (event.rec_in, event.rec_out - 1, event.src_in)):
            value = timecode_frames(loc.timecode, doc.rate, doc.drop_frame, hours)
            if value is not None:
                candidates.append(value)
        if not candidates:
            loc.where = f"'{loc.timecode}' is not a timecode"
            continue
        for value in candidates:
            if event.rec_in <= value < max(event.rec_out, event.rec_in + 1):
                loc.frames, loc.where = value, "record"
                break
        else:
            for value in candidates:
                if event.src_in <= value < max(event.src_out, event.src_in + 1):
                    loc.frames, loc.where = value, "source"
                    break
            else:
                loc.frames, loc.where = None, f"{loc.timecode} is outside the event; kept on the event it is under"


def _hours(frames: int, rate: float) -> int:
    return int(frames // (nominal(rate) * 3600))


def choose_rate(lines: list, path: str, rate: Optional[float]) -> tuple:
    """(rate, drop frame, notes) as the module docstring says."""
    notes = []
    drop = any(_FCM.match(line) and _FCM.match(line).group(1).strip().upper().startswith("DROP") for line in lines)
    highest, where = 0, None
    for index, line in enumerate(lines):
        event = _EVENT.match(line.strip())
        tcs = list(event.groups()[5:]) if event else []
        loc = _LOC.match(line)
        if loc:
            tcs.append(loc.group(1))
        for tc in tcs:
            value = frame_field(tc)
            if value > highest:
                highest, where = value, index + 1
    explicit = rate is not None
    if rate is None:
        hint = None
        for line in lines[:5]:
            title = _TITLE.match(line.strip())
            match = _TITLE_RATE.search(title.group(1)) if title else None
            if match:
                try:
                    hint = parse_rate(match.group(1))
                except Exception:
                    hint = None
        if hint is not None:
            rate = hint
            notes.append(f"rate {hint:g} from the title")
        elif drop:
            rate = RATES["29.97"]
        elif highest == 24:
            rate = RATES["25"]
            notes.append("rate 25 from the timecodes' frame field (frames up to 24)")
        else:
            rate = RATES["24"]
    if not is_drop_frame_rate(rate):
        drop = False
    if highest >= nominal(rate):
        shown = f"{rate:.3f}".rstrip("0").rstrip(".")
        raise EdlRateError(
            f"timecode frame field {highest} is beyond {shown} fps{' (--rate)' if explicit else ''}: "
            "this EDL was made at another rate; pass --rate (25, 29.97, 30, 50, 60...)",
            file=path,
            line=where,
            reason="BAD_RATE",
        )
    return rate, drop, notes


# -- the OTIO model --------------------------------------------------------------------------


def build_timeline(doc: EdlDocument, name: str = ""):
    """The EDL's video events as one OTIO track (record start = the first video event's record in)."""
    import opentimelineio as otio
    from opentimelineio import opentime

    rate = doc.rate

    def rt(frames: int):
        return opentime.RationalTime(frames, rate)

    def rng(start: int, duration: int):
        return opentime.TimeRange(rt(start), rt(duration))

    videos = [event for event in doc.events if event.is_video]
    start = videos[0].rec_in if videos else 0
    timeline = otio.schema.Timeline(name=name or doc.title, global_start_time=rt(start))
    track = otio.schema.Track(name="V")
    timeline.tracks.append(track)
    cursor = start
    for index, event in enumerate(doc.events):
        if not event.is_video:
            continue
        line = doc.line_number(event.event_line)
        first_line = doc.line_number(event.from_line if event.from_line is not None else event.event_line)
        if event.rec_in < cursor:
            raise TimelineError(
                f"Overlapping record in value: event {event.number} starts at {event.rec_in - cursor} frames "
                "before the previous one ends",
                file=doc.path,
                line=first_line,
            )
        if event.rec_in > cursor:
            track.append(otio.schema.Gap(source_range=rng(0, event.rec_in - cursor)))
        if event.is_transition:
            previous = track[-1] if len(track) else None
            same = (
                isinstance(previous, otio.schema.Clip)
                and event.rec_in == cursor
                and (event.from_line is None or _reel(previous) == event.from_reel)
            )
            if not same and not (isinstance(previous, otio.schema.Gap) and event.from_reel.upper() in BLACK_REELS):
                outgoing = _clip(doc, event, rng(event.from_src, 0), index, from_side=True)
                track.append(outgoing)
            elif same and event.from_line is not None:
                previous.metadata["voidlink_edl"]["lines"].append(event.from_line)
            if not (event.kind == "D" or event.kind.startswith("W")):
                raise TimelineError(f"key event '{event.kind}' is not supported", file=doc.path, line=line)
            transition = otio.schema.Transition(
                name=f"{event.kind} {event.number}",
                transition_type=otio.schema.TransitionTypes.SMPTE_Dissolve
                if event.kind == "D"
                else otio.schema.TransitionTypes.Custom,
                in_offset=rt(0),
                out_offset=rt(event.duration),
                metadata={"cmx_3600": {"transition": event.kind, "transition_duration": float(event.duration)}},
            )
            track.append(transition)
        duration = event.rec_out - event.rec_in
        track.append(_clip(doc, event, rng(event.src_in, duration), index, from_side=False))
        cursor = event.rec_out
    return timeline


def _reel(item) -> str:
    return (item.metadata.get("cmx_3600") or {}).get("reel", "")


def _clip(doc: EdlDocument, event: EdlEvent, source_range, event_index: int, from_side: bool):
    import opentimelineio as otio
    from opentimelineio import opentime

    reel = event.from_reel if from_side else event.reel
    line = event.from_line if from_side else event.event_line
    if from_side:
        name = event.from_clip_name or reel
    else:
        name = (event.to_clip_name or event.clip_name) if event.is_transition else event.clip_name
        name = name or ("" if reel.upper() in BLACK_REELS else reel)
    metadata = {"reel": reel}
    if not from_side:
        files = [path for key, path in event.source_files if not key.startswith("FROM") or not event.is_transition]
        if event.comments:
            metadata["comments"] = list(event.comments)
        if files:
            metadata["source_files"] = files
    elif event.source_files:
        metadata["source_files"] = [path for key, path in event.source_files if key.startswith("FROM")]
    if reel.upper() in BLACK_REELS:
        reference = otio.schema.GeneratorReference(generator_kind="black")
    else:
        reference = otio.schema.MissingReference()
    clip = otio.schema.Clip(name=name, media_reference=reference, source_range=source_range)
    clip.metadata["cmx_3600"] = metadata
    clip.metadata["voidlink_edl"] = {"event": event_index, "number": event.number, "lines": [line]}
    if from_side:
        return clip
    if event.speed is not None and event.speed[0] in (reel, event.reel):
        fps = event.speed[1]
        if fps == 0:
            clip.effects.append(otio.schema.FreezeFrame())
        elif abs(fps - doc.rate) > 1e-6:
            clip.effects.append(otio.schema.LinearTimeWarp(time_scalar=fps / doc.rate))
    for loc in event.locators:
        if loc.where == "record":
            at = event.src_in + (loc.frames - event.rec_in)
        elif loc.where == "source":
            at = loc.frames
        else:
            at = event.src_in
        marker = otio.schema.Marker(
            name=loc.text,
            color=loc.colour or "RED",
            marked_range=opentime.TimeRange(opentime.RationalTime(at, doc.rate), opentime.RationalTime(1, doc.rate)),
            metadata={"cmx_3600": {"color": loc.colour, "timecode": loc.timecode, "placed": loc.where}},
        )
        clip.markers.append(marker)
    return clip
