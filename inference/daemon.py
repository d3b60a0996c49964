"""The daemon's lifecycle: start it, stop it, serve until a signal, and tell what it is (`GetInfo`).

`Daemon` owns one data dir (locked against a second daemon) and everything it holds for its
lifetime: the job store, the frame cache and transfer folders, the uploads and downloads, the
scheduler and the gRPC server. `start` brings them up in the order that keeps the store true (a
commit a crash interrupted is finished before any call is served or any job runs) and `stop` takes
them down the other way round. Its `SecurityConfig` says how far it trusts the network: on
loopback with no options it behaves as a local tool; beyond loopback it wants TLS, tokens and
roots (see `voidlink.inference.security`). All its state lives on the object: two daemons in one
process (on two data dirs) share nothing but the process-wide path guards noted in `start`.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import grpc
from voidlink.inference.backends import BACKEND_NAMES, BackendRegistry
from voidlink.inference.backends.matte import MatteRegistry
from voidlink.inference.bounds import DEFAULT_RPC_THREADS, StreamSlots
from voidlink.inference.datadir import DataDirLock, default_data_dir
from voidlink.inference.downloads import RESULT_DAYS, Downloads
from voidlink.inference.events import EventBus
from voidlink.inference.jobs import Jobs
from voidlink.inference.scheduler import Executor, Scheduler
from voidlink.inference.security import Roots, SecurityConfig, TokenFile, is_loopback
from voidlink.inference.server import RpcServer
from voidlink.inference.service import VoidLinkService
from voidlink.inference.store import DEFAULT_RETENTION, JobStore, Retention
from voidlink.inference.transfer import FrameCache, Transfers
from voidlink.inference.uploads import Uploads
from voidlink.protos import DEFAULT_ADDRESS, PROTOCOL_VERSION, pb, wire

import voidlink
from voidlink.errors import VoidlinkError

HEALTH_SECONDS = 5.0  # how often the daemon looks whether its job store takes writes
PRUNE_SECONDS = 3600.0  # how often it forgets ended jobs beyond its retention

log = logging.getLogger("voidlink.daemon")

STATE_FILE = "daemon.json"  # {"pid", "address", "version"}, written once the daemon serves


class Daemon:
    def __init__(
        self,
        listen: str = DEFAULT_ADDRESS,
        data_dir: Optional[Path] = None,
        weights: Optional[str] = None,
        max_workers: int = DEFAULT_RPC_THREADS,
        security: Optional[SecurityConfig] = None,
        executor: Optional[Executor] = None,
        retention: Retention = DEFAULT_RETENTION,
        preload: Sequence[str] = (),
    ) -> None:
        self.listen = listen
        self.preload = tuple(preload)  # backends to load once serving, ahead of the first job
        self.retention = retention
        self.executor = executor  # None: jobs run in this process; else where it sends them (a Ray pool)
        self.data_dir = Path(data_dir) if data_dir else default_data_dir()
        self.security = security or SecurityConfig()
        self.warnings: list[str] = []
        self.registry = BackendRegistry(weights)
        self.mattes = MatteRegistry(weights)
        self.bus = EventBus()
        self.stopping = threading.Event()
        self._health_problem: Optional[str] = None
        self._lock = DataDirLock(self.data_dir)
        self._max_workers = max_workers
        self.address = ""
        self.store: JobStore
        self.cache: FrameCache
        self.transfers: Transfers
        self.downloads: Downloads
        self.roots: Roots
        self.scheduler: Scheduler
        self.uploads: Uploads
        self.jobs: Jobs
        self.server: RpcServer

    def start(self) -> str:
        """Lock the data dir, open the store, bind and serve; returns the bound address."""
        security = self.security
        self.warnings = security.check_listen_policy(self.listen)
        loopback = is_loopback(self.listen)
        tokens = TokenFile(security.tokens_file) if security.tokens_file else None
        self._lock.acquire()
        try:
            self.store = JobStore(self.data_dir / "jobs.sqlite")
            resumed = self.store.requeue_interrupted()
            self.cache = FrameCache(self.data_dir / "cache", security.cache_max_bytes)
            self.transfers = Transfers(self.data_dir, self.cache, security.max_upload_bytes)
            self.downloads = Downloads(
                self.bus, self.transfers, wire.chunk_bytes_within(security.max_message_bytes)
            )
            # With no roots a loopback daemon reads and writes where its user may (as a local tool does);
            # beyond loopback it takes only the roots it was given, none meaning streamed frames only.
            self.roots = Roots(
                list(security.roots),
                confined=bool(security.roots) or not loopback,
                internal=[str(self.transfers.inputs), str(self.transfers.results)],
            )
            self._discard_finished_inputs()
            self.scheduler = Scheduler(
                self.store,
                self.bus,
                self.registry,
                executor=self.executor,
                guard=self.roots.confinement(),
                mattes=self.mattes,
            )
            self.uploads = Uploads(
                self.store, self.bus, self.cache, self.transfers, self.scheduler, security.max_upload_bytes
            )
            self.jobs = Jobs(
                self.store,
                self.bus,
                self.scheduler,
                self.transfers,
                self.roots,
                self.uploads,
                self.downloads,
                self.stopping,
            )
            self.server = RpcServer(
                VoidLinkService(
                    self.jobs,
                    self.uploads,
                    self.roots,
                    self.info,
                    callers=(lambda context: tokens.caller(context.invocation_metadata())) if tokens else None,
                    streams=StreamSlots(self._max_workers, shared=bool(tokens)),
                ),
                max_workers=self._max_workers,
                max_message_bytes=security.max_message_bytes,
                tokens=tokens,
                loopback=loopback,
            )
            self.address = self.server.bind(self.listen, security.server_credentials())
            # Before any call is served or any job runs: a commit a crash interrupted is finished first.
            finished = self.scheduler.recover()
            if finished:
                log.info("finished moving the frames of %d job(s) into place: %s", len(finished), ", ".join(finished))
            self._start_preloads()
            self.server.start()
            self.scheduler.start()
            self.uploads.follow_uploading_jobs()
            self.server.serving(True)
            self._health = threading.Thread(target=self._watch_health, name="voidlink-health", daemon=True)
            self._health.start()
            self._write_state()
            if resumed:
                log.info("resuming %d interrupted job(s): %s", len(resumed), ", ".join(resumed))
            for warning in self.warnings:
                log.warning(warning)
            return self.address
        except BaseException:
            self._lock.release()
            raise

    def check_health(self) -> bool:
        """Whether the daemon can take work now (its store takes writes), as health then answers:
        NOT_SERVING while the store cannot be written, SERVING again once it can."""
        problem = self.store.writable()
        if problem != self._health_problem:
            if problem:
                log.error("not serving: %s", problem)
            else:
                log.info("serving again: the job store takes writes")
            self._health_problem = problem
        if not self.stopping.is_set():
            self.server.serving(problem is None)
        return problem is None

    def prune(self) -> list[str]:
        """Forget the ended jobs beyond the retention (their output files stay); returns their ids."""
        gone = self.store.prune(self.retention)
        if gone:
            log.info("forgot %d ended job(s) beyond the retention (%s)", len(gone), self.retention)
        return gone

    def _watch_health(self) -> None:
        pruned = 0.0
        while not self.stopping.wait(HEALTH_SECONDS):
            try:
                self.check_health()
                if time.monotonic() - pruned > PRUNE_SECONDS:
                    pruned = time.monotonic()
                    self.prune()
            except Exception:  # noqa: BLE001 - the watch goes on; the next look may succeed
                log.exception("the health check failed")

    def stop(self, grace: float = 5.0) -> None:
        if self.stopping.is_set():
            return
        self.stopping.set()
        log.info("shutting down")
        self.server.serving(False)
        self.scheduler.stop(timeout=30.0)
        self.server.stop(grace)
        self.store.close()
        self._lock.release()

    def _start_preloads(self) -> None:
        """Load the --preload backends in the background: the daemon answers calls while a model that
        takes a minute to load comes in, and the first job waits only for what is left of that minute."""
        for name in self.preload:
            if self.mattes.knows(name):  # matte jobs run in this process, pool or not
                try:
                    self.mattes.preload(name)
                except VoidlinkError as error:
                    self.warnings.append(str(error))
                continue
            if self.executor is not None:
                # The pool's workers keep their own backends resident; this process runs no job itself.
                self.warnings.append(f"--preload {name}: the Ray pool's workers load backends, not the daemon")
                continue
            try:
                self.registry.preload(name)
            except VoidlinkError as error:  # refused before loading: the daemon serves without it
                self.warnings.append(str(error))

    def serve_forever(self) -> None:
        """Block until SIGTERM/SIGINT, then shut down gracefully (running jobs resume next start)."""
        done = threading.Event()

        def on_signal(signum, frame):
            done.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)
        while not done.wait(0.5):
            pass
        self.stop()

    def info(self) -> pb.GetInfoResponse:
        """What `GetInfo` answers: versions, queue, backends, roots and limits of this daemon."""
        counts = self.store.counts()
        info = pb.GetInfoResponse(
            version=voidlink.__version__,
            protocol_version=PROTOCOL_VERSION,
            data_dir=str(self.data_dir),
            pid=os.getpid(),
            queue=pb.QueueInfo(queued=counts.get(pb.JOB_STATE_QUEUED, 0), running=counts.get(pb.JOB_STATE_RUNNING, 0)),
            devices=[pb.Device(name="cpu", kind="cpu", description=platform.processor() or platform.machine())],
        )
        for name in BACKEND_NAMES:
            state = self.registry.availability(name)
            info.backends.add(
                name=name,
                available=state.available,
                reason=state.reason,
                detail=state.detail,
                loaded=self.registry.is_loaded(name),
                licences=state.licences,
            )
            if name in self.registry.preload_errors:
                info.backends[-1].detail += f" (preload failed: {self.registry.preload_errors[name]})"
            elif name in self.preload and not self.registry.is_loaded(name) and state.available:
                info.backends[-1].detail += " (loading ahead of the first job)"
        info.default_backend = self.registry.resolve("auto")
        for kind, name, state, loaded in self.mattes.listing():
            info.matte_trackers.add(
                name=name,
                available=state.available,
                reason=state.reason,
                detail=f"{kind}: {state.detail}" if state.detail else kind,
                loaded=loaded,
                licences=state.licences,
            )
            if name in self.mattes.preload_errors:
                info.matte_trackers[-1].detail += f" (preload failed: {self.mattes.preload_errors[name]})"
        info.libraries.update(library_versions())
        info.roots.extend(self.roots.folders)
        info.confined = self.roots.confined
        info.tls = self.security.tls
        info.tokens_required = self.security.tokens_file is not None
        info.max_message_bytes = self.security.max_message_bytes
        info.max_upload_bytes = self.security.max_upload_bytes
        info.cache_max_bytes = self.cache.max_bytes
        info.cache_bytes = self.cache.used_bytes
        return info

    def _discard_finished_inputs(self) -> None:
        """Uploaded inputs of jobs that ended are links into the cache: drop them at each start, and
        streamed-back results nobody fetched within RESULT_DAYS."""
        expired = time.time() - RESULT_DAYS * 86400
        for job in self.store.list([pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED], 0):
            self.transfers.discard_inputs(job.spec)
            folder = self.transfers.result_folder(job.spec)
            if folder is not None and job.finished_at < expired:
                shutil.rmtree(folder, ignore_errors=True)

    def _write_state(self) -> None:
        """Where this daemon listens, for `voidlink stop` and clients that find the local daemon."""
        state = {"pid": os.getpid(), "address": self.address, "version": voidlink.__version__}
        tmp = self.data_dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.data_dir / STATE_FILE)


def library_versions() -> dict[str, str]:
    """The versions of the libraries the daemon's media and RPC stand on (for GetInfo and doctor)."""
    versions = {"python": sys.version.split()[0], "grpcio": grpc.__version__}
    for label, module in (
        ("OpenImageIO", "OpenImageIO"),
        ("OpenColorIO", "PyOpenColorIO"),
        ("opentimelineio", "opentimelineio"),
        ("opencv", "cv2"),
        ("numpy", "numpy"),
    ):
        try:
            versions[label] = str(__import__(module).__version__)
        except Exception as exc:  # a broken optional library is reported, not fatal
            versions[label] = f"unavailable ({exc})"
    return versions
