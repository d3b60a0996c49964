"""Which events editorial marked for removal, and with which prompt.

A marker marks an event when its text starts with `VOID:` (any case; Avid upper-cases locators);
the rest of the text is the prompt, which may be empty (allowed, with a warning). Marker text is
looked for in:

* OTIO markers on a clip (`marker.name`, else a `comment`/`note` string in its metadata, which is
  where Resolve keeps a marker's note);
* OTIO markers on a track, or on the timeline's stack: they mark the clip under the marker's start
  (on a stack marker: the clip of the topmost enabled video track there);
* EDL locators (`* LOC: 1:00:01:14 RED VOID: ...`, Avid; any hours form), which the EDL reader
  turns into clip markers;
* Resolve EDL marker comments (` |C:ResolveColorBlue |M:VOID: ... |D:1`), kept as the clip's comments.

Clips inside nested stacks (a stack inside a track, at any depth) are looked at like any other; an
event's `path` leads from `timeline.tracks` down to its item. Every VOID marker seen is returned by
`survey_markers` with what became of it: the event it marks, or why it marks none.

An event with several VOID markers uses the first non-empty prompt and warns when others differ.
A marker on a gap cannot be honoured (there is nothing to remove from) and is reported; so is a
marked clip with a speed change or a freeze frame, since a removal on retimed frames would not
line up with the frames the edit shows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

VOID_PREFIX = re.compile(r"^\s*void\s*:\s*", re.IGNORECASE)
_RESOLVE_MARKER = re.compile(r"\|M:(.*?)\s*(?:\|D:\d+\s*)?$")
_NOTE_KEYS = ("comment", "comments", "note", "notes")


@dataclass
class MarkedEvent:
    """One marked event: where it is in the timeline, what it shows, and what to remove."""

    track_index: int  # in timeline.tracks
    item_index: int  # in the track (transitions counted, so the path leads back to the object)
    number: int  # 1-based among the track's clips and gaps: the event number an editor reads
    track_name: str
    item: object  # the opentimelineio Clip (or Gap) in the timeline that was read
    prompt: str = ""
    marker_source: str = ""  # "clip marker", "track marker", "timeline marker", "EDL locator", "Resolve comment"
    warnings: list = field(default_factory=list)
    refusal: str = ""  # why this event is not processed; empty when it is
    path: tuple = ()  # child indices from timeline.tracks down to the item (nested stacks included)

    @property
    def name(self) -> str:
        return self.item.name or f"event {self.number}"

    @property
    def label(self) -> str:
        """`V1_003_A001C003`: unique per event, safe as a folder name."""
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.item.name or "").strip("_.")
        track = re.sub(r"[^A-Za-z0-9]+", "", self.track_name) or f"T{self.track_index + 1}"
        return f"{track}_{self.number:03d}" + (f"_{safe}" if safe else "")


def void_prompt(text: str) -> Optional[str]:
    """The prompt of a `VOID:` text, or None when the text is not a VOID marker."""
    match = VOID_PREFIX.match(text or "")
    return None if match is None else text[match.end() :].strip()


def marker_texts(marker) -> list:
    texts = [marker.name or ""]
    for value in _metadata_notes(marker.metadata):
        texts.append(value)
    return texts


def _metadata_notes(metadata, depth: int = 0) -> list:
    out = []
    try:
        items = list(metadata.items())
    except AttributeError:
        return out
    for key, value in items:
        if isinstance(value, str) and str(key).lower() in _NOTE_KEYS:
            out.append(value)
        elif depth < 2 and hasattr(value, "items"):
            out.extend(_metadata_notes(value, depth + 1))
    return out


def _marker_prompts(markers) -> list:
    prompts = []
    for marker in markers:
        for text in marker_texts(marker):
            prompt = void_prompt(text)
            if prompt is not None:
                prompts.append(prompt)
                break
    return prompts


def _resolve_comment_prompts(item) -> list:
    comments = (item.metadata.get("cmx_3600") or {}).get("comments") or []
    prompts = []
    for comment in comments:
        match = _RESOLVE_MARKER.search(str(comment))
        if match:
            prompt = void_prompt(match.group(1))
            if prompt is not None:
                prompts.append(prompt)
    return prompts


@dataclass
class MarkerSeen:
    """A VOID marker as found, and what became of it (`event` when it marks one, else `skipped`)."""

    text: str
    source: str  # "clip marker", "EDL locator", ...
    where: str  # the item or place it sits on
    prompt: str = ""
    event: Optional[MarkedEvent] = None
    skipped: str = ""  # why it marks no event


def find_marked_events(timeline) -> list:
    """Every marked event of `timeline` (an opentimelineio Timeline), in track then time order."""
    return survey_markers(timeline)[0]


def _walk(composition, path: tuple, names: tuple):
    """(path, names, track) for every track at any depth: the timeline's and those inside nested stacks."""
    import opentimelineio as otio

    for index, child in enumerate(composition):
        if isinstance(child, otio.schema.Track):
            yield path + (index,), names + (child.name or f"T{index + 1}",), child
            for item_index, item in enumerate(child):
                if isinstance(item, otio.schema.Stack):
                    yield from _walk(item, path + (index, item_index), names + (child.name or "", item.name or "S"))


