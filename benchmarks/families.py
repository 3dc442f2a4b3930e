"""Benchmark: few-shot latency prediction with each implementation family held out.

    python benchmarks/families.py [--shots 5,10,20,50,100,200] [--seeds 2]
        [--optimize-seeds 2] [--out benchmarks/results/reference]

NB201 families, each held out in turn with the others as basis (``predictors/families.py``):

- ``help``: the 27 HELP / HW-NAS-Bench columns (the NAS-Bench-201 PyTorch networks);
- ``edge``: the Jetson TX2 and Edge TPU columns of HW-NAS-Bench;
- ``latbench``: the 15 LatBench settings (BRP-NAS's TensorFlow networks);
- ``host``: this project's ONNX Runtime tables (``benchmarks/results/*/host_nb201_latency.csv``,
  one setting per machine, threads and policy), tested only: a few hundred designs each.

Beside every figure: the ridge baseline, the shots-only model and the best single basis
device with monotone calibration, on the same shots; 90% interval coverage; and
``/optimize`` from the fingerprint's 10 designs at confidence 0.9 (regret, violations on
true latency) through ``search.evaluation.evaluate_optimize``, the code ``edgeopt eval
optimize`` runs. Writes ``families.json`` and ``families.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
from datetime import date
from pathlib import Path

# One BLAS thread: the fits are small, and threaded BLAS on shared cores ran them 100x slower
# (set before numpy loads its BLAS).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from devices.fingerprint import fingerprint
from devices.reference import load_family, load_reference
from predictors.families import METHODS, evaluate_families
from predictors.tables import LatencyTable
from search.evaluation import evaluate_optimize
from search.spaces import get_space

RESULTS = Path("benchmarks/results")
EDGE = ("edgegpu_jetson_tx2", "edgetpu")


def host_columns(encodings: list[str]) -> tuple[list[str], list[np.ndarray]]:
    """Every host table's (machine, device, policy) measured on at least 250 designs."""
    row_of = {e: i for i, e in enumerate(encodings)}
    names, columns = [], []
    for path in sorted(RESULTS.glob("*/host_nb201_latency.csv")):
        with path.open() as f:
            records = list(csv.DictReader(f))
        devices = [c for c in records[0] if c not in ("arch", "policy")]
        for policy in sorted({r["policy"] for r in records}):
            for device in devices:
                column = np.full(len(encodings), np.nan)
                for r in records:
                    if r["policy"] == policy and r[device] and r["arch"] in row_of:
                        column[row_of[r["arch"]]] = float(r[device])
                if np.isfinite(column).sum() >= 250:
                    names.append(f"{path.parent.name}/{device}/{policy}")
                    columns.append(column)
    return names, columns


def load() -> tuple[list[str], np.ndarray, dict[str, str], list[str], dict[str, np.ndarray]]:
    ref = load_reference("nb201")
    latbench = load_family("nb201_latbench")
    names = [d.column for d in ref.devices] + [d.column for d in latbench.devices]
    family = {n: ("edge" if n in EDGE else "help") for n in names[: len(ref.devices)]}
    family |= {d.column: "latbench" for d in latbench.devices}
    host_names, host = host_columns(ref.encodings)
    family |= {n: "host" for n in host_names}
    latency = np.column_stack([ref.latency_ms, latbench.latency_ms, *host])
    return names + host_names, latency, family, ref.encodings, ref.accuracies


def optimize_figures(
    names: list[str], latency: np.ndarray, family: dict[str, str], encodings: list[str],
    accuracy: np.ndarray, seeds: int,
) -> dict[str, dict]:  # fmt: skip
    """``/optimize`` per family, the rest as basis, at confidence 0.9: from the fingerprint
    alone, and with 20 measurements (measure-and-refine)."""
    space = get_space("nb201")
    table = LatencyTable(np.arange(len(encodings)), encodings, names, latency, {})
    prints = fingerprint("nb201")
    rows = [encodings.index(e) for e in prints]
    features = (space.features(encodings), space.design_features(encodings))
    out = {}
    for held in sorted(set(family.values())):
        train = [n for n in names if family[n] not in (held, "host")]
        test = [n for n in names if family[n] == held]
        profiled = [n for n in test if np.isfinite(table.column(n)[rows]).sum() >= 3]
        row: dict[str, object] = {"test": profiled}
        for key, measurements, devices in (("edgeopt", 0, profiled), ("refine_20", 20, test)):
            if not devices:
                continue
            result = evaluate_optimize(
                table, accuracy, features[0], train, devices, [10, 25, 50, 75], measurements,
                seeds, "search", fingerprint=prints, degenerate=space.degenerate(encodings),
                design_features=features[1],
            )  # fmt: skip
            row[key] = result["mean"]
            row.setdefault("baseline", result["baseline"])
            row[f"{key}_devices"] = len(devices)
        out[held] = row
    return out


def markdown(doc: dict) -> str:
    lines = [
        "| family held out | shots | devices | EdgeOpt | ridge | shots only | best device "
        "| worst margin | 90% coverage |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for held, block in doc["families"].items():
        for k, row in block["shots"].items():
            s = row["spearman"]
            lines.append(
                f"| {held} | {k} | {row['devices']} | {s['edgeopt']:.3f} | {s['ridge']:.3f} "
                f"| {s['shots_only']:.3f} | {s['best_device']:.3f} | {row['worst_margin']:+.3f} "
                f"| {row['coverage_90']:.2f} |"
            )
    if doc.get("optimize"):
        lines += [
            "",
            "| family held out | profile: devices | regret | violations | no answer "
            "| ridge regret | ridge violations | 20 measurements: devices | regret | violations |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for held, row in doc["optimize"].items():
            cells = [held]
            ours = row.get("edgeopt")
            if ours:
                base = row["baseline"]["mean"]
                cells += [
                    str(row["edgeopt_devices"]), f"{ours['regret']:.3f}",
                    f"{ours['violation_rate']:.3f}", f"{ours['no_answer_rate']:.3f}",
                    f"{base['regret']:.3f}", f"{base['violation_rate']:.3f}",
                ]  # fmt: skip
            else:
                cells += ["0 (no fingerprint measured)", "", "", "", "", ""]
            refine = row.get("refine_20")
            if refine:
                cells += [
                    str(row["refine_20_devices"]), f"{refine['regret']:.3f}",
                    f"{refine['violation_rate']:.3f}",
                ]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shots", default="5,10,20,50,100,200")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--optimize-seeds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "reference")
    args = parser.parse_args()
    names, latency, family, encodings, accuracies = load()
    space = get_space("nb201")

    def progress(done: int, total: int) -> None:
        print(f"\r{done}/{total}", end="", file=sys.stderr, flush=True)

    doc = evaluate_families(
        latency, names, family, space.features(encodings), space.design_features(encodings),
        [int(k) for k in args.shots.split(",")], args.seeds,
        degenerate=space.degenerate(encodings), target_only=("host",), progress=progress,
    )  # fmt: skip
    print(file=sys.stderr)
    if args.optimize_seeds:
        doc["optimize"] = optimize_figures(
            names, latency, family, encodings, accuracies["cifar10"], args.optimize_seeds
        )
    cmd = f"python benchmarks/families.py --shots {args.shots} --seeds {args.seeds}"
    doc["provenance"] = {
        "command": cmd + f" --optimize-seeds {args.optimize_seeds}",
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()} {platform.processor() or platform.system()}",
        "methods": list(METHODS),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "families.json").write_text(json.dumps(doc, indent=2))
    (args.out / "families.md").write_text(markdown(doc))
    print(markdown(doc))


if __name__ == "__main__":
    main()
