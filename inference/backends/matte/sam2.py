"""Tracking the clicked object through the range with SAM 2.1 or EdgeTAM (transformers' video models).

Every prompt frame becomes a conditioning frame of one tracked object; the matte is propagated
forward from the first prompt frame to the range's end and backward from it to the range's start,
each frame attending to every prompt (so a later prompt corrects the frames around it).

Frames stream: the inference session's frame table reads and preprocesses a frame only when the
model asks for it (keeping the last two), and the per-frame memory the model will not look at
again is dropped as the tracking moves on, so a long shot costs a bounded amount of memory.

Preprocessing is done here (resize to the model's square input, ImageNet normalisation, values
from the folder's preprocessor config when it has one): transformers' SAM 2 processors need
torchvision, which the daemon does not require.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

import numpy as np
from voidlink.inference.backends.matte.base import Cancelled, FrameReader, MatteRequest, Prompt, Tracker
from voidlink.inference.backends.matte.weights import EDGETAM, ModelFiles, find_sam2, open_weights

from voidlink.errors import InvalidInput

__all__ = ["EdgeTamTracker", "Preprocess", "Sam2Tracker", "pick_device"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PREPROCESSOR_FILES = ("preprocessor_config.json", "video_preprocessor_config.json", "processor_config.json")
OBJECT_ID = 1


def pick_device(device: Optional[str] = None) -> tuple[Any, Any]:
    """(device, dtype): CUDA with bf16 (fp16 where bf16 is not supported) when there is one, else CPU float32."""
    import torch

    chosen = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if chosen.type == "cuda":
        return chosen, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return chosen, torch.float32


class Preprocess:
    """RGB float32 (H, W, 3) 0-1 -> the model's (3, S, S) input, as the folder's processor config says."""

    def __init__(
        self,
        folder: Path,
        image_size: int,
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
    ) -> None:
        self.size = (int(image_size), int(image_size))
        self.mean, self.std = mean, std
        for name in PREPROCESSOR_FILES:
            path = Path(folder) / name
            if not path.is_file():
                continue
            try:
                config = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            config = config.get("image_processor", config)  # processor_config.json nests it
            self.mean = tuple(config.get("image_mean", self.mean))
            self.std = tuple(config.get("image_std", self.std))
            size = config.get("size") or {}
            if "height" in size and "width" in size:
                self.size = (int(size["height"]), int(size["width"]))
            break

    def __call__(self, image: np.ndarray, device: Any, dtype: Any) -> Any:
        import torch
        import torch.nn.functional as F

        pixels = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
        pixels = F.interpolate(pixels.clamp(0, 1), size=self.size, mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, 3, 1, 1)
        return ((pixels - mean) / std)[0].to(device=device, dtype=dtype)


class LazyFrames(Mapping):
    """The session's frame table: position -> preprocessed frame, read from the reader when asked for."""

    def __init__(self, reader: FrameReader, frames: Sequence[int], preprocess: Preprocess, device: Any, dtype: Any):
        self.reader, self.frames, self.preprocess = reader, list(frames), preprocess
        self.device, self.dtype = device, dtype
        self._cache: OrderedDict[int, Any] = OrderedDict()
        self.reads = 0

    def __getitem__(self, position: int) -> Any:
        if not 0 <= position < len(self.frames):
            raise KeyError(position)
        if position not in self._cache:
            self.reads += 1
            self._cache[position] = self.preprocess(self.reader.read(self.frames[position]), self.device, self.dtype)
            while len(self._cache) > 2:
                self._cache.popitem(last=False)
        return self._cache[position]

    def __setitem__(self, position: int, value: Any) -> None:  # a streamed frame: not used, kept for the API
        self._cache[position] = value

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.frames)))

    def __len__(self) -> int:
        return len(self.frames)


def merge_prompts(prompts: Sequence[Prompt], frames: Sequence[int]) -> dict[int, Prompt]:
    """The prompts by frame, several on one frame merged; raises naming a prompt outside the range."""
    known = set(frames)
    merged: dict[int, Prompt] = {}
    for prompt in prompts:
        if prompt.frame not in known:
            raise InvalidInput(
                f"the prompt on frame {prompt.frame} is outside the range {frames[0]}-{frames[-1]}",
                reason="PROMPT_OUTSIDE_RANGE",
                field="spec.matte.prompts",
                frame=prompt.frame,
            )
        before = merged.get(prompt.frame)
        if before is None:
            merged[prompt.frame] = prompt
            continue
        shape = before.shape
        if prompt.shape is not None:
            shape = prompt.shape if shape is None else np.logical_or(shape, prompt.shape)
        merged[prompt.frame] = Prompt(prompt.frame, before.points + prompt.points, before.boxes + prompt.boxes, shape)
    return merged


