"""What a quantization policy costs in accuracy: a model of the change from fp32.

Quantized accuracy is measured for few designs and datasets (EdgeOpt's own post-training
int8 ONNX Runtime models on digits, records users upload), fp32 accuracy for many. So a
policy's accuracy is answered as the design's fp32 accuracy plus a predicted *change*,
learned from every measured (design, policy) pair whose fp32 accuracy was measured too. The
change depends on the design (which kernels are quantized) and on the policy (which units),
so the features are the space's design encoding plus the policy's per-unit int8 mask: one
model covers every per-unit policy, including ones never measured.

The held-out split is by design, not by pair: a design's other policies would otherwise
tell the model its fp32 accuracy level. The interval is split conformal on those held-out
designs, as the other predictors' are.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from predictors.design_model import PARAMS, DesignModel, cross_coverage
from predictors.intervals import conformal_quantile
from search.policy import unit_precisions
from search.spaces import get_space

MIN_PAIRS = 50
HELD_OUT_DESIGNS = 0.2
# Changes are small next to the noise of a few hundred test images: shallow, slow trees
# that need many pairs per leaf, so the model says "about the mean" unless data disagree.
CHANGE_PARAMS: dict[str, Any] = {
    **PARAMS,
    "objective": "huber",
    "alpha": 1.0,
    "learning_rate": 0.05,
    "num_leaves": 8,
    "min_data_in_leaf": 40,
}
ROUNDS = 150

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Pairs:
    """Measured quantized accuracies beside the same design's fp32 accuracy (points)."""

    designs: list[str]
    policies: list[str]
    fp32: np.ndarray
    quantized: np.ndarray

    @property
    def change(self) -> np.ndarray:
        return self.quantized - self.fp32

    def __len__(self) -> int:
        return len(self.designs)

    def take(self, rows: np.ndarray) -> Pairs:
        return Pairs(
            [self.designs[i] for i in rows],
            [self.policies[i] for i in rows],
            self.fp32[rows],
            self.quantized[rows],
        )


def pairs_from_records(records: Iterable[tuple[str, str, float]]) -> Pairs:
    """Every (design, policy other than fp32) whose fp32 accuracy is also recorded.

    ``records``: (design, canonical policy, top-1) rows of one space and dataset.
    """
    by_design: dict[str, dict[str, float]] = {}
    for design, policy, top1 in records:
        by_design.setdefault(design, {})[policy] = float(top1)
    designs, policies, fp32, quantized = [], [], [], []
    for design, values in by_design.items():
        if "fp32" not in values:
            continue
        for policy, value in values.items():
            if policy != "fp32":
                designs.append(design)
                policies.append(policy)
                fp32.append(values["fp32"])
                quantized.append(value)
    return Pairs(designs, policies, np.array(fp32, dtype=float), np.array(quantized, dtype=float))


def int8_mask(space: str, policy: str) -> np.ndarray:
    """1 for each unit the policy runs in int8."""
    return np.array([p == "int8" for p in unit_precisions(space, policy)], dtype=float)


def features(space: str, designs: list[str], policies: list[str]) -> np.ndarray:
    """Each design's fp32 encoding, then its row's per-unit int8 mask.

    The encoding is the policy-free one (computed once per design, so 32 policies over a
    whole space cost one encoding); the trees find which units' int8 matters for which ops.
    """
    codec = get_space(space)
    masks = {p: int8_mask(space, p) for p in dict.fromkeys(policies)}
    return np.c_[codec.encode(designs, "fp32"), np.stack([masks[p] for p in policies])]


def policy_features(space: str, designs: list[str], policy: str) -> np.ndarray:
    """:func:`features` for many designs under one policy (the service's case)."""
    encoded = get_space(space).encode(designs, "fp32")
    return np.c_[encoded, np.tile(int8_mask(space, policy), (len(designs), 1))]


def _train(x: np.ndarray, y: np.ndarray, seed: int) -> Any:
    import lightgbm as lgb

    return lgb.train({**CHANGE_PARAMS, "seed": seed}, lgb.Dataset(x, y), num_boost_round=ROUNDS)


