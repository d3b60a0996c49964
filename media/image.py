"""Reading and writing frames through OpenImageIO (and movies through OpenCV).

Pixels come in as float32 (H, W, C) covering the file's *data window*; the `ImageSpec` read with
them keeps the display window, pixel aspect and every metadata attribute, and goes back out with
the written frame, so overscan, bounding boxes, timecode and custom attributes survive a job.

Writes are atomic: a hidden temporary file in the destination folder, then a rename, so a reader
(or a crash) never sees half a frame.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Callable, Optional, Union

import numpy as np
import OpenImageIO as oiio

from voidlink.errors import InvalidInput, LimitExceeded

COMPRESSIONS = ("zip", "piz", "dwaa", "none")
# Header attributes voidlink writes into its results (the job that wrote the file, what made it).
OWN_PREFIX = "voidlink:"
JOB_ATTRIBUTE = OWN_PREFIX + "job"
# Formats whose header keeps JOB_ATTRIBUTE (TIFF, DPX, JPEG drop attributes of names they do not know).
JOB_FORMATS = (".exr", ".png")
PIXEL_TYPES = ("half", "float")
# Attributes that describe the file we read, not the picture: never copied to an output.
_FILE_ATTRIBUTES = re.compile(
    r"^(oiio:(subimages|RowsPerChunk|BitsPerSample|UnassociatedAlpha)|compression$|tiff:|png:|jpeg:|dpx:Image|openexr:(chunkCount|lineOrder|dwaCompressionLevel)|planarconfig$|Orientation$)"
)

# What a daemon confined to roots hands the readers: `confine(real, path, field, frame)` raises
# (PermissionDenied) when `real`, the real path of a file voidlink has just opened to read as `path`, is
# outside the roots. Each frame file is then opened once, that open file is checked, and its pixels are
# read through it (OpenImageIO and OpenCV open the descriptor's /proc/self/fd or /dev/fd name, the same
# file), so a path swapped for a link to a file elsewhere after the job was checked is refused, not read.
# None (an unconfined local daemon): files are opened by their path, as any local tool does.
OpenedGuard = Callable[[str, str, str, Optional[int]], None]


@dataclass
class ImageFrame:
    """Pixels of one frame (its data window) and the spec they came with."""

    pixels: np.ndarray  # (H, W, C) float32 over the data window
    spec: oiio.ImageSpec  # of the part read: windows, formats, metadata
    channels: list[str]  # names of the channels in `pixels`
    path: str = ""

    @property
    def data_window(self) -> tuple[int, int, int, int]:
        """(x, y, width, height) in pixels of the display window's coordinates."""
        return self.spec.x, self.spec.y, self.spec.width, self.spec.height

    @property
    def display_window(self) -> tuple[int, int, int, int]:
        return self.spec.full_x, self.spec.full_y, self.spec.full_width, self.spec.full_height


def _unreadable(path: str, detail: str, field: str, frame: Optional[int]) -> InvalidInput:
    where = f" (frame {frame})" if frame is not None else ""
    return InvalidInput(
        f"{field}: cannot read {path}{where}: {detail.strip() or 'unknown error'}",
        reason="UNREADABLE_FILE",
        field=field,
        file=path,
        frame=frame,
    )


def _fd_name(fd: int) -> Optional[str]:
    """A name that opens the file behind `fd` itself (not whatever its path names now), where the OS has one."""
    if sys.platform.startswith("linux"):
        return f"/proc/self/fd/{fd}"
    if sys.platform == "darwin":
        return f"/dev/fd/{fd}"
    return None  # elsewhere (Windows) the path is read again: checked as opened, but not pinned


def _fd_real_path(fd: int, path: str) -> str:
    """The real path of the file open as `fd` (every link and `..` resolved, by the kernel)."""
    if sys.platform.startswith("linux"):
        return os.readlink(f"/proc/self/fd/{fd}")
    if sys.platform == "darwin":
        import fcntl

        return fcntl.fcntl(fd, fcntl.F_GETPATH, bytes(1024)).split(b"\0", 1)[0].decode()
    return os.path.realpath(path)  # no way to ask the OS: the best a path check can do


