"""The change as layers in the output EXR (OutputSpec.write_layers): names and types as OpenImageIO
reads them, the delta against the plate, the change matte, the quadmask as data, and RGBA
outside the mask left bit-identical."""

from __future__ import annotations

import numpy as np
import OpenImageIO as oiio
import pytest
from support.jobs import frame_paths, run_spec
from support.shots import read_pixels
from voidlink.bridge import build_spec
from voidlink.media import image, quadmask

from voidlink import errors

DELTA = ["void.delta.R", "void.delta.G", "void.delta.B"]
LAYERS = [*DELTA, "void.change", "void.quadmask"]


def _channels(path: str) -> dict[str, np.ndarray]:
    """Every channel of the file by name (EXR stores them sorted, so order is not relied on)."""
    buf = oiio.ImageBuf(path)
    pixels = buf.get_pixels(oiio.FLOAT)
    return {name: pixels[..., i] for i, name in enumerate(buf.spec().channelnames)}


def _types(path: str) -> dict[str, str]:
    spec = image.read_spec(path)
    formats = spec.channelformats or (spec.format,) * spec.nchannels
    return {name: str(fmt) for name, fmt in zip(spec.channelnames, formats)}


def _run(shot, tmp_path, **kw):
    output = tmp_path / "out" / "clean.####.exr"
    result = run_spec(build_spec(shot.plate, shot.mask, shot.affected, output=output, feather=3.0, **kw))
    frames = (result.frames.first, result.frames.last)
    return result, frame_paths(shot.plate, *frames), frame_paths(str(output), *frames)


def test_layers_are_named_channels_beside_rgb(shot, tmp_path):
    _, _, outs = _run(shot, tmp_path, layers=True)
    types = _types(outs[0])
    assert set(types) == {"R", "G", "B", *LAYERS}
    assert all(types[name] == "float" for name in DELTA)  # adds back onto a half plate exactly
    assert types["R"] == types["void.change"] == types["void.quadmask"] == "half"


def test_without_layers_no_extra_channels(shot, tmp_path):
    _, _, outs = _run(shot, tmp_path)
    assert set(_types(outs[0])) == {"R", "G", "B"}


def test_delta_is_result_minus_plate_inside_and_zero_outside(shot, tmp_path):
    result, plates, outs = _run(shot, tmp_path, layers=True)
    qms = frame_paths(result.quadmask_pattern, result.frames.first, result.frames.last)
    for plate_path, qm_path, out_path in zip(plates, qms, outs):
        plate, out = read_pixels(plate_path), _channels(out_path)
        rgb = np.stack([out["R"], out["G"], out["B"]], axis=2)
        delta = np.stack([out[name] for name in DELTA], axis=2)
        qm = quadmask.snap(image.read_image(qm_path, matte=True).pixels)[0]
        outside = quadmask.composite_alpha(qm, 3.0) == 0
        assert np.array_equal(rgb[outside], plate[outside])  # bit-identical where nothing was asked
        assert np.all(delta[outside] == 0.0) and not np.signbit(delta[outside]).any()
        assert np.abs(delta[~outside]).max() > 0.01
        # A Nuke-style Merge (plus) of plate and delta is the result.
        np.testing.assert_array_equal(plate + delta, rgb)
        change = out["void.change"]
        assert np.all(change[outside] == 0.0) and change.max() == 1.0
        assert 0 < change[(change > 0) & (change < 1)].size  # soft across the feather
        np.testing.assert_allclose(out["void.quadmask"], qm / 255.0, atol=1e-3)
        assert set(np.unique(np.round(out["void.quadmask"] * 255))) <= {0, 63, 127, 255}


def test_float_output_adds_back_exactly(shot, tmp_path):
    _, plates, outs = _run(shot, tmp_path, layers=True, pixel_type="float")
    out = _channels(outs[0])
    rgb = np.stack([out["R"], out["G"], out["B"]], axis=2)
    delta = np.stack([out[name] for name in DELTA], axis=2)
    np.testing.assert_array_equal(read_pixels(plates[0]) + delta, rgb)


def test_a_layered_result_as_plate_gets_its_layers_replaced(shot, tmp_path):
    _, _, outs = _run(shot, tmp_path, layers=True)
    again = tmp_path / "again" / "clean.####.exr"
    pattern = outs[0].replace(f"{shot.first:04d}", "####")
    run_spec(build_spec(pattern, shot.mask, shot.affected, output=again, layers=True, frames=(shot.first, shot.first)))
    names = image.read_spec(str(again).replace("####", f"{shot.first:04d}")).channelnames
    assert sorted(names) == sorted(["R", "G", "B", *LAYERS])


def test_layers_need_an_exr_output(shot, tmp_path):
    with pytest.raises(errors.InvalidInput, match="EXR") as caught:
        _run_png(shot, tmp_path)
    assert caught.value.field == "spec.output.write_layers"


def _run_png(shot, tmp_path):
    output = tmp_path / "out" / "clean.####.png"
    return run_spec(build_spec(shot.plate, shot.mask, output=output, layers=True))
