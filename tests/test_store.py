"""JobStore: durable, ordered, resumable."""

from __future__ import annotations

from voidlink.inference.store import JobStore
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
