"""The job pipeline on real files: validation, composite exactness, staging, resume, cancel.

A small deterministic backend stands in for the real ones so that every pixel the pipeline
writes can be predicted; the real backends have their own tests.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import cv2
import numpy as np
import OpenImageIO as oiio
import pytest
from faults import Killed, crash_mid_commit
from shots import read_pixels, write_shot
from voidlink.bridge import build_spec
from voidlink.inference.backends.base import Backend, BackendResult
from voidlink.inference.job import staging as job_staging
from voidlink.inference.job.control import CancelFlag, NullProgress
from voidlink.inference.job.prepare import prepare_job
from voidlink.inference.job.run import commit_segments, run_job
from voidlink.inference.job.staging import (
    COMMIT_MARKER,
    commit_begun,
    discard_staging,
    discard_staging_of,
    finish_interrupted_commit,
    staging_of,
)
from voidlink.media import image, quadmask
from voidlink.media.quadmask import KEEP
from voidlink.protos import pb

from voidlink import errors


class MeanFill(Backend):
    """Fills every non-KEEP pixel with the mean of the frame's KEEP pixels; records what it saw."""

    name = "meanfill"
    temporal_context = 2

    def __init__(self, working_size=None, fail_after: int | None = None):
        self.working_size = working_size
        self.fail_after = fail_after
        self.seen: list[int] = []
        self.shapes: set[tuple[int, ...]] = set()

    def run(self, frames, request):
        for frame in frames:
            if self.fail_after is not None and len(self.seen) >= self.fail_after:
                raise RuntimeError("simulated crash")
            self.seen.append(frame.index)
            self.shapes.add(frame.image.shape)
            assert frame.image.dtype == np.float32 and frame.quadmask.dtype == np.uint8
            assert set(np.unique(frame.quadmask)) <= {0, 63, 127, 255}
            out = frame.image.copy()
            hole = frame.quadmask != KEEP
            out[hole] = frame.image[~hole].mean(axis=0) if (~hole).any() else 0.5
            yield BackendResult(frame.index, out)

    def notes(self):
        return ["test backend"]


def _frames(pattern: str, first: int, last: int) -> list[str]:
    return [pattern.replace("####", f"{f:04d}") for f in range(first, last + 1)]


def _run(spec: pb.JobSpec, backend: Backend | None = None, job_id: str = "job1", **kw) -> pb.JobResult:
    prepared = prepare_job(spec)
    try:
        return run_job(prepared, backend or MeanFill(), job_id=job_id, **kw)
    except BaseException:
        discard_staging(prepared, job_id)
        raise


def _assert_exact_outside(plate: str, mask_values: list[np.ndarray], out: str, feather: float = 3.0) -> None:
    """Every output frame equals its plate bit for bit wherever the composite alpha is 0."""
    for src, qm, dst in zip(plate, mask_values, out):
        a, b = read_pixels(src), read_pixels(dst)
        outside = quadmask.composite_alpha(qm, feather) == 0
        assert np.array_equal(a[outside], b[outside], equal_nan=True), dst
        assert not np.array_equal(a, b)  # the fill did change something inside


@pytest.fixture
def shot(tmp_path, source_guard):
    files = write_shot(tmp_path / "src", frames=6)
    source_guard(files.folder)
    return files


def _quadmasks(result: pb.JobResult) -> list[np.ndarray]:
    out = []
    for path in _frames(result.quadmask_pattern, result.frames.first, result.frames.last):
        out.append(quadmask.snap(image.read_image(path, matte=True).pixels)[0])
    return out


def test_end_to_end_exact_outside_mask_and_result(shot, tmp_path):
    output = tmp_path / "out" / "clean.####.exr"
    result = _run(build_spec(shot.plate, shot.mask, shot.affected, output=output))
    assert result.output_pattern == str(output)
    assert (result.frames.first, result.frames.last) == (shot.first, shot.last)
    assert result.notes[0] == "test backend" and result.backend == "meanfill"
    qms = _quadmasks(result)
    assert all((q == quadmask.AFFECTED).any() and (q == quadmask.OBJECT).any() for q in qms)
    outs = _frames(str(output), shot.first, shot.last)
    _assert_exact_outside(_frames(shot.plate, shot.first, shot.last), qms, outs)
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
    result = _run(build_spec(str(src / "p.####.exr"), str(src / "m.####.exr"), output=output))
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
    _run(build_spec(shot.plate, shot.mask, output=output, pixel_type="float", compression="piz"))
    spec = image.read_spec(str(output).replace("####", f"{shot.first:04d}"))
    assert spec.format == "float" and spec.getattribute("compression") == "piz"


