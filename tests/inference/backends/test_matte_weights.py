"""The matte models' weights: folders found, missing and truncated files named, commands, availability.

Checkpoints here are tiny safetensors files written in the test; nothing is loaded, and neither
torch nor transformers is imported by the checks (the daemon lists availability without them).
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from voidlink.inference.backends.matte import weights as mw


def write_safetensors(path: Path, floats: int = 16) -> None:
    """A valid safetensors file holding one float32 tensor (written by hand: no torch needed)."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [floats], "data_offsets": [0, 4 * floats]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * (4 * floats))


def write_model(weights: Path, model: mw.ModelFiles) -> Path:
    folder = weights / model.folder
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    write_safetensors(folder / "model.safetensors")
    for alternatives in model.extra:
        (folder / alternatives[0]).write_text("{}")
    return folder


def test_empty_folder_names_every_model_folder(tmp_path):
    for model in (*mw.SAM2_MODELS, mw.EDGETAM, mw.SAM3):
        report = mw.check_model(tmp_path, model)
        assert report.problems == [f"{tmp_path / model.folder} is missing ({model.label} weights, {model.size})"]


def test_missing_files_are_named(tmp_path):
    folder = tmp_path / mw.SAM3.folder
    folder.mkdir()
    problems = mw.check_model(tmp_path, mw.SAM3).problems
    assert f"{folder / 'config.json'} is missing" in problems
    assert any(p.startswith(f"{folder / 'model.safetensors'} is missing") for p in problems)
    assert f"{folder / 'tokenizer.json'} is missing" in problems


def test_a_truncated_checkpoint_is_named_with_its_sizes(tmp_path):
    folder = write_model(tmp_path, mw.SAM2_DEFAULT)
    assert mw.check_model(tmp_path, mw.SAM2_DEFAULT).ok
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-10])
    (problem,) = mw.check_model(tmp_path, mw.SAM2_DEFAULT).problems
    assert problem.startswith(f"{path} is truncated") and "download it again" in problem


def test_sharded_checkpoints_check_every_shard(tmp_path):
    folder = tmp_path / mw.SAM3.folder
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "tokenizer.json").write_text("{}")
    shards = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": shards[0], "b": shards[1]}}))
    write_safetensors(folder / shards[0])
    problems = mw.check_model(tmp_path, mw.SAM3).problems
    assert problems == [f"{folder / shards[1]} is missing ({mw.SAM3.size})"]
    assert mw.weight_files(folder) == [folder / name for name in shards]


def test_the_largest_whole_sam2_folder_is_chosen(tmp_path):
    assert mw.find_sam2(tmp_path).model == mw.SAM2_DEFAULT  # nothing there: the one the commands fetch
    write_model(tmp_path, mw.SAM2_MODELS[3])  # tiny
    assert mw.find_sam2(tmp_path).model.folder == "sam2.1-hiera-tiny"
    broken = tmp_path / "sam2.1-hiera-large"
    broken.mkdir()
    assert mw.find_sam2(tmp_path).model.folder == "sam2.1-hiera-tiny"  # a broken larger one is passed over
    write_model(tmp_path, mw.SAM2_MODELS[1])  # base-plus
    assert mw.find_sam2(tmp_path).model.folder == "sam2.1-hiera-base-plus"


def test_download_commands(tmp_path):
    commands = mw.download_commands(tmp_path)
    assert commands[0] == "pip install -U 'huggingface_hub[cli]'"
    assert f"hf download facebook/sam2.1-hiera-small --local-dir '{tmp_path / 'sam2.1-hiera-small'}'" in commands
    assert f"hf download yonigozlan/EdgeTAM-hf --local-dir '{tmp_path / 'EdgeTAM-hf'}'" in commands
    # SAM 3 is gated: the login (after accepting its terms) comes before its download.
    assert (
        commands.index("hf auth login")
        == commands.index(f"hf download facebook/sam3 --local-dir '{tmp_path / 'sam3'}'") - 1
    )
    assert mw.download_commands(tmp_path, ("sam2",)) == commands[:2]


