"""Conform on editorial exports shaped like the ones studios send, each run for real on tiny plates.

Avid (one-digit-hour and hour-less locators, notes, padded reels), Premiere (clip names carrying the
first frame), Nucoda (bracketed FROM CLIP paths), wipes and dissolves, M2 speed lines, CDL notes,
25 fps, 7-digit padding, Windows FROM FILE paths, truncated reels colliding, a dissolve as first
event, nested OTIO stacks, clips without source ranges, transitions at source frame 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import opentimelineio as otio
import pytest
from opentimelineio import opentime
from support.shots import write_shot
from voidlink.bridge.conform import read_timeline
from voidlink.bridge.conform.edl_read import parse_edl
from voidlink.bridge.conform.rates import TimelineError

from voidlink.cli.conform import main

HEAD = "TITLE: {title}\nFCM: NON-DROP FRAME\n"


def plate(root: Path, stem: str, first: int = 997, frames: int = 16, padding: int = 4, sep: str = ".") -> Path:
    """<root>/<stem>/<stem><sep><frame>.exr with _mask and _affected mattes named alike."""
    folder = root / stem
    write_shot(folder, frames=frames, width=32, height=24, first=first)
    for path in sorted(folder.iterdir()):
        kind, number, _ = path.name.split(".")
        name = {"plate": stem, "mask": f"{stem}_mask", "shadow": f"{stem}_affected"}[kind]
        path.rename(folder / f"{name}{sep}{int(number):0{padding}d}.exr")
    return folder


EXPORTS = {
    "avid": (
        HEAD + "* NOTE BEFORE THE FIRST EVENT: reel 2 of 3\n\n"
        "009  A001C003 V     C        00:00:41:17 00:00:41:23 01:00:00:00 01:00:00:06\n"
        "* FROM CLIP NAME:  A001C003\n"
        "* LOC: 1:00:00:02 RED     VOID: remove the boom\n"
        "* comment from the editor: keep the flare\n"
        "010  Z677_4C. V     C        00:00:41:17 00:00:41:23 01:00:00:06 01:00:00:12\n"
        "* LOC: 00:00:08 GREEN   VOID: remove the sign\n"
        "088  A001C007 V     C        00:00:41:17 00:00:42:01 01:00:00:12 01:00:00:20\n"
        "* FROM CLIP NAME:  A001C007\n"
        "* LOC: 1:00:00:13 BLUE    Just a note, Not Upper Case\n"
    ),
    "premiere": (
        HEAD + "\n001  AX       V     C        00:00:41:17 00:00:41:23 01:00:00:00 01:00:00:06\n"
        "* FROM CLIP NAME: ZZ100_501.take_1.0001.exr\n"
        "* LOC: 01:00:00:01 RED     VOID: remove the rig\n"
    ),
    "nucoda": (
        HEAD + "\n001  R1       V     C        00:00:41:17 00:00:41:23 01:00:00:00 01:00:00:06\n"
        "* FROM CLIP: {root}/N001C001/N001C001.[0997-1012].exr\n"
        "* LOC: 01:00:00:03 RED     VOID: remove the drone\n"
    ),
    "wipes_m2_cdl": (
        HEAD + "\n001  A001C003 V     C        00:00:41:17 00:00:41:23 01:00:00:00 01:00:00:06\n"
        "* FROM CLIP NAME:  A001C003\n*ASC_SOP (1.0 1.0 1.0)(0.0 0.0 0.0)(1.0 1.0 1.0)\n*ASC_SAT 1.0\n"
        "002  A001C003 V     C        00:00:41:23 00:00:41:23 01:00:00:06 01:00:00:06\n"
        "002  A001C004 V     W001 003 00:00:41:17 00:00:41:23 01:00:00:06 01:00:00:12\n"
        "* FROM CLIP NAME:  A001C003\n* TO CLIP NAME:  A001C004\n"
        "* LOC: 01:00:00:08 RED     VOID: remove the cable\n"
        "003  A001C007 V     C        00:00:10:00 00:00:10:08 01:00:00:16 01:00:00:20\n"
        "M2   A001C007       048.0                00:00:10:00\n"
        "* FROM CLIP NAME:  A001C007\n"
    ),
    "fps25": (
        "TITLE: SPOT\nFCM: NON-DROP FRAME\n\n"
        "001  P001C001 V     C        00:00:40:01 00:00:40:07 01:00:00:20 01:00:01:01\n"
        "* FROM CLIP NAME:  P001C001\n* LOC: 01:00:00:22 RED     VOID: remove the pole\n"
        "002  P001C009 V     C        00:00:10:00 00:00:10:23 01:00:01:01 01:00:01:24\n"
    ),
    "padding7": (
        HEAD + "\n001  S001C002 V     C        01:00:00:05 01:00:00:11 01:00:00:00 01:00:00:06\n"
        "* FROM CLIP NAME:  S001C002\n* LOC: 01:00:00:01 RED     VOID: remove the crew\n"
    ),
    "windows_from_file": (
        HEAD + "\n001  W1       V     C        00:00:41:17 00:00:41:23 01:00:00:00 01:00:00:06\n"
        "* FROM FILE: P:\\shows\\plates\\W001C001\\W001C001.0997.exr\n"
        "* LOC: 01:00:00:01 RED     VOID: remove the bag\n"
    ),
    "dissolve_first": (
        HEAD + "\n001  BL       V     C        00:00:00:00 00:00:00:00 01:00:00:00 01:00:00:00\n"
        "001  A001C003 V     D    004 00:00:41:17 00:00:41:23 01:00:00:00 01:00:00:06\n"
        "* TO CLIP NAME:  A001C003\n* LOC: 01:00:00:04 RED     VOID: remove the boom\n"
    ),
}
# What each export must give: {clip: plate stem} of the done events.
DONE = {
    "avid": {"A001C003": "A001C003", "Z677_4C.": "Z677_4C"},
    "premiere": {"ZZ100_501.take_1.0001.exr": "ZZ100_501.take_1"},
    "nucoda": {"R1": "N001C001"},
    "wipes_m2_cdl": {"A001C004": "A001C004"},
    "fps25": {"P001C001": "P001C001"},
    "padding7": {"S001C002": "S001C002"},
    "windows_from_file": {"W1": "W001C001"},
    "dissolve_first": {"A001C003": "A001C003"},
}


def make_plates(root: Path) -> Path:
    for stem in ("A001C003", "A001C004", "A001C007", "Z677_4C", "ZZ100_501.take_1", "N001C001", "W001C001"):
        plate(root, stem)
    plate(root, "P001C001", first=997)  # 25 fps: 00:00:40:01 is frame 1001
    plate(root, "S001C002", first=86400, padding=7)  # 01:00:00:05 at 24 fps is frame 86405
    return root


def test_rates_from_the_header_and_the_frame_field():
    assert parse_edl(EXPORTS["fps25"].splitlines()).rate == 25.0
    titled = "TITLE: SPOT (25 FPS)\n001  A V     C        00:00:00:00 00:00:00:05 01:00:00:00 01:00:00:05\n"
    assert parse_edl(titled.splitlines()).rate == 25.0
    with pytest.raises(TimelineError, match="pass --rate") as error:
        parse_edl(EXPORTS["fps25"].splitlines(), "spot.edl", rate=24.0)
    assert error.value.line == 7
    thirty = "001  A V     C        00:00:00:00 00:00:00:28 01:00:00:00 01:00:00:28\n"
    with pytest.raises(TimelineError, match="pass --rate"):
        parse_edl(thirty.splitlines())


def test_locators_in_every_form_and_the_marker_summary_in_a_dry_run(tmp_path, capsys):
    edl = tmp_path / "avid.edl"
    edl.write_text(EXPORTS["avid"] + "* LOC: 1:00:00:14 RED     VOID: after the end\n".replace("1:00", "01:00"))
    args = [str(edl), "--media-root", str(make_plates(tmp_path / "plates")), "-o", str(tmp_path / "o.otio")]
    assert main(args + ["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "'VOID: remove the boom'  EDL locator on A001C003  ->  V_009_A001C003: planned" in out
    assert "'VOID: remove the sign'" in out and "V_010_Z677_4C: planned" in out
    assert "VOID: after the end" in out  # a second marker on event 088 is listed, not dropped
    drop = tmp_path / "drop.edl"
    drop.write_text(
        "TITLE: DF\nFCM: DROP FRAME\n* LOC: 01:00:00:01 RED VOID: before every event\n\n"
        "001  A001C003 V     C        00:00:41:17 00:00:41:23 01:00:00:00 01:00:00:06\n"
        "* LOC: 01:00:00;02 RED     VOID: drop-frame locator\n"
    )
    assert main([str(drop), "--media-root", str(tmp_path / "plates"), "-o", str(tmp_path / "d.otio"), "--dry-run"]) == 1
    out = capsys.readouterr().out
    assert (
        "skipped: locator before the first event" in out
        and "drop-frame locator'  EDL locator on A001C003  ->  V_001_A001C003" in out
    )


def test_truncated_reels_that_would_share_a_plate_are_refused_naming_both(tmp_path, capsys):
    plate(tmp_path / "plates", "LONGREEL")
    edl = tmp_path / "takes.edl"
    edl.write_text(
        HEAD.format(title="TAKES") + "\n001  LONGREEL V     C        00:00:41:17 00:00:41:23 01:00:00:00 01:00:00:06\n"
        "* FROM CLIP NAME:  LONGREEL_take1\n* LOC: 01:00:00:01 RED     VOID: a\n"
        "002  LONGREEL V     C        00:00:41:17 00:00:41:23 01:00:00:06 01:00:00:12\n"
        "* FROM CLIP NAME:  LONGREEL_take2\n* LOC: 01:00:00:07 RED     VOID: b\n"
    )
    args = [str(edl), "--media-root", str(tmp_path / "plates"), "-o", str(tmp_path / "o.otio"), "--dry-run", "--json"]
    assert main(args) == 1
    events = json.loads(capsys.readouterr().out)["events"]
    assert [e["status"] for e in events] == ["ambiguous_media", "ambiguous_media"]
    assert all("LONGREEL_take1" in e["message"] and "LONGREEL_take2" in e["message"] for e in events)


def test_real_exports_conform_frame_accurate_and_write_the_edl_back_whole(tmp_path, daemon, capsys, monkeypatch):
    root = make_plates(tmp_path / "plates")
    monkeypatch.setenv("VOIDLINK_PATH_MAP", f"P:\\shows\\plates={root}")
    outcomes = []
    for name, template in EXPORTS.items():
        text = template.format(title=name.upper(), root=root)
        edl = tmp_path / f"{name}.edl"
        edl.write_text(text)
        out = tmp_path / "out" / f"{name}_void.otio"
        written_edl = tmp_path / "out" / f"{name}_void.edl"
        args = [str(edl), "--media-root", str(root), "--handles", "2", "-o", str(out), "--edl", str(written_edl)]
        args += ["--address", daemon.address, "--no-start", "--json"]
        code = main(args)
        report = json.loads(capsys.readouterr().out)
        done = {e["clip"]: e for e in report["events"] if e["status"] == "done"}
        assert code == 0, (name, report["events"])
        assert {clip: Path(e["media"]).parent.name for clip, e in done.items()} == DONE[name], name
        # Frame-accurate: every clean frame from the first handle to the last, numbered like the plate.
        for event in done.values():
            first, last = event["frames"]["first"], event["frames"]["last"]
            padding = 7 if name == "padding7" else 4
            files = sorted(Path(event["output"]).parent.glob("*_void.*.exr"))
            assert [int(f.name.split(".")[-2]) for f in files] == list(range(first, last + 1)), name
            assert all(len(f.name.split(".")[-2]) == padding for f in files)
        expected_first = {"fps25": 999, "padding7": 86403}.get(name, 999)
        assert min(e["frames"]["first"] for e in done.values()) == expected_first, name
        # The EDL comes back line for line; only the marked events' reels and source file lines change.
        original, written = text.splitlines(), written_edl.read_text().splitlines()
        changed = [line for line in written if line not in original]
        assert all(
            line.startswith(("* VOIDLINK: VOID", "* SOURCE FILE:", "* FROM")) or "VOID000" in line for line in changed
        )
        kept = [line for line in original if line in written]
        assert len(original) - len(kept) == len(done) + sum("FROM FILE" in x or "FROM CLIP:" in x for x in original)
        assert sum(line.startswith("* SOURCE FILE:") for line in written) == len(done)
        # Re-read: the same cut, the marked events pointing at their clean media.
        before, after = read_timeline(str(edl)), read_timeline(str(written_edl))
        assert _cuts(after) == _cuts(before), name
        reels = [c.metadata["cmx_3600"]["reel"] for c in after.timeline.find_clips()]
        assert sum(reel.startswith("VOID0") and len(reel) <= 8 for reel in reels) == len(done)
        outcomes.append(
            (
                name,
                len(done),
                len(report["markers"]),
                sum(len(range(e["frames"]["first"], e["frames"]["last"] + 1)) for e in done.values()),
            )
        )
    print("\n".join(f"{n}: {d} done of {m} markers, {f} clean frames" for n, d, m, f in outcomes))


def _cuts(timeline_file) -> list:
    out = []
    for item in timeline_file.timeline.tracks[0]:
        if isinstance(item, otio.schema.Transition):
            out.append(("T", item.in_offset.value, item.out_offset.value, item.metadata["cmx_3600"]["transition"]))
        else:
            rng = item.source_range
            out.append((type(item).__name__, rng.start_time.value, rng.duration.value, [m.name for m in item.markers]))
    return out


# -- OTIO ------------------------------------------------------------------------------------


def rt(frames: int):
    return opentime.RationalTime(frames, 24.0)


def seq_clip(root: Path, name: str, start: int, duration: int, source=True):
    ref = otio.schema.ImageSequenceReference(
        target_url_base=str(root / name) + "/",
        name_prefix=f"{name}.",
        name_suffix=".exr",
        start_frame=997,
        rate=24.0,
        frame_zero_padding=4,
        available_range=opentime.TimeRange(rt(997), rt(16)),
    )
    return otio.schema.Clip(
        name=name, media_reference=ref, source_range=opentime.TimeRange(rt(start), rt(duration)) if source else None
    )


def test_otio_nested_stacks_sourceless_clips_and_edl_refusals(tmp_path, daemon, capsys):
    root = make_plates(tmp_path / "plates")
    timeline = otio.schema.Timeline(name="nested", global_start_time=rt(86400))
    v1 = otio.schema.Track(name="V1")
    v1.append(seq_clip(root, "A001C003", 1001, 4))
    stack = otio.schema.Stack(name="compound")
    inner = otio.schema.Track(name="inner")
    marked = seq_clip(root, "A001C004", 1001, 5)
    marked.markers.append(
        otio.schema.Marker(name="VOID: remove the cup", marked_range=opentime.TimeRange(rt(1002), rt(1)))
    )
    inner.append(marked)
    stack.append(inner)
    v1.append(stack)
    v1.append(seq_clip(root, "A001C007", 0, 0, source=False))  # no source range: its available range
    timeline.tracks.append(v1)
    v2 = otio.schema.Track(name="V2")
    v2.append(otio.schema.Gap(source_range=opentime.TimeRange(rt(0), rt(2))))
    v2.append(seq_clip(root, "Z677_4C", 1001, 3))
    timeline.tracks.append(v2)
    source = tmp_path / "nested.otio"
    otio.adapters.write_to_file(timeline, str(source))
    out, edl = tmp_path / "out" / "nested_void.otio", tmp_path / "out" / "nested_void.edl"
    args = [str(source), "--handles", "1", "-o", str(out), "--edl", str(edl), "--address", daemon.address, "--no-start"]
    assert main(args + ["--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [(e["clip"], e["status"]) for e in report["events"]] == [("A001C004", "done")]
    assert report["events"][0]["record_range"] == {"in": "01:00:00:04", "out": "01:00:00:09"}
    written = otio.adapters.read_from_file(str(out))
    clean = written.tracks[0][1][0][0]
    assert clean.name == "A001C004_void" and clean.media_reference.start_frame == 1000
    v1_text = (tmp_path / "out" / "nested_void.V1.edl").read_text()
    assert "nested stack 'compound' flattened" in v1_text and "VOID0001" in v1_text
    assert "whole timeline is nested_void.otio" in v1_text
    reread = read_timeline(str(tmp_path / "out" / "nested_void.V1.edl"))
    assert [round(c.source_range.duration.value) for c in reread.timeline.find_clips()] == [4, 5, 16]

    # A transition that needs frames before source 00:00:00:00: the OTIO is written, the EDL refused by name.
    zero = otio.schema.Timeline(name="zero")
    track = otio.schema.Track(name="V1")
    track.append(seq_clip(root, "A001C003", 1001, 4))
    track.append(otio.schema.Transition(in_offset=rt(2), out_offset=rt(2)))
    track.append(otio.schema.Clip(name="bars", source_range=opentime.TimeRange(rt(0), rt(6))))
    zero.tracks.append(track)
    otio.adapters.write_to_file(zero, str(tmp_path / "zero.otio"))
    args = [str(tmp_path / "zero.otio"), "-o", str(tmp_path / "z.otio"), "--edl", str(tmp_path / "z.edl"), "--no-start"]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert "EDL_NEGATIVE_SOURCE" in captured.err and "Traceback" not in captured.err
    assert (tmp_path / "z.otio").exists() and not (tmp_path / "z.edl").exists()
