"""`auto` backend selection: VOID only with a CUDA device and complete weights, and why not otherwise."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from support.tiny_void import write_weights_folder
from voidlink.inference.backends import BackendRegistry, availability
from voidlink.inference.backends.void import weights

from voidlink.errors import Unavailable


@pytest.fixture
def complete(tmp_path) -> Path:
    return write_weights_folder(tmp_path / "weights")


def test_auto_picks_void_with_cuda_and_weights(monkeypatch, complete):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    state = availability("void", str(complete))
    assert state.available and state.detail == f"weights in {complete}, no void_pass2.safetensors (pass 2 unavailable)"
    registry = BackendRegistry(str(complete))
    assert registry.resolve("auto") == "void" and registry.resolve("void") == "void"


def test_auto_falls_back_without_cuda(monkeypatch, complete):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    registry = BackendRegistry(str(complete))
    assert registry.resolve("auto") == "classical"
    with pytest.raises(Unavailable) as caught:
        registry.resolve("void")
    assert str(caught.value) == "void: no CUDA device"
    assert registry.availability("void").detail == ""  # nothing to download
    assert caught.value.field == "spec.params.backend"


def test_auto_falls_back_without_weights_and_says_exactly_what_is_missing(monkeypatch, complete):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    (complete / weights.PASS1).unlink()
    shutil.rmtree(complete / weights.BASE / "vae")
    state = availability("void", str(complete))
    assert not state.available
    assert state.reason == (
        f"void: weights incomplete in {complete}: {complete / weights.BASE / 'vae'} is missing (base model "
        f"component 'vae'); {complete / weights.PASS1} is missing (about 11 GB)"
    )
    assert state.detail.startswith("on a machine with internet, run: pip install")
    assert f"hf download netflix/void-model {weights.PASS1} --local-dir '{complete}'" in state.detail
    assert BackendRegistry(str(complete)).resolve("auto") == "classical"


def test_truncated_checkpoint_makes_void_unavailable(monkeypatch, complete):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    path = complete / weights.PASS1
    path.write_bytes(path.read_bytes()[:-10])
    state = availability("void", str(complete))
    assert not state.available and f"{path} is truncated" in state.reason and "expected" in state.reason


def test_no_cuda_and_no_weights_are_both_reported(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("VOIDLINK_WEIGHTS", str(tmp_path / "nowhere"))
    reason = availability("void").reason
    assert reason.startswith("void: no CUDA device; weights incomplete in ")
    assert str(tmp_path / "nowhere" / weights.BASE) in reason


def test_one_table_of_backends_lists_checks_and_creates_them(monkeypatch, complete):
    from voidlink.inference import backends
    from voidlink.inference.backends.classical import ClassicalBackend

    from voidlink.errors import InvalidInput

    assert backends.BACKEND_NAMES == tuple(backends.BACKENDS) == ("classical", "void")
    assert set(backends.AUTO_ORDER) <= set(backends.BACKENDS)
    with pytest.raises(TypeError):
        backends.BACKENDS["other"] = backends.BACKENDS["classical"]  # type: ignore[index]  # read-only
    factory, check = backends.BACKENDS["classical"]
    assert check(None).available and isinstance(factory(None), ClassicalBackend)
    # A row is all it takes: the registry lists, checks and creates from the table alone.
    made = []

    def make(weights):
        made.append(weights)
        return ClassicalBackend()

    row = backends.BackendEntry(make, backends.classical_availability)
    monkeypatch.setattr(backends, "BACKENDS", {**backends.BACKENDS, "other": row})
    registry = BackendRegistry(str(complete))
    assert registry.resolve("other") == "other" and registry.get("other") is registry.get("other")
    assert made == [str(complete)]
    with pytest.raises(InvalidInput) as caught:
        registry.resolve("nope")
    assert str(caught.value) == "unknown backend 'nope' (choose auto, classical, void, other)"
    assert caught.value.reason == "UNKNOWN_BACKEND" and caught.value.field == "spec.params.backend"
