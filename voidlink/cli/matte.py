"""`voidlink matte`: track an object from a few clicks into a matte sequence (and propose what it affects).

voidlink matte plate.####.exr --point 1001:420,300 [--negative 1001:10,10] [--box 1001:x0,y0,x1,y1]
    [--text "its shadow"] [--propose-affected] [--tracker auto|classical|sam2|edgetam] [--frames A-B]
    [--quadmask q.####.exr] [--uint8|--half] -o matte.####.exr [--json] [--detach]
"""

from __future__ import annotations

import argparse

from voidlink.cli.common import add_address, add_json, parse_frames
from voidlink.errors import InvalidInput

TRACKERS = ("auto", "classical", "sam2", "edgetam")


def _prompt_values(text: str, option: str, count: int) -> tuple:
    """`FRAME:V1,V2,...` → (frame, v1, v2, ...) with `count` values after the frame."""
    head, sep, tail = text.partition(":")
    try:
        if not sep:
            raise ValueError
        values = (int(head), *(float(v) for v in tail.split(",")))
    except ValueError:
        values = ()
    if len(values) != count + 1:
        shape = {2: "FRAME:X,Y (e.g. 1001:420,300)", 4: "FRAME:X0,Y0,X1,Y1 (e.g. 1001:380,250,470,360)"}[count]
        raise InvalidInput(f"{option} '{text}' is not {shape}", reason="BAD_VALUE", field=option.lstrip("-"))
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plate", help="plate: name.####.exr, name.%%04d.exr, a movie or an image")
    parser.add_argument(
        "--point",
        action="append",
        default=[],
        metavar="FRAME:X,Y",
        help="a click on the object (plate pixels, from the top-left corner); repeat for more points and frames",
    )
    parser.add_argument("--negative", action="append", default=[], metavar="FRAME:X,Y", help="a click off the object")
    parser.add_argument("--box", action="append", default=[], metavar="FRAME:X0,Y0,X1,Y1", help="a box around it")
    parser.add_argument("--frames", help="FIRST-LAST in the plate's own numbering (default: the whole plate)")
    parser.add_argument("--text", default="", help="what the object affects, e.g. 'its shadow; the reflection'")
    parser.add_argument(
        "--propose-affected", action="store_true", help="also propose the affected region (from motion without --text)"
    )
    parser.add_argument("--affected-output", help="where the affected proposal goes (default: beside the matte)")
    parser.add_argument("--grid", type=int, default=0, help="grow the affected proposal to cells of N pixels")
    parser.add_argument("--quadmask", metavar="PATTERN", help="also write the quadmask of both, ready for `remove`")
    parser.add_argument(
        "--tracker", default="auto", choices=TRACKERS, help="auto: sam2 with its weights, else classical"
    )
    depth = parser.add_mutually_exclusive_group()
    depth.add_argument("--uint8", dest="pixel_type", action="store_const", const="uint8", help="8-bit EXR (default)")
    depth.add_argument("--half", dest="pixel_type", action="store_const", const="half", help="half-float EXR")
    parser.set_defaults(pixel_type="uint8")
    parser.add_argument("-o", "--output", help="matte pattern (default: <plate folder>/void/<name>_matte.####.exr)")
    parser.add_argument("--overwrite", action="store_true", help="replace files there that voidlink did not write")
    parser.add_argument("--name", default="", help="a name shown in the queue")
    parser.add_argument("--detach", action="store_true", help="submit and return at once with the job id")
    parser.add_argument("--no-start", action="store_true", help="do not start a local daemon when none answers")
    add_address(parser)
    add_json(parser)


def run(args: argparse.Namespace) -> int:
    from voidlink.bridge.client import Client
    from voidlink.bridge.matte import build_matte_spec
    from voidlink.cli.remove import follow_to_end, print_detached, print_outcome

    spec = build_matte_spec(
        args.plate,
        parse_frames(args.frames),
        points=[_prompt_values(p, "--point", 2) for p in args.point],
        negative=[_prompt_values(p, "--negative", 2) for p in args.negative],
        boxes=[_prompt_values(b, "--box", 4) for b in args.box],
        text=args.text,
        propose_affected=args.propose_affected,
        tracker=args.tracker,
        output=args.output,
        affected_output=args.affected_output,
        quadmask_output=args.quadmask,
        grid=args.grid,
        pixel_type=args.pixel_type,
        overwrite=args.overwrite,
        name=args.name,
    )
    client = Client(args.address)
    if not args.no_start:
        client.ensure_daemon()
    client.check_mattes()
    job, plan = client.start(spec)  # a plate the daemon cannot read is uploaded, and the matte fetched back
    if args.detach:
        print_detached(job, args.json)
        return 0
    job = follow_to_end(client, job.id, args.json)
    if job is None:
        return 130
    job = client.finish(job, plan)
    return print_outcome(job, args.json, "matte frames")
