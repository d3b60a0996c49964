"""Uploads that read, hash and send in one pipeline (`Client.upload_paths`)."""

from __future__ import annotations

import hashlib
import shutil
import threading
from pathlib import Path

import grpc
import pytest
from voidlink.bridge import Client
from voidlink.protos import pb, rpc
from voidlink.protos.wire import file_sha256


def _held(address: str, refs: list) -> list:
    stub = rpc.VoidLinkStub(grpc.insecure_channel(address))
    return list(stub.HasFrames(pb.HasFramesRequest(frames=refs)).frames)


def test_upload_paths_names_frames_by_content_sends_each_once_and_nothing_again(studio, tmp_path):
    daemon, _, shot = studio
    paths = sorted(str(p) for p in shot.folder.iterdir())
    twin = tmp_path / "twin.exr"
    shutil.copyfile(paths[0], twin)  # the same bytes under another name: sent once
    paths.append(str(twin))
    client = Client(daemon.address)
    client.chunk_bytes = 4096  # several chunks per frame
    refs = client.upload_paths(paths)
    assert [ref.sha256 for ref in refs] == [file_sha256(p) for p in paths]
    assert [ref.size for ref in refs] == [Path(p).stat().st_size for p in paths]
    unique = {ref.sha256: ref.size for ref in refs}
    assert client.stats.bytes_sent == sum(unique.values())
    assert all(s.present for s in _held(daemon.address, refs))
    sent = client.stats.bytes_sent
    assert [r.sha256 for r in client.upload_paths(paths)] == [r.sha256 for r in refs]
    assert client.stats.bytes_sent == sent  # the daemon holds them all: nothing is sent again


def test_upload_paths_sends_only_what_a_partial_copy_lacks(studio):
    daemon, _, shot = studio
    path = sorted(shot.folder.iterdir())[0]
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    half = len(data) // 2
    stub = rpc.VoidLinkStub(grpc.insecure_channel(daemon.address))
    list(stub.UploadFrames(iter([pb.FrameChunk(sha256=sha, size=len(data), offset=0, data=data[:half])])))
    client = Client(daemon.address)
    events = []
    (ref,) = client.upload_paths([str(path)], on_progress=events.append)
    assert ref.sha256 == sha and client.stats.bytes_sent == len(data) - half
    assert _held(daemon.address, [ref])[0].present
    assert events[-1].transfer.bytes_done == len(data) and events[-1].transfer.files_done == 1


def test_upload_paths_names_a_file_it_cannot_read(studio, tmp_path):
    daemon, _, shot = studio
    client = Client(daemon.address)
    with pytest.raises(FileNotFoundError):
        client.upload_paths([str(sorted(shot.folder.iterdir())[0]), str(tmp_path / "gone.exr")])


def test_a_corrupted_frame_sent_in_chunks_is_still_refused(studio):
    daemon, _, _ = studio
    stub = rpc.VoidLinkStub(grpc.insecure_channel(daemon.address))
    chunks = [pb.FrameChunk(sha256="b" * 64, size=30, offset=i * 10, data=b"y" * 10) for i in range(3)]
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.UploadFrames(iter(chunks)))
    assert "corrupted" in caught.value.details()
    assert not _held(daemon.address, [pb.FrameRef(sha256="b" * 64, size=30)])[0].present


def test_a_connection_that_breaks_mid_pipeline_is_resumed_and_every_frame_gets_in(studio, monkeypatch):
    from voidlink.bridge import upload

    daemon, _, shot = studio
    paths = sorted(str(p) for p in shot.folder.iterdir())
    client = Client(daemon.address)
    client.chunk_bytes = 4096
    made = upload.frame_chunk_bytes
    sent = [0]

    class Cut(grpc.RpcError):
        def code(self):
            return grpc.StatusCode.UNAVAILABLE

    def cut_after_some(*args):
        sent[0] += 1
        if sent[0] == 7:  # the network drops mid-frame, while later frames are still being hashed
            raise Cut()
        return made(*args)

    monkeypatch.setattr(upload, "frame_chunk_bytes", cut_after_some)
    refs = client.upload_paths(paths)
    assert [ref.sha256 for ref in refs] == [file_sha256(p) for p in paths]
    assert client.stats.resumes == 1
    assert all(s.present for s in _held(daemon.address, refs))


