"""VOID frame-accurate to the reference (tiny random CogVideoX configs on CPU): decode order, random-draw
order, the reference's resize filter, embeddings-only loading, provenance and bit-identical re-runs."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from support.tiny_void import TINY, tiny_clip, tiny_components, tiny_pipeline
from voidlink.inference.backends.void import decode
from voidlink.inference.backends.void.geometry import Geometry, area_resize

# -- 1. decode order ---------------------------------------------------------------------------------


def _latents(frames: int, seed: int = 0, size: tuple[int, int] = (4, 6)) -> torch.Tensor:
    return torch.randn(1, 16, frames, *size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("frames", [1, 2, 3, 4, 6, 22])
def test_n_latent_frames_decode_to_one_plus_four_per_later_frame(frames):
    vae, _, _ = tiny_components()
    out = decode.decode(vae, _latents(frames))
    assert out.shape[2] == decode.decoded_length(frames) == 1 + 4 * (frames - 1)
    # diffusers' own decode of an even count gives four frames per latent frame: three too many.
    if frames % 2 == 0:
        assert vae.decode(_latents(frames)).sample.shape[2] == 4 * frames


def test_decode_is_the_first_latent_frame_alone_then_pairs_carrying_the_cache():
    # Three latent frames: the reference's chunks are (0) and (1, 2), which diffusers' decoder modules
    # give as they are (one frame is not upsampled in time, two are): an oracle independent of decode.py.
    vae, _, _ = tiny_components()
    z = _latents(3)
    with torch.no_grad():
        first, cache = vae.decoder(vae.post_quant_conv(z[:, :, :1]) if vae.post_quant_conv else z[:, :, :1])
        rest, _ = vae.decoder(
            vae.post_quant_conv(z[:, :, 1:3]) if vae.post_quant_conv else z[:, :, 1:3], conv_cache=cache
        )
    expected = torch.cat([first, rest], dim=2)
    assert first.shape[2] == 1 and rest.shape[2] == 8
    torch.testing.assert_close(decode.decode(vae, z), expected, rtol=0, atol=0)
    assert decode.chunks(6) == [(0, 1), (1, 3), (3, 5), (5, 6)]


def _small_tiles(vae) -> None:
    """Tiles of 6×5 latents overlapping by diffusers' default 1/6 and 1/5: like the real tiles (30×45),
    each tile's kept part is exactly one step, so the tiles cover the frame with nothing left over."""
    vae.enable_tiling(tile_sample_min_height=48, tile_sample_min_width=40)


def _first_changed(vae, z: torch.Tensor, latents: list[int], tiled: bool = False) -> list[int]:
    """For each latent frame in `latents`, the first output frame that changes when it alone changes."""
    if tiled:
        _small_tiles(vae)
    try:
        base = decode.decode(vae, z)
        firsts = []
        for latent in latents:
            bumped = z.clone()
            bumped[:, :, latent] += 3.0
            moved = (decode.decode(vae, bumped) - base).abs().amax(dim=(0, 1, 3, 4))
            firsts.append(int(torch.nonzero(moved > 1e-6)[0]))
    finally:
        vae.disable_tiling()
    return firsts


@pytest.mark.parametrize("tiled", [False, True])
def test_output_frame_k_depends_on_the_latent_frame_that_holds_input_frame_k(tiled, monkeypatch):
    # The causal VAE: latent frame 0 holds input frame 0, latent frame i ≥ 1 input frames 4i−3 … 4i.
    # So output frame 0 must not move when latent frame 1 does (diffusers' decode of an even count
    # stretches latent 0 over frames 0–3 and decodes it with latent 1: frame 0 moves too).
    # Tiled: a 7×6 latent is two rows of two overlapping tiles, so both blends run; each tile is
    # decoded in the reference's frame order on its own.
    vae, _, _ = tiny_components()
    z = _latents(6, size=(7, 6) if tiled else (4, 6))
    tiles = []
    chunked = decode._decode_chunks
    monkeypatch.setattr(decode, "_decode_chunks", lambda vae, part: tiles.append(part.shape) or chunked(vae, part))
    # Chunk (3, 4) starts at input frame 4·3 − 3; the last chunk holds one latent frame: frames 17–20.
    assert _first_changed(vae, z, [0, 1, 3, 5], tiled) == [0, 1, 9, 17]
    assert len(tiles) == 5 * (4 if tiled else 1)  # five decodes, each of four tiles when tiled
    out = decode.decode(vae, z)
    assert out.shape[2] == 21


