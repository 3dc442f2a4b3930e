"""Measure designs' digits accuracy under fp32, int8 and mixed policies; ship the records.

    python benchmarks/digits_accuracy.py --space nb201 --count 500 --epochs 4 --random-policies 2
    python benchmarks/digits_accuracy.py --space fbnet --count 150 --epochs 8 --random-policies 1

Runs ``edgeopt measure-accuracy`` (the job users run, with its progress bar) against a
scratch registry (``--registry``, resumable: designs already measured there are kept), then
writes that registry's digits records to ``devices/reference_data/digits/SPACE.csv.gz``,
which the reference import loads, and prints the measured accuracy change per policy.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np

from devices.reference import AccuracyRow, write_digits_accuracy
from search.accuracy_change import pairs_from_records

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", choices=["nb201", "fbnet"], default="nb201")
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--random-policies", type=int, default=2)
    parser.add_argument("--registry", type=Path, default=Path("/tmp/edgeopt-digits"))
    parser.add_argument("--skip-measure", action="store_true", help="only export what is stored")
    args = parser.parse_args()
    args.registry.mkdir(parents=True, exist_ok=True)
    db = args.registry / f"{args.space}.db"
    env = {**os.environ, "EDGEOPT_DATABASE_URL": f"sqlite:///{db}",
           "EDGEOPT_ARTIFACTS_DIR": str(args.registry / f"artifacts-{args.space}")}  # fmt: skip
    edgeopt = [sys.executable, "-m", "app"]
    subprocess.run([*edgeopt, "db", "upgrade"], env=env, cwd=ROOT, check=True)
    if not args.skip_measure:
        subprocess.run(
            [*edgeopt, "measure-accuracy", "--space", args.space, "--count", str(args.count),
             "--epochs", str(args.epochs), "--seed", str(args.seed), "--policy", "fp32",
             "--policy", "int8", "--mixed", "--random-policies", str(args.random_policies)],
            env=env, cwd=ROOT, check=True,
        )  # fmt: skip
    with sqlite3.connect(db) as con:
        stored = con.execute(
            "SELECT a.encoding, r.policy, r.top1, r.source FROM accuracy_records r "
            "JOIN architectures a ON a.id = r.architecture_id "
            "WHERE a.space = ? AND r.dataset = 'digits'",
            (args.space,),
        ).fetchall()
    rows = [AccuracyRow(e, p, float(v), s) for e, p, v, s in stored]
    path = write_digits_accuracy(args.space, rows)
    pairs = pairs_from_records((r.design, r.policy, r.top1) for r in rows)
    change = pairs.change
    named = {}
    from search.policy import named_mixed

    for name, policy in {"int8": "int8", **named_mixed(args.space)}.items():
        at = np.array(pairs.policies) == policy
        if at.any():
            part = change[at]
            named[name] = {"pairs": int(at.sum()), "mean": float(part.mean()),
                           "min": float(part.min()), "max": float(part.max())}  # fmt: skip
    fp32 = [r.top1 for r in rows if r.policy == "fp32"]
    print(json.dumps({
        "file": str(path.relative_to(ROOT)),
        "designs": len(fp32),
        "records": len(rows),
        "policies": len({r.policy for r in rows}),
        "fp32_mean": float(np.mean(fp32)) if fp32 else None,
        "fp32_range": [float(np.min(fp32)), float(np.max(fp32))] if fp32 else None,
        "change_points": named,
        "source": rows[0].source if rows else None,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
