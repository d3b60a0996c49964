"""`voidlink jobs list|show|watch|cancel`."""

from __future__ import annotations

import argparse

from voidlink.cli.common import add_address, add_json, job_to_dict, print_json
from voidlink.protos import vocabulary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    listing = sub.add_parser("list", help="jobs, newest first")
    listing.add_argument("--state", action="append", choices=vocabulary.JOB_STATE.offered[1:])
    listing.add_argument("--limit", type=int, default=50)
    for name, help_text in (("show", "one job"), ("watch", "follow a job until it ends"), ("cancel", "cancel a job")):
        action = sub.add_parser(name, help=help_text)
        action.add_argument("job_id")
    for action in sub.choices.values():
        add_address(action)
        add_json(action)


def _print_job(record: dict) -> None:
    """A job for people: one line per field; the error, the result and what made it, indented."""
    for key, value in record.items():
        if not isinstance(value, dict):
            print(f"{key:14} {value}")
    for section in ("error", "result"):
        for key, value in (record.get(section) or {}).items():
            if key in ("provenance", "metrics") or value in ("", [], None):
                continue
            if isinstance(value, list):
                value = "\n".join([value[0], *(" " * 21 + item for item in value[1:])])
            elif isinstance(value, dict):
                value = " ".join(f"{k}={v}" for k, v in value.items())
            print(f"{section + '.' + key:20} {value}")
    made_by = (record.get("result") or {}).get("provenance") or {}
    if made_by:
        print("made by:")
        for key, value in made_by.items():
            print(f"  {key:20} {value}")


def run(args: argparse.Namespace) -> int:
    from voidlink.bridge.client import Client
    from voidlink.protos import pb
    from voidlink.protos.vocabulary import state_name

    client = Client(args.address)
    if args.action == "list":
        states = [vocabulary.JOB_STATE.value(s, "--state") for s in (args.state or [])]
        jobs = client.jobs(states, args.limit)
        if args.json:
            print_json({"jobs": [job_to_dict(j) for j in jobs]})
        else:
            owners = any(job.owner for job in jobs)  # a daemon with tokens: whose job is it
            for job in jobs:
                owner = f"{job.owner or '-':12}  " if owners else ""
                print(
                    f"{job.id}  {state_name(job.state):9}  {job.frames_done:>5}/{job.frames_total:<5}  {owner}"
                    f"{job.spec.name or job.spec.output.path_template}"
                )
        return 0
    if args.action == "show":
        job = client.get(args.job_id)
        if args.json:
            print_json(job_to_dict(job))
        else:
            _print_job(job_to_dict(job))
        return 0
    if args.action == "cancel":
        job = client.cancel(args.job_id)
        if args.json:
            print_json(job_to_dict(job))
        else:
            # A job already moving its frames into place finishes that move: the daemon says so.
            note = job.message if job.message.startswith("too late to cancel") else "cancel requested"
            print(f"{job.id} {state_name(job.state)} ({note})")
        return 0
    # watch
    for event in client.watch(args.job_id):
        line = {
            "id": event.job_id,
            "state": state_name(event.state),
            "stage": event.stage,
            "frames_done": event.frames_done,
            "frames_total": event.frames_total,
            "eta_seconds": round(event.eta_seconds, 1),
            "message": event.message,
        }
        if args.json:
            import json

            print(json.dumps(line), flush=True)
        else:
            print(
                f"{line['id']} {line['state']:9} {line['stage']:9} {line['frames_done']}/{line['frames_total']} "
                f"{line['message']}",
                flush=True,
            )
    job = client.get(args.job_id)
    return 1 if job.state == pb.JOB_STATE_FAILED else 0
