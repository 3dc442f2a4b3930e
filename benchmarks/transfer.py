"""Benchmark: few-shot latency transfer on the standard splits, through ``edgeopt eval transfer``.

    python benchmarks/transfer.py [--data ../shared/data-like folder]
        [--out benchmarks/results/reference]

Runs NB201 (10 and 5 shots) and FBNet (10 shots, batch 64 in place of 256) on the HELP split
of ../shared/data/README.md, 5 seeds each, with the shipped reference tables by default, and
writes one JSON per run plus a markdown summary that the README quotes.

Beside each test device, the ceiling its own data allows a linear model: ridge over the
space's encoding and the training devices' log-latencies fitted on half of the device's
measured designs (thousands, not 10) and scored on the other half. Where measurements are
whole milliseconds (pixel2) the ceiling is far below 1, and no few-shot figure can pass it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from devices.reference import data_dir
from predictors.metrics import quality
from predictors.tables import read_tables
from search.spaces import get_space

TRAIN = (
    "1080ti_1,1080ti_32,1080ti_{b},silver_4114,silver_4210r,"
    "samsung_a50,pixel3,essential_ph_1,samsung_s7"
)
TEST = "titan_rtx_{b},gold_6226,fpga,pixel2,raspi4,eyeriss"
RUNS = (("nb201", "256", 10), ("nb201", "256", 5), ("fbnet", "64", 10), ("fbnet", "64", 5))


def ceiling(space: str, data: Path, train: list[str], test: list[str]) -> dict[str, float]:
    """Spearman of a ridge fitted on half of each test device's own designs (see above)."""
    codec = get_space(space)
    table = read_tables(data / space / "latency_ms.csv.gz", data / space / "archs.csv.gz", codec)
    x = np.c_[
        np.ones(len(table.encodings)),
        codec.encode(table.encodings),
        np.log(np.stack([table.column(d) for d in train], axis=1)),
    ]
    out = {}
    for name in test:
        y = table.column(name)
        rows = np.random.default_rng(0).permutation(np.flatnonzero(np.isfinite(y)))
        fit, held = rows[: len(rows) // 2], rows[len(rows) // 2 :]
        a = x[fit]
        coef = np.linalg.solve(a.T @ a + 1e-2 * np.eye(x.shape[1]), a.T @ np.log(y[fit]))
        out[name] = quality(np.exp(x[held] @ coef), y[held])["spearman"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=data_dir())
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/reference"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    lines = [
        "| space | shots | EdgeOpt mean Spearman | min device | ridge baseline | "
        "within +-10% | interval coverage (90%) | "
        "linear model on half its own designs (mean; min device) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for space, batch, shots in RUNS:
        out = args.out / f"transfer_{space}_{shots}shots.json"
        cmd = [
            sys.executable, "-m", "app", "eval", "transfer",
            "--latency", str(args.data / space / "latency_ms.csv.gz"),
            "--archs", str(args.data / space / "archs.csv.gz"),
            "--space", space,
            "--train", TRAIN.format(b=batch),
            "--test", TEST.format(b=batch),
            "--shots", str(shots), "--seeds", "5", "--json", str(out),
        ]  # fmt: skip
        subprocess.run(cmd, check=True)
        doc = json.loads(out.read_text())
        limit = ceiling(space, args.data, TRAIN.format(b=batch).split(","), list(doc["devices"]))
        doc["ceiling_spearman"] = limit
        out.write_text(json.dumps(doc, indent=2))
        low = min(limit.items(), key=lambda kv: kv[1])
        worst = min(doc["devices"].items(), key=lambda kv: kv[1]["spearman"])
        coverage = doc["intervals"]["coverage"]
        lines.append(
            f"| {space} | {shots} | {doc['mean']['spearman']:.4f} | "
            f"{worst[0]} {worst[1]['spearman']:.4f} | {doc['baseline']['mean']['spearman']:.4f} | "
            f"{doc['mean']['within_10pct']:.3f} | {sum(coverage.values()) / len(coverage):.3f} | "
            f"{np.mean(list(limit.values())):.4f}; {low[0]} {low[1]:.4f} |"
        )
    summary = "\n".join(lines) + "\n"
    (args.out / "transfer.md").write_text(summary)
    print(summary)


if __name__ == "__main__":
    main()
