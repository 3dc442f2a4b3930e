"""Operations: /metrics for Prometheus, request ids, and logs one JSON object per line."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.db import session_factory, unit_of_work
from app.main import create_app
from app.models import Job
from app.observability import setup_logging
from app.settings import Settings
from devices.fingerprint import fingerprint
from tests.conftest import API_KEY

GENERATED = re.compile(r"^[0-9a-f]{32}$")


def sample(client: TestClient, name: str, **labels: str) -> float:
    """One value of /metrics (0 when the series does not exist yet)."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


def log_lines(err: str) -> list[dict[str, Any]]:
    """The JSON objects among captured stderr lines."""
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def test_metrics_count_requests_by_route_template_and_status(writer: TestClient) -> None:
    requests = "edgeopt_http_requests_total"
    route = {"method": "GET", "route": "/devices/{device}", "status": "404"}
    before = sample(writer, requests, **route)
    latency_before = sample(
        writer, "edgeopt_http_request_duration_seconds_count", route=route["route"]
    )
    for device_id in (123, 456):  # two paths, one route template
        assert writer.get(f"/devices/{device_id}").status_code == 404
    writer.get("/no/such/path")

    assert sample(writer, requests, **route) == before + 2
    assert (
        sample(writer, "edgeopt_http_request_duration_seconds_count", route=route["route"])
        == latency_before + 2
    )
    assert sample(writer, requests, method="GET", route="<unmatched>", status="404") >= 1
    assert sample(writer, requests, method="GET", route="/metrics", status="200") >= 1


def test_metrics_count_designs_predicted(writer: TestClient, trained: dict[str, Any]) -> None:
    predicted = "edgeopt_predictions_total"
    before = {r: sample(writer, predicted, route=r) for r in ("/predict", "/optimize")}
    designs = fingerprint("nb201")[:3]
    answer = writer.post(
        "/predict", json={"device": "pixel3", "space": "nb201", "designs": designs}
    )
    assert answer.status_code == 200, answer.text
    assert sample(writer, predicted, route="/predict") == before["/predict"] + 3

    best = writer.post("/optimize", json={"device": "pixel3", "goals": {"max_latency_ms": 50}})
    assert best.status_code == 201, best.text
    candidates = best.json()["candidates"]  # every design x policy with a prediction
    assert candidates > 0
    assert sample(writer, predicted, route="/optimize") == before["/optimize"] + candidates


def test_metrics_read_jobs_and_queue_depth_from_the_database(
    client: TestClient, settings: Settings
) -> None:
    with unit_of_work(session_factory(settings.database_url)) as s:
        s.add_all([Job(kind="x", status="queued") for _ in range(2)])
        s.add(Job(kind="x", status="failed"))
    assert sample(client, "edgeopt_jobs", status="queued") == 2
    assert sample(client, "edgeopt_jobs", status="failed") == 1
    assert sample(client, "edgeopt_jobs", status="running") == 0
    assert sample(client, "edgeopt_job_queue_depth") == 2
    assert sample(client, "edgeopt_measurement_tasks", status="queued") == 0


def test_metrics_need_a_key_only_when_reads_do(settings: Settings) -> None:
    closed = settings.model_copy(update={"reads_require_key": True})
    with TestClient(create_app(closed)) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"X-API-Key": API_KEY}).status_code == 200


def test_a_request_id_is_echoed_when_sane_and_generated_otherwise(client: TestClient) -> None:
    given = client.get("/healthz", headers={"X-Request-ID": "trace-42.a_b"})
    assert given.headers["X-Request-ID"] == "trace-42.a_b"
    for bad in ("x" * 129, "has space", "semi;colon", ""):
        echoed = client.get("/healthz", headers={"X-Request-ID": bad}).headers["X-Request-ID"]
        assert GENERATED.match(echoed), bad
    fresh = client.get("/healthz").headers["X-Request-ID"]
    assert GENERATED.match(fresh) and fresh != client.get("/healthz").headers["X-Request-ID"]
    # error answers carry it too
    assert client.get("/devices/999", headers={"X-Request-ID": "r-404"}).headers[
        "X-Request-ID"
    ] == ("r-404")


def test_each_request_is_one_json_access_line(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    client.get("/devices/999", headers={"X-Request-ID": "req-json-1"})
    lines = [e for e in log_lines(capsys.readouterr().err) if e["request_id"] == "req-json-1"]
    assert len(lines) == 1
    line = lines[0]
    assert line["logger"] == "edgeopt.access" and line["level"] == "info"
    assert line["message"] == "GET /devices/999 404"
    assert (line["method"], line["path"], line["status"]) == ("GET", "/devices/999", 404)
    assert line["route"] == "/devices/{device}"
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$", line["time"])


def test_a_500_is_one_line_with_its_traceback(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_app(settings)

    @app.get("/boom")
    def boom() -> None:
        logging.getLogger("app.boom").warning("about to fail")
        raise RuntimeError("kaboom")

    # raise_server_exceptions stays on: the client would raise if the exception left the app,
    # as it would reach the server, which prints its own traceback
    with TestClient(app) as client:
        failures = "edgeopt_http_requests_total", {"route": "/boom", "status": "500"}
        before = sample(client, failures[0], **failures[1])
        capsys.readouterr()
        response = client.get("/boom", headers={"X-Request-ID": "req-boom"})
        assert sample(client, failures[0], **failures[1]) == before + 1
    assert response.status_code == 500
    assert response.headers["X-Request-ID"] == "req-boom"
    error = response.json()["error"]
    assert error["code"] == "internal_error" and "req-boom" in error["message"]

    err = capsys.readouterr().err
    assert sum("kaboom" in line for line in err.splitlines()) == 1  # one physical line
    lines = [e for e in log_lines(err) if e["request_id"] == "req-boom"]
    assert [e["message"] for e in lines] == [
        "about to fail",  # route code's own lines carry the request id too
        "GET /boom 500: unhandled RuntimeError: kaboom",
    ]
    failed = lines[1]
    assert failed["level"] == "error" and (failed["method"], failed["path"]) == ("GET", "/boom")
    assert "Traceback" in failed["traceback"] and "RuntimeError: kaboom" in failed["traceback"]


def test_text_logs_on_request(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    text = settings.model_copy(update={"log_format": "text"})
    try:
        with TestClient(create_app(text)) as client:
            capsys.readouterr()
            client.get("/healthz", headers={"X-Request-ID": "req-text"})
        err = capsys.readouterr().err
        assert re.search(r"INFO edgeopt\.access \[req-text\] GET /healthz 200$", err, re.M), err
    finally:
        setup_logging("json")
