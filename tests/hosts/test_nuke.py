"""The Nuke integration end to end: the fake `nuke` module (tests/fakes) driving a real daemon on loopback."""

from __future__ import annotations

import os
import runpy
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support.daemons import wait_for
from support.shots import read_pixels, write_shot

FAKES = Path(__file__).resolve().parents[1] / "support" / "fakes"
sys.path.insert(0, str(FAKES))

import nuke  # noqa: E402  (the fake, from tests/fakes)
from voidlink.bridge import Client  # noqa: E402
from voidlink.hosts import nuke as void  # noqa: E402
from voidlink.hosts.nuke import PLUGIN_DIR, jobs  # noqa: E402
from voidlink.protos import pb  # noqa: E402

from voidlink import errors  # noqa: E402


def _ended(group) -> bool:
    """The node has taken its job's end in: its state word comes with the watch's events, the result (or
    why there is none) only once the ended job is read, which is the point a test may look at."""
    return group["status"].value().startswith(("done:", "failed:", "cancelled:"))


@pytest.fixture
def session():
    """A fresh GUI Nuke; at the end, stop following jobs (as closing Nuke would)."""
    state = nuke._reset(gui=True)
    nuke.root()["fps"].setValue(24.0)
    yield state
    for watcher in jobs.watchers().values():
        watcher.stop()
        watcher.join(10)


@pytest.fixture
def shot(tmp_path, source_guard):
    files = write_shot(tmp_path / "src")
    source_guard(files.folder)
    return files


def _reads(shot, plate_through_grade: bool = True):
    plate = nuke.nodes.Read(file=shot.plate.replace("####", "%04d"), first=shot.first, last=shot.last)
    plate.setName("plate_read")
    mask = nuke.nodes.Read(file=shot.mask, first=shot.first, last=shot.last)
    shadow = nuke.nodes.Read(file=shot.affected, first=shot.first, last=shot.last)
    top = plate
    if plate_through_grade:
        top = nuke.nodes.Grade(multiply=0.5)
        top.setInput(0, plate)
    for node in (top, mask, shadow):
        node.setSelected(True)
    return top, mask, shadow


def _node(shot, tmp_path, daemon=None, save: bool = True):
    _reads(shot)
    if save:
        nuke.scriptSave(str(tmp_path / "comp.nk"))
    group = void.create_node()
    assert group is not None
    group["backend"].setValue("classical")
    if daemon is not None:
        group["address"].setValue(daemon.address)
    return group


def _frames_exist(pattern: str, first: int, last: int) -> bool:
    return all(os.path.isfile(pattern % frame) for frame in range(first, last + 1))


def test_plugin_files_add_menus_and_callbacks(session):
    runpy.run_path(str(PLUGIN_DIR / "init.py"))
    runpy.run_path(str(PLUGIN_DIR / "menu.py"))
    for menu, path in (
        ("Nuke", "VOID/Remove object"),
        ("Nodes", "VOID/VoidRemove"),
        ("Node Graph", "VOID/Remove object"),
    ):
        assert nuke.menu(menu).findItem(path) is not None, (menu, path)
    assert [c[0].__name__ for c in session.on_script_load] == ["_on_script_load"]
    assert [c[0].__name__ for c in session.on_script_close] == ["_on_script_close"]
    # The right-click entry with nothing selected tells the user what to do instead of raising.
    nuke.menu("Node Graph").findItem("VOID/Remove object").invoke()
    assert "select the plate" in session.messages[-1]


def test_fake_nuke_is_strict(session, shot, tmp_path):
    read = nuke.nodes.Read(file=shot.plate, first=shot.first, last=shot.last)
    with pytest.raises(NameError):
        read["fiel"]
    with pytest.raises(NameError):
        nuke.nodes.Write(filename="x.exr")
    with pytest.raises(TypeError):
        nuke.execute(read, shot.first, shot.last, 1, None, False, "extra")
    write = nuke.nodes.Write(file=str(tmp_path / "w.%04d.exr"), file_type="exr", channels="rgb")
    with pytest.raises(ValueError):
        write["datatype"].setValue("16 bit halfs")
    write.setInput(0, read)
    nuke.execute(write, shot.first, shot.first)
    written = read_pixels(str(tmp_path / f"w.{shot.first:04d}.exr"))
    assert np.allclose(written, read_pixels(shot.plate.replace("####", f"{shot.first:04d}")), atol=1e-3)


