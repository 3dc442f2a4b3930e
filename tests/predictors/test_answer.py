"""The one proxy-or-transfer decision, on real reference latencies."""

from __future__ import annotations

import numpy as np

from devices.reference import ReferenceTable
from predictors.answer import answer, best_proxies, calibrated_proxy_scale, calibrated_scale
from predictors.transfer import TransferBasis
from search.spaces import get_space
from tests.predictors.conftest import columns

ROWS = 1500


def _basis(nb201: ReferenceTable, names: list[str]) -> TransferBasis:
    rows = np.arange(ROWS)
    cost = get_space("nb201").features([nb201.encodings[i] for i in rows])
    return TransferBasis(cost, columns(nb201, names)[rows], names)


def test_an_agreeing_device_is_reused_as_proxy(nb201: ReferenceTable) -> None:
    basis = _basis(nb201, ["1080ti_1", "pixel3", "eyeriss"])
    pixel3 = columns(nb201, ["pixel3"])[:ROWS, 0]
    noise = np.exp(np.random.default_rng(0).normal(0, 0.01, ROWS))
    target = 1.7 * pixel3**0.9 * noise  # a power law of pixel3: its proxy is the best model
    shots = np.arange(0, 300, 10)
    got = answer(basis, shots, target[shots], label="pixel3-like")
    assert got.method == "proxy" and got.proxy == "pixel3" and got.proxy_spearman >= 0.9
    assert got.estimates is not None and len(got.estimates[0]) == ROWS
    assert got.info()["method"] == "proxy" and "reused pixel3" in got.info()["decision"]
    assert "leave-one-out error" in got.reason


def test_a_ranked_like_device_goes_to_transfer_when_it_predicts_the_shots_better(
    nb201: ReferenceTable,
) -> None:
    basis = _basis(nb201, ["1080ti_1", "pixel3", "eyeriss"])
    target = columns(nb201, ["raspi4"])[:ROWS, 0]  # an ARM CPU, ranked like pixel3 (0.95)
    shots = np.arange(0, 300, 10)
    got = answer(basis, shots, target[shots], label="raspi4")
    assert got.proxy == "pixel3" and got.proxy_spearman >= 0.9
    assert got.method == "transfer" and "leave-one-out error" in got.reason


def test_a_proxy_that_agrees_in_rank_but_predicts_worse_is_not_reused(
    nb201: ReferenceTable,
) -> None:
    pixel3 = columns(nb201, ["pixel3"])[:ROWS, 0]
    knee = float(np.median(pixel3))
    # the same order as pixel3 (Spearman 1), but no power law maps one onto the other
    target = np.where(pixel3 < knee, pixel3, pixel3**3 / knee**2)
    cost = get_space("nb201").features([nb201.encodings[i] for i in range(ROWS)])
    basis = TransferBasis(cost, np.c_[pixel3, 2 * target], ["pixel3", "twin"])
    shots = np.arange(0, 300, 10)
    got = answer(basis, shots, target[shots])
    assert got.proxy == "pixel3" and got.proxy_spearman == 1.0
    assert got.method == "transfer" and "leave-one-out error" in got.reason


def test_a_reused_proxy_interval_is_calibrated_on_the_basis(nb201: ReferenceTable) -> None:
    phones = _basis(nb201, ["pixel3", "essential_ph_1", "samsung_a50", "samsung_s7"])
    scale = calibrated_proxy_scale(phones, 10)
    assert 0.3 < scale < 5  # a multiplier, found by holding each phone out in turn
    assert calibrated_proxy_scale(_basis(nb201, ["pixel3"]), 10) == 1.0


def test_without_an_agreeing_device_transfer_adapts(nb201: ReferenceTable) -> None:
    basis = _basis(nb201, ["1080ti_1", "pixel3"])
    target = columns(nb201, ["fpga"])[:ROWS, 0]
    shots = np.arange(0, 100, 10)
    scale = calibrated_scale(basis, len(shots))
    got = answer(basis, shots, target[shots], interval_scale=scale)
    assert got.method == "transfer" and got.proxy_spearman is not None
    assert got.proxy_spearman < 0.9
    centre, low, high = got.estimates  # type: ignore[misc]
    assert (low <= centre).all() and (centre <= high).all()
    forced = answer(basis, shots, target[shots], allow_proxy=False, interval_scale=scale)
    assert forced.method == "transfer" and "not requested" in forced.reason


def test_own_model_first_and_too_few_shots_give_no_number(nb201: ReferenceTable) -> None:
    basis = _basis(nb201, ["1080ti_1"])
    own = (np.ones(3), np.ones(3) * 0.9, np.ones(3) * 1.1)
    assert answer(basis, np.arange(2), np.ones(2), own=own).method == "device-model"
    none = answer(basis, np.arange(2), np.ones(2), label="my-board")
    assert none.method is None and none.estimates is None and "my-board" in none.reason
    assert answer(None, np.arange(5), np.ones(5)).method is None


def test_best_proxies_uses_common_designs_only(nb201: ReferenceTable) -> None:
    latency = columns(nb201, ["titan_rtx_256", "2080ti_256", "fpga"])[:400].copy()
    latency[:200, 2] = np.nan  # the FPGA measured half of them
    proxies = best_proxies(latency)
    assert proxies[0][0] == 1 and proxies[1][0] == 0
    assert proxies[2][0] is not None and proxies[2][1] is not None and proxies[2][1] < 1


def test_a_device_with_thousands_of_measurements_and_no_model_is_answered(
    nb201: ReferenceTable,
) -> None:
    basis = _basis(nb201, ["1080ti_1", "pixel3", "eyeriss"])
    target = columns(nb201, ["gold_6226"])[:ROWS, 0]
    shots = np.arange(0, ROWS, 1)[:1200]  # more shots than calibration samples designs
    scale = calibrated_scale(basis, len(shots))
    got = answer(basis, shots, target[shots], interval_scale=scale)
    assert got.method == "transfer" and got.shots == 1200
    centre = got.estimates[0] if got.estimates is not None else None
    assert centre is not None
    assert np.corrcoef(np.log(centre[1200:]), np.log(target[1200:]))[0, 1] > 0.9


def test_a_lone_device_has_no_proxy(nb201: ReferenceTable) -> None:
    assert best_proxies(nb201.latency_ms[:50, :1]) == [(None, None)]
    assert best_proxies(np.zeros((0, 0))) == []
