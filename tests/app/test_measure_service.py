"""The host job's normaliser: real exports and timings, on a device whose baseline is set."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.db import session_factory, unit_of_work, upgrade
from app.measure_service import ATTEMPTS, SLOW_SPELL, Normaliser, register_host
from app.models import Device
from devices.measure import Protocol, measure
from search.export import export_design

CELL = "|nor_conv_1x1~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"
# busy neighbours (a CI machine's) never count as contention here: only the reference decides
QUICK = Protocol(threads=1, round_size=5, budget_s=2, max_foreign_load=1e9)


@pytest.fixture
def registry(tmp_path: Path) -> tuple[Normaliser, int, str]:
    url = f"sqlite:///{tmp_path / 'n.db'}"
    upgrade(url)
    factory = session_factory(url)
    with unit_of_work(factory) as s:
        device_id = register_host(s, 1).id
    model = str(export_design("nb201", CELL, "fp32", tmp_path / "m.onnx").path)
    return Normaliser(factory, tmp_path, measure), device_id, model


def _set_baseline(normaliser: Normaliser, device_id: int, value: float) -> None:
    with unit_of_work(normaliser.factory) as s:
        device = s.get(Device, device_id)
        assert device is not None
        device.specs = {**device.specs, "reference_ms": {"fp32": value}}


def test_a_value_lands_on_the_device_scale_at_the_first_quiet_attempt(
    registry: tuple[Normaliser, int, str],
) -> None:
    normaliser, device_id, model = registry
    first = normaliser(model, device_id, ["fp32"], QUICK)  # measures the baseline first
    ref = first.protocol["reference"]
    assert ref["slow_spell"] == SLOW_SPELL and ref["baseline_ms"] > 0
    assert first.median_ms == pytest.approx(
        first.protocol["raw_median_ms"] * ref["baseline_ms"] / ref["median_ms"]
    )
    # a baseline far above any run: every reference is "quick enough", one attempt
    _set_baseline(normaliser, device_id, 10 * ref["median_ms"])
    quiet = normaliser(model, device_id, ["fp32"], QUICK)
    assert quiet.protocol["attempts"] == 1


def test_a_reference_slower_than_its_baseline_is_measured_again_then_flagged(
    registry: tuple[Normaliser, int, str],
) -> None:
    normaliser, device_id, model = registry
    # a baseline no run can reach: the machine looks in a slow spell every time
    _set_baseline(normaliser, device_id, 1e-6)
    slow = normaliser(model, device_id, ["fp32"], QUICK)
    assert slow.protocol["attempts"] == ATTEMPTS
    assert not slow.stable
    assert slow.median_ms == pytest.approx(
        slow.protocol["raw_median_ms"] * 1e-6 / slow.protocol["reference"]["median_ms"]
    )
