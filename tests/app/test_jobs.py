"""Jobs over REST: the reference import as a job, its progress, logs and cancellation."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.db import session_factory
from app.jobs import (
    JOB_KINDS,
    Claim,
    JobContext,
    JobRunner,
    claim_job,
    create_job,
    execute_job,
    mark_stale_jobs,
)
from app.models import Job, Predictor
from app.settings import Settings
from tests.conftest import wait_for_job, wait_until


def test_import_reference_job_is_idempotent(writer: TestClient) -> None:
    body = {"kind": "import-reference", "params": {"spaces": ["ofa_mbv3"]}}
    started = writer.post("/jobs", json=body)
    assert started.status_code == 202, started.text
    job = wait_for_job(writer, started.json()["id"])
    assert job["progress"] == 1.0
    assert job["result"]["ofa_mbv3"]["measurements_inserted"] == 60_000
    assert any("ofa_mbv3" in line["line"] for line in job["logs"])

    devices = writer.get("/devices", params={"q": "ofa_mbv3.", "limit": 100}).json()
    assert devices["total"] == 12
    v100 = next(d for d in devices["items"] if d["name"] == "ofa_mbv3.v100_1")
    assert v100["kind"] == "gpu" and v100["batch_size"] == 1
    assert "HELP" in v100["source"]
    first = writer.get("/measurements", params={"device_id": v100["id"], "limit": 1}).json()
    assert first["total"] == 5000

    again = wait_for_job(writer, writer.post("/jobs", json=body).json()["id"])
    assert again["result"]["ofa_mbv3"] == {
        "devices_created": 0,
        "devices_unchanged": 12,
        "measurements_inserted": 0,
        "accuracy_records_inserted": 0,
    }
    assert writer.get("/measurements", params={"limit": 1}).json()["total"] == 60_000
    listed = writer.get("/jobs", params={"kind": "import-reference"}).json()
    assert [j["id"] for j in listed["items"]] == [again["id"], job["id"]]


def test_latbench_devices_are_imported_at_the_precision_they_ran(writer: TestClient) -> None:
    """Another family's table: its int8 and fp16 settings are not fp32 devices."""
    body = {"kind": "import-reference", "params": {"spaces": ["nb201_latbench"]}}
    job = wait_for_job(writer, writer.post("/jobs", json=body).json()["id"])
    assert job["result"]["nb201_latbench"]["devices_created"] == 15
    devices = writer.get("/devices", params={"q": "nb201.", "limit": 100}).json()["items"]
    by_name = {d["name"]: d for d in devices}
    tpu = by_name["nb201.embedded_tpu_edgetpu_int8"]
    assert tpu["precision"] == "int8" and "BRP-NAS" in tpu["source"]
    assert by_name["nb201.embedded_gpu_jetson_nano_fp16"]["precision"] == "fp16"
    assert by_name["nb201.desktop_cpu_i7-7820x_fp32"]["precision"] == "fp32"
    stored = writer.get("/measurements", params={"device_id": tpu["id"], "limit": 1}).json()
    assert stored["total"] == 15284 and stored["items"][0]["policy"] == "int8"


def test_cancel_stops_a_running_import(writer: TestClient) -> None:
    job_id = writer.post(
        "/jobs", json={"kind": "import-reference", "params": {"spaces": ["nb201"]}}
    ).json()["id"]
    wait_until(
        lambda: writer.get(f"/jobs/{job_id}").json()["progress"] > 0, 120, "the import started"
    )
    cancel = writer.post(f"/jobs/{job_id}/cancel")
    assert cancel.status_code == 200
    wait_for_job(writer, job_id, status="cancelled")
    # What was written is whole devices: every stored device has all 15,625 measurements.
    devices = writer.get("/devices", params={"limit": 100}).json()["items"]
    assert 1 <= len(devices) < 27
    for device in devices:
        counts = writer.get(f"/devices/{device['id']}").json()["measurements"]
        assert [c["count"] for c in counts] == [15_625]
    assert writer.post(f"/jobs/{job_id}/cancel").status_code == 409


def test_bad_job_requests(writer: TestClient) -> None:
    unknown = writer.post("/jobs", json={"kind": "make-coffee"})
    assert unknown.status_code == 422
    assert unknown.json()["error"]["details"][0]["field"] == "kind"
    bad = writer.post("/jobs", json={"kind": "import-reference", "params": {"spaces": ["x"]}})
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["field"] == "params.spaces.0"
    assert writer.get("/jobs/12345").status_code == 404


