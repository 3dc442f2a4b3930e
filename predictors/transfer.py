"""Few-shot latency transfer: predict a new device from a handful of its measurements.

A new device's latency over a space is explained by two things we already have for every
design: its cost features (operator counts, per-stage MACs; latency on accelerators and large
batches is nearly linear in them) and the latencies of the registered *basis* devices (which
carry the runtime effects no cost count sees). Three small models are fitted on the shots and
averaged in log space, weighted by how well each predicts the shots left out one at a time:

- ``cost``: latency (ms) linear in cost features and basis latencies, relative-error weighted;
- ``log``: log-latency linear in log cost features and standardised basis log-latencies;
- ``devices``: log-latency linear in basis log-latencies (the ridge baseline's form).

The blend can never rank designs better than the span of the basis devices allows, so where
the basis carries the design's own features (``design_features``, e.g. ``SearchSpace.encode``)
it is stacked with the device's own shots model (:mod:`predictors.shots_model`), weighted by
both models' leave-one-out errors on the shots: a few shots lean on the basis, many on the
device's own evidence (on a runtime unlike the registry, 0.85 -> 0.93 Spearman at 200 shots).

Which designs to measure matters as much as the model: :meth:`TransferModel.choose_shots`
picks a D-optimal set over the cost features and the basis' main latency directions, so the
first shots span what varies, then spreads further shots over the design features (where
the shots model learns). Intervals blend two sources: the leave-one-out spread scaled by a
factor calibrated on the basis devices themselves (each one held out in turn), and the
prediction interval the device's own leave-one-out errors give (Student's t): weighted
towards the latter as shots accumulate, and never narrower than it (a device unlike the
basis shows it in its own errors, which the basis' calibration cannot see).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from predictors.intervals import LEVEL
from predictors.metrics import spearman
from predictors.shots_model import (
    DesignFeatures,
    DesignPrior,
    ShotsFit,
    as_design_features,
    fit_shots,
)

MIN_SHOTS = 3
_FLOOR = 1e-3  # relative floor for a linear prediction before taking logs
# Ridge penalties of the components (chosen on the standard splits; the figures are flat
# within a factor of 3 around them) and how many basis directions shot selection spans.
PENALTY = {"cost": 1e-2, "cost_basis": 0.5, "log_cost": 1e-1, "log_basis": 1.0, "devices": 1.0}
DIRECTIONS = 2
LOO_MAX = 60  # shots up to which errors are leave-one-out; ten folds beyond
# A basis device whose degenerate designs run in under a fifth of the others' median prunes
# dead work (pixel3 and raspi4 in the reference data: about 1/200).
PRUNED = float(np.log(0.2))
# Shots beyond which new shots are spread over the design features rather than D-optimal
# over the cost features and basis directions (the first ten keep the standard split's
# figures; past them D-optimal picks keep returning to the same extremes).
DOPT_SHOTS = 10
# The shots model's leave-one-out error is the minimum over a grid, so optimistic: it is
# counted as (1 + STACK_OPTIMISM / shots) times itself when stacked with the blend (chosen on
# the family suite: at 10 shots the in-family figures stay, out-of-family ones rise).
STACK_OPTIMISM = 20.0
MIN_STACK_SHOTS = 5  # fewer shots: the blend alone
STACK_SHOTS_MAX = 400  # the shots model fits a seeded sample of more (its cost is cubic)
SPREAD_KNOWN = 400  # measured designs that spreading new shots conditions on, at most
# The device's own evidence gets weight shots / (shots + OWN_EVIDENCE) in an interval, the
# basis-calibrated spread the rest; the interval is never narrower than the own evidence.
OWN_EVIDENCE = 20.0
# Shots explained well: leave-one-out Spearman and typical (median) relative error at least /
# at most these; poorly: below / above the second pair.
WELL = (0.9, 0.1)
POORLY = (0.75, 0.25)


def _ridge(x: np.ndarray, y: np.ndarray, penalty: np.ndarray, weight: np.ndarray | None = None):
    """Weighted ridge solve; ``penalty`` per column (0 leaves a column free)."""
    w = np.ones(len(y)) if weight is None else weight
    xw = x * w[:, None]
    return np.linalg.solve(xw.T @ x + np.diag(penalty) + 1e-9 * np.eye(x.shape[1]), xw.T @ y)


def _standardise(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1.0)


def _impute_log(latency_ms: np.ndarray, rounds: int = 5) -> np.ndarray:
    """Log-latency with holes (NaN) filled by regressing each device on the others.

    Devices agree strongly with some of their peers, so a linear fit on the rows a device
    did measure predicts its holes far better than a column mean; a few rounds let holes in
    several devices settle together.
    """
    logs = np.log(latency_ms)
    holes = ~np.isfinite(logs)
    if not holes.any():
        return logs
    if holes.all(axis=0).any():
        raise ValueError("a basis device has no measurement at all")
    filled = np.where(holes, np.nanmean(np.where(holes, np.nan, logs), axis=0), logs)
    if filled.shape[1] == 1:
        return filled
    for _ in range(rounds):
        for j in np.flatnonzero(holes.any(axis=0)):
            others = np.c_[np.ones(len(filled)), np.delete(filled, j, axis=1)]
            seen = ~holes[:, j]
            coef = _ridge(
                others[seen], logs[seen, j], np.r_[0.0, np.full(others.shape[1] - 1, 1e-3)]
            )
            filled[holes[:, j], j] = others[holes[:, j]] @ coef
    return filled


@dataclass
class TransferBasis:
    """Per-design inputs shared by every target device: cost features and basis latencies."""

    cost: np.ndarray  # designs x cost features (may have 0 columns)
    latency_ms: np.ndarray  # designs x basis devices, NaN where not measured
    names: list[str]
    degenerate: np.ndarray | None = None  # designs that compute nothing (see spaces)
    # the designs' own features (``SearchSpace.design_features``): the shots model learns
    # over them (a bare array: features with no blocks)
    design_features: np.ndarray | DesignFeatures | None = None
    # ``dead``: the degenerate designs kept apart from shots and fits, which is all of them
    # unless a basis device prunes dead work (then the basis models them like any design)
    dead: np.ndarray = field(init=False)  # ``degenerate`` as a mask (all False by default)
    log_latency: np.ndarray = field(init=False)
    z_latency: np.ndarray = field(init=False)
    directions: np.ndarray = field(init=False)
    prior: DesignPrior | None = field(init=False)

    def __post_init__(self) -> None:
        if self.latency_ms.ndim != 2 or self.latency_ms.shape[1] == 0:
            raise ValueError("transfer needs at least one basis device")
        if len(self.cost) != len(self.latency_ms):
            raise ValueError("cost features and basis latencies must cover the same designs")
        if (self.latency_ms[np.isfinite(self.latency_ms)] <= 0).any():
            raise ValueError("basis latencies must be positive")
        n = len(self.latency_ms)
        self.dead = (
            np.zeros(n, bool) if self.degenerate is None else np.asarray(self.degenerate, bool)
        )
        if self.dead.shape != (n,):
            raise ValueError("degenerate must mark every design of the basis")
        self.log_latency = _impute_log(self.latency_ms)
        if self.dead.any() and (~self.dead).any():
            dead, live = self.log_latency[self.dead], self.log_latency[~self.dead]
            if (np.median(dead, 0) - np.median(live, 0) < PRUNED).any():
                # a basis device prunes dead work, so the basis can say how a target treats
                # it: degenerate designs are informative rows like any other (on the
                # standard NB201 split, masking them anyway cost 0.974 -> 0.966)
                self.dead = np.zeros(n, bool)
        self.z_latency = _standardise(self.log_latency)
        u, s, _ = np.linalg.svd(self.z_latency, full_matrices=False)
        self.directions = u[:, :4] * s[:4] / np.sqrt(len(u))
        scale = self.cost.mean(0) if self.cost.size else np.ones(0)
        self._cost = self.cost / np.where(scale > 0, scale, 1.0)
        self._basis_ms = np.exp(self.log_latency - np.median(self.log_latency, axis=0))
        # the components' design matrices, built once: a fit only indexes rows of them
        # (building them per fit was most of an answer's time)
        ones = np.ones((n, 1))
        self._x_cost = np.hstack([ones, self._cost, self._basis_ms])
        self._x_log = np.hstack([ones, np.log1p(self._cost), self.z_latency])
        self._x_devices = np.hstack([ones, self.log_latency])
        self.prior = None
        if self.design_features is not None:
            self.design_features = as_design_features(self.design_features)
            if len(self.design_features) != n:
                raise ValueError("design features must cover the designs of the basis")
            with np.errstate(divide="ignore", invalid="ignore"):
                self.prior = DesignPrior(self.design_features, np.log(self.latency_ms))

    @property
    def n_designs(self) -> int:
        return len(self.latency_ms)

    def degenerate_mask(self) -> np.ndarray:
        """The designs that compute nothing, whether or not the basis models them apart."""
        if self.degenerate is None:
            return np.zeros(self.n_designs, dtype=bool)
        return np.asarray(self.degenerate, dtype=bool)

    def features(self) -> DesignFeatures:
        """The design features with their blocks (ValueError for a basis without them)."""
        if self.design_features is None:
            raise ValueError("this basis carries no design features")
        return as_design_features(self.design_features)

    def without(self, column: int) -> TransferBasis:
        """The same basis with one device held out (to calibrate on the basis itself)."""
        keep = [j for j in range(self.latency_ms.shape[1]) if j != column]
        return TransferBasis(
            self.cost,
            self.latency_ms[:, keep],
            [self.names[j] for j in keep],
            self.degenerate,
            self.design_features,
        )

    def rows(self, rows: np.ndarray) -> TransferBasis:
        """The same basis over a subset of its designs (calibration samples)."""
        return TransferBasis(
            self.cost[rows],
            self.latency_ms[rows],
            self.names,
            None if self.degenerate is None else self.dead[rows],
            None if self.design_features is None else self.features().rows(rows),
        )

    # The three component models: each maps (shots, measured ms) to a predictor of log-latency.
    def _cost_model(self, idx: np.ndarray, y: np.ndarray, penalties: dict[str, float]):
        x = self._x_cost
        scale = float(np.median(y))
        n_cost = self._cost.shape[1]
        penalty = np.r_[
            0.0,
            np.full(n_cost, penalties["cost"]),
            np.full(self._basis_ms.shape[1], penalties["cost_basis"]),
        ]
        coef = _ridge(x[idx], y / scale, penalty, (scale / y) ** 2)
        floor = _FLOOR * float(y.min())

        def predict(rows: np.ndarray) -> np.ndarray:
            return np.log(np.maximum(scale * (x[rows] @ coef), floor))

        return predict

    def _log_model(self, idx: np.ndarray, y: np.ndarray, penalties: dict[str, float]):
        x = self._x_log
        n_cost = self._cost.shape[1]
        penalty = np.r_[
            0.0,
            np.full(n_cost, penalties["log_cost"]),
            np.full(self.z_latency.shape[1], penalties["log_basis"]),
        ]
        coef = _ridge(x[idx], np.log(y), penalty)
        return lambda rows: x[rows] @ coef

    def _device_model(self, idx: np.ndarray, y: np.ndarray, penalties: dict[str, float]):
        x = self._x_devices
        coef = _ridge(
            x[idx],
            np.log(y),
            np.r_[0.0, np.full(self.log_latency.shape[1], penalties["devices"])],
        )
        return lambda rows: x[rows] @ coef


COMPONENTS = ("cost", "log", "devices")
# The ridge baseline's form takes over alone when its leave-one-out error on the shots is
# under 1 / FALLBACK of the blend's (see ``_choose``).
FALLBACK = 2.0


def _weights(loo_mse: np.ndarray) -> np.ndarray:
    """Half an even split, half inverse leave-one-out error: trust what predicted the shots.

    (On the standard splits the blend beat both the plain mean and pure inverse weighting.)
    """
    even = np.full(len(loo_mse), 1 / len(loo_mse))
    inverse = 1 / np.maximum(loo_mse, 1e-12)
    return 0.5 * even + 0.5 * inverse / inverse.sum()


def _choose(loo: np.ndarray) -> np.ndarray:
    """Component weights: the blend, unless the ridge baseline alone predicted the shots far
    better (its leave-one-out error under 1 / FALLBACK of the blend's).

    A clear margin, not the lowest error: on the cross-class suite, choosing whichever
    component had the lowest leave-one-out error on 10 shots, or adding "the best single
    basis device" as a fallback, lowered the geometric mean Spearman (FBNet 0.910 -> 0.87
    and 0.89); with the margin the fallback fires only where the other components miss.
    """
    mse = np.mean(loo**2, axis=0)
    blend = _weights(mse)
    ridge = COMPONENTS.index("devices")
    if mse[ridge] * FALLBACK < float(np.mean((loo @ blend) ** 2)):
        return np.eye(len(COMPONENTS))[ridge]
    return blend


def own_half_width(errors: np.ndarray, level: float = LEVEL) -> float | None:
    """A prediction interval's log half-width from the device's own leave-one-out errors.

    Student's t at ``level`` (two-sided) times their root mean square, widened by
    sqrt(1 + 1/n) for a new design: what the shots themselves say an answer may be off by,
    whatever the basis devices say. None with fewer than ``MIN_SHOTS`` errors.
    """
    from scipy.stats import t as student  # scipy.stats costs ~1 s at import

    n = len(errors)
    if n < MIN_SHOTS:
        return None
    rms = float(np.sqrt(np.mean(np.square(errors))))
    return float(student.ppf((1 + level) / 2, n - 1)) * rms * float(np.sqrt(1 + 1 / n))


@dataclass
class Adapted:
    """A target device's predictor: the blend fitted on its shots, stacked with the device's
    own shots model, with an interval."""

    basis: TransferBasis
    shots: np.ndarray
    measured_ms: np.ndarray
    sigma: float  # log-space spread of the stacked leave-one-out errors on the shots
    scale: float  # calibrated multiplier turning the spread into a LEVEL interval
    weights: np.ndarray  # of the components, from their leave-one-out errors on the shots
    _models: list = field(repr=False)
    degenerate_offset: float = 0.0  # log shift of degenerate designs, from theirs measured
    own: ShotsFit | None = None  # the device's own shots model, when the basis has features
    stack: float = 1.0  # the blend's weight against ``own``
    own_half: float | None = None  # half-width the device's own errors on its shots give
    own_weight: float = 0.0  # how much of the interval comes from ``own_half``
    errors: np.ndarray | None = None  # stacked leave-one-out log errors on the shots
    error_targets: np.ndarray | None = None  # the log-latencies those errors are errors of

    def evidence(self) -> dict[str, object]:
        """How well the device's own shots are explained, each left out in turn.

        ``explained`` is ``well``, ``partly`` or ``poorly``: a device whose shots are poorly
        explained is unlike the registered devices (or measured noisily), and its answers
        should be checked by measuring (next measurements, measure-and-refine).
        """
        errors = np.zeros(0) if self.errors is None else self.errors
        out: dict[str, object] = {"own_weight": round(1 - self.stack, 3)}
        if len(errors) < MIN_SHOTS:
            return out | {"explained": "unknown"}
        measured = np.zeros(0) if self.error_targets is None else self.error_targets
        rho = spearman(measured + errors, measured)
        typical = float(np.exp(np.median(np.abs(errors))) - 1)
        explained = "well" if rho >= WELL[0] and typical <= WELL[1] else "partly"
        if rho < POORLY[0] or typical > POORLY[1]:
            explained = "poorly"
        return out | {
            "explained": explained,
            "loo_spearman": round(rho, 4),
            "typical_error": round(typical, 4),
        }

    def _centre(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logs = np.stack([m(rows) for m in self._models])
        blend = self.weights @ logs
        spread2 = self.sigma**2 + self.stack * (self.weights @ (logs - blend) ** 2)
        if self.own is not None and self.stack < 1:
            mine = self.own.predict(rows)
            spread2 = spread2 + self.stack * (1 - self.stack) * (blend - mine) ** 2
            blend = self.stack * blend + (1 - self.stack) * mine
        return blend + self.degenerate_offset * self.basis.dead[rows], np.sqrt(spread2)

    def spread(self, rows: np.ndarray) -> np.ndarray:
        """Log-space spread before any scale: what ``TransferModel.calibrate`` scales."""
        return self._centre(np.asarray(rows))[1]

    def predict(self, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Median prediction (ms) and LEVEL interval for ``rows`` (all designs by default)."""
        rows = np.arange(self.basis.n_designs) if rows is None else np.asarray(rows)
        centre, spread = self._centre(rows)
        half = self.scale * spread
        if self.own_half is not None:  # never narrower than the device's own evidence
            blended = (1 - self.own_weight) * half + self.own_weight * self.own_half
            half = np.maximum(blended, self.own_half)
        return np.exp(centre), np.exp(centre - half), np.exp(centre + half)


