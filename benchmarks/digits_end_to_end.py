"""Digits end to end on this host: optimize -> train -> quantize -> verify, as a user runs it.

    python benchmarks/digits_end_to_end.py --measure 60 \
        --json benchmarks/results/MACHINE/digits_end_to_end.json

Every step is the ``edgeopt`` CLI in a child process against a scratch SQLite registry:
EdgeOpt's digits accuracies loaded, this host's 1-thread device measured for ``--measure``
NB201 designs in the mixed policy (real timings), predictors trained, then for each latency
budget (quantiles of the measured latencies) ``edgeopt optimize --dataset digits`` and

- the small network (the one the digits accuracies are for) trained 4 epochs with a seed
  other than the records', quantized with the chosen policy: its top-1 against the predicted
  accuracy interval;
- the full-size network (the one the latency predictions are for) trained one epoch,
  quantized and timed with ``verify-model``: its latency against the predicted interval.

Reported: the share of each within its interval (90% intervals: about 0.9 expected).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from sqlalchemy import select

from app.db import session_factory, unit_of_work
from app.models import Device, Measurement
from app.reference_import import _import_digits

ROOT = Path(__file__).resolve().parents[1]
MIXED = "fp32,int8,int8,int8,fp32"
DEVICE = "host-ort-cpu-1t"


def edgeopt(env: dict[str, str], *args: str) -> str:
    """One CLI command; its stdout, or the benchmark stops with its stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "app", *args], env=env, cwd=ROOT, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"edgeopt {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure", type=int, default=60, help="NB201 designs timed here")
    parser.add_argument("--quantiles", default="0.1,0.3,0.5,0.7,0.9")
    parser.add_argument("--seed", type=int, default=1, help="training seed (records: 0)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/edgeopt-digits-e2e"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    env = {
        **os.environ,
        "EDGEOPT_DATABASE_URL": f"sqlite:///{args.workdir / 'registry.db'}",
        "EDGEOPT_ARTIFACTS_DIR": str(args.workdir / "artifacts"),
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
    }
    started = time.perf_counter()
    edgeopt(env, "db", "upgrade")
    url = env["EDGEOPT_DATABASE_URL"]
    with unit_of_work(session_factory(url)) as s:  # EdgeOpt's digits records only
        _import_digits(s, "nb201")
    edgeopt(env, "measure", "--space", "nb201", "--count", str(args.measure),
            "--policy", MIXED, "--threads", "1")  # fmt: skip
    edgeopt(env, "predictors", "train", "--space", "nb201", "--min-rows", "50")
    with session_factory(url)() as s:
        measured = np.array(s.scalars(
            select(Measurement.value).join(Device)
            .where(Device.name == DEVICE, Measurement.policy == MIXED,
                   Measurement.metric == "latency_ms")
        ).all())  # fmt: skip
    budgets = np.quantile(measured, [float(q) for q in args.quantiles.split(",")])
    runs = []
    for budget in map(float, budgets):
        out = edgeopt(env, "optimize", "--device", DEVICE, "--dataset", "digits",
                      "--policy", MIXED, "--max-latency-ms", f"{budget:.4f}")  # fmt: skip
        optimization = out.split("optimization ", 1)[1].split(":", 1)[0]
        row: dict[str, object] = {"budget_ms": float(budget), "optimization": int(optimization)}
        for size, epochs in (("small", 4), ("full", 1)):
            model = args.workdir / f"{optimization}-{size}.pt"
            onnx = model.with_suffix(".onnx")
            edgeopt(env, "train", "--optimization", optimization, "--data", "digits",
                    "--size", size, "--epochs", str(epochs), "--seed", str(args.seed),
                    "--out", str(model))  # fmt: skip
            edgeopt(env, "quantize", "--model", str(model), "--calibration", "digits",
                    "--out", str(onnx))  # fmt: skip
            if size == "small":
                meta = json.loads(Path(f"{onnx}.json").read_text())
                acc = json.loads(Path(f"{model}.json").read_text())["prediction"]["accuracy"]
                row["design"] = meta["design"]
                row["accuracy_predicted"] = acc
                top1 = meta["quantized_accuracy"]
                row["accuracy_measured"] = top1
                row["accuracy_within"] = bool(acc["low"] <= top1 <= acc["high"])
            else:
                edgeopt(env, "verify-model", "--model", str(onnx), "--device", DEVICE)
                v = json.loads(Path(f"{onnx}.json").read_text())["verification"]
                row["latency_predicted_ms"] = v.get("predicted_latency_ms")
                row["latency_interval_ms"] = v.get("interval")
                row["latency_measured_ms"] = v["measured_latency_ms"]
                row["latency_within"] = v.get("within_interval")
                row["within_budget"] = bool(v["measured_latency_ms"] <= budget)
        runs.append(row)
        print(json.dumps(row), flush=True)
    summary = {
        "designs_measured": len(measured),
        "runs": len(runs),
        "accuracy_within_interval": float(np.mean([r["accuracy_within"] for r in runs])),
        "latency_within_interval": float(np.mean([bool(r["latency_within"]) for r in runs])),
        "within_budget": float(np.mean([r["within_budget"] for r in runs])),
        "seconds": round(time.perf_counter() - started),
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**summary, "rows": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
