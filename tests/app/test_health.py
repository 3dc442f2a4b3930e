"""Probes: alive, ready, and a database that stops answering is 503, not 500."""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from app.db import head_revision, session_factory
from app.errors import storage_error
from app.main import create_app
from app.settings import DbTimeouts, Settings
from tests.conftest import API_KEY
from tests.processes import free_port


def test_a_healthy_service_is_alive_and_ready(client: TestClient, settings: Settings) -> None:
    assert client.get("/healthz").json() == {"status": "alive"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["schema_revision"] == head_revision(settings.database_url)
    assert client.get("/health").json()["status"] == "ok"


def test_a_database_that_stops_answering_is_503(client: TestClient) -> None:
    # the service started on its database; then the database goes away (a real engine on a
    # port where nothing listens)
    client.app.state.session_factory = session_factory(  # type: ignore[attr-defined]
        "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2"
    )
    for url in ("/health", "/readyz"):
        response = client.get(url)
        assert response.status_code == 503, url
        assert "database unavailable" in response.json()["error"]["message"]
    assert client.get("/healthz").status_code == 200


def read_only_folder(tmp_path: Path) -> Path:
    """A folder no file can be created in: mode 0o500, or, for root (whom modes do not
    stop), a folder of sysfs, where nobody creates files."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o500)
        return folder
    folder = Path("/sys/kernel")
    try:
        (folder / "edgeopt-probe").touch()
    except OSError:
        return folder
    pytest.skip("no read-only folder to point at")


def _routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every operation of the API: (method, path with its parameters filled in)."""
    calls = []
    for path, item in app.openapi()["paths"].items():
        for method in item:
            calls.append((method.upper(), re.sub(r"\{[^}]+\}", "1", path)))
    return calls


# answer without the database: the process, its docs, files the dashboard reads
NO_DATABASE = (
    "/healthz",
    "/docs",
    "/redoc",
    "/openapi.json",
    "/metrics",
    "/static",
    "/api/charts/transfer-suite",
    "/api/charts/families",
)


class Silent:
    """A TCP server that accepts connections and never answers (a hung database host)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)  # open, read by no one, answered never

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def silent() -> Iterator[Silent]:
    server = Silent()
    yield server
    server.close()


def _outage(client: TestClient, settings: Settings, port: int) -> None:
    """The service's database moves to a PostgreSQL on ``port`` (same timeouts)."""
    client.app.state.session_factory = session_factory(  # type: ignore[attr-defined]
        f"postgresql+psycopg://nobody@127.0.0.1:{port}/none", settings.db_timeouts
    )


def test_every_route_answers_503_while_the_database_refuses_connections(
    writer: TestClient, settings: Settings
) -> None:
    _outage(writer, settings, free_port())  # nothing listens there: connection refused
    unavailable = 0
    for method, path in _routes(writer.app):  # type: ignore[arg-type]
        response = writer.request(method, path, json={} if method != "GET" else None)
        assert response.status_code != 500, (method, path, response.text)
        if path.startswith(NO_DATABASE):
            continue
        # some answer 422 or 404 before they need the database; none may fail otherwise
        assert response.status_code in (503, 404, 422), (method, path, response.text)
        if response.status_code == 503:
            unavailable += 1
            body = response.json()["error"]
            assert body["code"] == "service_unavailable"
            assert "database unavailable" in body["message"], (method, path, body)
            assert "Connection refused" in body["message"] or "refused" in body["message"]
    assert unavailable >= 30, unavailable


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/readyz"),
        ("GET", "/health"),
        ("GET", "/devices"),
        ("POST", "/devices"),
        ("GET", "/predictors"),
        ("GET", "/jobs"),
    ],
)
def test_a_database_that_never_answers_is_503_within_seconds(
    writer: TestClient, database_url: str, tmp_path: Path, silent: Silent, method: str, path: str
) -> None:
    # a short connect timeout from the settings: the hung host is given up after it
    settings = Settings(
        database_url=database_url,
        artifacts_dir=tmp_path / "artifacts",
        api_keys=[API_KEY],
        job_workers_mode="thread",
        db_connect_timeout_s=2,
    )
    _outage(writer, settings, silent.port)
    body = {"name": "x", "kind": "cpu"} if method == "POST" else None
    started = time.monotonic()
    response = writer.request(method, path, json=body)
    elapsed = time.monotonic() - started
    assert response.status_code == 503, response.text
    assert "database unavailable" in response.json()["error"]["message"]
    assert elapsed < 8, f"{method} {path} took {elapsed:.1f} s"
    assert silent.held, "the request never reached the hung host"


def test_a_hung_database_at_start_fails_within_seconds(
    database_url: str, tmp_path: Path, silent: Silent
) -> None:
    settings = Settings(
        database_url=f"postgresql+psycopg://nobody@127.0.0.1:{silent.port}/none",
        artifacts_dir=tmp_path / "artifacts",
        job_workers_mode="thread",
        db_connect_timeout_s=2,
    )
    started = time.monotonic()
    with pytest.raises(OperationalError, match="timeout"), TestClient(create_app(settings)):
        pass
    assert time.monotonic() - started < 8


def test_a_statement_past_the_timeout_is_cancelled_and_503(database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("statement_timeout is PostgreSQL's")
    factory = session_factory(database_url, DbTimeouts(statement_s=0.5))
    with factory() as session:
        assert session.scalar(text("SELECT count(*) FROM devices")) == 0  # search_path kept
        with pytest.raises(OperationalError) as caught:
            session.execute(text("SELECT pg_sleep(5)"))
    answer = storage_error(caught.value)
    assert answer is not None and answer.status_code == 503
    assert b"did not answer in time" in answer.body


def test_not_ready_while_the_job_queue_does_not_answer(database_url: str, tmp_path: Path) -> None:
    queue = f"redis://:secret@127.0.0.1:{free_port()}/0"  # nothing listens: Redis is down
    settings = Settings(
        database_url=database_url,
        artifacts_dir=tmp_path / "artifacts",
        job_workers_mode="external",
        queue_url=queue,
    )
    with TestClient(create_app(settings)) as client:
        response = client.get("/readyz")
        assert response.status_code == 503, response.text
        message = response.json()["error"]["message"]
        assert message.startswith("job queue redis://:***@127.0.0.1:"), message
        assert "does not answer" in message and "secret" not in message
        assert client.get("/health").status_code == 200  # the database is fine


def test_not_ready_while_the_artifacts_folder_cannot_take_files(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    assert client.get("/readyz").status_code == 200
    # missing (removed under the running service)
    shutil.rmtree(settings.artifacts_dir)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert f"artifacts folder {settings.artifacts_dir} is missing" in response.text
    # full: less free space than the service needs (a real statvfs of its disk)
    settings.artifacts_dir.mkdir()
    settings.artifacts_min_free_mb = 1e12
    response = client.get("/readyz")
    assert response.status_code == 503
    assert f"artifacts folder {settings.artifacts_dir} is full" in response.text
    settings.artifacts_min_free_mb = 1
    assert client.get("/readyz").status_code == 200  # space returned: ready again


def test_not_ready_while_the_artifacts_folder_is_read_only(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    folder = read_only_folder(tmp_path)
    settings.artifacts_dir = folder
    response = client.get("/readyz")
    assert response.status_code == 503
    assert f"artifacts folder {folder} cannot be written" in response.json()["error"]["message"]
