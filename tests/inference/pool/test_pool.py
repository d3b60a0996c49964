"""The daemon in front of a Ray pool: `voidlink serve --cluster auto --cluster-workers 2`.

One pool daemon (a subprocess that starts a local Ray with 2 CPUs and 2 classical actors) serves
the whole module; the single daemon of conftest is the reference the pool's output must match.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.daemons import DaemonProcess, wait_for
from support.shots import write_shot
from voidlink.bridge import Client, build_spec
from voidlink.inference.pool.placement import WorkerRecord, place
from voidlink.inference.pool.segments import plan_segments
from voidlink.protos import pb


class PoolDaemon(DaemonProcess):
    """`voidlink serve --cluster auto` in a subprocess; its log says which worker runs which job."""

    start_timeout = 120.0

    def __init__(self, data_dir: Path, workers: int = 2, extra: tuple = ()) -> None:
        super().__init__(data_dir)
        self.workers = workers
        self.serve_args = ("--cluster", "auto", "--cluster-workers", str(workers), *extra)

    def worker_pids(self) -> dict[str, int]:
        return {m[0]: int(m[1]) for m in re.findall(r"worker (\S+) ready: pid (\d+)", self.output())}

    def stop(self, timeout: float = 60.0) -> None:
        super().stop(timeout)

    def runs_on(self, job_id: str) -> list[str]:
        """The workers the daemon handed the job to, in order."""
        return re.findall(rf"job {job_id} runs on (\S+)", self.output())

    def segments_on(self, job_id: str) -> dict[tuple[int, int], str]:
        """The worker each segment of the job ran on."""
        found = re.findall(rf"job {job_id} frames (\d+)-(\d+) run on (\S+)", self.output())
        return {(int(a), int(b)): worker for a, b, worker in found}


# Shots of 80 frames or more are split in two on this pool; the other shots here are shorter.
SEGMENT_FRAMES = 40


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    extra = ("--cluster-segment", str(SEGMENT_FRAMES))
    process = PoolDaemon(tmp_path_factory.mktemp("pool") / "daemon-data", extra=extra).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def shot(tmp_path_factory):
    return write_shot(tmp_path_factory.mktemp("shot") / "src")


@pytest.fixture(scope="module")
def long_shot(tmp_path_factory):
    return write_shot(tmp_path_factory.mktemp("long") / "src", frames=48, width=320, height=192)


def _same_frame(a: Path, b: Path) -> bool:
    """Byte for byte, but for the job each frame's header names (voidlink:job): two jobs' results differ there."""
    from voidlink.media.image import job_of

    def bytes_of(path: Path) -> bytes:
        job = job_of(str(path))
        return path.read_bytes().replace(job.encode(), b"") if job else path.read_bytes()

    return bytes_of(a) == bytes_of(b)


def _frame_files(pattern: Path, first: int, last: int) -> list[Path]:
    return [Path(str(pattern).replace("####", f"{f:04d}")) for f in range(first, last + 1)]


def _no_leftovers(folder: Path) -> None:
    leftovers = [p for p in folder.rglob("*") if ".tmp" in p.name or p.name.startswith(".voidlink-")]
    assert not leftovers, leftovers


def _watch_all(client: Client, job_id: str) -> tuple[list[pb.JobEvent], threading.Thread]:
    events: list[pb.JobEvent] = []
    thread = threading.Thread(target=lambda: events.extend(client.watch(job_id)), daemon=True)
    thread.start()
    return events, thread


RANGES = [(1001, 1008), (1001, 1006), (1002, 1008), (1003, 1008), (1001, 1005), (1002, 1007)]


def test_two_workers_run_six_jobs_with_the_single_daemons_output(pool, daemon, shot, tmp_path):
    jobs = {}
    for name, address in (("pool", pool.address), ("single", daemon.address)):
        client = Client(address)
        for i, (first, last) in enumerate(RANGES):
            output = tmp_path / name / f"job{i}" / "clean.####.exr"
            spec = build_spec(shot.plate, shot.mask, shot.affected, output=output, frames=(first, last))
            jobs[name, i] = (client, client.submit(spec).id, output)
    for (name, i), (client, job_id, _) in jobs.items():
        final = client.wait(job_id)
        assert final.state == pb.JOB_STATE_SUCCEEDED, (name, i, final.message)
        assert final.frames_done == RANGES[i][1] - RANGES[i][0] + 1
    for i, (first, last) in enumerate(RANGES):
        pooled = _frame_files(jobs["pool", i][2], first, last)
        single = _frame_files(jobs["single", i][2], first, last)
        for a, b in zip(pooled, single):
            assert _same_frame(a, b), f"{a} differs from the single daemon's {b}"
        _no_leftovers(pooled[0].parent)
    placed = {pool.runs_on(jobs["pool", i][1])[0] for i in range(len(RANGES))}
    assert placed == set(pool.worker_pids()), f"jobs ran on {placed}, the pool is {pool.worker_pids()}"


def test_workers_run_at_the_daemons_priority(pool):
    # Ray's own default starts workers at niceness 15, where a busy machine starves them.
    daemon = os.getpriority(os.PRIO_PROCESS, pool.process.pid)
    workers = pool.worker_pids()
    assert workers and {name: os.getpriority(os.PRIO_PROCESS, pid) for name, pid in workers.items()} == {
        name: daemon for name in workers
    }


@dataclass
class KilledRun:
    """A 48-frame job whose worker was killed once it had 3 frames done."""

    job: pb.Job  # as it ended
    events: list
    victim: str  # the worker killed, and its pid
    pid: int
    placed: list  # the workers the job ran on, in order
    frames: list  # the output files


def _kill_mid_job(pool: PoolDaemon, daemon, shot, tmp_path: Path) -> KilledRun:
    """Run a job, kill its worker mid-job; check it ends with every frame once, the frames done before
    the kill not written again, each frame as an uninterrupted run makes it."""
    output = tmp_path / "pool" / "clean.####.exr"
    client = pool.client()
    job = client.submit(build_spec(shot.plate, shot.mask, output=output))
    events, watcher = _watch_all(client, job.id)
    wait_for(lambda: any(e.frames_done >= 3 for e in events), timeout=60, interval=0.01)
    victim = pool.runs_on(job.id)[0]
    pid = pool.worker_pids()[victim]
    os.kill(pid, signal.SIGKILL)
    killed_at = time.time()
    done_before = max(e.frames_done for e in events)

    final = client.wait(job.id)
    watcher.join(30)
    assert final.state == pb.JOB_STATE_SUCCEEDED, final.message
    assert final.frames_done == final.frames_total == 48
    placed = pool.runs_on(job.id)
    assert len(placed) == 2 and placed[0] == victim and placed[1] != victim
    resumed = [int(m) for e in events for m in re.findall(r"resuming: (\d+) of 48 frames", e.message)]
    assert resumed and resumed[0] >= done_before
    frames = _frame_files(output, shot.first, shot.first + 47)
    # Every frame once, nothing else (beside the quadmask folder, which holds one mask per frame).
    assert sorted(p for p in output.parent.iterdir() if p.is_file()) == frames
    assert len(list((output.parent / "quadmask").iterdir())) == 48
    _no_leftovers(output.parent)
    for path in frames[:done_before]:
        # Written once: frames finished before the kill were not computed or written again.
        assert path.stat().st_mtime <= killed_at
    reference = tmp_path / "single" / "clean.####.exr"
    daemon.client().remove(shot.plate, shot.mask, output=reference)
    for a, b in zip(frames, _frame_files(reference, shot.first, shot.first + 47)):
        assert _same_frame(a, b), f"{a} differs from an uninterrupted run's {b}"
    return KilledRun(final, events, victim, pid, placed, frames)


def test_a_worker_killed_mid_job_leaves_each_frame_written_once(pool, daemon, long_shot, tmp_path):
    run = _kill_mid_job(pool, daemon, long_shot, tmp_path)
    lost = [e.message for e in run.events if "was lost" in e.message]
    assert lost and run.victim in lost[0]
    # The pool keeps its size: a new worker replaces the dead one.
    wait_for(lambda: len(pool.worker_pids()) == 3, timeout=60)


def test_a_long_shot_is_split_over_both_workers_with_one_runs_output(pool, daemon, tmp_path):
    shot = write_shot(tmp_path / "src", frames=2 * SEGMENT_FRAMES, width=48, height=32)
    output = tmp_path / "pool" / "clean.####.exr"
    client = pool.client()
    job = client.submit(build_spec(shot.plate, shot.mask, shot.affected, output=output))
    events, watcher = _watch_all(client, job.id)
    final = client.wait(job.id)
    watcher.join(30)
    assert final.state == pb.JOB_STATE_SUCCEEDED, final.message
    assert final.frames_done == final.frames_total == 80
    assert final.result.metrics["segments"] == 2
    placed = pool.segments_on(job.id)
    assert set(placed) == {(1001, 1040), (1041, 1080)}
    assert len(set(placed.values())) == 2, f"both segments ran on {placed}"
    counts = [e.frames_done for e in events if e.frames_done]
    assert counts == sorted(counts) and counts[-1] == 80  # one count for the job, never going back
    frames = _frame_files(output, 1001, 1080)
    assert sorted(p for p in output.parent.iterdir() if p.is_file()) == frames
    assert len(list((output.parent / "quadmask").iterdir())) == 80
    _no_leftovers(output.parent)
    reference = tmp_path / "single" / "clean.####.exr"
    daemon.client().remove(shot.plate, shot.mask, shot.affected, output=reference)
    for a, b in zip(frames, _frame_files(reference, 1001, 1080)):
        assert _same_frame(a, b), f"{a} differs from one run's {b}"


def test_a_worker_without_the_daemons_storage_renders_from_its_own_cache(tmp_path, monkeypatch):
    from voidlink.inference.backends.classical.backend import ClassicalBackend
    from voidlink.inference.job.control import NullProgress
    from voidlink.inference.job.prepare import prepare_job
    from voidlink.inference.job.run import commit_segments, run_job
    from voidlink.inference.pool.executor import RayExecutor
    from voidlink.inference.pool.messages import FrameEvent, FramePiece, FrameRef, RunRequest
    from voidlink.inference.pool.relay import replay
    from voidlink.inference.pool.worker import PoolWorker

    shot = write_shot(tmp_path / "src", frames=6, width=48, height=32)
    reference = run_job(
        prepare_job(build_spec(shot.plate, shot.mask, shot.affected, output=tmp_path / "ref" / "r.####.exr")),
        ClassicalBackend(),
        job_id="j",  # the same job as below: each frame's header names it (voidlink:job), bytes must match
    )
    spec = build_spec(shot.plate, shot.mask, shot.affected, output=tmp_path / "out" / "clean.####.exr")
    prepared = prepare_job(spec)
    executor = RayExecutor("auto", cpu_workers=1, storage="private")  # no Ray is started: only its daemon side
    private = executor.private_job(pb.Job(id="j", spec=spec), prepared)
    assert private.spec.output.stream_back and len(private.spec.source.uploaded_frames) == 6
    refs = [FrameRef(sha, size) for sha, (size, _) in private.frames.items()]
    (tmp_path / "node-tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "node-tmp"))
    worker = PoolWorker("w", None, 0, storage="private")
    lacking = worker.missing(refs)
    assert len(lacking) == len(refs) == 18  # plate, object and affected mattes: 6 frames each
    worker.store([FramePiece(f.sha256, f.size, 0, Path(private.frames[f.sha256][1]).read_bytes()) for f in lacking])
    assert worker.missing(refs) == []
    (tmp_path / "src").rename(tmp_path / "gone")  # the worker never reads the daemon's paths

    request = RunRequest("j", private.spec.SerializeToString(), "classical", None, private.done(None))
    outcome = worker.run(request)
    assert outcome.state == "succeeded", outcome.message or outcome.error
    assert not list((tmp_path / "out").glob("clean.*.exr"))  # nothing in place: the frames are in the events
    replay(outcome.events, NullProgress(), private)
    assert private.done(None) == tuple(range(1001, 1007))
    again = worker.run(RunRequest("j", request.spec, "classical", None, private.done(None)))
    assert again.state == "succeeded" and not [e for e in again.events if isinstance(e, FrameEvent)]
    result = commit_segments(prepared, "j", "classical", [], {"frames": 6.0})
    for a, b in zip(
        _frame_files(reference.output_pattern, 1001, 1006), _frame_files(result.output_pattern, 1001, 1006)
    ):
        assert a.read_bytes() == b.read_bytes(), f"{b} differs from a run on the daemon's storage ({a})"
    assert len(list((tmp_path / "out" / "quadmask").iterdir())) == 6
    _no_leftovers(tmp_path / "out")
    # The worker keeps only its cache: no job folder of its inputs or outputs is left behind.
    root = Path(worker._transfers.inputs).parent
    assert not list((root / "transfers").iterdir()) and not list((root / "results").iterdir())


@pytest.fixture(scope="module")
def private_pool(tmp_path_factory):
    """A pool of one worker that sees none of the daemon's paths; its node's temporary folder is `worker_tmp`."""
    root = tmp_path_factory.mktemp("private")
    process = PoolDaemon(root / "pool-data", workers=1, extra=("--cluster-storage", "private"))
    process.worker_tmp = root / "worker-tmp"
    process.worker_tmp.mkdir()
    # Ray keeps its sessions (and their sockets, whose paths must stay short) where it always does.
    process.env.update(TMPDIR=str(process.worker_tmp), RAY_TMPDIR=tempfile.gettempdir())
    process.start()
    yield process
    process.stop()


def test_a_pool_without_shared_storage_sends_each_frame_once(private_pool, daemon, tmp_path):
    shot = write_shot(tmp_path / "src", frames=6, width=48, height=32)
    client = private_pool.client()
    first = client.remove(shot.plate, shot.mask, output=tmp_path / "a" / "clean.####.exr")
    second = client.remove(shot.plate, shot.mask, output=tmp_path / "b" / "clean.####.exr", frames=(1002, 1005))
    output = private_pool.output()
    assert re.search(rf"job {first.job_id}: sent 12 frames \([\d.]+ MB\) to \S+; 0 were in its cache", output)
    assert f"job {second.job_id}: sent 0 frames (0.0 MB) to" in output  # its 8 frames were all sent before
    reference = daemon.client().remove(shot.plate, shot.mask, output=tmp_path / "ref" / "clean.####.exr")
    for a, b in zip(
        _frame_files(Path(first.output_pattern), 1001, 1006),
        _frame_files(Path(reference.output_pattern), 1001, 1006),
    ):
        assert _same_frame(a, b), f"{a} differs from the single daemon's {b}"
    assert sorted(p.name for p in (tmp_path / "b").glob("*.exr")) == [f"clean.{f}.exr" for f in range(1002, 1006)]
    _no_leftovers(tmp_path / "a")
    (folder,) = private_pool.worker_tmp.glob("voidlink-worker-*")
    assert len(list((folder / "cache").rglob("*"))) >= 12  # the frames it was sent stay for the next job


def test_a_private_storage_worker_killed_mid_job_costs_only_unsent_frames(private_pool, daemon, long_shot, tmp_path):
    run = _kill_mid_job(private_pool, daemon, long_shot, tmp_path)
    # The new worker's cache started empty: every frame was sent again, but only the missing ones rendered.
    assert re.search(rf"job {run.job.id}: sent 96 frames \([\d.]+ MB\) to {run.placed[1]}", private_pool.output())
    # The dead worker's folder went with it once its replacement started on this node.
    folders = [f.name for f in private_pool.worker_tmp.glob("voidlink-worker-*")]
    assert f"voidlink-worker-{run.pid}" not in folders and len(folders) == 1


def test_segments_are_even_contiguous_and_only_for_shots_worth_splitting():
    assert plan_segments(1001, 1080, 2, 40) == [(1001, 1040), (1041, 1080)]
    assert plan_segments(1001, 1100, 3, 30) == [(1001, 1033), (1034, 1066), (1067, 1100)]
    assert plan_segments(1001, 1100, 8, 30) == [(1001, 1033), (1034, 1066), (1067, 1100)]  # no segment under 30
    assert plan_segments(1001, 1079, 2, 40) == []  # two segments would be shorter than 40
    assert plan_segments(1001, 2000, 1, 40) == []  # one worker: nothing to split over
    assert plan_segments(1001, 2000, 4, 0) == []  # splitting turned off


def test_cancel_reaches_the_worker_and_keeps_the_earlier_result(pool, long_shot, tmp_path):
    client = pool.client()
    output = tmp_path / "out" / "clean.####.exr"
    client.remove(long_shot.plate, long_shot.mask, output=output, frames=(1001, 1003))
    earlier_bytes = {p: p.read_bytes() for p in _frame_files(output, 1001, 1003)}

    job = client.submit(build_spec(long_shot.plate, long_shot.mask, output=output))
    events, watcher = _watch_all(client, job.id)
    wait_for(lambda: any(e.frames_done >= 2 for e in events), timeout=60, interval=0.01)
    client.cancel(job.id)
    final = client.wait(job.id)
    watcher.join(30)
    assert final.state == pb.JOB_STATE_CANCELLED
    assert final.frames_done < final.frames_total
    worker = pool.runs_on(job.id)[0]
    # Logged when the worker's own run stopped at the flag, not when the daemon gave up on it.
    wait_for(lambda: f"job {job.id}: cancelled on {worker}" in pool.output(), timeout=10)
    assert {p: p.read_bytes() for p in _frame_files(output, 1001, 1003)} == earlier_bytes
    assert sorted(p for p in output.parent.iterdir() if p.is_file()) == sorted(earlier_bytes)
    _no_leftovers(output.parent)


def test_a_pool_daemon_stopped_mid_job_resumes_it_at_its_next_start(tmp_path, long_shot):
    data_dir = tmp_path / "daemon-data"
    output = tmp_path / "out" / "clean.####.exr"
    first = PoolDaemon(data_dir, workers=1).start()
    try:
        client = first.client()
        job = client.submit(build_spec(long_shot.plate, long_shot.mask, output=output))
        events, _ = _watch_all(client, job.id)
        wait_for(lambda: any(e.frames_done >= 3 for e in events), timeout=60, interval=0.01)
        assert first.signal(signal.SIGTERM, timeout=60) == 0, first.output()
        stopped_at = time.time()
    finally:
        first.kill()
    with sqlite3.connect(data_dir / "jobs.sqlite") as db:
        before = dict(db.execute("SELECT frame, written_at FROM frames WHERE job_id=?", (job.id,)).fetchall())
    assert 3 <= len(before) < 48

    second = PoolDaemon(data_dir, workers=1).start()
    try:
        final = second.client().wait(job.id)
        assert final.state == pb.JOB_STATE_SUCCEEDED, final.message
        assert final.attempts == 2 and second.runs_on(job.id)
        frames = _frame_files(output, long_shot.first, long_shot.first + 47)
        assert sorted(p for p in output.parent.iterdir() if p.is_file()) == frames
        for frame, path in zip(range(long_shot.first, long_shot.first + 48), frames):
            if frame in before:
                # Written once: frames the first daemon's worker finished were not computed or written again.
                assert path.stat().st_mtime <= stopped_at
        _no_leftovers(output.parent)
    finally:
        assert second.signal(signal.SIGTERM, timeout=60) == 0


def test_placement_prefers_a_worker_with_the_backend_loaded_and_keeps_gpus_for_void():
    cold = WorkerRecord("cpu-0", None, gpu=False, state="idle")
    warm = WorkerRecord("cpu-1", None, gpu=False, state="idle", loaded={"classical"})
    gpu_cold = WorkerRecord("gpu-0", None, gpu=True, state="idle")
    gpu_warm = WorkerRecord("gpu-1", None, gpu=True, state="idle", loaded={"void", "classical"})
    pool = [cold, gpu_cold, gpu_warm, warm]
    assert place(pool, "classical") is warm
    warm.state = "busy"
    assert place(pool, "classical") is cold  # a CPU worker that must load classical before a GPU one
    assert place(pool, "void") is gpu_warm
    gpu_warm.state = "busy"
    assert place(pool, "void") is gpu_cold
    cold.state = gpu_cold.state = "busy"
    assert place(pool, "void") is None
    assert place(pool, "classical") is None


def test_the_worker_link_speaks_typed_messages_that_survive_pickling():
    """Ray pickles what crosses the link: every message comes back equal, and the daemon replays only
    the pool's own events (an untyped tuple, as the link once spoke, is refused, not misread)."""
    import pickle

    import numpy as np
    from voidlink.inference.pool import messages as m
    from voidlink.inference.pool.relay import replay

    preview = np.zeros((2, 3, 3), np.float32)
    frame = m.FrameEvent(1001, 1, 2, preview, {"output": b"exr"})
    outcome = m.RunOutcome("w", 7, "succeeded", 0.5, ("classical",), (m.StageEvent("load", "x"), frame), b"r")
    back = pickle.loads(pickle.dumps(outcome))
    assert (back.state, back.loaded, back.result) == ("succeeded", ("classical",), b"r")
    assert back.events[0] == outcome.events[0]
    assert back.events[1].files == {"output": b"exr"} and np.array_equal(back.events[1].preview, preview)
    for message in (
        m.RunRequest("j", b"spec", "classical", (1001, 1040), (1001,)),
        m.Poll((m.LogEvent("hi"),), True),
        m.Hello("w", 7, "node", ("classical",)),
        m.Availability(False, "no GPU"),
        m.WorkerStats("w", 7, (), jobs=2, frames=80),
        m.FrameLack("ab", 10, 4),
        m.FramePiece("ab", 10, 4, b"123456"),
    ):
        assert pickle.loads(pickle.dumps(message)) == message

    told = []

    class Progress:
        def stage(self, name, message=""):
            told.append(("stage", name, message))

        def frame_written(self, frame, done, total, preview):
            told.append(("frame", frame, done, total))

        def log(self, message):
            told.append(("log", message))

    replay([m.StageEvent("render"), m.FrameEvent(1001, 1, 2), m.LogEvent("note")], Progress())
    assert told == [("stage", "render", ""), ("frame", 1001, 1, 2), ("log", "note")]
    with pytest.raises(TypeError):
        replay([("log", "untyped")], Progress())


