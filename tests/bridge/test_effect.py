"""The OpenFX-style effect model: descriptors, parameter checks, frame ranges, JobSpec, results."""

from __future__ import annotations

import os

import opentimelineio as otio
import pytest
from support.shots import write_shot
from voidlink.bridge import effect
from voidlink.bridge.effect import ClipInput, RemoveEffect
from voidlink.bridge.result import result_or_raise
from voidlink.bridge.spec import build_spec
from voidlink.protos import pb
from voidlink.protos.clips import clip_media

from voidlink import errors


def _effect(folder: str = "/shots/sh010", **overrides) -> RemoveEffect:
    values = dict(
        source=ClipInput(f"{folder}/plate.####.exr", 1001, 1100, 1920, 1080, label="Read1"),
        mask=ClipInput(f"{folder}/roto.%04d.exr", 1001, 1100, 1920, 1080, label="Read2"),
        output=f"{folder}/void/clean.####.exr",
        where="VoidRemove1",
    )
    values.update(overrides)
    return RemoveEffect(**values)


def test_the_effect_declares_its_clips_and_params():
    clips = {clip.name: clip for clip in effect.CLIPS}
    assert list(clips) == ["Source", "Mask", "Affected", "Output"]
    assert clips["Affected"].optional and not clips["Mask"].optional
    assert clips["Mask"].is_mask and clips["Output"].is_output
    names = {param.name for param in effect.PARAMS}
    for expected in (
        "prompt",
        "backend",
        "passes",
        "steps",
        "guidance",
        "seed",
        "quality",
        "crop_mode",
        "mask_threshold",
        "mask_dilate",
        "mask_feather",
        "handles",
    ):
        assert expected in names
    for param in effect.PARAMS:  # every default passes its own check
        assert effect.check_param(param.name, param.default) == param.default


def test_job_spec_carries_clips_as_otio_params_and_output():
    spec = _effect(
        affected=ClipInput("/shots/sh010/shadow.####.exr", 1001, 1100, 1920, 1080),
        frames=(1010, 1020),
        params={
            "prompt": "an empty road",
            "backend": "classical",
            "seed": 42,
            "quality": "best",
            "crop_mode": "shot",
            "mask_dilate": 3,
            "mask_feather": 2.5,
            "mask_threshold": 0.25,
            "steps": 30,
        },
        labels={"node": "VoidRemove1"},
    ).to_job_spec()
    assert (spec.frames.first, spec.frames.last) == (1010, 1020)
    source = clip_media(spec.source.otio_json)
    assert (source.path, source.first, source.last) == ("/shots/sh010/plate.####.exr", 1010, 1020)
    clip = otio.adapters.read_from_string(spec.mask.otio_json, "otio_json")
    assert isinstance(clip.media_reference, otio.schema.ImageSequenceReference)
    assert clip.media_reference.start_frame == 1010
    assert spec.mask.matte.dilate == 3 and spec.mask.matte.feather == 2.5
    assert spec.mask.matte.threshold == pytest.approx(0.25)
    assert spec.affected.matte.dilate == 3 and clip_media(spec.affected.otio_json).path.endswith("shadow.####.exr")
    assert spec.params.prompt == "an empty road" and spec.params.backend == "classical"
    assert spec.params.HasField("seed") and spec.params.seed == 42
    assert spec.params.quality == pb.QUALITY_BEST and spec.params.crop_mode == pb.CROP_MODE_SHOT
    assert spec.params.steps == 30
    assert spec.output.path_template == "/shots/sh010/void/clean.####.exr"
    assert spec.labels["node"] == "VoidRemove1"


def test_default_seed_is_unset_and_range_defaults_to_the_source():
    spec = _effect().to_job_spec()
    assert not spec.params.HasField("seed")
    assert (spec.frames.first, spec.frames.last) == (1001, 1100)
    assert not spec.affected.otio_json


