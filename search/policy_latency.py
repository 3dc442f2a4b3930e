"""Latency of any per-unit policy on a device, learned from the policies it measured.

A device measures a few policies (fp32, int8, one or two mixed); NB201 has 32 per-unit
policies, FBNet 2**24. One model over all of a device's measured policies, whose features
say which units run in int8 and how much of the design's work sits there, answers the
others. Its interval for a policy the device never ran is set by holding out each measured
mixed policy in turn (fit on the rest, judged on it): the error of answering a policy from
other policies, not the smaller error of a policy whose own designs were trained on.

A device without int8 measurements gets no such model: nothing it measured says what int8
costs there.

The service does not serve it. Judged on this project's own CPU runtime
(``benchmarks/policy_latency.py``: fp32, int8 and the five named mixed policies measured
in one run), a model over fp32, int8 and one to three mixed policies put the policies it
never saw at 0.6x to 1.75x their measured latency (medians), its 90% interval covering as
few as 67% of them:
which units run in int8 moves ONNX Runtime's latency in ways the work shares do not carry.
A policy's latency is answered only where a device measured that policy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from predictors.design_model import DesignModel, fit_design_model
from predictors.intervals import conformal_quantile
from search.kernels import CELLS
from search.policy import unit_precisions
from search.spaces import FBNet, get_space

MIN_POLICIES = 3  # fp32, int8 and a mixed one at least: the mixed one is the check


def unit_work(space: str, designs: list[str]) -> np.ndarray:
    """Each design's work per unit (designs x units), in a space's own rough unit.

    NB201: a 3x3 convolution is 9 times a 1x1, a pool about half a 1x1, every stage's cells
    cost alike (channels double as the resolution halves), the stem is one 3x3 convolution
    and the head a pooling and a small matrix product. FBNet: each block's multiply-adds.
    """
    if space == "nb201":
        rows = []
        for d in designs:
            cell = 9.0 * d.count("nor_conv_3x3") + d.count("nor_conv_1x1")
            cell += 0.5 * d.count("avg_pool_3x3")
            rows.append([1.0, *([CELLS * cell + 1.0] * 3), 0.1])
        costs = np.array(rows)
    elif space == "fbnet":
        codec = get_space("fbnet")
        assert isinstance(codec, FBNet)
        layers = codec.layers()
        stem = 3 * codec.STEM_CHANNELS * 9 * codec.INPUT_SIZE**2
        head = layers[-1][2] * 10.0
        rows = []
        for d in designs:
            blocks = zip(d.split("-"), layers, strict=True)
            rows.append([stem, *(codec.block_cost(b, *layer[1:])[0] for b, layer in blocks), head])
        costs = np.array(rows)
    else:
        raise ValueError(f"space {space!r} has no quantization units")
    return costs / costs.sum(axis=1).mean()  # a scale shared by all designs


def features(space: str, designs: list[str], policy: str) -> np.ndarray:
    """The design encoding under ``policy``, its per-unit int8 mask, the share of the work
    each int8 unit holds, that share in total, the work in int8 and in fp32 units, and how
    often precision switches (each switch is a quantize or dequantize kernel).

    The two work columns let the linear part of a latency model (``design_model``) carry
    to policies it never saw: latency ~ a * fp32 work + b * int8 work + c * switches.
    """
    mask = _int8_mask(space, policy)
    work = unit_work(space, designs)
    shares = work / work.sum(axis=1, keepdims=True) * mask
    n = len(designs)
    return np.c_[
        get_space(space).encode(designs, policy),
        np.tile(mask, (n, 1)),
        shares,
        shares.sum(axis=1),
        work @ mask,
        work @ (1 - mask),
        np.full(n, float(switches(space, policy))),
    ]


def _int8_mask(space: str, policy: str) -> np.ndarray:
    return np.array([p == "int8" for p in unit_precisions(space, policy)], dtype=float)


def switches(space: str, policy: str) -> int:
    """Precision changes along the network, its ends counted (each is a quantize or a
    dequantize kernel): 0 for fp32, 2 for int8 or one int8 block, 4 for two blocks."""
    return int(np.abs(np.diff(np.r_[0.0, _int8_mask(space, policy), 0.0])).sum())


@dataclass(frozen=True)
class Measured:
    """A device's measurements of one metric: design, policy, value (and stable flags)."""

    designs: list[str]
    policies: list[str]
    values: np.ndarray

    def rows(self, policies: set[str]) -> np.ndarray:
        return np.flatnonzero(np.isin(np.array(self.policies), list(policies)))


def _encode(space: str, designs: list[str], policies: list[str]) -> np.ndarray:
    out: np.ndarray | None = None
    for policy in dict.fromkeys(policies):
        at = np.flatnonzero(np.array(policies) == policy)
        block = features(space, [designs[i] for i in at], policy)
        if out is None:
            out = np.zeros((len(designs), block.shape[1]))
        out[at] = block
    assert out is not None
    return out


def fit_policy_model(space: str, measured: Measured) -> DesignModel:
    """One model over every measured policy; ``half_width`` is the held-out-policy one.

    ``quality`` adds, per held-out mixed policy, the share within +-10% and the |log| error
    quantile, and ``unmeasured_half_width`` (their largest), which the interval uses.
    """
    kinds = sorted(set(measured.policies))
    mixed = [p for p in kinds if "," in p]
    if "int8" not in kinds and not mixed:
        raise ValueError("no int8 measurements: nothing says what int8 costs on this device")
    if len(kinds) < MIN_POLICIES or not mixed:
        raise ValueError(
            f"a per-unit latency model needs at least {MIN_POLICIES} measured policies, one of "
            f"them mixed (to check answers for policies never measured); got {kinds}"
        )
    x = _encode(space, measured.designs, measured.policies)
    y = measured.values
    checks = {}
    widths = []
    for policy in mixed:
        test = measured.rows({policy})
        train = measured.rows(set(kinds) - {policy})
        part = fit_design_model(x[train], y[train], additive=True)
        guess = part.predict(x[test])[0]
        error = np.abs(np.log(guess / y[test]))
        width = conformal_quantile(error)
        widths.append(width)
        checks[policy] = {
            "within_10pct": float(np.mean(np.abs(guess / y[test] - 1) <= 0.1)),
            "half_width": width,
            "designs": len(test),
        }
    model = fit_design_model(x, y, additive=True)
    model.quality = {
        **model.quality,
        "held_out_policies": checks,
        "unmeasured_half_width": max(widths),
        "policies": kinds,
    }
    model.half_width = max(model.half_width, max(widths))
    return model


def predict(model: DesignModel, space: str, designs: list[str], policy: str) -> tuple[
    np.ndarray, np.ndarray, np.ndarray
]:  # fmt: skip
    """Latency and interval of designs under a per-unit policy."""
    return model.predict(features(space, designs, policy))
