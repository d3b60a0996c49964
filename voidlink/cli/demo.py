"""`voidlink demo`: a synthetic shot with ground truth, removed end to end through a real daemon.

The shot: a textured background under a panning camera, an object crossing it and casting a
shadow. The plate is written as scene-linear half EXRs (as a compositor would hand it over), the
object's and the shadow's mattes as EXRs, and the ground-truth clean plate beside them. The
removal goes through a daemon (the one already running, else one started for the demo and
stopped after it), then the result is scored against the ground truth inside the mask.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

from voidlink.cli.common import add_address, add_json, print_json

FIRST_FRAME = 1001


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="voidlink-demo", help="folder for the shot, the result and the contact sheet")
    parser.add_argument("--frames", type=int, default=24, help="shot length")
    parser.add_argument("--size", default="480x270", help="WIDTHxHEIGHT")
    parser.add_argument(
        "--kind", default="shadow", help="synthetic shot kind (see voidlink.inference.synthetic.SHOT_KINDS)"
    )
    parser.add_argument("--backend", default="auto")
    add_address(parser)
    add_json(parser)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from voidlink.bridge.client import Client

    out = Path(args.out).resolve()
    width, height = (int(v) for v in args.size.lower().split("x"))
    log = (lambda *a: None) if args.json else (lambda *a: print(*a, flush=True))

    log(f"voidlink demo: writing a {args.frames}-frame {width}x{height} synthetic shot to {out / 'shot'}")
    shot = _write_shot(out / "shot", args.kind, width, height, args.frames)

    with _daemon(Client(args.address), out / "daemon", log) as client:
        last_reported = [-1]

        def progress(event) -> None:
            if event.frames_total and event.frames_done != last_reported[0]:
                last_reported[0] = event.frames_done
                log(f"  {event.stage:8} {event.frames_done}/{event.frames_total} frames")

        result = client.remove(
            plate=shot["plate"],
            mask=shot["mask"],
            affected=shot["affected"],
            frames=(FIRST_FRAME, FIRST_FRAME + args.frames - 1),
            prompt="the textured wall, with nothing in front of it",
            output=out / "result" / "clean.####.exr",
            backend=args.backend,
            on_progress=progress,
        )

    score = _score(result.output_pattern, shot, args.frames)
    sheet = out / "contact_sheet.png"
    _contact_sheet(sheet, result.output_pattern, result.quadmask_pattern, shot, args.frames)
    report = {
        "psnr_in_mask_db": round(score, 2),
        "backend": result.backend,
        "job_id": result.job_id,
        "output": result.output_pattern,
        "quadmask": result.quadmask_pattern,
        "contact_sheet": str(sheet),
        "frames": [result.first, result.last],
        "notes": result.notes,
    }
    if args.json:
        print_json(report)
    else:
        log(f"result:        {result.output_pattern} (frames {result.first}-{result.last}, {result.backend} backend)")
        log(f"contact sheet: {sheet}  (source | quadmask | result | ground truth)")
        for note in result.notes:
            log(f"note:          {note}")
        log(f"PSNR in mask against the ground truth: {score:.2f} dB")
    return 0 if np.isfinite(score) else 1


@contextmanager
def _daemon(client, data_dir: Path, log):
    """The daemon at the client's address if one answers, else a private one for the demo's duration."""
    from voidlink.bridge.client import Client

    if client.is_serving(timeout=1.0):
        log(f"using the voidlink daemon at {client.address}")
        yield client
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "voidlink", "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=str(data_dir),  # `-m voidlink` from a checkout would import the source tree, not the install
    )
    address = _wait_for_address(process)
    log(f"started a voidlink daemon for the demo at {address} (pid {process.pid})")
    try:
        with Client(address) as own:
            yield own
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def _wait_for_address(process: subprocess.Popen, timeout: float = 30.0) -> str:
    from voidlink.errors import Unavailable

    found: list[str] = []
    lines: list[str] = []
    done = threading.Event()

    def pump():
        for line in process.stdout:
            lines.append(line)
            match = re.search(r"listening on (\S+)", line)
            if match and not found:
                found.append(match.group(1))
                done.set()
        done.set()

    threading.Thread(target=pump, daemon=True).start()
    done.wait(timeout)
    if not found:
        process.kill()
        raise Unavailable("the demo's daemon did not start:\n" + "".join(lines), reason="DAEMON_START_FAILED")
    return found[0]


def _write_shot(folder: Path, kind: str, width: int, height: int, frames: int) -> dict:
    """Plate (scene-linear half EXR), object and shadow mattes, and the clean plate, frame by frame."""
    from voidlink.inference import synthetic
    from voidlink.media.colour import srgb_to_linear
    from voidlink.media.image import write_image

    folder.mkdir(parents=True, exist_ok=True)
    for t in range(frames):
        frame = synthetic.make_frame(kind, width, height, t, frames=frames)
        number = FIRST_FRAME + t
        write_image(str(folder / f"plate.{number:04d}.exr"), srgb_to_linear(frame.plate), pixel_type="half")
        write_image(str(folder / f"clean.{number:04d}.exr"), srgb_to_linear(frame.clean), pixel_type="half")
        write_image(str(folder / f"object.{number:04d}.exr"), frame.object_matte, pixel_type="half")
        write_image(str(folder / f"shadow.{number:04d}.exr"), frame.affected_matte, pixel_type="half")
    return {
        "plate": str(folder / "plate.####.exr"),
        "clean": str(folder / "clean.####.exr"),
        "mask": str(folder / "object.####.exr"),
        "affected": str(folder / "shadow.####.exr"),
    }


def _frame_path(pattern: str, frame: int) -> str:
    from voidlink.protos.clips import SequencePattern

    parsed = SequencePattern.parse(pattern)
    return parsed.path(frame) if parsed else pattern


def _display(path: str):
    """A frame as sRGB-encoded RGB in 0–1, the space PSNR and the contact sheet use."""
    import numpy as np

    from voidlink.media.colour import linear_to_srgb
    from voidlink.media.image import read_image

    pixels = read_image(path).pixels[..., :3]
    return np.clip(linear_to_srgb(pixels), 0.0, 1.0)


def _score(output_pattern: str, shot: dict, frames: int) -> float:
    """PSNR over every pixel that the object or its shadow covers, over the whole shot."""
    import numpy as np

    from voidlink.media.image import read_image

    squared, count = 0.0, 0
    for t in range(frames):
        number = FIRST_FRAME + t
        result = _display(_frame_path(output_pattern, number))
        truth = _display(_frame_path(shot["clean"], number))
        matte = np.maximum(
            read_image(_frame_path(shot["mask"], number)).pixels[..., 0],
            read_image(_frame_path(shot["affected"], number)).pixels[..., 0],
        )
        inside = matte > 0.5
        squared += float(((result - truth)[inside] ** 2).sum())
        count += int(inside.sum()) * 3
    if count == 0:
        return float("nan")
    mse = squared / count
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def _contact_sheet(path: Path, output_pattern: str, quadmask_pattern: str, shot: dict, frames: int) -> None:
    import cv2
    import numpy as np

    from voidlink.media.image import read_image

    colours = {0: (1.0, 0.2, 0.2), 63: (1.0, 0.6, 0.0), 127: (0.2, 0.5, 1.0)}
    rows = []
    for t in sorted({0, frames // 2, frames - 1}):
        number = FIRST_FRAME + t
        source = _display(_frame_path(shot["plate"], number))
        quad = source * 0.5
        if quadmask_pattern:
            values = read_image(_frame_path(quadmask_pattern, number)).pixels[..., 0]
            values = np.rint(values * 255.0 if values.max() <= 1.0 else values)
            for value, colour in colours.items():
                quad[values == value] = colour
        result = _display(_frame_path(output_pattern, number))
        truth = _display(_frame_path(shot["clean"], number))
        gap = np.ones((source.shape[0], 4, 3), np.float32)
        rows.append(np.concatenate([source, gap, quad, gap, result, gap, truth], axis=1))
        rows.append(np.ones((4, rows[-1].shape[1], 3), np.float32))
    sheet = (np.concatenate(rows[:-1], axis=0) * 255.0 + 0.5).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), sheet[..., ::-1])
