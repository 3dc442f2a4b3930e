"""A device's latency under per-unit policies it never measured, from those it did."""

from __future__ import annotations

import numpy as np
import pytest

from search.policy import named_mixed, unit_precisions, units
from search.policy_latency import (
    Measured,
    fit_policy_model,
    predict,
    switches,
    unit_work,
)
from search.spaces import get_space

MIXED = named_mixed("nb201")


def synthetic(designs: list[str], policies: list[str]) -> Measured:
    """int8 halves the work of the units it covers; each precision switch costs 0.05 ms."""
    work = 0.1 + np.array(
        [9.0 * d.count("nor_conv_3x3") + d.count("nor_conv_1x1") for d in designs]
    )
    shares = _shares("nb201", designs)
    rows_d, rows_p, values = [], [], []
    for policy in policies:
        mask = np.array([p == "int8" for p in unit_precisions("nb201", policy)], dtype=float)
        switches = np.abs(np.diff(np.r_[0, mask, 0])).sum()
        values += list(work * (1 - 0.5 * shares @ mask) + 0.05 * switches)
        rows_d += designs
        rows_p += [policy] * len(designs)
    return Measured(rows_d, rows_p, np.array(values))


def test_a_policy_never_measured_is_answered_within_its_interval() -> None:
    designs = get_space("nb201").sample(np.random.default_rng(0), 300)
    measured = synthetic(designs, ["fp32", "int8", MIXED["body-int8"], MIXED["stage1-int8"]])
    model = fit_policy_model("nb201", measured)
    checks = model.quality["held_out_policies"]
    assert set(checks) == {MIXED["body-int8"], MIXED["stage1-int8"]}
    assert all(c["within_10pct"] > 0.3 for c in checks.values())
    unseen = MIXED["stage3-int8"]
    truth = synthetic(designs[:50], [unseen]).values
    centre, low, high = predict(model, "nb201", designs[:50], unseen)
    assert np.mean((truth >= low) & (truth <= high)) >= 0.8
    assert np.median(np.abs(centre / truth - 1)) < 0.1


def test_without_int8_or_a_mixed_policy_there_is_no_model() -> None:
    designs = get_space("nb201").sample(np.random.default_rng(0), 100)
    with pytest.raises(ValueError, match="no int8"):
        fit_policy_model("nb201", synthetic(designs, ["fp32"]))
    with pytest.raises(ValueError, match="one of them mixed"):
        fit_policy_model("nb201", synthetic(designs, ["fp32", "int8"]))


def _shares(space: str, designs: list[str]) -> np.ndarray:
    work = unit_work(space, designs)
    return work / work.sum(axis=1, keepdims=True)


def test_switches_count_quantize_and_dequantize_steps() -> None:
    assert switches("nb201", "fp32") == 0
    assert switches("nb201", "int8") == switches("nb201", MIXED["body-int8"]) == 2
    assert switches("nb201", MIXED["ends-int8"]) == 4  # two int8 blocks


def test_unit_work_is_positive_per_unit() -> None:
    fbnet = get_space("fbnet").sample(np.random.default_rng(0), 3)
    for space, designs in (("nb201", get_space("nb201").sample(np.random.default_rng(0), 3)),
                           ("fbnet", fbnet)):  # fmt: skip
        work = unit_work(space, designs)
        assert work.shape == (3, len(units(space))) and (work >= 0).all()
        assert (work[:, 0] > 0).all()  # the stem always works
