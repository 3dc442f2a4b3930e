"""The learned optimizer as arrays: its teacher, training on a few devices, decoding, artifacts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from devices.fingerprint import fingerprint
from devices.reference import ReferenceTable, load_reference
from predictors.tables import LatencyTable, TableError
from search.evaluation import evaluate_optimize
from search.learned import (
    FORMAT,
    LearnedOptimizer,
    examples,
    fit_learned,
    front,
    new_spec,
    sidecar,
)
from search.optimize import Candidates, Estimates, Goals, choose
from search.spaces import get_space
from tests.disks import files_under, fill, full_disk

DATA = Path(__file__).parent / "data"
DEVICES = ["1080ti_1", "silver_4114", "pixel3", "samsung_a50"]
SPACE = get_space("nb201")


@pytest.fixture(scope="module")
def ref() -> ReferenceTable:
    return load_reference("nb201")


@pytest.fixture(scope="module")
def parts(ref: ReferenceTable) -> dict:
    """Latency of a few real devices, CIFAR-10 accuracy, decisions, fingerprint rows."""
    columns = [d.column for d in ref.devices]
    position = {e: i for i, e in enumerate(ref.encodings)}
    accuracy = ref.accuracies["cifar10"]
    return {
        "latency": ref.latency_ms[:, [columns.index(d) for d in DEVICES]],
        "accuracy": accuracy,
        "options": SPACE.decisions(ref.encodings),
        "prints": np.array([position[e] for e in fingerprint("nb201")]),
        "spec": new_spec(SPACE, "cifar10", fingerprint("nb201"), accuracy),
    }


@pytest.fixture(scope="module")
def small(parts: dict) -> LearnedOptimizer:
    """Trained on 4 real devices and 300 synthetic ones drawn from them (seconds)."""
    return fit_learned(
        parts["latency"], DEVICES, parts["accuracy"], parts["options"], parts["prints"],
        parts["spec"], synthetic=300, epochs=8,
    )  # fmt: skip


def test_the_teachers_target_is_the_optimizers_choice_on_exact_latencies(parts: dict) -> None:
    lat, acc = parts["latency"][:, 0], parts["accuracy"]
    data = examples(
        parts["latency"][:, :1], acc, parts["options"], parts["prints"], parts["spec"], 40,
        np.random.default_rng(0),
    )  # fmt: skip
    exact = Candidates(np.arange(len(lat)), np.zeros(len(lat), int), Estimates.exact(lat),
                       Estimates.exact(acc))  # fmt: skip
    budgets = data.inputs[:, 10] + np.log(lat[parts["prints"]]).mean()
    for row, log_budget, is_budget in zip(data.targets, budgets, data.inputs[:, 11], strict=True):
        if not is_budget:
            continue
        best = choose(exact, Goals(max_latency_ms=float(np.exp(log_budget))), 0.5).index
        assert best is not None
        ops = parts["options"][best]
        # the optimizer's pick carries weight in every head of the soft target
        assert all(row[5 * h + op] > 0 for h, op in enumerate(ops))


def test_trained_on_a_few_devices_it_proposes_designs_near_the_best(
    small: LearnedOptimizer, parts: dict
) -> None:
    quality = small.spec.quality
    assert quality["synthetic_devices"] == 300
    assert quality["realism"]["distance_synthetic"] < 0.3  # rank agreement like real devices
    # on fresh synthetic devices the best proposal that truly fits is near the best design
    assert quality["unseen_synthetic"]["regret"] < 1.5
    lat = parts["latency"][:, 2]
    budget = float(np.percentile(lat, 50))
    rows = small.propose(lat[parts["prints"]], Goals(max_latency_ms=budget), parts["options"])
    assert 0 < len(rows) <= 8 * 64
    fits = rows[lat[rows] <= budget]
    best = parts["accuracy"][lat <= budget].max()
    assert best - parts["accuracy"][fits].max() < 1.0


def test_decoding_never_answers_a_design_the_predictors_say_breaks_the_goal(
    small: LearnedOptimizer, parts: dict
) -> None:
    lat, acc = parts["latency"][:, 1], parts["accuracy"]
    budgets = [float(np.percentile(lat, p)) for p in (5, 25, 50, 75)] + [1e-9]
    goals = [Goals(max_latency_ms=b) for b in budgets]
    proposed = small.propose_front(lat[parts["prints"]], goals, parts["options"])
    union = np.unique(np.concatenate(proposed))
    # predictions that are 20% slow and uncertain: the checks, not the network, decide
    centre = lat[union] * 1.2
    uncertain = Estimates(centre, centre / 1.3, centre * 1.3)
    cands = Candidates(union, np.zeros(len(union), int), uncertain, Estimates.exact(acc[union]))
    answers = front(proposed, cands, goals, 0.9)
    for (choice, rows), goal in zip(answers, goals, strict=True):
        if choice.index is None:
            continue
        picked = cands.take(rows)
        assert set(picked.design) <= set(proposed[goals.index(goal)])
        assert choice.probabilities["all"][choice.index] >= 0.9
        assert picked.latency.value[choice.index] < goal.max_latency_ms
    assert sum(c.index is not None for c, _ in answers) >= 3
    assert answers[-1][0].index is None  # an impossible budget: no proposal, search's turn


def test_an_artifact_written_by_an_earlier_run_loads_and_answers(parts: dict) -> None:
    model = LearnedOptimizer.load(DATA / "learned-format1.pt")
    assert model.spec.format == FORMAT and model.spec.fingerprint == fingerprint("nb201")
    lat = parts["latency"][:, 0]
    rows = model.propose(lat[parts["prints"]], Goals(max_latency_ms=float(np.median(lat))),
                         parts["options"])  # fmt: skip
    assert len(rows) > 0 and rows.max() < len(parts["options"])


def test_save_then_load_gives_the_same_proposals(
    small: LearnedOptimizer, parts: dict, tmp_path: Path
) -> None:
    small.save(tmp_path / "m.pt")
    again = LearnedOptimizer.load(tmp_path / "m.pt")
    lat = parts["latency"][:, 3]
    goal = Goals(max_latency_ms=float(np.median(lat)))
    first = small.propose(lat[parts["prints"]], goal, parts["options"])
    assert np.array_equal(first, again.propose(lat[parts["prints"]], goal, parts["options"]))


def test_a_save_on_a_full_disk_leaves_neither_file(small: LearnedOptimizer, tmp_path: Path) -> None:
    with full_disk(tmp_path / "disk") as disk:
        filler = fill(disk)
        with pytest.raises(OSError, match="No space left"):
            small.save(disk / "m.pt")
        assert files_under(disk) == [filler]  # no tensor file cut short, no temporary
        filler.unlink()
        small.save(disk / "m.pt")
        assert files_under(disk) == [disk / "m.pt", sidecar(disk / "m.pt")]


def test_an_artifact_of_another_format_is_refused(small: LearnedOptimizer, tmp_path: Path) -> None:
    small.save(tmp_path / "m.pt")
    doc = sidecar(tmp_path / "m.pt")
    doc.write_text(doc.read_text().replace(f'"format": {FORMAT}', '"format": 99'))
    with pytest.raises(ValueError, match="format 99"):
        LearnedOptimizer.load(tmp_path / "m.pt")


def test_eval_optimize_neural_reports_it_beside_search(
    small: LearnedOptimizer, ref: ReferenceTable
) -> None:
    columns = [d.column for d in ref.devices]
    table = LatencyTable(ref.arch_ids, ref.encodings, columns, ref.latency_ms, {})
    test = ["gold_6226", "raspi4"]
    result = evaluate_optimize(
        table, ref.accuracies["cifar10"], SPACE.features(ref.encodings), DEVICES, test,
        [25, 75], 0, 1, "neural", fingerprint=fingerprint("nb201"), learned=small,
        options=SPACE.decisions(ref.encodings), degenerate=SPACE.degenerate(ref.encodings),
    )  # fmt: skip
    mean = result["mean"]
    for key in ("gap_to_search", "fallback_rate", "search_regret", "front_seconds"):
        assert np.isfinite(mean[key]), key
    assert mean["violation_rate"] <= 0.5 and mean["regret"] < 3
    with pytest.raises(TableError, match="needs a trained learned optimizer"):
        evaluate_optimize(
            table, ref.accuracies["cifar10"], SPACE.features(ref.encodings), DEVICES, test,
            [25], 0, 1, "neural", fingerprint=fingerprint("nb201"),
        )  # fmt: skip
