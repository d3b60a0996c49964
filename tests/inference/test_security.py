"""A daemon beyond loopback: TLS, tokens, roots and limits, over real gRPC with certificates made here."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from support.shots import read_pixels, write_shot
from voidlink.bridge import Client, build_spec
from voidlink.bridge.download import safe_parts
from voidlink.inference.daemon import Daemon
from voidlink.inference.security import is_loopback, parse_size, read_tokens
from voidlink.protos import pb, rpc
from voidlink.protos.clips import clip_json

from voidlink import errors
from voidlink.cli.serve import add_arguments, security_config
from voidlink.errors import Unauthenticated

GOOD = "alice-0123456789abcdef0123456789"
OTHER = "farm-fedcba9876543210fedcba98765"
OLD = "bob-00000000000000000000000000000"


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "daemon.key", folder / "daemon.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def tokens_file(tmp_path) -> Path:
    yesterday = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    path = tmp_path / "tokens"
    path.write_text(f"# name token expires\nalice {GOOD}\nfarm {OTHER} 2999-01-01\nbob {OLD} {yesterday}\n")
    path.chmod(0o600)
    return path


def _port(daemon: Daemon) -> str:
    return "127.0.0.1:" + daemon.address.rsplit(":", 1)[1]


def _status(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


# -- listening beyond loopback ----------------------------------------------------------------


def test_loopback_detection():
    assert is_loopback("127.0.0.1:50151") and is_loopback("[::1]:1") and is_loopback("localhost:5")
    assert is_loopback("unix:/tmp/voidlink.sock")
    assert not is_loopback("0.0.0.0:50151") and not is_loopback("[::]:1") and not is_loopback("10.0.0.5:1")
    assert not is_loopback("gpu-box.studio:50151")
    assert parse_size("16M", "x") == 16 * 1024**2 and parse_size("1.5G", "x") == int(1.5 * 1024**3)
    with pytest.raises(errors.InvalidInput, match="max_message"):
        parse_size("lots", "max_message")


def _serve(tmp_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "voidlink", "serve", "--data-dir", str(tmp_path / "cli-data"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_serve_refuses_the_network_without_tls_and_tokens_and_warns_when_insecure(tmp_path, certs):
    refused = _serve(tmp_path, "--listen", "0.0.0.0:0")
    out, err = refused.communicate(timeout=60)
    assert refused.returncode == 2
    assert "refusing to listen on 0.0.0.0:0 without TLS (--tls-cert, --tls-key) and tokens (--tokens-file)" in err

    cert, key = certs
    half = _serve(tmp_path, "--listen", "0.0.0.0:0", "--tls-cert", str(cert), "--tls-key", str(key))
    _, err = half.communicate(timeout=60)
    assert half.returncode == 2 and "without tokens (--tokens-file)" in err and "TLS" not in err.split("without")[1]

    for _ in range(2):  # the warning comes at every start, not once
        insecure = _serve(tmp_path, "--listen", "0.0.0.0:0", "--insecure")
        try:
            line = insecure.stdout.readline()
            assert "listening on 0.0.0.0:" in line
        finally:
            insecure.terminate()
            _, err = insecure.communicate(timeout=60)
        assert "WARNING: INSECURE: listening on 0.0.0.0:0 without TLS" in err
        assert "takes streamed frames only" in err


def test_tokens_file_errors_name_the_line(tmp_path):
    path = tmp_path / "tokens"
    path.write_text(f"alice {GOOD}\nbob short\n")
    with pytest.raises(errors.InvalidInput, match=r"tokens line 2: the token of 'bob' has 5 characters"):
        read_tokens(path)
    path.write_text(f"alice {GOOD} next-tuesday\n")
    with pytest.raises(errors.InvalidInput, match=r"line 1: expiry 'next-tuesday' is not an ISO 8601"):
        read_tokens(path)


def test_tls_and_tokens(start_daemon, certs, tokens_file):
    cert, key = certs
    daemon = start_daemon("0.0.0.0:0", tls_cert=cert, tls_key=key, tokens_file=tokens_file, roots=[])
    address = _port(daemon)

    info = Client(address, token=GOOD, tls=cert).info()
    assert info.tls and info.tokens_required and info.confined and list(info.roots) == []
    assert Client(address, token=OTHER, tls=cert).jobs() == []

    for token, why in ((None, "no token given"), ("x" * 32, "not valid"), (OLD, "expired")):
        with pytest.raises(Unauthenticated, match=why):
            Client(address, token=token, tls=cert).info()

    # Raw gRPC: UNAUTHENTICATED and nothing else — no error detail, no job data.
    channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(cert.read_bytes()))
    stub = rpc.VoidLinkStub(channel)
    error = _status(lambda: stub.ListJobs(pb.ListJobsRequest(), metadata=(("authorization", "Bearer " + "y" * 40),)))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert not [k for k, _ in error.trailing_metadata() or () if k.startswith("voidlink")]
    basic = (("authorization", "Basic a"),)
    error = _status(lambda: list(stub.WatchJob(pb.WatchJobRequest(job_id="x"), metadata=basic)))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    error = _status(lambda: list(stub.UploadFrames(iter([pb.FrameChunk(sha256="0" * 64, size=1, data=b"x")]))))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert daemon.cache.used_bytes == 0 and not list(daemon.cache.partial.iterdir())

    # Health is always served; reflection only to authenticated clients beyond loopback.
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
    ask = [reflection_pb2.ServerReflectionRequest(list_services="")]
    error = _status(lambda: list(reflect.ServerReflectionInfo(iter(ask))))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    replies = reflect.ServerReflectionInfo(iter(ask), metadata=(("authorization", f"Bearer {GOOD}"),))
    assert "voidlink.v1.VoidLink" in {s.name for r in replies for s in r.list_services_response.service}

    # A plain-text client cannot talk to the TLS port at all.
    with pytest.raises(errors.Unavailable):
        Client(address, token=GOOD, tls=False, connect_timeout=1.0).info()


def test_tokens_on_loopback_keep_reflection_open(start_daemon, tokens_file, monkeypatch):
    daemon = start_daemon(tokens_file=tokens_file)
    channel = grpc.insecure_channel(daemon.address)
    replies = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    assert "voidlink.v1.VoidLink" in {s.name for r in replies for s in r.list_services_response.service}
    with pytest.raises(Unauthenticated):
        Client(daemon.address).info()
    monkeypatch.setenv("VOIDLINK_TOKEN", GOOD)
    assert Client(daemon.address).info().tokens_required
    monkeypatch.delenv("VOIDLINK_TOKEN")
    token_file = tokens_file.parent / "my-token"
    token_file.write_text(f"# issued by the pipeline team\n{OTHER}\n")
    monkeypatch.setenv("VOIDLINK_TOKEN_FILE", str(token_file))
    assert Client(daemon.address).info().tokens_required


def test_insecure_network_daemon_serves_no_reflection(start_daemon):
    daemon = start_daemon("0.0.0.0:0", insecure=True)
    assert daemon.warnings and "INSECURE" in daemon.warnings[0]
    channel = grpc.insecure_channel(_port(daemon))
    error = _status(
        lambda: list(
            reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")])
            )
        )
    )
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    assert Client(_port(daemon)).info().confined


# -- roots ------------------------------------------------------------------------------------


@pytest.fixture
def rooted(tmp_path, start_daemon, source_guard):
    root = tmp_path / "shows"
    shot = write_shot(root / "sh010" / "plates", frames=3)
    outside = write_shot(tmp_path / "elsewhere" / "plates", frames=3)
    source_guard(root / "sh010" / "plates")
    source_guard(outside.folder)
    daemon = start_daemon(roots=[str(root)])
    return daemon, root, shot, outside


def _denied(client: Client, spec: pb.JobSpec) -> errors.PermissionDenied:
    with pytest.raises(errors.PermissionDenied) as caught:
        client.submit(spec)
    assert caught.value.reason == "OUTSIDE_ROOTS"
    return caught.value


def test_roots_refuse_escapes_and_name_the_path(rooted, tmp_path):
    daemon, root, shot, outside = rooted
    client = Client(daemon.address)
    out = str(root / "sh010" / "void" / "clean.####.exr")

    # The client library normalises paths; another client may not: send the `..` as it is.
    dotdot = str(root / "sh010" / ".." / ".." / "elsewhere" / "plates" / "plate.####.exr")
    spec = build_spec(shot.plate, shot.mask, output=out)
    spec.source.otio_json = clip_json(dotdot, shot.first, shot.last)
    error = _denied(client, spec)
    assert error.field == "spec.source" and error.file == dotdot and str(tmp_path / "elsewhere") in str(error)

    error = _denied(client, build_spec(outside.plate, shot.mask, output=out))
    assert error.file == outside.plate and "outside the folders this daemon may use: " + str(root) in str(error)

    error = _denied(client, build_spec(shot.plate, outside.mask, output=out))
    assert error.field == "spec.mask"

    link = root / "sh010" / "linked"
    link.symlink_to(outside.folder, target_is_directory=True)
    error = _denied(client, build_spec(str(link / "plate.####.exr"), shot.mask, output=out))
    assert "resolves to " + str(outside.folder) in str(error)

    # One frame of a sequence inside the roots is a symlink to a file outside.
    mixed = root / "sh010" / "mixed"
    mixed.mkdir()
    for frame in range(shot.first, shot.last + 1):
        name = f"plate.{frame:04d}.exr"
        target = outside.folder / name if frame == shot.first + 1 else shot.folder / name
        (mixed / name).symlink_to(target)
    error = _denied(client, build_spec(str(mixed / "plate.####.exr"), shot.mask, output=out))
    assert error.frame == shot.first + 1 and error.file.endswith(f"plate.{shot.first + 1:04d}.exr")

    error = _denied(client, build_spec(shot.plate, shot.mask, output=tmp_path / "elsewhere" / "out" / "c.####.exr"))
    assert error.field == "spec.output.path_template"
    assert not (tmp_path / "elsewhere" / "out").exists()

    out_link = root / "sh010" / "out-link"
    out_link.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    error = _denied(client, build_spec(shot.plate, shot.mask, output=out_link / "c.####.exr"))
    assert error.field == "spec.output.path_template"

    # Nothing was queued, and a job inside the roots still runs.
    assert client.jobs() == []
    result = client.remove(shot.plate, shot.mask, output=out, backend="classical")
    assert result.state == "succeeded" and (root / "sh010" / "void" / "clean.1001.exr").is_file()


class _PausedBackend:
    """The real backend, holding its first frame back until the test says go: a known point after the
    job's paths were checked (at submission and when it started) and before any plate is read."""

    def __init__(self, inner, reached: threading.Event, go: threading.Event) -> None:
        self.inner, self.reached, self.go = inner, reached, go
        self.name, self.temporal_context, self.working_size = inner.name, inner.temporal_context, inner.working_size

    def run(self, frames, request):
        self.reached.set()
        assert self.go.wait(60), "the test never said go"
        yield from self.inner.run(frames, request)

    def __getattr__(self, name):  # the rest of the backend as it is
        if name.startswith("__") or name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


