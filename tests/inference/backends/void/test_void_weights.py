"""VOID weights: discovery, the folder check (missing, truncated), and loading as the reference does.

Every file here is generated in the test: tiny safetensors checkpoints and a tiny base folder saved
with the real diffusers / transformers writers, so the loader reads what `from_pretrained` reads.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from support.tiny_void import tiny_transformer, write_base
from voidlink.inference.backends import weights_dir
from voidlink.inference.backends.void import loading, weights

from voidlink.errors import InvalidInput, NotFound


@pytest.fixture(scope="module")
def weights_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("weights")
    write_base(folder)
    save_file(tiny_transformer(48, seed=1).state_dict(), str(folder / weights.PASS1))
    return folder


# -- discovery -------------------------------------------------------------------------------------


def test_weights_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("VOIDLINK_WEIGHTS", str(tmp_path / "env"))
    assert weights_dir(str(tmp_path / "flag")) == tmp_path / "flag"
    assert weights_dir() == tmp_path / "env"
    monkeypatch.delenv("VOIDLINK_WEIGHTS")
    default = weights_dir()
    assert default.name == "weights" and "voidlink" in str(default)


# -- the folder check ------------------------------------------------------------------------------


def test_complete_folder_passes(weights_folder):
    report = weights.check_weights(weights_folder)
    assert report.ok, report.problems
    assert not report.pass2
    need = weights.check_weights(weights_folder, need_pass2=True)
    assert need.problems == [f"{weights_folder / weights.PASS2} is missing (about 11 GB)"]


def test_empty_folder_names_everything_and_prints_download_commands(tmp_path):
    report = weights.check_weights(tmp_path)
    assert any(weights.BASE in p and "missing" in p for p in report.problems)
    assert any(p.startswith(str(tmp_path / weights.PASS1)) and "about 11 GB" in p for p in report.problems)
    with pytest.raises(NotFound) as caught:
        weights.require_weights(tmp_path)
    message = str(caught.value)
    assert "hf download alibaba-pai/CogVideoX-Fun-V1.5-5b-InP" in message
    assert f"hf download netflix/void-model {weights.PASS1} --local-dir '{tmp_path}'" in message
    assert caught.value.reason == "WEIGHTS_MISSING"


def test_missing_component_is_named(weights_folder, tmp_path):
    import shutil

    copy = tmp_path / "w"
    shutil.copytree(weights_folder, copy)
    shutil.rmtree(copy / weights.BASE / "vae")
    (copy / weights.BASE / "scheduler" / "scheduler_config.json").unlink()
    problems = weights.check_weights(copy).problems
    assert f"{copy / weights.BASE / 'vae'} is missing (base model component 'vae')" in problems
    assert f"{copy / weights.BASE / 'scheduler' / 'scheduler_config.json'} is missing" in problems
    assert len(problems) == 2


def test_truncated_checkpoint_names_file_and_expected_size(tmp_path):
    path = tmp_path / weights.PASS1
    save_file({"a": torch.zeros(1000), "b": torch.ones(10, 10)}, str(path))
    whole = path.stat().st_size
    assert weights.safetensors_expected_size(path) == whole
    assert weights.check_safetensors(path) is None
    path.write_bytes(path.read_bytes()[: whole - 100])
    problem = weights.check_safetensors(path)
    assert problem == (
        f"{path} is truncated: {whole - 100:,} bytes, expected {whole:,} ({whole / 1e9:.2f} GB); download it again"
    )
    with pytest.raises(InvalidInput, match="truncated") as caught:
        loading.load_state_dict(path)
    assert caught.value.file == str(path)
    # Cut inside the header, and not a safetensors file at all.
    path.write_bytes(path.read_bytes()[:20])
    assert "truncated inside its header" in weights.check_safetensors(path)
    path.write_bytes(b"abc")
    assert "not a safetensors file" in weights.check_safetensors(path)


# -- loading ---------------------------------------------------------------------------------------


def test_full_state_dict_loads_and_reports_keys(tmp_path):
    model = tiny_transformer(48, seed=0)
    source = tiny_transformer(48, seed=1).state_dict()
    dropped = "norm_final.weight"
    state = {key: value for key, value in source.items() if key != dropped}
    state["extra.head.weight"] = torch.zeros(3)
    path = tmp_path / "ckpt.safetensors"
    # Wrapped in a "state_dict" key, as some exports are: saved with torch, read by load_state_dict.
    torch.save({"state_dict": state}, str(tmp_path / "ckpt.pt"))
    save_file(state, str(path))
    reports = []
    for file in (path, tmp_path / "ckpt.pt"):
        loaded = loading.load_state_dict(file)
        reports.append(loading.apply_checkpoint(model, loaded, str(file)))
        # The same file read tensor by tensor (safetensors) or whole (torch), into a fresh model.
        fresh = tiny_transformer(48, seed=0)
        reports.append(loading.load_checkpoint(fresh, file))
        for name, value in fresh.state_dict().items():
            torch.testing.assert_close(value, model.state_dict()[name])
    for report in reports:
        assert report.missing == [dropped] and report.unexpected == ["extra.head.weight"]
        assert not report.adapted_patch_embed
        assert "missing keys: 1" in report.summary() and "extra.head.weight" in report.summary()
    torch.testing.assert_close(model.state_dict()["proj_out.weight"], source["proj_out.weight"])


@pytest.mark.parametrize("from_file", [False, True])
def test_patch_embed_column_rule(tmp_path, from_file):
    """A narrower checkpoint keeps its first and last 128 columns; the model's own fill the middle."""
    model = tiny_transformer(48, seed=0)
    own = model.state_dict()[loading.PATCH_EMBED].clone()
    assert own.shape[1] == 48 * 8
    theirs = tiny_transformer(33, seed=1).state_dict()
    assert theirs[loading.PATCH_EMBED].shape[1] == 33 * 8
    if from_file:
        save_file(theirs, str(tmp_path / weights.PASS1))
        report = loading.load_checkpoint(model, tmp_path / weights.PASS1)
    else:
        report = loading.apply_checkpoint(model, theirs, "void_pass1.safetensors")
    assert report.adapted_patch_embed and "patch embedding adapted" in report.summary()
    merged = model.state_dict()[loading.PATCH_EMBED]
    torch.testing.assert_close(merged[:, :128], theirs[loading.PATCH_EMBED][:, :128])
    torch.testing.assert_close(merged[:, -128:], theirs[loading.PATCH_EMBED][:, -128:])
    torch.testing.assert_close(merged[:, 128:-128], own[:, 128:-128])
    # Everything else came from the checkpoint as it is.
    torch.testing.assert_close(model.state_dict()["proj_out.weight"], theirs["proj_out.weight"])


