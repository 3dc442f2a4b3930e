"""The cross-class suite: splits derived from the reference devices, each device beside the
ridge baseline."""

import numpy as np

from devices.reference import load_reference
from predictors.suite import device_class, evaluate_suite, geometric_mean, suite_splits
from predictors.tables import LatencyTable
from search.spaces import get_space


def test_splits_test_on_classes_their_training_never_saw() -> None:
    splits = {s: suite_splits(load_reference(s).devices) for s in ("nb201", "fbnet", "ofa_mbv3")}
    assert sum(len(v) for v in splits.values()) >= 12
    devices = {d.column: d for d in load_reference("nb201").devices}
    by_name = {s.name: s for s in splits["nb201"]}
    for split in splits["nb201"]:
        assert split.train and split.test and not set(split.train) & set(split.test)
    gpu_only = by_name["gpu-to-rest"]
    assert {device_class(devices[c]) for c in gpu_only.train} == {"desktop-gpu"}
    assert "desktop-gpu" not in {device_class(devices[c]) for c in gpu_only.test}
    assert set(by_name["to-edge"].test) == {"edgegpu_jetson_tx2", "edgetpu"}
    large = by_name["batch1-to-large"]
    assert all((devices[c].batch_size or 1) > 1 for c in large.test)
    assert all((devices[c].batch_size or 1) == 1 for c in large.train)
    ofa = {s.name for s in splits["ofa_mbv3"]}  # one class: a chip left out at every batch
    assert {"leave-out-v100", "batch1-to-large"} <= ofa


def test_the_suite_reports_each_device_beside_the_baseline() -> None:
    ref = load_reference("fbnet")
    space = get_space("fbnet")
    table = LatencyTable(
        ref.arch_ids, ref.encodings, [d.column for d in ref.devices], ref.latency_ms, {}
    )
    split = next(s for s in suite_splits(ref.devices) if s.name == "leave-out-accelerator")
    result = evaluate_suite(table, space.features(ref.encodings), [split], [5], seeds=1)
    run = result["runs"][0]
    assert set(run["devices"]) == set(split.test) == set(run["baseline"]["devices"])
    summary = result["summary"]["5"]
    assert summary["geomean_spearman"] == run["mean"]["spearman"]
    assert 0 <= summary["coverage_range"][0] <= summary["coverage_range"][1] <= 1


def test_geometric_mean_weighs_a_weak_split_more() -> None:
    assert abs(geometric_mean([0.9, 0.9]) - 0.9) < 1e-12
    assert geometric_mean([1.0, 0.5]) < np.mean([1.0, 0.5])