def _pause_backends(daemon, monkeypatch) -> tuple[threading.Event, threading.Event]:
    """Every backend the daemon hands out pauses at its first frame: (reached, go)."""
    get = daemon.registry.get
    reached, go = threading.Event(), threading.Event()
    monkeypatch.setattr(daemon.registry, "get", lambda name: _PausedBackend(get(name), reached, go))
    return reached, go


def test_a_plate_frame_swapped_for_a_link_outside_the_roots_while_the_job_runs_is_not_read(
    rooted, tmp_path, monkeypatch
):
    daemon, root, _, outside = rooted
    shot = write_shot(root / "sh030" / "plates", frames=3)
    reached, go = _pause_backends(daemon, monkeypatch)
    client = Client(daemon.address)
    out = root / "sh030" / "void" / "clean.####.exr"
    job = client.submit(build_spec(shot.plate, shot.mask, output=out, backend="classical"))
    assert reached.wait(60), client.get(job.id)

    # The job is past every path check: now frame 1002 becomes a link to another show's plate.
    frame = shot.folder / "plate.1002.exr"
    aside = shot.folder / "aside.exr"
    frame.rename(aside)
    frame.symlink_to(outside.folder / "plate.1002.exr")
    go.set()
    final = client.wait(job.id)
    assert final.state == pb.JOB_STATE_FAILED, final.result
    assert final.error.reason == "OUTSIDE_ROOTS" and final.error.frame == 1002 and final.error.file == str(frame)
    assert f"opened {outside.folder / 'plate.1002.exr'}, which is outside the folders" in final.error.message
    assert "it was not read" in final.error.message
    assert not out.parent.exists() or not any(out.parent.iterdir())  # nothing written, no staging left


