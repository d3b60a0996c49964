"""Finding and checking the VOID weights: what a folder must hold, whole, before anything is loaded.

Layout of the weights folder (`--weights DIR`, `$VOIDLINK_WEIGHTS`, or the platform data dir):

    CogVideoX-Fun-V1.5-5b-InP/   transformer/ vae/ text_encoder/ tokenizer/ scheduler/ (diffusers layout)
    void_pass1.safetensors       full transformer state dict (required)
    void_pass2.safetensors       full transformer state dict for the refinement pass (optional)

Loading them into models is `loading.py`.
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
from typing import Optional

from voidlink.errors import InvalidInput, NotFound

log = logging.getLogger("voidlink.void")

BASE = "CogVideoX-Fun-V1.5-5b-InP"
PASS1 = "void_pass1.safetensors"
PASS2 = "void_pass2.safetensors"
BASE_REPO = "alibaba-pai/CogVideoX-Fun-V1.5-5b-InP"
VOID_REPO = "netflix/void-model"
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
