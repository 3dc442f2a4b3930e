"""CLI commands' jobs through the queue, when workers run them: the terminal only follows.

A job run in the CLI process dies with its terminal. When workers consume the job queue
(``EDGEOPT_JOB_WORKERS_MODE=external``, or a configured ``EDGEOPT_QUEUE_URL`` on which a
worker was seen lately) the command queues its job instead and shows its progress from the
job's row; Ctrl-C then only detaches, and the job goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import typer
from sqlalchemy.orm import Session, sessionmaker

from app.artifact_store import attach
from app.cli_common import JobProgress, err, fail
from app.db import check_schema, session_factory, unit_of_work
from app.jobs import ACTIVE, JobRunner, create_job, execute_job, worker_id
from app.models import Job
from app.queries import get_job
from app.queue import JobQueue
from app.settings import Settings, get_settings, redact_url

log = logging.getLogger(__name__)

DETACHED_EXIT = 130  # what a shell reports for Ctrl-C: the command did not see the end


def queue_for_cli(settings: Settings) -> JobQueue | None:
    """The queue a CLI command should send its job to; None: run it in this process."""
    if settings.job_workers_mode == "external":
        return JobQueue(settings.job_queue_url)
    if not settings.queue_url or settings.job_workers_mode == "thread":
        return None
    try:
        queue = JobQueue(settings.queue_url)
        seen = queue.worker_seen_s()
    except Exception:  # a queue that does not answer: the job runs here, as before
        log.warning("the job queue does not answer; running the job here", exc_info=True)
        return None
    return queue if seen is not None and seen <= settings.job_stale_after_s else None


def follow_queued(
    factory: sessionmaker[Session],
    settings: Settings,
    queue: JobQueue,
    kind: str,
    params: dict[str, Any],
    poll_s: float = 0.2,
) -> Job:
    """Queue a job for the workers and show its progress until it ends; the ended job.

    Ctrl-C detaches (exit code 130): the job goes on, and the message says how to follow
    or cancel it."""
    job_id = create_job(factory, kind, params, owner=f"cli:{worker_id()}")
    try:
        queue.enqueue(job_id)
    except Exception:  # the reaper of any worker or server sends it once the queue answers
        log.warning("could not queue job %s now", job_id, exc_info=True)
    seen = queue.worker_seen_s()
    where = redact_url(queue.url)
    err.print(f"job {job_id} queued on {where} for the workers", markup=False, highlight=False)
    if seen is None or seen > settings.job_stale_after_s:
        err.print(
            "no worker was seen on this queue lately: the job waits for one (edgeopt worker)",
            markup=False,
        )
    try:
        with JobProgress(kind) as shown:
            while True:
                with factory() as s:
                    job = get_job(s, job_id)
                shown.update(job.progress, job.message or job.status)
                if job.status not in ACTIVE:
                    return job
                time.sleep(poll_s)
    except KeyboardInterrupt:
        err.print(
            f"detached: job {job_id} goes on in the workers; follow it with "
            f"`edgeopt jobs watch {job_id}`, cancel it with `edgeopt jobs cancel {job_id}`",
            markup=False,
            highlight=False,
        )
        raise typer.Exit(DETACHED_EXIT) from None


def ready_factory():  # type: ignore[no-untyped-def]
    settings = get_settings()
    settings.ensure_dirs()
    check_schema(settings.database_url)
    factory = session_factory(settings.database_url)
    attach(settings.artifacts_dir, factory, settings.artifact_store)
    return factory


def run_job(kind: str, params: dict[str, Any]) -> Job:
    """Run a job in this process, recorded in the database, with live progress on stderr.

    The job runs in a thread while this one shows its progress, so the display starts at
    once and keeps moving however long the job's steps take. Exits with the job's error
    unless it succeeded. When workers consume the queue, the job goes to them instead and
    this process only follows it (``app.cli_jobs``).
    """
    factory = ready_factory()
    settings = get_settings()
    queue = queue_for_cli(settings)
    if queue is not None:
        queued = follow_queued(factory, settings, queue, kind, params)
        if queued.status == "succeeded":
            return queued
        raise fail(f"job {queued.id} {queued.status}: {queued.error or ''}")
    runner = JobRunner(
        factory,
        1,
        settings.job_heartbeat_s,
        settings.artifacts_dir,
        consume=False,
        stale_after_s=settings.job_stale_after_s,
        max_attempts=settings.job_max_attempts,
    )
    latest: list[tuple[float, str | None]] = [(0.0, None)]  # what the job last reported
    outcome: list[BaseException] = []

    def report(fraction: float, message: str | None) -> None:
        latest[0] = (fraction, message)

    def work() -> None:
        try:
            execute_job(factory, job_id, report, runner.artifacts_dir, runner.owner)
        except BaseException as exc:  # raised again in the calling thread
            outcome.append(exc)

    try:
        job_id = create_job(factory, kind, params, runner.owner)
        with JobProgress(kind) as shown:
            thread = threading.Thread(target=work, name=f"edgeopt-{kind}", daemon=True)
            thread.start()
            try:
                while thread.is_alive():
                    shown.update(*latest[0])
                    thread.join(0.2)
            except KeyboardInterrupt:  # Ctrl-C: the job ends cancelled at its next step
                with unit_of_work(factory) as s:
                    get_job(s, job_id).cancel_requested = True
                # not thread.join(): once interrupted, it may return before the thread ends
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    with factory() as s:
                        if get_job(s, job_id).status not in ACTIVE:
                            break
                    time.sleep(0.2)
                raise
            if outcome:
                raise outcome[0]
            with factory() as s:
                job = get_job(s, job_id)
            shown.update(job.progress, job.message)
    finally:
        runner.shutdown()
    if job.status == "succeeded":
        return job
    raise fail(f"job {job.id} {job.status}: {job.error or ''}")
