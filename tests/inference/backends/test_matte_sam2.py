"""The SAM 2.1 tracker on a tiny random-initialised Sam2VideoModel saved into a folder of its own.

The model is built from a small config in the test, written with `save_pretrained` beside a
preprocessor config of the published form, and loaded through the tracker's own loading (local
files only). Random weights say nothing about quality: these tests hold the plumbing (every frame
once, both directions, prompts reaching the model, cancelling, memory kept bounded).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from voidlink.inference.backends.matte.base import Cancelled, MatteRequest, Prompt  # noqa: E402
from voidlink.inference.backends.matte.sam2 import Sam2Tracker, merge_prompts  # noqa: E402
from voidlink.inference.backends.void.weights import Digests  # noqa: E402

from voidlink.errors import InvalidInput, NotFound  # noqa: E402

SIZE = 64  # the model's square input


def tiny_sam2_config() -> transformers.Sam2VideoConfig:
    s = SIZE
    return transformers.Sam2VideoConfig(
        vision_config=dict(
            backbone_config=dict(
                model_type="sam2_hiera_det_model",
                hidden_size=8,
                num_attention_heads=1,
                image_size=[s, s],
                blocks_per_stage=[1, 1, 2, 1],
                embed_dim_per_stage=[8, 16, 32, 64],
                num_attention_heads_per_stage=[1, 1, 1, 1],
                window_size_per_stage=[4, 4, 4, 4],
                global_attention_blocks=[3],
                window_positional_embedding_background_size=[2, 2],
            ),
            backbone_channel_list=[64, 32, 16, 8],
            backbone_feature_sizes=[[s // 4, s // 4], [s // 8, s // 8], [s // 16, s // 16]],
            fpn_hidden_size=128,
        ),
        prompt_encoder_config=dict(hidden_size=128, image_size=s, patch_size=16),
        mask_decoder_config=dict(hidden_size=128, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=16),
        image_size=s,
        num_maskmem=3,
        max_object_pointers_in_encoder=4,
        memory_attention_hidden_size=128,
        memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=64,
        memory_attention_rope_feat_sizes=[s // 16, s // 16],
        memory_encoder_hidden_size=128,
        # The memory attention reads 64 memory channels whatever the config, and splits object pointers
        # only when the hidden size is larger than that (as in the published 256): hence 128 and 64.
        memory_encoder_output_channels=64,
        mask_downsampler_embed_dim=128,
        memory_fuser_embed_dim=128,
        memory_fuser_intermediate_dim=64,
    )


def write_preprocessor(folder: Path) -> None:
    """The preprocessor config in the form the published SAM 2.1 folders carry, at the tiny size."""
    (folder / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_processor_type": "Sam2ImageProcessorFast",
                "do_resize": True,
                "size": {"height": SIZE, "width": SIZE},
                "do_normalize": True,
                "image_mean": [0.485, 0.456, 0.406],
                "image_std": [0.229, 0.224, 0.225],
                "mask_size": {"height": SIZE // 4, "width": SIZE // 4},
            }
        )
    )


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """A tiny model on two shared cores: one thread is steady, two spin against each other (seconds to a minute)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    where = tmp_path_factory.mktemp("weights") / "sam2.1-hiera-tiny"
    transformers.Sam2VideoModel(tiny_sam2_config()).eval().save_pretrained(str(where))
    write_preprocessor(where)
    return where


@pytest.fixture(scope="module")
def tracker(folder, tmp_path_factory) -> Sam2Tracker:
    cache = tmp_path_factory.mktemp("cache") / "weights-sha256.json"
    resident = Sam2Tracker(folder=folder, device="cpu", digests=Digests(cache))
    resident.load()
    return resident


def test_loaded_once_and_the_weights_hash_is_the_files(tracker, folder):
    model = tracker.model
    tracker.load()
    assert tracker.model is model  # resident: a second job does not load again
    request = MatteRequest()
    list(tracker.track(Frames(count=2), [Prompt(1001, points=((18.5, 20.5, True),))], request))
    expected = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert request.provenance["weights_sha256"] == expected
    assert request.provenance["device"] == "cpu float32"


