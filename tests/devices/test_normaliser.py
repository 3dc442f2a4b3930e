"""The host normaliser: real exports and timings, with a baseline set by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from devices.measure import Protocol, measure
from devices.normaliser import (
    ATTEMPTS,
    REFERENCE_DESIGN,
    REFERENCE_SPACE,
    SLOW_SPELL,
    MemoryBaselines,
    Normaliser,
)
from search.export import export_design

CELL = "|nor_conv_1x1~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"
# busy neighbours (a CI machine's) never count as contention here: only the reference decides
QUICK = Protocol(threads=1, round_size=5, budget_s=2, max_foreign_load=1e9)
DEVICE = 1


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Normaliser, MemoryBaselines, str]:
    reference = str(
        export_design(REFERENCE_SPACE, REFERENCE_DESIGN, "fp32", tmp_path / "r.onnx").path
    )
    model = str(export_design("nb201", CELL, "fp32", tmp_path / "m.onnx").path)
    baselines = MemoryBaselines()
    return Normaliser(measure, lambda policy: reference, baselines), baselines, model


def test_a_value_lands_on_the_device_scale_at_the_first_quiet_attempt(
    setup: tuple[Normaliser, MemoryBaselines, str],
) -> None:
    normaliser, baselines, model = setup
    first = normaliser(model, DEVICE, ["fp32"], QUICK)  # measures the baseline first
    ref = first.protocol["reference"]
    assert ref["slow_spell"] == SLOW_SPELL and ref["baseline_ms"] > 0
    assert baselines.get(DEVICE, "fp32") == ref["baseline_ms"]  # kept for later jobs
    assert first.median_ms == pytest.approx(
        first.protocol["raw_median_ms"] * ref["baseline_ms"] / ref["median_ms"]
    )
    # a baseline far above any run: every reference is "quick enough", one attempt
    baselines.put(DEVICE, "fp32", 10 * ref["median_ms"])
    quiet = normaliser(model, DEVICE, ["fp32"], QUICK)
    assert quiet.protocol["attempts"] == 1


def test_a_reference_slower_than_its_baseline_is_measured_again_then_flagged(
    setup: tuple[Normaliser, MemoryBaselines, str],
) -> None:
    normaliser, baselines, model = setup
    # a baseline no run can reach: the machine looks in a slow spell every time
    baselines.put(DEVICE, "fp32", 1e-6)
    slow = normaliser(model, DEVICE, ["fp32"], QUICK)
    assert slow.protocol["attempts"] == ATTEMPTS
    assert not slow.stable
    assert slow.median_ms == pytest.approx(
        slow.protocol["raw_median_ms"] * 1e-6 / slow.protocol["reference"]["median_ms"]
    )
