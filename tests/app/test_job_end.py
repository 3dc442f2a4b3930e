"""Exactly once at the end of a job: a job whose answer is one final row (a learned
optimizer, a measure-and-refine optimization) stores it with its end in one transaction, and
a retried job reuses the row its job stored instead of storing a second version."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db import ConflictError, session_factory, unit_of_work
from app.jobs import (
    JOB_KINDS,
    JobContext,
    JobStopped,
    claim_job,
    create_job,
    mark_stale_jobs,
)
from app.models import Job, LearnedOptimizer, Optimization
from app.refine_service import _store_refined
from app.settings import Settings
from devices.reference import ReferenceTable
from tests.app.conftest import seed_slice
from tests.app.test_worker import HEADERS, Worker, env  # noqa: F401  (env: a fixture)
from tests.conftest import wait_for_job, wait_until
from tests.processes import Child, Server, edgeopt

SMALL = {"synthetic": 100, "epochs": 2}  # a quick model: these tests count rows, not quality
HOOK = str(Path(__file__).parent / "crash_hook")


def _job(settings: Settings, job_id: int) -> Job:
    with session_factory(settings.database_url)() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job


def _optimizers(url: str) -> list[LearnedOptimizer]:
    with session_factory(url)() as s:
        return list(s.scalars(select(LearnedOptimizer)).all())


def _retry(writer: TestClient, factory: sessionmaker[Session], job_id: int) -> dict[str, Any]:
    """Queue the stale job again, as the reaper does, and wait for the service's worker."""
    time.sleep(0.3)
    assert mark_stale_jobs(factory, stale_after_s=0.1) == 1
    writer.app.state.runner.reap()  # type: ignore[attr-defined]  # sends it now
    return wait_for_job(writer, job_id)


def test_a_late_attempt_and_a_retry_store_one_learned_optimizer(
    writer: TestClient, settings: Settings, trained: dict[str, np.ndarray]
) -> None:
    factory = session_factory(settings.database_url)
    learned = settings.artifacts_dir / "learned"
    job_id = create_job(factory, "train-optimizer", SMALL)
    late = claim_job(factory, job_id, owner="a-worker-thought-dead")
    assert late is not None
    job = _retry(writer, factory, job_id)  # attempt 2 runs it through
    (row,) = _optimizers(settings.database_url)
    assert job["result"] == {
        "optimizer_id": row.id,
        "version": 1,
        "artifact": row.artifact,
    }

    # The first attempt was only slow: its progress never reached the database (a huge
    # interval), so it reaches its final write, where its claim is found gone.
    ctx = JobContext(factory, job_id, None, 1e12, settings.artifacts_dir, late)
    with pytest.raises(JobStopped):
        JOB_KINDS["train-optimizer"].fn(ctx, late.params)
    assert [r.id for r in _optimizers(settings.database_url)] == [row.id]
    assert sorted(p.name for p in learned.glob("*.pt")) == [Path(row.artifact).name]

    # A worker of an earlier version wrote the row in its own transaction and died before
    # the job's end: the job is still running under it. Its retry reuses the row.
    with unit_of_work(factory) as s:
        dead = {"status": "running", "result": None, "owner": "an-earlier-worker"}
        s.execute(update(Job).where(Job.id == job_id).values(**dead))
    job = _retry(writer, factory, job_id)
    assert _job(settings, job_id).attempts == 3
    assert job["result"]["optimizer_id"] == row.id
    assert [r.id for r in _optimizers(settings.database_url)] == [row.id]


def _refined(job_id: int) -> Optimization:
    return Optimization(
        device_name="host-1",
        space="nb201",
        method="search",
        feasible=True,
        request={},
        result={"measurements": 6},
        elapsed_s=1.0,
        job_id=job_id,
    )


def test_a_retried_refinement_reuses_the_optimization_its_job_stored(settings: Settings) -> None:
    factory = session_factory(settings.database_url)
    job_id = create_job(factory, "optimize-refine", {"request": {"device": "host-1"}})
    with unit_of_work(factory) as s:  # what an attempt that died after its final write left
        first = _refined(job_id)
        s.add(first)
        s.flush()
        first_id = first.id
    with pytest.raises(ConflictError), unit_of_work(factory) as s:
        s.add(_refined(job_id))  # the database refuses a second answer for one job
    claim = claim_job(factory, job_id, owner="the-retry")
    assert claim is not None
    ctx = JobContext(factory, job_id, None, 0, settings.artifacts_dir, claim)
    result = ctx.finish(lambda s: _store_refined(s, _refined(job_id)))
    assert result == {"optimization_id": first_id, "measurements": 6, "feasible": True}
    job = _job(settings, job_id)
    assert (job.status, job.result, job.progress) == ("succeeded", result, 1.0)
    with factory() as s:
        assert s.scalars(select(Optimization.id)).all() == [first_id]
    with pytest.raises(JobStopped):  # the job has ended: no attempt writes its answer again
        ctx.finish(lambda s: _store_refined(s, _refined(job_id)))


