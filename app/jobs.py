"""Jobs: long work queued by the API and run by workers, with progress, logs and cancellation.

A job is a database row: its status, progress, log and cancel request live there, whoever
runs it. Queueing a job writes the row, then sends its id through the queue
(``app.queue.JobQueue``). A worker claims the row with one conditional UPDATE (``queued`` to
``running``, its own id as ``owner``, ``attempts`` + 1), so one worker runs it however many
messages arrive, and keeps a heartbeat on it while it runs.

At least once: a reaper, in every process that holds a ``JobRunner``, queues again a running
job whose heartbeat stopped (its worker died), until it has been started
``job_max_attempts`` times; then it is ``interrupted``. A worker that lost its job that way
(it was only slow) notices at its next progress report and stops without writing. Job
bodies must therefore be idempotent: a second run finishes what the first left, never
doubles it. A job whose answer is one final row stores it with its end, in one transaction
(``JobContext.finish``).
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db import unit_of_work
from app.domain_errors import DomainError
from app.models import Job, JobLog, utcnow
from app.queue import JobQueue

log = logging.getLogger(__name__)

ACTIVE = ("queued", "running")
MAX_ATTEMPTS = 3
JobFn = Callable[["JobContext", dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class JobKind:
    """A job body and the model its parameters must satisfy (checked before queueing)."""

    fn: JobFn
    params: type[BaseModel]


JOB_KINDS: dict[str, JobKind] = {}


def job_kind(name: str, params: type[BaseModel]) -> Callable[[JobFn], JobFn]:
    """Register a function as the body of jobs of kind ``name``."""

    def register(fn: JobFn) -> JobFn:
        JOB_KINDS[name] = JobKind(fn, params)
        return fn

    return register


def validate_params(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """Canonical parameters for a job kind; ValueError / ValidationError when they are wrong."""
    if kind not in JOB_KINDS:
        raise ValueError(f"unknown job kind {kind!r} (known: {sorted(JOB_KINDS)})")
    return JOB_KINDS[kind].params.model_validate(params).model_dump(mode="json")


class JobCancelled(Exception):
    """Raised inside a job body when cancellation was requested."""


class JobStopped(Exception):
    """Raised inside a job body when its worker stops, or another worker took the job over."""


def worker_id() -> str:
    """A unique name for one process's workers: host, pid and a random part."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _updated(result: object) -> int:
    assert isinstance(result, CursorResult)
    return int(result.rowcount)


@dataclass(frozen=True)
class Claim:
    """A job this worker now runs: the row said so after its conditional UPDATE."""

    job_id: int
    kind: str
    params: dict[str, Any]
    owner: str
    attempt: int


