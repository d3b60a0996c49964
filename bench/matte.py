"""`voidlink bench matte`: the classical matte tracker and motion proposal scored on generated shots.

Each shot of `voidlink.inference.synthetic` is prompted on its first frame, once with a box around
the object and once with its outline (the drawn shape), and tracked through the shot; the score is
the IoU of the tracked matte (at 0.5) against the known object on every frame, and the tracker's
frames per second (frames are generated before the clock starts). The motion-based affected
proposal is scored on the shadow shot against the shadow's visible part (the quadmask's 127: what
lies under the object is the object's, 63, and no proposal can see it).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence

import cv2
import numpy as np
from voidlink.inference.backends.matte.base import MatteRequest, Prompt
from voidlink.inference.backends.matte.classical import ClassicalTracker
from voidlink.inference.backends.matte.motion import MotionProposer
from voidlink.inference.synthetic import SHOT_KINDS, SyntheticFrame, make_frame
from voidlink.media.quadmask import AFFECTED

PROMPTS = ("box", "outline")
QUICK_KINDS = ("pan_textured", "thin_object", "shadow")


class ShotReader:
    """A generated shot held in memory, as a matte job's frame reader."""

    def __init__(self, shot: Sequence[SyntheticFrame]) -> None:
        self.shot = list(shot)

    @property
    def frames(self) -> list[int]:
        return list(range(len(self.shot)))

    @property
    def size(self) -> tuple[int, int]:
        h, w = self.shot[0].plate.shape[:2]
        return w, h

    def read(self, frame: int) -> np.ndarray:
        return self.shot[frame].plate


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = int((a | b).sum())
    return 1.0 if union == 0 else float((a & b).sum()) / union


def prompt_for(frame: SyntheticFrame, kind: str) -> Prompt:
    """The first frame's prompt: a box 4 px outside the object, or its exact outline."""
    region = frame.object_matte > 0.5
    if kind == "outline":
        return Prompt(frame=0, shape=region)
    ys, xs = np.nonzero(region)
    h, w = region.shape
    box = (max(0.0, xs.min() - 4.0), max(0.0, ys.min() - 4.0), min(w, xs.max() + 5.0), min(h, ys.max() + 5.0))
    return Prompt(frame=0, boxes=(box,))


def score_track(kind: str, width: int, height: int, frames: int, prompt: str) -> dict:
    shot = [make_frame(kind, width, height, t, frames=frames) for t in range(frames)]
    reader = ShotReader(shot)
    started = time.perf_counter()
    mattes = dict(ClassicalTracker().track(reader, [prompt_for(shot[0], prompt)], MatteRequest()))
    seconds = time.perf_counter() - started
    per_frame = [iou(mattes[t] >= 0.5, shot[t].object_matte > 0.5) for t in range(frames)]
    return {
        "kind": kind,
        "size": f"{width}x{height}",
        "prompt": prompt,
        "frames": frames,
        "iou": per_frame,
        "iou_mean": float(np.mean(per_frame)),
        "iou_min": float(np.min(per_frame)),
        "seconds": seconds,
        "fps": frames / seconds,
    }


def score_proposal(width: int, height: int, frames: int, grid: int = 0) -> dict:
    shot = [make_frame("shadow", width, height, t, frames=frames) for t in range(frames)]
    reader = ShotReader(shot)
    request = MatteRequest()
    started = time.perf_counter()
    proposed = dict(MotionProposer(grid=grid).propose(reader, lambda t: shot[t].object_matte, "", request))
    seconds = time.perf_counter() - started
    per_frame = [iou(proposed[t] >= 0.5, shot[t].quadmask == AFFECTED) for t in range(frames)]
    return {
        "kind": "shadow",
        "size": f"{width}x{height}",
        "frames": frames,
        "grid": grid,
        "iou": per_frame,
        "iou_mean": float(np.mean(per_frame)),
        "iou_min": float(np.min(per_frame)),
        "seconds": seconds,
        "fps": frames / seconds,
        "notes": request.notes,
    }


def run(
    quick: bool = False, size: tuple[int, int] = (672, 384), large: tuple[int, int] = (1920, 1080), progress=None
) -> dict:
    """Every kind (quick: three) at `size` with both prompts, one pan at `large`, and the proposal."""
    kinds = QUICK_KINDS if quick else SHOT_KINDS
    frames_small, frames_large = (12, 8) if quick else (24, 24)
    rows = []
    for kind in kinds:
        for prompt in PROMPTS:
            if progress:
                progress(f"{kind} {size[0]}x{size[1]}, {prompt} prompt ({frames_small} frames)")
            rows.append(score_track(kind, *size, frames_small, prompt))
    if progress:
        progress(f"pan_textured {large[0]}x{large[1]}, box prompt ({frames_large} frames)")
    big = score_track("pan_textured", *large, frames_large, "box")
    if progress:
        progress(f"affected proposal on the shadow shot {size[0]}x{size[1]}")
    proposal = score_proposal(*size, frames_small)

    def mean(prompt: str, key: str) -> float:
        return float(np.mean([r[key] for r in rows if r["prompt"] == prompt]))

    return {
        "quick": quick,
        "iou_mean": {p: mean(p, "iou_mean") for p in PROMPTS},
        "iou_min": {p: float(min(r["iou_min"] for r in rows if r["prompt"] == p)) for p in PROMPTS},
        f"fps_{size[0]}x{size[1]}": sum(r["frames"] for r in rows) / sum(r["seconds"] for r in rows),
        f"fps_{large[0]}x{large[1]}": big["fps"],
        f"iou_mean_{large[0]}x{large[1]}": big["iou_mean"],
        "proposal_iou_mean": proposal["iou_mean"],
        "proposal_iou_min": proposal["iou_min"],
        "shots": rows + [big],
        "proposal": proposal,
        "threads": cv2.getNumThreads(),
    }


def format_table(report: dict) -> str:
    head = f"{'shot':<34} {'prompt':<8} {'IoU mean':>8} {'IoU min':>8} {'fps':>6}"
    lines = [head, "-" * len(head)]
    for r in report["shots"]:
        lines.append(
            f"{r['kind'] + ' ' + r['size']:<34} {r['prompt']:<8} {r['iou_mean']:>8.3f} "
            f"{r['iou_min']:>8.3f} {r['fps']:>6.1f}"
        )
    p = report["proposal"]
    lines.append("-" * len(head))
    lines.append(
        f"{'affected proposal ' + p['kind'] + ' ' + p['size']:<34} {'motion':<8} {p['iou_mean']:>8.3f} "
        f"{p['iou_min']:>8.3f} {p['fps']:>6.1f}"
    )
    lines.append("")
    lines.append(
        f"mean IoU: box {report['iou_mean']['box']:.3f}, outline {report['iou_mean']['outline']:.3f}; "
        f"on {report['threads']} OpenCV threads"
    )
    return "\n".join(lines)


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a size such as 672x384") from None
    if w < 32 or h < 32:
        raise argparse.ArgumentTypeError(f"'{text}' is too small (at least 32x32)")
    return w, h


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="voidlink bench matte", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--quick", action="store_true", help="three shots of 12 frames (well under a minute)")
    parser.add_argument("--size", type=_size, default=(672, 384), help="size of the shots (default 672x384)")
    parser.add_argument("--large-size", type=_size, default=(1920, 1080), help="size of the large shot")
    args = parser.parse_args(argv)
    progress = None if args.json else (lambda text: print(f"  tracking {text}", flush=True))
    report = run(quick=args.quick, size=args.size, large=args.large_size, progress=progress)
    print(json.dumps(report) if args.json else format_table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
