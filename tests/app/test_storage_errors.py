"""A database or disk that fails under a request: a status that names the cause, not a 500.

SQLite's write lock held by another connection past the busy timeout is 503 with
Retry-After; a full disk (SQLite's file, the artifacts folder) is 507, a folder that cannot
be written 503; nothing is left half-written and the service recovers when space returns.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from app.db import get_engine
from app.main import create_app
from app.settings import Settings
from devices.reference import ReferenceTable
from tests.app.conftest import seed_slice, train
from tests.conftest import API_KEY
from tests.disks import files_under, fill, full_disk


def _sqlite_file(url: str) -> str:
    if not url.startswith("sqlite:///"):
        pytest.skip("SQLite's own write lock and file")
    return url.removeprefix("sqlite:///")


@pytest.fixture
def impatient(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    """A service whose writers wait half a second for SQLite's write lock."""
    settings = Settings(
        database_url=database_url,
        artifacts_dir=tmp_path / "artifacts",
        api_keys=[API_KEY],
        job_workers_mode="thread",
        sqlite_busy_timeout_s=0.5,
    )
    with TestClient(create_app(settings)) as client:
        client.headers["X-API-Key"] = API_KEY
        yield client


def test_a_write_while_another_holds_the_lock_is_503_with_retry_after(
    impatient: TestClient, database_url: str
) -> None:
    other = sqlite3.connect(_sqlite_file(database_url), isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process's long write
        response = impatient.post("/devices", json={"name": "pi", "kind": "cpu"})
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "1"
        error = response.json()["error"]
        assert error["code"] == "service_unavailable"
        assert "database is busy" in error["message"]
        assert impatient.get("/devices").status_code == 200  # readers do not wait
    finally:
        other.rollback()
        other.close()
    assert impatient.post("/devices", json={"name": "pi", "kind": "cpu"}).status_code == 201


def test_a_full_sqlite_file_is_507_and_writes_resume_when_space_returns(
    writer: TestClient, settings: Settings
) -> None:
    path = _sqlite_file(settings.database_url)
    engine = get_engine(settings.database_url, settings.db_timeouts)
    engine.dispose()
    # pages freed by earlier tests' data would take the writes first: give them back
    vacuum = sqlite3.connect(path, isolation_level=None)
    try:
        vacuum.execute("VACUUM")
    finally:
        vacuum.close()

    def no_growth(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        # SQLite's own limit on its file: past it, "database or disk is full" (SQLITE_FULL)
        pages = dbapi_conn.execute("PRAGMA page_count").fetchone()[0]
        dbapi_conn.execute(f"PRAGMA max_page_count={pages}")

    engine.dispose()
    event.listen(engine, "connect", no_growth)
    try:
        statuses = []
        for i in range(200):
            response = writer.post(
                "/devices", json={"name": f"d{i}", "kind": "cpu", "description": "x" * 4000}
            )
            statuses.append(response.status_code)
            if response.status_code != 201:
                break
        assert statuses[-1] == 507, (statuses, response.text)
        error = response.json()["error"]
        assert error["code"] == "insufficient_storage"
        assert "disk is full" in error["message"]
    finally:
        event.remove(engine, "connect", no_growth)
        engine.dispose()
    assert writer.post("/devices", json={"name": "after", "kind": "cpu"}).status_code == 201


@pytest.fixture
def on_full_disk(database_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, Path, Path]]:
    """A service whose artifacts folder lies on a disk with no space left: (its client, the
    folder, the file that fills the disk: remove it to give the space back)."""
    with full_disk(tmp_path / "disk") as disk:
        artifacts = disk / "artifacts"
        settings = Settings(
            database_url=database_url,
            artifacts_dir=artifacts,
            api_keys=[API_KEY],
            job_heartbeat_s=0.2,
            job_workers_mode="thread",
        )
        with TestClient(create_app(settings)) as client:
            client.headers["X-API-Key"] = API_KEY
            filler = fill(disk)
            yield client, artifacts, filler


def test_training_on_a_full_disk_fails_clearly_and_leaves_no_partial_file(
    on_full_disk: tuple[TestClient, Path, Path], database_url: str, nb201: ReferenceTable
) -> None:
    client, artifacts, filler = on_full_disk
    seed_slice(database_url, nb201, ["pixel3"], 200)
    job = train(client, expect="failed", min_rows=100)
    assert "write" in job["error"].lower() or "space" in job["error"].lower(), job["error"]
    assert files_under(artifacts) == []  # no model.txt cut short, no temporary
    assert client.get("/predictors").json()["total"] == 0
    filler.unlink()  # space returns: the same training succeeds
    train(client, min_rows=100)
    stored = client.get("/predictors").json()["total"]
    folders = list((artifacts / "predictors").iterdir())
    assert stored > 0 and len(folders) == stored  # one whole folder per predictor
    assert all({"model.txt", "model.json"} <= {f.name for f in d.iterdir()} for d in folders)


def _task_model_url(client: TestClient, nb201: ReferenceTable) -> str:
    device = client.post("/devices", json={"name": "board", "kind": "cpu"}).json()["id"]
    body = {"space": "nb201", "designs": [nb201.encodings[7]], "policies": ["fp32"]}
    assert client.post(f"/devices/{device}/tasks", json=body).status_code == 201
    task = client.get(f"/devices/{device}/tasks").json()["items"][0]
    return f"/tasks/{task['id']}/model.onnx"


def test_an_export_on_a_full_disk_is_507_and_leaves_no_partial_file(
    on_full_disk: tuple[TestClient, Path, Path], nb201: ReferenceTable
) -> None:
    client, artifacts, filler = on_full_disk
    url = _task_model_url(client, nb201)
    response = client.get(url)
    assert response.status_code == 507, response.text
    error = response.json()["error"]
    assert error["code"] == "insufficient_storage"
    assert f"no space left on the disk: {artifacts / 'models'}" in error["message"]
    assert not list(artifacts.rglob("*.onnx")) and not list(artifacts.rglob("tmp*"))
    filler.unlink()
    assert client.get(url).status_code == 200


def test_an_export_into_a_folder_that_cannot_be_written_is_503(
    writer: TestClient, settings: Settings, nb201: ReferenceTable
) -> None:
    url = _task_model_url(writer, nb201)
    # the artifacts folder replaced by a plain file under the running service: no folder
    # can be made in it (the same errors as a read-only disk, which root's writes ignore)
    shutil.rmtree(settings.artifacts_dir)
    settings.artifacts_dir.write_text("")
    response = writer.get(url)
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"]
    message = response.json()["error"]["message"]
    assert message.startswith("storage cannot be written (Not a directory)"), message
    assert str(settings.artifacts_dir) in message