class JobContext:
    """What a job body sees: report progress, write log lines, honour cancellation."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        job_id: int,
        on_progress: Callable[[float, str | None], None] | None = None,
        min_interval_s: float = 0.25,
        artifacts_dir: Path | None = None,
        claim: Claim | None = None,
        stopping: threading.Event | None = None,
    ) -> None:
        self.factory = factory
        self.job_id = job_id
        self.artifacts_dir = artifacts_dir or Path(".edgeopt/artifacts")
        self.attempt = claim.attempt if claim else 1
        self._claim = claim
        self._stopping = stopping
        self._on_progress = on_progress
        self._min_interval = min_interval_s
        self._last_write = 0.0
        self.ended = False  # finish() stored the answer and the job's end together

    def progress(self, fraction: float, message: str | None = None, force: bool = False) -> None:
        """Record progress (throttled); raise JobCancelled if a cancel was requested, and
        JobStopped if this worker stops or the job is no longer this worker's."""
        fraction = min(max(fraction, 0.0), 1.0)
        if self._on_progress:
            self._on_progress(fraction, message)
        if self._stopping is not None and self._stopping.is_set():
            raise JobStopped
        now = time.monotonic()
        if not force and now - self._last_write < self._min_interval:
            return
        self._last_write = now
        values: dict[str, Any] = {"progress": fraction, "heartbeat_at": utcnow()}
        if message is not None:
            values["message"] = message
        with unit_of_work(self.factory) as s:
            if self._claim is not None and not _updated(
                s.execute(update(Job).where(*_held(self._claim)).values(**values))
            ):
                raise JobStopped
            if self._claim is None:
                s.execute(update(Job).where(Job.id == self.job_id).values(**values))
            cancel = s.scalar(select(Job.cancel_requested).where(Job.id == self.job_id))
        if cancel:
            raise JobCancelled

    def log(self, line: str, level: str = "info") -> None:
        with unit_of_work(self.factory) as s:
            s.add(JobLog(job_id=self.job_id, line=line, level=level))

    def finish(self, write: Callable[[Session], dict[str, Any]]) -> dict[str, Any]:
        """Store the job's answer (``write``, which returns the job's result) and end the job
        ``succeeded`` in one transaction.

        So the answer is stored exactly once: a worker that dies before the commit leaves
        neither (its retry stores it), one whose job was taken over meanwhile writes neither
        (JobStopped). ``write`` should still reuse a row its job already stored.
        """
        with unit_of_work(self.factory) as s:
            result = write(s)
            end = update(Job).where(*_held(self._claim)) if self._claim else None
            if end is None:
                end = update(Job).where(Job.id == self.job_id)
            if not _updated(s.execute(end.values(**_end_values("succeeded", result, None)))):
                raise JobStopped
            s.add(JobLog(job_id=self.job_id, line="succeeded"))
        self.ended = True
        return result


def _held(claim: Claim) -> tuple[Any, ...]:
    """The row is still this claim's: running, by this owner, in this attempt."""
    return (
        Job.id == claim.job_id,
        Job.status == "running",
        Job.owner == claim.owner,
        Job.attempts == claim.attempt,
    )


def create_job(
    factory: sessionmaker[Session], kind: str, params: dict[str, Any], owner: str | None = None
) -> int:
    """Store a queued job (``owner``: who queued it, until a worker claims it)."""
    params = validate_params(kind, params)
    with unit_of_work(factory) as s:
        job = Job(kind=kind, params=params, owner=owner, heartbeat_at=utcnow(), status="queued")
        s.add(job)
        s.flush()
        return job.id


def claim_job(factory: sessionmaker[Session], job_id: int, owner: str) -> Claim | None:
    """Take a queued job for ``owner``; None when it is not queued (another worker has it,
    it ended) or was cancelled before it started (then it ends ``cancelled`` here).

    One conditional UPDATE: of several workers claiming the same job, on PostgreSQL as on
    SQLite, exactly one sees a row changed.
    """
    now = utcnow()
    with unit_of_work(factory) as s:
        taken = _updated(
            s.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == "queued", Job.cancel_requested.is_(False))
                .values(
                    status="running",
                    owner=owner,
                    attempts=Job.attempts + 1,
                    started_at=now,
                    heartbeat_at=now,
                )
            )
        )
        if not taken:
            _end_cancelled(s, [job_id])
            return None
        row = s.execute(select(Job.kind, Job.params, Job.attempts).where(Job.id == job_id)).one()
        if row.attempts > 1:
            s.add(JobLog(job_id=job_id, line=f"attempt {row.attempts} started by {owner}"))
    return Claim(job_id, row.kind, dict(row.params), owner, row.attempts)


def _end_cancelled(s: Session, job_ids: list[int]) -> None:
    """Queued jobs with a cancel request end ``cancelled`` (no worker will start them)."""
    for job_id in job_ids:
        if _updated(
            s.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == "queued", Job.cancel_requested.is_(True))
                .values(status="cancelled", finished_at=utcnow())
            )
        ):
            s.add(JobLog(job_id=job_id, line="cancelled before it started"))


