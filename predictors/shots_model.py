"""A device's own model of its shots, with a prior from the basis devices: capacity that
grows with every measurement.

Few-shot transfer (:mod:`predictors.transfer`) explains a new device through the basis
devices' latencies, so it can never rank designs better than the span of those devices
allows: on a device whose runtime is unlike every registered one (another implementation of
the same networks), it stays near 0.85 Spearman however many designs the user measures. The
information is in the measurements: latency is close to linear in a design's own features
(which kernels it runs, see ``SearchSpace.encode``), with runtime-specific costs.

This model is kernel ridge regression of log-latency on the design's own features, with:

- a *population prior*: each basis device's linear costs over those features are fitted once,
  and their spread across devices is the covariance of a new device's costs (a hierarchical
  prior: a few shots move the costs along the directions in which devices differ);
- an isotropic linear part and an RBF part, so a device unlike every basis device can still
  be fitted once it has measured enough designs;
- a free intercept and a free multiple of the population's mean costs.

Kernel weights and the ridge penalty are chosen by closed-form leave-one-out error on the
shots, which is also what :mod:`predictors.transfer` stacks it with.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

# Grids searched by leave-one-out on the shots (weights of the population, linear and RBF
# kernels, and the ridge penalty); chosen on the family held-out suite.
POPULATION = (0.3, 1.0, 3.0, 10.0)
LINEAR = (0.0, 0.3, 1.0, 3.0)
RBF = (0.0, 1.0)
BLOCK = (0.0, 1.0, 3.0)  # weights of a linear kernel over one block of the features
# Shots with which the blocks' kernels join the grid: with fewer, the wider grid's
# leave-one-out choice is mostly noise (it lowered the standard NB201 split at 10 shots);
# from 20 they pay (``benchmarks/families.py`` at 20-200 shots); past 200 a device is due
# its own model, and an answer would wait for a grid three times the size on cubic fits
BLOCK_SHOTS = (20, 200)
PENALTY = (0.01, 0.1, 1.0)
POPULATION_ROWS = 4000  # designs per basis device used to fit its linear costs
POPULATION_RIDGE = 1.0

Predictor = Callable[[np.ndarray], np.ndarray]
Gram = Callable[[np.ndarray, np.ndarray], np.ndarray]
Block = tuple[int, int]  # columns [start, stop) of the design features


@dataclass(frozen=True)
class DesignFeatures:
    """The designs' own features and the blocks of columns a device's costs may follow alone.

    A block is a way of counting the work that one kind of runtime follows and another
    does not: on NB201, runtimes that remove dead code follow the kernels a cell executes,
    while one that runs every edge follows the per-edge ops. A linear kernel over each
    block, weighted by leave-one-out on the shots like the others, lets a few shots say
    which count a device follows. A bare array is features with no blocks.
    """

    matrix: np.ndarray
    blocks: tuple[Block, ...] = ()

    def __len__(self) -> int:
        return len(self.matrix)

    def rows(self, rows: np.ndarray) -> DesignFeatures:
        return DesignFeatures(self.matrix[rows], self.blocks)


def as_design_features(features: np.ndarray | DesignFeatures) -> DesignFeatures:
    return features if isinstance(features, DesignFeatures) else DesignFeatures(features)


def standardise_columns(x: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-variance columns; constant columns are dropped (they carry nothing)."""
    sd = x.std(0)
    keep = sd > 1e-9
    return (x[:, keep] - x[:, keep].mean(0)) / sd[keep]


