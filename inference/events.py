"""EventBus: fans a job's events out to every watcher, each through its own bounded queue."""

from __future__ import annotations

import queue
import threading
from collections import defaultdict

from voidlink.protos import pb

# A watcher that stops reading loses intermediate frame events, never the final one:
# when its queue is full the oldest event is dropped to make room.
_QUEUE_SIZE = 256


class EventBus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[str, list[queue.Queue]] = defaultdict(list)

    def subscribe(self, job_id: str) -> queue.Queue:
        q: queue.Queue = queue.Queue(maxsize=_QUEUE_SIZE)
        with self._lock:
            self._subscribers[job_id].append(q)
        return q

    def unsubscribe(self, job_id: str, q: queue.Queue) -> None:
        with self._lock:
            subscribers = self._subscribers.get(job_id, [])
            if q in subscribers:
                subscribers.remove(q)
            if not subscribers:
                self._subscribers.pop(job_id, None)

    def publish(self, event: pb.JobEvent) -> None:
        with self._lock:
            subscribers = list(self._subscribers.get(event.job_id, []))
        for q in subscribers:
            while True:
                try:
                    q.put_nowait(event)
                    break
                except queue.Full:
                    try:
                        q.get_nowait()
                    except queue.Empty:
                        pass
