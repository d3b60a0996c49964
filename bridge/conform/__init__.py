"""Conform: round-trip an editorial timeline (EDL or OTIO) through voidlink.

Editorial marks removals with markers whose text starts with `VOID:`; conform finds those events,
resolves their source media and mattes, runs one removal job per event and writes the timeline
back with the marked events pointing at the clean EXR sequences.
"""

from voidlink.bridge.conform.timeline import RATES, TimelineError, TimelineFile, parse_rate, read_timeline

__all__ = ["RATES", "TimelineError", "TimelineFile", "parse_rate", "read_timeline"]
