"""Few-shot transfer on real reference devices: a held-out device from 10 measured designs."""

import numpy as np
import pytest
from scipy.stats import spearmanr

from devices.reference import ReferenceTable
from predictors.transfer import TransferBasis, TransferModel, ridge_baseline
from search.spaces import get_space
from tests.predictors.conftest import columns

BASIS = ["1080ti_1", "1080ti_256", "silver_4114", "samsung_a50", "pixel3"]


@pytest.fixture(scope="module")
def model(nb201: ReferenceTable) -> TransferModel:
    cost = get_space("nb201").features(nb201.encodings)
    return TransferModel(TransferBasis(cost, columns(nb201, BASIS), BASIS))


def test_ten_chosen_shots_rank_an_unseen_accelerator(
    nb201: ReferenceTable, model: TransferModel
) -> None:
    target = columns(nb201, ["eyeriss"])[:, 0]
    rng = np.random.default_rng(0)
    shots = model.choose_shots(10, rng)
    adapted = model.adapt(shots, target[shots])
    centre, low, high = adapted.predict()
    ours = spearmanr(centre, target)[0]
    random_shots = np.random.default_rng(0).choice(len(target), 10, replace=False)
    baseline = spearmanr(ridge_baseline(model.basis, random_shots, target[random_shots]), target)[0]
    assert ours > 0.97
    assert ours > baseline + 0.05  # eyeriss is unlike every basis device: cost features matter
    assert (low <= centre).all() and (centre <= high).all()


def test_calibrated_intervals_cover_about_their_level(
    nb201: ReferenceTable, model: TransferModel
) -> None:
    scale = model.calibrate(10)
    target = columns(nb201, ["gold_6226"])[:, 0]
    shots = model.choose_shots(10, np.random.default_rng(1))
    _, low, high = model.adapt(shots, target[shots]).predict()
    covered = np.mean((target >= low) & (target <= high))
    assert scale > 0
    assert 0.75 < covered <= 1.0


def test_holes_in_the_basis_are_filled(nb201: ReferenceTable) -> None:
    latency = columns(nb201, BASIS)[:3000].copy()
    latency[::7, 0] = np.nan
    basis = TransferBasis(np.zeros((3000, 0)), latency, BASIS)
    assert np.isfinite(basis.log_latency).all()
    full = np.log(columns(nb201, BASIS)[:3000])
    truth = full[::7, 0]
    best_peer = max(np.corrcoef(full[:, 0], full[:, j])[0, 1] for j in range(1, len(BASIS)))
    # better than any one peer device (and than a column mean, which has no correlation)
    assert np.corrcoef(basis.log_latency[::7, 0], truth)[0, 1] > best_peer


def test_bad_shots_are_refused(model: TransferModel) -> None:
    with pytest.raises(ValueError, match="at least 3"):
        model.adapt(np.array([1, 2]), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="twice"):
        model.adapt(np.array([1, 1, 2]), np.array([1.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="positive"):
        model.adapt(np.array([1, 2, 3]), np.array([1.0, -2.0, 2.0]))
    with pytest.raises(ValueError, match="only 2 designs"):
        model.choose_shots(5, np.random.default_rng(0), np.array([1, 2]))


def test_penalties_are_a_hyperparameter(nb201: ReferenceTable, model: TransferModel) -> None:
    target = columns(nb201, ["eyeriss"])[:, 0]
    shots = model.choose_shots(10, np.random.default_rng(0))
    stiff = TransferModel(model.basis, interval_scale=1.0, penalty_scale=9.0)
    assert stiff.penalties["devices"] == 9.0 * TransferModel(model.basis).penalties["devices"]
    loose = TransferModel(model.basis, interval_scale=1.0)
    stiff_ms, loose_ms = (m.adapt(shots, target[shots]).predict()[0] for m in (stiff, loose))
    assert not np.allclose(stiff_ms, loose_ms)  # the penalty matters


def test_the_ridge_baseline_takes_over_where_the_blend_misses_the_shots() -> None:
    from predictors.transfer import COMPONENTS, _choose

    ridge = COMPONENTS.index("devices")
    close = np.full((10, len(COMPONENTS)), 0.1)
    assert _choose(close)[ridge] < 1  # a blend where the components predict alike
    missed = np.full((10, len(COMPONENTS)), 0.5)
    missed[:, ridge] = 0.05  # the cost and log models miss; the baseline's form does not
    assert list(_choose(missed)) == list(np.eye(len(COMPONENTS))[ridge])


def test_degenerate_designs_neither_take_shots_nor_bend_the_fit(nb201: ReferenceTable) -> None:
    space = get_space("nb201")
    dead = space.degenerate(nb201.encodings)
    names = ["1080ti_1", "1080ti_256", "silver_4114", "samsung_a50"]  # none prunes dead cells
    basis_ms = columns(nb201, names)
    cost = space.features(nb201.encodings)
    aware = TransferModel(TransferBasis(cost, basis_ms, names, dead))
    target = columns(nb201, ["raspi4"])[:, 0]  # TFLite: dead cells run in ~0.1 ms, not 26
    shots = aware.choose_shots(10, np.random.default_rng(0))
    assert not dead[shots].any()
    # a user's shots that include two dead cells: they set those cells' level only
    with_dead = np.r_[shots[:8], np.flatnonzero(dead)[:2]]
    adapted = aware.adapt(with_dead, target[with_dead])
    live = ~dead
    blind = TransferModel(TransferBasis(cost, basis_ms, names)).adapt(with_dead, target[with_dead])
    ours, theirs = adapted.predict()[0], blind.predict()[0]
    assert spearmanr(ours[live], target[live])[0] > spearmanr(theirs[live], target[live])[0]

    def miss(predicted: np.ndarray) -> float:
        return float(np.median(np.abs(np.log(predicted[dead] / target[dead]))))

    assert miss(ours) < miss(theirs) / 2  # dead cells shifted to the level measured for them


def test_degenerate_shots_do_not_widen_a_working_designs_interval(nb201: ReferenceTable) -> None:
    """raspi4 runs the fingerprint's two disconnected cells in 0.012 ms, next to cells of
    3-75 ms. The basis (pixel3 prunes dead work too) fits them, but a working design's
    interval is read from the working shots' errors, as wide as without those two shots."""
    from devices.fingerprint import fingerprint

    space = get_space("nb201")
    degenerate = space.degenerate(nb201.encodings)
    basis = TransferBasis(
        space.features(nb201.encodings), columns(nb201, BASIS), BASIS, degenerate,
        space.design_features(nb201.encodings),
    )  # fmt: skip
    truth = columns(nb201, ["raspi4"])[:, 0]
    prints = np.array([nb201.encodings.index(e) for e in fingerprint("nb201")])
    assert degenerate[prints].sum() == 2 and truth[prints][degenerate[prints]].max() < 0.1
    working = np.flatnonzero(~degenerate)[:3000]
    model = TransferModel(basis, interval_scale=1.2)

    def width(shots: np.ndarray) -> float:
        centre, _, high = model.adapt(shots, truth[shots]).predict(working)
        return float(np.median(high / centre))

    assert width(prints) <= 1.2 * width(prints[~degenerate[prints]])
