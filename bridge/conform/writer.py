"""Writing the conformed timeline back: OTIO, and CMX3600 EDLs through OpenTimelineIO's adapter.

Only the finished marked clips change (at any depth of nested stacks): their media reference
becomes an `ImageSequenceReference` to the clean EXRs whose available range starts at the first
handle frame's source timecode, so the clip's source range (and with it every record timecode)
stays exactly as it was. The clip is named `<name>_void` and `metadata["voidlink"]` keeps what it
was before. Every other clip, gap, transition, track and marker is left as read.

EDLs are written by `edl_writer`: an EDL that was read comes back line for line, an OTIO timeline
as one EDL per video track.

Each file is written whole (a temporary name beside it, then renamed), never over the timeline being
conformed, and over an existing file only when voidlink wrote it (a conformed OTIO's timeline
metadata, an EDL's `* VOIDLINK:` notes) or the caller says `overwrite`.
"""

from __future__ import annotations

import os
import re
from typing import Optional

from voidlink.bridge.conform.plan import FINISHED, ConformPlan

from voidlink import errors

_EVENT_TIMECODES = re.compile(r"(\d\d:\d\d:\d\d[:;]\d\d)")


def conformed_timeline(plan: ConformPlan):
    """A copy of the plan's timeline with the finished marked clips pointing at their clean frames."""
    import opentimelineio as otio
    from voidlink.protos.clips import SequencePattern

    timeline = plan.timeline_file.timeline.deepcopy()
    timeline.metadata["voidlink"] = {"conformed_from": os.path.abspath(plan.timeline_file.path)}  # ours, if found
    rate = plan.timeline_file.rate
    for entry in plan.events:
        if entry.status not in FINISHED:
            continue
        event, media = entry.event, entry.media
        from voidlink.bridge.conform.markers import item_at_path

        clip = item_at_path(timeline, event.path)
        pattern = SequencePattern.parse(entry.output)
        directory, prefix = os.path.split(pattern.prefix)
        # Time of the first handle frame, in the clip's source time: the event's first visible frame minus handles.
        from voidlink.bridge.conform.media import source_range_of

        visible = source_range_of(clip)
        start = visible.start_time.rescaled_to(rate) - otio.opentime.RationalTime(media.handles[0], rate)
        start = otio.opentime.RationalTime(round(start.value), rate)
        reference = otio.schema.ImageSequenceReference(
            target_url_base=directory + "/",
            name_prefix=prefix,
            name_suffix=pattern.suffix,
            start_frame=media.first,
            frame_step=1,
            rate=rate,
            frame_zero_padding=pattern.padding,
            available_range=otio.opentime.TimeRange(start, otio.opentime.RationalTime(media.frame_count, rate)),
        )
        reference.name = f"{_clean_stem(entry.output)}"
        original = clip.media_reference
        clip.metadata["voidlink"] = {
            "conform": {
                "event": event.label,
                "prompt": event.prompt,
                "status": entry.status,
                "job_id": entry.job_id,
                "original_name": clip.name,
                "original_media": otio.adapters.write_to_string(original, "otio_json") if original else "",
                "plate": media.plate,
                "frames": [media.first, media.last],
            }
        }
        if entry.provenance:
            clip.metadata["voidlink"]["provenance"] = dict(entry.provenance)
        clip.media_reference = reference
        clip.name = f"{clip.name or event.label}_void"
    return timeline


def _clean_stem(output: str) -> str:
    name = os.path.basename(output)
    return name.split(".", 1)[0]


def write_otio(plan: ConformPlan, path: str, overwrite: bool = False):
    """Write the conformed timeline as OTIO JSON; returns it."""
    import opentimelineio as otio

    timeline = conformed_timeline(plan)
    write_outputs(plan, [(path, otio.adapters.write_to_string(timeline, "otio_json"))], overwrite)
    return timeline


def write_edl(plan: ConformPlan, path: str, timeline=None, otio_path: str = "", overwrite: bool = False) -> list:
    """Write CMX3600 EDL(s) of the conformed timeline (see edl_writer); returns the paths written."""
    targets = edl_outputs(plan, path, timeline, otio_path)
    write_outputs(plan, targets, overwrite)
    return [target for target, _ in targets]


def edl_outputs(plan: ConformPlan, path: str, timeline=None, otio_path: str = "") -> list[tuple[str, str]]:
    """(path, text) of each EDL of the conformed timeline: the EDL read, written back; else one per video
    track of an OTIO timeline, `<stem>.<track>.edl` when there are several."""
    from voidlink.bridge.conform.edl_writer import otio_edls, write_back

    doc = plan.timeline_file.edl
    if doc is not None:
        return [(path, write_back(plan, doc))]
    timeline = timeline if timeline is not None else conformed_timeline(plan)
    edls = otio_edls(plan, timeline, os.path.basename(otio_path) if otio_path else "")
    stem, extension = os.path.splitext(path)
    return [
        (path if len(edls) == 1 else f"{stem}.{re.sub(r'[^A-Za-z0-9]+', '', name) or count}{extension}", text)
        for count, (name, text) in enumerate(edls, start=1)
    ]


