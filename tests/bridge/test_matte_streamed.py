"""A matte job on a daemon that cannot see the plate: the frames go up, the matte, its affected proposal
and the quadmask come back beside the output, and the result names them where they landed."""

from __future__ import annotations

import os

from support.shots import frame_files, read_pixels
from voidlink.bridge import Client
from voidlink.protos import pb


def test_a_streamed_matte_job_brings_back_the_matte_the_proposal_and_the_quadmask(studio, tmp_path):
    daemon, _, shot = studio
    client = Client(daemon.address)
    out = tmp_path / "ws" / "mattes" / "obj.####.exr"
    size = max(6, shot.height // 5)
    x0, y0 = 8, shot.height // 3
    result = client.matte(
        shot.plate,
        boxes=[(shot.first, x0 - 1, y0 - 1, x0 + size + 1, y0 + size + 1)],
        propose_affected=True,
        tracker="classical",
        output=out,
        quadmask_output=tmp_path / "ws" / "mattes" / "quad.####.exr",
        transfer="stream",
    )
    assert result.state == "succeeded", result.message
    assert client.stats.bytes_sent > 0  # the daemon could not read the plate: it was uploaded
    local = str(tmp_path / "ws" / "mattes")
    for pattern in (result.output_pattern, result.affected_pattern, result.quadmask_pattern):
        assert pattern and pattern.startswith(local), (pattern, result)
        files = frame_files(pattern, shot.first, shot.last)
        assert all(os.path.isfile(f) for f in files), pattern
    assert result.output_pattern == str(out)
    assert result.quadmask_pattern == str(tmp_path / "ws" / "mattes" / "quad.####.exr")  # where it was asked for
    assert result.affected_pattern == str(tmp_path / "ws" / "mattes" / "obj_affected.####.exr")  # beside the matte
    first = read_pixels(str(frame_files(result.output_pattern, shot.first, shot.first)[0]))
    assert first.max() > 0  # the object's matte, not an empty frame
    job = client.get(result.job_id)
    assert job.state == pb.JOB_STATE_SUCCEEDED
