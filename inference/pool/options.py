"""The pool's settings (`voidlink serve --cluster …` and its companion flags), checked, and Ray found.

Ray is imported only through `import_ray`, and this package only when the daemon is told to front a
cluster, so a daemon without `--cluster` starts without Ray installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from voidlink.inference.pool.segments import SEGMENT_CONTEXTS

from voidlink.errors import InvalidInput, Unavailable

STORAGE_MODES = ("shared", "private")


def parse_cluster(value: str) -> str:
    """`auto` or `ray://HOST:PORT`; raises naming the flag otherwise."""
    value = (value or "").strip()
    if value == "auto":
        return value
    if value.startswith("ray://"):
        host, _, port = value[len("ray://") :].rpartition(":")
        if host and port.isdigit():
            return value
    raise InvalidInput(
        f"--cluster: '{value}' is neither 'auto' (a local Ray started by the daemon) nor ray://HOST:PORT "
        "(the Ray client address of a running cluster, port 10001 by default)",
        reason="BAD_CLUSTER_ADDRESS",
        field="cluster",
    )


@dataclass(frozen=True)
class PoolOptions:
    """The pool as the daemon was told to run it.

    `segment_frames`: the shortest segment a classical job is split into (0: jobs are never split).
    `storage`: "shared" when the workers see the job's paths, "private" when frames travel to and
    from them through Ray."""

    address: str
    cpu_workers: int
    weights: Optional[str]
    segment_frames: int
    storage: str


def pool_options(
    address: str,
    cpu_workers: int = 2,
    weights: Optional[str] = None,
    segment_frames: Optional[int] = None,
    storage: str = "shared",
) -> PoolOptions:
    """The options checked, each refusal naming its flag; `segment_frames=None` is SEGMENT_CONTEXTS
    times the classical backend's temporal context."""
    address = parse_cluster(address)
    if storage not in STORAGE_MODES:
        raise InvalidInput(
            f"--cluster-storage: '{storage}' is neither 'shared' nor 'private'",
            reason="BAD_STORAGE_MODE",
            field="cluster_storage",
        )
    if cpu_workers < 0:
        raise InvalidInput(
            f"--cluster-workers: {cpu_workers} is negative", reason="BAD_WORKER_COUNT", field="cluster_workers"
        )
    if segment_frames is not None and segment_frames < 0:
        raise InvalidInput(
            f"--cluster-segment: {segment_frames} is negative (0 turns splitting off)",
            reason="BAD_SEGMENT_FRAMES",
            field="cluster_segment",
        )
    if segment_frames is None:
        from voidlink.inference.backends.classical.backend import ClassicalBackend

        segment_frames = SEGMENT_CONTEXTS * ClassicalBackend.temporal_context
    return PoolOptions(address, cpu_workers, weights, segment_frames, storage)


def import_ray() -> Any:
    """The `ray` module, or a refusal that says how to install it."""
    try:
        import ray
    except ImportError as error:
        raise Unavailable(
            "--cluster needs Ray, which is not installed here: pip install 'voidlink[cluster]' "
            "(the same voidlink and Ray versions on every node of the cluster)",
            reason="RAY_NOT_INSTALLED",
            field="cluster",
        ) from error
    return ray