def test_tiled_decode_covers_the_frame_and_matches_the_untiled_frame_count():
    vae, _, _ = tiny_components()
    z = _latents(4, size=(7, 6))  # two rows of two tiles
    plain = decode.decode(vae, z)
    _small_tiles(vae)
    try:
        tiled = decode.decode(vae, z)
    finally:
        vae.disable_tiling()
    assert tiled.shape == plain.shape == (1, 3, 13, 7 * 8, 6 * 8)  # every pixel, none twice
    assert torch.isfinite(tiled).all() and not torch.equal(tiled, plain)  # tiles were decoded apart


def test_the_pipeline_returns_exactly_the_clip_with_frame_k_from_latent_of_frame_k():
    pipe = tiny_pipeline()
    video, quadmask = tiny_clip(frames=9)
    embeds = torch.zeros(1, 8, 16)
    shape = pipe.latent_shape(9, 32, 32, 5, 13)  # 13 padded frames, 4 latent frames
    latents = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    run = dict(prompt_embeds=embeds, num_inference_steps=1, **TINY)
    out = pipe(video, quadmask, latents=latents, **run)
    assert out.frames.shape[0] == 9
    decoded = pipe.decode_latents(out.latents)
    assert decoded.shape[0] == 13
    np.testing.assert_array_equal(out.frames, decoded[:9])


# -- 2. random draws ---------------------------------------------------------------------------------


class FirstInputs:
    """Records what the transformer is given at its first call."""

    def __init__(self, transformer) -> None:
        self.hidden = None
        self.handle = transformer.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        if self.hidden is None:
            self.hidden = kwargs["hidden_states"].detach().clone()


def test_a_seed_starts_from_the_reference_noise_with_the_augmentation_on():
    from diffusers.utils.torch_utils import randn_tensor

    pipe = tiny_pipeline()
    pipe.add_noise_in_inpaint_model = True  # the real checkpoint's config has it
    video, quadmask = tiny_clip(frames=5)  # one window: the first call sees all the latents
    shape = pipe.latent_shape(5, 32, 32, 5, 13)
    run = dict(prompt_embeds=torch.zeros(1, 8, 16), num_inference_steps=1, output_type="latent", **TINY)

    def first_inputs(seed: int, augment: bool = True):
        pipe.add_noise_in_inpaint_model = augment
        recorder = FirstInputs(pipe.transformer)
        try:
            pipe(video, quadmask, generator=torch.Generator().manual_seed(seed), **run)
        finally:
            recorder.handle.remove()
        return recorder.hidden

    seen = first_inputs(42)
    # The reference: the initial latents are the seeded generator's first draw (DDIM's sigma is 1).
    reference = randn_tensor(shape, generator=torch.Generator().manual_seed(42), dtype=torch.float32)
    torch.testing.assert_close(seen[:, :, :16], reference, rtol=0, atol=0)
    # The augmentation is there (the video latents differ from a run without it) and reproducible.
    assert not torch.equal(seen[:, :, 32:], first_inputs(42, augment=False)[:, :, 32:])
    torch.testing.assert_close(first_inputs(42), seen, rtol=0, atol=0)
    assert not torch.equal(first_inputs(43)[:, :, 32:], seen[:, :, 32:])


# -- 3. resize ---------------------------------------------------------------------------------------


def _adaptive_mean(plane: np.ndarray, height: int, width: int) -> np.ndarray:
    """torch's area filter by its definition: the mean over source pixels floor(i·H/h) … ceil((i+1)·H/h)."""
    h, w = plane.shape
    out = np.zeros((height, width), np.float64)
    for i in range(height):
        y0, y1 = (i * h) // height, -(-((i + 1) * h) // height)
        for j in range(width):
            x0, x1 = (j * w) // width, -(-((j + 1) * w) // width)
            out[i, j] = plane[y0:y1, x0:x1].mean()
    return out


def test_video_and_mask_shrink_with_the_references_area_filter():
    rng = np.random.default_rng(5)
    size = (203, 117)  # → about 2.2× smaller: non-integer factors both ways
    g = Geometry.for_size(size, 96 * 52, unit=16)
    assert g.scaled[0] < size[0] and size[0] / g.scaled[0] != int(size[0] / g.scaled[0])
    image = rng.random((size[1], size[0], 3), dtype=np.float32)
    qm = np.full((size[1], size[0]), 255, np.uint8)
    qm[30:80, 40:130] = 127
    qm[45:70, 60:100] = 0
    model_image, model_mask = g.to_model(image, qm)
    w, h = g.scaled
    expected = np.stack([_adaptive_mean(image[..., c], h, w) for c in range(3)], axis=-1)
    np.testing.assert_allclose(model_image[:h, :w], expected, atol=2e-6)
    from voidlink.inference.backends.void import helpers

    expected_mask = helpers.quantize_quadmask(_adaptive_mean(qm.astype(np.float64), h, w))
    np.testing.assert_array_equal(model_mask[:h, :w], expected_mask)
    # OpenCV's area filter weights partial pixels: it is not the reference's filter here.
    opencv = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    assert np.abs(opencv - expected).max() > 1e-3


