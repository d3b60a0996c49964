"""A fake DaVinci Resolve scripting API: the subset the voidlink adapter calls.

Names, arguments and return conventions follow Blackmagic's Developer/Scripting/README.txt:
methods answer None, False or an empty list on failure rather than raising; track indices are
1-based; `GetClipProperty()` with no key gives a dict keyed as Resolve keys it ('File Path', 'FPS',
'Frames', 'Start', 'End', 'Type', ...), with a key the value as a string; `ImportMedia` takes
paths or image-sequence dicts (`FilePath` printf pattern, `StartIndex`, `EndIndex`) and returns
the new MediaPoolItems; `AppendToTimeline` takes clipInfo dicts (`mediaPoolItem`, `startFrame`,
`endFrame`, `mediaType`, `trackIndex`, `recordFrame`) and returns the new TimelineItems.
Timeline positions include the timeline's start frame; `GetEnd()` is the frame after the item.

Where the README leaves behaviour open the fake is strict, so an adapter that relies on luck
fails here: importing a sequence with a missing frame imports nothing, appending onto frames
another item holds or onto a track that does not exist places nothing, and `endFrame` is the
last frame used (inclusive), counted like `startFrame` from the media pool item's first frame.

Methods whose names start with `fake_` are the test's hands on the fake (building a timeline),
not part of Resolve's API.
"""

from __future__ import annotations

import os
import re
from typing import Any, Optional


def _printf_path(pattern: str, frame: int) -> str:
    return re.sub(r"%(0?\d*)d", lambda m: f"{frame:{m.group(1)}d}" if m.group(1) else str(frame), pattern)


def _rate_text(rate: float) -> str:
    return f"{rate:g}" if float(rate).is_integer() else f"{rate:.3f}"


class MediaPoolItem:
    def __init__(self, name: str, properties: dict) -> None:
        self._name = name
        self._properties = {k: str(v) for k, v in properties.items()}
        self._id = f"media-{id(self):x}"

    def GetName(self) -> str:  # noqa: N802 (Resolve's names)
        return self._name

    def GetMediaId(self) -> str:  # noqa: N802
        return self._id

    def GetClipProperty(self, propertyName: Optional[str] = None) -> Any:  # noqa: N802, N803
        if not propertyName:
            return dict(self._properties)
        return self._properties.get(propertyName, "")

    def fake_frames(self) -> int:
        return int(self._properties.get("Frames", "0") or 0)


class Folder:
    def __init__(self, name: str) -> None:
        self._name = name
        self._clips: list[MediaPoolItem] = []
        self._subfolders: list[Folder] = []

    def GetName(self) -> str:  # noqa: N802
        return self._name

    def GetClipList(self) -> list:  # noqa: N802
        return list(self._clips)

    def GetSubFolderList(self) -> list:  # noqa: N802
        return list(self._subfolders)


class TimelineItem:
    def __init__(
        self, name: str, media: Optional[MediaPoolItem], start: int, duration: int, left_offset: int, speed: float
    ) -> None:
        self._name = name
        self._media = media
        self._start = start
        self._duration = duration
        self._left = left_offset
        self._speed = speed
        self.fake_track: Optional[tuple[str, int]] = None

    def GetName(self) -> str:  # noqa: N802
        return self._name

    def GetStart(self) -> int:  # noqa: N802
        return self._start

    def GetEnd(self) -> int:  # noqa: N802
        return self._start + self._duration

    def GetDuration(self) -> int:  # noqa: N802
        return self._duration

    def GetLeftOffset(self) -> int:  # noqa: N802
        return self._left

    def GetRightOffset(self) -> int:  # noqa: N802
        if self._media is None:
            return 0
        return self._media.fake_frames() - self._left - int(round(self._duration * self._speed))

    def GetSourceStartFrame(self) -> int:  # noqa: N802
        return self._left

    def GetSourceEndFrame(self) -> int:  # noqa: N802
        return self._left + int(round(self._duration * self._speed))

    def GetMediaPoolItem(self) -> Optional[MediaPoolItem]:  # noqa: N802
        return self._media

    def GetTrackTypeAndIndex(self) -> list:  # noqa: N802
        return list(self.fake_track) if self.fake_track else []