def split_by_design(pairs: Pairs, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (held out, fit): a random HELD_OUT_DESIGNS share of the designs."""
    unique = sorted(set(pairs.designs))
    rng = np.random.default_rng(seed)
    held = set(rng.permutation(unique)[: max(1, int(len(unique) * HELD_OUT_DESIGNS))])
    mask = np.array([d in held for d in pairs.designs])
    return np.flatnonzero(mask), np.flatnonzero(~mask)


def change_quality(
    predicted: Arrays, measured: np.ndarray, fit_change: np.ndarray, fit_policies: list[str],
    policies: list[str],
) -> dict[str, float | None]:  # fmt: skip
    """Held-out figures beside the two baselines: "no change" and each policy's mean change.

    A Spearman is None where a side is constant (it ranks nothing), not NaN: the figures
    are stored as JSON."""
    from scipy.stats import spearmanr

    centre, low, high = predicted
    means = {p: float(np.mean(fit_change[np.array(fit_policies) == p])) for p in set(fit_policies)}
    overall = float(np.mean(fit_change)) if len(fit_change) else 0.0
    policy_mean = np.array([means.get(p, overall) for p in policies])

    def rank(guess: np.ndarray) -> float | None:
        if np.ptp(guess) == 0 or np.ptp(measured) == 0:
            return None
        rho = float(spearmanr(guess, measured)[0])
        return rho if np.isfinite(rho) else None

    return {
        "mae": float(np.mean(np.abs(centre - measured))),
        "mae_no_change": float(np.mean(np.abs(measured))),
        "mae_policy_mean": float(np.mean(np.abs(policy_mean - measured))),
        "spearman": rank(centre),
        "spearman_policy_mean": rank(policy_mean),
        "interval_coverage": float(np.mean((measured >= low) & (measured <= high))),
        "mean_change": float(np.mean(measured)),
        "mean_abs_change": float(np.mean(np.abs(measured))),
    }


def fit_change_model(space: str, pairs: Pairs, seed: int = 0) -> DesignModel:
    """Fit on 80% of the designs, measure on the rest, refit on all.

    Returns a :class:`DesignModel` (its LightGBM text and JSON artifact) whose targets are
    changes in points; ``quality`` holds the held-out figures beside the baselines.
    """
    if len(pairs) < MIN_PAIRS:
        raise ValueError(
            f"an accuracy-change model needs at least {MIN_PAIRS} designs measured both in "
            f"fp32 and quantized, got {len(pairs)}"
        )
    x = features(space, pairs.designs, pairs.policies)
    y = pairs.change
    held, fit = split_by_design(pairs, seed)
    booster = _train(x[fit], y[fit], seed)
    bounds = (float(y[fit].min()), float(y[fit].max()))
    model = DesignModel(booster, 0.0, {}, False, value_range=bounds)
    guess = model.predict(x[held])[0]
    error = np.abs(guess - y[held])
    # conformal on held-out designs; its coverage scored on the half that did not set it
    model.half_width = conformal_quantile(error)
    rng = np.random.default_rng(seed)
    centre, low, high = model.predict(x[held])
    held_policies = [pairs.policies[i] for i in held]
    fit_policies = [pairs.policies[i] for i in fit]
    figures: dict[str, Any] = dict(
        change_quality((centre, low, high), y[held], y[fit], fit_policies, held_policies)
    )
    figures["coverage"] = cross_coverage(error, rng)
    figures["held_out"] = len(held)
    figures["held_out_designs"] = len({pairs.designs[i] for i in held})
    figures["trained_on"] = len(y)
    figures["policies"] = len(set(pairs.policies))
    full = _train(x, y, seed)
    keep = rng.permutation(len(held))[:2000]
    scatter = {
        "measured": y[held][keep].tolist(),
        "predicted": centre[keep].tolist(),
        "low": low[keep].tolist(),
        "high": high[keep].tolist(),
        "policy": [held_policies[i] for i in keep],
    }
    bounds = (float(y.min()), float(y.max()))
    return DesignModel(full, model.half_width, figures, False, scatter, bounds)


def combine(fp32: Arrays, change: Arrays) -> Arrays:
    """Quantized accuracy: fp32 accuracy plus its change, the two intervals' half-widths
    added in quadrature (their errors come from different models and data). A recorded
    fp32 accuracy (zero width) keeps the change's interval."""
    centre = fp32[0] + change[0]
    below = np.hypot(fp32[0] - fp32[1], change[0] - change[1])
    above = np.hypot(fp32[2] - fp32[0], change[2] - change[0])
    return centre, centre - below, centre + above
