"""Jobs: long work run in background threads, with progress, logs, cancellation and a heartbeat.

Every job row belongs to the process that runs it (``owner``) and carries a heartbeat. A job
whose heartbeat stopped (the process died) is marked ``interrupted`` the next time anyone
looks, so nothing shows as running forever.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db import unit_of_work
from app.domain_errors import DomainError
from app.models import Job, JobLog

log = logging.getLogger(__name__)

ACTIVE = ("queued", "running")
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


def _now() -> datetime:
    return datetime.now(UTC)


class JobContext:
    """What a job body sees: report progress, write log lines, honour cancellation."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        job_id: int,
        on_progress: Callable[[float, str | None], None] | None = None,
        min_interval_s: float = 0.25,
        artifacts_dir: Path | None = None,
    ) -> None:
        self.factory = factory
        self.job_id = job_id
        self.artifacts_dir = artifacts_dir or Path(".edgeopt/artifacts")
        self._on_progress = on_progress
        self._min_interval = min_interval_s
        self._last_write = 0.0

    def progress(self, fraction: float, message: str | None = None, force: bool = False) -> None:
        """Record progress (throttled) and raise JobCancelled if a cancel was requested."""
        fraction = min(max(fraction, 0.0), 1.0)
        if self._on_progress:
            self._on_progress(fraction, message)
        now = time.monotonic()
        if not force and now - self._last_write < self._min_interval:
            return
        self._last_write = now
        with unit_of_work(self.factory) as s:
            job = s.get(Job, self.job_id)
            assert job is not None
            job.progress = fraction
            if message is not None:
                job.message = message
            job.heartbeat_at = _now()
            cancel = job.cancel_requested
        if cancel:
            raise JobCancelled

    def log(self, line: str, level: str = "info") -> None:
        with unit_of_work(self.factory) as s:
            s.add(JobLog(job_id=self.job_id, line=line, level=level))


def create_job(
    factory: sessionmaker[Session], kind: str, params: dict[str, Any], owner: str
) -> int:
    params = validate_params(kind, params)
    with unit_of_work(factory) as s:
        job = Job(kind=kind, params=params, owner=owner, heartbeat_at=_now(), status="queued")
        s.add(job)
        s.flush()
        return job.id


def execute_job(
    factory: sessionmaker[Session],
    job_id: int,
    on_progress: Callable[[float, str | None], None] | None = None,
    artifacts_dir: Path | None = None,
) -> str:
    """Run a stored job to its end in this thread; returns its final status."""
    with unit_of_work(factory) as s:
        job = s.get(Job, job_id)
        assert job is not None
        if job.status != "queued":
            return job.status
        if job.cancel_requested:
            job.status, job.finished_at = "cancelled", _now()
            return "cancelled"
        job.status, job.started_at, job.heartbeat_at = "running", _now(), _now()
        kind, params = job.kind, dict(job.params)
    ctx = JobContext(factory, job_id, on_progress, artifacts_dir=artifacts_dir)
    ctx.log(f"started {kind} with {params}")
    status, result, error = "succeeded", None, None
    try:
        result = JOB_KINDS[kind].fn(ctx, params)
    except JobCancelled:
        status = "cancelled"
    except DomainError as exc:  # a foreseeable condition (a busy host, no model): one line
        status, error = "failed", f"{type(exc).__name__}: {exc}"
        log.warning("job %s failed: %s", job_id, error)
    except Exception as exc:
        status, error = "failed", f"{type(exc).__name__}: {exc}"
        log.warning("job %s failed\n%s", job_id, traceback.format_exc())
    with unit_of_work(factory) as s:
        job = s.get(Job, job_id)
        assert job is not None
        job.status, job.result, job.error, job.finished_at = status, result, error, _now()
        if status == "succeeded":
            job.progress = 1.0
        s.add(
            JobLog(
                job_id=job_id,
                level="error" if error else "info",
                line=f"{status}" + (f": {error}" if error else ""),
            )
        )
    return status