def test_create_from_selection_submit_progress_and_result(session, daemon, shot, tmp_path):
    group = _node(shot, tmp_path, daemon)
    assert group.name() == "VoidRemove1" and group.isSelected()
    assert group.input(0).Class() == "Grade"
    assert "mask" in group.input(1)["file"].value() and "shadow" in group.input(2)["file"].value()
    assert (group["frame_first"].value(), group["frame_last"].value()) == (shot.first, shot.last)
    assert group["output"].value() == str(tmp_path / "void" / "VoidRemove1" / "comp_VoidRemove1.####.exr")
    group["prompt"].setValue("an empty wall")

    group["submit"].execute()  # the button, with nuke.thisNode() the group
    job_id = group["job_id"].value()
    assert job_id and not session.messages
    nuke._pump(until=lambda: _ended(group), timeout=60)
    assert group["job_state"].value() == "succeeded", group["status"].value()
    assert group["status"].value().startswith(f"done: 8 frames {shot.first}-{shot.last} (classical)")

    task = session.progress_tasks[-1]
    assert task.progress[-1] == 100 and task.progress == sorted(task.progress)
    with group:
        read, switch = nuke.toNode("result"), nuke.toNode("result_switch")
    assert switch["which"].value() == 1
    assert (read["first"].value(), read["last"].value()) == (shot.first, shot.last)
    assert read["file"].value().endswith("comp_VoidRemove1.%04d.exr")
    assert _frames_exist(read["file"].value(), shot.first, shot.last)
    # The Grade made the plate input something no file holds: it was rendered through an internal Write.
    rendered = tmp_path / "void" / "VoidRemove1" / "VoidRemove1_inputs" / f"plate.{shot.first:04d}.exr"
    source = read_pixels(shot.plate.replace("####", f"{shot.first:04d}"))
    assert np.allclose(read_pixels(str(rendered))[..., :3], source * 0.5, atol=1e-3)
    assert not [n for n in group.nodes() if n.Class() == "Write"]  # the internal Write is gone again
    # Outside the matte the result is the (graded) plate: what the node outputs in Nuke is the clean plate.
    out = read_pixels(read["file"].value() % shot.first)
    assert np.array_equal(out[0, 0, :3], read_pixels(str(rendered))[0, 0, :3])
    assert Client(daemon.address).get(job_id).spec.labels["node"] == "VoidRemove1"



def _long_shot_node(tmp_path, daemon, source_guard, frames: int, width: int, height: int):
    """A guarded shot long enough to act on mid-job, read in a saved script, and a classical node on it."""
    shot = write_shot(tmp_path / "long", frames=frames, width=width, height=height)
    source_guard(shot.folder)
    _reads(shot, plate_through_grade=False)
    nuke.scriptSave(str(tmp_path / "comp.nk"))
    group = void.create_node()
    group["backend"].setValue("classical")
    group["address"].setValue(daemon.address)
    return shot, group

