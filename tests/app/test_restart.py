"""A job running when its server dies is retried after restart and ends once, never running.

Either mode: the job's worker process stops with its server and hands the job back, or the
server ran it in its own threads (thread mode) and its heartbeat stopped.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.db import get_engine, upgrade
from tests.conftest import API_KEY, BACKENDS, fresh_database, wait_for_job
from tests.processes import Server, edgeopt


@pytest.fixture(params=[(b, m) for b in BACKENDS for m in ("process", "thread")], ids=str)
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    backend, mode = request.param
    gen = fresh_database(backend, tmp_path)
    url = next(gen)
    yield {
        "EDGEOPT_DATABASE_URL": url,
        "EDGEOPT_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        "EDGEOPT_API_KEYS": API_KEY,
        "EDGEOPT_JOB_HEARTBEAT_S": "0.2",
        "EDGEOPT_JOB_STALE_AFTER_S": "1.5",
        "EDGEOPT_JOB_MAX_ATTEMPTS": "10",  # a busy machine may delay heartbeats that long
        "EDGEOPT_JOB_WORKERS_MODE": mode,
    }
    get_engine(url).dispose()
    next(gen, None)


def poll(url: str, until, timeout: float = 120) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = httpx.get(url, timeout=10).json()
        if until(body):
            return body
        time.sleep(0.1)
    raise AssertionError(f"{url} never reached the expected state: {body}")


def test_a_killed_servers_job_is_finished_after_restart_once(env: dict[str, str]) -> None:
    refused = edgeopt("serve", env=env)
    assert refused.returncode == 1
    assert "edgeopt db upgrade" in refused.stderr

    upgrade(env["EDGEOPT_DATABASE_URL"])
    headers = {"X-API-Key": API_KEY}
    job_body = {"kind": "import-reference", "params": {"spaces": ["nb201"]}}
    first = Server(env)
    try:
        job_id = httpx.post(f"{first.url}/jobs", json=job_body, headers=headers).json()["id"]
        poll(f"{first.url}/jobs/{job_id}", lambda j: j["progress"] > 0)
    finally:
        first.kill()

    second = Server(env)
    try:
        with httpx.Client(base_url=second.url, timeout=10) as api:
            job = wait_for_job(api, job_id)
        lines = [line["line"] for line in job["logs"]]
        # Every start after the first follows a hand-back or a reaping: at least one, and
        # more if a busy machine delayed a heartbeat past EDGEOPT_JOB_STALE_AFTER_S.
        starts = sum(line.startswith("started import-reference") for line in lines)
        retries = sum("handed back" in line or "queued again" in line for line in lines)
        assert starts >= 2 and retries == starts - 1, lines
        total = httpx.get(f"{second.url}/measurements", params={"limit": 1}).json()["total"]
        assert total == 27 * 15_625 + 1_996 + 1_739  # nothing lost, nothing twice
    finally:
        second.stop()
