"""DaVinci Resolve: the current timeline clip in, the clean plate back onto the track above it.

Only calls of Blackmagic's scripting API (Developer/Scripting/README.txt) are used, on whatever
object the host hands over as `resolve`, so the same code runs in Resolve's free edition (a script
run from Workspace ▸ Scripts) and in Studio's external scripting.

Frame numbers: Resolve counts a timeline item's `GetLeftOffset()` in frames from the first frame of
its media; the job uses the media's own numbers: an image sequence's file numbers (1001…), a movie's
pictures counted from 1 (as the daemon numbers them). Timeline positions (`GetStart`, `recordFrame`)
include the timeline's start frame (often 86400 = 01:00:00:00 at 24 fps).

No Qt and no torch here; Python 3.9 (the Python a Resolve install may run scripts with).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from voidlink.protos.clips import SequencePattern, is_movie

from voidlink.errors import InvalidInput, NotFound, VoidlinkError

BIN_NAME = "VOID"
# Media pool item "Type" values with no file media of their own.
_COMPOUND_TYPES = ("compound", "timeline")
_GENERATED_TYPES = ("generator", "title", "fusion title", "fusion generator", "fusion composition", "adjustment clip")
_BRACKETS = re.compile(r"\[(-?\d+)-(-?\d+)\]")
# Rates closer than this are the same rate written two ways (23.976 vs 23.976023976).
_RATE_TOLERANCE = 0.01


class ResolveError(VoidlinkError):
    """What the user has to change in Resolve before VOID can run (names the clip and what is wrong)."""

    grpc_code = "INVALID_ARGUMENT"
    default_reason = "RESOLVE_INPUT"


@dataclass
class TimelineClip:
    """The current video item as a job needs it."""

    name: str
    kind: str  # "sequence" or "movie"
    media_path: str  # a #### pattern for sequences, the movie's path
    first: int  # first and last source frame the edit uses, in the media's own numbers
    last: int
    record_frame: int  # timeline frame where the item starts
    duration: int
    track_index: int  # 1-based video track
    rate: float  # timeline frame rate
    timeline_name: str = ""
    labels: dict = field(default_factory=dict)

    def form(self, output: str = "") -> dict:
        """What the panel is pre-filled with (keys of `voidlink.panel.form.FormValues`)."""
        return {
            "plate": self.media_path,
            "first": self.first,
            "last": self.last,
            "output": output or default_output(self),
            "use_roto": True,  # Resolve gives no matte: draw one, or import a matte clip
            "name": f"{self.timeline_name} · {self.name}" if self.timeline_name else self.name,
            "labels": dict(self.labels),
        }


def default_output(clip: TimelineClip) -> str:
    """`<media folder>/void/<clip>_<first>-<last>_void.####.exr`: beside the media, never onto it, one per edit."""
    folder = os.path.dirname(clip.media_path)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", os.path.splitext(clip.name)[0].split("[")[0]).strip("._-") or "clip"
    return os.path.join(folder, "void", f"{stem}_{clip.first}-{clip.last}_void.####.exr")


# -- getting at Resolve -------------------------------------------------------------------------


def get_resolve(namespace: Optional[dict] = None) -> Any:
    """The Resolve app object: the `resolve` a menu script is given, else `bmd.scriptapp`, else the
    `DaVinciResolveScript` module (external scripting, Studio only)."""
    namespace = namespace or {}
    if namespace.get("resolve") is not None:
        return namespace["resolve"]
    bmd = namespace.get("bmd")
    if bmd is not None and hasattr(bmd, "scriptapp"):
        app = bmd.scriptapp("Resolve")
        if app is not None:
            return app
    app = namespace.get("app")
    if app is not None and hasattr(app, "GetResolve"):
        return app.GetResolve()
    try:
        import DaVinciResolveScript as dvr  # type: ignore[import-not-found]
    except ImportError:
        dvr = None
    resolve = dvr.scriptapp("Resolve") if dvr is not None else None
    if resolve is None:
        raise ResolveError(
            "cannot reach DaVinci Resolve: run this from Workspace ▸ Scripts inside Resolve, or enable external "
            "scripting (Studio) and set RESOLVE_SCRIPT_API / RESOLVE_SCRIPT_LIB",
            reason="RESOLVE_UNREACHABLE",
        )
    return resolve


def current_timeline(resolve: Any) -> tuple[Any, Any]:
    """(project, timeline); raises ResolveError when either is missing."""
    project = resolve.GetProjectManager().GetCurrentProject()
    if not project:
        raise ResolveError("no project is open in Resolve", reason="NO_PROJECT")
    timeline = project.GetCurrentTimeline()
    if not timeline:
        raise ResolveError(f"project '{project.GetName()}' has no current timeline: open one", reason="NO_TIMELINE")
    return project, timeline


def _rate(text: Any) -> float:
    try:
        return float(str(text).strip().split()[0])
    except (ValueError, IndexError):
        return 0.0


def track_of(timeline: Any, item: Any) -> int:
    """The 1-based video track holding `item`."""
    where = item.GetTrackTypeAndIndex() if hasattr(item, "GetTrackTypeAndIndex") else None
    if where and len(where) == 2 and where[0] == "video":
        return int(where[1])
    key = (item.GetStart(), item.GetEnd(), item.GetName())
    for index in range(1, int(timeline.GetTrackCount("video")) + 1):
        for other in timeline.GetItemListInTrack("video", index) or []:
            if (other.GetStart(), other.GetEnd(), other.GetName()) == key:
                return index
    raise ResolveError(f"clip '{item.GetName()}' is on no video track of the timeline", reason="NO_CURRENT_CLIP")


def _sequence_media(path: str, props: dict, name: str) -> tuple[str, int, int]:
    """(#### pattern, first, last) of an image sequence as Resolve names it: `plate.[1001-1100].exr`."""
    match = _BRACKETS.search(os.path.basename(path))
    if match:
        first_text, last_text = match.group(1), match.group(2)
        digits = first_text.lstrip("-")
        # Zero-led or as wide as the last number: padded; `[1-100]` is unpadded, found on disk as `@`.
        padded = digits.startswith("0") or len(first_text) == len(last_text)
        folder, base = os.path.split(path)
        token = "#" * len(digits) if padded else "@"
        pattern = os.path.join(folder, base.replace(match.group(0), token))
        return pattern, int(first_text), int(last_text)
    parsed = SequencePattern.parse(path)
    if parsed is not None:  # a pattern already (%04d, ####)
        start = int(_rate(props.get("Start")) or 0)
        frames = int(_rate(props.get("Frames")) or 0)
        return parsed.hashes(), start, start + frames - 1
    raise ResolveError(
        f"clip '{name}': cannot tell the frame numbers of its media {path}", reason="UNKNOWN_MEDIA", file=path
    )


def describe_item(resolve: Any, item: Any = None) -> TimelineClip:
    """The current (or given) video item of the current timeline; refuses what VOID cannot process."""
    _, timeline = current_timeline(resolve)
    if item is None:
        item = timeline.GetCurrentVideoItem()
    if not item:
        raise ResolveError(
            f"timeline '{timeline.GetName()}' has no clip under the playhead: park the playhead on the clip to clean",
            reason="NO_CURRENT_CLIP",
        )
    name = item.GetName() or "(unnamed)"
    media_item = item.GetMediaPoolItem()
    if not media_item:
        raise ResolveError(
            f"clip '{name}' is a generator or title: it has no media to remove anything from",
            reason="NO_MEDIA",
        )
    props = media_item.GetClipProperty() or {}
    kind = str(props.get("Type", "")).strip().lower()
    if kind in _COMPOUND_TYPES:
        raise ResolveError(
            f"clip '{name}' is a compound clip: decompose it in place (or render it) and run VOID on its media",
            reason="COMPOUND_CLIP",
        )
    if kind in _GENERATED_TYPES:
        raise ResolveError(
            f"clip '{name}' is a {props.get('Type')}: it has no media to remove anything from", reason="NO_MEDIA"
        )
    path = str(props.get("File Path", "") or "")
    if not path:
        raise ResolveError(f"clip '{name}' has no file path: its media is offline", reason="MEDIA_OFFLINE")

    duration = int(item.GetDuration())
    left = int(item.GetLeftOffset())
    # A retime makes the source span differ from the duration; VOID needs one source frame per timeline frame.
    if hasattr(item, "GetSourceStartFrame") and hasattr(item, "GetSourceEndFrame"):
        source_start, source_end = item.GetSourceStartFrame(), item.GetSourceEndFrame()
        if source_start is not None and source_end is not None:
            span = int(source_end) - int(source_start)
            if abs(span - duration) > 1:
                raise ResolveError(
                    f"clip '{name}' has a speed change ({span} source frames over {duration} timeline frames): "
                    "VOID needs the clip at 100% speed; render the retime first or remove it",
                    reason="SPEED_CHANGE",
                )

    timeline_rate = _rate(timeline.GetSetting("timelineFrameRate"))
    media_rate = _rate(props.get("FPS"))
    if timeline_rate and media_rate and abs(timeline_rate - media_rate) > _RATE_TOLERANCE:
        raise ResolveError(
            f"clip '{name}' is {media_rate:g} fps but timeline '{timeline.GetName()}' runs at {timeline_rate:g} fps: "
            "the result could not cover the edit frame for frame; use a timeline at the media's rate",
            reason="RATE_MISMATCH",
        )

    if is_movie(path):
        if not os.path.isfile(path):
            raise ResolveError(f"clip '{name}': its media {path} is offline (no such file)", reason="MEDIA_OFFLINE")
        media_path, kind_name = path, "movie"
        first = left + 1  # the daemon numbers a movie's pictures from 1
        media_last = int(_rate(props.get("Frames")) or 0)
    else:
        media_path, media_first, media_last = _sequence_media(path, props, name)
        kind_name = "sequence"
        first = media_first + left
        pattern = SequencePattern.parse(media_path)
        if pattern is None or not os.path.isdir(pattern.directory):
            raise ResolveError(f"clip '{name}': its media {path} is offline (no such folder)", reason="MEDIA_OFFLINE")
    last = first + duration - 1
    if kind_name == "sequence":
        assert pattern is not None
        missing = [f for f in (first, last) if not os.path.isfile(pattern.path(f)) and pattern.padding]
        if missing:
            raise ResolveError(
                f"clip '{name}': its media is offline: {pattern.path(missing[0])} does not exist",
                reason="MEDIA_OFFLINE",
                file=pattern.path(missing[0]),
                frames=missing,
            )
    elif media_last and last > media_last:
        raise ResolveError(
            f"clip '{name}' uses frames {first}-{last} but its movie has {media_last}", reason="MEDIA_OFFLINE"
        )

    track = track_of(timeline, item)
    record = int(item.GetStart())
    return TimelineClip(
        name=name,
        kind=kind_name,
        media_path=media_path,
        first=first,
        last=last,
        record_frame=record,
        duration=duration,
        track_index=track,
        rate=timeline_rate or media_rate,
        timeline_name=timeline.GetName() or "",
        labels={
            "host": "resolve",
            "timeline": timeline.GetName() or "",
            "clip": name,
            "track": str(track),
            "record_frame": str(record),
        },
    )


# -- bringing the result back -------------------------------------------------------------------


def void_bin(media_pool: Any) -> Any:
    """The `VOID` folder at the media pool's root (made once)."""
    root = media_pool.GetRootFolder()
    for folder in root.GetSubFolderList() or []:
        if folder.GetName() == BIN_NAME:
            return folder
    folder = media_pool.AddSubFolder(root, BIN_NAME)
    if not folder:
        raise ResolveError(f"Resolve refused to make the '{BIN_NAME}' bin in the media pool", reason="RESOLVE_REFUSED")
    return folder


def _occupied(timeline: Any, track: int, start: int, end: int) -> bool:
    """True when any item on video `track` overlaps timeline frames [start, end)."""
    for item in timeline.GetItemListInTrack("video", track) or []:
        if item.GetStart() < end and start < item.GetEnd():
            return True
    return False


def free_track_above(timeline: Any, track: int, start: int, end: int) -> tuple[int, bool]:
    """(track index, added): the first video track above `track` free over [start, end); a new top one if none is."""
    count = int(timeline.GetTrackCount("video"))
    for index in range(track + 1, count + 1):
        if not _occupied(timeline, index, start, end):
            return index, False
    if not timeline.AddTrack("video"):
        raise ResolveError(
            f"every video track above track {track} is taken at frames {start}-{end - 1} "
            "and Resolve refused to add one",
            reason="RESOLVE_REFUSED",
        )
    return int(timeline.GetTrackCount("video")), True


@dataclass
class Placement:
    media_pool_item: Any
    timeline_item: Any
    track_index: int
    record_frame: int
    duration: int
    added_track: bool


def import_result(resolve: Any, clip: TimelineClip, output_pattern: str, first: int, last: int) -> Placement:
    """Import the clean EXR sequence into the `VOID` bin and lay it over the original, frame for frame."""
    pattern = SequencePattern.parse(output_pattern)
    if pattern is None:
        raise InvalidInput(
            f"result {output_pattern} is not a frame sequence", reason="BAD_PATTERN", file=output_pattern
        )
    if (first, last) != (clip.first, clip.last):
        raise ResolveError(
            f"the result covers frames {first}-{last} but clip '{clip.name}' uses {clip.first}-{clip.last}",
            reason="RANGE_MISMATCH",
        )
    missing = [f for f in range(first, last + 1) if not os.path.isfile(pattern.path(f))]
    if missing:
        raise NotFound(
            f"the result of clip '{clip.name}' lacks {len(missing)} frame(s), first {pattern.path(missing[0])}",
            reason="MISSING_FRAMES",
            file=pattern.path(missing[0]),
            frames=missing,
        )
    project, timeline = current_timeline(resolve)
    media_pool = project.GetMediaPool()
    previous_folder = media_pool.GetCurrentFolder()
    folder = void_bin(media_pool)
    if not media_pool.SetCurrentFolder(folder):
        raise ResolveError(f"Resolve refused to open the '{BIN_NAME}' bin", reason="RESOLVE_REFUSED")
    try:
        imported = media_pool.ImportMedia([{"FilePath": pattern.printf(), "StartIndex": first, "EndIndex": last}])
    finally:
        if previous_folder:
            media_pool.SetCurrentFolder(previous_folder)
    if not imported:
        raise ResolveError(
            f"Resolve could not import {pattern.printf()} (frames {first}-{last}) into the '{BIN_NAME}' bin",
            reason="IMPORT_FAILED",
            file=pattern.printf(),
        )
    media_item = imported[0]
    end = clip.record_frame + clip.duration
    track, added = free_track_above(timeline, clip.track_index, clip.record_frame, end)
    placed = media_pool.AppendToTimeline(
        [
            {
                "mediaPoolItem": media_item,
                # The imported clip holds exactly the edit's source frames: all of them, from its first.
                "startFrame": 0,
                "endFrame": clip.duration - 1,
                "mediaType": 1,
                "trackIndex": track,
                "recordFrame": clip.record_frame,
            }
        ]
    )
    if not placed:
        raise ResolveError(
            f"Resolve refused to place the result of '{clip.name}' on video track {track} at frame {clip.record_frame}",
            reason="RESOLVE_REFUSED",
        )
    return Placement(media_item, placed[0], track, clip.record_frame, clip.duration, added)
