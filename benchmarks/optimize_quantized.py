"""Benchmark: ``POST /optimize`` on this host's device settings, quantized policies beside fp32.

    python benchmarks/optimize_quantized.py
        [--table benchmarks/results/63dc7369bf7f/host_nb201_latency.csv]
        [--workdir /tmp/edgeopt-quantized] [--out FILE] [--no-measure]

A scratch registry (SQLite) is built through the API as a user would: the NB201 reference
data and EdgeOpt's digits accuracies imported, each host setting of the table (ONNX Runtime
on this kind of machine, 1 and 2 threads; fp32, int8 and one mixed policy per design, all
measured) registered and its measurements uploaded, then predictors trained. Each setting
then asks ``/optimize`` for the most accurate digits design within a latency budget (the
10/25/50/75/90th percentiles of its measured fp32 latencies) with three policy sets:
``fp32`` alone, the default ``fp32, int8`` and ``per-unit`` (all 32 NB201 policies).

Each answer is judged on measurements: its digits accuracy is the shipped record of that
design and policy, else measured now with the code ``edgeopt measure-accuracy`` runs
(``search.digits.measure_accuracy``; skipped with ``--no-measure``); its latency is the
table's when the table measured that design in that policy (else only predicted). Beside
it: the best fp32 design the table measured within the budget (the most accurate by its
digits record), and the best measured design in any policy the table holds.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import platform
import time
from collections import defaultdict
from datetime import date
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from scratch import scratch_registry, wait

from app.main import create_app
from devices.measure import hardware_id, hardware_identity
from devices.reference import load_digits_accuracy
from search.digits import measure_accuracy

KEY = "bench-key"
PERCENTILES = (10, 25, 50, 75, 90)
POLICY_SETS = {"fp32": ["fp32"], "fp32+int8": ["fp32", "int8"], "per-unit": ["per-unit"]}


def read_table(path: Path) -> tuple[list[str], dict[str, dict[tuple[str, str], float]]]:
    """The host settings of a table and each one's measured (design, policy) -> ms."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    columns = [c for c in rows[0] if c.startswith("host-")]
    return columns, {
        c: {(r["arch"], r["policy"]): float(r[c]) for r in rows if r.get(c)} for c in columns
    }


def upload_csv(measured: dict[tuple[str, str], float]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["space", "arch", "policy", "metric", "value"])
    for (arch, policy), ms in measured.items():
        writer.writerow(["nb201", arch, policy, "latency_ms", repr(ms)])
    return out.getvalue()


class Accuracy:
    """Digits top-1 of (design, policy): the shipped record, else measured now (cached)."""

    def __init__(self, measure: bool) -> None:
        self.known = {(r.design, r.policy): r.top1 for r in load_digits_accuracy("nb201")}
        self.measure = measure
        self.measured_now = 0

    def __call__(self, design: str, policy: str) -> float | None:
        if (design, policy) not in self.known and self.measure:
            self.known.update(
                {(design, p): v for p, v in measure_accuracy("nb201", design, [policy]).items()}
            )
            self.measured_now += 1
        return self.known.get((design, policy))


def oracle(
    measured: dict[tuple[str, str], float], accuracy: Accuracy, budget: float, fp32_only: bool
) -> dict | None:
    """The most accurate measured (design, policy) within the budget, by the records."""
    best: dict | None = None
    for (arch, policy), ms in measured.items():
        if ms > budget or (fp32_only and policy != "fp32"):
            continue
        top1 = accuracy.known.get((arch, policy))
        if top1 is not None and (best is None or top1 > best["accuracy"]):
            best = {"arch": arch, "policy": policy, "latency_ms": ms, "accuracy": top1}
    return best


