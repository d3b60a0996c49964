"""A daemon a studio can trust: owners, bounded requests, pages, a store that heals, the standard error
model, tolerant parsing, reflection v1. Real daemons on loopback, tokens written here."""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from grpc_status import rpc_status
from support.daemons import wait_for
from support.shots import write_shot
from voidlink.bridge import Client, build_spec
from voidlink.inference.backends.base import Backend, BackendResult
from voidlink.inference.daemon import Daemon
from voidlink.inference.job.prepare import prepare_job
from voidlink.inference.job.run import run_job
from voidlink.inference.security import SecurityConfig
from voidlink.inference.store import JobStore, Retention
from voidlink.protos import PROTOCOL_METADATA_KEY, PROTOCOL_VERSION, pb, rpc
from voidlink.protos.clips import clip_json

from voidlink import errors

ALICE = "alice-0123456789abcdef0123456789"
FARM = "farm-fedcba9876543210fedcba98765"
ADMIN = "wrangler-00112233445566778899aabb"


@pytest.fixture
def tokened(tmp_path):
    """A loopback daemon that wants tokens: alice, farm, and an admin."""
    tokens = tmp_path / "tokens"
    tokens.write_text(f"alice {ALICE}\nfarm {FARM} 2999-01-01\nwrangler {ADMIN} admin\n")
    tokens.chmod(0o600)
    daemon = Daemon(listen="127.0.0.1:0", data_dir=tmp_path / "data", security=SecurityConfig(tokens_file=tokens))
    daemon.start()
    yield daemon
    daemon.stop(grace=1.0)


@pytest.fixture
def open_daemon(tmp_path):
    daemon = Daemon(listen="127.0.0.1:0", data_dir=tmp_path / "data-open")
    daemon.start()
    yield daemon
    daemon.stop(grace=1.0)


def _spec(tmp_path: Path, name: str = "sh010") -> pb.JobSpec:
    shot = write_shot(tmp_path / name, frames=2, width=48, height=32)
    return build_spec(shot.plate, shot.mask, backend="classical", output=tmp_path / name / "out" / "c.####.exr")


