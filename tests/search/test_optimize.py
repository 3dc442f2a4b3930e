"""The optimizer core on real reference latencies: odds, fronts, verified choices."""

from __future__ import annotations

import numpy as np
import pytest

from devices.reference import load_reference
from predictors.tables import LatencyTable, TableError
from search.evaluation import evaluate_optimize
from search.optimize import pareto_front, probability_within, verified_search
from search.spaces import get_space


def test_probability_within_budget_reads_the_interval() -> None:
    median, low, high = (
        np.array([1.0, 1.0, 2.0]),
        np.array([0.8, 0.5, 1.6]),
        np.array([1.25, 2.0, 2.5]),
    )
    p = probability_within(median, low, high, 1.0)
    assert p[0] == pytest.approx(0.5) and p[1] == pytest.approx(0.5)
    assert probability_within(median, low, high, 1.25)[0] == pytest.approx(0.95, abs=1e-3)
    assert p[2] < 0.01


def test_pareto_front_keeps_only_undominated_designs() -> None:
    accuracy = np.array([90.0, 91.0, 89.0, 93.0, 92.0])
    latency = np.array([1.0, 2.0, 2.0, 3.0, 4.0])
    assert pareto_front(accuracy, latency).tolist() == [0, 1, 3]


def test_verified_search_returns_a_measured_design_within_budget() -> None:
    rng = np.random.default_rng(0)
    truth = rng.lognormal(size=500)
    accuracy = 80 + 10 * np.log1p(truth) + rng.normal(scale=0.5, size=500)  # slower = better

    def predict(idx: np.ndarray, y: np.ndarray):
        noisy = truth * np.exp(rng.normal(scale=0.1, size=500))
        return noisy, noisy * 0.8, noisy * 1.25

    budget = float(np.percentile(truth, 30))
    shots = np.arange(5)
    choice = verified_search(accuracy, budget, predict, truth.item, shots, truth[shots], 10)
    assert choice.verified and truth[choice.index] <= budget
    best = accuracy[truth <= budget].max()
    assert best - accuracy[choice.index] < 1.0
    assert len(choice.measured) <= 15


@pytest.fixture(scope="module")
def small() -> tuple[LatencyTable, np.ndarray]:
    ref = load_reference("nb201")
    rows = np.random.default_rng(1).choice(len(ref.arch_ids), 2000, replace=False)
    names = ["1080ti_1", "silver_4114", "pixel3", "samsung_a50", "eyeriss", "gold_6226"]
    index = [d.column for d in ref.devices]
    table = LatencyTable(
        ref.arch_ids[rows],
        [ref.encodings[i] for i in rows],
        names,
        ref.latency_ms[rows][:, [index.index(n) for n in names]],
        {"acc_cifar10": ref.accuracies["cifar10"][rows]},
    )
    return table, get_space("nb201").features(table.encodings)


def test_evaluate_optimize_reports_regret_and_violations(small) -> None:
    table, cost = small
    train = ["1080ti_1", "silver_4114", "pixel3", "samsung_a50"]
    accuracy = table.columns["acc_cifar10"]
    result = evaluate_optimize(
        table, accuracy, cost, train, ["eyeriss", "gold_6226"], [25, 50], 20, 2, "search"
    )
    assert set(result["devices"]) == {"eyeriss", "gold_6226"}
    assert set(result["mean"]) == {"regret", "violation_rate", "seconds_per_query"}
    assert result["mean"]["violation_rate"] <= result["baseline"]["mean"]["violation_rate"]
    assert result["mean"]["regret"] < 1.0


def test_evaluate_optimize_refuses_what_it_cannot_do(small) -> None:
    table, cost = small
    args = (table, table.columns["acc_cifar10"], cost, ["1080ti_1"], ["eyeriss"])
    with pytest.raises(TableError, match="learned optimizer"):
        evaluate_optimize(*args, [50], 20, 1, "neural")
    with pytest.raises(TableError, match="percentiles"):
        evaluate_optimize(*args, [150], 20, 1, "search")
    with pytest.raises(TableError, match="at least 4"):
        evaluate_optimize(*args, [50], 2, 1, "search")
