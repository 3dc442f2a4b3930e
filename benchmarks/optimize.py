"""Benchmark: /optimize's methods on the 6 standard NB201 test devices, through the CLI.

    python benchmarks/optimize.py [--data FOLDER] [--out benchmarks/results/reference]

Budgets at the 10/25/50/75th percentile of each device's true latencies, at most 20 designs
measured per device, 5 seeds, CIFAR-10 accuracy from the reference data; writes one JSON per
method and a markdown summary.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from devices.reference import data_dir

TRAIN = (
    "1080ti_1,1080ti_32,1080ti_256,silver_4114,silver_4210r,"
    "samsung_a50,pixel3,essential_ph_1,samsung_s7"
)
TEST = "titan_rtx_256,gold_6226,fpga,pixel2,raspi4,eyeriss"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=data_dir())
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/reference"))
    args = parser.parse_args()
    lines = [
        "| method | mean regret (points) | budget violations | s / query | worst device regret |",
        "|---|---|---|---|---|",
    ]
    baseline = None
    for method in ("proxy", "search", "auto"):
        out = args.out / f"optimize_{method}.json"
        cmd = [
            sys.executable, "-m", "app", "eval", "optimize",
            "--latency", str(args.data / "nb201" / "latency_ms.csv.gz"),
            "--archs", str(args.data / "nb201" / "archs.csv.gz"),
            "--space", "nb201", "--accuracy-column", "acc_cifar10",
            "--train", TRAIN, "--test", TEST, "--budgets", "10,25,50,75",
            "--max-measurements", "20", "--seeds", "5", "--method", method, "--json", str(out),
        ]  # fmt: skip
        subprocess.run(cmd, check=True)
        doc = json.loads(out.read_text())
        m = doc["mean"]
        worst = max(doc["devices"].items(), key=lambda kv: kv[1]["regret"])
        lines.append(
            f"| {method} | {m['regret']:.3f} | {m['violation_rate']:.1%} | "
            f"{m['seconds_per_query']:.3f} | {worst[0]} {worst[1]['regret']:.3f} |"
        )
        baseline = doc["baseline"]["mean"]
    assert baseline is not None
    lines.append(
        f"| ridge baseline (10 random shots, no verification) | {baseline['regret']:.3f} | "
        f"{baseline['violation_rate']:.1%} | | |"
    )
    lines.append("| oracle (true latencies) | 0 | 0% | | |")
    summary = "\n".join(lines) + "\n"
    (args.out / "optimize.md").write_text(summary)
    print(summary)


if __name__ == "__main__":
    main()
