"""Conform: EDL and OTIO timelines in, removals run on the marked events, timelines back out."""

from __future__ import annotations

import json
from pathlib import Path

import opentimelineio as otio
import pytest
from support.conform import FIXTURES, RATE, otio_cut, plates
from voidlink.bridge.conform import TimelineError, build_plan, find_marked_events, read_timeline
from voidlink.bridge.conform.plan import record_range_of

from voidlink.cli.conform import main


def cuts(timeline) -> list:
    """Per track, per item: (kind, name, record in, record out, source range) in frames."""
    out = []
    for track in timeline.tracks:
        items = []
        for index, item in enumerate(track):
            if isinstance(item, otio.schema.Transition):
                items.append(("transition", item.in_offset.value, item.out_offset.value))
                continue
            record = record_range_of(timeline, track, index)
            source = item.source_range
            items.append(
                (
                    type(item).__name__,
                    round(record.start_time.value),
                    round(record.duration.value),
                    None if source is None else (round(source.start_time.value), round(source.duration.value)),
                )
            )
        out.append((track.name, track.kind, items))
    return out


# -- reading and marking ---------------------------------------------------------------------


def test_edl_markers_locators_resolve_comments_and_refusals():
    timeline = read_timeline(str(FIXTURES / "cut.edl"))
    assert timeline.rate == 24.0 and not timeline.drop_frame
    events = {event.number: event for event in find_marked_events(timeline.timeline)}
    assert sorted(events) == [1, 2, 3, 4, 5, 7]  # event 6 has a locator without VOID:
    assert events[1].prompt == "remove the boom mic shadow" and events[1].marker_source == "EDL locator"
    assert events[2].prompt == "remove the sign" and events[2].marker_source == "Resolve comment"
    assert "black" in events[3].refusal
    assert "speed change" in events[4].refusal and "200%" in events[4].refusal
    assert "freeze frame" in events[5].refusal
    assert events[7].prompt == "remove the ladder"
    assert any("2 VOID markers" in w for w in events[7].warnings) is False  # an empty marker is not a conflict
    for number in (1, 2, 7):
        assert events[number].refusal == ""


def test_drop_frame_edl_with_colon_timecodes_counts_drop_frame():
    timeline = read_timeline(str(FIXTURES / "drop_frame.edl"))
    assert timeline.drop_frame and abs(timeline.rate - 30000 / 1001) < 1e-9
    track = timeline.timeline.tracks[0]
    # 01:00:59;20 → 01:01:00;10 skips frames ;00 and ;01 of minute 1: 18 frames, not 20.
    assert round(track[0].source_range.duration.value) == 18
    # 01:01:00;10 → 01:01:02;10 drops nothing: two full seconds.
    assert round(record_range_of(timeline.timeline, track, 1).duration.value) == 60


def test_midnight_crossing_record_and_source():
    timeline = read_timeline(str(FIXTURES / "midnight.edl"))
    track = timeline.timeline.tracks[0]
    assert [round(record_range_of(timeline.timeline, track, i).duration.value) for i in range(3)] == [36, 24, 24]
    assert round(track[0].source_range.duration.value) == 36  # 23:59:59:00 → 00:00:00:12


def test_unparseable_edl_names_its_line(tmp_path, capsys):
    with pytest.raises(TimelineError) as bad_fields:
        read_timeline(str(FIXTURES / "bad_line.edl"))
    assert bad_fields.value.line == 6 and "bad_line.edl:6" in str(bad_fields.value)
    with pytest.raises(TimelineError) as overlap:
        read_timeline(str(FIXTURES / "bad_overlap.edl"))
    assert overlap.value.line == 8 and "Overlapping" in str(overlap.value)
    broken = tmp_path / "broken.otio"
    broken.write_text('{\n  "OTIO_SCHEMA": "Timeline.1",\n  "tracks": [,\n}\n')
    assert main([str(broken), "-o", str(tmp_path / "out.otio")]) == 2
    assert "broken.otio:3" in capsys.readouterr().err