def test_a_worker_killed_in_its_final_write_leaves_one_learned_optimizer(
    env: dict[str, str],  # noqa: F811
    nb201: ReferenceTable,
    tmp_path: Path,
) -> None:
    """Both workers SIGKILL themselves right after flushing a new learned optimizer row,
    before its commit (the crash hook), the first one to get there only."""
    url = env["EDGEOPT_DATABASE_URL"]
    seed_slice(url, nb201, [d.column for d in nb201.devices[:4]], 400)
    marker = tmp_path / "killed"
    paths = [HOOK, os.environ.get("PYTHONPATH", "")]
    hooked = {
        **env,
        "PYTHONPATH": os.pathsep.join(p for p in paths if p),
        "EDGEOPT_TEST_KILL_AFTER_FLUSH": "LearnedOptimizer",
        "EDGEOPT_TEST_KILL_MARKER": str(marker),
    }
    server = Server(env)
    workers = [Worker(hooked), Worker(hooked)]
    try:
        with httpx.Client(base_url=server.url, timeout=10, headers=HEADERS) as api:
            body = {"spaces": ["nb201"], "min_rows": 100}
            wait_for_job(api, api.post("/predictors/train", json=body).json()["id"])
            job_id = api.post("/optimizers/train", json=SMALL).json()["id"]
            job = wait_for_job(api, job_id)
        killed = int(marker.read_text())
        (dead,) = [w for w in workers if w.proc.pid == killed]
        assert dead.proc.wait(10) == -9  # SIGKILL, inside the final transaction
        lines = [line["line"] for line in job["logs"]]
        assert any("queued again" in line for line in lines), lines
        rows = _optimizers(url)
        assert len(rows) == 1 and rows[0].version == 1 and rows[0].job_id == job_id
        assert job["result"]["optimizer_id"] == rows[0].id
        assert (Path(env["EDGEOPT_ARTIFACTS_DIR"]) / rows[0].artifact).exists()
    finally:
        for worker in workers:
            worker.stop()
        server.stop()


def test_a_cli_job_goes_to_the_workers_and_ctrl_c_only_detaches(
    env: dict[str, str],  # noqa: F811
) -> None:
    """With workers running, `edgeopt import-reference` queues its job: Ctrl-C in the
    terminal leaves it queued, a worker runs it; a second run follows it to its end.

    Ctrl-C comes before any worker runs, so the job cannot end first (a fast machine ended
    it before the signal)."""
    url = env["EDGEOPT_DATABASE_URL"]
    cli = Child(["import-reference", "--space", "nb201"], env)

    def queued() -> bool:
        with session_factory(url)() as s:
            job = s.scalar(select(Job).order_by(Job.id.desc()).limit(1))
        return job is not None and "queued on" in "".join(cli.output)

    wait_until(queued, 120, "the CLI queued its job")
    time.sleep(0.5)  # into the loop that follows the job
    cli.proc.send_signal(signal.SIGINT)  # Ctrl-C
    assert cli.proc.wait(30) == 130, "".join(cli.output)
    cli._reader.join(10)
    out = "".join(cli.output)
    assert "detached: job 1 goes on in the workers" in out, out
    assert "edgeopt jobs watch 1" in out and "edgeopt jobs cancel 1" in out
    with session_factory(url)() as s:
        job = s.get(Job, 1)
        assert job is not None and not job.cancel_requested and job.status == "queued"
    worker = Worker(env)
    try:
        wait_until(lambda: _status(url, 1) == "succeeded", 300, "the detached job ended")
        with session_factory(url)() as s:
            job = s.get(Job, 1)
            assert job is not None and job.owner is not None
            assert int(job.owner.split(":")[1]) == worker.proc.pid
        again = edgeopt("import-reference", "--space", "ofa_mbv3", env=env, timeout=300)
        assert again.returncode == 0, again.stderr
        assert "job 2 queued on" in again.stderr and "job 2 succeeded" in again.stdout
        with session_factory(url)() as s:
            second = s.get(Job, 2)
            assert second is not None and second.owner is not None
            assert int(second.owner.split(":")[1]) == worker.proc.pid
    finally:
        worker.stop()


def _status(url: str, job_id: int) -> str | None:
    with session_factory(url)() as s:
        return s.scalar(select(Job.status).where(Job.id == job_id))
