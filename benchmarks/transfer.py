"""Benchmark: few-shot latency transfer on the standard splits, through ``edgeopt eval transfer``.

    python benchmarks/transfer.py [--data ../shared/data-like folder]
        [--out benchmarks/results/reference]

Runs NB201 (10 and 5 shots) and FBNet (10 shots, batch 64 in place of 256) on the HELP split
of ../shared/data/README.md, 5 seeds each, with the shipped reference tables by default, and
writes one JSON per run plus a markdown summary that the README quotes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from devices.reference import data_dir

TRAIN = (
    "1080ti_1,1080ti_32,1080ti_{b},silver_4114,silver_4210r,"
    "samsung_a50,pixel3,essential_ph_1,samsung_s7"
)
TEST = "titan_rtx_{b},gold_6226,fpga,pixel2,raspi4,eyeriss"
RUNS = (("nb201", "256", 10), ("nb201", "256", 5), ("fbnet", "64", 10))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=data_dir())
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/reference"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    lines = [
        "| space | shots | EdgeOpt mean Spearman | min device | ridge baseline | "
        "within +-10% | interval coverage (90%) |",
        "|---|---|---|---|---|---|---|",
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
        worst = min(doc["devices"].items(), key=lambda kv: kv[1]["spearman"])
        coverage = doc["intervals"]["coverage"]
        lines.append(
            f"| {space} | {shots} | {doc['mean']['spearman']:.4f} | "
            f"{worst[0]} {worst[1]['spearman']:.4f} | {doc['baseline']['mean']['spearman']:.4f} | "
            f"{doc['mean']['within_10pct']:.3f} | {sum(coverage.values()) / len(coverage):.3f} |"
        )
    summary = "\n".join(lines) + "\n"
    (args.out / "transfer.md").write_text(summary)
    print(summary)


if __name__ == "__main__":
    main()
