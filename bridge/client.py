"""Client: the one way hosts, scripts and the CLI talk to a voidlink daemon.

    from voidlink.bridge import Client
    result = Client().remove(plate="/shots/sh010/plate.####.exr", mask="/shots/sh010/roto.####.exr",
                             frames=(1001, 1100), prompt="an empty street", output="/shots/sh010/void/clean.####.exr")

A remote daemon is reached the same way (`Client("gpu-box:50151", token=..., tls="studio-ca.pem")`).
Paths go through the studio's path map; when the daemon cannot read a clip (or write the output),
`remove` uploads that clip's frames into the daemon's frame cache and fetches the result back,
writing it here atomically. Nothing it already holds is sent twice.

Needs grpcio and protobuf only (no torch, no Qt), and runs on the Python 3.9 of older hosts.
"""

from __future__ import annotations

import hashlib
import ntpath
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

import grpc
from voidlink.bridge.pathmap import PathMap, is_windows_path
from voidlink.protos import (
    ADDRESS_ENV,
    DEFAULT_ADDRESS,
    PROTOCOL_METADATA_KEY,
    PROTOCOL_VERSION,
    pb,
    rpc,
    status,
    vocabulary,
)
from voidlink.protos.clips import SequencePattern, clip_json, clip_media
from voidlink.protos.events import job_event
from voidlink.protos.vocabulary import state_name
from voidlink.protos.wire import CHUNK_BYTES, frame_chunk_bytes, hash_files

from voidlink import errors

TERMINAL = vocabulary.TERMINAL

PathLike = Union[str, "os.PathLike[str]"]
FrameRange = Optional[Sequence[int]]

TRANSFER_MODES = ("auto", "shared", "stream")
TOKEN_ENV = "VOIDLINK_TOKEN"
TOKEN_FILE_ENV = "VOIDLINK_TOKEN_FILE"
TLS_CA_ENV = "VOIDLINK_TLS_CA"
MAX_RECEIVE_BYTES = 64 * 1024 * 1024
# What a stream that broke off mid-way ends with: worth asking again for what did not arrive.
_BROKEN_CONNECTION = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)


def resolve_token(token: Optional[str] = None) -> Optional[str]:
    """The token to send: the argument, else $VOIDLINK_TOKEN, else the first line of $VOIDLINK_TOKEN_FILE."""
    if token:
        return token.strip()
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV].strip()
    path = os.environ.get(TOKEN_FILE_ENV)
    if path:
        return read_token_file(path)
    return None


def read_token_file(path: PathLike) -> str:
    try:
        with open(os.fspath(path), encoding="utf-8") as handle:
            lines = [line.split("#", 1)[0].strip() for line in handle]
    except OSError as exc:
        raise errors.InvalidInput(
            f"cannot read the token file {os.fspath(path)}: {exc.strerror}", reason="BAD_TOKEN_FILE", file=str(path)
        ) from None
    token = next((line for line in lines if line), "")
    if not token:
        raise errors.InvalidInput(
            f"the token file {os.fspath(path)} is empty", reason="BAD_TOKEN_FILE", file=os.fspath(path)
        )
    return token


def resolve_tls(tls: Union[bool, PathLike, None] = None) -> Union[bool, str]:
    """False (plain), True (the system's CA roots) or a CA certificate file; $VOIDLINK_TLS_CA when not given."""
    if tls is None:
        env = os.environ.get(TLS_CA_ENV, "")
        if not env:
            return False
        return True if env.lower() in ("1", "true", "system") else env
    if isinstance(tls, bool):
        return tls
    return os.fspath(tls)


def _channel(address: str, tls: Union[bool, str], extra: Sequence = ()) -> grpc.Channel:
    options = [("grpc.max_receive_message_length", MAX_RECEIVE_BYTES), *extra]
    if not tls:
        return grpc.insecure_channel(address, options=options)
    root = None
    if isinstance(tls, str):
        try:
            with open(tls, "rb") as handle:
                root = handle.read()
        except OSError as exc:
            raise errors.InvalidInput(
                f"cannot read the CA certificate {tls}: {exc.strerror}", reason="BAD_TLS_CA", file=tls
            ) from None
    return grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=root), options=options)


def resolve_address(address: Optional[str] = None) -> str:
    return address or os.environ.get(ADDRESS_ENV) or DEFAULT_ADDRESS


