"""Path mapping: the same shared storage under different mount points on clients and the daemon.

A studio lists pairs of folders that are the same storage, e.g. `P:\\shows` on Windows workstations,
`/Volumes/shows` on Macs and `/mnt/shows` on the GPU box:

    VOIDLINK_PATH_MAP='P:\\shows=/mnt/shows;/Volumes/shows=/mnt/shows'

or in the studio config (JSON, $VOIDLINK_CONFIG) shared with the daemon:

    {"path_map": [{"client": "P:\\\\shows", "daemon": "/mnt/shows"},
                  {"client": "/Volumes/shows", "daemon": "/mnt/shows", "os": "macos"}]}

Client paths become daemon paths in every job sent, and daemon paths become this client's paths in
every job, event and error that comes back. Windows paths compare case-insensitively and with either
separator; a mapped path takes the separators of the side it lands on.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

from voidlink.protos import pb

from voidlink import errors
from voidlink.config import CONFIG_ENV, read_studio_config

PATH_MAP_ENV = "VOIDLINK_PATH_MAP"
_WINDOWS = re.compile(r"^(?:[A-Za-z]:[\\/]|[A-Za-z]:$|\\\\|//)")
_URL_KEYS = ("target_url", "target_url_base")


def is_windows_path(path: str) -> bool:
    """`C:\\x`, `C:/x` and UNC `\\\\server\\share` are Windows paths wherever this code runs."""
    return bool(_WINDOWS.match(path))


def this_os() -> str:
    if os.name == "nt":
        return "windows"
    return "macos" if sys.platform == "darwin" else "linux"


def _key(path: str) -> str:
    """A form to compare prefixes in: '/' separators, no trailing one; Windows paths lower-cased."""
    text = path.replace("\\", "/") if is_windows_path(path) or "\\" in path and "/" not in path else path
    text = text.rstrip("/") or "/"
    return text.lower() if is_windows_path(path) else text


def _join(prefix: str, rest: str) -> str:
    sep = "\\" if is_windows_path(prefix) else "/"
    rest = rest.replace("\\", "/").strip("/")
    if not rest:
        return prefix
    return prefix.rstrip("\\/") + sep + rest.replace("/", sep)


def _strip(path: str, prefix: str) -> Optional[str]:
    """What follows `prefix` in `path` (on a folder boundary), or None when `path` is not under it."""
    key, head = _key(path), _key(prefix)
    if key == head:
        return ""
    if key.startswith(head.rstrip("/") + "/"):
        return path.replace("\\", "/")[len(head.rstrip("/")) + 1 :]
    return None


@dataclass(frozen=True)
class PathPair:
    client: str
    daemon: str
    os: str = ""  # "windows", "macos", "linux" or "" (any client)


class PathMap:
    """Pairs of client and daemon folders; the longest matching prefix wins."""

    def __init__(self, pairs: Sequence = (), client_os: Optional[str] = None) -> None:
        self.client_os = client_os or this_os()
        parsed = []
        for pair in pairs:
            if not isinstance(pair, PathPair):
                pair = PathPair(*pair)
            if pair.os and pair.os != self.client_os:
                continue
            # A Windows-form client side belongs to Windows clients; a POSIX one to the others.
            if is_windows_path(pair.client) != (self.client_os == "windows"):
                continue
            parsed.append(pair)
        self.pairs = parsed

    def __bool__(self) -> bool:
        return bool(self.pairs)

    # -- building ---------------------------------------------------------------------------

    @staticmethod
    def parse(text: str, where: str = PATH_MAP_ENV) -> list:
        """`CLIENT=DAEMON;CLIENT=DAEMON` → pairs."""
        pairs = []
        for item in filter(None, (part.strip() for part in text.split(";"))):
            client, sep, daemon = item.partition("=")
            if not sep or not client.strip() or not daemon.strip():
                raise errors.InvalidInput(
                    f"{where}: '{item}' is not CLIENT_FOLDER=DAEMON_FOLDER (pairs separated by ';')",
                    reason="BAD_PATH_MAP",
                    field=where,
                )
            pairs.append(PathPair(client.strip(), daemon.strip()))
        return pairs

    @staticmethod
    def read_config(path: str) -> list:
        """The path map of the studio config at `path`."""
        entries = read_studio_config(path).get("path_map", [])
        return [PathPair(entry["client"], entry["daemon"], entry.get("os", "")) for entry in entries]

    @classmethod
    def from_environment(cls, client_os: Optional[str] = None) -> PathMap:
        """$VOIDLINK_PATH_MAP pairs first, then the studio config's ($VOIDLINK_CONFIG)."""
        pairs = cls.parse(os.environ.get(PATH_MAP_ENV, ""))
        if os.environ.get(CONFIG_ENV):
            pairs += cls.read_config(os.environ[CONFIG_ENV])
        return cls(pairs, client_os)

    # -- single paths -----------------------------------------------------------------------

    def _map(self, path: str, to_daemon: bool) -> str:
        if not path:
            return path
        best: Optional[tuple[tuple[int, bool], str, str]] = None
        for pair in self.pairs:
            source, target = (pair.client, pair.daemon) if to_daemon else (pair.daemon, pair.client)
            rest = _strip(path, source)
            # The longest prefix wins; at equal length a pair meant for this client's OS beats a general one.
            score = (len(_key(source)), bool(pair.os))
            if rest is not None and (best is None or score > best[0]):
                best = (score, target, rest)
        if best is None:
            return path
        mapped = _join(best[1], best[2])
        if path.endswith(("/", "\\")) and not mapped.endswith(("/", "\\")):  # OTIO folder URLs keep theirs
            mapped += "\\" if is_windows_path(mapped) else "/"
        return mapped

    def to_daemon(self, path: str) -> str:
        return self._map(path, True)

    def to_client(self, path: str) -> str:
        return self._map(path, False)

    # -- messages ---------------------------------------------------------------------------

    def _otio(self, text: str, to_daemon: bool) -> str:
        if not text.strip() or not self.pairs:
            return text
        try:
            tree = json.loads(text)
        except ValueError:
            return text  # the daemon names what is wrong with it

        def walk(node):
            if isinstance(node, dict):
                for key, value in node.items():
                    if key in _URL_KEYS and isinstance(value, str):
                        node[key] = self._map(_url_path(value), to_daemon)
                    else:
                        walk(value)
            elif isinstance(node, list):
                for item in node:
                    walk(item)

        walk(tree)
        return json.dumps(tree, indent=4)

    def spec_to_daemon(self, spec: pb.JobSpec) -> pb.JobSpec:
        return self._spec(spec, True)

    def spec_to_client(self, spec: pb.JobSpec) -> pb.JobSpec:
        return self._spec(spec, False)

    def _spec(self, spec: pb.JobSpec, to_daemon: bool) -> pb.JobSpec:
        out = pb.JobSpec()
        out.CopyFrom(spec)
        if not self.pairs:
            return out
        for clip in (out.source, out.mask, out.affected):
            if clip.otio_json:
                clip.otio_json = self._otio(clip.otio_json, to_daemon)
        output = out.output
        output.path_template = self._map(output.path_template, to_daemon)
        output.quadmask_template = self._map(output.quadmask_template, to_daemon)
        output.raw_template = self._map(output.raw_template, to_daemon)
        if out.HasField("matte"):
            out.matte.affected_template = self._map(out.matte.affected_template, to_daemon)
        return out

    def result_to_client(self, result: pb.JobResult) -> None:
        result.output_pattern = self.to_client(result.output_pattern)
        result.quadmask_pattern = self.to_client(result.quadmask_pattern)
        result.raw_pattern = self.to_client(result.raw_pattern)
        result.affected_pattern = self.to_client(result.affected_pattern)
        result.otio_json = self._otio(result.otio_json, False)

    def job_to_client(self, job: pb.Job) -> pb.Job:
        if not self.pairs:
            return job
        job.spec.CopyFrom(self.spec_to_client(job.spec))
        if job.HasField("result"):
            self.result_to_client(job.result)
        if job.HasField("error"):
            job.error.file = self.to_client(job.error.file)
        return job

    def event_to_client(self, event: pb.JobEvent) -> pb.JobEvent:
        if not self.pairs:
            return event
        if event.HasField("result"):
            self.result_to_client(event.result)
        if event.HasField("error"):
            event.error.file = self.to_client(event.error.file)
        return event


def _url_path(value: str) -> str:
    from voidlink.protos.clips import url_to_path

    return url_to_path(value)
