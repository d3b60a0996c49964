"""One VOID job over a shot: its frames taken in at the model's size, split into overlapping
segments, each denoised (and refined by pass 2) then cross-faded and streamed out; an out-of-memory
error retried once in a lower memory mode.

`VoidBackend.run` makes one `ShotRun` a job; the backend (model, memory mode, checkpoints) is shared
between jobs, a run's state (geometry, notes, seed) is not.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Protocol

import numpy as np
import torch
from voidlink.inference.backends import base
from voidlink.inference.backends.void import helpers, memory
from voidlink.inference.backends.void.geometry import REFERENCE_SIZE, Geometry
from voidlink.inference.backends.void.pipeline import NEGATIVE_PROMPT, VoidPipeline

from voidlink.errors import InvalidInput, VoidlinkError


class ResidentModel(Protocol):
    """What a run asks of the backend that holds the model (`VoidBackend`), shared between jobs."""

    pipe: Optional[VoidPipeline]
    settings: Any  # VoidSettings
    device: torch.device
    mode: Optional[str]
    mode_reason: str
    memory_mode: str

    def _place(self, mode: str) -> None: ...

    def _use_checkpoint(self, which: str, notes: list[str]) -> None: ...

    def provenance(self, passes: int) -> dict[str, str]: ...

# The reference's sampling defaults (config/quadmask_cogvideox.py).
DEFAULT_SEED = 42
PASS1_GUIDANCE = 1.0
PASS2_GUIDANCE = 6.0
PASS2_NEGATIVE_PROMPT = ""  # inference_with_pass1_warped_noise.py passes an empty one
STEPS = {"draft": 25, "balanced": 50, "best": 50}
MEMORY_ENV = "VOIDLINK_VOID_MEMORY"


@dataclass
class Held:
    """One frame taken in: at the model's padded size, with its quadmask."""

    index: int
    image: np.ndarray  # at the model's padded size
    quadmask: np.ndarray


def _out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "out of memory" in str(error).lower()
    )


