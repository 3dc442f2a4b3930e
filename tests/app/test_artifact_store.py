"""The artifact store: predictors, learned optimizers and exported models reach processes
whose artifacts folders differ, through the registry, and bytes that differ from their
recorded SHA-256 are refused."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from app.db import get_engine, session_factory, unit_of_work, upgrade
from app.main import create_app
from app.models import Artifact, Job, Predictor
from app.settings import Settings
from devices.reference import ReferenceTable
from tests.app.conftest import DEVICES, N, seed_slice, train
from tests.conftest import API_KEY, BACKENDS, fresh_database, wait_for_job, wait_until
from tests.processes import Child, Server

HEADERS = {"X-API-Key": API_KEY}
DESIGNS = {"device": "gold_6226", "space": "nb201"}
# a database number of its own: tests/app/test_worker.py uses 13
REDIS_QUEUE = os.environ.get("EDGEOPT_TEST_REDIS_STORE_URL", "redis://127.0.0.1:6379/12")


def _client(settings: Settings, folder: Path) -> TestClient:
    """Another API process on the same registry, with its own artifacts folder."""
    client = TestClient(create_app(settings.model_copy(update={"artifacts_dir": folder})))
    client.headers["X-API-Key"] = API_KEY
    return client


def _predict(client: TestClient, nb201: ReferenceTable) -> Any:
    return client.post("/predict", json={**DESIGNS, "designs": nb201.encodings[N : N + 20]})


@pytest.fixture
def database_store(settings: Settings, nb201: ReferenceTable) -> Iterator[Settings]:
    """The slice, trained by an API whose store is the database (in its own folder)."""
    chosen = settings.model_copy(update={"artifact_store": "database"})
    seed_slice(chosen.database_url, nb201, DEVICES, N)
    with _client(chosen, chosen.artifacts_dir) as trainer:
        train(trainer)
    yield chosen


def test_every_file_of_a_predictor_is_recorded_with_its_hash_and_bytes(
    database_store: Settings,
) -> None:
    with session_factory(database_store.database_url)() as s:
        artifacts = [p.artifact for p in s.scalars(select(Predictor))]
        rows = {a.key: (a.sha256, a.size, a.content) for a in s.scalars(select(Artifact))}
    assert artifacts
    for artifact in artifacts:
        files = [f for f in (database_store.artifacts_dir / artifact).iterdir()]
        assert {"model.txt", "model.json"} <= {f.name for f in files}
        for f in files:
            data = f.read_bytes()
            key = f"{artifact}/{f.name}"
            assert rows[key] == (hashlib.sha256(data).hexdigest(), len(data), data)


def test_an_api_with_an_empty_folder_answers_from_the_store(
    database_store: Settings, nb201: ReferenceTable, tmp_path: Path
) -> None:
    with _client(database_store, tmp_path / "elsewhere") as other:
        r = _predict(other, nb201)
        assert r.status_code == 200, r.text
        assert r.json()["answered_by"]["latency_ms"]["method"] == "device-model"
    with session_factory(database_store.database_url)() as s:
        own = s.scalar(select(Predictor.artifact).where(Predictor.device_id.is_not(None)))
    assert own is not None
    fetched = tmp_path / "elsewhere" / own / "model.txt"
    assert fetched.read_bytes() == (database_store.artifacts_dir / own / "model.txt").read_bytes()


def test_an_exported_model_is_exported_once_and_served_from_the_store_elsewhere(
    database_store: Settings, nb201: ReferenceTable, tmp_path: Path
) -> None:
    with _client(database_store, database_store.artifacts_dir) as api:
        body = {"device": "gold_6226", "goals": {"max_latency_ms": 1e3}}
        answer = api.post("/optimize", json=body)
        assert answer.status_code == 201, answer.text
        exported = api.get(answer.json()["model_url"])
        assert exported.status_code == 200
    with _client(database_store, tmp_path / "elsewhere") as other:
        again = other.get(answer.json()["model_url"])
    assert again.status_code == 200
    assert again.content == exported.content  # its random weights: fetched, not exported again
    with session_factory(database_store.database_url)() as s:
        models = s.scalars(select(Artifact.content).where(Artifact.key.like("models/%"))).all()
    assert models == [exported.content]


def test_a_local_file_changed_after_it_was_written_is_refused(
    database_store: Settings, nb201: ReferenceTable
) -> None:
    with session_factory(database_store.database_url)() as s:
        own = s.scalars(select(Predictor).where(Predictor.device_id.is_not(None))).all()
    for p in own:  # whichever model the answer asks first
        model = database_store.artifacts_dir / p.artifact / "model.txt"
        model.write_text(model.read_text().replace("\n", "\n\n", 1))
    with _client(database_store, database_store.artifacts_dir) as api:
        r = _predict(api, nb201)
    assert r.status_code == 409, r.text
    message = r.json()["error"]["message"]
    assert "does not match the SHA-256 recorded" in message and "model.txt" in message
    assert "remove the file to fetch the stored copy again" in message


def test_stored_bytes_that_do_not_match_their_hash_are_refused(
    database_store: Settings, nb201: ReferenceTable, tmp_path: Path
) -> None:
    with unit_of_work(session_factory(database_store.database_url)) as s:
        s.execute(update(Artifact).where(Artifact.key.like("%/model.txt")).values(content=b"x"))
    with _client(database_store, tmp_path / "elsewhere") as other:
        r = _predict(other, nb201)
    assert r.status_code == 409, r.text
    message = r.json()["error"]["message"]
    assert "the artifact store's copy does not match" in message, message
    assert not list((tmp_path / "elsewhere").rglob("model.txt"))  # nothing of it written


def test_the_local_store_records_hashes_only_and_names_what_another_folder_lacks(
    settings: Settings, nb201: ReferenceTable, tmp_path: Path
) -> None:
    seed_slice(settings.database_url, nb201, DEVICES, N)
    with _client(settings, settings.artifacts_dir) as api:
        train(api)
        assert _predict(api, nb201).status_code == 200
        assert api.get("/readyz").status_code == 200
    with session_factory(settings.database_url)() as s:
        contents = s.scalars(select(Artifact.content)).all()
    assert contents and all(c is None for c in contents)
    with _client(settings, tmp_path / "elsewhere") as other:
        r = _predict(other, nb201)
    assert r.status_code == 409, r.text
    message = r.json()["error"]["message"]
    assert "the artifact store has no copy of it" in message, message
    assert "EDGEOPT_ARTIFACT_STORE=database" in message


# --- workers on other machines: PostgreSQL, Redis, and a folder per process ----------------

WORKERS = ("worker-1", "worker-2")  # their artifacts folders


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A migrated PostgreSQL registry with the database store, and Redis as the queue."""
    if "postgresql" not in BACKENDS:
        pytest.skip("workers on other machines share PostgreSQL and Redis")
    gen = fresh_database("postgresql", tmp_path)
    url = next(gen)
    upgrade(url)
    yield {
        "EDGEOPT_DATABASE_URL": url,
        "EDGEOPT_ARTIFACT_STORE": "database",
        "EDGEOPT_ARTIFACTS_DIR": str(tmp_path / "api"),
        "EDGEOPT_QUEUE_URL": REDIS_QUEUE,
        "EDGEOPT_API_KEYS": API_KEY,
        "EDGEOPT_JOB_WORKERS_MODE": "external",
        "EDGEOPT_JOB_HEARTBEAT_S": "0.2",
        "EDGEOPT_JOB_STALE_AFTER_S": "5",
    }
    get_engine(url).dispose()
    next(gen, None)