# -- lossless round trip ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, rate",
    [
        ("cut.edl", None),
        ("drop_frame.edl", None),
        ("drop_frame.edl", "30"),
        ("midnight.edl", None),
        ("midnight.edl", "25"),
    ],
)
def test_round_trip_without_marked_events_is_lossless(tmp_path, name, rate):
    source = tmp_path / name
    text = (FIXTURES / name).read_text()
    # Without VOID markers nothing is submitted: no daemon needed.
    source.write_text(text.replace("VOID:", "NOTE:"))
    out = tmp_path / "out" / "cut_void.otio"
    args = [str(source), "-o", str(out), "--edl", str(tmp_path / "out" / "cut_void.edl"), "--no-start"]
    assert main(args + (["--rate", rate] if rate else [])) == 0
    original = read_timeline(str(source), None if rate is None else float(rate))
    written = otio.adapters.read_from_file(str(out))
    assert cuts(written) == cuts(original.timeline)
    reread = read_timeline(str(tmp_path / "out" / "cut_void.edl"), original.rate)
    assert cuts(reread.timeline)[0][2] == cuts(original.timeline)[0][2]
    # Nothing was conformed, so the EDL comes back exactly as the editor wrote it, line for line.
    assert (tmp_path / "out" / "cut_void.edl").read_text() == source.read_text()


