"""The link to one daemon: its address, token and TLS, the gRPC channel, and the daemon's errors
turned back into voidlink's.

Every call the client makes goes through `Connection.call` (or streams on `Connection.stub`), so the
protocol metadata, the token and the error translation are in one place.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Optional, Union

import grpc
from voidlink.bridge.pathmap import PathMap
from voidlink.protos import ADDRESS_ENV, DEFAULT_ADDRESS, PROTOCOL_METADATA_KEY, PROTOCOL_VERSION, rpc, status

from voidlink import errors

PathLike = Union[str, "os.PathLike[str]"]

TOKEN_ENV = "VOIDLINK_TOKEN"
TOKEN_FILE_ENV = "VOIDLINK_TOKEN_FILE"
TLS_CA_ENV = "VOIDLINK_TLS_CA"
MAX_RECEIVE_BYTES = 64 * 1024 * 1024
# What a stream that broke off mid-way ends with: worth asking again for what did not arrive.
BROKEN_CONNECTION = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
# The daemon serves a bounded number of streams at once; one past it is refused with this reason, and a
# client waits and asks again (or, following a job, asks for its state instead) rather than failing.
STREAMS_BUSY = "STREAMS_BUSY"
BUSY_POLL_SECONDS = 2.0
BUSY_WAITS = 30  # tries of a refused upload or download stream, BUSY_POLL_SECONDS apart: a minute


def streams_busy(exc: grpc.RpcError) -> bool:
    """Whether a stream was refused because the daemon's streams are all taken (worth trying again)."""
    if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
        return False
    return status.detail_in(exc.trailing_metadata()).reason == STREAMS_BUSY
# gRPC core's connectivity numbers as the public enum names them (ChannelConnectivity.value is (number, name)).
_CONNECTIVITY = {state.value[0]: state for state in grpc.ChannelConnectivity}


def resolve_address(address: Optional[str] = None) -> str:
    return address or os.environ.get(ADDRESS_ENV) or DEFAULT_ADDRESS


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


def open_channel(address: str, tls: Union[bool, str], extra: Sequence = ()) -> grpc.Channel:
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


def is_local(address: str) -> bool:
    """True for an address on this machine (where a daemon may be started for the caller)."""
    if address.startswith("unix:"):
        return True
    host = address.rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "")


class Connection:
    """One channel to one daemon, with the metadata every call carries. Safe to share between threads."""

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
        self.address = resolve_address(address)
        self.path_map = path_map if path_map is not None else PathMap.from_environment()
        self.connect_timeout = connect_timeout
        self.tls = resolve_tls(tls)
        self.channel = open_channel(self.address, self.tls, channel_options)
        self.stub = rpc.VoidLinkStub(self.channel)
        metadata = [(PROTOCOL_METADATA_KEY, str(PROTOCOL_VERSION))]
        token = resolve_token(token)
        if token:
            metadata.append(("authorization", f"Bearer {token}"))
        self.metadata = tuple(metadata)
        # Kick the channel into connecting now, so the first call finds it up. Nothing subscribes to the channel
        # for the client's lifetime: a subscriber is held by a gRPC poll thread that wakes five times a second
        # until it is unsubscribed, so every client let go of without a close() kept a thread and its channel
        # alive for the rest of the process (a host's session, the daemon's own links).
        self._check_connectivity(try_to_connect=True)

    def _check_connectivity(self, try_to_connect: bool = False) -> Optional[grpc.ChannelConnectivity]:
        """The channel's state as gRPC's core holds it, asked on this thread (no poll thread is started).

        grpcio offers this only on its private core channel; without it (None) every call waits for ready,
        which is slower but as correct.
        """
        check = getattr(getattr(self.channel, "_channel", None), "check_connectivity_state", None)
        if check is None:
            return None
        try:
            return _CONNECTIVITY.get(check(try_to_connect))
        except (ValueError, RuntimeError):  # a closed channel
            return None

    def close(self) -> None:
        # A ready-wait leaves a request to connect for gRPC's poll thread's next 0.2 s turn; the thread would
        # honour it on the closed channel and die with a traceback on the host's console ("Cannot invoke RPC:
        # Channel closed!"). grpcio keeps that request in the channel's connectivity state (a private field,
        # read defensively: without it the close is as before).
        state = getattr(self.channel, "_connectivity_state", None)
        lock = getattr(state, "lock", None)
        if lock is not None and hasattr(state, "try_to_connect"):
            with lock:
                state.try_to_connect = False
        self.channel.close()

    def ready(self, timeout: Optional[float] = None) -> None:
        """Wait for the channel to connect; raises `errors.Unavailable` naming the address."""
        if not self._wait_ready(timeout or self.connect_timeout):
            raise errors.Unavailable(
                f"no voidlink daemon answers at {self.address}: start one with `voidlink serve` "
                f"(or set {ADDRESS_ENV} to the daemon's address)",
                reason="DAEMON_UNREACHABLE",
            )

    def _wait_ready(self, timeout: float) -> bool:
        if self._check_connectivity() is grpc.ChannelConnectivity.READY:
            return True  # a connected channel skips the wait and its poll thread
        future = grpc.channel_ready_future(self.channel)
        try:
            future.result(timeout=timeout)
        except grpc.FutureTimeoutError:
            # Cancelled, or its subscription (and the poll thread holding it) lives until the address answers.
            future.cancel()
            return False
        return True

    def call(self, method: str, request, timeout: Optional[float] = 30.0):
        """One unary RPC; the daemon's refusal comes back as the `errors.VoidlinkError` it names."""
        self.ready()
        try:
            return getattr(self.stub, method)(request, timeout=timeout, metadata=self.metadata)
        except grpc.RpcError as exc:
            raise self.error(exc) from None

    def error(self, exc: grpc.RpcError) -> errors.VoidlinkError:
        return to_error(exc, self.address, self.path_map)

    def is_serving(self, timeout: float = 2.0) -> bool:
        """True when the daemon's gRPC health service answers SERVING."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        if not self._wait_ready(timeout):
            return False
        try:
            reply = health_pb2_grpc.HealthStub(self.channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
        except grpc.RpcError:
            return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING


def to_error(exc: grpc.RpcError, address: str, path_map: Optional[PathMap] = None) -> errors.VoidlinkError:
    """The voidlink error a failed call means, its file named as this machine sees it."""
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
