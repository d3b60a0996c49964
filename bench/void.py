"""`voidlink bench void`: VOID's seconds per step, VAE seconds, peak VRAM, first progress and load time.

Per memory mode: seconds per denoising step, VAE encode/decode seconds, peak VRAM and the seconds from
the pipeline's call to its first progress event; once: the transformer and VAE's load time from
safetensors, cold (their files evicted from the page cache) and from the page cache.

The transformer and VAE are built at full size from the configs of the base model
(CogVideoX-Fun-V1.5-5b-InP: CogVideoX 1.5's 5B transformer widened to 48 input channels for VOID's
VAE-encoded mask, and CogVideoX's VAE) with random weights, so no download is needed; speed and
memory do not depend on the weights' values. The text encoder is left out (prompt embeddings are
random): it runs once per job, not per step. Each mode builds its models afresh (float8 storage
cannot be undone in place) and runs a few steps of the real `VoidPipeline` on a random clip.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

# CogVideoX 1.5 5B (diffusers layout) with VOID's 48 input channels: 16 noisy + 16 mask + 16 video latents.
TRANSFORMER_CONFIG: dict[str, Any] = {
    "activation_fn": "gelu-approximate",
    "attention_bias": True,
    "attention_head_dim": 64,
    "dropout": 0.0,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 48,
    "max_text_seq_length": 226,
    "norm_elementwise_affine": True,
    "norm_eps": 1e-05,
    "num_attention_heads": 48,
    "num_layers": 42,
    "out_channels": 16,
    "patch_bias": False,
    "patch_size": 2,
    "patch_size_t": 2,
    "sample_frames": 81,
    "sample_height": 300,
    "sample_width": 300,
    "spatial_interpolation_scale": 1.875,
    "temporal_compression_ratio": 4,
    "temporal_interpolation_scale": 1.0,
    "text_embed_dim": 4096,
    "time_embed_dim": 512,
    "timestep_activation_fn": "silu",
    "use_learned_positional_embeddings": False,
    "use_rotary_positional_embeddings": True,
}
# CogVideoX's VAE: 8× spatial, 4× temporal, 16 latent channels; the 5B models' scaling factor.
VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "block_out_channels": (128, 256, 256, 512),
    "latent_channels": 16,
    "layers_per_block": 3,
    "norm_num_groups": 32,
    "temporal_compression_ratio": 4,
    "scaling_factor": 0.7,
}
# The base model's scheduler config (DDIM, v-prediction, zero-SNR, trailing).
SCHEDULER_CONFIG: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True,
    "set_alpha_to_one": True,
    "steps_offset": 0,
    "timestep_spacing": "trailing",
}
# For checking the bench itself on a CPU: the same code on a model a few kilobytes big.
TINY_TRANSFORMER = {
    **TRANSFORMER_CONFIG,
    "num_attention_heads": 2,
    "attention_head_dim": 16,
    "num_layers": 1,
    "text_embed_dim": 16,
    "time_embed_dim": 8,
    "max_text_seq_length": 8,
    "sample_height": 16,
    "sample_width": 16,
}
TINY_VAE = {**VAE_CONFIG, "block_out_channels": (4, 4, 4, 4), "layers_per_block": 1, "norm_num_groups": 2}
KEYS = ("s_per_step", "peak_vram_gb", "vae_encode_s", "vae_decode_s", "first_progress_s")


def _size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"--size takes HEIGHTxWIDTH, e.g. 384x672 (got '{text}')") from error
    if height % 16 or width % 16 or height <= 0 or width <= 0:
        raise argparse.ArgumentTypeError(f"--size {text}: height and width must be positive multiples of 16")
    return height, width


def _sync(torch: Any, device: Any) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _build(torch: Any, tiny: bool, device: Any) -> Any:
    from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel, DDIMScheduler
    from voidlink.inference.backends.void.pipeline import VoidPipeline

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # random init straight in the working dtype: no 20 GB float32 copy
    try:
        # Random init is far faster on the GPU; the offload modes move the weights back to the CPU.
        with torch.device(device):
            transformer = CogVideoXTransformer3DModel(**(TINY_TRANSFORMER if tiny else TRANSFORMER_CONFIG))
            vae = AutoencoderKLCogVideoX(**(TINY_VAE if tiny else VAE_CONFIG))
    finally:
        torch.set_default_dtype(previous)
    transformer = transformer.eval().requires_grad_(False).to("cpu")
    vae = vae.eval().requires_grad_(False).to("cpu")
    return VoidPipeline(None, None, vae, transformer, DDIMScheduler(**SCHEDULER_CONFIG))


def measure(mode: str, frames: int, size: tuple[int, int], steps: int, device_name: str, tiny: bool) -> dict:
    """One memory mode: the figures in `KEYS` (peak VRAM is None on a CPU)."""
    import numpy as np
    import torch
    from voidlink.inference.backends.void import helpers, memory
    from voidlink.inference.backends.void.pipeline import prepare_inpaint_latents

    device = torch.device(device_name)
    height, width = size
    window = 5 if tiny else helpers.TEMPORAL_WINDOW
    max_frames = 13 if tiny else helpers.MAX_FRAMES
    stride = 4 if tiny else helpers.MULTIDIFFUSION_STRIDE
    pipe = _build(torch, tiny, device)
    try:
        memory.apply_mode(pipe, mode, device, area=height * width)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        rng = np.random.default_rng(0)
        video = rng.random((frames, height, width, 3), dtype=np.float32)
        quadmask = np.full((frames, height, width), 255, np.uint8)
        quadmask[:, height // 4 : height // 2, width // 4 : width // 2] = 0

        # VAE encode: the mask and the video of the padded clip, as the pipeline's conditioning step does.
        target = helpers.padded_length(frames, window, max_frames)
        order = helpers.padding_indices(frames, target)
        video_t = torch.from_numpy(video[order]).permute(3, 0, 1, 2)[None]
        mask_t = torch.from_numpy(helpers.trimask(helpers.quadmask_to_condition(quadmask[order])))[None, None]
        # diffusers' VAE encode/decode go through the offload hooks, so each mode moves the VAE as it would.
        # One frame first: kernel selection and the first transfer are not the encode's own cost.
        prepare_inpaint_latents(pipe.vae, video_t[:, :, :1], mask_t[:, :, :1])
        _sync(torch, device)
        started = time.perf_counter()
        prepare_inpaint_latents(pipe.vae, video_t, mask_t)
        _sync(torch, device)
        encode_s = time.perf_counter() - started

        config = pipe.transformer.config
        embeds = torch.randn(1, config.max_text_seq_length, config.text_embed_dim)
        stamps: list[float] = []
        first_event: list[float] = []

        def on_window(step: int, total: int, window_index: int, windows: int) -> None:
            if not first_event:  # what a job's watcher sees first: a frame of progress
                _sync(torch, device)
                first_event.append(time.perf_counter())
            if window_index == windows - 1:
                _sync(torch, device)
                stamps.append(time.perf_counter())

        _sync(torch, device)
        stamps.append(time.perf_counter())
        out = pipe(
            video,
            quadmask,
            prompt_embeds=embeds,
            num_inference_steps=steps,
            generator=torch.Generator().manual_seed(0),
            temporal_window_size=window,
            temporal_multidiffusion_stride=stride,
            max_frames=max_frames,
            callback=on_window,
            output_type="latent",
        )
        # The first interval holds the conditioning and warm-up; steps after it are the steady rate.
        intervals = [b - a for a, b in zip(stamps, stamps[1:])]
        per_step = statistics.median(intervals[1:]) if len(intervals) > 1 else intervals[0]
        _sync(torch, device)
        started = time.perf_counter()
        pipe.decode_latents(out.latents)
        _sync(torch, device)
        decode_s = time.perf_counter() - started
        peak = torch.cuda.max_memory_allocated(device) / memory.GB if device.type == "cuda" else None
        return {
            "s_per_step": per_step,
            "peak_vram_gb": peak,
            "vae_encode_s": encode_s,
            "vae_decode_s": decode_s,
            # From the pipeline's call (the clip in memory, the models placed) to its first progress callback.
            "first_progress_s": first_event[0] - stamps[0],
        }
    finally:
        pipe.remove_all_hooks()
        del pipe
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()


def _evict(folder: Path) -> bool:
    """Drop the folder's files from the page cache (written back first), so the next read comes from the
    disk; False where the platform cannot (no posix_fadvise): the load then reads from the cache."""
    if not hasattr(os, "posix_fadvise"):
        return False
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
    return True


def measure_load(tiny: bool, device_name: str) -> dict:
    """Seconds to load the transformer and the VAE from safetensors onto the device: once with their
    files out of the page cache (cold, where the platform can evict them) and once from the cache.

    The models are written by diffusers' own saver, so the load is the one a daemon does from a weights
    folder (VOID's pass-1 checkpoint is the transformer's size again on top of the base)."""
    import torch
    from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel

    device = torch.device(device_name)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    pipe = _build(torch, tiny, device)
    with tempfile.TemporaryDirectory(prefix="voidlink-bench-void-") as root:
        folder = Path(root)
        pipe.transformer.save_pretrained(folder / "transformer")
        pipe.vae.save_pretrained(folder / "vae")
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        del pipe
        gc.collect()

        def load() -> float:
            _sync(torch, device)
            started = time.perf_counter()
            transformer = CogVideoXTransformer3DModel.from_pretrained(folder / "transformer", torch_dtype=dtype)
            vae = AutoencoderKLCogVideoX.from_pretrained(folder / "vae", torch_dtype=dtype)
            transformer.to(device)
            vae.to(device)
            _sync(torch, device)
            seconds = time.perf_counter() - started
            del transformer, vae
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
            return seconds

        evicted = _evict(folder)
        cold = load()
        cached = load()
    return {"load_cold_s": cold if evicted else None, "load_cached_s": cached, "weights_gb": size / 1e9}


def run(modes: list[str], frames: int, size: tuple[int, int], steps: int, device: str, tiny: bool) -> dict:
    import torch

    report: dict = {
        "device": torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu",
        "frames": frames,
        "size": f"{size[0]}x{size[1]}",
        "steps": steps,
        "model": "tiny (bench check)" if tiny else "CogVideoX-Fun-V1.5-5b-InP transformer (48 channels) + VAE",
        "modes": {},
        "load": measure_load(tiny, device),
    }
    for mode in modes:
        try:
            report["modes"][mode] = measure(mode, frames, size, steps, device, tiny)
        except torch.cuda.OutOfMemoryError as error:
            report["modes"][mode] = {key: None for key in KEYS} | {"error": f"out of GPU memory: {error}"}
    return report


def format_table(report: dict) -> str:
    lines = [
        f"VOID on {report['device']}: {report['frames']} frames at {report['size']}, {report['steps']} steps "
        f"({report['model']}, random weights)",
        f"{'mode':<12} {'s/step':>8} {'peak VRAM GB':>13} {'VAE encode s':>13} {'VAE decode s':>13} "
        f"{'1st progress s':>15}",
    ]

    def cell(value: Optional[float], width: int) -> str:
        return f"{value:>{width}.2f}" if value is not None else f"{'-':>{width}}"

    for mode, row in report["modes"].items():
        line = (
            f"{mode:<12} {cell(row['s_per_step'], 8)} {cell(row['peak_vram_gb'], 13)} "
            f"{cell(row['vae_encode_s'], 13)} {cell(row['vae_decode_s'], 13)} {cell(row['first_progress_s'], 15)}"
        )
        lines.append(line + (f"  ({row['error']})" if "error" in row else ""))
    load = report["load"]
    cold = f"{load['load_cold_s']:.2f} s" if load["load_cold_s"] is not None else "not measured (no posix_fadvise)"
    lines.append(
        f"model load (transformer + VAE, {load['weights_gb']:.2f} GB of safetensors): cold {cold}, "
        f"from the page cache {load['load_cached_s']:.2f} s"
    )
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    from voidlink.inference.backends.void.memory import MODES

    parser = argparse.ArgumentParser(prog="voidlink bench void", description=__doc__.splitlines()[0])
    parser.add_argument("--mode", action="append", choices=MODES, help="memory mode (repeatable; default: all)")
    parser.add_argument("--frames", type=int, default=85, help="clip length (default 85, one temporal window)")
    parser.add_argument("--size", type=_size, default=(384, 672), help="HEIGHTxWIDTH, multiples of 16 (384x672)")
    parser.add_argument("--steps", type=int, default=4, help="denoising steps to time (default 4)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument(
        "--tiny", action="store_true", help="a tiny random model instead of the 5B one (checks the bench; runs on CPU)"
    )
    args = parser.parse_args(argv)
    if args.frames < 1 or args.steps < 1:
        parser.error("--frames and --steps must be at least 1")
    try:
        import torch
    except ImportError:
        print("voidlink bench void needs torch and diffusers: pip install 'voidlink[void]'", file=sys.stderr)
        return 2
    if not torch.cuda.is_available() and not args.tiny:
        print(
            "voidlink bench void measures the VOID model on a CUDA GPU, and this machine has none "
            "(torch.cuda.is_available() is False); nothing was run.",
            file=sys.stderr,
        )
        return 2
    device = "cuda" if torch.cuda.is_available() else "cpu"
    report = run(args.mode or list(MODES), args.frames, args.size, args.steps, device, args.tiny)
    print(json.dumps(report) if args.json else format_table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
