"""`voidlink panel`: the VOID panel standalone, or rendered offscreen to a PNG (`--screenshot`)."""

from __future__ import annotations

import argparse
import os
import sys

from voidlink.cli.common import add_address

TABS = ("job", "viewer", "queue")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_address(parser)
    parser.add_argument("--screenshot", metavar="FILE.png", help="render the panel offscreen to this PNG and exit")
    parser.add_argument("--job", metavar="ID", help="open this job: its plate before/after its result in the viewer")
    parser.add_argument("--tab", choices=TABS, help="the tab to show (default: viewer with --job, else job)")
    parser.add_argument("--plate", help="pre-fill the form with this plate (a sequence pattern or a movie)")
    parser.add_argument("--size", default="1100x720", help="window size WIDTHxHEIGHT (default 1100x720)")
    parser.add_argument("--channel", choices=("rgb", "r", "g", "b", "a", "luminance"), help="the viewer's channel view")
    parser.add_argument("--zoom", type=float, help="the viewer's zoom (1: one image pixel per screen pixel)")
    parser.add_argument(
        "--roto", metavar="ROTO.json", help="open this roto document (a job's roto.json) on the plate, in roto mode"
    )
    parser.add_argument("--frame", type=int, help="the frame the viewer shows (default: the range's first)")
    parser.add_argument(
        "--mask", metavar="PATTERN", help="pre-fill the form's object matte (e.g. a tracked one), shown in the tint"
    )
    parser.add_argument("--affected", metavar="PATTERN", help="pre-fill the form's affected matte (with --mask)")
    parser.add_argument(
        "--proposed", action="store_true", help="label the --affected matte as a tracker's proposal to edit"
    )


def run(args: argparse.Namespace) -> int:
    if args.screenshot:
        # No display needed for a screenshot: Qt's offscreen platform renders the same widgets.
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    try:
        from voidlink.panel.qt import application
    except ImportError:
        print("voidlink: error: the panel needs PySide6: pip install 'voidlink[panel]'", file=sys.stderr)
        return 2
    from voidlink.errors import InvalidInput, VoidlinkError
    from voidlink.panel.form import FormValues
    from voidlink.panel.window import PanelWindow, save_screenshot

    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise InvalidInput(f"--size '{args.size}' is not WIDTHxHEIGHT", reason="BAD_VALUE", field="size") from None
    app = application()
    window = PanelWindow(args.address, refresh_ms=0 if args.screenshot else 1000)
    window.resize(width, height)
    if args.plate:
        window.set_values(FormValues(plate=args.plate))
    if args.job or args.screenshot:
        # Offscreen there is no event loop to wait in: ask the daemon directly, once.
        client = window.service.client
        try:
            window.queue.update_jobs(client.jobs(limit=200))
            if args.job:
                job = client.get(args.job)
                window.queue.update_job(job)
                window.queue.select(job.id)
                window.show_job(job)
        except VoidlinkError as error:
            if args.job:
                raise
            window.connection.setText(str(error))
    if args.roto:
        _open_roto(window, args.roto)
    if args.mask:
        _show_matte(window, args)
    if args.tab:
        window.show_tab(args.tab)
    if args.zoom is not None and args.zoom <= 0:
        raise InvalidInput(f"--zoom {args.zoom:g} is not a positive zoom", reason="BAD_VALUE", field="zoom")
    showing = bool(args.job or args.plate)
    if args.screenshot:
        window.show()  # laid out at its size first: a zoom is about the viewer's centre
        if showing:
            _wait_for_frame(app, window.viewer)
        if _set_view(window, args) and showing:
            _wait_for_frame(app, window.viewer)  # drawn again at the frame and in the channel asked for
        path = save_screenshot(window, args.screenshot)
        print(path)
        window.close()  # stops the panel's threads before Qt and Python tear down
        return 0
    _set_view(window, args)
    window.show()
    return int(app.exec())


def _open_roto(window, path: str) -> None:
    """The roto document on the form's plate, in the viewer's roto mode (the form's roto is this document)."""
    from voidlink.panel.roto import RotoDocument

    document = RotoDocument.load(path)
    window.form.use_roto.setChecked(True)
    window.form.document = document
    window.autosave.attach(document, None)  # looked at, not edited: the file given is never written
    window.viewer.set_document(document)
    window.viewer.set_mode("roto")
    window.show_tab("viewer")


def _show_matte(window, args: argparse.Namespace) -> None:
    """The object (and affected) matte as the form's, over its plate in the viewer's quadmask tint; the roto
    document's points, when one is open, stay drawn over it."""
    from voidlink.errors import InvalidInput
    from voidlink.panel.matte import Track

    values = window.form.values()
    if not values.plate:
        raise InvalidInput("--mask needs --plate (the matte is shown over it)", reason="BAD_VALUE", field="mask")
    track = Track(values.plate, values.first, values.last, args.mask, args.affected or "")
    window.matte.apply(track, args.mask, proposed=args.proposed)


def _set_view(window, args: argparse.Namespace) -> bool:
    """The viewer's frame, channel view and zoom as asked; True when the frame is redrawn."""
    if args.zoom:
        window.viewer.canvas.set_zoom(args.zoom)
    redrawn = False
    if args.frame is not None and args.frame != window.viewer.canvas.frame:
        window.viewer.show_frame(args.frame)
        redrawn = True
    if args.channel and args.channel != "rgb":
        window.viewer.set_channel(args.channel)
        redrawn = True
    return redrawn


def _wait_for_frame(app, viewer, seconds: float = 10.0) -> None:
    """Let the viewer's loader thread deliver the job's frame, so the screenshot shows it."""
    import time

    shown: list = []
    viewer.frame_shown.connect(shown.append)
    deadline = time.monotonic() + seconds
    while not shown and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.01)
