"""``edgeopt eval optimize``: regret and budget violations of the served optimizer on new devices.

For each test device and latency budget (percentiles of its true latencies) the optimizer
answers as ``POST /optimize`` would, through the same code (``predictors.answer.answer`` for
the predictions, ``search.optimize.choose`` / ``refine`` for the choice):

- ``max_measurements == 0``: what a profile-only request gets: the device's measured
  fingerprint designs are its shots, and the answer is the best design predicted to meet the
  budget with probability >= ``confidence``;
- ``max_measurements > 0``: measure-and-refine: D-optimal shots, refit, verification of the
  most promising candidates, answer the best *measured* design within budget.

``method="neural"`` answers with the learned optimizer (``search.learned``): its proposals
for the device's features (the fingerprint's latencies: measured, or predicted from the
shots) are checked with ``auto``'s predictions and, where none holds, search over every
design answers (counted in ``fallback_rate``), as ``POST /optimize`` does. Each query is also
answered by that search, so the accuracy gap between them (``gap_to_search``), both
violation rates and both times per answer come from one run.

Regret is the true accuracy of the best design within budget minus the answered design's; a
violation is an answered design whose *true* latency exceeds the budget. Queries with no
answer (nothing predicted feasible at the confidence) are counted apart (``no_answer_rate``)
and left out of regret and violations. Beside every figure: the ridge baseline on 10 random
shots, taking the most accurate design it predicts within budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from predictors.answer import answer, calibrated_proxy_scale, calibrated_scale
from predictors.shots_model import DesignFeatures
from predictors.tables import LatencyTable, TableError
from predictors.transfer import MIN_SHOTS, TransferBasis, TransferModel, ridge_baseline
from search.learned import LearnedOptimizer
from search.optimize import Candidates, Choice, Estimates, Goals, choose, refine, shot_count

METHODS = ("proxy", "search", "auto", "neural")
KEYS = ("regret", "violation_rate", "no_answer_rate", "seconds_per_query")
NEURAL_KEYS = (
    "gap_to_search",
    "fallback_rate",
    "search_regret",
    "search_violation_rate",
    "search_seconds_per_query",
)


def evaluate_optimize(
    table: LatencyTable,
    accuracy: np.ndarray,
    cost: np.ndarray,
    train: Sequence[str],
    test: Sequence[str],
    budgets: Sequence[float],
    max_measurements: int,
    seeds: int,
    method: str,
    fingerprint: Sequence[str] = (),
    confidence: float = 0.9,
    progress: Callable[[int, int], None] | None = None,
    degenerate: np.ndarray | None = None,
    learned: LearnedOptimizer | None = None,
    options: np.ndarray | None = None,
    design_features: np.ndarray | DesignFeatures | None = None,
) -> dict:
    """The figures of one method over the test devices; see the module docstring.

    ``learned`` and ``options`` (the table's designs as decisions) are what ``neural`` needs;
    ``design_features`` (the designs' ``SearchSpace.encode``) let the predictor learn from
    the shots beyond the basis, as the service's does.
    """
    if method not in METHODS:
        raise TableError(f"method {method!r} is not available (have {', '.join(METHODS)})")
    if method == "neural" and (learned is None or options is None):
        raise TableError("method 'neural' needs a trained learned optimizer")
    if set(train) & set(test):
        raise TableError(f"devices both in --train and --test: {sorted(set(train) & set(test))}")
    if max_measurements != 0 and max_measurements < 2 * MIN_SHOTS:
        raise TableError(f"--max-measurements must be 0 or at least {2 * MIN_SHOTS}")
    if any(not 0 < b < 100 for b in budgets):
        raise TableError("--budgets are percentiles strictly between 0 and 100")
    if not 0 < confidence < 1:
        raise TableError("--confidence must be strictly between 0 and 1")
    position = {e: i for i, e in enumerate(table.encodings)}
    prints = np.array([position[e] for e in fingerprint if e in position], dtype=int)
    if max_measurements == 0 and len(prints) < MIN_SHOTS:
        raise TableError(
            f"--max-measurements 0 answers from the fingerprint, but only {len(prints)} of its "
            "designs are rows of the table"
        )
    if method == "neural":
        assert learned is not None
        missing = [e for e in learned.spec.fingerprint if e not in position]
        if missing:
            raise TableError(
                f"the learned optimizer's fingerprint design {missing[0]} is not a row"
            )
        neural_prints = np.array([position[e] for e in learned.spec.fingerprint], dtype=int)
    known = np.isfinite(accuracy)
    # as in the service, a degenerate design informs the fit but is never the answer
    choosable = accuracy if degenerate is None else np.where(degenerate, np.nan, accuracy)
    columns = np.stack([table.column(d) for d in train], axis=1)
    basis = TransferBasis(cost, columns, list(train), degenerate, design_features)
    n_shots = len(prints) if max_measurements == 0 else shot_count(max_measurements)
    scale = calibrated_scale(basis, n_shots)
    proxy_scale = calibrated_proxy_scale(basis, n_shots)
    chooser = TransferModel(basis, interval_scale=scale)
    devices, baseline, methods_used = {}, {}, {}
    timings: dict[str, list[float]] = {"neural": [], "search": []}
    total, done = len(test) * len(budgets) * seeds, 0
    for name in test:
        truth = table.column(name)
        usable = np.flatnonzero(np.isfinite(truth) & known)
        cands = Candidates(
            design=usable,
            policy=np.zeros(len(usable), dtype=int),
            latency=Estimates.exact(truth[usable]),  # replaced by predictions below
            accuracy=Estimates.exact(choosable[usable]),
        )
        row_of = {int(d): k for k, d in enumerate(usable)}
        rows: list[dict[str, float]] = []
        base_rows: list[dict[str, float]] = []
        used: dict[str, int] = {}
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            if max_measurements == 0:
                shots = prints[np.isfinite(truth[prints])]
                if len(shots) < MIN_SHOTS:
                    raise TableError(
                        f"test device {name!r} measured {len(shots)} of the fingerprint's "
                        f"designs; --max-measurements 0 needs {MIN_SHOTS}"
                    )
            else:
                shots = chooser.choose_shots(n_shots, rng, usable)

            refit = _refit(basis, usable, "auto" if method == "neural" else method,
                           (scale, proxy_scale), used)  # fmt: skip

            random_shots = rng.choice(usable, size=10, replace=False)
            base_pred = ridge_baseline(basis, random_shots, truth[random_shots])
            for pct in budgets:
                budget = float(np.percentile(truth[usable], pct))
                goals = Goals(max_latency_ms=budget)
                best = float(accuracy[usable[truth[usable] <= budget]].max())
                started = time.perf_counter()
                choice = _search(cands, goals, refit, truth, usable, shots, row_of,
                                 max_measurements, confidence)  # fmt: skip
                seconds = time.perf_counter() - started
                pick = None if choice.index is None else int(usable[choice.index])
                if method == "neural":
                    assert learned is not None and options is not None
                    started = time.perf_counter()
                    neural, fell_back = _neural(
                        learned, options, basis, cands, goals, refit, truth, usable, shots,
                        row_of, max_measurements, confidence, fingerprint_rows=neural_prints,
                        method_scales=(scale, proxy_scale), used=used,
                    )  # fmt: skip
                    neural_seconds = time.perf_counter() - started
                    row = _score(neural, truth, accuracy, best, budget, neural_seconds)
                    row["fallback_rate"] = float(fell_back)
                    searched = _score(pick, truth, accuracy, best, budget, seconds)
                    row |= {f"search_{k}": v for k, v in searched.items() if k != "no_answer_rate"}
                    if neural is not None and pick is not None:
                        row["gap_to_search"] = float(accuracy[pick] - accuracy[neural])
                    rows.append(row)
                else:
                    rows.append(_score(pick, truth, accuracy, best, budget, seconds))
                ok = usable[base_pred[usable] <= budget]
                base_pick = (
                    int(ok[np.argmax(accuracy[ok])])
                    if ok.size
                    else int(usable[np.argmin(base_pred[usable])])
                )
                base_rows.append(_score(base_pick, truth, accuracy, best, budget, 0.0))
                done += 1
                if progress:
                    progress(done, total)
        devices[name] = _mean(rows)
        if method == "neural":
            assert learned is not None and options is not None
            timed = np.isfinite(truth[neural_prints]).all()  # a front from the fingerprint
            devices[name]["front_seconds"] = (
                _front_seconds(
                    learned, options, basis, truth, accuracy, usable, neural_prints,
                    (scale, proxy_scale),
                )
                if timed
                else float("nan")
            )  # fmt: skip
            timings["neural"] += [r["seconds_per_query"] for r in rows]
            timings["search"] += [r["search_seconds_per_query"] for r in rows]
        baseline[name] = _mean(base_rows)
        methods_used[name] = used
    mean = _mean(list(devices.values()))
    if method == "neural":
        mean["median_seconds_per_query"] = float(np.median(timings["neural"]))
        mean["search_median_seconds_per_query"] = float(np.median(timings["search"]))
        fronts = [d["front_seconds"] for d in devices.values() if np.isfinite(d["front_seconds"])]
        mean["front_seconds"] = float(np.median(fronts)) if fronts else float("nan")
    return {
        "devices": devices,
        "mean": mean,
        "baseline": {"devices": baseline, "mean": _mean(list(baseline.values()))},
        "answered_by": methods_used,
        "setup": {
            "method": method,
            "train": list(train),
            "test": list(test),
            "budgets": list(budgets),
            "max_measurements": max_measurements,
            "confidence": confidence,
            "seeds": seeds,
            "shots": n_shots,
            "shots_from": "fingerprint" if max_measurements == 0 else "d-optimal",
            "interval_scale": scale,
            "proxy_interval_scale": proxy_scale,
        },
    }


def _refit(
    basis: TransferBasis,
    usable: np.ndarray,
    method: str,
    scales: tuple[float, float],
    used: dict[str, int],
) -> Callable[[dict[int, float]], Estimates]:
    """Latency over the usable designs from the measurements so far, as the service answers."""

    def refit(measured: dict[int, float]) -> Estimates:
        got = answer(
            basis,
            np.array([int(usable[k]) for k in measured], dtype=int),
            np.array(list(measured.values())),
            usable,
            allow_proxy=method != "search",
            proxy_evidence=method == "auto",
            interval_scale=scales[0],
            proxy_scale=scales[1],
        )
        assert got.estimates is not None
        used[str(got.method)] = used.get(str(got.method), 0) + 1
        return Estimates(*got.estimates)

    return refit


def _search(
    cands: Candidates,
    goals: Goals,
    refit: Callable[[dict[int, float]], Estimates],
    truth: np.ndarray,
    usable: np.ndarray,
    shots: np.ndarray,
    row_of: dict[int, int],
    max_measurements: int,
    confidence: float,
) -> Choice:
    """The served optimizer over ``cands``: from the shots' predictions, or measure-and-refine."""
    if max_measurements == 0:
        at_shots = {row_of[int(i)]: float(truth[i]) for i in shots if int(i) in row_of}
        return choose(cands.with_latency(refit(at_shots)), goals, confidence)
    return refine(
        cands,
        goals,
        refit,
        _measure(truth, usable),
        [row_of[int(i)] for i in shots],
        max_measurements,
        confidence,
    )


def _neural(
    learned: LearnedOptimizer,
    options: np.ndarray,
    basis: TransferBasis,
    cands: Candidates,
    goals: Goals,
    refit: Callable[[dict[int, float]], Estimates],
    truth: np.ndarray,
    usable: np.ndarray,
    shots: np.ndarray,
    row_of: dict[int, int],
    max_measurements: int,
    confidence: float,
    fingerprint_rows: np.ndarray,
    method_scales: tuple[float, float],
    used: dict[str, int],
) -> tuple[int | None, bool]:
    """The learned optimizer's pick (a table row) and whether search had to answer.

    Its features are the fingerprint's latencies: measured when the shots are the
    fingerprint, else predicted from the shots as the service would. Its proposals, with the
    shots, are the candidates the same predictions (and the same measurements) choose from.
    """
    shot_rows = np.array([row_of[int(i)] for i in shots if int(i) in row_of], dtype=int)
    prints = truth[fingerprint_rows]
    measured = set(shots.tolist())
    if not all(int(i) in measured for i in fingerprint_rows):  # predict it from the shots
        got = answer(
            basis, shots, truth[shots], fingerprint_rows, proxy_evidence=True,
            interval_scale=method_scales[0], proxy_scale=method_scales[1],
        )  # fmt: skip
        assert got.estimates is not None
        prints = got.estimates[0]
    proposed = learned.propose(prints, goals, options[usable])
    subset = np.array(list(dict.fromkeys([*shot_rows.tolist(), *proposed.tolist()])), dtype=int)
    sub = cands.take(subset)
    sub_refit = _refit(basis, usable[subset], "auto", method_scales, used)
    sub_rows = {int(usable[r]): k for k, r in enumerate(subset)}
    choice = _search(sub, goals, sub_refit, truth, usable[subset], shots, sub_rows,
                     max_measurements, confidence)  # fmt: skip
    if choice.index is not None:
        return int(usable[subset[choice.index]]), False
    fallback = _search(cands, goals, refit, truth, usable, shots, row_of,
                       max_measurements, confidence)  # fmt: skip
    return (None if fallback.index is None else int(usable[fallback.index])), True


FRONT = np.linspace(5, 95, 20)  # budgets of a timed front (percentiles of true latency)


def _front_seconds(
    learned: LearnedOptimizer,
    options: np.ndarray,
    basis: TransferBasis,
    truth: np.ndarray,
    accuracy: np.ndarray,
    usable: np.ndarray,
    fingerprint_rows: np.ndarray,
    scales: tuple[float, float],
) -> float:
    """Seconds for a 20-budget front from the fingerprint, as ``POST /optimize/front`` runs
    it: one forward pass, the proposals' union predicted once, a choice per budget."""
    from search.learned import front

    goals = [Goals(max_latency_ms=float(np.percentile(truth[usable], p))) for p in FRONT]
    started = time.perf_counter()
    proposed = learned.propose_front(truth[fingerprint_rows], goals, options[usable])
    union = np.unique(np.concatenate(proposed))
    got = answer(
        basis, fingerprint_rows, truth[fingerprint_rows], usable[union],
        interval_scale=scales[0], proxy_scale=scales[1],
    )  # fmt: skip
    assert got.estimates is not None
    position = np.full(len(usable), -1)
    position[union] = np.arange(len(union))
    cands = Candidates(
        np.arange(len(union)),
        np.zeros(len(union), dtype=int),
        Estimates(*got.estimates),
        Estimates.exact(accuracy[usable[union]]),
    )
    front([position[p] for p in proposed], cands, goals, 0.9)
    return time.perf_counter() - started


def _measure(truth: np.ndarray, usable: np.ndarray) -> Callable[[int], float]:
    """A measurement of candidate k: its true latency, looked up."""
    return lambda k: float(truth[usable[k]])


def _score(
    pick: int | None,
    truth: np.ndarray,
    accuracy: np.ndarray,
    best: float,
    budget: float,
    seconds: float,
) -> dict[str, float]:
    if pick is None:
        return {"no_answer_rate": 1.0, "seconds_per_query": seconds}
    return {
        "regret": best - float(accuracy[pick]),
        "violation_rate": float(truth[pick] > budget),
        "no_answer_rate": 0.0,
        "seconds_per_query": seconds,
    }


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    """Means over the rows that have each key (regret and violations: answered queries)."""
    out = {}
    for k in (*KEYS, *(NEURAL_KEYS if any("fallback_rate" in r for r in rows) else ())):
        values = [r[k] for r in rows if k in r and np.isfinite(r[k])]
        out[k] = float(np.mean(values)) if values else float("nan")
    return out
