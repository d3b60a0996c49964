"""The VOID backend as the daemon runs it: the resident model, its weights and memory mode.

What it adds around `VoidPipeline` (which is the reference inference on one clip), here and in the
two rooms beside it (`geometry`: the region at the model's size; `shot`: one job's segments and
passes):

- **Geometry.** Frames come at the size of the region the media plan chose (the whole plate, or a
  box around the mask). They are scaled to about the working area the model was trained at
  (384×672 pixels) *keeping their aspect*, then padded at the right and bottom to multiples of 16
  with their edge pixels (marked "keep" in the quadmask) instead of being squashed to 384×672 as
  the reference does; the result is cropped and scaled back to the region's size.
- **Long shots.** A shot longer than 197 frames is split into overlapping segments (balanced, see
  `helpers.segment_spans`); each is denoised on its own and the frames two segments share are
  cross-faded with a linear ramp.
- **Streaming.** Only the frames of the current segment (at working size) and the overlap with
  the next are held. A segment's results depend on all of its frames, so `temporal_context` asks
  the pipeline to feed a resumed job from the shot's first frame.
- **Memory.** The model stays resident between jobs. The memory mode (full / offload /
  offload_fp8 / sequential) is chosen from free VRAM unless set; a CUDA out-of-memory error in
  `auto` retries the segment once in the next lower mode, else fails the job with advice.
- **Pass 2.** With `passes=2` and `void_pass2.safetensors`, each segment is refined from noise
  warped along the optical flow of its pass-1 result (Go-with-the-Flow's noise warp, see `pass2`),
  with the pass-2 checkpoint, guidance 6, an empty negative prompt, the binarised mask and
  CogVideoXDDIMScheduler, as the reference's warped-noise script does (which runs one 85-frame
  window; here the segment's windows are blended as in pass 1). A job's `guidance` sets pass 1's;
  pass 2 keeps the reference's 6.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from voidlink.inference.backends import base
from voidlink.inference.backends.void import helpers, loading, memory, weights
from voidlink.inference.backends.void.geometry import REFERENCE_SIZE, Geometry
from voidlink.inference.backends.void.pipeline import VoidPipeline
from voidlink.inference.backends.void.shot import MEMORY_ENV, ShotRun

from voidlink.errors import InvalidInput, NotFound

log = logging.getLogger("voidlink.void")

PLAIN_NOTE = (
    "VOID regenerates the masked region and what the object did to the scene with a generative video "
    "model; different seeds give different plausible results."
)


@dataclass
class VoidSettings:
    """Sizes of one run; the defaults are the reference's. Tests shrink them for tiny models."""

    working_area: int = REFERENCE_SIZE[0] * REFERENCE_SIZE[1]
    temporal_window: int = helpers.TEMPORAL_WINDOW
    multidiffusion_stride: int = helpers.MULTIDIFFUSION_STRIDE
    max_frames: int = helpers.MAX_FRAMES
    segment_overlap: int = helpers.MULTIDIFFUSION_STRIDE
    max_sequence_length: int = 226


