"""Sequence patterns and OTIO clips as the contract carries them."""

from __future__ import annotations

import pytest
from voidlink.protos.clips import SequencePattern, clip_json, clip_media, url_to_path


@pytest.mark.parametrize(
    "text, frame, expected",
    [
        ("/s/plate.####.exr", 1001, "/s/plate.1001.exr"),
        ("/s/plate.%04d.exr", 7, "/s/plate.0007.exr"),
        ("/s/plate.%d.exr", 7, "/s/plate.7.exr"),
        ("/s/v003/plate_v003.####.exr", 12, "/s/v003/plate_v003.0012.exr"),
        ("/s/plate.@@@.dpx", 5, "/s/plate.005.dpx"),
        ("C:\\shots\\plate.####.exr", 1001, "C:\\shots\\plate.1001.exr"),
        ("/s/plate.####.exr", -3, "/s/plate.-0003.exr"),
    ],
)
def test_patterns(text, frame, expected):
    assert SequencePattern.parse(text).path(frame) == expected


def test_single_at_discovers_padding_and_regex_matches_frames():
    pattern = SequencePattern.parse("/s/plate.@.exr")
    assert pattern.discover_padding
    assert pattern.regex().match("plate.1001.exr").group(1) == "1001"
    assert not SequencePattern.parse("/s/plate.####.exr").regex().match("plate.101.exr")
    assert SequencePattern.parse("/s/plate.exr") is None


def test_clip_round_trip_sequence_and_movie():
    media = clip_media(clip_json("/s/plate.####.exr", 1001, 1100, rate=25.0, name="sh010"))
    assert (media.path, media.first, media.last, media.rate, media.name) == (
        "/s/plate.####.exr", 1001, 1100, 25.0, "sh010"
    )
    movie = clip_media(clip_json("/s/take.mov"))
    assert movie.path == "/s/take.mov" and movie.first is None and movie.pattern is None


def test_bad_clips_name_the_field():
    with pytest.raises(ValueError, match="spec.mask.otio_json: not valid JSON at line 1 column 2"):
        clip_media("{", field="spec.mask.otio_json")
    with pytest.raises(ValueError, match="no clip given"):
        clip_media("  ")
    with pytest.raises(ValueError, match="empty"):
        clip_json("/s/a.####.exr", 10, 9)


def test_file_urls():
    assert url_to_path("file:///shows/a%20b.exr") == "/shows/a b.exr"
    assert url_to_path("file:///C:/shows/a.exr") == "C:/shows/a.exr"
