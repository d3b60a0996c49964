"""The contract's words: each enum of the proto and the word users, hosts and the daemon say for it.

One table per enum, read both ways by every side (the client's spec builder, the Nuke effect, the
CLI's choices, the daemon's pipeline and scheduler, `voidlink jobs`), so a word means one value
everywhere. A value the proto does not define (a newer client, or bytes that are not what the proto
says) is refused naming the field, never run as something else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

from voidlink.protos import pb

from voidlink.errors import InvalidInput


class Vocabulary:
    """An enum's values and their words; `default` is what the unspecified value (0) means."""

    def __init__(
        self,
        enum: str,
        words: Mapping[int, str],
        *,
        default: Optional[str] = None,
        aliases: Optional[Mapping[str, int]] = None,
        offered: Optional[tuple[str, ...]] = None,
    ) -> None:
        self.enum = enum
        self._words = dict(words)
        self._values = {word: value for value, word in self._words.items()}
        self._aliases = dict(aliases or {})
        self.default = default
        # The words a user is offered (CLI choices, a host's menu); others are read, not offered.
        self.offered = offered or tuple(self._words.values())

    def word(self, value: int, field: str = "") -> str:
        """The word for a value; 0 (unspecified) is the default's word. Refuses values the proto lacks."""
        if value == 0 and self.default is not None:
            return self.default
        try:
            return self._words[value]
        except KeyError:
            raise InvalidInput(
                f"{field or self.enum}: {value} is not a {self.enum} (choose {', '.join(self.offered)})",
                reason="UNKNOWN_ENUM_VALUE",
                field=field,
            ) from None

    def value(self, word: str, field: str = "") -> int:
        """The value for a word (case and surrounding blanks ignored); refuses unknown words naming the field."""
        key = (word or "").strip().lower()
        if not key and self.default is not None:
            key = self.default
        if key in self._values:
            return self._values[key]
        if key in self._aliases:
            return self._aliases[key]
        raise InvalidInput(
            f"{field or self.enum}: unknown {self.enum.lower()} '{word}' (choose {', '.join(self.offered)})",
            reason="BAD_VALUE",
            field=field,
        )

    def check(self, value: int, field: str) -> int:
        """`value` if the proto defines it (0 included); else InvalidInput naming the field."""
        self.word(value, field)
        return value

    @property
    def words(self) -> tuple[str, ...]:
        return tuple(self._words.values())


JOB_STATE = Vocabulary(
    "JobState",
    {
        pb.JOB_STATE_UNSPECIFIED: "unknown",
        pb.JOB_STATE_QUEUED: "queued",
        pb.JOB_STATE_RUNNING: "running",
        pb.JOB_STATE_SUCCEEDED: "succeeded",
        pb.JOB_STATE_FAILED: "failed",
        pb.JOB_STATE_CANCELLED: "cancelled",
        pb.JOB_STATE_UPLOADING: "uploading",
    },
)
TERMINAL = (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED)

# The matte value at which a pixel counts, when MatteOptions.threshold is 0 (unset): every side's default.
MATTE_THRESHOLD = 0.5

QUALITY = Vocabulary(
    "Quality",
    {pb.QUALITY_DRAFT: "draft", pb.QUALITY_BALANCED: "balanced", pb.QUALITY_BEST: "best"},
    default="balanced",
)

# CROP_MODE_WINDOW (one box per temporal window) is read but not offered: until a windowed backend asks
# for it, the daemon uses the shot-wide box, which contains every window's box. "full_frame" is the word
# the Nuke node saved before the words were one table.
CROP_MODE = Vocabulary(
    "CropMode",
    {
        pb.CROP_MODE_AUTO: "auto",
        pb.CROP_MODE_FULL_FRAME: "full",
        pb.CROP_MODE_SHOT: "shot",
        pb.CROP_MODE_WINDOW: "window",
    },
    default="auto",
    aliases={"full_frame": pb.CROP_MODE_FULL_FRAME},
    offered=("auto", "full", "shot"),
)

PIXEL_TYPE = Vocabulary(
    "PixelType",
    {
        pb.PIXEL_TYPE_UNSPECIFIED: "auto",
        pb.PIXEL_TYPE_HALF: "half",
        pb.PIXEL_TYPE_FLOAT: "float",
        pb.PIXEL_TYPE_UINT8: "uint8",
    },
    offered=("auto", "half", "float"),  # a removal's; 8-bit is for mattes (`MATTE_PIXEL_TYPES`)
)
MATTE_PIXEL_TYPES = ("uint8", "half", "float")

COMPRESSION = Vocabulary(
    "Compression",
    {pb.COMPRESSION_ZIP: "zip", pb.COMPRESSION_PIZ: "piz", pb.COMPRESSION_DWAA: "dwaa", pb.COMPRESSION_NONE: "none"},
    default="zip",
)


def state_name(state: int) -> str:
    """A job state's word ("queued", "running", ...); a state this side does not know reads "unknown"."""
    try:
        return JOB_STATE.word(state)
    except InvalidInput:
        return "unknown"
