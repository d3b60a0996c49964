"""Results streamed back as FileChunk wire bytes made once (`wire.file_chunk_bytes`) and read in place
(`wire.split_file_chunk`): what protobuf reads, still checked by hash, read ahead by the daemon and
received ahead by the client."""

from __future__ import annotations

import hashlib
import threading

import grpc
import pytest
from voidlink.bridge import Client, build_spec
from voidlink.inference import downloads
from voidlink.protos import pb, rpc
from voidlink.protos.wire import file_chunk_bytes, split_file_chunk

from voidlink import errors

HEADER = pb.FileChunk(
    relative_path="quadmask/q.1001.exr",
    kind="quadmask",
    frame=1001,
    size=7_300_000,
    offset=6_291_456,
    sha256="c" * 64,
    files_total=20,
    bytes_total=5_000_000_000,
)


def test_file_chunk_wire_bytes_are_the_message_and_are_read_in_place():
    data = bytes(range(256)) * 40
    raw = file_chunk_bytes(HEADER.SerializeToString(), data)
    whole = pb.FileChunk.FromString(raw)
    expected = pb.FileChunk()
    expected.CopyFrom(HEADER)
    expected.data = data
    assert whole == expected  # a generated client reads the same message
    fields, view = split_file_chunk(raw)
    assert pb.FileChunk.FromString(fields) == HEADER and bytes(view) == data
    assert view.obj is raw  # a view into what arrived, not a copy
    with pytest.raises(ValueError):
        split_file_chunk(raw[:-5])
    with pytest.raises(ValueError):
        split_file_chunk(b"\x0f")  # wire type 7


@pytest.fixture
def streamed_job(studio, tmp_path):
    daemon, _, shot = studio
    client = Client(daemon.address)
    spec = build_spec(shot.plate, shot.mask, backend="classical", output=tmp_path / "ws" / "out" / "c.####.exr")
    job, plan = client.start(spec, "stream")
    job = client.wait(job.id)
    assert job.state == pb.JOB_STATE_SUCCEEDED
    return daemon, client, job, plan, tmp_path


def test_a_generated_client_reads_the_streamed_result_and_each_file_matches_its_hash(streamed_job):
    daemon, client, job, plan, tmp_path = streamed_job
    stub = rpc.VoidLinkStub(grpc.insecure_channel(daemon.address))
    files: dict[str, bytearray] = {}
    hashes = {}
    for chunk in stub.DownloadResult(pb.DownloadResultRequest(job_id=job.id)):
        files.setdefault(chunk.relative_path, bytearray()).extend(chunk.data)
        if chunk.sha256:
            hashes[chunk.relative_path] = chunk.sha256
    assert len(files) == 10 and set(hashes) == set(files)
    assert all(hashlib.sha256(data).hexdigest() == hashes[name] for name, data in files.items())
    local = client.finish(job, plan)
    fetched = sorted(p for p in (tmp_path / "ws" / "out").rglob("*") if p.is_file())
    assert len(fetched) == 10 and local.result.output_pattern.endswith("c.####.exr")
    assert sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in fetched) == sorted(hashes.values())
    assert_receivers_ended()


def assert_receivers_ended() -> None:
    """The thread that received a download's chunks ahead of the writing is gone once the download is."""
    for thread in threading.enumerate():
        if thread.name == "voidlink-download-receive":
            thread.join(timeout=30)  # a bound, should it hang; it ends at its next chunk or the stream's end
            assert not thread.is_alive()


def test_a_chunk_damaged_on_the_way_is_refused_and_nothing_is_put_in_place(streamed_job, monkeypatch):
    _, client, job, plan, tmp_path = streamed_job
    made = downloads.wire.file_chunk_bytes

    def damaged(header: bytes, data: bytes) -> bytes:
        return made(header, data[:-1] + bytes([data[-1] ^ 1]) if data else data)

    monkeypatch.setattr(downloads.wire, "file_chunk_bytes", damaged)  # the daemon runs in this process
    with pytest.raises(errors.VoidlinkError) as caught:
        client.finish(job, plan)
    assert caught.value.reason == "HASH_MISMATCH"
    assert not [p for p in (tmp_path / "ws").rglob("*") if p.is_file()]
    assert_receivers_ended()  # the stream was cut short: its receiving thread is not left waiting


def test_a_daemon_that_takes_small_messages_still_takes_uploads_and_streams_results_back(start_daemon, tmp_path):
    from support.shots import write_shot

    # --max-message 64K: every plate is larger than one message, so each travels in several chunks both ways.
    (tmp_path / "studio").mkdir()
    daemon = start_daemon(max_message_bytes=64 * 1024, roots=[str(tmp_path / "studio")])
    shot = write_shot(tmp_path / "workstation" / "sh020", frames=3, width=320, height=240)
    plates = sorted(p for p in shot.folder.iterdir() if p.name.startswith("plate"))
    assert plates and min(p.stat().st_size for p in plates) > 64 * 1024
    client = Client(daemon.address)
    assert client.upload_chunk_bytes() < 64 * 1024 <= client.chunk_bytes
    out = tmp_path / "ws" / "out" / "c.####.exr"
    job, plan = client.start(
        build_spec(shot.plate, shot.mask, backend="classical", quality="draft", output=out), "stream"
    )
    job = client.wait(job.id)
    assert job.state == pb.JOB_STATE_SUCCEEDED, job.message
    assert client.stats.bytes_sent >= sum(p.stat().st_size for p in plates)
    local = client.finish(job, plan)
    fetched = sorted((tmp_path / "ws" / "out").glob("c.*.exr"))
    assert [p.name for p in fetched] == ["c.1001.exr", "c.1002.exr", "c.1003.exr"]
    folder = daemon.transfers.result_folder(job.spec)
    assert all(p.read_bytes() == (folder / p.name).read_bytes() for p in fetched)  # whole, as the daemon wrote them
    assert local.result.output_pattern.endswith("c.####.exr")
