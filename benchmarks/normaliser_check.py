"""Is a stored host latency the device's? The normaliser against raw quiet timings.

    python benchmarks/normaliser_check.py --designs 20 \
        --json benchmarks/results/MACHINE/normaliser_check.json

On this host, for designs drawn from NB201 (fp32, one thread), each design is timed raw
(``devices.measure.measure``, no reference), then through the normaliser the host job uses
(``devices.normaliser.Normaliser``: reference interleaved, value = raw x baseline /
reference), then raw again. It reports how a stored value relates to the raw quiet timings
(ratio, share within +-5% / +-10%) beside the two raw timings' own agreement (the ceiling).

Then a neighbour process keeps both cores busy and a fresh device asks for its baseline:
the reference timed under that load is reported as the inflation a loaded baseline would
carry into every later value, and the normaliser is shown refusing to keep one
(``MachineBusy`` after ``--busy-wait`` seconds; the service waits 120 s by default).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from devices.measure import Protocol, measure
from devices.normaliser import (
    REFERENCE_DESIGN,
    REFERENCE_SPACE,
    MachineBusy,
    MemoryBaselines,
    Normaliser,
)
from search.export import export_design
from search.spaces import get_space


def _spin(stop_at: float) -> None:
    x = 0.0
    while time.time() < stop_at:
        x += 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--designs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget-s", type=float, default=4.0)
    parser.add_argument("--busy-wait", type=float, default=15.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    space = get_space("nb201")
    rng = np.random.default_rng(args.seed)
    pool = [d for d in space.enumerate() if "nor_conv" in d]  # type: ignore[attr-defined]
    designs = [pool[i] for i in rng.choice(len(pool), args.designs, replace=False)]
    protocol = Protocol(threads=1, budget_s=args.budget_s)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ref = str(
            export_design(REFERENCE_SPACE, REFERENCE_DESIGN, "fp32", folder / "ref.onnx").path
        )
        normaliser = Normaliser(measure, lambda policy: ref, MemoryBaselines(), busy_wait_s=120)
        for i, design in enumerate(designs):
            path = str(export_design("nb201", design, "fp32", folder / f"d{i}.onnx").path)
            before = measure(path, protocol)
            stored = normaliser(path, 1, ["fp32"], protocol)
            after = measure(path, protocol)
            raw = float(np.mean([before.median_ms, after.median_ms]))
            rows.append({
                "design": design,
                "raw_before_ms": before.median_ms,
                "stored_ms": stored.median_ms,
                "raw_after_ms": after.median_ms,
                "reference_ms": stored.reference_ms,
                "stable": stored.stable,
                "contended": before.contended or after.contended or stored.contended,
            })  # fmt: skip
            print(f"{i + 1}/{len(designs)} raw {raw:.3f} stored {stored.median_ms:.3f} ms",
                  flush=True)  # fmt: skip
        quiet_baseline = normaliser.baselines.get(1, "fp32")

        # A loaded machine: the reference timed beside two busy neighbours
        stop_at = time.time() + args.busy_wait + 30
        spinners = [multiprocessing.Process(target=_spin, args=(stop_at,)) for _ in range(2)]
        for p in spinners:
            p.start()
        try:
            time.sleep(1.0)
            loaded = measure(ref, protocol)
            fresh = Normaliser(measure, lambda policy: ref, MemoryBaselines(), args.busy_wait)
            try:
                fresh.baseline(2, "fp32", protocol)
                refused = None
            except MachineBusy as exc:
                refused = str(exc)
            kept = fresh.baselines.get(2, "fp32")
        finally:
            for p in spinners:
                p.terminate()
                p.join()

    raw = np.array([np.mean([r["raw_before_ms"], r["raw_after_ms"]]) for r in rows])
    stored = np.array([r["stored_ms"] for r in rows])
    ratio = stored / raw
    retest = np.array([r["raw_after_ms"] / r["raw_before_ms"] for r in rows])
    out = {
        "designs": len(rows),
        "protocol": {"threads": 1, "budget_s": args.budget_s, "policy": "fp32"},
        "stored_over_raw": {
            "median": float(np.median(ratio)),
            "range": [float(ratio.min()), float(ratio.max())],
            "within_5pct": float(np.mean(np.abs(ratio - 1) <= 0.05)),
            "within_10pct": float(np.mean(np.abs(ratio - 1) <= 0.10)),
        },
        "raw_retest": {
            "median": float(np.median(retest)),
            "within_5pct": float(np.mean(np.abs(retest - 1) <= 0.05)),
            "within_10pct": float(np.mean(np.abs(retest - 1) <= 0.10)),
        },
        "quiet_baseline_ms": quiet_baseline,
        "loaded": {
            "reference_ms": loaded.median_ms,
            "foreign_load_cores": loaded.foreign_load,
            "contended": loaded.contended,
            "inflation_over_quiet_baseline": (
                loaded.median_ms / quiet_baseline if quiet_baseline else None
            ),
            "normaliser_refused": refused,
            "baseline_kept": kept,
        },
        "rows": rows,
    }
    text = json.dumps(out, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "rows"}, indent=2))


if __name__ == "__main__":
    main()
