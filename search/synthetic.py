"""Synthetic devices: latency tables drawn from a generator fitted to the real devices.

A registry holds a few dozen real devices at most, too few to teach a network that maps a
device to its best design. The generator describes each real device by what makes it that
device, and draws new ones from the spread of those descriptions:

- **per-option costs and a launch overhead**: latency relative to the device's median as
  ``overhead + sum of the cost of the option taken at each decision`` (non-negative least
  squares over the one-hot decisions: NB201's op per edge, FBNet's block per layer);
- **what the additive form misses** (fusion, pruned dead work, memory effects): the
  device's log residual against that fit, per design;
- **speed**: the device's median latency.

A synthetic device blends the real devices' log costs with sparse random weights
(Dirichlet), jitters each cost by its robust spread across real devices, blends the
residuals with independent weights, and draws a speed from the real range. Whether that
looks real is measured, not assumed: :func:`realism` compares the distribution of pairwise
rank agreement (Spearman) among synthetic devices, and between synthetic and real ones,
with the real devices' own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_FLOOR = 1e-4  # smallest relative cost kept (an option that costs nothing measurable)
# Blend weights ~ Dirichlet(CONCENTRATION): small values blend few real devices at a time.
# Each log cost then moves by JITTER x its robust spread across the real devices (1.4826 x
# the median absolute deviation): an option whose cost one device's fit puts at the floor
# makes a standard deviation, and with it the draws, wild. On a registry of 21 devices'
# model-predicted tables the realism distance (``edgeopt optimizer list``) fell from 0.22
# with the standard deviation to 0.03; on the reference tables both score alike.
CONCENTRATION = 0.2
JITTER = 1.0


def one_hot(options: np.ndarray, choices: list[int]) -> np.ndarray:
    """Designs x (sum of choices) indicator of the option taken at each decision."""
    offsets = np.r_[0, np.cumsum(choices)[:-1]]
    out = np.zeros((len(options), int(sum(choices))), dtype=np.float32)
    rows = np.repeat(np.arange(len(options)), len(choices))
    out[rows, (options + offsets).ravel()] = 1.0
    return out


@dataclass(frozen=True)
class DeviceGenerator:
    """What was fitted on the real devices; :meth:`sample` draws new latency tables."""

    x: np.ndarray  # designs x (1 + options): intercept and one-hot decisions
    log_costs: np.ndarray  # real devices x (1 + options), relative to each device's median
    residuals: np.ndarray  # designs x real devices, log(latency / additive fit)
    log_speed: np.ndarray  # real devices' log median latency (ms)
    names: list[str]

    @classmethod
    def fit(cls, onehot: np.ndarray, latency_ms: np.ndarray, names: list[str]) -> DeviceGenerator:
        """Fit on real devices measured on every design (columns with holes are refused)."""
        from scipy.optimize import nnls

        if not np.isfinite(latency_ms).all() or (latency_ms <= 0).any():
            raise ValueError("the generator is fitted on devices that measured every design")
        if latency_ms.shape[1] < 2:
            raise ValueError("the generator needs at least 2 real devices")
        x = np.c_[np.ones(len(onehot)), onehot].astype(float)
        medians = np.median(latency_ms, axis=0)
        costs, residuals = [], []
        for j in range(latency_ms.shape[1]):
            y = latency_ms[:, j] / medians[j]
            coef, _ = nnls(x, y, maxiter=50 * x.shape[1])
            coef = np.maximum(coef, _FLOOR)
            costs.append(np.log(coef))
            residuals.append(np.log(y) - np.log(x @ coef))
        return cls(x, np.array(costs), np.array(residuals).T, np.log(medians), list(names))

    def sample(self, n: int, rng: np.random.Generator, jitter: float = JITTER) -> np.ndarray:
        """``n`` synthetic devices' latencies (designs x n, ms).

        ``jitter``: each log cost moves by this many robust spreads across the real devices,
        so a synthetic device is a plausible neighbour of the real ones, not a copy.
        """
        real = len(self.names)
        mix = rng.dirichlet(np.full(real, CONCENTRATION), size=n)
        centre = np.median(self.log_costs, axis=0)
        spread = 1.4826 * np.median(np.abs(self.log_costs - centre), axis=0)
        log_costs = mix @ self.log_costs + rng.normal(size=(n, len(spread))) * jitter * spread
        additive = self.x @ np.exp(log_costs).T  # designs x n
        blend = rng.dirichlet(np.full(real, CONCENTRATION), size=n)
        strength = rng.uniform(0.7, 1.3, size=n)
        residual = (self.residuals @ blend.T) * strength
        speed = np.exp(rng.uniform(self.log_speed.min(), self.log_speed.max(), size=n))
        return additive * np.exp(residual) * speed


def spearman_matrix(latency: np.ndarray) -> np.ndarray:
    """Spearman correlation between every pair of columns (devices) over the rows."""
    ranks = np.argsort(np.argsort(latency, axis=0), axis=0).astype(float)
    return np.corrcoef(ranks, rowvar=False)


def realism(real_ms: np.ndarray, synthetic_ms: np.ndarray) -> dict[str, float]:
    """How far the synthetic devices' rank agreement is from the real devices'.

    Distances are 1-Wasserstein between distributions of pairwise Spearman: synthetic pairs
    and synthetic-to-real pairs, each against real pairs. Beside them the real pairs'
    spread (standard deviation) and their range, the scale a distance should be read on.
    """
    from scipy.stats import wasserstein_distance

    both = spearman_matrix(np.c_[real_ms, synthetic_ms])
    r = real_ms.shape[1]
    upper = np.triu_indices(r, 1)
    real_pairs = both[:r, :r][upper]
    synth = both[r:, r:]
    synth_pairs = synth[np.triu_indices(len(synth), 1)]
    cross = both[r:, :r].ravel()
    return {
        "real_devices": float(r),
        "synthetic_devices": float(len(synth)),
        "real_mean": float(real_pairs.mean()),
        "real_std": float(real_pairs.std()),
        "real_min": float(real_pairs.min()),
        "synthetic_mean": float(synth_pairs.mean()),
        "synthetic_std": float(synth_pairs.std()),
        "cross_mean": float(cross.mean()),
        "distance_synthetic": float(wasserstein_distance(synth_pairs, real_pairs)),
        "distance_cross": float(wasserstein_distance(cross, real_pairs)),
    }
