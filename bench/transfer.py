"""`voidlink bench transfer`: uploading EXR frames to a daemon over loopback gRPC against a local file copy.

What is measured, on 1920x1080 RGB half-float zip EXR frames generated for the run:
- `transfer_ratio`: the seconds a local `shutil.copyfile` of the frames takes, divided by the seconds
  a client takes to put the same frames into a fresh daemon's frame cache with `Client.upload_paths`:
  each frame read and hashed (what a job names its frames by) while the one before it is sent, the
  daemon writing and verifying each as it arrives. 1.0 means as fast as copying the files on this
  machine. `hash_seconds` is hashing alone (`hash_files`), for comparison: in the pipeline it
  overlaps the sending.
- `resubmit_bytes`: frame bytes sent when the same frames are uploaded again (the goal is 0: the
  daemon's cache already holds them).
- `null_mb_per_s` and `ratio_ceiling`: the same bytes in the same chunks streamed to a gRPC server
  (its own process, like the daemon) that only drops them and acknowledges each chunk, and the ratio
  such a transfer would reach against the copy. It is what Python gRPC itself allows on this machine.
- `upload_of_ceiling`: that transport's seconds over our upload's, median of the per-repeat ratios
  (each repeat runs both side by side), with their spread; the goal is >= 0.9. `sequential_of_ceiling`
  is the same for hashing every frame first and uploading after (the order before the pipeline).
- `store_ceiling_mb_per_s` and `upload_of_store_ceiling`: the same transport to a server that also writes
  each frame's bytes to a new file, as the daemon's frame cache must (no hashing, no bookkeeping), and our
  upload's fraction of it. Where writing to the page cache is slow (on some virtual machines a fresh page
  costs the host a fault), that write, not our code, is what stands between the upload and the ceiling.
- `upload_cpu_seconds`, `null_cpu_seconds` and `upload_of_ceiling_cores_bound`: the CPU seconds (client
  and server process, every thread) our upload and the transport alone spend on the same frames, and the
  best `upload_of_ceiling` our upload's work allows on this machine's cores (its CPU seconds spread
  perfectly over them). Hashing every byte on both sides (the content address, and the daemon's check
  of it) and writing it to a file is work the transport alone does not do: where it is close to
  `upload_of_ceiling`, the cores, not waiting, bound the upload. The download has the same three.
- `start_of_ceiling`: the same for submitting a job over every frame and its mattes to a fresh daemon
  that cannot see them (`Client.start`, as `voidlink remove` does): the frames hashed ahead of the
  sending, the job submitted once all are named while the rest are on their way, against the transport
  moving the same files; `start_sequential_of_ceiling` is the order before (hash every frame, submit,
  then send). The job is cancelled as soon as it is queued: its run is not measured.
- `download_of_ceiling`: the same for a result streamed back: a classical job (draft quality) over the
  first DOWNLOAD_FRAMES uploaded frames (its run is not timed), then `Client.finish` fetching its output and
  quadmask (each file checked by hash, renamed into place), against a server streaming those files'
  bytes in the same chunks to a client that drops them.

The daemon is a real `voidlink serve` subprocess on 127.0.0.1 (its own process, as in production); the
transport alone is `bench/transport.py`'s server, in a process of its own too.
Both sides read frames the run has just written, so both read from a warm page cache; each side runs
`--repeats` times (a fresh daemon data dir each time for the upload) and the ratio uses the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
from voidlink.bench.transport import CpuClock, cores_bound, null_stream_seconds
from voidlink.bridge.client import Client
from voidlink.protos import pb
from voidlink.protos.wire import CHUNK_BYTES, hash_files

RATIO_TARGET = 0.5
DOWNLOAD_FRAMES = 8  # frames of the job whose result is streamed back (the classical run is not timed)
CEILING_TARGET = 0.9  # of what Python gRPC moves to a server that drops the chunks, in the same run
WIDTH, HEIGHT = 1920, 1080


def write_frames(folder: Path, frames: int) -> list[Path]:
    """Frames with film-like grain over a gradient, so zip compresses them as much as a real plate."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    base = np.stack([xx / WIDTH, yy / HEIGHT, (xx + yy) / (WIDTH + HEIGHT)], axis=-1) * 0.8
    paths = []
    for index in range(frames):
        pixels = base + rng.normal(0.0, 0.02, base.shape).astype(np.float32) + index * 0.01
        path = folder / f"plate.{1001 + index:04d}.exr"
        spec = oiio.ImageSpec(WIDTH, HEIGHT, 3, "half")
        spec.attribute("compression", "zip")
        out = oiio.ImageOutput.create(str(path))
        out.open(str(path), spec)
        out.write_image(np.ascontiguousarray(pixels))
        out.close()
        paths.append(path)
    return paths


