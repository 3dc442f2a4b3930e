"""A database or disk that fails under a request: a status that names the cause, not a 500.

SQLite's write lock held by another connection past the busy timeout is 503 with
Retry-After; a full SQLite file is 507 and the service recovers when space returns.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from app.db import get_engine
from app.main import create_app
from app.settings import Settings
from tests.conftest import API_KEY


def _sqlite_file(url: str) -> str:
    if not url.startswith("sqlite:///"):
        pytest.skip("SQLite's own write lock and file")
    return url.removeprefix("sqlite:///")


@pytest.fixture
def impatient(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    """A service whose writers wait half a second for SQLite's write lock."""
    settings = Settings(
        database_url=database_url,
        artifacts_dir=tmp_path / "artifacts",
        api_keys=[API_KEY],
        job_workers_mode="thread",
        sqlite_busy_timeout_s=0.5,
    )
    with TestClient(create_app(settings)) as client:
        client.headers["X-API-Key"] = API_KEY
        yield client


def test_a_write_while_another_holds_the_lock_is_503_with_retry_after(
    impatient: TestClient, database_url: str
) -> None:
    other = sqlite3.connect(_sqlite_file(database_url), isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process's long write
        response = impatient.post("/devices", json={"name": "pi", "kind": "cpu"})
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "1"
        error = response.json()["error"]
        assert error["code"] == "service_unavailable"
        assert "database is busy" in error["message"]
        assert impatient.get("/devices").status_code == 200  # readers do not wait
    finally:
        other.rollback()
        other.close()
    assert impatient.post("/devices", json={"name": "pi", "kind": "cpu"}).status_code == 201


def test_a_full_sqlite_file_is_507_and_writes_resume_when_space_returns(
    writer: TestClient, settings: Settings
) -> None:
    _sqlite_file(settings.database_url)
    engine = get_engine(settings.database_url, settings.db_timeouts)

    def no_growth(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        # SQLite's own limit on its file: past it, "database or disk is full" (SQLITE_FULL)
        pages = dbapi_conn.execute("PRAGMA page_count").fetchone()[0]
        dbapi_conn.execute(f"PRAGMA max_page_count={pages}")

    engine.dispose()
    event.listen(engine, "connect", no_growth)
    try:
        statuses = []
        for i in range(200):
            response = writer.post(
                "/devices", json={"name": f"d{i}", "kind": "cpu", "description": "x" * 4000}
            )
            statuses.append(response.status_code)
            if response.status_code != 201:
                break
        assert statuses[-1] == 507, (statuses, response.text)
        error = response.json()["error"]
        assert error["code"] == "insufficient_storage"
        assert "disk is full" in error["message"]
    finally:
        event.remove(engine, "connect", no_growth)
        engine.dispose()
    assert writer.post("/devices", json={"name": "after", "kind": "cpu"}).status_code == 201
