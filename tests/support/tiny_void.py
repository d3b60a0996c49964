"""Tiny VOID models and shots built in the test (random-initialised configs of CogVideoX-Fun, T5 and a
sentencepiece model), run in well under a second on CPU; weights folders written in the reference's layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from safetensors.torch import save_file
from voidlink.inference.backends import base
from voidlink.inference.backends.void import weights
from voidlink.inference.backends.void.backend import VoidBackend, VoidSettings
from voidlink.inference.backends.void.pipeline import VoidPipeline


def tiny_components(seed: int = 0):
    from diffusers import AutoencoderKLCogVideoX, DDIMScheduler

    torch.manual_seed(seed)
    vae = AutoencoderKLCogVideoX(
        block_out_channels=(4, 4, 4, 4),
        layers_per_block=1,
        norm_num_groups=2,
        latent_channels=16,
        temporal_compression_ratio=4,
    ).eval()
    transformer = tiny_transformer(seed=None)  # drawn on from the VAE's seed, as before
    scheduler = DDIMScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        timestep_spacing="trailing",
    )
    return vae, transformer, scheduler


class StubTokenizer:
    """Same call signature as the T5 tokenizer: one token per word, id = word length (+1), eos = 1."""

    def __call__(
        self, texts, padding="longest", max_length=None, truncation=False, add_special_tokens=True, return_tensors="pt"
    ):
        from types import SimpleNamespace

        rows = [[len(word) + 1 for word in text.split()] + [1] for text in texts]
        if truncation and max_length:
            rows = [row[: max_length - 1] + [1] if len(row) > max_length else row for row in rows]
        width = max_length if padding == "max_length" else max(len(row) for row in rows)
        return SimpleNamespace(input_ids=torch.tensor([row + [0] * (width - len(row)) for row in rows]))


def tiny_text_encoder():
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    config = T5Config(vocab_size=64, d_model=16, d_kv=4, d_ff=16, num_layers=1, num_heads=2)
    return T5EncoderModel(config).eval()


def tiny_pipeline(with_text: bool = False):

    vae, transformer, scheduler = tiny_components()
    if with_text:
        return VoidPipeline(StubTokenizer(), tiny_text_encoder(), vae, transformer, scheduler)
    return VoidPipeline(None, None, vae, transformer, scheduler)


TINY = dict(temporal_window_size=5, temporal_multidiffusion_stride=4, max_frames=13, max_sequence_length=8)


def tiny_clip(frames: int = 9, size: int = 32):
    rng = np.random.default_rng(3)
    video = rng.random((frames, size, size, 3), dtype=np.float32)
    quadmask = np.full((frames, size, size), 255, np.uint8)
    quadmask[:, 8:16, 8:16] = 0
    quadmask[:, 16:24, 8:24] = 127
    return video, quadmask


def tiny_transformer(in_channels: int = 48, seed: Optional[int] = 0):
    """A random CogVideoX-Fun transformer (48 input channels: latents, mask, masked video); `seed` None
    draws on from torch's generator as it stands."""
    from diffusers import CogVideoXTransformer3DModel

    if seed is not None:
        torch.manual_seed(seed)
    return CogVideoXTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=in_channels,
        out_channels=16,
        time_embed_dim=8,
        text_embed_dim=16,
        num_layers=1,
        sample_width=16,
        sample_height=16,
        sample_frames=9,
        patch_size=2,
        patch_size_t=2,
        max_text_seq_length=8,
        use_rotary_positional_embeddings=True,
    ).eval()


def train_tiny_spiece(folder: Path) -> Path:
    """A real SentencePiece model (what T5Tokenizer reads), trained on a few lines in a moment."""
    import sentencepiece as spm

    lines = ["an empty street at night", "a kitchen table with a glass", "the wall behind the man"] * 20
    model = folder / "spiece.model"
    with open(model, "wb") as handle:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_writer=handle,
            vocab_size=24,
            minloglevel=2,
            model_type="unigram",
            pad_id=0,
            eos_id=1,
            unk_id=2,
            bos_id=-1,
        )
    return model


