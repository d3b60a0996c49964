"""`voidlink bench io`: our EXR sequence read and write against a bare OpenImageIO loop, and peak memory.

What is measured, on RGBA half-float zip EXR sequences generated for the run (1920x1080 and 3840x2160):
- read throughput: `read_image(path, "rgba")` over the frames `discover` finds, through `read_ahead`
  (how a job reads a clip), against a bare loop of `ImageInput.open(path).read_image(...)` to float;
- write throughput: `write_image` with an `output_spec` (atomic: temporary file, then rename), against a
  bare `ImageOutput.create/open/write_image/close` straight to the final name, both half/zip from float32;
- peak RSS of a streaming read -> write pass over a 50-frame and a 200-frame shot, each in a fresh
  interpreter so one measurement cannot inherit the other's high-water mark. A job streams frames, so
  memory must not grow with the shot length.

Both sides run in the same process on the same files, interleaved (bare, ours, ours, bare, ...) and
repeated, so page cache, CPU frequency and other load on the machine weigh on both alike; each ratio is
the median of the per-repetition ratios ours / bare (higher is better, targets >= 0.9). Files are read
once before timing so both sides read from a warm cache: the comparison is of our code, not of the disk.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import OpenImageIO as oiio
from voidlink.media.image import output_spec, read_image, write_image
from voidlink.media.readahead import read_ahead
from voidlink.media.sequence import discover
from voidlink.protos.clips import ClipMedia

READ_TARGET = 0.9
WRITE_TARGET = 0.9
RSS_GROWTH_TARGET = 0.10
CHANNELS = ["R", "G", "B", "A"]
FIRST_FRAME = 1001
PATTERN = "plate.####.exr"


@dataclass(frozen=True)
class Config:
    """Sizes and frame counts of one run."""

    throughput: tuple[tuple[int, int, int], ...]  # (width, height, frames) per throughput shot
    repeats: int  # interleaved repetitions of each side, for writes
    read_repeats: int  # and for reads: cheap, and noisier, so more of them
    rss_size: tuple[int, int]
    rss_frames: tuple[int, int]  # the short and the long shot
    distinct: int  # distinct frames generated; the rest of a shot links to them
    most: int = 21  # repetitions at most while a ratio has not settled
    tolerance: float = 0.01  # a ratio has settled when a pair of repetitions moves its median less than this


DEFAULT = Config(throughput=((1920, 1080, 24), (3840, 2160, 6)), repeats=3, read_repeats=7, rss_size=(1920, 1080),
                 rss_frames=(50, 200), distinct=10)
QUICK = Config(throughput=((1920, 1080, 4), (3840, 2160, 1)), repeats=3, read_repeats=3, rss_size=(512, 288),
               rss_frames=(20, 80), distinct=4, most=7)


# --- generated media -------------------------------------------------------------------------------------------

def make_pixels(width: int, height: int, seed: int) -> np.ndarray:
    """Smooth noise over a gradient, float32 RGBA: compresses like a plate, not like white noise or flat colour.

    Upscaling low-resolution noise is far cheaper than filtering full-resolution noise, and a little fine
    grain on top keeps zip from compressing the picture unrealistically well.
    """
    rng = np.random.default_rng(seed)
    coarse = rng.random((max(2, height // 24), max(2, width // 24), 4), dtype=np.float32)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    ramp = np.linspace(0.0, 1.5, width, dtype=np.float32)[None, :, None]
    grain = rng.random((height, width, 1), dtype=np.float32) * 0.02 - 0.01  # uniform: cheaper than normal
    pixels = 0.6 * smooth + 0.4 * ramp + grain
    pixels[..., 3] = np.clip(smooth[..., 3] * 1.5 - 0.25, 0.0, 1.0)  # alpha with solid and clear regions
    return np.ascontiguousarray(pixels)


def _exr_spec(width: int, height: int) -> oiio.ImageSpec:
    spec = oiio.ImageSpec(width, height, 4, "half")
    spec.channelnames = tuple(CHANNELS)
    spec.alpha_channel = 3
    spec.attribute("compression", "zip")
    return spec


def _bare_write(path: str, pixels: np.ndarray, spec: oiio.ImageSpec) -> None:
    out = oiio.ImageOutput.create(path)
    if out is None or not out.open(path, spec) or not out.write_image(pixels) or not out.close():
        raise OSError(f"cannot write {path}: {oiio.geterror()}")


def make_sequence(folder: str, width: int, height: int, frames: int, distinct: int) -> str:
    """`frames` frames of PATTERN in `folder`; only `distinct` are encoded, the others are hard links to them.

    Links keep generation time and disk use small for long shots; readers still open one file per frame.
    Returns the sequence pattern.
    """
    os.makedirs(folder, exist_ok=True)
    pattern = os.path.join(folder, PATTERN)
    spec = _exr_spec(width, height)
    sources: list[str] = []
    for i in range(frames):
        path = pattern.replace("####", f"{FIRST_FRAME + i:04d}")
        if i < distinct:
            _bare_write(path, make_pixels(width, height, seed=i), spec)
            sources.append(path)
        else:
            try:
                os.link(sources[i % distinct], path)
            except OSError:  # file systems without hard links
                shutil.copyfile(sources[i % distinct], path)
    return pattern


def sequence_files(pattern: str) -> list[str]:
    source = discover(ClipMedia(path=pattern), "clip")
    return [source.file_for(frame) for frame in source.frames]


# --- the two sides ---------------------------------------------------------------------------------------------

def bare_read(files: list[str]) -> None:
    for path in files:
        image = oiio.ImageInput.open(path)
        if image is None:
            raise OSError(f"cannot read {path}: {oiio.geterror()}")
        pixels = image.read_image(0, 0, 0, image.spec().nchannels, oiio.FLOAT)
        image.close()
        if pixels is None:
            raise OSError(f"cannot read {path}")


def ours_read(pattern: str) -> None:
    # Discovery is part of reading a clip, so it is inside the timing.
    source = discover(ClipMedia(path=pattern), "clip")
    for frame in read_ahead(source.frames, lambda f: read_image(source.file_for(f), "rgba", frame=f)):
        del frame  # a consumer that keeps nothing, like the bare loop


def bare_write(folder: str, frames: list[np.ndarray]) -> None:
    h, w = frames[0].shape[:2]
    spec = _exr_spec(w, h)
    for i, pixels in enumerate(frames):
        _bare_write(os.path.join(folder, f"out.{FIRST_FRAME + i:04d}.exr"), pixels, spec)


def ours_write(folder: str, frames: list[np.ndarray], template: oiio.ImageSpec) -> None:
    for i, pixels in enumerate(frames):
        path = os.path.join(folder, f"out.{FIRST_FRAME + i:04d}.exr")
        # The spec is built per frame, as a job does from each frame's own metadata.
        spec = output_spec(template, 4, CHANNELS, "half", "zip", path)
        write_image(path, pixels, spec)


def _timed(work: Callable[[], None]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def _interleave(bare: Callable[[], float], ours: Callable[[], float], repeats: int) -> tuple[list[float], list[float]]:
    """Seconds of each side per repetition; the order alternates so neither side always runs first."""
    bare_s: list[float] = []
    ours_s: list[float] = []
    for rep in range(repeats):
        if rep % 2 == 0:
            bare_s.append(bare())
            ours_s.append(ours())
        else:
            ours_s.append(ours())
            bare_s.append(bare())
    return bare_s, ours_s


def _ratios(bare_s: list[float], ours_s: list[float]) -> list[float]:
    return [b / o for b, o in zip(bare_s, ours_s)]


def settle(
    bare: Callable[[], float], ours: Callable[[], float], config: Config, first: int
) -> tuple[list[float], list[float], bool]:
    """Interleaved repetitions, `first` of them and then pairs more until two pairs in a row each move the
    median ratio by less than `config.tolerance` (settled), or `config.most` repetitions were run (not).

    One machine's figures swing between runs with the load beside them; a run that stops when its ratio
    holds still says whether the target is met, and its spread says how sure that is."""
    bare_s, ours_s = _interleave(bare, ours, first)
    still = 0  # pairs in a row that left the median where it was: one alone can be chance
    while len(bare_s) < config.most:
        before = statistics.median(_ratios(bare_s, ours_s))
        more_bare, more_ours = _interleave(bare, ours, 2)
        bare_s += more_bare
        ours_s += more_ours
        still = still + 1 if abs(statistics.median(_ratios(bare_s, ours_s)) - before) <= config.tolerance else 0
        if still == 2:
            return bare_s, ours_s, True
    return bare_s, ours_s, False


def _summary(bare_s: list[float], ours_s: list[float], frames: int, megabytes: float, settled: bool) -> dict:
    bare_fps = frames / statistics.median(bare_s)
    ours_fps = frames / statistics.median(ours_s)
    # Per-repetition ratios: a repetition's two runs are adjacent in time, so a burst of outside load
    # hits both of them rather than only one side's median.
    ratios = sorted(_ratios(bare_s, ours_s))
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return {
        "frames": frames,
        "bare_fps": bare_fps,
        "ours_fps": ours_fps,
        "bare_mbps": bare_fps * megabytes / frames,
        "ours_mbps": ours_fps * megabytes / frames,
        "ratio": statistics.median(ratios),
        "ratio_spread": [quartiles[0], quartiles[2]],  # interquartile range of the per-repetition ratios
        "ratio_range": [ratios[0], ratios[-1]],
        "repetitions": len(ratios),
        "settled": settled,
    }


def measure_throughput(root: str, width: int, height: int, frames: int, distinct: int, config: Config) -> dict:
    """Read and write throughput of both sides on one generated sequence."""
    pattern = make_sequence(os.path.join(root, f"src_{width}x{height}"), width, height, frames, distinct)
    files = sequence_files(pattern)
    file_mb = sum(os.path.getsize(p) for p in files) / 1e6
    bare_read(files)  # warm the page cache for both sides

    read_bare, read_ours, read_settled = settle(lambda: _timed(lambda: bare_read(files)),
                                                lambda: _timed(lambda: ours_read(pattern)), config, config.read_repeats)

    loaded = [read_image(path, "rgba") for path in files[:distinct]]
    pixels = [loaded[i % len(loaded)].pixels for i in range(frames)]
    template = loaded[0].spec
    out_root = os.path.join(root, f"out_{width}x{height}")

    def write_side(write: Callable[[str], None]) -> float:
        # Each run writes into an empty folder (so neither side overwrites the other's files) that is
        # removed outside the timing.
        folder = tempfile.mkdtemp(dir=root, prefix=os.path.basename(out_root) + "_")
        try:
            seconds = _timed(lambda: write(folder))
            written_mb.append(sum(e.stat().st_size for e in os.scandir(folder)) / 1e6)
            return seconds
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    written_mb: list[float] = []
    write_bare, write_ours, write_settled = settle(lambda: write_side(lambda d: bare_write(d, pixels)),
                                                   lambda: write_side(lambda d: ours_write(d, pixels, template)),
                                                   config, config.repeats)
    shutil.rmtree(os.path.dirname(pattern), ignore_errors=True)
    return {
        "size": f"{width}x{height}",
        "frames": frames,
        "file_mb_per_frame": file_mb / frames,
        "read": _summary(read_bare, read_ours, frames, file_mb, read_settled),
        "write": _summary(write_bare, write_ours, frames, statistics.median(written_mb), write_settled),
    }


# --- peak memory -----------------------------------------------------------------------------------------------

def stream_pass(pattern: str, out_folder: str) -> dict:
    """Read every frame through read_ahead and write it back out, as a job streams a shot; returns peak RSS.

    Written frames are removed once on disk: they only need to have gone through `write_image`, and a
    200-frame 1080p shot would otherwise hold gigabytes of disk for nothing.
    """
    source = discover(ClipMedia(path=pattern), "clip")
    os.makedirs(out_folder, exist_ok=True)
    frames = 0
    for frame in read_ahead(source.frames, lambda f: read_image(source.file_for(f), "rgba", frame=f)):
        path = os.path.join(out_folder, os.path.basename(frame.path))
        spec = output_spec(frame.spec, 4, frame.channels, "half", "zip", path)
        write_image(path, frame.pixels, spec)
        os.unlink(path)
        frames += 1
    return {"frames": frames, "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak resident set, in MB.

    Linux's VmHWM belongs to the address space exec created, whereas ru_maxrss carries over through
    fork and exec the parent's peak at the time it started the child: a parent holding 4K frames would
    set every child's floor.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    # ru_maxrss is in kilobytes on Linux, bytes on macOS.
    scale = 1.0 if sys.platform == "darwin" else 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1e6


def measure_rss(pattern: str, out_folder: str) -> dict:
    """`stream_pass` in a fresh interpreter, so its high-water mark is its own."""
    code = ("import json, sys; from voidlink.bench.io import stream_pass; "
            "print(json.dumps(stream_pass(sys.argv[1], sys.argv[2])))")
    done = subprocess.run([sys.executable, "-c", code, pattern, out_folder], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"streaming pass failed: {done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def idle_rss() -> float:
    """Peak RSS of an interpreter that only imports our I/O: the floor under the streaming figures."""
    code = "from voidlink.bench.io import peak_rss_mb; print(peak_rss_mb())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


# --- the run ---------------------------------------------------------------------------------------------------

def run(config: Config, root: str, progress: Callable[[str], None] | None = None) -> dict:
    say = progress or (lambda text: None)
    shots = []
    for width, height, frames in config.throughput:
        say(f"throughput {width}x{height}, {frames} frames x {config.read_repeats} read and {config.repeats} "
            "write repetitions")
        shots.append(measure_throughput(root, width, height, frames, min(frames, config.distinct), config))

    width, height = config.rss_size
    rss: dict[int, dict] = {}
    for frames in config.rss_frames:
        say(f"peak RSS {width}x{height}, {frames} frames")
        pattern = make_sequence(os.path.join(root, f"rss_{frames}"), width, height, frames, config.distinct)
        rss[frames] = measure_rss(pattern, os.path.join(root, f"rss_{frames}_out"))
        shutil.rmtree(os.path.dirname(pattern), ignore_errors=True)
    short, long = config.rss_frames
    rss_short, rss_long = rss[short]["peak_rss_mb"], rss[long]["peak_rss_mb"]

    worst_read = min((s["read"] for s in shots), key=lambda r: r["ratio"])  # the size the target must hold for
    worst_write = min((s["write"] for s in shots), key=lambda r: r["ratio"])
    read_ratio, write_ratio = worst_read["ratio"], worst_write["ratio"]
    growth = rss_long / rss_short - 1.0
    return {
        "read_ratio": read_ratio,
        "read_ratio_spread": worst_read["ratio_spread"],
        "read_settled": all(s["read"]["settled"] for s in shots),
        "write_ratio": write_ratio,
        "write_ratio_spread": worst_write["ratio_spread"],
        "write_settled": all(s["write"]["settled"] for s in shots),
        "rss_50_mb": rss_short,
        "rss_200_mb": rss_long,
        "rss_growth": growth,
        "rss_idle_mb": idle_rss(),
        "rss_frames": [short, long],
        "rss_size": f"{width}x{height}",
        "shots": shots,
        "oiio_threads": int(oiio.get_int_attribute("threads")),
        "oiio_version": oiio.__version__,
        "repeats": config.repeats,
        "read_repeats": config.read_repeats,
        "targets": {
            "read_ratio": READ_TARGET,
            "write_ratio": WRITE_TARGET,
            "rss_growth": RSS_GROWTH_TARGET,
            "read_met": read_ratio >= READ_TARGET,
            "write_met": write_ratio >= WRITE_TARGET,
            "rss_met": growth <= RSS_GROWTH_TARGET,
        },
    }


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def _spread(report: dict, op: str) -> str:
    low, high = report[f"{op}_ratio_spread"]
    settled = "settled" if report[f"{op}_settled"] else "NOT SETTLED (the machine's load swung; run again)"
    return f"(interquartile {low:.3f}-{high:.3f}, {settled})"


def format_table(report: dict) -> str:
    head = (f"{'shot':<16} {'op':<6} {'frames':>6} {'bare fps':>9} {'ours fps':>9} {'bare MB/s':>10} "
            f"{'ours MB/s':>10} {'ratio':>6}")
    lines = [head + "   reps", "-" * (len(head) + 7)]
    for shot in report["shots"]:
        for op in ("read", "write"):
            r = shot[op]
            lines.append(f"{shot['size']:<16} {op:<6} {r['frames']:>6} {r['bare_fps']:>9.2f} {r['ours_fps']:>9.2f} "
                         f"{r['bare_mbps']:>10.1f} {r['ours_mbps']:>10.1f} {r['ratio']:>6.3f} {r['repetitions']:>6}")
    lines.append("-" * (len(head) + 7))
    t = report["targets"]
    short, long = report["rss_frames"]
    lines += [
        f"read ratio  (ours / bare OIIO, worst size): {report['read_ratio']:.3f}  "
        f"target >= {t['read_ratio']}: {_verdict(t['read_met'])}  {_spread(report, 'read')}",
        f"write ratio (ours / bare OIIO, worst size): {report['write_ratio']:.3f}  "
        f"target >= {t['write_ratio']}: {_verdict(t['write_met'])}  {_spread(report, 'write')}",
        f"peak RSS streaming {report['rss_size']}: {short} frames {report['rss_50_mb']:.1f} MB, "
        f"{long} frames {report['rss_200_mb']:.1f} MB, growth {report['rss_growth'] * 100:+.1f} %  "
        f"target <= {t['rss_growth'] * 100:.0f} %: {_verdict(t['rss_met'])}  "
        f"(interpreter with imports only: {report['rss_idle_mb']:.1f} MB)",
        f"OpenImageIO {report['oiio_version']} on {report['oiio_threads']} threads; "
        f"interleaved repetitions ({report['read_repeats']} reads and {report['repeats']} writes at first, then "
        "pairs more until the median ratio holds still); MB/s of EXR file bytes",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="voidlink bench io", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--quick", action="store_true", help="fewer and smaller frames (about a minute)")
    parser.add_argument("--dir", default="", help="folder for the generated sequences (default: a temporary one)")
    parser.add_argument("--output", default="", help="also write the JSON report to this file")
    args = parser.parse_args(argv)
    config = QUICK if args.quick else DEFAULT
    progress = None if args.json else (lambda text: print(f"  measuring {text}", flush=True))
    if args.dir:
        os.makedirs(args.dir, exist_ok=True)
        root = tempfile.mkdtemp(dir=args.dir, prefix="voidlink-bench-io-")
        try:
            report = run(config, root, progress)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    else:
        with tempfile.TemporaryDirectory(prefix="voidlink-bench-io-") as root:
            report = run(config, root, progress)
    if args.output:
        with open(args.output, "w") as out:
            json.dump(report, out, indent=1)
    if args.json:
        print(json.dumps(report))
    else:
        print(format_table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
