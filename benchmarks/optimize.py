"""Benchmark: the served optimizer on the 6 standard NB201 test devices, through the CLI.

    python benchmarks/optimize.py [--data FOLDER] [--out benchmarks/results/reference]

``edgeopt eval optimize`` for each method (proxy, search, auto) in both modes a user can ask
for: ``--max-measurements 0`` (a profile-only ``POST /optimize``: the 10 fingerprint designs
measured, the answer from predictions at confidence 0.9) and ``--max-measurements 20``
(measure-and-refine). Budgets at the 10/25/50/75th percentile of each device's true
latencies, 5 seeds, CIFAR-10 accuracy from the reference data; violations are judged on the
true latency. Writes one JSON per method and mode and a markdown summary.
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
MODES = (0, 20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=data_dir())
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/reference"))
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    lines = [
        "| method | measurements | mean regret (points) | budget violations (true latency) "
        "| no answer | s / query | worst device regret |",
        "|---|---|---|---|---|---|---|",
    ]
    baselines = {}
    for mode in MODES:
        for method in ("proxy", "search", "auto"):
            out = args.out / f"optimize_{method}_{mode}.json"
            cmd = [
                sys.executable, "-m", "app", "eval", "optimize",
                "--latency", str(args.data / "nb201" / "latency_ms.csv.gz"),
                "--archs", str(args.data / "nb201" / "archs.csv.gz"),
                "--space", "nb201", "--accuracy-column", "acc_cifar10",
                "--train", TRAIN, "--test", TEST, "--budgets", "10,25,50,75",
                "--max-measurements", str(mode), "--seeds", str(args.seeds),
                "--method", method, "--confidence", "0.9", "--json", str(out),
            ]  # fmt: skip
            subprocess.run(cmd, check=True)
            doc = json.loads(out.read_text())
            m = doc["mean"]
            worst = max(doc["devices"].items(), key=lambda kv: kv[1]["regret"])
            lines.append(
                f"| {method} | {mode} | {m['regret']:.3f} | {m['violation_rate']:.1%} | "
                f"{m['no_answer_rate']:.1%} | {m['seconds_per_query']:.3f} | "
                f"{worst[0]} {worst[1]['regret']:.3f} |"
            )
            baselines[mode] = doc["baseline"]["mean"]
    base = next(iter(baselines.values()))
    lines.append(
        f"| ridge baseline (10 random shots, no verification) | 10 | {base['regret']:.3f} | "
        f"{base['violation_rate']:.1%} | | | |"
    )
    lines.append("| oracle (true latencies) | | 0 | 0% | | | |")
    summary = "\n".join(lines) + "\n"
    (args.out / "optimize.md").write_text(summary)
    print(summary)


if __name__ == "__main__":
    main()
