"""Who may talk to the daemon, and where it may read and write.

Three guards, each independent of the others:

* **Transport**: beyond loopback the daemon serves TLS and checks tokens, unless started with
  `--insecure` (and then says so at every start). `check_listen_policy` decides before binding.
* **Tokens**: an `authorization: Bearer <token>` metadata entry checked by `AuthInterceptor`
  against a tokens file (constant-time comparison, optional expiry per token). Anything short of a
  valid token gets UNAUTHENTICATED and nothing else; health is always answered.
* **Roots**: the daemon reads and writes only under its configured folders. Paths are resolved
  (symlinks followed, `..` collapsed) before they are compared, so neither escapes; and each frame
  is checked again as it is read, on the file actually opened (`opened_guard`), so a frame swapped
  for a link to a file elsewhere while the job runs is refused, not read.

The studio config file (JSON; `--config` or $VOIDLINK_CONFIG) can hold the roots, the tokens file
and the path map that clients share.
"""

from __future__ import annotations

import datetime as dt
import hmac
import ipaddress
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import grpc
from voidlink.inference.job.outputs import LABELS

from voidlink.errors import InvalidInput, PermissionDenied, VoidlinkError

log = logging.getLogger("voidlink.security")

MIN_TOKEN_LENGTH = 16
HEALTH_PREFIX = "/grpc.health.v1.Health/"
REFLECTION_PREFIX = "/grpc.reflection."


# -- sizes and addresses ---------------------------------------------------------------------

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)


def parse_size(text: str, label: str) -> int:
    """`512M`, `20G`, `1.5GiB`, `4096` → bytes (powers of 1024)."""
    match = _SIZE.match(str(text))
    if not match:
        raise InvalidInput(f"{label}: '{text}' is not a size (e.g. 512M, 20G)", reason="BAD_VALUE", field=label)
    number, unit = float(match.group(1)), match.group(2).lower()
    return int(number * 1024 ** " kmgt".index(unit or " "))


def format_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def is_loopback(address: str) -> bool:
    """True for unix sockets, 127.0.0.0/8, ::1 and localhost; 0.0.0.0 and [::] listen on every interface."""
    if address.startswith("unix:"):
        return True
    host = address.rsplit(":", 1)[0] if ":" in address else address
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


# -- tokens ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    name: str
    secret: str
    expires: Optional[float] = None  # seconds since the epoch; None: never
    admin: bool = False  # sees and cancels every owner's jobs


@dataclass(frozen=True)
class Caller:
    """Who makes a call: the token's name (the owner of the jobs it submits) and whether it is an admin."""

    name: str
    admin: bool = False

    def may_see(self, owner: str) -> bool:
        return self.admin or owner == self.name

    @property
    def owner_filter(self) -> Optional[str]:
        """The owner a listing is limited to (None: every owner's jobs)."""
        return None if self.admin else self.name


# A daemon without tokens (loopback): every caller is everyone, as before owners.
ANYONE = Caller("", admin=True)


def _parse_expiry(text: str, where: str) -> float:
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"{where}: expiry '{text}' is not an ISO 8601 date or time (e.g. 2027-01-31 or 2027-01-31T18:00:00Z)",
            reason="BAD_TOKENS_FILE",
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.timestamp()


