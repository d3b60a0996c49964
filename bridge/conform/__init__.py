"""Conform: round-trip an editorial timeline (EDL or OTIO) through voidlink.

Editorial marks removals with markers whose text starts with `VOID:`; conform finds those events,
resolves their source media and mattes, runs one removal job per event and writes the timeline
back with the marked events pointing at the clean EXR sequences.

    from voidlink.bridge.conform import read_timeline, build_plan, run_plan, write_otio
    plan = build_plan(read_timeline("cut.edl"), "out", media_roots=["/plates"], handles=8)
    run_plan(plan, Client())
    write_otio(plan, "out/cut_void.otio")
"""

from voidlink.bridge.conform.edl_writer import EdlError
from voidlink.bridge.conform.markers import MarkedEvent, MarkerSeen, find_marked_events, survey_markers, void_prompt
from voidlink.bridge.conform.media import EventMedia, MediaError, MediaIndex, resolve_event_media
from voidlink.bridge.conform.plan import ConformPlan, EventPlan, build_plan, run_plan
from voidlink.bridge.conform.timeline import RATES, TimelineError, TimelineFile, parse_rate, read_timeline
from voidlink.bridge.conform.writer import conformed_timeline, write_edl, write_otio

__all__ = [
    "RATES",
    "ConformPlan",
    "EdlError",
    "EventMedia",
    "EventPlan",
    "MarkedEvent",
    "MarkerSeen",
    "MediaError",
    "MediaIndex",
    "TimelineError",
    "TimelineFile",
    "build_plan",
    "conformed_timeline",
    "find_marked_events",
    "parse_rate",
    "read_timeline",
    "resolve_event_media",
    "run_plan",
    "survey_markers",
    "void_prompt",
    "write_edl",
    "write_otio",
]
