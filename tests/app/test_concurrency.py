"""Many clients at once against a real server process: leases, results and uploads.

SQLite serialises every write (``BEGIN IMMEDIATE``, see ``app/db.py``), so there these tests
check that the serialised path gives the same answers; PostgreSQL runs writes side by side,
and there they are the test of the locking: a task leased to one agent at a time, each
result stored once, uploads all-or-nothing whatever they overlap with.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import onnx
import pytest
from sqlalchemy import func, select

from app.db import session_factory
from app.models import Architecture, Measurement
from app.settings import Settings
from devices.fingerprint import fingerprint
from search.spaces import NB201
from tests.conftest import API_KEY
from tests.processes import Server

AGENTS = 20
TASKS = 200
UPLOADS = 20


@pytest.fixture
def server(settings: Settings) -> Iterator[Server]:
    """``edgeopt serve`` on the test database; its log is read as it comes, so a busy server
    never blocks on a full pipe, and is kept to show a failure's traceback."""
    env = {
        "EDGEOPT_DATABASE_URL": settings.database_url,
        "EDGEOPT_ARTIFACTS_DIR": str(settings.artifacts_dir),
        "EDGEOPT_API_KEYS": API_KEY,
    }
    running = Server(env)
    try:
        yield running
    finally:
        running.stop()
        errors = [json.loads(line) for line in running.output if '"level": "error"' in line]
        for error in errors[:3]:  # shown by pytest when the test failed
            print(error["message"], error.get("traceback", "").strip().splitlines()[-3:])


def new_designs(n: int, skip: int = 0) -> list[str]:
    """``n`` NB201 designs that are not in the fingerprint."""
    taken = set(fingerprint("nb201"))
    return [d for d in NB201().enumerate()[skip:] if d not in taken][:n]


def start_agent(server: Server, device: str, name: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.app.lease_agent", server.url, device, API_KEY, name],
        env={**os.environ},
        cwd=Path(__file__).resolve().parents[2],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_twenty_agents_lease_each_task_once_and_store_each_result_once(server: Server) -> None:
    """20 agent processes register one new device at once, then lease and post its 200 tasks
    at once (one task per lease, as ``devices/agent.py`` does; leases outlast the test, so a
    task leased twice was handed out under a live lease)."""
    agents = [start_agent(server, "swarm-board", f"agent-{i:02d}") for i in range(AGENTS)]
    try:
        for proc in agents:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line == "ready\n", line + proc.stdout.read()
        api = httpx.Client(base_url=server.url, headers={"X-API-Key": API_KEY}, timeout=60)
        devices = api.get("/devices", params={"q": "swarm-board"}).json()
        assert devices["total"] == 1, devices  # registered once, by whichever agent came first
        device = devices["items"][0]["id"]
        queued = api.post(
            f"/devices/{device}/tasks",
            json={"space": "nb201", "designs": new_designs(TASKS - 10), "policies": ["fp32"]},
        ).json()
        assert queued == {"created": TASKS - 10, "existing": 0}  # + the 10 of the fingerprint

        for proc in agents:  # the starting gun
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        reports = []
        for proc in agents:
            out, _ = proc.communicate(timeout=120)
            assert proc.returncode == 0, out
            reports.append(json.loads(out.splitlines()[-1]))
    finally:
        for proc in agents:
            proc.kill()

    tasks = api.get(f"/devices/{device}/tasks", params={"limit": 1000}).json()["items"]
    measurements = api.get(f"/devices/{device}/measurements", params={"limit": 1000}).json()
    leases = Counter(t for r in reports for t in r["leased"])
    stored = Counter(int(t) for r in reports for t in r["stored"])
    acked_by = {int(t): r["name"] for r in reports for t in r["stored"]}
    stored_by = {m["id"]: m["protocol"]["agent"] for m in measurements["items"]}
    statuses = Counter[int]()
    for r in reports:
        statuses.update({int(code): n for code, n in r["statuses"].items()})
    figures = {
        "tasks done": sum(t["status"] == "done" for t in tasks),
        "tasks leased to several agents": sum(n > 1 for n in leases.values()),
        "results stored twice": sum(n > 1 for n in stored.values()),
        "results lost": TASKS - len(stored),
        "measurements": measurements["total"],
        "measurement ids": len({t["measurement_id"] for t in tasks}),
        "measurements not by the acknowledged agent": sum(
            stored_by.get(t["measurement_id"]) != acked_by.get(t["id"]) for t in tasks
        ),
        "answers 409": statuses.get(409, 0),
        "answers 5xx": sum(n for code, n in statuses.items() if code >= 500),
    }
    assert figures == {
        "tasks done": TASKS,
        "tasks leased to several agents": 0,
        "results stored twice": 0,
        "results lost": 0,
        "measurements": TASKS,
        "measurement ids": TASKS,
        "measurements not by the acknowledged agent": 0,
        "answers 409": 0,
        "answers 5xx": 0,
    }, [e for r in reports for e in r["errors"]][:5]
    assert sum(len(r["leased"]) > 0 for r in reports) > 1  # the work was shared out


def test_results_posted_at_once_for_one_task_store_one(server: Server) -> None:
    """Once a lease has expired anyone may post the task's result: of 10 agents posting at
    once, one stores its measurement, the others are told the task has its result (409) and
    store nothing; the winner posting again is acknowledged as a repeat."""
    api = httpx.Client(base_url=server.url, headers={"X-API-Key": API_KEY}, timeout=60)
    device = api.put("/agents/flaky-board", json={"kind": "cpu"}).json()["id"]
    lease = api.post(f"/devices/{device}/tasks/lease", json={"agent": "gone", "lease_s": 1})
    task = lease.json()[0]["id"]
    time.sleep(1.5)  # the lease has run out; nobody leased the task again
    names = [f"late-{i}" for i in range(10)]
    gate = threading.Barrier(len(names))
    answers: dict[str, httpx.Response] = {}

    def post(i: int) -> None:
        with httpx.Client(base_url=server.url, headers={"X-API-Key": API_KEY}, timeout=60) as c:
            gate.wait()
            body = {"agent": names[i], "median_ms": 1.0 + i}
            answers[names[i]] = c.post(f"/tasks/{task}/result", json=body)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(names))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    statuses = Counter(a.status_code for a in answers.values())
    assert statuses == {200: 1, 409: len(names) - 1}, statuses
    winner = next(n for n, a in answers.items() if a.status_code == 200)
    assert answers[winner].json()["duplicate"] is False
    for name, answer in answers.items():
        if name != winner:
            assert "already has its result" in answer.json()["error"]["message"], answer.text
    again = api.post(f"/tasks/{task}/result", json={"agent": winner, "median_ms": 99.0})
    assert again.json() == {**answers[winner].json(), "duplicate": True}
    stored = api.get(f"/devices/{device}/measurements").json()["items"]
    assert [m["value"] for m in stored] == [1.0 + names.index(winner)]