def test_cancel_button_and_progress_cancel_keep_the_previous_result(session, daemon, tmp_path, source_guard):
    shot, group = _long_shot_node(tmp_path, daemon, source_guard, 40, 320, 192)
    group["use_input_range"].setValue(False)
    group["frame_first"].setValue(shot.first)
    group["frame_last"].setValue(shot.first + 1)
    assert void.submit(group)
    nuke._pump(until=lambda: _ended(group), timeout=60)
    with group:
        read, switch = nuke.toNode("result"), nuke.toNode("result_switch")
    first_result = read["file"].value()

    group["use_input_range"].setValue(True)
    for how in ("button", "progress"):
        job_id = void.submit(group)
        assert job_id
        if how == "button":
            group["cancel"].execute()
        else:
            task = wait_for(lambda job=job_id: next((t for t in session.progress_tasks if job in t.title), None))
            task._user_cancels()  # the user presses cancel in Nuke's progress window
        nuke._pump(until=lambda: _ended(group), timeout=60)
        assert group["job_state"].value() == "cancelled", (how, group["status"].value())
        assert group["status"].value().startswith(f"cancelled: job {job_id}")
        assert Client(daemon.address).get(job_id).state == pb.JOB_STATE_CANCELLED
        # The earlier result is still switched in, pointing at frames that exist.
        assert switch["which"].value() == 1 and read["file"].value() == first_result
        assert (read["first"].value(), read["last"].value()) == (shot.first, shot.first + 1)
        assert _frames_exist(first_result, shot.first, shot.first + 1)
        assert not os.path.exists(first_result % shot.last)


def test_closing_does_not_cancel_and_reopening_reattaches(session, daemon, shot, tmp_path):
    group = _node(shot, tmp_path, daemon)
    job_id = void.submit(group)
    nuke.scriptSave(str(tmp_path / "comp.nk"))  # the job id is saved with the script
    runpy.run_path(str(PLUGIN_DIR / "init.py"))  # the callbacks Nuke installs at start-up
    nuke.scriptClose()
    wait_for(lambda: not jobs.watchers(), timeout=10)  # closing stopped following the job...
    final = Client(daemon.address).wait(job_id)
    assert final.state == pb.JOB_STATE_SUCCEEDED  # ...but did not cancel it: it succeeded while the script was closed

    nuke.scriptOpen(str(tmp_path / "comp.nk"))
    group = nuke.toNode("VoidRemove1")
    assert group["job_id"].value() == job_id and job_id in jobs.watchers()
    nuke._pump(until=lambda: _ended(group), timeout=30)
    with group:
        read, switch = nuke.toNode("result"), nuke.toNode("result_switch")
    assert switch["which"].value() == 1 and _frames_exist(read["file"].value(), shot.first, shot.last)


def test_following_survives_a_daemon_restart(session, daemon, tmp_path, source_guard):
    shot, group = _long_shot_node(tmp_path, daemon, source_guard, 24, 160, 96)
    job_id = void.submit(group)
    nuke._pump(until=lambda: group["job_state"].value() == "running", timeout=30)
    daemon.kill()
    nuke._pump(until=lambda: group["status"].value().startswith("waiting for the daemon"), timeout=30)
    assert job_id in group["status"].value() and group["job_state"].value() == "running"
    with group:
        assert nuke.toNode("result_switch")["which"].value() == 0

    daemon.listen = daemon.address  # the same address and data dir: the daemon resumes the job
    daemon.start()
    nuke._pump(until=lambda: _ended(group), timeout=60)
    assert group["job_state"].value() == "succeeded", group["status"].value()
    with group:
        read = nuke.toNode("result")
    assert _frames_exist(read["file"].value(), shot.first, shot.last)


