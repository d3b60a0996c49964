"""Streams that break and hosts that stream: a cancel mid-upload, cut connections, a daemon restarting under
an upload, older daemons, and the panel, Nuke and conform on a daemon that cannot see their files."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import grpc
import pytest
from support.daemons import NARROW_WINDOWS
from support.shots import frame_files, write_shot
from voidlink.bridge import Client, build_spec
from voidlink.inference.daemon import Daemon
from voidlink.inference.security import SecurityConfig
from voidlink.protos import pb
from voidlink.protos.wire import frame_chunk_bytes


def test_a_job_cancelled_while_its_frames_upload_never_runs(studio, tmp_path):
    daemon, _, shot = studio
    client = Client(daemon.address)
    spec = build_spec(shot.plate, shot.mask, backend="classical", output=tmp_path / "o" / "c.####.exr")
    uploaded, files = client.hash_frames(spec, client.plan_transfer(spec, "stream"))
    job = client.submit(uploaded, upload_follows=True)
    assert job.state == pb.JOB_STATE_UPLOADING
    # The upload stops at a known point: two frames in, the rest still to come; then the cancel.
    client.upload_frames(files[:2], job=job)
    assert client.cancel(job.id).state == pb.JOB_STATE_CANCELLED
    client.upload_frames(files[2:])  # the rest arriving after the cancel must not start it
    final = client.wait(job.id)
    assert final.state == pb.JOB_STATE_CANCELLED and final.started_at == 0
    assert not any((daemon.data_dir / "transfers").iterdir())


def test_a_job_whose_frame_arrives_with_another_size_than_it_named_fails_naming_the_frame(studio, tmp_path):
    daemon, _, shot = studio
    client = Client(daemon.address)
    spec = build_spec(shot.plate, shot.mask, backend="classical", output=tmp_path / "o" / "c.####.exr")
    uploaded, files = client.hash_frames(spec, client.plan_transfer(spec, "stream"))
    told = pb.JobSpec()
    told.CopyFrom(uploaded)
    lied = told.source.uploaded_frames[-1]
    lied.size -= 1000  # under the bound it was counted against; the bytes that come are the real ones
    job = client.submit(told, upload_follows=True)
    assert job.state == pb.JOB_STATE_UPLOADING
    client.upload_frames(files)
    final = client.wait(job.id)
    assert final.state == pb.JOB_STATE_FAILED and final.started_at == 0
    assert final.error.reason == "BAD_SIZE" and f"uploaded frame {lied.frame}" in final.message
    assert not any((daemon.data_dir / "transfers").iterdir())


class CuttableProxy:
    """A TCP relay to the daemon whose connections the test cuts, as a dropped network would."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                near, _ = self.listener.accept()
            except OSError:
                return
            far = socket.create_connection(self.target)
            with self.lock:
                self.sockets += [near, far]
            for source, sink in ((near, far), (far, near)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(1 << 16):
                sink.sendall(data)
        except OSError:
            pass

    def cut(self) -> None:
        with self.lock:
            for sock in self.sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self.sockets = []

    def close(self) -> None:
        self.listener.close()
        self.cut()


def test_a_broken_result_download_resumes_with_the_files_that_arrived_whole(studio, tmp_path):
    daemon, _, shot = studio
    proxy = CuttableProxy(daemon.address)
    try:
        client = Client(proxy.address, channel_options=NARROW_WINDOWS)
        output = tmp_path / "ws" / "out" / "c.####.exr"
        cut_at: list[int] = []

        def cut(event: pb.JobEvent) -> None:
            if event.transfer.direction == "download" and event.transfer.files_done == 3 and not cut_at:
                cut_at.append(client.stats.bytes_received)
                proxy.cut()

        result = client.remove(shot.plate, shot.mask, backend="classical", output=output, on_progress=cut)
    finally:
        proxy.close()
    job = Client(daemon.address).get(result.job_id)
    folder = daemon.transfers.result_folder(job.spec)
    on_daemon = sorted(p for p in folder.rglob("*") if p.is_file())
    here = [output.parent / p.relative_to(folder) for p in on_daemon]
    assert len(here) == 10 and [p.read_bytes() for p in here] == [p.read_bytes() for p in on_daemon]
    total = sum(p.stat().st_size for p in on_daemon)
    # One break, and not a byte of the three files that had arrived whole was fetched again.
    assert client.stats.resumes == 1 and 0 < cut_at[0] < total
    assert client.stats.bytes_received == total
    assert daemon.downloads.last(job.id).bytes_reused == sum(p.stat().st_size for p in on_daemon[:3])
    assert not [p for p in output.parent.rglob("*") if ".part" in p.name]


def test_the_panel_shows_the_upload_and_gets_the_result_written_here(studio, tmp_path, qtbot):
    from voidlink.panel.service import JobService

    daemon, _, shot = studio
    service = JobService(daemon.address)
    output = tmp_path / "ws" / "panel" / "c.####.exr"
    events: list[pb.JobEvent] = []
    service.progress.connect(events.append)
    with qtbot.waitSignal(service.finished, timeout=60_000) as finished:
        service.submit(build_spec(shot.plate, shot.mask, backend="classical", output=output))
    job = finished.args[0]
    assert job.state == pb.JOB_STATE_SUCCEEDED and job.result.output_pattern == str(output)
    assert all(p.is_file() for p in frame_files(str(output), 1001, 1005))
    uploading = [e for e in events if e.state == pb.JOB_STATE_UPLOADING]
    assert uploading and uploading[-1].transfer.files_done == 10 and all(e.job_id == job.id for e in uploading)
    assert [e for e in events if e.transfer.direction == "download"][-1].transfer.files_done == 10
    service.close()


def test_the_panel_follows_a_job_by_looking_when_the_daemons_streams_are_taken(studio, tmp_path, qtbot, monkeypatch):
    from voidlink.panel.service import JobService

    from voidlink import errors

    daemon, _, shot = studio
    service = JobService(daemon.address)
    refused = []

    def busy(job_id, previews=False):
        refused.append(job_id)
        raise errors.LimitExceeded("WatchJob: this daemon serves at most 28 streams at once", reason="STREAMS_BUSY")
        yield

    monkeypatch.setattr(service.client, "watch", busy)
    output = tmp_path / "ws" / "o" / "c.####.exr"
    failures: list[str] = []
    service.failed.connect(failures.append)
    with qtbot.waitSignal(service.finished, timeout=60_000) as finished:
        service.submit(build_spec(shot.plate, shot.mask, backend="classical", output=output))
    job = finished.args[0]
    assert job.state == pb.JOB_STATE_SUCCEEDED and refused == [job.id] * len(refused) and refused
    assert failures == []  # no error shown: the panel keeps up by asking
    assert all(p.is_file() for p in frame_files(str(output), 1001, 1005))  # and still fetched the result here
    service.close()


def test_the_panel_streams_a_few_watches_and_asks_about_the_rest(studio, tmp_path, qtbot, monkeypatch):
    from voidlink.panel import service as panel_service

    daemon, _, shot = studio
    monkeypatch.setattr(panel_service, "WATCH_STREAMS", 0)  # its share used up by other jobs it follows
    service = panel_service.JobService(daemon.address)
    streamed = []
    watch = service.client.watch
    monkeypatch.setattr(service.client, "watch", lambda *a, **k: streamed.append(a) or watch(*a, **k))
    spec = build_spec(shot.plate, shot.mask, backend="classical", output=tmp_path / "ws" / "o" / "c.####.exr")
    with qtbot.waitSignal(service.finished, timeout=60_000) as finished:
        service.submit(spec)
    assert finished.args[0].state == pb.JOB_STATE_SUCCEEDED and streamed == []
    assert service._streams == 0
    service.close()


def test_a_job_waiting_for_its_frames_survives_a_daemon_restart(tmp_path, source_guard):
    shot = write_shot(tmp_path / "ws" / "sh050", frames=3, width=320, height=180)  # big enough to cut
    source_guard(shot.folder)
    (tmp_path / "studio").mkdir()
    security = SecurityConfig(roots=[str(tmp_path / "studio")])
    daemons = [Daemon(data_dir=tmp_path / "data", security=security, listen="127.0.0.1:0")]
    address = daemons[0].start()
    client = Client(address)
    client.chunk_bytes = 2048
    spec = build_spec(shot.plate, shot.mask, backend="classical", output=tmp_path / "ws" / "out" / "c.####.exr")

    def restart(event: pb.JobEvent) -> None:
        if len(daemons) == 1 and event.job_id and event.transfer.bytes_done > event.transfer.bytes_reused:
            daemons[0].stop(grace=0)  # mid-upload: the stream is cut at once and the job waits in the store
            daemons.append(Daemon(data_dir=tmp_path / "data", security=security, listen=address))
            daemons[1].start()

    try:
        job, plan = client.start(spec, "stream", restart)
        final = client.finish(client.wait(job.id), plan)
    finally:
        daemons[-1].stop(grace=1.0)
    assert len(daemons) == 2 and client.stats.resumes == 1
    assert final.state == pb.JOB_STATE_SUCCEEDED and final.attempts == 1
    assert all(p.is_file() for p in frame_files(str(tmp_path / "ws" / "out" / "c.####.exr"), 1001, 1003))


def test_upload_chunks_are_read_in_place_as_protobuf_reads_them(studio):
    from voidlink.protos.wire import parse_frame_chunk

    chunk = pb.FrameChunk(sha256="ab" * 32, size=5_000_000_000, offset=-1, data=bytes(range(256)) * 40)
    unknown = bytes([0x28, 0x07, 0x32, 0x02, 0x68, 0x69])  # fields 5 and 6 of a newer client: skipped
    view = parse_frame_chunk(unknown + chunk.SerializeToString())
    assert (view.sha256, view.size, view.offset, bytes(view.data)) == (chunk.sha256, chunk.size, -1, chunk.data)
    assert not view.malformed and parse_frame_chunk(chunk.SerializeToString()[:-3]).malformed
    # What the client sends is what protobuf reads, without building a message per chunk.
    for size, offset in ((5, 0), (7_300_000, 6_291_456), (5_000_000_000, 300)):
        sent = pb.FrameChunk.FromString(frame_chunk_bytes(chunk.sha256, size, offset, chunk.data))
        assert (sent.sha256, sent.size, sent.offset, sent.data) == (chunk.sha256, size, offset, chunk.data)

    daemon = studio[0]
    upload = grpc.insecure_channel(daemon.address).stream_stream(
        "/voidlink.v1.VoidLink/UploadFrames",
        request_serializer=lambda raw: raw,
        response_deserializer=pb.FrameAck.FromString,
    )
    with pytest.raises(grpc.RpcError) as caught:
        list(upload(iter([b"\x0a\xff"])))  # a length that runs past the end
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "not a FrameChunk" in caught.value.details()


def test_a_daemon_from_before_upload_follows_gets_the_frames_before_the_job(tmp_path, start_daemon, monkeypatch):
    from voidlink.inference.service import VoidLinkService

    submit = VoidLinkService.SubmitJob

    def older(self, request, context):
        request.upload_follows = False  # an older daemon does not know the field: it reads as unset
        return submit(self, request, context)

    monkeypatch.setattr(VoidLinkService, "SubmitJob", older)
    (tmp_path / "studio").mkdir()
    daemon = start_daemon(roots=[str(tmp_path / "studio")])
    shot = write_shot(tmp_path / "ws" / "sh060", frames=3)
    client = Client(daemon.address)
    events: list[pb.JobEvent] = []
    output = tmp_path / "ws" / "o" / "c.####.exr"
    result = client.remove(shot.plate, shot.mask, backend="classical", output=output, on_progress=events.append)
    assert result.state == "succeeded"
    assert client.stats.bytes_sent == sum(p.stat().st_size for p in shot.folder.glob("[pm]*.exr"))
    sending = [e for e in events if e.transfer.direction == "upload" and e.state == pb.JOB_STATE_UNSPECIFIED]
    assert sending and all(not e.job_id for e in sending)  # sent before the job existed
    assert not any(e.state == pb.JOB_STATE_UPLOADING for e in events)


def test_a_nuke_node_renders_on_a_daemon_that_cannot_see_the_script(studio, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "support" / "fakes"))
    import nuke  # the fake, as tests/hosts/test_nuke.py drives it
    from voidlink.hosts import nuke as void

    daemon, _, shot = studio
    nuke._reset(gui=False)
    plate = nuke.nodes.Read(file=shot.plate.replace("####", "%04d"), first=shot.first, last=shot.last)
    mask = nuke.nodes.Read(file=shot.mask, first=shot.first, last=shot.last)
    for node in (plate, mask):
        node.setSelected(True)
    nuke.scriptSave(str(tmp_path / "workstation" / "comp.nk"))
    group = void.create_node()
    group["backend"].setValue("classical")
    group["address"].setValue(daemon.address)
    result = void.render(group, on_progress=lambda line: None)
    with group:
        read = nuke.toNode("result")
    assert group["job_state"].value() == "succeeded" and str(tmp_path / "workstation") in read["file"].value()
    assert all(Path(read["file"].value() % f).is_file() for f in range(result.first, result.last + 1))
    assert daemon.info().cache_bytes > 0  # the frames went over gRPC


