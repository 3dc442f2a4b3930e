"""The one optimizer as pure functions: odds, choices, fronts, measure-and-refine."""

from __future__ import annotations

import numpy as np
import pytest

from devices.reference import load_reference
from predictors.tables import LatencyTable, TableError
from search.evaluation import evaluate_optimize
from search.optimize import (
    Candidates,
    Estimates,
    Goals,
    Timing,
    choose,
    measured_bound,
    pareto_front,
    probability_within,
    refine,
    repeat_spread,
)
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


def _candidates(latency: np.ndarray, accuracy: np.ndarray, spread: float = 1.25) -> Candidates:
    n = len(latency)
    return Candidates(
        design=np.arange(n),
        policy=np.zeros(n, dtype=int),
        latency=Estimates(latency, latency / spread, latency * spread),
        accuracy=Estimates.exact(accuracy),
    )


def test_choose_takes_the_most_accurate_design_confidently_within_budget() -> None:
    latency = np.array([1.0, 2.0, 2.9, 4.0])
    accuracy = np.array([80.0, 85.0, 90.0, 95.0])
    choice = choose(_candidates(latency, accuracy), Goals(max_latency_ms=3.0), 0.9, 2)
    # 2.9 ms is within 3 ms but not with 90% confidence given a +-25% interval
    assert choice.index == 1 and choice.feasible and choice.n_feasible == 2
    assert choice.alternatives == [0]
    assert choice.probabilities["latency"][2] < 0.9 <= choice.probabilities["latency"][1]
    assert choice.pareto == [0, 1, 2, 3]
    lax = choose(_candidates(latency, accuracy), Goals(max_latency_ms=3.0), 0.5)
    assert lax.index == 2  # asking for less confidence accepts the closer call


def test_a_recorded_accuracy_beats_a_higher_but_uncertain_prediction() -> None:
    latency = np.array([1.0, 1.0, 0.5, 2.0])
    candidates = Candidates(
        design=np.arange(4),
        policy=np.zeros(4, dtype=int),
        latency=Estimates.exact(latency),
        # recorded 99.0 (twice, at different latencies) against a prediction of 99.3 +- 7
        accuracy=Estimates(
            np.array([99.0, 99.3, 99.0, 98.0]),
            np.array([99.0, 92.3, 99.0, 98.0]),
            np.array([99.0, 106.3, 99.0, 98.0]),
        ),
    )
    choice = choose(candidates, Goals(max_latency_ms=1.5), 0.9, 3)
    assert choice.index == 2  # the faster of the two recorded 99s; the mean 99.3 is not held
    assert choice.alternatives == [0, 1]


def test_an_infeasible_choice_names_no_design_but_the_closest() -> None:
    latency = np.array([1.0, 2.0, 4.0])
    accuracy = np.array([80.0, 85.0, 95.0])
    uncertain = Estimates(accuracy, accuracy - 5, accuracy + 5)
    cands = Candidates(np.arange(3), np.zeros(3, dtype=int), Estimates.exact(latency), uncertain)
    choice = choose(cands, Goals(min_accuracy=99.0), 0.9)
    assert choice.index is None and not choice.feasible
    assert choice.closest[0] == 2 and "no design meets the goals" in choice.message


def test_an_accuracy_out_of_reach_names_the_best_within_reach_not_a_hopeless_design() -> None:
    """Recorded accuracies give every design probability 0 of 95%: the closest are then the
    most accurate within the budget, not the first designs (once the 10% all-none cell)."""
    latency = np.array([0.05, 1.0, 2.0, 4.0, 12.0])
    accuracy = np.array([10.0, 80.0, 85.0, 92.9, 94.4])
    cands = Candidates(
        np.arange(5), np.zeros(5, dtype=int), Estimates.exact(latency), Estimates.exact(accuracy)
    )
    choice = choose(cands, Goals(max_latency_ms=10.0, min_accuracy=95.0), 0.9)
    assert not choice.feasible and choice.closest == [3, 2, 1]
    (short, latency_goal) = choice.shortfalls
    assert short.goal == "accuracy" and not short.reachable_alone
    assert (short.best_with_others, short.best_alone) == (92.9, 94.4)
    assert "min_accuracy 95.0% is out of reach" in choice.message
    assert "the best within 10 ms is 92.9%; the best at any latency is 94.4%" in choice.message
    # the latency goal is met alone, but by no design of 95%
    assert latency_goal.goal == "latency" and latency_goal.reachable_alone
    assert latency_goal.best_with_others is None and latency_goal.best_alone == 0.05


