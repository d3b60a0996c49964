"""The VOID backend on tiny random models (CPU): geometry, segments, progress, cancel, OOM, pass 2, a real job."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from support.tiny_void import TINY_SETTINGS, feed, request, shot, tiny_backend, tiny_pipeline
from voidlink.inference.backends import base
from voidlink.inference.backends.void import backend as void_backend
from voidlink.inference.backends.void import helpers, memory, weights
from voidlink.inference.backends.void.backend import VoidBackend
from voidlink.inference.backends.void.geometry import Geometry
from voidlink.inference.backends.void.pipeline import VoidPipeline

from voidlink.errors import InvalidInput, NotFound, VoidlinkError

# Windows of 5 frames (2 latent), 13 frames at most per call, segments overlapping by 4 frames.


# -- geometry --------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(1920, 1080), (2048, 1556), (2048, 858), (1080, 1920), (672, 384), (100, 40)])
def test_geometry_keeps_the_aspect(size):
    g = Geometry.for_size(size, 672 * 384)
    assert g.padded[0] % 16 == 0 and g.padded[1] % 16 == 0
    assert 0 <= g.padded[0] - g.scaled[0] < 16 and 0 <= g.padded[1] - g.scaled[1] < 16
    # The aspect is kept to the rounding of one pixel; the area is the reference's.
    assert abs(g.scaled[0] / g.scaled[1] - size[0] / size[1]) < 2.0 / g.scaled[1] * size[0] / size[1]
    assert abs(g.scaled[0] * g.scaled[1] / (672 * 384) - 1) < 0.02
    if size == (672, 384):
        assert g.scaled == g.padded == size
    image = np.random.default_rng(0).random((size[1], size[0], 3), dtype=np.float32)
    qm = np.full(size[::-1], 255, np.uint8)
    qm[: size[1] // 2, : size[0] // 3] = 0
    model_image, model_mask = g.to_model(image, qm)
    assert model_image.shape == (g.padded[1], g.padded[0], 3) and model_mask.shape == g.padded[::-1]
    assert set(np.unique(model_mask)) <= {0, 63, 127, 255}
    # Padding is "keep" and repeats the last column / row of the scaled frame.
    assert (model_mask[g.scaled[1] :] == 255).all() and (model_mask[:, g.scaled[0] :] == 255).all()
    if g.padded[0] > g.scaled[0]:
        np.testing.assert_array_equal(model_image[:, -1], model_image[:, g.scaled[0] - 1])
    back = g.from_model(model_image)
    assert back.shape == image.shape and back.dtype == np.float32


# -- runs ------------------------------------------------------------------------------------------


def test_results_per_frame_in_order_deterministic_with_notes():
    images, masks = shot(9)
    backend = tiny_backend()
    messages: list[str] = []
    req = request(9, on_message=messages.append, seed=3)
    results = list(backend.run(feed(images, masks), req))
    assert [r.index for r in results] == list(range(1001, 1010))
    assert all(r.image.shape == (32, 48, 3) and r.image.dtype == np.float32 for r in results)
    assert all(0.0 <= r.image.min() and r.image.max() <= 1.0 for r in results)
    # Progress per step and per window: 9 frames pad to 13 → 4 latent frames → 3 windows of 2.
    steps = [m for m in messages if ": step " in m]
    assert steps == [f"VOID frames 1001-1009, pass 1: step {s}/2, window {w}/3" for s in (1, 2) for w in (1, 2, 3)]
    assert any("48x32 region at 48x32" in n for n in req.notes)
    again = list(backend.run(feed(images, masks), request(9, seed=3)))
    other = list(backend.run(feed(images, masks), request(9, seed=4)))
    for a, b in zip(results, again):
        np.testing.assert_array_equal(a.image, b.image)
    assert not all(np.array_equal(a.image, b.image) for a, b in zip(results, other))


def test_long_shot_segments_blend_across_the_overlap(monkeypatch):
    """30 frames with 13 per call: three segments; the shared frames are cross-faded linearly."""
    images, masks = shot(30)
    calls: list[np.ndarray] = []
    original = VoidPipeline.__call__

    def recording(self, video, quadmask, **kwargs):
        out = original(self, video, quadmask, **kwargs)
        calls.append(out.frames.copy())
        return out

    monkeypatch.setattr(VoidPipeline, "__call__", recording)
    backend = tiny_backend()
    req = request(30)
    results = list(backend.run(feed(images, masks), req))
    assert [r.index for r in results] == list(range(1001, 1031))
    segments = helpers.segment_spans(30, 13, 4)
    assert len(calls) == len(segments) == 3
    assert any("3 overlapping segments" in n for n in req.notes)
    for number, segment in enumerate(segments):
        assert len(calls[number]) == segment.end - segment.start
    # A frame only one segment covers is that segment's result (the geometry is the identity here).
    np.testing.assert_array_equal(results[0].image, calls[0][0])
    second = segments[1]
    ramp = helpers.segment_weights(second.blend_in)
    for k in range(second.blend_in):
        frame = second.start + k
        expected = (1 - ramp[k]) * calls[0][frame - segments[0].start] + ramp[k] * calls[1][k]
        np.testing.assert_allclose(results[frame].image, expected, atol=1e-6)


def test_cancel_mid_run_stops_between_steps():
    images, masks = shot(9)
    backend = tiny_backend()
    seen: list[str] = []
    req = request(9, on_message=seen.append, cancelled=lambda: sum(": step " in m for m in seen) >= 2)
    req.steps = 10
    out = []
    with pytest.raises(base.Cancelled):
        for result in backend.run(feed(images, masks), req):
            out.append(result)
    assert out == [] and sum(": step " in m for m in seen) == 2
    # The resident model serves the next job.
    assert len(list(backend.run(feed(images, masks), request(9)))) == 9


def test_out_of_memory_retries_once_in_auto_and_fails_with_advice_otherwise(monkeypatch):
    images, masks = shot(5)
    backend = tiny_backend(memory_mode="auto")
    assert backend.mode == "full"  # CPU: nothing to offload to
    forward = type(backend.pipe.transformer).forward
    failures = {"left": 1}

    def flaky(self, *args, **kwargs):
        if failures["left"]:
            failures["left"] -= 1
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(type(backend.pipe.transformer), "forward", flaky)
    req = request(5)
    assert len(list(backend.run(feed(images, masks), req))) == 5
    assert "CUDA ran out of memory in memory mode full; retried in offload." in req.notes
    assert "VOID ran in memory mode full (on the CPU)." in req.notes
    assert backend.mode == "offload"

    fixed = tiny_backend(memory_mode="offload_fp8")
    failures["left"] = 5
    monkeypatch.setattr(type(fixed.pipe.transformer), "forward", flaky)
    with pytest.raises(VoidlinkError) as caught:
        list(fixed.run(feed(images, masks), request(5)))
    message = str(caught.value)
    assert caught.value.reason == "GPU_OUT_OF_MEMORY"
    assert "VOIDLINK_VOID_MEMORY=sequential" in message and "smaller crop" in message
    failures["left"] = 0
    assert len(list(fixed.run(feed(images, masks), request(5)))) == 5  # still serving


def test_long_prompt_is_truncated_with_a_warning():
    images, masks = shot(5)
    backend = tiny_backend()
    req = request(5)
    req.prompt = "a very long description of the room " * 5
    list(backend.run(feed(images, masks), req))
    warnings = [n for n in req.notes if n.startswith("Warning: the prompt is longer than T5 reads (8 tokens)")]
    assert len(warnings) == 1


def test_bad_frames_are_named():
    images, masks = shot(3)
    backend = tiny_backend()
    bad = [base.BackendFrame(1001, images[0], masks[0]), base.BackendFrame(1002, images[1][:16], masks[1][:16])]
    with pytest.raises(InvalidInput, match="frame 1002 is 48x16") as caught:
        list(backend.run(iter(bad), request(2)))
    assert caught.value.frame == 1002
    with pytest.raises(InvalidInput, match="1 or 2 passes"):
        list(backend.run(feed(images, masks), request(3, passes=3)))
    with pytest.raises(InvalidInput, match="unknown VOID memory mode 'huge'"):
        VoidBackend(pipeline=tiny_pipeline(), memory_mode="huge")


def test_a_float_quadmask_is_read_as_0_to_1_and_one_past_1_is_refused(monkeypatch):
    images, masks = shot(3)
    fed: list[np.ndarray] = []
    original = VoidPipeline.__call__

    def recording(self, video, quadmask, **kwargs):
        fed.append(np.asarray(quadmask).copy())
        return original(self, video, quadmask, **kwargs)

    monkeypatch.setattr(VoidPipeline, "__call__", recording)
    as_bytes = list(tiny_backend().run(feed(images, masks), request(3)))
    floats = [qm.astype(np.float32) / 255.0 for qm in masks]  # as a matte read from an EXR
    as_floats = list(tiny_backend().run(feed(images, floats), request(3)))
    assert len(fed) == 2 and np.array_equal(fed[0], fed[1])  # the model saw the same mask, not all "object"
    assert (fed[1] != fed[1].min()).any()
    for one, other in zip(as_bytes, as_floats):
        np.testing.assert_array_equal(one.image, other.image)
    past = [qm.astype(np.float32) for qm in masks]  # 0-255 in floats: no level can be told from it
    with pytest.raises(InvalidInput, match="frame 1001: the quadmask is float with values from 0 to 255") as caught:
        list(tiny_backend().run(feed(images, past), request(3)))
    assert caught.value.frame == 1001


def test_library_call_without_a_frame_range():
    images, masks = shot(6, size=(60, 30))
    backend = tiny_backend()
    out = void_backend.remove((image for image in images), (qm for qm in masks), backend, prompt="a room")
    assert len(out) == 6 and out[0].shape == (30, 60, 3)


# -- pass 2 ----------------------------------------------------------------------------------------


def test_pass_two_uses_its_checkpoint_and_warped_noise(tmp_path, monkeypatch):
    from safetensors.torch import save_file
    from support.tiny_void import tiny_transformer

    images, masks = shot(9)
    backend = tiny_backend(weights_folder=tmp_path)
    one = list(backend.run(feed(images, masks), request(9)))
    missing = request(9, passes=2)
    with pytest.raises(NotFound, match=str(tmp_path / weights.PASS2)) as caught:
        list(backend.run(feed(images, masks), missing))
    assert "hf download netflix/void-model void_pass2.safetensors" in str(caught.value)

    save_file(tiny_transformer(48, seed=9).state_dict(), str(tmp_path / weights.PASS2))
    seen: list[str] = []
    req = request(9, passes=2, on_message=seen.append)
    calls: list[dict] = []
    original = VoidPipeline.__call__

    def recording(self, video, quadmask, **kwargs):
        calls.append(kwargs)
        return original(self, video, quadmask, **kwargs)

    monkeypatch.setattr(VoidPipeline, "__call__", recording)
    two = list(backend.run(feed(images, masks), req))
    # Pass 1 as the reference's pass 1; pass 2 as its warped-noise script.
    from diffusers import CogVideoXDDIMScheduler

    assert [c["guidance_scale"] for c in calls] == [1.0, 6.0]
    assert calls[0].get("use_trimask", True) and calls[0].get("scheduler") is None
    assert calls[0]["negative_prompt"].startswith("The video is not of a high quality")
    assert calls[1]["use_trimask"] is False and calls[1]["negative_prompt"] == ""
    assert isinstance(calls[1]["scheduler"], CogVideoXDDIMScheduler)
    assert calls[1]["latents"].shape == (1, 4, 16, 4, 6)
    assert backend.checkpoint == "pass2"
    assert "Pass 2 warped its initial noise along OpenCV DIS optical flow of the pass-1 result." in req.notes
    assert backend.load_notes == ["void_pass2.safetensors: missing keys: 0, unexpected keys: 0"]
    # A clean load adds nothing to the job notes beyond the plain note and the weights' licences.
    assert [n for n in backend.notes() if not n.startswith("Licence: ")] == [void_backend.PLAIN_NOTE]
    assert any("pass 2/2: step 2/2" in m for m in seen)
    assert not all(np.array_equal(a.image, b.image) for a, b in zip(one, two))
    # Back to pass 1 for the next job: the original weights were kept and come back exactly.
    again = list(backend.run(feed(images, masks), request(9)))
    assert backend.checkpoint == "pass1"
    for a, b in zip(one, again):
        np.testing.assert_array_equal(a.image, b.image)


# -- memory modes ----------------------------------------------------------------------------------


def test_memory_mode_choice():
    gb = memory.GB
    assert memory.choose_mode(None) == "offload_fp8"  # unknown: the reference's default
    assert memory.choose_mode(80 * gb) == "full"
    assert memory.choose_mode(30 * gb) == "offload"
    assert memory.choose_mode(20 * gb) == "offload_fp8"
    assert memory.choose_mode(8 * gb) == "sequential"
    # A bigger frame needs more for its activations.
    assert memory.choose_mode(41 * gb, 1088 * 1920) != "full"
    assert [memory.lower_mode(m) for m in memory.MODES] == ["offload", "offload_fp8", "sequential", None]


def test_vae_tiling_follows_the_area():
    pipe = tiny_pipeline()
    memory.apply_mode(pipe, "full", "cpu", area=672 * 384)
    assert not pipe.vae.use_tiling and pipe.vae.use_slicing
    memory.apply_mode(pipe, "full", "cpu", area=1920 * 1088)
    assert pipe.vae.use_tiling
    with pytest.raises(ValueError, match="unknown memory mode"):
        memory.apply_mode(pipe, "turbo", "cpu")


# -- a real job ------------------------------------------------------------------------------------


def test_exr_job_end_to_end_on_the_void_backend(tmp_path):
    """A real EXR shot through `run_job` with the tiny VOID model; then cancel and resume."""
    from support.shots import read_pixels, write_shot
    from voidlink.bridge import build_spec
    from voidlink.inference.job.control import NullProgress
    from voidlink.inference.job.prepare import prepare_job
    from voidlink.inference.job.run import run_job
    from voidlink.media import quadmask

    from voidlink.errors import JobCancelled

    files = write_shot(tmp_path / "src", frames=6, width=96, height=64)
    backend = tiny_backend()

    def job(name: str, cancel_after: int = 0) -> tuple:
        output = tmp_path / name / "clean.####.exr"
        spec = build_spec(
            files.plate,
            files.mask,
            files.affected,
            output=str(output),
            prompt="a textured wall",
            steps=2,
            seed=1,
            backend="void",
        )
        prepared = prepare_job(spec)
        logs: list[str] = []
        written: list[int] = []

        class Progress(NullProgress):
            def log(self, message: str) -> None:
                logs.append(message)

            def frame_written(self, frame, done, total, preview) -> None:
                written.append(frame)

        def cancelled() -> bool:
            return bool(cancel_after) and len(written) >= cancel_after

        req = base.BackendRequest(
            first=prepared.first,
            last=prepared.last,
            prompt="a textured wall",
            steps=2,
            seed=1,
            on_message=logs.append,
            cancelled=cancelled,
        )
        result = run_job(prepared, backend, job_id=name, progress=Progress(), request=req, cancelled=cancelled)
        return result, prepared, output, logs

    result, prepared, output, logs = job("whole")
    assert result.backend == "void" and void_backend.PLAIN_NOTE in result.notes
    assert any(n.startswith("Licence: VOID checkpoints: Apache-2.0") for n in result.notes)
    assert any(n.startswith("Licence: CogVideoX-Fun base model: CogVideoX licence") for n in result.notes)
    assert any("region at" in n for n in result.notes)
    assert any(": step 2/2" in m for m in logs)
    for frame in range(files.first, files.last + 1):
        plate = read_pixels(files.plate.replace("####", f"{frame:04d}"))
        out = read_pixels(str(output).replace("####", f"{frame:04d}"))
        qm = read_pixels(str(Path(result.quadmask_pattern.replace("####", f"{frame:04d}"))))
        qm = np.rint(qm[..., 0] * 255).astype(np.uint8)
        outside = quadmask.composite_alpha(qm, prepared.feather) == 0
        assert out.shape == plate.shape
        assert np.array_equal(plate[outside], out[outside])  # untouched outside the mask
        assert not np.array_equal(plate[~outside], out[~outside])  # the model's pixels inside

    # Cancelled after two frames: they stay staged; the resumed job feeds the shot from its first frame
    # (a segment is denoised as a whole) and its frames match the uninterrupted run exactly.
    with pytest.raises(JobCancelled):
        job("resumed", cancel_after=2)
    staged = sorted(p.name for p in (tmp_path / "resumed" / ".voidlink-resumed" / "output").iterdir())
    assert staged == [f"clean.{f:04d}.exr" for f in (files.first, files.first + 1)]
    _, _, resumed, _ = job("resumed")
    for frame in range(files.first, files.last + 1):
        a = read_pixels(str(output).replace("####", f"{frame:04d}"))
        b = read_pixels(str(resumed).replace("####", f"{frame:04d}"))
        assert np.array_equal(a, b), frame


def test_warped_noise_follows_the_motion():
    """A texture panning 8 px per frame: each latent frame's noise is the previous one moved 4 latent px."""
    from voidlink.inference.backends.void import pass2

    rng = np.random.default_rng(2)
    texture = rng.random((96, 192 + 8 * 16, 3), dtype=np.float32)
    for _ in range(3):
        texture = (texture + np.roll(texture, 1, 0) + np.roll(texture, 1, 1)) / 3
    frames = np.stack([texture[:, 8 * 16 - 8 * i : 8 * 16 - 8 * i + 192] for i in range(13)])  # moves right
    noise, method = pass2.warped_noise(frames, (1, 4, 16, 12, 24), 4, torch.Generator().manual_seed(0))
    assert method == "OpenCV DIS"
    for k in range(1, 4):
        same = (noise[0, k, :, :, 4:] == noise[0, k - 1, :, :, :-4]).all(dim=0)
        assert same[2:-2, 2:-2].float().mean() > 0.9  # interior: the noise moved with the picture
        assert not torch.equal(noise[0, k, :, :, :4], noise[0, k - 1, :, :, :4])  # revealed: fresh noise
    again, _ = pass2.warped_noise(frames, (1, 4, 16, 12, 24), 4, torch.Generator().manual_seed(0))
    assert torch.equal(noise, again)
    assert abs(float(noise.std()) - 1.0) < 0.1