def execute_job(
    factory: sessionmaker[Session],
    job_id: int,
    on_progress: Callable[[float, str | None], None] | None = None,
    artifacts_dir: Path | None = None,
    owner: str | None = None,
    stopping: threading.Event | None = None,
) -> str:
    """Claim a stored job and run it to its end in this thread; returns its status then.

    ``queued``: this worker stopped (``stopping`` set) and handed the job back unfinished;
    ``lost``: another worker took it over meanwhile; this one wrote nothing more.
    """
    claim = claim_job(factory, job_id, owner or worker_id())
    if claim is None:
        with factory() as s:
            return s.scalar(select(Job.status).where(Job.id == job_id)) or "lost"
    ctx = JobContext(
        factory, job_id, on_progress, artifacts_dir=artifacts_dir, claim=claim, stopping=stopping
    )
    ctx.log(f"started {claim.kind} with {claim.params}")
    status, result, error = "succeeded", None, None
    try:
        result = JOB_KINDS[claim.kind].fn(ctx, claim.params)
    except JobCancelled:
        status = "cancelled"
    except JobStopped:
        return _hand_back(factory, claim)
    except DomainError as exc:  # a foreseeable condition (a busy host, no model): one line
        status, error = "failed", f"{type(exc).__name__}: {exc}"
        log.warning("job %s failed: %s", job_id, error)
    except Exception as exc:
        status, error = "failed", f"{type(exc).__name__}: {exc}"
        log.warning("job %s failed\n%s", job_id, traceback.format_exc())
    if ctx.ended:  # its answer and its end were written together
        return "succeeded"
    with unit_of_work(factory) as s:
        values = _end_values(status, result, error)
        if not _updated(s.execute(update(Job).where(*_held(claim)).values(**values))):
            log.warning("job %s was taken over by another worker: its end here is dropped", job_id)
            return "lost"
        s.add(
            JobLog(
                job_id=job_id,
                level="error" if error else "info",
                line=f"{status}" + (f": {error}" if error else ""),
            )
        )
    return status


def _end_values(status: str, result: dict[str, Any] | None, error: str | None) -> dict[str, Any]:
    """The columns a job's end sets."""
    values: dict[str, Any] = {
        "status": status,
        "result": result,
        "error": error,
        "finished_at": utcnow(),
    }
    if status == "succeeded":
        values["progress"] = 1.0
    return values


def _hand_back(factory: sessionmaker[Session], claim: Claim) -> str:
    """Queue a job again that this worker stops running, without using up an attempt."""
    with unit_of_work(factory) as s:
        if not _updated(
            s.execute(
                update(Job)
                .where(*_held(claim))
                .values(status="queued", owner=None, attempts=Job.attempts - 1, heartbeat_at=None)
            )
        ):
            return "lost"
        s.add(JobLog(job_id=claim.job_id, line="handed back to the queue: its worker stopped"))
    return "queued"


def mark_stale_jobs(
    factory: sessionmaker[Session], stale_after_s: float, max_attempts: int = MAX_ATTEMPTS
) -> int:
    """Deal with running jobs whose worker stopped beating; returns how many.

    Each is queued again (to be retried by any worker) while it has attempts left, else
    ``interrupted``; one with a cancel request ends ``cancelled``. Each row changes by a
    conditional UPDATE, so of several processes reaping at once one acts on each job.
    """
    return len(reap_jobs(factory, stale_after_s, max_attempts)[1])