def _rbf(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = a.shape[1]
    sq = (a**2).sum(1)[:, None] + (b**2).sum(1)[None] - 2 * a @ b.T
    return np.exp(-np.maximum(sq, 0) / d)


def _linear(x: np.ndarray) -> Gram:
    d = x.shape[1]
    return lambda a, b: x[a] @ x[b].T / d


@dataclass
class DesignPrior:
    """The design features of a basis and the population of the basis devices' costs over them.

    ``features``: designs x design features (standardised here), with their blocks;
    ``log_latency``: designs x basis devices (NaN where not measured).
    """

    features: np.ndarray | DesignFeatures
    log_latency: np.ndarray
    seed: int = 0
    phi: np.ndarray = field(init=False)
    block_phi: list[np.ndarray] = field(init=False)  # each block's columns, standardised
    mean_cost: np.ndarray = field(init=False)  # the population's mean costs, per design
    population: np.ndarray = field(init=False)  # designs x d: phi @ chol(covariance)

    def __post_init__(self) -> None:
        features = as_design_features(self.features)
        matrix = np.asarray(features.matrix, dtype=float)
        self.phi = standardise_columns(matrix)
        self.block_phi = [standardise_columns(matrix[:, a:b]) for a, b in features.blocks]
        n, d = self.phi.shape
        rng = np.random.default_rng(self.seed)
        costs = []
        for j in range(self.log_latency.shape[1]):
            y = self.log_latency[:, j]
            seen = np.flatnonzero(np.isfinite(y))
            if len(seen) < 2 * d:
                continue
            seen = rng.choice(seen, size=min(POPULATION_ROWS, len(seen)), replace=False)
            x = self.phi[seen]
            target = y[seen] - y[seen].mean()
            costs.append(np.linalg.solve(x.T @ x + POPULATION_RIDGE * np.eye(d), x.T @ target))
        if len(costs) >= 2:
            w = np.array(costs)
            cov = np.cov(w.T)
            cov *= d / max(float(np.trace(cov)), 1e-12)
            self.mean_cost = self.phi @ w.mean(0)
            self.population = self.phi @ np.linalg.cholesky(cov + 1e-6 * np.eye(d))
        else:  # no population to learn from: the isotropic kernels alone
            self.mean_cost = np.zeros(n)
            self.population = np.zeros((n, d))

    @property
    def n_designs(self) -> int:
        return len(self.phi)

    def kernels(self, blocks: bool = True) -> list[tuple[tuple[float, ...], Gram]]:
        """(weight grid, Gram function of two row sets) per kernel; ``blocks``: with a linear
        kernel per block of the features."""
        d = self.phi.shape[1]
        pop, phi = self.population, self.phi
        kernels: list[tuple[tuple[float, ...], Gram]] = [
            (LINEAR, lambda a, b: phi[a] @ phi[b].T / d),
            (RBF, lambda a, b: _rbf(phi[a], phi[b])),
        ]
        if pop.any():  # without a population its kernel is zero: a weight on it fits nothing
            kernels.insert(0, (POPULATION, lambda a, b: pop[a] @ pop[b].T / d))
        for block in self.block_phi if blocks else []:
            if block.shape[1]:
                kernels.append((BLOCK, _linear(block)))
        return kernels


@dataclass(frozen=True)
class ShotsFit:
    """A fitted shots model: log-latency predictor and its leave-one-out errors on the shots."""

    predict: Predictor = field(repr=False)
    loo: np.ndarray  # predicted minus measured log-latency, each shot left out
    weights: tuple[float, ...]
    penalty: float


def _solve(k: np.ndarray, f: np.ndarray, y: np.ndarray, penalty: float):
    """Kernel ridge with unpenalised fixed effects ``f``; closed-form leave-one-out errors."""
    n = len(y)
    a_inv = np.linalg.inv(k + penalty * np.eye(n))
    m = f.T @ a_inv @ f + 1e-9 * np.eye(f.shape[1])
    b = np.linalg.solve(m, f.T @ a_inv)
    hat = f @ b + k @ a_inv @ (np.eye(n) - f @ b)
    beta = b @ y
    alpha = a_inv @ (y - f @ beta)
    loo = (hat @ y - y) / np.maximum(1 - np.diag(hat), 1e-6)
    return beta, alpha, loo


def fit_shots(prior: DesignPrior, shots: np.ndarray, log_measured: np.ndarray) -> ShotsFit:
    """The kernel and penalty with the lowest leave-one-out error on the shots, fitted."""
    shots = np.asarray(shots, dtype=int)
    y = np.asarray(log_measured, dtype=float)
    fixed_all = np.c_[np.ones(prior.n_designs), prior.mean_cost]
    fixed = fixed_all[shots]
    kernels = prior.kernels(blocks=BLOCK_SHOTS[0] <= len(shots) <= BLOCK_SHOTS[1])
    grams = [fn(shots, shots) for _, fn in kernels]
    best: tuple | None = None
    for weights in itertools.product(*[grid for grid, _ in kernels]):
        if not any(weights):
            continue
        k = np.sum([w * g for w, g in zip(weights, grams, strict=True)], axis=0)
        for penalty in PENALTY:
            beta, alpha, loo = _solve(k, fixed, y, penalty)
            score = float(np.mean(loo**2))
            if best is None or score < best[0]:
                best = (score, weights, penalty, beta, alpha, loo)
    assert best is not None
    _, weights, penalty, beta, alpha, loo = best

    def predict(rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=int)
        k = np.sum(
            [w * fn(rows, shots) for w, (_, fn) in zip(weights, kernels, strict=True) if w], axis=0
        )
        return fixed_all[rows] @ beta + k @ alpha

    return ShotsFit(predict, loo, tuple(weights), penalty)
