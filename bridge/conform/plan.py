"""The conform plan (one entry per marked event) and running it through the daemon.

Outputs: each marked event writes `<output dir>/<timeline stem>_void/<event label>/<plate stem>_void.####.exr`,
numbered like its plate, over the event's source frames plus handles. `<event label>` is
`<track>_<event number>_<clip name>` (`V_003_A001C003`). Beside the frames, `conform.json` records
what made them (plate, frames, mattes, prompt and a hash of the job spec); a later conform with the
same inputs finds it, checks the frames are all there and reuses them instead of submitting again.

Statuses: `planned` (dry run), `done`, `reused`, `failed`, `refused` (gap, speed change, freeze),
`missing_media`, `ambiguous_media`, `missing_mattes`.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import threading
from dataclasses import dataclass, field
from typing import Callable, Optional

from voidlink.bridge.conform.markers import MarkedEvent, MarkerSeen, item_at_path, survey_markers
from voidlink.bridge.conform.media import EventMedia, MediaError, MediaIndex, resolve_event_media
from voidlink.bridge.conform.timeline import TimelineFile

MANIFEST = "conform.json"
PENDING = "planned"
FINISHED = ("done", "reused")


@dataclass
class EventPlan:
    """One marked event: what it needs, where its clean frames go, and how it went."""

    event: MarkedEvent
    record_range: tuple  # (in, out) timecodes, out exclusive as in an EDL
    source_range: tuple
    media: Optional[EventMedia] = None
    output: str = ""  # output pattern (####)
    status: str = PENDING
    message: str = ""
    candidates: list = field(default_factory=list)
    job_id: str = ""
    frames_done: int = 0
    provenance: dict = field(default_factory=dict)  # what made the clean frames (the job result's record)

    @property
    def warnings(self) -> list:
        return list(self.event.warnings) + (list(self.media.warnings) if self.media else [])

    @property
    def runnable(self) -> bool:
        return self.status == PENDING and self.media is not None

    def to_dict(self) -> dict:
        media = self.media
        out = {
            "event": self.event.label,
            "number": self.event.number,
            "track": self.event.track_name,
            "clip": self.event.name,
            "prompt": self.event.prompt,
            "marker": self.event.marker_source,
            "record_range": {"in": self.record_range[0], "out": self.record_range[1]},
            "source_range": {"in": self.source_range[0], "out": self.source_range[1]},
            "media": media.plate if media else None,
            "frames": {"first": media.first, "last": media.last, "count": media.frame_count} if media else None,
            "handles": list(media.handles) if media else None,
            "mattes": {"mask": media.mask, "affected": media.affected} if media else None,
            "output": self.output or None,
            "status": self.status,
            "message": self.message,
            "warnings": self.warnings,
        }
        if self.candidates:
            out["candidates"] = self.candidates
        if self.job_id:
            out["job_id"] = self.job_id
        return out


@dataclass
class ConformPlan:
    timeline_file: TimelineFile
    output_dir: str  # where `<stem>_void/` goes
    handles: int
    events: list = field(default_factory=list)
    markers: list = field(default_factory=list)  # every VOID marker seen (MarkerSeen), with its fate

    def marker_rows(self) -> list:
        """(marker, where, what became of it) for every VOID marker seen."""
        rows = []
        for marker in self.markers:
            entry = next((e for e in self.events if e.event is marker.event), None)
            if marker.skipped:
                fate = f"skipped: {marker.skipped}"
            elif entry is not None:
                fate = f"{entry.event.label}: {entry.status}" + (f" ({entry.message})" if entry.message else "")
            else:
                fate = "skipped"
            rows.append((marker.text, f"{marker.source} on {marker.where}", fate))
        return rows

    def to_dict(self) -> dict:
        counts: dict = {}
        for plan in self.events:
            counts[plan.status] = counts.get(plan.status, 0) + 1
        return {
            "timeline": os.path.abspath(self.timeline_file.path),
            "rate": round(self.timeline_file.rate, 6),
            "drop_frame": self.timeline_file.drop_frame,
            "handles": self.handles,
            "events": [plan.to_dict() for plan in self.events],
            "markers": [{"marker": text, "where": where, "outcome": fate} for text, where, fate in self.marker_rows()],
            "counts": counts,
        }


def timecode(time, rate: float, drop_frame: bool) -> str:
    from opentimelineio import opentime

    return opentime.to_timecode(time.rescaled_to(rate), rate, drop_frame)


def record_range_of(timeline, track, item_index: int):
    """An item's cut in record time: the timeline's start plus its place in the track."""
    from opentimelineio import opentime

    cut = track.range_of_child_at_index(item_index)
    start = cut.start_time - track.trimmed_range().start_time
    if timeline.global_start_time is not None:
        start = start + timeline.global_start_time.rescaled_to(start.rate)
    return opentime.TimeRange(start, cut.duration)


def record_range_of_item(timeline, item):
    """An item's cut in record time at any depth (nested stacks too): its range in the top stack plus the start."""
    rng = item.transformed_time_range(item.trimmed_range(), timeline.tracks)
    start = rng.start_time
    if timeline.global_start_time is not None:
        start = start + timeline.global_start_time.rescaled_to(start.rate)
    from opentimelineio import opentime

    return opentime.TimeRange(start, rng.duration)


