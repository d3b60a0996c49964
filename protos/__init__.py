"""The voidlink gRPC contract: `pb` holds the messages, `rpc` the service stubs.

Imports on Python 3.9+ with grpcio and protobuf only (no torch, no Qt), so every host can use it.
"""

from voidlink.protos.voidlink.v1 import voidlink_pb2 as pb
from voidlink.protos.voidlink.v1 import voidlink_pb2_grpc as rpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["VoidLink"].full_name
PROTOCOL_VERSION = pb.PROTOCOL_VERSION_CURRENT
PROTOCOL_METADATA_KEY = "voidlink-protocol"
# Trailing metadata of a failed call: a serialised ErrorDetail naming the field, file or frame.
ERROR_METADATA_KEY = "voidlink-error-bin"
DEFAULT_ADDRESS = "127.0.0.1:50151"
ADDRESS_ENV = "VOIDLINK_ADDRESS"

__all__ = [
    "pb", "rpc", "SERVICE_NAME", "PROTOCOL_VERSION", "PROTOCOL_METADATA_KEY", "ERROR_METADATA_KEY",
    "DEFAULT_ADDRESS", "ADDRESS_ENV",
]