def predicted(design: dict, metric: str) -> float | None:
    value = design.get(metric)
    return value.get("value") if isinstance(value, dict) else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--table", type=Path, default=Path("benchmarks/results/63dc7369bf7f/host_nb201_latency.csv")
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/edgeopt-quantized"))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--no-measure", action="store_true", help="do not train missing designs")
    args = parser.parse_args()
    out_path = args.out or args.table.parent / "optimize_quantized.json"
    settings = scratch_registry(args.workdir, KEY)
    columns, tables = read_table(args.table)
    accuracy = Accuracy(measure=not args.no_measure)
    queries: list[dict] = []
    with TestClient(create_app(settings)) as client:
        client.headers["X-API-Key"] = KEY
        body = {"kind": "import-reference", "params": {"spaces": ["nb201"]}}
        wait(client, client.post("/jobs", json=body).json()["id"])
        for column in columns:
            spec = {
                "name": column,
                "kind": "cpu",
                "runtime": "onnxruntime",
                "threads": int(column.rsplit("-", 1)[1].rstrip("t")),
                "source": f"{args.table} (benchmarks/host_measurement.py)",
            }
            created = client.post("/devices", json=spec)
            assert created.status_code == 201, created.text
            upload = client.post(
                f"/devices/{created.json()['id']}/measurements",
                content=upload_csv(tables[column]),
                headers={"content-type": "text/csv"},
            )
            assert upload.status_code == 201, upload.text
        body = {"spaces": ["nb201"], "devices": columns, "targets": ["latency_ms", "accuracy"]}
        wait(client, client.post("/predictors/train", json=body).json()["id"])
        for column in columns:
            measured = tables[column]
            fp32 = [v for k, v in measured.items() if k[1] == "fp32" and k in accuracy.known]
            for pct in PERCENTILES:
                budget = float(np.percentile(fp32, pct))
                best_fp32 = oracle(measured, accuracy, budget, fp32_only=True)
                best_any = oracle(measured, accuracy, budget, fp32_only=False)
                for label, policies in POLICY_SETS.items():
                    req = {"device": column, "dataset": "digits", "policies": policies,
                           "method": "search", "goals": {"max_latency_ms": budget}}  # fmt: skip
                    t0 = time.perf_counter()
                    answer = client.post("/optimize", json=req)
                    assert answer.status_code in (200, 201), answer.text
                    got = answer.json()
                    design = got["design"]
                    row: dict = {
                        "device": column,
                        "percentile": pct,
                        "budget_ms": budget,
                        "policies": label,
                        "wall_s": time.perf_counter() - t0,
                        "feasible": got["feasible"],
                        "best_fp32_measured": best_fp32,
                        "best_any_measured": best_any,
                    }
                    if design is not None:
                        arch, policy = design["arch"], design["policy"]
                        ms = measured.get((arch, policy))
                        row.update(
                            arch=arch,
                            policy=policy,
                            quantized=policy != "fp32",
                            predicted_latency_ms=predicted(design, "latency_ms"),
                            predicted_accuracy=predicted(design, "accuracy"),
                            latency_ms=ms,
                            within_budget=None if ms is None else ms <= budget,
                            accuracy=accuracy(arch, policy),
                        )
                    queries.append(row)
                    print(json.dumps({k: v for k, v in row.items() if "best" not in k}))
    result = {
        "command": "python benchmarks/optimize_quantized.py"
        + ("" if args.table == parser.get_default("table") else f" --table {args.table}"),
        "date": date.today().isoformat(),
        "machine": hardware_id(hardware_identity()),
        "python": platform.python_version(),
        "table": str(args.table),
        "accuracies_measured_now": accuracy.measured_now,
        "summary": summarise(queries),
        "queries": queries,
    }
    out_path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["summary"], indent=2))


def summarise(queries: list[dict]) -> dict:
    """Per policy set: share quantized, latency measured / within budget, accuracy vs fp32."""
    by: dict[str, list[dict]] = defaultdict(list)
    for q in queries:
        by[q["policies"]].append(q)
    out = {}
    for label, rows in by.items():
        answered = [r for r in rows if "arch" in r]
        timed = [r for r in answered if r["latency_ms"] is not None]
        judged = [r for r in answered if r["accuracy"] is not None and r["best_fp32_measured"]]
        gain = [r["accuracy"] - r["best_fp32_measured"]["accuracy"] for r in judged]
        ratio = [r["latency_ms"] / r["best_fp32_measured"]["latency_ms"] for r in timed
                 if r["best_fp32_measured"]]  # fmt: skip
        out[label] = {
            "queries": len(rows),
            "answered": len(answered),
            "quantized": sum(r["quantized"] for r in answered),
            "latency_measured": len(timed),
            "within_budget": sum(bool(r["within_budget"]) for r in timed),
            "accuracy_minus_best_fp32_mean": float(np.mean(gain)) if gain else None,
            "accuracy_minus_best_fp32_min": float(np.min(gain)) if gain else None,
            "latency_over_best_fp32_median": float(np.median(ratio)) if ratio else None,
            "median_wall_s": float(np.median([r["wall_s"] for r in rows])),
        }
    return out


if __name__ == "__main__":
    main()
