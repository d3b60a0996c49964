"""`voidlink bench load`: many clients submitting and watching small jobs on one daemon at once.

Each client is a thread with its own `Client` (its own gRPC channel) that, until the time is up,
submits a small removal (a 2-frame 64x48 EXR shot, classical backend), watches it to the end and
starts the next. The daemon is a real `voidlink serve` subprocess on 127.0.0.1. Reported:
- every job completed (`failed` counts the ones that did not, with the first errors);
- no client starved: the fewest and most jobs one client completed, and the longest wait for one job;
- the daemon's memory stayed bounded: its RSS after warm-up, at the end and the peak in between
  (sampled from /proc every 0.5 s), so growth over the run shows;
- how soon a fresh daemon serves: `serving_seconds` from starting the process to its gRPC health
  service answering SERVING (the goal is SERVING_TARGET seconds).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
from voidlink.bridge.client import Client

FRAMES = (1001, 1002)
SERVING_TARGET = 5.0  # seconds from starting `voidlink serve` to SERVING


def write_shot(folder: Path) -> tuple[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    for frame in range(FRAMES[0], FRAMES[1] + 1):
        plate = rng.random((48, 64, 3), dtype=np.float32)
        mask = np.zeros((48, 64, 1), np.float32)
        mask[16:28, 20 + frame % 4 : 32 + frame % 4] = 1.0
        for name, pixels in (("plate", plate), ("mask", mask)):
            spec = oiio.ImageSpec(64, 48, pixels.shape[2], "half")
            if pixels.shape[2] == 1:
                spec.channelnames = ("A",)
            out = oiio.ImageOutput.create(str(folder / f"{name}.{frame}.exr"))
            out.open(str(folder / f"{name}.{frame}.exr"), spec)
            out.write_image(pixels)
            out.close()
    return str(folder / "plate.####.exr"), str(folder / "mask.####.exr")


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run(clients: int, seconds: float, root: Path, progress=None) -> dict:
    say = progress or (lambda text: None)
    plate, mask = write_shot(root / "shot")
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "voidlink", "serve", "--listen", "127.0.0.1:0", "--data-dir", str(root / "daemon"),
         "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    address = ""
    for line in process.stdout:
        match = re.search(r"listening on (\S+)", line)
        if match:
            address = match.group(1)
            break
    probe = Client(address)
    while not probe.is_serving(timeout=2.0) and time.monotonic() - started < 60:
        pass
    serving_seconds = time.monotonic() - started
    probe.close()
    done = [0] * clients
    waits: list[float] = []
    failures: list[str] = []
    samples: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()
    try:
        Client(address).remove(plate, mask, backend="classical", output=root / "warm" / "o.####.exr")
        baseline = rss_bytes(process.pid)

        def sample() -> None:
            while not stop.wait(0.5):
                samples.append(rss_bytes(process.pid))

        def client_loop(index: int) -> None:
            client = Client(address, connect_timeout=30.0)
            job = 0
            while job == 0 or not stop.is_set():  # one job at least, however late this thread starts
                started = time.monotonic()
                try:
                    client.remove(
                        plate, mask, backend="classical", output=root / f"c{index}" / f"j{job % 2}" / "o.####.exr"
                    )
                except Exception as error:  # counted and reported: the point is to see every failure
                    with lock:
                        failures.append(f"client {index}: {error}")
                else:
                    with lock:
                        done[index] += 1
                        waits.append(time.monotonic() - started)
                job += 1
            client.close()

        say(f"{clients} clients for {seconds:.0f} s against {address}")
        threads = [threading.Thread(target=client_loop, args=(i,), daemon=True) for i in range(clients)]
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        for thread in threads:
            thread.start()
        time.sleep(seconds)
        stop.set()
        for thread in threads:
            thread.join(300)
        end = rss_bytes(process.pid)
    finally:
        stop.set()
        process.terminate()
        process.wait(60)
    return {
        "clients": clients,
        "seconds": seconds,
        "serving_seconds": serving_seconds,
        "serving_target_seconds": SERVING_TARGET,
        "serving_met": serving_seconds <= SERVING_TARGET,
        "jobs_completed": sum(done),
        "failed": len(failures),
        "failures": failures[:5],
        "fewest_jobs_per_client": min(done),
        "most_jobs_per_client": max(done),
        "longest_job_wait_seconds": max(waits) if waits else None,
        "median_job_wait_seconds": sorted(waits)[len(waits) // 2] if waits else None,
        "rss_after_warmup_mb": baseline / 1e6,
        "rss_peak_mb": max(samples + [end]) / 1e6,
        "rss_end_mb": end / 1e6,
        "every_job_completed": not failures,
        "no_client_starved": min(done) > 0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="voidlink bench load", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args(argv)
    progress = None if args.json else (lambda text: print(f"  {text}", flush=True))
    with tempfile.TemporaryDirectory(prefix="voidlink-bench-load-") as root:
        report = run(args.clients, args.seconds, Path(root), progress)
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"  {key:26} {value}")
    return 0 if report["every_job_completed"] and report["no_client_starved"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
