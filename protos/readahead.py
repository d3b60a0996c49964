"""Streams whose next items are made ahead by a thread of their own: the transport and the disk at work at once.

Both ends of a frame stream use it, so it sits on the contract's floor. On the daemon, the chunks a
client uploads are received while the one before is written and hashed, and a streamed-back result's
chunks are read and hashed while the one before is sent; on the client, a result's chunks are received
while the one before is written and hashed. Reads, writes, hashing and gRPC's transport all let go of
the GIL, so the two sides overlap. A job's frames are read ahead by it too (`voidlink.media.readahead`
bounds them in bytes).

Needs only the standard library: every host's Python imports it.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Callable, Optional, TypeVar

T = TypeVar("T")

READ_AHEAD = 4  # items made ahead of the one being used: bounds the memory a stream holds

_END = object()


def offer(out: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Queue `item` unless the consumer has stopped (then nobody would take it, and a put would never end);
    False once it has."""
    while not stop.is_set():
        try:
            out.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def read_ahead(
    source: Iterable[T],
    depth: int = READ_AHEAD,
    name: str = "voidlink-read-ahead",
    budget: Optional[int] = None,
    size: Optional[Callable[[T], int]] = None,
) -> Iterator[T]:
    """`source`'s items in order, the next ones made by a thread of their own while this one is used.

    Held ahead: at most `depth` items, and, with `budget`, an item joins those waiting only while they
    and it come to `budget` bytes or less (`size` measures one), or none is waiting: one always may, so
    an item bigger than the budget is still made ahead, alone. What broke the source is raised here, in
    its turn, after the items before it. Once the consumer stops (at the end, on an error, or leaving
    early) the thread ends after the item it is making, and closes `source` (a generator's files and
    streams are closed then, not whenever it is collected).
    """
    depth = max(1, int(depth))  # a bad bound is refused here, not on the thread
    budget = None if budget is None else int(budget)
    ready: deque = deque()  # (is an error, item, bytes)
    held = 0  # bytes of the items in `ready`
    stopped = False  # the consumer has gone
    changed = threading.Condition()

    def room(nbytes: int) -> bool:
        return len(ready) < depth and (budget is None or held + nbytes <= budget)

    def hand_over(item: object, nbytes: int) -> bool:
        nonlocal held
        with changed:
            while ready and not stopped and not room(nbytes):
                # Woken by the consumer; the timeout is a backstop for a wake-up that came too early (the
                # consumer's generator closed by the collector on this very thread, inside this lock).
                changed.wait(0.5)
            if stopped:
                return False
            ready.append((False, item, nbytes))
            held += nbytes
            changed.notify_all()
            return True

    def make() -> None:
        last: tuple = (False, _END, 0)
        try:
            for item in source:
                if not hand_over(item, size(item) if size is not None else 0):
                    return
                with changed:
                    if stopped:
                        return
                item = None  # not kept alive here while the next is made
        except BaseException as error:  # the source broke (a stream cut, a frame unreadable): raised in turn
            last = (True, error, 0)
        finally:
            # The last record holds nothing and waits for no room: the consumer always gets one.
            with changed:
                if not stopped:
                    ready.append(last)
                    changed.notify_all()
            close = getattr(source, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=make, name=name, daemon=True)
    thread.start()
    try:
        while True:
            with changed:
                while not ready:
                    changed.wait()
                failed, item, nbytes = ready.popleft()
                held -= nbytes
                changed.notify_all()
            if failed:
                raise item  # type: ignore[misc]
            if item is _END:
                return
            yield item
            item = None  # the consumer's item is not kept alive here while the next is waited for
    finally:
        with changed:
            stopped = True
            ready.clear()
            changed.notify_all()