@contextlib.contextmanager
def open_checked(
    path: str, field: str, frame: Optional[int] = None, confine: Optional[OpenedGuard] = None
) -> Iterator[str]:
    """Open `path` once for reading, check the file actually opened, and yield the name to read it by.

    With `confine` the file must be a regular file whose real path `confine` accepts; the name yielded
    reads that very file (the open descriptor's) for as long as the block runs. Without it the path
    itself is yielded, untouched."""
    guard = confine
    if guard is None:
        yield path
        return
    where = f" (frame {frame})" if frame is not None else ""
    # O_NONBLOCK: a FIFO put in a frame's place must not hang the daemon; it is refused below.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise _unreadable(path, exc.strerror or str(exc), field, frame) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InvalidInput(
                f"{field}: {path}{where} is not a regular file; a frame must be an image file",
                reason="UNREADABLE_FILE",
                field=field,
                file=path,
                frame=frame,
            )
        guard(_fd_real_path(fd, path), path, field, frame)
        yield _fd_name(fd) or path
    finally:
        os.close(fd)


def _open(path: str, part: str, field: str, frame: Optional[int], name: str = "") -> tuple[oiio.ImageInput, int]:
    """Open `name` (the file to read, `path` unless open_checked gave another) as the frame at `path`."""
    name = name or path
    image = oiio.ImageInput.open(name)
    if image is None:
        raise _unreadable(path, oiio.geterror().replace(name, path), field, frame)
    if not part:
        return image, 0
    index = 0
    names = []
    while image.seek_subimage(index, 0):
        part_name = image.spec().getattribute("name") or ""
        names.append(part_name)
        if part_name == part:
            return image, index
        index += 1
    image.close()
    raise InvalidInput(
        f"{field}: {path} has no part named '{part}' (parts: {', '.join(n or '<unnamed>' for n in names)})",
        reason="MISSING_PART",
        field=field + ".part",
        file=path,
        frame=frame,
    )


def read_spec(
    path: str,
    part: str = "",
    field: str = "clip",
    frame: Optional[int] = None,
    confine: Optional[OpenedGuard] = None,
) -> oiio.ImageSpec:
    """The header of one frame (cheap: no pixels); `confine` as in `open_checked`."""
    with open_checked(path, field, frame, confine) as name:
        image, _ = _open(path, part, field, frame, name)
        try:
            return oiio.ImageSpec(image.spec())
        finally:
            image.close()


