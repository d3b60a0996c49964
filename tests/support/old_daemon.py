"""A daemon of an older contract, for the clients' tests of what they do when the daemon cannot."""

from __future__ import annotations

from concurrent import futures

import grpc
from voidlink.protos import SERVICE_NAME, pb


class OldDaemon:
    """A real gRPC server in front of a real daemon that answers as a daemon of an older contract did: SubmitJob's
    `validate_only` (field 3) is unknown to it, so it never reaches the daemon and the job is queued; GetInfo lists
    no matte trackers (field 18). Every other call is passed through as it is."""

    def __init__(self, daemon_address: str) -> None:
        self.channel = grpc.insecure_channel(daemon_address)
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.submitted: list[str] = []
        handlers = {
            name: grpc.unary_unary_rpc_method_handler(self._forward(name))
            for name in ("SubmitJob", "CancelJob", "GetJob", "GetInfo")
        }
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
        self.address = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        self.server.start()

    def _forward(self, name: str):
        call = self.channel.unary_unary(
            f"/{SERVICE_NAME}/{name}",
            request_serializer=lambda raw: raw,
            response_deserializer=lambda raw: raw,
        )

        def handle(raw: bytes, context) -> bytes:
            if name == "SubmitJob":
                request = pb.SubmitJobRequest.FromString(raw)
                request.ClearField("validate_only")  # what an older contract's parser leaves out
                raw = request.SerializeToString()
            try:
                answer = call(raw, metadata=context.invocation_metadata())
            except grpc.RpcError as error:
                context.abort(error.code(), error.details())
            if name == "SubmitJob":
                self.submitted.append(pb.SubmitJobResponse.FromString(answer).job.id)
            if name == "GetInfo":
                info = pb.GetInfoResponse.FromString(answer)
                info.ClearField("matte_trackers")
                answer = info.SerializeToString()
            return answer

        return handle

    def stop(self) -> None:
        self.server.stop(0).wait()
        self.channel.close()
