"""JobStore: every job, durably, in SQLite (WAL).

A job is committed (synchronous=FULL) before SubmitJob answers, and every written frame is
recorded as it lands, so a daemon killed at any moment restarts with the truth: queued jobs stay
queued, running ones go back to the queue and resume from their first unwritten frame. A job
whose frames are still being uploaded is stored as UPLOADING, and queued when its last frame is in.

Every SQL statement of the daemon is here: other modules ask the store, never its database.

Each job has an owner (the name of the token that submitted it; "" without tokens). A write that
fails (the disk full, the database locked by another process) is rolled back whole and raised as a
named error (`STORE_BUSY`, `DISK_FULL`) for the job at hand; the connection is left clean for the
next one. Ended jobs are kept for a configurable time and count (`Retention`, `prune`).
"""

from __future__ import annotations

import errno
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from voidlink.protos import pb

from voidlink.errors import InvalidInput, LimitExceeded, Unavailable, VoidlinkError

SCHEMA_VERSION = 2  # 2: jobs.owner
# How long a write waits for another process that holds the database, before STORE_BUSY.
BUSY_SECONDS = 5.0
# A summary's prompt is cut here: ListJobs rows stay small whatever a spec holds.
SUMMARY_PROMPT = 256
DEFAULT_PAGE = 100

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
    attempts INTEGER NOT NULL DEFAULT 0,
    owner TEXT NOT NULL DEFAULT ''
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
    "frames_done, frames_total, error, result, attempts, owner"
)


@dataclass(frozen=True)
class Retention:
    """How many ended jobs the store keeps, and for how long (0: no bound); running and queued jobs stay."""

    days: float = 0.0
    count: int = 0

    @staticmethod
    def parse(text: str) -> Retention:
        """`90d`, `5000`, `90d,5000` (days and/or a count; 0 or `all`: keep every ended job)."""
        days, count = 0.0, 0
        for part in (p.strip().lower() for p in text.split(",") if p.strip()):
            try:
                if part == "all":
                    continue
                if part.endswith("d"):
                    days = float(part[:-1])
                else:
                    count = int(part)
            except ValueError:
                days = count = -1
            if days < 0 or count < 0:
                raise InvalidInput(
                    f"--keep-jobs '{text}': give days as 30d, a count as 5000, or both as 30d,5000",
                    reason="BAD_VALUE",
                    field="keep_jobs",
                )
        return Retention(days, count)

    def __str__(self) -> str:
        said = [f"{self.days:g} days" if self.days else "", f"{self.count} jobs" if self.count else ""]
        return " and ".join(w for w in said if w) or "every ended job"


# Ended jobs a daemon keeps unless told otherwise: three months, and at most this many.
DEFAULT_RETENTION = Retention(days=90.0, count=10_000)


