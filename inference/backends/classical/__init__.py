"""The classical backend: optical-flow propagation with camera compensation, then exemplar fill.

Needs only numpy and OpenCV, so it is the backend that always works (and the embedded default).
"""

from voidlink.inference.backends.classical.backend import ClassicalBackend, remove, remove_stream

__all__ = ["ClassicalBackend", "remove", "remove_stream"]
