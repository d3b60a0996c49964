"""Faults injected at known points (no sleeps, no races): what a killed daemon leaves on disk."""

from __future__ import annotations

from voidlink.inference.job import staging


class Killed(BaseException):
    """The daemon's process dying: nothing after it runs, no clean-up (a BaseException, as SIGKILL is)."""


def crash_mid_commit(monkeypatch, moves: int) -> None:
    """Make the next commit in this process die after `moves` renames, as a daemon killed there would."""
    move = staging._move
    count = [0]

    def dying(staged, final):
        if count[0] == moves:
            raise Killed(f"killed after {moves} renames")
        count[0] += 1
        move(staged, final)

    monkeypatch.setattr(staging, "_move", dying)



def send_after_submit(client, monkeypatch, on_submitted=None):
    """Hold every frame chunk `client` makes until its job has been submitted (`client.start` submits it
    once all frames are hashed), then call `on_submitted(job)` before the first chunk goes: the whole
    upload then happens while the job exists, at a known point rather than by the luck of timing."""
    import threading

    from voidlink.bridge import upload

    submitted = threading.Event()
    submit, made = client.submit, upload.frame_chunk_bytes

    def submit_then_release(spec, upload_follows=False):
        job = submit(spec, upload_follows)
        if on_submitted is not None:
            on_submitted(job)
        submitted.set()
        return job

    def after_submit(*args):
        submitted.wait(30)
        return made(*args)

    monkeypatch.setattr(client, "submit", submit_then_release)
    monkeypatch.setattr(upload, "frame_chunk_bytes", after_submit)
