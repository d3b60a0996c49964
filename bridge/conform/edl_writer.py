"""Writing CMX3600 EDLs of a conformed timeline, by hand rather than through the `otio-cmx3600-adapter`.

An EDL that was read is written back line for line: event numbers, notes, transitions (wipes keep
their `W001` codes), `M2` speed lines and locators exactly as the editor wrote them. Only the
finished marked events change: the reel on their event lines (the zero-length outgoing line of a
following transition too) becomes a CMX-valid reel of 8 characters (`VOID0001`), a stale
`* SOURCE FILE:` line gives way to one naming the clean frames (handles included, as the clean
media is), `FROM CLIP:`/`FROM FILE:` paths point there too, and a table in the header maps each new
reel to its clean media (`* VOIDLINK: VOID0001 = .../A001C003_void.[0999-1012].exr (was A001C003)`).

An OTIO timeline is written one EDL per video track (`OUT.V1.edl`, `OUT.V2.edl`; `OUT.edl` when
there is one), each saying in its header that the full timeline is the OTIO beside it. Nested
stacks are flattened (what the viewer sees) and said in a note. What CMX cannot hold is an
`EdlError` naming the clip: a clip with neither source range nor available media range, or a
transition that needs frames before its incoming clip's source 00:00:00:00.

The adapter is avoided because its writer renumbers events, writes wipes as dissolves, writes M2
lines with the clip name and a wrong source out, upper-cases locators, and crashes on (or drops)
nested stacks and black events.
"""

from __future__ import annotations

import os
import re
from typing import Optional

from voidlink.bridge.conform.rates import TimelineError

REEL_PREFIX = "VOID"
_REEL_FIELD = re.compile(r"^(\s*\d+\s+)(\S+)(\s+)")


class EdlError(TimelineError):
    """A conformed timeline CMX3600 cannot hold; `reason` names what (EDL_NO_SOURCE_RANGE, ...)."""


def clean_media_path(output: str, first: int, last: int, padding: int) -> str:
    """`.../A001C003_void.####.exr` → `.../A001C003_void.[0999-1012].exr`."""
    token = "#" * padding
    head, _, tail = output.rpartition(token)
    return f"{head}[{first:0{padding}d}-{last:0{padding}d}]{tail}"


def _with_reel(line: str, reel: str) -> str:
    """The event line with its reel field replaced, the columns after it kept where they were."""
    match = _REEL_FIELD.match(line)
    if match is None:
        return line
    width = len(match.group(2)) + len(match.group(3))
    field = reel.ljust(max(width - 1, len(reel))) + " "
    return match.group(1) + field + line[match.end() :]


def finished_reels(plan) -> list:
    """(entry, new reel, clean media path) per finished marked event, in timeline order."""
    from voidlink.bridge.conform.plan import FINISHED

    out = []
    for entry in plan.events:
        if entry.status in FINISHED and entry.media is not None:
            media = entry.media
            path = clean_media_path(entry.output, media.first, media.last, media.padding)
            out.append((entry, f"{REEL_PREFIX}{len(out) + 1:04d}", path))
    return out


# -- an EDL written back ---------------------------------------------------------------------


def write_back(plan, doc) -> str:
    """The EDL `doc` was read from, with the finished marked events pointing at their clean media."""
    lines = list(doc.lines)
    replaced: dict = {}
    inserted: dict = {}  # line index → lines to write after it
    dropped: set = set()
    table = []
    for entry, reel, path in finished_reels(plan):
        meta = entry.event.item.metadata.get("voidlink_edl") or {}
        event = doc.events[meta["event"]]
        for index in meta["lines"]:
            replaced[index] = _with_reel(lines[index], reel)
        own = [i for i in event.lines if i not in (event.event_line, event.from_line)]
        for index in own:
            text = lines[index].strip().lstrip("*").strip()
            key = text.split(":", 1)[0].upper()
            if key in ("SOURCE FILE", "TO SOURCE FILE"):
                dropped.add(index)
            elif key in ("FROM CLIP", "FROM FILE") and not event.is_transition or key in ("TO CLIP", "TO FILE"):
                replaced[index] = f"* {text.split(':', 1)[0]}: {path}"
        last = max(i for i in event.lines if i not in dropped)
        inserted.setdefault(last, []).append(f"* SOURCE FILE: {path}")
        table.append(f"* VOIDLINK: {reel} = {path} (was {entry.event.item.metadata['cmx_3600'].get('reel', '')})")
    header_end = -1
    for index in doc.header:
        if re.match(r"^\s*(TITLE|FCM):", lines[index], re.IGNORECASE):
            header_end = index
    out = []
    if header_end < 0 and table:
        out.extend(table)
    for index, line in enumerate(lines):
        if index in dropped:
            continue
        out.append(replaced.get(index, line))
        out.extend(inserted.get(index, []))
        if index == header_end:
            out.extend(table)
    return "\n".join(out) + "\n"


