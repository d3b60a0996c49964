"""What voidlink may write over, and the commit: foreign files refused, the roll-forward move, cancels
before and after the point of no return, the prepared job handed on."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from support.faults import Killed, crash_mid_commit
from support.jobs import MeanFill, frame_paths, run_spec
from support.shots import read_pixels, write_shot
from voidlink.bridge import build_spec
from voidlink.inference.job import staging as job_staging
from voidlink.inference.job.control import CancelFlag, NullProgress
from voidlink.inference.job.prepare import prepare_job
from voidlink.inference.job.run import run_job
from voidlink.inference.job.staging import (
    commit_begun,
    discard_staging_of,
    finish_interrupted_commit,
    staging_of,
)
from voidlink.media import image
from voidlink.protos import pb

from voidlink import errors

# -- what voidlink may write over, and the commit ---------------------------------------------


def _jobs(pattern: str, first: int, last: int) -> list:
    """The voidlink job recorded in each frame's header (None: not voidlink's)."""
    return [image.job_of(p) for p in frame_paths(pattern, first, last)]


def test_output_over_files_voidlink_did_not_write_is_refused_unless_overwrite(shot, tmp_path, source_guard):
    import shutil

    from support.shots import write_exr

    output = tmp_path / "o" / "o.####.exr"
    output.parent.mkdir()
    other = write_shot(tmp_path / "sh020", frames=6)  # another shot's plates sit where this job would write
    for frame in range(shot.first, shot.last + 1):
        shutil.copy(other.plate.replace("####", f"{frame:04d}"), str(output).replace("####", f"{frame:04d}"))
    with pytest.raises(errors.OutputExists) as info:
        prepare_job(build_spec(shot.plate, shot.mask, output=output))
    error = info.value
    first = str(output).replace("####", f"{shot.first:04d}")
    assert error.reason == "OUTPUT_EXISTS" and error.grpc_code == "FAILED_PRECONDITION"
    assert error.field == "spec.output.path_template" and error.file == first and error.frame == shot.first
    assert error.frames == list(range(shot.first, shot.last + 1))
    assert f"{first} (frame {shot.first}) exists and was not written by voidlink, and 5 more" in str(error)
    assert "Choose another output, or pass --overwrite" in str(error)

    # A folder, a text file, a link (even to a voidlink result) or an unreadable image are not voidlink's either.
    taken = tmp_path / "t" / "t.####.exr"
    done = run_spec(build_spec(shot.plate, shot.mask, output=tmp_path / "v" / "v.####.exr"), job_id="v")
    for make in (
        lambda p: p.mkdir(),
        lambda p: p.write_text("notes"),
        lambda p: p.symlink_to(done.output_pattern.replace("####", "1001")),
        lambda p: write_exr(p, np.zeros((4, 4, 3), np.float32)),
    ):
        shutil.rmtree(taken.parent, ignore_errors=True)
        taken.parent.mkdir()
        make(Path(str(taken).replace("####", "1003")))
        with pytest.raises(errors.OutputExists, match=r"t\.1003\.exr \(frame 1003\) exists"):
            prepare_job(build_spec(shot.plate, shot.mask, output=taken))

    # The side outputs follow the same rule: a hand-made quadmask is kept.
    side = tmp_path / "v" / "quadmask" / "v_quadmask.1002.png"
    hand = image.read_image(str(side), matte=True).pixels
    image.write_image(str(side), hand, pixel_type="uint8", channel_names=["Y"])
    with pytest.raises(errors.OutputExists) as info:
        prepare_job(build_spec(shot.plate, shot.mask, output=tmp_path / "v" / "v.####.exr"))
    assert info.value.field == "spec.output.quadmask_template" and info.value.file == str(side)

    # overwrite=True replaces them; every file the job writes then carries its id, so a re-run needs nothing.
    source_guard(other.folder)
    run_spec(build_spec(shot.plate, shot.mask, output=output, overwrite=True), job_id="a")
    assert _jobs(str(output), shot.first, shot.last) == ["a"] * 6
    result = run_spec(build_spec(shot.plate, shot.mask, output=output), job_id="b")
    assert _jobs(str(output), shot.first, shot.last) == ["b"] * 6
    assert _jobs(result.quadmask_pattern, shot.first, shot.last) == ["b"] * 6
    spec = build_spec(shot.plate, shot.mask, output=tmp_path / "r" / "r.####.exr")
    spec.output.write_raw = True
    raw = run_spec(spec, job_id="d")
    assert _jobs(raw.raw_pattern, shot.first, shot.last) == ["d"] * 6

    # overwrite never lets a job write its own sources.
    with pytest.raises(errors.PermissionDenied) as info:
        prepare_job(build_spec(shot.plate, shot.mask, output=shot.plate, overwrite=True))
    assert info.value.reason == "OUTPUT_OVERWRITES_SOURCE"


def test_two_kinds_of_output_on_one_file_are_refused_and_the_clean_plate_stays(shot, tmp_path):
    output = tmp_path / "o" / "c.####.exr"
    earlier = run_spec(build_spec(shot.plate, shot.mask, output=output), job_id="a")
    spec = build_spec(shot.plate, shot.mask, output=output)
    spec.output.quadmask_template = str(output)  # the quadmask renamed in last would replace every clean frame
    with pytest.raises(errors.InvalidInput) as info:
        prepare_job(spec)
    first = str(output).replace("####", f"{shot.first:04d}")
    assert info.value.reason == "OUTPUTS_COLLIDE" and info.value.field == "spec.output.quadmask_template"
    assert info.value.file == first and info.value.frame == shot.first
    assert "is also the job's output (spec.output.path_template)" in str(info.value)
    raw = build_spec(shot.plate, shot.mask, output=tmp_path / "r" / "r.####.exr")
    raw.output.write_raw = True
    raw.output.raw_template = raw.output.quadmask_template = str(tmp_path / "r" / "side.####.png")
    with pytest.raises(errors.InvalidInput, match="spec.output.raw_template: .* is also the job's quadmask"):
        prepare_job(raw)
    assert _jobs(earlier.output_pattern, shot.first, shot.last) == ["a"] * 6
    assert image.read_image(first).pixels.shape[2] == 3  # still the clean plate, not a one-channel matte


@pytest.mark.parametrize("killed_at", ["raw", "output"])
def test_a_job_killed_between_a_frames_files_resumes_with_every_file_of_every_frame_its_own(
    shot, tmp_path, monkeypatch, killed_at
):
    from voidlink.inference.job import render as job_render

    def spec() -> pb.JobSpec:
        made = build_spec(shot.plate, shot.mask, output=tmp_path / "o" / "o.####.exr")
        made.output.write_raw = True
        return made

    earlier = run_spec(spec(), job_id="a")
    write = image.write_image

    def dying(path, *args, **kwargs):
        if f"{os.sep}{killed_at}{os.sep}" in path and path.endswith("1003" + Path(path).suffix):
            raise Killed(f"the daemon dies writing frame 1003's {killed_at}")
        return write(path, *args, **kwargs)

    monkeypatch.setattr(job_render.image, "write_image", dying)
    with pytest.raises(Killed):
        run_job(prepare_job(spec()), MeanFill(), job_id="b")
    monkeypatch.undo()
    result = run_job(prepare_job(spec()), MeanFill(), job_id="b")  # the restart resumes what is not staged
    for pattern in (result.output_pattern, result.raw_pattern, result.quadmask_pattern):
        assert _jobs(pattern, shot.first, shot.last) == ["b"] * 6, pattern
    assert earlier.raw_pattern == result.raw_pattern


def test_a_move_stopped_half_way_is_finished_before_any_other_job_writes_those_files(shot, tmp_path, monkeypatch):
    import errno

    from voidlink.inference.backends import BackendRegistry
    from voidlink.inference.events import EventBus
    from voidlink.inference.scheduler import Scheduler
    from voidlink.inference.store import JobStore
    from voidlink.protos import status

    output = tmp_path / "o" / "o.####.exr"
    store = JobStore(tmp_path / "jobs.sqlite")
    spec = build_spec(shot.plate, shot.mask, output=output)
    earlier = store.add(spec)
    run_spec(spec, job_id=earlier.id)
    stopped = store.add(spec)
    move, moved = job_staging._move, []

    def failing(staged, final):
        if len(moved) == 2:
            raise OSError(errno.EACCES, "Permission denied")
        moved.append(final)
        move(staged, final)

    monkeypatch.setattr(job_staging, "_move", failing)  # the third rename fails: a permission, a full disk
    with pytest.raises(errors.VoidlinkError) as info:
        run_job(prepare_job(spec), MeanFill(), job_id=stopped.id)
    assert info.value.reason == "COMMIT_INCOMPLETE"
    store.finish(stopped.id, pb.JOB_STATE_FAILED, message=str(info.value), error=status.detail_of(info.value))
    monkeypatch.undo()

    # The user runs the job again instead of restarting: refused before it renders, naming the way out.
    rerun = store.add(spec)
    with pytest.raises(errors.Conflict) as refused:
        run_job(prepare_job(spec), MeanFill(), job_id=rerun.id)
    assert refused.value.reason == "COMMIT_PENDING" and f"job {stopped.id} began moving" in str(refused.value)
    assert "Restart the daemon" in str(refused.value) and str(staging_of(spec, stopped.id)) in str(refused.value)
    assert _jobs(str(output), shot.first, shot.last) == [stopped.id] * 2 + [earlier.id] * 4
    assert staging_of(spec, rerun.id) is None or not staging_of(spec, rerun.id).exists()

    # The restart finishes the stopped move; then the rerun goes through and its frames are the only ones.
    assert Scheduler(store, EventBus(), BackendRegistry()).recover() == [stopped.id]
    assert _jobs(str(output), shot.first, shot.last) == [stopped.id] * 6
    run_spec(spec, job_id=rerun.id)
    assert _jobs(str(output), shot.first, shot.last) == [rerun.id] * 6
    store.close()


def test_a_commit_waits_for_another_process_committing_into_the_same_folder(shot, tmp_path, monkeypatch):
    import fcntl  # the folder lock is flock's (Linux and macOS, where daemons and pool workers run)
    import threading

    output = tmp_path / "o" / "o.####.exr"
    earlier = run_spec(build_spec(shot.plate, shot.mask, output=output), job_id="a")
    # Another voidlink process, in the middle of its commit.
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(output.parent)], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    flock, asked = fcntl.flock, threading.Event()

    def noted(handle, operation):
        asked.set()
        return flock(handle, operation)

    monkeypatch.setattr(fcntl, "flock", noted)
    spec = build_spec(shot.plate, shot.mask, output=output)
    rerun = threading.Thread(target=run_spec, args=(spec,), kwargs={"job_id": "b"})
    rerun.start()
    try:
        assert asked.wait(60)  # the rerun's commit asks for the folder
        rerun.join(0.5)
        assert rerun.is_alive()  # and waits for it (a lock that did not hold would have let it finish)
        assert _jobs(earlier.output_pattern, shot.first, shot.last) == ["a"] * 6  # nothing moved meanwhile
    finally:
        holder.communicate("")  # it lets go and ends
    rerun.join(60)
    assert not rerun.is_alive() and _jobs(earlier.output_pattern, shot.first, shot.last) == ["b"] * 6


def test_a_move_under_way_in_this_process_does_not_refuse_the_next_job_over_the_same_files(shot, tmp_path, monkeypatch):
    import threading

    from voidlink.inference.job.staging import check_no_unfinished_commit

    output = tmp_path / "o" / "o.####.exr"
    spec = build_spec(shot.plate, shot.mask, output=output)
    move, midway, go = job_staging._move, threading.Event(), threading.Event()

    def slow(staged, final):
        move(staged, final)
        midway.set()
        assert go.wait(60)

    monkeypatch.setattr(job_staging, "_move", slow)
    first = threading.Thread(target=run_spec, args=(spec,), kwargs={"job_id": "a"})
    first.start()
    try:
        assert midway.wait(60)  # job a is moving its frames into place: its marker is on disk
        assert commit_begun(spec, "a")
        check_no_unfinished_commit(prepare_job(spec), "b")  # not a stopped move: job b may be submitted
    finally:
        go.set()
        first.join(60)
    assert _jobs(str(output), shot.first, shot.last) == ["a"] * 6


HOLD_LOCK = """
import fcntl, os, sys
handle = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(handle, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""


class _Intruder(MeanFill):
    """Another program writes a file at one of the job's output names while the job renders."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def run(self, frames, request):
        from support.shots import write_exr

        for i, result in enumerate(super().run(frames, request)):
            if i == 0:
                write_exr(Path(self.path), np.ones((4, 4, 3), np.float32))
            yield result


def test_a_file_appearing_while_the_job_runs_is_not_overwritten(shot, tmp_path):
    output = tmp_path / "o" / "o.####.exr"
    intruder = str(output).replace("####", "1004")
    with pytest.raises(errors.OutputExists) as info:
        run_spec(build_spec(shot.plate, shot.mask, output=output), _Intruder(intruder))
    assert info.value.file == intruder and "appeared after the job was submitted" in str(info.value)
    assert image.job_of(intruder) is None and read_pixels(intruder).shape == (4, 4, 3)
    assert sorted(p.name for p in output.parent.iterdir()) == ["o.1004.exr"]  # nothing moved, no staging left


class _CancelAt(NullProgress):
    def __init__(self, flag: CancelFlag, stage: str):
        self.flag, self.at, self.answers = flag, stage, []

    def stage(self, name: str, message: str = "") -> None:
        if name == self.at:
            self.answers.append(self.flag.cancel())


def test_a_cancel_stops_a_job_before_its_commit_and_not_after(shot, tmp_path, monkeypatch):
    output = tmp_path / "o" / "o.####.exr"
    run_spec(build_spec(shot.plate, shot.mask, output=output), job_id="a")
    earlier = {p: Path(p).read_bytes() for p in frame_paths(str(output), shot.first, shot.last)}

    # Cancelled after the last frame, before the move: nothing moved, staging removed.
    flag = CancelFlag()
    progress = _CancelAt(flag, "commit")
    with pytest.raises(errors.JobCancelled):
        run_spec(build_spec(shot.plate, shot.mask, output=output), job_id="b", cancelled=flag, progress=progress)
    assert progress.answers == [True]
    assert {p: Path(p).read_bytes() for p in earlier} == earlier
    assert not [p for p in output.parent.rglob("*") if p.name.startswith(".")]

    # Cancelled during the move: refused, and the move is finished.
    flag = CancelFlag()
    answers = []
    move = job_staging._move

    def cancel_then_move(staged, final):
        answers.append(flag.cancel())
        move(staged, final)

    monkeypatch.setattr(job_staging, "_move", cancel_then_move)
    run_spec(build_spec(shot.plate, shot.mask, output=output), job_id="c", cancelled=flag)
    assert answers and not any(answers) and flag.committing
    assert _jobs(str(output), shot.first, shot.last) == ["c"] * 6


def test_an_interrupted_commit_is_finished_from_the_spec_alone(shot, tmp_path, monkeypatch):
    output = tmp_path / "o" / "o.####.exr"
    run_spec(build_spec(shot.plate, shot.mask, output=output), job_id="a")
    spec = build_spec(shot.plate, shot.mask, output=output)
    crash_mid_commit(monkeypatch, 4)
    with pytest.raises(Killed):
        run_job(prepare_job(spec), MeanFill(), job_id="b")
    monkeypatch.undo()
    assert _jobs(str(output), shot.first, shot.last) == ["b"] * 4 + ["a"] * 2  # the mix a crash leaves
    assert commit_begun(spec, "b")
    assert not discard_staging_of(spec, "b")  # a begun move is never thrown away
    result = finish_interrupted_commit(spec, "b")
    assert result is not None and result.backend == "meanfill" and result.metrics["frames"] == 6
    assert _jobs(str(output), shot.first, shot.last) == ["b"] * 6
    assert _jobs(result.quadmask_pattern, shot.first, shot.last) == ["b"] * 6
    assert not staging_of(spec, "b").exists()
    assert finish_interrupted_commit(spec, "b") is None  # nothing left to do


def test_scheduler_cancel_of_a_queued_job_removes_its_staging_unless_its_commit_began(shot, tmp_path, monkeypatch):
    from voidlink.inference.backends import BackendRegistry
    from voidlink.inference.events import EventBus
    from voidlink.inference.scheduler import Scheduler
    from voidlink.inference.store import JobStore

    store = JobStore(tmp_path / "jobs.sqlite")
    scheduler = Scheduler(store, EventBus(), BackendRegistry())  # not started: the jobs stay queued
    output = tmp_path / "o" / "o.####.exr"
    run_spec(build_spec(shot.plate, shot.mask, output=output), job_id="earlier")
    earlier = {p: Path(p).read_bytes() for p in frame_paths(str(output), shot.first, shot.last)}

    # Queued again after a restart, with half its frames staged: the cancel takes the staging folder too.
    spec = build_spec(shot.plate, shot.mask, output=output)
    job = store.add(spec)
    run_job(prepare_job(spec), MeanFill(), job_id=job.id, segment=(shot.first, shot.first + 2))
    assert staging_of(spec, job.id).is_dir()
    assert scheduler.cancel(job.id).state == pb.JOB_STATE_CANCELLED
    assert not staging_of(spec, job.id).exists()
    assert {p: Path(p).read_bytes() for p in earlier} == earlier

    # Its commit began before the restart: the cancel is refused and start-up finishes the move.
    job = store.add(spec)
    crash_mid_commit(monkeypatch, 3)
    with pytest.raises(Killed):
        run_job(prepare_job(spec), MeanFill(), job_id=job.id)
    monkeypatch.undo()
    refused = scheduler.cancel(job.id)
    assert refused.state == pb.JOB_STATE_QUEUED and refused.message.startswith("too late to cancel")
    assert scheduler.recover() == [job.id]
    final = store.get(job.id)
    assert final.state == pb.JOB_STATE_SUCCEEDED and final.result.output_pattern == str(output)
    assert _jobs(str(output), shot.first, shot.last) == [job.id] * 6
    assert scheduler.cancel(job.id).state == pb.JOB_STATE_SUCCEEDED
    store.close()


def test_prepare_job_hands_the_prepared_job_to_the_confinement_it_is_given(shot, tmp_path):
    from voidlink.inference.job.prepare import Confinement, prepare_job

    spec = build_spec(shot.plate, shot.mask, output=tmp_path / "o" / "o.####.exr")
    seen, opened = [], []
    prepared = prepare_job(spec, guard=Confinement(seen.append, lambda real, *where: opened.append(real)))
    assert seen == [prepared]
    # Each file the job reads is checked as it is opened, by the job's own confinement (no module state).
    assert opened and all(path.endswith(".exr") for path in opened)
    prepared.source.read(shot.first)
    assert opened[-1] == os.path.realpath(shot.plate.replace("####", f"{shot.first:04d}"))

    def refuse(job):
        raise errors.PermissionDenied(f"{job.output.directory} is outside the roots", reason="OUTSIDE_ROOTS")

    with pytest.raises(errors.PermissionDenied):
        prepare_job(spec, guard=Confinement(refuse, lambda *args: None))
    assert prepare_job(spec).first == shot.first  # no guard: not confined


def test_a_job_is_prepared_once_the_scheduler_runs_the_job_prepared_at_submission(shot, tmp_path, monkeypatch):
    from voidlink.inference import scheduler as scheduler_module
    from voidlink.inference.backends import BackendRegistry
    from voidlink.inference.events import EventBus
    from voidlink.inference.scheduler import Scheduler
    from voidlink.inference.store import JobStore

    prepared_again = []
    prepare = prepare_job

    def counting(spec, *, guard=None):
        prepared_again.append(spec.output.path_template)
        return prepare(spec, guard=guard)

    monkeypatch.setattr(scheduler_module, "prepare", counting)  # what the scheduler prepares with (by the job's kind)
    store = JobStore(tmp_path / "jobs.sqlite")
    scheduler = Scheduler(store, EventBus(), BackendRegistry())
    try:
        # Submitted: the job prepared then is the one that runs.
        spec = build_spec(shot.plate, shot.mask, output=tmp_path / "a" / "a.####.exr", backend="classical")
        prepared = prepare(spec)
        job = scheduler.submit(lambda: store.add(spec, frames_total=len(prepared.frames)), prepared)
        assert job is not None and job.id in scheduler.prepared
        # Cancelled in the queue: its prepared job is dropped with it.
        other = build_spec(shot.plate, shot.mask, output=tmp_path / "b" / "b.####.exr", backend="classical")
        cancelled = scheduler.submit(lambda: store.add(other), prepare(other))
        assert scheduler.cancel(cancelled.id).state == pb.JOB_STATE_CANCELLED
        assert cancelled.id not in scheduler.prepared
        # Queued before a restart (nothing handed in): prepared when it runs, as the disk may have changed.
        again = build_spec(shot.plate, shot.mask, output=tmp_path / "c" / "c.####.exr", backend="classical")
        restarted = store.add(again)
        # Not queued after all (`add` says so): the prepared job is closed, not kept.
        assert scheduler.submit(lambda: None, prepare(again)) is None and len(scheduler.prepared) == 1
        scheduler.start()
        for job_id in (job.id, restarted.id):
            for _ in range(600):
                if store.get(job_id).state == pb.JOB_STATE_SUCCEEDED:
                    break
                assert store.get(job_id).state in (pb.JOB_STATE_QUEUED, pb.JOB_STATE_RUNNING)
                time.sleep(0.05)
            assert store.get(job_id).state == pb.JOB_STATE_SUCCEEDED
        assert prepared_again == [again.output.path_template]
        assert len(scheduler.prepared) == 0
    finally:
        scheduler.stop()
        store.close()