def test_a_refused_upload_ends_the_pipeline_with_the_daemons_reason(tmp_path, start_daemon, source_guard):
    from support.shots import write_shot

    from voidlink import errors

    shot = write_shot(tmp_path / "ws" / "sh040", frames=12)
    source_guard(shot.folder)
    frame = Path(shot.plate.replace("####", "1001")).stat().st_size
    small = start_daemon(max_upload_bytes=frame * 2)
    client = Client(small.address)
    client.chunk_bytes = 1024  # the reader is frames ahead, its queue full, when the daemon refuses
    with pytest.raises(errors.VoidlinkError) as caught:
        client.upload_paths(sorted(str(p) for p in shot.folder.iterdir()))
    assert caught.value.reason == "UPLOAD_TOO_LARGE"


def _shot_bytes(shot) -> int:
    return sum(p.stat().st_size for p in shot.folder.glob("[pm]*.exr"))


def test_start_submits_the_job_while_its_frames_go_up_and_sends_each_byte_once(studio, tmp_path, monkeypatch):
    from voidlink.bridge import build_spec, local_files, upload

    daemon, _, shot = studio
    client = Client(daemon.address)
    client.chunk_bytes = 4096
    spec = build_spec(shot.plate, shot.mask, backend="classical", output=tmp_path / "ws" / "o" / "c.####.exr")
    files = [path for frames in local_files.clip_frames(spec, client.plan_transfer(spec, "stream")).values()
             for _, path in frames]
    last_sha = file_sha256(files[-1])
    order: list[str] = []
    first_chunk = threading.Event()
    jobs_at_last_frame: list = []
    made, ahead = upload.frame_chunk_bytes, upload._hash_ahead

    def chunk(sha256, size, offset, data):
        if not first_chunk.is_set():
            order.append("first chunk sent")
            first_chunk.set()
        if sha256 == last_sha and offset == 0:
            jobs_at_last_frame.extend(job.state for job in client.jobs())
        return made(sha256, size, offset, data)

    def hash_last_after_first_chunk(paths, *rest):
        def walk():
            for i, path in enumerate(paths):
                if i == len(paths) - 1:  # a pipeline sends before it has hashed everything
                    first_chunk.wait(30)
                    order.append("last file hashed")
                yield path

        return ahead(walk(), *rest)

    monkeypatch.setattr(upload, "frame_chunk_bytes", chunk)
    monkeypatch.setattr(upload, "_hash_ahead", hash_last_after_first_chunk)
    job, plan = client.start(spec, "stream")
    assert order == ["first chunk sent", "last file hashed"]
    assert jobs_at_last_frame == [pb.JOB_STATE_UPLOADING]  # the job exists, waiting, before its last frame goes
    assert client.stats.bytes_sent == _shot_bytes(shot)  # every byte once, though each file was read twice
    assert client.finish(client.wait(job.id), plan).state == pb.JOB_STATE_SUCCEEDED


def test_a_job_the_daemon_refuses_ends_its_upload_with_the_reason_and_queues_nothing(studio, tmp_path):
    from voidlink.bridge import build_spec

    from voidlink import errors

    daemon, _, shot = studio
    client = Client(daemon.address)
    spec = build_spec(shot.plate, shot.mask, backend="classical", output=tmp_path / "ws" / "o" / "c.####.exr")
    spec.params.backend = "no-such-backend"
    with pytest.raises(errors.VoidlinkError) as caught:
        client.start(spec, "stream")
    assert "no-such-backend" in str(caught.value)
    assert client.stats.bytes_sent < _shot_bytes(shot)  # refused before the last frame went
    assert client.jobs() == []


def test_start_on_a_connection_cut_mid_upload_resumes_and_the_job_runs(studio, tmp_path, monkeypatch):
    from voidlink.bridge import build_spec, upload

    daemon, _, shot = studio
    client = Client(daemon.address)
    client.chunk_bytes = 4096
    made, sent = upload.frame_chunk_bytes, [0]

    class Cut(grpc.RpcError):
        def code(self):
            return grpc.StatusCode.UNAVAILABLE

    def cut_once(*args):
        sent[0] += 1
        if sent[0] == 7:
            raise Cut()
        return made(*args)

    monkeypatch.setattr(upload, "frame_chunk_bytes", cut_once)
    spec = build_spec(shot.plate, shot.mask, backend="classical", output=tmp_path / "ws" / "o" / "c.####.exr")
    job, plan = client.start(spec, "stream")
    assert client.stats.resumes == 1
    assert client.finish(client.wait(job.id), plan).state == pb.JOB_STATE_SUCCEEDED
    assert len(client.jobs()) == 1
