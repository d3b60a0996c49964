"""The VoidLink gRPC servicer: each RPC is one call into the daemon's core, translated both ways.

A method turns the request into the call's arguments and the call's answer into the response;
nothing is decided here. What every call shares is here too: the protocol check of the client's
metadata, and a `VoidlinkError` raised by the call answered as its gRPC status with the
`ErrorDetail` trailer (`voidlink.protos.status`). Validation lives in `jobs` and `probe`, uploads
in `uploads`, result streaming in `downloads`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import grpc
from voidlink.inference.jobs import Jobs
from voidlink.inference.probe import probe_paths
from voidlink.inference.security import Roots
from voidlink.inference.uploads import Uploads
from voidlink.protos import PROTOCOL_METADATA_KEY, PROTOCOL_VERSION, pb, rpc, status

import voidlink
from voidlink.errors import ProtocolMismatch, VoidlinkError


def _check_protocol(context: grpc.ServicerContext) -> None:
    for key, value in context.invocation_metadata():
        if key == PROTOCOL_METADATA_KEY and value != str(PROTOCOL_VERSION):
            raise ProtocolMismatch(
                f"this daemon speaks voidlink protocol {PROTOCOL_VERSION} (voidlink {voidlink.__version__}); "
                f"the client speaks {value}: install the same voidlink version on both sides",
                field="metadata." + PROTOCOL_METADATA_KEY,
            )


def _abort(context: grpc.ServicerContext, error: VoidlinkError) -> None:
    context.set_trailing_metadata(status.trailers_of(error))
    context.abort(getattr(grpc.StatusCode, error.grpc_code), error.message)


def _rpc(method):
    """Protocol check and error mapping shared by every unary RPC."""

    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            _check_protocol(context)
            return method(self, request, context)
        except VoidlinkError as error:
            _abort(context, error)

    return wrapper


def _stream_rpc(method):
    """The same for an RPC that answers with a stream: an error mid-stream ends it with its status."""

    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            _check_protocol(context)
            yield from method(self, request, context)
        except VoidlinkError as error:
            _abort(context, error)

    return wrapper


class VoidLinkService(rpc.VoidLinkServicer):
    """`jobs` for everything about a job, `uploads` for frames, `roots` for path probes, `info` for GetInfo."""

    def __init__(self, jobs: Jobs, uploads: Uploads, roots: Roots, info: Callable[[], pb.GetInfoResponse]) -> None:
        self.jobs = jobs
        self.uploads = uploads
        self.roots = roots
        self.info = info

    @_rpc
    def SubmitJob(self, request: pb.SubmitJobRequest, context) -> pb.SubmitJobResponse:
        return pb.SubmitJobResponse(job=self.jobs.submit(request.spec, upload_follows=request.upload_follows))

    @_stream_rpc
    def WatchJob(self, request: pb.WatchJobRequest, context) -> Iterator[pb.JobEvent]:
        yield from self.jobs.watch(request.job_id, previews=request.previews, active=context.is_active)

    @_rpc
    def CancelJob(self, request: pb.CancelJobRequest, context) -> pb.CancelJobResponse:
        return pb.CancelJobResponse(job=self.jobs.cancel(request.job_id))

    @_rpc
    def GetJob(self, request: pb.GetJobRequest, context) -> pb.GetJobResponse:
        return pb.GetJobResponse(job=self.jobs.get(request.job_id))

    @_rpc
    def ListJobs(self, request: pb.ListJobsRequest, context) -> pb.ListJobsResponse:
        return pb.ListJobsResponse(jobs=self.jobs.list(request.states, request.limit))

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
        yield from self.uploads.receive(request_iterator)

    @_stream_rpc
    def DownloadResult(self, request: pb.DownloadResultRequest, context) -> Iterator[pb.FileChunk]:
        yield from self.jobs.download(request.job_id, request.have)
