"""Frames loaded ahead of the code that uses them, on a thread of their own, bounded in count and in bytes.

A job reads its plates while the backend works on the frame before, so the disk and the decoder never
wait on the model. What is held ahead is bounded two ways: at most `depth` frames, and no more than
`budget` bytes of them once one is waiting. The bytes bound is the one that matters for big plates: a 4K
frame with all its channels read as float32 is 130 MB at four channels and over 600 MB with a
render's twenty, and each frame held ahead is memory the machine must find afresh (on a virtual
machine a fresh page can cost the host a fault too: keeping five 4K frames alive made a bare
OpenImageIO loop a quarter slower here than keeping one). The thread and its bounds are the contract
floor's stream read-ahead (`voidlink.protos.readahead`), which the frame transfers use.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Callable, Optional, TypeVar

import numpy as np
from voidlink.protos import readahead

T = TypeVar("T")

DEPTH = 3  # frames loaded ahead at most: enough to hide one slow read
BUDGET = 256 << 20  # bytes of them held ahead at most, beyond the first (4K RGBA float: one ahead)


def loaded_bytes(value: object) -> int:
    """The bytes of the arrays a loaded frame holds: an array, an object with `pixels`, or a tuple or list
    of them (anything else counts nothing)."""
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, (tuple, list)):
        return sum(loaded_bytes(part) for part in value)
    pixels = getattr(value, "pixels", None)
    return pixels.nbytes if isinstance(pixels, np.ndarray) else 0


def read_ahead(
    items: Iterable[T],
    load: Callable[[T], object],
    depth: int = DEPTH,
    budget: Optional[int] = BUDGET,
    size: Callable[[object], int] = loaded_bytes,
    name: str = "voidlink-read-ahead",
) -> Iterator[object]:
    """`load(item)` for each item, in order, made on a thread ahead of the consumer.

    Held ahead: at most `depth` loaded items, and a loaded item joins those waiting only while they and it
    come to `budget` bytes or less (`size` measures one; None: no bound in bytes), or none is waiting:
    one always may, so a frame bigger than the budget is still read ahead, alone. Besides those, one
    item may be loading and one is the consumer's. What `load` raises is raised here, in its item's
    turn, after the items before it; leaving the loop early stops the thread after the item it is loading.
    """
    return readahead.read_ahead((load(item) for item in items), depth, name, budget, size)
