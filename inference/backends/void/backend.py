"""The VOID backend as the daemon runs it: resident model, segments, geometry, memory modes, pass 2.

What it adds around `VoidPipeline` (which is the reference inference on one clip):

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
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import cv2
import numpy as np
import torch
from voidlink.inference.backends import base
from voidlink.inference.backends.void import helpers, memory, weights
from voidlink.inference.backends.void.pipeline import NEGATIVE_PROMPT, VoidPipeline
from voidlink.media.quadmask import KEEP

from voidlink.errors import InvalidInput, NotFound, VoidlinkError

# The reference's sampling defaults (config/quadmask_cogvideox.py).
DEFAULT_SEED = 42
PASS1_GUIDANCE = 1.0
PASS2_GUIDANCE = 6.0
PASS2_NEGATIVE_PROMPT = ""  # inference_with_pass1_warped_noise.py passes an empty one
STEPS = {"draft": 25, "balanced": 50, "best": 50}
# (width, height) the reference samples at; the working area keeps this many pixels per frame.
REFERENCE_SIZE = (672, 384)
SIZE_UNIT = 16  # 8× VAE × 2× patch
MEMORY_ENV = "VOIDLINK_VOID_MEMORY"

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


@dataclass(frozen=True)
class Geometry:
    """How a region of `size` maps onto the model's frame: scaled to `scaled`, padded to `padded`."""

    size: tuple[int, int]  # (width, height) of the frames given
    scaled: tuple[int, int]
    padded: tuple[int, int]

    @staticmethod
    def for_size(size: tuple[int, int], area: int, unit: int = SIZE_UNIT) -> Geometry:
        width, height = size
        scale = math.sqrt(area / float(width * height))
        scaled = (max(unit, int(round(width * scale))), max(unit, int(round(height * scale))))
        padded = (-(-scaled[0] // unit) * unit, -(-scaled[1] // unit) * unit)
        return Geometry(size, scaled, padded)

    def to_model(self, image: np.ndarray, quadmask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Frame and quadmask at the model's padded size; padding repeats the edge and is marked keep.

        Resampling: the reference squashes video and mask with torch's area filter
        (`F.interpolate(mode="area")`, an average over whole source pixels, which OpenCV's area
        filter is not at non-integer factors); so do the mask, always, and the frame when it shrinks,
        then the reference's quantisation of the mask's greys. A frame that grows (a crop smaller
        than the working area, which the reference never makes) is scaled with a bicubic filter
        instead: the area filter would only repeat its pixels.
        """
        if self.scaled != self.size:
            shrinking = self.scaled[0] < self.size[0]
            if shrinking:
                image = area_resize(image, self.scaled)
            else:
                image = cv2.resize(image, self.scaled, interpolation=cv2.INTER_CUBIC)
            quadmask = helpers.quantize_quadmask(area_resize(quadmask.astype(np.float32), self.scaled))
        pad_x, pad_y = self.padded[0] - self.scaled[0], self.padded[1] - self.scaled[1]
        if pad_x or pad_y:
            image = cv2.copyMakeBorder(image, 0, pad_y, 0, pad_x, cv2.BORDER_REPLICATE)
            quadmask = cv2.copyMakeBorder(quadmask, 0, pad_y, 0, pad_x, cv2.BORDER_CONSTANT, value=KEEP)
        return np.clip(image, 0.0, 1.0).astype(np.float32), quadmask.astype(np.uint8)

    def from_model(self, image: np.ndarray) -> np.ndarray:
        """The model's frame back at the region's size: OpenCV's filters (the reference scales nothing back)."""
        image = image[: self.scaled[1], : self.scaled[0]]
        if self.scaled == self.size:
            return np.ascontiguousarray(image, dtype=np.float32)
        growing = self.size[0] > self.scaled[0]
        return cv2.resize(image, self.size, interpolation=cv2.INTER_CUBIC if growing else cv2.INTER_AREA).astype(
            np.float32
        )


def area_resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W[, C]) float → (height, width[, C]) at `size` = (width, height), with torch's area filter.

    The reference's `F.interpolate(mode="area")`: each output pixel is the mean of the source pixels
    its footprint touches (adaptive average pooling), in float32.
    """
    pixels = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    flat = pixels.ndim == 2
    planes = pixels[None, None] if flat else pixels.permute(2, 0, 1)[None]
    out = torch.nn.functional.interpolate(planes, size=(size[1], size[0]), mode="area")[0]
    return (out[0] if flat else out.permute(1, 2, 0)).numpy()


@dataclass
class _Held:
    index: int
    image: np.ndarray  # at the model's padded size
    quadmask: np.ndarray


def _out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "out of memory" in str(error).lower()
    )


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
        parts = weights.build_components(folder / weights.BASE, dtype, text=self.text_encoder)
        path = folder / weights.PASS1
        report = weights.load_checkpoint(parts["transformer"], path)
        weights.require_filled(parts.pop("transformer_unfilled"), report, str(path))
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
            self._record(weights.PASS2, weights.load_checkpoint(transformer, path))
            self._remember(path)
        elif self._pass1_copy is not None:
            transformer.load_state_dict(self._pass1_copy)
        else:
            weights.load_checkpoint(transformer, folder / weights.PASS1)
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

    def _record(self, name: str, report: weights.LoadReport) -> None:
        text = f"{name}: {report.summary()}"
        self.load_notes.append(text)
        log.info("VOID weights %s", text)
        if report.clean:
            self._load_warnings.pop(name, None)
        else:
            self._load_warnings[name] = f"Loaded with strict=False as the reference does; {text}."

    # -- the Backend interface -------------------------------------------------------------------

    def notes(self) -> list[str]:
        return [PLAIN_NOTE, *self._load_warnings.values()]

    def run(self, frames: Iterator[base.BackendFrame], request: base.BackendRequest) -> Iterator[base.BackendResult]:
        if self.pipe is None or self.mode is None:
            self.load()
        return _Run(self, request).run(iter(frames))


class _Run:
    """One job: segments over the shot, each denoised (and refined) then streamed out."""

    def __init__(self, backend: VoidBackend, request: base.BackendRequest) -> None:
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

    def _ingest(self, frame: base.BackendFrame) -> _Held:
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
        model_image, model_mask = self.geometry.to_model(image, helpers.quantize_quadmask(quadmask))
        return _Held(frame.index, model_image, model_mask)

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
        buffer: list[_Held] = []  # frames from the current segment's start
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

    def _segment(self, held: Sequence[_Held], number: int, count: int) -> np.ndarray:
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
