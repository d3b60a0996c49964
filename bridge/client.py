"""Client: the one way hosts, scripts and the CLI talk to a voidlink daemon.

    from voidlink.bridge import Client
    result = Client().remove(plate="/shots/sh010/plate.####.exr", mask="/shots/sh010/roto.####.exr",
                             frames=(1001, 1100), prompt="an empty street", output="/shots/sh010/void/clean.####.exr")

A remote daemon is reached the same way (`Client("gpu-box:50151", token=..., tls="studio-ca.pem")`).
Paths go through the studio's path map; when the daemon cannot read a clip (or write the output),
`remove` uploads that clip's frames into the daemon's frame cache and fetches the result back,
writing it here atomically. Nothing it already holds is sent twice.

The one submit -> wait -> fetch path is `start` -> `wait` -> `finish` (`run` does all three); the
rooms it calls are `connection` (channel, token, errors), `spec` (the job spec), `transfer`,
`upload` and `download` (frames that travel), `result` and `local_daemon`.

Needs grpcio and protobuf only (no torch, no Qt), and runs on the Python 3.9 of older hosts.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import Callable, Optional, Union

import grpc
from voidlink.bridge import download, local_daemon, local_files, upload
from voidlink.bridge.connection import (
    BUSY_POLL_SECONDS,
    STREAMS_BUSY,
    Connection,
    is_local,
    resolve_address,
    resolve_tls,
    resolve_token,
)
from voidlink.bridge.local_daemon import daemon_command, split_command
from voidlink.bridge.matte import build_matte_spec
from voidlink.bridge.ownership import check_replaceable
from voidlink.bridge.pathmap import PathMap
from voidlink.bridge.result import RemoveResult, result_or_raise
from voidlink.bridge.spec import FrameRange, PathLike, build_spec, clip_spec, default_output
from voidlink.bridge.transfer import TRANSFER_MODES, TransferPlan, TransferStats, plan_transfer, probe_paths
from voidlink.protos import PROTOCOL_VERSION, pb, vocabulary
from voidlink.protos.clips import side_templates
from voidlink.protos.events import job_event
from voidlink.protos.vocabulary import state_name
from voidlink.protos.wire import CHUNK_BYTES, chunk_bytes_within

from voidlink import errors

TERMINAL = vocabulary.TERMINAL
# How long `wait` waits for a daemon that went away (restarting) before it gives up.
RECONNECT_SECONDS = 120.0
_RECONNECT_REASONS = ("DAEMON_UNREACHABLE", "STORE_BUSY")

# The names hosts' scripts and the CLI have imported from here; each lives in its own room now.
__all__ = [
    "Client",
    "RemoveResult",
    "TransferPlan",
    "TransferStats",
    "TRANSFER_MODES",
    "build_spec",
    "clip_spec",
    "daemon_command",
    "default_output",
    "is_local",
    "resolve_address",
    "resolve_tls",
    "resolve_token",
    "result_or_raise",
    "split_command",
]


class Client:
    """A connection to one daemon. Cheap to create; safe to share between threads."""

    def __init__(
        self,
        address: Optional[str] = None,
        connect_timeout: float = 5.0,
        *,
        token: Optional[str] = None,
        tls: Union[bool, PathLike, None] = None,
        path_map: Optional[PathMap] = None,
        channel_options: Sequence = (),
    ) -> None:
        """`token`: sent as `authorization: Bearer` (default $VOIDLINK_TOKEN / $VOIDLINK_TOKEN_FILE);
        `tls`: True for the system's CA roots, or a CA certificate file (default $VOIDLINK_TLS_CA);
        `path_map`: client ↔ daemon folders (default $VOIDLINK_PATH_MAP and the studio config);
        `channel_options`: extra gRPC channel arguments, (name, value) pairs (flow-control windows, ...)."""
        self.link = Connection(
            address, connect_timeout, token=token, tls=tls, path_map=path_map, channel_options=channel_options
        )
        self.address = self.link.address
        self.path_map = self.link.path_map
        self.tls = self.link.tls
        self.connect_timeout = connect_timeout
        self.chunk_bytes = CHUNK_BYTES  # at most; each upload's chunks fit the daemon's --max-message
        self._max_message_bytes: Optional[int] = None  # the daemon's, once asked
        # What this client sent and fetched, for progress reports and benchmarks.
        self.stats = TransferStats()

    def close(self) -> None:
        self.link.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method: str, request, timeout: Optional[float] = 30.0):
        return self.link.call(method, request, timeout)

    # -- the service ---------------------------------------------------------------------

    def info(self) -> pb.GetInfoResponse:
        info = self._call("GetInfo", pb.GetInfoRequest())
        if info.protocol_version != PROTOCOL_VERSION:
            raise errors.ProtocolMismatch(
                f"the daemon at {self.address} speaks protocol {info.protocol_version} (voidlink {info.version}); "
                f"this client speaks {PROTOCOL_VERSION}: install the same voidlink version on both sides"
            )
        return info

    def submit(self, spec: pb.JobSpec, upload_follows: bool = False) -> pb.Job:
        """Send a job as given (paths through the path map); see `start` for uploading frames.
        `upload_follows`: the spec's uploaded frames may still be on their way (the job waits for them)."""
        spec = self.path_map.spec_to_daemon(spec)
        request = pb.SubmitJobRequest(spec=spec, upload_follows=upload_follows)
        return self.path_map.job_to_client(self._call("SubmitJob", request).job)

    def validate(self, spec: pb.JobSpec) -> pb.Job:
        """Have the daemon check `spec` exactly as `submit` would, queueing nothing: the job it would queue
        (no id), or the `VoidlinkError` `submit` would raise. A daemon too old to validate queues the job
        instead: it is cancelled at once and `ProtocolMismatch` (DAEMON_TOO_OLD) says so."""
        request = pb.SubmitJobRequest(spec=self.path_map.spec_to_daemon(spec), validate_only=True)
        job = self.path_map.job_to_client(self._call("SubmitJob", request).job)
        if job.id:
            try:
                self.cancel(job.id)
            except errors.VoidlinkError:
                pass  # it may have ended already; the answer below holds either way
            raise errors.ProtocolMismatch(
                f"the daemon at {self.address} is too old to validate a job (it queued job {job.id}, "
                "cancelled at once); upgrade it, or submit to check",
                reason="DAEMON_TOO_OLD",
            )
        return job

    def get(self, job_id: str) -> pb.Job:
        return self.path_map.job_to_client(self._call("GetJob", pb.GetJobRequest(job_id=job_id)).job)

    def cancel(self, job_id: str) -> pb.Job:
        return self.path_map.job_to_client(self._call("CancelJob", pb.CancelJobRequest(job_id=job_id)).job)

    def jobs(self, states: Sequence[int] = (), limit: int = 0) -> list:
        """Job summaries, newest first (`limit`: at most this many; 0: all), page by page. A summary has
        no clips: `get` returns a job's whole spec."""
        jobs: list = []
        token = ""
        while True:
            page, token = self.jobs_page(states, min(limit - len(jobs), 1000) if limit else 1000, token)
            jobs += page
            if not token or (limit and len(jobs) >= limit):
                return jobs[:limit] if limit else jobs

    def jobs_page(self, states: Sequence[int] = (), page_size: int = 100, page_token: str = "") -> tuple[list, str]:
        """One page of job summaries and the token of the next ("" on the last)."""
        request = pb.ListJobsRequest(states=states, page_size=page_size, page_token=page_token, limit=page_size)
        reply = self._call("ListJobs", request)
        return [self.path_map.job_to_client(job) for job in reply.jobs], reply.next_page_token

    def watch(self, job_id: str, previews: bool = False) -> Iterator[pb.JobEvent]:
        """Events of one job until it ends: the current state first, then each change."""
        self.link.ready()
        request = pb.WatchJobRequest(job_id=job_id, previews=previews)
        stream = self.link.stub.WatchJob(request, metadata=self.link.metadata)
        try:
            for event in stream:
                yield self.path_map.event_to_client(event)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.CANCELLED and stream.cancelled():
                return
            raise self.link.error(exc) from None
        finally:
            stream.cancel()

    def wait(
        self,
        job_id: str,
        on_progress: Optional[Callable[[pb.JobEvent], None]] = None,
        previews: bool = False,
        reconnect: float = RECONNECT_SECONDS,
    ) -> pb.Job:
        """Follow a job to its end; returns the final Job.

        A daemon that goes away (restarting after a crash, a kill -9 or an upgrade) is waited for, with
        a growing pause, for up to `reconnect` seconds at a time, then watched again: the daemon resumes
        the job where it stopped. Past that, `errors.Unavailable` says the job goes on without us."""
        lost_since: Optional[float] = None
        pause = 0.25
        state = pb.JOB_STATE_QUEUED  # as last heard, for the progress told while reconnecting
        while True:
            try:
                for event in self.watch(job_id, previews=previews):
                    lost_since, pause, state = None, 0.25, event.state or state
                    if on_progress is not None:
                        on_progress(event)
                    if event.state in TERMINAL:
                        return self.get(job_id)
                job = self.get(job_id)  # the stream closed early (the daemon is stopping): look, then watch again
                if job.state in TERMINAL:
                    return job
                time.sleep(0.5)
            except errors.LimitExceeded as error:
                if error.reason != STREAMS_BUSY:
                    raise
                # Every stream the daemon serves at once is taken: follow the job by asking, then watch again.
                job = self.get(job_id)
                if on_progress is not None:
                    on_progress(job_event(job))
                if job.state in TERMINAL:
                    return job
                time.sleep(BUSY_POLL_SECONDS)
            except errors.Unavailable as error:
                if error.reason not in _RECONNECT_REASONS:
                    raise
                now = time.monotonic()
                lost_since = now if lost_since is None else lost_since
                if now - lost_since >= reconnect:
                    raise errors.Unavailable(
                        f"lost the voidlink daemon at {self.address} while following job {job_id}, and it did not "
                        f"come back within {reconnect:.0f} s; a daemon that restarts resumes the job: follow it again "
                        f"with `voidlink jobs watch {job_id}`",
                        reason="DAEMON_UNREACHABLE",
                    ) from None
                if on_progress is not None:
                    message = f"the daemon at {self.address} is unreachable; reconnecting"
                    on_progress(job_event(job_id=job_id, state=state, stage="reconnect", message=message))
                time.sleep(pause)
                pause = min(pause * 2, 5.0)

    # -- submit -> wait -> fetch ----------------------------------------------------------

    def remove(
        self,
        plate: PathLike,
        mask: PathLike,
        affected: Optional[PathLike] = None,
        frames: FrameRange = None,
        prompt: str = "",
        output: Optional[PathLike] = None,
        backend: str = "auto",
        wait: bool = True,
        on_progress: Optional[Callable[[pb.JobEvent], None]] = None,
        transfer: str = "auto",
        **params,
    ) -> RemoveResult:
        """Remove the object in `mask` (and its effects in `affected`) from `plate`.

        With `wait=True` (default) returns when the job ends and raises `errors.JobFailed` /
        `errors.JobCancelled` if it did not succeed; with `wait=False` returns at once with the
        job id and state "queued". `params` are `build_spec`'s keywords (steps, seed, quality, ...).
        `transfer`: "shared" sends paths, "stream" uploads the frames and fetches the result, "auto"
        (default) asks the daemon which paths it can use and streams only what it cannot.
        """
        spec = build_spec(plate, mask, affected, frames, prompt, output, backend, **params)
        return self.run(spec, wait=wait, on_progress=on_progress, transfer=transfer)

    def matte(
        self,
        plate: PathLike,
        frames: FrameRange = None,
        *,
        points: Iterable[Sequence[float]] = (),
        negative: Iterable[Sequence[float]] = (),
        boxes: Iterable[Sequence[float]] = (),
        outlines: Iterable = (),
        text: str = "",
        propose_affected: bool = False,
        tracker: str = "auto",
        output: Optional[PathLike] = None,
        wait: bool = True,
        on_progress: Optional[Callable[[pb.JobEvent], None]] = None,
        transfer: str = "auto",
        **params,
    ) -> RemoveResult:
        """Track the object of the prompts through `frames` of `plate` and write its matte (8-bit EXR by default).

        `points`/`negative`: (frame, x, y) in the plate's pixels; `boxes`: (frame, x0, y0, x1, y1); `outlines`:
        (frame, [(x, y), ...]), a drawn shape. `text` ("its shadow") or `propose_affected` also write an affected
        proposal. `params` are `build_matte_spec`'s keywords (affected_output, quadmask_output, grid, pixel_type,
        ...). The result's `findings` are the quadmask checks per frame. A daemon too old for matte jobs (it
        would run a removal) is refused before anything is sent: `ProtocolMismatch` (DAEMON_TOO_OLD)."""
        spec = build_matte_spec(
            plate,
            frames,
            points=points,
            negative=negative,
            boxes=boxes,
            outlines=outlines,
            text=text,
            propose_affected=propose_affected,
            tracker=tracker,
            output=output,
            **params,
        )
        self.check_mattes()
        return self.run(spec, wait=wait, on_progress=on_progress, transfer=transfer)

    def check_mattes(self) -> pb.GetInfoResponse:
        """The daemon's info, refusing a daemon from before matte jobs (it lists no matte trackers)."""
        info = self.info()
        if not info.matte_trackers:
            raise errors.ProtocolMismatch(
                f"the daemon at {self.address} (voidlink {info.version or 'unknown'}) is too old for matte jobs; "
                "upgrade it (`pip install -U voidlink` where it runs), then restart it",
                reason="DAEMON_TOO_OLD",
            )
        return info

    def run(
        self,
        spec: pb.JobSpec,
        wait: bool = True,
        on_progress: Optional[Callable[[pb.JobEvent], None]] = None,
        transfer: str = "auto",
    ) -> RemoveResult:
        """Submit `spec` (uploading frames the daemon cannot read), follow it, fetch a streamed result."""
        job, plan = self.start(spec, transfer, on_progress)
        if not wait:
            return RemoveResult(job_id=job.id, state=state_name(job.state))
        return result_or_raise(self.finish(self.wait(job.id, on_progress=on_progress), plan, on_progress))

    def start(
        self,
        spec: pb.JobSpec,
        transfer: str = "auto",
        on_progress: Optional[Callable[[pb.JobEvent], None]] = None,
        plan: Optional[TransferPlan] = None,
    ) -> tuple[pb.Job, TransferPlan]:
        """Submit `spec` the way this daemon can take it: (the queued `pb.Job`, its `TransferPlan`).

        Clips the daemon cannot read are uploaded into its frame cache (the job submitted once every frame
        is hashed, while the rest are still being sent); keep the plan and hand
        the ended job to `finish`, which fetches a streamed-back result. `plan`: one `plan_transfer`
        already made (its `transfer` then goes unused)."""
        if plan is None:
            plan = self.plan_transfer(spec, transfer)
        plan.output_template = spec.output.path_template
        plan.side_templates = side_templates(spec)
        if plan.stream_back:  # the result lands here: refused now, before the job runs, if it may not
            plan.source_files, finals = local_files.local_destinations(spec, plan.side_templates)
            check_replaceable(finals, plan.source_files, spec.output.overwrite)
        if not plan.streamed:
            return self.submit(spec), plan
        return self._upload_and_submit(spec, plan, on_progress), plan

    def _upload_and_submit(
        self, spec: pb.JobSpec, plan: TransferPlan, on_progress: Optional[Callable[[pb.JobEvent], None]]
    ) -> pb.Job:
        """Send the plan's frames and submit the job in one pipeline: the frames are hashed ahead of the
        sending, and the job is submitted (waiting for its frames) as soon as every frame is named, while
        the rest are still on their way, so watchers see the upload."""
        clips = local_files.clip_frames(spec, plan)
        paths = [path for frames in clips.values() for _, path in frames]
        submitted: dict = {}  # "spec": the spec naming its frames; "job": the job, once the daemon has it

        def submit_when_hashed(refs: list) -> None:
            submitted["spec"], files = local_files.name_frames(spec, plan, clips, refs)
            try:
                submitted["job"] = self.submit(submitted["spec"], upload_follows=True)
            except errors.NotFound as error:
                if error.reason != "FRAMES_NOT_UPLOADED":
                    raise
                # A daemon from before upload_follows: the frames first, then the job.

        def named(event: pb.JobEvent) -> None:
            job = submitted.get("job")
            if job is not None:  # the upload's progress is the job's from the moment it exists
                event.job_id, event.state = job.id, job.state
            on_progress(event)

        try:
            upload.upload_paths(
                self.link,
                self.stats,
                paths,
                named if on_progress is not None else None,
                chunk_bytes=self.upload_chunk_bytes(),
                when_hashed=submit_when_hashed,
            )
        except BaseException:
            if "job" in submitted:  # nobody will finish this upload: the job must not wait for it
                try:
                    self.cancel(submitted["job"].id)
                except errors.VoidlinkError:
                    pass
            raise
        if "job" not in submitted:
            return self.submit(submitted["spec"])
        return self.get(submitted["job"].id)  # queued by the daemon when its last frame came in

    def finish(
        self, job: pb.Job, plan: TransferPlan, on_progress: Optional[Callable[[pb.JobEvent], None]] = None
    ) -> pb.Job:
        """The ended `job` as this machine sees it: when its output was streamed back, the files are
        fetched and written at the plan's output first (atomically) and the job's result names them.
        A job that did not succeed is returned as it is."""
        if job.state != pb.JOB_STATE_SUCCEEDED or not plan.stream_back:
            return job
        result = self.download_result(
            job, plan.output_template, on_progress=on_progress, sides=plan.side_templates, sources=plan.source_files
        )
        local = pb.Job()
        local.CopyFrom(job)
        local.result.output_pattern = result.output_pattern
        local.result.otio_json = result.otio_json
        local.result.quadmask_pattern = result.quadmask_pattern
        local.result.affected_pattern = result.affected_pattern
        local.spec.output.path_template = plan.output_template
        local.message = job.message.replace(job.result.output_pattern, result.output_pattern)
        return local

    # -- shared storage or streamed frames ------------------------------------------------

    def probe(self, paths: Sequence[str], write: bool = False) -> list:
        """What the daemon makes of these client paths (mapped first): a `pb.PathProbe` each.
        Raises `errors.Conflict` (reason PROBE_UNSUPPORTED) for a daemon too old to say."""
        return probe_paths(self.link, paths, write)

    def plan_transfer(self, spec: pb.JobSpec, transfer: str = "auto") -> TransferPlan:
        """Which clips to upload and whether the output comes back as a stream."""
        return plan_transfer(self.link, spec, transfer)

    def hash_frames(self, spec: pb.JobSpec, plan: TransferPlan) -> tuple[pb.JobSpec, list]:
        """A copy of `spec` whose `plan.upload` clips name their frames by content, and the (path, FrameRef)
        pairs to upload."""
        return local_files.hash_frames(spec, plan)

    def upload_frames(
        self,
        files: Sequence,
        on_progress: Optional[Callable[[pb.JobEvent], None]] = None,
        job: Optional[pb.Job] = None,
    ) -> None:
        """Send each (path, FrameRef) the daemon lacks, resuming partial uploads where the daemon's copy ends.
        `job`: the job waiting for these frames, named in the progress events."""
        upload.upload_frames(self.link, self.stats, files, on_progress, job, self.upload_chunk_bytes())

    def upload_paths(
        self,
        paths: Sequence[str],
        on_progress: Optional[Callable[[pb.JobEvent], None]] = None,
        job: Optional[pb.Job] = None,
    ) -> list:
        """Put these files into the daemon's frame cache, each read and hashed while the one before it is
        sent; returns their `pb.FrameRef`s in order (what a spec's uploaded_frames name them by)."""
        return upload.upload_paths(self.link, self.stats, paths, on_progress, job, self.upload_chunk_bytes())

    def upload_chunk_bytes(self) -> int:
        """Frame bytes per uploaded chunk: `chunk_bytes`, or less where the daemon takes smaller messages
        (its --max-message, asked once per client)."""
        if self._max_message_bytes is None:
            self._max_message_bytes = self.info().max_message_bytes
        return chunk_bytes_within(self._max_message_bytes, self.chunk_bytes)

    def download_result(
        self,
        job: pb.Job,
        output_template: str,
        result: Optional[RemoveResult] = None,
        on_progress: Optional[Callable[[pb.JobEvent], None]] = None,
        sides: Optional[dict] = None,
        sources: Collection[str] = (),
    ) -> RemoveResult:
        """Fetch a streamed-back job's files and write them at `output_template` (the side sequences at
        their `sides` templates by kind, else beside it), all renamed into place only when every one
        arrived whole, and none over `sources` (real paths) or a file voidlink did not write."""
        return download.download_result(
            self.link, self.stats, job, output_template, result, on_progress, sides, sources
        )

    # -- a daemon on this machine ---------------------------------------------------------

    def ensure_daemon(self, data_dir: Optional[PathLike] = None, timeout: float = 30.0) -> None:
        """Start a detached local daemon when none answers, and wait until it is SERVING."""
        local_daemon.ensure_daemon(self.link, data_dir, timeout)

    def is_serving(self, timeout: float = 2.0) -> bool:
        """True when the daemon's gRPC health service answers SERVING."""
        return self.link.is_serving(timeout)