class Frames:
    """A FrameReader over a few generated frames: a bright square moving right."""

    def __init__(self, first: int = 1001, count: int = 8, width: int = 48, height: int = 40) -> None:
        self.frames = list(range(first, first + count))
        self.size = (width, height)
        self.reads: list[int] = []

    def read(self, frame: int) -> np.ndarray:
        self.reads.append(frame)
        width, height = self.size
        image = np.full((height, width, 3), 0.2, np.float32)
        x = 8 + 2 * (frame - self.frames[0])
        image[12:28, x : x + 14] = (0.9, 0.7, 0.3)
        return image


def run(tracker: Sam2Tracker, reader: Frames, prompts, request=None) -> dict[int, np.ndarray]:
    request = request or MatteRequest()
    got = list(tracker.track(reader, prompts, request))
    frames = [frame for frame, _ in got]
    assert sorted(frames) == reader.frames and len(frames) == len(set(frames)), frames
    return dict(got)


def test_point_on_a_middle_frame_tracks_both_ways(tracker):
    reader = Frames()
    request = MatteRequest()
    messages: list[str] = []
    request.on_message = messages.append
    order = [frame for frame, _ in tracker.track(reader, [Prompt(1004, points=((18.5, 20.5, True),))], request)]
    assert sorted(order) == reader.frames and len(order) == len(set(order))
    # Forward from the prompt frame first, then backward from it to the range's start.
    assert order[:5] == [1004, 1005, 1006, 1007, 1008] and order[5:] == [1003, 1002, 1001]
    assert any("forward" in m for m in messages) and any("backward" in m for m in messages)
    mattes = run(tracker, Frames(), [Prompt(1004, points=((18.5, 20.5, True),))])
    for matte in mattes.values():
        assert matte.shape == (40, 48) and matte.dtype == np.float32
        assert 0.0 <= matte.min() and matte.max() <= 1.0 and np.isfinite(matte).all()
    assert request.provenance["tracker"] == "sam2" and request.provenance["model"] == "facebook/sam2.1-hiera-tiny"
    assert len(request.provenance["weights_sha256"]) == 64
    assert request.notes


def test_a_later_prompt_changes_its_frame(tracker):
    first = Prompt(1002, points=((18.5, 20.5, True),))
    alone = run(tracker, Frames(), [first])
    corrected = run(tracker, Frames(), [first, Prompt(1006, points=((30.5, 20.5, True), (5.5, 5.5, False)))])
    assert not np.allclose(alone[1006], corrected[1006])
    # ... and the frames tracked from it, through the memory (slightly: random weights carry little).
    assert not np.array_equal(alone[1008], corrected[1008])


def test_boxes_and_shapes_prompt_too(tracker):
    shape = np.zeros((40, 48), bool)
    shape[12:28, 14:28] = True
    by_box = run(tracker, Frames(count=4), [Prompt(1001, boxes=((8, 12, 22, 28),))])
    by_shape = run(tracker, Frames(count=4), [Prompt(1002, shape=shape)])
    assert not np.allclose(by_box[1002], by_shape[1002])
    # A drawn shape is the object on its frame: the mask prompt is taken as the output there.
    assert by_shape[1002][20, 20] > 0.5 and by_shape[1002][2, 2] < 0.5


def test_frames_are_read_on_demand_and_pruning_changes_nothing(tracker, monkeypatch):
    prompts = [Prompt(1016, points=((18.5, 20.5, True),))]
    reader = Frames(count=36, width=96)
    pruned = run(tracker, reader, prompts)
    assert len(reader.reads) <= 2 * len(reader.frames)  # read as tracked, never held as a whole video
    assert len(tracker.last_frames._cache) <= 2
    kept: list[int] = []
    original = Sam2Tracker._prune

    def measure(session, obj, index, start, window):
        original(session, obj, index, start, window)
        kept.append(len(session.output_dict_per_obj[obj]["non_cond_frame_outputs"]))

    monkeypatch.setattr(Sam2Tracker, "_prune", staticmethod(measure))
    run(tracker, Frames(count=36, width=96), prompts)
    window = max(tracker.model.config.num_maskmem, tracker.model.config.max_object_pointers_in_encoder) + 1
    assert max(kept) <= 3 * window + 2 < 36  # bounded by the reach, not the shot's length
    monkeypatch.setattr(Sam2Tracker, "_prune", staticmethod(lambda *args: None))
    whole = run(tracker, Frames(count=36, width=96), prompts)
    for frame in reader.frames:
        np.testing.assert_allclose(pruned[frame], whole[frame], atol=1e-6)