def test_conform_streams_each_event_to_a_daemon_that_cannot_see_the_plates(studio, tmp_path, capsys):
    import opentimelineio as otio
    from support.conform import otio_cut, plates

    from voidlink.cli.conform import main

    daemon = studio[0]
    root = plates(tmp_path / "workstation" / "plates", ["B001C001", "B001C003"])
    source = tmp_path / "workstation" / "cut.otio"
    otio.adapters.write_to_file(otio_cut(root), str(source))
    out = tmp_path / "workstation" / "out" / "cut_void.otio"
    args = [str(source), "--media-root", str(root), "-o", str(out), "--address", daemon.address, "--no-start"]
    main([*args, "--json"])
    status = {event["clip"]: event["status"] for event in json.loads(capsys.readouterr().out)["events"]}
    assert status["B001C001"] == status["B001C003"] == "done"
    for clip in otio.adapters.read_from_file(str(out)).find_clips():
        if clip.name.endswith("_void"):
            ref = clip.media_reference
            files = sorted(Path(ref.target_url_base).glob(f"{ref.name_prefix}*{ref.name_suffix}"))
            assert str(tmp_path / "workstation") in ref.target_url_base
            assert len(files) == ref.number_of_images_in_sequence()
    assert daemon.info().cache_bytes > 0  # the plates went over gRPC
