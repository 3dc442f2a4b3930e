"""Synthetic devices: fitted to real ones, and measured against them before they are used."""

from __future__ import annotations

import numpy as np
import pytest

from devices.reference import load_reference
from search.spaces import get_space
from search.synthetic import DeviceGenerator, one_hot, realism, spearman_matrix

SPACE = get_space("nb201")
REAL = ["1080ti_1", "1080ti_256", "silver_4114", "samsung_a50", "pixel3", "essential_ph_1"]


@pytest.fixture(scope="module")
def real() -> tuple[np.ndarray, np.ndarray]:
    ref = load_reference("nb201")
    columns = [d.column for d in ref.devices]
    onehot = one_hot(SPACE.decisions(ref.encodings), SPACE.choices())
    return onehot, ref.latency_ms[:, [columns.index(d) for d in REAL]]


def test_one_hot_marks_one_option_per_decision() -> None:
    options = SPACE.decisions(SPACE.enumerate()[:50])
    onehot = one_hot(options, SPACE.choices())
    assert onehot.shape == (50, 30)
    assert (onehot.reshape(50, 6, 5).sum(axis=2) == 1).all()


def test_synthetic_devices_rank_designs_like_real_ones(real) -> None:
    onehot, latency = real
    generator = DeviceGenerator.fit(onehot, latency, REAL)
    drawn = generator.sample(60, np.random.default_rng(0))
    assert drawn.shape == (len(onehot), 60) and (drawn > 0).all()
    figures = realism(latency, drawn)
    # the distance is small on the real devices' own scale: their pairwise spread
    assert figures["distance_synthetic"] < 2 * figures["real_std"]
    assert figures["distance_cross"] < 2 * figures["real_std"]
    # and the draws are not copies of one another
    assert figures["synthetic_std"] > 0.02


def test_spearman_matrix_is_rank_correlation() -> None:
    x = np.arange(10.0)
    table = np.c_[x, x**3, -x]
    m = spearman_matrix(table)
    assert m[0, 1] == pytest.approx(1.0) and m[0, 2] == pytest.approx(-1.0)


def test_the_generator_wants_whole_tables(real) -> None:
    onehot, latency = real
    holed = latency.copy()
    holed[0, 0] = np.nan
    with pytest.raises(ValueError, match="every design"):
        DeviceGenerator.fit(onehot, holed, REAL)
    with pytest.raises(ValueError, match="at least 2"):
        DeviceGenerator.fit(onehot, latency[:, :1], REAL[:1])
