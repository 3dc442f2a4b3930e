"""The device registry over REST: create, read, update, delete, list and filter."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

PI = {
    "name": "raspi4-ort-2t",
    "kind": "cpu",
    "hardware": "Raspberry Pi 4",
    "specs": {"cores": 4, "clock_mhz": 1500, "memory_gb": 4, "board_revision": "1.4"},
    "runtime": "onnxruntime",
    "runtime_version": "1.18",
    "precision": "int8",
    "batch_size": 1,
    "threads": 2,
    "source": "lab bench",
}


def test_create_read_update_delete(writer: TestClient) -> None:
    created = writer.post("/devices", json=PI)
    assert created.status_code == 201, created.text
    device = created.json()
    assert device["specs"]["cores"] == 4
    assert device["specs"]["board_revision"] == "1.4"  # unknown spec fields are kept

    got = writer.get(f"/devices/{device['id']}").json()
    assert got["name"] == PI["name"]
    assert got["measurements"] == []

    patched = writer.patch(f"/devices/{device['id']}", json={"threads": 4, "name": "pi-4t"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["threads"] == 4
    assert patched.json()["runtime"] == "onnxruntime"  # untouched fields stay

    assert writer.delete(f"/devices/{device['id']}").status_code == 204
    missing = writer.get(f"/devices/{device['id']}")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


def test_list_filters_and_paginates(writer: TestClient) -> None:
    for i in range(5):
        kind = "gpu" if i % 2 else "cpu"
        body = {"name": f"dev-{i}", "kind": kind, "batch_size": 1 + i % 2}
        assert writer.post("/devices", json=body).status_code == 201
    gpus = writer.get("/devices", params={"kind": "gpu"}).json()
    assert gpus["total"] == 2
    assert {d["kind"] for d in gpus["items"]} == {"gpu"}

    page = writer.get("/devices", params={"limit": 2, "offset": 2}).json()
    assert page["total"] == 5
    assert [d["name"] for d in page["items"]] == ["dev-2", "dev-3"]

    by_name = writer.get("/devices", params={"q": "v-4"}).json()
    assert [d["name"] for d in by_name["items"]] == ["dev-4"]
    assert writer.get("/devices", params={"batch_size": 2}).json()["total"] == 2


def test_duplicate_name_is_409_and_keeps_the_first(writer: TestClient) -> None:
    first = writer.post("/devices", json=PI).json()
    again = writer.post("/devices", json={**PI, "threads": 8})
    assert again.status_code == 409
    assert PI["name"] in again.json()["error"]["message"]
    assert writer.get(f"/devices/{first['id']}").json()["threads"] == 2

    other = writer.post("/devices", json={**PI, "name": "other"}).json()
    rename = writer.patch(f"/devices/{other['id']}", json={"name": PI["name"]})
    assert rename.status_code == 409


def test_invalid_profile_names_the_field(writer: TestClient) -> None:
    bad = writer.post("/devices", json={"name": "x", "kind": "toaster"})
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["field"] == "kind"

    cases = {
        "batch_size": {"name": "x", "kind": "cpu", "batch_size": 0},
        "name": {"name": "bad name/with slash", "kind": "cpu"},
        "specs.cores": {"name": "x", "kind": "cpu", "specs": {"cores": -1}},
        "colour": {"name": "x", "kind": "cpu", "colour": "red"},
    }
    for field, body in cases.items():
        response = writer.post("/devices", json=body)
        assert response.status_code == 422, field
        assert field in [d["field"] for d in response.json()["error"]["details"]]
    assert writer.get("/devices").json()["total"] == 0


def test_patch_cannot_null_required_fields(writer: TestClient) -> None:
    device = writer.post("/devices", json=PI).json()
    response = writer.patch(f"/devices/{device['id']}", json={"kind": None})
    assert response.status_code == 422
    assert writer.get(f"/devices/{device['id']}").json()["kind"] == "cpu"


def test_malformed_json_is_422_not_500(writer: TestClient) -> None:
    response = writer.post(
        "/devices", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    unknown = writer.get("/devices/not-a-number")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["message"] == "no device named 'not-a-number'"


CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|"


@pytest.mark.parametrize("by", ["name", "id"])
def test_every_path_that_names_a_device_takes_its_name_or_its_id(
    writer: TestClient, by: str
) -> None:
    device = writer.put("/agents/bench-pi", json={"kind": "cpu"}).json()
    ref = device[by]
    assert writer.get(f"/devices/{ref}").json()["id"] == device["id"]
    patched = writer.patch(f"/devices/{ref}", json={"threads": 2})
    assert patched.status_code == 200 and patched.json()["threads"] == 2
    row = {"space": "nb201", "arch": CELL, "metric": "latency_ms", "value": 2.0}
    upload = writer.post(f"/devices/{ref}/measurements", json={"measurements": [row]})
    assert upload.status_code == 201 and upload.json()["device_id"] == device["id"]
    measured = writer.get(f"/devices/{ref}/measurements").json()
    assert [m["device_id"] for m in measured["items"]] == [device["id"]]
    # no other device to transfer from: the device was found, the suggestion is a 409
    assert writer.get(f"/devices/{ref}/next-measurements?space=nb201").status_code == 409
    queued = writer.post(f"/devices/{ref}/tasks", json={"space": "nb201", "designs": [CELL]})
    assert queued.status_code == 201, queued.text
    tasks = writer.get(f"/devices/{ref}/tasks").json()
    assert tasks["total"] >= 1 and {t["device_id"] for t in tasks["items"]} == {device["id"]}
    leased = writer.post(f"/devices/{ref}/tasks/lease", json={"agent": "a"})
    assert leased.status_code == 200 and leased.json()[0]["device_id"] == device["id"]
    chart = writer.get(f"/api/charts/devices/{ref}")
    assert chart.status_code == 200 and chart.json()["device"]["id"] == device["id"]
    assert writer.get(f"/ui/devices/{ref}").status_code == 200
    assert writer.delete(f"/devices/{ref}").status_code == 204
    assert writer.get(f"/devices/{device['id']}").status_code == 404


def test_no_route_takes_a_device_by_id_alone(writer: TestClient) -> None:
    """A path parameter naming a device is the name-or-id one, in every route."""
    paths = writer.get("/openapi.json").json()["paths"]
    device_paths = [p for p in paths if "/devices/{" in p]
    assert device_paths and all("/devices/{device}" in p for p in device_paths)
    for path in device_paths:
        for operation in paths[path].values():
            (param,) = [p for p in operation["parameters"] if p["in"] == "path"]
            assert param["schema"]["type"] == "string"
