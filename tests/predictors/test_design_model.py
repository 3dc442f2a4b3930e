"""Per-device and accuracy models: held-out quality, measured coverage, artifact round trip."""

from pathlib import Path

import numpy as np
import pytest

from devices.reference import ReferenceTable
from predictors.design_model import (
    LEVEL,
    AdditiveBase,
    DesignModel,
    cross_coverage,
    fit_design_model,
)
from search.spaces import get_space
from tests.predictors.conftest import columns


def test_latency_model_round_trips_through_its_artifact(
    nb201: ReferenceTable, tmp_path: Path
) -> None:
    x = get_space("nb201").encode(nb201.encodings[:2000])
    y = columns(nb201, ["gold_6226"])[:2000, 0]
    model = fit_design_model(x, y)
    assert model.quality["spearman"] > 0.9
    assert 0.8 < model.quality["coverage"] <= 1.0
    model.save(tmp_path / "m")
    files = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert files == ["held_out.json", "model.json", "model.txt"]
    again = DesignModel.load(tmp_path / "m")
    np.testing.assert_allclose(again.predict(x)[0], model.predict(x)[0])
    np.testing.assert_allclose(again.predict(x)[2], model.predict(x)[2])
    assert again.held_out is not None and len(again.held_out["measured"]) == 400
    with pytest.raises(ValueError, match="retrain"):
        again.predict(x[:, :-1])  # an encoding that changed since training


def test_accuracy_model_reports_points_not_percent_error(nb201: ReferenceTable) -> None:
    x = get_space("nb201").encode(nb201.encodings[:1500])
    model = fit_design_model(x, nb201.accuracies["cifar10"][:1500], log_target=False)
    assert {"spearman", "kendall", "rmse", "mae", "coverage"} <= set(model.quality)
    assert "mape" not in model.quality
    # never outside what was observed (boosted trees can add up past 100%)
    everything = model.predict(get_space("nb201").encode(nb201.encodings))[0]
    assert everything.max() <= nb201.accuracies["cifar10"][:1500].max()


def test_too_little_data_and_foreign_artifacts_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 50"):
        fit_design_model(np.zeros((10, 3)), np.ones(10))
    (tmp_path / "model.json").write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="not an EdgeOpt design model"):
        DesignModel.load(tmp_path)


def test_latency_that_adds_up_over_kernels_is_predicted_within_ten_percent(
    tmp_path: Path,
) -> None:
    """A network's latency is close to a sum of kernel costs; the additive base catches it."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, size=(400, 12)).astype(float)  # kernel counts
    y = 0.3 + x @ rng.uniform(0.01, 0.5, size=12)
    model = fit_design_model(x, y * rng.normal(1, 0.01, size=400))
    assert model.quality["within_10pct"] >= 0.99
    model.save(tmp_path / "m")
    again = DesignModel.load(tmp_path / "m")
    assert again.additive is not None
    np.testing.assert_allclose(again.predict(x)[0], model.predict(x)[0])


def test_a_kernel_never_costs_negative_time() -> None:
    """Few designs, many columns and a cluster of near-free designs (cells that compute
    nothing): an unconstrained fit trades costs of either sign, and then a design with one
    more kernel than another can be predicted faster. Non-negative costs cannot."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 3, size=(50, 40)).astype(float)
    y = 0.05 + x @ rng.uniform(0.0, 0.02, size=40)
    x[:4], y[:4] = 0.0, 0.05  # identity cells: the fixed cost only
    base = AdditiveBase.fit(x, y)
    assert base.intercept >= 0 and min(base.coef) >= 0
    more = x[10:20].copy()
    more[:, 7] += 1  # one more kernel each
    assert (base.log_predict(more) >= base.log_predict(x[10:20])).all()


def test_values_that_do_not_add_up_get_no_additive_base() -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 4, size=(300, 6)).astype(float)
    y = np.exp(rng.normal(0, 1.5, size=300)) * (1 + x[:, 0])  # mostly noise, heavy tails
    assert fit_design_model(x, y).additive is None


def test_measurements_flagged_unstable_are_scored_apart() -> None:
    """A held-out value its protocol flagged (a busy spell) can be off by itself: the figures
    say how the predictor does on the measurements that were stable."""
    rng = np.random.default_rng(2)
    x = rng.integers(0, 4, size=(500, 10)).astype(float)
    y = 0.2 + x @ rng.uniform(0.05, 0.5, size=10)
    stable = rng.random(500) > 0.3
    measured = np.where(stable, y, y * rng.choice([0.7, 1.4], size=500))  # spells: +-30-40%
    model = fit_design_model(x, measured, reliable=stable)
    q = model.quality
    assert 0 < q["reliable_held_out"] < q["held_out"]
    assert q["within_10pct_reliable"] > q["within_10pct"] + 0.15
    assert "within_10pct_reliable" not in fit_design_model(x, y).quality
    with pytest.raises(ValueError, match="every value"):
        fit_design_model(x, y, reliable=stable[:-1])


def test_coverage_is_measured_on_rows_that_did_not_set_the_interval() -> None:
    rng = np.random.default_rng(0)
    # Scored on the rows that set the quantile, coverage reads LEVEL whatever the errors are;
    # across halves it moves with them: 30 rows of heavy-tailed errors land off LEVEL.
    heavy = np.abs(rng.standard_cauchy(30))
    assert np.mean(heavy <= np.quantile(heavy, LEVEL)) == pytest.approx(LEVEL)
    assert cross_coverage(heavy, rng) != pytest.approx(LEVEL, abs=1e-3)
    # and on many well-behaved rows it agrees with fresh data from the same process
    x = rng.uniform(size=(3000, 4))
    y = np.exp(x @ [1.0, 0.5, -0.3, 0.2] + rng.normal(0, 0.1, 3000))
    model = fit_design_model(x[:2000], y[:2000])
    _, low, high = model.predict(x[2000:])
    fresh = float(np.mean((y[2000:] >= low) & (y[2000:] <= high)))
    assert model.quality["coverage"] == pytest.approx(fresh, abs=0.04)
