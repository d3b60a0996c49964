"""Media: sequences on disk, OpenImageIO round trips, colour, quadmask and the crop plan."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import OpenImageIO as oiio
import pytest
from voidlink.media import colour, composite, image, plan, quadmask, sequence
from voidlink.protos.clips import ClipMedia

from voidlink import errors

RNG = np.random.default_rng(3)


def _touch_sequence(folder: Path, name: str, frames, digits: int = 4) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for f in frames:
        image.write_image(str(folder / f"{name}.{f:0{digits}d}.exr"), np.zeros((4, 4, 3), np.float32))


# -- sequences -------------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["####", "%04d", "@", "@@@@"])
def test_discover_patterns(tmp_path, token):
    _touch_sequence(tmp_path, "plate", [1001, 1002, 1003, 1005])
    media = sequence.discover(ClipMedia(str(tmp_path / f"plate.{token}.exr")), "spec.source")
    assert media.frames == [1001, 1002, 1003, 1005]
    assert media.missing(1001, 1005) == [1004]
    assert media.file_for(1005) == str(tmp_path / "plate.1005.exr")
    assert sequence.gaps(media.frames) == [(1004, 1004)]


def test_discover_unpadded_with_at(tmp_path):
    _touch_sequence(tmp_path, "shot", [8, 9, 10, 11], digits=0)
    media = sequence.discover(ClipMedia(str(tmp_path / "shot.@.exr")))
    assert media.frames == [8, 9, 10, 11] and media.file_for(9) == str(tmp_path / "shot.9.exr")


def test_discover_ignores_other_paddings_and_names(tmp_path):
    _touch_sequence(tmp_path, "plate", [1, 2])
    _touch_sequence(tmp_path, "plate_v2", [1, 2])
    image.write_image(str(tmp_path / "plate.00003.exr"), np.zeros((4, 4, 3), np.float32))
    media = sequence.discover(ClipMedia(str(tmp_path / "plate.####.exr")))
    assert media.frames == [1, 2]


def test_missing_sequence_is_not_found_naming_the_pattern(tmp_path):
    with pytest.raises(errors.NotFound, match="nothing"):
        sequence.discover(ClipMedia(str(tmp_path / "nothing.####.exr")), "spec.mask")
    with pytest.raises(errors.NotFound, match="folder not found"):
        sequence.discover(ClipMedia(str(tmp_path / "no" / "plate.####.exr")))


def test_format_frames_runs():
    assert sequence.format_frames([1003, 1004, 1005, 1010]) == "1003-1005, 1010"


# -- images ----------------------------------------------------------------------------------


@pytest.mark.parametrize("pixel_type", ["half", "float"])
@pytest.mark.parametrize("compression", ["zip", "piz", "dwaa", "none"])
def test_exr_round_trip(tmp_path, pixel_type, compression):
    pixels = (RNG.random((20, 30, 4)) * 4 - 1).astype(np.float32)
    path = tmp_path / "a.exr"
    image.write_image(str(path), pixels, pixel_type=pixel_type, compression=compression)
    frame = image.read_image(str(path), "rgba")
    assert frame.spec.format == pixel_type
    assert frame.spec.getattribute("compression") == compression
    expected = pixels.astype(np.float16).astype(np.float32) if pixel_type == "half" else pixels
    if compression == "dwaa":  # lossy on colour channels
        assert np.abs(frame.pixels - expected).max() < 0.2
    else:
        assert np.array_equal(frame.pixels, expected)
    # Read back, written again at the same type: bit for bit.
    again = tmp_path / "b.exr"
    image.write_image(str(again), frame.pixels, frame.spec)
    if compression != "dwaa":
        assert np.array_equal(image.read_image(str(again), "rgba").pixels, frame.pixels)
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]


def _windowed_spec(pixel_type="half") -> oiio.ImageSpec:
    spec = oiio.ImageSpec(40, 24, 3, pixel_type)
    spec.x, spec.y = -4, 6  # overscan on the left, a bounding box from y=6
    spec.full_x, spec.full_y, spec.full_width, spec.full_height = 0, 0, 32, 32
    spec.attribute("FramesPerSecond", oiio.TypeDesc("rational2int"), (24, 1))
    spec.attribute("smpte:TimeCode", oiio.TypeDesc("timecode"), (0x01000000, 0))
    spec.attribute("nuke/node_hash", "abc123")
    spec.attribute("pixelAspectRatio", 2.0)
    spec.attribute("compression", "piz")
    return spec


def test_windows_and_metadata_survive(tmp_path):
    src = tmp_path / "src.exr"
    pixels = RNG.random((24, 40, 3)).astype(np.float32)
    out = oiio.ImageOutput.create(str(src))
    assert out.open(str(src), _windowed_spec())
    out.write_image(pixels)
    out.close()
    frame = image.read_image(str(src))
    assert frame.data_window == (-4, 6, 40, 24) and frame.display_window == (0, 0, 32, 32)
    spec = image.output_spec(frame.spec, 3, frame.channels, "half", "zip", "x.exr")
    dst = tmp_path / "dst.exr"
    image.write_image(str(dst), frame.pixels, spec)
    back = image.read_image(str(dst))
    assert back.data_window == frame.data_window and back.display_window == frame.display_window
    assert back.spec.getattribute("nuke/node_hash") == "abc123"
    assert back.spec.getattribute("PixelAspectRatio") == pytest.approx(2.0)
    assert back.spec.getattribute("smpte:TimeCode") == frame.spec.getattribute("smpte:TimeCode")
    assert back.spec.getattribute("FramesPerSecond") == frame.spec.getattribute("FramesPerSecond")
    assert back.spec.getattribute("compression") == "zip"
    assert np.array_equal(back.pixels, frame.pixels)


def _multipart(path: Path) -> None:
    beauty = oiio.ImageSpec(16, 8, 4, "half")
    beauty.attribute("name", "beauty")
    matte = oiio.ImageSpec(16, 8, 2, "float")
    matte.attribute("name", "mattes")
    matte.channelnames = ("matte.A", "other.A")
    out = oiio.ImageOutput.create(str(path))
    assert out.open(str(path), (beauty, matte))
    out.write_image(np.full((8, 16, 4), 0.25, np.float32))
    assert out.open(str(path), matte, "AppendSubimage")
    values = np.zeros((8, 16, 2), np.float32)
    values[..., 0] = 1.0
    out.write_image(values)
    out.close()


def test_multipart_and_named_channels(tmp_path):
    path = tmp_path / "mp.exr"
    _multipart(path)
    first = image.read_image(str(path))
    assert first.pixels.shape == (8, 16, 3) and np.all(first.pixels == 0.25)
    matte = image.read_image(str(path), "matte.A", matte=True, part="mattes")
    assert matte.pixels.shape == (8, 16, 1) and np.all(matte.pixels == 1.0)
    with pytest.raises(errors.InvalidInput) as info:
        image.read_image(str(path), part="nope", field="spec.mask", frame=1001)
    assert info.value.reason == "MISSING_PART" and "beauty" in str(info.value) and info.value.frame == 1001
    with pytest.raises(errors.InvalidInput) as info:
        image.read_image(str(path), "rgba", part="mattes", field="spec.mask")
    assert info.value.reason == "MISSING_CHANNEL" and info.value.field == "spec.mask.channels"
    assert "matte.A" in str(info.value)


def test_matte_channel_defaults(tmp_path):
    rgb = tmp_path / "rgb.png"
    values = np.zeros((6, 6, 3), np.uint8)
    values[2:4, 2:4] = 255
    cv2.imwrite(str(rgb), values)
    lum = image.read_image(str(rgb), matte=True)
    assert lum.channels == ["Y"] and lum.pixels[2, 2, 0] == pytest.approx(1.0) and lum.pixels[0, 0, 0] == 0
    rgba = tmp_path / "rgba.exr"
    px = np.zeros((6, 6, 4), np.float32)
    px[..., 3] = 0.75
    image.write_image(str(rgba), px)
    assert image.read_image(str(rgba), matte=True).pixels[0, 0, 0] == 0.75


def test_truncated_file_names_file_and_frame(tmp_path):
    path = tmp_path / "bad.exr"
    image.write_image(str(path), np.ones((32, 32, 3), np.float32))
    path.write_bytes(path.read_bytes()[:120])
    with pytest.raises(errors.InvalidInput) as info:
        image.read_image(str(path), field="spec.source", frame=1004)
    assert info.value.reason == "UNREADABLE_FILE" and info.value.file == str(path) and info.value.frame == 1004
    assert "frame 1004" in str(info.value)


@pytest.mark.parametrize("suffix", [".png", ".tif", ".jpg", ".dpx"])
def test_other_formats_read(tmp_path, suffix):
    path = tmp_path / f"a{suffix}"
    pixels = np.zeros((8, 10, 3), np.float32)
    pixels[..., 1] = 0.5
    image.write_image(str(path), pixels, pixel_type="uint16" if suffix == ".dpx" else "uint8")
    frame = image.read_image(str(path))
    assert frame.pixels.shape == (8, 10, 3)
    assert frame.pixels[..., 1].mean() == pytest.approx(0.5, abs=0.01)


def test_movie_frames_read(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 24, (64, 48))
    for i in range(6):
        frame = np.full((48, 64, 3), i * 40, np.uint8)
        writer.write(frame)
    writer.release()
    media = sequence.discover(ClipMedia(str(path)), "spec.source")
    assert media.kind == "movie" and media.frames == [1, 2, 3, 4, 5, 6]
    capture = cv2.VideoCapture(str(path))
    try:
        fourth = image.read_movie_frame(capture, str(path), media.movie_index(4), "spec.source", 4)
        second = image.read_movie_frame(capture, str(path), media.movie_index(2), "spec.source", 2)
    finally:
        capture.release()
    assert fourth.shape == (48, 64, 3) and fourth.mean() == pytest.approx(120 / 255, abs=0.03)
    assert second.mean() == pytest.approx(40 / 255, abs=0.03)


# -- colour ----------------------------------------------------------------------------------


def test_model_space_round_trip_and_roll_off():
    linear = np.array([-0.01, 0.0, 0.001, 0.18, 0.5, 0.9, 1.0, 4.0, 16.0], np.float32)
    model = colour.linear_to_model(linear)
    assert model.max() < 1.0 and np.all(np.diff(model) > 0)  # monotonic, inside the range
    back = colour.model_to_linear(model)
    assert np.allclose(back[:7], linear[:7], rtol=1e-4, atol=1e-6)  # in range: exact inverse
    assert np.allclose(back[7:], linear[7:], rtol=2e-2)  # highlights survive, not clipped to 1
    # The roll-off is continuous at the knee.
    k = np.float32(colour.KNEE)
    assert colour.roll_off(np.array([k - 1e-4, k + 1e-4])) == pytest.approx([k - 1e-4, k + 1e-4], abs=2e-4)


def test_transform_through_ocio_round_trips():
    rgb = (RNG.random((16, 16, 3)) * 2).astype(np.float32)
    for name in ("ACEScg", "lin_rec709", "ACES2065-1"):
        transform = colour.ModelTransform(colour.resolve_colorspace(name))
        model = transform.to_model(rgb)
        assert model.max() < 1.0
        assert np.allclose(transform.from_model(model), rgb, rtol=1e-3, atol=1e-4)


def test_colorspace_resolution():
    assert colour.resolve_colorspace("", "srgb_rec709_scene") == "sRGB Encoded Rec.709 (sRGB)"
    assert colour.resolve_colorspace("", "made_up_by_some_renderer") == colour.resolve_colorspace("scene_linear")
    with pytest.raises(errors.InvalidInput) as info:
        colour.resolve_colorspace("Kodak 5219", "", "spec.source.colorspace")
    assert info.value.field == "spec.source.colorspace" and "Kodak 5219" in str(info.value)


def test_ocio_env_config_is_used(tmp_path, monkeypatch):
    config = tmp_path / "config.ocio"
    base = colour.config()
    base.serialize(str(config))
    monkeypatch.setenv("OCIO", str(config))
    assert colour.config_name() == str(config)
    assert colour.resolve_colorspace("ACEScg") == "ACEScg"


# -- quadmask --------------------------------------------------------------------------------


def test_snap_counts_off_values():
    values = np.array([[0, 10, 60, 63], [100, 127, 200, 255]], np.uint8)
    snapped, count = quadmask.snap(values)
    assert snapped.tolist() == [[0, 0, 63, 63], [127, 127, 255, 255]]
    assert count == 4


def test_snap_draws_the_four_levels_where_the_reference_does():
    # The reference VOID: <=31 object, 32-95 overlap, 96-191 affected, above keep (95 is overlap).
    values = np.array([[31, 32, 95, 96], [191, 192, 254, 255]], np.uint8)
    assert quadmask.snap(values)[0].tolist() == [[0, 63, 63, 127], [127, 255, 255, 255]]
    assert quadmask.snap(values.astype(np.float32) / 255.0)[0].tolist() == [[0, 63, 63, 127], [127, 255, 255, 255]]


def test_from_mattes_threshold_dilate_overlap():
    obj = np.zeros((20, 20), np.float32)
    obj[5:10, 5:10] = 0.8
    obj[0, 0] = 0.3  # below threshold
    aff = np.zeros((20, 20), np.float32)
    aff[8:14, 5:10] = 1.0
    qm = quadmask.from_mattes(obj, aff, quadmask.MatteSettings(threshold=0.5))
    assert qm[6, 6] == quadmask.OBJECT and qm[9, 6] == quadmask.OVERLAP and qm[12, 6] == quadmask.AFFECTED
    assert qm[0, 0] == quadmask.KEEP
    grown = quadmask.from_mattes(obj, None, quadmask.MatteSettings(dilate=2))
    assert grown[5, 3] == quadmask.OBJECT and grown[5, 2] == quadmask.KEEP
    shrunk = quadmask.from_mattes(obj, None, quadmask.MatteSettings(dilate=-1))
    assert shrunk[5, 5] == quadmask.KEEP and shrunk[7, 7] == quadmask.OBJECT
    inverted = quadmask.from_mattes(obj, None, quadmask.MatteSettings(invert=True))
    assert inverted[6, 6] == quadmask.KEEP and inverted[0, 0] == quadmask.OBJECT


def test_feather_grows_the_backend_region_and_softens_alpha():
    qm = np.full((30, 30), quadmask.KEEP, np.uint8)
    qm[10:20, 10:20] = quadmask.OBJECT
    grown = quadmask.grow_for_feather(qm, 3)
    assert grown[10, 7] == quadmask.OBJECT and grown[10, 6] == quadmask.KEEP
    alpha = quadmask.composite_alpha(qm, 3)
    assert alpha[15, 15] == 1.0 and 0 < alpha[15, 8] < 1 and alpha[15, 5] == 0
    assert np.all(alpha[grown == quadmask.KEEP] == 0)  # the soft edge lies inside what the backend fills


def test_quadmask_png_round_trip(tmp_path):
    qm = RNG.choice(quadmask.VALUES, size=(12, 16)).astype(np.uint8)
    path = tmp_path / "q.0001.png"
    image.write_image(str(path), qm.astype(np.float32) / 255, pixel_type="uint8", channel_names=["Y"])
    back, snapped = quadmask.snap(image.read_image(str(path), matte=True).pixels)
    assert np.array_equal(back, qm) and snapped == 0


def test_resize_keeps_thin_objects():
    qm = np.full((400, 400), quadmask.KEEP, np.uint8)
    qm[:, 200] = quadmask.OBJECT  # one pixel wide
    small = quadmask.resize(qm, (50, 50))
    assert (small == quadmask.OBJECT).any(axis=0).sum() >= 1 and (small == quadmask.OBJECT).all(axis=0).any()


# -- plan ------------------------------------------------------------------------------------


def test_plan_small_object_on_4k_keeps_resolution():
    box = (2000, 1000, 2100, 1080)
    p = plan.plan((3840, 2160), box, (672, 384), "auto")
    x0, y0, x1, y1 = p.crop
    assert x0 <= 2000 and x1 >= 2100 and y0 <= 1000 and y1 >= 1080
    assert p.scale == pytest.approx(1.0, abs=0.05)  # native-ish, not a 5.7x downscale
    assert (x1 - x0) / (y1 - y0) == pytest.approx(672 / 384, rel=0.02)
    full = plan.plan((3840, 2160), box, (672, 384), "full")
    assert full.full_frame and full.scale == pytest.approx(672 / 3840)


def test_plan_large_object_falls_back_to_full_frame():
    p = plan.plan((1920, 1080), (100, 100, 1800, 1000), (672, 384), "auto")
    assert p.full_frame


def test_plan_native_backend_crops_with_context():
    p = plan.plan((1920, 1080), (900, 500, 1000, 560), None, "auto")
    assert p.scale == 1.0 and p.size == p.crop_size
    assert p.crop[0] <= 900 - 48 and p.crop[2] >= 1000 + 48
    image_ = RNG.random((1080, 1920, 3)).astype(np.float32)
    assert np.array_equal(p.from_backend(p.to_backend(image_)), image_[p.crop[1] : p.crop[3], p.crop[0] : p.crop[2]])


def test_a_saturated_model_colour_comes_back_finite_in_a_half_output(tmp_path):
    """The roll-off's inverse maps its cap to ~3.6e9: beyond half's range, stored as infinity unclamped."""
    transform = colour.ModelTransform(colour.model_linear_space())
    back = transform.from_model(np.ones((4, 4, 3), np.float32))
    assert np.isfinite(back).all() and back.max() == pytest.approx(colour.LARGEST)
    path = str(tmp_path / "hot.exr")
    image.write_image(path, back, pixel_type="half")
    assert np.isfinite(image.read_image(path).pixels).all()
    srgb = colour.ModelTransform("sRGB - Texture").from_model(np.ones((2, 2, 3), np.float32))
    assert np.isfinite(srgb).all() and np.abs(srgb).max() <= colour.LARGEST


def test_otio_is_read_before_strict_json_and_errors_say_what_is_wrong():
    from voidlink.protos.clips import clip_json, clip_media

    text = clip_json("/shots/a/plate.####.exr", 1001, 1010)
    assert clip_media(text.replace('"rate": 24.0', '"rate": 24.0', 1)).first == 1001
    # OpenTimelineIO reads Inf and NaN (strict JSON does not); a range that is not finite is named.
    infinite = text.replace('"value": 10.0', '"value": Inf', 1)
    with pytest.raises(ValueError, match="not finite"):
        clip_media(infinite, "spec.source")
    with pytest.raises(ValueError, match="line 1 column"):
        clip_media('{"OTIO_SCHEMA": "Clip.2",', "spec.source")
    with pytest.raises(ValueError, match="OTIO_SCHEMA"):
        clip_media('{"name": "plate"}', "spec.source")
    # A field OpenTimelineIO needs is named as the client wrote the object, not as a C++ type.
    without_step = text.replace('"frame_step": 1,', "", 1)
    assert without_step != text
    with pytest.raises(ValueError, match="its ImageSequenceReference has no 'frame_step' field"):
        clip_media(without_step, "spec.source")


def test_a_float_result_is_stored_as_plate_plus_delta_exactly():
    rng = np.random.default_rng(7)
    plate = rng.uniform(0.0, 4.0, (16, 16, 4)).astype(np.float32)
    result = rng.uniform(0.0, 1.0, (16, 16, 4)).astype(np.float32)
    weight = np.zeros((16, 16), np.float32)
    weight[4:12, 4:12] = 1.0
    rgb = [0, 1, 2]
    layers = composite.change_layers(plate, result, rgb, weight, np.full((16, 16), 255, np.uint8))
    inside = weight > 0
    # float32 subtraction rounds: without the add-back a Merge (plus) would miss the result somewhere.
    assert (plate[..., :3] + layers[..., :3] != result[..., :3])[inside].any()
    stored = result.copy()
    composite.add_back(stored, plate, rgb, layers)
    expected = np.where(inside[..., None], stored[..., :3], plate[..., :3])
    assert np.array_equal(plate[..., :3] + layers[..., :3], expected)
    assert np.array_equal(stored[~inside], result[~inside]) and np.array_equal(stored[..., 3], result[..., 3])
    # It moves by the subtraction's rounding: within a unit or two in the last place of the larger value.
    ulp = np.spacing(np.maximum(np.abs(plate[..., :3]), np.abs(result[..., :3])))[inside]
    assert np.all(np.abs(stored[..., :3][inside] - result[..., :3][inside]) <= 2 * ulp)
