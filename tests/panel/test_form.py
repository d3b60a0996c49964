"""The job form against a real daemon: the range from the plate, versioned outputs, asking before replacing a
result, Validate asking the daemon, the field marked and the message cleared once fixed."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402
from support.panel import shown  # noqa: E402
from support.shots import write_shot  # noqa: E402
from voidlink.bridge import build_spec  # noqa: E402
from voidlink.panel.form import FormValues, plate_range  # noqa: E402
from voidlink.panel.qt import QtCore, QtWidgets  # noqa: E402
from voidlink.panel.validate import existing_frames, user_message, versioned_output  # noqa: E402
from voidlink.protos import pb  # noqa: E402

from voidlink import errors  # noqa: E402

JOB_TIMEOUT_MS = 60_000


def _values(shot, **change) -> FormValues:
    values = FormValues(
        plate=shot.plate,
        mask=shot.mask,
        first=shot.first,
        last=shot.last,
        prompt="a textured wall, nothing in front of it",
        backend="classical",
    )
    return FormValues(**{**values.__dict__, **change})


def _answer_question(qtbot, button: QtWidgets.QMessageBox.StandardButton, asked: list) -> None:
    """Click `button` of the question box as soon as it is up (it runs its own event loop)."""

    def answer() -> None:
        box = QtWidgets.QApplication.activeModalWidget()
        if not isinstance(box, QtWidgets.QMessageBox):
            QtCore.QTimer.singleShot(10, answer)
            return
        asked.append(box.text())
        box.button(button).click()

    QtCore.QTimer.singleShot(0, answer)


def test_the_range_comes_from_the_plate(qtbot, window, tmp_path):
    shot = write_shot(tmp_path / "src", frames=6, first=1001)
    assert plate_range(shot.plate) == (1001, 1006)
    form = window.form
    form.set_values(FormValues())
    assert (form.first.value(), form.last.value()) == (1001, 1001)
    form.plate.setText(shot.plate)  # what Browse does with a picked frame
    assert (form.first.value(), form.last.value()) == (1001, 1006)
    assert plate_range(str(tmp_path / "nothing.####.exr")) is None
    form.set_values(FormValues(plate=shot.plate))  # what `voidlink panel --plate` and hosts do
    assert (form.first.value(), form.last.value()) == (1001, 1006)


def test_default_outputs_are_versioned_and_never_reused(qtbot, window, tmp_path):
    shot = write_shot(tmp_path / "src", frames=3)
    void = Path(shot.plate).parent / "void"
    assert versioned_output(shot.plate) == str(void / "plate_void_v001.####.exr")
    taken = {str(void / "plate_void_v001.####.exr")}
    assert versioned_output(shot.plate, taken) == str(void / "plate_void_v002.####.exr")
    void.mkdir()
    (void / "plate_void_v001.1001.exr").write_bytes(b"")
    assert versioned_output(shot.plate) == str(void / "plate_void_v002.####.exr")
    (void / "plate_void_v001.1001.exr").unlink()

    # Two jobs of one plate from the panel, back to back: two results, neither over the other.
    form = window.form
    jobs = []
    for _ in range(2):
        form.set_values(_values(shot))
        with qtbot.waitSignal(window.job_finished, timeout=JOB_TIMEOUT_MS) as finished:
            assert form.submit()
        jobs.append(finished.args[0])
    outputs = [job.spec.output.path_template for job in jobs]
    assert outputs == [str(void / "plate_void_v001.####.exr"), str(void / "plate_void_v002.####.exr")]
    assert all(job.state == pb.JOB_STATE_SUCCEEDED for job in jobs)
    assert jobs[0].spec.name != jobs[1].spec.name and "v002" in jobs[1].spec.name
    for output in outputs:
        assert len(existing_frames(output, shot.first, shot.last)) == 3
    assert "v003" in form.output.edit.placeholderText()


def test_replacing_an_existing_result_asks_first(qtbot, window, served, tmp_path):
    shot = write_shot(tmp_path / "src", frames=3)
    output = str(tmp_path / "out" / "clean.####.exr")
    served.client().remove(shot.plate, shot.mask, frames=(shot.first, shot.last), backend="classical", output=output)
    before = {name: os.path.getmtime(os.path.join(tmp_path, "out", name)) for name in os.listdir(tmp_path / "out")}
    form = window.form
    submitted = []
    form.submit_requested.connect(submitted.append)

    asked: list = []
    form.set_values(_values(shot, output=output))
    _answer_question(qtbot, QtWidgets.QMessageBox.StandardButton.No, asked)
    assert form.submit() is False
    assert asked and "3 frame(s) already exist" in asked[0] and submitted == []
    assert "existing result stays" in form.message.text()
    assert {n: os.path.getmtime(os.path.join(tmp_path, "out", n)) for n in os.listdir(tmp_path / "out")} == before

    _answer_question(qtbot, QtWidgets.QMessageBox.StandardButton.Yes, asked)
    with qtbot.waitSignal(window.job_finished, timeout=JOB_TIMEOUT_MS) as finished:
        assert form.submit() is True
    assert len(asked) == 2 and len(submitted) == 1
    assert finished.args[0].state == pb.JOB_STATE_SUCCEEDED


def test_validate_asks_the_daemon_and_stores_nothing(qtbot, window, served, tmp_path):
    shot = write_shot(tmp_path / "src", frames=3)
    client = served.client()
    form = window.form
    # No GPU or no weights here: the panel cannot tell, the daemon can.
    form.set_values(_values(shot, backend="void"))
    assert form.check() is None
    with pytest.raises(errors.VoidlinkError) as refused:
        client.validate(form.build(write_roto=False))
    with qtbot.waitSignal(form.validated, timeout=10_000) as checked:
        assert form.validate() is None  # nothing wrong that the panel itself can see
    error = checked.args[0]
    assert error is not None and error.reason == refused.value.reason
    assert form.message.text() == user_message(error) and form.message.text().startswith("Backend: ")
    assert form.marked() == ["backend"]

    listed = len(client.jobs())
    form.backend.setCurrentText("classical")
    with qtbot.waitSignal(form.validated, timeout=10_000) as checked:
        form.validate()
    assert checked.args == [None] and form.message.text() == "Ready to submit."
    assert form.marked() == []
    job = client.validate(form.build(write_roto=False))
    assert job.id == "" and job.message == "valid" and job.frames_total == 3
    assert len(client.jobs()) == listed  # validating queued nothing


def test_the_field_out_of_range_is_marked_and_the_message_clears_once_fixed(qtbot, window, tmp_path):
    shot = write_shot(tmp_path / "src", frames=4)
    form = window.form
    form.set_values(_values(shot, last=shot.last + 3))
    error = form.validate()
    assert error is not None and error.reason == "FRAME_RANGE_OUTSIDE_SOURCE"
    assert form.marked() == ["last"]  # Last lies outside the plate, First does not
    assert form.message.text().startswith("Frames: ")
    height = form.message.height()
    buttons = form.submit_button.mapTo(form, QtCore.QPoint(0, 0))

    form.set_values(_values(shot, first=shot.first - 5))
    form.validate()
    assert form.marked() == ["frames"]  # First, this time
    assert form.submit_button.mapTo(form, QtCore.QPoint(0, 0)) == buttons and form.message.height() == height

    form.first.setValue(shot.first)  # fixed: the message goes once the edit settles
    qtbot.waitUntil(lambda: form.message.text() == "", timeout=5_000)
    assert form.marked() == []


def test_an_empty_prompt_is_flagged_but_does_not_block(qtbot, window, tmp_path):
    shot = write_shot(tmp_path / "src", frames=2)
    form = window.form
    form.remote_validate = None  # the local answer only
    form.set_values(_values(shot, prompt=""))
    assert form.validate() is None
    assert "prompt is empty" in form.message.text() and "border" in form.prompt.styleSheet()


def test_the_viewer_follows_the_form(qtbot, window, tmp_path):
    first = write_shot(tmp_path / "a", frames=3)
    second = write_shot(tmp_path / "b", frames=5)
    form = window.form
    form.plate.setText(first.plate)
    with qtbot.waitSignal(form.clips_changed, timeout=5_000):
        form.plate.setText(second.plate)
    before = window.viewer.source.before
    assert before is not None and before.path == second.plate
    assert (window.viewer.first, window.viewer.last) == (second.first, second.last)


def test_an_edit_that_leaves_the_clips_as_they_were_keeps_the_viewer_where_it_is(qtbot, window, tmp_path):
    shot = write_shot(tmp_path / "a", frames=5)
    form, viewer = window.form, window.viewer
    with qtbot.waitSignal(form.clips_changed, timeout=5_000):
        form.set_values(_values(shot))
    shown(qtbot, viewer, viewer.slider.setValue, shot.first + 3)
    source = viewer.source
    with qtbot.waitSignal(form.clips_changed, timeout=5_000):  # typing the prompt: the check runs, the clips stay
        form.prompt.setPlainText("an empty street")
    assert viewer.source is source and viewer.canvas.frame == shot.first + 3
    with qtbot.waitSignal(form.clips_changed, timeout=5_000):  # another range: the viewer follows it
        form.last.setValue(shot.last - 1)
    assert viewer.source is not source and (viewer.first, viewer.last) == (shot.first, shot.last - 1)


def test_the_check_after_an_edit_does_not_take_the_viewer_back_from_a_job_opened_since(qtbot, window, tmp_path):
    edited, other = write_shot(tmp_path / "a", frames=3), write_shot(tmp_path / "b", frames=4)
    form, viewer = window.form, window.viewer
    with qtbot.waitSignal(form.clips_changed, timeout=5_000):
        form.set_values(_values(edited))
    spec = build_spec(other.plate, other.mask, frames=(other.first, other.last), output=tmp_path / "o.####.exr")
    # An edit, and a job opened before the edit's check comes (the event loop has not run between them).
    form.prompt.setPlainText("an empty street")
    form.last.setValue(edited.last - 1)
    window.show_job(pb.Job(id="a1b2c3", spec=spec))
    with qtbot.waitSignal(form.clips_changed, timeout=5_000):
        pass
    assert viewer.source.before is not None and viewer.source.before.path == other.plate
    assert (viewer.first, viewer.last) == (other.first, other.last)
    with qtbot.waitSignal(form.clips_changed, timeout=5_000):  # an edit after it: the viewer follows the form again
        form.last.setValue(edited.last)
    assert viewer.source.before.path == edited.plate


def test_the_layers_tick_asks_the_job_for_the_change_as_layers(qtbot, window, tmp_path):
    shot = write_shot(tmp_path / "sh", frames=2)
    form = window.form
    form.set_values(_values(shot))
    assert not form.layers.isChecked() and not form.build(form.values(), write_roto=False).output.write_layers
    form.layers.setChecked(True)
    assert form.values().layers and form.build(form.values(), write_roto=False).output.write_layers