def test_a_dead_workers_job_is_queued_again_then_interrupted(settings: Settings) -> None:
    factory = session_factory(settings.database_url)
    job_id = create_job(factory, "import-reference", {})
    for attempt in (1, 2):
        claim = claim_job(factory, job_id, owner=f"a-worker-that-dies-{attempt}")
        assert claim is not None and claim.attempt == attempt
        assert mark_stale_jobs(factory, stale_after_s=60, max_attempts=2) == 0
        time.sleep(0.3)
        assert mark_stale_jobs(factory, stale_after_s=0.1, max_attempts=2) == 1
        with factory() as s:
            job = s.get(Job, job_id)
            assert job is not None and job.attempts == attempt
            assert job.status == ("queued" if attempt == 1 else "interrupted")
    assert job.error is not None and "2 times" in job.error
    assert claim_job(factory, job_id, owner="too-late") is None


def test_of_many_workers_claiming_a_job_one_gets_it(settings: Settings) -> None:
    factory = session_factory(settings.database_url)
    job_id = create_job(factory, "import-reference", {})
    start = threading.Barrier(8)

    def claim(i: int) -> Claim | None:
        start.wait()
        return claim_job(factory, job_id, owner=f"worker-{i}")

    with ThreadPoolExecutor(8) as pool:
        claims = [c for c in pool.map(claim, range(8)) if c is not None]
    assert len(claims) == 1
    with factory() as s:
        job = s.get(Job, job_id)
        assert job is not None
        assert (job.status, job.owner, job.attempts) == ("running", claims[0].owner, 1)


def test_a_live_runner_keeps_its_jobs_fresh(settings: Settings) -> None:
    factory = session_factory(settings.database_url)
    runner = JobRunner(factory, heartbeat_s=0.05, consume=False)
    try:
        job_id = create_job(factory, "import-reference", {})
        assert claim_job(factory, job_id, owner=runner.owner) is not None
        time.sleep(0.5)
        assert mark_stale_jobs(factory, stale_after_s=0.3) == 0
        with factory() as s:
            assert s.get(Job, job_id).status == "running"  # type: ignore[union-attr]
    finally:
        runner.shutdown()


def test_stopping_the_service_hands_its_jobs_back_and_the_next_start_runs_them(
    settings: Settings,
) -> None:
    factory = session_factory(settings.database_url)
    runner = JobRunner(factory, heartbeat_s=0.05)
    running = runner.submit("import-reference", {"spaces": ["nb201"]})
    queued = runner.submit("import-reference", {"spaces": ["ofa_mbv3"]})

    def job(job_id: int) -> Job:
        with factory() as s:
            found = s.get(Job, job_id)
            assert found is not None
            _ = found.logs
            return found

    wait_until(lambda: job(running).progress > 0, 120, f"job {running} started")
    runner.shutdown()
    for job_id in (running, queued):
        assert (job(job_id).status, job(job_id).attempts, job(job_id).error) == ("queued", 0, None)
    assert "handed back" in job(running).logs[-1].line

    after = JobRunner(factory, heartbeat_s=0.05, stale_after_s=0.5)
    try:
        wait_until(lambda: job(running).owner == after.owner, 60, "the next start took it")
        assert job(running).status == "running"
    finally:
        after.shutdown()


class _Died(Exception):
    """The worker's process ends here (as with SIGKILL: nothing after it runs)."""


def test_a_retried_training_publishes_each_predictor_once(
    settings: Settings, seeded: dict[str, object]
) -> None:
    factory = session_factory(settings.database_url)
    job_id = create_job(factory, "train-predictors", {"spaces": ["nb201"], "min_rows": 100})
    claim = claim_job(factory, job_id, owner="a-worker-that-dies")
    assert claim is not None
    reports: list[float] = []

    def die_after_two(fraction: float, message: str | None) -> None:
        reports.append(fraction)
        if len(reports) == 2:
            raise _Died

    ctx = JobContext(factory, job_id, die_after_two, 0, settings.artifacts_dir, claim)
    with pytest.raises(_Died):
        JOB_KINDS["train-predictors"].fn(ctx, claim.params)
    with factory() as s:
        first = s.scalars(select(Predictor.id).where(Predictor.job_id == job_id)).all()
    assert len(first) == 2

    time.sleep(0.3)
    assert mark_stale_jobs(factory, stale_after_s=0.1) == 1  # queued again, attempt 2 next
    assert execute_job(factory, job_id, artifacts_dir=settings.artifacts_dir) == "succeeded"
    with factory() as s:
        job = s.get(Job, job_id)
        rows = s.scalars(select(Predictor).where(Predictor.job_id == job_id)).all()
    assert job is not None and job.attempts == 2 and job.result is not None
    scopes = [(p.target, p.device_id, p.dataset, p.policy) for p in rows]
    assert len(scopes) == len(set(scopes)) == job.result["count"]  # no scope twice
    assert set(first) <= set(job.result["predictors"])
    assert all((settings.artifacts_dir / p.artifact).exists() for p in rows)
