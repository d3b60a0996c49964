"""A job's clips resolved against the disk, and reading their frames (image sequences, single
images and movies) as the job's other steps need them."""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import OpenImageIO as oiio
from voidlink.media import image, sequence
from voidlink.media.quadmask import MatteSettings
from voidlink.media.sequence import MediaSource
from voidlink.protos import pb
from voidlink.protos.clips import ClipMedia, clip_media

from voidlink.errors import InvalidInput

# Rec. 709 luminance: a movie matte read without a channel named takes its brightness.
_LUMINANCE = np.float32([0.2126, 0.7152, 0.0722])


@dataclass
class Clip:
    """A clip of the job resolved against the disk."""

    field: str  # "spec.source", "spec.mask", "spec.affected"
    clip_media: ClipMedia  # the clip's OTIO JSON as parsed once, when the job was prepared
    media: MediaSource  # its frames as found on disk
    channels: str
    part: str
    matte: bool
    settings: MatteSettings = field(default_factory=MatteSettings)
    header: Optional[oiio.ImageSpec] = None  # of the first frame of the job
    rgb: list[int] = field(default_factory=lambda: [0, 1, 2])  # colour channels among all of a frame's
    confine: Optional[image.OpenedGuard] = None  # a confined daemon's check of each file as it is opened
    _captures: dict = field(default_factory=dict)

    @property
    def clip_range(self) -> tuple[Optional[int], Optional[int]]:
        """The OTIO clip's own frame range (None where the media decides)."""
        return self.clip_media.first, self.clip_media.last

    def read(self, frame: int, all_channels: bool = False) -> image.ImageFrame:
        if self.media.kind == "movie":
            return self._read_movie(frame)
        path = self.media.file_for(frame)
        channels = "all" if all_channels else self.channels
        return image.read_image(
            path, channels, matte=self.matte, part=self.part, field=self.field, frame=frame, confine=self.confine
        )

    def read_header(self, frame: int) -> oiio.ImageSpec:
        """The header of the file holding `frame`, its channels checked (a movie's frame is decoded)."""
        if self.media.kind == "movie":
            return self.read(frame).spec
        path = self.media.file_for(frame)
        spec = image.read_spec(path, self.part, self.field, frame, self.confine)
        image.select_channels(spec, self.channels, matte=self.matte, field=self.field, path=path, frame=frame)
        return spec

    def _read_movie(self, frame: int) -> image.ImageFrame:
        capture = self._capture(frame)
        rgb = image.read_movie_frame(capture, self.media.path, self.media.movie_index(frame), self.field, frame)
        spec = image.movie_spec(rgb.shape[1], rgb.shape[0], self.media.rate)
        if not self.matte:
            return image.ImageFrame(rgb, spec, ["R", "G", "B"], self.media.path)
        how = (self.channels or "luminance").lower()
        pick = {"r": 0, "g": 1, "b": 2}.get(how)
        values = rgb[..., pick : pick + 1] if pick is not None else (rgb @ _LUMINANCE)[..., None]
        return image.ImageFrame(np.ascontiguousarray(values), spec, ["Y"], self.media.path)

    def _capture(self, frame: int):
        import cv2

        # One decoder per thread: the read-ahead thread and the composite both read frames.
        key = threading.get_ident()
        if key not in self._captures:
            # Confined: the decoder reads the file that was opened and checked, kept open as long as it.
            with contextlib.ExitStack() as opened:
                checked = image.open_checked(self.media.path, self.field, frame, self.confine)
                capture = cv2.VideoCapture(opened.enter_context(checked))
                self._captures[key] = (capture, opened.pop_all())
        return self._captures[key][0]

    def close(self) -> None:
        for capture, opened in self._captures.values():
            capture.release()
            opened.close()
        self._captures.clear()


def parse_clip(spec: pb.ClipSpec, field_name: str) -> ClipMedia:
    """A clip's OTIO JSON read once; raises InvalidInput (BAD_CLIP) naming `<field>.otio_json`."""
    try:
        return clip_media(spec.otio_json, field_name + ".otio_json")
    except ValueError as error:
        raise InvalidInput(str(error), reason="BAD_CLIP", field=field_name + ".otio_json") from error


def resolve_clip(
    spec: pb.ClipSpec, field_name: str, matte: bool, confine: Optional[image.OpenedGuard] = None
) -> Clip:
    """A clip of the spec found on disk: its media parsed once, its frames listed (no pixels read)."""
    parsed = parse_clip(spec, field_name)
    found = sequence.discover(parsed, field_name)
    settings = MatteSettings.from_options(spec.matte) if matte else MatteSettings()
    return Clip(field_name, parsed, found, spec.channels, spec.part, matte, settings, confine=confine)
