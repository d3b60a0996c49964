"""`voidlink bench void`: refuses on a CPU; its JSON report has the figures per memory mode (tiny model)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_refuses_politely_without_a_gpu():
    done = subprocess.run(
        [sys.executable, "-m", "voidlink", "bench", "void"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert "measures the VOID model on a CUDA GPU, and this machine has none" in done.stderr
    assert "nothing was run" in done.stderr and done.stdout == ""


def test_json_report_has_the_figures_for_each_mode(capsys):
    from voidlink.bench import void

    assert (
        void.main(
            [
                "--tiny",
                "--json",
                "--frames",
                "9",
                "--size",
                "32x48",
                "--steps",
                "2",
                "--mode",
                "full",
                "--mode",
                "offload",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["device"] == "cpu" and report["frames"] == 9 and report["size"] == "32x48"
    assert set(report["modes"]) == {"full", "offload"}
    for row in report["modes"].values():
        assert set(row) == set(void.KEYS)
        assert row["s_per_step"] > 0 and row["vae_encode_s"] > 0 and row["vae_decode_s"] > 0
        assert row["peak_vram_gb"] is None  # no GPU: no VRAM figure rather than a made-up one
        assert 0 < row["first_progress_s"]
    load = report["load"]
    assert load["load_cached_s"] > 0 and load["weights_gb"] > 0
    assert load["load_cold_s"] is None or load["load_cold_s"] > 0
    assert "from the page cache" in void.format_table(report)
    assert "full" in void.format_table(report) and "VAE decode s" in void.format_table(report)


def test_size_must_be_multiples_of_16(capsys):
    import pytest
    from voidlink.bench import void

    with pytest.raises(SystemExit):
        void.main(["--tiny", "--size", "380x672"])
    assert "multiples of 16" in capsys.readouterr().err


def test_bench_configs_are_the_full_size_models():
    """Built on the meta device (no memory): CogVideoX 1.5's 5B transformer with 48 inputs and its VAE."""
    import torch
    from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel
    from voidlink.bench import void

    with torch.device("meta"):
        transformer = CogVideoXTransformer3DModel(**void.TRANSFORMER_CONFIG)
        vae = AutoencoderKLCogVideoX(**void.VAE_CONFIG)
    assert 5.5e9 < sum(p.numel() for p in transformer.parameters()) < 5.6e9
    assert 2.1e8 < sum(p.numel() for p in vae.parameters()) < 2.2e8
    # 48 input channels × the 2×2×2 patch: the width VOID's checkpoints have.
    assert tuple(transformer.state_dict()["patch_embed.proj.weight"].shape) == (3072, 48 * 8)
