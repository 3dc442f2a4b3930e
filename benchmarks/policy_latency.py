"""Benchmark: per-unit latency of policies a device never measured, judged on this host.

    python benchmarks/policy_latency.py [--designs 60] [--threads 1] [--budget-s 2]

Measures, in one run on this host (ONNX Runtime, the service's protocol), ``--designs``
NB201 designs (seed-0 sample, the designs the host tables and the digits study start with)
under fp32, int8 and the five named mixed policies, each design's policies back to back so
the machine's drift hits them alike. Then fits the model the service trains for a device
(``search.policy_latency.fit_policy_model``) on fp32, int8 and 1, 2 or 3 of the mixed
policies (in the order body, stage 1, stage 2) and judges its answers for the mixed policies
it never saw: share within +-10%, median predicted / measured, 90% interval coverage. (The
service answers a policy's latency only where the device measured it, because of this.)
Writes ``policy_latency.json`` under ``benchmarks/results/<hardware id>/``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

from devices.measure import Protocol, hardware_id, hardware_identity, measure
from search.export import export_design
from search.policy import named_mixed
from search.policy_latency import Measured, fit_policy_model, predict
from search.spaces import get_space

RESULTS = Path(__file__).parent / "results"
ORDER = ["body-int8", "stage1-int8", "stage2-int8", "stage3-int8", "ends-int8"]


def measure_all(designs: list[str], policies: list[str], protocol: Protocol) -> np.ndarray:
    """designs x policies, ms; every design's policies timed one after another."""
    out = np.full((len(designs), len(policies)), np.nan)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for i, design in enumerate(designs):
            for j, policy in enumerate(policies):
                path = export_design("nb201", design, policy, Path(tmp) / f"{j}.onnx").path
                out[i, j] = measure(str(path), protocol).median_ms
            print(f"{i + 1}/{len(designs)} designs, {time.monotonic() - started:.0f} s", flush=True)
    return out


def judge(designs: list[str], policies: list[str], ms: np.ndarray, seen: list[str]) -> dict:
    """Fit on ``seen`` policies, answer the others."""
    cols = [j for j, p in enumerate(policies) if p in seen]
    measured = Measured(
        [d for _ in cols for d in designs],
        [policies[j] for j in cols for _ in designs],
        np.concatenate([ms[:, j] for j in cols]),
    )
    model = fit_policy_model("nb201", measured)
    out = {}
    for j, policy in enumerate(policies):
        if policy in seen:
            continue
        centre, low, high = predict(model, "nb201", designs, policy)
        truth = ms[:, j]
        out[policy] = {
            "within_10pct": float(np.mean(np.abs(centre / truth - 1) <= 0.1)),
            "median_predicted_over_measured": float(np.median(centre / truth)),
            "interval_coverage": float(np.mean((truth >= low) & (truth <= high))),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--designs", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--budget-s", type=float, default=2.0, help="timing per measurement")
    args = parser.parse_args()
    designs = list(dict.fromkeys(get_space("nb201").sample(np.random.default_rng(0), args.designs)))
    mixed = named_mixed("nb201")
    policies = ["fp32", "int8", *(mixed[name] for name in ORDER)]
    protocol = Protocol(threads=args.threads, budget_s=args.budget_s)
    ms = measure_all(designs, policies, protocol)
    ratio = ms / ms[:, :1]
    result = {
        "command": f"python benchmarks/policy_latency.py --designs {args.designs} "
        f"--threads {args.threads} --budget-s {args.budget_s}",
        "date": date.today().isoformat(),
        "machine": hardware_id(hardware_identity()),
        "python": platform.python_version(),
        "designs": len(designs),
        "median_over_fp32": {
            name: float(np.median(ratio[:, j])) for j, name in enumerate(["fp32", "int8", *ORDER])
        },
        "fits": {
            "+".join(["fp32", "int8", *ORDER[:k]]): judge(
                designs, policies, ms, ["fp32", "int8", *(mixed[n] for n in ORDER[:k])]
            )
            for k in (1, 2, 3)
        },
    }
    out = RESULTS / result["machine"] / "policy_latency.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