def build_plan(
    timeline_file: TimelineFile,
    output_dir: str,
    media_roots: tuple = (),
    handles: int = 0,
    mattes: Optional[str] = None,
    affected: Optional[str] = None,
    pins: Optional[dict] = None,
) -> ConformPlan:
    """Find the marked events and resolve each one's media; problems are recorded per event, not raised."""
    timeline = timeline_file.timeline
    rate, drop = timeline_file.rate, timeline_file.drop_frame
    index = MediaIndex(list(media_roots)) if media_roots else None
    plan = ConformPlan(timeline_file, os.path.abspath(output_dir), handles)
    root = os.path.join(plan.output_dir, f"{timeline_file.stem}_void")
    timeline_dir = os.path.dirname(os.path.abspath(timeline_file.path))
    events, plan.markers = survey_markers(timeline)
    plan.markers.extend(_unplaced_locators(timeline_file))
    for event in events:
        if len(event.path) == 2:
            record = record_range_of(timeline, timeline.tracks[event.path[0]], event.path[1])
        else:
            record = record_range_of_item(timeline, item_at_path(timeline, event.path))
        source = _source_range(event.item)  # the event's own source in/out, as the EDL line has it
        entry = EventPlan(
            event=event,
            record_range=(timecode(record.start_time, rate, drop), timecode(record.end_time_exclusive(), rate, drop)),
            source_range=(
                timecode(source.start_time, rate, drop),
                timecode(source.end_time_exclusive(), rate, drop),
            ),
        )
        plan.events.append(entry)
        if event.refusal:
            entry.status, entry.message = "refused", event.refusal
            continue
        try:
            entry.media = resolve_event_media(
                event.item, rate, index, handles, timeline_dir, pins, mattes, affected, event.label
            )
        except MediaError as error:
            entry.status, entry.message, entry.candidates = error.status, error.message, error.candidates
            continue
        stem = _plate_stem(entry.media.plate)
        entry.output = os.path.join(root, event.label, f"{stem}_void.{'#' * entry.media.padding}.exr")
    _refuse_shared_reels(plan)
    return plan


def _source_range(item):
    """The item's own source in/out; a clip without a source range shows its media's available range."""
    from opentimelineio import opentime

    try:
        return item.trimmed_range()
    except Exception:  # no source range and no available range: nothing to time it by
        zero = opentime.RationalTime(0, 24)
        return opentime.TimeRange(zero, zero)


def _refuse_shared_reels(plan: ConformPlan) -> None:
    """Two events found by the same (truncated) reel but with different clip names may be two takes: refuse both."""
    by_plate: dict = {}
    for entry in plan.events:
        if entry.media is not None and entry.media.origin == "reel":
            by_plate.setdefault(entry.media.plate, []).append(entry)
    for plate, entries in by_plate.items():
        names = {entry.event.item.name for entry in entries}
        if len(names) < 2:
            continue
        listed = " and ".join(f"{e.event.label} ('{e.event.item.name}')" for e in entries)
        for entry in entries:
            entry.status = "ambiguous_media"
            entry.candidates = [plate]
            entry.message = (
                f"{listed} share reel '{entry.media.reel}' but not their clip name: the reel may be truncated and "
                f"they may be different takes; pin each with --media CLIP=PATH"
            )
            entry.output = ""


def _unplaced_locators(timeline_file: TimelineFile) -> list:
    """VOID locators an EDL holds outside every event (before the first): listed, never silently dropped."""
    from voidlink.bridge.conform.edl_read import _LOC
    from voidlink.bridge.conform.markers import void_prompt

    doc = timeline_file.edl
    if doc is None:
        return []
    out = []
    for index in doc.header:
        match = _LOC.match(doc.lines[index])
        text = match.group(2) if match else ""
        words = text.split(None, 1)
        for candidate in (text, words[1] if len(words) > 1 else ""):
            prompt = void_prompt(candidate)
            if prompt is not None:
                where = f"line {index + 1}"
                skip = "locator before the first event: it belongs to no event"
                out.append(MarkerSeen(candidate.strip(), "EDL locator", where, prompt, skipped=skip))
                break
    return out