def test_handles_widen_the_range_and_must_fit_the_input():
    spec = _effect(frames=(1010, 1020), params={"handles": 5}).to_job_spec()
    assert (spec.frames.first, spec.frames.last) == (1005, 1025)
    with pytest.raises(errors.InvalidInput) as caught:
        _effect(frames=(1003, 1020), params={"handles": 5}).validate()
    assert caught.value.reason == "FRAME_RANGE_OUTSIDE_SOURCE"
    assert "998-1025" in str(caught.value) and "5 handle frames" in str(caught.value)
    assert caught.value.frames == [998]


def test_frame_range_outside_an_input_names_the_clip():
    with pytest.raises(errors.InvalidInput) as caught:
        _effect(frames=(1090, 1110)).validate()
    message = str(caught.value)
    assert caught.value.reason == "FRAME_RANGE_OUTSIDE_SOURCE"
    assert "VoidRemove1" in message and "Read1" in message and "1001-1100" in message
    with pytest.raises(errors.InvalidInput, match="empty"):
        _effect(frames=(1020, 1010)).validate()


def test_bad_params_are_refused_by_name():
    for params, fragment in (
        ({"backend": "magic"}, "backend"),
        ({"passes": 3}, "above its maximum"),
        ({"steps": 2.5}, "steps"),
        ({"guidance": "lots"}, "guidance"),
        ({"typo_param": 1}, "unknown parameter 'typo_param'"),
        ({"resample_mattes": "maybe"}, "resample_mattes"),
    ):
        with pytest.raises(errors.InvalidInput, match=fragment):
            _effect(params=params).to_job_spec()


def test_boolean_params_read_words_not_truthiness():
    assert effect.check_param("quadmask", "false") is False
    assert effect.check_param("quadmask", "Yes") is True
    assert effect.check_param("resample_mattes", 1) is True
    with pytest.raises(errors.InvalidInput, match="quadmask"):
        effect.check_param("quadmask", 2)


def test_missing_clips_are_refused():
    with pytest.raises(errors.InvalidInput, match="no plate") as caught:
        _effect(source=None).validate()
    assert caught.value.reason == "NO_SOURCE"
    with pytest.raises(errors.InvalidInput, match="no object matte"):
        _effect(mask=None).validate()


def test_matte_of_another_format_is_refused_unless_resampled():
    small = ClipInput("/shots/sh010/roto.####.exr", 1001, 1100, 960, 540, label="Roto1")
    with pytest.raises(errors.InvalidInput) as caught:
        _effect(mask=small).validate()
    assert caught.value.reason == "SIZE_MISMATCH"
    assert "Roto1 is 960x540" in str(caught.value) and "1920x1080" in str(caught.value)
    spec = _effect(mask=small, params={"resample_mattes": True}).to_job_spec()
    assert spec.params.resample_mattes


def test_output_onto_the_plates_is_refused(tmp_path):
    shot = write_shot(tmp_path / "plates", frames=3)
    plate = ClipInput(shot.plate, shot.first, shot.last)
    mask = ClipInput(shot.mask, shot.first, shot.last)
    for output in (shot.plate, str(shot.folder / "plate.%04d.exr"), str(shot.folder / "mask.####.exr")):
        with pytest.raises(errors.PermissionDenied) as caught:
            RemoveEffect(plate, mask, output).validate()
        assert caught.value.reason == "OUTPUT_OVERWRITES_SOURCE"
        assert caught.value.frame == shot.first
    # Inside the source folder but under another name is fine: nothing gets overwritten.
    assert RemoveEffect(plate, mask, str(shot.folder / "clean.####.exr")).validate() == (shot.first, shot.last)
    with pytest.raises(errors.InvalidInput, match="no frame number"):
        RemoveEffect(plate, mask, str(tmp_path / "clean.exr")).validate()


def test_output_onto_files_behind_a_rendered_input_is_refused(tmp_path):
    # A host renders a graded plate to its own sequence; the Read behind it is still a source.
    shot = write_shot(tmp_path / "plates", frames=3)
    rendered = ClipInput(str(tmp_path / "render" / "plate.####.exr"), shot.first, shot.last)
    mask = ClipInput(shot.mask, shot.first, shot.last)
    upstream = ClipInput(shot.plate, shot.first, shot.last, label="Read1")
    with pytest.raises(errors.PermissionDenied) as caught:
        RemoveEffect(rendered, mask, shot.plate, protected=[upstream]).validate()
    assert "input Read1" in str(caught.value) and caught.value.file.endswith(f"plate.{shot.first:04d}.exr")
    assert RemoveEffect(rendered, mask, shot.plate).validate() == (shot.first, shot.last)


