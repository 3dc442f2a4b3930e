"""A job running when its server dies shows as interrupted after restart, never running."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.db import get_engine, upgrade
from tests.conftest import API_KEY, BACKENDS, fresh_database, wait_for_job
from tests.processes import Server, edgeopt


@pytest.fixture(params=BACKENDS)
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    gen = fresh_database(request.param, tmp_path)
    url = next(gen)
    yield {
        "EDGEOPT_DATABASE_URL": url,
        "EDGEOPT_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        "EDGEOPT_API_KEYS": API_KEY,
        "EDGEOPT_JOB_HEARTBEAT_S": "0.2",
        "EDGEOPT_JOB_STALE_AFTER_S": "1.5",
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


def test_killed_server_leaves_an_interrupted_job_and_a_rerun_completes(
    env: dict[str, str],
) -> None:
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
        job = poll(f"{second.url}/jobs/{job_id}", lambda j: j["status"] != "running", 30)
        assert job["status"] == "interrupted"
        assert "stopped" in job["error"]

        rerun = httpx.post(f"{second.url}/jobs", json=job_body, headers=headers).json()
        with httpx.Client(base_url=second.url, timeout=10) as api:
            wait_for_job(api, rerun["id"])
        total = httpx.get(f"{second.url}/measurements", params={"limit": 1}).json()["total"]
        assert total == 27 * 15_625 + 1_996 + 1_739  # nothing lost, nothing twice
    finally:
        second.stop()
