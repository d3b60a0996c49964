"""The job pipeline on real files: validation, composite exactness, staging, resume, cancel.

A small deterministic backend (`support.jobs.MeanFill`) stands in for the real ones so that every
pixel the pipeline writes can be predicted; the real backends have their own tests.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import numpy as np
import OpenImageIO as oiio
import pytest
from support.jobs import MeanFill, frame_paths, run_spec
from support.shots import read_pixels, write_shot
from voidlink.bridge import build_spec
from voidlink.inference.job.prepare import prepare_job
from voidlink.inference.job.run import commit_segments, run_job
from voidlink.inference.job.staging import (
    COMMIT_MARKER,
)
from voidlink.media import image, quadmask
from voidlink.protos import pb

from voidlink import errors


def _assert_exact_outside(plate: str, mask_values: list[np.ndarray], out: str, feather: float = 3.0) -> None:
    """Every output frame equals its plate bit for bit wherever the composite alpha is 0."""
    for src, qm, dst in zip(plate, mask_values, out):
        a, b = read_pixels(src), read_pixels(dst)
        outside = quadmask.composite_alpha(qm, feather) == 0
        assert np.array_equal(a[outside], b[outside], equal_nan=True), dst
        assert not np.array_equal(a, b)  # the fill did change something inside


def _quadmasks(result: pb.JobResult) -> list[np.ndarray]:
    out = []
    for path in frame_paths(result.quadmask_pattern, result.frames.first, result.frames.last):
        out.append(quadmask.snap(image.read_image(path, matte=True).pixels)[0])
    return out


def test_end_to_end_exact_outside_mask_and_result(shot, tmp_path):
    output = tmp_path / "out" / "clean.####.exr"
    result = run_spec(build_spec(shot.plate, shot.mask, shot.affected, output=output))
    assert result.output_pattern == str(output)
    assert (result.frames.first, result.frames.last) == (shot.first, shot.last)
    assert result.notes[0] == "test backend" and result.backend == "meanfill"
    qms = _quadmasks(result)
    assert all((q == quadmask.AFFECTED).any() and (q == quadmask.OBJECT).any() for q in qms)
    outs = frame_paths(str(output), shot.first, shot.last)
    _assert_exact_outside(frame_paths(shot.plate, shot.first, shot.last), qms, outs)
    assert all(image.read_spec(p).format == "half" for p in outs)
    assert not [p for p in output.parent.rglob("*") if p.name.startswith(".")]
    import opentimelineio as otio

    clip = otio.adapters.read_from_string(result.otio_json, "otio_json")
    assert clip.media_reference.abstract_target_url("####").endswith("clean.####.exr")
    assert clip.source_range.duration.value == shot.last - shot.first + 1


def _write(path: Path, pixels: np.ndarray, pixel_type: str, x=0, y=0, full=None, extra=None) -> None:
    h, w, c = pixels.shape
    spec = oiio.ImageSpec(w, h, c, pixel_type)
    spec.x, spec.y = x, y
    if full is not None:
        spec.full_x, spec.full_y, spec.full_width, spec.full_height = full
    spec.channelnames = ("R", "G", "B", "A")[:c] if c > 1 else ("A",)
    for key, value in (extra or {}).items():
        spec.attribute(key, value)
    out = oiio.ImageOutput.create(str(path))
    assert out.open(str(path), spec)
    assert out.write_image(np.ascontiguousarray(pixels, np.float32))
    out.close()


@pytest.mark.parametrize("pixel_type", ["half", "float"])
def test_overscan_plate_bbox_matte_rgba_metadata(tmp_path, source_guard, pixel_type):
    """Plate with overscan (data window larger than display) and alpha; matte rendered with a tight bbox."""
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(1)
    for f in range(1, 5):
        plate = rng.random((48, 72, 4)).astype(np.float32) * 3  # values above 1: scene-linear highlights
        plate[0, 0, 0] = np.nan  # outside the mask: must come back untouched
        _write(
            src / f"p.{f:04d}.exr",
            plate,
            pixel_type,
            x=-4,
            y=-4,
            full=(0, 0, 64, 40),
            extra={"nuke/shot": "sh010", "owner": "studio", "comments": "plate v3"},
        )
        matte = np.ones((10, 12, 1), np.float32)
        _write(src / f"m.{f:04d}.exr", matte, "half", x=20 + f, y=12, full=(0, 0, 64, 40))
    source_guard(src)
    output = tmp_path / "out" / "o.####.exr"
    result = run_spec(build_spec(str(src / "p.####.exr"), str(src / "m.####.exr"), output=output))
    for f, qm in zip(range(1, 5), _quadmasks(result)):
        a = image.read_image(str(src / f"p.{f:04d}.exr"), "all")
        b = image.read_image(str(output).replace("####", f"{f:04d}"), "all")
        assert b.data_window == a.data_window == (-4, -4, 72, 48) and b.display_window == (0, 0, 64, 40)
        assert b.spec.format == pixel_type and b.channels == ["R", "G", "B", "A"]
        assert b.spec.getattribute("nuke/shot") == "sh010" and b.spec.getattribute("Copyright") == "studio"
        assert b.spec.getattribute("ImageDescription") == "plate v3"
        # The matte's box lands at its display coordinates inside the plate's data window.
        assert qm[12 + 4, 20 + f + 4] == quadmask.OBJECT and qm[11 + 4, 20 + f + 4] == quadmask.KEEP
        outside = quadmask.composite_alpha(qm, 3.0) == 0
        assert np.array_equal(a.pixels[outside], b.pixels[outside], equal_nan=True)
        assert np.array_equal(a.pixels[..., 3], b.pixels[..., 3])  # alpha untouched everywhere
        assert math.isnan(b.pixels[0, 0, 0])
        inside = qm == quadmask.OBJECT
        assert np.isfinite(b.pixels[inside]).all() and not np.array_equal(a.pixels[inside], b.pixels[inside])


def test_float_output_from_half_plate_and_compression(shot, tmp_path):
    output = tmp_path / "out" / "f.####.exr"
    run_spec(build_spec(shot.plate, shot.mask, output=output, pixel_type="float", compression="piz"))
    spec = image.read_spec(str(output).replace("####", f"{shot.first:04d}"))
    assert spec.format == "float" and spec.getattribute("compression") == "piz"


def test_written_quadmask_read_back_gives_the_same_job(shot, tmp_path):
    first = run_spec(build_spec(shot.plate, shot.mask, shot.affected, output=tmp_path / "a" / "a.####.exr"))
    again = run_spec(
        build_spec(shot.plate, first.quadmask_pattern, output=tmp_path / "b" / "b.####.exr", quadmask=True)
    )
    for a, b in zip(
        frame_paths(str(tmp_path / "a" / "a.####.exr"), shot.first, shot.last),
        frame_paths(again.output_pattern, shot.first, shot.last),
    ):
        assert np.array_equal(read_pixels(a), read_pixels(b))


def test_working_size_backend_gets_crop_at_its_size(tmp_path, source_guard):
    files = write_shot(tmp_path / "src", frames=4, width=320, height=192)
    source_guard(files.folder)
    masks = tmp_path / "m"
    masks.mkdir()
    for f in range(files.first, files.last + 1):  # a small object that stays near the centre
        m = np.zeros((192, 320, 1), np.float32)
        m[90:100, 150 + f - files.first : 162 + f - files.first] = 1
        image.write_image(str(masks / f"m.{f:04d}.exr"), m, channel_names=["A"])
    backend = MeanFill(working_size=(96, 64))
    result = run_spec(build_spec(files.plate, str(masks / "m.####.exr"), output=tmp_path / "o" / "o.####.exr"), backend)
    assert backend.shapes == {(64, 96, 3)}
    assert result.metrics["crop_width"] < 320  # cropped around the object, not the whole frame
    assert result.metrics["crop_width"] / result.metrics["crop_height"] == pytest.approx(96 / 64, rel=0.03)
    _assert_exact_outside(
        frame_paths(files.plate, files.first, files.last),
        _quadmasks(result),
        frame_paths(result.output_pattern, files.first, files.last),
    )


def test_movie_source(tmp_path):
    movie = tmp_path / "plate.avi"
    writer = cv2.VideoWriter(str(movie), cv2.VideoWriter_fourcc(*"MJPG"), 24, (64, 48))
    for i in range(5):
        writer.write(np.full((48, 64, 3), 30 + 20 * i, np.uint8))
    writer.release()
    masks = tmp_path / "m"
    masks.mkdir()
    for f in range(1, 6):
        m = np.zeros((48, 64, 1), np.float32)
        m[10:20, 10:20] = 1
        image.write_image(str(masks / f"m.{f:04d}.png"), m, pixel_type="uint8", channel_names=["Y"])
    output = tmp_path / "o" / "o.####.exr"
    result = run_spec(build_spec(str(movie), str(masks / "m.####.png"), output=output))
    assert (result.frames.first, result.frames.last) == (1, 5)
    frame = image.read_image(str(output).replace("####", "0003"))
    assert frame.pixels.shape == (48, 64, 3) and frame.spec.format == "half"


# -- nothing lost ----------------------------------------------------------------------------


def test_crash_then_resume_computes_only_missing_frames(tmp_path, source_guard):
    files = write_shot(tmp_path / "src", frames=10)
    source_guard(files.folder)
    spec = build_spec(files.plate, files.mask, output=tmp_path / "o" / "o.####.exr")
    reference = run_spec(build_spec(files.plate, files.mask, output=tmp_path / "ref" / "r.####.exr"))

    prepared = prepare_job(spec)
    with pytest.raises(RuntimeError, match="simulated"):
        run_job(prepared, MeanFill(fail_after=6), job_id="j")
    staging = prepared.staging("j")
    staged = sorted(p.name for p in (staging / "output").iterdir())
    assert staged == [f"o.{f:04d}.exr" for f in range(1001, 1007)]
    assert not list((tmp_path / "o").glob("o.*.exr"))  # nothing in place before the end

    again = MeanFill()
    run_job(prepare_job(spec), again, job_id="j")
    assert again.seen == list(range(1007 - again.temporal_context, 1011))  # context, then the missing ones
    assert not staging.exists()
    for a, b in zip(
        frame_paths(reference.output_pattern, 1001, 1010), frame_paths(str(tmp_path / "o" / "o.####.exr"), 1001, 1010)
    ):
        assert np.array_equal(read_pixels(a), read_pixels(b))


def test_segments_stage_only_their_frames_fed_with_context_and_match_one_run(tmp_path, source_guard):
    from voidlink.inference.backends.classical.backend import ClassicalBackend

    files = write_shot(tmp_path / "src", frames=80, width=48, height=32)
    source_guard(files.folder)
    spec = build_spec(files.plate, files.mask, output=tmp_path / "o" / "o.####.exr")
    reference = run_spec(
        build_spec(files.plate, files.mask, output=tmp_path / "ref" / "r.####.exr"), ClassicalBackend()
    )

    fed = MeanFill()
    run_job(prepare_job(spec), fed, job_id="probe", segment=(1021, 1050))
    assert fed.seen == list(range(1021 - fed.temporal_context, 1051 + fed.temporal_context))
    staged = prepare_job(spec).staging("probe")
    assert sorted(p.name for p in (staged / "output").iterdir()) == [f"o.{f:04d}.exr" for f in range(1021, 1051)]
    assert sorted(p.name for p in (staged / "quadmask").iterdir()) == [f"o_quadmask.{f}.png" for f in range(1021, 1051)]
    assert not list((tmp_path / "o").glob("o.*.exr"))

    # Segments in any order, on any backend instance, then the move into place, which renders nothing.
    segments = [(1056, 1080), (1001, 1030), (1031, 1055)]
    notes = []
    for segment in segments:
        part = run_job(prepare_job(spec), ClassicalBackend(), job_id="j", segment=segment)
        notes += part.notes
        if segment == (1001, 1030):
            with pytest.raises(errors.VoidlinkError, match="left frames 1031-1055 unrendered"):
                commit_segments(prepare_job(spec), "j", "classical", notes, {})
    assert not list((tmp_path / "o").glob("o.*.exr"))
    result = commit_segments(prepare_job(spec), "j", "classical", notes, {"frames": 80.0})
    assert result.frames.first == 1001 and result.frames.last == 1080 and result.backend == "classical"
    assert len(result.notes) == len(set(notes))  # each segment's same note said once
    assert not prepare_job(spec).staging("j").exists()
    for a, b in zip(frame_paths(reference.output_pattern, 1001, 1080), frame_paths(result.output_pattern, 1001, 1080)):
        assert np.array_equal(read_pixels(a), read_pixels(b)), f"{b} differs from one run's {a}"
    with pytest.raises(errors.InvalidInput, match="segment 1070-1090 is not inside the job's frames 1001-1080"):
        run_job(prepare_job(spec), MeanFill(), job_id="k", segment=(1070, 1090))


def test_interrupted_commit_is_finished_not_recomputed(shot, tmp_path):
    spec = build_spec(shot.plate, shot.mask, output=tmp_path / "o" / "o.####.exr")
    prepared = prepare_job(spec)
    staging = prepared.staging("j")
    run_job(prepared, MeanFill(), job_id="j")
    # Pretend the daemon died after moving two frames: put the rest back in staging with the marker.
    (staging / "output").mkdir(parents=True)
    for f in range(shot.first + 2, shot.last + 1):
        os.replace(prepared.output.path(f), staging / "output" / os.path.basename(prepared.output.path(f)))
    (staging / COMMIT_MARKER).write_text("{}")
    backend = MeanFill()
    run_job(prepare_job(spec), backend, job_id="j")
    assert backend.seen == []
    assert all(os.path.exists(p) for p in frame_paths(str(tmp_path / "o" / "o.####.exr"), shot.first, shot.last))
    assert not staging.exists()


def test_cancel_keeps_the_earlier_result(shot, tmp_path):
    output = tmp_path / "o" / "o.####.exr"
    run_spec(build_spec(shot.plate, shot.mask, output=output))
    earlier = {p: Path(p).read_bytes() for p in frame_paths(str(output), shot.first, shot.last)}
    calls = []

    def cancelled():
        calls.append(1)
        return len(calls) > 12

    with pytest.raises(errors.JobCancelled):
        run_spec(build_spec(shot.plate, shot.mask, shot.affected, output=output), cancelled=cancelled)
    assert {p: Path(p).read_bytes() for p in earlier} == earlier
    assert not [p for p in output.parent.rglob("*") if p.name.startswith(".")]


# -- bad input -------------------------------------------------------------------------------


def test_missing_frames_are_listed(shot):
    Path(shot.mask.replace("####", "1003")).rename(shot.folder / "aside3.exr")
    Path(shot.mask.replace("####", "1004")).rename(shot.folder / "aside4.exr")
    try:
        with pytest.raises(errors.NotFound) as info:
            prepare_job(build_spec(shot.plate, shot.mask))
        assert info.value.reason == "MISSING_FRAMES" and list(info.value.frames) == [1003, 1004]
        assert "1003-1004" in str(info.value) and info.value.field == "spec.mask"
    finally:
        (shot.folder / "aside3.exr").rename(shot.mask.replace("####", "1003"))
        (shot.folder / "aside4.exr").rename(shot.mask.replace("####", "1004"))


def test_size_mismatch_names_both_files_unless_resampling(tmp_path):
    plate = write_shot(tmp_path / "p", frames=3, width=96, height=64)
    half = write_shot(tmp_path / "h", frames=3, width=48, height=32)
    with pytest.raises(errors.InvalidInput) as info:
        prepare_job(build_spec(plate.plate, half.mask, output=tmp_path / "o" / "o.####.exr"))
    message = str(info.value)
    assert info.value.reason == "SIZE_MISMATCH" and "48x32" in message and "96x64" in message
    assert "mask.1001.exr" in message and "plate.1001.exr" in message
    result = run_spec(build_spec(plate.plate, half.mask, output=tmp_path / "o" / "o.####.exr", resample_mattes=True))
    assert _quadmasks(result)[0].shape == (64, 96)


def test_matte_without_the_channel(shot):
    spec = build_spec(shot.plate, shot.mask)
    spec.mask.channels = "matte.A"
    with pytest.raises(errors.InvalidInput) as info:
        prepare_job(spec)
    assert info.value.reason == "MISSING_CHANNEL" and "matte.A" in str(info.value) and info.value.frame == 1001


def test_empty_range_bad_pattern_and_unknown_colorspace(shot, tmp_path):
    spec = build_spec(shot.plate, shot.mask)
    spec.frames.first, spec.frames.last = 1005, 1002
    with pytest.raises(errors.InvalidInput) as info:
        prepare_job(spec)
    assert info.value.reason == "EMPTY_RANGE"
    spec = build_spec(shot.plate, shot.mask, output=tmp_path / "clean.exr")
    with pytest.raises(errors.InvalidInput) as info:
        prepare_job(spec)
    assert info.value.reason == "BAD_PATTERN" and info.value.field == "spec.output.path_template"
    spec = build_spec(shot.plate, shot.mask)
    spec.source.colorspace = "no such space"
    with pytest.raises(errors.InvalidInput) as info:
        prepare_job(spec)
    assert info.value.field == "spec.source.colorspace"


def test_mask_empty_on_every_frame_writes_nothing(shot, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for f in range(shot.first, shot.last + 1):
        image.write_image(
            str(empty / f"e.{f:04d}.exr"), np.zeros((shot.height, shot.width, 1), np.float32), channel_names=["A"]
        )
    output = tmp_path / "o" / "o.####.exr"
    with pytest.raises(errors.InvalidInput) as info:
        run_spec(build_spec(shot.plate, str(empty / "e.####.exr"), output=output))
    assert info.value.reason == "EMPTY_MASK" and "every frame" in str(info.value)
    assert not output.parent.exists() or not list(output.parent.rglob("*.exr"))


def test_truncated_plate_frame_fails_naming_it(shot, tmp_path):
    bad = Path(shot.plate.replace("####", "1004"))
    data = bad.read_bytes()
    bad.write_bytes(data[:300])
    try:
        with pytest.raises(errors.InvalidInput) as info:
            run_spec(build_spec(shot.plate, shot.mask, output=tmp_path / "o" / "o.####.exr"))
        assert (
            info.value.reason == "UNREADABLE_FILE" and info.value.frame == 1004 and "plate.1004.exr" in str(info.value)
        )
    finally:
        bad.write_bytes(data)


def test_nan_frames_are_reported(tmp_path, source_guard):
    files = write_shot(tmp_path / "src", frames=4)
    path = files.plate.replace("####", "1002")
    pixels = read_pixels(path)
    pixels[20:30, 30:40] = np.inf  # crosses the object's path and the background
    image.write_image(path, pixels)
    source_guard(files.folder)
    result = run_spec(build_spec(files.plate, files.mask, output=tmp_path / "o" / "o.####.exr"))
    assert any("1002" in note and "NaN" in note for note in result.notes)
    out = read_pixels(result.output_pattern.replace("####", "1002"))
    qm = _quadmasks(result)[1]
    outside = quadmask.composite_alpha(qm, 3.0) == 0
    assert np.array_equal(out[outside], pixels[outside])
    assert np.isfinite(out[~outside]).all()


def test_output_colorspace_converts_the_whole_frame(shot, tmp_path):
    spec = build_spec(shot.plate, shot.mask, output=tmp_path / "o" / "o.####.exr", pixel_type="float")
    spec.source.colorspace = "lin_rec709"
    spec.output.colorspace = "ACEScg"
    result = run_spec(spec)
    from voidlink.media import colour

    processor = colour.config().getProcessor("lin_rec709", "ACEScg").getDefaultCPUProcessor()
    plate = read_pixels(shot.plate.replace("####", "1001"))
    expected = np.ascontiguousarray(plate.copy())
    processor.applyRGB(expected)
    out = read_pixels(result.output_pattern.replace("####", "1001"))
    outside = quadmask.composite_alpha(_quadmasks(result)[0], 3.0) == 0
    assert np.allclose(out[outside], expected[outside], atol=1e-6)
    assert not np.allclose(out[outside], plate[outside], atol=1e-3)  # really converted


def test_outputs_carry_the_job_that_wrote_them_and_not_the_plates_record(tmp_path, source_guard):
    # A plate that was itself a voidlink result: its voidlink:* attributes must not reach the new output.
    files = write_shot(tmp_path / "src", frames=3)
    for f in range(files.first, files.last + 1):
        path = files.plate.replace("####", f"{f:04d}")
        buf = oiio.ImageBuf(path)
        buf.specmod().attribute(image.JOB_ATTRIBUTE, "an-older-job")
        buf.specmod().attribute("voidlink:seed", 7)
        assert buf.write(path), buf.geterror()
    source_guard(files.folder)
    output = tmp_path / "out" / "clean.####.exr"
    run_spec(build_spec(files.plate, files.mask, output=output), job_id="job-42")
    for path in frame_paths(str(output), files.first, files.last):
        spec = image.read_spec(path)
        assert spec.getattribute(image.JOB_ATTRIBUTE) == "job-42"
        assert spec.getattribute("voidlink:seed") is None