class Sam2Tracker(Tracker):
    """SAM 2.1 (the largest whole `sam2.1-hiera-*` folder in the weights folder), resident once loaded."""

    name = "sam2"
    model_class = "Sam2VideoModel"
    session_module = "transformers.models.sam2_video.modeling_sam2_video"
    session_class = "Sam2VideoInferenceSession"

    def __init__(
        self,
        weights: Optional[str] = None,
        *,
        folder: Optional[Path] = None,
        device: Optional[str] = None,
        digests: Any = None,
    ) -> None:
        """`weights`: the weights folder (None: the default); `folder`: a model folder of any name instead;
        `digests`: the daemon's `Digests` (weights' SHA-256 remembered across restarts), else one of its own."""
        from voidlink.inference.backends import weights_dir

        self.weights = weights_dir(weights) if folder is None else Path(folder).parent
        self.model_files = self._model_files(self.weights)
        if folder is not None:  # a folder of its own name (tests, a fine-tuned copy)
            self.model_files = replace(self.model_files, folder=Path(folder).name)
        self.folder = self.weights / self.model_files.folder
        self.device_name = device
        self.model: Any = None
        self.preprocess: Optional[Preprocess] = None
        self._lock = threading.Lock()
        self._digests: Any = digests
        self._weights_files: list[Path] = []
        self.last_frames: Optional[LazyFrames] = None  # the last track's frame table (how many reads it took)

    @staticmethod
    def _model_files(weights: Path) -> ModelFiles:
        return find_sam2(weights).model

    def load(self) -> None:
        """Load weights and processor settings from the folder (local files only); once."""
        with self._lock:
            if self.model is not None:
                return
            self._weights_files, self._digests = open_weights(
                self.weights, self.model_files, self.folder, self._digests
            )
            import transformers

            self.device, self.dtype = pick_device(self.device_name)
            model_class = getattr(transformers, self.model_class)
            try:
                model = model_class.from_pretrained(str(self.folder), local_files_only=True, dtype=self.dtype)
            except Exception as error:  # noqa: BLE001 - re-raised naming the folder
                raise InvalidInput(
                    f"{self.folder}: cannot load {self.model_files.label} ({error})",
                    reason="BAD_WEIGHTS",
                    file=str(self.folder),
                ) from error
            self.model = model.to(self.device).eval().requires_grad_(False)
            self.preprocess = Preprocess(self.folder, int(self.model.config.image_size))

    # -- tracking ------------------------------------------------------------------------------------

    def track(
        self, reader: FrameReader, prompts: Sequence[Prompt], request: MatteRequest
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (frame, matte) once for every frame of the range: forward from the first prompt, then back."""
        import importlib

        import torch

        frames = list(reader.frames)
        if not frames:
            return
        if not prompts:
            raise InvalidInput("no prompt: click the object on a frame", reason="NO_PROMPT", field="spec.matte.prompts")
        by_frame = merge_prompts(prompts, frames)
        self.load()
        width, height = reader.size
        position = {frame: index for index, frame in enumerate(frames)}
        session_class = getattr(importlib.import_module(self.session_module), self.session_class)
        session = session_class(
            video=None,
            video_height=height,
            video_width=width,
            inference_device=self.device,
            inference_state_device=self.device,
            video_storage_device=self.device,
            dtype=self.dtype,
            max_vision_features_cache_size=1,
        )
        table = LazyFrames(reader, frames, self.preprocess, self.device, self.dtype)
        session.processed_frames = table
        self.last_frames = table
        object_index = session.obj_id_to_idx(OBJECT_ID)
        self._provenance(request)
        if any(p.shape is not None and (p.points or p.boxes) for p in by_frame.values()):
            request.notes.append("a frame with both a drawn shape and clicks is prompted with the shape only")
        if any(len(p.boxes) > 1 for p in by_frame.values() if p.shape is None):
            request.notes.append("several boxes on one frame are prompted as the box around them all")
        request.notes.append(f"{self.model_files.label}: the matte is the model's estimate; check the edges")

        config = self.model.config
        reach = max(int(getattr(config, "num_maskmem", 7)), int(getattr(config, "max_object_pointers_in_encoder", 16)))
        window = reach + 1
        first = position[min(by_frame)]
        done: set[int] = set()

        def emit(output: Any) -> Optional[tuple[int, np.ndarray]]:
            index = int(output.frame_idx)
            self._prune(session, object_index, index, first, window)
            if index in done:
                return None
            done.add(index)
            return frames[index], self._matte(output.pred_masks, height, width)

        # Inference mode only around the model's own work: never held while the caller runs between
        # yields (the iterator below enters and leaves it on each step).
        for frame in sorted(by_frame):
            self._check(request)
            request.on_message(f"reading the prompt on frame {frame}")
            with torch.inference_mode():
                self._add_prompt(session, object_index, position[frame], by_frame[frame], width, height)
                self.model(inference_session=session, frame_idx=position[frame])
        for reverse in (False, True):
            if reverse and first == 0:
                break
            request.on_message(f"tracking {'backward' if reverse else 'forward'} from frame {frames[first]}")
            steps = self.model.propagate_in_video_iterator(session, start_frame_idx=first, reverse=reverse)
            try:
                for output in steps:
                    with torch.inference_mode():
                        result = emit(output)
                    if result is not None:
                        yield result
                    self._check(request)
            finally:
                steps.close()
        session.reset_inference_session()

    @staticmethod
    def _check(request: MatteRequest) -> None:
        if request.cancelled():
            raise Cancelled()

    def _provenance(self, request: MatteRequest) -> None:
        request.provenance["tracker"] = self.name
        request.provenance["model"] = self.model_files.repo
        request.provenance["device"] = f"{self.device.type} {str(self.dtype).replace('torch.', '')}"
        for path in self._weights_files:
            key = "weights_sha256" if len(self._weights_files) == 1 else f"weights_sha256:{path.name}"
            request.provenance[key] = self._digests.get(path)

    def _add_prompt(self, session: Any, obj: int, index: int, prompt: Prompt, width: int, height: int) -> None:
        """A frame's prompt into the session as the processor would put it (points, box, or mask)."""
        import torch
        import torch.nn.functional as F

        size = int(self.model.config.image_size)
        if prompt.shape is not None:
            shape = np.asarray(prompt.shape, dtype=bool)
            if shape.shape != (height, width):
                raise InvalidInput(
                    f"the shape on frame {prompt.frame} is {shape.shape[1]}x{shape.shape[0]}, "
                    f"the frames {width}x{height}",
                    reason="SIZE_MISMATCH",
                    field="spec.matte.prompts",
                    frame=prompt.frame,
                )
            mask = torch.from_numpy(shape.astype(np.float32))[None, None]
            mask = F.interpolate(mask, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            session.add_mask_inputs(obj, index, (mask >= 0.5).float().to(self.device))
            session.remove_point_inputs(obj, index)
        else:
            # Our pixel centres are at +0.5; SAM adds the half pixel itself, to pixel indices in its own size.
            sx, sy = size / width, size / height
            coords: list[tuple[float, float]] = []
            labels: list[int] = []
            if prompt.boxes:
                x0 = min(min(b[0], b[2]) for b in prompt.boxes)
                y0 = min(min(b[1], b[3]) for b in prompt.boxes)
                x1 = max(max(b[0], b[2]) for b in prompt.boxes)
                y1 = max(max(b[1], b[3]) for b in prompt.boxes)
                coords += [(x0 * sx - 0.5, y0 * sy - 0.5), (x1 * sx - 0.5, y1 * sy - 0.5)]
                labels += [2, 3]
            for x, y, positive in prompt.points:
                coords.append((x * sx - 0.5, y * sy - 0.5))
                labels.append(1 if positive else 0)
            session.add_point_inputs(
                obj,
                index,
                {
                    "point_coords": torch.tensor([[coords]], dtype=torch.float32),
                    "point_labels": torch.tensor([[labels]], dtype=torch.int64),
                },
            )
            session.remove_mask_inputs(obj, index)
        session.obj_with_new_inputs = [OBJECT_ID]

    @staticmethod
    def _prune(session: Any, obj: int, index: int, start: int, window: int) -> None:
        """Drop what no later frame reads: full-size masks, and tracked frames' memory out of reach.

        A frame reads the memory of the `window` frames before it (after it, tracking backward), and
        the backward pass reads the forward pass's frames next to the start: those are kept.
        """
        outputs = session.output_dict_per_obj[obj]
        for kind in ("cond_frame_outputs", "non_cond_frame_outputs"):
            entry = outputs[kind].get(index)
            if entry is not None:
                entry.pop("high_res_masks", None)
        tracked = outputs["non_cond_frame_outputs"]
        for old in [f for f in tracked if abs(f - index) > window and abs(f - start) > window]:
            del tracked[old]

    def _matte(self, logits: Any, height: int, width: int) -> np.ndarray:
        import torch.nn.functional as F

        low = logits[:1, :1].float()  # (1, 1, h, w): the one object's mask logits
        full = F.interpolate(low, size=(height, width), mode="bilinear", align_corners=False)
        return full.sigmoid()[0, 0].clamp_(0, 1).cpu().numpy().astype(np.float32)


class EdgeTamTracker(Sam2Tracker):
    """EdgeTAM: SAM 2's tracking with a small image encoder (`EdgeTAM-hf` in the weights folder)."""

    name = "edgetam"
    model_class = "EdgeTamVideoModel"
    session_module = "transformers.models.edgetam_video.modeling_edgetam_video"
    session_class = "EdgeTamVideoInferenceSession"

    @staticmethod
    def _model_files(weights: Path) -> ModelFiles:
        return EDGETAM