def write_base(folder: Path, base_in_channels: int = 33) -> Path:
    """A CogVideoX-Fun-style base folder with every component, written by the libraries' own savers."""
    from diffusers import AutoencoderKLCogVideoX, DDIMScheduler
    from transformers import T5Config, T5EncoderModel

    base = folder / weights.BASE
    transformer = tiny_transformer(base_in_channels)
    transformer.save_pretrained(base / "transformer")
    config = json.loads((base / "transformer" / "config.json").read_text())
    config["add_noise_in_inpaint_model"] = True  # a CogVideoX-Fun key diffusers' model does not keep
    (base / "transformer" / "config.json").write_text(json.dumps(config))
    AutoencoderKLCogVideoX(
        block_out_channels=(4, 4, 4, 4),
        layers_per_block=1,
        norm_num_groups=2,
        latent_channels=16,
        temporal_compression_ratio=4,
    ).save_pretrained(base / "vae")
    T5EncoderModel(T5Config(vocab_size=40, d_model=16, d_kv=4, d_ff=16, num_layers=1, num_heads=2)).save_pretrained(
        base / "text_encoder"
    )
    # The base model's tokenizer folder: spiece.model and its config, nothing else.
    (base / "tokenizer").mkdir()
    train_tiny_spiece(base / "tokenizer")
    (base / "tokenizer" / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "T5Tokenizer",
                "model_max_length": 226,
                "extra_ids": 0,
                "eos_token": "</s>",
                "pad_token": "<pad>",
                "unk_token": "<unk>",
            }
        )
    )
    DDIMScheduler(
        beta_schedule="scaled_linear",
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        timestep_spacing="trailing",
        clip_sample=False,
    ).save_pretrained(base / "scheduler")
    return base


def _tensors(path: Path, size: int = 16) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"w": torch.zeros(size)}, str(path))


def write_weights_folder(folder: Path, pass2: bool = False) -> Path:
    """Every file the check looks for, with real safetensors headers (contents are not loaded here)."""
    base = folder / weights.BASE
    for name, (config, _) in weights.COMPONENTS.items():
        (base / name).mkdir(parents=True, exist_ok=True)
        (base / name / config).write_text("{}")
    _tensors(base / "transformer" / "diffusion_pytorch_model.safetensors")
    _tensors(base / "vae" / "diffusion_pytorch_model.safetensors")
    _tensors(base / "text_encoder" / "model.safetensors")
    (base / "tokenizer" / "spiece.model").write_bytes(b"\0" * 16)
    _tensors(folder / weights.PASS1, 64)
    if pass2:
        _tensors(folder / weights.PASS2, 64)
    return folder


TINY_SETTINGS = VoidSettings(
    working_area=48 * 32,
    temporal_window=5,
    multidiffusion_stride=4,
    max_frames=13,
    segment_overlap=4,
    max_sequence_length=8,
)


def tiny_backend(with_text: bool = True, **kwargs) -> VoidBackend:
    backend = VoidBackend(pipeline=tiny_pipeline(with_text=with_text), device="cpu", settings=TINY_SETTINGS, **kwargs)
    backend.load()
    return backend


def shot(frames: int, size: tuple[int, int] = (48, 32)) -> tuple[list[np.ndarray], list[np.ndarray]]:
    width, height = size
    rng = np.random.default_rng(11)
    images = [rng.random((height, width, 3), dtype=np.float32) for _ in range(frames)]
    masks = []
    for i in range(frames):
        qm = np.full((height, width), 255, np.uint8)
        qm[8:16, 4 + i % 8 : 12 + i % 8] = 0
        qm[16:20, 4:20] = 127
        masks.append(qm)
    return images, masks


def request(frames: int, **kwargs) -> base.BackendRequest:
    return base.BackendRequest(first=1001, last=1000 + frames, steps=2, prompt="an empty room", **kwargs)


def feed(images, masks, first: int = 1001):
    for i, (image, qm) in enumerate(zip(images, masks)):
        yield base.BackendFrame(first + i, image, qm)
