"""The bare transport the transfer bench measures our uploads and downloads against, and the CPU they spend.

A gRPC server in its own process (as the daemon is) that drops the chunks it receives, writes each
FrameChunk's bytes to a file and nothing else, or streams files back; the seconds to move a shot's
bytes through it in the chunks our client uses; and the CPU seconds (client and server, every thread)
a transfer spends, from which `cores_bound` says the best a transfer doing that work could reach.
Run as `python -m voidlink.bench.transport`, it serves until its stdin closes.
"""

from __future__ import annotations

import functools
import math
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from voidlink.protos.wire import CHUNK_BYTES, frame_chunk_bytes


def process_cpu_seconds(pid: int | None = None) -> float:
    """CPU seconds (user and system, every thread) a process has used: this one, or (Linux) the one `pid` names."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")  # no /proc here: the figures that need it read as NaN
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuClock:
    """The CPU seconds this process and a server process use between `start` and `stop`."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.seconds = 0.0

    def start(self) -> None:
        self._began = process_cpu_seconds() + process_cpu_seconds(self.server_pid)

    def stop(self) -> float:
        self.seconds = process_cpu_seconds() + process_cpu_seconds(self.server_pid) - self._began
        return self.seconds


_NULL_SERVICE = "voidlink.bench.Null"


def serve_null() -> None:
    """A gRPC server that drops what it receives and acknowledges each message (the transport alone), or
    (`Store`) writes each FrameChunk's bytes to a file of its own in a folder named by the call's metadata,
    as the daemon's frame cache does, and nothing else: no hashing, no bookkeeping."""
    from concurrent import futures

    import grpc
    from voidlink.protos.wire import parse_frame_chunk

    def drop(messages, context):
        for _ in messages:
            yield b""

    def store(messages, context):
        folder = Path(dict(context.invocation_metadata())["store-dir"])
        handles: dict[str, object] = {}
        try:
            for raw in messages:
                chunk = parse_frame_chunk(raw)
                handle = handles.get(chunk.sha256)
                if handle is None:
                    handle = handles[chunk.sha256] = open(folder / chunk.sha256, "ab")
                handle.write(chunk.data)
                handle.flush()  # as the daemon does: acknowledged bytes are in the file
                yield b""
        finally:
            for handle in handles.values():
                handle.close()

    def send(request, context):  # the request names files, one per line: their bytes come back in chunks
        for path in request.decode().splitlines():
            with open(path, "rb") as handle:
                yield from iter(functools.partial(handle.read, CHUNK_BYTES), b"")

    handler = grpc.method_handlers_generic_handler(
        _NULL_SERVICE,
        {
            "Drop": grpc.stream_stream_rpc_method_handler(drop),
            "Store": grpc.stream_stream_rpc_method_handler(store),
            "Send": grpc.unary_stream_rpc_method_handler(send),
        },
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4), options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"listening on 127.0.0.1:{port}", flush=True)
    sys.stdin.read()  # until the bench closes our stdin
    server.stop(0)


def null_stream_seconds(
    paths: list[Path], chunk_bytes: int, download: bool = False, store_dir: Path | None = None, cpu: list | None = None
) -> float:
    """Seconds to stream the files' bytes, in `chunk_bytes` messages, to a server that drops them (or,
    `download`, from a server that reads them to a client that drops them; or, `store_dir`, as FrameChunks
    to a server that writes each file's bytes into that folder). `cpu` gains the CPU seconds both
    processes spent on it."""
    import grpc

    process = subprocess.Popen(
        [sys.executable, "-m", "voidlink.bench.transport"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        address = re.search(r"listening on (\S+)", process.stdout.readline()).group(1)
        channel = grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
        grpc.channel_ready_future(channel).result(timeout=30)
        drop = channel.stream_stream(f"/{_NULL_SERVICE}/Drop")
        store = channel.stream_stream(f"/{_NULL_SERVICE}/Store")
        send = channel.unary_stream(f"/{_NULL_SERVICE}/Send")

        def chunks():
            for path in paths:
                with open(path, "rb") as handle:
                    yield from iter(functools.partial(handle.read, chunk_bytes), b"")

        def frame_chunks():  # any 64 hex digits name a file here: the store server checks nothing
            for index, path in enumerate(paths):
                name, size, offset = f"{index:064x}", path.stat().st_size, 0
                with open(path, "rb") as handle:
                    for data in iter(functools.partial(handle.read, chunk_bytes), b""):
                        yield frame_chunk_bytes(name, size, offset, data)
                        offset += len(data)

        clock = CpuClock(process.pid)
        clock.start()
        started = time.perf_counter()
        if download:
            replies = send("\n".join(str(p) for p in paths).encode())
        elif store_dir is not None:
            store_dir.mkdir(parents=True)
            replies = store(frame_chunks(), metadata=(("store-dir", str(store_dir)),))
        else:
            replies = drop(chunks())
        for _ in replies:
            pass
        seconds = time.perf_counter() - started
        if cpu is not None:
            cpu.append(clock.stop())
        channel.close()
        return seconds
    finally:
        process.stdin.close()
        process.wait(30)


def cores_bound(null_seconds: list[float], cpu_seconds: list[float], cores: int) -> float:
    """The best fraction of the transport-alone speed a transfer could reach on `cores` cores, given the
    CPU seconds it spent (both processes, every thread): spread perfectly over every core it still takes
    cpu/cores seconds. Median over the repeats; at most 1."""
    if any(math.isnan(c) for c in cpu_seconds):
        return float("nan")  # a process's CPU could not be read (no /proc): no bound to tell
    bounds = [min(1.0, n / (c / cores)) if c > 0 else 1.0 for n, c in zip(null_seconds, cpu_seconds)]
    return statistics.median(bounds)


if __name__ == "__main__":
    serve_null()
