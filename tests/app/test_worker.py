"""Crash safety with real processes: `edgeopt worker` processes share the queue, one killed
mid-job leaves its job to another; a server killed mid-upload leaves all rows or none."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.db import get_engine, upgrade
from tests.conftest import API_KEY, BACKENDS, fresh_database, wait_for_job, wait_until
from tests.processes import Server

HEADERS = {"X-API-Key": API_KEY}
# What importing the NB201 reference stores: 29 devices, 27 of them with all 15,625 designs.
NB201_ROWS, NB201_DEVICES = 27 * 15_625 + 1_996 + 1_739, 29


@pytest.fixture(params=BACKENDS)
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A migrated database; the API only queues jobs, workers are started by the test."""
    gen = fresh_database(request.param, tmp_path)
    url = next(gen)
    upgrade(url)
    yield {
        "EDGEOPT_DATABASE_URL": url,
        "EDGEOPT_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        "EDGEOPT_QUEUE_URL": f"sqlite:///{tmp_path / 'queue.db'}",
        "EDGEOPT_API_KEYS": API_KEY,
        "EDGEOPT_JOB_WORKERS_MODE": "external",
        "EDGEOPT_JOB_HEARTBEAT_S": "0.2",
        "EDGEOPT_JOB_STALE_AFTER_S": "1.5",
    }
    get_engine(url).dispose()
    next(gen, None)


class Worker:
    """`edgeopt worker` in a child process, as an operator starts one on another machine."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app", "worker"],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        wait_until(lambda: bool(self.output) or self.proc.poll() is not None, 60, "worker up")
        assert self.proc.poll() is None, "".join(self.output)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def test_a_killed_workers_job_is_finished_by_another_once(env: dict[str, str]) -> None:
    server = Server(env)
    workers = [Worker(env), Worker(env)]
    try:
        with httpx.Client(base_url=server.url, timeout=10, headers=HEADERS) as api:
            body = {"kind": "import-reference", "params": {"spaces": ["nb201"]}}
            job_id = api.post("/jobs", json=body).json()["id"]

            def running() -> bool:
                job = api.get(f"/jobs/{job_id}").json()
                return job["status"] == "running" and job["progress"] > 0

            wait_until(running, 120, "a worker started the import")
            owner = _owner(env, job_id)
            pid = int(owner.split(":")[1])
            (dying,) = [w for w in workers if w.proc.pid == pid]
            dying.proc.kill()  # SIGKILL: no hand-back, its heartbeat just stops
            dying.proc.wait(10)

            job = wait_for_job(api, job_id)
            lines = [line["line"] for line in job["logs"]]
            assert any("queued again" in line for line in lines), lines
            assert any(line.startswith("attempt 2 started by") for line in lines), lines
            assert _owner(env, job_id) != owner
            assert api.get("/measurements", params={"limit": 1}).json()["total"] == NB201_ROWS
            devices = api.get("/devices", params={"q": "nb201.", "limit": 100}).json()
            assert devices["total"] == NB201_DEVICES
    finally:
        for worker in workers:
            worker.stop()
        server.stop()


def _owner(env: dict[str, str], job_id: int) -> str:
    from sqlalchemy import select

    from app.db import session_factory
    from app.models import Job

    with session_factory(env["EDGEOPT_DATABASE_URL"])() as s:
        owner = s.scalar(select(Job.owner).where(Job.id == job_id))
    assert owner is not None
    return owner
