"""Search scale-out: two ``edgeopt worker`` processes add trials to one Optuna study stored
in PostgreSQL, and /optimize then draws on every trial."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.db import session_factory, unit_of_work
from app.main import create_app
from app.models import Architecture, Device, Measurement
from app.settings import Settings
from devices.reference import load_reference
from search.optuna_search import open_study
from tests.conftest import API_KEY, fresh_database, wait_for_job


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[str]:
    yield from fresh_database("postgresql", tmp_path)


def test_two_workers_share_one_study(database_url: str, storage: str, tmp_path: Path) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("the shared study is a PostgreSQL feature; SQLite runs it in one process")
    table = load_reference("fbnet")
    columns = [d.column for d in table.devices]
    with unit_of_work(session_factory(database_url)) as s:
        archs = [Architecture(space="fbnet", encoding=e) for e in table.encodings[:300]]
        s.add_all(archs)
        s.flush()
        for name in ("raspi4", "pixel3"):
            device = Device(name=f"fb-{name}", kind="cpu")
            s.add(device)
            s.flush()
            s.add_all(
                Measurement(device_id=device.id, architecture_id=a.id, metric="latency_ms", value=v)
                for a, v in zip(archs, table.latency_ms[:300, columns.index(name)], strict=True)
            )
    settings = Settings(
        database_url=database_url,
        artifacts_dir=tmp_path / "artifacts",
        api_keys=[API_KEY],
        optuna_storage=storage,
    )
    request = {
        "device": "fb-raspi4",
        "space": "fbnet",
        "policies": ["fp32"],
        "goals": {"objective": "latency", "max_latency_ms": 40},
        "study": {"name": "shared-study", "trials": 5, "seed": 0},
    }
    with TestClient(create_app(settings)) as client:
        client.headers["X-API-Key"] = API_KEY
        job = client.post("/predictors/train", json={"spaces": ["fbnet"], "min_rows": 100})
        wait_for_job(client, job.json()["id"])
        first = client.post("/optimize", json=request)
        assert first.status_code == 201, first.text

        env = {
            **os.environ,
            "EDGEOPT_DATABASE_URL": database_url,
            "EDGEOPT_ARTIFACTS_DIR": str(settings.artifacts_dir),
            "EDGEOPT_OPTUNA_STORAGE": storage,
        }
        cmd = [sys.executable, "-m", "app", "worker", "--study", "shared-study", "--trials", "8"]
        workers = [
            subprocess.Popen(
                cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for _ in range(2)
        ]
        for w in workers:
            out, err = w.communicate(timeout=300)
            assert w.returncode == 0, err
            assert "added 8 trials" in out

        study = open_study(storage, "shared-study")
        trials = study.get_trials(deepcopy=False)
        assert len(trials) == 5 + 8 + 8
        assert len({t.user_attrs["worker"] for t in trials}) == 3  # the API and two workers

        again = client.post(
            "/optimize", json={**request, "study": {"name": "shared-study", "trials": 0}}
        )
        assert again.status_code == 201, again.text
        assert any("shared-study" in n and "joined" in n for n in again.json()["notes"])
        assert (
            again.json()["design"]["latency_ms"]["value"]
            <= first.json()["design"]["latency_ms"]["value"] + 1e-9
        )