def reap_jobs(
    factory: sessionmaker[Session], stale_after_s: float, max_attempts: int = MAX_ATTEMPTS
) -> tuple[list[int], list[int]]:
    """``mark_stale_jobs``, returning (jobs queued again, every job it changed)."""
    cutoff = utcnow() - timedelta(seconds=stale_after_s)
    is_stale = (Job.status == "running", Job.heartbeat_at < cutoff)
    with factory() as s:  # a plain read first: looking at jobs must not wait for writers
        stale = s.execute(select(Job.id, Job.attempts, Job.cancel_requested).where(*is_stale))
        candidates = stale.all()
    if not candidates:
        return [], []
    requeued: list[int] = []
    changed: list[int] = []
    with unit_of_work(factory) as s:
        for job_id, attempts, cancel in candidates:
            this = update(Job).where(Job.id == job_id, Job.attempts == attempts, *is_stale)
            if cancel:
                values: dict[str, Any] = {"status": "cancelled", "finished_at": utcnow()}
                line = "cancelled: its worker stopped"
            elif attempts < max_attempts:
                values = {"status": "queued", "owner": None, "heartbeat_at": None}
                line = f"queued again: its worker stopped during attempt {attempts}"
            else:
                values = {
                    "status": "interrupted",
                    "finished_at": utcnow(),
                    "error": f"the worker running this job stopped before it finished, "
                    f"{attempts} times (EDGEOPT_JOB_MAX_ATTEMPTS={max_attempts})",
                }
                line = f"interrupted: its worker stopped, {attempts} times"
            if _updated(s.execute(this.values(**values))):
                changed.append(job_id)
                if values["status"] == "queued":
                    requeued.append(job_id)
                s.add(JobLog(job_id=job_id, level="warning", line=line))
    return requeued, changed


def enqueue_waiting(
    factory: sessionmaker[Session], queue: JobQueue, stale_after_s: float
) -> list[int]:
    """Send again the queued jobs that no message may carry any more; their ids.

    A message is lost with a worker that died between taking it and claiming the job, with
    an in-memory queue whose process ended, or when a job was queued again by a process
    without a queue. So when the queue is empty, every job still queued since before
    ``stale_after_s`` (or handed back) is sent once more; a duplicate claims nothing.
    """
    if queue.pending():
        return []
    cutoff = utcnow() - timedelta(seconds=stale_after_s)
    waiting = (Job.status == "queued", (Job.heartbeat_at < cutoff) | Job.heartbeat_at.is_(None))
    with factory() as s:
        ids = s.scalars(select(Job.id).where(*waiting).order_by(Job.id)).all()
    if not ids:
        return []
    sent = []
    with unit_of_work(factory) as s:
        _end_cancelled(s, list(ids))
        for job_id in ids:
            touched = update(Job).where(Job.id == job_id, Job.cancel_requested.is_(False), *waiting)
            if _updated(s.execute(touched.values(heartbeat_at=utcnow()))):
                sent.append(job_id)
    for job_id in sent:
        queue.enqueue(job_id)
    return sent