def test_backend_loads_a_weights_folder_and_stays_resident(tmp_path):
    """The daemon's path: the registry builds the backend from a weights folder once and keeps it."""
    from safetensors.torch import save_file
    from support.tiny_void import tiny_transformer, write_base
    from voidlink.inference.backends import BackendRegistry

    write_base(tmp_path)
    save_file(tiny_transformer(48, seed=1).state_dict(), str(tmp_path / weights.PASS1))
    registry = BackendRegistry(str(tmp_path))
    loaded = registry.get("void")
    assert isinstance(loaded, VoidBackend) and registry.get("void") is loaded and registry.is_loaded("void")
    assert loaded.load_notes == [f"{weights.PASS1}: missing keys: 0, unexpected keys: 0"]
    assert loaded.pipe.add_noise_in_inpaint_model is True  # from the base transformer's config.json
    assert loaded.mode == "full" and loaded.checkpoint == "pass1"
    # The same folder at the tiny sizes, run end to end with the folder's T5 tokenizer and encoder.
    backend = VoidBackend(tmp_path, device="cpu", settings=TINY_SETTINGS)
    backend.load()
    pipe = backend.pipe
    images, masks = shot(5)
    req = request(5)
    req.prompt = "an empty street"
    assert len(list(backend.run(feed(images, masks), req))) == 5
    backend.load()
    assert backend.pipe is pipe


def test_an_unclean_checkpoint_load_is_shown_in_every_job(tmp_path):
    from safetensors.torch import save_file
    from support.tiny_void import tiny_transformer

    state = tiny_transformer(48, seed=9).state_dict()
    state.pop("norm_final.weight")
    state["leftover.weight"] = torch.zeros(2)
    save_file(state, str(tmp_path / weights.PASS2))
    backend = tiny_backend(weights_folder=tmp_path)
    images, masks = shot(5)
    list(backend.run(feed(images, masks), request(5, passes=2)))
    warning = (
        "Loaded with strict=False as the reference does; void_pass2.safetensors: missing keys: 1, unexpected keys: 1 "
        "(first missing: norm_final.weight) (first unexpected: leftover.weight)."
    )
    assert [n for n in backend.notes() if not n.startswith("Licence: ")] == [void_backend.PLAIN_NOTE, warning]
