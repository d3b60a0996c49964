"""Loading the VOID weights into models: the base components, and a VOID checkpoint into the transformer.

Loading follows the reference: the base transformer is built with 48 input channels, the VOID
checkpoint (a full state dict, optionally under a "state_dict" key) is loaded with strict=False,
and when its patch-embedding input width differs from the model's, the checkpoint's first and last
128 columns (16 latent channels × the 2×2×2 patch) are kept with the model's columns in between.

The folder is checked first (`weights.py`), so a file that is missing or cut short is named
before gigabytes are read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from voidlink.inference.backends.void.weights import TEXT_COMPONENTS, check_safetensors

from voidlink.errors import InvalidInput, NotFound

PATCH_EMBED = "patch_embed.proj.weight"
LATENT_CHANNELS = 16
PATCH_VOLUME = 8  # 2 × 2 spatial × 2 temporal


def load_state_dict(path: Path) -> dict:
    """A checkpoint's tensors (on CPU), unwrapped from a "state_dict" key when there is one."""
    path = Path(path)
    problem = check_safetensors(path) if path.suffix == ".safetensors" else None
    if problem:
        raise InvalidInput(problem, reason="BAD_WEIGHTS", file=str(path))
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path), device="cpu")
    else:
        import torch

        state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    return state


@dataclass
class LoadReport:
    missing: list[str]
    unexpected: list[str]
    adapted_patch_embed: bool

    @property
    def clean(self) -> bool:
        """Every tensor of the model came from the checkpoint and nothing in it went unused."""
        return not (self.missing or self.unexpected or self.adapted_patch_embed)

    def summary(self) -> str:
        text = f"missing keys: {len(self.missing)}, unexpected keys: {len(self.unexpected)}"
        if self.missing:
            text += f" (first missing: {', '.join(self.missing[:3])})"
        if self.unexpected:
            text += f" (first unexpected: {', '.join(self.unexpected[:3])})"
        if self.adapted_patch_embed:
            text += "; patch embedding adapted (checkpoint's first and last 128 input columns)"
        return text


class _Tensors:
    """A checkpoint's tensors by name: from memory, or read one at a time from a safetensors file.

    Reading one tensor at a time keeps the loading peak at the model plus one tensor, instead of the
    model plus a second 11 GB copy of it.
    """

    def __init__(self, state: Optional[dict] = None, path: Optional[Path] = None) -> None:
        self.state = state
        self.handle = None
        if path is not None:
            from safetensors import safe_open

            self.handle = safe_open(str(path), framework="pt", device="cpu")

    def keys(self) -> list[str]:
        return list(self.state) if self.state is not None else list(self.handle.keys())

    def shape(self, key: str) -> tuple[int, ...]:
        if self.state is not None:
            return tuple(self.state[key].shape)
        return tuple(self.handle.get_slice(key).get_shape())

    def get(self, key: str) -> Any:
        return self.state[key] if self.state is not None else self.handle.get_tensor(key)


def apply_checkpoint(transformer: Any, state: dict, source: str = "checkpoint") -> LoadReport:
    """Load a VOID state dict over the transformer as the reference does (strict=False)."""
    return _apply(transformer, _Tensors(state=dict(state)), source)


def load_checkpoint(transformer: Any, path: Path) -> LoadReport:
    """`apply_checkpoint` for a file: a safetensors file is read tensor by tensor; others whole."""
    path = Path(path)
    if path.suffix != ".safetensors":
        return apply_checkpoint(transformer, load_state_dict(path), str(path))
    problem = check_safetensors(path)
    if problem:
        raise InvalidInput(problem, reason="BAD_WEIGHTS", file=str(path))
    return _apply(transformer, _Tensors(path=path), str(path))


