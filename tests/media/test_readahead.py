"""Frames read ahead of their consumer: order, errors in their turn, and the bounds in count and bytes."""

from __future__ import annotations

import threading

import numpy as np
import OpenImageIO as oiio
import pytest
from voidlink.media import image
from voidlink.media.readahead import loaded_bytes, read_ahead

# A loader that goes further than it may is caught within this long (a loader that stays within its bounds
# never sets the event, so waiting longer only makes the check surer, never a correct run fail).
OVERRUN_WAIT = 0.5


class Loads:
    """A loader of `nbytes`-byte frames that records which items it was asked for."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes
        self.started = [threading.Event() for _ in range(100)]
        self.count = 0

    def __call__(self, item: int) -> np.ndarray:
        self.count += 1
        self.started[item].set()
        return np.full(self.nbytes, item % 256, np.uint8)


def test_items_come_in_order():
    loads = Loads(1)
    assert [int(value[0]) for value in read_ahead(range(50), loads, depth=3)] == list(range(50))
    assert loads.count == 50


def test_no_more_than_depth_frames_wait():
    # While the consumer holds frame 0, frames 1 to 3 may wait and frame 4 may be loaded, but no further.
    loads = Loads(1)
    frames = read_ahead(range(20), loads, depth=3)
    assert int(next(frames)[0]) == 0
    assert loads.started[4].wait(30)
    assert not loads.started[5].wait(OVERRUN_WAIT)
    assert [int(f[0]) for f in frames] == list(range(1, 20))


def test_an_error_is_raised_in_its_turn():
    def load(i):
        if i == 3:
            raise ValueError("frame 3 is broken")
        return i

    got = []
    with pytest.raises(ValueError, match="frame 3"):
        for value in read_ahead(range(10), load):
            got.append(value)
    assert got == [0, 1, 2]


def test_a_broken_source_is_raised_after_what_it_gave():
    def frames():
        yield 0
        yield 1
        raise OSError("the folder went away")

    got = []
    with pytest.raises(OSError, match="went away"):
        for value in read_ahead(frames(), lambda i: i):
            got.append(value)
    assert got == [0, 1]


def test_the_bytes_held_ahead_stay_within_the_budget():
    # 100-byte frames, 250 bytes of budget, a depth that would allow far more: while the consumer holds
    # frame 0, frames 1 and 2 may wait (200 bytes) and frame 3 may be loaded, but not put beside them.
    loads = Loads(100)
    frames = read_ahead(range(20), loads, depth=10, budget=250)
    assert int(next(frames)[0]) == 0
    assert loads.started[3].wait(30)
    assert not loads.started[4].wait(OVERRUN_WAIT)
    assert int(next(frames)[0]) == 1  # room for frame 3 to wait, so frame 4 is loaded next
    assert loads.started[4].wait(30)
    assert [int(f[0]) for f in frames] == list(range(2, 20))


def test_frames_that_come_to_the_budget_exactly_may_wait():
    loads = Loads(100)
    frames = read_ahead(range(10), loads, depth=10, budget=200)
    assert int(next(frames)[0]) == 0
    assert loads.started[3].wait(30)  # frames 1 and 2 wait (200 bytes), frame 3 is loaded behind them
    assert not loads.started[4].wait(OVERRUN_WAIT)
    assert [int(f[0]) for f in frames] == list(range(1, 10))


def test_a_bound_that_is_not_a_number_is_refused_where_the_frames_are_asked_for():
    with pytest.raises(ValueError):
        next(read_ahead(range(5), Loads(1), budget="lots"))
    with pytest.raises(TypeError):
        next(read_ahead(range(5), Loads(1), depth=None))


def test_no_budget_bounds_by_count_alone():
    loads = Loads(1000)
    frames = read_ahead(range(10), loads, depth=3, budget=None)
    assert int(next(frames)[0]) == 0
    assert loads.started[4].wait(30)
    assert not loads.started[5].wait(OVERRUN_WAIT)
    assert [int(f[0]) for f in frames] == list(range(1, 10))


def test_a_frame_over_the_budget_is_still_read_ahead_alone():
    loads = Loads(1000)
    frames = read_ahead(range(6), loads, depth=3, budget=250)
    assert int(next(frames)[0]) == 0
    assert loads.started[2].wait(30)  # frame 1 waits alone; frame 2 is loaded behind it
    assert not loads.started[3].wait(OVERRUN_WAIT)
    assert [int(f[0]) for f in frames] == list(range(1, 6))


def test_leaving_early_stops_the_thread():
    loads = Loads(10)
    frames = read_ahead(range(1000), loads, depth=2, name="test-read-ahead-left")
    assert int(next(frames)[0]) == 0
    assert loads.started[3].wait(30)  # two waiting, one loading: the thread is held up by the bound
    threads = [t for t in threading.enumerate() if t.name == "test-read-ahead-left"]
    assert len(threads) == 1
    frames.close()
    threads[0].join(30)
    assert not threads[0].is_alive()
    assert loads.count == 4  # nothing more was loaded once the consumer had gone


def test_loaded_bytes_counts_the_arrays_a_frame_holds():
    pixels = np.zeros((4, 5, 3), np.float32)
    frame = image.ImageFrame(pixels, oiio.ImageSpec(5, 4, 3, "float"), ["R", "G", "B"])
    quadmask = np.zeros((4, 5), np.uint8)
    assert loaded_bytes(pixels) == 240
    assert loaded_bytes(frame) == 240
    assert loaded_bytes((7, frame, quadmask)) == 240 + 20  # as a job's loader hands them over
    assert loaded_bytes("not a frame") == 0
