"""A result streamed back from a daemon that cannot see this machine's folders lands here only where
voidlink may write: never over the job's own plates, over another program's files only when asked."""

from __future__ import annotations

import os
import shutil

import numpy as np
import OpenImageIO as oiio
import pytest
from support.shots import frame_files
from voidlink.bridge import Client, build_spec
from voidlink.bridge.ownership import job_of
from voidlink.media.image import job_of as media_job_of
from voidlink.protos import pb

from voidlink import errors


def _foreign_exr(path) -> bytes:
    out = oiio.ImageOutput.create(str(path))
    out.open(str(path), oiio.ImageSpec(8, 8, 3, "half"))
    out.write_image(np.full((8, 8, 3), 0.25, np.float32))
    out.close()
    return path.read_bytes()


def test_a_streamed_result_never_lands_on_the_jobs_own_plates(studio):
    daemon, _, shot = studio
    client = Client(daemon.address)
    before = {p: p.read_bytes() for p in shot.folder.iterdir()}
    with pytest.raises(errors.PermissionDenied) as caught:
        client.remove(shot.plate, shot.mask, backend="classical", output=shot.plate, transfer="stream", overwrite=True)
    assert caught.value.reason == "OUTPUT_OVERWRITES_SOURCE" and "never written" in str(caught.value)
    assert client.jobs() == [] and client.stats.bytes_sent == 0  # refused before anything went
    assert {p: p.read_bytes() for p in shot.folder.iterdir()} == before


def test_a_streamed_result_refuses_another_programs_file_unless_told_and_replaces_its_own(studio, tmp_path):
    daemon, _, shot = studio
    client = Client(daemon.address)
    out = tmp_path / "ws" / "out" / "c.####.exr"
    out.parent.mkdir(parents=True)
    theirs = out.parent / "c.1003.exr"
    their_bytes = _foreign_exr(theirs)
    with pytest.raises(errors.OutputExists) as caught:
        client.remove(shot.plate, shot.mask, backend="classical", output=out, transfer="stream")
    assert caught.value.frame == 1003 and str(theirs) in str(caught.value)
    assert client.jobs() == [] and theirs.read_bytes() == their_bytes

    first = client.remove(shot.plate, shot.mask, backend="classical", output=out, transfer="stream", overwrite=True)
    assert first.state == "succeeded" and job_of(str(theirs)) == first.job_id
    # Once voidlink's, a later run replaces it without being told (as the daemon does with its own files).
    again = client.remove(shot.plate, shot.mask, backend="classical", output=out, transfer="stream")
    assert again.state == "succeeded" and all(job_of(str(p)) == again.job_id for p in frame_files(str(out), 1001, 1005))


def test_a_streamed_result_with_two_kinds_on_one_file_is_refused_before_anything_goes(studio, tmp_path):
    daemon, _, shot = studio
    client = Client(daemon.address)
    out = tmp_path / "ws" / "out" / "c.####.exr"
    earlier = client.remove(shot.plate, shot.mask, backend="classical", output=out, transfer="stream")
    before, sent = {p: p.read_bytes() for p in frame_files(str(out), 1001, 1005)}, client.stats.bytes_sent
    spec = build_spec(shot.plate, shot.mask, backend="classical", output=out)
    spec.output.quadmask_template = str(out)  # the daemon keeps the kinds apart; here they would land on one file
    with pytest.raises(errors.InvalidInput) as caught:
        client.start(spec, transfer="stream")
    assert caught.value.reason == "OUTPUTS_COLLIDE" and caught.value.frame == 1001
    assert "is named by 'output here' too" in str(caught.value)
    assert [job.id for job in client.jobs()] == [earlier.job_id] and client.stats.bytes_sent == sent
    assert {p: p.read_bytes() for p in frame_files(str(out), 1001, 1005)} == before


def test_a_foreign_file_appearing_while_the_job_runs_is_not_replaced_and_nothing_is(studio, tmp_path):
    daemon, _, shot = studio
    client = Client(daemon.address)
    out = tmp_path / "ws" / "out" / "c.####.exr"
    queued, plan = client.start(build_spec(shot.plate, shot.mask, backend="classical", output=out), "stream")
    job = client.wait(queued.id)
    out.parent.mkdir(parents=True, exist_ok=True)
    theirs = out.parent / "c.1005.exr"
    their_bytes = _foreign_exr(theirs)  # written by someone else after the job was accepted
    with pytest.raises(errors.OutputExists):
        client.finish(job, plan)
    assert theirs.read_bytes() == their_bytes
    assert sorted(p.name for p in out.parent.iterdir()) == ["c.1005.exr"]  # nothing else landed, no .part left