def test_cancel_raises(tracker):
    calls = {"n": 0}

    def cancelled() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    with pytest.raises(Cancelled):
        list(tracker.track(Frames(), [Prompt(1003, points=((18.5, 20.5, True),))], MatteRequest(cancelled=cancelled)))


def test_prompts_outside_the_range_and_merging():
    with pytest.raises(InvalidInput) as caught:
        merge_prompts([Prompt(5, points=((1, 1, True),))], [1, 2, 3])
    assert caught.value.reason == "PROMPT_OUTSIDE_RANGE" and caught.value.frame == 5
    merged = merge_prompts([Prompt(2, points=((1, 1, True),)), Prompt(2, boxes=((0, 0, 4, 4),))], [1, 2, 3])
    assert merged[2].points == ((1, 1, True),) and merged[2].boxes == ((0, 0, 4, 4),)


def test_missing_weights_name_the_file_and_the_command(tmp_path):
    folder = tmp_path / "sam2.1-hiera-small"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    with pytest.raises(NotFound) as caught:
        Sam2Tracker(folder=folder).load()
    message = str(caught.value)
    assert str(folder / "model.safetensors") in message and "hf download facebook/sam2.1-hiera-small" in message


def test_edgetam_shares_the_tracker_and_names_its_own_files(tmp_path):
    # EdgeTAM's image encoder is a timm model (timm needs torchvision): its tracking runs through the
    # same code as SAM 2.1's, and here only its classes and its folder are checked.
    import importlib

    from voidlink.inference.backends.matte.sam2 import EdgeTamTracker

    assert hasattr(transformers, EdgeTamTracker.model_class)
    assert hasattr(importlib.import_module(EdgeTamTracker.session_module), EdgeTamTracker.session_class)
    tracker = EdgeTamTracker(str(tmp_path))
    assert tracker.name == "edgetam" and tracker.folder == tmp_path / "EdgeTAM-hf"
    with pytest.raises(NotFound) as caught:
        tracker.load()
    assert "hf download yonigozlan/EdgeTAM-hf" in str(caught.value)


def test_the_caller_never_runs_in_inference_mode(tracker):
    for _ in tracker.track(Frames(count=3), [Prompt(1002, points=((18.5, 20.5, True),))], MatteRequest()):
        assert not torch.is_inference_mode_enabled()


def test_prompts_reach_the_session_in_the_models_pixels(tracker):
    class Session:
        def __init__(self) -> None:
            self.points: dict = {}
            self.masks: dict = {}
            self.obj_with_new_inputs: list = []

        def add_point_inputs(self, obj, index, inputs):
            self.points[index] = inputs

        def remove_mask_inputs(self, obj, index):
            self.masks.pop(index, None)

        def add_mask_inputs(self, obj, index, mask):
            self.masks[index] = mask

        def remove_point_inputs(self, obj, index):
            self.points.pop(index, None)

    session = Session()
    # 48 x 40 frames into the 64 x 64 model: the centre of pixel (23, 19) lands on the model's pixel 31.5.
    prompt = Prompt(1001, points=((24.0, 20.0, True), (0.75, 0.625, False)), boxes=((12, 10, 36, 30),))
    tracker._add_prompt(session, 0, 0, prompt, 48, 40)
    coords = session.points[0]["point_coords"][0, 0].tolist()
    labels = session.points[0]["point_labels"][0, 0].tolist()
    assert labels == [2, 3, 1, 0]  # the box's corners first, as SAM expects
    np.testing.assert_allclose(coords, [[15.5, 15.5], [47.5, 47.5], [31.5, 31.5], [0.5, 0.5]], atol=1e-5)
    assert session.obj_with_new_inputs == [1]
    shape = np.zeros((40, 48), bool)
    shape[:, :24] = True
    tracker._add_prompt(session, 0, 0, Prompt(1001, shape=shape), 48, 40)
    assert 0 not in session.points and tuple(session.masks[0].shape) == (1, 1, 64, 64)
    assert session.masks[0][0, 0, :, :30].min() == 1 and session.masks[0][0, 0, :, 34:].max() == 0
