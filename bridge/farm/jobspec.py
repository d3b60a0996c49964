"""JobSpecs as JSON files: what `voidlink remove --export-spec` writes and `voidlink farm export` reads.

The JSON is protobuf's canonical mapping of `voidlink.v1.JobSpec` with the proto's own field names
(`source.otio_json`, `params.backend`, ...), so an error can name the field exactly as the proto does.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Optional

from voidlink.protos import pb

from voidlink import errors

CLIP_FIELDS = ("source", "mask", "affected")
_UNKNOWN_FIELD = re.compile(r'no field named "([^"]+)" at "([^"]*)"')
_BAD_VALUE = re.compile(r"Failed to parse ([A-Za-z_]+) field")


def job_spec_json(spec: pb.JobSpec) -> str:
    from google.protobuf import json_format

    data = json_format.MessageToDict(spec, preserving_proto_field_name=True)
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def write_job_spec(spec: pb.JobSpec, path: str) -> str:
    """Write `spec` as JSON at `path` (a temporary file renamed into place); returns the absolute path."""
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(job_spec_json(spec))
    os.replace(temporary, path)
    return path


def read_json(path: str) -> Any:
    """The JSON value in `path`; a missing file or broken JSON is an error naming the file (and line)."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise errors.NotFound(f"{path}: no such file", reason="FILE_NOT_FOUND", file=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise errors.InvalidInput(f"{path}: cannot be read as text ({exc})", reason="BAD_FILE", file=path) from None
    try:
        return json.loads(text)
    except ValueError as exc:
        line = getattr(exc, "lineno", None)
        where = f"{path}:{line}" if line else path
        raise errors.InvalidInput(f"{where}: not valid JSON ({exc})", reason="BAD_JSON", file=path) from None


def is_otio_document(value: Any) -> bool:
    return isinstance(value, dict) and "OTIO_SCHEMA" in value


def job_spec_from_json(value: Any, path: str) -> pb.JobSpec:
    """A JobSpec from parsed JSON; anything else is refused naming `path` and the field at fault."""
    from google.protobuf import json_format

    hint = "write one with `voidlink remove PLATE --mask MATTE ... --export-spec FILE.json`"
    if not isinstance(value, dict):
        raise errors.InvalidInput(
            f"{path}: not a voidlink JobSpec: the file holds a JSON {type(value).__name__}, not an object; {hint}",
            reason="NOT_A_JOB_SPEC",
            file=path,
        )
    if {"id", "state"} <= set(value):
        raise errors.InvalidInput(
            f"{path}: not a voidlink JobSpec but a job report (fields 'id', 'state', as `--json` prints); {hint}",
            reason="NOT_A_JOB_SPEC",
            field="id",
            file=path,
        )
    spec = pb.JobSpec()
    try:
        json_format.ParseDict(value, spec)
    except json_format.ParseError as exc:
        text = str(exc)
        unknown = _UNKNOWN_FIELD.search(text)
        bad = _BAD_VALUE.search(text)
        if unknown:
            where, descriptor = _field_at(unknown.group(2))
            field = ".".join([*where, unknown.group(1)])
            known = ", ".join(f.name for f in descriptor.fields) if descriptor is not None else ""
            owner = f"{'.'.join(where)} ({descriptor.name})" if where and descriptor is not None else "JobSpec"
            message = f"{path}: not a voidlink JobSpec: field '{field}' is not a field of {owner}"
            message += f"; its fields are {known}" if known else ""
        else:
            field = bad.group(1) if bad else ""
            message = f"{path}: not a voidlink JobSpec: {text.splitlines()[0]}"
        raise errors.InvalidInput(f"{message}; {hint}", reason="NOT_A_JOB_SPEC", field=field, file=path) from None
    for name in ("source", "mask"):
        if not getattr(spec, name).otio_json.strip():
            raise errors.InvalidInput(
                f"{path}: not a usable voidlink JobSpec: field '{name}.otio_json' is empty (a job needs a plate "
                f"and a matte); {hint}",
                reason="NOT_A_JOB_SPEC",
                field=f"{name}.otio_json",
                file=path,
            )
    if not spec.output.path_template:
        raise errors.InvalidInput(
            f"{path}: not a usable voidlink JobSpec: field 'output.path_template' is empty; {hint}",
            reason="NOT_A_JOB_SPEC",
            field="output.path_template",
            file=path,
        )
    from voidlink.protos.clips import clip_media

    for name in CLIP_FIELDS:
        clip = getattr(spec, name)
        if name == "affected" and not clip.otio_json.strip():
            continue
        try:
            clip_media(clip.otio_json, f"{name}.otio_json")
        except ValueError as exc:
            raise errors.InvalidInput(
                f"{path}: {exc}", reason="NOT_A_JOB_SPEC", field=f"{name}.otio_json", file=path
            ) from None
    return spec


def read_job_spec(path: str) -> pb.JobSpec:
    return job_spec_from_json(read_json(path), path)


def _field_at(location: str) -> tuple:
    """protobuf's `JobSpec.params` → (["params"], the JobParams descriptor); None where the path leads nowhere."""
    parts = location.split(".")[1:]
    descriptor = pb.JobSpec.DESCRIPTOR
    for part in parts:
        field = descriptor.fields_by_name.get(part) if descriptor is not None else None
        descriptor = field.message_type if field is not None else None
    return parts, descriptor


def spec_differences(expected: pb.JobSpec, actual: pb.JobSpec, ignore: tuple = ("name", "labels")) -> list:
    """(field path, expected, actual) for every field where the two jobs would differ.

    Clips are compared by what they point at (path and frame range), not by their OTIO text, which
    may carry names and metadata that change nothing a job reads.
    """
    differences: list = []
    _compare(expected, actual, "", set(ignore), differences)
    return differences


def _clip_identity(otio_json: str) -> Optional[tuple]:
    from voidlink.protos.clips import clip_media

    if not otio_json.strip():
        return None
    media = clip_media(otio_json)
    return (media.path, media.first, media.last)


def _compare(expected, actual, prefix: str, ignore: set, out: list) -> None:
    for field in expected.DESCRIPTOR.fields:
        path = f"{prefix}{field.name}"
        if path in ignore:
            continue
        left, right = getattr(expected, field.name), getattr(actual, field.name)
        if field.name == "otio_json":
            if _clip_identity(left) != _clip_identity(right):
                out.append((path, _clip_identity(left), _clip_identity(right)))
            continue
        if field.message_type is not None and not _is_repeated(field):
            has_left, has_right = expected.HasField(field.name), actual.HasField(field.name)
            if has_left or has_right:
                _compare(left, right, f"{path}.", ignore, out)
            continue
        if field.has_presence and not _is_repeated(field):
            has_left, has_right = expected.HasField(field.name), actual.HasField(field.name)
            if has_left != has_right:
                out.append((path, left if has_left else None, right if has_right else None))
                continue
        if _is_repeated(field):
            is_map = field.message_type is not None and field.message_type.GetOptions().map_entry
            left, right = (dict(left), dict(right)) if is_map else (list(left), list(right))
        if left != right:
            out.append((path, left, right))


def _is_repeated(field) -> bool:
    # `is_repeated` is the newer protobuf spelling; `label` the older one.
    repeated = getattr(field, "is_repeated", None)
    if repeated is not None:
        return bool(repeated)
    return field.label == field.LABEL_REPEATED