class Timeline:
    def __init__(self, name: str, rate: float, start_frame: int = 86400, video_tracks: int = 1) -> None:
        self._name = name
        self._rate = rate
        self._start = start_frame
        self._tracks: dict[str, list[list[TimelineItem]]] = {
            "video": [[] for _ in range(video_tracks)],
            "audio": [[]],
            "subtitle": [],
        }
        self.fake_playhead = start_frame

    def GetName(self) -> str:  # noqa: N802
        return self._name

    def GetStartFrame(self) -> int:  # noqa: N802
        return self._start

    def GetEndFrame(self) -> int:  # noqa: N802
        ends = [i.GetEnd() for track in self._tracks["video"] for i in track]
        return max(ends, default=self._start)

    def GetTrackCount(self, trackType: str) -> int:  # noqa: N802, N803
        return len(self._tracks.get(trackType, []))

    def AddTrack(self, trackType: str, subTrackType: Optional[str] = None) -> bool:  # noqa: N802, N803
        if trackType not in self._tracks:
            return False
        self._tracks[trackType].append([])
        return True

    def GetItemListInTrack(self, trackType: str, index: int) -> Optional[list]:  # noqa: N802, N803
        tracks = self._tracks.get(trackType)
        if tracks is None or not 1 <= index <= len(tracks):
            return None
        return sorted(tracks[index - 1], key=lambda i: i.GetStart())

    def GetSetting(self, settingName: str) -> Any:  # noqa: N802, N803
        settings = {"timelineFrameRate": _rate_text(self._rate), "timelineResolutionWidth": "1920"}
        return settings.get(settingName, "")

    def GetCurrentVideoItem(self) -> Optional[TimelineItem]:  # noqa: N802
        for track in reversed(self._tracks["video"]):  # the topmost clip under the playhead is what is seen
            for item in track:
                if item.GetStart() <= self.fake_playhead < item.GetEnd():
                    return item
        return None

    def fake_place(self, item: TimelineItem, track: int) -> bool:
        tracks = self._tracks["video"]
        if not 1 <= track <= len(tracks):
            return False
        if any(o.GetStart() < item.GetEnd() and item.GetStart() < o.GetEnd() for o in tracks[track - 1]):
            return False
        tracks[track - 1].append(item)
        item.fake_track = ("video", track)
        return True


class MediaPool:
    def __init__(self, project: Project) -> None:
        self._project = project
        self._root = Folder("Master")
        self._current = self._root

    def GetRootFolder(self) -> Folder:  # noqa: N802
        return self._root

    def GetCurrentFolder(self) -> Folder:  # noqa: N802
        return self._current

    def SetCurrentFolder(self, folder: Folder) -> bool:  # noqa: N802
        if not isinstance(folder, Folder):
            return False
        self._current = folder
        return True

    def AddSubFolder(self, folder: Folder, name: str) -> Optional[Folder]:  # noqa: N802
        if not isinstance(folder, Folder) or not name:
            return None
        sub = Folder(name)
        folder._subfolders.append(sub)
        return sub

    def ImportMedia(self, items: list) -> list:  # noqa: N802
        created: list[MediaPoolItem] = []
        rate = _rate_text(self._project._timeline_rate())
        for entry in items:
            if isinstance(entry, dict):
                pattern = entry.get("FilePath", "")
                first, last = int(entry.get("StartIndex", 0)), int(entry.get("EndIndex", -1))
                if last < first or not all(os.path.isfile(_printf_path(pattern, f)) for f in range(first, last + 1)):
                    return []
                width = len(_printf_path(pattern, first)) - len(pattern) + len(re.search(r"%0?\d*d", pattern)[0])
                shown = re.sub(r"%0?\d*d", f"[{first:0{width}d}-{last:0{width}d}]", pattern)
                item = MediaPoolItem(
                    os.path.basename(shown),
                    {
                        "File Path": shown,
                        "File Name": os.path.basename(shown),
                        "Type": "Video",
                        "FPS": rate,
                        "Frames": last - first + 1,
                        "Start": first,
                        "End": last,
                    },
                )
            else:
                if not os.path.isfile(entry):
                    return []
                item = self._project.fake_media_for_file(entry)
            created.append(item)
        self._current._clips.extend(created)
        return created

    def AppendToTimeline(self, clipInfo: list) -> list:  # noqa: N802, N803
        timeline = self._project.GetCurrentTimeline()
        if timeline is None:
            return []
        placed: list[TimelineItem] = []
        for info in clipInfo:
            if not isinstance(info, dict):
                return []
            media = info.get("mediaPoolItem")
            if not isinstance(media, MediaPoolItem):
                return []
            start, end = int(info.get("startFrame", 0)), int(info.get("endFrame", media.fake_frames() - 1))
            if start < 0 or end < start or end >= media.fake_frames() or int(info.get("mediaType", 1)) != 1:
                return []
            record = int(info.get("recordFrame", timeline.GetEndFrame()))
            item = TimelineItem(media.GetName(), media, record, end - start + 1, start, 1.0)
            if not timeline.fake_place(item, int(info.get("trackIndex", 1))):
                return []
            placed.append(item)
        return placed


