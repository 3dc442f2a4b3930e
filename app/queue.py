"""The job queue: Huey carries "run job N" messages from the process that queues a job to
the workers that run it.

The message is only a wake-up call. The job's row in the database stays the truth about its
status, progress, log and cancellation, and a worker claims a job with one conditional
UPDATE before it runs it (``app.jobs.claim_job``), so a message delivered twice, or for a job
that is already over, does nothing. Huey does not acknowledge messages: one lost with a dying
worker is made good by the reaper (``app.jobs.JobRunner``), which queues the job again.

Storages, chosen by URL: ``sqlite:///path`` (the embedded default, no server to start),
``redis://host:port/db`` (workers on other machines), ``memory://`` (one process only: the
thread mode of tests and development).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from huey import Huey, MemoryHuey, RedisHuey, SqliteHuey
from huey.constants import EmptyData
from huey.consumer import Worker
from redis import ConnectionPool

from app.settings import redact_url

log = logging.getLogger(__name__)

QUEUE_NAME = "edgeopt-jobs"
ALIVE_KEY = "edgeopt-worker-alive"


class JobQueue:
    """A Huey queue of job ids, and Huey's consumer loop run in threads of this process."""

    def __init__(self, url: str, name: str = QUEUE_NAME) -> None:
        self.url = url
        self.huey = _open(url, name)
        self._handler: Callable[[int], None] | None = None
        self._wake = threading.Event()  # a message queued by this process: no need to poll

        def run_job(job_id: int) -> None:
            if self._handler is None:
                raise RuntimeError("this process queues jobs but runs none")
            self._handler(job_id)

        self._task = self.huey.task(name="run_job")(run_job)

    @property
    def shared(self) -> bool:
        """Whether other processes can read this queue (not an in-memory one)."""
        return not isinstance(self.huey, MemoryHuey)

    def enqueue(self, job_id: int) -> None:
        self._task(job_id)
        self._wake.set()

    def wake(self) -> None:
        """End the idle wait of this process's consumer threads (to see a stop flag)."""
        self._wake.set()

    def mark_alive(self) -> None:
        """Note that a worker consumes this queue now (the CLI queues its jobs when one does)."""
        self.huey.storage.put_data(ALIVE_KEY, repr(time.time()).encode())

    def worker_seen_s(self) -> float | None:
        """Seconds since a worker last noted it consumes this queue; None: never."""
        seen = self.huey.storage.peek_data(ALIVE_KEY)
        if seen is EmptyData:
            return None
        return max(time.time() - float(seen), 0.0)

    def pending(self) -> int:
        """Messages waiting (not yet taken by a worker)."""
        return int(self.huey.pending_count())

    def problem(self) -> str | None:
        """Why the queue cannot carry a job now (its storage does not answer), naming it;
        None when it can. A job queued meanwhile waits for the reaper to send it again."""
        try:
            self.pending()
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return f"job queue {redact_url(self.url)} does not answer: {redact_url(reason)}"
        return None

    def consume(
        self,
        handler: Callable[[int], None],
        threads: int,
        stop: threading.Event,
        max_delay_s: float = 0.5,
    ) -> list[threading.Thread]:
        """Start ``threads`` Huey workers that call ``handler(job_id)`` per message.

        Huey's own ``Consumer`` also installs signal handlers, which only the main thread of
        a process may do; its ``Worker`` loop (dequeue, execute, back off while idle) is what
        runs here, in threads that end once ``stop`` is set and their current job is over.
        """
        self._handler = handler

        def loop() -> None:
            worker = _Worker(self.huey, 0.05, max_delay_s, 1.5, wake=self._wake)
            worker.initialize()
            while not stop.is_set():
                worker.loop()

        started = []
        for i in range(threads):
            thread = threading.Thread(target=loop, name=f"edgeopt-job-{i + 1}", daemon=True)
            thread.start()
            started.append(thread)
        return started


class _Worker(Worker):
    """Huey's worker, whose idle wait also ends when this process queues a message."""

    delay: float
    default_delay: float
    max_delay: float
    backoff: float

    def __init__(
        self,
        huey: Huey,
        default_delay: float,
        max_delay: float,
        backoff: float,
        wake: threading.Event,
    ) -> None:
        super().__init__(huey, default_delay, max_delay, backoff)
        self._woken = wake

    def sleep(self) -> None:
        delay: float = min(self.delay, self.max_delay)
        if self._woken.wait(delay):
            self._woken.clear()
            self.delay = self.default_delay
        else:
            self.delay = delay * self.backoff


def _open(url: str, name: str) -> Huey:
    if url.startswith("memory:"):
        return MemoryHuey(name, results=False, utc=True)
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteHuey(name, filename=str(path), results=False, utc=True, timeout=30)
    if url.startswith(("redis://", "rediss://", "unix://")):
        # bounded waits: a Redis that accepts connections and never answers is an error in
        # seconds (read_timeout, Huey's blocking pop, stays well under socket_timeout)
        pool = ConnectionPool.from_url(url, socket_connect_timeout=5, socket_timeout=15)
        return RedisHuey(
            name, connection_pool=pool, results=False, utc=True, blocking=True, read_timeout=1
        )
    raise ValueError(
        f"unsupported queue URL {redact_url(url)!r}: use sqlite:///PATH, redis://HOST or memory://"
    )