def read_tokens(path: Path) -> list[Token]:
    """Lines of `NAME TOKEN [EXPIRES] [admin]`; `#` starts a comment. EXPIRES is ISO 8601, UTC unless it
    says; `admin` lets the token see and cancel every owner's jobs."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(
            f"cannot read the tokens file {path}: {exc.strerror}", reason="BAD_TOKENS_FILE", file=str(path)
        ) from None
    tokens: list[Token] = []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        where = f"{path} line {number}"
        admin = len(words) > 2 and words[-1].lower() == "admin"
        if admin:
            words = words[:-1]
        if len(words) not in (2, 3):
            raise InvalidInput(
                f"{where}: expected NAME TOKEN [EXPIRES] [admin], found {len(words) + admin} words",
                reason="BAD_TOKENS_FILE",
                file=str(path),
            )
        if len(words[1]) < MIN_TOKEN_LENGTH:
            raise InvalidInput(
                f"{where}: the token of '{words[0]}' has {len(words[1])} characters; use at least "
                f'{MIN_TOKEN_LENGTH} random ones (e.g. python -c "import secrets; print(secrets.token_urlsafe(32))")',
                reason="WEAK_TOKEN",
                file=str(path),
            )
        expires = _parse_expiry(words[2], where) if len(words) == 3 else None
        tokens.append(Token(words[0], words[1], expires, admin))
    if not tokens:
        raise InvalidInput(f"the tokens file {path} holds no token", reason="BAD_TOKENS_FILE", file=str(path))
    return tokens


class TokenFile:
    """The tokens file, re-read when it changes so tokens can be added or revoked without a restart."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._mtime = 0.0
        self._checked = 0.0
        self._tokens = read_tokens(self.path)
        self._mtime = self._stat_mtime()
        if os.name == "posix" and self.path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("the tokens file %s is readable by other users; chmod 600 it", self.path)

    def _stat_mtime(self) -> float:
        try:
            return self.path.stat().st_mtime
        except OSError:
            return self._mtime

    def _current(self) -> list[Token]:
        now = time.monotonic()
        with self._lock:
            if now - self._checked > 1.0:
                self._checked = now
                mtime = self._stat_mtime()
                if mtime != self._mtime:
                    try:
                        self._tokens = read_tokens(self.path)
                        log.info("re-read the tokens file %s (%d tokens)", self.path, len(self._tokens))
                    except VoidlinkError as error:  # keep serving with the tokens we had
                        log.error("%s; keeping the previous tokens", error)
                    self._mtime = mtime
            return self._tokens

    def caller(self, metadata: Iterable[tuple[str, str]]) -> Optional[Caller]:
        """The caller a call's metadata names by its one valid token; None without one."""
        values = [value for key, value in metadata or () if key == "authorization"]
        if len(values) != 1:
            return None
        token, _ = self._token(values[0])
        return None if token is None else Caller(token.name, token.admin)

    def verify(self, authorization: Optional[str]) -> tuple[Optional[str], str]:
        """(token name, "") when valid, else (None, why) — the reason is for the log and the caller alone."""
        token, why = self._token(authorization)
        return (token.name, "") if token is not None else (None, why)

    def _token(self, authorization: Optional[str]) -> tuple[Optional[Token], str]:
        if not authorization:
            return None, "no token given: send 'authorization: Bearer <token>'"
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return None, "the authorization metadata is not 'Bearer <token>'"
        given_bytes = given.strip().encode("utf-8")
        match: Optional[Token] = None
        # Compare against every token so the time taken does not tell which one came close.
        for token in self._current():
            if hmac.compare_digest(given_bytes, token.secret.encode("utf-8")):
                match = token
        if match is None:
            return None, "the token is not valid for this daemon"
        if match.expires is not None and time.time() >= match.expires:
            return None, "the token has expired; ask for a new one"
        return match, ""


def _deny(handler: Optional[grpc.RpcMethodHandler], message: str) -> grpc.RpcMethodHandler:
    def refuse(request, context):
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    def refuse_stream(request, context):
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # never reached: a generator, as a streaming handler must be

    if handler is None or (not handler.request_streaming and not handler.response_streaming):
        return grpc.unary_unary_rpc_method_handler(refuse)
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse_stream)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse)
    return grpc.unary_stream_rpc_method_handler(refuse_stream)


class AuthInterceptor(grpc.ServerInterceptor):
    """UNAUTHENTICATED for every call without a valid token, except health (and reflection on loopback)."""

    def __init__(self, tokens: TokenFile, open_reflection: bool) -> None:
        self.tokens = tokens
        self.open_reflection = open_reflection

    def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method or ""
        if method.startswith(HEALTH_PREFIX) or (self.open_reflection and method.startswith(REFLECTION_PREFIX)):
            return continuation(handler_call_details)
        values = [value for key, value in handler_call_details.invocation_metadata or () if key == "authorization"]
        if len(values) > 1:
            # Which of two tokens would be the caller is not for the daemon to guess.
            log.warning("refused %s: %d authorization values", method, len(values))
            return _deny(continuation(handler_call_details), "send one 'authorization: Bearer <token>', not several")
        name, why = self.tokens.verify(values[0] if values else None)
        if name is not None:
            return continuation(handler_call_details)
        log.warning("refused %s: %s", method, why)
        return _deny(continuation(handler_call_details), why)


# -- roots -----------------------------------------------------------------------------------


def _real(path: str) -> str:
    return os.path.normcase(os.path.realpath(os.path.abspath(path)))


