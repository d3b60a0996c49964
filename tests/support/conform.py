"""Editorial material the conform tests share: the fixture EDLs and OTIO files, plates written per reel, an
OTIO cut with nested items."""

from __future__ import annotations

from pathlib import Path

import opentimelineio as otio
from opentimelineio import opentime

from support.shots import write_shot

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "conform"


RATE = 24.0


def plates(root: Path, reels: list, first: int = 997, frames: int = 16) -> Path:
    """Tiny real shots named by reel: <root>/<reel>/<reel>.####.exr with _mask and _affected mattes."""
    for reel in reels:
        write_shot(root / reel, frames=frames, width=32, height=24, first=first)
        for path in sorted((root / reel).iterdir()):
            kind, number, extension = path.name.split(".")
            name = {"plate": reel, "mask": f"{reel}_mask", "shadow": f"{reel}_affected"}[kind]
            path.rename(path.with_name(f"{name}.{number}.{extension}"))
    return root


def otio_cut(root: Path) -> otio.schema.Timeline:
    """Two video tracks and an audio track at 01:00:00:00: OTIO markers on a clip, a track and the stack."""

    def rt(frames):
        return opentime.RationalTime(frames, RATE)

    def clip(name, start, duration, reference=True):
        ref = otio.schema.MissingReference()
        if reference:
            ref = otio.schema.ImageSequenceReference(
                target_url_base=str(root / name) + "/",
                name_prefix=f"{name}.",
                name_suffix=".exr",
                start_frame=997,
                rate=RATE,
                frame_zero_padding=4,
                available_range=opentime.TimeRange(rt(86400 + 997), rt(16)),
            )
        return otio.schema.Clip(
            name=name, media_reference=ref, source_range=opentime.TimeRange(rt(start), rt(duration))
        )

    timeline = otio.schema.Timeline(name="otio cut", global_start_time=rt(86400))
    v1 = otio.schema.Track(name="V1")
    a = clip("B001C001", 86400 + 1001, 6)
    a.markers.append(
        otio.schema.Marker(
            name="VOID: remove the crew member", marked_range=opentime.TimeRange(rt(86400 + 1002), rt(1))
        )
    )
    v1.append(a)
    v1.append(otio.schema.Transition(in_offset=rt(2), out_offset=rt(2)))
    v1.append(clip("B001C002", 86400 + 1003, 8))
    gap = otio.schema.Gap(source_range=opentime.TimeRange(rt(0), rt(4)))
    gap.markers.append(otio.schema.Marker(name="VOID: nothing", marked_range=opentime.TimeRange(rt(1), rt(1))))
    v1.append(gap)
    v1.append(clip("B001C009", 86400 + 1001, 5, reference=False))  # no such plate anywhere
    v1.append(clip("B001C003", 86400 + 1001, 4))
    # A track marker over B001C009 and a stack marker over B001C003 (the stack counts from 0).
    v1.markers.append(otio.schema.Marker(name="VOID: remove the van", marked_range=opentime.TimeRange(rt(20), rt(1))))
    timeline.tracks.markers.append(
        otio.schema.Marker(
            name="note",
            metadata={"Resolve_OTIO": {"Note": "VOID: remove the wire"}},
            marked_range=opentime.TimeRange(rt(24), rt(1)),
        )
    )
    v2 = otio.schema.Track(name="V2")
    v2.append(otio.schema.Gap(source_range=opentime.TimeRange(rt(0), rt(3))))
    v2.append(clip("B001C004", 86400 + 1001, 2))
    a1 = otio.schema.Track(name="A1", kind=otio.schema.TrackKind.Audio)
    a1.append(
        otio.schema.Clip(
            name="sound",
            media_reference=otio.schema.ExternalReference("sound.wav"),
            source_range=opentime.TimeRange(rt(0), rt(30)),
        )
    )
    timeline.tracks.extend([v1, v2, a1])
    return timeline
