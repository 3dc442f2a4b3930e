"""Probes: alive, ready, and a database that stops answering is 503, not 500."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.db import head_revision, session_factory
from app.settings import Settings


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