def _apply(transformer: Any, tensors: _Tensors, source: str) -> LoadReport:
    import torch

    # state_dict() holds the parameters and persistent buffers, sharing their storage: copying into
    # these tensors is what load_state_dict(strict=False) does, one tensor at a time.
    own = transformer.state_dict()
    keys = tensors.keys()
    replaced: dict[str, Any] = {}
    adapted = False
    if PATCH_EMBED in keys and PATCH_EMBED in own and tensors.shape(PATCH_EMBED)[1] != own[PATCH_EMBED].shape[1]:
        width = LATENT_CHANNELS * PATCH_VOLUME
        theirs, mine = tensors.get(PATCH_EMBED), own[PATCH_EMBED]
        if theirs.shape[0] != mine.shape[0] or min(theirs.shape[1], mine.shape[1]) < 2 * width:
            raise InvalidInput(
                f"{source}: {PATCH_EMBED} has shape {tuple(theirs.shape)}, the model needs {tuple(mine.shape)}; "
                "this is not a checkpoint for this base model",
                reason="BAD_WEIGHTS",
                file=source,
            )
        merged = mine.clone()
        merged[:, :width] = theirs[:, :width].to(merged.dtype)
        merged[:, -width:] = theirs[:, -width:].to(merged.dtype)
        replaced[PATCH_EMBED] = merged
        adapted = True
    wrong = [
        f"{key} {tensors.shape(key)} (model {tuple(own[key].shape)})"
        for key in keys
        if key in own and key not in replaced and tensors.shape(key) != tuple(own[key].shape)
    ]
    if wrong:
        raise InvalidInput(
            f"{source}: {len(wrong)} tensors have the wrong shape for this model, e.g. {'; '.join(wrong[:3])}; "
            "the file is not a VOID transformer checkpoint for CogVideoX-Fun-V1.5-5b-InP",
            reason="BAD_WEIGHTS",
            file=source,
        )
    with torch.no_grad():
        for key in keys:
            if key in own:
                own[key].copy_(replaced[key] if key in replaced else tensors.get(key))
    present = set(keys)
    missing = [key for key in own if key not in present]
    unexpected = [key for key in keys if key not in own]
    return LoadReport(missing, unexpected, adapted)


def read_config(folder: Path, name: str, filename: str = "config.json") -> dict:
    path = Path(folder) / name / filename
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as error:
        raise NotFound(f"{path} is missing", reason="WEIGHTS_MISSING", file=str(path)) from error
    except ValueError as error:
        raise InvalidInput(f"{path}: not valid JSON ({error})", reason="BAD_WEIGHTS", file=str(path)) from error


def build_transformer(base: Path, dtype: Any) -> tuple[Any, dict, list[str]]:
    """The base transformer with 48 input channels (the reference's `use_vae_mask=True`).

    When the base folder's config already has 48 input channels it loads as is; otherwise the patch
    embedding is widened. The loader reads the weights straight into place (no random init of 5B
    parameters, no float32 copy), which leaves the widened tensors unallocated: they are allocated
    as zeros here and named in the third return value, for the VOID checkpoint to fill (its state
    dict is the full 48-channel transformer). Returns the model, the raw config (for keys diffusers'
    model does not keep) and those names.
    """
    import torch
    from diffusers import CogVideoXTransformer3DModel

    config = read_config(base, "transformer")
    wanted = 3 * LATENT_CHANNELS
    widen = {} if config.get("in_channels") == wanted else {"in_channels": wanted, "ignore_mismatched_sizes": True}
    model = CogVideoXTransformer3DModel.from_pretrained(str(base), subfolder="transformer", torch_dtype=dtype, **widen)
    tensors = dict(model.named_parameters())
    tensors.update(model.named_buffers())
    unfilled = {name: torch.zeros(t.shape, dtype=t.dtype) for name, t in tensors.items() if t.is_meta}
    if unfilled:
        model.load_state_dict(unfilled, strict=False, assign=True)
    return model.eval().requires_grad_(False), config, sorted(unfilled)


def require_filled(unfilled: list[str], report: LoadReport, source: str) -> None:
    """Refuse a checkpoint that leaves the widened tensors of the base model at zero."""
    empty = [name for name in unfilled if name in report.missing]
    if empty:
        raise InvalidInput(
            f"{source} has no {', '.join(empty)}; the base model's are narrower, so this file cannot be a VOID "
            "checkpoint for the 48-channel transformer",
            reason="BAD_WEIGHTS",
            file=source,
        )