def test_wrong_shape_file_is_a_clear_error(tmp_path):
    model = tiny_transformer(48)
    state = dict(model.state_dict())
    state["proj_out.weight"] = torch.zeros(5, 7)
    path = tmp_path / "other_model.safetensors"
    save_file(state, str(path))
    before = {name: value.clone() for name, value in model.state_dict().items()}
    for load in (
        lambda: loading.apply_checkpoint(model, loading.load_state_dict(path), str(path)),
        lambda: loading.load_checkpoint(model, path),
    ):
        with pytest.raises(InvalidInput) as caught:
            load()
        message = str(caught.value)
        assert str(path) in message and "proj_out.weight (5, 7)" in message and "wrong shape" in message
        assert caught.value.reason == "BAD_WEIGHTS" and caught.value.file == str(path)
    # Refused before anything was copied: the model is as it was.
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    # A patch embedding of another model width cannot be adapted by the column rule either.
    bad = dict(model.state_dict())
    bad[loading.PATCH_EMBED] = torch.zeros(10, 48 * 8 - 8)
    with pytest.raises(InvalidInput, match="not a checkpoint for this base model"):
        loading.apply_checkpoint(model, bad, "x.safetensors")


def test_base_folder_loads_with_the_reference_rules(weights_folder):
    """The whole base folder through the libraries' loaders, widened to 48 input channels."""
    parts = loading.build_components(weights_folder / weights.BASE, torch.float32)
    transformer = parts["transformer"]
    assert transformer.config.in_channels == 48
    # Read into place without a random init; the widened patch embedding is allocated for the checkpoint.
    assert parts["transformer_unfilled"] == [loading.PATCH_EMBED]
    assert not any(t.is_meta for t in transformer.state_dict().values())
    torch.testing.assert_close(
        transformer.state_dict()["proj_out.weight"], tiny_transformer(33).state_dict()["proj_out.weight"]
    )
    assert parts["transformer_config"]["add_noise_in_inpaint_model"] is True
    assert parts["scheduler"].config.prediction_type == "v_prediction"
    import sentencepiece

    spiece = sentencepiece.SentencePieceProcessor(
        model_file=str(weights_folder / weights.BASE / "tokenizer" / "spiece.model")
    )
    tokenizer = parts["tokenizer"]
    ids = tokenizer(["an empty street"], padding="max_length", max_length=40, truncation=True).input_ids
    expected = spiece.encode("an empty street") + [1]  # T5: the pieces, then </s>, padded with 0
    assert len(expected) < 40 and ids[0].tolist() == expected + [0] * (40 - len(expected))
    cut = tokenizer(["an empty street " * 10], padding="max_length", max_length=6, truncation=True).input_ids
    assert cut.shape == (1, 6) and cut[0, -1].item() == 1
    pass1 = loading.load_state_dict(weights_folder / weights.PASS1)
    report = loading.apply_checkpoint(transformer, pass1, weights.PASS1)
    assert report.missing == [] and report.unexpected == [] and not report.adapted_patch_embed
    loading.require_filled(parts["transformer_unfilled"], report, weights.PASS1)
    torch.testing.assert_close(transformer.state_dict()[loading.PATCH_EMBED], pass1[loading.PATCH_EMBED])
    # A checkpoint without the 48-channel patch embedding would leave it at zero: refused.
    partial = {key: value for key, value in pass1.items() if key != loading.PATCH_EMBED}
    lacking = loading.apply_checkpoint(transformer, partial, "partial.safetensors")
    with pytest.raises(InvalidInput, match="partial.safetensors has no patch_embed.proj.weight"):
        loading.require_filled(parts["transformer_unfilled"], lacking, "partial.safetensors")


def test_broken_component_is_named(weights_folder, tmp_path):
    import shutil

    copy = tmp_path / "w"
    shutil.copytree(weights_folder, copy)
    (copy / weights.BASE / "vae" / "config.json").write_text("{not json")
    with pytest.raises(InvalidInput) as caught:
        loading.build_components(copy / weights.BASE, torch.float32)
    assert caught.value.file == str(copy / weights.BASE / "vae")
    assert "cannot load the base model's vae" in str(caught.value)