def item_at_path(timeline, path: tuple):
    node = timeline.tracks
    for index in path:
        node = node[index]
    return node


def survey_markers(timeline) -> tuple:
    """(marked events, every VOID marker seen as `MarkerSeen`), nested stacks included."""
    import opentimelineio as otio

    found: dict = {}  # item path → (MarkedEvent, [(prompt, source)])
    seen: list = []

    def mark(path, number, track_name, item, prompts, source):
        if not prompts:
            return
        edl_number = (item.metadata.get("voidlink_edl") or {}).get("number", "")
        if str(edl_number).isdigit():
            number = int(edl_number)  # the event number the editor wrote
        if path not in found:
            found[path] = (MarkedEvent(path[0], path[-1], number, track_name, item, path=path), [])
        found[path][1].extend((prompt, source) for prompt in prompts)
        for prompt in prompts:
            seen.append(MarkerSeen(f"VOID: {prompt}".strip(), source, item.name or f"item {number}", prompt))
            seen[-1].event = found[path][0]

    tracks = list(_walk(timeline.tracks, (), ()))
    for track_path, names, track in tracks:
        track_name = "/".join(name for name in names if name) if len(names) > 1 else names[0]
        numbers, number = {}, 0
        for item_index, child in enumerate(track):
            if isinstance(child, otio.core.Item):
                number += 1
                numbers[item_index] = number
        for item_index, child in enumerate(track):
            if not isinstance(child, otio.core.Item):
                continue  # transitions carry no markers; their neighbours do
            path = track_path + (item_index,)
            if isinstance(child, otio.schema.Stack):
                for prompt in _marker_prompts(child.markers):
                    seen.append(
                        MarkerSeen(
                            f"VOID: {prompt}",
                            "clip marker",
                            child.name or "nested stack",
                            prompt,
                            skipped="marker on a nested stack, not on a clip inside it: put it on the clip",
                        )
                    )
                continue
            from_locators = any("cmx_3600" in m.metadata for m in child.markers)
            source = "EDL locator" if from_locators else "clip marker"
            mark(path, numbers[item_index], track_name, child, _marker_prompts(child.markers), source)
            mark(path, numbers[item_index], track_name, child, _resolve_comment_prompts(child), "Resolve comment")
        for marker in track.markers:
            for prompt in _marker_prompts([marker]):
                item_index = _item_at(track, marker.marked_range.start_time)
                if item_index is None or isinstance(track[item_index], otio.schema.Stack):
                    at = marker.marked_range.start_time.value
                    seen.append(
                        MarkerSeen(
                            f"VOID: {prompt}",
                            "track marker",
                            f"track {track_name} at {at:g}",
                            prompt,
                            skipped="no clip under the marker",
                        )
                    )
                    continue
                path = track_path + (item_index,)
                mark(path, numbers[item_index], track_name, track[item_index], [prompt], "track marker")
    top = [(p, n, t) for p, n, t in tracks if len(p) == 1]
    for marker in timeline.tracks.markers:
        for prompt in _marker_prompts([marker]):
            for track_path, names, track in reversed(top):  # topmost video track first: what the viewer shows
                if track.kind != otio.schema.TrackKind.Video or not track.enabled:
                    continue
                item_index = _item_at_stack_time(timeline, track, marker.marked_range.start_time)
                if item_index is not None and isinstance(track[item_index], otio.schema.Clip):
                    number = sum(isinstance(c, otio.core.Item) for c in list(track)[: item_index + 1])
                    mark(track_path + (item_index,), number, names[0], track[item_index], [prompt], "timeline marker")
                    break
            else:
                at = marker.marked_range.start_time.value
                seen.append(
                    MarkerSeen(
                        f"VOID: {prompt}",
                        "timeline marker",
                        f"timeline at {at:g}",
                        prompt,
                        skipped="no clip on any enabled video track under the marker",
                    )
                )

    events = []
    for key in sorted(found):
        event, prompts = found[key]
        # The first marker with a prompt wins: an empty VOID marker beside a described one is a leftover.
        event.prompt, event.marker_source = next(((p, s) for p, s in prompts if p), prompts[0])
        others = {prompt for prompt, _ in prompts if prompt and prompt != event.prompt}
        if others:
            event.warnings.append(
                f"{len(prompts)} VOID markers; using '{event.prompt}', ignoring "
                + ", ".join(f"'{p}'" for p in sorted(others))
            )
        if not event.prompt:
            event.warnings.append("empty prompt: the removal runs without a description of the clean scene")
        event.refusal = refusal_for(event.item)
        events.append(event)
    for marker in seen:
        if marker.event is not None and marker.prompt != marker.event.prompt:
            marker.skipped = f"another VOID marker on the same event gives its prompt ('{marker.event.prompt}')"
    return events, seen


