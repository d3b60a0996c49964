"""The daemon's record of each worker of the pool, and which idle worker a job goes to."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


class WorkerLost(Exception):
    """The worker running a job died (its process, or its node)."""


@dataclass
class WorkerRecord:
    """The daemon's view of one worker of the pool."""

    name: str
    handle: Any  # the Ray actor handle
    gpu: bool
    state: str = "starting"  # starting | idle | busy | lost
    pid: int = 0
    host: str = ""
    loaded: set[str] = field(default_factory=set)
    job_id: str = ""

    def describe(self) -> dict:
        """Name, pid, host, kind, state, resident backends and job, as `voidlink serve` prints them."""
        return {
            "name": self.name,
            "pid": self.pid,
            "host": self.host,
            "gpu": self.gpu,
            "state": self.state,
            "loaded": sorted(self.loaded),
            "job_id": self.job_id,
        }


def place(workers: list[WorkerRecord], backend_name: str) -> Optional[WorkerRecord]:
    """The idle worker a job on `backend_name` goes to, None when none is idle.

    For classical, a CPU worker before a GPU one, so the GPUs stay free for VOID jobs; then a worker
    with the backend already loaded (VOID takes minutes to load) before one that would load it."""
    idle = [w for w in workers if w.state == "idle" and (w.gpu or backend_name != "void")]
    if not idle:
        return None
    return min(idle, key=lambda w: (w.gpu and backend_name != "void", backend_name not in w.loaded))
