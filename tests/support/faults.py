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
