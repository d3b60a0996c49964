"""The daemon: the VoidLink gRPC service over the JobStore and the Scheduler.

`Daemon` owns the data dir (locked against a second daemon), the store, the scheduler, the frame
cache and the gRPC server with the standard health and reflection services. Its `SecurityConfig`
says how far it trusts the network: on loopback with no options it behaves as it always has;
beyond loopback it wants TLS, tokens and roots (see `voidlink.inference.security`).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import platform
import queue
import shutil
import signal
import sys
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Optional

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from voidlink.inference import pipeline
from voidlink.inference.backends import BACKEND_NAMES, BackendRegistry
from voidlink.inference.datadir import DataDirLock, default_data_dir
from voidlink.inference.downloads import RESULT_DAYS, Downloads
from voidlink.inference.events import EventBus
from voidlink.inference.probe import check_client_paths, probe_paths
from voidlink.inference.scheduler import Executor, Scheduler
from voidlink.inference.security import (
    AuthInterceptor,
    Roots,
    SecurityConfig,
    TokenFile,
    is_loopback,
)
from voidlink.inference.store import TERMINAL_STATES, JobStore
from voidlink.inference.transfer import (
    FrameCache,
    Transfers,
)
from voidlink.inference.uploads import Uploads
from voidlink.media import image
from voidlink.protos import (
    DEFAULT_ADDRESS,
    PROTOCOL_METADATA_KEY,
    PROTOCOL_VERSION,
    SERVICE_NAME,
    pb,
    rpc,
    status,
    wire,
)

import voidlink
from voidlink.errors import (
    InvalidInput,
    NotFound,
    ProtocolMismatch,
    Unavailable,
    VoidlinkError,
)

log = logging.getLogger("voidlink.daemon")


def _abort(context: grpc.ServicerContext, error: VoidlinkError) -> None:
    context.set_trailing_metadata(status.trailers_of(error))
    context.abort(getattr(grpc.StatusCode, error.grpc_code), error.message)


def _rpc(method):
    """Protocol check and error mapping shared by every RPC."""

    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            self._check_protocol(context)
            return method(self, request, context)
        except VoidlinkError as error:
            _abort(context, error)

    return wrapper


def _stream_rpc(method):
    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            self._check_protocol(context)
            yield from method(self, request, context)
        except VoidlinkError as error:
            _abort(context, error)

    return wrapper


class VoidLinkService(rpc.VoidLinkServicer):
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.store = daemon.store

    def _check_protocol(self, context: grpc.ServicerContext) -> None:
        for key, value in context.invocation_metadata():
            if key == PROTOCOL_METADATA_KEY and value != str(PROTOCOL_VERSION):
                raise ProtocolMismatch(
                    f"this daemon speaks voidlink protocol {PROTOCOL_VERSION} (voidlink {voidlink.__version__}); "
                    f"the client speaks {value}: install the same voidlink version on both sides",
                    field="metadata." + PROTOCOL_METADATA_KEY,
                )

    def _job(self, job_id: str) -> pb.Job:
        if not job_id:
            raise InvalidInput("no job id given", reason="MISSING_FIELD", field="job_id")
        job = self.store.get(job_id)
        if job is None:
            raise NotFound(f"no job with id '{job_id}'", reason="JOB_NOT_FOUND", field="job_id")
        return job

    @_rpc
    def SubmitJob(self, request: pb.SubmitJobRequest, context) -> pb.SubmitJobResponse:
        spec = request.spec
        self.daemon.scheduler.executor.resolve(spec.params.backend)  # unknown or unavailable backend: refuse now
        check_client_paths(self.daemon.roots, spec)
        transfers = self.daemon.transfers
        if transfers.streamed(spec):
            spec = transfers.materialise(spec, missing_ok=request.upload_follows)
            if request.upload_follows:
                job = self.daemon.uploads.add_uploading(spec)
                if job is not None:
                    return pb.SubmitJobResponse(job=job)
        try:
            prepared = pipeline.prepare_job(spec)
        except BaseException:
            transfers.discard_inputs(spec)
            raise
        job = self.store.add(spec, frames_total=prepared.last - prepared.first + 1)
        log.info("job %s queued: %s", job.id, spec.name or spec.output.path_template)
        self.daemon.scheduler.wake()
        return pb.SubmitJobResponse(job=job)

    @_stream_rpc
    def WatchJob(self, request: pb.WatchJobRequest, context):
        job = self._job(request.job_id)
        events = self.daemon.bus.subscribe(job.id)
        try:
            job = self._job(request.job_id)  # re-read after subscribing: no event can slip between
            downloads = self.daemon.downloads
            yield self.daemon.snapshot(job)
            # An ended job whose result is being fetched is followed until the download ends (its last
            # event is published before the download counts as ended, so it is never missed).
            ended = job.state in TERMINAL_STATES
            if ended and not downloads.active(job.id):
                return
            while context.is_active() and not self.daemon.stopping.is_set():
                try:
                    event = events.get(timeout=0.25)
                except queue.Empty:
                    if ended and not downloads.active(job.id) and events.empty():
                        return
                    continue
                if not request.previews and event.HasField("preview"):
                    event = _without_preview(event)
                yield event
                ended = ended or event.state in TERMINAL_STATES
                if ended and not downloads.active(job.id) and events.empty():
                    return
            if self.daemon.stopping.is_set():
                yield self.daemon.snapshot(
                    self._job(job.id), message="the daemon is shutting down; watch again after it restarts"
                )
        finally:
            self.daemon.bus.unsubscribe(job.id, events)

    @_rpc
    def CancelJob(self, request: pb.CancelJobRequest, context) -> pb.CancelJobResponse:
        before = self._job(request.job_id)
        job = self.daemon.scheduler.cancel(request.job_id)
        if before.state == pb.JOB_STATE_UPLOADING:
            self.daemon.uploads.forget(job)
        return pb.CancelJobResponse(job=job)

    @_rpc
    def GetJob(self, request: pb.GetJobRequest, context) -> pb.GetJobResponse:
        return pb.GetJobResponse(job=self._job(request.job_id))

    @_rpc
    def ListJobs(self, request: pb.ListJobsRequest, context) -> pb.ListJobsResponse:
        return pb.ListJobsResponse(jobs=self.store.list(request.states, request.limit))

    @_rpc
    def GetInfo(self, request: pb.GetInfoRequest, context) -> pb.GetInfoResponse:
        return self.daemon.info()

    @_rpc
    def ProbePaths(self, request: pb.ProbePathsRequest, context) -> pb.ProbePathsResponse:
        return pb.ProbePathsResponse(paths=probe_paths(self.daemon.roots, request.paths, request.write))

    @_rpc
    def HasFrames(self, request: pb.HasFramesRequest, context) -> pb.HasFramesResponse:
        return pb.HasFramesResponse(frames=self.daemon.uploads.has_frames(request.frames))

    @_stream_rpc
    def UploadFrames(self, request_iterator, context):
        yield from self.daemon.uploads.receive(request_iterator)

    @_stream_rpc
    def DownloadResult(self, request: pb.DownloadResultRequest, context):
        yield from self.daemon.downloads.stream(self._job(request.job_id), request.have)


def _without_preview(event: pb.JobEvent) -> pb.JobEvent:
    copy = pb.JobEvent()
    copy.CopyFrom(event)
    copy.ClearField("preview")
    return copy


class _Registrar:
    """Passes the generated service registration on to the server with some methods' handlers replaced."""

    def __init__(self, server: grpc.Server, replacements: dict) -> None:
        self.server = server
        self.replacements = replacements

    def add_generic_rpc_handlers(self, handlers) -> None:
        self.server.add_generic_rpc_handlers(
            tuple(_ReplacingHandler(handler, self.replacements) for handler in handlers)
        )

    def add_registered_method_handlers(self, service: str, handlers: dict) -> None:
        self.server.add_registered_method_handlers(service, {**handlers, **self.replacements})