def write_outputs(plan: ConformPlan, outputs: list[tuple[str, str]], overwrite: bool = False) -> None:
    """Every (path, text) checked (`check_target`) before any is written, then each written whole and
    recorded as voidlink's in its folder's record, so a later conform may write it again."""
    for path, _ in outputs:
        check_target(plan, path, overwrite)
    written: dict[str, dict[str, str]] = {}  # folder -> {file name: SHA-256}, each folder's record written once
    for path, text in outputs:
        _write_whole(path, text)
        folder, name = os.path.split(os.path.abspath(path))
        written.setdefault(folder, {})[name] = _digest(text.encode("utf-8"))
    for folder, digests in written.items():
        _record(folder, digests)


def check_target(plan: ConformPlan, path: str, overwrite: bool = False) -> None:
    """Refuse, naming the file, to write a conformed timeline or EDL over the timeline being conformed
    (never), or over a file voidlink did not write (unless `overwrite`). Called before the shots are
    rendered, so a conform is refused at once rather than after its jobs; and again when writing."""
    if os.path.realpath(path) == os.path.realpath(plan.timeline_file.path):
        raise errors.PermissionDenied(
            f"{path} is the timeline being conformed; the cut is never written over: give another output",
            reason="OUTPUT_OVERWRITES_SOURCE",
            file=path,
        )
    if overwrite or not os.path.lexists(path):
        return
    if _recorded(path) or _written_by_voidlink(path) or _same_bytes(path, plan.timeline_file.path):
        return
    raise errors.OutputExists(
        f"{path} exists and was not written by voidlink; voidlink never writes over files it did not write. "
        "Choose another output, or pass --overwrite to replace it",
        file=path,
    )


def _written_by_voidlink(path: str) -> bool:
    """A conformed OTIO (its timeline's metadata says so) or an EDL with voidlink's notes in it."""
    if not os.path.isfile(path) or os.path.islink(path):
        return False
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read(64 * 1024 * 1024)
    except (OSError, UnicodeDecodeError):
        return False
    if path.lower().endswith(".edl"):
        return any(line.startswith("* VOIDLINK:") for line in text.splitlines())
    import json

    try:
        document = json.loads(text)
    except ValueError:
        return False
    metadata = document.get("metadata") if isinstance(document, dict) else None
    return isinstance(metadata, dict) and isinstance(metadata.get("voidlink"), dict)


# In each folder conform writes into: {file name: SHA-256 of the text written}. A file there is voidlink's
# while it still holds those bytes (an editor's change to it makes it theirs again).
_RECORD = ".voidlink-conform.json"


def _digest(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _read_record(folder: str) -> dict:
    import json

    try:
        with open(os.path.join(folder, _RECORD), encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _recorded(path: str) -> bool:
    if not os.path.isfile(path) or os.path.islink(path):
        return False
    folder, name = os.path.split(os.path.abspath(path))
    try:
        with open(path, "rb") as handle:
            return _read_record(folder).get(name) == _digest(handle.read())
    except OSError:
        return False


def _record(folder: str, digests: dict[str, str]) -> None:
    import json

    record = {**_read_record(folder), **digests}
    _write_whole(os.path.join(folder, _RECORD), json.dumps(record, indent=1, sort_keys=True))


def _same_bytes(path: str, other: str) -> bool:
    """Whether `path` is a copy of `other` (an EDL written back with nothing conformed is the cut itself,
    line for line): replacing it loses nothing the cut does not keep."""
    try:
        if os.path.islink(path) or os.path.getsize(path) != os.path.getsize(other):
            return False
        with open(path, "rb") as mine, open(other, "rb") as theirs:
            return mine.read() == theirs.read()
    except OSError:
        return False


def _write_whole(path: str, text: str) -> None:
    """The file written under a temporary name beside it, then renamed over `path`: never half-written."""
    _make_parent(path)
    folder, name = os.path.split(os.path.abspath(path))
    temporary = os.path.join(folder, f".{name}.voidlink-{os.getpid()}.part")
    try:
        with open(temporary, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.remove(temporary)
        except OSError:
            pass
        raise


def _make_parent(path: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)


def report_rows(plan: ConformPlan) -> list:
    """(event, status, output or reason) per marked event, for the table at the end of a conform."""
    rows = []
    for entry in plan.events:
        detail: Optional[str] = entry.output if entry.status in FINISHED or entry.status == "planned" else None
        rows.append((entry.event.label, entry.status, detail or entry.message))
    return rows