def test_the_header_reader_agrees_with_openimageio(tmp_path):
    for name in ("a.exr", "b.png"):
        path = tmp_path / name
        spec = oiio.ImageSpec(4, 4, 1, "uint8" if name.endswith("png") else "half")
        spec.attribute("voidlink:job", "job-1234")
        out = oiio.ImageOutput.create(str(path))
        out.open(str(path), spec)
        out.write_image(np.zeros((4, 4, 1), np.float32 if name.endswith("exr") else np.uint8))
        out.close()
        assert job_of(str(path)) == media_job_of(str(path)) == "job-1234"
        shutil.copyfile(path, tmp_path / f"cut-{name}")
        (tmp_path / f"cut-{name}").write_bytes(path.read_bytes()[:30])  # a damaged header is nobody's
        assert job_of(str(tmp_path / f"cut-{name}")) is None
    assert job_of(str(tmp_path / "missing.exr")) is None
    plain = tmp_path / "plain.exr"
    _foreign_exr(plain)
    assert job_of(str(plain)) is None


def test_an_unnamed_side_sequence_is_checked_where_the_daemon_would_put_it_before_the_job_runs(studio, tmp_path):
    daemon, _, shot = studio
    client = Client(daemon.address)
    out = tmp_path / "ws" / "out" / "c.####.exr"
    quadmask = out.parent / "quadmask" / "c_quadmask.1002.png"  # the default beside an output named c.####.exr
    quadmask.parent.mkdir(parents=True)
    quadmask.write_bytes(b"a picture someone else made")
    with pytest.raises(errors.OutputExists) as caught:
        client.remove(shot.plate, shot.mask, backend="classical", output=out, transfer="stream")
    assert caught.value.frame == 1002 and "quadmask here" in str(caught.value)
    assert client.jobs() == [] and quadmask.read_bytes() == b"a picture someone else made"


def _rerun_waiting_to_be_fetched(client: Client, shot, out):
    """An earlier result at `out`, and a rerun over it that has ended on the daemon, not fetched yet."""
    earlier = client.remove(shot.plate, shot.mask, backend="classical", output=out, transfer="stream")
    job, plan = client.start(build_spec(shot.plate, shot.mask, backend="classical", output=out), "stream")
    job = client.wait(job.id)
    assert job.state == pb.JOB_STATE_SUCCEEDED
    return earlier, job, plan, {p: p.read_bytes() for p in out.parent.rglob("*") if p.is_file()}


def test_a_rename_failing_midway_puts_the_earlier_result_back_whole(studio, tmp_path, monkeypatch):
    from voidlink.bridge import download

    daemon, _, shot = studio
    client = Client(daemon.address)
    out = tmp_path / "ws" / "out" / "c.####.exr"
    earlier, job, plan, before = _rerun_waiting_to_be_fetched(client, shot, out)
    real, renamed = os.replace, []

    def replace(source, target):
        if str(target).endswith("c.1003.exr") and ".voidlink-" in str(source) and ".part" in str(source):
            # As on Windows, where the host's Read holds the frame open: the third frame cannot be replaced.
            raise PermissionError(13, "The process cannot access the file", str(target))
        renamed.append(target)
        return real(source, target)

    monkeypatch.setattr(download.os, "replace", replace)
    with pytest.raises(PermissionError):
        client.finish(job, plan)
    monkeypatch.undo()
    assert any(str(t).endswith("c.1002.exr") for t in renamed)  # two frames had been put in place before it
    assert {p: p.read_bytes() for p in out.parent.rglob("*") if p.is_file()} == before  # and were put back
    assert all(job_of(str(p)) == earlier.job_id for p in frame_files(str(out), 1001, 1005))
    client.finish(job, plan)  # fetched again once the frame is free
    assert all(job_of(str(p)) == job.id for p in frame_files(str(out), 1001, 1005))


def test_a_result_stream_that_ends_early_replaces_nothing(studio, tmp_path, monkeypatch):
    from voidlink.inference import downloads
    from voidlink.protos.wire import split_file_chunk

    daemon, _, shot = studio
    client = Client(daemon.address)
    out = tmp_path / "ws" / "out" / "c.####.exr"
    _, job, plan, before = _rerun_waiting_to_be_fetched(client, shot, out)
    stream = downloads.Downloads.stream

    def short(self, *args, **kwargs):
        names = set()
        for chunk in stream(self, *args, **kwargs):
            raw = chunk if isinstance(chunk, bytes) else chunk.SerializeToString()
            names.add(pb.FileChunk.FromString(split_file_chunk(raw)[0]).relative_path)
            if len(names) > 2:
                return  # a clean end after two whole files (a fault in the daemon, a proxy cutting it short)
            yield chunk

    monkeypatch.setattr(downloads.Downloads, "stream", short)
    with pytest.raises(errors.VoidlinkError) as caught:
        client.finish(job, plan)
    assert caught.value.reason == "INCOMPLETE" and "ended after 2 of its" in str(caught.value)
    assert {p: p.read_bytes() for p in out.parent.rglob("*") if p.is_file()} == before
