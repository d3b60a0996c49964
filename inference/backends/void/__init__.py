"""The VOID backend: Netflix's VOID (object + interaction removal) on diffusers' CogVideoX components.

Imported only when this backend is used. The heavy parts (torch, diffusers) load on first use of
`VoidBackend` or the pipeline, so the pure helpers stay importable on their own.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "VoidBackend",
    "VoidPipeline",
    "check_weights",
    "download_commands",
    "prepare_inpaint_latents",
    "remove",
    "remove_stream",
]

_LAZY = {
    "VoidBackend": "voidlink.inference.backends.void.backend",
    "remove": "voidlink.inference.backends.void.backend",
    "remove_stream": "voidlink.inference.backends.void.backend",
    "VoidPipeline": "voidlink.inference.backends.void.pipeline",
    "prepare_inpaint_latents": "voidlink.inference.backends.void.pipeline",
    "check_weights": "voidlink.inference.backends.void.weights",
    "download_commands": "voidlink.inference.backends.void.weights",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)
