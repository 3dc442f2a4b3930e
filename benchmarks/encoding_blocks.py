"""Benchmark: which count of work each family of NB201 devices follows.

    python benchmarks/encoding_blocks.py [--out benchmarks/results/reference]

A linear model of log-latency on one block of ``NB201.encode`` at a time (the per-edge
one-hot ops, the 4 op counts, the 13 kernels a cell executes, all the executed-kernel
columns, everything), fitted on 5,000 of a device's working designs and scored (Spearman)
on 3,000 others, per device of the HELP / HW-NAS-Bench table and of LatBench. It says how
much each way of counting explains when the device's own data is plentiful: the structure
a few-shot prior must have (``predictors/shots_model.py``, ``SearchSpace.encode_blocks``).
"""

from __future__ import annotations

import argparse
import json
import platform
from datetime import date
from pathlib import Path

import numpy as np

from devices.reference import load_family, load_reference
from predictors.metrics import spearman
from search.spaces import get_space

TRAIN, TEST = 5000, 3000


def _fit(x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray) -> float:
    a = np.c_[x[train], np.ones(len(train))]
    coef = np.linalg.lstsq(a, y[train], rcond=None)[0]
    return spearman(np.c_[x[test], np.ones(len(test))] @ coef, y[test])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/reference"))
    args = parser.parse_args()
    space = get_space("nb201")
    ((start, stop),) = space.encode_blocks()
    out: dict[str, dict] = {}
    for family, table in (
        ("help", load_reference("nb201")),
        ("latbench", load_family("nb201_latbench")),
    ):
        x = space.encode(table.encodings)
        blocks = {
            "edge one-hot": x[:, :30], "op counts": x[:, 30:start],
            "cell kernels": x[:, start : start + 13], "executed kernels": x[:, start:stop],
            "all": x,
        }  # fmt: skip
        dead = space.degenerate(table.encodings)
        rng = np.random.default_rng(0)
        devices = {}
        for j, device in enumerate(table.devices):
            y = table.latency_ms[:, j]
            ok = np.flatnonzero(np.isfinite(y) & (y > 0) & ~dead)
            if len(ok) < TRAIN + TEST:
                continue
            rows = rng.permutation(ok)
            train, test = rows[:TRAIN], rows[TRAIN : TRAIN + TEST]
            devices[device.column] = {k: _fit(v, np.log(y), train, test) for k, v in blocks.items()}
        mean = {k: float(np.mean([d[k] for d in devices.values()])) for k in blocks}
        out[family] = {"mean": mean, "devices": devices}
        print(family, len(devices), {k: round(v, 3) for k, v in mean.items()})
    doc = {
        "families": out,
        "setup": {"train": TRAIN, "test": TEST, "model": "least squares on log-latency"},
        "provenance": {
            "command": "python benchmarks/encoding_blocks.py",
            "date": date.today().isoformat(),
            "machine": f"{platform.machine()} {platform.processor() or platform.system()}",
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "encoding_blocks.json").write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
