"""The accuracy-change model: what a quantization policy costs a design, with an interval."""

from __future__ import annotations

import numpy as np
import pytest

from search.accuracy_change import (
    MIN_PAIRS,
    Pairs,
    combine,
    fit_change_model,
    pairs_from_records,
    policy_features,
)
from search.policy import expand, named_mixed, per_unit_policies, random_mixed
from search.spaces import get_space

BODY = named_mixed("nb201")["body-int8"]


def _convs(design: str) -> int:
    return design.count("nor_conv_3x3")


def synthetic_pairs(n: int, seed: int = 0) -> Pairs:
    """Designs lose a point per 3x3 convolution when stage 3 runs in int8, plus noise."""
    rng = np.random.default_rng(seed)
    designs = get_space("nb201").sample(rng, n)
    records = []
    for d in designs:
        fp32 = 90 + rng.normal()
        records.append((d, "fp32", fp32))
        for policy in ("int8", BODY, named_mixed("nb201")["stage1-int8"]):
            hit = policy in ("int8", BODY)
            records.append((d, policy, fp32 - hit * _convs(d) + rng.normal(0, 0.1)))
    return pairs_from_records(records)


def test_pairs_keep_designs_whose_fp32_accuracy_is_known() -> None:
    records = [("a", "fp32", 90.0), ("a", "int8", 89.0), ("b", "int8", 70.0)]
    pairs = pairs_from_records(records)
    assert pairs.designs == ["a"] and pairs.policies == ["int8"]
    assert pairs.change.tolist() == [-1.0]


def test_the_change_model_learns_which_units_cost_accuracy() -> None:
    pairs = synthetic_pairs(300)
    model = fit_change_model("nb201", pairs)
    q = model.quality
    assert q["mae"] < 0.5 * q["mae_no_change"]  # beats "int8 costs nothing"
    assert q["mae"] < q["mae_policy_mean"]  # and each policy's mean cost
    assert q["spearman"] > 0.8
    assert 0.75 <= q["coverage"] <= 1.0
    convs3 = (
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|nor_conv_3x3~0|skip_connect~1|none~2|"
    )
    for policy, expected in (("int8", -3.0), (named_mixed("nb201")["stage1-int8"], 0.0)):
        centre, low, high = model.predict(policy_features("nb201", [convs3], policy))
        assert centre[0] == pytest.approx(expected, abs=1.0)
        assert low[0] <= centre[0] <= high[0]


def test_too_few_pairs_are_refused_with_the_count() -> None:
    with pytest.raises(ValueError, match=f"at least {MIN_PAIRS}"):
        fit_change_model("nb201", synthetic_pairs(5))


def test_combined_intervals_add_in_quadrature() -> None:
    fp32 = (np.array([90.0, 80.0]), np.array([87.0, 80.0]), np.array([93.0, 80.0]))
    change = (np.array([-1.0, -1.0]), np.array([-5.0, -5.0]), np.array([3.0, 3.0]))
    centre, low, high = combine(fp32, change)
    assert centre.tolist() == [89.0, 79.0]
    assert low[0] == pytest.approx(89 - 5) and high[0] == pytest.approx(89 + 5)
    assert (low[1], high[1]) == (75.0, 83.0)  # a recorded fp32: the change's interval


def test_every_nb201_policy_and_fbnets_named_ones() -> None:
    policies = per_unit_policies("nb201")
    assert len(policies) == 32 and len(set(policies)) == 32
    assert policies[0] == "fp32" and policies[-1] == "int8"
    assert expand("nb201", ["per-unit", "fp32"]) == policies
    fbnet = expand("fbnet", ["per-unit"])  # 2**24: named, not enumerated
    assert fbnet[:2] == ["fp32", "int8"] and len(fbnet) == 2 + len(named_mixed("fbnet"))
    with pytest.raises(ValueError, match="study"):
        per_unit_policies("fbnet")
    drawn = random_mixed("fbnet", np.random.default_rng(0), 3)
    assert len(set(drawn)) == 3 and all("int8" in p and "fp32" in p for p in drawn)
