"""Proposing the region an object affects from words, with SAM 3's text-prompted segmentation.

For each frame, SAM 3 finds every instance of each phrase of the text ("shadow; reflection": the
phrases are split on ';'); the instances kept are those near the tracked object (touching the
object's matte grown by a reach scaled to the object's size), leaving out the object itself (an
instance mostly inside the object's matte). The result is a proposal for the user to edit, never
a final matte; growing it to a grid is the job's business.

Preprocessing and the instance post-processing are done here, as transformers' SAM 3 processor
does them (resize to the model's square input, normalisation, score = instance x presence,
sigmoid masks), because its image processor needs torchvision, which the daemon does not require;
the phrases are tokenised with the folder's own tokenizer.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
from voidlink.inference.backends.matte.base import AffectedProposer, Cancelled, FrameReader, MatteRequest
from voidlink.inference.backends.matte.sam2 import Preprocess, pick_device
from voidlink.inference.backends.matte.weights import SAM3, open_weights

from voidlink.errors import InvalidInput

__all__ = ["Sam3Proposer", "near_instances", "split_phrases"]

STANDARD_MEAN = (0.5, 0.5, 0.5)
STANDARD_STD = (0.5, 0.5, 0.5)
TEXT_LENGTH = 32  # the processor pads every phrase to this many tokens


def split_phrases(text: str) -> list[str]:
    """The text's phrases: split on ';', trimmed, empty ones dropped, each once."""
    phrases: list[str] = []
    for phrase in text.split(";"):
        phrase = " ".join(phrase.split())
        if phrase and phrase not in phrases:
            phrases.append(phrase)
    return phrases


def near_instances(
    instances: np.ndarray, object_mask: np.ndarray, reach: float = 0.5, inside: float = 0.8
) -> list[int]:
    """Which instances (N, h, w bool) are near the object (h, w bool), and are not the object itself.

    Near: touching the object's mask grown by `reach` times the square root of its area (at least
    two pixels). The object itself: an instance with at least `inside` of its pixels in the object.
    """
    import torch
    import torch.nn.functional as F

    area = int(object_mask.sum())
    if area == 0 or len(instances) == 0:
        return []
    radius = max(2, int(round(reach * float(np.sqrt(area)))))
    grown = torch.from_numpy(object_mask.astype(np.float32))[None, None]
    # Separable square growth: two 1-D max filters cost 2(2r+1) per pixel, not (2r+1)^2.
    grown = F.max_pool2d(grown, kernel_size=(2 * radius + 1, 1), stride=1, padding=(radius, 0))
    grown = F.max_pool2d(grown, kernel_size=(1, 2 * radius + 1), stride=1, padding=(0, radius))
    near = grown[0, 0].numpy() > 0
    kept = []
    for index, instance in enumerate(instances):
        size = int(instance.sum())
        if size == 0 or not (instance & near).any():
            continue
        if (instance & object_mask).sum() >= inside * size:
            continue
        kept.append(index)
    return kept


