"""Farm jobs: Open Job Description templates checked by openjd-model and run end to end by `openjd run`."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import opentimelineio as otio
import pytest
import yaml
from openjd.model import (
    StepParameterSpaceIterator,
    create_job,
    decode_job_template,
    preprocess_job_parameters,
)
from support.conform import FIXTURES, plates
from support.shots import read_pixels, write_shot

from voidlink.cli import main

OPENJD = [sys.executable, "-c", "import sys; from openjd.cli import main; sys.exit(main())"]


def voidlink_command() -> str:
    """The `voidlink` script of the Python running the tests: what the farm's Voidlink parameter names."""
    script = shutil.which("voidlink", path=os.path.dirname(sys.executable))
    assert script, "the voidlink script is not installed beside this Python"
    return script


def load_job(path: Path, **values: str):
    """Decode the template and create the job, as a farm's submitter does (parameters with their defaults)."""
    template = decode_job_template(template=yaml.safe_load(path.read_text()))
    parameters = preprocess_job_parameters(
        job_template=template,
        job_parameter_values=values,
        job_template_dir=path.parent,
        current_working_dir=path.parent,
    )
    return create_job(job_template=template, job_parameter_values=parameters)


def openjd_run(template: Path, cwd: Path, *parameters: str) -> str:
    env = {key: value for key, value in os.environ.items() if key != "VOIDLINK_ADDRESS"}
    arguments = [*OPENJD, "run", str(template), "-p", f"Voidlink={voidlink_command()}"]
    for parameter in parameters:
        arguments += ["-p", parameter]
    done = subprocess.run(arguments, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Session ended successfully" in output, output
    return output


def assert_same_frames(expected: str, actual: str, first: int, last: int) -> None:
    for frame in range(first, last + 1):
        want, got = expected.replace("####", f"{frame:04d}"), actual.replace("####", f"{frame:04d}")
        a, b = read_pixels(want), read_pixels(got)
        assert a.shape == b.shape and a.dtype == b.dtype
        assert np.array_equal(a.view(np.uint32), b.view(np.uint32)), f"frame {frame} differs"


def process_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[-1][:1] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def test_job_spec_template_validates_and_openjd_run_matches_voidlink_remove(tmp_path, daemon, source_guard, capsys):
    shot = write_shot(tmp_path / "shot", frames=6, width=48, height=32)
    source_guard(shot.folder)
    common = [shot.plate, "--mask", shot.mask, "--affected", shot.affected, "--frames", "1001-1006"]
    common += ["--prompt", "-a wall, nothing in front", "--backend", "classical", "--seed", "3", "--dilate", "1"]
    reference = str(tmp_path / "reference" / "clean.####.exr")
    assert main(["remove", *common, "-o", reference, "--address", daemon.address, "--no-start"]) == 0
    farm_output = str(tmp_path / "farm out" / "clean.####.exr")  # a space: arguments travel without a shell
    spec = tmp_path / "sh010.json"
    assert main(["remove", *common, "-o", farm_output, "--name", "sh010", "--export-spec", str(spec)]) == 0
    assert not (tmp_path / "farm out").exists()  # exporting submits nothing
    job_file = tmp_path / "sh010_job.yaml"
    capsys.readouterr()
    assert main(["farm", "export", "--format", "openjd", str(spec), "-o", str(job_file), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tasks"] == 1 and report["shots"] == ["sh010"]

    text = yaml.safe_load(job_file.read_text())
    assert text["specificationVersion"] == "jobtemplate-2023-09"
    job = load_job(job_file)
    names = {name: value.value for name, value in job.parameters.items()}
    assert names["Plate"] == shot.plate and names["Affected"] == shot.affected and names["Frames"] == "1001-1006"
    assert names["Backend"] == "classical" and names["Output"] == farm_output
    assert names["Prompt"] == "-a wall, nothing in front"
    assert [step.name for step in job.steps] == ["Remove"]
    assert [env.name for env in job.jobEnvironments] == ["VoidlinkDaemon"]

    output = openjd_run(job_file, tmp_path)
    # The job's environment started a private daemon, not the one the artist's `voidlink remove` used.
    address = re.search(r"openjd_env: VOIDLINK_ADDRESS=(\S+)", output).group(1)
    assert address != daemon.address and address.startswith("127.0.0.1:")
    assert "sh010" in output and "succeeded: frames 1001-1006" in output
    stopped = re.search(r"stopped the voidlink daemon \(pid (\d+)\)", output)
    assert stopped and not process_alive(int(stopped.group(1)))
    assert_same_frames(reference, farm_output, 1001, 1006)
    assert len(daemon.client().jobs()) == 1  # the farm run never reached the workstation's daemon

    # The job's parameters are the submitter's to change: a shorter range, another output.
    other = str(tmp_path / "farm range" / "part.####.exr")
    openjd_run(job_file, tmp_path, "Frames=1002-1003", f"Output={other}")
    assert sorted(p.name for p in (tmp_path / "farm range").glob("*.exr")) == ["part.1002.exr", "part.1003.exr"]


def test_a_failing_task_fails_the_job_and_the_session_daemon_still_stops(tmp_path, capsys):
    shot = write_shot(tmp_path / "shot", frames=3, width=32, height=24)
    spec, job_file = tmp_path / "spec.json", tmp_path / "job.yaml"
    output = tmp_path / "out" / "clean.####.exr"
    assert main(["remove", shot.plate, "--mask", shot.mask, "-o", str(output), "--export-spec", str(spec)]) == 0
    assert main(["farm", "export", "--format", "openjd", str(spec), "-o", str(job_file)]) == 0
    (shot.folder / "plate.1002.exr").unlink()  # the farm sees a plate with a frame gone
    env = {key: value for key, value in os.environ.items() if key != "VOIDLINK_ADDRESS"}
    arguments = [*OPENJD, "run", str(job_file), "-p", f"Voidlink={voidlink_command()}", "-p", "Backend=classical"]
    done = subprocess.run(arguments, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    log = done.stdout + done.stderr
    assert done.returncode != 0 and re.search(r"frame\(s\) missing from \S+/plate.####.exr: 1002", log), log
    stopped = re.search(r"stopped the voidlink daemon \(pid (\d+)\)", log)
    assert stopped and not process_alive(int(stopped.group(1))), log
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.exr"))


def test_conform_farm_writes_one_job_with_a_task_per_runnable_event(tmp_path, daemon, capsys):
    roots = plates(tmp_path / "plates", ["A001C003", "A001C004"])
    job_file = tmp_path / "out" / "cut_job.yaml"
    args = ["conform", str(FIXTURES / "cut.edl"), "--media-root", str(roots), "--backend", "classical"]
    assert main([*args, "--farm", "openjd", "-o", str(job_file), "--json", "--no-start"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tasks"] == 2 and report["shots"] == ["V_001_A001C003", "V_002_A001C004"]
    assert {entry["status"] for entry in report["skipped"]} == {"refused", "missing_media"}
    assert not (tmp_path / "out" / "cut_void").exists()  # nothing was run

    job = load_job(job_file)
    assert [step.name for step in job.steps] == ["Remove", "Conform"]
    assert [d.dependsOn for d in job.steps[1].dependencies] == ["Remove"]
    tasks = [
        {name: value.value for name, value in task.items()}
        for task in StepParameterSpaceIterator(space=job.steps[0].parameterSpace)
    ]
    assert [task["Shot"] for task in tasks] == ["V_001_A001C003", "V_002_A001C004"]
    assert tasks[0]["Plate"] == str(roots / "A001C003" / "A001C003.####.exr")
    assert tasks[1]["Mask"] == str(roots / "A001C004" / "A001C004_mask.####.exr")
    assert tasks[0]["Frames"] == "1001-1012" and tasks[1]["Prompt"] == "remove the sign"
    assert tasks[0]["Output"] == str(tmp_path / "out" / "cut_void" / "V_001_A001C003" / "A001C003_void.####.exr")

    # Both tasks on a daemon already running on the worker (DaemonAddress): one session, two jobs there.
    openjd_run(job_file, tmp_path, f"DaemonAddress={daemon.address}")
    jobs = daemon.client().jobs()
    assert sorted(job.spec.name for job in jobs) == ["V_001_A001C003", "V_002_A001C004"]
    for task in tasks:
        frames = sorted(Path(task["Output"]).parent.glob("*.exr"))
        assert [p.name[-8:-4] for p in frames] == [f"{n}" for n in range(1001, 1013)]

    # The job's last step wrote the conformed timeline; a conform afterwards reuses the farm's frames.
    written = otio.adapters.read_from_file(str(tmp_path / "out" / "cut_void.otio"))
    clean = [clip.name for clip in written.find_clips() if clip.name.endswith("_void")]
    assert clean == ["A001C003_void", "A001C004_void"]
    capsys.readouterr()
    again = [*args, "-o", str(tmp_path / "out" / "cut_void.otio"), "--address", daemon.address, "--no-start", "--json"]
    assert main(again) == 1  # the refused and missing events stay so
    statuses = {event["event"]: event["status"] for event in json.loads(capsys.readouterr().out)["events"]}
    assert statuses["V_001_A001C003"] == statuses["V_002_A001C004"] == "reused"
    assert len(daemon.client().jobs()) == 2

    # `farm finish` by hand: frames older than the job, or missing ones, are not taken for the job's.
    for manifest in (tmp_path / "out" / "cut_void").rglob("conform.json"):
        manifest.unlink()
    first = Path(tasks[0]["Output"].replace("####", "1005"))
    os.utime(first, (first.stat().st_atime, first.stat().st_mtime - 3600))
    Path(tasks[1]["Output"].replace("####", "1012")).unlink()
    finish = ["farm", "finish", str(FIXTURES / "cut.edl"), "--media-root", str(roots), "--backend", "classical"]
    finish += ["-o", str(tmp_path / "out" / "again.otio"), "--written-after", str(time.time()), "--json"]
    assert main(finish) == 1
    events = {event["event"]: event for event in json.loads(capsys.readouterr().out)["events"]}
    older, missing = events["V_001_A001C003"], events["V_002_A001C004"]
    assert older["status"] == "failed" and "before this farm job" in older["message"]
    assert missing["status"] == "failed" and "1 of 12 clean frames are missing" in missing["message"]
    assert not list((tmp_path / "out" / "cut_void").rglob("conform.json"))


def test_timeline_with_two_matte_shapes_gets_a_step_for_each(tmp_path, capsys):
    roots = plates(tmp_path / "plates", ["A001C003", "A001C004"])
    for path in (roots / "A001C004").glob("A001C004_affected.*.exr"):
        path.unlink()  # this event now has no affected matte: its command line has no --affected
    job_file = tmp_path / "cut_job.json"
    args = ["farm", "export", "--format", "openjd", str(FIXTURES / "cut.edl"), "--media-root", str(roots)]
    assert main([*args, "-o", str(job_file), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == {"Remove 1": 1, "Remove 2": 1}
    job = load_job(job_file)
    arguments = {step.name: [str(a) for a in step.script.actions.onRun.args] for step in job.steps}
    assert any(a.startswith("--affected=") for a in arguments["Remove 1"])
    assert not any(a.startswith("--affected=") for a in arguments["Remove 2"])


def test_command_lines_for_farms_that_run_a_command_per_task(tmp_path, daemon, capsys):
    roots = plates(tmp_path / "plates", ["A001C003", "A001C004"])
    tasks_file = tmp_path / "cut_tasks.json"
    args = ["farm", "export", "--format", "commands", str(FIXTURES / "cut.edl"), "--media-root", str(roots)]
    assert main([*args, "--backend", "classical", "-o", str(tasks_file)]) == 0
    assert "wrote" in capsys.readouterr().out
    document = json.loads(tasks_file.read_text())
    tasks = document["tasks"]
    assert [task["shot"] for task in tasks] == ["V_001_A001C003", "V_002_A001C004"]
    # What OpenCue's ShellCommand or Tractor's newTask(argv=...) would run on a render node, whose
    # own daemon (here: the test's, through VOIDLINK_ADDRESS) takes the job.
    env = {**os.environ, "VOIDLINK_ADDRESS": daemon.address}
    for task in tasks:
        assert task["argv"][:2] == ["voidlink", "remove"] and "--no-start" not in task["argv"]
        assert shlex.split(task["command"]) == task["argv"]
        done = subprocess.run([voidlink_command(), *task["argv"][1:]], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    assert sorted(job.spec.name for job in daemon.client().jobs()) == ["V_001_A001C003", "V_002_A001C004"]
    assert len(list((tmp_path / "cut_void" / "V_002_A001C004").glob("*.exr"))) == 12
    # The command to run after all of them writes the conformed timeline.
    finish = document["finish"]["argv"]
    assert finish[:3] == ["voidlink", "farm", "finish"] and "--backend=classical" in finish
    done = subprocess.run([voidlink_command(), *finish[1:]], capture_output=True, text=True)
    # 0: every event the job ran is done; the refused and missing ones were never the job's to do.
    assert done.returncode == 0, done.stderr
    assert re.search(r"^V_004_A001C005 +refused", done.stdout, re.M)
    assert re.search(r"^V_001_A001C003 +done", done.stdout, re.M) and "wrote" in done.stdout
    written = otio.adapters.read_from_file(str(tmp_path / "cut_void.otio"))
    assert [clip.name for clip in written.find_clips() if clip.name.endswith("_void")] == [
        "A001C003_void",
        "A001C004_void",
    ]


# -- bad input -------------------------------------------------------------------------------


def export(tmp_path, source, *extra) -> list:
    return ["farm", "export", "--format", "openjd", str(source), "-o", str(tmp_path / "job.yaml"), *extra]


def test_unknown_format_is_refused_naming_what_is_written(tmp_path, capsys):
    spec = tmp_path / "spec.json"
    assert main(["remove", "p.####.exr", "--mask", "m.####.exr", "--export-spec", str(spec)]) == 0
    assert main(["farm", "export", "--format", "tractor", str(spec), "-o", str(tmp_path / "job.yaml")]) == 2
    error = capsys.readouterr().err
    assert "unknown farm format 'tractor'" in error and "'openjd'" in error and "'commands'" in error
    assert main(["conform", str(FIXTURES / "cut.edl"), "--farm", "cue", "-o", str(tmp_path / "job.yaml")]) == 2
    assert "unknown farm format 'cue'" in capsys.readouterr().err
    assert main(export(tmp_path, spec)[:-1] + [str(tmp_path / "job.otio")]) == 2
    assert "the openjd farm job is written as .yaml, .yml, .json" in capsys.readouterr().err
    assert not list(tmp_path.glob("job.*"))


@pytest.mark.parametrize(
    "content, expected",
    [
        ('{"plate": "/shots/a.####.exr", "mask": "/shots/m.####.exr"}', "field 'plate' is not a field of JobSpec"),
        ('{"params": {"promt": "x"}}', "field 'params.promt' is not a field of params (JobParams)"),
        ('{"id": "3af9", "state": "succeeded", "output_template": "x"}', "a job report"),
        ('{"source": {"otio_json": "{}"}, "output": {"path_template": "/o.####.exr"}}', "'mask.otio_json' is empty"),
        ("[1, 2]", "holds a JSON list"),
        ('{"source": \n {"otio_json": }', "spec.json:2: not valid JSON"),
    ],
)
def test_a_file_that_is_not_a_job_spec_is_named_with_its_field(tmp_path, capsys, content, expected):
    spec = tmp_path / "spec.json"
    spec.write_text(content)
    assert main(export(tmp_path, spec)) == 2
    error = capsys.readouterr().err
    assert str(spec) in error and expected in error, error
    assert not (tmp_path / "job.yaml").exists()


def test_a_job_spec_no_remove_command_line_can_give_is_refused(tmp_path, capsys):
    spec = tmp_path / "spec.json"
    assert main(["remove", "p.####.exr", "--mask", "m.####.exr", "--export-spec", str(spec)]) == 0
    data = json.loads(spec.read_text())
    data["params"]["resample_mattes"] = True
    data["params"]["backend"] = "void"
    data["params"]["guidance"] = 7.5
    data["source"]["channels"] = "matte.A"
    data["output"]["write_raw"] = True
    spec.write_text(json.dumps(data))
    assert main(export(tmp_path, spec)) == 2
    error = capsys.readouterr().err
    assert str(spec) in error and "field 'source.channels' (and output.write_raw) is 'matte.A'" in error
    assert not (tmp_path / "job.yaml").exists()


def test_a_timeline_with_nothing_runnable_is_refused(tmp_path, capsys):
    # No media roots: every marked event is refused or has no media.
    assert main(export(tmp_path, FIXTURES / "cut.edl")) == 2
    error = capsys.readouterr().err
    assert "cut.edl: no marked event to put in a farm job" in error
    assert "3 refused" in error and "missing_media" in error and "--dry-run" in error
    assert not (tmp_path / "job.yaml").exists()


def test_a_value_a_template_would_expand_is_refused(tmp_path, capsys):
    root = plates(tmp_path / "plates", ["A001C008"])
    edl = tmp_path / "braces.edl"
    edl.write_text(
        "TITLE: BRACES\nFCM: NON-DROP FRAME\n\n"
        "001  A001C008 V     C        00:00:41:17 00:00:41:23 01:00:00:00 01:00:00:06\n"
        "* FROM CLIP NAME:  A001C008\n* LOC: 01:00:00:02 RED     VOID: an empty {{Param.Voidlink}} street\n"
        "002  A001C008 V     C        00:00:41:17 00:00:41:23 01:00:00:06 01:00:00:12\n"
        "* FROM CLIP NAME:  A001C008\n* LOC: 01:00:00:08 RED     VOID: an empty street\n"
    )
    args = ["conform", str(edl), "--media-root", str(root), "--farm", "openjd", "-o", str(tmp_path / "job.yaml")]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert f"{edl}: V_001_A001C008: Prompt 'an empty {{{{Param.Voidlink}}}} street' holds" in error, error
    assert not (tmp_path / "job.yaml").exists()


def test_session_daemon_commands(tmp_path, daemon, capsys):
    assert main(["farm", "daemon", "stop", "--data-dir", str(tmp_path / "none")]) == 0
    assert "no session daemon to stop" in capsys.readouterr().out
    assert main(["farm", "daemon", "start", "--data-dir", str(tmp_path / "d"), "--address", daemon.address]) == 0
    assert f"openjd_env: VOIDLINK_ADDRESS={daemon.address}" in capsys.readouterr().out
    assert main(["farm", "daemon", "start", "--data-dir", str(tmp_path / "d"), "--address", "127.0.0.1:9"]) == 2
    assert "no voidlink daemon answers at 127.0.0.1:9" in capsys.readouterr().err


def test_the_void_options_of_remove_reach_the_spec_and_the_farm_command_line(tmp_path, capsys):
    spec = tmp_path / "spec.json"
    options = ["--backend", "void", "--crop", "full", "--passes", "2", "--guidance", "6.5", "--steps", "30"]
    assert main(["remove", "p.####.exr", "--mask", "m.####.exr", *options, "--export-spec", str(spec)]) == 0
    params = json.loads(spec.read_text())["params"]
    assert params["crop_mode"] == "CROP_MODE_FULL_FRAME" and params["passes"] == 2 and params["guidance"] == 6.5
    assert main(["farm", "export", "--format", "commands", str(spec), "-o", str(tmp_path / "job.json")]) == 0
    line = (tmp_path / "job.json").read_text()
    assert "--crop=full" in line and "--passes=2" in line and "--guidance=6.5" in line and "--steps=30" in line
    capsys.readouterr()
    assert main(["remove", "p.####.exr", "--mask", "m.####.exr", "--guidance", "-1", "--export-spec", str(spec)]) == 2
    assert "guidance must be 0 (the backend's default) or positive, not -1.0" in capsys.readouterr().err


def test_overwrite_reaches_the_spec_and_the_farm_command_line(tmp_path, capsys):
    spec = tmp_path / "spec.json"
    assert main(["remove", "p.####.exr", "--mask", "m.####.exr", "--overwrite", "--export-spec", str(spec)]) == 0
    assert json.loads(spec.read_text())["output"]["overwrite"] is True
    assert main(["farm", "export", "--format", "commands", str(spec), "-o", str(tmp_path / "job.json")]) == 0
    assert "--overwrite" in (tmp_path / "job.json").read_text()