class JobStore:
    def __init__(self, path: Path, busy_seconds: float = BUSY_SECONDS) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection guarded by a lock: the daemon's writes are few (a row per frame at most)
        # and this keeps every statement serialised without per-thread connections.
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=busy_seconds)
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
            elif int(row[0]) < 2:
                # Jobs stored before owners belong to nobody in particular: every token sees them,
                # as every token did when they were submitted.
                columns = {r[1] for r in self._db.execute("PRAGMA table_info(jobs)")}
                if "owner" not in columns:
                    self._db.execute("ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT ''")
                self._db.execute("UPDATE meta SET value=? WHERE key='schema'", (str(SCHEMA_VERSION),))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed whole, or rolled back whole and raised as a named error."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                self._db.execute("COMMIT")
            except BaseException as error:
                if self._db.in_transaction:
                    try:
                        self._db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                if isinstance(error, sqlite3.OperationalError):
                    raise self._named(error) from error
                raise

    def _named(self, error: sqlite3.Error) -> VoidlinkError:
        text = str(error).lower()
        if "locked" in text or "busy" in text:
            return Unavailable(
                f"the job store {self.path} is busy (another process holds it); try again shortly",
                reason="STORE_BUSY",
                file=str(self.path),
            )
        # SQLITE_FULL (13): "database or disk is full"; a "disk I/O error" is not a full disk.
        if getattr(error, "sqlite_errorcode", 0) == 13 or "is full" in text:
            return LimitExceeded(
                f"disk full at {self.path.parent}: the job store cannot be written; free space there",
                reason="DISK_FULL",
                file=str(self.path.parent),
            )
        return Unavailable(
            f"the job store {self.path} cannot be written: {error}", reason="STORE_UNWRITABLE", file=str(self.path)
        )

    def writable(self) -> Optional[str]:
        """None when the store takes writes now, else why not (for the health check)."""
        try:
            with self._writing() as db:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('health', ?)", (str(time.time()),))
        except VoidlinkError as error:
            return error.message
        except OSError as error:
            return f"the job store {self.path} cannot be written: {errno.errorcode.get(error.errno, error)}"
        return None

    # -- writing -------------------------------------------------------------------------

    def holding(self) -> AbstractContextManager:
        """Hold the store: nothing else reads or writes it meanwhile (re-entrant, so the holder may)."""
        return self._lock

    def add(self, spec: pb.JobSpec, frames_total: int = 0, owner: str = "") -> pb.Job:
        return self._insert(spec, frames_total, pb.JOB_STATE_QUEUED, owner=owner)

    def add_uploading(self, spec: pb.JobSpec, frames_total: int, owner: str = "") -> pb.Job:
        """Store a job whose frames are still to come (JOB_STATE_UPLOADING): listed, watched and
        cancelled like any job, never claimed until `queue_uploaded`."""
        return self._insert(spec, frames_total, pb.JOB_STATE_UPLOADING, UPLOAD_STAGE, UPLOAD_MESSAGE, owner)

    def queue_uploaded(self, job_id: str, frames_total: int) -> Optional[pb.Job]:
        """Queue an uploading job whose frames are all in; None when it is no longer uploading
        (cancelled meanwhile), so a cancel and the last frame cannot both win."""
        with self._writing() as db:
            cursor = db.execute(
                "UPDATE jobs SET state=?, stage='queued', message='', frames_total=? WHERE id=? AND state=?",
                (pb.JOB_STATE_QUEUED, frames_total, job_id, pb.JOB_STATE_UPLOADING),
            )
            if cursor.rowcount == 0:
                return None
        return self.get(job_id)

    def _insert(
        self, spec: pb.JobSpec, frames_total: int, state: int, stage: str = "", message: str = "", owner: str = ""
    ) -> pb.Job:
        job_id = uuid.uuid4().hex[:12]
        now = time.time()
        row = (job_id, spec.params.priority, state, spec.SerializeToString(), now, frames_total, stage, message, owner)
        with self._writing() as db:
            db.execute(
                "INSERT INTO jobs (id, priority, state, spec, created_at, frames_total, stage, message, owner) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                row,
            )
        return self.get(job_id)

    def claim_next(self) -> Optional[pb.Job]:
        """Mark the best queued job running and return it (priority first, then submission order)."""
        with self._writing() as db:
            row = db.execute(
                "SELECT id FROM jobs WHERE state=? ORDER BY priority DESC, seq ASC LIMIT 1",
                (pb.JOB_STATE_QUEUED,),
            ).fetchone()
            if row is None:
                return None
            db.execute(
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
        with self._writing() as db:
            db.execute(f"UPDATE jobs SET {assignments} WHERE id=?", (*fields.values(), job_id))

    def record_frame(self, job_id: str, frame: int, frames_done: int) -> None:
        with self._writing() as db:
            db.execute(
                "INSERT OR IGNORE INTO frames (job_id, frame, written_at) VALUES (?,?,?)",
                (job_id, frame, time.time()),
            )
            db.execute("UPDATE jobs SET frames_done=? WHERE id=?", (frames_done, job_id))

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
        with self._writing() as db:
            db.execute(
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
        with self._writing() as db:
            db.execute(
                "UPDATE jobs SET state=?, message=?, stage='queued' WHERE id=?",
                (pb.JOB_STATE_QUEUED, message, job_id),
            )

    def requeue_interrupted(self) -> list[str]:
        """Jobs left running by a daemon that died: back to the queue, to resume."""
        with self._writing() as db:
            rows = db.execute("SELECT id FROM jobs WHERE state=?", (pb.JOB_STATE_RUNNING,)).fetchall()
            db.executemany(
                "UPDATE jobs SET state=?, message=?, stage='queued' WHERE id=?",
                [(pb.JOB_STATE_QUEUED, "resumed after the daemon restarted", job_id) for (job_id,) in rows],
            )
        return [r[0] for r in rows]

    def append_log(self, job_id: str, line: str) -> None:
        with self._writing() as db:
            db.execute("INSERT INTO log VALUES (?,?,?)", (job_id, time.time(), line))

    def log_lines(self, job_id: str) -> list[str]:
        with self._lock:
            rows = self._db.execute("SELECT line FROM log WHERE job_id=? ORDER BY rowid", (job_id,))
            return [r[0] for r in rows]

    # -- reading -------------------------------------------------------------------------

    def get(self, job_id: str) -> Optional[pb.Job]:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id=?", (job_id,)).fetchone()
        return None if row is None else _to_job(row)

    def list(self, states: Iterable[int] = (), limit: int = 0, owner: Optional[str] = None) -> list[pb.Job]:
        """Whole jobs, newest first (`owner`: only that owner's; None: everyone's)."""
        return [_to_job(r) for r in self._rows(states, limit, owner)]

    def page(
        self, states: Iterable[int] = (), size: int = DEFAULT_PAGE, token: str = "", owner: Optional[str] = None
    ) -> tuple[list[pb.Job], str]:
        """One page of job summaries, newest first, and the token of the next page ("" on the last)."""
        before = 0
        if token:
            try:
                before = int(token)
            except ValueError:
                before = -1
            if before <= 0:
                raise InvalidInput(
                    f"page_token '{token[:40]}' was not given by this daemon; start again without one",
                    reason="BAD_PAGE_TOKEN",
                    field="page_token",
                )
        rows = self._rows(states, size + 1, owner, before, with_seq=True)
        more = len(rows) > size
        rows = rows[:size]
        jobs = [summary(_to_job(row[1:])) for row in rows]
        return jobs, (str(rows[-1][0]) if more and rows else "")

    def _rows(
        self, states: Iterable[int], limit: int, owner: Optional[str], before: int = 0, with_seq: bool = False
    ) -> list[tuple]:
        states = list(states)
        query = f"SELECT {'seq, ' if with_seq else ''}{_COLUMNS} FROM jobs"
        where: list[str] = []
        args: list[object] = []
        if states:
            where.append(f"state IN ({','.join('?' * len(states))})")
            args += states
        if owner is not None:
            where.append("owner=?")
            args.append(owner)
        if before > 0:
            where.append("seq<?")
            args.append(before)
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY seq DESC"
        if limit > 0:
            query += " LIMIT ?"
            args.append(limit)
        with self._lock:
            return self._db.execute(query, args).fetchall()

    def prune(self, retention: Retention, now: Optional[float] = None) -> list[str]:
        """Forget ended jobs beyond `retention` (older than its days, or beyond its count, newest kept);
        returns their ids, for the caller to remove what they left on disk."""
        if not retention.days and not retention.count:
            return []
        now = time.time() if now is None else now
        ended = tuple(TERMINAL_STATES)
        marks = ",".join("?" * len(ended))
        with self._lock:
            rows = self._db.execute(
                f"SELECT id, finished_at FROM jobs WHERE state IN ({marks}) ORDER BY seq DESC", ended
            ).fetchall()
        doomed = [
            job_id
            for index, (job_id, finished) in enumerate(rows)
            if (retention.count and index >= retention.count)
            or (retention.days and finished and now - finished > retention.days * 86400.0)
        ]
        if doomed:
            with self._writing() as db:
                for start in range(0, len(doomed), 500):
                    chunk = doomed[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    for table in ("jobs", "frames", "log"):
                        column = "id" if table == "jobs" else "job_id"
                        db.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", chunk)
        return doomed

    def counts(self) -> dict[int, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        return {state: n for state, n in rows}


def _to_job(row: tuple) -> pb.Job:
    (
        job_id,
        _priority,
        state,
        spec,
        created,
        started,
        finished,
        stage,
        message,
        done,
        total,
        error,
        result,
        attempts,
        owner,
    ) = row
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
        owner=owner,
    )
    job.spec.ParseFromString(spec)
    if error:
        job.error.ParseFromString(error)
    if result:
        job.result.ParseFromString(result)
    return job


def summary(job: pb.Job) -> pb.Job:
    """A job as ListJobs shows it: everything but the clips' OTIO JSON, uploaded frame lists, and a
    prompt beyond SUMMARY_PROMPT characters (GetJob has the whole spec)."""
    spec = job.spec
    for clip in (spec.source, spec.mask, spec.affected):
        clip.ClearField("otio_json")
        clip.ClearField("uploaded_frames")
    if len(spec.params.prompt) > SUMMARY_PROMPT:
        spec.params.prompt = spec.params.prompt[: SUMMARY_PROMPT - 3] + "..."
    spec.params.ClearField("negative_prompt")
    job.result.ClearField("otio_json")
    return job
