"""The one exception family of voidlink, shared by the daemon, the client and the hosts.

Every error carries a stable machine-readable `reason` (UPPER_SNAKE) and names what it is about:
the spec `field`, the `file`, the `frame` (or `frames`); each class names the gRPC status code it
travels as. `voidlink.protos.status` turns them into gRPC statuses with an `ErrorDetail` attached,
and back into the same classes, so a host can `except voidlink.errors.NotFound` whichever side
raised it.

Imports nothing outside the standard library: hosts with old Pythons load it.
"""

from __future__ import annotations

from typing import Optional


class VoidlinkError(Exception):
    """Base class. `str(error)` is the full message a user reads."""

    # gRPC status code name the daemon answers with.
    grpc_code = "INTERNAL"
    default_reason = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        reason: str = "",
        field: str = "",
        file: str = "",
        frame: Optional[int] = None,
        frames: Optional[list[int]] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.field = field
        self.file = file
        self.frame = frame
        self.frames = list(frames or [])

    def to_dict(self) -> dict:
        out = {"reason": self.reason, "message": self.message}
        if self.field:
            out["field"] = self.field
        if self.file:
            out["file"] = self.file
        if self.frame is not None:
            out["frame"] = self.frame
        if self.frames:
            out["frames"] = self.frames
        return out


class InvalidInput(VoidlinkError):
    """The job or its media cannot be processed as given (bad field, size mismatch, NaN...)."""

    grpc_code = "INVALID_ARGUMENT"
    default_reason = "INVALID_INPUT"


class NotFound(VoidlinkError):
    """A file, frame or job does not exist."""

    grpc_code = "NOT_FOUND"
    default_reason = "NOT_FOUND"


class PermissionDenied(VoidlinkError):
    """Writing or reading there is not allowed (a source would be overwritten, a folder is read-only)."""

    grpc_code = "PERMISSION_DENIED"
    default_reason = "PERMISSION_DENIED"


class Unauthenticated(PermissionDenied):
    """The daemon wants a token and this one is missing, wrong or expired."""

    grpc_code = "UNAUTHENTICATED"
    default_reason = "UNAUTHENTICATED"


class LimitExceeded(VoidlinkError):
    """A request is larger than the daemon allows (message size, upload per job, frame cache, frames, prompt)."""

    grpc_code = "RESOURCE_EXHAUSTED"
    default_reason = "LIMIT_EXCEEDED"


class Unavailable(VoidlinkError):
    """The daemon or a backend cannot be reached or used right now."""

    grpc_code = "UNAVAILABLE"
    default_reason = "UNAVAILABLE"


class ProtocolMismatch(VoidlinkError):
    """Client and daemon speak incompatible protocol versions."""

    grpc_code = "FAILED_PRECONDITION"
    default_reason = "PROTOCOL_MISMATCH"


class Conflict(VoidlinkError):
    """The request clashes with the current state (another daemon holds the data dir, job already ended)."""

    grpc_code = "FAILED_PRECONDITION"
    default_reason = "CONFLICT"


class OutputExists(Conflict):
    """The output would replace files voidlink did not write (another shot's plates, a render, a
    folder); the job may say `overwrite` to replace them anyway."""

    default_reason = "OUTPUT_EXISTS"


class JobCancelled(VoidlinkError):
    grpc_code = "CANCELLED"
    default_reason = "CANCELLED"


class JobFailed(VoidlinkError):
    """Raised by the client when a job it waited for ended in failure."""

    grpc_code = "ABORTED"
    default_reason = "JOB_FAILED"
