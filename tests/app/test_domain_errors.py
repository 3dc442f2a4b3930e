"""Services raise domain errors; the one handler turns each into its status and error body."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_unknown_things_are_404_with_the_services_message(client: TestClient) -> None:
    for url, message in [
        ("/api/charts/devices/999999", "no device with id 999999"),
        ("/api/charts/optimizations/999999", "no optimization with id 999999"),
        ("/devices/999999", "no device with id 999999"),
        ("/jobs/999999", "no job with id 999999"),
    ]:
        r = client.get(url)
        assert r.status_code == 404, url
        assert r.json()["error"]["message"] == message
