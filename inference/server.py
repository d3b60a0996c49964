"""The daemon's gRPC server: one `grpc.Server` carrying the VoidLink service, health and reflection.

`RpcServer` builds the server (its thread pool, message limits, the token check when tokens are
required), registers the servicer with `UploadFrames` reading its chunks through the contract's
own codec (`protos.wire.parse_frame_chunk`, which keeps a chunk's bytes uncopied), adds the
standard health service and reflection, and binds one address, with TLS when it is configured.
What the calls do is the servicer's business (`voidlink.inference.service`); when the server runs
is the daemon's (`voidlink.inference.daemon`).
"""

from __future__ import annotations

from concurrent import futures
from typing import Optional

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc
from voidlink.inference.downloads import wire_or_message
from voidlink.inference.security import AuthInterceptor, TokenFile
from voidlink.inference.service import VoidLinkService, tolerant
from voidlink.protos import SERVICE_NAME, pb, rpc, wire

from voidlink.errors import Unavailable

# The names health answers for: the server as a whole ("") and the VoidLink service.
_HEALTH_NAMES = ("", SERVICE_NAME)
V1_REFLECTION = "grpc.reflection.v1.ServerReflection"


class RpcServer:
    """The VoidLink service, health and reflection on one `grpc.Server`; `bind`, then `start`."""

    def __init__(
        self,
        service: VoidLinkService,
        *,
        max_workers: int,
        max_message_bytes: int,
        tokens: Optional[TokenFile],
        loopback: bool,
    ) -> None:
        self.grpc = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="voidlink-rpc"),
            interceptors=[AuthInterceptor(tokens, open_reflection=loopback)] if tokens else [],
            options=[
                # Without this Linux lets a second server share the port and steal half the calls.
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes),
            ],
        )
        upload = grpc.stream_stream_rpc_method_handler(
            service.UploadFrames,
            request_deserializer=tolerant(wire.parse_frame_chunk),
            response_serializer=pb.FrameAck.SerializeToString,
        )
        download = grpc.unary_stream_rpc_method_handler(
            service.DownloadResult,
            request_deserializer=tolerant(pb.DownloadResultRequest.FromString),
            response_serializer=wire_or_message,  # data chunks are wire bytes made once (wire.file_chunk_bytes)
        )
        rpc.add_VoidLinkServicer_to_server(
            service, _Registrar(self.grpc, {"UploadFrames": upload, "DownloadResult": download})
        )
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        if loopback or tokens is not None:
            # Beyond loopback the service list is for authenticated clients only (the interceptor checks).
            names = (
                SERVICE_NAME,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
                V1_REFLECTION,
            )
            servicer = reflection.ReflectionServicer(names)
            reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, self.grpc)
            # Reflection v1 as well (grpcurl and newer tools ask it first): its messages are v1alpha's
            # field for field, under another package name, so the same servicer answers both.
            v1 = grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
            self.grpc.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(V1_REFLECTION, {"ServerReflectionInfo": v1}),)
            )

    def bind(self, address: str, credentials: Optional[grpc.ServerCredentials] = None) -> str:
        """Listen on `address` (TLS with `credentials`); the address bound (port 0 becomes the port picked)."""
        try:
            if credentials is not None:
                port = self.grpc.add_secure_port(address, credentials)
            else:
                port = self.grpc.add_insecure_port(address)
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

    def start(self) -> None:
        self.grpc.start()

    def serving(self, up: bool) -> None:
        """What health answers: SERVING once the daemon takes calls, NOT_SERVING as it shuts down."""
        state = health_pb2.HealthCheckResponse.SERVING if up else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in _HEALTH_NAMES:
            self.health.set(name, state)

    def stop(self, grace: float) -> None:
        """Refuse new calls, give the ones under way `grace` seconds, and wait until all have ended."""
        self.grpc.stop(grace).wait()


def _tolerant_handler(handler: Optional[grpc.RpcMethodHandler]) -> Optional[grpc.RpcMethodHandler]:
    """The handler with a request parser that hands the servicer `Malformed` bytes instead of failing."""
    if handler is None or handler.request_deserializer is None:
        return handler
    return handler._replace(request_deserializer=tolerant(handler.request_deserializer))


class _Registrar:
    """Passes the generated service registration on to the server with some methods' handlers replaced
    and every request parsed tolerantly."""

    def __init__(self, server: grpc.Server, replacements: dict) -> None:
        self.server = server
        self.replacements = replacements

    def add_generic_rpc_handlers(self, handlers) -> None:
        self.server.add_generic_rpc_handlers(
            tuple(_ReplacingHandler(handler, self.replacements) for handler in handlers)
        )

    def add_registered_method_handlers(self, service: str, handlers: dict) -> None:
        tolerant_handlers = {name: _tolerant_handler(handler) for name, handler in handlers.items()}
        self.server.add_registered_method_handlers(service, {**tolerant_handlers, **self.replacements})


class _ReplacingHandler(grpc.GenericRpcHandler):
    def __init__(self, handler: grpc.GenericRpcHandler, replacements: dict) -> None:
        self.handler = handler
        self.replacements = {f"/{SERVICE_NAME}/{name}": method for name, method in replacements.items()}

    def service(self, handler_call_details):
        replaced = self.replacements.get(handler_call_details.method)
        return replaced or _tolerant_handler(self.handler.service(handler_call_details))
