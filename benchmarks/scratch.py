"""A scratch registry for benchmarks that go through the API as a user would."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from fastapi.testclient import TestClient

from app.db import upgrade
from app.settings import Settings


def scratch_registry(workdir: Path, key: str) -> Settings:
    """An empty, migrated SQLite registry in ``workdir`` (emptied first); the app built on
    these settings runs the jobs it queues in its own threads, so no worker is started."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    url = f"sqlite:///{workdir / 'registry.db'}"
    upgrade(url)
    return Settings(
        database_url=url,
        artifacts_dir=workdir / "artifacts",
        api_keys=[key],
        job_workers_mode="thread",
    )


def wait(client: TestClient, job_id: int) -> dict:
    """The job once it ended; exits the benchmark when it did not succeed."""
    while True:
        job = client.get(f"/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled", "interrupted"):
            if job["status"] != "succeeded":
                raise SystemExit(f"job {job_id} {job['status']}: {job.get('error')}")
            return job
        time.sleep(1.0)
