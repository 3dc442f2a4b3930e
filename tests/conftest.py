"""Shared fixtures: a real database per backend (SQLite file and PostgreSQL), a real app.

Every database test runs twice, once per backend. PostgreSQL is the local server on
127.0.0.1:5432 (override with EDGEOPT_TEST_POSTGRES_URL); each run works in its own schema.
Set EDGEOPT_TEST_BACKENDS=sqlite to run without PostgreSQL.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from app.db import get_engine, upgrade
from app.main import create_app
from app.models import Base
from app.settings import Settings

POSTGRES_URL = os.environ.get(
    "EDGEOPT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BACKENDS = os.environ.get("EDGEOPT_TEST_BACKENDS", "sqlite,postgresql").split(",")
API_KEY = "test-key-0123456789"


def fresh_database(backend: str, tmp: Path) -> Iterator[str]:
    """An empty database of the given backend, dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp / f'edgeopt-{uuid.uuid4().hex[:8]}.db'}"
        return
    schema = f"edgeopt_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
def migrated_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A database of each backend, migrated to head once for the session."""
    gen = fresh_database(request.param, tmp_path_factory.mktemp(request.param))
    url = next(gen)
    upgrade(url)
    yield url
    get_engine(url).dispose()
    next(gen, None)


@pytest.fixture
def database_url(migrated_url: str) -> str:
    """The migrated database, emptied before the test.

    PostgreSQL truncates: row-by-row deletes after a test that imported a whole space check
    every foreign key against tables full of dead rows, which took minutes.
    """
    engine = get_engine(migrated_url)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            # ids restart too, as on SQLite: a test may name the first job or device by id
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(table.delete())
    return migrated_url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        artifacts_dir=tmp_path / "artifacts",
        api_keys=[API_KEY],
        job_heartbeat_s=0.2,
        job_workers_mode="thread",  # jobs run in the app's threads: no worker to start
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def writer(client: TestClient) -> TestClient:
    """The same client, sending the API key on every request."""
    client.headers["X-API-Key"] = API_KEY
    return client


class JobClient(Protocol):
    def get(self, url: str) -> Any: ...


def wait_for_job(
    client: JobClient,
    job_id: int,
    status: str | None = "succeeded",
    stall_s: float = 120.0,
    poll_s: float = 0.1,
) -> dict[str, Any]:
    """Wait for a job (``GET /jobs/{id}``) to end and return it.

    There is no fixed deadline: a job on a busy machine may take long, but it must keep
    moving. This fails only when its progress and message stay unchanged for ``stall_s``
    seconds, or when it ends in another status than ``status`` (None: any end will do);
    the message then names the job's error and its last log lines.
    """
    seen: tuple[object, object] | None = None
    changed = time.monotonic()
    while True:
        response = client.get(f"/jobs/{job_id}")
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        if job["status"] not in ("queued", "running"):
            if status is not None and job["status"] != status:
                logs = [line["line"] for line in job.get("logs", [])][-5:]
                raise AssertionError(
                    f"job {job_id} ({job['kind']}) ended {job['status']}, not {status}: "
                    f"error={job.get('error')!r}, last logs={logs}"
                )
            return job
        now = time.monotonic()
        state = (job["progress"], job.get("message"))
        if state != seen:
            seen, changed = state, now
        elif now - changed > stall_s:
            raise AssertionError(
                f"job {job_id} ({job['kind']}) made no progress for {stall_s:.0f} s: "
                f"{job['status']} at {job['progress']:.0%} ({job.get('message')!r})"
            )
        time.sleep(poll_s)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds naming ``what``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout:.0f} s")
        time.sleep(0.05)
