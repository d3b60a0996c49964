"""`read_ahead`, which both ends of a frame stream use: order kept, the source's failure raised where
the stream is read, and the thread gone once the reader stops."""

from __future__ import annotations

import itertools
import threading

import pytest
from voidlink.protos.readahead import read_ahead


def test_read_ahead_keeps_order_and_raises_what_broke_the_stream():
    assert list(read_ahead(iter(range(50)), depth=2)) == list(range(50))

    def broken():
        yield 1
        raise ConnectionError("cut")

    got = []
    with pytest.raises(ConnectionError):
        for item in read_ahead(broken()):
            got.append(item)
    assert got == [1]


def test_a_reader_that_stops_early_stops_the_thread_even_with_its_queue_full():
    made = []
    full = threading.Event()

    def endless():
        for item in itertools.count():
            made.append(item)
            if len(made) == 4:  # 0 was read, 1 and 2 fill the queue (depth 2): 3 waits on the reader
                full.set()
            yield item

    ahead = read_ahead(endless(), depth=2, name="test-read-ahead")
    assert next(ahead) == 0
    assert full.wait(30)  # a bound, should it hang
    ahead.close()  # what a download does when it stops on a damaged chunk
    for thread in threading.enumerate():
        if thread.name == "test-read-ahead":
            thread.join(timeout=30)
            assert not thread.is_alive()
    assert len(made) == 4  # nothing more was pulled from the source once the reader stopped
