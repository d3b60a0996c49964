"""Frames loaded ahead of the code that uses them, on a thread of their own, bounded in count and in bytes.

A job reads its plates while the backend works on the frame before, so the disk and the decoder never
wait on the model. What is held ahead is bounded two ways: at most `depth` frames, and no more than
`budget` bytes of them once one is waiting. The bytes bound is the one that matters for big plates: a 4K
frame with all its channels read as float32 is 130 MB at four channels and over 600 MB with a
render's twenty, and each frame held ahead is memory the machine must find afresh (on a virtual
machine a fresh page can cost the host a fault too: keeping five 4K frames alive made a bare
OpenImageIO loop a quarter slower here than keeping one).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Callable, TypeVar

import numpy as np

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
    budget: int = BUDGET,
    size: Callable[[object], int] = loaded_bytes,
    name: str = "voidlink-read-ahead",
) -> Iterator[object]:
    """`load(item)` for each item, in order, made on a thread ahead of the consumer.

    Held ahead: at most `depth` loaded items, and a loaded item joins those waiting only while they and it
    come to `budget` bytes or less (`size` measures one), or none is waiting: one always may, so a frame
    bigger than the budget is still read ahead, alone. Besides those, one item may be loading and one is
    the consumer's. What `load` raises is raised here, in its item's turn, after the items before it;
    leaving the loop early stops the thread after the item it is loading.
    """
    depth, budget = max(1, int(depth)), int(budget)  # a bad bound is refused here, not on the thread
    ready: deque = deque()  # (ok, value, bytes)
    state = {"held": 0, "stopped": False}
    changed = threading.Condition()
    end = object()

    def hand_over(value: object, nbytes: int) -> bool:
        with changed:
            while ready and not state["stopped"] and (len(ready) >= depth or state["held"] + nbytes > budget):
                # Woken by the consumer; the timeout is a backstop for a wake-up that came too early (the
                # consumer's generator closed by the collector on this very thread, inside this lock).
                changed.wait(0.5)
            if state["stopped"]:
                return False
            ready.append((True, value, nbytes))
            state["held"] += nbytes
            changed.notify_all()
            return True

    def work() -> None:
        final: tuple = (True, end, 0)
        try:
            for item in items:
                with changed:
                    if state["stopped"]:
                        return
                value = load(item)
                if not hand_over(value, size(value)):
                    return
                value = None
        except BaseException as error:  # from `load`, `size` or `items` itself: raised in the consumer, in turn
            final = (False, error, 0)
        finally:
            # The last record holds no bytes and waits for no room: the consumer always gets one.
            with changed:
                if not state["stopped"]:
                    ready.append(final)
                    changed.notify_all()

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    try:
        while True:
            with changed:
                while not ready:
                    changed.wait()
                ok, value, nbytes = ready.popleft()
                state["held"] -= nbytes
                changed.notify_all()
            if not ok:
                raise value  # type: ignore[misc]
            if value is end:
                return
            yield value
            value = None  # the consumer's frame is not kept alive here while the next is waited for
    finally:
        with changed:
            state["stopped"] = True
            ready.clear()
            changed.notify_all()

