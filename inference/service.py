"""The VoidLink gRPC servicer: each RPC is one call into the daemon's core, translated both ways.

A method turns the request into the call's arguments and the call's answer into the response;
nothing is decided here. What every call shares is here too: the protocol check of the client's
metadata, the caller (`Caller`: the token's name, the owner of the jobs it submits), a request whose
bytes are not the message (`Malformed`, made by the server's tolerant parsing) refused as
BAD_REQUEST, and a `VoidlinkError` raised by the call answered as its gRPC status with the standard
`grpc-status-details-bin` and voidlink's `ErrorDetail` trailer (`voidlink.protos.status`). Anything
else a call raises is a fault of the daemon's: INTERNAL with a log id, the daemon serving on.
Validation lives in `jobs`, `bounds` and `probe`, uploads in `uploads`, result streaming in `downloads`.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Optional, Union

import grpc
from voidlink.inference.bounds import DEFAULT_RPC_THREADS, StreamSlots
from voidlink.inference.jobs import Jobs
from voidlink.inference.probe import probe_paths
from voidlink.inference.security import ANYONE, Caller, Roots
from voidlink.inference.uploads import Uploads
from voidlink.protos import PROTOCOL_METADATA_KEY, PROTOCOL_VERSION, pb, rpc, status

import voidlink
from voidlink.errors import InvalidInput, ProtocolMismatch, Unauthenticated, VoidlinkError

log = logging.getLogger("voidlink.daemon")


@dataclass(frozen=True)
class Malformed:
    """A request whose bytes did not parse as its message (garbage, invalid UTF-8 in a string field)."""

    why: str


def tolerant(parse: Callable[[bytes], object]) -> Callable[[bytes], object]:
    """A request deserializer that hands the servicer a `Malformed` instead of failing inside gRPC
    (which would answer INTERNAL with no word of what was wrong)."""

    def read(data: bytes) -> object:
        try:
            return parse(data)
        except Exception as exc:  # noqa: BLE001 - any parse failure is the request's fault
            return Malformed(f"{type(exc).__name__}: {exc}"[:200])

    return read


def _well_formed(request: object) -> None:
    if isinstance(request, Malformed):
        raise InvalidInput(
            f"the request is not a valid protobuf message of this call ({request.why}); strings must be UTF-8",
            reason="BAD_REQUEST",
        )


def _check_protocol(context: grpc.ServicerContext) -> None:
    for key, value in context.invocation_metadata():
        if key == PROTOCOL_METADATA_KEY and value != str(PROTOCOL_VERSION):
            raise ProtocolMismatch(
                f"this daemon speaks voidlink protocol {PROTOCOL_VERSION} (voidlink {voidlink.__version__}); "
                f"the client speaks {value}: install the same voidlink version on both sides",
                field="metadata." + PROTOCOL_METADATA_KEY,
            )


def _abort(context: grpc.ServicerContext, error: VoidlinkError) -> None:
    code = getattr(grpc.StatusCode, error.grpc_code)
    standard = status.standard_status(error, code.value[0])
    context.set_trailing_metadata(
        (*status.trailers_of(error), ("grpc-status-details-bin", standard.SerializeToString()))
    )
    context.abort(code, error.message)


def _fault(context: grpc.ServicerContext, method: str, exc: BaseException) -> None:
    """A fault of the daemon's own: logged with an id the caller can quote; the daemon serves on."""
    log_id = uuid.uuid4().hex[:8]
    log.error("%s failed (log id %s): %s", method, log_id, exc, exc_info=exc)
    _abort(
        context,
        VoidlinkError(
            f"the daemon failed on {method} (log id {log_id}); the daemon's log has the details",
            reason="INTERNAL",
        ),
    )


def _rpc(method):
    """Protocol check, request check and error mapping shared by every unary RPC."""

    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            _check_protocol(context)
            _well_formed(request)
            return method(self, request, context)
        except VoidlinkError as error:
            _abort(context, error)
        except Exception as exc:  # noqa: BLE001 - answered as INTERNAL, never a dead handler
            _fault(context, method.__name__, exc)

    return wrapper