def test_a_2k_plate_at_the_working_area_lands_mask_pixels_where_the_reference_does():
    # The case: a 2K plate squashed to 672x384 puts ~100 mask pixels on other levels with OpenCV.
    yy, xx = np.mgrid[0:1080, 0:2048]
    qm = np.full((1080, 2048), 255, np.uint8)
    qm[(xx - 900) ** 2 + (yy - 500) ** 2 < 260**2] = 127
    qm[(xx - 930) ** 2 + (yy - 480) ** 2 < 160**2] = 0
    ours = area_resize(qm.astype(np.float32), (672, 384))
    reference = torch.nn.functional.interpolate(
        torch.from_numpy(qm.astype(np.float32))[None, None], size=(384, 672), mode="area"
    )[0, 0].numpy()
    np.testing.assert_array_equal(ours, reference)
    from voidlink.inference.backends.void import helpers

    opencv = cv2.resize(qm.astype(np.float32), (672, 384), interpolation=cv2.INTER_AREA)
    differ = int((helpers.quantize_quadmask(opencv) != helpers.quantize_quadmask(reference)).sum())
    assert differ > 0


def test_a_crop_that_grows_is_scaled_with_a_smooth_filter_and_its_mask_with_the_area_filter():
    g = Geometry.for_size((40, 24), 96 * 52, unit=16)
    assert g.scaled[0] > 40
    image = np.random.default_rng(1).random((24, 40, 3), dtype=np.float32)
    qm = np.full((24, 40), 255, np.uint8)
    qm[5:15, 10:30] = 0
    model_image, model_mask = g.to_model(image, qm)
    w, h = g.scaled
    expected = np.clip(cv2.resize(image, (w, h), interpolation=cv2.INTER_CUBIC), 0, 1)
    np.testing.assert_allclose(model_image[:h, :w], expected, atol=1e-6)
    # The mask's edge lands where the reference's area filter puts it (a grey between 0 and 255
    # snaps to a level in between, as there).
    from voidlink.inference.backends.void import helpers

    reference = helpers.quantize_quadmask(_adaptive_mean(qm.astype(np.float64), h, w))
    np.testing.assert_array_equal(model_mask[:h, :w], reference)
    assert math.isclose((model_mask[:h, :w] == 0).mean(), (qm == 0).mean(), abs_tol=0.03)


# -- 4. seams: an embeddings-only load, embeddings and latents in the request ------------------------


@pytest.fixture(scope="module")
def embeddings_only_folder(tmp_path_factory):
    """A weights folder whose base model has transformer, VAE and scheduler but no T5."""
    import shutil

    from safetensors.torch import save_file
    from support.tiny_void import tiny_transformer, write_base
    from voidlink.inference.backends.void import weights

    folder = tmp_path_factory.mktemp("weights-no-t5")
    base = write_base(folder)
    shutil.rmtree(base / "text_encoder")
    shutil.rmtree(base / "tokenizer")
    save_file(tiny_transformer(48, seed=1).state_dict(), str(folder / weights.PASS1))
    return folder


