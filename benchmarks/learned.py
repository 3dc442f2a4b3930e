"""Benchmark: the learned optimizer beside search, on devices it never saw.

    python benchmarks/learned.py [--part standard|lodo|host|all] [--synthetic N]

Every part calls ``search.evaluation.evaluate_optimize`` with ``method="neural"`` (what
``edgeopt eval optimize --method neural`` runs): each query is answered by the learned
optimizer, its proposals checked with ``auto``'s predictions and search over every design
answering when none holds, and by that search alone, so both sit side by side. NB201,
CIFAR-10 accuracy from the reference data, budgets at the 10/25/50/75th percentiles of each
device's true latencies, confidence 0.9; violations are judged on the true latency.

- ``standard``: the 6 standard test devices; trained on the 9 training devices and synthetic
  devices drawn from them. 0 measurements (the fingerprint measured, as a profile-only
  ``POST /optimize``; fixed, so one seed) and 20 (D-optimal shots, 5 seeds).
- ``lodo``: each other reference device held out in turn, trained on all the rest; from the
  fingerprint where the device measured it, else 20 measurements.
- ``host``: this project's ONNX Runtime tables (``benchmarks/results/<hardware id>/``),
  fp32; trained on every reference device, the basis being those that measured every design
  of the table; 20 measurements (the tables hold no fingerprint design, whose latencies are
  predicted from the shots).

Writes ``learned_<part>.json`` and ``learned.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

from devices.fingerprint import fingerprint
from devices.measure import hardware_id, hardware_identity
from devices.reference import load_reference
from predictors.tables import LatencyTable
from search.evaluation import evaluate_optimize
from search.learned import fit_on_table
from search.spaces import get_space

TRAIN = [
    "1080ti_1",
    "1080ti_32",
    "1080ti_256",
    "silver_4114",
    "silver_4210r",
    "samsung_a50",
    "pixel3",
    "essential_ph_1",
    "samsung_s7",
]
TEST = ["titan_rtx_256", "gold_6226", "fpga", "pixel2", "raspi4", "eyeriss"]
BUDGETS = [10.0, 25.0, 50.0, 75.0]
RESULTS = Path("benchmarks/results")
SPACE = get_space("nb201")


def reference_table() -> tuple[LatencyTable, np.ndarray]:
    ref = load_reference("nb201")
    table = LatencyTable(
        ref.arch_ids, ref.encodings, [d.column for d in ref.devices], ref.latency_ms, {}
    )
    return table, ref.accuracies["cifar10"]


def run(
    table: LatencyTable,
    accuracy: np.ndarray,
    train: list[str],
    test: list[str],
    measurements: int,
    seeds: int,
    synthetic: int,
) -> dict:
    """Train on ``train`` (never on ``test``), then evaluate neural beside search."""
    started = time.perf_counter()
    model = fit_on_table(table, accuracy, SPACE, "cifar10", train, synthetic=synthetic)
    trained = time.perf_counter() - started
    result = evaluate_optimize(
        table, accuracy, SPACE.features(table.encodings), train, test, BUDGETS, measurements,
        seeds, "neural", fingerprint=fingerprint("nb201"), learned=model,
        options=SPACE.decisions(table.encodings), degenerate=SPACE.degenerate(table.encodings),
    )  # fmt: skip
    result["learned"] = model.spec.quality
    result["train_seconds"] = trained
    return result


def has_fingerprint(table: LatencyTable, device: str) -> bool:
    position = {e: i for i, e in enumerate(table.encodings)}
    column = table.column(device)
    return all(np.isfinite(column[position[e]]) for e in fingerprint("nb201"))


def part_standard(synthetic: int) -> dict:
    table, accuracy = reference_table()
    return {
        str(m): run(table, accuracy, TRAIN, TEST, m, 1 if m == 0 else 5, synthetic) for m in (0, 20)
    }


def part_lodo(synthetic: int) -> dict:
    table, accuracy = reference_table()
    held_out = [d for d in table.devices if d not in TEST]
    out = {}
    for k, device in enumerate(held_out, 1):
        train = [d for d in table.devices if d != device]
        mode = 0 if has_fingerprint(table, device) else 20
        print(f"[{k}/{len(held_out)}] {device} ({mode} measurements)", file=sys.stderr)
        result = run(table, accuracy, train, [device], mode, 1 if mode == 0 else 3, synthetic)
        out[device] = {"measurements": mode, **result}
    return out


def host_tables() -> list[Path]:
    return sorted(RESULTS.glob("*/host_nb201_latency.csv")) + sorted(
        RESULTS.glob("*/*/host_nb201_latency.csv")
    )


def part_host(synthetic: int) -> dict:
    """Host fp32 tables: their designs plus the fingerprint's, beside every reference device."""
    ref = load_reference("nb201")
    row_of = {e: i for i, e in enumerate(ref.encodings)}
    names = [d.column for d in ref.devices]
    table_all, accuracy_all = reference_table()
    model = None
    out = {}
    for path in host_tables():
        with path.open() as f:
            records = [r for r in csv.DictReader(f) if r["policy"] == "fp32"]
        devices = [c for c in records[0] if c not in ("arch", "policy")] if records else []
        mine = {r["arch"]: r for r in records if r["arch"] in row_of}
        rows = list(dict.fromkeys([*fingerprint("nb201"), *mine]))
        idx = np.array([row_of[e] for e in rows])
        host = np.array(
            [[float(mine[e][d] or "nan") if e in mine else np.nan for d in devices] for e in rows]
        )
        measured = [d for j, d in enumerate(devices) if np.isfinite(host[:, j]).sum() >= 50]
        if not measured:  # a table of other policies only
            continue
        host = host[:, [devices.index(d) for d in measured]]
        table = LatencyTable(
            ref.arch_ids[idx], rows, names + measured, np.c_[ref.latency_ms[idx], host], {}
        )
        if model is None:  # one model for every host table: trained on the reference devices
            started = time.perf_counter()
            model = fit_on_table(table_all, accuracy_all, SPACE, "cifar10", names,
                                 synthetic=synthetic)  # fmt: skip
            trained = time.perf_counter() - started
        basis = [n for n in names if np.isfinite(table.column(n)).all()]  # not the edge two
        result = evaluate_optimize(
            table, accuracy_all[idx], SPACE.features(rows), basis, measured, BUDGETS, 20, 5,
            "neural", learned=model, options=SPACE.decisions(rows),
            degenerate=SPACE.degenerate(rows),
        )  # fmt: skip
        result["train_seconds"] = trained
        out[str(path)] = result
    return out


