"""The quadmask checks: each fires on a quadmask made to fail it, and none on a clean one."""

from __future__ import annotations

import numpy as np
from voidlink.inference.synthetic import make_frame
from voidlink.media.quadmask_checks import Finding, check_quadmask, check_sequence

W, H = 160, 96


def clean(t: int = 5, frames: int = 12) -> np.ndarray:
    return make_frame("shadow", W, H, t, frames=frames).quadmask


def checks(findings: list[Finding]) -> set[str]:
    return {f.check for f in findings}


def test_a_clean_quadmask_and_shot_have_no_findings():
    assert check_quadmask(clean(), 1005) == []
    assert check_sequence((1001 + t, clean(t)) for t in range(12)) == []


def test_stray_greys_are_counted_and_a_soft_matte_is_an_error():
    q = clean()
    q[0, :10] = 200
    (finding,) = check_quadmask(q, 1005)
    assert finding.check == "stray_grey" and finding.severity == "warning" and finding.frame == 1005
    assert "frame 1005" in finding.message and "10 pixels" in finding.message
    soft = np.linspace(0, 255, W * H).reshape(H, W).astype(np.uint8)
    assert any(f.check == "stray_grey" and f.severity == "error" for f in check_quadmask(soft, 3))


def test_an_empty_frame_is_reported():
    (finding,) = check_quadmask(np.full((H, W), 255, np.uint8), 1010)
    assert finding.check == "empty" and "frame 1010" in finding.message


def test_an_object_touching_the_edge_is_reported():
    q = np.full((H, W), 255, np.uint8)
    q[40:60, 0:20] = 0
    assert checks(check_quadmask(q, 7)) == {"edge"}
    q[:, 0] = 255
    assert check_quadmask(q, 7) == []


def test_an_affected_region_cut_around_the_object_misses_the_overlap():
    q = clean()
    assert (q == 63).any()
    cut = q.copy()
    cut[cut == 63] = 0  # the shadow matte was cut out around the object: no 63 left where they meet
    (finding,) = check_quadmask(cut, 1005)
    assert finding.check == "overlap" and finding.severity == "warning" and "63" in finding.message
    apart = np.full((H, W), 255, np.uint8)
    apart[20:40, 20:40] = 0
    apart[60:80, 60:80] = 127  # an affected region away from the object has no seam to mark
    assert check_quadmask(apart, 1) == []


def test_affected_without_the_object_is_a_warning():
    q = np.full((H, W), 255, np.uint8)
    q[30:50, 30:50] = 127
    (finding,) = check_quadmask(q, 12)
    assert finding.check == "affected_without_object" and finding.severity == "warning"
    # Reading a float matte of the same values gives the same finding.
    assert checks(check_quadmask(q.astype(np.float32) / 255.0, 12)) == {"affected_without_object"}


def test_the_object_area_jumping_between_frames_is_reported_on_its_frame_and_the_shot():
    shot = [(1001 + t, clean(t)) for t in range(12)]
    jumped = np.full((H, W), 255, np.uint8)
    jumped[40:43, 60:90] = 0  # the matte lost most of the object on this frame
    shot[6] = (1007, jumped)
    findings = check_sequence(shot)
    per_frame = [f for f in findings if f.check == "area_jump" and f.frame is not None]
    assert {f.frame for f in per_frame} == {1007, 1008}
    (shot_level,) = [f for f in findings if f.check == "area_jump" and f.frame is None]
    assert "1007" in shot_level.message and "1008" in shot_level.message