def job_of(path: str) -> Optional[str]:
    """The voidlink job that wrote the file at `path` (its header's `voidlink:job`), else None: also for
    a missing path, a link, a folder or any other non-regular file, a file no image reader opens, or an
    image without the attribute (another program's, or a format whose header cannot hold it)."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        # Opened without following a link and without blocking; the header is read from that file.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        image = oiio.ImageInput.open(_fd_name(fd) or path)
        if image is None:
            oiio.geterror()  # read, so that it is not reported later as someone else's
            return None
        try:
            value = image.spec().getattribute(JOB_ATTRIBUTE)
        finally:
            image.close()
    finally:
        os.close(fd)
    return value if isinstance(value, str) and value else None


def select_channels(
    spec: oiio.ImageSpec, request: str, *, matte: bool, field: str, path: str = "", frame: Optional[int] = None
) -> tuple[list[int], str]:
    """Channel indices for a request ("rgb", "rgba", "alpha", "luminance", "r", "matte.A", "R,G,B").

    Returns (indices, how): `how` is "luminance" when the indices are R, G, B to be weighted into one.
    Mattes default to alpha, else a single channel, else the luminance of RGB.
    """
    names = list(spec.channelnames)
    lower = [n.lower() for n in names]

    def find(name: str) -> Optional[int]:
        if name in names:
            return names.index(name)
        if name.lower() in lower:
            return lower.index(name.lower())
        # "A" also finds the alpha of a default layer written as "rgba.A" by some renderers.
        for i, n in enumerate(lower):
            if n.endswith("." + name.lower()) and n.count(".") == 1 and n.split(".")[0] in ("rgba", "rgb"):
                return i
        return None

    def missing(what: str) -> InvalidInput:
        return InvalidInput(
            f"{field}: {path or 'the file'} has no {what} channel (channels: {', '.join(names)}); "
            f"pick one with the clip's channels option",
            reason="MISSING_CHANNEL",
            field=field + ".channels",
            file=path,
            frame=frame,
        )

    req = (request or "").strip()
    if not req:
        if not matte:
            req = "rgb"
        elif find("A") is not None:
            req = "alpha"
        elif len(names) == 1:
            return [0], "single"
        else:
            req = "luminance"
    key = req.lower()
    if key in ("rgb", "rgba"):
        want = ["R", "G", "B"] + (["A"] if key == "rgba" else [])
        idx = [find(c) for c in want]
        if any(i is None for i in idx):
            if key == "rgb" and len(names) == 1:  # a grey plate: use it as R=G=B
                return [0, 0, 0], "single"
            raise missing(key.upper())
        return [int(i) for i in idx], key
    if key in ("alpha", "a"):
        i = find("A")
        if i is None:
            raise missing("alpha (A)")
        return [i], "single"
    if key in ("luminance", "luma", "y"):
        i = find("Y")
        if i is not None:
            return [i], "single"
        idx = [find(c) for c in ("R", "G", "B")]
        if any(j is None for j in idx):
            if len(names) == 1:
                return [0], "single"
            raise missing("luminance (Y or R, G, B)")
        return [int(j) for j in idx], "luminance"
    parts = [p.strip() for p in req.split(",") if p.strip()]
    idx = [find(p) for p in parts]
    for p, i in zip(parts, idx):
        if i is None:
            raise missing(f"'{p}'")
    return [int(i) for i in idx], "single" if len(idx) == 1 else "list"


def read_image(
    path: str,
    channels: str = "",
    *,
    matte: bool = False,
    part: str = "",
    field: str = "clip",
    frame: Optional[int] = None,
    confine: Optional[OpenedGuard] = None,
) -> ImageFrame:
    """Read one frame's data window as float32 with the requested channels (all of them when "all");
    `confine` as in `open_checked`."""
    with open_checked(path, field, frame, confine) as name:
        image, index = _open(path, part, field, frame, name)
        try:
            spec = oiio.ImageSpec(image.spec())
            if channels == "all":
                idx, how = list(range(spec.nchannels)), "list"
            else:
                idx, how = select_channels(spec, channels, matte=matte, field=field, path=path, frame=frame)
            lo, hi = min(idx), max(idx) + 1
            pixels = image.read_image(index, 0, lo, hi, oiio.FLOAT)
            if pixels is None:
                raise _unreadable(path, image.geterror().replace(name, path), field, frame)
        finally:
            image.close()
    pixels = np.asarray(pixels, dtype=np.float32).reshape(spec.height, spec.width, hi - lo)
    picks = [i - lo for i in idx]
    if picks != list(range(hi - lo)):  # reorder or drop channels only when asked: a copy per frame costs
        pixels = np.take(pixels, picks, axis=2)  # contiguous, unlike fancy indexing on the last axis
    names = [spec.channelnames[i] for i in idx]
    if how == "luminance":  # Rec.709 weights: mattes drawn in RGB
        pixels = (pixels @ np.array([0.2126, 0.7152, 0.0722], np.float32))[..., None]
        names = ["Y"]
    return ImageFrame(np.ascontiguousarray(pixels), spec, names, path)


def read_movie_frame(capture, path: str, index: int, field: str, frame: int) -> np.ndarray:
    """One picture of an open cv2.VideoCapture as float32 RGB 0–1 (seeks only when not sequential)."""
    import cv2

    if int(capture.get(cv2.CAP_PROP_POS_FRAMES)) != index:
        capture.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, bgr = capture.read()
    if not ok or bgr is None:
        raise _unreadable(path, f"movie picture {index} could not be decoded", field, frame)
    scale = 65535.0 if bgr.dtype == np.uint16 else 255.0
    if bgr.ndim == 2:
        bgr = np.repeat(bgr[..., None], 3, axis=2)
    return np.ascontiguousarray(bgr[..., 2::-1].astype(np.float32) / scale)


def movie_spec(width: int, height: int, rate: float) -> oiio.ImageSpec:
    spec = oiio.ImageSpec(width, height, 3, "uint8")
    spec.attribute("oiio:ColorSpace", "srgb_rec709_scene")
    spec.attribute("FramesPerSecond", oiio.TypeDesc("rational2int"), _rational(rate))
    return spec


def _rational(rate: float) -> tuple[int, int]:
    for den in (1, 1001, 100, 1000):
        num = rate * den
        if abs(num - round(num)) < 1e-3:
            return int(round(num)), den
    return int(round(rate * 1000)), 1000


def output_spec(
    template: oiio.ImageSpec,
    nchannels: int,
    channel_names: list[str],
    pixel_type: str,
    compression: str,
    path: str,
    attributes: Optional[Mapping[str, Union[str, int, float]]] = None,
    channel_types: Optional[Mapping[str, str]] = None,
) -> oiio.ImageSpec:
    """A spec for writing: the template's windows and metadata, our pixel type and compression.

    `channel_types`: a pixel type for some channels by name ("float" for a delta that must add back
    exactly); the others get `pixel_type`. EXR only.

    `attributes` are added to the header (voidlink's own, `voidlink:*`); the template's `voidlink:*`
    attributes are not copied, so a plate that was itself a voidlink result never lends its record.
    """
    spec = oiio.ImageSpec(template.width, template.height, nchannels, pixel_type)
    spec.x, spec.y, spec.z = template.x, template.y, template.z
    spec.full_x, spec.full_y = template.full_x, template.full_y
    spec.full_width, spec.full_height = template.full_width, template.full_height
    spec.channelnames = tuple(channel_names)
    if channel_types:
        spec.channelformats = tuple(oiio.TypeDesc(channel_types.get(name, pixel_type)) for name in channel_names)
    if "A" in channel_names:
        spec.alpha_channel = channel_names.index("A")
    for attr in template.extra_attribs:
        if not _FILE_ATTRIBUTES.match(attr.name) and attr.name != "name" and not attr.name.startswith(OWN_PREFIX):
            spec.attribute(attr.name, attr.type, attr.value)
    for name, value in (attributes or {}).items():
        spec.attribute(name, value)
    if path.lower().endswith(".exr"):
        spec.attribute("compression", compression)
    return spec


def temporary_path(path: str) -> str:
    folder, name = os.path.split(path)
    # Keep the real extension last: OpenImageIO picks the format from it.
    return os.path.join(folder, f".{name}.{os.getpid()}.{threading.get_ident()}.tmp{os.path.splitext(name)[1]}")


def _write_failed(path: str, why: str, size: int) -> Exception:
    """A failed write named for what it is: "disk full at <folder>" when the disk (or a quota) is full."""
    folder = os.path.dirname(path) or "."
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    if "no space left" in why.lower() or "quota" in why.lower() or (free is not None and free < size):
        return LimitExceeded(
            f"disk full at {folder}: cannot write {os.path.basename(path)} ({why}); free space there and run the "
            "job again (an earlier result there is kept whole)",
            reason="DISK_FULL",
            file=path,
        )
    return OSError(f"cannot write {path}: {why}")


def write_image(
    path: str,
    pixels: np.ndarray,
    spec: Optional[oiio.ImageSpec] = None,
    *,
    pixel_type: str = "half",
    compression: str = "zip",
    channel_names: Optional[list[str]] = None,
    attributes: Optional[Mapping[str, Union[str, int, float]]] = None,
) -> None:
    """Write atomically: a hidden temporary file in the same folder, then rename onto `path`.

    `attributes` go into the header when no `spec` is given (a given spec carries its own)."""
    pixels = np.ascontiguousarray(pixels, dtype=np.float32)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    h, w, c = pixels.shape
    if compression not in COMPRESSIONS:
        raise ValueError(f"unknown compression '{compression}' (choose {', '.join(COMPRESSIONS)})")
    if spec is None:
        spec = oiio.ImageSpec(w, h, c, pixel_type)
        names = channel_names or (["R", "G", "B", "A"][:c] if c > 1 else ["Y"])
        spec = output_spec(spec, c, names, pixel_type, compression, path, attributes)
    elif (spec.width, spec.height, spec.nchannels) != (w, h, c):
        raise ValueError(f"pixels {w}x{h}x{c} do not match the spec {spec.width}x{spec.height}x{spec.nchannels}")
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    temp = temporary_path(path)
    out = oiio.ImageOutput.create(path)
    if out is None:
        raise OSError(f"cannot write {path}: {oiio.geterror()}")
    try:
        if not out.open(temp, spec) or not out.write_image(pixels) or not out.close():
            raise _write_failed(path, out.geterror() or oiio.geterror(), pixels.nbytes)
        os.replace(temp, path)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _write_failed(path, exc.strerror or str(exc), pixels.nbytes) from None
        raise
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