@dataclass
class RemoveResult:
    """What a finished removal gives a host: where the clean plate is and which frames."""

    job_id: str
    state: str
    output_pattern: str = ""
    first: int = 0
    last: int = 0
    otio_json: str = ""
    quadmask_pattern: str = ""
    backend: str = ""
    notes: list = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    # What made the frames (backend, version, seed, steps, weights' SHA-256 ...), as their headers say.
    provenance: dict = field(default_factory=dict)

    @classmethod
    def from_job(cls, job: pb.Job) -> RemoveResult:
        r = job.result
        return cls(
            job_id=job.id,
            state=state_name(job.state),
            output_pattern=r.output_pattern,
            first=r.frames.first,
            last=r.frames.last,
            otio_json=r.otio_json,
            quadmask_pattern=r.quadmask_pattern,
            backend=r.backend,
            notes=list(r.notes),
            metrics=dict(r.metrics),
            provenance=dict(r.provenance),
        )

    def otio_clip(self):
        """The result as an `opentimelineio.schema.Clip` (imports OTIO on first use)."""
        import opentimelineio as otio

        return otio.adapters.read_from_string(self.otio_json, "otio_json")


def _path(path: Optional[PathLike]) -> str:
    if path is None:
        return ""
    text = os.fspath(path)
    # A Windows path handed to a POSIX client is for a daemon that maps it; it is absolute already.
    return text if is_windows_path(text) and os.name != "nt" else os.path.abspath(text)


def clip_spec(
    path: PathLike,
    frames: FrameRange = None,
    channels: str = "",
    colorspace: str = "",
    matte: Optional[pb.MatteOptions] = None,
) -> pb.ClipSpec:
    first, last = (frames[0], frames[1]) if frames else (None, None)
    spec = pb.ClipSpec(otio_json=clip_json(_path(path), first, last), channels=channels, colorspace=colorspace)
    if matte is not None:
        spec.matte.CopyFrom(matte)
    return spec


def default_output(plate: PathLike) -> str:
    """`<plate folder>/void/<plate name>_void.####.exr`: next to the plate, never onto it."""
    from voidlink.protos.clips import SequencePattern

    plate = _path(plate)
    paths = ntpath if is_windows_path(plate) else os.path  # a Windows client's path, seen from anywhere
    folder, name = paths.split(plate)
    pattern = SequencePattern.parse(name)
    stem = pattern.prefix.rstrip("._-") if pattern else paths.splitext(name)[0]
    return paths.join(folder, "void", f"{stem}_void.####.exr")


