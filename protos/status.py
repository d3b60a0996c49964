"""The contract's error model: a `VoidlinkError` ↔ a gRPC status with an `ErrorDetail`, both ways.

The daemon answers a failed call with the error's gRPC code (each class of `voidlink.errors` names
its own), its message, and an `ErrorDetail` (reason, field, file, frame) in the trailing metadata;
the client reads those back into the same class, so a host can `except voidlink.errors.NotFound`
whichever side raised it. A job's stored error is the same `ErrorDetail`.

Needs only grpcio and protobuf (no grpc import here: code names are strings).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Optional

from voidlink.protos import ERROR_METADATA_KEY, pb

from voidlink import errors

# The class a client raises for a status code, when the reason names no finer one.
_BY_CODE: dict[str, type[errors.VoidlinkError]] = {
    "INVALID_ARGUMENT": errors.InvalidInput,
    "OUT_OF_RANGE": errors.InvalidInput,
    "NOT_FOUND": errors.NotFound,
    "PERMISSION_DENIED": errors.PermissionDenied,
    "UNAUTHENTICATED": errors.Unauthenticated,
    "UNAVAILABLE": errors.Unavailable,
    "DEADLINE_EXCEEDED": errors.Unavailable,
    "FAILED_PRECONDITION": errors.Conflict,
    "RESOURCE_EXHAUSTED": errors.LimitExceeded,
    "CANCELLED": errors.JobCancelled,
    "ABORTED": errors.JobFailed,
}
# Reasons that have a class of their own under a shared code.
_BY_REASON: dict[str, type[errors.VoidlinkError]] = {
    "PROTOCOL_MISMATCH": errors.ProtocolMismatch,
    "OUTPUT_EXISTS": errors.OutputExists,
}


def error_class(code_name: str, reason: str = "") -> type[errors.VoidlinkError]:
    """The exception class for a gRPC status code (by name) and reason."""
    return _BY_REASON.get(reason) or _BY_CODE.get(code_name, errors.VoidlinkError)


def detail_of(error: errors.VoidlinkError) -> pb.ErrorDetail:
    """The `ErrorDetail` an error travels (and is stored) as."""
    detail = pb.ErrorDetail(
        reason=error.reason, message=error.message, field=error.field, file=error.file, frames=error.frames
    )
    if error.frame is not None:
        detail.frame = error.frame
    return detail


def error_of(detail: pb.ErrorDetail, code_name: str = "", message: str = "") -> errors.VoidlinkError:
    """The error an `ErrorDetail` (with its call's status code, when there is one) stands for."""
    cls = error_class(code_name, detail.reason)
    return cls(
        detail.message or message or code_name or "error",
        reason=detail.reason,
        field=detail.field,
        file=detail.file,
        frame=detail.frame if detail.HasField("frame") else None,
        frames=list(detail.frames),
    )


def trailers_of(error: errors.VoidlinkError) -> tuple:
    """The trailing metadata a failed call carries."""
    return ((ERROR_METADATA_KEY, detail_of(error).SerializeToString()),)


def detail_in(metadata: Optional[Iterable]) -> pb.ErrorDetail:
    """The `ErrorDetail` in a failed call's trailing metadata (empty when there is none or it does not parse)."""
    detail = pb.ErrorDetail()
    for key, value in metadata or ():
        if key == ERROR_METADATA_KEY:
            try:
                detail.ParseFromString(value)
            except Exception:  # noqa: BLE001 - a trailer that is not an ErrorDetail tells us nothing
                return pb.ErrorDetail()
    return detail


# The ErrorInfo domain of voidlink's errors in the standard `grpc-status-details-bin` trailer.
DOMAIN = "voidlink"


def standard_status(error: errors.VoidlinkError, code_value: int):
    """The error as a standard `google.rpc.Status` (for `grpc-status-details-bin`): an `ErrorInfo`
    (reason, domain "voidlink", field/file/frame(s) as metadata) and, when a request field is at fault,
    a `BadRequest` naming it. Needs grpcio-status (the daemon's dependency; clients need not have it)."""
    from google.protobuf import any_pb2
    from google.rpc import error_details_pb2, status_pb2

    info = error_details_pb2.ErrorInfo(reason=error.reason or "ERROR", domain=DOMAIN)
    for key, value in (("field", error.field), ("file", error.file)):
        if value:
            info.metadata[key] = value
    if error.frame is not None:
        info.metadata["frame"] = str(error.frame)
    if error.frames:
        info.metadata["frames"] = ",".join(str(f) for f in error.frames[:1000])
    details = [info]
    if error.field and error.grpc_code in ("INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "OUT_OF_RANGE"):
        request = error_details_pb2.BadRequest()
        request.field_violations.add(field=error.field, description=error.message)
        details.append(request)
    packed = []
    for detail in details:
        wrapper = any_pb2.Any()
        wrapper.Pack(detail)
        packed.append(wrapper)
    return status_pb2.Status(code=code_value, message=error.message, details=packed)
