"""``/metrics`` for Prometheus: this process's request and prediction counters, and the
jobs and measurement tasks in the database, counted when scraped."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from app.deps import FactoryDep, ReadAccess, SettingsDep
from app.errors import ERROR_RESPONSES
from app.jobs import mark_stale_jobs
from app.models import JOB_STATUSES, TASK_STATUSES, Job, MeasurementTask

router = APIRouter(tags=["service"], responses=ERROR_RESPONSES)

TEXT: dict[int | str, dict[str, object]] = {
    200: {
        "content": {CONTENT_TYPE_LATEST.split(";")[0]: {}},
        "description": "Prometheus text exposition format",
    }
}


class _Stored(Collector):
    """Gauges of what the database holds now: jobs and agent tasks by status."""

    def __init__(self, jobs: dict[str, int], tasks: dict[str, int]) -> None:
        self.jobs, self.tasks = jobs, tasks

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily(
            "edgeopt_jobs", "Jobs in the database by status", labels=["status"]
        )
        for status in JOB_STATUSES:
            jobs.add_metric([status], self.jobs.get(status, 0))
        yield jobs
        yield GaugeMetricFamily(
            "edgeopt_job_queue_depth",
            "Jobs queued, not yet started",
            value=self.jobs.get("queued", 0),
        )
        tasks = GaugeMetricFamily(
            "edgeopt_measurement_tasks", "Agents' measurement tasks by status", labels=["status"]
        )
        for status in TASK_STATUSES:
            tasks.add_metric([status], self.tasks.get(status, 0))
        yield tasks


@router.get("/metrics", response_class=Response, responses=TEXT, dependencies=[ReadAccess])
def metrics(factory: FactoryDep, settings: SettingsDep) -> Response:
    """Prometheus metrics (open to scrapers unless reads require a key)."""
    # a dead worker's jobs: queued again, or interrupted after EDGEOPT_JOB_MAX_ATTEMPTS
    mark_stale_jobs(factory, settings.job_stale_after_s, settings.job_max_attempts)
    with factory() as session:
        jobs = session.execute(select(Job.status, func.count()).group_by(Job.status)).all()
        tasks = session.execute(
            select(MeasurementTask.status, func.count()).group_by(MeasurementTask.status)
        ).all()
    stored = CollectorRegistry(auto_describe=False)
    stored.register(_Stored(dict(jobs), dict(tasks)))  # type: ignore[arg-type]
    body = generate_latest(REGISTRY) + generate_latest(stored)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
