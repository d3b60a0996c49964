"""Writing the conformed timeline back: OTIO, and CMX3600 EDLs through OpenTimelineIO's adapter.

Only the finished marked clips change: their media reference becomes an `ImageSequenceReference`
to the clean EXRs whose available range starts at the first handle frame's source timecode, so the
clip's source range (and with it every record timecode) stays exactly as it was. The clip is named
`<name>_void`, its EDL reel `<reel>_void`, and `metadata["voidlink"]` keeps what it was before.
Every other clip, gap, transition, track and marker is left as read.

EDLs: the adapter writes one video track, so a timeline with several writes one EDL per video
track (`OUT.V1.edl`, `OUT.V2.edl`; `OUT.edl` when there is one). Its timecodes are rewritten in
the timeline's own counting (the adapter writes 29.97 as drop-frame whatever the source used) and
an `FCM:` line says which; clean events get a `* SOURCE FILE:` comment naming their frames.
"""

from __future__ import annotations

import os
import re
from typing import Optional

from voidlink.bridge.conform.plan import FINISHED, ConformPlan
from voidlink.bridge.conform.timeline import TimelineFile

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
        clip = timeline.tracks[event.track_index][event.item_index]
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
        cmx = clip.metadata.get("cmx_3600")
        if cmx is not None and cmx.get("reel"):
            cmx["reel"] = f"{cmx['reel'].strip()}_void"
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


def write_edl(plan: ConformPlan, path: str, timeline=None) -> list:
    """Write CMX3600 EDL(s) of the conformed timeline; returns the paths written."""
    import opentimelineio as otio

    timeline = timeline if timeline is not None else conformed_timeline(plan)
    tf = plan.timeline_file
    videos = [
        index
        for index, track in enumerate(timeline.tracks)
        if track.kind == otio.schema.TrackKind.Video and track.enabled
    ]
    stem, extension = os.path.splitext(path)
    written = []
    for count, index in enumerate(videos, start=1):
        single = _single_track(timeline, index)
        text = otio.adapters.write_to_string(single, "cmx_3600", rate=tf.rate, style="avid")
        text = _edl_text(text, tf, plan, index)
        name = timeline.tracks[index].name or f"V{count}"
        target = path if len(videos) == 1 else f"{stem}.{re.sub(r'[^A-Za-z0-9]+', '', name) or count}{extension}"
        _make_parent(target)
        with open(target, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        written.append(target)
    return written


def _single_track(timeline, index: int):
    """A timeline of one track (the adapter writes only the first), placed at the record start."""
    import opentimelineio as otio

    copy = otio.schema.Timeline(name=timeline.name)
    track = timeline.tracks[index].deepcopy()
    for clip in track.find_clips():
        _add_source_file_comment(clip)
    start = timeline.global_start_time
    if track.source_range is None and start is not None and start.value:
        # The adapter takes record time from the track alone: shift the track to the timeline's start.
        available = track.available_range()
        track.source_range = otio.opentime.TimeRange(
            available.start_time - start.rescaled_to(available.duration.rate), available.duration
        )
    copy.tracks.append(track)
    return copy


def _add_source_file_comment(clip) -> None:
    conform = (clip.metadata.get("voidlink") or {}).get("conform")
    if not conform:
        return
    ref = clip.media_reference
    first, last = conform["frames"]
    cmx = clip.metadata.setdefault("cmx_3600", {})
    comments = list(cmx.get("comments") or [])
    frames = f"{ref.target_url_base}{ref.name_prefix}[{first:0{ref.frame_zero_padding}d}-{last}]{ref.name_suffix}"
    comments.append(f"SOURCE FILE: {frames}")
    cmx["comments"] = comments


def _edl_text(text: str, tf: TimelineFile, plan: ConformPlan, track_index: int) -> str:
    """Timecodes in the timeline's counting, and an FCM line after the title."""
    from opentimelineio import opentime

    def recount(match) -> str:
        tc = match.group(1)
        frames = opentime.from_timecode(tc, tf.rate)
        return opentime.to_timecode(frames, tf.rate, tf.drop_frame)

    lines = []
    for line in text.splitlines():
        if line[:1].isdigit() or line.startswith("* LOC:") or line.startswith("M2"):
            line = _EVENT_TIMECODES.sub(recount, line)
        lines.append(line)
    fcm = "FCM: DROP FRAME" if tf.drop_frame else "FCM: NON-DROP FRAME"
    if lines and lines[0].startswith("TITLE:"):
        lines.insert(1, fcm)
    else:
        lines.insert(0, fcm)
    return "\n".join(lines) + "\n"


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
