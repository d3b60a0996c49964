"""Backends and how the daemon chooses one.

`void` needs torch, a CUDA device and the weights; `classical` needs nothing beyond the base
install and is the embedded default. `auto` takes `void` when it is available, else `classical`.
Availability is decided without importing torch when torch is not installed, so the daemon
starts fast on machines without it.

`BACKENDS` is the one table of them, `{name: (factory, availability)}`: a new backend is one row
there, and everything that lists, checks or creates backends reads it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Callable, NamedTuple, Optional

from voidlink.inference.backends.base import Availability, Backend

from voidlink.errors import InvalidInput, Unavailable

log = logging.getLogger("voidlink.daemon")


def weights_dir(explicit: Optional[str] = None) -> Path:
    """Where the VOID weights are looked for: --weights, $VOIDLINK_WEIGHTS, the platform data dir."""
    if explicit:
        return Path(explicit)
    if os.environ.get("VOIDLINK_WEIGHTS"):
        return Path(os.environ["VOIDLINK_WEIGHTS"])
    import platformdirs

    return Path(platformdirs.user_data_dir("voidlink", appauthor=False)) / "weights"


def void_availability(weights: Optional[str] = None) -> Availability:
    """Whether VOID can run here; when not, every reason at once (libraries, CUDA, each missing file)."""
    # The weights module reads only file headers and imports neither torch nor diffusers.
    from voidlink.inference.backends.void.licences import licences
    from voidlink.inference.backends.void.weights import check_weights, download_commands

    reasons = []
    missing_libraries = [
        name for name in ("torch", "diffusers", "transformers") if importlib.util.find_spec(name) is None
    ]
    if missing_libraries:
        reasons.append(f"{', '.join(missing_libraries)} not installed (pip install 'voidlink[void]')")
    else:
        import torch

        if not torch.cuda.is_available():
            reasons.append("no CUDA device")
    folder = weights_dir(weights)
    report = check_weights(folder)
    if not report.ok:
        reasons.append(f"weights incomplete in {folder}: " + "; ".join(report.problems))
    if reasons:
        # GetInfo and doctor show the detail beside the reason: how to get the files.
        fetch = "" if report.ok else "on a machine with internet, run: " + " && ".join(download_commands(folder))
        # The terms are stated also while VOID cannot run: they matter before the download.
        return Availability(False, "void: " + "; ".join(reasons), detail=fetch, licences=licences(folder))
    extra = ", pass 2 available" if report.pass2 else ", no void_pass2.safetensors (pass 2 unavailable)"
    return Availability(True, detail=f"weights in {folder}{extra}", licences=licences(folder))


def classical_availability(weights: Optional[str] = None) -> Availability:
    """The classical backend runs wherever the daemon does."""
    return Availability(True, detail="CPU: optical-flow propagation and spatial fill")


def _classical(weights: Optional[str]) -> Backend:
    from voidlink.inference.backends.classical import ClassicalBackend

    return ClassicalBackend()


def _void(weights: Optional[str]) -> Backend:
    from voidlink.inference.backends import void  # type: ignore[attr-defined]

    return void.VoidBackend(weights_dir(weights))


class BackendEntry(NamedTuple):
    """A row of the table: how to make the backend (not yet loaded), and whether it can run here."""

    factory: Callable[[Optional[str]], Backend]  # the --weights folder given (or None) -> a backend
    availability: Callable[[Optional[str]], Availability]  # the same -> whether and why not


# The backends, in the order they are listed (GetInfo, doctor, the choices a refusal names).
BACKENDS: Mapping[str, BackendEntry] = MappingProxyType(
    {
        "classical": BackendEntry(_classical, classical_availability),
        "void": BackendEntry(_void, void_availability),
    }
)
BACKEND_NAMES = tuple(BACKENDS)
# What `auto` takes: the first of these available here (the last one always is).
AUTO_ORDER = ("void", "classical")


def backend_entry(name: str) -> BackendEntry:
    """The table's row for `name`; raises InvalidInput (UNKNOWN_BACKEND) naming the choices."""
    entry = BACKENDS.get(name)
    if entry is None:
        raise InvalidInput(
            f"unknown backend '{name}' (choose auto, {', '.join(BACKENDS)})",
            reason="UNKNOWN_BACKEND",
            field="spec.params.backend",
        )
    return entry


def availability(name: str, weights: Optional[str] = None) -> Availability:
    """Whether backend `name` can run here, and why not; raises for an unknown name."""
    return backend_entry(name).availability(weights)


class BackendRegistry:
    """Creates each backend once and keeps it resident between jobs."""

    def __init__(self, weights: Optional[str] = None) -> None:
        self.weights = weights
        self._loaded: dict[str, Backend] = {}
        self._lock = threading.Lock()
        self._availability: dict[str, Availability] = {}
        self.load_seconds: dict[str, float] = {}  # how long each resident backend took to load
        self.preload_errors: dict[str, str] = {}  # a preload that failed: why (a job loading it tries again)

    def availability(self, name: str) -> Availability:
        if name not in self._availability:
            self._availability[name] = availability(name, self.weights)
        return self._availability[name]

    def resolve(self, requested: str) -> str:
        """The backend a job asking for `requested` runs on; raises naming the field when it cannot."""
        requested = (requested or "auto").strip().lower()
        if requested == "auto":
            return next((name for name in AUTO_ORDER[:-1] if self.availability(name).available), AUTO_ORDER[-1])
        state = self.availability(requested)  # raises for unknown names
        if not state.available:
            raise Unavailable(state.reason, reason="BACKEND_UNAVAILABLE", field="spec.params.backend")
        return requested

    def get(self, name: str) -> Backend:
        """The resident backend `name`, loaded first if it is not; a job arriving while a preload is
        under way waits for that load rather than starting a second one."""
        with self._lock:
            if name not in self._loaded:
                started = time.perf_counter()
                backend = backend_entry(name).factory(self.weights)
                backend.load()
                # Only a backend whose load finished counts as loaded (GetInfo's BackendInfo.loaded).
                self._loaded[name] = backend
                self.load_seconds[name] = time.perf_counter() - started
                self.preload_errors.pop(name, None)
            return self._loaded[name]

    def is_loaded(self, name: str) -> bool:
        return name in self._loaded

    def preload(self, name: str) -> threading.Thread:
        """Load `name` in the background (the daemon serves meanwhile); raises at once when it cannot run
        here. A load that fails is logged and kept in `preload_errors`; the first job needing it tries again."""
        backend_entry(name)  # unknown names are refused before any thread starts
        state = self.availability(name)
        if not state.available:
            raise Unavailable(f"cannot preload: {state.reason}", reason="BACKEND_UNAVAILABLE", field="preload")

        def load() -> None:
            try:
                self.get(name)
                log.info("backend %s loaded ahead of the first job in %.1f s", name, self.load_seconds[name])
            except Exception as error:  # the daemon keeps serving; the job that needs it reports the failure
                self.preload_errors[name] = f"{type(error).__name__}: {error}"
                log.exception("preloading backend %s failed", name)

        thread = threading.Thread(target=load, name=f"voidlink-preload-{name}", daemon=True)
        thread.start()
        return thread