def refusal_for(item) -> str:
    """Why a marked item cannot be conformed, or "" when it can."""
    import opentimelineio as otio

    if isinstance(item, otio.schema.Gap):
        return "marker on a gap (black/empty event): there is no picture to remove from"
    if not isinstance(item, otio.schema.Clip):
        return f"marker on a {type(item).__name__}, not a clip"
    if isinstance(item.media_reference, otio.schema.GeneratorReference):
        kind = item.media_reference.generator_kind or "generator"
        return f"marker on a {kind} event: there is no picture to remove from"
    for effect in item.effects:
        name = effect.effect_name or type(effect).__name__
        if isinstance(effect, otio.schema.FreezeFrame) or name == "FreezeFrame":
            return "freeze frame on the event: conform removes on the source frames, not on a held frame"
        if isinstance(effect, otio.schema.LinearTimeWarp) or name in ("LinearTimeWarp", "TimeEffect"):
            scalar = getattr(effect, "time_scalar", None)
            speed = f" ({scalar * 100:.0f}%)" if scalar is not None else ""
            return f"speed change on the event{speed}: the clean frames would not match the retimed edit"
    return ""


def _item_at_stack_time(timeline, track, time) -> Optional[int]:
    """The item under a stack marker; such markers count from 0 or (Resolve) from the timeline's start."""
    local = time + track.trimmed_range().start_time
    index = _item_at(track, local)
    start = timeline.global_start_time
    if index is None and start is not None and start.value:
        index = _item_at(track, local - start.rescaled_to(time.rate))
    return index


def _item_at(track, time) -> Optional[int]:
    """Index of the clip or gap under `time` (in the track's own time), or None."""
    import opentimelineio as otio

    for index, child in enumerate(track):
        if not isinstance(child, otio.core.Item):
            continue
        rng = track.range_of_child_at_index(index)
        if rng.start_time <= time < rng.end_time_exclusive():
            return index
    return None
