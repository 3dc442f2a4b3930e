"""A device unlike the basis: the shots model learns from every measurement, and transfer
stacks it with the basis so quality grows with shots and never falls to the baselines."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from devices.reference import ReferenceTable, load_family
from predictors.answer import answer as answer_for
from predictors.shots_model import BLOCK_SHOTS, DesignFeatures, DesignPrior, fit_shots
from predictors.transfer import TransferBasis, TransferModel, own_half_width, ridge_baseline
from search.spaces import get_space
from tests.predictors.conftest import columns

BASIS = ["1080ti_1", "1080ti_256", "silver_4114", "samsung_a50", "pixel3", "gold_6240"]
ROWS = 4000  # a slice of NB201, so the tests run in seconds


@pytest.fixture(scope="module")
def setting(nb201: ReferenceTable) -> tuple[TransferModel, np.ndarray]:
    """A basis of reference (PyTorch-family) devices and a LatBench (TensorFlow) target."""
    latbench = load_family("nb201_latbench")
    names = [d.column for d in latbench.devices]
    target = latbench.latency_ms[:, names.index("mobile_cpu_sd855_kryo485_int8")]
    keep = np.flatnonzero(np.isfinite(target))[:ROWS]
    space = get_space("nb201")
    encodings = [nb201.encodings[i] for i in keep]
    basis = TransferBasis(
        space.features(encodings),
        columns(nb201, BASIS)[keep],
        BASIS,
        space.degenerate(encodings),
        space.design_features(encodings),
    )
    return TransferModel(basis), target[keep]


def _spearman(model: TransferModel, truth: np.ndarray, shots: int, seed: int = 0) -> float:
    idx = model.choose_shots(shots, np.random.default_rng(seed))
    rest = np.setdiff1d(np.arange(len(truth)), idx)
    return float(spearmanr(model.adapt(idx, truth[idx]).predict(rest)[0], truth[rest])[0])


def test_quality_grows_with_shots_on_a_device_unlike_the_basis(
    setting: tuple[TransferModel, np.ndarray],
) -> None:
    model, truth = setting
    few, many = _spearman(model, truth, 10), _spearman(model, truth, 100)
    assert many > few + 0.03
    assert many > 0.9


def test_stacking_is_not_below_the_ridge_baseline_on_the_same_shots(
    setting: tuple[TransferModel, np.ndarray],
) -> None:
    model, truth = setting
    for shots in (10, 50):
        idx = model.choose_shots(shots, np.random.default_rng(1))
        rest = np.setdiff1d(np.arange(len(truth)), idx)
        ours = spearmanr(model.adapt(idx, truth[idx]).predict(rest)[0], truth[rest])[0]
        ridge = spearmanr(ridge_baseline(model.basis, idx, truth[idx])[rest], truth[rest])[0]
        assert ours >= ridge - 0.01


def test_without_design_features_transfer_answers_alone(nb201: ReferenceTable) -> None:
    space = get_space("nb201")
    encodings = nb201.encodings[:ROWS]
    basis = TransferBasis(space.features(encodings), columns(nb201, BASIS)[:ROWS], BASIS)
    truth = columns(nb201, ["raspi4"])[:ROWS, 0]
    idx = TransferModel(basis).choose_shots(20, np.random.default_rng(0))
    adapted = TransferModel(basis).adapt(idx, truth[idx])
    assert adapted.own is None and adapted.stack == 1.0


def test_the_shots_model_alone_learns_additive_costs() -> None:
    """Latency that adds up over a design's features is learned from its shots."""
    rng = np.random.default_rng(0)
    features = rng.integers(0, 3, size=(2000, 12)).astype(float)
    truth = np.log(features @ rng.uniform(0.5, 2.0, 12) + 1.0)
    prior = DesignPrior(features, np.zeros((2000, 0)))
    shots = rng.choice(2000, size=60, replace=False)
    fitted = fit_shots(prior, shots, truth[shots])
    rest = np.setdiff1d(np.arange(2000), shots)
    assert spearmanr(fitted.predict(rest), truth[rest])[0] > 0.95
    assert fitted.loo.shape == (60,)


