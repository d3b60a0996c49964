"""The daemon's bounds on a request, checked before any per-frame loop or allocation.

A request a million frames long, a prompt of megabytes, a clip's JSON the size of a film, or a
frame number near the int64 limit is refused at once with a named error (RESOURCE_EXHAUSTED, or
INVALID_ARGUMENT for a number no shot has), so SubmitJob stays O(files on disk) and one client's
request cannot starve another's.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from voidlink.media.sequence import MAX_FRAME_NUMBER, MAX_FRAMES, check_range
from voidlink.protos import pb

from voidlink.errors import InvalidInput, LimitExceeded

# T5 reads 226 tokens (about 1,000 characters): 8 KiB is far above any prompt and far below harm.
MAX_PROMPT_BYTES = 8 * 1024
MAX_CLIP_JSON_BYTES = 1024 * 1024
MAX_LABELS = 64
MAX_TEXT_BYTES = 64 * 1024  # a name, a label, a path template, a colour space
MAX_PAGE = 1000
# A matte job's prompts: clicks and boxes a person gives, outlines drawn or traced (the client holds the same).
MAX_PROMPTS = 1000
MAX_POINTS = 256  # points and boxes on one prompt
MAX_OUTLINE = 10_000  # vertices of one prompt's outline
MAX_AFFECTED_TEXT = 1000  # characters
MAX_GRID = 4096  # pixels of the affected proposal's grid cells

# The daemon's RPC threads: each open stream (a watch, an upload) holds one while it lasts, and threads
# that wait cost little, so there are enough for a studio's open panels and Nuke sessions.
DEFAULT_RPC_THREADS = 64
# Threads of the daemon's RPC pool that streams never take: a GetInfo, a cancel or a submit always finds one.
UNARY_THREADS = 8

__all__ = [
    "MAX_FRAMES",
    "MAX_FRAME_NUMBER",
    "MAX_PAGE",
    "StreamSlots",
    "check_matte",
    "check_page",
    "check_range",
    "check_spec",
]


class StreamSlots:
    """The streaming calls (WatchJob, UploadFrames, DownloadResult) the daemon serves at once. Each holds
    one RPC thread for as long as it lasts, idle or not, so together they stay below the thread count
    (`UNARY_THREADS` are left for the other calls), and where tokens name the callers no one token may
    hold more than half of them: one user's open watches or stalled uploads cannot stop the daemon
    answering the rest. A stream past either bound is refused at once (RESOURCE_EXHAUSTED, STREAMS_BUSY)."""

    def __init__(self, threads: int, shared: bool) -> None:
        """`threads`: the RPC pool's; `shared`: whether callers are told apart (a daemon with tokens)."""
        self.total = max(1, threads - UNARY_THREADS)
        self.per_caller = max(1, self.total // 2) if shared else self.total
        self._lock = threading.Lock()
        self._open = 0
        self._by_caller: dict[str, int] = {}

    @contextmanager
    def hold(self, caller: str, call: str) -> Iterator[None]:
        with self._lock:
            mine = self._by_caller.get(caller, 0)
            if self._open >= self.total or mine >= self.per_caller:
                full = self._open >= self.total
                bound, whose = (self.total, "") if full else (self.per_caller, f" for one token ({caller})")
                raise LimitExceeded(
                    f"{call}: this daemon serves at most {bound} streams at once{whose}, and that many are open; "
                    "close watches or transfers you no longer need, or try again when one ends",
                    reason="STREAMS_BUSY",
                )
            self._open += 1
            self._by_caller[caller] = mine + 1
        try:
            yield
        finally:
            with self._lock:
                self._open -= 1
                left = self._by_caller[caller] - 1
                if left:
                    self._by_caller[caller] = left
                else:
                    del self._by_caller[caller]


def check_spec(spec: pb.JobSpec) -> None:
    """Refuse a spec beyond the bounds, naming the field; nothing is read from disk."""
    _text(spec.params.prompt, "spec.params.prompt", MAX_PROMPT_BYTES, "PROMPT_TOO_LONG")
    _text(spec.params.negative_prompt, "spec.params.negative_prompt", MAX_PROMPT_BYTES, "PROMPT_TOO_LONG")
    _text(spec.name, "spec.name", MAX_TEXT_BYTES, "TEXT_TOO_LONG")
    _text(spec.output.path_template, "spec.output.path_template", MAX_TEXT_BYTES, "TEXT_TOO_LONG")
    _text(spec.output.colorspace, "spec.output.colorspace", MAX_TEXT_BYTES, "TEXT_TOO_LONG")
    for name in ("source", "mask", "affected"):
        clip = getattr(spec, name)
        field = f"spec.{name}"
        _text(clip.otio_json, f"{field}.otio_json", MAX_CLIP_JSON_BYTES, "CLIP_TOO_LARGE")
        for attribute in ("channels", "part", "colorspace"):
            _text(getattr(clip, attribute), f"{field}.{attribute}", MAX_TEXT_BYTES, "TEXT_TOO_LONG")
        if len(clip.uploaded_frames) > MAX_FRAMES:
            raise LimitExceeded(
                f"{field}: {len(clip.uploaded_frames)} uploaded frames; a job takes at most {MAX_FRAMES:,}",
                reason="TOO_MANY_FRAMES",
                field=f"{field}.uploaded_frames",
            )
    if len(spec.labels) > MAX_LABELS:
        raise LimitExceeded(
            f"spec.labels: {len(spec.labels)} labels; a job takes at most {MAX_LABELS}",
            reason="TOO_MANY_LABELS",
            field="spec.labels",
        )
    for key, value in spec.labels.items():
        _text(key, "spec.labels", MAX_TEXT_BYTES, "TEXT_TOO_LONG")
        _text(value, f"spec.labels[{key[:40]}]", MAX_TEXT_BYTES, "TEXT_TOO_LONG")
    if spec.HasField("frames"):
        check_range(int(spec.frames.first), int(spec.frames.last), "spec.frames")
    if spec.HasField("matte"):
        check_matte(spec.matte)


def check_matte(matte: pb.MatteParams) -> None:
    """A matte job's prompts and words within bounds, naming the field (what they say is checked on disk later)."""
    field = "spec.matte"
    _text(matte.tracker, f"{field}.tracker", MAX_TEXT_BYTES, "TEXT_TOO_LONG")
    _text(matte.affected_template, f"{field}.affected_template", MAX_TEXT_BYTES, "TEXT_TOO_LONG")
    _text(matte.affected_text, f"{field}.affected_text", MAX_PROMPT_BYTES, "PROMPT_TOO_LONG")
    if len(matte.affected_text) > MAX_AFFECTED_TEXT:
        raise LimitExceeded(
            f"{field}.affected_text is {len(matte.affected_text):,} characters; at most {MAX_AFFECTED_TEXT:,}",
            reason="PROMPT_TOO_LONG",
            field=f"{field}.affected_text",
        )
    if not 0 <= matte.affected_grid <= MAX_GRID:
        raise InvalidInput(
            f"{field}.affected_grid: {matte.affected_grid} is not a cell size of 0 to {MAX_GRID} pixels",
            reason="BAD_VALUE",
            field=f"{field}.affected_grid",
        )
    if len(matte.prompts) > MAX_PROMPTS:
        raise LimitExceeded(
            f"{field}.prompts: {len(matte.prompts):,} prompts; a matte job takes at most {MAX_PROMPTS:,}",
            reason="TOO_MANY_PROMPTS",
            field=f"{field}.prompts",
        )
    for index, prompt in enumerate(matte.prompts):
        where = f"{field}.prompts[{index}]"
        if len(prompt.points) + len(prompt.boxes) > MAX_POINTS:
            raise LimitExceeded(
                f"{where} (frame {prompt.frame}): {len(prompt.points)} points and {len(prompt.boxes)} boxes; "
                f"a prompt takes at most {MAX_POINTS} of them together",
                reason="TOO_MANY_POINTS",
                field=f"{where}.points",
                frame=prompt.frame,
            )
        if len(prompt.outline) > MAX_OUTLINE:
            raise LimitExceeded(
                f"{where} (frame {prompt.frame}): an outline of {len(prompt.outline):,} points; "
                f"at most {MAX_OUTLINE:,}",
                reason="TOO_MANY_POINTS",
                field=f"{where}.outline",
                frame=prompt.frame,
            )


def check_page(size: int) -> None:
    if size < 0:
        raise InvalidInput(f"page_size {size} is negative", reason="BAD_VALUE", field="page_size")
    if size > MAX_PAGE:
        raise LimitExceeded(
            f"page_size {size} is over {MAX_PAGE}; ask for pages of at most {MAX_PAGE} jobs",
            reason="PAGE_TOO_LARGE",
            field="page_size",
        )


def _text(value: str, field: str, limit: int, reason: str) -> None:
    if "\x00" in value:
        raise InvalidInput(f"{field} holds a NUL character", reason="BAD_TEXT", field=field)
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise LimitExceeded(
            f"{field} is {size:,} bytes; the daemon takes at most {limit:,}", reason=reason, field=field
        )
