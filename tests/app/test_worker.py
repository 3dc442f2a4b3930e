"""Crash safety with real processes: `edgeopt worker` processes share the queue, one killed
mid-job leaves its job to another; a server killed mid-upload leaves all rows or none."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, text

from app.db import get_engine, session_factory, upgrade
from app.models import Job, Predictor
from devices.reference import ReferenceTable, load_reference
from tests.app.conftest import seed_slice
from tests.conftest import API_KEY, BACKENDS, fresh_database, wait_for_job, wait_until
from tests.processes import Child, Server

HEADERS = {"X-API-Key": API_KEY}
# What importing the NB201 reference stores: 29 devices, 27 of them with all 15,625 designs.
NB201_ROWS, NB201_DEVICES = 27 * 15_625 + 1_996 + 1_739, 29


# The queue of each backend's tests: a SQLite file (the embedded setup) and, with PostgreSQL,
# the local Redis (workers on several machines); a database number of its own.
REDIS_QUEUE = os.environ.get("EDGEOPT_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


@pytest.fixture(params=BACKENDS)
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A migrated database; the API only queues jobs, workers are started by the test."""
    gen = fresh_database(request.param, tmp_path)
    url = next(gen)
    upgrade(url)
    sqlite_queue = f"sqlite:///{tmp_path / 'queue.db'}"
    yield {
        "EDGEOPT_DATABASE_URL": url,
        "EDGEOPT_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        "EDGEOPT_QUEUE_URL": sqlite_queue if request.param == "sqlite" else REDIS_QUEUE,
        "EDGEOPT_API_KEYS": API_KEY,
        "EDGEOPT_JOB_WORKERS_MODE": "external",
        "EDGEOPT_JOB_HEARTBEAT_S": "0.2",
        "EDGEOPT_JOB_STALE_AFTER_S": "3",
        "EDGEOPT_JOB_MAX_ATTEMPTS": "10",  # a busy machine may delay heartbeats that long
    }
    get_engine(url).dispose()
    next(gen, None)


class Worker(Child):
    """`edgeopt worker` in a child process, as an operator starts one on another machine."""

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__(["worker"], env)
        wait_until(lambda: bool(self.output) or self.proc.poll() is not None, 60, "worker up")
        assert self.proc.poll() is None, "".join(self.output)

    def stop(self, wait_s: float = 30) -> None:
        super().stop(wait_s)


def test_a_workers_start_line_hides_the_queue_password(tmp_path: Path) -> None:
    """Redis takes any password for a user without one, so the queue is reached and the
    start line printed; the password is not in it, nor anywhere in the worker's output."""
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    upgrade(url)
    queue = REDIS_QUEUE.replace("redis://", "redis://default:s3cret-pw@", 1)
    env = {
        "EDGEOPT_DATABASE_URL": url,
        "EDGEOPT_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        "EDGEOPT_QUEUE_URL": queue,
    }
    worker = Worker(env)
    worker.stop()
    out = "".join(worker.output)
    assert worker.proc.returncode == 0, out
    assert queue.replace("s3cret-pw", "***") in out
    assert "s3cret-pw" not in out
    get_engine(url).dispose()


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


def test_a_training_killed_mid_way_publishes_each_predictor_once(
    env: dict[str, str], nb201: ReferenceTable
) -> None:
    names = [d.column for d in nb201.devices[:12]]
    seed_slice(env["EDGEOPT_DATABASE_URL"], nb201, names, 400)
    server = Server(env)
    workers = [Worker(env), Worker(env)]
    try:
        with httpx.Client(base_url=server.url, timeout=10, headers=HEADERS) as api:
            body = {"spaces": ["nb201"], "min_rows": 100}
            job_id = api.post("/predictors/train", json=body).json()["id"]
            wait_until(
                lambda: api.get(f"/jobs/{job_id}").json()["progress"] > 0, 120, "training began"
            )
            owner = _owner(env, job_id)
            (dying,) = [w for w in workers if w.proc.pid == int(owner.split(":")[1])]
            dying.proc.kill()
            dying.proc.wait(10)
            job = wait_for_job(api, job_id)
            assert any("queued again" in line["line"] for line in job["logs"]), job["logs"]
        with session_factory(env["EDGEOPT_DATABASE_URL"])() as s:
            rows = s.scalars(select(Predictor)).all()
        scopes = [(p.target, p.device_id, p.dataset, p.policy) for p in rows]
        assert len(scopes) == len(set(scopes)) == job["result"]["count"]  # none twice
        assert sorted(p.id for p in rows) == sorted(job["result"]["predictors"])
        artifacts = Path(env["EDGEOPT_ARTIFACTS_DIR"])
        assert all((artifacts / p.artifact).exists() for p in rows)  # no row without its file
    finally:
        for worker in workers:
            worker.stop()
        server.stop()