def test_an_output_folder_swapped_for_a_link_while_the_job_waits_in_the_queue_is_not_written(
    rooted, tmp_path, monkeypatch
):
    daemon, root, shot, _ = rooted
    reached, go = _pause_backends(daemon, monkeypatch)
    client = Client(daemon.address)
    first = build_spec(shot.plate, shot.mask, output=root / "sh010" / "o" / "c.####.exr", backend="classical")
    busy = client.submit(first)
    assert reached.wait(60), client.get(busy.id)  # the one worker is held: the next job waits in the queue
    out_dir = root / "sh010" / "void"
    out_dir.mkdir()
    job = client.submit(build_spec(shot.plate, shot.mask, output=out_dir / "c.####.exr", backend="classical"))
    victim = tmp_path / "not-a-root"
    victim.mkdir()
    out_dir.rmdir()  # checked at submission; now a link to a folder outside every root
    out_dir.symlink_to(victim, target_is_directory=True)
    go.set()
    assert client.wait(busy.id).state == pb.JOB_STATE_SUCCEEDED
    final = client.wait(job.id)
    assert final.state == pb.JOB_STATE_FAILED and final.error.reason == "OUTSIDE_ROOTS", final.message
    assert f"resolves to {victim}" in final.message
    assert list(victim.iterdir()) == []  # not a frame, not a staging folder