class Worker(Child):
    """`edgeopt worker` with an artifacts folder of its own, as on another machine."""

    def __init__(self, env: dict[str, str], folder: Path) -> None:
        super().__init__(["worker"], {**env, "EDGEOPT_ARTIFACTS_DIR": str(folder)})
        wait_until(lambda: bool(self.output) or self.proc.poll() is not None, 60, "worker up")
        assert self.proc.poll() is None, "".join(self.output)


def _owner(url: str, job_id: int) -> int:
    with session_factory(url)() as s:
        owner = s.scalar(select(Job.owner).where(Job.id == job_id))
    assert owner is not None
    return int(owner.split(":")[1])


def test_a_training_on_one_worker_is_served_by_the_api_and_used_by_another(
    env: dict[str, str], nb201: ReferenceTable, tmp_path: Path
) -> None:
    url = env["EDGEOPT_DATABASE_URL"]
    truth = seed_slice(url, nb201, DEVICES, N)
    server = Server(env)
    first = Worker(env, tmp_path / WORKERS[0])
    second: Worker | None = None
    try:
        with httpx.Client(base_url=server.url, timeout=60, headers=HEADERS) as api:
            body = {"spaces": ["nb201"], "min_rows": 100}
            job_id = api.post("/predictors/train", json=body).json()["id"]
            wait_for_job(api, job_id)
            assert _owner(url, job_id) == first.proc.pid
            first.stop()
            second = Worker(env, tmp_path / WORKERS[1])

            # the API's folder never saw the training: it answers from the store
            r = api.post("/predict", json={**DESIGNS, "designs": nb201.encodings[N : N + 20]})
            assert r.status_code == 200, r.text
            assert r.json()["answered_by"]["latency_ms"]["method"] == "device-model"
            assert list((tmp_path / "api" / "predictors").rglob("model.txt"))

            # the other worker reads every device's predictor to train a learned optimizer
            started = api.post("/optimizers/train", json={"synthetic": 100, "epochs": 2})
            assert started.status_code == 202, started.text
            learned = wait_for_job(api, started.json()["id"])
            assert _owner(url, learned["id"]) == second.proc.pid
            with session_factory(url)() as s:
                trained = s.scalars(select(Predictor.artifact)).all()
            for artifact in trained:  # written by the first worker, fetched by the second
                written, fetched = (tmp_path / w / artifact / "model.txt" for w in WORKERS)
                assert fetched.read_bytes() == written.read_bytes(), artifact

            # and the API answers with the optimizer that worker wrote
            budget = float(np.median(truth["gold_6226"]))
            r = api.post(
                "/optimize",
                json={
                    "device": "gold_6226",
                    "method": "neural",
                    "goals": {"max_latency_ms": budget},
                },
            )
            assert r.status_code == 201, r.text
            assert r.json()["answered_by"]["optimizer"]["method"] == "neural"
            assert api.get("/readyz").status_code == 200
    finally:
        first.stop()
        if second is not None:
            second.stop()
        server.stop()
