"""Makes docs/images/layers-sheet.png: a synthetic shot run through the classical backend with layers on,
shown as plate | result | delta | change. Run from the repository root: python docs/layers_sheet.py"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import OpenImageIO as oiio
from voidlink.bridge import build_spec
from voidlink.inference.backends import BACKENDS
from voidlink.inference.job.prepare import prepare_job
from voidlink.inference.job.run import run_job
from voidlink.media import image

W, H, FRAMES, FIRST = 320, 180, 6, 1001


def _shot(folder: Path) -> tuple[str, str]:
    """A soft striped wall panning right, with a red post (the object) and its shadow to the right."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    for i in range(FRAMES):
        x = xx + 3 * i
        wall = 0.35 + 0.12 * np.sin(x / 9.0) + 0.08 * np.sin(yy / 13.0 + x / 31.0)
        plate = np.stack([wall * 0.9, wall * 0.8, wall * 0.65], axis=2)
        post = (np.abs(xx - 150 + 2 * i) < 12) & (yy > 30) & (yy < 160)
        shadow = (xx > 162 - 2 * i) & (xx < 200 - 2 * i) & (yy > 130) & (yy < 160)
        plate[shadow] *= 0.55
        plate[post] = (0.75, 0.12, 0.1)
        image.write_image(str(folder / f"plate.{FIRST + i}.exr"), plate)
        image.write_image(str(folder / f"mask.{FIRST + i}.exr"), (post | shadow).astype(np.float32))
    return str(folder / "plate.####.exr"), str(folder / "mask.####.exr")


def _channels(path: str) -> dict[str, np.ndarray]:
    buf = oiio.ImageBuf(path)
    pixels = buf.get_pixels(oiio.FLOAT)
    return {name: pixels[..., i] for i, name in enumerate(buf.spec().channelnames)}


def _tile(rgb: np.ndarray, label: str) -> np.ndarray:
    display = np.clip(rgb, 0, 1) ** (1 / 2.2)  # linear to a viewable picture
    tile = (display[..., ::-1] * 255).astype(np.uint8).copy()
    cv2.putText(tile, label, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def main(out: str = "docs/images/layers-sheet.png") -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        plate, mask = _shot(folder)
        output = folder / "out" / "clean.####.exr"
        spec = build_spec(plate, mask, output=output, backend="classical", feather=4.0, dilate=2, layers=True)
        prepared = prepare_job(spec)
        try:
            run_job(prepared, BACKENDS["classical"].factory(None), job_id="sheet")
        finally:
            prepared.close()
        frame = FIRST + FRAMES // 2
        result = _channels(str(output).replace("####", str(frame)))
        source = _channels(plate.replace("####", str(frame)))
    rgb = np.stack([result[c] for c in "RGB"], axis=2)
    delta = np.stack([result[f"void.delta.{c}"] for c in "RGB"], axis=2)
    tiles = [
        _tile(np.stack([source[c] for c in "RGB"], axis=2), "plate"),
        _tile(rgb, "result"),
        _tile(0.5 + 2.0 * delta, "void.delta (x2 over grey)"),
        _tile(np.repeat(result["void.change"][..., None], 3, axis=2), "void.change"),
    ]
    gap = np.full((H, 4, 3), 32, np.uint8)
    row = np.concatenate([tiles[0], gap, tiles[1], gap, tiles[2], gap, tiles[3]], axis=1)
    cv2.imwrite(out, row)
    print(out)


if __name__ == "__main__":
    main(*sys.argv[1:])
