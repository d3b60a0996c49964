"""The pool's workers over their life: Ray joined (or started), actors spawned and awaited, a dead one
replaced, a worker lent to a job and taken back, the pool closed.

`WorkerPool` owns the daemon's `WorkerRecord`s and the lock that guards them; which idle worker a
job gets is `placement.place`.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any, Callable, Optional

from voidlink.inference.pool.messages import Availability, Hello, WorkerStats
from voidlink.inference.pool.options import PoolOptions
from voidlink.inference.pool.placement import WorkerRecord, place
from voidlink.inference.pool.worker import PoolWorker

from voidlink.errors import JobCancelled, Unavailable

log = logging.getLogger("voidlink.cluster")

# How often a job waiting for a worker looks again (and sees its cancel).
WAIT_SECONDS = 0.1


class WorkerPool:
    """The workers of one daemon's pool, as the daemon sees them."""

    def __init__(self, ray: Any, options: PoolOptions) -> None:
        self.ray = ray
        self.options = options
        self._started_ray = False
        self._cond = threading.Condition()
        self._workers: list[WorkerRecord] = []
        self._prefix = f"voidlink-{uuid.uuid4().hex[:6]}"
        self._count = 0
        self._closed = False
        self._void: Optional[Availability] = None
        self.slots = 0

    def start(self, timeout: float = 120.0) -> list[dict]:
        """Connect to (or start) Ray and wait for every worker to be ready; returns each one's description."""
        ray = self.ray
        options = self.options
        if not ray.is_initialized():
            init: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if options.address == "auto":
                init["num_cpus"] = max(options.cpu_workers, 1)
                # Ray starts its workers 15 steps nicer than itself, where any busy process on the machine
                # starves them (two CPU-bound programs beside a pool on 2 cores: 4-8 s a 320x192 frame, not
                # 0.15). A job on the pool runs at the daemon's priority, as on a single daemon. (A cluster
                # joined is configured by whoever runs it.)
                init["_system_config"] = {"worker_niceness": 0}
                self._started_ray = True
                # "local": a Ray of this daemon's own, never a cluster that happens to run on this machine.
                ray.init(address="local", **init)
            else:
                try:
                    ray.init(address=options.address, **init)
                except Exception as error:
                    raise Unavailable(
                        f"--cluster: cannot connect to the Ray cluster at {options.address}: {error}",
                        reason="CLUSTER_UNREACHABLE",
                        field="cluster",
                    ) from error
        gpus = int(ray.cluster_resources().get("GPU", 0))
        for _ in range(options.cpu_workers):
            self._spawn(gpu=False)
        for _ in range(gpus):
            self._spawn(gpu=True)
        if not self._workers:
            raise Unavailable(
                "--cluster: the pool has no worker (--cluster-workers 0 and no GPU in the cluster)",
                reason="EMPTY_POOL",
                field="cluster_workers",
            )
        self.slots = len(self._workers)
        deadline = time.monotonic() + timeout
        for worker in list(self._workers):
            self._await_ready(worker, max(1.0, deadline - time.monotonic()))
            if worker.state != "idle":
                cpus = int(ray.cluster_resources().get("CPU", 0))
                raise Unavailable(
                    f"--cluster: worker {worker.name} did not start within {timeout:.0f} s; is voidlink installed "
                    f"on the cluster's nodes (the same version as this daemon), and does the cluster have the "
                    f"CPUs asked for ({options.cpu_workers} CPU workers, {cpus} CPUs in the cluster)?",
                    reason="WORKER_DID_NOT_START",
                    field="cluster",
                )
        return [w.describe() for w in self._workers]

    def _spawn(self, gpu: bool) -> WorkerRecord:
        actor_class = self.ray.remote(PoolWorker)
        name = f"{self._prefix}-{'gpu' if gpu else 'cpu'}-{self._count}"
        self._count += 1
        resources = {"num_cpus": 0, "num_gpus": 1} if gpu else {"num_cpus": 1}
        handle = actor_class.options(name=name, max_concurrency=4, **resources).remote(
            name, self.options.weights, 0 if gpu else 1, self.options.storage
        )
        worker = WorkerRecord(name, handle, gpu)
        with self._cond:
            self._workers.append(worker)
        return worker

    def _await_ready(self, worker: WorkerRecord, timeout: float) -> None:
        try:
            hello: Hello = self.ray.get(worker.handle.hello.remote(), timeout=timeout)
        except Exception:
            log.exception("worker %s did not start", worker.name)
            with self._cond:
                worker.state = "lost"
            return
        with self._cond:
            worker.pid, worker.host, worker.loaded = hello.pid, hello.host, set(hello.loaded)
            if worker.state == "starting":
                worker.state = "idle"
            self._cond.notify_all()
        log.info("worker %s ready: pid %d on %s", worker.name, worker.pid, worker.host)

    def replace(self, lost: WorkerRecord) -> None:
        """Drop a dead worker and start another in its place, so the pool keeps its size."""
        with self._cond:
            lost.state = "lost"
            if lost in self._workers:
                self._workers.remove(lost)
            if self._closed:
                return
        try:
            self.ray.kill(lost.handle, no_restart=True)
        except Exception:  # already gone with its node
            pass
        worker = self._spawn(lost.gpu)
        threading.Thread(
            target=self._await_ready, args=(worker, 120.0), name=f"voidlink-start-{worker.name}", daemon=True
        ).start()

    def workers(self) -> list[dict]:
        """Each worker's name, pid, host, state and resident backends, as the daemon last saw them."""
        with self._cond:
            return [w.describe() for w in self._workers]

    def stats(self) -> list[WorkerStats]:
        """What each live worker says it did: jobs, frames, cancelled and failed jobs."""
        with self._cond:
            handles = [w.handle for w in self._workers if w.state in ("idle", "busy")]
        return self.ray.get([h.stats.remote() for h in handles], timeout=30)

    def segment_workers(self) -> int:
        """How many workers a classical job may be split over: the CPU workers, else every worker."""
        with self._cond:
            return sum(1 for w in self._workers if not w.gpu) or len(self._workers)

    def void_availability(self) -> Availability:
        """Whether the pool's GPU workers can run VOID (asked once: libraries, CUDA and weights on a worker)."""
        if self._void is None:
            with self._cond:
                gpu_workers = [w for w in self._workers if w.gpu]
            if gpu_workers:
                self._void = self.ray.get(gpu_workers[0].handle.availability.remote("void"), timeout=60)
            else:
                self._void = Availability(False, "void: the pool has no GPU worker")
        return self._void

    def acquire(self, backend_name: str, cancelled: Callable[[], bool]) -> WorkerRecord:
        """An idle worker able to run `backend_name`, marked busy; waits for one (until cancelled)."""
        with self._cond:
            while True:
                if cancelled():
                    raise JobCancelled("cancelled while waiting for a worker")
                if self._closed:
                    raise JobCancelled("the pool is closing")
                able = [w for w in self._workers if w.gpu or backend_name != "void"]
                if not able:
                    raise Unavailable(
                        f"no worker of the pool can run the {backend_name} backend",
                        reason="BACKEND_UNAVAILABLE",
                        field="spec.params.backend",
                    )
                worker = place(able, backend_name)
                if worker is not None:
                    worker.state = "busy"
                    return worker
                self._cond.wait(WAIT_SECONDS)

    def note_loaded(self, worker: WorkerRecord, loaded: tuple[str, ...]) -> None:
        """The backends a worker said it holds at the end of a run (placement prefers those)."""
        with self._cond:
            worker.loaded = set(loaded)

    def release(self, worker: WorkerRecord) -> None:
        """The worker back in the pool: idle, unless it was lost meanwhile."""
        with self._cond:
            worker.job_id = ""
            if worker.state == "busy":
                worker.state = "idle"
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            workers, self._workers = self._workers, []
            self._cond.notify_all()
        for worker in workers:
            try:
                self.ray.kill(worker.handle, no_restart=True)
            except Exception:
                pass
        if self._started_ray and self.ray.is_initialized():
            self.ray.shutdown()
