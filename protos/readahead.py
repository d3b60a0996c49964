"""Streams whose next items are made ahead by a thread of their own: the transport and the disk at work at once.

Both ends of a frame stream use it, so it sits on the contract's floor. On the daemon, the chunks a
client uploads are received while the one before is written and hashed, and a streamed-back result's
chunks are read and hashed while the one before is sent; on the client, a result's chunks are received
while the one before is written and hashed. Reads, writes, hashing and gRPC's transport all let go of
the GIL, so the two sides overlap.

Needs only the standard library: every host's Python imports it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

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


def read_ahead(chunks: Iterable[T], depth: int = READ_AHEAD, name: str = "voidlink-read-ahead") -> Iterator[T]:
    """`chunks`' items in order, the next `depth` made by a thread of their own while this one is used;
    what broke the source is raised here, where the consumer sees it."""
    ahead: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def receive() -> None:
        try:
            for chunk in chunks:
                if not offer(ahead, chunk, stop):
                    break
            else:
                offer(ahead, _END, stop)
        except BaseException as error:  # the stream broke or was cancelled: the consumer raises it
            offer(ahead, error, stop)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:  # a generator's files are closed here, not whenever it is collected
                close()

    thread = threading.Thread(target=receive, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = ahead.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()  # the receiver ends at its next message, or when the RPC ends
