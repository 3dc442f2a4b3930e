"""The host normaliser: real exports and timings, with a baseline set by hand."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devices.measure import Protocol, Result, measure
from devices.normaliser import (
    ATTEMPTS,
    BASELINE_RUNS,
    REFERENCE_DESIGN,
    REFERENCE_SPACE,
    SLOW_SPELL,
    MachineBusy,
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


def scripted(medians: list[float | None]) -> tuple[Callable[..., Result], list[str]]:
    """A ``measure`` that times each run as scripted: None is a run beside busy work (1.5
    cores of it), the last entry repeats; and the models it was asked to time."""
    asked: list[str] = []

    def timed(model: str, protocol: Protocol, reference: str | None = None) -> Result:
        asked.append(model)
        ms = medians[min(len(asked), len(medians)) - 1]
        limits: dict[str, Any] = {"max_foreign_load": protocol.max_foreign_load}
        load = 1.5 if ms is None else 0.0
        return Result(ms or 9.0, 0.01, 30, ms is not None, limits, foreign_load=load)

    return timed, asked


BUSY = Protocol(threads=1)  # the default limit: 0.25 cores of other work


def test_a_quiet_machine_times_the_baseline_at_once() -> None:
    timed, asked = scripted([2.0, 2.2, 2.1])
    told: list[tuple[float, float | None]] = []
    baselines = MemoryBaselines()
    normaliser = Normaliser(
        timed, lambda policy: "ref.onnx", baselines, 60, lambda s, load: told.append((s, load))
    )
    assert normaliser.baseline(DEVICE, "fp32", BUSY) == pytest.approx(2.1)  # median of three
    assert len(asked) == BASELINE_RUNS and told == []
    assert baselines.get(DEVICE, "fp32") == pytest.approx(2.1)


def test_a_busy_machine_is_waited_for_with_progress_until_it_quietens() -> None:
    timed, asked = scripted([None, None, 2.0, 2.4, 2.2])
    told: list[tuple[float, float | None]] = []
    baselines = MemoryBaselines()
    normaliser = Normaliser(
        timed, lambda policy: "ref.onnx", baselines, 60, lambda s, load: told.append((s, load))
    )
    # two busy runs, a pause after each, then the first quiet run is the baseline
    assert normaliser.baseline(DEVICE, "fp32", BUSY) == pytest.approx(2.0)
    assert asked == ["ref.onnx"] * 3
    assert told and all(load == 1.5 for _, load in told)
    waited = [s for s, _ in told]
    assert waited == sorted(waited) and waited[-1] >= 0.5  # the first pause, at least
    assert baselines.get(DEVICE, "fp32") == pytest.approx(2.0)


def test_a_machine_busy_for_the_whole_wait_gives_up_and_keeps_no_baseline() -> None:
    timed, asked = scripted([None])
    told: list[tuple[float, float | None]] = []
    baselines = MemoryBaselines()
    normaliser = Normaliser(
        timed, lambda policy: "ref.onnx", baselines, 2.0, lambda s, load: told.append((s, load))
    )
    with pytest.raises(MachineBusy, match="other processes kept the CPU busy") as busy:
        normaliser.baseline(DEVICE, "fp32", BUSY)
    assert busy.value.waited_s >= 2.0 and busy.value.load == 1.5
    assert busy.value.runs == len(asked) >= 3  # timed again after each pause
    assert told and max(s for s, _ in told) < 2.0
    assert baselines.get(DEVICE, "fp32") is None

    # no wait at all: the first busy run gives up
    timed, asked = scripted([None])
    with pytest.raises(MachineBusy):
        Normaliser(timed, lambda policy: "ref.onnx", baselines, 0).baseline(DEVICE, "int8", BUSY)
    assert len(asked) == 1