def build_spec(
    plate: PathLike,
    mask: PathLike,
    affected: Optional[PathLike] = None,
    frames: FrameRange = None,
    prompt: str = "",
    output: Optional[PathLike] = None,
    backend: str = "auto",
    *,
    quadmask: bool = False,
    steps: int = 0,
    guidance: float = 0.0,
    seed: Optional[int] = None,
    passes: int = 0,
    quality: str = "balanced",
    crop: str = "auto",
    priority: int = 0,
    pixel_type: str = "auto",
    compression: str = "zip",
    write_quadmask: bool = True,
    resample_mattes: bool = False,
    name: str = "",
    dilate: int = 0,
    feather: float = 0.0,
    threshold: float = 0.0,
    overwrite: bool = False,
) -> pb.JobSpec:
    """A JobSpec from paths and plain values; raises `errors.InvalidInput` naming a bad argument.

    `overwrite=True` lets the job replace files at its output that voidlink did not write (without it
    the daemon refuses them: `errors.OutputExists`); earlier voidlink results are replaced either way,
    and a job's own sources never."""
    quality_value = vocabulary.QUALITY.value(quality, "quality")
    crop_value = vocabulary.CROP_MODE.value(crop, "crop")
    pixel_value = vocabulary.PIXEL_TYPE.value(pixel_type, "pixel_type")
    compression_value = vocabulary.COMPRESSION.value(compression, "compression")
    if passes not in (0, 1, 2):
        raise errors.InvalidInput(
            f"passes must be 1 or 2 (0: the backend's default), not {passes}", reason="BAD_VALUE", field="passes"
        )
    if guidance < 0:
        raise errors.InvalidInput(
            f"guidance must be 0 (the backend's default) or positive, not {guidance}",
            reason="BAD_VALUE",
            field="guidance",
        )
    if frames is not None and (len(frames) != 2 or frames[1] < frames[0]):
        raise errors.InvalidInput(
            f"frame range {tuple(frames)} is not (first, last) with first <= last", reason="EMPTY_RANGE", field="frames"
        )
    matte = pb.MatteOptions(is_quadmask=quadmask, dilate=dilate, feather=feather, threshold=threshold)
    spec = pb.JobSpec(
        name=name,
        source=clip_spec(plate, frames),
        mask=clip_spec(mask, frames, matte=matte),
        params=pb.JobParams(
            prompt=prompt,
            backend=backend,
            steps=steps,
            guidance=guidance,
            passes=passes,
            quality=quality_value,
            crop_mode=crop_value,
            priority=priority,
            resample_mattes=resample_mattes,
        ),
        output=pb.OutputSpec(
            path_template=_path(output) if output else default_output(plate),
            pixel_type=pixel_value,
            compression=compression_value,
            write_quadmask=write_quadmask,
            overwrite=overwrite,
        ),
    )
    if affected is not None:
        spec.affected.CopyFrom(clip_spec(affected, frames, matte=pb.MatteOptions(dilate=dilate, threshold=threshold)))
    if seed is not None:
        spec.params.seed = seed
    if frames is not None:
        spec.frames.first, spec.frames.last = int(frames[0]), int(frames[1])
    return spec


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
        self.address = resolve_address(address)
        self.path_map = path_map if path_map is not None else PathMap.from_environment()
        self.chunk_bytes = CHUNK_BYTES
        # What this client sent and fetched, for progress reports and benchmarks.
        self.stats = TransferStats()
        self.connect_timeout = connect_timeout
        self.tls = resolve_tls(tls)
        self._channel = _channel(self.address, self.tls, channel_options)
        self._stub = rpc.VoidLinkStub(self._channel)
        metadata = [(PROTOCOL_METADATA_KEY, str(PROTOCOL_VERSION))]
        token = resolve_token(token)
        if token:
            metadata.append(("authorization", f"Bearer {token}"))
        self._metadata = tuple(metadata)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------------------

    def _ready(self, timeout: Optional[float] = None) -> None:
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout or self.connect_timeout)
        except grpc.FutureTimeoutError:
            raise errors.Unavailable(
                f"no voidlink daemon answers at {self.address}: start one with `voidlink serve` "
                f"(or set {ADDRESS_ENV} to the daemon's address)",
                reason="DAEMON_UNREACHABLE",
            ) from None

    def _call(self, method: str, request, timeout: Optional[float] = 30.0):
        self._ready()
        try:
            return getattr(self._stub, method)(request, timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise _to_error(exc, self.address, self.path_map) from None

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

    def get(self, job_id: str) -> pb.Job:
        return self.path_map.job_to_client(self._call("GetJob", pb.GetJobRequest(job_id=job_id)).job)

    def cancel(self, job_id: str) -> pb.Job:
        return self.path_map.job_to_client(self._call("CancelJob", pb.CancelJobRequest(job_id=job_id)).job)

    def jobs(self, states: Sequence[int] = (), limit: int = 0) -> list:
        jobs = self._call("ListJobs", pb.ListJobsRequest(states=states, limit=limit)).jobs
        return [self.path_map.job_to_client(job) for job in jobs]

    def watch(self, job_id: str, previews: bool = False) -> Iterator[pb.JobEvent]:
        """Events of one job until it ends: the current state first, then each change."""
        self._ready()
        stream = self._stub.WatchJob(pb.WatchJobRequest(job_id=job_id, previews=previews), metadata=self._metadata)
        try:
            for event in stream:
                yield self.path_map.event_to_client(event)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.CANCELLED and stream.cancelled():
                return
            raise _to_error(exc, self.address, self.path_map) from None
        finally:
            stream.cancel()

    def wait(
        self, job_id: str, on_progress: Optional[Callable[[pb.JobEvent], None]] = None, previews: bool = False
    ) -> pb.Job:
        """Follow a job to its end (re-attaching if the stream drops); returns the final Job."""
        while True:
            for event in self.watch(job_id, previews=previews):
                if on_progress is not None:
                    on_progress(event)
                if event.state in TERMINAL:
                    return self.get(job_id)
            job = self.get(job_id)  # stream closed early (daemon restarting): poll, then watch again
            if job.state in TERMINAL:
                return job
            time.sleep(0.5)

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

        Clips the daemon cannot read are uploaded into its frame cache first; keep the plan and hand
        the ended job to `finish`, which fetches a streamed-back result. `plan`: one `plan_transfer`
        already made (its `transfer` then goes unused)."""
        if plan is None:
            plan = self.plan_transfer(spec, transfer)
        plan.output_template = spec.output.path_template
        if not plan.streamed:
            return self.submit(spec), plan
        spec, files = self.hash_frames(spec, plan)
        try:
            # The job exists before its frames arrive, so anyone watching it sees the upload.
            job = self.submit(spec, upload_follows=True)
        except errors.NotFound as error:
            if error.reason != "FRAMES_NOT_UPLOADED":
                raise
            # A daemon from before upload_follows: frames first, then the job.
            self.upload_frames(files, on_progress)
            return self.submit(spec), plan
        if job.state != pb.JOB_STATE_UPLOADING:  # the daemon holds every frame already
            self.stats.bytes_reused += sum({ref.sha256: ref.size for _, ref in files}.values())
        else:
            try:
                self.upload_frames(files, on_progress, job)
            except BaseException:
                # Nobody will finish this upload: the job must not wait for it.
                try:
                    self.cancel(job.id)
                except errors.VoidlinkError:
                    pass
                raise
            job = self.get(job.id)  # queued by the daemon when its last frame came in
        return job, plan

    def finish(
        self, job: pb.Job, plan: TransferPlan, on_progress: Optional[Callable[[pb.JobEvent], None]] = None
    ) -> pb.Job:
        """The ended `job` as this machine sees it: when its output was streamed back, the files are
        fetched and written at the plan's output first (atomically) and the job's result names them.
        A job that did not succeed is returned as it is."""
        if job.state != pb.JOB_STATE_SUCCEEDED or not plan.stream_back:
            return job
        result = self.download_result(job, plan.output_template, on_progress=on_progress)
        local = pb.Job()
        local.CopyFrom(job)
        local.result.output_pattern = result.output_pattern
        local.result.otio_json = result.otio_json
        local.result.quadmask_pattern = result.quadmask_pattern
        local.spec.output.path_template = plan.output_template
        local.message = job.message.replace(job.result.output_pattern, result.output_pattern)
        return local

    # -- shared storage or streamed frames ------------------------------------------------

    def probe(self, paths: Sequence[str], write: bool = False) -> list:
        """What the daemon makes of these client paths (mapped first): a `pb.PathProbe` each.
        Raises `errors.Conflict` (reason PROBE_UNSUPPORTED) for a daemon too old to say."""
        mapped = [self.path_map.to_daemon(p) for p in paths]
        try:
            reply = self._call("ProbePaths", pb.ProbePathsRequest(paths=mapped, write=write))
        except errors.VoidlinkError as error:
            if error.reason == "UNIMPLEMENTED":
                raise errors.Conflict(
                    f"the daemon at {self.address} cannot probe paths (an older voidlink)", reason="PROBE_UNSUPPORTED"
                ) from None
            raise
        return list(reply.paths)

    def plan_transfer(self, spec: pb.JobSpec, transfer: str = "auto") -> TransferPlan:
        """Which clips to upload and whether the output comes back as a stream."""
        if transfer not in TRANSFER_MODES:
            raise errors.InvalidInput(
                f"unknown transfer mode '{transfer}' (choose {', '.join(TRANSFER_MODES)})",
                reason="BAD_VALUE",
                field="transfer",
            )
        clips = [name for name in ("source", "mask", "affected") if getattr(spec, name).otio_json.strip()]
        if transfer == "shared":
            return TransferPlan(mode="shared")
        if transfer == "stream":
            return TransferPlan(mode="stream", upload=clips, stream_back=True, reasons=["streaming was asked for"])
        paths = [clip_media(getattr(spec, name).otio_json, f"spec.{name}").path for name in clips]
        try:
            reads = self.probe(paths)
            written = self.probe([spec.output.path_template], write=True)[0]
        except errors.Conflict:
            return TransferPlan(mode="shared", reasons=["the daemon cannot tell which paths it sees"])
        plan = TransferPlan(mode="shared")
        # Stream only what this machine has and the daemon lacks: a path neither side sees stays a
        # path, so the daemon's error names it as it always has.
        for name, path, probe in zip(clips, paths, reads):
            if not probe.usable and os.path.isdir(_folder(path)):
                plan.upload.append(name)
                plan.reasons.append(f"spec.{name}: {probe.path}: {probe.reason}")
        if not written.usable and _writable_here(spec.output.path_template):
            plan.stream_back = True
            plan.reasons.append(f"spec.output: {written.path}: {written.reason}")
        if plan.streamed:
            plan.mode = "stream" if len(plan.upload) == len(clips) and plan.stream_back else "mixed"
        return plan

    def upload_job(
        self, spec: pb.JobSpec, plan: TransferPlan, on_progress: Optional[Callable[[pb.JobEvent], None]] = None
    ) -> pb.JobSpec:
        """A copy of `spec` whose `plan.upload` clips name frames now in the daemon's cache."""
        out, files = self.hash_frames(spec, plan)
        self.upload_frames(files, on_progress)
        return out

    def hash_frames(self, spec: pb.JobSpec, plan: TransferPlan) -> tuple[pb.JobSpec, list]:
        """A copy of `spec` whose `plan.upload` clips name their frames by content, and the (path, FrameRef)
        pairs to upload."""
        out = pb.JobSpec()
        out.CopyFrom(spec)
        first_last = (spec.frames.first, spec.frames.last) if spec.HasField("frames") else None
        clips = {name: local_frames(getattr(out, name).otio_json, f"spec.{name}", first_last) for name in plan.upload}
        hashes = iter(hash_files([path for frames in clips.values() for _, path in frames]))
        files: list = []
        for name, frames in clips.items():
            clip = getattr(out, name)
            del clip.uploaded_frames[:]
            for frame, path in frames:
                ref = clip.uploaded_frames.add(sha256=next(hashes), size=os.path.getsize(path), frame=frame)
                files.append((path, ref))
        if plan.stream_back:
            out.output.stream_back = True
        return out, files

    def upload_frames(
        self,
        files: Sequence,
        on_progress: Optional[Callable[[pb.JobEvent], None]] = None,
        job: Optional[pb.Job] = None,
    ) -> None:
        """Send each (path, FrameRef) the daemon lacks, resuming partial uploads where the daemon's copy ends.
        `job`: the job waiting for these frames, named in the progress events."""
        job_id, state = (job.id, job.state) if job is not None else ("", 0)
        unique = {}
        for path, ref in files:
            unique.setdefault(ref.sha256, (path, ref))
        refs = [ref for _, ref in unique.values()]
        for attempt in range(4):
            held = self._call("HasFrames", pb.HasFramesRequest(frames=refs)).frames
            todo = [(unique[s.sha256][0], unique[s.sha256][1], s.offset) for s in held if not s.present]
            progress = pb.TransferProgress(
                direction="upload",
                files_total=len(refs),
                files_done=len(refs) - len(todo),
                bytes_total=sum(ref.size for ref in refs),
                bytes_reused=sum(unique[s.sha256][1].size for s in held if s.present),
            )
            progress.bytes_done = progress.bytes_reused + sum(offset for _, _, offset in todo)
            if attempt == 0:
                self.stats.bytes_reused += progress.bytes_reused
            _report(on_progress, progress, job_id, state)
            if not todo:
                return
            try:
                self._send(todo, progress, lambda p: _report(on_progress, p, job_id, state))
                return
            except grpc.RpcError as exc:
                if exc.code() not in _BROKEN_CONNECTION or attempt == 3:
                    raise _to_error(exc, self.address, self.path_map) from None
                self.stats.resumes += 1
                time.sleep(0.5 * (attempt + 1))  # the connection broke: ask what arrived, send the rest

    def _send(self, todo: list, progress: pb.TransferProgress, report: Callable[[pb.TransferProgress], None]) -> None:
        self._ready()
        stats = self.stats
        chunk_bytes = self.chunk_bytes
        lock = threading.Lock()
        stopped = [False]

        def chunks():
            for path, ref, offset in todo:
                with open(path, "rb") as handle:
                    handle.seek(offset)
                    while offset < ref.size:
                        data = handle.read(chunk_bytes)
                        if not data:
                            raise errors.Conflict(
                                f"{path} shrank while it was uploaded ({offset} of {ref.size} bytes)",
                                reason="SOURCE_CHANGED",
                                file=path,
                            )
                        with lock:
                            # gRPC may pull one more chunk after the call ended: it is not sent, nor counted.
                            if stopped[0]:
                                return
                            stats.bytes_sent += len(data)
                        yield frame_chunk_bytes(ref.sha256, ref.size, offset, data)
                        offset += len(data)

        acked = {ref.sha256: offset for _, ref, offset in todo}
        upload = self._channel.stream_stream(  # the chunks go as the wire bytes made above
            _UPLOAD_FRAMES, request_serializer=None, response_deserializer=pb.FrameAck.FromString
        )
        stream = upload(chunks(), metadata=self._metadata)
        try:
            for ack in stream:
                before = acked.get(ack.sha256, 0)
                progress.bytes_done += ack.offset - before
                acked[ack.sha256] = ack.offset
                if ack.complete:
                    progress.files_done += 1
                    stats.frames_sent += 1
                report(progress)
        finally:
            with lock:
                stopped[0] = True
            stream.cancel()

    def download_result(
        self,
        job: pb.Job,
        output_template: str,
        result: Optional[RemoveResult] = None,
        on_progress: Optional[Callable[[pb.JobEvent], None]] = None,
    ) -> RemoveResult:
        """Fetch a streamed-back job's files and write them at `output_template` (and beside it).

        Each file lands in a temporary name first and every one is renamed into place only when all
        arrived whole (hash checked), so a broken download leaves any earlier result as it was."""
        result = result or result_or_raise(job)
        pattern = SequencePattern.parse(os.path.basename(output_template))
        if pattern is None:
            raise errors.InvalidInput(
                f"output '{output_template}' has no frame number", reason="BAD_PATTERN", field="output"
            )
        folder = os.path.dirname(output_template)
        local = SequencePattern(os.path.join(folder, pattern.prefix), pattern.suffix, pattern.padding or 4)
        whole: dict = {}  # relative path -> (temporary, final, sha256): arrived whole, kept across a break
        progress = pb.TransferProgress(direction="download")
        try:
            for attempt in range(4):
                try:
                    self._receive(job, folder, local, whole, progress, on_progress)
                    break
                except grpc.RpcError as exc:
                    if exc.code() not in _BROKEN_CONNECTION or attempt == 3:
                        raise _to_error(exc, self.address, self.path_map) from None
                    self.stats.resumes += 1
                    time.sleep(0.5 * (attempt + 1))  # the connection broke: ask again for what did not arrive whole
            for temporary, final, _ in whole.values():
                os.replace(temporary, final)
            whole = {}
        finally:
            for temporary, _, _ in whole.values():
                try:
                    os.remove(temporary)
                except OSError:
                    pass
        daemon_folder = os.path.dirname(job.spec.output.path_template)
        back = PathMap([(folder, daemon_folder)], client_os="windows" if is_windows_path(folder) else "linux")
        # The daemon's result names its own folder: point it at where the files now are.
        result.output_pattern = local.hashes()
        if result.quadmask_pattern:
            result.quadmask_pattern = back.to_client(job.result.quadmask_pattern)
        result.otio_json = back._otio(job.result.otio_json, False)
        return result

    def _receive(
        self,
        job: pb.Job,
        folder: str,
        local: SequencePattern,
        whole: dict,
        progress: pb.TransferProgress,
        on_progress: Optional[Callable[[pb.JobEvent], None]],
    ) -> None:
        """One DownloadResult stream into temporary files; `whole` gains each file that arrived whole and
        names, on a retry, the files not to send again."""
        self._ready()
        have = [pb.FileDigest(relative_path=name, sha256=sha) for name, (_, _, sha) in whole.items()]
        progress.bytes_done = sum(os.path.getsize(temporary) for temporary, _, _ in whole.values())
        request = pb.DownloadResultRequest(job_id=job.id, have=have)
        stream = self._stub.DownloadResult(request, metadata=self._metadata)
        handle = None
        temporary = ""
        try:
            for chunk in stream:
                data = chunk.data  # each read of the field copies the bytes: once is enough
                if chunk.offset == 0 or (chunk.offset == chunk.size and not data):
                    if chunk.kind == "output":
                        final = local.path(chunk.frame)
                    else:
                        final = os.path.join(folder, *_safe_parts(chunk.relative_path))
                    temporary = os.path.join(
                        os.path.dirname(final), f".{os.path.basename(final)}.voidlink-{job.id}.part"
                    )
                    progress.files_total = chunk.files_total or progress.files_total
                    progress.bytes_total = chunk.bytes_total or progress.bytes_total
                    if chunk.offset == chunk.size and not data:
                        # The daemon names a file this client already holds whole: nothing to write.
                        if chunk.relative_path not in whole or whole[chunk.relative_path][2] != chunk.sha256:
                            raise errors.VoidlinkError(
                                f"the daemon skipped {chunk.relative_path} of job {job.id}, which did not arrive "
                                "whole here; download again",
                                reason="HASH_MISMATCH",
                                file=final,
                            )
                        continue
                    os.makedirs(os.path.dirname(final) or ".", exist_ok=True)
                    whole.pop(chunk.relative_path, None)
                    handle = open(temporary, "wb")
                    digest = hashlib.sha256()
                handle.write(data)
                digest.update(data)
                self.stats.bytes_received += len(data)
                progress.bytes_done += len(data)
                if chunk.offset + len(data) >= chunk.size:
                    handle.close()
                    handle = None
                    if chunk.sha256 != digest.hexdigest():
                        raise errors.VoidlinkError(
                            f"{chunk.relative_path} of job {job.id} arrived damaged (hash mismatch); download again",
                            reason="HASH_MISMATCH",
                            file=final,
                        )
                    whole[chunk.relative_path] = (temporary, final, chunk.sha256)
                    progress.files_done = len(whole)
                    _report(on_progress, progress, job.id, job.state)
        finally:
            stream.cancel()
            if handle is not None:  # a file cut short: it is fetched again whole
                handle.close()
                try:
                    os.remove(temporary)
                except OSError:
                    pass

    def ensure_daemon(self, data_dir: Optional[PathLike] = None, timeout: float = 30.0) -> None:
        """Start a detached local daemon when none answers, and wait until it is SERVING."""
        if self.is_serving(timeout=1.0):
            return
        if not _is_local(self.address):
            raise errors.Unavailable(
                f"no voidlink daemon answers at {self.address}, and it is not a local address to start one on",
                reason="DAEMON_UNREACHABLE",
            )
        command = daemon_command() + ["serve", "--listen", self.address]
        if data_dir is not None:
            command += ["--data-dir", os.fspath(data_dir)]
        log_dir = Path(os.fspath(data_dir)) if data_dir else _log_dir()
        log_dir.mkdir(parents=True, exist_ok=True)
        with open(log_dir / "daemon.log", "ab") as log_file:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives the host application that started it
                close_fds=True,
                # Not the caller's folder: `-m voidlink` from a checkout would import the unmapped source tree.
                cwd=os.fspath(log_dir),
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_serving(timeout=0.5):
                return
            if process.poll() is not None:
                raise errors.Unavailable(
                    f"the voidlink daemon exited at start (code {process.returncode}); see {log_dir / 'daemon.log'}",
                    reason="DAEMON_START_FAILED",
                    file=str(log_dir / "daemon.log"),
                )
            time.sleep(0.2)
        raise errors.Unavailable(
            f"the voidlink daemon did not become ready within {timeout:.0f} s; see {log_dir / 'daemon.log'}",
            reason="DAEMON_START_FAILED",
        )

    def is_serving(self, timeout: float = 2.0) -> bool:
        """True when the daemon's gRPC health service answers SERVING."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
            reply = health_pb2_grpc.HealthStub(self._channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
        except (grpc.FutureTimeoutError, grpc.RpcError):
            return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING


@dataclass
class TransferStats:
    """Bytes this client moved: frame bytes handed to the daemon, reused from its cache, fetched back."""

    bytes_sent: int = 0
    bytes_reused: int = 0
    frames_sent: int = 0
    bytes_received: int = 0
    resumes: int = 0


@dataclass
class TransferPlan:
    mode: str = "shared"  # "shared", "stream" or "mixed"
    upload: list = field(default_factory=list)  # clip fields whose frames are uploaded
    stream_back: bool = False
    reasons: list = field(default_factory=list)
    output_template: str = ""  # where a streamed-back output is written on this machine

    @property
    def streamed(self) -> bool:
        return bool(self.upload) or self.stream_back


_UPLOAD_FRAMES = "/voidlink.v1.VoidLink/UploadFrames"


def _report(on_progress, progress: pb.TransferProgress, job_id: str = "", state: int = 0) -> None:
    if on_progress is None:
        return
    on_progress(job_event(job_id=job_id, state=state, stage=progress.direction, transfer=progress))


def _safe_parts(relative: str) -> list:
    """The parts of a path the daemon named under the output folder; nothing may climb out of it."""
    parts = relative.split("/")
    if not relative or any(part in ("", ".", "..") or "\\" in part or ":" in part for part in parts):
        raise errors.InvalidInput(
            f"the daemon sent a result file named '{relative}', which is not a plain path under the output folder",
            reason="BAD_RESULT_PATH",
            file=relative,
        )
    return parts


def _folder(path: str) -> str:
    return (ntpath if is_windows_path(path) else os.path).dirname(path) or "."


def _writable_here(path: str) -> bool:
    folder = _folder(path)
    while not os.path.exists(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    return os.path.isdir(folder) and os.access(folder, os.W_OK | os.X_OK)


def local_frames(otio_json: str, field: str, frames: Optional[tuple] = None) -> list:
    """(frame, file) for each frame of a clip on this machine, in `frames` or the clip's own range."""
    try:
        media = clip_media(otio_json, field)
    except ValueError as error:
        raise errors.InvalidInput(str(error), reason="BAD_CLIP", field=field) from None
    pattern = SequencePattern.parse(os.path.basename(media.path))
    if pattern is None:
        raise errors.InvalidInput(
            f"{field}: only image sequences can be uploaded to the daemon ({media.path} is not one); render it "
            "to an EXR sequence or put it where the daemon can read it",
            reason="NOT_A_SEQUENCE",
            field=field,
            file=media.path,
        )
    folder = os.path.dirname(media.path)
    first, last = frames if frames else (media.first, media.last)
    on_disk = {}
    if os.path.isdir(folder):
        regex = pattern.regex()
        for name in os.listdir(folder):
            match = regex.match(name)
            if match:
                on_disk[int(match.group(1))] = os.path.join(folder, name)
    if first is None or last is None:
        if not on_disk:
            raise errors.NotFound(
                f"{field}: no frame of {media.path} on disk", reason="MISSING_FRAMES", file=media.path
            )
        first, last = min(on_disk), max(on_disk)
    missing = [f for f in range(first, last + 1) if f not in on_disk]
    if missing:
        shown = ", ".join(str(f) for f in missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise errors.NotFound(
            f"{field}: {len(missing)} frame(s) of {media.path} missing: {shown}",
            reason="MISSING_FRAMES",
            field=field,
            file=media.path,
            frames=missing,
        )
    return [(f, on_disk[f]) for f in range(first, last + 1)]


def result_or_raise(job: pb.Job) -> RemoveResult:
    if job.state == pb.JOB_STATE_SUCCEEDED:
        return RemoveResult.from_job(job)
    detail = job.error
    frame = detail.frame if detail.HasField("frame") else None
    if job.state == pb.JOB_STATE_CANCELLED:
        raise errors.JobCancelled(f"job {job.id} was cancelled", reason="CANCELLED")
    cls = errors.VoidlinkError if not detail.reason else errors.JobFailed
    raise cls(
        f"job {job.id} failed: {detail.message or job.message}",
        reason=detail.reason or "JOB_FAILED",
        field=detail.field,
        file=detail.file,
        frame=frame,
        frames=list(detail.frames),
    )


def split_command(line: str) -> list:
    """A command line as its arguments, quoted the way this platform's shell quotes them.

    An unquoted path with spaces (`C:\\Program Files\\voidlink\\voidlink.exe`) is taken whole when
    it names an existing file, since that is what a user pasting a path means.
    """
    if os.path.isfile(line):
        return [line]
    if os.name == "nt":
        # posix=False keeps backslashes but also the quotes around each argument.
        args = shlex.split(line, posix=False)
        return [arg[1:-1] if len(arg) > 1 and arg[0] == arg[-1] == '"' else arg for arg in args]
    return shlex.split(line)


def daemon_command() -> list:
    """How to start the daemon from here: $VOIDLINK_DAEMON, this Python, or the `voidlink` script."""
    explicit = os.environ.get("VOIDLINK_DAEMON")
    if explicit:
        return split_command(explicit)
    # Inside Nuke or Resolve sys.executable is the host application, not a Python.
    if os.path.basename(sys.executable).lower().startswith("python"):
        return [sys.executable, "-m", "voidlink"]
    script = shutil.which("voidlink")
    if script:
        return [script]
    raise errors.Unavailable(
        "cannot start a voidlink daemon from this application: set VOIDLINK_DAEMON to the command that runs "
        "`voidlink` (e.g. /opt/voidlink/bin/voidlink), or start `voidlink serve` yourself",
        reason="DAEMON_START_FAILED",
    )


def _log_dir() -> Path:
    try:
        import platformdirs
    except ImportError:  # a host Python with only grpcio and protobuf
        return Path.home() / ".voidlink"
    return Path(platformdirs.user_log_dir("voidlink", appauthor=False))


def _is_local(address: str) -> bool:
    if address.startswith("unix:"):
        return True
    host = address.rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "")


def _to_error(exc: grpc.RpcError, address: str, path_map: Optional[PathMap] = None) -> errors.VoidlinkError:
    code = exc.code()
    detail = status.detail_in(exc.trailing_metadata())
    if path_map and detail.file:
        daemon_file = detail.file
        detail.file = path_map.to_client(daemon_file)
        if detail.file != daemon_file:
            detail.message = detail.message.replace(daemon_file, detail.file)
    if code == grpc.StatusCode.UNAVAILABLE and not detail.reason:
        return errors.Unavailable(
            f"the voidlink daemon at {address} is unavailable ({exc.details()})", reason="DAEMON_UNREACHABLE"
        )
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return errors.Conflict(
            f"the voidlink daemon at {address} does not offer this call ({exc.details()}); it runs an older voidlink",
            reason="UNIMPLEMENTED",
        )
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return errors.Unauthenticated(
            f"the voidlink daemon at {address} refused this client: {exc.details()} (give a token with "
            f"--token-file, ${TOKEN_ENV} or ${TOKEN_FILE_ENV})",
            reason="UNAUTHENTICATED",
        )
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and not detail.reason:
        return errors.VoidlinkError(
            f"the voidlink daemon at {address} refused a message as too large ({exc.details()}); "
            "send less per request or raise the daemon's --max-message",
            reason="MESSAGE_TOO_LARGE",
        )
    return status.error_of(detail, code.name, exc.details() or "")
