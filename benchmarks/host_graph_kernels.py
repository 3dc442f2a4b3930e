"""Benchmark: how much of the host latency the runtime's real graph explains, beyond the encoding.

    python benchmarks/host_graph_kernels.py
        [--csv benchmarks/results/d1ea52892bef/host_nb201_latency.csv]
        [--policy fp32 --policy fp32,int8,int8,int8,fp32] [--count 660] [--json OUT]
        [--cache counts.json]

Exports each design of a stored host table as the host job does, lets ONNX Runtime optimise
it (``ORT_ENABLE_ALL``, the level measurements run at) and counts the optimised graph's
nodes per op type and unit (``stage2:QLinearAveragePool``, ``?:ReorderOutput``...). Then, as
``host_predictor.py`` does (5 seeds, 20% held out), fits the additive model (ridge over
counts, relative error) and the service's model on the encoding alone and on the encoding
plus those node counts, and reports the share of held-out designs within +-10%. It also
counts the designs whose float / int8 pools per stage ``search.kernels.precision_kernels``
gets exactly right.

The counts are only known after an export (about 1 s per design), far too slow for
predicting a whole space, so the service does not use them; this measures what the
encoding still misses: near 1.0 with the real graph means the remaining error is in which
kernels run, not in the measurements. ``--cache``: keep the graph counts in a JSON file and
reuse them on the next run (they depend on the export and ONNX Runtime, not the encoding).
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

from predictors.design_model import AdditiveBase, fit_design_model
from search.export import export_design, optimised_node_counts
from search.kernels import precision_kernels
from search.policy import unit_precisions
from search.spaces import get_space

MIXED = "fp32,int8,int8,int8,fp32"


def graph_counts(design: str, policy: str) -> dict[str, int]:
    """Node counts per ``unit:op_type`` of the design's graph after ONNX Runtime's optimiser."""
    with tempfile.TemporaryDirectory() as tmp:
        return optimised_node_counts(
            export_design("nb201", design, policy, Path(tmp) / "m.onnx").path
        )


def held_out_within(x: np.ndarray, y: np.ndarray, service: bool) -> float:
    """Mean over 5 seeds of the held-out share within +-10% (20% held out)."""
    shares = []
    for seed in range(5):
        order = np.random.default_rng(seed).permutation(len(y))
        test, fit = order[: len(y) // 5], order[len(y) // 5 :]
        if service:
            guess = fit_design_model(x[fit], y[fit], seed=seed).predict(x[test])[0]
        else:
            guess = np.exp(AdditiveBase.fit(x[fit], y[fit]).log_predict(x[test]))
        shares.append(float(np.mean(np.abs(guess / y[test] - 1) <= 0.1)))
    return float(np.mean(shares))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--csv", type=Path, default=Path("benchmarks/results/d1ea52892bef/host_nb201_latency.csv")
    )
    parser.add_argument("--policy", action="append", default=None)
    parser.add_argument("--count", type=int, default=660)
    parser.add_argument(
        "--json", type=Path, default=Path("benchmarks/results/d1ea52892bef/host_graph_kernels.json")
    )
    parser.add_argument("--cache", type=Path, default=None)
    args = parser.parse_args()
    cache: dict[str, dict[str, int]] = (
        json.loads(args.cache.read_text()) if args.cache and args.cache.is_file() else {}
    )
    with args.csv.open() as f:
        rows = list(csv.DictReader(f))
    devices = [c for c in rows[0] if c not in ("arch", "policy")]
    space = get_space("nb201")
    result: dict[str, object] = {"table": str(args.csv), "onnxruntime": ort.__version__}
    for policy in args.policy or ["fp32", MIXED]:
        chosen = [r for r in rows if r["policy"] == policy][: args.count]
        counts = []
        for i, row in enumerate(chosen):
            key = f"{policy} {row['arch']}"
            if key not in cache:
                cache[key] = graph_counts(row["arch"], policy)
            counts.append(cache[key])
            print(f"\r{policy}: {i + 1}/{len(chosen)} graphs", end="", flush=True)
        print()
        if args.cache:
            args.cache.write_text(json.dumps(cache))
        names = sorted({k for c in counts for k in c})
        graph = np.array([[c.get(k, 0) for k in names] for c in counts], dtype=float)
        x = space.encode([r["arch"] for r in chosen], policy)
        precisions = unit_precisions("nb201", policy)
        agree = sum(
            precision_kernels(space.ops(r["arch"]), precisions)[:6]
            == tuple(
                float(c.get(f"stage{s}:{op}", 0))
                for s in (1, 2, 3)
                for op in ("AveragePool", "QLinearAveragePool")
            )
            for r, c in zip(chosen, counts, strict=True)
        )
        result[f"pool_precisions_agree {policy}"] = {"designs": len(chosen), "agree": agree}
        print(f"{policy}: pool precisions right for {agree} of {len(chosen)} designs")
        for device in devices:
            keep = np.array([bool(r[device]) for r in chosen])
            y = np.array([float(r[device]) for r in chosen if r[device]])
            figures = {
                f"{model}_{features}": held_out_within(f[keep], y, model == "service")
                for features, f in (("encoding", x), ("encoding_graph", np.c_[x, graph]))
                for model in ("additive", "service")
            }
            result[f"{device} {policy}"] = {
                "designs": int(keep.sum()),
                "distinct_graphs": len({tuple(g) for g in graph[keep]}),
                **figures,
            }
            print(f"{device} {policy}: " + ", ".join(f"{k} {v:.3f}" for k, v in figures.items()))
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
