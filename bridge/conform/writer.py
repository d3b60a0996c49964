"""Writing the conformed timeline back: OTIO, and CMX3600 EDLs through OpenTimelineIO's adapter.

Only the finished marked clips change (at any depth of nested stacks): their media reference
becomes an `ImageSequenceReference` to the clean EXRs whose available range starts at the first
handle frame's source timecode, so the clip's source range (and with it every record timecode)
stays exactly as it was. The clip is named `<name>_void` and `metadata["voidlink"]` keeps what it
was before. Every other clip, gap, transition, track and marker is left as read.

EDLs are written by `edl_writer`: an EDL that was read comes back line for line, an OTIO timeline
as one EDL per video track.
"""

from __future__ import annotations

import os
import re
from typing import Optional

from voidlink.bridge.conform.plan import FINISHED, ConformPlan

_EVENT_TIMECODES = re.compile(r"(\d\d:\d\d:\d\d[:;]\d\d)")


def conformed_timeline(plan: ConformPlan):
    """A copy of the plan's timeline with the finished marked clips pointing at their clean frames."""
    import opentimelineio as otio
    from voidlink.protos.clips import SequencePattern

    timeline = plan.timeline_file.timeline.deepcopy()
    rate = plan.timeline_file.rate
    for entry in plan.events:
        if entry.status not in FINISHED:
            continue
        event, media = entry.event, entry.media
        from voidlink.bridge.conform.markers import item_at_path

        clip = item_at_path(timeline, event.path)
        pattern = SequencePattern.parse(entry.output)
        directory, prefix = os.path.split(pattern.prefix)
        # Time of the first handle frame, in the clip's source time: the event's first visible frame minus handles.
        from voidlink.bridge.conform.media import source_range_of

        visible = source_range_of(clip)
        start = visible.start_time.rescaled_to(rate) - otio.opentime.RationalTime(media.handles[0], rate)
        start = otio.opentime.RationalTime(round(start.value), rate)
        reference = otio.schema.ImageSequenceReference(
            target_url_base=directory + "/",
            name_prefix=prefix,
            name_suffix=pattern.suffix,
            start_frame=media.first,
            frame_step=1,
            rate=rate,
            frame_zero_padding=pattern.padding,
            available_range=otio.opentime.TimeRange(start, otio.opentime.RationalTime(media.frame_count, rate)),
        )
        reference.name = f"{_clean_stem(entry.output)}"
        original = clip.media_reference
        clip.metadata["voidlink"] = {
            "conform": {
                "event": event.label,
                "prompt": event.prompt,
                "status": entry.status,
                "job_id": entry.job_id,
                "original_name": clip.name,
                "original_media": otio.adapters.write_to_string(original, "otio_json") if original else "",
                "plate": media.plate,
                "frames": [media.first, media.last],
            }
        }
        if entry.provenance:
            clip.metadata["voidlink"]["provenance"] = dict(entry.provenance)
        clip.media_reference = reference
        clip.name = f"{clip.name or event.label}_void"
    return timeline


def _clean_stem(output: str) -> str:
    name = os.path.basename(output)
    return name.split(".", 1)[0]


def write_otio(plan: ConformPlan, path: str):
    """Write the conformed timeline as OTIO JSON; returns it."""
    import opentimelineio as otio

    timeline = conformed_timeline(plan)
    _make_parent(path)
    otio.adapters.write_to_file(timeline, path, adapter_name="otio_json")
    return timeline


def write_edl(plan: ConformPlan, path: str, timeline=None, otio_path: str = "") -> list:
    """Write CMX3600 EDL(s) of the conformed timeline (see edl_writer); returns the paths written."""
    from voidlink.bridge.conform.edl_writer import otio_edls, write_back

    doc = plan.timeline_file.edl
    if doc is not None:
        _make_parent(path)
        with open(path, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(write_back(plan, doc))
        return [path]
    timeline = timeline if timeline is not None else conformed_timeline(plan)
    edls = otio_edls(plan, timeline, os.path.basename(otio_path) if otio_path else "")
    stem, extension = os.path.splitext(path)
    written = []
    for count, (name, text) in enumerate(edls, start=1):
        target = path if len(edls) == 1 else f"{stem}.{re.sub(r'[^A-Za-z0-9]+', '', name) or count}{extension}"
        _make_parent(target)
        with open(target, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        written.append(target)
    return written


def _make_parent(path: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)


def report_rows(plan: ConformPlan) -> list:
    """(event, status, output or reason) per marked event, for the table at the end of a conform."""
    rows = []
    for entry in plan.events:
        detail: Optional[str] = entry.output if entry.status in FINISHED or entry.status == "planned" else None
        rows.append((entry.event.label, entry.status, detail or entry.message))
    return rows