def write_mattes(folder: Path, frames: int) -> str:
    """A square object matte per frame (one channel, half, zip), for the job whose result is streamed back."""
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    for index in range(frames):
        x0 = 400 + index * 20
        matte = ((xx >= x0) & (xx < x0 + 240) & (yy >= 420) & (yy < 660)).astype(np.float32)[..., None]
        path = folder / f"mask.{1001 + index:04d}.exr"
        spec = oiio.ImageSpec(WIDTH, HEIGHT, 1, "half")
        spec.channelnames = ("A",)
        spec.attribute("compression", "zip")
        out = oiio.ImageOutput.create(str(path))
        out.open(str(path), spec)
        out.write_image(np.ascontiguousarray(matte))
        out.close()
    return str(folder / "mask.####.exr")


def start_daemon(data_dir: Path) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "voidlink", "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir),
         "--log-level", "warning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    for line in process.stdout:
        match = re.search(r"listening on (\S+)", line)
        if match:
            return process, match.group(1)
    raise RuntimeError("the daemon did not start")


def stop_daemon(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


def sequential_upload_seconds(paths: list[Path], hashes: list[str], data_dir: Path) -> float:
    """Seconds to hash every frame (`hash_files`, all cores) and only then upload them (`upload_frames`)
    into a fresh daemon: the order without the pipeline, measured beside it for comparison."""
    process, address = start_daemon(data_dir)
    try:
        client = Client(address)
        client.info()
        started = time.perf_counter()
        hashed = hash_files([str(p) for p in paths])
        client.upload_frames([(str(p), pb.FrameRef(sha256=s, size=p.stat().st_size)) for p, s in zip(paths, hashed)])
        seconds = time.perf_counter() - started
        assert hashed == hashes
        return seconds
    finally:
        stop_daemon(process)
        shutil.rmtree(data_dir, ignore_errors=True)


def start_seconds(plates: str, mattes: str, frames: int, data_dir: Path, out: Path, pipelined: bool = True) -> float:
    """Seconds for `Client.start` to submit a job over the frames and mattes and upload them into a fresh
    daemon (`pipelined`), or for the order before it: hash every frame, submit, then send."""
    from voidlink.bridge import build_spec

    process, address = start_daemon(data_dir)
    try:
        client = Client(address)
        client.info()
        spec = build_spec(plates, mattes, frames=(1001, 1000 + frames), backend="classical", output=out / "s.####.exr")
        plan = client.plan_transfer(spec, "stream")
        started = time.perf_counter()
        if pipelined:
            job, _ = client.start(spec, plan=plan)
        else:
            named, files = client.hash_frames(spec, plan)
            job = client.submit(named, upload_follows=True)
            client.upload_frames(files, job=job)
        seconds = time.perf_counter() - started
        client.cancel(job.id)  # its run is not what is measured
        return seconds
    finally:
        stop_daemon(process)
        shutil.rmtree(data_dir, ignore_errors=True)


def download_seconds(
    client: Client, plates: str, mattes: str, frames: int, out: Path, clock: CpuClock | None = None
) -> tuple[float, list[Path]]:
    """A classical job over the uploaded frames with its result streamed back; seconds to fetch that
    result (the job's run is not timed), and the files fetched. `clock` times the CPU of the fetch."""
    from voidlink.bridge import build_spec

    # Draft quality: the run is not what is measured, only the fetching of what it wrote.
    spec = build_spec(plates, mattes, frames=(1001, 1000 + frames), backend="classical", quality="draft",
                      output=out / "c.####.exr")
    job, plan = client.start(spec, "stream")
    job = client.wait(job.id)
    if job.state != pb.JOB_STATE_SUCCEEDED:
        raise RuntimeError(f"the job whose result is downloaded failed: {job.message}")
    if clock is not None:
        clock.start()
    started = time.perf_counter()
    client.finish(job, plan)
    seconds = time.perf_counter() - started
    if clock is not None:
        clock.stop()
    return seconds, sorted(p for p in out.rglob("*") if p.is_file())


def run(frames: int, repeats: int, root: Path, progress=None) -> dict:
    say = progress or (lambda text: None)
    say(f"writing {frames} 1080p half EXR frames")
    paths = write_frames(root / "frames", frames)
    mattes = write_mattes(root / "frames", frames)
    matte_paths = sorted((root / "frames").glob("mask.*.exr"))
    total = sum(p.stat().st_size for p in paths)
    for path in paths + matte_paths:  # warm the page cache for both sides alike
        path.read_bytes()

    copy_seconds, hash_seconds, upload_seconds, null_seconds = [], [], [], []
    down_seconds, null_down_seconds, down_bytes = [], [], 0
    sequential_seconds: list[float] = []
    start_s, start_sequential_s, null_start_s = [], [], []
    store_seconds: list[float] = []
    null_cpu: list[float] = []
    upload_cpu: list[float] = []
    null_down_cpu: list[float] = []
    down_cpu: list[float] = []
    plates = str(root / "frames" / "plate.####.exr")
    resubmit_bytes = 0
    for repeat in range(repeats):
        say(f"local copy, run {repeat + 1}")
        target = root / f"copy-{repeat}"
        target.mkdir()
        started = time.perf_counter()
        for path in paths:
            shutil.copyfile(path, target / path.name)
        copy_seconds.append(time.perf_counter() - started)
        shutil.rmtree(target)

        say(f"gRPC transport alone, run {repeat + 1}")
        null_seconds.append(null_stream_seconds(paths, CHUNK_BYTES, cpu=null_cpu))
        say(f"gRPC transport writing the frames to files and nothing else, run {repeat + 1}")
        store_seconds.append(null_stream_seconds(paths, CHUNK_BYTES, store_dir=root / f"store-{repeat}"))
        shutil.rmtree(root / f"store-{repeat}")

        say(f"gRPC upload, run {repeat + 1}")
        process, address = start_daemon(root / f"daemon-{repeat}")
        try:
            client = Client(address)
            client.info()  # connected before the clock starts
            started = time.perf_counter()
            hashes = hash_files([str(p) for p in paths])
            hash_seconds.append(time.perf_counter() - started)  # hashing alone, for the table
            clock = CpuClock(process.pid)
            clock.start()
            started = time.perf_counter()
            refs = client.upload_paths([str(p) for p in paths])  # read, hash and send in one pipeline
            upload_seconds.append(time.perf_counter() - started)
            upload_cpu.append(clock.stop())
            assert [ref.sha256 for ref in refs] == hashes
            assert client.stats.bytes_sent == total, (client.stats.bytes_sent, total)
            sent_before = client.stats.bytes_sent
            again = [(str(p), pb.FrameRef(sha256=sha, size=p.stat().st_size)) for p, sha in zip(paths, hashes)]
            client.upload_frames(again)
            resubmit_bytes = max(resubmit_bytes, client.stats.bytes_sent - sent_before)

            say(f"hashing, then uploading (one after the other, as before the pipeline), run {repeat + 1}")
            sequential_seconds.append(sequential_upload_seconds(paths, hashes, root / f"daemon-seq-{repeat}"))

            say(f"a job submitted with its frames, pipelined and in the order before, run {repeat + 1}")
            null_start_s.append(null_stream_seconds(paths + matte_paths, CHUNK_BYTES))
            start_s.append(start_seconds(plates, mattes, frames, root / f"daemon-start-{repeat}", root / "s"))
            start_sequential_s.append(
                start_seconds(plates, mattes, frames, root / f"daemon-start-seq-{repeat}", root / "s", pipelined=False)
            )

            say(f"a job's result streamed back, run {repeat + 1}")
            clock = CpuClock(process.pid)
            seconds, fetched = download_seconds(
                client, plates, mattes, min(frames, DOWNLOAD_FRAMES), root / "result", clock
            )
            down_seconds.append(seconds)
            down_cpu.append(clock.seconds)
            down_bytes = sum(p.stat().st_size for p in fetched)
            null_down_seconds.append(null_stream_seconds(fetched, CHUNK_BYTES, download=True, cpu=null_down_cpu))
            shutil.rmtree(root / "result")
        finally:
            stop_daemon(process)
            shutil.rmtree(root / f"daemon-{repeat}", ignore_errors=True)

    copy = statistics.median(copy_seconds)
    hashing, upload = statistics.median(hash_seconds), statistics.median(upload_seconds)
    null = statistics.median(null_seconds)
    # Same-repeat ratios: the transport's run and ours sit side by side in time, so a burst of outside load
    # weighs on both of a pair; the spread says how much the machine moved between pairs.
    of_ceiling = [n / u for n, u in zip(null_seconds, upload_seconds)]
    down_of_ceiling = [n / d for n, d in zip(null_down_seconds, down_seconds)]
    sequential_of_ceiling = [n / q for n, q in zip(null_seconds, sequential_seconds)]
    start_of_ceiling = [n / q for n, q in zip(null_start_s, start_s)]
    of_store_ceiling = [n / u for n, u in zip(store_seconds, upload_seconds)]
    start_sequential_of_ceiling = [n / q for n, q in zip(null_start_s, start_sequential_s)]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    upload_bound = cores_bound(null_seconds, upload_cpu, cores)
    download_bound = cores_bound(null_down_seconds, down_cpu, cores)
    return {
        "frames": frames,
        "frame_size": [WIDTH, HEIGHT],
        "bytes": total,
        "copy_seconds": copy,
        "hash_seconds": hashing,
        "upload_seconds": upload,
        "copy_mb_per_s": total / copy / 1e6,
        "hash_mb_per_s": total / hashing / 1e6,
        "upload_mb_per_s": total / upload / 1e6,
        "transfer_ratio": copy / upload,
        "transfer_ratio_target": RATIO_TARGET,
        "transfer_ratio_met": copy / upload >= RATIO_TARGET,
        "null_mb_per_s": total / null / 1e6,
        "ratio_ceiling": copy / null,
        "upload_of_ceiling": statistics.median(of_ceiling),
        "upload_of_ceiling_spread": [min(of_ceiling), max(of_ceiling)],
        "upload_of_ceiling_target": CEILING_TARGET,
        "upload_of_ceiling_met": statistics.median(of_ceiling) >= CEILING_TARGET,
        "sequential_of_ceiling": statistics.median(sequential_of_ceiling),
        "cores": cores,
        "null_cpu_seconds": statistics.median(null_cpu),
        "upload_cpu_seconds": statistics.median(upload_cpu),
        "upload_of_ceiling_cores_bound": upload_bound,
        "upload_of_ceiling_cores_bound_met": upload_bound >= CEILING_TARGET,
        "store_ceiling_mb_per_s": total / statistics.median(store_seconds) / 1e6,
        "upload_of_store_ceiling": statistics.median(of_store_ceiling),
        "upload_of_store_ceiling_spread": [min(of_store_ceiling), max(of_store_ceiling)],
        "start_of_ceiling": statistics.median(start_of_ceiling),
        "start_of_ceiling_spread": [min(start_of_ceiling), max(start_of_ceiling)],
        "start_of_ceiling_met": statistics.median(start_of_ceiling) >= CEILING_TARGET,
        "start_sequential_of_ceiling": statistics.median(start_sequential_of_ceiling),
        "start_seconds": statistics.median(start_s),
        "start_sequential_seconds": statistics.median(start_sequential_s),
        "download_bytes": down_bytes,
        "download_mb_per_s": down_bytes / statistics.median(down_seconds) / 1e6,
        "null_download_mb_per_s": down_bytes / statistics.median(null_down_seconds) / 1e6,
        "download_of_ceiling": statistics.median(down_of_ceiling),
        "download_of_ceiling_spread": [min(down_of_ceiling), max(down_of_ceiling)],
        "download_of_ceiling_met": statistics.median(down_of_ceiling) >= CEILING_TARGET,
        "null_download_cpu_seconds": statistics.median(null_down_cpu),
        "download_cpu_seconds": statistics.median(down_cpu),
        "download_of_ceiling_cores_bound": download_bound,
        "resubmit_bytes": resubmit_bytes,
        "resubmit_bytes_met": resubmit_bytes == 0,
        "repeats": repeats,
    }


def format_table(report: dict) -> str:
    mark = {True: "ok", False: "BELOW GOAL"}
    return "\n".join(
        [
            f"{report['frames']} frames of {report['frame_size'][0]}x{report['frame_size'][1]} half EXR, "
            f"{report['bytes'] / 1e6:.1f} MB",
            f"  local copy      {report['copy_seconds']:.3f} s  ({report['copy_mb_per_s']:.0f} MB/s)",
            f"  hashing         {report['hash_seconds']:.3f} s  ({report['hash_mb_per_s']:.0f} MB/s)",
            f"  gRPC upload     {report['upload_seconds']:.3f} s  ({report['upload_mb_per_s']:.0f} MB/s, "
            "hashing included: read, hash and send in one pipeline)",
            f"  transfer_ratio  {report['transfer_ratio']:.2f}  (goal >= {RATIO_TARGET}: "
            f"{mark[report['transfer_ratio_met']]})",
            f"  gRPC alone      {report['null_mb_per_s']:.0f} MB/s: a transfer doing nothing else would reach "
            f"{report['ratio_ceiling']:.2f}",
            f"  upload_of_ceiling {report['upload_of_ceiling']:.2f}  "
            f"(spread {report['upload_of_ceiling_spread'][0]:.2f}-{report['upload_of_ceiling_spread'][1]:.2f}; "
            f"goal >= {CEILING_TARGET}: "
            f"{mark[report['upload_of_ceiling_met']]})",
            f"  without the pipeline (hash all, then upload) {report['sequential_of_ceiling']:.2f} of the ceiling",
            f"  CPU: our upload {report['upload_cpu_seconds']:.2f} s (client and daemon, every thread), the "
            f"transport alone {report['null_cpu_seconds']:.2f} s; on {report['cores']} cores our upload could reach "
            f"at best {report['upload_of_ceiling_cores_bound']:.2f} of the ceiling",
            f"  gRPC writing the frames to files, nothing else: {report['store_ceiling_mb_per_s']:.0f} MB/s; our "
            f"upload is {report['upload_of_store_ceiling']:.2f} of it (spread "
            f"{report['upload_of_store_ceiling_spread'][0]:.2f}-{report['upload_of_store_ceiling_spread'][1]:.2f}): "
            "the rest is hashing and bookkeeping",
            f"  a job submitted with its frames (Client.start) {report['start_seconds']:.3f} s: start_of_ceiling "
            f"{report['start_of_ceiling']:.2f} (spread {report['start_of_ceiling_spread'][0]:.2f}-"
            f"{report['start_of_ceiling_spread'][1]:.2f}; goal >= {CEILING_TARGET}: "
            f"{mark[report['start_of_ceiling_met']]}); hash all, submit, then send "
            f"{report['start_sequential_seconds']:.3f} s ({report['start_sequential_of_ceiling']:.2f})",
            f"  result download {report['download_mb_per_s']:.0f} MB/s of {report['download_bytes'] / 1e6:.1f} MB; "
            f"gRPC alone {report['null_download_mb_per_s']:.0f} MB/s",
            f"  download_of_ceiling {report['download_of_ceiling']:.2f}  "
            f"(spread {report['download_of_ceiling_spread'][0]:.2f}-{report['download_of_ceiling_spread'][1]:.2f}; "
            f"goal >= {CEILING_TARGET}: {mark[report['download_of_ceiling_met']]})",
            f"  CPU: our download {report['download_cpu_seconds']:.2f} s, the transport alone "
            f"{report['null_download_cpu_seconds']:.2f} s: at best {report['download_of_ceiling_cores_bound']:.2f} "
            f"of the ceiling on {report['cores']} cores",
            f"  resubmit_bytes  {report['resubmit_bytes']}  (goal 0: {mark[report['resubmit_bytes_met']]})",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="voidlink bench transfer", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--frames", type=int, default=None, help="frames per run (default 24, with --quick 8)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side (default 3)")
    parser.add_argument("--quick", action="store_true", help="one run, of 8 frames unless --frames says")
    args = parser.parse_args(argv)
    frames = args.frames if args.frames is not None else (8 if args.quick else 24)
    repeats = 1 if args.quick else args.repeats
    if frames < 1 or repeats < 1:
        parser.error("--frames and --repeats must be at least 1")
    progress = None if args.json else (lambda text: print(f"  {text}", flush=True))
    with tempfile.TemporaryDirectory(prefix="voidlink-bench-transfer-") as root:
        report = run(frames, repeats, Path(root), progress)
    print(json.dumps(report) if args.json else format_table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
