"""A daemon that does not see the client's folders: frames over gRPC, the frame cache, path mapping."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from support.daemons import NARROW_WINDOWS, wait_for
from support.faults import send_after_submit
from support.shots import frame_files, read_pixels, write_shot
from voidlink.bridge import Client, build_spec, upload
from voidlink.bridge.pathmap import PathMap, PathPair
from voidlink.protos import pb, rpc
from voidlink.protos.wire import file_sha256

from voidlink import errors

# -- path mapping -----------------------------------------------------------------------------


def test_path_map_forms_both_ways():
    pairs = [
        PathPair("P:\\shows", "/mnt/shows"),
        PathPair("\\\\nas\\shows", "/mnt/shows"),
        PathPair("/Volumes/shows", "/mnt/shows", "macos"),
        PathPair("/Volumes/shows/sh010/renders", "/mnt/renders/sh010"),
    ]
    windows = PathMap(pairs, client_os="windows")
    assert windows.to_daemon("P:\\shows\\sh010\\plate.####.exr") == "/mnt/shows/sh010/plate.####.exr"
    assert windows.to_daemon("p:/Shows/sh010/plate.####.exr") == "/mnt/shows/sh010/plate.####.exr"
    assert windows.to_daemon("\\\\NAS\\shows\\sh020\\a.exr") == "/mnt/shows/sh020/a.exr"
    assert windows.to_daemon("P:\\showsX\\a.exr") == "P:\\showsX\\a.exr"  # a folder boundary, not a prefix
    assert windows.to_client("/mnt/shows/sh010/void/clean.####.exr") == "P:\\shows\\sh010\\void\\clean.####.exr"
    assert windows.to_client("/mnt/other/x.exr") == "/mnt/other/x.exr"

    mac = PathMap(pairs, client_os="macos")
    assert mac.to_daemon("/Volumes/shows/sh010/plate.1001.exr") == "/mnt/shows/sh010/plate.1001.exr"
    assert mac.to_daemon("/Volumes/shows/sh010/renders/v1/a.exr") == "/mnt/renders/sh010/v1/a.exr"  # longest wins
    assert mac.to_client("/mnt/renders/sh010/v1/a.exr") == "/Volumes/shows/sh010/renders/v1/a.exr"

    linux = PathMap(pairs, client_os="linux")  # the macOS-only pair is not for it
    assert linux.to_daemon("/Volumes/shows/sh010/a.exr") == "/Volumes/shows/sh010/a.exr"

    linux_to_windows = PathMap([("/mnt/shows", "S:\\shows")], client_os="linux")
    assert linux_to_windows.to_daemon("/mnt/shows/sh010/a.exr") == "S:\\shows\\sh010\\a.exr"
    assert linux_to_windows.to_client("s:/shows/sh010/b.exr") == "/mnt/shows/sh010/b.exr"


def test_path_map_configuration(tmp_path, monkeypatch):
    monkeypatch.setenv("VOIDLINK_PATH_MAP", "P:\\shows=/mnt/shows; /Volumes/shows=/mnt/shows")
    config = tmp_path / "studio.json"
    config.write_text(json.dumps({"path_map": [{"client": "/home/me/shows", "daemon": "/mnt/shows", "os": "linux"}]}))
    monkeypatch.setenv("VOIDLINK_CONFIG", str(config))
    assert PathMap.from_environment("windows").to_daemon("P:\\shows\\a") == "/mnt/shows/a"
    assert PathMap.from_environment("macos").to_daemon("/Volumes/shows/a") == "/mnt/shows/a"
    assert PathMap.from_environment("linux").to_client("/mnt/shows/a") == "/home/me/shows/a"
    monkeypatch.setenv("VOIDLINK_PATH_MAP", "P:\\shows")
    with pytest.raises(errors.InvalidInput, match=r"'P:\\shows' is not CLIENT_FOLDER=DAEMON_FOLDER"):
        PathMap.from_environment()
    monkeypatch.delenv("VOIDLINK_PATH_MAP")
    config.write_text(json.dumps({"path_map": [{"client": "/x"}]}))
    with pytest.raises(errors.InvalidInput, match=r"path_map\[0\] must be"):
        PathMap.from_environment()


def test_path_mapping_through_a_real_daemon(studio, tmp_path):
    daemon, root, _ = studio
    shot = write_shot(root / "shows" / "sh020", frames=3)
    # A Windows workstation sees the studio's storage as P:\shows.
    client = Client(daemon.address, path_map=PathMap([("P:\\shows", str(root / "shows"))], client_os="windows"))
    plate, mask = "P:\\shows\\sh020\\plate.####.exr", "P:\\shows\\sh020\\mask.####.exr"
    assert [p.usable for p in client.probe([plate, mask])] == [True, True]
    assert client.plan_transfer(build_spec(plate, mask)).mode == "shared"
    # Neither side sees this plate: it stays a path, and the daemon's error names it.
    assert client.plan_transfer(build_spec("P:\\shows\\nope\\plate.####.exr", mask)).mode == "shared"

    result = client.remove(plate, mask, prompt="a wall", backend="classical")
    assert result.output_pattern == "P:\\shows\\sh020\\void\\plate_void.####.exr"
    assert all(
        p.is_file() for p in frame_files(str(root / "shows" / "sh020" / "void" / "plate_void.####.exr"), 1001, 1003)
    )
    job = client.get(result.job_id)
    assert "P:\\\\shows\\\\sh020" in job.spec.source.otio_json or "P:\\shows\\sh020" in job.spec.source.otio_json
    assert str(root) not in job.spec.output.path_template and str(root) not in result.otio_json
    assert result.otio_clip().media_reference.target_url_base == "P:\\shows\\sh020\\void\\"

    # Errors name the file the way this client knows it.
    with pytest.raises(errors.NotFound) as caught:
        client.submit(build_spec(plate, "P:\\shows\\sh020\\roto.####.exr"))
    assert caught.value.file == "P:\\shows\\sh020\\roto.####.exr" and caught.value.file in str(caught.value)
    assert shot.first == 1001


# -- frames over gRPC -------------------------------------------------------------------------


def test_streamed_job_matches_the_shared_storage_job_and_resubmits_nothing(studio, tmp_path):
    daemon, root, shot = studio
    client = Client(daemon.address)

    # The reference: the same frames on storage the daemon sees.
    shared = root / "sh010"
    shutil.copytree(shot.folder, shared)
    reference = client.remove(
        str(shared / "plate.####.exr"), str(shared / "mask.####.exr"), str(shared / "shadow.####.exr"),
        prompt="a wall", backend="classical", transfer="auto",
    )  # fmt: skip
    assert client.stats.bytes_sent == 0

    spec = build_spec(shot.plate, shot.mask, shot.affected)
    plan = client.plan_transfer(spec)
    assert plan.mode == "stream" and plan.upload == ["source", "mask", "affected"] and plan.stream_back
    assert "outside the folders this daemon may use" in plan.reasons[0]

    events: list[pb.JobEvent] = []
    output = tmp_path / "workstation" / "out" / "clean.####.exr"
    result = client.remove(
        shot.plate, shot.mask, shot.affected, prompt="a wall", backend="classical", output=output,
        on_progress=events.append,
    )  # fmt: skip
    frame_bytes = sum(p.stat().st_size for p in shot.folder.iterdir())
    assert client.stats.bytes_sent == frame_bytes and client.stats.frames_sent == 15
    assert result.output_pattern == str(output)
    for ours, theirs in zip(
        frame_files(str(output), shot.first, shot.last), frame_files(reference.output_pattern, 1001, 1005)
    ):
        assert np.array_equal(read_pixels(str(ours)), read_pixels(str(theirs)))
    assert sorted(p.name for p in (output.parent / "quadmask").iterdir()) == [
        f"clean_quadmask.{f}.png" for f in range(1001, 1006)
    ]
    assert not [p for p in output.parent.rglob("*") if ".part" in p.name]
    uploads = [e.transfer for e in events if e.HasField("transfer") and e.transfer.direction == "upload"]
    downloads = [e.transfer for e in events if e.HasField("transfer") and e.transfer.direction == "download"]
    assert uploads[-1].bytes_done == uploads[-1].bytes_total == frame_bytes and uploads[-1].files_done == 15
    assert downloads[-1].files_done == 10 and downloads[-1].bytes_done > 0
    first = next(iter(client.watch(result.job_id)))  # any watcher learns how the result's fetch went
    assert first.transfer.direction == "download" and first.transfer.files_done == first.transfer.files_total == 10
    assert first.transfer.bytes_done == first.transfer.bytes_total == downloads[-1].bytes_done

    # The same job again, and a second pass over the same plate: not one frame byte is sent.
    before = client.stats.bytes_sent
    again = client.remove(shot.plate, shot.mask, shot.affected, prompt="a wall", backend="classical", output=output)
    client.remove(shot.plate, shot.mask, prompt="a wall", backend="classical", output=tmp_path / "o2" / "x.####.exr")
    assert client.stats.bytes_sent == before
    shadow_bytes = sum(p.stat().st_size for p in shot.folder.glob("shadow.*"))
    assert client.stats.bytes_reused == 2 * frame_bytes - shadow_bytes
    assert again.state == "succeeded" and daemon.info().cache_bytes == frame_bytes
    # Uploaded inputs are released once the results are fetched; the cache keeps the frames.
    assert not any((daemon.data_dir / "transfers").iterdir())


def test_interrupted_upload_resumes_from_what_the_daemon_kept(studio, tmp_path, monkeypatch):
    daemon, _, shot = studio
    client = Client(daemon.address)
    client.chunk_bytes = 2048
    spec = build_spec(shot.plate, shot.mask, shot.affected, backend="classical", output=tmp_path / "o" / "c.####.exr")
    plan = client.plan_transfer(spec, "stream")
    total = sum(p.stat().st_size for p in shot.folder.iterdir())

    class Unplugged(Exception):
        pass

    acks = []
    file_pieces = upload._file_pieces

    def unplug(event: pb.JobEvent) -> None:
        if event.transfer.bytes_done > event.transfer.bytes_reused:
            acks.append(event.transfer.bytes_done)
        if len(acks) == 3:
            raise Unplugged  # the artist's machine drops off mid-frame

    # The sender holds the second half back until the drop is over: the break comes mid-upload however
    # fast the acknowledgements come back, not only when the client reads them before gRPC sent it all.
    held_back = threading.Event()
    read = [0]

    def first_half(path, size, offset, chunk_bytes):
        for data in file_pieces(path, size, offset, chunk_bytes):
            if read[0] >= total // 2:
                assert held_back.wait(60)
            read[0] += len(data)
            yield data

    with monkeypatch.context() as patched:
        patched.setattr(upload, "_file_pieces", first_half)
        with pytest.raises(Unplugged):
            client.upload_frames(client.hash_frames(spec, plan)[1], on_progress=unplug)
        held_back.set()  # the stream is cancelled and stopped: nothing more is sent or counted
    first_try = client.stats.bytes_sent
    assert 0 < first_try <= read[0] < total  # nothing sent that was not read, and the rest held back
    stub = rpc.VoidLinkStub(grpc.insecure_channel(daemon.address))
    refs = [pb.FrameRef(sha256=file_sha256(str(p)), size=p.stat().st_size) for p in sorted(shot.folder.iterdir())]

    def kept() -> int:  # bytes the daemon holds, whole frames and partial ones (offset == size when present)
        return sum(s.offset for s in stub.HasFrames(pb.HasFramesRequest(frames=refs)).frames)

    def settled() -> int:
        # Chunks in flight when the client dropped may still land: wait until the daemon's copy stops growing.
        before = kept()
        time.sleep(0.3)
        return before if kept() == before else 0

    held = wait_for(settled, timeout=10)
    assert acks[-1] <= held < total

    resumed = client.run(spec, transfer="stream")
    assert client.stats.bytes_sent - first_try == total - held  # only what the daemon lacked
    assert resumed.state == "succeeded"


def test_a_broken_stream_is_resumed_by_the_daemon_side_offsets(studio):
    daemon, _, shot = studio
    stub = rpc.VoidLinkStub(grpc.insecure_channel(daemon.address))
    path = Path(shot.plate.replace("####", "1001"))
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    half = len(data) // 2
    acks = list(stub.UploadFrames(iter([pb.FrameChunk(sha256=sha, size=len(data), offset=0, data=data[:half])])))
    assert acks[-1].offset == half and not acks[-1].complete
    status = stub.HasFrames(pb.HasFramesRequest(frames=[pb.FrameRef(sha256=sha, size=len(data))])).frames[0]
    assert not status.present and status.offset == half
    with pytest.raises(grpc.RpcError) as caught:  # a chunk at the wrong offset is refused, naming where to resume
        list(stub.UploadFrames(iter([pb.FrameChunk(sha256=sha, size=len(data), offset=0, data=data)])))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and f"resume from {half}" in caught.value.details()
    rest = pb.FrameChunk(sha256=sha, size=len(data), offset=half, data=data[half:])
    assert list(stub.UploadFrames(iter([rest])))[-1].complete
    bad = b"x" * 10
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.UploadFrames(iter([pb.FrameChunk(sha256="a" * 64, size=10, offset=0, data=bad)])))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "corrupted" in caught.value.details()


def test_upload_and_cache_limits_are_clear_errors(tmp_path, start_daemon, source_guard):
    shot = write_shot(tmp_path / "ws" / "sh030", frames=3)
    frame = Path(shot.plate.replace("####", "1001")).stat().st_size
    small = start_daemon(max_upload_bytes=frame * 2)
    client = Client(small.address)
    with pytest.raises(errors.VoidlinkError) as caught:
        client.remove(shot.plate, shot.mask, backend="classical", transfer="stream")
    assert caught.value.reason == "UPLOAD_TOO_LARGE" and "--max-upload" in str(caught.value)

    tiny = start_daemon(cache_max_bytes=frame // 2)
    with pytest.raises(errors.VoidlinkError) as caught:
        Client(tiny.address).remove(shot.plate, shot.mask, backend="classical", transfer="stream")
    assert caught.value.reason == "CACHE_TOO_SMALL" and "--cache-size" in str(caught.value)

    # A cache one byte short of the three plates and mattes: the mattes evict the least recently used plate.
    plates = [Path(shot.plate.replace("####", str(f))) for f in range(1001, 1004)]
    mattes = [Path(shot.mask.replace("####", str(f))) for f in range(1001, 1004)]
    matte_bytes = sum(p.stat().st_size for p in mattes)
    lru = start_daemon(cache_max_bytes=sum(p.stat().st_size for p in plates) + matte_bytes - 1)
    client = Client(lru.address)
    refs = {p: pb.FrameRef(sha256=file_sha256(str(p)), size=p.stat().st_size) for p in plates + mattes}
    client.upload_frames([(str(p), refs[p]) for p in plates])
    client.upload_frames([(str(plates[0]), refs[plates[0]])])  # used again: now the newest
    client.upload_frames([(str(p), refs[p]) for p in mattes])
    reply = client._call("HasFrames", pb.HasFramesRequest(frames=refs.values()))
    present = {p: s.present for p, s in zip(refs, reply.frames)}
    assert [present[p] for p in plates] == [True, False, True] and all(present[p] for p in mattes)
    assert lru.info().cache_bytes <= lru.info().cache_max_bytes


def test_download_of_a_shared_storage_job_is_refused(studio):
    daemon, root, _ = studio
    shot = write_shot(root / "sh040", frames=2)
    client = Client(daemon.address)
    result = client.remove(shot.plate, shot.mask, backend="classical")
    with pytest.raises(errors.InvalidInput, match="nothing to download"):
        client.download_result(client.get(result.job_id), str(root / "x.####.exr"))


def test_doctor_says_whether_the_daemon_sees_the_paths(studio, tmp_path):
    daemon, root, shot = studio
    out = subprocess.run(
        [sys.executable, "-m", "voidlink", "doctor", "--json", "--address", daemon.address, "--path", str(shot.folder)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    report = json.loads(out.stdout)["daemon"]
    assert report["transfer_mode"] == "frames streamed over gRPC"
    assert not report["paths"][0]["usable"] and "roots: " + str(root) in report["security"]
    out = subprocess.run(
        [sys.executable, "-m", "voidlink", "doctor", "--address", daemon.address, "--path", str(root)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert "transfer mode:    shared paths" in out.stdout and f"{root} -> {root}: seen" in out.stdout


def _voidlink(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "voidlink", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_cli_remove_streams_to_a_daemon_that_cannot_see_the_shot(studio, tmp_path):
    daemon, root, shot = studio
    shared = root / "sh010"
    shutil.copytree(shot.folder, shared)
    reference = Client(daemon.address).remove(
        str(shared / "plate.####.exr"), str(shared / "mask.####.exr"), prompt="a wall", backend="classical"
    )
    output = tmp_path / "workstation" / "out" / "clean.####.exr"
    common = [shot.plate, "--mask", shot.mask, "--prompt", "a wall", "--backend", "classical", "-o", str(output)]
    common += ["--address", daemon.address, "--no-start"]

    # A detached job whose result must come back over this connection is refused before anything is sent.
    refused = _voidlink("remove", *common, "--detach")
    assert refused.returncode != 0 and "Run without --detach" in refused.stderr
    assert str(output) in refused.stderr and len(Client(daemon.address).jobs()) == 1
    assert daemon.info().cache_bytes == 0
    # Paths only: the daemon names the plate it may not read.
    shared_only = _voidlink("remove", *common, "--transfer", "shared")
    assert shared_only.returncode != 0 and "outside" in shared_only.stderr and shot.plate in shared_only.stderr

    done = _voidlink("remove", *common)
    assert done.returncode == 0, done.stderr
    assert f"in {output}" in done.stdout
    assert "uploading frames: 10/10 files" in done.stderr and "fetching the result: 10/10 files" in done.stderr
    for ours, theirs in zip(frame_files(str(output), 1001, 1005), frame_files(reference.output_pattern, 1001, 1005)):
        assert np.array_equal(read_pixels(str(ours)), read_pixels(str(theirs)))
        assert ours.read_bytes() != b""
    assert not [p for p in output.parent.rglob("*") if ".part" in p.name]
    assert daemon.info().cache_bytes == sum(p.stat().st_size for p in shot.folder.glob("[pm]*.exr"))

    as_json = _voidlink("remove", *common, "--json")
    assert as_json.returncode == 0 and as_json.stderr == ""
    job = json.loads(as_json.stdout)
    assert job["state"] == "succeeded" and job["result"]["output_pattern"] == str(output)


def test_watchers_see_the_upload_before_the_job_runs_and_the_result_being_fetched(studio, tmp_path, monkeypatch):
    daemon, _, shot = studio
    uploader, watcher = Client(daemon.address, channel_options=NARROW_WINDOWS), Client(daemon.address)
    uploader.chunk_bytes = 4096  # many chunks, so the upload takes a while to watch
    spec = build_spec(shot.plate, shot.mask, backend="classical", output=tmp_path / "ws" / "out" / "c.####.exr")
    seen: list[pb.JobEvent] = []
    watching = threading.Event()

    def watch(job_id: str) -> None:
        for event in watcher.watch(job_id):
            seen.append(event)
            watching.set()

    thread = None
    named: list[pb.JobEvent] = []

    def watch_from_submission(job: pb.Job) -> None:
        nonlocal thread
        assert job.state == pb.JOB_STATE_UPLOADING
        thread = threading.Thread(target=watch, args=(job.id,), daemon=True)
        thread.start()
        assert watching.wait(10)

    def on_progress(event: pb.JobEvent) -> None:
        if event.job_id:
            named.append(event)

    send_after_submit(uploader, monkeypatch, watch_from_submission)
    job, plan = uploader.start(spec, "stream", on_progress)
    assert named[0].state == pb.JOB_STATE_UPLOADING and named[0].transfer.files_done < 10
    assert job.state in (pb.JOB_STATE_QUEUED, pb.JOB_STATE_RUNNING, pb.JOB_STATE_SUCCEEDED)  # queued once all were in
    job = uploader.wait(job.id)
    thread.join(20)
    running = next(i for i, e in enumerate(seen) if e.state == pb.JOB_STATE_RUNNING)
    uploads = [e for e in seen[:running] if e.state == pb.JOB_STATE_UPLOADING]
    assert len(uploads) >= 3 and all(e.stage == "upload" and e.transfer.direction == "upload" for e in uploads)
    done = [e.transfer.bytes_done for e in uploads]
    assert done == sorted(done) and done[0] < done[-1] == uploads[-1].transfer.bytes_total
    assert uploads[-1].transfer.files_done == uploads[-1].transfer.files_total == 10
    assert not any(e.state == pb.JOB_STATE_UPLOADING for e in seen[running:])
    assert seen[-1].state == pb.JOB_STATE_SUCCEEDED

    # The fetch of the result, seen by a watcher that comes while it is under way.
    fetch_seen: list[pb.JobEvent] = []
    watching.clear()

    def watch_fetch() -> None:
        for event in watcher.watch(job.id):  # ends when the download does
            fetch_seen.append(event)
            watching.set()

    fetcher = threading.Thread(target=watch_fetch, daemon=True)

    def follow_fetch(event: pb.JobEvent) -> None:
        if event.transfer.direction == "download" and event.transfer.files_done == 1:
            fetcher.start()
            assert watching.wait(10)

    local = uploader.finish(job, plan, on_progress=follow_fetch)
    fetcher.join(20)
    assert not fetcher.is_alive() and fetch_seen[-1].transfer.files_done == 10
    assert fetch_seen[0].state == pb.JOB_STATE_SUCCEEDED and fetch_seen[0].transfer.direction == "download"
    assert 1 <= fetch_seen[0].transfer.files_done < fetch_seen[0].transfer.files_total == 10
    assert local.result.output_pattern == str(tmp_path / "ws" / "out" / "c.####.exr")

    # An older client's order (upload, then submit without upload_follows) still works.
    old = Client(daemon.address)
    uploaded, files = old.hash_frames(spec, plan)
    old.upload_frames(files)
    assert old.submit(uploaded).state == pb.JOB_STATE_QUEUED


def test_a_frame_that_cannot_fit_beside_the_frames_being_uploaded_is_refused_by_name(tmp_path, start_daemon):
    # Two frames in one stream, a cache that holds one and a half: the first is pinned while its stream
    # runs, so the second has nowhere to go. It was stored and evicted at once, and the upload "succeeded".
    first, second = tmp_path / "a.0001.exr", tmp_path / "a.0002.exr"
    first.write_bytes(b"\x01" * 40_000)
    second.write_bytes(b"\x02" * 40_000)
    daemon = start_daemon(cache_max_bytes=60_000)
    client = Client(daemon.address)
    with pytest.raises(errors.VoidlinkError) as caught:
        client.upload_paths([str(first), str(second)])
    assert caught.value.reason == "CACHE_FULL" and "--cache-size" in str(caught.value)
    assert file_sha256(str(second))[:12] in str(caught.value)
    assert daemon.info().cache_bytes == 40_000  # the first is kept; nothing half-written is left
    assert not list(daemon.cache.partial.iterdir())