class VoidBackend(base.Backend):
    """VOID on CogVideoX-Fun, resident in the daemon between jobs."""

    name = "void"
    # A segment's frames are denoised together: a resumed job is fed again from the shot's start.
    temporal_context = 1 << 30
    # None: the region comes at its own size and aspect; `Geometry` scales it without distortion.
    working_size = None

    def __init__(
        self,
        weights_folder: Optional[Union[str, Path]] = None,
        *,
        pipeline: Optional[VoidPipeline] = None,
        device: Optional[Union[str, torch.device]] = None,
        memory_mode: Optional[str] = None,
        settings: Optional[VoidSettings] = None,
        text_encoder: bool = True,
        digests: Optional[weights.Digests] = None,
    ) -> None:
        """`text_encoder=False` loads the base model without T5 (embeddings only): every request must
        then carry `prompt_embeds` (and `negative_prompt_embeds` where guidance is used)."""
        self.weights_folder = Path(weights_folder) if weights_folder is not None else None
        self.text_encoder = text_encoder
        self.pipe = pipeline
        self.device = torch.device(device) if device is not None else self._default_device()
        self.memory_mode = (memory_mode or os.environ.get(MEMORY_ENV) or "auto").strip().lower()
        if self.memory_mode not in ("auto", *memory.MODES):
            raise InvalidInput(
                f"unknown VOID memory mode '{self.memory_mode}' (choose auto, {', '.join(memory.MODES)})",
                reason="BAD_MEMORY_MODE",
                field=MEMORY_ENV,
            )
        self.settings = settings or VoidSettings()
        self.mode: Optional[str] = None  # the memory mode in place
        self.mode_reason = ""
        self.checkpoint = "pass1" if pipeline is not None else ""  # which VOID weights the transformer holds
        self.load_notes: list[str] = []  # what each checkpoint load reported (also logged)
        self._load_warnings: dict[str, str] = {}  # the reports that are not clean, by file, shown in every job
        self._pass1_copy: Optional[dict] = None
        self.digests = digests
        self.checkpoint_files: dict[str, Path] = {}  # the VOID checkpoint files loaded, by name

    @staticmethod
    def _default_device() -> torch.device:
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")

    # -- loading ---------------------------------------------------------------------------------

    def load(self) -> None:
        if self.pipe is None:
            self._build()
        if self.mode is None:
            self._place(self._chosen_mode())

    def _build(self) -> None:
        """The pipeline from the weights folder, with the pass-1 VOID weights (on the CPU until placed)."""
        folder = self._folder()
        weights.require_weights(folder, need_text=self.text_encoder)
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        parts = loading.build_components(folder / weights.BASE, dtype, text=self.text_encoder)
        path = folder / weights.PASS1
        report = loading.load_checkpoint(parts["transformer"], path)
        loading.require_filled(parts.pop("transformer_unfilled"), report, str(path))
        self._record(weights.PASS1, report)
        self._remember(path)
        config = parts.pop("transformer_config")
        self.pipe = VoidPipeline(**parts)
        self.pipe.add_noise_in_inpaint_model = bool(config.get("add_noise_in_inpaint_model", False))
        self.checkpoint = "pass1"

    def _folder(self) -> Path:
        if self.weights_folder is None:
            from voidlink.inference.backends import weights_dir

            self.weights_folder = weights_dir()
        return self.weights_folder

    def _chosen_mode(self, area: Optional[int] = None) -> str:
        if self.memory_mode != "auto":
            self.mode_reason = f"set by {MEMORY_ENV}"
            return self.memory_mode
        if self.device.type != "cuda":
            self.mode_reason = "on the CPU"
            return "full"
        free = memory.free_vram(self.device)
        self.mode_reason = f"auto, {free / memory.GB:.1f} GB of VRAM free" if free is not None else "auto"
        return memory.choose_mode(free, area or self.settings.working_area)

    def _place(self, mode: str) -> None:
        assert self.pipe is not None
        if getattr(self.pipe, "_fp8", False) and mode != "offload_fp8":
            # Float8 storage cannot be undone in place: rebuild from the weights folder.
            self.pipe, self.mode, self.checkpoint = None, None, ""
            self._build()
        memory.apply_mode(self.pipe, mode, self.device, self.settings.working_area)
        self.mode = mode

    def _use_checkpoint(self, which: str, notes: list[str]) -> None:
        """Load the pass-1 or pass-2 VOID weights over the transformer (reference loading rules)."""
        if self.checkpoint == which:
            return
        assert self.pipe is not None
        transformer = self.pipe.transformer
        folder = self._folder()
        if which == "pass2":
            path = folder / weights.PASS2
            problem = weights.check_safetensors(path)
            if problem:
                raise NotFound(
                    f"pass 2 needs {weights.PASS2}: {problem}. On a machine with internet, run:\n  "
                    + "\n  ".join(weights.download_commands(folder)),
                    reason="WEIGHTS_MISSING",
                    file=str(path),
                    field="spec.params.passes",
                )
            if weights.check_safetensors(folder / weights.PASS1) is not None and self._pass1_copy is None:
                # No pass-1 file to come back to (a model handed in directly): keep its weights on the CPU.
                self._pass1_copy = {k: v.detach().to("cpu", copy=True) for k, v in transformer.state_dict().items()}
            self._record(weights.PASS2, loading.load_checkpoint(transformer, path))
            self._remember(path)
        elif self._pass1_copy is not None:
            transformer.load_state_dict(self._pass1_copy)
        else:
            loading.load_checkpoint(transformer, folder / weights.PASS1)
        self.checkpoint = which

    def _remember(self, path: Path) -> None:
        """Note a checkpoint file in use and start hashing it for the results' provenance."""
        self.checkpoint_files[path.name] = path
        if self.digests is None:
            self.digests = weights.Digests()
        self.digests.start(path)

    def provenance(self, passes: int) -> dict[str, str]:
        """What of this backend's state made a result: device, memory mode, each checkpoint's SHA-256."""
        device = self.device
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        out = {"device": f"{device} ({name})" if device.type == "cuda" else name, "memory_mode": self.mode or ""}
        for file in (weights.PASS1, weights.PASS2)[:passes]:
            path = self.checkpoint_files.get(file)
            if path is not None and self.digests is not None:
                out[f"weights.{file}"] = self.digests.get(path)
            else:
                out[f"weights.{file}"] = "a model handed in, not loaded from a file"
        if self.weights_folder is not None:
            out["weights.base"] = weights.BASE
        return out

    def _record(self, name: str, report: loading.LoadReport) -> None:
        text = f"{name}: {report.summary()}"
        self.load_notes.append(text)
        log.info("VOID weights %s", text)
        if report.clean:
            self._load_warnings.pop(name, None)
        else:
            self._load_warnings[name] = f"Loaded with strict=False as the reference does; {text}."

    # -- the Backend interface -------------------------------------------------------------------

    def notes(self) -> list[str]:
        from voidlink.inference.backends.void.licences import licences

        return [PLAIN_NOTE, *self._load_warnings.values(), *(f"Licence: {line}" for line in licences(self._folder()))]

    def run(self, frames: Iterator[base.BackendFrame], request: base.BackendRequest) -> Iterator[base.BackendResult]:
        if self.pipe is None or self.mode is None:
            self.load()
        return ShotRun(self, request).run(iter(frames))


