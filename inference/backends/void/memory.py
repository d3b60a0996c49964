"""Memory modes: how much of the model lives on the GPU.

`full`        everything resident on the GPU (fastest; ~24 GB of weights in bf16 plus activations);
`offload`     each component moves to the GPU while it runs (transformer ~11 GB at a time);
`offload_fp8` as `offload`, with the transformer's weights stored as float8 and computed in bf16
              (the reference's default `model_cpu_offload_and_qfloat8`);
`sequential`  layer by layer (slowest, fits small cards).
`auto` picks the fastest one the free VRAM allows, and a job that runs out of memory in `auto`
retries once in the next lower mode.
"""

from __future__ import annotations

from typing import Any, Optional

MODES = ("full", "offload", "offload_fp8", "sequential")
GB = 1024**3
# Free VRAM (GB) each mode wants at the default 384×672, 85-frame windows; scaled by the working area.
# Estimates, not measurements: the weights (transformer 5B ≈ 11 GB in bf16, T5-XXL encoder ≈ 9.5 GB,
# VAE ≈ 0.4 GB) plus headroom for activations and the VAE decode. Reports disagree (the reference
# asks 40 GB+ for its float8-offload default; a ComfyUI port runs 720p on 24 GB cards with offload),
# so `voidlink bench void` measures the real peaks per mode on a given card, and an out-of-memory
# error in auto mode retries once in the next lower mode.
NEEDS_GB = {"full": 40.0, "offload": 26.0, "offload_fp8": 18.0, "sequential": 0.0}
DEFAULT_AREA = 384 * 672
# Above this many pixels per frame the VAE is tiled (its activations grow with the frame area).
VAE_TILING_AREA = 480 * 720


def choose_mode(free_bytes: Optional[int], area: int = DEFAULT_AREA) -> str:
    """The fastest mode that fits in `free_bytes` of VRAM (None: unknown → `offload_fp8`)."""
    if free_bytes is None:
        return "offload_fp8"
    free = free_bytes / GB
    scale = max(1.0, area / DEFAULT_AREA)
    for mode in MODES:
        # Weights do not scale with the frame; activations (about a third at the default size) do.
        need = NEEDS_GB[mode] * (2 / 3 + scale / 3)
        if free >= need:
            return mode
    return "sequential"


def lower_mode(mode: str) -> Optional[str]:
    index = MODES.index(mode)
    return MODES[index + 1] if index + 1 < len(MODES) else None


def free_vram(device: Any) -> Optional[int]:
    import torch

    if not torch.cuda.is_available() or str(device).split(":")[0] != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(torch.device(device))
    return int(free)


def apply_mode(pipe: Any, mode: str, device: Any, area: int = DEFAULT_AREA) -> None:
    """Place the pipeline's components for `mode` (undoing an earlier mode's hooks first)."""
    import torch

    if mode not in MODES:
        raise ValueError(f"unknown memory mode '{mode}' (choose auto, {', '.join(MODES)})")
    pipe.remove_all_hooks()
    if getattr(pipe, "_fp8", False) and mode != "offload_fp8":
        # Layerwise casting cannot be undone in place; the backend rebuilds the transformer when needed.
        raise RuntimeError("the transformer holds float8 weights; reload it to leave offload_fp8")
    on_cuda = str(device).split(":")[0] == "cuda"
    if mode == "full" or not on_cuda:
        pipe.to(device)
    elif mode == "offload":
        pipe.enable_model_cpu_offload(device=device)
    elif mode == "offload_fp8":
        if not getattr(pipe, "_fp8", False):
            pipe.transformer.enable_layerwise_casting(
                storage_dtype=torch.float8_e4m3fn, compute_dtype=pipe.transformer.dtype
            )
            pipe._fp8 = True
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.enable_sequential_cpu_offload(device=device)
    # Slicing costs nothing at batch 1; tiling changes the numbers slightly, so only where needed.
    if hasattr(pipe.vae, "enable_slicing"):
        pipe.vae.enable_slicing()
    if area > VAE_TILING_AREA or mode == "sequential":
        pipe.vae.enable_tiling()
    else:
        pipe.vae.disable_tiling()
