"""The host job's normaliser keeps each device's baseline in the registry."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from app.db import session_factory, unit_of_work, upgrade
from app.jobs import create_job, execute_job
from app.measure_service import host_normaliser, register_host
from app.models import Device, Job
from devices.measure import Protocol, measure
from search.export import export_design
from tests.app.test_measure_cli import busy_machine

CELL = "|nor_conv_1x1~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"
QUICK = Protocol(threads=1, round_size=5, budget_s=2, max_foreign_load=1e9)


def test_the_baseline_is_stored_in_the_device_specs_and_reused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'n.db'}"
    upgrade(url)
    factory = session_factory(url)
    with unit_of_work(factory) as s:
        device_id = register_host(s, 1).id
    model = str(export_design("nb201", CELL, "fp32", tmp_path / "m.onnx").path)

    first = host_normaliser(factory, tmp_path, measure)(model, device_id, ["fp32"], QUICK)
    with factory() as s:
        device = s.get(Device, device_id)
        assert device is not None
        stored = device.specs["reference_ms"]["fp32"]
    assert stored == first.protocol["reference"]["baseline_ms"]

    # a later job (a new normaliser, a new folder) lands on the same scale
    later = host_normaliser(factory, tmp_path / "later", measure)
    (tmp_path / "later").mkdir()
    again = later(model, device_id, ["fp32"], QUICK)
    assert again.protocol["reference"]["baseline_ms"] == stored


def test_a_job_cancelled_while_it_waits_for_a_busy_cpu_leaves_no_device(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'n.db'}"
    upgrade(url)
    factory = session_factory(url)
    params = {"designs": [CELL], "busy_wait_s": 60}
    job_id = create_job(factory, "measure-host", params, "test")
    notes: list[str] = []

    def cancel_once_waiting(fraction: float, note: str | None) -> None:
        notes.append(note or "")
        if note and note.startswith("the CPU is busy"):
            with unit_of_work(factory) as s:
                job = s.get(Job, job_id)
                assert job is not None
                job.cancel_requested = True

    with busy_machine():
        status = execute_job(factory, job_id, cancel_once_waiting, tmp_path / "art")
    assert status == "cancelled"
    assert any("waiting to time the reference baseline" in n for n in notes)
    with factory() as s:
        assert s.scalars(select(Device)).all() == []  # registered by the job, removed with it