def test_written_quadmask_read_back_gives_the_same_job(shot, tmp_path):
    first = _run(build_spec(shot.plate, shot.mask, shot.affected, output=tmp_path / "a" / "a.####.exr"))
    again = _run(build_spec(shot.plate, first.quadmask_pattern, output=tmp_path / "b" / "b.####.exr", quadmask=True))
    for a, b in zip(
        _frames(str(tmp_path / "a" / "a.####.exr"), shot.first, shot.last),
        _frames(again.output_pattern, shot.first, shot.last),
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
    result = _run(build_spec(files.plate, str(masks / "m.####.exr"), output=tmp_path / "o" / "o.####.exr"), backend)
    assert backend.shapes == {(64, 96, 3)}
    assert result.metrics["crop_width"] < 320  # cropped around the object, not the whole frame
    assert result.metrics["crop_width"] / result.metrics["crop_height"] == pytest.approx(96 / 64, rel=0.03)
    _assert_exact_outside(
        _frames(files.plate, files.first, files.last),
        _quadmasks(result),
        _frames(result.output_pattern, files.first, files.last),
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
    result = _run(build_spec(str(movie), str(masks / "m.####.png"), output=output))
    assert (result.frames.first, result.frames.last) == (1, 5)
    frame = image.read_image(str(output).replace("####", "0003"))
    assert frame.pixels.shape == (48, 64, 3) and frame.spec.format == "half"


# -- nothing lost ----------------------------------------------------------------------------


def test_crash_then_resume_computes_only_missing_frames(tmp_path, source_guard):
    files = write_shot(tmp_path / "src", frames=10)
    source_guard(files.folder)
    spec = build_spec(files.plate, files.mask, output=tmp_path / "o" / "o.####.exr")
    reference = _run(build_spec(files.plate, files.mask, output=tmp_path / "ref" / "r.####.exr"))

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
        _frames(reference.output_pattern, 1001, 1010), _frames(str(tmp_path / "o" / "o.####.exr"), 1001, 1010)
    ):
        assert np.array_equal(read_pixels(a), read_pixels(b))


def test_segments_stage_only_their_frames_fed_with_context_and_match_one_run(tmp_path, source_guard):
    from voidlink.inference.backends.classical.backend import ClassicalBackend

    files = write_shot(tmp_path / "src", frames=80, width=48, height=32)
    source_guard(files.folder)
    spec = build_spec(files.plate, files.mask, output=tmp_path / "o" / "o.####.exr")
    reference = _run(build_spec(files.plate, files.mask, output=tmp_path / "ref" / "r.####.exr"), ClassicalBackend())

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
    for a, b in zip(_frames(reference.output_pattern, 1001, 1080), _frames(result.output_pattern, 1001, 1080)):
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
    assert all(os.path.exists(p) for p in _frames(str(tmp_path / "o" / "o.####.exr"), shot.first, shot.last))
    assert not staging.exists()


def test_cancel_keeps_the_earlier_result(shot, tmp_path):
    output = tmp_path / "o" / "o.####.exr"
    _run(build_spec(shot.plate, shot.mask, output=output))
    earlier = {p: Path(p).read_bytes() for p in _frames(str(output), shot.first, shot.last)}
    calls = []

    def cancelled():
        calls.append(1)
        return len(calls) > 12

    with pytest.raises(errors.JobCancelled):
        _run(build_spec(shot.plate, shot.mask, shot.affected, output=output), cancelled=cancelled)
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
    result = _run(build_spec(plate.plate, half.mask, output=tmp_path / "o" / "o.####.exr", resample_mattes=True))
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
        _run(build_spec(shot.plate, str(empty / "e.####.exr"), output=output))
    assert info.value.reason == "EMPTY_MASK" and "every frame" in str(info.value)
    assert not output.parent.exists() or not list(output.parent.rglob("*.exr"))


def test_truncated_plate_frame_fails_naming_it(shot, tmp_path):
    bad = Path(shot.plate.replace("####", "1004"))
    data = bad.read_bytes()
    bad.write_bytes(data[:300])
    try:
        with pytest.raises(errors.InvalidInput) as info:
            _run(build_spec(shot.plate, shot.mask, output=tmp_path / "o" / "o.####.exr"))
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
    result = _run(build_spec(files.plate, files.mask, output=tmp_path / "o" / "o.####.exr"))
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
    result = _run(spec)
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
    _run(build_spec(files.plate, files.mask, output=output), job_id="job-42")
    for path in _frames(str(output), files.first, files.last):
        spec = image.read_spec(path)
        assert spec.getattribute(image.JOB_ATTRIBUTE) == "job-42"
        assert spec.getattribute("voidlink:seed") is None


# -- what voidlink may write over, and the commit ---------------------------------------------


def _jobs(pattern: str, first: int, last: int) -> list:
    """The voidlink job recorded in each frame's header (None: not voidlink's)."""
    return [image.job_of(p) for p in _frames(pattern, first, last)]


def test_output_over_files_voidlink_did_not_write_is_refused_unless_overwrite(shot, tmp_path, source_guard):
    import shutil

    from shots import write_exr

    output = tmp_path / "o" / "o.####.exr"
    output.parent.mkdir()
    other = write_shot(tmp_path / "sh020", frames=6)  # another shot's plates sit where this job would write
    for frame in range(shot.first, shot.last + 1):
        shutil.copy(other.plate.replace("####", f"{frame:04d}"), str(output).replace("####", f"{frame:04d}"))
    with pytest.raises(errors.OutputExists) as info:
        prepare_job(build_spec(shot.plate, shot.mask, output=output))
    error = info.value
    first = str(output).replace("####", f"{shot.first:04d}")
    assert error.reason == "OUTPUT_EXISTS" and error.grpc_code == "FAILED_PRECONDITION"
    assert error.field == "spec.output.path_template" and error.file == first and error.frame == shot.first
    assert error.frames == list(range(shot.first, shot.last + 1))
    assert f"{first} (frame {shot.first}) exists and was not written by voidlink, and 5 more" in str(error)
    assert "Choose another output, or pass --overwrite" in str(error)

    # A folder, a text file, a link (even to a voidlink result) or an unreadable image are not voidlink's either.
    taken = tmp_path / "t" / "t.####.exr"
    done = _run(build_spec(shot.plate, shot.mask, output=tmp_path / "v" / "v.####.exr"), job_id="v")
    for make in (
        lambda p: p.mkdir(),
        lambda p: p.write_text("notes"),
        lambda p: p.symlink_to(done.output_pattern.replace("####", "1001")),
        lambda p: write_exr(p, np.zeros((4, 4, 3), np.float32)),
    ):
        shutil.rmtree(taken.parent, ignore_errors=True)
        taken.parent.mkdir()
        make(Path(str(taken).replace("####", "1003")))
        with pytest.raises(errors.OutputExists, match=r"t\.1003\.exr \(frame 1003\) exists"):
            prepare_job(build_spec(shot.plate, shot.mask, output=taken))

    # The side outputs follow the same rule: a hand-made quadmask is kept.
    side = tmp_path / "v" / "quadmask" / "v_quadmask.1002.png"
    hand = image.read_image(str(side), matte=True).pixels
    image.write_image(str(side), hand, pixel_type="uint8", channel_names=["Y"])
    with pytest.raises(errors.OutputExists) as info:
        prepare_job(build_spec(shot.plate, shot.mask, output=tmp_path / "v" / "v.####.exr"))
    assert info.value.field == "spec.output.quadmask_template" and info.value.file == str(side)

    # overwrite=True replaces them; every file the job writes then carries its id, so a re-run needs nothing.
    source_guard(other.folder)
    _run(build_spec(shot.plate, shot.mask, output=output, overwrite=True), job_id="a")
    assert _jobs(str(output), shot.first, shot.last) == ["a"] * 6
    result = _run(build_spec(shot.plate, shot.mask, output=output), job_id="b")
    assert _jobs(str(output), shot.first, shot.last) == ["b"] * 6
    assert _jobs(result.quadmask_pattern, shot.first, shot.last) == ["b"] * 6
    spec = build_spec(shot.plate, shot.mask, output=tmp_path / "r" / "r.####.exr")
    spec.output.write_raw = True
    raw = _run(spec, job_id="d")
    assert _jobs(raw.raw_pattern, shot.first, shot.last) == ["d"] * 6

    # overwrite never lets a job write its own sources.
    with pytest.raises(errors.PermissionDenied) as info:
        prepare_job(build_spec(shot.plate, shot.mask, output=shot.plate, overwrite=True))
    assert info.value.reason == "OUTPUT_OVERWRITES_SOURCE"


class _Intruder(MeanFill):
    """Another program writes a file at one of the job's output names while the job renders."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def run(self, frames, request):
        from shots import write_exr

        for i, result in enumerate(super().run(frames, request)):
            if i == 0:
                write_exr(Path(self.path), np.ones((4, 4, 3), np.float32))
            yield result


def test_a_file_appearing_while_the_job_runs_is_not_overwritten(shot, tmp_path):
    output = tmp_path / "o" / "o.####.exr"
    intruder = str(output).replace("####", "1004")
    with pytest.raises(errors.OutputExists) as info:
        _run(build_spec(shot.plate, shot.mask, output=output), _Intruder(intruder))
    assert info.value.file == intruder and "appeared after the job was submitted" in str(info.value)
    assert image.job_of(intruder) is None and read_pixels(intruder).shape == (4, 4, 3)
    assert sorted(p.name for p in output.parent.iterdir()) == ["o.1004.exr"]  # nothing moved, no staging left


class _CancelAt(NullProgress):
    def __init__(self, flag: CancelFlag, stage: str):
        self.flag, self.at, self.answers = flag, stage, []

    def stage(self, name: str, message: str = "") -> None:
        if name == self.at:
            self.answers.append(self.flag.cancel())


def test_a_cancel_stops_a_job_before_its_commit_and_not_after(shot, tmp_path, monkeypatch):
    output = tmp_path / "o" / "o.####.exr"
    _run(build_spec(shot.plate, shot.mask, output=output), job_id="a")
    earlier = {p: Path(p).read_bytes() for p in _frames(str(output), shot.first, shot.last)}

    # Cancelled after the last frame, before the move: nothing moved, staging removed.
    flag = CancelFlag()
    progress = _CancelAt(flag, "commit")
    with pytest.raises(errors.JobCancelled):
        _run(build_spec(shot.plate, shot.mask, output=output), job_id="b", cancelled=flag, progress=progress)
    assert progress.answers == [True]
    assert {p: Path(p).read_bytes() for p in earlier} == earlier
    assert not [p for p in output.parent.rglob("*") if p.name.startswith(".")]

    # Cancelled during the move: refused, and the move is finished.
    flag = CancelFlag()
    answers = []
    move = job_staging._move

    def cancel_then_move(staged, final):
        answers.append(flag.cancel())
        move(staged, final)

    monkeypatch.setattr(job_staging, "_move", cancel_then_move)
    _run(build_spec(shot.plate, shot.mask, output=output), job_id="c", cancelled=flag)
    assert answers and not any(answers) and flag.committing
    assert _jobs(str(output), shot.first, shot.last) == ["c"] * 6


def test_an_interrupted_commit_is_finished_from_the_spec_alone(shot, tmp_path, monkeypatch):
    output = tmp_path / "o" / "o.####.exr"
    _run(build_spec(shot.plate, shot.mask, output=output), job_id="a")
    spec = build_spec(shot.plate, shot.mask, output=output)
    crash_mid_commit(monkeypatch, 4)
    with pytest.raises(Killed):
        run_job(prepare_job(spec), MeanFill(), job_id="b")
    monkeypatch.undo()
    assert _jobs(str(output), shot.first, shot.last) == ["b"] * 4 + ["a"] * 2  # the mix a crash leaves
    assert commit_begun(spec, "b")
    assert not discard_staging_of(spec, "b")  # a begun move is never thrown away
    result = finish_interrupted_commit(spec, "b")
    assert result is not None and result.backend == "meanfill" and result.metrics["frames"] == 6
    assert _jobs(str(output), shot.first, shot.last) == ["b"] * 6
    assert _jobs(result.quadmask_pattern, shot.first, shot.last) == ["b"] * 6
    assert not staging_of(spec, "b").exists()
    assert finish_interrupted_commit(spec, "b") is None  # nothing left to do


def test_scheduler_cancel_of_a_queued_job_removes_its_staging_unless_its_commit_began(shot, tmp_path, monkeypatch):
    from voidlink.inference.backends import BackendRegistry
    from voidlink.inference.events import EventBus
    from voidlink.inference.scheduler import Scheduler
    from voidlink.inference.store import JobStore

    store = JobStore(tmp_path / "jobs.sqlite")
    scheduler = Scheduler(store, EventBus(), BackendRegistry())  # not started: the jobs stay queued
    output = tmp_path / "o" / "o.####.exr"
    _run(build_spec(shot.plate, shot.mask, output=output), job_id="earlier")
    earlier = {p: Path(p).read_bytes() for p in _frames(str(output), shot.first, shot.last)}

    # Queued again after a restart, with half its frames staged: the cancel takes the staging folder too.
    spec = build_spec(shot.plate, shot.mask, output=output)
    job = store.add(spec)
    run_job(prepare_job(spec), MeanFill(), job_id=job.id, segment=(shot.first, shot.first + 2))
    assert staging_of(spec, job.id).is_dir()
    assert scheduler.cancel(job.id).state == pb.JOB_STATE_CANCELLED
    assert not staging_of(spec, job.id).exists()
    assert {p: Path(p).read_bytes() for p in earlier} == earlier

    # Its commit began before the restart: the cancel is refused and start-up finishes the move.
    job = store.add(spec)
    crash_mid_commit(monkeypatch, 3)
    with pytest.raises(Killed):
        run_job(prepare_job(spec), MeanFill(), job_id=job.id)
    monkeypatch.undo()
    refused = scheduler.cancel(job.id)
    assert refused.state == pb.JOB_STATE_QUEUED and refused.message.startswith("too late to cancel")
    assert scheduler.recover() == [job.id]
    final = store.get(job.id)
    assert final.state == pb.JOB_STATE_SUCCEEDED and final.result.output_pattern == str(output)
    assert _jobs(str(output), shot.first, shot.last) == [job.id] * 6
    assert scheduler.cancel(job.id).state == pb.JOB_STATE_SUCCEEDED
    store.close()


def test_prepare_job_hands_the_prepared_job_to_the_confinement_it_is_given(shot, tmp_path):
    from voidlink.inference.job.prepare import Confinement, prepare_job

    spec = build_spec(shot.plate, shot.mask, output=tmp_path / "o" / "o.####.exr")
    seen, opened = [], []
    prepared = prepare_job(spec, guard=Confinement(seen.append, lambda real, *where: opened.append(real)))
    assert seen == [prepared]
    # Each file the job reads is checked as it is opened, by the job's own confinement (no module state).
    assert opened and all(path.endswith(".exr") for path in opened)
    prepared.source.read(shot.first)
    assert opened[-1] == os.path.realpath(shot.plate.replace("####", f"{shot.first:04d}"))

    def refuse(job):
        raise errors.PermissionDenied(f"{job.output.directory} is outside the roots", reason="OUTSIDE_ROOTS")

    with pytest.raises(errors.PermissionDenied):
        prepare_job(spec, guard=Confinement(refuse, lambda *args: None))
    assert prepare_job(spec).first == shot.first  # no guard: not confined


def test_a_job_is_prepared_once_the_scheduler_runs_the_job_prepared_at_submission(shot, tmp_path, monkeypatch):
    from voidlink.inference import scheduler as scheduler_module
    from voidlink.inference.backends import BackendRegistry
    from voidlink.inference.events import EventBus
    from voidlink.inference.scheduler import Scheduler
    from voidlink.inference.store import JobStore

    prepared_again = []
    prepare = prepare_job

    def counting(spec, *, guard=None):
        prepared_again.append(spec.output.path_template)
        return prepare(spec, guard=guard)

    monkeypatch.setattr(scheduler_module, "prepare_job", counting)  # what the scheduler prepares with
    store = JobStore(tmp_path / "jobs.sqlite")
    scheduler = Scheduler(store, EventBus(), BackendRegistry())
    try:
        # Submitted: the job prepared then is the one that runs.
        spec = build_spec(shot.plate, shot.mask, output=tmp_path / "a" / "a.####.exr", backend="classical")
        prepared = prepare(spec)
        job = scheduler.submit(lambda: store.add(spec, frames_total=len(prepared.frames)), prepared)
        assert job is not None and job.id in scheduler.prepared
        # Cancelled in the queue: its prepared job is dropped with it.
        other = build_spec(shot.plate, shot.mask, output=tmp_path / "b" / "b.####.exr", backend="classical")
        cancelled = scheduler.submit(lambda: store.add(other), prepare(other))
        assert scheduler.cancel(cancelled.id).state == pb.JOB_STATE_CANCELLED
        assert cancelled.id not in scheduler.prepared
        # Queued before a restart (nothing handed in): prepared when it runs, as the disk may have changed.
        again = build_spec(shot.plate, shot.mask, output=tmp_path / "c" / "c.####.exr", backend="classical")
        restarted = store.add(again)
        # Not queued after all (`add` says so): the prepared job is closed, not kept.
        assert scheduler.submit(lambda: None, prepare(again)) is None and len(scheduler.prepared) == 1
        scheduler.start()
        for job_id in (job.id, restarted.id):
            for _ in range(600):
                if store.get(job_id).state == pb.JOB_STATE_SUCCEEDED:
                    break
                assert store.get(job_id).state in (pb.JOB_STATE_QUEUED, pb.JOB_STATE_RUNNING)
                time.sleep(0.05)
            assert store.get(job_id).state == pb.JOB_STATE_SUCCEEDED
        assert prepared_again == [again.output.path_template]
        assert len(scheduler.prepared) == 0
    finally:
        scheduler.stop()
        store.close()