class _ReplacingHandler(grpc.GenericRpcHandler):
    def __init__(self, handler: grpc.GenericRpcHandler, replacements: dict) -> None:
        self.handler = handler
        self.replacements = {f"/{SERVICE_NAME}/{name}": method for name, method in replacements.items()}

    def service(self, handler_call_details):
        return self.replacements.get(handler_call_details.method) or self.handler.service(handler_call_details)


class Daemon:
    def __init__(
        self,
        listen: str = DEFAULT_ADDRESS,
        data_dir: Optional[Path] = None,
        weights: Optional[str] = None,
        max_workers: int = 16,
        security: Optional[SecurityConfig] = None,
        executor: Optional[Executor] = None,
    ) -> None:
        self.listen = listen
        self.executor = executor  # None: jobs run in this process; else where it sends them (a Ray pool)
        self.data_dir = Path(data_dir) if data_dir else default_data_dir()
        self.security = security or SecurityConfig()
        self.warnings: list[str] = []
        self.registry = BackendRegistry(weights)
        self.bus = EventBus()
        self.stopping = threading.Event()
        self._lock = DataDirLock(self.data_dir)
        self._max_workers = max_workers
        self.address = ""
        self.store: JobStore
        self.scheduler: Scheduler
        self.server: grpc.Server

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
            self.downloads = Downloads(self.bus, self.transfers)
            # With no roots a loopback daemon reads and writes where its user may (as a local tool does);
            # beyond loopback it takes only the roots it was given, none meaning streamed frames only.
            self.roots = Roots(
                list(security.roots),
                confined=bool(security.roots) or not loopback,
                internal=[str(self.transfers.inputs), str(self.transfers.results)],
            )
            pipeline.PATH_GUARD = self.roots.prepared_guard() if self.roots.confined else None
            image.CONFINE = self.roots.opened_guard() if self.roots.confined else None
            self._discard_finished_inputs()
            self.scheduler = Scheduler(self.store, self.bus, self.registry, executor=self.executor)
            self.uploads = Uploads(
                self.store, self.bus, self.cache, self.transfers, self.scheduler, security.max_upload_bytes
            )
            self.server = grpc.server(
                futures.ThreadPoolExecutor(max_workers=self._max_workers, thread_name_prefix="voidlink-rpc"),
                interceptors=[AuthInterceptor(tokens, open_reflection=loopback)] if tokens else [],
                options=[
                    # Without this Linux lets a second server share the port and steal half the calls.
                    ("grpc.so_reuseport", 0),
                    ("grpc.max_receive_message_length", security.max_message_bytes),
                    ("grpc.max_send_message_length", security.max_message_bytes),
                ],
            )
            service = VoidLinkService(self)
            upload = grpc.stream_stream_rpc_method_handler(
                service.UploadFrames,
                request_deserializer=wire.parse_frame_chunk,
                response_serializer=pb.FrameAck.SerializeToString,
            )
            rpc.add_VoidLinkServicer_to_server(service, _Registrar(self.server, {"UploadFrames": upload}))
            self.health = health.HealthServicer()
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
            if loopback or tokens is not None:
                # Beyond loopback the service list is for authenticated clients only (the interceptor checks).
                reflection.enable_server_reflection(
                    (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
                    self.server,
                )
            self.address = self._bind()
            # Before any call is served or any job runs: a commit a crash interrupted is finished first.
            finished = self.scheduler.recover()
            if finished:
                log.info("finished moving the frames of %d job(s) into place: %s", len(finished), ", ".join(finished))
            self.server.start()
            self.scheduler.start()
            self.uploads.follow_uploading_jobs()
            for name in ("", SERVICE_NAME):
                self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
            self._write_state()
            if resumed:
                log.info("resuming %d interrupted job(s): %s", len(resumed), ", ".join(resumed))
            for warning in self.warnings:
                log.warning(warning)
            return self.address
        except BaseException:
            pipeline.PATH_GUARD = None
            image.CONFINE = None
            self._lock.release()
            raise

    def _discard_finished_inputs(self) -> None:
        """Uploaded inputs of jobs that ended are links into the cache: drop them at each start, and
        streamed-back results nobody fetched within RESULT_DAYS."""
        expired = time.time() - RESULT_DAYS * 86400
        for job in self.store.list([pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED], 0):
            self.transfers.discard_inputs(job.spec)
            folder = self.transfers.result_folder(job.spec)
            if folder is not None and job.finished_at < expired:
                shutil.rmtree(folder, ignore_errors=True)

    def snapshot(self, job: pb.Job, message: str = "") -> pb.JobEvent:
        """A job's current state as an event, with how far its upload (or the fetch of its result) is."""
        event = self.uploads.snapshot(job, message)
        progress = self.downloads.last(job.id) if job.state in TERMINAL_STATES else None
        if progress is not None:
            event.transfer.CopyFrom(progress)
        return event

    def _bind(self) -> str:
        address = self.listen
        credentials = self.security.server_credentials()
        try:
            if credentials is not None:
                port = self.server.add_secure_port(address, credentials)
            else:
                port = self.server.add_insecure_port(address)
        except RuntimeError as exc:
            port = 0
            cause = exc
        else:
            cause = None
        if address.startswith("unix:"):
            if port == 0 and cause is not None:
                raise Unavailable(f"cannot listen on {address}: {cause}", reason="ADDRESS_IN_USE") from cause
            return address
        if not port:
            raise Unavailable(
                f"cannot listen on {address}: the port is already in use (is another voidlink daemon running? "
                f"`voidlink doctor` checks) or the address is not on this machine; choose another with --listen",
                reason="ADDRESS_IN_USE",
            )
        host = address.rsplit(":", 1)[0]
        return f"{host}:{port}"

    def _write_state(self) -> None:
        state = {"pid": os.getpid(), "address": self.address, "version": voidlink.__version__}
        tmp = self.data_dir / "daemon.json.tmp"
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.data_dir / "daemon.json")

    def info(self) -> pb.GetInfoResponse:
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
            )
        info.default_backend = self.registry.resolve("auto")
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

    def stop(self, grace: float = 5.0) -> None:
        if self.stopping.is_set():
            return
        self.stopping.set()
        log.info("shutting down")
        for name in ("", SERVICE_NAME):
            self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        self.scheduler.stop(timeout=30.0)
        self.server.stop(grace).wait()
        self.store.close()
        pipeline.PATH_GUARD = None
        image.CONFINE = None
        self._lock.release()

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


def library_versions() -> dict[str, str]:
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