class ShotRun:
    """One job: segments over the shot, each denoised (and refined) then streamed out."""

    def __init__(self, backend: ResidentModel, request: base.BackendRequest) -> None:
        self.backend = backend
        self.request = request
        self.settings = backend.settings
        quality = (request.quality or "balanced").strip().lower()
        self.steps = request.steps or STEPS.get(quality, STEPS["balanced"])
        self.guidance = request.guidance or PASS1_GUIDANCE
        self.seed = DEFAULT_SEED if request.seed is None else int(request.seed)
        self.passes = request.passes or 1
        if self.passes not in (1, 2):
            raise InvalidInput(
                f"VOID runs 1 or 2 passes, not {self.passes}", reason="BAD_PASSES", field="spec.params.passes"
            )
        self.geometry: Optional[Geometry] = None
        self.noted: set[str] = set()
        self.retried = False
        self._check_embeddings()

    def _check_embeddings(self) -> None:
        """Refuse, before any frame is read, a request the loaded pipeline cannot encode."""
        pipe = self.backend.pipe
        request = self.request
        encodes = pipe is not None and pipe.text_encoder is not None and pipe.tokenizer is not None
        if request.prompt_embeds is None:
            if not encodes:
                raise InvalidInput(
                    "this VOID backend was loaded without the T5 text encoder (embeddings only): the request must "
                    "carry prompt_embeds, or load the backend with the text encoder",
                    reason="NO_TEXT_ENCODER",
                    field="prompt_embeds",
                )
            return
        guided = self.guidance > 1.0 or self.passes == 2
        if guided and request.negative_prompt_embeds is None:
            raise InvalidInput(
                f"guidance {PASS2_GUIDANCE if self.passes == 2 else self.guidance:g} needs negative_prompt_embeds "
                "beside prompt_embeds",
                reason="NO_NEGATIVE_EMBEDDINGS",
                field="negative_prompt_embeds",
            )

    def _note(self, text: str) -> None:
        if text not in self.noted:
            self.noted.add(text)
            self.request.notes.append(text)

    # -- input -------------------------------------------------------------------------------------

    def _ingest(self, frame: base.BackendFrame) -> Held:
        if self.request.cancelled():
            raise base.Cancelled()
        image = np.asarray(frame.image, dtype=np.float32)
        quadmask = np.asarray(frame.quadmask)
        if image.ndim != 3 or image.shape[2] != 3:
            raise InvalidInput(
                f"frame {frame.index}: expected an (H, W, 3) image, got shape {image.shape}",
                reason="BAD_FRAME",
                frame=frame.index,
            )
        if quadmask.shape != image.shape[:2]:
            raise InvalidInput(
                f"frame {frame.index}: the quadmask is {quadmask.shape}, the image {image.shape[:2]}",
                reason="BAD_FRAME",
                frame=frame.index,
            )
        size = (image.shape[1], image.shape[0])
        if self.geometry is None:
            self.geometry = Geometry.for_size(size, self.settings.working_area)
            g = self.geometry
            self._note(
                f"VOID processed the {size[0]}x{size[1]} region at {g.scaled[0]}x{g.scaled[1]} "
                f"(aspect kept; padded to {g.padded[0]}x{g.padded[1]})."
            )
        elif size != self.geometry.size:
            raise InvalidInput(
                f"frame {frame.index} is {size[0]}x{size[1]}, earlier frames {self.geometry.size[0]}x"
                f"{self.geometry.size[1]}; a shot must keep one size",
                reason="SIZE_MISMATCH",
                frame=frame.index,
            )
        if not np.isfinite(image).all():
            image = np.nan_to_num(image, nan=0.0, posinf=1.0, neginf=0.0)
        levels = helpers.quantize_quadmask(_levels(quadmask, frame.index))
        model_image, model_mask = self.geometry.to_model(image, levels)
        return Held(frame.index, model_image, model_mask)

    def run(self, frames: Iterator[base.BackendFrame]) -> Iterator[base.BackendResult]:
        request = self.request
        length = request.last - request.first + 1 if request.last >= request.first and request.last else 0
        if length <= 0:
            # Library use with no frame range: the frames are counted first (held at working size).
            held = [self._ingest(frame) for frame in frames]
            length, source = len(held), iter(held)
        else:
            source = (self._ingest(frame) for frame in frames)
        if length == 0:
            return
        segments = helpers.segment_spans(length, self.settings.max_frames, self.settings.segment_overlap)
        if len(segments) > 1 and request.latents is not None:
            raise InvalidInput(
                f"initial latents fit a shot of at most {self.settings.max_frames} frames (one segment); this one "
                f"has {length}",
                reason="BAD_LATENTS",
                field="latents",
            )
        if len(segments) > 1:
            self._note(
                f"The shot's {length} frames were denoised in {len(segments)} overlapping segments of at most "
                f"{self.settings.max_frames} frames, cross-faded over {segments[1].blend_in} frames."
            )
        buffer: list[Held] = []  # frames from the current segment's start
        tail: Optional[np.ndarray] = None  # previous segment's results over the overlap
        consumed = 0
        for number, segment in enumerate(segments):
            while consumed < segment.end:
                item = next(source, None)
                if item is None:
                    break
                buffer.append(item)
                consumed += 1
            if not buffer:
                return
            results = self._segment(buffer, number, len(segments))
            following = segments[number + 1].start if number + 1 < len(segments) else segment.start + len(buffer)
            emit = following - segment.start
            blend = min(segment.blend_in, 0 if tail is None else len(tail))
            weights_in = helpers.segment_weights(blend)
            for k in range(min(emit, len(buffer))):
                image = results[k]
                if k < blend:
                    w = float(weights_in[k])
                    image = (1.0 - w) * tail[k] + w * image
                assert self.geometry is not None
                yield base.BackendResult(buffer[k].index, self.geometry.from_model(image))
            tail = results[emit:]
            buffer = buffer[emit:]
        # Frames beyond the planned range (a stream longer than request.first..last) are refused, not dropped.
        extra = next(source, None)
        if extra is not None:
            raise InvalidInput(
                f"frame {extra.index} is past the shot's last frame {request.last}",
                reason="BAD_FRAME",
                frame=extra.index,
            )

    # -- one segment -------------------------------------------------------------------------------

    def _record_provenance(self) -> None:
        request = self.request
        request.provenance.update(
            {
                "seed": str(self.seed),
                "steps": str(self.steps),
                "guidance": f"{self.guidance:g}",
                "passes": str(self.passes),
                **self.backend.provenance(self.passes),
            }
        )
        if self.passes == 2:
            request.provenance["guidance.pass2"] = f"{PASS2_GUIDANCE:g}"
        if request.prompt_embeds is not None:
            request.provenance["prompt_embeds"] = "given with the request (the prompt was not encoded)"
        if request.latents is not None:
            request.provenance["latents"] = "given with the request (the seed did not draw them)"

    def _segment(self, held: Sequence[Held], number: int, count: int) -> np.ndarray:
        video = np.stack([item.image for item in held])
        quadmask = np.stack([item.quadmask for item in held])
        label = f"frames {held[0].index}-{held[-1].index}" + (f", segment {number + 1}/{count}" if count > 1 else "")
        self.request.on_message(f"VOID: denoising {label} ({self.steps} steps, memory mode {self.backend.mode})")
        self._note(f"VOID ran in memory mode {self.backend.mode} ({self.backend.mode_reason}).")
        while True:
            try:
                results = self._passes(video, quadmask, label)
                # After the passes: the memory mode they ran in (an out-of-memory retry changes it).
                self._record_provenance()
                return results
            except base.Cancelled:
                raise
            except Exception as error:  # noqa: BLE001 - only out-of-memory is handled here
                if not _out_of_memory(error):
                    raise
                self._out_of_memory(error)

    def _out_of_memory(self, error: BaseException) -> None:
        backend = self.backend
        if backend.device.type == "cuda":
            torch.cuda.empty_cache()
        lower = memory.lower_mode(backend.mode or "full")
        if backend.memory_mode == "auto" and not self.retried and lower is not None:
            self.retried = True
            self._note(f"CUDA ran out of memory in memory mode {backend.mode}; retried in {lower}.")
            backend.mode_reason = f"after running out of memory in {backend.mode}"
            self.request.on_message(f"VOID: out of GPU memory in {backend.mode}, retrying in {lower}")
            backend._place(lower)
            return
        area = self.geometry.scaled if self.geometry is not None else REFERENCE_SIZE
        advice = (
            f"set {MEMORY_ENV}={lower} (or auto) and restart the daemon"
            if lower is not None
            else "free GPU memory used by other programs"
        )
        raise VoidlinkError(
            f"the GPU ran out of memory running VOID in memory mode {backend.mode} at {area[0]}x{area[1]} "
            f"({error}); {advice}, or use a smaller crop (crop mode 'shot' around the mask) or a shorter "
            "frame range. The daemon is still serving.",
            reason="GPU_OUT_OF_MEMORY",
            field="spec.params",
        ) from error

    def _call(
        self, video: np.ndarray, quadmask: np.ndarray, label: str, pass_name: str, negative_prompt: str, **kwargs: Any
    ) -> Any:
        pipe = self.backend.pipe
        assert pipe is not None
        message = self.request.on_message

        def progress(step: int, steps: int, window: int, windows: int) -> None:
            where = f", window {window + 1}/{windows}" if windows > 1 else ""
            message(f"VOID {label}, {pass_name}: step {step + 1}/{steps}{where}")

        generator = torch.Generator(device=self.backend.device if self.backend.device.type == "cuda" else "cpu")
        generator.manual_seed(self.seed)
        request = self.request
        out = pipe(
            video,
            quadmask,
            prompt=request.prompt,
            negative_prompt=negative_prompt,
            prompt_embeds=request.prompt_embeds,
            negative_prompt_embeds=request.negative_prompt_embeds,
            num_inference_steps=self.steps,
            generator=generator,
            temporal_window_size=self.settings.temporal_window,
            temporal_multidiffusion_stride=self.settings.multidiffusion_stride,
            max_frames=self.settings.max_frames,
            max_sequence_length=self.settings.max_sequence_length,
            callback=progress,
            cancelled=self.request.cancelled,
            **kwargs,
        )
        for note in out.notes:
            self._note(f"Warning: {note}.")
        return out

    def _passes(self, video: np.ndarray, quadmask: np.ndarray, label: str) -> np.ndarray:
        backend = self.backend
        passes = self.passes
        pass_names = ("pass 1/2", "pass 2/2") if passes == 2 else ("pass 1",)
        backend._use_checkpoint("pass1", self.request.notes)
        negative = self.request.negative_prompt or NEGATIVE_PROMPT
        first = self._call(
            video, quadmask, label, pass_names[0], negative, guidance_scale=self.guidance, latents=self.request.latents
        ).frames
        if passes == 1:
            return first
        from voidlink.inference.backends.void import pass2

        pipe = backend.pipe
        assert pipe is not None
        s = self.settings
        height, width = video.shape[1:3]
        shape = pipe.latent_shape(len(video), height, width, s.temporal_window, s.max_frames)
        order = helpers.padding_indices(len(first), helpers.padded_length(len(first), s.temporal_window, s.max_frames))
        self.request.on_message(f"VOID {label}: optical flow of the pass-1 result for the warped noise")
        # Go-with-the-Flow's noise warp, as the reference's pass 2 builds its initial latents; the
        # noise field is 16× the frame's pixels, so it is warped on the GPU when there is one.
        noise, method = pass2.warped_noise(
            first[order],
            shape,
            pipe.vae_scale_factor_temporal,
            torch.Generator().manual_seed(self.seed),
            device=backend.device,
        )
        self._note(f"Pass 2 warped its initial noise along {method} optical flow of the pass-1 result.")
        backend._use_checkpoint("pass2", self.request.notes)
        from diffusers import CogVideoXDDIMScheduler

        # The reference's pass 2: CogVideoXDDIMScheduler from the same config, an empty negative prompt,
        # guidance 6 and the mask binarised (affected pixels are regenerated too), on the original video.
        return self._call(
            video,
            quadmask,
            label,
            pass_names[1],
            self.request.negative_prompt or PASS2_NEGATIVE_PROMPT,
            guidance_scale=PASS2_GUIDANCE,
            latents=noise.to(pipe.transformer.dtype),
            use_trimask=False,
            scheduler=CogVideoXDDIMScheduler.from_config(pipe.scheduler.config),
        ).frames


def _levels(quadmask: np.ndarray, index: int) -> np.ndarray:
    """A frame's quadmask in 0–255: uint8 as it is, floats as the media layer reads mattes (0–1, so
    1.0 is keep). A float mask past 1 is refused: read as 0–1 it would be one level, read as 0–255
    another, and either guess regenerates the wrong pixels."""
    if quadmask.dtype.kind != "f":
        return quadmask
    values = np.nan_to_num(quadmask.astype(np.float32), nan=1.0)
    if values.size and (values.max() > 1.0 or values.min() < 0.0):
        raise InvalidInput(
            f"frame {index}: the quadmask is float with values from {values.min():g} to {values.max():g}; "
            "give it as uint8 (0 object, 63 overlap, 127 affected, 255 keep) or as float 0–1",
            reason="BAD_FRAME",
            frame=index,
        )
    return values * 255.0