def _plate_stem(path: str) -> str:
    from voidlink.bridge.conform.media import FoundMedia
    from voidlink.protos.clips import is_movie

    return FoundMedia(path, "movie" if is_movie(path) else "sequence").stem or "plate"


# -- running ---------------------------------------------------------------------------------


def job_spec(plan: EventPlan, backend: str = "auto"):
    from voidlink.bridge.client import build_spec

    media = plan.media
    return build_spec(
        media.plate,
        media.mask,
        media.affected,
        frames=(media.first, media.last),
        prompt=plan.event.prompt,
        output=plan.output,
        backend=backend,
        name=f"conform {plan.event.label}",
    )


def identity(plan: EventPlan, backend: str = "auto") -> dict:
    """What the clean frames depend on; equal identities mean the frames can be reused."""
    media = plan.media
    spec = job_spec(plan, backend)
    spec.name = ""  # a name is not an input
    return {
        "plate": media.plate,
        "frames": [media.first, media.last],
        "mask": media.mask,
        "affected": media.affected,
        "prompt": plan.event.prompt,
        "backend": backend,
        "spec_sha256": hashlib.sha256(spec.SerializeToString(deterministic=True)).hexdigest(),
    }


def reusable(plan: EventPlan, backend: str = "auto") -> bool:
    """True when the event's output folder holds finished frames made from the same inputs."""
    from voidlink.protos.clips import SequencePattern

    manifest = os.path.join(os.path.dirname(plan.output), MANIFEST)
    try:
        with open(manifest, encoding="utf-8") as handle:
            recorded = json.load(handle)
    except (OSError, ValueError):
        return False
    if recorded.get("identity") != identity(plan, backend):
        return False
    pattern = SequencePattern.parse(plan.output)
    if not all(os.path.isfile(pattern.path(frame)) for frame in range(plan.media.first, plan.media.last + 1)):
        return False
    plan.job_id = plan.job_id or recorded.get("job_id", "")
    plan.provenance = dict(recorded.get("provenance") or {})
    return True


def write_manifest(plan: EventPlan, backend: str, job_id: str) -> None:
    manifest = os.path.join(os.path.dirname(plan.output), MANIFEST)
    record = {"identity": identity(plan, backend), "job_id": job_id, "output": plan.output}
    if plan.provenance:
        record["provenance"] = plan.provenance
    temporary = manifest + ".tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=2, sort_keys=True)
    os.replace(temporary, manifest)  # a crash leaves the old manifest or none, never half of one


ProgressCallback = Callable[[EventPlan], None]


def run_plan(
    plan: ConformPlan,
    client,
    parallel: int = 2,
    backend: str = "auto",
    on_progress: Optional[ProgressCallback] = None,
) -> ConformPlan:
    """Run every runnable event: reuse finished results, submit the rest, at most `parallel` at once.

    Keeping only `parallel` jobs submitted leaves the daemon's queue to other users between events,
    instead of flooding it with a whole reel's worth of work at once.
    """
    from voidlink.bridge.client import result_or_raise

    from voidlink.errors import VoidlinkError

    lock = threading.Lock()

    def report(entry: EventPlan) -> None:
        if on_progress is not None:
            with lock:
                on_progress(entry)

    pending = []
    for entry in plan.events:
        if not entry.runnable:
            continue
        if reusable(entry, backend):
            entry.status, entry.message = "reused", "finished frames from an earlier conform"
            report(entry)
        else:
            pending.append(entry)

    def run_one(entry: EventPlan) -> None:
        try:
            job, transfer = client.start(job_spec(entry, backend))
            entry.job_id, entry.status = job.id, "queued"
            report(entry)

            def progress(event) -> None:
                from voidlink.protos.vocabulary import state_name

                entry.status = state_name(event.state)
                entry.frames_done = event.frames_done
                report(entry)

            result = result_or_raise(client.finish(client.wait(job.id, on_progress=progress), transfer))
        except VoidlinkError as error:
            entry.status, entry.message = "failed", str(error)
            report(entry)
            return
        entry.provenance = dict(result.provenance)
        write_manifest(entry, backend, job.id)
        entry.status, entry.message = "done", f"frames {result.first}-{result.last}"
        report(entry)

    if pending:
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            for future in [pool.submit(run_one, entry) for entry in pending]:
                future.result()
    return plan