def mark_stale_jobs(factory: sessionmaker[Session], stale_after_s: float) -> int:
    """Mark queued/running jobs whose owner stopped beating as interrupted; returns how many."""
    cutoff = _now() - timedelta(seconds=stale_after_s)
    is_stale = (Job.status.in_(ACTIVE), Job.heartbeat_at < cutoff)
    with factory() as s:  # a plain read first: looking at jobs must not wait for writers
        if s.scalar(select(Job.id).where(*is_stale).limit(1)) is None:
            return 0
    with unit_of_work(factory) as s:
        stale = s.scalars(select(Job.id).where(*is_stale)).all()
        if not stale:
            return 0
        s.execute(
            update(Job)
            .where(Job.id.in_(stale))
            .values(
                status="interrupted",
                finished_at=_now(),
                error="the process running this job stopped before it finished",
            )
        )
        for job_id in stale:
            s.add(JobLog(job_id=job_id, level="error", line="interrupted: its process stopped"))
        return len(stale)


class JobRunner:
    """Runs jobs in a thread pool and keeps their heartbeat while this process lives."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        workers: int = 1,
        heartbeat_s: float = 2.0,
        artifacts_dir: Path | None = None,
    ) -> None:
        self.factory = factory
        self.artifacts_dir = artifacts_dir
        self.owner = f"{uuid.uuid4().hex[:12]}"
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="edgeopt-job")
        self._heartbeat_s = heartbeat_s
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._beat_loop, daemon=True, name="edgeopt-beat")
        self._beat.start()

    def submit(self, kind: str, params: dict[str, Any]) -> int:
        job_id = create_job(self.factory, kind, params, self.owner)
        self._pool.submit(self._execute, job_id)
        return job_id

    def _execute(self, job_id: int) -> None:
        try:
            execute_job(self.factory, job_id, artifacts_dir=self.artifacts_dir)
        except Exception:  # the job stays active and shows as interrupted once stale
            log.exception("could not record the end of job %s", job_id)

    def run_inline(
        self,
        kind: str,
        params: dict[str, Any],
        on_progress: Callable[[float, str | None], None] | None = None,
    ) -> int:
        """Run a job in the calling thread (the CLI), still recorded and heartbeated."""
        job_id = create_job(self.factory, kind, params, self.owner)
        execute_job(self.factory, job_id, on_progress, self.artifacts_dir)
        return job_id

    def _beat_loop(self) -> None:
        while not self._stop.wait(self._heartbeat_s):
            try:
                with unit_of_work(self.factory) as s:
                    s.execute(
                        update(Job)
                        .where(Job.owner == self.owner, Job.status.in_(ACTIVE))
                        .values(heartbeat_at=_now())
                    )
            except Exception:  # a busy database must not kill the heartbeat thread
                log.warning("job heartbeat failed", exc_info=True)

    def shutdown(self) -> None:
        """Stop: queued jobs never start, running ones stop at their next progress check.

        Both end as ``interrupted`` (the service stopped them, not a user), so a client can
        tell them from jobs it cancelled itself and simply start them again.
        """
        began = _now()
        self._pool.shutdown(wait=False, cancel_futures=True)
        mine = (Job.owner == self.owner, Job.status.in_(ACTIVE))
        with unit_of_work(self.factory) as s:
            s.execute(update(Job).where(*mine).values(cancel_requested=True))
        self._pool.shutdown(wait=True)
        with unit_of_work(self.factory) as s:
            stopped = (Job.status == "queued") | (
                (Job.status == "cancelled") & (Job.finished_at >= began)
            )
            s.execute(
                update(Job)
                .where(Job.owner == self.owner, stopped)
                .values(
                    status="interrupted",
                    finished_at=_now(),
                    error="the service stopped before this job finished",
                )
            )
        self._stop.set()