_WITHOUT_RAY = """
import importlib.abc, sys

class NoRay(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            raise ModuleNotFoundError("No module named 'ray'", name="ray")

sys.meta_path.insert(0, NoRay())
from voidlink.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_daemon_starts_without_ray_and_cluster_says_how_to_get_it(tmp_path):
    command = [sys.executable, "-c", _WITHOUT_RAY, "serve", "--listen", "127.0.0.1:0"]
    refused = subprocess.run(
        [*command, "--data-dir", str(tmp_path / "a"), "--cluster", "auto"], capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2
    assert "pip install 'voidlink[cluster]'" in refused.stderr
    bad = subprocess.run(
        [*command, "--data-dir", str(tmp_path / "b"), "--cluster", "10.0.0.5"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "--cluster: '10.0.0.5'" in bad.stderr and "ray://HOST:PORT" in bad.stderr
    for flags, message in (
        (["--cluster", "auto", "--cluster-workers", "-1"], "--cluster-workers: -1 is negative"),
        (["--cluster-workers", "2"], "--cluster-workers needs --cluster"),
        (["--cluster-segment", "100"], "--cluster-segment needs --cluster"),
        (["--cluster-storage", "private"], "--cluster-storage needs --cluster"),
    ):
        refused = subprocess.run([*command, "--data-dir", str(tmp_path / "d"), *flags], capture_output=True, text=True)
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr

    process = subprocess.Popen([*command, "--data-dir", str(tmp_path / "c")], stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert "listening on" in line
        client = Client(re.search(r"listening on (\S+)", line).group(1))
        assert client.info().default_backend == "classical"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
