"""Bulk measurement uploads (JSON and CSV) are all-or-nothing; listings filter and paginate."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.conftest import API_KEY

ARCH_A = "+".join(
    [
        "|nor_conv_3x3~0|",
        "|nor_conv_3x3~0|avg_pool_3x3~1|",
        "|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
    ]
)
ARCH_B = "+".join(
    [
        "|avg_pool_3x3~0|",
        "|nor_conv_1x1~0|skip_connect~1|",
        "|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
    ]
)
FBNET = "-".join(["k3_e6"] * 11 + ["skip"] * 11)


def row(arch: str = ARCH_A, **over: object) -> dict[str, object]:
    base = {
        "space": "nb201",
        "arch": arch,
        "policy": "fp32",
        "metric": "latency_ms",
        "value": 3.2,
        "repeats": 50,
        "dispersion": 0.04,
        "protocol": {"warmup": 10, "threads": 1},
    }
    return {**base, **over}


@pytest.fixture
def device_id(writer: TestClient) -> int:
    return writer.post("/devices", json={"name": "host-1t", "kind": "cpu"}).json()["id"]


def stored(client: TestClient, device_id: int) -> int:
    return client.get(f"/devices/{device_id}/measurements").json()["total"]


def test_json_upload_then_list(writer: TestClient, device_id: int) -> None:
    rows = [
        row(),
        row(ARCH_B, value=1.5),
        row(policy="INT8, fp32,fp32,fp32,int8", value=2.0),
        row(FBNET, space="fbnet", metric="energy_mj", value=7.0),
    ]
    response = writer.post(f"/devices/{device_id}/measurements", json={"measurements": rows})
    assert response.status_code == 201, response.text
    assert response.json() == {"device_id": device_id, "inserted": 4, "replaced": 0}

    listed = writer.get("/measurements", params={"device_id": device_id, "space": "nb201"}).json()
    assert listed["total"] == 3
    mixed = [m for m in listed["items"] if m["policy"] != "fp32"]
    assert mixed[0]["policy"] == "int8,fp32,fp32,fp32,int8"  # stored canonically
    assert listed["items"][0]["protocol"] == {"warmup": 10, "threads": 1}

    energy = writer.get("/measurements", params={"metric": "energy_mj"}).json()
    assert [m["arch"] for m in energy["items"]] == [FBNET]
    fast = writer.get("/measurements", params={"max_value": 2.0, "device_id": device_id}).json()
    assert {m["value"] for m in fast["items"]} == {1.5, 2.0}
    page = writer.get(f"/devices/{device_id}/measurements", params={"limit": 1, "offset": 3})
    assert page.json()["total"] == 4 and len(page.json()["items"]) == 1

    counts = writer.get(f"/devices/{device_id}").json()["measurements"]
    assert {(c["space"], c["metric"], c["count"]) for c in counts} >= {("fbnet", "energy_mj", 1)}


def test_csv_upload(writer: TestClient, device_id: int) -> None:
    csv_text = (
        "space,arch,policy,metric,value,repeats,dispersion,protocol\n"
        f'nb201,{ARCH_A},fp32,latency_ms,3.1,20,0.02,"{{""runs"": 20}}"\n'
        f"nb201,{ARCH_B},,latency_ms,1.2,,,\n"
    )
    response = writer.post(
        f"/devices/{device_id}/measurements", content=csv_text, headers={"content-type": "text/csv"}
    )
    assert response.status_code == 201, response.text
    items = writer.get(f"/devices/{device_id}/measurements").json()["items"]
    assert items[0]["protocol"] == {"runs": 20}
    assert items[1]["policy"] == "fp32" and items[1]["repeats"] is None


def test_one_bad_row_rejects_everything_and_names_row_and_field(
    writer: TestClient, device_id: int
) -> None:
    rows = [row(), row(ARCH_B), row(value=-1.0)]
    response = writer.post(f"/devices/{device_id}/measurements", json=rows)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["details"][0] == {
        "row": 3,
        "field": "value",
        "message": "Input should be greater than or equal to 0.000001",
    }
    assert "row 3" in error["message"]
    assert stored(writer, device_id) == 0

    bad_cases = [
        (row(arch="|nor_conv_3x3~0|+|bogus~0|none~1|+|none~0|none~1|none~2|"), "arch"),
        (row(space="darts"), "space"),
        (row(policy="int4"), "policy"),
        (row(policy="int8,fp32"), "policy"),  # NB201 has 5 units: 1 or 5 precisions
        (row(metric="power_w"), "metric"),
        ({k: v for k, v in row().items() if k != "value"}, "value"),
        (row(value="fast"), "value"),
    ]
    for bad, field in bad_cases:
        response = writer.post(f"/devices/{device_id}/measurements", json=[row(ARCH_B), bad])
        assert response.status_code == 422, bad
        detail = response.json()["error"]["details"][0]
        assert (detail["row"], detail["field"]) == (2, field)
    assert stored(writer, device_id) == 0


def test_bad_csv_names_the_row(writer: TestClient, device_id: int) -> None:
    csv_text = (
        f"space,arch,metric,value\nnb201,{ARCH_A},latency_ms,1.0\nnb201,{ARCH_B},latency_ms,abc\n"
    )
    response = writer.post(
        f"/devices/{device_id}/measurements", content=csv_text, headers={"content-type": "text/csv"}
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["row"] == 2
    wrong_header = writer.post(
        f"/devices/{device_id}/measurements",
        content="a,b\n1,2\n",
        headers={"content-type": "text/csv"},
    )
    assert wrong_header.status_code == 422
    assert stored(writer, device_id) == 0


def test_duplicates(writer: TestClient, device_id: int) -> None:
    url = f"/devices/{device_id}/measurements"
    twice = writer.post(url, json=[row(), row(value=9.0)])
    assert twice.status_code == 422
    assert "repeats" in twice.json()["error"]["message"]

    assert writer.post(url, json=[row()]).status_code == 201
    clash = writer.post(url, json=[row(ARCH_B), row(value=9.0)])
    assert clash.status_code == 409
    assert clash.json()["error"]["details"][0]["row"] == 2
    assert stored(writer, device_id) == 1  # ARCH_B was not stored either

    replaced = writer.post(url, params={"replace": "true"}, json=[row(ARCH_B), row(value=9.0)])
    assert replaced.json() == {"device_id": device_id, "inserted": 1, "replaced": 1}
    values = {m["arch"]: m["value"] for m in writer.get(url).json()["items"]}
    assert values == {ARCH_A: 9.0, ARCH_B: 3.2}


def test_oversize_uploads_are_413(settings: Settings) -> None:
    small = settings.model_copy(update={"max_request_bytes": 2000, "max_upload_rows": 3})
    with TestClient(create_app(small), headers={"X-API-Key": API_KEY}) as client:
        device_id = client.post("/devices", json={"name": "d", "kind": "cpu"}).json()["id"]
        url = f"/devices/{device_id}/measurements"

        rows = [row(value=1.0 + i) for i in range(4)]
        assert len(json.dumps(rows)) < 2000
        too_many = client.post(url, json=rows)
        assert too_many.status_code == 413
        assert "4 rows" in too_many.json()["error"]["message"]

        big = json.dumps([row(), {"x": "y" * 2000}])  # parsed, it would be a 422
        declared = client.post(
            url, content=big.encode(), headers={"content-type": "application/json"}
        )
        assert declared.status_code == 413
        assert declared.json()["error"]["code"] == "payload_too_large"

        def chunks():  # no content-length: the limit still applies while streaming
            yield big[:1500].encode()
            yield big[1500:].encode()

        streamed = client.post(url, content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413
        assert stored(client, device_id) == 0


def test_oversize_bodies_streamed_to_json_routes_are_413(settings: Settings) -> None:
    """Sent in chunks (no Content-Length), a body over the limit is found too large while
    it is read: 413 on routes whose body FastAPI parses too, not its 400 "error parsing"."""
    small = settings.model_copy(update={"max_request_bytes": 2000})
    with TestClient(create_app(small), headers={"X-API-Key": API_KEY}) as client:
        big = json.dumps({"name": "d", "kind": "cpu", "description": "y" * 3000}).encode()

        def chunks():
            yield big[:1500]
            yield big[1500:]

        for url in ("/devices", "/optimize", "/jobs"):
            response = client.post(
                url, content=chunks(), headers={"content-type": "application/json"}
            )
            assert response.status_code == 413, (url, response.text)
            assert response.json()["error"]["code"] == "payload_too_large"
        assert client.get("/devices").json()["total"] == 0


def test_unknown_device_and_unsupported_type(writer: TestClient) -> None:
    assert writer.post("/devices/999/measurements", json=[row()]).status_code == 404
    device = writer.post("/devices", json={"name": "d", "kind": "cpu"}).json()
    response = writer.post(
        f"/devices/{device['id']}/measurements",
        content=b"<xml/>",
        headers={"content-type": "application/xml"},
    )
    assert response.status_code == 415
    empty = writer.post(f"/devices/{device['id']}/measurements", json=[])
    assert empty.status_code == 422