# -- an OTIO timeline as EDLs ----------------------------------------------------------------


def otio_edls(plan, timeline, otio_name: str = "") -> list:
    """[(track name, EDL text)] for each enabled video track of a conformed OTIO timeline."""
    import opentimelineio as otio

    tf = plan.timeline_file
    videos = [t for t in timeline.tracks if isinstance(t, otio.schema.Track)]
    videos = [t for t in videos if t.kind == otio.schema.TrackKind.Video and t.enabled]
    by_label = {}
    for entry, reel, path in finished_reels(plan):
        by_label[entry.event.label] = (reel, path)
    out = []
    for count, track in enumerate(videos, start=1):
        writer = _TrackWriter(tf.rate, tf.drop_frame, by_label)
        lines = [f"TITLE: {timeline.name or tf.stem}", f"FCM: {'DROP' if tf.drop_frame else 'NON-DROP'} FRAME"]
        if len(videos) > 1:
            lines.append(
                f"* VOIDLINK: video track {track.name or count} ({count} of {len(videos)}); "
                f"the whole timeline is {otio_name or 'the OTIO written beside this EDL'}"
            )
        start = timeline.global_start_time
        body = writer.track(track, 0 if start is None else int(round(start.rescaled_to(tf.rate).value)))
        lines.extend(writer.table)
        lines.extend(writer.notes)
        lines.append("")
        lines.extend(body)
        out.append((track.name or f"V{count}", "\n".join(lines) + "\n"))
    return out


