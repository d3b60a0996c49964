"""The matte trackers' and proposers' tables and the registry that keeps them resident: one row per model,
`auto`, the text proposer's fallback, and a build without a model's module listing it as not installed."""

from __future__ import annotations

from types import MappingProxyType

import pytest
from support.mattes import RingProposer, ShiftTracker, install
from voidlink.inference.backends import matte as mattes
from voidlink.inference.backends.base import Availability
from voidlink.inference.backends.matte import NOT_INSTALLED, MatteEntry, MatteRegistry

from voidlink import errors


def test_the_tables_name_every_tracker_and_proposer_in_order():
    assert tuple(mattes.TRACKERS) == ("classical", "sam2", "edgetam")
    assert tuple(mattes.PROPOSERS) == ("motion", "sam3")
    assert set(mattes.AUTO_TRACKERS) <= set(mattes.TRACKERS) and mattes.AUTO_TRACKERS[-1] == "classical"
    with pytest.raises(TypeError):
        mattes.TRACKERS["other"] = mattes.TRACKERS["classical"]  # type: ignore[index]  # read-only
    registry = MatteRegistry()
    assert registry.availability("classical").available
    assert registry.availability("motion", "proposer").available


def test_a_build_without_a_models_module_lists_it_as_not_installed(monkeypatch):
    real = mattes._module
    monkeypatch.setattr(mattes, "_module", lambda name: None if name in ("weights", "sam2") else real(name))
    registry = MatteRegistry()
    for name in ("sam2", "edgetam"):
        state = registry.availability(name)
        assert not state.available and state.reason == f"{name}: {NOT_INSTALLED}"
    assert registry.availability("sam3", "proposer").reason == f"sam3: {NOT_INSTALLED}"
    assert registry.resolve("auto") == "classical"
    with pytest.raises(errors.Unavailable) as refused:
        registry.resolve("sam2")
    assert (refused.value.reason, refused.value.field) == ("TRACKER_UNAVAILABLE", "spec.matte.tracker")
    with pytest.raises(errors.Unavailable):
        mattes.TRACKERS["sam2"].factory(None)


def test_auto_takes_sam2_where_it_can_run(monkeypatch):
    here = MatteEntry(lambda weights: ShiftTracker(), lambda weights: Availability(True))
    monkeypatch.setattr(mattes, "TRACKERS", MappingProxyType({**mattes.TRACKERS, "sam2": here}))
    assert MatteRegistry().resolve("auto") == "sam2" and MatteRegistry().resolve("") == "sam2"
    assert MatteRegistry().resolve("Classical") == "classical"


def test_unknown_names_are_refused_naming_the_choices():
    with pytest.raises(errors.InvalidInput) as refused:
        MatteRegistry().resolve("magic")
    assert refused.value.reason == "UNKNOWN_TRACKER" and "classical, sam2, edgetam" in str(refused.value)


def test_text_goes_to_sam3_when_it_can_run_else_to_motion_with_a_note(monkeypatch):
    install(monkeypatch, ShiftTracker(), RingProposer())
    registry = MatteRegistry()
    assert registry.proposer("") == ("motion", "")
    name, note = registry.proposer("its shadow")
    assert name == "motion" and "'its shadow' was not used" in note and "sam3: no weights in the test" in note
    install(monkeypatch, ShiftTracker(), RingProposer(), sam3=True)
    assert MatteRegistry().proposer("its shadow") == ("sam3", "")


def test_a_tracker_is_loaded_once_and_kept(monkeypatch):
    tracker = ShiftTracker()
    install(monkeypatch, tracker)
    registry = MatteRegistry()
    assert not registry.is_loaded("classical")
    assert registry.get("classical") is registry.get("classical") is tracker
    assert tracker.loads == 1 and registry.is_loaded("classical") and registry.knows("motion")
    registry.preload("motion").join(10)
    assert registry.is_loaded("motion", "proposer")
    with pytest.raises(errors.Unavailable):
        registry.preload("sam2")
