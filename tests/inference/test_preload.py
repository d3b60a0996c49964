"""`voidlink serve --preload`: a backend loaded in the background, the daemon serving meanwhile."""

from __future__ import annotations

import threading
from types import MappingProxyType

import pytest
from support.daemons import wait_for
from voidlink.bridge import Client
from voidlink.inference import backends
from voidlink.inference.backends import BackendEntry, BackendRegistry, classical_availability
from voidlink.inference.backends.base import Availability


class _SlowBackend:
    """A backend whose load waits until the test lets it finish."""

    made = 0

    def __init__(self, release: threading.Event, fail: bool = False) -> None:
        self.release, self.fail = release, fail
        type(self).made += 1

    def load(self) -> None:
        assert self.release.wait(10)
        if self.fail:
            raise RuntimeError("weights damaged")


@pytest.fixture
def slow(monkeypatch):
    release = threading.Event()
    state = {"fail": False}
    _SlowBackend.made = 0
    table = dict(backends.BACKENDS)
    table["slow"] = BackendEntry(lambda weights: _SlowBackend(release, state["fail"]), classical_availability)
    table["absent"] = BackendEntry(lambda weights: None, lambda weights: Availability(False, "absent: no card"))
    monkeypatch.setattr(backends, "BACKENDS", MappingProxyType(table))
    monkeypatch.setattr(backends, "BACKEND_NAMES", tuple(table))
    monkeypatch.setattr("voidlink.inference.daemon.BACKEND_NAMES", tuple(table))
    return release, state


def test_a_preload_is_not_loaded_until_its_load_ends_and_a_job_waits_for_it_not_a_second_load(slow):
    release, _ = slow
    registry = BackendRegistry()
    thread = registry.preload("slow")
    wait_for(lambda: _SlowBackend.made == 1)
    assert not registry.is_loaded("slow")  # being loaded is not loaded
    got = []
    job = threading.Thread(target=lambda: got.append(registry.get("slow")))
    job.start()
    release.set()
    thread.join(10)
    job.join(10)
    assert registry.is_loaded("slow") and got and _SlowBackend.made == 1
    assert registry.load_seconds["slow"] >= 0


def test_a_failed_preload_is_kept_and_the_next_job_loads_again(slow):
    release, state = slow
    state["fail"] = True
    release.set()
    registry = BackendRegistry()
    registry.preload("slow").join(10)
    assert not registry.is_loaded("slow")
    assert "weights damaged" in registry.preload_errors["slow"]
    state["fail"] = False
    registry.get("slow")
    assert registry.is_loaded("slow") and "slow" not in registry.preload_errors


def test_the_daemon_serves_while_preloading_and_getinfo_says_when_it_is_in(slow, tmp_path):
    from voidlink.inference.daemon import Daemon

    release, _ = slow
    daemon = Daemon(listen="127.0.0.1:0", data_dir=tmp_path / "data", preload=["slow", "absent"])
    address = daemon.start()
    try:
        assert any("absent: no card" in warning for warning in daemon.warnings)
        client = Client(address)
        info = {b.name: b for b in client.info().backends}  # answered while the load is under way
        assert not info["slow"].loaded and "loading ahead of the first job" in info["slow"].detail
        release.set()
        wait_for(lambda: {b.name: b for b in client.info().backends}["slow"].loaded)
        assert not {b.name: b for b in client.info().backends}["absent"].loaded
    finally:
        release.set()
        daemon.stop()