class JobRunner:
    """A process's part in the jobs: queue them, and (``consume``) run them in threads.

    Every runner also keeps the heartbeat of the jobs its threads run and, every few
    seconds, reaps dead workers' jobs (``reap_jobs``) and resends lost messages
    (``enqueue_waiting``). The API builds one that only queues (process and external
    modes) or one that also runs jobs (thread mode: ``queue`` None, a private in-memory
    queue); ``edgeopt worker`` builds one that runs jobs from the shared queue.
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        workers: int = 1,
        heartbeat_s: float = 2.0,
        artifacts_dir: Path | None = None,
        *,
        queue: JobQueue | None = None,
        consume: bool = True,
        stale_after_s: float = 15.0,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self.factory = factory
        self.artifacts_dir = artifacts_dir
        self.owner = worker_id()
        self.queue = queue or JobQueue("memory://")
        self._heartbeat_s = heartbeat_s
        self._stale_after_s = stale_after_s
        self._max_attempts = max_attempts
        self._stop = threading.Event()  # the beat thread ends
        self._stopping = threading.Event()  # running jobs hand themselves back
        self._consuming = threading.Event()  # consumer threads take no new message
        try:  # a process that died before this one started leaves nothing running
            self.reap()
        except Exception:  # a queue that does not answer yet: the beat thread tries again
            log.warning("could not reap jobs at start", exc_info=True)
        self._threads = self.queue.consume(self._run, workers, self._consuming) if consume else []
        if self._threads and self.queue.shared:
            try:
                self.queue.mark_alive()
            except Exception:  # the beat thread notes it once the queue answers
                log.warning("could not reach the job queue at start", exc_info=True)
        self._beat = threading.Thread(target=self._beat_loop, daemon=True, name="edgeopt-beat")
        self._beat.start()

    def submit(self, kind: str, params: dict[str, Any]) -> int:
        """Store a queued job and send it to the workers; its id."""
        job_id = create_job(self.factory, kind, params, self.owner)
        try:
            self.queue.enqueue(job_id)
        except Exception:  # the reaper sends it again once the queue answers
            log.exception("could not queue job %s", job_id)
        return job_id

    def _run(self, job_id: int) -> None:
        if self._consuming.is_set():  # taken while stopping: leave it to another worker
            self.queue.enqueue(job_id)
            return
        try:
            status = execute_job(
                self.factory, job_id, None, self.artifacts_dir, self.owner, self._stopping
            )
            if status == "queued" and self.queue.shared:
                self.queue.enqueue(job_id)
        except Exception:  # the job stays running, then is reaped and retried once stale
            log.exception("could not record the end of job %s", job_id)

    def run_inline(
        self,
        kind: str,
        params: dict[str, Any],
        on_progress: Callable[[float, str | None], None] | None = None,
    ) -> int:
        """Run a job in the calling thread (the CLI), still recorded and heartbeated."""
        job_id = create_job(self.factory, kind, params, self.owner)
        execute_job(self.factory, job_id, on_progress, self.artifacts_dir, self.owner)
        return job_id

    def reap(self) -> list[int]:
        """Queue dead workers' jobs again and resend lost messages; the ids sent."""
        requeued, _ = reap_jobs(self.factory, self._stale_after_s, self._max_attempts)
        for job_id in requeued:
            self.queue.enqueue(job_id)
        return requeued + enqueue_waiting(self.factory, self.queue, self._stale_after_s)

    def _beat_loop(self) -> None:
        reap_every = max(self._heartbeat_s, self._stale_after_s / 3)
        last_reap = time.monotonic()
        while not self._stop.wait(self._heartbeat_s):
            try:
                if self._threads and self.queue.shared:  # the CLI then queues its jobs
                    self.queue.mark_alive()
                with unit_of_work(self.factory) as s:
                    s.execute(
                        update(Job)
                        .where(Job.owner == self.owner, Job.status == "running")
                        .values(heartbeat_at=utcnow())
                    )
                if time.monotonic() - last_reap >= reap_every:
                    last_reap = time.monotonic()
                    self.reap()
            except Exception:  # a busy database must not kill the heartbeat thread
                log.warning("job heartbeat failed", exc_info=True)

    def shutdown(self, timeout_s: float | None = None) -> None:
        """Stop: take no new job; running ones stop at their next progress report and go
        back to the queue (without using up an attempt), for another worker or the next
        start. Waits for them up to ``timeout_s`` (None: as long as they take)."""
        self._consuming.set()
        self._stopping.set()
        self.queue.wake()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for thread in self._threads:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            thread.join(left)
        self._stop.set()
        self._beat.join(5)


def start_worker_processes(env: dict[str, str], count: int) -> list[subprocess.Popen[bytes]]:
    """``count`` `edgeopt worker` child processes with these ``EDGEOPT_*`` settings; each
    stops by itself should this process die (it watches its parent)."""
    command = [sys.executable, "-m", "app", "worker", "--parent-pid", str(os.getpid())]
    return [subprocess.Popen(command, env={**os.environ, **env}) for _ in range(count)]


def stop_worker_processes(procs: list[subprocess.Popen[bytes]], timeout_s: float = 70.0) -> None:
    """SIGTERM: each worker hands its running job back to the queue, then exits."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + timeout_s
    for proc in procs:
        try:
            proc.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