@dataclass
class Roots:
    """The folders the daemon reads and writes under. `confined=False`: no restriction (loopback default)."""

    folders: list[str] = field(default_factory=list)
    confined: bool = False
    internal: list[str] = field(default_factory=list)  # the daemon's own transfer folders

    def __post_init__(self) -> None:
        self._real = [_real(f) for f in self.folders]
        self._internal = [_real(f) for f in self.internal]

    def allows(self, path: str, internal: bool = False) -> bool:
        if not self.confined:
            return True
        real = _real(path)
        for root in self._real + (self._internal if internal else []):
            try:
                if os.path.commonpath([real, root]) == root:
                    return True
            except ValueError:  # different drives on Windows
                continue
        return False

    def check(self, path: str, label: str, *, frame: Optional[int] = None, internal: bool = False) -> None:
        if self.allows(path, internal):
            return
        where = ", ".join(self.folders) if self.folders else "no folder (this daemon only takes streamed frames)"
        resolved = os.path.realpath(os.path.abspath(path))
        via = f" (resolves to {resolved})" if os.path.normcase(resolved) != os.path.normcase(path) else ""
        raise PermissionDenied(
            f"{label}: {path}{via} is outside the folders this daemon may use: {where}",
            reason="OUTSIDE_ROOTS",
            field=label,
            file=path,
            frame=frame,
        )

    def opened_guard(self) -> Callable[[str, str, str, Optional[int]], None]:
        """The readers' `confine` for this daemon: the real path of a file opened for reading (given by the OS
        for the open descriptor) must be under the roots, or the daemon's own transfer folders."""

        def guard(real: str, path: str, label: str, frame: Optional[int]) -> None:
            if self.allows(real, internal=True):
                return
            where = f" (frame {frame})" if frame is not None else ""
            raise PermissionDenied(
                f"{label}: {path}{where} opened {real}, which is outside the folders this daemon may use "
                f"({', '.join(self.folders) or 'none'}); it was not read. Was the file replaced by a link "
                "while the job ran? Put the real file back and submit the job again",
                reason="OUTSIDE_ROOTS",
                field=label,
                file=path,
                frame=frame,
            )

        return guard

    def confinement(self):
        """What prepare_job checks a job with when this daemon is confined (None when it is not)."""
        from voidlink.inference.job.prepare import Confinement

        return Confinement(self.prepared_guard(), self.opened_guard()) if self.confined else None

    def prepared_guard(self) -> Callable[[object], None]:
        """A check of a prepared job's every frame file and output folder: at submission, when the job
        starts (it may have waited in the queue) and before its commit."""

        def guard(prepared) -> None:
            for clip in (prepared.source, prepared.mask, prepared.affected):
                if clip is None:
                    continue
                media = clip.media
                if media.kind in ("movie", "image"):
                    self.check(media.path, clip.field, internal=True)
                    continue
                for frame in prepared.frames:
                    self.check(media.file_for(frame), clip.field, frame=frame, internal=True)
            for kind, pattern in prepared.finals():  # a removal's output, quadmask, raw; a matte job's too
                self.check(pattern.directory or ".", LABELS[kind], internal=True)

        return guard


# -- the daemon's security settings ----------------------------------------------------------


@dataclass
class SecurityConfig:
    tls_cert: Optional[Path] = None
    tls_key: Optional[Path] = None
    tokens_file: Optional[Path] = None
    insecure: bool = False
    roots: list[str] = field(default_factory=list)
    max_message_bytes: int = 16 * 1024 * 1024
    max_upload_bytes: int = 64 * 1024**3
    cache_max_bytes: int = 100 * 1024**3

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def check_listen_policy(self, listen: str) -> list[str]:
        """Refuse an unsafe configuration before binding; returns warnings to print at every start."""
        if bool(self.tls_cert) != bool(self.tls_key):
            raise InvalidInput(
                "TLS needs both --tls-cert and --tls-key",
                reason="TLS_INCOMPLETE",
                field="tls_key" if self.tls_cert else "tls_cert",
            )
        for path, label in ((self.tls_cert, "tls_cert"), (self.tls_key, "tls_key"), (self.tokens_file, "tokens_file")):
            if path is not None and not Path(path).is_file():
                raise InvalidInput(
                    f"--{label.replace('_', '-')}: no file at {path}", reason="NOT_FOUND", field=label, file=str(path)
                )
        for root in self.roots:
            if not Path(root).is_dir():
                raise InvalidInput(f"--root: {root} is not a folder", reason="BAD_ROOT", field="root", file=str(root))
        warnings = []
        if is_loopback(listen):
            return warnings
        missing = [
            what
            for what, have in (("TLS (--tls-cert, --tls-key)", self.tls), ("tokens (--tokens-file)", self.tokens_file))
            if not have
        ]
        if missing and not self.insecure:
            raise PermissionDenied(
                f"refusing to listen on {listen} without {' and '.join(missing)}: beyond loopback anyone on the "
                "network could submit jobs and read files. Give them, listen on 127.0.0.1, or pass --insecure "
                "on a network you trust completely",
                reason="INSECURE_LISTEN",
                field="listen",
            )
        if missing:
            warnings.append(
                f"INSECURE: listening on {listen} without {' and '.join(missing)} (--insecure): "
                "anyone who can reach this port can use this daemon"
            )
        if not self.roots:
            warnings.append(
                f"no --root given while listening on {listen}: the daemon reads and writes no client folder and "
                "takes streamed frames only"
            )
        return warnings

    def server_credentials(self) -> Optional[grpc.ServerCredentials]:
        if not self.tls:
            return None
        return grpc.ssl_server_credentials([(Path(self.tls_key).read_bytes(), Path(self.tls_cert).read_bytes())])