def _code(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code(), caught.value


def test_a_job_belongs_to_the_token_that_submitted_it(tokened, tmp_path):
    alice, farm, admin = (Client(tokened.address, token=t) for t in (ALICE, FARM, ADMIN))
    job = alice.submit(_spec(tmp_path))
    assert job.owner == "alice"
    # Another token is told there is no such job, exactly as for one that does not exist.
    for call in (lambda: farm.get(job.id), lambda: farm.cancel(job.id), lambda: list(farm.watch(job.id))):
        with pytest.raises(errors.NotFound, match="no job with id"):
            call()
    assert job.id not in [j.id for j in farm.jobs()]
    assert [j.id for j in alice.jobs()] == [job.id]
    # The admin sees and may cancel every owner's job.
    assert admin.get(job.id).owner == "alice" and job.id in [j.id for j in admin.jobs()]
    alice.wait(job.id)
    farm_job = farm.submit(_spec(tmp_path, "sh020"))
    assert [j.id for j in alice.jobs()] == [job.id] and {j.id for j in admin.jobs()} == {job.id, farm_job.id}


def test_two_authorization_values_are_refused(tokened):
    stub = rpc.VoidLinkStub(grpc.insecure_channel(tokened.address))
    metadata = (("authorization", f"Bearer {ALICE}"), ("authorization", f"Bearer {FARM}"))
    code, error = _code(lambda: stub.ListJobs(pb.ListJobsRequest(), metadata=metadata))
    assert code == grpc.StatusCode.UNAUTHENTICATED and "not several" in error.details()


def test_requests_beyond_the_bounds_are_refused_before_any_work(open_daemon, tmp_path):
    client = Client(open_daemon.address)
    image = tmp_path / "still.exr"
    write_shot(tmp_path / "s", frames=1, width=16, height=16)
    (tmp_path / "s" / "plate.1001.exr").rename(image)
    mask = next((tmp_path / "s").glob("mask.*.exr"))
    started = time.monotonic()
    with pytest.raises(errors.LimitExceeded) as caught:
        client.submit(build_spec(image, mask, frames=(1, 2_000_000), backend="classical"))
    assert caught.value.reason == "TOO_MANY_FRAMES" and caught.value.field == "spec.frames"
    with pytest.raises(errors.InvalidInput) as caught:
        client.submit(build_spec(image, mask, frames=(-(2**62), 2**62), backend="classical"))
    assert caught.value.reason == "FRAME_OUT_OF_RANGE"
    with pytest.raises(errors.LimitExceeded) as caught:
        client.submit(build_spec(image, mask, prompt="a" * (1 << 20), backend="classical"))
    assert caught.value.reason == "PROMPT_TOO_LONG" and caught.value.field == "spec.params.prompt"
    # An OTIO clip a billion frames long on a single image: refused, no list of a billion frames made.
    spec = build_spec(image, mask, backend="classical", output=tmp_path / "o" / "c.####.exr")
    spec.source.otio_json = clip_json(str(image), 1, 1_000_000_000)
    with pytest.raises(errors.LimitExceeded) as caught:
        client.submit(spec)
    assert caught.value.reason == "TOO_MANY_FRAMES"
    spec = build_spec(image, mask, backend="classical", labels={f"k{i}": "v" for i in range(65)})
    with pytest.raises(errors.LimitExceeded, match="labels"):
        client.submit(spec)
    with pytest.raises(errors.InvalidInput) as caught:
        client.probe(["/tmp/a\x00b"])
    assert caught.value.reason == "BAD_PATH"
    assert time.monotonic() - started < 30  # nothing above walked a million frames
    assert client.jobs() == []


def test_thousands_of_jobs_page_as_summaries(open_daemon, tmp_path):
    spec = _spec(tmp_path)
    spec.params.prompt = "p" * 5000
    with open_daemon.store.holding():
        ids = [open_daemon.store.add(spec).id for _ in range(2500)]
    for job_id in ids:  # ended, so no worker runs them
        open_daemon.store.finish(job_id, pb.JOB_STATE_CANCELLED, message="test")
    client = Client(open_daemon.address)
    first, token = client.jobs_page(page_size=1000)
    assert len(first) == 1000 and token and first[0].id == ids[-1]  # newest first
    summary = first[0]
    assert not summary.spec.source.otio_json and len(summary.spec.params.prompt) == 256
    assert client.get(summary.id).spec.source.otio_json  # GetJob has the whole spec
    listed = client.jobs()
    assert [j.id for j in listed] == ids[::-1]
    assert len(client.jobs(limit=1200)) == 1200
    with pytest.raises(errors.InvalidInput) as caught:
        client.jobs_page(page_token="not-a-token")
    assert caught.value.reason == "BAD_PAGE_TOKEN"
    with pytest.raises(errors.LimitExceeded) as caught:
        client.jobs_page(page_size=5000)
    assert caught.value.reason == "PAGE_TOO_LARGE"
    # An older client's `limit` alone still bounds the list.
    stub = rpc.VoidLinkStub(grpc.insecure_channel(open_daemon.address))
    assert len(stub.ListJobs(pb.ListJobsRequest(limit=7)).jobs) == 7


def test_ended_jobs_beyond_the_retention_are_forgotten(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    spec = _spec(tmp_path)
    ended = [store.add(spec).id for _ in range(5)]
    for job_id in ended:
        store.finish(job_id, pb.JOB_STATE_SUCCEEDED)
    queued = store.add(spec).id
    assert store.prune(Retention(count=2)) == ended[:3][::-1]
    assert {j.id for j in store.list()} == {queued, *ended[3:]}
    assert store.prune(Retention(days=1), now=time.time() + 2 * 86400) == ended[3:][::-1]
    assert [j.id for j in store.list()] == [queued]  # never a job that has not ended
    assert Retention.parse("30d,5000") == Retention(30.0, 5000) and Retention.parse("all") == Retention()
    with pytest.raises(errors.InvalidInput, match="--keep-jobs"):
        Retention.parse("lots")


def test_a_locked_store_fails_the_write_at_hand_and_heals(tmp_path):
    path = tmp_path / "jobs.sqlite"
    store = JobStore(path, busy_seconds=0.2)
    spec = _spec(tmp_path)
    before = store.add(spec)
    other = sqlite3.connect(str(path), isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another process holds the database
    with pytest.raises(errors.Unavailable) as caught:
        store.add(spec)
    assert caught.value.reason == "STORE_BUSY" and str(path) in str(caught.value)
    with pytest.raises(errors.Unavailable):
        store.record_frame(before.id, 1001, 1)
    assert store.writable() is not None
    other.execute("ROLLBACK")
    other.close()
    # Nothing of the failed writes is half there, and the connection is clean for the next.
    after = store.add(spec)
    store.record_frame(after.id, 1001, 1)
    assert store.writable() is None and [j.id for j in store.list()] == [after.id, before.id]
    assert store.written_frames(after.id) == [1001] and store.written_frames(before.id) == []


def test_a_store_from_before_owners_is_upgraded_in_place(tmp_path):
    path = tmp_path / "jobs.sqlite"
    JobStore(path).close()
    db = sqlite3.connect(str(path), isolation_level=None)
    db.execute("ALTER TABLE jobs DROP COLUMN owner")
    db.execute("UPDATE meta SET value='1' WHERE key='schema'")
    db.execute(
        "INSERT INTO jobs (id, priority, state, spec, created_at) VALUES ('old1', 0, ?, ?, 0)",
        (pb.JOB_STATE_SUCCEEDED, _spec(tmp_path).SerializeToString()),
    )
    db.close()
    store = JobStore(path)
    assert store.get("old1").owner == "" and store.add(_spec(tmp_path), owner="alice").owner == "alice"


def test_the_worker_survives_a_store_it_cannot_write_and_records_the_end_later(open_daemon, tmp_path):
    store = open_daemon.store
    real_finish = store.finish
    failures = []

    def full_once(job_id, state, **fields):
        if not failures:
            failures.append(job_id)
            raise errors.LimitExceeded("disk full at the data dir", reason="DISK_FULL")
        return real_finish(job_id, state, **fields)

    store.finish = full_once
    client = Client(open_daemon.address)
    first = client.submit(_spec(tmp_path, "a"))
    ended = client.wait(first.id)  # watchers hear the end from memory while the store is full
    assert failures == [first.id] and ended.state == pb.JOB_STATE_SUCCEEDED
    wait_for(lambda: store.get(first.id).state == pb.JOB_STATE_SUCCEEDED, timeout=30)
    second = client.wait(client.submit(_spec(tmp_path, "b")).id)  # the same worker takes the next job
    assert second.state == pb.JOB_STATE_SUCCEEDED


def test_health_is_not_serving_while_the_store_takes_no_writes(open_daemon):
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(open_daemon.address))

    def status() -> int:
        return health.Check(health_pb2.HealthCheckRequest(service="")).status

    assert open_daemon.check_health() and status() == health_pb2.HealthCheckResponse.SERVING
    open_daemon.store.writable = lambda: "disk full at the data dir"
    assert not open_daemon.check_health() and status() == health_pb2.HealthCheckResponse.NOT_SERVING
    del open_daemon.store.writable
    assert open_daemon.check_health() and status() == health_pb2.HealthCheckResponse.SERVING


def test_bytes_that_are_not_the_message_are_a_bad_request(open_daemon):
    channel = grpc.insecure_channel(open_daemon.address)
    raw = channel.unary_unary("/voidlink.v1.VoidLink/GetJob", request_serializer=None, response_deserializer=None)
    metadata = ((PROTOCOL_METADATA_KEY, str(PROTOCOL_VERSION)),)
    for data in (b"\xff\xff\xff\xff", b"\x0a\x02\xff\xfe"):  # garbage; a job id that is not UTF-8
        code, error = _code(lambda data=data: raw(data, metadata=metadata))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "not a valid protobuf message" in error.details()
    # The daemon is unharmed.
    assert Client(open_daemon.address).jobs() == []


def test_errors_carry_the_standard_status_details(open_daemon):
    stub = rpc.VoidLinkStub(grpc.insecure_channel(open_daemon.address))
    code, error = _code(lambda: stub.GetJob(pb.GetJobRequest(job_id="nope")))
    assert code == grpc.StatusCode.NOT_FOUND
    standard = rpc_status.from_call(error)
    assert standard is not None and standard.code == grpc.StatusCode.NOT_FOUND.value[0]
    info = error_details_pb2.ErrorInfo()
    assert standard.details[0].Unpack(info)
    assert (info.domain, info.reason, info.metadata["field"]) == ("voidlink", "JOB_NOT_FOUND", "job_id")
    code, error = _code(lambda: stub.ListJobs(pb.ListJobsRequest(page_size=5000)))
    bad = error_details_pb2.BadRequest()
    assert rpc_status.from_call(error).details[1].Unpack(bad) and bad.field_violations[0].field == "page_size"


def test_reflection_answers_v1_and_v1alpha(open_daemon):
    channel = grpc.insecure_channel(open_daemon.address)
    for version in ("v1", "v1alpha"):
        info = channel.stream_stream(
            f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        reply = next(iter(info(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))))
        names = {service.name for service in reply.list_services_response.service}
        assert "voidlink.v1.VoidLink" in names and "grpc.reflection.v1.ServerReflection" in names


@pytest.mark.parametrize("how", ["kill -9", "SIGTERM"])
def test_a_waiting_client_reconnects_while_the_daemon_restarts(daemon_factory, tmp_path, how):
    first = daemon_factory(tmp_path / "data").start()
    client = first.client()
    job = client.submit(_spec(tmp_path))
    restarted: list = []
    told: list[str] = []

    def progress(event: pb.JobEvent) -> None:
        if event.state == pb.JOB_STATE_RUNNING and first.process.poll() is None and not restarted:
            first.kill() if how == "kill -9" else first.signal(signal.SIGTERM)  # mid-job, the client attached
        if event.stage == "reconnect":
            told.append(event.message)
            if not restarted:  # the client has found the daemon gone: now a new one takes its place
                restarted.append(daemon_factory(tmp_path / "data", listen=first.address).start())

    final = client.wait(job.id, on_progress=progress)
    assert restarted and final.state == pb.JOB_STATE_SUCCEEDED
    assert told and "reconnecting" in told[0]


def test_a_client_gives_up_on_a_daemon_that_does_not_come_back(daemon_factory, tmp_path):
    first = daemon_factory(tmp_path / "data").start()
    client = Client(first.address, connect_timeout=0.2)
    job = client.submit(_spec(tmp_path))
    first.kill()
    with pytest.raises(errors.Unavailable, match=f"voidlink jobs watch {job.id}"):
        client.wait(job.id, reconnect=1.0)


class _Tally(Backend):
    """Copies the plate; each frame reports how many of its pixels it 'filled' (its index's last digit)."""

    name = "tally"

    def __init__(self, fail_after: int | None = None) -> None:
        self.fail_after = fail_after

    def run(self, frames, request):
        for number, frame in enumerate(frames):
            if self.fail_after is not None and number >= self.fail_after:
                raise RuntimeError("simulated crash")
            yield BackendResult(frame.index, frame.image.copy(), counts={"filled": float(frame.index % 10)})

    def shot_notes(self, totals):
        return [f"filled {totals.get('filled', 0):g} pixels over the shot"]


def test_a_resumed_jobs_notes_describe_the_whole_shot(tmp_path):
    shot = write_shot(tmp_path / "src", frames=8, width=32, height=24)
    whole = run_job(
        prepare_job(build_spec(shot.plate, shot.mask, output=tmp_path / "a" / "a.####.exr")), _Tally(), job_id="a"
    )
    spec = build_spec(shot.plate, shot.mask, output=tmp_path / "b" / "b.####.exr")
    with pytest.raises(RuntimeError, match="simulated"):
        run_job(prepare_job(spec), _Tally(fail_after=5), job_id="b")
    resumed = run_job(prepare_job(spec), _Tally(), job_id="b")  # renders only frames 1006-1008
    expected = f"filled {sum(f % 10 for f in range(1001, 1009))} pixels over the shot"
    assert expected in whole.notes and expected in resumed.notes


def test_classical_counts_sum_to_its_shot_note():
    from voidlink.inference.backends.classical.backend import ClassicalBackend

    backend = ClassicalBackend()
    assert backend.shot_notes({"filled": 100.0, "unrevealed": 1.0}) == []
    (note,) = backend.shot_notes({"filled": 100.0, "unrevealed": 30.0})
    assert note.startswith("30% of the removed area was never revealed")


def test_the_readmes_hand_written_job_for_foreign_clients_is_read_as_written():
    import json
    import re

    from google.protobuf import json_format
    from voidlink.protos.clips import clip_media

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("**Clients in other languages.**") :]
    example = json.loads(re.search(r"```json\n(.*?)```", section, re.S).group(1))
    request = json_format.ParseDict(example, pb.SubmitJobRequest())
    media = clip_media(request.spec.source.otio_json, "spec.source")
    assert (media.path, media.first, media.last) == ("/shows/sh010/plate.####.exr", 1001, 1100)
    assert request.spec.output.path_template.endswith("clean.####.exr") and request.spec.frames.last == 1100
