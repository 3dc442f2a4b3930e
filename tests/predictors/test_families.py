"""Validation by family on a small slice: every figure stands beside its baselines."""

from __future__ import annotations

import numpy as np

from devices.reference import ReferenceTable, load_family
from predictors.families import METHODS, evaluate_families
from search.spaces import get_space


def test_each_family_is_held_out_with_the_baselines_beside_it(nb201: ReferenceTable) -> None:
    latbench = load_family("nb201_latbench")
    rows = np.arange(2000)
    ref_names = ["1080ti_1", "pixel3", "gold_6240", "raspi4"]
    lb_names = ["desktop_gpu_gtx1080ti_fp32", "mobile_dsp_sd855_hexagon690_int8"]
    index = [d.column for d in nb201.devices]
    lb_index = [d.column for d in latbench.devices]
    latency = np.c_[
        nb201.latency_ms[rows][:, [index.index(n) for n in ref_names]],
        latbench.latency_ms[rows][:, [lb_index.index(n) for n in lb_names]],
    ]
    latency = latency[np.isfinite(latency).all(axis=1)]
    family = {n: "help" for n in ref_names} | {n: "latbench" for n in lb_names}
    encodings = [nb201.encodings[i] for i in rows[: len(latency)]]
    space = get_space("nb201")
    doc = evaluate_families(
        latency, ref_names + lb_names, family, space.features(encodings),
        space.encode(encodings), [10], seeds=1, degenerate=space.degenerate(encodings),
    )  # fmt: skip
    assert set(doc["families"]) == {"help", "latbench"}
    held = doc["families"]["latbench"]
    assert held["basis"] == ref_names and held["tested"] == lb_names
    row = held["shots"]["10"]
    assert set(row["spearman"]) == set(METHODS)
    assert 0 <= row["coverage_90"] <= 1
    assert all(set(v) == set(METHODS) for v in row["per_device"].values())


def test_latbench_devices_keep_their_precision() -> None:
    latbench = load_family("nb201_latbench")
    by_name = {d.column: d for d in latbench.devices}
    assert len(by_name) == 15
    assert by_name["embedded_tpu_edgetpu_int8"].specs["precision"] == "int8"
    assert by_name["embedded_gpu_jetson_nano_fp16"].specs["precision"] == "fp16"
    assert by_name["mobile_dsp_sd855_hexagon690_int8"].kind == "dsp"
    assert "BRP-NAS" in by_name["embedded_tpu_edgetpu_int8"].source