def test_a_side_output_folder_swapped_for_a_link_while_the_job_renders_is_not_committed_into(
    rooted, tmp_path, monkeypatch
):
    daemon, root, shot, _ = rooted
    reached, go = _pause_backends(daemon, monkeypatch)
    client = Client(daemon.address)
    out, mattes = root / "sh010" / "void" / "c.####.exr", root / "sh010" / "mattes"
    mattes.mkdir()
    spec = build_spec(shot.plate, shot.mask, output=out, backend="classical")
    spec.output.quadmask_template = str(mattes / "q.####.png")
    job = client.submit(spec)
    assert reached.wait(60), client.get(job.id)  # past the checks at its start: its frames are being made
    victim = tmp_path / "not-a-root"
    victim.mkdir()
    mattes.rmdir()
    mattes.symlink_to(victim, target_is_directory=True)
    go.set()
    final = client.wait(job.id)
    assert final.state == pb.JOB_STATE_FAILED and final.error.reason == "OUTSIDE_ROOTS", final.message
    assert list(victim.iterdir()) == []
    assert not any(out.parent.iterdir())  # refused before the point of no return: no frame moved, no staging left


def test_a_fifo_in_a_frames_place_is_refused_not_waited_on(tmp_path, monkeypatch):
    from voidlink.inference.security import Roots
    from voidlink.media import image

    confine = Roots([str(tmp_path)], confined=True).opened_guard()
    fifo = tmp_path / "plate.1001.exr"
    os.mkfifo(fifo)
    with pytest.raises(errors.InvalidInput, match=r"plate.1001.exr \(frame 1001\) is not a regular file"):
        image.read_image(str(fifo), field="spec.source", frame=1001, confine=confine)
    shot = write_shot(tmp_path / "plates", frames=1)
    plate = shot.plate.replace("####", "1001")
    read = image.read_image(plate, "all", confine=confine).pixels
    assert np.array_equal(read, read_pixels(plate))  # read through the open file
    os.symlink(plate, tmp_path / "inside-link.exr")  # a link within the roots is fine
    assert image.read_spec(str(tmp_path / "inside-link.exr"), confine=confine).width == shot.width


