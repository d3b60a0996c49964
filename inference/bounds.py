"""The daemon's bounds on a request, checked before any per-frame loop or allocation.

A request a million frames long, a prompt of megabytes, a clip's JSON the size of a film, or a
frame number near the int64 limit is refused at once with a named error (RESOURCE_EXHAUSTED, or
INVALID_ARGUMENT for a number no shot has), so SubmitJob stays O(files on disk) and one client's
request cannot starve another's.
"""

from __future__ import annotations

from voidlink.media.sequence import MAX_FRAME_NUMBER, MAX_FRAMES, check_range
from voidlink.protos import pb

from voidlink.errors import InvalidInput, LimitExceeded

# T5 reads 226 tokens (about 1,000 characters): 8 KiB is far above any prompt and far below harm.
MAX_PROMPT_BYTES = 8 * 1024
MAX_CLIP_JSON_BYTES = 1024 * 1024
MAX_LABELS = 64
MAX_TEXT_BYTES = 64 * 1024  # a name, a label, a path template, a colour space
MAX_PAGE = 1000

__all__ = ["MAX_FRAMES", "MAX_FRAME_NUMBER", "MAX_PAGE", "check_page", "check_range", "check_spec"]


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
