"""Fixtures for the service tests: a small registry slice with trained predictors."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from app.db import session_factory, unit_of_work
from app.models import AccuracyRecord, Architecture, Device, Measurement
from app.settings import Settings
from devices.reference import ReferenceTable, load_reference
from tests.conftest import wait_for_job

DEVICES = ["gold_6226", "pixel3", "raspi4", "eyeriss"]
N = 400


@pytest.fixture(scope="session")
def nb201() -> ReferenceTable:
    return load_reference("nb201")


def seed_slice(
    url: str, table: ReferenceTable, devices: list[str], n: int, **device_fields: object
) -> dict[str, np.ndarray]:
    """Reference devices x the first ``n`` NB201 designs, CIFAR-10 accuracy, into a registry."""
    columns = [d.column for d in table.devices]
    truth = {}
    with unit_of_work(session_factory(url)) as s:
        archs = [Architecture(space="nb201", encoding=e) for e in table.encodings[:n]]
        s.add_all(archs)
        s.flush()
        for name in devices:
            device = Device(name=name, kind="cpu", **device_fields)
            s.add(device)
            s.flush()
            truth[name] = values = table.latency_ms[:n, columns.index(name)]
            s.add_all(
                Measurement(device_id=device.id, architecture_id=a.id, metric="latency_ms", value=v)
                for a, v in zip(archs, values, strict=True)
            )
        s.add_all(
            AccuracyRecord(architecture_id=a.id, dataset="cifar10", top1=v, source="NAS-Bench-201")
            for a, v in zip(archs, table.accuracies["cifar10"][:n], strict=True)
        )
    return truth


def flag_unstable(url: str, device: str, count: int, slowdown: float = 1.0) -> int:
    """Mark ``count`` of a device's measurements as a busy spell leaves them: flagged
    unstable by their protocol (and ``slowdown`` times slower). Returns the device's id."""
    with unit_of_work(session_factory(url)) as s:
        device_id = s.scalar(select(Device.id).where(Device.name == device))
        some = select(Measurement.id).where(Measurement.device_id == device_id).limit(count)
        s.execute(
            update(Measurement)
            .where(Measurement.id.in_(some.scalar_subquery()))
            .values(protocol={"stable": False}, value=Measurement.value * slowdown)
        )
    assert device_id is not None
    return device_id


@pytest.fixture
def seeded(settings: Settings, nb201: ReferenceTable) -> dict[str, np.ndarray]:
    """A registry slice: 4 reference devices x 400 NB201 designs, CIFAR-10 accuracy."""
    return seed_slice(settings.database_url, nb201, DEVICES, N)


def train(writer: TestClient, expect: str = "succeeded", **body: object) -> dict:
    """Train predictors as a job and wait for it to end in status ``expect``."""
    started = writer.post("/predictors/train", json={"spaces": ["nb201"], "min_rows": 100, **body})
    assert started.status_code == 202, started.text
    return wait_for_job(writer, started.json()["id"], status=expect)


@pytest.fixture
def trained(writer: TestClient, seeded: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The slice with its predictors trained (4 latency models, 1 accuracy model)."""
    train(writer)
    return seeded
