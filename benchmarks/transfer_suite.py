"""Benchmark: few-shot transfer to device classes and runtimes training never saw.

    python benchmarks/transfer_suite.py [--seeds 5] [--shots 5,10,20]
        [--out benchmarks/results/reference]

Runs ``edgeopt eval suite`` for NB201, FBNet and OFA-MobileNetV3 (every split of
``predictors/suite.py``: train on some device classes, test on others, the ridge baseline
beside each device), then the host family: this project's own ONNX Runtime CPU tables
(``benchmarks/results/<hardware id>/host_nb201_latency.csv``, a runtime no reference device
has) predicted from 10 shots with every NB201 reference device as the basis, beside the share
of a same-run re-measurement within +-10% of the stored value (``host_retest.py``), which is
as far as a model can be judged against these measurements. Writes one JSON per space, a
host JSON and ``transfer_suite.md`` with one table per space.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np

from devices.fingerprint import fingerprint
from devices.reference import load_reference
from predictors.evaluation import evaluate_transfer
from predictors.suite import suite_splits
from predictors.tables import LatencyTable
from search.evaluation import evaluate_optimize
from search.spaces import get_space

SPACES = ("nb201", "fbnet", "ofa_mbv3")
RESULTS = Path("benchmarks/results")
# A host table: its folder, and the retest files measured beside it (device, policy) -> file.
RETEST = {
    ("host-ort-cpu-1t", "fp32"): "host_retest_fp32_1t.json",
    ("host-ort-cpu-2t", "fp32"): "host_retest_fp32_2t.json",
    ("host-ort-cpu-1t", "fp32,int8,int8,int8,fp32"): "host_retest_mixed_1t.json",
    ("host-ort-cpu-2t", "fp32,int8,int8,int8,fp32"): "host_retest_mixed_2t.json",
}


def run_space(space: str, shots: str, seeds: int, out: Path) -> dict:
    """``edgeopt eval suite`` for one space, as a user runs it; provenance added."""
    path = out / f"transfer_suite_{space}.json"
    cmd = [
        sys.executable, "-m", "app", "eval", "suite", "--space", space,
        "--shots", shots, "--seeds", str(seeds), "--json", str(path),
    ]  # fmt: skip
    subprocess.run(cmd, check=True)
    doc = json.loads(path.read_text())
    doc.update(
        command=f"python benchmarks/transfer_suite.py --seeds {seeds} --shots {shots}",
        date=date.today().isoformat(),
        machine=f"{platform.machine()} {platform.processor() or platform.system()}",
    )
    path.write_text(json.dumps(doc, indent=2))
    return doc


def host_tables() -> list[Path]:
    return sorted(RESULTS.glob("*/host_nb201_latency.csv")) + sorted(
        RESULTS.glob("*/*/host_nb201_latency.csv")
    )


def run_host(seeds: int, shots: int) -> list[dict]:
    """Each host table's devices and policies, from ``shots`` shots over the reference basis."""
    ref = load_reference("nb201")
    space = get_space("nb201")
    row_of = {e: i for i, e in enumerate(ref.encodings)}
    rows = []
    for path in host_tables():
        with path.open() as f:
            records = list(csv.DictReader(f))
        devices = [c for c in records[0] if c not in ("arch", "policy")]
        for policy in sorted({r["policy"] for r in records}):
            mine = [r for r in records if r["policy"] == policy and r["arch"] in row_of]
            if len(mine) < 50:
                continue
            idx = np.array([row_of[r["arch"]] for r in mine])
            measured = [d for d in devices if sum(bool(r[d]) for r in mine) >= 50]
            host = np.array([[float(r[d] or "nan") for d in measured] for r in mine])
            names = [d.column for d in ref.devices]
            table = LatencyTable(
                ref.arch_ids[idx],
                [ref.encodings[i] for i in idx],
                names + measured,
                np.c_[ref.latency_ms[idx], host],
                {},
            )
            result = evaluate_transfer(
                table,
                space.features(table.encodings),
                names,
                measured,
                shots,
                seeds,
                degenerate=space.degenerate(table.encodings),
            )
            for device in measured:
                retest_file = path.parent / RETEST.get((device, policy), "-")
                retest = json.loads(retest_file.read_text()) if retest_file.is_file() else None
                rows.append(
                    {
                        "table": str(path),
                        "device": device,
                        "policy": policy,
                        "designs": len(mine),
                        "shots": shots,
                        "seeds": seeds,
                        "transfer": result["devices"][device],
                        "baseline": result["baseline"]["devices"][device],
                        "coverage": result["intervals"]["coverage"][device],
                        "retest_within_10pct": retest["within_10pct"] if retest else None,
                    }
                )
    return rows


METHODS = ("proxy", "search", "auto")