def test_batch_render_command(session, daemon, shot, tmp_path):
    group = _node(shot, tmp_path, daemon)
    group["address"].setValue("")  # the farm's environment says where the daemon is
    nuke.scriptSave(str(tmp_path / "comp.nk"))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(FAKES), os.environ.get("PYTHONPATH", "")]),
        "VOIDLINK_ADDRESS": daemon.address,
    }
    done = subprocess.run(
        [sys.executable, "-m", "voidlink.hosts.nuke", "render", str(tmp_path / "comp.nk"), "VoidRemove1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "VoidRemove1: submitted job" in done.stdout and "(100%)" in done.stdout
    assert f"frames {shot.first}-{shot.last}" in done.stdout

    nuke.scriptClose()
    nuke.scriptOpen(str(tmp_path / "comp.nk"))
    group = nuke.toNode("VoidRemove1")
    assert group["job_state"].value() == "succeeded"
    with group:
        read = nuke.toNode("result")
    assert _frames_exist(read["file"].value(), shot.first, shot.last)

    failing = subprocess.run(
        [sys.executable, "-m", "voidlink.hosts.nuke", "render", str(tmp_path / "comp.nk"), "Grade1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert failing.returncode == 2 and "Grade1 is not a VoidRemove node" in failing.stderr


def test_a_failed_job_says_why_and_keeps_the_earlier_result(session, daemon, tmp_path):
    shot = write_shot(tmp_path / "broken", frames=4)
    _reads(shot, plate_through_grade=False)
    nuke.scriptSave(str(tmp_path / "comp.nk"))
    group = void.create_node()
    group["backend"].setValue("classical")
    group["address"].setValue(daemon.address)
    result = void.render(group, on_progress=lambda line: None)
    assert group["job_state"].value() == "succeeded" and result.last == shot.last
    with group:
        read = nuke.toNode("result")
    before = read["file"].value()

    broken = shot.folder / f"mask.{shot.first + 2:04d}.exr"
    broken.write_bytes(b"not an EXR any more")  # a matte frame gets damaged: the job fails reading it
    with pytest.raises(errors.JobFailed) as caught:
        void.render(group, on_progress=lambda line: None)
    assert broken.name in str(caught.value)
    assert group["job_state"].value() == "failed" and group["status"].value().startswith("failed: ")
    assert broken.name in group["status"].value()
    assert read["file"].value() == before and _frames_exist(before, shot.first, shot.last)

    broken.unlink()  # a frame missing altogether is refused before anything runs
    with pytest.raises(errors.NotFound):
        void.render(group, on_progress=lambda line: None)
    status = group["status"].value()
    assert status.startswith("not submitted: ") and "mask.####.exr" in status and str(shot.first + 2) in status
    assert read["file"].value() == before

    missing = subprocess.run(
        [sys.executable, "-m", "voidlink.hosts.nuke", "render", str(tmp_path / "nope.nk"), "VoidRemove1"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(FAKES)},
        timeout=60,
    )
    assert missing.returncode == 2 and "no Nuke script at" in missing.stderr


# -- bad input ---------------------------------------------------------------------------------


def test_no_selection_or_no_plate_says_so(session, shot):
    assert void.create_node() is None
    assert "select the plate first" in session.messages[-1]
    mask = nuke.nodes.Read(file=shot.mask, first=shot.first, last=shot.last)
    mask.setSelected(True)
    assert void.create_node() is None
    assert "no plate among the selected nodes" in session.messages[-1] and mask.name() in session.messages[-1]
    assert not void.void_nodes()


def test_selection_is_sorted_into_plate_and_mattes(session, shot):
    roto = nuke.nodes.Read(file=shot.mask, first=shot.first, last=shot.last)
    roto.setName("hero_roto")
    shadow = nuke.nodes.Read(file=shot.affected, first=shot.first, last=shot.last)
    plate = nuke.nodes.Read(file=shot.plate, first=shot.first, last=shot.last)
    group = void.create_node([shadow, roto, plate])
    assert [group.input(i) for i in range(3)] == [plate, roto, shadow]
    # Nothing named like a matte: the plate-like node is the plate, the other one the matte.
    first = nuke.nodes.Dot()
    second = nuke.nodes.Read(file=shot.plate, first=shot.first, last=shot.last)
    group = void.create_node([first, second])
    assert (group.input(0), group.input(1), group.input(2)) == (second, first, None)
    assert group.name() == "VoidRemove2"


def _submit_refused(group, session) -> str:
    """Submit, expecting a refusal told to the user; the node keeps whatever job it had."""
    before = group["job_id"].value()
    assert void.submit(group) is None
    assert group["job_id"].value() == before and group["status"].value().startswith("not submitted")
    return session.messages[-1]


def test_matte_of_another_format_is_refused(session, daemon, shot, tmp_path):
    small = write_shot(tmp_path / "small", width=48, height=32)
    group = _node(shot, tmp_path, daemon)
    group.setInput(1, nuke.nodes.Read(file=small.mask, first=small.first, last=small.last))
    message = _submit_refused(group, session)
    assert "48x32" in message and "96x64" in message and "resample mattes" in message


def test_frame_range_outside_the_input_is_refused(session, daemon, shot, tmp_path):
    group = _node(shot, tmp_path, daemon)
    group["use_input_range"].setValue(False)
    group["frame_first"].setValue(shot.first - 10)
    message = _submit_refused(group, session)
    assert f"frames {shot.first - 10}-{shot.last}" in message and f"{shot.first}-{shot.last}" in message


def test_output_over_the_plates_is_refused(session, daemon, shot, tmp_path):
    group = _node(shot, tmp_path, daemon)
    group["output"].setValue(shot.plate)
    message = _submit_refused(group, session)
    assert "would overwrite frame" in message and "plate.1001.exr" in message


def test_rendering_an_input_over_its_own_files_is_refused(session, daemon, shot, tmp_path, source_guard):
    group = _node(shot, tmp_path, daemon)
    void.submit(group)  # renders the graded plate into void/VoidRemove1/VoidRemove1_inputs/
    nuke._pump(until=lambda: _ended(group), timeout=60)
    rendered = tmp_path / "void" / "VoidRemove1" / "VoidRemove1_inputs"
    source_guard(rendered)
    # Someone reads those rendered frames back and grades them again into the same node.
    reread = nuke.nodes.Read(file=str(rendered / "plate.%04d.exr"), first=shot.first, last=shot.last)
    grade = nuke.nodes.Grade(multiply=2.0)
    grade.setInput(0, reread)
    group.setInput(0, grade)
    message = _submit_refused(group, session)
    assert "would overwrite" in message and reread.name() in message


def test_missing_matte_and_unsaved_script_are_explained(session, shot, tmp_path):
    plate = nuke.nodes.Read(file=shot.plate, first=shot.first, last=shot.last)
    plate.setSelected(True)
    group = void.create_node()
    assert group["output"].value() == ""  # no script saved: no default next to it yet
    assert "no object matte" in _submit_refused(group, session)
    group.setInput(1, nuke.nodes.Read(file=shot.mask, first=shot.first, last=shot.last))
    assert "save the script" in _submit_refused(group, session)


def test_no_daemon_offers_to_start_one(session, shot, tmp_path, monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    group = _node(shot, tmp_path)
    group["address"].setValue(address)
    session.answers.append(False)
    assert void.submit(group) is None
    assert "No voidlink daemon answers at " + address in session.asked[-1]
    assert group["status"].value() == f"not submitted: no daemon at {address}"

    # Yes: a daemon is started (detached, with its own data dir) and the job goes to it.
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.setenv("VOIDLINK_DAEMON", f"{sys.executable} -m voidlink")
    session.answers.append(True)
    client = Client(address)
    try:
        job_id = void.submit(group)
        assert job_id and len(session.asked) == 2
        nuke._pump(until=lambda: _ended(group), timeout=60)
    finally:
        if client.is_serving(timeout=1):
            os.kill(client.info().pid, signal.SIGTERM)
            wait_for(lambda: not client.is_serving(timeout=0.2), timeout=30)


def test_the_layers_knob_writes_layers_the_node_lists(session, daemon, shot, tmp_path):
    from voidlink.hosts.nuke import node as void_node

    group = _node(shot, tmp_path, daemon)
    assert group["layers"].value() is False  # opt-in per job
    group["layers"].setValue(True)
    group["submit"].execute()
    nuke._pump(until=lambda: _ended(group), timeout=60)
    assert group["job_state"].value() == "succeeded", group["status"].value()
    assert void_node.result_layers(group) == ["rgba", "void", "void_delta"]
    with group:
        read = nuke.toNode("result")
    assert {"void_delta.red", "void_delta.green", "void_delta.blue", "void.change", "void.quadmask"} <= set(
        read.channels()
    )
