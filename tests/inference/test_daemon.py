"""The daemon as users meet it: a real `voidlink serve` subprocess on an ephemeral loopback port."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from support.daemons import wait_for
from support.faults import Killed, crash_mid_commit
from support.shots import read_pixels, write_shot
from voidlink.bridge import Client, build_spec
from voidlink.inference.datadir import DataDirLock
from voidlink.protos import PROTOCOL_METADATA_KEY, pb, rpc

from voidlink import errors


@pytest.fixture
def shot(tmp_path, source_guard):
    files = write_shot(tmp_path / "src")
    source_guard(files.folder)
    return files


@pytest.fixture
def long_shot(tmp_path, source_guard):
    files = write_shot(tmp_path / "long", frames=40, width=320, height=192)
    source_guard(files.folder)
    return files


def _frames_on_disk(pattern: str, first: int, last: int) -> list[Path]:
    return [Path(pattern.replace("####", f"{f:04d}")) for f in range(first, last + 1)]


def _no_leftovers(folder: Path) -> None:
    leftovers = [p for p in folder.rglob("*") if ".tmp" in p.name or p.name.startswith(".voidlink-")]
    assert not leftovers, leftovers


def test_serving_with_health_and_reflection(daemon_factory):
    # How soon it serves is measured by `voidlink bench load` (serving_seconds), not timed here.
    daemon = daemon_factory().start()
    channel = grpc.insecure_channel(daemon.address)
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=30)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for r in replies for s in r.list_services_response.service}
    assert "voidlink.v1.VoidLink" in names
    assert "grpc.health.v1.Health" in names


def test_info_reports_backends_with_reasons(daemon):
    info = daemon.client().info()
    backends = {b.name: b for b in info.backends}
    assert backends["classical"].available
    assert not backends["void"].available and backends["void"].reason.startswith("void: ")
    assert info.default_backend == "classical"
    assert info.protocol_version == 1
    assert "OpenImageIO" in info.libraries


def test_submit_watch_two_watchers_list_get(daemon, shot, tmp_path):
    client = daemon.client()
    output = tmp_path / "out" / "clean.####.exr"
    job = client.submit(build_spec(shot.plate, shot.mask, shot.affected, prompt="an empty wall", output=output))
    assert job.state == pb.JOB_STATE_QUEUED and job.frames_total == 8

    seen: dict[int, list[pb.JobEvent]] = {0: [], 1: []}

    def watch(i):
        seen[i] = list(Client(daemon.address).watch(job.id))

    watchers = [threading.Thread(target=watch, args=(i,)) for i in range(2)]
    for w in watchers:
        w.start()
    for w in watchers:
        w.join(60)
    for events in seen.values():
        assert events[-1].state == pb.JOB_STATE_SUCCEEDED
        assert events[-1].result.output_pattern.endswith("clean.####.exr")
    final = client.get(job.id)
    assert final.state == pb.JOB_STATE_SUCCEEDED and final.frames_done == 8
    assert final.result.frames.first == shot.first and final.result.frames.last == shot.last
    for path in _frames_on_disk(str(output), shot.first, shot.last):
        assert read_pixels(str(path)).shape == (shot.height, shot.width, 3)
    _no_leftovers(output.parent)
    assert [j.id for j in client.jobs()] == [job.id]
    assert client.jobs(states=[pb.JOB_STATE_FAILED]) == []


def test_previews_go_only_to_watchers_that_ask_and_the_last_frame_has_one(daemon, long_shot, tmp_path):
    import cv2

    client = daemon.client()
    job = client.submit(build_spec(long_shot.plate, long_shot.mask, output=tmp_path / "p" / "p.####.exr"))
    seen: dict[bool, list[pb.JobEvent]] = {}

    def watch(previews: bool) -> None:
        seen[previews] = list(Client(daemon.address).watch(job.id, previews=previews))

    watchers = [threading.Thread(target=watch, args=(previews,)) for previews in (True, False)]
    for thread in watchers:
        thread.start()
    for thread in watchers:
        thread.join(120)
    frames = [e for e in seen[True] if e.message.startswith("frame ")]
    assert frames and frames[-1].frames_done == frames[-1].frames_total
    assert frames[-1].HasField("preview")  # the finished picture, whatever the rate limit
    for event in frames:
        if event.HasField("preview"):
            picture = cv2.imdecode(np.frombuffer(event.preview.png, np.uint8), cv2.IMREAD_COLOR)
            assert picture.shape == (event.preview.height, event.preview.width, 3) and event.preview.width <= 256
    assert not any(e.HasField("preview") for e in seen[False])


def test_priority_then_submission_order(daemon, long_shot, shot, tmp_path):
    client = daemon.client()
    first = client.submit(build_spec(long_shot.plate, long_shot.mask, output=tmp_path / "a" / "a.####.exr"))
    wait_for(lambda: client.get(first.id).state == pb.JOB_STATE_RUNNING)
    low = client.submit(build_spec(shot.plate, shot.mask, output=tmp_path / "b" / "b.####.exr"))
    low2 = client.submit(build_spec(shot.plate, shot.mask, output=tmp_path / "c" / "c.####.exr"))
    high = client.submit(build_spec(shot.plate, shot.mask, output=tmp_path / "d" / "d.####.exr", priority=10))
    jobs = [client.wait(j.id) for j in (first, low, low2, high)]
    assert all(j.state == pb.JOB_STATE_SUCCEEDED for j in jobs)
    started = {j.id: j.started_at for j in jobs}
    assert started[first.id] < started[high.id] < started[low.id] < started[low2.id]


def test_cancel_leaves_earlier_result_intact(daemon, long_shot, tmp_path):
    client = daemon.client()
    output = tmp_path / "out" / "clean.####.exr"
    earlier = client.remove(long_shot.plate, long_shot.mask, output=output, frames=(1001, 1003))
    earlier_bytes = {p: p.read_bytes() for p in _frames_on_disk(str(output), 1001, 1003)}

    job = client.submit(build_spec(long_shot.plate, long_shot.mask, output=output))
    for event in client.watch(job.id):
        if event.frames_done >= 2:
            client.cancel(job.id)
            break
    final = client.wait(job.id)
    assert final.state == pb.JOB_STATE_CANCELLED
    assert final.frames_done < final.frames_total
    assert earlier.first == 1001
    assert {p: p.read_bytes() for p in earlier_bytes} == earlier_bytes
    assert not Path(str(output).replace("####", "1010")).exists()
    _no_leftovers(output.parent)
    # Cancelling a finished job changes nothing.
    assert client.cancel(job.id).state == pb.JOB_STATE_CANCELLED


def test_cancel_queued_job(daemon, long_shot, shot, tmp_path):
    client = daemon.client()
    running = client.submit(build_spec(long_shot.plate, long_shot.mask, output=tmp_path / "a" / "a.####.exr"))
    queued = client.submit(build_spec(shot.plate, shot.mask, output=tmp_path / "b" / "b.####.exr"))
    assert client.cancel(queued.id).state == pb.JOB_STATE_CANCELLED
    assert client.wait(running.id).state == pb.JOB_STATE_SUCCEEDED
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").glob("*.exr"))


def _kill_mid_job(daemon, long_shot, output: Path, sig: int) -> tuple[str, float]:
    client = daemon.client()
    job = client.submit(build_spec(long_shot.plate, long_shot.mask, output=output))
    for event in client.watch(job.id):
        if event.frames_done >= 3:
            break
    daemon.signal(sig)  # returns once the daemon has exited: a SIGTERMed one may finish a frame first
    # Every frame written before the restart was written by now, whichever way the daemon stopped.
    return job.id, time.time()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_job_resumes_after_daemon_restart(daemon_factory, long_shot, tmp_path, sig):
    data_dir = tmp_path / "data"
    output = tmp_path / "out" / "clean.####.exr"
    daemon = daemon_factory(data_dir).start()
    job_id, stopped_at = _kill_mid_job(daemon, long_shot, output, sig)
    if sig == signal.SIGTERM:
        assert daemon.process.returncode == 0, daemon.output()
    with sqlite3.connect(data_dir / "jobs.sqlite") as db:
        before = dict(db.execute("SELECT frame, written_at FROM frames WHERE job_id=?", (job_id,)).fetchall())
    assert 3 <= len(before) < 40

    restarted = daemon_factory(data_dir).start()
    client = restarted.client()
    final = client.wait(job_id)
    assert final.state == pb.JOB_STATE_SUCCEEDED, final.error
    assert final.attempts == 2
    with sqlite3.connect(data_dir / "jobs.sqlite") as db:
        after = dict(db.execute("SELECT frame, written_at FROM frames WHERE job_id=?", (job_id,)).fetchall())
    assert sorted(after) == list(range(1001, 1041))
    for frame, path in zip(range(1001, 1041), _frames_on_disk(str(output), 1001, 1040)):
        assert read_pixels(str(path)).shape == (192, 320, 3)  # present and readable
        if frame in before:
            # Written once: frames finished before the kill were not computed or written again.
            assert path.stat().st_mtime <= stopped_at
    _no_leftovers(output.parent)


def test_bad_input_is_refused_naming_the_field_and_daemon_keeps_serving(daemon, shot, tmp_path):
    client = daemon.client()
    out = tmp_path / "o" / "x.####.exr"
    with pytest.raises(errors.InvalidInput) as info:
        client.submit(build_spec(shot.plate, shot.mask, output=out, backend="magic"))
    assert info.value.reason == "UNKNOWN_BACKEND" and info.value.field == "spec.params.backend"

    with pytest.raises(errors.VoidlinkError) as info:
        client.submit(build_spec(shot.plate, shot.mask, output=out, frames=(990, 1003)))
    assert info.value.reason == "FRAME_RANGE_OUTSIDE_SOURCE"

    with pytest.raises(errors.PermissionDenied) as info:
        client.submit(build_spec(shot.plate, shot.mask, output=shot.plate))
    assert info.value.reason == "OUTPUT_OVERWRITES_SOURCE"

    with pytest.raises(errors.NotFound) as info:
        client.submit(build_spec(str(tmp_path / "nowhere.####.exr"), shot.mask, output=out))
    assert "nowhere" in str(info.value)

    spec = build_spec(shot.plate, shot.mask, output=out)
    spec.source.otio_json = "{not json"
    with pytest.raises(errors.InvalidInput) as info:
        client.submit(spec)
    assert info.value.field.startswith("spec.source")

    # A plain file where the output folder would go: no user, root included, can write there.
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    with pytest.raises(errors.VoidlinkError) as info:
        client.submit(build_spec(shot.plate, shot.mask, output=blocker / "out" / "x.####.exr"))
    assert info.value.reason == "OUTPUT_NOT_WRITABLE" and "blocker" in str(info.value)
    assert client.info().queue.queued == 0
    assert client.is_serving()


def test_an_output_over_another_shots_plates_is_refused_unless_overwrite(daemon, shot, tmp_path):
    from voidlink.media.image import job_of

    other = write_shot(tmp_path / "sh020" / "plates")  # another shot, not a source of this job
    before = {p: p.read_bytes() for p in other.folder.iterdir()}
    client = daemon.client()
    spec = build_spec(shot.plate, shot.mask, output=other.plate)
    with pytest.raises(errors.OutputExists) as info:
        client.submit(spec)
    first = other.plate.replace("####", f"{other.first:04d}")
    assert info.value.reason == "OUTPUT_EXISTS" and info.value.file == first and info.value.frame == other.first
    assert "was not written by voidlink, and 7 more" in str(info.value) and "--overwrite" in str(info.value)
    with pytest.raises(grpc.RpcError) as raw:
        rpc.VoidLinkStub(grpc.insecure_channel(daemon.address)).SubmitJob(pb.SubmitJobRequest(spec=spec), timeout=10)
    assert raw.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert client.jobs() == [] and {p: p.read_bytes() for p in before} == before

    # Said in so many words, the job replaces them; what it wrote is then its own to replace again.
    replaced = client.remove(shot.plate, shot.mask, output=other.plate, overwrite=True, write_quadmask=False)
    assert [job_of(str(p)) for p in _frames_on_disk(other.plate, other.first, other.last)] == [replaced.job_id] * 8
    again = client.remove(shot.plate, shot.mask, output=other.plate, write_quadmask=False)
    assert [job_of(str(p)) for p in _frames_on_disk(other.plate, other.first, other.last)] == [again.job_id] * 8
    _no_leftovers(other.folder)


def test_a_rerun_killed_mid_commit_then_cancelled_after_restart_is_wholly_the_rerun(
    daemon_factory, tmp_path, monkeypatch
):
    """Fault injection: the re-run's daemon is killed mid-render, its commit then dies after 5 of its 24
    renames (at a known rename, as a killed daemon leaves it), and the job is cancelled right after
    the daemon restarts: the move is finished, never mixed, never undone."""
    from voidlink.inference.backends.classical.backend import ClassicalBackend
    from voidlink.inference.job.prepare import prepare_job
    from voidlink.inference.job.run import run_job
    from voidlink.media.image import job_of

    shot = write_shot(tmp_path / "src", frames=12)
    data_dir = tmp_path / "data"
    output = tmp_path / "out" / "clean.####.exr"
    quadmasks = str(tmp_path / "out" / "quadmask" / "clean_quadmask.####.png")
    daemon = daemon_factory(data_dir).start()
    client = daemon.client()
    earlier = client.remove(shot.plate, shot.mask, output=output)
    spec = build_spec(shot.plate, shot.mask, shot.affected, output=output)
    rerun = client.submit(spec)
    for event in client.watch(rerun.id):
        if event.frames_done >= 2:
            break
    daemon.signal(signal.SIGKILL)

    # The rest of the re-run, then its commit dying part way (5 renames of 24), as a killed daemon leaves it.
    crash_mid_commit(monkeypatch, 5)
    with pytest.raises(Killed):
        run_job(prepare_job(spec), ClassicalBackend(), job_id=rerun.id)
    monkeypatch.undo()
    on_disk = [job_of(str(p)) for p in _frames_on_disk(str(output), shot.first, shot.last)]
    assert on_disk == [rerun.id] * 5 + [earlier.job_id] * 7  # the mix, until the daemon comes back

    restarted = daemon_factory(data_dir).start()
    client = restarted.client()
    cancelled = client.cancel(rerun.id)  # the first call the restarted daemon answers
    assert cancelled.state == pb.JOB_STATE_SUCCEEDED, cancelled
    final = client.wait(rerun.id)
    assert final.state == pb.JOB_STATE_SUCCEEDED and final.result.output_pattern == str(output)
    assert final.result.frames.first == shot.first and final.result.frames.last == shot.last
    assert [job_of(str(p)) for p in _frames_on_disk(str(output), shot.first, shot.last)] == [rerun.id] * 12
    assert [job_of(str(p)) for p in _frames_on_disk(quadmasks, shot.first, shot.last)] == [rerun.id] * 12
    _no_leftovers(output.parent)
    assert f"job {rerun.id}: finished the commit a restart interrupted" in restarted.output()


def test_port_in_use_and_data_dir_lock_are_refused(daemon_factory, tmp_path):
    first = daemon_factory(tmp_path / "a").start()
    second = daemon_factory(tmp_path / "b", listen=first.address)
    with pytest.raises(RuntimeError, match="already in use"):
        second.start(timeout=15)
    third = daemon_factory(tmp_path / "a")
    with pytest.raises(RuntimeError, match="another voidlink daemon"):
        third.start(timeout=15)
    assert first.client().is_serving()


def test_a_data_dir_that_cannot_be_used_is_named_and_a_held_one_names_its_daemon(tmp_path):
    file = tmp_path / "data"
    file.write_text("not a folder")
    with pytest.raises(errors.InvalidInput) as info:
        DataDirLock(file).acquire()
    assert str(info.value).startswith(f"cannot use the data dir {file}: it is a file, not a folder")
    assert info.value.reason == "DATA_DIR_UNUSABLE" and info.value.file == str(file)
    under = file / "voidlink"
    with pytest.raises(errors.InvalidInput, match=re.escape(f"cannot use the data dir {under}: {file} is a file")):
        DataDirLock(under).acquire()
    (tmp_path / "locked" / "daemon.lock").mkdir(parents=True)
    with pytest.raises(errors.InvalidInput, match="daemon.lock is a folder"):
        DataDirLock(tmp_path / "locked").acquire()

    first = DataDirLock(tmp_path / "ok")
    first.acquire()
    try:
        with pytest.raises(errors.Conflict, match=rf"another voidlink daemon \(pid {os.getpid()}\)"):
            DataDirLock(tmp_path / "ok").acquire()
    finally:
        first.release()
    again = DataDirLock(tmp_path / "ok")
    again.acquire()  # released: the next daemon takes it
    again.release()


def test_protocol_mismatch_is_refused(daemon):
    channel = grpc.insecure_channel(daemon.address)
    with pytest.raises(grpc.RpcError) as info:
        rpc.VoidLinkStub(channel).GetInfo(pb.GetInfoRequest(), metadata=((PROTOCOL_METADATA_KEY, "999"),), timeout=5)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "protocol" in info.value.details()


def test_no_daemon_is_a_clear_error_not_a_hang():
    started = time.monotonic()
    with pytest.raises(errors.Unavailable, match="no voidlink daemon answers at 127.0.0.1:9"):
        Client("127.0.0.1:9", connect_timeout=2.0).info()
    # A hang, not a busy machine, is what this bound catches: the client gives up after its 2 s.
    assert time.monotonic() - started < 30.0