def test_goals_each_within_reach_but_not_together_list_the_nearest_to_each() -> None:
    latency = np.array([0.05, 1.0, 2.0, 4.0, 12.0])
    accuracy = np.array([10.0, 80.0, 85.0, 92.9, 94.4])
    cands = Candidates(
        np.arange(5), np.zeros(5, dtype=int), Estimates.exact(latency), Estimates.exact(accuracy)
    )
    choice = choose(cands, Goals(max_latency_ms=10.0, min_accuracy=94.0), 0.9)
    assert {s.goal for s in choice.shortfalls} == {"accuracy", "latency"}
    assert all(s.reachable_alone for s in choice.shortfalls)
    # the most accurate within 10 ms, the fastest of 94% or more, then the next within 10 ms
    assert choice.closest == [3, 4, 2]
    assert "the fastest at 94.0% accuracy or more is 12 ms" in choice.message
    # an interval's quantile, not its median: 1 ms +-25% is within 1.2 ms at 90%
    loose = _candidates(np.array([1.0]), np.array([90.0]))
    short = choose(loose, Goals(max_latency_ms=1.0), 0.9).shortfalls[0]
    assert short.best_alone == pytest.approx(1.0 * np.exp(1.2816 * np.log(1.25) / 1.6449), 1e-3)
    assert choose(loose, Goals(max_latency_ms=short.best_alone + 1e-9), 0.9).feasible


def test_goals_on_a_metric_without_predictions_are_refused() -> None:
    cands = _candidates(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="energy"):
        choose(cands, Goals(max_energy_mj=1.0))


def test_refine_measures_and_answers_a_measured_design_within_budget() -> None:
    rng = np.random.default_rng(0)
    truth = rng.lognormal(size=500)
    accuracy = 80 + 10 * np.log1p(truth) + rng.normal(scale=0.5, size=500)  # slower = better
    noisy = truth * np.exp(rng.normal(scale=0.1, size=500))
    cands = _candidates(noisy, accuracy)
    calls: list[int] = []

    def refit(measured: dict[int, float]) -> Estimates:
        return Estimates(noisy, noisy * 0.8, noisy * 1.25)

    def measure(i: int) -> float:
        calls.append(i)
        return float(truth[i])

    budget = float(np.percentile(truth, 30))
    choice = refine(cands, Goals(max_latency_ms=budget), refit, measure, range(5), 12)
    assert choice.verified and choice.index is not None and truth[choice.index] <= budget
    assert choice.measured[choice.index] == truth[choice.index]
    assert len(calls) <= 12 and calls[:5] == [0, 1, 2, 3, 4]
    best = accuracy[truth <= budget].max()
    assert best - accuracy[choice.index] < 1.0


def test_a_measured_median_under_budget_is_not_enough_when_its_spread_reaches_over() -> None:
    """A design measured at 2.959 ms with a 3% spread is over a 3 ms budget at 0.9: its bound
    (2.959 x 1.03^1.28 = 3.07 ms) is the budget a repeat would check it against."""
    latency = np.array([2.959, 2.5, 1.0])
    accuracy = np.array([94.0, 92.0, 85.0])
    cands = _candidates(latency, accuracy)
    timings = {0: Timing(2.959, 0.03), 1: Timing(2.5, 0.03), 2: Timing(1.0, 0.01)}
    assert measured_bound(2.959, 0.03, 0.9) > 3.0 > measured_bound(2.5, 0.03, 0.9)

    def refit(measured: dict[int, float]) -> Estimates:
        return Estimates(latency, latency * 0.8, latency * 1.25)

    def measure(i: int) -> Timing:
        return timings[i]

    choice = refine(cands, Goals(max_latency_ms=3.0), refit, measure, [0, 1, 2], 6)
    assert choice.verified and choice.index == 1, choice.message
    assert choice.measured[0] == 2.959 and choice.spread[0] == 0.03
    assert choice.probabilities["latency"][0] < 0.9 <= choice.probabilities["latency"][1]
    # the same medians read as exact figures would take the faster-than-budget median
    exact = refine(cands, Goals(max_latency_ms=3.0), refit, lambda i: timings[i].median_ms,
                   [0, 1, 2], 6)  # fmt: skip
    assert exact.index == 0


