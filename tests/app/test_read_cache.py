"""Expensive reads (agreement chart, next-measurements) are remembered per data version: a
repeated request runs only the stamp's queries, and a change to the data is seen at once."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select, update

from app.db import get_engine, unit_of_work
from app.models import Device, Measurement
from app.settings import Settings
from devices.reference import ReferenceTable
from tests.app.conftest import N


@pytest.fixture
def statements(settings: Settings) -> Iterator[list[str]]:
    """The SQL the service's engine runs, as it runs it."""
    seen: list[str] = []
    engine = get_engine(settings.database_url, settings.db_timeouts)

    def record(_conn, _cursor, sql: str, *_args) -> None:  # type: ignore[no-untyped-def]
        seen.append(sql)

    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


def _agreement(client: TestClient, statements: list[str], policy: str = "fp32") -> bool:
    """Whether the chart's data was computed (not remembered) for this request."""
    statements.clear()
    response = client.get("/api/charts/agreement/nb201", params={"policy": policy})
    assert response.status_code == 200, response.text
    return any("GROUP BY measurements.architecture_id" in s for s in statements)


def test_the_agreement_chart_is_remembered_until_a_measurement_changes(
    client: TestClient,
    settings: Settings,
    seeded: dict[str, np.ndarray],
    statements: list[str],
) -> None:
    assert _agreement(client, statements)
    assert not _agreement(client, statements)  # asked again: remembered
    assert _agreement(client, statements, policy="int8")  # another chart...
    assert not _agreement(client, statements)  # ...did not push the first one out
    with unit_of_work(client.app.state.session_factory) as s:  # type: ignore[attr-defined]
        pixel3 = s.scalar(select(Device.id).where(Device.name == "pixel3"))
        first = s.scalar(select(func.min(Measurement.id)).where(Measurement.device_id == pixel3))
        s.execute(update(Measurement).where(Measurement.id == first).values(value=1e6))
    assert _agreement(client, statements)  # a value rewritten in place: computed again


def test_next_measurements_is_remembered_until_the_device_measures(
    writer: TestClient, trained: dict[str, np.ndarray], nb201: ReferenceTable, statements: list[str]
) -> None:
    device = writer.post("/devices", json={"name": "new-board", "kind": "cpu"}).json()["id"]
    column = [d.column for d in nb201.devices].index("eyeriss")
    truth = dict(zip(nb201.encodings, nb201.latency_ms[:, column], strict=True))

    def measure(designs: list[str]) -> None:
        rows = [
            {"space": "nb201", "arch": e, "metric": "latency_ms", "value": float(truth[e])}
            for e in designs
        ]
        assert writer.post(
            f"/devices/{device}/measurements", json={"measurements": rows}
        ).is_success

    def advice() -> tuple[dict, bool]:
        """The advice, and whether it was computed (it reads the device's shots)."""
        statements.clear()
        response = writer.get(f"/devices/{device}/next-measurements", params={"space": "nb201"})
        assert response.status_code == 200, response.text
        shots = [s for s in statements if "JOIN architectures" in s and ".device_id = " in s]
        return response.json(), bool(shots)

    measure(nb201.encodings[N : N + 5])
    first, computed = advice()
    again, recomputed = advice()
    assert again == first and first["shots"] == 5
    assert computed and not recomputed  # asked again: only the stamp and the device read
    measure(nb201.encodings[N + 5 : N + 6])
    after, _ = advice()
    assert after["shots"] == 6  # a new measurement: computed again, not the stale answer