class Project:
    def __init__(self, name: str = "Project") -> None:
        self._name = name
        self._timelines: list[Timeline] = []
        self._current: Optional[Timeline] = None
        self._pool = MediaPool(self)

    def GetName(self) -> str:  # noqa: N802
        return self._name

    def GetMediaPool(self) -> MediaPool:  # noqa: N802
        return self._pool

    def GetCurrentTimeline(self) -> Optional[Timeline]:  # noqa: N802
        return self._current

    def GetTimelineCount(self) -> int:  # noqa: N802
        return len(self._timelines)

    def GetTimelineByIndex(self, idx: int) -> Optional[Timeline]:  # noqa: N802
        return self._timelines[idx - 1] if 1 <= idx <= len(self._timelines) else None

    def SetCurrentTimeline(self, timeline: Timeline) -> bool:  # noqa: N802
        if timeline not in self._timelines:
            return False
        self._current = timeline
        return True

    def GetSetting(self, settingName: str) -> Any:  # noqa: N802, N803
        return {"timelineFrameRate": _rate_text(self._timeline_rate())}.get(settingName, "")

    def _timeline_rate(self) -> float:
        return self._current._rate if self._current is not None else 24.0

    # -- test hands --------------------------------------------------------------------------

    def fake_timeline(self, name: str, rate: float = 24.0, start_frame: int = 86400, video_tracks: int = 1) -> Timeline:
        timeline = Timeline(name, rate, start_frame, video_tracks)
        self._timelines.append(timeline)
        self._current = timeline
        return timeline

    def fake_media_for_file(
        self, path: str, rate: Optional[float] = None, frames: Optional[int] = None
    ) -> MediaPoolItem:
        """A media pool item for a movie file as Resolve describes one (frames and rate read from the file)."""
        if frames is None or rate is None:
            import cv2

            capture = cv2.VideoCapture(path)
            frames = frames if frames is not None else int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            rate = rate if rate is not None else float(capture.get(cv2.CAP_PROP_FPS))
            capture.release()
        return MediaPoolItem(
            os.path.basename(path),
            {
                "File Path": path,
                "File Name": os.path.basename(path),
                "Type": "Video",
                "FPS": _rate_text(rate),
                "Frames": frames,
                "Start": 0,
                "End": frames - 1,
            },
        )

    def fake_sequence_media(
        self, folder: str, prefix: str, suffix: str, first: int, last: int, padding: int = 4, rate: float = 24.0
    ) -> MediaPoolItem:
        shown = os.path.join(folder, f"{prefix}[{first:0{padding}d}-{last:0{padding}d}]{suffix}")
        return MediaPoolItem(
            os.path.basename(shown),
            {
                "File Path": shown,
                "File Name": os.path.basename(shown),
                "Type": "Video",
                "FPS": _rate_text(rate),
                "Frames": last - first + 1,
                "Start": first,
                "End": last,
            },
        )

    def fake_clip(
        self,
        timeline: Timeline,
        media: Optional[MediaPoolItem],
        track: int,
        record_frame: int,
        duration: int,
        left_offset: int = 0,
        name: str = "",
        speed: float = 1.0,
    ) -> TimelineItem:
        item = TimelineItem(
            name or (media.GetName() if media else "Text+"), media, record_frame, duration, left_offset, speed
        )
        assert timeline.fake_place(item, track), f"track {track} is taken at {record_frame}"
        return item


class ProjectManager:
    def __init__(self) -> None:
        self._project: Optional[Project] = Project()

    def GetCurrentProject(self) -> Optional[Project]:  # noqa: N802
        return self._project


class Resolve:
    """The `resolve` object a menu script is given."""

    def __init__(self) -> None:
        self._manager = ProjectManager()

    def GetProjectManager(self) -> ProjectManager:  # noqa: N802
        return self._manager

    def GetProductName(self) -> str:  # noqa: N802
        return "DaVinci Resolve"

    def GetVersionString(self) -> str:  # noqa: N802
        return "19.1.3.7"

    @property
    def fake_project(self) -> Project:
        assert self._manager._project is not None
        return self._manager._project


def scriptapp(name: str) -> Optional[Resolve]:
    """`DaVinciResolveScript.scriptapp('Resolve')`: a new app object (None for other names)."""
    return Resolve() if name == "Resolve" else None
