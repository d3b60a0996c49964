"""Finding, checking and loading the VOID weights.

Layout of the weights folder (`--weights DIR`, `$VOIDLINK_WEIGHTS`, or the platform data dir):

    CogVideoX-Fun-V1.5-5b-InP/   transformer/ vae/ text_encoder/ tokenizer/ scheduler/ (diffusers layout)
    void_pass1.safetensors       full transformer state dict (required)
    void_pass2.safetensors       full transformer state dict for the refinement pass (optional)

Loading follows the reference: the base transformer is built with 48 input channels, the VOID
checkpoint (a full state dict, optionally under a "state_dict" key) is loaded with strict=False,
and when its patch-embedding input width differs from the model's, the checkpoint's first and last
128 columns (16 latent channels × the 2×2×2 patch) are kept with the model's columns in between.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from voidlink.errors import InvalidInput, NotFound

log = logging.getLogger("voidlink.void")

BASE = "CogVideoX-Fun-V1.5-5b-InP"
PASS1 = "void_pass1.safetensors"
PASS2 = "void_pass2.safetensors"
BASE_REPO = "alibaba-pai/CogVideoX-Fun-V1.5-5b-InP"
VOID_REPO = "netflix/void-model"
PATCH_EMBED = "patch_embed.proj.weight"
LATENT_CHANNELS = 16
PATCH_VOLUME = 8  # 2 × 2 spatial × 2 temporal
# Published sizes, for the messages about files that are not there at all (a present file's
# expected size comes from its own header).
APPROXIMATE_SIZE = {PASS1: "about 11 GB", PASS2: "about 11 GB"}

# Each component of the base folder: a config file and at least one of the weight file patterns.
COMPONENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "transformer": ("config.json", ("diffusion_pytorch_model*.safetensors", "diffusion_pytorch_model*.bin")),
    "vae": ("config.json", ("diffusion_pytorch_model*.safetensors", "diffusion_pytorch_model*.bin")),
    "text_encoder": ("config.json", ("model*.safetensors", "pytorch_model*.bin")),
    "tokenizer": ("tokenizer_config.json", ("spiece.model", "tokenizer.json")),
    "scheduler": ("scheduler_config.json", ()),
}
# What encodes the prompt: an embeddings-only load (prompt embeddings come with each request) does without.
TEXT_COMPONENTS = ("text_encoder", "tokenizer")


@dataclass
class WeightsReport:
    folder: Path
    problems: list[str] = field(default_factory=list)  # each names a file or folder and what is wrong
    pass2: bool = False  # void_pass2.safetensors present and whole

    @property
    def ok(self) -> bool:
        return not self.problems


def safetensors_expected_size(path: Path) -> int:
    """The size a safetensors file must have, from its own header (8-byte length, JSON, data)."""
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise InvalidInput(
                f"{path}: not a safetensors file ({len(head)} bytes)", reason="BAD_WEIGHTS", file=str(path)
            )
        (length,) = struct.unpack("<Q", head)
        raw = handle.read(length)
    if len(raw) < length:
        raise InvalidInput(
            f"{path}: truncated inside its header (expected at least {8 + length} bytes)",
            reason="TRUNCATED_WEIGHTS",
            file=str(path),
        )
    try:
        header = json.loads(raw)
    except ValueError as error:
        raise InvalidInput(f"{path}: not a safetensors file ({error})", reason="BAD_WEIGHTS", file=str(path)) from error
    end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
    return 8 + length + end


def check_safetensors(path: Path) -> Optional[str]:
    """None when the file is whole, else what is wrong with it, in words naming the file."""
    if not path.is_file():
        size = APPROXIMATE_SIZE.get(path.name)
        return f"{path} is missing" + (f" ({size})" if size else "")
    try:
        expected = safetensors_expected_size(path)
    except InvalidInput as error:
        return error.message
    actual = path.stat().st_size
    if actual < expected:
        return (
            f"{path} is truncated: {actual:,} bytes, expected {expected:,} ({expected / 1e9:.2f} GB); download it again"
        )
    return None


def check_weights(folder: Path, need_pass2: bool = False, need_text: bool = True) -> WeightsReport:
    """Everything missing or broken in a weights folder, without loading anything.

    `need_text=False`: an embeddings-only load, for which the T5 text encoder and tokenizer may be absent.
    """
    folder = Path(folder)
    report = WeightsReport(folder)
    base = folder / BASE
    if not base.is_dir():
        report.problems.append(f"{base} is missing (the CogVideoX-Fun base model folder)")
    else:
        for name, (config, patterns) in COMPONENTS.items():
            if not need_text and name in TEXT_COMPONENTS:
                continue
            sub = base / name
            if not sub.is_dir():
                report.problems.append(f"{sub} is missing (base model component '{name}')")
                continue
            if not (sub / config).is_file() and not (name == "tokenizer" and (sub / "spiece.model").is_file()):
                report.problems.append(f"{sub / config} is missing")
            if patterns and not any(any(sub.glob(pattern)) for pattern in patterns):
                report.problems.append(f"{sub} holds no weights (expected {' or '.join(patterns)})")
            for weights in sorted(sub.glob("*.safetensors")):
                problem = check_safetensors(weights)
                if problem:
                    report.problems.append(problem)
    problem = check_safetensors(folder / PASS1)
    if problem:
        report.problems.append(problem)
    pass2_problem = check_safetensors(folder / PASS2)
    report.pass2 = pass2_problem is None
    if need_pass2 and pass2_problem:
        report.problems.append(pass2_problem)
    return report


class Digests:
    """The SHA-256 of each weight file, computed once and remembered by path, size and modification time.

    A checkpoint is 11 GB (several seconds of hashing), so the hash is computed on a thread of its
    own while the model loads and runs, and kept in a small JSON file (by default in the user's cache
    folder) so a daemon that restarts does not hash the same file again.
    """

    def __init__(self, cache_file: Optional[Path] = None) -> None:
        if cache_file is None:
            import platformdirs

            cache_file = Path(platformdirs.user_cache_dir("voidlink", appauthor=False)) / "weights-sha256.json"
        self.cache_file = Path(cache_file)
        self._lock = threading.Lock()
        self._pending: dict[str, Future] = {}
        self._known: dict[str, dict] = {}  # this process's hashes, also when the cache file cannot be written
        self._pool: Optional[ThreadPoolExecutor] = None

    def start(self, path: Path) -> None:
        """Begin hashing `path` in the background unless its hash is known."""
        key, stamp = self._stamp(path)
        with self._lock:
            if key not in self._pending and not self._cached(key, stamp):
                self._submit(key, stamp)

    def get(self, path: Path) -> str:
        """The file's SHA-256 (hex), waiting for a hash in progress."""
        key, stamp = self._stamp(path)
        # One hold of the lock from the lookup to the submit: a small file's hash can finish (and
        # leave `_pending`) as soon as the lock is let go.
        with self._lock:
            known = self._cached(key, stamp)
            if known:
                return known
            future = self._pending.get(key) or self._submit(key, stamp)
        return future.result()

    def _submit(self, key: str, stamp: list[int]) -> Future:
        """Start hashing `key`; the caller holds the lock."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="voidlink-weights-sha256")
        future = self._pending[key] = self._pool.submit(self._hash, key, stamp)
        return future

    @staticmethod
    def _stamp(path: Path) -> tuple[str, list[int]]:
        key = os.path.realpath(path)
        info = os.stat(key)
        return key, [info.st_size, info.st_mtime_ns]

    def _read(self) -> dict:
        try:
            return json.loads(self.cache_file.read_text())
        except (OSError, ValueError):
            return {}

    def _cached(self, key: str, stamp: list[int]) -> Optional[str]:
        entry = self._known.get(key) or self._read().get(key)
        if isinstance(entry, dict) and entry.get("stamp") == stamp:
            return entry.get("sha256")
        return None

    def _hash(self, key: str, stamp: list[int]) -> str:
        from voidlink.protos.wire import file_sha256

        digest = file_sha256(key)
        with self._lock:
            self._pending.pop(key, None)
            self._known[key] = {"stamp": stamp, "sha256": digest}
            # Only files still there: weights moved or deleted would otherwise be remembered forever.
            known = {path: entry for path, entry in self._read().items() if os.path.exists(path)}
            known[key] = self._known[key]
            try:
                self.cache_file.parent.mkdir(parents=True, exist_ok=True)
                temp = self.cache_file.with_name(f".{self.cache_file.name}.{os.getpid()}.tmp")
                temp.write_text(json.dumps(known, indent=1, sort_keys=True))
                os.replace(temp, self.cache_file)
            except OSError as error:  # a read-only cache folder costs a hash per start, nothing more
                log.warning("cannot remember the weights' SHA-256 in %s: %s", self.cache_file, error)
        return digest


def download_commands(folder: Path, pass2: bool = True) -> list[str]:
    """What a user runs on a machine with internet to fetch the weights into `folder`."""
    commands = [
        "pip install -U 'huggingface_hub[cli]'",
        f"hf download {BASE_REPO} --local-dir '{Path(folder) / BASE}'",
        f"hf download {VOID_REPO} {PASS1} --local-dir '{folder}'",
    ]
    if pass2:
        commands.append(f"hf download {VOID_REPO} {PASS2} --local-dir '{folder}'")
    return commands


def require_weights(folder: Path, need_pass2: bool = False, need_text: bool = True) -> WeightsReport:
    report = check_weights(folder, need_pass2, need_text)
    if not report.ok:
        raise NotFound(
            "VOID weights are incomplete:\n  "
            + "\n  ".join(report.problems)
            + "\nOn a machine with internet, run:\n  "
            + "\n  ".join(download_commands(folder)),
            reason="WEIGHTS_MISSING",
            file=str(folder),
        )
    return report


# -- loading ---------------------------------------------------------------------------------------------


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