def _stream_rpc(method):
    """The same for an RPC that answers with a stream: an error mid-stream ends it with its status."""

    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            _check_protocol(context)
            _well_formed(request)
            with self.streams.hold(self._caller(context).name, method.__name__):
                yield from method(self, request, context)
        except VoidlinkError as error:
            _abort(context, error)
        except Exception as exc:  # noqa: BLE001
            _fault(context, method.__name__, exc)

    return wrapper


def _checked(requests: Iterator[object]) -> Iterator[object]:
    for request in requests:
        _well_formed(request)
        yield request


class VoidLinkService(rpc.VoidLinkServicer):
    """`jobs` for everything about a job, `uploads` for frames, `roots` for path probes, `info` for GetInfo."""

    def __init__(
        self,
        jobs: Jobs,
        uploads: Uploads,
        roots: Roots,
        info: Callable[[], pb.GetInfoResponse],
        callers: Optional[Callable[[grpc.ServicerContext], Optional[Caller]]] = None,
        streams: Optional[StreamSlots] = None,
    ) -> None:
        """`callers`: who a call's metadata names (the token file's lookup); None: a daemon without tokens,
        where every caller sees every job. `streams`: the bound on streams open at once (the daemon sizes
        it to its RPC threads)."""
        self.jobs = jobs
        self.uploads = uploads
        self.roots = roots
        self.info = info
        self.callers = callers
        self.streams = streams or StreamSlots(DEFAULT_RPC_THREADS, shared=callers is not None)

    def _caller(self, context: grpc.ServicerContext) -> Caller:
        if self.callers is None:
            return ANYONE
        caller = self.callers(context)
        if caller is None:  # the interceptor let no such call through; refuse rather than guess
            raise Unauthenticated("no valid token on this call", reason="UNAUTHENTICATED")
        return caller

    @_rpc
    def SubmitJob(self, request: pb.SubmitJobRequest, context) -> pb.SubmitJobResponse:
        caller = self._caller(context)
        job = self.jobs.submit(request.spec, request.upload_follows, caller, validate_only=request.validate_only)
        return pb.SubmitJobResponse(job=job)

    @_stream_rpc
    def WatchJob(self, request: pb.WatchJobRequest, context) -> Iterator[pb.JobEvent]:
        caller = self._caller(context)
        yield from self.jobs.watch(request.job_id, request.previews, context.is_active, caller)

    @_rpc
    def CancelJob(self, request: pb.CancelJobRequest, context) -> pb.CancelJobResponse:
        return pb.CancelJobResponse(job=self.jobs.cancel(request.job_id, self._caller(context)))

    @_rpc
    def GetJob(self, request: pb.GetJobRequest, context) -> pb.GetJobResponse:
        return pb.GetJobResponse(job=self.jobs.get(request.job_id, self._caller(context)))

    @_rpc
    def ListJobs(self, request: pb.ListJobsRequest, context) -> pb.ListJobsResponse:
        caller = self._caller(context)
        jobs, next_token = self.jobs.list(request.states, request.limit, caller, request.page_size, request.page_token)
        return pb.ListJobsResponse(jobs=jobs, next_page_token=next_token)

    @_rpc
    def GetInfo(self, request: pb.GetInfoRequest, context) -> pb.GetInfoResponse:
        return self.info()

    @_rpc
    def ProbePaths(self, request: pb.ProbePathsRequest, context) -> pb.ProbePathsResponse:
        return pb.ProbePathsResponse(paths=probe_paths(self.roots, request.paths, request.write))

    @_rpc
    def HasFrames(self, request: pb.HasFramesRequest, context) -> pb.HasFramesResponse:
        return pb.HasFramesResponse(frames=self.uploads.has_frames(request.frames))

    @_stream_rpc
    def UploadFrames(self, request_iterator, context) -> Iterator[pb.FrameAck]:
        yield from self.uploads.receive(_checked(request_iterator))

    @_stream_rpc
    def DownloadResult(self, request: pb.DownloadResultRequest, context) -> Iterator[Union[pb.FileChunk, bytes]]:
        yield from self.jobs.download(request.job_id, request.have, self._caller(context))
