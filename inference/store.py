"""JobStore: every job, durably, in SQLite (WAL).

A job is committed (synchronous=FULL) before SubmitJob answers, and every written frame is
recorded as it lands, so a daemon killed at any moment restarts with the truth: queued jobs stay
queued, running ones go back to the queue and resume from their first unwritten frame. A job
whose frames are still being uploaded is stored as UPLOADING, and queued when its last frame is in.

Every SQL statement of the daemon is here: other modules ask the store, never its database.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Optional

from voidlink.protos import pb

SCHEMA_VERSION = 1

TERMINAL_STATES = frozenset({pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED})

# The stage and message of a job stored before its frames arrived (JOB_STATE_UPLOADING).
UPLOAD_STAGE = "upload"
UPLOAD_MESSAGE = "waiting for its frames to be uploaded"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    state INTEGER NOT NULL,
    spec BLOB NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL NOT NULL DEFAULT 0,
    finished_at REAL NOT NULL DEFAULT 0,
    stage TEXT NOT NULL DEFAULT '',
    message TEXT NOT NULL DEFAULT '',
    frames_done INTEGER NOT NULL DEFAULT 0,
    frames_total INTEGER NOT NULL DEFAULT 0,
    error BLOB,
    result BLOB,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (state, priority DESC, seq);
CREATE TABLE IF NOT EXISTS frames (
    job_id TEXT NOT NULL,
    frame INTEGER NOT NULL,
    written_at REAL NOT NULL,
    PRIMARY KEY (job_id, frame)
);
CREATE TABLE IF NOT EXISTS log (
    job_id TEXT NOT NULL,
    time REAL NOT NULL,
    line TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_COLUMNS = (
    "id, priority, state, spec, created_at, started_at, finished_at, stage, message, "
    "frames_done, frames_total, error, result, attempts"
)


class JobStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection guarded by a lock: the daemon's writes are few (a row per frame at most)
        # and this keeps every statement serialised without per-thread connections.
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._lock = threading.RLock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) > SCHEMA_VERSION:
                raise RuntimeError(
                    f"job store {self.path} was written by a newer voidlink (schema {row[0]}); "
                    "upgrade voidlink or use another --data-dir"
                )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- writing -------------------------------------------------------------------------

    def holding(self) -> AbstractContextManager:
        """Hold the store: nothing else reads or writes it meanwhile (re-entrant, so the holder may)."""
        return self._lock

    def add(self, spec: pb.JobSpec, frames_total: int = 0) -> pb.Job:
        return self._insert(spec, frames_total, pb.JOB_STATE_QUEUED)

    def add_uploading(self, spec: pb.JobSpec, frames_total: int) -> pb.Job:
        """Store a job whose frames are still to come (JOB_STATE_UPLOADING): listed, watched and
        cancelled like any job, never claimed until `queue_uploaded`."""
        return self._insert(spec, frames_total, pb.JOB_STATE_UPLOADING, UPLOAD_STAGE, UPLOAD_MESSAGE)

    def queue_uploaded(self, job_id: str, frames_total: int) -> Optional[pb.Job]:
        """Queue an uploading job whose frames are all in; None when it is no longer uploading
        (cancelled meanwhile), so a cancel and the last frame cannot both win."""
        with self._lock:
            cursor = self._db.execute(
                "UPDATE jobs SET state=?, stage='queued', message='', frames_total=? WHERE id=? AND state=?",
                (pb.JOB_STATE_QUEUED, frames_total, job_id, pb.JOB_STATE_UPLOADING),
            )
            if cursor.rowcount == 0:
                return None
        return self.get(job_id)

    def _insert(self, spec: pb.JobSpec, frames_total: int, state: int, stage: str = "", message: str = "") -> pb.Job:
        job_id = uuid.uuid4().hex[:12]
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO jobs (id, priority, state, spec, created_at, frames_total, stage, message) "
                "VALUES (?,?,?,?,?,?,?,?)",
                (job_id, spec.params.priority, state, spec.SerializeToString(), now, frames_total, stage, message),
            )
        return self.get(job_id)

    def claim_next(self) -> Optional[pb.Job]:
        """Mark the best queued job running and return it (priority first, then submission order)."""
        with self._lock:
            row = self._db.execute(
                "SELECT id FROM jobs WHERE state=? ORDER BY priority DESC, seq ASC LIMIT 1",
                (pb.JOB_STATE_QUEUED,),
            ).fetchone()
            if row is None:
                return None
            self._db.execute(
                "UPDATE jobs SET state=?, started_at=?, attempts=attempts+1, stage='starting' WHERE id=?",
                (pb.JOB_STATE_RUNNING, time.time(), row[0]),
            )
            return self.get(row[0])

    def update(self, job_id: str, **fields: object) -> None:
        """Set plain columns (stage, message, frames_done, frames_total)."""
        allowed = {"stage", "message", "frames_done", "frames_total"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        if not fields:
            return
        assignments = ", ".join(f"{name}=?" for name in fields)
        with self._lock:
            self._db.execute(f"UPDATE jobs SET {assignments} WHERE id=?", (*fields.values(), job_id))

    def record_frame(self, job_id: str, frame: int, frames_done: int) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT OR IGNORE INTO frames (job_id, frame, written_at) VALUES (?,?,?)",
                (job_id, frame, time.time()),
            )
            self._db.execute("UPDATE jobs SET frames_done=? WHERE id=?", (frames_done, job_id))
            self._db.execute("COMMIT")

    def written_frames(self, job_id: str) -> list[int]:
        with self._lock:
            rows = self._db.execute("SELECT frame FROM frames WHERE job_id=? ORDER BY frame", (job_id,))
            return [r[0] for r in rows]

    def finish(
        self,
        job_id: str,
        state: int,
        *,
        message: str = "",
        error: Optional[pb.ErrorDetail] = None,
        result: Optional[pb.JobResult] = None,
    ) -> pb.Job:
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET state=?, finished_at=?, message=?, error=?, result=?, stage=? WHERE id=?",
                (
                    state,
                    time.time(),
                    message,
                    error.SerializeToString() if error is not None else None,
                    result.SerializeToString() if result is not None else None,
                    "done",
                    job_id,
                ),
            )
        return self.get(job_id)

    def requeue(self, job_id: str, message: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET state=?, message=?, stage='queued' WHERE id=?",
                (pb.JOB_STATE_QUEUED, message, job_id),
            )

    def requeue_interrupted(self) -> list[str]:
        """Jobs left running by a daemon that died: back to the queue, to resume."""
        with self._lock:
            rows = self._db.execute("SELECT id FROM jobs WHERE state=?", (pb.JOB_STATE_RUNNING,)).fetchall()
            for (job_id,) in rows:
                self.requeue(job_id, "resumed after the daemon restarted")
        return [r[0] for r in rows]

    def append_log(self, job_id: str, line: str) -> None:
        with self._lock:
            self._db.execute("INSERT INTO log VALUES (?,?,?)", (job_id, time.time(), line))

    def log_lines(self, job_id: str) -> list[str]:
        with self._lock:
            rows = self._db.execute("SELECT line FROM log WHERE job_id=? ORDER BY rowid", (job_id,))
            return [r[0] for r in rows]

    # -- reading -------------------------------------------------------------------------

    def get(self, job_id: str) -> Optional[pb.Job]:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id=?", (job_id,)).fetchone()
        return None if row is None else _to_job(row)

    def list(self, states: Iterable[int] = (), limit: int = 0) -> list[pb.Job]:
        states = list(states)
        query = f"SELECT {_COLUMNS} FROM jobs"
        args: list[object] = []
        if states:
            query += f" WHERE state IN ({','.join('?' * len(states))})"
            args += states
        query += " ORDER BY seq DESC"
        if limit > 0:
            query += " LIMIT ?"
            args.append(limit)
        with self._lock:
            rows = self._db.execute(query, args).fetchall()
        return [_to_job(r) for r in rows]

    def counts(self) -> dict[int, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        return {state: n for state, n in rows}


def _to_job(row: tuple) -> pb.Job:
    (job_id, _priority, state, spec, created, started, finished, stage, message, done, total, error, result,
     attempts) = row
    job = pb.Job(
        id=job_id,
        state=state,
        stage=stage,
        frames_done=done,
        frames_total=total,
        created_at=created,
        started_at=started,
        finished_at=finished,
        message=message,
        attempts=attempts,
        eta_seconds=-1.0,
    )
    job.spec.ParseFromString(spec)
    if error:
        job.error.ParseFromString(error)
    if result:
        job.result.ParseFromString(result)
    return job