def _owner(env: dict[str, str], job_id: int) -> str:
    with session_factory(env["EDGEOPT_DATABASE_URL"])() as s:
        owner = s.scalar(select(Job.owner).where(Job.id == job_id))
    assert owner is not None
    return owner


def _upload_csv(count: int) -> bytes:
    """``count`` measurements of distinct NB201 designs (two metrics, two policies each)."""
    lines = ["space,arch,policy,metric,value"]
    for i, arch in enumerate(load_reference("nb201").encodings):
        for policy in ("fp32", "int8"):
            for metric in ("latency_ms", "energy_mj"):
                lines.append(f"nb201,{arch},{policy},{metric},{1 + i % 97 / 10}")
    return ("\n".join(lines[: count + 1]) + "\n").encode()


def _writing(url: str) -> bool:
    """The database is in the middle of the upload's transaction."""
    if url.startswith("sqlite:///"):  # WAL mode: a big transaction's pages spill to the WAL
        wal = Path(url.removeprefix("sqlite:///") + "-wal")
        return wal.exists() and wal.stat().st_size > 4 * 1024 * 1024
    engine = get_engine(url)
    with engine.connect() as conn:
        active = conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                "AND state <> 'idle' AND query ILIKE 'INSERT INTO measurements%'"
            )
        )
        return bool(active.scalar())


def test_a_server_killed_during_an_upload_stored_all_of_it_or_nothing(
    env: dict[str, str],
) -> None:
    rows = 60_000
    body = _upload_csv(rows)
    url = env["EDGEOPT_DATABASE_URL"]
    server = Server(env)
    try:
        device = httpx.post(
            f"{server.url}/devices", json={"name": "big-upload", "kind": "cpu"}, headers=HEADERS
        ).json()["id"]
        done: list[httpx.Response | Exception] = []

        def upload() -> None:
            try:
                done.append(
                    httpx.post(
                        f"{server.url}/devices/{device}/measurements",
                        content=body,
                        headers={**HEADERS, "content-type": "text/csv"},
                        timeout=300,
                    )
                )
            except httpx.TransportError as exc:  # the server died mid-request
                done.append(exc)

        sender = threading.Thread(target=upload)
        sender.start()
        wait_until(lambda: _writing(url) or bool(done), 300, "the upload is being written")
        assert not done, f"the upload ended before the kill: {done}"
        server.kill()
        sender.join(30)
    finally:
        server.stop()

    assert isinstance(done[0], httpx.TransportError)
    again = Server(env)
    try:
        stored = httpx.get(f"{again.url}/devices/{device}/measurements").json()["total"]
        assert stored in (0, rows)  # killed mid-write: nothing (or, after its commit, all)
        retried = httpx.post(
            f"{again.url}/devices/{device}/measurements",
            content=body,
            headers={**HEADERS, "content-type": "text/csv"},
            params={"replace": "true"},
            timeout=300,
        )
        assert retried.status_code == 201, retried.text
        assert sum(retried.json()[k] for k in ("inserted", "replaced")) == rows
        stored = httpx.get(f"{again.url}/devices/{device}/measurements").json()["total"]
        assert stored == rows
    finally:
        again.stop()
