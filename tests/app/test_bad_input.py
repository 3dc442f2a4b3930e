"""Nothing a client can send gets a 500: odd numbers, odd characters, broken bodies."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_out_of_range_numbers_are_422(writer: TestClient) -> None:
    huge = str(10**30)
    for url in (
        f"/devices/{huge}",
        f"/jobs/{huge}",
        f"/devices?offset={huge}",
        f"/measurements?device_id={huge}",
        f"/devices?batch_size={huge}",
    ):
        response = writer.get(url)
        assert response.status_code == 422, url
        assert response.json()["error"]["code"] == "invalid_input"


def test_odd_characters_do_not_break_the_database(writer: TestClient) -> None:
    for params in ({"q": "a\x00b"}, {"runtime": "\U0010ffff"}, {"q": "%_\\"}):
        response = writer.get("/devices", params=params)
        assert response.status_code in (200, 422), params
    nul_name = writer.post("/devices", json={"name": "ok", "kind": "cpu", "hardware": "a\x00"})
    assert nul_name.status_code in (201, 422)


def test_broken_csv_is_422(writer: TestClient) -> None:
    device_id = writer.post("/devices", json={"name": "d", "kind": "cpu"}).json()["id"]
    for body in (b'space,arch,metric,value\n"nb201\r,x,latency_ms,1\n', b"\xff\xfe", b""):
        response = writer.post(
            f"/devices/{device_id}/measurements", content=body, headers={"content-type": "text/csv"}
        )
        assert response.status_code == 422, body
    assert writer.get(f"/devices/{device_id}/measurements").json()["total"] == 0