class SentencePieceT5Tokenizer:
    """T5's tokenizer straight on `spiece.model`: the pieces, then `</s>`; pads with 0.

    transformers converts `spiece.model` through a protobuf module that needs protobuf 7, while the
    daemon's gRPC stubs pin protobuf 6; when that conversion fails this reads the same model with
    the sentencepiece library itself. For prompts (no `<extra_id_N>` markers) the ids are the ones
    T5's own tokenizer gives.
    """

    pad_token_id = 0
    eos_token_id = 1

    def __init__(self, model_file: Path) -> None:
        import sentencepiece

        self.model_file = Path(model_file)
        self.processor = sentencepiece.SentencePieceProcessor(model_file=str(model_file))

    def __call__(
        self,
        texts: Any,
        padding: Any = "longest",
        max_length: Optional[int] = None,
        truncation: bool = False,
        add_special_tokens: bool = True,
        return_tensors: str = "pt",
    ) -> Any:
        from types import SimpleNamespace

        import torch

        texts = [texts] if isinstance(texts, str) else list(texts)
        rows = []
        for text in texts:
            ids = list(self.processor.encode(text))
            if add_special_tokens:
                ids.append(self.eos_token_id)
            if truncation and max_length and len(ids) > max_length:
                ids = ids[: max_length - 1] + ([self.eos_token_id] if add_special_tokens else [ids[max_length - 1]])
            rows.append(ids)
        width = max_length if padding == "max_length" and max_length else max(len(row) for row in rows)
        padded = [row + [self.pad_token_id] * (width - len(row)) for row in rows]
        return SimpleNamespace(input_ids=torch.tensor(padded, dtype=torch.long))

    def batch_decode(self, ids: Any) -> list[str]:
        return [self.processor.decode([int(i) for i in row if int(i) > self.eos_token_id]) for row in ids]


def load_tokenizer(base: Path) -> Any:
    """T5Tokenizer from the base folder, or the same vocabulary read with sentencepiece directly."""
    from transformers import T5Tokenizer

    try:
        return T5Tokenizer.from_pretrained(str(base), subfolder="tokenizer")
    except Exception:  # noqa: BLE001 - any conversion failure: read spiece.model ourselves
        model = Path(base) / "tokenizer" / "spiece.model"
        if not model.is_file():
            raise
        return SentencePieceT5Tokenizer(model)


def build_components(base: Path, dtype: Any, text: bool = True) -> dict:
    """Every base component from the base folder; names the component that fails.

    `text=False` leaves out the T5 text encoder and tokenizer (None): an embeddings-only pipeline.
    """
    from diffusers import AutoencoderKLCogVideoX, DDIMScheduler
    from transformers import T5EncoderModel

    loaders = {
        "tokenizer": lambda: load_tokenizer(base),
        "text_encoder": lambda: (
            T5EncoderModel.from_pretrained(str(base), subfolder="text_encoder", torch_dtype=dtype)
            .eval()
            .requires_grad_(False)
        ),
        "vae": lambda: (
            AutoencoderKLCogVideoX.from_pretrained(str(base), subfolder="vae", torch_dtype=dtype)
            .eval()
            .requires_grad_(False)
        ),
        # `DDIM_Origin` of the reference: diffusers' DDIMScheduler from the base scheduler config.
        "scheduler": lambda: DDIMScheduler.from_pretrained(str(base), subfolder="scheduler"),
    }
    out: dict = {}
    for name, load in loaders.items():
        if not text and name in TEXT_COMPONENTS:
            out[name] = None
            continue
        try:
            out[name] = load()
        except Exception as error:  # noqa: BLE001 - re-raised naming the component
            raise InvalidInput(
                f"{Path(base) / name}: cannot load the base model's {name} ({error})",
                reason="BAD_WEIGHTS",
                file=str(Path(base) / name),
            ) from error
    out["transformer"], out["transformer_config"], out["transformer_unfilled"] = build_transformer(base, dtype)
    return out