def summary(parts: dict) -> str:
    lines = [
        "| part | device(s) | measurements | neural regret | search regret | gap to search "
        "| neural violations | search violations | search answered | neural ms (median) "
        "| search ms (median) | 20-budget front ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def row(part: str, who: str, m: int, r: dict) -> str:
        x = r["mean"]
        front = x.get("front_seconds", float("nan"))
        return (
            f"| {part} | {who} | {m} | {x['regret']:.3f} | {x['search_regret']:.3f} | "
            f"{x['gap_to_search']:.3f} | {x['violation_rate']:.1%} | "
            f"{x['search_violation_rate']:.1%} | {x['fallback_rate']:.1%} | "
            f"{1000 * x['median_seconds_per_query']:.1f} | "
            f"{1000 * x['search_median_seconds_per_query']:.1f} | "
            + (f"{1000 * front:.1f} |" if np.isfinite(front) else " |")
        )

    for m, r in parts.get("standard", {}).items():
        lines.append(row("standard", "6 test devices", int(m), r))
    lodo = parts.get("lodo", {})
    if lodo:
        for device, r in lodo.items():
            lines.append(row("leave-one-out", device, r["measurements"], r))
        keys = ("regret", "search_regret", "gap_to_search", "violation_rate",
                "search_violation_rate", "fallback_rate", "median_seconds_per_query",
                "search_median_seconds_per_query")  # fmt: skip
        mean = {k: float(np.mean([r["mean"][k] for r in lodo.values()])) for k in keys}
        lines.append(row("leave-one-out", f"mean of {len(lodo)}", -1, {"mean": mean}))
    for path, r in parts.get("host", {}).items():
        lines.append(row("host", Path(path).parent.name, 20, r))
    return "\n".join(lines).replace("| -1 |", "| 0 or 20 |") + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("standard", "lodo", "host", "all"), default="all")
    parser.add_argument("--synthetic", type=int, default=4000)
    parser.add_argument("--out", type=Path, default=RESULTS / "reference")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    chosen = ("standard", "lodo", "host") if args.part == "all" else (args.part,)
    runners = {"standard": part_standard, "lodo": part_lodo, "host": part_host}
    for part in chosen:
        doc = runners[part](args.synthetic)
        meta = {
            "command": f"python benchmarks/learned.py --part {part} --synthetic {args.synthetic}",
            "date": date.today().isoformat(),
            "machine": hardware_id(hardware_identity()),
            "platform": f"{platform.machine()} {platform.processor() or platform.system()}",
        }
        (args.out / f"learned_{part}.json").write_text(
            json.dumps({"meta": meta, "results": doc}, indent=2)
        )
    parts = {}
    for part in ("standard", "lodo", "host"):
        path = args.out / f"learned_{part}.json"
        if path.is_file():
            parts[part] = json.loads(path.read_text())["results"]
    text = summary(parts)
    (args.out / "learned.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
