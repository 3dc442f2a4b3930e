"""Nothing a client can send gets a 500: odd numbers, odd characters, broken bodies."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from fastapi.testclient import TestClient

from app.settings import Settings
from devices.reference import ReferenceTable
from tests.app.conftest import seed_slice


def test_out_of_range_numbers_are_422(writer: TestClient) -> None:
    huge = str(10**30)
    # a device in a path may be a name as well as an id: a number too big for an id is one
    named = writer.get(f"/devices/{huge}")
    assert named.status_code == 404 and f"no device named '{huge}'" in named.text
    for url in (
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


def test_absurd_or_mistyped_measurements_are_422_and_nothing_is_stored(
    writer: TestClient,
) -> None:
    device = writer.post("/devices", json={"name": "strict", "kind": "cpu"}).json()
    url = f"/devices/{device['id']}/measurements"
    cell = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|"
    good = {"space": "nb201", "arch": cell, "metric": "latency_ms", "value": 2.5}
    assert writer.post(url, json={"measurements": [good]}).status_code == 201
    for value in (1e308, 5e-324, "1.5", True, -1.0):
        bad = {**good, "arch": cell.replace("skip_connect", "avg_pool_3x3"), "value": value}
        response = writer.post(f"{url}?replace=true", json={"measurements": [good, bad]})
        assert response.status_code == 422, value
        assert "value" in response.text
    csv_body = f"space,arch,metric,value\nnb201,{cell},latency_ms,1e308\n"
    response = writer.post(url, content=csv_body, headers={"content-type": "text/csv"})
    assert response.status_code == 422
    stored = writer.get(url).json()
    assert stored["total"] == 1 and stored["items"][0]["value"] == 2.5
    # a CSV number is still a number
    csv_ok = f"space,arch,metric,value\nnb201,{cell},latency_ms,3.5\n"
    replaced = writer.post(
        f"{url}?replace=true", content=csv_ok, headers={"content-type": "text/csv"}
    )
    assert replaced.status_code == 201, replaced.text


def test_training_nothing_is_422(writer: TestClient) -> None:
    for body in ({"spaces": []}, {"targets": []}):
        response = writer.post("/predictors/train", json=body)
        assert response.status_code == 422, body
        assert writer.get("/jobs").json()["total"] == 0


def test_a_device_named_like_a_number_is_looked_up_not_crashed(writer: TestClient) -> None:
    cell = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|"
    for name in ("²", "9" * 120, "١٢"):  # a superscript, an overflow, Arabic-Indic digits
        response = writer.post(
            "/predict", json={"device": name, "space": "nb201", "designs": [cell]}
        )
        assert response.status_code == 404, name
        assert "no device named" in response.json()["error"]["message"]


def test_deeply_nested_or_huge_number_uploads_are_422(writer: TestClient) -> None:
    device = writer.post("/devices", json={"name": "nested", "kind": "cpu"}).json()
    url = f"/devices/{device['id']}/measurements"
    headers = {"content-type": "application/json"}
    deep = "[" * 100_000 + "]" * 100_000
    huge = '[{"space": "nb201", "arch": "x", "metric": "latency_ms", "value": ' + "9" * 5000 + "}]"
    for body in (deep, huge):
        response = writer.post(url, content=body, headers=headers)
        assert response.status_code == 422, response.text[:200]
        assert response.json()["error"]["code"] == "invalid_input"
    assert writer.get(url).json()["total"] == 0


def test_nan_and_infinity_are_refused_wherever_they_are(writer: TestClient) -> None:
    device = writer.post("/devices", json={"name": "nan", "kind": "cpu"}).json()
    url = f"/devices/{device['id']}/measurements"
    cell = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|"
    for constant in ("NaN", "Infinity", "-Infinity"):
        row = json.dumps({"space": "nb201", "arch": cell, "metric": "latency_ms", "value": 2.0})
        body = "[" + row[:-1] + ', "protocol": {"x": ' + constant + "}}]"
        response = writer.post(url, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422, constant
        assert f"{constant} at protocol.x" in response.json()["error"]["message"]
    csv = f'space,arch,metric,value,protocol\nnb201,{cell},latency_ms,2.0,"{{""x"": NaN}}"\n'
    response = writer.post(url, content=csv, headers={"content-type": "text/csv"})
    assert response.status_code == 422 and "NaN at protocol.x" in response.text, response.text
    assert writer.get(url).json()["total"] == 0
    goals = '{"device": "nan", "space": "nb201", "goals": {"weights": {"accuracy": NaN}}}'
    response = writer.post("/optimize", content=goals, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert "weights" in response.text


def test_free_form_json_is_finite_on_every_route(writer: TestClient) -> None:
    """Specs, protocols and job parameters hold any JSON, but JSON has no NaN or Infinity:
    refused with the field named, on SQLite (which would store them) as on PostgreSQL
    (which refuses them with the driver's text)."""
    headers = {"content-type": "application/json"}
    agent = writer.put("/agents/finite-board", json={"kind": "cpu"}).json()
    task = writer.post(f"/devices/{agent['id']}/tasks/lease", json={"agent": "a"}).json()[0]
    cases = [
        ("PUT", "/agents/finite-board", '{"specs": {"load": [1.0, NaN]}}', "NaN at specs.load[1]"),
        ("POST", "/devices", '{"name": "inf", "kind": "cpu", "specs": {"tdp_w": Infinity}}',
         "Infinity at specs.tdp_w"),
        ("PATCH", f"/devices/{agent['id']}", '{"specs": {"x": {"y": -Infinity}}}',
         "-Infinity at specs.x.y"),
        ("POST", f"/tasks/{task['id']}/result",
         '{"agent": "a", "median_ms": 1.0, "protocol": {"noise": NaN}}', "NaN at protocol.noise"),
        ("POST", "/jobs", '{"kind": "import-reference", "params": {"x": NaN}}', "NaN at params.x"),
        ("POST", "/optimize", '{"space": "nb201", "profile": {"specs": {"x": NaN}}}',
         "profile.specs: Value error, NaN at specs.x"),
    ]  # fmt: skip
    for method, url, body, needle in cases:
        response = writer.request(method, url, content=body, headers=headers)
        assert response.status_code == 422, (url, response.text)
        assert needle in response.json()["error"]["message"], (url, response.text)
    assert writer.get(f"/devices/{agent['id']}").json()["specs"] == agent["specs"]
    assert writer.get("/devices", params={"q": "inf"}).json()["total"] == 0
    tasks = writer.get(f"/devices/{agent['id']}/tasks").json()["items"]
    assert next(t for t in tasks if t["id"] == task["id"])["status"] == "leased"


def test_a_host_measurement_needs_positive_thread_counts(writer: TestClient) -> None:
    for threads in ([-1], [0], [1, -2]):
        body = {"kind": "measure-host", "params": {"threads": threads}}
        response = writer.post("/jobs", json=body)
        assert response.status_code == 422, (threads, response.text)
        assert "threads" in response.json()["error"]["message"], response.text


def test_a_study_too_long_for_one_request_is_422(writer: TestClient) -> None:
    writer.post("/devices", json={"name": "studied", "kind": "cpu"})
    for study in ({"name": "s", "trials": 100_000}, {"name": "s", "seed": 10**30}):
        body = {"device": "studied", "space": "nb201", "study": study}
        response = writer.post("/optimize", json=body)
        assert response.status_code == 422, study
        assert "study" in response.text


# Found while fuzzing the API against its schema (tests/app/test_fuzz.py).


def test_every_moment_is_answered_with_its_utc_offset(writer: TestClient) -> None:
    """RFC 3339, as the schema's date-time says, on SQLite too (it stores naive times)."""
    device = writer.post("/devices", json={"name": "dated", "kind": "cpu"}).json()
    listed = writer.get("/devices").json()["items"][0]
    for moment in (device["created_at"], listed["created_at"], listed["updated_at"]):
        assert datetime.fromisoformat(moment).utcoffset() == timedelta(0), moment


def test_a_body_that_cannot_be_parsed_is_400_in_the_error_shape(writer: TestClient) -> None:
    """JSON that is not UTF-8 (malformed JSON is a 422, with the field named)."""
    response = writer.post(
        "/devices", content=b"\x80", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"
    # the router's own answers too: no path, no such method
    assert writer.get("/no-such-path").json()["error"]["status"] == 404
    assert writer.put("/healthz").json()["error"]["status"] == 405


def test_a_result_with_absurd_repeats_is_422(writer: TestClient) -> None:
    """Not a database integer overflow (500): bounded like an upload's repeats."""
    device = writer.put("/agents/counted", json={}).json()
    task = writer.post(f"/devices/{device['id']}/tasks/lease", json={"agent": "a"}).json()[0]
    result = {"agent": "a", "median_ms": 2.0, "repeats": 10**30}
    response = writer.post(f"/tasks/{task['id']}/result", json=result)
    assert response.status_code == 422, response.text
    assert "repeats" in response.text


def test_the_rank_agreement_of_a_lone_device_names_no_proxy(
    settings: Settings, writer: TestClient, nb201: ReferenceTable
) -> None:
    seed_slice(settings.database_url, nb201, ["pixel3"], 20)
    response = writer.get("/api/charts/agreement/nb201")
    assert response.status_code == 200, response.text
    assert [p["proxy"] for p in response.json()["proxies"]] == [None]
