"""JobStore: durable, ordered, resumable."""

from __future__ import annotations

import threading

from voidlink.inference.store import UPLOAD_STAGE, JobStore
from voidlink.protos import pb


def _spec(name: str, priority: int = 0) -> pb.JobSpec:
    spec = pb.JobSpec(name=name)
    spec.params.priority = priority
    return spec


def test_claims_by_priority_then_submission_order(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    ids = [store.add(_spec(n, p)).id for n, p in (("a", 0), ("b", 5), ("c", 0), ("d", 5))]
    claimed = [store.claim_next().spec.name for _ in ids]
    assert claimed == ["b", "d", "a", "c"]
    assert store.claim_next() is None


def test_survives_reopen_and_requeues_interrupted_jobs(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    job = store.add(_spec("shot"), frames_total=10)
    store.claim_next()
    store.record_frame(job.id, 1001, 1)
    store.record_frame(job.id, 1002, 2)
    store.record_frame(job.id, 1002, 2)  # a repeated record is one frame
    store.append_log(job.id, "12 grey pixels snapped")
    store.close()  # as if the process died here

    reopened = JobStore(tmp_path / "jobs.sqlite")
    assert reopened.requeue_interrupted() == [job.id]
    again = reopened.get(job.id)
    assert again.state == pb.JOB_STATE_QUEUED and again.frames_done == 2 and again.frames_total == 10
    assert reopened.written_frames(job.id) == [1001, 1002]
    assert reopened.log_lines(job.id) == ["12 grey pixels snapped"]
    claimed = reopened.claim_next()
    assert claimed.id == job.id and claimed.attempts == 2


def test_finish_keeps_error_and_result(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    job = store.add(_spec("x"))
    detail = pb.ErrorDetail(reason="MISSING_FRAMES", message="frames 1003, 1004 missing", frames=[1003, 1004])
    done = store.finish(job.id, pb.JOB_STATE_FAILED, message="failed", error=detail)
    assert done.state == pb.JOB_STATE_FAILED and list(done.error.frames) == [1003, 1004]
    assert [j.id for j in store.list([pb.JOB_STATE_FAILED])] == [job.id]
    assert store.list([pb.JOB_STATE_QUEUED]) == []
    assert store.counts() == {pb.JOB_STATE_FAILED: 1}


def test_an_uploading_job_is_listed_but_never_claimed_until_its_frames_are_in(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    job = store.add_uploading(_spec("streamed", priority=9), frames_total=3)
    assert job.state == pb.JOB_STATE_UPLOADING and job.stage == UPLOAD_STAGE and job.frames_total == 3
    assert job.message == "waiting for its frames to be uploaded"
    assert [j.id for j in store.list([pb.JOB_STATE_UPLOADING])] == [job.id]
    assert store.claim_next() is None  # waiting for frames outranks nothing
    queued = store.queue_uploaded(job.id, frames_total=4)
    assert queued.state == pb.JOB_STATE_QUEUED and queued.stage == "queued" and queued.frames_total == 4
    assert queued.message == ""
    assert store.claim_next().id == job.id


def test_queue_uploaded_does_not_revive_a_job_cancelled_meanwhile(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    job = store.add_uploading(_spec("streamed"), frames_total=2)
    store.finish(job.id, pb.JOB_STATE_CANCELLED, message="cancelled")
    assert store.queue_uploaded(job.id, frames_total=2) is None
    assert store.get(job.id).state == pb.JOB_STATE_CANCELLED
    assert store.queue_uploaded("no-such-job", frames_total=2) is None


def test_holding_the_store_keeps_other_threads_out_but_not_the_holder(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    claimed: list = []
    with store.holding():
        job = store.add(_spec("held"))  # the holder reads and writes as usual (the hold is re-entrant)
        other = threading.Thread(target=lambda: claimed.append(store.claim_next()))
        other.start()
        other.join(0.3)
        assert other.is_alive() and claimed == []  # another thread waits for the hold to end
    other.join(5)
    assert [j.id for j in claimed] == [job.id]