# -- library calls ------------------------------------------------------------------------------------

ArrayFrames = Union[Sequence[np.ndarray], Iterable[np.ndarray]]


def remove_stream(
    frames: ArrayFrames,
    quadmasks: ArrayFrames,
    backend: VoidBackend,
    prompt: str = "",
    request: Optional[base.BackendRequest] = None,
) -> Iterator[np.ndarray]:
    """Remove what the quadmasks mark from in-memory frames with a loaded VOID backend, yielding results.

    frames: (H, W, 3) float 0–1 RGB; quadmasks: (H, W) uint8 (0 object, 63 overlap, 127 affected,
    255 keep). With sequences the frames stream segment by segment; other iterables are read first.
    """
    request = request or base.BackendRequest(prompt=prompt)
    if isinstance(frames, Sequence):
        request.first, request.last = 0, len(frames) - 1

    def paired() -> Iterator[base.BackendFrame]:
        for index, (image, quadmask) in enumerate(zip(frames, quadmasks)):
            yield base.BackendFrame(index=index, image=np.asarray(image, np.float32), quadmask=np.asarray(quadmask))

    for result in backend.run(paired(), request):
        yield result.image


def remove(frames: ArrayFrames, quadmasks: ArrayFrames, backend: VoidBackend, prompt: str = "") -> list[np.ndarray]:
    """Remove what the quadmasks mark; returns the frames in order (see `remove_stream`)."""
    return list(remove_stream(frames, quadmasks, backend, prompt))


__all__ = ["Geometry", "VoidBackend", "VoidSettings", "remove", "remove_stream"]
