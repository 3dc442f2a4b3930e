"""POST /optimize on a small registry: answers, infeasible goals, inline profiles, models."""

from __future__ import annotations

import itertools
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, make_url, select, update

from app.db import session_factory, unit_of_work
from app.main import create_app
from app.measure_service import register_host
from app.models import Device, Measurement
from app.reference_import import REFERENCE_SOURCE
from app.settings import Settings
from search.spaces import NB201
from tests.app.conftest import N
from tests.conftest import API_KEY, wait_for_job, wait_until
from tests.processes import Server


def test_best_design_within_budget_and_its_model(writer: TestClient, trained) -> None:
    budget = float(np.median(trained["gold_6226"]))
    r = writer.post(
        "/optimize",
        json={"device": "gold_6226", "goals": {"max_latency_ms": budget}, "alternatives": 2},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["feasible"] and body["candidates"] == 15625 - 341  # no degenerate cell
    design = body["design"]
    assert design["probabilities"]["latency"] >= 0.9 and design["latency_ms"]["value"] < budget
    assert design["accuracy"]["value"] <= 100
    assert len(body["alternatives"]) == 2
    assert all(a["accuracy"]["value"] <= design["accuracy"]["value"] for a in body["alternatives"])
    assert body["answered_by"]["latency_ms.fp32"]["method"] == "device-model"
    assert any("int8 left out" in n for n in body["notes"])  # no int8 accuracy anywhere
    front = body["pareto"]
    assert front and all(a["latency_ms"] < b["latency_ms"] for a, b in itertools.pairwise(front))
    assert writer.get(f"/optimizations/{body['id']}").json()["design"] == design
    model = writer.get(body["model_url"])
    assert model.status_code == 200
    sess = ort.InferenceSession(model.content, providers=["CPUExecutionProvider"])
    out = sess.run(None, {"input": np.zeros((1, 3, 32, 32), np.float32)})[0]
    assert out.shape == (1, 10)


def test_degenerate_cells_are_candidates_only_when_asked_for(writer: TestClient, trained) -> None:
    """The fastest answers on a reference device are disconnected cells (chance accuracy,
    near-zero latency on some runtimes): never offered unless the request asks for them."""
    codec = NB201()
    cells = codec.enumerate()
    dead = {c for c, x in zip(cells, codec.degenerate(cells), strict=True) if x}
    asked = {"device": "gold_6226", "goals": {"objective": "latency"}, "alternatives": 10}
    body = writer.post("/optimize", json=asked).json()
    shown = [body["design"], *body["alternatives"], *body["closest"], *body["pareto"]]
    assert body["candidates"] == 15625 - len(dead) and not {d["arch"] for d in shown} & dead
    everything = writer.post("/optimize", json={**asked, "include_degenerate": True}).json()
    assert everything["candidates"] == 15625


def test_predictions_faster_than_anything_measured_are_marked(
    writer: TestClient, trained, settings: Settings, nb201
) -> None:
    """With its fast designs' measurements gone, the device's fastest measured latency is
    its 70th percentile: front points and /predict items under half of it are extrapolations;
    an interval over a factor of 3 is uncertain wherever an interval is shown."""
    values = trained["gold_6226"]
    cut = float(np.percentile(values, 70))
    with unit_of_work(session_factory(settings.database_url)) as s:
        device_id = s.scalar(select(Device.id).where(Device.name == "gold_6226"))
        s.execute(
            delete(Measurement).where(Measurement.device_id == device_id, Measurement.value < cut)
        )
    half = 0.5 * float(values[values >= cut].min())
    budget = float(np.median(values))
    body = writer.post(
        "/optimize", json={"device": "gold_6226", "goals": {"max_latency_ms": budget}}
    ).json()
    front = body["pareto"]
    below = [p for p in front if p["latency_ms"] < half]
    assert below and all(p["extrapolated"] for p in below)
    assert not any(p["extrapolated"] for p in front if p["latency_ms"] >= half)
    assert any("extrapolations (extrapolated: true)" in n for n in body["notes"])
    for view in [body["design"], *body["alternatives"]]:
        lat = view["latency_ms"]
        assert view["extrapolated"] == (lat["value"] < half)
        assert view["uncertain"] == (lat["high"] > 3 * lat["low"])
    asked = [below[0]["arch"], nb201.encodings[int(np.argmax(values))]]  # the slowest measured
    predicted = writer.post(
        "/predict", json={"device": "gold_6226", "space": "nb201", "designs": asked}
    ).json()
    first, last = predicted["designs"]
    assert first["extrapolated"] and not last["extrapolated"]
    assert any("extrapolations" in n for n in predicted["notes"])


def test_an_optimization_is_computed_outside_the_write_lock(
    writer: TestClient, trained, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite one writer at a time: while /optimize searches, another writer gets the
    lock at once (the answer takes it only to be stored), and the answer is still stored."""
    url = make_url(settings.database_url)
    if url.get_backend_name() != "sqlite":
        pytest.skip("PostgreSQL has no database-wide write lock")
    import app.routers.optimize as route

    computed = route.answer_optimization
    took_the_lock: list[bool] = []

    def while_computing(*args, **kwargs):  # type: ignore[no-untyped-def]
        other = sqlite3.connect(url.database, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # "database is locked" at once if it is held
            other.execute("ROLLBACK")
            took_the_lock.append(True)
        finally:
            other.close()
        return computed(*args, **kwargs)

    monkeypatch.setattr(route, "answer_optimization", while_computing)
    r = writer.post("/optimize", json={"device": "gold_6226", "goals": {"max_latency_ms": 1.0}})
    assert r.status_code == 201, r.text
    assert took_the_lock == [True]
    assert writer.get(f"/optimizations/{r.json()['id']}").status_code == 200


def test_infeasible_goals_get_the_closest_designs(writer: TestClient, trained) -> None:
    r = writer.post("/optimize", json={"device": "gold_6226", "goals": {"max_latency_ms": 1e-4}})
    assert r.status_code == 201
    body = r.json()
    assert body["feasible"] is False and "no design meets the goals" in body["message"]
    assert len(body["closest"]) >= 3
    # an infeasible answer names no chosen design and offers no model to download
    assert body["design"] is None and body["model_url"] is None
    assert body["goals"]["max_latency_ms"] == 1e-4 and body["confidence"] == 0.9
    assert writer.get(f"/optimizations/{body['id']}/model.onnx").status_code == 409
    assert writer.post(f"/optimizations/{body['id']}/verify").status_code == 409


def test_an_accuracy_out_of_reach_is_named_with_the_best_within_reach(
    writer: TestClient, trained
) -> None:
    """Not the likeliest of hopeless designs (once the 10% all-none cell): the goal out of
    reach, the best accuracy within the budget and at any latency, and the most accurate
    designs within the budget."""
    budget = float(np.percentile(trained["gold_6226"], 20))
    goals = {"max_latency_ms": budget, "min_accuracy": 99.5}
    r = writer.post("/optimize", json={"device": "gold_6226", "goals": goals})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["feasible"] is False
    short = body["shortfalls"][0]
    assert short["goal"] == "min_accuracy" and short["target"] == 99.5
    assert short["others"] == ["max_latency_ms"] and not short["reachable_alone"]
    within, anywhere = short["best_with_others"], short["best_alone"]
    assert 50 < within <= anywhere < 99.5
    assert f"the best within {budget:.3g} ms is {within:.1f}%" in body["message"]
    assert f"the best at any latency is {anywhere:.1f}%" in body["message"]
    closest = body["closest"]
    assert len(closest) >= 3
    assert all(c["probabilities"]["latency"] >= 0.9 for c in closest)  # within the budget
    assert all(c["accuracy"]["low"] > 50 for c in closest)
    assert closest[0]["accuracy"]["value"] >= within - 1e-9  # the best within comes from it
    # taken as the new goal, the best within reach is met
    goals["min_accuracy"] = within - 1e-6
    again = writer.post("/optimize", json={"device": "gold_6226", "goals": goals}).json()
    assert again["feasible"] and again["shortfalls"] == []


def test_goals_met_alone_but_not_together_are_both_named(writer: TestClient, trained) -> None:
    fast = float(np.percentile(trained["gold_6226"], 5))
    accurate = writer.post("/optimize", json={"device": "gold_6226"}).json()["design"]
    goals = {"max_latency_ms": fast, "min_accuracy": accurate["accuracy"]["low"]}
    body = writer.post("/optimize", json={"device": "gold_6226", "goals": goals}).json()
    if body["feasible"]:
        pytest.skip("the most accurate design is also among the fastest in this slice")
    named = {s["goal"]: s for s in body["shortfalls"]}
    assert set(named) == {"min_accuracy", "max_latency_ms"}
    assert all(s["reachable_alone"] for s in named.values())
    assert named["min_accuracy"]["best_with_others"] < goals["min_accuracy"]
    assert named["max_latency_ms"]["best_with_others"] > fast
    assert "cannot be met with the other goals" in body["message"]
    assert all(c["probabilities"]["latency"] >= 0.9 for c in body["closest"][:1])


def test_inline_profile_uses_its_measurements(writer: TestClient, trained, nb201) -> None:
    shots = [
        {"arch": nb201.encodings[i], "latency_ms": float(trained["raspi4"][i])}
        for i in range(0, N, 40)
    ]
    r = writer.post(
        "/optimize",
        json={
            "profile": {"name": "my-board", "measurements": shots},
            "goals": {"max_latency_ms": float(np.percentile(trained["raspi4"], 30))},
            "method": "search",
        },
    )
    assert r.status_code == 201, r.text
    info = r.json()["answered_by"]["latency_ms.fp32"]
    assert info["method"] == "transfer" and info["shots"] == 10
    verify = writer.post(f"/optimizations/{r.json()['id']}/verify")
    assert verify.status_code == 409  # nowhere to measure an inline profile


@pytest.mark.parametrize("path", ["/optimize", "/optimize/front"])
def test_an_inline_profile_measuring_a_design_twice_is_refused_naming_it(
    writer: TestClient, trained, nb201, path: str
) -> None:
    shots = [
        {"arch": nb201.encodings[i], "latency_ms": float(trained["raspi4"][i])}
        for i in range(0, N, 40)
    ]
    twice = nb201.encodings[80]
    shots.append({"arch": f" {twice} ", "latency_ms": 3.0})  # another spelling of item 2
    body = {"profile": {"name": "my-board", "measurements": shots}, "method": "search"}
    if path.endswith("front"):
        body["budgets_ms"] = [1.0]
    r = writer.post(path, json=body)
    assert r.status_code == 422, r.text
    message = r.json()["error"]["message"]
    assert twice in message and "measured twice" in message and "items 2 and 10" in message


def test_agent_devices_are_verified_through_a_task(writer: TestClient, trained) -> None:
    writer.put("/agents/field-unit", json={"kind": "cpu"})
    device = writer.get("/devices", params={"q": "field-unit"}).json()["items"][0]
    # its fingerprint (queued at registration) is measured: give it three results
    leased = writer.post(
        f"/devices/{device['id']}/tasks/lease", json={"agent": "a", "max_tasks": 3}
    ).json()
    for k, task in enumerate(leased):  # 5-7 ms, whatever ids earlier tests used up
        writer.post(f"/tasks/{task['id']}/result", json={"agent": "a", "median_ms": 5.0 + k})
    body = writer.post("/optimize", json={"device": "field-unit", "goals": {"max_latency_ms": 9}})
    assert body.status_code == 201, body.text
    verify = writer.post(f"/optimizations/{body.json()['id']}/verify")
    verification = verify.json()
    assert "status" in verification, (verify.status_code, verify.text)
    assert verification["status"] == "queued" and verification["where"] == "agent"


def test_a_verification_over_budget_is_shown_as_a_miss(writer: TestClient, trained) -> None:
    """The agent measures the chosen design over the budget: the answer now reads as a miss
    (``verified``, the message first, the list of optimizations too), not "within budget"."""
    writer.put("/agents/field-unit", json={"kind": "cpu"})
    device = writer.get("/devices", params={"q": "field-unit"}).json()["items"][0]
    leased = writer.post(
        f"/devices/{device['id']}/tasks/lease", json={"agent": "a", "max_tasks": 3}
    ).json()
    for k, task in enumerate(leased):
        writer.post(f"/tasks/{task['id']}/result", json={"agent": "a", "median_ms": 5.0 + k})
    body = writer.post("/optimize", json={"device": "field-unit", "goals": {"max_latency_ms": 9}})
    assert body.status_code == 201, body.text
    answer = body.json()
    assert answer["verified"] is None
    assert writer.post(f"/optimizations/{answer['id']}/verify").json()["status"] == "queued"
    leased = writer.post(
        f"/devices/{device['id']}/tasks/lease", json={"agent": "a", "max_tasks": 50}
    ).json()
    (task,) = [t for t in leased if t["design"] == answer["design"]["arch"]]
    done = writer.post(f"/tasks/{task['id']}/result", json={"agent": "a", "median_ms": 9.4})
    assert done.status_code < 300, done.text
    shown = writer.get(f"/optimizations/{answer['id']}").json()
    assert shown["verified"]["meets_budget"] is False and shown["verified"]["measured_ms"] == 9.4
    assert shown["verified"]["by"] == "verification" and shown["verified"]["at"]
    assert shown["message"].startswith("missed the latency budget when verified: measured 9.400")
    listed = writer.get("/optimizations").json()["items"]
    mine = next(o for o in listed if o["id"] == answer["id"])
    assert mine["verified"]["meets_budget"] is False and mine["message"].startswith("missed")
    page = writer.get(f"/api/charts/optimizations/{answer['id']}").json()
    assert page["verified"]["meets_budget"] is False


def test_a_reference_device_is_not_verified_or_measured(
    writer: TestClient, trained, settings: Settings
) -> None:
    with unit_of_work(session_factory(settings.database_url)) as s:
        device_id = s.scalar(select(Device.id).where(Device.name == "gold_6226"))
        s.execute(
            update(Measurement)
            .where(Measurement.device_id == device_id)
            .values(source=REFERENCE_SOURCE)
        )
    body = writer.post("/optimize", json={"device": "gold_6226"}).json()
    refused = writer.post(f"/optimizations/{body['id']}/verify")
    assert refused.status_code == 409 and "imported reference" in refused.text
    again = writer.post("/optimize", json={"device": "gold_6226", "max_measurements": 10})
    assert again.status_code == 409 and "edgeopt agent" in again.text


@pytest.fixture
def quick(settings: Settings) -> Iterator[TestClient]:
    """A client whose host measurements take 1 s of timing each (not 20)."""
    app = create_app(settings.model_copy(update={"measure_budget_s": 1.0}))
    with TestClient(app, headers={"X-API-Key": API_KEY}) as c:
        yield c


def test_measure_and_refine_on_this_host(quick: TestClient, trained, settings: Settings) -> None:
    with unit_of_work(session_factory(settings.database_url)) as s:
        host = register_host(s, 1)
        name, host_id = host.name, host.id
    budget = 50.0
    started = quick.post(
        "/optimize",
        json={
            "device": name,
            "policies": ["fp32"],
            "goals": {"max_latency_ms": budget},
            "max_measurements": 6,
        },
    )
    assert started.status_code == 202, started.text
    job = wait_for_job(quick, started.json()["job_id"])
    assert job["result"]["measurements"] <= 6
    answer = quick.get(f"/optimizations/{job['result']['optimization_id']}").json()
    design = answer["design"]
    # the answer is a design measured on this host within the budget
    assert design["measured_latency_ms"] is not None and design["measured_latency_ms"] <= budget
    assert answer["verification"]["where"] == "host" and answer["verification"]["meets_budget"]
    assert answer["answered_by"]["latency_ms.fp32"]["method"] in ("proxy", "transfer")
    assert answer["shots"]["fp32"] == answer["measurements"] >= 3
    stored = quick.get("/measurements", params={"device_id": host_id, "limit": 100}).json()
    assert stored["total"] == answer["measurements"]


def test_measure_and_refine_through_an_agent(trained, settings: Settings, tmp_path) -> None:
    """The server and the device's agent as two processes, as deployed."""
    env = {
        "EDGEOPT_DATABASE_URL": settings.database_url,
        "EDGEOPT_ARTIFACTS_DIR": str(settings.artifacts_dir),
        "EDGEOPT_API_KEYS": API_KEY,
    }
    server = Server(env)
    args = [
        sys.executable, "-m", "app", "agent", "--server", server.url,
        "--device", "field-unit", "--api-key", API_KEY,
        "--journal", str(tmp_path / "journal.json"), "--round-size", "3",
        "--budget-s", "1", "--poll-s", "0.2",
    ]  # fmt: skip
    agent = subprocess.Popen(
        args,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        with httpx.Client(base_url=server.url, headers={"X-API-Key": API_KEY}, timeout=30) as api:
            wait_until(
                lambda: api.get("/devices", params={"q": "field-unit"}).json()["total"] == 1,
                60,
                "the agent registers its device",
            )
            started = api.post(
                "/optimize",
                json={
                    "device": "field-unit",
                    "policies": ["fp32"],
                    "goals": {"max_latency_ms": 500.0},
                    "max_measurements": 6,
                },
            )
            assert started.status_code == 202, started.text
            job = wait_for_job(api, started.json()["job_id"])
            answer = api.get(f"/optimizations/{job['result']['optimization_id']}").json()
    finally:
        agent.kill()
        server.stop()
    design = answer["design"]
    assert design["measured_latency_ms"] is not None and design["measured_latency_ms"] <= 500
    assert answer["verification"]["where"] == "agent" and answer["verification"]["meets_budget"]
    assert 3 <= answer["measurements"] <= 6


@pytest.mark.parametrize(
    ("request_body", "status", "needle"),
    [
        ({"device": "gold_6226", "method": "neural"}, 422, "learned optimizer"),
        ({"device": "gold_6226", "profile": {"measurements": []}}, 422, "exactly one"),
        ({}, 422, "exactly one"),
        ({"device": "nowhere"}, 404, "nowhere"),
        ({"device": "gold_6226", "policies": ["fp16"]}, 422, "fp16"),
        ({"device": "gold_6226", "goals": {"objective": "energy"}}, 422, "energy_mj"),
        ({"device": "gold_6226", "goals": {"max_latency_ms": -1}}, 422, "max_latency_ms"),
        ({"device": "gold_6226", "max_measurements": 3}, 422, "at least 6"),
        ({"profile": {"measurements": []}, "max_measurements": 10}, 422, "registered device"),
    ],
)
def test_bad_optimize_requests(writer: TestClient, trained, request_body, status, needle) -> None:
    r = writer.post("/optimize", json=request_body)
    assert r.status_code == status, r.text
    assert needle in r.text
    assert writer.get("/optimizations/999").status_code == 404
