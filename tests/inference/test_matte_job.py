"""Matte jobs through a real daemon on loopback: the prompts reach the tracker, every frame's matte is written
once and read back as voidlink's own removal reads a matte, refusals name the field, cancel and restart keep
the rules of removals, the quadmask checks come back as findings, GetInfo lists the trackers.

The daemon runs in this process so the tests' tracker (tests/support/mattes.py) is in its table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest
from support.mattes import RingProposer, ShiftTracker, install, shifted_region
from support.shots import frame_files, read_pixels, write_shot
from voidlink.bridge import Client, build_spec
from voidlink.bridge.matte import build_matte_spec
from voidlink.inference.backends.matte.base import Prompt
from voidlink.inference.daemon import Daemon
from voidlink.media.image import job_of
from voidlink.protos import pb

from voidlink import errors


@pytest.fixture
def shot(tmp_path, source_guard):
    files = write_shot(tmp_path / "src")  # 96 x 64, frames 1001-1008
    source_guard(files.folder)
    return files


@pytest.fixture
def tracker(monkeypatch):
    made = ShiftTracker(step=2)
    install(monkeypatch, made, RingProposer(drop=6))
    return made


@pytest.fixture
def serve(tmp_path):
    """Start an in-process daemon (on `data_dir`, default one per test); every one is stopped at the end."""
    started: list[Daemon] = []

    def start(data_dir: Path | None = None) -> Daemon:
        daemon = Daemon(listen="127.0.0.1:0", data_dir=data_dir or tmp_path / "data")
        daemon.start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        if not daemon.stopping.is_set():
            daemon.stop(grace=1.0)


def _client(daemon: Daemon) -> Client:
    return Client(daemon.address)


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp" in p.name or p.name.startswith(".voidlink-")]


@pytest.mark.parametrize("pixel_type", ["uint8", "half"])
def test_prompts_reach_the_tracker_and_every_frame_is_written_once(serve, tracker, shot, tmp_path, pixel_type):
    output = tmp_path / "out" / "sh010_matte.####.exr"
    with _client(serve()) as client:
        result = client.matte(
            shot.plate,
            frames=(1002, 1007),
            points=[(1004, 30.5, 40.25)],
            negative=[(1004, 5, 6)],
            boxes=[(1004, 20, 21, 32, 33)],
            output=output,
            pixel_type=pixel_type,
        )
    (call,) = tracker.calls
    (prompt,) = call["prompts"]
    assert prompt.frame == 1004 and prompt.shape is None
    assert prompt.points == ((30.5, 40.25, True), (5.0, 6.0, False))
    assert prompt.boxes == ((20.0, 21.0, 32.0, 33.0),)
    assert call["frames"] == list(range(1002, 1008)) and call["size"] == (shot.width, shot.height)
    assert call["read"] == [1004, 1005, 1006, 1007, 1003, 1002]  # the tracker's order, not the frames'
    assert tracker.loads == 1
    written = sorted(p.name for p in output.parent.iterdir())
    assert written == [f"sh010_matte.{f}.exr" for f in range(1002, 1008)]  # nothing outside the range
    for frame, path in zip(range(1002, 1008), frame_files(str(output), 1002, 1007)):
        spec = oiio.ImageInput.open(str(path)).spec()
        assert spec.channelnames == ("A",) and str(spec.format) == "half"  # OpenEXR's 8-bit is half on 8-bit levels
        assert spec.getattribute("voidlink:job") == result.job_id and spec.getattribute("voidlink:tracker") == "shift"
        pixels = read_pixels(str(path))[..., 0]
        assert 0.0 <= pixels.min() and pixels.max() <= 1.0
        np.testing.assert_array_equal(pixels, shifted_region(prompt, frame, (96, 64), 2))
    assert (result.first, result.last, result.output_pattern) == (1002, 1007, str(output))
    assert result.provenance["model"] == "shift-test" and result.backend == "shift"
    assert _leftovers(output.parent) == []


def test_a_matte_written_by_a_matte_job_is_the_object_matte_of_a_removal(serve, tracker, shot, tmp_path):
    output = tmp_path / "out" / "m.####.exr"
    with _client(serve()) as client:
        client.matte(shot.plate, boxes=[(1001, 10, 20, 30, 40)], output=output)
        removed = client.remove(shot.plate, str(output), output=tmp_path / "clean" / "c.####.exr", backend="classical")
    assert removed.metrics["mask_coverage"] == pytest.approx(20 * 20 / (96 * 64))


def test_an_outline_is_filled_into_the_prompts_shape(serve, tracker, shot, tmp_path):
    square = [(20, 20), (40, 20), (40, 40), (20, 40)]
    with _client(serve()) as client:
        client.matte(shot.plate, frames=(1001, 1002), outlines=[(1001, square)], output=tmp_path / "m.####.exr")
    (prompt,) = tracker.calls[0]["prompts"]
    assert prompt.shape.shape == (64, 96) and prompt.shape.sum() == 20 * 20
    assert prompt.shape[20:40, 20:40].all()


def test_affected_proposal_grid_and_quadmask(serve, tracker, shot, tmp_path):
    output = tmp_path / "out" / "m.####.exr"
    quad = tmp_path / "q" / "q.####.png"
    with _client(serve()) as client:
        result = client.matte(
            shot.plate,
            frames=(1001, 1002),
            boxes=[(1001, 10, 20, 30, 40)],
            propose_affected=True,
            output=output,
            quadmask_output=quad,
            grid=16,
        )
    affected = tmp_path / "out" / "m_affected.####.exr"
    assert result.provenance["proposer"] == "ring" and result.affected_pattern == str(affected)
    shadow = read_pixels(str(affected).replace("####", "1001"))[..., 0]
    assert set(np.unique(shadow)) == {0.0, 1.0}
    assert shadow[16:48, 0:32].all() and shadow.sum() == 32 * 32  # rows 26-45, columns 10-29: cells of 16 px
    qm = np.round(read_pixels(str(quad).replace("####", "1001"))[..., 0] * 255)
    assert qm[25, 15] == 63 and qm[45, 15] == 127 and qm[5, 80] == 255  # object over its own proposal: overlap
    assert job_of(str(quad).replace("####", "1002")) == result.job_id


def test_affected_text_without_sam3_is_proposed_from_motion_with_a_note(serve, monkeypatch, shot, tmp_path):
    proposer = RingProposer()
    install(monkeypatch, ShiftTracker(), proposer)
    with _client(serve()) as client:
        result = client.matte(
            shot.plate, frames=(1001, 1002), points=[(1001, 20, 30)], text="its shadow", output=tmp_path / "m.####.exr"
        )
    assert proposer.texts == ["its shadow"]
    assert any("'its shadow' was not used" in note for note in result.notes), result.notes


def test_the_quadmask_checks_come_back_as_findings(serve, monkeypatch, shot, tmp_path):
    install(monkeypatch, ShiftTracker(step=40), RingProposer())
    with _client(serve()) as client:
        result = client.matte(
            shot.plate, frames=(1001, 1004), boxes=[(1001, 0, 20, 12, 32)], output=tmp_path / "m.####.exr"
        )
    found = {(f["check"], f["frame"]) for f in result.findings}
    assert ("edge", 1001) in found  # the box starts at the frame's left edge
    assert ("empty", 1004) in found  # moved out of the frame: nothing left to remove
    assert all(f["severity"] in ("warning", "error") and f["message"] for f in result.findings)


def _spec(shot, tmp_path, **kw) -> pb.JobSpec:
    return build_matte_spec(shot.plate, points=[(1003, 20, 30)], output=tmp_path / "out" / "m.####.exr", **kw)


def _refused(client: Client, spec: pb.JobSpec) -> errors.VoidlinkError:
    with pytest.raises(errors.VoidlinkError) as refused:
        client.submit(spec)
    with pytest.raises(type(refused.value)):
        client.validate(spec)
    return refused.value


def test_matte_specs_are_refused_naming_the_prompt_and_field(serve, tracker, shot, tmp_path):
    with _client(serve()) as client:
        cases = []
        spec = _spec(shot, tmp_path)
        spec.matte.prompts[0].frame = 990
        cases.append((spec, "PROMPT_OUTSIDE_RANGE", "spec.matte.prompts[0].frame", "frame 990"))
        spec = _spec(shot, tmp_path, boxes=[(1005, 1, 1, 5, 5)])
        spec.matte.prompts[1].boxes[0].x1 = 200.0
        cases.append((spec, "PROMPT_OUTSIDE_PLATE", "spec.matte.prompts[1].boxes[0]", "200,5 on frame 1005"))
        spec = _spec(shot, tmp_path, negative=[(1003, 1, 1)])
        spec.matte.prompts[0].points[1].y = -1.0
        cases.append((spec, "PROMPT_OUTSIDE_PLATE", "spec.matte.prompts[0].points[1]", "outside the plate"))
        spec = _spec(shot, tmp_path)
        spec.matte.prompts.add(frame=1004)
        cases.append((spec, "EMPTY_PROMPT", "spec.matte.prompts[1]", "frame 1004 has no point"))
        spec = _spec(shot, tmp_path)
        del spec.matte.prompts[:]
        cases.append((spec, "NO_PROMPT", "spec.matte.prompts", "needs a prompt"))
        spec = _spec(shot, tmp_path)
        spec.matte.tracker = "magic"
        cases.append((spec, "UNKNOWN_TRACKER", "spec.matte.tracker", "unknown tracker 'magic'"))
        cases.append((_spec(shot, tmp_path, tracker="sam2"), "TRACKER_UNAVAILABLE", "spec.matte.tracker", "sam2"))
        spec = _spec(shot, tmp_path, frames=(1001, 1020))
        cases.append((spec, "FRAME_RANGE_OUTSIDE_SOURCE", "spec.frames", "1020"))
        spec = _spec(shot, tmp_path, pixel_type="half")
        spec.output.path_template = str(tmp_path / "m.####.png")
        cases.append((spec, "BAD_VALUE", "spec.output.pixel_type", "written as EXR"))
        spec = _spec(shot, tmp_path)
        spec.output.path_template = shot.plate
        cases.append((spec, "OUTPUT_OVERWRITES_SOURCE", "spec.output.path_template", "sources are never written"))
        spec = _spec(shot, tmp_path, propose_affected=True)
        spec.matte.affected_template = shot.mask
        cases.append((spec, "OUTPUT_EXISTS", "spec.matte.affected_template", "not written by voidlink"))
        spec = _spec(shot, tmp_path)
        spec.output.write_raw = True
        cases.append((spec, "BAD_VALUE", "spec.output.write_raw", "writes mattes"))
        spec = _spec(shot, tmp_path, propose_affected=True)
        spec.matte.affected_template = spec.output.path_template
        cases.append((spec, "OUTPUTS_COLLIDE", "spec.matte.affected_template", "is also the job's output"))
        for spec, reason, field, words in cases:
            error = _refused(client, spec)
            assert (error.reason, error.field) == (reason, field), str(error)
            assert words in str(error), str(error)
        assert client.jobs() == [] and client.info().queue.queued == 0


def test_matte_specs_beyond_the_bounds_are_refused_before_the_disk_is_read(serve, tracker, tmp_path):
    plate = str(tmp_path / "nowhere" / "plate.####.exr")  # never looked at: the bounds come first
    with _client(serve()) as client:
        spec = build_matte_spec(plate, points=[(1, 1, 1)], output=tmp_path / "m.####.exr")
        for frame in range(2, 1002):  # past what the client lets through, as another client may send
            spec.matte.prompts.add(frame=frame, points=[pb.MattePoint(x=1, y=1)])
        error = _refused(client, spec)
        assert (error.reason, error.field) == ("TOO_MANY_PROMPTS", "spec.matte.prompts")
        spec = build_matte_spec(plate, points=[(1, 1, 1)], output=tmp_path / "m.####.exr")
        for _ in range(256):
            spec.matte.prompts[0].points.add(x=2, y=2)
        error = _refused(client, spec)
        assert (error.reason, error.field) == ("TOO_MANY_POINTS", "spec.matte.prompts[0].points")
        spec = build_matte_spec(plate, points=[(1, 1, 1)], output=tmp_path / "m.####.exr")
        spec.matte.prompts[0].outline.extend([pb.MattePoint(x=1, y=1)] * 10_001)
        assert _refused(client, spec).field == "spec.matte.prompts[0].outline"
        spec = build_matte_spec(plate, points=[(1, 1, 1)], output=tmp_path / "m.####.exr")
        spec.matte.affected_text = "x" * 1001
        assert _refused(client, spec).field == "spec.matte.affected_text"


def test_validate_only_answers_for_a_matte_job_and_queues_nothing(serve, tracker, shot, tmp_path):
    with _client(serve()) as client:
        job = client.validate(_spec(shot, tmp_path, frames=(1002, 1005)))
        assert job.message == "valid" and job.frames_total == 4 and job.id == ""
        assert client.jobs() == [] and tracker.calls == []


def test_an_8_bit_removal_is_refused(serve, tracker, shot, tmp_path):
    spec = build_spec(shot.plate, shot.mask, output=tmp_path / "c.####.exr")
    spec.output.pixel_type = pb.PIXEL_TYPE_UINT8
    with _client(serve()) as client:
        error = _refused(client, spec)
    assert (error.reason, error.field) == ("BAD_VALUE", "spec.output.pixel_type") and "mattes" in str(error)


def test_cancel_mid_track_leaves_no_partial_output_and_the_earlier_result(serve, tracker, shot, tmp_path):
    output = tmp_path / "out" / "m.####.exr"
    with _client(serve()) as client:
        earlier = client.matte(shot.plate, points=[(1001, 20, 30)], output=output)
        before = {p.name: p.read_bytes() for p in output.parent.iterdir()}
        tracker.hold_at = 1005
        job = client.submit(_spec(shot, tmp_path, propose_affected=True))
        assert tracker.reached.wait(30)  # four frames staged, the fifth being tracked
        client.cancel(job.id)
        final = client.wait(job.id)
    assert final.state == pb.JOB_STATE_CANCELLED
    assert {p.name: p.read_bytes() for p in output.parent.iterdir()} == before  # wholly the earlier result
    assert {job_of(str(p)) for p in output.parent.iterdir()} == {earlier.job_id}
    assert _leftovers(output.parent) == []


def test_a_matte_job_resumes_after_a_restart_without_rewriting_its_staged_frames(serve, tracker, shot, tmp_path):
    data = tmp_path / "data"
    output = tmp_path / "out" / "m.####.exr"
    daemon = serve(data)
    with _client(daemon) as client:
        tracker.hold_at = 1005
        job = client.submit(build_matte_spec(shot.plate, points=[(1001, 20, 30)], output=output))
        assert tracker.reached.wait(30)
    staged = sorted((output.parent / f".voidlink-{job.id}" / "output").glob("m.*.exr"))
    assert [p.name for p in staged] == [f"m.{f}.exr" for f in range(1001, 1005)]
    stamps = {p.name: p.stat().st_mtime_ns for p in staged}
    daemon.stop(grace=1.0)  # the job is interrupted, not cancelled: it goes back to the queue

    tracker.hold_at = None
    with _client(serve(data)) as client:
        final = client.wait(job.id)
    assert final.state == pb.JOB_STATE_SUCCEEDED, final.error
    assert final.attempts == 2 and len(tracker.calls) == 2
    files = frame_files(str(output), 1001, 1008)
    assert all(p.exists() and job_of(str(p)) == job.id for p in files)
    for name, stamp in stamps.items():  # staged before the restart: moved into place, never written again
        assert (output.parent / name).stat().st_mtime_ns == stamp
    assert _leftovers(output.parent) == []


def test_a_tracker_that_fails_fails_its_job_and_the_daemon_serves_on(serve, monkeypatch, shot, tmp_path):
    class Broken(ShiftTracker):
        def track(self, reader, prompts, request):
            yield 1001, np.zeros((64, 96), np.float32)
            raise RuntimeError("the model fell over")

    install(monkeypatch, Broken(), RingProposer())
    with _client(serve()) as client:
        job = client.submit(_spec(shot, tmp_path))
        final = client.wait(job.id)
        assert final.state == pb.JOB_STATE_FAILED and "the model fell over" in final.error.message
        assert client.validate(_spec(shot, tmp_path)).message == "valid"  # the daemon serves on
    assert not (tmp_path / "out").exists() or _leftovers(tmp_path / "out") == []


def test_info_lists_trackers_and_proposers_and_which_are_loaded(serve, tracker, shot, tmp_path):
    with _client(serve()) as client:
        listed = {t.name: t for t in client.info().matte_trackers}
        assert list(listed) == ["classical", "sam2", "edgetam", "motion", "sam3"]
        assert listed["classical"].available and listed["classical"].detail.startswith("tracker")
        assert not listed["sam2"].available and listed["sam2"].reason
        assert listed["motion"].detail.startswith("proposer") and not listed["classical"].loaded
        client.matte(shot.plate, frames=(1001, 1002), points=[(1001, 20, 30)], output=tmp_path / "m.####.exr")
        again = {t.name: t for t in client.info().matte_trackers}
        assert again["classical"].loaded and not again["motion"].loaded


def test_the_real_tables_list_every_model_with_a_reason(serve, tmp_path):
    with _client(serve()) as client:
        listed = {t.name: t for t in client.info().matte_trackers}
    assert set(listed) == {"classical", "sam2", "edgetam", "motion", "sam3"}
    assert listed["classical"].available and listed["motion"].available
    for name in ("sam2", "edgetam", "sam3"):
        entry = listed[name]
        assert entry.available or entry.reason.startswith(f"{name}: "), entry
        assert entry.licences  # stated also while the model cannot run: it matters before the download


def test_a_prompt_is_what_a_tracker_is_handed():
    with pytest.raises(ValueError):
        Prompt(frame=1)  # nothing on it: the daemon refuses such a prompt before any tracker sees one


def test_a_job_interrupted_after_tracking_does_not_track_again(shot, tmp_path):
    from support.faults import Killed
    from voidlink.inference.job.kinds import prepare
    from voidlink.inference.job.matte.run import run_matte

    class Dying(RingProposer):
        def propose(self, reader, object_matte, text, request):
            yield from list(super().propose(reader, object_matte, text, request))[:2]
            raise Killed("the daemon died while proposing")

    spec = build_matte_spec(shot.plate, points=[(1001, 20, 30)], propose_affected=True, output=tmp_path / "m.####.exr")
    with pytest.raises(Killed):
        run_matte(prepare(spec), ShiftTracker(), Dying(), job_id="j")
    again = ShiftTracker()
    result = run_matte(prepare(spec), again, RingProposer(), job_id="j")
    assert again.calls == []  # every object matte was staged: nothing tracked twice
    assert result.affected_pattern == str(tmp_path / "m_affected.####.exr")
    assert all(p.exists() for p in frame_files(result.affected_pattern, 1001, 1008))
    assert all(p.exists() for p in frame_files(str(tmp_path / "m.####.exr"), 1001, 1008))
    assert _leftovers(tmp_path) == []
