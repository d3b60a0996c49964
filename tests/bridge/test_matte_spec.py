"""The client side of matte jobs: the spec builder's prompts and refusals, `voidlink matte`'s arguments, and a
daemon too old for matte jobs refused before anything is sent."""

from __future__ import annotations

import pytest
from support.old_daemon import OldDaemon
from support.shots import write_shot
from voidlink.bridge import Client, build_matte_spec
from voidlink.protos import pb

from voidlink import errors


def test_prompts_are_grouped_per_frame_in_frame_order():
    spec = build_matte_spec(
        "/shows/sh010/plate.####.exr",
        (1001, 1040),
        points=[(1020, 420.5, 300), (1001, 10, 20)],
        negative=[(1001, 5, 6)],
        boxes=[(1020, 380, 250, 470, 360)],
        outlines=[(1030, [(1, 1), (9, 1), (5, 8)])],
        text="its shadow",
    )
    assert [p.frame for p in spec.matte.prompts] == [1001, 1020, 1030]
    first, middle, last = spec.matte.prompts
    assert [(p.x, p.y, p.negative) for p in first.points] == [(10, 20, False), (5, 6, True)]
    assert [(p.x, p.y) for p in middle.points] == [(420.5, 300)] and middle.boxes[0].x1 == 470
    assert [(p.x, p.y) for p in last.outline] == [(1, 1), (9, 1), (5, 8)]
    assert spec.matte.propose_affected and spec.matte.affected_text == "its shadow"
    assert spec.matte.tracker == ""  # auto: the daemon's choice
    assert spec.output.path_template == "/shows/sh010/void/plate_matte.####.exr"
    assert spec.output.pixel_type == pb.PIXEL_TYPE_UINT8 and not spec.HasField("mask")
    assert (spec.frames.first, spec.frames.last) == (1001, 1040) and spec.name == "matte plate_matte"
    half = build_matte_spec("/s/p.####.exr", points=[(1, 2, 3)], pixel_type="half", quadmask_output="/s/q.####.exr")
    assert half.output.pixel_type == pb.PIXEL_TYPE_HALF and half.output.write_quadmask
    assert half.output.quadmask_template == "/s/q.####.exr" and not half.matte.propose_affected


@pytest.mark.parametrize(
    ("arguments", "reason", "field"),
    [
        ({}, "NO_PROMPT", "points"),
        ({"points": [(1001, 10)]}, "BAD_VALUE", "points[0]"),
        ({"points": [(1001.5, 10, 10)]}, "BAD_VALUE", "points[0]"),
        ({"points": [(1001, float("nan"), 10)]}, "BAD_VALUE", "points[0]"),
        ({"boxes": [(1001, 30, 30, 10, 40)]}, "BAD_VALUE", "boxes[0]"),
        ({"outlines": [(1001, [(0, 0), (1, 1)])]}, "BAD_VALUE", "outlines[0]"),
        ({"points": [(990, 1, 1)], "frames": (1001, 1010)}, "PROMPT_OUTSIDE_RANGE", "frames"),
        ({"points": [(1001, 1, 1)], "tracker": "magic"}, "UNKNOWN_TRACKER", "tracker"),
        ({"points": [(1001, 1, 1)], "pixel_type": "float16"}, "BAD_VALUE", "pixel_type"),
        ({"points": [(f, 1, 1) for f in range(1001)]}, "TOO_MANY_PROMPTS", "points"),
        ({"points": [(1001, i, 1) for i in range(257)]}, "TOO_MANY_POINTS", "points"),
        ({"outlines": [(1001, [(i, i % 7) for i in range(10_001)])]}, "TOO_MANY_POINTS", "outlines[0]"),
        ({"points": [(1001, 1, 1)], "text": "x" * 1001}, "TOO_LONG", "text"),
    ],
)
def test_malformed_prompts_are_refused_naming_the_argument(arguments, reason, field):
    frames = arguments.pop("frames", None)
    with pytest.raises(errors.VoidlinkError) as refused:
        build_matte_spec("/s/plate.####.exr", frames, **arguments)
    assert (refused.value.reason, refused.value.field) == (reason, field), str(refused.value)


def test_matte_command_refuses_malformed_options_in_the_users_words(capsys):
    from voidlink.cli import main

    assert main(["matte", "/s/plate.####.exr", "--point", "1001:420", "--no-start"]) == 2
    assert "--point '1001:420' is not FRAME:X,Y (e.g. 1001:420,300)" in capsys.readouterr().err
    assert main(["matte", "/s/plate.####.exr", "--box", "a:1,2,3,4", "--no-start"]) == 2
    assert "--box 'a:1,2,3,4' is not FRAME:X0,Y0,X1,Y1" in capsys.readouterr().err


def test_a_daemon_too_old_for_matte_jobs_is_refused_before_anything_is_sent(start_daemon, tmp_path):
    daemon = start_daemon()
    front = OldDaemon(daemon.address)
    shot = write_shot(tmp_path / "sh010", frames=3)
    try:
        with Client(front.address) as client:
            with pytest.raises(errors.ProtocolMismatch) as refused:
                client.matte(shot.plate, points=[(shot.first, 20, 20)], output=tmp_path / "m.####.exr")
    finally:
        front.stop()
    assert refused.value.reason == "DAEMON_TOO_OLD" and "too old for matte jobs" in str(refused.value)
    assert front.submitted == []  # nothing queued: an older daemon would have run a removal


def test_matte_command_tracks_on_a_daemon_and_prints_the_result(daemon, tmp_path, capsys):
    import json

    from support.shots import read_pixels

    from voidlink.cli import main

    # 8 frames: the square moves 9 px a frame, under its own 12 px (the classical tracker's reach; see the README).
    shot = write_shot(tmp_path / "sh010", frames=8)
    truth = read_pixels(shot.mask.replace("####", str(shot.first)))[..., 0] > 0.5
    ys, xs = truth.nonzero()
    box = f"{shot.first}:{xs.min()},{ys.min()},{xs.max() + 1},{ys.max() + 1}"
    output = tmp_path / "out" / "matte.####.exr"
    output.parent.mkdir()
    argv = ["matte", shot.plate, "--box", box, "--tracker", "classical", "--propose-affected", "-o", str(output)]
    assert main([*argv, "--address", daemon.address, "--no-start", "--json"]) == 0
    job = json.loads(capsys.readouterr().out)
    assert job["state"] == "succeeded" and job["kind"] == "matte" and job["tracker"] == "classical"
    assert job["result"]["output_pattern"] == str(output)
    for frame in range(shot.first, shot.last + 1):
        matte = read_pixels(str(output).replace("####", str(frame)))[..., 0] > 0.5
        mask = read_pixels(shot.mask.replace("####", str(frame)))[..., 0] > 0.5
        assert (matte & mask).sum() / (matte | mask).sum() > 0.7, frame
