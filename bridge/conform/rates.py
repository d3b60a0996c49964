"""Editorial rates and the error a timeline that cannot be read raises."""

from __future__ import annotations

from fractions import Fraction
from typing import Optional

from voidlink.errors import InvalidInput

# Rates an editorial timeline uses; the NTSC ones are exact fractions so timecode maths is exact.
RATES = {
    "23.976": 24000 / 1001,
    "24": 24.0,
    "25": 25.0,
    "29.97": 30000 / 1001,
    "30": 30.0,
    "48": 48.0,
    "50": 50.0,
    "59.94": 60000 / 1001,
    "60": 60.0,
}


class TimelineError(InvalidInput):
    """A timeline that cannot be read; `file` names it and `line` (EDLs) the offending line."""

    def __init__(self, message: str, *, file: str = "", line: Optional[int] = None, reason: str = "BAD_TIMELINE"):
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {message}" if where else message, reason=reason, file=file)
        self.line = line


def parse_rate(text: str) -> float:
    """`23.976`, `24`, `29.97`, ... (or `30000/1001`) → the exact rate."""
    key = text.strip().rstrip("0").rstrip(".") if "." in text else text.strip()
    if key in RATES:
        return RATES[key]
    if key == "23.98":
        return RATES["23.976"]
    try:
        value = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        value = 0.0
    for rate in RATES.values():
        if value and abs(value - rate) < 0.01:
            return rate
    raise InvalidInput(f"unsupported rate '{text}' (choose {', '.join(RATES)})", reason="BAD_VALUE", field="rate")


def nearest_rate(value: float) -> float:
    """The editorial rate closest to `value` (OTIO files store 23.976 as 23.976023976...)."""
    return min(RATES.values(), key=lambda rate: abs(rate - value))


def is_drop_frame_rate(rate: float) -> bool:
    return abs(rate - RATES["29.97"]) < 1e-3 or abs(rate - RATES["59.94"]) < 1e-3