class Sam3Proposer(AffectedProposer):
    """SAM 3 (`sam3/` in the weights folder), resident once loaded."""

    name = "sam3"

    def __init__(
        self,
        weights: Optional[str] = None,
        *,
        folder: Optional[Path] = None,
        device: Optional[str] = None,
        threshold: float = 0.3,
        mask_threshold: float = 0.5,
        reach: float = 0.5,
        digests: Any = None,
    ) -> None:
        from voidlink.inference.backends import weights_dir

        self.weights = weights_dir(weights) if folder is None else Path(folder).parent
        self.model_files = SAM3 if folder is None else replace(SAM3, folder=Path(folder).name)
        self.folder = self.weights / self.model_files.folder
        self.device_name = device
        self.threshold, self.mask_threshold, self.reach = threshold, mask_threshold, reach
        self.model: Any = None
        self.tokenizer: Any = None
        self.preprocess: Optional[Preprocess] = None
        self._lock = threading.Lock()
        self._digests: Any = digests
        self._weights_files: list[Path] = []

    def load(self) -> None:
        """Load the model and tokenizer from the folder (local files only); once."""
        with self._lock:
            if self.model is not None:
                return
            lead = f"Accept the terms on https://huggingface.co/{SAM3.repo}, then, with internet, run:"
            self._weights_files, self._digests = open_weights(self.weights, SAM3, self.folder, self._digests, lead)
            import transformers

            self.device, self.dtype = pick_device(self.device_name)
            try:
                model = transformers.Sam3Model.from_pretrained(
                    str(self.folder), local_files_only=True, dtype=self.dtype
                )
                self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(self.folder), local_files_only=True)
            except Exception as error:  # noqa: BLE001 - re-raised naming the folder
                raise InvalidInput(
                    f"{self.folder}: cannot load SAM 3 ({error})", reason="BAD_WEIGHTS", file=str(self.folder)
                ) from error
            self.model = model.to(self.device).eval().requires_grad_(False)
            size = self.model.config.vision_config.backbone_config.image_size
            size = size[0] if isinstance(size, (list, tuple)) else size
            self.preprocess = Preprocess(self.folder, int(size), STANDARD_MEAN, STANDARD_STD)

    def propose(
        self,
        reader: FrameReader,
        object_matte: Callable[[int], np.ndarray],
        text: str,
        request: MatteRequest,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (frame, affected matte) for every frame: the text's instances near the object."""
        import torch

        phrases = split_phrases(text)
        if not phrases:
            raise InvalidInput(
                "SAM 3 needs words for what the object affects (for example: shadow; reflection)",
                reason="NO_AFFECTED_TEXT",
                field="spec.matte.affected_text",
            )
        self.load()
        width, height = reader.size
        request.provenance["proposer"] = self.name
        request.provenance["proposer_model"] = self.model_files.repo
        for path in self._weights_files:
            key = "proposer_weights_sha256" if len(self._weights_files) == 1 else f"proposer_weights_sha256:{path.name}"
            request.provenance[key] = self._digests.get(path)
        request.notes.append(
            "affected region proposed by SAM 3 from "
            + ", ".join(f"'{phrase}'" for phrase in phrases)
            + " near the object: a proposal, check and edit it before removing"
        )
        tokens = self.tokenizer(
            phrases, padding="max_length", max_length=TEXT_LENGTH, truncation=True, return_tensors="pt"
        )
        input_ids = tokens["input_ids"].to(self.device)
        attention_mask = tokens["attention_mask"].to(self.device)
        empty_frames = 0
        # Inference mode only around the model's work, never held while the caller runs between yields.
        with torch.inference_mode():
            text_embeds = [
                self.model.get_text_features(input_ids=input_ids[i : i + 1], attention_mask=attention_mask[i : i + 1])
                for i in range(len(phrases))
            ]
        for frame in reader.frames:
            if request.cancelled():
                raise Cancelled()
            request.on_message(f"segmenting {', '.join(phrases)} on frame {frame}")
            matte = np.asarray(object_matte(frame), dtype=np.float32)
            if matte.shape != (height, width):
                raise InvalidInput(
                    f"the object matte of frame {frame} is {matte.shape[1]}x{matte.shape[0]}, "
                    f"the frames {width}x{height}",
                    reason="SIZE_MISMATCH",
                    frame=frame,
                )
            if not (matte > 0.5).any():
                empty_frames += 1
                yield frame, np.zeros((height, width), np.float32)
                continue
            with torch.inference_mode():
                pixels = self.preprocess(reader.read(frame), self.device, self.dtype)[None]
                vision = self.model.get_vision_features(pixel_values=pixels)
                affected = self._affected(vision, text_embeds, attention_mask, matte)
            yield frame, affected
        if empty_frames:
            request.notes.append(f"{empty_frames} frame(s) without the object: no affected region proposed there")

    def _affected(self, vision: Any, text_embeds: list[Any], attention_mask: Any, matte: np.ndarray) -> np.ndarray:
        """One frame's proposal: the kept instances of every phrase, as soft masks at the frame's size."""
        import torch
        import torch.nn.functional as F

        height, width = matte.shape
        proposal = torch.zeros((height, width), dtype=torch.float32)
        for index, embeds in enumerate(text_embeds):
            output = self.model(
                vision_embeds=vision,
                text_embeds=embeds,  # get_text_features' output: the model reads its projected pooler_output
                attention_mask=attention_mask[index : index + 1],
            )
            scores = output.pred_logits[0].float().sigmoid()
            if output.presence_logits is not None:
                scores = scores * output.presence_logits[0].float().sigmoid()
            keep = scores > self.threshold
            if not bool(keep.any()):
                continue
            masks = output.pred_masks[0][keep].float().sigmoid()  # (n, h, w) at the model's mask size
            low = F.interpolate(torch.from_numpy(matte)[None, None], size=masks.shape[-2:], mode="area")[0, 0]
            at_mask_size = low.numpy() > 0.5
            if not at_mask_size.any():  # an object smaller than a pixel of the model's masks: where it touches
                at_mask_size = low.numpy() > 0
            chosen = near_instances((masks > self.mask_threshold).cpu().numpy(), at_mask_size, reach=self.reach)
            if not chosen:
                continue
            # Brought to the frame's size where the model runs, and only their union comes back.
            full = F.interpolate(masks[chosen][None], size=(height, width), mode="bilinear", align_corners=False)
            proposal = torch.maximum(proposal, full[0].amax(dim=0).cpu())
        return proposal.clamp_(0, 1).numpy().astype(np.float32)