def test_a_stored_measurement_spreads_at_least_by_the_protocols_tolerance() -> None:
    assert repeat_spread(0.006, 0.03) == 0.03  # sessions agreeing closely: not a repeat's spread
    assert repeat_spread(0.08, 0.03) == 0.08
    assert repeat_spread(None) == 0.03 and repeat_spread(float("nan"), 0.05) == 0.05


def test_refine_never_spends_a_measurement_on_a_design_without_a_score() -> None:
    """A design with no accuracy (a degenerate cell in the evaluation, say) is measured only
    as a shot: never verified, never the answer, never an alternative."""
    latency = np.array([1.0, 1.5, 2.0, 2.5, 0.01])
    accuracy = np.array([80.0, 82.0, 85.0, 88.0, np.nan])
    cands = _candidates(latency, accuracy)
    calls: list[int] = []

    def measure(i: int) -> float:
        calls.append(i)
        return float(latency[i])

    choice = refine(cands, Goals(max_latency_ms=2.2), lambda m: cands.latency, measure, [4], 4,
                    alternatives=3)  # fmt: skip
    assert calls[0] == 4 and 4 not in calls[1:]
    assert choice.verified and choice.index == 2 and 4 not in choice.alternatives
    calls.clear()  # one measurement left to secure a fallback: a design that can be the answer
    refine(cands, Goals(max_latency_ms=2.2), lambda m: cands.latency, measure, [], 1)
    assert calls and calls != [4]


def test_refine_without_measurements_is_choose() -> None:
    latency = np.array([1.0, 2.0, 2.9, 4.0])
    cands = _candidates(latency, np.array([80.0, 85.0, 90.0, 95.0]))
    goals = Goals(max_latency_ms=3.0)
    refined = refine(cands, goals, lambda m: cands.latency, lambda i: 0.0, [], 0)
    assert refined.index == choose(cands, goals).index and not refined.verified


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
    assert set(result["mean"]) == {
        "regret",
        "violation_rate",
        "no_answer_rate",
        "seconds_per_query",
    }
    assert result["mean"]["violation_rate"] <= result["baseline"]["mean"]["violation_rate"]
    assert result["mean"]["regret"] < 1.0


def test_evaluate_optimize_replays_a_profile_only_request(small) -> None:
    table, cost = small
    train = ["1080ti_1", "silver_4114", "pixel3", "samsung_a50"]
    accuracy = table.columns["acc_cifar10"]
    prints = table.encodings[:10]  # ten measured designs, as an inline profile sends
    result = evaluate_optimize(
        table, accuracy, cost, train, ["gold_6226"], [50], 0, 1, "auto", prints, 0.9
    )
    assert result["setup"]["shots"] == 10 and result["setup"]["shots_from"] == "fingerprint"
    assert 0 <= result["mean"]["violation_rate"] <= 1
    assert result["mean"]["no_answer_rate"] == 0.0


def test_evaluate_optimize_refuses_what_it_cannot_do(small) -> None:
    table, cost = small
    args = (table, table.columns["acc_cifar10"], cost, ["1080ti_1"], ["eyeriss"])
    with pytest.raises(TableError, match="learned optimizer"):
        evaluate_optimize(*args, [50], 20, 1, "neural")
    with pytest.raises(TableError, match="percentiles"):
        evaluate_optimize(*args, [150], 20, 1, "search")
    with pytest.raises(TableError, match="0 or at least 6"):
        evaluate_optimize(*args, [50], 2, 1, "search")
    with pytest.raises(TableError, match="fingerprint"):
        evaluate_optimize(*args, [50], 0, 1, "search", ["not-a-row"])