def test_an_embeddings_only_load_runs_requests_that_carry_embeddings(embeddings_only_folder):
    from support.tiny_void import TINY_SETTINGS as SETTINGS
    from support.tiny_void import feed, request, shot
    from voidlink.inference.backends.void.backend import VoidBackend

    from voidlink.errors import InvalidInput, NotFound

    # With the text encoder asked for, the folder is incomplete and says which parts are missing.
    with pytest.raises(NotFound) as missing:
        VoidBackend(embeddings_only_folder, device="cpu", settings=SETTINGS).load()
    assert "text_encoder is missing" in missing.value.message and "tokenizer is missing" in missing.value.message
    backend = VoidBackend(embeddings_only_folder, device="cpu", settings=SETTINGS, text_encoder=False)
    backend.load()
    assert backend.pipe.text_encoder is None and backend.pipe.tokenizer is None
    images, masks = shot(5)
    req = request(5, prompt_embeds=torch.randn(1, 8, 16, generator=torch.Generator().manual_seed(2)))
    results = list(backend.run(feed(images, masks), req))
    assert [r.index for r in results] == list(range(1001, 1006))
    # Without embeddings the request is refused before a frame is read, naming what it lacks.
    with pytest.raises(InvalidInput) as refused:
        next(iter(backend.run(feed(images, masks), request(5))))
    assert refused.value.reason == "NO_TEXT_ENCODER" and refused.value.field == "prompt_embeds"
    # Guidance needs the negative embeddings too.
    with pytest.raises(InvalidInput) as unguided:
        next(iter(backend.run(feed(images, masks), request(5, guidance=6.0, prompt_embeds=torch.zeros(1, 8, 16)))))
    assert unguided.value.field == "negative_prompt_embeds"


def test_embeddings_and_latents_in_a_request_reach_the_pipeline_as_they_are():
    from support.tiny_void import feed, request, shot, tiny_backend

    from voidlink.errors import InvalidInput

    backend = tiny_backend(with_text=False)
    images, masks = shot(5)  # 48x32: the working area of the tiny settings, so no resampling
    embeds = torch.randn(1, 8, 16, generator=torch.Generator().manual_seed(3))
    shape = backend.pipe.latent_shape(5, 32, 48, 5, 13)
    latents = torch.randn(shape, generator=torch.Generator().manual_seed(4))
    req = request(5, prompt_embeds=embeds, latents=latents)
    ours = np.stack([r.image for r in backend.run(feed(images, masks), req)])
    direct = backend.pipe(
        np.stack(images),
        np.stack(masks),
        prompt_embeds=embeds,
        latents=latents,
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(42),
        temporal_window_size=5,
        temporal_multidiffusion_stride=4,
        max_frames=13,
        max_sequence_length=8,
    ).frames
    np.testing.assert_array_equal(ours, direct)
    # Initial latents describe one segment: a longer shot is refused, naming the field.
    long_images, long_masks = shot(20)
    with pytest.raises(InvalidInput) as refused:
        list(backend.run(feed(long_images, long_masks), request(20, prompt_embeds=embeds, latents=latents)))
    assert refused.value.field == "latents"


# -- 5. provenance and re-runs -----------------------------------------------------------------------


def _void_job(folder, files, output, job_id: str, digests):
    """One real EXR job through the daemon's pipeline with a tiny VOID backend loaded from `folder`."""
    from support.tiny_void import TINY_SETTINGS as SETTINGS
    from voidlink.bridge import build_spec
    from voidlink.inference.backends import base
    from voidlink.inference.backends.void.backend import VoidBackend
    from voidlink.inference.job.prepare import prepare_job
    from voidlink.inference.job.run import run_job

    backend = VoidBackend(folder, device="cpu", settings=SETTINGS, digests=digests)
    backend.load()
    spec = build_spec(
        files.plate, files.mask, files.affected, output=str(output), prompt="a textured wall", steps=2, seed=5
    )
    prepared = prepare_job(spec)
    request = base.BackendRequest(
        first=prepared.first, last=prepared.last, prompt="a textured wall", steps=2, seed=5, quality="balanced"
    )
    return run_job(prepared, backend, job_id=job_id, request=request)