def test_a_conform_never_writes_over_the_cut_nor_a_file_voidlink_did_not_write(tmp_path, capsys):
    source = tmp_path / "cut.edl"
    source.write_text((FIXTURES / "cut.edl").read_text().replace("VOID:", "NOTE:"))  # nothing to submit
    cut = source.read_bytes()
    out = tmp_path / "out" / "cut_void.otio"
    notes = tmp_path / "notes.txt"
    notes.write_text("the editor's notes\n")
    for args, named in (
        (["-o", str(notes)], "notes.txt exists and was not written by voidlink"),
        (["-o", str(out), "--edl", str(source)], "is the timeline being conformed"),
        (["-o", str(tmp_path / "link.otio")], "is the timeline being conformed"),
    ):
        if args[1].endswith("link.otio"):
            (tmp_path / "link.otio").symlink_to(source)
        assert main([str(source), *args, "--no-start"]) != 0
        assert named in capsys.readouterr().err
    assert source.read_bytes() == cut and notes.read_text() == "the editor's notes\n" and not out.exists()
    assert main([str(source), "-o", str(notes), "--overwrite", "--no-start"]) == 0  # told to: replaced whole
    replaced = otio.adapters.read_from_file(str(notes), adapter_name="otio_json")
    assert replaced.metadata["voidlink"]["conformed_from"] == str(source)
    args = [str(source), "-o", str(out), "--edl", str(tmp_path / "out" / "cut_void.edl"), "--no-start"]
    assert main(args) == 0
    assert main(args) == 0  # its own files, written again: no --overwrite needed
    assert [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")] == [".voidlink-conform.json"]
    (tmp_path / "out" / "cut_void.edl").write_text("TITLE: the editor's own\n")  # changed by hand: theirs now
    assert main(args) != 0 and "cut_void.edl exists and was not written by voidlink" in capsys.readouterr().err
    assert (tmp_path / "out" / "cut_void.edl").read_text() == "TITLE: the editor's own\n"


def test_a_conform_of_a_crlf_edl_and_of_a_one_track_otio_runs_again_over_its_own_files(tmp_path):
    crlf = tmp_path / "crlf.edl"
    crlf.write_bytes((FIXTURES / "cut.edl").read_text().replace("VOID:", "NOTE:").replace("\n", "\r\n").encode())
    one_track = tmp_path / "one.otio"
    timeline = read_timeline(str(FIXTURES / "cut.edl")).timeline
    otio.adapters.write_to_file(timeline, str(one_track))
    for source in (crlf, one_track):
        out = tmp_path / source.stem
        args = [str(source), "-o", str(out / "c.otio"), "--edl", str(out / "c.edl"), "--no-start"]
        assert main(args) in (0, 1)
        first = sorted(p.name for p in out.iterdir())
        assert main(args) in (0, 1), source.name  # not refused: the files are voidlink's
        assert sorted(p.name for p in out.iterdir()) == first and "c.edl" in first


# -- media, mattes and the plan --------------------------------------------------------------


def test_dry_run_plan_json_missing_ambiguous_and_pinned_media(tmp_path, capsys):
    roots = plates(tmp_path / "plates", ["A001C003", "A001C004"])
    other = plates(tmp_path / "more", ["A001C004"])
    out = tmp_path / "out" / "cut_void.otio"
    args = [str(FIXTURES / "cut.edl"), "--media-root", str(roots), "--media-root", str(other), "--handles", "2"]
    assert main(args + ["-o", str(out), "--dry-run", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    events = {event["number"]: event for event in report["events"]}
    for event in report["events"]:
        assert {"event", "prompt", "source_range", "media", "mattes", "status"} <= set(event)
    first = events[1]
    assert first["status"] == "planned" and first["prompt"] == "remove the boom mic shadow"
    assert first["source_range"] == {"in": "00:00:41:17", "out": "00:00:42:01"}
    assert first["record_range"] == {"in": "01:00:00:00", "out": "01:00:00:08"}
    # 8 event frames plus the 4 the dissolve after it shows, 2 handles before; none exist after 1012.
    assert first["frames"] == {"first": 999, "last": 1012, "count": 14}
    assert first["mattes"]["mask"].endswith("A001C003/A001C003_mask.####.exr")
    assert first["mattes"]["affected"].endswith("A001C003/A001C003_affected.####.exr")
    assert first["output"].endswith("cut_void/V_001_A001C003/A001C003_void.####.exr")
    assert events[2]["status"] == "ambiguous_media" and len(events[2]["candidates"]) == 2
    assert "--media A001C004=PATH" in events[2]["message"]
    assert events[7]["status"] == "missing_media" and "A001C008" in events[7]["message"]
    assert {events[n]["status"] for n in (3, 4, 5)} == {"refused"}
    assert not out.exists() and not (tmp_path / "out").exists()  # a dry run writes nothing

    pinned = str(other / "A001C004" / "A001C004.####.exr")
    assert main(args + ["-o", str(out), "--dry-run", "--json", "--media", f"A001C004={pinned}"]) == 1
    events = {event["number"]: event for event in json.loads(capsys.readouterr().out)["events"]}
    assert events[2]["status"] == "planned" and events[2]["media"] == pinned


def test_missing_mattes_and_mattes_pattern(tmp_path):
    roots = plates(tmp_path / "plates", ["A001C003", "A001C004"])
    for path in (roots / "A001C003").glob("A001C003_mask.*.exr"):
        path.rename(path.with_name(path.name.replace("_mask.", "_roto.")))
    timeline = read_timeline(str(FIXTURES / "cut.edl"))
    plan = build_plan(timeline, str(tmp_path), media_roots=(roots,))
    by_number = {entry.event.number: entry for entry in plan.events}
    assert by_number[1].status == "missing_mattes" and "A001C003_mask.####.exr" in by_number[1].message
    assert by_number[2].status == "planned"
    plan = build_plan(timeline, str(tmp_path), media_roots=(roots,), mattes="{dir}/{reel}_roto.####.exr")
    by_number = {entry.event.number: entry for entry in plan.events}
    assert by_number[1].status == "planned" and by_number[1].media.mask.endswith("A001C003_roto.####.exr")
    assert by_number[2].status == "missing_mattes"  # the pattern applies to every event


# -- a real conform through the daemon -------------------------------------------------------


def test_conform_otio_through_the_daemon_then_reuse(tmp_path, daemon, source_guard, capsys):
    root = source_guard(plates(tmp_path / "plates", ["B001C001", "B001C002", "B001C003", "B001C004"]))
    source = tmp_path / "cut.otio"
    timeline = otio_cut(root)
    otio.adapters.write_to_file(timeline, str(source))
    out = tmp_path / "out" / "cut_void.otio"
    args = [
        str(source),
        "--media-root",
        str(root),
        "--handles",
        "1",
        "-o",
        str(out),
        "--edl",
        str(tmp_path / "out" / "cut_void.edl"),
        "--address",
        daemon.address,
        "--no-start",
    ]
    assert main(args + ["--json"]) == 1  # the gap and the missing plate are not done
    report = json.loads(capsys.readouterr().out)
    status = {event["clip"]: event["status"] for event in report["events"]}
    assert status == {"B001C001": "done", "event 3": "refused", "B001C009": "missing_media", "B001C003": "done"}
    assert len(daemon.client().jobs()) == 2

    written = otio.adapters.read_from_file(str(out))
    assert written.global_start_time == timeline.global_start_time
    assert cuts(written) == cuts(timeline)  # record and source ranges of every item, transitions and gaps too
    before, after = list(timeline.find_clips()), list(written.find_clips())
    for old, new in zip(before, after):
        if old.name not in ("B001C001", "B001C003"):
            assert new.to_json_string() == old.to_json_string()  # untouched, metadata and all
            continue
        ref = new.media_reference
        assert isinstance(ref, otio.schema.ImageSequenceReference) and new.name == f"{old.name}_void"
        event = next(e for e in report["events"] if e["clip"] == old.name)
        made_by = new.metadata["voidlink"]["provenance"]
        assert made_by["backend"] == "classical" and made_by["prompt"] == new.metadata["voidlink"]["conform"]["prompt"]
        assert ref.rate == RATE and ref.start_frame == event["frames"]["first"]
        visible = old.source_range.duration.value + (2 if old.name == "B001C001" else 0)  # + dissolve
        assert ref.number_of_images_in_sequence() == visible + 2  # event duration plus handles
        # The clip's first source frame maps to the same frame number in the clean plate.
        assert ref.frame_for_time(old.source_range.start_time) == round(old.source_range.start_time.value) - 86400
        files = sorted(Path(ref.target_url_base).glob(f"{ref.name_prefix}*{ref.name_suffix}"))
        assert len(files) == ref.number_of_images_in_sequence()
        assert files[0].name == f"{ref.name_prefix}{ref.start_frame:04d}.exr"
    edl_text = (tmp_path / "out" / "cut_void.V1.edl").read_text()
    assert "VOID0001" in edl_text and "* SOURCE FILE:" in edl_text and "01:00:00:00" in edl_text
    assert "* FROM CLIP NAME:  B001C001_void" in edl_text
    assert (tmp_path / "out" / "cut_void.V2.edl").exists()

    # Same inputs again: the finished results are reused, nothing is submitted.
    assert main(args + ["--json"]) == 1
    again = {event["clip"]: event["status"] for event in json.loads(capsys.readouterr().out)["events"]}
    assert again["B001C001"] == again["B001C003"] == "reused"
    conformed = otio.adapters.read_from_file(str(out)).find_clips()
    reused = {c.name: c.metadata["voidlink"] for c in conformed if "voidlink" in c.metadata}
    assert reused["B001C001_void"]["provenance"]["backend"] == "classical"  # kept in the manifest
    assert len(daemon.client().jobs()) == 2
    # A changed prompt is new work for that event only.
    timeline.tracks[0][0].markers[0].name = "VOID: remove the crew member and his shadow"
    otio.adapters.write_to_file(timeline, str(source))
    assert main(args) == 1
    table = capsys.readouterr().out
    assert "B001C001  done" in table.replace("V1_001_", "") and "reused" in table
    assert len(daemon.client().jobs()) == 3


def test_edl_conform_with_empty_prompt_warns_and_runs(tmp_path, daemon, capsys):
    root = plates(tmp_path / "plates", ["A001C008"])
    edl = tmp_path / "one.edl"
    edl.write_text(
        "TITLE: ONE\nFCM: NON-DROP FRAME\n\n"
        "001  A001C008 V     C        00:00:41:17 00:00:41:23 01:00:00:00 01:00:00:06\n"
        "* FROM CLIP NAME:  A001C008\n* LOC: 01:00:00:02 RED     VOID:\n"
    )
    out = tmp_path / "one_void.otio"
    assert (
        main(
            [
                str(edl),
                "--media-root",
                str(root),
                "--handles",
                "3",
                "-o",
                str(out),
                "--edl",
                str(tmp_path / "one_void.edl"),
                "--address",
                daemon.address,
                "--no-start",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert "empty prompt" in captured.err and "V_001_A001C008  done" in captured.out
    clip = otio.adapters.read_from_file(str(out)).find_clips()[0]
    assert clip.media_reference.number_of_images_in_sequence() == 6 + 2 * 3
    assert clip.media_reference.start_frame == 1001 - 3
    edl_text = (tmp_path / "one_void.edl").read_text()
    assert "001  VOID0001 V     C        00:00:41:17 00:00:41:23 01:00:00:00 01:00:00:06" in edl_text
    assert "* VOIDLINK: VOID0001 = " in edl_text and edl_text.count("* SOURCE FILE:") == 1
