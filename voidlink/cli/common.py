"""Pieces the sub-commands share: the daemon address and client options, frame ranges, JSON output."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional

from voidlink.errors import InvalidInput
from voidlink.protos import ADDRESS_ENV, pb


class _ExportToClients(argparse.Action):
    """Puts the option's value in the environment variable every `Client` of this command reads.

    Sub-commands build their clients as `Client(args.address)`; going through the environment
    gives each of them the token, CA and path map without threading options through every call.
    """

    def __init__(self, option_strings, dest, variable: str, **kwargs) -> None:
        self.variable = variable
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, values)
        is_file = self.variable != "VOIDLINK_PATH_MAP" and values.lower() not in ("system", "1", "true")
        os.environ[self.variable] = os.path.abspath(values) if is_file else values


def add_address(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address", help=f"daemon address HOST:PORT or unix:PATH (default: ${ADDRESS_ENV}, else 127.0.0.1:50151)"
    )
    parser.add_argument(
        "--token-file",
        action=_ExportToClients,
        variable="VOIDLINK_TOKEN_FILE",
        help="file holding the token for a daemon that wants one (default: $VOIDLINK_TOKEN, $VOIDLINK_TOKEN_FILE)",
    )
    parser.add_argument(
        "--tls-ca",
        action=_ExportToClients,
        variable="VOIDLINK_TLS_CA",
        help="CA certificate of a TLS daemon ('system' for the system's roots; default: $VOIDLINK_TLS_CA)",
    )
    parser.add_argument(
        "--path-map",
        action=_ExportToClients,
        variable="VOIDLINK_PATH_MAP",
        help="CLIENT=DAEMON folder pairs separated by ';' (default: $VOIDLINK_PATH_MAP and the studio config)",
    )


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def parse_frames(text: Optional[str]) -> Optional[tuple[int, int]]:
    """`1001-1100`, `1001:1100` or a single `1001` → (first, last)."""
    if not text:
        return None
    cleaned = text.replace(":", "-").strip()
    # A leading minus is a negative frame, not a separator.
    head, sep, tail = cleaned[1:].partition("-")
    try:
        if sep:
            first, last = int(cleaned[0] + head), int(tail)
        else:
            first = last = int(cleaned)
    except ValueError:
        raise InvalidInput(
            f"--frames '{text}' is not FIRST-LAST (e.g. 1001-1100)", reason="BAD_VALUE", field="frames"
        ) from None
    if last < first:
        message = f"--frames '{text}' is empty: {last} is before {first}"
        raise InvalidInput(message, reason="EMPTY_RANGE", field="frames")
    return first, last


def job_to_dict(job: pb.Job) -> dict:
    """A job as plain JSON-able values; `state` is one of queued, running, succeeded, failed, cancelled."""
    from voidlink.protos.vocabulary import state_name

    out = {
        "id": job.id,
        "name": job.spec.name,
        "state": state_name(job.state),
        "stage": job.stage,
        "frames_done": job.frames_done,
        "frames_total": job.frames_total,
        "message": job.message,
        "attempts": job.attempts,
        "owner": job.owner,
        "created_at": job.created_at,
        "started_at": job.started_at or None,
        "finished_at": job.finished_at or None,
        "backend": job.spec.params.backend or "auto",
        "output_template": job.spec.output.path_template,
    }
    if job.HasField("error"):
        error = job.error
        out["error"] = {"reason": error.reason, "message": error.message, "field": error.field, "file": error.file}
        if error.HasField("frame"):
            out["error"]["frame"] = error.frame
        if error.frames:
            out["error"]["frames"] = list(error.frames)
    if job.HasField("result"):
        result = job.result
        out["result"] = {
            "output_pattern": result.output_pattern,
            "frames": {"first": result.frames.first, "last": result.frames.last},
            "quadmask_pattern": result.quadmask_pattern,
            "backend": result.backend,
            "notes": list(result.notes),
            "metrics": dict(result.metrics),
            "provenance": dict(sorted(result.provenance.items())),
        }
        if result.findings:
            out["result"]["findings"] = [
                {
                    "check": f.check,
                    "severity": f.severity,
                    "message": f.message,
                    "frame": f.frame if f.HasField("frame") else None,
                }
                for f in result.findings
            ]
    if job.spec.HasField("matte"):
        out["kind"] = "matte"
        out["tracker"] = job.spec.matte.tracker or "auto"
    return out


def print_json(value: object) -> None:
    json.dump(value, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    sys.stdout.flush()


def parse_pins(values: list) -> dict:
    """`--media NAME=PATH` options (a conform's plates pinned by reel or clip name) as a dict."""
    from voidlink.errors import InvalidInput

    pins = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise InvalidInput(f"--media '{value}' is not NAME=PATH", reason="BAD_VALUE", field="media")
        pins[name.strip()] = path.strip()
    return pins


def print_table(rows: list) -> None:
    """A conform's report: one row per event (event, status, output)."""
    header = ("event", "status", "output")
    widths = [max([len(header[i])] + [len(str(row[i])) for row in rows]) for i in range(2)]
    print(f"{header[0]:<{widths[0]}}  {header[1]:<{widths[1]}}  {header[2]}")
    for event, status, detail in rows:
        print(f"{event:<{widths[0]}}  {status:<{widths[1]}}  {detail}")