def test_availability_reasons_and_licences(tmp_path, monkeypatch):
    monkeypatch.setattr(mw, "_missing_libraries", lambda model: [])
    state = mw.sam2_availability(str(tmp_path))
    assert not state.available and state.reason.startswith("sam2: weights incomplete in")
    assert "sam2.1-hiera-small is missing" in state.reason and "hf download facebook/sam2.1-hiera-small" in state.detail
    assert state.licences == [
        f"SAM 2.1 hiera-small weights: Apache-2.0; no licence file in {tmp_path / 'sam2.1-hiera-small'}, "
        "read https://huggingface.co/facebook/sam2.1-hiera-small"
    ]
    sam3_state = mw.sam3_availability(str(tmp_path))
    assert not sam3_state.available and "accept the terms on https://huggingface.co/facebook/sam3" in sam3_state.detail
    assert "SAM License" in sam3_state.licences[0]
    folder = write_model(tmp_path, mw.SAM3)
    (folder / "LICENSE").write_text("SAM License\nLast Updated: November 19, 2025\n")
    sam3_state = mw.sam3_availability(str(tmp_path))
    assert sam3_state.available and sam3_state.reason == ""
    assert sam3_state.licences == [f"SAM 3 weights: SAM License; read from {folder / 'LICENSE'}"]
    write_model(tmp_path, mw.EDGETAM)
    assert mw.edgetam_availability(str(tmp_path)).available


def test_missing_libraries_are_named(tmp_path, monkeypatch):
    real = mw.importlib.util.find_spec
    monkeypatch.setattr(mw.importlib.util, "find_spec", lambda name: None if name == "timm" else real(name))
    write_model(tmp_path, mw.EDGETAM)
    state = mw.edgetam_availability(str(tmp_path))
    assert not state.available and state.reason == "edgetam: timm not installed (pip install 'voidlink[edgetam]')"
    assert state.detail == ""  # the weights are whole: nothing to download
    monkeypatch.setattr(mw.importlib.util, "find_spec", real)
    old = replace(mw.EDGETAM, transformers_model="no_such_model", libraries=())  # a transformers without it
    state = mw._availability(str(tmp_path), mw.check_model(tmp_path, old))
    assert "has no no_such_model (pip install -U 'voidlink[matte]': transformers 5 or later)" in state.reason


def test_availability_imports_neither_torch_nor_transformers(tmp_path):
    code = (
        "import sys\n"
        "from voidlink.inference.backends.matte import weights\n"
        f"for check in (weights.sam2_availability, weights.edgetam_availability, weights.sam3_availability):\n"
        f"    check({str(tmp_path)!r})\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


@pytest.mark.parametrize("model", [mw.SAM2_DEFAULT, mw.EDGETAM, mw.SAM3])
def test_a_header_only_file_is_not_whole(tmp_path, model):
    folder = write_model(tmp_path, model)
    (folder / "model.safetensors").write_bytes(b"\x01")
    (problem,) = mw.check_model(tmp_path, model).problems
    assert str(folder / "model.safetensors") in problem and "not a safetensors file" in problem


def test_doctor_lists_the_matte_models_and_the_commands_for_what_is_missing(tmp_path, capsys):
    from voidlink.cli import doctor

    write_model(tmp_path, mw.SAM3)
    section = doctor._matte_section(tmp_path)
    assert set(section["models"]) == {"sam2", "edgetam", "sam3"}
    assert not section["models"]["sam2"]["available"] and section["models"]["sam2"]["licences"]
    assert section["download_commands"] == mw.download_commands(tmp_path, ("sam2", "edgetam"))
    doctor._print_matte(section)
    out = capsys.readouterr().out
    assert "matte sam2        unavailable: sam2: weights incomplete" in out
    assert f"    hf download facebook/sam2.1-hiera-small --local-dir '{tmp_path / 'sam2.1-hiera-small'}'" in out
    assert "hf download facebook/sam3" not in out  # whole: nothing to fetch