def test_probe_paths_reports_what_the_daemon_sees(rooted, tmp_path):
    daemon, root, shot, outside = rooted
    stub = rpc.VoidLinkStub(grpc.insecure_channel(daemon.address))
    paths = [shot.plate, outside.plate, str(root / "nothing" / "a.####.exr")]
    reply = stub.ProbePaths(pb.ProbePathsRequest(paths=paths))
    inside, beyond, missing = reply.paths
    assert inside.allowed and inside.exists and inside.usable
    assert not beyond.allowed and not beyond.usable and "outside" in beyond.reason
    assert missing.allowed and not missing.exists and "sees no" in missing.reason
    written = stub.ProbePaths(pb.ProbePathsRequest(paths=[str(root / "new" / "o.####.exr")], write=True)).paths[0]
    assert written.allowed and written.usable


# -- limits -----------------------------------------------------------------------------------


def test_oversize_message_is_a_clear_error_and_the_daemon_keeps_serving(start_daemon, tmp_path):
    daemon = start_daemon(max_message_bytes=64 * 1024)
    client = Client(daemon.address)
    spec = pb.JobSpec(name="x" * (200 * 1024))
    with pytest.raises(errors.VoidlinkError) as caught:
        client.submit(spec)
    assert caught.value.reason == "MESSAGE_TOO_LARGE" and "--max-message" in str(caught.value)
    assert re.search(r"\d+ vs\. \d+", str(caught.value))
    assert client.info().max_message_bytes == 64 * 1024


def test_roots_from_the_studio_config(tmp_path, certs, tokens_file):
    config = tmp_path / "studio.json"
    config.write_text(json.dumps({"roots": [str(tmp_path)], "tokens_file": str(tokens_file)}))
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    security = security_config(parser.parse_args(["--config", str(config), "--root", str(certs[0].parent)]))
    assert security.roots == [str(tmp_path), str(certs[0].parent)] and security.tokens_file == tokens_file
    config.write_text("{roots: nope}")
    with pytest.raises(errors.InvalidInput, match=r"studio.json is not valid JSON \(line 1"):
        security_config(parser.parse_args(["--config", str(config)]))


def test_cli_client_options_reach_a_tls_daemon(start_daemon, certs, tokens_file, tmp_path):
    cert, key = certs
    daemon = start_daemon("0.0.0.0:0", tls_cert=cert, tls_key=key, tokens_file=tokens_file)
    token = tmp_path / "token"
    token.write_text(GOOD + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOIDLINK_")}

    def jobs(*options: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "voidlink", "jobs", "list", "--json", "--address", _port(daemon), *options]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)

    ok = jobs("--token-file", str(token), "--tls-ca", str(cert))
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == {"jobs": []}
    refused = jobs("--tls-ca", str(cert))
    assert refused.returncode == 2 and "refused this client: no token given" in refused.stderr
    assert "--token-file" in refused.stderr


def test_frame_hashes_and_result_names_cannot_name_other_files(start_daemon, tmp_path):
    daemon = start_daemon()
    stub = rpc.VoidLinkStub(grpc.insecure_channel(daemon.address))
    secret = tmp_path / "secret.txt"
    secret.write_text("not for clients")
    for name in (f"../../../{secret}", "ab/../../x", "A" * 64):
        ask = pb.HasFramesRequest(frames=[pb.FrameRef(sha256=name, size=1)])
        error = _status(lambda: stub.HasFrames(ask))  # noqa: B023 - called at once
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "is not a SHA-256" in error.details()
        chunk = pb.FrameChunk(sha256=name, size=1, data=b"x")
        error = _status(lambda: list(stub.UploadFrames(iter([chunk]))))  # noqa: B023 - called at once
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert safe_parts("quadmask/clean_quadmask.1001.png") == ["quadmask", "clean_quadmask.1001.png"]
    for bad in ("../evil.exr", "quadmask/../../x", "/etc/x", "C:/x", "a\\..\\b", ""):
        with pytest.raises(errors.InvalidInput, match="not a plain path under the output folder"):
            safe_parts(bad)