def test_the_same_designs_queued_at_once_are_queued_once(server: Server) -> None:
    """10 clients queueing the same 20 designs at once: each is answered 201 (it queued them,
    or found them queued) or 409 (it collided with one queueing them at that moment), never
    500, and each design is queued once."""
    api = httpx.Client(base_url=server.url, headers={"X-API-Key": API_KEY}, timeout=60)
    device = api.post("/devices", json={"name": "busy-board", "kind": "cpu"}).json()["id"]
    body = {"space": "nb201", "designs": new_designs(20), "policies": ["fp32"]}
    gate = threading.Barrier(10)
    answers: list[httpx.Response] = []

    def queue() -> None:
        with httpx.Client(base_url=server.url, headers={"X-API-Key": API_KEY}, timeout=60) as c:
            gate.wait()
            answers.append(c.post(f"/devices/{device}/tasks", json=body))

    threads = [threading.Thread(target=queue) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert {a.status_code for a in answers} <= {201, 409}, [a.text[:200] for a in answers]
    created = sum(a.json()["created"] for a in answers if a.status_code == 201)
    assert created == 20
    tasks = api.get(f"/devices/{device}/tasks", params={"limit": 100}).json()
    assert tasks["total"] == 20


def counts(settings: Settings) -> tuple[int, int]:
    with session_factory(settings.database_url)() as s:
        archs = s.scalar(select(func.count()).select_from(Architecture)) or 0
        rows = s.scalar(select(func.count()).select_from(Measurement)) or 0
    return archs, rows


def test_concurrent_uploads_store_exactly_what_they_answer(
    server: Server, settings: Settings
) -> None:
    """20 uploads at once to one device, each of 6 new designs, 4 of them shared with the
    next upload's: those of even index refuse to replace (so where one overlaps an upload
    stored before it, it stores nothing: 409), odd ones replace, and add the energy of a
    design registered before. Every answer is 201 or 409, and the rows added are exactly
    those the 201s report."""
    api = httpx.Client(base_url=server.url, headers={"X-API-Key": API_KEY}, timeout=120)
    device = api.post("/devices", json={"name": "shared-board", "kind": "cpu"}).json()["id"]
    # a design already registered (by another device's upload) and reused by every upload
    other = api.post("/devices", json={"name": "other-board", "kind": "cpu"}).json()["id"]
    known = new_designs(1)[0]
    row = {"space": "nb201", "arch": known, "metric": "latency_ms", "value": 1.0}
    assert api.post(f"/devices/{other}/measurements", json=[row]).status_code == 201
    pool = new_designs(2 * UPLOADS + 4, skip=100)
    uploads: list[list[dict[str, Any]]] = [
        [
            {"space": "nb201", "arch": arch, "metric": "latency_ms", "value": 100.0 * i + j + 1}
            for j, arch in enumerate(pool[2 * i : 2 * i + 6])
        ]
        + [{"space": "nb201", "arch": known, "metric": "energy_mj", "value": 100.0 * i + 50}]
        * (i % 2)
        for i in range(UPLOADS)
    ]
    before = counts(settings)

    gate = threading.Barrier(UPLOADS)
    answers: list[httpx.Response | None] = [None] * UPLOADS

    def upload(i: int) -> None:
        with httpx.Client(base_url=server.url, headers={"X-API-Key": API_KEY}, timeout=120) as c:
            gate.wait()
            answers[i] = c.post(
                f"/devices/{device}/measurements",
                params={"replace": str(i % 2 == 1).lower()},
                json=uploads[i],
            )

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(UPLOADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    after = counts(settings)

    done = [a for a in answers if a is not None]
    assert len(done) == UPLOADS
    statuses = Counter(a.status_code for a in done)
    assert set(statuses) <= {201, 409}, (statuses, [a.text[:200] for a in done][:3])
    won = [i for i, a in enumerate(done) if a.status_code == 201]
    for i, a in enumerate(done):
        if a.status_code == 409:
            assert i % 2 == 0 and "already stored" in a.json()["error"]["message"], a.text
        else:
            ack = a.json()
            assert ack["inserted"] + ack["replaced"] == len(uploads[i])
    new_archs = {r["arch"] for i in won for r in uploads[i]} - {known}
    assert after[0] - before[0] == len(new_archs)  # failed uploads registered nothing
    assert after[1] - before[1] == sum(done[i].json()["inserted"] for i in won)

    stored = api.get(f"/devices/{device}/measurements", params={"limit": 1000}).json()["items"]
    assert len(stored) == after[1] - before[1]
    offered: dict[tuple[str, str], set[float]] = {}
    for i in won:
        for r in uploads[i]:
            offered.setdefault((r["arch"], r["metric"]), set()).add(r["value"])
    # each stored value is one a successful upload sent for that design and metric
    assert {(m["arch"], m["metric"]) for m in stored} == set(offered)
    assert all(m["value"] in offered[(m["arch"], m["metric"])] for m in stored)
    print(f"uploads: {dict(statuses)}")


def test_first_exports_fetched_at_once_all_answer_the_model(server: Server) -> None:
    """12 clients at once fetch 4 models never exported before (2 designs, fp32 and int8),
    3 clients per model: torch's exporter runs one export at a time in a process, so every
    answer is 200 with a valid ONNX model, and a model asked for while it is being exported
    is exported once, the other clients waiting for its file."""
    api = httpx.Client(base_url=server.url, headers={"X-API-Key": API_KEY}, timeout=60)
    device = api.post("/devices", json={"name": "export-board", "kind": "cpu"}).json()["id"]
    body = {"space": "nb201", "designs": new_designs(2, skip=300), "policies": ["fp32", "int8"]}
    assert api.post(f"/devices/{device}/tasks", json=body).status_code == 201
    tasks = api.get(f"/devices/{device}/tasks", params={"limit": 100}).json()["items"]
    urls = [f"/tasks/{t['id']}/model.onnx" for t in tasks]
    assert len(urls) == 4
    clients = [urls[i % len(urls)] for i in range(3 * len(urls))]
    gate = threading.Barrier(len(clients))
    answers: list[httpx.Response | None] = [None] * len(clients)

    def fetch(i: int) -> None:
        with httpx.Client(base_url=server.url, timeout=300) as c:
            gate.wait()
            answers[i] = c.get(clients[i])

    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert [a.status_code if a else None for a in answers] == [200] * len(clients), [
        a.text[:300] for a in answers if a is not None and a.status_code != 200
    ]
    by_url: dict[str, set[bytes]] = {}
    for url, answer in zip(clients, answers, strict=True):
        assert answer is not None
        onnx.checker.check_model(onnx.load_from_string(answer.content))
        by_url.setdefault(url, set()).add(answer.content)
    assert all(len(models) == 1 for models in by_url.values())  # one file per model
    exports = [line for line in server.output if "exported nb201 design" in line]
    assert len(exports) == len(urls), exports
