"""The agent as a second process against a real server: a queue survives kills and restarts."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from devices.agent import Journal
from tests.conftest import API_KEY
from tests.processes import Server, edgeopt

EXTRA = [
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|nor_conv_1x1~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|",
]


def agent(
    server: Server, journal: Path | None, *extra: str, home: Path | None = None
) -> subprocess.Popen[str]:
    """``edgeopt agent`` for device lab-pi; without ``journal``, the default one under
    ``home``/.edgeopt."""
    args = [
        "--server", server.url, "--device", "lab-pi", "--api-key", API_KEY,
        "--until-empty", "--round-size", "3", "--budget-s", "1", "--poll-s", "0.2", *extra,
    ]  # fmt: skip
    if journal is not None:
        args += ["--journal", str(journal)]
    return subprocess.Popen(
        [sys.executable, "-m", "app", "agent", *args],
        env={**os.environ, **({"HOME": str(home)} if home else {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def tasks(server: Server, device_id: int) -> list[dict]:
    r = httpx.get(f"{server.url}/devices/{device_id}/tasks", params={"limit": 1000}, timeout=10)
    return r.json()["items"]


def wait_until(condition, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError("condition not reached in time")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "EDGEOPT_DATABASE_URL": f"sqlite:///{tmp_path / 'agent.db'}",
        "EDGEOPT_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        "EDGEOPT_API_KEYS": API_KEY,
    }


def test_killed_agent_and_restarted_server_lose_and_duplicate_nothing(
    env: dict[str, str], tmp_path: Path
) -> None:
    assert edgeopt("db", "upgrade", env=env).returncode == 0
    server = Server(env)
    port = server.port
    journal = tmp_path / "journal.json"
    first = agent(server, journal)
    try:
        # the agent registers its device, whose fingerprint (10 designs) is queued first
        wait_until(
            lambda: httpx.get(f"{server.url}/devices", params={"q": "lab-pi"}).json()["total"] == 1
        )
        device = httpx.get(f"{server.url}/devices", params={"q": "lab-pi"}).json()["items"][0]
        assert device["specs"]["cores"] == os.cpu_count() and device["runtime"] == "onnxruntime"
        queued = httpx.post(
            f"{server.url}/devices/{device['id']}/tasks",
            json={"space": "nb201", "designs": EXTRA, "policies": ["fp32", "int8"]},
            headers={"X-API-Key": API_KEY},
        )
        assert queued.status_code == 201 and queued.json() == {"created": 4, "existing": 0}
        total = len(tasks(server, device["id"]))
        assert total == 14
        assert [t["priority"] for t in tasks(server, device["id"])[:10]] == [0] * 10

        # kill the agent mid-queue
        wait_until(lambda: sum(t["status"] == "done" for t in tasks(server, device["id"])) >= 3)
        first.kill()
        first.wait(10)
        done_before = sum(t["status"] == "done" for t in tasks(server, device["id"]))
        assert done_before < total

        # restart it, then crash the server under it and bring the server back on its port
        second = agent(server, journal)
        wait_until(
            lambda: (
                sum(t["status"] == "done" for t in tasks(server, device["id"])) >= done_before + 2
            )
        )
        server.kill()
        time.sleep(1.0)
        server = Server(env, port=port)
        out, _ = second.communicate(timeout=240)
        assert second.returncode == 0, out
        assert "retrying" in out  # it saw the server go away and kept going

        final = tasks(server, device["id"])
        assert all(t["status"] == "done" for t in final)
        measurements = httpx.get(
            f"{server.url}/devices/{device['id']}/measurements", params={"limit": 1000}
        ).json()
        assert measurements["total"] == total  # one per task: nothing lost, nothing twice
        ids = {t["measurement_id"] for t in final}
        assert len(ids) == total
        protocols = [m["protocol"] for m in measurements["items"]]
        assert all(p["runtime"] == "onnxruntime" and p["threads"] == 1 for p in protocols)
        assert {m["policy"] for m in measurements["items"]} == {"fp32", "int8"}
    finally:
        first.kill()
        server.stop()


def test_results_are_accepted_once_and_bad_requests_refused(writer) -> None:
    device = writer.put("/agents/bench-board", json={"kind": "cpu", "threads": 2}).json()
    assert device["threads"] == 2
    again = writer.put("/agents/bench-board", json={"kind": "cpu", "threads": 4}).json()
    assert again["id"] == device["id"] and again["threads"] == 4
    lease = writer.post(
        f"/devices/{device['id']}/tasks/lease", json={"agent": "a1", "lease_s": 60}
    ).json()
    assert len(lease) == 1 and lease[0]["priority"] == 0  # fingerprint first
    task = lease[0]["id"]
    # another agent may not take over a live lease
    other = writer.post(f"/tasks/{task}/result", json={"agent": "a2", "median_ms": 1.0})
    assert other.status_code == 409
    body = {"agent": "a1", "median_ms": 1.5, "repeats": 60, "dispersion": 0.01}
    first = writer.post(f"/tasks/{task}/result", json=body).json()
    repeat = writer.post(f"/tasks/{task}/result", json=body).json()
    assert first["duplicate"] is False and repeat == {**first, "duplicate": True}
    assert writer.get(f"/devices/{device['id']}/measurements").json()["total"] == 1
    bad = [
        writer.post(
            f"/devices/{device['id']}/tasks", json={"space": "nb201", "designs": ["|x~0|"]}
        ),
        writer.post(
            f"/devices/{device['id']}/tasks",
            json={"space": "nb201", "designs": [EXTRA[0]], "policies": ["fp16"]},
        ),
        writer.post(f"/tasks/{task}/result", json={"agent": "a1", "median_ms": -1}),
        writer.put("/agents/bad name", json={}),
        writer.post("/tasks/999/result", json=body),
    ]
    assert [r.status_code for r in bad] == [422, 422, 422, 422, 404]
    assert "fp16" in bad[1].text


AGENTS = 4


def test_agents_on_one_machine_each_take_their_own_journal(
    env: dict[str, str], tmp_path: Path
) -> None:
    """4 agents started at once with the default journal: each takes a journal and an agent
    identity of its own, and together they measure the fingerprint, each task once. A
    journal another running agent holds is refused with the way out; agents told to share
    one share its identity."""
    assert edgeopt("db", "upgrade", env=env).returncode == 0
    server = Server(env)
    try:
        agents = [agent(server, None, home=tmp_path) for _ in range(AGENTS)]
        outs = [a.communicate(timeout=300)[0] for a in agents]
        assert [a.returncode for a in agents] == [0] * AGENTS, outs
        names = [re.search(r"agent (\S+)$", o, re.MULTILINE) for o in outs]
        assert len({n.group(1) for n in names if n}) == AGENTS, outs
        journals = sorted(p.name for p in (tmp_path / ".edgeopt").glob("*.journal.json"))
        assert journals == ["agent-lab-pi.journal.json"] + [
            f"agent-lab-pi@{n}.journal.json" for n in range(2, AGENTS + 1)
        ]
        device = httpx.get(f"{server.url}/devices", params={"q": "lab-pi"}).json()["items"][0]
        done = tasks(server, device["id"])
        assert len(done) == 10 and all(t["status"] == "done" for t in done)
        stored = httpx.get(f"{server.url}/devices/{device['id']}/measurements").json()
        assert stored["total"] == 10  # each task measured and stored once

        # a journal held by a running agent: refused in one line, not a traceback
        held = Journal(tmp_path / "held.journal.json")
        second = agent(server, tmp_path / "held.journal.json")
        out, _ = second.communicate(timeout=60)
        assert second.returncode == 1 and "held by another running agent" in out, out
        assert "Traceback" not in out
        held.close()

        # told to share: one identity, and the journal stays whole
        queued = httpx.post(
            f"{server.url}/devices/{device['id']}/tasks",
            json={"space": "nb201", "designs": EXTRA, "policies": ["fp32"]},
            headers={"X-API-Key": API_KEY},
        )
        assert queued.status_code == 201
        shared = [agent(server, tmp_path / "shared.json", "--share-journal") for _ in range(2)]
        outs = [a.communicate(timeout=120)[0] for a in shared]
        assert [a.returncode for a in shared] == [0, 0], outs
        names = [re.search(r"agent (\S+)$", o, re.MULTILINE) for o in outs]
        assert len({n.group(1) for n in names if n}) == 1, outs
        assert json.loads((tmp_path / "shared.json").read_text()) == {}  # all acknowledged
        stored = httpx.get(f"{server.url}/devices/{device['id']}/measurements").json()
        assert stored["total"] == 12
    finally:
        server.stop()


def test_an_unreadable_journal_is_named_not_a_traceback(
    env: dict[str, str], tmp_path: Path
) -> None:
    assert edgeopt("db", "upgrade", env=env).returncode == 0
    server = Server(env)
    try:
        journal = tmp_path / "journal.json"
        journal.write_text('{"12": {"agent": "x", "median')  # torn by an older agent
        run = agent(server, journal)
        out, _ = run.communicate(timeout=60)
        assert run.returncode == 1 and "Traceback" not in out, out
        assert f"the agent journal {journal} is not a journal" in " ".join(out.split())
    finally:
        server.stop()