def test_every_frame_and_the_result_record_what_made_them_and_a_rerun_is_bit_identical(tmp_path):
    import hashlib
    import json

    import opentimelineio as otio
    from safetensors.torch import save_file
    from support.shots import read_pixels, write_shot
    from support.tiny_void import tiny_transformer, write_base
    from voidlink.inference.backends.void import weights
    from voidlink.media import image

    from voidlink import __version__

    folder = tmp_path / "weights"
    write_base(folder)
    save_file(tiny_transformer(48, seed=1).state_dict(), str(folder / weights.PASS1))
    sha = hashlib.sha256((folder / weights.PASS1).read_bytes()).hexdigest()
    files = write_shot(tmp_path / "src", frames=6, width=96, height=64)
    digests = weights.Digests(tmp_path / "cache" / "sha.json")
    first = _void_job(folder, files, tmp_path / "a" / "clean.####.exr", "job-a", digests)
    expected = {
        "backend": "void",
        "version": __version__,
        "prompt": "a textured wall",
        "quality": "balanced",
        "crop_mode": "auto",
        "seed": "5",
        "steps": "2",
        "guidance": "1",
        "passes": "1",
        "memory_mode": "full",
        "device": "cpu",
        f"weights.{weights.PASS1}": sha,
        "weights.base": weights.BASE,
    }
    assert dict(first.provenance) == expected
    clip = otio.adapters.read_from_string(first.otio_json, "otio_json")
    assert dict(clip.metadata["voidlink"]["provenance"]) == expected
    for frame in range(files.first, files.last + 1):
        spec = image.read_spec(str(tmp_path / "a" / f"clean.{frame:04d}.exr"))
        assert spec.getattribute("voidlink:job") == "job-a"
        for key, value in expected.items():
            assert spec.getattribute(f"voidlink:{key}") == value, key
    # The hash was remembered by size and time: a new daemon's first job does not read the file again.
    assert (
        json.loads((tmp_path / "cache" / "sha.json").read_text())[str((folder / weights.PASS1).resolve())]["sha256"]
        == sha
    )

    # The same spec, weights and seed on the same device: the same pixels, bit for bit.
    again = _void_job(folder, files, tmp_path / "b" / "clean.####.exr", "job-b", weights.Digests(digests.cache_file))
    assert dict(again.provenance) == expected
    for frame in range(files.first, files.last + 1):
        a = read_pixels(str(tmp_path / "a" / f"clean.{frame:04d}.exr"))
        b = read_pixels(str(tmp_path / "b" / f"clean.{frame:04d}.exr"))
        assert np.array_equal(a, b), frame


def test_a_hash_that_finishes_at_once_is_still_returned(tmp_path):
    # A small file's hash can finish the moment the digests' lock is let go. The lock here waits for
    # every hash under way each time this thread lets it go, so that moment always comes first.
    import hashlib
    import threading

    from voidlink.inference.backends.void import weights

    checkpoint = tmp_path / "void_pass1.safetensors"
    checkpoint.write_bytes(b"weights one")
    digests = weights.Digests(tmp_path / "cache.json")
    caller = threading.current_thread()
    waited = []

    class HashesFirst:
        def __init__(self) -> None:
            self._lock = threading.Lock()

        def __enter__(self):
            self._lock.acquire()
            return self

        def __exit__(self, *exc) -> None:
            pending = list(digests._pending.values())
            self._lock.release()
            if threading.current_thread() is caller:
                for future in pending:
                    future.result(timeout=60)
                    waited.append(future)

    digests._lock = HashesFirst()
    assert digests.get(checkpoint) == hashlib.sha256(b"weights one").hexdigest()
    assert waited  # the hash did finish before the caller looked again
    assert not digests._pending


def test_weight_hashes_are_computed_once_and_again_when_the_file_changes(tmp_path, monkeypatch):
    import hashlib
    import json
    import os

    from voidlink.inference.backends.void import weights
    from voidlink.protos import wire

    checkpoint = tmp_path / "void_pass1.safetensors"
    checkpoint.write_bytes(b"weights one")
    cache = tmp_path / "cache.json"
    assert weights.Digests(cache).get(checkpoint) == hashlib.sha256(b"weights one").hexdigest()
    calls = []
    real = wire.file_sha256
    monkeypatch.setattr(wire, "file_sha256", lambda path: calls.append(path) or real(path))
    assert weights.Digests(cache).get(checkpoint) == hashlib.sha256(b"weights one").hexdigest()
    assert calls == []  # from the cache file, by path, size and modification time
    checkpoint.write_bytes(b"weights two, longer")
    os.utime(checkpoint, ns=(1, 2))
    assert weights.Digests(cache).get(checkpoint) == hashlib.sha256(b"weights two, longer").hexdigest()
    assert len(calls) == 1
    # A file that is gone is forgotten at the next write; the cache does not grow with every move.
    moved = tmp_path / "void_pass2.safetensors"
    moved.write_bytes(b"weights three")
    weights.Digests(cache).get(moved)
    assert set(json.loads(cache.read_text())) == {os.path.realpath(checkpoint), os.path.realpath(moved)}
    moved.unlink()
    checkpoint.write_bytes(b"weights four")
    weights.Digests(cache).get(checkpoint)
    assert set(json.loads(cache.read_text())) == {os.path.realpath(checkpoint)}
    assert len(calls) == 3
    # A cache folder that cannot be written costs a hash per process, never a failure.
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    digests = weights.Digests(blocked / "cache.json")
    assert digests.get(checkpoint) == hashlib.sha256(b"weights four").hexdigest()
    assert digests.get(checkpoint) == hashlib.sha256(b"weights four").hexdigest()
    assert len(calls) == 4
