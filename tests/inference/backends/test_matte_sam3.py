"""The SAM 3 affected-region proposer on a tiny random-initialised Sam3Model and a tiny tokenizer.

Random weights find random instances: the model tests hold the plumbing (every frame once, the
frame's size, 0-1 values, phrases tokenised with the folder's tokenizer, cancelling, frames without
the object); the choice of instances near the object is tested on drawn instances.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from voidlink.inference.backends.matte import sam3  # noqa: E402
from voidlink.inference.backends.matte.base import Cancelled, MatteRequest  # noqa: E402
from voidlink.inference.backends.matte.sam3 import Sam3Proposer, near_instances, split_phrases  # noqa: E402
from voidlink.inference.backends.void.weights import Digests  # noqa: E402

from voidlink.errors import InvalidInput, NotFound  # noqa: E402

SIZE = 112  # the model's square input: an 8 x 8 grid of 14-pixel patches
WORDS = ["<pad>", "<unk>", "shadow", "reflection", "the", "its", "cart", "<start>", "<end>"]


def tiny_sam3_config() -> transformers.Sam3Config:
    grid = SIZE // 14
    return transformers.Sam3Config(
        vision_config=dict(
            backbone_config=dict(
                model_type="sam3_vit_model",
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=2,
                image_size=SIZE,
                patch_size=14,
                window_size=4,
                global_attn_indexes=[1],
                pretrain_image_size=SIZE,
            ),
            fpn_hidden_size=32,
            backbone_feature_sizes=[[grid * 4] * 2, [grid * 2] * 2, [grid] * 2],
        ),
        text_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            vocab_size=len(WORDS),
            projection_dim=32,
            max_position_embeddings=32,
            bos_token_id=WORDS.index("<start>"),
            eos_token_id=WORDS.index("<end>"),
            pad_token_id=0,
        ),
        geometry_encoder_config=dict(hidden_size=32, num_layers=1, num_attention_heads=2, intermediate_size=64),
        detr_encoder_config=dict(hidden_size=32, num_layers=1, num_attention_heads=2, intermediate_size=64),
        detr_decoder_config=dict(
            hidden_size=32, num_layers=1, num_queries=8, num_attention_heads=2, intermediate_size=64
        ),
        mask_decoder_config=dict(hidden_size=32, num_attention_heads=2),
    )


def write_tokenizer(folder: Path) -> None:
    model = tokenizers.models.WordLevel({word: i for i, word in enumerate(WORDS)}, unk_token="<unk>")
    tokenizer = tokenizers.Tokenizer(model)
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", unk_token="<unk>")
    fast.save_pretrained(str(folder))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """A tiny model on two shared cores: one thread is steady, two spin against each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def proposer(tmp_path_factory) -> Sam3Proposer:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("weights") / "sam3"
    transformers.Sam3Model(tiny_sam3_config()).eval().save_pretrained(str(folder))
    write_tokenizer(folder)
    cache = tmp_path_factory.mktemp("cache") / "weights-sha256.json"
    # threshold 0: keep every instance the model finds
    resident = Sam3Proposer(folder=folder, device="cpu", threshold=0.0, digests=Digests(cache))
    resident.load()
    return resident


class Frames:
    def __init__(self, count: int = 4, width: int = 64, height: int = 48) -> None:
        self.frames = list(range(1, count + 1))
        self.size = (width, height)
        self.reads: list[int] = []

    def read(self, frame: int) -> np.ndarray:
        self.reads.append(frame)
        width, height = self.size
        image = np.full((height, width, 3), 0.6, np.float32)
        image[30:40, 20:44] = 0.1  # a shadow under the object
        return image


def object_matte(frame: int) -> np.ndarray:
    matte = np.zeros((48, 64), np.float32)
    if frame != 3:  # the object is out of the frame on frame 3
        matte[10:30, 24:40] = 1.0
    return matte


def test_every_frame_once_at_the_frames_size(proposer):
    reader = Frames()
    request = MatteRequest()
    got = []
    for frame, matte in proposer.propose(reader, object_matte, "its shadow; reflection;  ; its shadow", request):
        assert not torch.is_inference_mode_enabled()  # never held while the caller runs
        got.append((frame, matte))
    assert [frame for frame, _ in got] == reader.frames
    for _, matte in got:
        assert matte.shape == (48, 64) and matte.dtype == np.float32
        assert 0.0 <= matte.min() and matte.max() <= 1.0
    mattes = dict(got)
    assert not mattes[3].any() and 3 not in reader.reads  # no object: nothing proposed, the frame not even read
    assert any(mattes[frame].any() for frame in (1, 2, 4))  # every instance kept: some lie near the object
    assert any("proposal" in note for note in request.notes) and any("without the object" in n for n in request.notes)
    assert request.provenance["proposer"] == "sam3" and len(request.provenance["proposer_weights_sha256"]) == 64


def test_nothing_near_gives_nothing(proposer, monkeypatch):
    monkeypatch.setattr(sam3, "near_instances", lambda *args, **kwargs: [])
    assert not any(matte.any() for _, matte in proposer.propose(Frames(2), object_matte, "shadow", MatteRequest()))


def test_cancel_and_empty_text(proposer):
    with pytest.raises(Cancelled):
        list(proposer.propose(Frames(), object_matte, "shadow", MatteRequest(cancelled=lambda: True)))
    with pytest.raises(InvalidInput) as caught:
        list(proposer.propose(Frames(), object_matte, " ; ", MatteRequest()))
    assert caught.value.reason == "NO_AFFECTED_TEXT"


def test_split_phrases():
    assert split_phrases("its shadow; the  reflection;;its shadow ") == ["its shadow", "the reflection"]
    assert split_phrases("") == []


def test_near_instances_keeps_touching_ones_and_leaves_out_the_object():
    obj = np.zeros((40, 40), bool)
    obj[10:20, 10:20] = True  # area 100: reach 0.5 grows it by 5 pixels
    shadow = np.zeros_like(obj)
    shadow[22:26, 8:22] = True  # 2 pixels below the object
    far = np.zeros_like(obj)
    far[34:38, 34:38] = True
    itself = np.zeros_like(obj)
    itself[10:20, 10:21] = True  # the object, found again by its name
    assert near_instances(np.stack([shadow, far, itself]), obj) == [0]
    assert near_instances(np.stack([shadow, far]), obj, reach=3.0) == [0, 1]
    assert near_instances(np.stack([shadow]), np.zeros_like(obj)) == []


def test_missing_weights_name_the_files(tmp_path):
    folder = tmp_path / "sam3"
    folder.mkdir()
    with pytest.raises(NotFound) as caught:
        Sam3Proposer(folder=folder).load()
    message = str(caught.value)
    assert str(folder / "config.json") in message and str(folder / "tokenizer.json") in message
    assert "hf download facebook/sam3" in message and "hf auth login" in message