class _TrackWriter:
    def __init__(self, rate: float, drop: bool, by_label: dict) -> None:
        self.rate, self.drop = rate, drop
        self.by_label = by_label
        self.number = 0
        self.table: list = []
        self.notes: list = []

    def tc(self, frames: int) -> str:
        from opentimelineio import opentime

        day = int(round(self.rate)) * 86400
        return opentime.to_timecode(opentime.RationalTime(frames % day, self.rate), self.rate, self.drop)

    def frames(self, time) -> int:
        return int(round(time.rescaled_to(self.rate).value))

    def flat_items(self, track) -> list:
        import opentimelineio as otio

        items = []
        for child in track:
            if isinstance(child, otio.schema.Stack):
                if child.source_range is not None and child.source_range != child.available_range():
                    raise EdlError(f"nested stack '{child.name}' is trimmed: CMX cannot hold it", reason="EDL_NESTED")
                flat = otio.algorithms.flatten_stack(child)
                first = len([i for i in items if isinstance(i, otio.schema.Clip)]) + 1
                inner = [i.deepcopy() for i in flat]
                items.extend(inner)
                last = len([i for i in items if isinstance(i, otio.schema.Clip)])
                self.notes.append(
                    f"* VOIDLINK: clips {first}-{last} of this track are nested stack '{child.name}' flattened "
                    "(the OTIO keeps the stack)"
                )
            else:
                items.append(child)
        return items

    def reel_for(self, clip) -> tuple:
        """(reel, clean media path or '') of a clip."""
        conform = (clip.metadata.get("voidlink") or {}).get("conform") or {}
        if conform.get("event") in self.by_label:
            reel, path = self.by_label[conform["event"]]
            was = (clip.metadata.get("cmx_3600") or {}).get("reel") or conform.get("original_name", "")
            line = f"* VOIDLINK: {reel} = {path} (was {was})"
            if line not in self.table:
                self.table.append(line)
            return reel, path
        reel = (clip.metadata.get("cmx_3600") or {}).get("reel") or ""
        if not reel:
            reel = re.sub(r"[^A-Za-z0-9_]", "", os.path.splitext(clip.name or "")[0])[:8] or "AX"
        return reel[:8] if len(reel) > 8 else reel, ""

    def source(self, clip) -> tuple:
        try:
            rng = clip.trimmed_range()
        except Exception:
            rng = None
        if rng is None:
            raise EdlError(
                f"clip '{clip.name}' has no source range and its media no available range: CMX cannot time it",
                reason="EDL_NO_SOURCE_RANGE",
            )
        return self.frames(rng.start_time), self.frames(rng.duration)

    def track(self, track, start: int) -> list:
        import opentimelineio as otio

        items = self.flat_items(track)
        lines = []
        cursor = start
        pending = None  # (transition, outgoing clip, its reel, its source at the dissolve start)
        for position, item in enumerate(items):
            if isinstance(item, otio.schema.Transition):
                pending = item
                continue
            duration = self.frames(item.duration())
            if isinstance(item, otio.schema.Gap) or not isinstance(item, otio.schema.Clip):
                cursor += duration
                pending = None
                continue
            src_in, src_dur = self.source(item)
            rec_in, rec_out, src_out = cursor, cursor + duration, src_in + src_dur
            after = items[position + 1] if position + 1 < len(items) else None
            if isinstance(after, otio.schema.Transition):  # the next dissolve starts this much before the cut
                cut = self.frames(after.in_offset)
                rec_out, src_out = rec_out - cut, src_out - cut
            is_black = isinstance(item.media_reference, otio.schema.GeneratorReference)
            reel, clean = ("BL", "") if is_black else self.reel_for(item)
            speed = self.speed_of(item, src_dur)
            if speed is not None:
                src_out = src_in + speed[1]
            self.number += 1
            number = f"{self.number:03d}"
            if pending is not None:
                before = self.frames(pending.in_offset)
                length = before + self.frames(pending.out_offset)
                previous = items[position - 2] if position >= 2 else None
                if src_in - before < 0:
                    raise EdlError(
                        f"the transition into '{item.name}' needs {before} frames before its source start "
                        f"{self.tc(src_in)}: CMX cannot hold it",
                        reason="EDL_NEGATIVE_SOURCE",
                    )
                if isinstance(previous, otio.schema.Clip):
                    out_reel = "BL" if isinstance(previous.media_reference, otio.schema.GeneratorReference) else None
                    out_reel = out_reel or self.reel_for(previous)[0]
                    p_in, p_dur = self.source(previous)
                    out_src = p_in + p_dur - before
                    out_name = previous.name
                else:
                    out_reel, out_src, out_name = "BL", 0, ""
                code = (pending.metadata.get("cmx_3600") or {}).get("transition") or "D"
                code = code if re.match(r"^(D|W\d{3})$", str(code)) else "D"
                at = rec_in - before
                lines.append(self.event_line(number, out_reel, "C", None, out_src, out_src, at, at))
                lines.append(self.event_line(number, reel, code, length, src_in - before, src_out, at, rec_out))
                if out_name:
                    lines.append(f"* FROM CLIP NAME:  {out_name}")
                lines.append(f"* TO CLIP NAME:  {item.name}")
            else:
                lines.append(self.event_line(number, reel, "C", None, src_in, src_out, rec_in, rec_out))
                if item.name:
                    lines.append(f"* FROM CLIP NAME:  {item.name}")
            if speed is not None:
                lines.append(f"M2   {reel:<8}       {speed[0]:05.1f}                {self.tc(src_in)}")
            for marker in item.markers:
                at = rec_in + self.frames(marker.marked_range.start_time) - src_in
                colour = (marker.color or "RED").upper()
                lines.append(f"* LOC: {self.tc(at)} {colour:<7} {marker.name}")
            if clean:
                lines.append(f"* SOURCE FILE: {clean}")
            cursor += duration
            pending = None
        return lines

    def speed_of(self, clip, src_dur: int) -> Optional[tuple]:
        """(fps for the M2 line, source frames used) of a retimed clip, or None."""
        import opentimelineio as otio

        for effect in clip.effects:
            if isinstance(effect, otio.schema.FreezeFrame):
                return 0.0, 1
            if isinstance(effect, otio.schema.LinearTimeWarp):
                return self.rate * effect.time_scalar, int(round(src_dur * effect.time_scalar))
        return None

    def event_line(self, number, reel, kind, length, src_in, src_out, rec_in, rec_out) -> str:
        middle = f"{kind:<4} {length:03d}" if length is not None else f"{kind:<8}"
        timecodes = " ".join(self.tc(f) for f in (src_in, src_out, rec_in, rec_out))
        return f"{number}  {reel:<8} V     {middle} {timecodes}"