class TransferModel:
    """Few-shot adaptation over one basis; the interval scale is calibrated once per basis.

    Hyperparameters are the constructor's: ``penalty_scale`` multiplies every ridge penalty
    of ``PENALTY`` (what tuning varies), so a study never edits the module's defaults.
    """

    def __init__(
        self,
        basis: TransferBasis,
        interval_scale: float | None = None,
        penalty_scale: float = 1.0,
    ) -> None:
        self.basis = basis
        self.interval_scale = interval_scale
        self.penalty_scale = penalty_scale

    @property
    def penalties(self) -> dict[str, float]:
        return {k: v * self.penalty_scale for k, v in PENALTY.items()}

    def choose_shots(
        self,
        k: int,
        rng: np.random.Generator,
        available: np.ndarray | None = None,
        taken: np.ndarray | None = None,
    ) -> np.ndarray:
        """Greedy D-optimal designs over cost features and the basis' two main directions for
        the first ``DOPT_SHOTS``, then the designs the design features know least about.

        ``taken``: designs already measured; the choice continues from them (the designs
        that would tell the most on top of what is known).
        """
        pool = np.arange(self.basis.n_designs) if available is None else np.asarray(available)
        taken = np.zeros(0, dtype=int) if taken is None else np.asarray(taken, dtype=int)
        pool = np.setdiff1d(pool, taken)
        live = pool[~self.basis.dead[pool]]
        pool = live if len(live) >= k else pool  # degenerate designs tell little
        if k > len(pool):
            raise ValueError(f"asked for {k} shots but only {len(pool)} designs are available")
        cand = rng.choice(pool, size=min(3000, len(pool)), replace=False)
        prior = self.basis.prior
        n_dopt = k if prior is None else min(k, max(0, DOPT_SHOTS - len(taken)))
        chosen = cand[self._d_optimal(cand, n_dopt, taken)]
        if prior is not None and k > n_dopt:
            known = np.r_[taken, chosen]
            if len(known) > SPREAD_KNOWN:  # what is far from a sample of them is far from all
                known = rng.choice(known, size=SPREAD_KNOWN, replace=False)
            more = _spread_over(prior.phi, np.setdiff1d(cand, chosen), k - n_dopt, known)
            chosen = np.r_[chosen, more]
        return chosen

    def _d_optimal(self, cand: np.ndarray, k: int, taken: np.ndarray) -> list[int]:
        """Greedy D-optimal positions in ``cand`` over cost features and basis directions."""
        n = self.basis.n_designs
        feats = np.c_[
            np.ones(n),
            _standardise(self.basis.cost) if self.basis.cost.size else np.zeros((n, 0)),
            self.basis.directions[:, :DIRECTIONS],
        ]
        info = 1e-3 * np.eye(feats.shape[1]) + feats[taken].T @ feats[taken]
        feats = feats[cand]
        chosen: list[int] = []
        for _ in range(k):
            gain = np.einsum("ij,jk,ik->i", feats, np.linalg.inv(info), feats)
            gain[chosen] = -np.inf
            best = int(np.argmax(gain))
            chosen.append(best)
            info += np.outer(feats[best], feats[best])
        return chosen

    def _fit(self, idx: np.ndarray, y: np.ndarray) -> list:
        b, penalties = self.basis, self.penalties
        return [
            b._cost_model(idx, y, penalties),
            b._log_model(idx, y, penalties),
            b._device_model(idx, y, penalties),
        ]

    def _loo(self, shots: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Leave-one-out log errors of every component on every shot (shots x components).

        Past ``LOO_MAX`` shots (a device with thousands of measurements and no model of its
        own yet), ten folds stand in for one fit per shot.
        """
        n = len(shots)
        folds = np.arange(n) if n <= LOO_MAX else np.arange(n) % 10
        loo = np.empty((n, len(COMPONENTS)))
        for fold in np.unique(folds):
            out = folds == fold
            models = self._fit(shots[~out], y[~out])
            loo[out] = np.stack([m(shots[out]) - np.log(y[out]) for m in models], axis=1)
        return loo

    def adapt(self, shots: np.ndarray, measured_ms: np.ndarray) -> Adapted:
        """Fit the ensemble on a target's shots (indices into the basis' designs)."""
        shots = np.asarray(shots, dtype=int)
        y = np.asarray(measured_ms, dtype=float)
        if len(shots) < MIN_SHOTS:
            raise ValueError(f"few-shot transfer needs at least {MIN_SHOTS} measured designs")
        if len(set(shots.tolist())) != len(shots):
            raise ValueError("the same design is measured twice among the shots")
        if len(y) != len(shots) or not np.isfinite(y).all() or (y <= 0).any():
            raise ValueError("shot latencies must be positive numbers, one per shot")
        dead = self.basis.dead[shots]
        fit = ~dead if (~dead).sum() >= MIN_SHOTS else np.ones(len(shots), dtype=bool)
        loo = self._loo(shots[fit], y[fit])
        weights = _choose(loo)
        # the spread of the blend even where the baseline answers alone: a model picked for
        # its leave-one-out error on these shots understates its error elsewhere (with its
        # own, /optimize from the fingerprint broke half of raspi4's budgets at 0.9)
        errors = loo @ _weights(np.mean(loo**2, axis=0))
        targets = np.log(y[fit])  # what each error is an error of
        own, stack, kept = self._stack(shots[fit], y[fit], float(np.mean((loo @ weights) ** 2)))
        if own is not None:
            errors, targets = errors[kept], targets[kept]
            errors = stack * errors + (1 - stack) * own.loo
        errors, targets = self._working_errors(
            shots[fit][kept], y[fit][kept], stack, own, (errors, targets)
        )
        sigma = float(np.sqrt(np.mean(errors**2)))
        scale = self.interval_scale if self.interval_scale is not None else 1.645
        n = int(fit.sum())
        own_half = own_half_width(errors)
        adapted = Adapted(
            self.basis, shots, y, sigma, scale, weights, self._fit(shots[fit], y[fit]),
            own=own, stack=stack, own_half=own_half,
            own_weight=n / (n + OWN_EVIDENCE), errors=errors, error_targets=targets,
        )  # fmt: skip
        if (dead & fit).sum() < dead.sum():  # degenerate shots left out: shift their kind
            centre = np.log(adapted.predict(shots[dead])[0])
            adapted.degenerate_offset = float(np.median(np.log(y[dead]) - centre))
        return adapted

    def _working_errors(
        self,
        shots: np.ndarray,
        y: np.ndarray,
        stack: float,
        own: ShotsFit | None,
        errors: tuple[np.ndarray, np.ndarray],
    ) -> tuple[np.ndarray, np.ndarray]:
        """Leave-one-out errors (and their targets) that a working design's interval is
        read from: where degenerate shots were fitted beside working ones (the basis prunes
        dead work), the blend's errors of each working shot left out of a fit of the
        working shots alone (the shots model's, ``own.loo``, are kept: it is the costly fit).

        A cell the device ran in 0.01 ms among cells of 3-75 ms bends a leave-one-out fit by
        orders of magnitude; those errors said nothing of working designs (raspi4 from the
        fingerprint: intervals 6x wide, and a chance-accuracy cell chosen for a budget).
        """
        work = ~self.basis.degenerate_mask()[shots]
        if work.all() or work.sum() < MIN_STACK_SHOTS:
            return errors
        loo = self._loo(shots[work], y[work])
        out = loo @ _weights(np.mean(loo**2, axis=0))
        if own is not None:
            out = stack * out + (1 - stack) * own.loo[work]
        return out, np.log(y[work])

    def _stack(
        self, shots: np.ndarray, y: np.ndarray, blend_mse: float
    ) -> tuple[ShotsFit | None, float, np.ndarray]:
        """The device's own shots model, the blend's weight against it (1: blend alone) and
        which of the shots it was fitted on.

        Weights are inverse leave-one-out errors, the shots model's inflated by its
        optimism (it is the best of a grid on these very shots).
        """
        prior = self.basis.prior
        kept = _stack_sample(len(shots))
        if prior is None or len(shots) < MIN_STACK_SHOTS:
            return None, 1.0, np.arange(len(shots))
        own = fit_shots(prior, shots[kept], np.log(y[kept]))
        own_mse = float(np.mean(own.loo**2)) * (1 + STACK_OPTIMISM / len(shots))
        inverse = 1 / max(blend_mse, 1e-12), 1 / max(own_mse, 1e-12)
        return own, inverse[0] / sum(inverse), kept

    def calibrate(self, shots: int, seed: int = 0) -> float:
        """Interval multiplier from holding out each basis device in turn.

        The multiplier is the LEVEL quantile of |error| / spread over every held-out design,
        so intervals are as wide as the basis devices show they must be, not assumed normal.
        The held-out devices' median Spearman is kept as ``expected_spearman``: the rank
        quality a new device can expect from this many shots.
        """
        from scipy.stats import spearmanr  # scipy.stats costs ~1 s at import

        rng = np.random.default_rng(seed)
        ratios, ranks = [], []
        n_dev = self.basis.latency_ms.shape[1]
        self.expected_spearman: float | None = None
        if n_dev < 2:
            self.interval_scale = 1.645
            return self.interval_scale
        for j in range(n_dev):
            column = self.basis.latency_ms[:, j]
            available = np.flatnonzero(np.isfinite(column))
            inner = TransferModel(
                self.basis.without(j), interval_scale=1.0, penalty_scale=self.penalty_scale
            )
            idx = inner.choose_shots(shots, rng, available)
            adapted = inner.adapt(idx, column[idx])
            rest = np.setdiff1d(available, idx)
            rest = rng.choice(rest, size=min(2000, len(rest)), replace=False)
            centre = adapted.predict(rest)[0]
            spread = adapted.spread(rest)
            ratios.append(np.abs(np.log(column[rest]) - np.log(centre)) / spread)
            ranks.append(float(spearmanr(centre, column[rest])[0]))
        self.interval_scale = float(np.quantile(np.concatenate(ratios), LEVEL))
        self.expected_spearman = float(np.nanmedian(ranks))
        return self.interval_scale


def _stack_sample(n: int) -> np.ndarray:
    """Which of ``n`` shots the shots model is fitted on: all, or a seeded sample of
    ``STACK_SHOTS_MAX`` for a device with thousands measured and no model of its own yet."""
    if n <= STACK_SHOTS_MAX:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, STACK_SHOTS_MAX, replace=False))


def _spread_over(phi: np.ndarray, cand: np.ndarray, k: int, taken: np.ndarray) -> np.ndarray:
    """``k`` of ``cand`` that the design features know least about given ``taken``: greedy
    maximum posterior variance under a linear + RBF kernel (a pivoted Cholesky)."""
    rows = np.r_[np.asarray(taken, dtype=int), cand]
    x = phi[rows]
    d = x.shape[1]

    def column(i: int) -> np.ndarray:
        sq = ((x - x[i]) ** 2).sum(1)
        return x @ x[i] / d + np.exp(-sq / d)

    var = (x**2).sum(1) / d + 1.0
    factors: list[np.ndarray] = []
    out: list[int] = []
    forced = list(range(len(taken)))
    for step in range(len(forced) + k):
        if step < len(forced):
            i = forced[step]
        else:
            score = var.copy()
            score[: len(taken)] = -np.inf
            score[out] = -np.inf
            i = int(np.argmax(score))
            out.append(i)
        col = column(i)
        for f in factors:
            col = col - f * f[i]
        f = col / np.sqrt(max(var[i], 1e-9))
        factors.append(f)
        var = np.maximum(var - f**2, 0.0)
    return rows[out]


def ridge_baseline(
    basis: TransferBasis, shots: np.ndarray, measured_ms: np.ndarray, alpha: float = 1.0
) -> np.ndarray:
    """The plain floor: ridge of the target's log-latency on the basis log-latencies."""
    x = basis._x_devices
    penalty = np.r_[0.0, np.full(basis.log_latency.shape[1], alpha)]
    coef = _ridge(x[shots], np.log(measured_ms), penalty)
    return np.exp(x @ coef)