def test_a_block_of_features_lets_a_few_shots_find_the_count_a_device_follows() -> None:
    """A device whose costs follow one block (say, the kernels a runtime executes) among many
    other columns: without the block, twenty shots spread over every column; with it, the
    leave-one-out choice puts its weight on the block (blocks join within BLOCK_SHOTS)."""
    rng = np.random.default_rng(0)
    edges = rng.integers(0, 2, size=(2000, 30)).astype(float)  # what this runtime ignores
    kernels = rng.integers(0, 4, size=(2000, 6)).astype(float)  # what it runs
    features = np.c_[edges, kernels]
    truth = np.log(kernels @ rng.uniform(0.5, 2.0, 6) + 1.0)
    shots = rng.choice(2000, size=BLOCK_SHOTS[0], replace=False)
    rest = np.setdiff1d(np.arange(2000), shots)
    plain = fit_shots(DesignPrior(features, np.zeros((2000, 0))), shots, truth[shots])
    blocked = DesignPrior(DesignFeatures(features, ((30, 36),)), np.zeros((2000, 0)))
    fitted = fit_shots(blocked, shots, truth[shots])
    assert spearmanr(fitted.predict(rest), truth[rest])[0] > 0.95
    assert spearmanr(plain.predict(rest), truth[rest])[0] < 0.8
    assert fitted.weights[-1] > 0  # the block's kernel carries the fit
    few = fit_shots(blocked, shots[:10], truth[shots[:10]])
    assert len(few.weights) == len(plain.weights)  # too few shots to choose among more kernels


def test_nb201_names_the_executed_kernels_as_a_block() -> None:
    """A 3x3 convolution into a node that never reaches the output: the op counts have it,
    the block of executed kernels does not (a runtime that removes dead code never runs it)."""
    space = get_space("nb201")
    dead_conv = "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"
    features = space.design_features([dead_conv])
    ((start, stop),) = features.blocks
    assert (start, stop) == (34, features.matrix.shape[1])  # after 6 x 5 one-hot + 4 counts
    assert features.matrix[0, 32] == 1  # the op count: one nor_conv_3x3
    assert features.matrix[0, start] == 0  # executed 3x3 convolutions: none


def test_intervals_cover_held_out_designs_at_about_their_level(
    setting: tuple[TransferModel, np.ndarray],
) -> None:
    model, truth = setting
    model.calibrate(50)
    idx = model.choose_shots(100, np.random.default_rng(2))
    rest = np.setdiff1d(np.arange(len(truth)), idx)
    _, low, high = model.adapt(idx, truth[idx]).predict(rest)
    covered = float(np.mean((truth[rest] >= low) & (truth[rest] <= high)))
    assert 0.8 <= covered <= 0.99


def test_the_devices_own_errors_set_a_floor_under_its_intervals() -> None:
    assert own_half_width(np.array([0.1, -0.1])) is None  # too few to say anything
    few, many = own_half_width(np.full(5, 0.2)), own_half_width(np.full(200, 0.2))
    assert few is not None and many is not None
    assert few > many > 0.2 * 1.645  # Student's t and sqrt(1 + 1/n): wider from fewer shots


def test_every_transfer_answer_says_how_well_its_shots_are_explained(
    setting: tuple[TransferModel, np.ndarray],
) -> None:
    model, truth = setting
    idx = model.choose_shots(30, np.random.default_rng(3))
    explained = model.adapt(idx, truth[idx]).evidence()
    assert explained["explained"] in ("well", "partly")
    assert 0 <= float(explained["typical_error"]) < 0.25  # type: ignore[arg-type]
    noise = np.random.default_rng(4).uniform(1.0, 10.0, len(truth))  # nothing to explain
    answer = answer_for(model.basis, idx, noise[idx])
    assert answer.evidence is not None and answer.evidence["explained"] == "poorly"
    assert "next-measurements" in str(answer.info()["advice"])


def test_a_device_with_many_measurements_fits_its_shots_model_on_a_sample(
    setting: tuple[TransferModel, np.ndarray],
) -> None:
    model, truth = setting
    idx = np.random.default_rng(5).choice(len(truth), 900, replace=False)
    adapted = model.adapt(idx, truth[idx])
    assert adapted.own is not None and len(adapted.own.loo) == 400  # a seeded sample
    assert adapted.errors is not None and len(adapted.errors) == 400
    assert adapted.evidence()["explained"] in ("well", "partly")
    rest = np.setdiff1d(np.arange(len(truth)), idx)
    assert spearmanr(adapted.predict(rest)[0], truth[rest])[0] > 0.9
