"""A scratch registry, and a server process, for benchmarks that go through the API as a user
would."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from app.db import upgrade
from app.settings import Settings


def scratch_registry(workdir: Path, key: str) -> Settings:
    """An empty, migrated SQLite registry in ``workdir`` (emptied first); the app built on
    these settings runs the jobs it queues in its own threads, so no worker is started."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    url = f"sqlite:///{workdir / 'registry.db'}"
    upgrade(url)
    return Settings(
        database_url=url,
        artifacts_dir=workdir / "artifacts",
        api_keys=[key],
        job_workers_mode="thread",
    )


def wait(client: TestClient, job_id: int) -> dict:
    """The job once it ended; exits the benchmark when it did not succeed."""
    while True:
        job = client.get(f"/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled", "interrupted"):
            if job["status"] != "succeeded":
                raise SystemExit(f"job {job_id} {job['status']}: {job.get('error')}")
            return job
        time.sleep(1.0)


def free_port() -> int:
    """A port nothing listens on now, for a server process of the benchmark's own."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, server: subprocess.Popen[bytes], why: str, timeout_s: float = 120) -> None:
    """Returns once ``url``'s ``/readyz`` answers 200; exits the benchmark with ``why`` when
    the server stops first or ``timeout_s`` passes."""
    deadline = time.time() + timeout_s
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.time() > deadline or server.poll() is not None:
            raise SystemExit(f"the server did not become ready: {why}")
        time.sleep(0.5)