def run_optimize(seeds: int) -> list[dict]:
    """``/optimize`` as a new user gets it (the fingerprint's measurements, confidence 0.9)
    on every NB201 split, each method side by side; budgets at the 10/25/50/75th percentile
    of each test device's latencies. Devices that measured fewer than 3 of the fingerprint's
    designs (the edge accelerators cover an eighth of NB201) are left out and named."""
    ref = load_reference("nb201")
    space = get_space("nb201")
    table = LatencyTable(
        ref.arch_ids, ref.encodings, [d.column for d in ref.devices], ref.latency_ms, {}
    )
    prints = fingerprint("nb201")
    row_of = {e: i for i, e in enumerate(ref.encodings)}
    rows = []
    for split in suite_splits(ref.devices):
        measured = [
            d
            for d in split.test
            if np.isfinite(table.column(d)[[row_of[e] for e in prints]]).sum() >= 3
        ]
        if not measured:
            continue
        row = {"split": split.name, "test": measured,
               "left_out": sorted(set(split.test) - set(measured))}  # fmt: skip
        for method in METHODS:
            result = evaluate_optimize(
                table, ref.accuracies["cifar10"], space.features(ref.encodings), split.train,
                measured, [10, 25, 50, 75], 0, seeds, method, fingerprint=prints,
                degenerate=space.degenerate(ref.encodings),
            )  # fmt: skip
            row[method] = result["mean"]
            row["baseline"] = result["baseline"]["mean"]
        rows.append(row)
    return rows


def space_table(doc: dict, shots: list[int]) -> list[str]:
    """Markdown: one row per split, Spearman (baseline) and coverage at every shot count."""
    head = " | ".join(f"{n} shots: Spearman (ridge) / coverage" for n in shots)
    lines = [f"| split | train / test devices | {head} |", "|---|---|" + "---|" * len(shots)]
    for split in dict.fromkeys(r["split"] for r in doc["runs"]):
        runs = {r["setup"]["shots"]: r for r in doc["runs"] if r["split"] == split}
        first = runs[shots[0]]["setup"]
        cells = [
            f"{runs[n]['mean']['spearman']:.3f} ({runs[n]['baseline']['mean']['spearman']:.3f})"
            f" / {runs[n]['intervals']['mean_coverage']:.2f}"
            for n in shots
        ]
        lines.append(
            f"| {split} | {len(first['train'])} / {len(first['test'])} | {' | '.join(cells)} |"
        )
    summary = " | ".join(
        f"**{doc['summary'][str(n)]['geomean_spearman']:.3f}** "
        f"({doc['summary'][str(n)]['baseline_geomean_spearman']:.3f}), "
        f"{doc['summary'][str(n)]['devices_below_baseline']} below"
        for n in shots
    )
    lines.append(f"| geometric mean | | {summary} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "reference")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--shots", default="5,10,20")
    parser.add_argument(
        "--reuse", action="store_true", help="keep the transfer JSON in --out; rerun /optimize"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    shots = [int(n) for n in args.shots.split(",")]
    lines = []
    for space in SPACES:
        path = args.out / f"transfer_suite_{space}.json"
        reuse = args.reuse and path.is_file()
        doc = (
            json.loads(path.read_text())
            if reuse
            else run_space(space, args.shots, args.seeds, args.out)
        )
        lines += [f"### {space}", "", *space_table(doc, shots), ""]
    host_path = args.out / "transfer_suite_host.json"
    if args.reuse and host_path.is_file():
        host = json.loads(host_path.read_text())
    else:
        host = run_host(args.seeds, 10)
        host_path.write_text(json.dumps(host, indent=2))
    lines += [
        "### this project's host tables (ONNX Runtime CPU), 10 shots",
        "",
        "| table | device | policy | designs | Spearman (ridge) | within +-10% | "
        "coverage | re-measurement within +-10% |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in host:
        retest = "" if r["retest_within_10pct"] is None else f"{r['retest_within_10pct']:.3f}"
        lines.append(
            f"| {Path(r['table']).parent.relative_to(RESULTS)} | {r['device']} | {r['policy']} | "
            f"{r['designs']} | {r['transfer']['spearman']:.3f} ({r['baseline']['spearman']:.3f}) "
            f"| {r['transfer']['within_10pct']:.3f} | {r['coverage']:.2f} | {retest} |"
        )
    optimize = run_optimize(2)
    (args.out / "transfer_suite_optimize.json").write_text(json.dumps(optimize, indent=2))
    lines += [
        "",
        "### /optimize from the fingerprint alone (NB201, CIFAR-10, confidence 0.9)",
        "",
        "| split | "
        + " | ".join(f"{m}: regret / violations" for m in METHODS)
        + " | ridge baseline | left out |",
        "|---|" + "---|" * (len(METHODS) + 2),
    ]
    for r in optimize:
        cells = [f"{r[m]['regret']:.3f} / {r[m]['violation_rate']:.1%}" for m in METHODS]
        base = f"{r['baseline']['regret']:.3f} / {r['baseline']['violation_rate']:.1%}"
        lines.append(
            f"| {r['split']} | {' | '.join(cells)} | {base} | {', '.join(r['left_out'])} |"
        )
    text = "\n".join(lines) + "\n"
    (args.out / "transfer_suite.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
