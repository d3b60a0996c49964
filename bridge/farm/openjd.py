"""Open Job Description job templates (specification `jobtemplate-2023-09`) for voidlink removals.

The shape, and why:

- **Tasks are ordinary command lines.** Each task runs `voidlink remove PLATE --mask=... -o=...
  --no-start`, the command an artist would type, so a farm that can run one command per task (Deadline,
  OpenCue, Tractor, a shell loop) runs the same thing.
- **One step, many tasks**: a timeline's shots are the tasks of one step (a task parameter space
  over Shot, Plate, Mask, Frames, Prompt, Output, associated element by element), not one step per
  shot. A farm session runs many tasks of a step one after another on the same worker, so the
  session's daemon keeps its backend (VOID: 22 GB of weights) loaded from shot to shot; with one step
  per shot every shot would pay the load. Shots whose command lines differ in shape (one has an
  affected matte, another none) go to separate steps, since a task parameter cannot add or drop an
  argument; a step holds at most 1024 tasks, the specification's limit on a range list.
- **Shots are not split into frame segments**: both backends read the whole shot (the classical one
  pulls background that other frames reveal, VOID blends overlapping windows), so a segment rendered
  alone would not give the frames the whole shot gives.
- **The daemon belongs to the session.** A job environment starts a private daemon on the worker
  (free loopback port, data dir inside the session's working directory) when the session begins and
  stops it when the session ends; `DaemonAddress` points the tasks at a daemon already running on the
  worker instead. Nothing reaches back to the workstation that wrote the job.
- A conform's job ends with a `Conform` step, run once every removal step has succeeded: `voidlink
  farm finish` records the clean frames (so a later conform reuses them) and writes the timeline back.
- A timeline's paths are `PATH` task parameters, so a farm's path mapping rules (Windows ↔ Linux
  mounts) apply to them. One shot's paths are `STRING` job parameters: the specification reads a
  PATH parameter's default as relative to the template's folder and refuses one outside it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Optional

from voidlink.protos import pb

from voidlink import errors

SPECIFICATION = "jobtemplate-2023-09"
MAX_TASKS_PER_STEP = 1024  # the specification's limit on a task parameter's range list
DAEMON_DIR = "{{Session.WorkingDirectory}}/voidlink-daemon"

# remove option → (parameter name, parameter type) for the values that change from shot to shot.
PER_SHOT = {
    "plate": ("Plate", "PATH"),
    "--mask": ("Mask", "PATH"),
    "--affected": ("Affected", "PATH"),
    "--frames": ("Frames", "STRING"),
    "--prompt": ("Prompt", "STRING"),
    "--output": ("Output", "PATH"),
}
_DESCRIPTIONS = {
    "Plate": "The plate: a sequence pattern (name.####.exr), a movie or an image.",
    "Mask": "The object matte (or quadmask).",
    "Affected": "The matte of what the object affects (shadows, reflections).",
    "Frames": "FIRST-LAST in the plate's own frame numbers.",
    "Prompt": "The scene after removal.",
    "Output": "Where the clean plate is written (a sequence pattern).",
}


@dataclass
class FarmShot:
    """One removal of the job: a label the farm shows for the task, and the JobSpec it must reproduce."""

    label: str
    spec: pb.JobSpec


@dataclass
class RemoveLine:
    """A JobSpec as `voidlink remove` options: the plate positional, then `--option` values and flags."""

    values: dict = field(default_factory=dict)  # option → text ("plate" for the positional)
    flags: tuple = ()  # options without a value (--quadmask, --resample-mattes, --overwrite)

    def arguments(self) -> list:
        """The command line's arguments after `voidlink remove`, each value joined to its option by `=`.

        `--prompt=-a-dash` stays one argument with its value, whatever the value starts with.
        """
        out = [self.values["plate"]]
        for option, value in self.values.items():
            if option != "plate":
                out.append(f"{option}={value}")
        return out + list(self.flags)


def remove_line(spec: pb.JobSpec) -> RemoveLine:
    """The `voidlink remove` options that describe `spec` (what they cannot say, `check_line` finds)."""
    from voidlink.protos import vocabulary
    from voidlink.protos.clips import clip_media

    values: dict = {"plate": clip_media(spec.source.otio_json, "source.otio_json").path}
    values["--mask"] = clip_media(spec.mask.otio_json, "mask.otio_json").path
    if spec.affected.otio_json.strip():
        values["--affected"] = clip_media(spec.affected.otio_json, "affected.otio_json").path
    if spec.HasField("frames"):
        values["--frames"] = f"{spec.frames.first}-{spec.frames.last}"
    values["--prompt"] = spec.params.prompt
    values["--backend"] = spec.params.backend or "auto"
    values["--output"] = spec.output.path_template
    params, matte = spec.params, spec.mask.matte
    quality = vocabulary.QUALITY.word(params.quality, "spec.params.quality")
    if quality != "balanced":
        values["--quality"] = quality
    crop = vocabulary.CROP_MODE.word(params.crop_mode, "spec.params.crop_mode")
    if crop != "auto":
        values["--crop"] = crop
    if params.passes:
        values["--passes"] = str(params.passes)
    if params.steps:
        values["--steps"] = str(params.steps)
    if params.guidance:
        values["--guidance"] = repr(float(params.guidance))
    if params.HasField("seed"):
        values["--seed"] = str(params.seed)
    if params.priority:
        values["--priority"] = str(params.priority)
    if matte.dilate:
        values["--dilate"] = str(matte.dilate)
    if matte.feather:
        values["--feather"] = repr(float(matte.feather))
    pixel_type = vocabulary.PIXEL_TYPE.word(spec.output.pixel_type, "spec.output.pixel_type")
    if pixel_type != "auto":
        values["--pixel-type"] = pixel_type
    compression = vocabulary.COMPRESSION.word(spec.output.compression, "spec.output.compression")
    if compression != "zip":
        values["--compression"] = compression
    flags = []
    if matte.is_quadmask:
        flags.append("--quadmask")
    if params.resample_mattes:
        flags.append("--resample-mattes")
    if spec.output.overwrite:
        flags.append("--overwrite")
    return RemoveLine(values, tuple(flags))


# -- the template ----------------------------------------------------------------------------


def literal(text: str, what: str, field: str = "") -> str:
    """`text` as it may stand in a template's format strings (task values, arguments): without `{{` or `}}`.

    The specification has no escape for them: `{{Param.X}}` inside a prompt or a path would be
    expanded, and a stray `}}` makes the template invalid. Job parameter values are not expanded,
    so one shot's values never pass through here.
    """
    if "{{" in text or "}}" in text:
        raise errors.InvalidInput(
            f"{what} {text!r} holds '{{{{' or '}}}}', which an Open Job Description template would read as an "
            "expression (it has no way to escape them); change it, or export the shot on its own",
            reason="BAD_VALUE",
            field=field or what,
        )
    return text


def _job_parameters(backend: str) -> list:
    return [
        {
            "name": "Voidlink",
            "type": "STRING",
            "description": "The command that runs voidlink on the workers (a name on PATH or a full path).",
            "default": "voidlink",
            "minLength": 1,
        },
        {
            "name": "Backend",
            "type": "STRING",
            "description": "auto (VOID where the worker has a GPU and the weights, else classical), classical or void.",
            "default": backend,
            "allowedValues": ["auto", "classical", "void"],
        },
        {
            "name": "Weights",
            "type": "STRING",
            "description": "Folder of the VOID weights on the workers; empty: where voidlink finds them there "
            "($VOIDLINK_WEIGHTS, else the worker user's voidlink data dir).",
            "default": "",
        },
        {
            "name": "DaemonAddress",
            "type": "STRING",
            "description": "A voidlink daemon already running on each worker (HOST:PORT or unix:PATH); "
            "empty: every session starts its own.",
            "default": "",
        },
    ]


def _daemon_environment() -> dict:
    return {
        "name": "VoidlinkDaemon",
        "description": "A voidlink daemon for this session: started on entry, stopped on exit; the tasks find it "
        "through VOIDLINK_ADDRESS.",
        "script": {
            "actions": {
                "onEnter": {
                    "command": "{{Param.Voidlink}}",
                    "args": [
                        "farm",
                        "daemon",
                        "start",
                        f"--data-dir={DAEMON_DIR}",
                        "--weights={{Param.Weights}}",
                        "--address={{Param.DaemonAddress}}",
                    ],
                    "timeout": 600,
                },
                "onExit": {
                    "command": "{{Param.Voidlink}}",
                    "args": ["farm", "daemon", "stop", f"--data-dir={DAEMON_DIR}"],
                    "timeout": 300,
                },
            }
        },
    }


def _shape(line: RemoveLine, per_shot: tuple) -> tuple:
    """What must be equal for two shots to share a step: which options they have, and the fixed values."""
    fixed = tuple(
        (option, value) for option, value in line.values.items() if option not in per_shot and option != "--backend"
    )
    present = tuple(option for option in line.values if option in per_shot)
    return present, fixed, line.flags


def job_template(shots: list, name: str, per_task: Optional[bool] = None, finish: Optional[list] = None) -> dict:
    """The template for `shots`. `per_task=False` (the default for one shot) makes the shot's paths,
    frames and prompt job parameters, so a submitter can change them; otherwise they are task parameters.
    `finish`: voidlink arguments of a last step that runs once every removal has succeeded.
    """
    if not shots:
        raise errors.InvalidInput("a farm job needs at least one shot", reason="NOTHING_TO_RUN")
    lines = [remove_line(shot.spec) for shot in shots]
    backends = sorted({line.values["--backend"] for line in lines})
    if len(backends) > 1:
        raise errors.InvalidInput(
            f"the shots ask for different backends ({', '.join(backends)}); a job has one Backend parameter",
            reason="MIXED_BACKENDS",
            field="params.backend",
        )
    if per_task is None:
        per_task = len(shots) > 1
    template: dict = {
        "specificationVersion": SPECIFICATION,
        # The name is a format string too; braces in it are only cosmetic, so they are loosened, not refused.
        "name": name.replace("{{", "{ {").replace("}}", "} }"),
        "description": "Object removal with voidlink: each task runs `voidlink remove` for one shot.",
        "parameterDefinitions": _job_parameters(backends[0]),
        "jobEnvironments": [_daemon_environment()],
    }
    if not per_task:
        if len(shots) != 1:
            raise errors.InvalidInput("job parameters describe one shot; use tasks for several", reason="BAD_VALUE")
        template["parameterDefinitions"] += _shot_job_parameters(lines[0])
        template["steps"] = [_single_step(lines[0], shots[0].label)]
        return template
    groups: dict = {}
    for shot, line in zip(shots, lines):
        groups.setdefault(_shape(line, tuple(PER_SHOT)), []).append((shot, line))
    chunks = []
    for members in groups.values():
        chunks += [members[start : start + MAX_TASKS_PER_STEP] for start in range(0, len(members), MAX_TASKS_PER_STEP)]
    steps = [_task_step("Remove" if len(chunks) == 1 else f"Remove {n}", chunk) for n, chunk in enumerate(chunks, 1)]
    if finish:
        steps.append(
            {
                "name": "Conform",
                "dependencies": [{"dependsOn": step["name"]} for step in steps],
                "script": {
                    "actions": {
                        "onRun": {
                            "command": "{{Param.Voidlink}}",
                            # The Backend reference is the one expression meant to be expanded here.
                            "args": [
                                argument if argument == "--backend={{Param.Backend}}" else literal(argument, "argument")
                                for argument in finish
                            ],
                        }
                    }
                },
            }
        )
    template["steps"] = steps
    return template


def _shot_job_parameters(line: RemoveLine) -> list:
    out = []
    for option, (name, _kind) in PER_SHOT.items():
        if option not in line.values:
            continue
        # STRING, not PATH: the specification takes a PATH parameter's default as relative to the template's
        # folder, and refuses one outside it; a shot on shared storage is anywhere.
        out.append({"name": name, "type": "STRING", "description": _DESCRIPTIONS[name], "default": line.values[option]})
    return out


def _command_arguments(line: RemoveLine, scope: str) -> list:
    """`remove` arguments with the per-shot values as `{{<scope>.<Name>}}` references."""
    arguments = ["remove"]
    for option, value in line.values.items():
        if option in PER_SHOT:
            reference = "{{" + f"{scope}.{PER_SHOT[option][0]}" + "}}"
            arguments.append(reference if option == "plate" else f"{option}={reference}")
        elif option == "--backend":
            arguments.append("--backend={{Param.Backend}}")
        else:
            arguments.append(literal(f"{option}={value}", option))
    # --no-start: the session's environment provides the daemon; a task never starts one of its own.
    return arguments + list(line.flags) + ["--no-start"]


def _single_step(line: RemoveLine, label: str) -> dict:
    arguments = _command_arguments(line, "Param")
    arguments.insert(1, literal(f"--name={label}", "shot"))
    return {"name": "Remove", "script": {"actions": {"onRun": {"command": "{{Param.Voidlink}}", "args": arguments}}}}


def _task_step(name: str, members: list) -> dict:
    first_line = members[0][1]
    labels = [literal(shot.label, "shot") for shot, _ in members]
    parameters = [{"name": "Shot", "type": "STRING", "range": labels}]
    for option, (parameter, kind) in PER_SHOT.items():
        if option in first_line.values:
            values = [literal(line.values[option], f"{shot.label}: {parameter}", parameter) for shot, line in members]
            parameters.append({"name": parameter, "type": kind, "range": values})
    arguments = _command_arguments(first_line, "Task.Param")
    arguments.insert(1, "--name={{Task.Param.Shot}}")
    return {
        "name": name,
        "parameterSpace": {
            "taskParameterDefinitions": parameters,
            # Association: the n-th task takes the n-th value of every parameter (one shot per task).
            "combination": "(" + ", ".join(p["name"] for p in parameters) + ")",
        },
        "script": {"actions": {"onRun": {"command": "{{Param.Voidlink}}", "args": arguments}}},
    }


# -- checking and writing --------------------------------------------------------------------


def validate_template(template: dict) -> None:
    """Check `template` with openjd-model when it is installed (the `farm` extra): decode it and create the job."""
    try:
        from openjd.model import DecodeValidationError, create_job, decode_job_template
    except ImportError:
        return
    try:
        create_job(job_template=decode_job_template(template=template), job_parameter_values={})
    except (DecodeValidationError, ValueError) as exc:
        raise errors.InvalidInput(
            f"the Open Job Description template does not validate: {exc}", reason="BAD_TEMPLATE"
        ) from None


def template_text(template: dict, path: str) -> str:
    """YAML for .yaml/.yml (when PyYAML is there), else JSON, which every YAML reader also reads."""
    if path.lower().endswith((".yaml", ".yml")):
        try:
            import yaml
        except ImportError:
            pass
        else:
            return yaml.safe_dump(template, sort_keys=False, allow_unicode=True, width=120)
    return json.dumps(template, indent=2, ensure_ascii=False) + "\n"


def write_template(template: dict, path: str) -> str:
    """Write the template at `path` (a temporary file renamed into place); returns the absolute path."""
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(template_text(template, path))
    os.replace(temporary, path)
    return path
