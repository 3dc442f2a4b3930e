"""Shared fixtures: a real database per backend (SQLite file and PostgreSQL), a real app.

Every database test runs twice, once per backend. PostgreSQL is the local server on
127.0.0.1:5432 (override with EDGEOPT_TEST_POSTGRES_URL); each run works in its own schema.
Set EDGEOPT_TEST_BACKENDS=sqlite to run without PostgreSQL.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

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
    """The migrated database, emptied before the test."""
    engine = get_engine(migrated_url)
    with engine.begin() as conn:
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