def test_result_from_a_job_gives_patterns_frames_and_otio():
    job = pb.Job(id="j1", state=pb.JOB_STATE_SUCCEEDED)
    job.result.output_pattern = "/out/clean.####.exr"
    job.result.frames.first, job.result.frames.last = 1001, 1003
    job.result.otio_json = otio.adapters.write_to_string(otio.schema.Clip(name="clean"), "otio_json")
    result = result_or_raise(job)
    assert result.printf_pattern == "/out/clean.%04d.exr"
    assert result.frame_paths() == ["/out/clean.1001.exr", "/out/clean.1002.exr", "/out/clean.1003.exr"]
    assert result.otio_clip().name == "clean"
    failed = pb.Job(id="j2", state=pb.JOB_STATE_FAILED)
    failed.error.reason, failed.error.message = "MISSING_FRAMES", "frame 1002 missing"
    with pytest.raises(errors.JobFailed, match="frame 1002 missing"):
        result_or_raise(failed)
    with pytest.raises(errors.JobCancelled):
        result_or_raise(pb.Job(id="j3", state=pb.JOB_STATE_CANCELLED))


def test_effect_job_runs_on_the_daemon(daemon, tmp_path, source_guard):
    shot = write_shot(tmp_path / "shot", frames=4)
    source_guard(shot.folder)
    job_effect = RemoveEffect(
        ClipInput(shot.plate, shot.first, shot.last, shot.width, shot.height),
        ClipInput(shot.mask, shot.first, shot.last, shot.width, shot.height),
        str(tmp_path / "out" / "clean.####.exr"),
        affected=ClipInput(shot.affected, shot.first, shot.last),
        frames=(shot.first + 1, shot.last),
        params={"backend": "classical", "prompt": "empty"},
    )
    client = daemon.client()
    job = client.wait(client.submit(job_effect.to_job_spec()).id)
    result = result_or_raise(job)
    assert (result.first, result.last) == (shot.first + 1, shot.last)
    assert [os.path.exists(path) for path in result.frame_paths()] == [True] * 3
    assert not os.path.exists(str(tmp_path / "out" / f"clean.{shot.first:04d}.exr"))
    media = clip_media(result.otio_json)
    assert (media.first, media.last) == (shot.first + 1, shot.last)


def test_the_effect_builds_what_build_spec_builds_with_one_set_of_defaults(tmp_path):
    """One spec builder: an effect left at its defaults asks for exactly what `build_spec` does."""
    plate, mask = str(tmp_path / "plate.####.exr"), str(tmp_path / "roto.####.exr")
    output = str(tmp_path / "void" / "clean.####.exr")
    from_effect = RemoveEffect(ClipInput(plate, 1001, 1010), ClipInput(mask, 1001, 1010), output).to_job_spec()
    assert from_effect == build_spec(plate, mask, frames=(1001, 1010), output=output)
    assert from_effect.mask.matte.threshold == pytest.approx(0.5) and not from_effect.params.HasField("seed")
    tuned = RemoveEffect(
        ClipInput(plate, 1001, 1010, label="Read1", rate=25.0),
        ClipInput(mask, 1001, 1010),
        output,
        params={"seed": 7, "mask_threshold": 0.25, "quality": "best"},
        labels={"shot": "sh010"},
    ).to_job_spec()
    assert tuned.params.seed == 7 and tuned.mask.matte.threshold == pytest.approx(0.25)
    assert tuned.labels["shot"] == "sh010" and clip_media(tuned.source.otio_json).rate == 25.0


def test_every_effect_parameter_reaches_the_job():
    """The parameters build_spec takes by keyword are all in the effect's table; the rest go positionally
    (prompt, backend) or widen the range (handles)."""
    by_keyword = set(effect.BUILD_SPEC_KEYWORDS.values())
    assert {param.name for param in effect.PARAMS} - by_keyword == {"prompt", "backend", "handles"}
