"""The cross-class validation suite: few-shot transfer to device classes training never saw.

A predictor tuned on one public split says little about a new user's device, whose chip,
runtime or batch size may be unlike every registered one. Each split here trains on some
classes of reference devices and tests on classes (or runtimes, or batch sizes) absent from
training; the splits are derived from the devices' descriptions, so they follow the shipped
data. :func:`evaluate_suite` runs :func:`predictors.evaluation.evaluate_transfer` (what
``edgeopt eval transfer`` runs) on every split and shot count.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from devices.reference import ReferenceDevice
from predictors.evaluation import evaluate_transfer
from predictors.shots_model import DesignFeatures
from predictors.tables import LatencyTable

Progress = Callable[[int, int], None]
# A test device counts as below the ridge baseline when its Spearman is under the baseline's
# by more than this (the margin the suite is held to).
BELOW_BASELINE = 0.01


@dataclass(frozen=True)
class Split:
    """Train on ``train``, test on ``test``: two disjoint lists of table columns."""

    name: str
    description: str
    train: tuple[str, ...]
    test: tuple[str, ...]


def device_class(device: ReferenceDevice) -> str:
    """The class a reference device stands for: what runs it and in which form factor."""
    form = device.specs.get("form_factor")
    if device.kind == "gpu":
        return "edge-gpu" if form == "embedded" else "desktop-gpu"
    if device.kind == "cpu":
        return {"mobile": "phone", "embedded": "embedded-cpu"}.get(str(form), "server-cpu")
    return "accelerator"  # ASIC, FPGA, NPU


def _large_batch(device: ReferenceDevice) -> bool:
    return (device.batch_size or 1) > 1


# Held out together in a leave-one-class-out split: the class and its nearest relatives.
_LEAVE_OUT = {
    "phone": ("phone", "embedded-cpu"),
    "server-cpu": ("server-cpu",),
    "accelerator": ("accelerator", "edge-gpu"),
}


def suite_splits(devices: Sequence[ReferenceDevice]) -> list[Split]:
    """Every split of the suite for one space's reference devices (empty halves dropped)."""
    by_class: dict[str, list[str]] = {}
    for d in devices:
        by_class.setdefault(device_class(d), []).append(d.column)
    columns = [d.column for d in devices]
    by_column = {d.column: d for d in devices}

    def of(*names: str) -> list[str]:
        return [c for n in names for c in by_class.get(n, [])]

    def rest(test: list[str]) -> list[str]:
        return [c for c in columns if c not in test]

    gpus, cpus = of("desktop-gpu"), of("server-cpu", "phone", "embedded-cpu")
    batch1 = [c for c in gpus if not _large_batch(by_column[c])]
    large = [c for c in gpus if _large_batch(by_column[c])]
    edge = of("edge-gpu") + [d.column for d in devices if d.kind == "npu"]
    wanted = [
        ("gpu-to-rest", "train on desktop GPUs only; test on every other class", gpus, rest(gpus)),
        ("cpu-to-gpu", "train on CPUs (servers, phones, boards); test on desktop GPUs", cpus, gpus),
        ("batch1-to-large", "train on batch-1 and CPU settings; test on GPUs at large batches",
         rest(large), large),
        ("large-to-batch1", "train on GPUs at large batches; test on GPUs at batch 1",
         large, batch1),
    ]  # fmt: skip
    for name, held in _LEAVE_OUT.items():
        test = of(*held)
        wanted.append((f"leave-out-{name}", f"train on every class but {name}; test on it",
                       rest(test), test))  # fmt: skip
    if set(by_class) == {"desktop-gpu"}:  # one class: leave one chip out (every batch of it)
        chips: dict[str, list[str]] = {}
        for column in columns:
            chips.setdefault(column.rsplit("_", 1)[0], []).append(column)
        for chip, test in sorted(chips.items()):
            wanted.append((f"leave-out-{chip}", f"train on the other GPUs; test on {chip}",
                           rest(test), test))  # fmt: skip
    wanted.append(("to-edge", "train on every other device; test on the edge accelerators",
                   rest(edge), edge))  # fmt: skip
    return [
        Split(name, text, tuple(train), tuple(test))
        for name, text, train, test in wanted
        if train and test and not set(train) & set(test)
    ]


def geometric_mean(values: Sequence[float]) -> float:
    """Geometric mean of Spearman figures (a weak split weighs more than in the plain mean)."""
    v = np.clip(np.asarray(values, dtype=float), 1e-6, None)
    return float(np.exp(np.mean(np.log(v))))


def evaluate_suite(
    table: LatencyTable,
    cost: np.ndarray,
    splits: Sequence[Split],
    shots: Sequence[int],
    seeds: int,
    progress: Progress | None = None,
    degenerate: np.ndarray | None = None,
    design_features: np.ndarray | DesignFeatures | None = None,
) -> dict:
    """Every split at every shot count, each device beside the ridge baseline."""
    runs = []
    total = len(splits) * len(shots)
    for k, split in enumerate(splits):
        for j, n in enumerate(shots):
            result = evaluate_transfer(
                table, cost, split.train, split.test, n, seeds, degenerate=degenerate,
                design_features=design_features,
            )  # fmt: skip
            runs.append({"split": split.name, "description": split.description, **result})
            if progress:
                progress(k * len(shots) + j + 1, total)
    summary = {}
    for n in shots:
        at = [r for r in runs if r["setup"]["shots"] == n]
        summary[str(n)] = {
            "geomean_spearman": geometric_mean([r["mean"]["spearman"] for r in at]),
            "baseline_geomean_spearman": geometric_mean(
                [r["baseline"]["mean"]["spearman"] for r in at]
            ),
            "devices_below_baseline": sum(
                q["spearman"] < r["baseline"]["devices"][d]["spearman"] - BELOW_BASELINE
                for r in at
                for d, q in r["devices"].items()
            ),
            "coverage_range": [
                min(r["intervals"]["mean_coverage"] for r in at),
                max(r["intervals"]["mean_coverage"] for r in at),
            ],
        }
    return {"runs": runs, "summary": summary}
