"""Writes need a key (the settings' bootstrap keys here); reads are open unless configured
otherwise. Stored keys, scopes and agent keys: tests/app/test_keys.py."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.keys import matches_any
from app.main import create_app
from app.settings import Settings
from tests.conftest import API_KEY

DEVICE = {"name": "d", "kind": "cpu"}


def test_writes_need_a_valid_key(client: TestClient) -> None:
    missing = client.post("/devices", json=DEVICE)
    assert missing.status_code == 401
    assert "X-API-Key" in missing.json()["error"]["message"]
    wrong = client.post("/devices", json=DEVICE, headers={"X-API-Key": API_KEY + "x"})
    assert wrong.status_code == 401
    assert client.get("/devices").json()["total"] == 0  # nothing was written

    ok = client.post("/devices", json=DEVICE, headers={"X-API-Key": API_KEY})
    assert ok.status_code == 201
    device_id = ok.json()["id"]
    for method, url in [
        ("patch", f"/devices/{device_id}"),
        ("delete", f"/devices/{device_id}"),
        ("post", f"/devices/{device_id}/measurements"),
        ("post", "/jobs"),
        ("post", "/jobs/1/cancel"),
    ]:
        assert client.request(method, url, json={}).status_code == 401, url


def test_reads_are_open_by_default(client: TestClient) -> None:
    for url in ("/devices", "/measurements", "/accuracy-records", "/jobs", "/health"):
        assert client.get(url).status_code == 200, url


def test_reads_can_require_a_key(settings: Settings) -> None:
    closed = settings.model_copy(update={"reads_require_key": True})
    with TestClient(create_app(closed)) as client:
        assert client.get("/devices").status_code == 401
        assert client.get("/devices", headers={"X-API-Key": API_KEY}).status_code == 200


def test_no_configured_keys_means_no_writes(settings: Settings) -> None:
    keyless = settings.model_copy(update={"api_keys": []})
    with TestClient(create_app(keyless)) as client:
        response = client.post("/devices", json=DEVICE, headers={"X-API-Key": ""})
        assert response.status_code == 401
        message = response.json()["error"]["message"]
        assert "edgeopt keys create" in message and "EDGEOPT_API_KEYS" in message
        assert (
            client.post("/devices", json=DEVICE, headers={"X-API-Key": API_KEY}).status_code == 401
        )


def test_keys_come_from_the_environment(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("EDGEOPT_API_KEYS", "alpha, beta")
    assert Settings().api_keys == ["alpha", "beta"]
    assert matches_any("beta", ["alpha", "beta"])
    assert not matches_any("bet", ["alpha", "beta"])
