"""The VoidMatte node against the fake `nuke` module (tests/support/fakes): its prompts in Nuke's coordinates
become the contract's, and Submit tracks the object on a real daemon, the node then outputting the matte."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
from support.shots import read_pixels, write_shot

FAKES = Path(__file__).resolve().parents[1] / "support" / "fakes"
sys.path.insert(0, str(FAKES))

import nuke  # noqa: E402  (the fake)
from voidlink.bridge import Client  # noqa: E402
from voidlink.hosts import nuke as void  # noqa: E402
from voidlink.hosts.nuke import PLUGIN_DIR, jobs  # noqa: E402
from voidlink.hosts.nuke import matte as matte_node  # noqa: E402
from voidlink.protos import pb  # noqa: E402

from voidlink import errors  # noqa: E402


@pytest.fixture
def session():
    state = nuke._reset(gui=True)
    nuke.root()["fps"].setValue(24.0)
    yield state
    for watcher in jobs.watchers().values():
        watcher.stop()
        watcher.join(10)


def _plate(shot):
    read = nuke.nodes.Read(file=shot.plate.replace("####", "%04d"), first=shot.first, last=shot.last)
    read.setName("plate_read")
    return read


def test_menus_offer_the_matte_node_and_it_needs_one_plate(session):
    runpy.run_path(str(PLUGIN_DIR / "init.py"))
    runpy.run_path(str(PLUGIN_DIR / "menu.py"))
    for menu, path in (("Nuke", "VOID/Track object (matte)"), ("Nodes", "VOID/VoidMatte")):
        assert nuke.menu(menu).findItem(path) is not None, (menu, path)
    nuke.menu("Node Graph").findItem("VOID/Track object (matte)").invoke()
    assert "select the plate" in session.messages[-1]


def test_prompts_in_nukes_coordinates_become_the_contracts(session, tmp_path):
    shot = write_shot(tmp_path / "src", frames=4)  # 96 x 64
    group = void.create_matte_node([_plate(shot)])
    assert group.name() == "VoidMatte1" and matte_node.is_matte_node(group) and void.is_void_node(group)
    assert (group["frame_first"].value(), group["frame_last"].value()) == (shot.first, shot.last)
    group["prompts"].setValue(
        f"{shot.first} point 20 50   # on the square\n\n{shot.first} negative 90 5\n{shot.last} box 10 60 30 40\n"
    )
    group["affected_text"].setValue("its shadow")
    group["output"].setValue(str(tmp_path / "out" / "matte.####.exr"))
    spec, pending, frames = matte_node.build_spec(group)
    assert pending == [] and frames == (shot.first, shot.last)
    first, last = spec.matte.prompts
    assert [(p.x, p.y, p.negative) for p in first.points] == [(20, 14, False), (90, 59, True)]  # y down from the top
    (box,) = last.boxes
    assert (box.x0, box.y0, box.x1, box.y1) == (10, 4, 30, 24)
    assert spec.matte.affected_text == "its shadow" and spec.matte.propose_affected
    assert spec.labels["node"] == "VoidMatte1" and spec.output.pixel_type == pb.PIXEL_TYPE_UINT8
    group["prompts"].setValue(f"{shot.first} click 20 50")
    with pytest.raises(errors.InvalidInput, match="VoidMatte1: prompts line 1 '1001 click 20 50' is not"):
        matte_node.build_spec(group)
    group["prompts"].setValue("")
    with pytest.raises(errors.InvalidInput, match="VoidMatte1: no prompt"):
        matte_node.build_spec(group)


def test_submit_tracks_the_object_and_the_node_outputs_its_matte(session, daemon, tmp_path, source_guard):
    shot = write_shot(tmp_path / "src", frames=6)
    source_guard(shot.folder)
    nuke.scriptSave(str(tmp_path / "comp.nk"))
    truth = read_pixels(shot.mask.replace("####", str(shot.first)))[..., 0] > 0.5
    ys, xs = np.nonzero(truth)
    height = truth.shape[0]
    group = void.create_matte_node([_plate(shot)])
    group["tracker"].setValue("classical")
    group["address"].setValue(daemon.address)
    # A box around the object on the first frame, as the Viewer's read-out gives it (y up).
    group["prompts"].setValue(f"{shot.first} box {xs.min()} {height - ys.max() - 1} {xs.max() + 1} {height - ys.min()}")
    job_id = void.submit(group)
    assert job_id
    nuke._pump(until=lambda: group["status"].value().startswith(("done:", "failed:")), timeout=60)
    assert group["job_state"].value() == "succeeded", group["status"].value()
    with group:
        read, switch = nuke.toNode("result"), nuke.toNode("result_switch")
    assert switch["which"].value() == 1
    written = read["file"].value()
    for frame in range(shot.first, shot.last + 1):
        matte = read_pixels(written.replace("%04d", str(frame)))[..., 0] > 0.5
        mask = read_pixels(shot.mask.replace("####", str(frame)))[..., 0] > 0.5
        assert (matte & mask).sum() / (matte | mask).sum() > 0.7, frame


def _ended(group) -> bool:
    return group["status"].value().startswith(("done:", "failed:", "cancelled:"))


def test_submit_tracks_the_object_and_the_node_outputs_the_matte_for_void_remove(session, daemon, tmp_path):
    shot = write_shot(tmp_path / "src", frames=4, width=192, height=128)
    plate = _plate(shot)
    nuke.scriptSave(str(tmp_path / "comp.nk"))
    group = void.create_matte_node([plate])
    group["address"].setValue(daemon.address)
    group["tracker"].setValue("classical")
    size = max(6, shot.height // 5)
    top = shot.height - shot.height // 3  # Nuke's y counts up from the bottom
    group["prompts"].setValue(f"{shot.first} box 6 {top + 2} {8 + size + 2} {top - size - 2}")
    group["submit"].execute()
    assert group["job_id"].value() and not session.messages
    nuke._pump(until=lambda: _ended(group), timeout=60)
    assert group["job_state"].value() == "succeeded", group["status"].value()
    with group:
        read, switch = nuke.toNode("result"), nuke.toNode("result_switch")
    assert switch["which"].value() == 1 and read["file"].value().endswith(".%04d.exr")
    first = read["file"].value() % shot.first
    matte = read_pixels(first)
    assert matte.shape == (128, 192, 1) and matte.max() == 1.0  # one channel, A: Nuke's alpha
    truth = read_pixels(shot.mask.replace("####", f"{shot.first:04d}"))[..., 0] > 0.5
    assert ((matte[..., 0] > 0.5) & truth).sum() > 0.8 * truth.sum()

    # The node is the object matte of a VoidRemove: its output is that sequence, read as a removal's matte.
    plate.setSelected(True)
    group.setSelected(True)
    remove = void.create_node()
    assert remove is not None and remove.input(1) is group
    remove["address"].setValue(daemon.address)
    remove["backend"].setValue("classical")
    remove["submit"].execute()
    nuke._pump(until=lambda: _ended(remove), timeout=60)
    assert remove["job_state"].value() == "succeeded", remove["status"].value()
    job = Client(daemon.address).get(remove["job_id"].value())
    assert job.result.metrics["mask_coverage"] > 0
